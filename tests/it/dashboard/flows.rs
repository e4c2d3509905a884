//! The dashboard's flows beyond acting on a running incident: starting one from the form (each
//! input checked beside its field), a campaign paused, resumed and cancelled from the page, the
//! 404 page for what the dashboard does not serve, and a live page woken by the server's own
//! appends (with the poll for other processes' changes as the fallback).

use std::time::Duration;

use serde_json::json;

use super::{Browser, DANA, Dashboard, LEE, TOM, flash, header, hidden};
use crate::support::wait_until;

/// A runbook with an input of each type, a required one, and one with allowed values.
const STARTABLE: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: web-start
title: Started from the browser
roles:
  commander: {}
inputs:
  alert_name: { type: string, description: The alert that fired }
  severity: { type: string, default: high, allowed: [low, high, critical] }
  hosts: { type: integer, default: 1 }
  ratio: { type: number, default: 0.5 }
  paged: { type: boolean, default: false }
phases:
  - id: triage
    steps:
      - id: look
        manual: { instructions: Look at the alert }
"#;

/// A runbook whose first phase sends a campaign, which only the communications role may steer.
const CAMPAIGN: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: web-notices
title: Member notices
roles:
  commander: {}
  communications: {}
rights: { close: [commander], campaign: [communications] }
inputs:
  members: { type: string, default: members.jsonl }
channels:
  mailer:
    batch:
      url: https://mailer.example/batches
phases:
  - id: notify
    steps:
      - id: send
        title: Tell every member
        campaign:
          recipients: { input: members, id_field: member_id }
          template: customer-notice
          channel: mailer
          batch_size: 100
"#;

impl Dashboard {
    /// How many incidents the API lists.
    async fn incident_count(&self) -> usize {
        self.api("/api/v1/incidents?state=all").await["incidents"].as_array().unwrap().len()
    }

