//! The RFC 8785 (JCS) text of anything serde serialises, written directly: what
//! `serde_json_canonicalizer` writes, at a fraction of the work, for the encoding every event
//! goes through once on its way to the log (`chain::Canonical::of`).
//!
//! The library sorts each object's members by serialising every key, parsing it back and
//! collecting its UTF-16 code units, and buffers every member's text to sort it; going through a
//! `serde_json::Value` first instead costs a tree of allocations per event. Here the value is
//! serialised once: each object's members are written one after another into a buffer of that
//! object's, remembered by key, then copied out sorted by key (byte order, which is UTF-16 order
//! unless a key holds a character from U+E000 up, when the keys are compared as UTF-16). A
//! struct's keys are its field names, so sorting them allocates nothing. Strings are escaped by
//! `serde_json`, whose escapes are the ones RFC 8785 prescribes (`\b \t \n \f \r`, `\"`, `\\`,
//! other control characters as `\u00xx` in lowercase, nothing else); integers within 2^53 are
//! written as they are; any other number is written by the library itself, which knows
//! ECMAScript's number format. Values are read as `serde_json::to_value` reads them (a
//! non-finite float is `null`, a map's keys must be strings), and an object with a key twice is
//! refused. The property tests below check that the text is the library's for any JSON value and
//! for every kind of event.

use std::cmp::Ordering;
use std::io::Write;

use serde::ser::{self, Error as _, Serialize};
use serde_json::{Error, Number};

use compound::{Array, Object};

mod compound;

/// The largest integer a double holds exactly, and so the largest that ECMAScript writes as the
/// integer itself.
const EXACT: u64 = 1 << 53;

/// How `serde_json` marks a `RawValue`, whose text this encoder does not take apart.
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// The JCS text of `value`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut text = Vec::with_capacity(256);
    value.serialize(Writer { text: &mut text })?;
    Ok(String::from_utf8(text).expect("JSON is written as UTF-8"))
}

/// Writes one JSON value at the end of `text`.
struct Writer<'t> {
    text: &'t mut Vec<u8>,
}

impl<'t> Writer<'t> {
    fn raw(self, bytes: &[u8]) -> Result<(), Error> {
        self.text.extend_from_slice(bytes);
        Ok(())
    }

    fn unsigned(self, value: u64) -> Result<(), Error> {
        if value <= EXACT { write!(self.text, "{value}").map_err(Error::io) } else { self.number(Number::from(value)) }
    }

    fn signed(self, value: i64) -> Result<(), Error> {
        match u64::try_from(value) {
            Ok(value) => self.unsigned(value),
            Err(_) if value.unsigned_abs() <= EXACT => write!(self.text, "{value}").map_err(Error::io),
            Err(_) => self.number(Number::from(value)),
        }
    }

    /// A number beyond what is written as an integer: ECMAScript's form, by the library.
    fn number(self, number: Number) -> Result<(), Error> {
        self.raw(serde_json_canonicalizer::to_string(&number)?.as_bytes())
    }

    /// An object of one member, `{"name":`, closed by the compound that writes its value.
    fn open_variant(self, name: &str) -> Result<&'t mut Vec<u8>, Error> {
        self.text.push(b'{');
        string_into(self.text, name)?;
        self.text.push(b':');
        Ok(self.text)
    }
}

/// `string` as a JSON string, escaped as RFC 8785 says (and `serde_json` does).
fn string_into(text: &mut Vec<u8>, string: &str) -> Result<(), Error> {
    serde_json::to_writer(text, string)
}

fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

