//! The `audit.witness` section: where each signed checkpoint is copied outside the database (an
//! append-only file, a webhook, or both). What the copies are for is `audit::witness`'s to say;
//! writing them is `runtime::witness`'s.
//!
//! ```yaml
//! audit:
//!   witness:
//!     file: /var/lib/phasegate-witness/checkpoints.jsonl
//!     webhook:
//!       url: https://witness.example/phasegate
//!       headers: { Authorization: { secret: WITNESS_TOKEN, prefix: "Bearer " } }
//!       timeout: 10s
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Error;
use crate::actions::outbound::Policy;
use crate::runbook::model::Text;

/// How long a webhook witness is given to answer unless configured otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The section's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    webhook: Option<WebhookFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, Text>,
    #[serde(default, deserialize_with = "timeout")]
    timeout: Option<Duration>,
}

fn timeout<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    super::duration("timeout", deserializer)
}

/// Where checkpoints are witnessed; neither when nothing is configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Witness {
    /// An append-only file of JSON lines.
    pub file: Option<PathBuf>,
    pub webhook: Option<Webhook>,
}

impl Witness {
    pub fn is_configured(&self) -> bool {
        self.file.is_some() || self.webhook.is_some()
    }
}

/// A URL each checkpoint is posted to, as JSON, through the outbound policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    /// Headers sent with each post; values may name secrets.
    pub headers: Vec<(String, Text)>,
    pub timeout: Duration,
}

/// The section read: the file made relative to the configuration's directory, the webhook's URL
/// checked against the outbound policy, and every secret it names declared.
pub(super) fn build(
    file: File,
    relative: impl Fn(PathBuf) -> PathBuf,
    policy: &Policy,
    secrets: &super::Secrets,
) -> Result<Witness, Error> {
    let webhook = match file.webhook {
        None => None,
        Some(webhook) => {
            let invalid = |what: String| Error::Invalid(format!("`audit.witness.webhook`: {what}"));
            let url = reqwest::Url::parse(&webhook.url)
                .map_err(|error| invalid(format!("`url: {}` is not a URL: {error}", webhook.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(format!("`url: {}` is not an http or https URL", webhook.url)));
            }
            policy.check_url(&url).map_err(|refusal| {
                invalid(format!("the outbound policy refuses it: {refusal}; allow it under `outbound.allow`"))
            })?;
            for (name, value) in &webhook.headers {
                if let Text::Secret { secret, .. } = value
                    && secrets.source(secret).is_none()
                {
                    return Err(invalid(format!(
                        "header `{name}` names secret `{secret}`, which `secrets` does not declare"
                    )));
                }
            }
            if webhook.timeout.is_some_and(|timeout| timeout.is_zero()) {
                return Err(invalid("`timeout` must be longer than zero".into()));
            }
            Some(Webhook {
                url: webhook.url,
                headers: webhook.headers.into_iter().collect(),
                timeout: webhook.timeout.unwrap_or(TIMEOUT),
            })
        }
    };
    Ok(Witness { file: file.file.map(relative), webhook })
}
