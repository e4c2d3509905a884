//! Campaigns' progress in PostgreSQL: the writer's checks and writes (inside its transaction), and
//! the reads, each one statement so that it reads one commit's state.

use std::collections::HashMap;

use sqlx::postgres::{PgConnection, PgPool};

use super::super::campaign::{
    AnswerRow, BatchRow, CampaignRows, CampaignWrite, FailureRow, PlanRow, ProgressRow, count, failure_refusal,
};
use super::super::{CampaignBatch, CampaignProgress, CampaignRefusal, Error};

/// Leaves per statement: each is about 60 KB, and a statement's values are held in memory.
const LEAVES_PER_STATEMENT: usize = 64;

/// A batch's state as read before a write moves it.
#[derive(sqlx::FromRow)]
struct Stored {
    number: i64,
    state: String,
    recipients: i64,
    attempts: i64,
}

/// What the campaign's progress does not allow of `rows`, found by reading the rows it would move
/// (locked until the transaction ends); `None` when it may be written.
pub(super) async fn check(
    connection: &mut PgConnection,
    rows: &CampaignRows,
) -> Result<Option<CampaignRefusal>, sqlx::Error> {
    let campaign = rows.campaign.as_str();
    match &rows.write {
        CampaignWrite::Plan { .. } => {
            let planned: Option<i32> = sqlx::query_scalar("SELECT 1 FROM campaigns WHERE id = $1")
                .bind(campaign)
                .fetch_optional(&mut *connection)
                .await?;
            Ok(planned.map(|_| CampaignRefusal::Planned))
        }
        CampaignWrite::Sending { numbers, .. } => {
            let stored = stored(connection, campaign, numbers.iter().copied()).await?;
            for &number in numbers {
                match stored.get(&number) {
                    None => return Ok(Some(CampaignRefusal::Unknown(number))),
                    Some(batch) if batch.state == "answered" => return Ok(Some(CampaignRefusal::Answered(number))),
                    Some(_) => {}
                }
            }
            Ok(None)
        }
        CampaignWrite::Answered(answers) => {
            let stored = stored(connection, campaign, answers.iter().map(|answer| answer.number)).await?;
            for answer in answers {
                let number = answer.number;
                let accounted = i64::from(answer.sent) + answer.failed.len() as i64;
                let refusal = match stored.get(&number) {
                    None => CampaignRefusal::Unknown(number),
                    Some(batch) if batch.state == "answered" => CampaignRefusal::Answered(number),
                    Some(batch) if batch.state != "sending" => CampaignRefusal::NotSending(number),
                    Some(batch) if accounted != batch.recipients => CampaignRefusal::Invalid(format!(
                        "the answer of batch {number} accounts for {accounted} recipients ({} sent, {} failed), and it has {}",
                        answer.sent,
                        answer.failed.len(),
                        batch.recipients
                    )),
                    Some(_) => continue,
                };
                return Ok(Some(refusal));
            }
            Ok(None)
        }
        CampaignWrite::Failed(row) => {
            let stored = stored(connection, campaign, std::iter::once(row.number)).await?;
            let batch = stored.get(&row.number).map(|batch| (batch.state.as_str(), batch.attempts));
            Ok(failure_refusal(row, batch))
        }
    }
}

/// The stored states of the batches `numbers` of `campaign`, by number, locked.
async fn stored(
    connection: &mut PgConnection,
    campaign: &str,
    numbers: impl Iterator<Item = u32>,
) -> Result<HashMap<u32, Stored>, sqlx::Error> {
    let numbers: Vec<i64> = numbers.map(i64::from).collect();
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT number, state, recipients, attempts FROM campaign_batches
         WHERE campaign = $1 AND number = ANY($2) ORDER BY number FOR UPDATE",
    )
    .bind(campaign)
    .bind(&numbers)
    .fetch_all(&mut *connection)
    .await?;
    Ok(stored.into_iter().filter_map(|batch| Some((u32::try_from(batch.number).ok()?, batch))).collect())
}

