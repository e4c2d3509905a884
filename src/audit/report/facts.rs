//! What the report says, gathered from the log: the summary, the timeline, each phase with its
//! gates, the approvals, the control exposure windows and the status updates sent.
//!
//! Everything here comes from the events. The pinned runbook, when it still parses, adds titles,
//! the gates still waited for, the approval requirements and which steps are notify steps; when it
//! does not, the report says so and goes on without them.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::{Error, span, time};
use crate::engine::event::{Approver, Event, EventKind};
use crate::engine::state::{self, Incident, PhaseStatus};
use crate::runbook::model::{Action, GateKind, Runbook};
use crate::runbook::{TemplateInfo, Templates};

/// Longest input value shown in the summary, in characters.
const MAX_INPUT: usize = 120;

pub(super) struct Facts {
    pub incident: String,
    pub runbook_id: String,
    pub runbook_title: Option<String>,
    pub runbook_version: Option<String>,
    pub runbook_sha256: String,
    /// Whether `runbook_sha256` is the hash of the pinned text.
    pub hash_matches: bool,
    /// Why the pinned runbook's details are missing, when it does not parse.
    pub runbook_problem: Option<String>,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    pub key: Option<String>,
    /// Each input with its value as compact JSON.
    pub inputs: Vec<(String, String)>,
    /// The last event's time: what the report knows ends there.
    pub as_of: DateTime<Utc>,
    /// When, by whom, with what note (for an abandoned incident, why).
    pub closed: Option<(DateTime<Utc>, String, Option<String>)>,
    /// Closed before every phase was done or skipped.
    pub abandoned: bool,
    /// Every retry, skip and override of a failed step, and the abandonment, in order.
    pub recoveries: Vec<Recovery>,
    pub events: usize,
    pub phases: Vec<super::phases::Phase>,
    pub timeline: Vec<Entry>,
    /// Routine events left out of the timeline, by type.
    pub left_out: BTreeMap<&'static str, usize>,
    pub approvals: Vec<Approval>,
    pub approval_gates: Vec<ApprovalGate>,
    pub exposures: Vec<Exposure>,
    pub updates: Vec<Update>,
    pub campaigns: Vec<super::campaigns::Campaign>,
}

pub(super) struct Entry {
    /// The event's place in the log, from 1, as verification counts.
    pub number: usize,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub what: String,
    pub reason: Option<String>,
}

/// What a person did that only a right allows, beyond approvals: a failed step retried, skipped
/// or marked done by hand, or the incident abandoned.
pub(super) struct Recovery {
    pub number: usize,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// `retried`, `skipped`, `marked done by hand`, `abandoned`.
    pub action: &'static str,
    /// `PHASE/STEP`, or `the incident`.
    pub what: String,
    pub reason: Option<String>,
}

pub(super) struct Approval {
    pub number: usize,
    pub at: DateTime<Utc>,
    pub phase: String,
    pub gate: String,
    pub approver: String,
    pub role: String,
    pub note: Option<String>,
}

/// The evidence for one approval gate: who approved it and whether that met its rules.
pub(super) struct ApprovalGate {
    pub phase: String,
    pub gate: String,
    pub required: String,
    pub approvers: Vec<String>,
    pub distinct: bool,
    pub starter_among: bool,
    pub four_eyes: String,
}

pub(super) struct Exposure {
    pub control: String,
    pub title: Option<String>,
    /// `PHASE/STEP` of the relax step.
    pub relaxed_in: String,
    pub relaxed_at: DateTime<Utc>,
    pub relaxed_by: String,
    pub approved_by: Vec<Approver>,
    pub reason: String,
    pub compensating: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub overdue_recorded_at: Option<DateTime<Utc>>,
    pub reinstated: Option<Reinstated>,
}

pub(super) struct Reinstated {
    pub at: DateTime<Utc>,
    pub by: String,
    /// `PHASE/STEP` of the reinstate step.
    pub step: String,
    pub strengthened: Vec<String>,
}

