//! Webhook deliveries: who may send them (`signature`), what they carry (`alertmanager`, generic
//! JSON), and what they do to incidents, as the runbooks' triggers say.
//!
//! `POST /hooks/{source}`: the signature is checked over the raw body before anything is parsed;
//! a delivery already taken is answered as such and changes nothing; each thing the delivery does
//! (start an incident, satisfy a gate, add to the timeline) is stored with its own delivery id in
//! the same transaction, so a retry after a crash halfway through does the rest and nothing twice.
//! Nothing is acknowledged before it is stored. Answers follow what senders do with them:
//! Alertmanager retries only on 5xx, so overload and storage failures are 503, never 429.

pub mod alertmanager;
pub mod signature;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use super::metrics::WebhookLabels;
use crate::config::server::{SchemeName, Source};
use crate::engine::directory::TRIGGER_PREFIX;
use crate::engine::{Command, scope};
use crate::runbook::Runbook;
use crate::runbook::model::{PayloadFormat, Trigger, TriggerAction};
use crate::runtime;
use crate::store::{self, Delivery, Store};
use signature::{Scheme, Secret};

/// Deliveries handled at once before more are answered 503 (a sender retries those).
pub const IN_FLIGHT: usize = 256;

/// The configured sources' schemes, with their secrets read once at start.
pub fn schemes(
    sources: &BTreeMap<String, Source>,
    secrets: &crate::config::Secrets,
) -> anyhow::Result<BTreeMap<String, Scheme>> {
    let mut schemes = BTreeMap::new();
    for (name, source) in sources {
        let mut values = Vec::with_capacity(source.secrets.len());
        for secret in &source.secrets {
            let value = secrets.get(secret).ok_or_else(|| {
                anyhow::anyhow!("webhook source `{name}` names secret `{secret}`, which has no value in the configuration's `secrets`")
            })?;
            let value = match source.scheme {
                SchemeName::StandardWebhooks => Secret::standard_webhooks(&value),
                _ => Secret::new(value.into_bytes()),
            }
            .map_err(|error| anyhow::anyhow!("webhook source `{name}`, secret `{secret}`: {error}"))?;
            values.push(value);
        }
        let scheme = match source.scheme {
            SchemeName::StandardWebhooks => Scheme::StandardWebhooks { secrets: values },
            SchemeName::Github => Scheme::GitHub { secrets: values },
            SchemeName::Hmac => Scheme::Hmac {
                header: source.header.clone().unwrap_or_default(),
                id_header: source.id_header.clone(),
                secrets: values,
            },
            SchemeName::Bearer => Scheme::Bearer { tokens: values },
        };
        schemes.insert(name.clone(), scheme);
    }
    Ok(schemes)
}

/// A runbook whose triggers may act on deliveries, with the text incidents pin.
pub struct Armed {
    pub text: String,
    pub runbook: Arc<Runbook>,
}

