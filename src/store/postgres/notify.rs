//! Replicas waking each other: after a commit that adds work (an effect in the outbox, a received
//! delivery), the store sends `NOTIFY phasegate_work`, and every replica LISTENing rings its
//! loops' bell. Both are optional: a replica polls every few seconds whatever it hears, so a lost
//! notification, or notifications switched off, only makes it slower.
//!
//! The traps this keeps out of: NOTIFY takes a lock that serializes commits across the database,
//! so it is never sent inside the append's transaction, but afterwards on a connection of its
//! own, at most once per [`AT_MOST_EVERY`] however many appends asked for it; and the listening
//! connection never begins a transaction, so an idle listener never holds back vacuum.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, watch};

use super::super::Error;

/// The channel replicas notify and listen on.
const CHANNEL: &str = "phasegate_work";

/// The most often one store sends a notification.
const AT_MOST_EVERY: Duration = Duration::from_millis(50);

/// A store's notifications, once started ([`Notifications::start`]).
#[derive(Debug)]
pub(super) struct Notifications {
    /// Poked after a commit that added work; the sender task sends one NOTIFY for any number of
    /// pokes made while it waited.
    poked: Arc<Notify>,
    /// Counts the notifications heard (and the connection's losses): each change is a wake-up.
    bell: watch::Receiver<u64>,
}

impl Notifications {
    /// Connects a listener and starts the tasks that listen and send.
    pub(super) async fn start(options: &PgConnectOptions) -> Result<Notifications, Error> {
        // A pool of one, which the listener uses to connect again when its connection is lost.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let (ring, bell) = watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    // A notification, or the connection lost (and made again on the next call):
                    // either way, look for work.
                    Ok(_) => ring.send_modify(|rung| *rung += 1),
                    Err(error) => {
                        tracing::warn!(%error, "listening for other replicas' work failed; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                if ring.is_closed() {
                    return;
                }
            }
        });
        let poked = Arc::new(Notify::new());
        let waiting = Arc::clone(&poked);
        let sending = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        tokio::spawn(async move {
            loop {
                waiting.notified().await;
                if Arc::strong_count(&waiting) == 1 {
                    return;
                }
                if let Err(error) = sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&sending).await {
                    tracing::warn!(%error, "other replicas could not be notified of new work; they will find it polling");
                }
                tokio::time::sleep(AT_MOST_EVERY).await;
            }
        });
        Ok(Notifications { poked, bell })
    }

    /// Says that a commit added work: a notification goes out soon.
    pub(super) fn poke(&self) {
        self.poked.notify_one();
    }

    /// A receiver whose every change means work may be waiting.
    pub(super) fn bell(&self) -> watch::Receiver<u64> {
        self.bell.clone()
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        // The sender task sees it is the last holder and ends.
        self.poked.notify_one();
    }
}
