//! The loop around the engine: load an incident's state, decide, store the events and effects
//! together, then carry the effects out and record their results.
//!
//! Every change goes through one submission (`submit.rs`): it decides the commands on the
//! incident's state, appends with the version it read, and decides again if another writer got
//! there first; when a head is signed is `signing.rs`'s. Effects are carried out only after they
//! are stored, and a crash between carrying one out and recording its result leaves it in the
//! outbox, to be carried out again with the same idempotency key.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::audit::chain::Canonical;
use crate::audit::keys::Signer;
use crate::engine::{self, Decision, Directory, Effect, Event, Incident, Outcome};
use crate::runbook::{self, Diagnostic, Runbook, Templates};
use crate::store::{self, Store};

pub mod audit;
pub mod campaign;
pub mod campaign_test;
pub mod claims;
pub mod drill;
pub mod inbox;
mod owned;
pub mod runbooks;
mod signing;
mod submit;
pub mod witness;

use owned::Owned;

/// How many appends a receiver of [`Runtime::changes`] may fall behind before it is told it
/// lagged.
pub const CHANGES: usize = 256;

/// How often an append is decided again after losing a race, before giving up.
const RETRIES_ON_CONFLICT: usize = 8;

/// Carries out one effect. The actions adapter implements it; tests use fakes.
pub trait Executor: Send + Sync + 'static {
    fn carry_out(
        &self,
        effect: &Effect,
        runbook: &Runbook,
        incident: &Incident,
        events: &[Event],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Outcome> + Send;

    /// Renders and sends one batch of a campaign. No default: an executor that wraps another
    /// (the server's, which times effects) must pass campaigns on too.
    fn send_campaign_batch(
        &self,
        job: crate::actions::campaign::BatchJob<'_>,
    ) -> impl Future<Output = crate::actions::campaign::BatchSent> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] engine::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("the runbook is invalid ({} problems; run `phasegate validate`)", .0.len())]
    InvalidRunbook(Vec<Diagnostic>),
    #[error("the runbook that incident `{incident}` pinned no longer validates; it cannot go on")]
    PinnedRunbook { incident: String },
    #[error("incident `{incident}` is changing too fast to record this; try again")]
    Contended { incident: String },
    /// The log does not verify since its last checkpoint, so its head is not signed.
    #[error("{0}")]
    Unsigned(String),
    #[error("{0}")]
    Campaign(String),
    /// A request that is not one (an address that does not parse, a sample out of bounds).
    #[error("{0}")]
    BadRequest(String),
    #[error("incident `{incident}`'s log cannot be read: {error}")]
    Log { incident: String, error: engine::state::Error },
}

/// An incident as stored: its log, its state and the runbook it pinned.
pub struct Loaded {
    pub events: Vec<Event>,
    pub incident: Incident,
    pub runbook: Arc<Runbook>,
}

/// Incidents' logs as [`Runtime::run_due_with`] last read them.
#[derive(Default)]
pub struct Logs {
    loaded: HashMap<String, Loaded>,
}

/// What one pass of [`Runtime::run_due`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub effects: usize,
    pub events: usize,
    /// Checkpoints signed.
    pub checkpoints: usize,
    /// Slices of campaigns that moved on (a list read, batches sent).
    pub campaign_slices: usize,
}

