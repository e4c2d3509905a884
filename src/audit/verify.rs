//! Verification of one incident's log: the hash chain event by event, then every checkpoint
//! against the chain, whatever the log came from (the database or an export).
//!
//! The verifier is fed events in the order they are stored and the incident's checkpoints, and
//! reports every problem it finds with the event it is about, in the order of the log, so the
//! first one is where the log stops being what was written.

use std::fmt;

use serde::Serialize;

use super::chain::{self, GENESIS, Hash};
use super::keys::{FORMAT, PublicKey, SignedCheckpoint};
use super::witness::Witnessed;
use crate::engine::{Event, EventKind};

/// The most problems an outcome lists; the rest are counted.
const MAX_PROBLEMS: usize = 20;

/// The most events held while waiting for an earlier one that has not come yet.
const MAX_AHEAD: usize = 64;

/// Something in the log that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first event it concerns.
    pub event: u64,
    /// The checkpoint it concerns, if it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.checkpoint {
            Some(number) => write!(formatter, "checkpoint {number} (event {}): {}", self.event, self.what),
            None => write!(formatter, "event {}: {}", self.event, self.what),
        }
    }
}

/// What verifying an incident's log found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub incident: String,
    /// Events read, all of them, including any past a gap.
    pub events: u64,
    pub checkpoints: u64,
    /// Events without a hash: stored before the hash chain existed, and not chained since.
    pub unchained: u64,
    /// The events covered by the last checkpoint that verified, if all before it did too.
    pub signed_through: u64,
    /// The log ends with `incident_closed`.
    pub closed: bool,
    /// Checked without a key, and it has no checkpoint: an unsigned deployment's log. Only its
    /// hash chain is checked, and nothing vouches for its end or for the chain as a whole.
    pub unsigned_log: bool,
    /// The fingerprint of the key the signatures were checked with.
    pub fingerprint: Option<String>,
    /// The fingerprints the checkpoints name as their signers, each once, in the order they
    /// first sign.
    pub signers: Vec<String>,
    /// What a witness held of this incident, when the log was checked against one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<Witnessing>,
    /// In the order of the log; at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more_problems: usize,
}

impl Outcome {
    /// Adds a problem found outside the log itself, in its place among the others.
    pub fn add(&mut self, problem: Problem) {
        self.problems.push(problem);
        self.problems.sort_by_key(|problem| (problem.event, problem.checkpoint));
    }

    /// Everything verifies.
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }

    /// Events after the last checkpoint: chained, but not yet signed.
    pub fn unsigned(&self) -> u64 {
        self.events.saturating_sub(self.signed_through)
    }

    /// The outcome as the report shows it.
    pub fn integrity(&self) -> super::report::Integrity {
        super::report::Integrity {
            verified: self.verified(),
            events: self.events,
            checkpoints: self.checkpoints,
            signed_through: self.signed_through,
            fingerprint: self.fingerprint.clone(),
            problem: self.problems.first().map(Problem::to_string),
        }
    }
}

/// What a witness held of an incident's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Witnessing {
    /// The witness's lines about this incident.
    pub lines: u64,
    /// The highest checkpoint number witnessed, and the events it covers (0 when none).
    pub checkpoint: u64,
    pub events: u64,
}

/// Checks an incident's log as it is read.
pub struct Verifier<'k> {
    incident: String,
    key: Option<&'k PublicKey>,
    /// The hash of every event read so far, computed from its content.
    hashes: Vec<Hash>,
    /// The hash recorded with the latest event, to check each link on its own once one is broken.
    recorded_prev: Hash,
    /// The log is out of order from this event on; nothing after it is checked.
    broken: bool,
    /// Events read, including any after a break.
    read: u64,
    /// Events that came before the one due (`seq`, recorded hash, JSON), held until it comes:
    /// two events swapped in an export come in the wrong order.
    ahead: Vec<(u64, Option<String>, String)>,
    /// Events without a hash, and the latest run of them (first and last position) to report.
    unchained: u64,
    unchained_run: Option<(u64, u64)>,
    /// The hash recorded with the latest event, when that event did not match it.
    mismatched: Option<Hash>,
    /// The latest event's JSON (a buffer used again for each event).
    last: String,
    checkpoints: Vec<Result<SignedCheckpoint, String>>,
    /// The incident's checkpoints as a witness outside the log holds them, if one was given.
    witnessed: Option<Vec<Witnessed>>,
    problems: Vec<Problem>,
}

