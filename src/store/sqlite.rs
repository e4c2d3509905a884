//! The embedded store: one SQLite file, nothing to set up.
//!
//! Durability comes first: the file is in WAL mode with `synchronous=FULL`, so an append that has
//! answered survives a crash or a power loss. That makes every commit wait for the disk, so
//! commits are shared (group commit): one writer task owns the only connection that writes, takes
//! every append waiting for it, and stores them all in one transaction, undoing an append that is
//! refused (to its savepoint, where it wrote several rows) so that the others are still stored. A
//! hundred incidents appending at once then wait for a few disk flushes, not a hundred. Reads go
//! through a separate pool of read-only connections, which WAL lets run beside the writer.
//!
//! The schema's triggers make each event insert the compare-and-set of its incident's version and
//! keep the incident's summary row in step, so the database itself refuses a stale append.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::rows::{self, AppendRows};
use super::{ChainLink, Delivery, Error, IncidentSummary, PendingEffect, Store, StoredCheckpoint};
use crate::audit::chain::{self, GENESIS};
use crate::audit::keys::SignedCheckpoint;
use crate::engine::{Effect, Event};

/// The schema, embedded in the binary and brought up to date whenever a store is opened.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another process's lock on the file before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections. SQLite readers do not block each other or the writer in WAL mode.
const READERS: u32 = 4;

/// Appends waiting for the writer before callers are made to wait to send theirs.
const QUEUE: usize = 1024;

/// The most appends one transaction carries, so that a flood of them still gets answers in steps.
const MAX_BATCH: usize = 512;

/// Selects incidents' summaries, with what follows `FROM incidents`.
macro_rules! summaries {
    ($rest:literal) => {
        concat!(
            "SELECT id, runbook_id, key, version, started_at, updated_at, closed_at, head, checkpointed,
                    checkpointed_at FROM incidents ",
            $rest
        )
    };
}

/// The SQLite event store. Share it behind an `Arc`; [`SqliteStore::close`] waits for the writer
/// to finish what it was given.
#[derive(Debug)]
pub struct SqliteStore {
    appends: mpsc::Sender<Job>,
    reads: SqlitePool,
    writer: JoinHandle<()>,
    commits: Arc<AtomicU64>,
}

/// One append on its way to the writer, with where its answer goes.
struct Append {
    rows: AppendRows,
    answer: oneshot::Sender<Result<u64, Error>>,
}

/// What the writer is given: appends, and now and then a checkpoint to store.
enum Job {
    Append(Append),
    Checkpoint { incident: String, checkpoint: SignedCheckpoint, answer: oneshot::Sender<Result<(), Error>> },
}

impl std::fmt::Debug for Append {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Append").field("incident", &self.rows.incident).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file if it is missing and bringing its schema up to
    /// date. Must be called inside a tokio runtime, which runs the writer task.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // sqlx would log every statement, and every commit as slow whenever the disk is; the
            // caller logs what fails, once, with the incident it was about.
            .disable_statement_logging();
        let mut writer = options
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Savepoints (one per append of several rows in a shared transaction) journal the
            // pages they change; in memory rather than in a temporary file, which cost a write
            // system call per page (found with `perf` under a webhook storm).
            .pragma("temp_store", "memory")
            .connect()
            .await?;
        MIGRATOR.run(&mut writer).await?;
        chain_unhashed(&mut writer).await?;
        let reads = SqlitePoolOptions::new().max_connections(READERS).connect_with(options.read_only(true)).await?;
        let (appends, queue) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write(writer, queue, Arc::clone(&commits)));
        Ok(SqliteStore { appends, reads, writer, commits })
    }

    /// Hands encoded rows to the writer and waits for its answer. The rows are encoded before
    /// this future exists (see `append`), so it borrows nothing but the store.
    async fn write(&self, rows: Result<AppendRows, Error>) -> Result<u64, Error> {
        let (answer, answered) = oneshot::channel();
        let job = Job::Append(Append { rows: rows?, answer });
        self.appends.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answered.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// How many transactions the writer has committed since the store was opened. With appends
    /// arriving together this is far fewer than the appends stored.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stops taking appends, waits for the writer to answer those it has, and closes the file.
    pub async fn close(self) {
        drop(self.appends);
        // The writer only ends by running out of appends; if it panicked, its callers have
        // already been told, as their answers were dropped.
        let _ = self.writer.await;
        self.reads.close().await;
    }
}

