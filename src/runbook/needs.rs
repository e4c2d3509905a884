//! What a validated runbook needs from the configuration it runs with: people holding the roles
//! that act in it, the secrets it names, and the webhook sources its triggers listen to. Read
//! from the model alone, so `start` can warn before an incident opens and a test can hold the
//! example configuration to the shipped runbooks.

use std::collections::BTreeSet;

use super::model::{Action, ChannelKind, GateKind, OfferCode, Runbook, Text};

/// People the runbook needs: `count` distinct people holding any of `roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNeed {
    /// Any one of these roles will do.
    pub roles: Vec<String>,
    pub count: u32,
    /// Whoever started the incident cannot be one of them.
    pub four_eyes: bool,
    /// What needs them, in words: "approval gate `ciso-approval` of phase `relax-controls`".
    pub needed_by: String,
}

/// A secret the runbook names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    pub name: String,
    /// In words: "channel `soc-slack`", "step `contain/isolate-hosts`".
    pub used_by: String,
}

impl Runbook {
    /// Who must act for the incident to move on: approvers of every approval gate, the assignee
    /// of every manual step that names one, the role of every signal gate that names one, the
    /// holders of the rights to close, abandon and recover, and the senders of every audience
    /// that names them.
    /// Control owners are not here: the engine never asks them to act.
    pub fn role_needs(&self) -> Vec<RoleNeed> {
        let mut needs = Vec::new();
        for phase in &self.phases {
            for gate in phase.gates() {
                let needed_by = format!("{} gate `{}` of phase `{}`", gate.kind.name(), gate.id, phase.id);
                match &gate.kind {
                    GateKind::Approval { roles, count, four_eyes } => {
                        needs.push(RoleNeed { roles: roles.clone(), count: *count, four_eyes: *four_eyes, needed_by })
                    }
                    GateKind::Signal { role: Some(role) } => {
                        needs.push(RoleNeed { roles: vec![role.clone()], count: 1, four_eyes: false, needed_by })
                    }
                    _ => {}
                }
            }
            for step in &phase.steps {
                if let Action::Manual { assignee: Some(role), .. } = &step.action {
                    let needed_by = format!("manual step `{}/{}`", phase.id, step.id);
                    needs.push(RoleNeed { roles: vec![role.clone()], count: 1, four_eyes: false, needed_by });
                }
            }
        }
        let rights = [
            ("close", &self.rights.close),
            ("abandon", &self.rights.abandon),
            ("recover", &self.rights.recover),
            ("campaign", &self.rights.campaign),
        ];
        let campaigns = self.phases.iter().flat_map(|p| &p.steps).any(|s| matches!(s.action, Action::Campaign { .. }));
        for (right, holders) in rights {
            // The right to steer campaigns matters only to a runbook that has one.
            if !holders.roles.is_empty() && (right != "campaign" || campaigns) {
                let needed_by = format!("the right to {right} (`rights.{right}`)");
                needs.push(RoleNeed { roles: holders.roles.clone(), count: 1, four_eyes: false, needed_by });
            }
        }
        for audience in &self.audiences {
            if let Some(senders) = audience.senders.as_ref().filter(|senders| !senders.roles.is_empty()) {
                let needed_by = format!("updates by hand to audience `{}` (its `senders`)", audience.id);
                needs.push(RoleNeed { roles: senders.roles.clone(), count: 1, four_eyes: false, needed_by });
            }
        }
        needs
    }

    /// Every role some person must hold for the incident to move on (see [`Runbook::role_needs`]).
    pub fn required_roles(&self) -> BTreeSet<String> {
        self.role_needs().into_iter().flat_map(|need| need.roles).collect()
    }

