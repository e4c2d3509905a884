-- The PostgreSQL store: the same tables and the same rules as the SQLite store (migrations/sqlite,
-- 0001 to 0008), in one migration, since PostgreSQL starts where SQLite is now. Its own numbering:
-- a change to one backend's schema is a new file in that backend's folder.
--
-- Migrations are append-only: change the schema with a new file, never by editing this one, since
-- sqlx records each applied migration's checksum and refuses a database whose history differs.
--
-- Times are text, RFC 3339 in UTC with nanoseconds, fixed width (src/store/rows.rs), exactly as
-- SQLite keeps them, so that a store copied from SQLite holds the same values and they sort as
-- text in the order of the times. Events are text too, never jsonb: the log keeps each event's
-- canonical JSON byte for byte, since its hash covers those bytes.
--
-- The rules are the triggers' (they refuse with SQLSTATE class 23, integrity constraint
-- violation, which the store reads as a refusal): they stop a bug or a careless hand at the psql
-- prompt, not someone who can drop them. Verification (docs/audit.md) is what catches that.

-- One row per incident, moved along by every event, so that listing incidents and finding one by
-- its deduplication key never folds a log.
CREATE TABLE incidents (
    id               TEXT PRIMARY KEY,
    runbook_id       TEXT NOT NULL,
    -- The deduplication key of the trigger that started it, if one did.
    key              TEXT,
    -- How many events the incident has: the version the next append must expect.
    version          BIGINT NOT NULL DEFAULT 0 CHECK (version >= 0),
    started_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    closed_at        TEXT,
    -- The hash of its latest event, in hex: what its next event chains to.
    head             TEXT,
    -- The events and time covered by its latest checkpoint.
    checkpointed     BIGINT NOT NULL DEFAULT 0,
    checkpointed_at  TEXT
);

-- The same alert twice must not open two incidents: at most one open incident per runbook and key.
CREATE UNIQUE INDEX incidents_open_key ON incidents (runbook_id, key) WHERE key IS NOT NULL AND closed_at IS NULL;
-- Listing incidents in the order they started.
CREATE INDEX incidents_started ON incidents (started_at, id);

-- The log.
CREATE TABLE events (
    incident  TEXT NOT NULL REFERENCES incidents (id),
    -- 1-based position in the incident's log.
    seq       BIGINT NOT NULL CHECK (seq > 0),
    -- The event's type and time, copied out of the JSON for the trigger below and for people
    -- reading the database; the JSON is what phasegate reads.
    type      TEXT NOT NULL,
    at        TEXT NOT NULL,
    event     TEXT NOT NULL CHECK (event::json IS NOT NULL),
    -- SHA-256 of the previous event's hash, the event's position (8 bytes, big-endian) and its
    -- canonical JSON, in hex (src/audit/chain.rs).
    hash      TEXT NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (incident, seq)
);

-- An event is the next one of its incident, chained to its head, or it is refused: the insert is
-- the compare-and-set of the incident's version. The incident's row is locked first, so that of two
-- transactions appending at the same version the second waits for the first and then finds the
-- version moved. The summary follows in the same statement, so it cannot drift from the events.
CREATE FUNCTION events_come_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_version BIGINT;
    current_head TEXT;
BEGIN
    SELECT version, head INTO current_version, current_head FROM incidents WHERE id = NEW.incident FOR UPDATE;
    IF NOT FOUND OR NEW.seq <> current_version + 1 THEN
        RAISE EXCEPTION 'the event does not follow the incident''s version' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.hash IS DISTINCT FROM encode(sha256(
            coalesce(decode(current_head, 'hex'), decode(repeat('00', 32), 'hex'))
            || int8send(NEW.seq) || convert_to(NEW.event, 'UTF8')), 'hex') THEN
        RAISE EXCEPTION 'the event''s hash does not chain to the incident''s head' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    UPDATE incidents
    SET version = NEW.seq,
        head = NEW.hash,
        updated_at = NEW.at,
        closed_at = CASE WHEN NEW.type = 'incident_closed' THEN coalesce(closed_at, NEW.at) ELSE closed_at END
    WHERE id = NEW.incident;
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_come_in_order BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_come_in_order();

-- What is append-only refuses every change but an insert.
CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only: a stored row is never changed or deleted', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER events_are_never_changed BEFORE UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION append_only();

-- Side effects decided together with the events that caused them, and marked done in the same
-- transaction as the events that record their result.
CREATE TABLE outbox (
    -- The order the effects were put in the outbox.
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    -- The effect's id, unique among all incidents' effects, so an effect is never queued twice.
    id          TEXT NOT NULL UNIQUE,
    incident    TEXT NOT NULL REFERENCES incidents (id),
    effect      TEXT NOT NULL CHECK (effect::json IS NOT NULL),
    created_at  TEXT NOT NULL,
    done_at     TEXT
);

