//! Several `phasegate serve` replicas on one PostgreSQL, as real processes (the release binary):
//! `cargo bench --bench replicas` prints Markdown tables for BENCHMARKS.md. It needs a
//! PostgreSQL server (`PHASEGATE_BENCH_POSTGRES`, default the tests'
//! `postgres://postgres@127.0.0.1:5432/test`); each measure works in a schema of its own, dropped
//! at its end. `MEASURE=deliveries|takeover|horizon` runs one of the three (default all).
//!
//! (1) Webhook deliveries stored durably per second with 1 and with 3 replicas: `CLIENTS`
//! (default 64) closed-loop clients send `DELIVERIES` (default 6,000) GitHub-signed deliveries,
//! spread over the replicas, a new incident every 10 deliveries (each with one http step on a
//! loopback stub); a delivery counts once a replica answered 2xx, which it does only once the
//! delivery is committed. Then how long until every delivery is applied and every effect done.
//! `ROUNDS` (default 3) rounds alternate 1 and 3 replicas; medians.
//!
//! (2) Takeover after a replica dies, over `KILLS` (default 20) kills: three replicas with their
//! default `--interval` (2 s); one delivery starts an incident whose http step the stub receives
//! and never answers (the first time a key comes); the replica holding the effect's lease (its
//! pid is in the lease's holder) is SIGKILLed; the time from the kill until the effect is
//! recorded done by another replica (the stub answers a repeat at once), and until the stub saw
//! the repeat. The killed replica is started again before the next.
//!
//! (3) Throughput with the horizon held open: the load of (1) with 3 replicas for `WINDOW`
//! (default 10 min, as issue 16 asks; `WINDOW=60s` for a smoke run) once without and once while
//! another connection holds a REPEATABLE READ transaction open (its snapshot taken at the start,
//! `backend_xmin` checked set) for the whole window, each in a fresh schema: deliveries
//! acknowledged and applied per second, each minute's rate, and `n_dead_tup` and the size of
//! `outbox` and `inbox` before and after (the statistics are read after a 2 s pause, since
//! each backend sends its counts at most once a second).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster::{Deployment, Stub};
use sqlx::Connection;

mod cluster;
mod yardstick;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn window() -> Duration {
    std::env::var("WINDOW")
        .ok()
        .map(|value| humantime::parse_duration(&value).expect("WINDOW is a duration such as 10m or 60s"))
        .unwrap_or(Duration::from_secs(600))
}

fn immediately(_: u32) -> Duration {
    Duration::ZERO
}

/// The first request of a key is never answered (for an hour); a repeat at once.
fn first_hangs(count: u32) -> Duration {
    if count == 1 { Duration::from_secs(3600) } else { Duration::ZERO }
}

