//! The writer: the one connection that writes, and what it stores in each transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::super::Error;
use super::super::rows::{self, AppendRows};
use super::{ChainRow, MAX_BATCH, signed, unsigned};
use crate::audit::chain::{self, GENESIS, Hash};
use crate::audit::keys::SignedCheckpoint;
pub(super) use campaign::CampaignJob;
pub(super) use direct::Direct;
use inbox::Added;
pub(super) use inbox::Waiting;

/// Selects an incident's version and head hash (`NULL` before its first event), no row if it
/// does not exist.
macro_rules! stored_head {
    () => {
        concat!("SELECT coalesce(last.seq, 0), last.hash FROM ", with_last_event!(), "WHERE incidents.id = ?")
    };
}

mod campaign;
mod direct;
mod inbox;
mod together;

/// One append on its way to the writer, with where its answer goes.
pub(super) struct Queued {
    pub(super) rows: AppendRows,
    pub(super) answer: oneshot::Sender<Result<u64, Error>>,
}

/// A webhook delivery to keep as received, with where its answer (new or not) goes.
pub(super) struct Receive {
    pub(super) source: String,
    pub(super) id: String,
    pub(super) received_at: String,
    /// JSON, or `None` when there are none to keep.
    pub(super) headers: Option<String>,
    pub(super) body: Vec<u8>,
    pub(super) answer: oneshot::Sender<Result<bool, Error>>,
}

/// What the writer is given: appends, received deliveries and campaign writes, which share
/// commits, and now and then a checkpoint to store or applied deliveries to mark.
pub(super) enum Job {
    Append(Queued),
    Receive(Receive),
    Campaign(CampaignJob),
    Checkpoint {
        incident: String,
        checkpoint: SignedCheckpoint,
        answer: oneshot::Sender<Result<(), Error>>,
    },
    Applied {
        outcomes: Vec<(u64, String)>,
        answer: oneshot::Sender<Result<(), Error>>,
    },
    #[cfg(any(test, feature = "store-contract"))]
    Pause(Hold),
}

/// A test's hold on the writer ([`super::SqliteStore::pause`]): the writer says it has stopped,
/// then takes nothing more until `resume` is sent or dropped, so that the jobs the test sends
/// meanwhile wait in the queue and are taken together.
#[cfg(any(test, feature = "store-contract"))]
pub(super) struct Hold {
    pub(super) paused: oneshot::Sender<()>,
    pub(super) resume: oneshot::Receiver<()>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Append").field("incident", &self.rows.incident).finish_non_exhaustive()
    }
}

/// The longest appends (and marks of applied deliveries) are held back behind received
/// deliveries. While both wait, the deliveries are committed first, by themselves: their senders
/// wait for that commit (a webhook storm's senders are answered at the rate of these commits), and
/// the appends waiting then are mostly the inbox task applying deliveries already answered. An
/// append held this long goes into the next commit with whatever deliveries share it, so a
/// person's approval during a storm is not kept waiting for the storm to end.
const APPENDS_HELD: Duration = Duration::from_millis(20);

/// The writer: takes every append, received delivery and campaign write waiting, stores them in
/// one transaction (received deliveries first, see [`APPENDS_HELD`]), answers each. Campaign
/// writes wait as appends do.
pub(super) async fn write(
    connection: SqliteConnection,
    direct: Direct,
    waiting: Waiting,
    mut queue: mpsc::Receiver<Job>,
    commits: Arc<AtomicU64>,
) {
    let mut writer = Writer { connection, direct: Some(direct), heads: HashMap::new(), waiting, commits };
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut receives = Vec::with_capacity(MAX_BATCH);
    let mut campaigns = Vec::new();
    // Applied deliveries to mark, held like appends: they are the inbox task's too.
    let mut applied = Vec::new();
    let mut held_since: Option<Instant> = None;
    loop {
        if batch.is_empty() && applied.is_empty() && campaigns.is_empty() {
            if queue.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                break;
            }
        } else {
            // Appends are held: take whatever else is waiting, without waiting for more.
            while jobs.len() < MAX_BATCH
                && let Ok(job) = queue.try_recv()
            {
                jobs.push(job);
            }
        }
        for job in jobs.drain(..) {
            match job {
                Job::Append(append) => batch.push(append),
                Job::Receive(receive) => receives.push(receive),
                Job::Campaign(campaign) => campaigns.push(campaign),
                Job::Applied { outcomes, answer } => applied.push((outcomes, answer)),
                // Rare (one per incident every few minutes): a transaction of its own.
                Job::Checkpoint { incident, checkpoint, answer } => {
                    let _ = answer.send(store_checkpoint(&mut writer.connection, &incident, &checkpoint).await);
                }
                #[cfg(any(test, feature = "store-contract"))]
                Job::Pause(Hold { paused, resume }) => {
                    let _ = paused.send(());
                    let _ = resume.await;
                }
            }
        }
        let held = !batch.is_empty() || !applied.is_empty() || !campaigns.is_empty();
        if !receives.is_empty() && held && held_since.get_or_insert_with(Instant::now).elapsed() < APPENDS_HELD {
            writer.commit_and_answer(&mut Vec::new(), &mut receives, &mut Vec::new()).await;
            continue;
        }
        held_since = None;
        // One page of applied deliveries each: a transaction of its own.
        for (outcomes, answer) in applied.drain(..) {
            let _ = answer.send(writer.mark_applied(&outcomes).await);
        }
        if batch.is_empty() && receives.is_empty() && campaigns.is_empty() {
            continue;
        }
        writer.commit_and_answer(&mut batch, &mut receives, &mut campaigns).await;
    }
    // Everything given is answered: copy the WAL back into the file and empty it, so that a
    // stopped store leaves one file to back up. Readers still closing may keep SQLite from doing
    // this itself when the last connection closes; if the copy fails, the next open finds the WAL.
    drop(writer.direct.take());
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut writer.connection).await;
    let _ = writer.connection.close().await;
}

