//! Webhook deliveries: who may send them (`signature`), what they carry (`alertmanager`, generic
//! JSON), and what they do to incidents, as the runbooks' triggers say.
//!
//! `POST /hooks/{source}`: the signature is checked over the raw body before anything is parsed;
//! then the body is decoded for the triggers listening to the source (a body they cannot read is
//! refused), and the delivery is stored in the inbox with its headers (`headers`: all but those
//! that authenticate it), group-committed, before the answer: 202 when
//! new, 200 when it was received before (a retry or a replay, which changes nothing). The
//! runtime's inbox loop (`runtime::inbox`) applies it to incidents afterwards, in the order
//! received; what it did is read at `GET /api/v1/webhooks/{source}/deliveries/{id}`. Nothing is
//! acknowledged before it is stored, and a crash after the answer loses nothing. Answers follow
//! what senders do with them: Alertmanager retries only on 5xx, so overload and storage failures
//! are 503, never 429. A body past `server.max_body` is 413 `too_large`, as in the API.

pub mod alertmanager;
pub mod headers;
pub mod signature;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::App;
use super::auth::Caller;
use super::error::ApiError;
use super::metrics::WebhookLabels;
use crate::config::server::{SchemeName, Source};
use crate::runbook::model::PayloadFormat;
use crate::store::{Delivery, Store};
use signature::{Scheme, Secret};

/// Deliveries handled at once before more are answered 503 (a sender retries those).
pub const IN_FLIGHT: usize = 256;

/// Deliveries waiting in the inbox before more are answered 503: a storm the inbox task cannot
/// keep up with is held back at its senders rather than piled up here.
pub const INBOX_LIMIT: u64 = 10_000;

/// The configured webhook sources, with their secrets read once at start.
#[derive(Default)]
pub struct Sources {
    /// Those whose secrets all have values: deliveries are checked against them.
    pub on: BTreeMap<String, Scheme>,
    /// Those with a secret that has no value, and why: their deliveries are answered 503, which
    /// senders retry, so that nothing sent meanwhile is lost once the secret is set.
    pub off: BTreeMap<String, String>,
}

/// Reads the configured sources' secrets. A source whose secret has no value is off (the rest of
/// the server still serves); a secret whose value is not a key of the source's scheme is an error.
pub fn schemes(sources: &BTreeMap<String, Source>, secrets: &crate::config::Secrets) -> anyhow::Result<Sources> {
    let mut read = Sources::default();
    'sources: for (name, source) in sources {
        let mut values = Vec::with_capacity(source.secrets.len());
        for secret in &source.secrets {
            let Some(value) = secrets.get(secret) else {
                let why = match secrets.source(secret) {
                    Some(source) => source.absent(),
                    None => format!(
                        "it is not declared; declare it under `secrets:`, for example `{secret}: {{ env: {secret} }}`"
                    ),
                };
                read.off.insert(
                    name.clone(),
                    format!("webhook source `{name}` is off: its secret `{secret}` has no value: {why} (or remove the source from `server.sources`)"),
                );
                continue 'sources;
            };
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
        read.on.insert(name.clone(), scheme);
    }
    Ok(read)
}

