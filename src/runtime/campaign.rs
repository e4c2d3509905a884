//! Campaigns: sending a campaign step's messages, a slice at a time, with its progress in the
//! store so that a crash at any instant loses nobody and repeats only the batches in flight.
//!
//! A campaign effect stays in the outbox while its campaign runs; each pass of the runtime gives it
//! a slice: the first reads the list and stores its batches (`campaign::plan::prepare`, then
//! `Store::campaign_plan`) and records `campaign_started`; the next ones each run the step's
//! `concurrency` lanes for about [`SLICE_TIME`], each lane taking the next unanswered batch once
//! its last is answered, so that no more than `concurrency` batches are ever in flight and one
//! batch's rendering overlaps another's request and commits. A batch is marked in flight in the
//! store before it is sent (`Store::campaign_sending`) and answered after
//! (`Store::campaign_answered`, with each recipient's Merkle leaf), so the resume point never moves
//! before the channel has answered. A batch found in flight goes again with the same idempotency
//! key; every batch marked in flight more than once is a possible repeat, listed at the end. Once
//! every batch is answered (or a person cancelled and the batches in flight are answered), the
//! leaves give the Merkle root, recorded in `campaign_finished` with the totals.
//!
//! A slice runs under the campaign effect's claim (`claims.rs`): marking a batch in flight,
//! recording its answer and the progress reports are stored under its fence, so a process that
//! paused past its lease, once another took the campaign over, marks none of the batches it had
//! read and so sends none of them (a batch is sent only once its mark is stored). What it sent
//! before it paused and could not record goes again from the other, with the same idempotency
//! key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Error, Executor, Loaded, Runtime};
use crate::actions::campaign::{Answer, BatchJob};
use crate::audit::merkle;
use crate::campaign::plan;
use crate::campaign::{AttemptFailure, ListSpec};
use crate::engine::command::CampaignReport;
use crate::engine::effect::CampaignTotals;
use crate::engine::state::CampaignState;
use crate::engine::{self, Command, EffectKind, Outcome};
use crate::runbook::Templates;
use crate::runbook::model::{Action, Step};
use crate::store::{BatchResult, BatchState, CampaignBatch, Fence, PendingEffect, Store};

pub use crate::engine::command::CAMPAIGN_ATTEMPTS as ATTEMPTS;
pub use trouble::Trouble;

mod trouble;

/// The most common reasons for failures that `campaign_finished` records.
const REASONS_KEPT: u32 = 20;

/// A progress event every this many percent of the batches.
const PROGRESS_EVERY_PERCENT: u32 = 5;

/// How long a slice goes on taking new batches: long enough that a campaign is not mostly
/// reading its batches' states between slices, short enough that a pause, a cancel or another
/// incident's effects wait no more than about this long.
const SLICE_TIME: Duration = Duration::from_millis(500);

/// The folder campaigns keep their rejects files in when nothing names one: beside the
/// configuration file (`config::Config::load`), beside a drill's database (`cli::drill`), and in
/// the working directory only for a runtime built without settings ([`Settings::default`]).
pub const DEFAULT_DIR: &str = "campaigns";

/// Where campaigns keep their files, from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rejects files go under `DIR/INCIDENT/PHASE/STEP/`.
    pub dir: PathBuf,
    /// Recipients never to write to (ids or addresses, one a line).
    pub suppression: Option<PathBuf>,
    /// Where a relative recipient-list path starts: the working directory when `None`; a drill's
    /// own directory, as its runbook path does, so a drill runs from anywhere. The incident records
    /// the path as given.
    pub lists_from: Option<PathBuf>,
    /// Where a test send may go: addresses, and domains written `@DOMAIN` (`campaign_test`).
    pub test_recipients: Vec<String>,
    /// The wait after a batch's first failed attempt; it doubles with each attempt after, up to
    /// 128 times it (half a second: 1, 2, 4 ... 64 s, so eight attempts span about two minutes).
    pub retry_unit: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            dir: PathBuf::from(DEFAULT_DIR),
            suppression: None,
            lists_from: None,
            test_recipients: Vec::new(),
            retry_unit: Duration::from_millis(500),
        }
    }
}

impl Settings {
    /// The file a campaign's recipient list names.
    pub fn list_path(&self, list: &str) -> PathBuf {
        match &self.lists_from {
            Some(base) => base.join(list),
            None => PathBuf::from(list),
        }
    }
}

