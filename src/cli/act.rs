//! The commands people give an incident: `approve`, `done`, `signal`, `note`, `update`, `close`,
//! for a step that failed for good, `retry` and `skip`, and for a check gate, `retry --gate` and
//! `pass`.
//! Each is decided on the stored state and recorded, or refused with the reason and nothing
//! recorded.

use super::Format;
use super::incident::{Carriers, Common, open, pairs, print_decision};
use crate::engine::Command;

#[derive(Debug, clap::Args)]
pub struct Approve {
    incident: String,
    phase: String,
    /// The approval gate, when the phase has more than one waiting.
    #[arg(long)]
    gate: Option<String>,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// Why: recorded with the approval.
    #[arg(long)]
    note: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Done {
    incident: String,
    /// The step, as `PHASE/STEP`.
    step: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// What shows the step was done: a ticket, a log excerpt, a link. Required to mark an
    /// automated step that failed for good done by hand (the runbook's `recover` roles).
    #[arg(long)]
    evidence: Option<String>,
    /// An output the step declares; repeat for several.
    #[arg(long = "output", value_name = "KEY=VALUE")]
    outputs: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Signal {
    incident: String,
    /// The signal gate, as `PHASE/GATE`.
    gate: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    #[arg(long)]
    note: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Note {
    incident: String,
    text: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Update {
    incident: String,
    /// The audience to send a status update to now.
    audience: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Close {
    incident: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// A closing note, recorded with the close.
    #[arg(long, conflicts_with = "abandon")]
    note: Option<String>,
    /// Close before every phase is done or skipped, recorded as abandoned (the runbook's
    /// `abandon` roles; needs `--reason`).
    #[arg(long, requires = "reason")]
    abandon: bool,
    /// Why the incident is abandoned: recorded, and shown in the report and the close update.
    #[arg(long, requires = "abandon")]
    reason: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Retry {
    incident: String,
    /// The step that failed for good, as `PHASE/STEP` (or with `--gate`, the check gate, as
    /// `PHASE/GATE`).
    step: String,
    /// Retry a check gate rather than a step: it is probed again, with a fresh deadline.
    #[arg(long)]
    gate: bool,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// Why another attempt should do better: recorded with it.
    #[arg(long)]
    reason: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Skip {
    incident: String,
    /// The step that failed for good, as `PHASE/STEP`.
    step: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// Why the step may be left undone: recorded with the skip.
    #[arg(long)]
    reason: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Pass {
    incident: String,
    /// The check gate, as `PHASE/GATE`, waiting or failed past its deadline.
    gate: String,
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// What shows the gate's condition holds though the check could not tell: recorded with it.
    #[arg(long)]
    evidence: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

pub(super) fn split(path: &str, what: &str) -> anyhow::Result<(String, String)> {
    match path.split_once('/') {
        Some((phase, item)) if !phase.is_empty() && !item.is_empty() => Ok((phase.to_string(), item.to_string())),
        _ => anyhow::bail!("`{path}` is not `PHASE/{what}`"),
    }
}

/// Decides `command` on the incident as `actor`, records it, and prints what happened.
pub(super) async fn submit(
    common: &Common,
    templates: Option<&std::path::Path>,
    incident: &str,
    actor: &str,
    command: Command,
    format: Format,
) -> anyhow::Result<u8> {
    let opened = open(common, templates).await?;
    let decision = opened.runtime.submit(incident, actor, command).await?;
    let carriers = match decision.effects.is_empty() || format == Format::Json {
        true => Carriers::Unknown,
        false => Carriers::of(opened.runtime.store()).await,
    };
    print_decision(incident, &decision, format, carriers)?;
    Ok(super::exit::OK)
}

pub async fn approve(args: Approve, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let command = Command::Approve { phase: args.phase, gate: args.gate, note: args.note };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

pub async fn done(args: Done, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let (phase, step) = split(&args.step, "STEP")?;
    let outputs = pairs(&args.outputs, "output")?;
    let command = Command::CompleteStep { phase, step, evidence: args.evidence, outputs };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

pub async fn signal(args: Signal, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let (phase, gate) = split(&args.gate, "GATE")?;
    let command = Command::Signal { phase, gate, note: args.note };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

pub async fn note(args: Note, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    submit(&args.common, templates, &args.incident, &args.actor, Command::Note { text: args.text }, args.format).await
}

pub async fn update(args: Update, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let command = Command::StatusUpdate { audience: args.audience };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

pub async fn close(args: Close, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let command = match args.reason {
        Some(reason) if args.abandon => Command::Abandon { reason },
        _ => Command::Close { note: args.note },
    };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

pub async fn retry(args: Retry, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let command = if args.gate {
        let (phase, gate) = split(&args.step, "GATE")?;
        Command::RetryGate { phase, gate, reason: args.reason }
    } else {
        let (phase, step) = split(&args.step, "STEP")?;
        Command::Retry { phase, step, reason: args.reason }
    };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

pub async fn skip(args: Skip, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let (phase, step) = split(&args.step, "STEP")?;
    let command = Command::Skip { phase, step, reason: args.reason };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}

pub async fn pass(args: Pass, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let (phase, gate) = split(&args.gate, "GATE")?;
    let command = Command::PassGate { phase, gate, evidence: args.evidence };
    submit(&args.common, templates, &args.incident, &args.actor, command, args.format).await
}