pub(super) struct Update {
    pub number: usize,
    pub at: DateTime<Utc>,
    pub audience: String,
    pub audience_title: Option<String>,
    pub channels: Vec<String>,
    pub error: Option<String>,
    /// Why it went out: a notify step, the event a rule names, a person's request.
    pub occasion: String,
    /// The template it was rendered from, as the pinned runbook says.
    pub template: Option<String>,
    /// The message the notify step adds, from the pinned runbook.
    pub message: Option<String>,
    /// The text that went out, as the log recorded it (logs written before phasegate recorded
    /// it have none).
    pub said: Option<String>,
}

impl Facts {
    pub fn gather(events: &[Event]) -> Result<Facts, Error> {
        let incident = Incident::from_events(events).map_err(|error| match error {
            state::Error::Empty => Error::Empty,
            state::Error::NoStart(found) => Error::NoStart { found },
            state::Error::SecondStart { index } => Error::SecondStart { number: index + 1 },
        })?;
        let (runbook, runbook_problem) = match crate::runbook::parse(&incident.runbook_text, &Pinned) {
            Ok(runbook) => (Some(runbook), None),
            Err(diagnostics) => {
                let first = diagnostics
                    .first()
                    .map(|d| format!("; the first, at line {}: {}", d.mark.line, d.message))
                    .unwrap_or_default();
                let problem = format!(
                    "the pinned runbook does not parse with this phasegate ({} problems{first}), so titles, \
                     gate requirements and notify steps are not shown",
                    diagnostics.len()
                );
                (None, Some(problem))
            }
        };
        let runbook = runbook.as_ref();
        let as_of = incident.updated_at;
        let closed = incident.closed.as_ref().map(|closed| {
            let note = events.iter().rev().find(|e| matches!(e.kind, EventKind::IncidentClosed { .. }));
            (closed.at, closed.by.clone(), note.and_then(|e| e.reason.clone()))
        });
        let (timeline, left_out) = timeline(events);
        Ok(Facts {
            incident: incident.id.clone(),
            runbook_id: incident.runbook_id.clone(),
            runbook_title: runbook.map(|r| r.title().to_owned()),
            runbook_version: incident.runbook_version.clone(),
            runbook_sha256: incident.runbook_sha256.clone(),
            hash_matches: crate::engine::decide::sha256_hex(&incident.runbook_text) == incident.runbook_sha256,
            runbook_problem,
            started_at: incident.started_at,
            started_by: incident.started_by.clone(),
            key: incident.key.clone(),
            inputs: incident.inputs.iter().map(|(name, value)| (name.clone(), input(value))).collect(),
            as_of,
            abandoned: incident.closed.as_ref().is_some_and(|closed| closed.abandoned),
            closed,
            recoveries: recoveries(events),
            events: events.len(),
            phases: super::phases::phases(runbook, &incident, events),
            timeline,
            left_out,
            approvals: approvals(events),
            approval_gates: approval_gates(runbook, &incident, events),
            exposures: exposures(runbook, events),
            updates: updates(runbook, events),
            campaigns: super::campaigns::gather(events),
        })
    }

    /// How long the incident ran: to its close, or so far.
    pub fn duration(&self) -> String {
        match &self.closed {
            Some((at, ..)) => span(*at - self.started_at),
            None => format!("{} so far (open)", span(self.as_of - self.started_at)),
        }
    }