pub struct Runtime<S, T> {
    store: S,
    templates: T,
    directory: Directory,
    clock: Box<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    /// Makes a new incident's id from its start time ([`new_incident_id`] unless replaced).
    ids: Box<dyn Fn(DateTime<Utc>) -> String + Send + Sync>,
    /// Runbooks by the SHA-256 of their text: every incident pinned to one shares the parse.
    /// Each with whether its templates were checked.
    runbooks: Mutex<HashMap<String, (Arc<Runbook>, bool)>>,
    /// Each incident's state as this runtime last saw it; a command reads only the events
    /// appended since, instead of folding the whole log again.
    states: Mutex<HashMap<String, (Incident, Arc<Runbook>)>>,
    /// How many events of each type each incident's log holds, at the version counted: kept with
    /// the states so that a page showing the counts reads only the events appended since.
    counts: Mutex<HashMap<String, (u64, store::Counts)>>,
    /// The key that signs checkpoints, and how often an open incident's head is signed.
    signer: Option<(Arc<Signer>, chrono::Duration)>,
    /// Where each checkpoint signed is also copied, outside the database.
    witness: Option<Arc<witness::Witness>>,
    /// When each incident's head was last signed, as this runtime knows: a command asks the
    /// store whether a checkpoint is due only when the interval may have passed.
    signed_at: Mutex<HashMap<String, DateTime<Utc>>>,
    /// One lock per incident with commands in flight: commands to the same incident take turns in
    /// this process instead of racing to append and deciding again (a webhook storm on one
    /// incident would otherwise exhaust the retries). Other processes are still caught by the
    /// store's version check.
    turns: Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
    /// What this runtime appended, when it owns its store ([`Runtime::owning_the_store`]).
    owned: Option<Mutex<Owned>>,
    /// Where campaigns keep their files.
    campaign_settings: campaign::Settings,
    /// The pace of the campaigns this process is sending.
    campaigns: campaign::Memory,
    /// The id of each incident this runtime appended to, sent once the append is stored
    /// ([`Runtime::changes`]).
    changes: tokio::sync::broadcast::Sender<Arc<str>>,
    /// The name this process's claims on effects are held under, and how long they last.
    holder: String,
    lease: std::time::Duration,
    /// When this process's presence lease was last renewed ([`Runtime::keep_present`]).
    present_at: Mutex<Option<std::time::Instant>>,
    /// When this process last removed the leases of incidents finished ([`Runtime::incident_share`]).
    tidied_at: Mutex<Option<std::time::Instant>>,
}

impl<S: Store, T: Templates + Send + Sync> Runtime<S, T> {
    pub fn new(store: S, templates: T, directory: Directory) -> Self {
        Runtime {
            store,
            templates,
            directory,
            clock: Box::new(Utc::now),
            ids: Box::new(new_incident_id),
            runbooks: Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            signer: None,
            witness: None,
            signed_at: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            owned: None,
            campaign_settings: campaign::Settings::default(),
            campaigns: campaign::Memory::default(),
            changes: tokio::sync::broadcast::channel(CHANGES).0,
            holder: claims::new_holder(),
            lease: claims::LEASE,
            present_at: Mutex::new(None),
            tidied_at: Mutex::new(None),
        }
    }

    /// Where campaigns write their rejects files, and the suppression list they honour.
    pub fn with_campaigns(mut self, settings: campaign::Settings) -> Self {
        self.campaign_settings = settings;
        self
    }

    /// Signs checkpoints with `signer`: an incident's head when it closes, and an open incident's
    /// every `every` while it changes (in [`Runtime::run_due`]).
    pub fn with_signer(mut self, signer: Arc<Signer>, every: chrono::Duration) -> Self {
        self.signer = Some((signer, every));
        self
    }

    /// Copies each checkpoint signed to `witness` as well (after it is stored; never waiting).
    pub fn with_witness(mut self, witness: Arc<witness::Witness>) -> Self {
        self.witness = Some(witness);
        self
    }

