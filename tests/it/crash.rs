//! Crashes at any instant: `phasegate run --watch` is killed with SIGKILL again and again while it
//! carries out http steps against a slow, sometimes failing stub, and a person marks manual steps
//! done in between. Afterwards every step's effect happened exactly once per idempotency key,
//! every incident's log is gap-free and folds, and every command that was acknowledged is in the
//! log (design properties 1 and 2).
//!
//! The stub behaves like a server that honours `Idempotency-Key`: the effect of a key happens the
//! first time a delivery of it succeeds, and a later delivery of the same key (a retry after a
//! crash lost the answer) answers without doing it again. It answers slowly, so that kills land
//! mid-request, and fails the first delivery of some keys with a 500 to force retries. Randomness
//! comes from a fixed seed, so a failure names the seed and the kill schedule reproduces.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use phasegate::engine::{EventKind, Incident};
use phasegate::store::{SqliteStore, Store};
use serde_json::{Value, json};

use crate::support::{Cli, Received, Reply, Stub};

const SEED: u64 = 0x5eed_c4a5_11ed;
const INCIDENTS: usize = 3;
const MAX_KILLS: usize = 200;
const MAX_TIME: Duration = Duration::from_secs(120);

/// Three phases of http steps with retries, and manual steps between them.
const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: crash-drill
title: Crash drill
roles:
  responder: {}
phases:
  - id: contain
    steps:
      - id: isolate
        timeout: 10s
        retry: { attempts: 10, backoff: 1s, max_backoff: 1s }
        http: { method: POST, url: "STUB/edr/isolate", body: { incident: "${ incident.id }" } }
      - id: block
        timeout: 10s
        retry: { attempts: 10, backoff: 1s, max_backoff: 1s }
        http: { method: POST, url: "STUB/firewall/block" }
      - id: confirm
        manual: { instructions: Confirm the hosts are isolated, assignee: responder }
      - id: rotate
        timeout: 10s
        retry: { attempts: 10, backoff: 1s, max_backoff: 1s }
        http: { method: POST, url: "STUB/vault/rotate" }
  - id: restore
    needs: [contain]
    steps:
      - id: deploy
        timeout: 10s
        retry: { attempts: 10, backoff: 1s, max_backoff: 1s }
        http: { method: POST, url: "STUB/deploy/run" }
      - id: smoke-test
        manual: { instructions: Run the smoke test, assignee: responder }
      - id: reset
        timeout: 10s
        retry: { attempts: 10, backoff: 1s, max_backoff: 1s }
        http: { method: PUT, url: "STUB/idp/reset" }
  - id: recover
    needs: [restore]
    steps:
      - id: reinstate
        timeout: 10s
        retry: { attempts: 10, backoff: 1s, max_backoff: 1s }
        http: { method: PUT, url: "STUB/idp/policy" }
      - id: announce
        timeout: 10s
        retry: { attempts: 10, backoff: 1s, max_backoff: 1s }
        http: { method: POST, url: "STUB/status/announce" }
"#;

const HTTP_STEPS: &[&str] = &[
    "contain/isolate",
    "contain/block",
    "contain/rotate",
    "restore/deploy",
    "restore/reset",
    "recover/reinstate",
    "recover/announce",
];
const PHASES: &[&str] = &["contain", "restore", "recover"];

/// A small linear congruential generator: enough randomness, and the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// What the idempotent stub saw and did.
#[derive(Default)]
struct Ledger {
    random: Option<Lcg>,
    /// Every delivery of every key, counted.
    deliveries: BTreeMap<String, u32>,
    /// When each key was last delivered.
    last_delivery: BTreeMap<String, DateTime<Utc>>,
    /// The keys whose effect happened, each once, in the order they happened.
    effects: Vec<String>,
    /// Requests that came without a key.
    unkeyed: Vec<String>,
}

fn answer(ledger: &Mutex<Ledger>, request: &Received) -> Reply {
    let mut ledger = ledger.lock().unwrap();
    let delay = Duration::from_millis(ledger.random.get_or_insert(Lcg(SEED ^ 0xa11)).between(50, 150));
    let Some(key) = request.header("idempotency-key").map(str::to_string) else {
        ledger.unkeyed.push(format!("{} {}", request.method, request.path));
        return Reply::json(400, json!({ "error": "Idempotency-Key required" })).after(delay);
    };
    let delivery = {
        let count = ledger.deliveries.entry(key.clone()).or_default();
        *count += 1;
        *count
    };
    ledger.last_delivery.insert(key.clone(), Utc::now());
    // Every third key (by its bytes) fails its first delivery, before its effect happens.
    let unlucky = key.bytes().map(u64::from).sum::<u64>() % 3 == 0;
    if unlucky && delivery == 1 {
        return Reply::json(500, json!({ "error": "try again" })).after(delay);
    }
    if !ledger.effects.contains(&key) {
        ledger.effects.push(key.clone());
    }
    Reply::json(200, json!({ "done": key, "delivery": delivery })).after(delay)
}

