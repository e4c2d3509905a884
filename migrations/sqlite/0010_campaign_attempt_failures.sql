-- Each failed attempt of a campaign's batch leaves its reason on the batch's row, so that a
-- campaign whose channel keeps failing says why (on the dashboard, in `campaign status`) instead
-- of only in the server's log: which attempt failed, when, the class of the failure (for
-- `/metrics`), what the channel said (an HTTP status and the start of its answer, a refused
-- connection, an SMTP reply, a timeout) and when the batch is tried again (none once it is given
-- up). A later attempt keeps it, and so does the answer: it is the batch's last error, kept for
-- the record; whether it is current is whether the batch is still unanswered.

ALTER TABLE campaign_batches ADD COLUMN failed_attempt INTEGER CHECK (failed_attempt > 0);
ALTER TABLE campaign_batches ADD COLUMN failed_at TEXT;
ALTER TABLE campaign_batches ADD COLUMN failure_class TEXT
    CHECK (failure_class IN ('http_status', 'connection', 'timeout', 'smtp_reply', 'refused', 'local'));
ALTER TABLE campaign_batches ADD COLUMN failure TEXT;
ALTER TABLE campaign_batches ADD COLUMN retry_at TEXT;

-- As in 0008, and: a failure is recorded on a batch in flight, for an attempt it was marked
-- for, whole (all of it but the retry time, which a batch given up has not); nothing else of the
-- row changes with it, and neither a new attempt nor the answer changes it.
DROP TRIGGER campaign_batches_only_move_forward;

CREATE TRIGGER campaign_batches_only_move_forward BEFORE UPDATE ON campaign_batches
WHEN OLD.state = 'answered'
  OR NEW.state = 'planned'
  OR NEW.campaign IS NOT OLD.campaign
  OR NEW.number IS NOT OLD.number
  OR NEW.start_byte IS NOT OLD.start_byte
  OR NEW.end_byte IS NOT OLD.end_byte
  OR NEW.first_line IS NOT OLD.first_line
  OR NEW.skip IS NOT OLD.skip
  OR NEW.recipients IS NOT OLD.recipients
  -- A failed attempt recorded: the batch stays as it was, in flight.
  OR (NEW.state = 'sending' AND NEW.attempts IS OLD.attempts
      AND (OLD.state IS NOT 'sending' OR NEW.since IS NOT OLD.since
           OR NEW.failed_attempt IS NULL OR NEW.failed_attempt > NEW.attempts
           OR NEW.failed_at IS NULL OR NEW.failure_class IS NULL OR NEW.failure IS NULL))
  -- Marked in flight once more: the last failure stays.
  OR (NEW.state = 'sending' AND NEW.attempts IS NOT OLD.attempts
      AND (NEW.attempts IS NOT OLD.attempts + 1
           OR NEW.failed_attempt IS NOT OLD.failed_attempt OR NEW.failed_at IS NOT OLD.failed_at
           OR NEW.failure_class IS NOT OLD.failure_class OR NEW.failure IS NOT OLD.failure
           OR NEW.retry_at IS NOT OLD.retry_at))
  -- Answered: the last failure stays, for the record.
  OR (NEW.state = 'answered' AND (OLD.state IS NOT 'sending' OR NEW.attempts IS NOT OLD.attempts
                                  OR NEW.since IS NOT OLD.since
                                  OR NEW.failed_attempt IS NOT OLD.failed_attempt
                                  OR NEW.failed_at IS NOT OLD.failed_at
                                  OR NEW.failure_class IS NOT OLD.failure_class
                                  OR NEW.failure IS NOT OLD.failure
                                  OR NEW.retry_at IS NOT OLD.retry_at))
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s batch only moves forward: planned, sending, answered');
END;
