//! Campaign email over SMTP, messages a second: `cargo bench --bench smtp` prints a Markdown table
//! for BENCHMARKS.md.
//!
//! The relay is Debian postfix's `smtp-sink` (`apt-get install postfix`; run here directly, on a
//! loopback port, without the mail service), which takes every message and throws it away. Each
//! row is one number of connections (1, 8, 32): phasegate's campaign pool
//! (`actions::campaign::smtp::SmtpPool`, batches of 1,000) next to stock lettre (its
//! `AsyncSmtpTransport` with a pool of the same size, `builder_dangerous` on loopback, as many
//! tasks as connections each sending one message after another), in the same run. Both send the
//! same messages, built the same way (`actions::email::compose`, about 8 KB each: text and HTML,
//! a customer notice with the recipient's name and offer code). A run sends for
//! `SMTP_BENCH_SECONDS` (default 2) after a warm-up; each figure is the median of `RUNS` runs
//! (default 3).
//!
//! For counting system calls with `strace -c -f` on a fixed amount of work: `SMTP_SINK=HOST:PORT`
//! uses a sink started by hand instead of starting one (so the trace is of this process only),
//! `MESSAGES=N` sends exactly N messages a run instead of sending for a time,
//! `SMTP_BENCH_CONNECTIONS=N` measures that number of connections only, and `SMTP_BENCH_ONLY=pool`
//! (or `lettre`) one side only.
//!
//! When `smtp-sink` is not installed, the bench says so and exits 0.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use phasegate::actions::campaign::smtp::SmtpPool;
use phasegate::actions::campaign::{Answer, Batch, Message};
use phasegate::actions::email;
use phasegate::actions::outbound::{Allowed, Policy};

const CONNECTIONS: [usize; 3] = [1, 8, 32];
const BATCH: usize = 1_000;
const FROM: &str = "Harbour Retail <care@harbour.example>";

