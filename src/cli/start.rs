//! `phasegate start RUNBOOK --as ACTOR [--input KEY=VALUE]... [--strict]`: open an incident and
//! print its id. Before it opens, what the configuration lacks for the runbook is said on standard
//! error (`config::fit`); `--strict` refuses to start instead.

use super::Format;
use super::incident::{Carriers, Common, open, pairs, print_decision, runbook_text};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A runbook file, or the id of a runbook in the configured runbooks directory.
    runbook: String,
    /// Who starts it, as the configuration names people.
    #[arg(long = "as", value_name = "ACTOR")]
    actor: String,
    /// An input value; repeat for several.
    #[arg(long = "input", value_name = "KEY=VALUE")]
    inputs: Vec<String>,
    /// A deduplication key, as a trigger would give.
    #[arg(long)]
    key: Option<String>,
    /// Refuse to start when the configuration does not fit the runbook (a role nobody holds, a
    /// secret without a value, a channel that cannot deliver), instead of warning.
    #[arg(long)]
    strict: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: Args, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let opened = open(&args.common, templates).await?;
    let Some((path, text)) = runbook_text(&args.runbook, &opened)? else {
        return Ok(super::exit::INVALID);
    };
    let inputs = pairs(&args.inputs, "input")?;
    let runbook = match opened.runtime.runbook(&text) {
        Ok(runbook) => runbook,
        Err(diagnostics) => {
            super::print_diagnostics(&path, &diagnostics);
            return Ok(super::exit::INVALID);
        }
    };
    let misfits = crate::config::fit::misfits(&opened.config, &runbook, Some(&args.actor));
    let level = if args.strict { "error" } else { "warning" };
    for misfit in &misfits {
        eprintln!("{level}: {misfit}");
    }
    for warning in super::audit::audit_warnings(&opened.config) {
        eprintln!("warning: {warning}");
    }
    if args.strict && !misfits.is_empty() {
        eprintln!(
            "error: `start --strict` refuses: the configuration does not fit runbook `{}` ({} problem(s) above); \
             fix them, or start without `--strict`",
            runbook.id(),
            misfits.len()
        );
        return Ok(super::exit::INVALID);
    }
    let (id, decision) = match opened.runtime.start(&text, &args.actor, inputs, args.key).await {
        Err(crate::runtime::Error::InvalidRunbook(diagnostics)) => {
            super::print_diagnostics(&path, &diagnostics);
            return Ok(super::exit::INVALID);
        }
        other => other?,
    };
    match args.format {
        Format::Json => print_decision(&id, &decision, Format::Json, Carriers::Unknown)?,
        Format::Text => {
            super::print_stdout(&format!("{id}\n"))?;
            for event in decision.events.iter().skip(1) {
                eprintln!("{id}: {}", event.summary());
            }
        }
    }
    Ok(super::exit::OK)
}
