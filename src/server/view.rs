//! What the API answers about incidents, as wire types: an incident's summary (its id first),
//! where it stands with its phases, gates and steps listed in the runbook's order (unreached ones
//! included), and its timeline a page at a time without the runbook text. Built from the store's
//! summaries and the engine's state; the stored log is never changed by how it is shown.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::engine::blocking::Blocker;
use crate::engine::state::{Closed, PhaseState, PhaseStatus, Relaxation};
use crate::engine::{Event, EventKind, Incident};
use crate::runbook::Runbook;
use crate::runbook::model::Gate;
use crate::store::IncidentSummary;

/// Whether an incident is still being worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Closed,
}

/// The incidents a list shows: `?state=open|closed|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Open,
    Closed,
    All,
}

impl StateFilter {
    /// The values `?state=` takes, as the error for any other value names them.
    pub const ALLOWED: &[&str] = &["open", "closed", "all"];

    pub fn parse(value: &str) -> Option<StateFilter> {
        match value {
            "open" => Some(StateFilter::Open),
            "closed" => Some(StateFilter::Closed),
            "all" => Some(StateFilter::All),
            _ => None,
        }
    }

    pub fn admits(self, state: State) -> bool {
        match self {
            StateFilter::Open => state == State::Open,
            StateFilter::Closed => state == State::Closed,
            StateFilter::All => true,
        }
    }
}

/// One incident as a list shows it, and as starting one answers: what the store keeps about it,
/// without folding its log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub id: String,
    pub state: State,
    pub runbook_id: String,
    /// The deduplication key of the trigger that started it, if one did.
    pub key: Option<String>,
    /// How many events it has.
    pub version: u64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The hash of its latest event, in hex.
    pub head: Option<String>,
    /// How many of its events its latest signed checkpoint covers.
    pub checkpointed: u64,
    pub checkpointed_at: Option<DateTime<Utc>>,
}

impl From<IncidentSummary> for Summary {
    fn from(summary: IncidentSummary) -> Summary {
        Summary {
            id: summary.id,
            state: if summary.closed_at.is_some() { State::Closed } else { State::Open },
            runbook_id: summary.runbook_id,
            key: summary.key,
            version: summary.version,
            started_at: summary.started_at,
            updated_at: summary.updated_at,
            closed_at: summary.closed_at,
            head: summary.head,
            checkpointed: summary.checkpointed,
            checkpointed_at: summary.checkpointed_at,
        }
    }
}

/// Where an incident stands and what blocks it.
#[derive(Debug, Serialize)]
pub struct Board<'a> {
    pub incident: Standing<'a>,
    pub blocking: Vec<Blocking<'a>>,
}

/// One thing the incident waits for, and the configured people who can give it.
#[derive(Debug, Serialize)]
pub struct Blocking<'a> {
    pub blocker: &'a Blocker,
    pub people: Vec<String>,
}

/// The folded state of an incident, its phases in the runbook's order.
#[derive(Debug, Serialize)]
pub struct Standing<'a> {
    pub id: &'a str,
    pub state: State,
    pub runbook_id: &'a str,
    pub runbook_version: Option<&'a str>,
    /// SHA-256 of the runbook text the incident runs (`GET /api/v1/incidents/{id}/runbook`).
    pub runbook_sha256: &'a str,
    pub key: Option<&'a str>,
    pub inputs: &'a BTreeMap<String, Value>,
    pub started_at: DateTime<Utc>,
    pub started_by: &'a str,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
    pub closed: Option<&'a Closed>,
    pub phases: Vec<PhaseView<'a>>,
    /// By control: its latest relaxation.
    pub relaxations: &'a BTreeMap<String, Relaxation>,
    /// When each audience's last status update was decided.
    pub last_update: &'a BTreeMap<String, DateTime<Utc>>,
}

