//! Events: every change to an incident, in the order it happened. An incident's state is the fold
//! of its events and nothing else.
//!
//! Events are stored as JSON. `format` says which version of this shape an event was written
//! with, so that a later phasegate can still read (and verify) an old log.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version of the event shape that this phasegate writes. Version 2 added what people do
/// about failed steps (`step_retried`, `step_skipped_by_hand`, `step_overridden`,
/// `phase_resumed`) and `abandoned` on `incident_closed`; a version 1 log reads as it always did.
/// `gate_retried` and `gate_overridden` came later in version 2: new kinds, no shape changed.
pub const FORMAT: u32 = 2;

/// The actor for what the engine does by itself (a timer fired, a step was started).
pub const SYSTEM: &str = "phasegate";

/// One change to an incident: when, by whom, why, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub format: u32,
    pub at: DateTime<Utc>,
    /// The person (as configuration names them), trigger or `phasegate` that caused it.
    pub actor: String,
    /// Why, where a person decided something: an approval's note, a step's evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, tagged with its `type`. Nested rather than flattened into the envelope:
    /// serde reads a flattened enum through an intermediate buffer, several times slower, and
    /// `phasegate status` reads every event of an incident.
    #[serde(rename = "event")]
    pub kind: EventKind,
}

impl Event {
    pub fn new(at: DateTime<Utc>, actor: impl Into<String>, kind: EventKind) -> Event {
        Event { format: FORMAT, at, actor: actor.into(), reason: None, kind }
    }

    pub fn because(mut self, reason: Option<String>) -> Event {
        self.reason = reason.filter(|r| !r.trim().is_empty());
        self
    }
}

/// Who approved something, and holding which role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub person: String,
    pub role: String,
    pub at: DateTime<Utc>,
}

