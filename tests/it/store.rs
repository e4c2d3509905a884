//! The SQLite store: the shared contract, then what only a file can show (durability, the
//! pragmas that give it, group commit).

use std::sync::Arc;

use std::time::Duration;

use phasegate::store::contract::{self, note, notify, started};
use phasegate::store::{Append, Headers, SqliteStore, Store};
use sqlx::Connection;
use tempfile::TempDir;

use crate::support::wait_until;

/// A fresh store in a file of its own; the directory goes when the guard does.
async fn fresh() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    (store, dir)
}

phasegate::store_contract!(fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_append_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phasegate.db");
    let effect = notify("inc-1/status/1");
    let events = [started("inc-1", "breach", Some("alert-7")), note(1, "shop is down")];
    let (summaries, pending) = {
        let store = SqliteStore::open(&path).await.unwrap();
        store.append(Append::new("inc-1", 0, &events).effects(std::slice::from_ref(&effect))).await.unwrap();
        (store.incidents().await.unwrap(), store.pending_effects(10).await.unwrap())
        // Dropped without `close`, as a crash after the answer would leave it.
    };

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.events("inc-1").await.unwrap(), events);
    assert_eq!((summaries.len(), summaries[0].version), (1, 2));
    assert_eq!(store.incidents().await.unwrap(), summaries);
    assert_eq!(store.pending_effects(10).await.unwrap(), pending);
    assert_eq!(pending[0].effect, effect);
    assert_eq!(store.open_incident_by_key("breach", "alert-7").await.unwrap().as_deref(), Some("inc-1"));
    // And the reopened store carries on from the stored version.
    assert_eq!(
        store
            .append(Append::new("inc-1", 2, &[note(2, "after the restart")]).completes(Some("inc-1/status/1")))
            .await
            .unwrap(),
        3
    );
    store.close().await;
}

#[tokio::test]
async fn the_file_is_in_wal_mode_with_the_schema_in_place() {
    let (store, dir) = fresh().await;
    store.close().await;
    let url = format!("sqlite://{}", dir.path().join("phasegate.db").display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut connection).await.unwrap();
    assert_eq!(mode, "wal", "WAL mode is a property of the file and outlives the store");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "campaign_batches",
            "campaign_failures",
            "campaign_leaves",
            "campaigns",
            "checkpoints",
            "deliveries",
            "events",
            "inbox",
            "inbox_numbered",
            "incidents",
            "outbox",
            "received"
        ]
    );
}

#[tokio::test]
async fn opening_an_unwritable_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = SqliteStore::open(dir.path().join("missing-directory").join("phasegate.db")).await;
    assert!(matches!(result, Err(phasegate::store::Error::Database(_))), "{result:?}");
}

/// The WAL is copied back into the database file beside the writer (the checkpointer), long
/// before the writer's own checkpoint would come, many thousand pages later: a note appended
/// reaches the file while the store is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_beside_the_writer() {
    let (store, dir) = fresh().await;
    let marker = "a note only a checkpoint copies into the database file";
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    store.append(Append::new("inc-1", 1, &[note(1, marker)])).await.unwrap();
    let path = dir.path().join("phasegate.db");
    wait_until("the note copied from the WAL into the database file", Duration::from_secs(10), async || {
        std::fs::read(&path).unwrap().windows(marker.len()).any(|bytes| bytes == marker.as_bytes())
    })
    .await;
    // Closing checkpoints too, so the file is read before.
    store.close().await;
}

/// Waits until `count` jobs wait in the queue of the held writer ([`SqliteStore::pause`]).
async fn queued(store: &SqliteStore, count: usize) {
    wait_until(&format!("{count} jobs queued for the held writer"), Duration::from_secs(10), async || {
        let queued = store.queued();
        if queued == count { Ok(()) } else { Err(format!("{queued} queued")) }
    })
    .await;
}

