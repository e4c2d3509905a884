//! How a campaign's progress looks on its way to a database, for every backend: the rules a
//! campaign write must follow that need no stored row (a key naming its incident, a plan numbered
//! 1 to n, no batch named twice in one call), checked once here, and the rows it writes, encoded
//! (times as text, a batch's skipped lines as JSON) and owned, so that they can travel to a
//! writer. Also the campaign types the `Store` trait speaks in (a batch as stored, its state, an
//! answer, the totals, a refusal).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Error;
use super::rows::{parse_timestamp, timestamp};
use crate::campaign::{AttemptFailure, BatchPlan, FailureClass};

/// The most characters of a failed attempt's error kept on its batch: the channel's words and
/// the start of its answer, not a whole error page.
pub(crate) const FAILURE_CHARS: usize = 1_000;

/// A campaign write, checked and encoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CampaignRows {
    pub campaign: String,
    pub write: CampaignWrite,
}

/// What a campaign write stores.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CampaignWrite {
    /// The plan: the campaign's incident and its batches, in number order.
    Plan { incident: String, batches: Vec<PlanRow> },
    /// Batches marked in flight, at a time.
    Sending { numbers: Vec<u32>, at: String },
    /// Batches' answers.
    Answered(Vec<AnswerRow>),
    /// A batch's failed attempt.
    Failed(FailureRow),
}

/// A failed attempt as stored on its batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FailureRow {
    pub number: u32,
    pub attempt: u32,
    pub at: String,
    pub class: &'static str,
    pub error: String,
    pub retry_at: Option<String>,
}

/// A planned batch as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlanRow {
    pub number: u32,
    pub start: i64,
    pub end: i64,
    pub first_line: i64,
    /// The lines not sent, as a JSON array of numbers.
    pub skip: String,
    pub recipients: u32,
}

/// A batch's answer as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AnswerRow {
    pub number: u32,
    pub at: String,
    pub sent: u32,
    pub failed: Vec<(String, String)>,
    pub leaves: Vec<u8>,
}