/// What happened. The variant names are the event types recorded in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The first event of every incident: it pins the exact runbook text it runs.
    IncidentStarted {
        incident: String,
        runbook_id: String,
        runbook_version: Option<String>,
        /// SHA-256 of `runbook_text`, in lowercase hex.
        runbook_sha256: String,
        runbook_text: String,
        inputs: BTreeMap<String, serde_json::Value>,
        /// The deduplication key of the trigger that started it, if one did.
        key: Option<String>,
    },
    /// Every phase the phase needs is done or skipped; its entry gates are checked from now on.
    PhaseReady { phase: String },
    /// The phase's `when` was false. `values` are the inputs, phases, steps and controls it saw.
    PhaseSkipped { phase: String, condition: String, values: serde_json::Value },
    /// The entry gates passed; the phase's steps run.
    PhaseStarted { phase: String },
    /// Every exit gate passed.
    PhaseDone { phase: String },
    /// A step failed for good or a check gate missed its deadline.
    PhaseFailed { phase: String, error: String },
    /// A person holding `role` approved an approval gate (the actor is the approver).
    ApprovalGiven { phase: String, gate: String, role: String },
    /// A trigger, or a person allowed to, gave a signal gate its signal.
    SignalGiven { phase: String, gate: String },
    /// A check gate's poll was sent (its effect is in the outbox).
    CheckPolled { phase: String, gate: String, poll: u32 },
    /// An HTTP check was answered (or not); `ok` says whether the answer was as expected.
    CheckAnswered { phase: String, gate: String, ok: bool, status: Option<u16>, error: Option<String> },
    /// A gate holds; `why` records what made it pass (approvers, the check's answer, the values
    /// a condition saw, the time).
    GatePassed { phase: String, gate: String, why: serde_json::Value },
    /// A timer gate's `not_later_than`, or a relaxation's expiry, passed.
    DeadlineMissed { phase: String, gate: String },
    /// The step's `when` was false.
    StepSkipped { phase: String, step: String, condition: String },
    /// An automated step's attempt begins; its effect is in the outbox with this idempotency key.
    StepStarted { phase: String, step: String, attempt: u32, idempotency_key: String },
    /// The step is done: by a person (with evidence as the event's reason) or by its effect.
    StepDone { phase: String, step: String, outputs: BTreeMap<String, serde_json::Value> },
    /// An attempt failed; `retry_at` is when the next one starts, if there is one.
    StepFailed { phase: String, step: String, attempt: u32, error: String, retry_at: Option<DateTime<Utc>> },
    /// A security control was switched off or weakened, approved by the phase's approvers.
    ControlRelaxed {
        control: String,
        phase: String,
        step: String,
        reason: String,
        expires_at: DateTime<Utc>,
        approved_by: Vec<Approver>,
        compensating: Vec<String>,
    },
    /// The relaxation is past its expiry and the control is still relaxed.
    RelaxationOverdue { control: String },
    /// The control is back, possibly stronger.
    ControlReinstated { control: String, phase: String, step: String, strengthened: Vec<String> },
    /// A status update for an audience is due (its effect is in the outbox); `occasion` is the
    /// event that caused it, `scheduled` or `requested`.
    StatusUpdateRequested { audience: String, occasion: String },
    /// A status update was rendered and delivered to these channels: why it was sent (the
    /// `occasion` of its request) and what it said, so the log shows what each audience was told.
    StatusUpdateSent {
        audience: String,
        channels: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        occasion: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A status update could not be delivered.
    StatusUpdateFailed { audience: String, error: String },
    /// A person holding a `recover` right asked for another attempt of a step that failed for
    /// good (why is the event's reason); the attempt starts at once, with the same idempotency key.
    StepRetried { phase: String, step: String },
    /// A person holding a `recover` right skipped a step that failed for good (why is the event's
    /// reason): it counts as skipped, not done.
    StepSkippedByHand { phase: String, step: String },
    /// A person holding a `recover` right marked a step that failed for good as done by hand, with
    /// evidence (the event's reason) and the outputs they give.
    StepOverridden { phase: String, step: String, outputs: BTreeMap<String, serde_json::Value> },
    /// A person holding a `recover` right asked for a `check` gate to be probed again (why is the
    /// event's reason): its deadline counts from now.
    GateRetried { phase: String, gate: String },
    /// A person holding a `recover` right passed a `check` gate by hand, with evidence (the
    /// event's reason): an override, the check never answered as expected.
    GateOverridden { phase: String, gate: String },
    /// Nothing failed is left in a failed phase (its failed step was retried, skipped or
    /// overridden): it runs again.
    PhaseResumed { phase: String },
    /// A campaign step read its list and will send: the list's path and SHA-256 (so an auditor
    /// knows exactly which list), what reading it found, and the batches it is cut into.
    CampaignStarted {
        phase: String,
        step: String,
        list: String,
        list_sha256: String,
        recipients: u64,
        rejected: u64,
        duplicates: u64,
        suppressed: u64,
        batches: u32,
    },
    /// How far a campaign has got (recorded every few percent, not per recipient).
    CampaignProgress { phase: String, step: String, sent: u64, failed: u64, batches_done: u32, batches: u32 },
    /// A person holding the `campaign` right sent a campaign's messages for a sample of its
    /// recipients to internal addresses, to check them before (or while) the campaign sends.
    CampaignTestSent {
        phase: String,
        step: String,
        #[serde(flatten)]
        test: super::command::CampaignTest,
    },
    /// A person holding the `campaign` right launched a `test_first` campaign after a test send
    /// of it went out: the step starts sending.
    CampaignLaunched { phase: String, step: String },
    /// A person holding the `campaign` right paused a campaign: batches in flight finish, no new
    /// one starts.
    CampaignPaused { phase: String, step: String },
    /// A paused campaign goes on.
    CampaignResumed { phase: String, step: String },
    /// A person holding the `campaign` right cancelled a campaign: batches in flight finish, and
    /// the step fails for good with what was sent (a retry goes on from there).
    CampaignCancelled { phase: String, step: String },
    /// A campaign ended. `campaign` is its key (`INCIDENT/PHASE/STEP`); `merkle_root` covers every
    /// recipient's outcome, so that one recipient's message can be proved (`audit prove`).
    CampaignFinished {
        phase: String,
        step: String,
        campaign: String,
        #[serde(flatten)]
        totals: super::effect::CampaignTotals,
    },
    /// A note for the timeline (the text is the event's reason).
    NoteAdded,
    /// The incident is closed; `abandoned` when a person holding the `abandon` right closed it
    /// before every phase was done (why is the event's reason).
    IncidentClosed {
        #[serde(default, skip_serializing_if = "is_false")]
        abandoned: bool,
    },
}

fn is_false(value: &bool) -> bool {
    !value
}

