//! A campaign of 2.1 million, as a user runs it: `cargo bench --bench campaign` prints a Markdown
//! table for `BENCHMARKS.md`.
//!
//! A JSON Lines member list like `drills/members/retail-breach.jsonl` (made once and kept under
//! the target directory) is sent by the real binary, `phasegate start` then `phasegate run`, with
//! a one-step runbook: the reference `customer-notice` template (with the recipient's derived
//! offer code added at its end), offer codes from a secret key, and a `batch` channel to a
//! loopback sink. The sink is this bench's binary run again as another process: it answers 200
//! to each POST, counts the messages in each (`{"id":` occurrences) and every `Idempotency-Key`
//! it sees. Wall time covers `start` and `run`; peak resident memory is `run`'s, from
//! `/usr/bin/time -v` (or the child's `VmHWM` when that is missing).
//!
//! Next to it, in the same run, a naive pipeline over the list's first `NAIVE` members: one
//! render (the same renderer), one request (one message, its own key) and one SQLite commit
//! (WAL, `synchronous=FULL`, as the store) per message, one after the other.
//!
//! `RECIPIENTS` (default 2,100,000), `NAIVE` (default 20,000), `RUNS` (default 1: medians of
//! that many runs), `BATCH_SIZE` (1,000), `CONCURRENCY` (4).

use std::collections::HashMap;
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phasegate::campaign::{Counts, Recipient, code};

/// Set in the sink's environment: the binary serves as the sink.
const SINK_VARIABLE: &str = "PHASEGATE_CAMPAIGN_BENCH_SINK";
const OFFER_KEY: &str = "bench-offer-key-5c1e7a0d93b24f68";
const SUBJECT: &str = "Important information about your account, and our apology";

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |text| text.parse().unwrap_or_else(|_| panic!("{name}={text}?")))
}

