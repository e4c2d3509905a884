//! The dashboard over HTTP (issue 15), as a browser without JavaScript uses it: signing in for a
//! session cookie and its flags, pages refused without a session, forms refused without the
//! session's CSRF token, every action refused for a person without the role (and recorded, with
//! the person as actor, for one who has it), hostile text rendered inert, and the live events a
//! page listens to. The browser flows themselves are `browser*` tests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Serving, answer, wait_until};

mod campaigns;
mod conditions;
mod flows;
mod pages;
mod retrying;
mod timeline;

const DANA: &str = "pg_dana-web-token";
const TOM: &str = "pg_tom-web-token";
const LEE: &str = "pg_lee-web-token";

/// A runbook whose every text a person or a sender controls tries to inject markup or script.
const HOSTILE: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: web-drill
title: "Breach <script>alert(1)</script> \"><img src=x onerror=alert(2)>"
roles:
  commander: {}
  approver: {}
rights: { close: [commander], abandon: [commander], recover: [commander] }
controls:
  door-mfa:
    title: "Door MFA <script>alert(5)</script>"
    owner: commander
    max_relaxation: 7d
phases:
  - id: contain
    title: "Contain <script>alert(3)</script>"
    steps:
      - id: isolate
        title: Isolate the hosts
        manual: { instructions: "Isolate <img src=x onerror=alert(4)> the hosts", assignee: commander, outputs: [ticket] }
      - id: rotate
        retry: { attempts: 1, backoff: 1s }
        http: { url: "https://idp.example/rotate" }
  - id: relax
    needs: [contain]
    entry:
      - id: lift
        approval: { roles: [approver] }
    steps:
      - id: relax-door
        relax:
          control: door-mfa
          reason: "javascript:alert(6) <b>bold</b>"
          expires_in: 1h
          compensating: [Guard at the door]
      - id: restore
        manual: { instructions: Restore the service }
  - id: reinstate
    needs: [relax]
    steps:
      - id: reinstate-door
        reinstate: { control: door-mfa }
"#;

/// The markup the hostile texts carry: none may reach a page as markup.
const INJECTED: &[&str] = &["<script>alert", "<img src=x", "onerror=alert(2)>", "<b>bold</b>", "href=\"javascript:"];

/// `phasegate serve` over the hostile runbook, with Dana (commander), Tom (no role it names)
/// and Lee (approver).
struct Dashboard {
    base: String,
    serving: Serving,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Dashboard {
    async fn start() -> Dashboard {
        Dashboard::start_with(&[], "", Duration::from_millis(50)).await
    }

    /// The dashboard with `runbooks` (file name and text) beside the hostile one, `server`
    /// settings (lines indented under `server:`) and the runtime loop passing every `interval`.
    async fn start_with(runbooks: &[(&str, &str)], server: &str, interval: Duration) -> Dashboard {
        Dashboard::start_configured(runbooks, server, "", interval).await
    }

    /// As [`Dashboard::start_with`], with `top` (top-level configuration lines) at the end.
    async fn start_configured(runbooks: &[(&str, &str)], server: &str, top: &str, interval: Duration) -> Dashboard {
        Dashboard::start_as(runbooks, server, top, interval, false).await
    }

    /// As [`Dashboard::start_configured`], its effects carried out for real (campaigns sent), as
    /// `phasegate serve` carries them out, within the configuration's outbound policy.
    async fn start_reaching(runbooks: &[(&str, &str)], top: &str, interval: Duration) -> Dashboard {
        Dashboard::start_as(runbooks, "", top, interval, true).await
    }

    async fn start_as(
        runbooks: &[(&str, &str)],
        server: &str,
        top: &str,
        interval: Duration,
        reach: bool,
    ) -> Dashboard {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        std::fs::write(dir.path().join("runbooks/web-drill.yaml"), HOSTILE).unwrap();
        for (file, text) in runbooks {
            std::fs::write(dir.path().join("runbooks").join(file), text).unwrap();
        }
        let sha = |token: &str| phasegate::engine::decide::sha256_hex(token);
        let config = format!(
            "database: {db}\nrunbooks: {runbooks}\npeople:\n  dana.ito: {{ roles: [commander] }}\n  \
             tom.reyes: {{ roles: [communications] }}\n  lee.chen: {{ roles: [approver] }}\nserver:\n{server}  \
             tokens:\n    dana: {{ person: dana.ito, sha256: {dana} }}\n    tom: {{ person: tom.reyes, sha256: {tom} }}\n    \
             lee: {{ person: lee.chen, sha256: {lee} }}\n{top}",
            db = dir.path().join("phasegate.db").display(),
            runbooks = dir.path().join("runbooks").display(),
            dana = sha(DANA),
            tom = sha(TOM),
            lee = sha(LEE),
        );
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, config).unwrap();
        let serving = if reach {
            let config = phasegate::config::Config::load(Some(&path), &Default::default()).unwrap();
            let store = phasegate::store::AnyStore::open(&config.database).await.unwrap();
            let actions = phasegate::actions::Actions::new(
                Arc::new(phasegate::render::Catalog::built_in()),
                Arc::new(config.secrets.clone()),
            )
            .and_then(|actions| actions.with_outbound(config.outbound.clone()))
            .unwrap();
            Serving::start_executing(store, config, "127.0.0.1:0", interval, actions).await
        } else {
            Serving::start(&path, "127.0.0.1:0", interval).await
        };
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Dashboard { base: serving.base.clone(), serving, client, _dir: dir }
    }