/// The working directory, with the configuration, the runbook and the database.
struct Drill {
    dir: tempfile::TempDir,
}

impl Drill {
    fn cli(&self, args: &[&str]) -> Cli {
        Cli::new().current_dir(self.dir.path()).args(args).args([
            "--config".as_ref(),
            self.dir.path().join("phasegate.yaml").as_os_str(),
            "--db".as_ref(),
            self.dir.path().join("phasegate.db").as_os_str(),
        ])
    }

    fn watcher(&self) -> Watcher {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("watch.log")).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_phasegate"))
            .current_dir(self.dir.path())
            .args(["run", "--watch", "--interval", "100ms", "--config", "phasegate.yaml", "--db", "phasegate.db"])
            .env_remove("PHASEGATE_TEMPLATES")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Watcher)
            .expect("the phasegate binary starts")
    }

    fn watch_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("watch.log")).unwrap_or_default()
    }

    fn status(&self, incident: &str) -> Value {
        let mut cli = self.cli(&["status", incident, "--format", "json"]).succeeds();
        serde_json::from_str(&cli.stdout()).unwrap()
    }
}

/// A `phasegate run --watch` process, killed with SIGKILL when dropped, so that a failing test
/// leaves none behind.
struct Watcher(Child);

impl Watcher {
    /// SIGKILL (what `Child::kill` sends on Unix), then reap it. Fails if it had stopped by itself.
    fn kill(&mut self, drill: &Drill) {
        if let Some(exited) = self.0.try_wait().unwrap() {
            panic!("seed {SEED:#x}: the watcher stopped by itself ({exited}):\n{}", drill.watch_log());
        }
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killing_the_runner_at_random_loses_nothing_and_repeats_no_effect() {
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let stub = Stub::start({
        let ledger = Arc::clone(&ledger);
        move |request| answer(&ledger, request)
    });
    let drill = Drill { dir: tempfile::tempdir().unwrap() };
    // The stub is on loopback, which the outbound policy refuses unless it is allowed.
    let config = "people:\n  riley: { roles: [responder] }\noutbound:\n  allow: [127.0.0.1/32]\n";
    std::fs::write(drill.dir.path().join("phasegate.yaml"), config).unwrap();
    std::fs::write(drill.dir.path().join("drill.yaml"), RUNBOOK.replace("STUB", stub.base())).unwrap();

    // Every command acknowledged (exit 0): the incidents started, and each step marked done with
    // the evidence that names it.
    let mut incidents = Vec::new();
    for _ in 0..INCIDENTS {
        let mut start = drill.cli(&["start", "drill.yaml", "--as", "riley"]).succeeds();
        incidents.push(start.stdout().trim().to_string());
    }
    let mut acknowledged: Vec<(String, String, String)> = Vec::new();

    let mut random = Lcg(SEED);
    let began = Instant::now();
    let mut kills = 0;
    let mut finished = BTreeSet::new();
    while finished.len() < incidents.len() {
        assert!(
            kills < MAX_KILLS && began.elapsed() < MAX_TIME,
            "seed {SEED:#x}: after {kills} kills in {:?}, incidents {:?} are still not done; the watcher said:\n{}",
            began.elapsed(),
            incidents.iter().filter(|id| !finished.contains(*id)).collect::<Vec<_>>(),
            drill.watch_log()
        );
        let mut watcher = drill.watcher();
        let life = Duration::from_millis(random.between(50, 400));
        std::thread::sleep(life / 2);
        // Manual steps are marked done while the watcher runs: the two processes race to append.
        for incident in &incidents {
            if finished.contains(incident) {
                continue;
            }
            let status = drill.status(incident);
            for blocker in status["blocking"].as_array().unwrap() {
                let what = blocker["blocker"]["what"].as_str().unwrap();
                let manual = blocker["blocker"]["waiting_for"].as_str().unwrap().starts_with("manual step");
                if manual {
                    let evidence = format!("{incident} {what} checked");
                    drill.cli(&["done", incident, what, "--as", "riley", "--evidence", &evidence]).succeeds();
                    acknowledged.push((incident.clone(), what.to_string(), evidence));
                }
            }
            if PHASES.iter().all(|phase| status["incident"]["phases"][phase]["status"] == "done") {
                finished.insert(incident.clone());
            }
        }
        std::thread::sleep(life - life / 2);
        watcher.kill(&drill);
        kills += 1;
    }
    eprintln!("crash drill: {kills} kills in {:?}", began.elapsed());

    let ledger = ledger.lock().unwrap();
    check_store(&drill, &incidents, &acknowledged, &ledger);
    check_ledger(&ledger, &incidents, kills);
}

/// Every log is gap-free, folds into a finished incident whose steps carried their keys, and
/// holds every command that was acknowledged; no step's request went out again once its result
/// was recorded.
fn check_store(drill: &Drill, incidents: &[String], acknowledged: &[(String, String, String)], ledger: &Ledger) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(drill.dir.path().join("phasegate.db")).await.unwrap();
        assert!(store.pending_effects(10).await.unwrap().is_empty(), "nothing is left in the outbox");
        let summaries = store.incidents().await.unwrap();
        assert_eq!(summaries.len(), incidents.len(), "no incident was lost or opened twice");
        for summary in &summaries {
            assert!(incidents.contains(&summary.id), "unexpected incident `{}`", summary.id);
            // `events` refuses a log with a gap in its sequence numbers.
            let events = store.events(&summary.id).await.unwrap();
            assert_eq!(events.len() as u64, summary.version, "`{}`: the summary follows the log", summary.id);
            let incident = Incident::from_events(&events).unwrap();
            assert_eq!(incident.version, summary.version);
            assert_eq!(incident.started_by, "riley");
            for phase in PHASES {
                assert_eq!(incident.phase(phase).status.as_str(), "done", "`{}`: phase `{phase}`", summary.id);
            }
            for step in HTTP_STEPS {
                let (phase, step) = step.split_once('/').unwrap();
                let state = incident.step(phase, step);
                let key = format!("{}/{phase}/{step}", summary.id);
                assert_eq!(state.idempotency_key.as_deref(), Some(key.as_str()));
                let done: Vec<DateTime<Utc>> = events
                    .iter()
                    .filter(
                        |e| matches!(&e.kind, EventKind::StepDone { phase: p, step: s, .. } if p == phase && s == step),
                    )
                    .map(|e| e.at)
                    .collect();
                assert_eq!(done.len(), 1, "`{key}` is recorded done once");
                // A result is recorded after the answer it records; a delivery after that would be
                // an effect carried out again although its result was stored.
                let last = ledger.last_delivery[&key];
                assert!(
                    last <= done[0],
                    "`{key}` was delivered at {last}, after its result was recorded at {}",
                    done[0]
                );
                for event in &events {
                    if let EventKind::StepStarted { phase: p, step: s, idempotency_key, .. } = &event.kind
                        && p == phase
                        && s == step
                    {
                        assert_eq!(idempotency_key, &key, "every attempt carries the same key");
                    }
                }
            }
            for (incident_id, step, evidence) in acknowledged.iter().filter(|(id, ..)| *id == summary.id) {
                let (phase, step) = step.split_once('/').unwrap();
                let recorded = events.iter().any(|e| {
                    e.actor == "riley"
                        && e.reason.as_deref() == Some(evidence.as_str())
                        && matches!(&e.kind, EventKind::StepDone { phase: p, step: s, .. } if p == phase && s == step)
                });
                assert!(recorded, "`{incident_id}`: the acknowledged `done {phase}/{step}` is not in the log");
            }
        }
        let manual = acknowledged.len();
        assert_eq!(manual, incidents.len() * 2, "each incident's two manual steps were marked done once");
        store.close().await;
    });
}

