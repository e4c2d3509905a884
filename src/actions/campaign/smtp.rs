//! Email for campaigns: a pool of SMTP connections to one relay, each opened by phasegate with
//! `TCP_NODELAY` set before lettre gets it (`email::open`, as a status update's email is, so the
//! relay URL, the outbound policy, STARTTLS and the login follow the same rules), through which a
//! batch's messages go out concurrently, one SMTP transaction each.
//!
//! Each message is built as a status update's email is (`email::compose`): `To` the recipient's
//! address, text and HTML as `multipart/alternative`, and a `Message-ID` derived from the batch's
//! idempotency key and the recipient's id, so a batch sent again repeats the same Message-IDs.
//!
//! What a batch's answer says: a message the relay refused for good (a 5xx reply) is rejected,
//! with the relay's reply and its code, and the connection goes on with the next message (`RSET`).
//! A message that failed for a reason that may pass (a 4xx reply, a dropped connection, no answer
//! in time) is tried again, up to [`ATTEMPTS`] times in all with a short backoff, on a fresh
//! connection, then rejected with the last reason. A message the relay accepted (its final `250`
//! read) is never sent again by the pool. One whose end was written but whose answer never came
//! may have been taken: it is sent again, with the same `Message-ID`, which is how mail systems
//! recognise a repeat. When nothing of the batch was accepted and something failed for a reason
//! that may pass (the relay unreachable above all), the answer is [`Answer::Failed`]: the whole
//! batch is safe to send again.
//!
//! Connections are opened when a batch needs them, at most `connections` at once across every
//! batch in flight, and kept between batches for a short while.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use tokio::sync::Semaphore;

use super::{Answer, Batch, Message};
use crate::actions::DELIVERY_TIMEOUT;
use crate::actions::email::{self, Letter, Relay};
use crate::actions::outbound::Policy;

/// How many times in all a message that failed for a reason that may pass is tried.
pub const ATTEMPTS: u32 = 4;

/// The wait before a message's second attempt, doubled for each later one.
const BACKOFF: Duration = Duration::from_millis(50);

/// How many times in a row a worker tries to open a connection before it gives up.
const OPENS: u32 = 3;

/// How long an idle connection is kept for the next batch: well under the idle timeouts of
/// relays (Postfix: 300 s), so a kept connection is seldom found closed.
const IDLE_LIMIT: Duration = Duration::from_secs(20);

/// Why a pool cannot be made. Nothing is connected yet, so none of these is about the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the campaign's SMTP relay URL is not one: {0}")]
    Relay(String),
    #[error("the campaign's sender `{0}` is not an email address")]
    From(String),
    #[error("a pool of SMTP connections needs at least one connection")]
    NoConnections,
}

/// Connections to one relay, shared by the batches sent through it.
pub struct SmtpPool {
    shared: Arc<Shared>,
}

struct Shared {
    relay: Relay,
    policy: Policy,
    from: Option<String>,
    /// One permit per connection in use: at most `connections` at once.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    connections: usize,
}

impl SmtpPool {
    /// A pool of up to `connections` connections to `relay` (a relay URL as an email channel's
    /// secret has it: `smtp://` or `smtps://`, with the login if any), sending from `from` (else
    /// [`email::DEFAULT_FROM`]), its connections held to `policy`. Opens nothing yet: the first
    /// batch does. The error never quotes the URL, a secret.
    pub fn connect(relay: &str, from: Option<&str>, connections: usize, policy: Policy) -> Result<SmtpPool, Error> {
        let relay = Relay::parse(relay).map_err(Error::Relay)?;
        if let Some(from) = from {
            from.parse::<Mailbox>().map_err(|_| Error::From(from.to_string()))?;
        }
        if connections == 0 {
            return Err(Error::NoConnections);
        }
        let shared = Shared {
            relay,
            policy,
            from: from.map(str::to_string),
            permits: Arc::new(Semaphore::new(connections)),
            idle: Mutex::new(Vec::new()),
            connections,
        };
        Ok(SmtpPool { shared: Arc::new(shared) })
    }

    /// The relay, `host:port`, for messages.
    pub fn target(&self) -> String {
        self.shared.relay.target()
    }

