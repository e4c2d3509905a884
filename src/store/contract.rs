//! The contract every [`Store`] backend keeps, written once against the trait.
//!
//! Each check is a function taking a fresh, empty store. A backend's tests run them all with
//! [`store_contract!`](crate::store_contract), so a check added here runs for every backend. Built
//! for tests only (the `store-contract` feature, which the integration tests turn on).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{Append, Delivery, Error, IncidentSummary, Store};
use crate::audit::chain::{self, GENESIS};
use crate::audit::keys::{Checkpoint, SignedCheckpoint};
use crate::engine::{Effect, EffectKind, Event, EventKind};

mod campaign;
mod claims;
mod inbox;
mod timeline;
pub use campaign::{
    a_batch_is_marked_sending_then_answered, a_campaign_is_planned_once, a_failed_attempt_is_kept_on_its_batch,
    an_answered_batch_is_never_sent_or_answered_again, answer, campaign_progress_is_there_after_reopening,
    campaign_progress_is_totalled, failures_are_listed_in_batch_order, leaves_read_back_in_number_order, plan, states,
};
pub use claims::{
    a_campaign_write_under_an_effect_taken_over_is_refused, a_stale_token_cannot_complete,
    a_write_under_a_named_lease_taken_over_is_refused, an_expired_lease_is_taken_over,
    leases_up_to_a_share_stand_on_their_holders_presence,
    the_lease_of_a_finished_incident_goes_and_its_token_stays_refused, two_claimers_never_hold_one_effect,
    two_holders_never_hold_one_named_lease, up_to_a_share_of_named_leases_is_taken_anew,
};
pub use inbox::{deliveries_received_together_are_each_answered, received_deliveries_wait_in_the_inbox_until_applied};
pub use timeline::{
    a_page_of_events_is_a_slice_of_the_log, a_page_runs_either_way_of_one_type_or_all,
    events_are_counted_by_type_between_two_versions,
};

/// Expands to one `#[tokio::test]` per contract check. `$fresh` is an async function returning a
/// fresh store and a guard that keeps what it needs (a temporary directory) alive until the end.
/// With `optional`, it returns them in an `Option`: `None` when the backend cannot be reached,
/// and then the check does not run (the function says why, loudly).
#[macro_export]
macro_rules! store_contract {
    (optional $fresh:path) => {
        $crate::store_contract!(@checks (@optional) $fresh);
    };
    ($fresh:path) => {
        $crate::store_contract!(@checks (@tests) $fresh);
    };
    (@checks ($($how:tt)*) $fresh:path) => {
        $crate::store_contract!($($how)* $fresh;
            appended_events_read_back,
            the_events_after_a_version_are_its_tail,
            a_page_of_events_is_a_slice_of_the_log,
            a_page_runs_either_way_of_one_type_or_all,
            events_are_counted_by_type_between_two_versions,
            a_stale_version_conflicts_and_changes_nothing,
            of_two_appends_expecting_the_same_version_one_wins,
            a_new_incident_starts_with_incident_started,
            effects_wait_in_the_outbox_until_their_result_is_appended,
            an_effect_is_queued_once,
            completing_an_unknown_effect_is_refused,
            two_claimers_never_hold_one_effect,
            an_expired_lease_is_taken_over,
            a_stale_token_cannot_complete,
            two_holders_never_hold_one_named_lease,
            up_to_a_share_of_named_leases_is_taken_anew,
            leases_up_to_a_share_stand_on_their_holders_presence,
            the_lease_of_a_finished_incident_goes_and_its_token_stays_refused,
            a_write_under_a_named_lease_taken_over_is_refused,
            a_campaign_write_under_an_effect_taken_over_is_refused,
            an_unknown_incident_is_not_found,
            incidents_are_listed_with_their_summary,
            incidents_open_since_a_time_leave_out_those_closed_before,
            open_incidents_are_found_by_key,
            an_open_key_cannot_start_a_second_incident,
            concurrent_appends_to_many_incidents_all_succeed,
            events_are_chained_as_they_are_appended,
            appends_made_in_turn_are_stored_in_turn,
            checkpoints_are_stored_in_order,
            a_delivery_is_taken_once,
            received_deliveries_wait_in_the_inbox_until_applied,
            deliveries_received_together_are_each_answered,
            a_campaign_is_planned_once,
            a_batch_is_marked_sending_then_answered,
            a_failed_attempt_is_kept_on_its_batch,
            an_answered_batch_is_never_sent_or_answered_again,
            failures_are_listed_in_batch_order,
            leaves_read_back_in_number_order,
            campaign_progress_is_totalled,
        );
    };
    (@tests $fresh:path; $($check:ident,)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $fresh().await;
                $crate::store::contract::$check(::std::sync::Arc::new(store)).await;
            }
        )*
    };
    (@optional $fresh:path; $($check:ident,)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some((store, _guard)) = $fresh().await else { return };
                $crate::store::contract::$check(::std::sync::Arc::new(store)).await;
            }
        )*
    };
}

