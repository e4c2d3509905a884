//! The post-incident report, generated from an incident's log alone.
//!
//! [`render`] reads the events (the first, `incident_started`, pins the runbook text, which gives
//! titles and gate requirements when it still parses) and what verifying the log found, and writes
//! one Markdown or one self-contained HTML document. It is a pure function: "as of" is the last
//! event's time, never the clock, so the same log always gives the same report.
//!
//! `facts.rs` gathers what the report says (`phases.rs` each phase and its gates); `markdown.rs`
//! and `html.rs` (with `chart.rs`, the phases and relaxations drawn as an SVG timeline, and
//! `text.rs`, escaping and fitting text for the two) only lay it out. Text from the log is written
//! by people and by the systems a runbook calls, so both layouts escape every piece of it.

mod campaigns;
mod chart;
mod facts;
mod html;
mod markdown;
mod phases;
mod text;

#[cfg(test)]
pub(crate) use text::width;
/// Wrapping a label into the room it has, by estimated width: the dashboard's phase graph uses it
/// too.
pub(crate) use text::wrap;

use chrono::{DateTime, Utc};

use crate::engine::Event;

/// What verifying the incident's log found, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Integrity {
    /// The hash chain and every checkpoint verify.
    pub verified: bool,
    /// Events in the log.
    pub events: u64,
    /// Signed checkpoints found.
    pub checkpoints: u64,
    /// The last event covered by a checkpoint that verifies (0 when none does).
    pub signed_through: u64,
    /// The fingerprint of the public key the checkpoints were verified with (`sha256:<hex>`).
    pub fingerprint: Option<String>,
    /// The first thing that did not verify, naming its event or checkpoint.
    pub problem: Option<String>,
}

impl Integrity {
    /// A log that verifies as a chain, checked without a key and with no checkpoint: an unsigned
    /// deployment's. Nothing vouches for it.
    pub fn unsigned(&self) -> bool {
        self.verified && self.checkpoints == 0 && self.fingerprint.is_none()
    }
}

/// The report's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    /// One self-contained, printable file: inline style, an inline SVG chart, no external assets.
    Html,
}

/// Why a log cannot be reported on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the log is empty: there is no incident to report on")]
    Empty,
    #[error("the log does not begin with `incident_started` but with `{found}`")]
    NoStart { found: &'static str },
    #[error("event {number} of the log is a second `incident_started`")]
    SecondStart { number: usize },
}

/// The report on the incident whose log is `events`, with what verifying that log found.
pub fn render(events: &[Event], integrity: &Integrity, format: Format) -> Result<String, Error> {
    let facts = facts::Facts::gather(events)?;
    Ok(match format {
        Format::Markdown => markdown::write(&facts, integrity),
        Format::Html => html::write(&facts, integrity),
    })
}

/// A time as the report prints it: `2026-11-24 02:14:05 UTC`.
fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A stretch of time to the second: `2h 14m 05s`, `3d 0h 00m 00s`, `45s`.
fn span(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds().max(0);
    let (days, hours, minutes, seconds) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds:02}s"),
        (0, _, _) => format!("{hours}h {minutes:02}m {seconds:02}s"),
        _ => format!("{days}d {hours}h {minutes:02}m {seconds:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_to_the_second() {
        let table = [
            (0, "0s"),
            (45, "45s"),
            (60, "1m 00s"),
            (8_045, "2h 14m 05s"),
            (3 * 86_400, "3d 0h 00m 00s"),
            (86_400 + 3_600 + 61, "1d 1h 01m 01s"),
            (-5, "0s"),
        ];
        for (seconds, expected) in table {
            assert_eq!(span(chrono::Duration::seconds(seconds)), expected, "{seconds}s");
        }
    }

    #[test]
    fn a_log_that_is_not_an_incident_is_refused_with_the_reason() {
        let integrity = Integrity {
            verified: false,
            events: 0,
            checkpoints: 0,
            signed_through: 0,
            fingerprint: None,
            problem: None,
        };
        assert_eq!(render(&[], &integrity, Format::Markdown), Err(Error::Empty));
        let at = DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc);
        let note = Event::new(at, "dana", crate::engine::EventKind::NoteAdded);
        let error = render(&[note], &integrity, Format::Html).unwrap_err();
        assert_eq!(error.to_string(), "the log does not begin with `incident_started` but with `note_added`");
    }
}
