//! The shape of a runbook as written in YAML, before validation.
//!
//! These types only say which keys exist and what type each value has; every rule that relates
//! one part of a runbook to another lives in [`super::validate`], which turns them into the
//! [`super::model`]. The doc comments here become the descriptions in `phasegate schema`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::spanned::{List, Spanned, Table};

mod channels;

pub use channels::*;

/// An incident-response runbook.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Always `phasegate/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: Spanned<String>,
    /// Always `Runbook`.
    pub kind: Spanned<String>,
    /// Unique among runbooks: lowercase letters, digits and `-`.
    pub id: Spanned<String>,
    /// A one-line title, shown on status boards and in reports.
    pub title: Spanned<String>,
    /// The runbook's own version, for example `3` or `2026.11`.
    #[serde(default)]
    pub version: Option<Spanned<String>>,
    /// What the runbook is for and when to use it.
    #[serde(default)]
    pub description: Option<String>,
    /// Values an incident starts with, by name.
    #[serde(default)]
    pub inputs: Table<Input>,
    /// Roles that people hold, by id; approvals and assignments name them.
    #[serde(default)]
    pub roles: Table<Role>,
    /// Security controls this runbook may relax, by id.
    #[serde(default)]
    pub controls: Table<Control>,
    /// Where messages are delivered, by id.
    #[serde(default)]
    pub channels: Table<Channel>,
    /// Who is told what: a template and channels per audience, by id.
    #[serde(default)]
    pub audiences: Table<Audience>,
    /// The phases of the response; `needs` orders them.
    pub phases: Spanned<List<Phase>>,
    /// When status updates go out, and to whom.
    #[serde(default)]
    pub status_updates: List<StatusUpdate>,
    /// How webhooks start incidents, satisfy gates or add evidence.
    #[serde(default)]
    pub triggers: List<Trigger>,
    /// Which roles may close or abandon an incident and recover its failed steps.
    #[serde(default)]
    pub rights: Option<Rights>,
}

/// Who may do what only some people may. A right left out goes to `incident-commander` when the
/// runbook declares that role, and to nobody otherwise.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rights {
    /// Roles that may close an incident once every phase is done or skipped.
    #[serde(default)]
    pub close: Option<Spanned<List<String>>>,
    /// Roles that may close an incident early, as abandoned, with a reason on record.
    #[serde(default)]
    pub abandon: Option<Spanned<List<String>>>,
    /// Roles that may retry, skip or mark done by hand a step that failed for good.
    #[serde(default)]
    pub recover: Option<Spanned<List<String>>>,
    /// Roles that may pause, resume and cancel a campaign, and send its test messages.
    #[serde(default)]
    pub campaign: Option<Spanned<List<String>>>,
}

/// The type of an input's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    String,
    Integer,
    Number,
    Boolean,
}

/// A typed value an incident starts with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(rename = "type")]
    pub kind: Spanned<InputType>,
    #[serde(default)]
    pub description: Option<String>,
    /// Used when the incident does not give the input; an input without a default is required.
    #[serde(default)]
    pub default: Option<Spanned<serde_json::Value>>,
    /// The only values the input may take.
    #[serde(default)]
    pub allowed: Option<List<serde_json::Value>>,
}

/// A role that people hold.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A security control that the runbook may switch off or weaken.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The role that owns the control.
    #[serde(default)]
    pub owner: Option<Spanned<String>>,
    /// The longest a relaxation of this control may last, for example `72h`.
    #[serde(default)]
    pub max_relaxation: Option<Spanned<String>>,
}

