//! `phasegate list`: every incident, newest first, with its state.

use super::Format;
use super::incident::{Common, open};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Include closed incidents.
    #[arg(long)]
    all: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: Args, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let opened = open(&args.common, templates).await?;
    let mut incidents = opened.runtime.store().incidents().await?;
    incidents.retain(|incident| args.all || incident.closed_at.is_none());
    incidents.reverse();
    match args.format {
        Format::Json => super::print_stdout(&(serde_json::to_string_pretty(&incidents)? + "\n"))?,
        Format::Text => {
            let mut text = String::new();
            if incidents.is_empty() {
                text.push_str(if args.all {
                    "no incidents\n"
                } else {
                    "no open incidents (`--all` shows closed ones)\n"
                });
            }
            for incident in incidents {
                let state = if incident.closed_at.is_some() { "closed" } else { "open" };
                text.push_str(&format!(
                    "{:<22} {:<6} {:<28} started {}  last change {}\n",
                    incident.id,
                    state,
                    incident.runbook_id,
                    incident.started_at.format("%Y-%m-%d %H:%M UTC"),
                    incident.updated_at.format("%Y-%m-%d %H:%M UTC"),
                ));
            }
            super::print_stdout(&text)?;
        }
    }
    Ok(super::exit::OK)
}
