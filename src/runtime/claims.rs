//! Which of the outbox's effects this process carries out: those it claims
//! ([`Store::claim_effects`]), each under a lease it renews while the effect is under way, and
//! whose result it records with the claim's fencing token, so that several processes sharing one
//! database never carry out an effect at once and a process that paused past its lease records
//! nothing over the one that took the effect over (docs/replicas.md).
//!
//! The other shares of work are claimed the same way, as named leases
//! ([`Store::claim_leases`]): each open incident's ticks (its timers and checks) and the signing
//! of its head ([`incident_lease`]), and the webhook inbox ([`INBOX`]). A lease is kept while
//! this process lives (claiming it again renews it), so one process goes on ticking an incident
//! and another takes it over once the lease runs out; what is written under it carries its
//! fencing token ([`store::Fence`]).

use std::future::Future;
use std::time::{Duration, Instant};

use super::{Error, Runtime};
use crate::runbook::Templates;
use crate::store::{self, Fence, PendingEffect, Store};

/// How long a claim holds an effect unless renewed: how long a dead process's effects wait
/// before another takes them over. 12 s, so that with the others' poll (2 s) a dead replica's
/// work is taken over within 15 s (issue 16); with 15 s, the takeover bench measured 16 s.
pub const LEASE: Duration = Duration::from_secs(12);

/// The lease under which one process applies the webhook inbox, in the order received.
pub const INBOX: &str = "inbox";

/// The name of the lease under which one process ticks `incident` (its timers, its checks'
/// polls and deadlines, its retries) and signs its head.
pub fn incident_lease(incident: &str) -> String {
    store::incident_lease(incident)
}

/// How long ago a process's presence lease ([`store::presence`]) ran out before it is removed
/// (it is gone, or froze so long that it starts again as a newcomer): a few leases, so that one
/// removed is never one that a slow pass is about to renew.
const GONE: Duration = Duration::from_secs(60);

/// Incidents a process may hold above an even share: room for the shares to settle as incidents
/// open and close and processes come and go, without letting leases go and taking them back.
const SLACK: usize = 1;

/// Effects claimed at a time: each is carried out in turn, so a large page would leave the last
/// ones leased, and waiting, while the first are carried out.
const PAGE: usize = 8;

/// An effect to carry out, with the token it was claimed with (none in a runtime that owns its
/// store, which claims nothing), and when.
pub(super) struct Due {
    pub(super) pending: PendingEffect,
    pub(super) token: Option<u64>,
    claimed_at: Instant,
}

impl Due {
    /// The fence of what is written under this effect's claim while it is carried out (a
    /// campaign's batches and reports); none when it was not claimed.
    pub(super) fn fence(&self) -> Option<Fence> {
        self.token.map(|token| Fence::Effect { id: self.pending.effect.id.clone(), token })
    }
}

/// This process's name as a holder of leases: the host's process id and a random part, so that
/// a restarted process (which may get the same pid) is a new holder.
pub fn new_holder() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("pid{}-{}", std::process::id(), &random[..8])
}

impl<S: Store, T: Templates + Send + Sync> Runtime<S, T> {
    /// Replaces how long this runtime's claims last unless renewed ([`LEASE`]).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The name this runtime's claims are held under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The outbox's next effects for this runtime to carry out: claimed from the store, or, in a
    /// runtime that owns its store, from its own record.
    pub(super) async fn due_effects(&self) -> Result<Vec<Due>, Error> {
        let claimed_at = Instant::now();
        if let Some(owned) = self.owned() {
            let pending = owned.outbox.iter().take(256).cloned();
            return Ok(pending.map(|pending| Due { pending, token: None, claimed_at }).collect());
        }
        let claimed = self.store.claim_effects(&self.holder, PAGE, self.lease).await?;
        Ok(claimed
            .into_iter()
            .map(|claim| Due { pending: claim.pending, token: Some(claim.token), claimed_at })
            .collect())
    }

    /// Whether the claim on `due` still stands as its turn comes: renewed first when a third of
    /// its lease has passed since the claim (the effects before it took that long).
    pub(super) async fn still_held(&self, due: &Due) -> Result<bool, Error> {
        let Some(token) = due.token else { return Ok(true) };
        if due.claimed_at.elapsed() < self.lease / 3 {
            return Ok(true);
        }
        Ok(!self.store.renew_effects(&self.holder, &[token], self.lease).await?.is_empty())
    }

