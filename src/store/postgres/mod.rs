//! The shared store: one PostgreSQL database, for a deployment that outgrows one machine's file.
//!
//! The same rules as the embedded store, kept the same way: one writer (a task with the only
//! connection that writes) takes every write waiting for it and stores them in one transaction
//! (group commit), so that a hundred incidents appending at once share a few commits; the
//! schema's triggers (migrations/postgres) make each event insert the compare-and-set of its
//! incident's version, check that its hash chains to the incident's head, and refuse changes to
//! events and checkpoints. Events are hashed in the writer, in the transaction that stores them,
//! over the same canonical bytes as SQLite, so a log exported from either verifies the same way.
//! `writer.rs` is that writer; reads go through a small pool of their own.
//!
//! Several processes may write to one database (a `phasegate act` beside `phasegate serve`): of two
//! that append at the same version, the second waits at the events' primary key for the first and
//! is refused as a conflict, whichever process it is in. An event only inserts: the incident's
//! version and head are its latest event's (migration 0007), so appending leaves no dead row
//! version behind for a long-held snapshot to keep.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};

mod campaign;
mod claims;
mod notify;
mod writer;

use super::campaign::CampaignRows;
use super::rows::{self, AppendRows, IncidentRow};
use super::{
    Append, BatchResult, CampaignBatch, CampaignProgress, ChainLink, Claimed, Counts, Delivery, Error, Fence, Headers,
    Inbound, IncidentSummary, Lease, Page, PendingEffect, Receipt, Store, StoredCheckpoint,
};
use crate::audit::keys::SignedCheckpoint;
use crate::campaign::{AttemptFailure, BatchPlan};
use crate::engine::Event;
use writer::{Job, Receive};

/// The schema, embedded in the binary and brought up to date whenever a store is opened to write.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections for reads.
const READERS: u32 = 4;

/// Writes waiting for the writer before callers are made to wait to send theirs.
const QUEUE: usize = 1024;

/// The most writes one transaction carries. Each append of a transaction that must undo one of
/// them alone has a savepoint, and PostgreSQL keeps 64 of a transaction's subtransactions in
/// shared memory before every other session's snapshots get slower.
const MAX_BATCH: usize = 64;

/// How long connecting waits for the server before it says it cannot reach it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long any of phasegate's sessions may sit idle inside an open transaction before the
/// server ends it (`idle_in_transaction_session_timeout`). phasegate never waits on anything
/// outside the database with a transaction open, so only a process frozen or lost in the middle
/// of one reaches it: its transaction would otherwise hold vacuum's horizon back, and keep the
/// rows it locked (a lease it was writing under) from being taken over, for as long as it lasts.
/// A URL that sets it (`?options=-cidle_in_transaction_session_timeout%3D...`) keeps its own.
pub const IDLE_IN_TRANSACTION: &str = "10s";

/// How long a claim or a renewal of a lease may run (`statement_timeout` on the connections that
/// make them): each is one short statement that skips locked rows, so one that takes longer is
/// stuck, and is better cancelled and tried again at the next pass than left to block the loop.
pub const CLAIM_TIMEOUT: &str = "5s";

/// Connections for claims and renewals of leases, apart from the reads so that a busy page of
/// reads never delays a renewal past its lease.
const CLAIMERS: u32 = 2;

/// `options` with the settings every session of phasegate's has ([`IDLE_IN_TRANSACTION`]), and
/// without sqlx's logging of every statement (and of every slow one as a warning: the caller
/// logs what fails, once, with the incident it was about).
fn session(options: PgConnectOptions) -> PgConnectOptions {
    let options = options.disable_statement_logging();
    if options.get_options().is_some_and(|given| given.contains("idle_in_transaction_session_timeout")) {
        return options;
    }
    options.options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)])
}

/// Selects incidents' summaries (the view `incident_summaries`, migration 0007), with what follows
/// `FROM`.
macro_rules! summaries {
    ($rest:literal) => {
        concat!(
            "SELECT id, runbook_id, key, version, started_at, updated_at, closed_at, head, checkpointed,
                    checkpointed_at FROM incident_summaries ",
            $rest
        )
    };
}

