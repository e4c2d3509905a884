//! `phasegate db copy`: a SQLite deployment moved into PostgreSQL, everything it holds, verified on
//! both sides with the same hashes; a target that is not empty, or that the database's user may
//! not write, is refused and nothing changes.

use std::path::Path;

use phasegate::runtime::audit;
use phasegate::store::contract::{answer, at, note, notify, plan, started};
use phasegate::store::{Append, Delivery, Headers, PostgresStore, SqliteStore, Store};
use sqlx::Connection;

use crate::support::Cli;
use crate::support::postgres::{self, Schema};

const CAMPAIGN: &str = "inc-1/notify/customers";

/// A SQLite file holding some of everything: two incidents (one closed, with a signed checkpoint
/// through its end), effects done and waiting, a delivery taken, webhook deliveries applied and
/// waiting, a campaign with batches planned, in flight (twice) and answered with failures and
/// leaves. The public key that checks the checkpoints is written beside it.
async fn source(dir: &Path) {
    let store = SqliteStore::open(dir.join("phasegate.db")).await.unwrap();
    let signer = audit::new_signer();
    std::fs::write(dir.join("key.pub"), signer.public().to_pem().unwrap()).unwrap();
    let taken = Delivery { source: "alertmanager".into(), id: "d-1".into(), received_at: at(1) };
    store
        .append(
            Append::new("inc-1", 0, &[started("inc-1", "breach", Some("alert-7")), note(1, "tills \"down\" é")])
                .effects(&[notify("inc-1/page"), notify("inc-1/status/1")])
                .delivered(&[taken]),
        )
        .await
        .unwrap();
    store.append(Append::new("inc-1", 2, &[note(2, "paged")]).completes(Some("inc-1/page"))).await.unwrap();
    let closed =
        phasegate::engine::Event::new(at(9), "dana", phasegate::engine::EventKind::IncidentClosed { abandoned: false });
    store
        .append(Append::new("inc-2", 0, &[started("inc-2", "ransomware", Some("alert-7")), note(3, "x"), closed]))
        .await
        .unwrap();
    for incident in ["inc-1", "inc-2"] {
        let summary = store.incident(incident).await.unwrap().unwrap();
        audit::sign_head(&store, &signer, &summary, at(10)).await.unwrap().expect("something to sign");
    }
    store.append(Append::new("inc-1", 3, &[note(11, "after the checkpoint")])).await.unwrap();
    let delivery = |id: &str| Delivery { source: "github".into(), id: id.into(), received_at: at(12) };
    let headers = Headers::from([("x-github-event".to_string(), "push".to_string())]);
    assert!(store.receive(&delivery("g-1"), &headers, b"{\"applied\": true}").await.unwrap());
    assert!(store.receive(&delivery("g-2"), &Headers::new(), b"\xff waiting").await.unwrap());
    let waiting = store.inbox(10, 1 << 20).await.unwrap();
    store.applied(&[(waiting[0].seq, "[\"note\"]".into())], None).await.unwrap();
    store.campaign_plan(CAMPAIGN, &plan(3, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2], at(13)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[2], at(14)).await.unwrap();
    store
        .campaign_answered(CAMPAIGN, &[answer(2, 15, 10, &[("r-7", "bounced"), ("r-3", "opted out")], vec![7; 40])])
        .await
        .unwrap();
    store.close().await;
}