    /// Runs `work` (carrying out the effect claimed with `token`) while renewing the lease every
    /// third of it, so that a long effect is not taken over while it is under way.
    pub(super) async fn renewing<F: Future>(&self, token: Option<u64>, work: F) -> F::Output {
        let Some(token) = token else { return work.await };
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return output,
                () = tokio::time::sleep(self.lease / 3) => {
                    match self.store.renew_effects(&self.holder, &[token], self.lease).await {
                        Ok(held) if held.is_empty() => {
                            tracing::warn!(token, "an effect under way was taken over; its result will not be recorded");
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, token, "the lease of an effect under way could not be renewed"),
                    }
                }
            }
        }
    }

    /// Of `incidents`, those whose lease ([`incident_lease`]) this runtime holds now (claimed,
    /// or kept and renewed), each with the fence of what is written under it, in the order given.
    /// A runtime that owns its store claims nothing: every incident is its own, under no fence.
    pub(super) async fn incident_leases(&self, incidents: Vec<String>) -> Result<Vec<(String, Option<Fence>)>, Error> {
        if self.owned.is_some() {
            return Ok(incidents.into_iter().map(|incident| (incident, None)).collect());
        }
        let names: Vec<String> = incidents.iter().map(|incident| incident_lease(incident)).collect();
        let mut held: std::collections::HashMap<String, store::Lease> = self
            .store
            .claim_leases(&self.holder, &names, self.lease)
            .await?
            .into_iter()
            .map(|lease| (lease.name.clone(), lease))
            .collect();
        Ok(incidents
            .into_iter()
            .zip(names)
            .filter_map(|(incident, name)| held.remove(&name).map(|lease| (incident, Some(lease.fence()))))
            .collect())
    }

    /// Of the open `incidents`, those this runtime ticks (their leases, [`incident_lease`]): its
    /// share, so that several processes sharing the database tick and sign about as many each.
    /// The processes are counted by their presence leases ([`store::presence`]), this one's
    /// renewed first, and those of processes gone for [`GONE`] removed; a process takes free
    /// incidents only while it holds fewer than `ceil(open / processes)` + [`SLACK`], and lets go
    /// of those above that at once (when another process has come, or incidents closed), for the
    /// process that holds fewest to take at its next pass. An incident's lease stands as long as
    /// its holder's presence lease does ([`Store::claim_leases_up_to`]), so a pass renews one row,
    /// not one per incident; once a dead process's presence runs out, it is no longer counted and
    /// its incidents are free at the same moment, so the others' shares cover every open
    /// incident, and none waits longer than the lease for a new holder.
    pub(super) async fn incident_share(&self, incidents: Vec<String>) -> Result<Vec<(String, Option<Fence>)>, Error> {
        if self.owned.is_some() {
            return Ok(incidents.into_iter().map(|incident| (incident, None)).collect());
        }
        self.keep_present().await?;
        self.store.forget_leases(store::PRESENCE, GONE).await?;
        self.forget_finished().await?;
        let processes = self.store.leases_held(store::PRESENCE).await?.max(1);
        let share = incidents.len().div_ceil(processes) + SLACK;
        let names: Vec<String> = incidents.iter().map(|incident| incident_lease(incident)).collect();
        let mut held = self.store.claim_leases_up_to(&self.holder, &names, share).await?;
        if held.len() > share {
            let excess: Vec<u64> = held.split_off(share).iter().map(|lease| lease.token).collect();
            tracing::debug!(share, processes, released = excess.len(), "incidents let go for the others to take");
            self.store.renew_leases(&self.holder, &excess, Duration::ZERO).await?;
        }
        let mut held: std::collections::HashMap<String, store::Lease> =
            held.into_iter().map(|lease| (lease.name.clone(), lease)).collect();
        Ok(incidents
            .into_iter()
            .zip(names)
            .filter_map(|(incident, name)| held.remove(&name).map(|lease| (incident, Some(lease.fence()))))
            .collect())
    }

    /// Removes the leases of incidents finished (closed, nothing of theirs in the outbox) and of
    /// those run out for [`GONE`] ([`Store::forget_leases`]), once a lease has passed since this
    /// process last did: otherwise each incident ever handled would leave its lease behind for
    /// good, standing on its last holder's presence, and every pass that reads the leases would
    /// grow with them. Any process may remove them: the store keeps those a claim or a write is
    /// using, and one claimed again gets a new token.
    async fn forget_finished(&self) -> Result<(), Error> {
        let now = Instant::now();
        let tidied = *self.tidied_at.lock().expect("the tidying's clock is never poisoned");
        if tidied.is_some_and(|at| now.duration_since(at) < self.lease) {
            return Ok(());
        }
        let forgotten = self.store.forget_leases(store::INCIDENT, GONE).await?;
        if forgotten > 0 {
            tracing::debug!(forgotten, "leases of incidents finished removed");
        }
        *self.tidied_at.lock().expect("the tidying's clock is never poisoned") = Some(now);
        Ok(())
    }

    /// Lets go at once of the incident's lease `under` that a process not present (a one-shot
    /// command: `start`, `done`, `approve` ...) claimed to sign a head after its append, so that
    /// the running processes tick the incident at their next pass rather than after the lease
    /// (12 s of its timers and checks left waiting, seen by hand after `phasegate start`). A
    /// present process keeps what it holds.
    pub(super) async fn let_go_unless_present(&self, under: Option<&store::Fence>) -> Result<(), Error> {
        let present = self.present_at.lock().expect("the presence's clock is never poisoned").is_some();
        if let (false, Some(store::Fence::Lease { token, .. })) = (present, under) {
            self.store.renew_leases(&self.holder, &[*token], Duration::ZERO).await?;
        }
        Ok(())
    }

    /// Renews this process's presence lease ([`store::presence`]), on which the incidents' leases
    /// it holds stand, once a third of the lease has passed since it was last renewed (or never
    /// was): at every pass ([`Runtime::incident_share`]) and between the effects and the ticks of
    /// one, so that a long pass on a busy machine does not let it run out and every incident go
    /// to the others (and come back at the next pass, a row version each way).
    pub(super) async fn keep_present(&self) -> Result<(), Error> {
        if self.owned.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        let renewed = *self.present_at.lock().expect("the presence's clock is never poisoned");
        if renewed.is_some_and(|at| now.duration_since(at) < self.lease / 3) {
            return Ok(());
        }
        self.store.claim_leases(&self.holder, &[store::presence(&self.holder)], self.lease).await?;
        *self.present_at.lock().expect("the presence's clock is never poisoned") = Some(now);
        Ok(())
    }

    /// Lets this process's presence lease go, at a clean stop of `serve` or `run` once its loops
    /// have stopped: the other processes count it out and take its incidents at their next pass
    /// rather than after the lease, and a command asking who is present (the step commands'
    /// "carries them out" line) no longer sees it. Nothing is written under its claims after.
    pub async fn leave(&self) -> Result<(), Error> {
        if self.owned.is_some() || self.present_at.lock().expect("the presence's clock is never poisoned").is_none() {
            return Ok(());
        }
        let held = self.store.claim_leases(&self.holder, &[store::presence(&self.holder)], self.lease).await?;
        let tokens: Vec<u64> = held.iter().map(|lease| lease.token).collect();
        self.store.renew_leases(&self.holder, &tokens, Duration::ZERO).await?;
        *self.present_at.lock().expect("the presence's clock is never poisoned") = None;
        Ok(())
    }

    /// The lease `name` if this runtime holds it now (claimed, or kept and renewed), as the fence
    /// of what is written under it: `Some(None)` in a runtime that owns its store (nothing to
    /// claim), `None` when another process holds it.
    pub(super) async fn named_lease(&self, name: &str) -> Result<Option<Option<Fence>>, Error> {
        if self.owned.is_some() {
            return Ok(Some(None));
        }
        let held = self.store.claim_leases(&self.holder, &[name.to_string()], self.lease).await?;
        Ok(held.into_iter().next().map(|lease| Some(lease.fence())))
    }

    /// Whether the named lease `under` still stands, renewed when a third of it has passed since
    /// `since` (then `since` moves to now): what a long piece of work under it (a page of the
    /// inbox) asks between its parts.
    pub(super) async fn lease_still_held(&self, under: Option<&Fence>, since: &mut Instant) -> Result<bool, Error> {
        let Some(Fence::Lease { token, .. }) = under else { return Ok(true) };
        if since.elapsed() < self.lease / 3 {
            return Ok(true);
        }
        let held = !self.store.renew_leases(&self.holder, &[*token], self.lease).await?.is_empty();
        *since = Instant::now();
        Ok(held)
    }

    /// Lets the effect claimed with `token` go at once (a campaign between its slices), so that
    /// the next pass, here or in another process, claims it without waiting for the lease.
    pub(super) async fn release(&self, token: Option<u64>) -> Result<(), Error> {
        if let Some(token) = token {
            self.store.renew_effects(&self.holder, &[token], Duration::ZERO).await?;
        }
        Ok(())
    }
}

/// Whether a failed record is the refusal of a result whose lease another process took over:
/// that process carries the effect out and records it, so this one only says so.
pub(super) fn taken_over(error: &Error) -> bool {
    matches!(error, Error::Store(store::Error::LeaseLost { .. } | store::Error::FenceLost { .. }))
}