/// The PostgreSQL event store. Share it behind an `Arc`; [`PostgresStore::close`] waits for the
/// writer to finish what it was given.
#[derive(Debug)]
pub struct PostgresStore {
    writes: mpsc::Sender<Job>,
    reads: PgPool,
    /// Connections for claims and renewals of leases (`claims.rs`), each statement limited to
    /// [`CLAIM_TIMEOUT`].
    claims: PgPool,
    /// Closed when the writer's task ends.
    writer: oneshot::Receiver<()>,
    commits: Arc<AtomicU64>,
    read_only: bool,
    options: PgConnectOptions,
    /// Once started ([`PostgresStore::notify_replicas`]): the NOTIFY sent after work is added
    /// and the LISTEN that hears other replicas' (`notify.rs`).
    notifications: std::sync::OnceLock<notify::Notifications>,
}

/// Whether `location` (a `--db` value or the configuration's `database`) names a PostgreSQL
/// database rather than a SQLite file.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Where a URL points, for messages: user, host, port and database, never a password.
pub fn describe(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => format!(
            "PostgreSQL at {}:{} (database `{}`, user `{}`)",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(the user's)"),
            options.get_username()
        ),
        Err(_) => "PostgreSQL (the URL does not parse)".to_string(),
    }
}

/// One connection to the database at `url`, without a store: what `db copy` asks before it
/// changes anything.
pub async fn connect_once(url: &str) -> Result<sqlx::postgres::PgConnection, Error> {
    writer::connect(&session(PgConnectOptions::from_str(url)?)).await
}

impl PostgresStore {
    /// Opens the store at `url` (`postgres://user@host:port/database`), bringing its schema up to
    /// date. The schema goes where the connection's `search_path` puts it (the URL may set it with
    /// `?options=-csearch_path%3Dname`). Must be called inside a tokio runtime.
    pub async fn open(url: &str) -> Result<PostgresStore, Error> {
        PostgresStore::connect(PgConnectOptions::from_str(url)?).await
    }

