//! Email channels: a status update as one message to the channel's fixed recipients, sent through
//! the SMTP relay whose URL is the secret the channel names in `relay_secret`.
//!
//! The relay URL is `smtp://[USER:PASSWORD@]HOST[:PORT]` (STARTTLS; port 587 when none is given)
//! or `smtps://[USER:PASSWORD@]HOST[:PORT]` (TLS from the first byte; port 465), the user and
//! password percent-decoded (`%40` for `@`). Over `smtp://`, STARTTLS is required: a relay that does
//! not offer it is refused before anything is sent, credentials included. The one exception is a
//! relay on this host (`localhost`, `127.0.0.0/8`, `::1` written as the URL's host), which is
//! spoken to in plain text, as a local MTA usually is.
//!
//! The relay is reached like a webhook: its name is resolved here and every address is held to
//! the outbound policy, so a relay on a private or loopback address needs `outbound.allow`, and
//! the connection goes to an address that was checked. phasegate opens the TCP connection itself
//! and sets `TCP_NODELAY` (lettre writes a message's closing `.` in a write of its own, which
//! would otherwise wait for the delayed ACK of the message), then hands it to lettre, for
//! `smtp://` and `smtps://` alike ([`open`], which campaigns' connection pool uses too).
//!
//! A message is built from data alone ([`compose`]): `From` the channel's `from` (else
//! [`DEFAULT_FROM`]), `To` every address of `to`, the subject the caller gives, `Date` the
//! effect's time, a `Message-ID` derived from the effect's idempotency key and the channel (a
//! campaign's message: the batch's key and the recipient's id), so
//! that every attempt of one update is the same message to the recipients' mail programs, and the
//! text and HTML variants as `multipart/alternative` when the template has both (one part
//! otherwise), with a boundary derived the same way: the same update gives the same bytes.
//!
//! Nothing here quotes the relay URL: messages name the relay by host and port only, and the
//! caller scrubs the user and password from whatever the relay answered.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)]
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use reqwest::Url;
use sha2::{Digest, Sha256};

use super::DELIVERY_TIMEOUT;
use super::body::body;
use super::outbound::{Class, Policy, classify};
use crate::campaign::FailureClass;

/// The sender of an email channel that names no `from`. Most relays want a sender in a domain
/// they serve, so a channel used in earnest should name one.
pub const DEFAULT_FROM: &str = "phasegate@localhost";

/// The port of `smtp://` when the URL gives none: message submission, with STARTTLS.
pub const SUBMISSION_PORT: u16 = 587;

/// The port of `smtps://` when the URL gives none: message submission over TLS.
pub const SUBMISSIONS_PORT: u16 = 465;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Tls,
    /// `smtp://` to a relay elsewhere: STARTTLS, required before anything else is said.
    StartTls,
    /// `smtp://` to a relay on this host: plain text.
    Plain,
}

/// Where the relay is, how to protect the connection, and the credentials, read from its URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Relay {
    /// The host as the URL gives it: a name (lowercase) or an address (without brackets).
    pub host: String,
    pub port: u16,
    pub security: Security,
    user: Option<String>,
    password: Option<String>,
}

/// The credentials never show, not even in a test's failure.
impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("credentials", &self.user.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// How a relay URL is written, for messages that refuse one.
const RELAY_FORMS: &str =
    "write `smtp://USER:PASSWORD@HOST:PORT` (STARTTLS) or `smtps://USER:PASSWORD@HOST:PORT` (TLS)";

impl Relay {
    /// Reads a relay URL. The error says what is wrong without quoting any of the text, which is
    /// a secret: a malformed URL may be a password pasted in the wrong place.
    pub fn parse(text: &str) -> Result<Relay, String> {
        let url = Url::parse(text.trim()).map_err(|_| format!("it is not a URL; {RELAY_FORMS}"))?;
        let (security, default_port) = match url.scheme() {
            "smtp" => (Security::StartTls, SUBMISSION_PORT),
            "smtps" => (Security::Tls, SUBMISSIONS_PORT),
            _ => return Err(format!("its scheme is neither `smtp` nor `smtps`; {RELAY_FORMS}")),
        };
        let host = url.host_str().unwrap_or_default();
        let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("it names no host; {RELAY_FORMS}"));
        }
        if url.port() == Some(0) {
            return Err("its port is 0".to_string());
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("it has a path, a query or a fragment, which phasegate does not read; {RELAY_FORMS}"));
        }
        let decoded = |part: &str, what: &str| {
            percent_decoded(part).ok_or_else(|| format!("its {what} is not valid percent-encoded UTF-8"))
        };
        let (user, password) = match (url.username(), url.password()) {
            ("", None) => (None, None),
            ("", Some(_)) => return Err("it has a password but no user".to_string()),
            (_, None) => return Err("it has a user but no password; write `USER:PASSWORD@`".to_string()),
            (user, Some(password)) => (Some(decoded(user, "user")?), Some(decoded(password, "password")?)),
        };
        let security = if security == Security::StartTls && on_this_host(&host) { Security::Plain } else { security };
        Ok(Relay { host, port: url.port().unwrap_or(default_port), security, user, password })
    }

    /// The user and the password, to be scrubbed from whatever comes back.
    pub fn credentials(&self) -> impl Iterator<Item = &str> {
        self.user.iter().chain(self.password.iter()).map(String::as_str)
    }

    /// `host:port` (an IPv6 address in brackets), for messages.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn login(&self) -> Option<Credentials> {
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            _ => None,
        }
    }
}

