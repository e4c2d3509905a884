//! How events, effects and times look in a database, for every backend: JSON text for events and
//! effects, fixed-width RFC 3339 text for times, and the rules an append must follow, checked once
//! here before any backend sees it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use super::{Append, Events, Fence, Headers, IncidentSummary};
use crate::audit::chain::Canonical;
use crate::engine::{Effect, Event, EventKind};

/// A time as stored: RFC 3339 in UTC with nanoseconds. Every such string has the same width, so
/// they sort as text in the order of the times.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| Error::Corrupt(format!("`{text}` is not a time: {error}")))
}

/// An incident's summary as either backend reads it (`summaries!`): integers signed, times as
/// text.
#[derive(sqlx::FromRow)]
pub(crate) struct IncidentRow {
    id: String,
    runbook_id: String,
    key: Option<String>,
    version: i64,
    started_at: String,
    updated_at: String,
    closed_at: Option<String>,
    head: Option<String>,
    checkpointed: i64,
    checkpointed_at: Option<String>,
}

impl TryFrom<IncidentRow> for IncidentSummary {
    type Error = Error;

    fn try_from(row: IncidentRow) -> Result<IncidentSummary, Error> {
        let unsigned = |number: i64| {
            u64::try_from(number).map_err(|_| Error::Corrupt(format!("a stored version is negative: {number}")))
        };
        Ok(IncidentSummary {
            version: unsigned(row.version)?,
            started_at: parse_timestamp(&row.started_at)?,
            updated_at: parse_timestamp(&row.updated_at)?,
            closed_at: row.closed_at.as_deref().map(parse_timestamp).transpose()?,
            checkpointed: unsigned(row.checkpointed)?,
            checkpointed_at: row.checkpointed_at.as_deref().map(parse_timestamp).transpose()?,
            head: row.head,
            id: row.id,
            runbook_id: row.runbook_id,
            key: row.key,
        })
    }
}

/// A delivery's headers as stored: a JSON object, or nothing when there are none.
pub(crate) fn encode_headers(headers: &Headers) -> Option<String> {
    (!headers.is_empty()).then(|| serde_json::to_string(headers).expect("a map of text encodes"))
}

/// A delivery's headers read back; nothing stored (none kept, or received before headers were
/// kept) is no headers.
pub(crate) fn decode_headers(source: &str, id: &str, json: Option<&str>) -> Result<Headers, Error> {
    match json {
        None => Ok(Headers::new()),
        Some(json) => serde_json::from_str(json).map_err(|error| {
            Error::Corrupt(format!("the headers of delivery `{id}` from `{source}` are not what was written: {error}"))
        }),
    }
}

/// An event ready to be stored.
pub(crate) struct EventRow {
    pub seq: u64,
    /// The event's type, such as `phase_started`.
    pub kind: &'static str,
    pub at: String,
    pub json: String,
}

/// An effect ready to be put in the outbox.
pub(crate) struct EffectRow {
    pub id: String,
    pub json: String,
}

/// What a new incident's summary row starts with, taken from its `incident_started` event.
pub(crate) struct StartRow {
    pub runbook_id: String,
    pub key: Option<String>,
    pub started_at: String,
}

/// An append that follows the log's rules, encoded: what a backend writes, owned so that it can
/// travel to a writer.
pub(crate) struct AppendRows {
    pub incident: String,
    pub expected: u64,
    /// Set when the append starts the incident.
    pub start: Option<StartRow>,
    pub events: Vec<EventRow>,
    pub effects: Vec<EffectRow>,
    /// The id of the effect whose result this append records.
    pub completes: Option<String>,
    /// The fencing token the effect it completes was claimed with, if it was claimed.
    pub token: Option<u64>,
    /// The claim the append is stored under, if any: checked before anything is written.
    pub under: Option<Fence>,
    /// The webhook deliveries the append records, as (source, id, received at).
    pub deliveries: Vec<(String, String, String)>,
}

