//! What holds an incident up: for each phase that is ready or running, the gates and steps it
//! waits for, and the roles that can unblock them. The status board and the templates show it.

use serde::Serialize;

use super::directory::Directory;
use super::scope;
use super::state::{Incident, PhaseStatus, StepStatus};
use crate::runbook::Runbook;
use crate::runbook::model::{Action, Gate, GateKind, Phase, format_duration};

/// One thing a phase waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub phase: String,
    /// The gate's id, or `PHASE/STEP` for a step.
    pub what: String,
    /// `approval`, `signal`, `check` (which passes by itself, or which the `recover` roles can
    /// retry now or pass by hand), `timer`, `condition`, `step`, `steps`, `retrying` (an automated
    /// step waiting for its next attempt, which the `recover` roles can retry now, skip or mark
    /// done), or `failed` (a step that failed for good, which the `recover` roles can retry, skip
    /// or mark done; or a phase that failed otherwise, which only abandoning closes), or
    /// `failed_check` (a check gate whose deadline failed its phase, which the `recover` roles can
    /// retry or pass by hand), or `will_skip` (a pending step whose condition is already known to
    /// be false, `scope::known_false`: it blocks nothing and nobody can act on it).
    pub kind: &'static str,
    /// For a person: what it waits for.
    pub waiting_for: String,
    /// The roles that can unblock it; empty when no person can (a timer, a condition).
    pub roles: Vec<String>,
}

/// Everything the incident waits for, phase by phase in runbook order.
pub fn blockers(runbook: &Runbook, incident: &Incident) -> Vec<Blocker> {
    let mut found = Vec::new();
    if incident.closed.is_some() {
        return found;
    }
    for phase in runbook.phases() {
        match incident.phase(&phase.id).status {
            PhaseStatus::Ready => gates(phase, &phase.entry, incident, runbook.rights(), &mut found),
            PhaseStatus::Running => {
                steps(runbook, phase, incident, &mut found);
                let exit: Vec<_> =
                    phase.exit.iter().filter(|g| !matches!(g.kind, GateKind::StepsDone { .. })).cloned().collect();
                gates(phase, &exit, incident, runbook.rights(), &mut found);
            }
            PhaseStatus::Failed => failed(runbook, phase, incident, &mut found),
            _ => {}
        }
    }
    found
}

/// Each phase that is not done or skipped, and what it waits for, for a refused close.
pub fn unfinished(runbook: &Runbook, incident: &Incident) -> Vec<String> {
    let blocking = blockers(runbook, incident);
    runbook
        .phases()
        .iter()
        .filter_map(|phase| {
            let status = incident.phase(&phase.id).status;
            if status.is_finished() {
                return None;
            }
            let waits: Vec<String> = blocking
                .iter()
                .filter(|blocker| blocker.phase == phase.id && blocker.kind != "will_skip")
                .map(|blocker| format!("{} ({})", blocker.what, blocker.waiting_for))
                .collect();
            let detail = match status {
                PhaseStatus::Pending => {
                    let waiting: Vec<&str> = phase
                        .needs
                        .iter()
                        .filter(|need| !incident.phase(need).status.is_finished())
                        .map(String::as_str)
                        .collect();
                    format!("needs {}", waiting.join(", "))
                }
                _ if waits.is_empty() => "waits for nothing a person can give".to_string(),
                _ => format!("waits for {}", waits.join(", ")),
            };
            Some(format!("`{}` is {}: {detail}", phase.id, status.as_str()))
        })
        .collect()
}

/// A failed phase waits for its failed steps or its failed check to be recovered, or (failed
/// otherwise) for nothing but abandoning.
fn failed(runbook: &Runbook, phase: &Phase, incident: &Incident, found: &mut Vec<Blocker>) {
    let before = found.len();
    let error = incident.phase(&phase.id).error.clone().unwrap_or_default();
    if let Some(gate) = failed_check(phase, incident) {
        found.push(Blocker {
            phase: phase.id.clone(),
            what: gate.id.clone(),
            kind: "failed_check",
            waiting_for: format!(
                "phase failed: {error}; retry the check (a fresh deadline) or pass it by hand with evidence"
            ),
            roles: runbook.rights().recover.roles.clone(),
        });
    }
    for step in &phase.steps {
        let state = incident.step(&phase.id, &step.id);
        if step.optional || state.status != StepStatus::Failed {
            continue;
        }
        found.push(Blocker {
            phase: phase.id.clone(),
            what: format!("{}/{}", phase.id, step.id),
            kind: "failed",
            waiting_for: format!(
                "{} step failed for good after {} attempt(s): {}; retry, skip or mark it done by hand",
                step.action.kind(),
                state.attempt,
                state.error.unwrap_or_default()
            ),
            roles: runbook.rights().recover.roles.clone(),
        });
    }
    if found.len() == before {
        found.push(Blocker {
            phase: phase.id.clone(),
            what: phase.id.clone(),
            kind: "failed",
            waiting_for: format!("phase failed: {error}; no command recovers it, only abandoning closes the incident"),
            roles: runbook.rights().abandon.roles.clone(),
        });
    }
}

