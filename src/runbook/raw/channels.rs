//! The shape of channels as written in YAML: where messages go, one kind each.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Text;
use crate::runbook::spanned::{List, Spanned, Table};

/// Where messages go. Exactly one kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Print to the standard output of `phasegate run`.
    #[serde(default)]
    pub stdout: Option<Empty>,
    /// Append to a file.
    #[serde(default)]
    pub file: Option<FileChannel>,
    /// POST a JSON document to a URL.
    #[serde(default)]
    pub webhook: Option<WebhookChannel>,
    /// POST to a Slack-compatible incoming webhook.
    #[serde(default)]
    pub slack: Option<SlackChannel>,
    /// Send email.
    #[serde(default)]
    pub email: Option<EmailChannel>,
    /// POST a campaign's messages, a batch at a time, as one JSON document (campaigns only).
    #[serde(default)]
    pub batch: Option<BatchChannel>,
    /// Write a campaign's messages to a JSON Lines file or `.eml` files (campaigns only).
    #[serde(default)]
    pub spool: Option<SpoolChannel>,
}

impl Channel {
    /// The keys of the kinds it has: one for a valid channel.
    pub fn kinds(&self) -> Vec<&'static str> {
        [
            ("stdout", self.stdout.is_some()),
            ("file", self.file.is_some()),
            ("webhook", self.webhook.is_some()),
            ("slack", self.slack.is_some()),
            ("email", self.email.is_some()),
            ("batch", self.batch.is_some()),
            ("spool", self.spool.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, present)| present.then_some(kind))
        .collect()
    }
}

/// The channel kinds a campaign may send through.
pub const CAMPAIGN_CHANNEL_KINDS: &[&str] = &["email", "batch", "spool"];

/// The channel kinds that carry campaign messages only, never an audience's updates.
pub const CAMPAIGN_ONLY_CHANNEL_KINDS: &[&str] = &["batch", "spool"];

/// Nothing to configure.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileChannel {
    /// The file to append to, relative to the working directory.
    pub path: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    pub url: Spanned<Text>,
    #[serde(default)]
    pub headers: Table<Text>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    /// The incoming-webhook URL; it contains a token, so it is always a secret.
    pub url_secret: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// Fixed recipients, for audiences; a campaign sends to each recipient's own address instead.
    #[serde(default)]
    pub to: List<String>,
    /// The sender, `address` or `Name <address>`; `phasegate@localhost` when omitted.
    #[serde(default)]
    pub from: Option<String>,
    /// The name of the secret holding the SMTP relay URL with its credentials:
    /// `smtp://user:pass@relay:587` (STARTTLS, required unless the relay is on loopback) or
    /// `smtps://user:pass@relay:465` (TLS).
    pub relay_secret: Spanned<String>,
    /// How many SMTP connections a campaign keeps open to the relay, 1 to 64; 8 when omitted.
    #[serde(default)]
    pub connections: Option<Spanned<u32>>,
}

/// A bulk-mail provider or relay taking a campaign's messages a batch per request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchChannel {
    /// Where each batch is POSTed: text, or a secret holding the URL.
    pub url: Spanned<Text>,
    #[serde(default)]
    pub headers: Table<Text>,
}

/// A hand-over to another system: a campaign's messages written where it picks them up.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpoolChannel {
    /// The JSON Lines file (for `jsonl`) or the directory of `.eml` files (for `eml`), relative
    /// to the working directory.
    pub path: Spanned<String>,
    /// `jsonl` (one line per message) when omitted, or `eml` (one RFC 5322 file per message).
    #[serde(default)]
    pub format: Option<Spanned<SpoolFormat>>,
    /// The sender of `eml` messages, `address` or `Name <address>`; `phasegate@localhost` when omitted.
    #[serde(default)]
    pub from: Option<String>,
}

/// How a spool channel writes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFormat {
    /// One JSON document per line, per message, in one file.
    Jsonl,
    /// One RFC 5322 message per file, in one directory.
    Eml,
}
