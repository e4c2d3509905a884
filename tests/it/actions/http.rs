//! HTTP steps and checks against the stubs: idempotency keys, secrets sent and never given back,
//! bodies and their cap, answers and failures, timeouts, redirects; and the outbound policy, which
//! refuses loopback however its address is written or reached until it is allowed.

use super::*;

#[tokio::test]
async fn http_steps_send_an_idempotency_key_that_is_the_same_on_every_attempt() {
    let fixture = Fixture::new().await;
    let mut post = request("post", fixture.stub.url("/hold"), 5);
    post.body = Some(json!({ "host": "till-7" }));
    for attempt in [1, 2] {
        assert!(matches!(fixture.http(post.clone(), attempt).await, Outcome::Http { status: 200, .. }));
    }
    let received = fixture.stub.received("/hold");
    let keys: Vec<&str> = received.iter().map(|r| r.headers["idempotency-key"].as_str()).collect();
    assert_eq!(keys, ["inc-1/contain/call", "inc-1/contain/call"]);
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert_eq!(serde_json::from_str::<Value>(&received[0].body).unwrap(), json!({ "host": "till-7" }));

    let check = EffectKind::Check {
        phase: "contain".into(),
        gate: "up".into(),
        poll: 1,
        request: request("GET", fixture.stub.url("/health"), 5),
    };
    fixture.carry_out(check).await;
    assert!(!fixture.stub.received("/health")[0].headers.contains_key("idempotency-key"), "checks carry no key");
}

#[tokio::test]
async fn a_secret_header_is_sent_but_never_comes_back() {
    let fixture = Fixture::new().await;
    let mut echo = request("GET", fixture.stub.url("/echo"), 5);
    echo.headers = vec![bearer(), ("X-Team".into(), Text::Literal("soc".into()))];
    let outcome = fixture.http(echo.clone(), 1).await;
    assert_eq!(fixture.stub.received("/echo")[0].headers["authorization"], format!("Bearer {TOKEN}"));
    let Outcome::Http { status: 200, headers, body } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(body["ok"], true);
    assert_eq!(body["headers"]["x-team"], "soc");
    assert_eq!(body["headers"]["authorization"], "Bearer [secret `token`]");
    assert_eq!(headers["x-echo"], "Bearer [secret `token`]");
    assert!(!headers.contains_key("set-cookie"), "{headers:?}");
    assert!(!serde_json::to_string(&outcome).unwrap().contains(TOKEN));

    // Nor does it appear when the request fails.
    echo.url = format!("http://127.0.0.1:{}/echo", closed_port().await);
    let refused = fixture.http(echo.clone(), 1).await;
    echo.url = fixture.stub.url("/slow");
    echo.timeout = Duration::from_secs(1);
    let slow = fixture.http(echo, 1).await;
    for outcome in [refused, slow] {
        assert!(!failure(&outcome).contains(TOKEN), "{outcome:?}");
    }
}

#[tokio::test]
async fn a_missing_secret_is_named_and_nothing_is_sent() {
    let fixture = Fixture::new().await;
    let mut call = request("GET", fixture.stub.url("/never"), 5);
    call.headers = vec![("Authorization".into(), Text::Secret { secret: "edr-key".into(), prefix: None })];
    let outcome = fixture.http(call, 1).await;
    assert_eq!(
        failure(&outcome),
        "secret `edr-key` has no value (needed for header `Authorization`); declare it under `secrets:` in the configuration, with an environment variable or file that holds it"
    );
    assert!(fixture.stub.received("/never").is_empty());
}

#[tokio::test]
async fn bodies_are_json_when_they_parse_and_cut_past_the_cap() {
    let fixture = Fixture::new().await;
    let Outcome::Http { body, .. } = fixture.http(request("GET", fixture.stub.url("/text"), 5), 1).await else {
        panic!("an answer")
    };
    assert_eq!(body, json!("plain words"));
    let outcome = fixture.http(request("GET", fixture.stub.url("/big"), 5), 1).await;
    let Outcome::Http { status: 200, headers, body } = outcome else { panic!("an answer") };
    assert_eq!(body.as_str().unwrap().len(), MAX_BODY);
    assert_eq!(headers[TRUNCATED_HEADER], "true");
}

