//! A runtime that owns its store ([`Runtime::owning_the_store`]): its own record of what it
//! appended (each incident's log, the effects not recorded yet), read instead of the store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::{Error, Runtime};
use crate::engine::{Decision, Event};
use crate::runbook::Templates;
use crate::store::{self, Append, Store};

/// What a runtime that owns its store appended to it: all the store holds.
#[derive(Default)]
pub(super) struct Owned {
    /// Every incident's log, as appended.
    pub(super) logs: HashMap<String, Vec<Event>>,
    /// Effects appended and not recorded yet, in the order they were appended (the outbox's).
    pub(super) outbox: Vec<store::PendingEffect>,
    /// Appends not given to the store yet, in order ([`Runtime::settle`]).
    unstored: Vec<Append>,
}

/// Appends a runtime that owns its store keeps before it stores them together: enough for one
/// transaction to carry most of a busy simulated day, and well within the store's queue.
const UNSTORED: usize = 256;

/// How far back a shared store's signing sweep ([`Runtime::sign_due`]) looks among closed
/// incidents. Each append to an incident is signed as it is made when its head is due (after a
/// close, at once: [`Runtime::signed_after`]); the sweep catches what a process that stopped in
/// between left unsigned. Results of the effects a close queued come within minutes, or hours
/// while a channel is down; a week of closes covers them, and the sweep does not read every
/// incident ever closed at every pass (an unsigned tail older than that is still found by
/// `audit verify`, which names it).
const SIGNING_LOOKS_BACK: chrono::Duration = chrono::Duration::days(7);

impl Owned {
    /// Notes an append in the record.
    fn note(&mut self, incident: &str, decided: &Decision, completes: Option<&str>) {
        self.logs.entry(incident.to_string()).or_default().extend(decided.events.iter().cloned());
        if let Some(done) = completes {
            self.outbox.retain(|pending| pending.incident != incident || pending.effect.id != done);
        }
        self.outbox.extend(
            decided
                .effects
                .iter()
                .map(|effect| store::PendingEffect { incident: incident.to_string(), effect: effect.clone() }),
        );
    }
}

impl<S: Store, T: Templates + Send + Sync> Runtime<S, T> {
    /// Tells the runtime that its store was empty when it was made and that nothing else writes
    /// to it (a drill's database). What the runtime appended is then all the store holds: it
    /// reads logs, the outbox and the open incidents from its own record of its appends, and
    /// believes a refusal or a decision to do nothing on the state it keeps, instead of asking the
    /// store again each time. Everything is still stored, signed and read back as usual by
    /// whoever opens the store.
    pub fn owning_the_store(mut self) -> Self {
        self.owned = Some(Mutex::new(Owned::default()));
        self
    }