impl CampaignRows {
    /// The plan of `campaign`: its key must name an incident, a phase and a step, and its batches
    /// run 1 to n in order, each a byte range that does not end before it starts.
    pub fn plan(campaign: &str, batches: &[BatchPlan]) -> Result<CampaignRows, Error> {
        let incident = incident_of(campaign)?.to_string();
        let rows = batches
            .iter()
            .enumerate()
            .map(|(index, batch)| {
                let expected = index as u64 + 1;
                if u64::from(batch.number) != expected {
                    return Err(invalid(
                        campaign,
                        format!(
                            "its batches are numbered 1 to {} in order, and batch {} comes where batch {expected} belongs",
                            batches.len(),
                            batch.number
                        ),
                    ));
                }
                if batch.end < batch.start {
                    let problem =
                        format!("batch {} ends (byte {}) before it starts (byte {})", batch.number, batch.end, batch.start);
                    return Err(invalid(campaign, problem));
                }
                let offset = |value: u64, what: &str| {
                    i64::try_from(value)
                        .map_err(|_| invalid(campaign, format!("batch {}'s {what} {value} is out of range", batch.number)))
                };
                Ok(PlanRow {
                    number: batch.number,
                    start: offset(batch.start, "start")?,
                    end: offset(batch.end, "end")?,
                    first_line: offset(batch.first_line, "first line")?,
                    skip: serde_json::to_string(&batch.skip).expect("numbers encode as JSON"),
                    recipients: batch.recipients,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(CampaignRows { campaign: campaign.to_string(), write: CampaignWrite::Plan { incident, batches: rows } })
    }

    /// Batches of `campaign` marked sending at `at`, each named once.
    pub fn sending(campaign: &str, numbers: &[u32], at: DateTime<Utc>) -> Result<CampaignRows, Error> {
        incident_of(campaign)?;
        once_each(campaign, numbers.iter().copied())?;
        let write = CampaignWrite::Sending { numbers: numbers.to_vec(), at: timestamp(at) };
        Ok(CampaignRows { campaign: campaign.to_string(), write })
    }

    /// Answers of batches of `campaign`, each batch answered once.
    pub fn answered(campaign: &str, results: &[BatchResult]) -> Result<CampaignRows, Error> {
        incident_of(campaign)?;
        once_each(campaign, results.iter().map(|result| result.number))?;
        let rows = results
            .iter()
            .map(|result| AnswerRow {
                number: result.number,
                at: timestamp(result.at),
                sent: result.sent,
                failed: result.failed.clone(),
                leaves: result.leaves.clone(),
            })
            .collect();
        Ok(CampaignRows { campaign: campaign.to_string(), write: CampaignWrite::Answered(rows) })
    }

    /// A failed attempt of batch `number` of `campaign`: an attempt counts from 1, and its error,
    /// cut to [`FAILURE_CHARS`], says something.
    pub fn attempt_failed(campaign: &str, number: u32, failure: &AttemptFailure) -> Result<CampaignRows, Error> {
        incident_of(campaign)?;
        if failure.attempt == 0 {
            return Err(invalid(
                campaign,
                format!("batch {number}'s failed attempt is numbered 0; attempts count from 1"),
            ));
        }
        let error = failure.error.trim();
        if error.is_empty() {
            return Err(invalid(campaign, format!("batch {number}'s failed attempt {} says nothing", failure.attempt)));
        }
        let error = match error.char_indices().nth(FAILURE_CHARS) {
            Some((cut, _)) => format!("{} [...]", &error[..cut]),
            None => error.to_string(),
        };
        let write = CampaignWrite::Failed(FailureRow {
            number,
            attempt: failure.attempt,
            at: timestamp(failure.at),
            class: failure.class.as_str(),
            error,
            retry_at: failure.retry_at.map(timestamp),
        });
        Ok(CampaignRows { campaign: campaign.to_string(), write })
    }

    /// Whether the write changes nothing, so that a backend need not be asked.
    pub fn is_empty(&self) -> bool {
        match &self.write {
            CampaignWrite::Plan { .. } => false,
            CampaignWrite::Sending { numbers, .. } => numbers.is_empty(),
            CampaignWrite::Answered(rows) => rows.is_empty(),
            CampaignWrite::Failed(_) => false,
        }
    }

    /// The refusal of this write for `refusal`.
    pub fn refused(&self, refusal: CampaignRefusal) -> Error {
        Error::Campaign { campaign: self.campaign.clone(), refusal }
    }
}

/// What the stored batch (its `state` and `attempts`, `None` when the plan has none) does not
/// allow of a failed attempt's record: every backend checks it the same way, before it writes.
pub(crate) fn failure_refusal(row: &FailureRow, stored: Option<(&str, i64)>) -> Option<CampaignRefusal> {
    let number = row.number;
    match stored {
        None => Some(CampaignRefusal::Unknown(number)),
        Some(("answered", _)) => Some(CampaignRefusal::Answered(number)),
        Some(("sending", attempts)) if i64::from(row.attempt) > attempts => Some(CampaignRefusal::Invalid(format!(
            "batch {number} failed attempt {}, and it was marked in flight {attempts} times",
            row.attempt
        ))),
        Some(("sending", _)) => None,
        Some(_) => Some(CampaignRefusal::NotSending(number)),
    }
}

/// The incident of a campaign key `INCIDENT/PHASE/STEP`: what comes before its last two parts.
pub(crate) fn incident_of(campaign: &str) -> Result<&str, Error> {
    let mut parts = campaign.rsplitn(3, '/');
    let (step, phase, incident) = (parts.next(), parts.next(), parts.next());
    match (incident, phase, step) {
        (Some(incident), Some(phase), Some(step)) if !incident.is_empty() && !phase.is_empty() && !step.is_empty() => {
            Ok(incident)
        }
        _ => Err(invalid(campaign, "its key is not `INCIDENT/PHASE/STEP`".into())),
    }
}

fn once_each(campaign: &str, numbers: impl Iterator<Item = u32>) -> Result<(), Error> {
    let mut seen = HashSet::new();
    for number in numbers {
        if !seen.insert(number) {
            return Err(invalid(campaign, format!("batch {number} is named twice")));
        }
    }
    Ok(())
}

fn invalid(campaign: &str, problem: String) -> Error {
    Error::Campaign { campaign: campaign.to_string(), refusal: CampaignRefusal::Invalid(problem) }
}

/// A campaign's batch as every backend stores it, read back.
#[derive(sqlx::FromRow)]
pub(crate) struct BatchRow {
    number: i64,
    start_byte: i64,
    end_byte: i64,
    first_line: i64,
    skip: String,
    recipients: i64,
    state: String,
    attempts: i64,
    since: Option<String>,
    answered_at: Option<String>,
    sent: Option<i64>,
    failed: Option<i64>,
    failed_attempt: Option<i64>,
    failed_at: Option<String>,
    failure_class: Option<String>,
    failure: Option<String>,
    retry_at: Option<String>,
}

impl BatchRow {
    pub(crate) fn batch(self, campaign: &str) -> Result<CampaignBatch, Error> {
        let number = count(campaign, self.number)?;
        let corrupt = |what: &str| Error::Corrupt(format!("batch {number} of campaign `{campaign}` {what}"));
        let state = match (self.state.as_str(), self.since, self.answered_at, self.sent, self.failed) {
            ("planned", None, None, None, None) => BatchState::Planned,
            ("sending", Some(since), None, None, None) => {
                BatchState::Sending { attempts: count(campaign, self.attempts)?, since: parse_timestamp(&since)? }
            }
            ("answered", Some(_), Some(at), Some(sent), Some(failed)) => BatchState::Answered {
                attempts: count(campaign, self.attempts)?,
                at: parse_timestamp(&at)?,
                sent: count(campaign, sent)?,
                failed: count(campaign, failed)?,
            },
            (state, ..) => return Err(corrupt(&format!("is `{state}` without what that state needs"))),
        };
        let skip = serde_json::from_str(&self.skip)
            .map_err(|error| corrupt(&format!("has lines to skip that are not line numbers: {error}")))?;
        let offset = |value: i64| u64::try_from(value).map_err(|_| corrupt(&format!("has a negative offset {value}")));
        let plan = BatchPlan {
            number,
            start: offset(self.start_byte)?,
            end: offset(self.end_byte)?,
            first_line: offset(self.first_line)?,
            skip,
            recipients: count(campaign, self.recipients)?,
        };
        let last_failure = match (self.failed_attempt, self.failed_at, self.failure_class, self.failure) {
            (None, None, None, None) => None,
            (Some(attempt), Some(at), Some(class), Some(error)) => Some(AttemptFailure {
                attempt: count(campaign, attempt)?,
                at: parse_timestamp(&at)?,
                class: FailureClass::parse(&class)
                    .ok_or_else(|| corrupt(&format!("has a failure of an unknown class `{class}`")))?,
                error,
                retry_at: self.retry_at.as_deref().map(parse_timestamp).transpose()?,
            }),
            _ => return Err(corrupt("has part of a failed attempt")),
        };
        Ok(CampaignBatch { plan, state, last_failure })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProgressRow {
    id: String,
    batches: i64,
    planned: i64,
    sending: i64,
    answered: i64,
    recipients: i64,
    sent: i64,
    failed: i64,
    retrying: i64,
    failed_attempts: i64,
}

impl ProgressRow {
    /// The campaign's key and its totals.
    pub(crate) fn progress(self) -> Result<(String, CampaignProgress), Error> {
        let id = self.id.as_str();
        let progress = CampaignProgress {
            batches: count(id, self.batches)?,
            planned: count(id, self.planned)?,
            sending: count(id, self.sending)?,
            answered: count(id, self.answered)?,
            recipients: total(id, self.recipients)?,
            sent: total(id, self.sent)?,
            failed: total(id, self.failed)?,
            retrying: count(id, self.retrying)?,
            failed_attempts: total(id, self.failed_attempts)?,
        };
        Ok((self.id, progress))
    }
}

/// A stored batch number or count, which phasegate wrote from a `u32`.
pub(crate) fn count(campaign: &str, value: i64) -> Result<u32, Error> {
    u32::try_from(value)
        .map_err(|_| Error::Corrupt(format!("campaign `{campaign}` has a count or number out of range: {value}")))
}

fn total(campaign: &str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt(format!("campaign `{campaign}` has a negative total: {value}")))
}

/// A batch of a campaign as stored: its plan, how far it has come, and its last failed attempt
/// (kept after a later attempt and after the answer, for the record: it is current only while
/// the batch is [`BatchState::Sending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignBatch {
    pub plan: BatchPlan,
    pub state: BatchState,
    pub last_failure: Option<AttemptFailure>,
}

/// How far a campaign's batch has come. It only moves forward: planned, then sending (again, on
/// each attempt), then answered for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Planned,
    /// Marked in flight `attempts` times; the last at `since`. After a crash these are the
    /// possible repeats.
    Sending {
        attempts: u32,
        since: DateTime<Utc>,
    },
    /// Answered at `at`, after `attempts` marks in flight: `sent` recipients sent, `failed` not.
    Answered {
        attempts: u32,
        at: DateTime<Utc>,
        sent: u32,
        failed: u32,
    },
}

/// The answer to one batch of a campaign, to record with [`Store::campaign_answered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    pub number: u32,
    pub at: DateTime<Utc>,
    pub sent: u32,
    /// Recipients not sent, for good: (recipient id, reason).
    pub failed: Vec<(String, String)>,
    /// The batch's Merkle leaves, encoded: the store keeps them as given.
    pub leaves: Vec<u8>,
}

/// A campaign's totals: its batches by state, the recipients its plan sends to, and of those
/// in answered batches, how many were sent and how many failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CampaignProgress {
    pub batches: u32,
    pub planned: u32,
    pub sending: u32,
    pub answered: u32,
    pub recipients: u64,
    pub sent: u64,
    pub failed: u64,
    /// Batches in flight whose last attempt failed (retried after a wait), and their failed
    /// attempts' numbers summed, which moves with each failure and each answer of theirs.
    pub retrying: u32,
    pub failed_attempts: u64,
}

/// Why a campaign write was refused (see [`Error::Campaign`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignRefusal {
    /// The campaign has a plan already.
    Planned,
    /// Its plan has no batch with this number (or it has no plan).
    Unknown(u32),
    /// The batch was answered: it is never sent or answered again.
    Answered(u32),
    /// The batch was never marked sending, so it cannot have an answer.
    NotSending(u32),
    /// What was given breaks a rule: the problem, in words.
    Invalid(String),
}

