//! Prometheus Alertmanager's webhook payload, version 4: a group of alerts, each firing or
//! resolved, each with its fingerprint.
//!
//! [`decode`] reads a body that has already been authenticated. It refuses other versions by name
//! (Grafana's look-alike payload says version 1), tolerates fields it does not know (Alertmanager
//! adds them), and caps the body's size and the number of alerts. Set `max_alerts` in
//! Alertmanager's `webhook_config` to [`MAX_ALERTS`] or fewer, so that it truncates a large group
//! (and says so in `truncatedAlerts`) instead of sending one this decoder refuses: Alertmanager
//! drops a notification answered with a 4xx.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};

/// The largest body read, in bytes. A thousand alerts with generous labels fit well within it.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The most alerts one notification may carry.
pub const MAX_ALERTS: usize = 1000;
/// The only payload version understood.
pub const VERSION: &str = "4";
/// How much of a JSON error's message is kept: serde quotes the offending value, which could be
/// most of the body.
const MAX_MESSAGE: usize = 200;
/// Go's zero time, `0001-01-01T00:00:00Z`, which Alertmanager sends as `endsAt` for an alert
/// that has not ended.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// One webhook notification: a group of alerts routed to one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an Alertmanager webhook notification (a JSON object)")]
pub struct Notification {
    /// Always [`VERSION`] once decoded.
    pub version: String,
    /// Identifies the group the alerts belong to, across notifications.
    #[serde(default)]
    pub group_key: String,
    /// How many alerts Alertmanager left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` when at least one alert fires, else `resolved`.
    pub status: Status,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// The sending Alertmanager's own address.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an alert (a JSON object)")]
pub struct Alert {
    pub status: Status,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// When the alert resolved; `None` while it fires (Alertmanager sends Go's zero time).
    #[serde(default, deserialize_with = "go_time")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// A hash of the alert's labels: the same alert has the same fingerprint in every
    /// notification, which is what deduplicates a repeated alert.
    pub fingerprint: String,
}

/// Whether an alert, or a group, fires or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// Why a body is not an Alertmanager notification this decoder accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the payload is {size} bytes, more than the {MAX_BODY} allowed")]
    TooLarge { size: usize },
    #[error("the payload is not an Alertmanager notification: {message}")]
    Json { message: String },
    #[error("the payload has no `version`; Alertmanager's webhook payloads have version \"4\"")]
    MissingVersion,
    #[error("the payload's version is {found}; only Alertmanager's version \"4\" is understood")]
    UnsupportedVersion { found: String },
    #[error(
        "the payload has {count} alerts, more than the {MAX_ALERTS} allowed (set `max_alerts` in the webhook_config)"
    )]
    TooManyAlerts { count: usize },
    #[error("alert {index} has an empty `fingerprint`")]
    EmptyFingerprint { index: usize },
}

impl Error {
    /// A stable code for JSON errors and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "payload_too_large",
            Error::Json { .. } => "malformed_payload",
            Error::MissingVersion | Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::TooManyAlerts { .. } => "too_many_alerts",
            Error::EmptyFingerprint { .. } => "malformed_payload",
        }
    }
}

/// What is read before the whole notification: its version and how many alerts it holds, so that
/// another version or an oversized group is refused by name rather than by whatever field first
/// fails to fit. Elements of `alerts` are skipped unread (`IgnoredAny` takes no memory).
#[derive(Deserialize)]
#[serde(expecting = "an Alertmanager webhook notification (a JSON object)")]
struct Probe {
    version: Option<serde_json::Value>,
    alerts: Option<Vec<IgnoredAny>>,
}