/// Writes what [`check`] allowed.
pub(super) async fn write(connection: &mut PgConnection, rows: &CampaignRows) -> Result<(), sqlx::Error> {
    let campaign = rows.campaign.as_str();
    match &rows.write {
        CampaignWrite::Plan { incident, batches } => plan(connection, campaign, incident, batches).await,
        CampaignWrite::Sending { numbers, at } => {
            let numbers: Vec<i64> = numbers.iter().map(|&number| i64::from(number)).collect();
            let marked = sqlx::query(
                "UPDATE campaign_batches SET state = 'sending', attempts = attempts + 1, since = $1
                 WHERE campaign = $2 AND number = ANY($3)",
            )
            .bind(at)
            .bind(campaign)
            .bind(&numbers)
            .execute(&mut *connection)
            .await?;
            if marked.rows_affected() != numbers.len() as u64 {
                // Each was found and locked by `check`: nothing else can have moved them.
                return Err(sqlx::Error::Protocol(format!(
                    "marked {} of the {} batches found",
                    marked.rows_affected(),
                    numbers.len()
                )));
            }
            Ok(())
        }
        CampaignWrite::Answered(answers) => answered(connection, campaign, answers).await,
        CampaignWrite::Failed(row) => failed(connection, campaign, row).await,
    }
}

async fn failed(connection: &mut PgConnection, campaign: &str, row: &FailureRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE campaign_batches SET failed_attempt = $1, failed_at = $2, failure_class = $3, failure = $4,
                retry_at = $5
         WHERE campaign = $6 AND number = $7",
    )
    .bind(i64::from(row.attempt))
    .bind(&row.at)
    .bind(row.class)
    .bind(&row.error)
    .bind(row.retry_at.as_deref())
    .bind(campaign)
    .bind(i64::from(row.number))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn plan(
    connection: &mut PgConnection,
    campaign: &str,
    incident: &str,
    batches: &[PlanRow],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO campaigns (id, incident, batches) VALUES ($1, $2, $3)")
        .bind(campaign)
        .bind(incident)
        .bind(batches.len() as i64)
        .execute(&mut *connection)
        .await?;
    if batches.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i64> = batches.iter().map(|batch| i64::from(batch.number)).collect();
    let starts: Vec<i64> = batches.iter().map(|batch| batch.start).collect();
    let ends: Vec<i64> = batches.iter().map(|batch| batch.end).collect();
    let lines: Vec<i64> = batches.iter().map(|batch| batch.first_line).collect();
    let skips: Vec<&str> = batches.iter().map(|batch| batch.skip.as_str()).collect();
    let recipients: Vec<i64> = batches.iter().map(|batch| i64::from(batch.recipients)).collect();
    // In number order: the trigger checks each is the next.
    sqlx::query(
        "INSERT INTO campaign_batches (campaign, number, start_byte, end_byte, first_line, skip, recipients)
         SELECT $1, number, start_byte, end_byte, first_line, skip, recipients
         FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[])
             WITH ORDINALITY AS given (number, start_byte, end_byte, first_line, skip, recipients, n)
         ORDER BY n",
    )
    .bind(campaign)
    .bind(&numbers)
    .bind(&starts)
    .bind(&ends)
    .bind(&lines)
    .bind(&skips)
    .bind(&recipients)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn answered(connection: &mut PgConnection, campaign: &str, answers: &[AnswerRow]) -> Result<(), sqlx::Error> {
    let numbers: Vec<i64> = answers.iter().map(|answer| i64::from(answer.number)).collect();
    let times: Vec<&str> = answers.iter().map(|answer| answer.at.as_str()).collect();
    let sent: Vec<i64> = answers.iter().map(|answer| i64::from(answer.sent)).collect();
    let failed: Vec<i64> = answers.iter().map(|answer| answer.failed.len() as i64).collect();
    sqlx::query(
        "UPDATE campaign_batches SET state = 'answered', answered_at = answer.at, sent = answer.sent,
                failed = answer.failed
         FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS answer (number, at, sent, failed)
         WHERE campaign_batches.campaign = $1 AND campaign_batches.number = answer.number",
    )
    .bind(campaign)
    .bind(&numbers)
    .bind(&times)
    .bind(&sent)
    .bind(&failed)
    .execute(&mut *connection)
    .await?;
    let failures: Vec<(i64, &str, &str)> = answers
        .iter()
        .flat_map(|answer| {
            answer
                .failed
                .iter()
                .map(|(recipient, reason)| (i64::from(answer.number), recipient.as_str(), reason.as_str()))
        })
        .collect();
    if !failures.is_empty() {
        let numbers: Vec<i64> = failures.iter().map(|failure| failure.0).collect();
        let recipients: Vec<&str> = failures.iter().map(|failure| failure.1).collect();
        let reasons: Vec<&str> = failures.iter().map(|failure| failure.2).collect();
        // In the order the answers gave them, which `seq` keeps.
        sqlx::query(
            "INSERT INTO campaign_failures (campaign, number, recipient, reason)
             SELECT $1, number, recipient, reason FROM unnest($2::bigint[], $3::text[], $4::text[])
                 WITH ORDINALITY AS given (number, recipient, reason, n)
             ORDER BY n",
        )
        .bind(campaign)
        .bind(&numbers)
        .bind(&recipients)
        .bind(&reasons)
        .execute(&mut *connection)
        .await?;
    }
    for chunk in answers.chunks(LEAVES_PER_STATEMENT) {
        let numbers: Vec<i64> = chunk.iter().map(|answer| i64::from(answer.number)).collect();
        let leaves: Vec<&[u8]> = chunk.iter().map(|answer| answer.leaves.as_slice()).collect();
        sqlx::query(
            "INSERT INTO campaign_leaves (campaign, number, leaves)
             SELECT $1, number, leaves FROM unnest($2::bigint[], $3::bytea[]) AS given (number, leaves)",
        )
        .bind(campaign)
        .bind(&numbers)
        .bind(&leaves)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

pub(super) async fn batches(reads: &PgPool, campaign: &str) -> Result<Vec<CampaignBatch>, Error> {
    let rows: Vec<BatchRow> = sqlx::query_as(
        "SELECT number, start_byte, end_byte, first_line, skip, recipients, state, attempts, since, answered_at,
                sent, failed, failed_attempt, failed_at, failure_class, failure, retry_at
         FROM campaign_batches WHERE campaign = $1 ORDER BY number",
    )
    .bind(campaign)
    .fetch_all(reads)
    .await?;
    rows.into_iter().map(|row| row.batch(campaign)).collect()
}

pub(super) async fn failures(reads: &PgPool, campaign: &str) -> Result<Vec<(u32, String, String)>, Error> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT number, recipient, reason FROM campaign_failures WHERE campaign = $1 ORDER BY number, seq",
    )
    .bind(campaign)
    .fetch_all(reads)
    .await?;
    rows.into_iter().map(|(number, recipient, reason)| Ok((count(campaign, number)?, recipient, reason))).collect()
}

