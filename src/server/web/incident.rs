//! The incidents list, one incident's page, and the actions on it. Each action is a plain form
//! posted with the session's CSRF token, decided by the engine as the signed-in person through
//! `Runtime::submit` (the events and the actor are those the API and the CLI record), then
//! answered with a redirect back to the page and a flash message: what was done, or the
//! engine's reason for refusing. A page offers only the actions the engine would not refuse the
//! person for want of a role (it decides each on the current state without storing anything);
//! the server decides again when the form is posted.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::session::{Flash, Signed};
pub use super::timeline::{TIMELINE_PAGE, Timeline, View};
use super::{Page, Posted, graph, offered};
use crate::engine::blocking::{self, blockers, who_can_approve};
use crate::engine::command::{CampaignAction, CampaignTest};
use crate::engine::scope::known_false;
use crate::engine::state::{PhaseStatus, StepStatus};
use crate::engine::{Command, Directory, Incident};
use crate::render::context::status_context;
use crate::runbook::model::{Action, GateKind};
use crate::runbook::{Runbook, Templates};
use crate::runtime::Runtime;
use crate::runtime::campaign::Trouble;
use crate::server::App;
use crate::store::Store;

pub fn severity(incident: &Incident) -> Value {
    incident.inputs.get("severity").cloned().unwrap_or(Value::Null)
}

/// A time as the dashboard shows it: `2026-12-05 03:45:08 UTC`.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A campaign's pause or cancel for the page: who, when and the reason recorded with it.
fn steered(steered: &crate::engine::state::Steered) -> Value {
    json!({ "by": steered.by, "at": when(steered.at), "reason": steered.reason })
}

/// `GET /incidents/{id}?kind=&page=`.
pub async fn page<S: Store>(
    State(app): State<Arc<App<S>>>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let view = View::parse(&query)
        .map_err(|why| app.error_page(StatusCode::BAD_REQUEST, Some(&signed), "Bad request", &why))?;
    let (page, title) = read(&app.runtime, &id, &signed.person, &view, Utc::now())
        .await
        .map_err(|error| app.runtime_error(&signed, error))?;
    app.page("web/incident.html", Some(&signed), "incidents", &title, page)
}

/// What the incident's page shows `person` (its context) and its title: the state as the
/// runtime keeps it, and one page of the log at the state's version, so a request decodes the
/// events it shows, not the whole log.
pub async fn read<S: Store, T: Templates + Send + Sync>(
    runtime: &Runtime<S, T>,
    id: &str,
    person: &str,
    view: &View,
    now: DateTime<Utc>,
) -> Result<(Value, String), crate::runtime::Error> {
    let (incident, runbook) = runtime.state(id).await?;
    let timeline = Timeline::read(runtime, id, incident.version, view).await?;
    let troubles = troubles(runtime, &runbook, &incident).await?;
    let page = context(&runbook, &incident, &timeline, runtime.directory(), person, view, &troubles, now);
    Ok((page, format!("{} · {}", incident.id, runbook.title())))
}

/// The troubles of the incident's campaigns still sending (a batch retrying after a failed
/// attempt, and why), by `PHASE/STEP`, as the store keeps their batches.
pub async fn troubles<S: Store, T: Templates + Send + Sync>(
    runtime: &Runtime<S, T>,
    runbook: &Runbook,
    incident: &Incident,
) -> Result<BTreeMap<String, Trouble>, crate::runtime::Error> {
    let mut troubles = BTreeMap::new();
    for phase in runbook.phases() {
        for step in &phase.steps {
            let state = incident.step(&phase.id, &step.id);
            let sending = matches!(step.action, Action::Campaign { .. })
                && state.status == StepStatus::Running
                && state.campaign.as_ref().is_some_and(|progress| progress.finished.is_none());
            if !sending {
                continue;
            }
            let batches =
                runtime.store().campaign_batches(&format!("{}/{}/{}", incident.id, phase.id, step.id)).await?;
            if let Some(trouble) = Trouble::of(&batches) {
                troubles.insert(format!("{}/{}", phase.id, step.id), trouble);
            }
        }
    }
    Ok(troubles)
}