/// A time `minutes` into the reference incident.
pub fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").expect("a valid time").with_timezone(&Utc)
        + Duration::minutes(minutes)
}

/// The first event of `incident`, started from `runbook_id` by a trigger with `key`.
pub fn started(incident: &str, runbook_id: &str, key: Option<&str>) -> Event {
    Event::new(
        at(0),
        "alertmanager",
        EventKind::IncidentStarted {
            incident: incident.into(),
            runbook_id: runbook_id.into(),
            runbook_version: Some("3".into()),
            runbook_sha256: "5e1f".into(),
            runbook_text: format!("id: {runbook_id}\n"),
            inputs: [("severity".to_string(), serde_json::json!("high"))].into(),
            key: key.map(str::to_string),
        },
    )
}

/// A timeline note, `minutes` in.
pub fn note(minutes: i64, text: &str) -> Event {
    Event::new(at(minutes), "dana", EventKind::NoteAdded).because(Some(text.into()))
}

/// The incident closed, `minutes` in.
pub fn closed(minutes: i64) -> Event {
    Event::new(at(minutes), "dana", EventKind::IncidentClosed { abandoned: false })
}

/// A status update effect with the id `id`.
pub fn notify(id: &str) -> Effect {
    Effect {
        id: id.into(),
        kind: EffectKind::Notify {
            audience: "executives".into(),
            template: "executive-briefing".into(),
            channels: vec!["board".into()],
            occasion: "phase_done".into(),
            message: None,
            step: None,
        },
    }
}

/// The pending effects as (incident, effect id), in order.
async fn pending(store: &impl Store) -> Vec<(String, String)> {
    let pending = store.pending_effects(100).await.expect("pending effects");
    pending.into_iter().map(|pending| (pending.incident, pending.effect.id)).collect()
}

fn pair(incident: &str, id: &str) -> (String, String) {
    (incident.to_string(), id.to_string())
}

fn is_conflict(result: &Result<u64, Error>, expected: u64, actual: u64) -> bool {
    matches!(result, Err(Error::Conflict { expected: e, actual: a, .. }) if (*e, *a) == (expected, actual))
}

pub async fn appended_events_read_back(store: Arc<impl Store>) {
    let first = [started("inc-1", "breach", None), note(1, "shop is down")];
    assert_eq!(store.append(Append::new("inc-1", 0, &first)).await.unwrap(), 2);
    let second = [note(2, "tills offline"), note(3, "idp quarantined"), closed(4)];
    assert_eq!(store.append(Append::new("inc-1", 2, &second)).await.unwrap(), 5);

    let events = store.events("inc-1").await.unwrap();
    assert_eq!(events, [&first[..], &second[..]].concat(), "every event, in order, as appended");
    let incident = crate::engine::Incident::from_events(&events).unwrap();
    assert_eq!((incident.id.as_str(), incident.version), ("inc-1", 5));
    assert!(incident.closed.is_some());
}

pub async fn the_events_after_a_version_are_its_tail(store: Arc<impl Store>) {
    let events = [started("inc-1", "breach", None), note(1, "shop is down"), note(2, "tills offline")];
    store.append(Append::new("inc-1", 0, &events)).await.unwrap();
    assert_eq!(store.events_after("inc-1", 1).await.unwrap(), events[1..]);
    assert_eq!(store.events_after("inc-1", 0).await.unwrap(), events);
    assert!(store.events_after("inc-1", 3).await.unwrap().is_empty(), "nothing after the last event");
    assert!(store.events_after("inc-nope", 0).await.unwrap().is_empty());
}

