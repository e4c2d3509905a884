//! Validation of steps: one action each, with the settings that action needs.

use std::time::Duration;

use super::{
    CAMPAIGN_CONTEXT, CAMPAIGN_CONTEXT_WITHOUT_CODE, Code, Declared, RESPONSE_VARIABLES, RUNBOOK_VARIABLES, Spanned,
    Validator, texts,
};
use crate::runbook::model::{self, Action};
use crate::runbook::raw;

/// The outputs a step declares, which conditions may read as `steps["PHASE/STEP"].outputs.NAME`.
pub(super) fn declared_outputs(step: &raw::Step) -> Vec<String> {
    let mut outputs: Vec<String> = Vec::new();
    if let Some(manual) = &step.manual {
        outputs.extend(manual.outputs.iter().map(|o| o.value.clone()));
    }
    if let Some(http) = &step.http {
        outputs.extend(http.outputs.keys().map(str::to_string));
    }
    outputs
}

impl Validator<'_> {
    pub(super) fn step(
        &mut self,
        step: &Spanned<raw::Step>,
        phase: &raw::Phase,
        declared: &Declared,
        inputs: &[model::Input],
    ) -> Option<model::Step> {
        self.id(&step.id, "step");
        let when = step.when.as_ref().and_then(|when| self.condition(when, RUNBOOK_VARIABLES));
        let timeout = step.timeout.as_ref().and_then(|timeout| self.duration(timeout, "timeout"));
        let retry = step.retry.as_ref().map(|retry| {
            if retry.attempts.value == 0 {
                self.report(
                    Code::InvalidValue,
                    retry.attempts.mark,
                    "`attempts` counts the first attempt too, so it is at least 1",
                );
            }
            let backoff = self.optional_duration(&retry.backoff, "backoff", Duration::from_secs(1));
            let max_backoff = self.optional_duration(&retry.max_backoff, "max_backoff", Duration::from_secs(300));
            if let (true, Some(mark)) = (max_backoff < backoff, retry.max_backoff.as_ref().map(|m| m.mark)) {
                self.report(Code::InvalidValue, mark, "`max_backoff` is shorter than `backoff`");
            }
            model::Retry { attempts: retry.attempts.value.max(1), backoff, max_backoff }
        });

        let mut actions = Vec::new();
        if let Some(manual) = &step.manual {
            actions.push(self.manual(manual, declared));
        }
        if let Some(http) = &step.http {
            actions.push(self.http(http));
        }
        if let Some(command) = &step.command {
            if command.argv.value.is_empty() {
                self.report(Code::EmptyList, command.argv.mark, "`argv` needs at least the program to run");
            }
            for argument in command.argv.value.iter() {
                self.interpolated(argument);
            }
            self.interpolated_texts(&command.env);
            actions.push(Some(Action::Command {
                argv: command.argv.value.iter().map(|a| a.value.clone()).collect(),
                env: texts(&command.env),
            }));
        }
        if let Some(notify) = &step.notify {
            actions.push(self.notify(notify, declared));
        }
        if let Some(relax) = &step.relax {
            actions.push(self.relax(relax, phase, declared));
        }
        if let Some(reinstate) = &step.reinstate {
            let known = self.reference(Code::UndeclaredControl, &reinstate.control, "control", &declared.controls);
            actions.push(known.then(|| Action::Reinstate {
                control: reinstate.control.value.clone(),
                strengthened: reinstate.strengthened.iter().map(|s| s.value.clone()).collect(),
            }));
        }
        if let Some(campaign) = &step.campaign {
            actions.push(self.campaign(campaign, step.title.as_deref(), declared, inputs));
        }
        if actions.len() != 1 {
            self.report(
                Code::ActionCount,
                step.id.mark,
                format!("step `{}` must do exactly one thing, it has {}", step.id.value, actions.len()),
            )
            .help = Some("one of: manual, http, command, notify, relax, reinstate, campaign".to_string());
            return None;
        }
        let action = actions.pop().flatten()?;
        if timeout.is_some()
            && matches!(action, Action::Manual { .. })
            && let Some(mark) = step.timeout.as_ref().map(|t| t.mark)
        {
            self.report(
                Code::InvalidValue,
                mark,
                "a manual step has no `timeout`; put a timer gate with `not_later_than` on the phase instead",
            );
        }
        if let (Some(retry), Action::Manual { .. }) = (&step.retry, &action) {
            self.report(
                Code::InvalidValue,
                retry.attempts.mark,
                "a manual step has no `retry`; a person does it and marks it done",
            );
        }
        Some(model::Step {
            id: step.id.value.clone(),
            title: step.title.clone(),
            when,
            optional: step.optional.unwrap_or(false),
            timeout,
            retry,
            action,
        })
    }

    fn manual(&mut self, manual: &raw::Manual, declared: &Declared) -> Option<Action> {
        self.not_blank(&manual.instructions, "instructions");
        if let Some(assignee) = &manual.assignee {
            self.reference(Code::UnknownRole, assignee, "role", &declared.roles);
        }
        for output in manual.outputs.iter() {
            self.output_name(output);
        }
        Some(Action::Manual {
            instructions: manual.instructions.value.clone(),
            assignee: manual.assignee.as_ref().map(|a| a.value.clone()),
            evidence: manual.evidence.iter().map(|e| e.value.clone()).collect(),
            outputs: manual.outputs.iter().map(|o| o.value.clone()).collect(),
        })
    }

    fn output_name(&mut self, output: &Spanned<String>) {
        self.field_name(output, "output");
    }

    fn http(&mut self, http: &raw::Http) -> Option<Action> {
        let request = self.request(&http.method, &http.url, &http.headers, &http.body, "POST");
        let expect = http.expect.as_ref().map(|expect| self.condition(expect, RESPONSE_VARIABLES));
        let mut outputs = Vec::new();
        for (name, expression) in &http.outputs.0 {
            self.output_name(name);
            if let Some(compiled) = self.condition(expression, RESPONSE_VARIABLES) {
                outputs.push((name.value.clone(), compiled));
            }
        }
        let expect = match expect {
            Some(None) => return None,
            Some(Some(condition)) => Some(condition),
            None => None,
        };
        (outputs.len() == http.outputs.0.len()).then_some(Action::Http { request, expect, outputs })
    }

    fn notify(&mut self, notify: &raw::Notify, declared: &Declared) -> Option<Action> {
        self.reference(Code::UnknownAudience, &notify.audience, "audience", &declared.audiences);
        if let Some(template) = &notify.template {
            self.template(template, super::STATUS_CONTEXT);
        }
        if let Some(channels) = &notify.channels {
            for channel in channels.iter() {
                self.audience_channel(channel, declared);
            }
        }
        Some(Action::Notify {
            audience: notify.audience.value.clone(),
            template: notify.template.as_ref().map(|t| t.value.clone()),
            channels: notify.channels.as_ref().map(|c| c.iter().map(|c| c.value.clone()).collect()),
            message: notify.message.clone(),
        })
    }

    fn relax(&mut self, relax: &raw::Relax, phase: &raw::Phase, declared: &Declared) -> Option<Action> {
        let known = self.reference(Code::UndeclaredControl, &relax.control, "control", &declared.controls);
        self.not_blank(&relax.reason, "reason");
        let expires_in = self.duration(&relax.expires_in, "expires_in");
        let guarded = phase.entry.iter().chain(phase.exit.iter().flatten()).any(|gate| gate.approval.is_some());
        if !guarded {
            self.report(
                Code::UnapprovedRelaxation,
                relax.control.mark,
                format!(
                    "control `{}` is relaxed in phase `{}`, which has no approval gate",
                    relax.control.value, phase.id.value
                ),
            )
            .help = Some(
                "add an entry gate `approval: { roles: [...] }` so that someone accountable allows the relaxation"
                    .to_string(),
            );
        }
        if let (Some(expires_in), Some((limit, written_limit))) =
            (expires_in, self.max_relaxation(&relax.control.value))
            && expires_in > limit
        {
            self.report(
                Code::RelaxationTooLong,
                relax.expires_in.mark,
                format!(
                    "`expires_in` is `{}`, but control `{}` may be relaxed for at most `{written_limit}`",
                    relax.expires_in.value, relax.control.value
                ),
            )
            .help = Some(format!("shorten `expires_in` to `{written_limit}` or less"));
        }
        let expires_in = expires_in?;
        known.then(|| Action::Relax {
            control: relax.control.value.clone(),
            reason: relax.reason.value.clone(),
            expires_in,
            compensating: relax.compensating.iter().map(|c| c.value.clone()).collect(),
        })
    }

    fn campaign(
        &mut self,
        campaign: &raw::Campaign,
        title: Option<&str>,
        declared: &Declared,
        inputs: &[model::Input],
    ) -> Option<Action> {
        let names: Vec<&str> = inputs.iter().map(|input| input.name.as_str()).collect();
        if self.reference(Code::UnknownInput, &campaign.recipients.input, "input", &names) {
            let input = inputs.iter().find(|input| input.name == campaign.recipients.input.value)?;
            if input.kind != raw::InputType::String {
                self.report(
                    Code::InvalidValue,
                    campaign.recipients.input.mark,
                    format!("input `{}` names the recipient list, so it must be a string", input.name),
                );
            }
        }
        self.not_blank(&campaign.recipients.id_field, "id_field");
        let context = if campaign.code.is_some() { CAMPAIGN_CONTEXT } else { CAMPAIGN_CONTEXT_WITHOUT_CODE };
        self.template(&campaign.template, context);
        if self.reference(Code::UnknownChannel, &campaign.channel, "channel", &declared.channels)
            && let Some(kind) =
                declared.kind_of(&campaign.channel.value).filter(|kind| !raw::CAMPAIGN_CHANNEL_KINDS.contains(kind))
        {
            self.report(
                Code::NotCampaignChannel,
                campaign.channel.mark,
                format!("a campaign cannot send through {kind} channel `{}`", campaign.channel.value),
            )
            .help = Some(format!(
                "a campaign's channel is an email, batch or spool channel (a {kind} channel carries updates for \
                 audiences); for a bulk-mail API, declare a `batch` channel with its `url` and `headers`"
            ));
        }
        let batch_size = campaign.batch_size.as_ref().map_or(1000, |b| b.value);
        if let (0, Some(mark)) = (batch_size, campaign.batch_size.as_ref().map(|b| b.mark)) {
            self.report(Code::InvalidValue, mark, "`batch_size` is 0");
        }
        if let Some(rate) = campaign.rate_per_second.as_ref().filter(|r| r.value == 0) {
            self.report(Code::InvalidValue, rate.mark, "`rate_per_second` is 0, so nothing would ever be sent");
        }
        let concurrency = campaign.concurrency.as_ref().map_or(4, |c| c.value);
        if let Some(written) = campaign.concurrency.as_ref().filter(|c| !(1..=64).contains(&c.value)) {
            self.report(Code::InvalidValue, written.mark, format!("`concurrency` is {}; give 1 to 64", written.value));
        }
        let subject = match (&campaign.subject, title) {
            (Some(subject), _) if !subject.value.trim().is_empty() => subject.value.trim().to_string(),
            (Some(subject), _) => {
                self.report(Code::InvalidValue, subject.mark, "`subject` is blank");
                String::new()
            }
            (None, Some(title)) => title.to_string(),
            // Then the runbook's title, which the runtime gives.
            (None, None) => String::new(),
        };
        let code = campaign.code.as_ref().and_then(|code| self.offer_code(code));
        Some(Action::Campaign {
            recipients_input: campaign.recipients.input.value.clone(),
            id_field: campaign.recipients.id_field.value.clone(),
            address_field: campaign
                .recipients
                .address_field
                .as_ref()
                .map_or_else(|| "email".to_string(), |f| f.value.clone()),
            template: campaign.template.value.clone(),
            channel: campaign.channel.value.clone(),
            batch_size,
            rate_per_second: campaign.rate_per_second.as_ref().map(|r| r.value),
            concurrency,
            subject,
            code,
            test_first: campaign.test_first.as_ref().is_some_and(|t| t.value),
        })
    }

    /// Exactly one of a secret to derive codes from (with their length) or a field that holds them.
    fn offer_code(&mut self, code: &Spanned<raw::OfferCode>) -> Option<model::OfferCode> {
        let written = &code.value;
        match (&written.secret, &written.field) {
            (Some(secret), None) => {
                let length = written.length.as_ref().map_or(10, |l| l.value);
                if let Some(l) = written.length.as_ref().filter(|l| !(8..=16).contains(&l.value)) {
                    self.report(Code::InvalidValue, l.mark, format!("`length` is {}; give 8 to 16", l.value));
                }
                self.not_blank(secret, "secret");
                Some(model::OfferCode::Derived { secret: secret.value.clone(), length })
            }
            (None, Some(field)) => {
                if let Some(l) = &written.length {
                    self.report(Code::InvalidValue, l.mark, "`length` applies only to codes derived from a `secret`");
                }
                self.not_blank(field, "field");
                Some(model::OfferCode::Field(field.value.clone()))
            }
            (Some(_), Some(_)) | (None, None) => {
                self.report(Code::InvalidValue, code.mark, "`code` takes exactly one of `secret` and `field`")
                    .help = Some("`code: { secret: OFFER_CODE_KEY }` derives each code; `code: { field: gift_card_code }` reads it from the list".to_string());
                None
            }
        }
    }
}
