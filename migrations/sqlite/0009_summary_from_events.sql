-- An incident's version, head and last change are read from its latest event, through the events'
-- own key, instead of being copied into its `incidents` row by a trigger on every event. That copy
-- cost each commit a second page in the WAL (the `incidents` row's), written and flushed with the
-- events' own (measured in BENCHMARKS.md, "one incident"); now an event writes only the events'
-- pages, and the `incidents` row changes when an incident closes and when it is checkpointed.
--
-- The checks keep what they refused: an event is its incident's next one or it is refused (read
-- from the events' primary key, the incident's latest `seq`), and a checkpoint covers events its
-- incident has.

DROP TRIGGER events_move_the_summary;
DROP TRIGGER events_come_in_order;
DROP TRIGGER checkpoints_come_in_order;

-- An event is the next one of its incident or it is refused: the insert is the compare-and-set of
-- the incident's version, its latest event's position. An event of no incident is refused too.
CREATE TRIGGER events_come_in_order BEFORE INSERT ON events
WHEN NEW.seq IS NOT (
    SELECT coalesce((SELECT max(seq) FROM events WHERE incident = NEW.incident), 0) + 1
    FROM incidents
    WHERE id = NEW.incident
)
BEGIN
    SELECT RAISE(ABORT, 'the event does not follow the incident''s version');
END;

-- The one summary an event still writes: when its incident closed (the first close counts), which
-- the unique index of open incidents' keys (0001) needs.
CREATE TRIGGER events_close_the_incident AFTER INSERT ON events
WHEN NEW.type = 'incident_closed'
BEGIN
    UPDATE incidents SET closed_at = coalesce(closed_at, NEW.at) WHERE id = NEW.incident;
END;

-- A checkpoint is the incident's next one and covers events it has, more than the last one did.
CREATE TRIGGER checkpoints_come_in_order BEFORE INSERT ON checkpoints
WHEN NEW.number IS NOT (SELECT count(*) + 1 FROM checkpoints WHERE incident = NEW.incident)
  OR NEW.events > (SELECT max(seq) FROM events WHERE incident = NEW.incident)
  OR NEW.events <= (SELECT checkpointed FROM incidents WHERE id = NEW.incident)
BEGIN
    SELECT RAISE(ABORT, 'the checkpoint does not follow the incident''s last one');
END;

-- The copies go, so that nothing can read a stale one.
ALTER TABLE incidents DROP COLUMN version;
ALTER TABLE incidents DROP COLUMN head;
ALTER TABLE incidents DROP COLUMN updated_at;