/// What a batch's appends, received deliveries and campaign writes are answered.
#[derive(Default)]
struct Answers {
    appends: Vec<Result<u64, Error>>,
    receives: Vec<Result<bool, Error>>,
    campaigns: Vec<Result<(), Error>>,
}

/// Why a batch stored nothing.
enum Failed {
    /// The database failed; SQLite may have ended the transaction with it.
    Database(Error),
    /// An append without a savepoint was refused after it had written rows.
    Halfway,
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

/// Why one append was not stored, and whether it had written rows before it was refused.
struct Refused {
    error: Error,
    halfway: bool,
}

impl From<sqlx::Error> for Refused {
    fn from(error: sqlx::Error) -> Refused {
        Refused { error: error.into(), halfway: false }
    }
}

impl From<Error> for Refused {
    fn from(error: Error) -> Refused {
        Refused { error, halfway: false }
    }
}

/// The incidents' versions and head hashes as this writer last stored them, so that an append
/// need not read them first. Only this writer's own commits enter it; an entry another process
/// has moved past is caught by the events' order check (the version differs), which refuses the
/// append as a conflict and drops the entry.
type Heads = HashMap<String, (u64, Hash)>;

/// Heads kept before the cache starts over.
const MOST_HEADS: usize = 10_000;

struct Writer {
    connection: SqliteConnection,
    /// The connection for an incident's events alone in their commit (`direct.rs`); `None` only
    /// once the writer is closing.
    direct: Option<Direct>,
    heads: Heads,
    waiting: Waiting,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Stores a batch and answers each of its appends, deliveries and campaign writes; drains
    /// them.
    async fn commit_and_answer(
        &mut self,
        batch: &mut Vec<Queued>,
        receives: &mut Vec<Receive>,
        campaigns: &mut Vec<CampaignJob>,
    ) {
        let mut committed = self.commit(batch, receives, campaigns, false).await;
        if matches!(committed, Err(Failed::Halfway)) {
            // An append was refused where that cannot happen unless the database was changed
            // under phasegate: the batch again, with every append able to be undone alone.
            self.rollback().await;
            committed = self.commit(batch, receives, campaigns, true).await;
        }
        let answers = match committed {
            Ok(answers) => answers,
            Err(failed) => {
                // Nothing of the batch is stored.
                self.rollback().await;
                let error = match failed {
                    Failed::Database(error) => error,
                    Failed::Halfway => Error::Corrupt("an append was refused after writing part of it".into()),
                };
                Answers {
                    appends: batch.iter().map(|_| Err(error.clone())).collect(),
                    receives: receives.iter().map(|_| Err(error.clone())).collect(),
                    campaigns: campaigns.iter().map(|_| Err(error.clone())).collect(),
                }
            }
        };
        // A caller that stopped waiting learns the outcome by reading again.
        for (append, answer) in batch.drain(..).zip(answers.appends) {
            let _ = append.answer.send(answer);
        }
        for (receive, answer) in receives.drain(..).zip(answers.receives) {
            let _ = receive.answer.send(answer);
        }
        for (campaign, answer) in campaigns.drain(..).zip(answers.campaigns) {
            let _ = campaign.answer.send(answer);
        }
    }

