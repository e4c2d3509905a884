//! Campaigns' progress in the SQLite store, beyond the shared contract: what only a file shows
//! (a close, a crash, SIGKILL) and what only its writer shows (campaign writes group-committed
//! with appends, and refused alone).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use phasegate::store::contract::{self, answer, at, note, plan, started, states};
use phasegate::store::{Append, BatchState, CampaignRefusal, Error, SqliteStore, Store};

use crate::store::sent_together;
use crate::support::wait_until;

const CAMPAIGN: &str = "inc-1/notify/customers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_progress_is_there_after_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phasegate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    contract::campaign_progress_is_there_after_reopening(store, async |store: SqliteStore| {
        store.close().await;
        SqliteStore::open(&path).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_progress_answered_is_there_after_dropping_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phasegate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    contract::campaign_progress_is_there_after_reopening(store, async |store: SqliteStore| {
        // Dropped without `close`, as a crash after the answers would leave it.
        drop(store);
        SqliteStore::open(&path).await.unwrap()
    })
    .await;
}

/// Campaign writes waiting together share one commit with the appends waiting with them, and
/// one refused (a second plan, an answered batch sent again, an answer of a batch not sent) is
/// undone alone: the others of its commit are stored.
#[tokio::test(flavor = "current_thread")]
async fn campaign_writes_share_a_commit_and_are_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap());
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    store.campaign_plan(CAMPAIGN, &plan(4, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1], at(1)).await.unwrap();
    store.campaign_answered(CAMPAIGN, &[answer(1, 2, 10, &[], vec![1; 64])]).await.unwrap();

    let (tasks, commits) = sent_together(&store, 7, || {
        [
            spawn(&store, async |store| store.campaign_sending(CAMPAIGN, &[2, 3], at(3)).await),
            spawn(&store, async |store| store.campaign_plan(CAMPAIGN, &plan(4, 10)).await),
            spawn(&store, async |store| {
                store.append(Append::new("inc-1", 1, &[note(3, "campaign half sent")])).await.map(|_| ())
            }),
            spawn(&store, async |store| store.campaign_sending(CAMPAIGN, &[4, 1], at(3)).await),
            spawn(&store, async |store| {
                store.campaign_answered(CAMPAIGN, &[answer(2, 4, 10, &[("c-2", "bounced")], vec![2; 64])]).await
            }),
            spawn(&store, async |store| store.campaign_answered(CAMPAIGN, &[answer(4, 4, 10, &[], vec![4; 64])]).await),
            spawn(&store, async |store| store.campaign_plan("inc-1/notify/partners", &plan(2, 5)).await),
        ]
    })
    .await;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(store.commits() - commits, 1, "one commit for the seven: {results:?}");
    let refusal = |result: &Result<(), Error>| match result {
        Ok(()) => None,
        Err(Error::Campaign { refusal, .. }) => Some(refusal.clone()),
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(
        results.iter().map(refusal).collect::<Vec<_>>(),
        [
            None,
            Some(CampaignRefusal::Planned),
            None,
            Some(CampaignRefusal::Answered(1)),
            None,
            Some(CampaignRefusal::NotSending(4)),
            None
        ]
    );
    assert_eq!(
        states(&*store, CAMPAIGN).await,
        [
            BatchState::Answered { attempts: 1, at: at(2), sent: 10, failed: 0 },
            BatchState::Answered { attempts: 1, at: at(4), sent: 9, failed: 1 },
            BatchState::Sending { attempts: 1, since: at(3) },
            BatchState::Planned,
        ]
    );
    assert_eq!(store.campaign_leaves(CAMPAIGN).await.unwrap(), [(1, vec![1; 64]), (2, vec![2; 64])]);
    assert_eq!(store.campaign_failures(CAMPAIGN).await.unwrap(), [(2, "c-2".to_string(), "bounced".to_string())]);
    assert_eq!(store.events("inc-1").await.unwrap().len(), 2);
    assert_eq!(store.campaigns("inc-1").await.unwrap().len(), 2);
}

