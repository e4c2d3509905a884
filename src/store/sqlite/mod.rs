//! The embedded store: one SQLite file, nothing to set up.
//!
//! Durability comes first: the file is in WAL mode with `synchronous=FULL`, so an append that has
//! answered survives a crash or a power loss. That makes every commit wait for the disk, so
//! commits are shared (group commit): one writer, on a thread of its own, owns the only connection
//! that writes, takes every append waiting for it, and stores them all in one transaction, undoing
//! an append that is refused (to its savepoint, where it wrote several rows) so that the others
//! are still stored. A hundred incidents appending at once then wait for a few disk flushes, not a
//! hundred. Received webhook deliveries take commits of their own ahead of waiting appends (one
//! insert for all of a batch's), since their senders wait for them (`writer.rs`).
//! Campaigns' progress (a plan, batches marked in flight, their answers) goes through the same
//! writer and shares its commits (`writer/campaign.rs`).
//! `writer.rs` is that writer. Reads go through a separate pool of read-only connections, which
//! WAL lets run beside the writer.
//!
//! The schema's triggers make each event insert the compare-and-set of its incident's version, so
//! the database itself refuses a stale append. An incident's version, head and last change are its
//! latest event's (`seq`, `hash`, `at`), read through the events' primary key, not copies the
//! events keep up to date: an event then writes only the events' pages (migration 0009).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

#[macro_use]
mod summary;

mod campaign;
mod checkpointer;
mod read;
mod writer;

use super::campaign::CampaignRows;
use super::leases::Leases;
use super::rows::{self, AppendRows, IncidentRow};
use super::{
    Append, BatchResult, CampaignBatch, CampaignProgress, ChainLink, Claimed, Counts, Delivery, Error, Fence, Headers,
    Inbound, IncidentSummary, Lease, Page, PendingEffect, Receipt, Store, StoredCheckpoint,
};
use crate::audit::keys::SignedCheckpoint;
use crate::campaign::{AttemptFailure, BatchPlan};
use crate::engine::Event;
use chrono::{DateTime, Utc};
use read::{ChainRow, CheckpointRow, EffectRow, InboundRow, signed, unsigned};
use writer::{CampaignJob, Direct, Job, Queued, Receive, Waiting, chain_unhashed};

/// The schema, embedded in the binary and brought up to date whenever a store is opened.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another process's lock on the file before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL pages written before the writer checkpoints by itself (SQLite's default is 1,000), behind
/// the checkpointer (`checkpointer.rs`), which usually has copied them by then. Commits rewrite
/// the same hot pages (the inbox's newest page, the events' newest leaves, the upper levels of every
/// index) over and over; a checkpoint copies each page once however often the WAL holds it, so a
/// longer WAL copies fewer pages per commit (measured in BENCHMARKS.md: webhook deliveries taken
/// in about 10% faster than with 1,000). The WAL file grows to about 40 MiB.
const WAL_CHECKPOINT_PAGES: u32 = 10_000;

/// Read-only connections. SQLite readers do not block each other or the writer in WAL mode.
const READERS: u32 = 4;

/// Appends waiting for the writer before callers are made to wait to send theirs.
const QUEUE: usize = 1024;

/// The most appends one transaction carries, so that a flood of them still gets answers in steps.
const MAX_BATCH: usize = 512;

/// The SQLite event store. Share it behind an `Arc`; [`SqliteStore::close`] waits for the writer
/// to finish what it was given.
#[derive(Debug)]
pub struct SqliteStore {
    appends: mpsc::Sender<Job>,
    reads: SqlitePool,
    /// Closed when the writer's thread ends.
    writer: oneshot::Receiver<()>,
    /// Stops the checkpointer, and says when its thread has ended.
    checkpointer: (oneshot::Sender<()>, oneshot::Receiver<()>),
    commits: Arc<AtomicU64>,
    /// Opened by [`SqliteStore::open_read_only`]: there is no writer.
    read_only: bool,
    /// What opening chained (events stored before the hash chain existed).
    chained: Chained,
    /// The outbox's leases, held in this process (`store/leases.rs`).
    leases: Leases,
}

