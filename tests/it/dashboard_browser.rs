//! The dashboard in a real browser (issue 15): headless Chromium through `support::browser`,
//! against `phasegate serve` with the shipped example runbooks and a drill runbook whose texts try
//! to inject script. Signing in and out through the form, a gate approved by keyboard alone while
//! another person's page follows live, a manual step marked done, refusals shown with their
//! reason, a form stripped of its CSRF field refused, hostile text shown as text, and every page
//! checked by axe-core and kept as a screenshot in `target/browser-screenshots`.

mod reference;

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::browser::{Browser, Key};
use crate::support::{Serving, answer, root, wait_until};

const DANA: &str = "pg_dana-browser-token";
const LEE: &str = "pg_lee-browser-token";
const KIM: &str = "pg_kim-browser-token";
const TOM: &str = "pg_tom-browser-token";
/// The fraud system's bearer token for its webhooks.
const FRAUD_TOKEN: &str = "fraud-hook-token-for-browser-tests";

/// Each script the hostile texts carry sets `window.injected` or opens an alert when it runs.
const DRILL: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: web-drill
title: "Door breach <script>window.injected = 'title'</script><img src=x onerror=\"window.injected = 'img'\">"
roles:
  commander: {}
  approver: {}
rights: { close: [commander], abandon: [commander], recover: [commander] }
controls:
  door-mfa:
    title: Door MFA
    owner: commander
    max_relaxation: 7d
phases:
  - id: assess
    title: Assess the breach
    entry:
      - id: go
        approval: { roles: [approver], four_eyes: true }
    steps:
      - id: isolate
        title: Isolate the hosts
        manual:
          instructions: "Isolate <script>alert('instructions')</script> the hosts"
          assignee: commander
          evidence: [Ticket link]
          outputs: [ticket]
      - id: relax-door
        relax:
          control: door-mfa
          reason: Badge readers are down
          expires_in: 1h
          compensating: [Guard at the door]
      - id: rotate
        title: Rotate the door codes
        retry: { attempts: 1, backoff: 1s }
        http: { url: "https://doors.example/rotate" }
  - id: reinstate
    needs: [assess]
    steps:
      - id: reinstate-door
        reinstate: { control: door-mfa }
"#;

/// A campaign to three members, whose batches fail (the tests reach no mailer).
const CAMPAIGN: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: web-campaign
title: Tell the members
roles:
  comms-lead: {}
rights: { close: [comms-lead], campaign: [comms-lead] }
inputs:
  members:
    type: string
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
          batch_size: 2
"#;

const MEMBERS: &str = r#"{"member_id": "m1", "email": "ada@example.org", "first_name": "Ada"}
{"member_id": "m2", "email": "bo@example.org", "first_name": "Bo"}
{"member_id": "m3", "email": "cy@example.org", "first_name": "Cy"}
"#;

/// What a page must not have once hostile text is on it: elements or handlers the text made.
const NOTHING_INJECTED: &str = "window.injected === undefined
    && document.querySelectorAll('script:not([src]), img, [onerror], [onload]').length === 0";

