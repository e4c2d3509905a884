//! Reading campaigns' progress back (the writes are the writer's, `writer/campaign.rs`): through
//! the read-only pool, each as one statement, so that what it reads is one commit's state.

use sqlx::sqlite::SqlitePool;

use super::super::rows::parse_timestamp;
use super::super::{BatchState, CampaignBatch, CampaignProgress, Error};
use crate::campaign::BatchPlan;

pub(super) async fn batches(reads: &SqlitePool, campaign: &str) -> Result<Vec<CampaignBatch>, Error> {
    let rows: Vec<BatchRow> = sqlx::query_as(
        "SELECT number, start_byte, end_byte, first_line, skip, recipients, state, attempts, since, answered_at,
                sent, failed
         FROM campaign_batches WHERE campaign = ? ORDER BY number",
    )
    .bind(campaign)
    .fetch_all(reads)
    .await?;
    rows.into_iter().map(|row| row.batch(campaign)).collect()
}

pub(super) async fn failures(reads: &SqlitePool, campaign: &str) -> Result<Vec<(u32, String, String)>, Error> {
    // The index on (campaign, number) holds each row's rowid, the order its answer gave them.
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT number, recipient, reason FROM campaign_failures WHERE campaign = ? ORDER BY number, rowid",
    )
    .bind(campaign)
    .fetch_all(reads)
    .await?;
    rows.into_iter().map(|(number, recipient, reason)| Ok((count(campaign, number)?, recipient, reason))).collect()
}

pub(super) async fn failure_reasons(
    reads: &SqlitePool,
    campaign: &str,
    limit: u32,
) -> Result<Vec<(String, u64)>, Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(*) AS times FROM campaign_failures WHERE campaign = ?
         GROUP BY reason ORDER BY times DESC, reason LIMIT ?",
    )
    .bind(campaign)
    .bind(i64::from(limit))
    .fetch_all(reads)
    .await?;
    Ok(rows.into_iter().map(|(reason, times)| (reason, times.unsigned_abs())).collect())
}

pub(super) async fn leaves(reads: &SqlitePool, campaign: &str) -> Result<Vec<(u32, Vec<u8>)>, Error> {
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT number, leaves FROM campaign_leaves WHERE campaign = ? ORDER BY number")
            .bind(campaign)
            .fetch_all(reads)
            .await?;
    rows.into_iter().map(|(number, leaves)| Ok((count(campaign, number)?, leaves))).collect()
}

pub(super) async fn progress(reads: &SqlitePool, incident: &str) -> Result<Vec<(String, CampaignProgress)>, Error> {
    let rows: Vec<ProgressRow> = sqlx::query_as(
        "SELECT campaigns.id, count(batch.number) AS batches,
                coalesce(sum(batch.state = 'planned'), 0) AS planned,
                coalesce(sum(batch.state = 'sending'), 0) AS sending,
                coalesce(sum(batch.state = 'answered'), 0) AS answered,
                coalesce(sum(batch.recipients), 0) AS recipients,
                coalesce(sum(batch.sent), 0) AS sent,
                coalesce(sum(batch.failed), 0) AS failed
         FROM campaigns LEFT JOIN campaign_batches AS batch ON batch.campaign = campaigns.id
         WHERE campaigns.incident = ? GROUP BY campaigns.id ORDER BY campaigns.rowid",
    )
    .bind(incident)
    .fetch_all(reads)
    .await?;
    rows.into_iter()
        .map(|row| {
            let id = row.id.as_str();
            let progress = CampaignProgress {
                batches: count(id, row.batches)?,
                planned: count(id, row.planned)?,
                sending: count(id, row.sending)?,
                answered: count(id, row.answered)?,
                recipients: total(id, row.recipients)?,
                sent: total(id, row.sent)?,
                failed: total(id, row.failed)?,
            };
            Ok((row.id, progress))
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct BatchRow {
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
}

impl BatchRow {
    fn batch(self, campaign: &str) -> Result<CampaignBatch, Error> {
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
        Ok(CampaignBatch { plan, state })
    }
}

#[derive(sqlx::FromRow)]
struct ProgressRow {
    id: String,
    batches: i64,
    planned: i64,
    sending: i64,
    answered: i64,
    recipients: i64,
    sent: i64,
    failed: i64,
}

/// A stored batch number or count, which phasegate wrote from a `u32`.
fn count(campaign: &str, value: i64) -> Result<u32, Error> {
    u32::try_from(value)
        .map_err(|_| Error::Corrupt(format!("campaign `{campaign}` has a count or number out of range: {value}")))
}

fn total(campaign: &str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt(format!("campaign `{campaign}` has a negative total: {value}")))
}
