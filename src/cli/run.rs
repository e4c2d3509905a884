//! `phasegate run [--watch]`: apply the webhook deliveries waiting in the inbox (as `serve` does),
//! then carry out due work for every open incident: automated steps, check polls, timers,
//! retries, overdue relaxations and status updates. Without `--watch` it stops when nothing more
//! is due now; with it, it keeps going until interrupted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::incident::{Common, open};
use crate::actions::Actions;
use crate::runtime::inbox::Inbox;
use crate::runtime::runbooks;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep running, looking for due work every `--interval`.
    #[arg(long)]
    watch: bool,
    /// How often `--watch` looks for due work, for example `5s`.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// With `json`, one line per pass that did something:
    /// `{"deliveries": D, "effects": N, "events": M}`.
    #[arg(long, value_enum, default_value_t = super::Format::Text)]
    format: super::Format,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: Args, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    // Warnings and errors (a runbook file refused, an action that failed, a witness that cannot be
    // written) go to stderr as `serve` logs them; `RUST_LOG` sets the level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let opened = open(&args.common, templates).await?;
    let catalog = Arc::new(super::catalog(opened.config.templates.as_deref())?);
    let actions = Actions::new(catalog, Arc::new(opened.config.secrets.clone()))?
        .allow_commands(opened.config.commands)
        .with_outbound(opened.config.outbound.clone())?;
    let inbox = arm(&opened).await?;
    loop {
        let deliveries = inbox.apply_waiting(&opened.runtime).await.context("the webhook inbox cannot be applied")?;
        let done = std::sync::atomic::AtomicBool::new(false);
        let work = async {
            let progress = opened.runtime.run_due(&actions).await;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            progress
        };
        let (progress, ()) = tokio::join!(work, campaign_bars(opened.runtime.store(), &done));
        let progress = progress?;
        let did = deliveries + progress.effects + progress.events > 0;
        if did || (args.format == super::Format::Json && !args.watch) {
            match args.format {
                super::Format::Json => {
                    let line = serde_json::json!({
                        "deliveries": deliveries,
                        "effects": progress.effects,
                        "events": progress.events,
                    });
                    super::print_stdout(&format!("{line}\n"))?;
                }
                super::Format::Text => {
                    if deliveries > 0 {
                        eprintln!("applied {deliveries} webhook delivery(ies)");
                    }
                    eprintln!("carried out {} action(s), recorded {} event(s)", progress.effects, progress.events)
                }
            }
        }
        if !args.watch {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Present no longer: a step command run next does not take this process for one still running.
    if let Err(error) = opened.runtime.leave().await {
        tracing::warn!(%error, "this process's presence was not let go: it runs out with its lease");
    }
    Ok(super::exit::OK)
}

/// The inbox with the configured runbooks' triggers. Without a readable runbooks directory there
/// are no triggers, which is refused only when deliveries wait: applied with no trigger, they
/// would be marked as doing nothing.
async fn arm(opened: &super::incident::Opened) -> anyhow::Result<Inbox> {
    let dir = &opened.config.runbooks;
    match runbooks::load(&opened.runtime, dir) {
        Ok(registry) => Ok(Inbox::new(registry)),
        Err(error) => {
            let waiting = opened.runtime.store().inbox_depth().await?;
            if waiting > 0 {
                anyhow::bail!(
                    "{waiting} webhook delivery(ies) wait in the inbox, and the runbooks directory `{}` whose \
                     triggers apply them cannot be read: {error}",
                    dir.display()
                );
            }
            Ok(Inbox::default())
        }
    }
}

/// While `done` is false and standard error is a terminal: a progress bar for each campaign of an
/// open incident that has recipients left to send (sent and failed, the rate, time left).
async fn campaign_bars(store: &impl Store, done: &std::sync::atomic::AtomicBool) {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return;
    }
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} sent or failed, {per_sec}, {eta} left {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut shown: std::collections::HashMap<String, indicatif::ProgressBar> = std::collections::HashMap::new();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let open = store.incidents().await.unwrap_or_default();
        for incident in open.iter().filter(|incident| incident.closed_at.is_none()) {
            for (campaign, progress) in store.campaigns(&incident.id).await.unwrap_or_default() {
                let finished = progress.sent + progress.failed;
                if finished >= progress.recipients && !shown.contains_key(&campaign) {
                    continue;
                }
                let bar = shown.entry(campaign.clone()).or_insert_with(|| {
                    let bar = bars.add(indicatif::ProgressBar::new(progress.recipients));
                    bar.set_style(style.clone());
                    bar.set_prefix(campaign.clone());
                    bar
                });
                bar.set_position(finished);
                bar.set_message(format!("({} failed)", progress.failed));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for bar in shown.values() {
        bar.finish();
    }
}
