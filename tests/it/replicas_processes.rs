//! Three `phasegate serve` processes on one PostgreSQL database, as a deployment runs them (the
//! built binary, not the library): a storm of signed webhook deliveries spread over them by the
//! test's own clients while one replica after another is killed with SIGKILL and started again;
//! and a replica frozen with SIGSTOP past its lease, then resumed. A loopback stub stands for the
//! outside system the incidents' http step calls, and counts each `Idempotency-Key`.
//!
//! What must hold afterwards (issue 16): no deduplication key opened two incidents; every
//! delivery a replica acknowledged (2xx) is stored and applied to its key's incident; every
//! effect's result is in the log once; the stub saw a key again only where a replica died (or
//! froze) holding it, at most once a kill; `phasegate audit verify --all` passes. Randomness
//! (which replica dies when) comes from a fixed seed that a failure names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use phasegate::engine::EventKind;
use phasegate::store::{PostgresStore, Store};
use serde_json::{Value, json};

use crate::support::postgres::{self, Schema};
use crate::support::{Cli, Received, Reply, Stub, wait_until};

const SEED: u64 = 0x5107_3a11_0516;
/// Deliveries in the storm, over `KEYS` deduplication keys: each key's first delivery to be
/// applied starts its incident, the others attach to it.
const DELIVERIES: usize = 2_400;
const KEYS: usize = 240;
/// The test's HTTP clients, each sending one delivery at a time.
const CLIENTS: usize = 24;
const REPLICAS: usize = 3;
/// The webhook source's GitHub-style HMAC secret.
const SECRET: &str = "storm-siem-hmac-secret-for-tests";
/// The replicas' connections name themselves so, to be told from other sessions on the server.
const APPLICATION: &str = "phasegate-replicas-test";
/// How long replicas are killed for, at least: the storm lasts less on a quiet machine.
const KILLING: Duration = Duration::from_secs(30);
/// How long the deliveries and then their application may take, each.
const LIMIT: Duration = Duration::from_secs(300);
/// How long a replica may take to answer `/healthz` after it is started.
const STARTUP: Duration = Duration::from_secs(20);

/// One http step per incident, on the stub; the trigger starts an incident per `group`.
const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: storm
title: Webhook storm
inputs:
  group: { type: string }
roles:
  responder: {}
phases:
  - id: contain
    steps:
      - id: isolate
        timeout: 60s
        retry: { attempts: 20, backoff: 1s, max_backoff: 1s }
        http: { method: POST, url: "STUB/isolate", body: { group: "${ inputs.group }" } }
triggers:
  - id: siem-alert
    source: siem
    format: json
    when: 'payload.kind == "alert"'
    key: '"storm/" + payload.group'
    start:
      inputs:
        group: payload.group
"#;

/// A small linear congruential generator: enough randomness, and the same every run.
struct Lcg(u64);

impl Lcg {
    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        low + (self.0 >> 33) % (high - low + 1)
    }
}

/// What the stub saw: every request of every key, counted. It behaves like a server that honours
/// `Idempotency-Key`: the effect of a key happens once, a repeat is answered without doing it.
#[derive(Default)]
struct Ledger {
    deliveries: BTreeMap<String, u32>,
    unkeyed: usize,
}

fn record(ledger: &Mutex<Ledger>, request: &Received) -> Option<u32> {
    let mut ledger = ledger.lock().unwrap();
    let Some(key) = request.header("idempotency-key") else {
        ledger.unkeyed += 1;
        return None;
    };
    let count = ledger.deliveries.entry(key.to_string()).or_default();
    *count += 1;
    Some(*count)
}