/// A string written in the runbook, or the name of a secret that configuration supplies.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(untagged)]
pub enum Text {
    Literal(String),
    Secret {
        /// The secret's name; configuration supplies its value.
        secret: String,
        /// Written before the secret's value, for example `"Bearer "`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl<'de> serde::de::Visitor<'de> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or `{ secret: NAME }`")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text::Literal(text.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Text, E> {
                Ok(Text::Literal(number.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Text, E> {
                Ok(Text::Literal(number.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Text, E> {
                Ok(Text::Literal(number.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Text, E> {
                Ok(Text::Literal(value.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                let mut secret = None;
                let mut prefix = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "secret" => secret = Some(map.next_value::<String>()?),
                        // `Serialize` writes a missing prefix as `null` (effects in the outbox).
                        "prefix" => prefix = map.next_value::<Option<String>>()?,
                        other => return Err(serde::de::Error::unknown_field(other, &["secret", "prefix"])),
                    }
                }
                let secret = secret.ok_or_else(|| serde::de::Error::missing_field("secret"))?;
                Ok(Text::Secret { secret, prefix })
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// An audience: who is told, with which template, through which channels.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    #[serde(default)]
    pub title: Option<String>,
    /// The template's name, without extension: `templates/NAME.md`, `.txt` or `.html`.
    pub template: Spanned<String>,
    pub channels: Spanned<List<String>>,
    /// Roles that may send this audience an update by hand (`phasegate update`). When left out,
    /// anyone configured may, except for the audiences `public` and `customers`, which nobody may
    /// until the runbook names their senders. Updates the runbook sends itself are not affected.
    #[serde(default)]
    pub senders: Option<Spanned<List<String>>>,
}

/// A stage of the response.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Unique among phases: lowercase letters, digits and `-`.
    pub id: Spanned<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Phases that must be done (or skipped) before this one starts.
    #[serde(default)]
    pub needs: List<String>,
    /// A CEL condition; when false, the phase is skipped.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// Gates that must hold before the phase starts.
    #[serde(default)]
    pub entry: List<Gate>,
    /// Gates that must hold before the phase counts as done; all steps done when omitted.
    #[serde(default)]
    pub exit: Option<List<Gate>>,
    #[serde(default)]
    pub steps: List<Step>,
}

/// A condition between phases. Exactly one kind, with an optional id and description.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Names the gate, for `phasegate approve` and for triggers; unique within the phase.
    #[serde(default)]
    pub id: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub approval: Option<Approval>,
    /// A CEL condition over inputs, phases, steps and controls.
    #[serde(default)]
    pub condition: Option<Spanned<String>>,
    #[serde(default)]
    pub check: Option<Check>,
    #[serde(default)]
    pub timer: Option<Timer>,
    /// `all`, or a list of step ids of this phase.
    #[serde(default)]
    pub steps_done: Option<Spanned<StepsDone>>,
    /// Holds once a trigger (or a person with the right role) signals it.
    #[serde(default)]
    pub signal: Option<Signal>,
}

/// Approval by people holding a role.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Approvers must hold one of these roles.
    pub roles: Spanned<List<String>>,
    /// How many distinct people must approve; 1 when omitted.
    #[serde(default)]
    pub count: Option<Spanned<u32>>,
    /// Whoever started the incident or requested the phase cannot approve.
    #[serde(default)]
    pub four_eyes: Option<bool>,
}

/// An HTTP probe polled until its answer is as expected or its deadline passes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub request: Request,
    /// A CEL condition over `response` (status, headers, body).
    pub expect: Spanned<String>,
    /// Time between polls; `30s` when omitted.
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    /// How long to keep polling before the gate fails.
    pub deadline: Spanned<String>,
}

/// An HTTP request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `GET` when omitted.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: Table<Text>,
    /// Sent as JSON.
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
}

/// Not before / not later than a time after the phase became ready (or the incident started).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timer {
    #[serde(default)]
    pub not_before: Option<Spanned<String>>,
    /// A deadline: missing it records `deadline_missed` and escalates.
    #[serde(default)]
    pub not_later_than: Option<Spanned<String>>,
    /// What the durations count from; `ready` when omitted.
    #[serde(default)]
    pub from: Option<Spanned<TimerAnchor>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerAnchor {
    /// When the phase's `needs` were all done.
    Ready,
    /// When the incident started.
    IncidentStarted,
}

/// Which steps a `steps_done` gate waits for.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(untagged)]
pub enum StepsDone {
    /// The word `all`.
    All(String),
    Some(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for StepsDone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<StepsDone, D::Error> {
        struct StepsVisitor;
        impl<'de> serde::de::Visitor<'de> for StepsVisitor {
            type Value = StepsDone;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or a list of step ids")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<StepsDone, E> {
                if text == "all" {
                    Ok(StepsDone::All(text.to_string()))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(text), &self))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StepsDone, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<Spanned<String>>()? {
                    ids.push(id);
                }
                Ok(StepsDone::Some(ids))
            }
        }
        deserializer.deserialize_any(StepsVisitor)
    }
}

/// A gate satisfied from outside: by a trigger's webhook or by `phasegate signal`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// The role allowed to give the signal by hand; without it only triggers can.
    #[serde(default)]
    pub role: Option<Spanned<String>>,
}

/// A unit of work. Exactly one kind, plus the settings every step has.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the phase.
    pub id: Spanned<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// A CEL condition; when false, the step is skipped.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// An optional step does not hold up the phase's default exit gate.
    #[serde(default)]
    pub optional: Option<bool>,
    /// For automated steps: how long one attempt may take.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// For automated steps: how to retry a failed attempt.
    #[serde(default)]
    pub retry: Option<Retry>,
    #[serde(default)]
    pub manual: Option<Manual>,
    #[serde(default)]
    pub http: Option<Http>,
    #[serde(default)]
    pub command: Option<Command>,
    #[serde(default)]
    pub notify: Option<Notify>,
    #[serde(default)]
    pub relax: Option<Relax>,
    #[serde(default)]
    pub reinstate: Option<Reinstate>,
    #[serde(default)]
    pub campaign: Option<Campaign>,
}

/// Retries with exponential backoff and jitter.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: Spanned<u32>,
    /// Wait before the second attempt; doubles each time. `1s` when omitted.
    #[serde(default)]
    pub backoff: Option<Spanned<String>>,
    /// The longest wait between attempts. `5m` when omitted.
    #[serde(default)]
    pub max_backoff: Option<Spanned<String>>,
}

/// Work a person does and records.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manual {
    pub instructions: Spanned<String>,
    /// The role expected to do it (and allowed to mark it done).
    #[serde(default)]
    pub assignee: Option<Spanned<String>>,
    /// What the person must record as evidence.
    #[serde(default)]
    pub evidence: List<String>,
    /// Named values the person records, for later conditions (`steps["phase/step"].outputs.NAME`).
    #[serde(default)]
    pub outputs: List<String>,
}