/// Each step's effect happened once: exactly the expected keys, each once.
fn check_ledger(ledger: &Ledger, incidents: &[String], kills: usize) {
    assert!(ledger.unkeyed.is_empty(), "requests without an idempotency key: {:?}", ledger.unkeyed);
    let expected: BTreeSet<String> =
        incidents.iter().flat_map(|incident| HTTP_STEPS.iter().map(move |step| format!("{incident}/{step}"))).collect();
    let happened: BTreeSet<String> = ledger.effects.iter().cloned().collect();
    assert_eq!(happened.len(), ledger.effects.len(), "no effect happened twice");
    let missing: Vec<&String> = expected.difference(&happened).collect();
    let unexpected: Vec<&String> = happened.difference(&expected).collect();
    assert!(missing.is_empty(), "effects that never happened: {missing:?}");
    assert!(unexpected.is_empty(), "effects no step asked for: {unexpected:?}");
    let delivered: BTreeSet<&String> = ledger.deliveries.keys().collect();
    assert_eq!(delivered, expected.iter().collect(), "no key was delivered that no step has");
    let repeated = ledger.deliveries.values().filter(|count| **count > 1).count();
    eprintln!(
        "crash drill: {} effects, {} deliveries, {repeated} keys delivered more than once, {kills} kills",
        happened.len(),
        ledger.deliveries.values().sum::<u32>()
    );
    assert!(repeated > 0, "the unlucky keys were retried");
}