/// The writer held by [`SqliteStore::pause`]; it goes on when this is dropped.
#[cfg(any(test, feature = "store-contract"))]
#[derive(Debug)]
#[must_use = "the writer goes on as soon as this is dropped"]
pub struct Paused {
    _resume: oneshot::Sender<()>,
}

/// Events stored before the hash chain existed (migration 0002) that opening the store chained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chained {
    pub events: u64,
    pub incidents: u64,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file if it is missing and bringing its schema up to
    /// date. Must be called inside a tokio runtime; the writer runs on a thread of its own.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, Error> {
        SqliteStore::open_synchronous(path, SqliteSynchronous::Full).await
    }

    /// [`SqliteStore::open`] for a drill's database: a rehearsal's record, so commits do not wait
    /// for the disk (`synchronous=OFF`); a crash loses the drill, which is run again.
    pub async fn open_for_drill(path: impl AsRef<Path>) -> Result<SqliteStore, Error> {
        SqliteStore::open_synchronous(path, SqliteSynchronous::Off).await
    }

    async fn open_synchronous(path: impl AsRef<Path>, synchronous: SqliteSynchronous) -> Result<SqliteStore, Error> {
        let path = path.as_ref();
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
            .synchronous(synchronous)
            // Savepoints (one per append of several rows in a shared transaction) journal the
            // pages they change; in memory rather than in a temporary file, which cost a write
            // system call per page (found with `perf` under a webhook storm).
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string())
            .connect()
            .await?;
        MIGRATOR.run(&mut writer).await?;
        let chained = chain_unhashed(&mut writer).await?;
        let waiting = Waiting::read(&mut writer).await?;
        let synchronous_pragma = match synchronous {
            SqliteSynchronous::Off => "OFF",
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Extra => "EXTRA",
        };
        let direct = Direct::open(path, synchronous_pragma, BUSY_TIMEOUT, WAL_CHECKPOINT_PAGES)?;
        let checkpoints = options.clone().connect().await?;
        let reads = SqlitePoolOptions::new().max_connections(READERS).connect_with(options.read_only(true)).await?;
        let (appends, queue) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer =
            on_a_thread("phasegate-writer", writer::write(writer, direct, waiting, queue, Arc::clone(&commits)))?;
        let (stop, stopped) = oneshot::channel();
        let checkpointer = (
            stop,
            on_a_thread("phasegate-checkpointer", checkpointer::run(checkpoints, Arc::clone(&commits), stopped))?,
        );
        let (read_only, leases) = (false, Leases::default());
        Ok(SqliteStore { appends, reads, writer, checkpointer, commits, read_only, chained, leases })
    }

    /// Opens an existing store to read it and nothing else: no migration, no chaining, no writer,
    /// so the file is left exactly as it was (what `audit verify` and `audit export` need: the
    /// evidence they check must not change under them). Every write answers
    /// [`Error::ReadOnly`]. The schema must have the hash chain (migration 0002); events stored
    /// before it and not chained yet read without a hash.
    pub async fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .read_only(true)
            .disable_statement_logging();
        let reads = SqlitePoolOptions::new().max_connections(READERS).connect_with(options).await?;
        let chain: i64 = sqlx::query_scalar("SELECT count(*) FROM pragma_table_info('events') WHERE name = 'hash'")
            .fetch_one(&reads)
            .await?;
        if chain == 0 {
            reads.close().await;
            return Err(Error::Outdated("it has no hash chain (migration 0002)".into()));
        }
        // No writer and no checkpointer: their channels are closed from the start.
        let (appends, _) = mpsc::channel(1);
        let (_, writer) = oneshot::channel();
        let (stop, _) = oneshot::channel();
        let (_, stopped) = oneshot::channel();
        let commits = Arc::new(AtomicU64::new(0));
        Ok(SqliteStore {
            appends,
            reads,
            writer,
            checkpointer: (stop, stopped),
            commits,
            read_only: true,
            chained: Chained::default(),
            leases: Leases::default(),
        })
    }

    /// The events stored before the hash chain existed that opening the store chained: each got
    /// its hash then, so no checkpoint vouches for them as they were first written.
    pub fn chained(&self) -> Chained {
        self.chained
    }

    /// Hands encoded rows to the writer and waits for its answer. The rows are encoded before
    /// this future exists (see `append`), so it borrows nothing but the store.
    fn write(&self, rows: Result<AppendRows, Error>) -> impl Future<Output = Result<u64, Error>> + Send + '_ {
        let asked = rows.map(|rows| {
            let (answer, answered) = oneshot::channel();
            self.ask(Job::Append(Queued { rows, answer }), answered)
        });
        async move { asked?.await }
    }

    /// Hands a campaign write, checked and encoded before this future exists, to the writer and
    /// waits for its answer; one that changes nothing is answered here.
    fn write_campaign(&self, rows: Result<CampaignRows, Error>) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let asked = rows.map(|rows| {
            (!rows.is_empty()).then(|| {
                let (answer, answered) = oneshot::channel();
                self.ask(Job::Campaign(CampaignJob { rows, answer }), answered)
            })
        });
        async move {
            match asked? {
                Some(asked) => asked.await,
                None => Ok(()),
            }
        }
    }

    /// Gives the writer a job, now if its queue has room (so that jobs are taken in the order of
    /// the calls), and waits for its answer.
    fn ask<T: Send + 'static>(
        &self,
        job: Job,
        answered: oneshot::Receiver<Result<T, Error>>,
    ) -> impl Future<Output = Result<T, Error>> + Send + '_ {
        // A read-only store has no writer: nothing is sent, and the future says why.
        let waiting = match self.read_only {
            true => None,
            false => self.appends.try_send(job).err().map(mpsc::error::TrySendError::into_inner),
        };
        async move {
            if self.read_only {
                return Err(Error::ReadOnly);
            }
            if let Some(job) = waiting {
                self.appends.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
            }
            answered.await.map_err(|_| sqlx::Error::WorkerCrashed)?
        }
    }

    /// The read-only connections' pool, for `phasegate db copy`, which reads rows as they are
    /// stored rather than as the trait gives them.
    pub(crate) fn reads(&self) -> &SqlitePool {
        &self.reads
    }

    /// How many transactions the writer has committed since the store was opened. With appends
    /// arriving together this is far fewer than the appends stored.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Holds the writer, for tests that need jobs to reach it together: returns once the writer
    /// has stopped, and from then on jobs wait in its queue ([`SqliteStore::queued`] counts them)
    /// until the guard is dropped; the writer then takes them all at once, as it takes whatever
    /// waits when a commit ends. Jobs sent before the hold and taken with it are stored after it,
    /// so hold a writer with nothing in flight. Nothing but tests sends this: the writer's path is
    /// the one production runs.
    #[cfg(any(test, feature = "store-contract"))]
    #[doc(hidden)]
    pub async fn pause(&self) -> Paused {
        let (paused, stopped) = oneshot::channel();
        let (resume, resumed) = oneshot::channel();
        self.appends.send(Job::Pause(writer::Hold { paused, resume: resumed })).await.expect("the store has a writer");
        stopped.await.expect("the writer stops when asked");
        Paused { _resume: resume }
    }

    /// Jobs sent to the writer and not yet taken: what a test waits on, while the writer is held
    /// ([`SqliteStore::pause`]), to know that everything it sent is queued.
    #[cfg(any(test, feature = "store-contract"))]
    #[doc(hidden)]
    pub fn queued(&self) -> usize {
        self.appends.max_capacity() - self.appends.capacity()
    }

    /// Stops taking appends, waits for the writer to answer those it has, and closes the file.
    /// The writer closes last: its final act copies the WAL back into the file and empties it.
    pub async fn close(self) {
        drop(self.appends);
        self.reads.close().await;
        let (stop, stopped) = self.checkpointer;
        let _ = stop.send(());
        let _ = stopped.await;
        // The writer only ends by running out of appends; if it panicked, its callers have
        // already been told, as their answers were dropped.
        let _ = self.writer.await;
    }
}