/// Runs `write` on a task of its own, with the store.
fn spawn<F>(store: &Arc<SqliteStore>, write: impl FnOnce(Arc<SqliteStore>) -> F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(write(Arc::clone(store)))
}

/// Regression guard for group commit: a campaign with several batches in flight marks and answers
/// them in shared commits, not one each.
///
/// On a current-thread runtime the tasks send their writes one after another while the writer's
/// thread commits what it took first, so the writes waiting meanwhile go together.
#[tokio::test(flavor = "current_thread")]
async fn batches_in_flight_share_commits() {
    const IN_FLIGHT: u32 = 8;
    const ROUNDS: u32 = 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap());
    store.campaign_plan(CAMPAIGN, &plan(IN_FLIGHT * ROUNDS, 100)).await.unwrap();
    let commits = store.commits();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|lane| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let number = round * IN_FLIGHT + lane + 1;
                    store.campaign_sending(CAMPAIGN, &[number], at(1)).await.unwrap();
                    store.campaign_answered(CAMPAIGN, &[answer(number, 2, 100, &[], vec![7; 6_000])]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let writes = u64::from(IN_FLIGHT * ROUNDS * 2);
    let commits = store.commits() - commits;
    assert!(commits * 2 <= writes, "{commits} commits for {writes} writes");
    let progress = &store.campaigns("inc-1").await.unwrap()[0].1;
    assert_eq!((progress.answered, progress.sent), (IN_FLIGHT * ROUNDS, u64::from(IN_FLIGHT * ROUNDS * 100)));
}

/// The child of the test below: where its database is, and where it says it has marked the
/// batches in flight.
const CHILD_DATABASE: &str = "PHASEGATE_TEST_CAMPAIGN_DATABASE";
const CHILD_MARKED: &str = "PHASEGATE_TEST_CAMPAIGN_MARKED";

/// A campaign's process is killed with SIGKILL after it marked batches sending and before their
/// answers: reopened, the database has them sending (the possible repeats), the answered one
/// answered with its leaves, the rest planned. The test runs itself again as the child process,
/// which does the writes, says so in a file and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_marked_sending_is_sending_after_sigkill() {
    if let (Some(database), Some(marked)) = (std::env::var_os(CHILD_DATABASE), std::env::var_os(CHILD_MARKED)) {
        return child(Path::new(&database), Path::new(&marked)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (database, marked) = (dir.path().join("phasegate.db"), dir.path().join("marked"));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "store_campaigns::a_batch_marked_sending_is_sending_after_sigkill", "--nocapture"])
        .env(CHILD_DATABASE, &database)
        .env(CHILD_MARKED, &marked)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child_status = wait_until("the child to mark batches sending", Duration::from_secs(60), async || {
        if let Some(exited) = child.try_wait().unwrap() {
            return Some(Err(format!("the child stopped by itself: {exited}")));
        }
        marked.exists().then_some(Ok(()))
    })
    .await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    child_status.unwrap();
    assert!(!status.success(), "killed: {status}");

    let store = SqliteStore::open(&database).await.unwrap();
    assert_eq!(
        states(&store, CAMPAIGN).await,
        [
            BatchState::Answered { attempts: 1, at: at(2), sent: 10, failed: 0 },
            BatchState::Sending { attempts: 1, since: at(1) },
            BatchState::Sending { attempts: 1, since: at(3) },
            BatchState::Planned,
        ]
    );
    assert_eq!(store.campaign_leaves(CAMPAIGN).await.unwrap(), [(1, vec![1; 600])]);
    // Resumed: the possible repeats sent again, and answered.
    store.campaign_sending(CAMPAIGN, &[2, 3], at(4)).await.unwrap();
    store
        .campaign_answered(CAMPAIGN, &[answer(2, 5, 10, &[], vec![2; 600]), answer(3, 5, 10, &[], vec![3; 600])])
        .await
        .unwrap();
    assert_eq!(states(&store, CAMPAIGN).await[1], BatchState::Answered { attempts: 2, at: at(5), sent: 10, failed: 0 });
    store.close().await;
}

