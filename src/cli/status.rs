//! `phasegate status INCIDENT`: the board a CISO reads at a glance: where each phase stands, what
//! holds the incident up and who can unblock it, open control relaxations and their time left,
//! and the latest events.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Format;
use super::incident::{Common, open};
use crate::engine::blocking::{Blocker, blockers, who_can_approve};
use crate::engine::state::PhaseStatus;
use crate::engine::{Directory, Event, Incident};
use crate::runbook::Runbook;
use crate::runbook::model::format_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    incident: String,
    /// How many of the latest events to show.
    #[arg(long, default_value_t = 10)]
    events: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: Args, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let opened = open(&args.common, templates).await?;
    let loaded = opened.runtime.load(&args.incident).await?;
    let now = Utc::now();
    let output = match args.format {
        Format::Text => {
            board(&loaded.runbook, &loaded.incident, &loaded.events, opened.runtime.directory(), now, args.events)
        }
        Format::Json => {
            let blocking: Vec<serde_json::Value> = blockers(&loaded.runbook, &loaded.incident)
                .into_iter()
                .map(|blocker| {
                    let people =
                        who_can_approve(&loaded.runbook, &loaded.incident, opened.runtime.directory(), &blocker);
                    let commands = unblocking_commands(&loaded.incident, &blocker, &people);
                    json!({ "blocker": blocker, "people": people, "commands": commands })
                })
                .collect();
            let recent: Vec<&Event> = loaded.events.iter().rev().take(args.events).rev().collect();
            serde_json::to_string_pretty(
                &json!({ "incident": loaded.incident, "blocking": blocking, "recent": recent }),
            )? + "\n"
        }
    };
    super::print_stdout(&output)?;
    Ok(super::exit::OK)
}

/// Whether a phase failed: something waits for a person to retry, skip or abandon.
pub fn failed(incident: &Incident) -> bool {
    incident.phases.values().any(|phase| phase.status == PhaseStatus::Failed)
}

/// The commands that unblock a failed step or check, a step waiting for its retry or a check
/// still polling (or, for a phase that failed otherwise, abandon the incident), as someone who
/// may run them: the first person holding a role, else a
/// placeholder.
pub fn unblocking_commands(incident: &Incident, blocker: &Blocker, people: &[String]) -> Vec<String> {
    if !matches!(blocker.kind, "failed" | "failed_check" | "check" | "retrying") {
        return Vec::new();
    }
    let actor = people.first().cloned().unwrap_or_else(|| match blocker.roles.as_slice() {
        [] => "<nobody: the runbook gives this right to no role>".to_string(),
        roles => format!("<someone holding {}>", roles.join(" or ")),
    });
    let id = &incident.id;
    let what = &blocker.what;
    if matches!(blocker.kind, "failed_check" | "check") {
        let gate = format!("{}/{what}", blocker.phase);
        vec![
            format!("phasegate retry {id} {gate} --gate --as {actor}"),
            format!("phasegate pass {id} {gate} --evidence TEXT --as {actor}"),
        ]
    } else if what.contains('/') {
        vec![
            format!("phasegate retry {id} {what} --as {actor}"),
            format!("phasegate skip {id} {what} --reason TEXT --as {actor}"),
            format!("phasegate done {id} {what} --evidence TEXT --as {actor}"),
        ]
    } else {
        vec![format!("phasegate close {id} --abandon --reason TEXT --as {actor}")]
    }
}

/// The time from `from` to `to` as a runbook writes durations, at least a second.
fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format_duration(std::time::Duration::from_secs((to - from).num_seconds().max(1) as u64))
}

fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ago", between(then, now))
}

