//! A `test_first` campaign steered over the REST API and from the incident page: a test send, the
//! launch it allows, then pause, resume and cancel, each for the runbook's `campaign` roles only,
//! refused with the reason and nothing recorded for anyone else, without the CSRF token, and for
//! bad input (an unknown step, a step that is not a campaign, a cancel without a reason).

use std::time::Duration;

use serde_json::{Value, json};

use super::{DANA, Dashboard, LEE, TOM, flash};
use crate::support::answer;

/// Members' notices sent only once a test went out; `check` is a manual step after it.
fn runbook(members: &std::path::Path, spool: &std::path::Path) -> String {
    format!(
        r#"apiVersion: phasegate/v1
kind: Runbook
id: web-launch
title: Member notices, tested first
roles:
  commander: {{}}
  communications: {{}}
rights: {{ close: [commander], campaign: [communications] }}
inputs:
  members: {{ type: string, default: "{members}" }}
channels:
  export:
    spool: {{ path: "{spool}" }}
phases:
  - id: notify
    steps:
      - id: send
        title: Tell every member
        campaign:
          recipients: {{ input: members, id_field: member_id }}
          template: customer-notice
          subject: About your account
          channel: export
          test_first: true
      - id: check
        manual: {{ instructions: Count the replies }}
"#,
        members = members.display(),
        spool = spool.display()
    )
}

/// The list, the spool the channel writes to, and the dashboard over the runbook, whose runtime
/// loop passes once, at start: a launched campaign stays sending, untouched by it.
struct Fixture {
    dashboard: Dashboard,
    spool: std::path::PathBuf,
    _files: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let files = tempfile::tempdir().unwrap();
        let members = files.path().join("members.jsonl");
        let list: String = (1..=5)
            .map(|n| {
                format!("{{\"member_id\":\"m{n}\",\"email\":\"member{n}@members.example\",\"first_name\":\"M{n}\"}}\n")
            })
            .collect();
        std::fs::write(&members, list).unwrap();
        let spool = files.path().join("spool.jsonl");
        let text = runbook(&members, &spool);
        let top = "campaigns:\n  test_recipients: [\"@harbour.example\"]\n";
        let dashboard =
            Dashboard::start_configured(&[("web-launch.yaml", &text)], "", top, Duration::from_secs(3600)).await;
        Fixture { dashboard, spool, _files: files }
    }

    /// The lines the channel took.
    fn spooled(&self) -> usize {
        std::fs::read_to_string(&self.spool).unwrap_or_default().lines().count()
    }

    /// `POST path` with `token` and `body`: the status and the JSON answer.
    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let client = &self.dashboard.client;
        let request = client.post(format!("{}{path}", self.dashboard.base)).bearer_auth(token);
        let response = request.header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
        answer(response).await
    }
}

