//! A runtime that owns its store ([`Runtime::owning_the_store`]): its own record of what it
//! appended (each incident's log, the effects not recorded yet), read instead of the store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::{Error, Runtime};
use crate::engine::{Effect, Event};
use crate::runbook::Templates;
use crate::store::{self, Store};

/// What a runtime that owns its store appended to it: all the store holds.
#[derive(Default)]
pub(super) struct Owned {
    /// Every incident's log, as appended.
    pub(super) logs: HashMap<String, Vec<Event>>,
    /// Effects appended and not recorded yet, in the order they were appended (the outbox's).
    pub(super) outbox: Vec<store::PendingEffect>,
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

    /// Notes an append in the record of a runtime that owns its store.
    pub(super) fn remember(&self, incident: &str, events: &[Event], effects: &[Effect], completes: Option<&str>) {
        let Some(mut owned) = self.owned() else { return };
        owned.logs.entry(incident.to_string()).or_default().extend(events.iter().cloned());
        if let Some(done) = completes {
            owned.outbox.retain(|pending| pending.incident != incident || pending.effect.id != done);
        }
        owned.outbox.extend(
            effects
                .iter()
                .map(|effect| store::PendingEffect { incident: incident.to_string(), effect: effect.clone() }),
        );
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

    /// The outbox's first effects: from the store, or from the runtime's record when it owns the
    /// store.
    pub(super) async fn pending_effects(&self) -> Result<Vec<store::PendingEffect>, Error> {
        const PAGE: usize = 256;
        if let Some(owned) = self.owned() {
            return Ok(owned.outbox.iter().take(PAGE).cloned().collect());
        }
        Ok(self.store.pending_effects(PAGE).await?)
    }

    /// The open incidents' ids, in the order they started.
    pub(super) async fn open_incidents(&self) -> Result<Vec<String>, Error> {
        if self.owned.is_some() {
            let states = self.states.lock().expect("the cache is never poisoned");
            let mut open: Vec<_> = states
                .values()
                .filter(|(state, _)| state.closed.is_none())
                .map(|(state, _)| (state.started_at, state.id.clone()))
                .collect();
            open.sort();
            return Ok(open.into_iter().map(|(_, id)| id).collect());
        }
        let summaries = self.store.incidents().await?;
        Ok(summaries.into_iter().filter(|summary| summary.closed_at.is_none()).map(|summary| summary.id).collect())
    }

    /// The incidents' summaries [`Runtime::sign_due`] looks at: every incident's, or, in a runtime
    /// that owns its store, those of the closed incidents and of the open ones whose head it has
    /// not signed within the interval.
    pub(super) async fn summaries_to_sign(
        &self,
        now: DateTime<Utc>,
        every: chrono::Duration,
    ) -> Result<Vec<store::IncidentSummary>, Error> {
        if self.owned.is_none() {
            return Ok(self.store.incidents().await?);
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
                    state.closed.is_some() || signed.is_none_or(|at| now - at >= every)
                })
                .map(|(state, _)| (state.started_at, state.id.clone()))
                .collect();
            maybe.sort();
            maybe.into_iter().map(|(_, id)| id).collect()
        };
        let mut summaries = Vec::with_capacity(maybe.len());
        for id in maybe {
            summaries.extend(self.store.incident(&id).await?);
        }
        Ok(summaries)
    }
}
