//! Email channels against a real SMTP server (`crate::smtp`): recipients in the envelope and the
//! headers, `From`, `Subject`, `Date`, text and HTML parts, a `Message-ID` that a retry keeps,
//! credentials that reach the relay and nothing else, relays that refuse or cannot be reached,
//! the outbound policy, STARTTLS required of a relay off this host, and TLS relays (STARTTLS and
//! `smtps://`) whose certificate is checked, through the binary with `SSL_CERT_FILE` naming a test
//! authority made with `openssl`. The tests that need the server (or `openssl`) skip loudly when
//! it is missing; those that need none always run.

use super::*;
use crate::smtp::{Options, Sink};

const MAIL_RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: till-breach
title: Till breach
roles:
  ops: {}
channels:
  board-mail:
    email:
      to: [ciso@example.com, "Board <board@example.com>"]
      from: "Phasegate <phasegate@till.example>"
      relay_secret: smtp
  plain-mail: { email: { to: [soc@example.com], relay_secret: smtp } }
  flaky: { webhook: { url: "STUB/down/flaky" } }
audiences:
  executives: { title: Executive team, template: executive-briefing, channels: [board-mail] }
  internal: { title: Incident team, template: internal-update, channels: [plain-mail] }
phases:
  - id: contain
    title: Contain the intrusion
    steps:
      - id: tell-board
        retry: { attempts: 2, backoff: 1s }
        notify: { audience: executives, channels: [board-mail, flaky], message: Tills are trading again }
"#;

/// The password of the relay's user, with characters that must be percent-encoded in its URL.
const RELAY_PASSWORD: &str = "relay-pw/9:x@y%z";
const RELAY_PASSWORD_ENCODED: &str = "relay-pw%2F9%3Ax%40y%25z";
const RELAY_USER: &str = "alerts@till.example";
const RELAY_USER_ENCODED: &str = "alerts%40till.example";

/// An incident of [`MAIL_RUNBOOK`] as its start left it, with the effect of its notify step.
struct Mailroom {
    /// Serves the webhook channel `flaky`, which always fails.
    _stub: Stub,
    runbook: Runbook,
    events: Vec<Event>,
    first_attempt: Effect,
}

impl Mailroom {
    async fn new() -> Mailroom {
        let stub = Stub::start().await;
        let text = MAIL_RUNBOOK.replace("STUB", &stub.base);
        let runbook = phasegate::runbook::parse(&text, &Catalog::built_in()).expect("the test runbook is valid");
        let start = starting(text);
        let decision = decide(&runbook, &Directory::default(), None, &start).unwrap();
        let first_attempt = notify_effect(&decision);
        Mailroom { _stub: stub, runbook, events: decision.events, first_attempt }
    }

    fn incident(&self) -> Incident {
        Incident::from_events(&self.events).unwrap()
    }

    /// Carries out `effect` with `actions` at 06:00.
    async fn carry_out(&self, actions: &Actions, effect: &Effect) -> Outcome {
        let incident = self.incident();
        let view = IncidentView {
            runbook: &self.runbook,
            incident: &incident,
            events: &self.events,
            now: at("2026-11-24T06:00:00Z"),
        };
        actions.carry_out(effect, &view).await
    }

    /// A status update (not a step's) for `audience` to `channels`, as the effect `id`.
    async fn update(&self, actions: &Actions, id: &str, audience: &str, template: &str, channels: &[&str]) -> Outcome {
        let kind = EffectKind::Notify {
            audience: audience.into(),
            template: template.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            occasion: "requested".into(),
            message: Some("Tills are trading again".into()),
            step: None,
        };
        self.carry_out(actions, &Effect { id: id.into(), kind }).await
    }

    /// Records `outcome` for `effect` at `at`, keeping the events.
    fn record(&mut self, effect: Effect, outcome: Outcome, at: DateTime<Utc>) -> Decision {
        let request = Request { actor: "phasegate".into(), at, command: Command::Record { effect, outcome } };
        let decision = decide(&self.runbook, &Directory::default(), Some(&self.incident()), &request).unwrap();
        self.events.extend(decision.events.iter().cloned());
        decision
    }

