//! Dead rows under a transaction that holds PostgreSQL's horizon open (the first trap of the job
//! queues, docs/replicas.md): while another session's REPEATABLE READ snapshot stands, no row
//! version can be removed, by vacuum or by pruning, so whatever a replica rewrites stays as a dead
//! row until the snapshot ends. What phasegate leaves must grow with the work done, a few row
//! versions an effect or a delivery, and not with time: replicas polling with nothing to do
//! rewrite no row at all. Measured by counting, never by time: the rows' `xmin` and place
//! (`ctid`), which change with every rewrite, and the table statistics' update counts.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use phasegate::engine::{Directory, Effect, Event, Incident, Outcome};
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;
use phasegate::runtime::{Executor, Runtime};
use phasegate::store::{Delivery, Headers, PostgresStore, Store};
use serde_json::json;
use sqlx::postgres::PgConnection;

use crate::runtime::{RUNBOOK, done};
use crate::support::postgres::{self, Schema};
use crate::support::wait_until;

/// Incidents started, each queuing one http effect, and deliveries received and applied.
const EFFECTS: usize = 40;
const DELIVERIES: usize = 40;
/// Passes of the runtime's loop and reads of the inbox with nothing to do: what idle replicas do.
const IDLE_PASSES: usize = 100;

/// Answers every http effect 200.
struct Answering;

impl Executor for Answering {
    async fn carry_out(&self, _: &Effect, _: &Runbook, _: &Incident, _: &[Event], _: DateTime<Utc>) -> Outcome {
        Outcome::Http { status: 200, headers: BTreeMap::new(), body: json!({}) }
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

/// Every row of `table` as its version stands: place and creating transaction.
async fn versions(connection: &mut PgConnection, table: &str) -> Vec<(String, String)> {
    let query = format!("SELECT ctid::text, xmin::text FROM {table} ORDER BY ctid");
    sqlx::query_as(sqlx::AssertSqlSafe(query)).fetch_all(connection).await.unwrap()
}

/// The statistics' count of rows inserted and updated in `table` of the test's schema, as far as
/// the sessions that wrote them have reported (each reports at most once a second).
async fn writes(connection: &mut PgConnection, schema: &Schema, table: &str) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT n_tup_ins, n_tup_upd, n_dead_tup FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
    )
    .bind(&schema.name)
    .bind(table)
    .fetch_one(connection)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_held_snapshot_work_leaves_a_few_dead_rows_each_and_idle_replicas_none() {
    let Some(schema) = postgres::schema().await else { return };
    let store = PostgresStore::connect(schema.options()).await.unwrap();
    let runtime = Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["commander"])]));

    // Another session holds a snapshot: the database's horizon stays where it is.
    let mut holder = schema.connect().await;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ").execute(&mut holder).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut holder).await.unwrap();
    let mut look = schema.connect().await;
    let pinned: Option<String> = sqlx::query_scalar("SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(&mut look)
        .await
        .unwrap();
    assert!(pinned.is_some(), "the held transaction has a snapshot that pins the horizon");

    // The work: effects queued, claimed, carried out and completed; deliveries received and applied.
    for _ in 0..EFFECTS {
        let (incident, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
        runtime.submit(&incident, "dana", done("isolate")).await.unwrap();
    }
    runtime.run_due(&Answering).await.unwrap();
    assert!(runtime.store().pending_effects(1).await.unwrap().is_empty(), "every effect is done");
    let store = runtime.store();
    for number in 0..DELIVERIES {
        let delivery = Delivery { source: "siem".into(), id: format!("d-{number}"), received_at: Utc::now() };
        assert!(store.receive(&delivery, &Headers::default(), b"{}").await.unwrap());
    }
    let waiting = store.inbox(DELIVERIES, 1 << 20).await.unwrap();
    let applied: Vec<(u64, String)> = waiting.iter().map(|inbound| (inbound.seq, r#"{"done":[]}"#.into())).collect();
    store.applied(&applied, None).await.unwrap();

    // Each effect was written a few times (queued; claimed; completed), each delivery twice
    // (received; applied), and every rewrite is a dead row the snapshot keeps.
    let counted = wait_until("the writes to be reported", Duration::from_secs(30), async || {
        let (outbox, inbox) = (writes(&mut look, &schema, "outbox").await, writes(&mut look, &schema, "inbox").await);
        let reported = outbox.0 == EFFECTS as i64 && inbox.0 == DELIVERIES as i64 && inbox.1 >= DELIVERIES as i64;
        if reported && outbox.1 >= 2 * EFFECTS as i64 {
            Ok((outbox, inbox))
        } else {
            Err(format!("{outbox:?} {inbox:?}"))
        }
    })
    .await;
    let ((_, outbox_updates, outbox_dead), (_, inbox_updates, inbox_dead)) = counted;
    assert!(outbox_updates <= 3 * EFFECTS as i64, "{outbox_updates} updates for {EFFECTS} effects");
    assert!(outbox_dead <= outbox_updates, "the snapshot kept at most the rewritten versions: {outbox_dead}");
    assert_eq!(inbox_updates, DELIVERIES as i64, "a delivery is rewritten once, when it is applied");
    assert!(inbox_dead <= inbox_updates);

    // Idle: the loop claims nothing and ticks incidents with nothing due, the inbox reads
    // nothing waiting. No row of either table is rewritten.
    let (outbox_before, inbox_before) = (versions(&mut look, "outbox").await, versions(&mut look, "inbox").await);
    assert_eq!(outbox_before.len(), EFFECTS);
    for _ in 0..IDLE_PASSES {
        let progress = runtime.run_due(&Answering).await.unwrap();
        assert_eq!(progress.effects, 0, "nothing is due");
        assert!(store.inbox(100, 1 << 20).await.unwrap().is_empty());
    }
    assert_eq!(versions(&mut look, "outbox").await, outbox_before, "idle passes rewrote no effect");
    assert_eq!(versions(&mut look, "inbox").await, inbox_before, "idle passes rewrote no delivery");

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
}

/// Every named lease as its row version stands, by name: place and creating transaction.
async fn lease_versions(connection: &mut PgConnection) -> BTreeMap<String, (String, String)> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, ctid::text, xmin::text FROM leases").fetch_all(connection).await.unwrap();
    rows.into_iter().map(|(name, place, created)| (name, (place, created))).collect()
}

/// Regression: each pass renewed every incident lease its replica held once less than two
/// thirds of it was left, one row version per open incident every few seconds, which a held
/// snapshot kept as dead rows (70,845 in `leases` after 5 minutes of the held-horizon bench).
/// Now an incident's lease stands on its holder's presence lease, the one row a pass renews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_renew_the_presence_lease_and_rewrite_no_incident_lease() {
    let Some(schema) = postgres::schema().await else { return };
    let store = PostgresStore::connect(schema.options()).await.unwrap();
    // A short lease, so that the presence is renewed three times within a few seconds of passes
    // (once a third of it has passed): by then an incident lease renewed with the lease as it
    // was (a third of it passed) would have been rewritten too.
    let runtime = Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["commander"])]))
        .with_lease(Duration::from_secs(3));
    let mut look = schema.connect().await;
    for _ in 0..10 {
        runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    }
    runtime.run_due(&Answering).await.unwrap();
    let before = lease_versions(&mut look).await;
    let presence = phasegate::store::presence(runtime.holder());
    let incidents: Vec<&String> = before.keys().filter(|name| name.starts_with("incident/")).collect();
    assert_eq!(incidents.len(), 10, "this runtime holds every incident: {before:?}");
    let mut renewals = 0;
    let mut last = before[&presence].clone();
    wait_until("the presence lease to be renewed three times", Duration::from_secs(30), async || {
        runtime.run_due(&Answering).await.unwrap();
        let now = lease_versions(&mut look).await;
        if now[&presence] != last {
            renewals += 1;
            last = now[&presence].clone();
        }
        if renewals >= 3 { Ok(()) } else { Err(format!("{renewals} renewals")) }
    })
    .await;
    let after = lease_versions(&mut look).await;
    for name in incidents {
        assert_eq!(after.get(name), before.get(name), "`{name}` was rewritten while its holder was present");
    }
}

