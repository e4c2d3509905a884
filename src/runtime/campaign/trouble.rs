//! Why a campaign is not moving, in words for `campaign status` and the incident's page: the
//! batch whose last attempt failed, its error and when it goes again.

use chrono::{DateTime, Utc};

use super::ATTEMPTS;
use crate::store::{BatchState, CampaignBatch};

/// Why a campaign is not moving: a batch whose last attempt failed and that is not answered yet,
/// so it is being retried (the most recent such failure, and how many other batches are in the
/// same state). Once the batch is answered its failure is history, kept in the store for the
/// record, and the campaign is no longer in trouble.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trouble {
    pub batch: u32,
    /// The failed attempt (the batch's first is 1).
    pub attempt: u32,
    /// The attempt after which the campaign pauses itself if that one fails too ([`ATTEMPTS`] in
    /// a row; counted on after a resume: 16, 24 ...).
    pub of: u32,
    /// A later attempt is in flight now.
    pub in_flight: bool,
    pub class: crate::campaign::FailureClass,
    pub error: String,
    pub at: DateTime<Utc>,
    pub retry_at: Option<DateTime<Utc>>,
    /// Other batches retrying after a failure too.
    pub others: u32,
}

impl Trouble {
    /// The campaign's trouble among `batches`, or `None` when no unanswered batch has failed.
    pub fn of(batches: &[CampaignBatch]) -> Option<Trouble> {
        let mut failing = batches.iter().filter_map(|batch| match (&batch.state, &batch.last_failure) {
            (BatchState::Sending { attempts, .. }, Some(failure)) => Some((batch.plan.number, *attempts, failure)),
            _ => None,
        });
        // The batch nearest to pausing the campaign (the most attempts failed), the first of those:
        // lanes fail together when the channel is down, and the page should not hop between them.
        let mut shown = failing.next()?;
        let mut others = 0;
        for candidate in failing {
            others += 1;
            if candidate.2.attempt > shown.2.attempt {
                shown = candidate;
            }
        }
        let (batch, attempts, failure) = shown;
        Some(Trouble {
            batch,
            attempt: failure.attempt,
            of: failure.attempt.div_ceil(ATTEMPTS).max(1) * ATTEMPTS,
            in_flight: attempts > failure.attempt,
            class: failure.class,
            error: failure.error.clone(),
            at: failure.at,
            retry_at: failure.retry_at,
            others,
        })
    }

    /// In words, at `now`: `retrying: batch 12, attempt 3 of 8, last error: POST ...: status 503:
    /// busy at 03:12:04 UTC; next try in 20 s`.
    /// After the attempt that paused the campaign: `paused after failures: batch 12, attempt 8 of
    /// 8, ...; resume the campaign once the channel takes messages again`.
    pub fn sentence(&self, now: DateTime<Utc>) -> String {
        let word = if self.halted() { "paused after failures" } else { "retrying" };
        format!("{word}: {}", self.detail(now))
    }

    /// The last failure paused the campaign: nothing goes again until a person resumes it.
    pub fn halted(&self) -> bool {
        !self.in_flight && self.retry_at.is_none()
    }

