//! `phasegate run [--watch]`: carry out due work for every open incident: automated steps, check
//! polls, timers, retries, overdue relaxations and status updates. Without `--watch` it stops
//! when nothing more is due now; with it, it keeps going until interrupted.

use std::sync::Arc;
use std::time::Duration;

use super::incident::{Common, open};
use crate::actions::Actions;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep running, looking for due work every `--interval`.
    #[arg(long)]
    watch: bool,
    /// How often `--watch` looks for due work, for example `5s`.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// With `json`, one line per pass that did something: `{"effects": N, "events": M}`.
    #[arg(long, value_enum, default_value_t = super::Format::Text)]
    format: super::Format,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: Args, templates: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let opened = open(&args.common, templates).await?;
    let catalog = Arc::new(super::catalog(opened.config.templates.as_deref())?);
    let actions = Actions::new(catalog, Arc::new(opened.config.secrets.clone()))?
        .allow_commands(opened.config.commands)
        .with_outbound(opened.config.outbound.clone())?;
    loop {
        let progress = opened.runtime.run_due(&actions).await?;
        if progress.effects + progress.events > 0 || (args.format == super::Format::Json && !args.watch) {
            match args.format {
                super::Format::Json => {
                    let line = serde_json::json!({ "effects": progress.effects, "events": progress.events });
                    super::print_stdout(&format!("{line}\n"))?;
                }
                super::Format::Text => {
                    eprintln!("carried out {} action(s), recorded {} event(s)", progress.effects, progress.events)
                }
            }
        }
        if !args.watch {
            return Ok(super::exit::OK);
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(super::exit::OK),
        }
    }
}
