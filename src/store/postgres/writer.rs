//! The writer: the one connection that writes, and what it stores in each transaction.
//!
//! It takes every write waiting (appends, received deliveries, campaign writes, checkpoints,
//! applied deliveries) and stores them in one transaction, hopefully: each write as it comes,
//! without a savepoint. PostgreSQL ends a transaction's use at its first failed statement, so if a
//! write is refused after it has written something (or by a statement that failed), the
//! transaction is rolled back and the batch is stored again carefully, each write with a savepoint
//! of its own, undone alone if refused; the others are still stored. A refusal found by reading
//! before anything is written (the usual conflict) needs neither.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{mpsc, oneshot};

use super::super::campaign::CampaignRows;
use super::super::rows::{self, AppendRows};
use super::super::{CampaignRefusal, Error, Fence};
use super::{CONNECT_TIMEOUT, MAX_BATCH, claims, signed};

mod together;
use crate::audit::chain::{self, GENESIS, Hash};
use crate::audit::keys::SignedCheckpoint;

/// A webhook delivery to keep as received, with where its answer (new or not) goes.
pub(super) struct Receive {
    pub(super) source: String,
    pub(super) id: String,
    pub(super) received_at: String,
    pub(super) headers: Option<String>,
    pub(super) body: Vec<u8>,
    pub(super) answer: oneshot::Sender<Result<bool, Error>>,
}

/// What the writer is given.
pub(super) enum Job {
    Append(AppendRows, oneshot::Sender<Result<u64, Error>>),
    Receive(Receive),
    Campaign(CampaignRows, Option<Fence>, oneshot::Sender<Result<(), Error>>),
    Checkpoint(String, SignedCheckpoint, Option<Fence>, oneshot::Sender<Result<(), Error>>),
    Applied(Vec<(u64, String)>, Option<Fence>, oneshot::Sender<Result<(), Error>>),
}

impl Job {
    /// The append, for the batch stored together, which checks (and locks) the claims of those
    /// under a fence in the statement that writes (`together.rs`); not one under a fence that
    /// writes no event, whose claim the careful path checks, so that a claim lost is told from
    /// nothing to write by the events not stored.
    fn append(&self) -> Option<&AppendRows> {
        match self {
            Job::Append(rows, _) if rows.under.is_none() || !rows.events.is_empty() => Some(rows),
            _ => None,
        }
    }

    /// The claim the write is made under, and what it writes (for the refusal).
    fn fence(&self) -> Option<(&Fence, &str)> {
        match self {
            Job::Append(rows, _) => Some((rows.under.as_ref()?, rows.incident.as_str())),
            Job::Campaign(rows, fence, _) => Some((fence.as_ref()?, rows.campaign.as_str())),
            Job::Checkpoint(incident, _, fence, _) => Some((fence.as_ref()?, incident.as_str())),
            Job::Applied(_, fence, _) => Some((fence.as_ref()?, "inbox")),
            Job::Receive(_) => None,
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Append(rows, _) => write!(formatter, "Append({})", rows.incident),
            Job::Receive(receive) => write!(formatter, "Receive({}/{})", receive.source, receive.id),
            Job::Campaign(rows, ..) => write!(formatter, "Campaign({})", rows.campaign),
            Job::Checkpoint(incident, ..) => write!(formatter, "Checkpoint({incident})"),
            Job::Applied(outcomes, ..) => write!(formatter, "Applied({})", outcomes.len()),
        }
    }
}

/// Connects the writer (or `phasegate db copy`), saying where it could not reach.
pub(super) async fn connect(options: &PgConnectOptions) -> Result<PgConnection, Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(connected) => Ok(connected?),
        Err(_) => Err(Error::from(sqlx::Error::PoolTimedOut)),
    }
}

/// Why a write was not stored.
struct Refused {
    /// Why; `None` when the incident's version or head refused an append, which [`refusal`] explains once the
    /// transaction can read again.
    why: Option<Error>,
    /// Whether it wrote something, or a statement failed: the transaction must then undo it.
    dirty: bool,
}

impl Refused {
    fn clean(error: Error) -> Refused {
        Refused { why: Some(error), dirty: false }
    }

