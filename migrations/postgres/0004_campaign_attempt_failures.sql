-- Each failed attempt of a campaign's batch leaves its reason on the batch's row, as in SQLite's
-- 0010: which attempt failed, when, the class of the failure (for `/metrics`), what the channel
-- said, and when the batch is tried again (none once it is given up). A later attempt keeps it,
-- and so does the answer: it is the batch's last error, kept for the record; whether it is
-- current is whether the batch is still unanswered.

ALTER TABLE campaign_batches
    ADD COLUMN failed_attempt BIGINT CHECK (failed_attempt > 0),
    ADD COLUMN failed_at TEXT,
    ADD COLUMN failure_class TEXT
        CHECK (failure_class IN ('http_status', 'connection', 'timeout', 'smtp_reply', 'refused', 'local')),
    ADD COLUMN failure TEXT,
    ADD COLUMN retry_at TEXT;

-- As in 0001, and: a failure is recorded on a batch in flight, for an attempt it was marked for,
-- whole (all of it but the retry time, which a batch given up has not); nothing else of the row
-- changes with it, and neither a new attempt nor the answer changes it.
CREATE OR REPLACE FUNCTION campaign_batches_only_move_forward() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    failure_kept BOOLEAN := NEW.failed_attempt IS NOT DISTINCT FROM OLD.failed_attempt
        AND NEW.failed_at IS NOT DISTINCT FROM OLD.failed_at
        AND NEW.failure_class IS NOT DISTINCT FROM OLD.failure_class
        AND NEW.failure IS NOT DISTINCT FROM OLD.failure
        AND NEW.retry_at IS NOT DISTINCT FROM OLD.retry_at;
BEGIN
    IF OLD.state = 'answered'
       OR NEW.state = 'planned'
       OR NEW.campaign IS DISTINCT FROM OLD.campaign
       OR NEW.number IS DISTINCT FROM OLD.number
       OR NEW.start_byte IS DISTINCT FROM OLD.start_byte
       OR NEW.end_byte IS DISTINCT FROM OLD.end_byte
       OR NEW.first_line IS DISTINCT FROM OLD.first_line
       OR NEW.skip IS DISTINCT FROM OLD.skip
       OR NEW.recipients IS DISTINCT FROM OLD.recipients
       -- A failed attempt recorded: the batch stays as it was, in flight.
       OR (NEW.state = 'sending' AND NEW.attempts = OLD.attempts
           AND (OLD.state IS DISTINCT FROM 'sending' OR NEW.since IS DISTINCT FROM OLD.since
                OR NEW.failed_attempt IS NULL OR NEW.failed_attempt > NEW.attempts
                OR NEW.failed_at IS NULL OR NEW.failure_class IS NULL OR NEW.failure IS NULL))
       -- Marked in flight once more: the last failure stays.
       OR (NEW.state = 'sending' AND NEW.attempts IS DISTINCT FROM OLD.attempts
           AND (NEW.attempts IS DISTINCT FROM OLD.attempts + 1 OR NOT failure_kept))
       -- Answered: the last failure stays, for the record.
       OR (NEW.state = 'answered' AND (OLD.state IS DISTINCT FROM 'sending'
                                       OR NEW.attempts IS DISTINCT FROM OLD.attempts
                                       OR NEW.since IS DISTINCT FROM OLD.since
                                       OR NOT failure_kept)) THEN
        RAISE EXCEPTION 'a campaign''s batch only moves forward: planned, sending, answered'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
