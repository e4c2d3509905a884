//! `phasegate db copy`: an embedded deployment's SQLite file moved into an empty PostgreSQL
//! database (`store::copy` copies), then both sides checked: every incident's log verifies in each
//! (hash chain and signed checkpoints, as `audit verify` checks it), and its events, hashes,
//! checkpoints and summary are the same in both.
//!
//! Who may run it: whoever can read the file and write the database (the database's own
//! credentials decide); it acts for no person of the configuration, and leaves the file as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::Format;
use crate::audit::keys::PublicKey;
use crate::audit::verify::Outcome;
use crate::config::{Config, Overrides};
use crate::runtime::audit;
use crate::store::copy::{self, Copied, CopyError};
use crate::store::postgres::{self, PostgresStore};
use crate::store::{SqliteStore, Store};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Copy a SQLite database into an empty PostgreSQL database, then check that every incident's
    /// log verifies on both sides with the same hashes. Exit 0 only then.
    Copy(Copy),
}

#[derive(Debug, clap::Args)]
pub struct Copy {
    /// The SQLite file to copy (only read).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The PostgreSQL database to copy into, `postgres://USER@HOST:PORT/DATABASE`; it must hold
    /// nothing of phasegate's yet.
    #[arg(long, value_name = "URL")]
    to: String,
    /// The public key (PEM) checkpoints must be signed with (default: the configuration's).
    #[arg(long, value_name = "KEY")]
    public_key: Option<PathBuf>,
    /// The configuration file, for its `audit.public_key` (default: `./phasegate.yaml` if it exists).
    #[arg(long, env = "PHASEGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub async fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Copy(args) => copy(args).await,
    }
}

/// What a copy did and found.
#[derive(Debug, serde::Serialize)]
struct Report {
    copied: Copied,
    /// Each incident's verification, in the source and in the target.
    verified: Vec<(Outcome, Outcome)>,
    /// What differs between the two sides; empty when they are the same.
    differences: Vec<String>,
}

async fn copy(args: Copy) -> anyhow::Result<u8> {
    if !postgres::is_url(&args.to) {
        bail!("`--to {}` is not a PostgreSQL URL: give `postgres://USER@HOST:PORT/DATABASE`", args.to);
    }
    if !args.from.is_file() {
        bail!("`--from {}`: no such file (give the SQLite database to copy)", args.from.display());
    }
    let key = match &args.public_key {
        Some(path) => Some(crate::config::read_public_key(path)?),
        None => Config::load(args.config.as_deref(), &Overrides::default())?.audit.public_key()?,
    };
    let target = postgres::describe(&args.to);
    // Asked before anything is written to it, so that a refusal changes nothing, not even its schema.
    let mut connection = postgres::connect_once(&args.to).await.with_context(|| {
        format!("cannot reach {target}: check that PostgreSQL is running and listening there and the URL")
    })?;
    if let Some(held) = copy::held(&mut connection).await? {
        bail!(
            "cannot copy into {target}: it already holds {held}; `db copy` copies only into an empty database (nothing was changed)"
        );
    }
    let from = SqliteStore::open_read_only(&args.from)
        .await
        .with_context(|| format!("cannot open `{}` to read it", args.from.display()))?;
    let copied = copy::copy(&from, &mut connection).await;
    drop(connection);
    let copied = match copied {
        Ok(copied) => copied,
        Err(error) => {
            let what = match &error {
                CopyError::NotEmpty(_) => "nothing was changed",
                _ => "the database was left as it was (the copy, its tables included, is one transaction)",
            };
            from.close().await;
            return Err(anyhow::Error::new(error)
                .context(format!("cannot copy `{}` into {target}; {what}", args.from.display())));
        }
    };
    let to = PostgresStore::open(&args.to).await.with_context(|| format!("cannot open {target}"))?;
    let checked = check(&from, &to, key.as_ref()).await;
    from.close().await;
    to.close().await;
    let report = Report { copied, verified: checked.0, differences: checked.1 };
    let good = report.differences.is_empty() && report.verified.iter().all(|(a, b)| a.verified() && b.verified());
    match args.format {
        Format::Json => super::print_stdout(&(serde_json::to_string_pretty(&report)? + "\n"))?,
        Format::Text => super::print_stdout(&describe(&report, &args.from, &target))?,
    }
    Ok(if good { super::exit::OK } else { super::exit::INVALID })
}

