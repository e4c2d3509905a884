-- Leases on the outbox's effects, so that several `phasegate serve` replicas (and a `phasegate
-- run` beside them) share one database without carrying out an effect twice (docs/replicas.md).
--
-- A replica claims an effect for a while (`lease_until`, database time) under a fencing token
-- drawn from `fence`: a claim is one short statement (`FOR UPDATE SKIP LOCKED`), never held while
-- the effect is carried out. The append that records the effect's result completes it only if
-- the row still carries the token it was claimed with, so a replica that paused past its lease
-- (and whose effect another replica claimed since, with a newer token) records nothing.
--
-- The lease columns have no index and the table keeps room in each page (fillfactor 70), so that
-- claims and renewals are HOT updates: no new index entries, and the dead rows they leave are
-- pruned within the page.

CREATE SEQUENCE fence;

ALTER TABLE outbox
    ADD COLUMN holder      TEXT,
    ADD COLUMN lease_until TIMESTAMPTZ,
    ADD COLUMN token       BIGINT;

ALTER TABLE outbox SET (fillfactor = 70);