impl<'t> ser::Serializer for Writer<'t> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'t>;
    type SerializeTuple = Array<'t>;
    type SerializeTupleStruct = Array<'t>;
    type SerializeTupleVariant = Array<'t>;
    type SerializeMap = Object<'t>;
    type SerializeStruct = Object<'t>;
    type SerializeStructVariant = Object<'t>;

    fn serialize_bool(self, value: bool) -> Result<(), Error> {
        self.raw(if value { b"true" } else { b"false" })
    }
    fn serialize_i8(self, value: i8) -> Result<(), Error> {
        self.signed(value.into())
    }
    fn serialize_i16(self, value: i16) -> Result<(), Error> {
        self.signed(value.into())
    }
    fn serialize_i32(self, value: i32) -> Result<(), Error> {
        self.signed(value.into())
    }
    fn serialize_i64(self, value: i64) -> Result<(), Error> {
        self.signed(value)
    }
    fn serialize_i128(self, value: i128) -> Result<(), Error> {
        let value = i64::try_from(value).map_err(|_| Error::custom("number out of range"))?;
        self.signed(value)
    }
    fn serialize_u8(self, value: u8) -> Result<(), Error> {
        self.unsigned(value.into())
    }
    fn serialize_u16(self, value: u16) -> Result<(), Error> {
        self.unsigned(value.into())
    }
    fn serialize_u32(self, value: u32) -> Result<(), Error> {
        self.unsigned(value.into())
    }
    fn serialize_u64(self, value: u64) -> Result<(), Error> {
        self.unsigned(value)
    }
    fn serialize_u128(self, value: u128) -> Result<(), Error> {
        let value = u64::try_from(value).map_err(|_| Error::custom("number out of range"))?;
        self.unsigned(value)
    }
    fn serialize_f32(self, value: f32) -> Result<(), Error> {
        self.serialize_f64(value.into())
    }
    fn serialize_f64(self, value: f64) -> Result<(), Error> {
        match Number::from_f64(value) {
            Some(number) => self.number(number),
            // As `serde_json::to_value` has it.
            None => self.raw(b"null"),
        }
    }
    fn serialize_char(self, value: char) -> Result<(), Error> {
        string_into(self.text, value.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, value: &str) -> Result<(), Error> {
        string_into(self.text, value)
    }
    fn serialize_bytes(self, value: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq;
        let mut array = self.serialize_seq(Some(value.len()))?;
        value.iter().try_for_each(|byte| array.serialize_element(byte))?;
        array.end()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Error> {
        string_into(self.text, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let text = self.open_variant(variant)?;
        value.serialize(Writer { text: &mut *text })?;
        text.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'t>, Error> {
        Ok(Array::new(self.text, false))
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'t>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Array<'t>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'t>, Error> {
        Ok(Array::new(self.open_variant(variant)?, true))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'t>, Error> {
        Ok(Object::new(self.text, len.unwrap_or(0), false))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Object<'t>, Error> {
        if name == RAW_VALUE {
            return Err(Error::custom("raw JSON is not encoded canonically here"));
        }
        Ok(Object::new(self.text, len, false))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'t>, Error> {
        let text = self.open_variant(variant)?;
        Ok(Object::new(text, len, true))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, TimeZone, Utc};
    use proptest::prelude::*;
    use serde_json::{Map, Number, Value, json};

    use super::to_string;
    use crate::engine::effect::CampaignTotals;
    use crate::engine::event::Approver;
    use crate::engine::{Event, EventKind};

    /// What the library writes, and so what the hash chain covers.
    fn library(value: &impl serde::Serialize) -> String {
        serde_json_canonicalizer::to_string(value).unwrap()
    }

    /// Text that tries the escapes and the key order: ASCII, control characters, quotes and
    /// backslashes, characters either side of U+E000 and beyond the BMP.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{0,8}",
            "[\\x00-\\x7f]{0,12}",
            "[\"\\\\/\\x00-\\x1f\\x7f\\u{80}-\\u{7ff}]{0,8}",
            "[\\u{d7ff}\\u{e000}-\\u{e002}\\u{fb33}\\u{ffff}\\u{10000}\\u{1f600}a]{0,6}",
            any::<String>(),
        ]
    }

    fn number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<i64>().prop_map(Number::from),
            any::<u64>().prop_map(Number::from),
            (-(1i64 << 53) - 2..(1i64 << 53) + 2).prop_map(Number::from),
            any::<f64>().prop_filter_map("finite", Number::from_f64),
            (-1e25f64..1e25).prop_filter_map("finite", Number::from_f64),
            prop_oneof![Just(0.0), Just(-0.0), Just(1e21), Just(1e-7), Just(4.5), Just(2e-3)]
                .prop_filter_map("finite", Number::from_f64),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number().prop_map(Value::Number),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..4_102_444_800, 0u32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Utc.timestamp_opt(seconds, nanos).single().expect("in range"))
    }

    /// What every kind of event is built from, drawn once per case.
    #[derive(Debug, Clone)]
    struct Parts {
        texts: Vec<String>,
        values: Vec<Value>,
        map: BTreeMap<String, Value>,
        numbers: Vec<u64>,
        small: Vec<u32>,
        flags: Vec<bool>,
        times: Vec<DateTime<Utc>>,
        reason: Option<String>,
    }

    fn parts() -> impl Strategy<Value = Parts> {
        (
            prop::collection::vec(text(), 10),
            prop::collection::vec(value(), 2),
            prop::collection::btree_map(text(), value(), 0..5),
            prop::collection::vec(any::<u64>(), 7),
            prop::collection::vec(any::<u32>(), 3),
            prop::collection::vec(any::<bool>(), 3),
            prop::collection::vec(time(), 3),
            prop::option::of(text()),
        )
            .prop_map(|(texts, values, map, numbers, small, flags, times, reason)| Parts {
                texts,
                values,
                map,
                numbers,
                small,
                flags,
                times,
                reason,
            })
    }

    /// One event of every kind, from `parts`.
    fn every_kind(parts: &Parts) -> Vec<Event> {
        let t = |index: usize| parts.texts[index].clone();
        let maybe = |index: usize| parts.flags[index % 3].then(|| t(index));
        let (n, s, v, map) = (&parts.numbers, &parts.small, &parts.values, &parts.map);
        let phase = t(0);
        let step = t(1);
        let kinds = vec![
            EventKind::IncidentStarted {
                incident: t(2),
                runbook_id: t(3),
                runbook_version: maybe(4),
                runbook_sha256: t(5),
                runbook_text: t(6),
                inputs: map.clone(),
                key: maybe(7),
            },
            EventKind::PhaseReady { phase: phase.clone() },
            EventKind::PhaseSkipped { phase: phase.clone(), condition: t(2), values: v[0].clone() },
            EventKind::PhaseStarted { phase: phase.clone() },
            EventKind::PhaseDone { phase: phase.clone() },
            EventKind::PhaseFailed { phase: phase.clone(), error: t(3) },
            EventKind::ApprovalGiven { phase: phase.clone(), gate: t(2), role: t(3) },
            EventKind::SignalGiven { phase: phase.clone(), gate: t(2) },
            EventKind::CheckPolled { phase: phase.clone(), gate: t(2), poll: s[0] },
            EventKind::CheckAnswered {
                phase: phase.clone(),
                gate: t(2),
                ok: parts.flags[0],
                status: parts.flags[1].then_some(s[1] as u16),
                error: maybe(3),
            },
            EventKind::GatePassed { phase: phase.clone(), gate: t(2), why: v[1].clone() },
            EventKind::DeadlineMissed { phase: phase.clone(), gate: t(2) },
            EventKind::StepSkipped { phase: phase.clone(), step: step.clone(), condition: t(2) },
            EventKind::StepStarted { phase: phase.clone(), step: step.clone(), attempt: s[0], idempotency_key: t(3) },
            EventKind::StepDone { phase: phase.clone(), step: step.clone(), outputs: map.clone() },
            EventKind::StepFailed {
                phase: phase.clone(),
                step: step.clone(),
                attempt: s[1],
                error: t(2),
                retry_at: parts.flags[2].then_some(parts.times[1]),
            },
            EventKind::ControlRelaxed {
                control: t(2),
                phase: phase.clone(),
                step: step.clone(),
                reason: t(3),
                expires_at: parts.times[2],
                approved_by: vec![
                    Approver { person: t(4), role: t(5), at: parts.times[0] },
                    Approver { person: t(6), role: t(7), at: parts.times[1] },
                ],
                compensating: vec![t(8), t(9)],
            },
            EventKind::RelaxationOverdue { control: t(2) },
            EventKind::ControlReinstated {
                control: t(2),
                phase: phase.clone(),
                step: step.clone(),
                strengthened: vec![t(3)],
            },
            EventKind::StatusUpdateRequested { audience: t(2), occasion: t(3) },
            EventKind::StatusUpdateSent {
                audience: t(2),
                channels: vec![t(3), t(4)],
                occasion: maybe(5),
                text: maybe(6),
            },
            EventKind::StatusUpdateFailed { audience: t(2), error: t(3) },
            EventKind::StepRetried { phase: phase.clone(), step: step.clone() },
            EventKind::StepSkippedByHand { phase: phase.clone(), step: step.clone() },
            EventKind::StepOverridden { phase: phase.clone(), step: step.clone(), outputs: map.clone() },
            EventKind::PhaseResumed { phase: phase.clone() },
            EventKind::GateRetried { phase: phase.clone(), gate: t(2) },
            EventKind::GateOverridden { phase: phase.clone(), gate: t(2) },
            EventKind::CampaignStarted {
                phase: phase.clone(),
                step: step.clone(),
                list: t(2),
                list_sha256: t(3),
                recipients: n[0],
                rejected: n[1],
                duplicates: n[2],
                suppressed: n[3],
                batches: s[0],
            },
            EventKind::CampaignProgress {
                phase: phase.clone(),
                step: step.clone(),
                sent: n[0],
                failed: n[1],
                batches_done: s[1],
                batches: s[2],
            },
            EventKind::CampaignTestSent {
                phase: phase.clone(),
                step: step.clone(),
                test: crate::engine::command::CampaignTest {
                    to: vec![t(2), t(3)],
                    recipients: vec![t(4)],
                    messages: s[0],
                    refused: s[1],
                    error: maybe(5),
                },
            },
            EventKind::CampaignLaunched { phase: phase.clone(), step: step.clone() },
            EventKind::CampaignPaused { phase: phase.clone(), step: step.clone() },
            EventKind::CampaignResumed { phase: phase.clone(), step: step.clone() },
            EventKind::CampaignCancelled { phase: phase.clone(), step: step.clone() },
            EventKind::CampaignFinished {
                phase: phase.clone(),
                step: step.clone(),
                campaign: t(2),
                totals: CampaignTotals {
                    recipients: n[0],
                    sent: n[1],
                    failed: n[2],
                    rejected: n[3],
                    duplicates: n[4],
                    suppressed: n[5],
                    batches: s[0],
                    possible_repeats: s.clone(),
                    merkle_root: t(3),
                    leaves: n[6],
                    cancelled: parts.flags[0],
                    failed_by_reason: [(t(4), n[1]), (t(5), n[2])].into_iter().collect(),
                },
            },
            EventKind::NoteAdded,
            EventKind::IncidentClosed { abandoned: parts.flags[1] },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| {
                let mut event = Event::new(parts.times[index % 3], t(index % 10), kind);
                event.reason = parts.reason.clone();
                event
            })
            .collect()
    }

    /// Which kinds `events` holds, by position in the enum; a new kind does not compile here
    /// until it is given a place, and then fails the test until `every_kind` builds it.
    fn kinds_seen(events: &[Event]) -> Vec<bool> {
        let mut seen = vec![false; 38];
        for event in events {
            let index = match event.kind {
                EventKind::IncidentStarted { .. } => 0,
                EventKind::PhaseReady { .. } => 1,
                EventKind::PhaseSkipped { .. } => 2,
                EventKind::PhaseStarted { .. } => 3,
                EventKind::PhaseDone { .. } => 4,
                EventKind::PhaseFailed { .. } => 5,
                EventKind::ApprovalGiven { .. } => 6,
                EventKind::SignalGiven { .. } => 7,
                EventKind::CheckPolled { .. } => 8,
                EventKind::CheckAnswered { .. } => 9,
                EventKind::GatePassed { .. } => 10,
                EventKind::DeadlineMissed { .. } => 11,
                EventKind::StepSkipped { .. } => 12,
                EventKind::StepStarted { .. } => 13,
                EventKind::StepDone { .. } => 14,
                EventKind::StepFailed { .. } => 15,
                EventKind::ControlRelaxed { .. } => 16,
                EventKind::RelaxationOverdue { .. } => 17,
                EventKind::ControlReinstated { .. } => 18,
                EventKind::StatusUpdateRequested { .. } => 19,
                EventKind::StatusUpdateSent { .. } => 20,
                EventKind::StatusUpdateFailed { .. } => 21,
                EventKind::StepRetried { .. } => 22,
                EventKind::StepSkippedByHand { .. } => 23,
                EventKind::StepOverridden { .. } => 24,
                EventKind::PhaseResumed { .. } => 25,
                EventKind::CampaignStarted { .. } => 26,
                EventKind::CampaignProgress { .. } => 27,
                EventKind::CampaignPaused { .. } => 28,
                EventKind::CampaignResumed { .. } => 29,
                EventKind::CampaignCancelled { .. } => 30,
                EventKind::CampaignFinished { .. } => 31,
                EventKind::NoteAdded => 32,
                EventKind::IncidentClosed { .. } => 33,
                EventKind::CampaignTestSent { .. } => 34,
                EventKind::CampaignLaunched { .. } => 35,
                EventKind::GateRetried { .. } => 36,
                EventKind::GateOverridden { .. } => 37,
            };
            seen[index] = true;
        }
        seen
    }

    #[test]
    fn rfc_8785_examples() {
        let cases = [
            json!([1e30, 4.50, 2e-3, 0.000001, 1e-7, -0.0, 9007199254740993u64, -9007199254740993i64]),
            json!({"\u{20ac}": 1, "\r": 2, "\u{fb33}": 3, "1": 4, "\u{1f600}": 5, "\u{80}": 6}),
            json!("\u{f}\u{1f}/\u{2028}\u{7f}\"\\"),
            json!({"b": [true, false, null, {}], "a": {"y": 1, "x": "\n"}}),
        ];
        for value in cases {
            assert_eq!(to_string(&value).unwrap(), library(&value), "{value}");
        }
    }

    /// What `serde_json::to_value` would not make an object of, or would make one of with a key
    /// lost, is refused rather than written.
    #[test]
    fn an_object_with_a_key_twice_or_a_key_that_is_not_text_is_refused() {
        #[derive(serde::Serialize)]
        struct Twice {
            phase: String,
            #[serde(flatten)]
            rest: BTreeMap<String, u32>,
        }
        let twice = Twice { phase: "a".into(), rest: [("phase".to_string(), 1)].into_iter().collect() };
        assert_eq!(to_string(&twice).unwrap_err().to_string(), "an object has the key `phase` twice");
        let numbered: BTreeMap<u32, u32> = [(1, 2)].into_iter().collect();
        assert_eq!(to_string(&numbered).unwrap_err().to_string(), "a map's key must be a string");
        let escaped: BTreeMap<String, u32> = [("a\"b\n".to_string(), 1)].into_iter().collect();
        assert_eq!(to_string(&escaped).unwrap(), r#"{"a\"b\n":1}"#);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn any_value_is_written_as_the_library_writes_it(value in value()) {
            prop_assert_eq!(to_string(&value).unwrap(), library(&value));
        }

        #[test]
        fn every_kind_of_event_is_written_as_the_library_writes_it(parts in parts()) {
            let events = every_kind(&parts);
            prop_assert!(kinds_seen(&events).iter().all(|seen| *seen));
            for event in &events {
                prop_assert_eq!(to_string(event).unwrap(), library(event), "{:?}", event.kind.name());
                let value = serde_json::to_value(event).unwrap();
                prop_assert_eq!(to_string(&value).unwrap(), library(event), "{:?}", event.kind.name());
                // What does not read back (an integer field beyond 2^53, written as a double) is
                // refused, as it was before.
                if let Ok(canonical) = crate::audit::chain::Canonical::of(event.clone()) {
                    prop_assert_eq!(canonical.json(), library(event));
                }
            }
        }
    }
}
