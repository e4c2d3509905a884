//! A campaign killed with SIGKILL at chosen points: `phasegate run` sends a campaign step's
//! messages through a batch HTTP channel to a counting sink (a loopback server in this test
//! process) and is killed again and again, then let finish. Afterwards nobody was left out, a
//! recipient got their message more than once only in a batch the `campaign_finished` event lists
//! as a possible repeat (no more of those than batches in flight per crash), every repeat came with
//! the batch's one idempotency key, no batch reached the sink more often than the store marked it
//! in flight, the incident's log verifies, and a recipient's Merkle proof verifies offline.
//!
//! Where each run is killed is chosen by counting requests, not by the clock, so that neither a
//! fast nor a loaded machine changes what the test does: the sink holds its answers from a chosen
//! request on (the run waits with its batches in flight), and the run is killed once the sink has
//! received the chosen request (killed with it unanswered), or once the sink has answered it
//! (killed around the answer's arrival, before or after the run stored it). A run therefore sends
//! at most [`MOST_BEFORE_KILL`] + [`CONCURRENCY`] requests, so the kills cannot outlast the
//! campaign, and every other kill lands with a batch in flight.
//!
//! Sizes: `CAMPAIGN_CRASH_RECIPIENTS` (default 5,000: 100 batches, more than 12 kills can send;
//! the issue's full size is 100,000), `CAMPAIGN_CRASH_KILLS` (default 12, at least 10);
//! `CAMPAIGN_CRASH_BIN` runs another build of `phasegate run` (a release one, at the full size).
//! The choices come from a fixed seed (or `CAMPAIGN_CRASH_SEED`), so a failure names the seed and
//! the kill schedule reproduces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phasegate::store::{BatchState, SqliteStore, Store};
use serde_json::Value;

use crate::support::Cli;

const SEED: u64 = 0xc4a3_9a16_0b5e;
const BATCH_SIZE: u32 = 50;
const CONCURRENCY: u32 = 4;
/// The most requests a run's sink answers before it holds the rest and the run is killed.
const MOST_BEFORE_KILL: u64 = 4;
/// How long a run may go without a new request reaching the sink (counted from its start, then
/// from its last request) before the test gives up on it: generous, since a debug build starting
/// on a loaded machine reads and checks the whole store and list first; a run that sends nothing
/// at all for this long is stuck, and the test says what the sink had seen.
const QUIET: Duration = Duration::from_secs(180);
/// How long the last, uninterrupted run may take before the test gives up on it.
const LAST_RUN: Duration = Duration::from_secs(600);

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: crash-campaign
title: A campaign killed at random
roles:
  incident-commander: {}
inputs:
  member_list: { type: string }
channels:
  sink:
    batch:
      url: SINK/batches
phases:
  - id: notify
    steps:
      - id: apology
        campaign:
          recipients: { input: member_list, id_field: member_id }
          template: customer-notice
          subject: Important information about your account, and our apology
          channel: sink
          batch_size: BATCH_SIZE
          concurrency: CONCURRENCY
          code: { secret: OFFER_KEY }
"#;

const CONFIG: &str = "people:\n  riley: { roles: [incident-commander] }\nsecrets:\n  OFFER_KEY: { env: OFFER_KEY }\n\
                      outbound:\n  allow: [127.0.0.1/32]\naudit:\n  signing_key: keys/signing.pem\n";

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

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text} is not a whole number")),
        Err(_) => default,
    }
}

/// A member list like `drills/members/retail-breach.jsonl`: `count` members, every tenth with a
/// gift card.
fn members(path: &Path, count: u64) -> Vec<String> {
    use std::io::Write as _;
    const NAMES: &[&str] = &["Amelia", "Ben", "Chloé", "Dev", "Erin", "Farah", "Gus", "Hana"];
    const TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut ids = Vec::new();
    for n in 0..count {
        let id = format!("M{:07}", 1_000_000 + n);
        let mut member = serde_json::json!({
            "member_id": id,
            "email": format!("member{n}@example.com"),
            "first_name": NAMES[n as usize % NAMES.len()],
            "preferred_language": if n.is_multiple_of(5) { "fr-FR" } else { "en-GB" },
            "tier": TIERS[n as usize % TIERS.len()],
            "offer_kind": "points",
            "offer_points": 500,
        });
        if n.is_multiple_of(10) {
            member["offer_kind"] = "gift_card".into();
            member["offer_points"] = 0.into();
            member["gift_card_value"] = "GBP 10".into();
            member["gift_card_code"] = format!("GC-{:04X}-{:04X}-{:02}", n % 65536, (n * 7919) % 65536, n % 97).into();
        }
        writeln!(out, "{member}").unwrap();
        ids.push(id);
    }
    out.flush().unwrap();
    ids
}

