//! What the SQLite store's group commit buys: `cargo bench --bench store` prints a Markdown table
//! for `notes/benchmarks-store.md`.
//!
//! Every commit in a durable SQLite file waits for the disk (WAL, `synchronous=FULL`), so the
//! yardstick is (a) plain sqlx on the same kind of file, one INSERT and one COMMIT per row. Against
//! it: (b) one incident appending one event at a time, where group commit cannot help and the
//! store's own cost shows, and (c) a hundred incidents appending at once, each one event at a
//! time, where appends waiting together share a commit. Runs of the three alternate, each on a
//! fresh file, and the median of each is reported, so one slow flush does not move the number.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phasegate::engine::{Event, EventKind};
use phasegate::store::{SqliteStore, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

/// Runs of each measurement; the median is reported.
const RUNS: usize = 5;
/// Rows committed one by one in (a).
const RAW_COMMITS: usize = 400;
/// Appends of one incident in (b).
const SEQUENTIAL_APPENDS: usize = 400;
/// Incidents appending at once in (c), and the appends each makes.
const INCIDENTS: usize = 100;
const APPENDS_EACH: usize = 20;

fn started(incident: &str) -> Event {
    Event::new(
        chrono::Utc::now(),
        "alertmanager",
        EventKind::IncidentStarted {
            incident: incident.into(),
            runbook_id: "retail-breach".into(),
            runbook_version: Some("3".into()),
            runbook_sha256: "5e1f".repeat(16),
            runbook_text: "id: retail-breach\n".repeat(20),
            inputs: Default::default(),
            key: None,
        },
    )
}

/// A typical small event: a timeline note.
fn note(number: usize) -> Event {
    Event::new(chrono::Utc::now(), "dana", EventKind::NoteAdded)
        .because(Some(format!("note {number}: store tills trade without MFA while the IdP is quarantined")))
}

/// A measurement: how many of something per second.
fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// (a) Plain sqlx: one INSERT and one COMMIT per row, on a file set up as the store sets up its own.
async fn raw_commits(path: &Path) -> f64 {
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut connection)
        .await
        .unwrap();
    let body = serde_json::to_string(&note(0)).unwrap();
    let start = Instant::now();
    for _ in 0..RAW_COMMITS {
        let mut transaction = connection.begin().await.unwrap();
        sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(&body).execute(&mut *transaction).await.unwrap();
        transaction.commit().await.unwrap();
    }
    let elapsed = start.elapsed();
    connection.close().await.unwrap();
    rate(RAW_COMMITS, elapsed)
}

/// (b) One incident, one event per append, each waiting for the last.
async fn sequential_appends(path: &Path) -> f64 {
    let store = SqliteStore::open(path).await.unwrap();
    let mut version = store.append("inc-1", 0, &[started("inc-1")], &[], None).await.unwrap();
    let start = Instant::now();
    for number in 0..SEQUENTIAL_APPENDS {
        version = store.append("inc-1", version, &[note(number)], &[], None).await.unwrap();
    }
    let elapsed = start.elapsed();
    store.close().await;
    rate(SEQUENTIAL_APPENDS, elapsed)
}

/// (c) A hundred incidents, each a task appending one event at a time. Also returns how many
/// appends each commit carried on average.
async fn concurrent_appends(path: &Path) -> (f64, f64) {
    let store = Arc::new(SqliteStore::open(path).await.unwrap());
    for number in 0..INCIDENTS {
        let incident = format!("inc-{number}");
        store.append(&incident, 0, &[started(&incident)], &[], None).await.unwrap();
    }
    let commits_before = store.commits();
    let start = Instant::now();
    let tasks: Vec<_> = (0..INCIDENTS)
        .map(|number| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let incident = format!("inc-{number}");
                let mut version = 1;
                for append in 0..APPENDS_EACH {
                    version = store.append(&incident, version, &[note(append)], &[], None).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    let commits = store.commits() - commits_before;
    Arc::into_inner(store).expect("every task has ended").close().await;
    let appends = INCIDENTS * APPENDS_EACH;
    (rate(appends, elapsed), appends as f64 / commits as f64)
}

async fn experiments(dir: &Path) {
    let mut connection = SqliteConnectOptions::new()
        .filename(dir.join("exp.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE summary (id TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query("INSERT INTO summary VALUES ('a', 0)").execute(&mut connection).await.unwrap();
    let body = serde_json::to_string(&note(0)).unwrap();
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..2000 {
            sqlx::query("SELECT 1").execute(&mut connection).await.unwrap();
        }
        let hop = start.elapsed() / 2000;
        let start = Instant::now();
        for _ in 0..200 {
            sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
            sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(&body).execute(&mut connection).await.unwrap();
            sqlx::query("COMMIT").execute(&mut connection).await.unwrap();
        }
        let one = start.elapsed() / 200;
        let start = Instant::now();
        for _ in 0..200 {
            sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
            sqlx::query("UPDATE summary SET version = version + 1 WHERE id = 'a'")
                .execute(&mut connection)
                .await
                .unwrap();
            sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(&body).execute(&mut connection).await.unwrap();
            sqlx::query("COMMIT").execute(&mut connection).await.unwrap();
        }
        let two = start.elapsed() / 200;
        let start = Instant::now();
        for _ in 0..200 {
            sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
            sqlx::query("SELECT 1").execute(&mut connection).await.unwrap();
            sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(&body).execute(&mut connection).await.unwrap();
            sqlx::query("COMMIT").execute(&mut connection).await.unwrap();
        }
        let extra_hop = start.elapsed() / 200;
        println!("hop {hop:?} one-table commit {one:?} two-table commit {two:?} one-table + extra hop {extra_hop:?}");
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Under the target directory, on the disk the project lives on, not a RAM-backed /tmp.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    if std::env::var("EXP").is_ok() {
        runtime.block_on(experiments(dir.path()));
        return;
    }
    let (mut raw, mut sequential, mut concurrent, mut per_commit) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        raw.push(runtime.block_on(raw_commits(&dir.path().join(format!("raw-{run}.db")))));
        sequential.push(runtime.block_on(sequential_appends(&dir.path().join(format!("one-{run}.db")))));
        let (rate, batch) = runtime.block_on(concurrent_appends(&dir.path().join(format!("many-{run}.db"))));
        concurrent.push(rate);
        per_commit.push(batch);
    }
    let (raw, sequential, concurrent, per_commit) =
        (median(raw), median(sequential), median(concurrent), median(per_commit));
    println!("`cargo bench --bench store`: medians of {RUNS} runs, WAL with `synchronous=FULL`\n");
    println!("| measure | per second | ratio to (a) |");
    println!("| --- | ---: | ---: |");
    println!("| (a) raw sqlx, one INSERT + COMMIT per row ({RAW_COMMITS} rows) | {raw:.0} | 1.00 |");
    println!(
        "| (b) store, 1 incident, sequential appends of one event ({SEQUENTIAL_APPENDS}) | {sequential:.0} | {:.2} |",
        sequential / raw
    );
    println!(
        "| (c) store, {INCIDENTS} incidents at once, {APPENDS_EACH} sequential appends each | {concurrent:.0} | {:.2} |",
        concurrent / raw
    );
    println!("\nIn (c) a commit carried {per_commit:.1} appends on average.");
}
