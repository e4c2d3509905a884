//! A durable command's time, taken apart: the raw SQLite commit of `benches/commands.rs`
//! (`raw`: BEGIN, INSERT, COMMIT, three trips to sqlx's thread), the same INSERT alone in
//! autocommit (`raw1`: one trip), an append of one note event straight to the store (`append`:
//! encoding and the writer, no deciding) and a note through `Runtime::submit` (`submit`), each
//! `N` (200) in a row on a fresh file, `ROUNDS` (5) rounds; ratios to `raw` within each round,
//! medians. `MODES=submit N=1000 ROUNDS=1` runs one part alone, for `strace -c`, `perf trace` or
//! `valgrind --tool=callgrind` (BENCHMARKS.md, "Where a command's time goes"). `many` is the
//! other half of `benches/commands.rs`: `INCIDENTS` (100) incidents started, then `N` notes on
//! each, all incidents at once (a task each); its rate counts every note.
//!
//! Run with `cargo bench --bench command_parts`.
use std::collections::BTreeMap;
use std::time::Instant;

use phasegate::engine::{Command, Directory, Event, EventKind};
use phasegate::render::Catalog;
use phasegate::runtime::Runtime;
use phasegate::store::{Append, SqliteStore, Store};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

mod yardstick;
use yardstick::{median, rate};

const RUNBOOK: &str = "apiVersion: phasegate/v1\nkind: Runbook\nid: bench\ntitle: Bench\nroles:\n  ops: {}\nphases:\n  - id: work\n    steps:\n      - id: wait\n        manual: { instructions: Wait }\n";

fn n() -> usize {
    std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

async fn raw(path: std::path::PathBuf, autocommit: bool) -> f64 {
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut connection)
        .await
        .unwrap();
    let body =
        r#"{"format":1,"at":"2026-11-25T01:00:00Z","actor":"dana","reason":"note","event":{"type":"note_added"}}"#;
    let start = Instant::now();
    for _ in 0..n() {
        if autocommit {
            sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(body).execute(&mut connection).await.unwrap();
        } else {
            sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
            sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(body).execute(&mut connection).await.unwrap();
            sqlx::query("COMMIT").execute(&mut connection).await.unwrap();
        }
    }
    rate(n(), start.elapsed())
}

type R = std::sync::Arc<Runtime<SqliteStore, Catalog>>;
async fn setup(path: std::path::PathBuf) -> (R, String, u64) {
    let store = SqliteStore::open(path).await.unwrap();
    let runtime = Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["ops"])]));
    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let version = runtime.store().incident(&id).await.unwrap().unwrap().version;
    (std::sync::Arc::new(runtime), id, version)
}
async fn append((runtime, id, mut version): (R, String, u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n() {
        let event = Event::new(chrono::Utc::now(), "dana", EventKind::NoteAdded).because(Some(format!("note {i}")));
        version = runtime.store().append(Append::new(&id, version, &[event])).await.unwrap();
    }
    rate(n(), start.elapsed())
}

async fn submit((runtime, id, _): (R, String, u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n() {
        runtime.submit(&id, "dana", Command::Note { text: format!("note {i}") }).await.unwrap();
    }
    rate(n(), start.elapsed())
}

fn incidents() -> usize {
    std::env::var("INCIDENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

async fn many_setup(path: std::path::PathBuf) -> R {
    let store = SqliteStore::open(path).await.unwrap();
    std::sync::Arc::new(Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["ops"])])))
}

async fn many(runtime: R) -> f64 {
    let mut ids = Vec::new();
    for _ in 0..incidents() {
        ids.push(runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap().0);
    }
    let start = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                for i in 0..n() {
                    runtime.submit(&id, "dana", Command::Note { text: format!("note {i}") }).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    rate(incidents() * n(), start.elapsed())
}

fn main() {
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let modes: Vec<String> =
        std::env::var("MODES").unwrap_or("raw,raw1,append,submit".into()).split(',').map(String::from).collect();
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        let mut this = vec![0.0; modes.len()];
        for (k, mode) in modes.iter().enumerate() {
            let path = dir.path().join(format!("{mode}-{round}.db"));
            let r = tokio.block_on(async {
                match mode.as_str() {
                    "raw" => raw(path, false).await,
                    "raw1" => raw(path, true).await,
                    "append" => tokio::spawn(append(setup(path).await)).await.unwrap(),
                    "submit" => tokio::spawn(submit(setup(path).await)).await.unwrap(),
                    "many" => tokio::spawn(many(many_setup(path).await)).await.unwrap(),
                    other => panic!("{other}"),
                }
            });
            this[k] = r;
            results[k].push(r);
        }
        for k in 0..modes.len() {
            ratios[k].push(this[k] / this[0]);
        }
    }
    for (k, mode) in modes.iter().enumerate() {
        println!(
            "{mode:8} {:8.0}/s  ratio(median of rounds) {:.2}",
            median(results[k].clone()),
            median(ratios[k].clone())
        );
    }
}