impl AppendRows {
    /// Checks the shape of an append (a new incident starts with `incident_started` naming it, and
    /// no other event starts one) and encodes what is not encoded yet.
    pub fn new(append: Append) -> Result<AppendRows, Error> {
        let Append { incident, expected, events, effects, completes, token, under, deliveries } = append;
        let invalid = |problem: String| Error::Invalid { incident: incident.clone(), problem };
        let events: Vec<Canonical> = match events {
            Events::Canonical(events) => events,
            Events::Given(events) => events
                .into_iter()
                .enumerate()
                .map(|(index, event)| {
                    let (seq, kind) = (expected + 1 + index as u64, event.kind.name());
                    Canonical::of(event).map_err(|problem| invalid(format!("event {seq} (`{kind}`) {problem}")))
                })
                .collect::<Result<_, Error>>()?,
        };
        let start = if expected == 0 {
            let first =
                events.first().ok_or_else(|| invalid("a new incident needs an `incident_started` event".into()))?;
            let EventKind::IncidentStarted { incident: named, runbook_id, key, .. } = &first.event().kind else {
                return Err(invalid(format!(
                    "a new incident begins with `incident_started`, not `{}`",
                    first.event().kind.name()
                )));
            };
            if *named != incident {
                return Err(invalid(format!("its `incident_started` event names incident `{named}`")));
            }
            Some(StartRow { runbook_id: runbook_id.clone(), key: key.clone(), started_at: timestamp(first.event().at) })
        } else {
            None
        };
        let mut rows = Vec::with_capacity(events.len());
        for (index, canonical) in events.into_iter().enumerate() {
            let seq = expected + 1 + index as u64;
            let event = canonical.event();
            if seq > 1 && matches!(event.kind, EventKind::IncidentStarted { .. }) {
                return Err(invalid(format!("event {seq} would be a second `incident_started`")));
            }
            let (kind, at) = (event.kind.name(), timestamp(event.at));
            rows.push(EventRow { seq, kind, at, json: canonical.into_json() });
        }
        let effects = effects
            .iter()
            .map(|effect| {
                let json = encode(effect).map_err(|problem| invalid(format!("effect `{}` {problem}", effect.id)))?;
                Ok(EffectRow { id: effect.id.clone(), json })
            })
            .collect::<Result<_, Error>>()?;
        let deliveries = deliveries
            .into_iter()
            .map(|delivery| (delivery.source, delivery.id, timestamp(delivery.received_at)))
            .collect();
        Ok(AppendRows { incident, expected, start, events: rows, effects, completes, token, under, deliveries })
    }

    /// How many rows the append writes: if only one, a refusal of that one write leaves nothing
    /// of the append to undo.
    pub fn writes(&self) -> usize {
        usize::from(self.start.is_some())
            + self.events.len()
            + self.effects.len()
            + usize::from(self.completes.is_some())
            + self.deliveries.len()
    }

    /// The statements the writer runs for the append (its events are one).
    pub fn statements(&self) -> usize {
        usize::from(self.start.is_some())
            + usize::from(!self.events.is_empty())
            + self.effects.len()
            + usize::from(self.completes.is_some())
            + usize::from(!self.deliveries.is_empty())
    }

    /// Whether the append could be refused after it has written something, so that the batch
    /// must be able to undo it alone (a savepoint). The writer checks the incident's version
    /// before it writes anything, so the events that follow are never refused; the start of an
    /// incident, a delivery already taken, an effect already queued and an unknown effect to
    /// complete are. The order here is the order the writer writes in.
    pub fn may_fail_halfway(&self) -> bool {
        let refusable =
            [(self.start.is_some(), true), (!self.deliveries.is_empty(), true), (!self.events.is_empty(), false)]
                .into_iter()
                .chain(self.effects.iter().map(|_| (true, true)))
                .chain([(self.completes.is_some(), true)]);
        refusable.filter(|(written, _)| *written).skip(1).any(|(_, refusable)| refusable)
    }

    /// The incident's version once the append is stored.
    pub fn version(&self) -> u64 {
        self.expected + self.events.len() as u64
    }
}

/// What a backend looks up to say why an append was refused ([`refusal`]).
pub(crate) trait RefusalLookups {
    /// The incident's stored version, if it exists.
    async fn version(&mut self, incident: &str) -> Result<Option<i64>, sqlx::Error>;
    /// The open incident of `runbook_id` with deduplication key `key`, if there is one.
    async fn open_with_key(&mut self, runbook_id: &str, key: Option<&str>) -> Result<Option<String>, sqlx::Error>;
}