    /// Closed or open, and how the phases ended.
    pub fn outcome(&self) -> String {
        let state = match &self.closed {
            Some((at, by, _)) if self.abandoned => format!("ABANDONED at {} by {by}", time(*at)),
            Some((at, by, _)) => format!("closed at {} by {by}", time(*at)),
            None => format!("open as of {}", time(self.as_of)),
        };
        let count = |status: PhaseStatus| self.phases.iter().filter(|p| p.status == status).count();
        let unfinished =
            self.phases.len() - count(PhaseStatus::Done) - count(PhaseStatus::Skipped) - count(PhaseStatus::Failed);
        let mut phases = format!(
            "{} of {} phases done, {} skipped, {} failed, {unfinished} not finished",
            count(PhaseStatus::Done),
            self.phases.len(),
            count(PhaseStatus::Skipped),
            count(PhaseStatus::Failed),
        );
        let failed: Vec<&str> =
            self.phases.iter().filter(|p| p.status == PhaseStatus::Failed).map(|p| p.id.as_str()).collect();
        if !failed.is_empty() {
            phases.push_str(&format!(" (failed: {})", failed.join(", ")));
        }
        let open = self.exposures.iter().filter(|e| e.reinstated.is_none()).count();
        let relaxed = match open {
            0 => String::new(),
            1 => "; 1 control still relaxed".to_string(),
            n => format!("; {n} controls still relaxed"),
        };
        format!("{state}; {phases}{relaxed}")
    }

    /// One line on the routine events the timeline leaves out, if it leaves any out.
    pub fn left_out_line(&self) -> Option<String> {
        let total: usize = self.left_out.values().sum();
        if total == 0 {
            return None;
        }
        let kinds: Vec<String> = self.left_out.iter().map(|(kind, n)| format!("{kind} \u{d7}{n}")).collect();
        let noun = if total == 1 { "event" } else { "events" };
        Some(format!("{total} routine {noun} not shown: {}.", kinds.join(", ")))
    }

    /// A warning when verification counted a different log from the one this report read.
    pub fn count_mismatch(&self, integrity: &super::Integrity) -> String {
        if integrity.events == self.events as u64 {
            return String::new();
        }
        format!(" (this report read {} events: it and the verification did not see the same log)", self.events)
    }
}

impl Update {
    /// What the report can say about the update's text, with `text` and `code` escaping for the
    /// layout: the text the log recorded, or where it came from when the log has none.
    pub fn text(&self, text: fn(&str) -> String, code: fn(&str) -> String) -> String {
        if let Some(said) = &self.said {
            return text(said);
        }
        if self.error.is_some() {
            return "nothing was delivered".to_string();
        }
        let mut said = "text not recorded in the log".to_string();
        if let Some(template) = &self.template {
            said.push_str(&format!(" (template {})", code(template)));
        }
        if let Some(message) = &self.message {
            said.push_str(&format!("; the step's message in the runbook: {}", text(message)));
        }
        said
    }
}

impl Exposure {
    /// How long the control was (or has been) relaxed: to its reinstatement, or to the last event.
    pub fn window(&self, as_of: DateTime<Utc>) -> Duration {
        self.reinstated.as_ref().map_or(as_of, |r| r.at) - self.relaxed_at
    }

    /// What was late about it, if anything.
    pub fn overdue(&self, as_of: DateTime<Utc>) -> Option<String> {
        let mut found = Vec::new();
        if let Some(at) = self.overdue_recorded_at {
            found.push(format!("relaxation_overdue recorded at {}", time(at)));
        }
        match &self.reinstated {
            Some(r) if r.at > self.expires_at => {
                found.push(format!("reinstated {} after it expired", span(r.at - self.expires_at)));
            }
            None if as_of > self.expires_at => {
                found.push(format!("still relaxed {} past its expiry", span(as_of - self.expires_at)));
            }
            _ => {}
        }
        (!found.is_empty()).then(|| found.join("; "))
    }
}

/// The pinned text was checked against the templates when the incident started; the report
/// needs the model, not the templates.
struct Pinned;

impl Templates for Pinned {
    fn lookup(&self, _name: &str) -> TemplateInfo {
        TemplateInfo::Found { variables: Vec::new() }
    }
}

fn input(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_INPUT {
        return text;
    }
    format!("{}…", text.chars().take(MAX_INPUT - 1).collect::<String>())
}

/// Events a reader of the report does not need one by one: checks polled and answered not yet as
/// expected (a check may poll every minute for an hour), attempts begun (their outcome is its own
/// event), and updates the rules queued (the delivery is its own event; a person's request stays).
fn routine(event: &Event) -> bool {
    match &event.kind {
        EventKind::CheckPolled { .. } | EventKind::StepStarted { .. } => true,
        EventKind::CheckAnswered { ok, .. } => !ok,
        EventKind::StatusUpdateRequested { occasion, .. } => occasion != "requested",
        _ => false,
    }
}

