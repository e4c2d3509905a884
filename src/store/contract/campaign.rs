//! Customer campaigns' part of the contract: a campaign's plan stored once, its batches moving
//! only forward (planned, sending, answered), what answers recorded read back, and every refusal
//! changing nothing.

use std::sync::Arc;

use super::at;
use crate::campaign::{AttemptFailure, BatchPlan, FailureClass};
use crate::store::{BatchResult, BatchState, CampaignBatch, CampaignProgress, CampaignRefusal, Error, Store};

const CAMPAIGN: &str = "inc-1/notify/customers";

/// A plan of `batches` batches of `recipients` each, on lines of 100 bytes (one skipped in each).
pub fn plan(batches: u32, recipients: u32) -> Vec<BatchPlan> {
    (1..=batches)
        .map(|number| {
            let lines = u64::from(recipients) + 1;
            let first_line = 2 + u64::from(number - 1) * lines;
            BatchPlan {
                number,
                start: first_line * 100,
                end: (first_line + lines) * 100,
                first_line,
                skip: vec![first_line + 1],
                recipients,
            }
        })
        .collect()
}

/// The answer to batch `number`, `minutes` in: `failed` not sent, the rest of `recipients` sent.
pub fn answer(number: u32, minutes: i64, recipients: u32, failed: &[(&str, &str)], leaves: Vec<u8>) -> BatchResult {
    BatchResult {
        number,
        at: at(minutes),
        sent: recipients - failed.len() as u32,
        failed: failed.iter().map(|(id, reason)| (id.to_string(), reason.to_string())).collect(),
        leaves,
    }
}

/// The states of the campaign's batches, in order.
pub async fn states(store: &impl Store, campaign: &str) -> Vec<BatchState> {
    store.campaign_batches(campaign).await.unwrap().into_iter().map(|batch| batch.state).collect()
}

/// Whether `result` is the refusal `expected` of [`CAMPAIGN`].
fn refused(result: Result<(), Error>, expected: CampaignRefusal) -> bool {
    matches!(result, Err(Error::Campaign { campaign, refusal }) if campaign == CAMPAIGN && refusal == expected)
}

fn is_invalid(result: &Result<(), Error>, words: &str) -> bool {
    matches!(result, Err(Error::Campaign { refusal: CampaignRefusal::Invalid(problem), .. }) if problem.contains(words))
}

pub async fn a_campaign_is_planned_once(store: Arc<impl Store>) {
    assert!(store.campaign_batches(CAMPAIGN).await.unwrap().is_empty(), "nothing before its plan");
    // A plan out of order is refused, and stores nothing: the right one is stored after it.
    let mut shuffled = plan(3, 10);
    shuffled.swap(1, 2);
    let result = store.campaign_plan(CAMPAIGN, &shuffled).await;
    assert!(is_invalid(&result, "batch 3 comes where batch 2 belongs"), "{result:?}");
    assert!(store.campaign_batches(CAMPAIGN).await.unwrap().is_empty());

    let batches = plan(3, 10);
    store.campaign_plan(CAMPAIGN, &batches).await.unwrap();
    let stored = store.campaign_batches(CAMPAIGN).await.unwrap();
    let expected: Vec<CampaignBatch> = batches
        .iter()
        .map(|plan| CampaignBatch { plan: plan.clone(), state: BatchState::Planned, last_failure: None })
        .collect();
    assert_eq!(stored, expected, "the plan reads back as given, every batch planned");

    for again in [plan(3, 10), plan(4, 10), plan(1, 5), Vec::new()] {
        let result = store.campaign_plan(CAMPAIGN, &again).await;
        assert!(refused(result, CampaignRefusal::Planned), "a second plan of {} batches", again.len());
    }
    assert_eq!(store.campaign_batches(CAMPAIGN).await.unwrap(), expected, "the second plans changed nothing");

    // A list with no one to send to is planned too, and only once.
    store.campaign_plan("inc-1/notify/nobody", &[]).await.unwrap();
    let again = store.campaign_plan("inc-1/notify/nobody", &plan(1, 1)).await;
    assert!(matches!(again, Err(Error::Campaign { refusal: CampaignRefusal::Planned, .. })), "{again:?}");
    let malformed = store.campaign_plan("inc-1/customers", &plan(1, 1)).await;
    assert!(
        matches!(&malformed, Err(Error::Campaign { refusal: CampaignRefusal::Invalid(problem), .. }) if problem.contains("INCIDENT/PHASE/STEP")),
        "{malformed:?}"
    );
}