    /// Starts runbook `id` through the API as Dana.
    pub(super) async fn start_runbook(&self, id: &str) -> String {
        let response = self
            .client
            .post(format!("{}/api/v1/incidents", self.base))
            .bearer_auth(DANA)
            .header("content-type", "application/json")
            .body(json!({ "runbook": id }).to_string())
            .send()
            .await
            .unwrap();
        let (status, body) = crate::support::answer(response).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}

impl Browser {
    /// Posts `fields` with the CSRF token of the page at `page_path`, without following.
    async fn post_from(&mut self, page_path: &str, action: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let (_, _, page) = self.get(page_path).await;
        let csrf = hidden(&page, "csrf").expect("a signed-in page carries the CSRF token");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let (status, headers, body) = self.post_raw(action, &all).await;
        (status, header(&headers, "location").unwrap_or_default(), body)
    }
}

/// The text of the element with id `id` (up to its closing tag).
fn element<'p>(page: &'p str, id: &str) -> Option<&'p str> {
    let start = page.find(&format!("id=\"{id}\""))?;
    let text = &page[start..];
    let text = &text[text.find('>')? + 1..];
    Some(&text[..text.find("</")?])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_starts_from_the_form_and_bad_inputs_are_shown_beside_their_fields() {
    let dashboard = Dashboard::start_with(&[("web-start.yaml", STARTABLE)], "", Duration::from_millis(50)).await;
    let mut dana = dashboard.sign_in(DANA).await;
    let (_, _, list) = dana.get("/incidents").await;
    assert!(list.contains("href=\"/incidents/new\""), "the list links to the form");
    let (_, _, plan) = dana.get("/runbooks/web-start").await;
    assert!(plan.contains("href=\"/incidents/new?runbook=web-start\""), "the runbook's page links to it");
    let (status, _, chooser) = dana.get("/incidents/new").await;
    assert_eq!(status, 200);
    assert!(chooser.contains("<option value=\"web-start\"") && !chooser.contains("id=\"start-form\""), "{chooser}");
    let form_path = "/incidents/new?runbook=web-start";
    let (status, _, form) = dana.get(form_path).await;
    assert_eq!(status, 200);
    for field in [
        "name=\"input.alert_name\"",
        "name=\"input.hosts\" type=\"number\" step=\"1\"",
        "name=\"input.ratio\" type=\"number\" step=\"any\"",
    ] {
        assert!(form.contains(field), "{field}");
    }
    assert!(form.contains("<select id=\"input-severity\" name=\"input.severity\""), "allowed values are a choice");
    assert!(form.contains("<select id=\"input-paged\" name=\"input.paged\""), "a boolean is a choice");
    let (status, _, unknown) = dana.get("/incidents/new?runbook=no-such").await;
    assert_eq!(status, 404, "{unknown}");

    // Without the CSRF token: refused, nothing started.
    let (status, _, page) =
        dana.post_raw("/incidents/new", &[("runbook", "web-start"), ("input.alert_name", "LoyaltyDbBulkRead")]).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Refused: CSRF check failed"));
    assert_eq!(dashboard.incident_count().await, 0, "nothing started");

    // Every bad field at once, each problem beside its field, the values kept, nothing started.
    let bad = [
        ("runbook", "web-start"),
        ("input.alert_name", "  "),
        ("input.severity", "apocalyptic"),
        ("input.hosts", "three"),
        ("input.ratio", "1.5e"),
        ("input.paged", "maybe"),
    ];
    let (status, location, page) = dana.post_from(form_path, "/incidents/new", &bad).await;
    assert_eq!((status, location.as_str()), (422, ""), "{page}");
    let problems = [
        ("problem-alert-name", "input `alert_name` is required and has no default"),
        ("problem-severity", "is not one of \"low\", \"high\", \"critical\""),
        ("problem-hosts", "which is not a whole number"),
        ("problem-ratio", "which is not a number"),
        ("problem-paged", "which is not a boolean"),
    ];
    for (id, problem) in problems {
        let shown = element(&page, id).unwrap_or_else(|| panic!("no `{id}`: {page}"));
        assert!(shown.replace("&quot;", "\"").contains(problem), "{id}: {shown}");
    }
    assert!(page.contains("name=\"input.hosts\" type=\"number\" step=\"1\" value=\"three\""), "kept as typed");
    assert!(element(&page, "start-problem").unwrap().contains("nothing was started"));
    // An input the runbook does not declare, and a runbook that does not exist.
    let (status, _, page) = dana
        .post_from(
            form_path,
            "/incidents/new",
            &[("runbook", "web-start"), ("input.alert_name", "x"), ("input.bogus", "1")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(element(&page, "start-problem").unwrap().contains("bogus"), "{page}");
    let (status, _, page) = dana.post_from(form_path, "/incidents/new", &[("runbook", "no-such")]).await;
    assert_eq!(status, 422);
    assert!(element(&page, "start-problem").unwrap().contains("no runbook `no-such`"), "{page}");
    assert_eq!(dashboard.incident_count().await, 0, "nothing started");

    // Good inputs: started as Dana, typed as the runbook declares them.
    let good = [
        ("runbook", "web-start"),
        ("input.alert_name", "LoyaltyDbBulkRead"),
        ("input.severity", "critical"),
        ("input.hosts", "3"),
        ("input.ratio", ""),
        ("input.paged", "true"),
        ("key", "loyalty-db"),
    ];
    let (status, location, _) = dana.post_from(form_path, "/incidents/new", &good).await;
    assert_eq!(status, 303);
    let id = location.strip_prefix("/incidents/").expect("to the new incident's page").to_string();
    let (_, _, landed) = dana.get(&location).await;
    assert_eq!(flash(&landed), Some(format!("Incident `{id}` started from runbook `web-start`.").as_str()));
    let timeline = dashboard.api(&format!("/api/v1/incidents/{id}/timeline")).await;
    let started = &timeline["events"][0]["event"];
    assert_eq!(started["actor"], "dana.ito");
    let inputs = &started["event"]["inputs"];
    assert_eq!(
        (&inputs["alert_name"], &inputs["severity"], &inputs["hosts"], &inputs["ratio"], &inputs["paged"]),
        (&json!("LoyaltyDbBulkRead"), &json!("critical"), &json!(3), &json!(0.5), &json!(true)),
        "{inputs}"
    );
    // The same key while that incident is open: refused on the form, nothing more started.
    let (status, _, page) = dana.post_from(form_path, "/incidents/new", &good).await;
    assert_eq!(status, 422, "{page}");
    assert!(element(&page, "start-problem").unwrap().starts_with("Refused: "), "{page}");
    assert_eq!(dashboard.incident_count().await, 1);
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_is_paused_resumed_and_cancelled_from_the_page_by_its_roles_only() {
    // The runtime loop passes once, at start: the campaign stays sending, untouched by it.
    let dashboard = Dashboard::start_with(&[("web-notices.yaml", CAMPAIGN)], "", Duration::from_secs(3600)).await;
    let id = dashboard.start_runbook("web-notices").await;
    let page = format!("/incidents/{id}");
    let campaign = |action: &str| format!("/incidents/{id}/campaigns/notify/send/{action}");
    let mut tom = dashboard.sign_in(TOM).await;
    let mut lee = dashboard.sign_in(LEE).await;
    let (_, _, shown) = tom.get(&page).await;
    assert!(shown.contains("id=\"pause-notify-send\"") && shown.contains("id=\"cancel-notify-send\""), "{shown}");
    assert!(shown.contains("<progress max=\"100\" value=\"0\""), "its progress");
    let (_, _, shown) = lee.get(&page).await;
    assert!(!shown.contains("id=\"pause-notify-send\"") && !shown.contains("id=\"cancel-notify-send\""));

    // Lee holds no `campaign` role: refused with the reason, nothing recorded.
    let before = dashboard.by_people(&id).await;
    for action in ["pause", "cancel"] {
        let landed = lee.act(&page, &campaign(action), &[("reason", "not mine to stop")]).await;
        let said = flash(&landed).unwrap();
        assert!(said.starts_with("Refused: ") && said.contains("communications"), "{action}: {said}");
    }
    // Without the CSRF token: refused, nothing recorded.
    let (status, _, body) = tom.post_raw(&campaign("cancel"), &[("reason", "no token")]).await;
    assert_eq!(status, 403, "{body}");
    // Not an action on a campaign.
    let (status, _, body) = tom.post_from(&page, &campaign("explode"), &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(dashboard.by_people(&id).await, before, "nothing was recorded");

    let landed = tom.act(&page, &campaign("pause"), &[("reason", "mailer queue backing up")]).await;
    assert_eq!(flash(&landed), Some("Campaign `notify/send`: paused."));
    assert!(landed.contains("paused by tom.reyes") && landed.contains("id=\"resume-notify-send\""));
    // The pause's own reason, as recorded, on the campaign and on the board.
    let paused = element(&landed, "paused-notify-send").expect("the pause is shown");
    assert!(paused.contains("by tom.reyes") && paused.ends_with(": mailer queue backing up"), "{paused}");
    assert!(landed.contains("resume it to go on, or cancel it; reason: mailer queue backing up"), "{landed}");
    let landed = tom.act(&page, &campaign("resume"), &[("reason", "queue drained")]).await;
    assert_eq!(flash(&landed), Some("Campaign `notify/send`: resumed."));
    // A cancel needs a reason.
    let landed = tom.act(&page, &campaign("cancel"), &[("reason", " ")]).await;
    assert!(flash(&landed).unwrap().starts_with("Refused: ") && flash(&landed).unwrap().contains("reason"));
    let landed = tom.act(&page, &campaign("cancel"), &[("reason", "wrong list attached")]).await;
    assert_eq!(flash(&landed), Some("Campaign `notify/send` cancelled: the batches in flight finish, then it stops."));
    assert!(landed.contains("cancelled by tom.reyes"), "the page says so");
    let cancelled = element(&landed, "cancelled-notify-send").expect("the cancel is shown");
    assert!(cancelled.ends_with(": wrong list attached"), "{cancelled}");
    assert!(!landed.contains("id=\"cancel-notify-send\"") && !landed.contains("id=\"pause-notify-send\""));
    let recorded: Vec<_> = dashboard.by_people(&id).await.into_iter().skip(before.len()).collect();
    let expected = ["campaign_paused", "campaign_resumed", "campaign_cancelled"]
        .map(|kind| (kind.to_string(), "tom.reyes".to_string()));
    assert_eq!(recorded, expected);
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_dashboard_paths_answer_the_dashboards_404_page_and_api_paths_json() {
    let dashboard = Dashboard::start().await;
    let mut dana = dashboard.sign_in(DANA).await;
    let mut nobody = Browser { base: dashboard.base.clone(), client: dashboard.client.clone(), cookies: vec![] };
    for path in ["/no-such-page", "/incidents/no-such-incident", "/incidents/no-such-incident/audit", "/runbooks/nope"]
    {
        let (status, headers, page) = dana.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(header(&headers, "content-type").as_deref(), Some("text/html; charset=utf-8"), "{path}");
        assert!(header(&headers, "content-security-policy").is_some_and(|csp| csp.contains("default-src 'self'")));
        assert!(page.contains("<h1>Not found</h1>") && page.contains("id=\"error-reason\""), "{path}: {page}");
        assert!(page.contains("Signed in as <strong>dana.ito</strong>"), "{path}: the dashboard's layout");
    }
    let (status, _, page) = dana.get("/incidents/no-such-incident").await;
    assert!(status == 404 && page.contains("no-such-incident"), "names the incident: {page}");
    let (status, headers, page) = nobody.get("/no-such-page").await;
    assert_eq!((status, header(&headers, "content-type").as_deref()), (404, Some("text/html; charset=utf-8")));
    assert!(page.contains("<h1>Not found</h1>") && !page.contains("Signed in as"));
    for path in ["/api/v1/no-such", "/api", "/hooks/x/y"] {
        let response =
            dashboard.client.get(format!("{}{path}", dashboard.base)).bearer_auth(DANA).send().await.unwrap();
        let (status, body) = crate::support::answer(response).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("no such route"), "{path}: {body}");
    }
    dashboard.stop().await;
}

/// Reads an open event stream until a `change` event arrives (or `limit` passes): its version.
pub(super) async fn next_change(response: &mut reqwest::Response, limit: Duration) -> u64 {
    let mut seen = String::new();
    let read = async {
        while !seen.contains("event: change") {
            let chunk = response.chunk().await.unwrap().expect("the stream goes on");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(limit, read).await.unwrap_or_else(|_| panic!("no change within {limit:?}"));
    seen.split("data: ").nth(1).unwrap().lines().next().unwrap().parse().unwrap()
}

pub(super) async fn stream(dashboard: &Dashboard, dana: &Browser, id: &str, since: u64) -> reqwest::Response {
    let response = dashboard
        .client
        .get(format!("{}/incidents/{id}/events?since={since}", dashboard.base))
        .header("cookie", dana.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// Tom adds a note through the API: a change made outside the dashboard.
pub(super) async fn note_through_the_api(dashboard: &Dashboard, id: &str) {
    let note = dashboard
        .client
        .post(format!("{}/api/v1/incidents/{id}/notes", dashboard.base))
        .bearer_auth(TOM)
        .header("content-type", "application/json")
        .body(json!({ "text": "from the API" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), 200);
}

pub(super) async fn version(dashboard: &Dashboard, id: &str) -> u64 {
    dashboard.api(&format!("/api/v1/incidents/{id}")).await["incident"]["version"].as_u64().unwrap()
}

/// With the poll set to an hour, a note through the API still reaches an open stream: the
/// server's own append wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_the_server_wakes_an_open_stream_without_waiting_for_the_poll() {
    let dashboard = Dashboard::start_with(&[], "  live_poll: 1h\n", Duration::from_millis(50)).await;
    let id = dashboard.start_incident().await;
    let dana = dashboard.sign_in(DANA).await;
    // The runtime loop settles the start's effects first; then nothing else changes it.
    let settled = wait_until("the incident to settle", Duration::from_secs(20), async || {
        let first = version(&dashboard, &id).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = version(&dashboard, &id).await;
        if first == second { Ok(second) } else { Err(format!("{first} then {second}")) }
    })
    .await;
    let mut response = stream(&dashboard, &dana, &id, settled).await;
    note_through_the_api(&dashboard, &id).await;
    assert!(next_change(&mut response, Duration::from_secs(60)).await > settled);
    dashboard.stop().await;
    while let Ok(Some(_)) = response.chunk().await {}
}

/// Another process (the CLI on the same database) appends without telling the server: the poll
/// finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_another_process_reaches_an_open_stream_through_the_poll() {
    let dashboard = Dashboard::start_with(&[], "  live_poll: 100ms\n", Duration::from_millis(50)).await;
    let id = dashboard.start_incident().await;
    let dana = dashboard.sign_in(DANA).await;
    let now = version(&dashboard, &id).await;
    let mut response = stream(&dashboard, &dana, &id, now).await;
    let config = dashboard._dir.path().join("phasegate.yaml");
    let args =
        ["note", "--config", config.to_str().unwrap(), "--as", "dana.ito", &id, "from the CLI"].map(String::from);
    tokio::task::spawn_blocking(move || crate::support::Cli::new().args(args).succeeds()).await.unwrap();
    assert!(next_change(&mut response, Duration::from_secs(60)).await > now);
    dashboard.stop().await;
    while let Ok(Some(_)) = response.chunk().await {}
}