/// Runs `send`, which sends `jobs` jobs to the writer from tasks of its own, while the writer is
/// held; once they are all queued, lets the writer go, so that they reach it together. Gives what
/// `send` returned and the writer's commits before.
pub async fn sent_together<T>(store: &SqliteStore, jobs: usize, send: impl FnOnce() -> T) -> (T, u64) {
    let paused = store.pause().await;
    let commits = store.commits();
    let sent = send();
    queued(store, jobs).await;
    drop(paused);
    (sent, commits)
}

/// Regression guard for group commit: appends that arrive together share one transaction.
///
/// On a current-thread runtime the hundred tasks of a round send their appends one after another
/// while the writer's thread commits what it took first, so a round costs a commit or two; one
/// commit per append would make this fail.
#[tokio::test(flavor = "current_thread")]
async fn appends_that_arrive_together_share_a_commit() {
    let (store, _dir) = fresh().await;
    let store = Arc::new(store);
    contract::concurrent_appends_to_many_incidents_all_succeed(Arc::clone(&store)).await;
    let appends = (contract::INCIDENTS * (contract::APPENDS + 1)) as u64;
    let commits = store.commits();
    assert!(commits * 10 <= appends, "{commits} commits for {appends} appends");
}

/// Appends that share a transaction fail alone: a conflict, and an append refused after it had
/// already written its events, leave the others of the transaction stored.
#[tokio::test(flavor = "current_thread")]
async fn appends_in_one_transaction_fail_alone() {
    let (store, _dir) = fresh().await;
    let store = Arc::new(store);
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)]).effects(&[notify("e1")])).await.unwrap();

    // The appends below queue, in order, while the writer is held, and go together when it goes
    // on. The refused ones write one row (refused as a whole) or several (undone to a savepoint).
    let appends = [
        (1, note(1, "first"), Some("e2"), None),
        (1, note(2, "stale"), Some("e3"), None),
        (1, note(2, "stale, alone"), None, None),
        (2, note(3, "queues e2 again"), Some("e2"), None),
        (2, note(4, "records e1"), None, Some("e1")),
    ];
    let (tasks, commits) = sent_together(&store, appends.len(), || {
        appends.map(|(expected, event, effect, completes)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let effects: Vec<_> = effect.into_iter().map(notify).collect();
                store.append(Append::new("inc-1", expected, &[event]).effects(&effects).completes(completes)).await
            })
        })
    })
    .await;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    // Refused appends commit nothing of their own, but the two stored ones would be two commits
    // had they not shared one.
    let commits = store.commits() - commits;
    assert_eq!(commits, 1, "one commit for the five appends: {results:?}");
    assert!(matches!(results[0], Ok(2)), "{results:?}");
    assert!(matches!(results[1], Err(phasegate::store::Error::Conflict { actual: 2, .. })), "{results:?}");
    assert!(matches!(results[2], Err(phasegate::store::Error::Conflict { actual: 2, .. })), "{results:?}");
    assert!(matches!(results[3], Err(phasegate::store::Error::Invalid { .. })), "{results:?}");
    assert!(matches!(results[4], Ok(3)), "{results:?}");
    let notes: Vec<_> = store.events("inc-1").await.unwrap().into_iter().filter_map(|event| event.reason).collect();
    assert_eq!(notes, ["first", "records e1"]);
    let pending: Vec<_> =
        store.pending_effects(10).await.unwrap().into_iter().map(|pending| pending.effect.id).collect();
    assert_eq!(pending, ["e2"]);
}