    fn tick(&mut self, at: DateTime<Utc>) -> Decision {
        let request = Request { actor: "phasegate".into(), at, command: Command::Tick };
        let decision = decide(&self.runbook, &Directory::default(), Some(&self.incident()), &request).unwrap();
        self.events.extend(decision.events.iter().cloned());
        decision
    }
}

fn notify_effect(decision: &Decision) -> Effect {
    let effect = decision.effects.iter().find(|effect| matches!(effect.kind, EffectKind::Notify { .. }));
    effect.cloned().unwrap_or_else(|| panic!("a notify effect: {:?}", decision.effects))
}

/// Actions whose secret `smtp` is `relay`, held to `policy`.
fn actions(relay: Option<&str>, policy: Policy) -> Actions {
    let secrets: BTreeMap<String, String> =
        relay.map(|url| ("smtp".to_string(), url.to_string())).into_iter().collect();
    Actions::new(Arc::new(Catalog::built_in()), Arc::new(secrets)).unwrap().with_outbound(policy).unwrap()
}

fn sent(outcome: &Outcome) -> &[String] {
    match outcome {
        Outcome::Sent { channels, .. } => channels,
        other => panic!("expected it sent, got {other:?}"),
    }
}

#[tokio::test]
async fn an_update_arrives_by_mail_with_its_recipients_headers_and_both_parts() {
    let Some(sink) = Sink::start("an_update_arrives_by_mail_with_its_recipients_headers_and_both_parts") else {
        return;
    };
    let room = Mailroom::new().await;
    let actions = actions(Some(&sink.url("")), loopback());
    let outcome =
        room.update(&actions, "inc-1/update/executives/3", "executives", "executive-briefing", &["board-mail"]).await;
    assert_eq!(sent(&outcome), ["board-mail"]);
    let mails = sink.received();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "phasegate@till.example");
    assert_eq!(mail.rcpt_tos, ["ciso@example.com", "board@example.com"]);
    assert_eq!(mail.header("From"), Some("Phasegate <phasegate@till.example>"));
    assert_eq!(mail.header("To"), Some("ciso@example.com, Board <board@example.com>"));
    assert_eq!(
        mail.header("Subject"),
        Some("[inc-1] Till breach: update for Executive team (requested by a responder)")
    );
    assert_eq!(mail.header("Date"), Some("Tue, 24 Nov 2026 06:00:00 +0000"));
    let message_id = mail.header("Message-ID").expect("a Message-ID");
    assert!(message_id.starts_with('<') && message_id.ends_with("@till.example>"), "{message_id}");
    assert!(mail.header("Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")), "{mail:#?}");
    let kinds: Vec<&str> = mail.parts.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["text/plain", "text/html"], "the text first, the richer part last");
    let text = mail.part("text/plain").unwrap();
    assert!(text.contains("Till breach") && text.contains("Tills are trading again"), "{text}");
    let html = mail.part("text/html").unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("Tills are trading again"), "{html}");

    // A template without HTML is one text part; a channel without `from` sends as the default.
    let outcome =
        room.update(&actions, "inc-1/update/internal/4", "internal", "internal-update", &["plain-mail"]).await;
    assert_eq!(sent(&outcome), ["plain-mail"]);
    let mail = &sink.received()[1];
    assert_eq!(
        (mail.mail_from.as_str(), mail.rcpt_tos.as_slice()),
        ("phasegate@localhost", &["soc@example.com".to_string()][..])
    );
    assert_eq!(mail.header("From"), Some("phasegate@localhost"));
    assert!(mail.header("Content-Type").is_some_and(|c| c.starts_with("text/plain")), "{mail:#?}");
    assert!(mail.part("text/plain").unwrap().contains("Tills are trading again"));
    assert!(mail.header("Message-ID").unwrap().ends_with("@localhost>"));
}

