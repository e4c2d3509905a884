//! Carrying out side effects: the engine decides them as data ([`Effect`]), the runtime stores
//! them, and this adapter does them: HTTP requests for steps and checks (`http`), commands
//! (`command`), status updates rendered and delivered to channels (`notify`; email through an
//! SMTP relay in `email`). Every result,
//! success or not, comes back as an [`Outcome`] for the engine to record; nothing here panics on
//! what the outside world answers. HTTP goes only where the outbound policy (`outbound`) allows.
//!
//! Secrets reach this module by name only. [`SecretSource`] gives their values at the last moment,
//! and `Revealed` remembers the values it gave for one effect so that whatever comes back (a
//! response body, a command's output) is scrubbed of them before it becomes an event. Error
//! messages name secrets, never their values.

mod body;
pub mod campaign;
mod command;
pub mod email;
mod http;
mod notify;
pub mod outbound;
pub mod standin;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::engine::effect::HttpRequest;
use crate::engine::{Effect, EffectKind, Event, Incident, Outcome};
use crate::render::{self, Catalog};
use crate::runbook::Runbook;
use crate::runbook::model::Text;

/// Largest response body kept, in bytes; the rest is cut and the cut flagged.
pub const MAX_BODY: usize = 64 * 1024;

/// Largest part of a command's standard output, and of its standard error, kept, in bytes.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// How long a notify channel's HTTP delivery (webhook, Slack) may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The response header that says the body was cut at [`MAX_BODY`] bytes. The outcome has no
/// other place for it, and conditions can read it (`response.headers["x-phasegate-body-truncated"]`).
pub const TRUNCATED_HEADER: &str = "x-phasegate-body-truncated";

/// Gives the value of a secret by name. Configuration implements it; the value is asked for each
/// time it is needed and never kept beyond the effect that needs it.
pub trait SecretSource: Send + Sync {
    fn secret(&self, name: &str) -> Option<String>;
}

