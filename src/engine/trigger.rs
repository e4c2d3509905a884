//! What a webhook delivery does to incidents, by a runbook's triggers: the rules, without the
//! server, the store or the clock.
//!
//! A delivery is read once per trigger listening to its source ([`read`]): an Alertmanager
//! notification gives each alert on its own as `alert` (the group as `payload`), any other JSON is
//! `payload`. For each, [`key`] says whether the trigger acts (its `when` holds) and on which
//! incident key; the caller looks up the incident of the runbook open with that key, and
//! [`decide`] says what the delivery does: start an incident, attach a repeated alert to the open
//! one, record a resolved alert on it, satisfy a signal gate, add evidence, or nothing (and why).
//! The runtime's inbox and the drill both apply these rules; neither has a copy of its own.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::Command;
use super::directory::TRIGGER_PREFIX;
use super::scope;
use crate::expr::Condition;
use crate::runbook::model::{PayloadFormat, Trigger, TriggerAction};

/// What a trigger's expressions read: `payload` and `headers`, and `alert` with `format:
/// alertmanager`.
pub type Variables = BTreeMap<&'static str, Value>;

/// Request headers never kept with a delivery, whatever its source, so that no trigger reads them:
/// they carry credentials. The server also leaves out its source's signature header, and a drill
/// leaves these out of a scripted delivery as the server would.
pub const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Go's zero time, which Alertmanager sends as `endsAt` for an alert that has not ended.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A payload a trigger's format cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the payload is not an Alertmanager notification: it has no `alerts` list")]
    NoAlerts,
    #[error("the payload is not an Alertmanager notification: alert {index} is not an object")]
    NotAnAlert { index: usize },
}

/// What a delivery did, as a receipt tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Did {
    Started,
    Attached,
    Resolved,
    Satisfied,
    Noted,
    /// Applied before: the store already holds this delivery's action.
    Duplicate,
    Ignored,
}

/// Why a trigger does nothing with a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("`{condition}` is false")]
    Unmet { condition: String },
    #[error("{0}")]
    Condition(String),
    #[error("its key: {0}")]
    Key(String),
    #[error("input `{name}`: {why}")]
    Input { name: String, why: String },
    #[error("its note: {0}")]
    Note(String),
    #[error("no open incident has key `{key}`")]
    NoIncident { key: String },
    /// A resolved alert never starts an incident.
    #[error("the alert is resolved and no open incident has key `{key}`; a resolved alert starts none")]
    ResolvedWithoutIncident { key: String },
}

/// What one trigger does with one delivery (one alert of it, with `format: alertmanager`).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Open an incident of the trigger's runbook with the key and these inputs.
    Start { key: String, inputs: BTreeMap<String, Value> },
    /// Record a repeated alert on the incident it opened.
    Attach { incident: String, note: String },
    /// Record a resolved alert on the incident its firing opened.
    Resolve { incident: String, note: String },
    /// Give the open incident's signal gate its signal.
    Satisfy { incident: String, phase: String, gate: String },
    /// Add the note to the open incident's timeline.
    Evidence { incident: String, note: String },
    /// Nothing; `incident` is the open incident it concerned, if any.
    Ignore { incident: Option<String>, why: Ignored },
}

impl Decision {
    /// What the decision is called in a receipt.
    pub fn did(&self) -> Did {
        match self {
            Decision::Start { .. } => Did::Started,
            Decision::Attach { .. } => Did::Attached,
            Decision::Resolve { .. } => Did::Resolved,
            Decision::Satisfy { .. } => Did::Satisfied,
            Decision::Evidence { .. } => Did::Noted,
            Decision::Ignore { .. } => Did::Ignored,
        }
    }

    /// The open incident it acts on (none for a start, which makes one).
    pub fn incident(&self) -> Option<&str> {
        match self {
            Decision::Start { .. } => None,
            Decision::Attach { incident, .. }
            | Decision::Resolve { incident, .. }
            | Decision::Satisfy { incident, .. }
            | Decision::Evidence { incident, .. } => Some(incident),
            Decision::Ignore { incident, .. } => incident.as_deref(),
        }
    }