/// Another process appends behind this writer's back (the CLI beside the server): the head this
/// writer remembers is stale. An append that trusted it, and wrote its delivery before its event
/// was refused, is undone alone and answered as a conflict; the next append reads the head from
/// the file, and the chain stays whole.
#[tokio::test(flavor = "current_thread")]
async fn a_head_another_process_moved_is_caught_and_undone_alone() {
    use phasegate::audit::chain::{GENESIS, from_hex, link};
    use phasegate::store::{Delivery, Error};
    let (store, dir) = fresh().await;
    let store = Arc::new(store);
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    let other = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    other.append(Append::new("inc-1", 1, &[note(1, "from the other process")])).await.unwrap();
    other.close().await;

    let delivery = |id: &str| Delivery { source: "siem".into(), id: id.into(), received_at: contract::at(2) };
    let stale = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store.append(Append::new("inc-1", 1, &[note(2, "stale")]).delivered(&[delivery("d-1")])).await
        })
    };
    let beside = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.append(Append::new("inc-2", 0, &[started("inc-2", "breach", None)])).await })
    };
    let (stale, beside) = (stale.await.unwrap(), beside.await.unwrap());
    assert!(matches!(stale, Err(Error::Conflict { actual: 2, .. })), "{stale:?}");
    assert!(matches!(beside, Ok(1)), "{beside:?}");
    assert_eq!(store.delivery("siem", "d-1").await.unwrap(), None, "the delivery was undone with its event");

    store.append(Append::new("inc-1", 2, &[note(3, "caught up")]).delivered(&[delivery("d-1")])).await.unwrap();
    let links = store.chain("inc-1", 0, 10).await.unwrap();
    let mut prev = GENESIS;
    for stored in &links {
        prev = link(&prev, stored.seq, stored.event.as_bytes());
        assert_eq!(from_hex(stored.hash.as_deref().unwrap()), Some(prev), "event {}", stored.seq);
    }
    assert_eq!(links.len(), 3);
}

/// The same for an append of events alone, which the writer stores on its direct connection
/// (`store/sqlite/writer/direct.rs`) when it follows the head the writer remembers: the stale head
/// makes the schema refuse it there, the writer's usual path answers the conflict, nothing of it
/// is stored, and the appends that follow go on from the head in the file.
#[tokio::test(flavor = "current_thread")]
async fn an_append_of_events_alone_on_a_stale_head_is_a_conflict() {
    use phasegate::audit::chain::{GENESIS, from_hex, link};
    use phasegate::store::Error;
    let (store, dir) = fresh().await;
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    assert_eq!(store.append(Append::new("inc-1", 1, &[note(1, "first")])).await.unwrap(), 2);
    let other = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    other.append(Append::new("inc-1", 2, &[note(2, "from the other process")])).await.unwrap();
    other.close().await;

    let stale = store.append(Append::new("inc-1", 2, &[note(3, "stale"), note(4, "stale too")])).await;
    assert!(matches!(stale, Err(Error::Conflict { expected: 2, actual: 3, .. })), "{stale:?}");
    assert_eq!(store.append(Append::new("inc-1", 3, &[note(5, "caught up")])).await.unwrap(), 4);
    assert_eq!(store.append(Append::new("inc-1", 4, &[note(6, "and on")])).await.unwrap(), 5);
    let notes: Vec<_> = store.events("inc-1").await.unwrap().into_iter().filter_map(|event| event.reason).collect();
    assert_eq!(notes, ["first", "from the other process", "caught up", "and on"]);
    let links = store.chain("inc-1", 0, 10).await.unwrap();
    let mut prev = GENESIS;
    for stored in &links {
        prev = link(&prev, stored.seq, stored.event.as_bytes());
        assert_eq!(from_hex(stored.hash.as_deref().unwrap()), Some(prev), "event {}", stored.seq);
    }
    assert_eq!(links.len(), 5);
    store.close().await;
}