/// The check gate that failed `phase`, if its failure was a check's (and the gate has not passed
/// since): past its deadline, or a request it could not build. The engine's errors for those start
/// `check `GATE`` (`advance.rs`).
pub fn failed_check<'a>(phase: &'a Phase, incident: &Incident) -> Option<&'a Gate> {
    let state = incident.phase(&phase.id);
    if state.status != PhaseStatus::Failed {
        return None;
    }
    let error = state.error.as_deref().unwrap_or_default();
    phase.gates().find(|gate| {
        matches!(gate.kind, GateKind::Check(_))
            && incident.gate(&phase.id, &gate.id).passed_at.is_none()
            && error.starts_with(&format!("check `{}`", gate.id))
    })
}

/// The people who could give an approval that is still missing: they hold a role, have not
/// approved yet, and are not excluded by four-eyes.
pub fn who_can_approve(
    runbook: &Runbook,
    incident: &Incident,
    directory: &Directory,
    blocker: &Blocker,
) -> Vec<String> {
    let gate = runbook.phase(&blocker.phase).and_then(|phase| phase.gates().find(|gate| gate.id == blocker.what));
    let four_eyes = matches!(gate.map(|g| &g.kind), Some(GateKind::Approval { four_eyes: true, .. }));
    let given = incident.gate(&blocker.phase, &blocker.what).approvals;
    directory
        .people
        .iter()
        .filter(|(_, roles)| blocker.roles.iter().any(|role| roles.contains(role)))
        .map(|(person, _)| person)
        .filter(|person| !given.iter().any(|approval| &approval.person == *person))
        .filter(|person| !(four_eyes && **person == incident.started_by))
        .cloned()
        .collect()
}

fn gates(
    phase: &Phase,
    gates: &[crate::runbook::model::Gate],
    incident: &Incident,
    rights: &crate::runbook::model::Rights,
    found: &mut Vec<Blocker>,
) {
    for gate in gates {
        let state = incident.gate(&phase.id, &gate.id);
        if state.passed_at.is_some() {
            continue;
        }
        let (kind, waiting_for, roles) = match &gate.kind {
            GateKind::Approval { roles, count, four_eyes } => {
                let given: Vec<&str> = state.approvals.iter().map(|a| a.person.as_str()).collect();
                let mut text = format!("approval by {} of {} ({} given", count, roles.join(" or "), given.len());
                if !given.is_empty() {
                    text.push_str(&format!(": {}", given.join(", ")));
                }
                text.push(')');
                if *four_eyes {
                    text.push_str(&format!("; four-eyes: not {}", incident.started_by));
                }
                ("approval", text, roles.clone())
            }
            GateKind::Signal { role } => {
                let text = match role {
                    Some(_) => "a signal from a trigger or a person".to_string(),
                    None => "a signal from a trigger".to_string(),
                };
                ("signal", text, role.iter().cloned().collect())
            }
            GateKind::Check(check) => {
                let last = match &state.last_check {
                    Some(last) => format!(
                        "; last answered {} (not as expected: {})",
                        last.at.format("%H:%M:%S UTC"),
                        last.describe()
                    ),
                    None => String::new(),
                };
                // It passes by itself when the probe answers as expected; a person who knows it
                // holds (or wants it probed again now) need not wait for the poll or the deadline.
                let text = format!(
                    "check {} {} until {}{last}; it passes by itself, or retry it now or pass it by hand with \
                     evidence",
                    check.request.method,
                    check.request.url,
                    check.expect.source()
                );
                ("check", text, rights.recover.roles.clone())
            }
            GateKind::Timer { not_before, .. } => {
                let text = format!("timer: not before {}", not_before.map(format_duration).unwrap_or_default());
                ("timer", text, Vec::new())
            }
            GateKind::Condition(condition) => ("condition", format!("condition {}", condition.source()), Vec::new()),
            GateKind::StepsDone { steps } => ("steps", format!("steps {} done", steps.join(", ")), Vec::new()),
        };
        found.push(Blocker { phase: phase.id.clone(), what: gate.id.clone(), kind, waiting_for, roles });
    }
}