/// What this process remembers of a running campaign between slices (nothing that a crash
/// could not lose: the store holds the progress).
#[derive(Default)]
pub(super) struct Memory {
    campaigns: Mutex<HashMap<String, Pace>>,
}

#[derive(Default, Clone)]
struct Pace {
    /// When the next messages may go, at the campaign's rate.
    next: Option<Instant>,
    /// When a batch that failed may be tried again.
    retry_at: Option<Instant>,
    /// The share of batches the last progress event reported, in steps of
    /// [`PROGRESS_EVERY_PERCENT`].
    reported: u32,
}

/// What the lanes of a slice share.
struct Lanes<'b> {
    /// The unanswered batches, in number order; each lane takes the next.
    queue: Mutex<std::vec::IntoIter<&'b CampaignBatch>>,
    /// When the next messages may go, at the campaign's rate.
    next: Mutex<Option<Instant>>,
    /// Set when no lane is to take another batch.
    stop: std::sync::atomic::AtomicBool,
    /// How long to wait after a batch that failed (it goes again after that).
    failed_attempt: Mutex<Option<Duration>>,
    /// The slice's answered batches, without their leaves.
    results: Mutex<Vec<BatchResult>>,
    /// Why the campaign cannot go on (its list changed on disk).
    ended: Mutex<Option<String>>,
    /// No batch is taken after this.
    until: Instant,
}

/// What a slice did.
pub(super) enum Slice {
    /// The campaign ended: record this outcome.
    Ended(Outcome),
    /// Batches were sent (or the list was read).
    Moved,
    /// Nothing to do now: paused, or waiting to retry.
    Waiting,
}

