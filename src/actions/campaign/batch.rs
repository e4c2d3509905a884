//! Batch HTTP: a campaign's messages, a batch per request, to a bulk-mail provider or relay.
//!
//! The wire format is fixed (issue 14), because relays written outside phasegate rely on it:
//! `POST` to the channel's URL with the channel's headers, `Content-Type: application/json`,
//! `Idempotency-Key: {campaign}/{batch}` (the same on every attempt of the batch, so a relay can
//! tell a repeat after a crash from a new batch) and the body
//! `{"campaign": .., "batch": N, "messages": [{"id", "to", "subject", "text", "html"?}]}`, `html`
//! only when the message has one.
//!
//! A 2xx answer takes the whole batch except the messages listed in an optional answer body
//! `{"rejected": [{"id": .., "reason": ..}]}`, refused for good. An id the batch does not hold is
//! ignored, and a 2xx body that is not such a document rejects nothing; both are logged. Any
//! other status, no answer, or no complete answer within the timeout is a failed attempt of the
//! whole batch, which the runtime sends again with the same key.
//!
//! The body is written straight into buffers, never through an intermediate JSON value: at
//! millions of messages of several kilobytes, the copy would cost as much as the sending. A
//! campaign's batches go further ([`BatchHttp::send_parts`]): each rendering thread writes its
//! messages in the wire format as it renders them (`render::campaign`'s `render_parts`, with the
//! template's literal text escaped for JSON once per campaign), and its part of the body is sent
//! as it is, so a batch in flight holds each message once, in the form that is sent.
//!
//! Where the request may go is the outbound policy's to say, as for every request phasegate
//! makes: [`BatchHttp::for_channel`] and [`crate::actions::Actions::batch_http`] use a client
//! that resolves names through the policy, and check a URL whose host is an address before
//! anything is sent. Redirects are not followed: a redirect is an answer that is not a 2xx.
//! Nothing here shows a secret: a URL that is a secret is named by the secret, a literal one
//! without credentials or query, and what the relay answers is scrubbed of secret header values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

mod body;

use body::{Chunks, write_body, write_head};
pub use body::{Messages, Part, body};

use super::{Answer, Batch, FailureClass};
use crate::actions::outbound::{self, Policy};
use crate::actions::{Error, Revealed, SecretSource, http};
use crate::runbook::model::{Channel, ChannelKind, Text, format_duration};

/// The most of a 2xx answer read for its `rejected` list; a longer answer rejects nothing.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The most of any other answer read, for the excerpt its failure quotes.
const MAX_EXCERPT_READ: usize = 4 * 1024;

/// The most characters of an answer quoted in a failure.
const EXCERPT_CHARS: usize = 200;

/// The most buffers of request bodies a sender keeps for the next batches: a batch in flight
/// holds a part of its body for each rendering thread, or one body.
const MAX_SPARE_BODIES: usize = 16;

/// Why a relay's rejection says nothing more.
const NO_REASON: &str = "rejected by the relay";

/// Sends batches to one URL. Cheap to share between the batches in flight.
#[derive(Clone)]
pub struct BatchHttp {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
    /// How failures name where the batch went: the URL without credentials or query, or the
    /// secret that holds it.
    target: String,
    /// Secret values sent (name, value), scrubbed from what the relay answers.
    hidden: Arc<Vec<(String, String)>>,
    /// Buffers of bodies (or parts of bodies) already sent: a body is megabytes, which the
    /// allocator would otherwise map and fault in afresh for every batch.
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for BatchHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchHttp").field("target", &self.target).field("timeout", &self.timeout).finish()
    }
}