    /// Starts the hostile runbook through the API as Dana.
    async fn start_incident(&self) -> String {
        self.start_runbook("web-drill").await
    }

    async fn api(&self, path: &str) -> Value {
        let response = self.client.get(format!("{}{path}", self.base)).bearer_auth(DANA).send().await.unwrap();
        let (status, body) = answer(response).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// The events people recorded (the runtime's own, `phasegate`, left out): type and actor.
    async fn by_people(&self, id: &str) -> Vec<(String, String)> {
        let timeline = self.api(&format!("/api/v1/incidents/{id}/timeline?limit=1000")).await;
        timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["event"]["actor"] != "phasegate")
            .map(|entry| {
                let event = &entry["event"];
                (event["event"]["type"].as_str().unwrap().to_string(), event["actor"].as_str().unwrap().to_string())
            })
            .collect()
    }

    async fn sign_in(&self, token: &str) -> Browser {
        let mut browser = Browser { base: self.base.clone(), client: self.client.clone(), cookies: Vec::new() };
        let (status, headers, page) = browser.get("/signin").await;
        assert_eq!(status, 200, "{page}");
        assert!(set_cookie(&headers, "pg_signin").is_some(), "the sign-in form sets its cookie");
        let signin = hidden(&page, "signin").expect("the form's sign-in token");
        let fields = [("token", token), ("signin", signin.as_str()), ("next", "/incidents")];
        let (status, headers, _) = browser.post_raw("/signin", &fields).await;
        assert_eq!(status, 303);
        assert_eq!(header(&headers, "location"), Some("/incidents".into()));
        assert!(browser.cookie("pg_session").is_some(), "signed in: {:?}", browser.cookies);
        browser
    }

    async fn stop(self) {
        self.serving.stop().await;
    }
}

/// A browser without JavaScript: it keeps cookies and follows nothing by itself.
struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    fn keep(&mut self, headers: &reqwest::header::HeaderMap) {
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, flags) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !flags.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn get(&mut self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        self.keep(&headers);
        (status, headers, response.text().await.unwrap())
    }

    async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded(fields))
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        self.keep(&headers);
        (status, headers, response.text().await.unwrap())
    }

    /// Posts a form from `page_path` with the CSRF token that page carries, then follows the
    /// redirect back: the page it lands on.
    async fn act(&mut self, page_path: &str, action: &str, fields: &[(&str, &str)]) -> String {
        let (_, _, page) = self.get(page_path).await;
        let csrf = hidden(&page, "csrf").expect("a signed-in page carries the CSRF token");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let (status, headers, body) = self.post_raw(action, &all).await;
        assert_eq!(status, 303, "{action}: {body}");
        let location = header(&headers, "location").unwrap();
        let (status, _, landed) = self.get(&location).await;
        assert_eq!(status, 200, "{location}");
        landed
    }
}

/// Fields as a browser posts them (`application/x-www-form-urlencoded`).
fn encoded(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{byte:02X}"),
            })
            .collect()
    };
    fields.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|value| value.to_str().unwrap().to_string())
}

fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_string())
        .find(|value| value.starts_with(&format!("{name}=")))
}

