//! Carrying out effects against stub servers on 127.0.0.1 and real programs: HTTP steps and
//! checks, commands, and status updates to every kind of channel; secrets never come back; the
//! outbound policy refuses loopback (the stubs' address) until it is allowed, however the address
//! is written or reached; email reaches a real SMTP server; and every shipped status template
//! renders with the context built from real incidents.
//!
//! This file holds what they share (the stubs, the fixture, the policies); the tests are in the
//! modules below, one per kind of action.

mod campaign;
mod campaign_smtp;
mod commands;
mod email;
mod http;
mod notify;
mod templates;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use phasegate::actions::outbound::Policy;
use phasegate::actions::{Actions, IncidentView, MAX_BODY, TRUNCATED_HEADER};
use phasegate::engine::effect::HttpRequest;
use phasegate::engine::state::{PhaseStatus, StepStatus};
use phasegate::engine::{
    Command, Decision, Directory, Effect, EffectKind, Event, EventKind, Incident, Outcome, Request, decide,
};
use phasegate::render::Catalog;
use phasegate::render::context::status_context;
use phasegate::runbook::Runbook;
use phasegate::runbook::model::{Action, GateKind, InputType, Text};
use serde_json::{Value, json};

use crate::support::root;

const TOKEN: &str = "s3cr3t-token-value";
const HOOK_KEY: &str = "hook-key-value";
/// The part of a Slack webhook URL that makes it a secret.
const SLACK_PATH: &str = "T000/B000/SLACKSECRETPATH";

