//! Provable delivery's costs at the size of issue 14's campaign (2.1 M messages of about 11 KB):
//! `cargo bench --bench merkle` prints a Markdown table for BENCHMARKS.md.
//!
//! - the message digest (`audit::merkle::message_digest`, length-prefixed fields) beside what it
//!   replaced in the design: the RFC 8785 JSON of the message built as a `serde_json` value and
//!   hashed, and SHA-256 over the same bytes in one piece (the yardstick);
//! - leaf hashes, the streaming root of 2.1 M leaves, one audit path out of 2.1 M, and the store's
//!   leaf blobs (bytes per leaf, encoding and decoding).
//!
//! Each measure runs `ROUNDS` times; the table shows the median.

use std::time::Instant;

use chrono::{DateTime, Utc};
use phasegate::audit::merkle::{self, Builder, Leaf, LeafOutcome};
use sha2::{Digest, Sha256};

const MESSAGES: usize = 2_100_000;
/// Messages whose digest is measured (each about 11 KB): the rate is what counts.
const DIGESTED: usize = 20_000;
const BATCH: usize = 1_000;
const ROUNDS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Seconds for `work`, the median of `ROUNDS` runs.
fn measure(mut work: impl FnMut() -> u64) -> f64 {
    let mut sink = 0u64;
    let times = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            sink = sink.wrapping_add(work());
            start.elapsed().as_secs_f64()
        })
        .collect();
    std::hint::black_box(sink);
    median(times)
}

/// A personalised notice of about 11 KB: 4 KB of text and 7 KB of HTML, with a few characters
/// JSON escapes.
fn message(number: usize) -> (String, String, String, String) {
    let paragraph = format!(
        "Dear customer {number}, on 24 November we found that card data entered at our tills \"may\" have been read.\n"
    );
    let text = paragraph.repeat(4_000 / paragraph.len() + 1);
    let html = format!("<p>{}</p>\n", paragraph.trim_end()).repeat(7_000 / (paragraph.len() + 8) + 1);
    (format!("customer{number}@example.com"), "Your card: what happened".into(), text, html)
}

fn leaf(number: usize, at: DateTime<Utc>) -> Leaf {
    let outcome =
        if number % 100 == 7 { LeafOutcome::Rejected("550 5.1.1 no such user".into()) } else { LeafOutcome::Sent };
    Leaf { id: format!("cust-{number:08}"), digest: [number as u8; 32], outcome, at }
}

fn main() {
    let messages: Vec<_> = (0..DIGESTED).map(message).collect();
    let bytes: usize =
        messages.iter().map(|(to, subject, text, html)| to.len() + subject.len() + text.len() + html.len()).sum();
    let scale = MESSAGES as f64 / DIGESTED as f64;

    let digest = measure(|| {
        messages
            .iter()
            .map(|(to, subject, text, html)| merkle::message_digest(to, subject, text, Some(html))[0] as u64)
            .sum()
    });
    let json = measure(|| {
        messages
            .iter()
            .map(|(to, subject, text, html)| {
                let value = serde_json::json!({"to": to, "subject": subject, "text": text, "html": html});
                let canonical = serde_json_canonicalizer::to_string(&value).unwrap_or_default();
                Sha256::digest(canonical.as_bytes())[0] as u64
            })
            .sum()
    });
    let joined: Vec<String> =
        messages.iter().map(|(to, subject, text, html)| format!("{to}{subject}{text}{html}")).collect();
    let yardstick = measure(|| joined.iter().map(|message| Sha256::digest(message.as_bytes())[0] as u64).sum());

    let at = DateTime::parse_from_rfc3339("2026-12-04T21:55:00Z").unwrap().with_timezone(&Utc);
    let leaves: Vec<Leaf> =
        (0..MESSAGES).map(|number| leaf(number, at + chrono::Duration::milliseconds(number as i64))).collect();
    let mut hashes = Vec::new();
    let leaf_hashes = measure(|| {
        hashes = leaves.iter().map(Leaf::hash).collect::<Vec<_>>();
        hashes.len() as u64
    });
    let streaming = measure(|| {
        let mut builder = Builder::new();
        hashes.iter().for_each(|hash| builder.push(*hash));
        builder.root()[0] as u64
    });
    let path = measure(|| merkle::proof(&hashes, MESSAGES * 2 / 3).map_or(0, |path| path.len() as u64));
    let blobs: Vec<Vec<u8>> = leaves.chunks(BATCH).map(merkle::encode_leaves).collect();
    let blob_bytes: usize = blobs.iter().map(Vec::len).sum();
    let encode = measure(|| leaves.chunks(BATCH).map(|batch| merkle::encode_leaves(batch).len() as u64).sum());
    let decode =
        measure(|| blobs.iter().map(|blob| merkle::decode_leaves(blob).map_or(0, |leaves| leaves.len() as u64)).sum());

    let rate = |seconds: f64| bytes as f64 / seconds / 1e6;
    println!("| measure | time for 2.1 M messages | rate |");
    println!("|---|---|---|");
    println!(
        "| message digest, length-prefixed fields (phasegate) | {:.1} s | {:.0} MB/s |",
        digest * scale,
        rate(digest)
    );
    println!("| message digest, RFC 8785 JSON value, then SHA-256 | {:.1} s | {:.0} MB/s |", json * scale, rate(json));
    println!(
        "| SHA-256 over the same bytes in one piece (yardstick) | {:.1} s | {:.0} MB/s |",
        yardstick * scale,
        rate(yardstick)
    );
    println!(
        "| leaf hashes (canonical JSON of each leaf, SHA-256) | {:.2} s | {:.2} M leaves/s |",
        leaf_hashes,
        MESSAGES as f64 / leaf_hashes / 1e6
    );
    println!(
        "| streaming root of 2.1 M leaf hashes | {:.2} s | {:.2} M leaves/s |",
        streaming,
        MESSAGES as f64 / streaming / 1e6
    );
    println!("| one audit path out of 2.1 M leaf hashes | {:.2} s | |", path);
    println!(
        "| leaf blobs ({BATCH} leaves each): {:.1} bytes per leaf; encoding | {:.2} s | {:.2} M leaves/s |",
        blob_bytes as f64 / MESSAGES as f64,
        encode,
        MESSAGES as f64 / encode / 1e6
    );
    println!("| leaf blobs: decoding | {:.2} s | {:.2} M leaves/s |", decode, MESSAGES as f64 / decode / 1e6);
    eprintln!("{} messages digested, {:.1} KB each on average", DIGESTED, bytes as f64 / DIGESTED as f64 / 1e3);
}