/// `phasegate serve` over the four example runbooks as shipped, the drill runbook and a broken
/// file; Dana commands, Lee and Kim approve, Tom sends public updates (and approves nothing).
struct Desk {
    base: String,
    serving: Serving,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Desk {
    async fn start() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let runbooks = dir.path().join("runbooks");
        std::fs::create_dir(&runbooks).unwrap();
        for example in ["account-takeover", "cloud-bucket-exposure", "ransomware", "retail-breach"] {
            let file = format!("{example}.yaml");
            std::fs::copy(root().join("runbooks").join(&file), runbooks.join(&file)).unwrap();
        }
        std::fs::write(runbooks.join("web-drill.yaml"), DRILL).unwrap();
        std::fs::write(runbooks.join("web-campaign.yaml"), CAMPAIGN).unwrap();
        std::fs::write(dir.path().join("members.jsonl"), MEMBERS).unwrap();
        std::fs::write(runbooks.join("broken.yaml"), "apiVersion: phasegate/v1\nkind: Runbook\nid: broken\n").unwrap();
        std::fs::write(dir.path().join("fraud-token"), FRAUD_TOKEN).unwrap();
        let sha = |token: &str| phasegate::engine::decide::sha256_hex(token);
        let config = format!(
            "database: {db}\nrunbooks: {runbooks}\ncampaigns: {{ dir: {campaigns} }}\nsecrets:\n  fraud-token: {{ file: {secret} }}\npeople:\n  \
             dana.ito: {{ roles: [commander, incident-commander, soc-analyst] }}\n  \
             lee.chen: {{ roles: [approver] }}\n  kim.park: {{ roles: [approver] }}\n  \
             tom.reyes: {{ roles: [comms-lead] }}\nserver:\n  sources:\n    fraud: {{ scheme: bearer, secrets: [fraud-token] }}\n  \
             tokens:\n    dana: {{ person: dana.ito, sha256: {dana} }}\n    lee: {{ person: lee.chen, sha256: {lee} }}\n    \
             kim: {{ person: kim.park, sha256: {kim} }}\n    tom: {{ person: tom.reyes, sha256: {tom} }}\n",
            db = dir.path().join("phasegate.db").display(),
            runbooks = runbooks.display(),
            campaigns = dir.path().join("campaigns").display(),
            secret = dir.path().join("fraud-token").display(),
            dana = sha(DANA),
            lee = sha(LEE),
            kim = sha(KIM),
            tom = sha(TOM),
        );
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, config).unwrap();
        let serving = Serving::start(&path, "127.0.0.1:0", Duration::from_millis(50)).await;
        Desk { base: serving.base.clone(), serving, client: reqwest::Client::new(), dir }
    }

    /// Posts `body` as JSON with the bearer `token` (a person's API token, or a webhook source's);
    /// gives the status and the answer.
    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.client.get(format!("{}{path}", self.base)).bearer_auth(DANA).send().await.unwrap();
        let (status, body) = answer(response).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Starts `runbook` through the API as the holder of `token`; gives the incident's id.
    async fn start_incident(&self, token: &str, runbook: &str, key: &str) -> String {
        self.start_with(token, json!({ "runbook": runbook, "key": key })).await
    }

    /// Starts an incident as the API's `POST /api/v1/incidents` takes `request`; gives its id.
    async fn start_with(&self, token: &str, request: Value) -> String {
        let (status, body) = self.post(token, "/api/v1/incidents", request).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// A drill Dana started, its gate approved by Kim: the phase runs, its manual step waits.
    async fn drill_running(&self, key: &str) -> String {
        let id = self.start_incident(DANA, "web-drill", key).await;
        let (status, body) =
            self.post(KIM, &format!("/api/v1/incidents/{id}/approvals"), json!({ "phase": "assess" })).await;
        assert_eq!(status, 200, "{body}");
        id
    }

    /// The events people recorded (the runtime's own left out): type and actor.
    async fn by_people(&self, id: &str) -> Vec<(String, String)> {
        let timeline = self.get(&format!("/api/v1/incidents/{id}/timeline?limit=1000")).await;
        timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| &entry["event"])
            .filter(|event| event["actor"] != "phasegate")
            .map(|event| (event["event"]["type"].as_str().unwrap().into(), event["actor"].as_str().unwrap().into()))
            .collect()
    }

    /// Waits until a step of the incident has failed for good.
    async fn failed(&self, id: &str) {
        wait_until("a step to fail for good", Duration::from_secs(30), async || {
            let board = self.get(&format!("/api/v1/incidents/{id}")).await;
            board["blocking"].as_array().unwrap().iter().any(|b| b["blocker"]["kind"] == "failed")
        })
        .await;
    }

    async fn stop(self) {
        self.serving.stop().await;
    }
}

/// Signs in through the form, as a person types it, and lands on the incidents.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.open(&format!("{base}/signin")).await;
    browser.fill("#token", token).await;
    browser.submit("#signin-form").await;
    browser.wait_for("the incidents page", "document.querySelector('h1')?.textContent === 'Incidents'").await;
}