/// The value of the first hidden field `name` in `page`.
fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    Some(page[start..].split('"').next()?.to_string())
}

/// The flash message a page shows.
fn flash(page: &str) -> Option<&str> {
    let start = page.find("id=\"flash\"")?;
    let text = &page[start..];
    let text = &text[text.find('>')? + 1..];
    Some(&text[..text.find("</div>")?])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_gives_a_session_cookie_with_its_flags_and_signing_out_ends_it() {
    let dashboard = Dashboard::start().await;
    let mut anonymous = Browser { base: dashboard.base.clone(), client: dashboard.client.clone(), cookies: vec![] };
    let (status, headers, _) = anonymous.get("/").await;
    assert_eq!((status, header(&headers, "location").as_deref()), (303, Some("/signin")));

    // The session cookie: HttpOnly, SameSite=Strict, the whole site, expiring; Secure behind TLS.
    let (_, _, form) = anonymous.get("/signin").await;
    let signin = hidden(&form, "signin").unwrap();
    let (status, headers, _) =
        anonymous.post_raw("/signin", &[("token", DANA), ("signin", &signin), ("next", "/incidents")]).await;
    assert_eq!(status, 303);
    let cookie = set_cookie(&headers, "pg_session").unwrap();
    for flag in ["; Path=/;", "; HttpOnly", "; SameSite=Strict", "; Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "served over plain HTTP: {cookie}");
    let id = cookie.split(';').next().unwrap().trim_start_matches("pg_session=");
    assert!(id.len() >= 43, "32 random bytes: {id}");

    let mut behind_tls = Browser { base: dashboard.base.clone(), client: dashboard.client.clone(), cookies: vec![] };
    let (_, _, form) = behind_tls.get("/signin").await;
    let signin = hidden(&form, "signin").unwrap();
    let response = dashboard
        .client
        .post(format!("{}/signin", dashboard.base))
        .header("cookie", behind_tls.cookie_header())
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded(&[("token", DANA), ("signin", &signin)]))
        .send()
        .await
        .unwrap();
    assert!(set_cookie(response.headers(), "pg_session").unwrap().ends_with("; Secure"));

    // A wrong token, and a sign-in form without this browser's sign-in token, are refused.
    let (_, _, form) = anonymous.get("/signin").await;
    let signin = hidden(&form, "signin").unwrap();
    let (status, _, page) = anonymous.post_raw("/signin", &[("token", "pg_wrong"), ("signin", &signin)]).await;
    assert_eq!(status, 401);
    assert!(page.contains("that API token is not valid"), "{page}");
    let mut elsewhere = Browser { base: dashboard.base.clone(), client: dashboard.client.clone(), cookies: vec![] };
    let (status, headers, page) = elsewhere.post_raw("/signin", &[("token", DANA), ("signin", &signin)]).await;
    assert_eq!(status, 403, "login CSRF: a form from elsewhere");
    assert!(set_cookie(&headers, "pg_session").is_none());
    assert!(page.contains("sign-in form&#39;s token is missing"), "{page}");

    // Signed in: pages, and the person's name; signed out: the cookie is cleared and dead.
    let mut dana = dashboard.sign_in(DANA).await;
    let (status, _, page) = dana.get("/incidents").await;
    assert_eq!(status, 200);
    assert!(page.contains("Signed in as <strong>dana.ito</strong>"), "{page}");
    let old = dana.cookie("pg_session").unwrap().to_string();
    let csrf = hidden(&page, "csrf").unwrap();
    let (status, headers, _) = dana.post_raw("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert!(set_cookie(&headers, "pg_session").unwrap().contains("Max-Age=0"));
    dana.cookies.push(("pg_session".into(), old));
    let (status, headers, _) = dana.get("/incidents").await;
    assert_eq!((status, header(&headers, "location").as_deref()), (303, Some("/signin?next=/incidents")));
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_every_page_and_form_sends_to_sign_in() {
    let dashboard = Dashboard::start().await;
    let id = dashboard.start_incident().await;
    let mut nobody = Browser { base: dashboard.base.clone(), client: dashboard.client.clone(), cookies: vec![] };
    nobody.cookies.push(("pg_session".into(), "made-up".into()));
    for (method, route) in phasegate::server::web::ROUTES {
        if ["/", "/signin", "/assets/app.css", "/assets/app.js"].contains(route) {
            continue;
        }
        let path = route
            .replace("{id}", &id)
            .replace("{audience}", "internal")
            .replace("{phase}", "contain")
            .replace("{step}", "isolate")
            .replace("{action}", "pause");
        let (status, headers, _) = match *method {
            "GET" => nobody.get(&path).await,
            _ => nobody.post_raw(&path, &[("csrf", "x"), ("text", "hello")]).await,
        };
        let location = header(&headers, "location").unwrap_or_default();
        assert_eq!(status, 303, "{method} {path}");
        assert!(location.starts_with("/signin"), "{method} {path}: {location}");
    }
    let (_, headers, _) = nobody.get(&format!("/incidents/{id}?page=2")).await;
    let back = header(&headers, "location").unwrap();
    assert_eq!(back, format!("/signin?next=/incidents/{id}%3Fpage%3D2"), "back to where it was going");
    assert!(dashboard.by_people(&id).await.iter().all(|(kind, _)| kind != "note_added"));
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let dashboard = Dashboard::start().await;
    let id = dashboard.start_incident().await;
    let before = dashboard.by_people(&id).await;
    let mut dana = dashboard.sign_in(DANA).await;
    let mut tom = dashboard.sign_in(TOM).await;
    let (_, _, toms_page) = tom.get(&format!("/incidents/{id}")).await;
    let toms_token = hidden(&toms_page, "csrf").unwrap();
    let note = format!("/incidents/{id}/note");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("text", "no token")], "came without its CSRF token"),
        (vec![("csrf", ""), ("text", "empty token")], "is not this session"),
        (vec![("csrf", "forged"), ("text", "forged token")], "is not this session"),
        (vec![("csrf", &toms_token), ("text", "another session's token")], "is not this session"),
    ];
    for (fields, why) in cases {
        let (status, headers, page) = dana.post_raw(&note, &fields).await;
        assert_eq!(status, 403, "{fields:?}: {page}");
        assert!(header(&headers, "location").is_none());
        assert!(page.contains("Refused: CSRF check failed") && page.contains(why), "{fields:?}: {page}");
    }
    let (status, _, page) = dana.post_raw(&format!("/incidents/{id}/close"), &[("note", "done")]).await;
    assert_eq!(status, 403, "{page}");
    assert_eq!(dashboard.by_people(&id).await, before, "nothing was recorded");
    // With the token, the same note is taken.
    let landed = dana.act(&format!("/incidents/{id}"), &note, &[("text", "with the token")]).await;
    assert_eq!(flash(&landed), Some("Note added."));
    assert_eq!(dashboard.by_people(&id).await.last(), Some(&("note_added".to_string(), "dana.ito".to_string())));
    dashboard.stop().await;
}