/// One request as the stub saw it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A stub HTTP server: records every request, answers by path.
#[derive(Clone, Default)]
struct Stub {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Stub {
    async fn start() -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stub = Stub { base: format!("http://{}", listener.local_addr().unwrap()), received: Default::default() };
        let app = axum::Router::new().fallback(answer).with_state(stub.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        stub
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn answer(State(stub): State<Stub>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let headers: BTreeMap<String, String> =
        parts.headers.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let path = parts.uri.path().to_string();
    let received =
        Received { path: path.clone(), headers: headers.clone(), body: String::from_utf8_lossy(&body).into() };
    stub.received.lock().unwrap().push(received);
    match path.as_str() {
        // Echoes what it was sent, as some servers do: in the body and in a header.
        "/echo" => {
            let echoed = headers.get("authorization").cloned().unwrap_or_default();
            let response_headers = [("set-cookie", "session=abc".to_string()), ("x-echo", echoed)];
            (response_headers, axum::Json(json!({ "headers": headers, "ok": true }))).into_response()
        }
        "/text" => "plain words".into_response(),
        "/big" => "a".repeat(MAX_BODY + 10_000).into_response(),
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": "boom" }))).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late".into_response()
        }
        "/redirect" => (StatusCode::FOUND, [("location", "/echo".to_string())]).into_response(),
        "/to-metadata" => {
            (StatusCode::FOUND, [("location", "http://169.254.169.254/latest/meta-data/".to_string())]).into_response()
        }
        // The same server by another name: another origin, so credentials stay behind.
        "/to-localhost" => {
            let location = format!("{}/echo", stub.base.replace("127.0.0.1", "localhost"));
            (StatusCode::TEMPORARY_REDIRECT, [("location", location)]).into_response()
        }
        "/loop" => (StatusCode::FOUND, [("location", "/loop".to_string())]).into_response(),
        path if path.starts_with("/down/") => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

/// A port on 127.0.0.1 where nothing listens.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Standard output for `stdout` channels, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: till-breach
version: "4"
title: Till breach
roles:
  ops: {}
channels:
  out: { stdout: {} }
  log: { file: { path: "FILE" } }
  hook: { webhook: { url: "HOOK", headers: { X-Hook-Key: { secret: hook-key } } } }
  soc: { slack: { url_secret: soc-url } }
  soc-down: { slack: { url_secret: soc-down-url } }
  soc-gone: { slack: { url_secret: soc-gone-url } }
  soc-unset: { slack: { url_secret: soc-unset-url } }
  mail: { email: { to: [ciso@example.com], relay_secret: smtp } }
audiences:
  internal: { title: Incident team, template: internal-update, channels: [out, log, hook, soc] }
  executives: { title: Executive team, template: executive-briefing, channels: [hook, mail, soc-down, soc-gone, soc-unset] }
phases:
  - id: contain
    title: Contain the intrusion
    steps:
      - id: isolate
        manual: { instructions: Isolate the tills, assignee: ops }
"#;

/// A started incident of [`RUNBOOK`], stub servers, a temporary directory and the actions.
struct Fixture {
    stub: Stub,
    dir: tempfile::TempDir,
    runbook: Runbook,
    events: Vec<Event>,
    incident: Incident,
    stdout: Captured,
    actions: Actions,
    slack_urls: Vec<String>,
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// The request that starts incident `inc-1` of the runbook `text`, as an alert does at 02:14.
fn starting(text: String) -> Request {
    Request {
        actor: "trigger:alertmanager".into(),
        at: at("2026-11-24T02:14:00Z"),
        command: Command::Start { incident: "inc-1".into(), runbook_text: text, inputs: BTreeMap::new(), key: None },
    }
}

impl Fixture {
    /// Loopback allowed (the stubs are there), commands refused.
    async fn new() -> Fixture {
        Fixture::with(false, loopback()).await
    }

    async fn with_commands(commands: bool) -> Fixture {
        Fixture::with(commands, loopback()).await
    }

    async fn with(commands: bool, outbound: Policy) -> Fixture {
        let stub = Stub::start().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status/internal.md");
        let text = RUNBOOK.replace("FILE", file.to_str().unwrap()).replace("HOOK", &stub.url("/hook")).to_string();
        let catalog = Arc::new(Catalog::built_in());
        let runbook = phasegate::runbook::parse(&text, catalog.as_ref()).expect("the test runbook is valid");
        let start = starting(text);
        let events = decide(&runbook, &Directory::default(), None, &start).unwrap().events;
        let incident = Incident::from_events(&events).unwrap();
        let slack_urls = vec![
            stub.url(&format!("/slack/{SLACK_PATH}")),
            stub.url(&format!("/down/{SLACK_PATH}")),
            format!("http://127.0.0.1:{}/services/{SLACK_PATH}", closed_port().await),
        ];
        let secrets: BTreeMap<String, String> = BTreeMap::from([
            ("token".into(), TOKEN.into()),
            ("hook-key".into(), HOOK_KEY.into()),
            ("soc-url".into(), slack_urls[0].clone()),
            ("soc-down-url".into(), slack_urls[1].clone()),
            ("soc-gone-url".into(), slack_urls[2].clone()),
        ]);
        let stdout = Captured::default();
        let actions = Actions::new(catalog, Arc::new(secrets))
            .unwrap()
            .allow_commands(commands)
            .with_outbound(outbound)
            .unwrap()
            .with_stdout(stdout.clone());
        Fixture { stub, dir, runbook, events, incident, stdout, actions, slack_urls }
    }

    fn view(&self) -> IncidentView<'_> {
        IncidentView {
            runbook: &self.runbook,
            incident: &self.incident,
            events: &self.events,
            now: at("2026-11-24T06:00:00Z"),
        }
    }

    async fn carry_out(&self, kind: EffectKind) -> Outcome {
        self.actions.carry_out(&Effect { id: "inc-1/effect".into(), kind }, &self.view()).await
    }

    async fn http(&self, request: HttpRequest, attempt: u32) -> Outcome {
        self.carry_out(EffectKind::Http {
            phase: "contain".into(),
            step: "call".into(),
            attempt,
            idempotency_key: "inc-1/contain/call".into(),
            request,
        })
        .await
    }

    async fn command(&self, argv: &[&str], env: Vec<(String, Text)>, timeout: Duration) -> Outcome {
        self.carry_out(EffectKind::Command {
            phase: "contain".into(),
            step: "run".into(),
            attempt: 1,
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env,
            timeout,
        })
        .await
    }

    async fn notify(&self, audience: &str, template: &str, channels: &[&str]) -> Outcome {
        self.carry_out(EffectKind::Notify {
            audience: audience.into(),
            template: template.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            occasion: "requested".into(),
            message: Some("Tills are trading again".into()),
            step: None,
        })
        .await
    }
}

/// The policy that lets the tests reach their stubs: `127.0.0.1/32` allowed, and nothing else.
fn loopback() -> Policy {
    allowing(&["127.0.0.1/32"])
}

fn allowing(entries: &[&str]) -> Policy {
    Policy::new(entries.iter().map(|entry| entry.parse().unwrap()).collect())
}

fn request(method: &str, url: String, timeout: u64) -> HttpRequest {
    HttpRequest { method: method.into(), url, headers: Vec::new(), body: None, timeout: Duration::from_secs(timeout) }
}

fn bearer() -> (String, Text) {
    ("Authorization".into(), Text::Secret { secret: "token".into(), prefix: Some("Bearer ".into()) })
}

fn failure(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed { error } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}
