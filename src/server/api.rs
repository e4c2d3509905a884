//! The REST API: JSON over HTTP for everything the command line does. Every handler takes the
//! caller from its token; commands are decided by the engine as that person, so what they may do
//! is checked where the CLI's commands are checked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::auth::Caller;
use super::error::{ApiError, Body, Params};
use super::view::{
    Blocking, Board, Entry, PAGE_DEFAULT, PAGE_MAX, Standing, StateFilter, Summary, Timeline, event_kind,
};
use crate::engine::blocking::{blockers, who_can_approve};
use crate::engine::command::CampaignAction;
use crate::engine::{Command, Decision};
use crate::render::context::status_context;
use crate::runbook;
use crate::store::{self, Store};

type Answer = Result<Response, ApiError>;

/// The runbooks loaded at start, each with its file, and the files left out with their problems,
/// in the order of their paths.
pub async fn runbooks<S: Store>(State(app): State<Arc<App<S>>>, _: Caller) -> Answer {
    let name = |path: &std::path::Path| path.file_name().map(|name| name.to_string_lossy().into_owned());
    let mut found: Vec<(&std::path::Path, Value)> = Vec::new();
    for entry in app.runbooks.entries() {
        let runbook = entry.runbook();
        let listed = json!({
            "id": runbook.id(), "title": runbook.title(), "version": runbook.version(), "file": name(entry.path()),
            "valid": true,
        });
        found.push((entry.path(), listed));
    }
    for file in app.runbooks.rejected() {
        let mut listed = json!({
            "file": name(&file.path), "valid": false, "problems": file.diagnostics.len(),
            "diagnostics": file.diagnostics,
        });
        if let Some(id) = &file.id {
            listed["id"] = json!(id);
        }
        if let Some(why) = &file.unreadable {
            listed["error"] = json!(format!("the file cannot be read: {why}"));
        }
        found.push((&file.path, listed));
    }
    found.sort_by(|a, b| a.0.cmp(b.0));
    let found: Vec<Value> = found.into_iter().map(|(_, listed)| listed).collect();
    Ok(Json(json!({ "runbooks": found })).into_response())
}

/// One runbook by id: its text, hash and phases.
pub async fn runbook<S: Store>(State(app): State<Arc<App<S>>>, _: Caller, Path(id): Path<String>) -> Answer {
    let entry = app.runbook(&id)?;
    let (parsed, text) = (entry.runbook(), entry.text());
    let phases: Vec<Value> = parsed
        .phases()
        .iter()
        .map(|phase| json!({ "id": phase.id, "title": phase.title, "needs": phase.needs }))
        .collect();
    Ok(Json(json!({
        "id": parsed.id(), "title": parsed.title(), "version": parsed.version(),
        "sha256": crate::engine::decide::sha256_hex(text), "phases": phases, "text": text,
    }))
    .into_response())
}

/// Validates a runbook sent as the body (YAML): every problem with its code and position.
pub async fn validate<S: Store>(State(app): State<Arc<App<S>>>, _: Caller, body: String) -> Answer {
    match runbook::load(body.as_bytes(), app.runtime.templates()) {
        Ok(parsed) => Ok(Json(json!({ "valid": true, "id": parsed.id(), "diagnostics": [] })).into_response()),
        Err(diagnostics) => {
            let answer = json!({ "valid": false, "diagnostics": diagnostics });
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response())
        }
    }
}