/// What the sink saw: for each recipient id, the idempotency key of every request that carried
/// them; for each key, how many requests came with it.
#[derive(Default)]
struct Counted {
    received: HashMap<String, Vec<String>>,
    requests: BTreeMap<String, u32>,
    /// Requests without a key, or whose body did not parse.
    odd: Vec<String>,
    random: Option<Lcg>,
    /// Requests received in all, and the numbers of those answered (a request whose sender was
    /// killed while it was held is never answered).
    arrived: u64,
    answered: BTreeSet<u64>,
    /// The request (counted in `arrived`, from 1) from which answers are held until released.
    hold_from: Option<u64>,
}

type Shared = Arc<Mutex<Counted>>;

/// The counting sink: a loopback server on a runtime of its own. It counts a request as it
/// arrives (before answering, so a request whose sender is killed mid-way still counts), then
/// answers 200 after a few milliseconds, so that kills land with requests in flight.
struct Sink {
    base: String,
    counted: Shared,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Sink {
    fn start(seed: u64) -> Sink {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let counted: Shared = Arc::new(Mutex::new(Counted { random: Some(Lcg(seed ^ 0x51_4b)), ..Counted::default() }));
        let app = axum::Router::new().fallback(count).with_state(Arc::clone(&counted));
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sink { base, counted, runtime: Some(runtime) }
    }
}

impl Sink {
    /// Requests so far.
    fn requests(&self) -> u64 {
        self.counted.lock().unwrap().arrived
    }

    /// Whether the `number`th request was answered.
    fn answered(&self, number: u64) -> bool {
        self.counted.lock().unwrap().answered.contains(&number)
    }

    /// Which of the last `count` requests were answered.
    fn recently_answered(&self, count: u64) -> Vec<u64> {
        let counted = self.counted.lock().unwrap();
        let from = counted.arrived.saturating_sub(count) + 1;
        counted.answered.range(from..).copied().collect()
    }

    /// Holds the answers to requests from the `from`th on (`None`: answers every request).
    fn hold(&self, from: Option<u64>) {
        self.counted.lock().unwrap().hold_from = from;
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn count(
    axum::extract::State(counted): axum::extract::State<Shared>,
    request: axum::extract::Request,
) -> axum::http::StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 256 << 20).await else {
        // The sender went away mid-body: nothing arrived.
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let key = parts.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (delay, number) = {
        let mut counted = counted.lock().unwrap();
        counted.arrived += 1;
        let number = counted.arrived;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        match (key, parsed) {
            (Some(key), Some(body)) => {
                *counted.requests.entry(key.clone()).or_default() += 1;
                for message in body["messages"].as_array().into_iter().flatten() {
                    let id = message["id"].as_str().unwrap_or_default().to_string();
                    counted.received.entry(id).or_default().push(key.clone());
                }
            }
            (key, _) => counted.odd.push(format!("{} {:?}", parts.uri.path(), key)),
        }
        (Duration::from_millis(counted.random.as_mut().unwrap().between(2, 30)), number)
    };
    tokio::time::sleep(delay).await;
    // Held while the test kills the run that sent it (the answer then goes nowhere).
    while counted.lock().unwrap().hold_from.is_some_and(|from| number >= from) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    counted.lock().unwrap().answered.insert(number);
    axum::http::StatusCode::OK
}

/// The working directory: configuration, runbook, list, key and database.
struct Campaign {
    dir: tempfile::TempDir,
}

impl Campaign {
    fn cli(&self, args: &[&str]) -> Cli {
        Cli::new().current_dir(self.dir.path()).env("OFFER_KEY", OFFER_KEY).args(args).args([
            "--config",
            "phasegate.yaml",
            "--db",
            "phasegate.db",
        ])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `phasegate run`, its standard error appended to `run.log`.
    fn run(&self) -> Runner {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("run.log")).unwrap();
        std::process::Command::new(runner_binary())
            .current_dir(self.dir.path())
            .args(["run", "--config", "phasegate.yaml", "--db", "phasegate.db"])
            .env_remove("PHASEGATE_TEMPLATES")
            .env("OFFER_KEY", OFFER_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Runner)
            .expect("the phasegate binary starts")
    }

    fn run_log(&self) -> String {
        std::fs::read_to_string(self.path("run.log")).unwrap_or_default()
    }
}

/// The `phasegate` that runs the campaign: this build's, or the one `CAMPAIGN_CRASH_BIN` names (a
/// release build, for the full size by hand).
fn runner_binary() -> PathBuf {
    std::env::var_os("CAMPAIGN_CRASH_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_phasegate")), PathBuf::from)
}

const OFFER_KEY: &str = "crash-test-offer-key-0f1e2d3c4b5a";

