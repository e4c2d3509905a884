//! A campaign whose channel keeps failing says why, where a person looks: a relay that answers
//! 503 and then, once it recovers, 200. While it fails, `phasegate campaign status` (text and
//! JSON) and the incident's page say which batch is retrying, which attempt failed, with what
//! (the status and the start of the relay's answer) and when it goes again, and `/metrics`
//! counts the failed attempts by kind; once the relay takes the batch, both go back to normal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::flows::{next_change, stream, version};
use super::{DANA, Dashboard};
use crate::support::{Cli, wait_until};

/// A batch relay on loopback that answers 503, with a reason, while `failing`, and 200 after.
struct Relay {
    base: String,
    failing: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (failing, requests) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
        let state = (Arc::clone(&failing), Arc::clone(&requests));
        let app = axum::Router::new().fallback(answer).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Relay { base, failing, requests }
    }
}

async fn answer(
    axum::extract::State((failing, requests)): axum::extract::State<(Arc<AtomicBool>, Arc<AtomicUsize>)>,
) -> (axum::http::StatusCode, String) {
    requests.fetch_add(1, Ordering::SeqCst);
    if failing.load(Ordering::SeqCst) {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: the relay is overloaded".into())
    } else {
        (axum::http::StatusCode::OK, "{}".into())
    }
}

fn runbook(members: &std::path::Path, relay: &str) -> String {
    format!(
        r#"apiVersion: phasegate/v1
kind: Runbook
id: web-retry
title: Member notices through a relay that fails for a while
roles:
  commander: {{}}
rights: {{ close: [commander] }}
inputs:
  members: {{ type: string, default: "{members}" }}
channels:
  relay:
    batch:
      url: {relay}/batches
phases:
  - id: notify
    steps:
      - id: send
        title: Tell every member
        campaign:
          recipients: {{ input: members, id_field: member_id }}
          template: customer-notice
          subject: About your account
          channel: relay
"#,
        members = members.display(),
    )
}

/// `phasegate campaign status` of the campaign, as text and as JSON.
fn status(dir: &std::path::Path, id: &str) -> (String, Value) {
    let args = ["--config", "phasegate.yaml", "--db", "phasegate.db"];
    let cli = || Cli::new().current_dir(dir).args(["campaign", "status", id, "notify/send"]).args(args);
    // JSON first: what it shows (retrying, finished) holds until the relay changes its answer,
    // so the text, read after, shows it too.
    let json = serde_json::from_str(&cli().args(["--format", "json"]).succeeds().stdout()).unwrap();
    let text = cli().succeeds().stdout();
    (text, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_relay_shows_as_retrying_with_its_error_until_it_recovers() {
    let relay = Relay::start().await;
    let failing = Arc::clone(&relay.failing);
    let files = tempfile::tempdir().unwrap();
    let members = files.path().join("members.jsonl");
    let list: String = (1..=5)
        .map(|n| {
            format!("{{\"member_id\":\"m{n}\",\"email\":\"member{n}@members.example\",\"first_name\":\"M{n}\"}}\n")
        })
        .collect();
    std::fs::write(&members, list).unwrap();
    let text = runbook(&members, &relay.base);
    let top = "outbound:\n  allow: [127.0.0.1/32]\n";
    let dashboard = Dashboard::start_reaching(&[("web-retry.yaml", &text)], top, Duration::from_millis(50)).await;
    let dir = dashboard._dir.path().to_path_buf();
    let id = dashboard.start_runbook("web-retry").await;
    let mut browser = dashboard.sign_in(DANA).await;
    let page_path = format!("/incidents/{id}");

    // Failing: the command line says why, in words and in JSON.
    let (text, json) = wait_until("the campaign to show a failed attempt", Duration::from_secs(60), async || {
        let (text, json) = status(&dir, &id);
        if json["retrying"].is_null() { Err(text) } else { Ok((text, json)) }
    })
    .await;
    assert!(text.starts_with(&format!("campaign {id}/notify/send: retrying\nretrying: batch 1, attempt ")), "{text}");
    assert!(text.contains(" of 8, last error: POST "), "{text}");
    assert!(text.contains("/batches: status 503: Service Unavailable: the relay is overloaded at "), "{text}");
    assert_eq!(json["state"], "retrying", "{json}");
    assert_eq!(json["retrying"]["batch"], 1, "{json}");
    assert_eq!(json["retrying"]["class"], "http_status", "{json}");
    assert!(json["retrying"]["attempt"].as_u64().unwrap() >= 1, "{json}");
    assert!(json["retrying"]["error"].as_str().unwrap().contains("status 503"), "{json}");
    assert!(json["retrying_text"].as_str().unwrap().starts_with("retrying: batch 1, attempt "), "{json}");

    // The page says it too, beside the campaign's progress.
    let (status_code, _, page) = browser.get(&page_path).await;
    assert_eq!(status_code, 200);
    let shown = page.split("id=\"retrying-notify-send\"").nth(1).expect("the page shows the failing batch");
    let shown = &shown[..shown.find("</p>").unwrap()];
    assert!(shown.contains("</span> batch 1, attempt "), "{shown}");
    assert!(shown.contains("status 503: Service Unavailable: the relay is overloaded at "), "{shown}");
    assert!(shown.contains("; next try ") || shown.contains(" in flight now"), "{shown}");
    assert!(page.contains("channel failing"), "the campaign's heading says its channel is failing");
    // What blocks the phase says it too: the campaign does not go on by itself while it fails.
    let blocker = page.split("id=\"blocker-retrying-").nth(1).expect("the blocker names the failing channel");
    let blocker = &blocker[..blocker.find("</div>").unwrap()];
    assert!(blocker.contains("Channel failing</span> batch 1, attempt "), "{blocker}");
    assert!(blocker.contains("href=\"#campaign-notify-send\""), "{blocker}");

    // `/metrics` counts the failed attempts by kind.
    let metrics =
        dashboard.client.get(format!("{}/metrics", dashboard.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("phasegate_campaign_failed_attempts_total{reason=\"http_status\"} ")),
        "{metrics}"
    );

    // An open page hears of the next failed attempt, though it changes no event: its live stream
    // says so with the version it has.
    let settled = version(&dashboard, &id).await;
    let mut live = stream(&dashboard, &browser, &id, settled).await;
    assert_eq!(next_change(&mut live, Duration::from_secs(60)).await, settled, "a failed attempt, no new event");
    drop(live);

    // The relay recovers: the batch goes through, and both go back to normal.
    failing.store(false, Ordering::SeqCst);
    let (text, json) = wait_until("the campaign to finish", Duration::from_secs(60), async || {
        let (text, json) = status(&dir, &id);
        if json["state"] == "finished" { Ok((text, json)) } else { Err(text) }
    })
    .await;
    assert!(json["retrying"].is_null(), "{json}");
    assert_eq!((json["sent"].as_u64(), json["failed"].as_u64()), (Some(5), Some(0)), "{json}");
    assert!(text.starts_with(&format!("campaign {id}/notify/send: finished\n5 of 5 sent, 0 failed")), "{text}");
    assert!(!text.contains("retrying"), "{text}");
    let (_, _, page) = browser.get(&page_path).await;
    assert!(!page.contains("id=\"retrying-notify-send\"") && !page.contains("blocker-retrying-"), "{page}");
    assert!(!page.contains("channel failing") && !page.contains("Channel failing"), "{page}");
    assert!(relay.requests.load(Ordering::SeqCst) >= 2, "the batch was sent again after the 503");
    dashboard.stop().await;
}
