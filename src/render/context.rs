//! The context that status-update and notify templates are rendered with, and the part of a
//! campaign's context that all its messages share.
//!
//! Templates are written against one JSON shape (the names in `runbook::STATUS_CONTEXT`, described
//! in `docs/` and exercised by `tests/it/examples.rs`). This file builds that shape from a runbook,
//! an incident's state and its log. It is a pure function: the time comes in as an argument, so the
//! same incident renders the same way in a test as in production.
//!
//! Nothing here can carry a secret: events and states hold secret names, never values, and this
//! file reads nothing else.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::campaign::Counts;
use crate::engine::blocking::{Blocker, blockers};
use crate::engine::event::{Event, EventKind};
use crate::engine::state::{Incident, PhaseStatus, Relaxation};
use crate::runbook::Runbook;

/// How many events the timeline shows, the most recent last.
pub const TIMELINE_LENGTH: usize = 20;

/// Longest one-line summary in the timeline, in characters; longer ones (a step's error, a long
/// note) are cut with an ellipsis so that one event cannot swamp an update.
pub const MAX_SUMMARY: usize = 300;

/// Who unblocks a gate that no person can: a check, a timer, a condition, a running step.
const AUTOMATIC: &str = "phasegate (automatic)";

/// The context for rendering a status update of `incident` for `audience_id`.
///
/// `occasion` is why the update goes out (an event name, `scheduled`, `requested` or `step`),
/// `message` the optional text a notify step adds, `now` the time of rendering.
pub fn status_context(
    runbook: &Runbook,
    incident: &Incident,
    events: &[Event],
    audience_id: &str,
    occasion: &str,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let audience = runbook.audiences().iter().find(|audience| audience.id == audience_id);
    json!({
        "incident": incident_json(runbook, incident),
        "runbook": runbook_json(runbook, incident),
        "phases": phases(runbook, incident),
        // A step bound to be skipped blocks nothing: the notices' "what is blocking" leaves it out.
        "blocking": blockers(runbook, incident)
            .iter()
            .filter(|blocker| blocker.kind != "will_skip")
            .map(blocking)
            .collect::<Vec<Value>>(),
        "relaxations": relaxations(runbook, incident, now),
        "timeline": timeline(runbook, events),
        "audience": {
            "id": audience_id,
            // Templates print the title; an audience without one is known by its id.
            "title": audience.and_then(|audience| audience.title.clone()).unwrap_or_else(|| audience_id.to_string()),
        },
        "update": { "reason": occasion, "message": message, "at": time(now) },
        "now": time(now),
    })
}

/// What a template knows of the incident: `incident` in every context.
fn incident_json(runbook: &Runbook, incident: &Incident) -> Value {
    json!({
        "id": incident.id,
        "title": runbook.title(),
        "state": if incident.closed.is_some() { "closed" } else { "open" },
        "started_at": time(incident.started_at),
        "started_by": incident.started_by,
        "inputs": incident.inputs,
        "closed_at": incident.closed.as_ref().map(|closed| time(closed.at)),
        "closed_by": incident.closed.as_ref().map(|closed| closed.by.clone()),
        // Closed before every phase was done or skipped; `close_reason` says why.
        "abandoned": incident.closed.as_ref().is_some_and(|closed| closed.abandoned),
        "close_reason": incident.closed.as_ref().and_then(|closed| closed.reason.clone()),
    })
}

/// What a template knows of the runbook: `runbook` in every context.
fn runbook_json(runbook: &Runbook, incident: &Incident) -> Value {
    json!({
        "id": runbook.id(),
        "title": runbook.title(),
        "version": runbook.version(),
        "hash": format!("sha256:{}", incident.runbook_sha256),
    })
}

/// What every message of a campaign shares: `incident`, `runbook` and `now` as status updates
/// have them, and `campaign`: its `key` (`INCIDENT/PHASE/STEP`), `phase`, `step`, `title` (the
/// step's, or null) and `counts` (what reading the list found). The campaign's renderer
/// ([`super::campaign::Renderer`]) adds `recipient` and `code` for each message.
pub fn campaign_base(
    runbook: &Runbook,
    incident: &Incident,
    phase: &str,
    step: &str,
    counts: &Counts,
    now: DateTime<Utc>,
) -> Value {
    let title = runbook.phase(phase).and_then(|p| p.step(step)).and_then(|s| s.title.clone());
    json!({
        "incident": incident_json(runbook, incident),
        "runbook": runbook_json(runbook, incident),
        "campaign": {
            "key": format!("{}/{phase}/{step}", incident.id),
            "phase": phase,
            "step": step,
            "title": title,
            "counts": counts,
        },
        "now": time(now),
    })
}

