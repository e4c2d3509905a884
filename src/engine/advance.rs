//! How an incident moves on by itself once a command is recorded: phases become ready or are
//! skipped, gates pass, steps start, results are taken in, phases finish, updates go out.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::decide::{Error, Work};
use super::effect::{Effect, EffectKind, HttpRequest, Outcome};
use super::event::EventKind;
use super::scope;
use super::state::{PhaseStatus, StepStatus};
use crate::runbook::model::EventKind as Occasion;
use crate::runbook::model::{Action, Gate, GateKind, Phase, Request, Step, TimerAnchor};

/// A step's attempt without a `timeout` may take this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// More rounds than any runbook needs to settle; a guard against a rule that never settles.
const MAX_ROUNDS: usize = 1000;

impl Work<'_> {
    /// Moves the incident on until nothing more happens without outside help.
    pub(super) fn advance(&mut self) {
        for _ in 0..MAX_ROUNDS {
            if self.incident.closed.is_some() {
                return;
            }
            let before = (self.events.len(), self.effects.len());
            for phase in self.runbook.phases() {
                self.advance_phase(phase);
            }
            self.overdue_relaxations();
            if (self.events.len(), self.effects.len()) == before {
                return;
            }
        }
    }

    fn advance_phase(&mut self, phase: &Phase) {
        match self.incident.phase(&phase.id).status {
            PhaseStatus::Pending => {
                if !phase.needs.iter().all(|need| self.incident.phase(need).status.is_finished()) {
                    return;
                }
                if let Some(when) = &phase.when {
                    let variables = scope::variables(self.runbook, &self.incident);
                    if scope::holds(when, &variables) != Ok(true) {
                        let values = saw(when, &variables);
                        let condition = when.source().to_string();
                        self.emit(EventKind::PhaseSkipped { phase: phase.id.clone(), condition, values });
                        return;
                    }
                }
                self.emit(EventKind::PhaseReady { phase: phase.id.clone() });
            }
            PhaseStatus::Ready => {
                self.deadlines(phase, &phase.entry);
                if self.gates(phase, &phase.entry) {
                    self.emit(EventKind::PhaseStarted { phase: phase.id.clone() });
                }
            }
            PhaseStatus::Running => {
                self.deadlines(phase, &phase.entry);
                self.deadlines(phase, &phase.exit);
                self.steps(phase);
                if let Some(step) = phase
                    .steps
                    .iter()
                    .find(|step| !step.optional && self.incident.step(&phase.id, &step.id).status == StepStatus::Failed)
                {
                    let error = self.incident.step(&phase.id, &step.id).error.unwrap_or_default();
                    self.emit(EventKind::PhaseFailed {
                        phase: phase.id.clone(),
                        error: format!("step `{}` failed: {error}", step.id),
                    });
                    return;
                }
                if self.gates(phase, &phase.exit) {
                    self.emit(EventKind::PhaseDone { phase: phase.id.clone() });
                }
            }
            PhaseStatus::Done | PhaseStatus::Skipped | PhaseStatus::Failed => {}
        }
    }

    /// When the gates' durations count from.
    fn anchor(&self, phase: &Phase, from: TimerAnchor) -> DateTime<Utc> {
        match from {
            TimerAnchor::IncidentStarted => self.incident.started_at,
            TimerAnchor::Ready => self.incident.phase(&phase.id).ready_at.unwrap_or(self.incident.started_at),
        }
    }

    /// A timer's `not_later_than` is a deadline for the whole phase: missing it is recorded once.
    fn deadlines(&mut self, phase: &Phase, gates: &[Gate]) {
        for gate in gates {
            if let GateKind::Timer { not_later_than: Some(limit), from, .. } = &gate.kind
                && self.at >= self.anchor(phase, *from) + *limit
                && !self.incident.gate(&phase.id, &gate.id).deadline_missed
            {
                self.emit(EventKind::DeadlineMissed { phase: phase.id.clone(), gate: gate.id.clone() });
            }
        }
    }

    /// Passes every gate that now holds; true when all of them have passed.
    fn gates(&mut self, phase: &Phase, gates: &[Gate]) -> bool {
        let mut all = true;
        for gate in gates {
            let state = self.incident.gate(&phase.id, &gate.id);
            if state.passed_at.is_some() {
                continue;
            }
            let why = match &gate.kind {
                GateKind::Approval { count, .. } => {
                    (state.approvals.len() >= *count as usize).then(|| json!({ "approvals": state.approvals }))
                }
                GateKind::Condition(condition) => {
                    let variables = scope::variables(self.runbook, &self.incident);
                    (scope::holds(condition, &variables) == Ok(true))
                        .then(|| json!({ "condition": condition.source(), "saw": saw(condition, &variables) }))
                }
                GateKind::Timer { not_before, from, .. } => {
                    let opens = self.anchor(phase, *from) + not_before.unwrap_or_default();
                    (self.at >= opens).then(|| json!({ "opened_at": opens.to_rfc3339() }))
                }
                GateKind::StepsDone { steps } => {
                    let finished = |step: &Step| {
                        matches!(self.incident.step(&phase.id, &step.id).status, StepStatus::Done | StepStatus::Skipped)
                            || (step.optional && self.incident.step(&phase.id, &step.id).status == StepStatus::Failed)
                    };
                    let waited: Vec<&Step> = if steps.is_empty() {
                        phase.steps.iter().filter(|step| !step.optional).collect()
                    } else {
                        phase.steps.iter().filter(|step| steps.contains(&step.id)).collect()
                    };
                    waited
                        .iter()
                        .all(|step| finished(step))
                        .then(|| json!({ "steps": waited.iter().map(|s| &s.id).collect::<Vec<_>>() }))
                }
                GateKind::Signal { .. } => state.signalled.then(|| json!({ "signalled": true })),
                GateKind::Check(check) => {
                    self.poll(phase, gate, check);
                    None
                }
            };
            match why {
                Some(why) => self.emit(EventKind::GatePassed { phase: phase.id.clone(), gate: gate.id.clone(), why }),
                None => all = false,
            }
        }
        all
    }

    /// Sends a check's next poll when it is due, and fails the phase past the check's deadline.
    fn poll(&mut self, phase: &Phase, gate: &Gate, check: &crate::runbook::model::Check) {
        let state = self.incident.gate(&phase.id, &gate.id);
        let phase_state = self.incident.phase(&phase.id);
        let since =
            state.deadline_from.or(phase_state.started_at).or(phase_state.ready_at).unwrap_or(self.incident.started_at);
        if self.at >= since + check.deadline {
            let error = format!(
                "check `{}` did not pass within {}",
                gate.id,
                crate::runbook::model::format_duration(check.deadline)
            );
            self.emit(EventKind::PhaseFailed { phase: phase.id.clone(), error });
            return;
        }
        let due = state.last_check.as_ref().is_none_or(|last| self.at >= last.at + check.interval);
        if state.polling || !due {
            return;
        }
        let request = match self.request(&check.request, DEFAULT_TIMEOUT) {
            Ok(request) => request,
            Err(error) => {
                self.emit(EventKind::PhaseFailed {
                    phase: phase.id.clone(),
                    error: format!("check `{}`: {error}", gate.id),
                });
                return;
            }
        };
        let poll = state.polls + 1;
        self.emit(EventKind::CheckPolled { phase: phase.id.clone(), gate: gate.id.clone(), poll });
        let id = format!("{}/{}/{}/poll-{poll}", self.incident.id, phase.id, gate.id);
        self.effects.push(Effect {
            id,
            kind: EffectKind::Check { phase: phase.id.clone(), gate: gate.id.clone(), poll, request },
        });
    }

    /// Steps run in the order written: each waits for the ones before it to finish. A person may
    /// mark a manual step done at any time while its phase runs.
    fn steps(&mut self, phase: &Phase) {
        for step in &phase.steps {
            let state = self.incident.step(&phase.id, &step.id);
            match state.status {
                StepStatus::Done | StepStatus::Skipped => continue,
                StepStatus::Failed if step.optional => continue,
                StepStatus::Failed | StepStatus::Running => return,
                StepStatus::Retrying => {
                    if state.retry_at.is_some_and(|at| self.at >= at) {
                        self.start_attempt(phase, step, state.attempt + 1);
                    }
                    return;
                }
                StepStatus::Pending => {}
            }
            if let Some(when) = &step.when {
                let variables = scope::variables(self.runbook, &self.incident);
                if scope::holds(when, &variables) != Ok(true) {
                    let condition = when.source().to_string();
                    self.emit(EventKind::StepSkipped { phase: phase.id.clone(), step: step.id.clone(), condition });
                    continue;
                }
            }
            match &step.action {
                Action::Manual { .. } => return,
                // A campaign to test first waits for a person to launch it (`campaign_action`).
                Action::Campaign { test_first: true, .. } if state.launched.is_none() => return,
                Action::Relax { control, reason, expires_in, compensating } => {
                    let approved_by = phase
                        .gates()
                        .filter(|gate| matches!(gate.kind, GateKind::Approval { .. }))
                        .flat_map(|gate| self.incident.gate(&phase.id, &gate.id).approvals)
                        .collect();
                    let expires_at = self.at + *expires_in;
                    self.emit(EventKind::ControlRelaxed {
                        control: control.clone(),
                        phase: phase.id.clone(),
                        step: step.id.clone(),
                        reason: reason.clone(),
                        expires_at,
                        approved_by,
                        compensating: compensating.clone(),
                    });
                    self.done(phase, step, Default::default());
                }
                Action::Reinstate { control, strengthened } => {
                    if self.incident.relaxations.get(control).is_some_and(|r| r.is_open()) {
                        self.emit(EventKind::ControlReinstated {
                            control: control.clone(),
                            phase: phase.id.clone(),
                            step: step.id.clone(),
                            strengthened: strengthened.clone(),
                        });
                    }
                    self.done(phase, step, Default::default());
                }
                Action::Http { .. } | Action::Command { .. } | Action::Notify { .. } | Action::Campaign { .. } => {
                    self.start_attempt(phase, step, 1);
                    return;
                }
            }
        }
    }

    pub(super) fn done(&mut self, phase: &Phase, step: &Step, outputs: std::collections::BTreeMap<String, Value>) {
        self.emit(EventKind::StepDone { phase: phase.id.clone(), step: step.id.clone(), outputs });
    }

    /// Records the attempt, then queues its effect; both are stored together.
    fn start_attempt(&mut self, phase: &Phase, step: &Step, attempt: u32) {
        let idempotency_key = format!("{}/{}/{}", self.incident.id, phase.id, step.id);
        let id = format!("{idempotency_key}/attempt-{attempt}");
        let timeout = step.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let kind = match &step.action {
            Action::Http { request, .. } => self.request(request, timeout).map(|request| EffectKind::Http {
                phase: phase.id.clone(),
                step: step.id.clone(),
                attempt,
                idempotency_key: idempotency_key.clone(),
                request,
            }),
            Action::Command { argv, env } => {
                let variables = scope::variables(self.runbook, &self.incident);
                argv.iter()
                    .map(|argument| scope::interpolate(argument, self.names(), &variables))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|argv| EffectKind::Command {
                        phase: phase.id.clone(),
                        step: step.id.clone(),
                        attempt,
                        argv,
                        env: env.clone(),
                        timeout,
                    })
            }
            Action::Notify { audience, template, channels, message } => {
                let audience_model =
                    self.runbook.audiences().iter().find(|a| &a.id == audience).expect("validated audience");
                Ok(EffectKind::Notify {
                    audience: audience.clone(),
                    template: template.clone().unwrap_or_else(|| audience_model.template.clone()),
                    channels: channels.clone().unwrap_or_else(|| audience_model.channels.clone()),
                    occasion: "step".to_string(),
                    message: message.clone(),
                    step: Some((phase.id.clone(), step.id.clone())),
                })
            }
            Action::Campaign { recipients_input, .. } => match self.incident.inputs.get(recipients_input) {
                Some(serde_json::Value::String(list)) if !list.trim().is_empty() => Ok(EffectKind::Campaign {
                    phase: phase.id.clone(),
                    step: step.id.clone(),
                    attempt,
                    campaign: idempotency_key.clone(),
                    list: list.clone(),
                }),
                _ => Err(format!("input `{recipients_input}` names no recipient list; start the incident with it")),
            },
            _ => unreachable!("only automated steps have attempts"),
        };
        self.emit(EventKind::StepStarted { phase: phase.id.clone(), step: step.id.clone(), attempt, idempotency_key });
        match kind {
            Ok(kind) => self.effects.push(Effect { id, kind }),
            // A request that cannot be built (an output it reads was never recorded) will not
            // build on a retry either.
            Err(error) => self.emit(EventKind::StepFailed {
                phase: phase.id.clone(),
                step: step.id.clone(),
                attempt,
                error,
                retry_at: None,
            }),
        }
    }

    /// A runbook request with its `${ }` parts evaluated.
    fn request(&self, request: &Request, timeout: Duration) -> Result<HttpRequest, String> {
        let variables = scope::variables(self.runbook, &self.incident);
        let url = scope::interpolate(&request.url, self.names(), &variables)?;
        let mut headers = Vec::new();
        for (name, value) in &request.headers {
            let value = match value {
                crate::runbook::model::Text::Literal(text) => {
                    crate::runbook::model::Text::Literal(scope::interpolate(text, self.names(), &variables)?)
                }
                secret => secret.clone(),
            };
            headers.push((name.clone(), value));
        }
        let body =
            request.body.as_ref().map(|body| scope::interpolate_json(body, self.names(), &variables)).transpose()?;
        Ok(HttpRequest { method: request.method.clone(), url, headers, body, timeout })
    }

    fn overdue_relaxations(&mut self) {
        let overdue: Vec<String> = self
            .incident
            .open_relaxations()
            .filter(|relaxation| !relaxation.overdue && self.at >= relaxation.expires_at)
            .map(|relaxation| relaxation.control.clone())
            .collect();
        for control in overdue {
            self.emit(EventKind::RelaxationOverdue { control });
        }
    }

    /// Takes in the outcome of an effect.
    pub(super) fn record(&mut self, effect: &Effect, outcome: &Outcome) -> Result<(), Error> {
        let stale = || Error::StaleEffect(effect.id.clone());
        match &effect.kind {
            EffectKind::Http { phase, step, attempt, .. } | EffectKind::Command { phase, step, attempt, .. } => {
                let state = self.incident.step(phase, step);
                if state.status != StepStatus::Running || state.attempt != *attempt {
                    return Err(stale());
                }
                let phase_model = self.runbook.phase(phase).ok_or_else(stale)?;
                let step_model = phase_model.step(step).ok_or_else(stale)?;
                match step_result(step_model, outcome, scope::inputs(self.runbook, &self.incident)) {
                    Ok(outputs) => self.done(phase_model, step_model, outputs),
                    Err(error) => self.fail_attempt(phase_model, step_model, *attempt, error),
                }
            }
            EffectKind::Campaign { phase, step, attempt, campaign, .. } => {
                let state = self.incident.step(phase, step);
                if state.status != StepStatus::Running || state.attempt != *attempt {
                    return Err(stale());
                }
                self.campaign_finished(phase, step, campaign, *attempt, outcome)?;
            }
            EffectKind::Check { phase, gate, poll, .. } => {
                let state = self.incident.gate(phase, gate);
                if !state.polling || state.polls != *poll {
                    return Err(stale());
                }
                let Some(GateKind::Check(check)) =
                    self.runbook.phase(phase).and_then(|p| p.gates().find(|g| &g.id == gate)).map(|g| &g.kind)
                else {
                    return Err(stale());
                };
                let (ok, status, error) = match outcome {
                    Outcome::Http { status, .. } => {
                        let response = response_variables(outcome, scope::inputs(self.runbook, &self.incident));
                        match scope::holds(&check.expect, &response) {
                            Ok(ok) => (ok, Some(*status), None),
                            Err(error) => (false, Some(*status), Some(error)),
                        }
                    }
                    Outcome::Failed { error } => (false, None, Some(error.clone())),
                    other => (false, None, Some(format!("a check cannot take {other:?}"))),
                };
                self.emit(EventKind::CheckAnswered { phase: phase.clone(), gate: gate.clone(), ok, status, error });
                if ok {
                    let why = json!({ "check": check.expect.source(), "status": status, "poll": poll });
                    self.emit(EventKind::GatePassed { phase: phase.clone(), gate: gate.clone(), why });
                }
            }
            EffectKind::Notify { audience, step, occasion, .. } => {
                // A notify step's own update: the step must still wait for it.
                let step_models = match step {
                    Some((phase, step)) => {
                        if self.incident.step(phase, step).status != StepStatus::Running {
                            return Err(stale());
                        }
                        let phase_model = self.runbook.phase(phase).ok_or_else(stale)?;
                        Some((phase_model, phase_model.step(step).ok_or_else(stale)?))
                    }
                    None => None,
                };
                match outcome {
                    Outcome::Sent { channels, text } => {
                        self.emit(EventKind::StatusUpdateSent {
                            audience: audience.clone(),
                            channels: channels.clone(),
                            occasion: Some(occasion.clone()),
                            text: text.clone(),
                        });
                        if let Some((phase, step)) = step_models {
                            self.done(phase, step, Default::default());
                        }
                    }
                    Outcome::Failed { error } => {
                        self.emit(EventKind::StatusUpdateFailed { audience: audience.clone(), error: error.clone() });
                        if let Some((phase, step)) = step_models {
                            let attempt = self.incident.step(&phase.id, &step.id).attempt;
                            self.fail_attempt(phase, step, attempt, error.clone());
                        }
                    }
                    other => return Err(Error::StaleEffect(format!("{}: unexpected outcome {other:?}", effect.id))),
                }
            }
        }
        Ok(())
    }

    /// Records a failed attempt, and when the next one starts, if the step may retry.
    pub(super) fn fail_attempt(&mut self, phase: &Phase, step: &Step, attempt: u32, error: String) {
        let retry_at = step.retry.as_ref().filter(|retry| attempt < retry.attempts).map(|retry| {
            let doubled = retry.backoff.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
            let wait = doubled.min(retry.max_backoff);
            self.at + jittered(wait, &format!("{}/{}/{}/{attempt}", self.incident.id, phase.id, step.id))
        });
        self.emit(EventKind::StepFailed { phase: phase.id.clone(), step: step.id.clone(), attempt, error, retry_at });
    }

    /// Queues a status update for an audience, once per audience per decision.
    pub(super) fn request_update(
        &mut self,
        audience: &str,
        occasion: &str,
        message: Option<String>,
        step: Option<(String, String)>,
    ) {
        let Some(model) = self.runbook.audiences().iter().find(|a| a.id == audience) else { return };
        self.emit(EventKind::StatusUpdateRequested { audience: audience.to_string(), occasion: occasion.to_string() });
        let id = format!("{}/update/{}/{}", self.incident.id, audience, self.incident.version);
        let kind = EffectKind::Notify {
            audience: audience.to_string(),
            template: model.template.clone(),
            channels: model.channels.clone(),
            occasion: occasion.to_string(),
            message,
            step,
        };
        self.effects.push(Effect { id, kind });
    }

    /// Status updates for what this decision recorded, and regular ones that are due.
    pub(super) fn status_updates(&mut self) {
        let mut due: Vec<(String, String)> = Vec::new();
        for event in &self.events {
            let Some((occasion, phase)) = occasion(&event.kind) else { continue };
            for rule in self.runbook.status_updates() {
                let phase_matches = match (&rule.phases, phase) {
                    (Some(phases), Some(phase)) => phases.iter().any(|p| p == phase),
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                if rule.on.contains(&occasion) && phase_matches {
                    for audience in &rule.audiences {
                        if !due.iter().any(|(a, _)| a == audience) {
                            due.push((audience.clone(), event.kind.name().to_string()));
                        }
                    }
                }
            }
        }
        if self.incident.closed.is_none() {
            for rule in self.runbook.status_updates() {
                let Some(every) = rule.every else { continue };
                for audience in &rule.audiences {
                    let last = self.incident.last_update.get(audience).copied().unwrap_or(self.incident.started_at);
                    if self.at >= last + every && !due.iter().any(|(a, _)| a == audience) {
                        due.push((audience.clone(), "scheduled".to_string()));
                    }
                }
            }
        }
        for (audience, occasion) in due {
            self.request_update(&audience, &occasion, None, None);
        }
    }
}

