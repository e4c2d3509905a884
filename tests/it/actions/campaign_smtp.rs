//! Campaign email through the pool of SMTP connections (`actions::campaign::smtp`): a batch
//! arrives whole at a real SMTP server (`crate::smtp`, aiosmtpd), each message once, with the
//! `Message-ID` derived from the batch's key and the recipient, the same when the batch is sent
//! again; and against a relay scripted here on a tokio listener, which counts its connections
//! and can refuse a recipient, delay one for ever, or drop every connection after a few messages:
//! only the refused recipient is rejected, nothing accepted is sent twice, nothing is lost, and a
//! relay that cannot be reached gives a failed batch. The scripted relay's cases run twice: with
//! PIPELINING offered (the pool sends a message's end and the next envelope in one write) and
//! without (the pool must wait for each answer, which the relay checks).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use phasegate::actions::campaign::smtp::{ATTEMPTS, Error, SmtpPool};
use phasegate::actions::campaign::{Answer, Batch, Message};
use phasegate::actions::outbound::Policy;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::loopback;
use crate::smtp::{Options, Sink};

const FROM: &str = "Harbour Retail <care@harbour.example>";
const CAMPAIGN: &str = "inc-7/notify/members";

/// `count` messages, recipient `m{N}` at `member{N}@members.example`, text and HTML.
fn messages(count: usize) -> Vec<Message> {
    (1..=count)
        .map(|n| Message {
            id: format!("m{n}"),
            to: format!("member{n}@members.example"),
            subject: format!("Your account, member {n}"),
            text: format!("Dear member {n}, here is what happened."),
            html: Some(format!("<p>Dear member {n}, here is what happened.</p>")),
        })
        .collect()
}

/// The Message-ID the design promises, computed here from its rule: the first 32 hex digits of
/// SHA-256 over `{campaign}/{number}`, a newline and the recipient's id, at the sender's domain.
fn expected_message_id(number: u32, id: &str) -> String {
    let hash = hex::encode(Sha256::digest(format!("{CAMPAIGN}/{number}\n{id}")));
    format!("<{}@harbour.example>", &hash[..32])
}

fn pool(url: &str, connections: usize) -> SmtpPool {
    SmtpPool::connect(url, Some(FROM), connections, loopback()).expect("a pool")
}

