//! The event store: where incidents' events and the side effects they lead to are kept.
//!
//! One trait, [`Store`], and one folder per backend: [`sqlite`], the embedded default, and
//! [`postgres`], the database several machines share. Every backend passes the same contract
//! suite (`contract.rs`), so the runtime can rely on what the trait's documentation promises
//! whichever backend it is given. [`AnyStore`] is the one the commands open: a SQLite file or a
//! `postgres://` URL, chosen when it is opened (`any.rs`).
//!
//! Customer campaigns keep their progress here too (`campaign.rs` checks and encodes it): which
//! batches of a campaign's list exist, which were marked in flight, which were answered, and
//! with what, so that a campaign resumes after a crash and never sends an answered batch again.
//!
//! The store knows events and effects only as JSON: `rows.rs` encodes them and checks the shape
//! of an append once for every backend, and each backend maps its rows through small wrapper
//! types, so the engine's types never know SQL.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::chain::Canonical;
use crate::audit::keys::SignedCheckpoint;
use crate::campaign::{AttemptFailure, BatchPlan};
use crate::engine::{Effect, Event};

mod any;
mod campaign;
#[cfg(any(test, feature = "store-contract"))]
pub mod contract;
pub mod copy;
mod leases;
mod page;
pub mod postgres;
mod rows;
pub mod sqlite;

pub use any::AnyStore;
pub use campaign::{BatchResult, BatchState, CampaignBatch, CampaignProgress, CampaignRefusal};
pub use page::{Counts, Cursor, Page};
pub use postgres::PostgresStore;
pub use sqlite::{Chained, SqliteStore};

