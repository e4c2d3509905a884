-- The audit trail: every event carries the hash that chains it to the one before (see
-- src/audit/chain.rs and docs/audit.md), and signed checkpoints vouch for an incident's head.
--
-- Events stored before this migration have no hash yet; phasegate chains them when it opens the
-- database (SqliteStore::open), before anything else is appended.

-- The event's hash, in hex: SHA-256 of the previous event's hash, the event's position and its
-- canonical JSON (the `event` column holds exactly that JSON).
ALTER TABLE events ADD COLUMN hash TEXT CHECK (hash IS NULL OR length(hash) = 64);

-- The hash of the incident's latest event: what its next event chains to.
ALTER TABLE incidents ADD COLUMN head TEXT;
-- The events and time covered by the incident's latest checkpoint.
ALTER TABLE incidents ADD COLUMN checkpointed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN checkpointed_at TEXT;

-- Every new event is chained.
CREATE TRIGGER events_are_chained BEFORE INSERT ON events
WHEN NEW.hash IS NULL
BEGIN
    SELECT RAISE(ABORT, 'an event needs its hash');
END;

DROP TRIGGER events_move_the_summary;
CREATE TRIGGER events_move_the_summary AFTER INSERT ON events
BEGIN
    UPDATE incidents
    SET version = NEW.seq,
        head = NEW.hash,
        updated_at = NEW.at,
        closed_at = CASE WHEN NEW.type = 'incident_closed' THEN coalesce(closed_at, NEW.at) ELSE closed_at END
    WHERE id = NEW.incident;
END;

-- Signed checkpoints, each as the canonical JSON that was signed, with its signature.
CREATE TABLE checkpoints (
    incident   TEXT NOT NULL REFERENCES incidents (id),
    number     INTEGER NOT NULL CHECK (number > 0),
    -- Copied out of the body for the triggers below; the body is what is verified.
    events     INTEGER NOT NULL CHECK (events > 0),
    at         TEXT NOT NULL,
    body       TEXT NOT NULL CHECK (json_valid(body)),
    signature  TEXT NOT NULL,
    PRIMARY KEY (incident, number)
) STRICT, WITHOUT ROWID;

-- A checkpoint is the incident's next one and covers events it has, more than the last one did.
CREATE TRIGGER checkpoints_come_in_order BEFORE INSERT ON checkpoints
WHEN NEW.number IS NOT (SELECT count(*) + 1 FROM checkpoints WHERE incident = NEW.incident)
  OR NEW.events > (SELECT version FROM incidents WHERE id = NEW.incident)
  OR NEW.events <= (SELECT checkpointed FROM incidents WHERE id = NEW.incident)
BEGIN
    SELECT RAISE(ABORT, 'the checkpoint does not follow the incident''s last one');
END;

CREATE TRIGGER checkpoints_move_the_summary AFTER INSERT ON checkpoints
BEGIN
    UPDATE incidents SET checkpointed = NEW.events, checkpointed_at = NEW.at WHERE id = NEW.incident;
END;
