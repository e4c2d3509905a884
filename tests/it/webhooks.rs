//! Webhook deliveries through the server: authenticated before anything is read, deduplicated,
//! stored before they are answered, and acted on as the runbooks' triggers say.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use phasegate::engine::Event;
use phasegate::store::{Delivery, Headers, SqliteStore, Store};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::{Cli, Serving, answer, root, wait_until};

pub const TOKEN: &str = "alertmanager-bearer-token-for-tests";
/// The EDR's Standard Webhooks secret (`whsec_` and base64).
const EDR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The SIEM's GitHub-style HMAC secret.
const SIEM_SECRET: &str = "siem-hmac-secret-for-tests";
/// The API token of the person who reads what deliveries did.
const READER: &str = "reader-token-for-webhook-tests";

/// A running server with an `alertmanager` source (bearer token) and the repository's runbooks.
pub struct Hooks {
    pub base: String,
    pub db: std::path::PathBuf,
    serving: Serving,
    client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// A server's configuration and database, written but not yet served: what a test stores in the
/// database before any server runs.
pub struct Prepared {
    pub config: std::path::PathBuf,
    pub db: std::path::PathBuf,
    pub dir: tempfile::TempDir,
}

impl Hooks {
    pub async fn start(listen: &str) -> Hooks {
        Hooks::serve(Hooks::prepare(), listen).await
    }

    /// Writes the secrets and the configuration in a new directory; nothing opens the database.
    pub fn prepare() -> Prepared {
        Hooks::prepare_with(&root().join("runbooks"))
    }

    /// [`Hooks::prepare`], with the runbooks of `runbooks`.
    pub fn prepare_with(runbooks: &std::path::Path) -> Prepared {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("phasegate.db");
        Hooks::prepare_in(dir, db, runbooks)
    }

    /// [`Hooks::prepare`] over the PostgreSQL schema `schema`.
    pub fn prepare_on(schema: &crate::support::postgres::Schema) -> Prepared {
        Hooks::prepare_in(tempfile::tempdir().unwrap(), schema.url().into(), &root().join("runbooks"))
    }

    fn prepare_in(dir: tempfile::TempDir, db: std::path::PathBuf, runbooks: &std::path::Path) -> Prepared {
        std::fs::write(dir.path().join("am-token"), TOKEN).unwrap();
        std::fs::write(dir.path().join("edr-secret"), EDR_SECRET).unwrap();
        std::fs::write(dir.path().join("siem-secret"), SIEM_SECRET).unwrap();
        let text = format!(
            "database: '{db}'\nrunbooks: {runbooks}\npeople:\n  dana.ito: {{ roles: [incident-commander] }}\n\
             secrets:\n  am-token: {{ file: {token} }}\n  edr-secret: {{ file: {edr} }}\n  siem-secret: {{ file: {siem} }}\n\
             server:\n  max_body: 65536\n  tokens:\n    reader: {{ person: dana.ito, sha256: {reader} }}\n  sources:\n    alertmanager: {{ scheme: bearer, secrets: [am-token] }}\n    \
             edr: {{ scheme: standard_webhooks, secrets: [edr-secret] }}\n    siem: {{ scheme: github, secrets: [siem-secret] }}\n",
            db = db.display(),
            runbooks = runbooks.display(),
            token = dir.path().join("am-token").display(),
            edr = dir.path().join("edr-secret").display(),
            siem = dir.path().join("siem-secret").display(),
            reader = phasegate::engine::decide::sha256_hex(READER),
        );
        let config = dir.path().join("phasegate.yaml");
        std::fs::write(&config, text).unwrap();
        Prepared { config, db, dir }
    }

    /// Starts a server on a prepared configuration and database.
    pub async fn serve(prepared: Prepared, listen: &str) -> Hooks {
        let Prepared { config, db, dir } = prepared;
        let serving = Serving::start(&config, listen, Duration::from_millis(200)).await;
        Hooks { base: serving.base.clone(), db, serving, client: reqwest::Client::new(), dir }
    }