/// Everything the incident's page shows, for `person` (whose rights decide the forms offered);
/// `troubles` are its campaigns' ([`troubles`]).
#[allow(clippy::too_many_arguments)]
pub fn context(
    runbook: &Runbook,
    incident: &Incident,
    timeline: &Timeline,
    directory: &Directory,
    person: &str,
    view: &View,
    troubles: &BTreeMap<String, Trouble>,
    now: DateTime<Utc>,
) -> Value {
    let may = |command: Command| offered(runbook, directory, incident, person, command);
    let blocking: Vec<Value> = blockers(runbook, incident)
        .iter()
        .map(|blocker| {
            let people = who_can_approve(runbook, incident, directory, blocker);
            // Where on the page the form that unblocks it is, when it is not beside it.
            let to = match blocker.kind {
                "step" => Some(("step", "the step's form")),
                "failed" | "retrying" if blocker.what.contains('/') => Some(("failed", "the step's recovery forms")),
                "check" | "failed_check" => Some(("check", "the check's forms")),
                _ => None,
            };
            let form = match blocker.kind {
                "approval" => {
                    may(Command::Approve { phase: blocker.phase.clone(), gate: Some(blocker.what.clone()), note: None })
                        .then_some("approve")
                }
                "signal" => {
                    may(Command::Signal { phase: blocker.phase.clone(), gate: blocker.what.clone(), note: None })
                        .then_some("signal")
                }
                _ => None,
            };
            // A manual step that names no assignee is anyone's to mark done.
            let anyone = blocker.kind == "step"
                && blocker.roles.is_empty()
                && blocker.what.split_once('/').is_some_and(|(phase, step)| {
                    runbook
                        .phase(phase)
                        .and_then(|phase| phase.step(step))
                        .is_some_and(|step| matches!(step.action, Action::Manual { .. }))
                });
            json!({
                "anyone": anyone,
                "phase": blocker.phase, "what": blocker.what, "kind": blocker.kind,
                "waiting_for": blocker.waiting_for, "roles": blocker.roles, "people": people, "form": form,
                "slug": slug(&format!("{}-{}", blocker.phase, blocker.what)), "target": slug(&blocker.what),
                // A campaign step that waits on a failing channel says so: it does not go on by itself.
                "retrying": (blocker.kind == "step").then(|| troubles.get(&blocker.what)).flatten()
                    .map(|trouble| trouble.detail(now)),
                "to": to.map(|(section, label)| json!({ "section": section, "label": label })),
            })
        })
        .collect();

    let mut gates = Vec::new();
    let mut checks = Vec::new();
    let mut manual = Vec::new();
    let mut failed = Vec::new();
    let mut campaigns = Vec::new();
    for phase in runbook.phases() {
        let status = incident.phase(&phase.id).status;
        if status == PhaseStatus::Pending {
            continue;
        }
        for gate in phase.gates() {
            if let GateKind::Check(_) = gate.kind {
                checks.push(check_gate(incident, phase, &gate.id, &may));
                continue;
            }
            let GateKind::Approval { roles, count, four_eyes } = &gate.kind else { continue };
            let state = incident.gate(&phase.id, &gate.id);
            let given: Vec<Value> = state
                .approvals
                .iter()
                .map(|a| json!({ "person": a.person, "role": a.role, "at": when(a.at) }))
                .collect();
            let still = (*count as usize).saturating_sub(given.len());
            gates.push(json!({
                "phase": phase.id, "gate": gate.id, "roles": roles, "count": count, "four_eyes": four_eyes,
                "given": given, "still": if state.passed_at.is_some() { 0 } else { still },
                "passed": state.passed_at.map(when),
            }));
        }
        // Steps run in the order written: one is reached once those before it are over.
        let mut reached = true;
        for step in &phase.steps {
            let state = incident.step(&phase.id, &step.id);
            let before_over = reached;
            reached &= matches!(state.status, StepStatus::Done | StepStatus::Skipped)
                || (step.optional && state.status == StepStatus::Failed);
            let title = step.title.clone().unwrap_or_else(|| step.id.clone());
            let slug = slug(&format!("{}-{}", phase.id, step.id));
            if let Action::Manual { instructions, assignee, evidence, outputs } = &step.action
                && status == PhaseStatus::Running
                && matches!(state.status, StepStatus::Pending | StepStatus::Running)
            {
                // A step the engine is bound to skip is shown as such (and `offered` refuses it).
                let can = may(Command::CompleteStep {
                    phase: phase.id.clone(),
                    step: step.id.clone(),
                    evidence: Some("-".into()),
                    outputs: BTreeMap::new(),
                });
                manual.push(json!({
                    "phase": phase.id, "step": step.id, "title": title, "instructions": instructions,
                    "assignee": assignee, "evidence": evidence, "outputs": outputs, "can": can, "slug": slug,
                    "skipped": known_false(runbook, incident, &phase.id, step),
                }));
            }
            // A step waiting for its next attempt is recovered as one that failed for good.
            if matches!(state.status, StepStatus::Failed | StepStatus::Retrying) {
                let can = may(Command::Retry { phase: phase.id.clone(), step: step.id.clone(), reason: None });
                failed.push(json!({
                    "phase": phase.id, "step": step.id, "title": title, "kind": step.action.kind(),
                    "attempt": state.attempt, "error": state.error, "can": can, "slug": slug,
                    "retry_at": (state.status == StepStatus::Retrying).then(|| state.retry_at.map(when)),
                    "recovery": state.recovery.as_ref().map(|r| json!({
                        "kind": r.kind.as_str(), "by": r.by, "at": when(r.at), "reason": r.reason,
                    })),
                }));
            }
            // A `test_first` step reached and not launched waits for a person: shown, to test and launch.
            let waiting = matches!(step.action, Action::Campaign { test_first: true, .. })
                && status == PhaseStatus::Running
                && before_over
                && state.status == StepStatus::Pending
                && state.launched.is_none();
            if let Action::Campaign { .. } = &step.action
                && (state.campaign.is_some() || state.status != StepStatus::Pending || waiting)
            {
                let progress = state.campaign.clone().unwrap_or_default();
                let sent = progress.sent + progress.failed;
                let percent = (sent * 100).checked_div(progress.recipients).unwrap_or(0).min(100);
                let action = |action: CampaignAction| Command::Campaign {
                    phase: phase.id.clone(),
                    step: step.id.clone(),
                    action,
                    reason: Some("-".into()),
                };
                // A cancelled campaign only finishes its batches in flight: nothing is offered.
                let running =
                    state.status == StepStatus::Running && progress.finished.is_none() && progress.cancelled.is_none();
                let launchable = waiting && state.last_test.as_ref().is_some_and(|t| t.test.went_out());
                // The forms offered, in the order a campaign goes through them; cancel needs a reason.
                let actions: Vec<Value> = [
                    (CampaignAction::Launch, launchable),
                    (CampaignAction::Pause, running && progress.paused.is_none()),
                    (CampaignAction::Resume, running && progress.paused.is_some()),
                    (CampaignAction::Cancel, running),
                ]
                .into_iter()
                .filter(|&(campaign_action, offered)| offered && may(action(campaign_action)))
                .map(|(campaign_action, _)| {
                    let name = campaign_action.as_str();
                    let verb = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
                    json!({ "name": name, "verb": verb, "required": campaign_action == CampaignAction::Cancel })
                })
                .collect();
                campaigns.push(json!({
                    "phase": phase.id, "step": step.id, "title": title, "status": state.status.as_str(),
                    "recipients": progress.recipients, "sent": progress.sent, "failed": progress.failed,
                    "rejected": progress.rejected, "batches": progress.batches, "batches_done": progress.batches_done,
                    "percent": percent,
                    "paused": progress.paused.as_ref().map(steered),
                    "cancelled": progress.cancelled.as_ref().map(steered),
                    "finished": progress.finished.is_some(),
                    "retrying": troubles.get(&format!("{}/{}", phase.id, step.id)).map(|trouble| json!({
                        "batch": trouble.batch, "attempt": trouble.attempt, "of": trouble.of,
                        "class": trouble.class.as_str(), "error": trouble.error, "at": when(trouble.at),
                        "text": trouble.detail(now), "halted": trouble.halted(),
                    })),
                    "waiting": waiting,
                    "actions": actions,
                    "can_test": may(Command::CampaignTest {
                        phase: phase.id.clone(),
                        step: step.id.clone(),
                        test: CampaignTest { to: vec!["-".into()], recipients: Vec::new(), messages: 0, refused: 0, error: None },
                    }),
                    "last_test": state.last_test.as_ref().map(|t| json!({
                        "by": t.by, "at": when(t.at), "went_out": t.test.went_out(),
                        "messages": t.test.messages, "refused": t.test.refused,
                    })),
                    "slug": slug,
                }));
            }
        }
    }

    let relaxations: Vec<Value> = incident
        .relaxations
        .values()
        .map(|r| {
            let open = r.is_open();
            let overdue = open && (r.overdue || r.expires_at <= now);
            let exposure = r.reinstated_at.unwrap_or(now) - r.relaxed_at;
            json!({
                "control": r.control, "phase": r.phase, "step": r.step, "reason": r.reason,
                "relaxed_at": when(r.relaxed_at), "relaxed_by": r.relaxed_by, "expires_at": when(r.expires_at),
                "expires_iso": r.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "left": left(r.expires_at, now), "overdue": overdue, "open": open,
                "exposure": duration(exposure), "reinstated_at": r.reinstated_at.map(when),
                "reinstated_by": r.reinstated_by, "compensating": r.compensating,
                "approved_by": r.approved_by.iter()
                    .map(|a| format!("{} ({}, {})", a.person, a.role, when(a.at)))
                    .collect::<Vec<_>>().join("; "),
            })
        })
        .collect();

    let audiences: Vec<Value> = runbook
        .audiences()
        .iter()
        .map(|audience| {
            json!({
                "id": audience.id, "title": audience.title.as_deref().unwrap_or(&audience.id),
                "last": incident.last_update.get(&audience.id).map(|at| when(*at)),
                "delivered": incident.update_outcome.get(&audience.id).map(|outcome| json!({
                    "at": when(outcome.at), "error": outcome.error,
                })),
                "can_send": may(Command::StatusUpdate { audience: audience.id.clone() }),
            })
        })
        .collect();

    let graph = graph::layout(runbook, Some(incident));
    let timeline = timeline.context(view);
    let closed = incident.closed.as_ref().map(|closed| {
        json!({ "at": when(closed.at), "by": closed.by, "abandoned": closed.abandoned, "reason": closed.reason })
    });
    json!({
        "id": incident.id, "runbook": runbook.id(), "runbook_title": runbook.title(),
        "runbook_version": incident.runbook_version, "severity": severity(incident),
        "state": if incident.closed.is_some() { "closed" } else { "open" }, "closed": closed,
        "started_at": when(incident.started_at), "started_by": incident.started_by,
        "updated_at": when(incident.updated_at), "version": incident.version,
        "graph": graph, "blocking": blocking, "gates": gates, "checks": checks, "manual": manual, "failed": failed,
        "campaigns": campaigns, "relaxations": relaxations, "audiences": audiences, "timeline": timeline,
        "can_note": may(Command::Note { text: "-".into() }),
        "can_close": may(Command::Close { note: None }),
        "can_abandon": may(Command::Abandon { reason: "-".into() }),
    })
}

