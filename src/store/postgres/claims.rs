//! Leases on the outbox's effects, in the database (migration 0002), so that every process
//! sharing it keeps to them: a claim is one statement, its own short transaction, that takes the
//! oldest effects no one holds (or whose lease ran out) with `FOR UPDATE SKIP LOCKED`, so that
//! replicas claiming at once each take other rows instead of waiting for each other, and gives
//! each a new token from the `fence` sequence. Lease times are the database's clock, the one all
//! replicas share. The writer completes a claimed effect only with its latest token
//! (`writer.rs`).
//!
//! Named leases (migration 0003: the inbox, each incident's ticks) follow the same rules in a
//! table of their own, one row per name, claimed by one statement that inserts the names never
//! claimed and takes those whose lease ran out, skipping rows another transaction has locked. A
//! write under a claim ([`holds`]) locks the claim's row until its transaction ends, so a claim
//! skips it rather than take it over while the write is under way.

use std::time::Duration;

use sqlx::postgres::PgPool;

use super::super::rows;
use super::super::{Claimed, Error, Fence, Lease, PendingEffect};
use super::{signed, signed_size, unsigned};

/// Claims up to `limit` effects for `holder` for `lease`, oldest first.
pub(super) async fn claim(pool: &PgPool, holder: &str, limit: usize, lease: Duration) -> Result<Vec<Claimed>, Error> {
    let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "UPDATE outbox SET holder = $1, lease_until = now() + make_interval(secs => $3), token = nextval('fence')
         WHERE seq IN (
             SELECT seq FROM outbox
             WHERE done_at IS NULL AND (lease_until IS NULL OR lease_until < now())
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED
         )
         RETURNING seq, incident, effect, token",
    )
    .bind(holder)
    .bind(signed_size(limit))
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut claimed = rows
        .into_iter()
        .map(|(seq, incident, effect, token)| {
            let pending = PendingEffect { effect: rows::decode_effect(&incident, &effect)?, incident };
            Ok((seq, Claimed { pending, token: unsigned(token)? }))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    claimed.sort_by_key(|(seq, _)| *seq);
    Ok(claimed.into_iter().map(|(_, claimed)| claimed).collect())
}

/// Extends `holder`'s leases with these tokens; returns those it still holds.
pub(super) async fn renew(pool: &PgPool, holder: &str, tokens: &[u64], lease: Duration) -> Result<Vec<u64>, Error> {
    let tokens: Vec<i64> = tokens.iter().map(|token| signed(*token)).collect();
    let mut renewed: Vec<i64> = sqlx::query_scalar(
        "UPDATE outbox SET lease_until = now() + make_interval(secs => $3)
         WHERE holder = $1 AND token = ANY($2) AND done_at IS NULL
         RETURNING token",
    )
    .bind(holder)
    .bind(&tokens)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    renewed.sort_unstable();
    renewed.into_iter().map(unsigned).collect()
}

/// Why an append carrying a token could not complete effect `id`: another claim took it over,
/// or the incident has no such effect.
pub(super) async fn lost(connection: &mut sqlx::PgConnection, incident: &str, id: &str) -> Result<Error, Error> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT seq FROM outbox WHERE id = $1 AND incident = $2")
        .bind(id)
        .bind(incident)
        .fetch_optional(connection)
        .await?;
    Ok(match exists {
        Some(_) => Error::LeaseLost { incident: incident.to_string(), effect: id.to_string() },
        None => Error::Invalid {
            incident: incident.to_string(),
            problem: format!("it has no effect `{id}` in the outbox to complete"),
        },
    })
}

