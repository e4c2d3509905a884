//! The writer's side of the webhook inbox: which received deliveries are new, and marking them
//! applied.

use std::collections::HashSet;

use chrono::Utc;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

use super::super::super::Error;
use super::super::super::rows;
use super::super::signed;
use super::{Receive, Writer};

/// The deliveries received and not yet applied, as the writer knows them. The inbox has no index
/// on delivery ids (migration 0005: with random ids it cost a page written per delivery), so a
/// delivery is new when it is neither among these nor in `received`, where the ids of applied
/// deliveries are kept. At most the inbox's limit of waiting deliveries, so it stays small.
pub(in crate::store::sqlite) struct Waiting {
    keys: HashSet<(String, String)>,
    /// The inbox's newest `seq` when the keys were last known complete. Each insert checks it is
    /// still the newest, so that deliveries another connection added meanwhile are not missed.
    newest: i64,
}

/// What an insert added to the inbox, kept once its transaction has committed.
#[derive(Default)]
pub(super) struct Added {
    keys: Vec<(String, String)>,
    newest: Option<i64>,
}

impl Waiting {
    /// Reads the waiting deliveries' ids.
    pub(in crate::store::sqlite) async fn read(connection: &mut SqliteConnection) -> Result<Waiting, Error> {
        // The newest first: a delivery added before it is read next (or is applied, and in
        // `received`); one added after it makes the next insert's check fail and read again.
        let newest: i64 =
            sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM inbox").fetch_one(&mut *connection).await?;
        let keys: Vec<(String, String)> =
            sqlx::query_as("SELECT source, id FROM inbox WHERE applied_at IS NULL").fetch_all(&mut *connection).await?;
        Ok(Waiting { keys: keys.into_iter().collect(), newest })
    }

    pub(super) fn keep(&mut self, added: Added) {
        self.keys.extend(added.keys);
        if let Some(newest) = added.newest {
            self.newest = newest;
        }
    }
}

impl Writer {
    /// Inserts the received deliveries that are new, in one statement, and says which were: those
    /// already waiting (or twice in the batch) are known here, those applied before are skipped by
    /// the insert itself. Another connection that added to the inbox since the writer last looked
    /// fails the insert's check; then the waiting ids are read again, under the write lock, and the
    /// insert is tried again.
    pub(super) async fn receive(
        &mut self,
        receives: &[Receive],
        in_transaction: bool,
    ) -> Result<(Vec<Result<bool, Error>>, Added), Error> {
        if let Some(done) = self.try_receive(receives).await? {
            return Ok(done);
        }
        if !in_transaction {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut self.connection).await?;
        }
        self.waiting = Waiting::read(&mut self.connection).await?;
        let done = self.try_receive(receives).await?;
        if !in_transaction {
            sqlx::query("COMMIT").execute(&mut self.connection).await?;
        }
        done.ok_or_else(|| Error::Corrupt("the inbox changed while the writer held the write lock".into()))
    }

    /// One try of [`Writer::receive`]; `None` when another connection added to the inbox.
    async fn try_receive(&mut self, receives: &[Receive]) -> Result<Option<(Vec<Result<bool, Error>>, Added)>, Error> {
        let key = |receive: &Receive| (receive.source.clone(), receive.id.clone());
        // The first of two with one id in the batch may be new; the second finds it taken.
        let mut in_batch = HashSet::new();
        let candidates: Vec<usize> = (0..receives.len())
            .filter(|&at| {
                let key = key(&receives[at]);
                !self.waiting.keys.contains(&key) && in_batch.insert(key)
            })
            .collect();
        let mut added = Added::default();
        if !candidates.is_empty() {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO inbox (source, id, received_at, headers, body) \
                 SELECT column1, column2, column3, column4, column5 FROM (",
            );
            insert.push_values(candidates.iter().map(|&at| &receives[at]), |mut row, receive| {
                row.push_bind(&receive.source)
                    .push_bind(&receive.id)
                    .push_bind(&receive.received_at)
                    .push_bind(&receive.headers)
                    .push_bind(&receive.body);
            });
            insert.push(
                ") AS arrived WHERE NOT EXISTS \
                 (SELECT 1 FROM received WHERE received.source = arrived.column1 AND received.id = arrived.column2) \
                 AND (SELECT coalesce(max(seq), 0) FROM inbox) = ",
            );
            insert.push_bind(self.waiting.newest);
            let done = insert.build().execute(&mut self.connection).await?;
            let inserted = usize::try_from(done.rows_affected()).unwrap_or(usize::MAX);
            added.keys = if inserted == candidates.len() {
                in_batch.into_iter().collect()
            } else if inserted == 0 {
                // Every one was applied before, unless the check failed.
                let newest: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM inbox")
                    .fetch_one(&mut self.connection)
                    .await?;
                if newest != self.waiting.newest {
                    return Ok(None);
                }
                Vec::new()
            } else {
                // Some were applied before: the rows just inserted say which were not.
                sqlx::query_as("SELECT source, id FROM inbox WHERE seq > ? AND seq <= ?")
                    .bind(self.waiting.newest)
                    .bind(done.last_insert_rowid())
                    .fetch_all(&mut self.connection)
                    .await?
            };
            if inserted > 0 {
                added.newest = Some(done.last_insert_rowid());
            }
        }
        let new: HashSet<&(String, String)> = added.keys.iter().collect();
        let mut answers = vec![false; receives.len()];
        for at in candidates {
            answers[at] = new.contains(&key(&receives[at]));
        }
        Ok(Some((answers.into_iter().map(Ok).collect(), added)))
    }

    /// Marks deliveries applied and lets go of their bodies and headers, and keeps their ids in `received`:
    /// a few hundred at a time, all in one transaction. They stop waiting once it commits.
    pub(super) async fn mark_applied(&mut self, outcomes: &[(u64, String)]) -> Result<(), Error> {
        let now = rows::timestamp(Utc::now());
        let mut transaction = self.connection.begin().await?;
        let mut done: Vec<(String, String)> = Vec::with_capacity(outcomes.len());
        for chunk in outcomes.chunks(500) {
            // In the index's order, so that its pages are each written once for the chunk.
            let mut keep = sqlx::QueryBuilder::new(
                "INSERT INTO received (source, id, seq) SELECT source, id, seq FROM inbox \
                 WHERE applied_at IS NULL AND seq IN ",
            );
            keep.push_tuples(chunk, |mut row, (seq, _)| {
                row.push_bind(signed(*seq));
            });
            keep.push(" ORDER BY source, id ON CONFLICT DO NOTHING");
            keep.build().execute(&mut *transaction).await?;
            let mut update = sqlx::QueryBuilder::new("UPDATE inbox SET applied_at = ");
            update.push_bind(&now).push(", outcome = done.column2, body = NULL, headers = NULL FROM (");
            update.push_values(chunk, |mut row, (seq, outcome)| {
                row.push_bind(signed(*seq)).push_bind(outcome);
            });
            update.push(") AS done WHERE inbox.seq = done.column1 AND inbox.applied_at IS NULL RETURNING source, id");
            done.extend(update.build_query_as::<(String, String)>().fetch_all(&mut *transaction).await?);
        }
        transaction.commit().await?;
        for key in &done {
            self.waiting.keys.remove(key);
        }
        Ok(())
    }
}
