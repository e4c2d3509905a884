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
//! The body is written straight from the messages into one buffer (no intermediate JSON value):
//! at millions of messages of several kilobytes, the copy would cost as much as the sending.
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

use super::{Answer, Batch};
use crate::actions::outbound::{self, Policy};
use crate::actions::{Error, Revealed, SecretSource, http};
use crate::runbook::model::{Channel, ChannelKind, Text, format_duration};

/// The most of a 2xx answer read for its `rejected` list; a longer answer rejects nothing.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The most of any other answer read, for the excerpt its failure quotes.
const MAX_EXCERPT_READ: usize = 4 * 1024;

/// The most characters of an answer quoted in a failure.
const EXCERPT_CHARS: usize = 200;

/// The most request bodies a sender keeps for the next batches: one per batch in flight.
const MAX_SPARE_BODIES: usize = 8;

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
    /// Buffers of bodies already sent: a body is megabytes, which the allocator would otherwise
    /// map and fault in afresh for every batch.
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
        let key = batch.idempotency_key();
        let Ok(key_value) = HeaderValue::from_str(&key) else {
            return Answer::Failed { error: format!("`{key}` cannot be sent as an `Idempotency-Key` header") };
        };
        let mut headers = self.headers.clone();
        headers.insert(HeaderName::from_static("idempotency-key"), key_value);
        let mut buffer = self.spare.lock().expect("never poisoned").pop().unwrap_or_default();
        buffer.clear();
        write_body(&mut buffer, &batch);
        let body = bytes::Bytes::from_owner(Pooled { buffer, pool: Arc::clone(&self.spare) });
        let target = format!("POST {}", self.target);
        let exchange = async {
            let response = self.client.post(self.url.clone()).headers(headers).body(body).send().await?;
            let status = response.status();
            let cap = if status.is_success() { MAX_ANSWER } else { MAX_EXCERPT_READ };
            let (bytes, truncated) = http::read_capped(response, cap, 0).await?;
            Ok::<_, reqwest::Error>((status, bytes, truncated))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Answer::Failed {
                error: format!("{target}: no complete answer within {}", format_duration(self.timeout)),
            },
            Ok(Err(error)) => match outbound::refusal_in(&error) {
                Some(refusal) => Answer::Failed { error: format!("{target}: not sent: {refusal}") },
                None => Answer::Failed { error: http::request_error(&target, error).to_string() },
            },
            Ok(Ok((status, bytes, truncated))) if status.is_success() => {
                if truncated {
                    tracing::warn!(
                        campaign = batch.campaign,
                        batch = batch.number,
                        limit = MAX_ANSWER,
                        "the relay's answer is too long to read; no message of the batch counts as rejected"
                    );
                    return Answer::Accepted { rejected: Vec::new() };
                }
                Answer::Accepted { rejected: rejected(&bytes, &batch) }
            }
            Ok(Ok((status, bytes, _))) => {
                let excerpt = self.excerpt(&bytes);
                let error = if excerpt.is_empty() {
                    format!("{target}: status {}", status.as_u16())
                } else {
                    format!("{target}: status {}: {excerpt}", status.as_u16())
                };
                Answer::Failed { error }
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

/// The batch as the body of its request, in the wire format's field order, written straight into
/// one buffer: exactly what `serde_json` makes of the same messages (its compact form and its
/// escaping), at a fraction of the cost (each message is a few kilobytes of text and HTML).
pub fn body(batch: &Batch<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_body(&mut out, batch);
    out
}

/// [`body`] appended to `out`.
fn write_body(out: &mut Vec<u8>, batch: &Batch<'_>) {
    // Field names, quotes and commas come to under 64 bytes a message; escaping adds a little
    // more (HTML's quotes), so an eighth more is kept free to make one allocation the rule.
    let payload: usize = batch
        .messages
        .iter()
        .map(|m| m.id.len() + m.to.len() + m.subject.len() + m.text.len() + m.html.as_ref().map_or(0, String::len) + 64)
        .sum();
    out.reserve(64 + batch.campaign.len() + payload + payload / 8);
    out.extend_from_slice(br#"{"campaign":"#);
    json_string(out, batch.campaign);
    out.extend_from_slice(br#","batch":"#);
    out.extend_from_slice(batch.number.to_string().as_bytes());
    out.extend_from_slice(br#","messages":["#);
    // Most campaigns give every message the same subject: escaped once.
    let mut subject: (&str, Vec<u8>) = ("", Vec::new());
    for (n, message) in batch.messages.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"id":"#);
        json_string(out, &message.id);
        out.extend_from_slice(br#","to":"#);
        json_string(out, &message.to);
        out.extend_from_slice(br#","subject":"#);
        if n == 0 || subject.0 != message.subject {
            subject.1.clear();
            json_string(&mut subject.1, &message.subject);
            subject.0 = &message.subject;
        }
        out.extend_from_slice(&subject.1);
        out.extend_from_slice(br#","text":"#);
        json_string(out, &message.text);
        if let Some(html) = &message.html {
            out.extend_from_slice(br#","html":"#);
            json_string(out, html);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// `text` as a JSON string, quotes included, escaped as `serde_json` escapes: the quote and the
/// backslash, and the control characters below U+0020 (`\b`, `\t`, `\n`, `\f`, `\r` by name,
/// the others as `\u00xx`), nothing else. Eight bytes are checked at once, and the text between
/// the bytes to escape is copied in one piece.
fn json_string(out: &mut Vec<u8>, text: &str) {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // A high bit in each byte of `word` that is zero, and maybe in bytes above one that is:
    // none when no byte is, and the lowest is always a zero byte (the borrow runs upwards only).
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut written = 0;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // Bytes below 0x20 (the same test, against 0x20 rather than 1), quotes and backslashes.
        let found = (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')));
        if found == 0 {
            at += 8;
            continue;
        }
        let hit = at + (found.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[written..hit]);
        escape(out, bytes[hit]);
        written = hit + 1;
        at = hit + 1;
    }
    for (offset, &byte) in bytes[at..].iter().enumerate() {
        if byte < 0x20 || byte == b'"' || byte == b'\\' {
            out.extend_from_slice(&bytes[written..at + offset]);
            escape(out, byte);
            written = at + offset + 1;
        }
    }
    out.extend_from_slice(&bytes[written..]);
    out.push(b'"');
}

/// A byte that JSON escapes (a control character, a quote or a backslash), escaped.
fn escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]])
        }
    }
}

/// The messages a 2xx answer rejects, in the batch's order, each once; an id the batch does not
/// hold is left out. An answer that is empty, or says nothing of rejections, rejects nothing.
fn rejected(bytes: &[u8], batch: &Batch<'_>) -> Vec<(String, String)> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    let answer: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(
                campaign = batch.campaign,
                batch = batch.number,
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
            campaign = batch.campaign,
            batch = batch.number,
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
    for message in batch.messages {
        if let Some(reason) = reasons.remove(&message.id) {
            found.push((message.id.clone(), reason));
        }
    }
    if !reasons.is_empty() || unreadable > 0 {
        // The ids themselves identify people: the log says how many, not which.
        tracing::warn!(
            campaign = batch.campaign,
            batch = batch.number,
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
    use crate::actions::campaign::Message;

    fn message(id: &str, html: Option<&str>) -> Message {
        Message {
            id: id.to_string(),
            to: format!("{id}@example.com"),
            subject: "About your account".to_string(),
            text: "Dear \"member\",\nsorry.\u{1}".to_string(),
            html: html.map(str::to_string),
        }
    }

    #[test]
    fn the_body_is_the_wire_format_with_html_only_where_there_is_one() {
        let messages = [message("m-1", None), message("m-2", Some("<p class=\"x\">sorry</p>"))];
        let batch = Batch { campaign: "inc-1/notify/apology", number: 7, messages: &messages };
        let body = String::from_utf8(body(&batch)).unwrap();
        assert_eq!(
            body,
            r#"{"campaign":"inc-1/notify/apology","batch":7,"messages":[{"id":"m-1","to":"m-1@example.com","subject":"About your account","text":"Dear \"member\",\nsorry.\u0001"},{"id":"m-2","to":"m-2@example.com","subject":"About your account","text":"Dear \"member\",\nsorry.\u0001","html":"<p class=\"x\">sorry</p>"}]}"#
        );
    }

    /// The body as `serde_json` writes the same batch: the yardstick [`body`] must equal.
    fn serde_body(batch: &Batch<'_>) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            campaign: &'a str,
            batch: u32,
            messages: &'a [Message],
        }
        serde_json::to_vec(&Body { campaign: batch.campaign, batch: batch.number, messages: batch.messages }).unwrap()
    }

    #[test]
    fn the_body_is_what_serde_json_writes_for_every_character() {
        // Every ASCII character and a few others, each alone, at every offset of a word, and
        // next to each other.
        let mut texts: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        texts.extend(["é", "\u{2028}", "\u{1F600}", "\u{7f}", "ü\"\\\u{1f}x"].map(str::to_string));
        let all: String = texts.concat();
        let mut messages = Vec::new();
        for (n, text) in texts.iter().enumerate() {
            for offset in 0..9 {
                let padded = format!("{}{text}{}", "a".repeat(offset), "b".repeat(n % 11));
                messages.push(Message {
                    id: format!("m{n}-{offset}{text}"),
                    to: format!("{text}@example.com"),
                    subject: if n % 3 == 0 { "Same \"subject\"".to_string() } else { text.clone() },
                    text: padded.clone(),
                    html: (offset % 2 == 0).then(|| format!("<p class=\"x\">{padded}{all}</p>")),
                });
            }
        }
        let batch = Batch { campaign: "inc-1/notify/\"apology\"\n", number: 4_000_000_000, messages: &messages };
        assert_eq!(String::from_utf8(body(&batch)).unwrap(), String::from_utf8(serde_body(&batch)).unwrap());
        let empty = Batch { campaign: "c", number: 0, messages: &[] };
        assert_eq!(body(&empty), serde_body(&empty));
    }

    proptest::proptest! {
        #[test]
        fn the_body_is_what_serde_json_writes(
            texts in proptest::collection::vec(("\\PC*", "[\\x00-\\x7f]{0,40}", proptest::option::of("\\PC*")), 0..6),
            subject in "[\\x00-\\x7f]{0,20}",
            number in proptest::prelude::any::<u32>(),
        ) {
            let messages: Vec<Message> = texts
                .into_iter()
                .enumerate()
                .map(|(n, (text, id, html))| Message {
                    id,
                    to: format!("{n}@example.com"),
                    subject: if n % 2 == 0 { subject.clone() } else { format!("{subject}{n}") },
                    text,
                    html,
                })
                .collect();
            let batch = Batch { campaign: &subject, number, messages: &messages };
            proptest::prop_assert_eq!(body(&batch), serde_body(&batch));
        }
    }

    #[test]
    fn rejections_are_read_leniently_and_only_for_messages_of_the_batch() {
        let messages = [message("a", None), message("b", None), message("7", None)];
        let batch = Batch { campaign: "inc-1/p/s", number: 1, messages: &messages };
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
            assert_eq!(rejected(answer.as_bytes(), &batch), expected, "{answer}");
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
