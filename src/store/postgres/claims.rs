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

/// The processes present: the holders of the presence leases ([`super::super::PRESENCE`]) not
/// run out, found through the names' pattern index (migration 0006) given the parameters of
/// the prefix and its end ([`prefix_end`]). A common table expression of the statements below.
macro_rules! present {
    ($prefix:literal, $end:literal) => {
        concat!(
            "present AS (SELECT holder FROM leases WHERE name ~>=~ ",
            $prefix,
            " AND name ~<~ ",
            $end,
            " AND name = ",
            $prefix,
            " || holder AND lease_until >= now())"
        )
    };
}

/// Whether the lease in the row `leases` stands (is held): not run out, and, when it stands on
/// its holder's presence (`lease_until` infinite, [`Store::claim_leases_up_to`]), that presence
/// stands. Written on the row's own columns, so that a claim's `FOR UPDATE` checks it again on
/// a row another claim changed meanwhile.
///
/// [`Store::claim_leases_up_to`]: super::super::Store::claim_leases_up_to
macro_rules! stands {
    () => {
        "(leases.lease_until >= now() AND (leases.lease_until < 'infinity' OR leases.holder IN (SELECT holder FROM present)))"
    };
}

/// Claims for `holder` those of `names` that no one holds, whose lease ran out, or that it holds
/// already. With a `lease`, a lease of its own with more than two thirds of `lease` left is kept
/// as it is (no write), one with less is renewed with its token, and one taken anew gets a new
/// token. Without, the leases stand on the holder's presence (`lease_until` infinite, kept with
/// no write; see [`Store::claim_leases_up_to`]), and none is given to a holder whose presence
/// lease does not stand. Takes anew only as many as keep its leases among `names` at `most` or
/// fewer (the first by name), its own kept whatever their number. Returns the leases of `names`
/// it holds, in the order of `names`.
///
/// [`Store::claim_leases_up_to`]: super::super::Store::claim_leases_up_to
pub(super) async fn claim_named(
    pool: &PgPool,
    holder: &str,
    names: &[String],
    lease: Option<Duration>,
    most: usize,
) -> Result<Vec<Lease>, Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(concat!(
        "WITH wanted AS (SELECT DISTINCT name FROM unnest($2::text[]) AS given (name)),",
        present!("$5", "$6"),
        ",
         may AS (SELECT $3::float8 IS NOT NULL OR EXISTS (SELECT 1 FROM present WHERE holder = $1) AS may),
         mine AS (
             SELECT count(*) AS held FROM leases JOIN wanted USING (name) WHERE leases.holder = $1 AND ",
        stands!(),
        "),
         absent AS (
             SELECT name FROM wanted WHERE NOT EXISTS (SELECT 1 FROM leases WHERE leases.name = wanted.name)
         ),
         free AS (
             SELECT leases.name, leases.holder = $1 AND ",
        stands!(),
        " AS own
             FROM leases JOIN wanted USING (name)
             WHERE NOT ",
        stands!(),
        " OR (leases.holder = $1 AND CASE WHEN $3::float8 IS NULL THEN leases.lease_until < 'infinity'
                     ELSE leases.lease_until < now() + make_interval(secs => $3 * 2 / 3) END)
             FOR UPDATE OF leases SKIP LOCKED
         ),
         anew AS (
             SELECT name FROM (SELECT name FROM absent UNION ALL SELECT name FROM free WHERE NOT own) AS open
             ORDER BY name
             LIMIT CASE WHEN (SELECT may FROM may) THEN greatest($4 - (SELECT held FROM mine), 0) ELSE 0 END
         ),
         new AS (
             INSERT INTO leases (name, holder, lease_until, token)
             SELECT name, $1, coalesce(now() + make_interval(secs => $3), 'infinity'), nextval('fence')
             FROM absent JOIN anew USING (name)
             ON CONFLICT (name) DO NOTHING
             RETURNING name, token
         ),
         taken AS (
             UPDATE leases SET holder = $1, lease_until = coalesce(now() + make_interval(secs => $3), 'infinity'),
                 token = CASE WHEN free.own THEN leases.token ELSE nextval('fence') END
             FROM free
             WHERE leases.name = free.name AND (SELECT may FROM may)
                 AND (free.own OR free.name IN (SELECT name FROM anew))
             RETURNING leases.name, leases.token
         ),
         kept AS (
             SELECT leases.name, leases.token FROM leases JOIN wanted USING (name)
             WHERE leases.holder = $1 AND ",
        stands!(),
        " AND NOT CASE WHEN $3::float8 IS NULL THEN leases.lease_until < 'infinity'
                 ELSE leases.lease_until < now() + make_interval(secs => $3 * 2 / 3) END
         )
         SELECT name, token FROM new UNION ALL SELECT name, token FROM taken UNION ALL SELECT name, token FROM kept"
    ))
    .bind(holder)
    .bind(names)
    .bind(lease.map(|lease| lease.as_secs_f64()))
    .bind(i64::try_from(most).unwrap_or(i64::MAX))
    .bind(super::super::PRESENCE)
    .bind(prefix_end(super::super::PRESENCE))
    .fetch_all(pool)
    .await?;
    let mut held = rows
        .into_iter()
        .map(|(name, token)| Ok(Lease { name, token: unsigned(token)? }))
        .collect::<Result<Vec<_>, Error>>()?;
    held.sort_by_key(|lease| names.iter().position(|name| *name == lease.name));
    Ok(held)
}

