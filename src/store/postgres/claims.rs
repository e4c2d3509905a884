//! Leases on the outbox's effects, in the database (migration 0002), so that every process
//! sharing it keeps to them: a claim is one statement, its own short transaction, that takes the
//! oldest effects no one holds (or whose lease ran out) with `FOR UPDATE SKIP LOCKED`, so that
//! replicas claiming at once each take other rows instead of waiting for each other, and gives
//! each a new token from the `fence` sequence. Lease times are the database's clock, the one all
//! replicas share. The writer completes a claimed effect only with its latest token
//! (`writer.rs`).

use std::time::Duration;

use sqlx::postgres::PgPool;

use super::super::rows;
use super::super::{Claimed, Error, PendingEffect};
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
