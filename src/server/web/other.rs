//! The runbooks pages (the list, each runbook's plan as a graph, a runbook pasted or uploaded
//! and validated, its diagnostics located) and the audit pages (each incident's verification
//! verdict, its export to download, its report to read).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::incident::when;
use super::session::Signed;
use super::{Page, Posted, graph};
use crate::audit::report;
use crate::runbook::model::{Action, GateKind};
use crate::runbook::{self, Runbook};
use crate::runtime::audit;
use crate::server::App;
use crate::store::{IncidentSummary, Store};

/// `GET /runbooks`: the runbooks loaded at start, and the files left out with their problems.
pub async fn runbooks<S: Store>(State(app): State<Arc<App<S>>>, signed: Signed) -> Page {
    let name = |path: &std::path::Path| path.file_name().map(|name| name.to_string_lossy().into_owned());
    let loaded: Vec<Value> = app
        .runbooks
        .entries()
        .iter()
        .map(|entry| {
            let runbook = entry.runbook();
            json!({
                "id": runbook.id(), "title": runbook.title(), "version": runbook.version(),
                "file": name(entry.path()), "phases": runbook.phases().len(),
                "steps": runbook.phases().iter().map(|phase| phase.steps.len()).sum::<usize>(),
            })
        })
        .collect();
    let rejected: Vec<Value> = app
        .runbooks
        .rejected()
        .iter()
        .map(|file| {
            json!({
                "file": name(&file.path), "id": file.id, "unreadable": file.unreadable,
                "diagnostics": diagnostics(&file.diagnostics),
            })
        })
        .collect();
    let page = json!({ "runbooks": loaded, "rejected": rejected, "validated": null, "text": "" });
    app.page("web/runbooks.html", Some(&signed), "runbooks", "Runbooks", page)
}

fn diagnostics(found: &[runbook::Diagnostic]) -> Vec<Value> {
    found
        .iter()
        .map(|d| {
            json!({
                "code": d.code.as_str(), "line": d.mark.line, "column": d.mark.column, "message": d.message,
                "help": d.help,
            })
        })
        .collect()
}

/// `GET /runbooks/{id}`: a runbook's plan, as a graph and phase by phase.
pub async fn runbook<S: Store>(State(app): State<Arc<App<S>>>, signed: Signed, Path(id): Path<String>) -> Page {
    let entry = app.runbook(&id).map_err(|error| {
        let error = crate::server::error::ApiError::from(error);
        app.error_page(error.status, Some(&signed), "Not found", &error.message)
    })?;
    let runbook = entry.runbook();
    let page = json!({
        "id": runbook.id(), "title": runbook.title(), "version": runbook.version(),
        "sha256": crate::engine::decide::sha256_hex(entry.text()),
        "graph": graph::layout(runbook, None), "phases": plan(runbook),
        "audiences": runbook.audiences().iter().map(|a| json!({ "id": a.id, "title": a.title, "template": a.template })).collect::<Vec<_>>(),
    });
    app.page("web/runbook.html", Some(&signed), "runbooks", runbook.title(), page)
}

/// Each phase with what it needs, its gates and its steps, as written.
fn plan(runbook: &Runbook) -> Vec<Value> {
    runbook
        .phases()
        .iter()
        .map(|phase| {
            let gates: Vec<Value> = phase
                .gates()
                .map(|gate| {
                    let detail = match &gate.kind {
                        GateKind::Approval { roles, count, four_eyes } => format!(
                            "{count} approval(s) by {}{}",
                            roles.join(" or "),
                            if *four_eyes { ", four-eyes" } else { "" }
                        ),
                        GateKind::Signal { role } => {
                            format!(
                                "a signal{}",
                                role.as_ref().map(|r| format!(" (or {r} by hand)")).unwrap_or_default()
                            )
                        }
                        GateKind::StepsDone { steps } if steps.is_empty() => "every step done".into(),
                        GateKind::StepsDone { steps } => format!("steps done: {}", steps.join(", ")),
                        other => other.name().replace('_', " "),
                    };
                    json!({ "id": gate.id, "kind": gate.kind.name(), "detail": detail })
                })
                .collect();
            let steps: Vec<Value> = phase
                .steps
                .iter()
                .map(|step| {
                    let assignee = match &step.action {
                        Action::Manual { assignee, .. } => assignee.clone(),
                        _ => None,
                    };
                    json!({
                        "id": step.id, "title": step.title, "kind": step.action.kind(), "optional": step.optional,
                        "assignee": assignee,
                    })
                })
                .collect();
            json!({
                "id": phase.id, "title": phase.title, "description": phase.description, "needs": phase.needs,
                "gates": gates, "steps": steps,
            })
        })
        .collect()
}