    /// [`Hooks::serve`], over a store whose inbox shows nothing waiting while the flag it returns
    /// is set (`server::Counting`).
    pub async fn serve_holding(prepared: Prepared, listen: &str) -> (Hooks, Arc<std::sync::atomic::AtomicBool>) {
        let Prepared { config, db, dir } = prepared;
        let config = phasegate::config::Config::load(Some(&config), &Default::default()).unwrap();
        let holding = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let inner = SqliteStore::open(&config.database).await.unwrap();
        let store = crate::server::Counting { holding: Arc::clone(&holding), ..crate::server::Counting::new(inner) };
        let serving = Serving::start_over(store, config, listen, Duration::from_millis(50)).await;
        (Hooks { base: serving.base.clone(), db, serving, client: reqwest::Client::new(), dir }, holding)
    }

    pub async fn post(&self, source: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        self.post_with(source, token, &[], body).await
    }

    pub async fn post_with(
        &self,
        source: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: &str,
    ) -> (u16, Value) {
        let mut request = self.client.post(format!("{}/hooks/{source}", self.base)).body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        answer(request.send().await.unwrap()).await
    }

    /// Posts a body in chunks (`Transfer-Encoding: chunked`, no length announced), over a
    /// connection of its own; the server may answer before it has read them all.
    pub async fn post_chunked(&self, source: &str, token: &str, chunks: &[&str]) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /hooks/{source} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let mut request = head.into_bytes();
        for chunk in chunks {
            request.extend(format!("{:x}\r\n{chunk}\r\n", chunk.len()).bytes());
        }
        request.extend(b"0\r\n\r\n");
        // Refused halfway, the rest may not be taken: what counts is the answer.
        let _ = stream.write_all(&request).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
    }

    /// What each trigger did with a delivery, once the inbox task has applied it (read through the
    /// API, waiting up to ten seconds).
    pub async fn applied(&self, source: &str, received: &Value) -> Vec<Value> {
        let receipt = self.settled(source, received).await;
        receipt["done"].as_array().unwrap_or_else(|| panic!("what it did: {receipt}")).clone()
    }

    /// A delivery's receipt once the inbox task has applied it, whatever it did (waiting up to ten
    /// seconds).
    async fn settled(&self, source: &str, received: &Value) -> Value {
        let id = received["delivery"].as_str().unwrap_or_else(|| panic!("a delivery id in {received}"));
        wait_until(&format!("delivery `{id}` applied"), Duration::from_secs(10), async || {
            let (status, receipt) = self.receipt(source, id, Some(READER)).await;
            assert_eq!(status, 200, "{receipt}");
            if receipt["state"] == "applied" { Ok(receipt) } else { Err(receipt.to_string()) }
        })
        .await
    }

    /// `GET /api/v1/webhooks/{source}/deliveries/{id}` with an API token, or none.
    async fn receipt(&self, source: &str, id: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}/api/v1/webhooks/{source}/deliveries/{id}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.unwrap()).await
    }

    /// Every incident and its events, read from the database.
    pub async fn incidents(&self) -> Vec<(String, Vec<Event>)> {
        let store = phasegate::store::AnyStore::open(&self.db).await.unwrap();
        let mut found = Vec::new();
        for incident in store.incidents().await.unwrap() {
            found.push((incident.id.clone(), store.events(&incident.id).await.unwrap()));
        }
        store.close().await;
        found
    }

    pub async fn stop(self) {
        self.serving.stop().await;
    }
}

