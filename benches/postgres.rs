//! What the PostgreSQL store's group commit buys: `cargo bench --bench postgres` prints a Markdown
//! table for BENCHMARKS.md. It needs a PostgreSQL server: `PHASEGATE_BENCH_POSTGRES` (default the
//! tests' `postgres://postgres@127.0.0.1:5432/test`); it works in a schema of its own, dropped at
//! the end.
//!
//! Every commit waits for the server's WAL flush, so the yardstick is (a) plain sqlx on the same
//! server, one INSERT and one COMMIT per row (what `pgbench -c 1` with a one-INSERT script does). Against
//! it: (b) one incident appending one event at a time, where group commit cannot help and the
//! store's own cost shows (and (b') the same with an effect queued by each append, the store's
//! transaction path), and (c) a hundred incidents appending at once, each one event at a time,
//! where appends waiting together share a commit.
//!
//! The disk and the processor are shared with whatever else the machine does, so the measures
//! run in many short rounds, one after the other, and each round's ratios are taken within
//! the round: a slow second slows all of them alike. The table shows the medians of the rounds, of
//! the rates and of the ratios alike; `VERBOSE=1` prints every round.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phasegate::engine::{Effect, EffectKind, Event, EventKind};
use phasegate::store::{Append, PostgresStore, Store};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// Rounds of the three measurements; medians are reported. Many short rounds, so that the
/// stalls of a shared disk land on all three alike.
const ROUNDS: usize = 61;
/// Rows committed one by one in (a) in each round.
const RAW_COMMITS: usize = 40;
/// Appends of one incident in (b) in each round.
const SEQUENTIAL_APPENDS: usize = 40;
/// Incidents appending at once in (c), and the appends each makes in each round.
const INCIDENTS: usize = 100;
const APPENDS_EACH: usize = 3;

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

