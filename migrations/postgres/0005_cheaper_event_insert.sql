-- An event's insert with less work on the server, the same rules (issue 16: one writer's appends
-- next to pgbench's single-row insert; the counts are in BENCHMARKS.md).
--
-- 0001's trigger read the incident's row locked (`SELECT ... FOR UPDATE`), then updated it: two
-- statements, and the row locked and then updated, two WAL records. Here the update is the
-- compare-and-set itself: it changes the row only where the version is the one before the event's
-- and the event's hash chains to the row's head, and an event that moves no row is refused. Of
-- two transactions appending at the same version, the second waits for the first's row lock and
-- then finds the version moved, as before.
--
-- Each CHECK constraint costs the server a reading of its stored expression in every statement
-- that inserts, and the hash's regular expression (`{64}` hex digits) cost about as much as
-- pgbench's whole one-row insert; with the foreign key's lookup of the incident's row (which the
-- update above finds anyway) they were more than a third of the server's instructions for an
-- event. They go, and the trigger, which runs for every inserted event anyway, checks what they
-- checked:
--   * the incident exists (the foreign key): the update finds its row, or the event is refused;
--     and an incident with events is never deleted, renamed or truncated (the triggers on
--     `incidents` below), which the foreign key refused too;
--   * `seq > 0`: the update asks for `version = seq - 1`, and `incidents.version >= 0`;
--   * the hash is 64 lowercase hex digits: it must equal `encode(sha256(...), 'hex')`;
--   * the event is JSON: cast in the trigger, which refuses it as the CHECK's cast did (SQLSTATE
--     22P02, invalid text representation).
-- Updates and deletes of events stay refused by 0001's `events_are_never_changed` and
-- `events_are_never_truncated`.

CREATE FUNCTION events_follow_their_head() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    is_json JSON;
    current_version BIGINT;
BEGIN
    is_json := NEW.event::json;
    UPDATE incidents
    SET version = NEW.seq,
        head = NEW.hash,
        updated_at = NEW.at,
        closed_at = CASE WHEN NEW.type = 'incident_closed' THEN coalesce(closed_at, NEW.at) ELSE closed_at END
    WHERE id = NEW.incident
      AND version = NEW.seq - 1
      AND NEW.hash = encode(sha256(
              coalesce(decode(head, 'hex'), '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
              || int8send(NEW.seq) || convert_to(NEW.event, 'UTF8')), 'hex');
    IF NOT FOUND THEN
        -- Which rule it broke, for the message; the refusal is the same.
        SELECT version INTO current_version FROM incidents WHERE id = NEW.incident;
        IF NOT FOUND OR NEW.seq IS DISTINCT FROM current_version + 1 THEN
            RAISE EXCEPTION 'the event does not follow the incident''s version' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RAISE EXCEPTION 'the event''s hash does not chain to the incident''s head' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER events_come_in_order ON events;
DROP FUNCTION events_come_in_order();
CREATE TRIGGER events_follow_their_head BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_follow_their_head();

ALTER TABLE events
    DROP CONSTRAINT events_incident_fkey,
    DROP CONSTRAINT events_seq_check,
    DROP CONSTRAINT events_hash_check,
    DROP CONSTRAINT events_event_check;

-- What the foreign key refused: the row of an incident that has events deleted or its id changed
-- (its events would name no incident), or the incidents truncated. phasegate never does any of
-- these; a statement that sets `id` is refused whatever it changes, and only such a statement runs
-- that trigger, since a row-level `BEFORE UPDATE` trigger would cost every event's update a lock of
-- the row before the update's own.
CREATE FUNCTION incidents_keep_their_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' OR EXISTS (SELECT 1 FROM events WHERE incident = OLD.id) THEN
        RAISE EXCEPTION 'an incident with events is never deleted, renamed or truncated'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END;
$$;

CREATE TRIGGER incidents_with_events_are_never_deleted BEFORE DELETE ON incidents
    FOR EACH ROW EXECUTE FUNCTION incidents_keep_their_events();
CREATE TRIGGER incidents_are_never_renamed BEFORE UPDATE OF id ON incidents
    FOR EACH STATEMENT EXECUTE FUNCTION incidents_keep_their_events();
CREATE TRIGGER incidents_are_never_truncated BEFORE TRUNCATE ON incidents
    FOR EACH STATEMENT EXECUTE FUNCTION incidents_keep_their_events();
