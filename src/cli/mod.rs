//! The command line: one file per subcommand; this file parses arguments and dispatches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::render::Catalog;
use crate::runbook::{self, Diagnostic};

mod act;
mod audit;
mod campaign;
mod db;
mod drill;
mod export;
mod import;
mod incident;
mod list;
mod plan;
mod report;
mod run;
mod schema;
mod serve;
mod start;
mod status;
mod token;
mod validate;

#[derive(Debug, Parser)]
#[command(
    name = "phasegate",
    version,
    about = "Incident-response runbooks: phases, gates, a tamper-evident log, status updates"
)]
struct Cli {
    /// Directory of templates that override the built-in ones (default: `./templates` if it exists).
    #[arg(long, global = true, env = "PHASEGATE_TEMPLATES", value_name = "DIR")]
    templates: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check runbooks and report every problem with its file, line and column.
    Validate(validate::Args),
    /// Show a runbook's phases in dependency order, with their gates and steps.
    Plan(plan::Args),
    /// Print the JSON Schema of the runbook format, for editors.
    Schema(schema::Args),
    /// Turn a playbook of another standard into a runbook (OASIS CACAO 2.0).
    #[command(subcommand)]
    Import(import::Command),
    /// Write a runbook as a playbook of another standard (OASIS CACAO 2.0).
    #[command(subcommand)]
    Export(export::Command),
    /// Open an incident from a runbook and print its id.
    Start(start::Args),
    /// List open incidents (`--all` for closed ones too).
    List(list::Args),
    /// Show where an incident stands, what blocks it and who can unblock it.
    Status(status::Args),
    /// Approve an approval gate of a phase.
    Approve(act::Approve),
    /// Mark a manual step done, with evidence and outputs (or a step that failed for good, by hand).
    Done(act::Done),
    /// Start another attempt of a step that failed for good, with the same idempotency key (or
    /// with `--gate`, probe a check gate again with a fresh deadline).
    Retry(act::Retry),
    /// Pass a check gate by hand, with evidence: an override, for the runbook's `recover` roles.
    Pass(act::Pass),
    /// Skip a step that failed for good, with a reason: it counts as skipped, not done.
    Skip(act::Skip),
    /// Give a signal gate its signal.
    Signal(act::Signal),
    /// Add a note to an incident's timeline.
    Note(act::Note),
    /// Send a status update to an audience now.
    Update(act::Update),
    /// Close an incident once every phase is done or skipped, or abandon it (`--abandon --reason`).
    Close(act::Close),
    /// Carry out due work for all open incidents (`--watch` to keep going).
    Run(run::Args),
    /// Follow and steer a campaign step: test, launch, status, pause, resume, cancel, preview, codes.
    #[command(subcommand)]
    Campaign(campaign::Command),
    /// Verify or export incidents' tamper-evident logs.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Write a new Ed25519 key pair for signing checkpoints.
    Keygen(audit::Keygen),
    /// Move a deployment's database: copy a SQLite file into an empty PostgreSQL database.
    #[command(subcommand)]
    Db(db::Command),
    /// Rehearse a runbook start to close on a simulated clock, with stand-ins for the outside systems.
    Drill(drill::Args),
    /// Write the post-incident report (Markdown or a self-contained HTML page).
    Report(report::Args),
    /// Serve the dashboard, the REST API and webhooks, with the runtime loop in the same process.
    Serve(serve::Args),
    /// Make an API token for a person; prints it once, and the configuration that accepts it.
    Token(token::Args),
}

/// Output for people, or for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit statuses shared by the subcommands.
pub mod exit {
    /// Everything checked out.
    pub const OK: u8 = 0;
    /// The input was read but is invalid (a runbook with problems).
    pub const INVALID: u8 = 1;
    /// Usage error, or something could not be read.
    pub const USAGE: u8 = 2;
}

/// Runs the command line and returns the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let templates = cli.templates.as_deref();
    let result = match cli.command {
        Command::Validate(args) => catalog(templates).and_then(|catalog| validate::run(args, &catalog)),
        Command::Plan(args) => catalog(templates).and_then(|catalog| plan::run(args, &catalog)),
        Command::Schema(args) => schema::run(args),
        Command::Import(command) => catalog(templates).and_then(|catalog| import::run(command, &catalog)),
        Command::Export(command) => catalog(templates).and_then(|catalog| export::run(command, &catalog)),
        Command::Keygen(args) => audit::keygen(args),
        Command::Token(args) => token::run(args),
        incident => asynchronous(incident, templates),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("error: {error:#}");
            // A refused command, like an unknown incident, is the user's input being wrong (as an
            // invalid runbook is), not something that could not be read.
            let unknown = |e: &crate::store::Error| matches!(e, crate::store::Error::NotFound { .. });
            let not_found = error.downcast_ref::<crate::store::Error>().is_some_and(unknown)
                || error
                    .downcast_ref::<crate::runtime::Error>()
                    .is_some_and(|e| matches!(e, crate::runtime::Error::Store(e) if unknown(e)));
            if not_found {
                eprintln!("  help: `phasegate list --all` lists the incidents in this database");
            }
            let refused = not_found
                || error
                    .downcast_ref::<crate::runtime::Error>()
                    .is_some_and(|e| matches!(e, crate::runtime::Error::Refused(_)));
            ExitCode::from(if refused { exit::INVALID } else { exit::USAGE })
        }
    }
}