fn copy(dir: &Path, schema: &Schema) -> Cli {
    Cli::new().current_dir(dir).args([
        "db",
        "copy",
        "--from",
        "phasegate.db",
        "--to",
        &schema.url(),
        "--public-key",
        "key.pub",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_is_copied_whole_and_verifies_the_same_in_postgres() {
    let Some(schema) = postgres::schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    source(dir.path()).await;

    copy(dir.path(), &schema)
        .succeeds()
        .stdout_has(
            "2 incident(s), 7 event(s), 2 checkpoint(s), 2 outbox effect(s), 1 delivery(ies) taken, \
         2 received webhook delivery(ies), 1 campaign(s) of 3 batch(es)",
        )
        .stdout_has(
            "verified: all 2 incident(s) verify in both, with the same events, hashes, checkpoints and summaries",
        );
    // As a user checks it: `audit verify` on the copy, with the key.
    Cli::new()
        .current_dir(dir.path())
        .args(["audit", "verify", "--all", "--public-key", "key.pub", "--db", &schema.url()])
        .succeeds()
        .stdout_has("inc-2: verified (3 events, 1 checkpoint");

    let from = SqliteStore::open_read_only(dir.path().join("phasegate.db")).await.unwrap();
    let to = PostgresStore::connect(schema.options()).await.unwrap();
    assert_eq!(to.incidents().await.unwrap(), from.incidents().await.unwrap());
    for incident in ["inc-1", "inc-2"] {
        assert_eq!(to.chain(incident, 0, 100).await.unwrap(), from.chain(incident, 0, 100).await.unwrap());
        assert_eq!(to.checkpoints(incident).await.unwrap(), from.checkpoints(incident).await.unwrap());
    }
    assert_eq!(to.pending_effects(10).await.unwrap(), from.pending_effects(10).await.unwrap());
    assert_eq!(to.delivery("alertmanager", "d-1").await.unwrap().as_deref(), Some("inc-1"));
    // The waiting delivery keeps its place, so its actions keep their ids.
    assert_eq!(to.inbox(10, 1 << 20).await.unwrap(), from.inbox(10, 1 << 20).await.unwrap());
    assert_eq!(to.receipt("github", "g-1").await.unwrap(), from.receipt("github", "g-1").await.unwrap());
    assert_eq!(to.campaign_batches(CAMPAIGN).await.unwrap(), from.campaign_batches(CAMPAIGN).await.unwrap());
    assert_eq!(to.campaign_failures(CAMPAIGN).await.unwrap(), from.campaign_failures(CAMPAIGN).await.unwrap());
    assert_eq!(to.campaign_leaves(CAMPAIGN).await.unwrap(), from.campaign_leaves(CAMPAIGN).await.unwrap());
    assert_eq!(to.campaigns("inc-1").await.unwrap(), from.campaigns("inc-1").await.unwrap());

    // The copy carries on where the file stopped: the next append, effect and delivery follow.
    assert_eq!(
        to.append(Append::new("inc-1", 4, &[note(20, "in postgres now")]).effects(&[notify("inc-1/next")]))
            .await
            .unwrap(),
        5
    );
    let pending: Vec<String> = to.pending_effects(10).await.unwrap().into_iter().map(|p| p.effect.id).collect();
    assert_eq!(pending, ["inc-1/status/1", "inc-1/next"]);
    assert!(
        to.receive(
            &Delivery { source: "github".into(), id: "g-3".into(), received_at: at(21) },
            &Headers::new(),
            b"{}"
        )
        .await
        .unwrap()
    );
    assert!(
        !to.receive(
            &Delivery { source: "github".into(), id: "g-1".into(), received_at: at(21) },
            &Headers::new(),
            b"{}"
        )
        .await
        .unwrap(),
        "an applied delivery is still known"
    );
    let waiting = to.inbox(10, 1 << 20).await.unwrap();
    assert!(waiting[0].seq < waiting[1].seq && waiting[0].actions < waiting[1].actions);
    to.close().await;
    from.close().await;

    // Again into the same database: refused, and nothing changes.
    let before = event_count(&schema).await;
    copy(dir.path(), &schema).status(2).stderr_has("it already holds 2 incident(s), 3 received webhook delivery(ies), 1 campaign(s); `db copy` copies only into an empty database (nothing was changed)");
    assert_eq!(event_count(&schema).await, before);
}

async fn event_count(schema: &Schema) -> i64 {
    let mut connection = schema.connect().await;
    let count = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    count
}

/// The database decides who may write it: a user who may not create phasegate's tables in the
/// schema is refused, with the database's reason, and the schema stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_user_without_the_right_to_write_is_refused() {
    let Some(schema) = postgres::schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    source(dir.path()).await;
    let role = format!("{}_reader", schema.name);
    let mut admin = schema.connect().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE \"{role}\" LOGIN"))).execute(&mut admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("GRANT USAGE ON SCHEMA \"{}\" TO \"{role}\"", schema.name)))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = postgres::url().replacen("://postgres@", &format!("://{role}@"), 1);
    let url = format!("{url}?options=-csearch_path%3D{}", schema.name);
    let refused = Cli::new()
        .current_dir(dir.path())
        .args(["db", "copy", "--from", "phasegate.db", "--to", &url, "--public-key", "key.pub"])
        .status(2)
        .stderr_has("permission denied for schema");
    drop(refused);
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
        .bind(&schema.name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(tables, 0, "nothing was created");
    sqlx::query(sqlx::AssertSqlSafe(format!("REVOKE ALL ON SCHEMA \"{}\" FROM \"{role}\"", schema.name)))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE \"{role}\""))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
}