/// Runs `work` on a thread of its own, with a runtime of its own; the receiver is closed when it
/// ends. The writer runs so because every caller waits for its commits, so its turn must come as
/// soon as SQLite answers it: as one task among the server's connections it waited behind them
/// for a worker thread at every statement, and a webhook storm's deliveries waited about 20%
/// longer for their commits (measured in BENCHMARKS.md).
fn on_a_thread(
    name: &str,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<oneshot::Receiver<()>, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(sqlx::Error::Io)?;
    let (finished, ended) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            runtime.block_on(work);
            let _ = finished.send(());
        })
        .map_err(sqlx::Error::Io)?;
    Ok(ended)
}

impl Store for SqliteStore {
    fn append(&self, append: Append) -> impl Future<Output = Result<u64, Error>> + Send {
        // Encoding (of what is not encoded yet) happens here, in the caller's task, so the one
        // writer only runs SQL; and the append is sent to the writer here, before the future is
        // first polled, so appends are taken in the order of the calls (see `Store::append`).
        self.leases.append(AppendRows::new(append), |rows| self.write(rows))
    }

    async fn delivery(&self, source: &str, id: &str) -> Result<Option<String>, Error> {
        let incident = sqlx::query_scalar("SELECT incident FROM deliveries WHERE source = ? AND id = ?")
            .bind(source)
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
        Ok(incident)
    }