pub async fn a_stale_version_conflicts_and_changes_nothing(store: Arc<impl Store>) {
    store
        .append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)]).effects(&[notify("page-ciso")]))
        .await
        .unwrap();
    store.append(Append::new("inc-1", 1, &[note(1, "first")])).await.unwrap();

    for (stale, event) in [(0, started("inc-1", "breach", None)), (1, note(2, "late")), (3, note(2, "early"))] {
        let result = store
            .append(Append::new("inc-1", stale, &[event]).effects(&[notify("late")]).completes(Some("page-ciso")))
            .await;
        assert!(is_conflict(&result, stale, 2), "expected {stale}: {result:?}");
    }
    assert_eq!(store.events("inc-1").await.unwrap().len(), 2, "no event was added");
    assert_eq!(pending(&*store).await, [pair("inc-1", "page-ciso")], "no effect added, none completed");
    assert_eq!(store.incidents().await.unwrap()[0].version, 2);
}

pub async fn of_two_appends_expecting_the_same_version_one_wins(store: Arc<impl Store>) {
    for round in 0..10 {
        let incident = format!("inc-{round}");
        // Two starts of the same incident, then two appends at version 1.
        for expected in [0, 1] {
            let racers: Vec<_> = (0..2)
                .map(|racer| {
                    let store = Arc::clone(&store);
                    let incident = incident.clone();
                    tokio::spawn(async move {
                        let event = if expected == 0 {
                            started(&incident, "breach", None)
                        } else {
                            note(1, &format!("racer {racer}"))
                        };
                        let effect = notify(&format!("{incident}/{expected}/racer-{racer}"));
                        store.append(Append::new(&incident, expected, &[event]).effects(&[effect])).await
                    })
                })
                .collect();
            let mut results = Vec::new();
            for racer in racers {
                results.push(racer.await.expect("the task ran"));
            }
            let won = results.iter().filter(|result| matches!(result, Ok(version) if *version == expected + 1)).count();
            let lost = results.iter().filter(|result| is_conflict(result, expected, expected + 1)).count();
            assert_eq!((won, lost), (1, 1), "{incident} at {expected}: {results:?}");
        }
        assert_eq!(store.events(&incident).await.unwrap().len(), 2);
    }
    let pending = pending(&*store).await;
    assert_eq!(pending.len(), 20, "only the winners' effects: {pending:?}");
}

pub async fn a_new_incident_starts_with_incident_started(store: Arc<impl Store>) {
    let refused = [
        (vec![note(1, "hello")], "not `incident_started`"),
        (vec![], "no events"),
        (vec![started("inc-2", "breach", None)], "another incident's start"),
    ];
    for (events, why) in refused {
        let result = store.append(Append::new("inc-1", 0, &events).effects(&[notify("page")])).await;
        assert!(matches!(result, Err(Error::Invalid { .. })), "{why}: {result:?}");
    }
    assert!(matches!(store.events("inc-1").await, Err(Error::NotFound { .. })));
    assert!(store.incidents().await.unwrap().is_empty());
    assert!(pending(&*store).await.is_empty());

    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    let again = store.append(Append::new("inc-1", 1, &[started("inc-1", "breach", None)])).await;
    assert!(matches!(again, Err(Error::Invalid { .. })), "a second start: {again:?}");
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1);
}

