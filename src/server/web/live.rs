//! `GET /incidents/{id}/events?since=VERSION`: server-sent events that tell an open page its
//! incident changed. A change this server makes (a form, the API, a webhook, the runtime's own
//! work) wakes the stream at once through [`crate::runtime::Runtime::changes`]; other processes
//! (the CLI, another replica) write to the same database without telling this one, so the
//! incident's version (its latest event's position, two indexed reads) is also read every
//! `server.live_poll` (default 2 s). A `change` event carrying the new version is sent when it
//! moved. The page's script then fetches the page again and swaps in its live regions. The
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
    let stopping = app.stopping.subscribe();
    let changes = app.runtime.changes();
    let state = (app, id, signed, last, stopping, changes);
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
            match app.runtime.store().incident(&id).await {
                Ok(Some(summary)) if summary.version != last => {
                    let event = Event::default().event("change").data(summary.version.to_string());
                    let state = (app, id, signed, summary.version, stopping, changes);
                    return Some((Ok::<Event, Infallible>(event), state));
                }
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
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