    /// What it asks of its open incident, for the runtime to submit.
    pub fn command(&self) -> Option<Command> {
        match self {
            Decision::Attach { note, .. } | Decision::Resolve { note, .. } | Decision::Evidence { note, .. } => {
                Some(Command::Note { text: note.clone() })
            }
            Decision::Satisfy { phase, gate, .. } => {
                Some(Command::Signal { phase: phase.clone(), gate: gate.clone(), note: None })
            }
            Decision::Start { .. } | Decision::Ignore { .. } => None,
        }
    }
}

/// Who a trigger acts as: `trigger:ID`.
pub fn actor(trigger: &Trigger) -> String {
    format!("{TRIGGER_PREFIX}{}", trigger.id)
}

/// What a delivery gives a trigger of `format` to read: one set of variables per alert of an
/// Alertmanager notification (none when it has no alert), one for any other JSON. `headers` are the
/// delivery's request headers as kept (lowercase names), the same in every set.
pub fn read(
    format: &PayloadFormat,
    payload: &Value,
    headers: &BTreeMap<String, String>,
) -> Result<Vec<Variables>, Error> {
    let headers = json!(headers);
    match format {
        PayloadFormat::Json => Ok(vec![BTreeMap::from([("payload", payload.clone()), ("headers", headers)])]),
        PayloadFormat::Alertmanager => {
            let alerts = payload.get("alerts").and_then(Value::as_array).ok_or(Error::NoAlerts)?;
            let mut read = Vec::with_capacity(alerts.len());
            for (index, alert) in alerts.iter().enumerate() {
                let alert = alert_variable(alert).ok_or(Error::NotAnAlert { index })?;
                read.push(BTreeMap::from([
                    ("alert", alert),
                    ("payload", payload.clone()),
                    ("headers", headers.clone()),
                ]));
            }
            Ok(read)
        }
    }
}

/// An alert as a trigger's expressions read it: Alertmanager's own field names, times in UTC
/// (`endsAt` null while it fires), labels and annotations always maps.
fn alert_variable(alert: &Value) -> Option<Value> {
    let fields = alert.as_object()?;
    let field = |name: &str| fields.get(name).cloned().unwrap_or(Value::Null);
    let map = |name: &str| fields.get(name).filter(|value| value.is_object()).cloned().unwrap_or_else(|| json!({}));
    let time = |name: &str| match fields.get(name) {
        Some(Value::String(text)) if text == GO_ZERO_TIME => Value::Null,
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|time| json!(time.with_timezone(&Utc)))
            .unwrap_or_else(|_| Value::String(text.clone())),
        Some(other) => other.clone(),
        None => Value::Null,
    };
    Some(json!({
        "status": field("status"),
        "labels": map("labels"),
        "annotations": map("annotations"),
        "startsAt": time("startsAt"),
        "endsAt": time("endsAt"),
        "generatorURL": field("generatorURL"),
        "fingerprint": field("fingerprint"),
    }))
}

/// Whether the variables hold an alert that has resolved.
fn is_resolved(variables: &Variables) -> bool {
    variables.get("alert").is_some_and(|alert| alert["status"] == "resolved")
}

/// The variables a trigger's `when` and `key` are asked with. A resolved alert belongs to the
/// incident its firing started, so a start trigger is asked whether it would have started on the
/// alert as it fired, and computes the key it computed then.
fn asked(trigger: &Trigger, variables: &Variables) -> Variables {
    let mut asked = variables.clone();
    if is_resolved(variables)
        && matches!(trigger.action, TriggerAction::Start { .. })
        && let Some(alert) = asked.get_mut("alert")
    {
        alert["status"] = json!("firing");
    }
    asked
}

/// Whether `trigger` acts on `variables`, and with which incident key: its `when` must hold and
/// its `key` must evaluate (a key that is not text is its JSON).
pub fn key(trigger: &Trigger, variables: &Variables) -> Result<String, Ignored> {
    let asked = asked(trigger, variables);
    if let Some(when) = &trigger.when {
        match scope::holds(when, &asked) {
            Ok(true) => {}
            Ok(false) => return Err(Ignored::Unmet { condition: when.source().to_string() }),
            Err(why) => return Err(Ignored::Condition(why)),
        }
    }
    match scope::evaluate(&trigger.key, &asked) {
        Ok(Value::String(key)) => Ok(key),
        Ok(other) => Ok(other.to_string()),
        Err(why) => Err(Ignored::Key(why)),
    }
}

