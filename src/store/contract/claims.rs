//! The contract of leases: the outbox's ([`Store::claim_effects`]) and the named ones
//! ([`Store::claim_leases`]). Every backend keeps what one holder claimed from the others, hands
//! an expired lease to the next claimer with a newer token, and refuses a write (a result, a
//! tick's events, the inbox's marks, a checkpoint, a campaign's batch marked or answered) carried
//! by a token that is no longer the latest, storing nothing of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::campaign::{answer, plan, states};
use super::{at, closed, note, notify, started};
use crate::audit::keys::{Checkpoint, SignedCheckpoint};
use crate::store::{
    Append, BatchState, Claimed, Delivery, Error, Fence, Headers, INCIDENT, Lease, PRESENCE, Store, incident_lease,
    presence,
};

/// Long enough that no lease runs out while a check looks at it.
const HELD: Duration = Duration::from_secs(60);

/// Short enough that a check can wait for it to run out.
const BRIEF: Duration = Duration::from_millis(300);

/// An incident with `count` effects in the outbox.
async fn with_effects(store: &impl Store, incident: &str, count: usize) -> Vec<String> {
    let ids: Vec<String> = (1..=count).map(|n| format!("{incident}/step/{n}")).collect();
    let effects: Vec<_> = ids.iter().map(|id| notify(id)).collect();
    store.append(Append::new(incident, 0, &[started(incident, "breach", None)]).effects(&effects)).await.unwrap();
    ids
}

fn ids(claimed: &[Claimed]) -> Vec<String> {
    claimed.iter().map(|claim| claim.pending.effect.id.clone()).collect()
}

/// Claims for `holder` until it gets something (a lease elsewhere runs out), for at most 10 s.
async fn claim_once_free(store: &impl Store, holder: &str) -> Vec<Claimed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let claimed = store.claim_effects(holder, 10, HELD).await.unwrap();
        if !claimed.is_empty() {
            return claimed;
        }
        assert!(Instant::now() < deadline, "no lease ran out within 10 s of a {BRIEF:?} lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn two_claimers_never_hold_one_effect(store: Arc<impl Store>) {
    let all = with_effects(&*store, "inc-1", 7).await;
    let (first, second) =
        tokio::join!(store.claim_effects("replica-a", 4, HELD), store.claim_effects("replica-b", 4, HELD));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.len() <= 4 && second.len() <= 4, "the limit holds: {first:?} {second:?}");
    let mut claimed = ids(&first);
    claimed.extend(ids(&second));
    claimed.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(claimed, expected, "every effect claimed once, by one of them");
    let mut tokens: Vec<u64> = first.iter().chain(&second).map(|claim| claim.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), all.len(), "each claim has a token of its own");
    assert!(store.claim_effects("replica-c", 10, HELD).await.unwrap().is_empty(), "nothing is left to claim");
    let mut ordered = ids(&first);
    ordered.sort_by_key(|id| all.iter().position(|one| one == id));
    assert_eq!(ids(&first), ordered, "a claim lists its effects oldest first");
}

pub async fn an_expired_lease_is_taken_over(store: Arc<impl Store>) {
    let all = with_effects(&*store, "inc-1", 1).await;
    let first = store.claim_effects("replica-a", 10, BRIEF).await.unwrap();
    assert_eq!(ids(&first), all);
    let taken = claim_once_free(&*store, "replica-b").await;
    assert_eq!(ids(&taken), all, "the lease that ran out is claimed by the next");
    assert!(taken[0].token > first[0].token, "with a newer token: {} then {}", first[0].token, taken[0].token);
    assert_eq!(store.renew_effects("replica-a", &[first[0].token], HELD).await.unwrap(), Vec::<u64>::new());
    assert_eq!(store.renew_effects("replica-b", &[taken[0].token], HELD).await.unwrap(), [taken[0].token]);
    assert!(store.claim_effects("replica-a", 10, HELD).await.unwrap().is_empty(), "a renewed lease is held");
}

