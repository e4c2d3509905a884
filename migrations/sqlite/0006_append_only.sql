-- The log is append-only, and the schema says so: an event or a checkpoint, once stored, is never
-- changed or deleted. Until now only inserts were guarded (0001, 0002). These triggers stop a bug
-- or a careless hand at the `sqlite3` prompt; they do not stop someone who can write the file, who
-- can drop them. Verification (docs/audit.md) is what catches that.

-- The one update allowed: chaining an event stored before the hash chain (0002), which gives it
-- its hash and its canonical JSON once (see `chain_unhashed` in src/store/sqlite/writer.rs). An
-- event that has a hash keeps it and everything else.
CREATE TRIGGER events_are_never_changed BEFORE UPDATE ON events
WHEN OLD.hash IS NOT NULL
  OR NEW.hash IS NULL
  OR NEW.incident IS NOT OLD.incident
  OR NEW.seq IS NOT OLD.seq
  OR NEW.type IS NOT OLD.type
  OR NEW.at IS NOT OLD.at
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: a stored event is never changed');
END;

CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: a stored event is never deleted');
END;

CREATE TRIGGER checkpoints_are_never_changed BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only: a stored checkpoint is never changed');
END;

CREATE TRIGGER checkpoints_are_never_deleted BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only: a stored checkpoint is never deleted');
END;