/// What one delivery did, for its answer.
#[derive(Debug, serde::Serialize)]
struct Done {
    trigger: String,
    /// `started`, `attached`, `satisfied`, `noted`, `resolved`, `duplicate` or `ignored`.
    did: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

pub async fn receive(
    State(app): State<Arc<App>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A source the configuration lacks is counted as `(unknown)`, not by the path's name: anyone
    // could make up names by the million, and every label value is kept for good.
    let scheme = app.sources.get(&source);
    let label = if scheme.is_some() { source.as_str() } else { "(unknown)" };
    let count = |result: &str, reason: &str| {
        let labels = WebhookLabels { source: label.into(), result: result.into(), reason: reason.into() };
        app.metrics.webhooks.get_or_create(&labels).inc();
    };
    let Some(scheme) = scheme else {
        count("refused", "unknown_source");
        return ApiError::not_found(format!("no webhook source `{source}` is configured")).into_response();
    };
    let Ok(_permit) = app.hooks.try_acquire() else {
        count("refused", "overloaded");
        let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many deliveries at once; retry");
        return error.into_response();
    };
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
    let verified = match signature::verify(scheme, pairs.as_slice(), &body, Utc::now()) {
        Ok(verified) => verified,
        Err(refusal) => {
            count("refused", refusal.code());
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return ApiError::new(status, refusal.code(), refusal.to_string()).into_response();
        }
    };
    // An id the sender signed (Standard Webhooks) is the delivery's. An id in a header the
    // signature does not cover (GitHub's X-GitHub-Delivery) could be changed on a captured
    // delivery to replay it, so those deliveries are known by the SHA-256 of their signed body:
    // GitHub's redeliveries (the same body) are still the same delivery, and a replay is too.
    let delivery_id = match verified.id_source {
        signature::IdSource::Header => signature::body_id(&body),
        _ => verified.delivery_id.clone(),
    };
    match handle(&app, &source, &delivery_id, &body).await {
        Ok(done) => {
            // A retry: something was taken before, and nothing new was done now.
            let duplicate = done.iter().any(|done| done.did == "duplicate")
                && done.iter().all(|done| matches!(done.did, "duplicate" | "ignored"));
            count(if duplicate { "duplicate" } else { "accepted" }, "");
            let status = if duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
            (status, Json(json!({ "delivery": delivery_id, "done": done }))).into_response()
        }
        Err(error) => {
            count("refused", error.code);
            error.into_response()
        }
    }
}

/// Decodes the delivery and lets every trigger listening to `source` act on it.
async fn handle(app: &App, source: &str, delivery_id: &str, body: &[u8]) -> Result<Vec<Done>, ApiError> {
    let triggers: Vec<(&Armed, &Trigger)> = app
        .armed
        .iter()
        .flat_map(|armed| armed.runbook.triggers.iter().map(move |trigger| (armed, trigger)))
        .filter(|(_, trigger)| trigger.source == source)
        .collect();
    let mut subjects: Vec<(&Armed, &Trigger, BTreeMap<&'static str, Value>)> = Vec::new();
    let mut decoded_alerts = None;
    let mut decoded_json = None;
    for (armed, trigger) in triggers {
        match trigger.format {
            PayloadFormat::Alertmanager => {
                if decoded_alerts.is_none() {
                    let notification = alertmanager::decode(body).map_err(|error| {
                        ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", error.to_string())
                    })?;
                    // The group as sent, for `payload`: it decoded, so it is JSON.
                    let group: Value = serde_json::from_slice(body).unwrap_or_default();
                    let alerts: Vec<Value> = notification.alerts.iter().map(alertmanager_alert).collect();
                    decoded_alerts = Some((group, alerts));
                }
                if let Some((group, alerts)) = &decoded_alerts {
                    for alert in alerts {
                        let variables = BTreeMap::from([("alert", alert.clone()), ("payload", group.clone())]);
                        subjects.push((armed, trigger, variables));
                    }
                }
            }
            PayloadFormat::Json => {
                if decoded_json.is_none() {
                    let payload: Value = serde_json::from_slice(body).map_err(|error| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_payload",
                            format!("the body is not JSON: {error}"),
                        )
                    })?;
                    decoded_json = Some(payload);
                }
                subjects.push((
                    armed,
                    trigger,
                    BTreeMap::from([("payload", decoded_json.clone().unwrap_or_default())]),
                ));
            }
        }
    }
    let mut done = Vec::with_capacity(subjects.len());
    for (number, (armed, trigger, variables)) in subjects.into_iter().enumerate() {
        // Each action has an id of its own, the same on every retry of the delivery.
        let delivery =
            Delivery { source: source.to_string(), id: format!("{delivery_id}/{number}"), received_at: Utc::now() };
        done.push(act(app, armed, trigger, &variables, &delivery).await?);
    }
    Ok(done)
}

/// An alert as a trigger's conditions read it: Alertmanager's own field names.
fn alertmanager_alert(alert: &alertmanager::Alert) -> Value {
    json!({
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at,
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    })
}