pub async fn a_stale_token_cannot_complete(store: Arc<impl Store>) {
    let all = with_effects(&*store, "inc-1", 1).await;
    let stale = store.claim_effects("replica-a", 10, BRIEF).await.unwrap()[0].token;
    let current = claim_once_free(&*store, "replica-b").await[0].token;
    let result = |token| Append::new("inc-1", 1, &[note(5, "sent")]).completes(Some(&all[0])).fenced(Some(token));

    let refused = store.append(result(stale)).await;
    assert!(
        matches!(&refused, Err(Error::LeaseLost { incident, effect }) if incident == "inc-1" && *effect == all[0]),
        "a result under a lease taken over is refused: {refused:?}"
    );
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1, "nothing of it is stored");
    assert_eq!(store.pending_effects(10).await.unwrap().len(), 1, "the effect still waits");

    assert_eq!(store.append(result(current)).await.unwrap(), 2, "the latest claim records its result");
    assert!(store.pending_effects(10).await.unwrap().is_empty());
    assert!(store.claim_effects("replica-c", 10, HELD).await.unwrap().is_empty(), "a done effect is never claimed");
    assert_eq!(store.renew_effects("replica-b", &[current], HELD).await.unwrap(), Vec::<u64>::new());
    let again = store.append(Append::new("inc-1", 2, &[]).completes(Some(&all[0])).fenced(Some(stale))).await;
    assert!(matches!(again, Err(Error::LeaseLost { .. })), "nor after it is done: {again:?}");
}

/// Claims the lease `name` for `holder` until it gets it (a lease elsewhere runs out), for at
/// most 10 s.
async fn lease_once_free(store: &impl Store, holder: &str, name: &str) -> Lease {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(lease) = store.claim_leases(holder, &[name.to_string()], HELD).await.unwrap().pop() {
            return lease;
        }
        assert!(Instant::now() < deadline, "no lease ran out within 10 s of a {BRIEF:?} lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(leases: &[Lease]) -> Vec<&str> {
    leases.iter().map(|lease| lease.name.as_str()).collect()
}

/// Whether `result` is the refusal of a write under a claim taken over, guarding `guarding`.
fn fence_lost<T: std::fmt::Debug>(result: &Result<T, Error>, guarding: &str) -> bool {
    matches!(result, Err(Error::FenceLost { guarding: named, .. }) if named == guarding)
}

/// Claims `holder`'s presence lease ([`presence`]) for `lease`; its token.
async fn present(store: &impl Store, holder: &str, lease: Duration) -> u64 {
    let claimed = store.claim_leases(holder, &[presence(holder)], lease).await.unwrap();
    assert_eq!(names(&claimed), [presence(holder)], "{holder} is present");
    claimed[0].token
}

pub async fn up_to_a_share_of_named_leases_is_taken_anew(store: Arc<impl Store>) {
    let wanted: Vec<String> = (1..=5).map(|n| format!("incident/share-{n}")).collect();
    assert_eq!(store.claim_leases_up_to("replica-a", &wanted, 2).await.unwrap(), [], "none without a presence");
    present(&*store, "replica-a", HELD).await;
    present(&*store, "replica-b", HELD).await;
    let first = store.claim_leases_up_to("replica-a", &wanted, 2).await.unwrap();
    assert_eq!(first.len(), 2, "two of five taken: {first:?}");
    let again = store.claim_leases_up_to("replica-a", &wanted, 2).await.unwrap();
    assert_eq!(again, first, "at its share, the holder keeps its own and takes no more");
    let more = store.claim_leases_up_to("replica-a", &wanted, 4).await.unwrap();
    assert_eq!(more.len(), 4, "a larger share, two more: {more:?}");
    assert!(first.iter().all(|lease| more.contains(lease)), "its own kept, with their tokens");
    let other = store.claim_leases_up_to("replica-b", &wanted, 3).await.unwrap();
    assert_eq!(other.len(), 1, "another takes only what is free: {other:?}");
    assert!(!names(&more).contains(&other[0].name.as_str()));
    let fewer = store.claim_leases_up_to("replica-a", &wanted, 1).await.unwrap();
    assert_eq!(fewer, more, "a smaller share takes none away: the holder lets go of them itself");
    assert_eq!(store.claim_leases_up_to("replica-c", &wanted, 0).await.unwrap(), []);
    assert!(store.claim_leases("replica-c", &wanted, HELD).await.unwrap().is_empty(), "none is free to others");

    // Presence: leases by prefix, counted while they last.
    assert_eq!(store.leases_held("incident/share-").await.unwrap(), 5);
    assert_eq!(store.leases_held("nobody/").await.unwrap(), 0);
    assert_eq!(store.leases_held(PRESENCE).await.unwrap(), 2);
    present(&*store, "replica-c", BRIEF).await;
    assert_eq!(store.leases_held(PRESENCE).await.unwrap(), 3);
    tokio::time::sleep(BRIEF * 2).await;
    assert_eq!(store.leases_held(PRESENCE).await.unwrap(), 2, "a lease run out is not counted");
}

pub async fn leases_up_to_a_share_stand_on_their_holders_presence(store: Arc<impl Store>) {
    let wanted: Vec<String> = (1..=3).map(|n| format!("incident/stand-{n}")).collect();
    let presence_a = present(&*store, "replica-a", HELD).await;
    let held = store.claim_leases_up_to("replica-a", &wanted, 3).await.unwrap();
    assert_eq!(names(&held), wanted, "all three taken");
    assert!(store.claim_leases("replica-b", &wanted, HELD).await.unwrap().is_empty(), "held while present");
    let sooner = held[0].token;
    assert_eq!(store.renew_leases("replica-a", &[sooner], Duration::ZERO).await.unwrap(), [sooner]);
    let taken = lease_once_free(&*store, "replica-b", &wanted[0]).await;
    assert!(taken.token > sooner, "one let go is free at once, with a newer token");

    // The presence runs out (the process died or froze; here let go at once): the others are
    // free, all at once.
    assert_eq!(store.renew_leases("replica-a", &[presence_a], Duration::ZERO).await.unwrap(), [presence_a]);
    assert_eq!(store.leases_held("incident/stand-").await.unwrap(), 1, "only the one taken over stands");
    let rest = store.claim_leases("replica-b", &wanted, HELD).await.unwrap();
    assert_eq!(names(&rest), wanted, "the rest free once the holder's presence ran out");
    assert!(held[1..].iter().zip(&rest[1..]).all(|(old, new)| new.token > old.token), "{held:?} {rest:?}");
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    let stale = store.append(Append::new("inc-1", 1, &[note(1, "tick")]).under(Some(held[1].fence()))).await;
    assert!(fence_lost(&stale, &wanted[1]), "a write under the old holder's token is refused: {stale:?}");
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1, "nothing of it is stored");

    // Present again, the old holder gets none of them back.
    present(&*store, "replica-a", HELD).await;
    assert_eq!(store.claim_leases_up_to("replica-a", &wanted, 3).await.unwrap(), []);

    // Presence leases run out long enough ago are removed; those standing are not.
    let presence_c = present(&*store, "replica-c", HELD).await;
    assert_eq!(store.renew_leases("replica-c", &[presence_c], Duration::ZERO).await.unwrap(), [presence_c]);
    assert_eq!(store.forget_leases(PRESENCE, Duration::from_secs(3600)).await.unwrap(), 0, "not long enough ago");
    let forgotten = wait_until_forgotten(&*store).await;
    assert_eq!(forgotten, 1, "replica-c's");
    assert_eq!(store.forget_leases("incident/", Duration::ZERO).await.unwrap(), 0, "none ran out");
    assert_eq!(store.leases_held(PRESENCE).await.unwrap(), 1, "replica-a's stands");
    present(&*store, "replica-c", HELD).await;
}

