//! Several `phasegate serve` replicas on one PostgreSQL, as real processes (the release binary):
//! `cargo bench --bench replicas` prints Markdown tables for BENCHMARKS.md. It needs a
//! PostgreSQL server (`PHASEGATE_BENCH_POSTGRES`, default the tests'
//! `postgres://postgres@127.0.0.1:5432/test`); each measure works in a schema of its own, dropped
//! at its end. `MEASURE=deliveries|takeover|horizon` runs one of the three (default all; `passes`, (4) below, only when asked).
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
//! acknowledged and applied per second, each minute's count and dead rows and load average, and
//! `n_dead_tup` and the size of `outbox`, `inbox`, `leases` and `incidents` before and after (the
//! statistics are read after a 2 s pause, since each backend sends its counts at most once a
//! second). With `PHASEGATE_BENCH_POSTGRES_APART` (a second database on the same server) the two
//! windows run at once, the one without the held transaction in that database, so that the
//! machine's load (other work on it varies over minutes) weighs on both alike.
//!
//! (4) `MEASURE=passes`: what one replica's passes cost while nothing happens, over the open
//! incidents it holds: `INCIDENTS` (default 2,000) incidents started, one delivery each, on one
//! replica, every effect done; then for `IDLE` (default 30 s) nothing arrives, and the bench reads
//! how often `events` was read (index and sequential scans, `pg_stat_user_tables`), the
//! transactions committed in the database (`pg_stat_database`: a statement outside a
//! transaction is one; the bench's own few are counted too, so give it a database of its own)
//! and the replica's CPU time (`/proc/PID/stat`). `PHASEGATE_BENCH_BIN` runs another build's
//! `phasegate` (the one before a change) instead of this one's.

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

/// The table statistics of the deployment's tables that rows are rewritten in: dead rows, live
/// rows and size in 8 KiB pages of each.
async fn tables(deployment: &Deployment) -> String {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut connection = deployment.connect().await;
    let mut parts = Vec::new();
    for table in ["outbox", "inbox", "leases", "incidents"] {
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

/// Dead rows in all the deployment's tables now (as last reported by the backends).
async fn dead_rows(connection: &mut sqlx::PgConnection, schema: &str) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = $1")
        .bind(schema)
        .fetch_one(connection)
        .await
        .unwrap()
}

/// The one-minute load average now.
fn load_now() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').next().unwrap_or("?").to_string()
}

/// One window of (3): what was measured.
struct Window {
    stored: f64,
    applied: f64,
    /// Each minute: deliveries acknowledged, dead rows at its end, and the load average then.
    minutes: Vec<(usize, i64, String)>,
    before: String,
    after: String,
}

/// (3): one window of load on 3 replicas of a deployment on `server`, with or without a
/// transaction holding the horizon of `server`'s database open.
async fn horizon_window(server: &str, hold: bool) -> Window {
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
    let mut look = deployment.connect().await;
    let mut minutes = Vec::new();
    let mut last = 0;
    let mut minute = 1;
    // One sample a minute of the window (its last part minute too), not more while the last
    // deliveries sent are still being answered after its end.
    let samples = u32::try_from(window.as_secs().div_ceil(60)).unwrap_or(u32::MAX).max(1);
    while minute <= samples && !load.is_finished() {
        // On the minute from the start, so that two windows run together sample together.
        let next = (start + Duration::from_secs(60) * minute).min(start + window + Duration::from_millis(100));
        tokio::time::sleep_until(next.into()).await;
        minute += 1;
        let now = acknowledged.load(Ordering::Relaxed);
        minutes.push((now - last, dead_rows(&mut look, &deployment.schema).await, load_now()));
        last = now;
    }
    load.await.unwrap();
    let elapsed = start.elapsed();
    let applied = cluster::number(&mut look, "SELECT count(*) FROM inbox WHERE applied_at IS NOT NULL").await;
    let after = tables(&deployment).await;
    if hold {
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    }
    let _ = holder.close().await;
    drop(running);
    eprintln!("window (held: {hold}): {minutes:?}\nbefore: {before}\nafter: {after}");
    deployment.drop_schema(server).await;
    let stored = yardstick::rate(acknowledged.load(Ordering::Relaxed), elapsed);
    Window { stored, applied: yardstick::rate(applied as usize, elapsed), minutes, before, after }
}

