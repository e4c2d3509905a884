//! `phasegate db copy`: an embedded deployment's SQLite file moved into an empty PostgreSQL
//! database, row for row: every incident with its events (their canonical JSON and hashes as
//! stored), checkpoints, the outbox, the deliveries taken, the webhook inbox and campaigns'
//! progress.
//!
//! The copy is one PostgreSQL transaction: all of it or nothing. It goes through the target's
//! schema as any write does, so the triggers check it on the way in: each event must follow its
//! incident's version and chain to its head (a source log that does not verify cannot be copied),
//! each checkpoint must be its incident's next, each campaign batch moves forward from planned to
//! where the source has it. The source is read in one read transaction, so it is one moment's
//! state even if a process is still writing it.

use sqlx::postgres::{PgArguments, PgConnection, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteRow};
use sqlx::{Connection, Transaction};

use super::Error;
use super::postgres::MIGRATOR;
use super::sqlite::{self, SqliteStore};

/// Rows read from the source and written to the target at a time.
const CHUNK: i64 = 5_000;

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    pub incidents: u64,
    pub events: u64,
    pub checkpoints: u64,
    pub effects: u64,
    pub deliveries: u64,
    pub received: u64,
    pub campaigns: u64,
    pub batches: u64,
}

/// Why a copy did not happen; it changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target holds phasegate's data already.
    #[error("the target already holds {0}: `db copy` copies only into an empty database")]
    NotEmpty(String),
    /// The source cannot be copied as it is.
    #[error("the source {0}")]
    Source(String),
    /// The target refused a row: its schema's rules do not hold for what the source has.
    #[error("the target refused {what}: {error}")]
    Refused { what: String, error: sqlx::Error },
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for CopyError {
    fn from(error: sqlx::Error) -> CopyError {
        CopyError::Store(error.into())
    }
}

/// What the PostgreSQL database at `url` holds of phasegate's, in words, or `None` when it holds
/// nothing (no phasegate tables, or empty ones). Reads only: it is asked before the target's
/// schema is brought up to date, so that a refused copy changes nothing.
pub async fn held(connection: &mut PgConnection) -> Result<Option<String>, Error> {
    let tables: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('incidents')::text").fetch_one(&mut *connection).await?;
    if tables.is_none() {
        return Ok(None);
    }
    let (incidents, received, campaigns): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM inbox), (SELECT count(*) FROM campaigns)",
    )
    .fetch_one(&mut *connection)
    .await?;
    let held: Vec<String> =
        [(incidents, "incident(s)"), (received, "received webhook delivery(ies)"), (campaigns, "campaign(s)")]
            .into_iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
    Ok((!held.is_empty()).then(|| held.join(", ")))
}

/// Copies everything `from` holds into the database `to` is connected to, which must hold
/// nothing of phasegate's, in one transaction: the target's schema is made (or brought up to
/// date) in it too, so that a copy that fails leaves the target as it was, without even empty
/// tables.
pub async fn copy(from: &SqliteStore, to: &mut PgConnection) -> Result<Copied, CopyError> {
    let mut source = from.reads().begin().await?;
    check_source(&mut source).await?;
    let mut target = to.begin().await?;
    // Each migration runs in a savepoint of this transaction.
    MIGRATOR.run(&mut *target).await.map_err(Error::from)?;
    if let Some(held) = held(&mut target).await? {
        return Err(CopyError::NotEmpty(held));
    }
    let mut copied = Copied::default();
    incidents(&mut source, &mut target, &mut copied).await?;
    copied.effects =
        numbered(&mut source, &mut target, "outbox", OUTBOX, |row: &EffectRow| row.seq, insert_effects).await?;
    deliveries(&mut source, &mut target, &mut copied).await?;
    copied.received =
        numbered(&mut source, &mut target, "inbox", INBOX, |row: &InboxRow| row.seq, insert_received).await?;
    let since: i64 = sqlx::query_scalar("SELECT since FROM inbox_numbered").fetch_one(&mut *source).await?;
    sqlx::query("UPDATE inbox_numbered SET since = $1").bind(since).execute(&mut *target).await?;
    campaigns(&mut source, &mut target, &mut copied).await?;
    target.commit().await?;
    source.rollback().await?;
    Ok(copied)
}

