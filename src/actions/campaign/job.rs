//! One batch of a campaign, carried out: each recipient's offer code, their message rendered
//! (on every core), its digest for the Merkle leaf, the batch sent through the campaign's
//! channel (or handed to a drill's stand-in), and one leaf per recipient with what became of it.
//! The renderer and the channel's sender (a batch HTTP client, an open spool, a pool of SMTP
//! connections) are made at the campaign's first batch and kept for the next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Answer, Batch, BatchJob, BatchSent, FailureClass, Message};
use crate::actions::standin::Captured;
use crate::actions::{Actions, Error};
use crate::audit::chain::Hash;
use crate::audit::merkle::{self, Leaf, LeafOutcome};
use crate::campaign::{Counts, Recipient, code};
use crate::render::campaign::Renderer;
use crate::runbook::model::{Action, ChannelKind, OfferCode};

/// How long a batch HTTP request may take.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a campaign keeps between its batches, by campaign key. Each is made once: the batches
/// of a campaign's first window all wait for the one that makes it (two spools opened on the
/// same file would each write its batches over the other's).
#[derive(Default)]
pub struct Kept {
    campaigns: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Campaign>>>>>,
}

/// A campaign's renderer and sender.
struct Campaign {
    renderer: Renderer,
    channel: String,
    sender: Sender,
}

/// What a test send did: the messages sent, the channel's answer, and the sample's recipients
/// whose message could not be rendered (with why).
pub struct TestSent {
    pub messages: u32,
    pub answer: Answer,
    pub not_rendered: Vec<(String, String)>,
}

enum Sender {
    Batch(super::batch::BatchHttp),
    Spool(super::spool::Spool),
    Email(super::smtp::SmtpPool),
    /// A drill's stand-in takes each message.
    StandIn,
}

impl Actions {
    /// Renders and sends one batch of a campaign. Never fails: what goes wrong is the answer.
    pub async fn campaign_batch(&self, job: BatchJob<'_>) -> BatchSent {
        let campaign = match self.campaign(&job).await {
            Ok(campaign) => campaign,
            Err(error) => return failed(&job, error.to_string()),
        };
        let Some(Action::Campaign { subject, code: offer, .. }) =
            job.runbook.phase(job.phase).and_then(|p| p.step(job.step)).map(|s| &s.action)
        else {
            return failed(&job, format!("step `{}/{}` is not a campaign", job.phase, job.step));
        };
        let codes = match offer
            .as_ref()
            .map(|offer| offer_codes(offer, self.secrets.as_ref(), job.campaign, &job.recipients))
            .transpose()
        {
            Ok(codes) => codes,
            Err(error) => return failed(&job, error),
        };
        // Rendering and hashing take the CPU: off the runtime's threads, on every core.
        let subject = if subject.is_empty() { job.runbook.title().to_string() } else { subject.clone() };
        if let Sender::Batch(sender) = &campaign.sender {
            return self.send_batch_http(&job, &campaign, sender, codes, subject).await;
        }
        let (recipients, worker) = (Arc::clone(&job.recipients), Arc::clone(&campaign));
        let rendered =
            tokio::task::spawn_blocking(move || render(&worker.renderer, &recipients, codes, &subject)).await;
        let rendered = match rendered {
            Ok(rendered) => rendered,
            Err(error) => return failed(&job, format!("rendering stopped: {error}")),
        };
        // The messages move into the batch; each recipient keeps only why theirs was not rendered.
        let mut messages = Vec::with_capacity(rendered.len());
        let rendered: Vec<(Result<(), String>, Hash)> = rendered
            .into_iter()
            .map(|(message, digest)| match message {
                Ok(message) => {
                    messages.push(message);
                    (Ok(()), digest)
                }
                Err(reason) => (Err(reason), digest),
            })
            .collect();
        let answer = if messages.is_empty() {
            Answer::Accepted { rejected: Vec::new() }
        } else {
            let batch = Batch { campaign: job.campaign, number: job.number, messages: &messages };
            match &campaign.sender {
                Sender::Batch(sender) => sender.send(batch).await,
                Sender::Spool(sender) => sender.send(batch).await,
                Sender::Email(sender) => sender.send(batch).await,

                Sender::StandIn => self.hand_over(&job, &campaign.channel, &messages),
            }
        };
        // The next batch renders into these messages' buffers.
        campaign
            .renderer
            .recycle(messages.into_iter().flat_map(|message| [Some(message.text), message.html]).flatten());
        leaves(&job, rendered, answer)
    }