/// Removes the presence leases that ran out, once the clock has moved past the one let go last
/// (for at most 10 s): how many.
async fn wait_until_forgotten(store: &impl Store) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let forgotten = store.forget_leases(PRESENCE, Duration::ZERO).await.unwrap();
        if forgotten > 0 {
            return forgotten;
        }
        assert!(Instant::now() < deadline, "no presence lease let go was removed within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn two_holders_never_hold_one_named_lease(store: Arc<impl Store>) {
    let wanted = ["incident/inc-2".to_string(), "inbox".to_string(), "incident/inc-1".to_string()];
    let (first, second) = tokio::join!(
        store.claim_leases("replica-a", &wanted, HELD),
        store.claim_leases("replica-b", &wanted[..2], HELD)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    for name in &wanted[..2] {
        let holders = [&first, &second].iter().filter(|held| names(held).contains(&name.as_str())).count();
        assert_eq!(holders, 1, "`{name}` is held by exactly one: {first:?} {second:?}");
    }
    let mut ordered = names(&first);
    ordered.sort_by_key(|name| wanted.iter().position(|one| one == name));
    assert_eq!(names(&first), ordered, "a claim lists its leases in the order asked");
    let mut tokens: Vec<u64> = first.iter().chain(&second).map(|lease| lease.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), first.len() + second.len(), "each lease has a token of its own");

    // Claimed again by its holder, a lease is kept with its token; by another, it is not given.
    let again = store.claim_leases("replica-a", &wanted, HELD).await.unwrap();
    assert_eq!(again, first, "the holder keeps its leases and their tokens");
    assert!(store.claim_leases("replica-c", &wanted, HELD).await.unwrap().is_empty(), "nothing is free");
    let tokens: Vec<u64> = first.iter().map(|lease| lease.token).collect();
    assert!(store.renew_leases("replica-c", &tokens, HELD).await.unwrap().is_empty(), "nor renewed by another");
    let mut renewed = store.renew_leases("replica-a", &tokens, HELD).await.unwrap();
    renewed.sort_unstable();
    let mut expected = tokens.clone();
    expected.sort_unstable();
    assert_eq!(renewed, expected);

    // Let go (a zero lease), it is the next claimer's, with a newer token.
    assert_eq!(store.renew_leases("replica-a", &[first[0].token], Duration::ZERO).await.unwrap(), [first[0].token]);
    let taken = lease_once_free(&*store, "replica-c", &first[0].name).await;
    assert!(taken.token > first[0].token, "a newer token: {} then {}", first[0].token, taken.token);
}