/// Whether the URL's host is this host: `localhost` or a loopback address.
fn on_this_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(address) => classify(address) == Some(Class::Loopback),
        Err(_) => host == "localhost",
    }
}

/// `text` with `%XX` decoded; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a message is made of, before it is built.
pub struct Draft<'a> {
    /// What sets this message apart from the others of its key: the channel's id for a status
    /// update (one update sent to two channels is two messages), the recipient's id for a
    /// campaign's message.
    pub scope: &'a str,
    pub to: &'a [String],
    pub from: Option<&'a str>,
    pub subject: String,
    /// The plain-text (or Markdown) variant, when the template has one.
    pub text: Option<String>,
    pub html: Option<String>,
    /// The effect's idempotency key: the same for every attempt of one update.
    pub key: &'a str,
    pub date: DateTime<Utc>,
}

/// A message ready to send: who it is from and to, and its bytes.
#[derive(Debug, Clone)]
pub struct Letter {
    pub envelope: Envelope,
    pub message_id: String,
    pub bytes: Vec<u8>,
}

/// Builds the message. Fails only on an address that is not one, or a template with no variant
/// an email can carry; the error names the address, never the relay.
pub fn compose(draft: Draft<'_>) -> Result<Letter, String> {
    let from_text = draft.from.unwrap_or(DEFAULT_FROM);
    let from: Mailbox = from_text.parse().map_err(|_| format!("`from` `{from_text}` is not an email address"))?;
    let hash = hex::encode(Sha256::digest(format!("{}\n{}", draft.key, draft.scope)));
    let message_id = format!("<{}@{}>", &hash[..32], from.email.domain());
    let mut builder = lettre::Message::builder()
        .message_id(Some(message_id.clone()))
        .date(SystemTime::from(draft.date))
        .from(from)
        .subject(draft.subject);
    for address in draft.to {
        let mailbox: Mailbox =
            address.parse().map_err(|_| format!("`to` address `{address}` is not an email address"))?;
        builder = builder.to(mailbox);
    }
    let built = match (draft.text, draft.html) {
        (Some(text), Some(html)) => builder.multipart(
            MultiPart::alternative()
                .boundary(format!("phasegate-{}", &hash[32..56]))
                .singlepart(SinglePart::plain(body(&text)))
                .singlepart(SinglePart::html(body(&html))),
        ),
        (Some(text), None) => builder.singlepart(SinglePart::plain(body(&text))),
        (None, Some(html)) => builder.singlepart(SinglePart::html(body(&html))),
        (None, None) => return Err("the template has no variant an email can carry (`.txt`, `.md` or `.html`)".into()),
    };
    let message = built.map_err(|error| format!("cannot build the message: {error}"))?;
    Ok(Letter { envelope: message.envelope().clone(), message_id, bytes: message.formatted() })
}

/// Why a message was not sent: what failed and where (host and port), in phasegate's words, and
/// what the relay or the network answered, which may quote anything the client sent and so is
/// for the caller to scrub of the credentials. Kept apart so that the scrubbing never touches
/// phasegate's own words (a user called `relay` would otherwise turn every "relay" into a marker).
#[derive(Debug)]
pub struct Failure {
    pub context: String,
    pub answer: Option<String>,
    /// What kind of failure it was, for a campaign's record of its failed attempts.
    pub class: FailureClass,
}

impl Failure {
    pub(crate) fn said(context: String, class: FailureClass) -> Failure {
        Failure { context, answer: None, class }
    }

