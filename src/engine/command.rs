//! Commands: what people, triggers and the runtime ask of an incident.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::effect::{Effect, Outcome};

/// A command, who gives it and when. Time comes in here: the engine never reads a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub actor: String,
    pub at: DateTime<Utc>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open an incident. `runbook_text` is the file as read; its hash pins it.
    Start { incident: String, runbook_text: String, inputs: BTreeMap<String, serde_json::Value>, key: Option<String> },
    /// Approve an approval gate of a phase; `gate` may be left out when the phase has only one
    /// approval gate waiting.
    Approve { phase: String, gate: Option<String>, note: Option<String> },
    /// Mark a manual step done, with evidence and the outputs it declares.
    CompleteStep { phase: String, step: String, evidence: Option<String>, outputs: BTreeMap<String, serde_json::Value> },
    /// Give a signal gate its signal (from a trigger, or by a person holding the gate's role).
    Signal { phase: String, gate: String, note: Option<String> },
    /// Add a note to the timeline.
    Note { text: String },
    /// Send a status update to an audience now.
    StatusUpdate { audience: String },
    /// Close the incident.
    Close { note: Option<String> },
    /// Time has passed: timers, retries, check polls, overdue relaxations, regular updates.
    Tick,
    /// The runtime carried out this effect (as taken from the outbox) with this outcome.
    Record { effect: Effect, outcome: Outcome },
}
