-- Leases on named shares of work besides the outbox's effects (0002), so that several `phasegate
-- serve` replicas sharing one database never do one of them at once (docs/replicas.md): the
-- webhook inbox (`inbox`: one replica applies the deliveries, in the order received) and each
-- open incident's ticks, timers, checks and checkpoint signing (`incident/ID`).
--
-- One row per name, claimed as the outbox's effects are: a short statement that inserts the names
-- never claimed and takes, with `FOR UPDATE SKIP LOCKED`, those whose lease ran out (database
-- time), each with a new token from `fence`. A holder renews its own leases by claiming them
-- again, keeping its token. What is written under a lease (a tick's events, the inbox's
-- applications and marks, a checkpoint) is stored only if the row still carries the token it was
-- claimed with; the writer locks the row (`FOR SHARE`) while it writes, so a claim skips it then.
--
-- As on `outbox`, the lease columns have no index and the table keeps room in each page
-- (fillfactor 70), so that claims and renewals are HOT updates pruned within their page.

CREATE TABLE leases (
    name         TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL,
    token        BIGINT NOT NULL
) WITH (fillfactor = 70);
