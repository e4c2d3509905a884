//! The REST API: JSON over HTTP for everything the command line does. Every handler takes the
//! caller from its token; commands are decided by the engine as that person, so what they may do
//! is checked where the CLI's commands are checked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::auth::Caller;
use super::error::{ApiError, Body};
use crate::engine::blocking::{blockers, who_can_approve};
use crate::engine::{Command, Decision};
use crate::render::context::status_context;
use crate::runbook;
use crate::store::Store;

type Answer = Result<Response, ApiError>;

/// The runbooks in the configured directory, each with whether it validates.
pub async fn runbooks(State(app): State<Arc<App>>, _: Caller) -> Answer {
    let mut found = Vec::new();
    for (path, text) in app.runbook_files()? {
        let checked = runbook::load(text.as_bytes(), app.runtime.templates());
        let file = path.file_name().map(|name| name.to_string_lossy().into_owned());
        found.push(match checked {
            Ok(runbook) => json!({
                "id": runbook.id(), "title": runbook.title(), "version": runbook.version(), "file": file, "valid": true,
            }),
            Err(diagnostics) => json!({ "file": file, "valid": false, "problems": diagnostics.len() }),
        });
    }
    Ok(Json(json!({ "runbooks": found })).into_response())
}

/// One runbook by id: its text, hash and phases.
pub async fn runbook(State(app): State<Arc<App>>, _: Caller, Path(id): Path<String>) -> Answer {
    let text = app.runbook_text(&id)?;
    let parsed = runbook::load(text.as_bytes(), app.runtime.templates()).map_err(|d| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_runbook",
            format!("runbook `{id}` has {} problems", d.len()),
        )
    })?;
    let phases: Vec<Value> = parsed
        .phases()
        .iter()
        .map(|phase| json!({ "id": phase.id, "title": phase.title, "needs": phase.needs }))
        .collect();
    Ok(Json(json!({
        "id": parsed.id(), "title": parsed.title(), "version": parsed.version(),
        "sha256": crate::engine::decide::sha256_hex(&text), "phases": phases, "text": text,
    }))
    .into_response())
}

/// Validates a runbook sent as the body (YAML): every problem with its code and position.
pub async fn validate(State(app): State<Arc<App>>, _: Caller, body: String) -> Answer {
    match runbook::load(body.as_bytes(), app.runtime.templates()) {
        Ok(parsed) => Ok(Json(json!({ "valid": true, "id": parsed.id(), "diagnostics": [] })).into_response()),
        Err(diagnostics) => {
            let answer = json!({ "valid": false, "diagnostics": diagnostics });
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response())
        }
    }
}

pub async fn incidents(State(app): State<Arc<App>>, _: Caller) -> Answer {
    let incidents = app.runtime.store().incidents().await?;
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

pub async fn start(State(app): State<Arc<App>>, caller: Caller, Body(start): Body<Start>) -> Answer {
    let text = app.runbook_text(&start.runbook)?;
    let (id, decision) = app.runtime.start(&text, &caller.person, start.inputs, start.key).await?;
    Ok((StatusCode::CREATED, Json(decided(&id, &decision))).into_response())
}

/// Where an incident stands: its state, what blocks it and who can unblock it.
pub async fn incident(State(app): State<Arc<App>>, _: Caller, Path(id): Path<String>) -> Answer {
    let loaded = app.runtime.load(&id).await?;
    let blocking: Vec<Value> = blockers(&loaded.runbook, &loaded.incident)
        .into_iter()
        .map(|blocker| {
            let people = who_can_approve(&loaded.runbook, &loaded.incident, app.runtime.directory(), &blocker);
            json!({ "blocker": blocker, "people": people })
        })
        .collect();
    Ok(Json(json!({ "incident": loaded.incident, "blocking": blocking })).into_response())
}

pub async fn timeline(State(app): State<Arc<App>>, _: Caller, Path(id): Path<String>) -> Answer {
    let events = app.runtime.store().events(&id).await?;
    let events: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(index, event)| json!({ "seq": index + 1, "summary": event.summary(), "event": event }))
        .collect();
    Ok(Json(json!({ "incident": id, "events": events })).into_response())
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

pub async fn approve(
    app: State<Arc<App>>,
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

pub async fn done(
    app: State<Arc<App>>,
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

pub async fn signal(app: State<Arc<App>>, caller: Caller, Path(id): Path<String>, Body(body): Body<Signal>) -> Answer {
    submit(&app, &caller, &id, Command::Signal { phase: body.phase, gate: body.gate, note: body.note }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    text: String,
}

pub async fn note(app: State<Arc<App>>, caller: Caller, Path(id): Path<String>, Body(body): Body<Note>) -> Answer {
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
pub async fn close(app: State<Arc<App>>, caller: Caller, Path(id): Path<String>, Body(body): Body<Close>) -> Answer {
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
pub async fn retry(
    app: State<Arc<App>>,
    caller: Caller,
    Path((id, phase, step)): Path<(String, String, String)>,
    Body(body): Body<Recovery>,
) -> Answer {
    submit(&app, &caller, &id, Command::Retry { phase, step, reason: body.reason }).await
}

/// Skips a step that failed for good (the runbook's `recover` roles, a `reason`).
pub async fn skip(
    app: State<Arc<App>>,
    caller: Caller,
    Path((id, phase, step)): Path<(String, String, String)>,
    Body(body): Body<Recovery>,
) -> Answer {
    submit(&app, &caller, &id, Command::Skip { phase, step, reason: body.reason.unwrap_or_default() }).await
}

/// Sends a status update to an audience now (queued; the runtime loop delivers it).
pub async fn send_update(app: State<Arc<App>>, caller: Caller, Path((id, audience)): Path<(String, String)>) -> Answer {
    submit(&app, &caller, &id, Command::StatusUpdate { audience }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// `md`, `txt` or `html`: the template variant to render (default: the first it has).
    #[serde(default)]
    variant: Option<String>,
}

/// The status update for an audience as it would be rendered now, without sending it.
pub async fn render_update(
    State(app): State<Arc<App>>,
    _: Caller,
    Path((id, audience)): Path<(String, String)>,
    Query(query): Query<Variant>,
) -> Answer {
    let loaded = app.runtime.load(&id).await?;
    let model = loaded.runbook.audiences().iter().find(|a| a.id == audience).ok_or_else(|| {
        ApiError::not_found(format!("runbook `{}` has no audience `{audience}`", loaded.runbook.id()))
    })?;
    let catalog = app.runtime.templates();
    let files = catalog.files(&model.template);
    let file = match &query.variant {
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

async fn submit(app: &App, caller: &Caller, id: &str, command: Command) -> Answer {
    let decision = app.runtime.submit(id, &caller.person, command).await?;
    Ok(Json(decided(id, &decision)).into_response())
}

fn decided(id: &str, decision: &Decision) -> Value {
    json!({ "incident": id, "events": decision.events, "effects": decision.effects.len() })
}