    /// Sends the batch's messages over the pool's connections, concurrently, and says which
    /// were refused (see the module's documentation).
    pub async fn send(&self, batch: Batch<'_>) -> Answer {
        if batch.messages.is_empty() {
            return Answer::Accepted { rejected: Vec::new() };
        }
        let work = Arc::new(Work {
            messages: batch.messages.to_vec(),
            key: batch.idempotency_key(),
            date: Utc::now(),
            queue: Mutex::new(
                (0..batch.messages.len()).map(|index| Pending { index, attempts: 0, at: None }).collect(),
            ),
            accepted: AtomicUsize::new(0),
            gave_up: AtomicUsize::new(0),
            rejected: Mutex::new(Vec::new()),
            last_trouble: Mutex::new(None),
        });
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.shared.connections.min(batch.messages.len()) {
            workers.spawn(worker(Arc::clone(&self.shared), Arc::clone(&work)));
        }
        while let Some(joined) = workers.join_next().await {
            if let Err(error) = joined
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        work.answer(&self.shared.relay.target())
    }
}

/// A message waiting to be sent: its index in the batch, how many attempts it had, and when
/// the next may start.
struct Pending {
    index: usize,
    attempts: u32,
    at: Option<Instant>,
}

/// One batch on its way.
struct Work {
    messages: Vec<Message>,
    key: String,
    date: DateTime<Utc>,
    queue: Mutex<VecDeque<Pending>>,
    accepted: AtomicUsize,
    /// Messages rejected after their last attempt failed for a reason that may pass.
    gave_up: AtomicUsize,
    rejected: Mutex<Vec<(usize, String)>>,
    /// The last failure that may pass, scrubbed: what a [`Answer::Failed`] says.
    last_trouble: Mutex<Option<String>>,
}

impl Work {
    fn next(&self) -> Option<Pending> {
        self.queue.lock().expect("the queue's lock").pop_front()
    }

    fn reject(&self, index: usize, reason: String) {
        self.rejected.lock().expect("the rejects' lock").push((index, reason));
    }

    fn trouble(&self, reason: &str) {
        *self.last_trouble.lock().expect("the trouble's lock") = Some(reason.to_string());
    }

    /// After a failure that may pass: the message waits its backoff, or is rejected after its
    /// last attempt.
    fn again(&self, mut pending: Pending, reason: String) {
        self.trouble(&reason);
        pending.attempts += 1;
        if pending.attempts >= ATTEMPTS {
            self.gave_up.fetch_add(1, Ordering::Relaxed);
            self.reject(pending.index, format!("{reason} ({ATTEMPTS} attempts)"));
        } else {
            pending.at = Some(Instant::now() + BACKOFF * 2u32.pow(pending.attempts - 1));
            self.queue.lock().expect("the queue's lock").push_back(pending);
        }
    }