/// A check gate as the page shows it: its polls, its last answer, whether its deadline failed the
/// phase, what a person last did about it, and whether this person may retry or pass it by hand.
fn check_gate(
    incident: &Incident,
    phase: &crate::runbook::model::Phase,
    gate: &str,
    may: &impl Fn(Command) -> bool,
) -> Value {
    let state = incident.gate(&phase.id, gate);
    let failed = blocking::failed_check(phase, incident).is_some_and(|failed| failed.id == gate);
    let can = state.passed_at.is_none()
        && may(Command::PassGate { phase: phase.id.clone(), gate: gate.to_string(), evidence: "-".into() });
    json!({
        "phase": phase.id, "gate": gate, "polls": state.polls, "failed": failed, "can": can,
        "slug": slug(&format!("{}-{gate}", phase.id)),
        "last": state.last_check.as_ref().map(|last| json!({
            "at": when(last.at), "ok": last.ok, "answer": last.describe(),
        })),
        "passed": state.passed_at.map(when),
        "recovery": state.recovery.as_ref().map(|r| json!({
            "kind": r.kind.as_str(), "by": r.by, "at": when(r.at), "reason": r.reason,
        })),
    })
}

/// How long until `at`, or how long past it.
fn left(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if at > now { format!("{} left", duration(at - now)) } else { format!("OVERDUE by {}", duration(now - at)) }
}