/// The source must be up to date and every event chained: what the target's schema needs.
async fn check_source(source: &mut SqliteConnection) -> Result<(), CopyError> {
    let latest = sqlite::MIGRATOR.iter().map(|migration| migration.version).max().unwrap_or_default();
    let applied: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *source)
        .await
        .map_err(|error| CopyError::Source(format!("is not a phasegate database: {error}")))?;
    if applied != Some(latest) {
        return Err(CopyError::Source(format!(
            "was written by an older phasegate (its schema is at migration {}, this phasegate's at {latest}); \
             open it once with a command that writes (`phasegate list --db FILE`) to bring it up to date",
            applied.unwrap_or_default()
        )));
    }
    let unchained: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE hash IS NULL").fetch_one(&mut *source).await?;
    if unchained > 0 {
        return Err(CopyError::Source(format!(
            "has {unchained} event(s) stored before the hash chain; open it once with a command that writes \
             (`phasegate list --db FILE`) to chain them"
        )));
    }
    Ok(())
}

/// A refusal by the target's schema, named; any other failure as it is.
fn refused(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> CopyError {
    move |error| match &error {
        sqlx::Error::Database(database) if database.code().is_some_and(|code| code.starts_with("23")) => {
            CopyError::Refused { what: what(), error }
        }
        _ => CopyError::from(error),
    }
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: String,
    runbook_id: String,
    key: Option<String>,
    started_at: String,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    r#type: String,
    at: String,
    event: String,
    hash: String,
}

/// Each incident in the order it started, then its events (the trigger checks that each follows
/// the one before and chains to its hash), then its checkpoints.
async fn incidents(
    source: &mut Transaction<'_, Sqlite>,
    target: &mut Transaction<'_, Postgres>,
    copied: &mut Copied,
) -> Result<(), CopyError> {
    let incidents: Vec<IncidentRow> =
        sqlx::query_as("SELECT id, runbook_id, key, started_at FROM incidents ORDER BY started_at, id")
            .fetch_all(&mut **source)
            .await?;
    for incident in incidents {
        let id = incident.id.as_str();
        sqlx::query("INSERT INTO incidents (id, runbook_id, key, started_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(&incident.runbook_id)
            .bind(&incident.key)
            .bind(&incident.started_at)
            .execute(&mut **target)
            .await
            .map_err(refused(|| format!("incident `{id}`")))?;
        copied.incidents += 1;
        let mut after = 0_i64;
        loop {
            let events: Vec<EventRow> = sqlx::query_as(
                "SELECT seq, type, at, event, hash FROM events WHERE incident = ? AND seq > ? ORDER BY seq LIMIT ?",
            )
            .bind(id)
            .bind(after)
            .bind(CHUNK)
            .fetch_all(&mut **source)
            .await?;
            let Some(last) = events.last() else { break };
            after = last.seq;
            let (first, count) = (events[0].seq, events.len());
            sqlx::query(
                "INSERT INTO events (incident, seq, type, at, event, hash)
                 SELECT $1, seq, type, at, event, hash
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
                     WITH ORDINALITY AS given (seq, type, at, event, hash, n)
                 ORDER BY n",
            )
            .bind(id)
            .bind(events.iter().map(|event| event.seq).collect::<Vec<_>>())
            .bind(events.iter().map(|event| event.r#type.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|event| event.at.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|event| event.event.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|event| event.hash.as_str()).collect::<Vec<_>>())
            .execute(&mut **target)
            .await
            .map_err(refused(|| {
                format!(
                    "events {first} to {} of incident `{id}` (each must follow the one before and chain to it: \
                     `phasegate audit verify {id} --db FILE` says where the source's log breaks)",
                    first + count as i64 - 1
                )
            }))?;
            copied.events += count as u64;
        }
        let checkpoints: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
            "SELECT number, events, at, body, signature FROM checkpoints WHERE incident = ? ORDER BY number",
        )
        .bind(id)
        .fetch_all(&mut **source)
        .await?;
        for (number, events, at, body, signature) in checkpoints {
            sqlx::query(
                "INSERT INTO checkpoints (incident, number, events, at, body, signature) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(number)
            .bind(events)
            .bind(at)
            .bind(body)
            .bind(signature)
            .execute(&mut **target)
            .await
            .map_err(refused(|| format!("checkpoint {number} of incident `{id}`")))?;
            copied.checkpoints += 1;
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EffectRow {
    seq: i64,
    id: String,
    incident: String,
    effect: String,
    created_at: String,
    done_at: Option<String>,
}

/// The source's outbox, each effect at its place in it (`seq`), done or not.
const OUTBOX: &str =
    "SELECT seq, id, incident, effect, created_at, done_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?";

fn insert_effects(effects: &[EffectRow]) -> Insert<'_> {
    sqlx::query(
        "INSERT INTO outbox (seq, id, incident, effect, created_at, done_at)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])",
    )
    .bind(column(effects, |effect| effect.seq))
    .bind(column(effects, |effect| effect.id.as_str()))
    .bind(column(effects, |effect| effect.incident.as_str()))
    .bind(column(effects, |effect| effect.effect.as_str()))
    .bind(column(effects, |effect| effect.created_at.as_str()))
    .bind(column(effects, |effect| effect.done_at.as_deref()))
}

/// A statement that inserts a page of rows into the target.
type Insert<'rows> = sqlx::query::Query<'rows, Postgres, PgArguments>;

/// One column of `rows`, to bind as an array.
fn column<'rows, T, U>(rows: &'rows [T], value: impl Fn(&'rows T) -> U) -> Vec<U> {
    rows.iter().map(value).collect()
}

/// A table whose rows are numbered (`seq`: the outbox, the inbox), copied page by page in the
/// order of their numbers, each row keeping its number (`select` reads a page after a number,
/// `insert` writes it); then the target numbers new rows after the copied ones. Gives how many
/// rows it copied.
async fn numbered<Row>(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &'static str,
    select: &'static str,
    seq: fn(&Row) -> i64,
    insert: for<'rows> fn(&'rows [Row]) -> Insert<'rows>,
) -> Result<u64, CopyError>
where
    Row: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
{
    let mut copied = 0;
    let mut after = 0_i64;
    loop {
        let rows: Vec<Row> = sqlx::query_as(select).bind(after).bind(CHUNK).fetch_all(&mut *source).await?;
        let Some(last) = rows.last() else { break };
        after = seq(last);
        insert(&rows).execute(&mut *target).await.map_err(refused(|| format!("the `{table}` table")))?;
        copied += rows.len() as u64;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT setval(pg_get_serial_sequence('{table}', 'seq'), coalesce(max(seq), 0) + 1, false) FROM {table}"
    )))
    .execute(&mut *target)
    .await?;
    Ok(copied)
}

/// The deliveries taken, with the incident each was taken with.
async fn deliveries(
    source: &mut Transaction<'_, Sqlite>,
    target: &mut Transaction<'_, Postgres>,
    copied: &mut Copied,
) -> Result<(), CopyError> {
    let mut after = (String::new(), String::new());
    loop {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT source, id, incident, received_at FROM deliveries WHERE (source, id) > (?, ?)
             ORDER BY source, id LIMIT ?",
        )
        .bind(&after.0)
        .bind(&after.1)
        .bind(CHUNK)
        .fetch_all(&mut **source)
        .await?;
        let Some(last) = rows.last() else { break };
        after = (last.0.clone(), last.1.clone());
        sqlx::query(
            "INSERT INTO deliveries (source, id, incident, received_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
        )
        .bind(rows.iter().map(|row| row.0.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|row| row.1.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|row| row.2.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|row| row.3.as_str()).collect::<Vec<_>>())
        .execute(&mut **target)
        .await
        .map_err(refused(|| "the deliveries taken".to_string()))?;
        copied.deliveries += rows.len() as u64;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct InboxRow {
    seq: i64,
    source: String,
    id: String,
    received_at: String,
    headers: Option<String>,
    body: Option<Vec<u8>>,
    applied_at: Option<String>,
    outcome: Option<String>,
}

/// The source's webhook inbox, each delivery at its place (its actions' ids are made from it),
/// applied or waiting.
const INBOX: &str = "SELECT seq, source, id, received_at, headers, body, applied_at, outcome FROM inbox
                     WHERE seq > ? ORDER BY seq LIMIT ?";

fn insert_received(rows: &[InboxRow]) -> Insert<'_> {
    sqlx::query(
        "INSERT INTO inbox (seq, source, id, received_at, headers, body, applied_at, outcome)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[],
                              $7::text[], $8::text[])",
    )
    .bind(column(rows, |row| row.seq))
    .bind(column(rows, |row| row.source.as_str()))
    .bind(column(rows, |row| row.id.as_str()))
    .bind(column(rows, |row| row.received_at.as_str()))
    .bind(column(rows, |row| row.headers.as_deref()))
    .bind(column(rows, |row| row.body.as_deref()))
    .bind(column(rows, |row| row.applied_at.as_deref()))
    .bind(column(rows, |row| row.outcome.as_deref()))
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    number: i64,
    start_byte: i64,
    end_byte: i64,
    first_line: i64,
    skip: String,
    recipients: i64,
    state: String,
    attempts: i64,
    since: Option<String>,
    answered_at: Option<String>,
    sent: Option<i64>,
    failed: Option<i64>,
    failed_attempt: Option<i64>,
    failed_at: Option<String>,
    failure_class: Option<String>,
    failure: Option<String>,
    retry_at: Option<String>,
}

/// Campaigns in the order they were planned. Each batch is planned, then marked sending as many
/// times as the source has it, then answered if it was, as the schema lets a batch move; then the
/// answers' failures (in their order) and Merkle leaves.
async fn campaigns(
    source: &mut Transaction<'_, Sqlite>,
    target: &mut Transaction<'_, Postgres>,
    copied: &mut Copied,
) -> Result<(), CopyError> {
    let campaigns: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, incident, batches FROM campaigns ORDER BY rowid").fetch_all(&mut **source).await?;
    for (campaign, incident, count) in campaigns {
        let what = || format!("campaign `{campaign}`");
        sqlx::query("INSERT INTO campaigns (id, incident, batches) VALUES ($1, $2, $3)")
            .bind(&campaign)
            .bind(&incident)
            .bind(count)
            .execute(&mut **target)
            .await
            .map_err(refused(what))?;
        copied.campaigns += 1;
        let batches: Vec<BatchRow> = sqlx::query_as(
            "SELECT number, start_byte, end_byte, first_line, skip, recipients, state, attempts, since, answered_at,
                    sent, failed, failed_attempt, failed_at, failure_class, failure, retry_at
             FROM campaign_batches WHERE campaign = ? ORDER BY number",
        )
        .bind(&campaign)
        .fetch_all(&mut **source)
        .await?;
        if batches.is_empty() {
            continue;
        }
        sqlx::query(
            "INSERT INTO campaign_batches (campaign, number, start_byte, end_byte, first_line, skip, recipients)
             SELECT $1, number, start_byte, end_byte, first_line, skip, recipients
             FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[])
                 WITH ORDINALITY AS given (number, start_byte, end_byte, first_line, skip, recipients, n)
             ORDER BY n",
        )
        .bind(&campaign)
        .bind(batches.iter().map(|batch| batch.number).collect::<Vec<_>>())
        .bind(batches.iter().map(|batch| batch.start_byte).collect::<Vec<_>>())
        .bind(batches.iter().map(|batch| batch.end_byte).collect::<Vec<_>>())
        .bind(batches.iter().map(|batch| batch.first_line).collect::<Vec<_>>())
        .bind(batches.iter().map(|batch| batch.skip.as_str()).collect::<Vec<_>>())
        .bind(batches.iter().map(|batch| batch.recipients).collect::<Vec<_>>())
        .execute(&mut **target)
        .await
        .map_err(refused(what))?;
        copied.batches += batches.len() as u64;
        // One more attempt for every batch that has more in the source, until none has.
        let numbers: Vec<i64> = batches.iter().map(|batch| batch.number).collect();
        let attempts: Vec<i64> = batches.iter().map(|batch| batch.attempts).collect();
        let since: Vec<Option<&str>> = batches.iter().map(|batch| batch.since.as_deref()).collect();
        for _ in 0..attempts.iter().copied().max().unwrap_or_default() {
            sqlx::query(
                "UPDATE campaign_batches SET state = 'sending', attempts = campaign_batches.attempts + 1,
                        since = given.since
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS given (number, attempts, since)
                 WHERE campaign = $1 AND campaign_batches.number = given.number
                   AND campaign_batches.attempts < given.attempts",
            )
            .bind(&campaign)
            .bind(&numbers)
            .bind(&attempts)
            .bind(&since)
            .execute(&mut **target)
            .await
            .map_err(refused(what))?;
        }
        // Each batch's last failed attempt, while it is in flight, as the schema lets it be kept.
        let failed: Vec<&BatchRow> = batches.iter().filter(|batch| batch.failed_attempt.is_some()).collect();
        if !failed.is_empty() {
            sqlx::query(
                "UPDATE campaign_batches SET failed_attempt = given.attempt, failed_at = given.at,
                        failure_class = given.class, failure = given.failure, retry_at = given.retry_at
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
                     AS given (number, attempt, at, class, failure, retry_at)
                 WHERE campaign = $1 AND campaign_batches.number = given.number",
            )
            .bind(&campaign)
            .bind(failed.iter().map(|batch| batch.number).collect::<Vec<_>>())
            .bind(failed.iter().map(|batch| batch.failed_attempt).collect::<Vec<_>>())
            .bind(failed.iter().map(|batch| batch.failed_at.as_deref()).collect::<Vec<_>>())
            .bind(failed.iter().map(|batch| batch.failure_class.as_deref()).collect::<Vec<_>>())
            .bind(failed.iter().map(|batch| batch.failure.as_deref()).collect::<Vec<_>>())
            .bind(failed.iter().map(|batch| batch.retry_at.as_deref()).collect::<Vec<_>>())
            .execute(&mut **target)
            .await
            .map_err(refused(what))?;
        }
        let answered: Vec<&BatchRow> = batches.iter().filter(|batch| batch.state == "answered").collect();
        if answered.is_empty() {
            continue;
        }
        sqlx::query(
            "UPDATE campaign_batches SET state = 'answered', answered_at = given.at, sent = given.sent,
                    failed = given.failed
             FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS given (number, at, sent, failed)
             WHERE campaign = $1 AND campaign_batches.number = given.number",
        )
        .bind(&campaign)
        .bind(answered.iter().map(|batch| batch.number).collect::<Vec<_>>())
        .bind(answered.iter().map(|batch| batch.answered_at.as_deref()).collect::<Vec<_>>())
        .bind(answered.iter().map(|batch| batch.sent).collect::<Vec<_>>())
        .bind(answered.iter().map(|batch| batch.failed).collect::<Vec<_>>())
        .execute(&mut **target)
        .await
        .map_err(refused(what))?;
        let mut after = 0_i64;
        loop {
            let failures: Vec<(i64, i64, String, String)> = sqlx::query_as(
                "SELECT rowid, number, recipient, reason FROM campaign_failures
                 WHERE campaign = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            )
            .bind(&campaign)
            .bind(after)
            .bind(CHUNK)
            .fetch_all(&mut **source)
            .await?;
            let Some(last) = failures.last() else { break };
            after = last.0;
            sqlx::query(
                "INSERT INTO campaign_failures (campaign, number, recipient, reason)
                 SELECT $1, number, recipient, reason FROM unnest($2::bigint[], $3::text[], $4::text[])
                     WITH ORDINALITY AS given (number, recipient, reason, n)
                 ORDER BY n",
            )
            .bind(&campaign)
            .bind(failures.iter().map(|failure| failure.1).collect::<Vec<_>>())
            .bind(failures.iter().map(|failure| failure.2.as_str()).collect::<Vec<_>>())
            .bind(failures.iter().map(|failure| failure.3.as_str()).collect::<Vec<_>>())
            .execute(&mut **target)
            .await
            .map_err(refused(what))?;
        }
        // One batch's leaves at a time: each is about 60 KB.
        let leaves: Vec<i64> =
            sqlx::query_scalar("SELECT number FROM campaign_leaves WHERE campaign = ? ORDER BY number")
                .bind(&campaign)
                .fetch_all(&mut **source)
                .await?;
        for number in leaves {
            let blob: Vec<u8> =
                sqlx::query_scalar("SELECT leaves FROM campaign_leaves WHERE campaign = ? AND number = ?")
                    .bind(&campaign)
                    .bind(number)
                    .fetch_one(&mut **source)
                    .await?;
            sqlx::query("INSERT INTO campaign_leaves (campaign, number, leaves) VALUES ($1, $2, $3)")
                .bind(&campaign)
                .bind(number)
                .bind(blob)
                .execute(&mut **target)
                .await
                .map_err(refused(what))?;
        }
    }
    Ok(())
}
