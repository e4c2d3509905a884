//! An incident's state: the fold of its events, and nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::event::{Approver, Event, EventKind};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    pub runbook_id: String,
    pub runbook_version: Option<String>,
    pub runbook_sha256: String,
    /// The runbook text the incident runs, as it was when the incident started. Shared: a state
    /// is cloned for every command decided on it, and the text is often tens of kilobytes.
    #[serde(skip)]
    pub runbook_text: std::sync::Arc<str>,
    pub key: Option<String>,
    pub inputs: BTreeMap<String, serde_json::Value>,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    /// How many events the state folds: the version an append must expect.
    pub version: u64,
    /// When the last event happened.
    pub updated_at: DateTime<Utc>,
    /// Each phase's state behind an `Arc`: a state is cloned for every command decided on it,
    /// and a decision changes one or two phases, so the others are shared, not copied.
    #[serde(serialize_with = "shared_phases")]
    pub phases: BTreeMap<String, Arc<PhaseState>>,
    /// By control: its latest relaxation.
    pub relaxations: BTreeMap<String, Relaxation>,
    /// When each audience's last status update was decided.
    pub last_update: BTreeMap<String, DateTime<Utc>>,
    /// How each audience's latest status update ended: delivered, or failed and why. A request
    /// that has not ended yet leaves the one before it here.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub update_outcome: BTreeMap<String, UpdateOutcome>,
    pub closed: Option<Closed>,
}

/// How a status update ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateOutcome {
    pub at: DateTime<Utc>,
    /// Why it was not delivered; `None` when it was.
    pub error: Option<String>,
}

