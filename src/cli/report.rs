//! `phasegate report INCIDENT [--format md|html] [-o FILE]`: the post-incident report, from the
//! incident's log alone, with the verification of that log.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::incident::{Common, open_read_only};
use crate::audit::report;
use crate::runtime::audit;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Md,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    incident: String,
    #[arg(long, value_enum, default_value_t = Format::Md)]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The public key (PEM) checkpoints must be signed with (default: the configuration's).
    #[arg(long, value_name = "KEY")]
    public_key: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: Args, templates: Option<&Path>) -> anyhow::Result<u8> {
    // Read-only: the report verifies the log, and that changes nothing.
    let (config, store) = open_read_only(&args.common, templates).await?;
    let store = &store;
    let incident = super::stored_incident(store, &args.incident).await?;
    let key = super::audit::public_key(args.public_key.as_deref(), &config)?;
    let outcome = audit::verify_stored(store, &incident, key.as_ref()).await?;
    let events = store.events(&incident.id).await.with_context(|| {
        format!("the log of `{}` cannot be read for a report; `phasegate audit verify` says why", incident.id)
    })?;
    let format = match args.format {
        Format::Md => report::Format::Markdown,
        Format::Html => report::Format::Html,
    };
    let text = report::render(&events, &outcome.integrity(), format)?;
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))?,
        None => super::print_stdout(&text)?,
    }
    Ok(super::exit::OK)
}
