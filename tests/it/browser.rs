//! The browser harness itself (`support::browser`), on pages made to test it: axe-core finds what
//! a page breaks and says where, and runs under a strict Content-Security-Policy that blocks the
//! page's own inline script; a form is filled and sent by keyboard alone; waiting polls; screenshots
//! are kept. Then the server's pages as they are, through the in-process server.

use axum::Router;
use axum::extract::Query;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::server::Server;
use crate::support::browser::{Browser, Key, screenshots};

/// The policy the pages are served under: no inline script, nothing from elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'";

/// A page that breaks four of axe's rules on purpose, and carries an inline script the policy
/// must block.
const BROKEN: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Broken on purpose</title><link rel="stylesheet" href="/style.css"></head>
<body><main>
<h1>Broken on purpose</h1>
<img src="/nothing.png">
<p class="faint">Pale grey on white.</p>
<input id="unlabelled" type="text">
<script>document.title = 'the inline script ran';</script>
</main></body></html>
"#;

/// A page that breaks none, with a form to be used by keyboard.
const FORM: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>A form</title><link rel="stylesheet" href="/style.css"></head>
<body><main>
<h1>Sign the log</h1>
<form action="/received" method="get">
<label for="name">Your name</label> <input id="name" name="name" type="text" autocomplete="name">
<button type="submit">Sign</button>
</form>
</main></body></html>
"#;

const STYLE: &str = "body { font: 16px sans-serif; color: #1a1a1a; background: #fff; margin: 2em; }
.faint { color: #d8d8d8; }
input, button { font: inherit; padding: 6px 10px; }
:focus-visible { outline: 3px solid #1a5fb4; outline-offset: 2px; }";

fn strict(body: impl IntoResponse) -> impl IntoResponse {
    ([(header::CONTENT_SECURITY_POLICY, POLICY)], body)
}

async fn received(Query(form): Query<std::collections::BTreeMap<String, String>>) -> impl IntoResponse {
    let name = form.get("name").map(String::as_str).unwrap_or("nobody");
    let name: String = name.chars().filter(|c| c.is_alphanumeric() || *c == ' ').collect();
    strict(Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed</title></head>\
         <body><main><h1>Signed by {name}</h1></main></body></html>"
    )))
}

/// Serves the test pages on a free port of the loopback address; gives the base address.
async fn pages() -> String {
    let app = Router::new()
        .route("/broken", get(|| async { strict(Html(BROKEN)) }))
        .route("/form", get(|| async { strict(Html(FORM)) }))
        .route("/received", get(received))
        .route("/style.css", get(|| async { strict(([(header::CONTENT_TYPE, "text/css")], STYLE)) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_names_the_rules_a_page_breaks_even_under_a_strict_content_security_policy() {
    let Some(browser) = Browser::open_or_skip().await else { return };
    let base = pages().await;
    browser.open(&format!("{base}/broken")).await;
    // The policy is in force: the page's inline script did not run.
    assert_eq!(browser.client.title().await.unwrap(), "Broken on purpose", "the inline script was blocked");
    let found = browser.axe().await;
    let rules = found.rules();
    for rule in ["html-has-lang", "image-alt", "label", "color-contrast"] {
        assert!(rules.contains(&rule), "axe should find {rule}; it found:\n{found}");
    }
    let shown = found.to_string();
    for part in [
        "image-alt (critical)",
        "https://dequeuniversity.com/rules/axe/",
        "at #unlabelled",
        "at p  <p class=\"faint\">",
    ] {
        assert!(
            shown.contains(part),
            "the report names the rule, its impact, its help and the element: {part:?} in\n{shown}"
        );
    }
    let shot = browser.screenshot("harness-broken").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a screenshot in {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_is_filled_and_sent_by_keyboard_alone() {
    let Some(browser) = Browser::open_or_skip().await else { return };
    let base = pages().await;
    browser.open(&format!("{base}/form")).await;
    let found = browser.axe().await;
    assert!(found.is_empty(), "{found}");

    browser.press(Key::Tab).await;
    assert_eq!(browser.focused().await, "input #name [name=name]", "the first Tab reaches the field");
    browser.type_text("Dana Ito").await;
    browser.press(Key::Tab).await;
    assert_eq!(browser.focused().await, "button Sign", "the second Tab reaches the button");
    browser.screenshot("harness-form-focused").await;
    browser.press(Key::Enter).await;
    browser.wait_for("the signed page", "document.querySelector('h1')?.textContent === 'Signed by Dana Ito'").await;
    assert!(browser.url().await.ends_with("/received?name=Dana+Ito"), "{}", browser.url().await);

    // And by the helpers: fill, then submit with the form's button.
    browser.open(&format!("{base}/form")).await;
    browser.fill("#name", "Lee Chen").await;
    browser.submit("form").await;
    browser.wait_for("the signed page", "document.querySelector('h1')?.textContent === 'Signed by Lee Chen'").await;
    assert_eq!(browser.text("h1").await, "Signed by Lee Chen");

    // On a phone's screen: nothing wider than it.
    browser.viewport(390, 844).await;
    browser.open(&format!("{base}/form")).await;
    let width = browser.script("return document.documentElement.scrollWidth;").await;
    assert_eq!(width, 390, "the page fits a phone's width");
    browser.screenshot("harness-form-phone").await;
}

/// Waiting for what never comes fails, naming it, what was seen, and where the page's screenshot is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_what_never_comes_fails_saying_what_it_waited_for() {
    let Some(browser) = Browser::open_or_skip().await else { return };
    let base = pages().await;
    browser.open(&format!("{base}/form")).await;
    let waiting = tokio::spawn(async move {
        let limit = std::time::Duration::from_millis(300);
        browser
            .wait_for_within("a heading that never comes", "document.querySelectorAll('h1').length === 2", limit)
            .await;
    });
    let failed = waiting.await.expect_err("the wait fails");
    let payload = failed.into_panic();
    let message = payload.downcast_ref::<String>().expect("a message");
    assert!(message.starts_with("waited 300ms for a heading that never comes"), "{message}");
    assert!(message.contains("last seen: false"), "{message}");
    assert!(message.contains("timeout-a-heading-that-never-comes.png"), "{message}");
    assert!(screenshots().join("timeout-a-heading-that-never-comes.png").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_answers_open_in_the_browser() {
    let Some(browser) = Browser::open_or_skip().await else { return };
    let server = Server::start().await;
    browser.open(&format!("{}/healthz", server.base)).await;
    assert_eq!(browser.text("body").await, "ok");
    // The API answers a browser without a token as it answers any client: JSON, naming the problem.
    browser.open(&format!("{}/api/v1/incidents", server.base)).await;
    let shown = browser.text("body").await;
    let answer: serde_json::Value =
        serde_json::from_str(&shown).unwrap_or_else(|e| panic!("the browser shows JSON: {e}: {shown}"));
    assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");
    browser.screenshot("server-api-without-a-token").await;
    assert!(screenshots().join("server-api-without-a-token.png").is_file());
    server.stop().await;
}
