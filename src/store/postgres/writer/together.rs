//! A batch of appends stored together: one statement per table for the whole batch (the new
//! incidents, the deliveries, the events, the effects, the completions), each a round trip to
//! the server, instead of one or more per append. What the appends write is the same as one by
//! one, in the same order for each incident, so the schema's triggers check every event as usual.
//!
//! A batch of events alone (the usual one: notes, approvals, results) is one `INSERT` and no
//! transaction around it: a statement alone is a transaction of its own, all of it or nothing,
//! and it commits as durably as any, so it costs one round trip, as `pgbench`'s one-`INSERT`
//! script does. Events with the effects they queue (a step's start) are one statement too, the
//! effects' `INSERT` beside the events' in a `WITH`, and so are received deliveries alone.
//!
//! It is the hopeful path: if anything is refused, nothing of the batch is stored and the writer
//! stores it again write by write (`Writer::commit`), which finds which append was refused and
//! why and still stores the others.

use std::collections::HashMap;

use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgConnection};

use chrono::Utc;

use super::super::super::Fence;
use super::super::super::rows::{self, AppendRows, EventRow};
use super::super::signed;
use super::{Answers, Failed, Receive, Writer};
use crate::audit::chain::{self, GENESIS, Hash};

/// The rows of the events a batch inserts, from its arrays in the order given: `$1` to `$6`.
macro_rules! events_given {
    () => {
        "SELECT incident, seq, type, at, event, hash
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
             WITH ORDINALITY AS given (incident, seq, type, at, event, hash, n)"
    };
}

/// The effects a batch queues, inserted in the order given (the outbox's order): the time `$7`,
/// then the arrays `$8` to `$10`.
macro_rules! effects_given {
    () => {
        "INSERT INTO outbox (id, incident, effect, created_at)
         SELECT id, incident, effect, $7 FROM unnest($8::text[], $9::text[], $10::text[])
             WITH ORDINALITY AS given (id, incident, effect, n)"
    };
}

/// `held (claims)`: how many of the batch's claims still carry their tokens (named leases: names
/// and tokens; effects: ids and tokens, not yet done), their rows locked (`FOR SHARE`) until the
/// statement's transaction ends, so that a claim made meanwhile skips them (`claims.rs`).
macro_rules! held {
    ($names:literal, $tokens:literal, $effects:literal, $effect_tokens:literal) => {
        concat!(
            "held AS (SELECT
                 (SELECT count(*) FROM (
                      SELECT 1 FROM leases JOIN unnest(",
            $names,
            "::text[], ",
            $tokens,
            "::bigint[]) AS fence (name, token)
                          ON leases.name = fence.name AND leases.token = fence.token
                      FOR SHARE OF leases) AS locked)
               + (SELECT count(*) FROM (
                      SELECT 1 FROM outbox JOIN unnest(",
            $effects,
            "::text[], ",
            $effect_tokens,
            "::bigint[]) AS fence (id, token)
                          ON outbox.id = fence.id AND outbox.token = fence.token
                      WHERE outbox.done_at IS NULL
                      FOR SHARE OF outbox) AS locked) AS claims)"
        )
    };
}

/// The claims a batch of appends is written under, each once.
#[derive(Default)]
struct Fences<'a> {
    names: Vec<&'a str>,
    tokens: Vec<i64>,
    effects: Vec<&'a str>,
    effect_tokens: Vec<i64>,
}

