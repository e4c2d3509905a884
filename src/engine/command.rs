//! Commands: what people, triggers and the runtime ask of an incident.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::effect::{Effect, Outcome};
use super::event::EventKind;

/// A command, who gives it and when. Time comes in here: the engine never reads a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub actor: String,
    pub at: DateTime<Utc>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open an incident. `runbook_text` is the file as read; its hash pins it.
    Start { incident: String, runbook_text: String, inputs: BTreeMap<String, serde_json::Value>, key: Option<String> },
    /// Approve an approval gate of a phase; `gate` may be left out when the phase has only one
    /// approval gate waiting.
    Approve { phase: String, gate: Option<String>, note: Option<String> },
    /// Mark a manual step done, with evidence and the outputs it declares. On an automated step
    /// that failed for good it is an override, for the runbook's `recover` roles, evidence required.
    CompleteStep { phase: String, step: String, evidence: Option<String>, outputs: BTreeMap<String, serde_json::Value> },
    /// Give a signal gate its signal (from a trigger, or by a person holding the gate's role).
    Signal { phase: String, gate: String, note: Option<String> },
    /// Add a note to the timeline.
    Note { text: String },
    /// Send a status update to an audience now, by hand: for the audience's `senders`.
    StatusUpdate { audience: String },
    /// Close the incident: for the runbook's `close` roles, once every phase is done or skipped.
    Close { note: Option<String> },
    /// Close the incident early, as abandoned: for the runbook's `abandon` roles, reason required.
    Abandon { reason: String },
    /// Another attempt of an automated step that failed for good, with the same idempotency key:
    /// for the runbook's `recover` roles.
    Retry { phase: String, step: String, reason: Option<String> },
    /// Skip a step that failed for good (it counts as skipped, not done): for the runbook's
    /// `recover` roles, reason required.
    Skip { phase: String, step: String, reason: String },
    /// Probe a `check` gate again, with a fresh deadline, whether it is waiting or its deadline
    /// failed the phase: for the runbook's `recover` roles.
    RetryGate { phase: String, gate: String, reason: Option<String> },
    /// Pass a `check` gate by hand, with evidence (required), whether it is waiting or its deadline
    /// failed the phase: an override, for the runbook's `recover` roles.
    PassGate { phase: String, gate: String, evidence: String },
    /// Pause, resume or cancel a running campaign: for the runbook's `campaign` roles.
    Campaign { phase: String, step: String, action: CampaignAction, reason: Option<String> },
    /// A test send of a campaign was made (by the shell, before this records it): for the
    /// runbook's `campaign` roles. It touches nothing of the campaign's progress.
    CampaignTest { phase: String, step: String, test: CampaignTest },
    /// The runtime's campaign sender says how far a campaign has got.
    CampaignReport { phase: String, step: String, report: CampaignReport },
    /// Time has passed: timers, retries, check polls, overdue relaxations, regular updates.
    Tick,
    /// The runtime carried out this effect (as taken from the outbox) with this outcome.
    Record { effect: Effect, outcome: Outcome },
}

/// What a person may do to a running campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    /// Starts a `test_first` campaign that waits, once a test send of it has gone out.
    Launch,
    Pause,
    Resume,
    Cancel,
}

impl CampaignAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignAction::Launch => "launch",
            CampaignAction::Pause => "pause",
            CampaignAction::Resume => "resume",
            CampaignAction::Cancel => "cancel",
        }
    }
}

/// What a campaign's test send did: the internal addresses it went to, the recipients whose
/// messages were rendered for it, how many messages went out, how many the channel refused, and
/// the channel's error when it took none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CampaignTest {
    pub to: Vec<String>,
    pub recipients: Vec<String>,
    pub messages: u32,
    pub refused: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CampaignTest {
    /// Whether the channel took at least one of the test's messages.
    pub fn went_out(&self) -> bool {
        self.error.is_none() && self.messages > self.refused
    }
}

/// A batch that fails this many attempts in a row pauses its campaign ([`CampaignReport::Halted`]:
/// `campaign_paused`, by phasegate, with the batch's last error): a channel down for good is for a
/// person to judge, and none of the batch's recipients is given up. Resumed, the batch has as many
/// attempts again.
pub const CAMPAIGN_ATTEMPTS: u32 = 8;

/// A campaign's milestones, as the sender reports them.
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignReport {
    /// The list was read and cut into batches.
    Started {
        list: String,
        list_sha256: String,
        recipients: u64,
        rejected: u64,
        duplicates: u64,
        suppressed: u64,
        batches: u32,
    },
    /// So many sent and failed so far, so many batches answered.
    Progress { sent: u64, failed: u64, batches_done: u32, batches: u32 },
    /// A batch failed so many attempts in a row that the sender stopped: the campaign pauses
    /// itself, recorded with why, until a person resumes or cancels it. No recipient is given up.
    Halted { reason: String },
}

impl CampaignReport {
    /// The event that records it.
    pub fn event(&self, phase: &str, step: &str) -> EventKind {
        let (phase, step) = (phase.to_string(), step.to_string());
        match self.clone() {
            CampaignReport::Started { list, list_sha256, recipients, rejected, duplicates, suppressed, batches } => {
                EventKind::CampaignStarted {
                    phase,
                    step,
                    list,
                    list_sha256,
                    recipients,
                    rejected,
                    duplicates,
                    suppressed,
                    batches,
                }
            }
            CampaignReport::Progress { sent, failed, batches_done, batches } => {
                EventKind::CampaignProgress { phase, step, sent, failed, batches_done, batches }
            }
            CampaignReport::Halted { .. } => EventKind::CampaignPaused { phase, step },
        }
    }
}