/// Incidents, in the order they started: the open ones unless `?state=closed|all` says otherwise.
pub async fn incidents<S: Store>(State(app): State<Arc<App<S>>>, _: Caller, params: Params) -> Answer {
    let params = params.only(&["state"])?;
    let filter = params.choice("state", StateFilter::ALLOWED, "open")?;
    let filter = StateFilter::parse(filter).expect("one of the allowed values");
    let incidents: Vec<Summary> = app
        .runtime
        .store()
        .incidents()
        .await?
        .into_iter()
        .map(Summary::from)
        .filter(|summary| filter.admits(summary.state))
        .collect();
    Ok(Json(json!({ "incidents": incidents })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    runbook: String,
    #[serde(default)]
    inputs: BTreeMap<String, Value>,
    #[serde(default)]
    key: Option<String>,
}

/// Starts an incident as the token's person; answers with its summary, as the list shows it, and
/// where it is (`Location`).
pub async fn start<S: Store>(State(app): State<Arc<App<S>>>, caller: Caller, Body(start): Body<Start>) -> Answer {
    let text = app.runbook(&start.runbook)?.text();
    let (id, _) = app.runtime.start(text, &caller.person, start.inputs, start.key).await?;
    let summary = app.runtime.store().incident(&id).await?.ok_or_else(|| {
        ApiError::internal(&format!("incident `{id}` was started but the store has no summary of it"))
    })?;
    let location = [(header::LOCATION, format!("/api/v1/incidents/{id}"))];
    Ok((StatusCode::CREATED, location, Json(Summary::from(summary))).into_response())
}

/// Where an incident stands: its state, its phases in the runbook's order, what blocks it and who
/// can unblock it.
pub async fn incident<S: Store>(State(app): State<Arc<App<S>>>, _: Caller, Path(id): Path<String>) -> Answer {
    let loaded = app.runtime.load(&id).await?;
    let blockers = blockers(&loaded.runbook, &loaded.incident);
    let blocking = blockers
        .iter()
        .map(|blocker| Blocking {
            blocker,
            people: who_can_approve(&loaded.runbook, &loaded.incident, app.runtime.directory(), blocker),
        })
        .collect();
    let board = Board { incident: Standing::new(&loaded.runbook, &loaded.incident), blocking };
    Ok(Json(board).into_response())
}

/// The runbook text the incident runs, pinned when it started: what the timeline leaves out of
/// `incident_started`.
pub async fn pinned_runbook<S: Store>(State(app): State<Arc<App<S>>>, _: Caller, Path(id): Path<String>) -> Answer {
    let loaded = app.runtime.load(&id).await?;
    let incident = &loaded.incident;
    Ok(Json(json!({
        "incident": incident.id, "runbook_id": incident.runbook_id, "runbook_version": incident.runbook_version,
        "sha256": incident.runbook_sha256, "text": &*incident.runbook_text,
    }))
    .into_response())
}

/// A page of the incident's events after `?after=SEQ` (default 0: from the start), at most
/// `?limit=N` of them (default [`PAGE_DEFAULT`], at most [`PAGE_MAX`]), of one type only with
/// `?kind=TYPE` (the dashboard's timeline filter, [`store::Page`] for both).
pub async fn timeline<S: Store>(
    State(app): State<Arc<App<S>>>,
    _: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    let params = params.only(&["after", "limit", "kind"])?;
    let after = params.number("after", 0, u64::MAX, 0)?;
    let limit = params.number("limit", 1, PAGE_MAX as u64, PAGE_DEFAULT as u64)? as usize;
    let kind = params.get("kind").map(event_kind).transpose().map_err(Params::invalid)?;
    let store = app.runtime.store();
    if store.incident(&id).await?.is_none() {
        return Err(store::Error::NotFound { incident: id }.into());
    }
    // One more than the page holds: whether there is a next page, without counting the log.
    let mut events = store.events_page(&id, &store::Page::after(after, limit + 1).of(kind)).await?;
    let more = events.len() > limit;
    events.truncate(limit);
    let events = events
        .iter()
        .map(|(seq, event)| Entry::new(*seq, event))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::internal(&error))?;
    let next = more.then(|| events.last().map_or(after, |entry| entry.seq));
    Ok(Json(Timeline { incident: &id, events, next }).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    phase: String,
    #[serde(default)]
    gate: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

pub async fn approve<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Approve>,
) -> Answer {
    submit(&app, &caller, &id, Command::Approve { phase: body.phase, gate: body.gate, note: body.note }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Done {
    #[serde(default)]
    evidence: Option<String>,
    #[serde(default)]
    outputs: BTreeMap<String, Value>,
}

pub async fn done<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path((id, phase, step)): Path<(String, String, String)>,
    Body(body): Body<Done>,
) -> Answer {
    submit(&app, &caller, &id, Command::CompleteStep { phase, step, evidence: body.evidence, outputs: body.outputs })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    phase: String,
    gate: String,
    #[serde(default)]
    note: Option<String>,
}

pub async fn signal<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Signal>,
) -> Answer {
    submit(&app, &caller, &id, Command::Signal { phase: body.phase, gate: body.gate, note: body.note }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    text: String,
}

pub async fn note<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Note>,
) -> Answer {
    submit(&app, &caller, &id, Command::Note { text: body.text }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Close {
    #[serde(default)]
    note: Option<String>,
    /// Close before every phase is done, as abandoned, with `reason` on record.
    #[serde(default)]
    abandon: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// Closes the incident (the runbook's `close` roles, every phase done or skipped), or abandons it
/// (`abandon: true`, the runbook's `abandon` roles, a `reason`).
pub async fn close<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Close>,
) -> Answer {
    let command = if body.abandon {
        Command::Abandon { reason: body.reason.unwrap_or_default() }
    } else if body.reason.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "`reason` is for abandoning: send `abandon: true` with it, or give a closing `note` instead",
        ));
    } else {
        Command::Close { note: body.note }
    };
    submit(&app, &caller, &id, command).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    #[serde(default)]
    reason: Option<String>,
}

/// Another attempt of a step that failed for good (the runbook's `recover` roles).
pub async fn retry<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path((id, phase, step)): Path<(String, String, String)>,
    Body(body): Body<Recovery>,
) -> Answer {
    submit(&app, &caller, &id, Command::Retry { phase, step, reason: body.reason }).await
}