    pub(super) fn owned(&self) -> Option<MutexGuard<'_, Owned>> {
        self.owned.as_ref().map(|owned| owned.lock().expect("the record is never poisoned"))
    }

    /// Stores an append: the one place the runtime appends. `decided` is what the append holds,
    /// and `completes` the effect whose result it records, for the record of a runtime that owns
    /// its store. Such a runtime keeps appends without deliveries and stores them together when
    /// it must ([`Runtime::settle`]), answering each with the version it will have: nothing else
    /// writes to its store, so its record says what the store would answer.
    pub(super) async fn store_append(
        &self,
        append: Append,
        decided: &Decision,
        completes: Option<&str>,
    ) -> Result<u64, store::Error> {
        let incident = append.incident().to_string();
        if self.owned.is_none() || append.delivers() {
            self.settle().await?;
            let version = self.store.append(append).await?;
            if let Some(mut owned) = self.owned() {
                owned.note(&incident, decided, completes);
            }
            return Ok(version);
        }
        let version = append.version();
        let full = {
            let mut owned = self.owned().expect("the runtime owns its store");
            owned.note(&incident, decided, completes);
            owned.unstored.push(append);
            owned.unstored.len() >= UNSTORED
        };
        if full {
            self.settle().await?;
        }
        Ok(version)
    }

    /// Stores what a runtime that owns its store has kept back: every append, in one go (the
    /// store takes them in order and commits them together). Called before anything reads the
    /// store, and by whoever is done with the runtime; nothing to do in another runtime. An
    /// append the store refuses means the record was wrong: an error, and the rest are dropped.
    pub async fn settle(&self) -> Result<(), store::Error> {
        let unstored = match self.owned() {
            Some(mut owned) if !owned.unstored.is_empty() => std::mem::take(&mut owned.unstored),
            _ => return Ok(()),
        };
        // Every call sends its append before any answer is awaited.
        let answers: Vec<_> = unstored.into_iter().map(|append| self.store.append(append)).collect();
        for answer in answers {
            answer.await?;
        }
        Ok(())
    }

    /// The incident's events after the first `after`: from the store, or from the runtime's
    /// record when it owns the store.
    pub async fn events_after(&self, incident: &str, after: u64) -> Result<Vec<Event>, Error> {
        if let Some(owned) = self.owned() {
            let log = owned.logs.get(incident).map(Vec::as_slice).unwrap_or_default();
            return Ok(log.get(usize::try_from(after).unwrap_or(usize::MAX)..).unwrap_or_default().to_vec());
        }
        Ok(self.store.events_after(incident, after).await?)
    }

    /// The incident's whole log (see [`Runtime::events_after`]).
    pub(super) async fn events(&self, incident: &str) -> Result<Vec<Event>, Error> {
        if let Some(owned) = self.owned() {
            return match owned.logs.get(incident) {
                Some(log) if !log.is_empty() => Ok(log.clone()),
                _ => Err(store::Error::NotFound { incident: incident.to_string() }.into()),
            };
        }
        Ok(self.store.events(incident).await?)
    }

    /// The open incidents' ids, in the order they started, each with its version as stored.
    pub(super) async fn open_incidents(&self) -> Result<Vec<(String, u64)>, Error> {
        if self.owned.is_some() {
            let states = self.states.lock().expect("the cache is never poisoned");
            let mut open: Vec<_> = states
                .values()
                .filter(|(state, _)| state.closed.is_none())
                .map(|(state, _)| (state.started_at, state.id.clone(), state.version))
                .collect();
            open.sort();
            return Ok(open.into_iter().map(|(_, id, version)| (id, version)).collect());
        }
        let summaries = self.store.incidents_open_since(self.now()).await?;
        Ok(summaries
            .into_iter()
            .filter(|summary| summary.closed_at.is_none())
            .map(|summary| (summary.id, summary.version))
            .collect())
    }

    /// The incidents' summaries [`Runtime::sign_due`] looks at: those of the incidents open now or
    /// closed within [`SIGNING_LOOKS_BACK`], or, in a runtime that owns its store, those of the
    /// closed incidents and of the open ones whose head it has not signed within the interval.
    pub(super) async fn summaries_to_sign(
        &self,
        now: DateTime<Utc>,
        every: chrono::Duration,
    ) -> Result<Vec<store::IncidentSummary>, Error> {
        if self.owned.is_none() {
            return Ok(self.store.incidents_open_since(now - SIGNING_LOOKS_BACK).await?);
        }
        let maybe: Vec<String> = {
            let states = self.states.lock().expect("the cache is never poisoned");
            let signed_at = self.signed_at.lock().expect("the cache is never poisoned");
            let mut maybe: Vec<_> = states
                .values()
                .filter(|(state, _)| {
                    let signed = signed_at.get(&state.id).copied();
                    // A closed incident's head is signed whatever the interval: events (the
                    // results of its last effects) may follow the close.
                    super::signing::due(state.closed.is_some(), signed, now, every)
                })
                .map(|(state, _)| (state.started_at, state.id.clone()))
                .collect();
            maybe.sort();
            maybe.into_iter().map(|(_, id)| id).collect()
        };
        if maybe.is_empty() {
            return Ok(Vec::new());
        }
        self.settle().await?;
        let mut summaries = Vec::with_capacity(maybe.len());
        for id in maybe {
            summaries.extend(self.store.incident(&id).await?);
        }
        Ok(summaries)
    }
}
