//! Standard Webhooks interoperability: deliveries signed by the reference library from PyPI
//! (`standardwebhooks`) verify here, and what phasegate signs verifies there. `scripts/test`
//! installs the package; without it these tests skip, saying so.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use phasegate::server::webhooks::signature::{self, IdSource, Refusal, Scheme, Secret, Verified};

use crate::support::python_or_skip;

/// Two secrets as a Standard Webhooks sender shows them (`whsec_` and base64 of 32 bytes).
const SECRET: &str = "whsec_cGhhc2VnYXRlIGludGVyb3AgdGVzdCBzZWNyZXQgIzE=";
const ROTATED: &str = "whsec_cGhhc2VnYXRlIGludGVyb3AgdGVzdCBzZWNyZXQgIzI=";
const TIMESTAMP: i64 = 1_714_641_245;
/// Not ASCII, so that both sides must sign the same UTF-8 bytes.
const PAYLOAD: &str = r#"{"alert": "Checkout errors é", "summary": "café ☕ down", "n": 1}"#;

/// Runs a Python script with arguments and the payload on standard input; returns whether it
/// succeeded and its standard output.
fn python(python: &Path, script: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let preamble = "import sys\nfrom standardwebhooks.webhooks import Webhook\n";
    let mut child = Command::new(python)
        .arg("-c")
        .arg(format!("{preamble}{script}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs (`python_or_skip` found it)");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("Traceback"), "{stderr}");
    (output.status.success(), String::from_utf8(output.stdout).unwrap().trim().to_owned())
}

/// The reference library's signature of the payload on standard input.
fn library_signs(py: &Path, secret: &str, msg_id: &str, timestamp: i64) -> String {
    let script = "from datetime import datetime, timezone\n\
                  secret, msg_id, timestamp = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
                  payload = sys.stdin.buffer.read().decode('utf-8')\n\
                  when = datetime.fromtimestamp(timestamp, tz=timezone.utc)\n\
                  print(Webhook(secret).sign(msg_id, when, payload))\n";
    let (succeeded, signature) = python(py, script, &[secret, msg_id, &timestamp.to_string()], PAYLOAD);
    assert!(succeeded, "the library could not sign");
    signature
}

/// Whether the reference library accepts a delivery (it checks the time against its own clock).
fn library_accepts(py: &Path, secret: &str, msg_id: &str, timestamp: i64, signature: &str, payload: &str) -> bool {
    let script = "from standardwebhooks.webhooks import WebhookVerificationError\n\
                  secret, msg_id, timestamp, signature = sys.argv[1:5]\n\
                  headers = {'webhook-id': msg_id, 'webhook-timestamp': timestamp, 'webhook-signature': signature}\n\
                  try:\n    Webhook(secret).verify(sys.stdin.buffer.read(), headers)\n\
                  except WebhookVerificationError as error:\n    print(error)\n    sys.exit(1)\n\
                  print('verified')\n";
    let (accepted, output) = python(py, script, &[secret, msg_id, &timestamp.to_string(), signature], payload);
    assert_eq!(output, if accepted { "verified" } else { "No matching signature found" }, "{output}");
    accepted
}

fn scheme(secrets: &[&str]) -> Scheme {
    Scheme::StandardWebhooks { secrets: secrets.iter().map(|s| Secret::standard_webhooks(s).unwrap()).collect() }
}

fn headers(msg_id: &str, timestamp: i64, signature: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Webhook-Id", msg_id.to_owned()),
        ("Webhook-Timestamp", timestamp.to_string()),
        ("Webhook-Signature", signature.to_owned()),
    ]
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

#[test]
fn deliveries_signed_by_the_reference_library_verify() {
    let Some(py) = python_or_skip(&["standardwebhooks"]) else { return };
    let signature = library_signs(&py, SECRET, "msg_2fUvDpSq1cOq3g", TIMESTAMP);
    assert!(signature.starts_with("v1,"), "{signature}");
    let delivery = headers("msg_2fUvDpSq1cOq3g", TIMESTAMP, &signature);
    let verified = signature::verify(&scheme(&[SECRET]), &delivery, PAYLOAD.as_bytes(), at(TIMESTAMP + 299));
    assert_eq!(verified, Ok(Verified { delivery_id: "msg_2fUvDpSq1cOq3g".into(), id_source: IdSource::Signed }));

    let tampered = PAYLOAD.replace('1', "2");
    let refused = signature::verify(&scheme(&[SECRET]), &delivery, tampered.as_bytes(), at(TIMESTAMP));
    assert_eq!(refused, Err(Refusal::BadSignature));
    let late = signature::verify(&scheme(&[SECRET]), &delivery, PAYLOAD.as_bytes(), at(TIMESTAMP + 301));
    assert_eq!(late, Err(Refusal::Stale { age_seconds: 301 }));
}

/// A sender rotating its secret signs with both; a receiver that knows either accepts.
#[test]
fn rotation_with_signatures_from_the_reference_library() {
    let Some(py) = python_or_skip(&["standardwebhooks"]) else { return };
    let old = library_signs(&py, SECRET, "msg_rotation", TIMESTAMP);
    let new = library_signs(&py, ROTATED, "msg_rotation", TIMESTAMP);
    let delivery = headers("msg_rotation", TIMESTAMP, &format!("{old} {new}"));
    for secrets in [&[SECRET][..], &[ROTATED], &[ROTATED, SECRET]] {
        let verified = signature::verify(&scheme(secrets), &delivery, PAYLOAD.as_bytes(), at(TIMESTAMP));
        assert!(verified.is_ok(), "{secrets:?}: {verified:?}");
    }
    let only_old = headers("msg_rotation", TIMESTAMP, &old);
    let refused = signature::verify(&scheme(&[ROTATED]), &only_old, PAYLOAD.as_bytes(), at(TIMESTAMP));
    assert_eq!(refused, Err(Refusal::BadSignature));
}

#[test]
fn what_phasegate_signs_verifies_with_the_reference_library() {
    let Some(py) = python_or_skip(&["standardwebhooks"]) else { return };
    // The library checks the timestamp against its own clock, so this one signs for now.
    let now = Utc::now().timestamp();
    let secret = Secret::standard_webhooks(SECRET).unwrap();
    let signature = signature::sign_standard_webhooks(&secret, "msg_from_phasegate", now, PAYLOAD.as_bytes());
    assert!(library_accepts(&py, SECRET, "msg_from_phasegate", now, &signature, PAYLOAD));
    assert!(!library_accepts(&py, SECRET, "msg_from_phasegate", now, &signature, &PAYLOAD.replace('1', "2")));
    assert!(!library_accepts(&py, ROTATED, "msg_from_phasegate", now, &signature, PAYLOAD));
    assert_eq!(signature, library_signs(&py, SECRET, "msg_from_phasegate", now), "both sides sign alike");
}
