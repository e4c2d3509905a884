//! Leases kept in one process's memory: what the embedded store needs of
//! [`Store::claim_effects`](super::Store::claim_effects) and
//! [`Store::claim_leases`](super::Store::claim_leases). A SQLite file is written by one process
//! at a time that carries out effects, ticks incidents and applies the inbox (`serve` or `run`),
//! so its claims only need to keep that process's own loops apart, with the same rules as
//! PostgreSQL's leases in the database: a fencing token per claim, an expired lease taken over,
//! and a write under a claim (a result, a tick, a batch marked in flight) stored only with the
//! latest token. A claim that a write is on its way under is not taken over until the write is
//! answered, as a row locked by the writer's transaction is not in PostgreSQL.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::Either;

use super::rows::AppendRows;
use super::{Claimed, Error, Fence, PendingEffect};

/// The leases of one store, by effect id.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    state: Mutex<State>,
    /// Claims take turns, each reading the outbox after the one before has taken its effects,
    /// so that two at once do not read the same first effects and leave the next ones unclaimed.
    claiming: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// The last token given.
    token: u64,
    held: HashMap<String, Lease>,
    /// The named leases, by name.
    named: HashMap<String, Lease>,
    /// Effects completed with their token, and when: a claim whose read of the outbox began
    /// before then may still see them waiting, and must not claim them.
    done: HashMap<String, Instant>,
}

#[derive(Debug)]
struct Lease {
    holder: String,
    token: u64,
    until: Instant,
    /// Writes under this claim on their way to the writer (an append recording an effect's
    /// result among them): no one may claim it meanwhile.
    writing: u32,
    /// Whether it stands on its holder's presence lease rather than until `until`
    /// ([`Store::claim_leases_up_to`](super::Store::claim_leases_up_to)); renewed or let go, it
    /// stands until `until` again.
    tied: bool,
}

impl Lease {
    /// Whether another holder may take it now.
    fn free(&self, now: Instant) -> bool {
        self.writing == 0 && self.until < now
    }
}

impl State {
    /// Whether the named lease `lease` stands now: until its end, or, tied to its holder's
    /// presence, while that stands.
    fn stands(&self, lease: &Lease, now: Instant) -> bool {
        if !lease.tied {
            return lease.until >= now;
        }
        self.present(&lease.holder, now)
    }

    /// Whether `holder`'s presence lease stands now.
    fn present(&self, holder: &str, now: Instant) -> bool {
        let presence = self.named.get(&super::presence(holder));
        presence.is_some_and(|presence| presence.holder == holder && !presence.tied && presence.until >= now)
    }
}

