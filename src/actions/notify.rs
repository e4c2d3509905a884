//! Status updates: render an audience's template with the incident as it stands, then deliver it
//! to each channel of the effect.
//!
//! Every channel is tried, and the outcome is `Sent` only when every one took the update;
//! otherwise `Failed` names each channel that did not and why, and which ones did. Which variant
//! of a template a channel sends: plain text first for standard output, by the file's extension
//! for a file, Markdown first for Slack, and the text and HTML variants both for a webhook and for
//! email (`email.rs`: plain text first, then Markdown, as the text part; the subject is the
//! banner's words without the time).
//!
//! A Slack channel's URL is a secret (whoever has it can post to the channel), so nothing about a
//! failed Slack delivery quotes it: the message says what kind of failure it was and names the
//! channel.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::standin::Captured;
use super::{Actions, Error, IncidentView, Revealed, email, http};
use crate::engine::Outcome;
use crate::render::context::{status_context, time};
use crate::runbook::model::{Channel, ChannelKind, Text};

/// What a notify effect asks for.
pub(super) struct Notice<'a> {
    pub audience: &'a str,
    pub template: &'a str,
    pub channels: &'a [String],
    pub occasion: &'a str,
    pub message: Option<&'a str>,
    /// The same for every attempt of this update (see `notice_key`): email's `Message-ID`.
    pub key: &'a str,
}