#[tokio::test]
async fn a_retried_step_sends_the_same_message_and_another_update_another() {
    let Some(sink) = Sink::start("a_retried_step_sends_the_same_message_and_another_update_another") else { return };
    let mut room = Mailroom::new().await;
    let actions = actions(Some(&sink.url("")), loopback());
    // The step's update reaches the mail channel but not the webhook: the attempt failed, and the
    // engine's retry rules give it a second one, which sends the mail again.
    let first = room.first_attempt.clone();
    assert_eq!(first.id, "inc-1/contain/tell-board/attempt-1");
    let outcome = room.carry_out(&actions, &first).await;
    let error = failure(&outcome);
    assert!(error.contains("webhook channel `flaky`") && error.contains("(delivered to `board-mail`)"), "{error}");
    let decision = room.record(first, outcome.clone(), at("2026-11-24T06:00:01Z"));
    let retry_at = decision
        .events
        .iter()
        .find_map(|event| match &event.kind {
            EventKind::StepFailed { retry_at, .. } => Some(retry_at.expect("a second attempt is due")),
            _ => None,
        })
        .expect("the step failed");
    let second = notify_effect(&room.tick(retry_at));
    assert_eq!(second.id, "inc-1/contain/tell-board/attempt-2");
    room.carry_out(&actions, &second).await;
    let mails = sink.received();
    assert_eq!(mails.len(), 2, "each attempt sent the mail");
    let ids: Vec<&str> = mails.iter().map(|mail| mail.header("Message-ID").unwrap()).collect();
    assert_eq!(ids[0], ids[1], "a retry is the same message to the recipients' mail programs");
    // Rendered at each attempt, the text tells the incident as it stands; the message is the same.
    assert!(mails.iter().all(|mail| mail.part("text/plain").unwrap().contains("Tills are trading again")));

    // Another update to the same channel is another message.
    room.update(&actions, "inc-1/update/executives/9", "executives", "executive-briefing", &["board-mail"]).await;
    let third = &sink.received()[2];
    assert_ne!(third.header("Message-ID").unwrap(), ids[0]);
}

#[tokio::test]
async fn the_relay_gets_its_credentials_and_nothing_else_shows_them() {
    let test = "the_relay_gets_its_credentials_and_nothing_else_shows_them";
    let options = Options { login: Some((RELAY_USER, RELAY_PASSWORD)), ..Options::default() };
    let Some(sink) = Sink::with(test, options) else { return };
    let room = Mailroom::new().await;
    let url = sink.url(&format!("{RELAY_USER_ENCODED}:{RELAY_PASSWORD_ENCODED}@"));
    // The sink refuses mail from a client that has not logged in: a message on file logged in.
    let outcome = room
        .update(&actions(Some(&url), loopback()), "inc-1/u/1", "executives", "executive-briefing", &["board-mail"])
        .await;
    assert_eq!(sent(&outcome), ["board-mail"]);
    assert_eq!(sink.received().len(), 1);
    for shown in [&sink.received()[0].data, &serde_json::to_string(&outcome).unwrap()] {
        assert!(!shown.contains(RELAY_PASSWORD) && !shown.contains(RELAY_PASSWORD_ENCODED), "{shown}");
    }

    // A wrong password: refused by the relay, said without the URL, the user or either password.
    let wrong = sink.url(&format!("{RELAY_USER_ENCODED}:not-the-{RELAY_PASSWORD_ENCODED}@"));
    let outcome = room
        .update(&actions(Some(&wrong), loopback()), "inc-1/u/2", "executives", "executive-briefing", &["board-mail"])
        .await;
    let error = failure(&outcome);
    let relay =
        format!("not delivered: email channel `board-mail`: relay `127.0.0.1:{}`: permanent error (535)", sink.port);
    assert!(error.starts_with(&relay), "{error}");
    for secret in [wrong.as_str(), RELAY_USER, RELAY_USER_ENCODED, RELAY_PASSWORD, RELAY_PASSWORD_ENCODED] {
        assert!(!error.contains(secret), "the failure shows {secret:?}: {error}");
    }
    assert_eq!(sink.received().len(), 1, "nothing more arrived");
}

