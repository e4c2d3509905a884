//! The RFC 8785 (JCS) text of a JSON value, written directly: what
//! `serde_json_canonicalizer` writes, at a fraction of the work, for the encoding every event
//! goes through once on its way to the log (`chain::Canonical::of`).
//!
//! The library sorts each object's members by serialising every key, parsing it back and
//! collecting its UTF-16 code units, and buffers every member's text to sort it; on an event that
//! was about half of a durable command's processor work (BENCHMARKS.md). Here the value is
//! already a tree: members are sorted by comparing their keys (byte order, which is UTF-16 order
//! unless a key holds a character from U+E000 up, when the keys are compared as UTF-16), and
//! written once, in order. Strings are escaped by `serde_json`, whose escapes are the ones
//! RFC 8785 prescribes (`\b \t \n \f \r`, `\"`, `\\`, other control characters as `\u00xx` in
//! lowercase, nothing else); integers within 2^53 are written as they are; any other number is
//! written by the library itself, which knows ECMAScript's number format. The property test in
//! `chain.rs` checks that the text is the library's for every kind of event.

use std::cmp::Ordering;
use std::io::Write;

use serde_json::Value;

/// The largest integer a double holds exactly, and so the largest that ECMAScript writes as the
/// integer itself.
const EXACT: u64 = 1 << 53;

/// The JCS text of `value`.
pub fn to_string(value: &Value) -> Result<String, serde_json::Error> {
    let mut text = Vec::with_capacity(256);
    write(&mut text, value)?;
    Ok(String::from_utf8(text).expect("JSON is written as UTF-8"))
}

fn write(text: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::Null => text.extend_from_slice(b"null"),
        Value::Bool(true) => text.extend_from_slice(b"true"),
        Value::Bool(false) => text.extend_from_slice(b"false"),
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(unsigned), _) if unsigned <= EXACT => write!(text, "{unsigned}").map_err(serde_json::Error::io)?,
            (_, Some(signed)) if signed.unsigned_abs() <= EXACT => {
                write!(text, "{signed}").map_err(serde_json::Error::io)?
            }
            _ => text.extend_from_slice(serde_json_canonicalizer::to_string(number)?.as_bytes()),
        },
        Value::String(string) => string_into(text, string)?,
        Value::Array(items) => {
            text.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    text.push(b',');
                }
                write(text, item)?;
            }
            text.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            if sorted.iter().any(|(key, _)| key.chars().any(|c| c >= '\u{e000}')) {
                sorted.sort_unstable_by(|(a, _), (b, _)| utf16_order(a, b));
            } else {
                sorted.sort_unstable_by_key(|(key, _)| *key);
            }
            text.push(b'{');
            for (index, (key, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    text.push(b',');
                }
                string_into(text, key)?;
                text.push(b':');
                write(text, member)?;
            }
            text.push(b'}');
        }
    }
    Ok(())
}

/// `string` as a JSON string, escaped as RFC 8785 says (and `serde_json` does).
fn string_into(text: &mut Vec<u8>, string: &str) -> Result<(), serde_json::Error> {
    serde_json::to_writer(text, string)
}

fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
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
        let mut seen = vec![false; 36];
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
