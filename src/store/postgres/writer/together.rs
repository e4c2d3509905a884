//! A batch of appends stored together: one statement per table for the whole batch (the new
//! incidents, the deliveries, the events, the effects, the completions), each a round trip to
//! the server, instead of one or more per append. What the appends write is the same as one by
//! one, in the same order for each incident, so the schema's triggers check every event as usual.
//!
//! A batch of events alone (the usual one: notes, approvals, results) is one `INSERT` and no
//! transaction around it: a statement alone is a transaction of its own, all of it or nothing,
//! and it commits as durably as any, so it costs one round trip, as `pgbench`'s one-`INSERT`
//! script does. Received deliveries alone are one statement too.
//!
//! It is the hopeful path: if anything is refused, nothing of the batch is stored and the writer
//! stores it again write by write (`Writer::commit`), which finds which append was refused and
//! why and still stores the others.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;

use chrono::Utc;

use super::super::super::rows::{self, AppendRows, EventRow};
use super::super::signed;
use super::{Answers, Failed, Receive, Writer};
use crate::audit::chain::{self, GENESIS, Hash};

/// The events of a batch, in arrays, each with its incident and hash.
#[derive(Default)]
struct Events<'a> {
    incidents: Vec<&'a str>,
    seqs: Vec<i64>,
    kinds: Vec<&'static str>,
    times: Vec<&'a str>,
    jsons: Vec<&'a str>,
    hashes: Vec<String>,
}

impl<'a> Events<'a> {
    fn push(&mut self, incident: &'a str, event: &'a EventRow, hash: String) {
        self.incidents.push(incident);
        self.seqs.push(signed(event.seq));
        self.kinds.push(event.kind);
        self.times.push(&event.at);
        self.jsons.push(&event.json);
        self.hashes.push(hash);
    }

    /// Inserts them in one statement. Each incident's events go in the order given (the trigger
    /// checks each against the one before); the incidents in the order of their ids, so that two
    /// processes writing the same incidents lock their rows in the same order and never wait for
    /// each other in a circle.
    async fn insert(&self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO events (incident, seq, type, at, event, hash)
             SELECT incident, seq, type, at, event, hash
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
                 WITH ORDINALITY AS given (incident, seq, type, at, event, hash, n)
             ORDER BY incident, n",
        )
        .bind(&self.incidents)
        .bind(&self.seqs)
        .bind(&self.kinds)
        .bind(&self.times)
        .bind(&self.jsons)
        .bind(&self.hashes)
        .execute(connection)
        .await?;
        Ok(())
    }
}

impl Writer {
    /// Stores `receives` and `appends` together and answers them, or `None` when something was
    /// refused or failed: then nothing of the batch is stored.
    pub(super) async fn commit_together(&mut self, receives: &[Receive], appends: &[&AppendRows]) -> Option<Answers> {
        let now = rows::timestamp(Utc::now());
        let stored = self.commit_together_or_fail(receives, appends, &now).await;
        if stored.is_none() {
            // What this writer knew of these incidents may be what another process moved on.
            for rows in appends {
                self.heads.remove(&rows.incident);
            }
        }
        stored
    }

