-- Webhook deliveries as they arrived. A delivery is kept here (group-committed with whatever else
-- the writer is storing) before its sender is answered, and the server's inbox task applies it to
-- incidents afterwards, in the order received. The unique key refuses a replay or a retry of a
-- delivery already received; once applied, the body is let go and the row stays, with what the
-- delivery did, so that a replay is still recognised.
CREATE TABLE inbox (
    seq          INTEGER PRIMARY KEY,
    -- The configured source and the delivery's id there (or the SHA-256 of the signed body).
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    -- The raw body as signed; NULL once applied.
    body         BLOB,
    applied_at   TEXT,
    -- JSON: what each trigger did with it.
    outcome      TEXT,
    UNIQUE (source, id),
    CHECK ((applied_at IS NULL) = (outcome IS NULL)),
    CHECK (applied_at IS NOT NULL OR body IS NOT NULL)
) STRICT;

-- The deliveries still to apply, in order.
CREATE INDEX inbox_waiting ON inbox (seq) WHERE applied_at IS NULL;