impl Store for SqliteStore {
    fn append(
        &self,
        incident: &str,
        expected: u64,
        events: &[Event],
        effects: &[Effect],
        completes: Option<&str>,
    ) -> impl Future<Output = Result<u64, Error>> + Send {
        // Encoding happens here, in the caller's task, so the one writer only runs SQL. It happens
        // before the future is first polled, so the future holds none of the borrowed arguments,
        // and it is `Send` as declared rather than as inferred from an `async fn` body (which the
        // compiler cannot always prove for a future spawned with borrowed slices in scope).
        self.write(AppendRows::new(incident, expected, events, effects, completes))
    }

    fn append_delivery(
        &self,
        incident: &str,
        expected: u64,
        events: &[Event],
        effects: &[Effect],
        delivery: &Delivery,
    ) -> impl Future<Output = Result<u64, Error>> + Send {
        let rows = AppendRows::new(incident, expected, events, effects, None).map(|mut rows| {
            rows.delivery = Some((delivery.source.clone(), delivery.id.clone(), rows::timestamp(delivery.received_at)));
            rows
        });
        self.write(rows)
    }

    async fn delivery(&self, source: &str, id: &str) -> Result<Option<String>, Error> {
        let incident = sqlx::query_scalar("SELECT incident FROM deliveries WHERE source = ? AND id = ?")
            .bind(source)
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
        Ok(incident)
    }

    async fn events(&self, incident: &str) -> Result<Vec<Event>, Error> {
        let rows: Vec<EventRow> = sqlx::query_as("SELECT seq, event FROM events WHERE incident = ? ORDER BY seq")
            .bind(incident)
            .fetch_all(&self.reads)
            .await?;
        if rows.is_empty() {
            return Err(Error::NotFound { incident: incident.to_string() });
        }
        rows.into_iter()
            .enumerate()
            .map(|(index, row)| {
                // A gap would mean a lost event: say so rather than fold a log with a hole.
                if row.seq != index as i64 + 1 {
                    return Err(Error::Corrupt(format!(
                        "incident `{incident}` has event {} where event {} belongs",
                        row.seq,
                        index + 1
                    )));
                }
                rows::decode_event(incident, index as u64 + 1, &row.event)
            })
            .collect()
    }

    async fn events_after(&self, incident: &str, after: u64) -> Result<Vec<Event>, Error> {
        let after = i64::try_from(after).map_err(|_| Error::Corrupt(format!("version {after} is out of range")))?;
        let rows: Vec<EventRow> =
            sqlx::query_as("SELECT seq, event FROM events WHERE incident = ? AND seq > ? ORDER BY seq")
                .bind(incident)
                .bind(after)
                .fetch_all(&self.reads)
                .await?;
        rows.into_iter()
            .enumerate()
            .map(|(index, row)| {
                let expected = after + index as i64 + 1;
                if row.seq != expected {
                    return Err(Error::Corrupt(format!(
                        "incident `{incident}` has event {} where event {expected} belongs",
                        row.seq
                    )));
                }
                rows::decode_event(incident, expected as u64, &row.event)
            })
            .collect()
    }

    async fn incident(&self, id: &str) -> Result<Option<IncidentSummary>, Error> {
        let row: Option<IncidentRow> =
            sqlx::query_as(summaries!("WHERE id = ?")).bind(id).fetch_optional(&self.reads).await?;
        row.map(IncidentSummary::try_from).transpose()
    }

    async fn incidents(&self) -> Result<Vec<IncidentSummary>, Error> {
        let rows: Vec<IncidentRow> =
            sqlx::query_as(summaries!("ORDER BY started_at, id")).fetch_all(&self.reads).await?;
        rows.into_iter().map(IncidentSummary::try_from).collect()
    }

    async fn open_incident_by_key(&self, runbook_id: &str, key: &str) -> Result<Option<String>, Error> {
        let id = sqlx::query_scalar("SELECT id FROM incidents WHERE runbook_id = ? AND key = ? AND closed_at IS NULL")
            .bind(runbook_id)
            .bind(key)
            .fetch_optional(&self.reads)
            .await?;
        Ok(id)
    }