fn timeline(events: &[Event]) -> (Vec<Entry>, BTreeMap<&'static str, usize>) {
    let mut entries = Vec::new();
    let mut left_out: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        if routine(event) {
            *left_out.entry(event.kind.name()).or_default() += 1;
            continue;
        }
        // The summary without the reason: the report gives the reason a column of its own.
        let what = match &event.kind {
            EventKind::NoteAdded => "note".to_string(),
            _ => Event { reason: None, ..event.clone() }.summary(),
        };
        entries.push(Entry {
            number: index + 1,
            at: event.at,
            actor: event.actor.clone(),
            what,
            reason: event.reason.clone(),
        });
    }
    (entries, left_out)
}

fn recoveries(events: &[Event]) -> Vec<Recovery> {
    let mut found = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let (action, what) = match &event.kind {
            EventKind::StepRetried { phase, step } => ("retried", format!("{phase}/{step}")),
            EventKind::StepSkippedByHand { phase, step } => ("skipped", format!("{phase}/{step}")),
            EventKind::StepOverridden { phase, step, .. } => ("marked done by hand", format!("{phase}/{step}")),
            EventKind::GateRetried { phase, gate } => ("check retried", format!("{phase}/{gate}")),
            EventKind::GateOverridden { phase, gate } => ("gate passed by hand", format!("{phase}/{gate}")),
            EventKind::IncidentClosed { abandoned: true } => ("abandoned", "the incident".to_string()),
            _ => continue,
        };
        found.push(Recovery {
            number: index + 1,
            at: event.at,
            actor: event.actor.clone(),
            action,
            what,
            reason: event.reason.clone(),
        });
    }
    found
}

fn approvals(events: &[Event]) -> Vec<Approval> {
    let mut found = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if let EventKind::ApprovalGiven { phase, gate, role } = &event.kind {
            found.push(Approval {
                number: index + 1,
                at: event.at,
                phase: phase.clone(),
                gate: gate.clone(),
                approver: event.actor.clone(),
                role: role.clone(),
                note: event.reason.clone(),
            });
        }
    }
    found
}

fn approval_gates(runbook: Option<&Runbook>, incident: &Incident, events: &[Event]) -> Vec<ApprovalGate> {
    let mut gates: Vec<(String, String)> = Vec::new();
    for event in events {
        if let EventKind::ApprovalGiven { phase, gate, .. } = &event.kind
            && !gates.iter().any(|(p, g)| p == phase && g == gate)
        {
            gates.push((phase.clone(), gate.clone()));
        }
    }
    gates
        .into_iter()
        .map(|(phase, gate)| {
            let approvers: Vec<String> =
                incident.gate(&phase, &gate).approvals.iter().map(|a| a.person.clone()).collect();
            let mut unique = approvers.clone();
            unique.sort();
            unique.dedup();
            let distinct = unique.len() == approvers.len();
            let starter_among = approvers.contains(&incident.started_by);
            let kind =
                runbook.and_then(|r| r.phase(&phase)).and_then(|p| p.gates().find(|g| g.id == gate)).map(|g| &g.kind);
            let (required, four_eyes) = match kind {
                Some(GateKind::Approval { roles, count, four_eyes }) => {
                    let required = format!("{count} of {}", roles.join(" or "));
                    let verdict = match (four_eyes, distinct && !starter_among) {
                        (false, _) => "not required",
                        (true, true) => "required; met",
                        (true, false) => "required; NOT met",
                    };
                    (required, verdict.to_string())
                }
                _ => ("unknown".to_string(), "unknown (the pinned runbook does not say)".to_string()),
            };
            ApprovalGate { phase, gate, required, approvers, distinct, starter_among, four_eyes }
        })
        .collect()
}

