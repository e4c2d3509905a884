//! Validation of status updates and triggers, and of the signal gates that triggers satisfy.

use super::{ALERT_TRIGGER_VARIABLES, Code, Declared, JSON_TRIGGER_VARIABLES, List, Spanned, Validator, did_you_mean};
use crate::runbook::model::{self, TriggerAction};
use crate::runbook::raw;

impl Validator<'_> {
    pub(super) fn status_update(
        &mut self,
        update: &Spanned<raw::StatusUpdate>,
        declared: &Declared,
    ) -> model::StatusUpdate {
        if update.on.is_empty() && update.every.is_none() {
            self.report(
                Code::MissingKey,
                update.mark,
                "a status update needs `on` (events), `every` (a cadence) or both",
            );
        }
        let every = update.every.as_ref().and_then(|every| self.duration(every, "every"));
        let phase_ids: Vec<&str> = self.names.phases.iter().map(String::as_str).collect::<Vec<_>>();
        let phase_ids: Vec<String> = phase_ids.iter().map(|s| s.to_string()).collect();
        let phase_refs: Vec<&str> = phase_ids.iter().map(String::as_str).collect();
        if let Some(phases) = &update.phases {
            for phase in phases.iter() {
                self.reference(Code::UnknownPhase, phase, "phase", &phase_refs);
            }
        }
        if update.audiences.value.is_empty() {
            self.report(Code::EmptyList, update.audiences.mark, "a status update needs at least one audience");
        }
        for audience in update.audiences.value.iter() {
            self.reference(Code::UnknownAudience, audience, "audience", &declared.audiences);
        }
        model::StatusUpdate {
            on: update.on.iter().map(|kind| kind.value).collect(),
            every,
            phases: update.phases.as_ref().map(|phases| phases.iter().map(|p| p.value.clone()).collect()),
            audiences: update.audiences.value.iter().map(|a| a.value.clone()).collect(),
        }
    }

    pub(super) fn triggers(
        &mut self,
        triggers: &List<raw::Trigger>,
        inputs: &[model::Input],
        phases: &List<raw::Phase>,
    ) -> Vec<model::Trigger> {
        self.unique_ids(triggers.iter().map(|trigger| &trigger.id), "trigger");
        let mut result = Vec::new();
        for trigger in triggers.iter() {
            self.id(&trigger.id, "trigger");
            let format = trigger.format.as_ref().map_or(raw::PayloadFormat::Json, |f| f.value);
            let variables = match format {
                raw::PayloadFormat::Json => JSON_TRIGGER_VARIABLES,
                raw::PayloadFormat::Alertmanager => ALERT_TRIGGER_VARIABLES,
            };
            let when = trigger.when.as_ref().and_then(|when| self.condition(when, variables));
            let key = self.condition(&trigger.key, variables);
            let mut actions = Vec::new();
            if let Some(start) = &trigger.start {
                let names: Vec<&str> = inputs.iter().map(|input| input.name.as_str()).collect();
                let mut mapped = Vec::new();
                for (name, expression) in &start.inputs.0 {
                    self.reference(Code::UnknownInput, name, "input", &names);
                    if let Some(compiled) = self.condition(expression, variables) {
                        mapped.push((name.value.clone(), compiled));
                    }
                }
                for input in inputs.iter().filter(|input| input.default.is_none()) {
                    if start.inputs.get(&input.name).is_none() {
                        self.report(
                            Code::MissingInput,
                            trigger.id.mark,
                            format!(
                                "trigger `{}` starts an incident without required input `{}`",
                                trigger.id.value, input.name
                            ),
                        )
                        .help = Some(format!("map it under `start.inputs`, or give input `{}` a default", input.name));
                    }
                }
                actions.push(TriggerAction::Start { inputs: mapped });
            }
            if let Some(target) = &trigger.satisfy
                && let Some((phase, gate)) = self.signal_gate(target, phases)
            {
                actions.push(TriggerAction::Satisfy { phase, gate });
            }
            if let Some(evidence) = &trigger.evidence
                && let Some(note) = self.condition(&evidence.note, variables)
            {
                actions.push(TriggerAction::Evidence { note });
            }
            let count = [trigger.start.is_some(), trigger.satisfy.is_some(), trigger.evidence.is_some()]
                .iter()
                .filter(|&&k| k)
                .count();
            if count != 1 {
                self.report(
                    Code::ActionCount,
                    trigger.id.mark,
                    format!("trigger `{}` must do exactly one thing, it does {count}", trigger.id.value),
                )
                .help = Some("one of: start, satisfy, evidence".to_string());
                continue;
            }
            if let (Some(key), Some(action)) = (key, actions.pop()) {
                result.push(model::Trigger {
                    id: trigger.id.value.clone(),
                    source: trigger.source.value.clone(),
                    format,
                    when,
                    key,
                    action,
                });
            }
        }
        result
    }

    /// A signal gate must be given by a trigger or by a person: one without a role that no
    /// trigger satisfies can never hold.
    pub(super) fn signals_reachable(&mut self, phases: &List<raw::Phase>, triggers: &[model::Trigger]) {
        for phase in phases.iter() {
            for gate in phase.entry.iter().chain(phase.exit.iter().flatten()) {
                let Some(signal) = &gate.signal else { continue };
                if signal.role.is_some() {
                    continue;
                }
                let satisfied = gate.id.as_ref().is_some_and(|id| {
                    triggers.iter().any(|trigger| {
                        matches!(&trigger.action, TriggerAction::Satisfy { phase: p, gate: g } if *p == phase.id.value && *g == id.value)
                    })
                });
                if !satisfied {
                    let name = gate.id.as_ref().map_or_else(String::new, |id| format!(" `{}`", id.value));
                    self.report(Code::BadGate, gate.mark, format!("signal gate{name} of phase `{}` can never hold: no trigger satisfies it and no role may give it", phase.id.value))
                        .help = Some("give the gate an `id` and a trigger with `satisfy: PHASE/ID`, or a `role` that may give the signal by hand".to_string());
                }
            }
        }
    }

    /// Resolves `PHASE/GATE` to a signal gate.
    fn signal_gate(&mut self, target: &Spanned<String>, phases: &List<raw::Phase>) -> Option<(String, String)> {
        let signal_gates: Vec<String> = phases
            .iter()
            .flat_map(|phase| {
                phase
                    .entry
                    .iter()
                    .chain(phase.exit.iter().flatten())
                    .filter(|gate| gate.signal.is_some())
                    .filter_map(move |gate| gate.id.as_ref().map(|id| format!("{}/{}", phase.id.value, id.value)))
            })
            .collect();
        if signal_gates.contains(&target.value) {
            let (phase, gate) = target.value.split_once('/')?;
            return Some((phase.to_string(), gate.to_string()));
        }
        let known: Vec<&str> = signal_gates.iter().map(String::as_str).collect();
        let help = match did_you_mean(&target.value, known.iter().copied()) {
            Some(meant) => format!("did you mean `{meant}`?"),
            None if known.is_empty() => {
                "declare a gate `{ id: NAME, signal: {} }` in a phase and name it as `PHASE/NAME`".to_string()
            }
            None => format!("signal gates: {}", known.join(", ")),
        };
        self.report(
            Code::UnknownGate,
            target.mark,
            format!("`{}` is not a signal gate (`PHASE/GATE` with an id and `signal:`)", target.value),
        )
        .help = Some(help);
        None
    }
}