impl<'a> Fences<'a> {
    fn of(appends: &[&'a AppendRows]) -> Fences<'a> {
        let mut fences = Fences::default();
        let mut seen: Vec<&Fence> = Vec::new();
        for fence in appends.iter().filter_map(|rows| rows.under.as_ref()) {
            if seen.contains(&fence) {
                continue;
            }
            seen.push(fence);
            match fence {
                Fence::Lease { name, token } => {
                    fences.names.push(name);
                    fences.tokens.push(signed(*token));
                }
                Fence::Effect { id, token } => {
                    fences.effects.push(id);
                    fences.effect_tokens.push(signed(*token));
                }
            }
        }
        fences
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.effects.is_empty()
    }

    /// How many claims: `held` must count as many.
    fn count(&self) -> i64 {
        (self.names.len() + self.effects.len()) as i64
    }

    /// Whether every claim still carries its token, inside the open transaction, their rows
    /// locked until it ends.
    async fn held(&self, connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
        if self.is_empty() {
            return Ok(true);
        }
        let claims: i64 =
            sqlx::query_scalar(concat!("WITH ", held!("$1", "$2", "$3", "$4"), " SELECT claims FROM held"))
                .bind(&self.names)
                .bind(&self.tokens)
                .bind(&self.effects)
                .bind(&self.effect_tokens)
                .fetch_one(connection)
                .await?;
        Ok(claims == self.count())
    }
}

/// A statement with its arguments, before they are all bound.
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

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

    /// `query` with the events' arrays bound, as `$1` to `$6` (the order `events_given!` reads).
    fn bound<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.incidents)
            .bind(&self.seqs)
            .bind(&self.kinds)
            .bind(&self.times)
            .bind(&self.jsons)
            .bind(&self.hashes)
    }

    /// Inserts them in one statement. Each incident's events go in the order given (the trigger
    /// checks each against the one before); the incidents in the order of their ids, so that two
    /// processes writing the same incidents wait for each other's events at the primary key in the
    /// same order, never in a circle.
    ///
    /// One event alone (one incident appending at a time) is a plain `INSERT ... VALUES`: the
    /// server's work for the arrays, the function scan and the sort was more than a third of
    /// what it did for the whole append (counted in BENCHMARKS.md).
    async fn insert(&self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        match self.seqs.len() {
            0 => return Ok(()),
            1 => {
                sqlx::query(
                    "INSERT INTO events (incident, seq, type, at, event, hash) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(self.incidents[0])
                .bind(self.seqs[0])
                .bind(self.kinds[0])
                .bind(self.times[0])
                .bind(self.jsons[0])
                .bind(&self.hashes[0])
                .execute(connection)
                .await?;
                return Ok(());
            }
            _ => {}
        }
        self.bound(sqlx::query(concat!(
            "INSERT INTO events (incident, seq, type, at, event, hash) ",
            events_given!(),
            " ORDER BY incident, n"
        )))
        .execute(connection)
        .await?;
        Ok(())
    }

    /// [`Events::insert`] under `fences`, in the same statement: the claims' rows are locked
    /// (`FOR SHARE`) until it commits, and the events are inserted only if every claim still
    /// carries its token. Whether they were: when not, nothing was written.
    async fn insert_under(&self, connection: &mut PgConnection, fences: &Fences<'_>) -> Result<bool, sqlx::Error> {
        let inserted = self
            .bound(sqlx::query(concat!(
                "WITH ",
                held!("$7", "$8", "$9", "$10"),
                " INSERT INTO events (incident, seq, type, at, event, hash) ",
                events_given!(),
                " WHERE (SELECT claims FROM held) = $11 ORDER BY incident, n"
            )))
            .bind(&fences.names)
            .bind(&fences.tokens)
            .bind(&fences.effects)
            .bind(&fences.effect_tokens)
            .bind(fences.count())
            .execute(connection)
            .await?;
        Ok(inserted.rows_affected() == self.seqs.len() as u64)
    }

    /// Inserts them and `effects` in one statement: the events as [`Events::insert`] does, the
    /// effects in the order given, which is the outbox's order. A statement alone is a
    /// transaction of its own, so both are stored or neither, in one round trip instead of four
    /// (`BEGIN`, the events, the effects, `COMMIT`).
    ///
    /// Under `fences`, as [`Events::insert_under`]: both are inserted only if every claim still
    /// carries its token. Whether they were: when not, nothing was written.
    async fn insert_with_effects(
        &self,
        connection: &mut PgConnection,
        effects: &Effects<'_>,
        now: &str,
        fences: &Fences<'_>,
    ) -> Result<bool, sqlx::Error> {
        let query = match fences.is_empty() {
            true => sqlx::query(concat!(
                "WITH stored AS (INSERT INTO events (incident, seq, type, at, event, hash) ",
                events_given!(),
                " ORDER BY incident, n) ",
                effects_given!(),
                " ORDER BY n"
            )),
            false => sqlx::query(concat!(
                "WITH ",
                held!("$11", "$12", "$13", "$14"),
                ", stored AS (INSERT INTO events (incident, seq, type, at, event, hash) ",
                events_given!(),
                " WHERE (SELECT claims FROM held) = $15 ORDER BY incident, n) ",
                effects_given!(),
                " WHERE (SELECT claims FROM held) = $15 ORDER BY n"
            )),
        };
        let inserted = self.bound(query).bind(now).bind(&effects.ids).bind(&effects.incidents).bind(&effects.jsons);
        let inserted = match fences.is_empty() {
            true => inserted,
            false => inserted
                .bind(&fences.names)
                .bind(&fences.tokens)
                .bind(&fences.effects)
                .bind(&fences.effect_tokens)
                .bind(fences.count()),
        };
        let inserted = inserted.execute(connection).await?;
        // The effects' count: the events' `INSERT` stores all or, its fences lost, none alike.
        Ok(inserted.rows_affected() == effects.ids.len() as u64)
    }
}

/// The effects a batch queues, in arrays, each with its incident, in the order given.
#[derive(Default)]
struct Effects<'a> {
    ids: Vec<&'a str>,
    incidents: Vec<&'a str>,
    jsons: Vec<&'a str>,
}

impl<'a> Effects<'a> {
    fn of(appends: &[&'a AppendRows]) -> Effects<'a> {
        let mut effects = Effects::default();
        for rows in appends {
            for effect in &rows.effects {
                effects.ids.push(&effect.id);
                effects.incidents.push(&rows.incident);
                effects.jsons.push(&effect.json);
            }
        }
        effects
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
        let fences = Fences::of(appends);
        let only_events = appends.iter().all(|rows| rows.statements() == usize::from(!rows.events.is_empty()));
        let events_and_effects =
            appends.iter().all(|rows| rows.start.is_none() && rows.deliveries.is_empty() && rows.completes.is_none());
        let received = if receives.is_empty() && only_events && fences.is_empty() {
            events.insert(&mut self.connection).await.ok()?;
            Vec::new()
        } else if receives.is_empty() && only_events {
            // Not stored, a claim lost: the careful path says which.
            events.insert_under(&mut self.connection, &fences).await.ok()?.then_some(())?;
            Vec::new()
        } else if receives.is_empty() && events_and_effects {
            let effects = Effects::of(appends);
            events.insert_with_effects(&mut self.connection, &effects, now, &fences).await.ok()?.then_some(())?;
            Vec::new()
        } else if appends.is_empty() {
            self.receive(receives).await.ok()?
        } else {
            sqlx::query("BEGIN").execute(&mut self.connection).await.ok()?;
            let written = match fences.held(&mut self.connection).await {
                Ok(true) => self.write_together(receives, appends, &events, now).await,
                Ok(false) => Ok(None),
                Err(error) => Err(error.into()),
            };
            match written {
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
            sqlx::query_as("SELECT id, version, head FROM incident_heads WHERE id = ANY($1)")
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
                "INSERT INTO incidents (id, runbook_id, key, started_at)
                 SELECT id, runbook_id, key, started_at
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
        let Effects { ids, incidents, jsons: effects } = Effects::of(appends);
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
