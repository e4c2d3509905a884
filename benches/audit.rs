//! `phasegate audit verify` throughput: `cargo bench --bench audit` prints a Markdown table for
//! BENCHMARKS.md.
//!
//! A database of 1,000,000 events (10 incidents of 100,000, a mix of the events a real incident
//! records, a checkpoint every 10,000 events) is verified from the database and from an export,
//! and set beside the yardstick: SHA-256 over the same events' stored JSON, one digest per event,
//! in memory. Reading the chain from the database without checking it is measured too, to show
//! what the database path spends on reading. The measures take turns in each round and the table shows the medians of the
//! rates and of the per-round ratios; `VERBOSE=1` prints every round.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use phasegate::audit::export;
use phasegate::audit::keys::Signer;
use phasegate::engine::event::Approver;
use phasegate::engine::{Event, EventKind};
use phasegate::runtime::audit;
use phasegate::store::{Append, SqliteStore, Store};
use sha2::{Digest, Sha256};

const INCIDENTS: usize = 10;
const EVENTS_EACH: usize = 100_000;
/// Events per append while building, and between checkpoints.
const BATCH: usize = 1_000;
const CHECKPOINT_EVERY: usize = 10_000;
const ROUNDS: usize = 5;

fn at(second: usize) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc)
        + chrono::Duration::seconds(second as i64)
}

/// The `number`th event of an incident after its start: a rotation of what incidents record.
fn event(number: usize) -> Event {
    let (phase, step) = ("relax-controls", "disable-mfa-for-stores");
    let kind = match number % 8 {
        0 => EventKind::StepStarted {
            phase: phase.into(),
            step: step.into(),
            attempt: 1,
            idempotency_key: format!("inc-1/{phase}/{step}/{number}"),
        },
        1 => EventKind::StepDone {
            phase: phase.into(),
            step: step.into(),
            outputs: BTreeMap::from([("ticket".into(), serde_json::json!(format!("CHG-{number}")))]),
        },
        2 => EventKind::ApprovalGiven { phase: phase.into(), gate: "ciso-approval".into(), role: "ciso".into() },
        3 => EventKind::GatePassed {
            phase: phase.into(),
            gate: "ciso-approval".into(),
            why: serde_json::json!({"approvers": [{"person": "dana", "role": "ciso"}, {"person": "lee", "role": "cto"}]}),
        },
        4 => EventKind::ControlRelaxed {
            control: "store-mfa".into(),
            phase: phase.into(),
            step: step.into(),
            reason: "tills must trade while the identity provider is quarantined".into(),
            expires_at: at(number + 3600),
            approved_by: vec![Approver { person: "dana".into(), role: "ciso".into(), at: at(number) }],
            compensating: vec!["per-store IP allowlist".into(), "hourly log review".into()],
        },
        // Without the text an update records (up to 32 KiB), which would make events larger and
        // hashing a larger share of the work.
        5 => EventKind::StatusUpdateSent {
            audience: "executives".into(),
            channels: vec!["board-email".into()],
            occasion: None,
            text: None,
        },
        6 => EventKind::PhaseStarted { phase: phase.into() },
        _ => EventKind::NoteAdded,
    };
    Event::new(at(number), "dana", kind).because(
        number
            .is_multiple_of(2)
            .then(|| format!("note {number}: store tills trade without MFA while the IdP is quarantined")),
    )
}