impl Leases {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the leases are never poisoned")
    }

    /// How many effects are leased now: a claim reads that many more of the outbox, so that the
    /// effects it can take are among those it reads.
    fn held(&self) -> usize {
        self.state().held.len()
    }

    /// Claims for `holder` up to `limit` effects that no one holds or whose lease ran out, of
    /// those `read` gives (the outbox's first effects, up to the number it is asked for).
    pub(crate) async fn claim<F>(
        &self,
        read: impl FnOnce(usize) -> F,
        holder: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, Error>
    where
        F: Future<Output = Result<Vec<PendingEffect>, Error>>,
    {
        let _turn = self.claiming.lock().await;
        let read_at = Instant::now();
        let pending = read(limit.saturating_add(self.held())).await?;
        Ok(self.take(pending, read_at, holder, limit, lease))
    }

    /// Stores an append through `write`, checked first with [`Leases::completing`] when it
    /// records a claimed effect's result.
    pub(crate) fn append<'a, F>(
        &'a self,
        rows: Result<AppendRows, Error>,
        write: impl FnOnce(Result<AppendRows, Error>) -> F,
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a
    where
        F: Future<Output = Result<u64, Error>> + Send + 'a,
    {
        let checked = rows.and_then(|rows| {
            let holding = rows.under.as_ref().map(|fence| self.hold(fence, &rows.incident)).transpose()?;
            Ok((self.completing(&rows)?, holding, rows))
        });
        let (completing, holding, rows) = match checked {
            Ok((completing, holding, rows)) => (completing, holding, Ok(rows)),
            Err(refused) => (None, None, Err(refused)),
        };
        // Sent to the writer now, before the future is first polled (see `Store::append`).
        let written = write(rows);
        async move {
            let answer = written.await;
            if let Some(completing) = completing {
                completing.finish(answer.is_ok());
            }
            drop(holding);
            answer
        }
    }

    /// A write other than an append (`what` it writes) made through `write` under `under`: refused
    /// with [`Error::FenceLost`], and `write` not called, unless the claim is the latest; while it
    /// is on its way, no one takes the claim over.
    pub(crate) fn guarded<'a, T, F>(
        &'a self,
        under: Option<&Fence>,
        what: &str,
        write: impl FnOnce() -> F,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'a
    where
        F: Future<Output = Result<T, Error>> + Send + 'a,
        T: Send + 'a,
    {
        let holding = match under.map(|fence| self.hold(fence, what)).transpose() {
            Ok(holding) => holding,
            Err(refused) => return Either::Left(std::future::ready(Err(refused))),
        };
        // Sent to the writer now, before the future is first polled (see `Store::append`).
        let written = write();
        Either::Right(async move {
            let answer = written.await;
            drop(holding);
            answer
        })
    }

    /// Claims for `holder` those of the leases `names` that are free, expired or its own (see
    /// [`Store::claim_leases`](super::Store::claim_leases)), for `lease`, or, without, standing on
    /// its presence ([`Store::claim_leases_up_to`](super::Store::claim_leases_up_to): none when
    /// its presence does not stand), taking anew only as many as keep its leases among `names`
    /// at `most` or fewer; returns those it holds.
    pub(crate) fn claim_named(
        &self,
        holder: &str,
        names: &[String],
        lease: Option<Duration>,
        most: usize,
    ) -> Vec<super::Lease> {
        let now = Instant::now();
        let mut state = self.state();
        if lease.is_none() && !state.present(holder, now) {
            return Vec::new();
        }
        let mut held = Vec::new();
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        let mine = distinct
            .iter()
            .filter(|name| {
                state.named.get(**name).is_some_and(|lease| lease.holder == holder && state.stands(lease, now))
            })
            .count();
        let mut anew = most.saturating_sub(mine);
        let until = now + lease.unwrap_or_default();
        for name in names {
            if held.iter().any(|lease: &super::Lease| lease.name == *name) {
                continue;
            }
            let (standing, free) = match state.named.get(name) {
                Some(found) => (
                    found.holder == holder && state.stands(found, now),
                    found.writing == 0 && !state.stands(found, now),
                ),
                None => (false, true),
            };
            let token = match state.named.get_mut(name) {
                Some(mine) if standing => {
                    // Renewed, or tied to the presence; one tied already stays so.
                    if lease.is_some() && !mine.tied {
                        mine.until = until;
                    }
                    mine.tied |= lease.is_none();
                    mine.token
                }
                _ if !free || anew == 0 => continue,
                _ => {
                    anew -= 1;
                    state.token += 1;
                    let token = state.token;
                    let taken = Lease { holder: holder.to_string(), token, until, writing: 0, tied: lease.is_none() };
                    state.named.insert(name.clone(), taken);
                    token
                }
            };
            held.push(super::Lease { name: name.clone(), token });
        }
        held
    }

    /// How many named leases whose names begin with `prefix` stand now.
    pub(crate) fn named_held(&self, prefix: &str) -> usize {
        let now = Instant::now();
        let state = self.state();
        state.named.iter().filter(|(name, lease)| name.starts_with(prefix) && state.stands(lease, now)).count()
    }

    /// The incidents whose leases ([`super::INCIDENT`]), among the named leases whose names
    /// begin with `prefix`, [`Leases::forget_named`] would remove if they are finished (closed,
    /// nothing of theirs in the outbox): those not claimed for a while that still runs, with no
    /// write under way under them.
    pub(crate) fn incidents_to_forget(&self, prefix: &str) -> Vec<String> {
        let now = Instant::now();
        let state = self.state();
        state
            .named
            .iter()
            .filter(|(name, lease)| name.starts_with(prefix) && lease.writing == 0 && (lease.tied || lease.until < now))
            .filter_map(|(name, _)| name.strip_prefix(super::INCIDENT).map(str::to_string))
            .collect()
    }

    /// Removes the named leases whose names begin with `prefix` that nothing can need any more
    /// (see [`Store::forget_leases`](super::Store::forget_leases)): run out more than
    /// `ran_out_for` ago, or the lease of one of the `finished` incidents not claimed for a while
    /// that still runs; none with a write under way. Returns how many. A lease removed and
    /// claimed again gets a new token (the tokens only grow), so one from before never matches.
    pub(crate) fn forget_named(
        &self,
        prefix: &str,
        ran_out_for: Duration,
        finished: &std::collections::HashSet<String>,
    ) -> usize {
        let now = Instant::now();
        let mut state = self.state();
        let before = state.named.len();
        state.named.retain(|name, lease| {
            let ran_out_long_ago = !lease.tied && lease.until + ran_out_for < now;
            let finished = name.strip_prefix(super::INCIDENT).is_some_and(|incident| finished.contains(incident))
                && (lease.tied || lease.until < now);
            !name.starts_with(prefix) || lease.writing > 0 || !(ran_out_long_ago || finished)
        });
        before - state.named.len()
    }

    /// Extends `holder`'s named leases with these tokens; returns those it still holds.
    pub(crate) fn renew_named(&self, holder: &str, tokens: &[u64], lease: Duration) -> Vec<u64> {
        extend(self.state().named.values_mut(), holder, tokens, Instant::now() + lease)
    }

    /// Checks that `fence` is its claim's latest token and keeps the claim from being taken
    /// over until the returned [`Holding`] is dropped; [`Error::FenceLost`] otherwise.
    fn hold(&self, fence: &Fence, what: &str) -> Result<Holding<'_>, Error> {
        let mut state = self.state();
        let lease = match fence {
            Fence::Effect { id, token } => state.held.get_mut(id).filter(|held| held.token == *token),
            Fence::Lease { name, token } => state.named.get_mut(name).filter(|held| held.token == *token),
        };
        match lease {
            Some(lease) => {
                lease.writing += 1;
                Ok(Holding { leases: self, fence: fence.clone() })
            }
            None => Err(Error::FenceLost { guarding: fence.guarding().to_string(), write: what.to_string() }),
        }
    }

    /// Of `pending` (the outbox as read from `read_at` on), takes for `holder` up to `limit`
    /// effects that no one holds or whose lease ran out.
    fn take(
        &self,
        pending: Vec<PendingEffect>,
        read_at: Instant,
        holder: &str,
        limit: usize,
        lease: Duration,
    ) -> Vec<Claimed> {
        let now = Instant::now();
        let mut state = self.state();
        // Completed before the read began: the read did not see them waiting.
        state.done.retain(|_, completed| *completed >= read_at);
        let mut claimed = Vec::new();
        for pending in pending {
            if claimed.len() == limit {
                break;
            }
            let id = &pending.effect.id;
            let free = state.held.get(id).is_none_or(|held| held.free(now));
            if !free || state.done.contains_key(id) {
                continue;
            }
            state.token += 1;
            let token = state.token;
            let taken = Lease { holder: holder.to_string(), token, until: now + lease, writing: 0, tied: false };
            state.held.insert(id.clone(), taken);
            claimed.push(Claimed { pending, token });
        }
        claimed
    }

    /// Extends `holder`'s leases with these tokens; returns those it still holds.
    pub(crate) fn renew(&self, holder: &str, tokens: &[u64], lease: Duration) -> Vec<u64> {
        extend(self.state().held.values_mut(), holder, tokens, Instant::now() + lease)
    }

    /// Before an append that records a claimed effect's result goes to the writer: refuses it if
    /// its token is not the effect's latest claim, and otherwise keeps others from claiming the
    /// effect until [`Completing::finish`] says how the append went.
    fn completing(&self, rows: &AppendRows) -> Result<Option<Completing<'_>>, Error> {
        let Some(token) = rows.token else { return Ok(None) };
        let Some(effect) = &rows.completes else {
            let problem = "it carries a fencing token but completes no effect".to_string();
            return Err(Error::Invalid { incident: rows.incident.clone(), problem });
        };
        let mut state = self.state();
        match state.held.get_mut(effect) {
            Some(held) if held.token == token && held.writing == 0 => held.writing += 1,
            _ => return Err(Error::LeaseLost { incident: rows.incident.clone(), effect: effect.clone() }),
        }
        Ok(Some(Completing { leases: self, effect: effect.clone(), finished: false }))
    }
}