    fn dirty(error: Error) -> Refused {
        Refused { why: Some(error), dirty: true }
    }
}

impl From<sqlx::Error> for Refused {
    fn from(error: sqlx::Error) -> Refused {
        Refused { why: Some(error.into()), dirty: true }
    }
}

impl From<Error> for Refused {
    fn from(error: Error) -> Refused {
        Refused { why: Some(error), dirty: true }
    }
}

/// Why a batch stored nothing.
enum Failed {
    Database(Error),
    /// A write was refused after it had written: the batch again, carefully.
    Again,
}

impl From<sqlx::Error> for Failed {
    fn from(error: sqlx::Error) -> Failed {
        Failed::Database(error.into())
    }
}

impl From<Error> for Failed {
    fn from(error: Error) -> Failed {
        Failed::Database(error)
    }
}

/// The incidents' versions and head hashes as this writer last committed them, so that an append
/// need not read them first. Another process's append moves an incident past its entry; the
/// trigger then refuses the next append's events (their version), and the entry is dropped.
type Heads = HashMap<String, (u64, Hash)>;

/// Heads kept before the cache starts over.
const MOST_HEADS: usize = 10_000;

struct Writer {
    connection: PgConnection,
    options: PgConnectOptions,
    heads: Heads,
    /// The heads the open transaction leaves, kept once it commits.
    fresh: Heads,
    commits: Arc<AtomicU64>,
}

/// The writer: takes every write waiting, stores them in one transaction, answers each.
pub(super) async fn write(
    connection: PgConnection,
    options: PgConnectOptions,
    mut queue: mpsc::Receiver<Job>,
    commits: Arc<AtomicU64>,
) {
    let mut writer = Writer { connection, options, heads: Heads::new(), fresh: Heads::new(), commits };
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        writer.commit_and_answer(&mut jobs).await;
    }
    let _ = writer.connection.close().await;
}

/// What each write of a batch is answered, in the batch's order (received deliveries apart).
struct Answers {
    receives: Vec<bool>,
    jobs: Vec<Result<u64, Error>>,
}

