//! The webhook inbox's loop: applies received deliveries to incidents, as the runbooks' triggers
//! say (`engine::trigger` decides; this reads the inbox, looks incidents up, submits and marks).
//!
//! A delivery is answered once it is stored in the inbox (`store::Store::receive`, by the server);
//! this takes the waiting ones in the order received, a page at a time, in `phasegate serve`
//! (whenever one arrives, [`Inbox::run`]) and in `phasegate run` (each pass,
//! [`Inbox::apply_waiting`]). Each delivery is read for each trigger listening to its source;
//! each trigger's condition and key are evaluated; then the actions are grouped by runbook and
//! key, since one key is one incident, and the groups are applied one after another (in the
//! order their first delivery came): one incident's actions in the order received, so a
//! resolution never overtakes the alert that fired it, and those waiting for an incident already
//! open in one append, so a storm on one incident costs a commit a page. One group at a time
//! leaves most of the machine, during a storm, to taking deliveries in, which is what senders
//! wait for (measured in BENCHMARKS.md: with several groups at once, deliveries were taken in
//! markedly slower). Each action is stored with a delivery id of its own (`{actions}/{n}`:
//! `store::Inbound::actions`) in the transaction of its events, so applying a delivery again
//! after a crash halfway through does the rest and nothing twice. A delivery is marked applied,
//! with what it did, once all its actions are stored; one whose action failed (the database)
//! waits and is tried again.
//!
//! Among processes sharing one database, the one holding the inbox's lease
//! (`claims::INBOX`) applies it; the others only receive. Each page is applied under the lease:
//! every action's append and the marks of the deliveries applied carry its fencing token, so a
//! process that paused past its lease stores nothing once another took the inbox over, and one
//! incident's deliveries are applied in the order received whichever process received them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::{Error, Runtime};
use crate::engine::trigger::{self, Decision, Did, Variables};
use crate::runbook::Templates;
use crate::runbook::model::{PayloadFormat, Trigger};
use crate::runbook::registry::Registry;
use crate::store::{self, Delivery, Fence, Headers, Inbound, Store};

/// Deliveries taken from the inbox at once, and about the most bytes of bodies. A long page
/// makes long groups, and a group on an open incident is one append.
const PAGE: usize = 1024;
const PAGE_BYTES: usize = 16 << 20;

/// How often a process that does not apply the inbox counts what waits in it, at most: the
/// count walks the waiting deliveries' index, and under a transaction holding back vacuum that
/// index keeps an entry for every delivery received since, so a count at every delivery (as it
/// was) cost more the longer the transaction stood. Between counts, its own receipts add up.
const RECOUNT: Duration = Duration::from_secs(1);

/// The longest wait before a delivery whose action failed is tried again.
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// The code a receipt gives a delivery the triggers of the moment cannot read.
const UNREADABLE: &str = "invalid_payload";

/// What one trigger did with a delivery, kept with the delivery once it is applied.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub trigger: String,
    pub did: Did,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The runbooks whose triggers are armed, how many received deliveries wait, and the bell that
/// wakes the loop.
#[derive(Default)]
pub struct Inbox {
    runbooks: Arc<Registry>,
    depth: AtomicU64,
    /// When the depth was last counted from the store ([`RECOUNT`]).
    counted: std::sync::Mutex<Option<std::time::Instant>>,
    wake: Notify,
}

impl Inbox {
    /// An inbox applying the triggers of the runbooks `runbooks` loaded (the registry the server
    /// and the CLI find runbooks in: one, shared).
    pub fn new(runbooks: Arc<Registry>) -> Inbox {
        Inbox { runbooks, ..Inbox::default() }
    }

    /// The runbooks whose triggers act on deliveries.
    pub fn runbooks(&self) -> &Arc<Registry> {
        &self.runbooks
    }

    /// The formats of the triggers listening to `source`: what a delivery from it must be
    /// readable as.
    pub fn formats(&self, source: &str) -> Vec<&PayloadFormat> {
        let triggers = self.runbooks.triggers().map(|(_, trigger)| trigger);
        triggers.filter(|trigger| trigger.source == source).map(|trigger| &trigger.format).collect()
    }