/// Serializes the phases as if they were not shared (serde's `rc` feature is not needed).
fn shared_phases<S: Serializer>(phases: &BTreeMap<String, Arc<PhaseState>>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(phases.iter().map(|(id, phase)| (id, phase.as_ref())))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Closed {
    pub at: DateTime<Utc>,
    pub by: String,
    /// Closed before every phase was done or skipped, by someone holding the `abandon` right.
    pub abandoned: bool,
    /// The closing note, or why it was abandoned.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// Waiting for the phases it needs.
    #[default]
    Pending,
    /// Its needs are met; waiting for its entry gates.
    Ready,
    /// Its steps run; then its exit gates are checked.
    Running,
    Done,
    Skipped,
    Failed,
}

impl PhaseStatus {
    /// As conditions see it: `phases["x"] == "done"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Pending => "pending",
            PhaseStatus::Ready => "ready",
            PhaseStatus::Running => "running",
            PhaseStatus::Done => "done",
            PhaseStatus::Skipped => "skipped",
            PhaseStatus::Failed => "failed",
        }
    }

    /// Done or skipped: phases that need this one may go on.
    pub fn is_finished(self) -> bool {
        matches!(self, PhaseStatus::Done | PhaseStatus::Skipped)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PhaseState {
    pub status: PhaseStatus,
    pub ready_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub gates: BTreeMap<String, GateState>,
    pub steps: BTreeMap<String, StepState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct GateState {
    pub passed_at: Option<DateTime<Utc>>,
    pub approvals: Vec<Approver>,
    pub signalled: bool,
    /// Polls sent so far, and whether one is waiting for its answer.
    pub polls: u32,
    pub polling: bool,
    /// The check's last answer, kept so that whoever waits on the gate sees why it holds.
    pub last_check: Option<CheckAnswer>,
    pub deadline_missed: bool,
    /// When a check gate's deadline counts from, once a person retried it.
    pub deadline_from: Option<DateTime<Utc>>,
    /// What a person last did about the check gate: retried it, or passed it by hand.
    pub recovery: Option<Recovery>,
}

/// A check gate's last answer: when, whether as expected, and what came back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckAnswer {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// The HTTP status, when the probe was answered at all.
    pub status: Option<u16>,
    /// Why it was not as expected: the connection's error, or the expectation's.
    pub error: Option<String>,
}

impl CheckAnswer {
    /// What came back, for a person: `HTTP 503`, `HTTP 200: ERROR`, or the connection's error.
    pub fn describe(&self) -> String {
        match (self.status, &self.error) {
            (Some(status), None) => format!("HTTP {status}"),
            (Some(status), Some(error)) => format!("HTTP {status}: {error}"),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    #[default]
    Pending,
    /// An attempt's effect is under way.
    Running,
    /// An attempt failed and another is due at `retry_at`.
    Retrying,
    Done,
    Skipped,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Retrying => "retrying",
            StepStatus::Done => "done",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct StepState {
    pub status: StepStatus,
    pub attempt: u32,
    pub idempotency_key: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, serde_json::Value>,
    pub done_at: Option<DateTime<Utc>>,
    pub done_by: Option<String>,
    pub evidence: Option<String>,
    /// What a person last did about the step after it failed for good.
    pub recovery: Option<Recovery>,
    /// A campaign step's progress, once it has started sending.
    pub campaign: Option<CampaignState>,
    /// A campaign step's last test send: who, when, and what it did.
    pub last_test: Option<TestSend>,
    /// How many test sends the campaign step had.
    pub tests: u32,
    /// Who launched the `test_first` campaign step, and when.
    pub launched: Option<(String, DateTime<Utc>)>,
}

/// A campaign's test send, from its event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestSend {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub test: super::command::CampaignTest,
}

/// How far a campaign has got, from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CampaignState {
    /// When the list was read and sending began.
    pub started_at: Option<DateTime<Utc>>,
    pub list: String,
    pub list_sha256: String,
    pub recipients: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub suppressed: u64,
    pub batches: u32,
    pub sent: u64,
    pub failed: u64,
    pub batches_done: u32,
    /// Paused: by whom (a person holding the `campaign` right, or phasegate's sender after a
    /// batch failed its attempts in a row), when and why, as the `campaign_paused` event says.
    pub paused: Option<Steered>,
    /// Cancelled: by whom, when and why (until the step is retried).
    pub cancelled: Option<Steered>,
    pub finished: Option<super::effect::CampaignTotals>,
}

/// Who paused or cancelled a campaign, when, and the reason recorded with it. The board, the
/// command line and the incident's page show the reason whoever the actor was: a pause by
/// phasegate says which batch failed and the channel's last error, a person's says what they wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Steered {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

impl Steered {
    fn of(event: &Event) -> Steered {
        Steered { by: event.actor.clone(), at: event.at, reason: event.reason.clone() }
    }
}

/// What a person did about a step that failed for good, or a check gate: who, when, why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    pub kind: RecoveryKind,
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryKind {
    /// Another attempt, with the same idempotency key.
    Retried,
    /// Skipped: the step counts as not done.
    Skipped,
    /// Marked done by hand, with evidence.
    Overridden,
}

impl RecoveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryKind::Retried => "retried",
            RecoveryKind::Skipped => "skipped",
            RecoveryKind::Overridden => "overridden",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Relaxation {
    pub control: String,
    pub phase: String,
    pub step: String,
    pub reason: String,
    pub relaxed_at: DateTime<Utc>,
    pub relaxed_by: String,
    pub approved_by: Vec<Approver>,
    pub expires_at: DateTime<Utc>,
    pub compensating: Vec<String>,
    pub overdue: bool,
    pub reinstated_at: Option<DateTime<Utc>>,
    pub reinstated_by: Option<String>,
    pub strengthened: Vec<String>,
}

impl Relaxation {
    pub fn is_open(&self) -> bool {
        self.reinstated_at.is_none()
    }
}

/// Why a log cannot be folded into an incident.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the log is empty")]
    Empty,
    #[error("the log does not begin with `incident_started` but with `{0}`")]
    NoStart(&'static str),
    #[error("event {index} is a second `incident_started`")]
    SecondStart { index: usize },
}

impl Incident {
    /// Folds a whole log.
    pub fn from_events<'e>(events: impl IntoIterator<Item = &'e Event>) -> Result<Incident, Error> {
        let mut events = events.into_iter();
        let first = events.next().ok_or(Error::Empty)?;
        let mut incident = Incident::start(first)?;
        for (index, event) in events.enumerate() {
            if matches!(event.kind, EventKind::IncidentStarted { .. }) {
                return Err(Error::SecondStart { index: index + 1 });
            }
            incident.apply(event);
        }
        Ok(incident)
    }

    /// The state after the first event.
    pub fn start(event: &Event) -> Result<Incident, Error> {
        let EventKind::IncidentStarted {
            incident,
            runbook_id,
            runbook_version,
            runbook_sha256,
            runbook_text,
            inputs,
            key,
        } = &event.kind
        else {
            return Err(Error::NoStart(event.kind.name()));
        };
        Ok(Incident {
            id: incident.clone(),
            runbook_id: runbook_id.clone(),
            runbook_version: runbook_version.clone(),
            runbook_sha256: runbook_sha256.clone(),
            runbook_text: runbook_text.as_str().into(),
            key: key.clone(),
            inputs: inputs.clone(),
            started_at: event.at,
            started_by: event.actor.clone(),
            version: 1,
            updated_at: event.at,
            phases: BTreeMap::new(),
            relaxations: BTreeMap::new(),
            last_update: BTreeMap::new(),
            update_outcome: BTreeMap::new(),
            closed: None,
        })
    }

    pub fn phase(&self, id: &str) -> Arc<PhaseState> {
        self.phases.get(id).cloned().unwrap_or_default()
    }

    pub fn step(&self, phase: &str, step: &str) -> StepState {
        self.phases.get(phase).and_then(|p| p.steps.get(step)).cloned().unwrap_or_default()
    }

    pub fn gate(&self, phase: &str, gate: &str) -> GateState {
        self.phases.get(phase).and_then(|p| p.gates.get(gate)).cloned().unwrap_or_default()
    }

    pub fn open_relaxations(&self) -> impl Iterator<Item = &Relaxation> {
        self.relaxations.values().filter(|relaxation| relaxation.is_open())
    }

    /// The phase's own state, copied first if another clone of the incident shares it.
    fn phase_mut(&mut self, id: &str) -> &mut PhaseState {
        Arc::make_mut(self.phases.entry(id.to_string()).or_default())
    }

    fn step_mut(&mut self, phase: &str, step: &str) -> &mut StepState {
        self.phase_mut(phase).steps.entry(step.to_string()).or_default()
    }

    fn recovery(kind: RecoveryKind, event: &Event) -> Recovery {
        Recovery { kind, by: event.actor.clone(), at: event.at, reason: event.reason.clone() }
    }

    fn gate_mut(&mut self, phase: &str, gate: &str) -> &mut GateState {
        self.phase_mut(phase).gates.entry(gate.to_string()).or_default()
    }

    /// Applies one event. Events are facts: applying one never fails.
    pub fn apply(&mut self, event: &Event) {
        self.version += 1;
        self.updated_at = event.at;
        let at = event.at;
        match &event.kind {
            EventKind::IncidentStarted { .. } => {}
            EventKind::PhaseReady { phase } => {
                let state = self.phase_mut(phase);
                state.status = PhaseStatus::Ready;
                state.ready_at = Some(at);
            }
            EventKind::PhaseSkipped { phase, .. } => {
                let state = self.phase_mut(phase);
                state.status = PhaseStatus::Skipped;
                state.ended_at = Some(at);
            }
            EventKind::PhaseStarted { phase } => {
                let state = self.phase_mut(phase);
                state.status = PhaseStatus::Running;
                state.started_at = Some(at);
            }
            EventKind::PhaseDone { phase } => {
                let state = self.phase_mut(phase);
                state.status = PhaseStatus::Done;
                state.ended_at = Some(at);
            }
            EventKind::PhaseFailed { phase, error } => {
                let state = self.phase_mut(phase);
                state.status = PhaseStatus::Failed;
                state.ended_at = Some(at);
                state.error = Some(error.clone());
            }
            EventKind::ApprovalGiven { phase, gate, role } => {
                let approver = Approver { person: event.actor.clone(), role: role.clone(), at };
                self.gate_mut(phase, gate).approvals.push(approver);
            }
            EventKind::SignalGiven { phase, gate } => self.gate_mut(phase, gate).signalled = true,
            EventKind::CheckPolled { phase, gate, poll } => {
                let state = self.gate_mut(phase, gate);
                state.polls = *poll;
                state.polling = true;
            }
            EventKind::CheckAnswered { phase, gate, ok, status, error } => {
                let state = self.gate_mut(phase, gate);
                state.polling = false;
                state.last_check = Some(CheckAnswer { at, ok: *ok, status: *status, error: error.clone() });
            }
            EventKind::GatePassed { phase, gate, .. } => self.gate_mut(phase, gate).passed_at = Some(at),
            EventKind::DeadlineMissed { phase, gate } => self.gate_mut(phase, gate).deadline_missed = true,
            EventKind::StepSkipped { phase, step, .. } => self.step_mut(phase, step).status = StepStatus::Skipped,
            EventKind::StepStarted { phase, step, attempt, idempotency_key } => {
                let state = self.step_mut(phase, step);
                state.status = StepStatus::Running;
                state.attempt = *attempt;
                state.idempotency_key = Some(idempotency_key.clone());
                state.retry_at = None;
            }
            EventKind::StepDone { phase, step, outputs } => {
                let state = self.step_mut(phase, step);
                state.status = StepStatus::Done;
                state.outputs = outputs.clone();
                state.done_at = Some(at);
                state.done_by = Some(event.actor.clone());
                state.evidence = event.reason.clone();
            }
            EventKind::StepFailed { phase, step, attempt, error, retry_at } => {
                let state = self.step_mut(phase, step);
                state.status = if retry_at.is_some() { StepStatus::Retrying } else { StepStatus::Failed };
                state.attempt = *attempt;
                state.error = Some(error.clone());
                state.retry_at = *retry_at;
            }
            EventKind::ControlRelaxed { control, phase, step, reason, expires_at, approved_by, compensating } => {
                let relaxation = Relaxation {
                    control: control.clone(),
                    phase: phase.clone(),
                    step: step.clone(),
                    reason: reason.clone(),
                    relaxed_at: at,
                    relaxed_by: event.actor.clone(),
                    approved_by: approved_by.clone(),
                    expires_at: *expires_at,
                    compensating: compensating.clone(),
                    overdue: false,
                    reinstated_at: None,
                    reinstated_by: None,
                    strengthened: Vec::new(),
                };
                self.relaxations.insert(control.clone(), relaxation);
            }
            EventKind::RelaxationOverdue { control } => {
                if let Some(relaxation) = self.relaxations.get_mut(control) {
                    relaxation.overdue = true;
                }
            }
            EventKind::ControlReinstated { control, strengthened, .. } => {
                if let Some(relaxation) = self.relaxations.get_mut(control) {
                    relaxation.reinstated_at = Some(at);
                    relaxation.reinstated_by = Some(event.actor.clone());
                    relaxation.strengthened = strengthened.clone();
                }
            }
            // The cadence of regular updates counts from when one was decided, so that a slow
            // channel does not make the next one due twice.
            EventKind::StatusUpdateRequested { audience, .. } => {
                self.last_update.insert(audience.clone(), at);
            }
            EventKind::StatusUpdateSent { audience, .. } => {
                self.update_outcome.insert(audience.clone(), UpdateOutcome { at, error: None });
            }
            EventKind::StatusUpdateFailed { audience, error } => {
                self.update_outcome.insert(audience.clone(), UpdateOutcome { at, error: Some(error.clone()) });
            }
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
            } => {
                let campaign = self.step_mut(phase, step).campaign.get_or_insert_with(Default::default);
                campaign.started_at = Some(at);
                campaign.list = list.clone();
                campaign.list_sha256 = list_sha256.clone();
                (campaign.recipients, campaign.rejected, campaign.duplicates, campaign.suppressed) =
                    (*recipients, *rejected, *duplicates, *suppressed);
                campaign.batches = *batches;
            }
            EventKind::CampaignProgress { phase, step, sent, failed, batches_done, batches } => {
                let campaign = self.step_mut(phase, step).campaign.get_or_insert_with(Default::default);
                (campaign.sent, campaign.failed, campaign.batches_done, campaign.batches) =
                    (*sent, *failed, *batches_done, *batches);
            }
            EventKind::CampaignTestSent { phase, step, test } => {
                let state = self.step_mut(phase, step);
                state.tests += 1;
                state.last_test = Some(TestSend { by: event.actor.clone(), at, test: test.clone() });
            }
            EventKind::CampaignLaunched { phase, step } => {
                self.step_mut(phase, step).launched = Some((event.actor.clone(), at));
            }
            EventKind::CampaignPaused { phase, step } => {
                let campaign = self.step_mut(phase, step).campaign.get_or_insert_with(Default::default);
                campaign.paused = Some(Steered::of(event));
            }
            EventKind::CampaignResumed { phase, step } => {
                let campaign = self.step_mut(phase, step).campaign.get_or_insert_with(Default::default);
                campaign.paused = None;
            }
            EventKind::CampaignCancelled { phase, step } => {
                let campaign = self.step_mut(phase, step).campaign.get_or_insert_with(Default::default);
                campaign.cancelled = Some(Steered::of(event));
            }
            EventKind::CampaignFinished { phase, step, totals, .. } => {
                let campaign = self.step_mut(phase, step).campaign.get_or_insert_with(Default::default);
                (campaign.sent, campaign.failed, campaign.batches_done) = (totals.sent, totals.failed, totals.batches);
                campaign.finished = Some(totals.clone());
            }
            EventKind::StepRetried { phase, step } => {
                let recovery = Self::recovery(RecoveryKind::Retried, event);
                let state = self.step_mut(phase, step);
                // A retried campaign goes on from where it was cancelled or stopped.
                if let Some(campaign) = state.campaign.as_mut() {
                    (campaign.paused, campaign.cancelled, campaign.finished) = (None, None, None);
                }
                // The next attempt is due now; `advance` starts it.
                state.status = StepStatus::Retrying;
                state.retry_at = Some(at);
                state.recovery = Some(recovery);
            }
            EventKind::StepSkippedByHand { phase, step } => {
                let recovery = Self::recovery(RecoveryKind::Skipped, event);
                let state = self.step_mut(phase, step);
                state.status = StepStatus::Skipped;
                state.retry_at = None;
                state.recovery = Some(recovery);
            }
            EventKind::StepOverridden { phase, step, outputs } => {
                let recovery = Self::recovery(RecoveryKind::Overridden, event);
                let state = self.step_mut(phase, step);
                state.status = StepStatus::Done;
                state.retry_at = None;
                state.outputs = outputs.clone();
                state.done_at = Some(at);
                state.done_by = Some(event.actor.clone());
                state.evidence = event.reason.clone();
                state.recovery = Some(recovery);
            }
            EventKind::GateRetried { phase, gate } => {
                let recovery = Self::recovery(RecoveryKind::Retried, event);
                let state = self.gate_mut(phase, gate);
                // The next poll is due now; an answer still on its way is stale.
                (state.polling, state.last_check, state.deadline_from) = (false, None, Some(at));
                state.recovery = Some(recovery);
            }
            EventKind::GateOverridden { phase, gate } => {
                let recovery = Self::recovery(RecoveryKind::Overridden, event);
                let state = self.gate_mut(phase, gate);
                (state.polling, state.passed_at) = (false, Some(at));
                state.recovery = Some(recovery);
            }
            EventKind::PhaseResumed { phase } => {
                let state = self.phase_mut(phase);
                // A phase that failed on an entry gate had not started: it waits for its gates again.
                state.status = if state.started_at.is_some() { PhaseStatus::Running } else { PhaseStatus::Ready };
                state.ended_at = None;
                state.error = None;
            }
            EventKind::NoteAdded => {}
            EventKind::IncidentClosed { abandoned } => {
                self.closed =
                    Some(Closed { at, by: event.actor.clone(), abandoned: *abandoned, reason: event.reason.clone() })
            }
        }
    }
}
