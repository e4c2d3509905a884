//! Hostile input is refused safely: files over the size limit, invalid UTF-8, alias bombs, deep
//! nesting, huge keys and lines, and conditions that would overflow CEL's parser.
//!
//! Each case loads on a thread with the 2 MiB of stack that Rust gives any spawned thread (a test
//! thread, an async runtime's worker), in the debug build, the tightest place a runbook is loaded:
//! a stack overflow aborts the test binary and names the thread, which is named after the case.
//! How fast each case is refused is measured in release by `cargo bench --bench hostile`, with the
//! numbers in BENCHMARKS.md; a timed assertion here would fail on a busy machine.

mod inputs;

use phasegate::render::Catalog;
use phasegate::runbook::{self, Diagnostic};

use crate::support::Cli;
use inputs::{Expect, cases};

/// What a spawned thread gets unless it asks for more.
const THREAD_STACK: usize = 2 * 1024 * 1024;

/// Loads `bytes` on a 2 MiB thread named `name`; a panic there fails the test with the name.
fn load(catalog: &Catalog, name: &str, bytes: &[u8]) -> Result<(), Vec<Diagnostic>> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(name.to_string())
            .stack_size(THREAD_STACK)
            .spawn_scoped(scope, || runbook::load(bytes, catalog).map(|_| ()))
            .expect("a thread starts")
            .join()
            .unwrap_or_else(|_| panic!("loading `{name}` panicked"))
    })
}

/// Why `outcome` is not what `expect` says, if it is not.
fn mismatch(expect: Expect, outcome: &Result<(), Vec<Diagnostic>>) -> Option<String> {
    let diagnostics = match outcome {
        Ok(()) if expect == Expect::Accepted => return None,
        Ok(()) => return Some("accepted".to_string()),
        Err(diagnostics) => diagnostics,
    };
    let codes: Vec<_> = diagnostics.iter().map(|d| d.code).collect();
    let matches = match expect {
        Expect::Accepted => false,
        Expect::RefusedAt(code, line, column) => {
            codes == [code] && (diagnostics[0].mark.line, diagnostics[0].mark.column) == (line, column)
        }
        Expect::Refused(expected) => codes == expected,
        Expect::RefusedTimes(code, times) => codes.len() == times && codes.iter().all(|&c| c == code),
    };
    let shown: Vec<String> = diagnostics
        .iter()
        .take(3)
        .map(|d| {
            format!("{}:{}: {} {}", d.mark.line, d.mark.column, d.code, d.message.chars().take(100).collect::<String>())
        })
        .collect();
    (!matches).then(|| format!("{} diagnostic(s): {}", diagnostics.len(), shown.join("; ")))
}

#[test]
fn hostile_files_are_refused_with_the_right_diagnostic() {
    let catalog = Catalog::built_in();
    let mut failures = Vec::new();
    for case in cases() {
        if let Some(problem) = mismatch(case.expect, &load(&catalog, case.name, &case.bytes)) {
            failures.push(format!("{}: expected {:?}, got {problem}", case.name, case.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_hostile_file_has_its_own_name() {
    let mut names: Vec<&str> = cases().iter().map(|case| case.name).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "two hostile cases share a name");
}

#[test]
fn the_cli_refuses_hostile_files_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let path = dir.path().join(format!("{}.yaml", case.name));
        std::fs::write(&path, &case.bytes).unwrap();
        let cli = Cli::new().args(["validate".as_ref(), path.as_os_str()]);
        // `status` fails on a crash too: a process killed by a signal has no exit code.
        let expected: Vec<String> = match case.expect {
            Expect::Accepted => {
                cli.succeeds().stdout_has(&format!("{}.yaml: ok (", case.name));
                continue;
            }
            Expect::RefusedAt(code, line, column) => vec![format!("{}.yaml:{line}:{column}: error[{code}]", case.name)],
            Expect::Refused(codes) => codes.iter().map(|code| format!("error[{code}]")).collect(),
            Expect::RefusedTimes(code, times) => vec![format!("error[{code}]"), format!("{times} problem(s)")],
        };
        let mut cli = cli.fails();
        for text in &expected {
            cli = cli.stderr_has(text);
        }
    }
}
