//! The outside edge of carrying out effects, replaceable: where an HTTP request is answered, where
//! a channel's message goes, what a command gives back. [`StandIn`] is the seam; the real edge is
//! reqwest, the channels and the process table (the rest of this module's parents), and
//! [`DrillStandIn`] is a drill's: it answers from the scenario's stand-ins, captures every message
//! and runs nothing. Everything before the edge stays real: the request is built and checked, its
//! secrets filled in (from [`Placeholders`] in a drill), the template rendered, the answer
//! scrubbed and judged by the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Revealed, SecretSource, http};
use crate::drill::model::{Answer, CommandStandIn, HttpStandIn};
use crate::engine::Outcome;
use crate::engine::effect::HttpRequest;
use crate::runbook::model::{Text, format_duration};

/// A request as it would go out: secrets filled in, the `Idempotency-Key` set.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub timeout: Duration,
    pub now: DateTime<Utc>,
}

/// A message a channel would have delivered, as it would have gone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Captured {
    pub at: DateTime<Utc>,
    pub incident: String,
    pub audience: String,
    pub occasion: String,
    pub channel: String,
    /// `stdout`, `file`, `webhook`, `slack` or `email`.
    pub kind: &'static str,
    /// Email recipients; a file's path; a webhook's URL.
    pub to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// What a webhook or Slack channel would have posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// The outside edge, as a drill replaces it.
pub trait StandIn: Send + Sync {
    /// The answer to a request, and how long it took.
    fn http(&self, request: &Sent) -> (Answer, Duration);
    /// What a command gives back.
    fn command(&self, argv: &[String]) -> Outcome;
    /// Takes a channel's message; `Err` says why it was not taken.
    fn deliver(&self, message: Captured) -> Result<(), String>;
}

/// Sends an HTTP step's or check's request to the stand-in: built as the real one is, answered
/// by the stand-in, scrubbed of the secrets sent. An answer slower than the timeout is a timeout.
pub(super) fn send(
    stand_in: &dyn StandIn,
    secrets: &dyn SecretSource,
    request: &HttpRequest,
    idempotency_key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let url = http::url(&request.url)?;
    let mut revealed = Revealed::new(secrets);
    let headers = http::headers(&request.headers, &mut revealed)?;
    let mut sent_headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    if let Some(key) = idempotency_key {
        sent_headers.push(("idempotency-key".to_string(), key.to_string()));
    }
    let method = request.method.trim().to_ascii_uppercase();
    let mut shown = url.clone();
    shown.set_query(None);
    let target = format!("{method} {shown}");
    let sent = Sent {
        method,
        url: url.to_string(),
        headers: sent_headers,
        body: request.body.clone(),
        timeout: request.timeout,
        now,
    };
    let (answer, delay) = stand_in.http(&sent);
    if delay > request.timeout {
        return Err(Error::Timeout { target, after: format_duration(request.timeout) });
    }
    let headers = answer.headers.iter().map(|(name, value)| (name.clone(), revealed.scrub(value))).collect();
    Ok(Outcome::Http { status: answer.status, headers, body: revealed.scrub_json(answer.body) })
}

/// Runs nothing: the stand-in says what the command gave. Its environment's secrets are still
/// looked up, so a missing one fails as it would.
pub(super) fn command(
    stand_in: &dyn StandIn,
    secrets: &dyn SecretSource,
    argv: &[String],
    env: &[(String, Text)],
) -> Result<Outcome, Error> {
    if argv.is_empty() {
        return Err(Error::EmptyCommand);
    }
    let mut revealed = Revealed::new(secrets);
    for (name, text) in env {
        revealed.text(text, || format!("environment variable `{name}`"))?;
    }
    Ok(match stand_in.command(argv) {
        Outcome::Command { exit_code, stdout, stderr } => {
            Outcome::Command { exit_code, stdout: revealed.scrub(&stdout), stderr: revealed.scrub(&stderr) }
        }
        other => other,
    })
}

