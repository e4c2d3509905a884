-- Customer campaigns' progress: each campaign's plan (its list cut into numbered batches), how far
-- each batch has come (planned, marked in flight, answered), the recipients an answer says were
-- not sent, and each answered batch's Merkle leaves. A campaign resumes from here after a crash:
-- an answered batch is never sent again, and one found in flight is a possible repeat. So the
-- schema lets a batch only move forward, and never changes or deletes what an answer recorded.

-- One row per campaign, written with its plan: a campaign is planned once.
CREATE TABLE campaigns (
    -- The campaign's key: `INCIDENT/PHASE/STEP`.
    id        TEXT PRIMARY KEY NOT NULL,
    -- What the key begins with, to list an incident's campaigns.
    incident  TEXT NOT NULL,
    -- How many batches its plan has.
    batches   INTEGER NOT NULL CHECK (batches >= 0)
) STRICT;

CREATE INDEX campaigns_of_incident ON campaigns (incident);

CREATE TABLE campaign_batches (
    campaign     TEXT NOT NULL REFERENCES campaigns (id),
    number       INTEGER NOT NULL CHECK (number > 0),
    -- The plan (`campaign::BatchPlan`): the byte range of the list, its first line, the lines in
    -- it not sent (a JSON array of line numbers) and the recipients it sends to.
    start_byte   INTEGER NOT NULL CHECK (start_byte >= 0),
    end_byte     INTEGER NOT NULL CHECK (end_byte >= start_byte),
    first_line   INTEGER NOT NULL CHECK (first_line >= 0),
    skip         TEXT NOT NULL CHECK (json_valid(skip)),
    recipients   INTEGER NOT NULL CHECK (recipients >= 0),
    state        TEXT NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'sending', 'answered')),
    -- How many times it was marked in flight, the last time when, and its answer.
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    since        TEXT,
    answered_at  TEXT,
    sent         INTEGER CHECK (sent >= 0),
    failed       INTEGER CHECK (failed >= 0),
    PRIMARY KEY (campaign, number),
    CHECK ((state = 'planned') = (attempts = 0 AND since IS NULL)),
    CHECK ((state = 'answered') = (answered_at IS NOT NULL AND sent IS NOT NULL AND failed IS NOT NULL)),
    -- An answer accounts for each of the batch's recipients once.
    CHECK (state <> 'answered' OR sent + failed = recipients)
) STRICT;

-- Batches are planned with their campaign, numbered 1 to n in order, and start planned.
CREATE TRIGGER campaign_batches_are_planned_in_order BEFORE INSERT ON campaign_batches
WHEN NEW.state IS NOT 'planned'
  OR NEW.number IS NOT (SELECT coalesce(max(number), 0) + 1 FROM campaign_batches WHERE campaign = NEW.campaign)
  OR NEW.number > (SELECT batches FROM campaigns WHERE id = NEW.campaign)
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s batches are planned once, numbered 1 to n in order');
END;

-- Planned, then sending (one more attempt each time it is marked), then answered, for good; the
-- plan itself never changes.
CREATE TRIGGER campaign_batches_only_move_forward BEFORE UPDATE ON campaign_batches
WHEN OLD.state = 'answered'
  OR NEW.state = 'planned'
  OR NEW.campaign IS NOT OLD.campaign
  OR NEW.number IS NOT OLD.number
  OR NEW.start_byte IS NOT OLD.start_byte
  OR NEW.end_byte IS NOT OLD.end_byte
  OR NEW.first_line IS NOT OLD.first_line
  OR NEW.skip IS NOT OLD.skip
  OR NEW.recipients IS NOT OLD.recipients
  OR (NEW.state = 'sending' AND NEW.attempts IS NOT OLD.attempts + 1)
  OR (NEW.state = 'answered' AND (OLD.state IS NOT 'sending' OR NEW.attempts IS NOT OLD.attempts
                                  OR NEW.since IS NOT OLD.since))
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s batch only moves forward: planned, sending, answered');
END;

CREATE TRIGGER campaign_batches_are_never_deleted BEFORE DELETE ON campaign_batches
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s batches are never deleted');
END;

CREATE TRIGGER campaigns_are_never_changed BEFORE UPDATE ON campaigns
BEGIN
    SELECT RAISE(ABORT, 'a campaign is planned once and never changed');
END;

CREATE TRIGGER campaigns_are_never_deleted BEFORE DELETE ON campaigns
BEGIN
    SELECT RAISE(ABORT, 'a campaign is never deleted');
END;

-- The recipients an answer says were not sent, for good, in the order it gave them.
CREATE TABLE campaign_failures (
    campaign   TEXT NOT NULL,
    number     INTEGER NOT NULL,
    recipient  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    FOREIGN KEY (campaign, number) REFERENCES campaign_batches (campaign, number)
) STRICT;

CREATE INDEX campaign_failures_of_batch ON campaign_failures (campaign, number);

-- Each answered batch's Merkle leaves, as the answer gave them (about 60 KB a batch): a table of
-- their own, so that reading the batches' states never reads past them.
CREATE TABLE campaign_leaves (
    campaign  TEXT NOT NULL,
    number    INTEGER NOT NULL,
    leaves    BLOB NOT NULL,
    PRIMARY KEY (campaign, number),
    FOREIGN KEY (campaign, number) REFERENCES campaign_batches (campaign, number)
) STRICT;

-- Failures and leaves come with an answer, written after the batch is marked answered in the same
-- transaction: a batch not answered has neither.
CREATE TRIGGER campaign_failures_follow_an_answer BEFORE INSERT ON campaign_failures
WHEN (SELECT state FROM campaign_batches WHERE campaign = NEW.campaign AND number = NEW.number) IS NOT 'answered'
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s failures are recorded with the answer of their batch');
END;

CREATE TRIGGER campaign_leaves_follow_an_answer BEFORE INSERT ON campaign_leaves
WHEN (SELECT state FROM campaign_batches WHERE campaign = NEW.campaign AND number = NEW.number) IS NOT 'answered'
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s Merkle leaves are recorded with the answer of their batch');
END;

CREATE TRIGGER campaign_failures_are_never_changed BEFORE UPDATE ON campaign_failures
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s failures are never changed');
END;

CREATE TRIGGER campaign_failures_are_never_deleted BEFORE DELETE ON campaign_failures
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s failures are never deleted');
END;

CREATE TRIGGER campaign_leaves_are_never_changed BEFORE UPDATE ON campaign_leaves
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s Merkle leaves are never changed');
END;

CREATE TRIGGER campaign_leaves_are_never_deleted BEFORE DELETE ON campaign_leaves
BEGIN
    SELECT RAISE(ABORT, 'a campaign''s Merkle leaves are never deleted');
END;