/// What `trigger` does with `variables`, whose key ([`key`]) is `key`, given `open`: the id of the
/// incident of the trigger's runbook open with that key, if there is one.
pub fn decide(trigger: &Trigger, variables: &Variables, key: &str, open: Option<&str>) -> Decision {
    let resolved = is_resolved(variables);
    let Some(incident) = open else {
        let why = match &trigger.action {
            TriggerAction::Start { .. } if resolved => Ignored::ResolvedWithoutIncident { key: key.to_string() },
            TriggerAction::Start { inputs } => return start(inputs, variables, key),
            TriggerAction::Satisfy { .. } | TriggerAction::Evidence { .. } => {
                Ignored::NoIncident { key: key.to_string() }
            }
        };
        return Decision::Ignore { incident: None, why };
    };
    let incident = incident.to_string();
    match &trigger.action {
        TriggerAction::Start { .. } if resolved => Decision::Resolve { incident, note: alert_note(variables, true) },
        TriggerAction::Start { .. } => Decision::Attach { incident, note: alert_note(variables, false) },
        TriggerAction::Satisfy { phase, gate } => {
            Decision::Satisfy { incident, phase: phase.clone(), gate: gate.clone() }
        }
        TriggerAction::Evidence { note } => match scope::evaluate(note, variables) {
            Ok(Value::String(note)) => Decision::Evidence { incident, note },
            Ok(other) => Decision::Evidence { incident, note: other.to_string() },
            Err(why) => Decision::Ignore { incident: Some(incident), why: Ignored::Note(why) },
        },
    }
}

/// A start, with the inputs its expressions give; ignored when one does not evaluate.
fn start(inputs: &[(String, Condition)], variables: &Variables, key: &str) -> Decision {
    let mut values = BTreeMap::new();
    for (name, expression) in inputs {
        match scope::evaluate(expression, variables) {
            Ok(value) => values.insert(name.clone(), value),
            Err(why) => {
                return Decision::Ignore { incident: None, why: Ignored::Input { name: name.clone(), why } };
            }
        };
    }
    Decision::Start { key: key.to_string(), inputs: values }
}