/// A timestamp as templates show it: RFC 3339, UTC, whole seconds (`2026-11-24T02:14:00Z`).
pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn phases(runbook: &Runbook, incident: &Incident) -> Vec<Value> {
    runbook
        .phases()
        .iter()
        .map(|phase| {
            let state = incident.phase(&phase.id);
            // A failed phase has ended but is not done; templates say "finished" for `done_at`.
            let done_at = match state.status {
                PhaseStatus::Done | PhaseStatus::Skipped => state.ended_at.map(time),
                _ => None,
            };
            json!({
                "id": phase.id,
                "title": phase.title,
                "state": state.status.as_str(),
                "started_at": state.started_at.map(time),
                "done_at": done_at,
            })
        })
        .collect()
}

fn blocking(blocker: &Blocker) -> Value {
    let who = if !blocker.roles.is_empty() {
        blocker.roles.clone()
    } else if blocker.kind == "signal" {
        // A signal gate without a role is given by a trigger only.
        vec!["a trigger".to_string()]
    } else {
        vec![AUTOMATIC.to_string()]
    };
    json!({ "phase": blocker.phase, "gate": blocker.what, "waiting_for": blocker.waiting_for, "who": who })
}

fn relaxations(runbook: &Runbook, incident: &Incident, now: DateTime<Utc>) -> Vec<Value> {
    let mut relaxations: Vec<&Relaxation> = incident.relaxations.values().collect();
    relaxations.sort_by(|a, b| (a.relaxed_at, &a.control).cmp(&(b.relaxed_at, &b.control)));
    relaxations
        .into_iter()
        .map(|relaxation| {
            let title = runbook.control(&relaxation.control).map_or(relaxation.control.as_str(), |c| c.title.as_str());
            // The log says overdue once the engine noticed; the clock may already know better.
            let overdue = relaxation.is_open() && (relaxation.overdue || now >= relaxation.expires_at);
            let time_left = relaxation.is_open().then(|| {
                if now >= relaxation.expires_at {
                    format!("overdue by {}", span(now - relaxation.expires_at))
                } else {
                    span(relaxation.expires_at - now)
                }
            });
            let mut approved_by: Vec<&str> = Vec::new();
            for approver in &relaxation.approved_by {
                if !approved_by.contains(&approver.person.as_str()) {
                    approved_by.push(&approver.person);
                }
            }
            json!({
                "control": relaxation.control,
                "title": title,
                "reason": relaxation.reason,
                "relaxed_at": time(relaxation.relaxed_at),
                "relaxed_by": relaxation.relaxed_by,
                "approved_by": approved_by,
                "expires_at": time(relaxation.expires_at),
                "time_left": time_left,
                "overdue": overdue,
                "compensating": relaxation.compensating,
                "reinstated_at": relaxation.reinstated_at.map(time),
            })
        })
        .collect()
}

/// A stretch of time in hours and minutes, as people read a countdown: `71h 10m`, `45m`, `2h`.
pub fn span(duration: chrono::Duration) -> String {
    let minutes = duration.num_minutes().max(0);
    let (hours, minutes) = (minutes / 60, minutes % 60);
    match (hours, minutes) {
        (0, 0) => "under 1m".to_string(),
        (0, minutes) => format!("{minutes}m"),
        (hours, 0) => format!("{hours}h"),
        (hours, minutes) => format!("{hours}h {minutes}m"),
    }
}

/// The last [`TIMELINE_LENGTH`] events worth telling, oldest first.
fn timeline(runbook: &Runbook, events: &[Event]) -> Vec<Value> {
    // From the end: a long log costs no more than its last events worth telling.
    let mut told: Vec<(&Event, String)> = events
        .iter()
        .rev()
        .filter_map(|event| summary(runbook, event).map(|summary| (event, summary)))
        .take(TIMELINE_LENGTH)
        .collect();
    told.reverse();
    told.into_iter()
        .map(|(event, summary)| {
            json!({ "at": time(event.at), "actor": event.actor, "kind": event.kind.name(), "summary": summary })
        })
        .collect()
}

