//! `phasegate campaign`: where a campaign stands (`status`, `--watch` with a progress bar), what
//! people holding the runbook's `campaign` right may do to it (`pause`, `resume`, `cancel`), its
//! messages rendered for a sample without sending (`preview`), a test send of a sample's messages
//! to internal addresses (`test`, `runtime::campaign_test`), and the offer codes it issued
//! (`codes`), for the system that honours them.

use std::time::Duration;

use anyhow::Context as _;

use super::Format;
use super::act::{split, submit};
use super::incident::{Common, open_read_only};
use crate::engine::command::CampaignAction;
use crate::engine::state::Steered;
use crate::engine::{Command as EngineCommand, Incident};
use crate::runtime::campaign::Trouble;
use crate::store::{BatchState, CampaignBatch, Store};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show how far a campaign has got: sent, to send, failed, rate and time left.
    Status(Status),
    /// Launch a campaign step with `test_first`, which waits for it: refused until a test send of
    /// the step went out.
    Launch(Act),
    /// Pause a campaign: the batches in flight finish, no new one starts.
    Pause(Act),
    /// Resume a paused campaign.
    Resume(Act),
    /// Cancel a campaign, with a reason: the batches in flight finish and the step fails for good
    /// with what was sent (`phasegate retry` sends the rest).
    Cancel(Act),
    /// Render the messages of the list's first recipients without sending anything.
    Preview(Preview),
    /// Send the messages of the list's first recipients, as the campaign would, to internal
    /// addresses only (the configuration's `campaigns.test_recipients`), subject prefixed
    /// "[TEST] ", through the campaign's channel; recorded in the incident's log.
    Test(Test),
    /// Export the offer codes the campaign issued (recipient id, code), for the system that honours them.
    Codes(Codes),
}

