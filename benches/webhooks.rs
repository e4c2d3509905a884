//! Webhook deliveries per second: `cargo bench --bench webhooks` prints a Markdown table for
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
//! rounds. The load generator shares the machine's two cores with the servers, alike for both.

use std::collections::BTreeMap;
use std::sync::Arc;
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
use phasegate::server::webhooks::signature::{self, Scheme, Secret};
use phasegate::server::{self, App};
use phasegate::store::{SqliteStore, Store};

const CONNECTIONS: usize = 64;
const DELIVERIES: usize = 6_400;
const ROUNDS: usize = 3;
const INCIDENTS: usize = 64;
const SECRET: &str = "bench-secret-bench-secret-bench";

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

struct Nothing;

impl Executor for Nothing {
    async fn carry_out(&self, _: &Effect, _: &Runbook, _: &Incident, _: &[Event], _: DateTime<Utc>) -> Outcome {
        Outcome::Failed { error: "not in the benchmark".into() }
    }
}

/// One signed delivery: its body, signature and id.
struct Delivery {
    body: String,
    signature: String,
    id: String,
}

fn deliveries(round: usize) -> Vec<Delivery> {
    let secret = Secret::new(SECRET.as_bytes().to_vec()).unwrap();
    (0..DELIVERIES)
        .map(|n| {
            let body = format!(
                r#"{{"group": "{}", "text": "alert {round}-{n}: bulk read from the loyalty database", "seen": {n}}}"#,
                n % INCIDENTS
            );
            let signature = signature::sign_hex(&secret, body.as_bytes());
            Delivery { body, signature, id: format!("r{round}-d{n}") }
        })
        .collect()
}

/// Sends every delivery over `CONNECTIONS` clients (one connection each); returns the rate and
/// the latencies. The clients are made once, outside the measure: making one reads the system's
/// root certificates.
async fn load(url: String, clients: &[reqwest::Client], deliveries: Vec<Delivery>) -> (f64, Vec<Duration>) {
    let deliveries = Arc::new(deliveries);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let deliveries = Arc::clone(&deliveries);
            let url = url.clone();
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
    (DELIVERIES as f64 / start.elapsed().as_secs_f64(), latencies)
}

fn percentile(latencies: &mut [Duration], p: f64) -> f64 {
    latencies.sort();
    latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn bare(State(scheme): State<Arc<Scheme>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
    match signature::verify(&scheme, pairs.as_slice(), &body, Utc::now()) {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        std::fs::write(dir.path().join("runbooks/bench.yaml"), RUNBOOK).unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
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

        let scheme = Arc::new(Scheme::Hmac {
            header: "X-Signature".into(),
            id_header: Some("X-Delivery-Id".into()),
            secrets: vec![Secret::new(SECRET.as_bytes().to_vec()).unwrap()],
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_url = format!("http://{}/hooks/bench", listener.local_addr().unwrap());
        let router = Router::new().route("/hooks/bench", post(bare)).with_state(scheme);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

        let bare_clients: Vec<reqwest::Client> = (0..CONNECTIONS).map(|_| reqwest::Client::new()).collect();
        let full_clients: Vec<reqwest::Client> = (0..CONNECTIONS).map(|_| reqwest::Client::new()).collect();
        let (mut bare_rates, mut full_rates, mut ratios, mut applied_rates) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut bare_p50, mut bare_p99, mut full_p50, mut full_p99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (bare_rate, mut bare_latencies) = load(bare_url.clone(), &bare_clients, deliveries(round)).await;
            // Stored is what senders wait for; applied (triggers acted on) follows from the inbox.
            let started = Instant::now();
            let (full_rate, mut full_latencies) = load(full_url.clone(), &full_clients, deliveries(round)).await;
            while app.runtime.store().inbox_depth().await.unwrap() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let applied = DELIVERIES as f64 / started.elapsed().as_secs_f64();
            eprintln!("round {round}: bare {bare_rate:.0}/s, phasegate {full_rate:.0}/s stored, {applied:.0}/s applied");
            applied_rates.push(applied);
            bare_rates.push(bare_rate);
            full_rates.push(full_rate);
            ratios.push(full_rate / bare_rate);
            bare_p50.push(percentile(&mut bare_latencies, 0.50));
            bare_p99.push(percentile(&mut bare_latencies, 0.99));
            full_p50.push(percentile(&mut full_latencies, 0.50));
            full_p99.push(percentile(&mut full_latencies, 0.99));
        }
        println!("| server | deliveries per second (median of {ROUNDS}) | p50 ms | p99 ms | ratio |");
        println!("|---|---:|---:|---:|---:|");
        println!(
            "| bare axum handler: HMAC check, 202 | {:.0} | {:.2} | {:.2} | 1.00 |",
            median(bare_rates),
            median(bare_p50),
            median(bare_p99)
        );
        println!(
            "| `phasegate serve` `/hooks/bench`: verified, deduplicated, stored durably | {:.0} | {:.2} | {:.2} | {:.2} |",
            median(full_rates),
            median(full_p50),
            median(full_p99),
            median(ratios)
        );
        println!();
        println!(
            "Applied (every delivery's trigger acted on, from the first sent to the inbox empty): {:.0} per second (median of {ROUNDS}).",
            median(applied_rates)
        );
    });
}