-- What the runtime asks for after a restart: the effects not yet done, oldest first.
CREATE INDEX outbox_pending ON outbox (seq) WHERE done_at IS NULL;

-- Signed checkpoints, each as the canonical JSON that was signed, with its signature.
CREATE TABLE checkpoints (
    incident   TEXT NOT NULL REFERENCES incidents (id),
    number     BIGINT NOT NULL CHECK (number > 0),
    -- Copied out of the body for the trigger below; the body is what is verified.
    events     BIGINT NOT NULL CHECK (events > 0),
    at         TEXT NOT NULL,
    body       TEXT NOT NULL CHECK (body::json IS NOT NULL),
    signature  TEXT NOT NULL,
    PRIMARY KEY (incident, number)
);

-- A checkpoint is the incident's next one and covers events it has, more than the last one did.
CREATE FUNCTION checkpoints_come_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_version BIGINT;
    covered BIGINT;
    last_number BIGINT;
BEGIN
    SELECT version, checkpointed INTO current_version, covered FROM incidents WHERE id = NEW.incident FOR UPDATE;
    SELECT coalesce(max(number), 0) INTO last_number FROM checkpoints WHERE incident = NEW.incident;
    IF current_version IS NULL OR NEW.number <> last_number + 1 OR NEW.events > current_version
       OR NEW.events <= covered THEN
        RAISE EXCEPTION 'the checkpoint does not follow the incident''s last one' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    UPDATE incidents SET checkpointed = NEW.events, checkpointed_at = NEW.at WHERE id = NEW.incident;
    RETURN NEW;
END;
$$;

CREATE TRIGGER checkpoints_come_in_order BEFORE INSERT ON checkpoints FOR EACH ROW EXECUTE FUNCTION checkpoints_come_in_order();
CREATE TRIGGER checkpoints_are_never_changed BEFORE UPDATE OR DELETE ON checkpoints FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER checkpoints_are_never_truncated BEFORE TRUNCATE ON checkpoints FOR EACH STATEMENT EXECUTE FUNCTION append_only();

-- Webhook deliveries already taken: each is recorded in the transaction that stores what it did,
-- so a replay or a sender's retry finds it here and changes nothing.
CREATE TABLE deliveries (
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    incident     TEXT NOT NULL REFERENCES incidents (id),
    received_at  TEXT NOT NULL,
    PRIMARY KEY (source, id)
);

-- Webhook deliveries as they arrived, kept before their senders are answered and applied
-- afterwards in the order received. Once applied, the body and headers are let go and the row
-- stays, with what the delivery did, so that a replay is still recognised by the unique key.
CREATE TABLE inbox (
    seq          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    -- The request headers kept, a JSON object; NULL when none were kept, and once applied.
    headers      TEXT CHECK (headers IS NULL OR json_typeof(headers::json) = 'object'),
    -- The raw body as signed; NULL once applied.
    body         BYTEA,
    applied_at   TEXT,
    -- JSON: what each trigger did with it.
    outcome      TEXT,
    UNIQUE (source, id),
    CHECK ((applied_at IS NULL) = (outcome IS NULL)),
    CHECK (applied_at IS NOT NULL OR body IS NOT NULL)
);

-- The deliveries still to apply, in order.
CREATE INDEX inbox_waiting ON inbox (seq) WHERE applied_at IS NULL;

-- The first `seq` whose actions are stored as `#SEQ/N` (see migrations/sqlite/0005): every
-- delivery here, unless the store was copied from a SQLite file whose older deliveries kept their
-- own ids (`phasegate db copy` writes that file's value).
CREATE TABLE inbox_numbered (
    since  BIGINT NOT NULL
);

INSERT INTO inbox_numbered (since) VALUES (1);

-- Customer campaigns' progress (see migrations/sqlite/0008): a plan, batches that only move
-- forward, and what an answer recorded, never changed or deleted.
CREATE TABLE campaigns (
    -- The order campaigns were planned.
    seq       BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE,
    -- The campaign's key: `INCIDENT/PHASE/STEP`.
    id        TEXT PRIMARY KEY,
    incident  TEXT NOT NULL,
    batches   BIGINT NOT NULL CHECK (batches >= 0)
);

CREATE INDEX campaigns_of_incident ON campaigns (incident, seq);

CREATE TABLE campaign_batches (
    campaign     TEXT NOT NULL REFERENCES campaigns (id),
    number       BIGINT NOT NULL CHECK (number > 0),
    start_byte   BIGINT NOT NULL CHECK (start_byte >= 0),
    end_byte     BIGINT NOT NULL CHECK (end_byte >= start_byte),
    first_line   BIGINT NOT NULL CHECK (first_line >= 0),
    skip         TEXT NOT NULL CHECK (skip::json IS NOT NULL),
    recipients   BIGINT NOT NULL CHECK (recipients >= 0),
    state        TEXT NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'sending', 'answered')),
    attempts     BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    since        TEXT,
    answered_at  TEXT,
    sent         BIGINT CHECK (sent >= 0),
    failed       BIGINT CHECK (failed >= 0),
    PRIMARY KEY (campaign, number),
    CHECK ((state = 'planned') = (attempts = 0 AND since IS NULL)),
    CHECK ((state = 'answered') = (answered_at IS NOT NULL AND sent IS NOT NULL AND failed IS NOT NULL)),
    CHECK (state <> 'answered' OR sent + failed = recipients)
);

