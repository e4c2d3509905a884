//! The validated runbook: the only form the engine accepts.
//!
//! A [`Runbook`] can only be built by [`super::validate`] (its fields are private to
//! `src/runbook/`), so in the one the engine gets every reference resolves, every duration is
//! parsed, every condition compiles and the phases form a DAG, listed in an order where each
//! phase comes after the phases it needs.

use std::time::Duration;

use serde::Serialize;

pub use super::raw::{EventKind, InputType, PayloadFormat, SpoolFormat, Text, TimerAnchor};
use crate::expr::Condition;

/// A validated runbook. Its fields are private to `src/runbook/`, where only validation builds
/// one, so that an invalid runbook cannot reach the engine; everyone else reads it through the
/// accessors below.
#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) version: Option<String>,
    pub(super) description: Option<String>,
    pub(super) inputs: Vec<Input>,
    pub(super) roles: Vec<Role>,
    pub(super) controls: Vec<Control>,
    pub(super) channels: Vec<Channel>,
    pub(super) audiences: Vec<Audience>,
    pub(super) phases: Vec<Phase>,
    pub(super) status_updates: Vec<StatusUpdate>,
    pub(super) triggers: Vec<Trigger>,
    pub(super) rights: Rights,
}

impl Runbook {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn controls(&self) -> &[Control] {
        &self.controls
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    pub fn audiences(&self) -> &[Audience] {
        &self.audiences
    }

    /// In dependency order: every phase comes after all the phases it needs.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    pub fn status_updates(&self) -> &[StatusUpdate] {
        &self.status_updates
    }

    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    pub fn rights(&self) -> &Rights {
        &self.rights
    }

    pub fn phase(&self, id: &str) -> Option<&Phase> {
        self.phases.iter().find(|phase| phase.id == id)
    }

    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|control| control.id == id)
    }

    pub fn input(&self, name: &str) -> Option<&Input> {
        self.inputs.iter().find(|input| input.name == name)
    }

    pub fn audience(&self, id: &str) -> Option<&Audience> {
        self.audiences.iter().find(|audience| audience.id == id)
    }
}

/// The role a right goes to when the runbook does not say who holds it.
pub const DEFAULT_RIGHTS_ROLE: &str = "incident-commander";

/// Audiences outside the company: nobody sends them an update by hand unless the runbook names
/// their `senders`.
pub const OUTSIDE_AUDIENCES: &[&str] = &["public", "customers"];

/// Who may close or abandon an incident and recover its failed steps.
#[derive(Debug, Clone, Serialize)]
pub struct Rights {
    pub close: Right,
    pub abandon: Right,
    pub recover: Right,
    pub campaign: Right,
}

/// The roles that hold a right. Empty means nobody holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Right {
    pub roles: Vec<String>,
    /// Whether the runbook says so, or it is the default.
    pub declared: bool,
}

