//! What the PostgreSQL store's group commit buys, next to `pgbench`: `cargo bench --bench
//! postgres` prints a Markdown table for BENCHMARKS.md. It needs a PostgreSQL server
//! (`PHASEGATE_BENCH_POSTGRES`, default the tests' `postgres://postgres@127.0.0.1:5432/test`) and
//! `pgbench` on the `PATH`; it works in a schema of its own, dropped at the end.
//!
//! Every commit waits for the server's WAL flush, so the yardstick is (a) `pgbench -c 1` with a
//! one-`INSERT` script of an event-sized row (each transaction one statement in autocommit, one
//! round trip), run in every round beside `pgbench -c 16` and plain sqlx (one INSERT and one
//! COMMIT per row: three round trips). Against it: (b) one incident appending one event at a
//! time, where group commit cannot help and the store's own cost shows (and (b') the same with
//! an effect queued by each append, the store's transaction path), and (c) a hundred incidents
//! appending at once, each one event at a time, where appends waiting together share a commit.
//!
//! The disk and the processor are shared with whatever else the machine does, so the measures
//! run in many short rounds, one after the other, and each round's ratios are taken within
//! the round: a slow second slows all of them alike. The table shows the medians of the rounds, of
//! the rates and of the ratios alike; `VERBOSE=1` prints every round, `ROUNDS=N` sets how many.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use phasegate::store::PostgresStore;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

mod appends;
mod yardstick;

/// Rows committed one by one by plain sqlx in each round.
const RAW_COMMITS: usize = 40;
/// Transactions of each `pgbench` client in each round.
const PGBENCH_TRANSACTIONS: usize = 40;

/// Plain sqlx on the same server, in the bench's schema.
async fn raw_connection(options: &PgConnectOptions) -> PgConnection {
    let mut connection = options.clone().disable_statement_logging().connect().await.unwrap();
    sqlx::query("CREATE TABLE raw_rows (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut connection)
        .await
        .unwrap();
    connection
}

/// One INSERT and one COMMIT per row.
async fn raw_commits(connection: Arc<Mutex<PgConnection>>) -> f64 {
    let mut connection = connection.lock().await;
    let body = serde_json::to_string(&appends::note(0)).unwrap();
    let start = Instant::now();
    for _ in 0..RAW_COMMITS {
        let mut transaction = connection.begin().await.unwrap();
        sqlx::query("INSERT INTO raw_rows (body) VALUES ($1)").bind(&body).execute(&mut *transaction).await.unwrap();
        transaction.commit().await.unwrap();
    }
    yardstick::rate(RAW_COMMITS, start.elapsed())
}

/// `pgbench`'s script: one INSERT of an event-sized row. The row is an escaped string, since
/// pgbench would read a `:` in it as a variable.
fn pgbench_script(dir: &Path) -> std::path::PathBuf {
    let body = serde_json::to_string(&appends::note(0)).unwrap();
    let escaped: String = body
        .chars()
        .map(|character| match character {
            ':' => "\\x3a".to_string(),
            '\\' => "\\\\".to_string(),
            '\'' => "''".to_string(),
            other => other.to_string(),
        })
        .collect();
    let path = dir.join("insert.sql");
    std::fs::write(&path, format!("INSERT INTO raw_rows (body) VALUES (E'{escaped}');\n")).unwrap();
    path
}

/// `pgbench` with `clients` clients, each running the script `PGBENCH_TRANSACTIONS` times: its
/// transactions a second, without the time it took to connect.
fn pgbench(url: &str, script: &Path, clients: usize) -> f64 {
    let output = Command::new("pgbench")
        .args(["--no-vacuum", "--file"])
        .arg(script)
        .args(["--client", &clients.to_string(), "--jobs", &clients.min(2).to_string()])
        .args(["--transactions", &PGBENCH_TRANSACTIONS.to_string(), url])
        .output()
        .expect("pgbench on the PATH");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pgbench failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `tps = ` in pgbench's output: {stdout}"))
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = std::env::var("PHASEGATE_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("phasegate_bench_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let script = pgbench_script(dir.path());
    let separator = if url.contains('?') { '&' } else { '?' };
    let in_schema = format!("{url}{separator}options=-csearch_path%3D{schema}");
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&url).await.expect("a PostgreSQL server (PHASEGATE_BENCH_POSTGRES)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut admin).await.unwrap();
        let options = PgConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
        let raw = Arc::new(Mutex::new(raw_connection(&options).await));
        // One store for both (b) and (c), as one server holds every incident.
        let store = PostgresStore::connect(options.clone()).await.unwrap();
        let store = appends::started_in(store, "one", 1).await;
        let store = Arc::into_inner(store).expect("one owner");
        let store = appends::started_in(store, "many", appends::INCIDENTS).await;
        let pgbench_with = |clients: usize| {
            let (url, script) = (in_schema.clone(), script.clone());
            move || {
                let (url, script) = (url.clone(), script.clone());
                tokio::task::spawn_blocking(move || pgbench(&url, &script, clients))
            }
        };
        let yardsticks: [appends::Yardstick; 3] = [
            ("(a) pgbench -c 1, one INSERT a transaction".to_string(), Box::new(pgbench_with(1))),
            ("pgbench -c 16, the same".to_string(), Box::new(pgbench_with(16))),
            (
                format!("raw sqlx, one INSERT + COMMIT per row ({RAW_COMMITS} a round)"),
                Box::new(|| tokio::spawn(raw_commits(Arc::clone(&raw)))),
            ),
        ];
        let rounds = appends::rounds(&yardsticks, (Arc::clone(&store), "one"), (store, "many")).await;
        appends::print_table(
            &format!(
                "`cargo bench --bench postgres` ({PGBENCH_TRANSACTIONS} pgbench transactions a client a round), \
                 PostgreSQL with its defaults (fsync, synchronous_commit on)"
            ),
            &yardsticks,
            &rounds,
        );
        drop(yardsticks);
        drop(raw);
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut admin).await.unwrap();
    });
}