/// (3): the two windows, at once when `PHASEGATE_BENCH_POSTGRES_APART` names a second database
/// on the same server (the window without the held transaction runs there, since a held snapshot
/// keeps back the horizon of its own database only), so that both see the same load from the
/// rest of the machine minute by minute; else one after the other.
async fn horizon(server: &str) {
    let window = window();
    let apart = std::env::var("PHASEGATE_BENCH_POSTGRES_APART").ok();
    let (free, held) = match &apart {
        Some(apart) => tokio::join!(horizon_window(apart, false), horizon_window(server, true)),
        None => {
            let free = horizon_window(server, false).await;
            (free, horizon_window(server, true).await)
        }
    };
    let together = if apart.is_some() { "at once, in two databases" } else { "one after the other" };
    println!("\n{window:?} of load on 3 replicas each, the two windows {together}:\n");
    println!("| window | stored /s | applied /s |");
    println!("| --- | ---: | ---: |");
    for (what, measured) in [("nothing held", &free), ("a REPEATABLE READ transaction held open", &held)] {
        println!("| {what} | {:.0} | {:.0} |", measured.stored, measured.applied);
    }
    println!(
        "\n| minute | deliveries, nothing held | held | ratio | dead rows, nothing held | held | load average (held's) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (index, (free, held)) in free.minutes.iter().zip(&held.minutes).enumerate() {
        let ratio = held.0 as f64 / free.0.max(1) as f64;
        println!("| {} | {} | {} | {ratio:.2} | {} | {} | {} |", index + 1, free.0, held.0, free.1, held.1, held.2);
    }
    println!("\nheld / not held: {:.2}", held.stored / free.stored);
    for (what, measured) in [("nothing held", &free), ("held", &held)] {
        println!("- {what}: before: {}\n  after: {}", measured.before, measured.after);
    }
}

/// The CPU time `pid` has used, user and system, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the replica's /proc entry");
    // The fields after the command's name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..].split(' ').collect();
    let ticks = |index: usize| fields[index].parse::<f64>().expect("clock ticks");
    (ticks(11) + ticks(12)) / 100.0
}

/// Reads of `events` (index and sequential scans) and the transactions committed in the database
/// so far, once the backends have sent their counts (at most once a second).
async fn reads_and_commits(connection: &mut sqlx::PgConnection, schema: &str) -> (i64, i64) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reads: i64 = sqlx::query_scalar(
        "SELECT coalesce(idx_scan, 0) + seq_scan FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'events'",
    )
    .bind(schema)
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    let commits =
        cluster::number(connection, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            .await;
    (reads, commits)
}

/// (4): the cost of one replica's passes over `INCIDENTS` open incidents while nothing happens.
async fn passes(server: &str) {
    let (incidents, idle) = (setting("INCIDENTS", 2_000), setting("IDLE", 30));
    let stub = Stub::start(immediately).await;
    let deployment = Deployment::new(server, &stub).await;
    let running = deployment.replicas(1).await;
    let counters = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    cluster::storm(vec![running[0].base()], setting("CLIENTS", 64), counters, 1, move |number| number >= incidents)
        .await;
    settled(&deployment).await;
    eprintln!("{incidents} incidents started and their effects done in {:.1} s", started.elapsed().as_secs_f64());
    let mut connection = deployment.connect().await;
    let open = cluster::number(&mut connection, "SELECT count(*) FROM incidents WHERE closed_at IS NULL").await;
    // One pass at least after the last effect, so that the window holds idle passes only.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = running[0].pid().expect("the replica runs");
    let (reads, commits) = reads_and_commits(&mut connection, &deployment.schema).await;
    let cpu = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let cpu = cpu_seconds(pid) - cpu;
    let (reads_after, commits_after) = reads_and_commits(&mut connection, &deployment.schema).await;
    // The reads and commits are counted over the two-second wait for the statistics too.
    let window = idle as f64 + 2.0;
    println!(
        "
| open incidents | idle window | reads of `events` /s | commits /s | replica CPU s /s |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {open} | {window:.0} s | {:.1} | {:.1} | {:.3} |",
        (reads_after - reads) as f64 / window,
        (commits_after - commits) as f64 / window,
        cpu / idle as f64
    );
    drop(running);
    deployment.drop_schema(server).await;
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
        if measure == "passes" {
            passes(&server).await;
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("\nload average at the end: {}", load.trim());
    });
}
