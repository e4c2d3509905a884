//! Campaign channels: batch HTTP against a stub relay on 127.0.0.1 (the wire format to the byte,
//! rejections, failures, the same key on every attempt, the outbound policy), and spools in a
//! temporary directory (JSON Lines written, repaired after a stop, never twice; `.eml` files that
//! a mail parser reads back).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use phasegate::actions::Actions;
use phasegate::actions::campaign::batch::{BatchHttp, body};
use phasegate::actions::campaign::spool::{self, Spool};
use phasegate::actions::campaign::{Answer, Batch, Message};
use phasegate::actions::outbound::Policy;
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;
use phasegate::runbook::model::{Channel, SpoolFormat};
use serde_json::{Value, json};

use super::{allowing, closed_port, loopback};

const TOKEN: &str = "mailer-token-7c1d";
const CAMPAIGN: &str = "inc-1/notify/apology";

/// One request as the relay saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A stub relay: records every request, answers by path.
#[derive(Clone, Default)]
struct Relay {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay { base: format!("http://{}", listener.local_addr().unwrap()), received: Default::default() };
        let app = axum::Router::new().fallback(answer).with_state(relay.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        relay
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn answer(State(relay): State<Relay>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap().to_vec();
    let headers: BTreeMap<String, String> =
        parts.headers.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let path = parts.uri.path().to_string();
    let authorization = headers.get("authorization").cloned().unwrap_or_default();
    relay.received.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path: path.clone(),
        headers,
        body,
    });
    match path.as_str() {
        "/batches" => StatusCode::ACCEPTED.into_response(),
        "/rejects" => axum::Json(json!({
            "rejected": [
                { "id": "m-2", "reason": "mailbox unknown" },
                { "id": "not-in-the-batch", "reason": "?" },
            ]
        }))
        .into_response(),
        "/not-json" => "thanks".into_response(),
        // Quotes the credentials it was sent, as some servers do in their errors.
        "/down" => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("relay overloaded\n(you sent {authorization})")).into_response()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        "/moved" => (StatusCode::FOUND, [("location", "/batches")]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn message(id: &str, html: Option<&str>) -> Message {
    Message {
        id: id.to_string(),
        to: format!("{id}@members.example"),
        subject: format!("Your account, {id}"),
        text: format!("Dear member {id},\n\"sorry\" — your code is X7K-{id}.\n"),
        html: html.map(str::to_string),
    }
}

fn messages() -> Vec<Message> {
    vec![message("m-1", None), message("m-2", Some("<p>Dear <b>m-2</b>, \"sorry\".</p>")), message("m-3", None)]
}

/// A runbook declaring `channels` (YAML under `channels:`), and its channel `id`.
fn channel(channels: &str, id: &str) -> Channel {
    let text = format!(
        "apiVersion: phasegate/v1\nkind: Runbook\nid: mail\ntitle: Mail\nchannels:\n{channels}\nphases:\n  - id: notify\n"
    );
    let runbook: Runbook = phasegate::runbook::parse(&text, &Catalog::built_in()).unwrap_or_else(|d| panic!("{d:#?}"));
    runbook.channels().iter().find(|channel| channel.id == id).expect("the channel is declared").clone()
}

/// The actions with the mailer's token as a secret, held to `policy`.
fn actions(policy: Policy) -> Actions {
    let secrets = BTreeMap::from([("MAILER_TOKEN".to_string(), TOKEN.to_string())]);
    Actions::new(Arc::new(Catalog::built_in()), Arc::new(secrets)).unwrap().with_outbound(policy).unwrap()
}

/// A batch channel to `url` with a secret and a literal header.
fn mailer(url: &str) -> Channel {
    channel(
        &format!(
            "  mailer:\n    batch:\n      url: {url}\n      headers:\n        Authorization: {{ secret: MAILER_TOKEN, prefix: \"Bearer \" }}\n        X-Message-Category: security-notice\n"
        ),
        "mailer",
    )
}

async fn sender(relay: &Relay, path: &str, timeout: Duration) -> BatchHttp {
    actions(loopback()).batch_http(&mailer(&relay.url(path)), timeout).unwrap()
}

fn failure(answer: &Answer) -> &str {
    match answer {
        Answer::Failed { error, .. } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_goes_out_in_the_wire_format_to_the_byte() {
    let relay = Relay::start().await;
    let sender = sender(&relay, "/batches", Duration::from_secs(10)).await;
    let messages = messages();
    let answer = sender.send(Batch { campaign: CAMPAIGN, number: 3, messages: &messages }).await;
    assert_eq!(answer, Answer::Accepted { rejected: Vec::new() });

    let received = relay.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/batches"));
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["idempotency-key"], "inc-1/notify/apology/3");
    assert_eq!(request.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(request.headers["x-message-category"], "security-notice");
    // The body, written out by hand: `html` only for the message that has one.
    let expected = json!({
        "campaign": "inc-1/notify/apology",
        "batch": 3,
        "messages": [
            { "id": "m-1", "to": "m-1@members.example", "subject": "Your account, m-1",
              "text": "Dear member m-1,\n\"sorry\" — your code is X7K-m-1.\n" },
            { "id": "m-2", "to": "m-2@members.example", "subject": "Your account, m-2",
              "text": "Dear member m-2,\n\"sorry\" — your code is X7K-m-2.\n",
              "html": "<p>Dear <b>m-2</b>, \"sorry\".</p>" },
            { "id": "m-3", "to": "m-3@members.example", "subject": "Your account, m-3",
              "text": "Dear member m-3,\n\"sorry\" — your code is X7K-m-3.\n" },
        ]
    });
    let sent: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent, expected);
    // Field order too, as relays that read the body as a stream see it.
    let line = |id: &str, html: &str| {
        format!(
            r#"{{"id":"{id}","to":"{id}@members.example","subject":"Your account, {id}","text":"Dear member {id},\n\"sorry\" — your code is X7K-{id}.\n"{html}}}"#
        )
    };
    let in_order = format!(
        r#"{{"campaign":"inc-1/notify/apology","batch":3,"messages":[{},{},{}]}}"#,
        line("m-1", ""),
        line("m-2", r#","html":"<p>Dear <b>m-2</b>, \"sorry\".</p>""#),
        line("m-3", "")
    );
    assert_eq!(String::from_utf8(request.body.clone()).unwrap(), in_order);
    assert!(!String::from_utf8_lossy(&request.body).contains("\"html\":null"));
}

#[tokio::test]
async fn the_messages_a_relay_rejects_are_failed_and_the_rest_accepted() {
    let relay = Relay::start().await;
    let messages = messages();
    let batch = Batch { campaign: CAMPAIGN, number: 1, messages: &messages };
    let answer = sender(&relay, "/rejects", Duration::from_secs(10)).await.send(batch).await;
    // `not-in-the-batch` is none of the batch's: ignored.
    assert_eq!(answer, Answer::Accepted { rejected: vec![("m-2".to_string(), "mailbox unknown".to_string())] });
    // A 2xx that is not JSON rejects nothing; neither does a redirect count as an answer.
    let answer = sender(&relay, "/not-json", Duration::from_secs(10)).await.send(batch).await;
    assert_eq!(answer, Answer::Accepted { rejected: Vec::new() });
    let answer = sender(&relay, "/moved", Duration::from_secs(10)).await.send(batch).await;
    assert!(failure(&answer).ends_with(": status 302"), "{answer:?}");
}

#[tokio::test]
async fn no_good_answer_fails_the_whole_batch_and_every_attempt_has_the_same_key() {
    let relay = Relay::start().await;
    let messages = messages();
    let batch = Batch { campaign: CAMPAIGN, number: 9, messages: &messages };

    let down = sender(&relay, "/down", Duration::from_secs(10)).await;
    let first = down.send(batch).await;
    let second = down.send(batch).await;
    assert_eq!(first, second);
    let error = failure(&first);
    assert!(error.starts_with(&format!("POST {}: status 503: relay overloaded (you sent Bearer ", relay.url("/down"))));
    assert!(error.contains("[secret `MAILER_TOKEN`]") && !error.contains(TOKEN), "{error}");

    let slow = sender(&relay, "/slow", Duration::from_secs(1)).await;
    let answer = slow.send(batch).await;
    assert!(failure(&answer).ends_with("no complete answer within 1s"), "{answer:?}");

    let keys: Vec<String> = relay.received().iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert_eq!(keys, ["inc-1/notify/apology/9"; 3]);

    let gone = format!("http://127.0.0.1:{}/batches", closed_port().await);
    let sender = actions(loopback()).batch_http(&mailer(&gone), Duration::from_secs(10)).unwrap();
    let answer = sender.send(batch).await;
    assert!(failure(&answer).contains("could not connect"), "{answer:?}");
}

#[tokio::test]
async fn the_outbound_policy_holds_batches_as_it_holds_every_request() {
    let relay = Relay::start().await;
    // The default policy: loopback is not public, so the relay's address is refused at once...
    let error = actions(Policy::default()).batch_http(&mailer(&relay.url("/batches")), Duration::from_secs(10));
    let error = error.unwrap_err().to_string();
    assert!(
        error.starts_with("batch channel `mailer`: ") && error.contains("`127.0.0.1` is a loopback address"),
        "{error}"
    );
    // ... and a name resolving there is refused when it resolves, with nothing sent.
    let by_name = relay.url("/batches").replace("127.0.0.1", "localhost");
    let sender = actions(Policy::default()).batch_http(&mailer(&by_name), Duration::from_secs(10)).unwrap();
    let messages = messages();
    let answer = sender.send(Batch { campaign: CAMPAIGN, number: 1, messages: &messages }).await;
    assert!(failure(&answer).contains("not sent: `localhost` resolves to"), "{answer:?}");
    // Another range allowed is not this one.
    let elsewhere =
        actions(allowing(&["10.0.0.0/8"])).batch_http(&mailer(&relay.url("/batches")), Duration::from_secs(1));
    assert!(elsewhere.is_err());
    assert!(relay.received().is_empty());
}

#[tokio::test]
async fn a_batch_channel_names_a_missing_secret_and_never_shows_a_secret_url() {
    let literal = mailer("https://mailer.example/api/v1/batches");
    let actions_without = Actions::new(Arc::new(Catalog::built_in()), Arc::new(BTreeMap::new())).unwrap();
    let error = actions_without.batch_http(&literal, Duration::from_secs(1)).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "secret `MAILER_TOKEN` has no value (needed for header `Authorization` of batch channel `mailer`)"
        ),
        "{error}"
    );

    let secret_url = channel("  mailer:\n    batch: { url: { secret: MAILER_URL } }\n", "mailer");
    let secrets = BTreeMap::from([("MAILER_URL".to_string(), "mailto:token-in-url-9f3@x".to_string())]);
    let actions = Actions::new(Arc::new(Catalog::built_in()), Arc::new(secrets)).unwrap();
    let error = actions.batch_http(&secret_url, Duration::from_secs(1)).unwrap_err().to_string();
    assert!(error.contains("secret `MAILER_URL`") && !error.contains("token-in-url"), "{error}");
}

#[test]
fn batch_http_new_takes_values_as_given() {
    // The constructor for callers that resolve secrets themselves: a plain client, any URL.
    let client = reqwest::Client::new();
    let sender = BatchHttp::new(
        "http://127.0.0.1:9/batches".to_string(),
        vec![("X-Key".to_string(), "value".to_string())],
        &client,
        Duration::from_secs(1),
    );
    assert!(sender.is_ok());
    let messages = messages();
    let bytes = body(&Batch { campaign: CAMPAIGN, number: 1, messages: &messages });
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["messages"].as_array().unwrap().len(), 3);
}

/// The spool file's lines, parsed.
fn spooled(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "the file ends in a whole line");
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// `(batch, id)` of each line.
fn batches_and_ids(lines: &[Value]) -> Vec<(u64, String)> {
    lines.iter().map(|line| (line["batch"].as_u64().unwrap(), line["id"].as_str().unwrap().to_string())).collect()
}

#[tokio::test]
async fn a_jsonl_spool_holds_each_message_as_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handover/notices.jsonl");
    let spool = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap();
    let first = messages();
    let second = vec![message("m-4", Some("<p>4</p>"))];
    for (number, messages) in [(1, &first), (2, &second)] {
        let answer = spool.send(Batch { campaign: CAMPAIGN, number, messages }).await;
        assert_eq!(answer, Answer::Accepted { rejected: Vec::new() });
    }
    let lines = spooled(&path);
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[1],
        json!({ "campaign": CAMPAIGN, "batch": 1, "id": "m-2", "to": "m-2@members.example",
                "subject": "Your account, m-2", "text": "Dear member m-2,\n\"sorry\" — your code is X7K-m-2.\n",
                "html": "<p>Dear <b>m-2</b>, \"sorry\".</p>" })
    );
    assert!(lines[0].get("html").is_none());
    let read_back: Vec<Message> = lines
        .iter()
        .map(|line| {
            let mut line = line.clone();
            let object = line.as_object_mut().unwrap();
            object.remove("campaign");
            object.remove("batch");
            serde_json::from_value(line).unwrap()
        })
        .collect();
    assert_eq!(read_back, [first, second].concat());
}