    /// [`PostgresStore::open`] with options built by the caller.
    pub async fn connect(options: PgConnectOptions) -> Result<PostgresStore, Error> {
        let options = session(options);
        let mut connection = writer::connect(&options).await?;
        MIGRATOR.run(&mut connection).await?;
        let reads = PgPoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let claims = PgPoolOptions::new()
            .max_connections(CLAIMERS)
            .min_connections(0)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options.clone().options([("statement_timeout", CLAIM_TIMEOUT)]));
        let (writes, queue) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let (finished, writer) = oneshot::channel();
        let work = writer::write(connection, options.clone(), queue, Arc::clone(&commits));
        tokio::spawn(async move {
            work.await;
            let _ = finished.send(());
        });
        let notifications = std::sync::OnceLock::new();
        Ok(PostgresStore { writes, reads, claims, writer, commits, read_only: false, options, notifications })
    }

    /// Opens an existing store to read it and nothing else: no migration and no writer, and every
    /// connection's transactions are read-only (`default_transaction_read_only`), so what
    /// `audit verify` and `audit export` check cannot change under them. Every write answers
    /// [`Error::ReadOnly`].
    pub async fn open_read_only(url: &str) -> Result<PostgresStore, Error> {
        PostgresStore::connect_read_only(PgConnectOptions::from_str(url)?).await
    }

    /// [`PostgresStore::open_read_only`] with options built by the caller.
    pub async fn connect_read_only(options: PgConnectOptions) -> Result<PostgresStore, Error> {
        let options = session(options.options([("default_transaction_read_only", "on")]));
        let reads = PgPoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let schema: Option<String> = sqlx::query_scalar("SELECT to_regclass('events')::text").fetch_one(&reads).await?;
        if schema.is_none() {
            reads.close().await;
            return Err(Error::Outdated("it has no phasegate tables (no migration ran)".into()));
        }
        let (writes, _) = mpsc::channel(1);
        let (_, writer) = oneshot::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let notifications = std::sync::OnceLock::new();
        // Never used: every claim of a read-only store is refused.
        let claims = PgPoolOptions::new().max_connections(1).connect_lazy_with(options.clone());
        Ok(PostgresStore { writes, reads, claims, writer, commits, read_only: true, options, notifications })
    }

    /// Starts waking the other processes that share the database, and being woken by them: after
    /// each commit that adds work this store sends a notification (outside the transaction, at
    /// most every 50 ms), and [`Store::work_bell`] rings when any process's notification is heard.
    /// Called once by `phasegate serve` unless notifications are switched off; a second call does
    /// nothing.
    pub async fn notify_replicas(&self) -> Result<(), Error> {
        if self.notifications.get().is_none() {
            let started = notify::Notifications::start(&self.options).await?;
            let _ = self.notifications.set(started);
        }
        Ok(())
    }

    /// After a commit that added work: the other replicas are told, if notifications are on.
    fn added_work(&self) {
        if let Some(notifications) = self.notifications.get() {
            notifications.poke();
        }
    }

    /// How many transactions the writer has committed since the store was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stops taking writes, waits for the writer to answer those it has, and closes the
    /// connections.
    pub async fn close(self) {
        drop(self.writes);
        let _ = self.writer.await;
        self.reads.close().await;
        self.claims.close().await;
    }

    /// Gives the writer a job, now if its queue has room (so that jobs are taken in the order of
    /// the calls), and waits for its answer.
    fn ask<T: Send + 'static>(
        &self,
        job: Job,
        answered: oneshot::Receiver<Result<T, Error>>,
    ) -> impl Future<Output = Result<T, Error>> + Send + '_ {
        let waiting = match self.read_only {
            true => None,
            false => self.writes.try_send(job).err().map(mpsc::error::TrySendError::into_inner),
        };
        async move {
            if self.read_only {
                return Err(Error::ReadOnly);
            }
            if let Some(job) = waiting {
                self.writes.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
            }
            answered.await.map_err(|_| sqlx::Error::WorkerCrashed)?
        }
    }

    fn write_campaign(
        &self,
        rows: Result<CampaignRows, Error>,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let asked = rows.map(|rows| {
            (!rows.is_empty()).then(|| {
                let (answer, answered) = oneshot::channel();
                self.ask(Job::Campaign(rows, under.cloned(), answer), answered)
            })
        });
        async move {
            match asked? {
                Some(asked) => asked.await,
                None => Ok(()),
            }
        }
    }
}

impl Store for PostgresStore {
    fn append(&self, append: Append) -> impl Future<Output = Result<u64, Error>> + Send {
        // Encoded here, in the caller's task, and sent to the writer before the future is first
        // polled, so appends are taken in the order of the calls (see `Store::append`).
        let asked = AppendRows::new(append).map(|rows| {
            let adds_work = !rows.effects.is_empty();
            let (answer, answered) = oneshot::channel();
            (adds_work, self.ask(Job::Append(rows, answer), answered))
        });
        async move {
            let (adds_work, asked) = asked?;
            let version = asked.await?;
            if adds_work {
                self.added_work();
            }
            Ok(version)
        }
    }

    async fn delivery(&self, source: &str, id: &str) -> Result<Option<String>, Error> {
        let incident = sqlx::query_scalar("SELECT incident FROM deliveries WHERE source = $1 AND id = $2")
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
        let asked = self.ask(job, answered);
        async move {
            let new = asked.await?;
            if new {
                self.added_work();
            }
            Ok(new)
        }
    }

