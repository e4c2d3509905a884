//! The body of a batch's request, written straight into buffers in the wire format, never
//! through an intermediate JSON value: a whole batch into one buffer ([`body`]), or a campaign's
//! messages written by its rendering threads into parts of the body ([`Messages`]), sent as they
//! are ([`Chunks`]).

use super::Batch;
use crate::render::json;

/// A request body in pieces sent one after the other, its length known before the first is sent
/// (so the request says `Content-Length`, as one buffer would): a batch's parts go as the
/// rendering threads wrote them.
pub(super) struct Chunks {
    chunks: std::collections::VecDeque<bytes::Bytes>,
    remaining: u64,
}

impl Chunks {
    pub(super) fn new(chunks: Vec<bytes::Bytes>) -> Chunks {
        let remaining = chunks.iter().map(|chunk| chunk.len() as u64).sum();
        Chunks { chunks: chunks.into(), remaining }
    }
}

impl hyper::body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let chunk = this.chunks.pop_front();
        if let Some(chunk) = &chunk {
            this.remaining -= chunk.len() as u64;
        }
        std::task::Poll::Ready(chunk.map(|chunk| Ok(hyper::body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
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
pub(super) fn write_body(out: &mut Vec<u8>, batch: &Batch<'_>) {
    // Field names, quotes and commas come to under 64 bytes a message; escaping adds a little
    // more (HTML's quotes), so an eighth more is kept free to make one allocation the rule.
    let payload: usize = batch
        .messages
        .iter()
        .map(|m| m.id.len() + m.to.len() + m.subject.len() + m.text.len() + m.html.as_ref().map_or(0, String::len) + 64)
        .sum();
    out.reserve(64 + batch.campaign.len() + payload + payload / 8);
    write_head(out, batch.campaign, batch.number);
    let start = out.len();
    // Most campaigns give every message the same subject: escaped once.
    let mut subject = batch.messages.first().map_or("", |message| message.subject.as_str());
    let mut writer = Messages::new(subject);
    for message in batch.messages {
        if message.subject != subject {
            subject = &message.subject;
            writer = Messages::new(subject);
        }
        let mut part = Part { out: &mut *out, start };
        writer.open(&mut part, &message.id, &message.to);
        json::escape(part.out, &message.text);
        if let Some(html) = &message.html {
            part.out.extend_from_slice(Messages::HTML);
            json::escape(part.out, html);
        }
        Messages::close(part.out);
    }
    out.extend_from_slice(b"]}");
}

/// The body's head, up to its first message.
pub(super) fn write_head(out: &mut Vec<u8>, campaign: &str, number: u32) {
    out.extend_from_slice(br#"{"campaign":"#);
    json::string(out, campaign);
    out.extend_from_slice(br#","batch":"#);
    out.extend_from_slice(number.to_string().as_bytes());
    out.extend_from_slice(br#","messages":["#);
}

/// Where messages are written: `out` from `start` on holds whole messages, comma-separated.
pub struct Part<'o> {
    pub out: &'o mut Vec<u8>,
    pub start: usize,
}

/// Writes the messages of a batch, each with the same subject, in the wire format: [`Messages::open`]
/// before the message's text, then its text escaped for JSON ([`crate::render::json`]), then
/// [`Messages::HTML`] and its HTML escaped when it has one, then [`Messages::close`].
pub struct Messages {
    /// `,"subject":"..","text":"`, the subject escaped once for every message.
    subject: Vec<u8>,
}

impl Messages {
    /// What comes between a message's text and its HTML.
    pub const HTML: &'static [u8] = br#"","html":""#;

    pub fn new(subject: &str) -> Messages {
        let mut written = br#","subject":"#.to_vec();
        json::string(&mut written, subject);
        written.extend_from_slice(br#","text":""#);
        Messages { subject: written }
    }

    /// A message's start, up to its text: after a comma when the part holds a message already.
    pub fn open(&self, part: &mut Part<'_>, id: &str, to: &str) {
        if part.out.len() > part.start {
            part.out.push(b',');
        }
        part.out.extend_from_slice(br#"{"id":"#);
        json::string(part.out, id);
        part.out.extend_from_slice(br#","to":"#);
        json::string(part.out, to);
        part.out.extend_from_slice(&self.subject);
    }

    /// A message's end, after its text or its HTML.
    pub fn close(out: &mut Vec<u8>) {
        out.extend_from_slice(br#""}"#);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::BatchHttp;
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
            // The same messages written part by part, as the rendering threads write them (every
            // message with the batch's subject), then sent as parts: the same bytes.
            let same: Vec<Message> = messages.iter().map(|m| Message { subject: subject.clone(), ..m.clone() }).collect();
            let batch = Batch { campaign: &subject, number, messages: &same };
            for cut in 0..=same.len() {
                proptest::prop_assert_eq!(parts_sent(&batch, cut), serde_body(&batch));
            }
        }
    }

    /// `batch`'s messages (all with the first's subject) written as two parts cut at message
    /// `cut` (and an empty part between them), sent as [`BatchHttp::send_parts`] sends them.
    fn parts_sent(batch: &Batch<'_>, cut: usize) -> Vec<u8> {
        let subject = batch.messages.first().map_or("", |m| m.subject.as_str());
        let writer = Messages::new(subject);
        let write = |messages: &[Message]| {
            let mut out = b"left over".to_vec();
            out.clear();
            for message in messages {
                let mut part = Part { out: &mut out, start: 0 };
                writer.open(&mut part, &message.id, &message.to);
                json::escape(&mut out, &message.text);
                if let Some(html) = &message.html {
                    out.extend_from_slice(Messages::HTML);
                    json::escape(&mut out, html);
                }
                Messages::close(&mut out);
            }
            out
        };
        let parts = vec![write(&batch.messages[..cut]), Vec::new(), write(&batch.messages[cut..])];
        // One sender for every case: a client takes a while to make.
        static SENDER: std::sync::OnceLock<BatchHttp> = std::sync::OnceLock::new();
        let sender = SENDER.get_or_init(|| {
            let client = reqwest::Client::new();
            BatchHttp::new("http://127.0.0.1:9/".into(), Vec::new(), &client, Duration::from_secs(1)).unwrap()
        });
        let body = sender.parts_body(batch.campaign, batch.number, parts);
        assert_eq!(body.remaining, body.chunks.iter().map(|c| c.len() as u64).sum::<u64>());
        body.chunks.iter().flat_map(|chunk| chunk.iter().copied()).collect()
    }
}
