//! Rights: the commands only some people may give, and the checks that say who. Closing and
//! abandoning an incident, recovering a step that failed for good (retry, skip, mark done by
//! hand), and sending an audience an update by hand each need a role the runbook names
//! (`rights:` and each audience's `senders`), with the defaults `model::Right` states.

use std::collections::BTreeMap;

use super::blocking;
use super::decide::{CHECK, Error, Work, check_outputs, declared_text, held_roles_text, roles_text, unknown_gate};
use super::event::EventKind;
use super::state::{PhaseStatus, StepStatus};
use crate::runbook::model::{Action, GateKind, Phase, Right, Step};

/// Where a runbook declares a right: `rights.NAME`, or `senders` of an audience.
#[derive(Clone, Copy)]
pub(super) enum Key<'k> {
    Rights(&'k str),
    Senders(&'k str),
}

impl Key<'_> {
    /// The key as a refusal quotes it (inside backticks).
    fn written(self) -> String {
        match self {
            Key::Rights(name) => format!("rights.{name}"),
            Key::Senders(audience) => format!("senders` of audience `{audience}"),
        }
    }
}

impl<'a> Work<'a> {
    /// Checks that the actor holds `right`; `key` is where the runbook declares it, `what` is what
    /// it allows.
    pub(super) fn holds(&self, right: &Right, key: Key<'_>, what: &str) -> Result<(), Error> {
        self.person()?;
        if right.roles.is_empty() {
            let fix = match (key, right.declared) {
                (_, true) => format!("`{}` lists no role; add the roles that may to it", key.written()),
                (Key::Rights(name), false) => format!(
                    "the runbook declares neither `rights.{name}` nor a role `{}`; add `rights: {{ {name}: [ROLE] }}` to it",
                    crate::runbook::model::DEFAULT_RIGHTS_ROLE
                ),
                (Key::Senders(audience), false) => format!(
                    "audience `{audience}` is outside the company and names no `senders`; add `senders: [ROLE]` to it in the runbook"
                ),
            };
            return Err(Error::NobodyMay { what: what.to_string(), fix });
        }
        if self.directory.role_among(&self.actor, &right.roles).is_some() {
            return Ok(());
        }
        Err(Error::MissingRole {
            actor: self.actor.clone(),
            roles: held_roles_text(self.directory, &right.roles),
            what: what.to_string(),
        })
    }

    /// Who may abandon, for refusals that suggest it.
    fn abandon_hint(&self) -> String {
        let right = &self.runbook.rights().abandon;
        if right.roles.is_empty() {
            "finish them (the runbook lets nobody abandon an incident early)".to_string()
        } else {
            format!(
                "finish them, or abandon the incident with `phasegate close {} --abandon --reason TEXT` ({})",
                self.incident.id,
                roles_text(&right.roles)
            )
        }
    }