impl<S: Store, T: Templates + Send + Sync> Runtime<S, T> {
    /// One slice of a campaign effect's work.
    pub(super) async fn campaign_slice(
        &self,
        pending: &PendingEffect,
        loaded: &Loaded,
        executor: &impl Executor,
        under: Option<&Fence>,
    ) -> Result<Slice, Error> {
        let EffectKind::Campaign { phase, step, campaign, list, .. } = &pending.effect.kind else {
            return Ok(Slice::Waiting);
        };
        let Some(step_model) = loaded.runbook.phase(phase).and_then(|p| p.step(step)) else {
            return Ok(Slice::Ended(Outcome::Failed { error: format!("step `{phase}/{step}` is not in the runbook") }));
        };
        let state = loaded.incident.step(phase, step).campaign.unwrap_or_default();
        let batches = self.store.campaign_batches(campaign).await?;
        if batches.is_empty() || state.batches == 0 {
            return self.prepare(pending, step_model, list, batches.is_empty(), under).await;
        }
        let unanswered: Vec<&CampaignBatch> =
            batches.iter().filter(|b| !matches!(b.state, BatchState::Answered { .. })).collect();
        if unanswered.is_empty() || state.cancelled.is_some() {
            return self.finish(campaign, &batches, &state).await.map(Slice::Ended);
        }
        if state.paused.is_some() {
            return Ok(Slice::Waiting);
        }
        let Action::Campaign { concurrency, rate_per_second, .. } = &step_model.action else {
            return Ok(Slice::Waiting);
        };
        let mut pace = self.pace(campaign);
        let now = Instant::now();
        if pace.retry_at.is_some_and(|at| at > now) {
            return Ok(Slice::Waiting);
        }
        // `concurrency` lanes, each taking the next unanswered batch once its last is answered,
        // so that one batch's rendering overlaps another's request and commits; no new batch is
        // taken after SLICE_TIME or once a batch fails, and never more than `concurrency` are in
        // flight.
        let shared = Lanes {
            queue: Mutex::new(unanswered.into_iter()),
            next: Mutex::new(pace.next),
            stop: std::sync::atomic::AtomicBool::new(false),
            failed_attempt: Mutex::new(None),
            results: Mutex::new(Vec::new()),
            ended: Mutex::new(None),
            until: now + SLICE_TIME,
        };
        let spec = list_spec(step_model);
        let lane = || async {
            loop {
                if shared.stop.load(Ordering::Relaxed) || Instant::now() >= shared.until {
                    return Ok::<(), Error>(());
                }
                // Something new in the incident's log (a pause, a cancel) is for the next slice to
                // read: no new batch starts before it has.
                if !self.events_after(&pending.incident, loaded.incident.version).await?.is_empty() {
                    shared.stop.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                let Some(batch) = shared.queue.lock().expect("never poisoned").next() else { return Ok(()) };
                // The campaign's rate: this batch's messages wait until the previous ones' time is up.
                if let Some(rate) = rate_per_second {
                    let start = {
                        let mut next = shared.next.lock().expect("never poisoned");
                        let start = next.map_or(Instant::now(), |next| next.max(Instant::now()));
                        *next =
                            Some(start + Duration::from_secs_f64(f64::from(batch.plan.recipients) / f64::from(*rate)));
                        start
                    };
                    tokio::time::sleep_until(start.into()).await;
                }
                let number = batch.plan.number;
                // Refused, and so never sent, once another process took the campaign over.
                if let Err(error) = self.store.campaign_sending_under(campaign, &[number], self.now(), under).await {
                    shared.stop.store(true, Ordering::Relaxed);
                    return Err(error.into());
                }
                let attempts = match batch.state {
                    BatchState::Sending { attempts, .. } => attempts + 1,
                    _ => 1,
                };
                let (spec, list, plan) = (spec.clone(), self.campaign_settings.list_path(list), batch.plan.clone());
                let recipients = tokio::task::spawn_blocking(move || plan::read_batch(&list, &spec, &plan))
                    .await
                    .map_err(|error| error.to_string())
                    .and_then(|read| read.map_err(|error| error.to_string()));
                let recipients = match recipients {
                    Ok(recipients) => recipients,
                    // The list could not be read back as planned (changed on disk): nothing was sent.
                    Err(error) => {
                        shared.stop.store(true, Ordering::Relaxed);
                        *shared.ended.lock().expect("never poisoned") =
                            Some(format!("campaign `{campaign}`, batch {number}: {error}"));
                        return Ok(());
                    }
                };
                let job = BatchJob {
                    runbook: &loaded.runbook,
                    incident: &loaded.incident,
                    events: &loaded.events,
                    now: self.now(),
                    phase,
                    step,
                    campaign,
                    number,
                    recipients: recipients.into(),
                };
                let sent = executor.send_campaign_batch(job).await;
                let at = self.now();
                let result = match sent.answer {
                    Answer::Accepted { rejected } => {
                        let failed = rejected;
                        let count = sent.leaves.len() as u32 - failed.len() as u32;
                        BatchResult { number, at, sent: count, failed, leaves: merkle::encode_leaves(&sent.leaves) }
                    }
                    Answer::Failed { error, class } => {
                        // The attempt's error goes on the batch, so that a person sees why the
                        // campaign is stuck (`campaign status`, the incident's page) while it retries.
                        let halt = attempts.is_multiple_of(ATTEMPTS);
                        let wait = retry_wait(self.campaign_settings.retry_unit, attempts);
                        let retry_at =
                            (!halt).then(|| at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX));
                        let failure = AttemptFailure { attempt: attempts, at, class, error: error.clone(), retry_at };
                        self.store.campaign_attempt_failed_under(campaign, number, &failure, under).await?;
                        shared.stop.store(true, Ordering::Relaxed);
                        if halt {
                            tracing::warn!(%campaign, batch = number, attempts, %error, "batch failed again; the campaign pauses");
                            let reason = format!(
                                "batch {number} was not accepted in {ATTEMPTS} attempts in a row; its last error: \
                                 {error}; no recipient was given up: resume once the channel takes messages again"
                            );
                            self.report(pending, CampaignReport::Halted { reason }, under).await?;
                        } else {
                            tracing::warn!(%campaign, batch = number, attempts, %error, "batch failed; it will be sent again");
                            *shared.failed_attempt.lock().expect("never poisoned") = Some(wait);
                        }
                        return Ok(());
                    }
                };
                self.store.campaign_answered_under(campaign, std::slice::from_ref(&result), under).await?;
                // What the totals need; the leaves are in the store.
                let BatchResult { number, at, sent, failed, .. } = result;
                shared.results.lock().expect("never poisoned").push(BatchResult {
                    number,
                    at,
                    sent,
                    failed,
                    leaves: Vec::new(),
                });
            }
        };
        let lanes = futures_util::future::join_all((0..(*concurrency).max(1)).map(|_| lane())).await;
        for outcome in lanes {
            outcome?;
        }
        if let Some(error) = shared.ended.into_inner().expect("never poisoned") {
            return Ok(Slice::Ended(Outcome::Failed { error }));
        }
        let results = shared.results.into_inner().expect("never poisoned");
        pace.next = shared.next.into_inner().expect("never poisoned");
        // The totals as the store now holds them: what was answered before this slice, and this
        // slice's answers (its batches were all unanswered), without reading every batch again.
        let mut counted = totals(&batches);
        for result in &results {
            counted.sent += u64::from(result.sent);
            counted.failed += result.failed.len() as u64;
            counted.done += 1;
        }
        if let Some(wait) = shared.failed_attempt.into_inner().expect("never poisoned") {
            pace.retry_at = Some(Instant::now() + wait);
        } else {
            pace.retry_at = None;
        }
        self.report_progress(pending, &counted, batches.len() as u32, &mut pace, under).await?;
        self.campaigns.campaigns.lock().expect("never poisoned").insert(campaign.clone(), pace);
        Ok(Slice::Moved)
    }