#[tokio::test]
async fn a_batch_sent_again_after_a_stop_is_in_the_spool_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notices.jsonl");
    let first = messages();
    let second = vec![message("m-4", None), message("m-5", None)];
    let spool = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap();
    spool.send(Batch { campaign: CAMPAIGN, number: 1, messages: &first }).await;
    // The same batch again, in the same run and after a reopening: answered, not written.
    let again = spool.send(Batch { campaign: CAMPAIGN, number: 1, messages: &first }).await;
    assert_eq!(again, Answer::Accepted { rejected: Vec::new() });
    drop(spool);
    let spool = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap();
    let again = spool.send(Batch { campaign: CAMPAIGN, number: 1, messages: &first }).await;
    assert_eq!(again, Answer::Accepted { rejected: Vec::new() });
    assert_eq!(spooled(&path).len(), 3);
    // Another campaign's batch 1 is another batch.
    let other = [message("x-1", None)];
    spool.send(Batch { campaign: "inc-2/notify/apology", number: 1, messages: &other }).await;
    assert_eq!(spooled(&path).len(), 4);
    drop(spool);

    // A stop after batch 2's lines were written whole but before its index entry was: on
    // opening, the lines go, and batch 2 sent again is in the file once.
    let mut whole = String::new();
    for message in &second {
        whole.push_str(&json!({ "campaign": CAMPAIGN, "batch": 2, "id": message.id }).to_string());
        whole.push('\n');
    }
    append(&path, whole.as_bytes());
    let spool = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap();
    assert_eq!(spooled(&path).len(), 4);
    spool.send(Batch { campaign: CAMPAIGN, number: 2, messages: &second }).await;
    let ids = batches_and_ids(&spooled(&path));
    let expected: Vec<(u64, String)> = [(1, "m-1"), (1, "m-2"), (1, "m-3"), (1, "x-1"), (2, "m-4"), (2, "m-5")]
        .iter()
        .map(|(batch, id)| (*batch, id.to_string()))
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_torn_last_line_and_a_torn_index_entry_are_repaired_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notices.jsonl");
    let index = spool::index_path(&path);
    let first = messages();
    let spool = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap();
    spool.send(Batch { campaign: CAMPAIGN, number: 1, messages: &first }).await;
    drop(spool);
    let whole = std::fs::read(&path).unwrap();
    let whole_index = std::fs::read(&index).unwrap();

    // Batch 2 cut short in its first line, its index entry half written.
    append(&path, b"{\"campaign\":\"inc-1/notify/apology\",\"batch\":2,\"id\":\"m-4\",\"to\":\"m-4@mem");
    append(&index, b"{\"campaign\":\"inc-1/notify/apology\",\"batch\":2,\"sta");
    let spool = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    assert_eq!(std::fs::read(&index).unwrap(), whole_index);
    let second = vec![message("m-4", None)];
    let answer = spool.send(Batch { campaign: CAMPAIGN, number: 2, messages: &second }).await;
    assert_eq!(answer, Answer::Accepted { rejected: Vec::new() });
    assert_eq!(batches_and_ids(&spooled(&path)).last().unwrap(), &(2, "m-4".to_string()));
    assert_eq!(spooled(&path).len(), 4);
}