/// Every incident verified on both sides, and what differs between them.
async fn check(
    from: &SqliteStore,
    to: &PostgresStore,
    key: Option<&PublicKey>,
) -> (Vec<(Outcome, Outcome)>, Vec<String>) {
    let mut verified = Vec::new();
    let mut differences = Vec::new();
    let checked: anyhow::Result<()> = async {
        let incidents = from.incidents().await?;
        let copies = to.incidents().await?;
        if copies != incidents {
            differences.push(format!(
                "the incidents' summaries differ ({} in the file, {} in the database)",
                incidents.len(),
                copies.len()
            ));
        }
        for incident in &incidents {
            let id = incident.id.as_str();
            let mut after = 0;
            loop {
                let (mine, theirs) = (from.chain(id, after, 1000).await?, to.chain(id, after, 1000).await?);
                if mine != theirs {
                    differences
                        .push(format!("incident `{id}`: the events after {after} differ (their JSON or hashes)"));
                    break;
                }
                let Some(last) = mine.last() else { break };
                after = last.seq;
            }
            if from.checkpoints(id).await? != to.checkpoints(id).await? {
                differences.push(format!("incident `{id}`: the checkpoints differ"));
            }
            if from.campaigns(id).await? != to.campaigns(id).await? {
                differences.push(format!("incident `{id}`: its campaigns' progress differs"));
            }
            let copy = to.incident(id).await?.unwrap_or_else(|| incident.clone());
            verified
                .push((audit::verify_stored(from, incident, key).await?, audit::verify_stored(to, &copy, key).await?));
        }
        let pending = |effects: Vec<crate::store::PendingEffect>| -> Vec<String> {
            effects.into_iter().map(|pending| pending.effect.id).collect()
        };
        if pending(from.pending_effects(usize::MAX).await?) != pending(to.pending_effects(usize::MAX).await?) {
            differences.push("the effects waiting in the outbox differ".into());
        }
        if from.inbox_depth().await? != to.inbox_depth().await? {
            differences.push("the webhook deliveries waiting differ".into());
        }
        Ok(())
    }
    .await;
    if let Err(error) = checked {
        differences.push(format!("the check could not finish: {error:#}"));
    }
    (verified, differences)
}

fn describe(report: &Report, from: &Path, target: &str) -> String {
    let Copied { incidents, events, checkpoints, effects, deliveries, received, campaigns, batches } = report.copied;
    let mut text = format!(
        "copied `{}` into {target}: {incidents} incident(s), {events} event(s), {checkpoints} checkpoint(s), \
         {effects} outbox effect(s), {deliveries} delivery(ies) taken, {received} received webhook delivery(ies), \
         {campaigns} campaign(s) of {batches} batch(es)\n",
        from.display()
    );
    for (source, copy) in &report.verified {
        if !source.verified() {
            text.push_str(&format!("in the file: {}", super::audit::describe(source)));
        }
        if !copy.verified() {
            text.push_str(&format!("in the database: {}", super::audit::describe(copy)));
        }
    }
    for difference in &report.differences {
        text.push_str(&format!("DIFFERENT: {difference}\n"));
    }
    let verified = report.verified.iter().filter(|(a, b)| a.verified() && b.verified()).count();
    if report.differences.is_empty() && verified == report.verified.len() {
        text.push_str(&format!(
            "verified: all {verified} incident(s) verify in both, with the same events, hashes, checkpoints and summaries\n"
        ));
    } else {
        text.push_str(&format!(
            "NOT VERIFIED: {verified} of {} incident(s) verify in both; see above\n",
            report.verified.len()
        ));
        // The usual reason on a first try: signed checkpoints and no key to check them with.
        let keyless = report.verified.iter().any(|(source, _)| source.fingerprint.is_none() && source.checkpoints > 0);
        if keyless {
            text.push_str(&format!(
                "the copy is made (it is not undone); its checkpoints' signatures were not checked, since no public key \
                 was given: check both sides with the key that signed them, `phasegate audit verify --all --db URL \
                 --public-key KEY.pub` with the database's URL, then with `--db {}`\n",
                from.display()
            ));
        }
    }
    text
}