/// An action's URL, its fields, and what its refusal names.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);

/// Every action the pages offer, posted by someone the runbook does not let do it: refused with
/// the engine's reason on the page, and nothing recorded. The page does not offer the form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_is_refused_for_a_person_without_the_role() {
    let dashboard = Dashboard::start().await;
    let id = dashboard.start_incident().await;
    let page = format!("/incidents/{id}");
    let base = page.clone();
    let mut tom = dashboard.sign_in(TOM).await;
    let mut dana = dashboard.sign_in(DANA).await;
    let (_, _, shown) = dana.get(&page).await;
    for offered in ["id=\"done-contain-isolate\"", "id=\"close-submit\"", "id=\"abandon-submit\""] {
        assert!(shown.contains(offered), "Dana is offered {offered}");
    }
    let (_, _, shown) = tom.get(&page).await;
    for offered in ["id=\"done-contain-isolate\"", "id=\"close-submit\"", "id=\"abandon-submit\""] {
        assert!(!shown.contains(offered), "Tom is not offered {offered}");
    }
    let before = dashboard.by_people(&id).await;
    let refused = async |browser: &mut Browser, cases: Vec<Case>| {
        for (action, fields, role) in cases {
            let landed = browser.act(&page, &action, &fields).await;
            let said = flash(&landed).unwrap_or_else(|| panic!("{action}: no flash")).to_string();
            assert!(said.starts_with("Refused: "), "{action}: {said}");
            assert!(said.contains("does not hold") && said.contains(role), "{action}: {said}");
        }
    };
    refused(
        &mut tom,
        vec![
            (
                format!("{base}/steps/contain/isolate/done"),
                vec![("evidence", "done"), ("output.ticket", "7")],
                "`commander`",
            ),
            (format!("{base}/close"), vec![("note", "over")], "`commander`"),
            (format!("{base}/close"), vec![("abandon", "1"), ("reason", "drill")], "`commander`"),
        ],
    )
    .await;
    assert_eq!(dashboard.by_people(&id).await, before, "nothing refused was recorded");

    let landed = dana
        .act(&page, &format!("{base}/steps/contain/isolate/done"), &[("evidence", "isolated"), ("output.ticket", "42")])
        .await;
    assert_eq!(flash(&landed), Some("Step `contain/isolate` marked done."));
    // The http step then fails for good (no network in tests): a step to retry or skip.
    wait_until("the http step to fail for good", Duration::from_secs(30), async || {
        let board = dashboard.api(&format!("/api/v1/incidents/{id}")).await;
        board["blocking"].as_array().unwrap().iter().any(|b| b["blocker"]["kind"] == "failed")
    })
    .await;
    let (_, _, shown) = tom.get(&page).await;
    assert!(
        shown.contains("id=\"failed-contain-rotate\"") && !shown.contains("id=\"retry-contain-rotate\""),
        "{shown}"
    );
    let (_, _, shown) = dana.get(&page).await;
    assert!(shown.contains("id=\"retry-contain-rotate\""), "Dana is offered the retry");
    let before = dashboard.by_people(&id).await;
    refused(
        &mut tom,
        vec![
            (format!("{base}/steps/contain/rotate/retry"), vec![], "`commander`"),
            (format!("{base}/steps/contain/rotate/skip"), vec![("reason", "by phone")], "`commander`"),
            (format!("{base}/steps/contain/rotate/done"), vec![("evidence", "by hand")], "`commander`"),
        ],
    )
    .await;
    assert_eq!(dashboard.by_people(&id).await, before, "nothing refused was recorded");
    let landed = dana.act(&page, &format!("{base}/steps/contain/rotate/skip"), &[("reason", "rotated by hand")]).await;
    assert_eq!(flash(&landed), Some("Step `contain/rotate` skipped."));
    // Dana holds `commander`, not `approver`: the gate is Lee's.
    assert!(!landed.contains("id=\"approve-relax-lift\""), "Dana is not offered the approval");
    refused(&mut dana, vec![(format!("{base}/approve"), vec![("phase", "relax"), ("gate", "lift")], "`approver`")])
        .await;
    refused(&mut tom, vec![(format!("{base}/approve"), vec![("phase", "relax"), ("gate", "lift")], "`approver`")])
        .await;
    let mut lee = dashboard.sign_in(LEE).await;
    let (_, _, shown) = lee.get(&page).await;
    assert!(shown.contains("id=\"approve-relax-lift\""), "Lee is offered the approval");
    let landed =
        lee.act(&page, &format!("{base}/approve"), &[("phase", "relax"), ("gate", "lift"), ("note", "ok")]).await;
    assert_eq!(flash(&landed), Some("Approved `relax/lift`."));
    assert!(landed.contains("Who can unblock it: anyone configured (the step names no assignee)"), "{landed}");
    let before: Vec<(String, String)> = Vec::new();

    // Recorded as the CLI records them: the same events, the person as actor.
    let after = dashboard.by_people(&id).await;
    let added: Vec<(&str, &str)> = after[before.len()..].iter().map(|(k, a)| (k.as_str(), a.as_str())).collect();
    for expected in [("step_done", "dana.ito"), ("step_skipped_by_hand", "dana.ito"), ("approval_given", "lee.chen")] {
        assert!(added.contains(&expected), "{expected:?} in {added:?}");
    }
    assert!(added.iter().all(|(_, actor)| *actor != "tom.reyes"), "nothing of Tom's: {added:?}");
    let timeline = dashboard.api(&format!("/api/v1/incidents/{id}/timeline?limit=1000")).await;
    let done =
        timeline["events"].as_array().unwrap().iter().find(|e| e["event"]["event"]["type"] == "step_done").unwrap();
    assert_eq!(done["event"]["event"]["outputs"], json!({ "ticket": 42 }), "{done}");
    assert_eq!(done["event"]["reason"], "isolated");
    dashboard.stop().await;
}