impl<'a> Standing<'a> {
    pub fn new(runbook: &'a Runbook, incident: &'a Incident) -> Standing<'a> {
        Standing {
            id: &incident.id,
            state: if incident.closed.is_some() { State::Closed } else { State::Open },
            runbook_id: &incident.runbook_id,
            runbook_version: incident.runbook_version.as_deref(),
            runbook_sha256: &incident.runbook_sha256,
            key: incident.key.as_deref(),
            inputs: &incident.inputs,
            started_at: incident.started_at,
            started_by: &incident.started_by,
            version: incident.version,
            updated_at: incident.updated_at,
            closed: incident.closed.as_ref(),
            phases: phases(runbook, incident),
            relaxations: &incident.relaxations,
            last_update: &incident.last_update,
        }
    }
}

/// A phase of the runbook and how far the incident got with it (`pending`, with nothing else
/// set, when it has not been reached).
#[derive(Debug, Serialize)]
pub struct PhaseView<'a> {
    pub id: &'a str,
    pub title: Option<&'a str>,
    pub needs: &'a [String],
    pub state: PhaseStatus,
    pub ready_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub gates: Vec<GateView<'a>>,
    pub steps: Vec<StepView<'a>>,
}

/// A gate of a phase: where it sits, its kind, and what is set of its state ([`set`]).
#[derive(Debug, Serialize)]
pub struct GateView<'a> {
    pub id: &'a str,
    /// `entry` (before the steps) or `exit` (before the phase counts as done).
    pub stage: &'static str,
    pub kind: &'static str,
    #[serde(flatten)]
    pub state: serde_json::Map<String, Value>,
}

/// A step of a phase: its kind, its status, and what else is set of its state ([`set`]).
#[derive(Debug, Serialize)]
pub struct StepView<'a> {
    pub id: &'a str,
    pub title: Option<&'a str>,
    pub kind: &'static str,
    #[serde(flatten)]
    pub state: serde_json::Map<String, Value>,
}

/// The fields of a gate's or a step's state that are set: a runbook has dozens of gates and steps,
/// most of them not reached, and listing every unset field of each (`null`, `false`, `0`, `[]`,
/// `{}`) made an incident's answer ten times longer for nothing.
fn set(state: &impl Serialize) -> serde_json::Map<String, Value> {
    let Ok(Value::Object(fields)) = serde_json::to_value(state) else {
        unreachable!("a gate's and a step's state are structs of JSON values")
    };
    let unset = |value: &Value| match value {
        Value::Null => true,
        Value::Bool(set) => !set,
        Value::Number(number) => number.as_u64() == Some(0),
        Value::String(_) => false,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
    };
    fields.into_iter().filter(|(_, value)| !unset(value)).collect()
}

/// Every phase of the runbook in its order (the order written, wherever `needs` allows it).
pub fn phases<'a>(runbook: &'a Runbook, incident: &Incident) -> Vec<PhaseView<'a>> {
    runbook
        .phases()
        .iter()
        .map(|phase| {
            let state = incident.phase(&phase.id);
            let PhaseState { status, ready_at, started_at, ended_at, error, .. } = state.as_ref().clone();
            let gate = |gate: &'a Gate, stage: &'static str| GateView {
                id: &gate.id,
                stage,
                kind: gate.kind.name(),
                state: set(&incident.gate(&phase.id, &gate.id)),
            };
            let mut gates: Vec<GateView> = phase.entry.iter().map(|g| gate(g, "entry")).collect();
            gates.extend(phase.exit.iter().map(|g| gate(g, "exit")));
            let steps = phase
                .steps
                .iter()
                .map(|step| StepView {
                    id: &step.id,
                    title: step.title.as_deref(),
                    kind: step.action.kind(),
                    state: set(&incident.step(&phase.id, &step.id)),
                })
                .collect();
            PhaseView {
                id: &phase.id,
                title: phase.title.as_deref(),
                needs: &phase.needs,
                state: status,
                ready_at,
                started_at,
                ended_at,
                error,
                gates,
                steps,
            }
        })
        .collect()
}

/// The most events one page of a timeline holds, and how many it holds unless asked.
pub const PAGE_MAX: usize = 1000;
pub const PAGE_DEFAULT: usize = 100;