/// A `phasegate run` process, killed with SIGKILL when dropped.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_campaign_killed_at_random_loses_nobody_and_repeats_only_batches_in_flight() {
    let recipients = env_number("CAMPAIGN_CRASH_RECIPIENTS", 5_000);
    let wanted_kills = env_number("CAMPAIGN_CRASH_KILLS", 12).max(10) as usize;
    let seed = env_number("CAMPAIGN_CRASH_SEED", SEED);
    let sink = Sink::start(seed);
    let campaign = Campaign { dir: tempfile::tempdir().unwrap() };
    let runbook = RUNBOOK
        .replace("SINK", &sink.base)
        .replace("BATCH_SIZE", &BATCH_SIZE.to_string())
        .replace("CONCURRENCY", &CONCURRENCY.to_string());
    std::fs::write(campaign.path("campaign.yaml"), runbook).unwrap();
    std::fs::write(campaign.path("phasegate.yaml"), CONFIG).unwrap();
    std::fs::create_dir(campaign.path("keys")).unwrap();
    Cli::new().args(["keygen", campaign.path("keys/signing.pem").to_str().unwrap()]).succeeds();
    let ids = members(&campaign.path("members.jsonl"), recipients);
    let mut start =
        campaign.cli(&["start", "campaign.yaml", "--as", "riley", "--input", "member_list=members.jsonl"]).succeeds();
    let incident = start.stdout().trim().to_string();
    let key = format!("{incident}/notify/apology");

    // Killed at chosen points; a run that ends by itself (the campaign done) ends the killing.
    let mut random = Lcg(seed);
    let began = Instant::now();
    let mut kills = 0;
    let mut ended = false;
    let mut stops = 0;
    while kills < wanted_kills {
        // This run's `chosen`th request is where it dies: received and held (every other kill,
        // the first among them), or answered; the requests after it are held.
        let chosen = sink.requests() + random.between(1, MOST_BEFORE_KILL);
        let held = kills % 2 == 0;
        sink.hold(Some(if held { chosen } else { chosen + 1 }));
        let mut runner = campaign.run();
        let reached = || if held { sink.requests() >= chosen } else { sink.answered(chosen) };
        // Waits on the sink's own count: the run is given as long as it keeps sending.
        let (first, mut seen, mut last_news) = (sink.requests(), sink.requests(), Instant::now());
        while !reached() && last_news.elapsed() < QUIET && runner.0.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
            let now = sink.requests();
            if now != seen {
                (seen, last_news) = (now, Instant::now());
            }
        }
        if let Some(exited) = runner.0.try_wait().unwrap() {
            sink.hold(None);
            // `run` stops by itself when nothing more is due now: the campaign done, or waiting.
            assert!(exited.success(), "seed {seed:#x}: `run` failed ({exited}):\n{}", campaign.run_log());
            stops += 1;
            assert!(stops < 100, "seed {seed:#x}: `run` stopped by itself {stops} times:\n{}", campaign.run_log());
            let mut status = campaign.cli(&["status", &incident, "--format", "json"]).succeeds();
            let status: Value = serde_json::from_str(&status.stdout()).unwrap();
            if status["incident"]["phases"]["notify"]["status"] == "done" {
                ended = true;
                break;
            }
            continue;
        }
        assert!(
            reached(),
            "seed {seed:#x}: run {} was to be killed at request {chosen} ({}), but sent nothing new for {QUIET:?}: \
             the sink had {first} requests when it started and {} now, answered {:?} of the last ten; its log:\n{}",
            kills + 1,
            if held { "received" } else { "answered" },
            sink.requests(),
            sink.recently_answered(10),
            campaign.run_log()
        );
        runner.0.kill().unwrap();
        runner.0.wait().unwrap();
        sink.hold(None);
        kills += 1;
    }
    assert!(
        !ended && kills >= 10,
        "seed {seed:#x}: the campaign ended after {kills} kills; give it more recipients (CAMPAIGN_CRASH_RECIPIENTS)"
    );
    // The last run goes to the end.
    let mut runner = campaign.run();
    let last = Instant::now();
    let exited = loop {
        if let Some(exited) = runner.0.try_wait().unwrap() {
            break exited;
        }
        assert!(last.elapsed() < LAST_RUN, "seed {seed:#x}: the last run did not end:\n{}", campaign.run_log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exited.success(), "seed {seed:#x}: the last run failed ({exited}):\n{}", campaign.run_log());
    drop(runner);
    let took = began.elapsed();

    // The campaign's end, as the log records it.
    campaign.cli(&["close", &incident, "--as", "riley"]).succeeds();
    campaign.cli(&["audit", "verify", &incident]).succeeds().stdout_has(&format!("{incident}: verified"));
    campaign.cli(&["audit", "export", &incident, "-o", "export.jsonl"]).succeeds();
    let export = std::fs::read_to_string(campaign.path("export.jsonl")).unwrap();
    let finished: Value = export
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|line| line["type"] == "event" && line["event"]["event"]["type"] == "campaign_finished")
        .unwrap_or_else(|| panic!("seed {seed:#x}: no campaign_finished in the log:\n{export}"))["event"]["event"]
        .clone();
    assert_eq!(finished["campaign"], key.as_str());
    assert_eq!(finished["recipients"], recipients, "{finished}");
    assert_eq!(finished["sent"], recipients, "{finished}");
    assert_eq!(finished["failed"], 0, "{finished}");
    assert_eq!(finished["leaves"], recipients, "{finished}");
    let listed: BTreeSet<u32> = finished["possible_repeats"]
        .as_array()
        .expect("possible_repeats is a list")
        .iter()
        .map(|n| n.as_u64().unwrap() as u32)
        .collect();

    // How often the store marked each batch in flight.
    let attempts: BTreeMap<u32, u32> = {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = SqliteStore::open(campaign.path("phasegate.db")).await.unwrap();
            let batches = store.campaign_batches(&key).await.unwrap();
            store.close().await;
            batches
                .iter()
                .map(|batch| match batch.state {
                    BatchState::Answered { attempts, sent, failed, .. } => {
                        assert_eq!((sent, failed), (batch.plan.recipients, 0), "batch {}", batch.plan.number);
                        (batch.plan.number, attempts)
                    }
                    ref other => panic!("seed {seed:#x}: batch {} is {other:?} after the end", batch.plan.number),
                })
                .collect()
        })
    };

    let counted = sink.counted.lock().unwrap();
    assert!(counted.odd.is_empty(), "requests without a key or a body: {:?}", counted.odd);
    let batch_of = |key_seen: &str| -> u32 {
        let number = key_seen.strip_prefix(&format!("{key}/")).unwrap_or_else(|| panic!("a foreign key `{key_seen}`"));
        number.parse().unwrap()
    };
    // Nobody left out, nobody unexpected.
    let never: Vec<&String> = ids.iter().filter(|id| !counted.received.contains_key(*id)).collect();
    assert!(
        never.is_empty(),
        "seed {seed:#x}: {} recipients never received, such as {:?}",
        never.len(),
        &never[..never.len().min(5)]
    );
    assert_eq!(counted.received.len(), ids.len(), "the sink saw recipients the list does not have");
    // Repeats only within a listed batch, always with its one key.
    let mut repeated = 0;
    for (id, keys) in &counted.received {
        let first = &keys[0];
        assert!(keys.iter().all(|k| k == first), "seed {seed:#x}: `{id}` came in different batches: {keys:?}");
        if keys.len() > 1 {
            repeated += 1;
            let number = batch_of(first);
            assert!(
                listed.contains(&number),
                "seed {seed:#x}: `{id}` was received {} times in batch {number}, which `possible_repeats` does not list ({listed:?})",
                keys.len()
            );
        }
    }
    // No batch reached the sink more often than it was marked in flight: an answered batch was
    // never sent again.
    for (key_seen, requests) in &counted.requests {
        let number = batch_of(key_seen);
        let marked = attempts.get(&number).copied().unwrap_or_default();
        assert!(
            *requests <= marked,
            "seed {seed:#x}: batch {number} reached the sink {requests} times but was marked in flight {marked} times"
        );
    }
    assert!(
        listed.len() <= CONCURRENCY as usize * kills,
        "seed {seed:#x}: {} possible repeats after {kills} kills of {CONCURRENCY} batches in flight",
        listed.len()
    );
    assert!(!listed.is_empty(), "seed {seed:#x}: none of {kills} kills landed with a batch in flight");
    let resent = counted.requests.values().filter(|n| **n > 1).count();
    eprintln!(
        "campaign crash: {recipients} recipients, {} batches, {kills} kills in {took:?}; {} possible repeats listed, \
         {resent} batches received more than once, {repeated} recipients received more than once",
        attempts.len(),
        listed.len()
    );

    // A random recipient's proof verifies offline against the signed export.
    let chosen = &ids[random.between(0, ids.len() as u64 - 1) as usize];
    campaign.cli(&["audit", "prove", &incident, "notify/apology", chosen, "-o", "proof.json"]).succeeds();
    let Some(python) = crate::support::python_or_skip(&["cryptography"]) else { return };
    let output = std::process::Command::new(python)
        .arg(crate::support::root().join("scripts/verify-export.py"))
        .args([campaign.path("export.jsonl"), campaign.path("keys/signing.pem.pub")])
        .arg("--proof")
        .arg(campaign.path("proof.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("proven: recipient `{chosen}` is leaf ")), "{stdout}");
}