#[tokio::test]
async fn a_relay_that_refuses_a_recipient_sends_nothing_and_says_why() {
    let options = Options { reject_rcpt: Some("board@example.com"), ..Options::default() };
    let Some(sink) = Sink::with("a_relay_that_refuses_a_recipient_sends_nothing_and_says_why", options) else { return };
    let room = Mailroom::new().await;
    let actions = actions(Some(&sink.url("")), loopback());
    let outcome = room.update(&actions, "inc-1/u/1", "executives", "executive-briefing", &["board-mail"]).await;
    let error = failure(&outcome);
    let expected = format!(
        "not delivered: email channel `board-mail`: relay `127.0.0.1:{}`: permanent error (550): 5.1.1 no such mailbox here",
        sink.port
    );
    assert!(error.starts_with(&expected), "{error}");
    assert!(sink.received().is_empty(), "no message went to some of the recipients only");
}

#[tokio::test]
async fn relays_unreachable_malformed_unset_or_refused_by_policy_fail_clearly() {
    let room = Mailroom::new().await;
    let port = closed_port().await;
    let table: Vec<(Option<String>, Policy, String)> = vec![
        // Regression: the relay's user was scrubbed from phasegate's own words too, so a user
        // called `relay` made this "cannot connect to [secret `smtp`] ...".
        (
            Some(format!("smtp://relay:hunter2@127.0.0.1:{port}")),
            loopback(),
            format!("email channel `board-mail`: cannot connect to relay `127.0.0.1:{port}`: Connection refused"),
        ),
        (
            Some("hunter2-pasted-here".into()),
            loopback(),
            "email channel `board-mail`: secret `smtp` is not an SMTP relay URL: it is not a URL; write `smtp://".into(),
        ),
        (
            Some("smtp://user:hunter2@relay.example/extra".into()),
            loopback(),
            "email channel `board-mail`: secret `smtp` is not an SMTP relay URL: it has a path".into(),
        ),
        (None, loopback(), "email channel `board-mail`: secret `smtp` has no value (needed for the channel's SMTP relay); declare it under `secrets:` in the configuration, with an environment variable or file that holds it".into()),
        (
            Some(format!("smtp://user:hunter2@127.0.0.1:{port}")),
            Policy::default(),
            format!(
                "email channel `board-mail`: relay `127.0.0.1:{port}` refused: `127.0.0.1` is a loopback address; allow it under `outbound.allow`"
            ),
        ),
        (
            Some(format!("smtp://localhost:{port}")),
            Policy::default(),
            format!("email channel `board-mail`: relay `localhost:{port}` refused: `localhost` resolves to `"),
        ),
        (
            Some("smtps://metadata.google.internal".into()),
            Policy::default(),
            "email channel `board-mail`: relay `metadata.google.internal:465` refused: `metadata.google.internal` is the name of a cloud metadata service".into(),
        ),
    ];
    for (relay, policy, expected) in table {
        let outcome = room
            .update(
                &actions(relay.as_deref(), policy),
                "inc-1/u/1",
                "executives",
                "executive-briefing",
                &["board-mail"],
            )
            .await;
        let error = failure(&outcome);
        let expected = format!("not delivered: {expected}");
        assert!(error.starts_with(&expected), "{relay:?}:\n{error}\nwanted:\n{expected}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}

/// An address of this host that is not loopback, if it has one: where a relay "elsewhere" can be
/// started without a network. A UDP socket's connect sends nothing; it only picks a route.
fn address_off_loopback() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").or_else(|_| socket.connect("203.0.113.1:9")).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|address| !address.is_loopback() && !address.is_unspecified())
}

#[tokio::test]
async fn a_relay_off_this_host_must_offer_starttls() {
    let test = "a_relay_off_this_host_must_offer_starttls";
    let Some(address) = address_off_loopback() else {
        crate::smtp::skipped(&format!(
            "{test}: this host has no address but loopback to start a relay \"elsewhere\" on"
        ));
        return;
    };
    let host = address.to_string();
    let Some(sink) = Sink::with(test, Options { host: Some(&host), ..Options::default() }) else { return };
    let room = Mailroom::new().await;
    let actions = actions(Some(&sink.url("user:hunter2@")), allowing(&[&host]));
    let outcome = room.update(&actions, "inc-1/u/1", "executives", "executive-briefing", &["board-mail"]).await;
    let error = failure(&outcome);
    let expected = format!(
        "not delivered: email channel `board-mail`: relay `{host}:{}` does not offer STARTTLS, which phasegate requires of a relay that is not on this host",
        sink.port
    );
    assert!(error.starts_with(&expected), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(sink.received().is_empty(), "nothing was sent in plain text");
}

/// A runbook whose start sends the executives an update by mail, for the binary to run.
const TLS_RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: tls-mail
title: TLS mail
roles:
  ops: {}
channels:
  mail: { email: { to: [ciso@example.com], from: phasegate@till.example, relay_secret: SMTP_RELAY_URL } }
audiences:
  executives: { title: Executive team, template: executive-briefing, channels: [mail] }
status_updates:
  - on: [incident_started]
    audiences: [executives]
phases:
  - id: contain
    title: Contain
    steps:
      - id: isolate
        manual: { instructions: Isolate the tills, assignee: ops }
"#;

/// A certificate authority, and a server certificate it signed for `addresses`, made with the
/// `openssl` program in `dir`: (the authority's PEM, the server's PEM, the server's key). `None`,
/// said loudly, when `openssl` is missing.
fn certificates(test: &str, dir: &std::path::Path, name: &str, addresses: &[&str]) -> Option<[std::path::PathBuf; 3]> {
    let path = |file: &str| dir.join(format!("{name}-{file}"));
    let alt_names: Vec<String> = addresses.iter().map(|address| format!("IP:{address}")).collect();
    let extensions = path("server.ext");
    let text =
        format!("subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n", alt_names.join(","));
    std::fs::write(&extensions, text).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let subject = format!("/CN=phasegate test CA {name}");
    let steps: [Vec<std::ffi::OsString>; 3] = [
        [&["req", "-x509"][..], &ec, &["-days", "2", "-subj", &subject, "-keyout"]]
            .concat()
            .iter()
            .map(Into::into)
            .chain([path("ca.key").into(), "-out".into(), path("ca.pem").into()])
            .collect(),
        [&["req"][..], &ec, &["-subj", "/CN=sink.test", "-keyout"]]
            .concat()
            .iter()
            .map(Into::into)
            .chain([path("server.key").into(), "-out".into(), path("server.csr").into()])
            .collect(),
        ["x509", "-req", "-days", "2", "-in"]
            .iter()
            .map(Into::into)
            .chain([path("server.csr").into(), "-CA".into(), path("ca.pem").into(), "-CAkey".into()])
            .chain([path("ca.key").into(), "-CAcreateserial".into(), "-extfile".into(), extensions.into()])
            .chain(["-out".into(), path("server.pem").into()])
            .collect(),
    ];
    for args in steps {
        let made = std::process::Command::new("openssl").args(&args).output();
        match made {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!("openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr)),
            Err(error) => {
                crate::smtp::skipped(&format!(
                    "{test}: it makes certificates with the `openssl` program ({error}); install Debian's `openssl`"
                ));
                return None;
            }
        }
    }
    Some([path("ca.pem"), path("server.pem"), path("server.key")])
}

/// The errors of the executives' status updates that failed, as `status --format json` has them.
fn update_errors(cli: impl Fn(&[&str]) -> crate::support::Cli, incident: &str) -> Vec<String> {
    let status: Value =
        serde_json::from_str(&cli(&["status", incident, "--format", "json"]).succeeds().stdout()).unwrap();
    status["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| if event["event"].is_object() { &event["event"] } else { event })
        .filter(|event| event["type"] == "status_update_failed")
        .map(|event| event["error"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tls_relays_are_verified_and_logged_into_over_tls() {
    let test = "tls_relays_are_verified_and_logged_into_over_tls";
    let Some(address) = address_off_loopback() else {
        crate::smtp::skipped(&format!(
            "{test}: this host has no address but loopback to start a relay \"elsewhere\" on"
        ));
        return;
    };
    let address = address.to_string();
    let dir = tempfile::tempdir().unwrap();
    let Some([ca, cert, key]) = certificates(test, dir.path(), "trusted", &["127.0.0.1", &address]) else { return };
    let Some([other_ca, ..]) = certificates(test, dir.path(), "other", &["127.0.0.1", &address]) else { return };
    let login = Some((RELAY_USER, RELAY_PASSWORD));
    let tls = Some((cert.as_path(), key.as_path()));
    let starttls = Options { host: Some(&address), login, tls, implicit_tls: false, ..Options::default() };
    let Some(starttls) = Sink::with(test, starttls) else { return };
    let Some(implicit) = Sink::with(test, Options { login, tls, implicit_tls: true, ..Options::default() }) else {
        return;
    };
    std::fs::write(dir.path().join("tls-mail.yaml"), TLS_RUNBOOK).unwrap();
    let config = format!(
        "people:\n  dana: {{ roles: [ops] }}\noutbound:\n  allow: [127.0.0.1/32, {address}/32]\nsecrets:\n  SMTP_RELAY_URL: {{ env: PGTEST_SMTP_RELAY_URL }}\n"
    );
    std::fs::write(dir.path().join("phasegate.yaml"), config).unwrap();
    let login = format!("{RELAY_USER_ENCODED}:{RELAY_PASSWORD_ENCODED}@");
    let cases = [
        (format!("smtp://{login}{address}:{}", starttls.port), &starttls),
        (format!("smtps://{login}127.0.0.1:{}", implicit.port), &implicit),
    ];
    for (url, sink) in cases {
        let secrets = [url.as_str(), RELAY_USER, RELAY_PASSWORD, RELAY_PASSWORD_ENCODED];
        for (trusted, delivered) in [(&other_ca, 0), (&ca, 1)] {
            let cli = |args: &[&str]| {
                crate::support::Cli::new()
                    .current_dir(dir.path())
                    .args(args)
                    .args(["--config", "phasegate.yaml", "--db", "phasegate.db"])
                    .env("PGTEST_SMTP_RELAY_URL", &url)
                    .env("SSL_CERT_FILE", trusted)
                    .env("SSL_CERT_DIR", dir.path().join("no-such-dir"))
            };
            let incident = cli(&["start", "tls-mail.yaml", "--as", "dana"]).succeeds().stdout().trim().to_string();
            let mut run = cli(&["run"]).succeeds();
            let output = format!("{}{}", run.stdout(), run.stderr());
            let errors = update_errors(cli, &incident);
            for secret in secrets {
                assert!(!output.contains(secret) && !errors.join("\n").contains(secret), "{url}: {secret:?} shows");
            }
            if delivered == 0 {
                assert_eq!(errors.len(), 1, "{url}: the update failed: {errors:?}");
                assert!(errors[0].contains("invalid peer certificate: UnknownIssuer"), "{url}: {}", errors[0]);
            } else {
                assert!(errors.is_empty(), "{url}: {errors:?}");
            }
            assert_eq!(sink.received().len(), delivered, "{url}, trusting {}", trusted.display());
        }
        let mail = &sink.received()[0];
        assert_eq!(mail.rcpt_tos, ["ciso@example.com"]);
        assert!(mail.header("Subject").unwrap().contains("update for Executive team (incident declared)"));
    }
}
