//! `phasegate validate PATH...`: check runbooks, print every problem, exit 0, 1 or 2.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{Format, exit, print_diagnostics};
use crate::render::Catalog;
use crate::runbook::registry::Registry;
use crate::runbook::{self, Diagnostic};
use crate::runtime::runbooks;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook files, or directories searched recursively for `*.yaml` and `*.yml`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Serialize)]
struct FileReport {
    path: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    runbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    diagnostics: Vec<Diagnostic>,
}

pub fn run(args: Args, catalog: &Catalog) -> anyhow::Result<u8> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for path in &args.paths {
        let before = files.len();
        match collect(path, &mut files) {
            // A directory without runbooks is most likely a wrong path: say so rather than pass.
            Ok(()) if files.len() == before => {
                unreadable.push((path.clone(), "no runbook files (`*.yaml`, `*.yml`) in this directory".to_string()))
            }
            Ok(()) => {}
            Err(error) => unreadable.push((path.clone(), format!("cannot read: {error}"))),
        }
    }
    // The same file named twice (or a file and its directory) is checked once.
    let mut seen_files = std::collections::HashSet::new();
    files.retain(|path| seen_files.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())));
    // One registry over every file named: runbook ids are unique among them as among the
    // configured runbooks (triggers and incidents name them), and a shared id is reported on each
    // file that has it, as `serve` would refuse it.
    let sources = files.iter().map(|path| runbooks::read_file(path)).collect();
    let registry = Registry::build(Path::new("."), sources, |text| runbook::parse(text, catalog).map(Arc::new));
    let mut reports = Vec::new();
    for path in files {
        if let Some(entry) = registry.entries().iter().find(|entry| entry.path() == path) {
            reports.push(FileReport {
                path: path.display().to_string(),
                valid: true,
                runbook: Some(entry.runbook().id().to_owned()),
                error: None,
                diagnostics: Vec::new(),
            });
            continue;
        }
        let Some(rejected) = registry.rejected().iter().find(|file| file.path == path) else { continue };
        match &rejected.unreadable {
            Some(why) => unreadable.push((path, format!("cannot read: {why}"))),
            None => reports.push(FileReport {
                path: path.display().to_string(),
                valid: false,
                runbook: rejected.id.clone(),
                error: None,
                diagnostics: rejected.diagnostics.clone(),
            }),
        }
    }
    for (path, error) in &unreadable {
        reports.push(FileReport {
            path: path.display().to_string(),
            valid: false,
            runbook: None,
            error: Some(error.clone()),
            diagnostics: Vec::new(),
        });
    }
    let invalid = reports.iter().filter(|r| !r.valid).count();
    match args.format {
        Format::Json => {
            let all_valid = invalid == 0;
            let json = serde_json::to_string_pretty(&serde_json::json!({ "valid": all_valid, "files": reports }))?;
            super::print_stdout(&(json + "\n"))?;
        }
        Format::Text => {
            for report in &reports {
                let path = Path::new(&report.path);
                match (&report.error, report.valid) {
                    (Some(error), _) => eprintln!("{}: error: {error}", report.path),
                    (None, true) => super::print_stdout(&format!(
                        "{}: ok ({})\n",
                        report.path,
                        report.runbook.as_deref().unwrap_or("")
                    ))?,
                    (None, false) => print_diagnostics(path, &report.diagnostics),
                }
            }
            let problems: usize = reports.iter().map(|r| r.diagnostics.len()).sum();
            eprintln!("{} file(s) checked, {} invalid, {} problem(s)", reports.len(), invalid, problems);
        }
    }
    Ok(if !unreadable.is_empty() {
        exit::USAGE
    } else if invalid > 0 {
        exit::INVALID
    } else {
        exit::OK
    })
}

/// Adds `path`, or the runbook files under it, in a stable order.
fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(path)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, files)?;
        } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(entry);
        }
    }
    Ok(())
}