/// Runbook titles, step instructions, control names, relaxation reasons and notes that carry
/// markup reach every page as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_renders_inert_on_every_page() {
    let dashboard = Dashboard::start().await;
    let id = dashboard.start_incident().await;
    let mut dana = dashboard.sign_in(DANA).await;
    let page = format!("/incidents/{id}");
    for note in ["<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>", "javascript:alert(7)"] {
        dana.act(&page, &format!("{page}/note"), &[("text", note)]).await;
    }
    dana.act(&page, &format!("{page}/steps/contain/isolate/done"), &[("evidence", "<script>alert(8)</script>")]).await;
    let mut lee = dashboard.sign_in(LEE).await;
    wait_until("the http step to fail for good", Duration::from_secs(30), async || {
        let board = dashboard.api(&format!("/api/v1/incidents/{id}")).await;
        board["blocking"].as_array().unwrap().iter().any(|b| b["blocker"]["kind"] == "failed")
    })
    .await;
    dana.act(&page, &format!("{page}/steps/contain/rotate/skip"), &[("reason", "<img src=x onerror=alert(9)>")]).await;
    lee.act(&page, &format!("{page}/approve"), &[("phase", "relax"), ("gate", "lift")]).await;
    // The relaxation (its reason hostile) is on the page once the runtime has taken the step.
    wait_until("the control to be relaxed", Duration::from_secs(30), async || {
        let (_, _, shown) = dana.get(&page).await;
        shown.contains("data-expires=")
    })
    .await;
    let paths = [
        page.clone(),
        format!("{page}?kind=note_added"),
        "/incidents".into(),
        "/incidents?state=all".into(),
        "/runbooks".into(),
        "/runbooks/web-drill".into(),
        format!("{page}/audit"),
        "/audit".into(),
    ];
    for path in paths {
        let (status, _, shown) = dana.get(&path).await;
        assert_eq!(status, 200, "{path}");
        for injected in INJECTED {
            assert!(!shown.contains(injected), "{path} carries `{injected}` as markup");
        }
        let reports = path.contains("audit");
        assert!(
            reports || shown.contains("&lt;script&gt;alert(") || shown.contains("&lt;img src=x"),
            "{path} shows the text"
        );
    }
    let (_, _, shown) = dana.get(&page).await;
    assert!(
        shown.contains("javascript:alert(6) &lt;b&gt;bold&lt;&#x2F;b&gt;")
            || shown.contains("javascript:alert(6) &lt;b&gt;bold&lt;/b&gt;")
    );
    // A pasted runbook's text comes back in the box as text.
    let landed = {
        let (_, _, runbooks) = dana.get("/runbooks").await;
        let csrf = hidden(&runbooks, "csrf").unwrap();
        dana.post_raw("/runbooks/validate", &[("csrf", &csrf), ("text", "</textarea><script>alert(10)</script>")]).await
    };
    assert_eq!(landed.0, 200);
    assert!(!landed.2.contains("</textarea><script>"), "{}", landed.2);
    dashboard.stop().await;
}