    async fn inbox(&self, limit: usize, bytes: usize) -> Result<Vec<Inbound>, Error> {
        let rows: Vec<InboundRow> = sqlx::query_as(
            "SELECT seq, source, id, received_at, headers, body,
                    seq >= (SELECT min(since) FROM inbox_numbered) AS numbered FROM (
                 SELECT seq, source, id, received_at, headers, body,
                        sum(length(body) + coalesce(octet_length(headers), 0)) OVER (ORDER BY seq) AS through
                 FROM inbox WHERE applied_at IS NULL ORDER BY seq LIMIT $1
             ) AS waiting
             WHERE through - length(body) - coalesce(octet_length(headers), 0) < $2 ORDER BY seq",
        )
        .bind(signed_size(limit))
        .bind(signed_size(bytes.max(1)))
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter()
            .map(|row| {
                let body = row.body.ok_or_else(|| {
                    Error::Corrupt(format!("delivery `{}` from `{}` waits without its body", row.id, row.source))
                })?;
                let received_at = rows::parse_timestamp(&row.received_at)?;
                let seq = unsigned(row.seq)?;
                // Zero-padded, so that they sort as the numbers do (as SQLite's, migration 0005).
                let actions = if row.numbered.unwrap_or(true) { format!("#{seq:020}") } else { row.id.clone() };
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
        let (answer, answered) = oneshot::channel();
        self.ask(Job::Applied(outcomes.to_vec(), under.cloned(), answer), answered)
    }

    async fn inbox_depth(&self) -> Result<u64, Error> {
        let depth: i64 =
            sqlx::query_scalar("SELECT count(*) FROM inbox WHERE applied_at IS NULL").fetch_one(&self.reads).await?;
        unsigned(depth)
    }

    async fn receipt(&self, source: &str, id: &str) -> Result<Option<Receipt>, Error> {
        let row: Option<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT received_at, applied_at, outcome FROM inbox WHERE source = $1 AND id = $2")
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
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT type, count(*) FROM events WHERE incident = $1 AND seq > $2 AND seq <= $3 GROUP BY type",
        )
        .bind(incident)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(upto).unwrap_or(i64::MAX))
        .fetch_all(&self.reads)
        .await?;
        // In the order of the names' bytes, as SQLite sorts them, not in the database's collation.
        let mut counts: Counts = rows.into_iter().map(|(kind, count)| (kind, count.unsigned_abs())).collect();
        counts.sort_unstable();
        Ok(counts)
    }

    async fn incident(&self, id: &str) -> Result<Option<IncidentSummary>, Error> {
        let row: Option<IncidentRow> =
            sqlx::query_as(summaries!("WHERE id = $1")).bind(id).fetch_optional(&self.reads).await?;
        row.map(IncidentSummary::try_from).transpose()
    }

    async fn incidents(&self) -> Result<Vec<IncidentSummary>, Error> {
        let rows: Vec<IncidentRow> =
            sqlx::query_as(summaries!("ORDER BY started_at, id")).fetch_all(&self.reads).await?;
        rows.into_iter().map(IncidentSummary::try_from).collect()
    }

    async fn incidents_open_since(&self, at: DateTime<Utc>) -> Result<Vec<IncidentSummary>, Error> {
        // The closed incidents are left out by reading `incidents` alone, before either view's
        // lookups of their latest event and checkpoint.
        let rows: Vec<IncidentRow> =
            sqlx::query_as(summaries!("WHERE closed_at IS NULL OR closed_at >= $1 ORDER BY started_at, id"))
                .bind(rows::timestamp(at))
                .fetch_all(&self.reads)
                .await?;
        rows.into_iter().map(IncidentSummary::try_from).collect()
    }