/// One line about an event for a person, or `None` for bookkeeping that the timeline leaves out:
/// check polls and unanswered checks (a check polled every 30 seconds would push everything else
/// out; the blocking list says how the check stands) and update requests (the update that follows
/// says it went out, or that it failed).
fn summary(runbook: &Runbook, event: &Event) -> Option<String> {
    let phase = |id: &str| runbook.phase(id).and_then(|p| p.title.clone()).unwrap_or_else(|| id.to_string());
    let step = |phase_id: &str, step_id: &str| {
        let title = runbook.phase(phase_id).and_then(|p| p.step(step_id)).and_then(|s| s.title.clone());
        format!("{} ({})", title.unwrap_or_else(|| step_id.to_string()), phase(phase_id))
    };
    let control = |id: &str| runbook.control(id).map_or(id.to_string(), |c| c.title.clone());
    let text = match &event.kind {
        EventKind::IncidentStarted { runbook_id, runbook_version, .. } => {
            let version = runbook_version.as_ref().map(|v| format!(" v{v}")).unwrap_or_default();
            format!("Incident started with runbook {runbook_id}{version}")
        }
        EventKind::PhaseReady { phase: id } => format!("Phase ready, waiting for its entry gates: {}", phase(id)),
        EventKind::PhaseSkipped { phase: id, condition, .. } => {
            format!("Phase skipped: {} (condition not met: {condition})", phase(id))
        }
        EventKind::PhaseStarted { phase: id } => format!("Phase started: {}", phase(id)),
        EventKind::PhaseDone { phase: id } => format!("Phase done: {}", phase(id)),
        EventKind::PhaseFailed { phase: id, error } => format!("Phase failed: {}: {error}", phase(id)),
        EventKind::ApprovalGiven { phase: id, gate, role } => {
            format!("{} approved gate {gate} of {} as {role}", event.actor, phase(id))
        }
        EventKind::SignalGiven { phase: id, gate } => format!("Signal given for gate {gate} of {}", phase(id)),
        EventKind::CheckPolled { .. } | EventKind::StatusUpdateRequested { .. } => return None,
        EventKind::CheckAnswered { ok: false, .. } => return None,
        EventKind::CheckAnswered { phase: id, gate, status, .. } => {
            let status = status.map(|s| format!(" (status {s})")).unwrap_or_default();
            format!("Check {gate} of {} answered as expected{status}", phase(id))
        }
        EventKind::GatePassed { phase: id, gate, .. } => format!("Gate passed: {gate} of {}", phase(id)),
        EventKind::DeadlineMissed { phase: id, gate } => format!("Deadline missed: gate {gate} of {}", phase(id)),
        EventKind::StepSkipped { phase: id, step: step_id, condition } => {
            format!("Step skipped: {} (condition not met: {condition})", step(id, step_id))
        }
        EventKind::StepStarted { phase: id, step: step_id, attempt, .. } => {
            let attempt = if *attempt > 1 { format!(", attempt {attempt}") } else { String::new() };
            format!("Step started: {}{attempt}", step(id, step_id))
        }
        EventKind::StepDone { phase: id, step: step_id, .. } => format!("Step done: {}", step(id, step_id)),
        EventKind::StepFailed { phase: id, step: step_id, attempt, error, retry_at } => {
            let next = retry_at.map_or("no more retries".to_string(), |at| format!("retry at {}", time(at)));
            format!("Step failed: {}, attempt {attempt}: {error}; {next}", step(id, step_id))
        }
        EventKind::ControlRelaxed { control: id, expires_at, .. } => {
            format!("{} relaxed for {}, until {}", control(id), span(*expires_at - event.at), time(*expires_at))
        }
        EventKind::RelaxationOverdue { control: id } => format!("{} is still relaxed past its expiry", control(id)),
        EventKind::ControlReinstated { control: id, strengthened, .. } => {
            let strengthened = if strengthened.is_empty() {
                String::new()
            } else {
                format!(", strengthened: {}", strengthened.join("; "))
            };
            format!("{} reinstated{strengthened}", control(id))
        }
        EventKind::StatusUpdateSent { audience, channels, .. } => {
            format!("Status update for {audience} sent to {}", channels.join(", "))
        }
        EventKind::StatusUpdateFailed { audience, error } => format!("Status update for {audience} failed: {error}"),
        // A note is its text.
        EventKind::NoteAdded => return Some(one_line(event.reason.as_deref().unwrap_or("(empty note)"))),
        EventKind::StepRetried { phase: id, step: step_id } => {
            format!("{} retried failed step {}", event.actor, step(id, step_id))
        }
        EventKind::StepSkippedByHand { phase: id, step: step_id } => {
            format!("{} skipped failed step {}", event.actor, step(id, step_id))
        }
        EventKind::StepOverridden { phase: id, step: step_id, .. } => {
            format!("{} marked failed step {} done by hand", event.actor, step(id, step_id))
        }
        EventKind::GateRetried { phase: id, gate } => format!("{} retried check {gate} of {}", event.actor, phase(id)),
        EventKind::GateOverridden { phase: id, gate } => {
            format!("{} passed check {gate} of {} by hand", event.actor, phase(id))
        }
        EventKind::PhaseResumed { phase: id } => format!("Phase resumed: {}", phase(id)),
        EventKind::CampaignStarted { phase: id, step: step_id, recipients, .. } => {
            format!("Campaign started: {}, to {recipients} recipients", step(id, step_id))
        }
        EventKind::CampaignProgress { phase: id, step: step_id, sent, batches_done, batches, .. } => {
            format!("Campaign {}: {sent} sent ({batches_done} of {batches} batches)", step(id, step_id))
        }
        EventKind::CampaignTestSent { phase: id, step: step_id, test } => {
            format!("{} sent a test of campaign {} to {} address(es)", event.actor, step(id, step_id), test.to.len())
        }
        EventKind::CampaignLaunched { phase: id, step: step_id } => {
            format!("{} launched campaign {}", event.actor, step(id, step_id))
        }
        EventKind::CampaignPaused { phase: id, step: step_id } => {
            format!("{} paused campaign {}", event.actor, step(id, step_id))
        }
        EventKind::CampaignResumed { phase: id, step: step_id } => {
            format!("{} resumed campaign {}", event.actor, step(id, step_id))
        }
        EventKind::CampaignCancelled { phase: id, step: step_id } => {
            format!("{} cancelled campaign {}", event.actor, step(id, step_id))
        }
        EventKind::CampaignFinished { phase: id, step: step_id, totals, .. } => {
            let ended = if totals.cancelled { "ended (cancelled)" } else { "finished" };
            format!(
                "Campaign {ended}: {}: {} of {} sent, {} failed",
                step(id, step_id),
                totals.sent,
                totals.recipients,
                totals.failed
            )
        }
        EventKind::IncidentClosed { abandoned: false } => "Incident closed".to_string(),
        EventKind::IncidentClosed { abandoned: true } => format!("Incident abandoned by {}", event.actor),
    };
    // A person's reason (an approval's note, a step's evidence, the closing note) belongs with it.
    let text = match &event.reason {
        Some(reason) => format!("{text}: {reason}"),
        None => text,
    };
    Some(one_line(&text))
}