pub async fn a_write_under_a_named_lease_taken_over_is_refused(store: Arc<impl Store>) {
    store.append(Append::new("inc-1", 0, &[started("inc-1", "breach", None)])).await.unwrap();
    let name = "incident/inc-1";
    let stale = store.claim_leases("replica-a", &[name.to_string()], BRIEF).await.unwrap().pop().unwrap();
    let current = lease_once_free(&*store, "replica-b", name).await;
    assert!(current.token > stale.token);
    assert!(store.renew_leases("replica-a", &[stale.token], HELD).await.unwrap().is_empty(), "its lease is gone");

    // Events under the lease taken over: refused, nothing stored.
    let tick = |fence: &Lease, version| Append::new("inc-1", version, &[note(1, "tick")]).under(Some(fence.fence()));
    let refused = store.append(tick(&stale, 1)).await;
    assert!(fence_lost(&refused, name), "an append under a lease taken over is refused: {refused:?}");
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1, "nothing of it is stored");
    // With an effect queued beside its events: refused alike, neither stored.
    let step = Append::new("inc-1", 1, &[note(1, "step started")])
        .effects(&[notify("inc-1/page/1")])
        .under(Some(stale.fence()));
    let refused = store.append(step).await;
    assert!(fence_lost(&refused, name), "an append queuing an effect under a lease taken over is refused: {refused:?}");
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1, "none of its events is stored");
    assert!(store.pending_effects(10).await.unwrap().is_empty(), "nor its effect");
    // Beside another incident's append given at the same time (often one batch): that one is stored.
    store.append(Append::new("inc-3", 0, &[started("inc-3", "breach", None)])).await.unwrap();
    let (refused, other) =
        tokio::join!(store.append(tick(&stale, 1)), store.append(Append::new("inc-3", 1, &[note(1, "meanwhile")])));
    assert!(fence_lost(&refused, name), "refused beside another append: {refused:?}");
    assert_eq!(other.unwrap(), 2, "the other append is stored");
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1, "nothing of the refused one is stored");
    // A checkpoint under it: refused, nothing stored.
    let checkpoint = SignedCheckpoint {
        checkpoint: Checkpoint {
            format: 1,
            incident: "inc-1".into(),
            number: 1,
            events: 1,
            head: "ab".repeat(32),
            prev: "00".repeat(32),
            at: at(2),
            key: "sha256:test".into(),
        },
        signature: "cd".repeat(64),
    };
    let refused = store.add_checkpoint("inc-1", &checkpoint, Some(&stale.fence())).await;
    assert!(fence_lost(&refused, name), "a checkpoint under a lease taken over is refused: {refused:?}");
    assert!(store.checkpoints("inc-1").await.unwrap().is_empty());

    // The current holder's writes are stored.
    assert_eq!(store.append(tick(&current, 1)).await.unwrap(), 2);
    store.add_checkpoint("inc-1", &checkpoint, Some(&current.fence())).await.unwrap();
    assert_eq!(store.checkpoints("inc-1").await.unwrap().len(), 1);

    // The inbox's marks: under a lease taken over, none is made.
    let delivery = Delivery { source: "alertmanager".into(), id: "d-1".into(), received_at: at(3) };
    assert!(store.receive(&delivery, &Headers::new(), b"{}").await.unwrap());
    let inbox = store.claim_leases("replica-a", &["inbox".to_string()], BRIEF).await.unwrap().pop().unwrap();
    let successor = lease_once_free(&*store, "replica-b", "inbox").await;
    let waiting = store.inbox(10, 1 << 20).await.unwrap();
    let marks = [(waiting[0].seq, "[]".to_string())];
    let refused = store.applied(&marks, Some(&inbox.fence())).await;
    assert!(fence_lost(&refused, "inbox"), "marks under a lease taken over are refused: {refused:?}");
    assert_eq!(store.inbox_depth().await.unwrap(), 1, "the delivery still waits");
    store.applied(&marks, Some(&successor.fence())).await.unwrap();
    assert_eq!(store.inbox_depth().await.unwrap(), 0);
}