pub async fn effects_wait_in_the_outbox_until_their_result_is_appended(store: Arc<impl Store>) {
    let effects = [notify("inc-1/isolate-hosts/1"), notify("inc-1/page-ciso"), notify("inc-1/status/1")];
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)]).effects(&effects)).await.unwrap();
    store
        .append(Append::new("inc-2", 0, &[started("inc-2", "breach", None)]).effects(&[notify("inc-2/page-ciso")]))
        .await
        .unwrap();
    let stored = store.pending_effects(10).await.unwrap();
    assert_eq!(stored[0].effect, effects[0], "an effect reads back as it was put in");
    assert_eq!(
        pending(&*store).await,
        [
            pair("inc-1", "inc-1/isolate-hosts/1"),
            pair("inc-1", "inc-1/page-ciso"),
            pair("inc-1", "inc-1/status/1"),
            pair("inc-2", "inc-2/page-ciso")
        ],
        "in the order they were put in the outbox"
    );
    assert_eq!(store.pending_effects(2).await.unwrap().len(), 2, "the limit holds");

    // The result and the completion are one append: both or neither.
    let result = note(5, "hosts isolated");
    assert_eq!(
        store
            .append(Append::new("inc-1", 1, std::slice::from_ref(&result)).completes(Some("inc-1/isolate-hosts/1")))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        pending(&*store).await,
        [pair("inc-1", "inc-1/page-ciso"), pair("inc-1", "inc-1/status/1"), pair("inc-2", "inc-2/page-ciso")],
    );
    assert_eq!(store.events("inc-1").await.unwrap()[1], result);

    // A second completion of the same effect (an answer lost, the result recorded again) is fine.
    assert_eq!(store.append(Append::new("inc-1", 2, &[]).completes(Some("inc-1/isolate-hosts/1"))).await.unwrap(), 2);
}

pub async fn an_effect_is_queued_once(store: Arc<impl Store>) {
    store
        .append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)]).effects(&[notify("page-ciso")]))
        .await
        .unwrap();
    store.append(Append::new("inc-2", 0, &[started("inc-2", "breach", None)])).await.unwrap();
    for (incident, effects) in [
        ("inc-1", vec![notify("page-ciso")]),
        ("inc-2", vec![notify("page-ciso")]),
        ("inc-2", vec![notify("x"), notify("x")]),
    ] {
        let result = store.append(Append::new(incident, 1, &[note(1, "again")]).effects(&effects)).await;
        assert!(matches!(result, Err(Error::Invalid { .. })), "{incident}: {result:?}");
    }
    assert_eq!(store.incidents().await.unwrap().iter().map(|summary| summary.version).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(pending(&*store).await, [pair("inc-1", "page-ciso")]);
}

pub async fn completing_an_unknown_effect_is_refused(store: Arc<impl Store>) {
    store
        .append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)]).effects(&[notify("page-ciso")]))
        .await
        .unwrap();
    store
        .append(Append::new("inc-2", 0, &[started("inc-2", "breach", None)]).effects(&[notify("status/1")]))
        .await
        .unwrap();
    // The second id is in the outbox, but for another incident.
    for id in ["never-decided", "status/1"] {
        let result = store
            .append(Append::new("inc-1", 1, &[note(1, "result")]).effects(&[notify("next")]).completes(Some(id)))
            .await;
        assert!(matches!(result, Err(Error::Invalid { .. })), "`{id}`: {result:?}");
    }
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1, "nothing appended");
    assert_eq!(pending(&*store).await, [pair("inc-1", "page-ciso"), pair("inc-2", "status/1")]);
}

pub async fn an_unknown_incident_is_not_found(store: Arc<impl Store>) {
    assert!(matches!(store.events("nope").await, Err(Error::NotFound { incident }) if incident == "nope"));
    let result = store.append(Append::new("nope", 3, &[note(1, "hello")])).await;
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    assert!(store.incidents().await.unwrap().is_empty());
    assert_eq!(store.open_incident_by_key("breach", "nope").await.unwrap(), None);
}

pub async fn incidents_open_since_a_time_leave_out_those_closed_before(store: Arc<impl Store>) {
    for (id, minutes) in [("inc-1", 0), ("inc-2", 1), ("inc-3", 2)] {
        let mut start = started(id, "breach", None);
        start.at = at(minutes);
        store.append(Append::new(id, 0, &[start])).await.unwrap();
    }
    store.append(Append::new("inc-1", 1, &[closed(10)])).await.unwrap();
    store.append(Append::new("inc-3", 1, &[note(15, "contained"), closed(20)])).await.unwrap();
    let ids = async |since: i64| -> Vec<(String, u64)> {
        let summaries = store.incidents_open_since(at(since)).await.unwrap();
        summaries.into_iter().map(|summary| (summary.id, summary.version)).collect()
    };
    let both = vec![("inc-2".to_string(), 1), ("inc-3".to_string(), 3)];
    assert_eq!(ids(15).await, both, "in start order, with their versions; inc-1 closed before");
    assert_eq!(ids(20).await, both, "closed at the time asked counts as open then");
    assert_eq!(ids(21).await, vec![("inc-2".to_string(), 1)]);
    let all = store.incidents().await.unwrap();
    assert_eq!(store.incidents_open_since(at(0)).await.unwrap(), all, "the same summaries as every incident's");
}