/// The same for a batch of appends of events alone to several incidents (many incidents'
/// commands at once), which the writer stores together on its direct connection: one stale head
/// makes the schema refuse the batch there, and the writer's usual path stores the others and
/// answers the stale one's conflict, in one commit; the next batch goes on from the heads in the
/// file, and every chain stays whole.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_of_events_alone_with_one_stale_head_stores_the_others() {
    use phasegate::audit::chain::{GENESIS, from_hex, link};
    use phasegate::store::Error;
    let (store, dir) = fresh().await;
    let store = Arc::new(store);
    let ids = ["inc-1", "inc-2", "inc-3"];
    for id in ids {
        store.append(Append::new(id, 0, &[started(id, "breach", None)])).await.unwrap();
        assert_eq!(store.append(Append::new(id, 1, &[note(1, "first")])).await.unwrap(), 2);
    }
    let other = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    other.append(Append::new("inc-2", 2, &[note(2, "from the other process")])).await.unwrap();
    other.close().await;

    let batch = |expected: [u64; 3], text: &'static str| {
        let store = &store;
        ids.into_iter().zip(expected).map(move |(id, expected)| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.append(Append::new(id, expected, &[note(3, text)])).await })
        })
    };
    let (tasks, commits) = sent_together(&store, 3, || batch([2, 2, 2], "second").collect::<Vec<_>>()).await;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(matches!(results[0], Ok(3)), "{results:?}");
    assert!(matches!(results[1], Err(Error::Conflict { expected: 2, actual: 3, .. })), "{results:?}");
    assert!(matches!(results[2], Ok(3)), "{results:?}");
    assert_eq!(store.commits() - commits, 1, "the stored two share one commit");

    let (tasks, commits) = sent_together(&store, 3, || batch([3, 3, 3], "third").collect::<Vec<_>>()).await;
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 4);
    }
    assert_eq!(store.commits() - commits, 1, "one commit for the three");
    for (id, expected) in ids.into_iter().zip([
        ["first", "second", "third"],
        ["first", "from the other process", "third"],
        ["first", "second", "third"],
    ]) {
        let notes: Vec<_> = store.events(id).await.unwrap().into_iter().filter_map(|event| event.reason).collect();
        assert_eq!(notes, expected, "{id}");
        let links = store.chain(id, 0, 10).await.unwrap();
        let mut prev = GENESIS;
        for stored in &links {
            prev = link(&prev, stored.seq, stored.event.as_bytes());
            assert_eq!(from_hex(stored.hash.as_deref().unwrap()), Some(prev), "{id}, event {}", stored.seq);
        }
        assert_eq!(links.len(), 4, "{id}");
    }
}

fn delivery(id: &str) -> phasegate::store::Delivery {
    phasegate::store::Delivery { source: "siem".into(), id: id.into(), received_at: contract::at(1) }
}

/// The inbox has no index on delivery ids (migration 0005): the writer knows which deliveries
/// wait, and `received` keeps the ids of those applied. Both hold across a restart, and
/// deliveries another process received are known too.
#[tokio::test(flavor = "current_thread")]
async fn deliveries_are_known_after_a_restart_and_from_another_process() {
    let (store, dir) = fresh().await;
    let path = dir.path().join("phasegate.db");
    assert!(store.receive(&delivery("waits"), &Headers::new(), b"{}").await.unwrap());
    assert!(store.receive(&delivery("applied"), &Headers::new(), b"{}").await.unwrap());
    let waiting = store.inbox(10, 1 << 20).await.unwrap();
    store.applied(&[(waiting[1].seq, "[]".into())], None).await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    assert!(!store.receive(&delivery("waits"), &Headers::new(), b"{}").await.unwrap(), "waiting before the restart");
    assert!(!store.receive(&delivery("applied"), &Headers::new(), b"{}").await.unwrap(), "applied before the restart");
    let other = SqliteStore::open(&path).await.unwrap();
    assert!(other.receive(&delivery("elsewhere"), &Headers::new(), b"{}").await.unwrap());
    assert!(!other.receive(&delivery("waits"), &Headers::new(), b"{}").await.unwrap());
    assert!(
        !store.receive(&delivery("elsewhere"), &Headers::new(), b"{}").await.unwrap(),
        "received by the other process"
    );
    assert!(store.receive(&delivery("here"), &Headers::new(), b"{}").await.unwrap());
    assert!(!other.receive(&delivery("here"), &Headers::new(), b"{}").await.unwrap(), "received by the first process");
    other.close().await;
    assert_eq!(store.inbox_depth().await.unwrap(), 3);
    assert!(store.receipt("siem", "elsewhere").await.unwrap().is_some());
    assert!(store.receipt("siem", "applied").await.unwrap().unwrap().applied.is_some());
    store.close().await;
}