/// The stored incident `id`; one never started is the store's `NotFound`, which `main` answers
/// as the refusal it is (exit 1, with the hint), as every incident command does.
async fn stored_incident<S: crate::store::Store>(store: &S, id: &str) -> anyhow::Result<crate::store::IncidentSummary> {
    Ok(store.incident(id).await?.ok_or_else(|| crate::store::Error::NotFound { incident: id.to_string() })?)
}

/// The incident commands talk to the store, which is asynchronous.
fn asynchronous(command: Command, templates: Option<&Path>) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match command {
            Command::Start(args) => start::run(args, templates).await,
            Command::List(args) => list::run(args, templates).await,
            Command::Status(args) => status::run(args, templates).await,
            Command::Approve(args) => act::approve(args, templates).await,
            Command::Done(args) => act::done(args, templates).await,
            Command::Retry(args) => act::retry(args, templates).await,
            Command::Pass(args) => act::pass(args, templates).await,
            Command::Campaign(command) => campaign::run(command, templates).await,
            Command::Skip(args) => act::skip(args, templates).await,
            Command::Signal(args) => act::signal(args, templates).await,
            Command::Note(args) => act::note(args, templates).await,
            Command::Update(args) => act::update(args, templates).await,
            Command::Close(args) => act::close(args, templates).await,
            Command::Run(args) => run::run(args, templates).await,
            Command::Audit(command) => audit::run(command, templates).await,
            Command::Db(command) => db::run(command).await,
            Command::Report(args) => report::run(args, templates).await,
            Command::Drill(args) => drill::run(args, templates).await,
            Command::Serve(args) => serve::run(args, templates).await,
            Command::Validate(_)
            | Command::Plan(_)
            | Command::Schema(_)
            | Command::Import(_)
            | Command::Export(_)
            | Command::Keygen(_)
            | Command::Token(_) => {
                unreachable!("dispatched in main")
            }
        }
    })
}

pub(crate) fn catalog(dir: Option<&Path>) -> anyhow::Result<Catalog> {
    match dir {
        Some(dir) => Ok(Catalog::with_dir(dir)?),
        None if Path::new("templates").is_dir() => Ok(Catalog::with_dir(Path::new("templates"))?),
        None => Ok(Catalog::built_in()),
    }
}

/// Writes to standard output; a reader that went away (`phasegate plan x | head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// Reads and validates one runbook file. `Err` is for a file that cannot be read at all.
pub(crate) fn load_runbook(
    path: &Path,
    catalog: &Catalog,
) -> std::io::Result<Result<runbook::Runbook, Vec<Diagnostic>>> {
    let metadata = std::fs::metadata(path)?;
    if metadata.len() > runbook::MAX_FILE_SIZE as u64 {
        // Refuse before reading, so a huge file costs nothing.
        return Ok(Err(vec![runbook::too_large(metadata.len())]));
    }
    let bytes = std::fs::read(path)?;
    Ok(runbook::load(&bytes, catalog))
}

/// `PATH:LINE:COL: error[CODE]: message`, with the hint on the next line.
pub(crate) fn print_diagnostics(path: &Path, diagnostics: &[Diagnostic]) {
    for diagnostic in diagnostics {
        print_located(path, &diagnostic.mark, &diagnostic.code, &diagnostic.message, diagnostic.help.as_deref());
    }
}

/// One problem as `PATH:LINE:COL: error[CODE]: message`, with the hint on the next line: the
/// format of runbook and drill diagnostics alike.
pub(crate) fn print_located(
    path: &Path,
    mark: &crate::runbook::Mark,
    code: &dyn std::fmt::Display,
    message: &str,
    help: Option<&str>,
) {
    eprintln!("{}:{}:{}: error[{code}]: {message}", path.display(), mark.line, mark.column);
    if let Some(help) = help {
        eprintln!("  help: {help}");
    }
}
