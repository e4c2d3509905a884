//! What a replica's pass reads and what it leaves behind: it reads the log only of an incident
//! whose version moved since it last saw it (a pass ticks every open incident its replica holds,
//! and at high load most have not changed), and the lease of an incident finished (closed,
//! nothing of it in the outbox) is removed, so that neither grows with every incident ever
//! handled; a holder that still has the token of a lease removed writes nothing under it.

use std::collections::BTreeMap;
use std::time::Duration;

use phasegate::engine::{Command, Directory, Event, EventKind};
use phasegate::render::Catalog;
use phasegate::runtime::Runtime;
use phasegate::store::{Append, Error, Lease, PostgresStore, Store};

use super::Replica;
use crate::runtime::{RUNBOOK, done};
use crate::server::Counting;
use crate::support::postgres;
use crate::support::wait_until;

fn directory() -> Directory {
    Directory::with(&[("dana", &["commander"])])
}

/// Every named lease of an incident, by incident: its token.
async fn incident_leases(connection: &mut sqlx::PgConnection) -> BTreeMap<String, u64> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, token FROM leases WHERE name LIKE 'incident/%'")
        .fetch_all(connection)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(name, token)| (name.trim_start_matches("incident/").to_string(), u64::try_from(token).unwrap()))
        .collect()
}

/// Regression: every pass read the events of every open incident its replica held (one
/// `events_after` each, `SELECT seq, event FROM events WHERE incident = $1 AND seq > $2`, the
/// commonest query of the held-horizon bench), though none had changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_reads_the_log_only_of_the_incidents_that_changed() {
    let Some(schema) = postgres::schema().await else { return };
    let counted = Counting::new(PostgresStore::connect(schema.options()).await.unwrap());
    let runtime = Runtime::new(counted, Catalog::built_in(), directory());
    let other = Runtime::new(PostgresStore::connect(schema.options()).await.unwrap(), Catalog::built_in(), directory());
    let mut incidents = Vec::new();
    for _ in 0..5 {
        incidents.push(runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap().0);
    }
    runtime.run_due(&Replica::answering(200)).await.unwrap();
    let reads = || std::mem::take(&mut *runtime.store().reads.lock().unwrap());
    reads();

    runtime.run_due(&Replica::answering(200)).await.unwrap();
    assert_eq!(reads(), Vec::<String>::new(), "a pass with nothing changed reads no log");

    // Another process (a replica serving the API) moves one incident on: only its log is read.
    other.submit(&incidents[2], "dana", done("isolate")).await.unwrap();
    let replica = Replica::answering(200);
    runtime.run_due(&replica).await.unwrap();
    let read = reads();
    assert!(!read.is_empty() && read.iter().all(|incident| *incident == incidents[2]), "read: {read:?}");
    assert_eq!(replica.seen.lock().unwrap().len(), 1, "the step it queued was carried out");
    runtime.run_due(&replica).await.unwrap();
    assert_eq!(reads(), Vec::<String>::new(), "and once caught up, no more");
}

/// Regression: each incident's lease stayed in `leases` for good after the incident closed and
/// its work was done, standing on its last holder's presence, so that the table (and every pass
/// that reads it) grew with every incident ever handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_of_a_closed_incident_goes_once_its_work_is_done_and_its_token_stays_refused() {
    let Some(schema) = postgres::schema().await else { return };
    let store = PostgresStore::connect(schema.options()).await.unwrap();
    // A short lease: the leases of incidents finished are looked for once a lease.
    let runtime = Runtime::new(store, Catalog::built_in(), directory()).with_lease(Duration::from_millis(600));
    let replica = Replica::answering(200);
    let (closing, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let (open, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    runtime.submit(&closing, "dana", done("isolate")).await.unwrap();
    runtime.run_due(&replica).await.unwrap();
    let mut look = schema.connect().await;
    let before = incident_leases(&mut look).await;
    assert_eq!(before.keys().collect::<Vec<_>>().len(), 2, "both incidents' leases are held: {before:?}");

    runtime.submit(&closing, "dana", Command::Close { note: None }).await.unwrap();
    wait_until("the closed incident's lease to be removed", Duration::from_secs(20), async || {
        runtime.run_due(&replica).await.unwrap();
        let now = incident_leases(&mut look).await;
        if now.contains_key(&closing) { Err(format!("{now:?}")) } else { Ok(now) }
    })
    .await;
    let after = incident_leases(&mut look).await;
    assert_eq!(after.get(&open), before.get(&open), "the open incident's lease stays, with its token");

    // A holder frozen with the old token (the one that ticked it, resumed) writes nothing.
    let stale = Lease { name: format!("incident/{closing}"), token: before[&closing] };
    let store = runtime.store();
    let version = u64::try_from(store.events(&closing).await.unwrap().len()).unwrap();
    let late = |token| {
        let note = Event::new(chrono::Utc::now(), "dana", EventKind::NoteAdded).because(Some("late".into()));
        Append::new(&closing, version, &[note]).under(Some(Lease { token, ..stale.clone() }.fence()))
    };
    let refused = store.append(late(stale.token)).await;
    assert!(matches!(refused, Err(Error::FenceLost { .. })), "a write under a lease removed is refused: {refused:?}");
    // Claimed again (another replica signing its head): a new token; the old one still refused.
    let again =
        store.claim_leases("successor", std::slice::from_ref(&stale.name), Duration::from_secs(60)).await.unwrap();
    assert!(again[0].token > stale.token, "a new token, larger: {} then {}", stale.token, again[0].token);
    let refused = store.append(late(stale.token)).await;
    assert!(matches!(refused, Err(Error::FenceLost { .. })), "the old token is refused again: {refused:?}");
    assert_eq!(u64::try_from(store.events(&closing).await.unwrap().len()).unwrap(), version, "nothing stored");
    assert_eq!(store.append(late(again[0].token)).await.unwrap(), version + 1, "the new holder's write is stored");
}

/// Regression: a one-shot command (`phasegate start`, `done`, ...) signs the head after its append
/// under the incident's lease, claimed for 12 s; it kept it when it exited, so the running
/// replicas could not tick the incident (its timers, checks and retries) until the lease ran out.
/// Now a process that is not present lets the lease go once it has signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_signed_a_head_leaves_the_incidents_lease_free() {
    let Some(schema) = postgres::schema().await else { return };
    let signer = std::sync::Arc::new(phasegate::runtime::audit::new_signer());
    let command =
        Runtime::new(PostgresStore::connect(schema.options()).await.unwrap(), Catalog::built_in(), directory())
            .with_signer(std::sync::Arc::clone(&signer), chrono::Duration::minutes(10));
    let (id, _) = command.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    assert_eq!(command.store().checkpoints(&id).await.unwrap().len(), 1, "signed as it started");
    let mut look = schema.connect().await;
    let free: bool = sqlx::query_scalar("SELECT lease_until <= now() FROM leases WHERE name = $1")
        .bind(format!("incident/{id}"))
        .fetch_one(&mut look)
        .await
        .unwrap();
    assert!(free, "the command let the incident's lease go once it had signed");

    // A replica running its loop takes it at its first pass.
    let replica =
        Runtime::new(PostgresStore::connect(schema.options()).await.unwrap(), Catalog::built_in(), directory());
    replica.run_due(&Replica::answering(200)).await.unwrap();
    let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1")
        .bind(format!("incident/{id}"))
        .fetch_one(&mut look)
        .await
        .unwrap();
    assert_eq!(holder, replica.holder());
}