impl BatchHttp {
    /// A sender POSTing to `url` with `headers` (secret values already given) through `client`,
    /// each batch answered within `timeout`. The client is used as it is: give it one that holds
    /// requests to the outbound policy (see [`BatchHttp::for_channel`]).
    pub fn new(
        url: String,
        headers: Vec<(String, String)>,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<BatchHttp, Error> {
        let headers = headers.into_iter().map(|(name, value)| (name, value, false)).collect();
        BatchHttp::build(url, headers, client, timeout)
    }

    /// [`BatchHttp::new`] with each header saying whether its value is a secret's, marked
    /// sensitive so that no `Debug` of the request prints it.
    fn build(
        url: String,
        headers: Vec<(String, String, bool)>,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<BatchHttp, Error> {
        let url = http::url(&url)?;
        let target = http::shown(&url);
        let mut map = HeaderMap::new();
        for (name, value, secret) in headers {
            let header_name =
                HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| Error::HeaderName(name.clone()))?;
            let mut header_value = HeaderValue::from_str(&value).map_err(|_| Error::HeaderValue(name.clone()))?;
            header_value.set_sensitive(secret);
            map.append(header_name, header_value);
        }
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(BatchHttp {
            client: client.clone(),
            url,
            headers: map,
            timeout,
            target,
            hidden: Arc::default(),
            spare: Arc::default(),
        })
    }

    /// The sender for batch channel `channel`: its URL and headers with their secrets' values from
    /// `secrets`, through a client that holds every connection to `policy`. A missing secret, a
    /// URL that is not http or https, or a URL whose address the policy refuses is an error naming
    /// the channel and the secret, never a secret's value.
    pub fn for_channel(
        channel: &Channel,
        secrets: &dyn SecretSource,
        policy: Arc<Policy>,
        timeout: Duration,
    ) -> Result<BatchHttp, Error> {
        let client = crate::actions::client(&policy)?;
        BatchHttp::with_client(channel, secrets, &client, &policy, timeout)
    }

    /// [`BatchHttp::for_channel`] with a client already built for `policy`.
    pub(crate) fn with_client(
        channel: &Channel,
        secrets: &dyn SecretSource,
        client: &reqwest::Client,
        policy: &Policy,
        timeout: Duration,
    ) -> Result<BatchHttp, Error> {
        let ChannelKind::Batch { url, headers } = &channel.kind else {
            return Err(Error::Channel {
                kind: channel.kind.name(),
                channel: channel.id.clone(),
                reason: "not a batch channel".to_string(),
            });
        };
        let in_channel =
            |error: Error| Error::Channel { kind: "batch", channel: channel.id.clone(), reason: error.to_string() };
        let mut revealed = Revealed::new(secrets);
        let url_text = revealed.text(url, || format!("the URL of batch channel `{}`", channel.id))?;
        let mut given = Vec::with_capacity(headers.len());
        for (name, text) in headers {
            let value = revealed.text(text, || format!("header `{name}` of batch channel `{}`", channel.id))?;
            given.push((name.clone(), value, matches!(text, Text::Secret { .. })));
        }
        let mut sender = match (BatchHttp::build(url_text, given, client, timeout), url) {
            (Ok(sender), _) => sender,
            (Err(Error::Url { .. }), Text::Secret { secret, .. }) => {
                return Err(in_channel(Error::Url {
                    url: format!("the value of secret `{secret}`"),
                    reason: "not an http or https URL".to_string(),
                }));
            }
            (Err(error), _) => return Err(in_channel(error)),
        };
        if let Text::Secret { secret, .. } = url {
            sender.target = format!("the URL in secret `{secret}`");
        }
        // A host that is an address is connected to without resolution, so the client's resolver
        // never sees it: check it here, once, as the URL never changes.
        policy.check_url(&sender.url).map_err(|refusal| {
            in_channel(Error::Refused { target: format!("POST {}", sender.target), refusal, redirected: false })
        })?;
        sender.hidden = Arc::new(revealed.values);
        Ok(sender)
    }

    /// Sends `batch` and says what the relay made of it. Never fails: no answer is
    /// [`Answer::Failed`], with the reason.
    pub async fn send(&self, batch: Batch<'_>) -> Answer {
        let mut buffer = self.buffer();
        write_body(&mut buffer, &batch);
        let ids: Vec<&str> = batch.messages.iter().map(|message| message.id.as_str()).collect();
        self.post(batch.campaign, batch.number, Chunks::new(vec![self.pooled(buffer)]), &ids).await
    }

    /// An empty buffer to write a part of a body into: one of a body already sent when there is
    /// one (a body is megabytes, which the allocator would otherwise map and fault in afresh for
    /// every batch).
    pub fn buffer(&self) -> Vec<u8> {
        let mut buffer = self.spare.lock().expect("never poisoned").pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Sends batch `number` of `campaign` (`INCIDENT/PHASE/STEP`), whose messages are already
    /// written in the wire format: `parts` hold them in order, each part whole messages written
    /// by a [`Messages`] (an empty part holds none), `ids` their recipients' ids in the same
    /// order. The parts are sent as they are, one after the other, between the body's head and
    /// end (never copied into one buffer), and go back to the buffers [`BatchHttp::buffer`] gives
    /// once sent. As [`BatchHttp::send`] otherwise.
    pub async fn send_parts(&self, campaign: &str, number: u32, parts: Vec<Vec<u8>>, ids: &[&str]) -> Answer {
        let body = self.parts_body(campaign, number, parts);
        self.post(campaign, number, body, ids).await
    }

    /// The body of [`BatchHttp::send_parts`]: its head, the parts that hold messages with a comma
    /// between each two, and its end.
    fn parts_body(&self, campaign: &str, number: u32, parts: Vec<Vec<u8>>) -> Chunks {
        let mut head = Vec::with_capacity(64 + campaign.len());
        write_head(&mut head, campaign, number);
        let mut chunks = vec![bytes::Bytes::from(head)];
        for part in parts {
            if part.is_empty() {
                drop(self.pooled(part));
                continue;
            }
            if chunks.len() > 1 {
                chunks.push(bytes::Bytes::from_static(b","));
            }
            chunks.push(self.pooled(part));
        }
        chunks.push(bytes::Bytes::from_static(b"]}"));
        Chunks::new(chunks)
    }

    /// `buffer` as a body's chunk, back among the spare buffers once sent (or dropped).
    fn pooled(&self, buffer: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(Pooled { buffer, pool: Arc::clone(&self.spare) })
    }

    /// POSTs `body`, batch `number` of `campaign` holding the messages of `ids`, and reads the
    /// answer.
    async fn post(&self, campaign: &str, number: u32, body: Chunks, ids: &[&str]) -> Answer {
        let key = super::idempotency_key(campaign, number);
        let Ok(key_value) = HeaderValue::from_str(&key) else {
            let error = format!("`{key}` cannot be sent as an `Idempotency-Key` header");
            return Answer::Failed { error, class: FailureClass::Local };
        };
        let mut headers = self.headers.clone();
        headers.insert(HeaderName::from_static("idempotency-key"), key_value);
        let target = format!("POST {}", self.target);
        let exchange = async {
            let body = reqwest::Body::wrap(body);
            let response = self.client.post(self.url.clone()).headers(headers).body(body).send().await?;
            let status = response.status();
            let cap = if status.is_success() { MAX_ANSWER } else { MAX_EXCERPT_READ };
            let (bytes, truncated) = http::read_capped(response, cap, 0).await?;
            Ok::<_, reqwest::Error>((status, bytes, truncated))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Answer::Failed {
                error: format!("{target}: no complete answer within {}", format_duration(self.timeout)),
                class: FailureClass::Timeout,
            },
            Ok(Err(error)) => match outbound::refusal_in(&error) {
                Some(refusal) => {
                    Answer::Failed { error: format!("{target}: not sent: {refusal}"), class: FailureClass::Refused }
                }
                None => {
                    let class = if error.is_timeout() { FailureClass::Timeout } else { FailureClass::Connection };
                    Answer::Failed { error: http::request_error(&target, error).to_string(), class }
                }
            },
            Ok(Ok((status, bytes, truncated))) if status.is_success() => {
                if truncated {
                    tracing::warn!(
                        campaign,
                        batch = number,
                        limit = MAX_ANSWER,
                        "the relay's answer is too long to read; no message of the batch counts as rejected"
                    );
                    return Answer::Accepted { rejected: Vec::new() };
                }
                Answer::Accepted { rejected: rejected(&bytes, campaign, number, ids) }
            }
            Ok(Ok((status, bytes, _))) => {
                let excerpt = self.excerpt(&bytes);
                let error = if excerpt.is_empty() {
                    format!("{target}: status {}", status.as_u16())
                } else {
                    format!("{target}: status {}: {excerpt}", status.as_u16())
                };
                Answer::Failed { error, class: FailureClass::HttpStatus }
            }
        }
    }

    /// The start of an answer, on one line, scrubbed of the secrets sent.
    fn excerpt(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let mut text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        for (name, value) in self.hidden.iter() {
            // As `Revealed` does: a very short value would mangle every answer it occurs in.
            if value.len() >= 4 && text.contains(value.as_str()) {
                text = text.replace(value.as_str(), &format!("[secret `{name}`]"));
            }
        }
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match text.char_indices().nth(EXCERPT_CHARS) {
            Some((cut, _)) => format!("{} [...]", &text[..cut]),
            None => text,
        }
    }
}

/// A request body's buffer, back in its sender's pool when reqwest has sent it.
struct Pooled {
    buffer: Vec<u8>,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pool.len() < MAX_SPARE_BODIES {
            pool.push(std::mem::take(&mut self.buffer));
        }
    }
}

/// The messages a 2xx answer rejects, in the batch's order, each once; an id the batch does not
/// hold is left out. An answer that is empty, or says nothing of rejections, rejects nothing.
fn rejected(bytes: &[u8], campaign: &str, number: u32, ids: &[&str]) -> Vec<(String, String)> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    let answer: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(
                campaign,
                batch = number,
                %error,
                "the relay's 2xx answer is not JSON; no message of the batch counts as rejected"
            );
            return Vec::new();
        }
    };
    let Some(listed) = answer.get("rejected").filter(|listed| !listed.is_null()) else {
        return Vec::new();
    };
    let Some(listed) = listed.as_array() else {
        tracing::warn!(
            campaign,
            batch = number,
            "the relay's `rejected` is not a list; no message of the batch counts as rejected"
        );
        return Vec::new();
    };
    let mut reasons: HashMap<String, String> = HashMap::with_capacity(listed.len());
    let mut unreadable = 0usize;
    for entry in listed {
        let id = match entry.get("id") {
            Some(serde_json::Value::String(id)) => id.clone(),
            Some(serde_json::Value::Number(id)) => id.to_string(),
            _ => {
                unreadable += 1;
                continue;
            }
        };
        let reason = match entry.get("reason") {
            Some(serde_json::Value::String(reason)) if !reason.trim().is_empty() => reason.clone(),
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::String(_)) => NO_REASON.to_string(),
            Some(other) => other.to_string(),
        };
        reasons.entry(id).or_insert(reason);
    }
    let mut found = Vec::with_capacity(reasons.len());
    for id in ids {
        if let Some(reason) = reasons.remove(*id) {
            found.push((id.to_string(), reason));
        }
    }
    if !reasons.is_empty() || unreadable > 0 {
        // The ids themselves identify people: the log says how many, not which.
        tracing::warn!(
            campaign,
            batch = number,
            unknown = reasons.len(),
            unreadable,
            "the relay rejected messages the batch does not hold, or listed them without an id; ignored"
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_read_leniently_and_only_for_messages_of_the_batch() {
        let table: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("  \n", &[]),
            ("OK", &[]),
            (r#"{"accepted": 3}"#, &[]),
            (r#"{"rejected": null}"#, &[]),
            (r#"{"rejected": "all"}"#, &[]),
            (r#"{"rejected": []}"#, &[]),
            (
                r#"{"rejected": [{"id": "b", "reason": "mailbox unknown"}, {"id": "zz", "reason": "?"}]}"#,
                &[("b", "mailbox unknown")],
            ),
            // In the batch's order, each once, the first reason kept; numbers are ids too.
            (
                r#"{"rejected": [{"id": 7, "reason": "bounced"}, {"id": "a"}, {"id": "a", "reason": "later"}, {"reason": "no id"}]}"#,
                &[("a", NO_REASON), ("7", "bounced")],
            ),
            (r#"{"rejected": [{"id": "b", "reason": {"code": 550}}]}"#, &[("b", r#"{"code":550}"#)]),
        ];
        for (answer, expected) in table {
            let expected: Vec<(String, String)> =
                expected.iter().map(|(id, reason)| (id.to_string(), reason.to_string())).collect();
            assert_eq!(rejected(answer.as_bytes(), "inc-1/p/s", 1, &["a", "b", "7"]), expected, "{answer}");
        }
    }

    #[test]
    fn an_excerpt_is_short_on_one_line_and_without_secrets() {
        let client = reqwest::Client::new();
        let mut sender = BatchHttp::new(
            "https://mailer.example/api".to_string(),
            vec![("Authorization".to_string(), "Bearer tok-123456".to_string())],
            &client,
            Duration::from_secs(5),
        )
        .unwrap();
        sender.hidden = Arc::new(vec![("MAILER_TOKEN".to_string(), "tok-123456".to_string())]);
        assert_eq!(sender.excerpt(b"bad token\n\ttok-123456 "), "bad token [secret `MAILER_TOKEN`]");
        let long = "x".repeat(500);
        assert_eq!(sender.excerpt(long.as_bytes()), format!("{} [...]", "x".repeat(EXCERPT_CHARS)));
    }

    #[test]
    fn bad_urls_and_headers_are_refused_when_built() {
        let client = reqwest::Client::new();
        let build = |url: &str, header: (&str, &str)| {
            BatchHttp::new(
                url.to_string(),
                vec![(header.0.to_string(), header.1.to_string())],
                &client,
                Duration::from_secs(1),
            )
        };
        assert!(matches!(build("ftp://mailer.example/", ("X-A", "b")), Err(Error::Url { .. })));
        assert!(matches!(build("https://mailer.example/", ("bad name", "b")), Err(Error::HeaderName(_))));
        assert!(matches!(build("https://mailer.example/", ("X-A", "line\nbreak")), Err(Error::HeaderValue(_))));
        assert!(build("https://mailer.example/", ("X-A", "b")).is_ok());
    }
}