/// Secrets given by a map, as tests and embedders have them.
impl SecretSource for BTreeMap<String, String> {
    fn secret(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// What a notify effect renders from: the incident as its log leaves it, and the time.
#[derive(Debug, Clone, Copy)]
pub struct IncidentView<'a> {
    pub runbook: &'a Runbook,
    pub incident: &'a Incident,
    pub events: &'a [Event],
    pub now: DateTime<Utc>,
}

/// Why an effect could not be carried out. Each becomes `Outcome::Failed` with this message, so
/// every message says what went wrong without a secret's value in it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error(
        "secret `{name}` has no value (needed for {purpose}); declare it under `secrets:` in the configuration, with an environment variable or file that holds it"
    )]
    MissingSecret { name: String, purpose: String },
    #[error("`{0}` is not an HTTP method")]
    Method(String),
    #[error("`{url}` is not a URL phasegate can call: {reason}")]
    Url { url: String, reason: String },
    #[error("`{0}` is not a valid HTTP header name")]
    HeaderName(String),
    #[error("the value of header `{0}` is not a valid HTTP header value")]
    HeaderValue(String),
    #[error("{target}: no complete answer within {after}")]
    Timeout { target: String, after: String },
    #[error("{target}: {reason}")]
    Request { target: String, reason: String },
    #[error("{target}: {}: {refusal}", if *.redirected { "redirect not followed" } else { "not sent" })]
    Refused { target: String, refusal: outbound::Refusal, redirected: bool },
    #[error("{0}")]
    Campaign(String),
    #[error("a campaign is sent by the runtime's campaign sender, not as a single effect")]
    CampaignElsewhere,
    #[error("commands are disabled; enable them with `commands: true` in the configuration")]
    CommandsDisabled,
    #[error("the command has no program to run")]
    EmptyCommand,
    #[error("cannot start `{program}`: {error}")]
    Spawn { program: String, error: std::io::Error },
    #[error("`{program}` failed while running: {error}")]
    Wait { program: String, error: std::io::Error },
    #[error("`{program}` did not finish within {after} and was killed")]
    CommandTimeout { program: String, after: String },
    #[error("audience `{0}` does not exist in the runbook")]
    UnknownAudience(String),
    #[error("template `{0}` does not exist")]
    UnknownTemplate(String),
    #[error("{} not exist in the runbook", channels_text(.0))]
    UnknownChannels(Vec<String>),
    #[error("{kind} channel `{channel}`: {reason}")]
    Channel { kind: &'static str, channel: String, reason: String },
    #[error("{}", undelivered_text(.failed, .sent))]
    Undelivered { failed: Vec<Error>, sent: Vec<String> },
    #[error(transparent)]
    Render(#[from] render::Error),
}

fn channels_text(channels: &[String]) -> String {
    let names: Vec<String> = channels.iter().map(|c| format!("`{c}`")).collect();
    match names.as_slice() {
        [one] => format!("channel {one} does"),
        many => format!("channels {} do", many.join(", ")),
    }
}

fn undelivered_text(failed: &[Error], sent: &[String]) -> String {
    let reasons: Vec<String> = failed.iter().map(ToString::to_string).collect();
    let mut text = format!("not delivered: {}", reasons.join("; "));
    if !sent.is_empty() {
        let names: Vec<String> = sent.iter().map(|c| format!("`{c}`")).collect();
        text.push_str(&format!(" (delivered to {})", names.join(", ")));
    }
    text
}

/// Carries out effects. Cheap to share: wrap it in an `Arc` and call it from many tasks.
pub struct Actions {
    client: reqwest::Client,
    outbound: Arc<outbound::Policy>,
    secrets: Arc<dyn SecretSource>,
    catalog: Arc<Catalog>,
    commands: bool,
    stdout: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Replaces the outside edge (a drill's stand-ins): nothing is sent, delivered or run.
    stand_in: Option<Arc<dyn standin::StandIn>>,
    /// Each running campaign's renderer and channel sender, made at its first batch.
    kept: Arc<campaign::job::Kept>,
}

impl Actions {
    /// Actions rendering with `catalog` and reading secrets from `secrets`. Commands are refused
    /// until [`Actions::allow_commands`] says otherwise: running programs on the host is a
    /// decision for whoever configures phasegate, not for whoever writes a runbook. Likewise HTTP
    /// goes only to public addresses until [`Actions::with_outbound`] allows more.
    pub fn new(catalog: Arc<Catalog>, secrets: Arc<dyn SecretSource>) -> Result<Actions, Error> {
        let outbound = Arc::new(outbound::Policy::default());
        Ok(Actions {
            client: client(&outbound)?,
            outbound,
            secrets,
            catalog,
            commands: false,
            stdout: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            stand_in: None,
            kept: Arc::default(),
        })
    }

    /// Where HTTP steps, checks and notify channels may go (configuration's `outbound`).
    pub fn with_outbound(mut self, policy: outbound::Policy) -> Result<Actions, Error> {
        self.outbound = Arc::new(policy);
        self.client = client(&self.outbound)?;
        Ok(self)
    }

    /// Whether command steps may run programs (configuration's `commands: true`).
    pub fn allow_commands(mut self, allowed: bool) -> Actions {
        self.commands = allowed;
        self
    }

    /// Where `stdout` channels write (standard output unless replaced, as tests do).
    pub fn with_stdout(mut self, writer: impl Write + Send + 'static) -> Actions {
        self.stdout = Arc::new(Mutex::new(Box::new(writer)));
        self
    }

    /// Replaces the outside edge with `stand_in`: requests are answered by it, messages given to
    /// it and commands answered by it; nothing leaves the process.
    pub fn with_stand_in(mut self, stand_in: Arc<dyn standin::StandIn>) -> Actions {
        self.stand_in = Some(stand_in);
        self
    }

    /// Sends a request that no runbook asked for (the audit witness's posts of checkpoints) as
    /// http steps are sent: where the outbound policy allows, secrets filled in by name, and
    /// `idempotency_key` in its header. The answer, whatever its status, or why there was none.
    pub async fn send_request(&self, request: &HttpRequest, idempotency_key: Option<&str>) -> Result<Outcome, Error> {
        http::send(&self.client, &self.outbound, self.secrets.as_ref(), request, idempotency_key).await
    }

    /// The sender of a campaign's batches through batch channel `channel`: its URL and headers
    /// with their secrets' values, through this client, so held to the outbound policy. An error
    /// names the channel and any secret without a value; see [`campaign::batch::BatchHttp::for_channel`].
    pub fn batch_http(
        &self,
        channel: &crate::runbook::model::Channel,
        timeout: Duration,
    ) -> Result<campaign::batch::BatchHttp, Error> {
        campaign::batch::BatchHttp::with_client(channel, self.secrets.as_ref(), &self.client, &self.outbound, timeout)
    }

    /// Carries out one effect and says how it went. Never fails: what goes wrong is the outcome.
    pub async fn carry_out(&self, effect: &Effect, view: &IncidentView<'_>) -> Outcome {
        let kind = match &effect.kind {
            EffectKind::Http { .. } => "http",
            EffectKind::Command { .. } => "command",
            EffectKind::Check { .. } => "check",
            EffectKind::Notify { .. } => "notify",
            EffectKind::Campaign { .. } => "campaign",
        };
        let span =
            tracing::info_span!("effect", incident.id = %view.incident.id, effect.id = %effect.id, effect.kind = kind);
        async {
            let result = match (&effect.kind, &self.stand_in) {
                (EffectKind::Http { idempotency_key, request, .. }, Some(stand_in)) => {
                    let key = Some(idempotency_key.as_str());
                    standin::send(stand_in.as_ref(), self.secrets.as_ref(), request, key, view.now)
                }
                (EffectKind::Check { request, .. }, Some(stand_in)) => {
                    standin::send(stand_in.as_ref(), self.secrets.as_ref(), request, None, view.now)
                }
                (EffectKind::Command { argv, env, .. }, Some(stand_in)) => {
                    standin::command(stand_in.as_ref(), self.secrets.as_ref(), argv, env)
                }
                (EffectKind::Http { idempotency_key, request, .. }, None) => {
                    let key = Some(idempotency_key.as_str());
                    http::send(&self.client, &self.outbound, self.secrets.as_ref(), request, key).await
                }
                (EffectKind::Check { request, .. }, None) => {
                    http::send(&self.client, &self.outbound, self.secrets.as_ref(), request, None).await
                }
                (EffectKind::Command { argv, env, timeout, .. }, None) => {
                    if self.commands {
                        command::run(self.secrets.as_ref(), argv, env, *timeout).await
                    } else {
                        Err(Error::CommandsDisabled)
                    }
                }
                // A campaign runs for hours with its progress in the store: the runtime's campaign
                // sender carries it out, a batch at a time, with the senders of `campaign`.
                (EffectKind::Campaign { .. }, _) => Err(Error::CampaignElsewhere),
                (EffectKind::Notify { audience, template, channels, occasion, message, .. }, _) => {
                    let key = notice_key(effect);
                    let notice =
                        notify::Notice { audience, template, channels, occasion, message: message.as_deref(), key };
                    notify::send(self, &notice, view).await
                }
            };
            match result {
                Ok(outcome) => {
                    match &outcome {
                        Outcome::Http { status, .. } => tracing::info!(status, "answered"),
                        Outcome::Command { exit_code, .. } => tracing::info!(exit_code, "finished"),
                        Outcome::Sent { channels, .. } => tracing::info!(channels = ?channels, "sent"),
                        Outcome::Failed { error } => tracing::warn!(%error, "failed"),
                        Outcome::Campaign(totals) => tracing::info!(sent = totals.sent, "campaign finished"),
                    }
                    outcome
                }
                Err(error) => {
                    // Messages are built without secret values, so the log may carry them.
                    tracing::warn!(%error, "failed");
                    Outcome::Failed { error: error.to_string() }
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// What stays the same across every attempt of one notify effect, for the email `Message-ID`: a
/// notify step's effects are `KEY/attempt-N`, all with the step's idempotency key `KEY`; a status
/// update is one effect, carried out again only after a crash, and its id is its key.
fn notice_key(effect: &Effect) -> &str {
    match &effect.kind {
        EffectKind::Notify { step: Some(_), .. } => {
            effect.id.rsplit_once("/attempt-").map_or(&effect.id, |(key, _)| key)
        }
        _ => &effect.id,
    }
}

/// The HTTP client for steps, checks and notify channels, resolving names through the policy.
fn client(policy: &Arc<outbound::Policy>) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        // The client follows no redirect itself: a redirect is an answer for the step's `expect`
        // unless the policy says to follow it, and then `http` follows it hop by hop, checking
        // each and keeping the step's credentials from other origins.
        .redirect(reqwest::redirect::Policy::none())
        // No proxy from the environment: where a request goes must not change with a
        // variable that happens to be set for the process (and a proxy would connect for us,
        // out of the policy's sight).
        .no_proxy()
        // Every name is resolved through the policy, so the address checked is the address
        // connected to.
        .dns_resolver(Arc::new(outbound::Resolver::new(Arc::clone(policy))))
        .user_agent(concat!("phasegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::Client(error.to_string()))
}

/// The secret values revealed for one effect, by name, so that what comes back can be scrubbed.
struct Revealed<'s> {
    source: &'s dyn SecretSource,
    values: Vec<(String, String)>,
}

/// Secrets shorter than this are not scrubbed from what comes back: a two-letter value would
/// mangle every answer it happens to occur in, and is no secret worth the name anyway.
const SHORTEST_SCRUBBED: usize = 4;

impl<'s> Revealed<'s> {
    fn new(source: &'s dyn SecretSource) -> Revealed<'s> {
        Revealed { source, values: Vec::new() }
    }

    /// The text a runbook value stands for: itself, or the secret's value after its prefix.
    /// `purpose` says what needs it, for the error naming a missing secret.
    fn text(&mut self, text: &Text, purpose: impl FnOnce() -> String) -> Result<String, Error> {
        match text {
            Text::Literal(literal) => Ok(literal.clone()),
            Text::Secret { secret, prefix } => {
                let value = self.secret(secret, purpose)?;
                Ok(format!("{}{value}", prefix.as_deref().unwrap_or_default()))
            }
        }
    }

    /// A secret's value by name.
    fn secret(&mut self, name: &str, purpose: impl FnOnce() -> String) -> Result<String, Error> {
        let value = self
            .source
            .secret(name)
            .ok_or_else(|| Error::MissingSecret { name: name.to_string(), purpose: purpose() })?;
        if !self.values.iter().any(|(_, known)| *known == value) {
            self.values.push((name.to_string(), value.clone()));
        }
        Ok(value)
    }

    /// Also scrubs `value` as part of secret `name`: what a revealed value holds that could come
    /// back on its own (a relay URL's user and password, which the relay may quote).
    fn part(&mut self, name: &str, value: &str) {
        if !self.values.iter().any(|(_, known)| known == value) {
            self.values.push((name.to_string(), value.to_string()));
        }
    }

    /// The length of the longest value revealed: how far past a cut a value may reach.
    fn longest(&self) -> usize {
        self.values.iter().map(|(_, value)| value.len()).max().unwrap_or(0)
    }

    /// `text` with every revealed value replaced by a marker naming the secret.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (name, value) in &self.values {
            if value.len() >= SHORTEST_SCRUBBED && text.contains(value.as_str()) {
                text = text.replace(value.as_str(), &format!("[secret `{name}`]"));
            }
        }
        text
    }

    /// A JSON value with every string (and key) scrubbed.
    fn scrub_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.values.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.scrub(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(|item| self.scrub_json(item)).collect()),
            Value::Object(fields) => {
                Value::Object(fields.into_iter().map(|(key, item)| (self.scrub(&key), self.scrub_json(item))).collect())
            }
            other => other,
        }
    }
}

/// Bytes read as text, scrubbed, and cut to `cap` bytes (on a character boundary) when longer.
/// The bytes may run past `cap` by the longest secret, so that a secret straddling the cut is
/// recognised and scrubbed before the cut, not half-kept.
fn scrubbed_text(bytes: &[u8], cap: usize, revealed: &Revealed<'_>) -> String {
    let mut text = revealed.scrub(&String::from_utf8_lossy(bytes));
    if text.len() > cap {
        let mut end = cap;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, String> {
        BTreeMap::from([("token".to_string(), "s3cr3t-token".to_string()), ("pin".to_string(), "42".to_string())])
    }

    #[test]
    fn revealed_secrets_are_scrubbed_from_what_comes_back() {
        let source = secrets();
        let mut revealed = Revealed::new(&source);
        let header = Text::Secret { secret: "token".into(), prefix: Some("Bearer ".into()) };
        assert_eq!(revealed.text(&header, || "a header".into()).unwrap(), "Bearer s3cr3t-token");
        assert_eq!(revealed.secret("pin", || "a pin".into()).unwrap(), "42");
        assert_eq!(revealed.scrub("you sent Bearer s3cr3t-token, 42"), "you sent Bearer [secret `token`], 42");
        let json = serde_json::json!({ "echo": ["s3cr3t-token"], "s3cr3t-token": 1 });
        assert_eq!(
            revealed.scrub_json(json),
            serde_json::json!({ "echo": ["[secret `token`]"], "[secret `token`]": 1 })
        );
    }

    #[test]
    fn a_missing_secret_is_named_with_what_needs_it() {
        let source = secrets();
        let mut revealed = Revealed::new(&source);
        let error = revealed.secret("edr-key", || "header `Authorization`".into()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "secret `edr-key` has no value (needed for header `Authorization`); declare it under `secrets:` in the \
             configuration, with an environment variable or file that holds it"
        );
    }

    #[test]
    fn a_cut_never_keeps_half_a_secret() {
        let source = secrets();
        let mut revealed = Revealed::new(&source);
        revealed.secret("token", String::new).unwrap();
        let bytes = format!("{}s3cr3t-token and more", "x".repeat(10));
        let text = scrubbed_text(bytes.as_bytes(), 14, &revealed);
        assert_eq!(text, "xxxxxxxxxx[sec");
        assert_eq!(scrubbed_text("héllo".as_bytes(), 2, &revealed), "h");
    }

    #[test]
    fn messages_name_channels_and_what_was_delivered() {
        assert_eq!(Error::UnknownChannels(vec!["a".into()]).to_string(), "channel `a` does not exist in the runbook");
        let failed =
            vec![Error::Channel { kind: "slack", channel: "soc".into(), reason: "delivery failed: status 500".into() }];
        let error = Error::Undelivered { failed, sent: vec!["out".into()] };
        assert_eq!(
            error.to_string(),
            "not delivered: slack channel `soc`: delivery failed: status 500 (delivered to `out`)"
        );
    }
}