/// An event type as a timeline's filter takes it (`approval_given`): lowercase letters and
/// underscores, at most 40 of them. A type no event has is not an error: its page is empty.
pub fn event_kind(value: &str) -> Result<&str, String> {
    if value.is_empty() || value.len() > 40 || !value.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return Err("`kind` must be an event type such as `approval_given`".into());
    }
    Ok(value)
}

/// A page of an incident's timeline.
#[derive(Debug, Serialize)]
pub struct Timeline<'a> {
    pub incident: &'a str,
    pub events: Vec<Entry>,
    /// The `after` that asks for the following page; `null` when this page reached the end of
    /// the log as it stood (a client following the incident asks again with its last `seq`).
    pub next: Option<u64>,
}

/// One event of a timeline: its place in the log, a line for a person, and the event itself.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub summary: String,
    pub event: Value,
}

impl Entry {
    /// The event as the API shows it: as stored, except that `incident_started` leaves out the
    /// runbook text (tens of kilobytes, the same in every copy), which its `runbook_sha256` names
    /// and `GET /api/v1/incidents/{id}/runbook` gives.
    pub fn new(seq: u64, event: &Event) -> Result<Entry, serde_json::Error> {
        let mut shown = serde_json::to_value(event)?;
        if matches!(event.kind, EventKind::IncidentStarted { .. })
            && let Some(kind) = shown.get_mut("event").and_then(Value::as_object_mut)
        {
            kind.remove("runbook_text");
        }
        Ok(Entry { seq, summary: event.summary(), event: shown })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_filter_takes_its_three_values_and_nothing_else() {
        let cases = [
            ("open", Some((true, false))),
            ("closed", Some((false, true))),
            ("all", Some((true, true))),
            ("", None),
            ("Open", None),
            ("opened", None),
        ];
        for (value, expected) in cases {
            let admits = StateFilter::parse(value).map(|f| (f.admits(State::Open), f.admits(State::Closed)));
            assert_eq!(admits, expected, "`{value}`");
        }
        assert!(StateFilter::ALLOWED.iter().all(|value| StateFilter::parse(value).is_some()));
    }

    #[test]
    fn only_the_set_fields_of_a_step_are_shown() {
        use crate::engine::state::{StepState, StepStatus};
        let pending = StepState::default();
        assert_eq!(Value::Object(set(&pending)), serde_json::json!({ "status": "pending" }));
        let failed = StepState {
            status: StepStatus::Failed,
            attempt: 3,
            error: Some("status 503".into()),
            outputs: BTreeMap::from([("ticket".to_string(), Value::from(0))]),
            ..StepState::default()
        };
        let shown = serde_json::json!({
            "status": "failed", "attempt": 3, "error": "status 503", "outputs": { "ticket": 0 },
        });
        assert_eq!(Value::Object(set(&failed)), shown, "a zero inside a set field stays");
    }

    #[test]
    fn a_timeline_entry_leaves_out_the_runbook_text_and_nothing_else() {
        let at = DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc);
        let started = Event::new(
            at,
            "dana",
            EventKind::IncidentStarted {
                incident: "inc-1".into(),
                runbook_id: "retail-breach".into(),
                runbook_version: None,
                runbook_sha256: "ab12".into(),
                runbook_text: "id: retail-breach\n".repeat(1000),
                inputs: BTreeMap::new(),
                key: None,
            },
        );
        let mut expected = serde_json::to_value(&started).unwrap();
        expected["event"].as_object_mut().unwrap().remove("runbook_text").expect("the stored event has the text");
        let entry = Entry::new(1, &started).unwrap();
        assert_eq!(entry.event, expected);
        assert_eq!(entry.event["event"]["runbook_sha256"], "ab12", "the digest names the text left out");

        let note = Event::new(at, "dana", EventKind::NoteAdded).because(Some("runbook_text".into()));
        assert_eq!(Entry::new(2, &note).unwrap().event, serde_json::to_value(&note).unwrap(), "shown as stored");
    }
}
