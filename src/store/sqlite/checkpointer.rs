//! The checkpointer: copies what the WAL holds back into the database file, on a connection and a
//! thread of its own, so that the writer's commits do not wait for it.
//!
//! SQLite checkpoints by itself in whichever connection commits once the WAL is long enough
//! (`wal_autocheckpoint`), and that connection's commit waits meanwhile: here, the writer's, and
//! with it every caller waiting for a commit. A passive checkpoint from another connection copies
//! the same pages while the writer goes on appending to the WAL; the writer's own checkpoint stays
//! as a backstop, and finds the pages already copied when it comes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::oneshot;

/// How often the checkpointer looks whether the writer has committed since it last copied.
const INTERVAL: Duration = Duration::from_millis(50);

/// Checkpoints every [`INTERVAL`] while the writer commits, until `stop` is sent or dropped.
pub(super) async fn run(mut connection: SqliteConnection, commits: Arc<AtomicU64>, mut stop: oneshot::Receiver<()>) {
    let mut copied = commits.load(Ordering::Relaxed);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        let committed = commits.load(Ordering::Relaxed);
        if committed == copied {
            continue;
        }
        copied = committed;
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut connection).await {
            Ok(_) => failing = false,
            // The writer's own checkpoint still keeps the WAL in bounds; say so once, not every
            // interval while it lasts.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "the WAL could not be checkpointed beside the writer; the writer will");
            }
            Err(_) => {}
        }
    }
    let _ = connection.close().await;
}
