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
/// Loads of a file whose first load took over a second.
const SLOW_RUNS: usize = 3;

/// What one file costs: the median time, over how many loads, and the answer.
struct Measured {
    median: Duration,
    runs: usize,
    answer: String,
}

fn measure(catalog: &Catalog, bytes: &[u8]) -> Measured {
    let start = Instant::now();
    let answer = match runbook::load(bytes, catalog) {
        Ok(_) => "accepted".to_string(),
        Err(diagnostics) => {
            let first = diagnostics.first().map_or("nothing".to_string(), |d| d.code.to_string());
            if diagnostics.len() > 1 { format!("{first} (+{})", diagnostics.len() - 1) } else { first }
        }
    };
    let runs = if start.elapsed() > Duration::from_secs(1) { SLOW_RUNS } else { RUNS };
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let result = runbook::load(bytes, catalog);
            let elapsed = start.elapsed();
            drop(std::hint::black_box(result));
            elapsed
        })
        .collect();
    times.sort();
    Measured { median: times[runs / 2], runs, answer }
}

fn row(name: &str, size: usize, measured: &Measured) {
    let milliseconds = measured.median.as_secs_f64() * 1000.0;
    println!("| {name} | {size} | {} | {milliseconds:.3} | {} |", measured.answer, measured.runs);
}

fn main() {
    let catalog = Catalog::built_in();
    println!("| input | bytes | answer | median ms | runs |");
    println!("| --- | ---: | --- | ---: | ---: |");
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
        let name = format!("runbooks/{}", path.file_name().unwrap_or_default().to_string_lossy());
        row(&name, bytes.len(), &measure(&catalog, &bytes));
    }
    for case in inputs::cases() {
        let measured = measure(&catalog, &case.bytes);
        let expected = match case.expect {
            inputs::Expect::Accepted => "accepted".to_string(),
            inputs::Expect::RefusedAt(code, ..) | inputs::Expect::RefusedTimes(code, _) => code.to_string(),
            inputs::Expect::Refused(codes) => codes.first().map_or(String::new(), ToString::to_string),
        };
        assert!(
            measured.answer.starts_with(&expected),
            "`{}` answered {}, the tests expect {expected}",
            case.name,
            measured.answer
        );
        row(case.name, case.bytes.len(), &measured);
    }
    // Valid, but each phase needs the one before: the phase-graph checks grow faster than the file.
    for phases in [1000, 2000, 4000] {
        for cycle in [false, true] {
            let text = inputs::needs_chain(phases, cycle);
            let name = format!("needs-{}-of-{phases}-phases", if cycle { "cycle" } else { "chain" });
            row(&name, text.len(), &measure(&catalog, text.as_bytes()));
        }
    }
    // Every phase needs one that does not exist: each is compared with every id for a suggestion,
    // and without one the help lists every id.
    for phases in [1000, 2000, 4000] {
        for similar in [true, false] {
            let text = inputs::unknown_needs(phases, similar);
            let name = format!("unknown-needs-{}-of-{phases}-phases", if similar { "suggested" } else { "listed" });
            row(&name, text.len(), &measure(&catalog, text.as_bytes()));
        }
    }
}
