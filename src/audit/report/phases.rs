//! Each phase with its gates: when it was entered, started and ended, how long each gate waited,
//! and who or what satisfied it (or what it still waits for, and on whom).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{span, time};
use crate::engine::blocking::blockers;
use crate::engine::event::{Approver, Event, EventKind};
use crate::engine::state::{self, Incident, PhaseStatus};
use crate::runbook::model::Runbook;

pub(super) struct Phase {
    pub id: String,
    pub title: Option<String>,
    pub status: PhaseStatus,
    /// When it became ready (or was skipped).
    pub entered_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it was skipped or how it failed.
    pub note: Option<String>,
    pub gates: Vec<Gate>,
}

pub(super) struct Gate {
    pub id: String,
    /// When the gate began to be checked: entry gates when the phase became ready, exit gates when
    /// it started.
    pub from: Option<DateTime<Utc>>,
    /// `None` while it still waits.
    pub passed_at: Option<DateTime<Utc>>,
    /// Who or what satisfied it, or what it still waits for and on whom.
    pub by: String,
    pub deadline_missed: bool,
}

impl Phase {
    /// How long the phase took from being entered to its end, or so far.
    pub fn took(&self, as_of: DateTime<Utc>) -> String {
        match (self.entered_at, self.ended_at) {
            (Some(entered), Some(ended)) => span(ended - entered),
            (Some(entered), None) => format!("{} so far", span(as_of - entered)),
            _ => "-".to_string(),
        }
    }
}

impl Gate {
    /// How long the gate waited, or has waited so far.
    pub fn waited(&self, as_of: DateTime<Utc>) -> String {
        let Some(from) = self.from else { return String::new() };
        match self.passed_at {
            Some(passed) => span(passed - from),
            None => format!("{} so far", span(as_of - from)),
        }
    }
}

pub(super) fn phases(runbook: Option<&Runbook>, incident: &Incident, events: &[Event]) -> Vec<Phase> {
    // Runbook order when it parses, else the order phases first appear in the log.
    let mut ids: Vec<String> = runbook.map(|r| r.phases().iter().map(|p| p.id.clone()).collect()).unwrap_or_default();
    for event in events {
        if let Some(phase) = phase_of(&event.kind)
            && !ids.iter().any(|id| id == phase)
        {
            ids.push(phase.to_string());
        }
    }
    let waiting = runbook.map(|runbook| blockers(runbook, incident)).unwrap_or_default();
    ids.into_iter()
        .map(|id| {
            let state = incident.phase(&id);
            let mut gates = passed_gates(&id, &state, events);
            for blocker in waiting.iter().filter(|b| b.phase == id && b.kind != "step") {
                let from = if state.status == PhaseStatus::Ready { state.ready_at } else { state.started_at };
                let who = if blocker.roles.is_empty() {
                    String::new()
                } else {
                    format!("; who can give it: {}", blocker.roles.join(" or "))
                };
                gates.push(Gate {
                    id: blocker.what.clone(),
                    from,
                    passed_at: None,
                    by: format!("waiting for {}{who}", blocker.waiting_for),
                    deadline_missed: incident.gate(&id, &blocker.what).deadline_missed,
                });
            }
            let note = events.iter().find_map(|event| match &event.kind {
                EventKind::PhaseSkipped { phase, condition, .. } if *phase == id => {
                    Some(format!("skipped: `{condition}` was false"))
                }
                EventKind::PhaseFailed { phase, error } if *phase == id => Some(format!("failed: {error}")),
                _ => None,
            });
            Phase {
                title: runbook.and_then(|r| r.phase(&id)).and_then(|p| p.title.clone()),
                status: state.status,
                entered_at: state.ready_at.or(if state.status == PhaseStatus::Skipped { state.ended_at } else { None }),
                started_at: state.started_at,
                ended_at: state.ended_at,
                note,
                gates,
                id,
            }
        })
        .collect()
}

/// The gates of a phase that passed, in the order they passed. An entry gate passes before its
/// phase starts and an exit gate after, so the log's order says which is which.
fn passed_gates(phase: &str, state: &state::PhaseState, events: &[Event]) -> Vec<Gate> {
    let mut started = false;
    let mut gates = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match &event.kind {
            EventKind::PhaseStarted { phase: p } if p == phase => started = true,
            EventKind::GatePassed { phase: p, gate, why } if p == phase => gates.push(Gate {
                id: gate.clone(),
                from: if started { state.started_at } else { state.ready_at },
                passed_at: Some(event.at),
                by: satisfied_by(phase, gate, why, &events[..index]),
                deadline_missed: state.gates.get(gate).is_some_and(|g| g.deadline_missed),
            }),
            _ => {}
        }
    }
    gates
}

/// Who or what made a gate pass, from what `gate_passed` recorded and the events `before` it.
fn satisfied_by(phase: &str, gate: &str, why: &Value, before: &[Event]) -> String {
    if let Some(approvals) = why.get("approvals") {
        let approvers: Vec<Approver> = serde_json::from_value(approvals.clone()).unwrap_or_default();
        let names: Vec<String> = approvers.iter().map(|a| format!("{} ({})", a.person, a.role)).collect();
        return format!("approved by {}", names.join(", "));
    }
    if why.get("signalled").is_some() {
        let signal = before
            .iter()
            .rev()
            .find(|e| matches!(&e.kind, EventKind::SignalGiven { phase: p, gate: g } if p == phase && g == gate));
        return match signal {
            Some(signal) => format!("signal from {} at {}", signal.actor, time(signal.at)),
            None => "signal (not found in the log)".to_string(),
        };
    }
    if let Some(check) = why.get("check").and_then(Value::as_str) {
        let status = why.get("status").map(Value::to_string).unwrap_or_default();
        let poll = why.get("poll").map(Value::to_string).unwrap_or_default();
        return format!("check `{check}` answered status {status} on poll {poll}");
    }
    if let Some(condition) = why.get("condition").and_then(Value::as_str) {
        let saw = why.get("saw").map(Value::to_string).unwrap_or_default();
        return format!("condition `{condition}` held (saw {saw})");
    }
    if let Some(opened) = why.get("opened_at").and_then(Value::as_str) {
        let opened = DateTime::parse_from_rfc3339(opened).map_or(opened.to_string(), |at| time(at.to_utc()));
        return format!("timer opened at {opened}");
    }
    if let Some(steps) = why.get("steps").and_then(Value::as_array) {
        let steps: Vec<&str> = steps.iter().filter_map(Value::as_str).collect();
        return format!("steps done: {}", steps.join(", "));
    }
    format!("recorded as {why}")
}

fn phase_of(kind: &EventKind) -> Option<&str> {
    match kind {
        EventKind::PhaseReady { phase }
        | EventKind::PhaseSkipped { phase, .. }
        | EventKind::PhaseStarted { phase }
        | EventKind::PhaseDone { phase }
        | EventKind::PhaseFailed { phase, .. } => Some(phase),
        _ => None,
    }
}
