//! The inbox task: applies received deliveries to incidents, as the runbooks' triggers say.
//!
//! A delivery is answered once it is stored in the inbox (`store::Store::receive`); this task
//! takes the waiting ones in the order received, a page at a time. Each delivery is decoded into
//! what it asks of each trigger listening to its source ([`subjects`]); each trigger's condition
//! and key are evaluated; then the actions are grouped by runbook and key, since one key is one
//! incident, and the groups are applied one after another (in the order their first delivery
//! came): one incident's actions in the order received, so a resolution never overtakes the alert
//! that fired it, and those waiting for an incident already open in one append, so a storm on one
//! incident costs a commit a page. One group at a time leaves most of the machine, during a
//! storm, to taking deliveries in, which is what senders wait for (measured in BENCHMARKS.md:
//! with several groups at once, deliveries were taken in markedly slower). Each action is
//! stored with a delivery id of its own (`{actions}/{n}`: `store::Inbound::actions`) in the transaction of its events, so
//! applying a delivery again after a crash halfway through does the rest and nothing twice. A
//! delivery is marked applied, with what it did, once all its actions are stored; one whose action
//! failed (the database) waits and is tried again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::alertmanager;
use crate::engine::directory::TRIGGER_PREFIX;
use crate::engine::{Command, scope};
use crate::runbook::model::{PayloadFormat, Trigger, TriggerAction};
use crate::runtime;
use crate::server::App;
use crate::server::error::ApiError;
use crate::store::{self, Delivery, Inbound, Store};

/// Deliveries taken from the inbox at once, and about the most bytes of bodies. A long page
/// makes long groups, and a group on an open incident is one append.
const PAGE: usize = 1024;
const PAGE_BYTES: usize = 16 << 20;

/// The longest wait before a delivery whose action failed is tried again.
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// What one trigger did with a delivery, kept with the delivery once it is applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Done {
    pub trigger: String,
    /// `started`, `attached`, `satisfied`, `noted`, `resolved`, `duplicate` or `ignored`.
    pub did: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// What a delivery asks of one trigger: which (by its runbook's place in `App::armed` and its
/// own in the runbook) and the variables its conditions read.
pub struct Subject {
    armed: usize,
    trigger: usize,
    variables: BTreeMap<&'static str, Value>,
}

/// Decodes a delivery for every trigger listening to `source`: Alertmanager's format once per
/// alert, generic JSON once. A body a listening trigger's format cannot read is refused (400).
pub fn subjects(app: &App, source: &str, body: &[u8]) -> Result<Vec<Subject>, ApiError> {
    let mut subjects = Vec::new();
    let mut alerts: Option<(Value, Vec<Value>)> = None;
    let mut payload: Option<Value> = None;
    for (armed, runbook) in app.armed.iter().enumerate() {
        for (number, trigger) in runbook.runbook.triggers().iter().enumerate() {
            if trigger.source != source {
                continue;
            }
            match trigger.format {
                PayloadFormat::Alertmanager => {
                    let (group, decoded) = match alerts.take() {
                        Some(decoded) => decoded,
                        None => {
                            let notification =
                                alertmanager::decode(body).map_err(|error| invalid(error.to_string()))?;
                            // The group as sent, for `payload`: it decoded, so it is JSON.
                            let group: Value = serde_json::from_slice(body).unwrap_or_default();
                            (group, notification.alerts.iter().map(alertmanager_alert).collect())
                        }
                    };
                    for alert in &decoded {
                        let variables = BTreeMap::from([("alert", alert.clone()), ("payload", group.clone())]);
                        subjects.push(Subject { armed, trigger: number, variables });
                    }
                    alerts = Some((group, decoded));
                }
                PayloadFormat::Json => {
                    let value = match payload.take() {
                        Some(value) => value,
                        None => serde_json::from_slice(body).map_err(not_json)?,
                    };
                    let variables = BTreeMap::from([("payload", value.clone())]);
                    subjects.push(Subject { armed, trigger: number, variables });
                    payload = Some(value);
                }
            }
        }
    }
    Ok(subjects)
}

