//! `phasegate serve` replicas as real processes on one PostgreSQL schema, for `benches/replicas.rs`:
//! a deployment (configuration, a runbook whose trigger starts an incident per `group` with one
//! http step, a GitHub-style signed webhook source), its replicas, a loopback stub for the http
//! step, and signed deliveries sent by closed-loop clients.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const SECRET: &str = "bench-siem-hmac-secret-for-replicas";

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: replicas
title: Replicas benchmark
inputs:
  group: { type: string }
roles:
  responder: {}
phases:
  - id: contain
    steps:
      - id: isolate
        timeout: 600s
        retry: { attempts: 20, backoff: 1s, max_backoff: 1s }
        http: { method: POST, url: "STUB/isolate", body: { group: "${ inputs.group }" } }
triggers:
  - id: siem-alert
    source: siem
    format: json
    when: 'payload.kind == "alert"'
    key: '"bench/" + payload.group'
    start:
      inputs:
        group: payload.group
"#;

/// How the stub answers the `n`th request (from 1) of a key: after how long.
pub type Delay = fn(u32) -> Duration;

/// A loopback HTTP server standing for the outside system: counts each key's requests, and
/// notes when each was received.
pub struct Stub {
    pub base: String,
    pub seen: Arc<Mutex<BTreeMap<String, Vec<Instant>>>>,
}

impl Stub {
    pub async fn start(delay: Delay) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<BTreeMap<String, Vec<Instant>>>> = Arc::default();
        let state = (Arc::clone(&seen), delay);
        let app = axum::Router::new().fallback(answer).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Stub { base, seen }
    }
}

type StubState = (Arc<Mutex<BTreeMap<String, Vec<Instant>>>>, Delay);

async fn answer(
    axum::extract::State((seen, delay)): axum::extract::State<StubState>,
    headers: axum::http::HeaderMap,
) -> axum::http::StatusCode {
    let key = headers.get("idempotency-key").and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
    let count = {
        let mut seen = seen.lock().unwrap();
        let times = seen.entry(key).or_default();
        times.push(Instant::now());
        times.len() as u32
    };
    tokio::time::sleep(delay(count)).await;
    axum::http::StatusCode::OK
}

/// A schema of its own on the bench's server, with the configuration and runbook in a directory.
pub struct Deployment {
    pub url: String,
    pub schema: String,
    pub dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Deployment {
    pub async fn new(server: &str, stub: &Stub) -> Deployment {
        let schema = format!("phasegate_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server).await.expect("a PostgreSQL server (PHASEGATE_BENCH_POSTGRES)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut admin).await.unwrap();
        let separator = if server.contains('?') { '&' } else { '?' };
        // Named after the schema, so that its sessions can be found and ended before the drop.
        let url = format!("{server}{separator}options=-csearch_path%3D{schema}&application_name={schema}");
        let dir = tempfile::tempdir().unwrap();
        let runbooks = dir.path().join("runbooks");
        std::fs::create_dir(&runbooks).unwrap();
        std::fs::write(runbooks.join("replicas.yaml"), RUNBOOK.replace("STUB", &stub.base)).unwrap();
        std::fs::write(dir.path().join("siem-secret"), SECRET).unwrap();
        let text = format!(
            "database: '{url}'\nrunbooks: {runbooks}\npeople:\n  riley: {{ roles: [responder] }}\n\
             secrets:\n  siem-secret: {{ file: {secret} }}\n\
             server:\n  sources:\n    siem: {{ scheme: github, secrets: [siem-secret] }}\n\
             outbound:\n  allow: [127.0.0.1/32]\n",
            runbooks = runbooks.display(),
            secret = dir.path().join("siem-secret").display(),
        );
        let config = dir.path().join("phasegate.yaml");
        std::fs::write(&config, text).unwrap();
        Deployment { url, schema, dir, config }
    }

    /// A connection to the deployment's schema, to look at it as `psql` would.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&PgConnectOptions::from_str(&self.url).unwrap()).await.unwrap()
    }

