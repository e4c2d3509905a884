//! A batch of appends stored together: one statement per table for the whole batch (the new
//! incidents, the deliveries, the events, the effects, the completions) instead of one or more
//! per append, each of which is a round trip to SQLite's thread. What the appends write is the
//! same as one by one, in the same order, so the schema's triggers check every event as usual.
//!
//! It is the hopeful path: if anything is refused, the batch is rolled back and the writer stores
//! it again append by append (`Writer::commit`), which finds which append was refused and why and
//! still stores the others.

use std::collections::HashMap;

use sqlx::QueryBuilder;
use sqlx::query_builder::Separated;
use sqlx::sqlite::Sqlite;

use super::super::super::Error;
use super::super::signed;
use super::{CampaignJob, Failed, Queued, Writer};
use crate::audit::chain::{self, GENESIS, Hash};

/// Rows per statement: well within SQLite's limit on a statement's parameters (32,766) for the
/// widest row here (six).
const ROWS_PER_STATEMENT: usize = 1_000;

impl Writer {
    /// Stores `batch` in one transaction, a statement per table, then the campaign writes (each
    /// undone alone if refused), and answers each append's version and each campaign write;
    /// `None` when an append was refused (nothing is stored, and the careful path will say
    /// what). A database failure of a campaign write, or to end the transaction, is an error.
    pub(super) async fn commit_together(
        &mut self,
        batch: &[Queued],
        campaigns: &[CampaignJob],
        now: &str,
    ) -> Result<Option<(Vec<u64>, Vec<Result<(), Error>>)>, Failed> {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut self.connection).await?;
        match self.write_together(batch, now).await {
            Ok(Some(heads)) => {
                let campaigned = self.write_campaigns(campaigns).await?;
                sqlx::query("COMMIT").execute(&mut self.connection).await?;
                for (incident, head) in heads {
                    self.remember_head(&incident, head);
                }
                Ok(Some((batch.iter().map(|append| append.rows.version()).collect(), campaigned)))
            }
            Ok(None) | Err(_) => {
                sqlx::query("ROLLBACK").execute(&mut self.connection).await?;
                Ok(None)
            }
        }
    }

    /// Writes the batch inside the open transaction, and gives the heads it leaves (`None` when
    /// an append does not follow its incident's version).
    async fn write_together(
        &mut self,
        batch: &[Queued],
        now: &str,
    ) -> Result<Option<HashMap<String, (u64, Hash)>>, sqlx::Error> {
        // Each incident's version and head as the batch leaves them, so far, and the events with
        // their hashes, chained in the batch's order from each incident's head.
        let mut heads: HashMap<String, (u64, Hash)> = HashMap::new();
        let mut events = Vec::new();
        for append in batch {
            let rows = &append.rows;
            let incident = rows.incident.as_str();
            // What the append follows: nothing for a new incident (a second start in the batch is
            // for the careful path to refuse), else the version and head the batch or the
            // database has, which must be the version it expects.
            let known = match (&rows.start, heads.get(incident).or_else(|| self.heads.get(incident))) {
                (Some(_), _) if heads.contains_key(incident) => return Ok(None),
                (Some(_), _) => None,
                (None, Some(&known)) => Some(known),
                (None, None) => self.stored_head(incident).await?,
            };
            if rows.start.is_none() && known.is_none_or(|(version, _)| version != rows.expected) {
                return Ok(None);
            }
            let mut head = known.map_or(GENESIS, |(_, head)| head);
            for event in &rows.events {
                head = chain::link(&head, event.seq, event.json.as_bytes());
                events.push((incident, event, chain::to_hex(&head)));
            }
            heads.insert(incident.to_string(), (rows.version(), head));
        }

        let starts: Vec<_> =
            batch.iter().filter_map(|append| Some((&append.rows.incident, append.rows.start.as_ref()?))).collect();
        insert(
            &mut self.connection,
            "INSERT INTO incidents (id, runbook_id, key, started_at) ",
            &starts,
            |row, (incident, start)| {
                row.push_bind(incident.as_str())
                    .push_bind(start.runbook_id.as_str())
                    .push_bind(start.key.as_deref())
                    .push_bind(start.started_at.as_str());
            },
        )
        .await?;

        let deliveries: Vec<_> = batch
            .iter()
            .flat_map(|append| append.rows.deliveries.iter().map(|delivery| (&append.rows.incident, delivery)))
            .collect();
        insert(
            &mut self.connection,
            "INSERT INTO deliveries (source, id, incident, received_at) ",
            &deliveries,
            |row, (incident, (source, id, received_at))| {
                row.push_bind(source.as_str())
                    .push_bind(id.as_str())
                    .push_bind(incident.as_str())
                    .push_bind(received_at.as_str());
            },
        )
        .await?;

        insert(
            &mut self.connection,
            "INSERT INTO events (incident, seq, type, at, event, hash) ",
            &events,
            |row, (incident, event, hash)| {
                row.push_bind(*incident)
                    .push_bind(signed(event.seq))
                    .push_bind(event.kind)
                    .push_bind(event.at.as_str())
                    .push_bind(event.json.as_str())
                    .push_bind(hash.as_str());
            },
        )
        .await?;

        let effects: Vec<_> = batch
            .iter()
            .flat_map(|append| append.rows.effects.iter().map(|effect| (&append.rows.incident, effect)))
            .collect();
        insert(
            &mut self.connection,
            "INSERT INTO outbox (id, incident, effect, created_at) ",
            &effects,
            |row, (incident, effect)| {
                row.push_bind(effect.id.as_str())
                    .push_bind(incident.as_str())
                    .push_bind(effect.json.as_str())
                    .push_bind(now);
            },
        )
        .await?;

        // Every completion must find its effect: fewer rows changed than completions named means
        // one names an effect its incident never queued (or one is named twice), which the
        // careful path tells apart.
        let completions: Vec<_> = batch
            .iter()
            .filter_map(|append| Some((append.rows.incident.as_str(), append.rows.completes.as_deref()?)))
            .collect();
        for chunk in completions.chunks(ROWS_PER_STATEMENT) {
            let mut update = QueryBuilder::<Sqlite>::new("UPDATE outbox SET done_at = coalesce(done_at, ");
            update.push_bind(now).push(") WHERE (id, incident) IN (VALUES ");
            let mut values = update.separated(", ");
            for (incident, id) in chunk {
                values
                    .push("(")
                    .push_bind_unseparated(*id)
                    .push_unseparated(", ")
                    .push_bind_unseparated(*incident)
                    .push_unseparated(")");
            }
            update.push(")");
            if update.build().execute(&mut self.connection).await?.rows_affected() != chunk.len() as u64 {
                return Ok(None);
            }
        }
        Ok(Some(heads))
    }

    /// An incident's stored version and head, if it exists.
    async fn stored_head(&mut self, incident: &str) -> Result<Option<(u64, Hash)>, sqlx::Error> {
        let stored: Option<(i64, Option<String>)> =
            sqlx::query_as(stored_head!()).bind(incident).fetch_optional(&mut self.connection).await?;
        // A head that is not a hash, or missing after events, is for the careful path to report.
        Ok(stored.and_then(|(version, head)| match head {
            Some(head) => Some((u64::try_from(version).ok()?, chain::from_hex(&head)?)),
            None if version == 0 => Some((0, GENESIS)),
            None => None,
        }))
    }
}

/// Inserts `rows` with `statement` (`INSERT INTO table (columns) `), a thousand rows at a time.
async fn insert<T>(
    connection: &mut sqlx::SqliteConnection,
    statement: &str,
    rows: &[T],
    mut bind: impl FnMut(&mut Separated<'_, Sqlite, &'static str>, &T),
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(statement);
        insert.push_values(chunk, |mut row, item| bind(&mut row, item));
        insert.build().execute(&mut *connection).await?;
    }
    Ok(())
}
