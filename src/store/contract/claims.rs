//! The contract of the outbox's leases ([`Store::claim_effects`]): every backend keeps effects
//! claimed by one holder from the others, hands an expired lease to the next claimer with a newer
//! token, and refuses a result carried by a token that is no longer the latest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{note, notify, started};
use crate::store::{Append, Claimed, Error, Store};

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