fn main() {
    let runs: usize = env("RUNS").unwrap_or(3);
    let seconds: f64 = env("SMTP_BENCH_SECONDS").unwrap_or(2.0);
    let fixed: Option<usize> = env("MESSAGES");
    let only = std::env::var("SMTP_BENCH_ONLY").ok();
    let connections: Vec<usize> = env("SMTP_BENCH_CONNECTIONS").map_or(CONNECTIONS.to_vec(), |n| vec![n]);
    let (address, _sink) = match std::env::var("SMTP_SINK") {
        Ok(address) => (address.parse::<SocketAddr>().expect("SMTP_SINK is HOST:PORT"), None),
        Err(_) => match start_sink() {
            Some((address, sink)) => (address, Some(sink)),
            None => {
                println!(
                    "SKIPPED: benches/smtp.rs needs Debian postfix's `smtp-sink` (/usr/sbin/smtp-sink), which is \
                     missing; install it with `apt-get install postfix`"
                );
                return;
            }
        },
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let messages: Vec<Message> = (0..BATCH * 4).map(notice).collect();
    let size = email::compose(draft(&messages[0], "campaign/1")).unwrap().bytes.len();
    println!(
        "Campaign email into smtp-sink at {address}: messages of {size} bytes, batches of {BATCH}, {} a run, \
         medians of {runs} runs",
        match fixed {
            Some(count) => format!("{count} messages"),
            None => format!("{seconds} s"),
        }
    );
    println!();
    println!("| connections | phasegate pool (messages/s) | stock lettre (messages/s) | ratio |");
    println!("| ---: | ---: | ---: | ---: |");
    let duration = Duration::from_secs_f64(seconds);
    for &count in &connections {
        let (mut pool_rates, mut lettre_rates) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            if only.as_deref() != Some("lettre") {
                pool_rates.push(runtime.block_on(pool_rate(address, count, &messages, duration, fixed)));
            }
            if only.as_deref() != Some("pool") {
                lettre_rates.push(runtime.block_on(lettre_rate(address, count, &messages, duration, fixed)));
            }
        }
        let (pool, lettre) = (median(&mut pool_rates), median(&mut lettre_rates));
        let ratio = match (pool, lettre) {
            (Some(pool), Some(lettre)) => format!("{:.0}x", pool / lettre),
            _ => "-".into(),
        };
        let shown = |rate: Option<f64>| rate.map_or("-".to_string(), |rate| format!("{rate:.0}"));
        println!("| {count} | {} | {} | {ratio} |", shown(pool), shown(lettre));
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().map(|value| value.parse().unwrap_or_else(|_| panic!("{name} is not a number")))
}

fn median(rates: &mut [f64]) -> Option<f64> {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied()
}

/// The sink, stopped when the bench ends.
struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `smtp-sink` on a free loopback port, once it takes connections; `None` when it is not installed.
fn start_sink() -> Option<(SocketAddr, Sink)> {
    let program =
        ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"].into_iter().find(|path| std::fs::metadata(path).is_ok())?;
    let address = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut command = Command::new(program);
    // As root it must be told whom to run as once listening.
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|status| status.lines().any(|line| line.split_whitespace().take(3).eq(["Uid:", "0", "0"])));
    if root {
        command.args(["-u", "nobody"]);
    }
    let sink = Sink(
        command
            .arg(format!("{address}"))
            .arg("1024")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("smtp-sink starts"),
    );
    for _ in 0..200 {
        if TcpStream::connect(address).is_ok() {
            return Some((address, sink));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("smtp-sink did not listen on {address}");
}

/// The `index`th recipient's notice: about 8 KB, text and HTML, with their name and offer code.
fn notice(index: usize) -> Message {
    let name = format!("Member {index:07}");
    let code = format!("GIFT-{:04X}-{:04X}", index * 7919 % 65521, index * 104_729 % 65519);
    let paragraph = "We are writing to tell you about a security incident that affected our loyalty \
                     programme. On 23 November an intruder reached the system that holds members' names, \
                     email addresses and points balances. Payment cards were not affected. We closed the \
                     intruder's access the same day, reset every session, and are working with the \
                     authorities and an independent forensic firm.";
    let mut text = format!("Dear {name},\n\n");
    let mut html = format!("<!doctype html><html><body><p>Dear {name},</p>\n");
    for part in 0..8 {
        text.push_str(&format!("{part}. {paragraph}\n\n"));
        html.push_str(&format!("<p><strong>{part}.</strong> {paragraph}</p>\n"));
    }
    text.push_str(&format!("As an apology, here is a gift card: {code}\n\nHarbour Retail customer care\n"));
    html.push_str(&format!("<p>As an apology, here is a gift card: <code>{code}</code></p></body></html>\n"));
    Message {
        id: format!("m{index:07}"),
        to: format!("member{index}@members.example"),
        subject: "About your Harbour Retail account, and a gift from us".into(),
        text,
        html: Some(html),
    }
}

fn draft<'a>(message: &'a Message, key: &'a str) -> email::Draft<'a> {
    email::Draft {
        scope: &message.id,
        to: std::slice::from_ref(&message.to),
        from: Some(FROM),
        subject: message.subject.clone(),
        text: Some(message.text.clone()),
        html: message.html.clone(),
        key,
        date: Utc::now(),
    }
}

/// The pool's rate: batches of [`BATCH`] one after another, after one batch to open the connections.
async fn pool_rate(
    address: SocketAddr,
    connections: usize,
    messages: &[Message],
    duration: Duration,
    fixed: Option<usize>,
) -> f64 {
    let policy = Policy::new(vec!["127.0.0.0/8".parse::<Allowed>().unwrap()]);
    let pool = SmtpPool::connect(&format!("smtp://{address}"), Some(FROM), connections, policy).unwrap();
    let sent = |answer: Answer| match answer {
        Answer::Accepted { rejected } if rejected.is_empty() => {}
        other => panic!("the sink refused: {other:?}"),
    };
    sent(pool.send(Batch { campaign: "bench/warm/up", number: 1, messages: &messages[..BATCH] }).await);
    let start = Instant::now();
    let mut total = 0;
    for number in 1.. {
        let chunk = &messages[(number as usize % 4) * BATCH..][..BATCH];
        let chunk = match fixed {
            Some(count) if total >= count => break,
            Some(count) => &chunk[..BATCH.min(count - total)],
            None if start.elapsed() >= duration => break,
            None => chunk,
        };
        sent(pool.send(Batch { campaign: "bench/send/notices", number, messages: chunk }).await);
        total += chunk.len();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Stock lettre's rate: as many tasks as connections, each sending one message after another
/// through one `AsyncSmtpTransport` pooling that many connections.
async fn lettre_rate(
    address: SocketAddr,
    connections: usize,
    messages: &[Message],
    duration: Duration,
    fixed: Option<usize>,
) -> f64 {
    let transport: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
            .port(address.port())
            .pool_config(PoolConfig::new().max_size(connections as u32))
            .build();
    let transport = Arc::new(transport);
    let messages: Arc<Vec<Message>> = Arc::new(messages.to_vec());
    // One message a connection to open them.
    let mut warm = tokio::task::JoinSet::new();
    for index in 0..connections {
        let (transport, messages) = (Arc::clone(&transport), Arc::clone(&messages));
        warm.spawn(async move {
            let letter = email::compose(draft(&messages[index], "lettre/warm")).unwrap();
            transport.send_raw(&letter.envelope, &letter.bytes).await.expect("the sink takes it");
        });
    }
    while warm.join_next().await.is_some() {}
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (transport, messages, next) = (Arc::clone(&transport), Arc::clone(&messages), Arc::clone(&next));
        senders.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                match fixed {
                    Some(count) if index >= count => break,
                    None if start.elapsed() >= duration => break,
                    _ => {}
                }
                let message = &messages[index % messages.len()];
                let letter = email::compose(draft(message, "lettre/notices")).unwrap();
                transport.send_raw(&letter.envelope, &letter.bytes).await.expect("the sink takes it");
            }
        });
    }
    while senders.join_next().await.is_some() {}
    let sent = match fixed {
        Some(count) => count,
        None => next.load(Ordering::Relaxed) - connections,
    };
    sent as f64 / start.elapsed().as_secs_f64()
}