/// Claims for `holder` those of `names` that no one holds, whose lease ran out, or that it holds
/// already: a lease of its own with more than two thirds of `lease` left is kept as it is (no
/// write), one with less is renewed with its token, and one taken anew gets a new token. Takes
/// anew only as many as keep its leases among `names` at `most` or fewer (the first by name), its
/// own kept whatever their number. Returns the leases of `names` it holds, in the order of
/// `names`.
pub(super) async fn claim_named(
    pool: &PgPool,
    holder: &str,
    names: &[String],
    lease: Duration,
    most: usize,
) -> Result<Vec<Lease>, Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "WITH wanted AS (SELECT DISTINCT name FROM unnest($2::text[]) AS given (name)),
         mine AS (
             SELECT count(*) AS held FROM leases JOIN wanted USING (name)
             WHERE leases.holder = $1 AND leases.lease_until >= now()
         ),
         absent AS (
             SELECT name FROM wanted WHERE NOT EXISTS (SELECT 1 FROM leases WHERE leases.name = wanted.name)
         ),
         free AS (
             SELECT leases.name, leases.holder = $1 AND leases.lease_until >= now() AS own
             FROM leases JOIN wanted USING (name)
             WHERE leases.lease_until < now()
                OR (leases.holder = $1 AND leases.lease_until < now() + make_interval(secs => $3 * 2 / 3))
             FOR UPDATE OF leases SKIP LOCKED
         ),
         anew AS (
             SELECT name FROM (SELECT name FROM absent UNION ALL SELECT name FROM free WHERE NOT own) AS open
             ORDER BY name LIMIT greatest($4 - (SELECT held FROM mine), 0)
         ),
         new AS (
             INSERT INTO leases (name, holder, lease_until, token)
             SELECT name, $1, now() + make_interval(secs => $3), nextval('fence') FROM absent JOIN anew USING (name)
             ON CONFLICT (name) DO NOTHING
             RETURNING name, token
         ),
         taken AS (
             UPDATE leases SET holder = $1, lease_until = now() + make_interval(secs => $3),
                 token = CASE WHEN free.own THEN leases.token ELSE nextval('fence') END
             FROM free WHERE leases.name = free.name AND (free.own OR free.name IN (SELECT name FROM anew))
             RETURNING leases.name, leases.token
         ),
         kept AS (
             SELECT leases.name, leases.token FROM leases JOIN wanted USING (name)
             WHERE leases.holder = $1 AND leases.lease_until >= now() + make_interval(secs => $3 * 2 / 3)
         )
         SELECT name, token FROM new UNION ALL SELECT name, token FROM taken UNION ALL SELECT name, token FROM kept",
    )
    .bind(holder)
    .bind(names)
    .bind(lease.as_secs_f64())
    .bind(i64::try_from(most).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let mut held = rows
        .into_iter()
        .map(|(name, token)| Ok(Lease { name, token: unsigned(token)? }))
        .collect::<Result<Vec<_>, Error>>()?;
    held.sort_by_key(|lease| names.iter().position(|name| *name == lease.name));
    Ok(held)
}

/// How many named leases whose names begin with `prefix` are held now.
pub(super) async fn held_named(pool: &PgPool, prefix: &str) -> Result<usize, Error> {
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM leases WHERE starts_with(name, $1) AND lease_until >= now()")
            .bind(prefix)
            .fetch_one(pool)
            .await?;
    Ok(usize::try_from(held).unwrap_or(0))
}

/// Extends `holder`'s named leases with these tokens; returns those it still holds.
pub(super) async fn renew_named(
    pool: &PgPool,
    holder: &str,
    tokens: &[u64],
    lease: Duration,
) -> Result<Vec<u64>, Error> {
    let tokens: Vec<i64> = tokens.iter().map(|token| signed(*token)).collect();
    let mut renewed: Vec<i64> = sqlx::query_scalar(
        "UPDATE leases SET lease_until = now() + make_interval(secs => $3)
         WHERE holder = $1 AND token = ANY($2)
         RETURNING token",
    )
    .bind(holder)
    .bind(&tokens)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    renewed.sort_unstable();
    renewed.into_iter().map(unsigned).collect()
}

/// Whether `fence` is still its claim's latest token, inside the writer's transaction: the
/// claim's row is locked (`FOR SHARE`) until the transaction ends, so that a claim made meanwhile
/// skips it and a write under a claim is never stored after the claim was taken over.
pub(super) async fn holds(connection: &mut sqlx::PgConnection, fence: &Fence) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = match fence {
        Fence::Effect { id, token } => {
            sqlx::query_scalar("SELECT 1 FROM outbox WHERE id = $1 AND token = $2 AND done_at IS NULL FOR SHARE")
                .bind(id)
                .bind(signed(*token))
                .fetch_optional(connection)
                .await?
        }
        Fence::Lease { name, token } => {
            sqlx::query_scalar("SELECT 1 FROM leases WHERE name = $1 AND token = $2 FOR SHARE")
                .bind(name)
                .bind(signed(*token))
                .fetch_optional(connection)
                .await?
        }
    };
    Ok(found.is_some())
}
