//! When an incident next moves on by itself: the earliest instant after `now` at which a tick
//! would record something (a retry, a check's poll or deadline, a timer, an overdue relaxation,
//! a scheduled status update). A simulated clock jumps straight there; a real loop could sleep
//! until then.

use chrono::{DateTime, Utc};

use super::state::{Incident, PhaseStatus, StepStatus};
use crate::runbook::Runbook;
use crate::runbook::model::{Gate, GateKind, Phase, TimerAnchor};

/// The earliest instant after `now` at which the incident has something due, if any.
pub fn next_due(runbook: &Runbook, incident: &Incident, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if incident.closed.is_some() {
        return None;
    }
    let mut due: Vec<DateTime<Utc>> = Vec::new();
    for phase in runbook.phases() {
        let state = incident.phase(&phase.id);
        match state.status {
            PhaseStatus::Ready => gates(phase, &phase.entry, incident, &mut due),
            PhaseStatus::Running => {
                gates(phase, &phase.entry, incident, &mut due);
                gates(phase, &phase.exit, incident, &mut due);
                for step in &phase.steps {
                    let step = incident.step(&phase.id, &step.id);
                    if step.status == StepStatus::Retrying
                        && let Some(at) = step.retry_at
                    {
                        due.push(at);
                    }
                }
            }
            _ => {}
        }
    }
    for relaxation in incident.open_relaxations() {
        if !relaxation.overdue {
            due.push(relaxation.expires_at);
        }
    }
    for rule in runbook.status_updates() {
        let Some(every) = rule.every else { continue };
        for audience in &rule.audiences {
            let last = incident.last_update.get(audience).copied().unwrap_or(incident.started_at);
            due.push(last + every);
        }
    }
    due.into_iter().filter(|at| *at > now).min()
}

/// The instants at which a phase's gates change by time alone.
fn gates(phase: &Phase, gates: &[Gate], incident: &Incident, due: &mut Vec<DateTime<Utc>>) {
    let state = incident.phase(&phase.id);
    let anchor = |from: TimerAnchor| match from {
        TimerAnchor::IncidentStarted => incident.started_at,
        TimerAnchor::Ready => state.ready_at.unwrap_or(incident.started_at),
    };
    for gate in gates {
        let gate_state = incident.gate(&phase.id, &gate.id);
        match &gate.kind {
            GateKind::Timer { not_before, not_later_than, from } => {
                if gate_state.passed_at.is_none() {
                    due.push(anchor(*from) + not_before.unwrap_or_default());
                }
                if let Some(limit) = not_later_than
                    && !gate_state.deadline_missed
                {
                    due.push(anchor(*from) + *limit);
                }
            }
            GateKind::Check(check) if gate_state.passed_at.is_none() => {
                let since = state.started_at.or(state.ready_at).unwrap_or(incident.started_at);
                due.push(since + check.deadline);
                if !gate_state.polling
                    && let Some(last) = &gate_state.last_check
                {
                    due.push(last.at + check.interval);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Command, Decision, Directory, Request, decide};

    const RUNBOOK: &str = r#"
apiVersion: phasegate/v1
kind: Runbook
id: due
title: Due
controls:
  mfa: { title: MFA }
roles:
  lead: {}
audiences:
  team: { template: internal-update, channels: [out] }
channels:
  out: { stdout: {} }
phases:
  - id: wait
    steps:
      - id: relax
        relax: { control: mfa, reason: test, expires_in: 3h }
    entry:
      - approval: { roles: [lead] }
    exit:
      - timer: { not_before: 2h }
  - id: back
    needs: [wait]
    steps:
      - id: reinstate
        reinstate: { control: mfa }
status_updates:
  - every: 5h
    audiences: [team]
"#;

    struct Templates;
    impl crate::runbook::Templates for Templates {
        fn lookup(&self, _name: &str) -> crate::runbook::TemplateInfo {
            crate::runbook::TemplateInfo::Found { variables: Vec::new() }
        }
    }

    #[test]
    fn the_next_due_instant_is_the_earliest_of_timers_expiries_and_schedules() {
        let runbook = crate::runbook::parse(RUNBOOK, &Templates).unwrap();
        let directory = Directory::with(&[("dana", &["lead"]), ("sam", &["lead"])]);
        let start = DateTime::parse_from_rfc3339("2026-11-24T02:00:00Z").unwrap().with_timezone(&Utc);
        let mut events = Vec::new();
        let ask = |incident: Option<&Incident>, actor: &str, at, command| -> Decision {
            decide(&runbook, &directory, incident, &Request { actor: actor.into(), at, command }).unwrap()
        };
        let command = Command::Start {
            incident: "i".into(),
            runbook_text: RUNBOOK.into(),
            inputs: Default::default(),
            key: None,
        };
        events.extend(ask(None, "dana", start, command).events);
        let incident = Incident::from_events(&events).unwrap();
        // Waiting for an approval: only the schedule is due by time.
        assert_eq!(next_due(&runbook, &incident, start), Some(start + chrono::Duration::hours(5)));
        let approved = start + chrono::Duration::minutes(10);
        let approve = Command::Approve { phase: "wait".into(), gate: None, note: None };
        events.extend(ask(Some(&incident), "sam", approved, approve).events);
        let incident = Incident::from_events(&events).unwrap();
        // The timer opens 2h after the phase was ready, before the relaxation expires (3h).
        assert_eq!(next_due(&runbook, &incident, approved), Some(start + chrono::Duration::hours(2)));
        let later = start + chrono::Duration::hours(2);
        assert_eq!(next_due(&runbook, &incident, later), Some(approved + chrono::Duration::hours(3)));
    }
}
