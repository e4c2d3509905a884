//! Status updates delivered to every kind of channel, held to the outbound policy, and failures
//! that name the channel without quoting a Slack URL.

use super::*;

#[tokio::test]
async fn notify_channels_are_held_to_the_policy_without_quoting_the_slack_url() {
    let fixture = Fixture::with(false, Policy::default()).await;
    let outcome = fixture.notify("internal", "internal-update", &["out", "hook", "soc"]).await;
    let error = failure(&outcome);
    for expected in [
        "webhook channel `hook`: delivery refused: `127.0.0.1` is a loopback address; allow it under `outbound.allow`",
        "slack channel `soc`: delivery refused: `127.0.0.1` is a loopback address",
        "(delivered to `out`)",
    ] {
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
    assert!(!error.contains("SLACKSECRETPATH") && !error.contains("/hook"), "{error}");
    assert!(fixture.stub.received("/hook").is_empty());
    assert!(fixture.stub.received(&format!("/slack/{SLACK_PATH}")).is_empty());
}

#[tokio::test]
async fn an_update_goes_to_stdout_a_file_a_webhook_and_slack() {
    let fixture = Fixture::new().await;
    let outcome = fixture.notify("internal", "internal-update", &["out", "log", "hook", "soc"]).await;
    let Outcome::Sent { channels, text: Some(text) } = &outcome else { panic!("sent, with its text: {outcome:?}") };
    assert_eq!(channels, &["out", "log", "hook", "soc"]);
    assert!(text.contains("Tills are trading again"), "the log keeps what was said: {text}");

    let printed = fixture.stdout.text();
    let banner = "===== phasegate: update for Incident team, incident inc-1 (requested), 2026-11-24T06:00:00Z =====";
    assert!(printed.starts_with(banner), "{printed}");
    assert!(printed.contains("Tills are trading again"), "{printed}");

    let file = fixture.dir.path().join("status/internal.md");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with(banner), "{written}");
    assert!(written.contains("## Till breach"), "{written}");

    let hook = &fixture.stub.received("/hook")[0];
    assert_eq!(hook.headers["x-hook-key"], HOOK_KEY);
    let payload: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(payload["incident"], "inc-1");
    assert_eq!(payload["runbook"], "till-breach");
    assert_eq!(payload["audience"], "internal");
    assert_eq!(payload["occasion"], "requested");
    assert!(payload["text"].as_str().unwrap().contains("Tills are trading again"));
    assert!(payload.get("html").is_none(), "internal-update has no HTML variant");

    let slack = &fixture.stub.received(&format!("/slack/{SLACK_PATH}"))[0];
    let payload: Value = serde_json::from_str(&slack.body).unwrap();
    assert!(payload["text"].as_str().unwrap().contains("Till breach"));

    // A second update is appended after the first.
    fixture.notify("internal", "internal-update", &["log"]).await;
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.matches(banner).count(), 2);
    assert!(written.contains(&format!("\n\n{banner}")), "entries are separated by a blank line");
}

#[tokio::test]
async fn a_webhook_gets_the_html_variant_when_there_is_one() {
    let fixture = Fixture::new().await;
    let outcome = fixture.notify("executives", "executive-briefing", &["hook"]).await;
    let Outcome::Sent { channels, text: Some(text) } = &outcome else { panic!("sent, with its text: {outcome:?}") };
    assert_eq!(channels, &["hook"]);
    assert!(text.contains("Till breach") && !text.starts_with("<!DOCTYPE"), "the text variant is kept: {text}");
    let payload: Value = serde_json::from_str(&fixture.stub.received("/hook")[0].body).unwrap();
    assert!(payload["html"].as_str().unwrap().starts_with("<!DOCTYPE html>"));
    assert!(payload["text"].as_str().unwrap().contains("Till breach"));
}

#[tokio::test]
async fn failed_channels_are_named_without_the_slack_url() {
    let fixture = Fixture::new().await;
    let outcome = fixture
        .notify("executives", "executive-briefing", &["hook", "mail", "soc-down", "soc-gone", "soc-unset"])
        .await;
    let error = failure(&outcome);
    for expected in [
        "email channel `mail`: secret `smtp` has no value (needed for the channel's SMTP relay); declare it under `secrets:` in the configuration, with an environment variable or file that holds it",
        "slack channel `soc-down`: delivery failed: status 500",
        "slack channel `soc-gone`: delivery failed: could not connect",
        "slack channel `soc-unset`: secret `soc-unset-url` has no value (needed for the channel's URL); declare it under `secrets:` in the configuration, with an environment variable or file that holds it",
        "(delivered to `hook`)",
    ] {
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
    for url in &fixture.slack_urls {
        assert!(!error.contains(url.as_str()), "{error}");
    }
    assert!(!error.contains("SLACKSECRETPATH"), "{error}");
}

#[tokio::test]
async fn unknown_templates_audiences_and_channels_send_nothing() {
    let fixture = Fixture::new().await;
    let unknown_channel = fixture.notify("internal", "internal-update", &["out", "pager", "sms"]).await;
    assert_eq!(failure(&unknown_channel), "channels `pager`, `sms` do not exist in the runbook");
    let unknown_template = fixture.notify("internal", "no-such-template", &["out"]).await;
    assert_eq!(failure(&unknown_template), "template `no-such-template` does not exist");
    let unknown_audience = fixture.notify("board", "internal-update", &["out"]).await;
    assert_eq!(failure(&unknown_audience), "audience `board` does not exist in the runbook");
    assert!(fixture.stdout.text().is_empty(), "nothing was printed");
}

/// A notify step's update read "INTERNAL UPDATE: step" (issue 12's user test, the reference
/// drill's kick-off update): its occasion is now said in words.
#[tokio::test]
async fn a_notify_steps_update_says_its_occasion_in_words() {
    let fixture = Fixture::new().await;
    let outcome = fixture
        .carry_out(EffectKind::Notify {
            audience: "internal".into(),
            template: "internal-update".into(),
            channels: vec!["out".into()],
            occasion: "step".into(),
            message: Some("Tills are trading again".into()),
            step: None,
        })
        .await;
    assert!(matches!(outcome, Outcome::Sent { .. }), "{outcome:?}");
    let printed = fixture.stdout.text();
    assert!(printed.contains("INTERNAL UPDATE: a message from the response team ("), "{printed}");
    assert!(!printed.contains("UPDATE: step"), "{printed}");
}