    fn receive(
        &self,
        delivery: &Delivery,
        headers: &Headers,
        body: &[u8],
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        let (answer, answered) = oneshot::channel();
        let job = Job::Receive(Receive {
            source: delivery.source.clone(),
            id: delivery.id.clone(),
            received_at: rows::timestamp(delivery.received_at),
            headers: rows::encode_headers(headers),
            body: body.to_vec(),
            answer,
        });
        self.ask(job, answered)
    }

    async fn inbox(&self, limit: usize, bytes: usize) -> Result<Vec<Inbound>, Error> {
        let rows: Vec<InboundRow> = sqlx::query_as(
            "SELECT seq, source, id, received_at, headers, body,
                     seq >= (SELECT since FROM inbox_numbered) AS numbered FROM (
                 SELECT seq, source, id, received_at, headers, body,
                        sum(length(body) + coalesce(length(headers), 0)) OVER (ORDER BY seq) AS through
                 FROM inbox WHERE applied_at IS NULL ORDER BY seq LIMIT ?
             ) WHERE through - length(body) - coalesce(length(headers), 0) < ? ORDER BY seq",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(bytes.max(1)).unwrap_or(i64::MAX))
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter()
            .map(|row| {
                let body = row.body.ok_or_else(|| {
                    Error::Corrupt(format!("delivery `{}` from `{}` waits without its body", row.id, row.source))
                })?;
                let received_at = rows::parse_timestamp(&row.received_at)?;
                let seq = unsigned(row.seq)?;
                // Zero-padded, so that they sort as the numbers do (migration 0005).
                let actions = if row.numbered { format!("#{seq:020}") } else { row.id.clone() };
                let headers = rows::decode_headers(&row.source, &row.id, row.headers.as_deref())?;
                let delivery = Delivery { source: row.source, id: row.id, received_at };
                Ok(Inbound { seq, delivery, headers, body, actions })
            })
            .collect()
    }

    fn applied(
        &self,
        outcomes: &[(u64, String)],
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.leases.guarded(under, "inbox", move || {
            let (answer, answered) = oneshot::channel();
            self.ask(Job::Applied { outcomes: outcomes.to_vec(), answer }, answered)
        })
    }

    async fn inbox_depth(&self) -> Result<u64, Error> {
        let depth: i64 =
            sqlx::query_scalar("SELECT count(*) FROM inbox WHERE applied_at IS NULL").fetch_one(&self.reads).await?;
        unsigned(depth)
    }

    async fn receipt(&self, source: &str, id: &str) -> Result<Option<Receipt>, Error> {
        // An applied delivery is found by its id in `received`; one still waiting among the few
        // waiting (the inbox has no index on ids: see migration 0005). One statement, so that a
        // delivery applied meanwhile is found in one place or the other.
        let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT received_at, applied_at, outcome FROM inbox
                 WHERE seq = (SELECT seq FROM received WHERE source = ?1 AND id = ?2)
             UNION ALL
             SELECT received_at, applied_at, outcome FROM inbox
                 WHERE applied_at IS NULL AND source = ?1 AND id = ?2
             LIMIT 1",
        )
        .bind(source)
        .bind(id)
        .fetch_optional(&self.reads)
        .await?;
        let Some((received_at, applied_at, outcome)) = row else { return Ok(None) };
        let applied = match (applied_at, outcome) {
            (Some(at), Some(outcome)) => Some((rows::parse_timestamp(&at)?, outcome)),
            _ => None,
        };
        Ok(Some(Receipt { received_at: rows::parse_timestamp(&received_at)?, applied }))
    }

