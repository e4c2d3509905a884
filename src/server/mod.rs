//! `phasegate serve`: the engine as a service. Automation triggers incidents and satisfies gates
//! by webhook, tools and people use the REST API, and the runtime loop runs in the same process.
//! Wire types (what goes over HTTP) live only here.

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod view;
pub mod web;
pub mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::{Effect, EffectKind, Event, Incident, Outcome};
use crate::render::Catalog;
use crate::runbook::Runbook;
use crate::runbook::registry::{self, Entry, Registry};
use crate::runtime::inbox::Inbox;
use crate::runtime::{Executor, Runtime};
use crate::store::Store;
use error::ApiError;
use metrics::{EffectLabels, Metrics, RequestLabels, StateLabels};

/// Everything a request may need, over any store (`serve` picks SQLite).
pub struct App<S> {
    pub runtime: Runtime<S, Catalog>,
    pub config: Config,
    pub metrics: Metrics,
    /// Whether the runtime loop has made its first pass (and the server is not shutting down).
    pub ready: AtomicBool,
    /// Webhook sources by name, their secrets read at start (those without are off).
    pub sources: webhooks::Sources,
    /// Deliveries in flight; past [`webhooks::IN_FLIGHT`] the answer is 503.
    pub hooks: tokio::sync::Semaphore,
    /// The configured runbooks, loaded once at start: what the API lists and starts incidents
    /// from, and (the same registry, shared) what the inbox's triggers are.
    pub runbooks: Arc<Registry>,
    /// The received deliveries waiting for the runbooks' triggers: the server stores deliveries
    /// and rings its bell, the runtime applies them.
    pub inbox: Inbox,
    /// The dashboard's pages (built in, some replaced by the site's `server.pages` if it names one).
    pub pages: crate::render::web::Pages,
    /// The dashboard's signed-in sessions, in memory.
    pub sessions: web::session::Sessions,
    /// Set when the server begins to stop: live pages' event streams end.
    pub stopping: watch::Sender<bool>,
}

impl<S: Store> App<S> {
    /// The actions a campaign's test send goes out through: the runtime's templates, the
    /// configuration's secrets and outbound rules, as the runtime loop sends with them.
    pub fn actions(&self) -> anyhow::Result<crate::actions::Actions> {
        let catalog = Arc::new(self.runtime.templates().clone());
        crate::actions::Actions::new(catalog, Arc::new(self.config.secrets.clone()))
            .and_then(|actions| actions.with_outbound(self.config.outbound.clone()))
            .map_err(|error| anyhow::anyhow!("the actions cannot be set up: {error}"))
    }

    /// The app over `runtime`: reads the webhook sources' secrets and loads the runbooks
    /// directory once (`runtime::runbooks`; a file that does not validate is left out, each of
    /// its problems logged). A runbook edited while the server runs is seen at its next start.
    pub fn new(runtime: Runtime<S, Catalog>, config: Config) -> anyhow::Result<App<S>> {
        let sources = webhooks::schemes(&config.server.sources, &config.secrets)?;
        for why in sources.off.values() {
            tracing::warn!(
                "{why}; its deliveries are answered 503 (senders retry) until it is set and the server restarted"
            );
        }
        let runbooks = crate::runtime::runbooks::load(&runtime, &config.runbooks).map_err(|error| {
            anyhow::anyhow!("the runbooks directory `{}` cannot be read: {error}", config.runbooks.display())
        })?;
        for (entry, trigger) in runbooks
            .triggers()
            .filter(|(_, t)| !sources.on.contains_key(&t.source) && !sources.off.contains_key(&t.source))
        {
            tracing::warn!(
                runbook = entry.runbook().id(),
                trigger = trigger.id,
                source = trigger.source,
                "the trigger listens to a webhook source the configuration does not have; it cannot fire"
            );
        }
        let inbox = Inbox::new(Arc::clone(&runbooks));
        let pages = match &config.server.pages {
            Some(dir) => crate::render::web::Pages::with_overrides(dir).map_err(|error| {
                anyhow::anyhow!(
                    "the dashboard's pages of `server.pages` (`{}`) cannot be loaded: {error}",
                    dir.display()
                )
            })?,
            None => crate::render::web::Pages::built_in()
                .map_err(|error| anyhow::anyhow!("the dashboard's pages cannot be loaded: {error}"))?,
        };
        if let Some(dir) = &config.server.pages {
            let (replacing, others) = pages.overrides();
            if !replacing.is_empty() {
                tracing::info!(
                    "the dashboard's pages {} come from `{}` (`server.pages`), not from this binary: compare them \
                     with this version's after each upgrade (docs/dashboard.md, \"Replacing pages\")",
                    listed(&replacing),
                    dir.display()
                );
            }
            if !others.is_empty() {
                tracing::warn!(
                    "`{}` (`server.pages`) holds {}, which replace(s) no built-in page: used only where a page \
                     includes it (check the name against docs/dashboard.md's list)",
                    dir.display(),
                    listed(&others)
                );
            }
        }
        let sessions = web::session::Sessions::new(config.server.sessions);
        Ok(App {
            pages,
            sessions,
            stopping: watch::channel(false).0,
            runtime,
            config,
            metrics: Metrics::new(),
            ready: AtomicBool::new(false),
            sources,
            hooks: tokio::sync::Semaphore::new(webhooks::IN_FLIGHT),
            runbooks,
            inbox,
        })
    }
}

