//! Rendering a campaign's messages: the reference customer notice (`templates/customer-notice`,
//! text and HTML) for loyalty members with their own fields and offer code, with the incident of
//! the reference drill (`runbooks/retail-breach.yaml` started with `drills/retail-breach.yaml`'s
//! inputs). Issue 14's campaign sends 2.1 M of these in at most 20 s on 2 cores, rendering included.
//!
//! Prints messages per second on one thread and on every core (batches of 1000, as the runner
//! renders them), next to the naive way (the whole context built as JSON and converted for each
//! recipient), medians of `RUNS` runs (default 5); then, when valgrind is installed, instructions
//! per message counted by callgrind on one thread (the difference between two small runs, so the
//! setup does not count).
//!
//! Run with `cargo bench --bench campaign_render` (`RUNS=N`, `MESSAGES=N` for other sizes).
//! `campaign_render --only N` renders N messages on one thread and exits: what callgrind runs;
//! `valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/deps/campaign_render-* --only 2000`
//! then `callgrind_annotate cg.out` shows where the instructions go.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use phasegate::campaign::{Counts, Recipient};
use phasegate::engine::{Command, Directory, Incident, Request, decide};
use phasegate::render::Catalog;
use phasegate::render::campaign::Renderer;
use phasegate::render::context::campaign_base;
use serde_json::{Value, json};

const BATCH: usize = 1000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// The reference incident, as the drill starts it, and the customer notice's shared context.
fn base() -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/runbooks/retail-breach.yaml")).unwrap();
    let catalog = Catalog::built_in();
    let runbook = phasegate::runbook::parse(&text, &catalog).unwrap();
    let at: DateTime<Utc> = "2026-11-24T02:14:00Z".parse().unwrap();
    let inputs: BTreeMap<String, Value> = [
        ("severity", json!("critical")),
        ("alert_name", json!("LoyaltyDbBulkRead")),
        ("suspected_hosts", json!("shop-web-03,loyalty-api-01")),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    let command = Command::Start {
        incident: "retail-breach-2026-11-24".into(),
        runbook_text: text,
        inputs,
        key: Some("retail-breach/uk-retail".into()),
    };
    let request = Request { actor: "dana".into(), at, command };
    let directory = Directory::with(&[("dana", &["incident-commander"])]);
    let events = decide(&runbook, &directory, None, &request).unwrap().events;
    let incident = Incident::from_events(&events).unwrap();
    let counts = Counts { read: 2_100_412, accepted: 2_100_000, rejected: 212, duplicates: 180, suppressed: 20 };
    let now = at + chrono::Duration::days(3);
    campaign_base(&runbook, &incident, "notify-customers", "send-apology", &counts, now)
}

/// Loyalty members as the loyalty team's export gives them, varied as real lists are: a few
/// without a first name, some with accents, a third with a gift card instead of points.
fn members(count: usize) -> (Vec<Recipient>, Vec<String>) {
    const NAMES: &[&str] = &["Amara", "Oliver", "Siobhán", "Priya", "Tomasz", "Chloé", "Mohammed", "Grace", "", "Ewan"];
    const TIERS: &[&str] = &["Green", "Silver", "Gold", "Platinum"];
    const LANGUAGES: &[&str] = &["en-GB", "en-GB", "en-GB", "cy-GB", "pl-PL"];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut recipients = Vec::with_capacity(count);
    let mut codes = Vec::with_capacity(count);
    for n in 0..count {
        let member_id = format!("HR{:010}", 4_000_000_000u64 + n as u64 * 7);
        let first_name = NAMES[(next() % NAMES.len() as u64) as usize];
        let email = format!("{}.{n}@mail.example", if first_name.is_empty() { "member" } else { first_name });
        let gift = next() % 3 == 0;
        let mut fields = serde_json::Map::new();
        fields.insert("member_id".into(), json!(member_id));
        fields.insert("email".into(), json!(email));
        fields.insert("first_name".into(), json!(first_name));
        fields.insert("preferred_language".into(), json!(LANGUAGES[(next() % LANGUAGES.len() as u64) as usize]));
        fields.insert("tier".into(), json!(TIERS[(next() % TIERS.len() as u64) as usize]));
        fields.insert("offer_kind".into(), json!(if gift { "gift_card" } else { "points" }));
        fields.insert("offer_points".into(), if gift { json!("") } else { json!(1000 + (next() % 5) * 500) });
        fields.insert("gift_card_value".into(), json!(if gift { "£20" } else { "" }));
        let card = if gift {
            format!("HHGC-{:04X}-{:04X}-{:04X}", next() % 65536, next() % 65536, next() % 65536)
        } else {
            String::new()
        };
        fields.insert("gift_card_code".into(), json!(card));
        codes.push(format!("APOLOGY-{:08X}", next() as u32));
        recipients.push(Recipient { line: n as u64 + 1, id: member_id, address: email, fields });
    }
    (recipients, codes)
}