/// Decodes an authenticated body into a notification of version 4.
pub fn decode(body: &[u8]) -> Result<Notification, Error> {
    if body.len() > MAX_BODY {
        return Err(Error::TooLarge { size: body.len() });
    }
    // Serde would read a struct from an array of its fields in order too; a notification is an
    // object, and saying so is clearer than what the array's fields would fail on.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::Json { message: "expected a JSON object".into() });
    }
    let probe: Probe = serde_json::from_slice(body).map_err(json)?;
    match probe.version {
        None | Some(serde_json::Value::Null) => return Err(Error::MissingVersion),
        Some(serde_json::Value::String(version)) if version == VERSION => {}
        Some(other) => return Err(Error::UnsupportedVersion { found: shorten(other.to_string()) }),
    }
    let count = probe.alerts.map_or(0, |alerts| alerts.len());
    if count > MAX_ALERTS {
        return Err(Error::TooManyAlerts { count });
    }
    let notification: Notification = serde_json::from_slice(body).map_err(json)?;
    if let Some(index) = notification.alerts.iter().position(|alert| alert.fingerprint.is_empty()) {
        return Err(Error::EmptyFingerprint { index });
    }
    Ok(notification)
}

fn json(error: serde_json::Error) -> Error {
    Error::Json { message: shorten(error.to_string()) }
}