/// Every answer carries the policy; the assets are served from the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_a_strict_policy_and_the_assets_come_from_the_binary() {
    let dashboard = Dashboard::start().await;
    let mut dana = dashboard.sign_in(DANA).await;
    for path in ["/incidents", "/signin", "/runbooks", "/assets/app.css", "/assets/app.js"] {
        let (status, headers, body) = dana.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-security-policy").as_deref(), Some(phasegate::server::web::CSP), "{path}");
        assert_eq!(header(&headers, "x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(header(&headers, "referrer-policy").as_deref(), Some("no-referrer"));
        assert!(!body.contains("<script>") && !body.contains(" style=\""), "{path}: nothing inline");
        assert!(!body.contains("http://") && !body.contains("https://"), "{path}: nothing from elsewhere");
    }
    let (_, _, css) = dana.get("/assets/app.css").await;
    assert_eq!(css, phasegate::server::web::CSS);
    dashboard.stop().await;
}

/// A page's event stream says when its incident changed, whoever changed it (here the API).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_says_when_the_incident_changes() {
    let dashboard = Dashboard::start().await;
    let id = dashboard.start_incident().await;
    let dana = dashboard.sign_in(DANA).await;
    let version = flows::version(&dashboard, &id).await;
    let mut response = flows::stream(&dashboard, &dana, &id, version).await;
    assert_eq!(header(response.headers(), "content-type").as_deref(), Some("text/event-stream"));
    flows::note_through_the_api(&dashboard, &id).await;
    assert!(flows::next_change(&mut response, Duration::from_secs(60)).await > version, "the new version");
    // The server stops with the stream still open: the stream ends, so the connection closes.
    dashboard.stop().await;
    while let Ok(Some(_)) = response.chunk().await {}
}