/// Why the incident's row refused an append, the same for every backend: the incident is at
/// another version, it does not exist, or the key of a new incident is taken by an open one.
pub(crate) async fn refusal(lookups: &mut impl RefusalLookups, rows: &AppendRows) -> Error {
    let incident = rows.incident.clone();
    match lookups.version(&incident).await {
        Err(error) => Error::from(error),
        Ok(Some(actual)) if Some(actual) == i64::try_from(rows.expected).ok() && rows.start.is_none() => {
            Error::Corrupt(format!("incident `{incident}` at version {actual} refused its next event"))
        }
        Ok(Some(actual)) => match u64::try_from(actual) {
            Ok(actual) => Error::Conflict { incident, expected: rows.expected, actual },
            Err(_) => Error::Corrupt(format!("a stored version is negative: {actual}")),
        },
        Ok(None) => match &rows.start {
            None => Error::NotFound { incident },
            Some(start) => match (lookups.open_with_key(&start.runbook_id, start.key.as_deref()).await, &start.key) {
                (Ok(Some(open)), Some(key)) => {
                    Error::DuplicateKey { runbook_id: start.runbook_id.clone(), key: key.clone(), open }
                }
                (Err(error), _) => Error::from(error),
                (Ok(_), _) => {
                    Error::Corrupt(format!("starting incident `{incident}` was refused, for no reason found"))
                }
            },
        },
    }
}

/// Encodes `value` as JSON, and checks that the JSON reads back as the same value. What the log
/// could not give back must not be stored: one unreadable event would make its incident unreadable
/// for good, and one unreadable effect would stop the outbox.
fn encode<T: Serialize + DeserializeOwned + PartialEq>(value: &T) -> Result<String, String> {
    let json = serde_json::to_string(value).map_err(|error| format!("cannot be encoded as JSON: {error}"))?;
    match serde_json::from_str::<T>(&json) {
        Ok(back) if back == *value => Ok(json),
        Ok(_) => Err("does not read back from JSON as it was written".to_string()),
        Err(error) => Err(format!("does not read back from JSON: {error}")),
    }
}

pub(crate) fn decode_event(incident: &str, seq: u64, json: &str) -> Result<Event, Error> {
    serde_json::from_str(json)
        .map_err(|error| Error::Corrupt(format!("event {seq} of incident `{incident}` is not an event: {error}")))
}

