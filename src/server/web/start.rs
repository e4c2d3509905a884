//! Starting an incident from the dashboard: `GET /incidents/new?runbook=ID` shows a form with
//! one field per input the runbook declares (typed: a choice for `allowed` values and booleans,
//! a number field for numbers), `POST /incidents/new` starts it. Each field is checked as the
//! engine checks it (`engine::decide::check_input`), and every problem is shown beside its
//! field, with the values kept and nothing started. Who may start is the API's rule: the engine
//! decides the start as the signed-in person, whom the configuration must know.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::session::{Flash, Signed};
use super::{Fields, Page, Posted};
use crate::engine::decide::check_input;
use crate::runbook::Runbook;
use crate::runbook::model::{Input, InputType};
use crate::server::App;
use crate::store::Store;

/// `GET /incidents/new?runbook=ID`: the runbooks to choose from, and the chosen one's inputs.
pub async fn form<S: Store>(
    State(app): State<Arc<App<S>>>,
    signed: Signed,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let chosen = query.iter().find(|(name, _)| name == "runbook").map(|(_, id)| id.trim()).filter(|id| !id.is_empty());
    let runbook = match chosen {
        None => None,
        Some(id) => Some(app.runbook(id).map_err(|_| {
            app.not_found(Some(&signed), &format!("there is no runbook `{id}`; `/runbooks` lists them"))
        })?),
    };
    let fields = runbook.map(|entry| inputs(entry.runbook(), &Fields::default(), &BTreeMap::new()));
    let page = page(&app, chosen, fields, None, "");
    app.page("web/start.html", Some(&signed), "incidents", "Start an incident", page)
}

/// `POST /incidents/new`: fields `runbook`, `input.NAME` for each input, `key` (optional: a
/// deduplication key, as the API's). Started: to the new incident's page. Refused: the form
/// again, each problem beside its field, nothing started.
pub async fn start<S: Store>(State(app): State<Arc<App<S>>>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let id = fields.text("runbook").unwrap_or_default();
    let entry = match app.runbook(&id) {
        Ok(entry) => entry,
        Err(_) => {
            let why = format!("choose a runbook: there is no runbook `{id}`");
            let page = page(&app, None, None, Some(&why), "");
            return again(&app, &signed, page);
        }
    };
    let runbook = entry.runbook();
    let mut given = BTreeMap::new();
    let mut problems = BTreeMap::new();
    let unknown: Vec<&str> =
        fields.prefixed("input.").map(|(name, _)| name).filter(|n| runbook.input(n).is_none()).collect();
    for input in runbook.inputs() {
        // Every field is text, as on a command line: the engine takes it for the input's type. A
        // blank field is no value: the input's default, or missing.
        let typed = fields.text(&format!("input.{}", input.name)).map(Value::String);
        match check_input(input, typed.as_ref()) {
            Ok(_) => {
                if let Some(value) = typed {
                    given.insert(input.name.clone(), value);
                }
            }
            Err(problem) => {
                problems.insert(input.name.clone(), problem.to_string());
            }
        }
    }
    let key = fields.text("key");
    let form_problem = (!unknown.is_empty()).then(|| {
        format!(
            "the form has fields for inputs runbook `{id}` does not declare: {}; nothing was started",
            unknown.join(", ")
        )
    });
    if !problems.is_empty() || form_problem.is_some() {
        let shown = inputs(runbook, &fields, &problems);
        let why = form_problem.unwrap_or_else(|| "an input is not valid; nothing was started".into());
        let page = page(&app, Some(&id), Some(shown), Some(&why), key.as_deref().unwrap_or_default());
        return again(&app, &signed, page);
    }
    match app.runtime.start(entry.text(), &signed.person, given, key.clone()).await {
        Ok((incident, _)) => {
            app.sessions.flash(&signed, Flash::done(format!("Incident `{incident}` started from runbook `{id}`.")));
            Redirect::to(&format!("/incidents/{}", super::url_encode(&incident))).into_response()
        }
        Err(
            error @ (crate::runtime::Error::Refused(_)
            | crate::runtime::Error::Store(crate::store::Error::DuplicateKey { .. })),
        ) => {
            let why = format!("Refused: {error}; nothing was started");
            let shown = inputs(runbook, &fields, &BTreeMap::new());
            let page = page(&app, Some(&id), Some(shown), Some(&why), key.as_deref().unwrap_or_default());
            again(&app, &signed, page)
        }
        Err(error) => app.runtime_error(&signed, error),
    }
}

/// The form shown again after a refusal: 422, with the problems in it.
fn again<S: Store>(app: &App<S>, signed: &Signed, page: Value) -> Response {
    let mut response = app
        .page("web/start.html", Some(signed), "incidents", "Start an incident", page)
        .unwrap_or_else(|answered| answered.into_response());
    if response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

/// The page: the runbooks to choose from, the chosen one, its fields, and why it was refused.
fn page<S: Store>(
    app: &App<S>,
    chosen: Option<&str>,
    fields: Option<Vec<Value>>,
    problem: Option<&str>,
    key: &str,
) -> Value {
    let runbooks: Vec<Value> = app
        .runbooks
        .entries()
        .iter()
        .map(|entry| json!({ "id": entry.runbook().id(), "title": entry.runbook().title() }))
        .collect();
    let title = chosen.and_then(|id| app.runbook(id).ok()).map(|entry| entry.runbook().title().to_string());
    json!({ "runbooks": runbooks, "chosen": chosen, "title": title, "fields": fields, "problem": problem, "key": key })
}

/// One field per declared input: its name, type, description, default, allowed values, the
/// value posted (kept when the form comes back) and its problem.
fn inputs(runbook: &Runbook, posted: &Fields, problems: &BTreeMap<String, String>) -> Vec<Value> {
    runbook.inputs().iter().map(|input| field(input, posted, problems.get(&input.name))).collect()
}

fn field(input: &Input, posted: &Fields, problem: Option<&String>) -> Value {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let choices: Option<Vec<String>> = match (&input.allowed, input.kind) {
        (Some(allowed), _) => Some(allowed.iter().map(text).collect()),
        (None, InputType::Boolean) => Some(vec!["true".into(), "false".into()]),
        _ => None,
    };
    let control = match input.kind {
        _ if choices.is_some() => "select",
        InputType::Integer | InputType::Number => "number",
        _ => "text",
    };
    let value = posted.get(&format!("input.{}", input.name)).map(str::to_string);
    json!({
        "name": input.name, "type": type_word(input.kind), "description": input.description, "control": control,
        "step": if input.kind == InputType::Integer { "1" } else { "any" },
        "default": input.default.as_ref().map(text), "required": input.default.is_none(), "choices": choices,
        "value": value, "problem": problem, "slug": super::incident::slug(&input.name),
    })
}

fn type_word(kind: InputType) -> &'static str {
    match kind {
        InputType::String => "text",
        InputType::Integer => "whole number",
        InputType::Number => "number",
        InputType::Boolean => "true or false",
    }
}
