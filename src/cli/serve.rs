//! `phasegate serve`: the REST API, webhooks, health and metrics, with the runtime loop in the
//! same process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::incident::{Common, open};
use crate::actions::Actions;
use crate::server::{self, App};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Whether replicas sharing a PostgreSQL database wake each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Notify {
    On,
    Off,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on (default: the configuration's `server.listen`, else 127.0.0.1:8080).
    #[arg(long, env = "PHASEGATE_LISTEN")]
    listen: Option<SocketAddr>,
    /// How often the runtime loop looks for due work.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// With a PostgreSQL database: whether this replica notifies the others of new work
    /// (LISTEN/NOTIFY) and wakes when they do; off, each looks for work every `--interval`.
    #[arg(long, value_enum, env = "PHASEGATE_NOTIFY", default_value_t = Notify::On)]
    notify: Notify,
    /// How long this replica's claims on shared work (effects, incidents' ticks, the inbox) last
    /// unless renewed: how long a dead replica's work waits before another takes it over
    /// (default: the configuration's `server.lease`, else 12s; between 1s and 1h).
    #[arg(long, env = "PHASEGATE_LEASE", value_parser = lease)]
    lease: Option<Duration>,
    /// Logs as text for people, or as JSON lines for a log pipeline (`RUST_LOG` sets the level).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: Args, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let opened = open(&args.common, templates).await?;
    for warning in super::audit::audit_warnings(&opened.config) {
        tracing::warn!("{warning}");
    }
    if opened.config.audit.signing_key.is_some() && !opened.config.audit.witness.is_configured() {
        tracing::warn!(
            "no `audit.witness` is configured: whoever can write the database can cut an incident back to an earlier \
             checkpoint unseen (docs/audit.md, \"The witness\")"
        );
    }
    // The templates directory as the catalog finds it (`./templates` when none is configured).
    let templates_dir = opened.config.templates.clone().or_else(|| {
        let default = std::path::Path::new("templates");
        default.is_dir().then(|| default.to_path_buf())
    });
    if let Some(folder) =
        crate::render::web::unread_folder(templates_dir.as_deref(), opened.config.server.pages.as_deref())
    {
        tracing::warn!(
            folder = %folder.display(),
            "`{}` holds dashboard pages, which are not read: the dashboard's pages are this binary's. If they are a \
             copy of an older phasegate's `templates/web/`, delete the folder; to replace pages on purpose, name a \
             folder of them in the configuration's `server.pages` (docs/dashboard.md, \"Replacing pages\")",
            folder.display()
        );
    }
    let catalog = Arc::new(super::catalog(opened.config.templates.as_deref())?);
    let actions = Actions::new(catalog, Arc::new(opened.config.secrets.clone()))?
        .allow_commands(opened.config.commands)
        .with_outbound(opened.config.outbound.clone())?;
    if args.notify == Notify::On {
        opened.runtime.store().notify_replicas().await.context("cannot listen for the other replicas' work")?;
    }
    let lease = args.lease.unwrap_or(opened.config.server.lease);
    let runtime = opened.runtime.with_lease(lease);
    tracing::info!(
        holder = runtime.holder(),
        lease = %humantime::format_duration(lease),
        "claims on shared work are held under this name"
    );
    let listen = args.listen.unwrap_or(opened.config.server.listen);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    let app = Arc::new(App::new(runtime, opened.config)?);
    server::serve(Arc::clone(&app), Arc::new(actions), listener, args.interval, shutdown()).await?;
    if let Err(error) = app.runtime.leave().await {
        tracing::warn!(%error, "this process's presence was not let go: it runs out with its lease");
    }
    // Every request is answered and the loops have stopped, so nothing else holds the app: the
    // writer finishes what it was given and the database is closed (its WAL copied back).
    match Arc::try_unwrap(app) {
        Ok(app) => app.runtime.into_store().close().await,
        Err(_) => tracing::warn!("the database was left open: something still holds the server"),
    }
    tracing::info!("stopped");
    Ok(super::exit::OK)
}

/// `--lease`: a duration such as `15s`, within the bounds `server.lease` keeps to.
fn lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as `15s`: {error}"))?;
    crate::config::server::check_lease(lease)
}

/// Resolves on Ctrl-C or SIGTERM (what service managers send).
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: answering the requests in flight");
}