fn spawn_receive(store: &Arc<SqliteStore>, id: &'static str) -> tokio::task::JoinHandle<bool> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.receive(&delivery(id), &Headers::new(), id.as_bytes()).await.unwrap() })
}

/// One commit's deliveries, some new, one applied before, one waiting, one twice: the insert
/// stores the new ones once and the answers say which they were.
#[tokio::test(flavor = "current_thread")]
async fn a_commit_of_new_and_known_deliveries_stores_the_new_once() {
    let (store, _dir) = fresh().await;
    let store = Arc::new(store);
    assert!(store.receive(&delivery("applied"), &Headers::new(), b"{}").await.unwrap());
    assert!(store.receive(&delivery("waiting"), &Headers::new(), b"{}").await.unwrap());
    let first = store.inbox(1, 1 << 20).await.unwrap();
    store.applied(&[(first[0].seq, "[]".into())], None).await.unwrap();

    let ids = ["new-1", "applied", "new-2", "waiting", "new-1"];
    let (together, commits) = sent_together(&store, ids.len(), || ids.map(|id| spawn_receive(&store, id))).await;
    let mut answers = Vec::new();
    for task in together {
        answers.push(task.await.unwrap());
    }
    assert_eq!(answers, [true, false, true, false, false]);
    assert_eq!(store.commits() - commits, 1, "one commit for the five");
    let waiting = store.inbox(10, 1 << 20).await.unwrap();
    let ids: Vec<&str> = waiting.iter().map(|inbound| inbound.delivery.id.as_str()).collect();
    assert_eq!(ids, ["waiting", "new-1", "new-2"]);
}

