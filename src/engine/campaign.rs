//! Campaign steps: what people may do to a running campaign (pause, resume, cancel: the
//! runbook's `campaign` right), the milestones the runtime's sender reports, and the campaign's
//! end. The sending itself is the runtime's; the engine records where it stands.

use super::command::{CampaignAction, CampaignReport, CampaignTest};
use super::decide::{Error, Work};
use super::effect::Outcome;
use super::event::EventKind;
use super::rights::Key;
use super::state::{CampaignState, StepStatus};
use crate::runbook::model::Action;

impl Work<'_> {
    /// The campaign step `phase/step`, which must be sending (its attempt running).
    fn sending_campaign(&self, phase: &str, step: &str) -> Result<Option<CampaignState>, Error> {
        self.campaign_step(phase, step)?;
        let state = self.incident.step(phase, step);
        if state.status != StepStatus::Running {
            return Err(Error::Campaign {
                phase: phase.to_string(),
                step: step.to_string(),
                problem: format!("is not sending: the step is {}", state.status.as_str()),
            });
        }
        Ok(state.campaign)
    }

    /// Checks that `phase/step` is a step of the runbook and a campaign.
    fn campaign_step(&self, phase: &str, step: &str) -> Result<(), Error> {
        let phase_model = self.phase_model(phase)?;
        let step_model = phase_model
            .step(step)
            .ok_or_else(|| Error::UnknownStep { phase: phase.to_string(), step: step.to_string() })?;
        if !matches!(step_model.action, Action::Campaign { .. }) {
            return Err(Error::Campaign {
                phase: phase.to_string(),
                step: step.to_string(),
                problem: format!("is not a campaign: the step is {}", step_model.action.kind()),
            });
        }
        Ok(())
    }

    pub(super) fn campaign_action(
        &mut self,
        phase: &str,
        step: &str,
        action: CampaignAction,
        reason: &Option<String>,
    ) -> Result<(), Error> {
        let doing = match action {
            CampaignAction::Launch => "launching",
            CampaignAction::Pause => "pausing",
            CampaignAction::Resume => "resuming",
            CampaignAction::Cancel => "cancelling",
        };
        let what = format!("{doing} campaign `{phase}/{step}`");
        self.holds(&self.runbook.rights().campaign, Key::Rights("campaign"), &what)?;
        if action == CampaignAction::Launch {
            return self.launch(phase, step, reason);
        }
        let campaign = self.sending_campaign(phase, step)?.unwrap_or_default();
        let refuse = |problem: &str| {
            Err(Error::Campaign { phase: phase.to_string(), step: step.to_string(), problem: problem.to_string() })
        };
        let (phase, step) = (phase.to_string(), step.to_string());
        let event = match action {
            _ if campaign.cancelled.is_some() => {
                return refuse("is cancelled; it ends once its batches in flight are answered");
            }
            CampaignAction::Pause if campaign.paused.is_some() => return refuse("is already paused"),
            CampaignAction::Resume if campaign.paused.is_none() => return refuse("is not paused"),
            CampaignAction::Launch => unreachable!("launched above"),
            CampaignAction::Pause => EventKind::CampaignPaused { phase, step },
            CampaignAction::Resume => EventKind::CampaignResumed { phase, step },
            CampaignAction::Cancel => {
                if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    return Err(Error::Unexplained { what, needs: "a reason", flag: "--reason" });
                }
                EventKind::CampaignCancelled { phase, step }
            }
        };
        self.emit_because(event, reason.clone());
        Ok(())
    }

    /// Launches a `test_first` campaign step: only one that waits for it (not launched yet), and
    /// only once the step's last test send went out (the channel took at least one message).
    /// The step then starts as any other, in this decision.
    fn launch(&mut self, phase: &str, step: &str, reason: &Option<String>) -> Result<(), Error> {
        self.campaign_step(phase, step)?;
        let refuse = |problem: &str| {
            Err(Error::Campaign { phase: phase.to_string(), step: step.to_string(), problem: problem.to_string() })
        };
        let test_first = self
            .phase_model(phase)?
            .step(step)
            .is_some_and(|model| matches!(model.action, Action::Campaign { test_first: true, .. }));
        if !test_first {
            return refuse("has no `test_first`: it starts by itself when reached, with nothing to launch");
        }
        let state = self.incident.step(phase, step);
        if state.launched.is_some() {
            return refuse("is already launched");
        }
        match &state.last_test {
            None => return refuse("has had no test send; send one (`phasegate campaign test`), then launch it"),
            Some(test) if !test.test.went_out() => {
                return refuse("had a last test send that did not go out; send another, then launch it");
            }
            Some(_) => {}
        }
        let (phase, step) = (phase.to_string(), step.to_string());
        self.emit_because(EventKind::CampaignLaunched { phase, step }, reason.clone());
        Ok(())
    }

    /// A test send, recorded: for the runbook's `campaign` roles, on a campaign step in any state
    /// (before launching above all). Nothing of the campaign's progress changes.
    pub(super) fn campaign_test(&mut self, phase: &str, step: &str, test: &CampaignTest) -> Result<(), Error> {
        let what = format!("sending a test of campaign `{phase}/{step}`");
        self.holds(&self.runbook.rights().campaign, Key::Rights("campaign"), &what)?;
        self.campaign_step(phase, step)?;
        if test.to.is_empty() {
            return Err(Error::Campaign {
                phase: phase.to_string(),
                step: step.to_string(),
                problem: "cannot record a test send to no address".to_string(),
            });
        }
        let (phase, step) = (phase.to_string(), step.to_string());
        self.emit(EventKind::CampaignTestSent { phase, step, test: test.clone() });
        Ok(())
    }

    /// A milestone from the sender (the runtime, not a person).
    pub(super) fn campaign_report(&mut self, phase: &str, step: &str, report: &CampaignReport) -> Result<(), Error> {
        if self.actor != super::event::SYSTEM {
            return Err(Error::Campaign {
                phase: phase.to_string(),
                step: step.to_string(),
                problem: format!("takes milestones from phasegate's sender only, not from `{}`", self.actor),
            });
        }
        let campaign = self.sending_campaign(phase, step)?.unwrap_or_default();
        if let CampaignReport::Halted { reason } = report {
            // A person paused or cancelled it meanwhile: that stands, and says enough.
            if campaign.paused.is_none() && campaign.cancelled.is_none() {
                self.emit_because(report.event(phase, step), Some(reason.clone()));
            }
            return Ok(());
        }
        self.emit(report.event(phase, step));
        Ok(())
    }

    /// The campaign's end: its totals on record, then the step done, or failed for good when a
    /// person cancelled it (a retry goes on with the batches not sent).
    pub(super) fn campaign_finished(
        &mut self,
        phase: &str,
        step: &str,
        campaign: &str,
        attempt: u32,
        outcome: &Outcome,
    ) -> Result<(), Error> {
        let phase_model = self.phase_model(phase)?;
        let step_model =
            phase_model.step(step).ok_or_else(|| Error::StaleEffect(format!("{campaign}/attempt-{attempt}")))?;
        match outcome {
            Outcome::Campaign(totals) => {
                let event = EventKind::CampaignFinished {
                    phase: phase.to_string(),
                    step: step.to_string(),
                    campaign: campaign.to_string(),
                    totals: totals.clone(),
                };
                self.emit(event);
                if totals.cancelled {
                    let error = format!(
                        "campaign cancelled after {} of {} recipients were sent; retry to send the rest",
                        totals.sent, totals.recipients
                    );
                    let (phase, step) = (phase.to_string(), step.to_string());
                    self.emit(EventKind::StepFailed { phase, step, attempt, error, retry_at: None });
                } else {
                    self.done(phase_model, step_model, Default::default());
                }
            }
            Outcome::Failed { error } => self.fail_attempt(phase_model, step_model, attempt, error.clone()),
            other => return Err(Error::StaleEffect(format!("{campaign}: unexpected outcome {other:?}"))),
        }
        Ok(())
    }
}