pub(super) async fn send(actions: &Actions, notice: &Notice<'_>, view: &IncidentView<'_>) -> Result<Outcome, Error> {
    let audience = view
        .runbook
        .audiences()
        .iter()
        .find(|audience| audience.id == notice.audience)
        .ok_or_else(|| Error::UnknownAudience(notice.audience.to_string()))?;
    if actions.catalog.files(notice.template).is_empty() {
        return Err(Error::UnknownTemplate(notice.template.to_string()));
    }
    // Nothing goes out when a channel is unknown: a partial delivery would be retried whole.
    let mut channels: Vec<&Channel> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for id in notice.channels {
        match view.runbook.channels().iter().find(|channel| &channel.id == id) {
            Some(channel) => channels.push(channel),
            None => unknown.push(id.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(Error::UnknownChannels(unknown));
    }
    let context = status_context(
        view.runbook,
        view.incident,
        view.events,
        notice.audience,
        notice.occasion,
        notice.message,
        view.now,
    );
    let mut renders = Renders { actions, template: notice.template, context, prepared: None, done: BTreeMap::new() };
    let title = audience.title.as_deref().unwrap_or(&audience.id);
    let banner = format!(
        "===== phasegate: update for {title}, incident {} ({}), {} =====",
        view.incident.id,
        notice.occasion,
        time(view.now)
    );
    // An email's subject says the same, without the time (its `Date` says it).
    let subject = format!(
        "[{}] {}: update for {title} ({})",
        view.incident.id,
        view.runbook.title(),
        occasion_words(notice.occasion)
    );
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for channel in channels {
        match deliver(actions, channel, &mut renders, (&banner, &subject), notice, view).await {
            Ok(()) => sent.push(channel.id.clone()),
            Err(reason) => {
                failed.push(Error::Channel { kind: kind(&channel.kind), channel: channel.id.clone(), reason })
            }
        }
    }
    if !failed.is_empty() {
        return Err(Error::Undelivered { failed, sent });
    }
    // What the update said, for the log: the variant a person reads most easily. It rendered
    // once already for a channel, so this is the cache.
    let text = renders.variant(&["txt", "md", "html"]).ok().flatten().map(|text| recorded(&text));
    Ok(Outcome::Sent { channels: sent, text })
}

/// An update's occasion as a subject line says it to a person (`incident declared`, not
/// `incident_started`), in the words the built-in templates use (shorter where the subject already says "update"); an occasion without words is
/// shown as it is.
fn occasion_words(occasion: &str) -> &str {
    match occasion {
        "incident_started" => "incident declared",
        "phase_started" => "a phase started",
        "phase_done" => "a phase finished",
        "phase_skipped" => "a phase was skipped",
        "phase_failed" => "a phase FAILED",
        "gate_passed" => "a gate passed",
        "gate_waiting" => "a gate is waiting",
        "approval_given" => "an approval was given",
        "step_done" => "a step was completed",
        "step_failed" => "a step FAILED",
        "control_relaxed" => "a security control was relaxed",
        "control_reinstated" => "a security control was reinstated",
        "relaxation_overdue" => "a control relaxation is OVERDUE",
        "deadline_missed" => "a deadline was MISSED",
        "note_added" => "a note was added",
        "incident_closed" => "incident closed",
        "scheduled" => "scheduled",
        "requested" => "requested by a responder",
        "step" => "a message from the response team",
        other => other,
    }
}

/// The most of an update's text the log keeps.
const MAX_RECORDED_TEXT: usize = 32 * 1024;

/// An update's text as the log keeps it: whole, or cut at a character boundary and marked.
fn recorded(text: &str) -> String {
    if text.len() <= MAX_RECORDED_TEXT {
        return text.to_string();
    }
    let cut = (0..=MAX_RECORDED_TEXT).rev().find(|&index| text.is_char_boundary(index)).unwrap_or(0);
    format!("{}\n[... cut at {} KiB of {} bytes]", &text[..cut], MAX_RECORDED_TEXT / 1024, text.len())
}

fn kind(kind: &ChannelKind) -> &'static str {
    kind.name()
}

/// Why a campaign-only channel (batch, spool) takes no update: validation refuses a runbook that
/// sends one there (RB0065), so only a runbook built some other way gets here.
fn campaigns_only(kind: &ChannelKind) -> String {
    format!("a {} channel carries campaign messages only, not updates for an audience", kind.name())
}

/// Delivers to one channel; the error is the reason, without the channel's name (added by the caller).
async fn deliver(
    actions: &Actions,
    channel: &Channel,
    renders: &mut Renders<'_>,
    (banner, subject): (&str, &str),
    notice: &Notice<'_>,
    view: &IncidentView<'_>,
) -> Result<(), String> {
    if let Some(stand_in) = &actions.stand_in {
        return stand_in.deliver(captured(channel, renders, subject, notice, view)?);
    }
    match &channel.kind {
        ChannelKind::Stdout => {
            let text = renders.text(&["txt", "md"])?;
            let mut out = actions.stdout.lock().map_err(|_| "standard output is unusable".to_string())?;
            write!(out, "{banner}\n{}\n", text.trim_end())
                .and_then(|()| out.flush())
                .map_err(|error| format!("cannot write to standard output: {error}"))
        }
        ChannelKind::File { path } => {
            let order: &[&str] = if path.ends_with(".txt") { &["txt", "md"] } else { &["md", "txt"] };
            let text = renders.text(order)?;
            append(Path::new(path), &format!("{banner}\n\n{}\n", text.trim_end()))
                .await
                .map_err(|error| format!("cannot append to `{path}`: {error}"))
        }
        ChannelKind::Webhook { url, headers } => {
            let text = renders.variant(&["md", "txt"])?;
            let html = renders.variant(&["html"])?;
            let mut revealed = Revealed::new(actions.secrets.as_ref());
            let url_text = revealed.text(url, || "the channel's URL".to_string()).map_err(|e| e.to_string())?;
            let url = match (http::url(&url_text), url) {
                (Ok(url), _) => url,
                (Err(_), Text::Secret { secret, .. }) => {
                    return Err(format!("secret `{secret}` is not an http or https URL"));
                }
                (Err(error), Text::Literal(_)) => return Err(error.to_string()),
            };
            let headers = http::headers(headers, &mut revealed).map_err(|error| error.to_string())?;
            let mut body = json!({
                "incident": view.incident.id,
                "runbook": view.runbook.id(),
                "audience": notice.audience,
                "occasion": notice.occasion,
                "text": text,
            });
            if let Some(html) = html {
                body["html"] = Value::String(html);
            }
            http::post_json(&actions.client, &actions.outbound, url, headers, &body).await
        }
        ChannelKind::Slack { url_secret } => {
            let text = renders.text(&["md", "txt"])?;
            let mut revealed = Revealed::new(actions.secrets.as_ref());
            let url = revealed.secret(url_secret, || "the channel's URL".to_string()).map_err(|e| e.to_string())?;
            let url = http::url(&url).map_err(|_| format!("secret `{url_secret}` is not an http or https URL"))?;
            http::post_json(&actions.client, &actions.outbound, url, HeaderMap::new(), &json!({ "text": text })).await
        }
        ChannelKind::Email { to, from, relay_secret, .. } => {
            let mut revealed = Revealed::new(actions.secrets.as_ref());
            let url =
                revealed.secret(relay_secret, || "the channel's SMTP relay".to_string()).map_err(|e| e.to_string())?;
            let relay = email::Relay::parse(&url)
                .map_err(|why| format!("secret `{relay_secret}` is not an SMTP relay URL: {why}"))?;
            for part in relay.credentials() {
                revealed.part(relay_secret, part);
            }
            let text = renders.variant(&["txt", "md"])?;
            let html = renders.variant(&["html"])?;
            let letter = email::compose(email::Draft {
                scope: &channel.id,
                to,
                from: from.as_deref(),
                subject: subject.to_string(),
                text,
                html,
                key: notice.key,
                date: view.now,
            })?;
            // Only what the relay answered is scrubbed: it may quote the login phasegate sent.
            email::send(&actions.outbound, &relay, &letter)
                .await
                .map_err(|failure| failure.scrubbed(|answer| revealed.scrub(answer)))?;
            tracing::info!(channel = %channel.id, message_id = %letter.message_id, "email accepted by the relay");
            Ok(())
        }
        ChannelKind::Batch { .. } | ChannelKind::Spool { .. } => Err(campaigns_only(&channel.kind)),
    }
}

/// What `channel` would have been given, for a stand-in (a drill) to take instead.
fn captured(
    channel: &Channel,
    renders: &mut Renders<'_>,
    subject: &str,
    notice: &Notice<'_>,
    view: &IncidentView<'_>,
) -> Result<Captured, String> {
    let shown = |text: &Text| match text {
        Text::Literal(literal) => literal.clone(),
        Text::Secret { secret, .. } => format!("secret `{secret}`"),
    };
    let mut message = Captured {
        at: view.now,
        incident: view.incident.id.clone(),
        audience: notice.audience.to_string(),
        occasion: notice.occasion.to_string(),
        channel: channel.id.clone(),
        kind: kind(&channel.kind),
        to: Vec::new(),
        from: None,
        subject: None,
        text: None,
        html: None,
        body: None,
    };
    match &channel.kind {
        ChannelKind::Stdout => message.text = Some(renders.text(&["txt", "md"])?),
        ChannelKind::File { path } => {
            let order: &[&str] = if path.ends_with(".txt") { &["txt", "md"] } else { &["md", "txt"] };
            message.text = Some(renders.text(order)?);
            message.to = vec![path.clone()];
        }
        ChannelKind::Webhook { url, .. } => {
            message.text = renders.variant(&["md", "txt"])?;
            message.html = renders.variant(&["html"])?;
            message.to = vec![shown(url)];
            let mut body = json!({
                "incident": view.incident.id,
                "runbook": view.runbook.id(),
                "audience": notice.audience,
                "occasion": notice.occasion,
                "text": message.text,
            });
            if let Some(html) = &message.html {
                body["html"] = Value::String(html.clone());
            }
            message.body = Some(body);
        }
        ChannelKind::Slack { url_secret } => {
            let text = renders.text(&["md", "txt"])?;
            message.to = vec![format!("secret `{url_secret}`")];
            message.body = Some(json!({ "text": text }));
            message.text = Some(text);
        }
        ChannelKind::Email { to, from, .. } => {
            message.text = renders.variant(&["txt", "md"])?;
            message.html = renders.variant(&["html"])?;
            message.to = to.clone();
            message.from = from.clone();
            message.subject = Some(subject.to_string());
        }
        ChannelKind::Batch { .. } | ChannelKind::Spool { .. } => return Err(campaigns_only(&channel.kind)),
    }
    Ok(message)
}

/// Appends `entry` to the file at `path`, creating it and its directories, with a blank line
/// between entries.
async fn append(path: &Path, entry: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
    let separator = if file.metadata().await?.len() > 0 { "\n" } else { "" };
    // One write per entry, so that two updates appended at once do not interleave line by line.
    file.write_all(format!("{separator}{entry}").as_bytes()).await?;
    file.flush().await
}

/// The template's variants, each rendered at most once however many channels send it.
struct Renders<'a> {
    actions: &'a Actions,
    template: &'a str,
    context: Value,
    /// The context as templates read it, converted for the first file rendered.
    prepared: Option<Result<crate::render::Prepared, String>>,
    done: BTreeMap<String, Result<String, String>>,
}

