//! A 30-simulated-day drill: the reference drill (`drills/retail-breach.yaml`) with its close-out
//! moved twenty days later, so the incident stays open for 30 simulated days of hourly, four-hourly
//! and twelve-hourly status updates, every one rendered and captured, its log signed every
//! simulated day. Timed through the library, as `phasegate drill` runs it, each run in a fresh
//! database; beside it, the yardstick: the same events appended to a fresh drill database one
//! append each, which is what storing the log costs without deciding, rendering or signing.
//!
//! Run with `cargo bench --bench drill` (`RUNS=N` for more rounds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use phasegate::render::Catalog;
use phasegate::store::{Append, SqliteStore, Store};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Context switches (voluntary and not) of the threads of this process alive now: a count that
/// does not depend on the machine's load as much as time does. The store's threads live from its
/// opening to its closing, so a difference taken inside that span counts theirs.
fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let scenario_text = std::fs::read_to_string(format!("{root}/drills/retail-breach.yaml")).unwrap();
    // Close-out twenty days later: the incident stays open for about thirty simulated days.
    let scenario_text = scenario_text
        .replace("after: 7d\n", "after: 26d\n")
        .replace("after: 8d\n", "after: 27d\n")
        .replace("after: 8d 2h\n", "after: 27d 2h\n")
        .replace("runbook: ../runbooks/retail-breach.yaml\n", "runbook: ../runbooks/retail-breach.yaml\nuntil: 40d\n")
        .replace("    by: 14d\n", "    by: 31d\n")
        .replace("name: retail-breach\n", "name: retail-breach-30-days\n");
    let scenario = phasegate::drill::parse(&scenario_text).unwrap();
    let runbook_text = std::fs::read_to_string(format!("{root}/runbooks/retail-breach.yaml")).unwrap();
    let catalog = Arc::new(Catalog::with_dir(std::path::Path::new(&format!("{root}/templates"))).unwrap());
    let runbook = phasegate::runbook::parse(&runbook_text, catalog.as_ref()).unwrap();
    let runs: usize = std::env::var("RUNS").ok().and_then(|runs| runs.parse().ok()).unwrap_or(5);

    let tokio = tokio::runtime::Runtime::new().unwrap();
    let (mut drills, mut yardsticks, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut shape = (0, 0, chrono::Duration::zero());
    let mut switches = (Vec::new(), Vec::new());
    let mut commits = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let (drill, yardstick) = tokio.block_on(async {
            let store = SqliteStore::open_for_drill(dir.path().join("drill.db")).await.unwrap();
            let (started, switched) = (Instant::now(), context_switches());
            let campaigns = phasegate::runtime::campaign::Settings {
                dir: dir.path().join("campaigns"),
                suppression: None,
                lists_from: Some(std::path::Path::new(root).join("drills")),
                test_recipients: Vec::new(),
                ..phasegate::runtime::campaign::Settings::default()
            };
            let catalog = Arc::clone(&catalog);
            let finished =
                phasegate::runtime::drill::run(&scenario, &runbook, &runbook_text, catalog, store, campaigns, |_| {})
                    .await
                    .unwrap();
            let drill = started.elapsed();
            switches.0.push(context_switches() - switched);
            assert!(finished.passed(), "the drill did not pass: {:?}", finished.verdicts);
            shape = (finished.events.len(), finished.captured.len(), finished.ended_at - scenario.start_at);
            let events = finished.events.clone();
            commits.push(finished.runtime.store().commits());
            finished.runtime.into_store().close().await;

            let store = SqliteStore::open_for_drill(dir.path().join("yardstick.db")).await.unwrap();
            let (started, switched) = (Instant::now(), context_switches());
            for (version, event) in events.iter().enumerate() {
                store
                    .append(Append::new(&finished.incident, version as u64, std::slice::from_ref(event)))
                    .await
                    .unwrap();
            }
            let yardstick = started.elapsed();
            switches.1.push(context_switches() - switched);
            store.close().await;
            (drill, yardstick)
        });
        ratios.push(drill.as_secs_f64() / yardstick.as_secs_f64());
        drills.push(drill);
        yardsticks.push(yardstick);
    }
    ratios.sort_by(f64::total_cmp);
    let (events, messages, simulated) = shape;
    let drill = median(drills);
    let yardstick = median(yardsticks);
    println!(
        "| measure ({} simulated days, {events} events, {messages} messages captured; median of {runs}) | time | ratio to the yardstick |",
        simulated.num_days()
    );
    println!("| --- | ---: | ---: |");
    println!(
        "| the drill, start to close (library, fresh database) | {:.0} ms | {:.2} |",
        drill.as_secs_f64() * 1000.0,
        ratios[ratios.len() / 2]
    );
    println!(
        "| yardstick: the same events appended one by one to a fresh drill database | {:.0} ms | 1.00 |",
        yardstick.as_secs_f64() * 1000.0
    );
    let middle = |mut counts: Vec<u64>| {
        counts.sort();
        counts[counts.len() / 2]
    };
    println!(
        "\ncontext switches (median): the drill {}, the yardstick {}; the drill's store committed {} transactions",
        middle(switches.0),
        middle(switches.1),
        middle(commits)
    );
    println!(
        "{:.0} simulated days per second of wall time",
        simulated.num_seconds() as f64 / 86_400.0 / drill.as_secs_f64()
    );
}
