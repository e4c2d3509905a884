//! The dashboard's incident page for an incident with 10,000 events (issue 15): the server-side
//! render (the page's context from the folded state and the log, then the tera templates), its
//! 50th and 95th percentiles and its size, next to a yardstick measured in the same run (folding
//! the same log, which every request for the page also pays), and the whole of what the page's
//! handler does before HTTP: read the log from SQLite, fold it, render.
//!
//! Then the incidents list with [`LISTED`] open incidents: the rows as `GET /incidents` makes
//! them (the runtime's cached states, read again only when an incident changed), beside what the
//! list did before (every open incident's whole log read and folded on every request), in the
//! same run.
//!
//! Run with `cargo bench --bench dashboard`. Targets: p95 render <= 10 ms, page <= 100 KB.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use phasegate::engine::{Directory, Event, EventKind, Incident};
use phasegate::render::Catalog;
use phasegate::render::web::Pages;
use phasegate::runtime::Runtime;
use phasegate::server::view::StateFilter;
use phasegate::server::web::incident::{View, context};
use phasegate::server::web::list::{rows, standing};
use phasegate::store::{Append, SqliteStore, Store};

const EVENTS: usize = 10_000;
/// Open incidents on the list, and notes in each one's log.
const LISTED: usize = 200;
const NOTES_EACH: usize = 50;
/// Renders measured; `DASHBOARD_RUNS` sets another number (callgrind runs a few).
const RUNS: usize = 200;

fn runs(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runbook_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks/retail-breach.yaml")).unwrap();
    let people: &[(&str, &[&str])] = &[
        ("dana.ito", &["incident-commander", "soc-analyst"]),
        ("lee.chen", &["ciso"]),
        ("tom.reyes", &["communications", "comms-lead"]),
    ];
    let directory = Directory::with(people);
    let pages = Pages::built_in().unwrap();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let (runbook, events) = tokio.block_on(async {
        let store = SqliteStore::open(&dir.path().join("phasegate.db")).await.unwrap();
        let runtime = Runtime::new(store, Catalog::built_in(), directory.clone());
        let inputs = BTreeMap::from([("severity".to_string(), serde_json::json!("critical"))]);
        let (id, _) = runtime.start(&runbook_text, "dana.ito", inputs, None).await.unwrap();
        let mut version = runtime.store().events(&id).await.unwrap().len() as u64;
        // Notes from several people, as a long incident's bridge keeps them.
        while (version as usize) < EVENTS {
            let batch: Vec<Event> = (0..500.min(EVENTS - version as usize))
                .map(|n| {
                    let who = people[(version as usize + n) % people.len()].0;
                    let text = format!(
                        "note {}: checked the EDR console for host group retail-breach-suspect <{}>",
                        version as usize + n,
                        who
                    );
                    Event::new(Utc::now(), who, EventKind::NoteAdded).because(Some(text))
                })
                .collect();
            version = runtime.store().append(Append::new(&id, version, &batch)).await.unwrap();
        }
        // The whole of the handler's work before HTTP: read, fold, render.
        let mut whole = Vec::new();
        for _ in 0..runs("DASHBOARD_WHOLE", 15) {
            let started = Instant::now();
            let loaded = runtime.load(&id).await.unwrap();
            let page = context(
                &loaded.runbook,
                &loaded.incident,
                &loaded.events,
                &directory,
                "dana.ito",
                &View { kind: None, page: 1 },
                Utc::now(),
            );
            let html = phasegate::server::web::render(
                &pages,
                "web/incident.html",
                Some(("dana.ito", "csrf")),
                None,
                "incidents",
                "t",
                page,
            )
            .unwrap();
            assert!(html.len() > 10_000);
            whole.push(started.elapsed());
        }
        if !whole.is_empty() {
            println!(
                "read from SQLite + fold + render, median of {}: {:.2} ms",
                whole.len(),
                ms(percentile(&mut whole, 0.5))
            );
        }
        let loaded = runtime.load(&id).await.unwrap();
        (loaded.runbook, loaded.events)
    });
    assert_eq!(events.len(), EVENTS);
    let incident = Incident::from_events(&events).unwrap();

    let total = runs("DASHBOARD_RUNS", RUNS);
    let views = [
        ("first page, all kinds", View { kind: None, page: 1 }),
        ("page 40 of `note_added`", View { kind: Some("note_added".into()), page: 40 }),
    ];
    let mut size = 0;
    let mut fold = Vec::with_capacity(total);
    let mut table = Vec::new();
    for (name, view) in &views {
        let mut render = Vec::with_capacity(total);
        let mut yardstick = Vec::with_capacity(total);
        for _ in 0..total {
            let started = Instant::now();
            let folded = Incident::from_events(&events).unwrap();
            fold.push(started.elapsed());
            assert_eq!(folded.version as usize, EVENTS);

            let started = Instant::now();
            let page = context(&runbook, &incident, &events, &directory, "dana.ito", view, Utc::now());
            let elapsed = started.elapsed();
            let data = page.clone();
            let started = Instant::now();
            let html = phasegate::server::web::render(
                &pages,
                "web/incident.html",
                Some(("dana.ito", "csrf")),
                None,
                "incidents",
                "Retail breach",
                page,
            )
            .unwrap();
            render.push(elapsed + started.elapsed());
            size = size.max(html.len());

            // The yardstick, right after: the same page's data as JSON text (serde_json), work of
            // the same kind and size that the machine's load slows alike.
            let started = Instant::now();
            let text = serde_json::to_string(&data).unwrap();
            yardstick.push(started.elapsed());
            assert!(text.len() > 1000);
        }
        let (p50, p95, p99) =
            (percentile(&mut render, 0.5), percentile(&mut render, 0.95), percentile(&mut render, 0.99));
        let (y50, y95) = (percentile(&mut yardstick, 0.5), percentile(&mut yardstick, 0.95));
        table.push(format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.3} ms | {:.1} | {:.1} |",
            ms(p50),
            ms(p95),
            ms(p99),
            ms(y50),
            p50.as_secs_f64() / y50.as_secs_f64(),
            p95.as_secs_f64() / y95.as_secs_f64()
        ));
    }
    println!(
        "| incident page, {EVENTS} events, {total} renders each | render p50 | render p95 | render p99 | yardstick p50 | p50 / yardstick p50 | p95 / yardstick p95 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in table {
        println!("{row}");
    }
    println!(
        "largest page: {:.1} KB; folding the 10,000 events, p50: {:.3} ms",
        size as f64 / 1024.0,
        ms(percentile(&mut fold, 0.5))
    );
    assert!(size <= 100 * 1024, "the page is {size} bytes, past 100 KB");
    list(&tokio, dir.path(), &runbook_text, &directory);
}