fn started(incident: &str) -> Event {
    let text = "id: retail-breach\n# a runbook of a few kilobytes\n".repeat(80);
    Event::new(
        at(0),
        "alertmanager",
        EventKind::IncidentStarted {
            incident: incident.into(),
            runbook_id: "retail-breach".into(),
            runbook_version: Some("3".into()),
            runbook_sha256: phasegate::engine::decide::sha256_hex(&text),
            runbook_text: text,
            inputs: Default::default(),
            key: None,
        },
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // `AUDIT_BENCH_DB=PATH` keeps the database (and its key) to measure again without building it.
        let path = std::env::var_os("AUDIT_BENCH_DB").map_or_else(|| dir.path().join("phasegate.db"), Into::into);
        let reuse = path.exists();
        let store = SqliteStore::open(&path).await.unwrap();
        let key_path = path.with_extension("pem");
        let signer = match std::fs::read_to_string(&key_path) {
            Ok(pem) if reuse => Signer::from_pem(&pem).unwrap(),
            _ => audit::new_signer(),
        };
        std::fs::write(&key_path, signer.to_pem().unwrap().as_bytes()).unwrap();
        let built = Instant::now();
        for number in (0..INCIDENTS).filter(|_| !reuse) {
            let incident = format!("inc-{number}");
            let mut version = store.append(Append::new(&incident, 0, &[started(&incident)])).await.unwrap();
            while (version as usize) < EVENTS_EACH {
                let count = BATCH.min(EVENTS_EACH - version as usize);
                let events: Vec<Event> = (0..count).map(|n| event(version as usize + n)).collect();
                version = store.append(Append::new(&incident, version, &events)).await.unwrap();
                if (version as usize).is_multiple_of(CHECKPOINT_EVERY) || version as usize == EVENTS_EACH {
                    let summary = store.incident(&incident).await.unwrap().unwrap();
                    audit::sign_head(&store, &signer, &summary, at(version as usize)).await.unwrap();
                }
            }
        }
        let incidents = store.incidents().await.unwrap();
        let total: usize = incidents.iter().map(|incident| incident.version as usize).sum();
        eprintln!("built {total} events in {:.1?}", built.elapsed());

        // The yardstick's data: every event's stored JSON, in memory.
        let mut texts = Vec::with_capacity(total);
        let mut exports = Vec::new();
        for incident in &incidents {
            let mut after = 0;
            loop {
                let page = store.chain(&incident.id, after, 10_000).await.unwrap();
                let Some(last) = page.last() else { break };
                after = last.seq;
                texts.extend(page.into_iter().map(|link| link.event));
            }
            let mut out = Vec::new();
            audit::export_stored(&store, incident, &mut out).await.unwrap();
            exports.push(out);
        }
        let bytes: usize = texts.iter().map(String::len).sum();
        eprintln!(
            "{} events, {} bytes of JSON, {:.0} bytes per event",
            texts.len(),
            bytes,
            bytes as f64 / texts.len() as f64
        );

        let (mut raw, mut database, mut file, mut read) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let start = Instant::now();
            let mut sink = 0u8;
            for text in &texts {
                sink ^= Sha256::digest(text.as_bytes())[0];
            }
            std::hint::black_box(sink);
            raw.push(rate(texts.len(), start.elapsed()));

            let start = Instant::now();
            for incident in &incidents {
                let outcome = audit::verify_stored(&store, incident, Some(signer.public())).await.unwrap();
                assert!(outcome.verified() && outcome.signed_through == incident.version, "{outcome:?}");
            }
            database.push(rate(total, start.elapsed()));

            // What reading the chain from the database costs, without checking anything.
            let start = Instant::now();
            let mut rows = 0;
            for incident in &incidents {
                let mut after = 0;
                loop {
                    let page = store.chain(&incident.id, after, 8192).await.unwrap();
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    rows += page.len();
                }
            }
            read.push(rate(rows, start.elapsed()));

            let start = Instant::now();
            for bytes in &exports {
                let outcome = export::verify(bytes.as_slice(), Some(signer.public())).unwrap();
                assert!(outcome.verified(), "{outcome:?}");
            }
            file.push(rate(total, start.elapsed()));
            if std::env::var_os("VERBOSE").is_some() {
                eprintln!(
                    "round {round}: raw {:.0}/s, database {:.0}/s, export {:.0}/s",
                    raw[round], database[round], file[round]
                );
            }
        }
        let ratio = |measured: &[f64]| median(measured.iter().zip(&raw).map(|(m, r)| m / r).collect());
        println!("| measure | events per second (median of {ROUNDS}) | ratio to raw SHA-256 |");
        println!("|---|---:|---:|");
        println!("| raw SHA-256 over each event's stored JSON, in memory | {:.0} | 1.00 |", median(raw.clone()));
        println!("| `audit verify` from the database | {:.0} | {:.2} |", median(database.clone()), ratio(&database));
        println!(
            "| `audit verify --file` from an export (in memory) | {:.0} | {:.2} |",
            median(file.clone()),
            ratio(&file)
        );
        println!(
            "| reading the chain from the database, nothing checked | {:.0} | {:.2} |",
            median(read.clone()),
            ratio(&read)
        );
        store.close().await;
    });
}