pub async fn a_campaign_write_under_an_effect_taken_over_is_refused(store: Arc<impl Store>) {
    let all = with_effects(&*store, "inc-1", 1).await;
    let campaign = "inc-1/notify/customers";
    store.campaign_plan(campaign, &plan(2, 10)).await.unwrap();
    let stale = store.claim_effects("replica-a", 10, BRIEF).await.unwrap()[0].token;
    let current = claim_once_free(&*store, "replica-b").await[0].token;
    let fence = |token| Fence::Effect { id: all[0].clone(), token };

    // The frozen holder's mark of a batch in flight is refused: it never sends it.
    let refused = store.campaign_sending_under(campaign, &[1], at(1), Some(&fence(stale))).await;
    assert!(fence_lost(&refused, &all[0]), "a mark under a claim taken over is refused: {refused:?}");
    assert_eq!(states(&*store, campaign).await, [BatchState::Planned, BatchState::Planned], "nothing is marked");

    // The current holder marks it; an answer under the old claim is refused, under the new one stored.
    store.campaign_sending_under(campaign, &[1], at(2), Some(&fence(current))).await.unwrap();
    let refused =
        store.campaign_answered_under(campaign, &[answer(1, 3, 10, &[], Vec::new())], Some(&fence(stale))).await;
    assert!(fence_lost(&refused, &all[0]), "an answer under a claim taken over is refused: {refused:?}");
    assert_eq!(states(&*store, campaign).await[0], BatchState::Sending { attempts: 1, since: at(2) });
    // So is a failed attempt's record.
    let failure = super::campaign::failure(1, 3, crate::campaign::FailureClass::Timeout, "no answer");
    let refused = store.campaign_attempt_failed_under(campaign, 1, &failure, Some(&fence(stale))).await;
    assert!(fence_lost(&refused, &all[0]), "a failure under a claim taken over is refused: {refused:?}");
    assert_eq!(store.campaign_batches(campaign).await.unwrap()[0].last_failure, None);
    store.campaign_answered_under(campaign, &[answer(1, 3, 10, &[], Vec::new())], Some(&fence(current))).await.unwrap();
    assert!(matches!(states(&*store, campaign).await[0], BatchState::Answered { sent: 10, .. }));

    // Events under the effect's claim: under the old claim refused, nothing stored; under the new one stored.
    let progress = |token| Append::new("inc-1", 1, &[note(4, "progress")]).under(Some(fence(token)));
    let refused = store.append(progress(stale)).await;
    assert!(fence_lost(&refused, &all[0]), "events under a claim taken over are refused: {refused:?}");
    assert_eq!(store.events("inc-1").await.unwrap().len(), 1, "nothing of them is stored");
    assert_eq!(store.append(progress(current)).await.unwrap(), 2);

    // Once the effect is done, no write is made under its claim.
    store
        .append(Append::new("inc-1", 2, &[note(5, "sent")]).completes(Some(&all[0])).fenced(Some(current)))
        .await
        .unwrap();
    let refused = store.campaign_sending_under(campaign, &[2], at(6), Some(&fence(current))).await;
    assert!(fence_lost(&refused, &all[0]), "nor under the claim of an effect done: {refused:?}");
    let refused = store.append(Append::new("inc-1", 3, &[note(6, "late")]).under(Some(fence(current)))).await;
    assert!(fence_lost(&refused, &all[0]), "nor events under it: {refused:?}");
    assert_eq!(store.events("inc-1").await.unwrap().len(), 3);
}