/// (a) Plain sqlx on the same server, in the bench's schema.
async fn raw_connection(options: &PgConnectOptions) -> PgConnection {
    let mut connection = options.clone().disable_statement_logging().connect().await.unwrap();
    sqlx::query("CREATE TABLE raw_rows (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut connection)
        .await
        .unwrap();
    connection
}

/// (a) One INSERT and one COMMIT per row. Takes and gives back the connection, so that each
/// measurement runs as a task of its own on the runtime's workers, as phasegate's callers do.
async fn raw_commits(mut connection: PgConnection) -> (f64, PgConnection) {
    let body = serde_json::to_string(&note(0)).unwrap();
    let start = Instant::now();
    for _ in 0..RAW_COMMITS {
        let mut transaction = connection.begin().await.unwrap();
        sqlx::query("INSERT INTO raw_rows (body) VALUES ($1)").bind(&body).execute(&mut *transaction).await.unwrap();
        transaction.commit().await.unwrap();
    }
    (rate(RAW_COMMITS, start.elapsed()), connection)
}

/// A store with `incidents` incidents started, and their versions.
async fn store_with(options: &PgConnectOptions, prefix: &str, incidents: usize) -> (Arc<PostgresStore>, Vec<u64>) {
    let store = PostgresStore::connect(options.clone()).await.unwrap();
    for number in 0..incidents {
        let incident = format!("{prefix}-{number}");
        store.append(Append::new(&incident, 0, &[started(&incident)])).await.unwrap();
    }
    (Arc::new(store), vec![1; incidents])
}

/// (b) One incident, one event per append, each waiting for the last; with `effect`, each append
/// also queues an effect, as a step's start does, which takes the store's transaction path (three
/// statements and a commit rather than one statement). Gives the new version back.
async fn sequential_appends(store: Arc<PostgresStore>, mut version: u64, effect: bool) -> (f64, u64) {
    let start = Instant::now();
    for number in 0..SEQUENTIAL_APPENDS {
        let effects: Vec<Effect> = effect.then(|| notify(&format!("one-0/status/{version}"))).into_iter().collect();
        version = store.append(Append::new("one-0", version, &[note(number)]).effects(&effects)).await.unwrap();
    }
    (rate(SEQUENTIAL_APPENDS, start.elapsed()), version)
}

fn notify(id: &str) -> Effect {
    let kind = EffectKind::Notify {
        audience: "executives".into(),
        template: "executive-briefing".into(),
        channels: vec!["board".into()],
        occasion: "note_added".into(),
        message: None,
        step: None,
    };
    Effect { id: id.into(), kind }
}

/// (c) A hundred incidents, each a task appending one event at a time. Also gives how many
/// appends each commit carried on average, and the new versions.
async fn concurrent_appends(store: Arc<PostgresStore>, versions: Vec<u64>) -> (f64, f64, Vec<u64>) {
    let commits_before = store.commits();
    let start = Instant::now();
    let tasks: Vec<_> = versions
        .into_iter()
        .enumerate()
        .map(|(number, mut version)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let incident = format!("many-{number}");
                for append in 0..APPENDS_EACH {
                    version = store.append(Append::new(&incident, version, &[note(append)])).await.unwrap();
                }
                version
            })
        })
        .collect();
    let mut versions = Vec::with_capacity(tasks.len());
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    let appends = INCIDENTS * APPENDS_EACH;
    (rate(appends, elapsed), appends as f64 / (store.commits() - commits_before) as f64, versions)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = std::env::var("PHASEGATE_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("phasegate_bench_{}", uuid::Uuid::new_v4().simple());
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&url).await.expect("a PostgreSQL server (PHASEGATE_BENCH_POSTGRES)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut admin).await.unwrap();
        let options = PgConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
        let mut raw = Some(raw_connection(&options).await);
        // One store for both (b) and (c), as one server holds every incident.
        let (one, mut one_version) = store_with(&options, "one", 1).await;
        let (many, mut many_versions) = store_with(&options, "many", INCIDENTS).await;
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            // The order turns each round, so that none of the four always follows the same one.
            let (mut a, mut b, mut b_effect, mut c, mut per_commit) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for measure in (0..4).map(|step| (round + step) % 4) {
                match measure {
                    0 => {
                        let connection = raw.take().expect("the connection came back");
                        let (rate, connection) = tokio::spawn(raw_commits(connection)).await.unwrap();
                        (a, raw) = (rate, Some(connection));
                    }
                    1 | 2 => {
                        let task = tokio::spawn(sequential_appends(Arc::clone(&one), one_version[0], measure == 2));
                        let (rate, version) = task.await.unwrap();
                        one_version[0] = version;
                        if measure == 1 { b = rate } else { b_effect = rate }
                    }
                    _ => {
                        let versions = std::mem::take(&mut many_versions);
                        let task = tokio::spawn(concurrent_appends(Arc::clone(&many), versions));
                        (c, per_commit, many_versions) = task.await.unwrap();
                    }
                }
            }
            if std::env::var_os("VERBOSE").is_some() {
                eprintln!(
                    "round {round}: (a) {a:.0}/s (b) {b:.0}/s (b') {b_effect:.0}/s (c) {c:.0}/s, {per_commit:.1} appends a commit"
                );
            }
            rounds.push([a, b, b_effect, c, b / a, b_effect / a, c / a, per_commit]);
        }
        let column = |index: usize| median(rounds.iter().map(|round| round[index]).collect());
        println!("`cargo bench --bench postgres`: medians of {ROUNDS} rounds, PostgreSQL with its defaults (fsync, synchronous_commit on)\n");
        println!("| measure | per second | ratio to (a) |");
        println!("| --- | ---: | ---: |");
        println!("| (a) raw sqlx, one INSERT + COMMIT per row ({RAW_COMMITS} a round) | {:.0} | 1.00 |", column(0));
        println!(
            "| (b) store, 1 incident, sequential appends of one event ({SEQUENTIAL_APPENDS} a round) | {:.0} | {:.2} |",
            column(1),
            column(4)
        );
        println!(
            "| (b') the same, each append also queuing an effect | {:.0} | {:.2} |",
            column(2),
            column(5)
        );
        println!(
            "| (c) store, {INCIDENTS} incidents at once, {APPENDS_EACH} sequential appends each a round | {:.0} | {:.2} |",
            column(3),
            column(6)
        );
        println!("\nIn (c) a commit carried {:.1} appends (median of the rounds' averages).", column(7));
        drop(raw);
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut admin).await.unwrap();
    });
}