/// Secrets in a drill: a placeholder for every name, never a real value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placeholders;

impl SecretSource for Placeholders {
    fn secret(&self, name: &str) -> Option<String> {
        Some(format!("drill-placeholder-{name}"))
    }
}

/// A drill's outside edge: the scenario's answers, every message captured, no command run.
pub struct DrillStandIn {
    http: Vec<HttpStandIn>,
    default: Answer,
    commands: Vec<CommandStandIn>,
    captured: Mutex<Vec<Captured>>,
    requests: Mutex<Vec<String>>,
    /// When each HTTP stand-in (by its place) was first asked: its answers' times count from then.
    first_asked: Mutex<BTreeMap<usize, DateTime<Utc>>>,
    /// Called with an answer's delay: the simulated clock moves on by it.
    wait: Arc<dyn Fn(Duration) + Send + Sync>,
}

impl DrillStandIn {
    pub fn new(scenario: &crate::drill::Scenario, wait: Arc<dyn Fn(Duration) + Send + Sync>) -> DrillStandIn {
        DrillStandIn {
            http: scenario.http.clone(),
            default: scenario.http_default.clone(),
            commands: scenario.commands.clone(),
            captured: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            first_asked: Mutex::new(BTreeMap::new()),
            wait,
        }
    }

    /// The messages captured since the last call.
    pub fn take_captured(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.captured.lock().expect("never poisoned"))
    }

    /// The requests answered since the last call, as `METHOD URL -> STATUS` lines.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().expect("never poisoned"))
    }
}

impl StandIn for DrillStandIn {
    fn http(&self, request: &Sent) -> (Answer, Duration) {
        let with_query = request.url.split('#').next().unwrap_or_default();
        let url = with_query.split('?').next().unwrap_or_default();
        // A stand-in whose URL has a query is matched with the query; others without it.
        let found = self.http.iter().enumerate().find(|(_, stand_in)| {
            let compared = if stand_in.url.contains('?') { with_query } else { url };
            stand_in.method.as_ref().is_none_or(|method| *method == request.method)
                && if stand_in.prefix { compared.starts_with(&stand_in.url) } else { compared == stand_in.url }
        });
        let answer = match found {
            Some((place, stand_in)) => {
                let first = *self.first_asked.lock().expect("never poisoned").entry(place).or_insert(request.now);
                let elapsed = (request.now - first).to_std().unwrap_or_default();
                stand_in
                    .answers
                    .iter()
                    .find(|(until, _)| until.is_none_or(|until| elapsed < until))
                    .or(stand_in.answers.last())
                    .map(|(_, answer)| answer.clone())
                    .unwrap_or_else(|| self.default.clone())
            }
            None => self.default.clone(),
        };
        let delay = answer.delay;
        // The request waits for the answer, or for its timeout.
        (self.wait)(delay.min(request.timeout));
        let line = if delay > request.timeout {
            format!("{} {url} -> no answer within {}", request.method, format_duration(request.timeout))
        } else {
            let unmatched = if found.is_none() { " (no stand-in matches: `http_default`)" } else { "" };
            format!("{} {url} -> {}{unmatched}", request.method, answer.status)
        };
        self.requests.lock().expect("never poisoned").push(line);
        (answer, delay)
    }

    fn command(&self, argv: &[String]) -> Outcome {
        match self.commands.iter().find(|stand_in| argv.first() == Some(&stand_in.program)) {
            Some(stand_in) => Outcome::Command {
                exit_code: stand_in.exit_code,
                stdout: stand_in.stdout.clone(),
                stderr: stand_in.stderr.clone(),
            },
            None => Outcome::Command { exit_code: 0, stdout: String::new(), stderr: String::new() },
        }
    }

    fn deliver(&self, message: Captured) -> Result<(), String> {
        self.captured.lock().expect("never poisoned").push(message);
        Ok(())
    }
}