    /// Replaces the clock (tests drive time by hand).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Replaces how new incidents' ids are made (a drill makes them from its scenario, so that
    /// the same scenario gives the same log).
    pub fn with_incident_ids(mut self, ids: impl Fn(DateTime<Utc>) -> String + Send + Sync + 'static) -> Self {
        self.ids = Box::new(ids);
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for closing it once nothing else will use the runtime (a runtime that owns
    /// its store stores what it kept back when asked: [`Runtime::settle`] first).
    pub fn into_store(self) -> S {
        self.store
    }

    pub fn templates(&self) -> &T {
        &self.templates
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The ids of the incidents this runtime appends to, each as soon as its append is stored (a
    /// runtime that owns its store sends it when the append is taken into its record). The
    /// dashboard's live pages wait on it. Only this process's appends: another process
    /// writing to the same database is seen by reading the store. A receiver that falls more
    /// than [`CHANGES`] behind is told it lagged, and should read what it follows again.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The parsed runbook for this text, checked against the templates, from the cache or parsed
    /// now.
    pub fn runbook(&self, text: &str) -> Result<Arc<Runbook>, Vec<Diagnostic>> {
        self.parsed(text, true)
    }

    /// The runbook an incident pinned. Its templates were checked when the incident started; a
    /// template edited since then is reported when it is rendered, so it does not stop the
    /// incident from being read or moved on.
    fn pinned(&self, text: &str) -> Result<Arc<Runbook>, Vec<Diagnostic>> {
        self.parsed(text, false)
    }

    /// Parses `text`, or takes it from the cache. A runbook parsed without its templates checked
    /// does not answer a request that needs them checked.
    fn parsed(&self, text: &str, check_templates: bool) -> Result<Arc<Runbook>, Vec<Diagnostic>> {
        let hash = engine::decide::sha256_hex(text);
        let cache = || self.runbooks.lock().expect("the cache is never poisoned");
        if let Some((found, checked)) = cache().get(&hash)
            && (*checked || !check_templates)
        {
            return Ok(found.clone());
        }
        let parsed =
            if check_templates { runbook::parse(text, &self.templates)? } else { runbook::parse(text, &Checked)? };
        let parsed = Arc::new(parsed);
        cache().insert(hash, (parsed.clone(), check_templates));
        Ok(parsed)
    }

    /// Reads an incident's log and folds it.
    pub async fn load(&self, incident: &str) -> Result<Loaded, Error> {
        let events = self.events(incident).await?;
        let state =
            Incident::from_events(&events).map_err(|error| Error::Log { incident: incident.to_string(), error })?;
        let runbook =
            self.pinned(&state.runbook_text).map_err(|_| Error::PinnedRunbook { incident: incident.to_string() })?;
        Ok(Loaded { events, incident: state, runbook })
    }

    /// Calls `read` with the incident's state at `version` (as its summary says) and its runbook:
    /// from the cache when it holds that version, without reading the store; otherwise caught up
    /// with the store (the events after the cached version, or the whole log the first time) and
    /// kept for the next call. Pages that list many incidents read them so instead of folding
    /// every log on every request.
    pub async fn with_state<R>(
        &self,
        incident: &str,
        version: u64,
        read: impl FnOnce(&Runbook, &Incident) -> R,
    ) -> Result<R, Error> {
        self.at_version(incident, version, |runbook, state| read(runbook, state)).await
    }

    /// The incident's current state and its runbook, as [`Runtime::with_state`] reads them (from
    /// the cache when it holds the version the incident's summary gives), for a reader that
    /// needs them for longer than the cache's lock may be held: a page built from them.
    /// [`store::Error::NotFound`] for an incident never started.
    pub async fn state(&self, incident: &str) -> Result<(Incident, Arc<Runbook>), Error> {
        let Some(summary) = self.store.incident(incident).await? else {
            return Err(store::Error::NotFound { incident: incident.to_string() }.into());
        };
        self.at_version(incident, summary.version, |runbook, state| (state.clone(), runbook.clone())).await
    }

    async fn at_version<R>(
        &self,
        incident: &str,
        version: u64,
        read: impl FnOnce(&Arc<Runbook>, &Incident) -> R,
    ) -> Result<R, Error> {
        let cache = || self.states.lock().expect("the cache is never poisoned");
        if let Some((state, runbook)) = cache().get(incident)
            && state.version == version
        {
            return Ok(read(runbook, state));
        }
        let (state, runbook, _) = self.current(incident, true).await?;
        let answer = read(&runbook, &state);
        let mut cached = cache();
        // An append stored meanwhile keeps the newer state it left.
        if cached.get(incident).is_none_or(|(newer, _)| newer.version < state.version) {
            cached.insert(incident.to_string(), (state, runbook));
        }
        Ok(answer)
    }

    /// How many events of each type the first `version` events of the incident's log hold, by
    /// type name in order. Kept from the last call: only the events appended since are read (by
    /// their types alone), and none when the version is the one counted.
    pub async fn event_counts(&self, incident: &str, version: u64) -> Result<store::Counts, Error> {
        let cached = self.counts.lock().expect("the cache is never poisoned").get(incident).cloned();
        let counts = match cached {
            Some((counted, counts)) if counted == version => return Ok(counts),
            Some((counted, mut counts)) if counted < version => {
                for (kind, more) in self.store.event_counts(incident, counted, version).await? {
                    match counts.binary_search_by(|(known, _)| known.cmp(&kind)) {
                        Ok(found) => counts[found].1 += more,
                        Err(place) => counts.insert(place, (kind, more)),
                    }
                }
                counts
            }
            _ => self.store.event_counts(incident, 0, version).await?,
        };
        let mut cached = self.counts.lock().expect("the cache is never poisoned");
        // Another request may have counted further meanwhile: the furthest count stays.
        if cached.get(incident).is_none_or(|(counted, _)| *counted < version) {
            cached.insert(incident.to_string(), (version, counts.clone()));
        }
        Ok(counts)
    }

    /// The version of the incident's state as cached, if it is.
    fn cached_version(&self, incident: &str) -> Option<u64> {
        self.states.lock().expect("the cache is never poisoned").get(incident).map(|(state, _)| state.version)
    }

    /// The incident's state: as cached, or (with `refresh`, or when nothing is cached) caught up
    /// with the store. The second value says whether it was read from the store just now.
    async fn current(&self, incident: &str, refresh: bool) -> Result<(Incident, Arc<Runbook>, bool), Error> {
        let cached = self.states.lock().expect("the cache is never poisoned").get(incident).cloned();
        match cached {
            // A runtime that owns its store appended every event it holds.
            Some((state, runbook)) if self.owned.is_some() => Ok((state, runbook, true)),
            Some((state, runbook)) if !refresh => Ok((state, runbook, false)),
            Some((mut state, runbook)) => {
                for event in self.store.events_after(incident, state.version).await? {
                    state.apply(&event);
                }
                Ok((state, runbook, true))
            }
            None => {
                let events = self.events(incident).await?;
                let state = Incident::from_events(&events)
                    .map_err(|error| Error::Log { incident: incident.to_string(), error })?;
                let runbook = self
                    .pinned(&state.runbook_text)
                    .map_err(|_| Error::PinnedRunbook { incident: incident.to_string() })?;
                Ok((state, runbook, true))
            }
        }
    }

    /// Carries out the effects in the outbox and moves every open incident on, until nothing
    /// more is due now. Returns what it did.
    pub async fn run_due(&self, executor: &impl Executor) -> Result<Progress, Error> {
        self.run_due_with(executor, &mut Logs::default()).await
    }

    /// [`Runtime::run_due`], keeping the logs it reads in `logs` for the next call: a caller that
    /// runs it again and again (a drill, every simulated instant) has each log caught up with
    /// what was appended since, rather than read whole for every effect.
    pub async fn run_due_with(&self, executor: &impl Executor, logs: &mut Logs) -> Result<Progress, Error> {
        let mut total = Progress::default();
        loop {
            let mut pass = Progress::default();
            for due in self.due_effects().await? {
                self.keep_present().await?;
                if !self.still_held(&due).await? {
                    continue;
                }
                let pending = &due.pending;
                let loaded = self.caught_up(&pending.incident, logs).await?;
                let outcome = if matches!(pending.effect.kind, engine::EffectKind::Campaign { .. }) {
                    // A campaign stays in the outbox while it sends, a slice a pass; between
                    // slices it is let go, for the next pass here or elsewhere to claim.
                    let under = due.fence();
                    let slice =
                        self.renewing(due.token, self.campaign_slice(pending, loaded, executor, under.as_ref()));
                    let slice = match slice.await {
                        Ok(slice) => slice,
                        // Another process took the campaign over: it sends the rest.
                        Err(error) if claims::taken_over(&error) => {
                            tracing::warn!(incident = pending.incident, effect = pending.effect.id, "{error}");
                            continue;
                        }
                        Err(error) => return Err(error),
                    };
                    match slice {
                        campaign::Slice::Ended(outcome) => outcome,
                        campaign::Slice::Moved => {
                            self.release(due.token).await?;
                            pass.campaign_slices += 1;
                            continue;
                        }
                        campaign::Slice::Waiting => {
                            self.release(due.token).await?;
                            continue;
                        }
                    }
                } else {
                    let work = executor.carry_out(
                        &pending.effect,
                        &loaded.runbook,
                        &loaded.incident,
                        &loaded.events,
                        self.now(),
                    );
                    self.renewing(due.token, work).await
                };
                let decision = match self.record(&pending.incident, &pending.effect, outcome, due.token).await {
                    Ok(decision) => decision,
                    Err(error) if claims::taken_over(&error) => {
                        tracing::warn!(incident = pending.incident, effect = pending.effect.id, "{error}");
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                pass.effects += 1;
                pass.events += decision.events.len();
            }
            // Each open incident is ticked by the one process holding its lease (claims.rs).
            // A tick reads the log only of an incident whose version moved since this runtime
            // last saw it (`Runtime::tick`).
            let mut ticked = 0;
            let open = self.open_incidents().await?;
            let ids = open.iter().map(|(id, _)| id.clone()).collect();
            let seen: HashMap<String, u64> = open.into_iter().collect();
            for (id, under) in self.incident_share(ids).await? {
                // A pass ticking thousands of incidents on a busy machine may last longer than
                // the lease: the incidents stand on the presence, renewed as the ticks go on.
                self.keep_present().await?;
                let decision = match self.tick(&id, seen[&id], under.as_ref()).await {
                    Ok(decision) => decision,
                    Err(error) if claims::taken_over(&error) => {
                        tracing::warn!(incident = id, "{error}");
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                pass.events += decision.events.len();
                ticked += decision.events.len() + decision.effects.len();
            }
            total.effects += pass.effects;
            total.events += pass.events;
            total.campaign_slices += pass.campaign_slices;
            // The ticks came after this pass's effects were recorded: when they decided nothing
            // and (as a runtime that owns its store knows) no effect waits, another pass would
            // find nothing either.
            let settled =
                ticked == 0 && pass.campaign_slices == 0 && self.owned().is_some_and(|owned| owned.outbox.is_empty());
            if pass == Progress::default() || settled {
                total.checkpoints = self.sign_due().await?;
                return Ok(total);
            }
        }
    }

    /// The incident's log and state from `logs`, caught up with the store.
    async fn caught_up<'l>(&self, incident: &str, logs: &'l mut Logs) -> Result<&'l Loaded, Error> {
        let loaded = match logs.loaded.remove(incident) {
            Some(mut loaded) => {
                for event in self.events_after(incident, loaded.incident.version).await? {
                    loaded.incident.apply(&event);
                    loaded.events.push(event);
                }
                loaded
            }
            None => self.load(incident).await?,
        };
        Ok(logs.loaded.entry(incident.to_string()).or_insert(loaded))
    }

    /// The lock commands to `incident` take turns on; dropped with the last command holding it.
    fn turn(&self, incident: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().expect("the locks are never poisoned");
        if let Some(turn) = turns.get(incident).and_then(std::sync::Weak::upgrade) {
            return turn;
        }
        turns.retain(|_, turn| turn.strong_count() > 0);
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        turns.insert(incident.to_string(), Arc::downgrade(&turn));
        turn
    }
}

impl Executor for crate::actions::Actions {
    async fn carry_out(
        &self,
        effect: &Effect,
        runbook: &Runbook,
        incident: &Incident,
        events: &[Event],
        now: DateTime<Utc>,
    ) -> Outcome {
        let view = crate::actions::IncidentView { runbook, incident, events, now };
        crate::actions::Actions::carry_out(self, effect, &view).await
    }

    async fn send_campaign_batch(
        &self,
        job: crate::actions::campaign::BatchJob<'_>,
    ) -> crate::actions::campaign::BatchSent {
        self.campaign_batch(job).await
    }
}

/// The decision with its events as the log will give them back, so that the state kept in memory
/// is the state a reload folds, and the same events encoded, as they are stored: each is encoded
/// once, here.
fn encoded(incident: &str, mut decision: Decision) -> Result<(Decision, Vec<Canonical>), Error> {
    let canonical = std::mem::take(&mut decision.events)
        .into_iter()
        .map(|event| {
            let kind = event.kind.name();
            Canonical::of(event).map_err(|problem| store::Error::Invalid {
                incident: incident.to_string(),
                problem: format!("an `{kind}` event {problem}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    decision.events = canonical.iter().map(|canonical| canonical.event().clone()).collect();
    Ok((decision, canonical))
}

/// Resolves when `bell` ([`Store::work_bell`]) rings; never when there is none (or it can no
/// longer ring), so that a loop waiting on it beside its interval waits for the interval.
pub async fn rung(bell: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let heard = match bell {
        Some(receiver) => receiver.changed().await.is_ok(),
        None => false,
    };
    if !heard {
        std::future::pending::<()>().await;
    }
}

/// Templates as they were when an incident's runbook was validated at its start.
struct Checked;

impl Templates for Checked {
    fn lookup(&self, _name: &str) -> runbook::TemplateInfo {
        runbook::TemplateInfo::Found { variables: Vec::new() }
    }
}

/// `inc-20261124-0f3a9c`: the day it started, then six hex digits of randomness.
pub fn new_incident_id(at: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("inc-{}-{}", at.format("%Y%m%d"), &random[..6])
}