/// A copy that fails halfway leaves the target as it was: here the source's second incident has
/// an event edited behind the log's back (its append-only trigger dropped first, as a careless
/// hand at the `sqlite3` prompt could), so the target's schema refuses it after the first
/// incident was copied. The error names the incident and its events, and the target schema holds
/// no table afterwards, not even empty ones, and takes a copy of an intact file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_refused_halfway_leaves_the_target_as_it_was() {
    let Some(schema) = postgres::schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    source(dir.path()).await;
    let mut file =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", dir.path().join("phasegate.db").display()))
            .await
            .unwrap();
    for statement in [
        "DROP TRIGGER events_are_never_changed",
        "UPDATE events SET event = replace(event, '\"x\"', '\"forged\"') WHERE incident = 'inc-2' AND seq = 2",
    ] {
        let done = sqlx::query(statement).execute(&mut file).await.unwrap();
        assert!(done.rows_affected() <= 1, "{statement}");
    }
    let forged: String = sqlx::query_scalar("SELECT event FROM events WHERE incident = 'inc-2' AND seq = 2")
        .fetch_one(&mut file)
        .await
        .unwrap();
    assert!(forged.contains("forged"), "the event was edited: {forged}");
    file.close().await.unwrap();

    copy(dir.path(), &schema)
        .status(2)
        .stderr_has("the database was left as it was")
        .stderr_has("the target refused events 1 to 3 of incident `inc-2`");
    let mut admin = schema.connect().await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
        .bind(&schema.name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(tables, 0, "no table was left behind, not even `inc-1`'s");
    admin.close().await.unwrap();

    // The same target then takes an intact file whole.
    let intact = tempfile::tempdir().unwrap();
    source(intact.path()).await;
    copy(intact.path(), &schema).succeeds().stdout_has("2 incident(s), 7 event(s)");
}

/// By hand, a first copy without `--public-key` printed "NOT VERIFIED" for every signed
/// checkpoint and exited 1, with nothing saying the copy was made nor how to check it: it says
/// both now (and still exits 1, since the signatures were not checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_without_a_key_says_it_is_made_and_how_to_check_its_signatures() {
    let Some(schema) = postgres::schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    source(dir.path()).await;
    Cli::new()
        .current_dir(dir.path())
        .args(["db", "copy", "--from", "phasegate.db", "--to", &schema.url()])
        .fails()
        .stdout_has("NOT VERIFIED: 0 of 2 incident(s) verify in both")
        .stdout_has("the copy is made (it is not undone); its checkpoints' signatures were not checked")
        .stdout_has("--public-key KEY.pub` with the database's URL, then with `--db phasegate.db`");
    Cli::new()
        .current_dir(dir.path())
        .args(["audit", "verify", "--all", "--public-key", "key.pub", "--db", &schema.url()])
        .succeeds()
        .stdout_has("inc-2: verified (3 events, 1 checkpoint");
}