pub(crate) fn decode_effect(incident: &str, json: &str) -> Result<Effect, Error> {
    serde_json::from_str(json)
        .map_err(|error| Error::Corrupt(format!("an outbox entry of incident `{incident}` is not an effect: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Append;

    fn at(second: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-24T02:14:{second:02}Z")).unwrap().with_timezone(&Utc)
    }

    fn started(incident: &str) -> Event {
        Event::new(
            at(0),
            "dana",
            EventKind::IncidentStarted {
                incident: incident.into(),
                runbook_id: "breach".into(),
                runbook_version: None,
                runbook_sha256: "00".into(),
                runbook_text: "id: breach".into(),
                inputs: Default::default(),
                key: Some("alert-1".into()),
            },
        )
    }

    fn note(second: u32) -> Event {
        Event::new(at(second), "dana", EventKind::NoteAdded)
    }

    fn closed(second: u32) -> Event {
        Event::new(at(second), "dana", EventKind::IncidentClosed { abandoned: false })
    }

    /// The problem an append is refused with, or `None` when it is accepted.
    fn problem(expected: u64, events: &[Event]) -> Option<String> {
        match AppendRows::new(Append::new("inc-1", expected, events)) {
            Ok(_) => None,
            Err(Error::Invalid { problem, .. }) => Some(problem),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn the_shape_of_an_append_is_checked() {
        let cases: &[(&str, u64, Vec<Event>, Option<&str>)] = &[
            ("new incident, started", 0, vec![started("inc-1"), note(1)], None),
            ("new incident, no events", 0, vec![], Some("a new incident needs an `incident_started` event")),
            (
                "new incident, other start",
                0,
                vec![note(1)],
                Some("a new incident begins with `incident_started`, not `note_added`"),
            ),
            (
                "started under another id",
                0,
                vec![started("inc-2")],
                Some("its `incident_started` event names incident `inc-2`"),
            ),
            (
                "started twice",
                0,
                vec![started("inc-1"), started("inc-1")],
                Some("event 2 would be a second `incident_started`"),
            ),
            ("started again later", 4, vec![started("inc-1")], Some("event 5 would be a second `incident_started`")),
            ("later, no events", 4, vec![], None),
        ];
        for (name, expected, events, want) in cases {
            assert_eq!(problem(*expected, events).as_deref(), *want, "{name}");
        }
    }

    #[test]
    fn an_append_knows_its_summary_and_numbers_its_events() {
        let rows =
            AppendRows::new(Append::new("inc-1", 0, &[started("inc-1"), note(1), closed(2), closed(3)])).unwrap();
        let start = rows.start.as_ref().unwrap();
        assert_eq!((start.runbook_id.as_str(), start.key.as_deref()), ("breach", Some("alert-1")));
        assert_eq!(start.started_at, "2026-11-24T02:14:00.000000000Z");
        assert_eq!(rows.events.iter().map(|row| row.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(rows.events[1].kind, "note_added");
        assert_eq!(rows.events[3].at, "2026-11-24T02:14:03.000000000Z");
        assert_eq!(rows.version(), 4);

        let later = AppendRows::new(Append::new("inc-1", 7, &[note(9)]).completes(Some("effect-1"))).unwrap();
        assert!(later.start.is_none());
        assert_eq!((later.events[0].seq, later.version()), (8, 8));
        assert_eq!((rows.writes(), later.writes()), (5, 2));
        assert_eq!(later.completes.as_deref(), Some("effect-1"));
    }

    /// Where a refusal can come after a write, the writer takes a savepoint; nowhere else.
    #[test]
    fn an_append_that_may_be_refused_halfway_is_known() {
        let delivered = |mut rows: AppendRows| {
            rows.deliveries = vec![("alertmanager".into(), "d-1".into(), "2026-11-24T02:14:00Z".into())];
            rows
        };
        let noting = || AppendRows::new(Append::new("inc-1", 3, &[note(4)])).unwrap();
        let start = || AppendRows::new(Append::new("inc-1", 0, &[started("inc-1"), note(1)])).unwrap();
        let completing = || AppendRows::new(Append::new("inc-1", 3, &[note(4)]).completes(Some("effect-1"))).unwrap();
        let cases = [
            ("events only: checked before anything is written", noting(), false),
            ("a delivery, then events: the delivery is written first", delivered(noting()), false),
            ("a start alone", start(), false),
            ("a start, then its delivery", delivered(start()), true),
            ("events, then a completion", completing(), true),
            (
                "only a completion",
                AppendRows::new(Append::new("inc-1", 3, &[]).completes(Some("effect-1"))).unwrap(),
                false,
            ),
        ];
        for (what, rows, halfway) in cases {
            assert_eq!(rows.may_fail_halfway(), halfway, "{what}");
        }
        assert_eq!((noting().statements(), delivered(start()).statements(), completing().statements()), (1, 3, 2));
    }

    /// Regression: a secret header without a prefix was written as `"prefix": null`, which the
    /// reader refused, so the outbox held an effect that nothing could read back.
    #[test]
    fn what_would_not_read_back_is_not_stored() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Lossy {
            kept: u32,
            #[serde(skip_deserializing)]
            lost: u32,
        }
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Strict {
            #[serde(deserialize_with = "refuse")]
            field: Option<String>,
        }
        fn refuse<'de, D: serde::Deserializer<'de>>(_: D) -> Result<Option<String>, D::Error> {
            Err(serde::de::Error::custom("no"))
        }
        assert_eq!(encode(&Lossy { kept: 1, lost: 0 }).unwrap(), r#"{"kept":1,"lost":0}"#);
        assert_eq!(encode(&Lossy { kept: 1, lost: 2 }).unwrap_err(), "does not read back from JSON as it was written");
        assert!(encode(&Strict { field: None }).unwrap_err().starts_with("does not read back from JSON: no"));
    }

    #[test]
    fn stored_times_sort_as_text_and_read_back() {
        let times = [at(3), at(3) + chrono::Duration::nanoseconds(1), at(10), at(59)];
        let texts: Vec<String> = times.iter().map(|t| timestamp(*t)).collect();
        assert!(texts.windows(2).all(|pair| pair[0] < pair[1]), "{texts:?}");
        for (time, text) in times.iter().zip(&texts) {
            assert_eq!(parse_timestamp(text).unwrap(), *time);
        }
        assert!(matches!(parse_timestamp("yesterday"), Err(Error::Corrupt(_))));
    }
}