/// Whether the triggers listening to `source` can read the body, checked without building what
/// they would read: what a delivery must pass before it is stored. [`subjects`] reads it when it
/// is applied.
pub fn readable(app: &App, source: &str, body: &[u8]) -> Result<(), ApiError> {
    let formats: Vec<&PayloadFormat> = app
        .armed
        .iter()
        .flat_map(|armed| armed.runbook.triggers())
        .filter(|trigger| trigger.source == source)
        .map(|trigger| &trigger.format)
        .collect();
    if formats.iter().any(|format| matches!(format, PayloadFormat::Alertmanager)) {
        alertmanager::decode(body).map_err(|error| invalid(error.to_string()))?;
    } else if !formats.is_empty() {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(not_json)?;
    }
    Ok(())
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", message)
}

fn not_json(error: serde_json::Error) -> ApiError {
    invalid(format!("the body is not JSON: {error}"))
}

/// An alert as a trigger's conditions read it: Alertmanager's own field names.
fn alertmanager_alert(alert: &alertmanager::Alert) -> Value {
    json!({
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at,
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    })
}

/// Applies waiting deliveries until `stopped` says so: whenever woken (a delivery was received),
/// and every `interval` in any case (deliveries received before a restart, or by another process).
/// A page under way when the stop comes is finished; what waits stays for the next start.
pub async fn run(app: Arc<App>, interval: Duration, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::ZERO;
    loop {
        if *stopped.borrow() {
            return;
        }
        let waiting = match app.runtime.store().inbox(PAGE, PAGE_BYTES).await {
            Ok(waiting) => waiting,
            Err(error) => {
                tracing::error!(%error, "the webhook inbox cannot be read; trying again");
                Vec::new()
            }
        };
        // A page cut short by its bytes leaves more: read until a page comes back empty.
        let more = !waiting.is_empty();
        let progress = match apply_page(&app, waiting).await {
            Ok(applied) => applied,
            Err(error) => {
                tracing::error!(%error, "applied deliveries could not be marked; they will be applied again");
                0
            }
        };
        app.inbox.taken(progress);
        let failed = app.inbox.depth() > 0 && progress == 0;
        backoff = if failed { (backoff * 2).clamp(Duration::from_millis(100), MOST_BACKOFF) } else { Duration::ZERO };
        if more && !failed {
            continue;
        }
        let wait = if failed { backoff } else { interval };
        tokio::select! {
            _ = app.inbox.wake.notified(), if !failed => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Applies a page of deliveries and marks those done; returns how many were.
async fn apply_page(app: &App, waiting: Vec<Inbound>) -> Result<usize, store::Error> {
    if waiting.is_empty() {
        return Ok(0);
    }
    // What each delivery did, trigger by trigger; an action's place is filled when it is stored.
    let mut outcomes: Vec<Result<Vec<Option<Done>>, ApiError>> = Vec::with_capacity(waiting.len());
    let mut groups: HashMap<(usize, String), Vec<Action>> = HashMap::new();
    let mut order: Vec<(usize, String)> = Vec::new();
    for (entry, inbound) in waiting.iter().enumerate() {
        let subjects = match subjects(app, &inbound.delivery.source, &inbound.body) {
            Ok(subjects) => subjects,
            // The triggers changed since it was received (a restart with other runbooks).
            Err(error) => {
                outcomes.push(Err(error));
                continue;
            }
        };
        let mut done = Vec::with_capacity(subjects.len());
        for (number, subject) in subjects.into_iter().enumerate() {
            match plan(app, subject) {
                Planned::Settled(settled) => done.push(Some(settled)),
                Planned::Act { subject, key } => {
                    done.push(None);
                    // Each action has an id of its own, the same every time the delivery is applied.
                    let delivery = Delivery {
                        source: inbound.delivery.source.clone(),
                        id: format!("{}/{number}", inbound.actions),
                        received_at: inbound.delivery.received_at,
                    };
                    let group = (subject.armed, key.clone());
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
    let open: HashMap<(String, String), String> = match app.runtime.store().open_keys().await {
        Ok(open) => open.into_iter().map(|(runbook, key, incident)| ((runbook, key), incident)).collect(),
        Err(error) => {
            tracing::warn!(%error, "open incidents could not be read at once; each is read in turn");
            HashMap::new()
        }
    };
    for group in order {
        let actions = groups.remove(&group).unwrap_or_default();
        let runbook = app.armed[group.0].runbook.id();
        let known = open.get(&(runbook.to_owned(), group.1.clone())).cloned();
        for (action, result) in actions.iter().zip(apply_group(app, &actions, known).await) {
            // An action that failed leaves its place empty: its delivery waits.
            if let (Ok(done), Ok(dones)) = (result, &mut outcomes[action.entry]) {
                dones[action.number] = Some(done);
            }
        }
    }
    let mut applied = Vec::with_capacity(waiting.len());
    for (inbound, outcome) in waiting.iter().zip(outcomes) {
        let record = match outcome {
            Err(error) => json!({ "error": { "code": error.code, "message": error.message } }),
            Ok(dones) if dones.iter().all(Option::is_some) => json!({ "done": dones }),
            // An action failed, or one before it on its incident did: it waits to be tried again.
            Ok(_) => continue,
        };
        applied.push((inbound.seq, record.to_string()));
    }
    app.runtime.store().applied(&applied).await?;
    Ok(applied.len())
}

/// Applies one incident's actions, in order; stops at the first that could not be stored (the
/// ones after it wait, to keep their order). `known` is the incident open with the group's key
/// when the page began, and is followed from there; while it is known to be open, the group's
/// actions go to it in one append.
async fn apply_group(app: &App, actions: &[Action], known: Option<String>) -> Vec<Result<Done, ApiError>> {
    let mut results = Vec::with_capacity(actions.len());
    let mut open: Option<Option<String>> = Some(known);
    while results.len() < actions.len() {
        let rest = &actions[results.len()..];
        let answers = match open.clone() {
            Some(Some(incident)) => apply_all(app, rest, &incident).await,
            _ => vec![apply(app, &rest[0], &mut open).await],
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

/// An action a delivery asks of a trigger once its condition holds and its key is known.
struct Action {
    /// The delivery's place in the page and the action's among the delivery's.
    entry: usize,
    number: usize,
    subject: Subject,
    key: String,
    delivery: Delivery,
}

enum Planned {
    /// The trigger does nothing with it, and says why.
    Settled(Done),
    Act {
        subject: Subject,
        key: String,
    },
}

/// Evaluates a trigger's condition and key for a subject, which reads no incident.
fn plan(app: &App, subject: Subject) -> Planned {
    let trigger = trigger(app, &subject);
    let ignored = |why: String| Planned::Settled(done(trigger, "ignored", None, Some(why)));
    let asked = asked(trigger, &subject.variables);
    if let Some(when) = &trigger.when {
        match scope::holds(when, &asked) {
            Ok(true) => {}
            Ok(false) => return ignored(format!("`{}` is false", when.source())),
            Err(why) => return ignored(why),
        }
    }
    match scope::evaluate(&trigger.key, &asked) {
        Ok(Value::String(key)) => Planned::Act { subject, key },
        Ok(other) => Planned::Act { subject, key: other.to_string() },
        Err(why) => ignored(format!("its key: {why}")),
    }
}

fn trigger<'a>(app: &'a App, subject: &Subject) -> &'a Trigger {
    &app.armed[subject.armed].runbook.triggers()[subject.trigger]
}

fn done(trigger: &Trigger, did: &'static str, incident: Option<String>, why: Option<String>) -> Done {
    Done { trigger: trigger.id.clone(), did, incident, why }
}

fn is_resolved(variables: &BTreeMap<&'static str, Value>) -> bool {
    variables.get("alert").is_some_and(|alert| alert["status"] == "resolved")
}

/// The variables a trigger's condition and key are asked with. A resolved alert belongs to the
/// incident its firing started: a start trigger is asked whether it would have started on the
/// alert as it fired.
fn asked(trigger: &Trigger, variables: &BTreeMap<&'static str, Value>) -> BTreeMap<&'static str, Value> {
    let mut asked = variables.clone();
    if is_resolved(variables)
        && matches!(trigger.action, TriggerAction::Start { .. })
        && let Some(alert) = asked.get_mut("alert")
    {
        alert["status"] = json!("firing");
    }
    asked
}

/// Carries out an action on the incident its key names. `known` is the open incident with that
/// key as the group's earlier actions left it (`None` when not known): the store is read only
/// when it is not, or when the incident known turned the action away (a person closed it
/// meanwhile, say). `Err` only when the action could not be stored (and may be tried again);
/// everything else is what the trigger did.
async fn apply(app: &App, action: &Action, known: &mut Option<Option<String>>) -> Result<Done, ApiError> {
    let runbook = &app.armed[action.subject.armed].runbook.id();
    let read = || app.runtime.store().open_incident_by_key(runbook, &action.key);
    let done = match known.take() {
        Some(open) => match act(app, action, open).await? {
            done if done.did == "ignored" => act(app, action, read().await?).await?,
            done => done,
        },
        None => act(app, action, read().await?).await?,
    };
    if matches!(done.did, "started" | "attached" | "resolved" | "noted" | "satisfied" | "duplicate") {
        *known = Some(done.incident.clone());
    }
    Ok(done)
}

async fn act(app: &App, action: &Action, open: Option<String>) -> Result<Done, ApiError> {
    let trigger = trigger(app, &action.subject);
    let armed = &app.armed[action.subject.armed];
    let variables = &action.subject.variables;
    let (key, delivery) = (&action.key, &action.delivery);
    let done = |did: &'static str, incident: Option<String>, why: Option<String>| done(trigger, did, incident, why);
    let actor = actor(trigger);
    let result = match (&trigger.action, open) {
        (TriggerAction::Start { inputs }, None) if !is_resolved(variables) => {
            let mut values = BTreeMap::new();
            for (name, expression) in inputs {
                match scope::evaluate(expression, variables) {
                    Ok(value) => values.insert(name.clone(), value),
                    Err(why) => return Ok(done("ignored", None, Some(format!("input `{name}`: {why}")))),
                };
            }
            let started =
                app.runtime.start_delivered(&armed.text, &actor, values, Some(key.clone()), Some(delivery)).await;
            match started {
                Ok((id, _)) => Ok(done("started", Some(id), None)),
                // Another process opened it first: this one joins it.
                Err(runtime::Error::Store(store::Error::DuplicateKey { open, .. })) => app
                    .runtime
                    .submit_delivered(&open, &actor, attach_note("attached", variables), Some(delivery))
                    .await
                    .map(|_| done("attached", Some(open), None)),
                Err(error) => Err(error),
            }
        }
        (TriggerAction::Start { .. }, None) => {
            Ok(done("ignored", None, Some("resolved, and no incident is open for it".into())))
        }
        (_, None) => Ok(done("ignored", None, Some(format!("no open incident has key `{key}`")))),
        (_, Some(open)) => match command(app, action, &open) {
            Ok((command, did)) => app
                .runtime
                .submit_delivered(&open, &actor, command, Some(delivery))
                .await
                .map(|_| done(did, Some(open), None)),
            Err(settled) => return Ok(settled),
        },
    };
    settle(trigger, result)
}

/// Applies actions to the open incident they all name, in one append (see
/// `Runtime::submit_all_delivered`). An action the incident turned away is applied again on its
/// own, as [`apply`] does, after the others.
async fn apply_all(app: &App, actions: &[Action], open: &str) -> Vec<Result<Done, ApiError>> {
    let mut dones: Vec<Option<Result<Done, ApiError>>> = actions.iter().map(|_| None).collect();
    let mut asked = Vec::new();
    let mut commands = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        match command(app, action, open) {
            Ok((command, did)) => {
                commands.push((actor(trigger(app, &action.subject)), command, action.delivery.clone()));
                asked.push((index, did));
            }
            Err(settled) => dones[index] = Some(Ok(settled)),
        }
    }
    let mut again = Vec::new();
    match app.runtime.submit_all_delivered(open, &commands).await {
        Ok(answers) => {
            for ((index, did), answer) in asked.into_iter().zip(answers) {
                let trigger = trigger(app, &actions[index].subject);
                match answer {
                    Err(runtime::Error::Refused(_)) => again.push(index),
                    answer => {
                        let result = answer.map(|_| done(trigger, did, Some(open.to_string()), None));
                        dones[index] = Some(settle(trigger, result));
                    }
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, incident = open, "deliveries could not be applied; they will be tried again");
            for (index, _) in asked {
                dones[index] = Some(Err(unavailable()));
            }
        }
    }
    for index in again {
        dones[index] = Some(apply(app, &actions[index], &mut None).await);
    }
    dones.into_iter().map(|done| done.expect("every action is answered")).collect()
}

/// What an action asks of the open incident `open`, and what doing it is called; or, when the
/// trigger cannot say (its note does not evaluate), what it did instead.
fn command(app: &App, action: &Action, open: &str) -> Result<(Command, &'static str), Done> {
    let trigger = trigger(app, &action.subject);
    let variables = &action.subject.variables;
    match &trigger.action {
        TriggerAction::Start { .. } => {
            let what = if is_resolved(variables) { "resolved" } else { "attached" };
            Ok((attach_note(what, variables), what))
        }
        TriggerAction::Satisfy { phase, gate } => {
            Ok((Command::Signal { phase: phase.clone(), gate: gate.clone(), note: None }, "satisfied"))
        }
        TriggerAction::Evidence { note } => match scope::evaluate(note, variables) {
            Ok(text) => {
                let text = text.as_str().map_or_else(|| text.to_string(), str::to_string);
                Ok((Command::Note { text }, "noted"))
            }
            Err(why) => Err(done(trigger, "ignored", Some(open.to_string()), Some(format!("its note: {why}")))),
        },
    }
}

/// What became of an action the runtime was asked to do.
fn settle(trigger: &Trigger, result: Result<Done, runtime::Error>) -> Result<Done, ApiError> {
    match result {
        Ok(done) => Ok(done),
        // Applied before, by a pass that stopped before marking the delivery applied.
        Err(runtime::Error::Store(store::Error::Duplicate { incident, .. })) => {
            Ok(done(trigger, "duplicate", Some(incident), None))
        }
        // A gate already passed, an incident closed meanwhile: nothing to do, and nothing lost.
        Err(runtime::Error::Refused(refused)) => Ok(done(trigger, "ignored", None, Some(refused.to_string()))),
        Err(error) => {
            tracing::error!(%error, trigger = trigger.id, "a delivery could not be applied; it will be tried again");
            Err(unavailable())
        }
    }
}

fn unavailable() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the delivery could not be stored")
}

fn actor(trigger: &Trigger) -> String {
    format!("{TRIGGER_PREFIX}{}", trigger.id)
}

/// The note that records a repeated or resolved alert on the incident it already opened.
fn attach_note(what: &str, variables: &BTreeMap<&'static str, Value>) -> Command {
    let alert = variables.get("alert").or_else(|| variables.get("payload")).cloned().unwrap_or_default();
    let name = alert["labels"]["alertname"].as_str().unwrap_or("the alert");
    let fingerprint = alert["fingerprint"].as_str().unwrap_or("?");
    let text = match what {
        "resolved" => format!("{name} resolved (fingerprint {fingerprint})"),
        _ => format!("{name} fired again (fingerprint {fingerprint})"),
    };
    Command::Note { text }
}

/// How many received deliveries wait, as the server counts them, and the bell that wakes the task.
#[derive(Debug, Default)]
pub struct Inbox {
    depth: AtomicU64,
    pub wake: Notify,
}

impl Inbox {
    /// Counts the waiting deliveries found in the store (at start).
    pub fn found(&self, depth: u64) {
        self.depth.store(depth, Ordering::Relaxed);
    }

    /// A new delivery was received: count it and wake the task.
    pub fn received(&self) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn taken(&self, applied: usize) {
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |depth| Some(depth.saturating_sub(applied as u64)));
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
}
