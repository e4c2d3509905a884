//! What a customer campaign's progress costs the SQLite store: `cargo bench --bench
//! campaign_store` prints a Markdown table for `BENCHMARKS.md`.
//!
//! A campaign of 2.1 M recipients in batches of 1,000: its plan of 2,100 batches is stored, then
//! each batch is marked sending and answered (ten failures and 60 KB of Merkle leaves each), a few
//! batches in flight at a time as the campaign runner sends them, each lane taking the next batch
//! when its last is answered; then every batch's leaves are read back, as the runner does to
//! compute the campaign's Merkle root. Each write is durable when it answers (WAL with
//! `synchronous=FULL`), so what group commit buys shows in the commits: with one batch in flight
//! each write is a commit of its own, with four they share.
//!
//! `IN_FLIGHT=4,1` (the default) sets the cases, `RUNS=N` (default 1) the runs of each, each in a
//! fresh database; the table shows each case's median run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use phasegate::campaign::BatchPlan;
use phasegate::store::{BatchResult, SqliteStore, Store};

const CAMPAIGN: &str = "inc-20261204-5e1f00/notify/customers";
const BATCHES: u32 = 2_100;
const RECIPIENTS: u32 = 1_000;
const FAILED: u32 = 10;
const LEAVES: usize = 60_000;

/// A batch of the plan: 1,000 lines of about 120 bytes, one in a hundred skipped.
fn batch(number: u32) -> BatchPlan {
    let lines = u64::from(RECIPIENTS) + 10;
    let first_line = 2 + u64::from(number - 1) * lines;
    BatchPlan {
        number,
        start: first_line * 120,
        end: (first_line + lines) * 120,
        first_line,
        skip: (0..10).map(|skipped| first_line + skipped * 100).collect(),
        recipients: RECIPIENTS,
    }
}

/// A batch's answer: ten recipients failed, the rest sent, and leaves that do not repeat.
fn result(number: u32) -> BatchResult {
    let mut state = u64::from(number).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let leaves = (0..LEAVES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let failed =
        (0..FAILED).map(|index| (format!("c-{number}-{index}"), "550 5.1.1 mailbox unavailable".to_string())).collect();
    BatchResult { number, at: Utc::now(), sent: RECIPIENTS - FAILED, failed, leaves }
}

/// One run's measures.
#[derive(Clone, Copy)]
struct Run {
    plan: Duration,
    send: Duration,
    commits: u64,
    read: Duration,
}

async fn run(in_flight: u32) -> Run {
    // Under the target directory, on the disk the project lives on, not a RAM-backed /tmp.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("campaign.db")).await.unwrap());
    let plan: Vec<BatchPlan> = (1..=BATCHES).map(batch).collect();
    // The answers are made before the clock starts: the store's cost is what is measured.
    let results: Arc<Vec<BatchResult>> = Arc::new((1..=BATCHES).map(result).collect());

    let start = Instant::now();
    store.campaign_plan(CAMPAIGN, &plan).await.unwrap();
    let planned = start.elapsed();

    let commits = store.commits();
    let next = Arc::new(AtomicU32::new(1));
    let start = Instant::now();
    let lanes: Vec<_> = (0..in_flight)
        .map(|_| {
            let (store, next, results) = (Arc::clone(&store), Arc::clone(&next), Arc::clone(&results));
            tokio::spawn(async move {
                loop {
                    let number = next.fetch_add(1, Ordering::Relaxed);
                    if number > BATCHES {
                        break;
                    }
                    store.campaign_sending(CAMPAIGN, &[number], Utc::now()).await.unwrap();
                    let answer = &results[number as usize - 1..number as usize];
                    store.campaign_answered(CAMPAIGN, answer).await.unwrap();
                }
            })
        })
        .collect();
    for lane in lanes {
        lane.await.unwrap();
    }
    let send = start.elapsed();
    let commits = store.commits() - commits;

    let start = Instant::now();
    let leaves = store.campaign_leaves(CAMPAIGN).await.unwrap();
    let read = start.elapsed();
    assert_eq!(leaves.len(), BATCHES as usize);
    let progress = store.campaigns("inc-20261204-5e1f00").await.unwrap();
    assert_eq!(progress[0].1.answered, BATCHES);
    assert_eq!(progress[0].1.failed, u64::from(BATCHES * FAILED));
    drop(leaves);
    Arc::into_inner(store).expect("the lanes are done").close().await;
    Run { plan: planned, send, commits, read }
}

fn main() {
    let cases: Vec<u32> = std::env::var("IN_FLIGHT")
        .unwrap_or_else(|_| "4,1".into())
        .split(',')
        .map(|case| case.trim().parse().expect("IN_FLIGHT is a list of numbers"))
        .collect();
    let runs: usize = std::env::var("RUNS").map_or(1, |runs| runs.parse().expect("RUNS is a number"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "`cargo bench --bench campaign_store`: {BATCHES} batches of {RECIPIENTS}, {} KB of leaves and {FAILED} failures each, \
         WAL with `synchronous=FULL`; median of {runs} run(s)\n",
        LEAVES / 1_000
    );
    println!(
        "| batches in flight | plan | mark sending + answer, all batches | commits | writes a commit | batches a second | read all leaves |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for in_flight in cases {
        let mut measured: Vec<Run> = (0..runs).map(|_| runtime.block_on(run(in_flight))).collect();
        measured.sort_by_key(|run| run.send);
        let median = measured[measured.len() / 2];
        let writes = u64::from(BATCHES) * 2;
        println!(
            "| {in_flight} | {:.0} ms | {:.2} s | {} | {:.2} | {:.0} | {:.0} ms |",
            median.plan.as_secs_f64() * 1e3,
            median.send.as_secs_f64(),
            median.commits,
            writes as f64 / median.commits as f64,
            f64::from(BATCHES) / median.send.as_secs_f64(),
            median.read.as_secs_f64() * 1e3,
        );
    }
}