/// `POST /runbooks/validate`: the runbook in field `text` validated, with its diagnostics.
pub async fn validate<S: Store>(State(app): State<Arc<App<S>>>, posted: Posted) -> Page {
    let text = posted.fields.get("text").unwrap_or_default().to_string();
    let validated = match runbook::load(text.as_bytes(), app.runtime.templates()) {
        Ok(parsed) => json!({ "valid": true, "id": parsed.id(), "title": parsed.title(), "diagnostics": [] }),
        Err(found) => json!({ "valid": false, "diagnostics": diagnostics(&found) }),
    };
    let page = json!({ "runbooks": [], "rejected": [], "validated": validated, "text": text, "only_validation": true });
    let signed = posted.signed;
    app.page("web/runbooks.html", Some(&signed), "runbooks", "Runbook validation", page)
}

/// `GET /audit`: every incident, with a link to its verification.
pub async fn audit<S: Store>(State(app): State<Arc<App<S>>>, signed: Signed) -> Page {
    let incidents = app.runtime.store().incidents().await.map_err(|error| app.runtime_error(&signed, error.into()))?;
    let rows: Vec<Value> = incidents
        .iter()
        .rev()
        .map(|summary| {
            json!({
                "id": summary.id, "runbook": summary.runbook_id, "events": summary.version,
                "checkpointed": summary.checkpointed, "closed": summary.closed_at.is_some(),
                "started_at": when(summary.started_at),
            })
        })
        .collect();
    app.page("web/audit.html", Some(&signed), "audit", "Audit", json!({ "incidents": rows }))
}

async fn summary<S: Store>(app: &App<S>, signed: &Signed, id: &str) -> Result<IncidentSummary, Response> {
    match app.runtime.store().incident(id).await {
        Ok(Some(summary)) => Ok(summary),
        Ok(None) => {
            let why = format!("there is no incident `{id}`");
            Err(app.error_page(StatusCode::NOT_FOUND, Some(signed), "Not found", &why))
        }
        Err(error) => Err(app.runtime_error(signed, error.into())),
    }
}

/// `GET /incidents/{id}/audit`: the verification's verdict and the report (Markdown, as text
/// a person reads: see [`readable`]).
pub async fn incident_audit<S: Store>(State(app): State<Arc<App<S>>>, signed: Signed, Path(id): Path<String>) -> Page {
    let summary = summary(&app, &signed, &id).await?;
    let (outcome, events) = verified(&app, &signed, &summary).await?;
    let integrity = outcome.integrity();
    let markdown = report::render(&events, &integrity, report::Format::Markdown)
        .unwrap_or_else(|error| format!("the report could not be made: {error}"));
    let page = json!({
        "id": id, "verified": outcome.verified(), "events": outcome.events, "checkpoints": outcome.checkpoints,
        "signed_through": outcome.signed_through, "unsigned": outcome.unsigned_log,
        // Whether the incident was closed, as the list says: its log goes on past the close with
        // the results of what the close decided (the last updates), so it need not end with it.
        "closed": summary.closed_at.is_some(),
        "fingerprint": outcome.fingerprint, "signers": outcome.signers,
        "problems": outcome.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "more_problems": outcome.more_problems, "report": readable(&markdown),
    });
    app.page("web/incident-audit.html", Some(&signed), "audit", &format!("Audit of {id}"), page)
}