/// The status board as text.
pub fn board(
    runbook: &Runbook,
    incident: &Incident,
    events: &[Event],
    directory: &Directory,
    now: DateTime<Utc>,
    recent: usize,
) -> String {
    let mut out = String::new();
    let state = match &incident.closed {
        Some(closed) if closed.abandoned => format!(
            "ABANDONED {} by {}: {}",
            closed.at.format("%Y-%m-%d %H:%M UTC"),
            closed.by,
            closed.reason.as_deref().unwrap_or_default()
        ),
        Some(closed) => format!("CLOSED {} by {}", closed.at.format("%Y-%m-%d %H:%M UTC"), closed.by),
        None if failed(incident) => "OPEN, FAILED: see BLOCKING".to_string(),
        None => "OPEN".to_string(),
    };
    let _ = writeln!(out, "{}  {}  [{state}]", incident.id, runbook.title());
    let version = incident.runbook_version.as_deref().map(|v| format!(" v{v}")).unwrap_or_default();
    let _ = writeln!(out, "runbook {}{version}, sha256 {}", incident.runbook_id, &incident.runbook_sha256[..12]);
    let _ = writeln!(
        out,
        "started {} by {} ({})",
        incident.started_at.format("%Y-%m-%d %H:%M UTC"),
        incident.started_by,
        ago(incident.started_at, now)
    );
    if !incident.inputs.is_empty() {
        let _ = writeln!(out, "inputs");
        for (name, value) in &incident.inputs {
            let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            let shown = if text.chars().count() > 70 {
                format!("{}...", text.chars().take(67).collect::<String>())
            } else {
                text
            };
            let _ = writeln!(out, "  {name:<24} {shown}");
        }
    }

    let _ = writeln!(out, "\nPHASES");
    for phase in runbook.phases() {
        let state = incident.phase(&phase.id);
        let (mark, detail) = match state.status {
            PhaseStatus::Done => {
                ("done   ", state.ended_at.map(|at| format!("finished {}", at.format("%H:%M"))).unwrap_or_default())
            }
            PhaseStatus::Running => {
                ("RUNNING", state.started_at.map(|at| format!("since {}", at.format("%H:%M"))).unwrap_or_default())
            }
            PhaseStatus::Ready => ("WAITING", "for its entry gates".to_string()),
            PhaseStatus::Skipped => ("skipped", "its condition was false".to_string()),
            PhaseStatus::Failed => ("FAILED ", state.error.clone().unwrap_or_default()),
            PhaseStatus::Pending => {
                let waiting: Vec<&str> = phase
                    .needs
                    .iter()
                    .filter(|need| !incident.phase(need).status.is_finished())
                    .map(String::as_str)
                    .collect();
                ("pending", format!("needs {}", waiting.join(", ")))
            }
        };
        let _ = writeln!(out, "  {mark}  {:<24} {detail}", phase.id);
    }

    let blocking = blockers(runbook, incident);
    if !blocking.is_empty() {
        let _ = writeln!(out, "\nBLOCKING");
        for blocker in &blocking {
            let _ = writeln!(out, "  {} [{}]: {}", blocker.phase, blocker.what, blocker.waiting_for);
            let people = who_can_approve(runbook, incident, directory, blocker);
            if !blocker.roles.is_empty() {
                let people =
                    if people.is_empty() { "nobody configured holds it".to_string() } else { people.join(", ") };
                let _ = writeln!(out, "      can unblock: {} ({people})", blocker.roles.join(" or "));
            }
            for command in unblocking_commands(incident, blocker, &people) {
                let _ = writeln!(out, "      run: {command}");
            }
        }
    }

    let relaxations: Vec<_> = incident.relaxations.values().collect();
    if !relaxations.is_empty() {
        let _ = writeln!(out, "\nCONTROL RELAXATIONS");
        for relaxation in relaxations {
            let title = runbook.control(&relaxation.control).map_or("", |c| c.title.as_str());
            let approvers: Vec<&str> = relaxation.approved_by.iter().map(|a| a.person.as_str()).collect();
            let window = match relaxation.reinstated_at {
                Some(back) => {
                    format!("reinstated {} after {}", back.format("%H:%M"), between(relaxation.relaxed_at, back))
                }
                None if now >= relaxation.expires_at => format!("OVERDUE by {}", between(relaxation.expires_at, now)),
                None => format!(
                    "{} left (expires {})",
                    between(now, relaxation.expires_at),
                    relaxation.expires_at.format("%Y-%m-%d %H:%M UTC")
                ),
            };
            let _ = writeln!(out, "  {:<20} {title}: {window}", relaxation.control);
            let _ = writeln!(
                out,
                "      relaxed {} by {}, approved by {}: {}",
                relaxation.relaxed_at.format("%H:%M"),
                relaxation.relaxed_by,
                approvers.join(", "),
                relaxation.reason
            );
        }
    }

    let _ = writeln!(out, "\nLATEST EVENTS");
    for event in events.iter().rev().take(recent).rev() {
        let _ = writeln!(out, "  {}  {:<12} {}", event.at.format("%m-%d %H:%M:%S"), event.actor, event.summary());
    }
    out
}