pub async fn a_batch_is_marked_sending_then_answered(store: Arc<impl Store>) {
    store.campaign_plan(CAMPAIGN, &plan(3, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2], at(1)).await.unwrap();
    // Sent again (a retry, or after a crash): one more attempt, since the latest mark.
    store.campaign_sending(CAMPAIGN, &[2], at(2)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[], at(3)).await.unwrap();
    assert_eq!(
        states(&*store, CAMPAIGN).await,
        [
            BatchState::Sending { attempts: 1, since: at(1) },
            BatchState::Sending { attempts: 2, since: at(2) },
            BatchState::Planned
        ]
    );
    let failed = [("c-7", "mailbox unavailable")];
    store
        .campaign_answered(CAMPAIGN, &[answer(2, 4, 10, &failed, vec![2; 32]), answer(1, 5, 10, &[], vec![1; 32])])
        .await
        .unwrap();
    assert_eq!(
        states(&*store, CAMPAIGN).await,
        [
            BatchState::Answered { attempts: 1, at: at(5), sent: 10, failed: 0 },
            BatchState::Answered { attempts: 2, at: at(4), sent: 9, failed: 1 },
            BatchState::Planned
        ]
    );
}

/// Attempt `attempt` failed `minutes` in with `error`, to be tried again a minute later.
pub fn failure(attempt: u32, minutes: i64, class: FailureClass, error: &str) -> AttemptFailure {
    AttemptFailure { attempt, at: at(minutes), class, error: error.to_string(), retry_at: Some(at(minutes + 1)) }
}

/// Each batch's last failed attempt, in order.
async fn last_failures(store: &impl Store) -> Vec<Option<AttemptFailure>> {
    store.campaign_batches(CAMPAIGN).await.unwrap().into_iter().map(|batch| batch.last_failure).collect()
}

