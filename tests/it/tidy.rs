//! House rules that the compiler cannot check: the core's import rule, module docs, leftovers.

use std::path::{Path, PathBuf};

use crate::support::root;

/// The functional core: no I/O, no clock, no randomness, no adapters or shell.
const CORE: &[&str] = &["src/runbook", "src/expr", "src/engine", "src/audit", "src/drill"];

/// What the core may not name. Built with `concat!` so this file does not match itself.
const FORBIDDEN_IN_CORE: &[&str] = &[
    concat!("tok", "io"),
    concat!("sq", "lx"),
    concat!("req", "west"),
    concat!("ax", "um"),
    concat!("te", "ra::"),
    concat!("cl", "ap::"),
    concat!("std::", "fs"),
    concat!("std::", "net"),
    concat!("std::", "process"),
    concat!("std::", "env"),
    concat!("SystemTime::", "now"),
    concat!("Instant::", "now"),
    concat!("Os", "Rng"),
    concat!("get", "random"),
    concat!("Utc::", "now"),
    concat!("ra", "nd::"),
    concat!("crate::", "render"),
    concat!("crate::", "cli"),
];

const LEFTOVERS: &[&str] = &[concat!("db", "g!("), concat!("to", "do!("), concat!("unimple", "mented!(")];

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn files_under(dirs: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root().join(dir), &mut files);
    }
    files.sort();
    assert!(!files.is_empty(), "no Rust files under {dirs:?}");
    files
}

/// Lines of code, leaving out comments so that prose may mention what code may not use.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, line)| !line.trim_start().starts_with("//")).map(|(i, line)| (i + 1, line))
}

#[test]
fn core_does_no_io_and_uses_no_adapter() {
    let mut violations = Vec::new();
    for file in files_under(CORE) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line_number, line) in code_lines(&text) {
            for forbidden in FORBIDDEN_IN_CORE {
                if line.contains(forbidden) {
                    violations.push(format!("{}:{line_number}: `{forbidden}`", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "the core must not use these (see ARCHITECTURE.md):\n{}", violations.join("\n"));
}

#[test]
fn every_module_has_a_doc_comment() {
    let missing: Vec<String> = files_under(&["src", "tests"])
        .into_iter()
        .filter(|file| !std::fs::read_to_string(file).unwrap().starts_with("//!"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc comment:\n{}", missing.join("\n"));
}

#[test]
fn no_leftovers() {
    let mut found = Vec::new();
    for file in files_under(&["src", "tests"]) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line_number, line) in code_lines(&text) {
            for leftover in LEFTOVERS {
                if line.contains(leftover) {
                    found.push(format!("{}:{line_number}: `{leftover}`", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "leftovers:\n{}", found.join("\n"));
}

#[test]
fn files_stay_small() {
    const LIMIT: usize = 700;
    let long: Vec<String> = files_under(&["src"])
        .into_iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            (lines > LIMIT).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "files past {LIMIT} lines want splitting:\n{}", long.join("\n"));
}

#[test]
fn ignored_tests_are_not_allowed() {
    let attribute = concat!("#[", "ignore");
    let found: Vec<String> = files_under(&["src", "tests"])
        .into_iter()
        .filter(|file| std::fs::read_to_string(file).unwrap().contains(attribute))
        .map(|file| file.display().to_string())
        .collect();
    assert!(found.is_empty(), "tests may not be ignored:\n{}", found.join("\n"));
}
