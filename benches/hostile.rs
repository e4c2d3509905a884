//! How long `runbook::load` takes to answer each hostile file, next to real runbooks, in a
//! release build: `cargo bench --bench hostile` prints a Markdown table for BENCHMARKS.md.
//!
//! The hostile files are the ones `tests/it/hostile.rs` checks; each is loaded a few times and the
//! median is shown, so one slow run on a busy machine does not move the number.

use std::time::{Duration, Instant};

use phasegate::render::Catalog;
use phasegate::runbook;

#[path = "../tests/it/hostile/inputs.rs"]
mod inputs;

/// Loads of each file; the median is reported.
const RUNS: usize = 9;

fn median(catalog: &Catalog, bytes: &[u8]) -> (Duration, String) {
    let outcome = match runbook::load(bytes, catalog) {
        Ok(_) => "accepted".to_string(),
        Err(diagnostics) => {
            let first = diagnostics.first().map_or("nothing".to_string(), |d| d.code.to_string());
            if diagnostics.len() > 1 { format!("{first} (+{})", diagnostics.len() - 1) } else { first }
        }
    };
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let result = runbook::load(bytes, catalog);
            let elapsed = start.elapsed();
            drop(std::hint::black_box(result));
            elapsed
        })
        .collect();
    times.sort();
    (times[RUNS / 2], outcome)
}

fn row(name: &str, size: usize, outcome: &str, time: Duration) {
    println!("| {name} | {size} | {outcome} | {:.3} |", time.as_secs_f64() * 1000.0);
}

fn main() {
    let catalog = Catalog::built_in();
    println!("| input | bytes | answer | median ms ({RUNS} runs) |");
    println!("| --- | ---: | --- | ---: |");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut runbooks: Vec<_> = std::fs::read_dir(root.join("runbooks"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    runbooks.sort();
    for path in runbooks {
        let bytes = std::fs::read(&path).expect("a runbook is readable");
        let (time, outcome) = median(&catalog, &bytes);
        row(
            &format!("runbooks/{}", path.file_name().unwrap_or_default().to_string_lossy()),
            bytes.len(),
            &outcome,
            time,
        );
    }
    for case in inputs::cases() {
        let (time, outcome) = median(&catalog, &case.bytes);
        let expected = match case.expect {
            inputs::Expect::Accepted => "accepted".to_string(),
            inputs::Expect::RefusedAt(code, ..) | inputs::Expect::RefusedTimes(code, _) => code.to_string(),
            inputs::Expect::Refused(codes) => codes.first().map_or(String::new(), ToString::to_string),
        };
        assert!(outcome.starts_with(&expected), "`{}` answered {outcome}, the tests expect {expected}", case.name);
        row(case.name, case.bytes.len(), &outcome, time);
    }
}