impl<'k> Verifier<'k> {
    /// A verifier of `incident`'s log; without `key`, checkpoints cannot verify.
    pub fn new(incident: &str, key: Option<&'k PublicKey>) -> Verifier<'k> {
        Verifier {
            incident: incident.to_string(),
            key,
            hashes: Vec::new(),
            recorded_prev: GENESIS,
            broken: false,
            read: 0,
            ahead: Vec::new(),
            unchained: 0,
            unchained_run: None,
            mismatched: None,
            last: String::new(),
            checkpoints: Vec::new(),
            witnessed: None,
            problems: Vec::new(),
        }
    }

    /// The incident's checkpoints as a witness holds them (`audit::witness`): each must be in
    /// the log, the same. A log with fewer checkpoints or events than were witnessed was cut back.
    pub fn witnessed(&mut self, witnessed: Vec<Witnessed>) {
        self.witnessed = Some(witnessed);
    }

    /// The next event as stored: its position, the hash recorded with it, its JSON.
    pub fn event(&mut self, seq: u64, recorded: Option<&str>, json: &str) {
        self.read += 1;
        if self.broken {
            return;
        }
        let expected = self.hashes.len() as u64 + 1;
        if seq > expected && self.ahead.len() < MAX_AHEAD {
            // Held: the event due may come after it (two events swapped).
            self.ahead.push((seq, recorded.map(str::to_string), json.to_string()));
            return;
        }
        if seq != expected {
            let what = if seq > expected {
                let next = self.ahead.first().map_or(seq, |(held, ..)| *held);
                format!("missing: the log goes from event {} to event {next}", expected - 1)
            } else {
                format!("out of order: event {seq} comes again after event {}", expected - 1)
            };
            self.problem(expected, None, what);
            self.broken = true;
            return;
        }
        if !self.ahead.is_empty() {
            let after = match self.ahead.as_slice() {
                [(one, ..)] => format!("event {one}"),
                ahead => {
                    format!("events {}", ahead.iter().map(|(seq, ..)| seq.to_string()).collect::<Vec<_>>().join(", "))
                }
            };
            let swapped = match self.ahead.as_slice() {
                [(one, ..)] if *one == seq + 1 => format!(": events {seq} and {one} are swapped"),
                _ => String::new(),
            };
            self.problem(seq, None, format!("out of order: event {seq} comes after {after}{swapped}"));
        }
        self.in_order(seq, recorded, json);
        // The events held, if they follow now.
        while let Some(index) = self.ahead.iter().position(|(held, ..)| *held == self.hashes.len() as u64 + 1) {
            let (held, recorded, json) = self.ahead.remove(index);
            self.in_order(held, recorded.as_deref(), &json);
        }
    }

    /// An event at the position due.
    fn in_order(&mut self, seq: u64, recorded: Option<&str>, json: &str) {
        let Some(recorded) = recorded else {
            self.without_hash(seq, json);
            return;
        };
        self.report_unchained();
        let recorded = Some(recorded);
        let true_prev = self.hashes.last().copied().unwrap_or(GENESIS);
        // Almost every event chains as recorded: compare hex text with hex text first, which costs
        // far less than decoding the recorded hash (a verification is mostly this line and SHA-256).
        let fast = chain::link(&true_prev, seq, json.as_bytes());
        if recorded.is_some_and(|recorded| chain::is_hex_of(recorded, &fast)) {
            self.recorded_prev = fast;
            self.mismatched = None;
            self.accept(seq, json, fast);
            return;
        }
        let recorded = recorded.and_then(chain::from_hex);
        let Some(computed) = content_hash(&true_prev, seq, json, recorded) else {
            self.problem(seq, None, "is not JSON".to_string());
            self.broken = true;
            return;
        };
        let mismatched = self.mismatched.take();
        match recorded {
            Some(recorded) if recorded == computed => {}
            None => self.problem(seq, None, "has a hash recorded that is not one of 64 hex digits".to_string()),
            Some(recorded) if self.swapped(seq, json, recorded, mismatched).is_some() => {
                let (before, here) = self.swapped(seq, json, recorded, mismatched).unwrap_or_default();
                // The event before was reported as not matching: it was this swap.
                if self.problems.last().is_some_and(|problem| problem.event == seq - 1 && problem.checkpoint.is_none())
                {
                    self.problems.pop();
                }
                let what = format!("swapped with event {seq}: each is where the other was written");
                self.problem(seq - 1, None, what);
                // Both hashes as first written are proven: the chain goes on from them.
                self.hashes[seq as usize - 2] = before;
                self.recorded_prev = here;
                self.accept(seq, json, here);
                return;
            }
            Some(recorded) => {
                // After an earlier problem, check this link on its own: does the event chain to
                // the hash recorded before it? If so, only an earlier event was changed.
                let linked = true_prev != self.recorded_prev
                    && content_hash(&self.recorded_prev, seq, json, Some(recorded)) == Some(recorded);
                if !linked {
                    let what = "does not match its recorded hash: it was changed, moved or inserted, or the event \
                                before it removed";
                    self.problem(seq, None, what.to_string());
                    self.mismatched = Some(recorded);
                }
            }
        }
        self.recorded_prev = recorded.unwrap_or(computed);
        self.accept(seq, json, computed);
    }

    /// Whether the event at `seq` and the one before it (which did not match its `mismatched`
    /// hash) are two events of the log swapped, their hashes moved with them or not. If so, the
    /// hashes of positions `seq - 1` and `seq` as first written.
    fn swapped(&self, seq: u64, json: &str, recorded: Hash, mismatched: Option<Hash>) -> Option<(Hash, Hash)> {
        let mismatched = mismatched?;
        let before = self.hashes.len().checked_sub(2).map_or(GENESIS, |index| self.hashes[index]);
        let chains =
            |prev: &Hash, at: u64, json: &str, hash: Hash| content_hash(prev, at, json, Some(hash)) == Some(hash);
        // Rows moved with their hashes: this one is the event written at `seq - 1`, with its hash.
        if chains(&before, seq - 1, json, recorded) && chains(&recorded, seq, &self.last, mismatched) {
            return Some((recorded, mismatched));
        }
        // Contents swapped, hashes left in place.
        if chains(&before, seq - 1, json, mismatched) && chains(&mismatched, seq, &self.last, recorded) {
            return Some((mismatched, recorded));
        }
        None
    }

    /// An event without a hash: reported with the run of them it belongs to.
    fn without_hash(&mut self, seq: u64, json: &str) {
        self.unchained += 1;
        self.unchained_run = match self.unchained_run {
            Some((first, last)) if last + 1 == seq => Some((first, seq)),
            _ => {
                self.report_unchained();
                Some((seq, seq))
            }
        };
        let true_prev = self.hashes.last().copied().unwrap_or(GENESIS);
        let Some(computed) = content_hash(&true_prev, seq, json, None) else {
            self.problem(seq, None, "is not JSON".to_string());
            self.broken = true;
            return;
        };
        self.recorded_prev = computed;
        self.mismatched = None;
        self.accept(seq, json, computed);
    }

    /// The run of events without a hash that ended, as one problem.
    fn report_unchained(&mut self) {
        let Some((first, last)) = self.unchained_run.take() else { return };
        let which = match last - first {
            0 => String::new(),
            1 => ", nor is the event after it".to_string(),
            after => format!(", nor are the {after} events after it"),
        };
        let what = format!(
            "is not chained{which}: no hash was recorded (events stored before phasegate chained its events get \
             their hashes when a command that writes opens the database; see docs/audit.md)"
        );
        self.problem(first, None, what);
    }

    /// Keeps what is needed of an event once read: its hash, and its JSON until the next one.
    fn accept(&mut self, seq: u64, json: &str, computed: Hash) {
        if seq == 1 {
            self.check_first(json);
        }
        self.hashes.push(computed);
        self.last.clear();
        self.last.push_str(json);
    }

    /// Something where the next event belongs that is not one (a line of an export that does not
    /// read): the log cannot be followed past it.
    pub fn unreadable(&mut self, what: String) {
        if !self.broken {
            self.problem(self.hashes.len() as u64 + 1, None, what);
            self.broken = true;
        }
    }

    /// One of the incident's checkpoints, in order, or why it could not be read.
    pub fn checkpoint(&mut self, checkpoint: Result<SignedCheckpoint, String>) {
        self.checkpoints.push(checkpoint);
    }

    /// The verdict. `claimed` is the number of events the incident's summary (or an export's
    /// header) says it has: fewer events in the log means some were cut off its end.
    pub fn finish(mut self, claimed: Option<u64>) -> Outcome {
        self.report_unchained();
        if let Some((seq, ..)) = self.ahead.first() {
            // Held for an event that never came.
            let what = format!("missing: the log goes from event {} to event {seq}", self.hashes.len());
            self.problem(self.hashes.len() as u64 + 1, None, what);
            self.broken = true;
        }
        let chained = self.hashes.len() as u64;
        let closed = serde_json::from_str::<Event>(&self.last)
            .is_ok_and(|event| matches!(event.kind, EventKind::IncidentClosed { .. }));
        if let Some(claimed) = claimed
            && claimed > self.read
        {
            let what = format!("missing: the log says it has {claimed} events but ends at event {}", self.read);
            self.problem(self.read + 1, None, what);
        }
        let signed_through = self.check_checkpoints();
        let witness = self.check_witnessed();
        // Without a key and without checkpoints there is nothing that could cover the end: the
        // verdict says the log is unsigned instead (an unsigned deployment's every closed
        // incident failed here).
        let unsigned_log = self.key.is_none() && self.checkpoints.is_empty();
        if closed && !self.broken && signed_through < chained && self.problems.is_empty() && !unsigned_log {
            let what = "the incident is closed but no checkpoint covers its end: events may have been cut off";
            self.problem(chained, None, what.to_string());
        }
        let mut signers: Vec<String> = Vec::new();
        for signed in self.checkpoints.iter().flatten() {
            if !signers.contains(&signed.checkpoint.key) {
                signers.push(signed.checkpoint.key.clone());
            }
        }
        self.problems.sort_by_key(|problem| (problem.event, problem.checkpoint));
        let more_problems = self.problems.len().saturating_sub(MAX_PROBLEMS);
        self.problems.truncate(MAX_PROBLEMS);
        Outcome {
            incident: self.incident,
            // What the log holds, all of it, even past a gap where checking stopped.
            events: self.read,
            checkpoints: self.checkpoints.len() as u64,
            unchained: self.unchained,
            signed_through,
            closed,
            unsigned_log,
            fingerprint: self.key.map(|key| key.fingerprint().to_string()),
            signers,
            witness,
            problems: self.problems,
            more_problems,
        }
    }

    /// Checks each checkpoint against the ones before it, its signature and the chain; returns the
    /// events covered by the last one that verified while every one before it did.
    fn check_checkpoints(&mut self) -> u64 {
        let mut prev = GENESIS;
        let mut covered = 0;
        let mut signed_through = Some(0);
        let checkpoints = std::mem::take(&mut self.checkpoints);
        for (index, checkpoint) in checkpoints.iter().enumerate() {
            let number = index as u64 + 1;
            let signed = match checkpoint {
                Ok(signed) => signed,
                Err(error) => {
                    self.problem(covered + 1, Some(number), format!("cannot be read: {error}"));
                    signed_through = None;
                    continue;
                }
            };
            let checkpoint = &signed.checkpoint;
            let at = checkpoint.events;
            let problems = self.problems.len();
            let fail = |verifier: &mut Verifier, what: String| verifier.problem(at.max(1), Some(number), what);
            if checkpoint.format != FORMAT || checkpoint.incident != self.incident || checkpoint.number != number {
                let what = format!(
                    "claims to be checkpoint {} (format {}) of incident `{}`",
                    checkpoint.number, checkpoint.format, checkpoint.incident
                );
                fail(self, what);
            }
            if chain::from_hex(&checkpoint.prev) != Some(prev) {
                fail(
                    self,
                    "does not follow the checkpoint before it: a checkpoint was removed, added or replaced".into(),
                );
            }
            match self.key {
                // The key it names is checked first: a checkpoint signed by another key says so.
                Some(key) if checkpoint.key != key.fingerprint() => fail(
                    self,
                    format!(
                        "is signed by key {}, not by the key trusted here ({}); `--public-key` names the key to \
                         check with",
                        checkpoint.key,
                        key.fingerprint()
                    ),
                ),
                Some(key) if key.verifies(signed) => {}
                Some(key) => fail(self, format!("its signature does not verify with key {}", key.fingerprint())),
                None => {
                    fail(self, format!("cannot be checked: no public key was given (it names key {})", checkpoint.key))
                }
            }
            if at <= covered {
                fail(self, format!("covers events 1 to {at}, no more than the checkpoint before it ({covered})"));
            }
            match self.hashes.get(at.wrapping_sub(1) as usize) {
                _ if self.broken => {}
                Some(hash) if chain::from_hex(&checkpoint.head) == Some(*hash) => {}
                Some(_) => fail(
                    self,
                    format!(
                        "signed a different event {at}: an event up to {at} was changed and the hashes computed again"
                    ),
                ),
                None => {
                    let end = self.hashes.len() as u64;
                    self.problem(
                        end + 1,
                        Some(number),
                        format!("covers events 1 to {at}, but the log ends at event {end}: events were cut off"),
                    );
                }
            }
            if self.problems.len() > problems {
                signed_through = None;
            } else if let Some(through) = signed_through.as_mut() {
                *through = at;
            }
            covered = covered.max(at);
            prev = checkpoint.hash();
        }
        self.checkpoints = checkpoints;
        signed_through.unwrap_or_else(|| self.last_good_checkpoint())
    }

    /// Compares the log's checkpoints with those witnessed, and says what the witness held.
    fn check_witnessed(&mut self) -> Option<Witnessing> {
        let witnessed = self.witnessed.take()?;
        let mut summary = Witnessing { lines: witnessed.len() as u64, checkpoint: 0, events: 0 };
        let end = self.read;
        let in_log = self.checkpoints.len() as u64;
        for Witnessed { line, signed } in &witnessed {
            let checkpoint = &signed.checkpoint;
            let (number, events) = (checkpoint.number, checkpoint.events);
            let at = events.max(1);
            if checkpoint.incident != self.incident {
                continue;
            }
            match self.key {
                Some(key) if checkpoint.key != key.fingerprint() || !key.verifies(signed) => {
                    let what = format!(
                        "witness line {line}: its signature does not verify with key {}, so it proves nothing",
                        key.fingerprint()
                    );
                    self.problem(at, Some(number), what);
                    continue;
                }
                _ => {}
            }
            if (number, events) > (summary.checkpoint, summary.events) {
                (summary.checkpoint, summary.events) = (number, events);
            }
            let logged = number.checked_sub(1).and_then(|index| self.checkpoints.get(index as usize));
            match logged {
                None => {
                    let what = format!(
                        "was witnessed (witness line {line}) covering events 1 to {events}, but the log has {end} \
                         event{} and {in_log} checkpoint{}: it was cut back{}",
                        if end == 1 { "" } else { "s" },
                        if in_log == 1 { "" } else { "s" },
                        match events.checked_sub(end) {
                            Some(0) | None => String::new(),
                            Some(1) => format!(", event {events} is missing"),
                            Some(_) => format!(", events {} to {events} are missing", end + 1),
                        }
                    );
                    self.problem(if events > end { end + 1 } else { at }, Some(number), what);
                }
                Some(Ok(logged)) if logged == signed => {}
                Some(Ok(logged)) => {
                    let what = format!(
                        "is not the one witnessed (witness line {line}): the log's covers events 1 to {} with head \
                         {}, the witnessed one events 1 to {events} with head {}",
                        logged.checkpoint.events,
                        short(&logged.checkpoint.head),
                        short(&checkpoint.head)
                    );
                    self.problem(at, Some(number), what);
                }
                Some(Err(_)) => {
                    let what =
                        format!("cannot be compared with the one witnessed (witness line {line}): it cannot be read");
                    self.problem(at, Some(number), what);
                }
            }
        }
        Some(summary)
    }

    /// When a checkpoint failed: the events covered by the last one before the first failure.
    fn last_good_checkpoint(&self) -> u64 {
        let first_bad = self.problems.iter().filter_map(|problem| problem.checkpoint).min().unwrap_or(1);
        self.checkpoints[..(first_bad as usize).saturating_sub(1)]
            .iter()
            .filter_map(|checkpoint| checkpoint.as_ref().ok())
            .map(|signed| signed.checkpoint.events)
            .max()
            .unwrap_or(0)
    }

    fn check_first(&mut self, json: &str) {
        let started = serde_json::from_str::<Event>(json).ok().and_then(|event| match event.kind {
            EventKind::IncidentStarted { incident, .. } => Some(incident),
            _ => None,
        });
        if started.as_deref() != Some(self.incident.as_str()) {
            let what = format!("is not the `incident_started` event of incident `{}`", self.incident);
            self.problem(1, None, what);
        }
    }

    fn problem(&mut self, event: u64, checkpoint: Option<u64>, what: String) {
        self.problems.push(Problem { event, checkpoint, what });
    }
}

/// The first 12 digits of a hash written down, enough to tell two apart in a message.
fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// The hash of an event whose JSON is `json`, chained to `prev`. The hash covers the event's
/// canonical form, which is how phasegate stores and exports events: the bytes are hashed as they
/// are first, and encoded canonically only when that does not give the `recorded` hash (JSON
/// reformatted by some tool, or an event that was changed). `None` when `json` is not JSON.
fn content_hash(prev: &Hash, seq: u64, json: &str, recorded: Option<Hash>) -> Option<Hash> {
    let hash = chain::link(prev, seq, json.as_bytes());
    if Some(hash) == recorded {
        return Some(hash);
    }
    let canonical = chain::canonicalize(json).ok()?;
    Some(chain::link(prev, seq, canonical.as_bytes()))
}
