//! Campaign writes in the writer's shared transaction: a campaign's plan, batches marked in
//! flight, batches' answers with their failures and Merkle leaves.
//!
//! Each write first reads the rows it moves (the writer holds the write lock, so they cannot
//! change before it writes) and refuses, having written nothing, what the campaign's progress
//! does not allow; a write of several statements then has a savepoint, so that if the schema
//! refuses one of them all the same, it is undone alone and the other jobs of the commit are
//! still stored.

use std::collections::HashMap;

use sqlx::QueryBuilder;
use sqlx::sqlite::Sqlite;
use tokio::sync::oneshot;

use super::super::super::campaign::{AnswerRow, CampaignRows, CampaignWrite, FailureRow, PlanRow, failure_refusal};
use super::super::super::{CampaignRefusal, Error};
use super::{Writer, is_constraint_violation};

/// Rows per statement: a plan's row binds seven values and an answer's four, well within
/// SQLite's limit on a statement's parameters (32,766).
const ROWS_PER_STATEMENT: usize = 1_000;

/// Leaves per statement: each is about 60 KB, and a statement's values are held in memory.
const LEAVES_PER_STATEMENT: usize = 64;

/// One campaign write on its way to the writer, with where its answer goes.
pub(in super::super) struct CampaignJob {
    pub(in super::super) rows: CampaignRows,
    pub(in super::super) answer: oneshot::Sender<Result<(), Error>>,
}

/// A batch's state as read before a write moves it.
#[derive(sqlx::FromRow)]
struct Stored {
    number: i64,
    state: String,
    recipients: i64,
    attempts: i64,
}