    pub(crate) fn answered(context: String, answer: impl fmt::Display, class: FailureClass) -> Failure {
        Failure { context, answer: Some(answer.to_string()), class }
    }

    /// A failure of lettre's SMTP client: a reply of the relay's, a timeout, or the connection.
    fn smtp(context: String, error: lettre::transport::smtp::Error) -> Failure {
        let class = if error.is_transient() || error.is_permanent() {
            FailureClass::SmtpReply
        } else if error.is_timeout() {
            FailureClass::Timeout
        } else {
            FailureClass::Connection
        };
        Failure::answered(context, error, class)
    }

    /// The message, with `scrub` applied to the answer.
    pub fn scrubbed(&self, scrub: impl Fn(&str) -> String) -> String {
        match &self.answer {
            Some(answer) => format!("{}: {}", self.context, scrub(answer)),
            None => self.context.clone(),
        }
    }
}

/// Sends `letter` through `relay`, within [`DELIVERY_TIMEOUT`].
pub async fn send(policy: &Policy, relay: &Relay, letter: &Letter) -> Result<(), Failure> {
    let target = relay.target();
    match tokio::time::timeout(DELIVERY_TIMEOUT, exchange(policy, relay, letter)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::said(
            format!("relay `{target}`: no complete answer within {}s", DELIVERY_TIMEOUT.as_secs()),
            FailureClass::Timeout,
        )),
    }
}

async fn exchange(policy: &Policy, relay: &Relay, letter: &Letter) -> Result<(), Failure> {
    let mut connection = open(policy, relay).await?;
    let target = relay.target();
    connection
        .send(&letter.envelope, &letter.bytes)
        .await
        .map_err(|error| Failure::smtp(format!("relay `{target}`"), error))?;
    // The relay has taken the message; a failed goodbye changes nothing.
    let _ = connection.quit().await;
    Ok(())
}

/// A connection to `relay` ready for mail: its addresses checked against the policy, the TCP
/// connection opened here with `TCP_NODELAY` set ([`connect`]) whatever the protocol, TLS from
/// the first byte (`smtps://`) or STARTTLS (required of a relay off this host), and the login
/// when the URL has one. No timeout of its own: the caller bounds it.
pub(crate) async fn open(policy: &Policy, relay: &Relay) -> Result<AsyncSmtpConnection, Failure> {
    open_asking(policy, relay, false).await.map(|(connection, _)| connection)
}

/// [`open`], and whether the relay takes pipelined commands (RFC 2920's `PIPELINING`), which
/// lettre does not keep of the relay's `EHLO` answer: so phasegate says `EHLO` once more, after
/// TLS and before the login (where RFC 5321 lets a client say it again), and reads the answer
/// itself. One more round trip a connection, for a campaign's pool, which keeps its connections.
pub(crate) async fn open_pipelined(policy: &Policy, relay: &Relay) -> Result<(AsyncSmtpConnection, bool), Failure> {
    open_asking(policy, relay, true).await
}

async fn open_asking(
    policy: &Policy,
    relay: &Relay,
    ask_pipelining: bool,
) -> Result<(AsyncSmtpConnection, bool), Failure> {
    let target = relay.target();
    let smtp = |error: lettre::transport::smtp::Error| Failure::smtp(format!("relay `{target}`"), error);
    let addresses = addresses(policy, relay).await?;
    let tls = || TlsParameters::new(relay.host.clone()).map_err(smtp);
    let stream = connect(&addresses).await.map_err(|error| {
        Failure::answered(format!("cannot connect to relay `{target}`"), error, FailureClass::Connection)
    })?;
    let hello = match stream.local_addr().map(|local| local.ip()) {
        Ok(IpAddr::V4(address)) => ClientId::Ipv4(address),
        Ok(IpAddr::V6(address)) => ClientId::Ipv6(address),
        Err(_) => ClientId::default(),
    };
    let mut connection = match relay.security {
        Security::Tls => {
            let stream = Encrypted::handshake(stream, tls()?).await.map_err(smtp)?;
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await.map_err(smtp)?
        }
        Security::StartTls | Security::Plain => {
            let mut connection =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await.map_err(smtp)?;
            if relay.security == Security::StartTls {
                if !connection.can_starttls() {
                    connection.abort().await;
                    return Err(Failure::said(
                        format!(
                            "relay `{target}` does not offer STARTTLS, which phasegate requires of a relay that is not \
                             on this host; use a relay that offers it, or `smtps://`"
                        ),
                        FailureClass::Refused,
                    ));
                }
                connection.starttls(tls()?, &hello).await.map_err(smtp)?;
            }
            connection
        }
    };
    let mut pipelining = false;
    if ask_pipelining {
        match connection.command(Ehlo::new(hello.clone())).await {
            Ok(answer) => pipelining = offers(&answer, "PIPELINING"),
            Err(error) => {
                connection.abort().await;
                return Err(smtp(error));
            }
        }
    }
    if let Some(credentials) = relay.login()
        && let Err(error) = connection.auth(&[Mechanism::Plain, Mechanism::Login], &credentials).await
    {
        connection.abort().await;
        return Err(smtp(error));
    }
    Ok((connection, pipelining))
}

