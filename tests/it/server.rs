//! `phasegate serve`: the REST API over HTTP with tokens, the errors it answers, health and
//! metrics, and the OpenAPI document held to the routes that exist.

use std::collections::BTreeSet;
use std::time::Duration;

use phasegate::server::ROUTES;
use serde_json::{Value, json};

use crate::support::{Cli, Serving, answer, root, wait_until};

pub const DANA: &str = "pg_dana-test-token";
pub const TOM: &str = "pg_tom-test-token";
/// Lee holds `ciso`, the retail breach's `abandon` right.
pub const LEE: &str = "pg_lee-test-token";

/// `phasegate serve` in the test's process, over the repository's runbooks, with three people
/// and their tokens.
pub struct Server {
    pub base: String,
    serving: Serving,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with("").await
    }

    /// With `extra` lines in the configuration's `server:` section.
    async fn start_with(extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("phasegate.db").display().to_string();
        Server::start_in(dir, &db, extra).await
    }

    /// Over the PostgreSQL schema `schema`.
    async fn start_on(schema: &crate::support::postgres::Schema) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), &schema.url(), "").await
    }

    async fn start_in(dir: tempfile::TempDir, db: &str, extra: &str) -> Server {
        let sha = |token: &str| phasegate::engine::decide::sha256_hex(token);
        let config = format!(
            "database: '{db}'\nrunbooks: {runbooks}\npeople:\n  dana.ito: {{ roles: [incident-commander, soc-analyst] }}\n  \
             tom.reyes: {{ roles: [communications] }}\n  lee.chen: {{ roles: [ciso] }}\nserver:\n  max_body: 65536\n  \
             tokens:\n    dana: {{ person: dana.ito, sha256: {dana} }}\n    tom: {{ person: tom.reyes, sha256: {tom} }}\n    \
             lee: {{ person: lee.chen, sha256: {lee} }}\n{extra}",
            runbooks = root().join("runbooks").display(),
            dana = sha(DANA),
            tom = sha(TOM),
            lee = sha(LEE),
        );
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, config).unwrap();
        let serving = Serving::start(&path, "127.0.0.1:0", Duration::from_millis(50)).await;
        Server { base: serving.base.clone(), serving, client: reqwest::Client::new(), _dir: dir }
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<String>) -> (u16, Value) {
        let mut request = self.client.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn stop(self) {
        self.serving.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_work_an_incident_through_the_api_as_their_tokens_say() {
    people_work_an_incident(Server::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_work_an_incident_through_the_api_on_postgres() {
    let Some(schema) = crate::support::postgres::schema().await else { return };
    people_work_an_incident(Server::start_on(&schema).await).await;
}

async fn people_work_an_incident(server: Server) {
    let (status, started) = server
        .call(
            "POST",
            "/api/v1/incidents",
            Some(DANA),
            Some(json!({"runbook": "retail-breach", "inputs": {"severity": "critical"}}).to_string()),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let (_, first) = server.call("GET", &format!("/api/v1/incidents/{id}/timeline?limit=1"), Some(TOM), None).await;
    assert_eq!(first["events"][0]["event"]["actor"], "dana.ito", "recorded as the token's person");

    let (status, board) = server.call("GET", &format!("/api/v1/incidents/{id}"), Some(TOM), None).await;
    assert_eq!(status, 200, "{board}");
    assert!(!board["blocking"].as_array().unwrap().is_empty(), "{board}");

    // Tom holds no role that may do the step: 403, naming the role.
    let done = format!("/api/v1/incidents/{id}/phases/triage/steps/mobilise/done");
    let (status, refused) =
        server.call("POST", &done, Some(TOM), Some(json!({"evidence": "bridge open"}).to_string())).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("missing_role")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("incident-commander"), "{refused}");
    let (status, _) =
        server.call("POST", &done, Some(DANA), Some(json!({"evidence": "bridge open"}).to_string())).await;
    assert_eq!(status, 200);
    let (status, again) = server.call("POST", &done, Some(DANA), Some("{}".into())).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("conflict")), "{again}");

    let (status, _) = server
        .call(
            "POST",
            &format!("/api/v1/incidents/{id}/notes"),
            Some(DANA),
            Some(json!({"text": "EDR alert"}).to_string()),
        )
        .await;
    assert_eq!(status, 200);
    let (_, timeline) = server.call("GET", &format!("/api/v1/incidents/{id}/timeline"), Some(DANA), None).await;
    let summaries: Vec<&str> =
        timeline["events"].as_array().unwrap().iter().map(|e| e["summary"].as_str().unwrap()).collect();
    assert!(summaries.contains(&"note: EDR alert"), "{summaries:?}");

    let (status, update) =
        server.call("GET", &format!("/api/v1/incidents/{id}/updates/internal?variant=md"), Some(DANA), None).await;
    assert_eq!(status, 200, "{update}");
    assert!(update["text"].as_str().unwrap().contains(&id), "{update}");

    let (status, list) = server.call("GET", "/api/v1/incidents", Some(DANA), None).await;
    assert_eq!((status, list["incidents"].as_array().unwrap().len()), (200, 1));
    server.stop().await;
}

/// Closing, abandoning, recovering and sending to an outside audience need the runbook's rights
/// through the API as through the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rights_hold_through_the_api() {
    rights_hold(Server::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rights_hold_through_the_api_on_postgres() {
    let Some(schema) = crate::support::postgres::schema().await else { return };
    rights_hold(Server::start_on(&schema).await).await;
}

async fn rights_hold(server: Server) {
    let (status, started) = server
        .call("POST", "/api/v1/incidents", Some(DANA), Some(json!({"runbook": "retail-breach"}).to_string()))
        .await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let before = server.call("GET", &format!("/api/v1/incidents/{id}/timeline"), Some(DANA), None).await.1;
    let incident = |rest: &str| format!("/api/v1/incidents/{id}{rest}");
    let cases: Vec<(&str, String, &str, Value, u16, &str, &str)> = vec![
        (
            "POST",
            incident("/close"),
            TOM,
            json!({}),
            403,
            "missing_role",
            "role `incident-commander` (held by dana.ito)",
        ),
        ("POST", incident("/close"), DANA, json!({}), 409, "conflict", "`triage` is running"),
        (
            "POST",
            incident("/close"),
            DANA,
            json!({"abandon": true, "reason": "drill"}),
            403,
            "missing_role",
            "role `ciso`",
        ),
        ("POST", incident("/close"), DANA, json!({"reason": "drill"}), 422, "invalid_request", "`abandon: true`"),
        ("POST", incident("/updates/public"), DANA, json!(null), 403, "missing_role", "role `comms-lead`"),
        (
            "POST",
            incident("/phases/triage/steps/mobilise/retry"),
            DANA,
            json!({}),
            409,
            "conflict",
            "step `triage/mobilise` is pending, not failed or waiting for a retry, so it cannot be retried",
        ),
        (
            "POST",
            incident("/phases/triage/steps/legal-hold/skip"),
            TOM,
            json!({"reason": "by phone"}),
            409,
            "conflict",
            "not failed or waiting for a retry, so it cannot be skipped",
        ),
    ];
    for (method, path, token, body, status, code, message) in cases {
        let body = (!body.is_null()).then(|| body.to_string());
        let (answered, error) = server.call(method, &path, Some(token), body).await;
        assert_eq!((answered, error["error"]["code"].as_str()), (status, Some(code)), "{method} {path}: {error}");
        let text = error["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{method} {path}: {text}");
    }
    // The runtime loop may record deliveries meanwhile; nothing a person asked was recorded.
    let by_people = |timeline: &Value| -> Vec<Value> {
        let events = timeline["events"].as_array().unwrap();
        events.iter().filter(|e| e["event"]["actor"] != "phasegate").cloned().collect()
    };
    let after = server.call("GET", &format!("/api/v1/incidents/{id}/timeline"), Some(DANA), None).await.1;
    assert_eq!(by_people(&before), by_people(&after), "nothing refused was recorded");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let server = Server::start().await;
    // Method, path, token, body; the status and error code expected.
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<String>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("GET", "/api/v1/incidents", None, None, 401, "unauthorized"),
        ("GET", "/api/v1/incidents", Some("pg_wrong"), None, 401, "unauthorized"),
        ("GET", "/api/v1/incidents/inc-404", Some(DANA), None, 404, "not_found"),
        ("GET", "/api/v1/runbooks/nope", Some(DANA), None, 404, "not_found"),
        (
            "POST",
            "/api/v1/incidents",
            Some(DANA),
            Some(json!({"runbook": "retail-breach", "inputs": {"nope": 1}}).to_string()),
            422,
            "invalid_input",
        ),
        ("POST", "/api/v1/incidents", Some(DANA), Some(r#"{"runbook": "#.into()), 400, "invalid_json"),
        (
            "POST",
            "/api/v1/incidents",
            Some(DANA),
            Some(json!({"runbook": "retail-breach", "extra": 1}).to_string()),
            422,
            "invalid_json",
        ),
        (
            "POST",
            "/api/v1/incidents",
            Some(DANA),
            Some(format!(r#"{{"runbook": "{}"}}"#, "x".repeat(70_000))),
            413,
            "too_large",
        ),
        ("GET", "/api/v1/nothing-here", Some(DANA), None, 404, "not_found"),
    ];
    for (method, path, token, body, status, code) in cases {
        let (answered, error) = server.call(method, path, token, body).await;
        assert_eq!(answered, status, "{method} {path}: {error}");
        assert_eq!(error["error"]["code"], code, "{method} {path}: {error}");
        assert!(!error.to_string().contains("pg_"), "no token in an answer: {error}");
    }
    let (_, list) = server.call("GET", "/api/v1/incidents", Some(DANA), None).await;
    assert!(list["incidents"].as_array().unwrap().is_empty(), "nothing was started");

    let (status, invalid) = server
        .client
        .post(format!("{}/api/v1/runbooks/validate", server.base))
        .header("authorization", format!("Bearer {DANA}"))
        .body("apiVersion: phasegate/v1\nkind: Runbook\nid: x\n")
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    let invalid: Value = serde_json::from_str(&invalid.text().await.unwrap()).unwrap();
    assert_eq!((status, &invalid["valid"]), (422, &json!(false)));
    assert!(invalid["diagnostics"][0]["code"].as_str().unwrap().starts_with("RB"), "{invalid}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_the_openapi_document_cover_every_route() {
    let server = Server::start().await;
    assert_eq!(server.call("GET", "/healthz", None, None).await.0, 200);
    wait_until("ready once the runtime loop has made a pass", Duration::from_secs(2), async || {
        let (status, body) = server.call("GET", "/readyz", None, None).await;
        if status == 200 { Ok(()) } else { Err(format!("{status} {body}")) }
    })
    .await;

    let (_, spec) = server.call("GET", "/openapi.json", None, None).await;
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations.as_object().unwrap().keys().map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, routes, "the document describes exactly the routes");
    // And every route is served: whatever it answers, it is not the fallback for unknown routes.
    for (method, path) in ROUTES {
        let concrete =
            path.replace("{id}", "inc-1").replace("{phase}", "p").replace("{step}", "s").replace("{audience}", "a");
        let (status, answer) = server.call(method, &concrete, Some(DANA), Some("{}".into())).await;
        let fallback = answer["error"]["message"].as_str().is_some_and(|m| m.starts_with("no such route"));
        assert!(!fallback && status != 405, "{method} {path} is not served: {status} {answer}");
    }

    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("phasegate_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("phasegate_incidents{state=\"open\"} 0"), "{metrics}");
    assert!(metrics.contains("phasegate_outbox_depth"), "{metrics}");
    assert!(!metrics.contains("inc-1"), "ids never become labels");
    server.stop().await;
}

/// The binary: `phasegate serve` logs JSON lines with `--log-format json` (never a token), and
/// stops cleanly on SIGTERM, as a service manager stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_logs_json_without_secrets_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phasegate.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {}\nrunbooks: {}\npeople:\n  dana.ito: {{ roles: [incident-commander] }}\nserver:\n  tokens:\n    \
             dana: {{ person: dana.ito, sha256: {} }}\n",
            dir.path().join("phasegate.db").display(),
            root().join("runbooks").display(),
            phasegate::engine::decide::sha256_hex(DANA)
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(["serve", "--log-format", "json", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until("the server up", Duration::from_secs(10), async || {
        client.get(format!("{base}/healthz")).send().await.map_err(|error| error.to_string())
    })
    .await;
    for token in [DANA, "pg_not-a-token"] {
        client.get(format!("{base}/api/v1/incidents")).bearer_auth(token).send().await.unwrap();
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "a clean stop");
    let logs = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = logs.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
    assert!(lines.iter().any(|line| line["fields"]["route"] == "/api/v1/incidents" && line["fields"]["status"] == 401));
    assert!(lines.iter().any(|line| line["fields"]["message"] == "stopped"), "{logs}");
    assert!(!logs.contains(DANA) && !logs.contains("pg_not-a-token"), "no token in the logs");
    // Closed, not abandoned: the writer copied the WAL back into the file and emptied it.
    let wal = std::fs::metadata(dir.path().join("phasegate.db-wal")).map(|wal| wal.len()).unwrap_or(0);
    assert_eq!(wal, 0, "the database was closed with its WAL copied back");
}

/// Sends `head` (and whatever of a body it carries) on a raw connection, waits `pause`, sends
/// `rest`, then reads until the server closes the connection (at most ten seconds).
async fn raw(base: &str, head: &str, pause: Duration, rest: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(pause).await;
    // The server may have closed the connection already: that is what some tests expect.
    let _ = stream.write_all(rest.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection: {}", String::from_utf8_lossy(&answer));
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that sends its request head too slowly loses the connection, and one that sends
/// its body too slowly is answered 408 with the usual JSON error; neither holds the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_timed_out() {
    let server = Server::start_with("  header_timeout: 300ms\n  request_timeout: 300ms\n").await;
    let head = "GET /healthz HTTP/1.1\r\nHost: phasegate\r\n";
    let answer = raw(&server.base, head, Duration::from_secs(2), "\r\n").await;
    assert!(!answer.contains("200 OK"), "a head that came too late is not served: {answer}");

    let body = r#"{"text": "the body never comes"}"#;
    let head = format!(
        "POST /api/v1/incidents/inc-1/notes HTTP/1.1\r\nHost: phasegate\r\nConnection: close\r\n\
         Authorization: Bearer {DANA}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        body.len()
    );
    let answer = raw(&server.base, &head, Duration::from_secs(2), &body[1..]).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    // And the server still serves everyone else.
    let (status, _) = server.call("GET", "/api/v1/incidents", Some(DANA), None).await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// A request under way when the server is told to stop is still answered before it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_under_way_at_shutdown_is_answered() {
    let server = Server::start().await;
    let base = server.base.clone();
    let body = r#"{"text": "sent as the server stops"}"#;
    let head = format!(
        "POST /api/v1/incidents/inc-1/notes HTTP/1.1\r\nHost: phasegate\r\nConnection: close\r\n\
         Authorization: Bearer {DANA}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        body.len()
    );
    let request = tokio::spawn(async move { raw(&base, &head, Duration::from_millis(500), &body[1..]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The head is in and the body half sent when the stop comes.
    let stopping = tokio::spawn(server.stop());
    let answer = request.await.unwrap();
    stopping.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "answered (no incident `inc-1`): {answer}");
    assert!(answer.contains(r#""code":"not_found""#), "{answer}");
}

/// `serve` with the example configuration and no webhook secrets set stopped with "has no value in
/// the configuration's `secrets`" for a secret that was declared there (issue 12's user test); it
/// then named the unset variable but still would not start, taking the API down with one missing
/// webhook token. Now the source is off: the server serves, the source's deliveries are answered
/// 503 `source_off` (which senders retry) naming the variable, and counted.
#[tokio::test]
async fn a_webhook_source_without_its_secret_is_off_and_the_rest_serves() {
    let server = Server::start_with(
        "  sources:\n    edr: { scheme: bearer, secrets: [EDR_HOOK] }\n\
         secrets:\n  EDR_HOOK: { env: PHASEGATE_TEST_UNSET_EDR_HOOK }\n",
    )
    .await;
    let (status, body) = server.call("GET", "/api/v1/incidents", Some(DANA), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call("POST", "/hooks/edr", None, Some("{}".into())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "source_off");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "webhook source `edr` is off: its secret `EDR_HOOK` has no value: environment variable \
             `PHASEGATE_TEST_UNSET_EDR_HOOK` is unset or empty; set it"
        ),
        "{message}"
    );
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"source="edr",result="refused",reason="source_off""#), "{metrics}");
    let (status, _) = server.call("POST", "/hooks/nowhere", None, Some("{}".into())).await;
    assert_eq!(status, 404, "an unknown source is still unknown");
}

/// `phasegate token` named every token `api`, so the lines printed for two people could not be
/// pasted into one configuration (issue 12's user test): a token is named after its person. It
/// also made tokens for people the configuration did not have, and under names it already used
/// (issue 13): those are refused, naming the nearest person and a free name.
#[test]
fn a_new_token_is_for_a_configured_person_under_a_name_not_yet_used() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phasegate.yaml");
    std::fs::write(
        &config,
        format!(
            "people:\n  dana.ito: {{ roles: [incident-commander] }}\n  tom.reyes: {{ roles: [communications] }}\n\
             server:\n  tokens:\n    dana.ito: {{ person: dana.ito, sha256: {} }}\n",
            phasegate::engine::decide::sha256_hex(DANA)
        ),
    )
    .unwrap();
    let token = || Cli::new().current_dir(dir.path()).args(["token"]);
    token().args(["tom.reyes"]).succeeds().stdout_has("      tom.reyes: { person: tom.reyes, sha256: ");
    token()
        .args(["dana.ito"])
        .succeeds()
        .stdout_has("      dana.ito-2: { person: dana.ito, sha256: ")
        .stderr_has("the configuration has a token named `dana.ito`; this one is named `dana.ito-2`");
    token()
        .args(["dana.ito", "--name", "dana-laptop"])
        .succeeds()
        .stdout_has("      dana-laptop: { person: dana.ito, sha256: ");
    let refused = token()
        .args(["dana.itoo"])
        .fails()
        .stderr_has("error: `dana.itoo` is not among the people of the configuration `phasegate.yaml`")
        .stderr_has("help: did you mean `dana.ito`?")
        .stdout();
    assert!(refused.is_empty(), "no token for a person the configuration lacks: {refused}");
    token()
        .args(["tom.reyes", "--name", "dana.ito"])
        .fails()
        .stderr_has("the configuration already has a token named `dana.ito`")
        .stderr_has("help: `--name dana.ito-2` is free");
    // The configuration named by `--config` (or PHASEGATE_CONFIG), from anywhere.
    Cli::new().args(["token", "tom.reyes", "--config"]).args([&config]).succeeds();
    Cli::new()
        .env("PHASEGATE_CONFIG", &config)
        .args(["token", "nobody"])
        .fails()
        .stderr_has("help: the configuration's people: `dana.ito`, `tom.reyes`");
}

/// A second store: SQLite (or another store) behind a wrapper that counts the appends and the
/// reads of logs, standing in for another backend. The server is written against the `Store`
/// trait, so it serves over this one as `serve` does over SQLite. While `holding` is set its
/// inbox shows nothing waiting, so that a test can look at a delivery stored before anything
/// applies it.
pub struct Counting<S = phasegate::store::SqliteStore> {
    pub inner: S,
    pub appends: std::sync::atomic::AtomicUsize,
    /// Reads of an incident's log, whole or after a version (`events`, `events_after`), by
    /// incident.
    pub reads: std::sync::Mutex<Vec<String>>,
    pub holding: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Counting<S> {
        Counting { inner, appends: Default::default(), reads: Default::default(), holding: Default::default() }
    }
}

mod counting {
    use std::future::Future;

    use chrono::{DateTime, Utc};
    use phasegate::audit::keys::SignedCheckpoint;
    use phasegate::campaign::{AttemptFailure, BatchPlan};
    use phasegate::engine::Event;
    use phasegate::store::{
        Append, BatchResult, CampaignBatch, CampaignProgress, ChainLink, Claimed, Counts, Delivery, Error, Fence,
        Headers, Inbound, IncidentSummary, Lease, Page, PendingEffect, Receipt, Store, StoredCheckpoint,
    };

    impl<S: Store> Store for super::Counting<S> {
        fn append(&self, append: Append) -> impl Future<Output = Result<u64, Error>> + Send {
            self.appends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.append(append)
        }
        fn delivery(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send {
            self.inner.delivery(source, id)
        }
        fn receive(
            &self,
            delivery: &Delivery,
            headers: &Headers,
            body: &[u8],
        ) -> impl Future<Output = Result<bool, Error>> + Send {
            self.inner.receive(delivery, headers, body)
        }
        async fn inbox(&self, limit: usize, bytes: usize) -> Result<Vec<Inbound>, Error> {
            if self.holding.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(Vec::new());
            }
            self.inner.inbox(limit, bytes).await
        }
        fn applied(
            &self,
            outcomes: &[(u64, String)],
            under: Option<&Fence>,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.inner.applied(outcomes, under)
        }
        fn inbox_depth(&self) -> impl Future<Output = Result<u64, Error>> + Send {
            self.inner.inbox_depth()
        }
        fn receipt(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<Receipt>, Error>> + Send {
            self.inner.receipt(source, id)
        }
        fn events(&self, incident: &str) -> impl Future<Output = Result<Vec<Event>, Error>> + Send {
            self.reads.lock().unwrap().push(incident.to_string());
            self.inner.events(incident)
        }
        fn events_after(&self, incident: &str, after: u64) -> impl Future<Output = Result<Vec<Event>, Error>> + Send {
            self.reads.lock().unwrap().push(incident.to_string());
            self.inner.events_after(incident, after)
        }
        fn events_page(
            &self,
            incident: &str,
            page: &Page,
        ) -> impl Future<Output = Result<Vec<(u64, Event)>, Error>> + Send {
            self.inner.events_page(incident, page)
        }
        fn event_counts(
            &self,
            incident: &str,
            after: u64,
            upto: u64,
        ) -> impl Future<Output = Result<Counts, Error>> + Send {
            self.inner.event_counts(incident, after, upto)
        }
        fn incident(&self, id: &str) -> impl Future<Output = Result<Option<IncidentSummary>, Error>> + Send {
            self.inner.incident(id)
        }
        fn incidents(&self) -> impl Future<Output = Result<Vec<IncidentSummary>, Error>> + Send {
            self.inner.incidents()
        }
        fn incidents_open_since(
            &self,
            at: chrono::DateTime<chrono::Utc>,
        ) -> impl Future<Output = Result<Vec<IncidentSummary>, Error>> + Send {
            self.inner.incidents_open_since(at)
        }
        fn open_incident_by_key(
            &self,
            runbook_id: &str,
            key: &str,
        ) -> impl Future<Output = Result<Option<String>, Error>> + Send {
            self.inner.open_incident_by_key(runbook_id, key)
        }
        fn open_keys(&self) -> impl Future<Output = Result<Vec<(String, String, String)>, Error>> + Send {
            self.inner.open_keys()
        }
        fn pending_effects(&self, limit: usize) -> impl Future<Output = Result<Vec<PendingEffect>, Error>> + Send {
            self.inner.pending_effects(limit)
        }
        fn claim_effects(
            &self,
            holder: &str,
            limit: usize,
            lease: std::time::Duration,
        ) -> impl Future<Output = Result<Vec<Claimed>, Error>> + Send {
            self.inner.claim_effects(holder, limit, lease)
        }
        fn renew_effects(
            &self,
            holder: &str,
            tokens: &[u64],
            lease: std::time::Duration,
        ) -> impl Future<Output = Result<Vec<u64>, Error>> + Send {
            self.inner.renew_effects(holder, tokens, lease)
        }
        fn claim_leases(
            &self,
            holder: &str,
            names: &[String],
            lease: std::time::Duration,
        ) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send {
            self.inner.claim_leases(holder, names, lease)
        }
        fn claim_leases_up_to(
            &self,
            holder: &str,
            names: &[String],
            most: usize,
        ) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send {
            self.inner.claim_leases_up_to(holder, names, most)
        }
        fn leases_held(&self, prefix: &str) -> impl Future<Output = Result<usize, Error>> + Send {
            self.inner.leases_held(prefix)
        }
        fn forget_leases(
            &self,
            prefix: &str,
            ran_out_for: std::time::Duration,
        ) -> impl Future<Output = Result<usize, Error>> + Send {
            self.inner.forget_leases(prefix, ran_out_for)
        }
        fn renew_leases(
            &self,
            holder: &str,
            tokens: &[u64],
            lease: std::time::Duration,
        ) -> impl Future<Output = Result<Vec<u64>, Error>> + Send {
            self.inner.renew_leases(holder, tokens, lease)
        }
        fn chain(
            &self,
            incident: &str,
            after: u64,
            limit: usize,
        ) -> impl Future<Output = Result<Vec<ChainLink>, Error>> + Send {
            self.inner.chain(incident, after, limit)
        }
        fn checkpoints(&self, incident: &str) -> impl Future<Output = Result<Vec<StoredCheckpoint>, Error>> + Send {
            self.inner.checkpoints(incident)
        }
        fn add_checkpoint(
            &self,
            incident: &str,
            checkpoint: &SignedCheckpoint,
            under: Option<&Fence>,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.inner.add_checkpoint(incident, checkpoint, under)
        }
        fn campaign_plan(
            &self,
            campaign: &str,
            batches: &[BatchPlan],
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.inner.campaign_plan(campaign, batches)
        }
        fn campaign_batches(&self, campaign: &str) -> impl Future<Output = Result<Vec<CampaignBatch>, Error>> + Send {
            self.inner.campaign_batches(campaign)
        }
        fn campaign_sending_under(
            &self,
            campaign: &str,
            numbers: &[u32],
            at: DateTime<Utc>,
            under: Option<&Fence>,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.inner.campaign_sending_under(campaign, numbers, at, under)
        }
        fn campaign_answered_under(
            &self,
            campaign: &str,
            results: &[BatchResult],
            under: Option<&Fence>,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.inner.campaign_answered_under(campaign, results, under)
        }
        fn campaign_attempt_failed_under(
            &self,
            campaign: &str,
            number: u32,
            failure: &AttemptFailure,
            under: Option<&Fence>,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.inner.campaign_attempt_failed_under(campaign, number, failure, under)
        }
        fn campaign_failures(
            &self,
            campaign: &str,
        ) -> impl Future<Output = Result<Vec<(u32, String, String)>, Error>> + Send {
            self.inner.campaign_failures(campaign)
        }
        fn campaign_failure_reasons(
            &self,
            campaign: &str,
            limit: u32,
        ) -> impl Future<Output = Result<Vec<(String, u64)>, Error>> + Send {
            self.inner.campaign_failure_reasons(campaign, limit)
        }
        fn campaign_leaves(&self, campaign: &str) -> impl Future<Output = Result<Vec<(u32, Vec<u8>)>, Error>> + Send {
            self.inner.campaign_leaves(campaign)
        }
        fn campaigns(
            &self,
            incident: &str,
        ) -> impl Future<Output = Result<Vec<(String, CampaignProgress)>, Error>> + Send {
            self.inner.campaigns(incident)
        }
    }
}

/// The server over a store other than SQLite: the API starts an incident through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_over_any_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phasegate.yaml");
    std::fs::write(
        &path,
        format!(
            "database: phasegate.db\nrunbooks: {}\npeople:\n  dana.ito: {{ roles: [incident-commander] }}\n\
             server:\n  tokens:\n    dana: {{ person: dana.ito, sha256: {} }}\n",
            root().join("runbooks").display(),
            phasegate::engine::decide::sha256_hex(DANA)
        ),
    )
    .unwrap();
    let config = phasegate::config::Config::load(Some(&path), &Default::default()).unwrap();
    let inner = phasegate::store::SqliteStore::open(&config.database).await.unwrap();
    let store = Counting::new(inner);
    let runtime =
        phasegate::runtime::Runtime::new(store, phasegate::render::Catalog::built_in(), config.directory.clone());
    let app = std::sync::Arc::new(phasegate::server::App::new(runtime, config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = std::sync::Arc::clone(&app);
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        let executor = std::sync::Arc::new(crate::support::Unreachable);
        phasegate::server::serve(serving, executor, listener, Duration::from_millis(50), shutdown).await.unwrap();
    });
    let before = app.runtime.store().appends.load(std::sync::atomic::Ordering::SeqCst);
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/incidents"))
        .bearer_auth(DANA)
        .header("content-type", "application/json")
        .body(json!({ "runbook": "retail-breach", "inputs": { "severity": "critical" } }).to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    assert_eq!((status, &body["runbook_id"]), (201, &json!("retail-breach")), "{body}");
    let after = app.runtime.store().appends.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after > before, "the start was appended through the wrapping store");
    let _ = stop.send(());
    task.await.unwrap();
}

/// `serve --lease` (and `PHASEGATE_LEASE`) takes a duration within the bounds `server.lease`
/// keeps to, and says which flag is wrong before anything is opened.
#[test]
fn a_lease_out_of_bounds_is_refused_naming_the_flag() {
    let refused = |cli: Cli| cli.status(2).stderr_has("invalid value");
    refused(Cli::new().args(["serve", "--lease", "0s"]))
        .stderr_has("--lease")
        .stderr_has("`0s` is not between 1s and 1h");
    refused(Cli::new().args(["serve", "--lease", "soon"])).stderr_has("`soon` is not a duration such as `15s`");
    refused(Cli::new().env("PHASEGATE_LEASE", "3h").args(["serve"])).stderr_has("`3h` is not between 1s and 1h");
}