/// Regression: the page's live refresh, fetched while a posted form was being redirected, took
/// the flash message, so the page the person landed on said nothing of what they had done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_refresh_leaves_the_flash_for_the_page_the_form_lands_on() {
    let dashboard = Dashboard::start().await;
    let id = dashboard.start_incident().await;
    let mut dana = dashboard.sign_in(DANA).await;
    let page = format!("/incidents/{id}");
    let (_, _, shown) = dana.get(&page).await;
    let csrf = hidden(&shown, "csrf").unwrap();
    let (status, _, _) = dana.post_raw(&format!("{page}/note"), &[("csrf", &csrf), ("text", "seen")]).await;
    assert_eq!(status, 303);
    let live = dashboard
        .client
        .get(format!("{}{page}", dashboard.base))
        .header("cookie", dana.cookie_header())
        .header(phasegate::server::web::LIVE_HEADER, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(flash(&live.text().await.unwrap()), None, "the live copy shows no flash");
    let (_, _, landed) = dana.get(&page).await;
    assert_eq!(flash(&landed), Some("Note added."), "the page landed on shows it");
    dashboard.stop().await;
}

/// A check gate whose target cannot be reached (a closed port): it fails its phase in a second.
const EDR_CHECK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: edr-check
title: EDR check
roles:
  commander: {}
rights: { recover: [commander] }
phases:
  - id: contain
    entry:
      - id: hosts-isolated
        check:
          request: { url: "EDR/hosts" }
          expect: response.status == 200
          interval: 1s
          deadline: 1s
    steps:
      - id: note
        manual: { instructions: Write down what was isolated }
"#;

/// The check gate's forms: offered to the `recover` role only, refused to someone else with the
/// reason (nothing recorded), refused without the CSRF token or without evidence, and taken from
/// Dana, recorded with her as actor and shown on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_gate_is_passed_by_hand_from_its_form_by_a_recover_role_only() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let edr = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let runbook = EDR_CHECK.replace("EDR", &edr);
    let dashboard = Dashboard::start_with(&[("edr-check.yaml", &runbook)], "", Duration::from_millis(50)).await;
    let id = dashboard.start_runbook("edr-check").await;
    wait_until("the check to fail its phase", Duration::from_secs(30), async || {
        let board = dashboard.api(&format!("/api/v1/incidents/{id}")).await;
        board["blocking"].as_array().unwrap().iter().any(|b| b["blocker"]["kind"] == "failed_check")
    })
    .await;
    let page = format!("/incidents/{id}");
    let pass = format!("/incidents/{id}/gates/contain/hosts-isolated/pass");
    let mut tom = dashboard.sign_in(TOM).await;
    let mut dana = dashboard.sign_in(DANA).await;
    let (_, _, shown) = tom.get(&page).await;
    assert!(
        shown.contains("id=\"check-contain-hosts-isolated\"")
            && !shown.contains("id=\"gate-pass-contain-hosts-isolated\""),
        "Tom sees the failed check but no form: {shown}"
    );
    let (_, _, shown) = dana.get(&page).await;
    assert!(shown.contains("id=\"gate-pass-contain-hosts-isolated\""), "Dana is offered the form");

    let before = dashboard.by_people(&id).await;
    for action in [pass.clone(), format!("/incidents/{id}/gates/contain/hosts-isolated/retry")] {
        let landed = tom.act(&page, &action, &[("evidence", "trust me"), ("reason", "again")]).await;
        let said = flash(&landed).unwrap_or_else(|| panic!("{action}: no flash"));
        assert!(said.starts_with("Refused: `tom.reyes` does not hold role `commander`"), "{action}: {said}");
    }
    let (status, _, refused) = dana.post_raw(&pass, &[("evidence", "no token")]).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused.contains("Refused: CSRF check failed"), "{refused}");
    let landed = dana.act(&page, &pass, &[("evidence", "  ")]).await;
    assert_eq!(
        flash(&landed),
        Some(
            "Refused: passing check gate `contain/hosts-isolated` by hand needs evidence on record; give it with \
             `--evidence`"
        )
    );
    assert_eq!(dashboard.by_people(&id).await, before, "nothing refused was recorded");

    let landed = dana.act(&page, &pass, &[("evidence", "isolated in the EDR console, ticket SEC-1")]).await;
    assert_eq!(flash(&landed), Some("Gate `contain/hosts-isolated` passed by hand."));
    assert!(
        landed.contains("Last: overridden by dana.ito") && landed.contains("isolated in the EDR console, ticket SEC-1"),
        "{landed}"
    );
    assert!(!landed.contains("id=\"gate-pass-contain-hosts-isolated\""), "a passed gate offers no form");
    let after = dashboard.by_people(&id).await;
    let added: Vec<(&str, &str)> = after[before.len()..].iter().map(|(k, a)| (k.as_str(), a.as_str())).collect();
    assert_eq!(added[..2], [("gate_overridden", "dana.ito"), ("phase_resumed", "dana.ito")], "{added:?}");
    let board = dashboard.api(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(board["incident"]["phases"][0]["state"], "running", "{board}");
    dashboard.stop().await;
}

