//! What the SQLite store's group commit buys: `cargo bench --bench store` prints a Markdown table
//! for `notes/benchmarks-store.md`.
//!
//! Every commit in a durable SQLite file waits for the disk (WAL, `synchronous=FULL`), so the
//! yardstick is (a) plain sqlx on the same kind of file, one INSERT and one COMMIT per row. Against
//! it: (b) one incident appending one event at a time, where group commit cannot help and the
//! store's own cost shows (and (b') the same with an effect queued by each append, the store's
//! transaction path), and (c) a hundred incidents appending at once, each one event at a time,
//! where appends waiting together share a commit.
//!
//! The disk and the processor are shared with whatever else the machine does, so the measures
//! run in many short rounds, one after the other, and each round's ratios are taken within
//! the round: a slow second slows all of them alike. The table shows the medians of the rounds, of
//! the rates and of the ratios alike; `VERBOSE=1` prints every round.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use phasegate::store::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

mod appends;
mod yardstick;

/// Rows committed one by one in (a) in each round.
const RAW_COMMITS: usize = 40;

/// (a) Plain sqlx on a file of its own, as durable as the store's.
async fn raw_connection(path: PathBuf) -> SqliteConnection {
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
    connection
}

/// (a) One INSERT and one COMMIT per row.
async fn raw_commits(connection: Arc<Mutex<SqliteConnection>>) -> f64 {
    let mut connection = connection.lock().await;
    let body = serde_json::to_string(&appends::note(0)).unwrap();
    let start = Instant::now();
    for _ in 0..RAW_COMMITS {
        let mut transaction = connection.begin().await.unwrap();
        sqlx::query("INSERT INTO rows (body) VALUES (?)").bind(&body).execute(&mut *transaction).await.unwrap();
        transaction.commit().await.unwrap();
    }
    yardstick::rate(RAW_COMMITS, start.elapsed())
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    runtime.block_on(async {
        let raw = Arc::new(Mutex::new(raw_connection(path.join("raw.db")).await));
        let one = appends::started_in(SqliteStore::open(path.join("one.db")).await.unwrap(), "inc", 1).await;
        let many =
            appends::started_in(SqliteStore::open(path.join("many.db")).await.unwrap(), "inc", appends::INCIDENTS)
                .await;
        let yardsticks: [appends::Yardstick; 1] = [(
            format!("(a) raw sqlx, one INSERT + COMMIT per row ({RAW_COMMITS} a round)"),
            Box::new(|| tokio::spawn(raw_commits(Arc::clone(&raw)))),
        )];
        let rounds = appends::rounds(&yardsticks, (one, "inc"), (many, "inc")).await;
        appends::print_table("`cargo bench --bench store`, WAL with `synchronous=FULL`", &yardsticks, &rounds);
    });
}