#[tokio::test]
async fn a_server_error_is_an_answer_for_the_engine_to_judge() {
    let fixture = Fixture::new().await;
    let outcome = fixture.http(request("POST", fixture.stub.url("/fail"), 5), 1).await;
    let Outcome::Http { status, body, .. } = outcome else { panic!("an answer") };
    assert_eq!(status, 500);
    assert_eq!(body, json!({ "error": "boom" }));
}

#[tokio::test]
async fn a_refused_connection_is_a_failure() {
    let fixture = Fixture::new().await;
    let port = closed_port().await;
    let outcome = fixture.http(request("GET", format!("http://user:pw@127.0.0.1:{port}/x?token=abc"), 5), 1).await;
    let error = failure(&outcome);
    assert!(error.starts_with(&format!("GET http://127.0.0.1:{port}/x: could not connect")), "{error}");
    assert!(!error.contains("pw") && !error.contains("abc"), "{error}");
}

#[tokio::test]
async fn a_slow_server_hits_the_timeout() {
    let fixture = Fixture::new().await;
    let outcome = fixture.http(request("GET", fixture.stub.url("/slow"), 1), 1).await;
    assert!(failure(&outcome).ends_with("/slow: no complete answer within 1s"), "{outcome:?}");
}

#[tokio::test]
async fn redirects_are_answers_not_followed() {
    let fixture = Fixture::new().await;
    let mut call = request("GET", fixture.stub.url("/redirect"), 5);
    call.headers = vec![bearer()];
    let Outcome::Http { status, headers, .. } = fixture.http(call, 1).await else { panic!("an answer") };
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "/echo");
    assert!(fixture.stub.received("/echo").is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn loopback_is_refused_until_it_is_allowed() {
    let fixture = Fixture::with(false, Policy::default()).await;
    let port = fixture.stub.base.rsplit(':').next().unwrap().to_string();
    let url = fixture.stub.url("/hold?token=abc");
    let refused = fixture.http(request("POST", url.clone(), 5), 1).await;
    assert_eq!(
        failure(&refused),
        format!(
            "POST http://127.0.0.1:{port}/hold: not sent: `127.0.0.1` is a loopback address; \
             allow it under `outbound.allow` to call it"
        )
    );
    let check =
        EffectKind::Check { phase: "contain".into(), gate: "up".into(), poll: 1, request: request("GET", url, 5) };
    assert!(failure(&fixture.carry_out(check).await).contains("not sent: `127.0.0.1` is a loopback address"));
    assert!(fixture.stub.received("/hold").is_empty(), "nothing reached the stub");

    let allowed = Fixture::new().await;
    let outcome = allowed.http(request("POST", allowed.stub.url("/hold"), 5), 1).await;
    assert!(matches!(outcome, Outcome::Http { status: 200, .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    // `localhost` passes the check of the URL (it is a name, not an address); the resolver
    // refuses what it resolves to, and so nothing is sent.
    let fixture = Fixture::with(false, Policy::default()).await;
    let url = fixture.stub.url("/hold").replace("127.0.0.1", "localhost");
    let error = failure(&fixture.http(request("GET", url.clone(), 5), 1).await).to_string();
    assert!(error.contains(": not sent: `localhost` resolves to `"), "{error}");
    assert!(error.contains("which is a loopback address; allow it under `outbound.allow`"), "{error}");
    assert!(fixture.stub.received("/hold").is_empty(), "nothing reached the stub");

    // Allowed by its address, or by its name, it goes through.
    for policy in [loopback(), allowing(&["localhost"])] {
        let fixture = Fixture::with(false, policy).await;
        let url = fixture.stub.url("/hold").replace("127.0.0.1", "localhost");
        let outcome = fixture.http(request("GET", url, 5), 1).await;
        assert!(matches!(outcome, Outcome::Http { status: 200, .. }), "{outcome:?}");
    }
}

#[tokio::test]
async fn every_way_of_writing_loopback_is_loopback() {
    // The URL parser reads each of these as 127.0.0.1 (or its IPv6 form), the connector connects to
    // that, and the check sees that.
    let refusing = Fixture::with(false, Policy::default()).await;
    let allowing = Fixture::new().await;
    for fixture in [&refusing, &allowing] {
        let port = fixture.stub.base.rsplit(':').next().unwrap().to_string();
        for host in ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "[::ffff:127.0.0.1]"] {
            let url = format!("http://{host}:{port}/literal");
            let outcome = fixture.http(request("GET", url, 5), 1).await;
            if std::ptr::eq(fixture, &refusing) {
                let error = failure(&outcome);
                assert!(error.contains("not sent: `"), "{host}: {error}");
                assert!(error.contains("127.0.0.1` is") || error.contains("IPv4 `127.0.0.1` in IPv6 form"), "{error}");
            } else if host.starts_with('[') {
                // Allowed as the IPv4 address it carries. A dual-stack socket (Linux's default)
                // delivers it to the stub's IPv4 listener, which is why it is classified by the
                // address it carries; a host without IPv6 cannot connect at all.
                let reached = matches!(outcome, Outcome::Http { status: 200, .. });
                assert!(reached || failure(&outcome).contains("could not connect"), "{host}: {outcome:?}");
            } else {
                assert!(matches!(outcome, Outcome::Http { status: 200, .. }), "{host}: {outcome:?}");
            }
        }
    }
    assert!(refusing.stub.received("/literal").is_empty(), "nothing reached the refusing fixture's stub");
    assert!(allowing.stub.received("/literal").len() >= 5);
    // Addresses that stand for this host, and the metadata service.
    for url in ["http://0.0.0.0:9/", "http://0/", "http://[::]:9/", "http://169.254.169.254/latest/meta-data/"] {
        let error = failure(&allowing.http(request("GET", url.to_string(), 5), 1).await).to_string();
        assert!(error.contains(": not sent: `"), "{url}: {error}");
    }
}

#[tokio::test]
async fn redirects_are_followed_only_when_allowed_and_each_hop_is_checked() {
    // Followed: the step gets the answer at the end, its credentials kept within the origin.
    let fixture = Fixture::with(false, loopback().follow_redirects(true)).await;
    let mut call = request("GET", fixture.stub.url("/redirect"), 5);
    call.headers = vec![bearer()];
    let outcome = fixture.http(call.clone(), 1).await;
    let Outcome::Http { status: 200, body, .. } = &outcome else { panic!("followed: {outcome:?}") };
    assert_eq!(body["ok"], true);
    assert_eq!(fixture.stub.received("/echo")[0].headers["authorization"], format!("Bearer {TOKEN}"));

    // To another origin (the same server by another name), credentials stay behind.
    call.url = fixture.stub.url("/to-localhost");
    let outcome = fixture.http(call.clone(), 1).await;
    assert!(matches!(outcome, Outcome::Http { status: 200, .. }), "{outcome:?}");
    let echoed = &fixture.stub.received("/echo")[1];
    assert!(!echoed.headers.contains_key("authorization"), "{:?}", echoed.headers);
    assert_eq!(echoed.headers["idempotency-key"], "inc-1/contain/call");

    // A hop to a refused address is refused, and says it was a redirect.
    call.url = fixture.stub.url("/to-metadata");
    let error = failure(&fixture.http(call.clone(), 1).await).to_string();
    assert_eq!(
        error,
        format!(
            "GET {}: redirect not followed: `169.254.169.254` is a link-local address (cloud metadata); \
             allow it under `outbound.allow` to call it",
            fixture.stub.url("/to-metadata")
        )
    );

    // A loop ends.
    call.url = fixture.stub.url("/loop");
    assert!(failure(&fixture.http(call.clone(), 1).await).ends_with("/loop: more than 5 redirects"));
    assert_eq!(fixture.stub.received("/loop").len(), 6);

    // Not followed by default: the redirect is the answer, and the metadata service is not called.
    let default = Fixture::new().await;
    call.url = default.stub.url("/to-metadata");
    let Outcome::Http { status, headers, .. } = default.http(call, 1).await else { panic!("an answer") };
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "http://169.254.169.254/latest/meta-data/");
}