    fn pace(&self, campaign: &str) -> Pace {
        self.campaigns.campaigns.lock().expect("never poisoned").get(campaign).cloned().unwrap_or_default()
    }

    /// Reads the list, stores its batches (once) and records `campaign_started`.
    async fn prepare(
        &self,
        pending: &PendingEffect,
        step: &Step,
        list: &str,
        store_plan: bool,
        under: Option<&Fence>,
    ) -> Result<Slice, Error> {
        let EffectKind::Campaign { campaign, .. } = &pending.effect.kind else {
            return Ok(Slice::Waiting);
        };
        let spec = list_spec(step);
        let rejects = self.campaign_settings.dir.join(campaign).join("rejects.csv");
        let suppression = self.campaign_settings.suppression.clone();
        let path = self.campaign_settings.list_path(list);
        let prepared = tokio::task::spawn_blocking(move || {
            if let Some(parent) = rejects.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
            }
            plan::prepare(&path, &spec, suppression.as_deref(), &rejects).map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| error.to_string())
        .and_then(|prepared| prepared);
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return Ok(Slice::Ended(Outcome::Failed { error })),
        };
        if store_plan {
            self.store.campaign_plan(campaign, &prepared.batches).await?;
        }
        let counts = &prepared.counts;
        let report = CampaignReport::Started {
            list: list.to_string(),
            list_sha256: prepared.sha256.clone(),
            recipients: counts.accepted,
            rejected: counts.rejected,
            duplicates: counts.duplicates,
            suppressed: counts.suppressed,
            batches: prepared.batches.len() as u32,
        };
        self.report(pending, report, under).await?;
        // An empty list ends at the next slice, with nothing to send.
        Ok(Slice::Moved)
    }

    /// Records `campaign_progress` when the answered batches have crossed another few percent.
    async fn report_progress(
        &self,
        pending: &PendingEffect,
        totals: &Totals,
        total: u32,
        pace: &mut Pace,
        under: Option<&Fence>,
    ) -> Result<(), Error> {
        let percent = (totals.done * 100).checked_div(total).unwrap_or(100);
        let step_reached = percent / PROGRESS_EVERY_PERCENT;
        if step_reached <= pace.reported || totals.done == total {
            return Ok(());
        }
        pace.reported = step_reached;
        let report = CampaignReport::Progress {
            sent: totals.sent,
            failed: totals.failed,
            batches_done: totals.done,
            batches: total,
        };
        self.report(pending, report, under).await
    }

    /// Records a milestone of the campaign effect `pending`, as phasegate's sender (the only one
    /// the engine takes milestones from).
    async fn report(
        &self,
        pending: &PendingEffect,
        report: CampaignReport,
        under: Option<&Fence>,
    ) -> Result<(), Error> {
        let EffectKind::Campaign { phase, step, .. } = &pending.effect.kind else { return Ok(()) };
        let command = Command::CampaignReport { phase: phase.clone(), step: step.clone(), report };
        self.submit_delivered_under(&pending.incident, engine::event::SYSTEM, command, None, under).await?;
        Ok(())
    }

    /// Every batch answered (or the campaign cancelled): the totals and the Merkle root.
    async fn finish(&self, campaign: &str, batches: &[CampaignBatch], state: &CampaignState) -> Result<Outcome, Error> {
        let counted = totals(batches);
        let blobs = self.store.campaign_leaves(campaign).await?;
        let key = campaign.to_string();
        let tree = tokio::task::spawn_blocking(move || leaf_tree(&key, &blobs))
            .await
            .map_err(|error| Error::Campaign(format!("campaign `{campaign}`: hashing its leaves stopped: {error}")))?
            .map_err(Error::Campaign)?;
        let recipients: u64 = batches.iter().map(|b| u64::from(b.plan.recipients)).sum();
        let failed_by_reason = self.store.campaign_failure_reasons(campaign, REASONS_KEPT).await?.into_iter().collect();
        Ok(Outcome::Campaign(CampaignTotals {
            recipients,
            sent: counted.sent,
            failed: counted.failed,
            rejected: state.rejected,
            duplicates: state.duplicates,
            suppressed: state.suppressed,
            batches: batches.len() as u32,
            possible_repeats: counted.repeats,
            merkle_root: hex::encode(tree.root()),
            leaves: tree.len(),
            cancelled: state.cancelled.is_some(),
            failed_by_reason,
        }))
    }
}

