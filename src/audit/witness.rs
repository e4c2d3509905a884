//! The witness: every signed checkpoint, copied somewhere outside the database, and the check of
//! a log against those copies.
//!
//! Checkpoints alone cannot tell a log cut back to an earlier checkpoint from a log that never
//! went further: whoever can write the database can delete the later events and checkpoints
//! together, and what is left verifies as an incident still open. A copy of each checkpoint kept
//! elsewhere can tell. A witness line is a signed checkpoint as an export writes it, one per
//! line (JSON Lines):
//!
//! ```text
//! {"type":"checkpoint","checkpoint":{…the checkpoint…},"signature":"<hex>"}
//! ```
//!
//! Reading a witness collects every line that is not one, by line number, and keeps the rest;
//! [`Verifier::witnessed`](super::verify::Verifier::witnessed) then compares an incident's log
//! with what was witnessed of it.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

use super::keys::{Checkpoint, SignedCheckpoint};

/// A checkpoint as the witness holds it, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    pub line: u64,
    pub signed: SignedCheckpoint,
}

/// A line of a witness that is not a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    pub line: u64,
    pub what: String,
}

/// What a witness holds: its checkpoints in the order written, and the lines that are not ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Witness {
    pub checkpoints: Vec<Witnessed>,
    pub bad_lines: Vec<BadLine>,
}

impl Witness {
    /// The checkpoints witnessed of `incident`, in the order written.
    pub fn of(&self, incident: &str) -> Vec<Witnessed> {
        self.checkpoints.iter().filter(|witnessed| witnessed.signed.checkpoint.incident == incident).cloned().collect()
    }

    /// Every incident the witness has a checkpoint of, each once, in the order first witnessed.
    pub fn incidents(&self) -> Vec<&str> {
        let mut incidents: Vec<&str> = Vec::new();
        for witnessed in &self.checkpoints {
            let incident = witnessed.signed.checkpoint.incident.as_str();
            if !incidents.contains(&incident) {
                incidents.push(incident);
            }
        }
        incidents
    }
}

/// The line of a witness that records `signed`, without its line break: the line an export
/// writes for it, the checkpoint in its canonical JSON (the bytes that were signed).
pub fn line(signed: &SignedCheckpoint) -> String {
    // A hex signature needs no escaping, but a line is JSON whatever it was given.
    let signature = serde_json::to_string(&signed.signature).unwrap_or_default();
    format!(r#"{{"type":"checkpoint","checkpoint":{},"signature":{signature}}}"#, signed.checkpoint.canonical())
}

/// One witness line, read strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    checkpoint: Checkpoint,
    signature: String,
}

/// Reads a witness. Blank lines are skipped; every other line that is not a checkpoint line is
/// a [`BadLine`] (a line cut short by a crash while it was written, say), and reading goes on.
/// `Err` only when the input cannot be read at all.
pub fn read(mut input: impl BufRead) -> io::Result<Witness> {
    let mut witness = Witness::default();
    let mut bytes = Vec::new();
    let mut number = 0;
    loop {
        bytes.clear();
        if input.read_until(b'\n', &mut bytes)? == 0 {
            return Ok(witness);
        }
        number += 1;
        let mut bad = |what: String| witness.bad_lines.push(BadLine { line: number, what });
        let Ok(text) = std::str::from_utf8(&bytes) else {
            bad("is not UTF-8".to_string());
            continue;
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(text) {
            Ok(Line { kind, .. }) if kind != "checkpoint" => {
                bad(format!("is a `{kind}` line; a witness holds only `checkpoint` lines"));
            }
            Ok(Line { checkpoint, signature, .. }) => {
                witness
                    .checkpoints
                    .push(Witnessed { line: number, signed: SignedCheckpoint { checkpoint, signature } });
            }
            Err(error) if error.is_eof() => bad(format!("ends before the checkpoint does (cut short?): {error}")),
            Err(error) => bad(format!("is not a checkpoint line: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::Signer;
    use chrono::{DateTime, Utc};

    fn signed(incident: &str, number: u64, events: u64) -> SignedCheckpoint {
        let at = DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc);
        let signer = Signer::from_seed(&[7; 32]);
        signer.sign(Checkpoint {
            format: crate::audit::keys::FORMAT,
            incident: incident.to_string(),
            number,
            events,
            head: "ab".repeat(32),
            prev: "00".repeat(32),
            at,
            key: signer.public().fingerprint().to_string(),
        })
    }

    #[test]
    fn lines_written_read_back_with_their_numbers() {
        let (first, second) = (signed("inc-1", 1, 3), signed("inc-2", 1, 5));
        let text = format!("{}\n\n{}\n", line(&first), line(&second));
        let witness = read(text.as_bytes()).unwrap();
        assert!(witness.bad_lines.is_empty(), "{:?}", witness.bad_lines);
        assert_eq!(
            witness.checkpoints,
            [Witnessed { line: 1, signed: first.clone() }, Witnessed { line: 3, signed: second }]
        );
        assert_eq!(witness.incidents(), ["inc-1", "inc-2"]);
        assert_eq!(witness.of("inc-1"), [Witnessed { line: 1, signed: first }]);
    }

    #[test]
    fn bad_lines_are_reported_by_number_and_the_rest_is_read() {
        let good = line(&signed("inc-1", 1, 3));
        let table: [(&[u8], &str); 6] = [
            (b"{\"type\":\"checkpoint\"", "ends before the checkpoint does"),
            (b"hello", "is not a checkpoint line"),
            (b"{\"type\":\"header\",\"checkpoint\":{},\"signature\":\"\"}", "is not a checkpoint line"),
            (b"\xff\xfe", "is not UTF-8"),
            (b"{\"type\":\"event\",\"checkpoint\":", "ends before the checkpoint does"),
            (b"[1]", "is not a checkpoint line"),
        ];
        for (bad, expected) in table {
            let mut text = format!("{good}\n").into_bytes();
            text.extend_from_slice(bad);
            text.extend_from_slice(format!("\n{good}").as_bytes());
            let witness = read(text.as_slice()).unwrap();
            assert_eq!(witness.checkpoints.len(), 2, "{expected}");
            assert_eq!(witness.checkpoints[1].line, 3);
            let [problem] = witness.bad_lines.as_slice() else { panic!("{expected}: {:?}", witness.bad_lines) };
            assert_eq!(problem.line, 2, "{expected}");
            assert!(problem.what.starts_with(expected), "{expected}: {}", problem.what);
        }
        let text = format!("{}\n", line(&signed("inc-1", 1, 3)).replace("\"checkpoint\",", "\"export\","));
        let witness = read(text.as_bytes()).unwrap();
        assert_eq!(witness.bad_lines[0].what, "is a `export` line; a witness holds only `checkpoint` lines");
    }
}