/// `a.html`, `b.html`: file names for a log line.
fn listed(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

/// Every route: method and path, as the router serves them and `/openapi.json` documents them
/// (a test holds the two to this list).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/api/v1/runbooks"),
    ("POST", "/api/v1/runbooks/validate"),
    ("GET", "/api/v1/runbooks/{id}"),
    ("GET", "/api/v1/incidents"),
    ("POST", "/api/v1/incidents"),
    ("GET", "/api/v1/incidents/{id}"),
    ("GET", "/api/v1/incidents/{id}/timeline"),
    ("GET", "/api/v1/incidents/{id}/runbook"),
    ("POST", "/api/v1/incidents/{id}/approvals"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/done"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/retry"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/skip"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/gates/{gate}/retry"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/gates/{gate}/pass"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/test"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/launch"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/pause"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/resume"),
    ("POST", "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/cancel"),
    ("POST", "/api/v1/incidents/{id}/signals"),
    ("POST", "/api/v1/incidents/{id}/notes"),
    ("POST", "/api/v1/incidents/{id}/close"),
    ("GET", "/api/v1/incidents/{id}/updates/{audience}"),
    ("POST", "/api/v1/incidents/{id}/updates/{audience}"),
    ("GET", "/api/v1/webhooks/{source}/deliveries/{id}"),
    ("POST", "/hooks/{source}"),
];

pub fn router<S: Store>(app: Arc<App<S>>) -> Router {
    let max_body = app.config.server.max_body;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics_text::<S>))
        .route("/openapi.json", get(openapi::document))
        .route("/api/v1/runbooks", get(api::runbooks::<S>))
        .route("/api/v1/runbooks/validate", post(api::validate::<S>))
        .route("/api/v1/runbooks/{id}", get(api::runbook::<S>))
        .route("/api/v1/incidents", get(api::incidents::<S>).post(api::start::<S>))
        .route("/api/v1/incidents/{id}", get(api::incident::<S>))
        .route("/api/v1/incidents/{id}/timeline", get(api::timeline::<S>))
        .route("/api/v1/incidents/{id}/runbook", get(api::pinned_runbook::<S>))
        .route("/api/v1/incidents/{id}/approvals", post(api::approve::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/done", post(api::done::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/retry", post(api::retry::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/skip", post(api::skip::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/gates/{gate}/retry", post(api::retry_gate::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/gates/{gate}/pass", post(api::pass_gate::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/test", post(api::campaign_test::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/launch", post(api::campaign_launch::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/pause", post(api::campaign_pause::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/resume", post(api::campaign_resume::<S>))
        .route("/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/cancel", post(api::campaign_cancel::<S>))
        .route("/api/v1/incidents/{id}/signals", post(api::signal::<S>))
        .route("/api/v1/incidents/{id}/notes", post(api::note::<S>))
        .route("/api/v1/incidents/{id}/close", post(api::close::<S>))
        .route("/api/v1/incidents/{id}/updates/{audience}", get(api::render_update::<S>).post(api::send_update::<S>))
        .route("/api/v1/webhooks/{source}/deliveries/{id}", get(webhooks::receipt::<S>))
        .route("/hooks/{source}", post(webhooks::receive::<S>))
        .merge(web::router(Arc::clone(&app)))
        .fallback(web::unknown::<S>)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), count_requests::<S>))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics_text<S: Store>(State(app): State<Arc<App<S>>>) -> Result<Response, ApiError> {
    // Incidents by state and the outbox's depth are read when scraped.
    let incidents = app.runtime.store().incidents().await?;
    let open = incidents.iter().filter(|incident| incident.closed_at.is_none()).count();
    app.metrics.incidents.get_or_create(&StateLabels { state: "open".into() }).set(open as i64);
    app.metrics.incidents.get_or_create(&StateLabels { state: "closed".into() }).set((incidents.len() - open) as i64);
    let pending = app.runtime.store().pending_effects(100_000).await?;
    app.metrics.outbox.set(pending.len() as i64);
    let waiting = app.runtime.store().inbox_depth().await?;
    app.metrics.inbox.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    // Campaigns of incidents closed since the last scrape drop out.
    app.metrics.campaigns.clear();
    for incident in incidents.iter().filter(|incident| incident.closed_at.is_none()) {
        for (campaign, progress) in app.runtime.store().campaigns(&incident.id).await? {
            let to_send = progress.recipients.saturating_sub(progress.sent + progress.failed);
            for (state, count) in [("sent", progress.sent), ("failed", progress.failed), ("to_send", to_send)] {
                let labels = metrics::CampaignLabels { campaign: campaign.clone(), state: state.into() };
                app.metrics.campaigns.get_or_create(&labels).set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], app.metrics.encode()).into_response())
}

async fn count_requests<S: Store>(State(app): State<Arc<App<S>>>, request: Request, next: Next) -> Response {
    // Known methods only: a client may send any token as a method, and labels must stay few.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known.to_string(),
        _ => "other".to_string(),
    };
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let started = Instant::now();
    let limit = app.config.server.request_timeout;
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the request took too long").into_response()
        }
    };
    let status = response.status().as_u16();
    // The route's pattern, never the path, the query, a header or the body: nothing a secret or a
    // token could be in.
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(method, route, status, elapsed_ms, "request");
    app.metrics.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    response
}