pub async fn incidents_are_listed_with_their_summary(store: Arc<impl Store>) {
    let mut later = started("inc-2", "ransomware", None);
    later.at = at(30);
    store.append(Append::new("inc-2", 0, &[later])).await.unwrap();
    store
        .append(Append::new("inc-1", 0, &[started("inc-1", "breach", Some("alert-7")), note(1, "hello")]))
        .await
        .unwrap();
    store.append(Append::new("inc-1", 2, &[note(45, "contained"), closed(50)])).await.unwrap();
    store.append(Append::new("inc-1", 4, &[note(55, "post-incident review booked")])).await.unwrap();

    let summaries = store.incidents().await.unwrap();
    let expected = [
        IncidentSummary {
            id: "inc-1".into(),
            runbook_id: "breach".into(),
            key: Some("alert-7".into()),
            version: 5,
            started_at: at(0),
            updated_at: at(55),
            closed_at: Some(at(50)),
            head: summaries[0].head.clone(),
            checkpointed: 0,
            checkpointed_at: None,
        },
        IncidentSummary {
            id: "inc-2".into(),
            runbook_id: "ransomware".into(),
            key: None,
            version: 1,
            started_at: at(30),
            updated_at: at(30),
            closed_at: None,
            head: summaries[1].head.clone(),
            checkpointed: 0,
            checkpointed_at: None,
        },
    ];
    assert_eq!(summaries, expected, "in the order they started");
    assert_eq!(store.incident("inc-2").await.unwrap().as_ref(), Some(&expected[1]));
    assert_eq!(store.incident("inc-9").await.unwrap(), None);
    let last = store.chain("inc-1", 4, 10).await.unwrap();
    assert_eq!(summaries[0].head, last[0].hash, "the head is the hash of the latest event");
}

pub async fn open_incidents_are_found_by_key(store: Arc<impl Store>) {
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", Some("alert-7"))])).await.unwrap();
    store.append(Append::new("inc-2", 0, &[started("inc-2", "breach", Some("alert-8"))])).await.unwrap();
    store.append(Append::new("inc-3", 0, &[started("inc-3", "ransomware", Some("alert-7"))])).await.unwrap();
    let by_key = |runbook: &'static str, key: &'static str| {
        let store = Arc::clone(&store);
        async move { store.open_incident_by_key(runbook, key).await.unwrap() }
    };
    assert_eq!(by_key("breach", "alert-7").await.as_deref(), Some("inc-1"));
    assert_eq!(by_key("breach", "alert-8").await.as_deref(), Some("inc-2"));
    assert_eq!(by_key("ransomware", "alert-7").await.as_deref(), Some("inc-3"), "keys are per runbook");
    assert_eq!(by_key("breach", "alert-9").await, None);

    store.append(Append::new("inc-1", 1, &[closed(9)])).await.unwrap();
    assert_eq!(by_key("breach", "alert-7").await, None, "a closed incident is not returned");
    store.append(Append::new("inc-4", 0, &[started("inc-4", "breach", Some("alert-7"))])).await.unwrap();
    assert_eq!(by_key("breach", "alert-7").await.as_deref(), Some("inc-4"), "the same alert after the close");
    store.append(Append::new("inc-5", 0, &[started("inc-5", "breach", None)])).await.unwrap();
    let open = store.open_keys().await.unwrap();
    let triple = |runbook: &str, key: &str, id: &str| (runbook.to_string(), key.to_string(), id.to_string());
    assert_eq!(
        open,
        [
            triple("breach", "alert-8", "inc-2"),
            triple("ransomware", "alert-7", "inc-3"),
            triple("breach", "alert-7", "inc-4")
        ],
        "open incidents with a key, and only those"
    );
}

