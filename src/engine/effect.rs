//! Side effects as data: what the engine decided should happen outside, for the runtime to carry
//! out after the events that caused it are stored. Each result comes back as a [`Outcome`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runbook::model::Text;

/// One thing to do outside. `id` is unique among all effects of all incidents; the outbox holds
/// each id once, so an effect is never queued twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub id: String,
    #[serde(flatten)]
    pub kind: EffectKind,
}

/// An HTTP request with every `${ }` already evaluated; secrets are still names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Text)>,
    pub body: Option<serde_json::Value>,
    #[serde(with = "seconds")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum EffectKind {
    /// An http step's attempt. `idempotency_key` is the same for every attempt of the step, so
    /// that a server seeing a retry of a request it already carried out does not repeat it.
    Http { phase: String, step: String, attempt: u32, idempotency_key: String, request: HttpRequest },
    /// A command step's attempt: the program and arguments, run without a shell.
    Command {
        phase: String,
        step: String,
        attempt: u32,
        argv: Vec<String>,
        env: Vec<(String, Text)>,
        #[serde(with = "seconds")]
        timeout: Duration,
    },
    /// One poll of a check gate.
    Check { phase: String, gate: String, poll: u32, request: HttpRequest },
    /// Render a status update for an audience and send it to channels. `step` is set when a
    /// notify step asked for it (its outcome completes the step).
    Notify {
        audience: String,
        template: String,
        channels: Vec<String>,
        occasion: String,
        message: Option<String>,
        step: Option<(String, String)>,
    },
    /// A campaign step's attempt: send its messages. `campaign` is `INCIDENT/PHASE/STEP`, the
    /// key its progress is kept under; `list` is the recipient list's path (the input's value).
    /// The rest of what it needs is the step's model in the incident's runbook.
    Campaign { phase: String, step: String, attempt: u32, campaign: String, list: String },
}

/// What carrying out an effect gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// An HTTP answer: status, headers (lowercase names) and the body, parsed as JSON when it is.
    Http { status: u16, headers: BTreeMap<String, String>, body: serde_json::Value },
    /// A command finished.
    Command { exit_code: i32, stdout: String, stderr: String },
    /// A status update went out to these channels; `text` is what it said (its plain-text
    /// variant, else Markdown, else HTML), for the log.
    Sent {
        channels: Vec<String>,
        #[serde(default)]
        text: Option<String>,
    },
    /// It could not be carried out (refused, unreachable, timed out); `error` says why.
    Failed { error: String },
    /// A campaign ended: sent to everyone it could, or cancelled.
    Campaign(CampaignTotals),
}

/// What a campaign did, as its `campaign_finished` event records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignTotals {
    /// Recipients the list gave to send to (after rejects, duplicates and suppressions).
    pub recipients: u64,
    /// Messages the channel accepted.
    pub sent: u64,
    /// Recipients whose message was refused for good (by the channel, or a render that failed).
    pub failed: u64,
    /// Lines of the list set aside (see the rejects file), never sent.
    pub rejected: u64,
    /// Lines whose recipient id came earlier in the list.
    pub duplicates: u64,
    /// Recipients on the suppression list.
    pub suppressed: u64,
    pub batches: u32,
    /// Batches that were in flight when the sender stopped (a crash): sent again with the same
    /// idempotency key, so their recipients may have got the message twice if the channel does
    /// not honour the key.
    pub possible_repeats: Vec<u32>,
    /// The root of the Merkle tree over every recipient's outcome (`docs/audit.md`), in hex.
    pub merkle_root: String,
    /// The tree's leaves: one per recipient the campaign tried.
    pub leaves: u64,
    /// Cancelled by a person before every batch was sent.
    pub cancelled: bool,
    /// How many recipients failed for each reason (the channel's refusals, a message that could
    /// not be rendered), the most common first reasons only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed_by_reason: BTreeMap<String, u64>,
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}