fn duration(span: chrono::Duration) -> String {
    let seconds = span.num_seconds().max(0);
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m {}s", seconds % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// An id usable in HTML ids: letters, digits and dashes.
pub fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// `GET /incidents/{id}/updates/{audience}`: the next status update for an audience as it would
/// be sent now, every variant of its template, with the form that sends it.
pub async fn preview<S: Store>(
    State(app): State<Arc<App<S>>>,
    signed: Signed,
    Path((id, audience)): Path<(String, String)>,
) -> Page {
    let loaded = app.runtime.load(&id).await.map_err(|error| app.runtime_error(&signed, error))?;
    let Some(model) = loaded.runbook.audiences().iter().find(|a| a.id == audience) else {
        let why = format!("runbook `{}` has no audience `{audience}`", loaded.runbook.id());
        return Err(app.error_page(StatusCode::NOT_FOUND, Some(&signed), "Not found", &why).into());
    };
    let catalog = app.runtime.templates();
    let context =
        status_context(&loaded.runbook, &loaded.incident, &loaded.events, &audience, "requested", None, Utc::now());
    let variants: Vec<Value> = catalog
        .files(&model.template)
        .into_iter()
        .map(|file| match catalog.render(&file, &context) {
            Ok(text) => json!({ "file": file, "text": text, "error": null }),
            Err(error) => json!({ "file": file, "text": null, "error": error.to_string() }),
        })
        .collect();
    let (runbook, incident) = (&loaded.runbook, &loaded.incident);
    let can_send = offered(
        runbook,
        app.runtime.directory(),
        incident,
        &signed.person,
        Command::StatusUpdate { audience: audience.clone() },
    );
    let page = json!({
        "id": id, "audience": audience, "title": model.title.as_deref().unwrap_or(&model.id),
        "template": model.template, "channels": model.channels, "variants": variants, "can_send": can_send,
        "last": incident.last_update.get(&audience).map(|at| when(*at)),
    });
    app.page("web/preview.html", Some(&signed), "incidents", &format!("Update to {audience}"), page)
}

/// Decides `command` as the signed-in person; back to the incident's page with what happened.
pub(super) async fn act<S: Store>(app: &App<S>, posted: &Posted, id: &str, command: Command, done: String) -> Response {
    let flash = match app.runtime.submit(id, &posted.signed.person, command).await {
        Ok(_) => Flash::done(done),
        Err(crate::runtime::Error::Store(crate::store::Error::NotFound { .. })) => {
            let why = format!("there is no incident `{id}`");
            return app.error_page(StatusCode::NOT_FOUND, Some(&posted.signed), "Not found", &why);
        }
        Err(error @ (crate::runtime::Error::Refused(_) | crate::runtime::Error::Contended { .. })) => {
            Flash::refused(format!("Refused: {error}"))
        }
        Err(error) => return app.runtime_error(&posted.signed, error),
    };
    app.sessions.flash(&posted.signed, flash);
    Redirect::to(&format!("/incidents/{}", super::url_encode(id))).into_response()
}

pub async fn approve<S: Store>(State(app): State<Arc<App<S>>>, Path(id): Path<String>, posted: Posted) -> Response {
    let (phase, gate) = (posted.fields.text("phase").unwrap_or_default(), posted.fields.text("gate"));
    let done = format!("Approved {}.", gate.as_deref().map_or(format!("`{phase}`"), |g| format!("`{phase}/{g}`")));
    let command = Command::Approve { phase, gate, note: posted.fields.text("note") };
    act(&app, &posted, &id, command, done).await
}

pub async fn signal<S: Store>(State(app): State<Arc<App<S>>>, Path(id): Path<String>, posted: Posted) -> Response {
    let (phase, gate) =
        (posted.fields.text("phase").unwrap_or_default(), posted.fields.text("gate").unwrap_or_default());
    let done = format!("Signalled `{phase}/{gate}`.");
    let command = Command::Signal { phase, gate, note: posted.fields.text("note") };
    act(&app, &posted, &id, command, done).await
}

pub async fn note<S: Store>(State(app): State<Arc<App<S>>>, Path(id): Path<String>, posted: Posted) -> Response {
    let Some(text) = posted.fields.text("text") else {
        app.sessions.flash(&posted.signed, Flash::refused("Refused: a note needs some text."));
        return Redirect::to(&format!("/incidents/{}", super::url_encode(&id))).into_response();
    };
    act(&app, &posted, &id, Command::Note { text }, "Note added.".into()).await
}

pub async fn close<S: Store>(State(app): State<Arc<App<S>>>, Path(id): Path<String>, posted: Posted) -> Response {
    let (command, done) = if posted.fields.get("abandon").is_some() {
        let reason = posted.fields.text("reason").unwrap_or_default();
        (Command::Abandon { reason }, "Incident abandoned.".to_string())
    } else {
        (Command::Close { note: posted.fields.text("note") }, "Incident closed.".to_string())
    };
    act(&app, &posted, &id, command, done).await
}

pub async fn done<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, phase, step)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let outputs: BTreeMap<String, Value> = posted
        .fields
        .prefixed("output.")
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| {
            let value = value.trim();
            (name.to_string(), serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string())))
        })
        .collect();
    let done = format!("Step `{phase}/{step}` marked done.");
    let command = Command::CompleteStep { phase, step, evidence: posted.fields.text("evidence"), outputs };
    act(&app, &posted, &id, command, done).await
}