/// Skips a step that failed for good (the runbook's `recover` roles, a `reason`).
pub async fn skip<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path((id, phase, step)): Path<(String, String, String)>,
    Body(body): Body<Recovery>,
) -> Answer {
    submit(&app, &caller, &id, Command::Skip { phase, step, reason: body.reason.unwrap_or_default() }).await
}

/// Probes a check gate again with a fresh deadline, waiting or failed (the runbook's `recover` roles).
pub async fn retry_gate<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path((id, phase, gate)): Path<(String, String, String)>,
    Body(body): Body<Recovery>,
) -> Answer {
    submit(&app, &caller, &id, Command::RetryGate { phase, gate, reason: body.reason }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    #[serde(default)]
    evidence: Option<String>,
}

/// Passes a check gate by hand, with evidence (the runbook's `recover` roles).
pub async fn pass_gate<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path((id, phase, gate)): Path<(String, String, String)>,
    Body(body): Body<Evidence>,
) -> Answer {
    submit(&app, &caller, &id, Command::PassGate { phase, gate, evidence: body.evidence.unwrap_or_default() }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignTest {
    to: Vec<String>,
    #[serde(default = "one")]
    sample: usize,
}

fn one() -> usize {
    1
}

/// A campaign's test send to internal addresses (`runtime::campaign_test`): the runbook's
/// `campaign` roles; the messages go out now, through the campaign's channel, and the answer says
/// what became of them.
pub async fn campaign_test<S: Store>(
    State(app): State<Arc<App<S>>>,
    caller: Caller,
    Path((id, phase, step)): Path<(String, String, String)>,
    Body(body): Body<CampaignTest>,
) -> Answer {
    let actions = app.actions().map_err(|error| ApiError::internal(&error))?;
    let request = crate::runtime::campaign_test::TestRequest {
        incident: &id,
        phase: &phase,
        step: &step,
        actor: &caller.person,
        to: &body.to,
        sample: body.sample,
    };
    let report = app.runtime.campaign_test(&actions, request).await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignAct {
    #[serde(default)]
    reason: Option<String>,
}

type StepPath = Path<(String, String, String)>;

/// Launches a `test_first` campaign step after a test send that went out (the runbook's
/// `campaign` roles).
pub async fn campaign_launch<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    at: StepPath,
    body: Body<CampaignAct>,
) -> Answer {
    steer(&app, &caller, at, body, CampaignAction::Launch).await
}

/// Pauses a sending campaign: its batches in flight finish, no new one starts.
pub async fn campaign_pause<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    at: StepPath,
    body: Body<CampaignAct>,
) -> Answer {
    steer(&app, &caller, at, body, CampaignAction::Pause).await
}

/// Resumes a paused campaign.
pub async fn campaign_resume<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    at: StepPath,
    body: Body<CampaignAct>,
) -> Answer {
    steer(&app, &caller, at, body, CampaignAction::Resume).await
}