/// Whether an `EHLO` answer names the extension `keyword` (a line of its own, perhaps with
/// parameters after it; the first line is the relay's name).
fn offers(answer: &Response, keyword: &str) -> bool {
    answer
        .message()
        .skip(1)
        .any(|line| line.split_whitespace().next().is_some_and(|word| word.eq_ignore_ascii_case(keyword)))
}

/// A TLS session over a TCP connection that phasegate opened (with `TCP_NODELAY`), handed to
/// lettre as a stream of its own. lettre's own TLS client does the handshake and checks the
/// certificate (with the same parameters as for STARTTLS); lettre's only way to speak TLS from the
/// first byte opens the socket itself, without `TCP_NODELAY`, hence this adapter from its stream's
/// `futures-io` traits to the tokio traits that [`AsyncSmtpConnection::connect_with_transport`]
/// takes.
#[allow(deprecated)] // `AsyncNetworkStream` is public but marked as not meant to be; no other type does TLS.
#[derive(Debug)]
struct Encrypted(AsyncNetworkStream);

#[allow(deprecated)]
impl Encrypted {
    async fn handshake(
        stream: tokio::net::TcpStream,
        tls: TlsParameters,
    ) -> Result<Encrypted, lettre::transport::smtp::Error> {
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(stream));
        stream.upgrade_tls(tls).await?;
        Ok(Encrypted(stream))
    }
}

impl tokio::io::AsyncRead for Encrypted {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let unfilled = buffer.initialize_unfilled();
        match futures_io::AsyncRead::poll_read(Pin::new(&mut self.get_mut().0), context, unfilled) {
            Poll::Ready(Ok(read)) => {
                buffer.advance(read);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for Encrypted {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        futures_io::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().0), context, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_io::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().0), context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_io::AsyncWrite::poll_close(Pin::new(&mut self.get_mut().0), context)
    }
}