async fn act(
    app: &App,
    armed: &Armed,
    trigger: &Trigger,
    variables: &BTreeMap<&'static str, Value>,
    delivery: &Delivery,
) -> Result<Done, ApiError> {
    let done = |did: &'static str, incident: Option<String>, why: Option<String>| Done {
        trigger: trigger.id.clone(),
        did,
        incident,
        why,
    };
    let resolved = variables.get("alert").is_some_and(|alert| alert["status"] == "resolved");
    // A resolved alert belongs to the incident its firing started: a start trigger is asked
    // whether it would have started on the alert as it fired.
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
            Ok(false) => return Ok(done("ignored", None, Some(format!("`{}` is false", when.source())))),
            Err(why) => return Ok(done("ignored", None, Some(why))),
        }
    }
    let key = match scope::evaluate(&trigger.key, &asked) {
        Ok(Value::String(key)) => key,
        Ok(other) => other.to_string(),
        Err(why) => return Ok(done("ignored", None, Some(format!("its key: {why}")))),
    };
    let actor = format!("{TRIGGER_PREFIX}{}", trigger.id);
    let store = app.runtime.store();
    let open = store.open_incident_by_key(&armed.runbook.id, &key).await?;
    let result = match (&trigger.action, open) {
        (TriggerAction::Start { inputs }, None) if !resolved => {
            let mut values = BTreeMap::new();
            for (name, expression) in inputs {
                match scope::evaluate(expression, variables) {
                    Ok(value) => values.insert(name.clone(), value),
                    Err(why) => return Ok(done("ignored", None, Some(format!("input `{name}`: {why}")))),
                };
            }
            let started =
                app.runtime.start_delivered(&armed.text, &actor, values, Some(key.clone()), Some(delivery)).await;
            match started {
                Ok((id, _)) => Ok(done("started", Some(id), None)),
                // Another delivery of the same alert opened it first: this one joins it.
                Err(runtime::Error::Store(store::Error::DuplicateKey { open, .. })) => {
                    attach(app, &open, &actor, "repeated", variables, delivery)
                        .await
                        .map(|_| done("attached", Some(open), None))
                }
                Err(error) => Err(error),
            }
        }
        (TriggerAction::Start { .. }, Some(open)) => {
            let what = if resolved { "resolved" } else { "attached" };
            attach(app, &open, &actor, what, variables, delivery).await.map(|_| done(what, Some(open), None))
        }
        (TriggerAction::Start { .. }, None) => {
            Ok(done("ignored", None, Some("resolved, and no incident is open for it".into())))
        }
        (_, None) => Ok(done("ignored", None, Some(format!("no open incident has key `{key}`")))),
        (TriggerAction::Satisfy { phase, gate }, Some(open)) => {
            let command = Command::Signal { phase: phase.clone(), gate: gate.clone(), note: None };
            app.runtime
                .submit_delivered(&open, &actor, command, Some(delivery))
                .await
                .map(|_| done("satisfied", Some(open), None))
        }
        (TriggerAction::Evidence { note }, Some(open)) => match scope::evaluate(note, variables) {
            Ok(text) => {
                let text = text.as_str().map_or_else(|| text.to_string(), str::to_string);
                let command = Command::Note { text };
                app.runtime
                    .submit_delivered(&open, &actor, command, Some(delivery))
                    .await
                    .map(|_| done("noted", Some(open), None))
            }
            Err(why) => Ok(done("ignored", Some(open), Some(format!("its note: {why}")))),
        },
    };
    match result {
        Ok(done) => Ok(done),
        Err(runtime::Error::Store(store::Error::Duplicate { incident, .. })) => {
            Ok(done("duplicate", Some(incident), None))
        }
        // A gate already passed, an incident closed meanwhile: nothing to do, and nothing lost.
        Err(runtime::Error::Refused(refused)) => Ok(done("ignored", None, Some(refused.to_string()))),
        Err(error) => {
            tracing::error!(%error, trigger = trigger.id, "a delivery could not be stored");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the delivery could not be stored; retry",
            ))
        }
    }
}

/// Records a repeated or resolved alert on the incident it already opened.
async fn attach(
    app: &App,
    incident: &str,
    actor: &str,
    what: &str,
    variables: &BTreeMap<&'static str, Value>,
    delivery: &Delivery,
) -> Result<(), runtime::Error> {
    let alert = variables.get("alert").or_else(|| variables.get("payload")).cloned().unwrap_or_default();
    let name = alert["labels"]["alertname"].as_str().unwrap_or("the alert");
    let text = match what {
        "resolved" => format!("{name} resolved (fingerprint {})", alert["fingerprint"].as_str().unwrap_or("?")),
        _ => format!("{name} fired again (fingerprint {})", alert["fingerprint"].as_str().unwrap_or("?")),
    };
    app.runtime.submit_delivered(incident, actor, Command::Note { text }, Some(delivery)).await.map(|_| ())
}