/// An Alertmanager notification (webhook version 4) of one alert the reference runbook starts on.
pub fn notification(status: &str, starts_at: &str) -> String {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"LoyaltyDbBulkRead\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "phasegate",
        "groupLabels": { "alertname": "LoyaltyDbBulkRead" },
        "commonLabels": { "alertname": "LoyaltyDbBulkRead", "estate": "uk-retail", "severity": "critical" },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": status,
            "labels": { "alertname": "LoyaltyDbBulkRead", "estate": "uk-retail", "severity": "critical" },
            "annotations": { "summary": "bulk read of the loyalty database" },
            "startsAt": starts_at,
            "endsAt": if status == "resolved" { "2026-11-24T03:00:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": "c0ffee0123456789",
        }],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_opens_one_incident_a_repeat_joins_it_and_its_resolution_is_recorded() {
    let hooks = Hooks::start("127.0.0.1:0").await;
    let firing = notification("firing", "2026-11-24T02:14:00Z");
    let (status, answer) = hooks.post("alertmanager", Some(TOKEN), &firing).await;
    assert_eq!((status, &answer["state"]), (202, &json!("received")), "{answer}");
    let done = hooks.applied("alertmanager", &answer).await;
    let started = done.iter().find(|done| done["did"] == "started").expect("started");
    let id = started["incident"].as_str().unwrap().to_string();

    // Alertmanager's retry of the same notification changes nothing.
    let (status, again) = hooks.post("alertmanager", Some(TOKEN), &firing).await;
    assert_eq!((status, &again["state"], &again["delivery"]), (200, &json!("duplicate"), &answer["delivery"]));
    // The alert again (a new notification for the same alert): it joins the open incident.
    let (status, answer) =
        hooks.post("alertmanager", Some(TOKEN), &notification("firing", "2026-11-24T02:19:00Z")).await;
    assert_eq!(status, 202, "{answer}");
    let done = hooks.applied("alertmanager", &answer).await;
    assert!(done.iter().any(|done| done["did"] == "attached" && done["incident"] == id.as_str()), "{done:?}");
    let (status, answer) =
        hooks.post("alertmanager", Some(TOKEN), &notification("resolved", "2026-11-24T02:14:00Z")).await;
    assert_eq!(status, 202, "{answer}");
    let done = hooks.applied("alertmanager", &answer).await;
    assert!(done.iter().any(|done| done["did"] == "resolved"), "{done:?}");
    hooks.stop_and_check(&id).await;
}