impl AsyncTokioStream for Encrypted {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

/// The relay's addresses that the policy allows: an address written as the host is checked as
/// it is; a name is checked, resolved, and each address it resolves to checked.
async fn addresses(policy: &Policy, relay: &Relay) -> Result<Vec<SocketAddr>, Failure> {
    let target = relay.target();
    let refused = |refusal: super::outbound::Refusal| {
        Failure::said(format!("relay `{target}` refused: {refusal}"), FailureClass::Refused)
    };
    if let Ok(address) = relay.host.parse::<IpAddr>() {
        policy.check_address(&relay.host, address).map_err(refused)?;
        return Ok(vec![SocketAddr::new(address, relay.port)]);
    }
    policy.check_name(&relay.host).map_err(refused)?;
    let found: Vec<SocketAddr> = tokio::net::lookup_host((relay.host.as_str(), relay.port))
        .await
        .map_err(|error| {
            Failure::answered(format!("cannot resolve relay `{target}`"), error, FailureClass::Connection)
        })?
        .collect();
    let mut refusal = None;
    let kept: Vec<SocketAddr> = found
        .into_iter()
        .filter(|socket| match policy.check_resolved(&relay.host, socket.ip()) {
            Ok(()) => true,
            Err(refused) => {
                refusal.get_or_insert(refused);
                false
            }
        })
        .collect();
    match refusal {
        Some(refusal) if kept.is_empty() => Err(refused(refusal)),
        _ if kept.is_empty() => {
            Err(Failure::said(format!("relay `{target}` has no address"), FailureClass::Connection))
        }
        _ => Ok(kept),
    }
}

/// A TCP connection to the first of `addresses` that answers, with `TCP_NODELAY` set.
pub(crate) async fn connect(addresses: &[SocketAddr]) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = std::io::Error::other("no address");
    for address in addresses {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_are_read_with_the_tls_policy() {
        use Security::*;
        // URL, host, port, security, and the user and password joined by a space.
        let table: &[(&str, &str, u16, Security, &str)] = &[
            ("smtp://relay.example", "relay.example", 587, StartTls, ""),
            ("smtp://Relay.Example.:2525/", "relay.example", 2525, StartTls, ""),
            ("smtps://relay.example", "relay.example", 465, Tls, ""),
            ("smtp://user:pass@relay.example:587", "relay.example", 587, StartTls, "user pass"),
            (
                "smtps://alerts%40example.com:p%40ss%3Aw%2Fd@relay.example",
                "relay.example",
                465,
                Tls,
                "alerts@example.com p@ss:w/d",
            ),
            ("smtp://10.1.2.3:25", "10.1.2.3", 25, StartTls, ""),
            ("smtp://[2001:db8::1]:25", "2001:db8::1", 25, StartTls, ""),
            // On this host, plain text is allowed; `smtps://` stays TLS.
            ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, Plain, ""),
            ("smtp://127.9.9.9:25", "127.9.9.9", 25, Plain, ""),
            ("smtp://localhost:25", "localhost", 25, Plain, ""),
            ("smtp://LOCALHOST", "localhost", 587, Plain, ""),
            ("smtp://[::1]:25", "::1", 25, Plain, ""),
            ("smtp://u:p@127.0.0.1:25", "127.0.0.1", 25, Plain, "u p"),
            ("smtps://127.0.0.1", "127.0.0.1", 465, Tls, ""),
            // A name that is not `localhost` needs STARTTLS, wherever it resolves.
            ("smtp://localhost.example", "localhost.example", 587, StartTls, ""),
            ("smtp://mail.localhost", "mail.localhost", 587, StartTls, ""),
        ];
        for (url, host, port, security, credentials) in table {
            let relay = Relay::parse(url).unwrap_or_else(|error| panic!("{url}: {error}"));
            assert_eq!((relay.host.as_str(), relay.port, relay.security), (*host, *port, *security), "{url}");
            assert_eq!(relay.credentials().collect::<Vec<_>>().join(" "), *credentials, "{url}");
        }
    }

    #[test]
    fn a_malformed_relay_url_is_refused_without_quoting_it() {
        let table: &[(&str, &str)] = &[
            ("hunter2-not-a-url", "it is not a URL"),
            ("hunter2:secretvalue", "its scheme is neither `smtp` nor `smtps`"),
            ("https://relay.example", "its scheme is neither `smtp` nor `smtps`"),
            ("smtp://", "it names no host"),
            ("smtp://relay.example:0", "its port is 0"),
            ("smtp://relay.example/hunter2", "it has a path, a query or a fragment"),
            ("smtp://relay.example?tls=none", "it has a path, a query or a fragment"),
            ("smtp://:hunter2@relay.example", "it has a password but no user"),
            ("smtp://hunter2@relay.example", "it has a user but no password"),
            ("smtp://user:%ZZhunter2@relay.example", "its password is not valid percent-encoded UTF-8"),
            ("smtp://user:%FFhunter2@relay.example", "its password is not valid percent-encoded UTF-8"),
        ];
        for (url, expected) in table {
            let error = Relay::parse(url).expect_err(url);
            assert!(error.starts_with(expected), "{url}: {error}");
            assert!(!error.contains("hunter2") && !error.contains("secretvalue"), "{url}: {error}");
        }
        let relay = Relay::parse("smtp://user:hunter2@relay.example").unwrap();
        assert!(!format!("{relay:?}").contains("hunter2"), "{relay:?}");
    }

    #[test]
    fn quoted_printable_parts_read_back_as_their_text_with_another_parser() {
        let to = vec!["ciso@harbour.example".to_string()];
        let long = "Nous sommes d\u{e9}sol\u{e9}s \u{2014} ".repeat(12);
        for text in [long.as_str(), "line  \nwith = signs\tand tabs\t\n.dot\n", "\u{1f512} vault\n\nend"] {
            let letter = compose(draft(&to, Some(text), Some(&format!("<p>{text}</p>")))).unwrap();
            assert!(letter.bytes.is_ascii(), "quoted-printable keeps the message ASCII");
            assert!(
                String::from_utf8_lossy(&letter.bytes).lines().all(|line| line.len() <= 78),
                "no line past the limit"
            );
            let parsed = mail_parser::MessageParser::default().parse(&letter.bytes).unwrap();
            assert_eq!(parsed.body_text(0).unwrap().replace("\r\n", "\n"), text);
            assert_eq!(parsed.body_html(0).unwrap().replace("\r\n", "\n"), format!("<p>{text}</p>"));
        }
    }