    /// Ends a failed transaction and forgets the heads it may have cached. If the rollback fails
    /// too, SQLite has already rolled the transaction back, or the connection is gone and the
    /// next batch will say so.
    async fn rollback(&mut self) {
        let _ = sqlx::query("ROLLBACK").execute(&mut self.connection).await;
        self.heads.clear();
    }

    /// Stores a batch in one transaction and counts the commit. An append or a campaign write
    /// that is refused (a conflict, a rule of the log or of a campaign's progress) is undone and
    /// answered with why, and the others are stored; a database failure fails the batch. With
    /// `careful`, every append of several writes gets a savepoint, not only those that may be
    /// refused halfway.
    async fn commit(
        &mut self,
        batch: &[Queued],
        receives: &[Receive],
        campaigns: &[CampaignJob],
        careful: bool,
    ) -> Result<Answers, Failed> {
        let now = rows::timestamp(Utc::now());
        // One statement alone runs as a transaction of its own (the triggers' checks included)
        // and commits, as durably as any, when it ends: the most common batches thus cost one
        // round trip to SQLite's thread rather than three.
        if batch.is_empty() && campaigns.is_empty() {
            let (received, added) = self.receive(receives, false).await?;
            self.waiting.keep(added);
            self.commits.fetch_add(1, Ordering::Relaxed);
            return Ok(Answers { receives: received, ..Answers::default() });
        }
        if let [append] = batch
            && receives.is_empty()
            && campaigns.is_empty()
            && append.rows.statements() == 1
        {
            if let Some(version) = self.store_directly(&append.rows) {
                self.commits.fetch_add(1, Ordering::Relaxed);
                return Ok(Answers { appends: vec![Ok(version)], ..Answers::default() });
            }
            let answer = self.store(&append.rows, &now).await;
            if answer.is_ok() {
                self.commits.fetch_add(1, Ordering::Relaxed);
            }
            return match answer {
                Err(Refused { error: error @ Error::Database(_), .. }) => Err(Failed::Database(error)),
                answer => Ok(Answers { appends: vec![answer.map_err(|refused| refused.error)], ..Answers::default() }),
            };
        }
        // Appends of events alone, several incidents' at once: on the direct connection, in one
        // transaction.
        if !careful
            && receives.is_empty()
            && campaigns.is_empty()
            && let Some(versions) = self.store_batch_directly(batch)
        {
            self.commits.fetch_add(1, Ordering::Relaxed);
            return Ok(Answers { appends: versions.into_iter().map(Ok).collect(), ..Answers::default() });
        }
        // Several statements: the batch together first, a statement per table; append by
        // append, with savepoints, only if something in it was refused.
        if !careful
            && receives.is_empty()
            && let Some((versions, campaigned)) = self.commit_together(batch, campaigns, &now).await?
        {
            self.commits.fetch_add(1, Ordering::Relaxed);
            return Ok(Answers {
                appends: versions.into_iter().map(Ok).collect(),
                campaigns: campaigned,
                ..Answers::default()
            });
        }
        // IMMEDIATE takes the write lock now, so that another process writing the same file makes
        // this wait (up to the busy timeout) instead of failing halfway through.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut self.connection).await?;
        let (received, added) =
            if receives.is_empty() { (Vec::new(), Added::default()) } else { self.receive(receives, true).await? };
        let alone = batch.len() == 1 && receives.is_empty() && campaigns.is_empty();
        let mut answers = Vec::with_capacity(batch.len());
        for append in batch {
            // An append alone in its transaction needs no savepoint (the rollback undoes it), nor
            // does one whose only refusable write comes first. Savepoints are never released:
            // `ROLLBACK TO` goes back to the latest, taken just before the append that was
            // refused, and COMMIT keeps the rest.
            let rows = &append.rows;
            let savepoint = !alone && if careful { rows.writes() > 1 } else { rows.may_fail_halfway() };
            if savepoint {
                sqlx::query("SAVEPOINT append").execute(&mut self.connection).await?;
            }
            match self.store(rows, &now).await {
                Ok(version) => answers.push(Ok(version)),
                Err(Refused { error: error @ Error::Database(_), .. }) => return Err(Failed::Database(error)),
                Err(Refused { error, halfway }) => {
                    if savepoint {
                        sqlx::query("ROLLBACK TO append").execute(&mut self.connection).await?;
                    } else if halfway && !alone {
                        return Err(Failed::Halfway);
                    }
                    answers.push(Err(error));
                }
            }
        }
        if alone && answers[0].is_err() {
            sqlx::query("ROLLBACK").execute(&mut self.connection).await?;
            return Ok(Answers { appends: answers, receives: received, ..Answers::default() });
        }
        let campaigned = self.write_campaigns(campaigns).await?;
        sqlx::query("COMMIT").execute(&mut self.connection).await?;
        self.waiting.keep(added);
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(Answers { appends: answers, receives: received, campaigns: campaigned })
    }

