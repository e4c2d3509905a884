//! The dashboard's incident page for an incident with 10,000 events (issue 15): the whole of
//! what `GET /incidents/{id}` does before HTTP (the state from the runtime's cache, the page of
//! the timeline and the counts by type from the store, the page's context, the tera templates),
//! its 50th, 95th and 99th percentiles and its size, next to a yardstick measured right after
//! each request in the same run; and, in the same run, what the page did before (read the whole
//! log from SQLite, fold it, take the page from it, render).
//!
//! Each sample also notes whether a thread of the process lost its core to another process while
//! it ran (`nonvoluntary_ctxt_switches` in `/proc/self/task/*/status`, read outside the timed
//! part): the percentiles of the samples that kept their core say what the page costs, apart
//! from the machine's load.
//!
//! Then the incidents list with [`LISTED`] open incidents: the rows as `GET /incidents` makes
//! them (the runtime's cached states, read again only when an incident changed), beside what the
//! list did before (every open incident's whole log read and folded on every request), in the
//! same run.
//!
//! Run with `cargo bench --bench dashboard`. Targets: p95 of the whole request <= 10 ms, page
//! <= 100 KB (asserted).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use phasegate::engine::{Directory, Event, EventKind};
use phasegate::render::Catalog;
use phasegate::render::web::Pages;
use phasegate::runtime::Runtime;
use phasegate::server::view::StateFilter;
use phasegate::server::web::incident::{TIMELINE_PAGE, Timeline, View, context, read};
use phasegate::server::web::list::{rows, standing};
use phasegate::store::{Append, SqliteStore, Store};

const EVENTS: usize = 10_000;
/// Open incidents on the list, and notes in each one's log.
const LISTED: usize = 200;
const NOTES_EACH: usize = 50;
/// Requests measured for each view; `DASHBOARD_RUNS` sets another number (callgrind runs a few).
const RUNS: usize = 200;

