//! `phasegate list`: every incident, newest first, with its state: `open`, `failed` (a phase
//! failed and waits for a person), `closed` or `abandoned`.

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
    let mut states = Vec::new();
    for incident in &incidents {
        states.push(state(&opened, &incident.id).await?);
    }
    match args.format {
        Format::Json => {
            let mut listed = Vec::new();
            for (incident, state) in incidents.iter().zip(&states) {
                let mut entry = serde_json::to_value(incident)?;
                entry["state"] = serde_json::Value::from(*state);
                listed.push(entry);
            }
            super::print_stdout(&(serde_json::to_string_pretty(&listed)? + "\n"))?
        }
        Format::Text => {
            let mut text = String::new();
            if incidents.is_empty() {
                text.push_str(if args.all {
                    "no incidents\n"
                } else {
                    "no open incidents (`--all` shows closed ones)\n"
                });
            }
            for (incident, state) in incidents.iter().zip(&states) {
                text.push_str(&format!(
                    "{:<22} {:<9} {:<28} started {}  last change {}\n",
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

/// `open`, `failed` (a phase failed: a step waits to be retried or skipped), `closed` or
/// `abandoned`, from the incident's state.
async fn state(opened: &super::incident::Opened, id: &str) -> anyhow::Result<&'static str> {
    let loaded = opened.runtime.load(id).await?;
    Ok(match &loaded.incident.closed {
        Some(closed) if closed.abandoned => "abandoned",
        Some(_) => "closed",
        None if super::status::failed(&loaded.incident) => "failed",
        None => "open",
    })
}