    /// A batch through the batch HTTP channel: each message written in the wire format as it is
    /// rendered (see [`Renderer::render_parts`]), each rendering thread's part of the body sent as
    /// it was written.
    async fn send_batch_http(
        &self,
        job: &BatchJob<'_>,
        campaign: &Arc<Campaign>,
        sender: &super::batch::BatchHttp,
        codes: Option<Vec<String>>,
        subject: String,
    ) -> BatchSent {
        let (recipients, worker, parts) = (Arc::clone(&job.recipients), Arc::clone(campaign), sender.clone());
        let written = tokio::task::spawn_blocking(move || {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            let messages = super::batch::Messages::new(&subject);
            worker.renderer.render_parts(
                &recipients,
                codes.as_deref(),
                cores,
                || parts.buffer(),
                |escaping, recipient, code, out| {
                    let mut part = super::batch::Part { start: 0, out };
                    let start = part.out.len();
                    messages.open(&mut part, &recipient.id, &recipient.address);
                    match escaping.message(recipient, code, part.out, super::batch::Messages::HTML) {
                        Ok(raw) => {
                            let digest = merkle::message_digest(&recipient.address, &subject, raw.text, raw.html);
                            super::batch::Messages::close(part.out);
                            (Ok(()), digest)
                        }
                        Err(error) => {
                            part.out.truncate(start);
                            let digest = merkle::message_digest(&recipient.address, &subject, "", None);
                            (Err(format!("not rendered: {error}")), digest)
                        }
                    }
                },
            )
        })
        .await;
        let (rendered, parts) = match written {
            Ok(written) => written,
            Err(error) => return failed(job, format!("rendering stopped: {error}")),
        };
        let ids: Vec<&str> = job
            .recipients
            .iter()
            .zip(&rendered)
            .filter(|(_, (message, _))| message.is_ok())
            .map(|(recipient, _)| recipient.id.as_str())
            .collect();
        let answer = if ids.is_empty() {
            Answer::Accepted { rejected: Vec::new() }
        } else {
            sender.send_parts(job.campaign, job.number, parts, &ids).await
        };
        leaves(job, rendered, answer)
    }

    /// A test send: the job's recipients' messages rendered as the campaign renders them (their
    /// own fields and offer codes), each sent to every address of `to` and to nobody else, the
    /// subject prefixed `[TEST] `, through the campaign's channel as batch `job.number` of the
    /// campaign `{campaign}/test` (so its idempotency keys and Message-IDs are never the
    /// campaign's). No leaf and nothing in the store: the campaign's progress is untouched.
    pub async fn campaign_test(&self, job: BatchJob<'_>, to: &[String]) -> Result<TestSent, Error> {
        let campaign = self.campaign(&job).await?;
        let Some(Action::Campaign { subject, code: offer, .. }) =
            job.runbook.phase(job.phase).and_then(|p| p.step(job.step)).map(|s| &s.action)
        else {
            return Err(Error::Campaign(format!("step `{}/{}` is not a campaign", job.phase, job.step)));
        };
        let codes = offer
            .as_ref()
            .map(|offer| offer_codes(offer, self.secrets.as_ref(), job.campaign, &job.recipients))
            .transpose()
            .map_err(Error::Campaign)?;
        let subject = if subject.is_empty() { job.runbook.title().to_string() } else { subject.clone() };
        let mut messages = Vec::new();
        let mut not_rendered = Vec::new();
        for (recipient, (message, _)) in
            job.recipients.iter().zip(render(&campaign.renderer, &job.recipients, codes, &subject))
        {
            match message {
                Ok(message) => {
                    for (index, address) in to.iter().enumerate() {
                        messages.push(Message {
                            id: format!("{}#test-{}", message.id, index + 1),
                            to: address.clone(),
                            subject: format!("[TEST] {}", message.subject),
                            ..message.clone()
                        });
                    }
                }
                Err(reason) => not_rendered.push((recipient.id.clone(), reason)),
            }
        }
        let key = format!("{}/test", job.campaign);
        let answer = if messages.is_empty() {
            Answer::Failed { error: "no message of the sample could be rendered".into(), class: FailureClass::Local }
        } else {
            let batch = Batch { campaign: &key, number: job.number, messages: &messages };
            match &campaign.sender {
                Sender::Batch(sender) => sender.send(batch).await,
                Sender::Spool(sender) => sender.send(batch).await,
                Sender::Email(sender) => sender.send(batch).await,
                Sender::StandIn => self.hand_over(&job, &campaign.channel, &messages),
            }
        };
        Ok(TestSent { messages: messages.len() as u32, answer, not_rendered })
    }

