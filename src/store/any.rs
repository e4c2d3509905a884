//! The store the commands open: a SQLite file or a PostgreSQL database, chosen by where the
//! configuration's `database` (or `--db`) points. A `postgres://` or `postgresql://` URL is
//! PostgreSQL; anything else is a file path.

use std::future::Future;
use std::path::Path;

use chrono::{DateTime, Utc};
use futures_util::future::Either;

use super::postgres::{self, PostgresStore};
use super::sqlite::{Chained, SqliteStore};
use super::{
    Append, BatchResult, CampaignBatch, CampaignProgress, ChainLink, Claimed, Counts, Delivery, Error, Fence, Headers,
    Inbound, IncidentSummary, Lease, Page, PendingEffect, Receipt, Store, StoredCheckpoint,
};
use crate::audit::keys::SignedCheckpoint;
use crate::campaign::{AttemptFailure, BatchPlan};
use crate::engine::Event;

/// One of the backends, opened.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Where a store is: a PostgreSQL URL, or a file path.
fn url(location: &Path) -> Option<&str> {
    location.to_str().filter(|text| postgres::is_url(text))
}

/// Where `location` is, for messages: a file's path, or a database's host and name (never its
/// password).
pub fn describe(location: &Path) -> String {
    match url(location) {
        Some(url) => postgres::describe(url),
        None => format!("`{}`", location.display()),
    }
}

impl AnyStore {
    /// Opens the store at `location`, bringing its schema up to date.
    pub async fn open(location: &Path) -> Result<AnyStore, Error> {
        Ok(match url(location) {
            Some(url) => AnyStore::Postgres(PostgresStore::open(url).await?),
            None => AnyStore::Sqlite(SqliteStore::open(location).await?),
        })
    }

    /// Opens an existing store only to read it (see [`SqliteStore::open_read_only`] and
    /// [`PostgresStore::open_read_only`]).
    pub async fn open_read_only(location: &Path) -> Result<AnyStore, Error> {
        Ok(match url(location) {
            Some(url) => AnyStore::Postgres(PostgresStore::open_read_only(url).await?),
            None => AnyStore::Sqlite(SqliteStore::open_read_only(location).await?),
        })
    }

    /// Where `location` is, for messages (see [`describe`]).
    pub fn describe(location: &Path) -> String {
        describe(location)
    }

    /// What opening a SQLite file chained (events stored before the hash chain existed); nothing
    /// for PostgreSQL, whose events were always chained.
    pub fn chained(&self) -> Chained {
        match self {
            AnyStore::Sqlite(store) => store.chained(),
            AnyStore::Postgres(_) => Chained::default(),
        }
    }

    /// How many processes carrying out work (`serve`, `run`) are present on the database now, by
    /// their presence leases ([`super::PRESENCE`]), when that can be told: on PostgreSQL the
    /// leases are rows every process sees; a SQLite store keeps them in its own process's
    /// memory (`leases.rs`), so another process cannot see them: `None`.
    pub async fn runtimes_present(&self) -> Result<Option<usize>, Error> {
        match self {
            AnyStore::Sqlite(_) => Ok(None),
            AnyStore::Postgres(store) => store.leases_held(super::PRESENCE).await.map(Some),
        }
    }

    /// Starts notifying and hearing the other replicas sharing a PostgreSQL database
    /// ([`PostgresStore::notify_replicas`]); nothing for a SQLite file.
    pub async fn notify_replicas(&self) -> Result<(), Error> {
        match self {
            AnyStore::Sqlite(_) => Ok(()),
            AnyStore::Postgres(store) => store.notify_replicas().await,
        }
    }

    /// Stops taking writes, waits for what was given, and closes the connections.
    pub async fn close(self) {
        match self {
            AnyStore::Sqlite(store) => store.close().await,
            AnyStore::Postgres(store) => store.close().await,
        }
    }
}

/// Calls the same method on whichever store it is. Each call is made here, not when the future is
/// first polled, so that writes keep the order of the calls (see [`Store::append`]).
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => Either::Left($call),
            AnyStore::Postgres($store) => Either::Right($call),
        }
    };
}

impl Store for AnyStore {
    fn append(&self, append: Append) -> impl Future<Output = Result<u64, Error>> + Send {
        each!(self, store => store.append(append))
    }

