//! `phasegate import cacao FILE.json [-o RUNBOOK.yaml]`: a CACAO 2.0 playbook to a runbook, or
//! every problem located (line, column and JSON pointer). Nothing is written unless the import
//! succeeds, and an existing file is replaced only with `--force`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Format, exit};
use crate::interchange::cacao::{self, Problem, Severity};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Turn an OASIS CACAO 2.0 playbook (JSON) into a runbook (YAML); see docs/cacao.md.
    Cacao(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The CACAO playbook, a JSON file.
    #[arg(value_name = "FILE.json")]
    file: PathBuf,
    /// Write the runbook here instead of to standard output.
    #[arg(short, long, value_name = "RUNBOOK.yaml")]
    output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Serialize)]
struct Report<'a> {
    file: String,
    imported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    runbook: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    yaml: Option<&'a str>,
    problems: &'a [Problem],
}

pub fn run(command: Command, catalog: &crate::render::Catalog) -> anyhow::Result<u8> {
    let Command::Cacao(args) = command;
    let size = match std::fs::metadata(&args.file) {
        Ok(metadata) => metadata.len(),
        Err(error) => {
            eprintln!("{}: error: cannot read: {error}", args.file.display());
            return Ok(exit::USAGE);
        }
    };
    let limit = cacao::json::Limits::default().max_bytes;
    let result = if size > limit as u64 {
        // Refused before reading, so a huge file costs nothing.
        Err(vec![Problem::error(
            cacao::Code::TooComplex,
            "",
            crate::runbook::Mark::START,
            format!("the file is {size} bytes, CACAO playbooks may be at most {limit} bytes"),
        )])
    } else {
        match std::fs::read(&args.file) {
            Ok(bytes) => cacao::import(&bytes, catalog),
            Err(error) => {
                eprintln!("{}: error: cannot read: {error}", args.file.display());
                return Ok(exit::USAGE);
            }
        }
    };
    if let (Ok(_), Some(output)) = (&result, &args.output)
        && output.exists()
        && !args.force
    {
        eprintln!("{}: error: the file exists; give `--force` to replace it", output.display());
        return Ok(exit::USAGE);
    }
    let (problems, imported) = match &result {
        Ok(imported) => (imported.warnings.as_slice(), Some(imported)),
        Err(problems) => (problems.as_slice(), None),
    };
    if let (Some(imported), Some(output)) = (imported, &args.output)
        && let Err(error) = write_whole(output, &imported.yaml)
    {
        eprintln!("{}: error: cannot write: {error}", output.display());
        return Ok(exit::USAGE);
    }
    match args.format {
        Format::Json => {
            let report = Report {
                file: args.file.display().to_string(),
                imported: imported.is_some(),
                runbook: imported.map(|i| i.runbook_id.as_str()),
                output: args.output.as_ref().filter(|_| imported.is_some()).map(|o| o.display().to_string()),
                yaml: imported.filter(|_| args.output.is_none()).map(|i| i.yaml.as_str()),
                problems,
            };
            super::print_stdout(&(serde_json::to_string_pretty(&report)? + "\n"))?;
        }
        Format::Text => {
            print_problems(&args.file, problems);
            match (imported, &args.output) {
                (Some(imported), None) => super::print_stdout(&imported.yaml)?,
                (Some(imported), Some(output)) => {
                    eprintln!(
                        "{}: imported as runbook `{}` into {}",
                        args.file.display(),
                        imported.runbook_id,
                        output.display()
                    )
                }
                (None, _) => {
                    let errors = problems.iter().filter(|p| p.severity == Severity::Error).count();
                    eprintln!("{}: not imported, {errors} problem(s)", args.file.display());
                }
            }
        }
    }
    Ok(if imported.is_some() { exit::OK } else { exit::INVALID })
}

/// `PATH:LINE:COL: error[CODE]: message`, the JSON pointer and the hint on the lines after.
pub(crate) fn print_problems(path: &Path, problems: &[Problem]) {
    for problem in problems {
        let severity = match problem.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!(
            "{}:{}:{}: {severity}[{}]: {}",
            path.display(),
            problem.mark.line,
            problem.mark.column,
            problem.code,
            problem.message
        );
        eprintln!("  at: {}", if problem.pointer.is_empty() { "(the whole file)" } else { &problem.pointer });
        if let Some(help) = &problem.help {
            eprintln!("  help: {help}");
        }
    }
}

/// Writes `text` to `path` whole or not at all: a file beside it, then renamed over it.
pub(crate) fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
