//! Customer campaigns' recipient lists: reading a list as a stream (CSV with a header, or JSON
//! Lines), validating each recipient as it is read, setting aside what cannot be sent with its
//! line number, sending a repeated recipient once, honouring a suppression list, and cutting
//! the list into numbered batches that can be read again, byte range by byte range, after a
//! crash. Offer codes (`code`) are derived here too. An adapter: it reads and writes files.

use serde::{Deserialize, Serialize};

pub mod code;
pub mod plan;
pub mod recipients;

/// How to read a campaign's list: which field is the recipient's id, which is the address, and
/// how many recipients a batch sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSpec {
    pub id_field: String,
    pub address_field: String,
    pub batch_size: u32,
}

/// One recipient as read from the list: where it was, who it is, where to send, and every field
/// of its line (strings, numbers, booleans as the list gives them), for the template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// 1-based line number in the list file (for CSV, the header is line 1).
    pub line: u64,
    pub id: String,
    pub address: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A numbered part of a campaign's list: the recipients between two byte offsets of the file,
/// less the lines set aside (duplicates and suppressed recipients; rejected lines are never in
/// a batch's count). Batch numbers start at 1 and follow the file's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    pub number: u32,
    /// Byte offset of the batch's first line.
    pub start: u64,
    /// Byte offset just past the batch's last line.
    pub end: u64,
    /// Line number of the batch's first line.
    pub first_line: u64,
    /// Lines in the range that are not sent: repeated recipient ids and suppressed recipients.
    pub skip: Vec<u64>,
    /// Recipients the batch sends to.
    pub recipients: u32,
}

/// What kind of failure a failed attempt to send a batch was: what `/metrics` counts failed
/// attempts by, and what the store keeps with the attempt's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The channel answered with a status that is not a success (an HTTP 503).
    HttpStatus,
    /// No connection, or one that broke off (refused, reset, no route).
    Connection,
    /// No complete answer in time.
    Timeout,
    /// The relay's SMTP reply said to try again later (4xx).
    SmtpReply,
    /// phasegate's outbound policy refused the destination.
    Refused,
    /// Something on this side: a spool file that cannot be written, nothing that could be rendered.
    Local,
}

impl FailureClass {
    pub const ALL: [FailureClass; 6] = [
        FailureClass::HttpStatus,
        FailureClass::Connection,
        FailureClass::Timeout,
        FailureClass::SmtpReply,
        FailureClass::Refused,
        FailureClass::Local,
    ];

    /// Its name in the store and in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::HttpStatus => "http_status",
            FailureClass::Connection => "connection",
            FailureClass::Timeout => "timeout",
            FailureClass::SmtpReply => "smtp_reply",
            FailureClass::Refused => "refused",
            FailureClass::Local => "local",
        }
    }

    pub fn parse(name: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|class| class.as_str() == name)
    }
}

/// A failed attempt to send a batch, as the store keeps it on the batch: the batch's last error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptFailure {
    /// Which attempt failed (the batch's first is 1).
    pub attempt: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    pub class: FailureClass,
    /// What failed, in words (scrubbed of secrets by the channel).
    pub error: String,
    /// When the batch goes again; `None` when its failure paused the campaign.
    pub retry_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What reading a list found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Lines read (not counting a CSV header or blank lines).
    pub read: u64,
    /// Recipients to send to: read less rejected, duplicates and suppressed.
    pub accepted: u64,
    /// Lines set aside in the rejects file (unparsable, missing or malformed id or address).
    pub rejected: u64,
    /// Lines whose recipient id came earlier in the list.
    pub duplicates: u64,
    /// Recipients on the suppression list.
    pub suppressed: u64,
}
