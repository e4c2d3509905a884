//! What a scripted webhook delivery asks of the drill's incident, by the runbook's triggers.
//!
//! The rules are the engine's (`engine::trigger`), the ones the runtime's inbox applies to
//! received deliveries; a drill has one incident and no server, so every trigger listening to the
//! source reads the payload and is decided with the drill's incident as the open one when its key
//! is the incident's. A delivery that would start another incident starts none: the drill
//! rehearses one. The signature check is not rehearsed; the scripted headers are read as the
//! server keeps a delivery's, without credentials.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::trigger::{self, Decision, Ignored};
use crate::engine::{Command, Incident};
use crate::runbook::Runbook;

/// What one trigger does with a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Asks the incident this, as `actor` (`trigger:ID`).
    Command { trigger: String, actor: String, command: Command },
    /// Does nothing, and says why.
    Ignored { trigger: String, why: String },
}

/// What every trigger listening to `source` does with a delivery of `payload` with `headers`
/// (lowercase names) for `incident`. Credentials are left out of the headers, as the server leaves
/// them out of what it stores.
pub fn apply(
    runbook: &Runbook,
    incident: &Incident,
    source: &str,
    headers: &BTreeMap<String, String>,
    payload: &Value,
) -> Vec<Applied> {
    let mut headers = headers.clone();
    headers.retain(|name, _| !trigger::CREDENTIAL_HEADERS.contains(&name.as_str()));
    let mut applied = Vec::new();
    for trigger in runbook.triggers().iter().filter(|trigger| trigger.source == source) {
        let ignored = |why: String| Applied::Ignored { trigger: trigger.id.clone(), why };
        let subjects = match trigger::read(&trigger.format, payload, &headers) {
            Ok(subjects) => subjects,
            Err(error) => {
                applied.push(ignored(error.to_string()));
                continue;
            }
        };
        for variables in subjects {
            let why = match trigger::key(trigger, &variables) {
                Err(why) => why,
                Ok(key) => {
                    let open = incident.closed.is_none() && incident.key.as_deref() == Some(key.as_str());
                    let decision = trigger::decide(trigger, &variables, &key, open.then_some(incident.id.as_str()));
                    if let Some(command) = decision.command() {
                        let actor = trigger::actor(trigger);
                        applied.push(Applied::Command { trigger: trigger.id.clone(), actor, command });
                        continue;
                    }
                    match decision {
                        Decision::Ignore { why, .. } => why,
                        // A start: the drill's one incident does not have this key.
                        _ => Ignored::NoIncident { key },
                    }
                }
            };
            applied.push(ignored(why.to_string()));
        }
    }
    applied
}
