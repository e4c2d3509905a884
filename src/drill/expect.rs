//! The verdict on each expectation, from the incident's log alone.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::{Expectation, Expected};
use crate::engine::{Event, EventKind, Incident};
use crate::runbook::Runbook;
use crate::runbook::model::format_duration;

/// One expectation judged: what it asked, whether it held, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub expectation: String,
    pub held: bool,
    pub found: String,
}

/// `+1h 20m` after `start`.
pub fn offset(start: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let seconds = (at - start).num_seconds().max(0) as u64;
    if seconds == 0 {
        "+0s".to_string()
    } else {
        format!("+{}", format_duration(std::time::Duration::from_secs(seconds)))
    }
}

fn span(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds().max(0) as u64;
    if seconds == 0 { "0s".to_string() } else { format_duration(std::time::Duration::from_secs(seconds)) }
}

/// Each expectation of `expected` judged on `events`, the drill having ended at `end`.
pub fn judge(
    expected: &[Expectation],
    runbook: &Runbook,
    events: &[Event],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<Verdict> {
    let incident = Incident::from_events(events).ok();
    expected
        .iter()
        .map(|expectation| verdict(&expectation.what, runbook, incident.as_ref(), events, start, end))
        .collect()
}

fn verdict(
    what: &Expected,
    runbook: &Runbook,
    incident: Option<&Incident>,
    events: &[Event],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Verdict {
    let within =
        |by: &Option<std::time::Duration>| by.map(|by| format!(" by {}", format_duration(by))).unwrap_or_default();
    let in_time = |at: DateTime<Utc>, by: &Option<std::time::Duration>| by.is_none_or(|by| at <= start + by);
    match what {
        Expected::PhaseDone { phase, by } => {
            let expectation = format!("phase `{phase}` done{}", within(by));
            let done = events.iter().find_map(|event| match &event.kind {
                EventKind::PhaseDone { phase: done } if done == phase => Some(event.at),
                _ => None,
            });
            match done {
                Some(at) => {
                    Verdict { expectation, held: in_time(at, by), found: format!("done at {}", offset(start, at)) }
                }
                None => {
                    let status = incident.map_or("unknown", |incident| incident.phase(phase).status.as_str());
                    Verdict { expectation, held: false, found: format!("not done (it is {status})") }
                }
            }
        }
        Expected::Exposure { control, at_most } => {
            let expectation = format!("control `{control}` relaxed for at most {}", format_duration(*at_most));
            let mut longest: Option<(chrono::Duration, bool)> = None;
            let mut relaxed_at: Option<DateTime<Utc>> = None;
            for event in events {
                match &event.kind {
                    EventKind::ControlRelaxed { control: relaxed, .. } if relaxed == control => {
                        relaxed_at = Some(event.at);
                    }
                    EventKind::ControlReinstated { control: back, .. } if back == control => {
                        if let Some(since) = relaxed_at.take() {
                            let exposure = event.at - since;
                            if longest.is_none_or(|(known, _)| exposure > known) {
                                longest = Some((exposure, true));
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(since) = relaxed_at {
                let exposure = end - since;
                if longest.is_none_or(|(known, _)| exposure > known) {
                    longest = Some((exposure, false));
                }
            }
            match longest {
                None => Verdict { expectation, held: true, found: "never relaxed".to_string() },
                Some((exposure, reinstated)) => {
                    let limit = chrono::Duration::from_std(*at_most).unwrap_or(chrono::Duration::MAX);
                    let found = if reinstated {
                        format!("relaxed for {}", span(exposure))
                    } else {
                        format!("still relaxed when the drill ended, after {}", span(exposure))
                    };
                    Verdict { expectation, held: reinstated && exposure <= limit, found }
                }
            }
        }
        Expected::Updates { audience, at_least } => {
            let expectation = format!("at least {at_least} update(s) sent to `{audience}`");
            let sent = events
                .iter()
                .filter(
                    |event| matches!(&event.kind, EventKind::StatusUpdateSent { audience: to, .. } if to == audience),
                )
                .count();
            let failed = events
                .iter()
                .filter(
                    |event| matches!(&event.kind, EventKind::StatusUpdateFailed { audience: to, .. } if to == audience),
                )
                .count();
            let found = if failed > 0 { format!("{sent} sent, {failed} failed") } else { format!("{sent} sent") };
            Verdict { expectation, held: sent >= *at_least as usize, found }
        }
        Expected::NoStepFailed => {
            let failed: Vec<String> = events
                .iter()
                .filter_map(|event| match &event.kind {
                    EventKind::StepFailed { phase, step, attempt, .. } => {
                        Some(format!("`{phase}/{step}` (attempt {attempt}, {})", offset(start, event.at)))
                    }
                    _ => None,
                })
                .collect();
            let found =
                if failed.is_empty() { "none failed".to_string() } else { format!("failed: {}", failed.join(", ")) };
            Verdict { expectation: "no step failed".to_string(), held: failed.is_empty(), found }
        }
        Expected::Closed { by } => {
            let expectation = format!("the incident closed{}", within(by));
            match incident.and_then(|incident| incident.closed.clone()) {
                Some(closed) => Verdict {
                    expectation,
                    held: in_time(closed.at, by),
                    found: format!("closed at {} by {}", offset(start, closed.at), closed.by),
                },
                None => Verdict { expectation, held: false, found: "still open".to_string() },
            }
        }
        Expected::GateWait { gate, at_most } => {
            let expectation = match gate {
                Some((phase, gate)) => format!("gate `{phase}/{gate}` waited at most {}", format_duration(*at_most)),
                None => format!("every gate waited at most {}", format_duration(*at_most)),
            };
            let Some(incident) = incident else {
                return Verdict { expectation, held: false, found: "no incident".to_string() };
            };
            let limit = chrono::Duration::from_std(*at_most).unwrap_or(chrono::Duration::MAX);
            let mut longest: Option<(String, chrono::Duration, bool)> = None;
            for phase in runbook.phases() {
                let state = incident.phase(&phase.id);
                for (gates, since) in [(&phase.entry, state.ready_at), (&phase.exit, state.started_at)] {
                    let Some(since) = since else { continue };
                    for candidate in gates {
                        if gate.as_ref().is_some_and(|(p, g)| *p != phase.id || *g != candidate.id) {
                            continue;
                        }
                        let passed = incident.gate(&phase.id, &candidate.id).passed_at;
                        let waited = passed.unwrap_or(end) - since;
                        if longest.as_ref().is_none_or(|(_, known, _)| waited > *known) {
                            longest = Some((format!("{}/{}", phase.id, candidate.id), waited, passed.is_some()));
                        }
                    }
                }
            }
            match longest {
                None => Verdict { expectation, held: gate.is_none(), found: "no gate was waited for".to_string() },
                Some((name, waited, passed)) => {
                    let found = if passed {
                        format!("`{name}` waited {}", span(waited))
                    } else {
                        format!("`{name}` still waiting after {}", span(waited))
                    };
                    Verdict { expectation, held: passed && waited <= limit, found }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_from_the_start() {
        let start = DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc);
        let table = [(0, "+0s"), (90, "+1m 30s"), (86_400 + 3_600, "+1d 1h"), (-5, "+0s")];
        for (seconds, expected) in table {
            assert_eq!(offset(start, start + chrono::Duration::seconds(seconds)), expected, "{seconds}");
        }
    }
}