    /// The campaign's renderer and sender, made at its first batch, once however many batches
    /// ask at the same time.
    async fn campaign(&self, job: &BatchJob<'_>) -> Result<Arc<Campaign>, Error> {
        let cell = Arc::clone(
            self.kept.campaigns.lock().expect("never poisoned").entry(job.campaign.to_string()).or_default(),
        );
        cell.get_or_try_init(|| self.make_campaign(job)).await.map(Arc::clone)
    }

    async fn make_campaign(&self, job: &BatchJob<'_>) -> Result<Arc<Campaign>, Error> {
        let step = job.runbook.phase(job.phase).and_then(|p| p.step(job.step));
        let Some(Action::Campaign { template, channel, .. }) = step.map(|s| &s.action) else {
            return Err(Error::Campaign(format!("step `{}/{}` is not a campaign", job.phase, job.step)));
        };
        let state = job.incident.step(job.phase, job.step).campaign.unwrap_or_default();
        let counts = Counts {
            read: state.recipients + state.rejected + state.duplicates + state.suppressed,
            accepted: state.recipients,
            rejected: state.rejected,
            duplicates: state.duplicates,
            suppressed: state.suppressed,
        };
        let base =
            crate::render::context::campaign_base(job.runbook, job.incident, job.phase, job.step, &counts, job.now);
        let renderer = Renderer::new(&self.catalog, template, base)
            .map_err(|error| Error::Campaign(format!("template `{template}`: {error}")))?;
        // A template that uses more than the compiled form follows is rendered by tera, several
        // times slower: worth knowing when a campaign of millions is slow.
        tracing::debug!(campaign = job.campaign, template, compiled = renderer.compiled(), "campaign template ready");
        let model = job
            .runbook
            .channels()
            .iter()
            .find(|c| &c.id == channel)
            .ok_or_else(|| Error::Campaign(format!("channel `{channel}` is not in the runbook")))?;
        let sender = match (&model.kind, &self.stand_in) {
            (_, Some(_)) => Sender::StandIn,
            (ChannelKind::Batch { .. }, None) => Sender::Batch(self.batch_http(model, BATCH_TIMEOUT)?),
            (ChannelKind::Spool { path, format, from }, None) => {
                let (path, format, from) = (path.clone(), *format, from.clone().unwrap_or_default());
                let opened =
                    tokio::task::spawn_blocking(move || super::spool::Spool::open(path.as_ref(), format, &from))
                        .await
                        .map_err(|error| Error::Campaign(error.to_string()))?;
                Sender::Spool(opened.map_err(|error| Error::Campaign(format!("channel `{channel}`: {error}")))?)
            }
            (ChannelKind::Email { relay_secret, from, connections, .. }, None) => {
                let relay = self.secrets.secret(relay_secret).ok_or_else(|| Error::MissingSecret {
                    name: relay_secret.clone(),
                    purpose: format!("the SMTP relay of channel `{channel}`"),
                })?;
                let pool = super::smtp::SmtpPool::connect(
                    &relay,
                    from.as_deref(),
                    *connections as usize,
                    (*self.outbound).clone(),
                )
                .map_err(|error| Error::Campaign(format!("channel `{channel}`: {error}")))?;
                Sender::Email(pool)
            }
            (other, None) => {
                return Err(Error::Campaign(format!(
                    "channel `{channel}` is a {} channel, which carries no campaign",
                    other.name()
                )));
            }
        };
        Ok(Arc::new(Campaign { renderer, channel: channel.clone(), sender }))
    }