pub async fn an_open_key_cannot_start_a_second_incident(store: Arc<impl Store>) {
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", Some("alert-7"))])).await.unwrap();
    let second = store.append(Append::new("inc-2", 0, &[started("inc-2", "breach", Some("alert-7"))])).await;
    assert!(
        matches!(&second, Err(Error::DuplicateKey { open, .. }) if open == "inc-1"),
        "the error names the open incident: {second:?}"
    );
    assert!(matches!(store.events("inc-2").await, Err(Error::NotFound { .. })));

    // Two triggers racing with the same alert: one incident opens.
    let racers: Vec<_> = ["inc-3", "inc-4"]
        .into_iter()
        .map(|incident| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store.append(Append::new(incident, 0, &[started(incident, "breach", Some("alert-8"))])).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.expect("the task ran"));
    }
    let won = results.iter().filter(|result| result.is_ok()).count();
    let refused = results.iter().filter(|result| matches!(result, Err(Error::DuplicateKey { .. }))).count();
    assert_eq!((won, refused), (1, 1), "{results:?}");
    assert_eq!(store.incidents().await.unwrap().len(), 2);
}

/// How many incidents append at once, and how many appends each makes after its start.
pub const INCIDENTS: usize = 100;
pub const APPENDS: usize = 10;

pub async fn concurrent_appends_to_many_incidents_all_succeed(store: Arc<impl Store>) {
    let tasks: Vec<_> = (0..INCIDENTS)
        .map(|number| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let incident = format!("inc-{number}");
                let mut version =
                    store.append(Append::new(&incident, 0, &[started(&incident, "breach", None)])).await?;
                for append in 0..APPENDS {
                    let event = note(append as i64, &format!("{incident} note {append}"));
                    version = store.append(Append::new(&incident, version, &[event])).await?;
                }
                Ok::<u64, Error>(version)
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("the task ran").expect("every append succeeds"), APPENDS as u64 + 1);
    }
    let summaries = store.incidents().await.unwrap();
    assert_eq!(summaries.len(), INCIDENTS);
    assert!(summaries.iter().all(|summary| summary.version == APPENDS as u64 + 1));
    for number in [0, INCIDENTS / 2, INCIDENTS - 1] {
        let incident = format!("inc-{number}");
        let notes: Vec<String> =
            store.events(&incident).await.unwrap().into_iter().skip(1).filter_map(|event| event.reason).collect();
        let expected: Vec<String> = (0..APPENDS).map(|append| format!("{incident} note {append}")).collect();
        assert_eq!(notes, expected, "its own notes, each once, in order");
    }
}

pub async fn events_are_chained_as_they_are_appended(store: Arc<impl Store>) {
    let events = [started("inc-1", "breach", None), note(1, "contained"), note(2, "tills \"open\" é"), closed(3)];
    store.append(Append::new("inc-1", 0, &events[..2])).await.unwrap();
    store.append(Append::new("inc-1", 2, &events[2..])).await.unwrap();
    let stored = store.chain("inc-1", 0, 100).await.unwrap();
    let mut prev = GENESIS;
    for (index, (link, event)) in stored.iter().zip(&events).enumerate() {
        let canonical = chain::canonical(event).unwrap();
        assert_eq!(link.seq, index as u64 + 1);
        assert_eq!(link.event, canonical, "stored in the canonical form its hash covers");
        prev = chain::link(&prev, link.seq, canonical.as_bytes());
        assert_eq!(link.hash.as_deref(), Some(chain::to_hex(&prev).as_str()), "event {}", link.seq);
    }
    assert_eq!(stored.len(), 4);
    assert_eq!(store.chain("inc-1", 1, 2).await.unwrap(), stored[1..3], "paged");
    assert!(store.chain("inc-9", 0, 10).await.unwrap().is_empty());
    let summary = &store.incidents().await.unwrap()[0];
    assert_eq!(summary.head.as_deref(), Some(chain::to_hex(&prev).as_str()));
}