const UPDATES: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: web-updates
title: Updates that arrive and updates that do not
roles:
  commander: {}
channels:
  out: { stdout: {} }
  team-slack: { slack: { url_secret: TEAM_SLACK_UNSET } }
audiences:
  staff: { title: Staff, template: internal-update, channels: [out] }
  team: { title: Team room, template: internal-update, channels: [team-slack] }
status_updates:
  - on: [incident_started]
    audiences: [staff, team]
phases:
  - id: contain
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts, assignee: commander }
"#;

#[tokio::test]
async fn an_update_that_was_not_delivered_says_so_and_why_instead_of_when_it_was_sent() {
    // The real channels (stdout delivers; the Slack channel's secret has no value), not the
    // other tests' executor that reaches nothing.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/web-updates.yaml"), UPDATES).unwrap();
    let config = format!(
        "database: {db}\nrunbooks: {runbooks}\npeople:\n  dana.ito: {{ roles: [commander] }}\nserver:\n  tokens:\n    \
         dana: {{ person: dana.ito, sha256: {dana} }}\n",
        db = dir.path().join("phasegate.db").display(),
        runbooks = dir.path().join("runbooks").display(),
        dana = phasegate::engine::decide::sha256_hex(DANA),
    );
    let path = dir.path().join("phasegate.yaml");
    std::fs::write(&path, config).unwrap();
    let loaded = phasegate::config::Config::load(Some(&path), &Default::default()).unwrap();
    let store = phasegate::store::AnyStore::open(&loaded.database).await.unwrap();
    let catalog = std::sync::Arc::new(phasegate::render::Catalog::built_in());
    let actions = phasegate::actions::Actions::new(catalog, std::sync::Arc::new(loaded.secrets.clone())).unwrap();
    let serving = Serving::start_executing(store, loaded, "127.0.0.1:0", Duration::from_millis(50), actions).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let dashboard = Dashboard { base: serving.base.clone(), serving, client, _dir: dir };
    let id = dashboard.start_runbook("web-updates").await;
    wait_until("both updates to end", Duration::from_secs(30), async || {
        let timeline = dashboard.api(&format!("/api/v1/incidents/{id}/timeline?limit=1000")).await;
        let kinds: Vec<&str> = timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["event"]["event"]["type"].as_str())
            .collect();
        kinds.contains(&"status_update_sent") && kinds.contains(&"status_update_failed")
    })
    .await;
    let mut dana = dashboard.sign_in(DANA).await;
    let (status, _, page) = dana.get(&format!("/incidents/{id}")).await;
    assert_eq!(status, 200);
    let row = |title: &str| {
        let start =
            page.find(&format!("<tr><td>{title}</td>")).unwrap_or_else(|| panic!("no row for {title}:\n{page}"));
        page[start..start + page[start..].find("</tr>").unwrap()].to_string()
    };
    let (staff, team) = (row("Staff"), row("Team room"));
    assert!(staff.contains("sent ") && !staff.contains("not delivered"), "{staff}");
    assert!(team.contains("not delivered") && team.contains("TEAM_SLACK_UNSET") && !team.contains("sent "), "{team}");
    dashboard.stop().await;
}
