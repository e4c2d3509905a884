//! Validation of gates: one kind each, with settings that can hold.

use std::collections::HashMap;
use std::time::Duration;

use super::{Code, Declared, RESPONSE_VARIABLES, RUNBOOK_VARIABLES, Spanned, Validator, did_you_mean};
use crate::runbook::model::{self, GateKind};
use crate::runbook::raw;

impl Validator<'_> {
    pub(super) fn gate(
        &mut self,
        gate: &Spanned<raw::Gate>,
        phase_id: &str,
        step_ids: &[&str],
        declared: &Declared,
        kinds_seen: &mut HashMap<&'static str, usize>,
    ) -> Option<model::Gate> {
        // Checked first: the gate's other problems end this function early.
        if let Some(id) = &gate.id {
            self.id(id, "gate");
        }
        let mut kinds: Vec<GateKind> = Vec::new();
        if let Some(approval) = &gate.approval {
            if approval.roles.value.is_empty() {
                self.report(
                    Code::ImpossibleApproval,
                    approval.roles.mark,
                    "approval names no role, so nobody can give it",
                );
            }
            let known = approval
                .roles
                .value
                .iter()
                .filter(|role| self.reference(Code::UnknownRole, role, "role", &declared.roles))
                .count();
            if known == 0 && !approval.roles.value.is_empty() {
                self.report(Code::ImpossibleApproval, approval.roles.mark, "no declared role can give this approval");
            }
            let count = approval.count.as_ref().map_or(1, |count| count.value);
            if let (0, Some(spanned)) = (count, &approval.count) {
                self.report(Code::ImpossibleApproval, spanned.mark, "approval `count` is 0; use 1 or more");
            }
            kinds.push(GateKind::Approval {
                roles: approval.roles.value.iter().map(|r| r.value.clone()).collect(),
                count,
                four_eyes: approval.four_eyes.unwrap_or(false),
            });
        }
        if let Some(condition) = &gate.condition
            && let Some(compiled) = self.condition(condition, RUNBOOK_VARIABLES)
        {
            kinds.push(GateKind::Condition(compiled));
        }
        if let Some(check) = &gate.check {
            let request = self.request(
                &check.request.method,
                &check.request.url,
                &check.request.headers,
                &check.request.body,
                "GET",
            );
            let expect = self.condition(&check.expect, RESPONSE_VARIABLES);
            let interval = self.optional_duration(&check.interval, "interval", Duration::from_secs(30));
            let deadline = self.duration(&check.deadline, "deadline");
            if let Some(deadline) = deadline
                && interval > deadline
            {
                self.report(
                    Code::BadGate,
                    check.deadline.mark,
                    "the check's deadline is shorter than its polling interval, so it is polled at most once",
                );
            }
            if let (Some(expect), Some(deadline)) = (expect, deadline) {
                kinds.push(GateKind::Check(model::Check { request, expect, interval, deadline }));
            }
        }
        if let Some(timer) = &gate.timer {
            let not_before = timer.not_before.as_ref().and_then(|d| self.duration(d, "not_before"));
            let not_later_than = timer.not_later_than.as_ref().and_then(|d| self.duration(d, "not_later_than"));
            if timer.not_before.is_none() && timer.not_later_than.is_none() {
                self.report(Code::MissingKey, gate.mark, "a timer needs `not_before`, `not_later_than` or both");
            }
            if let (Some(before), Some(later), Some(mark)) =
                (not_before, not_later_than, timer.not_later_than.as_ref().map(|d| d.mark))
                && later <= before
            {
                self.report(
                    Code::BadGate,
                    mark,
                    "`not_later_than` is not after `not_before`, so the gate can never hold in time",
                );
            }
            kinds.push(GateKind::Timer {
                not_before,
                not_later_than,
                from: timer.from.as_ref().map_or(raw::TimerAnchor::Ready, |f| f.value),
            });
        }
        if let Some(steps) = &gate.steps_done {
            let listed = match &steps.value {
                raw::StepsDone::All(_) => Vec::new(),
                raw::StepsDone::Some(ids) => {
                    if ids.is_empty() {
                        self.report(
                            Code::EmptyList,
                            steps.mark,
                            "`steps_done` lists no steps; write `all` or name some",
                        );
                    }
                    for id in ids {
                        if !step_ids.contains(&id.value.as_str()) {
                            self.report(
                                Code::BadStepReference,
                                id.mark,
                                format!("`steps_done` names `{}`, which is not a step of phase `{phase_id}`", id.value),
                            )
                            .help = Some(match did_you_mean(&id.value, step_ids.iter().copied()) {
                                Some(meant) => format!("did you mean `{meant}`?"),
                                None => format!(
                                    "a `steps_done` gate waits for steps of its own phase: {}",
                                    step_ids.join(", ")
                                ),
                            });
                        }
                    }
                    ids.iter().map(|id| id.value.clone()).collect()
                }
            };
            kinds.push(GateKind::StepsDone { steps: listed });
        }
        if let Some(signal) = &gate.signal {
            if let Some(role) = &signal.role {
                self.reference(Code::UnknownRole, role, "role", &declared.roles);
            }
            kinds.push(GateKind::Signal { role: signal.role.as_ref().map(|r| r.value.clone()) });
        }
        let declared_kinds = [
            gate.approval.is_some(),
            gate.condition.is_some(),
            gate.check.is_some(),
            gate.timer.is_some(),
            gate.steps_done.is_some(),
            gate.signal.is_some(),
        ];
        let count = declared_kinds.iter().filter(|&&k| k).count();
        if count != 1 {
            self.report(
                Code::ActionCount,
                gate.mark,
                format!("a gate must have exactly one kind, this one has {count}"),
            )
            .help = Some("one of: approval, condition, check, timer, steps_done, signal".to_string());
            return None;
        }
        let kind = kinds.pop()?;
        let kind_name = gate_kind_name(&kind);
        let seen = kinds_seen.entry(kind_name).or_insert(0);
        *seen += 1;
        let id = match &gate.id {
            Some(id) => id.value.clone(),
            None if *seen == 1 => kind_name.to_string(),
            None => format!("{kind_name}-{seen}"),
        };
        Some(model::Gate { id, named: gate.id.is_some(), description: gate.description.clone(), kind })
    }
}

fn gate_kind_name(kind: &GateKind) -> &'static str {
    match kind {
        GateKind::Approval { .. } => "approval",
        GateKind::Condition(_) => "condition",
        GateKind::Check(_) => "check",
        GateKind::Timer { .. } => "timer",
        GateKind::StepsDone { .. } => "steps-done",
        GateKind::Signal { .. } => "signal",
    }
}