/// Whether `incident`'s stored chain is its events' canonical JSON, each hashed onto the last, and
/// its summary's head the last hash; its events' reasons, in order.
async fn chained_notes(store: &impl Store, incident: &str) -> Vec<Option<String>> {
    let stored = store.chain(incident, 0, 100).await.unwrap();
    let mut prev = GENESIS;
    for link in &stored {
        prev = chain::link(&prev, link.seq, link.event.as_bytes());
        assert_eq!(link.hash.as_deref(), Some(chain::to_hex(&prev).as_str()), "{incident} event {}", link.seq);
    }
    let summary = store.incident(incident).await.unwrap().unwrap();
    assert_eq!(summary.head.as_deref(), Some(chain::to_hex(&prev).as_str()), "{incident}'s head");
    store.events(incident).await.unwrap().into_iter().map(|event| event.reason).collect()
}

/// Appends made in turn and awaited together (as a drill's runtime does) are taken in the order
/// of the calls and stored as one by one: new incidents, events, effects, and completions of
/// effects queued by an earlier append of the same lot. One that does not follow its incident's
/// version is refused, and the others are still stored.
pub async fn appends_made_in_turn_are_stored_in_turn(store: Arc<impl Store>) {
    let together = |appends: Vec<Append>| {
        let answers: Vec<_> = appends.into_iter().map(|append| store.append(append)).collect();
        async move {
            let mut versions = Vec::new();
            for answer in answers {
                versions.push(answer.await);
            }
            versions
        }
    };
    let first = together(vec![
        Append::new("inc-1", 0, &[started("inc-1", "breach", None)]).effects(&[notify("inc-1/a")]),
        Append::new("inc-2", 0, &[started("inc-2", "breach", Some("alert-7"))]),
        Append::new("inc-1", 1, &[note(1, "one")]).effects(&[notify("inc-1/b"), notify("inc-1/c")]),
        Append::new("inc-1", 2, &[note(2, "two")]).completes(Some("inc-1/a")),
        Append::new("inc-2", 1, &[note(3, "three"), note(4, "four")]),
        Append::new("inc-1", 3, &[]).completes(Some("inc-1/b")),
    ])
    .await;
    let first: Vec<u64> = first.into_iter().map(Result::unwrap).collect();
    assert_eq!(first, [1, 1, 2, 3, 3, 3]);
    assert_eq!(pending(store.as_ref()).await, [pair("inc-1", "inc-1/c")]);

    let second = together(vec![
        Append::new("inc-1", 3, &[note(5, "five")]).completes(Some("inc-1/c")),
        Append::new("inc-2", 9, &[note(6, "stale")]),
        Append::new("inc-2", 3, &[note(7, "seven")]),
        Append::new("inc-1", 4, &[note(8, "eight")]).completes(Some("inc-1/unknown")),
        Append::new("inc-1", 4, &[note(9, "nine")]),
    ])
    .await;
    assert_eq!(second[0].as_ref().ok(), Some(&4));
    assert!(is_conflict(&second[1], 9, 3), "{:?}", second[1]);
    assert_eq!(second[2].as_ref().ok(), Some(&4));
    assert!(matches!(second[3], Err(Error::Invalid { .. })), "{:?}", second[3]);
    assert_eq!(second[4].as_ref().ok(), Some(&5));

    let notes = |texts: &[&str]| -> Vec<Option<String>> {
        std::iter::once(None).chain(texts.iter().map(|text| Some(text.to_string()))).collect()
    };
    assert_eq!(chained_notes(store.as_ref(), "inc-1").await, notes(&["one", "two", "five", "nine"]));
    assert_eq!(chained_notes(store.as_ref(), "inc-2").await, notes(&["three", "four", "seven"]));
    assert!(pending(store.as_ref()).await.is_empty());
}