/// Regression: every event rewrote its incident's row (its version, head and last change), one
/// dead row version per event under a held snapshot (95,064 in `incidents` after ten minutes of
/// the held-horizon bench). Since migration 0007 an event only inserts: its incident's version,
/// head and checkpoint are read from its latest event and checkpoint, and the row changes once,
/// when the incident closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_checkpoints_rewrite_no_incident_row_and_closing_rewrites_it_once() {
    use phasegate::audit::keys::{Checkpoint, SignedCheckpoint};
    use phasegate::store::Append;
    use phasegate::store::contract::{at, closed, note, started};

    let Some(schema) = postgres::schema().await else { return };
    let store = PostgresStore::connect(schema.options()).await.unwrap();
    let mut look = schema.connect().await;
    let mut holder = schema.connect().await;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT count(*) FROM events").execute(&mut holder).await.unwrap();

    for id in ["inc-1", "inc-2"] {
        store.append(Append::new(id, 0, &[started(id, "breach", Some(id))])).await.unwrap();
    }
    let before = versions(&mut look, "incidents").await;
    let mut version = 1;
    for minute in 1..=50 {
        // One event at a time and several at once, to both incidents.
        let events =
            if minute % 2 == 0 { vec![note(minute, "one")] } else { vec![note(minute, "a"), note(minute, "b")] };
        for id in ["inc-1", "inc-2"] {
            assert_eq!(store.append(Append::new(id, version, &events)).await.unwrap(), version + events.len() as u64);
        }
        version += events.len() as u64;
    }
    let checkpoint = Checkpoint {
        format: 1,
        incident: "inc-1".into(),
        number: 1,
        events: version,
        head: "ab".repeat(32),
        prev: "00".repeat(32),
        at: at(55),
        key: "sha256:test".into(),
    };
    store.add_checkpoint("inc-1", &SignedCheckpoint { checkpoint, signature: "cd".repeat(64) }, None).await.unwrap();
    assert_eq!(versions(&mut look, "incidents").await, before, "appends and a checkpoint rewrote an incident's row");

    let summary = store.incident("inc-1").await.unwrap().unwrap();
    let chain = store.chain("inc-1", 0, 1000).await.unwrap();
    assert_eq!((summary.version, summary.head.as_deref()), (version, chain.last().unwrap().hash.as_deref()));
    assert_eq!((summary.checkpointed, summary.checkpointed_at, summary.closed_at), (version, Some(at(55)), None));

    store.append(Append::new("inc-1", version, &[closed(60)])).await.unwrap();
    store.append(Append::new("inc-1", version + 1, &[note(61, "after closing")])).await.unwrap();
    let after = versions(&mut look, "incidents").await;
    let rewritten = after.iter().filter(|row| !before.contains(row)).count();
    assert_eq!((after.len(), rewritten), (2, 1), "closing rewrote the one incident's row, once: {before:?} {after:?}");
    let summary = store.incident("inc-1").await.unwrap().unwrap();
    assert_eq!((summary.version, summary.closed_at), (version + 2, Some(at(60))));
    assert_eq!(summary.updated_at, at(61));
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
}