pub async fn receive<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A source the configuration lacks is counted as `(unknown)`, not by the path's name: anyone
    // could make up names by the million, and every label value is kept for good.
    let scheme = app.sources.on.get(&source);
    let off = app.sources.off.get(&source);
    let label = if scheme.is_some() || off.is_some() { source.as_str() } else { "(unknown)" };
    let count = |result: &str, reason: &str| {
        let labels = WebhookLabels { source: label.into(), result: result.into(), reason: reason.into() };
        app.metrics.webhooks.get_or_create(&labels).inc();
    };
    if let Some(why) = off {
        count("refused", "source_off");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "source_off", format!("{why}; retry once it is set"))
            .into_response();
    }
    let Some(scheme) = scheme else {
        count("refused", "unknown_source");
        return ApiError::not_found(format!("no webhook source `{source}` is configured")).into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let error = ApiError::unread_body(&rejection);
            count("refused", error.code);
            return error.into_response();
        }
    };
    let overloaded = || {
        count("refused", "overloaded");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many deliveries at once; retry")
            .into_response()
    };
    let Ok(_permit) = app.hooks.try_acquire() else { return overloaded() };
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
    let verified = match signature::verify(scheme, pairs.as_slice(), &body, Utc::now()) {
        Ok(verified) => verified,
        Err(refusal) => {
            count("refused", refusal.code());
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return ApiError::new(status, refusal.code(), refusal.to_string()).into_response();
        }
    };
    if app.inbox.depth() >= INBOX_LIMIT {
        return overloaded();
    }
    // Checked now only to refuse what the triggers could never read; the runtime's inbox reads it
    // when it applies it, with the triggers of that moment.
    if let Err(error) = readable(&app, &source, &body) {
        count("refused", error.code);
        return error.into_response();
    }
    // An id the sender signed (Standard Webhooks) is the delivery's. An id in a header the
    // signature does not cover (GitHub's X-GitHub-Delivery) could be changed on a captured
    // delivery to replay it, so those deliveries are known by the SHA-256 of their signed body:
    // GitHub's redeliveries (the same body) are still the same delivery, and a replay is too.
    let id = match verified.id_source {
        signature::IdSource::Header => signature::body_id(&body),
        _ => verified.delivery_id,
    };
    let delivery = Delivery { source: source.clone(), id, received_at: Utc::now() };
    let kept = headers::kept(scheme, &headers);
    match app.inbox.receive(&app.runtime, &delivery, &kept, &body).await {
        Ok(true) => {
            count("accepted", "");
            (StatusCode::ACCEPTED, Json(json!({ "delivery": delivery.id, "state": "received" }))).into_response()
        }
        Ok(false) => {
            count("duplicate", "");
            (StatusCode::OK, Json(json!({ "delivery": delivery.id, "state": "duplicate" }))).into_response()
        }
        Err(error) => {
            tracing::error!(%error, source, "a delivery could not be stored");
            count("refused", "unavailable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the delivery could not be stored; retry")
                .into_response()
        }
    }
}

/// Whether the triggers listening to `source` can read the body, checked without building what
/// they would read: what a delivery must pass before it is stored. The runtime's inbox reads it
/// when it applies it.
fn readable<S: Store>(app: &App<S>, source: &str, body: &[u8]) -> Result<(), ApiError> {
    let formats = app.inbox.formats(source);
    if formats.iter().any(|format| matches!(format, PayloadFormat::Alertmanager)) {
        alertmanager::decode(body).map_err(|error| match error {
            alertmanager::Error::TooLarge { .. } => ApiError::too_large(error.to_string()),
            error => invalid(error.to_string()),
        })?;
    } else if !formats.is_empty() {
        serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map_err(|error| invalid(format!("the body is not JSON: {error}")))?;
    }
    Ok(())
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", message)
}

/// `GET /api/v1/webhooks/{source}/deliveries/{id}`: whether a delivery was received and, once
/// applied, what each trigger did with it.
pub async fn receipt<S: Store>(
    State(app): State<Arc<App<S>>>,
    _: Caller,
    Path((source, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(receipt) = app.runtime.store().receipt(&source, &id).await? else {
        return Err(ApiError::not_found(format!("no delivery `{id}` was received from `{source}`")));
    };
    let mut answer = json!({
        "source": source,
        "delivery": id,
        "received_at": receipt.received_at,
        "state": if receipt.applied.is_some() { "applied" } else { "waiting" },
    });
    if let Some((at, outcome)) = receipt.applied {
        answer["applied_at"] = json!(at);
        // Written by the runtime's inbox as a JSON object (`done` or `error`).
        let outcome: Value = serde_json::from_str(&outcome)
            .map_err(|error| ApiError::internal(&format!("a stored delivery outcome is not JSON: {error}")))?;
        if let Value::Object(fields) = outcome {
            answer.as_object_mut().expect("an object").extend(fields);
        }
    }
    Ok(Json(answer).into_response())
}
