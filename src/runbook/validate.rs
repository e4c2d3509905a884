//! Raw runbook to model, collecting every problem with its location.
//!
//! The checks run in the order a reader meets them: header, declarations (inputs, roles,
//! controls, channels, audiences), the phase graph, each phase's gates and steps, the rules that
//! span phases (relaxations reinstated later), status updates and triggers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::diagnostic::{Code, Diagnostic, Mark};
use super::model::{self, Action, GateKind};
use super::raw;
use super::spanned::{List, Spanned, Table};
use super::{CAMPAIGN_CONTEXT, CAMPAIGN_CONTEXT_WITHOUT_CODE, STATUS_CONTEXT, TemplateInfo, Templates};
use crate::expr::{self, Condition, Names};
use crate::spelling::did_you_mean;

mod declarations;
mod gates;
mod graph;
mod requests;
mod steps;
mod triggers;

/// Most phases a runbook may have.
pub const MAX_PHASES: usize = 500;

/// Longest duration a runbook may state anywhere.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Words CEL reserves; they cannot follow a `.` in a condition (nor name an imported input).
pub(crate) const CEL_RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "package",
    "namespace",
    "null",
    "return",
    "true",
    "var",
    "void",
    "while",
];

const RUNBOOK_VARIABLES: &[&str] = &["incident", "inputs", "phases", "steps", "controls"];
const RESPONSE_VARIABLES: &[&str] = &["response", "inputs"];
const JSON_TRIGGER_VARIABLES: &[&str] = &["payload", "headers"];
const ALERT_TRIGGER_VARIABLES: &[&str] = &["payload", "headers", "alert"];

/// Validates a raw runbook into the model, or returns every problem found.
pub(super) fn validate(raw: &raw::Runbook, templates: &dyn Templates) -> Result<model::Runbook, Vec<Diagnostic>> {
    let mut validator = Validator {
        problems: Vec::new(),
        templates,
        names: Names::default(),
        reading: None,
        ancestors: HashMap::new(),
        relaxation_limits: Vec::new(),
    };
    let runbook = validator.runbook(raw);
    if validator.problems.is_empty() { Ok(runbook) } else { Err(validator.problems) }
}

/// A condition of a phase reads only what has surely run when it is evaluated: the phase's
/// ancestors and, once its steps have started (step `when`, exit gates), its own steps.
struct Reading {
    phase: String,
    own_steps: bool,
}

struct Validator<'a> {
    problems: Vec<Diagnostic>,
    templates: &'a dyn Templates,
    /// Everything a runbook condition may name, filled in before conditions are compiled.
    names: Names,
    /// Where the conditions being compiled are evaluated, for checking what they may read.
    reading: Option<Reading>,
    /// Each phase's ancestors: the phases it needs, directly or through others.
    ancestors: HashMap<String, HashSet<String>>,
    /// Each control's longest allowed relaxation, where it states one, and the text written.
    relaxation_limits: Vec<(String, Duration, String)>,
}

/// Which ids a runbook declares, for checking references.
struct Declared<'r> {
    roles: Vec<&'r str>,
    controls: Vec<&'r str>,
    channels: Vec<&'r str>,
    audiences: Vec<&'r str>,
    /// Email channels without fixed recipients: only campaigns, which address each recipient, may use them.
    email_without_to: Vec<&'r str>,
    /// Each channel with exactly one kind, and that kind's key (`email`, `batch`).
    channel_kinds: Vec<(&'r str, &'static str)>,
}

impl<'a> Validator<'a> {
    fn report(&mut self, code: Code, mark: Mark, message: impl Into<String>) -> &mut Diagnostic {
        self.problems.push(Diagnostic::new(code, mark, message));
        self.problems.last_mut().expect("just pushed")
    }