pub async fn checkpoints_are_stored_in_order(store: Arc<impl Store>) {
    store
        .append(Append::new("inc-1", 0, &[started("inc-1", "breach", None), note(1, "a"), note(2, "b")]))
        .await
        .unwrap();
    let checkpoint = |number: u64, events: u64| SignedCheckpoint {
        checkpoint: Checkpoint {
            format: 1,
            incident: "inc-1".into(),
            number,
            events,
            head: "ab".repeat(32),
            prev: "00".repeat(32),
            at: at(number as i64),
            key: "sha256:test".into(),
        },
        signature: "cd".repeat(64),
    };
    store.add_checkpoint("inc-1", &checkpoint(1, 2), None).await.unwrap();
    let refused = [
        ("the same number again", checkpoint(1, 3)),
        ("a number skipped", checkpoint(3, 3)),
        ("no more events than the last", checkpoint(2, 2)),
        ("more events than the incident has", checkpoint(2, 4)),
    ];
    for (why, refused) in refused {
        let result = store.add_checkpoint("inc-1", &refused, None).await;
        assert!(matches!(result, Err(Error::Invalid { .. })), "{why}: {result:?}");
    }
    store.add_checkpoint("inc-1", &checkpoint(2, 3), None).await.unwrap();
    let stored = store.checkpoints("inc-1").await.unwrap();
    assert_eq!(stored.iter().map(|stored| stored.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(stored[1].body, checkpoint(2, 3).checkpoint.canonical());
    assert_eq!(stored[1].signature, "cd".repeat(64));
    let summary = &store.incidents().await.unwrap()[0];
    assert_eq!((summary.checkpointed, summary.checkpointed_at), (3, Some(at(2))));
    assert!(store.checkpoints("inc-9").await.unwrap().is_empty());
    let unknown = store.add_checkpoint("inc-9", &checkpoint(1, 1), None).await;
    assert!(unknown.is_err(), "{unknown:?}");
}

pub async fn a_delivery_is_taken_once(store: Arc<impl Store>) {
    let delivery = |source: &str, id: &str| Delivery { source: source.into(), id: id.into(), received_at: at(1) };
    let first = delivery("alertmanager", "d-1");
    store
        .append(
            Append::new("inc-1", 0, &[started("inc-1", "breach", Some("k"))]).delivered(std::slice::from_ref(&first)),
        )
        .await
        .unwrap();
    assert_eq!(store.delivery("alertmanager", "d-1").await.unwrap().as_deref(), Some("inc-1"));
    assert_eq!(store.delivery("alertmanager", "d-2").await.unwrap(), None);

    let again = store
        .append(Append::new("inc-1", 1, &[note(2, "the same alert")]).delivered(std::slice::from_ref(&first)))
        .await;
    assert!(matches!(&again, Err(Error::Duplicate { incident, .. }) if incident == "inc-1"), "{again:?}");
    let elsewhere = store
        .append(Append::new("inc-2", 0, &[started("inc-2", "other", None)]).delivered(std::slice::from_ref(&first)))
        .await;
    assert!(matches!(&elsewhere, Err(Error::Duplicate { .. })), "{elsewhere:?}");
    assert!(matches!(store.events("inc-2").await, Err(Error::NotFound { .. })), "nothing of it was stored");
    assert_eq!(store.incident("inc-1").await.unwrap().unwrap().version, 1);

    // The same id from another source is another delivery.
    store
        .append(Append::new("inc-1", 1, &[note(3, "from GitHub")]).delivered(&[delivery("github", "d-1")]))
        .await
        .unwrap();
    assert_eq!(store.incident("inc-1").await.unwrap().unwrap().version, 2);

    // Several in one append: stored together, or (one taken before) none of them.
    let several = [delivery("alertmanager", "d-3"), delivery("alertmanager", "d-1")];
    let refused = store.append(Append::new("inc-1", 2, &[note(4, "a"), note(5, "b")]).delivered(&several)).await;
    assert!(matches!(&refused, Err(Error::Duplicate { id, .. }) if id == "d-1"), "{refused:?}");
    assert_eq!(store.delivery("alertmanager", "d-3").await.unwrap(), None, "nothing of it was stored");
    let twice = [delivery("alertmanager", "d-4"), delivery("alertmanager", "d-4")];
    let refused = store.append(Append::new("inc-1", 2, &[note(4, "a")]).delivered(&twice)).await;
    assert!(matches!(&refused, Err(Error::Invalid { .. })), "{refused:?}");
    let several = [delivery("alertmanager", "d-3"), delivery("alertmanager", "d-5")];
    store.append(Append::new("inc-1", 2, &[note(4, "a"), note(5, "b")]).delivered(&several)).await.unwrap();
    assert_eq!(store.delivery("alertmanager", "d-5").await.unwrap().as_deref(), Some("inc-1"));
    assert_eq!(store.incident("inc-1").await.unwrap().unwrap().version, 4);
}