/// The runbook's name for an event, as status update rules say it, and the phase it concerns;
/// `None` for an event that no rule can name, or that is not worth telling by itself.
fn occasion(kind: &EventKind) -> Option<(Occasion, Option<&str>)> {
    Some(match kind {
        EventKind::IncidentStarted { .. } => (Occasion::IncidentStarted, None),
        EventKind::PhaseReady { phase } => (Occasion::GateWaiting, Some(phase)),
        EventKind::PhaseSkipped { phase, .. } => (Occasion::PhaseSkipped, Some(phase)),
        EventKind::PhaseStarted { phase } => (Occasion::PhaseStarted, Some(phase)),
        EventKind::PhaseDone { phase } => (Occasion::PhaseDone, Some(phase)),
        EventKind::PhaseFailed { phase, .. } => (Occasion::PhaseFailed, Some(phase)),
        EventKind::ApprovalGiven { phase, .. } => (Occasion::ApprovalGiven, Some(phase)),
        EventKind::GatePassed { phase, .. } => (Occasion::GatePassed, Some(phase)),
        EventKind::DeadlineMissed { phase, .. } => (Occasion::DeadlineMissed, Some(phase)),
        EventKind::StepDone { phase, .. } => (Occasion::StepDone, Some(phase)),
        // A failed attempt that goes again later is on the log and the board; audiences hear of
        // the step once it fails for good (its retries used up, or none), when a person must act.
        EventKind::StepFailed { retry_at: Some(_), .. } => return None,
        EventKind::StepFailed { phase, retry_at: None, .. } => (Occasion::StepFailed, Some(phase)),
        EventKind::ControlRelaxed { phase, .. } => (Occasion::ControlRelaxed, Some(phase)),
        EventKind::ControlReinstated { phase, .. } => (Occasion::ControlReinstated, Some(phase)),
        EventKind::RelaxationOverdue { .. } => (Occasion::RelaxationOverdue, None),
        EventKind::NoteAdded => (Occasion::NoteAdded, None),
        EventKind::IncidentClosed { .. } => (Occasion::IncidentClosed, None),
        _ => return None,
    })
}