    /// Every place the runbook names a secret: channels (`url_secret`, `relay_secret`, webhook and
    /// batch channels' secret URLs and headers), and steps' and check gates' secret headers and command environment.
    pub fn secret_uses(&self) -> Vec<SecretUse> {
        let mut uses = Vec::new();
        let mut add = |texts: &mut dyn Iterator<Item = &Text>, used_by: &str| {
            for text in texts {
                if let Text::Secret { secret, .. } = text {
                    uses.push(SecretUse { name: secret.clone(), used_by: used_by.to_string() });
                }
            }
        };
        for channel in &self.channels {
            let used_by = format!("channel `{}`", channel.id);
            match &channel.kind {
                ChannelKind::Stdout | ChannelKind::File { .. } | ChannelKind::Spool { .. } => {}
                ChannelKind::Webhook { url, headers } | ChannelKind::Batch { url, headers } => {
                    add(&mut std::iter::once(url).chain(headers.iter().map(|(_, value)| value)), &used_by)
                }
                ChannelKind::Slack { url_secret: name } | ChannelKind::Email { relay_secret: name, .. } => {
                    add(&mut std::iter::once(&Text::Secret { secret: name.clone(), prefix: None }), &used_by)
                }
            }
        }
        for phase in &self.phases {
            for gate in phase.gates() {
                if let GateKind::Check(check) = &gate.kind {
                    let used_by = format!("check gate `{}` of phase `{}`", gate.id, phase.id);
                    add(&mut check.request.headers.iter().map(|(_, value)| value), &used_by);
                }
            }
            for step in &phase.steps {
                let used_by = format!("step `{}/{}`", phase.id, step.id);
                match &step.action {
                    Action::Http { request, .. } => add(&mut request.headers.iter().map(|(_, value)| value), &used_by),
                    Action::Command { env, .. } => add(&mut env.iter().map(|(_, value)| value), &used_by),
                    Action::Campaign { code: Some(OfferCode::Derived { secret, .. }), .. } => {
                        add(&mut std::iter::once(&Text::Secret { secret: secret.clone(), prefix: None }), &used_by)
                    }
                    _ => {}
                }
            }
        }
        uses
    }

    /// The names of every secret the runbook names (see [`Runbook::secret_uses`]).
    pub fn secret_names(&self) -> BTreeSet<String> {
        self.secret_uses().into_iter().map(|used| used.name).collect()
    }

    /// The webhook sources its triggers listen to (`POST /hooks/SOURCE`).
    pub fn trigger_sources(&self) -> BTreeSet<String> {
        self.triggers.iter().map(|trigger| trigger.source.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::runbook::testing::AnyTemplate;

    const RUNBOOK: &str = r#"
apiVersion: phasegate/v1
kind: Runbook
id: needs
title: Needs
roles: { ciso: {}, soc: {}, owner: {}, comms: {} }
controls:
  mfa: { title: MFA, owner: owner }
channels:
  slack: { slack: { url_secret: SLACK_URL } }
  hook:
    webhook:
      url: https://hooks.example/x
      headers: { Authorization: { secret: HOOK_TOKEN, prefix: "Bearer " } }
  mailer:
    batch:
      url: { secret: MAILER_URL }
      headers: { Authorization: { secret: MAILER_TOKEN, prefix: "Bearer " }, X-Category: notice }
  spool: { spool: { path: out/messages.jsonl } }
audiences:
  staff: { template: internal-update, channels: [slack, hook] }
phases:
  - id: contain
    entry:
      - approval: { roles: [ciso], four_eyes: true }
    steps:
      - id: look
        manual: { instructions: Look., assignee: soc }
      - id: call
        http:
          url: https://edr.example/isolate
          headers: { X-Key: { secret: EDR_KEY } }
  - id: watch
    needs: [contain]
    exit:
      - signal: { role: comms }
    steps:
      - id: tell
        notify: { audience: staff }
triggers:
  - id: siem-alert
    source: siem
    key: payload.id
    start: {}
"#;

    fn runbook() -> crate::runbook::Runbook {
        crate::runbook::load(RUNBOOK.as_bytes(), &AnyTemplate).unwrap_or_else(|d| panic!("{d:#?}"))
    }

    #[test]
    fn roles_that_act_are_needed_and_owners_are_not() {
        let runbook = runbook();
        let needs: Vec<(Vec<String>, bool, String)> =
            runbook.role_needs().into_iter().map(|need| (need.roles, need.four_eyes, need.needed_by)).collect();
        assert_eq!(
            needs,
            [
                (vec!["ciso".to_string()], true, "approval gate `approval` of phase `contain`".to_string()),
                (vec!["soc".to_string()], false, "manual step `contain/look`".to_string()),
                (vec!["comms".to_string()], false, "signal gate `signal` of phase `watch`".to_string()),
            ]
        );
        assert!(!runbook.required_roles().contains("owner"));
    }

    #[test]
    fn secrets_are_found_in_channels_and_steps() {
        let runbook = runbook();
        let uses: Vec<(String, String)> =
            runbook.secret_uses().into_iter().map(|used| (used.name, used.used_by)).collect();
        assert_eq!(
            uses,
            [
                ("SLACK_URL".to_string(), "channel `slack`".to_string()),
                ("HOOK_TOKEN".to_string(), "channel `hook`".to_string()),
                ("MAILER_URL".to_string(), "channel `mailer`".to_string()),
                ("MAILER_TOKEN".to_string(), "channel `mailer`".to_string()),
                ("EDR_KEY".to_string(), "step `contain/call`".to_string()),
            ]
        );
        assert_eq!(runbook.trigger_sources().into_iter().collect::<Vec<_>>(), ["siem"]);
    }
}