/// The incidents list with [`LISTED`] open incidents of [`NOTES_EACH`] notes each: the rows as
/// served (warm: the cached states; and the first request, which fills the cache) and, in the
/// same run, what the list did before: read and fold every open incident's whole log.
fn list(tokio: &tokio::runtime::Runtime, dir: &std::path::Path, runbook_text: &str, directory: &Directory) {
    let total = runs("DASHBOARD_LIST_RUNS", 20);
    tokio.block_on(async {
        let store = SqliteStore::open(&dir.join("list.db")).await.unwrap();
        let runtime = Runtime::new(store, Catalog::built_in(), directory.clone());
        for n in 0..LISTED {
            let inputs = BTreeMap::from([("severity".to_string(), serde_json::json!("high"))]);
            let (id, _) = runtime.start(runbook_text, "dana.ito", inputs, None).await.unwrap();
            let version = runtime.store().events(&id).await.unwrap().len() as u64;
            let notes: Vec<Event> = (0..NOTES_EACH)
                .map(|k| Event::new(Utc::now(), "lee.chen", EventKind::NoteAdded).because(Some(format!("note {n}/{k}"))))
                .collect();
            runtime.store().append(Append::new(&id, version, &notes)).await.unwrap();
        }
        // A runtime of its own, as a server just started has: nothing cached.
        let store = SqliteStore::open(&dir.join("list.db")).await.unwrap();
        let runtime = Runtime::new(store, Catalog::built_in(), directory.clone());
        let started = Instant::now();
        let first = rows(&runtime, StateFilter::Open, Utc::now()).await.unwrap();
        let cold = started.elapsed();
        assert_eq!(first.len(), LISTED);
        let (mut served, mut before) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for _ in 0..total {
            let started = Instant::now();
            let listed = rows(&runtime, StateFilter::Open, Utc::now()).await.unwrap();
            served.push(started.elapsed());
            assert_eq!(listed, first, "the cached states list the same");

            // Before: every open incident's log read and folded.
            let started = Instant::now();
            let summaries = runtime.store().incidents().await.unwrap();
            let mut folded = Vec::with_capacity(summaries.len());
            for summary in summaries.iter().filter(|summary| summary.closed_at.is_none()) {
                let loaded = runtime.load(&summary.id).await.unwrap();
                folded.push(standing(&loaded.runbook, &loaded.incident, Utc::now()));
            }
            before.push(started.elapsed());
            assert_eq!(folded.len(), LISTED);
        }
        let (served, before) = (percentile(&mut served, 0.5), percentile(&mut before, 0.5));
        println!(
            "incidents list, {LISTED} open incidents with {NOTES_EACH} notes each, median of {total}: {:.2} ms (first request, filling the cache: {:.2} ms); reading and folding every log as before: {:.2} ms ({:.1}x)",
            ms(served),
            ms(cold),
            ms(before),
            before.as_secs_f64() / served.as_secs_f64()
        );
    });
}