/// An HTTP call.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// `POST` when omitted.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: Table<Text>,
    /// Sent as JSON.
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    /// A CEL condition over `response` that says the call worked; a 2xx status when omitted.
    #[serde(default)]
    pub expect: Option<Spanned<String>>,
    /// Values captured from `response` by CEL expressions, by name.
    #[serde(default)]
    pub outputs: Table<Spanned<String>>,
}

/// A program run without a shell.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The program and its arguments.
    pub argv: Spanned<List<String>>,
    #[serde(default)]
    pub env: Table<Text>,
}

/// A message rendered for an audience and sent to its channels.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub audience: Spanned<String>,
    /// Instead of the audience's template.
    #[serde(default)]
    pub template: Option<Spanned<String>>,
    /// Instead of the audience's channels.
    #[serde(default)]
    pub channels: Option<List<String>>,
    /// Extra text for the template, as `update.message`.
    #[serde(default)]
    pub message: Option<String>,
}

/// Switch a declared control off or weaken it, until a later phase reinstates it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Relax {
    pub control: Spanned<String>,
    pub reason: Spanned<String>,
    /// After this long the relaxation is overdue and escalates.
    pub expires_in: Spanned<String>,
    /// What reduces the risk while the control is off.
    #[serde(default)]
    pub compensating: List<String>,
}

/// Switch a relaxed control back on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reinstate {
    pub control: Spanned<String>,
    /// How the control comes back stronger than before, if it does.
    #[serde(default)]
    pub strengthened: List<String>,
}

