//! `GET /incidents/{id}/events?since=VERSION`: server-sent events that tell an open page its
//! incident changed. Other processes (the CLI, another server) write to the same database, so
//! there is no notification to wait for: the incident's version (its summary row, one indexed
//! read) is polled every [`POLL`], and a `change` event carrying the new version is sent when it
//! moved. The page's script then fetches the page again and swaps in its live regions. The
//! stream ends when the session does, or when the server stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::session::Signed;
use crate::server::App;
use crate::store::Store;

/// How often the incident's version is read.
pub const POLL: Duration = Duration::from_millis(250);

#[derive(serde::Deserialize)]
pub struct Since {
    #[serde(default)]
    since: Option<u64>,
}

pub async fn events<S: Store>(
    State(app): State<Arc<App<S>>>,
    signed: Signed,
    Path(id): Path<String>,
    Query(since): Query<Since>,
) -> Response {
    let version = match app.runtime.store().incident(&id).await {
        Ok(Some(summary)) => summary.version,
        Ok(None) => {
            let why = format!("there is no incident `{id}`");
            return app.error_page(StatusCode::NOT_FOUND, Some(&signed), "Not found", &why);
        }
        Err(error) => return app.runtime_error(&signed, error.into()),
    };
    // A page older than the incident hears of it at once.
    let last = since.since.unwrap_or(version);
    let stopping = app.stopping.subscribe();
    let state = (app, id, signed, last, stopping);
    let stream = futures_util::stream::unfold(state, |(app, id, signed, last, mut stopping)| async move {
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    _ = stopping.changed() => return None,
                }
            }
            first = false;
            if *stopping.borrow() || !app.sessions.is_open(&signed) {
                return None;
            }
            match app.runtime.store().incident(&id).await {
                Ok(Some(summary)) if summary.version != last => {
                    let event = Event::default().event("change").data(summary.version.to_string());
                    return Some((Ok::<Event, Infallible>(event), (app, id, signed, summary.version, stopping)));
                }
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
