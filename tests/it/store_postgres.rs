//! The PostgreSQL store: the shared contract, each test in a schema of its own on the local
//! server (`support::postgres`), then what only PostgreSQL shows: its schema's own refusals,
//! hashes the same as SQLite's, several processes writing one database.

use std::sync::Arc;

use phasegate::store::contract::{self, note, notify, started};
use phasegate::store::{Append, PostgresStore, SqliteStore, Store};

use crate::support::postgres::{self, Schema};

/// A fresh store in a schema of its own, dropped with the guard; `None` when the server cannot be
/// reached (said loudly).
async fn fresh() -> Option<(PostgresStore, Schema)> {
    let schema = postgres::schema().await?;
    let store = PostgresStore::connect(schema.options()).await.unwrap();
    Some((store, schema))
}

phasegate::store_contract!(optional fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_progress_is_there_after_closing_and_reopening() {
    let Some((store, schema)) = fresh().await else { return };
    let options = schema.options();
    contract::campaign_progress_is_there_after_reopening(store, async |store: PostgresStore| {
        store.close().await;
        PostgresStore::connect(options).await.unwrap()
    })
    .await;
}

/// The same events appended to SQLite and to PostgreSQL are stored as the same bytes with the same
/// hashes: an incident's log verifies the same way whichever database kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_events_have_the_same_hashes_in_both_backends() {
    let Some((postgres, _schema)) = fresh().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    let appends = || {
        vec![
            Append::new("inc-1", 0, &[started("inc-1", "breach", Some("alert-7")), note(1, "tills \"down\" é ✓")])
                .effects(&[notify("inc-1/page")]),
            Append::new("inc-1", 2, &[note(2, "contained")]).completes(Some("inc-1/page")),
        ]
    };
    for (first, second) in appends().into_iter().zip(appends()) {
        assert_eq!(sqlite.append(first).await.unwrap(), postgres.append(second).await.unwrap());
    }
    let from_sqlite = sqlite.chain("inc-1", 0, 100).await.unwrap();
    assert_eq!(from_sqlite.len(), 3);
    assert_eq!(postgres.chain("inc-1", 0, 100).await.unwrap(), from_sqlite);
    assert_eq!(postgres.incident("inc-1").await.unwrap(), sqlite.incident("inc-1").await.unwrap());
    sqlite.close().await;
}

/// The schema itself refuses what phasegate never does: an event out of order, not chained to its
/// incident's head, of no incident or not JSON, any change to a stored event, and the row of an
/// incident with events deleted, renamed or truncated, whoever asks (here a careless hand at the
/// `psql` prompt). Since migration 0005 the events' trigger checks what their CHECK constraints
/// and foreign key did, so each is asked here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_changes_to_the_log() {
    let Some((store, schema)) = fresh().await else { return };
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None), note(1, "a")])).await.unwrap();
    let head = store.incident("inc-1").await.unwrap().unwrap().head.unwrap();
    let mut connection = schema.connect().await;
    let previous = phasegate::audit::chain::from_hex(&head).unwrap();
    let not_json = "not json";
    let chained_not_json =
        phasegate::audit::chain::to_hex(&phasegate::audit::chain::link(&previous, 3, not_json.as_bytes()));
    let refused = [
        (
            "an event skipping a version",
            format!("INSERT INTO events VALUES ('inc-1', 4, 'note_added', 'x', '{{}}', '{head}')"),
        ),
        (
            "an event not chained to the head",
            format!("INSERT INTO events VALUES ('inc-1', 3, 'note_added', 'x', '{{}}', '{}')", "0".repeat(64)),
        ),
        (
            "an event of no incident",
            format!("INSERT INTO events VALUES ('inc-9', 1, 'note_added', 'x', '{{}}', '{}')", "0".repeat(64)),
        ),
        (
            "an event at version 0",
            format!("INSERT INTO events VALUES ('inc-1', 0, 'note_added', 'x', '{{}}', '{head}')"),
        ),
        ("an event changed", "UPDATE events SET event = '{\"forged\": true}' WHERE seq = 2".to_string()),
        ("an event deleted", "DELETE FROM events WHERE seq = 2".to_string()),
        ("the log emptied", "TRUNCATE events CASCADE".to_string()),
        ("an incident with events deleted", "DELETE FROM incidents WHERE id = 'inc-1'".to_string()),
        ("an incident renamed", "UPDATE incidents SET id = 'inc-2' WHERE id = 'inc-1'".to_string()),
        ("the incidents emptied", "TRUNCATE incidents CASCADE".to_string()),
    ];
    for (what, statement) in refused {
        let error = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await.expect_err(what);
        let code = error.as_database_error().and_then(|error| error.code()).unwrap_or_default().to_string();
        assert!(code.starts_with("23"), "{what}: refused as a constraint, not {error}");
    }
    // Chained to the head but not JSON: refused by the cast to JSON, as the CHECK did before 0005.
    let statement =
        format!("INSERT INTO events VALUES ('inc-1', 3, 'note_added', 'x', '{not_json}', '{chained_not_json}')");
    let error = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await.expect_err("not JSON");
    let code = error.as_database_error().and_then(|error| error.code()).unwrap_or_default().to_string();
    assert_eq!(code, "22P02", "an event not JSON: refused as invalid text, not {error}");
    let links = store.chain("inc-1", 0, 10).await.unwrap();
    assert_eq!(links.len(), 2, "nothing changed");
    assert_eq!(links[1].hash.as_deref(), Some(head.as_str()));
    assert_eq!(store.incident("inc-1").await.unwrap().unwrap().version, 2);
}

