//! The shares of work besides the outbox's effects, each under a lease with a fencing token: an
//! incident's ticks, the webhook inbox, a campaign's batches. In each test a runtime on a thread of
//! its own freezes where it first reads its clock (the thread blocked, as SIGSTOP would: no
//! renewal, no writer), with its lease already claimed; another claimer takes the lease over once
//! it runs out, without doing the work yet; the frozen runtime is thawed and must store nothing
//! (without the fence it would: nothing else has written meanwhile); then the work is done once,
//! by the replica that goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use phasegate::actions::campaign::{Answer, BatchJob, BatchSent};
use phasegate::audit::merkle::{self, Leaf, LeafOutcome};
use phasegate::engine::command::CampaignAction;
use phasegate::engine::{Command, Directory, Effect, Event, Incident, Outcome};
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;
use phasegate::runtime::campaign::Settings;
use phasegate::runtime::claims::{INBOX, incident_lease};
use phasegate::runtime::inbox::Inbox;
use phasegate::runtime::{Executor, Runtime};
use phasegate::store::{BatchState, Delivery, Headers, PostgresStore, Store};
use sqlx::postgres::PgConnectOptions;

use crate::support::postgres;
use crate::support::wait_until;

/// The frozen runtime's lease: short, so that the test waits little for it to run out.
const LEASE: Duration = Duration::from_millis(600);

/// Long enough that the claimer taking over holds on while the frozen runtime is thawed.
const HELD: Duration = Duration::from_secs(60);

/// A clock that, the first time it is read, says so on `started` and blocks its thread until
/// `thaw` says to go on; then it reads `at`.
fn freezing(
    at: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
    started: mpsc::Sender<()>,
    thaw: mpsc::Receiver<()>,
) -> impl Fn() -> DateTime<Utc> + Send + Sync + 'static {
    let first = Mutex::new(Some((started, thaw)));
    move || {
        if let Some((started, thaw)) = first.lock().unwrap().take() {
            started.send(()).unwrap();
            thaw.recv().unwrap();
        }
        at()
    }
}

/// Runs `work` on a runtime of its own (on a thread of its own, with a current-thread tokio
/// runtime, so that a blocked clock freezes all of it), made by `make` from a new store.
fn on_a_thread<R: Send + 'static>(
    options: PgConnectOptions,
    make: impl FnOnce(PostgresStore) -> Runtime<PostgresStore, Catalog> + Send + 'static,
    work: impl AsyncFnOnce(&Runtime<PostgresStore, Catalog>) -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    std::thread::spawn(move || {
        let threaded = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        threaded.block_on(async move {
            let runtime = make(PostgresStore::connect(options).await.unwrap());
            work(&runtime).await
        })
    })
}

/// Claims the lease `name` as `successor` once the frozen runtime's lease has run out; returns
/// its token.
async fn take_over(store: &impl Store, name: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(lease) = store.claim_leases("successor", &[name.to_string()], HELD).await.unwrap().pop() {
            return lease.token;
        }
        assert!(Instant::now() < deadline, "the frozen runtime's lease on `{name}` never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn started_thread(started: mpsc::Receiver<()>) {
    tokio::task::spawn_blocking(move || started.recv().unwrap()).await.unwrap();
}

/// An incident whose phase waits a minute (a timer gate): a tick a minute in passes the gate.
const WAITING: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: settle
title: Let things settle
roles:
  commander: {}
phases:
  - id: contain
    entry:
      - id: settle
        timer: { not_before: 1m }
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts }
"#;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-06T01:00:00Z").unwrap().with_timezone(&Utc)
}

fn directory() -> Directory {
    Directory::with(&[("dana", &["commander"]), ("robin", &["comms"])])
}

fn count(events: &[Event], kind: &str) -> usize {
    events.iter().filter(|event| event.kind.name() == kind).count()
}

/// Answers nothing but campaign batches: each taken, every recipient sent.
#[derive(Default)]
struct Channel {
    sent: Mutex<Vec<u32>>,
}

