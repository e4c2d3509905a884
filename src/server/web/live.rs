//! `GET /incidents/{id}/events?since=VERSION`: server-sent events that tell an open page its
//! incident changed. A change this server makes (a form, the API, a webhook, the runtime's own
//! work) wakes the stream at once through [`crate::runtime::Runtime::changes`]; other processes
//! (the CLI, another replica) write to the same database without telling this one, so the
//! incident's version (its latest event's position, two indexed reads) is also read every
//! `server.live_poll` (default 2 s), and so are its campaigns' failed attempts (a failed attempt
//! and a recovery are no event: the campaign's batches keep them). A `change` event carrying the
//! version is sent when either moved. The page's script then fetches the page again and swaps in its live regions. The
//! stream ends when the session does, or when the server stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::session::Signed;
use crate::server::App;
use crate::store::Store;

#[derive(serde::Deserialize)]
pub struct Since {
    #[serde(default)]
    since: Option<u64>,
}

/// Why a stream looks at its incident's version again.
enum Wake {
    /// Something may have changed: read the version.
    Look,
    /// The server is stopping, or the runtime is gone: end the stream.
    End,
}

pub async fn events<S: Store>(
    State(app): State<Arc<App<S>>>,
    signed: Signed,
    Path(id): Path<String>,
    Query(since): Query<Since>,
) -> Response {
    let version = match app.runtime.store().incident(&id).await {
        Ok(Some(summary)) => summary.version,
        Ok(None) => return app.not_found(Some(&signed), &format!("there is no incident `{id}`")),
        Err(error) => return app.runtime_error(&signed, error.into()),
    };
    // A page older than the incident hears of it at once.
    let last = since.since.unwrap_or(version);
    let retrying = match campaigns_retrying(&app, &id).await {
        Ok(retrying) => retrying,
        Err(error) => return app.runtime_error(&signed, error.into()),
    };
    let stopping = app.stopping.subscribe();
    let changes = app.runtime.changes();
    let state = (app, id, signed, (last, retrying), stopping, changes);
    let stream = futures_util::stream::unfold(state, |(app, id, signed, last, mut stopping, mut changes)| async move {
        let poll = app.config.server.live_poll;
        let mut first = true;
        loop {
            if !first && let Wake::End = wake(&id, poll, &mut stopping, &mut changes).await {
                return None;
            }
            first = false;
            if *stopping.borrow() || !app.sessions.is_open(&signed) {
                return None;
            }
            let version = match app.runtime.store().incident(&id).await {
                Ok(Some(summary)) => summary.version,
                _ => return None,
            };
            // A campaign's failed attempt, or its recovery, changes no event: its batches say it.
            let Ok(retrying) = campaigns_retrying(&app, &id).await else { return None };
            if (version, &retrying) != (last.0, &last.1) {
                let event = Event::default().event("change").data(version.to_string());
                let state = (app, id, signed, (version, retrying), stopping, changes);
                return Some((Ok::<Event, Infallible>(event), state));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// How the incident's campaigns stand with failed attempts: for each, its batches retrying and
/// their failed attempts ([`crate::store::CampaignProgress`]), which move with every failed
/// attempt recorded and with every recovery.
async fn campaigns_retrying<S: Store>(app: &App<S>, id: &str) -> Result<Vec<(u32, u64)>, crate::store::Error> {
    let campaigns = app.runtime.store().campaigns(id).await?;
    Ok(campaigns.into_iter().map(|(_, progress)| (progress.retrying, progress.failed_attempts)).collect())
}

/// Waits until this runtime appends to incident `id`, `poll` passes, or the server stops.
async fn wake(
    id: &str,
    poll: Duration,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
    changes: &mut tokio::sync::broadcast::Receiver<Arc<str>>,
) -> Wake {
    let deadline = tokio::time::sleep(poll);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return Wake::Look,
            _ = stopping.changed() => return Wake::End,
            change = changes.recv() => match change {
                Ok(changed) if &*changed == id => return Wake::Look,
                Ok(_) => {}
                // Too far behind to know whether this incident was among them: look.
                Err(RecvError::Lagged(_)) => return Wake::Look,
                Err(RecvError::Closed) => return Wake::End,
            },
        }
    }
}