/// Text on one line, at most [`MAX_SUMMARY`] characters.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= MAX_SUMMARY {
        return joined;
    }
    let cut: String = joined.chars().take(MAX_SUMMARY - 1).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Duration;

    use super::*;
    use crate::engine::{Command, Directory, Request, decide};
    use crate::render::Catalog;

    const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: till-breach
version: "2"
title: Till breach
inputs:
  severity: { type: string, default: high }
roles:
  ciso: {}
  ops: {}
controls:
  till-mfa: { title: MFA on store tills }
channels:
  out: { stdout: {} }
audiences:
  internal: { title: Incident team, template: internal-update, channels: [out] }
  public: { template: public-status, channels: [out] }
phases:
  - id: contain
    title: Contain the intrusion
    steps:
      - id: isolate
        title: Isolate the tills
        manual: { instructions: Isolate the tills, assignee: ops }
  - id: relax
    needs: [contain]
    entry:
      - approval: { roles: [ciso], count: 2 }
    steps:
      - id: tills
        relax: { control: till-mfa, reason: Keep the tills trading, expires_in: 72h, compensating: [Short sessions] }
  - id: reinstate
    needs: [relax]
    entry:
      - id: all-clear
        signal: {}
    steps:
      - id: back
        reinstate: { control: till-mfa }
status_updates:
  - on: [control_relaxed]
    audiences: [internal]
triggers:
  - id: soc-all-clear
    source: siem
    format: json
    key: payload.id
    satisfy: reinstate/all-clear
