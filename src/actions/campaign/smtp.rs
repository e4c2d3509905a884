//! Email for campaigns: a pool of SMTP connections to one relay, each opened by phasegate with
//! `TCP_NODELAY` set before lettre gets it (`email::open_pipelined`, as a status update's email
//! is, so the relay URL, the outbound policy, STARTTLS and the login follow the same rules),
//! through which a batch's messages go out concurrently, one SMTP transaction each.
//!
//! lettre opens the connection (greeting, `EHLO`, TLS, login); the transactions are spoken here,
//! through lettre's connection (so over its TLS too), because lettre has no SMTP pipelining. When
//! the relay offers `PIPELINING` (RFC 2920), a message costs one write and one round trip: its
//! content, dot-stuffed and with its closing `.`, followed in the same write by the next
//! message's `MAIL FROM`, `RCPT TO` and `DATA`; the answers are read in order (the message's
//! final reply, then one per command), each one for what it answers. A relay that does not offer
//! it is spoken to one command at a time, the content and its end still in one write.
//!
//! Each message is built as a status update's email is (`email::compose`): `To` the recipient's
//! address, text and HTML as `multipart/alternative`, and a `Message-ID` derived from the batch's
//! idempotency key and the recipient's id, so a batch sent again repeats the same Message-IDs.
//!
//! What a batch's answer says: a message the relay refused for good (a 5xx reply, to its
//! envelope or its content) is rejected, with the relay's reply and its code, and the connection
//! goes on with the next message (after `RSET` when the envelope was refused).
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
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use tokio::sync::Semaphore;

use super::{Answer, Batch, FailureClass, Message};
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
    idle: Mutex<Vec<(Session, Instant)>>,
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
    /// The last failure that may pass, scrubbed, and its class: what a [`Answer::Failed`] says.
    last_trouble: Mutex<Option<(FailureClass, String)>>,
}

impl Work {
    /// The next message to send; with `waiting` false, only one whose backoff is over.
    fn next(&self, waiting: bool) -> Option<Pending> {
        let mut queue = self.queue.lock().expect("the queue's lock");
        let ready = |pending: &Pending| pending.at.is_none_or(|at| at <= Instant::now());
        if waiting || queue.front().is_some_and(ready) { queue.pop_front() } else { None }
    }

    /// A message that was not sent goes back first in line, its attempts unspent.
    fn put_back(&self, pending: Pending) {
        self.queue.lock().expect("the queue's lock").push_front(pending);
    }

    fn reject(&self, index: usize, reason: String) {
        self.rejected.lock().expect("the rejects' lock").push((index, reason));
    }

    fn trouble(&self, class: FailureClass, reason: &str) {
        *self.last_trouble.lock().expect("the trouble's lock") = Some((class, reason.to_string()));
    }

    /// After a failure that may pass: the message waits its backoff, or is rejected after its
    /// last attempt.
    fn again(&self, mut pending: Pending, class: FailureClass, reason: String) {
        self.trouble(class, &reason);
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
        let (class, trouble) =
            trouble.unwrap_or_else(|| (FailureClass::Connection, format!("relay `{target}` could not be reached")));
        if self.accepted.load(Ordering::Relaxed) == 0 && (!left.is_empty() || self.gave_up.load(Ordering::Relaxed) > 0)
        {
            return Answer::Failed {
                error: format!("no message of batch `{}` was accepted: {trouble}", self.key),
                class,
            };
        }
        let mut rejected = std::mem::take(&mut *self.rejected.lock().expect("the rejects' lock"));
        rejected.extend(left.iter().map(|pending| (pending.index, format!("not sent: {trouble}"))));
        rejected.sort_by_key(|(index, _)| *index);
        let rejected = rejected.into_iter().map(|(index, reason)| (self.messages[index].id.clone(), reason)).collect();
        Answer::Accepted { rejected }
    }
}

/// What the relay answered to one message's part of a round: its end (the final reply), or its
/// envelope (`MAIL`, `RCPT`, `DATA`: taken when `DATA` got its 354).
enum Reply {
    Taken,
    /// Refused for good (5xx).
    Refused(String),
    /// May pass (4xx): the connection is dropped after the round.
    Again(String),
}