impl Executor for Channel {
    async fn carry_out(&self, effect: &Effect, _: &Runbook, _: &Incident, _: &[Event], _: DateTime<Utc>) -> Outcome {
        Outcome::Failed { error: format!("this test carries out no {}", effect.id) }
    }

    async fn send_campaign_batch(&self, job: BatchJob<'_>) -> BatchSent {
        self.sent.lock().unwrap().push(job.number);
        let leaves = job
            .recipients
            .iter()
            .map(|recipient| Leaf {
                id: recipient.id.clone(),
                digest: merkle::message_digest(&recipient.address, "", "", None),
                outcome: LeafOutcome::Sent,
                at: job.now,
            })
            .collect();
        BatchSent { answer: Answer::Accepted { rejected: Vec::new() }, leaves }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_in_a_tick_records_nothing_once_its_incident_was_taken_over() {
    let Some(schema) = postgres::schema().await else { return };
    let minutes = Arc::new(AtomicI64::new(0));
    let clock = Arc::clone(&minutes);
    let second =
        Runtime::new(PostgresStore::connect(schema.options()).await.unwrap(), Catalog::built_in(), directory())
            .with_clock(move || t0() + chrono::Duration::minutes(clock.load(Ordering::SeqCst)));
    let (incident, _) = second.start(WAITING, "dana", BTreeMap::new(), None).await.unwrap();
    let before = second.store().events(&incident).await.unwrap();
    assert_eq!(count(&before, "gate_passed"), 0, "the timer holds the phase at the start");

    // The first replica claims the incident's lease and freezes deciding its tick, two minutes
    // in: the timer's gate would pass.
    let (started, has_started) = mpsc::channel();
    let (thaw, thawed) = mpsc::channel();
    let clock = freezing(|| t0() + chrono::Duration::minutes(2), started, thawed);
    let first = on_a_thread(
        schema.options(),
        move |store| Runtime::new(store, Catalog::built_in(), directory()).with_clock(clock).with_lease(LEASE),
        async |runtime| runtime.run_due(&Channel::default()).await.unwrap(),
    );
    started_thread(has_started).await;
    let name = incident_lease(&incident);
    let token = take_over(second.store(), &name).await;

    // Thawed, its tick is refused: the incident's version has not moved, only its lease.
    thaw.send(()).unwrap();
    let progress = tokio::task::spawn_blocking(move || first.join().unwrap()).await.unwrap();
    assert_eq!(progress.events, 0, "the frozen replica recorded nothing");
    assert_eq!(second.store().events(&incident).await.unwrap(), before, "nothing of its tick is in the log");

    // The lease let go, the replica that goes on ticks the incident, once.
    second.store().renew_leases("successor", &[token], Duration::ZERO).await.unwrap();
    minutes.store(2, Ordering::SeqCst);
    second.run_due(&Channel::default()).await.unwrap();
    second.run_due(&Channel::default()).await.unwrap();
    let events = second.store().events(&incident).await.unwrap();
    assert_eq!(
        count(&events, "gate_passed"),
        1,
        "the gate passed once: {:?}",
        events.iter().map(|e| e.kind.name()).collect::<Vec<_>>()
    );
}

/// A SIEM case opens an incident.
const CASES: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: siem-case
title: SIEM case
roles:
  commander: {}
phases:
  - id: contain
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts }
triggers:
  - id: case
    source: siem
    key: payload.case_id
    start: {}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_applying_the_inbox_stores_nothing_once_the_inbox_was_taken_over() {
    let Some(schema) = postgres::schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cases.yaml"), CASES).unwrap();
    let registry = phasegate::runtime::runbooks::load_with(&Catalog::built_in(), dir.path()).unwrap();
    assert_eq!(registry.entries().len(), 1, "the runbook loads: {:?}", registry.rejected());
    let inbox = Arc::new(Inbox::new(Arc::new(registry)));
    let second =
        Runtime::new(PostgresStore::connect(schema.options()).await.unwrap(), Catalog::built_in(), directory());
    let delivery = Delivery { source: "siem".into(), id: "case-1".into(), received_at: Utc::now() };
    assert!(inbox.receive(&second, &delivery, &Headers::new(), br#"{"case_id": "C-1"}"#).await.unwrap());

    // The first replica claims the inbox and freezes starting the case's incident.
    let (started, has_started) = mpsc::channel();
    let (thaw, thawed) = mpsc::channel();
    let clock = freezing(Utc::now, started, thawed);
    let applying = Arc::clone(&inbox);
    let first = on_a_thread(
        schema.options(),
        move |store| Runtime::new(store, Catalog::built_in(), directory()).with_clock(clock).with_lease(LEASE),
        async move |runtime| applying.apply_waiting(runtime).await.unwrap(),
    );
    started_thread(has_started).await;
    let token = take_over(second.store(), INBOX).await;

    // Thawed, it stores nothing: no incident, and the delivery still waits.
    thaw.send(()).unwrap();
    let applied = tokio::task::spawn_blocking(move || first.join().unwrap()).await.unwrap();
    assert_eq!(applied, 0, "the frozen replica applied nothing");
    assert!(second.store().incidents().await.unwrap().is_empty(), "it opened no incident");
    assert_eq!(second.store().inbox_depth().await.unwrap(), 1, "the delivery waits");

    // The lease let go, the replica that goes on applies it, once.
    second.store().renew_leases("successor", &[token], Duration::ZERO).await.unwrap();
    assert_eq!(inbox.apply_waiting(&second).await.unwrap(), 1);
    assert_eq!(second.store().incidents().await.unwrap().len(), 1);
    assert_eq!(second.store().inbox_depth().await.unwrap(), 0);
    let receipt = second.store().receipt("siem", "case-1").await.unwrap().unwrap();
    assert!(receipt.applied.unwrap().1.contains("\"started\""), "the case started its incident");
}

const CAMPAIGN: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: apology
title: Apology
roles:
  commander: {}
  comms: {}
rights: { campaign: [comms] }
inputs:
  members: { type: string, default: members.jsonl }
channels:
  mailer:
    batch: { url: "https://mailer.example/batches" }
phases:
  - id: notify
    steps:
      - id: send
        campaign:
          recipients: { input: members, id_field: member_id }
          template: customer-notice
          channel: mailer
          batch_size: 10
          concurrency: 1
"#;

fn campaign(action: CampaignAction) -> Command {
    Command::Campaign { phase: "notify".into(), step: "send".into(), action, reason: Some("a test".into()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_in_a_campaign_slice_marks_and_sends_nothing_once_it_was_taken_over() {
    let Some(schema) = postgres::schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let members: String = (0..30)
        .map(|n| format!("{{\"member_id\": \"M{n}\", \"email\": \"m{n}@example.com\", \"first_name\": \"Ann\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("members.jsonl"), members).unwrap();
    let settings = Settings {
        dir: dir.path().join("campaigns"),
        lists_from: Some(dir.path().to_path_buf()),
        ..Settings::default()
    };
    let second =
        Runtime::new(PostgresStore::connect(schema.options()).await.unwrap(), Catalog::built_in(), directory())
            .with_campaigns(settings.clone());
    let (incident, _) = second.start(CAMPAIGN, "dana", BTreeMap::new(), None).await.unwrap();
    let key = format!("{incident}/notify/send");

    // Paused, a pass plans the campaign (three batches) and sends nothing; then it is resumed.
    second.submit(&incident, "robin", campaign(CampaignAction::Pause)).await.unwrap();
    let succeeding = Channel::default();
    second.run_due(&succeeding).await.unwrap();
    assert_eq!(
        phasegate::store::contract::states(second.store(), &key).await,
        [BatchState::Planned, BatchState::Planned, BatchState::Planned]
    );
    second.submit(&incident, "robin", campaign(CampaignAction::Resume)).await.unwrap();

    // The first replica claims the campaign's effect, reads its batches and freezes marking the
    // first in flight.
    let (started, has_started) = mpsc::channel();
    let (thaw, thawed) = mpsc::channel();
    let clock = freezing(Utc::now, started, thawed);
    let first = on_a_thread(
        schema.options(),
        move |store| {
            Runtime::new(store, Catalog::built_in(), directory())
                .with_campaigns(settings)
                .with_clock(clock)
                .with_lease(LEASE)
        },
        async |runtime| {
            let frozen = Channel::default();
            runtime.run_due(&frozen).await.unwrap();
            frozen.sent.into_inner().unwrap()
        },
    );
    started_thread(has_started).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        if let Some(claim) = second.store().claim_effects("successor", 10, HELD).await.unwrap().pop() {
            break claim.token;
        }
        assert!(Instant::now() < deadline, "the frozen replica's lease on the campaign never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Thawed, its mark is refused, so it sends none of the batches it had read.
    thaw.send(()).unwrap();
    let sent = tokio::task::spawn_blocking(move || first.join().unwrap()).await.unwrap();
    assert_eq!(sent, Vec::<u32>::new(), "the frozen replica sent no batch");
    assert_eq!(
        phasegate::store::contract::states(second.store(), &key).await,
        [BatchState::Planned, BatchState::Planned, BatchState::Planned],
        "nor marked one in flight"
    );

    // The claim let go, the replica that goes on sends each batch once.
    second.store().renew_effects("successor", &[token], Duration::ZERO).await.unwrap();
    wait_until("the campaign to finish", Duration::from_secs(30), async || {
        second.run_due(&succeeding).await.unwrap();
        second.load(&incident).await.unwrap().incident.step("notify", "send").status.as_str() == "done"
    })
    .await;
    let mut batches = succeeding.sent.lock().unwrap().clone();
    batches.sort_unstable();
    assert_eq!(batches, [1, 2, 3], "each batch sent once");
    for state in phasegate::store::contract::states(second.store(), &key).await {
        assert!(matches!(state, BatchState::Answered { attempts: 1, .. }), "{state:?}");
    }
}

/// Regression: a replica that receives deliveries but does not hold the inbox's lease counted
/// each one waiting and never counted it applied (the holder applied it), so its count only grew,
/// and past `INBOX_LIMIT` it would have refused every webhook. It now counts what waits in the
/// store when another process holds the inbox, at most once a second (a count at every delivery
/// cost more and more under a transaction holding back vacuum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_not_applying_the_inbox_counts_what_waits_from_the_store() {
    let Some(schema) = postgres::schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cases.yaml"), CASES).unwrap();
    let replica = async || {
        let registry = phasegate::runtime::runbooks::load_with(&Catalog::built_in(), dir.path()).unwrap();
        let store = PostgresStore::connect(schema.options()).await.unwrap();
        (Runtime::new(store, Catalog::built_in(), directory()), Inbox::new(Arc::new(registry)))
    };
    let ((holding, applies), (receiving, receives)) = (replica().await, replica().await);
    assert_eq!(applies.apply_waiting(&holding).await.unwrap(), 0, "nothing waits yet; the inbox's lease is taken");
    for case in 1..=3 {
        let delivery = Delivery { source: "siem".into(), id: format!("case-{case}"), received_at: Utc::now() };
        let body = format!("{{\"case_id\": \"C-{case}\"}}");
        assert!(receives.receive(&receiving, &delivery, &Headers::new(), body.as_bytes()).await.unwrap());
    }
    assert_eq!(receives.apply_waiting(&receiving).await.unwrap(), 0, "the other replica holds the inbox");
    assert_eq!(receives.depth(), 3);
    assert_eq!(applies.apply_waiting(&holding).await.unwrap(), 3);
    wait_until("what the holder applied to no longer count as waiting here", Duration::from_secs(30), async || {
        assert_eq!(receives.apply_waiting(&receiving).await.unwrap(), 0);
        if receives.depth() == 0 { Ok(()) } else { Err(format!("a depth of {}", receives.depth())) }
    })
    .await;
}