pub(super) async fn failure_reasons(reads: &PgPool, campaign: &str, limit: u32) -> Result<Vec<(String, u64)>, Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(*) AS times FROM campaign_failures WHERE campaign = $1
         GROUP BY reason ORDER BY times DESC, reason LIMIT $2",
    )
    .bind(campaign)
    .bind(i64::from(limit))
    .fetch_all(reads)
    .await?;
    Ok(rows.into_iter().map(|(reason, times)| (reason, times.unsigned_abs())).collect())
}

pub(super) async fn leaves(reads: &PgPool, campaign: &str) -> Result<Vec<(u32, Vec<u8>)>, Error> {
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT number, leaves FROM campaign_leaves WHERE campaign = $1 ORDER BY number")
            .bind(campaign)
            .fetch_all(reads)
            .await?;
    rows.into_iter().map(|(number, leaves)| Ok((count(campaign, number)?, leaves))).collect()
}

pub(super) async fn progress(reads: &PgPool, incident: &str) -> Result<Vec<(String, CampaignProgress)>, Error> {
    let rows: Vec<ProgressRow> = sqlx::query_as(
        "SELECT campaigns.id, count(batch.number) AS batches,
                count(*) FILTER (WHERE batch.state = 'planned') AS planned,
                count(*) FILTER (WHERE batch.state = 'sending') AS sending,
                count(*) FILTER (WHERE batch.state = 'answered') AS answered,
                coalesce(sum(batch.recipients), 0)::bigint AS recipients,
                coalesce(sum(batch.sent), 0)::bigint AS sent,
                coalesce(sum(batch.failed), 0)::bigint AS failed,
                count(*) FILTER (WHERE batch.state = 'sending' AND batch.failed_attempt IS NOT NULL) AS retrying,
                coalesce(sum(batch.failed_attempt) FILTER (WHERE batch.state = 'sending'), 0)::bigint AS failed_attempts
         FROM campaigns LEFT JOIN campaign_batches AS batch ON batch.campaign = campaigns.id
         WHERE campaigns.incident = $1 GROUP BY campaigns.id, campaigns.seq ORDER BY campaigns.seq",
    )
    .bind(incident)
    .fetch_all(reads)
    .await?;
    rows.into_iter().map(ProgressRow::progress).collect()
}