/// An effect whose result is on its way to the writer (see [`Leases::completing`]).
#[derive(Debug)]
struct Completing<'a> {
    leases: &'a Leases,
    effect: String,
    finished: bool,
}

impl Completing<'_> {
    /// The append was stored (the effect is done) or not (its lease stands as it was).
    fn finish(mut self, stored: bool) {
        self.finished = true;
        let mut state = self.leases.state();
        if stored {
            state.held.remove(&self.effect);
            state.done.insert(self.effect.clone(), Instant::now());
        } else if let Some(held) = state.held.get_mut(&self.effect) {
            held.writing = held.writing.saturating_sub(1);
        }
    }
}

impl Drop for Completing<'_> {
    /// An append whose answer nobody waited for may or may not be stored: the lease stands, and
    /// the outbox says whether the effect is done.
    fn drop(&mut self) {
        if !self.finished
            && let Some(held) = self.leases.state().held.get_mut(&self.effect)
        {
            held.writing = held.writing.saturating_sub(1);
        }
    }
}

/// A write on its way under a claim (see [`Leases::hold`]).
#[derive(Debug)]
struct Holding<'a> {
    leases: &'a Leases,
    fence: Fence,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let mut state = self.leases.state();
        let lease = match &self.fence {
            Fence::Effect { id, .. } => state.held.get_mut(id),
            Fence::Lease { name, .. } => state.named.get_mut(name),
        };
        if let Some(lease) = lease {
            lease.writing = lease.writing.saturating_sub(1);
        }
    }
}

/// Extends to `until` those of `leases` that `holder` holds with one of `tokens`: their tokens,
/// in order.
fn extend<'a>(leases: impl Iterator<Item = &'a mut Lease>, holder: &str, tokens: &[u64], until: Instant) -> Vec<u64> {
    let mut renewed: Vec<u64> = leases
        .filter(|held| held.holder == holder && tokens.contains(&held.token))
        .map(|held| {
            held.until = until;
            held.tied = false;
            held.token
        })
        .collect();
    renewed.sort_unstable();
    renewed
}