fn runs(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// How many times the scheduler has taken a core from a thread of this process (involuntary
/// context switches, summed over its threads; threads that ended are not counted, and none does
/// while a sample runs).
fn preempted() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|count| count.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Samples of one measure, each with whether the process lost a core while it ran.
#[derive(Default)]
struct Samples {
    all: Vec<Duration>,
    kept_the_core: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, elapsed: Duration, preempted: bool) {
        self.all.push(elapsed);
        if !preempted {
            self.kept_the_core.push(elapsed);
        }
    }

    /// `p50 / p95 / p99` of every sample, in milliseconds.
    fn percentiles(&mut self) -> String {
        let all = &mut self.all;
        let (p50, p95, p99) = (percentile(all, 0.5), percentile(all, 0.95), percentile(all, 0.99));
        format!("{:.2} / {:.2} / {:.2} ms", ms(p50), ms(p95), ms(p99))
    }
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
    let render = |page| {
        phasegate::server::web::render(
            &pages,
            "web/incident.html",
            Some(("dana.ito", "csrf")),
            None,
            "incidents",
            "t",
            page,
        )
        .unwrap()
    };
    tokio.block_on(async {
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
        // A runtime of its own, as a server just started has: nothing cached. Its first request
        // folds the log once and counts it by type.
        let store = SqliteStore::open(&dir.path().join("phasegate.db")).await.unwrap();
        let runtime = Runtime::new(store, Catalog::built_in(), directory.clone());
        let first = View { kind: None, page: 1 };
        let started = Instant::now();
        let (page, _) = read(&runtime, &id, "dana.ito", &first, Utc::now()).await.unwrap();
        let cold = started.elapsed() + {
            let started = Instant::now();
            render(page);
            started.elapsed()
        };

        let total = runs("DASHBOARD_RUNS", RUNS);
        let before_runs = runs("DASHBOARD_WHOLE", 15);
        // `DASHBOARD_YARDSTICK=0`: the requests alone (to count their allocations under valgrind).
        let with_yardstick = runs("DASHBOARD_YARDSTICK", 1) != 0;
        let views = [
            ("first page, all kinds", View { kind: None, page: 1 }),
            ("page 40 of `note_added`", View { kind: Some("note_added".into()), page: 40 }),
        ];
        let mut size = 0;
        let mut table = Vec::new();
        for (name, view) in &views {
            let (mut request, mut yardstick, mut before) = (Samples::default(), Samples::default(), Vec::new());
            let mut html = String::new();
            for run in 0..total {
                let now = Utc::now();
                let switches = preempted();
                let started = Instant::now();
                let (page, _) = read(&runtime, &id, "dana.ito", view, now).await.unwrap();
                let mut elapsed = started.elapsed();
                // Kept for the yardstick, outside the timed part.
                let data = with_yardstick.then(|| page.clone());
                let started = Instant::now();
                html = render(page);
                elapsed += started.elapsed();
                let after = preempted();
                request.push(elapsed, after != switches);
                size = size.max(html.len());

                // The yardstick, right after: a read of the incident's summary from the store
                // (a trip to SQLite's thread, as the page's reads are) and the page's data as
                // JSON text (serde_json): work of the same kinds that the machine's load slows alike.
                if let Some(data) = data {
                    let started = Instant::now();
                    let summary = runtime.store().incident(&id).await.unwrap().unwrap();
                    let text = serde_json::to_string(&data).unwrap();
                    let elapsed = started.elapsed();
                    yardstick.push(elapsed, preempted() != after);
                    assert!(text.len() > 1000 && summary.version as usize == EVENTS);
                }

                // Before, a few times: the whole log read from SQLite and folded on every
                // request, the page taken from it; the same page comes out.
                if run < before_runs {
                    let started = Instant::now();
                    let loaded = runtime.load(&id).await.unwrap();
                    let timeline = page_of(&loaded.events, view);
                    let page = context(
                        &loaded.runbook,
                        &loaded.incident,
                        &timeline,
                        runtime.directory(),
                        "dana.ito",
                        view,
                        &Default::default(),
                        now,
                    );
                    let old = render(page);
                    before.push(started.elapsed());
                    assert!(old == html, "the page as it was made before, byte for byte");
                }
            }
            let kept = request.kept_the_core.len();
            table.push(format!(
                "| {name} | {} | {:.2} ms ({kept} of {total} kept their core) | {} | {:.2} ms |",
                request.percentiles(),
                ms(percentile(&mut request.kept_the_core, 0.95)),
                yardstick.percentiles(),
                ms(percentile(&mut before, 0.5)),
            ));
            assert!(html.contains("Page ") && html.contains(" of 10000 events"));
        }
        println!(
            "| incident page, {EVENTS} events, {total} requests each | request p50 / p95 / p99 | p95 of the requests that kept their core | yardstick p50 / p95 / p99 | before (read + fold + render), median of {before_runs} |"
        );
        println!("| --- | --- | --- | --- | --- |");
        for row in table {
            println!("{row}");
        }
        println!(
            "largest page: {:.1} KB; the first request of a server just started (folds the log, counts it): {:.2} ms",
            size as f64 / 1024.0,
            ms(cold)
        );
        assert!(size <= 100 * 1024, "the page is {size} bytes, past 100 KB");
    });
    if runs("DASHBOARD_LIST_RUNS", 20) > 0 {
        list(&tokio, dir.path(), &runbook_text, &directory);
    }
}

/// The page of the timeline `view` asks for, taken from the whole log in memory: what the page
/// did before the store gave it a page at a time.
fn page_of(events: &[Event], view: &View) -> Timeline {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for event in events {
        *counts.entry(event.kind.name().to_string()).or_default() += 1;
    }
    let shown: Vec<(u64, Event)> = events
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, event)| view.kind.as_deref().is_none_or(|kind| event.kind.name() == kind))
        .map(|(index, event)| (index as u64 + 1, event.clone()))
        .collect();
    let pages = shown.len().div_ceil(TIMELINE_PAGE).max(1);
    let page = view.page.min(pages);
    let version = events.len() as u64;
    let events = shown.into_iter().skip((page - 1) * TIMELINE_PAGE).take(TIMELINE_PAGE).collect();
    Timeline { version, counts: counts.into_iter().collect(), page, events }
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
