//! `phasegate campaign`: where a campaign stands (`status`, `--watch` with a progress bar), what
//! people holding the runbook's `campaign` right may do to it (`pause`, `resume`, `cancel`), its
//! messages rendered for a sample without sending (`preview`), and the offer codes it issued
//! (`codes`), for the system that honours them.

use std::time::Duration;

use anyhow::Context as _;

use super::Format;
use super::act::{split, submit};
use super::incident::{Common, open_read_only};
use crate::engine::command::CampaignAction;
use crate::engine::{Command as EngineCommand, Incident};
use crate::store::{BatchState, CampaignBatch, Store};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show how far a campaign has got: sent, to send, failed, rate and time left.
    Status(Status),
    /// Pause a campaign: the batches in flight finish, no new one starts.
    Pause(Act),
    /// Resume a paused campaign.
    Resume(Act),
    /// Cancel a campaign, with a reason: the batches in flight finish and the step fails for good
    /// with what was sent (`phasegate retry` sends the rest).
    Cancel(Act),
}

#[derive(Debug, clap::Args)]
pub struct Status {
    incident: String,
    /// The campaign step, as `PHASE/STEP`.
    step: String,
    /// Keep showing it, with a progress bar, until the campaign ends.
    #[arg(long)]
    watch: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Act {
    incident: String,
    /// The campaign step, as `PHASE/STEP`.
    step: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// Why: recorded with it (required to cancel).
    #[arg(long)]
    reason: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

pub async fn run(command: Command, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let (args, action) = match command {
        Command::Status(args) => return status(args, templates).await,
        Command::Pause(args) => (args, CampaignAction::Pause),
        Command::Resume(args) => (args, CampaignAction::Resume),
        Command::Cancel(args) => (args, CampaignAction::Cancel),
    };
    let (phase, step) = split(&args.step, "STEP")?;
    let command = EngineCommand::Campaign { phase, step, action, reason: args.reason };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

/// A campaign's numbers, from its batches in the store and its events.
#[derive(Debug, Clone, serde::Serialize)]
struct Figures {
    campaign: String,
    state: &'static str,
    recipients: u64,
    sent: u64,
    failed: u64,
    to_send: u64,
    batches: u32,
    batches_done: u32,
    batches_in_flight: u32,
    /// Messages answered a second, since the first batch was marked in flight.
    rate: f64,
    /// Seconds left at that rate.
    seconds_left: Option<u64>,
    merkle_root: Option<String>,
}

fn figures(campaign: &str, incident: &Incident, phase: &str, step: &str, batches: &[CampaignBatch]) -> Figures {
    let state = incident.step(phase, step);
    let kept = state.campaign.clone().unwrap_or_default();
    let (mut sent, mut failed, mut done, mut flying) = (0u64, 0u64, 0u32, 0u32);
    let (mut first, mut last) = (None, None);
    for batch in batches {
        match &batch.state {
            BatchState::Answered { sent: s, failed: f, at, .. } => {
                (sent, failed, done) = (sent + u64::from(*s), failed + u64::from(*f), done + 1);
                last = last.max(Some(*at));
            }
            BatchState::Sending { since, .. } => {
                flying += 1;
                first = first.min(Some(*since)).or(Some(*since));
            }
            BatchState::Planned => {}
        }
    }
    let recipients: u64 = batches.iter().map(|b| u64::from(b.plan.recipients)).sum();
    let started = kept.started_at.or(first);
    let elapsed = match (started, last) {
        (Some(start), Some(end)) if end > start => (end - start).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    let rate = if elapsed > 0.0 { (sent + failed) as f64 / elapsed } else { 0.0 };
    let to_send = recipients.saturating_sub(sent + failed);
    let word = match (&kept.finished, &kept.cancelled, &kept.paused, state.status.as_str()) {
        (Some(totals), ..) if totals.cancelled => "cancelled",
        (Some(_), ..) => "finished",
        (None, Some(_), ..) => "cancelling",
        (None, None, Some(_), _) => "paused",
        (None, None, None, "running") if batches.is_empty() => "reading its list",
        (None, None, None, "running") => "sending",
        (None, None, None, other) => other,
    };
    Figures {
        campaign: campaign.to_string(),
        state: word,
        recipients,
        sent,
        failed,
        to_send,
        batches: batches.len() as u32,
        batches_done: done,
        batches_in_flight: flying,
        rate,
        seconds_left: (rate > 0.0 && to_send > 0).then(|| (to_send as f64 / rate).ceil() as u64),
        merkle_root: kept.finished.map(|totals| totals.merkle_root),
    }
}

async fn status(args: Status, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let (phase, step) = split(&args.step, "STEP")?;
    let (_, store) = open_read_only(&args.common, templates).await?;
    let campaign = format!("{}/{phase}/{step}", args.incident);
    let read = || async {
        let events = store.events(&args.incident).await?;
        anyhow::ensure!(!events.is_empty(), "no incident `{}` in the database", args.incident);
        let incident = Incident::from_events(&events).context("the incident's log cannot be read")?;
        let batches = store.campaign_batches(&campaign).await?;
        Ok(figures(&campaign, &incident, &phase, &step, &batches))
    };
    if !args.watch {
        let figures = read().await?;
        match args.format {
            Format::Json => super::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&figures)?))?,
            Format::Text => super::print_stdout(&text(&figures))?,
        }
        return Ok(super::exit::OK);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} sent {msg}")
            .context("the progress bar's template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(campaign.clone());
    loop {
        let figures = read().await?;
        bar.set_length(figures.recipients);
        bar.set_position(figures.sent + figures.failed);
        let left = figures
            .seconds_left
            .map(|s| format!(", {} left", humantime::format_duration(Duration::from_secs(s))))
            .unwrap_or_default();
        bar.set_message(format!("({} failed, {:.0}/s{left}; {})", figures.failed, figures.rate, figures.state));
        if matches!(figures.state, "finished" | "cancelled" | "failed" | "done" | "skipped") {
            bar.finish();
            super::print_stdout(&text(&figures))?;
            return Ok(super::exit::OK);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => { bar.abandon(); return Ok(super::exit::OK); }
        }
    }
}

fn text(f: &Figures) -> String {
    let left = f
        .seconds_left
        .map(|s| format!(", about {} left", humantime::format_duration(Duration::from_secs(s))))
        .unwrap_or_default();
    let root = f.merkle_root.as_ref().map(|r| format!("merkle root: {r}\n")).unwrap_or_default();
    format!(
        "campaign {}: {}\n{} of {} sent, {} failed, {} to send\nbatches: {} of {} answered, {} in flight\nrate: {:.0} messages/s{left}\n{root}",
        f.campaign,
        f.state,
        f.sent,
        f.recipients,
        f.failed,
        f.to_send,
        f.batches_done,
        f.batches,
        f.batches_in_flight,
        f.rate
    )
}
