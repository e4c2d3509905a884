//! Reading a log a page at a time ([`Page`]) and counting its events by type, without reading the
//! whole log: what the API's and the dashboard's timelines ask of every backend.

use std::sync::Arc;

use super::{at, note, started};
use crate::engine::{Event, EventKind};
use crate::store::{Append, Counts, Cursor, Page, Store};

/// An incident of 23 events: started, then notes, with a phase started every fifth event.
async fn mixed(store: &impl Store) -> Vec<Event> {
    let mut events = vec![started("inc-1", "breach", None)];
    for n in 1..23 {
        events.push(if n % 5 == 0 {
            Event::new(at(n), "phasegate", EventKind::PhaseStarted { phase: format!("p{n}") })
        } else {
            note(n, &format!("note {n}"))
        });
    }
    // In two appends, so that a page crosses a commit.
    store.append(Append::new("inc-1", 0, &events[..10])).await.unwrap();
    store.append(Append::new("inc-1", 10, &events[10..])).await.unwrap();
    store.append(Append::new("inc-2", 0, &[started("inc-2", "breach", None), note(1, "other")])).await.unwrap();
    events
}

/// Positions (from 1) of `events`' events, as a page gives them.
fn at_positions(events: &[Event], positions: &[u64]) -> Vec<(u64, Event)> {
    positions.iter().map(|&seq| (seq, events[seq as usize - 1].clone())).collect()
}

pub async fn a_page_of_events_is_a_slice_of_the_log(store: Arc<impl Store>) {
    let events = [started("inc-1", "breach", None), note(1, "shop is down"), note(2, "tills offline"), note(3, "back")];
    store.append(Append::new("inc-1", 0, &events)).await.unwrap();
    // After, limit: the positions of the slice expected.
    let cases: [(u64, usize, &[u64]); 6] =
        [(0, 2, &[1, 2]), (2, 2, &[3, 4]), (1, 100, &[2, 3, 4]), (3, 1, &[4]), (4, 10, &[]), (0, 0, &[])];
    for (after, limit, expected) in cases {
        let page = store.events_page("inc-1", &Page::after(after, limit)).await.unwrap();
        assert_eq!(page, at_positions(&events, expected), "after {after}, limit {limit}");
    }
    assert!(store.events_page("inc-nope", &Page::after(0, 10)).await.unwrap().is_empty());
}

pub async fn a_page_runs_either_way_of_one_type_or_all(store: Arc<impl Store>) {
    let events = mixed(&*store).await;
    let phases: Vec<u64> = vec![6, 11, 16, 21];
    let notes: Vec<u64> = (2..=23).filter(|seq| !phases.contains(seq)).collect();
    let newest = |positions: &[u64]| positions.iter().rev().copied().collect::<Vec<_>>();
    let page = |from, kind: Option<&str>, skip, limit| Page { from, kind: kind.map(str::to_string), skip, limit };
    // The page asked for, and the positions it holds.
    let cases: Vec<(Page, Vec<u64>)> = vec![
        (page(Cursor::Before(24), None, 0, 5), vec![23, 22, 21, 20, 19]),
        (page(Cursor::Before(24), None, 20, 5), vec![3, 2, 1]),
        (page(Cursor::Before(u64::MAX), None, 0, 2), vec![23, 22]),
        (page(Cursor::Before(11), None, 0, 3), vec![10, 9, 8]),
        (page(Cursor::Before(1), None, 0, 3), vec![]),
        (page(Cursor::After(2), None, 3, 2), vec![6, 7]),
        (page(Cursor::Before(24), Some("phase_started"), 0, 50), newest(&phases)),
        (page(Cursor::Before(24), Some("phase_started"), 1, 2), vec![16, 11]),
        (page(Cursor::Before(16), Some("phase_started"), 0, 50), vec![11, 6]),
        (page(Cursor::After(6), Some("phase_started"), 0, 50), vec![11, 16, 21]),
        (page(Cursor::After(0), Some("phase_started"), 3, 50), vec![21]),
        (page(Cursor::Before(24), Some("note_added"), 15, 3), newest(&notes)[15..18].to_vec()),
        (page(Cursor::Before(24), Some("note_added"), 17, 50), newest(&notes)[17..].to_vec()),
        (page(Cursor::After(0), Some("note_added"), 0, 4), notes[..4].to_vec()),
        (page(Cursor::Before(24), Some("incident_started"), 0, 50), vec![1]),
        (page(Cursor::Before(24), Some("incident_closed"), 0, 50), vec![]),
        (page(Cursor::Before(24), Some("note_added"), 100, 50), vec![]),
    ];
    for (asked, expected) in cases {
        let got = store.events_page("inc-1", &asked).await.unwrap();
        assert_eq!(got, at_positions(&events, &expected), "{asked:?}");
    }
    let other = store.events_page("inc-2", &Page::before(3, 50).of(Some("note_added"))).await.unwrap();
    assert_eq!(other.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [2], "another incident's log is its own");
}

pub async fn events_are_counted_by_type_between_two_versions(store: Arc<impl Store>) {
    mixed(&*store).await;
    let counts = |pairs: &[(&str, u64)]| pairs.iter().map(|(kind, n)| (kind.to_string(), *n)).collect::<Vec<_>>();
    let cases: [(u64, u64, Counts); 6] = [
        (0, 23, counts(&[("incident_started", 1), ("note_added", 18), ("phase_started", 4)])),
        (0, 100, counts(&[("incident_started", 1), ("note_added", 18), ("phase_started", 4)])),
        (0, 6, counts(&[("incident_started", 1), ("note_added", 4), ("phase_started", 1)])),
        (6, 11, counts(&[("note_added", 4), ("phase_started", 1)])),
        (20, 23, counts(&[("note_added", 2), ("phase_started", 1)])),
        (23, 23, counts(&[])),
    ];
    for (after, upto, expected) in cases {
        assert_eq!(store.event_counts("inc-1", after, upto).await.unwrap(), expected, "after {after}, up to {upto}");
    }
    assert!(store.event_counts("inc-nope", 0, 10).await.unwrap().is_empty());
}