    /// Stores a delivery in the inbox, with the headers its triggers may read (the server keeps
    /// none that authenticates it), before its sender is answered; a new one is counted and
    /// wakes the loop. `false` when it was received before (a retry or a replay, which changes
    /// nothing).
    pub async fn receive<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        delivery: &Delivery,
        headers: &Headers,
        body: &[u8],
    ) -> Result<bool, Error> {
        let new = runtime.store().receive(delivery, headers, body).await?;
        if new {
            self.depth.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        }
        Ok(new)
    }

    fn taken(&self, applied: usize) {
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |depth| Some(depth.saturating_sub(applied as u64)));
    }

    /// Whether the depth is to be counted from the store now: not within [`RECOUNT`] of the last
    /// count (then now is the last).
    fn recount_due(&self) -> bool {
        let mut counted = self.counted.lock().expect("the inbox's clock is never poisoned");
        let now = std::time::Instant::now();
        if counted.is_some_and(|at| now.duration_since(at) < RECOUNT) {
            return false;
        }
        *counted = Some(now);
        true
    }

    /// How many received deliveries wait, as counted here.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Applies the deliveries waiting now, page after page, until none waits or a page could
    /// apply none (its first action's incident failed to store: it is tried at the next call).
    /// Returns how many were applied.
    pub async fn apply_waiting<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
    ) -> Result<usize, Error> {
        let mut total = 0;
        while let Some(applied) = self.apply_next_page(runtime).await? {
            if applied == 0 {
                break;
            }
            total += applied;
        }
        Ok(total)
    }

    /// Applies the next page of waiting deliveries: how many were applied, or `None` when none
    /// waits, or another process holds the inbox's lease (it applies them).
    async fn apply_next_page<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
    ) -> Result<Option<usize>, Error> {
        let Some(under) = runtime.named_lease(super::claims::INBOX).await? else {
            // Another process applies the deliveries this one receives: what waits is counted
            // from the store, or the count past which the server sheds load would only grow.
            if self.recount_due() {
                self.depth.store(runtime.store().inbox_depth().await?, Ordering::Relaxed);
            }
            return Ok(None);
        };
        let waiting = runtime.store().inbox(PAGE, PAGE_BYTES).await?;
        if waiting.is_empty() {
            return Ok(None);
        }
        match self.apply_page(runtime, waiting, under.as_ref()).await {
            Ok(applied) => {
                self.taken(applied);
                Ok(Some(applied))
            }
            // Another process took the inbox over: it applies what this page left.
            Err(error) if super::claims::taken_over(&error) => {
                tracing::warn!("{error}");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Applies waiting deliveries, a page at a time, until `stopped` says so: whenever woken (a
    /// delivery was received), and every `interval` in any case (deliveries received before a
    /// restart, or by another process). A page under way when the stop comes is finished; what
    /// waits stays for the next start. After a page that could apply nothing, it waits longer
    /// each time, up to [`MOST_BACKOFF`].
    pub async fn run<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        interval: Duration,
        mut stopped: watch::Receiver<bool>,
    ) {
        // What waits from before (a restart), as the count past which the server sheds load.
        match runtime.store().inbox_depth().await {
            Ok(depth) => self.depth.store(depth, Ordering::Relaxed),
            Err(error) => tracing::error!(%error, "the webhook inbox's depth cannot be read"),
        }
        let mut backoff = Duration::ZERO;
        let mut bell = runtime.store().work_bell();
        loop {
            if *stopped.borrow() {
                return;
            }
            let (more, failed) = match self.apply_next_page(runtime).await {
                Ok(None) => (false, false),
                Ok(Some(applied)) => (true, applied == 0),
                Err(error) => {
                    tracing::error!(%error, "the webhook inbox could not be read or marked; trying again");
                    (false, true)
                }
            };
            backoff =
                if failed { (backoff * 2).clamp(Duration::from_millis(100), MOST_BACKOFF) } else { Duration::ZERO };
            if more && !failed {
                continue;
            }
            let wait = if failed { backoff } else { interval };
            tokio::select! {
                _ = self.wake.notified(), if !failed => {}
                _ = super::rung(&mut bell), if !failed => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => {}
            }
        }
    }

    /// Applies a page of deliveries and marks those done; returns how many were.
    async fn apply_page<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        waiting: Vec<Inbound>,
        under: Option<&Fence>,
    ) -> Result<usize, Error> {
        // What each delivery did, trigger by trigger; an action's place is filled when it is stored.
        let mut outcomes: Vec<Result<Vec<Option<Done>>, String>> = Vec::with_capacity(waiting.len());
        let mut groups: HashMap<(usize, String), Vec<Action>> = HashMap::new();
        let mut order: Vec<(usize, String)> = Vec::new();
        for (entry, inbound) in waiting.iter().enumerate() {
            let subjects = match self.subjects(inbound) {
                Ok(subjects) => subjects,
                // The triggers changed since it was received (a restart with other runbooks).
                Err(error) => {
                    outcomes.push(Err(error));
                    continue;
                }
            };
            let mut done = Vec::with_capacity(subjects.len());
            for (number, subject) in subjects.into_iter().enumerate() {
                let trigger = self.trigger(&subject);
                match trigger::key(trigger, &subject.variables) {
                    Err(why) => done.push(Some(Done::of(trigger, Did::Ignored, None, Some(why.to_string())))),
                    Ok(key) => {
                        done.push(None);
                        // Each action has an id of its own, the same every time the delivery is applied.
                        let delivery = Delivery {
                            source: inbound.delivery.source.clone(),
                            id: format!("{}/{number}", inbound.actions),
                            received_at: inbound.delivery.received_at,
                        };
                        let group = (subject.runbook, key.clone());
                        if !groups.contains_key(&group) {
                            order.push(group.clone());
                        }
                        groups.entry(group).or_default().push(Action { entry, number, subject, key, delivery });
                    }
                }
            }
            outcomes.push(Ok(done));
        }
        // The open incidents as the page starts, read once; an action they turn away (one closed
        // meanwhile) reads its incident again (`apply`).
        let open: HashMap<(String, String), String> = if order.is_empty() {
            HashMap::new()
        } else {
            match runtime.store().open_keys().await {
                Ok(open) => open.into_iter().map(|(runbook, key, incident)| ((runbook, key), incident)).collect(),
                Err(error) => {
                    tracing::warn!(%error, "open incidents could not be read at once; each is read in turn");
                    HashMap::new()
                }
            }
        };
        let mut since = std::time::Instant::now();
        for group in order {
            // The lease is renewed as the page goes on; once lost, the rest waits for its holder.
            if !runtime.lease_still_held(under, &mut since).await? {
                break;
            }
            let actions = groups.remove(&group).unwrap_or_default();
            let runbook = self.runbooks.entries()[group.0].runbook().id();
            let known = open.get(&(runbook.to_owned(), group.1.clone())).cloned();
            for (action, result) in actions.iter().zip(self.apply_group(runtime, &actions, known, under).await) {
                // An action that failed leaves its place empty: its delivery waits.
                if let (Ok(done), Ok(dones)) = (result, &mut outcomes[action.entry]) {
                    dones[action.number] = Some(done);
                }
            }
        }
        let mut applied = Vec::with_capacity(waiting.len());
        for (inbound, outcome) in waiting.iter().zip(outcomes) {
            let record = match outcome {
                Err(message) => json!({ "error": { "code": UNREADABLE, "message": message } }),
                Ok(dones) if dones.iter().all(Option::is_some) => json!({ "done": dones }),
                // An action failed, or one before it on its incident did: it waits to be tried again.
                Ok(_) => continue,
            };
            applied.push((inbound.seq, record.to_string()));
        }
        if !applied.is_empty() {
            runtime.store().applied(&applied, under).await?;
        }
        Ok(applied.len())
    }

    /// What a delivery asks of each trigger listening to its source: which trigger (by its
    /// runbook's place among the registry's and its own in the runbook) and the variables it reads
    /// (its body and the headers kept with it).
    fn subjects(&self, inbound: &Inbound) -> Result<Vec<Subject>, String> {
        let (source, body) = (inbound.delivery.source.as_str(), inbound.body.as_slice());
        let mut subjects = Vec::new();
        let mut payload: Option<Value> = None;
        for (runbook, entry) in self.runbooks.entries().iter().enumerate() {
            for (number, trigger) in entry.runbook().triggers().iter().enumerate() {
                if trigger.source != source {
                    continue;
                }
                let payload = match &payload {
                    Some(payload) => payload,
                    None => payload.insert(
                        serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?,
                    ),
                };
                for variables in
                    trigger::read(&trigger.format, payload, &inbound.headers).map_err(|error| error.to_string())?
                {
                    subjects.push(Subject { runbook, trigger: number, variables });
                }
            }
        }
        Ok(subjects)
    }

    fn trigger(&self, subject: &Subject) -> &Trigger {
        &self.runbooks.entries()[subject.runbook].runbook().triggers()[subject.trigger]
    }

    /// Applies one incident's actions, in order; stops at the first that could not be stored
    /// (the ones after it wait, to keep their order). `known` is the incident open with the
    /// group's key when the page began, and is followed from there; while it is known to be open,
    /// the group's actions go to it in one append.
    async fn apply_group<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        actions: &[Action],
        known: Option<String>,
        under: Option<&Fence>,
    ) -> Vec<Result<Done, Unstored>> {
        let mut results = Vec::with_capacity(actions.len());
        let mut open: Option<Option<String>> = Some(known);
        while results.len() < actions.len() {
            let rest = &actions[results.len()..];
            let answers = match open.clone() {
                Some(Some(incident)) => self.apply_all(runtime, rest, &incident, under).await,
                _ => vec![self.apply(runtime, &rest[0], &mut open, under).await],
            };
            for answer in answers {
                let failed = answer.is_err();
                results.push(answer);
                if failed {
                    return results;
                }
            }
        }
        results
    }

    /// Carries out an action on the incident its key names. `known` is the open incident with
    /// that key as the group's earlier actions left it (`None` when not known): the store is read
    /// only when it is not, or when the incident known turned the action away (a person closed it
    /// meanwhile, say). `Err` only when the action could not be stored (and may be tried again);
    /// everything else is what the trigger did.
    async fn apply<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        action: &Action,
        known: &mut Option<Option<String>>,
        under: Option<&Fence>,
    ) -> Result<Done, Unstored> {
        let runbook = self.runbooks.entries()[action.subject.runbook].runbook().id();
        let trigger = &self.trigger(&action.subject).id;
        let read = || async {
            let open = runtime.store().open_incident_by_key(runbook, &action.key).await;
            open.map_err(|error| unstored(trigger, &error))
        };
        let done = match known.take() {
            // What was known may be out of date (an incident closed meanwhile, or the page's
            // reading of the open incidents failed): what it turned away is decided again on
            // what the store says now.
            Some(open) => match self.act(runtime, action, open, under).await? {
                done if done.did == Did::Ignored => self.act(runtime, action, read().await?, under).await?,
                done => done,
            },
            None => self.act(runtime, action, read().await?, under).await?,
        };
        if done.did != Did::Ignored {
            *known = Some(done.incident.clone());
        }
        Ok(done)
    }

    /// Decides an action with `open` as its key's open incident, and carries the decision out.
    async fn act<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        action: &Action,
        open: Option<String>,
        under: Option<&Fence>,
    ) -> Result<Done, Unstored> {
        let trigger = self.trigger(&action.subject);
        let delivery = Some(&action.delivery);
        let decision = trigger::decide(trigger, &action.subject.variables, &action.key, open.as_deref());
        let Decision::Start { key, inputs } = &decision else {
            return self.submit(runtime, trigger, &decision, delivery, under).await;
        };
        let text = self.runbooks.entries()[action.subject.runbook].text();
        let actor = trigger::actor(trigger);
        match runtime.start_delivered_under(text, &actor, inputs.clone(), Some(key.clone()), delivery, under).await {
            Ok((id, _)) => Ok(Done::of(trigger, Did::Started, Some(id), None)),
            // Another process opened it first: decided again with that one open.
            Err(Error::Store(store::Error::DuplicateKey { open, .. })) => {
                let decision = trigger::decide(trigger, &action.subject.variables, &action.key, Some(&open));
                self.submit(runtime, trigger, &decision, delivery, under).await
            }
            Err(error) => settle(trigger, Err(error)),
        }
    }

    /// Submits what `decision` asks of its open incident; one that asks nothing is what it did.
    async fn submit<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        trigger: &Trigger,
        decision: &Decision,
        delivery: Option<&Delivery>,
        under: Option<&Fence>,
    ) -> Result<Done, Unstored> {
        let (Some(command), Some(incident)) = (decision.command(), decision.incident()) else {
            return Ok(Done::decided(trigger, decision));
        };
        let result = runtime
            .submit_delivered_under(incident, &trigger::actor(trigger), command, delivery, under)
            .await
            .map(|_| Done::of(trigger, decision.did(), Some(incident.to_string()), None));
        settle(trigger, result)
    }

    /// Applies actions to the open incident they all name, in one append (see
    /// `Runtime::submit_all_delivered`). An action the incident turned away is applied again on
    /// its own, as [`Inbox::apply`] does, after the others.
    async fn apply_all<S: Store, T: Templates + Send + Sync>(
        &self,
        runtime: &Runtime<S, T>,
        actions: &[Action],
        open: &str,
        under: Option<&Fence>,
    ) -> Vec<Result<Done, Unstored>> {
        let mut dones: Vec<Option<Result<Done, Unstored>>> = actions.iter().map(|_| None).collect();
        let mut asked = Vec::new();
        let mut commands = Vec::new();
        for (index, action) in actions.iter().enumerate() {
            let trigger = self.trigger(&action.subject);
            let decision = trigger::decide(trigger, &action.subject.variables, &action.key, Some(open));
            match decision.command() {
                Some(command) => {
                    commands.push((trigger::actor(trigger), command, action.delivery.clone()));
                    asked.push((index, decision.did()));
                }
                None => dones[index] = Some(Ok(Done::decided(trigger, &decision))),
            }
        }
        let mut again = Vec::new();
        if !commands.is_empty() {
            match runtime.submit_all_delivered_under(open, &commands, under).await {
                Ok(answers) => {
                    for ((index, did), answer) in asked.into_iter().zip(answers) {
                        let trigger = self.trigger(&actions[index].subject);
                        match answer {
                            Err(Error::Refused(_)) => again.push(index),
                            answer => {
                                let result = answer.map(|_| Done::of(trigger, did, Some(open.to_string()), None));
                                dones[index] = Some(settle(trigger, result));
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, incident = open, "deliveries could not be applied; they will be tried again");
                    for (index, _) in asked {
                        dones[index] = Some(Err(Unstored));
                    }
                }
            }
        }
        for index in again {
            dones[index] = Some(self.apply(runtime, &actions[index], &mut None, under).await);
        }
        dones.into_iter().map(|done| done.expect("every action is answered")).collect()
    }
}

/// What a delivery asks of one trigger: which (by its runbook's place among the registry's and its own
/// in the runbook) and the variables its expressions read.
struct Subject {
    runbook: usize,
    trigger: usize,
    variables: Variables,
}

/// An action a delivery asks of a trigger once its condition holds and its key is known.
struct Action {
    /// The delivery's place in the page and the action's among the delivery's.
    entry: usize,
    number: usize,
    subject: Subject,
    key: String,
    delivery: Delivery,
}

impl Done {
    fn of(trigger: &Trigger, did: Did, incident: Option<String>, why: Option<String>) -> Done {
        Done { trigger: trigger.id.clone(), did, incident, why }
    }

    /// A decision that asks its incident nothing, as done.
    fn decided(trigger: &Trigger, decision: &Decision) -> Done {
        let why = match decision {
            Decision::Ignore { why, .. } => Some(why.to_string()),
            _ => None,
        };
        Done::of(trigger, decision.did(), decision.incident().map(str::to_string), why)
    }
}

/// An action that could not be stored (the database failed): its delivery waits, to be applied
/// again. The error was logged where it was met.
#[derive(Debug)]
struct Unstored;

fn unstored(trigger: &str, error: &dyn std::fmt::Display) -> Unstored {
    tracing::error!(%error, trigger, "a delivery could not be applied; it will be tried again");
    Unstored
}

/// What became of an action the runtime was asked to do: `Err` only when it could not be stored
/// (it is tried again).
fn settle(trigger: &Trigger, result: Result<Done, Error>) -> Result<Done, Unstored> {
    match result {
        Ok(done) => Ok(done),
        // Applied before, by a pass that stopped before marking the delivery applied.
        Err(Error::Store(store::Error::Duplicate { incident, .. })) => {
            Ok(Done::of(trigger, Did::Duplicate, Some(incident), None))
        }
        // A gate already passed, an incident closed meanwhile: nothing to do, and nothing lost.
        Err(Error::Refused(refused)) => Ok(Done::of(trigger, Did::Ignored, None, Some(refused.to_string()))),
        // Another process took the inbox over: it applies the delivery.
        Err(error @ Error::Store(store::Error::FenceLost { .. })) => {
            tracing::warn!(%error, trigger = trigger.id, "the inbox's new holder applies this delivery");
            Err(Unstored)
        }
        Err(error) => Err(unstored(&trigger.id, &error)),
    }
}