/// Waits until no delivery waits and no effect is pending.
async fn settled(deployment: &Deployment) {
    let mut connection = deployment.connect().await;
    loop {
        let waiting = cluster::number(&mut connection, "SELECT count(*) FROM inbox WHERE applied_at IS NULL").await;
        let pending = cluster::number(&mut connection, "SELECT count(*) FROM outbox WHERE done_at IS NULL").await;
        if waiting == 0 && pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (1): acknowledged and applied deliveries a second, with `replicas` replicas.
async fn deliveries_round(server: &str, replicas: usize) -> (f64, f64) {
    let (count, clients) = (setting("DELIVERIES", 6_000), setting("CLIENTS", 64));
    let stub = Stub::start(immediately).await;
    let deployment = Deployment::new(server, &stub).await;
    let running = deployment.replicas(replicas).await;
    let bases = running.iter().map(cluster::Replica::base).collect();
    let counters = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    cluster::storm(bases, clients, counters.clone(), 10, move |number| number >= count).await;
    let stored = yardstick::rate(counters.1.load(Ordering::Relaxed), start.elapsed());
    settled(&deployment).await;
    let applied = yardstick::rate(count, start.elapsed());
    drop(running);
    deployment.drop_schema(server).await;
    (stored, applied)
}

async fn deliveries(server: &str) {
    let rounds = setting("ROUNDS", 3);
    let mut rates: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (index, replicas) in [1, 3].into_iter().enumerate() {
            rates[index].push(deliveries_round(server, replicas).await);
        }
    }
    println!("\n| replicas | stored durably /s (median) | every round | applied, effects done /s (median) |");
    println!("| ---: | ---: | --- | ---: |");
    for (index, replicas) in [1, 3].into_iter().enumerate() {
        let stored: Vec<f64> = rates[index].iter().map(|rate| rate.0).collect();
        let applied: Vec<f64> = rates[index].iter().map(|rate| rate.1).collect();
        let each: Vec<String> = stored.iter().map(|rate| format!("{rate:.0}")).collect();
        println!(
            "| {replicas} | {:.0} | {} | {:.0} |",
            yardstick::median(stored),
            each.join(", "),
            yardstick::median(applied)
        );
    }
}

/// (2): seconds from each kill until the effect is done elsewhere, and until it is sent again.
async fn takeover(server: &str) {
    let kills = setting("KILLS", 20);
    let stub = Stub::start(first_hangs).await;
    let deployment = Deployment::new(server, &stub).await;
    let mut replicas = deployment.replicas(3).await;
    let mut connection = deployment.connect().await;
    let client = reqwest::Client::new();
    let (mut done, mut resent) = (Vec::new(), Vec::new());
    for kill in 0..kills {
        let bases: Vec<String> = replicas.iter().map(cluster::Replica::base).collect();
        cluster::deliver(&client, &bases, kill, kill).await;
        // The stub has the effect's first request: its holder is busy with it.
        let key = loop {
            let seen = stub.seen.lock().unwrap().iter().find(|(_, times)| times.len() == 1).map(|(key, _)| key.clone());
            if let Some(key) = seen {
                break key;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let holder: String = sqlx::query_scalar("SELECT holder FROM outbox WHERE done_at IS NULL")
            .fetch_one(&mut connection)
            .await
            .unwrap();
        let pid: u32 = holder.strip_prefix("pid").and_then(|rest| rest.split('-').next()?.parse().ok()).unwrap();
        let victim = replicas.iter_mut().find(|replica| replica.pid() == Some(pid)).expect("the holder is a replica");
        let killed = Instant::now();
        victim.kill();
        loop {
            let pending = cluster::number(&mut connection, "SELECT count(*) FROM outbox WHERE done_at IS NULL").await;
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done.push(killed.elapsed().as_secs_f64());
        resent.push(stub.seen.lock().unwrap()[&key][1].duration_since(killed).as_secs_f64());
        eprintln!("kill {}: done after {:.2} s", kill + 1, done[kill]);
        victim.start().await;
    }
    let worst = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
    let each: Vec<String> = done.iter().map(|seconds| format!("{seconds:.1}")).collect();
    println!("\n| after SIGKILL of the holder ({kills} kills) | median s | worst s |");
    println!("| --- | ---: | ---: |");
    println!("| sent again by another replica | {:.2} | {:.2} |", yardstick::median(resent.clone()), worst(&resent));
    println!("| recorded done by another replica | {:.2} | {:.2} |", yardstick::median(done.clone()), worst(&done));
    println!("\nEvery kill, seconds until done: {}", each.join(", "));
    drop(replicas);
    deployment.drop_schema(server).await;
}

/// The table statistics of `outbox` and `inbox`: dead rows, live rows, and size in 8 KiB pages.
async fn tables(deployment: &Deployment) -> String {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut connection = deployment.connect().await;
    let mut parts = Vec::new();
    for table in ["outbox", "inbox"] {
        let (dead, live): (i64, i64) = sqlx::query_as(
            "SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
        )
        .bind(&deployment.schema)
        .bind(table)
        .fetch_one(&mut connection)
        .await
        .unwrap();
        let pages = cluster::number(&mut connection, &format!("SELECT pg_relation_size('{table}') / 8192")).await;
        parts.push(format!("{table}: {dead} dead, {live} live, {pages} pages"));
    }
    parts.join("; ")
}

/// (3): one window of load on 3 replicas, with or without a transaction holding the horizon.
async fn horizon_window(server: &str, hold: bool) -> (f64, f64, Vec<usize>, String, String) {
    let (window, clients) = (window(), setting("CLIENTS", 64));
    let stub = Stub::start(immediately).await;
    let deployment = Deployment::new(server, &stub).await;
    let running = deployment.replicas(3).await;
    let mut holder = deployment.connect().await;
    if hold {
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ").execute(&mut holder).await.unwrap();
        let pid = cluster::number(&mut holder, "SELECT pg_backend_pid()::bigint").await;
        let mut look = deployment.connect().await;
        let pinned = cluster::number(
            &mut look,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND backend_xmin IS NOT NULL"),
        )
        .await;
        assert_eq!(pinned, 1, "the held transaction pins the horizon");
    }
    let before = tables(&deployment).await;
    let counters = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let acknowledged = Arc::clone(&counters.1);
    let start = Instant::now();
    let load = tokio::spawn(cluster::storm(
        running.iter().map(cluster::Replica::base).collect(),
        clients,
        counters,
        10,
        move |_| start.elapsed() >= window,
    ));
    let mut minutes = Vec::new();
    let mut last = 0;
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_secs(60).min(window)).await;
        let now = acknowledged.load(Ordering::Relaxed);
        minutes.push(now - last);
        last = now;
    }
    load.await.unwrap();
    let elapsed = start.elapsed();
    let mut look = deployment.connect().await;
    let applied = cluster::number(&mut look, "SELECT count(*) FROM inbox WHERE applied_at IS NOT NULL").await;
    let after = tables(&deployment).await;
    if hold {
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    }
    let _ = holder.close().await;
    drop(running);
    deployment.drop_schema(server).await;
    let stored = yardstick::rate(acknowledged.load(Ordering::Relaxed), elapsed);
    (stored, yardstick::rate(applied as usize, elapsed), minutes, before, after)
}

async fn horizon(server: &str) {
    let window = window();
    println!("\n| {window:?} of load, 3 replicas | stored /s | applied /s | each minute's deliveries |");
    println!("| --- | ---: | ---: | --- |");
    let mut stats = Vec::new();
    let mut rates = Vec::new();
    for hold in [false, true] {
        let (stored, applied, minutes, before, after) = horizon_window(server, hold).await;
        let what = if hold { "a REPEATABLE READ transaction held open" } else { "nothing held" };
        let minutes: Vec<String> = minutes.iter().map(usize::to_string).collect();
        println!("| {what} | {stored:.0} | {applied:.0} | {} |", minutes.join(", "));
        stats.push(format!("- {what}: before: {before}\n  after: {after}"));
        rates.push(stored);
    }
    println!("\nheld / not held: {:.2}\n\n{}", rates[1] / rates[0], stats.join("\n"));
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = std::env::var("PHASEGATE_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let measure = std::env::var("MEASURE").unwrap_or_else(|_| "all".to_string());
    runtime.block_on(async {
        let mut connection = sqlx::PgConnection::connect(&server).await.expect("PHASEGATE_BENCH_POSTGRES");
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let version = cluster::number(&mut connection, "SELECT current_setting('server_version_num')::bigint").await;
        println!("PostgreSQL {version}, load average at the start: {}", load.trim());
        if ["all", "deliveries"].contains(&measure.as_str()) {
            deliveries(&server).await;
        }
        if ["all", "takeover"].contains(&measure.as_str()) {
            takeover(&server).await;
        }
        if ["all", "horizon"].contains(&measure.as_str()) {
            horizon(&server).await;
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("\nload average at the end: {}", load.trim());
    });
}