impl EventKind {
    /// The event's type as recorded, for example `phase_started`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::IncidentStarted { .. } => "incident_started",
            EventKind::PhaseReady { .. } => "phase_ready",
            EventKind::PhaseSkipped { .. } => "phase_skipped",
            EventKind::PhaseStarted { .. } => "phase_started",
            EventKind::PhaseDone { .. } => "phase_done",
            EventKind::PhaseFailed { .. } => "phase_failed",
            EventKind::ApprovalGiven { .. } => "approval_given",
            EventKind::SignalGiven { .. } => "signal_given",
            EventKind::CheckPolled { .. } => "check_polled",
            EventKind::CheckAnswered { .. } => "check_answered",
            EventKind::GatePassed { .. } => "gate_passed",
            EventKind::DeadlineMissed { .. } => "deadline_missed",
            EventKind::StepSkipped { .. } => "step_skipped",
            EventKind::StepStarted { .. } => "step_started",
            EventKind::StepDone { .. } => "step_done",
            EventKind::StepFailed { .. } => "step_failed",
            EventKind::ControlRelaxed { .. } => "control_relaxed",
            EventKind::RelaxationOverdue { .. } => "relaxation_overdue",
            EventKind::ControlReinstated { .. } => "control_reinstated",
            EventKind::StatusUpdateRequested { .. } => "status_update_requested",
            EventKind::StatusUpdateSent { .. } => "status_update_sent",
            EventKind::StatusUpdateFailed { .. } => "status_update_failed",
            EventKind::StepRetried { .. } => "step_retried",
            EventKind::StepSkippedByHand { .. } => "step_skipped_by_hand",
            EventKind::StepOverridden { .. } => "step_overridden",
            EventKind::GateRetried { .. } => "gate_retried",
            EventKind::GateOverridden { .. } => "gate_overridden",
            EventKind::PhaseResumed { .. } => "phase_resumed",
            EventKind::CampaignStarted { .. } => "campaign_started",
            EventKind::CampaignProgress { .. } => "campaign_progress",
            EventKind::CampaignTestSent { .. } => "campaign_test_sent",
            EventKind::CampaignLaunched { .. } => "campaign_launched",
            EventKind::CampaignPaused { .. } => "campaign_paused",
            EventKind::CampaignResumed { .. } => "campaign_resumed",
            EventKind::CampaignCancelled { .. } => "campaign_cancelled",
            EventKind::CampaignFinished { .. } => "campaign_finished",
            EventKind::NoteAdded => "note_added",
            EventKind::IncidentClosed { .. } => "incident_closed",
        }
    }
}

