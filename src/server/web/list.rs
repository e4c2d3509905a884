//! `GET /incidents?state=open|closed|all`: the incidents list. An open incident's row (its
//! severity, current phases, blockers and relaxed controls) comes from the runtime's cached state
//! at the version its summary gives, so a request folds no log that did not change.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Page;
use super::incident::{severity, when};
use super::session::Signed;
use crate::engine::Incident;
use crate::engine::blocking::blockers;
use crate::engine::state::PhaseStatus;
use crate::runbook::{Runbook, Templates};
use crate::runtime::Runtime;
use crate::server::App;
use crate::server::view::{State as Open, StateFilter, Summary};
use crate::store::Store;

/// `GET /incidents?state=open|closed|all`: open incidents first, newest first within each.
pub async fn list<S: Store>(
    State(app): State<Arc<App<S>>>,
    signed: Signed,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let state = query.iter().find(|(name, _)| name == "state").map_or("open", |(_, value)| value.as_str());
    let Some(filter) = StateFilter::parse(state) else {
        let why = "`state` must be `open`, `closed` or `all`";
        return Err(app.error_page(StatusCode::BAD_REQUEST, Some(&signed), "Bad request", why).into());
    };
    let rows = rows(&app.runtime, filter, Utc::now()).await.map_err(|error| app.runtime_error(&signed, error))?;
    let page = json!({ "incidents": rows, "filter": state });
    app.page("web/incidents.html", Some(&signed), "incidents", "Incidents", page)
}

/// The list's rows: the incidents `filter` admits, open first, then newest first. An open
/// incident's standing comes from the runtime's cached state at its summary's version
/// ([`Runtime::with_state`]): a log is folded only when it changed since the last request, and
/// then only its new events.
pub async fn rows<S: Store, T: Templates + Send + Sync>(
    runtime: &Runtime<S, T>,
    filter: StateFilter,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, crate::runtime::Error> {
    let summaries = runtime.store().incidents().await?;
    let mut rows = Vec::new();
    for summary in summaries.into_iter().map(Summary::from).filter(|summary| filter.admits(summary.state)) {
        let mut row = json!({
            "id": summary.id, "runbook": summary.runbook_id, "state": summary.state,
            "started_at": when(summary.started_at), "updated_at": when(summary.updated_at),
            "closed_at": summary.closed_at.map(when), "severity": Value::Null, "title": summary.runbook_id,
            "phases": [], "blockers": 0, "overdue": 0, "relaxed": 0, "sort": summary.started_at.timestamp(),
        });
        if summary.state == Open::Open {
            let standing = |runbook: &Runbook, incident: &Incident| standing(runbook, incident, now);
            if let (Value::Object(row), Value::Object(found)) =
                (&mut row, runtime.with_state(&summary.id, summary.version, standing).await?)
            {
                row.extend(found);
            }
        }
        rows.push(row);
    }
    // Open first, then newest first.
    rows.sort_by_key(|row| (row["state"] != "open", std::cmp::Reverse(row["sort"].as_i64().unwrap_or(0))));
    Ok(rows)
}

/// What the list shows of an open incident: its severity, its runbook's title, its current
/// phases, how many things block it, and how many controls are relaxed and overdue.
pub fn standing(runbook: &Runbook, incident: &Incident, now: DateTime<Utc>) -> Value {
    let phases: Vec<Value> = runbook
        .phases()
        .iter()
        .filter(|phase| {
            matches!(incident.phase(&phase.id).status, PhaseStatus::Ready | PhaseStatus::Running | PhaseStatus::Failed)
        })
        .map(|phase| {
            json!({
                "id": phase.id, "title": phase.title.as_deref().unwrap_or(&phase.id),
                "state": incident.phase(&phase.id).status.as_str(),
            })
        })
        .collect();
    let open: Vec<_> = incident.open_relaxations().collect();
    let overdue = open.iter().filter(|r| r.overdue || r.expires_at <= now).count();
    json!({
        "severity": severity(incident), "title": runbook.title(), "phases": phases,
        "blockers": blockers(runbook, incident).iter().filter(|blocker| blocker.kind != "will_skip").count(), "relaxed": open.len(), "overdue": overdue,
    })
}