/// Two processes appending to one database (here two stores, each with its own writer): of two
/// appends at the same version one wins, whichever store took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_database_never_both_win() {
    let Some((first, schema)) = fresh().await else { return };
    let first = Arc::new(first);
    let second = Arc::new(PostgresStore::connect(schema.options()).await.unwrap());
    first.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    let mut version = 1;
    for round in 0..20 {
        let (a, b) = tokio::join!(
            first.append(Append::new("inc-1", version, &[note(round, "first")])),
            second.append(Append::new("inc-1", version, &[note(round, "second")])),
        );
        let won = [&a, &b].iter().filter(|result| result.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {a:?} {b:?}");
        version += 1;
    }
    // Each writer's cache of heads is behind after the other's wins; the triggers keep it honest.
    for store in [&first, &second] {
        let appended = store.append(Append::new("inc-1", version, &[note(99, "after")])).await.unwrap();
        version = appended;
    }
    let chain = first.chain("inc-1", 0, 100).await.unwrap();
    assert_eq!(chain.len() as u64, version);
    let mut prev = phasegate::audit::chain::GENESIS;
    for link in &chain {
        prev = phasegate::audit::chain::link(&prev, link.seq, link.event.as_bytes());
        assert_eq!(link.hash.as_deref(), Some(phasegate::audit::chain::to_hex(&prev).as_str()));
    }
}

/// Opened to read, a store refuses every write and changes nothing, down to its connections'
/// transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_to_read_refuses_writes() {
    let Some((store, schema)) = fresh().await else { return };
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    store.close().await;
    let reader = PostgresStore::connect_read_only(schema.options()).await.unwrap();
    assert_eq!(reader.events("inc-1").await.unwrap().len(), 1);
    let refused = reader.append(Append::new("inc-1", 1, &[note(1, "no")])).await;
    assert!(matches!(refused, Err(phasegate::store::Error::ReadOnly)), "{refused:?}");
    reader.close().await;

    let empty = postgres::schema().await.unwrap();
    let outdated = PostgresStore::connect_read_only(empty.options()).await;
    assert!(matches!(outdated, Err(phasegate::store::Error::Outdated(_))), "{outdated:?}");
}