impl Writer {
    /// Stores each campaign write inside the open transaction, and says what each is answered:
    /// `Ok`, or why it was refused (and then it wrote nothing). A database failure is the error.
    pub(super) async fn write_campaigns(
        &mut self,
        jobs: &[CampaignJob],
    ) -> Result<Vec<Result<(), Error>>, sqlx::Error> {
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            answers.push(self.write_campaign(&job.rows).await?);
        }
        Ok(answers)
    }

    async fn write_campaign(&mut self, rows: &CampaignRows) -> Result<Result<(), Error>, sqlx::Error> {
        let campaign = rows.campaign.as_str();
        // A write of one statement is undone by SQLite alone if the schema refuses it.
        let savepoint = !matches!(rows.write, CampaignWrite::Sending { .. } | CampaignWrite::Failed(_));
        match &rows.write {
            CampaignWrite::Plan { .. } => {
                let planned: Option<i64> = sqlx::query_scalar("SELECT 1 FROM campaigns WHERE id = ?")
                    .bind(campaign)
                    .fetch_optional(&mut self.connection)
                    .await?;
                if planned.is_some() {
                    return Ok(Err(rows.refused(CampaignRefusal::Planned)));
                }
            }
            CampaignWrite::Sending { numbers, .. } => {
                let stored = self.stored(campaign, numbers.iter().copied()).await?;
                for &number in numbers {
                    let refusal = match stored.get(&number) {
                        None => CampaignRefusal::Unknown(number),
                        Some(batch) if batch.state == "answered" => CampaignRefusal::Answered(number),
                        Some(_) => continue,
                    };
                    return Ok(Err(rows.refused(refusal)));
                }
            }
            CampaignWrite::Answered(answers) => {
                let stored = self.stored(campaign, answers.iter().map(|answer| answer.number)).await?;
                for answer in answers {
                    let number = answer.number;
                    let refusal = match stored.get(&number) {
                        None => CampaignRefusal::Unknown(number),
                        Some(batch) if batch.state == "answered" => CampaignRefusal::Answered(number),
                        Some(batch) if batch.state != "sending" => CampaignRefusal::NotSending(number),
                        Some(batch) if i64::from(answer.sent) + answer.failed.len() as i64 != batch.recipients => {
                            CampaignRefusal::Invalid(format!(
                                "the answer of batch {number} accounts for {} recipients ({} sent, {} failed), and it has {}",
                                i64::from(answer.sent) + answer.failed.len() as i64,
                                answer.sent,
                                answer.failed.len(),
                                batch.recipients
                            ))
                        }
                        Some(_) => continue,
                    };
                    return Ok(Err(rows.refused(refusal)));
                }
            }
            CampaignWrite::Failed(row) => {
                let stored = self.stored(campaign, std::iter::once(row.number)).await?;
                let batch = stored.get(&row.number).map(|batch| (batch.state.as_str(), batch.attempts));
                if let Some(refusal) = failure_refusal(row, batch) {
                    return Ok(Err(rows.refused(refusal)));
                }
            }
        }
        if savepoint {
            sqlx::query("SAVEPOINT campaign").execute(&mut self.connection).await?;
        }
        let written = match &rows.write {
            CampaignWrite::Plan { incident, batches } => self.plan(campaign, incident, batches).await,
            CampaignWrite::Sending { numbers, at } => self.sending(campaign, numbers, at).await,
            CampaignWrite::Answered(answers) => self.answered(campaign, answers).await,
            CampaignWrite::Failed(row) => self.failed(campaign, row).await,
        };
        match written {
            Ok(()) => Ok(Ok(())),
            Err(error) if is_constraint_violation(&error) => {
                if savepoint {
                    sqlx::query("ROLLBACK TO campaign").execute(&mut self.connection).await?;
                }
                // What was checked above passed, so the schema refused something it did not check.
                let problem = format!("the database refused it: {error}");
                Ok(Err(rows.refused(CampaignRefusal::Invalid(problem))))
            }
            Err(error) => Err(error),
        }
    }

    /// The stored states of the batches `numbers` of `campaign`, by number.
    async fn stored(
        &mut self,
        campaign: &str,
        numbers: impl Iterator<Item = u32>,
    ) -> Result<HashMap<u32, Stored>, sqlx::Error> {
        let numbers = json_numbers(numbers);
        let stored: Vec<Stored> = sqlx::query_as(
            "SELECT number, state, recipients, attempts FROM campaign_batches
             WHERE campaign = ? AND number IN (SELECT value FROM json_each(?))",
        )
        .bind(campaign)
        .bind(numbers)
        .fetch_all(&mut self.connection)
        .await?;
        Ok(stored.into_iter().filter_map(|batch| Some((u32::try_from(batch.number).ok()?, batch))).collect())
    }

    async fn plan(&mut self, campaign: &str, incident: &str, batches: &[PlanRow]) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO campaigns (id, incident, batches) VALUES (?, ?, ?)")
            .bind(campaign)
            .bind(incident)
            .bind(batches.len() as i64)
            .execute(&mut self.connection)
            .await?;
        for chunk in batches.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO campaign_batches (campaign, number, start_byte, end_byte, first_line, skip, recipients) ",
            );
            insert.push_values(chunk, |mut row, batch| {
                row.push_bind(campaign)
                    .push_bind(batch.number)
                    .push_bind(batch.start)
                    .push_bind(batch.end)
                    .push_bind(batch.first_line)
                    .push_bind(batch.skip.as_str())
                    .push_bind(batch.recipients);
            });
            insert.build().execute(&mut self.connection).await?;
        }
        Ok(())
    }

    async fn sending(&mut self, campaign: &str, numbers: &[u32], at: &str) -> Result<(), sqlx::Error> {
        let marked = sqlx::query(
            "UPDATE campaign_batches SET state = 'sending', attempts = attempts + 1, since = ?
             WHERE campaign = ? AND number IN (SELECT value FROM json_each(?))",
        )
        .bind(at)
        .bind(campaign)
        .bind(json_numbers(numbers.iter().copied()))
        .execute(&mut self.connection)
        .await?;
        if marked.rows_affected() != numbers.len() as u64 {
            // Each was found above, under the write lock: nothing else can have moved them.
            return Err(sqlx::Error::Protocol(format!(
                "marked {} of the {} batches found",
                marked.rows_affected(),
                numbers.len()
            )));
        }
        Ok(())
    }

    async fn failed(&mut self, campaign: &str, row: &FailureRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE campaign_batches SET failed_attempt = ?, failed_at = ?, failure_class = ?, failure = ?,
                    retry_at = ?
             WHERE campaign = ? AND number = ?",
        )
        .bind(row.attempt)
        .bind(&row.at)
        .bind(row.class)
        .bind(&row.error)
        .bind(row.retry_at.as_deref())
        .bind(campaign)
        .bind(row.number)
        .execute(&mut self.connection)
        .await?;
        Ok(())
    }

    async fn answered(&mut self, campaign: &str, answers: &[AnswerRow]) -> Result<(), sqlx::Error> {
        for chunk in answers.chunks(ROWS_PER_STATEMENT) {
            let mut update = QueryBuilder::<Sqlite>::new(
                "UPDATE campaign_batches SET state = 'answered', answered_at = answer.column2, \
                 sent = answer.column3, failed = answer.column4 FROM (",
            );
            update.push_values(chunk, |mut row, answer| {
                row.push_bind(answer.number)
                    .push_bind(answer.at.as_str())
                    .push_bind(answer.sent)
                    .push_bind(answer.failed.len() as i64);
            });
            update.push(") AS answer WHERE campaign_batches.campaign = ");
            update.push_bind(campaign).push(" AND campaign_batches.number = answer.column1");
            update.build().execute(&mut self.connection).await?;
        }
        let failures: Vec<(u32, &(String, String))> =
            answers.iter().flat_map(|answer| answer.failed.iter().map(|failure| (answer.number, failure))).collect();
        for chunk in failures.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO campaign_failures (campaign, number, recipient, reason) ");
            insert.push_values(chunk, |mut row, (number, (recipient, reason))| {
                row.push_bind(campaign).push_bind(*number).push_bind(recipient.as_str()).push_bind(reason.as_str());
            });
            insert.build().execute(&mut self.connection).await?;
        }
        for chunk in answers.chunks(LEAVES_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO campaign_leaves (campaign, number, leaves) ");
            insert.push_values(chunk, |mut row, answer| {
                row.push_bind(campaign).push_bind(answer.number).push_bind(answer.leaves.as_slice());
            });
            insert.build().execute(&mut self.connection).await?;
        }
        Ok(())
    }
}

/// Batch numbers as a JSON array, for `json_each`: one value bound however many there are.
fn json_numbers(numbers: impl Iterator<Item = u32>) -> String {
    serde_json::to_string(&numbers.collect::<Vec<u32>>()).expect("numbers encode as JSON")
}