"#;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T02:00:00Z").unwrap().with_timezone(&Utc) + Duration::minutes(minutes)
    }

    fn runbook() -> Runbook {
        crate::runbook::parse(RUNBOOK, &Catalog::built_in()).expect("the test runbook is valid")
    }

    /// Runs commands through the engine, as `(minute, actor, command)`, and returns the log.
    fn run(runbook: &Runbook, commands: Vec<(i64, &str, Command)>) -> Vec<Event> {
        let directory = Directory::with(&[("dana", &["ops", "ciso"]), ("sam", &["ciso"]), ("lee", &["ciso"])]);
        let mut events: Vec<Event> = Vec::new();
        for (minute, actor, command) in commands {
            let incident = (!events.is_empty()).then(|| Incident::from_events(&events).unwrap());
            let request = Request { actor: actor.to_string(), at: at(minute), command };
            let decision = decide(runbook, &directory, incident.as_ref(), &request).expect("the command is accepted");
            events.extend(decision.events);
        }
        events
    }

    fn start() -> (i64, &'static str, Command) {
        let command = Command::Start {
            incident: "inc-1".into(),
            runbook_text: RUNBOOK.into(),
            inputs: BTreeMap::new(),
            key: None,
        };
        (0, "trigger:alertmanager", command)
    }

    fn complete(minute: i64) -> (i64, &'static str, Command) {
        let command = Command::CompleteStep {
            phase: "contain".into(),
            step: "isolate".into(),
            evidence: Some("ports down".into()),
            outputs: BTreeMap::new(),
        };
        (minute, "dana", command)
    }

    fn approve(minute: i64, actor: &'static str) -> (i64, &'static str, Command) {
        (minute, actor, Command::Approve { phase: "relax".into(), gate: None, note: Some("tills must trade".into()) })
    }

    fn context(runbook: &Runbook, events: &[Event], now: i64) -> Value {
        let incident = Incident::from_events(events).unwrap();
        status_context(runbook, &incident, events, "internal", "requested", Some("hello"), at(now))
    }

    #[test]
    fn a_new_incident_waits_for_its_manual_step() {
        let runbook = runbook();
        let events = run(&runbook, vec![start()]);
        let context = context(&runbook, &events, 5);
        assert_eq!(context["incident"]["id"], "inc-1");
        assert_eq!(context["incident"]["title"], "Till breach");
        assert_eq!(context["incident"]["state"], "open");
        assert_eq!(context["incident"]["started_at"], "2026-11-24T02:00:00Z");
        assert_eq!(context["incident"]["started_by"], "trigger:alertmanager");
        assert_eq!(context["incident"]["inputs"], json!({ "severity": "high" }));
        assert_eq!(context["incident"]["closed_at"], Value::Null);
        assert_eq!(context["runbook"]["version"], "2");
        assert!(context["runbook"]["hash"].as_str().unwrap().starts_with("sha256:"));
        let states: Vec<&str> =
            context["phases"].as_array().unwrap().iter().map(|p| p["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["running", "pending", "pending"]);
        assert_eq!(context["phases"][0]["title"], "Contain the intrusion");
        assert_eq!(context["phases"][1]["title"], Value::Null);
        let blocking = context["blocking"].as_array().unwrap();
        assert_eq!(blocking.len(), 1, "{blocking:?}");
        assert_eq!(blocking[0]["phase"], "contain");
        assert_eq!(blocking[0]["who"], json!(["ops"]));
        assert_eq!(context["audience"], json!({ "id": "internal", "title": "Incident team" }));
        assert_eq!(
            context["update"],
            json!({ "reason": "requested", "message": "hello", "at": "2026-11-24T02:05:00Z" })
        );
        assert_eq!(context["now"], "2026-11-24T02:05:00Z");
        assert_eq!(context["relaxations"], json!([]));
    }

    #[test]
    fn an_approval_in_progress_says_who_gave_it_and_who_may_give_the_rest() {
        let runbook = runbook();
        let events = run(&runbook, vec![start(), complete(10), approve(20, "sam")]);
        let context = context(&runbook, &events, 25);
        let blocking = &context["blocking"][0];
        assert_eq!(blocking["phase"], "relax");
        assert_eq!(blocking["gate"], "approval");
        assert!(
            blocking["waiting_for"].as_str().unwrap().contains("approval by 2 of ciso (1 given: sam)"),
            "{blocking}"
        );
        assert_eq!(blocking["who"], json!(["ciso"]));
    }

    #[test]
    fn a_relaxation_counts_down_then_shows_overdue() {
        let runbook = runbook();
        let events = run(&runbook, vec![start(), complete(10), approve(20, "sam"), approve(30, "lee")]);
        let relaxation = &context(&runbook, &events, 80)["relaxations"][0];
        assert_eq!(relaxation["control"], "till-mfa");
        assert_eq!(relaxation["title"], "MFA on store tills");
        assert_eq!(relaxation["reason"], "Keep the tills trading");
        assert_eq!(relaxation["relaxed_at"], "2026-11-24T02:30:00Z");
        assert_eq!(relaxation["relaxed_by"], "lee");
        assert_eq!(relaxation["approved_by"], json!(["sam", "lee"]));
        assert_eq!(relaxation["expires_at"], "2026-11-27T02:30:00Z");
        assert_eq!(relaxation["time_left"], "71h 10m");
        assert_eq!(relaxation["overdue"], false);
        assert_eq!(relaxation["compensating"], json!(["Short sessions"]));
        assert_eq!(relaxation["reinstated_at"], Value::Null);
        let late = &context(&runbook, &events, 30 + 72 * 60 + 120)["relaxations"][0];
        assert_eq!(late["time_left"], "overdue by 2h");
        assert_eq!(late["overdue"], true);
        let blocking = &context(&runbook, &events, 80)["blocking"][0];
        assert_eq!(blocking["gate"], "all-clear");
        assert_eq!(blocking["who"], json!(["a trigger"]));
    }

    #[test]
    fn the_timeline_tells_each_event_in_a_line_and_keeps_the_last_twenty() {
        let runbook = runbook();
        let mut commands = vec![start(), complete(10)];
        for minute in 0..25 {
            commands.push((11 + minute, "dana", Command::Note { text: format!("note\n{minute}") }));
        }
        let events = run(&runbook, commands);
        let timeline = context(&runbook, &events, 60)["timeline"].as_array().unwrap().clone();
        assert_eq!(timeline.len(), TIMELINE_LENGTH);
        let last = timeline.last().unwrap();
        assert_eq!(last["summary"], "note 24");
        assert_eq!(last["kind"], "note_added");
        assert_eq!(last["actor"], "dana");
        assert_eq!(last["at"], "2026-11-24T02:35:00Z");

        let events = run(&runbook, vec![start(), complete(10), approve(20, "sam"), approve(30, "lee")]);
        let summaries: Vec<String> = context(&runbook, &events, 40)["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["summary"].as_str().unwrap().to_string())
            .collect();
        let expected = [
            "Incident started with runbook till-breach v2",
            "Step done: Isolate the tills (Contain the intrusion): ports down",
            "sam approved gate approval of relax as ciso: tills must trade",
            "MFA on store tills relaxed for 72h, until 2026-11-27T02:30:00Z",
        ];
        for line in expected {
            assert!(summaries.iter().any(|s| s == line), "no {line:?} in {summaries:#?}");
        }
        assert!(!summaries.iter().any(|s| s.contains('\n')));
    }

    #[test]
    fn a_campaign_shares_the_incident_the_runbook_and_its_own_key_and_counts() {
        let runbook = runbook();
        let events = run(&runbook, vec![start(), complete(10)]);
        let incident = Incident::from_events(&events).unwrap();
        let counts = Counts { read: 12, accepted: 9, rejected: 1, duplicates: 1, suppressed: 1 };
        let base = campaign_base(&runbook, &incident, "contain", "isolate", &counts, at(30));
        let status = context(&runbook, &events, 30);
        for shared in ["incident", "runbook", "now"] {
            assert_eq!(base[shared], status[shared], "{shared}");
        }
        assert_eq!(
            base["campaign"],
            json!({
                "key": "inc-1/contain/isolate", "phase": "contain", "step": "isolate", "title": "Isolate the tills",
                "counts": { "read": 12, "accepted": 9, "rejected": 1, "duplicates": 1, "suppressed": 1 },
            })
        );
        let mut keys: Vec<&String> = base.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["campaign", "incident", "now", "runbook"]);
        assert_eq!(
            campaign_base(&runbook, &incident, "relax", "tills", &counts, at(30))["campaign"]["title"],
            Value::Null
        );
    }

    #[test]
    fn durations_read_as_a_countdown() {
        let table = [(0, "under 1m"), (45, "45m"), (120, "2h"), (71 * 60 + 10, "71h 10m")];
        for (minutes, expected) in table {
            assert_eq!(span(Duration::minutes(minutes)), expected);
        }
    }

    #[test]
    fn long_summaries_are_cut() {
        let text = "word ".repeat(200);
        let line = one_line(&text);
        assert_eq!(line.chars().count(), MAX_SUMMARY);
        assert!(line.ends_with('…'));
    }
}
