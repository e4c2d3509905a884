//! The state machine: a command and the current state in, new events and effects out.
//!
//! `decide` checks the command (who may do it, whether the incident is in a state to accept it),
//! records what the command says as events, then lets the incident advance as far as it can:
//! phases become ready, gates pass, steps start, phases finish. Everything it decides is returned
//! as data; the caller stores the events and the effects together, then carries out the effects.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::command::{Command, Request};
use super::directory::{Directory, is_trigger};
use super::effect::Effect;
use super::event::{Event, EventKind};
use super::scope;
use super::state::{Incident, PhaseStatus, StepStatus};
use crate::expr::Names;
use crate::runbook::Runbook;
use crate::runbook::model::{Action, GateKind, Input, InputType};

/// What a command decided: events to append, then effects to carry out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

/// Why a command was refused. Nothing is recorded for a refused command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("incident `{0}` already exists")]
    AlreadyStarted(String),
    #[error("no incident: the first command must start one")]
    NotStarted,
    #[error("incident `{0}` is closed")]
    Closed(String),
    #[error("`{0}` is not a person phasegate knows; add them to the configuration's people")]
    UnknownActor(String),
    #[error("`{actor}` does not hold {roles}, which {what} needs")]
    MissingRole { actor: String, roles: String, what: String },
    #[error("input `{0}` is not one the runbook declares")]
    UnknownInput(String),
    #[error("input `{name}` is required and has no default")]
    MissingInput { name: String },
    #[error("input `{name}` is {value}, which {problem}")]
    BadInput { name: String, value: String, problem: String },
    #[error("phase `{0}` does not exist")]
    UnknownPhase(String),
    #[error("phase `{phase}` has no {kind} gate `{gate}`; {declared}")]
    UnknownGate { phase: String, gate: String, kind: &'static str, declared: String },
    #[error("phase `{phase}` has no step `{step}`")]
    UnknownStep { phase: String, step: String },
    #[error("phase `{phase}` is {status}, so {what}")]
    WrongPhaseState { phase: String, status: &'static str, what: String },
    #[error("phase `{phase}` has no approval waiting")]
    NothingToApprove { phase: String },
    #[error("phase `{phase}` has several approvals waiting ({gates}); name the one to approve with `--gate GATE`")]
    WhichApproval { phase: String, gates: String },
    #[error("`{actor}` already approved gate `{gate}` of phase `{phase}`; each approver counts once")]
    AlreadyApproved { actor: String, phase: String, gate: String },
    #[error(
        "gate `{gate}` of phase `{phase}` is four-eyes: `{actor}` started the incident and cannot approve it; {others}"
    )]
    FourEyes { actor: String, phase: String, gate: String, others: String },
    #[error("gate `{gate}` of phase `{phase}` has already passed")]
    AlreadyPassed { phase: String, gate: String },
    #[error(
        "step `{phase}/{step}` is {kind}, not a step a person marks done (only once it has failed for good, by the runbook's `recover` roles, with evidence)"
    )]
    NotManual { phase: String, step: String, kind: &'static str },
    #[error("step `{phase}/{step}` is already {status}")]
    StepFinished { phase: String, step: String, status: &'static str },
    #[error("step `{phase}/{step}` will be skipped when reached: its condition `{condition}` is false")]
    WillBeSkipped { phase: String, step: String, condition: String },
    #[error("step `{phase}/{step}` declares no output `{output}`; {declared}")]
    UnknownOutput { phase: String, step: String, output: String, declared: String },
    #[error("audience `{audience}` does not exist; {declared}")]
    UnknownAudience { audience: String, declared: String },
    #[error("the incident cannot close while controls are relaxed: {0}")]
    RelaxationsOpen(String),
    #[error("{what} is a right the runbook gives nobody; {fix}")]
    NobodyMay { what: String, fix: String },
    #[error("step `{phase}/{step}` is {status}, not failed or waiting for a retry, so it cannot be {what}")]
    NotFailed { phase: String, step: String, status: String, what: &'static str },
    #[error("gate `{phase}/{gate}` is {kind} gate: {why}")]
    NotCheckGate { phase: String, gate: String, kind: &'static str, why: String },
    #[error("{what} needs {needs} on record; give it with `{flag}`")]
    Unexplained { what: String, needs: &'static str, flag: &'static str },
    #[error("the incident cannot close before every phase is done or skipped: {phases}; {otherwise}")]
    PhasesNotDone { phases: String, otherwise: String },
    #[error("every phase is done or skipped, so the incident is not abandoned: close it with `phasegate close`")]
    NothingToAbandon,
    #[error("campaign `{phase}/{step}` {problem}")]
    Campaign { phase: String, step: String, problem: String },
    #[error("effect `{0}` does not belong to this incident's current work")]
    StaleEffect(String),
}

/// Decides what a command does to an incident (`None` before it starts).
pub fn decide(
    runbook: &Runbook,
    directory: &Directory,
    incident: Option<&Incident>,
    request: &Request,
) -> Result<Decision, Error> {
    let mut work = match (incident, &request.command) {
        (None, Command::Start { .. }) => None,
        (None, _) => return Err(Error::NotStarted),
        (Some(incident), Command::Start { .. }) => return Err(Error::AlreadyStarted(incident.id.clone())),
        (Some(incident), _) if incident.closed.is_some() && !matches!(request.command, Command::Record { .. }) => {
            return Err(Error::Closed(incident.id.clone()));
        }
        (Some(incident), _) => Some(Work::new(runbook, directory, incident.clone(), request)),
    };
    match &request.command {
        Command::Start { incident, runbook_text, inputs, key } => {
            // Four-eyes compares approvers with whoever started: that must be someone real.
            if !directory.knows(&request.actor) && !is_trigger(&request.actor) {
                return Err(Error::UnknownActor(request.actor.clone()));
            }
            let inputs = check_inputs(runbook, inputs)?;
            let first = Event::new(
                request.at,
                &request.actor,
                EventKind::IncidentStarted {
                    incident: incident.clone(),
                    runbook_id: runbook.id().to_owned(),
                    runbook_version: runbook.version().map(str::to_owned),
                    runbook_sha256: sha256_hex(runbook_text),
                    runbook_text: runbook_text.clone(),
                    inputs,
                    key: key.clone(),
                },
            );
            let state = Incident::start(&first).expect("the first event starts an incident");
            let mut started = Work::new(runbook, directory, state, request);
            started.events.push(first);
            work = Some(started);
        }
        command => work.as_mut().expect("an incident exists for every other command").command(command)?,
    }
    let mut work = work.expect("set above");
    work.advance();
    work.status_updates();
    Ok(Decision { events: work.events, effects: work.effects })
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Fills in defaults and checks each input's type and allowed values.
fn check_inputs(
    runbook: &Runbook,
    given: &BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, serde_json::Value>, Error> {
    if let Some(unknown) = given.keys().find(|name| runbook.input(name).is_none()) {
        return Err(Error::UnknownInput(unknown.clone()));
    }
    let mut inputs = BTreeMap::new();
    for input in runbook.inputs() {
        inputs.insert(input.name.clone(), check_input(input, given.get(&input.name))?);
    }
    Ok(inputs)
}

/// The value input `input` takes when it is `given` (or not): given, as its declared type, or
/// its default, and one of its allowed values. The dashboard's start form checks each field with
/// it, to show every problem beside its field.
pub fn check_input(input: &Input, given: Option<&serde_json::Value>) -> Result<serde_json::Value, Error> {
    let value = match (given, &input.default) {
        (Some(value), _) => coerce(input.kind, value).ok_or_else(|| Error::BadInput {
            name: input.name.clone(),
            value: value.to_string(),
            problem: format!("is not a {}", type_name(input.kind)),
        })?,
        (None, Some(default)) => default.clone(),
        (None, None) => return Err(Error::MissingInput { name: input.name.clone() }),
    };
    if let Some(allowed) = &input.allowed
        && !allowed.contains(&value)
    {
        let listed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        return Err(Error::BadInput {
            name: input.name.clone(),
            value: value.to_string(),
            problem: format!("is not one of {}", listed.join(", ")),
        });
    }
    Ok(value)
}

/// Inputs typed on a command line arrive as strings; take them for the declared type.
fn coerce(kind: InputType, value: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match (kind, value) {
        (InputType::String, Value::String(_)) => Some(value.clone()),
        (InputType::String, Value::Number(_) | Value::Bool(_)) => Some(Value::String(value.to_string())),
        (InputType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Some(value.clone()),
        (InputType::Integer, Value::String(text)) => text.trim().parse::<i64>().ok().map(Value::from),
        (InputType::Number, Value::Number(_)) => Some(value.clone()),
        (InputType::Number, Value::String(text)) => {
            text.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number)
        }
        (InputType::Boolean, Value::Bool(_)) => Some(value.clone()),
        (InputType::Boolean, Value::String(text)) => match text.trim() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

fn type_name(kind: InputType) -> &'static str {
    match kind {
        InputType::String => "string",
        InputType::Integer => "whole number",
        InputType::Number => "number",
        InputType::Boolean => "boolean (`true` or `false`)",
    }
}

/// A decision in progress: the incident as the events so far leave it.
pub(super) struct Work<'a> {
    pub runbook: &'a Runbook,
    pub directory: &'a Directory,
    /// The names the runbook's conditions may use, made when a step's `${ }` parts are first
    /// evaluated: most decisions (a note, an approval) evaluate none.
    names: std::cell::OnceCell<Names>,
    pub incident: Incident,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

impl<'a> Work<'a> {
    fn new(runbook: &'a Runbook, directory: &'a Directory, incident: Incident, request: &Request) -> Work<'a> {
        Work {
            runbook,
            directory,
            names: std::cell::OnceCell::new(),
            incident,
            at: request.at,
            actor: request.actor.clone(),
            events: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// The names the runbook's conditions may use.
    pub fn names(&self) -> &Names {
        self.names.get_or_init(|| super::scope::names(self.runbook))
    }

    /// Records an event: applies it to the working state and keeps it for the caller.
    pub fn emit(&mut self, kind: EventKind) {
        self.emit_because(kind, None);
    }

    pub fn emit_because(&mut self, kind: EventKind, reason: Option<String>) {
        let event = Event::new(self.at, &self.actor, kind).because(reason);
        self.incident.apply(&event);
        self.events.push(event);
    }

    /// A person the configuration knows, or a trigger.
    pub(super) fn known_actor(&self) -> Result<(), Error> {
        if self.directory.knows(&self.actor) || is_trigger(&self.actor) {
            Ok(())
        } else {
            Err(Error::UnknownActor(self.actor.clone()))
        }
    }

    pub(super) fn person(&self) -> Result<(), Error> {
        if self.directory.knows(&self.actor) { Ok(()) } else { Err(Error::UnknownActor(self.actor.clone())) }
    }

    fn command(&mut self, command: &Command) -> Result<(), Error> {
        match command {
            Command::Start { .. } => unreachable!("handled by decide"),
            Command::Approve { phase, gate, note } => self.approve(phase, gate.as_deref(), note),
            Command::CompleteStep { phase, step, evidence, outputs } => {
                self.complete_step(phase, step, evidence, outputs)
            }
            Command::Signal { phase, gate, note } => self.signal(phase, gate, note),
            Command::Note { text } => {
                self.known_actor()?;
                self.emit_because(EventKind::NoteAdded, Some(text.clone()));
                Ok(())
            }
            Command::StatusUpdate { audience } => self.update_by_hand(audience),
            Command::Close { note } => self.close(note),
            Command::Abandon { reason } => self.abandon(reason),
            Command::Retry { phase, step, reason } => self.retry(phase, step, reason),
            Command::Skip { phase, step, reason } => self.skip(phase, step, reason),
            Command::RetryGate { phase, gate, reason } => self.retry_gate(phase, gate, reason),
            Command::PassGate { phase, gate, evidence } => self.pass_gate(phase, gate, evidence),
            Command::Campaign { phase, step, action, reason } => self.campaign_action(phase, step, *action, reason),
            Command::CampaignReport { phase, step, report } => self.campaign_report(phase, step, report),
            Command::CampaignTest { phase, step, test } => self.campaign_test(phase, step, test),
            Command::Tick => Ok(()),
            Command::Record { effect, outcome } => self.record(effect, outcome),
        }
    }

    pub(super) fn phase_model(&self, phase: &str) -> Result<&'a crate::runbook::model::Phase, Error> {
        self.runbook.phase(phase).ok_or_else(|| Error::UnknownPhase(phase.to_string()))
    }

    fn approve(&mut self, phase_id: &str, gate: Option<&str>, note: &Option<String>) -> Result<(), Error> {
        self.person()?;
        let phase = self.phase_model(phase_id)?;
        if let Some(id) = gate
            && !phase.gates().any(|g| g.id == id && matches!(g.kind, GateKind::Approval { .. }))
        {
            return Err(unknown_gate(phase, id, APPROVAL));
        }
        let status = self.incident.phase(phase_id).status;
        // Entry gates wait while the phase is ready, exit gates while it runs.
        let waiting: Vec<&crate::runbook::model::Gate> = match status {
            PhaseStatus::Ready => phase.entry.iter().collect(),
            PhaseStatus::Running => phase.exit.iter().collect(),
            other => {
                return Err(Error::WrongPhaseState {
                    phase: phase_id.to_string(),
                    status: other.as_str(),
                    what: format!("none of its gates is waiting for approval{}", self.waits_for(phase)),
                });
            }
        };
        let approvals: Vec<&crate::runbook::model::Gate> = waiting
            .into_iter()
            .filter(|g| matches!(g.kind, GateKind::Approval { .. }))
            .filter(|g| self.incident.gate(phase_id, &g.id).passed_at.is_none())
            .collect();
        let target = match gate {
            Some(id) => {
                let Some(found) = phase.gates().find(|g| g.id == id && matches!(g.kind, GateKind::Approval { .. }))
                else {
                    return Err(unknown_gate(phase, id, APPROVAL));
                };
                if self.incident.gate(phase_id, id).passed_at.is_some() {
                    return Err(Error::AlreadyPassed { phase: phase_id.to_string(), gate: id.to_string() });
                }
                if !approvals.iter().any(|g| g.id == id) {
                    return Err(Error::WrongPhaseState {
                        phase: phase_id.to_string(),
                        status: status.as_str(),
                        what: format!("gate `{id}` is not waiting yet"),
                    });
                }
                found
            }
            None => match approvals.as_slice() {
                [] => return Err(Error::NothingToApprove { phase: phase_id.to_string() }),
                [only] => *only,
                several => {
                    let names: Vec<String> = several.iter().map(|g| format!("`{}`", g.id)).collect();
                    return Err(Error::WhichApproval { phase: phase_id.to_string(), gates: names.join(", ") });
                }
            },
        };
        let GateKind::Approval { roles, four_eyes, .. } = &target.kind else { unreachable!("filtered to approvals") };
        let Some(role) = self.directory.role_among(&self.actor, roles) else {
            return Err(Error::MissingRole {
                actor: self.actor.clone(),
                roles: held_roles_text(self.directory, roles),
                what: format!("approving gate `{}` of phase `{phase_id}`", target.id),
            });
        };
        let state = self.incident.gate(phase_id, &target.id);
        if state.approvals.iter().any(|a| a.person == self.actor) {
            return Err(Error::AlreadyApproved {
                actor: self.actor.clone(),
                phase: phase_id.to_string(),
                gate: target.id.clone(),
            });
        }
        if *four_eyes && self.incident.started_by == self.actor {
            let others: Vec<&str> = self
                .directory
                .holders(roles)
                .filter(|person| *person != self.actor && !state.approvals.iter().any(|a| a.person == *person))
                .collect();
            let others = if others.is_empty() {
                format!("nobody else configured holds {}; give it to someone under `people:`", roles_text(roles))
            } else {
                format!("another holder of {} must: {}", roles_text(roles), others.join(", "))
            };
            return Err(Error::FourEyes {
                actor: self.actor.clone(),
                phase: phase_id.to_string(),
                gate: target.id.clone(),
                others,
            });
        }
        let event =
            EventKind::ApprovalGiven { phase: phase_id.to_string(), gate: target.id.clone(), role: role.clone() };
        self.emit_because(event, note.clone());
        Ok(())
    }

    /// `: it waits for `triage` (running)`: the phases a pending phase needs that are not
    /// finished, for refusals of what it cannot do yet; empty when it is not pending.
    fn waits_for(&self, phase: &crate::runbook::model::Phase) -> String {
        if self.incident.phase(&phase.id).status != PhaseStatus::Pending {
            return String::new();
        }
        let unfinished: Vec<String> = phase
            .needs
            .iter()
            .map(|needed| (needed, self.incident.phase(needed).status))
            .filter(|(_, status)| !matches!(status, PhaseStatus::Done | PhaseStatus::Skipped))
            .map(|(needed, status)| format!("`{needed}` ({})", status.as_str()))
            .collect();
        if unfinished.is_empty() { String::new() } else { format!(": it waits for {}", unfinished.join(", ")) }
    }

    fn complete_step(
        &mut self,
        phase_id: &str,
        step_id: &str,
        evidence: &Option<String>,
        outputs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), Error> {
        self.person()?;
        let phase = self.phase_model(phase_id)?;
        let step = phase
            .step(step_id)
            .ok_or_else(|| Error::UnknownStep { phase: phase_id.to_string(), step: step_id.to_string() })?;
        let (assignee, declared) = match &step.action {
            Action::Manual { assignee, outputs, .. } => (assignee.clone(), outputs.clone()),
            _ if matches!(self.incident.step(phase_id, step_id).status, StepStatus::Failed | StepStatus::Retrying) => {
                return self.override_step(phase_id, step_id, evidence, outputs);
            }
            other => {
                return Err(Error::NotManual {
                    phase: phase_id.to_string(),
                    step: step_id.to_string(),
                    kind: other.kind(),
                });
            }
        };
        let status = self.incident.phase(phase_id).status;
        if status != PhaseStatus::Running {
            return Err(Error::WrongPhaseState {
                phase: phase_id.to_string(),
                status: status.as_str(),
                what: format!("its steps cannot be done yet{}", self.waits_for(phase)),
            });
        }
        let current = self.incident.step(phase_id, step_id).status;
        if matches!(current, StepStatus::Done | StepStatus::Skipped | StepStatus::Failed) {
            return Err(Error::StepFinished {
                phase: phase_id.to_string(),
                step: step_id.to_string(),
                status: current.as_str(),
            });
        }
        if let Some(role) = &assignee
            && self.directory.role_among(&self.actor, std::slice::from_ref(role)).is_none()
        {
            return Err(Error::MissingRole {
                actor: self.actor.clone(),
                roles: held_roles_text(self.directory, std::slice::from_ref(role)),
                what: format!("marking step `{phase_id}/{step_id}` done"),
            });
        }
        // Marking it done would record work on a step the engine is bound to skip.
        if let Some(condition) = scope::known_false(self.runbook, &self.incident, phase_id, step) {
            return Err(Error::WillBeSkipped {
                phase: phase_id.to_string(),
                step: step_id.to_string(),
                condition: condition.to_string(),
            });
        }
        check_outputs(phase_id, step_id, outputs, &declared)?;
        let event =
            EventKind::StepDone { phase: phase_id.to_string(), step: step_id.to_string(), outputs: outputs.clone() };
        self.emit_because(event, evidence.clone());
        Ok(())
    }

    fn signal(&mut self, phase_id: &str, gate_id: &str, note: &Option<String>) -> Result<(), Error> {
        let phase = self.phase_model(phase_id)?;
        let Some(gate) = phase.gates().find(|g| g.id == gate_id && matches!(g.kind, GateKind::Signal { .. })) else {
            return Err(unknown_gate(phase, gate_id, SIGNAL));
        };
        let GateKind::Signal { role } = &gate.kind else { unreachable!("found a signal gate") };
        if !is_trigger(&self.actor) {
            self.person()?;
            let allowed = role
                .as_ref()
                .is_some_and(|role| self.directory.role_among(&self.actor, std::slice::from_ref(role)).is_some());
            if !allowed {
                return Err(Error::MissingRole {
                    actor: self.actor.clone(),
                    roles: role.as_ref().map_or_else(
                        || "a trigger's authority".to_string(),
                        |r| held_roles_text(self.directory, std::slice::from_ref(r)),
                    ),
                    what: format!("signalling gate `{gate_id}` of phase `{phase_id}`"),
                });
            }
        }
        if self.incident.gate(phase_id, gate_id).signalled {
            return Err(Error::AlreadyPassed { phase: phase_id.to_string(), gate: gate_id.to_string() });
        }
        self.emit_because(
            EventKind::SignalGiven { phase: phase_id.to_string(), gate: gate_id.to_string() },
            note.clone(),
        );
        Ok(())
    }
}

/// The kinds of gate a person names on the command line, as refusals call them.
const APPROVAL: &str = "approval";
const SIGNAL: &str = "signal";
pub(super) const CHECK: &str = "check";

/// A gate the phase does not have, with the nearest and the phase's gates of that kind.
pub(super) fn unknown_gate(phase: &crate::runbook::model::Phase, gate: &str, kind: &'static str) -> Error {
    let of_kind = |g: &&crate::runbook::model::Gate| match g.kind {
        GateKind::Approval { .. } => kind == APPROVAL,
        GateKind::Signal { .. } => kind == SIGNAL,
        GateKind::Check(_) => kind == CHECK,
        _ => false,
    };
    let names: Vec<&str> = phase.gates().filter(of_kind).map(|g| g.id.as_str()).collect();
    Error::UnknownGate {
        phase: phase.id.clone(),
        gate: gate.to_string(),
        kind,
        declared: declared_text(gate, names.iter().copied(), &format!("{kind} gate")),
    }
}

/// Refuses an output the step does not declare, naming the nearest and those it declares.
pub(super) fn check_outputs(
    phase: &str,
    step: &str,
    outputs: &BTreeMap<String, serde_json::Value>,
    declared: &[String],
) -> Result<(), Error> {
    let Some(unknown) = outputs.keys().find(|name| !declared.contains(name)) else { return Ok(()) };
    Err(Error::UnknownOutput {
        phase: phase.to_string(),
        step: step.to_string(),
        output: unknown.clone(),
        declared: declared_text(unknown, declared.iter().map(String::as_str), "output"),
    })
}

/// `did you mean `x`? declared outputs: a, b`: what a misspelt name could have been.
pub(super) fn declared_text<'n>(word: &str, names: impl IntoIterator<Item = &'n str> + Clone, what: &str) -> String {
    let all: Vec<String> = names.clone().into_iter().map(|name| format!("`{name}`")).collect();
    let listed = if all.is_empty() {
        format!("it declares no {what}s")
    } else {
        format!("declared {what}s: {}", all.join(", "))
    };
    match crate::spelling::did_you_mean(word, names) {
        Some(meant) => format!("did you mean `{meant}`? {listed}"),
        None => listed,
    }
}

/// `role `x` (held by a, b)`: the roles, and who holds them, for a refusal that names who may.
pub(super) fn held_roles_text(directory: &Directory, roles: &[String]) -> String {
    let holders: Vec<&str> = directory.holders(roles).collect();
    let held = if holders.is_empty() {
        "held by nobody configured".to_string()
    } else {
        format!("held by {}", holders.join(", "))
    };
    format!("{} ({held})", roles_text(roles))
}

pub(super) fn roles_text(roles: &[String]) -> String {
    match roles {
        [one] => format!("role `{one}`"),
        many => format!("any of the roles {}", many.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")),
    }
}