/// How many batches' leaves each thread hashes before their hashes join the tree: the hashes of a
/// whole campaign would take 32 bytes a recipient at once.
const BATCHES_PER_THREAD: usize = 16;

/// The Merkle tree of a campaign's stored leaves (each batch's blob, in batch order), decoded and
/// hashed on every core, a few batches a thread at a time, and joined in order.
fn leaf_tree(campaign: &str, blobs: &[(u32, Vec<u8>)]) -> Result<merkle::Builder, String> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut tree = merkle::Builder::new();
    for group in blobs.chunks(threads * BATCHES_PER_THREAD) {
        let part = group.len().div_ceil(threads).max(1);
        let hashed: Vec<Result<Vec<crate::audit::chain::Hash>, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                group.chunks(part).map(|chunk| scope.spawn(move || leaf_hashes(campaign, chunk))).collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });
        for hashes in hashed {
            hashes?.into_iter().for_each(|hash| tree.push(hash));
        }
    }
    Ok(tree)
}

/// The leaf hashes of some batches' stored leaves, in order.
fn leaf_hashes(campaign: &str, blobs: &[(u32, Vec<u8>)]) -> Result<Vec<crate::audit::chain::Hash>, String> {
    let mut hashes = Vec::new();
    let mut buffer = Vec::new();
    for (number, blob) in blobs {
        let leaves = merkle::decode_leaves(blob).map_err(|error| {
            format!("campaign `{campaign}`, batch {number}: its stored leaves do not read: {error}")
        })?;
        hashes.extend(leaves.iter().map(|leaf| leaf.hash_with(&mut buffer)));
    }
    Ok(hashes)
}

struct Totals {
    sent: u64,
    failed: u64,
    done: u32,
    repeats: Vec<u32>,
}

fn totals(batches: &[CampaignBatch]) -> Totals {
    let mut totals = Totals { sent: 0, failed: 0, done: 0, repeats: Vec::new() };
    for batch in batches {
        match batch.state {
            BatchState::Answered { attempts, sent, failed, .. } => {
                totals.sent += u64::from(sent);
                totals.failed += u64::from(failed);
                totals.done += 1;
                if attempts > 1 {
                    totals.repeats.push(batch.plan.number);
                }
            }
            BatchState::Sending { attempts, .. } if attempts > 0 => totals.repeats.push(batch.plan.number),
            _ => {}
        }
    }
    totals
}

/// How long a batch waits after its failed attempt `attempts` (the first is 1) before it goes
/// again: a second after the first, doubling to about a minute.
fn retry_wait(unit: Duration, attempts: u32) -> Duration {
    unit.saturating_mul(1 << attempts.min(7))
}

/// How a campaign step reads its list (its id and address fields, its batch size); a step that
/// is not a campaign reads nothing.
pub fn list_spec(step: &Step) -> ListSpec {
    match &step.action {
        Action::Campaign { id_field, address_field, batch_size, .. } => {
            ListSpec { id_field: id_field.clone(), address_field: address_field.clone(), batch_size: *batch_size }
        }
        _ => ListSpec { id_field: String::new(), address_field: String::new(), batch_size: 1 },
    }
}
