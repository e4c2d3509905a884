//! What the incident commands share: opening the configured store, finding runbooks, parsing
//! `KEY=VALUE` arguments, and printing what a command decided.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{Format, print_stdout};
use crate::config::{Config, Overrides};
use crate::engine::{Decision, Event};
use crate::render::Catalog;
use crate::runbook::registry;
use crate::runtime::Runtime;
use crate::runtime::witness::{self, Sink, Witness};
use crate::store::AnyStore;

/// Options every incident command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The configuration file (default: `./phasegate.yaml` if it exists).
    #[arg(long, global = true, env = "PHASEGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The database: a SQLite file, or a PostgreSQL URL `postgres://USER@HOST:PORT/DATABASE`
    /// (default: `./phasegate.db`, or the configuration's `database`).
    #[arg(long, global = true, env = "PHASEGATE_DB", value_name = "PATH|URL")]
    pub db: Option<PathBuf>,
}

/// The configuration, the runtime over the configured store, and the templates.
pub struct Opened {
    pub config: Config,
    pub runtime: Runtime<AnyStore, Catalog>,
}

pub async fn open(common: &Common, templates: Option<&Path>) -> anyhow::Result<Opened> {
    let overrides = Overrides { database: common.db.clone(), templates: templates.map(Path::to_path_buf) };
    let config = Config::load(common.config.as_deref(), &overrides)?;
    let catalog = super::catalog(config.templates.as_deref()).context(
        "the templates come from `--templates`, PHASEGATE_TEMPLATES or the configuration's `templates` \
         (relative to the configuration file); create that directory or name another",
    )?;
    let store = AnyStore::open(&config.database).await.map_err(|error| unreachable(&config, error, ""))?;
    let chained = store.chained();
    if chained.events > 0 {
        // A step that changes stored events (it adds their hashes), so it is said where it is seen.
        let message = format!(
            "chained {} events of {} incident(s) stored before the hash chain existed (migration 0002): \
             from now on they are tamper-evident, but nothing vouches for them as first written",
            chained.events, chained.incidents
        );
        tracing::warn!(events = chained.events, incidents = chained.incidents, "{message}");
        eprintln!("note: {message}");
    }
    let mut runtime = Runtime::new(store, catalog, config.directory.clone()).with_campaigns(config.campaigns.clone());
    if let Some(signer) = config.audit.signer()? {
        let every = chrono::Duration::from_std(config.audit.checkpoint_every)
            .context("`audit.checkpoint_every` is too long")?;
        runtime = runtime.with_signer(std::sync::Arc::new(signer), every);
        if let Some(witness) = witness(&config)? {
            runtime = runtime.with_witness(std::sync::Arc::new(witness));
        }
    }
    Ok(Opened { config, runtime })
}

/// The witness the configuration names, started (`runtime::witness`), if it names one.
fn witness(config: &Config) -> anyhow::Result<Option<Witness>> {
    let configured = &config.audit.witness;
    let mut sinks = Vec::new();
    if let Some(path) = &configured.file {
        sinks.push(Sink::File(path.clone()));
    }
    if let Some(webhook) = &configured.webhook {
        let secrets = std::sync::Arc::new(config.secrets.clone());
        sinks.push(Sink::Webhook { webhook: webhook.clone(), outbound: config.outbound.clone(), secrets });
    }
    if sinks.is_empty() {
        return Ok(None);
    }
    Ok(Some(Witness::start(sinks, witness::GRACE).context("cannot start the witness")?))
}

/// The configuration and the store opened read-only, for the commands that check what the
/// database holds (`audit verify`, `audit export`, `report`): they must not change the evidence
/// they check, so they neither bring the schema up to date nor chain old events.
pub async fn open_read_only(common: &Common, templates: Option<&Path>) -> anyhow::Result<(Config, AnyStore)> {
    let overrides = Overrides { database: common.db.clone(), templates: templates.map(Path::to_path_buf) };
    let config = Config::load(common.config.as_deref(), &overrides)?;
    let store =
        AnyStore::open_read_only(&config.database).await.map_err(|error| unreachable(&config, error, " to read it"))?;
    Ok((config, store))
}

/// Why the configured database could not be opened, naming where it is (never a password) and,
/// for a server that does not answer, what to check.
fn unreachable(config: &Config, error: crate::store::Error, purpose: &str) -> anyhow::Error {
    let location = config.database.as_path();
    let described = AnyStore::describe(location);
    let is_server = location.to_str().is_some_and(crate::store::postgres::is_url);
    let connection_failed = matches!(&error, crate::store::Error::Database(database)
        if matches!(**database, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)));
    let error = anyhow::Error::new(error);
    match (is_server, connection_failed) {
        (true, true) => error.context(format!(
            "cannot reach {described}{purpose}: check that PostgreSQL is running and listening there \
             (`pg_isready -h HOST -p PORT`), that its pg_hba.conf lets this machine and user in, and the URL in \
             `--db`, PHASEGATE_DB or the configuration's `database`"
        )),
        _ => error.context(format!("cannot open the database {described}{purpose}")),
    }
}