    /// One append inside the batch's transaction: the incident's row for a new incident (or the
    /// check of its version), the delivery it records, its events in one statement, the new
    /// effects and the completed one. The events' insert is the compare-and-set of the incident's
    /// version (the schema's triggers refuse an event out of order and move the summary), so the
    /// usual append is one or two statements and the usual refusal writes nothing.
    async fn store(&mut self, rows: &AppendRows, now: &str) -> Result<u64, Refused> {
        let connection = &mut self.connection;
        let incident = rows.incident.as_str();
        let mut wrote = false;
        let refused = |error: Error, wrote: bool| Refused { error, halfway: wrote };
        if let Some(start) = &rows.start {
            // The primary key refuses a second start of the incident, the partial unique index a
            // second open incident with the same key. The events set the version and the times.
            let inserted = sqlx::query("INSERT INTO incidents (id, runbook_id, key, started_at) VALUES (?, ?, ?, ?)")
                .bind(incident)
                .bind(&start.runbook_id)
                .bind(&start.key)
                .bind(&start.started_at)
                .execute(&mut *connection)
                .await;
            match inserted {
                Err(error) if is_constraint_violation(&error) => {
                    return Err(rows::refusal(&mut *connection, rows).await.into());
                }
                other => other?,
            };
            wrote = true;
        }
        // What the first new event chains to. The event at the expected version never changes, so
        // the head known here is the one the events follow, or their insert is refused as out of
        // order.
        let mut prev = GENESIS;
        if rows.start.is_none() {
            match self.heads.get(incident) {
                Some((version, head)) if *version == rows.expected => prev = *head,
                _ => {
                    self.heads.remove(incident);
                    let stored: Option<(i64, Option<String>)> =
                        sqlx::query_as(stored_head!()).bind(incident).fetch_optional(&mut *connection).await?;
                    match stored {
                        Some((version, head)) if version == signed(rows.expected) => {
                            if let Some(head) = head {
                                prev = chain::from_hex(&head).ok_or_else(|| {
                                    Error::Corrupt(format!("incident `{incident}` has head `{head}`, not a hash"))
                                })?;
                            } else if !rows.events.is_empty() {
                                let problem = format!("incident `{incident}` has events but no head hash");
                                return Err(Error::Corrupt(problem).into());
                            }
                        }
                        _ => return Err(rows::refusal(&mut *connection, rows).await.into()),
                    }
                }
            }
        }
        if !rows.deliveries.is_empty() {
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO deliveries (source, id, incident, received_at) ");
            insert.push_values(&rows.deliveries, |mut row, (source, id, received_at)| {
                row.push_bind(source).push_bind(id).push_bind(incident).push_bind(received_at);
            });
            match insert.build().execute(&mut *connection).await {
                Err(error) if is_constraint_violation(&error) => {
                    // The statement stored none of them; say which was taken before.
                    for (source, id, _) in &rows.deliveries {
                        let taken: Option<String> =
                            sqlx::query_scalar("SELECT incident FROM deliveries WHERE source = ? AND id = ?")
                                .bind(source)
                                .bind(id)
                                .fetch_optional(&mut *connection)
                                .await?;
                        if let Some(taken) = taken {
                            let duplicate =
                                Error::Duplicate { origin: source.clone(), id: id.clone(), incident: taken };
                            return Err(refused(duplicate, wrote));
                        }
                    }
                    // Twice in this append: the caller's mistake, refused as the rule it breaks.
                    let problem = "it records one delivery twice".to_string();
                    return Err(refused(Error::Invalid { incident: incident.to_string(), problem }, wrote));
                }
                other => other?,
            };
            wrote = true;
        }
        if !rows.events.is_empty() {
            let hashes: Vec<String> = rows
                .events
                .iter()
                .map(|event| {
                    prev = chain::link(&prev, event.seq, event.json.as_bytes());
                    chain::to_hex(&prev)
                })
                .collect();
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO events (incident, seq, type, at, event, hash) ");
            insert.push_values(rows.events.iter().zip(&hashes), |mut row, (event, hash)| {
                row.push_bind(incident)
                    .push_bind(signed(event.seq))
                    .push_bind(event.kind)
                    .push_bind(&event.at)
                    .push_bind(&event.json)
                    .push_bind(hash);
            });
            match insert.build().execute(&mut *connection).await {
                Err(error) if is_constraint_violation(&error) => {
                    self.heads.remove(incident);
                    return Err(refused(rows::refusal(&mut *connection, rows).await, wrote));
                }
                other => other?,
            };
            wrote = true;
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
                    return Err(refused(Error::Invalid { incident: incident.to_string(), problem }, wrote));
                }
                other => other?,
            };
            wrote = true;
        }
        if let Some(id) = &rows.completes {
            // Already done is fine: the answer to the first completion may have been lost.
            let completed =
                sqlx::query("UPDATE outbox SET done_at = coalesce(done_at, ?) WHERE id = ? AND incident = ?")
                    .bind(now)
                    .bind(id)
                    .bind(incident)
                    .execute(&mut *connection)
                    .await?;
            if completed.rows_affected() == 0 {
                let problem = format!("it has no effect `{id}` in the outbox to complete");
                return Err(refused(Error::Invalid { incident: incident.to_string(), problem }, wrote));
            }
        }
        if !rows.events.is_empty() {
            self.remember_head(incident, (rows.version(), prev));
        }
        Ok(rows.version())
    }

    /// Stores an append of events alone, following the head this writer keeps for its incident,
    /// on the direct connection (`direct.rs`): its version once committed, `None` when it is not
    /// such an append or was not stored (the usual path then stores it, or says why not).
    fn store_directly(&mut self, rows: &AppendRows) -> Option<u64> {
        let direct = self.direct.as_mut()?;
        if rows.events.is_empty() || rows.statements() != 1 {
            return None;
        }
        let incident = rows.incident.as_str();
        let mut head = match self.heads.get(incident) {
            Some((version, head)) if *version == rows.expected => *head,
            _ => return None,
        };
        let hashes: Vec<String> = rows
            .events
            .iter()
            .map(|event| {
                head = chain::link(&head, event.seq, event.json.as_bytes());
                chain::to_hex(&head)
            })
            .collect();
        let values: Vec<_> = rows
            .events
            .iter()
            .zip(&hashes)
            .map(|(event, hash)| (signed(event.seq), event.kind, event.at.as_str(), event.json.as_str(), hash.as_str()))
            .collect();
        direct.insert_events(incident, &values).ok()?;
        self.remember_head(incident, (rows.version(), head));
        Some(rows.version())
    }

    /// Keeps an incident's version and head as this writer stored them.
    fn remember_head(&mut self, incident: &str, head: (u64, Hash)) {
        if let Some(known) = self.heads.get_mut(incident) {
            *known = head;
            return;
        }
        if self.heads.len() >= MOST_HEADS {
            self.heads.clear();
        }
        self.heads.insert(incident.to_string(), head);
    }
}