    async fn pending_effects(&self, limit: usize) -> Result<Vec<PendingEffect>, Error> {
        let rows: Vec<EffectRow> =
            sqlx::query_as("SELECT incident, effect FROM outbox WHERE done_at IS NULL ORDER BY seq LIMIT ?")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.reads)
                .await?;
        rows.into_iter()
            .map(|row| {
                Ok(PendingEffect { effect: rows::decode_effect(&row.incident, &row.effect)?, incident: row.incident })
            })
            .collect()
    }

    async fn chain(&self, incident: &str, after: u64, limit: usize) -> Result<Vec<ChainLink>, Error> {
        let rows: Vec<ChainRow> =
            sqlx::query_as("SELECT seq, hash, event FROM events WHERE incident = ? AND seq > ? ORDER BY seq LIMIT ?")
                .bind(incident)
                .bind(signed(after))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.reads)
                .await?;
        rows.into_iter()
            .map(|row| Ok(ChainLink { seq: unsigned(row.seq)?, hash: row.hash, event: row.event }))
            .collect()
    }

    async fn checkpoints(&self, incident: &str) -> Result<Vec<StoredCheckpoint>, Error> {
        let rows: Vec<CheckpointRow> =
            sqlx::query_as("SELECT number, body, signature FROM checkpoints WHERE incident = ? ORDER BY number")
                .bind(incident)
                .fetch_all(&self.reads)
                .await?;
        rows.into_iter()
            .map(|row| Ok(StoredCheckpoint { number: unsigned(row.number)?, body: row.body, signature: row.signature }))
            .collect()
    }

    async fn add_checkpoint(&self, incident: &str, checkpoint: &SignedCheckpoint) -> Result<(), Error> {
        let (answer, answered) = oneshot::channel();
        let job = Job::Checkpoint { incident: incident.to_string(), checkpoint: checkpoint.clone(), answer };
        self.appends.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answered.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

#[derive(sqlx::FromRow)]
struct ChainRow {
    seq: i64,
    hash: Option<String>,
    event: String,
}

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    number: i64,
    body: String,
    signature: String,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    event: String,
}

#[derive(sqlx::FromRow)]
struct EffectRow {
    incident: String,
    effect: String,
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: String,
    runbook_id: String,
    key: Option<String>,
    version: i64,
    started_at: String,
    updated_at: String,
    closed_at: Option<String>,
    head: Option<String>,
    checkpointed: i64,
    checkpointed_at: Option<String>,
}

impl TryFrom<IncidentRow> for IncidentSummary {
    type Error = Error;

    fn try_from(row: IncidentRow) -> Result<IncidentSummary, Error> {
        Ok(IncidentSummary {
            version: unsigned(row.version)?,
            started_at: rows::parse_timestamp(&row.started_at)?,
            updated_at: rows::parse_timestamp(&row.updated_at)?,
            closed_at: row.closed_at.as_deref().map(rows::parse_timestamp).transpose()?,
            checkpointed: unsigned(row.checkpointed)?,
            checkpointed_at: row.checkpointed_at.as_deref().map(rows::parse_timestamp).transpose()?,
            head: row.head,
            id: row.id,
            runbook_id: row.runbook_id,
            key: row.key,
        })
    }
}

/// SQLite integers are signed; versions and sequence numbers never are.
fn signed(number: u64) -> i64 {
    // No version reaches 2^63; one that claimed to would simply never match a stored version.
    i64::try_from(number).unwrap_or(i64::MAX)
}

fn unsigned(number: i64) -> Result<u64, Error> {
    u64::try_from(number).map_err(|_| Error::Corrupt(format!("a stored version is negative: {number}")))
}