/// A browser signed in as the holder of `token`, or `None` when the browser tests skip.
async fn signed_in(desk: &Desk, token: &str) -> Option<Browser> {
    let browser = Browser::open_or_skip().await?;
    sign_in(&browser, &desk.base, token).await;
    Some(browser)
}

/// Waits for the flash message an action left on the page it landed on, and gives its text. A
/// message read is marked, so that the next call waits for the next action's page rather than
/// reading the last one's, still on screen while the form is posted.
async fn flash(browser: &Browser) -> String {
    const FRESH: &str = "document.querySelector('#flash:not([data-read])')";
    loop {
        browser.wait_for("the flash message", FRESH).await;
        let read = format!("const e = {FRESH}; if (!e) return null; e.dataset.read = '1'; return e.innerText;");
        if let Value::String(text) = browser.script(&read).await {
            return text;
        }
    }
}

/// Types `text` into the field `css` selects, focusing it first by script: a live update swaps a
/// region unless it holds the focus, so a field found and then typed into could be gone between.
async fn type_into(browser: &Browser, css: &str, text: &str) {
    let focus = format!("const e = document.querySelector('{css}'); e.focus(); return e === document.activeElement;");
    assert_eq!(browser.script(&focus).await, true, "{css} takes the focus");
    browser.type_text(text).await;
}