/// Removes the incidents' leases that may go ([`Store::forget_leases`]) until `count` went at
/// once (the clock moves past one let go just now), for at most 10 s.
async fn wait_until_finished_forgotten(store: &impl Store, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let forgotten = store.forget_leases(INCIDENT, HELD).await.unwrap();
        if forgotten == count {
            return;
        }
        assert_eq!(forgotten, 0, "only the lease let go may go");
        assert!(Instant::now() < deadline, "no lease of a finished incident was removed within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn the_lease_of_a_finished_incident_goes_and_its_token_stays_refused(store: Arc<impl Store>) {
    // inc-1 closes with an effect still waiting, inc-2 closes with nothing waiting, inc-3 is open.
    let waiting = with_effects(&*store, "inc-1", 1).await;
    store.append(Append::new("inc-1", 1, &[closed(1)])).await.unwrap();
    store.append(Append::new("inc-2", 0, &[started("inc-2", "breach", None), closed(1)])).await.unwrap();
    store.append(Append::new("inc-3", 0, &[started("inc-3", "breach", None)])).await.unwrap();
    let wanted: Vec<String> = ["inc-1", "inc-2", "inc-3"].iter().map(|incident| incident_lease(incident)).collect();
    present(&*store, "replica-a", HELD).await;
    let held = store.claim_leases_up_to("replica-a", &wanted, 3).await.unwrap();
    assert_eq!(names(&held), wanted, "all three stand on replica-a's presence");

    assert_eq!(store.forget_leases(INCIDENT, HELD).await.unwrap(), 1, "inc-2's lease goes");
    assert_eq!(store.leases_held(INCIDENT).await.unwrap(), 2, "inc-1's (an effect waits) and inc-3's (open) stay");
    assert_eq!(store.forget_leases(INCIDENT, HELD).await.unwrap(), 0, "nothing more goes");
    let kept = store.claim_leases_up_to("replica-a", &wanted, 2).await.unwrap();
    assert_eq!(kept, [held[0].clone(), held[2].clone()], "its other two kept, with their tokens");

    // The holder that lost it, still present and believing it holds it, writes nothing under it.
    let stale = held[1].fence();
    let refused = store.append(Append::new("inc-2", 2, &[note(2, "late tick")]).under(Some(stale.clone()))).await;
    assert!(fence_lost(&refused, &wanted[1]), "a write under a lease removed is refused: {refused:?}");
    assert_eq!(store.events("inc-2").await.unwrap().len(), 2, "nothing of it is stored");

    // Claimed again (to sign the closed incident's head): a new token, larger than any before,
    // and the old one still refused; while that claim runs, the lease stays.
    let again = lease_once_free(&*store, "replica-b", &wanted[1]).await;
    assert!(held.iter().all(|old| again.token > old.token), "a new token: {held:?} then {again:?}");
    let refused = store.append(Append::new("inc-2", 2, &[note(2, "late tick")]).under(Some(stale))).await;
    assert!(fence_lost(&refused, &wanted[1]), "the old token is refused after the lease came back: {refused:?}");
    assert_eq!(store.renew_leases("replica-a", &[held[1].token], HELD).await.unwrap(), Vec::<u64>::new());
    assert_eq!(
        store.append(Append::new("inc-2", 2, &[note(3, "signed")]).under(Some(again.fence()))).await.unwrap(),
        3
    );
    assert_eq!(store.forget_leases(INCIDENT, HELD).await.unwrap(), 0, "a claim that runs stays");

    // inc-1's effect done: its lease goes too. replica-b lets go of inc-2's: it goes.
    store.append(Append::new("inc-1", 2, &[note(3, "paged")]).completes(Some(&waiting[0]))).await.unwrap();
    assert_eq!(store.forget_leases(INCIDENT, HELD).await.unwrap(), 1, "inc-1's lease goes once nothing waits");
    assert_eq!(store.renew_leases("replica-b", &[again.token], Duration::ZERO).await.unwrap(), [again.token]);
    wait_until_finished_forgotten(&*store, 1).await;
    assert_eq!(store.leases_held(INCIDENT).await.unwrap(), 1, "only the open incident's lease is left");
    assert_eq!(store.claim_leases_up_to("replica-a", &wanted[2..], 3).await.unwrap(), [held[2].clone()]);
}
