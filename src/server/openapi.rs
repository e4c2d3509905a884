//! `/openapi.json`: the API described in OpenAPI 3.1, written out by hand beside the routes it
//! describes; a test checks that it documents exactly the routes in [`super::ROUTES`].

use axum::Json;
use serde_json::{Value, json};

pub async fn document() -> Json<Value> {
    Json(spec())
}

/// One operation: its summary, whether it needs a token, its request body's schema, and the
/// statuses it answers besides the error ones every operation may give.
fn operation(summary: &str, authenticated: bool, body: Option<Value>, ok: &str) -> Value {
    let mut responses = json!({
        ok: { "description": "done", "content": { "application/json": { "schema": { "type": "object" } } } },
        "400": { "$ref": "#/components/responses/Error" },
        "404": { "$ref": "#/components/responses/Error" },
    });
    let mut operation = json!({ "summary": summary, "responses": responses.take() });
    if authenticated {
        operation["security"] = json!([{ "token": [] }]);
        for status in ["401", "403", "409", "422"] {
            operation["responses"][status] = json!({ "$ref": "#/components/responses/Error" });
        }
    } else {
        operation["security"] = json!([]);
    }
    if let Some(schema) = body {
        operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    }
    operation
}

/// A webhook delivery: authenticated by the source's scheme (not an API token), answered 202 when
/// stored in the inbox, 200 when it was received before, 413 `too_large` past `server.max_body`,
/// 503 when the server cannot take it now (retry).
fn hook() -> Value {
    let mut hook = operation(
        "A webhook delivery from a configured source, authenticated by the source's scheme (Standard Webhooks, \
         GitHub, HMAC or a bearer token), stored before it is answered (413 `too_large` past `server.max_body`); \
         its triggers then start incidents, satisfy gates or add to the timeline",
        false,
        Some(json!({ "description": "the sender's payload: Alertmanager's webhook (version 4) or any JSON" })),
        "202",
    );
    hook["requestBody"]["content"]["application/json"]["schema"] = json!({});
    for status in ["200", "400", "401", "413", "431", "503"] {
        hook["responses"][status] = json!({ "$ref": "#/components/responses/Error" });
    }
    hook
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "additionalProperties": false, "properties": properties, "required": required })
}

fn text() -> Value {
    json!({ "type": "string" })
}

fn parameters(path: &str) -> Value {
    let names: Vec<&str> =
        path.split('/').filter_map(|part| part.strip_prefix('{').and_then(|part| part.strip_suffix('}'))).collect();
    json!(
        names
            .iter()
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect::<Vec<_>>()
    )
}

pub fn spec() -> Value {
    let operations: Vec<(&str, &str, Value)> = vec![
        ("GET", "/healthz", operation("The process is up", false, None, "200")),
        (
            "GET",
            "/readyz",
            operation("The runtime loop has made a pass and the server is not stopping", false, None, "200"),
        ),
        ("GET", "/metrics", operation("Prometheus metrics", false, None, "200")),
        ("GET", "/openapi.json", operation("This document", false, None, "200")),
        (
            "GET",
            "/api/v1/runbooks",
            operation("The configured runbooks, each with whether it validates", true, None, "200"),
        ),
        (
            "POST",
            "/api/v1/runbooks/validate",
            operation("Validate a runbook sent as the body (YAML); 422 lists every problem", true, None, "200"),
        ),
        ("GET", "/api/v1/runbooks/{id}", operation("One runbook: its text, hash and phases", true, None, "200")),
        ("GET", "/api/v1/incidents", operation("Every incident's summary", true, None, "200")),
        (
            "POST",
            "/api/v1/incidents",
            operation(
                "Start an incident from a configured runbook, as the token's person",
                true,
                Some(object(json!({ "runbook": text(), "inputs": { "type": "object" }, "key": text() }), &["runbook"])),
                "201",
            ),
        ),
        (
            "GET",
            "/api/v1/incidents/{id}",
            operation("Where the incident stands, what blocks it and who can unblock it", true, None, "200"),
        ),
        ("GET", "/api/v1/incidents/{id}/timeline", operation("Every event, in order", true, None, "200")),
        (
            "POST",
            "/api/v1/incidents/{id}/approvals",
            operation(
                "Approve an approval gate of a phase (403 names the role needed)",
                true,
                Some(object(json!({ "phase": text(), "gate": text(), "note": text() }), &["phase"])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/done",
            operation(
                "Mark a manual step done, with evidence and outputs; on an automated step that failed for good, \
                 mark it done by hand (the runbook's `recover` roles, evidence required)",
                true,
                Some(object(json!({ "evidence": text(), "outputs": { "type": "object" } }), &[])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/retry",
            operation(
                "Another attempt of an automated step that failed for good, with the same idempotency key \
                 (the runbook's `recover` roles; 409 when the step has not failed)",
                true,
                Some(object(json!({ "reason": text() }), &[])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/skip",
            operation(
                "Skip a step that failed for good: it counts as skipped, not done (the runbook's `recover` roles)",
                true,
                Some(object(json!({ "reason": text() }), &["reason"])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/signals",
            operation(
                "Give a signal gate its signal",
                true,
                Some(object(json!({ "phase": text(), "gate": text(), "note": text() }), &["phase", "gate"])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/notes",
            operation("Add a note to the timeline", true, Some(object(json!({ "text": text() }), &["text"])), "200"),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/close",
            operation(
                "Close the incident: the runbook's `close` roles, once every phase is done or skipped; or, with \
                 `abandon: true` and a `reason`, abandon it early (the runbook's `abandon` roles). Refused while \
                 a control is relaxed",
                true,
                Some(object(json!({ "note": text(), "abandon": { "type": "boolean" }, "reason": text() }), &[])),
                "200",
            ),
        ),
        (
            "GET",
            "/api/v1/incidents/{id}/updates/{audience}",
            operation(
                "Render the audience's status update now, without sending it (`?variant=md|txt|html`)",
                true,
                None,
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/updates/{audience}",
            operation(
                "Send the audience a status update now (403 unless the caller holds a role of the audience's \
                 `senders`, where the runbook names them or the audience is `public` or `customers`)",
                true,
                None,
                "200",
            ),
        ),
        (
            "GET",
            "/api/v1/webhooks/{source}/deliveries/{id}",
            operation(
                "A received webhook delivery: `waiting`, or `applied` with what each trigger did (`done`) or why \
                 nothing could be (`error`)",
                true,
                None,
                "200",
            ),
        ),
        ("POST", "/hooks/{source}", hook()),
    ];
    let mut paths = serde_json::Map::new();
    for (method, path, mut operation) in operations {
        operation["parameters"] = parameters(path);
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "phasegate", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Incident-response runbooks: phases, gates, a tamper-evident log, status updates." },
        "paths": paths,
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer",
                "description": "An API token from the configuration (`phasegate token PERSON` makes one)." } },
            "responses": { "Error": { "description": "The request was not done; `code` is stable, `message` says why.",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } },
            "schemas": { "Error": object(
                json!({ "error": object(json!({ "code": text(), "message": text() }), &["code", "message"]) }),
                &["error"],
            ) },
        },
    })
}
