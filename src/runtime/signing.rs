//! When an incident's head is signed, in one place: at once when the incident closes, and
//! otherwise once its last checkpoint is older than the interval (or it has none). A command's
//! append asks after itself ([`Runtime::signed_after`]), so checkpoints are made where `run` is
//! not running; `run_due` signs every head that is due ([`Runtime::sign_due`]), which catches
//! what an append's signing left (a failure, a runtime without the key, the events after a close).
//! Either way a head is signed under its incident's lease (`claims.rs`), by the process holding
//! it: another process leaves it to that one.

use chrono::{DateTime, Utc};

use super::{Error, Runtime};
use crate::engine::{Event, EventKind};
use crate::runbook::Templates;
use crate::store::{self, Store};

/// Whether a head is due to be signed: at once when its incident closed, otherwise once `every`
/// has passed since it was last signed (or at once if it never was).
pub(super) fn due(
    closed: bool,
    last_signed: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    every: chrono::Duration,
) -> bool {
    closed || last_signed.is_none_or(|at| now - at >= every)
}

impl<S: Store, T: Templates + Send + Sync> Runtime<S, T> {
    /// After an append of `events` to `incident`: signs its head if that is [`due`] (closed, by
    /// these events). The append stands whatever happens here; what fails is logged, and `run`
    /// signs what is left. The store is asked only when the interval may have passed, as far as
    /// this runtime knows.
    pub(super) async fn signed_after(&self, incident: &str, events: &[Event]) {
        let Some((_, every)) = &self.signer else { return };
        let closed = events.iter().any(|event| matches!(event.kind, EventKind::IncidentClosed { .. }));
        let now = self.now();
        let known = self.signed_at.lock().expect("the cache is never poisoned").get(incident).copied();
        if known.is_some() && !due(closed, known, now, *every) {
            return;
        }
        let signed = async {
            self.settle().await?;
            let Some(summary) = self.store.incident(incident).await? else { return Ok(None) };
            if !due(closed, summary.checkpointed_at, now, *every) {
                return Ok::<_, Error>(summary.checkpointed_at);
            }
            // Another process holds the incident's lease: it signs the head, at its next pass.
            let Some((_, under)) = self.incident_leases(vec![incident.to_string()]).await?.pop() else {
                return Ok(None);
            };
            let signed = self.sign_summary(&summary, under.as_ref()).await;
            self.let_go_unless_present(under.as_ref()).await?;
            if signed? {
                return Ok(Some(now));
            }
            Ok(summary.checkpointed_at)
        };
        match signed.await {
            Ok(Some(at)) => {
                self.signed_at.lock().expect("the cache is never poisoned").insert(incident.to_string(), at);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(incident, %error, "the incident's head was not signed"),
        }
    }

    /// Signs the heads that are [`due`]: every incident with events no checkpoint covers, once it
    /// is closed or its last checkpoint is older than the interval. Returns how many it signed.
    pub async fn sign_due(&self) -> Result<usize, Error> {
        let Some((_, every)) = &self.signer else { return Ok(0) };
        let now = self.now();
        let mut signed = 0;
        let mut summaries: std::collections::HashMap<String, store::IncidentSummary> = self
            .summaries_to_sign(now, *every)
            .await?
            .into_iter()
            .filter(|summary| {
                summary.version > summary.checkpointed
                    && due(summary.closed_at.is_some(), summary.checkpointed_at, now, *every)
            })
            .map(|summary| (summary.id.clone(), summary))
            .collect();
        let mut ids: Vec<String> = summaries.keys().cloned().collect();
        ids.sort_by_key(|id| summaries[id].started_at);
        // Only the heads of the incidents whose lease this process holds.
        for (id, under) in self.incident_leases(ids).await? {
            let Some(summary) = summaries.remove(&id) else { continue };
            match self.sign_summary(&summary, under.as_ref()).await {
                Ok(done) => signed += usize::from(done),
                // One incident whose log was tampered with stops no other's checkpoints.
                Err(Error::Unsigned(problem)) => tracing::error!(incident = summary.id, problem, "not signed"),
                Err(error) if super::claims::taken_over(&error) => tracing::warn!(incident = summary.id, "{error}"),
                Err(error) => return Err(error),
            }
        }
        Ok(signed)
    }

    /// Signs the head of `incident` now, if it has events no checkpoint covers: a person's
    /// request, not a share of work, so not under the incident's lease (the store refuses a second
    /// signature of the same head).
    pub async fn sign(&self, incident: &str) -> Result<bool, Error> {
        self.settle().await?;
        match self.store.incident(incident).await? {
            Some(summary) => self.sign_summary(&summary, None).await,
            None => Err(store::Error::NotFound { incident: incident.to_string() }.into()),
        }
    }

    /// Signs the head `summary` describes, if it has events no checkpoint covers, under the
    /// incident's lease `under` (if given), and hands the checkpoint to the witness.
    async fn sign_summary(
        &self,
        summary: &store::IncidentSummary,
        under: Option<&store::Fence>,
    ) -> Result<bool, Error> {
        let Some((signer, _)) = &self.signer else { return Ok(false) };
        match super::audit::sign_head_under(&self.store, signer, summary, self.now(), under).await {
            Ok(signed) => {
                if let (Some(signed), Some(witness)) = (&signed, &self.witness) {
                    witness.record(signed);
                }
                Ok(signed.is_some())
            }
            Err(super::audit::SignError::Store(error)) => Err(error.into()),
            Err(broken @ super::audit::SignError::Broken { .. }) => Err(Error::Unsigned(broken.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::due;
    use chrono::{DateTime, Duration, Utc};

    #[test]
    fn a_head_is_due_at_a_close_at_first_and_after_the_interval() {
        let now: DateTime<Utc> = "2026-11-24T02:14:00Z".parse().unwrap();
        let every = Duration::minutes(10);
        let cases = [
            (false, None, true, "never signed"),
            (false, Some(now - Duration::minutes(9)), false, "signed within the interval"),
            (false, Some(now - every), true, "signed an interval ago"),
            (true, Some(now), true, "closed, whatever the interval"),
        ];
        for (closed, last_signed, expected, case) in cases {
            assert_eq!(due(closed, last_signed, now, every), expected, "{case}");
        }
    }
}