/// The note that records a repeated or resolved alert on the incident it opened.
fn alert_note(variables: &Variables, resolved: bool) -> String {
    let alert = variables.get("alert").or_else(|| variables.get("payload")).cloned().unwrap_or_default();
    let name = alert["labels"]["alertname"].as_str().unwrap_or("the alert");
    let fingerprint = alert["fingerprint"].as_str().unwrap_or("?");
    if resolved {
        format!("{name} resolved (fingerprint {fingerprint})")
    } else {
        format!("{name} fired again (fingerprint {fingerprint})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One trigger of each kind, on two sources.
    const RUNBOOK: &str = r#"
apiVersion: phasegate/v1
kind: Runbook
id: triggered
title: Triggered
inputs:
  alert_name: { type: string }
  severity: { type: string, default: high }
phases:
  - id: contain
    exit:
      - { id: hosts-isolated, signal: {} }
triggers:
  - id: page
    source: am
    format: alertmanager
    when: alert.status == "firing" && alert.labels.severity == "page"
    key: alert.labels.alertname
    start:
      inputs:
        alert_name: alert.labels.alertname
        severity: alert.labels.missing_label
  - id: isolated
    source: edr
    when: payload.event == "isolated"
    key: payload.case
    satisfy: contain/hosts-isolated
  - id: finding
    source: edr
    when: has(payload.finding)
    key: payload.case
    evidence:
      note: '"EDR: " + payload.finding'
  - id: prod-only
    source: siem
    when: headers["x-siem-env"] == "prod"
    key: payload.case
    start:
      inputs:
        alert_name: '"from " + headers["user-agent"]'
"#;

    struct Templates;
    impl crate::runbook::Templates for Templates {
        fn lookup(&self, _name: &str) -> crate::runbook::TemplateInfo {
            crate::runbook::TemplateInfo::Found { variables: Vec::new() }
        }
    }

    fn alert(status: &str, severity: &str, extra: Value) -> Value {
        let mut labels = json!({ "alertname": "DbRead", "severity": severity });
        if let (Some(labels), Value::Object(extra)) = (labels.as_object_mut(), extra) {
            labels.extend(extra);
        }
        json!({ "version": "4", "alerts": [{ "status": status, "labels": labels, "fingerprint": "f1",
            "startsAt": "2026-11-24T03:14:00+01:00", "endsAt": "0001-01-01T00:00:00Z" }] })
    }

    /// What trigger `id` decides for the first thing `payload` gives it, with `open` the incident
    /// open with its key: the decision, or why it did not act.
    fn decided(id: &str, payload: Value, open: Option<&str>) -> Decision {
        decided_with(id, payload, &[], open)
    }

    /// [`decided`], for a delivery with these headers.
    fn decided_with(id: &str, payload: Value, headers: &[(&str, &str)], open: Option<&str>) -> Decision {
        let runbook = crate::runbook::parse(RUNBOOK, &Templates).unwrap();
        let trigger = runbook.triggers().iter().find(|trigger| trigger.id == id).unwrap();
        let headers = headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        let variables = read(&trigger.format, &payload, &headers).unwrap().remove(0);
        match key(trigger, &variables) {
            Ok(key) => decide(trigger, &variables, &key, open),
            Err(why) => Decision::Ignore { incident: None, why },
        }
    }

    #[test]
    fn each_delivery_is_decided_by_its_trigger_and_the_open_incident() {
        let note = |text: &str| text.to_string();
        let inputs = |severity: Value| {
            BTreeMap::from([("alert_name".to_string(), json!("DbRead")), ("severity".into(), severity)])
        };
        let table: Vec<(&str, &str, Value, Option<&str>, Decision)> = vec![
            (
                "a firing alert with nothing open starts an incident",
                "page",
                alert("firing", "page", json!({ "missing_label": "critical" })),
                None,
                Decision::Start { key: "DbRead".into(), inputs: inputs(json!("critical")) },
            ),
            (
                "a firing alert with its incident open attaches to it",
                "page",
                alert("firing", "page", json!({})),
                Some("inc-1"),
                Decision::Attach { incident: "inc-1".into(), note: note("DbRead fired again (fingerprint f1)") },
            ),
            (
                "a resolved alert is recorded on the incident its firing opened",
                "page",
                alert("resolved", "page", json!({})),
                Some("inc-1"),
                Decision::Resolve { incident: "inc-1".into(), note: note("DbRead resolved (fingerprint f1)") },
            ),
            (
                "a resolved alert with nothing open starts nothing",
                "page",
                alert("resolved", "page", json!({ "missing_label": "critical" })),
                None,
                Decision::Ignore { incident: None, why: Ignored::ResolvedWithoutIncident { key: "DbRead".into() } },
            ),
            (
                "an alert its `when` turns away is ignored",
                "page",
                alert("firing", "ticket", json!({})),
                Some("inc-1"),
                Decision::Ignore {
                    incident: None,
                    why: Ignored::Unmet {
                        condition: r#"alert.status == "firing" && alert.labels.severity == "page""#.into(),
                    },
                },
            ),
            (
                "an input that does not evaluate starts nothing",
                "page",
                alert("firing", "page", json!({})),
                None,
                Decision::Ignore {
                    incident: None,
                    why: Ignored::Input {
                        name: "severity".into(),
                        why: "`alert.labels.missing_label` failed: No such key: missing_label".into(),
                    },
                },
            ),
            (
                "a satisfy trigger signals the open incident's gate",
                "isolated",
                json!({ "event": "isolated", "case": 7 }),
                Some("inc-1"),
                Decision::Satisfy { incident: "inc-1".into(), phase: "contain".into(), gate: "hosts-isolated".into() },
            ),
            (
                "a satisfy trigger with nothing open does nothing",
                "isolated",
                json!({ "event": "isolated", "case": 7 }),
                None,
                Decision::Ignore { incident: None, why: Ignored::NoIncident { key: "7".into() } },
            ),
            (
                "an evidence trigger notes the open incident",
                "finding",
                json!({ "finding": "beacon", "case": "c-9" }),
                Some("inc-1"),
                Decision::Evidence { incident: "inc-1".into(), note: note("EDR: beacon") },
            ),
            (
                "an evidence note that does not evaluate is ignored on its incident",
                "finding",
                json!({ "finding": 3, "case": "c-9" }),
                Some("inc-1"),
                Decision::Ignore {
                    incident: Some("inc-1".into()),
                    why: Ignored::Note(
                        "`\"EDR: \" + payload.finding` failed: Unsupported binary operator 'add': String(\"EDR: \"), UInt(3)"
                            .into(),
                    ),
                },
            ),
            (
                "a key that does not evaluate is ignored",
                "finding",
                json!({ "finding": "beacon" }),
                Some("inc-1"),
                Decision::Ignore {
                    incident: None,
                    why: Ignored::Key("`payload.case` failed: No such key: case".into()),
                },
            ),
        ];
        for (what, trigger, payload, open, expected) in table {
            assert_eq!(decided(trigger, payload, open), expected, "{what}");
        }
    }

    #[test]
    fn a_trigger_reads_the_delivery_headers() {
        let payload = || json!({ "case": "c-1" });
        let prod = [("x-siem-env", "prod"), ("user-agent", "siem/7")];
        let inputs = BTreeMap::from([("alert_name".to_string(), json!("from siem/7"))]);
        assert_eq!(
            decided_with("prod-only", payload(), &prod, None),
            Decision::Start { key: "c-1".into(), inputs },
            "a delivery with the header starts an incident"
        );
        let unmet = Ignored::Unmet { condition: r#"headers["x-siem-env"] == "prod""#.into() };
        assert_eq!(
            decided_with("prod-only", payload(), &[("x-siem-env", "staging")], None),
            Decision::Ignore { incident: None, why: unmet },
            "another value turns it away"
        );
        let Decision::Ignore { why: Ignored::Condition(why), .. } = decided("prod-only", payload(), None) else {
            panic!("a delivery without the header is ignored")
        };
        assert!(why.contains("x-siem-env"), "{why}");
        let variables = read(&PayloadFormat::Alertmanager, &alert("firing", "page", json!({})), &BTreeMap::new());
        assert_eq!(variables.unwrap()[0]["headers"], json!({}), "an alert's expressions read headers too");
    }

    #[test]
    fn decisions_name_what_they_did_and_what_they_ask() {
        let resolve = Decision::Resolve { incident: "i".into(), note: "n".into() };
        assert_eq!((resolve.did(), resolve.incident()), (Did::Resolved, Some("i")));
        assert_eq!(resolve.command(), Some(Command::Note { text: "n".into() }));
        let ignore = Decision::Ignore { incident: None, why: Ignored::NoIncident { key: "k".into() } };
        assert_eq!((ignore.did(), ignore.command()), (Did::Ignored, None));
        assert_eq!(serde_json::to_value(Did::Satisfied).unwrap(), json!("satisfied"));
    }

    #[test]
    fn an_alertmanager_payload_is_read_alert_by_alert_with_its_times_in_utc() {
        let payload = alert("firing", "page", json!({}));
        let alerts = read(&PayloadFormat::Alertmanager, &payload, &BTreeMap::new()).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0]["alert"]["startsAt"], json!("2026-11-24T02:14:00Z"));
        assert_eq!(alerts[0]["alert"]["endsAt"], Value::Null, "Go's zero time is no end");
        assert_eq!(alerts[0]["payload"], payload);
        let table = [
            (json!({ "version": "4" }), Error::NoAlerts),
            (json!({ "alerts": [{}, 3] }), Error::NotAnAlert { index: 1 }),
        ];
        for (payload, expected) in table {
            assert_eq!(read(&PayloadFormat::Alertmanager, &payload, &BTreeMap::new()), Err(expected), "{payload}");
        }
        let headers = BTreeMap::from([("x-env".to_string(), "prod".to_string())]);
        assert_eq!(
            read(&PayloadFormat::Json, &json!([1]), &headers).unwrap(),
            vec![BTreeMap::from([("payload", json!([1])), ("headers", json!({ "x-env": "prod" }))])]
        );
    }
}
