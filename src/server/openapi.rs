//! `/openapi.json`: the API described in OpenAPI 3.1, written out by hand beside the routes it
//! describes; a test checks that it documents exactly the routes in [`super::ROUTES`].

use axum::Json;
use serde_json::{Value, json};

use super::view::{PAGE_DEFAULT, PAGE_MAX, StateFilter};

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

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn nullable(schema: Value) -> Value {
    json!({ "oneOf": [schema, { "type": "null" }] })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

/// `operation` answering `schema` (a JSON object) when it succeeds, and taking the query
/// parameters `query` (an unknown or malformed one is 400 `invalid_query`).
fn answering(mut operation: Value, schema: Value, query: &[Value]) -> Value {
    let ok = operation["responses"]
        .as_object_mut()
        .and_then(|responses| responses.iter_mut().find(|(status, _)| status.starts_with('2')))
        .map(|(_, ok)| ok)
        .expect("every operation has a success status");
    ok["content"]["application/json"]["schema"] = schema;
    operation["query"] = json!(query);
    operation
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn schemas_with_error() -> Value {
    let mut schemas = schemas();
    schemas["Error"] = object(
        json!({ "error": object(json!({ "code": text(), "message": text() }), &["code", "message"]) }),
        &["error"],
    );
    schemas
}

/// The shapes of the answers about incidents (`server::view`).
fn schemas() -> Value {
    let count = || json!({ "type": "integer", "minimum": 0 });
    let state = || json!({ "type": "string", "enum": ["open", "closed"] });
    let any_object = || json!({ "type": "object" });
    let gate = json!({
        "type": "object",
        "description": "A gate in the runbook's order (entry gates, then exit gates) and the fields of its state \
                        that are set (unset ones, null, false, 0 or empty, are left out): `passed_at`, \
                        `approvals`, `signalled`, `polls`, `polling`, `last_check` (the check's last answer: `at`, `ok`, \
                        `status` when answered over HTTP, `error` when not as expected), `deadline_missed`, \
                        `deadline_from` (a check retried by hand counts its deadline from then), `recovery` \
                        (what a person last did about a check: `retried` or `overridden`, by whom, when, why)",
        "properties": { "id": text(), "stage": { "type": "string", "enum": ["entry", "exit"] },
                        "kind": { "type": "string",
                                  "enum": ["approval", "condition", "check", "timer", "steps_done", "signal"] },
                        "passed_at": time() },
        "required": ["id", "stage", "kind"],
    });
    let step = json!({
        "type": "object",
        "description": "A step in the runbook's order, its `status` (`pending`, `running`, `retrying`, `done`, \
                        `skipped`, `failed`) and the other fields of its state that are set (unset ones are left \
                        out): `attempt`, `idempotency_key`, `retry_at`, `error`, `outputs`, `done_at`, `done_by`, \
                        `evidence`, `recovery`",
        "properties": { "id": text(), "title": nullable(text()), "kind": text(),
                        "status": { "type": "string",
                                    "enum": ["pending", "running", "retrying", "done", "skipped", "failed"] } },
        "required": ["id", "title", "kind", "status"],
    });
    json!({
        "IncidentSummary": object(json!({
            "id": text(), "state": state(), "runbook_id": text(), "key": nullable(text()),
            "version": { "type": "integer", "minimum": 1, "description": "how many events it has" },
            "started_at": time(), "updated_at": time(), "closed_at": nullable(time()),
            "head": nullable(text()), "checkpointed": count(), "checkpointed_at": nullable(time()),
        }), &["id", "state", "runbook_id", "key", "version", "started_at", "updated_at", "closed_at", "head",
              "checkpointed", "checkpointed_at"]),
        "IncidentList": object(
            json!({ "incidents": { "type": "array", "items": reference("IncidentSummary") } }),
            &["incidents"],
        ),
        "Phase": object(json!({
            "id": text(), "title": nullable(text()), "needs": { "type": "array", "items": text() },
            "state": { "type": "string", "enum": ["pending", "ready", "running", "done", "skipped", "failed"] },
            "ready_at": nullable(time()), "started_at": nullable(time()), "ended_at": nullable(time()),
            "error": nullable(text()),
            "gates": { "type": "array", "items": gate }, "steps": { "type": "array", "items": step },
        }), &["id", "title", "needs", "state", "ready_at", "started_at", "ended_at", "error", "gates", "steps"]),
        "Incident": object(json!({
            "incident": object(json!({
                "id": text(), "state": state(), "runbook_id": text(), "runbook_version": nullable(text()),
                "runbook_sha256": text(), "key": nullable(text()), "inputs": any_object(),
                "started_at": time(), "started_by": text(), "version": count(), "updated_at": time(),
                "closed": nullable(any_object()),
                "phases": { "type": "array", "items": reference("Phase"),
                            "description": "every phase of the runbook, in its order, unreached ones `pending`" },
                "relaxations": { "type": "object", "description": "by control: its latest relaxation" },
                "last_update": { "type": "object", "description": "by audience: when its last update was decided" },
            }), &["id", "state", "runbook_id", "runbook_version", "runbook_sha256", "key", "inputs", "started_at",
                  "started_by", "version", "updated_at", "closed", "phases", "relaxations", "last_update"]),
            "blocking": { "type": "array", "items": object(
                json!({ "blocker": any_object(), "people": { "type": "array", "items": text() } }),
                &["blocker", "people"],
            ) },
        }), &["incident", "blocking"]),
        "Timeline": object(json!({
            "incident": text(),
            "events": { "type": "array", "items": object(json!({
                "seq": { "type": "integer", "minimum": 1 }, "summary": text(),
                "event": { "type": "object", "description": "the event as stored, except that \
                           `incident_started` leaves out `runbook_text` (its `runbook_sha256` names it; \
                           `GET /api/v1/incidents/{id}/runbook` gives it)" },
            }), &["seq", "summary", "event"]) },
            "next": { "oneOf": [count(), { "type": "null" }],
                      "description": "the `after` of the following page; null once this page reaches the end of \
                                      the log" },
        }), &["incident", "events", "next"]),
        "PinnedRunbook": object(json!({
            "incident": text(), "runbook_id": text(), "runbook_version": nullable(text()), "sha256": text(),
            "text": text(),
        }), &["incident", "runbook_id", "runbook_version", "sha256", "text"]),
    })
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
            operation(
                "The runbooks loaded at start, and the files left out with their diagnostics (line and column)",
                true,
                None,
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/runbooks/validate",
            operation("Validate a runbook sent as the body (YAML); 422 lists every problem", true, None, "200"),
        ),
        (
            "GET",
            "/api/v1/runbooks/{id}",
            operation(
                "One runbook by id: its text, hash and phases (404 names the nearest id; 422 when its file does \
                 not validate or shares its id)",
                true,
                None,
                "200",
            ),
        ),
        (
            "GET",
            "/api/v1/incidents",
            answering(
                operation(
                    "The incidents' summaries, in the order they started: the open ones by default",
                    true,
                    None,
                    "200",
                ),
                reference("IncidentList"),
                &[query(
                    "state",
                    "which incidents: `open` (the default), `closed` or `all`",
                    json!({ "type": "string", "enum": StateFilter::ALLOWED, "default": "open" }),
                )],
            ),
        ),
        (
            "POST",
            "/api/v1/incidents",
            answering(
                operation(
                    "Start an incident from a configured runbook, as the token's person; answers with its summary \
                     (`Location` is its URL)",
                    true,
                    Some(object(
                        json!({ "runbook": text(), "inputs": { "type": "object" }, "key": text() }),
                        &["runbook"],
                    )),
                    "201",
                ),
                reference("IncidentSummary"),
                &[],
            ),
        ),
        (
            "GET",
            "/api/v1/incidents/{id}",
            answering(
                operation(
                    "Where the incident stands (its phases in the runbook's order, with their gates and steps), \
                     what blocks it and who can unblock it",
                    true,
                    None,
                    "200",
                ),
                reference("Incident"),
                &[],
            ),
        ),
        (
            "GET",
            "/api/v1/incidents/{id}/timeline",
            answering(
                operation(
                    "A page of the incident's events, in order, each with a line for a person",
                    true,
                    None,
                    "200",
                ),
                reference("Timeline"),
                &[
                    query(
                        "after",
                        "the events after this `seq` (the answer's `next` for the following page)",
                        json!({ "type": "integer", "minimum": 0, "default": 0 }),
                    ),
                    query(
                        "limit",
                        "the most events the page holds",
                        json!({ "type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT }),
                    ),
                    query(
                        "kind",
                        "only the events of this type (`approval_given`); `next` then pages through them",
                        json!({ "type": "string", "pattern": "^[a-z_]{1,40}$" }),
                    ),
                ],
            ),
        ),
        (
            "GET",
            "/api/v1/incidents/{id}/runbook",
            answering(
                operation(
                    "The runbook text the incident runs, as pinned when it started (by its SHA-256)",
                    true,
                    None,
                    "200",
                ),
                reference("PinnedRunbook"),
                &[],
            ),
        ),
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
            "/api/v1/incidents/{id}/phases/{phase}/gates/{gate}/retry",
            operation(
                "Probe a check gate again, waiting or failed past its deadline, with a fresh deadline; a failed \
                 phase resumes (the runbook's `recover` roles; 422 for a gate that is not a check, 409 for one \
                 that has passed)",
                true,
                Some(object(json!({ "reason": text() }), &[])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/gates/{gate}/pass",
            operation(
                "Pass a check gate by hand, waiting or failed past its deadline: an override recorded as \
                 `gate_overridden` with the evidence; a failed phase resumes (the runbook's `recover` roles, \
                 evidence required; approval gates are their approvers' and are refused)",
                true,
                Some(object(json!({ "evidence": text() }), &["evidence"])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/test",
            operation(
                "Send a campaign's messages for the list's first `sample` recipients (default 1, at most 20), \
                 rendered as the campaign renders them, through its channel, to internal addresses only (the \
                 configuration's `campaigns.test_recipients`: 422 for any other), subject prefixed `[TEST] `; \
                 recorded in the incident's log (`campaign_test_sent`), the campaign's progress untouched (the \
                 runbook's `campaign` roles). The answer says what was sent and what the channel refused",
                true,
                Some(object(
                    json!({ "to": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                            "sample": { "type": "integer", "minimum": 1, "maximum": 20 } }),
                    &["to"],
                )),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/launch",
            operation(
                "Launch a campaign step written with `test_first: true`, which waits for it once reached: refused \
                 (409) unless the step's last test send went out, and once launched; recorded as \
                 `campaign_launched` (the runbook's `campaign` roles)",
                true,
                Some(object(json!({ "reason": text() }), &[])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/pause",
            operation(
                "Pause a sending campaign: its batches in flight finish, no new one starts; recorded as \
                 `campaign_paused` (the runbook's `campaign` roles; 409 when it is not sending or already paused)",
                true,
                Some(object(json!({ "reason": text() }), &[])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/resume",
            operation(
                "Resume a paused campaign; recorded as `campaign_resumed` (the runbook's `campaign` roles; 409 \
                 when it is not paused)",
                true,
                Some(object(json!({ "reason": text() }), &[])),
                "200",
            ),
        ),
        (
            "POST",
            "/api/v1/incidents/{id}/phases/{phase}/steps/{step}/campaign/cancel",
            operation(
                "Cancel a sending campaign, with a `reason` (422 without one): its batches in flight finish, then \
                 the step fails for good with what was sent; recorded as `campaign_cancelled` (the runbook's \
                 `campaign` roles)",
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
            answering(
                operation("Render the audience's status update now, without sending it", true, None, "200"),
                object(
                    json!({ "incident": text(), "audience": text(), "template": text(), "text": text() }),
                    &["incident", "audience", "template", "text"],
                ),
                &[query(
                    "variant",
                    "the template's variant: `md`, `txt` or `html` (default: the first it has)",
                    text(),
                )],
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
        let mut all = parameters(path);
        if let Some(query) = operation.as_object_mut().and_then(|operation| operation.remove("query")) {
            all.as_array_mut().expect("a list").extend(query.as_array().cloned().unwrap_or_default());
        }
        operation["parameters"] = all;
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
            "schemas": schemas_with_error(),
        },
    })
}