impl std::fmt::Display for CampaignRefusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CampaignRefusal::Planned => write!(formatter, "it is planned already"),
            CampaignRefusal::Unknown(number) => write!(formatter, "its plan has no batch {number}"),
            CampaignRefusal::Answered(number) => write!(formatter, "batch {number} is answered already"),
            CampaignRefusal::NotSending(number) => write!(formatter, "batch {number} was not marked sending"),
            CampaignRefusal::Invalid(problem) => write!(formatter, "{problem}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(number: u32, start: u64, end: u64) -> BatchPlan {
        BatchPlan { number, start, end, first_line: 2, skip: vec![3, 9], recipients: 10 }
    }

    fn problem(result: Result<CampaignRows, Error>) -> String {
        match result {
            Err(Error::Campaign { refusal: CampaignRefusal::Invalid(problem), .. }) => problem,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_campaign_key_names_its_incident() {
        let cases = [
            ("inc-1/notify/customers", Some("inc-1")),
            ("a/b/c/d", Some("a/b")),
            ("inc-1/notify", None),
            ("inc-1//customers", None),
            ("/notify/customers", None),
            ("inc-1/notify/", None),
            ("", None),
        ];
        for (campaign, expected) in cases {
            assert_eq!(incident_of(campaign).ok(), expected, "{campaign:?}");
        }
    }

    #[test]
    fn a_plan_is_numbered_one_to_n_in_order() {
        let campaign = "inc-1/notify/customers";
        let cases: [(&[BatchPlan], Option<&str>); 6] = [
            (&[], None),
            (&[batch(1, 0, 10), batch(2, 10, 20)], None),
            (&[batch(2, 0, 10)], Some("batch 2 comes where batch 1 belongs")),
            (&[batch(1, 0, 10), batch(1, 10, 20)], Some("batch 1 comes where batch 2 belongs")),
            (&[batch(1, 0, 10), batch(3, 10, 20)], Some("batch 3 comes where batch 2 belongs")),
            (&[batch(1, 10, 9)], Some("batch 1 ends (byte 9) before it starts (byte 10)")),
        ];
        for (batches, expected) in cases {
            match expected {
                None => {
                    let rows = CampaignRows::plan(campaign, batches).unwrap();
                    let CampaignWrite::Plan { incident, batches: rows } = rows.write else { panic!("a plan") };
                    assert_eq!((incident.as_str(), rows.len()), ("inc-1", batches.len()));
                    assert!(rows.iter().all(|row| row.skip == "[3,9]"));
                }
                Some(expected) => {
                    let problem = problem(CampaignRows::plan(campaign, batches));
                    assert!(problem.contains(expected), "{problem}");
                }
            }
        }
    }

    #[test]
    fn a_batch_is_named_once_a_call() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let campaign = "inc-1/notify/customers";
        assert!(CampaignRows::sending(campaign, &[1, 2], at).is_ok());
        assert_eq!(problem(CampaignRows::sending(campaign, &[1, 2, 1], at)), "batch 1 is named twice");
        let result = BatchResult { number: 4, at, sent: 1, failed: Vec::new(), leaves: Vec::new() };
        assert_eq!(problem(CampaignRows::answered(campaign, &[result.clone(), result])), "batch 4 is named twice");
        assert_eq!(problem(CampaignRows::sending("inc-1", &[1], at)), "its key is not `INCIDENT/PHASE/STEP`");
    }
}