    async fn commit_together_or_fail(
        &mut self,
        receives: &[Receive],
        appends: &[&AppendRows],
        now: &str,
    ) -> Option<Answers> {
        let (events, heads) = self.chain_together(appends).await?;
        let only_events = appends.iter().all(|rows| rows.statements() == usize::from(!rows.events.is_empty()));
        let received = if receives.is_empty() && only_events {
            events.insert(&mut self.connection).await.ok()?;
            Vec::new()
        } else if appends.is_empty() {
            self.receive(receives).await.ok()?
        } else {
            sqlx::query("BEGIN").execute(&mut self.connection).await.ok()?;
            match self.write_together(receives, appends, &events, now).await {
                Ok(Some(received)) => {
                    sqlx::query("COMMIT").execute(&mut self.connection).await.ok()?;
                    received
                }
                Ok(None) | Err(_) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut self.connection).await;
                    return None;
                }
            }
        };
        self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.remember(heads);
        Some(Answers { receives: received, jobs: appends.iter().map(|rows| Ok(rows.version())).collect() })
    }

    /// The batch's events chained, each append from its incident's head as the batch leaves it so
    /// far, and the heads the batch leaves; `None` when an append does not follow its incident's
    /// version (or starts one the batch started already), which the careful path explains.
    async fn chain_together<'a>(
        &mut self,
        appends: &[&'a AppendRows],
    ) -> Option<(Events<'a>, HashMap<String, (u64, Hash)>)> {
        let unknown: Vec<&str> = appends
            .iter()
            .filter(|rows| rows.start.is_none() && self.known_head(&rows.incident).is_none())
            .map(|rows| rows.incident.as_str())
            .collect();
        let mut heads = self.stored_heads(&unknown).await?;
        // An effect completed before the append that queues it would be refused one by one.
        let queued: HashMap<&str, usize> = appends
            .iter()
            .enumerate()
            .flat_map(|(index, rows)| rows.effects.iter().map(move |effect| (effect.id.as_str(), index)))
            .collect();
        let mut events = Events::default();
        for (index, rows) in appends.iter().enumerate() {
            if rows.completes.as_deref().and_then(|id| queued.get(id)).is_some_and(|queuer| *queuer > index) {
                return None;
            }
            let incident = rows.incident.as_str();
            let known = match &rows.start {
                Some(_) if heads.contains_key(incident) => return None,
                Some(_) => (0, GENESIS),
                None => heads.get(incident).copied().or_else(|| self.known_head(incident))?,
            };
            if known.0 != rows.expected {
                return None;
            }
            let mut head = known.1;
            for event in &rows.events {
                head = chain::link(&head, event.seq, event.json.as_bytes());
                events.push(incident, event, chain::to_hex(&head));
            }
            heads.insert(rows.incident.clone(), (rows.version(), head));
        }
        Some((events, heads))
    }

    /// The stored versions and heads of `incidents`, in one statement. One whose head is not a
    /// hash, or missing after events, is left out, for the careful path to report.
    async fn stored_heads(&mut self, incidents: &[&str]) -> Option<HashMap<String, (u64, Hash)>> {
        if incidents.is_empty() {
            return Some(HashMap::new());
        }
        let stored: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT id, version, head FROM incidents WHERE id = ANY($1)")
                .bind(incidents)
                .fetch_all(&mut self.connection)
                .await
                .ok()?;
        Some(
            stored
                .into_iter()
                .filter_map(|(incident, version, head)| {
                    let head = match head {
                        Some(head) => chain::from_hex(&head)?,
                        None if version == 0 => GENESIS,
                        None => return None,
                    };
                    Some((incident, (u64::try_from(version).ok()?, head)))
                })
                .collect(),
        )
    }

    /// Writes the batch inside the open transaction: the received deliveries, the new incidents,
    /// the deliveries taken, the events, the effects, the completions; `None` when a completion
    /// finds no effect to complete.
    async fn write_together(
        &mut self,
        receives: &[Receive],
        appends: &[&AppendRows],
        events: &Events<'_>,
        now: &str,
    ) -> Result<Option<Vec<bool>>, Failed> {
        let received = if receives.is_empty() { Vec::new() } else { self.receive(receives).await? };
        let connection = &mut self.connection;
        let starts: Vec<_> =
            appends.iter().filter_map(|rows| Some((rows.incident.as_str(), rows.start.as_ref()?))).collect();
        if !starts.is_empty() {
            let (ids, runbooks, keys, times) =
                unzip4(starts.iter().map(|(id, start)| {
                    (*id, start.runbook_id.as_str(), start.key.as_deref(), start.started_at.as_str())
                }));
            sqlx::query(
                "INSERT INTO incidents (id, runbook_id, key, started_at, updated_at)
                 SELECT id, runbook_id, key, started_at, started_at
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                     AS given (id, runbook_id, key, started_at, n)
                 ORDER BY n",
            )
            .bind(&ids)
            .bind(&runbooks)
            .bind(&keys)
            .bind(&times)
            .execute(&mut *connection)
            .await?;
        }
        let deliveries = appends.iter().flat_map(|rows| {
            rows.deliveries
                .iter()
                .map(|(source, id, at)| (source.as_str(), id.as_str(), rows.incident.as_str(), at.as_str()))
        });
        let (sources, ids, incidents, times): (Vec<&str>, Vec<&str>, Vec<&str>, Vec<&str>) = unzip4(deliveries);
        if !sources.is_empty() {
            sqlx::query(
                "INSERT INTO deliveries (source, id, incident, received_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
            )
            .bind(&sources)
            .bind(&ids)
            .bind(&incidents)
            .bind(&times)
            .execute(&mut *connection)
            .await?;
        }
        events.insert(&mut *connection).await?;
        let (ids, incidents, effects): (Vec<&str>, Vec<&str>, Vec<&str>) = appends
            .iter()
            .flat_map(|rows| {
                rows.effects.iter().map(|effect| (effect.id.as_str(), rows.incident.as_str(), effect.json.as_str()))
            })
            .fold(
                (Vec::new(), Vec::new(), Vec::new()),
                |(mut ids, mut incidents, mut effects), (id, incident, effect)| {
                    ids.push(id);
                    incidents.push(incident);
                    effects.push(effect);
                    (ids, incidents, effects)
                },
            );
        if !ids.is_empty() {
            // In the order given, which is the outbox's order.
            sqlx::query(
                "INSERT INTO outbox (id, incident, effect, created_at)
                 SELECT id, incident, effect, $1 FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                     AS given (id, incident, effect, n)
                 ORDER BY n",
            )
            .bind(now)
            .bind(&ids)
            .bind(&incidents)
            .bind(&effects)
            .execute(&mut *connection)
            .await?;
        }
        let (ids, incidents, tokens): (Vec<&str>, Vec<&str>, Vec<Option<i64>>) = unzip3(
            appends
                .iter()
                .filter_map(|rows| Some((rows.completes.as_deref()?, rows.incident.as_str(), rows.token.map(signed)))),
        );
        if !ids.is_empty() {
            // Every completion must find its effect, and a claimed one its latest claim's token
            // (claims.rs): fewer rows changed than completions named means one names an effect
            // its incident never queued (or one is named twice, or it completes an effect queued
            // in this batch), or its lease was taken over, which the careful path tells apart.
            let completed = sqlx::query(
                "UPDATE outbox SET done_at = coalesce(done_at, $1)
                 FROM unnest($2::text[], $3::text[], $4::bigint[]) AS given (id, incident, token)
                 WHERE outbox.id = given.id AND outbox.incident = given.incident
                   AND (given.token IS NULL OR outbox.token = given.token)",
            )
            .bind(now)
            .bind(&ids)
            .bind(&incidents)
            .bind(&tokens)
            .execute(&mut *connection)
            .await?;
            if completed.rows_affected() != ids.len() as u64 {
                return Ok(None);
            }
        }
        Ok(Some(received))
    }
}

/// Three columns out of rows of three.
fn unzip3<A, B, C>(rows: impl Iterator<Item = (A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (first, second, third) in rows {
        a.push(first);
        b.push(second);
        c.push(third);
    }
    (a, b, c)
}

/// Four columns out of rows of four.
fn unzip4<A, B, C, D>(rows: impl Iterator<Item = (A, B, C, D)>) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (first, second, third, fourth) in rows {
        a.push(first);
        b.push(second);
        c.push(third);
        d.push(fourth);
    }
    (a, b, c, d)
}