fn main() {
    if std::env::var_os(SINK_VARIABLE).is_some() {
        sink();
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    let recipients = number("RECIPIENTS", 2_100_000);
    let naive = number("NAIVE", 20_000).min(recipients);
    let runs = number("RUNS", 1).max(1);
    let batch_size = number("BATCH_SIZE", 1_000);
    let concurrency = number("CONCURRENCY", 4);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("campaign-bench");
    std::fs::create_dir_all(&base).unwrap();
    let list = members(&base, recipients);
    let templates = templates(&base);

    let mut ours = Vec::new();
    for run in 1..=runs {
        let measured = campaign(&base, &list, &templates, recipients, batch_size, concurrency);
        eprintln!(
            "run {run}: {recipients} messages in {:.2} s ({:.0}/s), peak {:.0} MB, {} requests, {} keys seen more than once; \
             CPU: `run` {:.2} s ({:.1} us a message), sink {:.2} s ({:.1} us a message)",
            measured.wall.as_secs_f64(),
            measured.rate(),
            measured.rss_mb,
            measured.requests,
            measured.repeated_keys,
            measured.cpu,
            measured.cpu * 1e6 / recipients as f64,
            measured.sink_cpu,
            measured.sink_cpu * 1e6 / recipients as f64,
        );
        ours.push(measured);
    }
    let mut theirs = Vec::new();
    for run in 1..=runs {
        let measured = naive_pipeline(&base, &list, &templates, naive);
        eprintln!(
            "naive run {run}: {naive} messages in {:.2} s ({:.0}/s)",
            measured.wall.as_secs_f64(),
            measured.rate()
        );
        theirs.push(measured);
    }
    let ours = median(ours);
    let theirs = median(theirs);
    println!("| pipeline | messages | wall | messages/s | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| `phasegate run` (batches of {batch_size}, {concurrency} in flight) | {} | {:.2} s | {:.0} | {:.0} MB |",
        ours.messages,
        ours.wall.as_secs_f64(),
        ours.rate(),
        ours.rss_mb
    );
    println!(
        "| naive: one render, one request, one commit per message | {} | {:.2} s | {:.0} | - |",
        theirs.messages,
        theirs.wall.as_secs_f64(),
        theirs.rate()
    );
    println!();
    println!(
        "ours / naive: {:.1}x; targets: wall <= 20 s ({}), RSS <= 256 MB ({}), ratio >= 3 ({})",
        ours.rate() / theirs.rate(),
        verdict(ours.wall.as_secs_f64() <= 20.0),
        verdict(ours.rss_mb <= 256.0),
        verdict(ours.rate() / theirs.rate() >= 3.0)
    );
    if ours.cpu > 0.0 {
        println!(
            "CPU a message: `run` {:.1} us, the sink {:.1} us ({:.2} s and {:.2} s for {} messages)",
            ours.cpu * 1e6 / ours.messages as f64,
            ours.sink_cpu * 1e6 / ours.messages as f64,
            ours.cpu,
            ours.sink_cpu,
            ours.messages
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

#[derive(Clone)]
struct Measured {
    messages: u64,
    wall: Duration,
    rss_mb: f64,
    /// CPU seconds (user and system) of `run`, from `/usr/bin/time -v` (0 without it).
    cpu: f64,
    /// CPU seconds the sink took, as it says itself.
    sink_cpu: f64,
    requests: u64,
    repeated_keys: u64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64()
    }
}

fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by_key(|run| run.wall);
    runs[runs.len() / 2].clone()
}

/// The member list of `count` members, made once: every tenth has a gift card.
fn members(base: &Path, count: u64) -> PathBuf {
    const NAMES: &[&str] = &["Amelia", "Ben", "Chloé", "Dev", "Erin", "Farah", "Gus", "Hana", "Ines", "Jack"];
    const TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];
    let path = base.join(format!("members-{count}.jsonl"));
    if path.exists() {
        return path;
    }
    let started = Instant::now();
    let part = base.join(format!("members-{count}.jsonl.part"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&part).unwrap());
    for n in 0..count {
        let name = NAMES[n as usize % NAMES.len()];
        let language = if n.is_multiple_of(7) { "fr-FR" } else { "en-GB" };
        let tier = TIERS[(n / 3) as usize % TIERS.len()];
        if n.is_multiple_of(10) {
            writeln!(
                out,
                r#"{{"member_id": "M{:07}", "email": "{}.{n}@example.com", "first_name": "{name}", "preferred_language": "{language}", "tier": "{tier}", "offer_kind": "gift_card", "offer_points": 0, "gift_card_value": "GBP 10", "gift_card_code": "GC-{:04X}-{:04X}-{:02}"}}"#,
                1_000_000 + n,
                name.to_lowercase(),
                n % 65_536,
                (n * 7_919) % 65_536,
                n % 97
            )
            .unwrap();
        } else {
            writeln!(
                out,
                r#"{{"member_id": "M{:07}", "email": "{}.{n}@example.com", "first_name": "{name}", "preferred_language": "{language}", "tier": "{tier}", "offer_kind": "points", "offer_points": {}}}"#,
                1_000_000 + n,
                name.to_lowercase(),
                250 * (1 + n % 4)
            )
            .unwrap();
        }
    }
    out.into_inner().unwrap().sync_all().unwrap();
    std::fs::rename(&part, &path).unwrap();
    eprintln!("made {} ({count} members) in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    path
}

/// The reference customer notice with the recipient's offer code at its end, in a directory that
/// overrides the built-in templates.
fn templates(base: &Path) -> PathBuf {
    let dir = base.join("templates");
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let text = std::fs::read_to_string(root.join("customer-notice.txt")).unwrap();
    std::fs::write(dir.join("customer-notice.txt"), format!("{text}\nYour personal offer code: {{{{ code }}}}\n"))
        .unwrap();
    let html = std::fs::read_to_string(root.join("customer-notice.html")).unwrap();
    let html = html.replacen("</body>", "<p>Your personal offer code: <strong>{{ code }}</strong></p>\n</body>", 1);
    std::fs::write(dir.join("customer-notice.html"), html).unwrap();
    dir
}

fn runbook(sink: &str, batch_size: u64, concurrency: u64) -> String {
    format!(
        r#"apiVersion: phasegate/v1
kind: Runbook
id: campaign-bench
title: A campaign of 2.1 million
roles:
  incident-commander: {{}}
inputs:
  member_list: {{ type: string }}
channels:
  sink:
    batch:
      url: {sink}/batches
phases:
  - id: notify
    steps:
      - id: apology
        campaign:
          recipients: {{ input: member_list, id_field: member_id }}
          template: customer-notice
          subject: {SUBJECT}
          channel: sink
          batch_size: {batch_size}
          concurrency: {concurrency}
          code: {{ secret: OFFER_KEY }}
"#
    )
}

const CONFIG: &str = "people:\n  riley: { roles: [incident-commander] }\nsecrets:\n  OFFER_KEY: { env: OFFER_KEY }\n\
                      outbound:\n  allow: [127.0.0.1/32]\n";

/// A working directory with the configuration and runbook, and the incident started there.
fn prepare(
    base: &Path,
    list: &Path,
    templates: &Path,
    sink: &str,
    batch_size: u64,
    concurrency: u64,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(base).unwrap();
    std::fs::write(dir.path().join("phasegate.yaml"), CONFIG).unwrap();
    std::fs::write(dir.path().join("campaign.yaml"), runbook(sink, batch_size, concurrency)).unwrap();
    let input = format!("member_list={}", list.display());
    let output = phasegate(dir.path(), templates)
        .args(["start", "campaign.yaml", "--as", "riley", "--input", &input, "--db", "phasegate.db"])
        .output()
        .unwrap();
    assert!(output.status.success(), "start: {}", String::from_utf8_lossy(&output.stderr));
    dir
}

fn phasegate(dir: &Path, templates: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_phasegate"));
    command
        .current_dir(dir)
        .env("PHASEGATE_TEMPLATES", templates)
        .env("PHASEGATE_CONFIG", dir.join("phasegate.yaml"))
        .env("OFFER_KEY", OFFER_KEY);
    command
}

/// `phasegate start`, then `phasegate run` to the campaign's end.
fn campaign(
    base: &Path,
    list: &Path,
    templates: &Path,
    recipients: u64,
    batch_size: u64,
    concurrency: u64,
) -> Measured {
    let sink = Sink::start();
    let began = Instant::now();
    let dir = prepare(base, list, templates, &sink.base, batch_size, concurrency);
    let timed = Path::new("/usr/bin/time").is_file();
    let mut command = if timed {
        let mut command = Command::new("/usr/bin/time");
        command.arg("-v").arg(env!("CARGO_BIN_EXE_phasegate"));
        command
    } else {
        Command::new(env!("CARGO_BIN_EXE_phasegate"))
    };
    let child = command
        .current_dir(dir.path())
        .env("PHASEGATE_TEMPLATES", templates)
        .env("OFFER_KEY", OFFER_KEY)
        .args(["run", "--config", "phasegate.yaml", "--db", "phasegate.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr, polled) = wait_with_peak(child, !timed);
    let wall = began.elapsed();
    assert!(status.success(), "run: {stderr}");
    let rss_kb = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .map_or(polled, |kb| kb.trim().parse().unwrap());
    let stats = sink.stats();
    assert_eq!(stats.messages, recipients, "the sink counted every message once");
    let seconds = |label: &str| {
        stderr.lines().find_map(|line| line.trim().strip_prefix(label)).map_or(0.0, |s| s.trim().parse().unwrap_or(0.0))
    };
    Measured {
        messages: recipients,
        wall,
        rss_mb: rss_kb as f64 / 1024.0,
        cpu: seconds("User time (seconds): ") + seconds("System time (seconds): "),
        sink_cpu: stats.cpu,
        requests: stats.requests,
        repeated_keys: stats.repeated,
    }
}

/// Waits for `child`, reading its standard error; with `poll`, samples its `VmHWM` until it ends.
fn wait_with_peak(mut child: Child, poll: bool) -> (std::process::ExitStatus, String, u64) {
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if poll {
            let hwm = std::fs::read_to_string(&status_file).ok().and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()))
            });
            peak = peak.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap(), peak)
}