impl Writer {
    async fn commit_and_answer(&mut self, jobs: &mut Vec<Job>) {
        let mut receives = Vec::new();
        let mut others = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            match job {
                Job::Receive(receive) => receives.push(receive),
                other => others.push(other),
            }
        }
        // Appends and received deliveries alone: together first, a statement per table.
        let together = match others.iter().map(Job::append).collect::<Option<Vec<_>>>() {
            Some(appends) => self.commit_together(&receives, &appends).await,
            None => None,
        };
        let mut committed = match together {
            Some(answers) => Ok(answers),
            None => self.commit(&receives, &others, false).await,
        };
        if matches!(committed, Err(Failed::Again)) {
            committed = self.commit(&receives, &others, true).await;
        }
        let (received, answered) = match committed {
            Ok(Answers { receives, jobs }) => (receives.into_iter().map(Ok).collect(), jobs),
            Err(failed) => {
                let error = match failed {
                    Failed::Database(error) => error,
                    Failed::Again => Error::Corrupt("a write was refused after a savepoint undid it".into()),
                };
                self.recover().await;
                (
                    receives.iter().map(|_| Err(error.clone())).collect::<Vec<_>>(),
                    others.iter().map(|_| Err(error.clone())).collect(),
                )
            }
        };
        // A caller that stopped waiting learns the outcome by reading again.
        for (receive, new) in receives.into_iter().zip(received) {
            let _ = receive.answer.send(new);
        }
        for (job, answer) in others.into_iter().zip(answered) {
            match job {
                Job::Append(_, sender) => {
                    let _ = sender.send(answer);
                }
                Job::Campaign(_, _, sender) | Job::Checkpoint(_, _, _, sender) | Job::Applied(_, _, sender) => {
                    let _ = sender.send(answer.map(|_| ()));
                }
                Job::Receive(_) => unreachable!("received deliveries are answered above"),
            }
        }
    }

    /// After a failed batch: the transaction is ended, and a lost connection is made again (the
    /// next batch says so if that fails too).
    async fn recover(&mut self) {
        self.fresh.clear();
        self.heads.clear();
        if sqlx::query("ROLLBACK").execute(&mut self.connection).await.is_err()
            && let Ok(connection) = connect(&self.options).await
        {
            self.connection = connection;
        }
    }

    /// Stores a batch in one transaction: the received deliveries first (one statement), then
    /// each other write in order. `careful` gives each write a savepoint.
    async fn commit(&mut self, receives: &[Receive], jobs: &[Job], careful: bool) -> Result<Answers, Failed> {
        self.fresh.clear();
        let now = rows::timestamp(Utc::now());
        sqlx::query("BEGIN").execute(&mut self.connection).await?;
        let received = if receives.is_empty() { Vec::new() } else { self.receive(receives).await? };
        let alone = receives.is_empty() && jobs.len() == 1;
        let savepoints = careful && !alone;
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            if savepoints {
                sqlx::query("SAVEPOINT job").execute(&mut self.connection).await?;
            }
            match self.run(job, &now).await {
                Ok(answer) => {
                    if savepoints {
                        sqlx::query("RELEASE SAVEPOINT job").execute(&mut self.connection).await?;
                    }
                    answers.push(Ok(answer));
                }
                Err(Refused { why: Some(error @ Error::Database(_)), .. }) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut self.connection).await;
                    return Err(Failed::Database(error));
                }
                Err(Refused { why, dirty }) => {
                    if savepoints {
                        sqlx::query("ROLLBACK TO SAVEPOINT job").execute(&mut self.connection).await?;
                        sqlx::query("RELEASE SAVEPOINT job").execute(&mut self.connection).await?;
                    } else if alone {
                        sqlx::query("ROLLBACK").execute(&mut self.connection).await?;
                        self.fresh.clear();
                        return Ok(Answers { receives: received, jobs: vec![Err(self.why(job, why).await)] });
                    } else if dirty {
                        sqlx::query("ROLLBACK").execute(&mut self.connection).await?;
                        return Err(Failed::Again);
                    }
                    answers.push(Err(self.why(job, why).await));
                }
            }
        }
        sqlx::query("COMMIT").execute(&mut self.connection).await?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        let fresh = std::mem::take(&mut self.fresh);
        self.remember(fresh);
        Ok(Answers { receives: received, jobs: answers })
    }

    /// The error a refused write is answered with.
    async fn why(&mut self, job: &Job, why: Option<Error>) -> Error {
        match (why, job) {
            (Some(error), _) => error,
            (None, Job::Append(rows, _)) => rows::refusal(&mut self.connection, rows).await,
            (None, other) => Error::Corrupt(format!("{other:?} was refused for no reason given")),
        }
    }

    /// One write inside the open transaction; an append answers its new version, others 0.
    async fn run(&mut self, job: &Job, now: &str) -> Result<u64, Refused> {
        // A write under a claim: the claim is checked before anything is written, and its row
        // stays locked until the transaction ends, so that no one takes it over in between.
        if let Some((fence, write)) = job.fence()
            && !claims::holds(&mut self.connection, fence).await?
        {
            let lost = Error::FenceLost { guarding: fence.guarding().to_string(), write: write.to_string() };
            return Err(Refused::clean(lost));
        }
        match job {
            Job::Append(rows, _) => self.append(rows, now).await,
            Job::Campaign(rows, ..) => self.campaign(rows).await.map(|()| 0),
            Job::Checkpoint(incident, checkpoint, ..) => {
                store_checkpoint(&mut self.connection, incident, checkpoint).await.map(|()| 0)
            }
            Job::Applied(outcomes, ..) => self.mark_applied(outcomes, now).await.map(|()| 0).map_err(Refused::from),
            Job::Receive(_) => unreachable!("received deliveries are stored apart"),
        }
    }

    /// Keeps the heads a commit left.
    fn remember(&mut self, heads: Heads) {
        if self.heads.len() + heads.len() > MOST_HEADS {
            self.heads.clear();
        }
        self.heads.extend(heads);
    }

    /// The head an append follows, if this writer knows it.
    fn known_head(&self, incident: &str) -> Option<(u64, Hash)> {
        self.fresh.get(incident).or_else(|| self.heads.get(incident)).copied()
    }

    /// One append: the incident's row for a new incident (or the check of its version), the
    /// deliveries it records, its events in one statement (which the trigger checks and chains),
    /// the new effects in one, and the completed one.
    async fn append(&mut self, rows: &AppendRows, now: &str) -> Result<u64, Refused> {
        let incident = rows.incident.as_str();
        let mut wrote = false;
        let invalid = |problem: String| Error::Invalid { incident: incident.to_string(), problem };
        if let Some(start) = &rows.start {
            // The primary key refuses a second start, the partial unique index a second open
            // incident with the same key; either way nothing is inserted, and `refusal` says why.
            let inserted = sqlx::query(
                "INSERT INTO incidents (id, runbook_id, key, started_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(incident)
            .bind(&start.runbook_id)
            .bind(&start.key)
            .bind(&start.started_at)
            .execute(&mut self.connection)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(Refused { why: None, dirty: false });
            }
            wrote = true;
        }
        let mut prev = GENESIS;
        if rows.start.is_none() {
            match self.known_head(incident) {
                Some((version, head)) if version == rows.expected => prev = head,
                _ => {
                    self.heads.remove(incident);
                    let stored: Option<(i64, Option<String>)> =
                        sqlx::query_as("SELECT version, head FROM incident_heads WHERE id = $1")
                            .bind(incident)
                            .fetch_optional(&mut self.connection)
                            .await?;
                    match stored {
                        Some((version, head)) if version == signed(rows.expected) => match head {
                            Some(head) => {
                                prev = chain::from_hex(&head).ok_or_else(|| {
                                    Error::Corrupt(format!("incident `{incident}` has head `{head}`, not a hash"))
                                })?;
                            }
                            None if version > 0 => {
                                let problem = format!("incident `{incident}` has events but no head hash");
                                return Err(Refused::clean(Error::Corrupt(problem)));
                            }
                            None => {}
                        },
                        _ => return Err(Refused { why: None, dirty: false }),
                    }
                }
            }
        }
        if !rows.deliveries.is_empty() {
            let mut once = HashSet::new();
            if !rows.deliveries.iter().all(|(source, id, _)| once.insert((source, id))) {
                let refused = invalid("it records one delivery twice".into());
                return Err(Refused { why: Some(refused), dirty: wrote });
            }
            let (sources, ids, times): (Vec<&str>, Vec<&str>, Vec<&str>) =
                rows.deliveries.iter().map(|(source, id, at)| (source.as_str(), id.as_str(), at.as_str())).collect();
            let inserted: Vec<(String, String)> = sqlx::query_as(
                "INSERT INTO deliveries (source, id, incident, received_at)
                 SELECT source, id, $1, received_at FROM unnest($2::text[], $3::text[], $4::text[])
                     AS given (source, id, received_at)
                 ON CONFLICT DO NOTHING RETURNING source, id",
            )
            .bind(incident)
            .bind(&sources)
            .bind(&ids)
            .bind(&times)
            .fetch_all(&mut self.connection)
            .await?;
            wrote = wrote || !inserted.is_empty();
            if inserted.len() < rows.deliveries.len() {
                let inserted: HashSet<(String, String)> = inserted.into_iter().collect();
                for (source, id, _) in &rows.deliveries {
                    if inserted.contains(&(source.clone(), id.clone())) {
                        continue;
                    }
                    let taken: Option<String> =
                        sqlx::query_scalar("SELECT incident FROM deliveries WHERE source = $1 AND id = $2")
                            .bind(source)
                            .bind(id)
                            .fetch_optional(&mut self.connection)
                            .await?;
                    let duplicate = Error::Duplicate {
                        origin: source.clone(),
                        id: id.clone(),
                        incident: taken.unwrap_or_default(),
                    };
                    return Err(Refused { why: Some(duplicate), dirty: wrote });
                }
            }
        }
        if !rows.events.is_empty() {
            let mut seqs = Vec::with_capacity(rows.events.len());
            let mut kinds = Vec::with_capacity(rows.events.len());
            let mut times = Vec::with_capacity(rows.events.len());
            let mut jsons = Vec::with_capacity(rows.events.len());
            let mut hashes = Vec::with_capacity(rows.events.len());
            for event in &rows.events {
                prev = chain::link(&prev, event.seq, event.json.as_bytes());
                seqs.push(signed(event.seq));
                kinds.push(event.kind);
                times.push(event.at.as_str());
                jsons.push(event.json.as_str());
                hashes.push(chain::to_hex(&prev));
            }
            // In the order given: the trigger checks each against the row before it.
            let inserted = sqlx::query(
                "INSERT INTO events (incident, seq, type, at, event, hash)
                 SELECT $1, seq, type, at, event, hash
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
                     WITH ORDINALITY AS given (seq, type, at, event, hash, n)
                 ORDER BY n",
            )
            .bind(incident)
            .bind(&seqs)
            .bind(&kinds)
            .bind(&times)
            .bind(&jsons)
            .bind(&hashes)
            .execute(&mut self.connection)
            .await;
            match inserted {
                Err(error) if is_refusal(&error) => {
                    self.heads.remove(incident);
                    self.fresh.remove(incident);
                    return Err(Refused { why: None, dirty: true });
                }
                other => other?,
            };
            wrote = true;
        }
        if !rows.effects.is_empty() {
            let (ids, jsons): (Vec<&str>, Vec<&str>) =
                rows.effects.iter().map(|effect| (effect.id.as_str(), effect.json.as_str())).unzip();
            let inserted: Vec<String> = sqlx::query_scalar(
                "INSERT INTO outbox (id, incident, effect, created_at)
                 SELECT id, $1, effect, $2 FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS given (id, effect, n)
                 ORDER BY n
                 ON CONFLICT (id) DO NOTHING RETURNING id",
            )
            .bind(incident)
            .bind(now)
            .bind(&ids)
            .bind(&jsons)
            .fetch_all(&mut self.connection)
            .await?;
            if inserted.len() < ids.len() {
                let taken = ids.iter().find(|id| !inserted.iter().any(|new| new == *id)).copied().unwrap_or_default();
                // Twice in this append, or queued before: either way not again.
                let refused = invalid(format!("effect `{taken}` is already in the outbox"));
                return Err(Refused { why: Some(refused), dirty: wrote || !inserted.is_empty() });
            }
            wrote = true;
        }
        if let Some(id) = &rows.completes {
            // Already done is fine: the answer to the first completion may have been lost. A
            // claimed effect is completed only with its latest claim's token (claims.rs).
            let completed = sqlx::query(
                "UPDATE outbox SET done_at = coalesce(done_at, $1)
                 WHERE id = $2 AND incident = $3 AND ($4::bigint IS NULL OR token = $4)",
            )
            .bind(now)
            .bind(id)
            .bind(incident)
            .bind(rows.token.map(signed))
            .execute(&mut self.connection)
            .await?;
            if completed.rows_affected() == 0 {
                let refused = match rows.token {
                    Some(_) => claims::lost(&mut self.connection, incident, id).await?,
                    None => invalid(format!("it has no effect `{id}` in the outbox to complete")),
                };
                return Err(Refused { why: Some(refused), dirty: wrote });
            }
        }
        if !rows.events.is_empty() {
            self.fresh.insert(incident.to_string(), (rows.version(), prev));
        }
        Ok(rows.version())
    }

    /// Keeps received deliveries that are new, in one statement, and says which were: a delivery
    /// received before (waiting or applied) is found by the inbox's unique key and left as it
    /// was, and the second of two with one id in the batch finds the first.
    async fn receive(&mut self, receives: &[Receive]) -> Result<Vec<bool>, Failed> {
        let mut in_batch = HashSet::new();
        let candidates: Vec<&Receive> =
            receives.iter().filter(|receive| in_batch.insert((&receive.source, &receive.id))).collect();
        let sources: Vec<&str> = candidates.iter().map(|receive| receive.source.as_str()).collect();
        let ids: Vec<&str> = candidates.iter().map(|receive| receive.id.as_str()).collect();
        let times: Vec<&str> = candidates.iter().map(|receive| receive.received_at.as_str()).collect();
        let headers: Vec<Option<&str>> = candidates.iter().map(|receive| receive.headers.as_deref()).collect();
        let bodies: Vec<&[u8]> = candidates.iter().map(|receive| receive.body.as_slice()).collect();
        let new: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO inbox (source, id, received_at, headers, body)
             SELECT source, id, received_at, headers, body
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[])
                 WITH ORDINALITY AS given (source, id, received_at, headers, body, n)
             ORDER BY n
             ON CONFLICT (source, id) DO NOTHING RETURNING source, id",
        )
        .bind(&sources)
        .bind(&ids)
        .bind(&times)
        .bind(&headers)
        .bind(&bodies)
        .fetch_all(&mut self.connection)
        .await?;
        let mut new: HashSet<(String, String)> = new.into_iter().collect();
        // The first of two with one id is the new one; `remove` leaves the second not new.
        Ok(receives.iter().map(|receive| new.remove(&(receive.source.clone(), receive.id.clone()))).collect())
    }

    /// Marks deliveries applied with what each did, and lets go of their bodies and headers. One
    /// applied already keeps its first outcome.
    async fn mark_applied(&mut self, outcomes: &[(u64, String)], now: &str) -> Result<(), Error> {
        let (seqs, done): (Vec<i64>, Vec<&str>) =
            outcomes.iter().map(|(seq, outcome)| (signed(*seq), outcome.as_str())).unzip();
        sqlx::query(
            "UPDATE inbox SET applied_at = $1, outcome = done.outcome, body = NULL, headers = NULL
             FROM (SELECT DISTINCT ON (seq) seq, outcome FROM unnest($2::bigint[], $3::text[])
                       WITH ORDINALITY AS given (seq, outcome, n) ORDER BY seq, n) AS done
             WHERE inbox.seq = done.seq AND inbox.applied_at IS NULL",
        )
        .bind(now)
        .bind(&seqs)
        .bind(&done)
        .execute(&mut self.connection)
        .await?;
        Ok(())
    }

    /// A campaign write: the rows it moves are read first (locked, so that another process cannot
    /// move them before it writes) and what the campaign's progress does not allow is refused
    /// having written nothing; then it writes.
    async fn campaign(&mut self, rows: &CampaignRows) -> Result<(), Refused> {
        if let Some(refusal) = super::campaign::check(&mut self.connection, rows).await? {
            return Err(Refused::clean(rows.refused(refusal)));
        }
        match super::campaign::write(&mut self.connection, rows).await {
            Ok(()) => Ok(()),
            Err(error) if is_refusal(&error) => {
                // What was checked above passed, so the schema refused something it did not check.
                let problem = format!("the database refused it: {error}");
                Err(Refused::dirty(rows.refused(CampaignRefusal::Invalid(problem))))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The incident as the writer sees it inside its transaction.
impl rows::RefusalLookups for PgConnection {
    async fn version(&mut self, incident: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM incident_heads WHERE id = $1").bind(incident).fetch_optional(self).await
    }

    async fn open_with_key(&mut self, runbook_id: &str, key: Option<&str>) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM incidents WHERE runbook_id = $1 AND key = $2 AND closed_at IS NULL")
            .bind(runbook_id)
            .bind(key)
            .fetch_optional(self)
            .await
    }
}

/// A constraint or one of the schema's triggers refused the statement (SQLSTATE class 23).
pub(super) fn is_refusal(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().is_some_and(|code| code.starts_with("23")))
}

/// Stores a signed checkpoint; the schema's trigger refuses one that is not the incident's next.
async fn store_checkpoint(
    connection: &mut PgConnection,
    incident: &str,
    signed_checkpoint: &SignedCheckpoint,
) -> Result<(), Refused> {
    let checkpoint = &signed_checkpoint.checkpoint;
    let inserted = sqlx::query(
        "INSERT INTO checkpoints (incident, number, events, at, body, signature) VALUES ($1, $2, $3, $4, $5, $6)",
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
        Err(error) if is_refusal(&error) => Err(Refused::dirty(Error::Invalid {
            incident: incident.to_string(),
            problem: format!(
                "checkpoint {} of events 1 to {} is not its next checkpoint",
                checkpoint.number, checkpoint.events
            ),
        })),
        other => other.map(|_| ()).map_err(Refused::from),
    }
}
