//! Several runtimes sharing one PostgreSQL database, as `phasegate serve` replicas do: the
//! outbox's effects are claimed under leases, and a runtime that froze past its lease records
//! nothing over the one that took its effect over. `shares.rs`: the other shares of work (an
//! incident's ticks, the inbox, a campaign's batches), each under a lease of its own.
//! `passes.rs`: what a pass reads and leaves behind (the logs of incidents that did not change,
//! the leases of incidents finished).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use phasegate::engine::{Directory, Effect, EffectKind, Event, EventKind, Incident, Outcome};
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;
use phasegate::runtime::{Executor, Runtime};
use phasegate::store::{PostgresStore, Store};
use serde_json::json;

use crate::runtime::{RUNBOOK, done};
use crate::support::postgres;
use crate::support::wait_until;

mod passes;
mod shares;

/// Answers http effects with `status`, after `gate` (if any) lets it go: a gate that blocks the
/// thread freezes everything on it, the runtime's lease renewals and its store's writer
/// included, as SIGSTOP freezes a process.
struct Replica {
    status: u16,
    started: Option<std::sync::mpsc::Sender<()>>,
    gate: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
    seen: Mutex<Vec<String>>,
}

impl Replica {
    fn answering(status: u16) -> Replica {
        Replica { status, started: None, gate: None, seen: Mutex::new(Vec::new()) }
    }
}

impl Executor for Replica {
    async fn carry_out(&self, effect: &Effect, _: &Runbook, _: &Incident, _: &[Event], _: DateTime<Utc>) -> Outcome {
        if let EffectKind::Http { idempotency_key, .. } = &effect.kind {
            self.seen.lock().unwrap().push(idempotency_key.clone());
        }
        if let (Some(started), Some(gate)) = (&self.started, &self.gate) {
            started.send(()).unwrap();
            gate.lock().unwrap().recv().unwrap();
        }
        Outcome::Http { status: self.status, headers: BTreeMap::new(), body: json!({}) }
    }

    async fn send_campaign_batch(
        &self,
        _: phasegate::actions::campaign::BatchJob<'_>,
    ) -> phasegate::actions::campaign::BatchSent {
        let error = "this test's executor sends no campaigns".to_string();
        phasegate::actions::campaign::BatchSent {
            answer: phasegate::actions::campaign::Answer::Failed {
                error,
                class: phasegate::campaign::FailureClass::Local,
            },
            leaves: Vec::new(),
        }
    }
}

fn directory() -> Directory {
    Directory::with(&[("dana", &["commander"])])
}

/// The results recorded for the `rotate` step: `done`, or the error of each failure.
fn rotate_results(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::StepDone { step, .. } if step == "rotate" => Some("done".to_string()),
            EventKind::StepFailed { step, error, .. } if step == "rotate" => Some(error.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_past_its_lease_records_nothing_over_its_successor() {
    let Some(schema) = postgres::schema().await else { return };
    let lease = Duration::from_millis(600);
    let second =
        Runtime::new(PostgresStore::connect(schema.options()).await.unwrap(), Catalog::built_in(), directory())
            .with_lease(lease);
    let (incident, _) = second.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    second.submit(&incident, "dana", done("isolate")).await.unwrap();

    // The first replica, on a thread of its own, claims the http effect and freezes in it.
    let (started, has_started) = std::sync::mpsc::channel();
    let (thaw, gate) = std::sync::mpsc::channel();
    let options = schema.options();
    let first = std::thread::spawn(move || {
        let frozen =
            Replica { status: 500, started: Some(started), gate: Some(Mutex::new(gate)), seen: Mutex::default() };
        let threaded = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        threaded.block_on(async {
            let store = PostgresStore::connect(options).await.unwrap();
            let runtime = Runtime::new(store, Catalog::built_in(), directory()).with_lease(lease);
            let progress = runtime.run_due(&frozen).await.unwrap();
            (progress, frozen.seen.into_inner().unwrap())
        })
    });
    tokio::task::spawn_blocking(move || has_started.recv().unwrap()).await.unwrap();

    // The second replica finds nothing to claim while the lease holds, then takes the effect
    // over once it runs out, carries it out and records its result.
    let succeeding = Replica::answering(200);
    wait_until("the second replica to record the effect it took over", Duration::from_secs(20), async || {
        second.run_due(&succeeding).await.unwrap();
        rotate_results(&second.store().events(&incident).await.unwrap()) == ["done"]
    })
    .await;

    // Thawed, the first replica's result (a failure) is refused: its lease was taken over.
    thaw.send(()).unwrap();
    let (progress, first_seen) = tokio::task::spawn_blocking(move || first.join().unwrap()).await.unwrap();
    assert_eq!(progress.effects, 0, "the frozen replica recorded no effect");
    assert_eq!(first_seen.len(), 1, "it had carried the effect out before it froze");
    assert_eq!(*succeeding.seen.lock().unwrap(), first_seen, "the successor sent it again with the same key");
    let events = second.store().events(&incident).await.unwrap();
    assert_eq!(rotate_results(&events), ["done"], "only the successor's result is in the log");
    assert!(second.store().pending_effects(10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_running_the_outbox_at_once_carry_out_each_effect_once() {
    let Some(schema) = postgres::schema().await else { return };
    let open = async || {
        let store = PostgresStore::connect(schema.options()).await.unwrap();
        Runtime::new(store, Catalog::built_in(), directory())
    };
    let (first, second, third) = (open().await, open().await, open().await);
    let mut incidents = Vec::new();
    for _ in 0..12 {
        let (incident, _) = first.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
        first.submit(&incident, "dana", done("isolate")).await.unwrap();
        incidents.push(incident);
    }
    let executors = [Replica::answering(200), Replica::answering(200), Replica::answering(200)];
    let (a, b, c) =
        tokio::join!(first.run_due(&executors[0]), second.run_due(&executors[1]), third.run_due(&executors[2]));
    for progress in [a, b, c] {
        progress.unwrap();
    }
    let mut keys: Vec<String> = executors.iter().flat_map(|executor| executor.seen.lock().unwrap().clone()).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len(), "no idempotency key was sent twice: {keys:?}");
    assert_eq!(keys.len(), incidents.len(), "every effect was carried out");
    for incident in &incidents {
        assert_eq!(rotate_results(&first.store().events(incident).await.unwrap()), ["done"], "{incident}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_in_one_replica_rings_the_others_bell_and_only_when_notifications_are_on() {
    let Some(schema) = postgres::schema().await else { return };
    let writing = PostgresStore::connect(schema.options()).await.unwrap();
    let hearing = PostgresStore::connect(schema.options()).await.unwrap();
    let deaf = PostgresStore::connect(schema.options()).await.unwrap();
    assert!(hearing.work_bell().is_none(), "no bell before notifications are started");
    writing.notify_replicas().await.unwrap();
    hearing.notify_replicas().await.unwrap();
    let mut bell = hearing.work_bell().expect("a bell once started");
    bell.mark_unchanged();

    // An append with an effect (new work) is heard in the other process.
    let started = phasegate::store::contract::started("inc-1", "breach", None);
    let effect = phasegate::store::contract::notify("inc-1/page-ciso");
    writing.append(phasegate::store::Append::new("inc-1", 0, &[started]).effects(&[effect])).await.unwrap();
    wait_until("the other replica to hear of the new effect", Duration::from_secs(10), async || {
        bell.has_changed().unwrap()
    })
    .await;
    assert!(deaf.work_bell().is_none(), "a store with notifications off hears nothing, and polls");
}