    async fn events(&self, incident: &str) -> Result<Vec<Event>, Error> {
        let events = self.events_after(incident, 0).await?;
        if events.is_empty() {
            return Err(Error::NotFound { incident: incident.to_string() });
        }
        Ok(events)
    }

    async fn events_page(&self, incident: &str, page: &Page) -> Result<Vec<(u64, Event)>, Error> {
        let (sql, [position, limit, skip]) = page.statement();
        let query = sqlx::query_as::<_, (i64, String)>(sql).bind(incident).bind(position).bind(limit);
        let query = match &page.kind {
            Some(kind) => query.bind(skip).bind(kind.as_str()),
            None => query,
        };
        page.decode(incident, query.fetch_all(&self.reads).await?)
    }

    async fn event_counts(&self, incident: &str, after: u64, upto: u64) -> Result<Counts, Error> {
        // From the start, the index's entries counted type by type; a stretch after a known
        // version (usually a few events) read by position and counted here, since the planner
        // would otherwise count it on the index too, over the whole log.
        let (after, upto) = (i64::try_from(after).unwrap_or(i64::MAX), i64::try_from(upto).unwrap_or(i64::MAX));
        if after == 0 {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT type, count(*) FROM events WHERE incident = ? AND seq <= ? GROUP BY type ORDER BY type",
            )
            .bind(incident)
            .bind(upto)
            .fetch_all(&self.reads)
            .await?;
            return Ok(rows.into_iter().map(|(kind, count)| (kind, count.unsigned_abs())).collect());
        }
        let kinds: Vec<String> =
            sqlx::query_scalar("SELECT type FROM events WHERE incident = ? AND seq > ? AND seq <= ? ORDER BY seq")
                .bind(incident)
                .bind(after)
                .bind(upto)
                .fetch_all(&self.reads)
                .await?;
        Ok(super::page::count(kinds))
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

    async fn incidents_open_since(&self, at: DateTime<Utc>) -> Result<Vec<IncidentSummary>, Error> {
        let rows: Vec<IncidentRow> =
            sqlx::query_as(summaries!("WHERE closed_at IS NULL OR closed_at >= ? ORDER BY started_at, id"))
                .bind(rows::timestamp(at))
                .fetch_all(&self.reads)
                .await?;
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

    async fn open_keys(&self) -> Result<Vec<(String, String, String)>, Error> {
        let open = sqlx::query_as(
            "SELECT runbook_id, key, id FROM incidents WHERE closed_at IS NULL AND key IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.reads)
        .await?;
        Ok(open)
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

    async fn claim_effects(&self, holder: &str, limit: usize, lease: Duration) -> Result<Vec<Claimed>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.leases.claim(|limit| self.pending_effects(limit), holder, limit, lease).await
    }

    async fn renew_effects(&self, holder: &str, tokens: &[u64], lease: Duration) -> Result<Vec<u64>, Error> {
        Ok(self.leases.renew(holder, tokens, lease))
    }

    async fn claim_leases(&self, holder: &str, names: &[String], lease: Duration) -> Result<Vec<Lease>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(self.leases.claim_named(holder, names, Some(lease), usize::MAX))
    }

    async fn claim_leases_up_to(&self, holder: &str, names: &[String], most: usize) -> Result<Vec<Lease>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(self.leases.claim_named(holder, names, None, most))
    }