/// Presses Tab until the element `id` has the focus (at most 60 times), failing when it never does.
async fn tab_to(browser: &Browser, id: &str) {
    for _ in 0..60 {
        browser.press(Key::Tab).await;
        if browser.focused().await.contains(&format!("#{id}")) {
            return;
        }
    }
    panic!("60 presses of Tab never reached #{id}; the focus is on {}", browser.focused().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_through_the_form_refuses_a_wrong_token_and_signing_out_ends_the_session() {
    let desk = Desk::start().await;
    let Some(browser) = Browser::open_or_skip().await else { return desk.stop().await };
    browser.open(&format!("{}/incidents", desk.base)).await;
    assert!(browser.url().await.ends_with("/signin?next=/incidents"), "{}", browser.url().await);

    browser.fill("#token", "pg_not-a-token").await;
    browser.submit("#signin-form").await;
    browser.wait_for("the refusal", "document.getElementById('signin-problem')").await;
    assert_eq!(browser.text("#signin-problem").await, "that API token is not valid");
    assert!(browser.url().await.ends_with("/signin"), "still signing in: {}", browser.url().await);
    assert_eq!(browser.script("return document.cookie;").await, "", "no cookie a script can read");
    check(&browser, "signin-refused").await;

    browser.fill("#token", DANA).await;
    browser.submit("#signin-form").await;
    browser.wait_for("the incidents page", "document.querySelector('h1')?.textContent === 'Incidents'").await;
    assert_eq!(browser.text(".who").await, "Signed in as dana.ito");
    browser.click("#signout").await;
    browser.wait_for("the sign-in page", "document.getElementById('signin-form')").await;
    browser.open(&format!("{}/runbooks", desk.base)).await;
    assert!(browser.url().await.ends_with("/signin?next=/runbooks"), "signed out: {}", browser.url().await);
    desk.stop().await;
}

/// Lee approves the drill's gate with Tab, typing and Enter; Dana's page, open in a browser of
/// her own, shows the phase running and its step waiting without being reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_approved_by_keyboard_alone_moves_the_phase_on_another_persons_page_live() {
    let desk = Desk::start().await;
    let id = desk.start_incident(DANA, "web-drill", "keyboard").await;
    let Some(lee) = signed_in(&desk, LEE).await else { return desk.stop().await };
    let dana = signed_in(&desk, DANA).await.expect("a browser opened once opens again");
    let page = format!("{}/incidents/{id}", desk.base);
    dana.open(&page).await;
    assert!(dana.script("return document.getElementById('step-assess-isolate');").await.is_null());
    // A mark that a reload would lose.
    dana.script("window.sameDocument = true; return null;").await;

    lee.open(&page).await;
    tab_to(&lee, "approve-note-assess-go").await;
    lee.type_text("Scope confirmed on the bridge").await;
    lee.press(Key::Tab).await;
    assert!(lee.focused().await.starts_with("button #approve-assess-go"), "{}", lee.focused().await);
    // A change made elsewhere meanwhile leaves the form where the keyboard is as it was.
    let (status, body) =
        desk.post(DANA, &format!("/api/v1/incidents/{id}/notes"), json!({ "text": "bridge open" })).await;
    assert_eq!(status, 200, "{body}");
    lee.wait_for(
        "Lee's page to follow the note",
        "document.getElementById('live-note').textContent.startsWith('Updated')",
    )
    .await;
    assert!(lee.focused().await.starts_with("button #approve-assess-go"), "{}", lee.focused().await);
    let typed = lee.script("return document.getElementById('approve-note-assess-go').value;").await;
    assert_eq!(typed, "Scope confirmed on the bridge");
    lee.press(Key::Enter).await;
    assert_eq!(flash(&lee).await, "Approved `assess/go`.");

    // Within a couple of seconds, with room for a loaded machine.
    let within = Duration::from_secs(5);
    let condition = "document.getElementById('step-assess-isolate')
        && document.querySelector('#phases-graph-title')?.textContent.includes('Assess the breach running')";
    dana.wait_for_within("the phase to run on Dana's page", condition, within).await;
    assert_eq!(dana.script("return window.sameDocument === true;").await, true, "the page was not reloaded");
    assert!(dana.text("#live-note").await.starts_with("Updated "), "the page says it updated");
    let given = desk.by_people(&id).await;
    assert!(given.contains(&("approval_given".into(), "lee.chen".into())), "{given:?}");
    let timeline = desk.get(&format!("/api/v1/incidents/{id}/timeline?limit=1000")).await;
    let approval =
        timeline["events"].as_array().unwrap().iter().find(|e| e["event"]["event"]["type"] == "approval_given");
    assert_eq!(approval.unwrap()["event"]["reason"], "Scope confirmed on the bridge");
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_step_marked_done_on_the_page_shows_in_the_timeline_with_the_person() {
    let desk = Desk::start().await;
    let id = desk.drill_running("manual").await;
    let Some(dana) = signed_in(&desk, DANA).await else { return desk.stop().await };
    dana.open(&format!("{}/incidents/{id}", desk.base)).await;
    type_into(&dana, "#evidence-assess-isolate", "https://tickets.example/SEC-42").await;
    type_into(&dana, "#output-assess-isolate-ticket", "42").await;
    dana.click("#done-assess-isolate").await;
    assert_eq!(flash(&dana).await, "Step `assess/isolate` marked done.");
    let entries = dana
        .script(
            "return [...document.querySelectorAll('#live-timeline .event.kind-step_done')]
               .map(li => li.querySelector('.actor').textContent + ' | ' + li.querySelector('.summary').textContent)
               .filter(text => text.includes('assess/isolate'));",
        )
        .await;
    assert_eq!(entries, json!(["dana.ito | step `assess/isolate` done: https://tickets.example/SEC-42"]));
    let timeline = desk.get(&format!("/api/v1/incidents/{id}/timeline?limit=1000")).await;
    let done = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["event"]["type"] == "step_done" && e["event"]["event"]["step"] == "isolate");
    let done = &done.expect("a step_done event")["event"];
    assert_eq!((done["actor"].as_str(), done["event"]["outputs"].clone()), (Some("dana.ito"), json!({ "ticket": 42 })));
    assert_eq!(done["reason"], "https://tickets.example/SEC-42");
    desk.stop().await;
}

/// Posts the approval of the drill's gate from the page as a hand-made form would (the page's own
/// session and CSRF token, a form the page did not offer), and gives the flash it lands on.
async fn approve_by_hand(browser: &Browser, id: &str) -> String {
    let post = format!(
        "const form = document.createElement('form');
         form.method = 'post'; form.action = '/incidents/{id}/approve';
         const fields = {{ csrf: document.querySelector('input[name=csrf]').value, phase: 'assess', gate: 'go' }};
         for (const [name, value] of Object.entries(fields)) {{
           const input = document.createElement('input');
           input.type = 'hidden'; input.name = name; input.value = value; form.append(input);
         }}
         document.body.append(form); form.submit(); return true;"
    );
    assert_eq!(browser.script(&post).await, true);
    flash(browser).await
}

/// Refusals come back to the page with the engine's reason, and nothing is recorded: Lee's form,
/// left open while he typed, after Kim's approval passed the gate; Tom, who holds no approver
/// role, and Lee on an incident he started himself (four-eyes), posting approvals the page did
/// not offer them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_approval_shows_its_reason_on_the_page_and_records_nothing() {
    let desk = Desk::start().await;
    let id = desk.start_incident(DANA, "web-drill", "refused").await;
    let Some(lee) = signed_in(&desk, LEE).await else { return desk.stop().await };
    let page = format!("{}/incidents/{id}", desk.base);
    lee.open(&page).await;
    lee.click("#approve-note-assess-go").await;
    lee.type_text("looks fine").await;
    let (status, body) =
        desk.post(KIM, &format!("/api/v1/incidents/{id}/approvals"), json!({ "phase": "assess" })).await;
    assert_eq!(status, 200, "{body}");
    // The page follows, but leaves the region being typed in as it was, outlined.
    lee.wait_for(
        "the form being edited to be marked stale",
        "document.getElementById('live-blocking').classList.contains('stale')",
    )
    .await;
    let before = desk.by_people(&id).await;
    lee.press(Key::Enter).await;
    let said = flash(&lee).await;
    assert_eq!(said, "Refused: gate `go` of phase `assess` has already passed");
    assert_eq!(lee.script("return document.getElementById('flash').getAttribute('role');").await, "alert");
    check(&lee, "incident-refused").await;
    assert_eq!(desk.by_people(&id).await, before, "nothing was recorded");

    let fresh = desk.start_incident(DANA, "web-drill", "refused-role").await;
    let tom = signed_in(&desk, TOM).await.expect("a browser opened once opens again");
    tom.open(&format!("{}/incidents/{fresh}", desk.base)).await;
    assert!(tom.script("return document.getElementById('approve-assess-go');").await.is_null(), "not offered to Tom");
    let said = approve_by_hand(&tom, &fresh).await;
    assert!(said.starts_with("Refused: ") && said.contains("tom.reyes") && said.contains("`approver`"), "{said}");

    let own = desk.start_incident(LEE, "web-drill", "refused-four-eyes").await;
    lee.open(&format!("{}/incidents/{own}", desk.base)).await;
    assert!(lee.script("return document.getElementById('approve-assess-go');").await.is_null(), "not offered");
    let said = approve_by_hand(&lee, &own).await;
    assert!(said.starts_with("Refused: ") && said.contains("four-eyes") && said.contains("kim.park"), "{said}");
    for incident in [&fresh, &own] {
        let recorded = desk.by_people(incident).await;
        assert!(recorded.iter().all(|(kind, _)| kind != "approval_given"), "{recorded:?}");
    }
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_posted_without_its_csrf_field_gets_the_403_page_and_does_nothing() {
    let desk = Desk::start().await;
    let id = desk.start_incident(DANA, "web-drill", "csrf").await;
    let before = desk.by_people(&id).await;
    let Some(dana) = signed_in(&desk, DANA).await else { return desk.stop().await };
    dana.open(&format!("{}/incidents/{id}", desk.base)).await;
    type_into(&dana, "#note-text", "a note without its token").await;
    let removed = dana.script(
        "const f = document.querySelector('#act form[action$=\"/note\"] input[name=csrf]'); f.remove(); return true;",
    );
    assert_eq!(removed.await, true);
    dana.click("#note-submit").await;
    dana.wait_for("the error page", "document.getElementById('error-reason')").await;
    let shown = dana.text("main").await;
    assert!(shown.contains("CSRF check failed") && shown.contains("came without its CSRF token"), "{shown}");
    assert!(dana.text("main").await.contains("HTTP 403"), "{}", dana.text("main").await);
    check(&dana, "403").await;
    assert_eq!(desk.by_people(&id).await, before, "nothing was recorded");
    desk.stop().await;
}

/// The drill's title and instructions, a note and evidence typed into the page, and a fraud
/// system's webhook payload on the account-takeover example all show as text: no alert, no
/// script run, no element made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_shows_as_text_in_the_browser() {
    let desk = Desk::start().await;
    let drill = desk.drill_running("hostile").await;
    let takeover = desk.start_incident(DANA, "account-takeover", "account-takeover/web").await;
    let payload = json!({
        "rule_id": "ATO-ORDER-VELOCITY", "status": "triggered", "channel": "web",
        "customer_ref": "<img src=x onerror=\"window.injected = 'webhook'\">",
        "summary": "<script>alert('webhook')</script> 9 orders in 4 minutes",
    });
    let (status, body) = desk.post(FRAUD_TOKEN, "/hooks/fraud", payload).await;
    assert!((200..300).contains(&status), "{status}: {body}");
    wait_until("the webhook's note on the incident", Duration::from_secs(10), async || {
        desk.by_people(&takeover)
            .await
            .iter()
            .any(|(kind, actor)| kind == "note_added" && actor.starts_with("trigger:"))
    })
    .await;

    let Some(dana) = signed_in(&desk, DANA).await else { return desk.stop().await };
    let drill_page = format!("{}/incidents/{drill}", desk.base);
    dana.open(&drill_page).await;
    type_into(&dana, "#note-text", "<script>alert('note')</script><img src=x onerror=\"window.injected = 'note'\">")
        .await;
    dana.click("#note-submit").await;
    assert_eq!(flash(&dana).await, "Note added.");
    type_into(&dana, "#evidence-assess-isolate", "<script>window.injected = 'evidence'</script>").await;
    dana.click("#done-assess-isolate").await;
    assert_eq!(flash(&dana).await, "Step `assess/isolate` marked done.");

    let shown = [
        (drill_page.clone(), vec!["<script>window.injected = 'title'</script>", "<script>alert('note')</script>"]),
        (format!("{drill_page}?kind=step_done"), vec!["<script>window.injected = 'evidence'</script>"]),
        (format!("{}/runbooks/web-drill", desk.base), vec!["Door breach <script>"]),
        (format!("{}/incidents/{takeover}", desk.base), vec!["<script>alert('webhook')</script> 9 orders"]),
        (format!("{}/incidents", desk.base), vec!["<img src=x onerror="]),
    ];
    for (url, texts) in shown {
        dana.open(&url).await;
        assert!(dana.client.get_alert_text().await.is_err(), "no alert on {url}");
        assert_eq!(dana.script(&format!("return {NOTHING_INJECTED};")).await, true, "nothing injected on {url}");
        let text = dana.text("body").await;
        for expected in texts {
            assert!(text.contains(expected), "{url} shows {expected:?} as text:\n{text}");
        }
    }
    // The instructions, on the page before the step was done.
    let fresh = desk.drill_running("hostile-instructions").await;
    dana.open(&format!("{}/incidents/{fresh}", desk.base)).await;
    assert!(dana.client.get_alert_text().await.is_err(), "no alert");
    assert_eq!(
        dana.text("#step-assess-isolate .instructions").await,
        "Isolate <script>alert('instructions')</script> the hosts"
    );
    assert_eq!(dana.script(&format!("return {NOTHING_INJECTED};")).await, true);
    desk.stop().await;
}

