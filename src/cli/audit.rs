//! `phasegate keygen`, `phasegate audit verify` and `phasegate audit export`: the key that signs
//! checkpoints, and checking an incident's log against its hashes and signatures, in the database
//! or offline in an export.

use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::Format;
use super::incident::{Common, open_read_only};
use crate::audit::keys::PublicKey;
use crate::audit::verify::{Outcome, Verifier};
use crate::audit::witness::{self, Witness, Witnessed};
use crate::audit::{export, merkle};
use crate::runtime::audit;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Keygen {
    /// Where to write the private key (PKCS#8 PEM); the public key goes to the same path plus `.pub`.
    path: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check incidents' hash chains and signed checkpoints; exit 0 only if everything verifies.
    Verify(Verify),
    /// Write an incident's events, hashes and checkpoints as JSON Lines.
    Export(Export),
    /// Print the proof that a campaign's recipient was told, and what: their outcome's place in
    /// the Merkle tree whose root the incident's log records (check it offline with the export,
    /// the public key and `scripts/verify-export.py --proof`).
    Prove(Prove),
}

#[derive(Debug, clap::Args)]
pub struct Prove {
    incident: String,
    /// The campaign step, as `PHASE/STEP`.
    step: String,
    /// The recipient's id, as the list gives it.
    recipient: String,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Verify {
    /// The incident to check (in the database).
    #[arg(required_unless_present_any = ["all", "file"], conflicts_with_all = ["all", "file"])]
    incident: Option<String>,
    /// Check every incident in the database.
    #[arg(long)]
    all: bool,
    /// Check an export instead of the database; needs nothing but the file and `--public-key`.
    #[arg(long, value_name = "EXPORT")]
    file: Option<PathBuf>,
    /// The public key (PEM) checkpoints must be signed with (default: the configuration's).
    #[arg(long, value_name = "KEY")]
    public_key: Option<PathBuf>,
    /// A witness file (`audit.witness.file`, or what a webhook witness received, one checkpoint
    /// line each): a log shorter than what it saw, or a checkpoint unlike the one it saw, fails.
    #[arg(long, value_name = "FILE")]
    witness: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Export {
    incident: String,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Writes a new key pair, refusing to overwrite either file.
pub fn keygen(args: Keygen) -> anyhow::Result<u8> {
    let public_path = PathBuf::from(format!("{}.pub", args.path.display()));
    for path in [&args.path, &public_path] {
        if path.exists() {
            bail!("`{}` exists; phasegate does not overwrite keys", path.display());
        }
    }
    if let Some(parent) = args.path.parent().filter(|parent| !parent.as_os_str().is_empty() && !parent.exists()) {
        // `keygen keys/phasegate.pem`, as the example configuration names it, makes `keys/`.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    let signer = audit::new_signer();
    write_new(&args.path, signer.to_pem()?.as_bytes(), 0o600)?;
    write_new(&public_path, signer.public().to_pem()?.as_bytes(), 0o644)?;
    super::print_stdout(&format!(
        "private key: {}\npublic key:  {}\nfingerprint: {}\n\nIn the configuration:\n  audit:\n    signing_key: {}\n",
        args.path.display(),
        public_path.display(),
        signer.public().fingerprint(),
        args.path.display(),
    ))?;
    Ok(super::exit::OK)
}

/// Creates `path` with `mode` (on Unix), failing if it exists.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write `{}`", path.display()))
}

pub async fn run(command: Command, templates: Option<&Path>) -> anyhow::Result<u8> {
    match command {
        Command::Verify(args) => verify(args, templates).await,
        Command::Export(args) => export(args, templates).await,
        Command::Prove(args) => prove(args, templates).await,
    }
}

async fn verify(args: Verify, templates: Option<&Path>) -> anyhow::Result<u8> {
    let given = args.public_key.as_deref().map(crate::config::read_public_key).transpose()?;
    let witness = match &args.witness {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
            let witness =
                witness::read(BufReader::new(file)).with_context(|| format!("cannot read `{}`", path.display()))?;
            // A witness with lines that do not read cannot be trusted to be whole: each is named.
            for bad in &witness.bad_lines {
                eprintln!("error: witness `{}` line {}: {}", path.display(), bad.line, bad.what);
            }
            Some(witness)
        }
        None => None,
    };
    let outcomes = match &args.file {
        Some(path) => {
            // Offline: no configuration, no database.
            let file = std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
            vec![
                export::verify_witnessed(BufReader::new(file), given.as_ref(), witness.as_ref())
                    .with_context(|| path.display().to_string())?,
            ]
        }
        None => {
            // Read-only: verification changes nothing, not even to chain old events.
            let (config, store) = open_read_only(&args.common, templates).await?;
            let key = match given {
                Some(key) => Some(key),
                None => config.audit.public_key()?,
            };
            let outcomes = verify_all(&store, args.incident.as_deref(), key.as_ref(), witness.as_ref()).await;
            store.close().await;
            outcomes?
        }
    };
    match args.format {
        Format::Json => super::print_stdout(&(serde_json::to_string_pretty(&outcomes)? + "\n"))?,
        Format::Text => super::print_stdout(&outcomes.iter().map(describe).collect::<String>())?,
    }
    let witness_whole = witness.is_none_or(|witness| witness.bad_lines.is_empty());
    Ok(if outcomes.iter().all(Outcome::verified) && witness_whole { super::exit::OK } else { super::exit::INVALID })
}

/// Verifies the incident named, or every incident; with a witness, each against what it holds
/// of it, and an incident the witness saw that the database no longer has as a log cut to
/// nothing.
async fn verify_all(
    store: &crate::store::AnyStore,
    incident: Option<&str>,
    key: Option<&PublicKey>,
    witness: Option<&Witness>,
) -> anyhow::Result<Vec<Outcome>> {
    let witnessed = |id: &str| witness.map(|witness| witness.of(id));
    let incidents = match incident {
        Some(id) => match store.incident(id).await? {
            Some(summary) => vec![summary],
            None if witness.is_some_and(|witness| !witness.of(id).is_empty()) => {
                return Ok(vec![gone(id, key, witnessed(id).unwrap_or_default())]);
            }
            None => vec![super::stored_incident(store, id).await?],
        },
        None => store.incidents().await?,
    };
    let mut outcomes = Vec::with_capacity(incidents.len());
    for incident in &incidents {
        outcomes.push(audit::verify_stored_witnessed(store, incident, key, witnessed(&incident.id)).await?);
    }
    if let (None, Some(witness)) = (incident, witness) {
        for id in witness.incidents() {
            if !incidents.iter().any(|stored| stored.id == id) {
                outcomes.push(gone(id, key, witness.of(id)));
            }
        }
    }
    Ok(outcomes)
}

/// The verdict on an incident a witness saw and the database does not have at all.
fn gone(incident: &str, key: Option<&PublicKey>, witnessed: Vec<Witnessed>) -> Outcome {
    let mut verifier = Verifier::new(incident, key);
    verifier.witnessed(witnessed);
    verifier.finish(None)
}

/// What a person reads: one line when all is well, each problem on its own line when not.
pub fn describe(outcome: &Outcome) -> String {
    let key = outcome.fingerprint.as_deref().map(|key| format!(", checked with key {key}")).unwrap_or_default();
    let plural = |count: u64, word: &str| format!("{count} {word}{}", if count == 1 { "" } else { "s" });
    let counts = format!("{}, {}", plural(outcome.events, "event"), plural(outcome.checkpoints, "checkpoint"));
    if !outcome.verified() {
        let mut text = format!("{}: NOT VERIFIED ({counts}{key})\n", outcome.incident);
        for problem in &outcome.problems {
            text.push_str(&format!("  {problem}\n"));
        }
        if outcome.more_problems > 0 {
            text.push_str(&format!("  and {} more problems\n", outcome.more_problems));
        }
        return text;
    }
    if outcome.unsigned_log {
        // Said plainly: the chain holds, and that is all that holds.
        return format!(
            "{}: UNSIGNED, chain intact ({counts}): no key signed this log, so nothing vouches for its end; \
             whoever can write the database could cut it or rewrite it whole unseen (configure \
             `audit.signing_key`, see docs/audit.md)\n",
            outcome.incident
        );
    }
    let witnessed = match &outcome.witness {
        None => String::new(),
        Some(witness) if witness.lines == 0 => "; the witness has no checkpoint of it".to_string(),
        Some(witness) => {
            format!("; the witness saw checkpoints through {} (events 1 to {})", witness.checkpoint, witness.events)
        }
    };
    let tail = match outcome.unsigned() {
        0 => String::new(),
        1 => "; the last event is chained but not yet signed (the incident is open)".to_string(),
        n => format!("; the last {n} events are chained but not yet signed (the incident is open)"),
    };
    // Who signed: every checkpoint verified with the key trusted here, and names it.
    let signed = match (outcome.signers.as_slice(), outcome.fingerprint.as_deref()) {
        ([signer], _) => format!("signed through event {} by key {signer}", outcome.signed_through),
        (_, Some(key)) => format!("signed through event {}, checked with key {key}", outcome.signed_through),
        (_, None) => format!("signed through event {}", outcome.signed_through),
    };
    format!("{}: verified ({counts}, {signed}){witnessed}{tail}\n", outcome.incident)
}

async fn export(args: Export, templates: Option<&Path>) -> anyhow::Result<u8> {
    let (_, store) = open_read_only(&args.common, templates).await?;
    let store = &store;
    let incident = super::stored_incident(store, &args.incident).await?;
    match &args.output {
        Some(path) => {
            // Written beside the target and renamed, so a failed export leaves no half a file.
            let partial = path.with_extension("partial");
            let file =
                std::fs::File::create(&partial).with_context(|| format!("cannot create `{}`", partial.display()))?;
            audit::export_stored(store, &incident, std::io::BufWriter::new(file)).await?;
            std::fs::rename(&partial, path).with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        None => {
            let mut out = Vec::new();
            audit::export_stored(store, &incident, &mut out).await?;
            super::print_stdout(&String::from_utf8(out)?)?;
        }
    }
    Ok(super::exit::OK)
}

async fn prove(args: Prove, templates: Option<&Path>) -> anyhow::Result<u8> {
    let (phase, step) = args.step.split_once('/').with_context(|| format!("`{}` is not `PHASE/STEP`", args.step))?;
    let (_, store) = open_read_only(&args.common, templates).await?;
    let incident = super::stored_incident(&store, &args.incident).await?.id;
    let campaign = format!("{incident}/{phase}/{step}");
    let events = store.events(&incident).await?;
    let root = events.iter().rev().find_map(|event| match &event.kind {
        crate::engine::EventKind::CampaignFinished { campaign: key, totals, .. } if *key == campaign => {
            Some(totals.merkle_root.clone())
        }
        _ => None,
    });
    let Some(root) = root else {
        bail!("campaign `{campaign}` has not finished, so its log records no Merkle root to prove against yet");
    };
    let mut hashes = Vec::new();
    let mut found = None;
    for (number, blob) in store.campaign_leaves(&campaign).await? {
        let leaves = merkle::decode_leaves(&blob)
            .with_context(|| format!("campaign `{campaign}`, batch {number}: its stored leaves do not read"))?;
        for leaf in leaves {
            if found.is_none() && leaf.id == args.recipient {
                found = Some((hashes.len(), leaf.clone()));
            }
            hashes.push(leaf.hash());
        }
    }
    let Some((index, leaf)) = found else {
        bail!(
            "recipient `{}` is not among the {} recipients campaign `{campaign}` tried (rejected, duplicate and \
             suppressed lines are not sent; see its rejects file)",
            args.recipient,
            hashes.len()
        );
    };
    let proof = merkle::Proof::new(&incident, &campaign, leaf, index, &hashes)
        .context("the stored leaves do not give a proof for this recipient")?;
    if hex::encode(proof.root) != root {
        bail!(
            "the stored leaves of campaign `{campaign}` give the root {}, but the log records {root}: they were changed",
            hex::encode(proof.root)
        );
    }
    let json = format!("{}\n", proof.to_json());
    match &args.output {
        Some(path) => std::fs::write(path, json).with_context(|| format!("cannot write `{}`", path.display()))?,
        None => super::print_stdout(&json)?,
    }
    Ok(super::exit::OK)
}

/// What `start` and `serve` warn of in the audit configuration: signing is the normal case, and
/// an unsigned log verifies only as a chain (docs/audit.md).
pub fn audit_warnings(config: &crate::config::Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.audit.signing_key.is_none() {
        warnings.push(
            "no `audit.signing_key` is configured, so nothing signs incidents' logs and nothing vouches for their \
             end: `audit verify` can say only that each chain is intact (UNSIGNED); `phasegate keygen \
             keys/phasegate.pem` makes a key"
                .to_string(),
        );
        if config.audit.witness.is_configured() {
            warnings
                .push("`audit.witness` is configured, but without a signing key there is nothing to witness".into());
        }
    }
    warnings
}

/// The public key for a report or a verification: the one given, else the configuration's.
pub fn public_key(given: Option<&Path>, config: &crate::config::Config) -> anyhow::Result<Option<PublicKey>> {
    match given {
        Some(path) => Ok(Some(crate::config::read_public_key(path)?)),
        None => Ok(config.audit.public_key()?),
    }
}
