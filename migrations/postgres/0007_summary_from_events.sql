-- An incident's version, head and last change are read from its latest event, and its checkpoint
-- from its latest checkpoint, each through the primary key of its own table, instead of being
-- written into its `incidents` row by every event and every checkpoint (SQLite's 0009 made the
-- same move for its own reason, the WAL).
--
-- Why (issue 16, BENCHMARKS.md "the held horizon"): PostgreSQL never changes a row in place; each
-- update leaves the old version behind, dead, for vacuum to remove once no snapshot can see it. An
-- update per event is one dead `incidents` row per event, and while a long transaction holds a
-- snapshot (a REPEATABLE READ report, a session left open) vacuum removes none of them: ten
-- minutes held left 95,064 dead row versions for as many events, unbounded. Events are only
-- inserted, so now an event leaves nothing dead behind; an incident's row changes once, when it
-- closes (`closed_at`, which the unique index of open incidents' keys, 0001, needs).
--
-- The rules stay: an event is its incident's next one and chains to its latest event's hash, or it
-- is refused. The trigger reads the incident's latest event through the primary key (incident,
-- seq); of two transactions appending at the same position, both may pass the trigger (neither sees
-- the other's uncommitted event), and the second then waits at the primary key for the first and
-- is refused by it (unique_violation, SQLSTATE class 23 like the trigger's own refusals) once the
-- first commits: the compare-and-set is the primary key's. The first event of an incident checks
-- that the incident exists and keeps its row from being deleted until the event commits
-- (`FOR KEY SHARE`, the lock a foreign key takes; it writes no new row version).
--
-- What people (and phasegate) read: the views `incident_heads` (each incident with its version,
-- head and last change) and `incident_summaries` (with its latest checkpoint too).

CREATE FUNCTION events_follow_their_latest() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    is_json JSON;
    latest_seq BIGINT;
    latest_hash TEXT;
BEGIN
    is_json := NEW.event::json;
    SELECT seq, hash INTO latest_seq, latest_hash FROM events WHERE incident = NEW.incident ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        PERFORM 1 FROM incidents WHERE id = NEW.incident FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the event does not follow the incident''s version' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        latest_seq := 0;
    END IF;
    IF NEW.seq IS DISTINCT FROM latest_seq + 1 THEN
        RAISE EXCEPTION 'the event does not follow the incident''s version' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.hash IS DISTINCT FROM encode(sha256(
            coalesce(decode(latest_hash, 'hex'), '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
            || int8send(NEW.seq) || convert_to(NEW.event, 'UTF8')), 'hex') THEN
        RAISE EXCEPTION 'the event''s hash does not chain to the incident''s head' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- The one change an event still makes to its incident's row: when it closed (the first close
    -- counts, and a second writes nothing).
    IF NEW.type = 'incident_closed' THEN
        UPDATE incidents SET closed_at = NEW.at WHERE id = NEW.incident AND closed_at IS NULL;
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER events_follow_their_head ON events;
DROP FUNCTION events_follow_their_head();
CREATE TRIGGER events_follow_their_latest BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_follow_their_latest();

-- A checkpoint is the incident's next one and covers events it has, more than the last one did.
-- Of two transactions storing the same number, the primary key refuses the second.
CREATE OR REPLACE FUNCTION checkpoints_come_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    latest_number BIGINT;
    covered BIGINT;
    current_version BIGINT;
BEGIN
    SELECT number, events INTO latest_number, covered FROM checkpoints WHERE incident = NEW.incident
        ORDER BY number DESC LIMIT 1;
    SELECT seq INTO current_version FROM events WHERE incident = NEW.incident ORDER BY seq DESC LIMIT 1;
    IF current_version IS NULL OR NEW.number IS DISTINCT FROM coalesce(latest_number, 0) + 1
       OR NEW.events > current_version OR NEW.events <= coalesce(covered, 0) THEN
        RAISE EXCEPTION 'the checkpoint does not follow the incident''s last one' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

-- Each incident with its version (how many events it has: the version the next append must
-- expect), head (its latest event's hash, in hex; NULL before the first) and last change.
CREATE VIEW incident_heads AS
SELECT incidents.id, incidents.runbook_id, incidents.key, incidents.started_at, incidents.closed_at,
       coalesce(latest.seq, 0) AS version, latest.hash AS head, coalesce(latest.at, incidents.started_at) AS updated_at
FROM incidents
LEFT JOIN LATERAL (
    SELECT seq, hash, at FROM events WHERE events.incident = incidents.id ORDER BY seq DESC LIMIT 1
) AS latest ON true;

-- And the events and time covered by its latest checkpoint (0 and NULL before the first).
CREATE VIEW incident_summaries AS
SELECT heads.id, heads.runbook_id, heads.key, heads.version, heads.started_at, heads.updated_at, heads.closed_at,
       heads.head, coalesce(signed.events, 0) AS checkpointed, signed.at AS checkpointed_at
FROM incident_heads AS heads
LEFT JOIN LATERAL (
    SELECT events, at FROM checkpoints WHERE checkpoints.incident = heads.id ORDER BY number DESC LIMIT 1
) AS signed ON true;

ALTER TABLE incidents
    DROP COLUMN version,
    DROP COLUMN head,
    DROP COLUMN updated_at,
    DROP COLUMN checkpointed,
    DROP COLUMN checkpointed_at;
