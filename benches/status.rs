//! `phasegate status` wall time on an incident with 10,000 events: the binary, end to end, as a
//! CISO runs it, next to the library's own load and fold of the same log.
//!
//! Run with `cargo bench --bench status`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use phasegate::engine::{Directory, Event, EventKind};
use phasegate::render::Catalog;
use phasegate::runtime::Runtime;
use phasegate::store::{Append, SqliteStore, Store};

const EVENTS: usize = 10_000;
const RUNS: usize = 15;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phasegate.db");
    let config = dir.path().join("phasegate.yaml");
    std::fs::write(&config, "people:\n  dana: { roles: [incident-commander, ciso, soc-analyst] }\n").unwrap();
    let runbook = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks/retail-breach.yaml")).unwrap();

    let tokio = tokio::runtime::Runtime::new().unwrap();
    let (id, load) = tokio.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let runtime = Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["incident-commander"])]));
        let (id, _) = runtime.start(&runbook, "dana", BTreeMap::new(), None).await.unwrap();
        let mut version = runtime.store().events(&id).await.unwrap().len() as u64;
        while (version as usize) < EVENTS {
            let batch: Vec<Event> = (0..500.min(EVENTS - version as usize))
                .map(|n| {
                    Event::new(Utc::now(), "dana", EventKind::NoteAdded)
                        .because(Some(format!("note {}", version as usize + n)))
                })
                .collect();
            version = runtime.store().append(Append::new(&id, version, &batch)).await.unwrap();
        }
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let loaded = runtime.load(&id).await.unwrap();
            assert_eq!(loaded.incident.version as usize, EVENTS);
            samples.push(started.elapsed());
        }
        (id, median(samples))
    });

    // The release binary, end to end: process start to exit.
    let wall_time = |args: &[&str]| {
        let samples = (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_phasegate"))
                    .args(args)
                    .arg("--db")
                    .arg(&db)
                    .arg("--config")
                    .arg(&config)
                    .output()
                    .unwrap();
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                started.elapsed()
            })
            .collect();
        median(samples)
    };
    let wall = wall_time(&["status", &id]);
    let list = wall_time(&["list"]);
    println!("| measure (incident with {EVENTS} events, median of {RUNS}) | time |");
    println!("| --- | --- |");
    println!("| `phasegate status` wall time, process start to exit | {:.1} ms |", wall.as_secs_f64() * 1000.0);
    println!("| library: read the log and fold it | {:.1} ms |", load.as_secs_f64() * 1000.0);
    println!(
        "| `phasegate list` on the same database (process, configuration, database open) | {:.1} ms |",
        list.as_secs_f64() * 1000.0
    );
}