/// A round: what one write (with PIPELINING; else one command at a time) carried and what came of
/// it. A message's end is owed once its `DATA` got 354; the next message's envelope rides in the
/// same write (RFC 2920 lets a message's content open a group), so a message costs one write and
/// one round trip. `None` where nothing was asked; `broken` when the connection failed (or no
/// answer came in time) before every answer was read, which leaves the unanswered parts unknown.
#[derive(Default)]
struct Round {
    end: Option<Reply>,
    envelope: Option<Reply>,
    broken: Option<(FailureClass, String)>,
}

/// A connection ready for mail, and what the worker knows of its state.
struct Session {
    connection: AsyncSmtpConnection,
    pipelining: bool,
    /// An envelope was refused: a transaction may be open, `RSET` goes first in the next round.
    reset: bool,
}

/// A message whose `DATA` the relay answered 354: its end is owed on this connection.
struct Owed {
    pending: Pending,
    letter: Letter,
}

impl Owed {
    /// The letter's bytes as text: [`envelope_parameters`] refused a letter that is not UTF-8.
    fn text(&self) -> &str {
        std::str::from_utf8(&self.letter.bytes).unwrap_or_default()
    }
}

/// Takes messages from the batch's queue and sends them over one connection at a time until the
/// queue is empty, or until it cannot open a connection [`OPENS`] times in a row.
async fn worker(shared: Arc<Shared>, work: Arc<Work>) {
    let Ok(_permit) = Arc::clone(&shared.permits).acquire_owned().await else { return };
    let target = shared.relay.target();
    let mut session: Option<Session> = None;
    let mut owed: Option<Owed> = None;
    let mut failed_opens = 0;
    loop {
        // The next message, unless one is owed and the next must still wait its backoff: the
        // owed end goes out alone rather than wait with it.
        let next = match work.next(owed.is_none()) {
            Some(pending) => {
                if let Some(at) = pending.at {
                    tokio::time::sleep_until(at.into()).await;
                }
                match letter(&shared, &work, &work.messages[pending.index]) {
                    Ok(letter) => Some(Owed { pending, letter }),
                    Err(reason) => {
                        work.reject(pending.index, reason);
                        continue;
                    }
                }
            }
            None if owed.is_none() => break,
            None => None,
        };
        let mut open = match session.take() {
            Some(open) => open,
            None => match shared.connection().await {
                Ok(open) => {
                    failed_opens = 0;
                    open
                }
                Err((class, reason)) => {
                    // Not the message's fault: it goes back first in line, its attempts unspent
                    // (nothing is owed without a connection).
                    work.trouble(class, &reason);
                    if let Some(next) = next {
                        work.put_back(next.pending);
                    }
                    failed_opens += 1;
                    if failed_opens >= OPENS {
                        return;
                    }
                    tokio::time::sleep(BACKOFF * 2u32.pow(failed_opens - 1)).await;
                    continue;
                }
            },
        };
        // A message the relay cannot take as it stands is refused before anything is written.
        let next = match next {
            Some(next) => match envelope_parameters(&open.connection, &next.letter) {
                Ok(parameters) => Some((next, parameters)),
                Err(reason) => {
                    work.reject(next.pending.index, format!("relay `{target}` refused it: {reason}"));
                    None
                }
            },
            None => None,
        };
        if owed.is_none() && next.is_none() {
            session = Some(open);
            continue;
        }
        let envelope = next.as_ref().map(|(next, parameters)| (&next.letter.envelope, parameters.as_slice()));
        let end = owed.as_ref().map(|owed| owed.text());
        let round = match tokio::time::timeout(DELIVERY_TIMEOUT, round(&mut open, end, envelope)).await {
            Ok(round) => round,
            Err(_) => Round {
                broken: Some((FailureClass::Timeout, format!("no answer within {}s", DELIVERY_TIMEOUT.as_secs()))),
                ..Round::default()
            },
        };
        let mut keep = round.broken.is_none();
        let (broken_class, broken) = match &round.broken {
            Some((class, broken)) => (*class, broken.as_str()),
            None => (FailureClass::Connection, "the connection was lost"),
        };
        if let Some(Owed { pending, .. }) = owed.take() {
            match round.end {
                Some(Reply::Taken) => {
                    work.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Some(Reply::Refused(reason)) => {
                    work.reject(pending.index, format!("relay `{target}` refused it: {}", shared.scrub(&reason)));
                }
                Some(Reply::Again(reason)) => {
                    keep = false;
                    work.again(
                        pending,
                        FailureClass::SmtpReply,
                        format!("relay `{target}`: {}", shared.scrub(&reason)),
                    );
                }
                // Its end was written but no answer read: it may have been taken, and is sent
                // again with the same Message-ID.
                None => work.again(pending, broken_class, format!("relay `{target}`: {}", shared.scrub(broken))),
            }
        }
        if let Some((next, _)) = next {
            match round.envelope {
                Some(Reply::Taken) => owed = Some(next),
                Some(Reply::Refused(reason)) => {
                    open.reset = true;
                    work.reject(next.pending.index, format!("relay `{target}` refused it: {}", shared.scrub(&reason)));
                }
                Some(Reply::Again(reason)) => {
                    keep = false;
                    let reason = format!("relay `{target}`: {}", shared.scrub(&reason));
                    work.again(next.pending, FailureClass::SmtpReply, reason);
                }
                None => work.again(next.pending, broken_class, format!("relay `{target}`: {}", shared.scrub(broken))),
            }
        }
        if keep {
            session = Some(open);
        } else if let Some(owed) = owed.take() {
            // Nothing of its content was written: it goes back with its attempts unspent.
            work.put_back(owed.pending);
        }
    }
    if let Some(open) = session {
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

/// `MAIL FROM`'s parameters for the letter: `SMTPUTF8` for an address that is not ASCII and
/// `BODY=8BITMIME` for a message that is not, or why the relay cannot take it.
fn envelope_parameters(connection: &AsyncSmtpConnection, letter: &Letter) -> Result<Vec<MailParameter>, String> {
    let envelope = &letter.envelope;
    let mut parameters = Vec::new();
    // lettre builds a message from text (`email::compose`), so this holds: the check keeps a
    // message that is not text from going out mangled.
    if std::str::from_utf8(&letter.bytes).is_err() {
        return Err("the message is not UTF-8 text, which the campaign pool sends only".into());
    }
    if envelope.from().into_iter().chain(envelope.to()).any(|address| !AsRef::<str>::as_ref(address).is_ascii()) {
        if !connection.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err("the relay takes no address that is not ASCII (no SMTPUTF8)".into());
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !letter.bytes.is_ascii() {
        if !connection.server_info().supports_feature(Extension::EightBitMime) {
            return Err("the relay takes no message that is not ASCII (no 8BITMIME)".into());
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(parameters)
}

/// One round on the session: the owed message's content and end (`end`), then `RSET` if an
/// envelope was refused before, then the next message's envelope (`MAIL FROM`, `RCPT TO`,
/// `DATA`). With PIPELINING all of it is one write and the answers are read in order; without,
/// each command waits for its answer and the envelope stops at its first refusal. lettre's own
/// `send` would close the connection on any refusal, and its `message` writes the closing `.` in
/// a write of its own.
async fn round(open: &mut Session, end: Option<&str>, envelope: Option<(&Envelope, &[MailParameter])>) -> Round {
    let mut round = Round::default();
    let reset = open.reset && envelope.is_some();
    let mut commands: Vec<String> = Vec::new();
    if let Some((envelope, parameters)) = envelope {
        if reset {
            commands.push(Rset.to_string());
        }
        commands.push(Mail::new(envelope.from().cloned(), parameters.to_vec()).to_string());
        commands.extend(envelope.to().iter().map(|to| Rcpt::new(to.clone(), Vec::new()).to_string()));
        commands.push(Data.to_string());
    }
    let mut answers = Vec::new();
    let mut group = String::new();
    if let Some(end) = end {
        push_content(&mut group, end);
    }
    if open.pipelining {
        commands.iter().for_each(|command| group.push_str(command));
        let result = exchange(&mut open.connection, &group, usize::from(end.is_some()) + commands.len(), &mut answers);
        round.broken = result.await.err();
        let mut read = answers.into_iter();
        if end.is_some() {
            round.end = read.next();
        }
        answers = read.collect();
    } else {
        if end.is_some() {
            let mut read = Vec::new();
            if let Err(reason) = exchange(&mut open.connection, &group, 1, &mut read).await {
                round.broken = Some(reason);
                return round;
            }
            round.end = read.pop();
        }
        for command in &commands {
            if let Err(reason) = exchange(&mut open.connection, command, 1, &mut answers).await {
                round.broken = Some(reason);
                break;
            }
            if !matches!(answers.last(), Some(Reply::Taken)) {
                break;
            }
        }
    }
    if envelope.is_none() {
        return round;
    }
    if reset && !answers.is_empty() {
        match answers.remove(0) {
            Reply::Taken => open.reset = false,
            // Not a refusal of the message: the connection is given up.
            Reply::Refused(reason) | Reply::Again(reason) => {
                round.broken.get_or_insert((FailureClass::SmtpReply, format!("`RSET` was refused: {reason}")));
                return round;
            }
        }
    }
    let asked = commands.len() - usize::from(reset);
    let data_taken = answers.len() == asked && matches!(answers.last(), Some(Reply::Taken));
    round.envelope = match answers.into_iter().find(|answer| !matches!(answer, Reply::Taken)) {
        None if data_taken => Some(Reply::Taken),
        None => None,
        Some(refusal) => {
            // A relay that answers DATA with 354 after refusing the sender or the recipient
            // waits for a message: an empty one (its end alone) ends the transaction, and
            // whatever it answers is not kept.
            if data_taken
                && round.broken.is_none()
                && let Err(reason) = exchange(&mut open.connection, ".\r\n", 1, &mut Vec::new()).await
            {
                round.broken = Some(reason);
            }
            Some(refusal)
        }
    };
    round
}

/// Writes `text` (in one write) and reads `count` answers into `answers`; an error when the
/// connection failed or an answer could not be read (with its class), which leaves the rest
/// unknown.
async fn exchange(
    connection: &mut AsyncSmtpConnection,
    text: &str,
    count: usize,
    answers: &mut Vec<Reply>,
) -> Result<(), (FailureClass, String)> {
    for index in 0..count {
        let answer = if index == 0 { connection.command(text).await } else { connection.read_response().await };
        answers.push(match answer {
            Ok(_) => Reply::Taken,
            Err(error) if error.is_permanent() => Reply::Refused(error.to_string()),
            Err(error) if error.is_transient() => Reply::Again(error.to_string()),
            Err(error) => {
                let class = if error.is_timeout() { FailureClass::Timeout } else { FailureClass::Connection };
                return Err((class, error.to_string()));
            }
        });
    }
    Ok(())
}

/// Appends a message's content as `DATA` sends it, its end included: every line that starts with
/// `.` gets another (RFC 5321 4.5.2), and `.` on a line of its own closes it.
fn push_content(out: &mut String, text: &str) {
    out.reserve(text.len() + text.len() / 256 + 5);
    if text.starts_with('.') {
        out.push('.');
    }
    let mut from = 0;
    for at in memchr::memmem::find_iter(text.as_bytes(), b"\n.") {
        out.push_str(&text[from..=at]);
        out.push('.');
        // The line's own dot goes out with what follows it.
        from = at + 1;
    }
    out.push_str(&text[from..]);
    if !text.is_empty() && !text.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
}

impl Shared {
    /// A kept connection that has not idled too long, else a new one.
    async fn connection(&self) -> Result<Session, (FailureClass, String)> {
        loop {
            let kept = self.idle.lock().expect("the idle connections' lock").pop();
            match kept {
                Some((session, since)) if since.elapsed() < IDLE_LIMIT => return Ok(session),
                Some(_) => continue,
                None => break,
            }
        }
        match tokio::time::timeout(DELIVERY_TIMEOUT, email::open_pipelined(&self.policy, &self.relay)).await {
            Ok(Ok((connection, pipelining))) => Ok(Session { connection, pipelining, reset: false }),
            Ok(Err(failure)) => Err((failure.class, failure.scrubbed(|answer| self.scrub(answer)))),
            Err(_) => Err((
                FailureClass::Timeout,
                format!("relay `{}`: no connection ready within {}s", self.relay.target(), DELIVERY_TIMEOUT.as_secs()),
            )),
        }
    }

    fn keep(&self, session: Session) {
        let mut idle = self.idle.lock().expect("the idle connections' lock");
        if idle.len() < self.connections {
            idle.push((session, Instant::now()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_dot_stuffed_and_closed() {
        // The content, and what `DATA` carries, written by hand.
        let table = [
            ("Subject: x\r\n\r\nhello\r\n", "Subject: x\r\n\r\nhello\r\n.\r\n"),
            (".first\r\n", "..first\r\n.\r\n"),
            ("a\r\n.\r\n..b\r\nc.d\r\n.", "a\r\n..\r\n...b\r\nc.d\r\n..\r\n.\r\n"),
            ("no end", "no end\r\n.\r\n"),
            ("", ".\r\n"),
        ];
        for (text, expected) in table {
            let mut out = String::new();
            push_content(&mut out, text);
            assert_eq!(out, expected, "{text:?}");
        }
    }
}