/// The writer task: takes every append waiting, stores them in one transaction, answers each.
async fn write(mut connection: SqliteConnection, mut queue: mpsc::Receiver<Job>, commits: Arc<AtomicU64>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        for job in jobs.drain(..) {
            match job {
                Job::Append(append) => batch.push(append),
                // Rare (one per incident every few minutes): each is a statement of its own.
                Job::Checkpoint { incident, checkpoint, answer } => {
                    let _ = answer.send(store_checkpoint(&mut connection, &incident, &checkpoint).await);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let answers = match commit(&mut connection, &batch, &commits).await {
            Ok(answers) => answers,
            Err(error) => {
                // Nothing of the batch is stored. If the rollback fails too, SQLite has already
                // rolled the transaction back, or the connection is gone and the next batch
                // will say so.
                let _ = sqlx::query("ROLLBACK").execute(&mut connection).await;
                batch.iter().map(|_| Err(error.clone())).collect()
            }
        };
        for (append, answer) in batch.drain(..).zip(answers) {
            // A caller that stopped waiting learns the outcome by reading the incident again.
            let _ = append.answer.send(answer);
        }
    }
    let _ = connection.close().await;
}

/// Stores a batch in one transaction and counts the commit. An append that is refused (a conflict,
/// a rule of the log) is undone and answered with why, and the others are stored; a database
/// failure fails the batch, since SQLite may have ended the transaction with it.
async fn commit(
    connection: &mut SqliteConnection,
    batch: &[Append],
    commits: &AtomicU64,
) -> Result<Vec<Result<u64, Error>>, Error> {
    let now = rows::timestamp(Utc::now());
    if let [append] = batch
        && append.rows.events.len() == 1
        && append.rows.writes() == 1
    {
        // One event and nothing else, alone in its batch: the event's insert is one statement,
        // which SQLite runs as a transaction of its own (the triggers' check and summary included)
        // and commits, as durably as any, when it ends. The most common append thus costs one
        // round trip to SQLite's thread rather than three.
        let answer = store(connection, &append.rows, &now).await;
        if answer.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(vec![answer]);
    }
    // IMMEDIATE takes the write lock now, so that another process writing the same file makes
    // this wait (up to the busy timeout) instead of failing halfway through.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *connection).await?;
    let mut answers = Vec::with_capacity(batch.len());
    for append in batch {
        // A refused write changes nothing, so an append of one write (the usual one event) needs
        // no savepoint, and neither does an append alone in its batch, which the rollback of the
        // transaction undoes. Savepoints are never released: `ROLLBACK TO` goes back to the
        // latest, taken just before the append that was refused, and COMMIT keeps the rest.
        let savepoint = batch.len() > 1 && append.rows.writes() > 1;
        if savepoint {
            sqlx::query("SAVEPOINT append").execute(&mut *connection).await?;
        }
        let answer = store(connection, &append.rows, &now).await;
        match &answer {
            Err(error @ Error::Database(_)) => return Err(error.clone()),
            Err(_) if savepoint => {
                sqlx::query("ROLLBACK TO append").execute(&mut *connection).await?;
            }
            _ => {}
        }
        answers.push(answer);
    }
    if batch.len() == 1 && answers[0].is_err() {
        sqlx::query("ROLLBACK").execute(&mut *connection).await?;
        return Ok(answers);
    }
    sqlx::query("COMMIT").execute(&mut *connection).await?;
    commits.fetch_add(1, Ordering::Relaxed);
    Ok(answers)
}

/// One append inside the batch's transaction: the incident's row for a new incident, then the
/// events, the new effects and the completed one. Each event insert is the compare-and-set of the
/// incident's version (the schema's triggers refuse an event out of order and move the summary),
/// so the usual append is one statement per event and the usual refusal writes nothing.
async fn store(connection: &mut SqliteConnection, rows: &AppendRows, now: &str) -> Result<u64, Error> {
    let incident = rows.incident.as_str();
    if let Some(start) = &rows.start {
        // The primary key refuses a second start of the incident, the partial unique index a second
        // open incident with the same key. The events below set the version and the other times.
        let inserted =
            sqlx::query("INSERT INTO incidents (id, runbook_id, key, started_at, updated_at) VALUES (?, ?, ?, ?, ?)")
                .bind(incident)
                .bind(&start.runbook_id)
                .bind(&start.key)
                .bind(&start.started_at)
                .bind(&start.started_at)
                .execute(&mut *connection)
                .await;
        match inserted {
            Err(error) if is_constraint_violation(&error) => return Err(refusal(connection, rows).await),
            other => other?,
        };
    }
    // What the first new event chains to. The event at the expected version never changes, so the
    // head read here is the one the insert below follows, or the insert is refused as out of order.
    let mut prev = GENESIS;
    if rows.start.is_none() {
        let stored: Option<(i64, Option<String>)> = sqlx::query_as("SELECT version, head FROM incidents WHERE id = ?")
            .bind(incident)
            .fetch_optional(&mut *connection)
            .await?;
        match stored {
            Some((version, head)) if version == signed(rows.expected) => {
                if let Some(head) = head {
                    prev = chain::from_hex(&head).ok_or_else(|| {
                        Error::Corrupt(format!("incident `{incident}` has head `{head}`, not a hash"))
                    })?;
                } else if !rows.events.is_empty() {
                    return Err(Error::Corrupt(format!("incident `{incident}` has events but no head hash")));
                }
            }
            _ => return Err(refusal(connection, rows).await),
        }
    }
    if let Some((source, id, received_at)) = &rows.delivery {
        let inserted = sqlx::query("INSERT INTO deliveries (source, id, incident, received_at) VALUES (?, ?, ?, ?)")
            .bind(source)
            .bind(id)
            .bind(incident)
            .bind(received_at)
            .execute(&mut *connection)
            .await;
        match inserted {
            Err(error) if is_constraint_violation(&error) => {
                let taken: Option<String> =
                    sqlx::query_scalar("SELECT incident FROM deliveries WHERE source = ? AND id = ?")
                        .bind(source)
                        .bind(id)
                        .fetch_optional(&mut *connection)
                        .await?;
                let Some(taken) = taken else { return Err(error.into()) };
                return Err(Error::Duplicate { origin: source.clone(), id: id.clone(), incident: taken });
            }
            other => other?,
        };
    }
    for event in &rows.events {
        let hash = chain::link(&prev, event.seq, event.json.as_bytes());
        prev = hash;
        let inserted =
            sqlx::query("INSERT INTO events (incident, seq, type, at, event, hash) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(incident)
                .bind(signed(event.seq))
                .bind(event.kind)
                .bind(&event.at)
                .bind(&event.json)
                .bind(chain::to_hex(&hash))
                .execute(&mut *connection)
                .await;
        match inserted {
            Err(error) if is_constraint_violation(&error) => return Err(refusal(connection, rows).await),
            other => other?,
        };
    }
    for effect in &rows.effects {
        let inserted = sqlx::query("INSERT INTO outbox (id, incident, effect, created_at) VALUES (?, ?, ?, ?)")
            .bind(&effect.id)
            .bind(incident)
            .bind(&effect.json)
            .bind(now)
            .execute(&mut *connection)
            .await;
        match inserted {
            Err(error) if is_constraint_violation(&error) => {
                let problem = format!("effect `{}` is already in the outbox", effect.id);
                return Err(Error::Invalid { incident: incident.to_string(), problem });
            }
            other => other?,
        };
    }
    if let Some(id) = &rows.completes {
        // Already done is fine: the answer to the first completion may have been lost.
        let completed = sqlx::query("UPDATE outbox SET done_at = coalesce(done_at, ?) WHERE id = ? AND incident = ?")
            .bind(now)
            .bind(id)
            .bind(incident)
            .execute(&mut *connection)
            .await?;
        if completed.rows_affected() == 0 {
            let problem = format!("it has no effect `{id}` in the outbox to complete");
            return Err(Error::Invalid { incident: incident.to_string(), problem });
        }
    }
    Ok(rows.version())
}

/// Why the incident's row refused an append: the incident is at another version, it does not
/// exist, or the trigger's key of a new incident is taken by an open one.
async fn refusal(connection: &mut SqliteConnection, rows: &AppendRows) -> Error {
    let incident = rows.incident.clone();
    let stored: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar("SELECT version FROM incidents WHERE id = ?")
        .bind(&incident)
        .fetch_optional(&mut *connection)
        .await;
    match stored {
        Err(error) => Error::from(error),
        Ok(Some(actual)) if actual == signed(rows.expected) => {
            Error::Corrupt(format!("incident `{incident}` at version {actual} refused its next event"))
        }
        Ok(Some(actual)) => match unsigned(actual) {
            Ok(actual) => Error::Conflict { incident, expected: rows.expected, actual },
            Err(error) => error,
        },
        Ok(None) => match &rows.start {
            None => Error::NotFound { incident },
            Some(start) => {
                let open: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                    "SELECT id FROM incidents WHERE runbook_id = ? AND key = ? AND closed_at IS NULL",
                )
                .bind(&start.runbook_id)
                .bind(&start.key)
                .fetch_optional(&mut *connection)
                .await;
                match (open, &start.key) {
                    (Ok(Some(open)), Some(key)) => {
                        Error::DuplicateKey { runbook_id: start.runbook_id.clone(), key: key.clone(), open }
                    }
                    (Err(error), _) => Error::from(error),
                    (Ok(_), _) => {
                        Error::Corrupt(format!("starting incident `{incident}` was refused, for no reason found"))
                    }
                }
            }
        },
    }
}

/// A constraint refused the statement (a unique key, or the triggers' order of events): the
/// statement changed nothing and the transaction goes on.
fn is_constraint_violation(error: &sqlx::Error) -> bool {
    const SQLITE_CONSTRAINT: i32 = 19;
    // SQLite reports extended codes (2067 for a unique key, 1811 for a trigger's RAISE); the low
    // byte is the primary code.
    matches!(error, sqlx::Error::Database(database)
        if database.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(|code| code & 0xff == SQLITE_CONSTRAINT))
}

/// Stores a signed checkpoint; the schema's trigger refuses one that is not the incident's next.
async fn store_checkpoint(
    connection: &mut SqliteConnection,
    incident: &str,
    signed_checkpoint: &SignedCheckpoint,
) -> Result<(), Error> {
    let checkpoint = &signed_checkpoint.checkpoint;
    let inserted = sqlx::query(
        "INSERT INTO checkpoints (incident, number, events, at, body, signature) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(incident)
    .bind(signed(checkpoint.number))
    .bind(signed(checkpoint.events))
    .bind(rows::timestamp(checkpoint.at))
    .bind(checkpoint.canonical())
    .bind(&signed_checkpoint.signature)
    .execute(&mut *connection)
    .await;
    match inserted {
        Err(error) if is_constraint_violation(&error) => Err(Error::Invalid {
            incident: incident.to_string(),
            problem: format!(
                "checkpoint {} of events 1 to {} is not its next checkpoint",
                checkpoint.number, checkpoint.events
            ),
        }),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

/// Chains events stored before the hash chain existed (migration 0002): each gets its canonical
/// JSON and its hash, and its incident its head, one incident per transaction.
async fn chain_unhashed(connection: &mut SqliteConnection) -> Result<(), Error> {
    let incidents: Vec<String> = sqlx::query_scalar("SELECT DISTINCT incident FROM events WHERE hash IS NULL")
        .fetch_all(&mut *connection)
        .await?;
    for incident in incidents {
        let mut transaction = connection.begin().await?;
        let events: Vec<ChainRow> =
            sqlx::query_as("SELECT seq, hash, event FROM events WHERE incident = ? ORDER BY seq")
                .bind(&incident)
                .fetch_all(&mut *transaction)
                .await?;
        let mut prev = GENESIS;
        for event in events {
            let seq = unsigned(event.seq)?;
            if let Some(hash) = event.hash.as_deref().and_then(chain::from_hex) {
                prev = hash;
                continue;
            }
            let json = chain::canonicalize(&event.event).map_err(|error| {
                Error::Corrupt(format!("event {seq} of incident `{incident}` is not JSON: {error}"))
            })?;
            prev = chain::link(&prev, seq, json.as_bytes());
            sqlx::query("UPDATE events SET event = ?, hash = ? WHERE incident = ? AND seq = ?")
                .bind(&json)
                .bind(chain::to_hex(&prev))
                .bind(&incident)
                .bind(event.seq)
                .execute(&mut *transaction)
                .await?;
        }
        sqlx::query("UPDATE incidents SET head = ? WHERE id = ?")
            .bind(chain::to_hex(&prev))
            .bind(&incident)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
    }
    Ok(())
}
