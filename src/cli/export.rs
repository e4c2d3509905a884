//! `phasegate export cacao RUNBOOK [-o FILE.json]`: a runbook as an OASIS CACAO 2.0 playbook.
//! Only a runbook that validates is exported; what CACAO cannot say travels in the `phasegate`
//! extension (docs/cacao.md). The same runbook always gives the same bytes.

use std::path::PathBuf;

use super::{exit, print_diagnostics};
use crate::interchange::cacao;
use crate::render::Catalog;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a runbook as an OASIS CACAO 2.0 playbook (JSON); see docs/cacao.md.
    Cacao(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runbook, a YAML file.
    #[arg(value_name = "RUNBOOK")]
    runbook: PathBuf,
    /// Write the playbook here instead of to standard output.
    #[arg(short, long, value_name = "FILE.json")]
    output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(command: Command, catalog: &Catalog) -> anyhow::Result<u8> {
    let Command::Cacao(args) = command;
    let bytes = match std::fs::read(&args.runbook) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("{}: error: cannot read: {error}", args.runbook.display());
            return Ok(exit::USAGE);
        }
    };
    let exported = crate::runbook::decode(&bytes).and_then(|text| cacao::export(text, catalog));
    let json = match exported {
        Ok(exported) => {
            // Warnings are located in the runbook, which is what the author edits.
            super::import::print_problems(&args.runbook, &exported.warnings);
            exported.json
        }
        Err(diagnostics) => {
            print_diagnostics(&args.runbook, &diagnostics);
            eprintln!("{}: not exported: the runbook does not validate", args.runbook.display());
            return Ok(exit::INVALID);
        }
    };
    match &args.output {
        None => super::print_stdout(&json)?,
        Some(output) if output.exists() && !args.force => {
            eprintln!("{}: error: the file exists; give `--force` to replace it", output.display());
            return Ok(exit::USAGE);
        }
        Some(output) => {
            if let Err(error) = super::import::write_whole(output, &json) {
                eprintln!("{}: error: cannot write: {error}", output.display());
                return Ok(exit::USAGE);
            }
            eprintln!("{}: exported as a CACAO 2.0 playbook into {}", args.runbook.display(), output.display());
        }
    }
    Ok(exit::OK)
}