/// The report's Markdown as a person reads it on the page, as text: without the escapes that keep
/// the log's text from being taken for Markdown (`\|`, `\[`, `\*`, `\_`: any backslash before
/// ASCII punctuation), with `&lt;` back as `<`, and a line break inside a table cell (`<br>`)
/// shown as ` / `. The page escapes what it prints, so nothing here can become markup.
pub fn readable(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while let Some(c) = rest.chars().next() {
        if c == '\\'
            && let Some(next) = rest[1..].chars().next().filter(char::is_ascii_punctuation)
        {
            out.push(next);
            rest = &rest[1 + next.len_utf8()..];
        } else if let Some(after) = rest.strip_prefix("&lt;") {
            out.push('<');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("<br>") {
            out.push_str(" / ");
            rest = after;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

async fn verified<S: Store>(
    app: &App<S>,
    signed: &Signed,
    summary: &IncidentSummary,
) -> Result<(crate::audit::verify::Outcome, Vec<crate::engine::Event>), Response> {
    let key = app.config.audit.public_key().map_err(|error| {
        tracing::error!(%error, "the audit public key cannot be read");
        app.error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(signed),
            "The server failed",
            "the audit key cannot be read; the server's log says why",
        )
    })?;
    let store = app.runtime.store();
    let outcome = audit::verify_stored(store, summary, key.as_ref())
        .await
        .map_err(|error| app.runtime_error(signed, error.into()))?;
    let events = store.events(&summary.id).await.map_err(|error| app.runtime_error(signed, error.into()))?;
    Ok((outcome, events))
}

/// `GET /incidents/{id}/export.jsonl`: the incident's export (`docs/audit.md`), as a download.
pub async fn export<S: Store>(State(app): State<Arc<App<S>>>, signed: Signed, Path(id): Path<String>) -> Page {
    let summary = summary(&app, &signed, &id).await?;
    let mut out = Vec::new();
    if let Err(error) = audit::export_stored(app.runtime.store(), &summary, &mut out).await {
        tracing::error!(%error, "an export failed");
        let why = "the export could not be written; the server's log says why";
        return Err(app.error_page(StatusCode::INTERNAL_SERVER_ERROR, Some(&signed), "The server failed", why).into());
    }
    let file: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let disposition = format!("attachment; filename=\"{file}.jsonl\"");
    let mut response = ([(header::CONTENT_TYPE, "application/jsonl")], out).into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `GET /incidents/{id}/report.html`: the post-incident report as `phasegate report --format
/// html` writes it. It carries its own styles, so it is served sandboxed: no script, no form, no
/// fetch, styles only from itself.
pub async fn report<S: Store>(State(app): State<Arc<App<S>>>, signed: Signed, Path(id): Path<String>) -> Page {
    let summary = summary(&app, &signed, &id).await?;
    let (outcome, events) = verified(&app, &signed, &summary).await?;
    let html = report::render(&events, &outcome.integrity(), report::Format::Html).map_err(|error| {
        app.error_page(StatusCode::INTERNAL_SERVER_ERROR, Some(&signed), "The report failed", &error.to_string())
    })?;
    let policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; base-uri 'none'; \
                  form-action 'none'; frame-ancestors 'none'";
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, policy)], html)
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::readable;

    /// The audit page showed the report's Markdown escapes as written (`\|`, `\[`, `&lt;`,
    /// `<br>`), which a person reading it took for part of the log's text.
    #[test]
    fn the_reports_markdown_escapes_are_undone_for_reading() {
        let table: &[(&str, &str)] = &[
            ("a \\| b", "a | b"),
            ("\\[click\\](javascript:x)", "[click](javascript:x)"),
            ("back\\\\slash", "back\\slash"),
            ("snake\\_case and \\*stars\\*", "snake_case and *stars*"),
            ("&lt;script>", "<script>"),
            ("line one<br>line two", "line one / line two"),
            ("a\\b stays, as does a trailing \\", "a\\b stays, as does a trailing \\"),
            ("| `x` | é \\| ü |", "| `x` | é | ü |"),
        ];
        for (markdown, shown) in table {
            assert_eq!(readable(markdown), *shown, "{markdown}");
        }
    }
}
