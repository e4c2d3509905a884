//! Sending a campaign's messages, a batch at a time, through a campaign channel: batch HTTP (the
//! wire format relays rely on, `batch.rs`), a spool file for another system (`spool.rs`), or
//! email through a pool of SMTP connections (`smtp.rs`). A batch's answer says which messages
//! were refused for good; anything else is a failed attempt of the whole batch, which the runtime
//! retries with the same idempotency key.

pub mod batch;
pub mod job;
pub mod spool;

use serde::{Deserialize, Serialize};

pub use crate::campaign::FailureClass;

pub mod smtp;

/// One personal message, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The recipient's id.
    pub id: String,
    /// The recipient's address.
    pub to: String,
    pub subject: String,
    pub text: String,
    /// Only when the template has an HTML variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// A batch to send: `campaign` is `INCIDENT/PHASE/STEP`; the idempotency key is
/// `{campaign}/{number}`, the same on every attempt.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub campaign: &'a str,
    pub number: u32,
    pub messages: &'a [Message],
}

impl Batch<'_> {
    pub fn idempotency_key(&self) -> String {
        idempotency_key(self.campaign, self.number)
    }
}

/// Batch `number`'s idempotency key in `campaign`: the same on every attempt of the batch.
pub fn idempotency_key(campaign: &str, number: u32) -> String {
    format!("{campaign}/{number}")
}

/// What a channel said about a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Taken, except these messages (recipient id, reason), refused for good.
    Accepted { rejected: Vec<(String, String)> },
    /// Not taken (no answer, or an answer that is not a success): try the whole batch again.
    /// `class` says what kind of failure it was, `error` what failed, in words.
    Failed { error: String, class: FailureClass },
}

/// One batch of a campaign to render and send: the incident as its log leaves it, the step, and
/// the batch's recipients as read back from the list.
pub struct BatchJob<'a> {
    pub runbook: &'a crate::runbook::Runbook,
    pub incident: &'a crate::engine::Incident,
    pub events: &'a [crate::engine::Event],
    pub now: chrono::DateTime<chrono::Utc>,
    pub phase: &'a str,
    pub step: &'a str,
    /// `INCIDENT/PHASE/STEP`.
    pub campaign: &'a str,
    pub number: u32,
    /// Shared, so that rendering on other threads takes them without a copy.
    pub recipients: std::sync::Arc<[crate::campaign::Recipient]>,
}

/// What became of a batch: the channel's answer (with the recipients whose message could not
/// even be rendered among the refused), and one Merkle leaf per recipient, in the batch's order,
/// with the digest of the message as sent and its outcome.
pub struct BatchSent {
    pub answer: Answer,
    pub leaves: Vec<crate::audit::merkle::Leaf>,
}