    fn answer(&self, target: &str) -> Answer {
        let left: Vec<Pending> = self.queue.lock().expect("the queue's lock").drain(..).collect();
        let trouble = self.last_trouble.lock().expect("the trouble's lock").clone();
        let trouble = trouble.unwrap_or_else(|| format!("relay `{target}` could not be reached"));
        if self.accepted.load(Ordering::Relaxed) == 0 && (!left.is_empty() || self.gave_up.load(Ordering::Relaxed) > 0)
        {
            return Answer::Failed { error: format!("no message of batch `{}` was accepted: {trouble}", self.key) };
        }
        let mut rejected = std::mem::take(&mut *self.rejected.lock().expect("the rejects' lock"));
        rejected.extend(left.iter().map(|pending| (pending.index, format!("not sent: {trouble}"))));
        rejected.sort_by_key(|(index, _)| *index);
        let rejected = rejected.into_iter().map(|(index, reason)| (self.messages[index].id.clone(), reason)).collect();
        Answer::Accepted { rejected }
    }
}

/// How one transaction went wrong.
enum Trouble {
    /// Refused for good (5xx): the connection goes on after `RSET`.
    Refused(String),
    /// May pass (4xx, the connection lost, no answer in time): the connection is dropped.
    Again(String),
}

/// Takes messages from the batch's queue and sends them over one connection at a time until the
/// queue is empty, or until it cannot open a connection [`OPENS`] times in a row.
async fn worker(shared: Arc<Shared>, work: Arc<Work>) {
    let Ok(_permit) = Arc::clone(&shared.permits).acquire_owned().await else { return };
    let mut connection: Option<AsyncSmtpConnection> = None;
    let mut failed_opens = 0;
    while let Some(pending) = work.next() {
        if let Some(at) = pending.at {
            tokio::time::sleep_until(at.into()).await;
        }
        let letter = match letter(&shared, &work, &work.messages[pending.index]) {
            Ok(letter) => letter,
            Err(reason) => {
                work.reject(pending.index, reason);
                continue;
            }
        };
        let mut open = match connection.take() {
            Some(open) => open,
            None => match shared.connection().await {
                Ok(open) => {
                    failed_opens = 0;
                    open
                }
                Err(reason) => {
                    // Not the message's fault: it goes back first in line, its attempts unspent.
                    work.trouble(&reason);
                    work.queue.lock().expect("the queue's lock").push_front(pending);
                    failed_opens += 1;
                    if failed_opens >= OPENS {
                        return;
                    }
                    tokio::time::sleep(BACKOFF * 2u32.pow(failed_opens - 1)).await;
                    continue;
                }
            },
        };
        let target = shared.relay.target();
        match tokio::time::timeout(DELIVERY_TIMEOUT, transact(&mut open, &letter)).await {
            Ok(Ok(())) => {
                work.accepted.fetch_add(1, Ordering::Relaxed);
                connection = Some(open);
            }
            Ok(Err(Trouble::Refused(reason))) => {
                work.reject(pending.index, format!("relay `{target}` refused it: {}", shared.scrub(&reason)));
                if matches!(tokio::time::timeout(DELIVERY_TIMEOUT, open.command(Rset)).await, Ok(Ok(_))) {
                    connection = Some(open);
                }
            }
            Ok(Err(Trouble::Again(reason))) => {
                work.again(pending, format!("relay `{target}`: {}", shared.scrub(&reason)));
            }
            Err(_) => {
                let reason = format!("relay `{target}`: no answer within {}s", DELIVERY_TIMEOUT.as_secs());
                work.again(pending, reason);
            }
        }
    }
    if let Some(open) = connection {
        shared.keep(open);
    }
}

/// The message as the relay gets it: `To` the recipient, its `Message-ID` derived from the
/// batch's key and the recipient's id.
fn letter(shared: &Shared, work: &Work, message: &Message) -> Result<Letter, String> {
    email::compose(email::Draft {
        scope: &message.id,
        to: std::slice::from_ref(&message.to),
        from: shared.from.as_deref(),
        subject: message.subject.clone(),
        text: Some(message.text.clone()),
        html: message.html.clone(),
        key: &work.key,
        date: work.date,
    })
}

/// One SMTP transaction: `MAIL FROM`, `RCPT TO`, `DATA`, the message. lettre's own `send` would
/// close the connection on any refusal; a refused recipient should cost only an `RSET`.
async fn transact(connection: &mut AsyncSmtpConnection, letter: &Letter) -> Result<(), Trouble> {
    let classify = |error: lettre::transport::smtp::Error| {
        if error.is_permanent() { Trouble::Refused(error.to_string()) } else { Trouble::Again(error.to_string()) }
    };
    let envelope = &letter.envelope;
    let mut parameters = Vec::new();
    if envelope.from().into_iter().chain(envelope.to()).any(|address| !AsRef::<str>::as_ref(address).is_ascii()) {
        if !connection.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Trouble::Refused("the relay takes no address that is not ASCII (no SMTPUTF8)".into()));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !letter.bytes.is_ascii() {
        if !connection.server_info().supports_feature(Extension::EightBitMime) {
            return Err(Trouble::Refused("the relay takes no message that is not ASCII (no 8BITMIME)".into()));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    connection.command(Mail::new(envelope.from().cloned(), parameters)).await.map_err(classify)?;
    for to in envelope.to() {
        connection.command(Rcpt::new(to.clone(), Vec::new())).await.map_err(classify)?;
    }
    connection.command(Data).await.map_err(classify)?;
    connection.message(&letter.bytes).await.map_err(classify)?;
    Ok(())
}

impl Shared {
    /// A kept connection that has not idled too long, else a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, String> {
        loop {
            let kept = self.idle.lock().expect("the idle connections' lock").pop();
            match kept {
                Some((connection, since)) if since.elapsed() < IDLE_LIMIT => return Ok(connection),
                Some(_) => continue,
                None => break,
            }
        }
        match tokio::time::timeout(DELIVERY_TIMEOUT, email::open(&self.policy, &self.relay)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(failure)) => Err(failure.scrubbed(|answer| self.scrub(answer))),
            Err(_) => Err(format!(
                "relay `{}`: no connection ready within {}s",
                self.relay.target(),
                DELIVERY_TIMEOUT.as_secs()
            )),
        }
    }

    fn keep(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().expect("the idle connections' lock");
        if idle.len() < self.connections {
            idle.push((connection, Instant::now()));
        }
    }

    /// `text` (what the relay answered) without the relay's user or password.
    fn scrub(&self, text: &str) -> String {
        self.relay
            .credentials()
            .filter(|part| !part.is_empty())
            .fold(text.to_string(), |text, part| text.replace(part, "[redacted]"))
    }
}