/// Cuts a message that quotes input to [`MAX_MESSAGE`] bytes, at a character boundary.
fn shorten(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

fn go_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let time = Option::<DateTime<Utc>>::deserialize(deserializer)?;
    Ok(time.filter(|time| time.timestamp() != GO_ZERO_TIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification as Alertmanager 0.27 sends it: two alerts of one group, one still firing and
    /// one resolved, and a field this decoder does not know.
    const SAMPLE: &str = r#"{
      "receiver": "phasegate",
      "status": "firing",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "CheckoutErrors", "service": "checkout", "severity": "critical"},
          "annotations": {"summary": "Checkout error rate above 5%"},
          "startsAt": "2024-05-02T09:14:05.123456789Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate%28errors%5B5m%5D%29\u0026g0.tab=1",
          "fingerprint": "5ed8ac9f0a3c6a1e"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "CheckoutErrors", "service": "checkout", "severity": "warning"},
          "annotations": {"summary": "Checkout error rate above 1%"},
          "startsAt": "2024-05-02T08:59:05Z",
          "endsAt": "2024-05-02T09:20:05+02:00",
          "generatorURL": "",
          "fingerprint": "0b7d1e2f3a4c5d6e"
        }
      ],
      "groupLabels": {"alertname": "CheckoutErrors"},
      "commonLabels": {"alertname": "CheckoutErrors", "service": "checkout"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager.example:9093",
      "version": "4",
      "groupKey": "{}/{service=\"checkout\"}:{alertname=\"CheckoutErrors\"}",
      "truncatedAlerts": 0,
      "addedInAFutureRelease": {"nested": [1, 2]}
    }"#;

    #[test]
    fn decodes_a_realistic_notification() {
        let notification = decode(SAMPLE.as_bytes()).unwrap();
        assert_eq!(notification.status, Status::Firing);
        assert_eq!(notification.group_key, "{}/{service=\"checkout\"}:{alertname=\"CheckoutErrors\"}");
        assert_eq!(notification.group_labels["alertname"], "CheckoutErrors");
        assert_eq!(notification.external_url, "http://alertmanager.example:9093");
        let [firing, resolved] = &notification.alerts[..] else { panic!("two alerts") };
        assert_eq!((firing.status, firing.fingerprint.as_str()), (Status::Firing, "5ed8ac9f0a3c6a1e"));
        assert_eq!(firing.ends_at, None, "Go's zero time is no end");
        assert_eq!(firing.starts_at.to_rfc3339(), "2024-05-02T09:14:05.123456789+00:00");
        assert!(firing.generator_url.contains("&g0.tab=1"));
        assert_eq!(resolved.status, Status::Resolved);
        assert_eq!(resolved.ends_at.map(|t| t.to_rfc3339()), Some("2024-05-02T07:20:05+00:00".into()));
        assert_eq!(resolved.labels["severity"], "warning");
    }

    #[test]
    fn go_zero_time_is_the_first_second_of_year_one() {
        let zero: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(zero.timestamp(), GO_ZERO_TIME);
    }

    #[test]
    fn refusals() {
        let with = |from: &str, to: &str| {
            assert!(SAMPLE.contains(from), "{from}");
            SAMPLE.replacen(from, to, 1)
        };
        let many = format!(
            r#"{{"version":"4","status":"firing","alerts":[{}]}}"#,
            vec![r#"{"status":"firing","startsAt":"2024-05-02T09:14:05Z","fingerprint":"f"}"#; MAX_ALERTS + 1]
                .join(",")
        );
        let cases: Vec<(&str, String, Error)> = vec![
            ("version 1 (Grafana)", with(r#""version": "4""#, r#""version": "1""#), unsupported("\"1\"")),
            ("number 4", with(r#""version": "4""#, r#""version": 4"#), unsupported("4")),
            ("no version", with(r#""version": "4","#, ""), Error::MissingVersion),
            ("null version", with(r#""version": "4""#, r#""version": null"#), Error::MissingVersion),
            (
                "long version",
                with(r#""version": "4""#, &format!(r#""version": "{}""#, "9".repeat(300))),
                Error::UnsupportedVersion { found: format!("\"{}…", "9".repeat(199)) },
            ),
            ("too many alerts", many, Error::TooManyAlerts { count: MAX_ALERTS + 1 }),
            (
                "empty fingerprint",
                with(r#""fingerprint": "0b7d1e2f3a4c5d6e""#, r#""fingerprint": """#),
                Error::EmptyFingerprint { index: 1 },
            ),
            ("not JSON", "{\"version\": \"4\",".into(), json_error("EOF while parsing a value at line 1 column 16")),
            (
                "an array",
                r#" ["4", "", 0, "firing", "r", {}, {}, {}, "", []]"#.into(),
                json_error("expected a JSON object"),
            ),
            (
                "duplicate version",
                with(r#""version": "4""#, r#""version": "4", "version": "5""#),
                json_error("duplicate field `version` at line 28 column 31"),
            ),
            (
                "unknown status",
                with(r#""status": "resolved""#, r#""status": "acknowledged""#),
                json_error("unknown variant `acknowledged`, expected `firing` or `resolved` at line 15 column 34"),
            ),
            (
                "no fingerprint",
                with(r#","fingerprint": "5ed8ac9f0a3c6a1e""#.trim_start_matches(','), r#""fp": 1"#),
                json_error("missing field `fingerprint` at line 13 column 9"),
            ),
            (
                "bad time",
                with("2024-05-02T08:59:05Z", "yesterday"),
                json_error("input contains invalid characters at line 18 column 33"),
            ),
        ];
        let mut failures = Vec::new();
        for (name, body, expected) in cases {
            match decode(body.as_bytes()) {
                Err(error) if error == expected => {}
                outcome => failures.push(format!("{name}: expected {expected:?}, got {outcome:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn unsupported(found: &str) -> Error {
        Error::UnsupportedVersion { found: found.into() }
    }

    fn json_error(message: &str) -> Error {
        Error::Json { message: message.into() }
    }

    #[test]
    fn oversized_body_is_refused_unread() {
        let body = vec![b' '; MAX_BODY + 1];
        assert_eq!(decode(&body), Err(Error::TooLarge { size: MAX_BODY + 1 }));
    }

    #[test]
    fn long_error_messages_are_cut() {
        let body = with_status(&"x".repeat(10_000));
        let Err(Error::Json { message }) = decode(body.as_bytes()) else { panic!("refused") };
        assert!(message.len() <= MAX_MESSAGE + '…'.len_utf8(), "{message}");
        assert!(shorten("é".repeat(150)).ends_with("é…"), "cut at a character boundary");
    }

    fn with_status(status: &str) -> String {
        format!(r#"{{"version":"4","status":"{status}","alerts":[]}}"#)
    }
}