    async fn open_incident_by_key(&self, runbook_id: &str, key: &str) -> Result<Option<String>, Error> {
        let id = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE runbook_id = $1 AND key = $2 AND key IS NOT NULL AND closed_at IS NULL",
        )
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
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT incident, effect FROM outbox WHERE done_at IS NULL ORDER BY seq LIMIT $1")
                .bind(signed_size(limit))
                .fetch_all(&self.reads)
                .await?;
        rows.into_iter()
            .map(|(incident, effect)| Ok(PendingEffect { effect: rows::decode_effect(&incident, &effect)?, incident }))
            .collect()
    }

    async fn claim_effects(&self, holder: &str, limit: usize, lease: Duration) -> Result<Vec<Claimed>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        claims::claim(&self.claims, holder, limit, lease).await
    }

    async fn renew_effects(&self, holder: &str, tokens: &[u64], lease: Duration) -> Result<Vec<u64>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        claims::renew(&self.claims, holder, tokens, lease).await
    }

    async fn claim_leases(&self, holder: &str, names: &[String], lease: Duration) -> Result<Vec<Lease>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        claims::claim_named(&self.claims, holder, names, Some(lease), usize::MAX).await
    }

    async fn claim_leases_up_to(&self, holder: &str, names: &[String], most: usize) -> Result<Vec<Lease>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        claims::claim_named(&self.claims, holder, names, None, most).await
    }

    async fn leases_held(&self, prefix: &str) -> Result<usize, Error> {
        claims::held_named(&self.claims, prefix).await
    }

    async fn forget_leases(&self, prefix: &str, ran_out_for: Duration) -> Result<usize, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        claims::forget_named(&self.claims, prefix, ran_out_for).await
    }

    async fn renew_leases(&self, holder: &str, tokens: &[u64], lease: Duration) -> Result<Vec<u64>, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        claims::renew_named(&self.claims, holder, tokens, lease).await
    }

    fn work_bell(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.notifications.get().map(notify::Notifications::bell)
    }

    async fn chain(&self, incident: &str, after: u64, limit: usize) -> Result<Vec<ChainLink>, Error> {
        let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
            "SELECT seq, hash, event FROM events WHERE incident = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(incident)
        .bind(signed(after))
        .bind(signed_size(limit))
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter().map(|(seq, hash, event)| Ok(ChainLink { seq: unsigned(seq)?, hash, event })).collect()
    }

    async fn checkpoints(&self, incident: &str) -> Result<Vec<StoredCheckpoint>, Error> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT number, body, signature FROM checkpoints WHERE incident = $1 ORDER BY number")
                .bind(incident)
                .fetch_all(&self.reads)
                .await?;
        rows.into_iter()
            .map(|(number, body, signature)| Ok(StoredCheckpoint { number: unsigned(number)?, body, signature }))
            .collect()
    }

    fn add_checkpoint(
        &self,
        incident: &str,
        checkpoint: &SignedCheckpoint,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let (answer, answered) = oneshot::channel();
        self.ask(Job::Checkpoint(incident.to_string(), checkpoint.clone(), under.cloned(), answer), answered)
    }

    fn campaign_plan(&self, campaign: &str, batches: &[BatchPlan]) -> impl Future<Output = Result<(), Error>> + Send {
        self.write_campaign(CampaignRows::plan(campaign, batches), None)
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
        self.write_campaign(CampaignRows::sending(campaign, numbers, at), under)
    }

    fn campaign_answered_under(
        &self,
        campaign: &str,
        results: &[BatchResult],
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.write_campaign(CampaignRows::answered(campaign, results), under)
    }

    fn campaign_attempt_failed_under(
        &self,
        campaign: &str,
        number: u32,
        failure: &AttemptFailure,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.write_campaign(CampaignRows::attempt_failed(campaign, number, failure), under)
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

#[derive(sqlx::FromRow)]
struct InboundRow {
    seq: i64,
    source: String,
    id: String,
    received_at: String,
    headers: Option<String>,
    body: Option<Vec<u8>>,
    numbered: Option<bool>,
}

/// PostgreSQL's integers are signed; versions and sequence numbers never are.
fn signed(number: u64) -> i64 {
    // No version reaches 2^63; one that claimed to would simply never match a stored version.
    i64::try_from(number).unwrap_or(i64::MAX)
}

/// A limit or a size as PostgreSQL takes it: `usize::MAX` (no limit) is the largest it has.
fn signed_size(number: usize) -> i64 {
    i64::try_from(number).unwrap_or(i64::MAX)
}

fn unsigned(number: i64) -> Result<u64, Error> {
    u64::try_from(number).map_err(|_| Error::Corrupt(format!("a stored version is negative: {number}")))
}
