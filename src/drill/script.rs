//! What the script does next: the pure decision the drill's loop asks at every simulated instant.
//!
//! An action at a time is due once the clock reaches it. An action on a wait is due `after` its
//! wait began: the loop asks after every change, so the first time [`due`] sees the wait is the
//! time it began. Each action happens once; the loop says so with [`Progress::fired`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::model::{Scenario, Scripted, Waiting, When};
use crate::engine::Incident;
use crate::engine::state::{PhaseStatus, StepStatus};
use crate::runbook::Runbook;
use crate::runbook::model::GateKind;

/// What the script has done: when each action's wait was first seen, and which actions happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    seen: BTreeMap<usize, DateTime<Utc>>,
    fired: BTreeSet<usize>,
}

impl Progress {
    /// The action at `index` happened (or was refused): it is not due again.
    pub fn fired(&mut self, index: usize) {
        self.fired.insert(index);
    }

    /// Whether the action at `index` happened.
    pub fn has_fired(&self, index: usize) -> bool {
        self.fired.contains(&index)
    }
}

/// The actions due at `now`, in the order written; notes the waits that began.
pub fn due<'s>(
    scenario: &'s Scenario,
    runbook: &Runbook,
    incident: &Incident,
    now: DateTime<Utc>,
    progress: &mut Progress,
) -> Vec<&'s Scripted> {
    let mut due = Vec::new();
    for scripted in &scenario.script {
        if progress.fired.contains(&scripted.index) {
            continue;
        }
        match &scripted.when {
            When::At(offset) => {
                if now >= scenario.start_at + *offset {
                    due.push(scripted);
                }
            }
            When::Waiting { wait, after } => {
                if waits(runbook, incident, wait) {
                    let since = *progress.seen.entry(scripted.index).or_insert(now);
                    if now >= since + *after {
                        due.push(scripted);
                    }
                } else {
                    // The wait ended some other way (someone else approved): it begins anew.
                    progress.seen.remove(&scripted.index);
                }
            }
        }
    }
    due
}

/// The next instant after `now` at which an action becomes due by the clock alone.
pub fn next_at(scenario: &Scenario, progress: &Progress, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    scenario
        .script
        .iter()
        .filter(|scripted| !progress.fired.contains(&scripted.index))
        .filter_map(|scripted| match &scripted.when {
            When::At(offset) => Some(scenario.start_at + *offset),
            When::Waiting { after, .. } => progress.seen.get(&scripted.index).map(|since| *since + *after),
        })
        .filter(|at| *at > now)
        .min()
}

/// Whether the incident waits for `wait` now.
pub fn waits(runbook: &Runbook, incident: &Incident, wait: &Waiting) -> bool {
    if incident.closed.is_some() {
        return false;
    }
    match wait {
        Waiting::Approval { phase, gate } => {
            let Some(model) = runbook.phase(phase) else { return false };
            let gates = match incident.phase(phase).status {
                PhaseStatus::Ready => &model.entry,
                PhaseStatus::Running => &model.exit,
                _ => return false,
            };
            gates.iter().any(|candidate| {
                matches!(candidate.kind, GateKind::Approval { .. })
                    && gate.as_ref().is_none_or(|gate| *gate == candidate.id)
                    && incident.gate(phase, &candidate.id).passed_at.is_none()
            })
        }
        Waiting::Step { phase, step } => {
            incident.phase(phase).status == PhaseStatus::Running
                && matches!(incident.step(phase, step).status, StepStatus::Pending)
        }
        Waiting::Signal { phase, gate } => {
            matches!(incident.phase(phase).status, PhaseStatus::Ready | PhaseStatus::Running)
                && !incident.gate(phase, gate).signalled
                && incident.gate(phase, gate).passed_at.is_none()
        }
        Waiting::Failed { phase, step } => incident.step(phase, step).status == StepStatus::Failed,
        Waiting::Closable => {
            incident.open_relaxations().next().is_none()
                && runbook.phases().iter().all(|phase| incident.phase(&phase.id).status.is_finished())
        }
    }
}