pub async fn a_failed_attempt_is_kept_on_its_batch(store: Arc<impl Store>) {
    store.campaign_plan(CAMPAIGN, &plan(3, 10)).await.unwrap();
    // Only a batch in flight has attempts that can fail: refused, nothing kept.
    let refused_planned =
        store.campaign_attempt_failed(CAMPAIGN, 1, &failure(1, 1, FailureClass::Timeout, "late")).await;
    assert!(refused(refused_planned, CampaignRefusal::NotSending(1)));
    let unknown = store.campaign_attempt_failed(CAMPAIGN, 9, &failure(1, 1, FailureClass::Timeout, "late")).await;
    assert!(refused(unknown, CampaignRefusal::Unknown(9)));
    assert_eq!(last_failures(&*store).await, [None, None, None]);

    store.campaign_sending(CAMPAIGN, &[1, 2], at(1)).await.unwrap();
    let unavailable = failure(1, 2, FailureClass::HttpStatus, "POST https://relay.example/batches: status 503: busy");
    store.campaign_attempt_failed(CAMPAIGN, 1, &unavailable).await.unwrap();
    // The batch stays in flight, its attempts and mark as they were, its failure beside them.
    assert_eq!(states(&*store, CAMPAIGN).await[0], BatchState::Sending { attempts: 1, since: at(1) });
    assert_eq!(last_failures(&*store).await, [Some(unavailable.clone()), None, None]);

    let progress = store.campaigns("inc-1").await.unwrap()[0].1;
    assert_eq!((progress.retrying, progress.failed_attempts), (1, 1), "one batch retrying: {progress:?}");

    // An attempt it was not marked for, or one that says nothing, is refused and changes nothing.
    let ahead = store.campaign_attempt_failed(CAMPAIGN, 1, &failure(2, 3, FailureClass::Timeout, "late")).await;
    assert!(is_invalid(&ahead, "failed attempt 2, and it was marked in flight 1 times"), "{ahead:?}");
    let silent = store.campaign_attempt_failed(CAMPAIGN, 1, &failure(1, 3, FailureClass::Timeout, "  ")).await;
    assert!(is_invalid(&silent, "says nothing"), "{silent:?}");
    let zero = store.campaign_attempt_failed(CAMPAIGN, 1, &failure(0, 3, FailureClass::Timeout, "late")).await;
    assert!(is_invalid(&zero, "attempts count from 1"), "{zero:?}");
    assert_eq!(last_failures(&*store).await, [Some(unavailable.clone()), None, None]);

    // Marked in flight again, it keeps its last failure; the next failure replaces it, and the
    // last one, which paused the campaign (no retry), has no time to go again.
    store.campaign_sending(CAMPAIGN, &[1], at(3)).await.unwrap();
    assert_eq!(last_failures(&*store).await[0], Some(unavailable));
    let refused_connection = AttemptFailure {
        retry_at: None,
        ..failure(
            2,
            4,
            FailureClass::Connection,
            "POST https://relay.example/batches: could not connect: Connection refused",
        )
    };
    store.campaign_attempt_failed(CAMPAIGN, 1, &refused_connection).await.unwrap();
    assert_eq!(last_failures(&*store).await[0], Some(refused_connection.clone()));
    // A long error is cut, with a mark that it was.
    let long = failure(1, 4, FailureClass::SmtpReply, &"4.3.0 try later ".repeat(200));
    store.campaign_attempt_failed(CAMPAIGN, 2, &long).await.unwrap();
    let kept = last_failures(&*store).await[1].clone().unwrap();
    assert!(kept.error.ends_with(" [...]") && kept.error.chars().count() < 1_100, "{}", kept.error.len());
    let progress = store.campaigns("inc-1").await.unwrap()[0].1;
    assert_eq!((progress.retrying, progress.failed_attempts), (2, 3), "batch 1 failed twice, 2 once: {progress:?}");

    // Answered, the batch keeps its last failure for the record; a failure after the answer is refused.
    store.campaign_answered(CAMPAIGN, &[answer(1, 5, 10, &[], Vec::new())]).await.unwrap();
    assert!(matches!(states(&*store, CAMPAIGN).await[0], BatchState::Answered { attempts: 2, sent: 10, .. }));
    assert_eq!(last_failures(&*store).await[0], Some(refused_connection.clone()));
    let progress = store.campaigns("inc-1").await.unwrap()[0].1;
    assert_eq!(
        (progress.retrying, progress.failed_attempts),
        (1, 1),
        "an answered batch is not retrying: {progress:?}"
    );
    let late = store.campaign_attempt_failed(CAMPAIGN, 1, &failure(2, 6, FailureClass::Timeout, "late")).await;
    assert!(refused(late, CampaignRefusal::Answered(1)));
    assert_eq!(last_failures(&*store).await[0], Some(refused_connection));
}

pub async fn an_answered_batch_is_never_sent_or_answered_again(store: Arc<impl Store>) {
    store.campaign_plan(CAMPAIGN, &plan(3, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2], at(1)).await.unwrap();
    store.campaign_answered(CAMPAIGN, &[answer(1, 2, 10, &[("c-1", "bounced")], vec![1; 32])]).await.unwrap();
    let before = store.campaign_batches(CAMPAIGN).await.unwrap();
    let failures = store.campaign_failures(CAMPAIGN).await.unwrap();
    let leaves = store.campaign_leaves(CAMPAIGN).await.unwrap();

    // Each refused, as a whole: the batches named with the refused one do not move either.
    let refusals = [
        (store.campaign_answered(CAMPAIGN, &[answer(1, 3, 10, &[], vec![9; 32])]).await, CampaignRefusal::Answered(1)),
        (store.campaign_sending(CAMPAIGN, &[3, 1], at(3)).await, CampaignRefusal::Answered(1)),
        (store.campaign_sending(CAMPAIGN, &[2, 4], at(3)).await, CampaignRefusal::Unknown(4)),
        (
            store.campaign_answered(CAMPAIGN, &[answer(2, 3, 10, &[], vec![]), answer(3, 3, 10, &[], vec![])]).await,
            CampaignRefusal::NotSending(3),
        ),
        (store.campaign_answered(CAMPAIGN, &[answer(7, 3, 10, &[], vec![])]).await, CampaignRefusal::Unknown(7)),
    ];
    for (index, (result, expected)) in refusals.into_iter().enumerate() {
        let shown = format!("{result:?}");
        assert!(refused(result, expected.clone()), "refusal {index}: expected {expected:?}, got {shown}");
    }
    let never = store.campaign_sending("inc-1/notify/never-planned", &[1], at(3)).await;
    assert!(
        matches!(&never, Err(Error::Campaign { campaign, refusal: CampaignRefusal::Unknown(1) }) if campaign == "inc-1/notify/never-planned"),
        "{never:?}"
    );
    // An answer that does not account for each recipient of its batch once.
    let short = BatchResult { sent: 8, ..answer(2, 3, 10, &[("c-2", "bounced")], vec![]) };
    let result = store.campaign_answered(CAMPAIGN, &[short]).await;
    assert!(is_invalid(&result, "accounts for 9 recipients (8 sent, 1 failed), and it has 10"), "{result:?}");
    let twice = store.campaign_sending(CAMPAIGN, &[2, 2], at(3)).await;
    assert!(is_invalid(&twice, "batch 2 is named twice"), "{twice:?}");

    assert_eq!(store.campaign_batches(CAMPAIGN).await.unwrap(), before, "no batch moved");
    assert_eq!(store.campaign_failures(CAMPAIGN).await.unwrap(), failures);
    assert_eq!(store.campaign_leaves(CAMPAIGN).await.unwrap(), leaves);
    assert!(store.campaign_batches("inc-1/notify/never-planned").await.unwrap().is_empty());
}

