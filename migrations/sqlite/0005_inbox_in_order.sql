-- The inbox without its unique key. Delivery ids are random (a sender's UUID, or a body's
-- SHA-256), so a unique index on them took one page written to the WAL for every delivery
-- received, which was most of what a webhook storm's commits cost. Now a received delivery writes
-- only the inbox's newest page: the writer knows the deliveries waiting (it inserted them, and
-- reads them back when it opens), and the ids of those applied are kept in `received`, written in
-- the transaction that marks them applied, in large sorted batches away from the senders' wait.
-- A delivery is new when it is neither waiting nor in `received`.
CREATE TABLE received (
    source  TEXT NOT NULL,
    id      TEXT NOT NULL,
    -- The delivery's row in the inbox.
    seq     INTEGER NOT NULL,
    PRIMARY KEY (source, id)
) STRICT, WITHOUT ROWID;

INSERT INTO received (source, id, seq) SELECT source, id, seq FROM inbox WHERE applied_at IS NOT NULL;

-- SQLite drops no constraint in place: the table is rebuilt, its rows and their `seq` kept.
CREATE TABLE inbox_in_order (
    -- Never given twice, even if rows are deleted: actions are stored under it (below).
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The configured source and the delivery's id there (or the SHA-256 of the signed body).
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    -- The raw body as signed; NULL once applied.
    body         BLOB,
    applied_at   TEXT,
    -- JSON: what each trigger did with it.
    outcome      TEXT,
    CHECK ((applied_at IS NULL) = (outcome IS NULL)),
    CHECK (applied_at IS NOT NULL OR body IS NOT NULL)
) STRICT;

INSERT INTO inbox_in_order (seq, source, id, received_at, body, applied_at, outcome)
    SELECT seq, source, id, received_at, body, applied_at, outcome FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox_in_order RENAME TO inbox;

-- The deliveries still to apply, in order.
CREATE INDEX inbox_waiting ON inbox (seq) WHERE applied_at IS NULL;

-- Each action a delivery asks for is stored with an id of its own in `deliveries`, so that
-- applying it again after a crash does nothing twice. Those ids were the delivery's id and the
-- action's number (`ID/N`), random like the ids, one index page written per action; from here on
-- they are its place in the inbox (`#SEQ/N`, zero-padded so that they sort in order). A delivery
-- received before keeps its old ids, so that one applied halfway before the upgrade does the rest
-- and nothing twice.
CREATE TABLE inbox_numbered (
    -- The first `seq` whose actions are numbered by it.
    since  INTEGER NOT NULL
) STRICT;

INSERT INTO inbox_numbered (since) SELECT coalesce(max(seq), 0) + 1 FROM inbox;
