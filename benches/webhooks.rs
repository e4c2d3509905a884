//! Webhook deliveries per second: `cargo bench --bench webhooks` prints Markdown tables for
//! BENCHMARKS.md.
//!
//! Two servers in this process, on loopback, each given the same bounded load: 64 connections,
//! each sending its share of the deliveries one after another (a closed loop, so the load never
//! outruns the server), every delivery signed with the generic HMAC-SHA256 scheme and carrying
//! an id of its own. (a) A bare axum handler that checks the HMAC over the raw body and answers
//! 202. (b) `phasegate serve`'s `/hooks/{source}`: the same check, the body checked readable,
//! and the delivery stored durably (WAL, `synchronous=FULL`, group commits) in the inbox before
//! the answer; meanwhile the server's inbox task applies it (the trigger adds a note to one of 64
//! open incidents). Each round waits until the inbox is empty before the next, and reports how
//! fast deliveries were applied too. Rates and latency percentiles per round; medians of the
//! rounds.
//!
//! The load comes from two generators, measured separately: (1) reqwest clients in this process,
//! which share the machine's cores with the servers, alike for both; (2) `wrk` in a process of
//! its own (when it is installed: Debian's `wrk`), replaying pre-signed deliveries through a Lua
//! script, with the rate taken from the servers' own counts of deliveries answered. A lighter
//! generator leaves more of the machine to the servers, which helps the bare handler, bound by
//! the processor, more than phasegate, bound by its commits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use phasegate::config::{Config, Overrides};
use phasegate::engine::{Effect, Event, Incident, Outcome};
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;
use phasegate::runtime::{Executor, Runtime};
use phasegate::server::metrics::WebhookLabels;
use phasegate::server::webhooks::signature::{self, Scheme, Secret};
use phasegate::server::{self, App};
use phasegate::store::{SqliteStore, Store};

const CONNECTIONS: usize = 64;
/// Deliveries of a round: a burst the inbox holds whole, however far applying lags behind. Past
/// `INBOX_LIMIT` waiting, deliveries are answered 503 until applying catches up, so a longer storm
/// is taken in at the rate deliveries are applied (the "applied" figure).
const DELIVERIES: usize = 9_600;
const _: () = assert!(DELIVERIES as u64 <= phasegate::server::webhooks::INBOX_LIMIT);
const ROUNDS: usize = 9;
const INCIDENTS: usize = 64;
const SECRET: &str = "bench-secret-bench-secret-bench";
/// wrk's threads, each with its share of the connections and of the deliveries.
const WRK_THREADS: usize = 2;

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: bench
title: Webhook benchmark
roles:
  commander: {}
phases:
  - id: watch
    steps:
      - id: wait
        manual: { instructions: Wait }
triggers:
  - id: evidence
    source: bench
    format: json
    key: '"bench/" + payload.group'
    evidence:
      note: payload.text
"#;

/// Sends each wrk thread's deliveries (`thread-N.txt` in the directory given after `--`: id,
/// signature and body on a line) once each, then leaves its connections idle; counts answers other
/// than the expected status. wrk asks `delay` before every request it sends, and calls `request`
/// once more at its start only to check what it returns, so `delay` is what hands out deliveries:
/// `request` sends one only once `delay` has let one go, and otherwise asks for a page that is not
/// there (404 on both servers, not counted).
const WRK_SCRIPT: &str = r#"
local threads = {}
local count = 0

function setup(thread)
  thread:set("number", count)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  deliveries = {}
  for line in io.lines(args[1] .. "/thread-" .. number .. ".txt") do
    local id, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    deliveries[#deliveries + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["X-Delivery-Id"] = id,
      ["X-Signature"] = signature,
    }, body)
  end
  expected = tonumber(args[2])
  nothing = wrk.format("GET", "/nothing-here")
  granted = 0
  sent = 0
  unexpected = 0
end

function delay()
  if granted >= #deliveries then
    return 3600000
  end
  granted = granted + 1
  return 0
end

function request()
  if sent >= granted then
    return nothing
  end
  sent = sent + 1
  return deliveries[sent]
end

function response(status, headers, body)
  if status ~= expected and status ~= 404 then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("unexpected")
  end
  io.write(string.format("RESULT p50_us=%d p99_us=%d unexpected=%d\n",
    latency:percentile(50), latency:percentile(99), total))
end
"#;

struct Nothing;

impl Executor for Nothing {
    async fn carry_out(&self, _: &Effect, _: &Runbook, _: &Incident, _: &[Event], _: DateTime<Utc>) -> Outcome {
        Outcome::Failed { error: "not in the benchmark".into() }
    }

    async fn send_campaign_batch(
        &self,
        _: phasegate::actions::campaign::BatchJob<'_>,
    ) -> phasegate::actions::campaign::BatchSent {
        let error = "this test's executor sends no campaigns".to_string();
        phasegate::actions::campaign::BatchSent {
            answer: phasegate::actions::campaign::Answer::Failed {
                error,
                class: phasegate::campaign::FailureClass::Local,
            },
            leaves: Vec::new(),
        }
    }
}