-- Batches are planned with their campaign, numbered 1 to n in order, and start planned.
CREATE FUNCTION campaign_batches_are_planned_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM 'planned'
       OR NEW.number IS DISTINCT FROM
          (SELECT coalesce(max(number), 0) + 1 FROM campaign_batches WHERE campaign = NEW.campaign)
       OR NEW.number > (SELECT batches FROM campaigns WHERE id = NEW.campaign) THEN
        RAISE EXCEPTION 'a campaign''s batches are planned once, numbered 1 to n in order'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER campaign_batches_are_planned_in_order BEFORE INSERT ON campaign_batches
    FOR EACH ROW EXECUTE FUNCTION campaign_batches_are_planned_in_order();

-- Planned, then sending (one more attempt each time it is marked), then answered, for good; the
-- plan itself never changes.
CREATE FUNCTION campaign_batches_only_move_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'answered'
       OR NEW.state = 'planned'
       OR NEW.campaign IS DISTINCT FROM OLD.campaign
       OR NEW.number IS DISTINCT FROM OLD.number
       OR NEW.start_byte IS DISTINCT FROM OLD.start_byte
       OR NEW.end_byte IS DISTINCT FROM OLD.end_byte
       OR NEW.first_line IS DISTINCT FROM OLD.first_line
       OR NEW.skip IS DISTINCT FROM OLD.skip
       OR NEW.recipients IS DISTINCT FROM OLD.recipients
       OR (NEW.state = 'sending' AND NEW.attempts IS DISTINCT FROM OLD.attempts + 1)
       OR (NEW.state = 'answered' AND (OLD.state IS DISTINCT FROM 'sending'
                                       OR NEW.attempts IS DISTINCT FROM OLD.attempts
                                       OR NEW.since IS DISTINCT FROM OLD.since)) THEN
        RAISE EXCEPTION 'a campaign''s batch only moves forward: planned, sending, answered'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER campaign_batches_only_move_forward BEFORE UPDATE ON campaign_batches
    FOR EACH ROW EXECUTE FUNCTION campaign_batches_only_move_forward();
CREATE TRIGGER campaign_batches_are_never_deleted BEFORE DELETE ON campaign_batches
    FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER campaigns_are_never_changed BEFORE UPDATE OR DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- The recipients an answer says were not sent, for good, in the order it gave them (`seq`).
CREATE TABLE campaign_failures (
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    campaign   TEXT NOT NULL,
    number     BIGINT NOT NULL,
    recipient  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    FOREIGN KEY (campaign, number) REFERENCES campaign_batches (campaign, number)
);

CREATE INDEX campaign_failures_of_batch ON campaign_failures (campaign, number, seq);

-- Each answered batch's Merkle leaves, as the answer gave them.
CREATE TABLE campaign_leaves (
    campaign  TEXT NOT NULL,
    number    BIGINT NOT NULL,
    leaves    BYTEA NOT NULL,
    PRIMARY KEY (campaign, number),
    FOREIGN KEY (campaign, number) REFERENCES campaign_batches (campaign, number)
);

-- Failures and leaves come with an answer, written after the batch is marked answered in the same
-- transaction: a batch not answered has neither.
CREATE FUNCTION campaign_answer_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT state FROM campaign_batches WHERE campaign = NEW.campaign AND number = NEW.number)
       IS DISTINCT FROM 'answered' THEN
        RAISE EXCEPTION 'a campaign''s % are recorded with the answer of their batch', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER campaign_failures_follow_an_answer BEFORE INSERT ON campaign_failures
    FOR EACH ROW EXECUTE FUNCTION campaign_answer_recorded();
CREATE TRIGGER campaign_leaves_follow_an_answer BEFORE INSERT ON campaign_leaves
    FOR EACH ROW EXECUTE FUNCTION campaign_answer_recorded();
CREATE TRIGGER campaign_failures_are_never_changed BEFORE UPDATE OR DELETE ON campaign_failures
    FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER campaign_leaves_are_never_changed BEFORE UPDATE OR DELETE ON campaign_leaves
    FOR EACH ROW EXECUTE FUNCTION append_only();