/// Plans, answers batch 1, marks 2 and 3 sending, says so, and waits to be killed.
async fn child(database: &Path, marked: &Path) {
    let store = SqliteStore::open(database).await.unwrap();
    store.campaign_plan(CAMPAIGN, &plan(4, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2], at(1)).await.unwrap();
    store.campaign_answered(CAMPAIGN, &[answer(1, 2, 10, &[], vec![1; 600])]).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[3], at(3)).await.unwrap();
    std::fs::write(marked, b"marked").unwrap();
    std::future::pending::<()>().await;
}

/// The schema itself keeps a batch moving forward and an answer's record as it was written, as
/// it keeps events: each statement below, run at the `sqlite3` prompt, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_to_move_a_campaign_back() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phasegate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.campaign_plan(CAMPAIGN, &plan(3, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2], at(1)).await.unwrap();
    store.campaign_answered(CAMPAIGN, &[answer(1, 2, 10, &[("c-1", "bounced")], vec![1; 64])]).await.unwrap();
    store.close().await;

    let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let refused = [
        "UPDATE campaign_batches SET state = 'sending', answered_at = NULL, sent = NULL, failed = NULL WHERE number = 1",
        "UPDATE campaign_batches SET attempts = 5 WHERE number = 1",
        "UPDATE campaign_batches SET state = 'planned', attempts = 0, since = NULL WHERE number = 2",
        "UPDATE campaign_batches SET state = 'answered', answered_at = 'now', sent = 10, failed = 0 WHERE number = 3",
        "UPDATE campaign_batches SET state = 'answered', answered_at = 'now', sent = 9, failed = 0 WHERE number = 2",
        "UPDATE campaign_batches SET attempts = 3, since = 'now' WHERE number = 2",
        "UPDATE campaign_batches SET recipients = 11 WHERE number = 3",
        "DELETE FROM campaign_batches WHERE number = 3",
        "INSERT INTO campaign_batches (campaign, number, start_byte, end_byte, first_line, skip, recipients)
             VALUES ('inc-1/notify/customers', 5, 0, 10, 2, '[]', 1)",
        "INSERT INTO campaign_batches (campaign, number, start_byte, end_byte, first_line, skip, recipients)
             VALUES ('inc-1/notify/customers', 4, 0, 10, 2, '[]', 1)",
        "UPDATE campaigns SET batches = 4",
        "DELETE FROM campaigns",
        "UPDATE campaign_failures SET reason = 'sent'",
        "DELETE FROM campaign_failures",
        "INSERT INTO campaign_failures (campaign, number, recipient, reason) VALUES ('inc-1/notify/customers', 2, 'c-9', 'x')",
        "UPDATE campaign_leaves SET leaves = X'00'",
        "DELETE FROM campaign_leaves",
        "INSERT INTO campaign_leaves (campaign, number, leaves) VALUES ('inc-1/notify/customers', 2, X'00')",
    ];
    for statement in refused {
        let result = sqlx::query(statement).execute(&mut connection).await;
        assert!(result.is_err(), "not refused: {statement}");
    }
    // What a resumed campaign does is still allowed.
    sqlx::query("UPDATE campaign_batches SET state = 'sending', attempts = 2, since = '2026-11-24T02:20:00.000000000Z' WHERE number = 2")
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.campaign_leaves(CAMPAIGN).await.unwrap(), [(1, vec![1; 64])]);
    assert_eq!(store.campaign_failures(CAMPAIGN).await.unwrap().len(), 1);
    let since = chrono::DateTime::parse_from_rfc3339("2026-11-24T02:20:00Z").unwrap().to_utc();
    assert_eq!(
        states(&store, CAMPAIGN).await,
        [
            BatchState::Answered { attempts: 1, at: at(2), sent: 9, failed: 1 },
            BatchState::Sending { attempts: 2, since },
            BatchState::Planned
        ]
    );
    store.close().await;
}
