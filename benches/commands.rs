//! Durable commands per second through the runtime, as `phasegate` and the server give them:
//! each command reads the incident's log, folds it, decides, and appends with the version it read.
//! Measured for one incident and for 100 incidents at once, next to the raw SQLite single-row
//! commit rate on the same disk, in the same run.
//!
//! Run with `cargo bench --bench commands`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use phasegate::engine::{Command, Directory};
use phasegate::render::Catalog;
use phasegate::runtime::Runtime;
use phasegate::store::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

mod yardstick;
use yardstick::{median, rate};

const RUNBOOK: &str = "apiVersion: phasegate/v1\nkind: Runbook\nid: bench\ntitle: Bench\nroles:\n  ops: {}\nphases:\n  - id: work\n    steps:\n      - id: wait\n        manual: { instructions: Wait }\n";
const ROUNDS: usize = 5;
const SEQUENTIAL: usize = 200;
const INCIDENTS: usize = 100;
const PER_INCIDENT: usize = 5;

async fn raw(path: std::path::PathBuf) -> f64 {
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
    for _ in 0..SEQUENTIAL {
        let mut transaction = connection.begin().await.unwrap();
        sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(body).execute(&mut *transaction).await.unwrap();
        transaction.commit().await.unwrap();
    }
    rate(SEQUENTIAL, start.elapsed())
}

type Bench = Arc<Runtime<SqliteStore, Catalog>>;

async fn runtime(path: std::path::PathBuf) -> Bench {
    let store = SqliteStore::open(path).await.unwrap();
    Arc::new(Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["ops"])])))
}

fn note(n: usize) -> Command {
    Command::Note { text: format!("note {n}") }
}

async fn one_incident(runtime: Bench) -> f64 {
    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let start = Instant::now();
    for n in 0..SEQUENTIAL {
        runtime.submit(&id, "dana", note(n)).await.unwrap();
    }
    rate(SEQUENTIAL, start.elapsed())
}

async fn many_incidents(runtime: Bench) -> f64 {
    let mut ids = Vec::new();
    for _ in 0..INCIDENTS {
        ids.push(runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap().0);
    }
    let start = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                for n in 0..PER_INCIDENT {
                    runtime.submit(&id, "dana", note(n)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    rate(INCIDENTS * PER_INCIDENT, start.elapsed())
}

fn main() {
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let (mut raws, mut ones, mut manys) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        tokio.block_on(async {
            raws.push(raw(dir.path().join(format!("raw-{round}.db"))).await);
            ones.push(
                tokio::spawn(one_incident(runtime(dir.path().join(format!("one-{round}.db"))).await)).await.unwrap(),
            );
            manys.push(
                tokio::spawn(many_incidents(runtime(dir.path().join(format!("many-{round}.db"))).await)).await.unwrap(),
            );
        });
    }
    let raw = median(raws);
    let (one, many) = (median(ones), median(manys));
    println!("| measure (median of {ROUNDS} rounds) | per second | ratio to raw |");
    println!("| --- | ---: | ---: |");
    println!("| raw SQLite: one INSERT + COMMIT per row | {raw:.0} | 1.00 |");
    println!(
        "| commands through the runtime, one incident, one after another ({SEQUENTIAL}) | {one:.0} | {:.2} |",
        one / raw
    );
    println!(
        "| commands through the runtime, {INCIDENTS} incidents at once ({PER_INCIDENT} each) | {many:.0} | {:.2} |",
        many / raw
    );
}