/// Appends that queue while a commit waits share the next commits: a hundred new incidents held
/// behind a lock (another session's, on the incidents' table) are stored in at most three
/// transactions (the one waiting, then batches of up to 64), not a hundred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_that_queue_share_commits() {
    use sqlx::Connection;
    let Some((store, schema)) = fresh().await else { return };
    let mut holder = schema.connect().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE").execute(&mut holder).await.unwrap();
    let before = store.commits();
    let ids: Vec<String> = (0..100).map(|n| format!("inc-{n}")).collect();
    // Each call queues its append before it is awaited (`Store::append`), so all hundred wait.
    let answers: Vec<_> =
        ids.iter().map(|id| store.append(Append::new(id, 0, &[started(id, "breach", None)]))).collect();
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    for answer in answers {
        assert_eq!(answer.await.unwrap(), 1);
    }
    let commits = store.commits() - before;
    assert!((1..=3).contains(&commits), "{commits} commits for 100 appends");
    assert_eq!(store.incidents().await.unwrap().len(), 100);
    holder.close().await.unwrap();
}

/// A batch stored together keeps every rule of appends stored one by one: held behind a lock on
/// the events' table, twenty appends queue and are taken as one batch; the one that expects a
/// stale version is refused with the conflict, the one completing an effect its incident never
/// queued is refused as invalid, each alone, and the others (an effect queued among them, and an
/// incident's second append after its first) are stored, chained, in at most two commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_in_a_batch_is_refused_alone() {
    use phasegate::store::Error;
    use sqlx::Connection;
    let Some((store, schema)) = fresh().await else { return };
    let ids: Vec<String> = (0..10).map(|n| format!("inc-{n}")).collect();
    for id in &ids {
        store.append(Append::new(id, 0, &[started(id, "breach", None)])).await.unwrap();
    }
    let mut holder = schema.connect().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE").execute(&mut holder).await.unwrap();
    let before = store.commits();
    // Each call queues its append before it is awaited (`Store::append`).
    let mut answers: Vec<_> =
        ids.iter().map(|id| store.append(Append::new(id, 1, &[note(1, &format!("{id} one"))]))).collect();
    answers.push(store.append(Append::new("inc-5", 9, &[note(2, "stale")])));
    answers.push(store.append(Append::new("inc-7", 2, &[note(2, "seven")]).completes(Some("inc-7/unknown"))));
    answers.push(store.append(Append::new("inc-8", 2, &[note(2, "eight two")])));
    answers.push(store.append(Append::new("inc-9", 2, &[note(2, "paged")]).effects(&[notify("inc-9/page")])));
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let mut results = Vec::new();
    for answer in answers {
        results.push(answer.await);
    }
    for (id, result) in ids.iter().zip(&results) {
        assert_eq!(result.as_ref().ok(), Some(&2), "{id}: {result:?}");
    }
    let stale = &results[10];
    assert!(
        matches!(stale, Err(Error::Conflict { incident, expected: 9, actual: 2 }) if incident == "inc-5"),
        "{stale:?}"
    );
    assert!(matches!(&results[11], Err(Error::Invalid { incident, .. }) if incident == "inc-7"), "{:?}", results[11]);
    assert_eq!(results[12].as_ref().ok(), Some(&3));
    assert_eq!(results[13].as_ref().ok(), Some(&3));
    let commits = store.commits() - before;
    assert!((1..=2).contains(&commits), "{commits} commits for 14 appends");
    let versions: Vec<u64> = store.incidents().await.unwrap().iter().map(|summary| summary.version).collect();
    assert_eq!(versions, [2, 2, 2, 2, 2, 2, 2, 2, 3, 3], "the refused appends changed nothing");
    let pending: Vec<String> = store.pending_effects(10).await.unwrap().into_iter().map(|p| p.effect.id).collect();
    assert_eq!(pending, ["inc-9/page"], "the effect is queued with its append");
    for id in &ids {
        let chain = store.chain(id, 0, 10).await.unwrap();
        let mut prev = phasegate::audit::chain::GENESIS;
        for link in &chain {
            prev = phasegate::audit::chain::link(&prev, link.seq, link.event.as_bytes());
            assert_eq!(link.hash.as_deref(), Some(phasegate::audit::chain::to_hex(&prev).as_str()), "{id}");
        }
        assert_eq!(store.incident(id).await.unwrap().unwrap().head, chain.last().and_then(|link| link.hash.clone()));
    }
    holder.close().await.unwrap();
}