    /// [`Trouble::sentence`] without its first word, for where a label says it already.
    pub fn detail(&self, now: DateTime<Utc>) -> String {
        let at = self.at.format("%H:%M:%S UTC");
        let next = if self.in_flight {
            format!("attempt {} of {} in flight now", self.attempt + 1, self.of)
        } else {
            match self.retry_at {
                Some(retry_at) if retry_at > now => {
                    // Rounded up: a try 200 ms away is "in 1 s", never "in 0 s".
                    let seconds = ((retry_at - now).num_milliseconds() + 999) / 1000;
                    format!("next try in {seconds} s")
                }
                Some(_) => "next try due now".to_string(),
                None => "resume the campaign once the channel takes messages again".to_string(),
            }
        };
        let doing = if self.halted() { "waiting too" } else { "retrying" };
        let others = match self.others {
            0 => String::new(),
            1 => format!(" (1 more batch {doing})"),
            n => format!(" ({n} more batches {doing})"),
        };
        format!(
            "batch {}, attempt {} of {}, last error: {} at {at}; {next}{others}",
            self.batch, self.attempt, self.of, self.error
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::{AttemptFailure, BatchPlan, FailureClass};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T03:12:04Z").unwrap().with_timezone(&Utc)
            + chrono::Duration::seconds(seconds)
    }

    fn batch(number: u32, state: BatchState, failed: Option<(u32, i64)>) -> CampaignBatch {
        let plan = BatchPlan { number, start: 0, end: 0, first_line: 2, skip: Vec::new(), recipients: 10 };
        let last_failure = failed.map(|(attempt, seconds)| AttemptFailure {
            attempt,
            at: at(seconds),
            class: FailureClass::HttpStatus,
            error: format!("status 503 (batch {number})"),
            retry_at: Some(at(seconds + 20)),
        });
        CampaignBatch { plan, state, last_failure }
    }

    fn sending(attempts: u32) -> BatchState {
        BatchState::Sending { attempts, since: at(-5) }
    }

    #[test]
    fn a_campaign_is_in_trouble_while_a_failed_batch_is_unanswered() {
        let answered = BatchState::Answered { attempts: 3, at: at(30), sent: 10, failed: 0 };
        let cases: [(Vec<CampaignBatch>, i64, Option<&str>); 6] = [
            (vec![batch(1, BatchState::Planned, None), batch(2, sending(1), None)], 0, None),
            // Answered after failures: kept for the record, not current.
            (vec![batch(1, answered, Some((2, 0))), batch(2, sending(1), None)], 0, None),
            (
                vec![batch(11, answered, None), batch(12, sending(3), Some((3, 0)))],
                0,
                Some(
                    "retrying: batch 12, attempt 3 of 8, last error: status 503 (batch 12) at 03:12:04 UTC; next try in 20 s",
                ),
            ),
            (
                vec![batch(12, sending(3), Some((3, 0)))],
                19,
                Some(
                    "retrying: batch 12, attempt 3 of 8, last error: status 503 (batch 12) at 03:12:04 UTC; next try in 1 s",
                ),
            ),
            (
                vec![batch(12, sending(3), Some((3, 0)))],
                25,
                Some(
                    "retrying: batch 12, attempt 3 of 8, last error: status 503 (batch 12) at 03:12:04 UTC; next try due now",
                ),
            ),
            // The batch with the most failed attempts is shown (the first of them), the others
            // counted.
            (
                vec![
                    batch(4, sending(2), Some((1, 0))),
                    batch(5, sending(2), Some((2, 3))),
                    batch(6, sending(2), Some((2, 1))),
                    batch(7, sending(1), Some((1, 2))),
                ],
                4,
                Some(
                    "retrying: batch 5, attempt 2 of 8, last error: status 503 (batch 5) at 03:12:07 UTC; next try in 19 s (3 more batches retrying)",
                ),
            ),
        ];
        for (batches, now, expected) in cases {
            assert_eq!(Trouble::of(&batches).map(|trouble| trouble.sentence(at(now))).as_deref(), expected);
        }
        // The eighth failure in a row paused the campaign; after a resume, the count goes on to 16.
        let mut halted = batch(12, sending(8), Some((8, 0)));
        halted.last_failure.as_mut().unwrap().retry_at = None;
        assert_eq!(
            Trouble::of(std::slice::from_ref(&halted)).unwrap().sentence(at(5)),
            "paused after failures: batch 12, attempt 8 of 8, last error: status 503 (batch 12) at 03:12:04 UTC; resume \
             the campaign once the channel takes messages again"
        );
        let resumed = [batch(12, sending(9), Some((9, 0)))];
        assert!(Trouble::of(&resumed).unwrap().sentence(at(5)).contains("attempt 9 of 16,"));
        let again = [batch(4, sending(3), Some((2, 0)))];
        let trouble = Trouble::of(&again).unwrap();
        assert!(trouble.in_flight);
        assert!(trouble.sentence(at(30)).ends_with("; attempt 3 of 8 in flight now"), "{}", trouble.sentence(at(30)));
    }
}