#[tokio::test]
async fn a_batch_of_50_over_4_connections_arrives_whole_each_once_with_its_message_id() {
    let Some(sink) = Sink::start("a_batch_of_50_over_4_connections_arrives_whole_each_once_with_its_message_id") else {
        return;
    };
    let messages = messages(50);
    let pool = pool(&sink.url(""), 4);
    let batch = Batch { campaign: CAMPAIGN, number: 3, messages: &messages };
    assert_eq!(pool.send(batch).await, Answer::Accepted { rejected: vec![] });
    let received = sink.received();
    assert_eq!(received.len(), 50);
    let mut recipients: Vec<&str> = received.iter().map(|mail| mail.rcpt_tos[0].as_str()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 50, "each recipient once");
    for mail in &received {
        assert_eq!(mail.rcpt_tos.len(), 1);
        let n: usize =
            mail.rcpt_tos[0].strip_prefix("member").unwrap().strip_suffix("@members.example").unwrap().parse().unwrap();
        assert_eq!(mail.mail_from, "care@harbour.example");
        assert_eq!(mail.header("To"), Some(mail.rcpt_tos[0].as_str()));
        assert_eq!(mail.header("Subject"), Some(format!("Your account, member {n}").as_str()));
        assert_eq!(mail.header("Message-ID"), Some(expected_message_id(3, &format!("m{n}")).as_str()));
        assert_eq!(
            mail.part("text/plain").map(str::trim),
            Some(format!("Dear member {n}, here is what happened.").as_str())
        );
        assert_eq!(
            mail.part("text/html").map(str::trim),
            Some(format!("<p>Dear member {n}, here is what happened.</p>").as_str())
        );
    }

    // Sent again (after a crash, say), the batch repeats the same Message-IDs.
    assert_eq!(pool.send(batch).await, Answer::Accepted { rejected: vec![] });
    let ids = |mails: &[crate::smtp::Mail]| {
        let mut ids: Vec<String> = mails.iter().map(|mail| mail.header("Message-ID").unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    let received = sink.received();
    assert_eq!(ids(&received[50..]), ids(&received[..50]));
}

#[tokio::test]
async fn pipelined_into_a_real_server_every_message_arrives_whole_with_its_dots() {
    let test = "pipelined_into_a_real_server_every_message_arrives_whole_with_its_dots";
    let Some(sink) = Sink::with(test, Options { pipelining: true, ..Options::default() }) else { return };
    let mut messages = messages(30);
    // Lines that start with a dot, a lone dot among them, which only dot-stuffing carries.
    for message in &mut messages {
        message.text = format!(".{}\n.\n..two dots\nthe end\n.", message.id);
        message.html = None;
    }
    let pool = pool(&sink.url(""), 3);
    let batch = Batch { campaign: CAMPAIGN, number: 5, messages: &messages };
    assert_eq!(pool.send(batch).await, Answer::Accepted { rejected: vec![] });
    let received = sink.received();
    assert_eq!(received.len(), 30);
    let mut ids: Vec<String> = received
        .iter()
        .map(|mail| {
            let id = mail.header("Message-ID").unwrap().to_string();
            let n = mail.rcpt_tos[0].strip_prefix("member").unwrap().strip_suffix("@members.example").unwrap();
            assert_eq!(id, expected_message_id(5, &format!("m{n}")));
            let text = mail.part("text/plain").unwrap().replace("\r\n", "\n");
            assert_eq!(text.trim_end(), format!(".m{n}\n.\n..two dots\nthe end\n."));
            id
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "each message once");
}

/// What the scripted relay does.
#[derive(Clone, Default)]
struct Script {
    /// Answered 550 at `RCPT TO`.
    refuse: Option<&'static str>,
    /// Answered 451 at `RCPT TO`, every time.
    delay: Option<&'static str>,
    /// Each connection takes this many messages, then closes when the next one's end arrives,
    /// without answering or keeping it.
    drop_after: Option<usize>,
    /// Offer PIPELINING (RFC 2920) in the `EHLO` answer.
    pipelining: bool,
}

/// What the scripted relay saw.
#[derive(Default)]
struct Seen {
    /// The recipient of each message it accepted, in order.
    accepted: Vec<String>,
    /// Every `RCPT TO` address, refused or not.
    rcpt: Vec<String>,
    connections: usize,
    open: usize,
    most_open: usize,
    /// The Message-ID header of each message accepted.
    message_ids: Vec<String>,
    /// `MAIL FROM` commands seen.
    mails: usize,
    /// `MAIL FROM` commands that arrived with the rest of their envelope (`RCPT TO`, `DATA`)
    /// already behind them: sent before their answers were read.
    pipelined_mails: usize,
    /// Commands that arrived before the answer to the one before them was written, from a
    /// client that was not offered PIPELINING: a breach of RFC 2920.
    unasked_pipelining: usize,
}

impl Seen {
    /// The pool pipelined every envelope when the relay offered PIPELINING (so the test did
    /// exercise it), and never sent a command before the last one's answer when it did not.
    fn spoke_as_offered(&self, pipelining: bool) {
        assert_eq!(self.unasked_pipelining, 0, "commands sent ahead of their answers to a relay without PIPELINING");
        assert!(self.mails > 0);
        let expected = if pipelining { self.mails } else { 0 };
        assert_eq!(self.pipelined_mails, expected, "of {} envelopes, pipelined", self.mails);
    }
}

struct ScriptedRelay {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl ScriptedRelay {
    async fn start(script: Script) -> ScriptedRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, seen) = (script.clone(), Arc::clone(&shared));
                {
                    let mut seen = seen.lock().unwrap();
                    seen.connections += 1;
                    seen.open += 1;
                    seen.most_open = seen.most_open.max(seen.open);
                }
                tokio::spawn(async move {
                    let _ = converse(stream, &script, &seen).await;
                    seen.lock().unwrap().open -= 1;
                });
            }
        });
        ScriptedRelay { url: format!("smtp://{address}"), seen }
    }
}