/// A runbook named by its file, or by its id among the configured runbooks (the directory loaded
/// into the registry, parsed by `runtime` so that starting from it parses nothing again). An id
/// whose file does not validate gives that file, for its problems to be printed; an id several
/// files share is `None`, each file's problem printed.
pub fn runbook_text(name: &str, opened: &Opened) -> anyhow::Result<Option<(PathBuf, String)>> {
    let path = Path::new(name);
    if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{name}`"))?;
        return Ok(Some((path.to_path_buf(), text)));
    }
    let dir = &opened.config.runbooks;
    let registry = crate::runtime::runbooks::load(&opened.runtime, dir).with_context(|| {
        format!("`{name}` is not a file, and the runbooks directory `{}` cannot be read", dir.display())
    })?;
    match registry.find(name) {
        Ok(entry) => Ok(Some((entry.path().to_path_buf(), entry.text().to_string()))),
        Err(registry::Error::Invalid { path, .. }) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
            Ok(Some((path, text)))
        }
        Err(registry::Error::Duplicate { paths, .. }) => {
            for file in registry.rejected().iter().filter(|file| paths.contains(&file.path)) {
                super::print_diagnostics(&file.path, &file.diagnostics);
            }
            Ok(None)
        }
        Err(error) => bail!("`{name}` is not a file, and {error}"),
    }
}

/// `KEY=VALUE` pairs; each value is taken as JSON when it parses (`3`, `true`), else as text.
pub fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let mut map = BTreeMap::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            bail!("{what} `{item}` is not KEY=VALUE");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        map.insert(key.trim().to_string(), value);
    }
    Ok(map)
}

#[derive(Serialize)]
struct DecisionJson<'a> {
    incident: &'a str,
    events: &'a [Event],
    effects: usize,
}

/// Who will carry out the actions a command queued, as far as the command can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriers {
    /// This many `serve` or `run --watch` processes are present on the database (PostgreSQL).
    Present(usize),
    /// None is (PostgreSQL): nothing carries the actions out until someone runs `phasegate run`.
    Absent,
    /// It cannot be told (SQLite keeps a process's presence in that process's memory).
    Unknown,
}

impl Carriers {
    /// Asks the store which processes are present; a store that cannot say, or a failed read,
    /// is [`Carriers::Unknown`] (a hint is no reason to fail a command that was recorded).
    pub async fn of(store: &AnyStore) -> Carriers {
        match store.runtimes_present().await {
            Ok(Some(0)) => Carriers::Absent,
            Ok(Some(count)) => Carriers::Present(count),
            Ok(None) => Carriers::Unknown,
            Err(error) => {
                tracing::debug!(%error, "cannot tell which processes are present");
                Carriers::Unknown
            }
        }
    }

    /// The line saying that `count` actions were queued and what carries them out.
    fn queued(self, incident: &str, count: usize) -> String {
        let who = match self {
            Carriers::Present(1) => {
                "the `phasegate serve` or `run --watch` running on this database carries them out".to_string()
            }
            Carriers::Present(processes) => format!(
                "the {processes} `phasegate serve` or `run --watch` processes running on this database carry them out"
            ),
            Carriers::Absent => {
                "no `phasegate serve` or `run --watch` is running on this database: `phasegate run` carries them out"
                    .to_string()
            }
            Carriers::Unknown => "a `phasegate serve` or `run --watch` running on this database carries them out; \
                                  if none is, `phasegate run` does"
                .to_string(),
        };
        format!("{incident}: {count} action(s) queued; {who}\n")
    }
}

/// Prints what a command recorded: a line per event, or JSON; in text, with actions queued, what
/// carries them out (`carriers`).
pub fn print_decision(incident: &str, decision: &Decision, format: Format, carriers: Carriers) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&DecisionJson {
                incident,
                events: &decision.events,
                effects: decision.effects.len(),
            })?;
            print_stdout(&(json + "\n"))
        }
        Format::Text => {
            let mut text = String::new();
            for event in &decision.events {
                text.push_str(&format!("{incident}: {}\n", event.summary()));
            }
            if !decision.effects.is_empty() {
                text.push_str(&carriers.queued(incident, decision.effects.len()));
            }
            print_stdout(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: every step command said "`phasegate run` carries them out", even with a
    /// `phasegate serve` running on the database, which carries them out by itself.
    #[test]
    fn the_queued_line_says_what_carries_the_actions_out() {
        let table = [
            (Carriers::Present(1), "the `phasegate serve` or `run --watch` running on this database carries them out"),
            (Carriers::Present(3), "the 3 `phasegate serve` or `run --watch` processes running on this database carry"),
            (Carriers::Absent, "no `phasegate serve` or `run --watch` is running on this database: `phasegate run`"),
            (Carriers::Unknown, "running on this database carries them out; if none is, `phasegate run` does"),
        ];
        for (carriers, expected) in table {
            let line = carriers.queued("inc-1", 2);
            assert!(line.starts_with("inc-1: 2 action(s) queued; ") && line.contains(expected), "{carriers:?}: {line}");
        }
    }
}
