//! The loop around the engine: load an incident's state, decide, store the events and effects
//! together, then carry the effects out and record their results.
//!
//! Every change goes through [`Runtime::submit`]: it folds the stored log, asks the engine, and
//! appends with the version it read, deciding again if another writer got there first. Effects are
//! carried out only after they are stored, and a crash between carrying one out and recording its
//! result leaves it in the outbox, to be carried out again with the same idempotency key.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::audit::chain::Canonical;
use crate::audit::keys::Signer;
use crate::engine::{self, Command, Decision, Directory, Effect, Event, EventKind, Incident, Outcome, Request};
use crate::runbook::{self, Diagnostic, Runbook, Templates};
use crate::store::{self, Append, Store};

pub mod audit;
pub mod drill;
pub mod inbox;
mod owned;
pub mod runbooks;
pub mod witness;

use owned::Owned;

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
            signer: None,
            witness: None,
            signed_at: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            owned: None,
        }
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

    /// Opens an incident of `runbook_text` with a new id, and returns the id.
    pub async fn start(
        &self,
        runbook_text: &str,
        actor: &str,
        inputs: BTreeMap<String, serde_json::Value>,
        key: Option<String>,
    ) -> Result<(String, Decision), Error> {
        self.start_delivered(runbook_text, actor, inputs, key, None).await
    }

    /// [`Runtime::start`] for a webhook delivery, recorded in the same transaction (a delivery
    /// already taken is [`store::Error::Duplicate`] and starts nothing).
    pub async fn start_delivered(
        &self,
        runbook_text: &str,
        actor: &str,
        inputs: BTreeMap<String, serde_json::Value>,
        key: Option<String>,
        delivery: Option<&store::Delivery>,
    ) -> Result<(String, Decision), Error> {
        let delivery: Vec<store::Delivery> = delivery.into_iter().cloned().collect();
        let runbook = self.runbook(runbook_text).map_err(Error::InvalidRunbook)?;
        let at = self.now();
        let id = (self.ids)(at);
        let command = Command::Start { incident: id.clone(), runbook_text: runbook_text.to_string(), inputs, key };
        let request = Request { actor: actor.to_string(), at, command };
        let (decision, canonical) = encoded(&id, engine::decide(&runbook, &self.directory, None, &request)?)?;
        let append = Append::canonical(&id, 0, canonical).effects(&decision.effects).delivered(delivery.as_slice());
        self.store_append(append, &decision, None).await?;
        if self.owned.is_some() {
            let state =
                Incident::from_events(&decision.events).map_err(|error| Error::Log { incident: id.clone(), error })?;
            self.states.lock().expect("the cache is never poisoned").insert(id.clone(), (state, runbook));
        }
        self.sign_if_due(&id, false).await;
        Ok((id, decision))
    }

    /// Decides a command on the incident's current state and stores the result. `completes`
    /// names the outbox effect whose result this records.
    pub async fn submit(&self, incident: &str, actor: &str, command: Command) -> Result<Decision, Error> {
        self.submit_delivered(incident, actor, command, None).await
    }

    /// [`Runtime::submit`] for a webhook delivery, recorded in the same transaction as the events
    /// it causes (a delivery already taken is [`store::Error::Duplicate`] and changes nothing).
    pub async fn submit_delivered(
        &self,
        incident: &str,
        actor: &str,
        command: Command,
        delivery: Option<&store::Delivery>,
    ) -> Result<Decision, Error> {
        let turn = self.turn(incident);
        let _turn = turn.lock().await;
        self.submit_in_turn(incident, actor, command, delivery).await
    }

    /// Several webhook deliveries' commands to one incident, decided in order (each on the state
    /// the ones before it leave) and stored in one append with the deliveries: what a storm of
    /// alerts on one incident costs is then one commit, not one each. Each command is answered as
    /// [`Runtime::submit_delivered`] would answer it: a refusal leaves the state as it was for
    /// the next. If one of the deliveries was taken before, they are submitted one by one, so the
    /// others are still taken. `Err` when nothing could be stored.
    pub async fn submit_all_delivered(
        &self,
        incident: &str,
        commands: &[(String, Command, store::Delivery)],
    ) -> Result<Vec<Result<Decision, Error>>, Error> {
        let turn = self.turn(incident);
        let _turn = turn.lock().await;
        let mut refresh = false;
        'attempt: for _ in 0..RETRIES_ON_CONFLICT {
            let (state, runbook, fresh) = self.current(incident, refresh).await?;
            refresh = true;
            let mut next = state.clone();
            let (mut events, mut effects, mut deliveries) = (Vec::new(), Vec::new(), Vec::new());
            let mut encoded_events = Vec::new();
            let mut answers = Vec::with_capacity(commands.len());
            for (actor, command, delivery) in commands {
                let request = Request { actor: actor.clone(), at: self.now(), command: command.clone() };
                match engine::decide(&runbook, &self.directory, Some(&next), &request) {
                    Ok(decision) => {
                        let (decision, canonical) = encoded(incident, decision)?;
                        if !decision.events.is_empty() || !decision.effects.is_empty() {
                            for event in &decision.events {
                                next.apply(event);
                            }
                            events.extend(decision.events.iter().cloned());
                            encoded_events.extend(canonical);
                            effects.extend(decision.effects.iter().cloned());
                            deliveries.push(delivery.clone());
                        }
                        answers.push(Ok(decision));
                    }
                    // A refusal on a cached state is confirmed on the stored one.
                    Err(_) if !fresh => continue 'attempt,
                    Err(refused) => answers.push(Err(refused.into())),
                }
            }
            if deliveries.is_empty() {
                return Ok(answers);
            }
            let append =
                Append::canonical(incident, state.version, encoded_events).effects(&effects).delivered(&deliveries);
            let decided = Decision { events, effects };
            match self.store_append(append, &decided, None).await {
                Ok(_) => {
                    self.appended(incident, &decided.events, next, runbook).await;
                    return Ok(answers);
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(store::Error::Duplicate { .. }) => {
                    let mut answers = Vec::with_capacity(commands.len());
                    for (actor, command, delivery) in commands {
                        answers.push(self.submit_in_turn(incident, actor, command.clone(), Some(delivery)).await);
                    }
                    return Ok(answers);
                }
                Err(other) => {
                    self.states.lock().expect("the cache is never poisoned").remove(incident);
                    return Err(other.into());
                }
            }
        }
        Err(Error::Contended { incident: incident.to_string() })
    }

    /// After an append of `events`: signs the incident's head if that is due, and keeps the state
    /// they led to.
    async fn appended(&self, incident: &str, events: &[Event], next: Incident, runbook: Arc<Runbook>) {
        let closed = events.iter().any(|event| matches!(event.kind, EventKind::IncidentClosed { .. }));
        self.sign_if_due(incident, closed).await;
        self.states.lock().expect("the cache is never poisoned").insert(incident.to_string(), (next, runbook));
    }

    /// [`Runtime::submit_delivered`] by a caller that holds the incident's turn.
    async fn submit_in_turn(
        &self,
        incident: &str,
        actor: &str,
        command: Command,
        delivery: Option<&store::Delivery>,
    ) -> Result<Decision, Error> {
        let delivery: Vec<store::Delivery> = delivery.into_iter().cloned().collect();
        let completes = match &command {
            Command::Record { effect, .. } => Some(effect.id.clone()),
            _ => None,
        };
        // Decide on the cached state first: an append checks the version, so a decision made on a
        // state that another writer has moved past is refused by the store and made again. A
        // refusal or a decision to do nothing is not checked that way, so it is confirmed on the
        // stored state before it is believed.
        let mut refresh = false;
        for _ in 0..RETRIES_ON_CONFLICT {
            let (state, runbook, fresh) = self.current(incident, refresh).await?;
            refresh = true;
            let request = Request { actor: actor.to_string(), at: self.now(), command: command.clone() };
            let (decision, canonical) = match engine::decide(&runbook, &self.directory, Some(&state), &request) {
                Ok(decision) => encoded(incident, decision)?,
                Err(_) if !fresh => continue,
                // The result of an effect the incident no longer waits for (it was recorded before
                // a crash, say) only takes the effect out of the outbox.
                Err(engine::Error::StaleEffect(_)) if completes.is_some() => (Decision::default(), Vec::new()),
                Err(refused) => return Err(refused.into()),
            };
            if decision.events.is_empty() && decision.effects.is_empty() && completes.is_none() {
                if !fresh {
                    continue;
                }
                return Ok(decision);
            }
            let append = Append::canonical(incident, state.version, canonical)
                .effects(&decision.effects)
                .completes(completes.as_deref())
                .delivered(delivery.as_slice());
            let appended = self.store_append(append, &decision, completes.as_deref()).await;
            match appended {
                Ok(_) => {
                    let mut next = state;
                    for event in &decision.events {
                        next.apply(event);
                    }
                    self.appended(incident, &decision.events, next, runbook).await;
                    return Ok(decision);
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(other) => {
                    // The append may or may not have happened: read the log again next time.
                    self.states.lock().expect("the cache is never poisoned").remove(incident);
                    return Err(other.into());
                }
            }
        }
        Err(Error::Contended { incident: incident.to_string() })
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
            for pending in self.pending_effects().await? {
                let loaded = self.caught_up(&pending.incident, logs).await?;
                let outcome = executor
                    .carry_out(&pending.effect, &loaded.runbook, &loaded.incident, &loaded.events, self.now())
                    .await;
                let record = Command::Record { effect: pending.effect.clone(), outcome };
                let decision = self.submit(&pending.incident, engine::event::SYSTEM, record).await?;
                pass.effects += 1;
                pass.events += decision.events.len();
            }
            let mut ticked = 0;
            for id in self.open_incidents().await? {
                let decision = self.submit(&id, engine::event::SYSTEM, Command::Tick).await?;
                pass.events += decision.events.len();
                ticked += decision.events.len() + decision.effects.len();
            }
            total.effects += pass.effects;
            total.events += pass.events;
            // The ticks came after this pass's effects were recorded: when they decided nothing
            // and (as a runtime that owns its store knows) no effect waits, another pass would
            // find nothing either.
            let settled = ticked == 0 && self.owned().is_some_and(|owned| owned.outbox.is_empty());
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

    /// Signs the heads that are due: every incident with events no checkpoint covers, once it is
    /// closed or its last checkpoint is older than the interval. Returns how many it signed.
    pub async fn sign_due(&self) -> Result<usize, Error> {
        let Some((_, every)) = &self.signer else { return Ok(0) };
        let now = self.now();
        let mut signed = 0;
        for summary in self.summaries_to_sign(now, *every).await? {
            let due = summary.closed_at.is_some() || summary.checkpointed_at.is_none_or(|at| now - at >= *every);
            if summary.version > summary.checkpointed && due {
                match self.sign_summary(&summary).await {
                    Ok(done) => signed += usize::from(done),
                    // One incident whose log was tampered with stops no other's checkpoints.
                    Err(Error::Unsigned(problem)) => tracing::error!(incident = summary.id, problem, "not signed"),
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(signed)
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

    /// After an append: signs the incident's head if it closed, or if its last checkpoint is older
    /// than the interval (or it has none), so checkpoints are made even where `run` is not
    /// running. The append stands whatever happens here; what fails is logged, and `run` signs
    /// what is left.
    async fn sign_if_due(&self, incident: &str, closed: bool) {
        let Some((_, every)) = &self.signer else { return };
        let now = self.now();
        let known = self.signed_at.lock().expect("the cache is never poisoned").get(incident).copied();
        if !closed && known.is_some_and(|at| now - at < *every) {
            return;
        }
        let signed = async {
            self.settle().await?;
            let Some(summary) = self.store.incident(incident).await? else { return Ok(None) };
            let due = closed || summary.checkpointed_at.is_none_or(|at| now - at >= *every);
            if due && self.sign_summary(&summary).await? {
                return Ok(Some(now));
            }
            Ok::<_, Error>(summary.checkpointed_at)
        };
        match signed.await {
            Ok(Some(at)) => {
                self.signed_at.lock().expect("the cache is never poisoned").insert(incident.to_string(), at);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(incident, %error, "the incident's head was not signed"),
        }
    }

    /// Signs the head of `incident` now, if it has events no checkpoint covers.
    pub async fn sign(&self, incident: &str) -> Result<bool, Error> {
        self.settle().await?;
        match self.store.incident(incident).await? {
            Some(summary) => self.sign_summary(&summary).await,
            None => Err(store::Error::NotFound { incident: incident.to_string() }.into()),
        }
    }

    async fn sign_summary(&self, summary: &store::IncidentSummary) -> Result<bool, Error> {
        let Some((signer, _)) = &self.signer else { return Ok(false) };
        match self::audit::sign_head(&self.store, signer, summary, self.now()).await {
            Ok(signed) => {
                if let (Some(signed), Some(witness)) = (&signed, &self.witness) {
                    witness.record(signed);
                }
                Ok(signed.is_some())
            }
            Err(self::audit::SignError::Store(error)) => Err(error.into()),
            Err(broken @ self::audit::SignError::Broken { .. }) => Err(Error::Unsigned(broken.to_string())),
        }
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
