//! The server's part of the configuration: where `phasegate serve` listens and who may call it.
//! API tokens are stored only as their SHA-256 (`phasegate token PERSON` makes one), each mapped
//! to a person the configuration knows, whose roles are the token's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Error;

/// Where the server listens unless configured otherwise: loopback only.
pub const LISTEN: &str = "127.0.0.1:8080";

/// The largest request body the server reads, unless configured otherwise.
pub const MAX_BODY: usize = 1024 * 1024;

/// How long a client may take to send a request's head, and then to have it answered (its body
/// read included), unless configured otherwise.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    max_body: Option<usize>,
    #[serde(default, deserialize_with = "header_timeout")]
    header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "request_timeout")]
    request_timeout: Option<Duration>,
    #[serde(default)]
    tokens: BTreeMap<String, TokenFile>,
    #[serde(default)]
    sources: BTreeMap<String, Source>,
    #[serde(default)]
    sessions: SessionsFile,
    #[serde(default, deserialize_with = "live_poll")]
    live_poll: Option<Duration>,
    #[serde(default, deserialize_with = "lease")]
    lease: Option<Duration>,
    /// A folder of dashboard pages (`incident.html` ...) that replace the built-in ones of the
    /// same name; relative to the configuration file. Left out, the pages are this binary's.
    #[serde(default)]
    pages: Option<PathBuf>,
}

fn lease<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    super::duration("lease", deserializer)
}

/// How long a replica's claims last unless renewed, unless configured otherwise: how long a dead
/// replica's work (its effects, its incidents' ticks, the inbox) waits before another takes it
/// over (docs/replicas.md).
pub const LEASE: Duration = crate::runtime::claims::LEASE;

/// The shortest and longest lease allowed: claims are renewed every third of a lease, so a
/// shorter one renews more often than a loaded database answers; a longer one leaves a dead
/// replica's work waiting for longer than an incident can.
pub const SHORTEST_LEASE: Duration = Duration::from_secs(1);
pub const LONGEST_LEASE: Duration = Duration::from_secs(60 * 60);

/// Checks a lease's length (`server.lease`, `serve --lease`): what is wrong with it, in words,
/// for the caller to say where it came from.
pub fn check_lease(lease: Duration) -> Result<Duration, String> {
    if lease < SHORTEST_LEASE || lease > LONGEST_LEASE {
        return Err(format!(
            "`{}` is not between {} and {}: a lease is renewed every third of its length, and a dead replica's \
             work waits that long before another takes it over",
            humantime::format_duration(lease),
            humantime::format_duration(SHORTEST_LEASE),
            humantime::format_duration(LONGEST_LEASE)
        ));
    }
    Ok(lease)
}

/// The dashboard's sign-in sessions: how long one lasts idle and at most, and whether its cookie
/// is `Secure` (always when set; otherwise when the request came through a TLS proxy that says so
/// with `X-Forwarded-Proto: https`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsFile {
    #[serde(default, deserialize_with = "idle")]
    idle: Option<Duration>,
    #[serde(default, deserialize_with = "absolute")]
    absolute: Option<Duration>,
    #[serde(default)]
    secure: bool,
}

fn idle<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    super::duration("sessions.idle", deserializer)
}

fn absolute<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    super::duration("sessions.absolute", deserializer)
}

/// A dashboard session ends after this long without a request, unless configured otherwise.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// And after this long whatever it does.
pub const SESSION_ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);

/// The dashboard's sessions, as configured (`server.sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sessions {
    pub idle: Duration,
    pub absolute: Duration,
    /// Every session cookie is `Secure` (the server is reached over TLS, through a proxy).
    pub secure: bool,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions { idle: SESSION_IDLE, absolute: SESSION_ABSOLUTE, secure: false }
    }
}

fn live_poll<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    super::duration("live_poll", deserializer)
}

/// How often a dashboard page's event stream reads its incident's version, unless configured
/// otherwise: a change this server makes wakes the stream at once, so the poll only catches
/// changes another process (the CLI, another replica) made to the same database.
pub const LIVE_POLL: Duration = Duration::from_secs(2);

fn header_timeout<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    super::duration("header_timeout", deserializer)
}

fn request_timeout<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    super::duration("request_timeout", deserializer)
}