    /// Drops the schema and everything in it, once the sessions of its killed replicas are
    /// ended (a backend may go on with a statement long after its client was killed, and one
    /// deadlocked with the drop before); again after a deadlock or a lock waited for too long.
    pub async fn drop_schema(self, server: &str) {
        let mut admin = PgConnection::connect(server).await.unwrap();
        let drop = format!("DROP SCHEMA {} CASCADE", self.schema);
        sqlx::query("SET lock_timeout = '10s'").execute(&mut admin).await.unwrap();
        for attempt in 1.. {
            let ended = sqlx::query(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.schema)
            .execute(&mut admin)
            .await;
            if let Err(error) = ended {
                eprintln!("ending the sessions of {}: {error}", self.schema);
            }
            match sqlx::query(sqlx::AssertSqlSafe(drop.clone())).execute(&mut admin).await {
                Ok(_) => return,
                Err(error) if attempt < 30 => {
                    eprintln!("dropping {}: {error}; again", self.schema);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => {
                    eprintln!("dropping {}: {error}; left in place, drop it by hand", self.schema);
                    return;
                }
            }
        }
    }

    /// `count` replicas, started, each on a loopback port of its own.
    pub async fn replicas(&self, count: usize) -> Vec<Replica> {
        let mut replicas = Vec::new();
        for slot in 0..count {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let log = self.dir.path().join(format!("replica-{slot}.log"));
            let mut replica = Replica { port, child: None, log, config: self.config.clone() };
            replica.start().await;
            replicas.push(replica);
        }
        replicas
    }
}

/// A `phasegate serve` process (the release binary), killed when dropped.
pub struct Replica {
    pub port: u16,
    child: Option<Child>,
    log: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Replica {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process and waits until `/healthz` answers.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        // Another build's binary (`PHASEGATE_BENCH_BIN`), to measure before and after a change.
        let binary =
            std::env::var("PHASEGATE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_phasegate").to_string());
        let child = std::process::Command::new(binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the phasegate binary starts");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(format!("{}/healthz", self.base())).send().await
                && response.status().is_success()
            {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none() && started.elapsed() < Duration::from_secs(30), "{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("a running replica");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Delivery `number`'s body, for the incident of `group`, and its signed headers.
pub fn signed(number: usize, group: usize) -> (String, [(&'static str, String); 3]) {
    let body = serde_json::json!({ "kind": "alert", "group": format!("g{group}"), "number": number }).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let headers = [
        ("x-hub-signature-256", format!("sha256={}", hex::encode(mac.finalize().into_bytes()))),
        ("x-github-delivery", format!("bench-{number}")),
        ("content-type", "application/json".to_string()),
    ];
    (body, headers)
}

/// Sends delivery `number` until a replica acknowledges it (2xx), from replica `number` on.
pub async fn deliver(client: &reqwest::Client, bases: &[String], number: usize, group: usize) {
    let (body, headers) = signed(number, group);
    for attempt in 0.. {
        let mut request = client.post(format!("{}/hooks/siem", bases[(number + attempt) % bases.len()]));
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        match request.body(body.clone()).send().await.map(|response| response.status().as_u16()) {
            Ok(200 | 202) => return,
            Ok(408 | 503) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(other) => panic!("delivery {number}: {other}"),
        }
    }
}

/// `clients` closed-loop clients sending deliveries from `next` on (each `per_group` to a group)
/// until `until` says stop, counting those acknowledged in `acknowledged`.
pub async fn storm(
    bases: Vec<String>,
    clients: usize,
    (next, acknowledged): (Arc<AtomicUsize>, Arc<AtomicUsize>),
    per_group: usize,
    until: impl Fn(usize) -> bool + Send + Sync + 'static,
) {
    let (bases, until) = (Arc::new(bases), Arc::new(until));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (bases, until, next, acknowledged) =
                (Arc::clone(&bases), Arc::clone(&until), Arc::clone(&next), Arc::clone(&acknowledged));
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                loop {
                    let number = next.fetch_add(1, Ordering::Relaxed);
                    if until(number) {
                        return;
                    }
                    deliver(&client, &bases, number, number / per_group).await;
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// A query's one number.
pub async fn number(connection: &mut PgConnection, query: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query.to_string())).fetch_one(connection).await.unwrap()
}