/// Cancels a sending campaign, with a `reason`: its batches in flight finish, then the step fails
/// for good with what was sent.
pub async fn campaign_cancel<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    at: StepPath,
    body: Body<CampaignAct>,
) -> Answer {
    steer(&app, &caller, at, body, CampaignAction::Cancel).await
}

/// What `phasegate campaign launch|pause|resume|cancel` does, decided by the engine as the caller.
async fn steer<S: Store>(
    app: &App<S>,
    caller: &Caller,
    Path((id, phase, step)): StepPath,
    Body(body): Body<CampaignAct>,
    action: CampaignAction,
) -> Answer {
    submit(app, caller, &id, Command::Campaign { phase, step, action, reason: body.reason }).await
}

/// Sends a status update to an audience now (queued; the runtime loop delivers it).
pub async fn send_update<S: Store>(
    app: State<Arc<App<S>>>,
    caller: Caller,
    Path((id, audience)): Path<(String, String)>,
) -> Answer {
    submit(&app, &caller, &id, Command::StatusUpdate { audience }).await
}

/// The status update for an audience as it would be rendered now, without sending it;
/// `?variant=md|txt|html` names the template's variant (default: the first it has).
pub async fn render_update<S: Store>(
    State(app): State<Arc<App<S>>>,
    _: Caller,
    Path((id, audience)): Path<(String, String)>,
    params: Params,
) -> Answer {
    let params = params.only(&["variant"])?;
    let loaded = app.runtime.load(&id).await?;
    let model = loaded.runbook.audiences().iter().find(|a| a.id == audience).ok_or_else(|| {
        ApiError::not_found(format!("runbook `{}` has no audience `{audience}`", loaded.runbook.id()))
    })?;
    let catalog = app.runtime.templates();
    let files = catalog.files(&model.template);
    let file = match params.get("variant") {
        Some(variant) => {
            let file = format!("{}.{variant}", model.template);
            files.contains(&file).then_some(file).ok_or_else(|| {
                ApiError::not_found(format!("template `{}` has no `{variant}` variant", model.template))
            })?
        }
        None => {
            files.first().cloned().ok_or_else(|| ApiError::not_found(format!("no template `{}`", model.template)))?
        }
    };
    let context =
        status_context(&loaded.runbook, &loaded.incident, &loaded.events, &audience, "requested", None, Utc::now());
    let text = catalog.render(&file, &context).map_err(|error| ApiError::internal(&error))?;
    Ok(Json(json!({ "incident": id, "audience": audience, "template": file, "text": text })).into_response())
}

async fn submit<S: Store>(app: &App<S>, caller: &Caller, id: &str, command: Command) -> Answer {
    let decision = app.runtime.submit(id, &caller.person, command).await?;
    Ok(Json(decided(id, &decision)).into_response())
}

fn decided(id: &str, decision: &Decision) -> Value {
    json!({ "incident": id, "events": decision.events, "effects": decision.effects.len() })
}