/// A personalised message to each of a list of recipients: batched, rate limited, resumable.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub recipients: Recipients,
    pub template: Spanned<String>,
    pub channel: Spanned<String>,
    /// Recipients per batch; 1000 when omitted.
    #[serde(default)]
    pub batch_size: Option<Spanned<u32>>,
    /// Most messages per second; unlimited when omitted.
    #[serde(default)]
    pub rate_per_second: Option<Spanned<u32>>,
    /// Batches in flight at once, 1 to 64; 4 when omitted.
    #[serde(default)]
    pub concurrency: Option<Spanned<u32>>,
    /// The subject of every message; the step's title when omitted.
    #[serde(default)]
    pub subject: Option<Spanned<String>>,
    /// A personal offer code for each recipient, given to the template as `code`.
    #[serde(default)]
    pub code: Option<Spanned<OfferCode>>,
    /// When true, the step waits, once reached, until a person holding the `campaign` right
    /// launches it (`phasegate campaign launch`), which is refused until a test send of the step
    /// has gone out; false when omitted.
    #[serde(default)]
    pub test_first: Option<Spanned<bool>>,
}

/// Where each recipient's offer code comes from. Exactly one of `secret` and `field`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferCode {
    /// The name of the secret key codes are derived from (HMAC-SHA256 of the campaign and the
    /// recipient's id): the same recipient always gets the same code, and nobody can guess another's.
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
    /// Characters of a derived code, 8 to 16, not counting its check character; 10 when omitted.
    #[serde(default)]
    pub length: Option<Spanned<u32>>,
    /// The recipient list's field that holds each recipient's code (issued elsewhere).
    #[serde(default)]
    pub field: Option<Spanned<String>>,
}

/// Where a campaign's recipients come from.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipients {
    /// A string input naming the recipient list (CSV or JSON Lines).
    pub input: Spanned<String>,
    /// The field that identifies a recipient; nobody gets the message twice per id.
    pub id_field: Spanned<String>,
    /// The field holding the recipient's address for the channel; `email` when omitted.
    #[serde(default)]
    pub address_field: Option<Spanned<String>>,
}

/// Something that happens to an incident and may produce a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    IncidentStarted,
    PhaseStarted,
    PhaseDone,
    PhaseSkipped,
    PhaseFailed,
    GatePassed,
    GateWaiting,
    ApprovalGiven,
    StepDone,
    StepFailed,
    ControlRelaxed,
    ControlReinstated,
    RelaxationOverdue,
    DeadlineMissed,
    NoteAdded,
    IncidentClosed,
}

/// When status updates go out and to which audiences.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    /// Events that produce an update.
    #[serde(default)]
    pub on: List<EventKind>,
    /// Also send one this often while the incident is open, for example `4h`.
    #[serde(default)]
    pub every: Option<Spanned<String>>,
    /// Only for events of these phases.
    #[serde(default)]
    pub phases: Option<List<String>>,
    pub audiences: Spanned<List<String>>,
}

/// The payload format a trigger reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// Any JSON document, as `payload`.
    Json,
    /// Prometheus Alertmanager's webhook (version 4): each alert as `alert`, the group as `payload`.
    Alertmanager,
}

/// What a webhook does. Exactly one of `start`, `satisfy` and `evidence`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub id: Spanned<String>,
    /// The webhook source, as configured for the server.
    pub source: Spanned<String>,
    /// `json` when omitted.
    #[serde(default)]
    pub format: Option<Spanned<PayloadFormat>>,
    /// A CEL condition over the payload; the trigger ignores deliveries for which it is false.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// A CEL expression giving the deduplication key: deliveries with the key of an open
    /// incident attach to it instead of starting another.
    pub key: Spanned<String>,
    #[serde(default)]
    pub start: Option<TriggerStart>,
    /// A signal gate, as `PHASE/GATE`.
    #[serde(default)]
    pub satisfy: Option<Spanned<String>>,
    #[serde(default)]
    pub evidence: Option<TriggerEvidence>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerStart {
    /// Input values, each a CEL expression over the payload.
    #[serde(default)]
    pub inputs: Table<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerEvidence {
    /// A CEL expression giving the text added to the timeline.
    pub note: Spanned<String>,
}
