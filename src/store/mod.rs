//! The event store: where incidents' events and the side effects they lead to are kept.
//!
//! One trait, [`Store`], and one file per backend ([`sqlite`] is the embedded default). Every
//! backend passes the same contract suite (`contract.rs`), so the runtime can rely on what the
//! trait's documentation promises whichever backend it is given.
//!
//! The store knows events and effects only as JSON: `rows.rs` encodes them and checks the shape
//! of an append once for every backend, and each backend maps its rows through small wrapper
//! types, so the engine's types never know SQL.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::keys::SignedCheckpoint;
use crate::engine::{Effect, Event};

#[cfg(any(test, feature = "store-contract"))]
pub mod contract;
mod rows;
pub mod sqlite;

pub use sqlite::{Chained, SqliteStore};

/// The durable log of every incident, and the outbox of effects still to carry out.
///
/// An append is atomic: its events, its new effects and the completion of the effect whose result
/// it records are stored together or not at all. If the future of a call is dropped before it
/// answers, the append may or may not have happened; read the incident again to find out.
pub trait Store: Send + Sync + 'static {
    /// Appends `events` to `incident` if the incident's version (the number of events it has) is
    /// `expected`, puts `effects` in the outbox, and marks the incident's effect with the id
    /// `completes` done, all in one transaction. Returns the new version.
    ///
    /// A new incident has version 0 and its first event must be `incident_started`, naming it; no
    /// later event may be another `incident_started`. A version that is not `expected` is
    /// [`Error::Conflict`] and changes nothing, so of two writers that read the same version,
    /// exactly one wins. An effect id is unique among all incidents: one already in the outbox is
    /// refused. Completing an effect that is already done is allowed (a retry after a lost
    /// answer); completing one that the incident never put in the outbox is refused. Every refusal
    /// changes nothing.
    fn append(
        &self,
        incident: &str,
        expected: u64,
        events: &[Event],
        effects: &[Effect],
        completes: Option<&str>,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// [`Store::append`], recording that `deliveries` were taken in the same transaction: if one
    /// was already recorded, the append is [`Error::Duplicate`] (naming it) and changes nothing,
    /// so a webhook's retry or replay is never applied twice.
    fn append_delivered(
        &self,
        incident: &str,
        expected: u64,
        events: &[Event],
        effects: &[Effect],
        deliveries: &[Delivery],
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The incident a delivery was recorded with, if it was.
    fn delivery(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send;

    /// Keeps a webhook delivery as received, with its raw body, before anything acts on it, so
    /// that its sender can be answered once it is durable. `true` when it is new; `false` when a
    /// delivery with the same source and id was received before, which changes nothing.
    /// Deliveries received together share a commit.
    fn receive(&self, delivery: &Delivery, body: &[u8]) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Received deliveries not yet applied, in the order they were received: up to `limit` of
    /// them, and no more after their bodies reach `bytes` (the first is always given).
    fn inbox(&self, limit: usize, bytes: usize) -> impl Future<Output = Result<Vec<Inbound>, Error>> + Send;

    /// Marks received deliveries applied, each (by its `seq`) with what it did, as JSON, and lets
    /// go of their bodies. One already applied keeps what it was first marked with.
    fn applied(&self, outcomes: &[(u64, String)]) -> impl Future<Output = Result<(), Error>> + Send;

    /// How many received deliveries are not yet applied.
    fn inbox_depth(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// A received delivery: when it came and, once applied, when and what it did.
    fn receipt(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<Receipt>, Error>> + Send;

    /// Every event of `incident`, in order. [`Error::NotFound`] for an incident never started.
    fn events(&self, incident: &str) -> impl Future<Output = Result<Vec<Event>, Error>> + Send;

    /// The events of `incident` after the first `after`, in order: what a caller that already
    /// folded `after` events needs to catch up. Empty when there are none (or no such incident).
    fn events_after(&self, incident: &str, after: u64) -> impl Future<Output = Result<Vec<Event>, Error>> + Send;

    /// Up to `limit` events of `incident` after the first `after`, in order: one page of its log,
    /// for a reader that pages through it rather than folding it. Empty when there are none (or
    /// no such incident).
    fn events_page(
        &self,
        incident: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, Error>> + Send;

    /// The summary of one incident, if it was started.
    fn incident(&self, id: &str) -> impl Future<Output = Result<Option<IncidentSummary>, Error>> + Send;

    /// A summary of every incident, in the order they started.
    fn incidents(&self) -> impl Future<Output = Result<Vec<IncidentSummary>, Error>> + Send;

    /// The open incident that a trigger with deduplication key `key` started from `runbook_id`.
    /// Closed incidents are never returned: the same alert after the close opens a new incident.
    fn open_incident_by_key(
        &self,
        runbook_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;

    /// Every open incident that a trigger started, as (runbook id, key, incident): what the
    /// webhook inbox reads once a page instead of [`Store::open_incident_by_key`] per delivery.
    fn open_keys(&self) -> impl Future<Output = Result<Vec<(String, String, String)>, Error>> + Send;

    /// Up to `limit` effects not yet done, in the order they were put in the outbox.
    fn pending_effects(&self, limit: usize) -> impl Future<Output = Result<Vec<PendingEffect>, Error>> + Send;

    /// Up to `limit` events of `incident` after the first `after`, as stored: the canonical JSON
    /// and the hash recorded with each, for verification and export. Unlike [`Store::events`],
    /// this never refuses what it finds (a gap, an event that is not JSON): judging it is the
    /// verifier's job. Empty when there are none (or no such incident).
    fn chain(
        &self,
        incident: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ChainLink>, Error>> + Send;

    /// The signed checkpoints of `incident`, in order, as stored.
    fn checkpoints(&self, incident: &str) -> impl Future<Output = Result<Vec<StoredCheckpoint>, Error>> + Send;

    /// Stores a signed checkpoint of `incident`. It must be the incident's next (its number one
    /// more than the last one's) and cover more events than the last one, but no more than the
    /// incident has; otherwise it is refused with [`Error::Invalid`] and nothing changes (another
    /// process may have signed the same head first).
    fn add_checkpoint(
        &self,
        incident: &str,
        checkpoint: &SignedCheckpoint,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// A webhook delivery: the configured source it came from and its id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub source: String,
    pub id: String,
    pub received_at: DateTime<Utc>,
}

/// A received delivery waiting to be applied, with its raw body.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub seq: u64,
    pub delivery: Delivery,
    pub body: Vec<u8>,
    /// What the ids of its actions begin with: the Nth action is stored as delivery
    /// `{actions}/{N}` of the delivery's source, the same every time it is applied. Each delivery
    /// has its own, and they sort in the order received, so that storing them writes the index
    /// of deliveries in order (deliveries received before that scheme keep their own id).
    pub actions: String,
}

/// What became of a received delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub received_at: DateTime<Utc>,
    /// When it was applied, and what it did (JSON); `None` while it waits.
    pub applied: Option<(DateTime<Utc>, String)>,
}

/// An event as stored: its position, the hash recorded with it (absent only if someone removed
/// it) and its JSON, exactly as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLink {
    pub seq: u64,
    pub hash: Option<String>,
    pub event: String,
}

/// A signed checkpoint as stored: the canonical JSON of its body, which was signed, and the
/// signature in hex.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    pub number: u64,
    pub body: String,
    pub signature: String,
}

/// What listing incidents shows without folding their logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentSummary {
    pub id: String,
    pub runbook_id: String,
    /// The deduplication key of the trigger that started it, if one did.
    pub key: Option<String>,
    /// How many events it has: the version the next append must expect.
    pub version: u64,
    /// The time of its first event.
    pub started_at: DateTime<Utc>,
    /// The time of its latest event.
    pub updated_at: DateTime<Utc>,
    /// The time of its `incident_closed` event, once there is one.
    pub closed_at: Option<DateTime<Utc>>,
    /// The hash of its latest event, in hex.
    pub head: Option<String>,
    /// How many of its events its latest signed checkpoint covers (0 before the first).
    pub checkpointed: u64,
    /// When its latest checkpoint was signed.
    pub checkpointed_at: Option<DateTime<Utc>>,
}

/// An effect in the outbox, not yet done, and the incident whose events decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEffect {
    pub incident: String,
    pub effect: Effect,
}

/// Why the store could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Another append got there first: read the incident again and decide again.
    #[error("incident `{incident}` is at version {actual}, not {expected}")]
    Conflict { incident: String, expected: u64, actual: u64 },
    #[error("no incident `{incident}`")]
    NotFound { incident: String },
    /// The webhook delivery was already taken (with `incident`); nothing was stored.
    #[error("delivery `{id}` from `{origin}` was already taken (incident `{incident}`)")]
    Duplicate { origin: String, id: String, incident: String },
    /// A trigger's deduplication key is taken by an incident that is still open.
    #[error("runbook `{runbook_id}` already has incident `{open}` open with key `{key}`")]
    DuplicateKey { runbook_id: String, key: String, open: String },
    /// The append breaks a rule of the log (a bad first event, an effect queued twice, an unknown
    /// effect to complete); nothing was stored.
    #[error("cannot append to incident `{incident}`: {problem}")]
    Invalid { incident: String, problem: String },
    /// The database failed. Shared, because one failed commit answers every append it carried.
    #[error("the database failed")]
    Database(#[source] Arc<sqlx::Error>),
    /// A stored row cannot be read back as what phasegate wrote.
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// The store was opened only to read it (to verify or export what it holds).
    #[error("the database is open read-only, to check it without changing it")]
    ReadOnly,
    /// The database is older than what reading it needs, and opening it read-only does not bring
    /// it up to date.
    #[error(
        "the database was written by an older phasegate: {0}; a command that writes (`phasegate run`) brings it up to date"
    )]
    Outdated(String),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        Error::Database(Arc::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Error {
        Error::from(sqlx::Error::Migrate(Box::new(error)))
    }
}
