//! The shape of a drill scenario as written in YAML, before validation (`docs/drill.md` describes
//! every key). Rules that relate one part to another, or to the runbook, live in `validate.rs`.

use serde::Deserialize;

use crate::runbook::spanned::{List, Spanned, Table};

/// A rehearsal of one runbook on a simulated clock.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Always `phasegate/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: Spanned<String>,
    /// Always `Drill`.
    pub kind: Spanned<String>,
    /// The drill's name: with the start time, it makes the incident's id.
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The runbook: a path relative to the scenario file, or a runbook id.
    pub runbook: Spanned<String>,
    pub start: Spanned<Start>,
    /// How long the drill may run in simulated time (default `30d`).
    #[serde(default)]
    pub until: Option<Spanned<String>>,
    /// People and the roles they hold.
    pub people: Spanned<Table<List<String>>>,
    /// Stand-ins for the outside systems.
    #[serde(default)]
    pub stand_ins: Option<Spanned<StandIns>>,
    /// What people and automation do.
    #[serde(default)]
    pub script: List<Action>,
    /// What must hold at the end.
    #[serde(default)]
    pub expect: List<Expectation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// An RFC 3339 time, for example `2026-11-24T02:14:00Z`.
    pub at: Spanned<String>,
    /// Who declares the incident.
    #[serde(rename = "as")]
    pub by: Spanned<String>,
    #[serde(default)]
    pub inputs: Option<Spanned<serde_json::Map<String, serde_json::Value>>>,
    #[serde(default)]
    pub key: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandIns {
    #[serde(default)]
    pub http: List<HttpStandIn>,
    /// The answer to a request no stand-in matches (default: status 404, no body).
    #[serde(default)]
    pub http_default: Option<Spanned<Answer>>,
    #[serde(default)]
    pub commands: List<CommandStandIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStandIn {
    /// `GET`, `POST`, ... (any method when left out).
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// The URL as the runbook sends it, compared without its query unless this has one; `*` at
    /// the end matches any rest.
    pub url: Spanned<String>,
    /// One answer for the whole drill (or use `answers`).
    #[serde(default)]
    pub status: Option<Spanned<u16>>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub headers: Option<Spanned<serde_json::Map<String, serde_json::Value>>>,
    /// How long the answer takes; longer than the request's timeout is a timeout.
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    /// Answers that change with simulated time: each holds until its `until`, counted from the
    /// first request this stand-in answered.
    #[serde(default)]
    pub answers: Option<List<TimedAnswer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    #[serde(default)]
    pub status: Option<Spanned<u16>>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub headers: Option<Spanned<serde_json::Map<String, serde_json::Value>>>,
    /// How long the answer takes; longer than the request's timeout is a timeout.
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedAnswer {
    /// This answer is given while less than this has passed since the stand-in was first asked;
    /// the last may leave it out.
    #[serde(default)]
    pub until: Option<Spanned<String>>,
    #[serde(default)]
    pub status: Option<Spanned<u16>>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub headers: Option<Spanned<serde_json::Map<String, serde_json::Value>>>,
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandStandIn {
    /// The program (`argv[0]`) the stand-in answers for.
    pub program: Spanned<String>,
    #[serde(default)]
    pub exit_code: Option<Spanned<i32>>,
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
}

/// One thing someone does: when, who, and exactly one action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Simulated time after the start, for example `15m`.
    #[serde(default)]
    pub at: Option<Spanned<String>>,
    /// What must be waiting: `approval of PHASE[/GATE]`, `step PHASE/STEP`, `signal PHASE/GATE`,
    /// `failed PHASE/STEP`, `closable`.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// With `when`: how long after the wait began.
    #[serde(default)]
    pub after: Option<Spanned<String>>,
    /// The person acting (not for `webhook`).
    #[serde(default, rename = "as")]
    pub by: Option<Spanned<String>>,
    /// `PHASE` or `PHASE/GATE`.
    #[serde(default)]
    pub approve: Option<Spanned<String>>,
    /// `PHASE/STEP`.
    #[serde(default)]
    pub done: Option<Spanned<String>>,
    #[serde(default)]
    pub evidence: Option<String>,
    #[serde(default)]
    pub outputs: Option<Spanned<serde_json::Map<String, serde_json::Value>>>,
    /// `PHASE/GATE`.
    #[serde(default)]
    pub signal: Option<Spanned<String>>,
    #[serde(default)]
    pub note: Option<Spanned<String>>,
    /// An audience.
    #[serde(default)]
    pub update: Option<Spanned<String>>,
    /// Close the incident, with this note (may be empty).
    #[serde(default)]
    pub close: Option<Spanned<serde_json::Value>>,
    /// A webhook delivery.
    #[serde(default)]
    pub webhook: Option<Spanned<Webhook>>,
    /// `PHASE/STEP`: another attempt of a step that failed for good.
    #[serde(default)]
    pub retry: Option<Spanned<String>>,
    /// `PHASE/STEP`: skip a step that failed for good (with `reason`).
    #[serde(default)]
    pub skip: Option<Spanned<String>>,
    /// Close the incident early, as abandoned, with this reason.
    #[serde(default)]
    pub abandon: Option<Spanned<String>>,
    /// Why, for `retry` and `skip`.
    #[serde(default)]
    pub reason: Option<Spanned<String>>,
    /// `true`: the engine must refuse this action (a rehearsal of a right being enforced).
    #[serde(default)]
    pub refused: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The source as the runbook's triggers name it.
    pub source: Spanned<String>,
    pub payload: Spanned<serde_json::Value>,
    /// The request's headers, by name (in any case), as the triggers read them in `headers`.
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

/// One thing that must hold at the end: exactly one of the keys that name what.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// A phase that must be done (with `by`).
    #[serde(default)]
    pub phase_done: Option<Spanned<String>>,
    /// A control whose relaxation must last at most `at_most`.
    #[serde(default)]
    pub exposure: Option<Spanned<String>>,
    /// An audience that must have been sent at least `at_least` updates.
    #[serde(default)]
    pub updates: Option<Spanned<String>>,
    /// `true`: no step failed, for good or on an attempt that was retried.
    #[serde(default)]
    pub no_step_failed: Option<Spanned<bool>>,
    /// `true`: the incident is closed (by `by`, if given).
    #[serde(default)]
    pub closed: Option<Spanned<bool>>,
    /// `PHASE/GATE`, or `any`: the gate's wait is at most `at_most`.
    #[serde(default)]
    pub gate_wait: Option<Spanned<String>>,
    #[serde(default)]
    pub by: Option<Spanned<String>>,
    #[serde(default)]
    pub at_most: Option<Spanned<String>>,
    #[serde(default)]
    pub at_least: Option<Spanned<u32>>,
}