#[tokio::test]
async fn a_spool_keeps_what_was_there_and_refuses_a_file_cut_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notices.jsonl");
    std::fs::write(&path, "{\"written\":\"before phasegate\"}\n").unwrap();
    let first = messages();
    let spool = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap();
    spool.send(Batch { campaign: CAMPAIGN, number: 1, messages: &first }).await;
    drop(spool);
    let lines = spooled(&path);
    assert_eq!((lines.len(), &lines[0]), (4, &json!({ "written": "before phasegate" })));

    // Someone takes the file away but leaves the index: guessing could send twice, so no.
    std::fs::write(&path, "").unwrap();
    let error = Spool::open(&path, SpoolFormat::Jsonl, "unused@example.com").unwrap_err().to_string();
    assert!(error.contains("fewer than the") && error.contains("changed outside phasegate"), "{error}");
}

#[tokio::test]
async fn eml_files_are_messages_a_mail_parser_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eml");
    let spool = Spool::open(&out, SpoolFormat::Eml, "Harbour & Hale <care@harbourandhale.example>").unwrap();
    let mut messages = messages();
    messages.push(Message { to: "not an address".to_string(), ..message("m/4", None) });
    let batch = Batch { campaign: CAMPAIGN, number: 12, messages: &messages };
    let answer = spool.send(batch).await;
    assert_eq!(
        answer,
        Answer::Accepted {
            rejected: vec![("m/4".to_string(), "`not an address` is not an email address".to_string())]
        }
    );

    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["000012-m-1.eml", "000012-m-2.eml", "000012-m-3.eml"]);

    let read = |name: &str| std::fs::read(out.join(name)).unwrap();
    let mut message_ids = Vec::new();
    for (name, message) in names.iter().zip(&messages) {
        let bytes = read(name);
        let parsed = mail_parser::MessageParser::default().parse(&bytes).expect("the file parses as a message");
        let from = parsed.from().and_then(|from| from.first()).expect("From");
        assert_eq!(from.address(), Some("care@harbourandhale.example"));
        assert_eq!(from.name(), Some("Harbour & Hale"));
        assert_eq!(parsed.to().and_then(|to| to.first()).and_then(|to| to.address()), Some(message.to.as_str()));
        assert_eq!(parsed.subject(), Some(message.subject.as_str()));
        assert!(parsed.date().is_some(), "{name}: Date");
        let message_id = parsed.message_id().expect("Message-ID").to_string();
        assert!(message_id.ends_with("@harbourandhale.example"), "{message_id}");
        message_ids.push(message_id);
        let text = parsed.body_text(0).expect("a text part").replace("\r\n", "\n");
        assert_eq!(text.trim_end(), message.text.trim_end());
        match &message.html {
            Some(html) => {
                assert_eq!(parsed.body_html(0).as_deref().map(str::trim_end), Some(html.as_str()));
                let text = String::from_utf8_lossy(&bytes);
                assert!(text.contains("Content-Type: multipart/alternative"), "{name}: {text}");
            }
            None => assert!(!String::from_utf8_lossy(&bytes).contains("text/html"), "{name}: no HTML part"),
        }
    }
    message_ids.dedup();
    assert_eq!(message_ids.len(), 3, "one Message-ID per recipient");

    // Sent again: the same files, replaced, with the same Message-IDs; nothing half-written left.
    let before: Vec<Vec<u8>> = names.iter().map(|name| read(name)).collect();
    spool.send(batch).await;
    let mut again: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    again.sort();
    assert_eq!(again, names);
    for (name, before) in names.iter().zip(before) {
        let id =
            |bytes: &[u8]| mail_parser::MessageParser::default().parse(bytes).unwrap().message_id().map(str::to_string);
        assert_eq!(id(&read(name)), id(&before));
    }
}