/// One SMTP session, as far as lettre and the pool need it.
async fn converse(stream: tokio::net::TcpStream, script: &Script, seen: &Mutex<Seen>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 relay.test ESMTP\r\n").await?;
    let mut taken = 0;
    let mut recipient = String::new();
    // Whether a transaction is open (`MAIL FROM` taken, no `RSET` or end since).
    let mut mail = false;
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let ahead = lines.buffer();
        if !ahead.is_empty() && !script.pipelining {
            seen.lock().unwrap().unasked_pipelining += 1;
        }
        if command.starts_with("MAIL FROM") {
            let whole = ahead.windows(6).any(|window| window.eq_ignore_ascii_case(b"DATA\r\n"));
            let mut seen = seen.lock().unwrap();
            seen.mails += 1;
            seen.pipelined_mails += usize::from(whole);
        }
        let answer: String = if command.starts_with("EHLO") {
            let pipelining = if script.pipelining { "250-PIPELINING\r\n" } else { "" };
            format!("250-relay.test\r\n{pipelining}250 8BITMIME\r\n")
        } else if command.starts_with("MAIL FROM") || command == "NOOP" {
            mail = true;
            "250 2.0.0 OK\r\n".into()
        } else if command == "RSET" {
            mail = false;
            recipient.clear();
            "250 2.0.0 OK\r\n".into()
        } else if command == "DATA" && !mail {
            "503 5.5.1 MAIL first\r\n".into()
        } else if command == "DATA" && recipient.is_empty() {
            "554 5.5.1 no valid recipients\r\n".into()
        } else if command.starts_with("RCPT TO") {
            let address = line.trim_end()[8..].trim_matches(|c| c == '<' || c == '>' || c == ':').to_string();
            seen.lock().unwrap().rcpt.push(address.clone());
            if script.refuse == Some(address.as_str()) {
                "550 5.1.1 no such mailbox here\r\n".into()
            } else if script.delay == Some(address.as_str()) {
                "451 4.3.0 try again later\r\n".into()
            } else {
                recipient = address;
                "250 2.1.5 OK\r\n".into()
            }
        } else if command == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                let mut line = String::new();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            if script.drop_after.is_some_and(|limit| taken >= limit) {
                return Ok(());
            }
            taken += 1;
            mail = false;
            let message_id =
                data.lines().find_map(|line| line.strip_prefix("Message-ID: ")).unwrap_or_default().to_string();
            let mut seen = seen.lock().unwrap();
            seen.accepted.push(std::mem::take(&mut recipient));
            seen.message_ids.push(message_id);
            "250 2.0.0 kept\r\n".into()
        } else if command == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 not implemented\r\n".into()
        };
        write.write_all(answer.as_bytes()).await?;
    }
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn all_recipients(count: usize) -> Vec<String> {
    sorted((1..=count).map(|n| format!("member{n}@members.example")).collect())
}

#[tokio::test]
async fn the_pool_holds_to_its_number_of_connections_and_keeps_them_between_batches() {
    for pipelining in [false, true] {
        let relay = ScriptedRelay::start(Script { pipelining, ..Script::default() }).await;
        let messages = messages(50);
        let pool = pool(&relay.url, 4);
        for number in [1, 2] {
            let answer = pool.send(Batch { campaign: CAMPAIGN, number, messages: &messages }).await;
            assert_eq!(answer, Answer::Accepted { rejected: vec![] });
        }
        let seen = relay.seen.lock().unwrap();
        assert_eq!(seen.accepted.len(), 100);
        assert!(
            seen.most_open <= 4 && seen.connections <= 4,
            "{} open at most, {} in all",
            seen.most_open,
            seen.connections
        );
        let expected: Vec<String> =
            (1..=2).flat_map(|number| (1..=50).map(move |n| expected_message_id(number, &format!("m{n}")))).collect();
        assert_eq!(sorted(seen.message_ids.clone()), sorted(expected));
        seen.spoke_as_offered(pipelining);
    }
}

#[tokio::test]
async fn a_550_for_one_recipient_rejects_only_that_one() {
    for pipelining in [false, true] {
        let relay =
            ScriptedRelay::start(Script { refuse: Some("member7@members.example"), pipelining, ..Script::default() })
                .await;
        let messages = messages(50);
        let answer = pool(&relay.url, 4).send(Batch { campaign: CAMPAIGN, number: 1, messages: &messages }).await;
        let Answer::Accepted { rejected } = answer else { panic!("accepted with one refused: {answer:?}") };
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].0, "m7");
        assert!(rejected[0].1.contains("550") && rejected[0].1.contains("no such mailbox here"), "{}", rejected[0].1);
        let seen = relay.seen.lock().unwrap();
        let mut expected = all_recipients(50);
        expected.retain(|address| address != "member7@members.example");
        assert_eq!(sorted(seen.accepted.clone()), expected);
        // Refused for good: asked once, and the connection went on (RSET), no new one for it.
        assert_eq!(seen.rcpt.iter().filter(|address| *address == "member7@members.example").count(), 1);
        assert!(seen.connections <= 4, "{} connections", seen.connections);
        seen.spoke_as_offered(pipelining);
    }
}