/// What a condition saw: the inputs, and the phases and steps it reads.
fn saw(condition: &crate::expr::Condition, variables: &std::collections::BTreeMap<&'static str, Value>) -> Value {
    let references = condition.references();
    let pick = |name: &str, keys: &BTreeSet<String>| -> Value {
        let all = variables.get(name).and_then(Value::as_object);
        Value::Object(keys.iter().filter_map(|key| Some((key.clone(), all?.get(key)?.clone()))).collect())
    };
    json!({
        "inputs": variables.get("inputs"),
        "phases": pick("phases", &references.phases),
        "steps": pick("steps", &references.steps),
    })
}

/// `response` and `inputs`, for a step's or check's `expect` and outputs.
fn response_variables(outcome: &Outcome, inputs: Value) -> std::collections::BTreeMap<&'static str, Value> {
    let response = match outcome {
        Outcome::Http { status, headers, body } => json!({ "status": status, "headers": headers, "body": body }),
        _ => Value::Null,
    };
    std::collections::BTreeMap::from([("response", response), ("inputs", inputs)])
}

/// Whether an automated step's outcome is a success, and its outputs.
fn step_result(
    step: &Step,
    outcome: &Outcome,
    inputs: Value,
) -> Result<std::collections::BTreeMap<String, Value>, String> {
    match (&step.action, outcome) {
        (Action::Http { expect, outputs, .. }, Outcome::Http { status, .. }) => {
            let variables = response_variables(outcome, inputs);
            let ok = match expect {
                Some(expect) => scope::holds(expect, &variables)?,
                None => (200..300).contains(status),
            };
            if !ok {
                let wanted = expect.as_ref().map_or("a 2xx status".to_string(), |e| format!("`{}`", e.source()));
                return Err(format!("the answer (status {status}) is not what the step expects: {wanted}"));
            }
            let mut values = std::collections::BTreeMap::new();
            values.insert("status".to_string(), json!(status));
            for (name, expression) in outputs {
                values.insert(name.clone(), scope::evaluate(expression, &variables)?);
            }
            Ok(values)
        }
        (Action::Command { .. }, Outcome::Command { exit_code: 0, stdout, .. }) => {
            Ok(std::collections::BTreeMap::from([
                ("exit_code".to_string(), json!(0)),
                ("stdout".to_string(), json!(stdout)),
            ]))
        }
        (Action::Command { .. }, Outcome::Command { exit_code, stderr, .. }) => {
            Err(format!("exited with status {exit_code}: {}", stderr.lines().last().unwrap_or_default()))
        }
        (_, Outcome::Failed { error }) => Err(error.clone()),
        (_, other) => Err(format!("unexpected outcome {other:?}")),
    }
}

/// Spreads retries between half and all of `wait`, the same way every time for the same attempt,
/// so that many incidents retrying at once do not all hit a server in the same second.
fn jittered(wait: Duration, seed: &str) -> Duration {
    let hash = super::decide::sha256_hex(seed);
    let fraction = u64::from_str_radix(&hash[..8], 16).unwrap_or(0) as f64 / f64::from(u32::MAX);
    let seconds = wait.as_secs_f64() * (0.5 + 0.5 * fraction);
    Duration::from_secs_f64(seconds.max(1.0))
}