impl Right {
    /// What the runbook declares, or the default: `incident-commander` if it declares that role,
    /// nobody otherwise.
    pub fn or_default(declared: Option<Vec<String>>, roles: &[Role]) -> Right {
        match declared {
            Some(roles) => Right { roles, declared: true },
            None => {
                let default = roles.iter().any(|role| role.id == DEFAULT_RIGHTS_ROLE);
                Right {
                    roles: if default { vec![DEFAULT_RIGHTS_ROLE.to_string()] } else { Vec::new() },
                    declared: false,
                }
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Input {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: InputType,
    pub description: Option<String>,
    pub default: Option<serde_json::Value>,
    pub allowed: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Role {
    pub id: String,
    pub title: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    #[serde(with = "humantime_serde_option")]
    pub max_relaxation: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub id: String,
    pub kind: ChannelKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Stdout,
    File {
        path: String,
    },
    Webhook {
        url: Text,
        headers: Vec<(String, Text)>,
    },
    Slack {
        url_secret: String,
    },
    /// `connections`: the SMTP connections a campaign keeps open (audiences use one per update).
    Email {
        to: Vec<String>,
        from: Option<String>,
        relay_secret: String,
        connections: u32,
    },
    /// Campaigns only: each batch POSTed as one JSON document.
    Batch {
        url: Text,
        headers: Vec<(String, Text)>,
    },
    /// Campaigns only: a JSON Lines file, or a directory of `.eml` files sent `from`.
    Spool {
        path: String,
        format: SpoolFormat,
        from: Option<String>,
    },
}

impl ChannelKind {
    /// The kind's key in a runbook (`email`, `batch`).
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Stdout => "stdout",
            ChannelKind::File { .. } => "file",
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Email { .. } => "email",
            ChannelKind::Batch { .. } => "batch",
            ChannelKind::Spool { .. } => "spool",
        }
    }

    /// Whether a campaign may send through it: email, batch and spool.
    pub fn carries_campaigns(&self) -> bool {
        matches!(self, ChannelKind::Email { .. } | ChannelKind::Batch { .. } | ChannelKind::Spool { .. })
    }

    /// Whether it carries campaign messages only (batch, spool), never an audience's updates.
    pub fn campaigns_only(&self) -> bool {
        matches!(self, ChannelKind::Batch { .. } | ChannelKind::Spool { .. })
    }
}

/// SMTP connections a campaign keeps open through an email channel that names none.
pub const DEFAULT_CONNECTIONS: u32 = 8;

/// The most SMTP connections an email channel may ask for.
pub const MAX_CONNECTIONS: u32 = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Audience {
    pub id: String,
    pub title: Option<String>,
    pub template: String,
    pub channels: Vec<String>,
    /// Who may send it an update by hand; `None` is anyone configured.
    pub senders: Option<Right>,
}

impl Audience {
    /// The roles that may send this audience an update by hand: those the runbook names, else
    /// nobody for an audience outside the company, else anyone configured (`None`).
    pub fn senders(id: &str, declared: Option<Vec<String>>) -> Option<Right> {
        match declared {
            Some(roles) => Some(Right { roles, declared: true }),
            None if OUTSIDE_AUDIENCES.contains(&id) => Some(Right { roles: Vec::new(), declared: false }),
            None => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub needs: Vec<String>,
    pub when: Option<Condition>,
    pub entry: Vec<Gate>,
    /// Never empty: a phase without `exit` waits for all its steps.
    pub exit: Vec<Gate>,
    pub steps: Vec<Step>,
}

impl Phase {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }

    pub fn gates(&self) -> impl Iterator<Item = &Gate> {
        self.entry.iter().chain(self.exit.iter())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    /// Given in the runbook, or derived from the gate's kind: `approval`, `approval-2`.
    pub id: String,
    /// Whether the runbook gave the id (rather than it being derived).
    pub named: bool,
    pub description: Option<String>,
    pub kind: GateKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    Approval {
        roles: Vec<String>,
        count: u32,
        four_eyes: bool,
    },
    Condition(Condition),
    Check(Check),
    Timer {
        #[serde(with = "humantime_serde_option")]
        not_before: Option<Duration>,
        #[serde(with = "humantime_serde_option")]
        not_later_than: Option<Duration>,
        from: TimerAnchor,
    },
    /// Empty means every step that is not optional.
    StepsDone {
        steps: Vec<String>,
    },
    Signal {
        role: Option<String>,
    },
}

impl GateKind {
    /// The key that names the kind in YAML: `approval`, `signal`, `check` ...
    pub fn name(&self) -> &'static str {
        match self {
            GateKind::Approval { .. } => "approval",
            GateKind::Condition(_) => "condition",
            GateKind::Check(_) => "check",
            GateKind::Timer { .. } => "timer",
            GateKind::StepsDone { .. } => "steps_done",
            GateKind::Signal { .. } => "signal",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub request: Request,
    pub expect: Condition,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Text)>,
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: String,
    pub title: Option<String>,
    pub when: Option<Condition>,
    pub optional: bool,
    #[serde(with = "humantime_serde_option")]
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    pub action: Action,
}

#[derive(Debug, Clone, Serialize)]
pub struct Retry {
    pub attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Manual {
        instructions: String,
        assignee: Option<String>,
        evidence: Vec<String>,
        outputs: Vec<String>,
    },
    Http {
        request: Request,
        expect: Option<Condition>,
        outputs: Vec<(String, Condition)>,
    },
    Command {
        argv: Vec<String>,
        env: Vec<(String, Text)>,
    },
    Notify {
        audience: String,
        template: Option<String>,
        channels: Option<Vec<String>>,
        message: Option<String>,
    },
    Relax {
        control: String,
        reason: String,
        #[serde(with = "humantime_serde")]
        expires_in: Duration,
        compensating: Vec<String>,
    },
    Reinstate {
        control: String,
        strengthened: Vec<String>,
    },
    Campaign {
        recipients_input: String,
        id_field: String,
        address_field: String,
        template: String,
        channel: String,
        batch_size: u32,
        rate_per_second: Option<u32>,
        concurrency: u32,
        /// Empty when neither the campaign nor its step says: the runbook's title then.
        subject: String,
        code: Option<OfferCode>,
        /// Waits for a launch, allowed only after a test send that went out.
        test_first: bool,
    },
}

/// Where a campaign's offer codes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferCode {
    /// Derived from the secret named `secret` and the recipient: `length` characters and a check.
    Derived { secret: String, length: u32 },
    /// Given by this field of the recipient list.
    Field(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_written() {
        let table = [(72 * 3600, "3d"), (5400, "1h 30m"), (45, "45s"), (90_061, "1d 1h 1m 1s")];
        for (seconds, expected) in table {
            assert_eq!(format_duration(Duration::from_secs(seconds)), expected);
        }
    }
}

impl Action {
    /// The key that names this kind of step in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Manual { .. } => "manual",
            Action::Http { .. } => "http",
            Action::Command { .. } => "command",
            Action::Notify { .. } => "notify",
            Action::Relax { .. } => "relax",
            Action::Reinstate { .. } => "reinstate",
            Action::Campaign { .. } => "campaign",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusUpdate {
    pub on: Vec<EventKind>,
    #[serde(with = "humantime_serde_option")]
    pub every: Option<Duration>,
    pub phases: Option<Vec<String>>,
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub id: String,
    pub source: String,
    pub format: PayloadFormat,
    pub when: Option<Condition>,
    pub key: Condition,
    pub action: TriggerAction,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerAction {
    Start { inputs: Vec<(String, Condition)> },
    Satisfy { phase: String, gate: String },
    Evidence { note: Condition },
}

/// A duration as a runbook author writes it: `3d`, `1h 30m`, `45s`.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            parts.push(format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    parts.join(" ")
}

/// Durations appear in JSON output as they are written in runbooks.
mod humantime_serde {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*duration))
    }
}

mod humantime_serde_option {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::humantime_serde::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }
}