    /// No incident closes, abandoned or not, while a control is relaxed: names the steps that
    /// reinstate each one.
    fn no_relaxation_open(&self) -> Result<(), Error> {
        let open: Vec<String> = self
            .incident
            .open_relaxations()
            .map(|relaxation| {
                let steps: Vec<String> = self
                    .runbook
                    .phases()
                    .iter()
                    .flat_map(|phase| phase.steps.iter().map(move |step| (phase, step)))
                    .filter(|(_, step)| {
                        matches!(&step.action, Action::Reinstate { control, .. } if control == &relaxation.control)
                    })
                    .map(|(phase, step)| format!("`{}/{}`", phase.id, step.id))
                    .collect();
                if steps.is_empty() {
                    format!("`{}`", relaxation.control)
                } else {
                    format!("`{}` (reinstated by step {})", relaxation.control, steps.join(" or "))
                }
            })
            .collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(Error::RelaxationsOpen(format!("{}; run the phases that reinstate them first", open.join(", "))))
        }
    }

    pub(super) fn close(&mut self, note: &Option<String>) -> Result<(), Error> {
        self.holds(&self.runbook.rights().close, Key::Rights("close"), "closing the incident")?;
        self.no_relaxation_open()?;
        let unfinished = blocking::unfinished(self.runbook, &self.incident);
        if !unfinished.is_empty() {
            return Err(Error::PhasesNotDone { phases: unfinished.join("; "), otherwise: self.abandon_hint() });
        }
        self.emit_because(EventKind::IncidentClosed { abandoned: false }, note.clone());
        Ok(())
    }

    pub(super) fn abandon(&mut self, reason: &str) -> Result<(), Error> {
        self.holds(&self.runbook.rights().abandon, Key::Rights("abandon"), "abandoning the incident")?;
        if reason.trim().is_empty() {
            return Err(Error::Unexplained {
                what: "abandoning the incident".to_string(),
                needs: "a reason",
                flag: "--reason",
            });
        }
        self.no_relaxation_open()?;
        if blocking::unfinished(self.runbook, &self.incident).is_empty() {
            return Err(Error::NothingToAbandon);
        }
        self.emit_because(EventKind::IncidentClosed { abandoned: true }, Some(reason.to_string()));
        Ok(())
    }

    /// A status update sent by hand: only by the audience's `senders`, where it names them.
    pub(super) fn update_by_hand(&mut self, audience: &str) -> Result<(), Error> {
        self.person()?;
        let Some(model) = self.runbook.audience(audience) else {
            let names = self.runbook.audiences().iter().map(|a| a.id.as_str());
            return Err(Error::UnknownAudience {
                audience: audience.to_string(),
                declared: declared_text(audience, names, "audience"),
            });
        };
        if let Some(senders) = &model.senders {
            self.holds(senders, Key::Senders(audience), &format!("sending audience `{audience}` an update by hand"))?;
        }
        self.request_update(audience, "requested", None, None);
        Ok(())
    }

    /// The phase and step of a recovery: the step failed for good or waits for its next attempt,
    /// its phase is failed or still running, and the actor holds the `recover` right.
    fn failed_step(&self, phase_id: &str, step_id: &str, what: &'static str) -> Result<(&'a Phase, &'a Step), Error> {
        self.person()?;
        let runbook: &'a crate::runbook::Runbook = self.runbook;
        let phase = runbook.phase(phase_id).ok_or_else(|| Error::UnknownPhase(phase_id.to_string()))?;
        let step = phase
            .step(step_id)
            .ok_or_else(|| Error::UnknownStep { phase: phase_id.to_string(), step: step_id.to_string() })?;
        let state = self.incident.step(phase_id, step_id);
        // A step waiting for its next attempt is recovered as one that failed for good: a person
        // who knows the outside system is down (or did the work by hand) need not wait out the
        // backoff. The attempt the runtime would start at `retry_at` then finds it settled.
        if !matches!(state.status, StepStatus::Failed | StepStatus::Retrying) {
            let status = state.status.as_str().to_string();
            return Err(Error::NotFailed { phase: phase_id.to_string(), step: step_id.to_string(), status, what });
        }
        let phase_status = self.incident.phase(phase_id).status;
        if !matches!(phase_status, PhaseStatus::Running | PhaseStatus::Failed) {
            return Err(Error::WrongPhaseState {
                phase: phase_id.to_string(),
                status: phase_status.as_str(),
                what: format!("its steps are settled and step `{step_id}` cannot be {what}"),
            });
        }
        self.holds(
            &runbook.rights().recover,
            Key::Rights("recover"),
            &format!("recovering failed step `{phase_id}/{step_id}`"),
        )?;
        Ok((phase, step))
    }

    /// A failed phase with nothing failed left in it runs again.
    fn resume(&mut self, phase: &Phase) {
        if self.incident.phase(&phase.id).status != PhaseStatus::Failed {
            return;
        }
        let failed = phase
            .steps
            .iter()
            .any(|step| !step.optional && self.incident.step(&phase.id, &step.id).status == StepStatus::Failed);
        if !failed {
            self.emit(EventKind::PhaseResumed { phase: phase.id.clone() });
        }
    }

    pub(super) fn retry(&mut self, phase_id: &str, step_id: &str, reason: &Option<String>) -> Result<(), Error> {
        let (phase, _) = self.failed_step(phase_id, step_id, "retried")?;
        let event = EventKind::StepRetried { phase: phase_id.to_string(), step: step_id.to_string() };
        self.emit_because(event, reason.clone());
        self.resume(phase);
        Ok(())
    }

    pub(super) fn skip(&mut self, phase_id: &str, step_id: &str, reason: &str) -> Result<(), Error> {
        let (phase, _) = self.failed_step(phase_id, step_id, "skipped")?;
        if reason.trim().is_empty() {
            return Err(Error::Unexplained {
                what: format!("skipping step `{phase_id}/{step_id}`"),
                needs: "a reason",
                flag: "--reason",
            });
        }
        let event = EventKind::StepSkippedByHand { phase: phase_id.to_string(), step: step_id.to_string() };
        self.emit_because(event, Some(reason.to_string()));
        self.resume(phase);
        Ok(())
    }

    /// `done` on an automated step that failed for good: marked done by hand, with evidence.
    pub(super) fn override_step(
        &mut self,
        phase_id: &str,
        step_id: &str,
        evidence: &Option<String>,
        outputs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), Error> {
        let (phase, step) = self.failed_step(phase_id, step_id, "marked done by hand")?;
        let Some(evidence) = evidence.as_ref().filter(|e| !e.trim().is_empty()) else {
            return Err(Error::Unexplained {
                what: format!("marking failed step `{phase_id}/{step_id}` done by hand"),
                needs: "evidence",
                flag: "--evidence",
            });
        };
        let declared: Vec<String> = match &step.action {
            Action::Http { outputs, .. } => outputs.iter().map(|(name, _)| name.clone()).collect(),
            _ => Vec::new(),
        };
        check_outputs(phase_id, step_id, outputs, &declared)?;
        let event = EventKind::StepOverridden {
            phase: phase_id.to_string(),
            step: step_id.to_string(),
            outputs: outputs.clone(),
        };
        self.emit_because(event, Some(evidence.clone()));
        self.resume(phase);
        Ok(())
    }

    /// The phase of a check gate a person recovers: the gate is a check that has not passed, its
    /// phase checks gates or failed, and the actor holds the `recover` right.
    fn recoverable_gate(&self, phase_id: &str, gate_id: &str, what: &'static str) -> Result<&'a Phase, Error> {
        self.person()?;
        let runbook: &'a crate::runbook::Runbook = self.runbook;
        let phase = runbook.phase(phase_id).ok_or_else(|| Error::UnknownPhase(phase_id.to_string()))?;
        let gate = phase.gates().find(|g| g.id == gate_id).ok_or_else(|| unknown_gate(phase, gate_id, CHECK))?;
        let refuse = |kind: &'static str, why: String| {
            Err(Error::NotCheckGate { phase: phase_id.to_string(), gate: gate_id.to_string(), kind, why })
        };
        let only_checks = format!("only a check gate (which fails past its deadline) is {what}");
        match &gate.kind {
            GateKind::Check(_) => {}
            GateKind::Approval { roles, .. } => {
                return refuse(
                    "an approval",
                    format!(
                        "its approvers ({}) pass it with `phasegate approve`, nobody passes or retries it by hand",
                        roles_text(roles)
                    ),
                );
            }
            GateKind::Signal { .. } => return refuse("a signal", format!("it passes when signalled; {only_checks}")),
            GateKind::Timer { .. } => return refuse("a timer", format!("it cannot fail; {only_checks}")),
            GateKind::Condition(_) => return refuse("a condition", format!("it cannot fail; {only_checks}")),
            GateKind::StepsDone { .. } => {
                return refuse("a steps-done", format!("it passes when its steps finish; {only_checks}"));
            }
        }
        if self.incident.gate(phase_id, gate_id).passed_at.is_some() {
            return Err(Error::AlreadyPassed { phase: phase_id.to_string(), gate: gate_id.to_string() });
        }
        let status = self.incident.phase(phase_id).status;
        if !matches!(status, PhaseStatus::Ready | PhaseStatus::Running | PhaseStatus::Failed) {
            return Err(Error::WrongPhaseState {
                phase: phase_id.to_string(),
                status: status.as_str(),
                what: format!("its gates are not being checked and gate `{gate_id}` cannot be {what}"),
            });
        }
        self.holds(
            &runbook.rights().recover,
            Key::Rights("recover"),
            &format!("recovering check gate `{phase_id}/{gate_id}`"),
        )?;
        Ok(phase)
    }

    /// Probes a check gate again, its deadline counting from now.
    pub(super) fn retry_gate(&mut self, phase_id: &str, gate_id: &str, reason: &Option<String>) -> Result<(), Error> {
        let phase = self.recoverable_gate(phase_id, gate_id, "retried")?;
        let event = EventKind::GateRetried { phase: phase_id.to_string(), gate: gate_id.to_string() };
        self.emit_because(event, reason.clone());
        self.resume(phase);
        Ok(())
    }

    /// Passes a check gate by hand, with evidence: an override.
    pub(super) fn pass_gate(&mut self, phase_id: &str, gate_id: &str, evidence: &str) -> Result<(), Error> {
        let phase = self.recoverable_gate(phase_id, gate_id, "passed by hand")?;
        if evidence.trim().is_empty() {
            return Err(Error::Unexplained {
                what: format!("passing check gate `{phase_id}/{gate_id}` by hand"),
                needs: "evidence",
                flag: "--evidence",
            });
        }
        let event = EventKind::GateOverridden { phase: phase_id.to_string(), gate: gate_id.to_string() };
        self.emit_because(event, Some(evidence.to_string()));
        self.resume(phase);
        Ok(())
    }
}