#[derive(Debug, clap::Args)]
pub struct Preview {
    incident: String,
    /// The campaign step, as `PHASE/STEP`.
    step: String,
    /// Who asks: a person holding the runbook's `campaign` right (the messages carry personal
    /// data and offer codes).
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// How many recipients' messages to render.
    #[arg(long, default_value_t = 3)]
    sample: usize,
    /// Write each message's text and HTML into this directory instead of printing the text.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Test {
    incident: String,
    /// The campaign step, as `PHASE/STEP`.
    step: String,
    /// Who sends it: a person holding the runbook's `campaign` right.
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// The internal addresses to send to, separated by commas (or the flag repeated).
    #[arg(long, value_name = "ADDRESS,...", value_delimiter = ',')]
    to: Vec<String>,
    /// How many of the list's first recipients' messages to send (each to every address).
    #[arg(long, default_value_t = 1)]
    sample: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Codes {
    incident: String,
    /// The campaign step, as `PHASE/STEP`.
    step: String,
    /// Who asks: a person holding the runbook's `campaign` right.
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// Write the CSV to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    common: Common,
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
        Command::Preview(args) => return preview(args, templates).await,
        Command::Codes(args) => return codes(args, templates).await,
        Command::Test(args) => return test(args, templates).await,
        Command::Launch(args) => (args, CampaignAction::Launch),
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
    /// Who paused it, when and why (phasegate's sender, after a batch failed its attempts in a
    /// row, or a person), while it is paused.
    paused: Option<Steered>,
    /// Who cancelled it, when and why, until the step is retried.
    cancelled: Option<Steered>,
    /// How many test sends it had, and the last one.
    tests: u32,
    last_test: Option<crate::engine::state::TestSend>,
    /// A batch retrying after a failed attempt, and why, while it is unanswered.
    retrying: Option<Trouble>,
    /// The same, in words, at the time of reading.
    retrying_text: Option<String>,
}

fn figures(
    campaign: &str,
    incident: &Incident,
    phase: &str,
    step: &str,
    batches: &[CampaignBatch],
    now: chrono::DateTime<chrono::Utc>,
) -> Figures {
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
    let retrying = Trouble::of(batches);
    // A campaign whose channel keeps failing says so, instead of "sending".
    let word = if word == "sending" && retrying.is_some() { "retrying" } else { word };
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
        seconds_left: (rate > 0.0 && to_send > 0 && matches!(word, "sending" | "retrying" | "paused"))
            .then(|| (to_send as f64 / rate).ceil() as u64),
        merkle_root: kept.finished.map(|totals| totals.merkle_root),
        paused: kept.paused,
        cancelled: kept.cancelled,
        tests: state.tests,
        last_test: state.last_test.clone(),
        retrying_text: retrying.as_ref().map(|trouble| trouble.sentence(now)),
        retrying,
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
        Ok(figures(&campaign, &incident, &phase, &step, &batches, chrono::Utc::now()))
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
        let state = figures.retrying_text.as_deref().unwrap_or(figures.state);
        bar.set_message(format!("({} failed, {:.0}/s{left}; {state})", figures.failed, figures.rate));
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
    let retrying = f.retrying_text.as_ref().map(|text| format!("{text}\n")).unwrap_or_default();
    let steered = |word: &str, steered: &Option<Steered>| {
        steered.as_ref().map_or_else(String::new, |steered| {
            format!(
                "{word} by {} at {}: {}\n",
                steered.by,
                steered.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                steered.reason.as_deref().unwrap_or("no reason given")
            )
        })
    };
    let steered = steered("cancelled", &f.cancelled) + &steered("paused", &f.paused);
    let test = match &f.last_test {
        None => "test sends: none\n".to_string(),
        Some(last) => format!(
            "test sends: {}; the last by {} at {}: {} message(s) of {} to {}{}\n",
            f.tests,
            last.by,
            last.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            last.test.messages,
            last.test.recipients.join(", "),
            last.test.to.join(", "),
            match (&last.test.error, last.test.refused) {
                (Some(error), _) => format!(" (none taken: {error})"),
                (None, 0) => String::new(),
                (None, refused) => format!(" ({refused} refused)"),
            }
        ),
    };
    format!(
        "campaign {}: {}\n{steered}{retrying}{} of {} sent, {} failed, {} to send\nbatches: {} of {} answered, {} in flight\nrate: {:.0} messages/s{left}\n{root}{test}",
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

/// What `preview` and `codes` read: the incident, its runbook, the campaign step and the list.
struct Opened {
    config: crate::config::Config,
    store: crate::store::AnyStore,
    incident: Incident,
    runbook: crate::runbook::Runbook,
    catalog: crate::render::Catalog,
    phase: String,
    step: String,
    campaign: String,
    list: std::path::PathBuf,
}

/// Opens the incident read-only and checks that `actor` holds the runbook's `campaign` right.
async fn opened(
    common: &Common,
    templates: Option<&std::path::Path>,
    incident: &str,
    step_path: &str,
    actor: &str,
    what: &str,
) -> anyhow::Result<Opened> {
    let (phase, step) = split(step_path, "STEP")?;
    let (config, store) = open_read_only(common, templates).await?;
    let events = store.events(incident).await?;
    anyhow::ensure!(!events.is_empty(), "no incident `{incident}` in the database");
    let state = Incident::from_events(&events).context("the incident's log cannot be read")?;
    let catalog = super::catalog(config.templates.as_deref())?;
    let runbook = crate::runbook::parse(&state.runbook_text, &catalog)
        .map_err(|_| anyhow::anyhow!("the runbook incident `{incident}` pinned no longer validates"))?;
    let Some(crate::runbook::model::Action::Campaign { recipients_input, .. }) =
        runbook.phase(&phase).and_then(|p| p.step(&step)).map(|s| &s.action)
    else {
        anyhow::bail!("`{phase}/{step}` is not a campaign step of runbook `{}`", runbook.id());
    };
    let roles = &runbook.rights().campaign.roles;
    if config.directory.role_among(actor, roles).is_none() {
        anyhow::bail!(
            "`{actor}` does not hold {}, which {what} needs (the runbook's `rights.campaign`)",
            if roles.is_empty() {
                "any role (the runbook gives the right to nobody)".to_string()
            } else {
                format!("a role among {}", roles.join(", "))
            }
        );
    }
    let list = match state.inputs.get(recipients_input) {
        Some(serde_json::Value::String(list)) => std::path::PathBuf::from(list),
        _ => anyhow::bail!("input `{recipients_input}` of incident `{incident}` names no recipient list"),
    };
    let campaign = format!("{incident}/{phase}/{step}");
    Ok(Opened { config, store, incident: state, runbook, catalog, phase, step, campaign, list })
}

/// The campaign step's list spec (`opened` checked that it is a campaign step).
fn spec_of(o: &Opened) -> crate::campaign::ListSpec {
    let step = o.runbook.phase(&o.phase).and_then(|p| p.step(&o.step)).expect("checked by `opened`");
    crate::runtime::campaign::list_spec(step)
}

async fn preview(args: Preview, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    use crate::campaign::recipients::{Entry, Reader};
    let o = opened(&args.common, templates, &args.incident, &args.step, &args.actor, "previewing a campaign").await?;
    let Some(crate::runbook::model::Action::Campaign { template, subject, code, .. }) =
        o.runbook.phase(&o.phase).and_then(|p| p.step(&o.step)).map(|s| s.action.clone())
    else {
        unreachable!("checked by `opened`")
    };
    let subject = if subject.is_empty() { o.runbook.title().to_string() } else { subject };
    let spec = spec_of(&o);
    let mut reader = Reader::open(&o.list, &spec)?;
    let (mut sample, mut rejected) = (Vec::new(), 0u64);
    while sample.len() < args.sample {
        match reader.next_item()? {
            Some(item) => match item.entry {
                Entry::Recipient(recipient) => sample.push(recipient),
                Entry::Rejected { .. } => rejected += 1,
            },
            None => break,
        }
    }
    let codes = code
        .as_ref()
        .map(|offer| crate::actions::campaign::job::offer_codes(offer, &o.config.secrets, &o.campaign, &sample))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let base = crate::render::context::campaign_base(
        &o.runbook,
        &o.incident,
        &o.phase,
        &o.step,
        &crate::campaign::Counts::default(),
        chrono::Utc::now(),
    );
    let renderer = crate::render::campaign::Renderer::new(&o.catalog, &template, base)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let mut out = format!(
        "campaign {}: {} message(s) from `{}` rendered, nothing sent ({rejected} line(s) before them set aside)\n",
        o.campaign,
        sample.len(),
        o.list.display()
    );
    for (index, recipient) in sample.iter().enumerate() {
        let code = codes.as_ref().map(|codes| codes[index].as_str()).filter(|code| !code.is_empty());
        let rendered = renderer.render(recipient, code)?;
        let head = format!(
            "to: {}\nsubject: {subject}\nrecipient: {} (line {})\n",
            recipient.address, recipient.id, recipient.line
        );
        match &args.out {
            Some(dir) => {
                let stem = dir.join(format!("{:03}-{}", index + 1, recipient.id.replace(['/', '\\', ' '], "-")));
                std::fs::write(stem.with_extension("txt"), format!("{head}\n{}", rendered.text))?;
                if let Some(html) = &rendered.html {
                    std::fs::write(stem.with_extension("html"), html)?;
                }
                out.push_str(&format!(
                    "wrote {}.txt{}\n",
                    stem.display(),
                    if rendered.html.is_some() { " and .html" } else { "" }
                ));
            }
            None => {
                out.push_str(&format!("\n--- message {} of {}\n{head}\n{}\n", index + 1, sample.len(), rendered.text))
            }
        }
    }
    super::print_stdout(&out)?;
    Ok(super::exit::OK)
}

async fn test(args: Test, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let (phase, step) = split(&args.step, "STEP")?;
    let opened = super::incident::open(&args.common, templates).await?;
    let catalog = std::sync::Arc::new(super::catalog(opened.config.templates.as_deref())?);
    let actions = crate::actions::Actions::new(catalog, std::sync::Arc::new(opened.config.secrets.clone()))?
        .with_outbound(opened.config.outbound.clone())?;
    let request = crate::runtime::campaign_test::TestRequest {
        incident: &args.incident,
        phase: &phase,
        step: &step,
        actor: &args.actor,
        to: &args.to,
        sample: args.sample,
    };
    let report = opened.runtime.campaign_test(&actions, request).await?;
    match args.format {
        Format::Json => super::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?,
        Format::Text => {
            let test = &report.test;
            let mut out = format!(
                "campaign {}: test send {}: {} message(s) ({} recipient(s): {}) to {}\n",
                report.campaign,
                report.number,
                test.messages,
                test.recipients.len(),
                test.recipients.join(", "),
                test.to.join(", ")
            );
            match &test.error {
                Some(error) => out.push_str(&format!("the channel took none: {error}\n")),
                None => out.push_str(&format!("{} taken, {} refused\n", test.messages - test.refused, test.refused)),
            }
            for (id, why) in &report.problems {
                out.push_str(&format!("  {id}: {why}\n"));
            }
            out.push_str("recorded in the incident's log; the campaign itself is unchanged\n");
            super::print_stdout(&out)?;
        }
    }
    Ok(if report.test.error.is_some() { super::exit::INVALID } else { super::exit::OK })
}

async fn codes(args: Codes, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    use std::io::Write as _;
    let o = opened(&args.common, templates, &args.incident, &args.step, &args.actor, "exporting a campaign's codes")
        .await?;
    let Some(crate::runbook::model::Action::Campaign { code: Some(offer), .. }) =
        o.runbook.phase(&o.phase).and_then(|p| p.step(&o.step)).map(|s| s.action.clone())
    else {
        anyhow::bail!("campaign `{}` gives no offer codes (its step has no `code`)", o.campaign);
    };
    let spec = spec_of(&o);
    let leaves: std::collections::HashMap<u32, Vec<u8>> =
        o.store.campaign_leaves(&o.campaign).await?.into_iter().collect();
    let mut csv = b"recipient_id,code,outcome\n".to_vec();
    let mut issued = 0u64;
    for batch in o.store.campaign_batches(&o.campaign).await? {
        let Some(blob) = leaves.get(&batch.plan.number) else { continue };
        let outcomes = crate::audit::merkle::decode_leaves(blob)
            .with_context(|| format!("batch {}: its stored leaves do not read", batch.plan.number))?;
        let recipients = crate::campaign::plan::read_batch(&o.list, &spec, &batch.plan)
            .with_context(|| format!("batch {} cannot be read back from `{}`", batch.plan.number, o.list.display()))?;
        let codes = crate::actions::campaign::job::offer_codes(&offer, &o.config.secrets, &o.campaign, &recipients)
            .map_err(anyhow::Error::msg)?;
        for ((recipient, code), leaf) in recipients.iter().zip(&codes).zip(&outcomes) {
            if code.is_empty() {
                continue;
            }
            issued += 1;
            let id = recipient.id.replace('"', "\"\"");
            csv.extend_from_slice(format!("\"{id}\",{code},{}\n", leaf.outcome.name()).as_bytes());
        }
    }
    match &args.output {
        Some(path) => std::fs::write(path, &csv).with_context(|| format!("cannot write `{}`", path.display()))?,
        None => std::io::stdout().write_all(&csv)?,
    }
    eprintln!("{issued} code(s) of campaign {} exported", o.campaign);
    Ok(super::exit::OK)
}
