-- The dashboard's timeline shows an incident's events a page at a time, newest first, of one type
-- or all, with how many events of each type the log holds. Without this index, a page of a rare
-- type and the count by type read every row of the log (the events' JSON with them); with it,
-- both read only index entries, and a page's events are then looked up by position.
CREATE INDEX events_by_type ON events (incident, type, seq);
