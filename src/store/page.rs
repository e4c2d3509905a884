//! Which events of an incident's log a reader wants, a page at a time: [`Page`], which both
//! the API's timeline (oldest first, after a cursor) and the dashboard's (newest first, of one
//! type or all) ask [`Store::events_page`](super::Store::events_page) for, so that neither reads
//! and decodes the whole log to show fifty events of it.

use super::{Error, rows};
use crate::engine::Event;

/// Where a page starts, and which way it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The events after position `n` (1-based; 0 is before the first), oldest first.
    After(u64),
    /// The events before position `n`, newest first: `Before(version + 1)` starts at the
    /// latest event.
    Before(u64),
}

/// Up to `limit` events from a cursor on, of one type or of every type, after passing over the
/// first `skip` of those that match (what a page number asks for when a type leaves gaps in the
/// positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub from: Cursor,
    /// Only events of this type (`note_added`, as an event's `type` is written); `None` for all.
    pub kind: Option<String>,
    pub skip: u64,
    pub limit: usize,
}

impl Page {
    /// Up to `limit` events after position `after`, oldest first, of every type.
    pub fn after(after: u64, limit: usize) -> Page {
        Page { from: Cursor::After(after), kind: None, skip: 0, limit }
    }

    /// Up to `limit` events before position `before`, newest first, of every type.
    pub fn before(before: u64, limit: usize) -> Page {
        Page { from: Cursor::Before(before), kind: None, skip: 0, limit }
    }

    /// Only events of type `kind` (`None`: every type).
    pub fn of(mut self, kind: Option<&str>) -> Page {
        self.kind = kind.map(str::to_string);
        self
    }

    /// Passing over the first `skip` events that match.
    pub fn skipping(mut self, skip: u64) -> Page {
        self.skip = skip;
        self
    }

    /// The cursor the page starts from once the events to pass over are passed over, where
    /// that can be known without reading them: a page of every type has no gaps in its
    /// positions (a gap is a lost event, reported as corruption), so it starts `skip` further on.
    fn start(&self) -> Cursor {
        match (self.kind.is_some(), self.from) {
            (true, from) => from,
            (false, Cursor::After(after)) => Cursor::After(after.saturating_add(self.skip)),
            (false, Cursor::Before(before)) => Cursor::Before(before.saturating_sub(self.skip)),
        }
    }

    /// The page's statement (`$N` parameters, which both backends take) and its parameters after
    /// the incident (`$1`): the cursor's position, the limit, then for a page of one type the
    /// events to pass over and the type. There is no index on the type: one would add an index entry,
    /// and a WAL page, to every command's commit (issue 13), so a page of one type walks the
    /// incident's events by their key.
    pub(crate) fn statement(&self) -> (&'static str, [i64; 3]) {
        let (position, sql) = match (self.start(), self.kind.is_some()) {
            (Cursor::After(position), false) => {
                (position, "SELECT seq, event FROM events WHERE incident = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            }
            (Cursor::Before(position), false) => {
                (position, "SELECT seq, event FROM events WHERE incident = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3")
            }
            (Cursor::After(position), true) => (
                position,
                "SELECT seq, event FROM events WHERE incident = $1 AND seq IN \
                 (SELECT seq FROM events WHERE incident = $1 AND type = $5 AND seq > $2 \
                 ORDER BY seq LIMIT $3 OFFSET $4) ORDER BY seq",
            ),
            (Cursor::Before(position), true) => (
                position,
                "SELECT seq, event FROM events WHERE incident = $1 AND seq IN \
                 (SELECT seq FROM events WHERE incident = $1 AND type = $5 AND seq < $2 \
                 ORDER BY seq DESC LIMIT $3 OFFSET $4) ORDER BY seq DESC",
            ),
        };
        (sql, [signed(position), signed(self.limit as u64), signed(self.skip)])
    }

    /// The rows a backend read for this page, checked and decoded: a page of every type must
    /// hold positions that follow each other with no gap (after its cursor: from the next one),
    /// and a page of one type positions that run the page's way, beyond its cursor.
    pub(crate) fn decode(&self, incident: &str, rows: Vec<(i64, String)>) -> Result<Vec<(u64, Event)>, Error> {
        let start = self.start();
        let mut previous: Option<u64> = None;
        rows.into_iter()
            .enumerate()
            .map(|(index, (seq, event))| {
                let seq =
                    u64::try_from(seq).map_err(|_| Error::Corrupt(format!("a stored position is negative: {seq}")))?;
                let in_order = match (self.kind.is_some(), start) {
                    (false, Cursor::After(after)) => seq == after + index as u64 + 1,
                    (false, Cursor::Before(before)) => {
                        seq < before && previous.is_none_or(|previous| seq + 1 == previous)
                    }
                    (true, Cursor::After(after)) => seq > after && previous.is_none_or(|previous| seq > previous),
                    (true, Cursor::Before(before)) => seq < before && previous.is_none_or(|previous| seq < previous),
                };
                if !in_order {
                    return Err(Error::Corrupt(match (self.kind.is_some(), start) {
                        (false, Cursor::After(after)) => {
                            let expected = after + index as u64 + 1;
                            format!("incident `{incident}` has event {seq} where event {expected} belongs")
                        }
                        _ => format!("incident `{incident}`'s log has a gap or is out of order at event {seq}"),
                    }));
                }
                previous = Some(seq);
                Ok((seq, rows::decode_event(incident, seq, &event)?))
            })
            .collect()
    }
}

/// A position, a limit or a count as SQL takes it: past the largest it has, the largest.
fn signed(number: u64) -> i64 {
    i64::try_from(number).unwrap_or(i64::MAX)
}

/// How many events of each type an incident's log holds between two positions, by type, in the
/// order of the types' names.
pub type Counts = Vec<(String, u64)>;

/// Counts the types of a stretch of the log, in the order of the types' names.
pub(crate) fn count(kinds: Vec<String>) -> Counts {
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for kind in kinds {
        *counts.entry(kind).or_default() += 1;
    }
    counts.into_iter().collect()
}