pub async fn failures_are_listed_in_batch_order(store: Arc<impl Store>) {
    store.campaign_plan(CAMPAIGN, &plan(3, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2, 3], at(1)).await.unwrap();
    let second = [("c-19", "mailbox full"), ("c-12", "no such mailbox"), ("c-15", "mailbox full")];
    store.campaign_answered(CAMPAIGN, &[answer(2, 2, 10, &second, vec![])]).await.unwrap();
    store.campaign_answered(CAMPAIGN, &[answer(3, 3, 10, &[], vec![])]).await.unwrap();
    store
        .campaign_answered(CAMPAIGN, &[answer(1, 4, 10, &[("c-3", "suppressed at the provider")], vec![])])
        .await
        .unwrap();
    let failures = store.campaign_failures(CAMPAIGN).await.unwrap();
    let expected = [
        (1, "c-3", "suppressed at the provider"),
        (2, "c-19", "mailbox full"),
        (2, "c-12", "no such mailbox"),
        (2, "c-15", "mailbox full"),
    ]
    .map(|(number, id, reason)| (number, id.to_string(), reason.to_string()));
    assert_eq!(failures, expected, "in batch order, and in each batch as its answer gave them");
    assert!(store.campaign_failures("inc-1/notify/other").await.unwrap().is_empty());
    let reasons = store.campaign_failure_reasons(CAMPAIGN, 10).await.unwrap();
    let expected = [("mailbox full", 2), ("no such mailbox", 1), ("suppressed at the provider", 1)];
    assert_eq!(reasons, expected.map(|(reason, times)| (reason.to_string(), times)), "most frequent first");
    let reasons = store.campaign_failure_reasons(CAMPAIGN, 2).await.unwrap();
    assert_eq!(reasons.len(), 2, "no more than asked: {reasons:?}");
    assert!(store.campaign_failure_reasons("inc-1/notify/other", 10).await.unwrap().is_empty());
}

pub async fn leaves_read_back_in_number_order(store: Arc<impl Store>) {
    store.campaign_plan(CAMPAIGN, &plan(4, 1_000)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2, 3, 4], at(1)).await.unwrap();
    // About what a batch of a thousand gives: 60 KB, every byte value.
    let leaves = |number: u32| -> Vec<u8> { (0..60_000u32).map(|byte| (byte * 7 + number) as u8).collect() };
    store.campaign_answered(CAMPAIGN, &[answer(3, 2, 1_000, &[], leaves(3))]).await.unwrap();
    store
        .campaign_answered(CAMPAIGN, &[answer(1, 3, 1_000, &[], leaves(1)), answer(4, 3, 1_000, &[], Vec::new())])
        .await
        .unwrap();
    let stored = store.campaign_leaves(CAMPAIGN).await.unwrap();
    assert_eq!(stored, [(1, leaves(1)), (3, leaves(3)), (4, Vec::new())], "the answered batches', as given, in order");
}