impl<S: Store> App<S> {
    /// The runbook with this id among those loaded at start. Never a path: the API reads no file
    /// it is named, and no file at all after start.
    pub fn runbook(&self, id: &str) -> Result<&Entry, registry::Error> {
        self.runbooks.find(id)
    }
}

/// Times each effect for `/metrics`, around the executor that carries it out.
struct Timed<E, S> {
    inner: Arc<E>,
    app: Arc<App<S>>,
}

impl<E: Executor, S: Store> Executor for Timed<E, S> {
    async fn carry_out(
        &self,
        effect: &Effect,
        runbook: &Runbook,
        incident: &Incident,
        events: &[Event],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Outcome {
        let started = Instant::now();
        let outcome = self.inner.carry_out(effect, runbook, incident, events, now).await;
        let kind = match &effect.kind {
            EffectKind::Http { .. } => "http",
            EffectKind::Command { .. } => "command",
            EffectKind::Check { .. } => "check",
            EffectKind::Notify { .. } => "notify",
            EffectKind::Campaign { .. } => "campaign",
        };
        self.app
            .metrics
            .effect_seconds
            .get_or_create(&EffectLabels { kind: kind.into() })
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    async fn send_campaign_batch(
        &self,
        job: crate::actions::campaign::BatchJob<'_>,
    ) -> crate::actions::campaign::BatchSent {
        let sent = self.inner.send_campaign_batch(job).await;
        if let crate::actions::campaign::Answer::Failed { class, .. } = &sent.answer {
            let labels = metrics::FailedAttemptLabels { reason: class.as_str().into() };
            self.app.metrics.campaign_failed_attempts.get_or_create(&labels).inc();
        }
        sent
    }
}

/// Serves until `shutdown` resolves: the API and webhooks on `listener`, the runtime loop every
/// `interval`, and the inbox task whenever a delivery arrives (and every `interval`). On shutdown
/// the server stops taking connections and answers the requests it has, the loop finishes its pass
/// and the inbox task its page (effects and deliveries they did not reach wait for the next
/// start).
pub async fn serve<S: Store>(
    app: Arc<App<S>>,
    executor: Arc<impl Executor>,
    listener: tokio::net::TcpListener,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop, mut stopped) = watch::channel(false);
    let looping = Arc::clone(&app);
    let timed = Timed { inner: executor, app: Arc::clone(&app) };
    let runtime_loop = tokio::spawn(async move {
        // Other replicas' new work (and this one's) rings the bell; the interval is the poll that
        // finds it anyway.
        let mut bell = looping.runtime.store().work_bell();
        loop {
            match looping.runtime.run_due(&timed).await {
                Ok(_) => looping.ready.store(true, Ordering::Relaxed),
                Err(error) => tracing::error!(%error, "the runtime loop's pass failed; it tries again"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = crate::runtime::rung(&mut bell) => {}
                _ = stopped.changed() => break,
            }
        }
    });
    let applying = Arc::clone(&app);
    let stopped = stop.subscribe();
    let inbox = tokio::spawn(async move { applying.inbox.run(&applying.runtime, interval, stopped).await });
    let stopping = Arc::clone(&app);
    let shutdown = async move {
        shutdown.await;
        // Live pages' event streams end, so that the connections they hold can close.
        stopping.stopping.send_replace(true);
    };
    accept(listener, router(Arc::clone(&app)), app.config.server.header_timeout, shutdown).await;
    app.ready.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    let _ = runtime_loop.await;
    let _ = inbox.await;
    Ok(())
}

/// Serves HTTP/1 connections until `shutdown`, then waits for the requests under way. Each
/// connection must send a request's head within `header_timeout` (hyper's own limit, which needs
/// the timer set here: without it a client could hold a connection open by sending nothing).
async fn accept(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: the next accept may succeed once some close.
                Err(error) => {
                    tracing::warn!(%error, "a connection could not be accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away or sends garbage ends its own connection, nothing else.
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