#[tokio::test]
async fn a_recipient_delayed_every_time_is_tried_a_few_times_then_rejected_with_the_reason() {
    for pipelining in [false, true] {
        let relay =
            ScriptedRelay::start(Script { delay: Some("member3@members.example"), pipelining, ..Script::default() })
                .await;
        let messages = messages(10);
        let answer = pool(&relay.url, 2).send(Batch { campaign: CAMPAIGN, number: 1, messages: &messages }).await;
        let Answer::Accepted { rejected } = answer else { panic!("accepted with one rejected: {answer:?}") };
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].0, "m3");
        assert!(rejected[0].1.contains("451") && rejected[0].1.contains("try again later"), "{}", rejected[0].1);
        let seen = relay.seen.lock().unwrap();
        assert_eq!(seen.rcpt.iter().filter(|address| *address == "member3@members.example").count(), ATTEMPTS as usize);
        assert_eq!(seen.accepted.len(), 9);
        seen.spoke_as_offered(pipelining);
    }
}

#[tokio::test]
async fn a_relay_that_drops_the_connection_after_a_few_messages_loses_nothing_and_repeats_nothing() {
    for pipelining in [false, true] {
        let relay = ScriptedRelay::start(Script { drop_after: Some(5), pipelining, ..Script::default() }).await;
        let messages = messages(50);
        let answer = pool(&relay.url, 4).send(Batch { campaign: CAMPAIGN, number: 1, messages: &messages }).await;
        assert_eq!(answer, Answer::Accepted { rejected: vec![] });
        let seen = relay.seen.lock().unwrap();
        assert_eq!(sorted(seen.accepted.clone()), all_recipients(50), "each message accepted exactly once");
        assert!(seen.connections >= 10, "5 messages a connection: {} connections", seen.connections);
        seen.spoke_as_offered(pipelining);
    }
}

#[tokio::test]
async fn a_relay_that_cannot_be_reached_fails_the_batch() {
    let address: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let messages = messages(5);
    let batch = Batch { campaign: CAMPAIGN, number: 9, messages: &messages };
    let answer = pool(&format!("smtp://{address}"), 2).send(batch).await;
    let Answer::Failed { error, .. } = answer else { panic!("a failed batch: {answer:?}") };
    assert!(error.contains(&format!("cannot connect to relay `{address}`")), "{error}");
    assert!(error.contains("inc-7/notify/members/9"), "{error}");

    // A relay the outbound policy refuses is not reached either.
    let relay = ScriptedRelay::start(Script::default()).await;
    let refused = SmtpPool::connect(&relay.url, Some(FROM), 2, Policy::default()).unwrap();
    let answer = refused.send(batch).await;
    let Answer::Failed { error, .. } = answer else { panic!("a failed batch: {answer:?}") };
    assert!(error.contains("refused"), "{error}");
    assert_eq!(relay.seen.lock().unwrap().connections, 0);
}

#[test]
fn a_pool_is_refused_a_bad_relay_url_sender_or_size_without_quoting_the_url() {
    let policy = Policy::default;
    let table: &[(&str, Option<&str>, usize, &str)] = &[
        (
            "smtp://user:hunter2@relay.example",
            Some("nobody"),
            2,
            "the campaign's sender `nobody` is not an email address",
        ),
        ("hunter2-not-a-url", None, 2, "the campaign's SMTP relay URL is not one: it is not a URL"),
        ("smtp://relay.example", None, 0, "a pool of SMTP connections needs at least one connection"),
    ];
    for (url, from, connections, expected) in table {
        let error: Error = SmtpPool::connect(url, *from, *connections, policy()).err().expect("refused");
        let message = error.to_string();
        assert!(message.starts_with(expected), "{url}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
