-- The event store: each incident's events, a summary row per incident kept in the same
-- transaction as its events, and the outbox of side effects still to carry out.
--
-- Migrations are append-only: change the schema with a new file, never by editing this one, since
-- sqlx records each applied migration's checksum and refuses a database whose history differs.

-- One row per incident, moved along by every event (see the triggers below), so that listing
-- incidents and finding one by its deduplication key never folds a log.
CREATE TABLE incidents (
    id          TEXT PRIMARY KEY NOT NULL,
    runbook_id  TEXT NOT NULL,
    -- The deduplication key of the trigger that started it, if one did.
    key         TEXT,
    -- How many events the incident has: the version the next append must expect.
    version     INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
    -- Times are RFC 3339 in UTC with nanoseconds, fixed width, so they sort as text.
    started_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    closed_at   TEXT
) STRICT;

-- The same alert twice must not open two incidents: at most one open incident per runbook and key.
CREATE UNIQUE INDEX incidents_open_key ON incidents (runbook_id, key) WHERE key IS NOT NULL AND closed_at IS NULL;

-- The log.
CREATE TABLE events (
    incident  TEXT NOT NULL REFERENCES incidents (id),
    -- 1-based position in the incident's log.
    seq       INTEGER NOT NULL CHECK (seq > 0),
    -- The event's type (`phase_started`) and time, copied out of the JSON for the triggers below
    -- and for people reading the database; the JSON is what phasegate reads.
    type      TEXT NOT NULL,
    at        TEXT NOT NULL,
    event     TEXT NOT NULL CHECK (json_valid(event)),
    PRIMARY KEY (incident, seq)
) STRICT, WITHOUT ROWID;

-- An event is the next one of its incident or it is refused: the insert is the compare-and-set of
-- the incident's version, so two writers that expected the same version can never both win,
-- whatever the code that writes them does.
CREATE TRIGGER events_come_in_order BEFORE INSERT ON events
WHEN NEW.seq IS NOT (SELECT version + 1 FROM incidents WHERE id = NEW.incident)
BEGIN
    SELECT RAISE(ABORT, 'the event does not follow the incident''s version');
END;

-- The summary follows the events in the same statement, so it cannot drift from them.
CREATE TRIGGER events_move_the_summary AFTER INSERT ON events
BEGIN
    UPDATE incidents
    SET version = NEW.seq,
        updated_at = NEW.at,
        closed_at = CASE WHEN NEW.type = 'incident_closed' THEN coalesce(closed_at, NEW.at) ELSE closed_at END
    WHERE id = NEW.incident;
END;

-- Side effects decided together with the events that caused them, and marked done in the same
-- transaction as the events that record their result.
CREATE TABLE outbox (
    -- The order the effects were put in the outbox.
    seq         INTEGER PRIMARY KEY,
    -- The effect's id, unique among all incidents' effects, so an effect is never queued twice.
    id          TEXT NOT NULL UNIQUE,
    incident    TEXT NOT NULL REFERENCES incidents (id),
    effect      TEXT NOT NULL CHECK (json_valid(effect)),
    created_at  TEXT NOT NULL,
    done_at     TEXT
) STRICT;

-- What the runtime asks for after a restart: the effects not yet done, oldest first.
CREATE INDEX outbox_pending ON outbox (seq) WHERE done_at IS NULL;