    async fn leases_held(&self, prefix: &str) -> Result<usize, Error> {
        Ok(self.leases.named_held(prefix))
    }

    async fn forget_leases(&self, prefix: &str, ran_out_for: Duration) -> Result<usize, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // The incidents whose leases may go if they are finished, then which of them are: the
        // leases are checked again as they are removed (one may have been claimed meanwhile).
        let incidents = self.leases.incidents_to_forget(prefix);
        let finished: std::collections::HashSet<String> = if incidents.is_empty() {
            std::collections::HashSet::new()
        } else {
            let ids = serde_json::to_string(&incidents).expect("incident ids encode as JSON");
            sqlx::query_scalar(
                "SELECT id FROM incidents
                 WHERE id IN (SELECT value FROM json_each(?)) AND closed_at IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.incident = incidents.id AND outbox.done_at IS NULL)",
            )
            .bind(ids)
            .fetch_all(&self.reads)
            .await?
            .into_iter()
            .collect()
        };
        Ok(self.leases.forget_named(prefix, ran_out_for, &finished))
    }

    async fn renew_leases(&self, holder: &str, tokens: &[u64], lease: Duration) -> Result<Vec<u64>, Error> {
        Ok(self.leases.renew_named(holder, tokens, lease))
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

    fn add_checkpoint(
        &self,
        incident: &str,
        checkpoint: &SignedCheckpoint,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.leases.guarded(under, incident, move || {
            let (answer, answered) = oneshot::channel();
            let job = Job::Checkpoint { incident: incident.to_string(), checkpoint: checkpoint.clone(), answer };
            self.ask(job, answered)
        })
    }

    fn campaign_plan(&self, campaign: &str, batches: &[BatchPlan]) -> impl Future<Output = Result<(), Error>> + Send {
        self.write_campaign(CampaignRows::plan(campaign, batches))
    }

    async fn campaign_batches(&self, campaign: &str) -> Result<Vec<CampaignBatch>, Error> {
        campaign::batches(&self.reads, campaign).await
    }

    fn campaign_sending_under(
        &self,
        campaign: &str,
        numbers: &[u32],
        at: DateTime<Utc>,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.leases.guarded(under, campaign, move || self.write_campaign(CampaignRows::sending(campaign, numbers, at)))
    }

    fn campaign_answered_under(
        &self,
        campaign: &str,
        results: &[BatchResult],
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.leases.guarded(under, campaign, move || self.write_campaign(CampaignRows::answered(campaign, results)))
    }

    fn campaign_attempt_failed_under(
        &self,
        campaign: &str,
        number: u32,
        failure: &AttemptFailure,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.leases.guarded(under, campaign, move || {
            self.write_campaign(CampaignRows::attempt_failed(campaign, number, failure))
        })
    }

    async fn campaign_failures(&self, campaign: &str) -> Result<Vec<(u32, String, String)>, Error> {
        campaign::failures(&self.reads, campaign).await
    }

    async fn campaign_failure_reasons(&self, campaign: &str, limit: u32) -> Result<Vec<(String, u64)>, Error> {
        campaign::failure_reasons(&self.reads, campaign, limit).await
    }

    async fn campaign_leaves(&self, campaign: &str) -> Result<Vec<(u32, Vec<u8>)>, Error> {
        campaign::leaves(&self.reads, campaign).await
    }

    async fn campaigns(&self, incident: &str) -> Result<Vec<(String, CampaignProgress)>, Error> {
        campaign::progress(&self.reads, incident).await
    }
}