impl Event {
    /// One line for a person reading the timeline.
    pub fn summary(&self) -> String {
        let reason = self.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        match &self.kind {
            EventKind::IncidentStarted { runbook_id, key, .. } => {
                let key = key.as_deref().map(|k| format!(" (key `{k}`)")).unwrap_or_default();
                format!("incident started from runbook `{runbook_id}`{key}")
            }
            EventKind::PhaseReady { phase } => format!("phase `{phase}` is ready; its entry gates are checked"),
            EventKind::PhaseSkipped { phase, condition, .. } => {
                format!("phase `{phase}` skipped: `{condition}` is false")
            }
            EventKind::PhaseStarted { phase } => format!("phase `{phase}` started"),
            EventKind::PhaseDone { phase } => format!("phase `{phase}` done"),
            EventKind::PhaseFailed { phase, error } => format!("phase `{phase}` failed: {error}"),
            EventKind::ApprovalGiven { phase, gate, role } => format!("approved `{phase}/{gate}` as {role}{reason}"),
            EventKind::SignalGiven { phase, gate } => format!("signal for `{phase}/{gate}`{reason}"),
            EventKind::CheckPolled { phase, gate, poll } => format!("check `{phase}/{gate}` polled (poll {poll})"),
            EventKind::CheckAnswered { phase, gate, ok, status, error } => {
                let answer = match (status, error) {
                    (Some(status), _) => format!("status {status}"),
                    (None, Some(error)) => error.clone(),
                    (None, None) => "no answer".to_string(),
                };
                let verdict = if *ok { "as expected" } else { "not as expected" };
                format!("check `{phase}/{gate}` answered {answer}, {verdict}")
            }
            EventKind::GatePassed { phase, gate, .. } => format!("gate `{phase}/{gate}` passed"),
            EventKind::DeadlineMissed { phase, gate } => format!("deadline of `{phase}/{gate}` missed"),
            EventKind::StepSkipped { phase, step, condition } => {
                format!("step `{phase}/{step}` skipped: `{condition}` is false")
            }
            EventKind::StepStarted { phase, step, attempt, .. } => {
                format!("step `{phase}/{step}` started (attempt {attempt})")
            }
            EventKind::StepDone { phase, step, .. } => format!("step `{phase}/{step}` done{reason}"),
            EventKind::StepFailed { phase, step, attempt, error, retry_at } => {
                let next = retry_at.map(|at| format!("; retry at {}", at.format("%H:%M:%S UTC"))).unwrap_or_default();
                format!("step `{phase}/{step}` attempt {attempt} failed: {error}{next}")
            }
            EventKind::ControlRelaxed { control, expires_at, .. } => {
                format!("control `{control}` relaxed until {}", expires_at.format("%Y-%m-%d %H:%M UTC"))
            }
            EventKind::RelaxationOverdue { control } => format!("relaxation of `{control}` is overdue"),
            EventKind::ControlReinstated { control, .. } => format!("control `{control}` reinstated"),
            EventKind::StatusUpdateRequested { audience, occasion } => {
                format!("status update for `{audience}` ({occasion})")
            }
            EventKind::StatusUpdateSent { audience, channels, .. } => {
                format!("status update for `{audience}` sent to {}", channels.join(", "))
            }
            EventKind::StatusUpdateFailed { audience, error } => {
                format!("status update for `{audience}` failed: {error}")
            }
            EventKind::StepRetried { phase, step } => format!("step `{phase}/{step}` retried by hand{reason}"),
            EventKind::StepSkippedByHand { phase, step } => format!("step `{phase}/{step}` skipped by hand{reason}"),
            EventKind::StepOverridden { phase, step, .. } => {
                format!("step `{phase}/{step}` marked done by hand after it failed{reason}")
            }
            EventKind::GateRetried { phase, gate } => format!("check `{phase}/{gate}` retried by hand{reason}"),
            EventKind::GateOverridden { phase, gate } => format!("gate `{phase}/{gate}` passed by hand{reason}"),
            EventKind::PhaseResumed { phase } => format!("phase `{phase}` resumed: nothing failed is left in it"),
            EventKind::CampaignStarted {
                phase, step, recipients, rejected, duplicates, suppressed, batches, ..
            } => {
                format!(
                    "campaign `{phase}/{step}` started: {recipients} recipients in {batches} batches \
                     ({rejected} lines rejected, {duplicates} duplicates, {suppressed} suppressed)"
                )
            }
            EventKind::CampaignProgress { phase, step, sent, failed, batches_done, batches } => {
                format!("campaign `{phase}/{step}`: {sent} sent, {failed} failed, {batches_done} of {batches} batches")
            }
            EventKind::CampaignTestSent { phase, step, test } => {
                let outcome = match &test.error {
                    Some(error) => format!("none taken: {error}"),
                    None if test.refused > 0 => format!("{} refused", test.refused),
                    None => "all taken".to_string(),
                };
                format!(
                    "campaign `{phase}/{step}` test send: {} message(s) of {} recipient(s) to {} ({outcome})",
                    test.messages,
                    test.recipients.len(),
                    test.to.join(", ")
                )
            }
            EventKind::CampaignLaunched { phase, step } => format!("campaign `{phase}/{step}` launched{reason}"),
            EventKind::CampaignPaused { phase, step } => format!("campaign `{phase}/{step}` paused{reason}"),
            EventKind::CampaignResumed { phase, step } => format!("campaign `{phase}/{step}` resumed{reason}"),
            EventKind::CampaignCancelled { phase, step } => format!("campaign `{phase}/{step}` cancelled{reason}"),
            EventKind::CampaignFinished { phase, step, totals, .. } => {
                let ended = if totals.cancelled { "ended, cancelled" } else { "finished" };
                let repeats = match totals.possible_repeats.len() {
                    0 => String::new(),
                    n => format!(", {n} batches possibly repeated after a restart"),
                };
                format!(
                    "campaign `{phase}/{step}` {ended}: {} of {} sent, {} failed{repeats}; merkle root {}",
                    totals.sent, totals.recipients, totals.failed, totals.merkle_root
                )
            }
            EventKind::NoteAdded => format!("note{reason}"),
            EventKind::IncidentClosed { abandoned: false } => format!("incident closed{reason}"),
            EventKind::IncidentClosed { abandoned: true } => format!("incident ABANDONED{reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json_with_their_type() {
        let at = DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc);
        let event = Event::new(
            at,
            "dana",
            EventKind::ApprovalGiven { phase: "relax".into(), gate: "approval".into(), role: "ciso".into() },
        )
        .because(Some("tills must trade".into()));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"]["type"], "approval_given");
        assert_eq!(json["reason"], "tills must trade");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }

    /// Format 1 wrote `incident_closed` without `abandoned`; format 2 writes a plain close the same way.
    #[test]
    fn a_format_1_close_reads_as_a_close_that_was_not_abandoned() {
        let written = r#"{"actor":"dana","at":"2026-11-24T02:14:00Z","event":{"type":"incident_closed"},"format":1}"#;
        let event: Event = serde_json::from_str(written).unwrap();
        assert_eq!(event.kind, EventKind::IncidentClosed { abandoned: false });
        let again = serde_json::to_value(Event { format: 1, ..event }).unwrap();
        assert_eq!(again, serde_json::from_str::<serde_json::Value>(written).unwrap());
        let abandoned = Event::new(event_time(), "ciso", EventKind::IncidentClosed { abandoned: true });
        assert_eq!(serde_json::to_value(&abandoned).unwrap()["event"]["abandoned"], true);
    }

    fn event_time() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc)
    }
}