pub async fn retry<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, phase, step)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let done = format!("Step `{phase}/{step}` will be tried again.");
    let command = Command::Retry { phase, step, reason: posted.fields.text("reason") };
    act(&app, &posted, &id, command, done).await
}

pub async fn skip<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, phase, step)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let done = format!("Step `{phase}/{step}` skipped.");
    let command = Command::Skip { phase, step, reason: posted.fields.text("reason").unwrap_or_default() };
    act(&app, &posted, &id, command, done).await
}

pub async fn retry_gate<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, phase, gate)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let done = format!("Check `{phase}/{gate}` will be probed again, with a fresh deadline.");
    let command = Command::RetryGate { phase, gate, reason: posted.fields.text("reason") };
    act(&app, &posted, &id, command, done).await
}

pub async fn pass_gate<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, phase, gate)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let done = format!("Gate `{phase}/{gate}` passed by hand.");
    let command = Command::PassGate { phase, gate, evidence: posted.fields.text("evidence").unwrap_or_default() };
    act(&app, &posted, &id, command, done).await
}

pub async fn send_update<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, audience)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let done = format!("Status update to `{audience}` queued; the runtime sends it.");
    act(&app, &posted, &id, Command::StatusUpdate { audience }, done).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Request;
    use crate::engine::decide::decide;

    /// Hostile text in a runbook, a note, evidence and a webhook's alert renders as text.
    #[test]
    fn hostile_text_renders_inert() {
        let yaml = r#"apiVersion: phasegate/v1
kind: Runbook
id: hostile
title: "<script>alert(1)</script>"
roles:
  commander: {}
phases:
  - id: contain
    title: "\"><img src=x onerror=alert(2)>"
    steps:
      - id: isolate
        manual: { instructions: "javascript:alert(4)", assignee: commander, outputs: [ticket] }
      - id: other
        title: "<a href=\"javascript:alert(3)\">x</a>"
        manual: { instructions: "<svg onload=alert(5)>", assignee: commander }
"#;
        let runbook = crate::runbook::parse(yaml, &crate::render::Catalog::built_in()).unwrap();
        let directory = Directory::with(&[("dana", &["commander"])]);
        let at = DateTime::parse_from_rfc3339("2026-12-05T03:00:00Z").unwrap().with_timezone(&Utc);
        let start =
            Command::Start { incident: "inc-1".into(), runbook_text: yaml.into(), inputs: BTreeMap::new(), key: None };
        let mut events =
            decide(&runbook, &directory, None, &Request { actor: "dana".into(), at, command: start }).unwrap().events;
        let mut incident = Incident::from_events(&events).unwrap();
        let hostile = [
            Command::Note { text: "<script>alert(6)</script>".into() },
            Command::CompleteStep {
                phase: "contain".into(),
                step: "isolate".into(),
                evidence: Some("\"><img src=x onerror=alert(7)>".into()),
                outputs: BTreeMap::from([("ticket".to_string(), Value::String("<b>8</b>".into()))]),
            },
        ];
        for command in hostile {
            let decision =
                decide(&runbook, &directory, Some(&incident), &Request { actor: "dana".into(), at, command }).unwrap();
            for event in decision.events {
                incident.apply(&event);
                events.push(event);
            }
        }
        let pages = crate::render::web::Pages::built_in().unwrap();
        // Every event on the one page, newest first, as the store gives them.
        let mut counts: crate::store::Counts = Vec::new();
        for event in &events {
            match counts.iter_mut().find(|(kind, _)| kind == event.kind.name()) {
                Some((_, count)) => *count += 1,
                None => counts.push((event.kind.name().to_string(), 1)),
            }
        }
        counts.sort();
        let shown = events.iter().cloned().enumerate().rev().map(|(index, event)| (index as u64 + 1, event)).collect();
        let timeline = Timeline { version: events.len() as u64, counts, page: 1, events: shown };
        let view = View { kind: None, page: 1 };
        let page = context(&runbook, &incident, &timeline, &directory, "dana", &view, &BTreeMap::new(), at);
        let html = super::super::render(
            &pages,
            "web/incident.html",
            Some(("dana", "tok")),
            None,
            "",
            "<script>x</script>",
            page,
        )
        .unwrap();
        for injected in
            ["<script>alert", "<img src=x", "<svg onload", "href=\"javascript:", "<b>8</b>", "<a href=\"javascript"]
        {
            assert!(!html.contains(injected), "`{injected}` reached the page as markup");
        }
        for shown in [
            "&lt;a href=&quot;javascript:alert(3)&quot;&gt;",
            "&lt;script&gt;alert(1)&lt;&#x2F;script&gt;",
            "&lt;svg onload=alert(5)&gt;",
            "&lt;script&gt;alert(6)",
        ] {
            let shown = shown.replace("&#x2F;", "/");
            assert!(html.contains(&shown), "`{shown}` is shown as text");
        }
        assert!(!html.contains("<script>") || html.matches("<script").count() == 1, "only the layout's own script tag");
        assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));
    }

    #[test]
    fn times_left_and_past_read_plainly() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T03:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(left(now + chrono::Duration::minutes(90), now), "1h 30m left");
        assert_eq!(left(now - chrono::Duration::seconds(45), now), "OVERDUE by 45s");
        assert_eq!(duration(chrono::Duration::hours(50)), "2d 2h");
        assert_eq!(slug("contain/Approval 2"), "contain-approval-2");
    }
}
