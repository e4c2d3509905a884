//! House rules that the compiler cannot check: the core's import rule, module docs, leftovers.

use std::path::{Path, PathBuf};

use crate::support::root;

mod imports;

/// The functional core: no I/O, no clock, no randomness, no adapters or shell.
const CORE: &[&str] =
    &["src/runbook", "src/expr", "src/engine", "src/audit", "src/drill", "src/interchange", "src/spelling.rs"];

/// The modules the core may not name: the adapters and the shell.
const ADAPTERS_AND_SHELL: &[&[&str]] =
    &[&["store"], &["actions"], &["campaign"], &["render"], &["runtime"], &["server"], &["config"], &["cli"]];

/// What the core may not name besides the adapters and the shell (which `imports` finds however
/// they are written). Built with `concat!` so this file does not match itself.
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
];

const LEFTOVERS: &[&str] = &[concat!("db", "g!("), concat!("to", "do!("), concat!("unimple", "mented!(")];

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    if dir.extension().is_some_and(|e| e == "rs") {
        files.push(dir.to_path_buf());
        return;
    }
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

/// The module a file under `src/` is: `["audit", "export"]` for `src/audit/export.rs`, `["audit"]`
/// for `src/audit/mod.rs`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root().join("src")).expect("a file under src/");
    let mut module: Vec<String> =
        relative.with_extension("").iter().map(|segment| segment.to_string_lossy().into_owned()).collect();
    if module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    module
}

/// Where the files under `dirs` name one of `forbidden` (modules as segments from the crate root).
fn forbidden_imports(dirs: &[&str], forbidden: &[&[&str]]) -> Vec<String> {
    let mut violations = Vec::new();
    for file in files_under(dirs) {
        let text = std::fs::read_to_string(&file).unwrap();
        let module = module_of(&file);
        let module: Vec<&str> = module.iter().map(String::as_str).collect();
        for (line_number, path) in imports::forbidden_paths(&text, &module, forbidden) {
            violations.push(format!("{}:{line_number}: `crate::{path}`", file.display()));
        }
    }
    violations
}

/// Lines of code, leaving out comments so that prose may mention what code may not use.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, line)| !line.trim_start().starts_with("//")).map(|(i, line)| (i + 1, line))
}

#[test]
fn core_does_no_io() {
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
fn core_imports_no_adapter_and_no_shell() {
    let violations = forbidden_imports(CORE, ADAPTERS_AND_SHELL);
    assert!(
        violations.is_empty(),
        "the core must not import the adapters or the shell (see ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

/// A guard on the reader itself: a string or a comment it misread would hide the rest of a file.
/// Every one-line `use` of the crate's own modules in the core must come out as a path.
#[test]
fn the_import_reader_sees_every_use_line_of_the_core() {
    let mut unseen = Vec::new();
    let mut seen = 0;
    for file in files_under(CORE) {
        let text = std::fs::read_to_string(&file).unwrap();
        let module = module_of(&file);
        let module: Vec<&str> = module.iter().map(String::as_str).collect();
        let lines: std::collections::BTreeSet<usize> =
            imports::crate_paths(&text, &module).into_iter().map(|(line, _)| line).collect();
        for (line_number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line.trim())) {
            let statement = line.strip_prefix("pub ").unwrap_or(line);
            let one_line_use = (statement.starts_with("use crate::") || statement.starts_with("use super::"))
                && statement.ends_with(';');
            if one_line_use {
                if lines.contains(&line_number) {
                    seen += 1;
                } else {
                    unseen.push(format!("{}:{line_number}: {line}", file.display()));
                }
            }
        }
    }
    assert!(unseen.is_empty(), "the import reader missed these lines:\n{}", unseen.join("\n"));
    assert!(seen > 100, "the import reader saw only {seen} `use` lines in the core");
}

/// The circles broken in issue 13 stay broken: `runbook` uses `expr`, never the other way, and
/// `de.rs` uses `spanned.rs`'s protocol, never the other way.
#[test]
fn imports_go_one_way_inside_the_core() {
    let mut violations = forbidden_imports(&["src/expr"], &[&["runbook"]]);
    violations.extend(forbidden_imports(&["src/runbook/spanned.rs"], &[&["runbook", "de"]]));
    assert!(violations.is_empty(), "imports that close a circle (see ARCHITECTURE.md):\n{}", violations.join("\n"));
}

/// The YAML shape stays inside `src/runbook/` (the compiler keeps `raw` private there; this says
/// why, should someone make it public again).
#[test]
fn raw_runbook_types_stay_in_the_runbook_module() {
    let outside: Vec<&str> =
        ["src/expr", "src/engine", "src/audit", "src/drill", "src/store", "src/actions", "src/render"]
            .into_iter()
            .chain([
                "src/runtime",
                "src/server",
                "src/config",
                "src/cli",
                "src/spelling.rs",
                "src/lib.rs",
                "src/main.rs",
            ])
            .collect();
    let violations = forbidden_imports(&outside, &[&["runbook", "raw"]]);
    assert!(violations.is_empty(), "`runbook::raw` used outside src/runbook:\n{}", violations.join("\n"));
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