pub async fn campaign_progress_is_totalled(store: Arc<impl Store>) {
    let campaigns =
        ["inc-1/notify/customers", "inc-1/notify/partners", "inc-10/notify/customers", "inc-1/recover/all-clear"];
    store.campaign_plan(campaigns[0], &plan(4, 10)).await.unwrap();
    store.campaign_plan(campaigns[1], &plan(2, 5)).await.unwrap();
    store.campaign_plan(campaigns[2], &plan(1, 3)).await.unwrap();
    store.campaign_plan(campaigns[3], &[]).await.unwrap();
    store.campaign_sending(campaigns[0], &[1, 2, 3], at(1)).await.unwrap();
    store
        .campaign_answered(
            campaigns[0],
            &[answer(1, 2, 10, &[("c-1", "bounced"), ("c-2", "bounced")], vec![]), answer(2, 2, 10, &[], vec![])],
        )
        .await
        .unwrap();
    store.campaign_sending(campaigns[2], &[1], at(1)).await.unwrap();
    store.campaign_answered(campaigns[2], &[answer(1, 2, 3, &[], vec![])]).await.unwrap();

    let progress = |batches, planned, sending, answered, recipients, sent, failed| CampaignProgress {
        batches,
        planned,
        sending,
        answered,
        recipients,
        sent,
        failed,
        retrying: 0,
        failed_attempts: 0,
    };
    assert_eq!(
        store.campaigns("inc-1").await.unwrap(),
        [
            (campaigns[0].to_string(), progress(4, 1, 1, 2, 40, 18, 2)),
            (campaigns[1].to_string(), progress(2, 2, 0, 0, 10, 0, 0)),
            (campaigns[3].to_string(), progress(0, 0, 0, 0, 0, 0, 0)),
        ],
        "inc-1's campaigns, in the order planned (not inc-10's)"
    );
    assert_eq!(store.campaigns("inc-10").await.unwrap(), [(campaigns[2].to_string(), progress(1, 0, 0, 1, 3, 3, 0))]);
    assert!(store.campaigns("inc-2").await.unwrap().is_empty());
}

/// What a campaign's progress was when it answered is what a reopened store gives: `reopen` ends
/// the store as it would end (closed, or dropped as a crash leaves it) and opens it again.
pub async fn campaign_progress_is_there_after_reopening<S: Store>(store: S, reopen: impl AsyncFnOnce(S) -> S) {
    store.campaign_plan(CAMPAIGN, &plan(3, 10)).await.unwrap();
    store.campaign_sending(CAMPAIGN, &[1, 2], at(1)).await.unwrap();
    store.campaign_answered(CAMPAIGN, &[answer(1, 2, 10, &[("c-4", "bounced")], vec![4; 600])]).await.unwrap();
    let batches = store.campaign_batches(CAMPAIGN).await.unwrap();
    let failures = store.campaign_failures(CAMPAIGN).await.unwrap();
    let leaves = store.campaign_leaves(CAMPAIGN).await.unwrap();
    let progress = store.campaigns("inc-1").await.unwrap();

    let store = reopen(store).await;
    assert_eq!(store.campaign_batches(CAMPAIGN).await.unwrap(), batches);
    assert_eq!(
        batches.iter().map(|batch| batch.state).collect::<Vec<_>>(),
        [
            BatchState::Answered { attempts: 1, at: at(2), sent: 9, failed: 1 },
            BatchState::Sending { attempts: 1, since: at(1) },
            BatchState::Planned
        ]
    );
    assert_eq!(store.campaign_failures(CAMPAIGN).await.unwrap(), failures);
    assert_eq!(store.campaign_leaves(CAMPAIGN).await.unwrap(), leaves);
    assert_eq!(store.campaigns("inc-1").await.unwrap(), progress);
    // And it carries on from there: the one in flight is answered, the answered one stays so.
    store.campaign_answered(CAMPAIGN, &[answer(2, 3, 10, &[], vec![])]).await.unwrap();
    let again = store.campaign_plan(CAMPAIGN, &plan(3, 10)).await;
    assert!(refused(again, CampaignRefusal::Planned));
    let result = store.campaign_sending(CAMPAIGN, &[1], at(4)).await;
    assert!(refused(result, CampaignRefusal::Answered(1)));
}