    /// A drill's stand-in takes the messages, as a channel would have.
    fn hand_over(&self, job: &BatchJob<'_>, channel: &str, messages: &[Message]) -> Answer {
        let Some(stand_in) = &self.stand_in else {
            return Answer::Failed { error: "no stand-in".into(), class: FailureClass::Local };
        };
        let mut rejected = Vec::new();
        for message in messages {
            let captured = Captured {
                at: job.now,
                incident: job.incident.id.clone(),
                audience: format!("campaign {}/{}", job.phase, job.step),
                occasion: format!("campaign batch {}", job.number),
                channel: channel.to_string(),
                kind: "campaign",
                to: vec![message.to.clone()],
                from: None,
                subject: Some(message.subject.clone()),
                text: Some(message.text.clone()),
                html: message.html.clone(),
                body: None,
            };
            if let Err(reason) = stand_in.deliver(captured) {
                rejected.push((message.id.clone(), reason));
            }
        }
        Answer::Accepted { rejected }
    }
}

/// Each recipient's offer code, in order: derived from the secret key, or read from a field
/// (empty when the recipient has none).
pub fn offer_codes(
    offer: &OfferCode,
    secrets: &dyn crate::actions::SecretSource,
    campaign: &str,
    recipients: &[Recipient],
) -> Result<Vec<String>, String> {
    match offer {
        OfferCode::Derived { secret, length } => {
            let key = secrets
                .secret(secret)
                .ok_or_else(|| format!("secret `{secret}` has no value (needed for the campaign's offer codes)"))?;
            let deriver = code::Deriver::new(key.as_bytes(), *length as usize)
                .map_err(|error| format!("offer codes from secret `{secret}`: {error}"))?;
            Ok(recipients.iter().map(|r| deriver.derive(campaign, &r.id)).collect())
        }
        OfferCode::Field(field) => Ok(recipients
            .iter()
            .map(|r| match r.fields.get(field) {
                Some(serde_json::Value::String(code)) => code.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            })
            .collect()),
    }
}

/// Each recipient's message (or why it could not be rendered) with its digest.
fn render(
    renderer: &Renderer,
    recipients: &[Recipient],
    codes: Option<Vec<String>>,
    subject: &str,
) -> Vec<(Result<Message, String>, Hash)> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // Each message's digest is taken on the thread that rendered it, while it is in its cache.
    renderer.render_batch_then(recipients, codes.as_deref(), cores, |recipient, rendered| match rendered {
        Ok(rendered) => {
            let digest = merkle::message_digest(&recipient.address, subject, &rendered.text, rendered.html.as_deref());
            let message = Message {
                id: recipient.id.clone(),
                to: recipient.address.clone(),
                subject: subject.to_string(),
                text: rendered.text,
                html: rendered.html,
            };
            (Ok(message), digest)
        }
        Err(error) => {
            let digest = merkle::message_digest(&recipient.address, subject, "", None);
            (Err(format!("not rendered: {error}")), digest)
        }
    })
}

/// One leaf per recipient: sent, refused by the channel, or not rendered.
fn leaves(job: &BatchJob<'_>, rendered: Vec<(Result<(), String>, Hash)>, answer: Answer) -> BatchSent {
    let refused: HashMap<String, String> = match &answer {
        Answer::Accepted { rejected } => rejected.iter().cloned().collect(),
        Answer::Failed { .. } => HashMap::new(),
    };
    let mut not_rendered = Vec::new();
    let leaves = job
        .recipients
        .iter()
        .zip(rendered)
        .map(|(recipient, (message, digest))| {
            let outcome = match message {
                Err(reason) => {
                    not_rendered.push((recipient.id.clone(), reason.clone()));
                    LeafOutcome::Failed(reason)
                }
                Ok(_) => match refused.get(&recipient.id) {
                    Some(reason) => LeafOutcome::Rejected(reason.clone()),
                    None => LeafOutcome::Sent,
                },
            };
            Leaf { id: recipient.id.clone(), digest, outcome, at: job.now }
        })
        .collect();
    let answer = match answer {
        Answer::Accepted { mut rejected } => {
            rejected.extend(not_rendered);
            Answer::Accepted { rejected }
        }
        failed => failed,
    };
    BatchSent { answer, leaves }
}

/// The whole batch failed before anything was sent: every leaf as it would have been.
fn failed(job: &BatchJob<'_>, error: String) -> BatchSent {
    let leaves = job
        .recipients
        .iter()
        .map(|r| Leaf {
            id: r.id.clone(),
            digest: merkle::message_digest(&r.address, "", "", None),
            outcome: LeafOutcome::Sent,
            at: job.now,
        })
        .collect();
    BatchSent { answer: Answer::Failed { error, class: FailureClass::Local }, leaves }
}