/// A configuration, a runbooks directory and logs, in a directory of the test's own, over the
/// PostgreSQL schema `schema`.
struct Deployment {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Deployment {
    fn new(schema: &Schema, stub: &Stub) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let runbooks = dir.path().join("runbooks");
        std::fs::create_dir(&runbooks).unwrap();
        std::fs::write(runbooks.join("storm.yaml"), RUNBOOK.replace("STUB", stub.base())).unwrap();
        std::fs::write(dir.path().join("siem-secret"), SECRET).unwrap();
        // The stub is on loopback, which the outbound policy refuses unless it is allowed.
        let text = format!(
            "database: '{db}&application_name={APPLICATION}'\nrunbooks: {runbooks}\npeople:\n  riley: {{ roles: [responder] }}\n\
             secrets:\n  siem-secret: {{ file: {secret} }}\n\
             server:\n  sources:\n    siem: {{ scheme: github, secrets: [siem-secret] }}\n\
             outbound:\n  allow: [127.0.0.1/32]\n",
            db = schema.url(),
            runbooks = runbooks.display(),
            secret = dir.path().join("siem-secret").display(),
        );
        let config = dir.path().join("phasegate.yaml");
        std::fs::write(&config, text).unwrap();
        Deployment { dir, config }
    }

    /// The replica in slot `slot`, not yet started, on a free loopback port of its own that it
    /// keeps across restarts (so that clients keep their addresses).
    fn replica(&self, slot: usize) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Replica { slot, port, child: None, log: self.dir.path().join(format!("replica-{slot}.log")) }
    }

    /// `phasegate audit verify --all` over the shared database.
    fn verify_all(&self) {
        Cli::new().args(["audit", "verify", "--all", "--config"]).args([self.config.as_os_str()]).succeeds();
    }
}