/// Every page the dashboard has, with content on it, passes axe-core's WCAG 2.0 to 2.2 A and AA
/// rules, and is kept as a screenshot (the incident's page also at a phone's width).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_axe_and_is_kept_as_a_screenshot() {
    let desk = Desk::start().await;
    // The drill with its gate passed, a control relaxed and a step failed for good.
    let drill = desk.drill_running("pages").await;
    let (status, body) = desk
        .post(
            DANA,
            &format!("/api/v1/incidents/{drill}/phases/assess/steps/isolate/done"),
            json!({ "evidence": "done" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    desk.failed(&drill).await;
    let takeover = desk.start_incident(DANA, "account-takeover", "account-takeover/pages").await;
    let abandoned = desk.start_incident(DANA, "web-drill", "abandoned").await;
    let (status, body) = desk
        .post(DANA, &format!("/api/v1/incidents/{abandoned}/close"), json!({ "abandon": true, "reason": "a drill" }))
        .await;
    assert_eq!(status, 200, "{body}");

    let members = desk.dir.path().join("members.jsonl");
    let campaign = desk.start_with(TOM, json!({ "runbook": "web-campaign", "inputs": { "members": members } })).await;

    let Some(browser) = Browser::open_or_skip().await else { return desk.stop().await };
    browser.open(&format!("{}/signin", desk.base)).await;
    check(&browser, "signin").await;
    sign_in(&browser, &desk.base, DANA).await;
    let base = &desk.base;
    let pages = [
        ("incidents-open", format!("{base}/incidents")),
        ("incidents-closed", format!("{base}/incidents?state=closed")),
        ("incident-drill", format!("{base}/incidents/{drill}")),
        ("incident-account-takeover", format!("{base}/incidents/{takeover}")),
        ("incident-abandoned", format!("{base}/incidents/{abandoned}")),
        ("update-preview", format!("{base}/incidents/{takeover}/updates/internal")),
        ("incident-audit", format!("{base}/incidents/{drill}/audit")),
        ("runbooks", format!("{base}/runbooks")),
        ("runbook-account-takeover", format!("{base}/runbooks/account-takeover")),
        ("audit", format!("{base}/audit")),
        ("not-found", format!("{base}/runbooks/no-such-runbook")),
        ("not-found-path", format!("{base}/no/such/page")),
        ("start-incident", format!("{base}/incidents/new")),
        ("start-incident-account-takeover", format!("{base}/incidents/new?runbook=account-takeover")),
    ];
    for (name, url) in &pages {
        browser.open(url).await;
        check(&browser, name).await;
    }
    // The drill's page shows what it should, so axe saw it.
    browser.open(&format!("{base}/incidents/{drill}")).await;
    for region in ["#failed-assess-rotate", "#live-relaxations .countdown", "#live-gates table"] {
        assert!(!browser.script(&format!("return document.querySelector('{region}');")).await.is_null(), "{region}");
    }
    // The campaign's progress.
    browser.open(&format!("{base}/incidents/{campaign}")).await;
    browser.wait_for("the campaign's progress", "document.querySelector('#campaign-notify-send progress')").await;
    check(&browser, "incident-campaign").await;
    // Tom, of the campaign's roles, is offered its pause form.
    let tom = signed_in(&desk, TOM).await.expect("a browser opened once opens again");
    tom.open(&format!("{base}/incidents/{campaign}")).await;
    tom.wait_for("the pause form", "document.getElementById('pause-notify-send')").await;
    check(&tom, "incident-campaign-pause").await;
    // The check box, with a runbook's diagnostics.
    browser.open(&format!("{base}/runbooks")).await;
    browser.fill("#runbook-text", "apiVersion: phasegate/v1\nkind: Runbook\nid: Not An Id\nphases: []\n").await;
    browser.click("#validate-submit").await;
    browser.wait_for("the diagnostics", "document.querySelector('#validation .diagnostics li')").await;
    check(&browser, "runbook-check").await;

    // A phone's width: nothing wider than the screen but what scrolls inside its own box.
    browser.viewport(390, 844).await;
    browser.open(&format!("{base}/incidents/{drill}")).await;
    assert_eq!(browser.script("return document.documentElement.scrollWidth;").await, 390, "the page fits the phone");
    check(&browser, "incident-drill-phone").await;
    desk.stop().await;
}

/// Runs axe-core on the page as it is, failing on any violation, and keeps its screenshot.
async fn check(browser: &Browser, name: &str) {
    browser.screenshot(&format!("dashboard-{name}")).await;
    let found = browser.axe().await;
    assert!(found.is_empty(), "{name}: {found}");
    assert!(found.passed > 10, "{name}: axe checked little: {found}");
}