/// The incident's row as the writer sees it inside its transaction.
impl rows::RefusalLookups for SqliteConnection {
    async fn version(&mut self, incident: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(concat!("SELECT coalesce(last.seq, 0) FROM ", with_last_event!(), "WHERE incidents.id = ?"))
            .bind(incident)
            .fetch_optional(self)
            .await
    }

    async fn open_with_key(&mut self, runbook_id: &str, key: Option<&str>) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM incidents WHERE runbook_id = ? AND key = ? AND closed_at IS NULL")
            .bind(runbook_id)
            .bind(key)
            .fetch_optional(self)
            .await
    }
}

/// A constraint refused the statement (a unique key, or the triggers' order of events): the
/// statement changed nothing and the transaction goes on.
pub(super) fn is_constraint_violation(error: &sqlx::Error) -> bool {
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
/// JSON and its hash, and its incident its head, one incident per transaction. Migration 0006
/// lets an event be updated only so: from no hash to its hash. Returns what it chained.
pub(super) async fn chain_unhashed(connection: &mut SqliteConnection) -> Result<super::Chained, Error> {
    let incidents: Vec<String> = sqlx::query_scalar("SELECT DISTINCT incident FROM events WHERE hash IS NULL")
        .fetch_all(&mut *connection)
        .await?;
    let mut chained = super::Chained { events: 0, incidents: incidents.len() as u64 };
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
            chained.events += 1;
        }
        // The incident's head is its latest event's hash, now stored with it.
        transaction.commit().await?;
    }
    Ok(chained)
}