fn steps(runbook: &Runbook, phase: &Phase, incident: &Incident, found: &mut Vec<Blocker>) {
    let rights = runbook.rights();
    for step in &phase.steps {
        let state = incident.step(&phase.id, &step.id);
        if matches!(state.status, StepStatus::Done | StepStatus::Skipped)
            || (step.optional && state.status == StepStatus::Failed)
        {
            continue;
        }
        let what = format!("{}/{}", phase.id, step.id);
        // Shown so nobody waits on it or does its work: the engine skips it when it is reached.
        if let Some(condition) = scope::known_false(runbook, incident, &phase.id, step) {
            let waiting_for = format!("will be skipped when reached: condition `{condition}` is false");
            found.push(Blocker { phase: phase.id.clone(), what, kind: "will_skip", waiting_for, roles: Vec::new() });
            continue;
        }
        let (waiting_for, roles) = match (&step.action, state.status) {
            (Action::Manual { instructions, assignee, .. }, _) => {
                let what = step.title.clone().unwrap_or_else(|| first_line(instructions));
                (format!("manual step: {what}"), assignee.iter().cloned().collect())
            }
            (Action::Campaign { test_first: true, .. }, StepStatus::Pending) if state.launched.is_none() => {
                let test = match &state.last_test {
                    Some(test) if test.test.went_out() => "its last test send went out; launch it to send",
                    Some(_) => "its last test send did not go out; send another, then launch it",
                    None => "send a test first, then launch it",
                };
                (format!("campaign waiting: {test}"), rights.campaign.roles.clone())
            }
            (Action::Campaign { .. }, StepStatus::Running) => {
                let campaign = state.campaign.clone().unwrap_or_default();
                let sent = format!("{} of {} sent", campaign.sent, campaign.recipients);
                // Each pause and cancel says who, when and the reason recorded with it, whoever
                // gave it: phasegate's own pause names the batch and the channel's last error.
                match (&campaign.paused, &campaign.cancelled) {
                    (_, Some(cancelled)) => (
                        format!(
                            "campaign cancelled by {} at {}, finishing its batches in flight ({sent}); {}",
                            cancelled.by,
                            cancelled.at.format("%H:%M:%S UTC"),
                            steered_because(cancelled)
                        ),
                        Vec::new(),
                    ),
                    (Some(paused), None) => (
                        format!(
                            "campaign paused by {} at {} ({sent}); resume it to go on, or cancel it; {}",
                            paused.by,
                            paused.at.format("%H:%M:%S UTC"),
                            steered_because(paused)
                        ),
                        rights.campaign.roles.clone(),
                    ),
                    (None, None) if campaign.batches == 0 => {
                        ("campaign reading its recipient list".to_string(), Vec::new())
                    }
                    // It goes on by itself; the `campaign` roles can pause or cancel it (a batch
                    // failing its attempts in a row pauses it, above).
                    (None, None) => (
                        format!(
                            "campaign sending: {sent}, {} failed; it goes on by itself, or pause or cancel it",
                            campaign.failed
                        ),
                        rights.campaign.roles.clone(),
                    ),
                }
            }
            (_, StepStatus::Retrying) => {
                let error = state.error.unwrap_or_default();
                let next = state.retry_at.map(|at| format!(" at {}", at.format("%H:%M:%S UTC"))).unwrap_or_default();
                (
                    format!(
                        "{} step, attempt {} failed ({error}); it tries again{next}, or retry it now, skip it or mark \
                         it done by hand",
                        step.action.kind(),
                        state.attempt
                    ),
                    rights.recover.roles.clone(),
                )
            }
            (_, StepStatus::Running) => {
                (format!("{} step running (attempt {})", step.action.kind(), state.attempt), Vec::new())
            }
            (_, StepStatus::Failed) => {
                (format!("{} step failed: {}", step.action.kind(), state.error.unwrap_or_default()), Vec::new())
            }
            (_, _) => (format!("{} step waiting for the steps before it", step.action.kind()), Vec::new()),
        };
        let kind = if state.status == StepStatus::Retrying { "retrying" } else { "step" };
        found.push(Blocker { phase: phase.id.clone(), what, kind, waiting_for, roles });
    }
}

/// The reason recorded with a campaign's pause or cancel, in words.
fn steered_because(steered: &super::state::Steered) -> String {
    match steered.reason.as_deref() {
        Some(reason) => format!("reason: {reason}"),
        None => "no reason given".to_string(),
    }
}

/// The first line of a text, cut at a readable length.
fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
    if line.chars().count() > 90 {
        format!("{}...", line.chars().take(87).collect::<String>())
    } else {
        line.to_string()
    }
}