/// One signed delivery: its body, signature and id.
struct Delivery {
    body: String,
    signature: String,
    id: String,
}

/// The deliveries of one round for one server; every one is new to it.
fn deliveries(load: &str, round: usize) -> Vec<Delivery> {
    let secret = Secret::new(SECRET.as_bytes().to_vec()).unwrap();
    (0..DELIVERIES)
        .map(|n| {
            let body = format!(
                r#"{{"group": "{}", "text": "alert {load}-{round}-{n}: bulk read from the loyalty database", "seen": {n}}}"#,
                n % INCIDENTS
            );
            let signature = signature::sign_hex(&secret, body.as_bytes());
            Delivery { body, signature, id: format!("{load}-r{round}-d{n}") }
        })
        .collect()
}

/// What one server did with one round's deliveries.
struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Sends every delivery over `CONNECTIONS` clients (one connection each). The clients are made
/// once, outside the measure: making one reads the system's root certificates.
async fn in_process(url: &str, clients: &[reqwest::Client], deliveries: Vec<Delivery>) -> Measured {
    let deliveries = Arc::new(deliveries);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let deliveries = Arc::clone(&deliveries);
            let url = url.to_string();
            let client = clients[connection].clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for delivery in deliveries.iter().skip(connection).step_by(CONNECTIONS) {
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("x-signature", &delivery.signature)
                        .header("x-delivery-id", &delivery.id)
                        .body(delivery.body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status().as_u16(), 202, "{}", response.text().await.unwrap_or_default());
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rate = DELIVERIES as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    Measured { rate, p50_ms: percentile(0.50), p99_ms: percentile(0.99) }
}

/// Sends every delivery with wrk in a process of its own. The rate is the deliveries over the
/// time from the server's first answer to its last, as its own count of answers shows (watched
/// every 100 µs from a thread of its own), so wrk's start and stop are not in it.
async fn from_wrk(
    url: &str,
    dir: &Path,
    deliveries: Vec<Delivery>,
    answered: impl Fn() -> u64 + Send + 'static,
) -> Measured {
    for thread in 0..WRK_THREADS {
        let lines: String = deliveries
            .iter()
            .skip(thread)
            .step_by(WRK_THREADS)
            .map(|delivery| format!("{}\t{}\t{}\n", delivery.id, delivery.signature, delivery.body))
            .collect();
        std::fs::write(dir.join(format!("thread-{thread}.txt")), lines).unwrap();
    }
    let before = answered();
    let target = before + DELIVERIES as u64;
    let watch = tokio::task::spawn_blocking(move || {
        let mut first = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let count = answered();
            let now = Instant::now();
            if count > before && first.is_none() {
                first = Some(now);
            }
            if count >= target {
                return first.map(|first| now - first);
            }
            assert!(now < deadline, "{} of {DELIVERIES} deliveries answered in two minutes", count - before);
            std::thread::sleep(Duration::from_micros(100));
        }
    });
    let wrk = tokio::process::Command::new("wrk")
        .args(["-t", &WRK_THREADS.to_string(), "-c", &CONNECTIONS.to_string(), "-d", "300s", "--timeout", "10s"])
        .arg("-s")
        .arg(dir.join("deliveries.lua"))
        .arg(url)
        .arg("--")
        .arg(dir)
        .arg("202")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let elapsed = watch.await.unwrap().expect("some delivery was answered");
    // wrk stops on SIGINT and reports, through the script's `done`.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(wrk.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let output = wrk.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|line| line.starts_with("RESULT")).unwrap_or_else(|| panic!("wrk said: {stdout}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace().find_map(|pair| pair.strip_prefix(&format!("{name}="))).unwrap().parse().unwrap()
    };
    assert_eq!(field("unexpected"), 0.0, "answers other than 202: {line}");
    Measured {
        rate: (DELIVERIES - 1) as f64 / elapsed.as_secs_f64(),
        p50_ms: field("p50_us") / 1000.0,
        p99_ms: field("p99_us") / 1000.0,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The bare handler's state: the scheme, and how many deliveries it has answered 202.
struct Bare {
    scheme: Scheme,
    accepted: AtomicU64,
}

async fn bare(State(bare): State<Arc<Bare>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
    match signature::verify(&bare.scheme, pairs.as_slice(), &body, Utc::now()) {
        Ok(_) => {
            bare.accepted.fetch_add(1, Ordering::Relaxed);
            StatusCode::ACCEPTED
        }
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

/// Rounds of one load: each round the bare handler, then phasegate and its inbox emptied.
struct Rounds {
    bare: Vec<Measured>,
    full: Vec<Measured>,
    applied: Vec<f64>,
}

fn row(name: &str, measured: &[Measured], ratio: f64) -> String {
    let rates = measured.iter().map(|m| m.rate).collect();
    let p50 = measured.iter().map(|m| m.p50_ms).collect();
    let p99 = measured.iter().map(|m| m.p99_ms).collect();
    format!("| {name} | {:.0} | {:.2} | {:.2} | {ratio:.2} |", median(rates), median(p50), median(p99))
}

impl Rounds {
    fn print(&self, load: &str) {
        let ratios: Vec<f64> = self.full.iter().zip(&self.bare).map(|(full, bare)| full.rate / bare.rate).collect();
        println!("Load: {load}. Medians of {ROUNDS} rounds.");
        println!();
        println!("| server | deliveries per second | p50 ms | p99 ms | ratio |");
        println!("|---|---:|---:|---:|---:|");
        println!("{}", row("bare axum handler: HMAC check, 202", &self.bare, 1.0));
        println!(
            "{}",
            row(
                "`phasegate serve` `/hooks/bench`: verified, deduplicated, stored durably",
                &self.full,
                median(ratios.clone())
            )
        );
        println!();
        let rounded: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}")).collect();
        println!(
            "Ratio in each round: {}. Applied (every delivery's trigger acted on, from the first sent to the inbox empty): {:.0} per second.",
            rounded.join(", "),
            median(self.applied.clone())
        );
        println!();
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        std::fs::write(dir.path().join("runbooks/bench.yaml"), RUNBOOK).unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        std::fs::write(dir.path().join("deliveries.lua"), WRK_SCRIPT).unwrap();
        let config = format!(
            "database: {db}\nrunbooks: {runbooks}\npeople:\n  dana: {{ roles: [commander] }}\nsecrets:\n  bench: {{ file: {secret} }}\n\
             server:\n  sources:\n    bench: {{ scheme: hmac, header: X-Signature, id_header: X-Delivery-Id, secrets: [bench] }}\n",
            db = dir.path().join("phasegate.db").display(),
            runbooks = dir.path().join("runbooks").display(),
            secret = dir.path().join("secret").display(),
        );
        std::fs::write(dir.path().join("phasegate.yaml"), config).unwrap();
        let config = Config::load(Some(&dir.path().join("phasegate.yaml")), &Overrides::default()).unwrap();
        let store = SqliteStore::open(&config.database).await.unwrap();
        let engine = Runtime::new(store, Catalog::built_in(), config.directory.clone());
        for group in 0..INCIDENTS {
            engine.start(RUNBOOK, "dana", BTreeMap::new(), Some(format!("bench/{group}"))).await.unwrap();
        }
        let app = Arc::new(App::new(engine, config).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let full_url = format!("http://{}/hooks/bench", listener.local_addr().unwrap());
        tokio::spawn(server::serve(Arc::clone(&app), Arc::new(Nothing), listener, Duration::from_secs(3600), std::future::pending()));

        let bare_state = Arc::new(Bare {
            scheme: Scheme::Hmac {
                header: "X-Signature".into(),
                id_header: Some("X-Delivery-Id".into()),
                secrets: vec![Secret::new(SECRET.as_bytes().to_vec()).unwrap()],
            },
            accepted: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_url = format!("http://{}/hooks/bench", listener.local_addr().unwrap());
        let router = Router::new().route("/hooks/bench", post(bare)).with_state(Arc::clone(&bare_state));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

        let wrk = std::process::Command::new("wrk").arg("--version").output().is_ok();
        if !wrk {
            eprintln!("SKIPPED the wrk load: `wrk` is missing; install it with `apt-get install wrk`");
        }
        let bare_clients: Vec<reqwest::Client> = (0..CONNECTIONS).map(|_| reqwest::Client::new()).collect();
        let full_clients: Vec<reqwest::Client> = (0..CONNECTIONS).map(|_| reqwest::Client::new()).collect();
        let loads: &[&str] = if wrk { &["in-process", "wrk"] } else { &["in-process"] };
        for load in loads {
            let mut rounds = Rounds { bare: Vec::new(), full: Vec::new(), applied: Vec::new() };
            for round in 0..ROUNDS {
                let from_wrk_load = *load == "wrk";
                let bare = if from_wrk_load {
                    let counted = Arc::clone(&bare_state);
                    from_wrk(&bare_url, dir.path(), deliveries("bare", round), move || counted.accepted.load(Ordering::Relaxed))
                        .await
                } else {
                    in_process(&bare_url, &bare_clients, deliveries("bare", round)).await
                };
                let started = Instant::now();
                let full = if from_wrk_load {
                    let labels = WebhookLabels { source: "bench".into(), result: "accepted".into(), reason: String::new() };
                    let accepted = app.metrics.webhooks.get_or_create(&labels).clone();
                    from_wrk(&full_url, dir.path(), deliveries(load, round), move || accepted.get()).await
                } else {
                    in_process(&full_url, &full_clients, deliveries(load, round)).await
                };
                // Stored is what senders wait for; applied (triggers acted on) follows from the inbox.
                while app.runtime.store().inbox_depth().await.unwrap() > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let applied = DELIVERIES as f64 / started.elapsed().as_secs_f64();
                eprintln!(
                    "{load} round {round}: bare {:.0}/s, phasegate {:.0}/s stored ({:.2}), {applied:.0}/s applied",
                    bare.rate,
                    full.rate,
                    full.rate / bare.rate
                );
                rounds.bare.push(bare);
                rounds.full.push(full);
                rounds.applied.push(applied);
            }
            rounds.print(load);
        }
        if !wrk {
            println!("(wrk is not installed: `apt-get install wrk` for the second load.)");
        }
    });
}