impl Hooks {
    async fn stop_and_check(self, id: &str) {
        let incidents = self.incidents().await;
        assert_eq!(incidents.len(), 1, "one incident: {:?}", incidents.iter().map(|(id, _)| id).collect::<Vec<_>>());
        let (found, events) = &incidents[0];
        assert_eq!(found, id);
        assert!(events[0].actor.starts_with("trigger:"), "started by the trigger: {}", events[0].actor);
        let notes: Vec<&str> = events.iter().filter_map(|event| event.reason.as_deref()).collect();
        assert!(notes.iter().any(|n| n.starts_with("LoyaltyDbBulkRead fired again")), "{notes:?}");
        assert!(notes.iter().any(|n| n.starts_with("LoyaltyDbBulkRead resolved")), "{notes:?}");
        self.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_refused_and_store_nothing() {
    let hooks = Hooks::start("127.0.0.1:0").await;
    let firing = notification("firing", "2026-11-24T02:14:00Z");
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        ("alertmanager", None, firing.clone(), 401, "missing_header"),
        ("alertmanager", Some("forged"), firing.clone(), 401, "bad_token"),
        ("nowhere", Some(TOKEN), firing.clone(), 404, "not_found"),
        ("alertmanager", Some(TOKEN), "{\"version\": \"3\"}".into(), 400, "invalid_payload"),
        ("alertmanager", Some(TOKEN), "not json".into(), 400, "invalid_payload"),
        ("alertmanager", Some(TOKEN), format!("{{\"x\": \"{}\"}}", "a".repeat(70_000)), 413, "too_large"),
    ];
    for (source, token, body, status, code) in cases {
        let (answered, answer) = hooks.post(source, token, &body).await;
        assert_eq!(answered, status, "{source} {token:?}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(!answer.to_string().contains(TOKEN), "no secret in an answer");
    }
    assert!(hooks.incidents().await.is_empty(), "nothing was stored");
    let metrics = reqwest::get(format!("{}/metrics", hooks.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"source="(unknown)",result="refused",reason="unknown_source""#), "{metrics}");
    assert!(!metrics.contains("nowhere"), "a made-up source name never becomes a label");
    assert!(metrics.contains(r#"source="alertmanager",result="refused",reason="bad_token""#), "{metrics}");
    hooks.stop().await;
}

/// A body past `server.max_body` (64 KiB here) is answered as the API answers one: 413 with the
/// JSON error `too_large`, whether its length is announced or it comes in chunks; it stores
/// nothing and is counted by its reason. It was axum's plain-text 413, counted nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_as_too_large_in_json_and_counted() {
    let hooks = Hooks::start("127.0.0.1:0").await;
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(70_000));
    let (status, answer) = hooks.post("alertmanager", Some(TOKEN), &big).await;
    assert_eq!((status, &answer["error"]["code"]), (413, &json!("too_large")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("server.max_body"), "{answer}");
    // In chunks, without a length: refused once the limit is passed, the same way.
    let (status, answer) = hooks.post_chunked("alertmanager", TOKEN, &[&big[..40_000], &big[40_000..]]).await;
    assert_eq!((status, &answer["error"]["code"]), (413, &json!("too_large")), "{answer}");
    let store = SqliteStore::open(&hooks.db).await.unwrap();
    assert_eq!(store.inbox_depth().await.unwrap(), 0, "nothing was stored");
    store.close().await;
    let metrics = reqwest::get(format!("{}/metrics", hooks.base)).await.unwrap().text().await.unwrap();
    let counted = r#"phasegate_webhook_deliveries_total{source="alertmanager",result="refused",reason="too_large"} 2"#;
    assert!(metrics.contains(counted), "{metrics}");
    hooks.stop().await;
}

/// A resolved alert never opens an incident: with none open for it, its receipt says it was
/// ignored and why; once its firing has opened one, the resolution is recorded on that incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_alert_starts_no_incident_and_is_recorded_on_the_one_its_firing_opened() {
    let hooks = Hooks::start("127.0.0.1:0").await;
    let resolved = notification("resolved", "2026-11-24T01:00:00Z");
    let (status, answer) = hooks.post("alertmanager", Some(TOKEN), &resolved).await;
    assert_eq!(status, 202, "{answer}");
    let done = hooks.applied("alertmanager", &answer).await;
    let start = done.iter().find(|done| done["trigger"] == "siem-breach-alert").expect("the start trigger answered");
    assert_eq!(start["did"], "ignored", "{done:?}");
    assert!(start.get("incident").is_none(), "{done:?}");
    let why = start["why"].as_str().unwrap();
    assert!(why.contains("resolved") && why.contains("retail-breach/uk-retail"), "{why}");
    assert!(hooks.incidents().await.is_empty(), "a resolved alert opened an incident");

    let (_, answer) = hooks.post("alertmanager", Some(TOKEN), &notification("firing", "2026-11-24T02:14:00Z")).await;
    let done = hooks.applied("alertmanager", &answer).await;
    let opened = done.iter().find(|done| done["did"] == "started").unwrap_or_else(|| panic!("{done:?}"));
    let id = opened["incident"].as_str().unwrap().to_string();
    let (_, answer) = hooks.post("alertmanager", Some(TOKEN), &notification("resolved", "2026-11-24T02:14:00Z")).await;
    let done = hooks.applied("alertmanager", &answer).await;
    assert!(done.iter().any(|done| done["did"] == "resolved" && done["incident"] == id.as_str()), "{done:?}");
    let incidents = hooks.incidents().await;
    assert_eq!(incidents.len(), 1, "one incident");
    let notes: Vec<&str> = incidents[0].1.iter().filter_map(|event| event.reason.as_deref()).collect();
    assert!(notes.contains(&"LoyaltyDbBulkRead resolved (fingerprint c0ffee0123456789)"), "{notes:?}");
    hooks.stop().await;
}

/// `phasegate run` applies what waits in the inbox, as `serve` does: here a firing alert (it
/// starts an incident) and a resolution of an alert nothing opened (ignored, and it starts none).
/// Then nothing waits, and a second run applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phasegate_run_applies_the_deliveries_waiting_in_the_inbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/paged.yaml"), PAGED).unwrap();
    let config = dir.path().join("phasegate.yaml");
    std::fs::write(
        &config,
        "database: phasegate.db
runbooks: runbooks
people:
  dana: { roles: [lead] }
",
    )
    .unwrap();
    let db = dir.path().join("phasegate.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let mut other = notification("resolved", "2026-11-24T01:00:00Z");
    other = other.replace("c0ffee0123456789", "0ther").replace("\"LoyaltyDbBulkRead\"", "\"DiskFull\"");
    for (id, body) in [("am-1", notification("firing", "2026-11-24T02:14:00Z")), ("am-2", other)] {
        let delivery = Delivery { source: "alertmanager".into(), id: id.into(), received_at: Utc::now() };
        assert!(store.receive(&delivery, &Headers::new(), body.as_bytes()).await.unwrap());
    }
    store.close().await;

    let run = || Cli::new().current_dir(dir.path()).args(["run", "--config", "phasegate.yaml", "--format", "json"]);
    run().succeeds().stdout_has(r#""deliveries":2"#);
    let store = SqliteStore::open(&db).await.unwrap();
    let outcome = |receipt: Option<phasegate::store::Receipt>| -> Value {
        let (_, outcome) = receipt.expect("received").applied.expect("applied");
        serde_json::from_str(&outcome).unwrap()
    };
    let fired = outcome(store.receipt("alertmanager", "am-1").await.unwrap());
    assert_eq!(fired["done"][0]["did"], "started", "{fired}");
    let resolved = outcome(store.receipt("alertmanager", "am-2").await.unwrap());
    assert_eq!(resolved["done"][0]["did"], "ignored", "{resolved}");
    assert!(resolved["done"][0]["why"].as_str().unwrap().contains("resolved"), "{resolved}");
    let incidents = store.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1, "one incident, from the firing alert");
    assert_eq!(store.inbox_depth().await.unwrap(), 0);
    store.close().await;
    run().succeeds().stdout_has(r#""deliveries":0"#);
}

/// A runbook that one Alertmanager alert starts, keyed by its name.
const PAGED: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: paged
title: Paged
inputs:
  alert_name: { type: string }
roles:
  lead: {}
phases:
  - id: respond
    exit:
      - { id: handled, signal: { role: lead } }
triggers:
  - id: page
    source: alertmanager
    format: alertmanager
    when: alert.status == "firing"
    key: alert.labels.alertname
    start:
      inputs:
        alert_name: alert.labels.alertname
"#;

/// A storm: forty notifications of the same alert at once (each a delivery of its own). One
/// incident opens; every other delivery is recorded on it; none is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_storm_opens_one_incident_and_loses_nothing() {
    storm(Hooks::start("127.0.0.1:0").await).await;
}

/// The storm, with the server's store in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_storm_on_postgres_opens_one_incident_and_loses_nothing() {
    let Some(schema) = crate::support::postgres::schema().await else { return };
    storm(Hooks::serve(Hooks::prepare_on(&schema), "127.0.0.1:0").await).await;
}

async fn storm(hooks: Hooks) {
    let hooks = Arc::new(hooks);
    let deliveries: Vec<_> = (0..40)
        .map(|n| {
            let hooks = Arc::clone(&hooks);
            tokio::spawn(async move {
                let body = notification("firing", &format!("2026-11-24T02:{:02}:00Z", n % 60));
                let body = body.replace("c0ffee0123456789", &format!("c0ffee{n:010}"));
                hooks.post("alertmanager", Some(TOKEN), &body).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for delivery in deliveries {
        answers.push(delivery.await.unwrap());
    }
    assert!(answers.iter().all(|(status, _)| *status == 202), "{answers:?}");
    for (_, answer) in &answers {
        hooks.applied("alertmanager", answer).await;
    }
    let incidents = hooks.incidents().await;
    assert_eq!(incidents.len(), 1, "one incident");
    let events = &incidents[0].1;
    let repeats = events.iter().filter(|e| e.reason.as_deref().is_some_and(|r| r.contains("fired again"))).count();
    assert_eq!(repeats, 39, "every other delivery is on the incident, once");
    let hooks = Arc::into_inner(hooks).expect("the tasks are done");
    hooks.stop().await;
}

/// Standard Webhooks deliveries from the EDR, through the server: the reference runbook's trigger
/// adds the EDR's finding to the open incident; a replay, a forgery, a tampered body, a stale or
/// future-dated timestamp and a malformed signature header change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_deliveries_are_checked_and_taken_once() {
    use phasegate::server::webhooks::signature::{Secret, sign_standard_webhooks};
    let hooks = Hooks::start("127.0.0.1:0").await;
    let (status, answer) =
        hooks.post("alertmanager", Some(TOKEN), &notification("firing", "2026-11-24T02:14:00Z")).await;
    assert_eq!(status, 202);
    hooks.applied("alertmanager", &answer).await;
    let secret = Secret::standard_webhooks(EDR_SECRET).unwrap();
    let body = json!({
        "event_type": "device.contained", "occurred_at": "2026-11-24T02:40:00Z",
        "device_group": { "name": "retail-breach-suspect", "tags": { "estate": "uk-retail" } },
        "device": { "hostname": "shop-web-03" },
    })
    .to_string();
    let signed = |id: &str, timestamp: i64, body: &str| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", sign_standard_webhooks(&secret, id, timestamp, body.as_bytes())),
        ]
    };
    let now = Utc::now().timestamp();
    let (status, answer) = hooks.post_with("edr", None, &signed("msg_1", now, &body), &body).await;
    assert_eq!((status, &answer["delivery"]), (202, &json!("msg_1")), "{answer}");
    let done = hooks.applied("edr", &answer).await;
    assert!(done.iter().any(|done| done["did"] == "noted"), "{done:?}");

    let mut tampered = signed("msg_2", now, &body);
    tampered[2].1 =
        sign_standard_webhooks(&Secret::new(b"not the secret".to_vec()).unwrap(), "msg_2", now, body.as_bytes());
    // Headers and body; the status and error code expected.
    type Case<'a> = (Vec<(&'a str, String)>, String, u16, &'a str);
    let refusals: Vec<Case> = vec![
        (signed("msg_1", now, &body), body.clone(), 200, ""),
        (tampered, body.clone(), 401, "bad_signature"),
        (signed("msg_3", now, &body), body.replace("shop-web-03", "shop-web-04"), 401, "bad_signature"),
        (signed("msg_4", now - 301, &body), body.clone(), 401, "timestamp_too_old"),
        (signed("msg_5", now + 301, &body), body.clone(), 401, "timestamp_too_new"),
        (
            vec![
                ("webhook-id", "msg_6".into()),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", "v1,!!".into()),
            ],
            body.clone(),
            400,
            "malformed_header",
        ),
        (
            vec![
                ("webhook-id", "msg_7".into()),
                ("webhook-timestamp", "soon".into()),
                ("webhook-signature", "v1,AAAA".into()),
            ],
            body.clone(),
            400,
            "malformed_header",
        ),
        (signed("msg_8", now, &body)[..2].to_vec(), body.clone(), 401, "missing_header"),
    ];
    for (headers, body, status, code) in refusals {
        let (answered, answer) = hooks.post_with("edr", None, &headers, &body).await;
        assert_eq!(answered, status, "{headers:?}: {answer}");
        if !code.is_empty() {
            assert_eq!(answer["error"]["code"], code, "{answer}");
        }
    }
    let incidents = hooks.incidents().await;
    let notes =
        incidents[0].1.iter().filter(|e| e.reason.as_deref().is_some_and(|r| r.starts_with("EDR: shop-web"))).count();
    assert_eq!(notes, 1, "the EDR's finding is on the incident once, and nothing else got in");
    hooks.stop().await;
}

/// A GitHub-style delivery is deduplicated, and a captured one replayed with a new
/// `X-GitHub-Delivery` (which the signature does not cover) is the same delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_delivery_replayed_with_a_new_delivery_header_is_still_a_duplicate() {
    use phasegate::server::webhooks::signature::{Secret, sign_hex};
    let hooks = Hooks::start("127.0.0.1:0").await;
    let (status, answer) =
        hooks.post("alertmanager", Some(TOKEN), &notification("firing", "2026-11-24T02:14:00Z")).await;
    assert_eq!(status, 202);
    hooks.applied("alertmanager", &answer).await;
    let body = json!({"type": "notable", "case_tag": "retail-breach", "estate": "uk-retail",
                      "rule_name": "LoyaltyExport", "summary": "export to unknown host", "id": "N-1"})
    .to_string();
    let signature =
        format!("sha256={}", sign_hex(&Secret::new(SIEM_SECRET.as_bytes().to_vec()).unwrap(), body.as_bytes()));
    let headers =
        |delivery: &str| vec![("x-hub-signature-256", signature.clone()), ("x-github-delivery", delivery.to_string())];
    let (status, answer) = hooks.post_with("siem", None, &headers("d-1"), &body).await;
    assert_eq!(status, 202, "{answer}");
    let done = hooks.applied("siem", &answer).await;
    assert!(done.iter().any(|done| done["did"] == "noted"), "{done:?}");
    for delivery in ["d-1", "d-2-replayed"] {
        let (status, answer) = hooks.post_with("siem", None, &headers(delivery), &body).await;
        assert_eq!(status, 200, "{delivery}: {answer}");
    }
    let (status, answer) = hooks.post_with("siem", None, &headers("d-3"), &body.replace("N-1", "N-2")).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("bad_signature")), "{answer}");
    let incidents = hooks.incidents().await;
    let siem_notes = incidents[0].1.iter().filter(|e| e.actor == "trigger:siem-notable-evidence").count();
    assert_eq!(siem_notes, 1, "taken once");
    hooks.stop().await;
}