/// A database from before migration 0005 (the inbox with a unique key on ids) keeps its
/// deliveries: waiting ones wait (without headers, which migration 0007 added), applied ones are
/// still known.
#[tokio::test]
async fn the_inbox_from_before_migration_5_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    for entry in std::fs::read_dir("migrations/sqlite").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.as_str() < "0005" {
            std::fs::copy(&path, migrations.join(name)).unwrap();
        }
    }
    let path = dir.path().join("phasegate.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path()).await.unwrap().run(&mut connection).await.unwrap();
    sqlx::query(
        "INSERT INTO inbox (source, id, received_at, body, applied_at, outcome) VALUES
             ('siem', 'old-applied', '2026-12-01T00:00:00Z', NULL, '2026-12-01T00:00:01Z', '[]'),
             ('siem', 'old-waiting', '2026-12-01T00:00:02Z', X'7B7D', NULL, NULL)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();

    let store = SqliteStore::open(&path).await.unwrap();
    assert!(!store.receive(&delivery("old-applied"), &Headers::new(), b"{}").await.unwrap());
    assert!(!store.receive(&delivery("old-waiting"), &Headers::new(), b"{}").await.unwrap());
    let headers = Headers::from([("x-siem-env".to_string(), "prod".to_string())]);
    assert!(store.receive(&delivery("new"), &headers, b"{}").await.unwrap());
    let waiting = store.inbox(10, 1 << 20).await.unwrap();
    let ids: Vec<&str> = waiting.iter().map(|inbound| inbound.delivery.id.as_str()).collect();
    assert_eq!(ids, ["old-waiting", "new"]);
    // Received before headers were kept (migration 0007): it has none.
    assert_eq!([&waiting[0].headers, &waiting[1].headers], [&Headers::new(), &headers]);
    assert_eq!(waiting[0].seq, 2, "rows keep their place");
    // A delivery received before keeps the ids its actions had, in case it was applied halfway;
    // one received after is numbered by its place.
    assert_eq!(waiting[0].actions, "old-waiting");
    assert_eq!(waiting[1].actions, "#00000000000000000003");
    assert!(store.receipt("siem", "old-applied").await.unwrap().unwrap().applied.is_some());
    store.close().await;
}

/// Deliveries waiting to be stored are committed ahead of an append waiting with them, in a commit
/// of their own (their senders wait for it), and the append follows in the next.
#[tokio::test(flavor = "current_thread")]
async fn waiting_deliveries_are_committed_ahead_of_a_waiting_append() {
    let (store, _dir) = fresh().await;
    let store = Arc::new(store);
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    let ((append, deliveries), commits) = sent_together(&store, 4, || {
        let appending = Arc::clone(&store);
        let append =
            tokio::spawn(async move { appending.append(Append::new("inc-1", 1, &[note(1, "during a storm")])).await });
        (append, ["d-1", "d-2", "d-3"].map(|id| spawn_receive(&store, id)))
    })
    .await;
    for delivery in deliveries {
        assert!(delivery.await.unwrap());
    }
    assert_eq!(append.await.unwrap().unwrap(), 2);
    assert_eq!(store.commits() - commits, 2, "the deliveries' commit, then the append's");
}

/// Migration 0009 drops the incidents' copies of their latest event (version, head, last change):
/// an incident stored before it reads the same summary after it, from its events, and its next
/// event is checked against them as before.
#[tokio::test]
async fn an_incident_stored_before_migration_9_keeps_its_summary() {
    use chrono::SecondsFormat;
    use phasegate::audit::chain;

    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    for entry in std::fs::read_dir("migrations/sqlite").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.as_str() < "0009" {
            std::fs::copy(&path, migrations.join(name)).unwrap();
        }
    }
    let path = dir.path().join("phasegate.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path()).await.unwrap().run(&mut connection).await.unwrap();
    let events = [started("inc-1", "breach", Some("alert-7")), note(3, "shop is down")];
    let time = |event: &phasegate::engine::Event| event.at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    sqlx::query("INSERT INTO incidents (id, runbook_id, key, started_at, updated_at) VALUES ('inc-1', 'breach', 'alert-7', ?, ?)")
        .bind(time(&events[0]))
        .bind(time(&events[0]))
        .execute(&mut connection)
        .await
        .unwrap();
    let mut head = chain::GENESIS;
    for (seq, event) in (1..).zip(&events) {
        let json = chain::canonical(event).unwrap();
        head = chain::link(&head, seq, json.as_bytes());
        sqlx::query("INSERT INTO events (incident, seq, type, at, event, hash) VALUES ('inc-1', ?, ?, ?, ?, ?)")
            .bind(seq as i64)
            .bind(event.kind.name())
            .bind(time(event))
            .bind(json)
            .bind(chain::to_hex(&head))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    // What the schema before 0009 kept in the incident's row.
    let before: (i64, String, String) =
        sqlx::query_as("SELECT version, head, updated_at FROM incidents").fetch_one(&mut connection).await.unwrap();
    assert_eq!(before, (2, chain::to_hex(&head), time(&events[1])));
    connection.close().await.unwrap();

    let store = SqliteStore::open(&path).await.unwrap();
    let summary = store.incident("inc-1").await.unwrap().unwrap();
    assert_eq!(
        (summary.version, summary.head.as_deref(), summary.updated_at, summary.closed_at),
        (2, Some(before.1.as_str()), events[1].at, None)
    );
    assert_eq!(store.incidents().await.unwrap(), [summary]);
    let stale = store.append(Append::new("inc-1", 1, &[note(4, "late")])).await;
    assert!(matches!(stale, Err(phasegate::store::Error::Conflict { actual: 2, .. })), "{stale:?}");
    assert_eq!(store.append(Append::new("inc-1", 2, &[note(4, "next")])).await.unwrap(), 3);
    store.close().await;
}
