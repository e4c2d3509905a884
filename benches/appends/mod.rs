//! The appends that `benches/store.rs` (SQLite) and `benches/postgres.rs` time, written once
//! against the `Store` trait: (b) one incident appending one event at a time, with or without an
//! effect each, and (c) a hundred incidents appending at once. Included with `mod appends;`
//! beside `mod yardstick;`.

use std::sync::Arc;
use std::time::Instant;

use phasegate::engine::{Effect, EffectKind, Event, EventKind};
use phasegate::store::{Append, PostgresStore, SqliteStore, Store};

use super::yardstick::rate;

/// Appends of one incident in (b) in each round.
pub const SEQUENTIAL_APPENDS: usize = 40;
/// Incidents appending at once in (c), and the appends each makes in each round.
pub const INCIDENTS: usize = 100;
pub const APPENDS_EACH: usize = 3;

/// A store that counts its commits.
pub trait Commits: Store + Send + Sync + 'static {
    fn commits(&self) -> u64;
}

impl Commits for SqliteStore {
    fn commits(&self) -> u64 {
        SqliteStore::commits(self)
    }
}

impl Commits for PostgresStore {
    fn commits(&self) -> u64 {
        PostgresStore::commits(self)
    }
}

pub fn started(incident: &str) -> Event {
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
pub fn note(number: usize) -> Event {
    Event::new(chrono::Utc::now(), "dana", EventKind::NoteAdded)
        .because(Some(format!("note {number}: store tills trade without MFA while the IdP is quarantined")))
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

/// `store` with incidents `PREFIX-0` to `PREFIX-(incidents - 1)` started (each at version 1).
pub async fn started_in<S: Commits>(store: S, prefix: &str, incidents: usize) -> Arc<S> {
    for number in 0..incidents {
        let incident = format!("{prefix}-{number}");
        store.append(Append::new(&incident, 0, &[started(&incident)])).await.unwrap();
    }
    Arc::new(store)
}

/// (b) `incident`, one event per append, each waiting for the last; with `effect`, each append
/// also queues an effect, as a step's start does (the store's transaction path). Gives the new
/// version back.
pub async fn sequential_appends<S: Commits>(
    store: Arc<S>,
    incident: String,
    mut version: u64,
    effect: bool,
) -> (f64, u64) {
    let start = Instant::now();
    for number in 0..SEQUENTIAL_APPENDS {
        let effects: Vec<Effect> =
            effect.then(|| notify(&format!("{incident}/status/{version}"))).into_iter().collect();
        version = store.append(Append::new(&incident, version, &[note(number)]).effects(&effects)).await.unwrap();
    }
    (rate(SEQUENTIAL_APPENDS, start.elapsed()), version)
}

/// (c) `PREFIX-0` to `PREFIX-99`, each a task appending one event at a time. Also gives how many
/// appends each commit carried on average, and the new versions.
pub async fn concurrent_appends<S: Commits>(store: Arc<S>, prefix: String, versions: Vec<u64>) -> (f64, f64, Vec<u64>) {
    let commits_before = store.commits();
    let start = Instant::now();
    let tasks: Vec<_> = versions
        .into_iter()
        .enumerate()
        .map(|(number, mut version)| {
            let store = Arc::clone(&store);
            let incident = format!("{prefix}-{number}");
            tokio::spawn(async move {
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

/// A yardstick: its name in the table, and a task that measures its rate once.
pub type Yardstick<'a> = (String, Box<dyn Fn() -> tokio::task::JoinHandle<f64> + 'a>);

/// Rounds of the measures (`ROUNDS`, 61 by default), the order turning each round so that none
/// always follows the same one: the `yardsticks`, of which the first is (a); (b) and (b') on
/// `one`'s incident `ONE-0`; (c) on `many`'s `MANY-0` to `MANY-99`. Each round gives the rates
/// (yardsticks first, then (b), (b'), (c)), their ratios to (a) taken within the round, and how
/// many appends a commit carried in (c). `VERBOSE=1` prints every round. `ONLY=b` (or `a`, `b'`,
/// `c`) runs that measure alone, the others left at 0, to count what it costs (instructions,
/// system calls) without the rest.
pub async fn rounds<S: Commits>(
    yardsticks: &[Yardstick<'_>],
    (one, one_prefix): (Arc<S>, &str),
    (many, many_prefix): (Arc<S>, &str),
) -> Vec<Vec<f64>> {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|value| value.parse().ok()).unwrap_or(61);
    let (mut one_version, mut many_versions) = (1, vec![1; INCIDENTS]);
    let measures = yardsticks.len() + 3;
    let only = std::env::var("ONLY").ok();
    let named = |measure: usize| match measure.checked_sub(yardsticks.len()) {
        None if measure == 0 => "a",
        None => "",
        Some(0) => "b",
        Some(1) => "b'",
        Some(_) => "c",
    };
    let mut measured = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut rates = vec![0.0; measures];
        let mut per_commit = 0.0;
        for measure in (0..measures).map(|step| (round + step) % measures) {
            if only.as_deref().is_some_and(|only| only != named(measure)) {
                continue;
            }
            let kind = measure.checked_sub(yardsticks.len());
            rates[measure] = match kind {
                None => yardsticks[measure].1().await.unwrap(),
                Some(0 | 1) => {
                    let incident = format!("{one_prefix}-0");
                    let task =
                        tokio::spawn(sequential_appends(Arc::clone(&one), incident, one_version, kind == Some(1)));
                    let (rate, version) = task.await.unwrap();
                    one_version = version;
                    rate
                }
                Some(_) => {
                    let versions = std::mem::take(&mut many_versions);
                    let task = tokio::spawn(concurrent_appends(Arc::clone(&many), many_prefix.to_string(), versions));
                    let rate;
                    (rate, per_commit, many_versions) = task.await.unwrap();
                    rate
                }
            };
        }
        if std::env::var_os("VERBOSE").is_some() {
            let shown: Vec<String> = rates.iter().map(|rate| format!("{rate:.0}/s")).collect();
            eprintln!("round {round}: {}, {per_commit:.1} appends a commit", shown.join(" "));
        }
        let ratios: Vec<f64> = rates.iter().map(|rate| rate / rates[0]).collect();
        measured.push(rates.into_iter().chain(ratios).chain([per_commit]).collect());
    }
    measured
}

/// The rounds' medians as a Markdown table under `title`.
pub fn print_table(title: &str, yardsticks: &[Yardstick<'_>], rounds: &[Vec<f64>]) {
    let column = |index: usize| super::yardstick::median(rounds.iter().map(|round| round[index]).collect());
    let measures = yardsticks.len() + 3;
    let names = yardsticks.iter().map(|(name, _)| name.clone()).chain([
        format!("(b) store, 1 incident, sequential appends of one event ({SEQUENTIAL_APPENDS} a round)"),
        "(b') the same, each append also queuing an effect".to_string(),
        format!("(c) store, {INCIDENTS} incidents at once, {APPENDS_EACH} sequential appends each a round"),
    ]);
    println!("{title}: medians of {} rounds\n", rounds.len());
    println!("| measure | per second | ratio to (a) |");
    println!("| --- | ---: | ---: |");
    for (index, name) in names.enumerate() {
        println!("| {name} | {:.0} | {:.2} |", column(index), column(measures + index));
    }
    println!("\nIn (c) a commit carried {:.1} appends (median of the rounds' averages).", column(2 * measures));
}