fn exposures(runbook: Option<&Runbook>, events: &[Event]) -> Vec<Exposure> {
    let mut found: Vec<Exposure> = Vec::new();
    // The open relaxation of each control, as an index into `found`: a control may be relaxed
    // again after it was reinstated, and each time is an exposure of its own.
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for event in events {
        match &event.kind {
            EventKind::ControlRelaxed { control, phase, step, reason, expires_at, approved_by, compensating } => {
                open.insert(control.clone(), found.len());
                found.push(Exposure {
                    control: control.clone(),
                    title: runbook.and_then(|r| r.control(control)).map(|c| c.title.clone()),
                    relaxed_in: format!("{phase}/{step}"),
                    relaxed_at: event.at,
                    relaxed_by: event.actor.clone(),
                    approved_by: approved_by.clone(),
                    reason: reason.clone(),
                    compensating: compensating.clone(),
                    expires_at: *expires_at,
                    overdue_recorded_at: None,
                    reinstated: None,
                });
            }
            EventKind::RelaxationOverdue { control } => {
                if let Some(&index) = open.get(control) {
                    found[index].overdue_recorded_at.get_or_insert(event.at);
                }
            }
            EventKind::ControlReinstated { control, phase, step, strengthened } => {
                if let Some(index) = open.remove(control) {
                    found[index].reinstated = Some(Reinstated {
                        at: event.at,
                        by: event.actor.clone(),
                        step: format!("{phase}/{step}"),
                        strengthened: strengthened.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    found
}

fn updates(runbook: Option<&Runbook>, events: &[Event]) -> Vec<Update> {
    let mut found = Vec::new();
    // The log does not link an update to its request. Each request is carried out once and the
    // outbox is first in, first out, so an update that no notify step sent answers the oldest
    // request for its audience still unanswered.
    let mut requested: BTreeMap<&str, VecDeque<String>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        if let EventKind::StatusUpdateRequested { audience, occasion } = &event.kind {
            let why = match occasion.as_str() {
                "requested" => format!("requested by {}", event.actor),
                "scheduled" => "scheduled".to_string(),
                other => format!("on {other}"),
            };
            requested.entry(audience).or_default().push_back(why);
        }
        let (audience, channels, error) = match &event.kind {
            EventKind::StatusUpdateSent { audience, channels, .. } => (audience, channels.clone(), None),
            EventKind::StatusUpdateFailed { audience, error } => (audience, Vec::new(), Some(error.clone())),
            _ => continue,
        };
        let model = runbook.and_then(|r| r.audiences().iter().find(|a| &a.id == audience));
        // A notify step's update is recorded, then the step's result right after it.
        let step = events.get(index + 1).and_then(|next| match &next.kind {
            EventKind::StepDone { phase, step, .. } | EventKind::StepFailed { phase, step, .. } => {
                runbook.and_then(|r| r.phase(phase)).and_then(|p| p.step(step)).and_then(|s| match &s.action {
                    Action::Notify { audience: a, template, message, .. } if a == audience => {
                        Some((format!("{phase}/{step}"), template.clone(), message.clone()))
                    }
                    _ => None,
                })
            }
            _ => None,
        });
        let (occasion, template, message) = match step {
            Some((step, template, message)) => (format!("notify step `{step}`"), template, message),
            None => {
                let oldest = requested.get_mut(audience.as_str()).and_then(|queue| queue.pop_front());
                let recorded = match &event.kind {
                    EventKind::StatusUpdateSent { occasion: Some(occasion), .. } => Some(format!("on {occasion}")),
                    _ => None,
                };
                (oldest.or(recorded).unwrap_or_else(|| "not recorded".to_string()), None, None)
            }
        };
        found.push(Update {
            number: index + 1,
            at: event.at,
            audience: audience.clone(),
            audience_title: model.and_then(|a| a.title.clone()),
            channels,
            error,
            occasion,
            template: template.or_else(|| model.map(|a| a.template.clone())),
            message,
            said: match &event.kind {
                EventKind::StatusUpdateSent { text, .. } => text.clone(),
                _ => None,
            },
        });
    }
    found
}
