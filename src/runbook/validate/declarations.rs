//! Validation of what a runbook declares before its phases: inputs, controls, channels, audiences.

use super::{Code, Declared, List, Spanned, Table, Validator, texts};
use crate::runbook::STATUS_CONTEXT;
use crate::runbook::model::{self, ChannelKind};
use crate::runbook::raw;

impl Validator<'_> {
    pub(super) fn inputs(&mut self, inputs: &Table<raw::Input>) -> Vec<model::Input> {
        let mut result = Vec::new();
        for (name, input) in &inputs.0 {
            self.field_name(name, "input");
            let kind = input.kind.value;
            if input.allowed.as_ref().is_some_and(|allowed| allowed.is_empty()) {
                self.report(
                    Code::EmptyList,
                    name.mark,
                    format!("input `{}` lists no allowed values, so no value would do", name.value),
                )
                .help =
                    Some("list the allowed values, or remove `allowed` to accept any value of the type".to_string());
            }
            let allowed: Option<Vec<serde_json::Value>> = input.allowed.as_ref().map(|values| {
                for value in values.iter() {
                    if !fits(kind, &value.value) {
                        self.report(
                            Code::BadInputDefault,
                            value.mark,
                            format!(
                                "allowed value {} of input `{}` is not a {}",
                                value.value,
                                name.value,
                                type_name(kind)
                            ),
                        );
                    }
                }
                values.iter().map(|value| value.value.clone()).collect()
            });
            if let Some(default) = &input.default {
                if !fits(kind, &default.value) {
                    self.report(
                        Code::BadInputDefault,
                        default.mark,
                        format!("default {} of input `{}` is not a {}", default.value, name.value, type_name(kind)),
                    );
                } else if let Some(allowed) = &allowed
                    && !allowed.contains(&default.value)
                {
                    let listed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                    self.report(
                        Code::BadInputDefault,
                        default.mark,
                        format!("default {} of input `{}` is not one of its allowed values", default.value, name.value),
                    )
                    .help = Some(format!("allowed: {}", listed.join(", ")));
                }
            }
            result.push(model::Input {
                name: name.value.clone(),
                kind,
                description: input.description.clone(),
                default: input.default.as_ref().map(|d| d.value.clone()),
                allowed,
            });
        }
        result
    }

    pub(super) fn controls(&mut self, controls: &Table<raw::Control>, declared: &Declared) -> Vec<model::Control> {
        controls
            .0
            .iter()
            .map(|(id, control)| {
                self.id(id, "control");
                self.not_blank(&control.title, "title");
                if let Some(owner) = &control.owner {
                    self.reference(Code::UnknownRole, owner, "role", &declared.roles);
                }
                model::Control {
                    id: id.value.clone(),
                    title: control.title.value.clone(),
                    description: control.description.clone(),
                    owner: control.owner.as_ref().map(|o| o.value.clone()),
                    max_relaxation: control.max_relaxation.as_ref().and_then(|d| self.duration(d, "max_relaxation")),
                }
            })
            .collect()
    }

    pub(super) fn channels(&mut self, channels: &Table<raw::Channel>) -> Vec<model::Channel> {
        let mut result = Vec::new();
        for (id, channel) in &channels.0 {
            self.id(id, "channel");
            let mut kinds = Vec::new();
            if channel.stdout.is_some() {
                kinds.push(ChannelKind::Stdout);
            }
            if let Some(file) = &channel.file {
                self.not_blank(&file.path, "path");
                kinds.push(ChannelKind::File { path: file.path.value.clone() });
            }
            if let Some(webhook) = &channel.webhook {
                if let raw::Text::Literal(url) = &webhook.url.value {
                    self.url(&Spanned::new(webhook.url.mark, url.clone()), url);
                }
                kinds.push(ChannelKind::Webhook { url: webhook.url.value.clone(), headers: texts(&webhook.headers) });
            }
            if let Some(slack) = &channel.slack {
                kinds.push(ChannelKind::Slack { url_secret: slack.url_secret.value.clone() });
            }
            if let Some(email) = &channel.email {
                let connections = email.connections.as_ref().map_or(model::DEFAULT_CONNECTIONS, |c| c.value);
                if let Some(written) =
                    email.connections.as_ref().filter(|c| !(1..=model::MAX_CONNECTIONS).contains(&c.value))
                {
                    self.report(
                        Code::InvalidValue,
                        written.mark,
                        format!(
                            "`connections` of email channel `{}` is {}, not between 1 and {}",
                            id.value,
                            written.value,
                            model::MAX_CONNECTIONS
                        ),
                    )
                    .help = Some(format!(
                        "the SMTP connections a campaign keeps open to the relay; {} when omitted",
                        model::DEFAULT_CONNECTIONS
                    ));
                }
                kinds.push(ChannelKind::Email {
                    to: email.to.iter().map(|to| to.value.clone()).collect(),
                    from: email.from.clone(),
                    relay_secret: email.relay_secret.value.clone(),
                    connections,
                });
            }
            if let Some(batch) = &channel.batch {
                if let raw::Text::Literal(url) = &batch.url.value {
                    self.url(&Spanned::new(batch.url.mark, url.clone()), url);
                }
                kinds.push(ChannelKind::Batch { url: batch.url.value.clone(), headers: texts(&batch.headers) });
            }
            if let Some(spool) = &channel.spool {
                self.not_blank(&spool.path, "path");
                kinds.push(ChannelKind::Spool {
                    path: spool.path.value.clone(),
                    format: spool.format.as_ref().map_or(model::SpoolFormat::Jsonl, |f| f.value),
                    from: spool.from.clone(),
                });
            }
            if kinds.len() != 1 {
                self.report(
                    Code::ActionCount,
                    id.mark,
                    format!("channel `{}` must have exactly one kind, it has {}", id.value, kinds.len()),
                )
                .help = Some("one of: stdout, file, webhook, slack, email, batch, spool".to_string());
                continue;
            }
            result.push(model::Channel { id: id.value.clone(), kind: kinds.remove(0) });
        }
        result
    }

    pub(super) fn audiences(&mut self, audiences: &Table<raw::Audience>, declared: &Declared) -> Vec<model::Audience> {
        audiences
            .0
            .iter()
            .map(|(id, audience)| {
                self.id(id, "audience");
                self.template(&audience.template, STATUS_CONTEXT);
                if audience.channels.value.is_empty() {
                    self.report(
                        Code::EmptyList,
                        audience.channels.mark,
                        format!("audience `{}` has no channels", id.value),
                    );
                }
                for channel in audience.channels.value.iter() {
                    self.audience_channel(channel, declared);
                }
                let senders = audience.senders.as_ref().map(|senders| {
                    self.rights_roles(senders, &format!("`senders` of audience `{}`", id.value), declared)
                });
                model::Audience {
                    id: id.value.clone(),
                    title: audience.title.clone(),
                    template: audience.template.value.clone(),
                    channels: audience.channels.value.iter().map(|c| c.value.clone()).collect(),
                    senders: model::Audience::senders(&id.value, senders),
                }
            })
            .collect()
    }

    /// Who may close, abandon and recover: declared roles, and someone who may close.
    pub(super) fn rights(
        &mut self,
        rights: Option<&raw::Rights>,
        roles: &[model::Role],
        declared: &Declared,
    ) -> model::Rights {
        let mut right = |list: Option<&Spanned<List<String>>>, key: &str| {
            list.map(|list| self.rights_roles(list, &format!("`rights.{key}`"), declared))
        };
        let close = right(rights.and_then(|r| r.close.as_ref()), "close");
        let abandon = right(rights.and_then(|r| r.abandon.as_ref()), "abandon");
        let recover = right(rights.and_then(|r| r.recover.as_ref()), "recover");
        let campaign = right(rights.and_then(|r| r.campaign.as_ref()), "campaign");
        if let (Some(list), Some(written)) = (&close, rights.and_then(|r| r.close.as_ref()))
            && list.is_empty()
        {
            self.report(
                Code::EmptyList,
                written.mark,
                "`rights.close` names no role, so no incident could ever close",
            )
            .help = Some(
                "name the roles that may close, for example `close: [incident-commander]`; to forbid early \
                 closing, leave `abandon` empty instead"
                    .to_string(),
            );
        }
        model::Rights {
            close: model::Right::or_default(close, roles),
            abandon: model::Right::or_default(abandon, roles),
            recover: model::Right::or_default(recover, roles),
            campaign: model::Right::or_default(campaign, roles),
        }
    }

    /// The roles a right or an audience's `senders` names, each one the runbook declares.
    fn rights_roles(&mut self, list: &Spanned<List<String>>, what: &str, declared: &Declared) -> Vec<String> {
        for role in list.value.iter() {
            if !self.reference(Code::UnknownRightsRole, role, "role", &declared.roles)
                && let Some(last) = self.problems.last_mut()
            {
                last.message = format!("{what} names unknown role `{}`", role.value);
            }
        }
        list.value.iter().map(|role| role.value.clone()).collect()
    }

    /// A channel that messages for an audience go to: declared, one that carries updates, and
    /// with somewhere to send them.
    pub(super) fn audience_channel(&mut self, channel: &Spanned<String>, declared: &Declared) {
        if !self.reference(Code::UnknownChannel, channel, "channel", &declared.channels) {
            return;
        }
        if let Some(kind) =
            declared.kind_of(&channel.value).filter(|kind| raw::CAMPAIGN_ONLY_CHANNEL_KINDS.contains(kind))
        {
            self.report(
                Code::CampaignOnlyChannel,
                channel.mark,
                format!(
                    "{kind} channel `{}` carries campaign messages only, not updates for an audience",
                    channel.value
                ),
            )
            .help = Some(
                "send the audience's updates through a stdout, file, webhook, slack or email channel; a batch or \
                 spool channel is for a `campaign` step's `channel`"
                    .to_string(),
            );
        } else if declared.email_without_to.contains(&channel.value.as_str()) {
            self.report(
                Code::EmptyList,
                channel.mark,
                format!("email channel `{}` has no `to`, so it cannot reach an audience", channel.value),
            )
            .help = Some(
                "give the channel fixed recipients in `to`; only a campaign may use an email channel without them"
                    .to_string(),
            );
        }
    }
}

impl Declared<'_> {
    /// The kind of a declared channel with exactly one kind.
    pub(super) fn kind_of(&self, channel: &str) -> Option<&'static str> {
        self.channel_kinds.iter().find(|(id, _)| *id == channel).map(|(_, kind)| *kind)
    }
}

fn fits(kind: raw::InputType, value: &serde_json::Value) -> bool {
    match kind {
        raw::InputType::String => value.is_string(),
        raw::InputType::Integer => value.is_i64() || value.is_u64(),
        raw::InputType::Number => value.is_number(),
        raw::InputType::Boolean => value.is_boolean(),
    }
}

fn type_name(kind: raw::InputType) -> &'static str {
    match kind {
        raw::InputType::String => "string",
        raw::InputType::Integer => "whole number",
        raw::InputType::Number => "number",
        raw::InputType::Boolean => "boolean",
    }
}
