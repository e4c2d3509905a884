//! Reading campaigns' progress back (the writes are the writer's, `writer/campaign.rs`): through
//! the read-only pool, each as one statement, so that what it reads is one commit's state.

use sqlx::sqlite::SqlitePool;

use super::super::campaign::{BatchRow, ProgressRow, count};
use super::super::{CampaignBatch, CampaignProgress, Error};

pub(super) async fn batches(reads: &SqlitePool, campaign: &str) -> Result<Vec<CampaignBatch>, Error> {
    let rows: Vec<BatchRow> = sqlx::query_as(
        "SELECT number, start_byte, end_byte, first_line, skip, recipients, state, attempts, since, answered_at,
                sent, failed, failed_attempt, failed_at, failure_class, failure, retry_at
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
                coalesce(sum(batch.failed), 0) AS failed,
                coalesce(sum(batch.state = 'sending' AND batch.failed_attempt IS NOT NULL), 0) AS retrying,
                coalesce(sum(CASE WHEN batch.state = 'sending' THEN batch.failed_attempt END), 0) AS failed_attempts
         FROM campaigns LEFT JOIN campaign_batches AS batch ON batch.campaign = campaigns.id
         WHERE campaigns.incident = ? GROUP BY campaigns.id ORDER BY campaigns.rowid",
    )
    .bind(incident)
    .fetch_all(reads)
    .await?;
    rows.into_iter().map(ProgressRow::progress).collect()
}