impl Renders<'_> {
    /// The first of `variants` that the template has, rendered; `None` when it has none of them.
    fn variant(&mut self, variants: &[&str]) -> Result<Option<String>, String> {
        let files = self.actions.catalog.files(self.template);
        let Some(file) =
            variants.iter().map(|variant| format!("{}.{variant}", self.template)).find(|f| files.contains(f))
        else {
            return Ok(None);
        };
        if let Some(rendered) = self.done.get(&file) {
            return rendered.clone().map(Some);
        }
        let catalog = &self.actions.catalog;
        let prepared = self
            .prepared
            .get_or_insert_with(|| catalog.prepare(&file, &self.context).map_err(|error| error.to_string()));
        let rendered = match prepared {
            Ok(prepared) => catalog.render_prepared(&file, prepared).map_err(|error| error.to_string()),
            Err(error) => Err(error.clone()),
        };
        self.done.insert(file, rendered.clone());
        rendered.map(Some)
    }

    /// The first of the text `variants`; a template with only HTML cannot go to a text channel.
    fn text(&mut self, variants: &[&str]) -> Result<String, String> {
        self.variant(variants)?.ok_or_else(|| {
            let wanted: Vec<String> = variants.iter().map(|v| format!("`{}.{v}`", self.template)).collect();
            format!("template `{}` has no text variant ({})", self.template, wanted.join(" or "))
        })
    }
}