    fn runbook(&mut self, raw: &raw::Runbook) -> model::Runbook {
        if raw.api_version.value != "phasegate/v1" {
            self.report(
                Code::BadApiVersion,
                raw.api_version.mark,
                format!("`apiVersion` is `{}`, this version of phasegate reads `phasegate/v1`", raw.api_version.value),
            );
        }
        if raw.kind.value != "Runbook" {
            self.report(
                Code::BadApiVersion,
                raw.kind.mark,
                format!("`kind` is `{}`, expected `Runbook`", raw.kind.value),
            );
        }
        self.id(&raw.id, "runbook");
        self.not_blank(&raw.title, "title");

        let inputs = self.inputs(&raw.inputs);
        let roles: Vec<model::Role> = raw
            .roles
            .0
            .iter()
            .map(|(id, role)| {
                self.id(id, "role");
                model::Role { id: id.value.clone(), title: role.title.clone(), description: role.description.clone() }
            })
            .collect();
        let declared = Declared {
            roles: raw.roles.keys().collect(),
            controls: raw.controls.keys().collect(),
            channels: raw.channels.keys().collect(),
            audiences: raw.audiences.keys().collect(),
            email_without_to: raw
                .channels
                .0
                .iter()
                .filter(|(_, channel)| channel.email.as_ref().is_some_and(|email| email.to.is_empty()))
                .map(|(id, _)| id.value.as_str())
                .collect(),
            channel_kinds: raw
                .channels
                .0
                .iter()
                .filter_map(|(id, channel)| match channel.kinds().as_slice() {
                    [kind] => Some((id.value.as_str(), *kind)),
                    _ => None,
                })
                .collect(),
        };
        let controls = self.controls(&raw.controls, &declared);
        // `controls` is built from `raw.controls` in order, so the two zip.
        self.relaxation_limits = controls
            .iter()
            .zip(&raw.controls.0)
            .filter_map(|(control, (_, written))| {
                Some((control.id.clone(), control.max_relaxation?, written.max_relaxation.as_ref()?.value.clone()))
            })
            .collect();
        let channels = self.channels(&raw.channels);
        let audiences = self.audiences(&raw.audiences, &declared);
        let rights = self.rights(raw.rights.as_ref(), &roles, &declared);

        if raw.phases.value.len() > MAX_PHASES {
            // The phase graph's checks grow faster than the number of phases; refuse early
            // rather than let a hostile runbook keep validation busy.
            self.report(
                Code::YamlTooComplex,
                raw.phases.mark,
                format!("the runbook has {} phases; at most {MAX_PHASES} are allowed", raw.phases.value.len()),
            )
            .help = Some("split the response into several runbooks".to_string());
            return model::Runbook {
                id: raw.id.value.clone(),
                title: raw.title.value.clone(),
                version: None,
                description: None,
                inputs,
                roles,
                controls,
                channels,
                audiences,
                phases: Vec::new(),
                status_updates: Vec::new(),
                triggers: Vec::new(),
                rights,
            };
        }
        let order = self.phase_order(&raw.phases);
        self.ancestors = graph::ancestors(&raw.phases.value, &order);
        self.names = Names {
            variables: RUNBOOK_VARIABLES.to_vec(),
            inputs: inputs.iter().map(|input| input.name.clone()).collect(),
            phases: raw.phases.value.iter().map(|phase| phase.id.value.clone()).collect(),
            steps: raw
                .phases
                .value
                .iter()
                .flat_map(|phase| {
                    phase.steps.iter().map(move |step| {
                        (format!("{}/{}", phase.id.value, step.id.value), steps::declared_outputs(step))
                    })
                })
                .collect(),
            controls: declared.controls.iter().map(|c| c.to_string()).collect(),
        };
        let phases: Vec<model::Phase> =
            order.iter().map(|&index| self.phase(&raw.phases.value[index], &declared, &inputs)).collect();
        self.relaxations_reinstated(&raw.phases.value, &phases);

        let status_updates = raw.status_updates.iter().map(|update| self.status_update(update, &declared)).collect();
        let triggers = self.triggers(&raw.triggers, &inputs, &raw.phases.value);
        self.signals_reachable(&raw.phases.value, &triggers);

        model::Runbook {
            id: raw.id.value.clone(),
            title: raw.title.value.clone(),
            version: raw.version.as_ref().map(|v| v.value.clone()),
            description: raw.description.clone(),
            inputs,
            roles,
            controls,
            channels,
            audiences,
            phases,
            status_updates,
            triggers,
            rights,
        }
    }

    // ----- small checks used everywhere