#[test]
fn an_eml_spool_needs_a_directory_and_a_sender() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let error = Spool::open(&file, SpoolFormat::Eml, "care@example.com").unwrap_err().to_string();
    assert!(error.contains("is not a directory"), "{error}");
    let error = Spool::open(&dir.path().join("eml"), SpoolFormat::Eml, "not a sender").unwrap_err().to_string();
    assert_eq!(error, "the spool's sender `not a sender` is not an email address");
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// A campaign whose first window holds several batches opens its spool once: every batch's lines
/// are in the file, each once (two spools opened on the file at the same time each wrote their
/// batch from its start, so a batch counted as sent was not in the file).
#[test]
fn every_batch_of_a_concurrent_campaign_is_in_its_spool() {
    let dir = tempfile::tempdir().unwrap();
    let runbook = "apiVersion: phasegate/v1\nkind: Runbook\nid: spooled\ntitle: Spooled\nroles:\n  incident-commander: {}\n\
                   inputs:\n  member_list: { type: string }\nchannels:\n  out:\n    spool: { path: out.jsonl }\n\
                   phases:\n  - id: notify\n    steps:\n      - id: apology\n        campaign:\n\
                   \x20         recipients: { input: member_list, id_field: member_id }\n\
                   \x20         template: customer-notice\n          subject: Sorry\n          channel: out\n\
                   \x20         batch_size: 3\n          concurrency: 4\n";
    std::fs::write(dir.path().join("campaign.yaml"), runbook).unwrap();
    std::fs::write(dir.path().join("phasegate.yaml"), "people:\n  riley: { roles: [incident-commander] }\n").unwrap();
    let members: String =
        (1..=20).map(|n| format!("{{\"member_id\": \"M{n}\", \"email\": \"m{n}@example.com\"}}\n")).collect();
    std::fs::write(dir.path().join("members.jsonl"), members).unwrap();
    let cli = |args: &[&str]| {
        crate::support::Cli::new().current_dir(dir.path()).args(args).args([
            "--config",
            "phasegate.yaml",
            "--db",
            "phasegate.db",
        ])
    };
    cli(&["start", "campaign.yaml", "--as", "riley", "--input", "member_list=members.jsonl"]).succeeds();
    cli(&["run"]).succeeds();
    let lines = spooled(&dir.path().join("out.jsonl"));
    let mut found = batches_and_ids(&lines);
    found.sort_by_key(|(_, id)| id[1..].parse::<u32>().unwrap());
    let expected: Vec<(u64, String)> = (1..=20).map(|n| ((n as u64 - 1) / 3 + 1, format!("M{n}"))).collect();
    assert_eq!(found, expected);
}
