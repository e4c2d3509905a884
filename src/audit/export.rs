//! Exports: an incident's events, their hashes and its checkpoints as JSON Lines, and the
//! verification of an export with nothing but the file and the public key.
//!
//! The first line is a header, then one line per event in order, each checkpoint right after
//! the event it covers:
//!
//! ```text
//! {"type":"header","format":1,"incident":"inc-…","events":42,"checkpoints":3}
//! {"type":"event","seq":1,"hash":"<hex>","event":{…the event, in canonical JSON…}}
//! {"type":"checkpoint","checkpoint":{…},"signature":"<hex>"}
//! ```

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::keys::{Checkpoint, PublicKey, SignedCheckpoint};
use super::verify::{Outcome, Problem, Verifier};
use super::witness::Witness;

/// The version of the export shape that this phasegate writes.
pub const FORMAT: u32 = 1;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub incident: String,
    /// How many events follow.
    pub events: u64,
    /// How many checkpoints follow.
    pub checkpoints: u64,
}

/// Any line, read loosely: which fields it has says what it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    format: Option<u32>,
    incident: Option<String>,
    events: Option<u64>,
    checkpoints: Option<u64>,
    seq: Option<u64>,
    hash: Option<String>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    checkpoint: Option<Checkpoint>,
    signature: Option<String>,
}

/// Writes the lines of an export: the header, then events and checkpoints as they come.
pub struct Writer<W> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, header: &Header) -> io::Result<Writer<W>> {
        let line = serde_json::json!({
            "type": "header",
            "format": header.format,
            "incident": header.incident,
            "events": header.events,
            "checkpoints": header.checkpoints,
        });
        writeln!(out, "{line}")?;
        Ok(Writer { out })
    }

    /// An event as stored: its position, the hash recorded with it and its JSON. JSON that is
    /// not JSON any more (someone edited the database) is written as a string, so the export
    /// still reads and the verifier reports it.
    pub fn event(&mut self, seq: u64, hash: Option<&str>, event: &str) -> io::Result<()> {
        let hash = serde_json::to_string(&hash)?;
        match RawValue::from_string(event.to_owned()) {
            Ok(event) => writeln!(self.out, r#"{{"type":"event","seq":{seq},"hash":{hash},"event":{event}}}"#),
            Err(_) => {
                let event = serde_json::to_string(event)?;
                writeln!(self.out, r#"{{"type":"event","seq":{seq},"hash":{hash},"event":{event}}}"#)
            }
        }
    }

    /// A signed checkpoint as stored: the canonical JSON of its body, which was signed, and the
    /// signature in hex.
    pub fn checkpoint(&mut self, body: &str, signature: &str) -> io::Result<()> {
        let body = RawValue::from_string(body.to_owned()).map_err(io::Error::other)?;
        let signature = serde_json::to_string(signature)?;
        writeln!(self.out, r#"{{"type":"checkpoint","checkpoint":{body},"signature":{signature}}}"#)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Why an export could not be verified at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the export: {0}")]
    Read(#[from] io::Error),
    #[error("line 1 is not a phasegate export header: {0}")]
    Header(String),
}

/// Verifies an export read from `input` with `key`.
pub fn verify(input: impl BufRead, key: Option<&PublicKey>) -> Result<Outcome, Error> {
    verify_witnessed(input, key, None)
}

/// [`verify`], and the export compared with what `witness` holds of its incident.
pub fn verify_witnessed(
    mut input: impl BufRead,
    key: Option<&PublicKey>,
    witness: Option<&Witness>,
) -> Result<Outcome, Error> {
    let mut first = String::new();
    if input.read_line(&mut first)? == 0 {
        return Err(Error::Header("the file is empty".into()));
    }
    let header = header(first.trim_end()).map_err(Error::Header)?;
    let mut verifier = Verifier::new(&header.incident, key);
    if let Some(witness) = witness {
        verifier.witnessed(witness.of(&header.incident));
    }
    let mut checkpoints = 0;
    let mut line = String::new();
    let mut number = 1;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        if let Some((seq, hash, event)) = event_line(text) {
            verifier.event(seq, Some(hash), event);
            continue;
        }
        match serde_json::from_str::<Line>(text) {
            Ok(Line { kind: "event", seq: Some(seq), hash, event: Some(event), .. }) => {
                verifier.event(seq, hash.as_deref(), event.get());
            }
            Ok(Line { kind: "checkpoint", checkpoint: Some(checkpoint), signature: Some(signature), .. }) => {
                checkpoints += 1;
                verifier.checkpoint(Ok(SignedCheckpoint { checkpoint, signature }));
            }
            Ok(line) => verifier.unreadable(format!("line {number} is a `{}` line without its fields", line.kind)),
            Err(error) => verifier.unreadable(format!("line {number} is not an event or a checkpoint: {error}")),
        }
    }
    let mut outcome = verifier.finish(Some(header.events));
    if checkpoints < header.checkpoints {
        outcome.add(Problem {
            event: outcome.events + 1,
            checkpoint: Some(checkpoints + 1),
            what: format!(
                "missing: the export says it has {} checkpoints but has {checkpoints}: checkpoints were removed",
                header.checkpoints
            ),
        });
    }
    Ok(outcome)
}

/// An event line as [`Writer`] writes it, taken apart without a JSON parser: the position, the
/// recorded hash, and the event's JSON. This is sound without parsing: if the event's bytes chain
/// to the recorded hash they are the canonical JSON phasegate wrote; if they do not, the verifier
/// parses them to find out why. Any other layout (a line reformatted by some tool) returns `None`
/// and is parsed as JSON.
fn event_line(line: &str) -> Option<(u64, &str, &str)> {
    let rest = line.strip_prefix(r#"{"type":"event","seq":"#)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let seq = rest[..digits].parse().ok()?;
    let rest = rest[digits..].strip_prefix(r#","hash":""#)?;
    let (hash, rest) = (rest.get(..64)?, rest.get(64..)?);
    let event = rest.strip_prefix(r#"","event":"#)?.strip_suffix('}')?;
    Some((seq, hash, event))
}

fn header(line: &str) -> Result<Header, String> {
    let line: Line = serde_json::from_str(line).map_err(|error| error.to_string())?;
    match line {
        Line { kind: "header", format: Some(FORMAT), incident: Some(incident), events: Some(events), .. } => {
            Ok(Header { format: FORMAT, incident, events, checkpoints: line.checkpoints.unwrap_or(0) })
        }
        Line { kind: "header", format: Some(format), .. } => {
            Err(format!("format {format} is not one this phasegate reads (it reads {FORMAT})"))
        }
        _ => Err("it needs `type`: `header`, `format`, `incident` and `events`".into()),
    }
}