/// A webhook source: how its deliveries are authenticated, and the names of its secrets in the
/// configuration's `secrets` (several for key rotation).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub scheme: SchemeName,
    pub secrets: Vec<String>,
    /// For `hmac`: the header carrying the signature.
    #[serde(default)]
    pub header: Option<String>,
    /// For `hmac`: the header carrying the delivery's id, if the sender gives one.
    #[serde(default)]
    pub id_header: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeName {
    StandardWebhooks,
    Github,
    Hmac,
    Bearer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    person: String,
    sha256: String,
}

/// An API token as configured: its name (for logs), the person it acts as, and its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub person: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Token").field("name", &self.name).field("person", &self.person).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub max_body: usize,
    /// A connection that has not sent a whole request head within this is closed.
    pub header_timeout: Duration,
    /// A request not answered within this (its body read included) is answered 408.
    pub request_timeout: Duration,
    pub tokens: Vec<Token>,
    /// Webhook sources by name, as `POST /hooks/{source}` names them.
    pub sources: BTreeMap<String, Source>,
    /// The dashboard's sign-in sessions.
    pub sessions: Sessions,
    /// How often a dashboard page's event stream polls for changes made by other processes.
    pub live_poll: Duration,
    /// How long this replica's claims on shared work last unless renewed.
    pub lease: Duration,
    /// The folder of dashboard pages that replace the built-in ones (`server.pages`), if a site
    /// chose to; the pages are the binary's otherwise.
    pub pages: Option<PathBuf>,
}

impl File {
    pub(super) fn build(
        self,
        people: &crate::engine::Directory,
        relative: impl Fn(PathBuf) -> PathBuf,
    ) -> Result<Server, Error> {
        let listen = self.listen.as_deref().unwrap_or(LISTEN);
        let listen = listen.parse().map_err(|_| {
            Error::Invalid(format!("`server.listen: {listen}` is not an address such as `127.0.0.1:8080`"))
        })?;
        let mut tokens = Vec::with_capacity(self.tokens.len());
        for (name, token) in self.tokens {
            if !people.knows(&token.person) {
                return Err(Error::Invalid(format!(
                    "token `{name}` acts as `{}`, who is not among the configuration's people",
                    token.person
                )));
            }
            let mut sha256 = [0; 32];
            hex::decode_to_slice(&token.sha256, &mut sha256).map_err(|_| {
                Error::Invalid(format!("token `{name}`: `sha256` must be 64 hex digits (`phasegate token` prints it)"))
            })?;
            if tokens.iter().any(|other: &Token| other.sha256 == sha256) {
                return Err(Error::Invalid(format!("token `{name}` has the same hash as another token")));
            }
            tokens.push(Token { name, person: token.person, sha256 });
        }
        let max_body = self.max_body.unwrap_or(MAX_BODY);
        if max_body == 0 {
            return Err(Error::Invalid("`server.max_body` must be more than zero".into()));
        }
        for (name, source) in &self.sources {
            if source.secrets.is_empty() {
                return Err(Error::Invalid(format!("webhook source `{name}` names no secret")));
            }
            if (source.scheme == SchemeName::Hmac) != source.header.is_some() {
                return Err(Error::Invalid(format!(
                    "webhook source `{name}`: `header` is needed with `scheme: hmac`, and only with it"
                )));
            }
        }
        let header_timeout = self.header_timeout.unwrap_or(HEADER_TIMEOUT);
        let request_timeout = self.request_timeout.unwrap_or(REQUEST_TIMEOUT);
        if header_timeout.is_zero() || request_timeout.is_zero() {
            return Err(Error::Invalid(
                "`server.header_timeout` and `server.request_timeout` must be more than zero".into(),
            ));
        }
        let sessions = Sessions {
            idle: self.sessions.idle.unwrap_or(SESSION_IDLE),
            absolute: self.sessions.absolute.unwrap_or(SESSION_ABSOLUTE),
            secure: self.sessions.secure,
        };
        if sessions.idle.is_zero() || sessions.absolute < sessions.idle {
            return Err(Error::Invalid(
                "`server.sessions.idle` must be more than zero and no longer than `server.sessions.absolute`".into(),
            ));
        }
        let live_poll = self.live_poll.unwrap_or(LIVE_POLL);
        if live_poll.is_zero() {
            return Err(Error::Invalid("`server.live_poll` must be more than zero".into()));
        }
        let lease = check_lease(self.lease.unwrap_or(LEASE))
            .map_err(|problem| Error::Invalid(format!("`server.lease`: {problem}")))?;
        Ok(Server {
            lease,
            listen,
            max_body,
            header_timeout,
            request_timeout,
            tokens,
            sources: self.sources,
            sessions,
            live_poll,
            pages: self.pages.map(relative),
        })
    }
}
