//! The audit trail applied to the store: signing incidents' heads, verifying stored logs and
//! writing exports. The rules (the chain, checkpoints, verification) are the core's, in
//! `crate::audit`; this module reads and writes what they judge.

use std::io::Write;

use chrono::{DateTime, Utc};

use crate::audit::chain::{self, GENESIS, Hash};
use crate::audit::export;
use crate::audit::keys::{self, Checkpoint, PublicKey, SignedCheckpoint, Signer};
use crate::audit::verify::{Outcome, Verifier};
use crate::audit::witness::Witnessed;
use crate::store::{self, IncidentSummary, Store, StoredCheckpoint};

/// A new signing key from the operating system's random numbers.
pub fn new_signer() -> Signer {
    use rand_core::RngCore as _;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::OsRng.fill_bytes(seed.as_mut());
    Signer::from_seed(&seed)
}

/// Events read from the store at a time.
const PAGE: usize = 8192;

/// Verifies an incident's log and checkpoints as stored.
pub async fn verify_stored<S: Store>(
    store: &S,
    incident: &IncidentSummary,
    key: Option<&PublicKey>,
) -> Result<Outcome, store::Error> {
    verify_stored_witnessed(store, incident, key, None).await
}

/// [`verify_stored`], and the log compared with the checkpoints a witness holds of it
/// (`audit::witness`), when `witnessed` is given.
pub async fn verify_stored_witnessed<S: Store>(
    store: &S,
    incident: &IncidentSummary,
    key: Option<&PublicKey>,
    witnessed: Option<Vec<Witnessed>>,
) -> Result<Outcome, store::Error> {
    let mut verifier = Verifier::new(&incident.id, key);
    if let Some(witnessed) = witnessed {
        verifier.witnessed(witnessed);
    }
    for stored in store.checkpoints(&incident.id).await? {
        verifier.checkpoint(read_checkpoint(&stored));
    }
    // The next page is read (by the database's own thread) while this one is checked.
    let mut page = store.chain(&incident.id, 0, PAGE).await?;
    while let Some(last) = page.last().map(|link| link.seq) {
        let next =
            async { if page.len() == PAGE { store.chain(&incident.id, last, PAGE).await } else { Ok(Vec::new()) } };
        let check = async {
            for link in &page {
                verifier.event(link.seq, link.hash.as_deref(), &link.event);
            }
        };
        let (next, ()) = tokio::join!(biased; next, check);
        page = next?;
    }
    Ok(verifier.finish(Some(incident.version)))
}

/// Writes an incident's export (see [`export`]) to `out`.
pub async fn export_stored<S: Store>(store: &S, incident: &IncidentSummary, out: impl Write) -> anyhow::Result<()> {
    let checkpoints = store.checkpoints(&incident.id).await?;
    let header = export::Header {
        format: export::FORMAT,
        incident: incident.id.clone(),
        events: incident.version,
        checkpoints: checkpoints.len() as u64,
    };
    let mut writer = export::Writer::new(out, &header)?;
    // Each checkpoint goes right after the event it covers; any covering more than the log has
    // (which verification reports) at the end.
    let covers = |stored: &StoredCheckpoint| read_checkpoint(stored).map(|signed| signed.checkpoint.events).ok();
    let mut pending = checkpoints.iter().peekable();
    let mut after = 0;
    loop {
        let page = store.chain(&incident.id, after, PAGE).await?;
        let full = page.len() == PAGE;
        for link in &page {
            after = link.seq;
            writer.event(link.seq, link.hash.as_deref(), &link.event)?;
            while let Some(stored) = pending.next_if(|stored| covers(stored).is_none_or(|events| events <= link.seq)) {
                writer.checkpoint(&stored.body, &stored.signature)?;
            }
        }
        if !full {
            break;
        }
    }
    for stored in pending {
        writer.checkpoint(&stored.body, &stored.signature)?;
    }
    writer.finish()?;
    Ok(())
}

