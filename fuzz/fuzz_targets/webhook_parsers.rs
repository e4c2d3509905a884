//! Feeds arbitrary bytes to the webhook parsers: header values and a body for every
//! authentication scheme's `verify`, and the body to Alertmanager's `decode`. Any input may be
//! refused; none may panic, every refusal must carry a status of 400, 401 or 431, and nothing
//! made up by the fuzzer may verify without the secret (which it cannot guess).

#![no_main]

use libfuzzer_sys::fuzz_target;
use phasegate::server::webhooks::{alertmanager, signature};
use signature::{Scheme, Secret};

/// Header names, in the order the input's first segments fill them.
const NAMES: [&str; 8] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "x-signature",
    "x-request-id",
    "authorization",
];

fuzz_target!(|data: &[u8]| {
    // Segments separated by 0xFF (never in a header value a client could send) become header
    // values, each under the name of its position; what follows the last separator is the body.
    // A segment past the names' count repeats a header, which must be refused, not crash.
    let mut segments = data.split(|&byte| byte == 0xFF);
    let body = segments.next_back().unwrap_or_default();
    let headers: Vec<(&str, &[u8])> =
        segments.enumerate().map(|(index, value)| (NAMES[index % NAMES.len()], value)).collect();
    // The epoch (`DateTime::default()`, as the fuzz crate does not depend on chrono): timestamps
    // near zero are then the ones within the window.
    let now = Default::default();

    // Secrets of 0xFF bytes: no header value can hold one, so no input can present it as a
    // bearer token, and no input can carry an HMAC made with it without knowing it.
    let unreachable = || Secret::new(vec![0xFF; 32]).unwrap();
    let secrets = || vec![unreachable(), Secret::standard_webhooks("//////////8=").unwrap()];
    let schemes = [
        Scheme::StandardWebhooks { secrets: secrets() },
        Scheme::GitHub { secrets: secrets() },
        Scheme::Hmac { header: "X-Signature".into(), id_header: Some("x-request-id".into()), secrets: secrets() },
        Scheme::Hmac { header: "x-signature".into(), id_header: None, secrets: secrets() },
        Scheme::Bearer { tokens: vec![unreachable()] },
    ];
    for scheme in &schemes {
        match signature::verify(scheme, &headers[..], body, now) {
            Ok(verified) => panic!("a made-up delivery verified: {verified:?}"),
            Err(refusal) => {
                assert!(matches!(refusal.status(), 400 | 401 | 431), "{refusal}");
                assert!(!refusal.code().is_empty());
            }
        }
    }

    if let Ok(notification) = alertmanager::decode(body) {
        assert_eq!(notification.version, alertmanager::VERSION);
        assert!(notification.alerts.len() <= alertmanager::MAX_ALERTS);
    }
});