    fn delivery(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send {
        each!(self, store => store.delivery(source, id))
    }

    fn receive(
        &self,
        delivery: &Delivery,
        headers: &Headers,
        body: &[u8],
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        each!(self, store => store.receive(delivery, headers, body))
    }

    fn inbox(&self, limit: usize, bytes: usize) -> impl Future<Output = Result<Vec<Inbound>, Error>> + Send {
        each!(self, store => store.inbox(limit, bytes))
    }

    fn applied(
        &self,
        outcomes: &[(u64, String)],
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        each!(self, store => store.applied(outcomes, under))
    }

    fn inbox_depth(&self) -> impl Future<Output = Result<u64, Error>> + Send {
        each!(self, store => store.inbox_depth())
    }

    fn receipt(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<Receipt>, Error>> + Send {
        each!(self, store => store.receipt(source, id))
    }

    fn events(&self, incident: &str) -> impl Future<Output = Result<Vec<Event>, Error>> + Send {
        each!(self, store => store.events(incident))
    }

    fn events_page(
        &self,
        incident: &str,
        page: &Page,
    ) -> impl Future<Output = Result<Vec<(u64, Event)>, Error>> + Send {
        each!(self, store => store.events_page(incident, page))
    }

    fn event_counts(
        &self,
        incident: &str,
        after: u64,
        upto: u64,
    ) -> impl Future<Output = Result<Counts, Error>> + Send {
        each!(self, store => store.event_counts(incident, after, upto))
    }

    fn incident(&self, id: &str) -> impl Future<Output = Result<Option<IncidentSummary>, Error>> + Send {
        each!(self, store => store.incident(id))
    }

    fn incidents(&self) -> impl Future<Output = Result<Vec<IncidentSummary>, Error>> + Send {
        each!(self, store => store.incidents())
    }

    fn incidents_open_since(
        &self,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<IncidentSummary>, Error>> + Send {
        each!(self, store => store.incidents_open_since(at))
    }

    fn open_incident_by_key(
        &self,
        runbook_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send {
        each!(self, store => store.open_incident_by_key(runbook_id, key))
    }

    fn open_keys(&self) -> impl Future<Output = Result<Vec<(String, String, String)>, Error>> + Send {
        each!(self, store => store.open_keys())
    }

    fn pending_effects(&self, limit: usize) -> impl Future<Output = Result<Vec<PendingEffect>, Error>> + Send {
        each!(self, store => store.pending_effects(limit))
    }

    fn claim_effects(
        &self,
        holder: &str,
        limit: usize,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<Claimed>, Error>> + Send {
        each!(self, store => store.claim_effects(holder, limit, lease))
    }

    fn work_bell(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self {
            AnyStore::Sqlite(_) => None,
            AnyStore::Postgres(store) => store.work_bell(),
        }
    }

    fn renew_effects(
        &self,
        holder: &str,
        tokens: &[u64],
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<u64>, Error>> + Send {
        each!(self, store => store.renew_effects(holder, tokens, lease))
    }

    fn claim_leases(
        &self,
        holder: &str,
        names: &[String],
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send {
        each!(self, store => store.claim_leases(holder, names, lease))
    }

    fn claim_leases_up_to(
        &self,
        holder: &str,
        names: &[String],
        most: usize,
    ) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send {
        each!(self, store => store.claim_leases_up_to(holder, names, most))
    }

    fn leases_held(&self, prefix: &str) -> impl Future<Output = Result<usize, Error>> + Send {
        each!(self, store => store.leases_held(prefix))
    }

    fn forget_leases(
        &self,
        prefix: &str,
        ran_out_for: std::time::Duration,
    ) -> impl Future<Output = Result<usize, Error>> + Send {
        each!(self, store => store.forget_leases(prefix, ran_out_for))
    }

    fn renew_leases(
        &self,
        holder: &str,
        tokens: &[u64],
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<u64>, Error>> + Send {
        each!(self, store => store.renew_leases(holder, tokens, lease))
    }

    fn chain(
        &self,
        incident: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ChainLink>, Error>> + Send {
        each!(self, store => store.chain(incident, after, limit))
    }

    fn checkpoints(&self, incident: &str) -> impl Future<Output = Result<Vec<StoredCheckpoint>, Error>> + Send {
        each!(self, store => store.checkpoints(incident))
    }

    fn add_checkpoint(
        &self,
        incident: &str,
        checkpoint: &SignedCheckpoint,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        each!(self, store => store.add_checkpoint(incident, checkpoint, under))
    }

    fn campaign_plan(&self, campaign: &str, batches: &[BatchPlan]) -> impl Future<Output = Result<(), Error>> + Send {
        each!(self, store => store.campaign_plan(campaign, batches))
    }

    fn campaign_batches(&self, campaign: &str) -> impl Future<Output = Result<Vec<CampaignBatch>, Error>> + Send {
        each!(self, store => store.campaign_batches(campaign))
    }

    fn campaign_sending_under(
        &self,
        campaign: &str,
        numbers: &[u32],
        at: DateTime<Utc>,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        each!(self, store => store.campaign_sending_under(campaign, numbers, at, under))
    }

    fn campaign_answered_under(
        &self,
        campaign: &str,
        results: &[BatchResult],
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        each!(self, store => store.campaign_answered_under(campaign, results, under))
    }

    fn campaign_attempt_failed_under(
        &self,
        campaign: &str,
        number: u32,
        failure: &AttemptFailure,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        each!(self, store => store.campaign_attempt_failed_under(campaign, number, failure, under))
    }

    fn campaign_failures(
        &self,
        campaign: &str,
    ) -> impl Future<Output = Result<Vec<(u32, String, String)>, Error>> + Send {
        each!(self, store => store.campaign_failures(campaign))
    }

    fn campaign_failure_reasons(
        &self,
        campaign: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, Error>> + Send {
        each!(self, store => store.campaign_failure_reasons(campaign, limit))
    }

    fn campaign_leaves(&self, campaign: &str) -> impl Future<Output = Result<Vec<(u32, Vec<u8>)>, Error>> + Send {
        each!(self, store => store.campaign_leaves(campaign))
    }

    fn campaigns(&self, incident: &str) -> impl Future<Output = Result<Vec<(String, CampaignProgress)>, Error>> + Send {
        each!(self, store => store.campaigns(incident))
    }
}