    fn draft<'a>(to: &'a [String], text: Option<&str>, html: Option<&str>) -> Draft<'a> {
        Draft {
            scope: "exec-email",
            to,
            from: Some("Phasegate <phasegate@harbour.example>"),
            subject: "[inc-1] Till breach: update for Executives (requested)".into(),
            text: text.map(str::to_string),
            html: html.map(str::to_string),
            key: "inc-1/update/executives/7",
            date: DateTime::parse_from_rfc3339("2026-11-24T06:00:00Z").unwrap().with_timezone(&Utc),
        }
    }

    #[test]
    fn a_message_has_its_headers_and_both_variants() {
        let to = vec!["ciso@harbour.example".to_string(), "Board <board@harbour.example>".to_string()];
        let letter = compose(draft(&to, Some("Tills are trading"), Some("<p>Tills are trading</p>"))).unwrap();
        let text = String::from_utf8(letter.bytes.clone()).unwrap();
        for header in [
            "From: Phasegate <phasegate@harbour.example>\r\n",
            "To: ciso@harbour.example, Board <board@harbour.example>\r\n",
            "Subject: [inc-1] Till breach: update for Executives (requested)\r\n",
            "Date: Tue, 24 Nov 2026 06:00:00 +0000\r\n",
            "Content-Type: multipart/alternative;",
        ] {
            assert!(text.contains(header), "{header:?} not in:\n{text}");
        }
        assert!(text.contains(&format!("Message-ID: {}\r\n", letter.message_id)), "{text}");
        assert!(letter.message_id.starts_with('<') && letter.message_id.ends_with("@harbour.example>"));
        let plain = text.find("Content-Type: text/plain").expect("a text part");
        let html = text.find("Content-Type: text/html").expect("an HTML part");
        assert!(plain < html, "the text part comes first, the richer last");
        let envelope_to: Vec<String> = letter.envelope.to().iter().map(ToString::to_string).collect();
        assert_eq!(envelope_to, ["ciso@harbour.example", "board@harbour.example"]);
        assert_eq!(letter.envelope.from().map(ToString::to_string).as_deref(), Some("phasegate@harbour.example"));

        // The same update gives the same message, byte for byte; another channel, another message.
        let again = compose(draft(&to, Some("Tills are trading"), Some("<p>Tills are trading</p>"))).unwrap();
        assert_eq!(String::from_utf8(again.bytes).unwrap(), text);
        let other = compose(Draft { scope: "stores-email", ..draft(&to, Some("x"), None) }).unwrap();
        assert_ne!(other.message_id, letter.message_id);
    }

    #[test]
    fn one_variant_makes_a_single_part_and_bad_addresses_are_named() {
        let to = vec!["ciso@harbour.example".to_string()];
        let letter = compose(draft(&to, Some("only text"), None)).unwrap();
        let text = String::from_utf8(letter.bytes).unwrap();
        assert!(text.contains("Content-Type: text/plain") && !text.contains("multipart"), "{text}");
        let letter = compose(draft(&to, None, Some("<p>only html</p>"))).unwrap();
        assert!(String::from_utf8(letter.bytes).unwrap().contains("Content-Type: text/html"));
        let default_from = compose(Draft { from: None, ..draft(&to, Some("x"), None) }).unwrap();
        assert_eq!(default_from.envelope.from().map(ToString::to_string).as_deref(), Some(DEFAULT_FROM));
        let bad = vec!["not an address".to_string()];
        assert_eq!(
            compose(draft(&bad, Some("x"), None)).unwrap_err(),
            "`to` address `not an address` is not an email address"
        );
        let error = compose(Draft { from: Some("nobody"), ..draft(&to, Some("x"), None) }).unwrap_err();
        assert_eq!(error, "`from` `nobody` is not an email address");
        assert!(compose(draft(&to, None, None)).is_err());
    }

    #[tokio::test]
    async fn the_connection_to_a_relay_has_tcp_nodelay_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        // The first address answers nothing; the second is taken, with `TCP_NODELAY`.
        let stream = connect(&[closed, listener.local_addr().unwrap()]).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), listener.local_addr().unwrap());
        assert!(stream.nodelay().unwrap(), "TCP_NODELAY is set");
    }
}