/// A `phasegate serve` process, killed with SIGKILL when dropped, so that a failing test leaves
/// none behind.
struct Replica {
    slot: usize,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Replica {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("a running replica").id() as i32)
    }

    /// Starts the process (its log appended to the slot's file) and waits until it answers.
    async fn start(&mut self, deployment: &Deployment) {
        assert!(self.child.is_none(), "replica {} is already running", self.slot);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_phasegate"))
            .args(["serve", "--interval", "200ms", "--listen", &format!("127.0.0.1:{}", self.port), "--config"])
            .arg(&deployment.config)
            .env_remove("PHASEGATE_DB")
            .env_remove("PHASEGATE_TEMPLATES")
            .env_remove("PHASEGATE_NOTIFY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the phasegate binary starts");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let (health, log) = (format!("{}/healthz", self.base()), self.log.clone());
        let child = self.child.as_mut().expect("just started");
        wait_until(&format!("replica {} to answer", self.slot), STARTUP, async || {
            if let Some(exited) = child.try_wait().unwrap() {
                return Err(format!("it exited ({exited}):\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
            }
            match client.get(&health).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("/healthz answered {}", response.status())),
                Err(error) => Err(error.to_string()),
            }
        })
        .await;
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap it. Fails if it had stopped by itself.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("a running replica");
        if let Some(exited) = child.try_wait().unwrap() {
            panic!("seed {SEED:#x}: replica {} stopped by itself ({exited}):\n{}", self.slot, self.log());
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of delivery `number` and its headers, signed as the `github` scheme requires.
fn signed(number: usize) -> (String, [(&'static str, String); 3]) {
    let body = json!({ "kind": "alert", "group": format!("g{}", number % KEYS), "number": number }).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("x-hub-signature-256", signature),
        ("x-github-delivery", format!("storm-{number}")),
        ("content-type", "application/json".to_string()),
    ];
    (body, headers)
}

/// Sends delivery `number` until a replica acknowledges it, starting with replica `first` and
/// moving to the next after a refused connection, a lost answer or a 503 (a replica dying or
/// full): the delivery's id, as the acknowledging replica gave it.
async fn deliver(client: &reqwest::Client, bases: &[String], number: usize, deadline: Instant) -> String {
    let (body, headers) = signed(number);
    let mut attempt = 0;
    loop {
        attempt += 1;
        assert!(Instant::now() < deadline, "seed {SEED:#x}: delivery {number} was never acknowledged");
        let base = &bases[(number + attempt) % bases.len()];
        let mut request = client.post(format!("{base}/hooks/siem")).body(body.clone());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let Ok(response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let status = response.status().as_u16();
        let Ok(text) = response.text().await else { continue };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match status {
            200 | 202 => return answer["delivery"].as_str().expect("the delivery's id").to_string(),
            // Full, or out of time under load: not acknowledged, so sent again.
            408 | 503 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("delivery {number}: {other} {answer}"),
        }
    }
}

#[test]
fn a_webhook_storm_over_three_replicas_killed_in_turn_loses_and_repeats_nothing() {
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let stub = Stub::start({
        let ledger = Arc::clone(&ledger);
        move |request| {
            record(&ledger, request);
            Reply::json(200, json!({ "isolated": true })).after(Duration::from_millis(30))
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let Some(schema) = postgres::schema().await else { return };
        let deployment = Deployment::new(&schema, &stub);
        let mut replicas: Vec<Replica> = (0..REPLICAS).map(|slot| deployment.replica(slot)).collect();
        for replica in &mut replicas {
            replica.start(&deployment).await;
        }
        let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(Replica::base).collect());

        // The storm: each client takes the next delivery until all are acknowledged.
        let began = Instant::now();
        let deadline = began + LIMIT;
        let next = Arc::new(AtomicUsize::new(0));
        let acknowledged: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (next, acknowledged, bases) = (Arc::clone(&next), Arc::clone(&acknowledged), Arc::clone(&bases));
                tokio::spawn(async move {
                    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                    loop {
                        let number = next.fetch_add(1, Ordering::Relaxed);
                        if number >= DELIVERIES {
                            return;
                        }
                        let id = deliver(&client, &bases, number, deadline).await;
                        acknowledged.lock().unwrap().push((number, id));
                    }
                })
            })
            .collect();

        // Meanwhile, and for at least `KILLING`, a replica is killed every 1.5-3 s and started
        // again. Then everything is applied and done, once the last kill's claims run out.
        let store = PostgresStore::connect(schema.options()).await.unwrap();
        let settled = async || {
            let waiting = store.inbox_depth().await.unwrap();
            let pending = store.pending_effects(1).await.unwrap().len();
            let incidents = store.incidents().await.unwrap().len();
            if waiting == 0 && pending == 0 && incidents >= KEYS {
                Ok(())
            } else {
                Err(format!("{waiting} deliveries waiting, effects pending: {pending}, {incidents} incidents"))
            }
        };
        let mut random = Lcg(SEED);
        let mut kills = 0;
        while clients.iter().any(|client| !client.is_finished()) || began.elapsed() < KILLING {
            tokio::time::sleep(Duration::from_millis(random.between(1_500, 3_000))).await;
            let victim = &mut replicas[random.between(0, REPLICAS as u64 - 1) as usize];
            victim.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(random.between(100, 800))).await;
            victim.start(&deployment).await;
        }
        let stormed = began.elapsed();
        for client in clients {
            client.await.unwrap();
        }
        let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
        assert_eq!(acknowledged.len(), DELIVERIES);
        wait_until("every delivery applied and every effect recorded", LIMIT, settled).await;
        let logs = || replicas.iter().map(Replica::log).collect::<Vec<_>>().join("\n----\n");
        eprintln!(
            "storm: {DELIVERIES} deliveries over {REPLICAS} replicas, {kills} kills until {stormed:?}, \
             everything applied and done at {:?}",
            began.elapsed()
        );

        // One incident per key, and every incident's effect carried out and recorded once.
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for summary in store.incidents().await.unwrap() {
            by_key.entry(summary.key.clone().expect("started by the trigger")).or_default().push(summary.id);
        }
        let twice: Vec<_> = by_key.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(twice.is_empty(), "seed {SEED:#x}: keys that opened more than one incident: {twice:?}");
        assert_eq!(by_key.len(), KEYS, "every key opened its incident");
        let mut keys = BTreeSet::new();
        for ids in by_key.values() {
            let events = store.events(&ids[0]).await.unwrap();
            let results: Vec<&EventKind> = events
                .iter()
                .map(|event| &event.kind)
                .filter(|kind| matches!(kind, EventKind::StepDone { .. } | EventKind::StepFailed { .. }))
                .collect();
            assert!(
                matches!(results.as_slice(), [EventKind::StepDone { step, .. }] if step == "isolate"),
                "seed {SEED:#x}: `{}` records its one effect once, done: {results:?}",
                ids[0]
            );
            keys.insert(format!("{}/contain/isolate", ids[0]));
        }

        // Every acknowledged delivery is stored, applied without error, to its key's incident.
        for (number, id) in &acknowledged {
            let receipt = store.receipt("siem", id).await.unwrap();
            let receipt = receipt.unwrap_or_else(|| panic!("seed {SEED:#x}: acknowledged delivery {number} is lost"));
            let (_, outcome) = receipt.applied.unwrap_or_else(|| panic!("delivery {number} was never applied"));
            let outcome: Value = serde_json::from_str(&outcome).unwrap();
            let dones = outcome["done"].as_array().unwrap_or_else(|| panic!("delivery {number}: {outcome}"));
            let incident = &by_key[&format!("storm/g{}", number % KEYS)][0];
            for done in dones {
                assert!(["started", "attached", "duplicate"].contains(&done["did"].as_str().unwrap()), "{done}");
                if let Some(to) = done["incident"].as_str() {
                    assert_eq!(to, incident, "delivery {number} was applied to its key's incident");
                }
            }
        }

        // At the stub: exactly the incidents' keys; a key again only where a kill cut its record off.
        let (unkeyed, deliveries) = {
            let ledger = ledger.lock().unwrap();
            (ledger.unkeyed, ledger.deliveries.clone())
        };
        assert_eq!(unkeyed, 0, "every request carried an idempotency key");
        let seen: BTreeSet<String> = deliveries.keys().cloned().collect();
        assert_eq!(seen, keys, "the stub saw each incident's key, and no other");
        let repeats: u32 = deliveries.values().map(|count| count - 1).sum();
        eprintln!("storm: {repeats} requests repeated a key after a kill");
        assert!(
            repeats as usize <= kills,
            "seed {SEED:#x}: {repeats} repeated requests, more than the {kills} kills could cause:\n{}",
            logs()
        );
        // Idle replicas hold no transaction open, their LISTEN connections included: none pins
        // the horizon (a trap of the job queues, docs/replicas.md).
        let mut look = schema.connect().await;
        for _ in 0..5 {
            let (sessions, in_transaction): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%' AND backend_xmin IS NOT NULL)
                 FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(APPLICATION)
            .fetch_one(&mut look)
            .await
            .unwrap();
            assert!(sessions >= REPLICAS as i64, "each replica has its connections, its listener's among them");
            assert_eq!(in_transaction, 0, "no idle replica's session holds a snapshot");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for replica in &replicas {
            assert!(!replica.log().contains("panicked"), "replica {} panicked:\n{}", replica.slot, replica.log());
        }
        store.close().await;
        deployment.verify_all();
    });
}

#[test]
fn a_replica_frozen_past_its_lease_and_resumed_records_nothing_over_its_successor() {
    // The stub freezes the replica whose request it receives first, before answering it (a 500,
    // which that replica would record as a failure); the successor's request gets a 200.
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let frozen = Arc::new(AtomicI32::new(0));
    let stub = Stub::start({
        let (ledger, frozen) = (Arc::clone(&ledger), Arc::clone(&frozen));
        move |request| {
            if record(&ledger, request) == Some(1) {
                kill(Pid::from_raw(frozen.load(Ordering::SeqCst)), Signal::SIGSTOP).unwrap();
                return Reply::json(500, json!({ "error": "try again" })).after(Duration::from_millis(200));
            }
            Reply::json(200, json!({ "isolated": true }))
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let Some(schema) = postgres::schema().await else { return };
        let deployment = Deployment::new(&schema, &stub);
        let (mut first, mut second) = (deployment.replica(0), deployment.replica(1));
        first.start(&deployment).await;
        frozen.store(first.pid().as_raw(), Ordering::SeqCst);

        // One delivery to the first replica: it starts the incident and claims its effect.
        let client = reqwest::Client::new();
        deliver(&client, &[first.base()], 0, Instant::now() + Duration::from_secs(20)).await;
        wait_until("the first replica to send the effect and freeze", Duration::from_secs(20), async || {
            ledger.lock().unwrap().deliveries.len() == 1
        })
        .await;

        // The second replica takes the effect over once the lease runs out, and records it.
        second.start(&deployment).await;
        let store = PostgresStore::connect(schema.options()).await.unwrap();
        let incident = wait_until("the incident", Duration::from_secs(10), async || {
            store.incidents().await.unwrap().first().map(|summary| summary.id.clone())
        })
        .await;
        let results = async || {
            store
                .events(&incident)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|event| match event.kind {
                    EventKind::StepDone { step, .. } => Some(format!("done {step}")),
                    EventKind::StepFailed { step, error, .. } => Some(format!("failed {step}: {error}")),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        wait_until("the successor to record the effect", Duration::from_secs(40), async || {
            results().await == ["done isolate"]
        })
        .await;

        // Resumed, the first replica reads its answer and is refused when it records it.
        kill(first.pid(), Signal::SIGCONT).unwrap();
        wait_until("the resumed replica to be refused", Duration::from_secs(30), async || {
            first.log().contains("was taken over; its result is not recorded")
        })
        .await;
        assert_eq!(results().await, ["done isolate"], "only the successor's result is in the log:\n{}", first.log());
        let key = format!("{incident}/contain/isolate");
        let seen = ledger.lock().unwrap().deliveries.clone();
        assert_eq!(seen, BTreeMap::from([(key, 2)]), "sent by each replica once, with the same key");
        assert!(store.pending_effects(10).await.unwrap().is_empty());
        store.close().await;
        deployment.verify_all();
    });
}

/// The incidents' leases (`incident/ID`) held now, by holder: those that have not run out, and
/// those standing on their holder's presence (`lease_until` infinite) while its `replica/HOLDER`
/// lease has not run out.
async fn incident_holders(look: &mut sqlx::PgConnection) -> BTreeMap<String, BTreeSet<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT holder, name FROM leases AS incident WHERE starts_with(name, 'incident/') AND lease_until >= now()
             AND (lease_until < 'infinity' OR EXISTS (
                 SELECT 1 FROM leases AS presence
                 WHERE presence.name = 'replica/' || incident.holder AND presence.lease_until >= now()
             ))",
    )
    .fetch_all(look)
    .await
    .unwrap();
    let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (holder, name) in rows {
        holders.entry(holder).or_default().insert(name);
    }
    holders
}

/// The replica (its pid) a holder names (`pidPID-RANDOM`).
fn holder_pid(holder: &str) -> i32 {
    holder.strip_prefix("pid").and_then(|rest| rest.split('-').next()?.parse().ok()).expect("a holder names its pid")
}

/// How many incidents each replica holds, by slot, or what is wrong: an incident held by none,
/// or a holder that is no running replica.
fn spread(
    holders: &BTreeMap<String, BTreeSet<String>>,
    replicas: &[Replica],
    incidents: usize,
) -> Result<Vec<usize>, String> {
    let mut each = vec![0; replicas.len()];
    for (holder, names) in holders {
        let pid = holder_pid(holder);
        let Some(slot) =
            replicas.iter().position(|replica| replica.child.as_ref().is_some_and(|child| child.id() as i32 == pid))
        else {
            return Err(format!("{} incidents still held by {holder}, no running replica", names.len()));
        };
        each[slot] += names.len();
    }
    let held: usize = each.iter().sum();
    if held < incidents {
        return Err(format!("{held} of {incidents} incidents held, by slot {each:?}"));
    }
    Ok(each)
}

#[test]
fn three_replicas_share_the_incidents_and_the_others_take_a_dead_ones_within_the_lease() {
    const INCIDENTS: usize = 30;
    const LEASE: Duration = Duration::from_secs(12);
    let stub = Stub::start(|_| Reply::json(200, json!({ "isolated": true })));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let Some(schema) = postgres::schema().await else { return };
        let deployment = Deployment::new(&schema, &stub);
        let mut replicas: Vec<Replica> = (0..REPLICAS).map(|slot| deployment.replica(slot)).collect();
        for replica in &mut replicas {
            replica.start(&deployment).await;
        }
        let bases: Vec<String> = replicas.iter().map(Replica::base).collect();
        let client = reqwest::Client::new();
        for number in 0..INCIDENTS {
            // A group (deduplication key) each: thirty incidents.
            deliver(&client, &bases, number, Instant::now() + LIMIT).await;
        }
        let mut look = schema.connect().await;

        // Each replica holds some of the thirty, and together they hold them all.
        let share = INCIDENTS.div_ceil(REPLICAS) + 1;
        let each = wait_until("every replica to hold some of the incidents", LIMIT, async || {
            let each = spread(&incident_holders(&mut look).await, &replicas, INCIDENTS)?;
            if each.contains(&0) { Err(format!("by slot {each:?}")) } else { Ok(each) }
        })
        .await;
        assert!(each.iter().all(|held| *held <= share), "none holds more than its share ({share}): {each:?}");

        // One killed: the others hold its incidents, each taken at most a lease after the dead
        // one's presence lease ran out, on which its incidents' leases stood (the database's
        // clock; a look every few milliseconds).
        let victim = 0;
        let dead = format!("pid{}-", replicas[victim].pid().as_raw());
        let held: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM leases WHERE starts_with(name, 'incident/') AND starts_with(holder, $1)",
        )
        .bind(&dead)
        .fetch_all(&mut look)
        .await
        .unwrap();
        assert!(!held.is_empty());
        replicas[victim].kill();
        let mut taken: BTreeMap<String, f64> = BTreeMap::new();
        wait_until("the others to take the dead replica's incidents", LIMIT, async || {
            let now: f64 =
                sqlx::query_scalar("SELECT extract(epoch FROM now())::float8").fetch_one(&mut look).await.unwrap();
            for (holder, names) in incident_holders(&mut look).await {
                if !holder.starts_with(&dead) {
                    for name in names.into_iter().filter(|name| held.contains(name)) {
                        taken.entry(name).or_insert(now);
                    }
                }
            }
            if taken.len() == held.len() { Ok(()) } else { Err(format!("{} of {} taken", taken.len(), held.len())) }
        })
        .await;
        let gone: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM lease_until)::float8 FROM leases WHERE starts_with(name, 'replica/' || $1)",
        )
        .bind(&dead)
        .fetch_one(&mut look)
        .await
        .unwrap();
        for (name, at) in &taken {
            let unowned = at - gone;
            assert!(
                unowned < LEASE.as_secs_f64(),
                "{name} waited {unowned:.1} s without a holder after its lease ran out"
            );
        }
        let each = spread(&incident_holders(&mut look).await, &replicas, INCIDENTS).unwrap();
        assert_eq!(each[victim], 0);
        let share = INCIDENTS.div_ceil(REPLICAS - 1) + 1;
        assert!(each.iter().all(|held| *held <= share), "none holds more than its share ({share}): {each:?}");

        // Started again, it is given some back: the others let go of those above the new share.
        replicas[victim].start(&deployment).await;
        wait_until("the restarted replica to hold some incidents", LIMIT, async || {
            let each = spread(&incident_holders(&mut look).await, &replicas, INCIDENTS)?;
            if each.contains(&0) { Err(format!("by slot {each:?}")) } else { Ok(()) }
        })
        .await;
    });
}