/// Stores deliveries in a prepared database's inbox as the server would have before answering
/// them, with no server running: what a server that stopped before applying them leaves behind.
async fn leave_in_inbox(prepared: &Prepared, deliveries: &[(&str, &[u8])]) {
    let store = SqliteStore::open(&prepared.db).await.unwrap();
    for (id, body) in deliveries {
        let delivery = Delivery { source: "alertmanager".into(), id: id.to_string(), received_at: Utc::now() };
        assert!(store.receive(&delivery, &Headers::new(), body).await.unwrap(), "{id} is new");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_left_unapplied_when_the_server_stopped_are_applied_in_order_when_it_starts() {
    let prepared = Hooks::prepare();
    let firing = notification("firing", "2026-11-24T02:14:00Z");
    let resolved = notification("resolved", "2026-11-24T02:14:00Z");
    leave_in_inbox(&prepared, &[("am-1", firing.as_bytes()), ("am-2", resolved.as_bytes())]).await;
    let hooks = Hooks::serve(prepared, "127.0.0.1:0").await;
    let done = hooks.applied("alertmanager", &json!({"delivery": "am-1"})).await;
    let started = done.iter().find(|done| done["did"] == "started").unwrap_or_else(|| panic!("started: {done:?}"));
    let id = started["incident"].as_str().unwrap().to_string();
    // Applied the other way round, the resolution would find no incident and be `ignored`.
    let done = hooks.applied("alertmanager", &json!({"delivery": "am-2"})).await;
    assert!(done.iter().any(|done| done["did"] == "resolved" && done["incident"] == id.as_str()), "{done:?}");
    let incidents = hooks.incidents().await;
    assert_eq!(incidents.len(), 1, "one incident");
    let (found, events) = &incidents[0];
    assert_eq!(found, &id);
    let resolutions = events
        .iter()
        .filter(|e| e.reason.as_deref().is_some_and(|r| r.starts_with("LoyaltyDbBulkRead resolved")))
        .count();
    assert_eq!(resolutions, 1, "the resolution is on the incident once");
    hooks.stop().await;
}

/// The server refuses a body its triggers cannot read, but one may still be in the inbox (stored
/// before the runbooks changed, say): it is settled with an error, not tried forever, and what
/// was received after it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_stored_delivery_is_settled_with_an_error_and_blocks_nothing_after_it() {
    let prepared = Hooks::prepare();
    let firing = notification("firing", "2026-11-24T02:14:00Z");
    leave_in_inbox(&prepared, &[("am-bad", b"not json"), ("am-good", firing.as_bytes())]).await;
    let hooks = Hooks::serve(prepared, "127.0.0.1:0").await;
    let done = hooks.applied("alertmanager", &json!({"delivery": "am-good"})).await;
    assert!(done.iter().any(|done| done["did"] == "started"), "{done:?}");
    let receipt = hooks.settled("alertmanager", &json!({"delivery": "am-bad"})).await;
    assert_eq!(receipt["error"]["code"], "invalid_payload", "{receipt}");
    assert!(receipt.get("done").is_none(), "it did nothing: {receipt}");
    // Settled, so nothing waits: a delivery posted now is applied as well.
    let (status, answer) =
        hooks.post("alertmanager", Some(TOKEN), &notification("resolved", "2026-11-24T02:14:00Z")).await;
    assert_eq!(status, 202, "{answer}");
    let done = hooks.applied("alertmanager", &answer).await;
    assert!(done.iter().any(|done| done["did"] == "resolved"), "{done:?}");
    hooks.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_needs_a_token_and_one_never_received_is_not_found() {
    let hooks = Hooks::start("127.0.0.1:0").await;
    let (status, answer) =
        hooks.post("alertmanager", Some(TOKEN), &notification("firing", "2026-11-24T02:14:00Z")).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["delivery"].as_str().unwrap();
    // Even a delivery that was received says nothing without a token.
    let (status, refused) = hooks.receipt("alertmanager", id, None).await;
    assert_eq!(status, 401, "{refused}");
    let (status, missing) = hooks.receipt("alertmanager", "never-sent", Some(READER)).await;
    assert_eq!((status, &missing["error"]["code"]), (404, &json!("not_found")), "{missing}");
    hooks.stop().await;
}

/// A runbook whose trigger starts an incident only for the SIEM's production deliveries, as its
/// request header says, and records how many credential headers it could read.
const SIEM_PROD: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: siem-prod
title: SIEM alert from production
inputs:
  rule: { type: string }
  credentials_seen: { type: integer }
roles:
  incident-commander: { description: Leads the response }
phases:
  - id: contain
    exit:
      - { id: hosts-isolated, signal: { role: incident-commander } }
triggers:
  - id: prod-alert
    source: siem
    when: headers["x-siem-env"] == "prod"
    key: payload.case_id
    start:
      inputs:
        rule: payload.rule
        credentials_seen: '["authorization", "cookie", "x-hub-signature-256"].filter(name, name in headers).size()'
"#;

/// Regression: triggers were documented to read the request's headers, but deliveries were
/// stored without them, so a trigger that read `headers` ignored every delivery. Now the headers
/// are kept with the delivery, all but those that carry credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_reads_the_request_headers_and_never_the_credentials() {
    use phasegate::server::webhooks::signature::{Secret, sign_hex};
    let runbooks = tempfile::tempdir().unwrap();
    std::fs::write(runbooks.path().join("siem-prod.yaml"), SIEM_PROD).unwrap();
    let (hooks, holding) = Hooks::serve_holding(Hooks::prepare_with(runbooks.path()), "127.0.0.1:0").await;
    let mut received = Vec::new();
    for (case, environment) in [("c-prod", Some("prod")), ("c-none", None), ("c-staging", Some("staging"))] {
        let body = json!({ "case_id": case, "rule": "loyalty-bulk-export" }).to_string();
        let secret = Secret::new(SIEM_SECRET.as_bytes().to_vec()).unwrap();
        let mut headers = vec![
            ("x-hub-signature-256", format!("sha256={}", sign_hex(&secret, body.as_bytes()))),
            ("x-github-delivery", format!("delivery-{case}")),
            ("cookie", "session=leaked-session-cookie".to_string()),
            ("authorization", "Bearer leaked-bearer-token".to_string()),
        ];
        if let Some(environment) = environment {
            headers.push(("X-SIEM-Env", environment.to_string()));
        }
        let (status, answer) = hooks.post_with("siem", None, &headers, &body).await;
        assert_eq!(status, 202, "{answer}");
        received.push(answer);
    }

    // Held in the inbox, as stored: the headers without the credentials.
    let url = format!("sqlite://{}?mode=ro", hooks.db.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let stored: Vec<Option<String>> =
        sqlx::query_scalar("SELECT headers FROM inbox ORDER BY seq").fetch_all(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    assert_eq!(stored.len(), 3);
    let first: Value = serde_json::from_str(stored[0].as_deref().unwrap()).unwrap();
    assert_eq!(
        (&first["x-siem-env"], &first["x-github-delivery"]),
        (&json!("prod"), &json!("delivery-c-prod")),
        "{first}"
    );
    for row in stored.iter().flatten() {
        for credential in ["authorization", "cookie", "x-hub-signature-256", "leaked-", "sha256="] {
            assert!(!row.contains(credential), "`{credential}` kept: {row}");
        }
    }

    holding.store(false, std::sync::atomic::Ordering::SeqCst);
    let done = hooks.applied("siem", &received[0]).await;
    assert_eq!(
        (done[0]["trigger"].as_str(), done[0]["did"].as_str()),
        (Some("prod-alert"), Some("started")),
        "{done:?}"
    );
    let done = hooks.applied("siem", &received[1]).await;
    assert_eq!(done[0]["did"], "ignored", "{done:?}");
    assert!(done[0]["why"].as_str().unwrap().contains("x-siem-env"), "{done:?}");
    let done = hooks.applied("siem", &received[2]).await;
    assert_eq!(done[0]["did"], "ignored", "{done:?}");

    let incidents = hooks.incidents().await;
    assert_eq!(incidents.len(), 1, "only the production delivery started one");
    let started = serde_json::to_value(&incidents[0].1[0]).unwrap();
    let inputs = &started["event"]["inputs"];
    assert_eq!(inputs, &json!({ "rule": "loyalty-bulk-export", "credentials_seen": 0 }), "{started}");
    hooks.stop().await;
}
