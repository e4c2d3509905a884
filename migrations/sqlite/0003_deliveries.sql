-- Webhook deliveries already taken: each is recorded in the transaction that stores what it did,
-- so a replay or a sender's retry finds it here and changes nothing.
CREATE TABLE deliveries (
    -- The configured source (`alertmanager`) and the delivery's id as that source gives it (or
    -- the SHA-256 of the body where the sender gives none).
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    incident     TEXT NOT NULL REFERENCES incidents (id),
    received_at  TEXT NOT NULL,
    PRIMARY KEY (source, id)
) STRICT, WITHOUT ROWID;