/// The error's code and whether its message contains `says`.
fn refused(answer: &Value, says: &str) -> (Option<String>, bool) {
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    (answer["error"]["code"].as_str().map(str::to_string), message.contains(says))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_launches_pauses_resumes_and_cancels_a_campaign_for_its_roles_only() {
    let fixture = Fixture::start().await;
    let dashboard = &fixture.dashboard;
    let id = dashboard.start_runbook("web-launch").await;
    let at = |step: &str, action: &str| format!("/api/v1/incidents/{id}/phases/notify/steps/{step}/campaign/{action}");
    let before = dashboard.by_people(&id).await;

    // Lee and Dana hold no `campaign` role; nothing is recorded for them.
    for (token, action) in [(LEE, "launch"), (DANA, "launch"), (LEE, "pause"), (LEE, "cancel")] {
        let (status, answer) = fixture.post(&at("send", action), token, json!({ "reason": "mine" })).await;
        assert_eq!(
            (status, refused(&answer, "communications")),
            (403, (Some("missing_role".into()), true)),
            "{answer}"
        );
    }
    // Tom may, but not before a test send went out, nor pause one that is not sending.
    let (status, answer) = fixture.post(&at("send", "launch"), TOM, json!({})).await;
    assert_eq!((status, refused(&answer, "has had no test send")), (409, (Some("conflict".into()), true)), "{answer}");
    let (status, answer) = fixture.post(&at("send", "pause"), TOM, json!({})).await;
    assert_eq!((status, refused(&answer, "is not sending")), (409, (Some("conflict".into()), true)), "{answer}");
    // Bad input: an unknown step, a step that is not a campaign, a field the route does not take.
    let (status, answer) = fixture.post(&at("nothing", "launch"), TOM, json!({})).await;
    assert_eq!((status, refused(&answer, "nothing")), (404, (Some("not_found".into()), true)), "{answer}");
    let (status, answer) = fixture.post(&at("check", "pause"), TOM, json!({})).await;
    assert_eq!((status, refused(&answer, "is not a campaign")), (409, (Some("conflict".into()), true)), "{answer}");
    let (status, answer) = fixture.post(&at("send", "launch"), TOM, json!({ "why": "typo" })).await;
    assert_eq!((status, refused(&answer, "why")), (422, (Some("invalid_json".into()), true)), "{answer}");
    assert_eq!(dashboard.by_people(&id).await, before, "nothing was recorded");

    let (status, answer) = fixture.post(&at("send", "test"), TOM, json!({ "to": ["tom@harbour.example"] })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(fixture.spooled(), 1, "one message to Tom");
    let (status, answer) = fixture.post(&at("send", "launch"), TOM, json!({ "reason": "test checked" })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"][0]["event"]["type"], "campaign_launched", "{answer}");
    assert_eq!(answer["events"][0]["actor"], "tom.reyes", "{answer}");
    assert_eq!(answer["events"][0]["reason"], "test checked", "{answer}");
    let (status, answer) = fixture.post(&at("send", "launch"), TOM, json!({})).await;
    assert_eq!((status, refused(&answer, "already launched")), (409, (Some("conflict".into()), true)), "{answer}");

    let (status, answer) = fixture.post(&at("send", "pause"), LEE, json!({})).await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = fixture.post(&at("send", "pause"), TOM, json!({ "reason": "queue backing up" })).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = fixture.post(&at("send", "pause"), TOM, json!({})).await;
    assert_eq!((status, refused(&answer, "already paused")), (409, (Some("conflict".into()), true)), "{answer}");
    let (status, answer) = fixture.post(&at("send", "resume"), TOM, json!({})).await;
    assert_eq!(status, 200, "{answer}");
    for body in [json!({}), json!({ "reason": "  " })] {
        let (status, answer) = fixture.post(&at("send", "cancel"), TOM, body).await;
        assert_eq!((status, refused(&answer, "a reason")), (422, (Some("invalid_request".into()), true)), "{answer}");
    }
    let (status, answer) = fixture.post(&at("send", "cancel"), TOM, json!({ "reason": "wrong list" })).await;
    assert_eq!(status, 200, "{answer}");

    let recorded: Vec<_> = dashboard.by_people(&id).await.into_iter().skip(before.len()).collect();
    let expected = [
        "campaign_test_sent",
        "campaign_launched",
        "step_started",
        "campaign_paused",
        "campaign_resumed",
        "campaign_cancelled",
    ]
    .map(|kind| (kind.to_string(), "tom.reyes".to_string()));
    assert_eq!(recorded, expected);
    fixture.dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_first_campaign_is_test_sent_and_launched_from_the_page_by_its_roles_only() {
    let fixture = Fixture::start().await;
    let dashboard = &fixture.dashboard;
    let id = dashboard.start_runbook("web-launch").await;
    let page = format!("/incidents/{id}");
    let campaign = |action: &str| format!("/incidents/{id}/campaigns/notify/send/{action}");
    let mut tom = dashboard.sign_in(TOM).await;
    let mut lee = dashboard.sign_in(LEE).await;
    // Waiting: Tom may send a test, not launch before one went out; Lee sees it waiting, no form.
    let (_, _, shown) = tom.get(&page).await;
    assert!(shown.contains("id=\"waiting-notify-send\"") && shown.contains("id=\"test-notify-send\""), "{shown}");
    assert!(!shown.contains("id=\"launch-notify-send\""), "no launch before a test: {shown}");
    let (_, _, shown) = lee.get(&page).await;
    assert!(shown.contains("id=\"waiting-notify-send\""), "{shown}");
    assert!(!shown.contains("id=\"test-notify-send\"") && !shown.contains("id=\"launch-notify-send\""));

    let before = dashboard.by_people(&id).await;
    for (action, fields) in [("test", ("to", "lee@harbour.example")), ("launch", ("reason", "mine"))] {
        let landed = lee.act(&page, &campaign(action), &[fields]).await;
        let said = flash(&landed).unwrap();
        assert!(said.starts_with("Refused: ") && said.contains("communications"), "{action}: {said}");
    }
    for action in ["test", "launch"] {
        let (status, _, body) = tom.post_raw(&campaign(action), &[("to", "tom@harbour.example")]).await;
        assert_eq!(status, 403, "{action} without the CSRF token: {body}");
    }
    let landed = tom.act(&page, &campaign("test"), &[("to", "member1@members.example")]).await;
    let said = flash(&landed).unwrap();
    assert!(said.starts_with("Refused: ") && said.contains("campaigns.test_recipients"), "{said}");
    let landed = tom.act(&page, &campaign("launch"), &[]).await;
    assert!(flash(&landed).unwrap().contains("has had no test send"), "{:?}", flash(&landed));
    assert_eq!((dashboard.by_people(&id).await, fixture.spooled()), (before.clone(), 0), "nothing recorded or sent");

    let landed = tom.act(&page, &campaign("test"), &[("to", "tom@harbour.example, ops@harbour.example")]).await;
    assert_eq!(flash(&landed), Some("Test of campaign `notify/send` sent: 2 of 2 messages taken by the channel."));
    assert!(landed.contains("id=\"last-test-notify-send\"") && landed.contains("id=\"launch-notify-send\""));
    assert_eq!(fixture.spooled(), 2);
    let landed = tom.act(&page, &campaign("launch"), &[("reason", "the test reads well")]).await;
    assert_eq!(flash(&landed), Some("Campaign `notify/send`: launched."));
    assert!(!landed.contains("id=\"waiting-notify-send\"") && !landed.contains("id=\"launch-notify-send\""));
    assert!(landed.contains("id=\"pause-notify-send\""), "sending now: {landed}");
    let recorded: Vec<_> = dashboard.by_people(&id).await.into_iter().skip(before.len()).collect();
    // The launch starts the step in the same decision, as Tom's.
    let expected = ["campaign_test_sent", "campaign_launched", "step_started"]
        .map(|kind| (kind.to_string(), "tom.reyes".to_string()));
    assert_eq!(recorded, expected);
    fixture.dashboard.stop().await;
}