/// The durable log of every incident, and the outbox of effects still to carry out.
///
/// An append is atomic: its events, its new effects and the completion of the effect whose result
/// it records are stored together or not at all. If the future of a call is dropped before it
/// answers, the append may or may not have happened; read the incident again to find out.
pub trait Store: Send + Sync + 'static {
    /// Stores an [`Append`] if the incident's version (the number of events it has) is the one it
    /// expects: its events, its new effects, the completion of the effect whose result it records
    /// and the webhook deliveries it takes, all in one transaction. Returns the new version. This
    /// is the one way anything is appended.
    ///
    /// A new incident has version 0 and its first event must be `incident_started`, naming it; no
    /// later event may be another `incident_started`. A version that is not the expected one is
    /// [`Error::Conflict`] and changes nothing, so of two writers that read the same version,
    /// exactly one wins. An effect id is unique among all incidents: one already in the outbox is
    /// refused. Completing an effect that is already done is allowed (a retry after a lost
    /// answer); completing one that the incident never put in the outbox is refused. A delivery
    /// already recorded is [`Error::Duplicate`] (naming it), so a webhook's retry or replay is
    /// never applied twice. Every refusal changes nothing.
    ///
    /// Appends are taken in the order of the calls, before their futures are first polled: a
    /// caller may make several calls in turn and await the answers together (the store's queue
    /// holds 1,024 appends; beyond that, an append waits for room when its future is polled).
    fn append(&self, append: Append) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The incident a delivery was recorded with, if it was.
    fn delivery(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send;

    /// Keeps a webhook delivery as received, with its raw body and the headers given (kept as
    /// they are: choosing which to keep is the caller's), before anything acts on it, so that its
    /// sender can be answered once it is durable. `true` when it is new; `false` when a delivery
    /// with the same source and id was received before, which changes nothing (its first headers
    /// and body stay). Deliveries received together share a commit.
    fn receive(
        &self,
        delivery: &Delivery,
        headers: &Headers,
        body: &[u8],
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Received deliveries not yet applied, in the order they were received: up to `limit` of
    /// them, and no more after their bodies and headers reach `bytes` (the first is always given).
    fn inbox(&self, limit: usize, bytes: usize) -> impl Future<Output = Result<Vec<Inbound>, Error>> + Send;

    /// Marks received deliveries applied, each (by its `seq`) with what it did, as JSON, and lets
    /// go of their bodies and headers. One already applied keeps what it was first marked with.
    /// Under a [`Fence`], only while its claim stands: otherwise [`Error::LeaseLost`], and
    /// nothing is marked.
    fn applied(
        &self,
        outcomes: &[(u64, String)],
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// How many received deliveries are not yet applied.
    fn inbox_depth(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// A received delivery: when it came and, once applied, when and what it did.
    fn receipt(&self, source: &str, id: &str) -> impl Future<Output = Result<Option<Receipt>, Error>> + Send;

    /// Every event of `incident`, in order. [`Error::NotFound`] for an incident never started.
    fn events(&self, incident: &str) -> impl Future<Output = Result<Vec<Event>, Error>> + Send;

    /// The events of `incident` after the first `after`, in order: what a caller that already
    /// folded `after` events needs to catch up. Empty when there are none (or no such incident).
    fn events_after(&self, incident: &str, after: u64) -> impl Future<Output = Result<Vec<Event>, Error>> + Send {
        async move {
            let rest = Page::after(after, usize::MAX);
            let page = self.events_page(incident, &rest).await?;
            Ok(page.into_iter().map(|(_, event)| event).collect())
        }
    }

    /// One [`Page`] of `incident`'s log, each event with its position (1-based): for a reader
    /// that pages through it rather than folding it. Empty when there are none (or no such
    /// incident).
    fn events_page(&self, incident: &str, page: &Page)
    -> impl Future<Output = Result<Vec<(u64, Event)>, Error>> + Send;

    /// How many events of each type `incident`'s log holds after position `after` up to position
    /// `upto` (both 0 and the version: the whole log), by type name in order, without reading the
    /// events themselves. Empty for an incident with none there (or no such incident).
    fn event_counts(&self, incident: &str, after: u64, upto: u64)
    -> impl Future<Output = Result<Counts, Error>> + Send;

    /// The summary of one incident, if it was started.
    fn incident(&self, id: &str) -> impl Future<Output = Result<Option<IncidentSummary>, Error>> + Send;

    /// A summary of every incident, in the order they started.
    fn incidents(&self) -> impl Future<Output = Result<Vec<IncidentSummary>, Error>> + Send;

    /// The summaries of the incidents open at `at` or since: not closed, or closed at `at` or
    /// after, in the order they started. What a runtime's pass reads, so that its cost grows with
    /// the incidents still in play and not with every incident ever handled (an incident's
    /// summary is read from its latest event and checkpoint, one lookup each).
    fn incidents_open_since(
        &self,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<IncidentSummary>, Error>> + Send;

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

    /// Claims up to `limit` effects not yet done for `holder` (a process's id), for `lease`:
    /// effects no one holds, or whose holder let the lease run out, oldest first. Each claim
    /// comes with a fencing token, new and larger than any given before, which the append that
    /// records the effect's result carries ([`Append::fenced`]); a claim made since with a newer
    /// token makes that append refused ([`Error::LeaseLost`]). Two claimers never hold one effect
    /// at once. A claim is a short write of its own: nothing is held while the effect is carried
    /// out. PostgreSQL keeps leases in the database, for every process that shares it; SQLite, one
    /// process's store, keeps them in that process.
    fn claim_effects(
        &self,
        holder: &str,
        limit: usize,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<Claimed>, Error>> + Send;

    /// Extends `holder`'s leases with these tokens to `lease` from now, and returns the tokens it
    /// still holds (an effect since done or claimed by another is not among them). A zero
    /// `lease` lets the effects go: the next claim, by anyone, may take them.
    fn renew_effects(
        &self,
        holder: &str,
        tokens: &[u64],
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<u64>, Error>> + Send;

    /// Claims for `holder`, for `lease`, those of the leases `names` (a share of work named by
    /// the runtime: `inbox`, `incident/ID`) that no one holds, whose holder let them run out, or
    /// that `holder` holds already (renewed, with the token it has). A lease taken anew comes with
    /// a new fencing token, larger than any given before, that the writes made under it carry
    /// ([`Fence::Lease`]); a claim made since by another, with a newer token, makes them refused
    /// ([`Error::LeaseLost`]). Returns the leases of `names` that `holder` holds now, in the order
    /// of `names`. Two holders never hold one lease at once; a lease that another holder is
    /// writing under (a write carrying its token on its way) is not taken over until the write is
    /// done. Like [`Store::claim_effects`], a claim is a short write of its own.
    fn claim_leases(
        &self,
        holder: &str,
        names: &[String],
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send;

    /// [`Store::claim_leases`], taking anew only as many of `names` as keep `holder`'s leases
    /// among `names` at `most` or fewer: those it holds already are kept whatever their number
    /// (so it may hold more than `most`, and lets the rest go itself). What a process claims its
    /// share of a kind of work with, so that several share it out evenly. The leases it holds
    /// stand as long as its presence lease ([`presence`]) stands, with no write of their own to
    /// renew them: one row a process is renewed, not one per lease, which under a transaction
    /// holding back vacuum would leave a dead row version per lease every few seconds. Once the
    /// presence lease runs out (the process died or froze), all of them are free at once; one
    /// let go with [`Store::renew_leases`] and a zero lease is free at once.
    fn claim_leases_up_to(
        &self,
        holder: &str,
        names: &[String],
        most: usize,
    ) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send;

    /// How many leases whose names begin with `prefix` are held now (not run out): with one
    /// lease a process ([`presence`]), how many processes share the work.
    fn leases_held(&self, prefix: &str) -> impl Future<Output = Result<usize, Error>> + Send;

    /// Removes the leases whose names begin with `prefix` that nothing can need any more, so
    /// that the leases kept (and every pass that reads them) do not grow with every process
    /// started and every incident handled: those that ran out more than `ran_out_for` ago (not
    /// those standing with a presence, [`Store::claim_leases_up_to`]: the presence leases of
    /// processes gone), and an incident's lease ([`incident_lease`]) once the incident is closed
    /// and none of its effects waits in the outbox (a campaign's batches are written under its
    /// effect's claim), unless it is claimed for a while that has not run out (a head being
    /// signed). None is removed while a write under it is under way. A lease removed and claimed
    /// again later gets a new token, larger than any given before, so a write under the token it
    /// had is still refused ([`Error::FenceLost`]). Returns how many were removed.
    fn forget_leases(
        &self,
        prefix: &str,
        ran_out_for: std::time::Duration,
    ) -> impl Future<Output = Result<usize, Error>> + Send;

    /// Extends `holder`'s leases with these tokens ([`Store::claim_leases`]) to `lease` from now,
    /// and returns the tokens it still holds. A zero `lease` lets them go.
    fn renew_leases(
        &self,
        holder: &str,
        tokens: &[u64],
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<u64>, Error>> + Send;

    /// A receiver whose every change means another process (or this one) may have added work:
    /// what `phasegate serve`'s loops wait on besides their interval. `None` for a store that
    /// hears of no one's work (SQLite; PostgreSQL with notifications off).
    fn work_bell(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

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
    /// process may have signed the same head first). Under a [`Fence`], only while its claim
    /// stands: otherwise [`Error::LeaseLost`], and nothing is stored.
    fn add_checkpoint(
        &self,
        incident: &str,
        checkpoint: &SignedCheckpoint,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Stores the plan of `campaign` (its key, `INCIDENT/PHASE/STEP`): its batches, numbered 1 to
    /// n in order, each [`BatchState::Planned`]. A campaign is planned once: a second plan, even
    /// the same, is refused ([`CampaignRefusal::Planned`]) and changes nothing. A plan of no
    /// batches (a list with no one to send to) is stored as such.
    ///
    /// Like every campaign write, it is durable when it answers, shares its commit with whatever
    /// else the store is writing, is taken in the order of the calls (as appends are), and when
    /// refused changes nothing.
    fn campaign_plan(&self, campaign: &str, batches: &[BatchPlan]) -> impl Future<Output = Result<(), Error>> + Send;

    /// The batches of `campaign`, in number order, with how far each has come; empty when it was
    /// never planned.
    fn campaign_batches(&self, campaign: &str) -> impl Future<Output = Result<Vec<CampaignBatch>, Error>> + Send;

    /// Marks batches in flight at `at`, before they are sent: each planned or sending one becomes
    /// [`BatchState::Sending`] with one more attempt. An answered batch (never sent again) or one
    /// not in the plan is refused, and then none of them is marked.
    fn campaign_sending(
        &self,
        campaign: &str,
        numbers: &[u32],
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.campaign_sending_under(campaign, numbers, at, None)
    }

    /// [`Store::campaign_sending`] under a [`Fence`] (the campaign effect's claim): refused with
    /// [`Error::LeaseLost`], marking nothing, once another claim took the effect over, so that a
    /// process that paused past its lease sends none of the batches it had read.
    fn campaign_sending_under(
        &self,
        campaign: &str,
        numbers: &[u32],
        at: DateTime<Utc>,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Records the answers of batches marked sending: each becomes [`BatchState::Answered`], with
    /// its failures and its Merkle leaves. A batch's answer accounts for each of its recipients
    /// once (`sent` plus its failures is its plan's `recipients`). A batch not marked sending (so
    /// also one answered already) or not in the plan is refused, and then none is recorded.
    fn campaign_answered(
        &self,
        campaign: &str,
        results: &[BatchResult],
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.campaign_answered_under(campaign, results, None)
    }

    /// [`Store::campaign_answered`] under a [`Fence`]: refused with [`Error::LeaseLost`],
    /// recording nothing, once another claim took the campaign's effect over.
    fn campaign_answered_under(
        &self,
        campaign: &str,
        results: &[BatchResult],
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Records a failed attempt of batch `number` of `campaign` on it: its last error, kept (by
    /// new attempts and the answer) until a later failure replaces it. Refused unless the batch
    /// is in flight and was marked for that attempt.
    fn campaign_attempt_failed(
        &self,
        campaign: &str,
        number: u32,
        failure: &AttemptFailure,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.campaign_attempt_failed_under(campaign, number, failure, None)
    }

    /// [`Store::campaign_attempt_failed`] under a [`Fence`] ([`Error::LeaseLost`] once lost).
    fn campaign_attempt_failed_under(
        &self,
        campaign: &str,
        number: u32,
        failure: &AttemptFailure,
        under: Option<&Fence>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The recipients of `campaign` not sent, for good, as (batch, recipient id, reason): in batch
    /// order, and in each batch in the order its answer gave them.
    fn campaign_failures(
        &self,
        campaign: &str,
    ) -> impl Future<Output = Result<Vec<(u32, String, String)>, Error>> + Send;

    /// The reasons recipients of `campaign` were not sent, each with how many: the `limit` most
    /// frequent, most frequent first (equal counts by reason). Counted by the store, so that a
    /// campaign whose every recipient failed is not read into memory to be summed up.
    fn campaign_failure_reasons(
        &self,
        campaign: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, Error>> + Send;

    /// The Merkle leaves of the answered batches of `campaign`, as each answer gave them, in
    /// number order.
    fn campaign_leaves(&self, campaign: &str) -> impl Future<Output = Result<Vec<(u32, Vec<u8>)>, Error>> + Send;

    /// Every campaign of `incident` (the keys `INCIDENT/...`), in the order they were planned,
    /// with its totals.
    fn campaigns(&self, incident: &str) -> impl Future<Output = Result<Vec<(String, CampaignProgress)>, Error>> + Send;
}

/// What one append stores (see [`Store::append`]): events to add to an incident at the version
/// it expects, effects to put in the outbox, the effect whose result it records and the webhook
/// deliveries it takes.
#[derive(Debug, Clone)]
pub struct Append {
    incident: String,
    expected: u64,
    events: Events,
    effects: Vec<Effect>,
    completes: Option<String>,
    token: Option<u64>,
    under: Option<Fence>,
    deliveries: Vec<Delivery>,
}

/// An append's events: as given, to be encoded by the store, or encoded already.
#[derive(Debug, Clone)]
enum Events {
    Given(Vec<Event>),
    Canonical(Vec<Canonical>),
}

impl Append {
    /// `events` for `incident` at version `expected`; the store encodes them (and refuses one
    /// that does not read back).
    pub fn new(incident: &str, expected: u64, events: &[Event]) -> Append {
        Append::with_events(incident, expected, Events::Given(events.to_vec()))
    }

    /// Events encoded already ([`Canonical::of`]), which the store takes as they are: what the
    /// runtime appends, having encoded each event once to keep it as the log gives it back.
    pub fn canonical(incident: &str, expected: u64, events: Vec<Canonical>) -> Append {
        Append::with_events(incident, expected, Events::Canonical(events))
    }

    fn with_events(incident: &str, expected: u64, events: Events) -> Append {
        Append {
            incident: incident.to_string(),
            expected,
            events,
            effects: Vec::new(),
            completes: None,
            token: None,
            under: None,
            deliveries: Vec::new(),
        }
    }

    /// Puts `effects` in the outbox too.
    pub fn effects(mut self, effects: &[Effect]) -> Append {
        self.effects.extend_from_slice(effects);
        self
    }

    /// Records the result of the effect `id`: marks it done.
    pub fn completes(mut self, id: Option<&str>) -> Append {
        self.completes = id.map(str::to_string);
        self
    }

    /// Records the result of an effect claimed with `token` ([`Store::claim_effects`]): the
    /// effect is completed only if its latest claim is still this one, else the whole append is
    /// refused with [`Error::LeaseLost`]. `None` for a result of an effect never claimed (a
    /// runtime that owns its store).
    pub fn fenced(mut self, token: Option<u64>) -> Append {
        self.token = token;
        self
    }

    /// Stores the append only while the claim `under` names stands (a lease the runtime ticks
    /// an incident or applies the inbox under, a campaign's effect): otherwise it is refused with
    /// [`Error::LeaseLost`], nothing stored.
    pub fn under(mut self, under: Option<Fence>) -> Append {
        self.under = under;
        self
    }

    /// Records that `deliveries` were taken.
    pub fn delivered(mut self, deliveries: &[Delivery]) -> Append {
        self.deliveries.extend_from_slice(deliveries);
        self
    }

    pub fn incident(&self) -> &str {
        &self.incident
    }

    /// Whether it takes webhook deliveries (which the store may refuse as taken before).
    pub fn delivers(&self) -> bool {
        !self.deliveries.is_empty()
    }

    /// The incident's version once the append is stored.
    pub fn version(&self) -> u64 {
        self.expected
            + match &self.events {
                Events::Given(events) => events.len(),
                Events::Canonical(events) => events.len(),
            } as u64
    }
}

/// A webhook delivery: the configured source it came from and its id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub source: String,
    pub id: String,
    pub received_at: DateTime<Utc>,
}

/// A received delivery's request headers as kept with it: lowercase names and their values.
pub type Headers = BTreeMap<String, String>;

/// A received delivery waiting to be applied, with its raw body and the headers kept with it
/// (none for a delivery received before headers were kept).
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub seq: u64,
    pub delivery: Delivery,
    pub headers: Headers,
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

/// An effect claimed from the outbox, with the fencing token its result is recorded with.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub pending: PendingEffect,
    pub token: u64,
}

/// The prefix of the presence leases: `replica/HOLDER`, claimed by each process with
/// [`Store::claim_leases`] under its own name and renewed while it runs.
pub const PRESENCE: &str = "replica/";

/// The name of `holder`'s presence lease, on which the leases it claimed with
/// [`Store::claim_leases_up_to`] stand.
pub fn presence(holder: &str) -> String {
    format!("{PRESENCE}{holder}")
}

/// The prefix of the incidents' leases: `incident/ID`, under which one process ticks an open
/// incident (its timers, its checks, its retries) and signs its head.
pub const INCIDENT: &str = "incident/";

/// The name of the lease of `incident` ([`INCIDENT`]).
pub fn incident_lease(incident: &str) -> String {
    format!("{INCIDENT}{incident}")
}

/// A lease on a named share of work, claimed with [`Store::claim_leases`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub token: u64,
}

impl Lease {
    /// The fence of the writes made under this lease.
    pub fn fence(&self) -> Fence {
        Fence::Lease { name: self.name.clone(), token: self.token }
    }
}

/// The claim a write is made under: the write is stored only while the claim is the latest one
/// (its token current), and refused with [`Error::LeaseLost`] otherwise, storing nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// An effect of the outbox, claimed with `token` ([`Store::claim_effects`]).
    Effect { id: String, token: u64 },
    /// A named lease ([`Store::claim_leases`]).
    Lease { name: String, token: u64 },
}

impl Fence {
    /// What the fence guards, for messages: the effect's id or the lease's name.
    pub fn guarding(&self) -> &str {
        match self {
            Fence::Effect { id, .. } => id,
            Fence::Lease { name, .. } => name,
        }
    }
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
    /// The result of effect `effect` came with a fencing token that is no longer its latest
    /// claim: another process took the effect over. Nothing was stored.
    #[error("the lease on effect `{effect}` of incident `{incident}` was taken over; its result is not recorded")]
    LeaseLost { incident: String, effect: String },
    /// A write under a [`Fence`] whose claim (on `guarding`: an effect's id or a lease's name)
    /// is no longer the latest: another process took it over. `write` says what was to be
    /// written (an incident's id, a campaign's key, the inbox's marks). Nothing was stored.
    #[error("the claim on `{guarding}` was taken over; `{write}` is not written under it")]
    FenceLost { guarding: String, write: String },
    /// A campaign's progress cannot move as asked; nothing was stored.
    #[error("campaign `{campaign}`: {refusal}")]
    Campaign { campaign: String, refusal: CampaignRefusal },
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
