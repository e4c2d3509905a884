//! The hash chain over an incident's events.
//!
//! Event `n` (1-based) of an incident has the hash
//!
//! ```text
//! hash(n) = SHA-256( hash(n-1) ‖ n as 8 bytes, big-endian ‖ JCS(event n) )
//! ```
//!
//! where `hash(0)` is 32 zero bytes, `‖` joins bytes, and `JCS(event)` is the event's JSON in the
//! JSON Canonicalization Scheme of RFC 8785, as UTF-8. The event is the object stored and
//! exported (`format`, `at`, `actor`, `reason`, `event`), with nothing added. The first event of
//! every incident, `incident_started`, names the incident, so a chain cannot pass for another
//! incident's. `docs/audit.md` says the same for people writing their own verifier.

use sha2::{Digest, Sha256};

use super::jcs;
use crate::engine::Event;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// What the first event's hash chains to.
pub const GENESIS: Hash = [0; 32];

/// The bytes an event's hash covers: its RFC 8785 canonical JSON. The store keeps events in this
/// form, so an event read back hashes without being encoded again.
pub fn canonical(event: &Event) -> Result<String, serde_json::Error> {
    serde_json_canonicalizer::to_string(event)
}

/// An event in the form the log gives it back, with the canonical JSON its hash covers: what an
/// append stores, encoded once.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    event: Event,
    json: String,
}

impl Canonical {
    /// Encodes `event` and checks that it reads back: what the log could not give back must not
    /// be stored, since one unreadable event would make its incident unreadable for good. The
    /// canonical form writes numbers as RFC 8785 does (`2.0` as `2`, `-0.0` as `0`, integers
    /// beyond 2^53 rounded to a double), so the event kept is the one that reads back, which
    /// must encode to the same bytes (its hash never changes).
    pub fn of(event: Event) -> Result<Canonical, String> {
        let json = jcs::to_string(&event).map_err(|error| format!("cannot be encoded as JSON: {error}"))?;
        let back: Event =
            serde_json::from_str(&json).map_err(|error| format!("does not read back from JSON: {error}"))?;
        // Equal events encode alike, so the usual case needs no second encoding.
        if back == event || canonical(&back).is_ok_and(|again| again == json) {
            return Ok(Canonical { event: back, json });
        }
        Err("does not read back from JSON as it was written".to_string())
    }

    /// The event as the log gives it back.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Its canonical JSON.
    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn into_json(self) -> String {
        self.json
    }
}

/// The canonical form of an event given as JSON text from anywhere (an export, a database edited
/// by hand): equal to the stored text whenever that text is what phasegate wrote.
pub fn canonicalize(json: &str) -> Result<String, serde_json::Error> {
    serde_json_canonicalizer::pipe(json)
}

/// The hash of event `seq`, given the hash of the event before it and its canonical JSON.
pub fn link(prev: &Hash, seq: u64, canonical: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(seq.to_be_bytes());
    hasher.update(canonical);
    hasher.finalize().into()
}

/// The digits a hash is written in.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A hash as it is written down: 64 lowercase hex digits. Written a byte at a time from a table:
/// every append writes one per event.
pub fn to_hex(hash: &Hash) -> String {
    let mut text = Vec::with_capacity(64);
    for byte in hash {
        text.extend_from_slice(&[DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 15)]]);
    }
    String::from_utf8(text).expect("hex digits are ASCII")
}

/// Whether `text` is `hash` written down (64 lowercase hex digits), without decoding `text`.
pub fn is_hex_of(text: &str, hash: &Hash) -> bool {
    let text = text.as_bytes();
    text.len() == 64
        && hash.iter().enumerate().all(|(index, byte)| {
            text[2 * index] == DIGITS[usize::from(byte >> 4)] && text[2 * index + 1] == DIGITS[usize::from(byte & 15)]
        })
}

/// A hash written down, or `None` when it is not 64 hex digits.
pub fn from_hex(text: &str) -> Option<Hash> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EventKind;
    use chrono::{DateTime, Utc};

    #[test]
    fn the_canonical_form_sorts_keys_and_drops_whitespace() {
        let at = DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc);
        let event = Event::new(at, "dana", EventKind::NoteAdded).because(Some("tills \"open\" é".into()));
        let text = canonical(&event).unwrap();
        assert_eq!(
            text,
            r#"{"actor":"dana","at":"2026-11-24T02:14:00Z","event":{"type":"note_added"},"format":2,"reason":"tills \"open\" é"}"#
        );
        let reordered = r#"{ "format": 2, "reason": "tills \"open\" \u00e9", "event": {"type": "note_added"},
            "at": "2026-11-24T02:14:00Z", "actor": "dana" }"#;
        assert_eq!(canonicalize(reordered).unwrap(), text);
    }

    #[test]
    fn rfc_8785_numbers_and_escapes() {
        // From RFC 8785, section 3.2.2 and appendix B: numbers in the shortest ECMAScript form,
        // control characters escaped in lowercase hex, keys sorted by UTF-16 code units.
        assert_eq!(
            canonicalize("[1E30, 4.50, 2e-3, 0.000001, 1e-7, -0]").unwrap(),
            "[1e+30,4.5,0.002,0.000001,1e-7,0]"
        );
        assert_eq!(
            canonicalize(r#"{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6}"#).unwrap(),
            "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"\u{20ac}\":1,\"\u{1f600}\":5,\"\u{fb33}\":3}"
        );
        assert_eq!(canonicalize(r#""\u000f\u001f/\u2028""#).unwrap(), "\"\\u000f\\u001f/\u{2028}\"");
    }

    #[test]
    fn a_link_covers_the_previous_hash_the_position_and_the_content() {
        let first = link(&GENESIS, 1, b"{}");
        let mut preimage = vec![0u8; 32];
        preimage.extend_from_slice(&1u64.to_be_bytes());
        preimage.extend_from_slice(b"{}");
        assert_eq!(first, <[u8; 32]>::from(Sha256::digest(&preimage)));
        assert_ne!(link(&GENESIS, 2, b"{}"), first);
        assert_ne!(link(&first, 1, b"{}"), first);
        assert_ne!(link(&GENESIS, 1, b"{ }"), first);
        assert_eq!(from_hex(&to_hex(&first)), Some(first));
        assert_eq!(to_hex(&first), hex::encode(first));
        assert!(is_hex_of(&to_hex(&first), &first));
        assert!(!is_hex_of(&to_hex(&first).to_uppercase(), &first) && !is_hex_of(&to_hex(&first)[1..], &first));
        assert!(!is_hex_of(&to_hex(&GENESIS), &first));
        assert_eq!(from_hex("00"), None);
    }
}