/// Why a head was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The events since the last checkpoint do not chain to it: signing would vouch for them.
    #[error("incident `{incident}` does not verify since its last checkpoint, so its head is not signed: {problem}")]
    Broken { incident: String, problem: String },
}

/// Signs the head of `incident` if some of its events are not covered by a checkpoint yet, after
/// checking that they chain to the last checkpoint's head. Returns the checkpoint stored, or
/// `None` when there was nothing to sign or another process signed the same events first.
pub async fn sign_head<S: Store>(
    store: &S,
    signer: &Signer,
    incident: &IncidentSummary,
    at: DateTime<Utc>,
) -> Result<Option<SignedCheckpoint>, SignError> {
    sign_head_under(store, signer, incident, at, None).await
}

/// [`sign_head`] under `under`, the incident's lease: the checkpoint is stored only while the
/// lease is this process's ([`store::Error::FenceLost`] otherwise, nothing stored).
pub async fn sign_head_under<S: Store>(
    store: &S,
    signer: &Signer,
    incident: &IncidentSummary,
    at: DateTime<Utc>,
    under: Option<&store::Fence>,
) -> Result<Option<SignedCheckpoint>, SignError> {
    if incident.version <= incident.checkpointed {
        return Ok(None);
    }
    let broken = |problem: String| SignError::Broken { incident: incident.id.clone(), problem };
    let previous = match store.checkpoints(&incident.id).await?.last() {
        None => None,
        Some(stored) => Some(read_checkpoint(stored).map_err(|error| broken(format!("its last checkpoint: {error}")))?),
    };
    let (mut head, covered, prev) = match &previous {
        None => (GENESIS, 0, GENESIS),
        Some(signed) => {
            let head = chain::from_hex(&signed.checkpoint.head)
                .ok_or_else(|| broken("its last checkpoint's head is not a hash".into()))?;
            (head, signed.checkpoint.events, signed.checkpoint.hash())
        }
    };
    let mut seq = covered;
    while seq < incident.version {
        let page = store.chain(&incident.id, seq, PAGE.min((incident.version - seq) as usize)).await?;
        if page.is_empty() {
            return Err(broken(format!("event {} is missing", seq + 1)));
        }
        for link in page {
            seq += 1;
            head = chained(&head, seq, &link).ok_or_else(|| broken(format!("event {seq} does not verify")))?;
        }
    }
    if incident.head.as_deref().and_then(chain::from_hex) != Some(head) {
        return Err(broken(format!("its head is not the hash of event {}", incident.version)));
    }
    let checkpoint = Checkpoint {
        format: keys::FORMAT,
        incident: incident.id.clone(),
        number: previous.map_or(1, |signed| signed.checkpoint.number + 1),
        events: incident.version,
        head: chain::to_hex(&head),
        prev: chain::to_hex(&prev),
        at,
        key: signer.public().fingerprint().to_string(),
    };
    let signed = signer.sign(checkpoint);
    match store.add_checkpoint(&incident.id, &signed, under).await {
        Ok(()) => Ok(Some(signed)),
        // Another process signed these events first.
        Err(store::Error::Invalid { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The hash of the stored event `link` at position `seq`, if it is there, chains to `prev` and
/// matches the hash recorded with it.
fn chained(prev: &Hash, seq: u64, link: &store::ChainLink) -> Option<Hash> {
    let hash = chain::link(prev, seq, link.event.as_bytes());
    (link.seq == seq && link.hash.as_deref().and_then(chain::from_hex) == Some(hash)).then_some(hash)
}

/// A stored checkpoint's body read back, with its signature.
fn read_checkpoint(stored: &StoredCheckpoint) -> Result<SignedCheckpoint, String> {
    let checkpoint: Checkpoint = serde_json::from_str(&stored.body).map_err(|error| error.to_string())?;
    Ok(SignedCheckpoint { checkpoint, signature: stored.signature.clone() })
}