/// Renders every recipient on `threads` threads, batch by batch, and returns the time taken and
/// the bytes rendered (so that nothing is optimised away).
fn run(renderer: &Renderer, recipients: &[Recipient], codes: &[String], threads: usize) -> (Duration, usize) {
    let started = Instant::now();
    let mut bytes = 0;
    for (part, codes) in recipients.chunks(BATCH).zip(codes.chunks(BATCH)) {
        for rendered in renderer.render_batch_on(part, Some(codes), threads) {
            let rendered = rendered.unwrap();
            bytes += rendered.text.len() + rendered.html.map_or(0, |html| html.len());
        }
    }
    (started.elapsed(), bytes)
}

/// The naive way: the whole context built as JSON for each recipient, converted, then rendered.
fn run_naive(catalog: &Catalog, base: &Value, recipients: &[Recipient], codes: &[String]) -> (Duration, usize) {
    let started = Instant::now();
    let mut bytes = 0;
    for (recipient, code) in recipients.iter().zip(codes) {
        let mut context = base.clone();
        context["recipient"] = Value::Object(recipient.fields.clone());
        context["code"] = json!(code);
        let prepared = catalog.prepare("customer-notice.txt", &context).unwrap();
        bytes += catalog.render_prepared("customer-notice.txt", &prepared).unwrap().len();
        bytes += catalog.render_prepared("customer-notice.html", &prepared).unwrap().len();
    }
    (started.elapsed(), bytes)
}

fn rate(messages: usize, took: Duration) -> String {
    let per_second = messages as f64 / took.as_secs_f64();
    format!("{per_second:.0}/s ({:.1} µs each)", 1e6 / per_second)
}

/// Instructions callgrind counts for rendering `messages` on one thread, setup included.
fn instructions(messages: usize) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = tempfile::NamedTempFile::new().ok()?;
    let output = std::process::Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.path().display()))
        .arg(exe)
        .args(["--only", &messages.to_string()])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("callgrind failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let text = std::fs::read_to_string(out.path()).ok()?;
    text.lines().find_map(|line| line.strip_prefix("totals: ")?.split_whitespace().next()?.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let catalog = Catalog::built_in();
    let base = base();
    let renderer = Renderer::new(&catalog, "customer-notice", base.clone()).unwrap();

    if let Some(position) = args.iter().position(|arg| arg == "--only") {
        let messages: usize = args[position + 1].parse().unwrap();
        let (recipients, codes) = members(messages);
        let (_, bytes) = run(&renderer, &recipients, &codes, 1);
        assert!(bytes > 0);
        return;
    }
    // `cargo bench` passes `--bench`; anything else is not for this harness.
    let runs = env_number("RUNS", 5);
    let messages = env_number("MESSAGES", 20_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (recipients, codes) = members(messages);

    let (_, bytes) = run(&renderer, &recipients[..BATCH.min(messages)], &codes[..BATCH.min(messages)], 1);
    let single = median((0..runs).map(|_| run(&renderer, &recipients, &codes, 1).0).collect());
    let all = median((0..runs).map(|_| run(&renderer, &recipients, &codes, cores).0).collect());
    let naive = median((0..runs).map(|_| run_naive(&catalog, &base, &recipients, &codes).0).collect());
    let size = bytes / BATCH.min(messages);

    println!("| customer notice, text + HTML ({messages} members, {size} bytes a message, median of {runs}) | rate |");
    println!("| --- | --- |");
    println!("| `Renderer`, one thread | {} |", rate(messages, single));
    println!("| `Renderer`, {cores} threads (`render_batch`) | {} |", rate(messages, all));
    println!("| naive: whole context as JSON per recipient, one thread | {} |", rate(messages, naive));
    let budget = 2_100_000.0 / (messages as f64 / all.as_secs_f64());
    println!("| 2.1 M messages at the {cores}-thread rate | {budget:.1} s |");

    match std::process::Command::new("valgrind").arg("--version").output() {
        Ok(output) if output.status.success() => {
            let (small, large) = (200, 1200);
            match (instructions(small), instructions(large)) {
                (Some(a), Some(b)) => {
                    let per_message = (b - a) / (large - small) as u64;
                    println!("| instructions per message (callgrind, one thread) | {per_message} |");
                }
                _ => eprintln!("callgrind gave no count"),
            }
        }
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("valgrind missing");
            }
            eprintln!("SKIPPED: instructions per message: valgrind missing");
        }
    }
}