/// One render, one request and one commit per message, one message after the other.
fn naive_pipeline(base: &Path, list: &Path, templates: &Path, count: u64) -> Measured {
    let sink = Sink::start();
    let dir = prepare(base, list, templates, &sink.base, 1, 1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let wall = runtime.block_on(async {
        use phasegate::store::Store as _;
        // What every message shares, as the campaign's runner has it.
        let store = phasegate::store::SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
        let incident_id = store.incidents().await.unwrap()[0].id.clone();
        let events = store.events(&incident_id).await.unwrap();
        store.close().await;
        let incident = phasegate::engine::Incident::from_events(&events).unwrap();
        let catalog = phasegate::render::Catalog::with_dir(templates).unwrap();
        let runbook = phasegate::runbook::parse(&incident.runbook_text, &catalog).unwrap();
        let counts = Counts { read: count, accepted: count, ..Counts::default() };
        let context = phasegate::render::context::campaign_base(
            &runbook,
            &incident,
            "notify",
            "apology",
            &counts,
            chrono::Utc::now(),
        );
        let renderer = phasegate::render::campaign::Renderer::new(&catalog, "customer-notice", context).unwrap();
        let campaign = format!("{incident_id}/notify/apology");

        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("naive.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE outcomes (id TEXT PRIMARY KEY, digest BLOB NOT NULL, at TEXT NOT NULL)")
            .execute(&mut db)
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("{}/batches", sink.base);

        let began = Instant::now();
        let reader = std::io::BufReader::new(std::fs::File::open(list).unwrap());
        for (n, line) in reader.lines().take(count as usize).enumerate() {
            let line = line.unwrap();
            let serde_json::Value::Object(fields) = serde_json::from_str(&line).unwrap() else {
                panic!("not an object")
            };
            let id = fields["member_id"].as_str().unwrap().to_string();
            let address = fields["email"].as_str().unwrap().to_string();
            let recipient = Recipient { line: n as u64 + 1, id, address, fields };
            let offer = code::derive(OFFER_KEY.as_bytes(), &campaign, &recipient.id, code::DEFAULT_LENGTH).unwrap();
            let rendered = renderer.render(&recipient, Some(&offer)).unwrap();
            let digest = phasegate::audit::merkle::message_digest(
                &recipient.address,
                SUBJECT,
                &rendered.text,
                rendered.html.as_deref(),
            );
            let number = n + 1;
            // The wire format of the batch channel, with one message.
            let message = phasegate::actions::campaign::Message {
                id: recipient.id.clone(),
                to: recipient.address.clone(),
                subject: SUBJECT.to_string(),
                text: rendered.text,
                html: rendered.html,
            };
            let messages = [message];
            let batch =
                phasegate::actions::campaign::Batch { campaign: &campaign, number: number as u32, messages: &messages };
            let body = phasegate::actions::campaign::batch::body(&batch);
            let key = batch.idempotency_key();
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            sqlx::query("INSERT INTO outcomes (id, digest, at) VALUES (?, ?, ?)")
                .bind(&recipient.id)
                .bind(digest.to_vec())
                .bind(chrono::Utc::now().to_rfc3339())
                .execute(&mut db)
                .await
                .unwrap();
        }
        began.elapsed()
    });
    let stats = sink.stats();
    assert_eq!(stats.messages, count, "the sink counted every message once");
    Measured {
        messages: count,
        wall,
        rss_mb: 0.0,
        cpu: 0.0,
        sink_cpu: stats.cpu,
        requests: stats.requests,
        repeated_keys: stats.repeated,
    }
}

/// The sink, as another process: this binary run again with [`SINK_VARIABLE`] set.
struct Sink {
    base: String,
    child: Child,
}

struct Stats {
    requests: u64,
    messages: u64,
    repeated: u64,
    /// CPU seconds the sink process has taken (user and system).
    cpu: f64,
}

impl Sink {
    fn start() -> Sink {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SINK_VARIABLE, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        Sink { base: line.trim().to_string(), child }
    }

    fn stats(&self) -> Stats {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stats: serde_json::Value = runtime.block_on(async {
            let bytes = reqwest::get(format!("{}/stats", self.base)).await.unwrap().bytes().await.unwrap();
            serde_json::from_slice(&bytes).unwrap()
        });
        let field = |name: &str| stats[name].as_u64().unwrap();
        Stats {
            requests: field("requests"),
            messages: field("messages"),
            repeated: field("repeated_keys"),
            cpu: stats["cpu_seconds"].as_f64().unwrap_or(0.0),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the sink counted.
#[derive(Default)]
struct Counted {
    requests: u64,
    messages: u64,
    keys: HashMap<String, u32>,
}

/// Serves until killed: answers 200 to each POST and counts it; `GET /stats` says what it counted.
fn sink() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("http://{}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        let counted: Arc<Mutex<Counted>> = Arc::default();
        let app = axum::Router::new().route("/stats", axum::routing::get(stats)).fallback(take).with_state(counted);
        axum::serve(listener, app).await.unwrap();
    });
}

async fn take(
    axum::extract::State(counted): axum::extract::State<Arc<Mutex<Counted>>>,
    request: axum::extract::Request,
) -> axum::http::StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 30).await else { return axum::http::StatusCode::BAD_REQUEST };
    let messages = count_ids(&body);
    let key = parts.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_string();
    let mut counted = counted.lock().unwrap();
    counted.requests += 1;
    counted.messages += messages;
    *counted.keys.entry(key).or_default() += 1;
    axum::http::StatusCode::OK
}

/// The messages in a body: occurrences of `{"id":` (found with `memchr`'s vectorised search, so
/// that the sink, on the same cores as the sender, takes as little of them as it can).
fn count_ids(body: &[u8]) -> u64 {
    memchr::memmem::find_iter(body, br#"{"id":"#).count() as u64
}

async fn stats(
    axum::extract::State(counted): axum::extract::State<Arc<Mutex<Counted>>>,
) -> axum::Json<serde_json::Value> {
    let counted = counted.lock().unwrap();
    axum::Json(serde_json::json!({
        "requests": counted.requests,
        "messages": counted.messages,
        "keys": counted.keys.len(),
        "repeated_keys": counted.keys.values().filter(|n| **n > 1).count(),
        "cpu_seconds": own_cpu_seconds(),
    }))
}

/// This process's CPU time so far (user and system), from `/proc/self/stat` (0 where there is
/// none), in seconds at the usual 100 ticks a second.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The fields after the command's name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, fields 14 and 15 of the line (the first after the name is field 3).
    (ticks(11) + ticks(12)) / 100.0
}