/// The first string after every string that begins with `prefix`, in the byte order of the
/// names' pattern index: `prefix` with its last character the next one (`replica/` to
/// `replica0`), since UTF-8 keeps the order of characters in its bytes.
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // No string is after every string: only the empty prefix gets here.
    char::MAX.to_string().repeat(4)
}

/// How many named leases whose names begin with `prefix` stand now.
pub(super) async fn held_named(pool: &PgPool, prefix: &str) -> Result<usize, Error> {
    let held: i64 = sqlx::query_scalar(concat!(
        "WITH ",
        present!("$3", "$4"),
        " SELECT count(*) FROM leases WHERE name ~>=~ $1 AND name ~<~ $2 AND starts_with(name, $1) AND ",
        stands!()
    ))
    .bind(prefix)
    .bind(prefix_end(prefix))
    .bind(super::super::PRESENCE)
    .bind(prefix_end(super::super::PRESENCE))
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(held).unwrap_or(0))
}

/// Removes the leases whose names begin with `prefix` that nothing can need any more (see
/// [`Store::forget_leases`]): run out more than `ran_out_for` ago, or the lease of an incident
/// closed with no effect waiting in the outbox, unless claimed for a while not run out. Rows
/// locked by a write under them (`holds`, `FOR SHARE`) or by a claim are skipped, and a claim
/// made meanwhile skips the rows this locks: a lease removed is claimed again as a new row, with
/// a new token from `fence`, so a token from before never matches again. Each lease row looks
/// up its own incident through the primary key (a scalar subquery: an `EXISTS` was planned as a
/// hash of every closed incident, 85 ms against 5.5 ms for 3,000 leases among 100,000
/// incidents), and the pending effects come from the `outbox_pending` index: the closed
/// incidents and the effects done, which only accumulate, are never read as a whole.
///
/// [`Store::forget_leases`]: super::super::Store::forget_leases
pub(super) async fn forget_named(pool: &PgPool, prefix: &str, ran_out_for: Duration) -> Result<usize, Error> {
    let removed = sqlx::query(
        "DELETE FROM leases WHERE name IN (
             SELECT name FROM leases
             WHERE name ~>=~ $1 AND name ~<~ $2 AND starts_with(name, $1)
                 AND (lease_until < now() - make_interval(secs => $3)
                     OR (starts_with(name, $4) AND (leases.lease_until = 'infinity' OR leases.lease_until < now())
                         AND (SELECT incidents.closed_at FROM incidents
                              WHERE incidents.id = substr(leases.name, length($4) + 1)) IS NOT NULL
                         AND NOT EXISTS (
                             SELECT 1 FROM outbox
                             WHERE outbox.done_at IS NULL AND outbox.incident = substr(leases.name, length($4) + 1)
                         )))
             FOR UPDATE SKIP LOCKED
         )",
    )
    .bind(prefix)
    .bind(prefix_end(prefix))
    .bind(ran_out_for.as_secs_f64())
    .bind(super::super::INCIDENT)
    .execute(pool)
    .await?;
    Ok(usize::try_from(removed.rows_affected()).unwrap_or(usize::MAX))
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
