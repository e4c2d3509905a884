//! The rows the embedded store's reads map through, so that the engine's types never know SQL,
//! and the conversions between SQLite's signed integers and phasegate's unsigned ones.

use super::super::Error;

#[derive(sqlx::FromRow)]
pub(super) struct ChainRow {
    pub(super) seq: i64,
    pub(super) hash: Option<String>,
    pub(super) event: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct InboundRow {
    pub(super) seq: i64,
    pub(super) source: String,
    pub(super) id: String,
    pub(super) received_at: String,
    pub(super) headers: Option<String>,
    pub(super) body: Option<Vec<u8>>,
    pub(super) numbered: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct CheckpointRow {
    pub(super) number: i64,
    pub(super) body: String,
    pub(super) signature: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct EffectRow {
    pub(super) incident: String,
    pub(super) effect: String,
}

/// SQLite integers are signed; versions and sequence numbers never are.
pub(super) fn signed(number: u64) -> i64 {
    // No version reaches 2^63; one that claimed to would simply never match a stored version.
    i64::try_from(number).unwrap_or(i64::MAX)
}

pub(super) fn unsigned(number: i64) -> Result<u64, Error> {
    u64::try_from(number).map_err(|_| Error::Corrupt(format!("a stored version is negative: {number}")))
}