    /// Ids: a lowercase letter, then lowercase letters, digits and single `-` between them.
    fn id(&mut self, id: &Spanned<String>, what: &str) {
        let text = id.value.as_str();
        let valid = text.len() <= 64
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && !text.ends_with('-')
            && !text.contains("--")
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            self.report(Code::BadId, id.mark, format!("`{text}` is not a valid {what} id"))
                .help = Some("ids are lowercase letters, digits and `-`, start with a letter and are at most 64 characters, for example `relax-controls`".to_string());
        }
    }

    /// A control's longest allowed relaxation, and how the runbook writes it.
    fn max_relaxation(&self, control: &str) -> Option<(Duration, String)> {
        self.relaxation_limits
            .iter()
            .find(|(id, _, _)| id == control)
            .map(|(_, limit, written)| (*limit, written.clone()))
    }

    fn not_blank(&mut self, text: &Spanned<String>, key: &str) {
        if text.value.trim().is_empty() {
            self.report(Code::InvalidValue, text.mark, format!("`{key}` is empty"));
        }
    }

    fn duration(&mut self, text: &Spanned<String>, key: &str) -> Option<Duration> {
        let problem = match humantime::parse_duration(text.value.trim()) {
            Ok(duration) if duration < Duration::from_secs(1) => {
                format!("`{key}` is `{}`, shorter than a second", text.value)
            }
            Ok(duration) if duration > MAX_DURATION => format!("`{key}` is `{}`, longer than a year", text.value),
            Ok(duration) => return Some(duration),
            Err(_) => format!("`{key}` is `{}`, which is not a duration", text.value),
        };
        self.report(Code::BadDuration, text.mark, problem).help =
            Some("write durations from a second to a year, like `30s`, `15m`, `72h`, `2d` or `1h 30m`".to_string());
        None
    }

    /// Names that conditions read as `inputs.NAME` or `outputs.NAME`: lowercase letters, digits
    /// and `_`, and not a word CEL reserves.
    fn field_name(&mut self, name: &Spanned<String>, what: &str) {
        let shaped = name.value.starts_with(|c: char| c.is_ascii_lowercase())
            && name.value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !shaped {
            self.report(Code::BadId, name.mark, format!("`{}` is not a valid {what} name", name.value)).help = Some(
                format!(
                    "{what} names are lowercase letters, digits and `_`, starting with a letter, so that conditions can say `{what}s.NAME`"
                ),
            );
        } else if CEL_RESERVED.contains(&name.value.as_str()) {
            self.report(
                Code::BadId,
                name.mark,
                format!("`{}` is a word CEL reserves, so it cannot be an {what} name", name.value),
            )
            .help = Some(format!("choose another name; conditions could not say `{what}s.{}`", name.value));
        }
    }

    fn optional_duration(&mut self, text: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        text.as_ref().and_then(|text| self.duration(text, key)).unwrap_or(default)
    }

    /// Reports `name` unless it is among `known`, suggesting the closest one.
    fn reference(&mut self, code: Code, name: &Spanned<String>, what: &str, known: &[&str]) -> bool {
        if known.contains(&name.value.as_str()) {
            return true;
        }
        let help = match did_you_mean(&name.value, known.iter().copied()) {
            Some(meant) => format!("did you mean `{meant}`?"),
            None if known.is_empty() => format!("the runbook declares no {what}s"),
            None if known.len() > 12 => format!("declared {what}s include: {}, ...", known[..12].join(", ")),
            None => format!("declared {what}s: {}", known.join(", ")),
        };
        self.report(code, name.mark, format!("unknown {what} `{}`", name.value)).help = Some(help);
        false
    }

    fn condition(&mut self, source: &Spanned<String>, variables: &[&'static str]) -> Option<Condition> {
        let names = Names { variables: variables.to_vec(), ..std::mem::take(&mut self.names) };
        let result = expr::compile(&source.value, &names);
        self.names = Names { variables: RUNBOOK_VARIABLES.to_vec(), ..names };
        match result {
            Ok(condition) => {
                self.check_order(&condition, source.mark);
                Some(condition)
            }
            Err(errors) => {
                self.report_condition_errors(errors, source.mark);
                None
            }
        }
    }

    fn report_condition_errors(&mut self, errors: Vec<expr::Error>, mark: Mark) {
        for error in errors {
            let (code, help) = match &error {
                expr::Error::Syntax { .. } => (Code::ConditionSyntax, None),
                expr::Error::TooComplex { .. } => (
                    Code::ConditionTooComplex,
                    Some("split the condition, or move the logic into a step output".to_string()),
                ),
                expr::Error::Reference { help, .. } => (Code::ConditionReference, help.clone()),
            };
            self.report(code, mark, error.to_string()).help = help;
        }
    }

    fn check_order(&mut self, condition: &Condition, mark: Mark) {
        let Some(reading) = &self.reading else { return };
        let ancestors = self.ancestors.get(&reading.phase).cloned().unwrap_or_default();
        let mut early: Vec<String> = Vec::new();
        for phase in &condition.references().phases {
            if !ancestors.contains(phase) {
                early.push(format!("phase `{phase}`"));
            }
        }
        for step in &condition.references().steps {
            let phase = step.split('/').next().unwrap_or_default();
            let own = reading.own_steps && phase == reading.phase;
            if !ancestors.contains(phase) && !own {
                early.push(format!("step `{step}`"));
            }
        }
        if !early.is_empty() {
            let where_ = if reading.own_steps { "its steps run" } else { "it starts" };
            let own_phase =
                condition.references().steps.iter().any(|step| step.split('/').next() == Some(reading.phase.as_str()))
                    || condition.references().phases.contains(&reading.phase);
            self.report(
                Code::ConditionOrder,
                mark,
                format!(
                    "condition of phase `{}` reads {}, which may not have run when {where_}",
                    reading.phase,
                    early.join(" and ")
                ),
            )
            .help = Some(if own_phase && !reading.own_steps {
                "a phase's `when` and entry gates are decided before its steps start; read the phase's own steps in an exit gate or a step's `when`".to_string()
            } else {
                format!(
                    "add the phase to `needs` of `{}` so that it is done first, or read something that is",
                    reading.phase
                )
            });
        }
    }

    fn template(&mut self, name: &Spanned<String>, context: &[&str]) {
        match self.templates.lookup(&name.value) {
            TemplateInfo::Missing => {
                self.report(Code::MissingTemplate, name.mark, format!("template `{}` does not exist", name.value))
                    .help =
                    Some(format!("create `templates/{0}.md`, `templates/{0}.txt` or `templates/{0}.html`", name.value));
            }
            TemplateInfo::Broken { file, message } => {
                self.report(Code::TemplateSyntax, name.mark, format!("template `{file}` does not parse: {message}"));
            }
            TemplateInfo::Found { variables } => {
                // The same template may be fine for an audience and wrong for a campaign: say which.
                let campaign = context == CAMPAIGN_CONTEXT || context == CAMPAIGN_CONTEXT_WITHOUT_CODE;
                let user = if campaign { "campaign" } else { "status-update and notify" };
                for (variable, file) in variables {
                    if !context.contains(&variable.as_str()) {
                        if variable == "code" && context == CAMPAIGN_CONTEXT_WITHOUT_CODE {
                            self.report(
                                Code::TemplateVariable,
                                name.mark,
                                format!("template `{file}` uses `code`, but this campaign gives no offer codes"),
                            )
                            .help = Some(
                                "add `code: { secret: SECRET_NAME }` (codes derived per recipient) or `code: { field: \
                                 FIELD }` (codes from the recipient list) to the campaign, or use another template"
                                    .to_string(),
                            );
                            continue;
                        }
                        let help = match did_you_mean(&variable, context.iter().copied()) {
                            Some(meant) => {
                                format!("did you mean `{meant}`? {user} templates get: {}", context.join(", "))
                            }
                            None => format!("{user} templates get: {}", context.join(", ")),
                        };
                        self.report(
                            Code::TemplateVariable,
                            name.mark,
                            format!(
                                "template `{file}` uses `{variable}`, which the engine does not give {user} templates"
                            ),
                        )
                        .help = Some(help);
                    }
                }
            }
        }
    }

    fn unique_ids<'r>(&mut self, ids: impl IntoIterator<Item = &'r Spanned<String>>, what: &str) {
        let mut seen: HashMap<&str, Mark> = HashMap::new();
        for id in ids {
            if let Some(first) = seen.get(id.value.as_str()) {
                self.report(Code::DuplicateId, id.mark, format!("{what} id `{}` is used twice", id.value)).help =
                    Some(format!("the first is at line {}, column {}", first.line, first.column));
            } else {
                seen.insert(&id.value, id.mark);
            }
        }
    }

    fn phase(&mut self, phase: &raw::Phase, declared: &Declared, inputs: &[model::Input]) -> model::Phase {
        self.reading = Some(Reading { phase: phase.id.value.clone(), own_steps: false });
        let when = phase.when.as_ref().and_then(|when| self.condition(when, RUNBOOK_VARIABLES));
        self.unique_ids(phase.steps.iter().map(|step| &step.id), "step");
        self.reading = Some(Reading { phase: phase.id.value.clone(), own_steps: true });
        let steps: Vec<model::Step> =
            phase.steps.iter().filter_map(|step| self.step(step, phase, declared, inputs)).collect();

        let step_ids: Vec<&str> = phase.steps.iter().map(|step| step.id.value.as_str()).collect();
        let gate_ids: Vec<&Spanned<String>> = phase
            .entry
            .iter()
            .chain(phase.exit.iter().flat_map(|exit| exit.iter()))
            .filter_map(|gate| gate.id.as_ref())
            .collect();
        self.unique_ids(gate_ids.iter().copied(), "gate");
        for steps in phase.entry.iter().filter_map(|gate| gate.steps_done.as_ref()) {
            self.report(Code::BadGate, steps.mark, format!("a `steps_done` entry gate can never hold: the steps of phase `{}` start only after its entry gates pass", phase.id.value)).help =
                Some("move the gate to `exit`".to_string());
        }
        let mut kinds_seen: HashMap<&'static str, usize> = HashMap::new();
        self.reading = Some(Reading { phase: phase.id.value.clone(), own_steps: false });
        let entry: Vec<model::Gate> = phase
            .entry
            .iter()
            .filter_map(|gate| self.gate(gate, &phase.id.value, &step_ids, declared, &mut kinds_seen))
            .collect();
        self.reading = Some(Reading { phase: phase.id.value.clone(), own_steps: true });
        let mut exit: Vec<model::Gate> = match &phase.exit {
            Some(gates) => gates
                .iter()
                .filter_map(|gate| self.gate(gate, &phase.id.value, &step_ids, declared, &mut kinds_seen))
                .collect(),
            None => Vec::new(),
        };
        self.reading = None;
        if !exit.iter().any(|gate| matches!(gate.kind, GateKind::StepsDone { .. })) {
            exit.push(model::Gate {
                id: "steps-done".to_string(),
                named: false,
                description: Some("every step that is not optional is done".to_string()),
                kind: GateKind::StepsDone { steps: Vec::new() },
            });
        }
        // An unnamed gate takes its kind as its id (`approval`, `approval-2`, `steps-done`), which
        // must not be an id another gate of the phase is given, or approvals could not tell them apart.
        for derived in entry.iter().chain(&exit).filter(|gate| !gate.named) {
            if let Some(given) = gate_ids.iter().find(|id| id.value == derived.id) {
                self.report(
                    Code::DuplicateId,
                    given.mark,
                    format!(
                        "gate id `{}` is also the id phasegate gives an unnamed gate of phase `{}`",
                        given.value, phase.id.value
                    ),
                )
                .help = Some("give the unnamed gate an id, or give this gate another id".to_string());
            }
        }
        model::Phase {
            id: phase.id.value.clone(),
            title: phase.title.clone(),
            description: phase.description.clone(),
            needs: phase.needs.iter().map(|need| need.value.clone()).collect(),
            when,
            entry,
            exit,
            steps,
        }
    }

    // ----- rules across phases

    /// Every relaxed control is reinstated in a phase that comes after the relaxing one: a phase
    /// that needs it, directly or through others.
    fn relaxations_reinstated(&mut self, raw_phases: &List<raw::Phase>, phases: &[model::Phase]) {
        let mut later: HashMap<&str, HashSet<&str>> = HashMap::new();
        // Phases are in dependency order, so walking backwards sees every dependant first.
        for phase in phases.iter().rev() {
            let mut after: HashSet<&str> = HashSet::new();
            for other in phases {
                if other.needs.iter().any(|need| need == &phase.id) {
                    after.insert(&other.id);
                    after.extend(later.get(other.id.as_str()).into_iter().flatten().copied());
                }
            }
            later.insert(&phase.id, after);
        }
        let reinstated_in = |control: &str| -> Vec<&str> {
            phases
                .iter()
                .filter(|phase| {
                    phase
                        .steps
                        .iter()
                        .any(|step| matches!(&step.action, Action::Reinstate { control: c, .. } if c == control))
                })
                .map(|phase| phase.id.as_str())
                .collect()
        };
        for phase in raw_phases.iter() {
            for step in phase.steps.iter() {
                let Some(relax) = &step.relax else { continue };
                // An undeclared control is reported as such; nothing could reinstate it.
                if !self.names.controls.contains(&relax.control.value) {
                    continue;
                }
                let Some(after) = later.get(phase.id.value.as_str()) else { continue };
                if !reinstated_in(&relax.control.value).iter().any(|p| after.contains(p)) {
                    self.report(
                        Code::NeverReinstated,
                        relax.control.mark,
                        format!(
                            "control `{}` is relaxed in phase `{}` but no later phase reinstates it",
                            relax.control.value, phase.id.value
                        ),
                    )
                    .help = Some(format!(
                        "add a step `reinstate: {{ control: {} }}` to a phase that needs `{}`",
                        relax.control.value, phase.id.value
                    ));
                }
            }
        }
    }
}

fn texts(table: &Table<raw::Text>) -> Vec<(String, raw::Text)> {
    table.0.iter().map(|(name, text)| (name.value.clone(), text.clone())).collect()
}
