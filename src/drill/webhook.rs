//! What a scripted webhook delivery asks of the drill's incident, by the runbook's triggers.
//!
//! The server's inbox (`server::webhooks::inbox`) makes the same decisions, but on stored
//! deliveries through the server's `App`, with wire types that live only in the server; a drill
//! has one incident and no server, so this applies the same rules to a payload directly: every
//! trigger listening to the source reads the payload (Alertmanager's format once per alert, with
//! Alertmanager's field names; JSON once), its `when` must hold and its `key` must be the
//! incident's; then a start trigger notes the alert again (or its resolution), a satisfy trigger
//! signals its gate and an evidence trigger adds its note. The signature check is not rehearsed.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::engine::directory::TRIGGER_PREFIX;
use crate::engine::{Command, Incident, scope};
use crate::runbook::Runbook;
use crate::runbook::model::{PayloadFormat, TriggerAction};

/// What one trigger does with a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Asks the incident this, as `actor` (`trigger:ID`).
    Command { trigger: String, actor: String, command: Command },
    /// Does nothing, and says why.
    Ignored { trigger: String, why: String },
}

/// What every trigger listening to `source` does with `payload` for `incident`.
pub fn apply(runbook: &Runbook, incident: &Incident, source: &str, payload: &Value) -> Vec<Applied> {
    let mut applied = Vec::new();
    for trigger in runbook.triggers().iter().filter(|trigger| trigger.source == source) {
        let subjects: Vec<BTreeMap<&'static str, Value>> = match trigger.format {
            PayloadFormat::Alertmanager => payload["alerts"]
                .as_array()
                .map(|alerts| {
                    alerts
                        .iter()
                        .map(|alert| {
                            BTreeMap::from([("alert", alertmanager_alert(alert)), ("payload", payload.clone())])
                        })
                        .collect()
                })
                .unwrap_or_default(),
            PayloadFormat::Json => vec![BTreeMap::from([("payload", payload.clone())])],
        };
        let ignored = |why: String| Applied::Ignored { trigger: trigger.id.clone(), why };
        for variables in subjects {
            let resolved = variables.get("alert").is_some_and(|alert| alert["status"] == "resolved");
            // A resolved alert belongs to the incident its firing started.
            let mut asked = variables.clone();
            if resolved
                && matches!(trigger.action, TriggerAction::Start { .. })
                && let Some(alert) = asked.get_mut("alert")
            {
                alert["status"] = json!("firing");
            }
            if let Some(when) = &trigger.when {
                match scope::holds(when, &asked) {
                    Ok(true) => {}
                    Ok(false) => {
                        applied.push(ignored(format!("`{}` is false", when.source())));
                        continue;
                    }
                    Err(why) => {
                        applied.push(ignored(why));
                        continue;
                    }
                }
            }
            let key = match scope::evaluate(&trigger.key, &asked) {
                Ok(Value::String(key)) => key,
                Ok(other) => other.to_string(),
                Err(why) => {
                    applied.push(ignored(format!("its key: {why}")));
                    continue;
                }
            };
            if incident.closed.is_some() || incident.key.as_deref() != Some(key.as_str()) {
                applied.push(ignored(format!("no open incident has key `{key}`")));
                continue;
            }
            let command = match &trigger.action {
                TriggerAction::Start { .. } => {
                    let alert =
                        variables.get("alert").or_else(|| variables.get("payload")).cloned().unwrap_or_default();
                    let name = alert["labels"]["alertname"].as_str().unwrap_or("the alert");
                    let fingerprint = alert["fingerprint"].as_str().unwrap_or("?");
                    let text = if resolved {
                        format!("{name} resolved (fingerprint {fingerprint})")
                    } else {
                        format!("{name} fired again (fingerprint {fingerprint})")
                    };
                    Command::Note { text }
                }
                TriggerAction::Satisfy { phase, gate } => {
                    Command::Signal { phase: phase.clone(), gate: gate.clone(), note: None }
                }
                TriggerAction::Evidence { note } => match scope::evaluate(note, &variables) {
                    Ok(text) => Command::Note { text: text.as_str().map_or_else(|| text.to_string(), str::to_string) },
                    Err(why) => {
                        applied.push(ignored(format!("its note: {why}")));
                        continue;
                    }
                },
            };
            let actor = format!("{TRIGGER_PREFIX}{}", trigger.id);
            applied.push(Applied::Command { trigger: trigger.id.clone(), actor, command });
        }
    }
    applied
}

/// An alert as a trigger's conditions read it: Alertmanager's own field names.
fn alertmanager_alert(alert: &Value) -> Value {
    let field = |name: &str| alert.get(name).cloned().unwrap_or(Value::Null);
    let map = |name: &str| alert.get(name).filter(|value| value.is_object()).cloned().unwrap_or_else(|| json!({}));
    json!({
        "status": field("status"),
        "labels": map("labels"),
        "annotations": map("annotations"),
        "startsAt": field("startsAt"),
        "endsAt": field("endsAt"),
        "generatorURL": field("generatorURL"),
        "fingerprint": field("fingerprint"),
    })
}
