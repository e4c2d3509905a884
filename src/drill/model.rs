//! A drill scenario as the drill runs it: every time parsed, every reference checked against the
//! runbook, every action exactly one thing. Built only by `validate`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::runbook::Mark;

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// The runbook as written: a path relative to the scenario file, or an id.
    pub runbook: String,
    pub runbook_mark: Mark,
    pub start_at: DateTime<Utc>,
    pub starter: String,
    pub inputs: BTreeMap<String, Value>,
    pub key: Option<String>,
    /// How long the drill may run, in simulated time.
    pub until: Duration,
    pub people: BTreeMap<String, BTreeSet<String>>,
    pub http: Vec<HttpStandIn>,
    pub http_default: Answer,
    pub commands: Vec<CommandStandIn>,
    pub script: Vec<Scripted>,
    pub expect: Vec<Expectation>,
}

/// An HTTP answer a stand-in gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    pub delay: Duration,
}

impl Default for Answer {
    fn default() -> Answer {
        Answer { status: 404, headers: BTreeMap::new(), body: Value::Null, delay: Duration::ZERO }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpStandIn {
    /// Upper case; `None` answers any method.
    pub method: Option<String>,
    /// Without a query; with `prefix`, any URL that begins with it.
    pub url: String,
    pub prefix: bool,
    /// Each answer holds until its time since the start; the last's may be `None` (for ever).
    pub answers: Vec<(Option<Duration>, Answer)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandStandIn {
    pub program: String,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One scripted action: when, who, what. `index` is its place in the script.
#[derive(Debug, Clone, PartialEq)]
pub struct Scripted {
    pub index: usize,
    pub mark: Mark,
    pub when: When,
    /// The person acting; a webhook delivery has none.
    pub by: Option<String>,
    pub act: Act,
    /// The engine must refuse it.
    pub refused: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// This long after the start.
    At(Duration),
    /// This long after the incident began waiting for it.
    Waiting { wait: Waiting, after: Duration },
}

/// Something an incident waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// An approval gate (any of the phase's, when `gate` is `None`).
    Approval { phase: String, gate: Option<String> },
    /// A manual (or campaign) step waiting to be marked done.
    Step { phase: String, step: String },
    /// A signal gate.
    Signal { phase: String, gate: String },
    /// A step that failed for good.
    Failed { phase: String, step: String },
    /// Every phase is done or skipped and no relaxation is open.
    Closable,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    Approve {
        phase: String,
        gate: Option<String>,
        note: Option<String>,
    },
    Done {
        phase: String,
        step: String,
        evidence: Option<String>,
        outputs: BTreeMap<String, Value>,
    },
    Signal {
        phase: String,
        gate: String,
        note: Option<String>,
    },
    Note(String),
    Update(String),
    Close(Option<String>),
    Abandon(String),
    Retry {
        phase: String,
        step: String,
        reason: Option<String>,
    },
    Skip {
        phase: String,
        step: String,
        reason: String,
    },
    /// A delivery; its headers by lowercase name (a name given in two cases, values joined by `, `).
    Webhook {
        source: String,
        headers: BTreeMap<String, String>,
        payload: Value,
    },
}

impl Act {
    pub fn name(&self) -> &'static str {
        match self {
            Act::Approve { .. } => "approve",
            Act::Done { .. } => "done",
            Act::Signal { .. } => "signal",
            Act::Note(_) => "note",
            Act::Update(_) => "update",
            Act::Close(_) => "close",
            Act::Abandon(_) => "abandon",
            Act::Retry { .. } => "retry",
            Act::Skip { .. } => "skip",
            Act::Webhook { .. } => "webhook",
        }
    }
}

/// What must hold when the drill ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub mark: Mark,
    pub what: Expected,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    PhaseDone {
        phase: String,
        by: Option<Duration>,
    },
    Exposure {
        control: String,
        at_most: Duration,
    },
    Updates {
        audience: String,
        at_least: u32,
    },
    NoStepFailed,
    Closed {
        by: Option<Duration>,
    },
    /// `None`: every gate.
    GateWait {
        gate: Option<(String, String)>,
        at_most: Duration,
    },
}
