//! The tamper-evident log: every way of editing the record is caught, in the database and in an
//! export, and reported at the event where the record stops being what was written.

use std::path::{Path, PathBuf};

use phasegate::audit::chain::{self, GENESIS};
use phasegate::audit::export;
use phasegate::audit::keys::Signer;
use phasegate::audit::verify::Outcome;
use phasegate::engine::{Event, EventKind};
use phasegate::runtime::audit;
use phasegate::store::contract::{at, note, started};
use phasegate::store::{Append, SqliteStore, Store};
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

use crate::support::Cli;

const INCIDENT: &str = "inc-1";

/// The triggers that keep events and checkpoints from being changed or deleted, and the migration
/// that makes them.
const APPEND_ONLY: [&str; 4] = [
    "events_are_never_changed",
    "events_are_never_deleted",
    "checkpoints_are_never_changed",
    "checkpoints_are_never_deleted",
];
const APPEND_ONLY_MIGRATION: &str = include_str!("../../migrations/sqlite/0006_append_only.sql");

/// A closed incident of 16 events: checkpoint 1 covers events 1 to 10, checkpoint 2 all 16.
struct Fixture {
    dir: TempDir,
    signer: Signer,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let signer = audit::new_signer();
        let store = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
        let mut events = vec![started(INCIDENT, "breach", None)];
        events.extend((1..=9).map(|n| note(n, &format!("note {n}"))));
        store.append(Append::new(INCIDENT, 0, &events)).await.unwrap();
        sign(&store, &signer, 5).await;
        let mut more: Vec<Event> = (10..=14).map(|n| note(n, &format!("note {n}"))).collect();
        more.push(Event::new(at(15), "dana", EventKind::IncidentClosed { abandoned: false }));
        store.append(Append::new(INCIDENT, 10, &more)).await.unwrap();
        sign(&store, &signer, 20).await;
        store.close().await;
        Fixture { dir, signer }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("phasegate.db")
    }

    /// Runs SQL on the database, as someone with the file and no key could: the schema refuses to
    /// change or delete events and checkpoints, so they drop its triggers first (and this puts
    /// them back after, so that what follows runs on the schema as phasegate made it).
    async fn tamper(&self, statements: &[&str]) {
        let mut connection = SqliteConnection::connect(&format!("sqlite://{}", self.db().display())).await.unwrap();
        for trigger in APPEND_ONLY {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {trigger}"))).execute(&mut connection).await.unwrap();
        }
        for statement in statements {
            // The test writes these statements itself: tampering is the point.
            sqlx::query(sqlx::AssertSqlSafe(*statement))
                .execute(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        sqlx::raw_sql(APPEND_ONLY_MIGRATION).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    }

    async fn verify(&self) -> Outcome {
        let store = SqliteStore::open(self.db()).await.unwrap();
        let summary = store.incident(INCIDENT).await.unwrap().unwrap();
        let outcome = audit::verify_stored(&store, &summary, Some(self.signer.public())).await.unwrap();
        store.close().await;
        outcome
    }

    async fn export(&self) -> Vec<String> {
        let store = SqliteStore::open(self.db()).await.unwrap();
        let summary = store.incident(INCIDENT).await.unwrap().unwrap();
        let mut out = Vec::new();
        audit::export_stored(&store, &summary, &mut out).await.unwrap();
        store.close().await;
        String::from_utf8(out).unwrap().lines().map(str::to_string).collect()
    }

    fn verify_export(&self, lines: &[String]) -> Outcome {
        export::verify((lines.join("\n") + "\n").as_bytes(), Some(self.signer.public())).unwrap()
    }
}

async fn sign(store: &SqliteStore, signer: &Signer, minute: i64) {
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    audit::sign_head(store, signer, &summary, at(minute)).await.unwrap().expect("there was something to sign");
}

/// The first problem's event, checkpoint and text.
fn first(outcome: &Outcome) -> (u64, Option<u64>, String) {
    assert!(!outcome.verified(), "expected a problem, but it verified: {outcome:?}");
    let problem = &outcome.problems[0];
    (problem.event, problem.checkpoint, problem.what.clone())
}

/// The event lines of an export, by position (1-based), and the checkpoint lines.
fn event_line(lines: &[String], seq: u64) -> usize {
    lines.iter().position(|line| line.starts_with(&format!(r#"{{"type":"event","seq":{seq},"#))).unwrap()
}

#[tokio::test]
async fn an_untouched_log_verifies_in_the_database_and_in_its_export() {
    let fixture = Fixture::new().await;
    let outcome = fixture.verify().await;
    assert!(outcome.verified(), "{outcome:?}");
    assert_eq!((outcome.events, outcome.checkpoints, outcome.signed_through), (16, 2, 16));
    assert!(outcome.closed);
    assert_eq!(outcome.fingerprint.as_deref(), Some(fixture.signer.public().fingerprint()));

    let lines = fixture.export().await;
    assert_eq!(lines.len(), 1 + 16 + 2);
    assert!(lines[0].starts_with(r#"{"checkpoints":2,"events":16,"format":1,"incident":"inc-1","type":"header"}"#));
    assert!(lines[11].starts_with(r#"{"type":"checkpoint""#), "checkpoint 1 follows event 10: {}", lines[11]);
    assert_eq!(fixture.verify_export(&lines), outcome);

    // With another key, nothing signed verifies.
    let other = audit::new_signer();
    let text = lines.join("\n");
    let outcome = export::verify(text.as_bytes(), Some(other.public())).unwrap();
    assert_eq!(first(&outcome).1, Some(1));
    assert!(first(&outcome).2.contains("not by the key trusted here"), "{outcome:?}");
    let unkeyed = export::verify(text.as_bytes(), None).unwrap();
    assert!(first(&unkeyed).2.contains("no public key"), "{unkeyed:?}");
}

#[tokio::test]
async fn an_edited_event_is_reported_at_that_event() {
    let fixture = Fixture::new().await;
    let lines = fixture.export().await;
    fixture.tamper(&["UPDATE events SET event = replace(event, 'note 4', 'note X') WHERE seq = 5"]).await;
    let (event, checkpoint, what) = first(&fixture.verify().await);
    assert_eq!((event, checkpoint), (5, None), "{what}");
    assert!(what.contains("does not match its recorded hash"), "{what}");

    let mut edited = lines.clone();
    let line = event_line(&edited, 5);
    edited[line] = edited[line].replace("note 4", "note X");
    assert_eq!(first(&fixture.verify_export(&edited)).0, 5);
}

#[tokio::test]
async fn an_edit_with_every_hash_computed_again_is_caught_by_the_checkpoint() {
    let fixture = Fixture::new().await;
    fixture.tamper(&["UPDATE events SET event = replace(event, 'note 4', 'note X') WHERE seq = 5"]).await;
    // Whoever edits the database can compute hashes, but cannot sign.
    let store = SqliteStore::open(fixture.db()).await.unwrap();
    let links = store.chain(INCIDENT, 0, 100).await.unwrap();
    store.close().await;
    let mut prev = GENESIS;
    let mut statements = Vec::new();
    for link in &links {
        prev = chain::link(&prev, link.seq, link.event.as_bytes());
        statements.push(format!("UPDATE events SET hash = '{}' WHERE seq = {}", chain::to_hex(&prev), link.seq));
    }
    // The incident's head is its latest event's hash (migration 0009): rewritten with it.
    fixture.tamper(&statements.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let outcome = fixture.verify().await;
    let (event, checkpoint, what) = first(&outcome);
    assert_eq!((event, checkpoint), (10, Some(1)), "{what}");
    assert!(what.contains("signed a different event 10: an event up to 10 was changed"), "{what}");
    assert_eq!(outcome.signed_through, 0);
}

#[tokio::test]
async fn a_deleted_event_is_reported_where_it_is_missing() {
    let fixture = Fixture::new().await;
    let lines = fixture.export().await;
    fixture.tamper(&["DELETE FROM events WHERE seq = 7"]).await;
    let outcome = fixture.verify().await;
    let (event, _, what) = first(&outcome);
    assert_eq!(event, 7, "{what}");
    assert!(what.contains("missing: the log goes from event 6 to event 8"), "{what}");
    // The verdict counts what the log holds, not where checking stopped (it said 6 events).
    assert_eq!(outcome.events, 15, "{outcome:?}");

    // Deleted, and the events after it moved up to close the gap.
    fixture
        .tamper(&[
            "UPDATE events SET seq = seq + 1000 WHERE seq > 7",
            "UPDATE events SET seq = seq - 1001 WHERE seq > 1000",
        ])
        .await;
    assert_eq!(first(&fixture.verify().await).0, 7);

    let mut deleted = lines.clone();
    deleted.remove(event_line(&deleted, 7));
    assert_eq!(first(&fixture.verify_export(&deleted)).0, 7);
    let renumbered: Vec<String> = deleted
        .iter()
        .map(|line| {
            (8..=16).fold(line.clone(), |line, seq| {
                line.replace(&format!(r#""seq":{seq},"#), &format!(r#""seq":{},"#, seq - 1))
            })
        })
        .collect();
    assert_eq!(first(&fixture.verify_export(&renumbered)).0, 7);
}

#[tokio::test]
async fn an_inserted_event_is_reported_where_it_was_put() {
    let fixture = Fixture::new().await;
    let lines = fixture.export().await;
    let forged = chain::canonical(&note(6, "nothing happened here")).unwrap().replace('\'', "''");
    let hash = chain::to_hex(&chain::link(&GENESIS, 7, forged.as_bytes()));
    fixture
        .tamper(&[
            "DROP TRIGGER events_come_in_order",
            "UPDATE events SET seq = seq + 1000 WHERE seq >= 7",
            "UPDATE events SET seq = seq - 999 WHERE seq > 1000",
            &format!(
                "INSERT INTO events (incident, seq, type, at, event, hash) VALUES ('inc-1', 7, 'note_added', '2026-11-24T02:20:30.000000000Z', '{forged}', '{hash}')"
            ),
        ])
        .await;
    let (event, _, what) = first(&fixture.verify().await);
    assert_eq!(event, 7, "{what}");

    let mut inserted = lines.clone();
    let line = event_line(&inserted, 7);
    inserted.insert(line, format!(r#"{{"type":"event","seq":7,"hash":"{hash}","event":{forged}}}"#));
    assert_eq!(first(&fixture.verify_export(&inserted)).0, 7);
}

#[tokio::test]
async fn two_swapped_events_are_reported_at_the_first() {
    let fixture = Fixture::new().await;
    let lines = fixture.export().await;
    fixture
        .tamper(&[
            "UPDATE events SET seq = 1005 WHERE seq = 5",
            "UPDATE events SET seq = 5 WHERE seq = 6",
            "UPDATE events SET seq = 6 WHERE seq = 1005",
        ])
        .await;
    // Reported as a swap, and only that: the events after them and the checkpoints still hold.
    let outcome = fixture.verify().await;
    assert_eq!(first(&outcome), (5, None, "swapped with event 6: each is where the other was written".into()));
    assert_eq!((outcome.problems.len(), outcome.events, outcome.signed_through), (1, 16, 16), "{outcome:?}");

    let mut swapped = lines.clone();
    let (five, six) = (event_line(&swapped, 5), event_line(&swapped, 6));
    swapped.swap(five, six);
    // Lines swapped: event 6 comes first (this was reported as event 5 missing).
    let outcome = fixture.verify_export(&swapped);
    assert_eq!(
        first(&outcome),
        (5, None, "out of order: event 5 comes after event 6: events 5 and 6 are swapped".into()),
        "lines swapped"
    );
    assert_eq!((outcome.problems.len(), outcome.events), (1, 16), "{outcome:?}");
    // Their contents swapped, positions kept.
    let mut contents = lines.clone();
    let take = |line: &str| line.split_once(r#","event":"#).unwrap().1.to_string();
    let (a, b) = (take(&contents[five]), take(&contents[six]));
    contents[five] = contents[five].replace(&a, &b);
    contents[six] = contents[six].replace(&b, &a);
    let outcome = fixture.verify_export(&contents);
    assert_eq!(first(&outcome), (5, None, "swapped with event 6: each is where the other was written".into()));
    assert_eq!(outcome.problems.len(), 1, "contents swapped: {outcome:?}");
}

#[tokio::test]
async fn a_cut_tail_is_reported_at_the_first_missing_event() {
    let fixture = Fixture::new().await;
    let lines = fixture.export().await;
    // The incident's version and head are its latest event's (migration 0009), so they agree with
    // the cut log by themselves: only the checkpoint can tell.
    fixture.tamper(&["DELETE FROM events WHERE seq > 12"]).await;
    let outcome = fixture.verify().await;
    let (event, checkpoint, what) = first(&outcome);
    assert_eq!((event, checkpoint), (13, Some(2)), "{what}");
    assert!(what.contains("covers events 1 to 16, but the log ends at event 12"), "{what}");
    assert_eq!(outcome.signed_through, 10, "checkpoint 1 still holds");

    // The export cut after event 12, its checkpoints kept.
    let mut cut: Vec<String> = lines[..event_line(&lines, 13)].to_vec();
    cut.extend(lines.iter().filter(|line| line.contains(r#""number":2"#)).cloned());
    assert_eq!(first(&fixture.verify_export(&cut)).0, 13);
    // Cut with the last checkpoint, the header left as it was.
    let cut: Vec<String> = lines[..event_line(&lines, 13)].to_vec();
    let (event, _, what) = first(&fixture.verify_export(&cut));
    assert_eq!(event, 13, "{what}");
    // ... and with the header made to agree: the closing checkpoint is still missing.
    let mut cut = cut.clone();
    cut[0] = cut[0].replace(r#""checkpoints":2,"events":16"#, r#""checkpoints":1,"events":12"#);
    let outcome = fixture.verify_export(&cut);
    assert!(outcome.verified() && !outcome.closed && outcome.unsigned() == 2, "{outcome:?}");
}

#[tokio::test]
async fn a_closed_incident_without_a_closing_checkpoint_does_not_verify() {
    let fixture = Fixture::new().await;
    fixture.tamper(&["DELETE FROM checkpoints WHERE number = 2", "UPDATE incidents SET checkpointed = 10"]).await;
    let (event, checkpoint, what) = first(&fixture.verify().await);
    assert_eq!((event, checkpoint), (16, None), "{what}");
    assert!(what.contains("closed but no checkpoint covers its end"), "{what}");
}

#[tokio::test]
async fn a_replaced_checkpoint_is_reported() {
    let fixture = Fixture::new().await;
    let lines = fixture.export().await;
    // Its body changed to cover fewer events: the signature no longer holds.
    fixture
        .tamper(&["UPDATE checkpoints SET body = replace(body, '\"events\":10', '\"events\":9') WHERE number = 1"])
        .await;
    let (event, checkpoint, what) = first(&fixture.verify().await);
    assert_eq!((event, checkpoint), (9, Some(1)), "{what}");
    assert!(what.contains("signature does not verify"), "{what}");

    // Replaced by one signed with another key, chained and covering the right head.
    let other = audit::new_signer();
    let line = lines.iter().position(|line| line.contains(r#""number":1"#)).unwrap();
    let original: serde_json::Value = serde_json::from_str(&lines[line]).unwrap();
    let mut checkpoint: phasegate::audit::keys::Checkpoint =
        serde_json::from_value(original["checkpoint"].clone()).unwrap();
    checkpoint.key = other.public().fingerprint().to_string();
    let forged = other.sign(checkpoint);
    let mut replaced = lines.clone();
    replaced[line] =
        serde_json::json!({"type": "checkpoint", "checkpoint": forged.checkpoint, "signature": forged.signature})
            .to_string();
    let outcome = fixture.verify_export(&replaced);
    let (event, checkpoint, what) = first(&outcome);
    assert_eq!((event, checkpoint), (10, Some(1)), "{what}");
    // The key it names is not the one trusted: said with both fingerprints.
    let named = format!(
        "is signed by key {}, not by the key trusted here ({})",
        other.public().fingerprint(),
        fixture.signer.public().fingerprint()
    );
    assert!(what.contains(&named), "{what}");
    assert_eq!(outcome.signers, [other.public().fingerprint(), fixture.signer.public().fingerprint()]);
    // The next checkpoint chains to the original, so it names the break too.
    assert!(
        outcome.problems.iter().any(|p| p.checkpoint == Some(2) && p.what.contains("does not follow")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_export_that_is_not_one_is_refused_with_where() {
    let fixture = Fixture::new().await;
    assert!(matches!(export::verify("".as_bytes(), None), Err(export::Error::Header(_))));
    let error = export::verify(r#"{"type":"event"}"#.as_bytes(), None).unwrap_err().to_string();
    assert!(error.starts_with("line 1 is not a phasegate export header"), "{error}");
    let mut lines = fixture.export().await;
    lines[4] = "garbage".into();
    let (event, _, what) = first(&fixture.verify_export(&lines));
    assert_eq!(event, 4, "{what}");
    assert!(what.starts_with("line 5 is not an event or a checkpoint"), "{what}");
}

#[tokio::test]
async fn an_open_incident_verifies_with_its_unsigned_tail_named() {
    let dir = tempfile::tempdir().unwrap();
    let signer = audit::new_signer();
    let store = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    store.append(Append::new(INCIDENT, 0, &[started(INCIDENT, "breach", None), note(1, "a")])).await.unwrap();
    sign(&store, &signer, 2).await;
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    assert!(audit::sign_head(&store, &signer, &summary, at(3)).await.unwrap().is_none(), "nothing new to sign");
    store.append(Append::new(INCIDENT, 2, &[note(4, "b"), note(5, "c")])).await.unwrap();
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    let outcome = audit::verify_stored(&store, &summary, Some(signer.public())).await.unwrap();
    assert!(outcome.verified() && !outcome.closed, "{outcome:?}");
    assert_eq!((outcome.signed_through, outcome.unsigned()), (2, 2));
    store.close().await;
}

#[tokio::test]
async fn the_signer_refuses_to_vouch_for_a_tampered_log() {
    let fixture = Fixture::new().await;
    fixture
        .tamper(&[
            "UPDATE events SET event = replace(event, 'note 14', 'note X') WHERE seq = 15",
            "DELETE FROM checkpoints WHERE number = 2",
            "UPDATE incidents SET checkpointed = 10",
        ])
        .await;
    let store = SqliteStore::open(fixture.db()).await.unwrap();
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    let refused = audit::sign_head(&store, &fixture.signer, &summary, at(30)).await.unwrap_err().to_string();
    assert!(refused.contains("event 15 does not verify"), "{refused}");
    assert!(store.checkpoints(INCIDENT).await.unwrap().len() == 1);
    store.close().await;
}

#[tokio::test]
async fn the_command_line_verifies_exports_and_reports_offline() {
    let fixture = Fixture::new().await;
    let dir = fixture.dir.path();
    let key = dir.join("signing.pem");
    Cli::new().args(["keygen", key.to_str().unwrap()]).succeeds().stdout_has("fingerprint: sha256:");
    Cli::new()
        .args(["keygen", key.to_str().unwrap()])
        .status(2)
        .stderr_has("exists; phasegate does not overwrite keys");
    // The fixture was signed by its own key; check with that key's public half.
    let public = dir.join("fixture.pub");
    std::fs::write(&public, fixture.signer.public().to_pem().unwrap()).unwrap();
    let db = fixture.db();
    let common = ["--db", db.to_str().unwrap()];
    Cli::new()
        .args(["audit", "verify", INCIDENT, "--public-key", public.to_str().unwrap()])
        .args(common)
        .succeeds()
        .stdout_has(&format!(
            "inc-1: verified (16 events, 2 checkpoints, signed through event 16 by key {})",
            fixture.signer.public().fingerprint()
        ));
    let export = dir.join("inc-1.jsonl");
    Cli::new().args(["audit", "export", INCIDENT, "-o", export.to_str().unwrap()]).args(common).succeeds();
    let offline = ["audit", "verify", "--file", export.to_str().unwrap(), "--public-key", public.to_str().unwrap()];
    Cli::new().args(offline).current_dir(Path::new("/")).succeeds().stdout_has("inc-1: verified");
    let wrong = dir.join("signing.pem.pub");
    Cli::new()
        .args(["audit", "verify", "--file", export.to_str().unwrap(), "--public-key", wrong.to_str().unwrap()])
        .status(1)
        .stdout_has("inc-1: NOT VERIFIED")
        .stdout_has(&format!(
            "checkpoint 1 (event 10): is signed by key {}, not by the key trusted here (sha256:",
            fixture.signer.public().fingerprint()
        ));

    let report = dir.join("report.html");
    Cli::new()
        .args(["report", INCIDENT, "--format", "html", "-o", report.to_str().unwrap()])
        .args(["--public-key", public.to_str().unwrap()])
        .args(common)
        .succeeds();
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains(fixture.signer.public().fingerprint()), "{html}");

    fixture.tamper(&["UPDATE events SET event = replace(event, 'note 4', 'note X') WHERE seq = 5"]).await;
    Cli::new()
        .args(["report", INCIDENT, "--public-key", public.to_str().unwrap()])
        .args(common)
        .succeeds()
        .stdout_has("- First problem: **event 5: does not match its recorded hash");
    Cli::new()
        .args(["audit", "verify", "--all", "--public-key", public.to_str().unwrap(), "--format", "json"])
        .args(common)
        .status(1)
        .stdout_has(r#""event": 5"#);
    Cli::new().args(offline).succeeds();
    // Regression (issue 12's user test): an unknown incident exited 2 here, 1 for `status`.
    Cli::new().args(["audit", "verify", "inc-404"]).args(common).status(1).stderr_has("no incident `inc-404`");
    Cli::new()
        .args(["audit", "verify", "--file", "/nonexistent.jsonl"])
        .status(2)
        .stderr_has("cannot open `/nonexistent.jsonl`");
}

/// docs/audit.md is enough to check a log: `scripts/verify-export.py`, written from it in Python
/// (hashlib, json and the `cryptography` package), agrees with phasegate on an untouched export
/// and on a tampered one. The events carry what canonical JSON is hard about: non-ASCII text,
/// escapes, and numbers in every ECMAScript form.
#[tokio::test]
async fn a_verifier_written_from_the_documentation_agrees() {
    let Some(interpreter) = crate::support::python_or_skip(&["cryptography"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let signer = audit::new_signer();
    let store = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    let mut start = started(INCIDENT, "breach", None);
    if let EventKind::IncidentStarted { inputs, .. } = &mut start.kind {
        let numbers = serde_json::json!([1e21, 1e-7, 0.1, -0.0, 123456789012.5, 1e300, 5e-324, 100, -7, 0.000001]);
        inputs.insert("numbers".into(), numbers);
        inputs.insert("\u{e9}t\u{e9} \u{1f600}".into(), serde_json::json!({"\u{20ac}": 1, "\r": 2, "\u{fb33}": 3}));
    }
    let events = [
        start,
        note(1, "tills \"open\" \\ caf\u{e9} \u{2028} \u{1f6d2}\ttab\u{7}bell"),
        Event::new(at(2), "dana", EventKind::IncidentClosed { abandoned: false }),
    ];
    store.append(Append::new(INCIDENT, 0, &events)).await.unwrap();
    sign(&store, &signer, 3).await;
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    let export = dir.path().join("export.jsonl");
    audit::export_stored(&store, &summary, std::fs::File::create(&export).unwrap()).await.unwrap();
    store.close().await;
    let public = dir.path().join("key.pub");
    std::fs::write(&public, signer.public().to_pem().unwrap()).unwrap();

    let python = |export: &Path| {
        let output = std::process::Command::new(&interpreter)
            .arg(crate::support::root().join("scripts/verify-export.py"))
            .args([export, &public])
            .output()
            .expect("python runs (`python_or_skip` found it)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("ModuleNotFoundError"), "{stderr}");
        (output.status.code(), format!("{}{stderr}", String::from_utf8_lossy(&output.stdout)))
    };
    let (status, stdout) = python(&export);
    assert_eq!(status, Some(0), "{stdout}");
    assert!(stdout.starts_with("verified"), "{stdout}");

    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replace("caf\u{e9}", "cafe")).unwrap();
    let (status, stdout) = python(&tampered);
    assert_eq!((status, stdout.as_str()), (Some(1), "event 2: does not match its recorded hash\n"));
    let outcome =
        export::verify(std::io::BufReader::new(std::fs::File::open(&tampered).unwrap()), Some(signer.public()));
    assert_eq!(first(&outcome.unwrap()).0, 2, "phasegate agrees");
}

/// A database written before the chain existed (migration 0002) has events without hashes, in
/// whatever JSON was written then; opening it chains them, in canonical form.
#[tokio::test]
async fn events_stored_before_the_chain_are_chained_when_the_database_opens() {
    let fixture = Fixture::new().await;
    let pretty = serde_json::to_string_pretty(&note(3, "written before the chain")).unwrap().replace('\'', "''");
    fixture
        .tamper(&[
            "DELETE FROM checkpoints",
            "UPDATE incidents SET checkpointed = 0, checkpointed_at = NULL",
            "UPDATE events SET hash = NULL",
            &format!("UPDATE events SET event = '{pretty}' WHERE seq = 4"),
        ])
        .await;
    let store = SqliteStore::open(fixture.db()).await.unwrap();
    let links = store.chain(INCIDENT, 0, 100).await.unwrap();
    assert!(links.iter().all(|link| link.hash.is_some()), "every event has its hash");
    assert_eq!(links[3].event, chain::canonical(&note(3, "written before the chain")).unwrap());
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    assert_eq!(summary.head, links[15].hash);
    // Nothing was signed back then, so the closed incident is not vouched for until it is signed.
    let outcome = audit::verify_stored(&store, &summary, Some(fixture.signer.public())).await.unwrap();
    assert_eq!(
        first(&outcome).2,
        "the incident is closed but no checkpoint covers its end: events may have been cut off"
    );
    audit::sign_head(&store, &fixture.signer, &summary, at(40)).await.unwrap().unwrap();
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    assert!(audit::verify_stored(&store, &summary, Some(fixture.signer.public())).await.unwrap().verified());
    store.close().await;
}

/// The schema refuses to change or delete a stored event or checkpoint (only inserts were
/// guarded): an `UPDATE` or a `DELETE` through a plain connection is refused, and the log still
/// verifies. Inserting out of order stays refused too.
#[tokio::test]
async fn the_schema_refuses_to_change_or_delete_events_and_checkpoints() {
    let fixture = Fixture::new().await;
    let mut connection = SqliteConnection::connect(&format!("sqlite://{}", fixture.db().display())).await.unwrap();
    let refused = [
        ("UPDATE events SET event = replace(event, 'note 4', 'note X') WHERE seq = 5", "never changed"),
        ("UPDATE events SET hash = NULL WHERE seq = 5", "never changed"),
        ("UPDATE events SET seq = seq + 1000 WHERE seq = 16", "never changed"),
        ("DELETE FROM events WHERE seq = 16", "never deleted"),
        ("DELETE FROM events", "never deleted"),
        ("UPDATE checkpoints SET signature = '00' WHERE number = 1", "never changed"),
        ("DELETE FROM checkpoints WHERE number = 2", "never deleted"),
    ];
    for (statement, why) in refused {
        let error = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await.unwrap_err().to_string();
        assert!(error.contains("append-only") && error.contains(why), "{statement}: {error}");
    }
    connection.close().await.unwrap();
    let outcome = fixture.verify().await;
    assert!(outcome.verified() && outcome.events == 16, "{outcome:?}");
}

/// `audit verify` changes nothing. It opened the database for writing, and opening chained the
/// events that had no hash: it rewrote the evidence it was checking, then vouched for the
/// rewrite. Now it reads the file without changing a byte and reports those events as not
/// chained.
#[tokio::test]
async fn audit_verify_leaves_the_database_as_it_found_it_and_names_unchained_events() {
    let fixture = Fixture::new().await;
    fixture
        .tamper(&[
            "DELETE FROM checkpoints",
            "UPDATE incidents SET checkpointed = 0, checkpointed_at = NULL",
            "UPDATE events SET hash = NULL WHERE seq > 12",
        ])
        .await;
    let public = fixture.dir.path().join("fixture.pub");
    std::fs::write(&public, fixture.signer.public().to_pem().unwrap()).unwrap();
    let before = std::fs::read(fixture.db()).unwrap();
    let db = fixture.db();
    let verify = ["audit", "verify", INCIDENT, "--db", db.to_str().unwrap(), "--public-key", public.to_str().unwrap()];
    Cli::new()
        .args(verify)
        .status(1)
        .stdout_has("inc-1: NOT VERIFIED (16 events, 0 checkpoints")
        .stdout_has("event 13: is not chained, nor are the 3 events after it: no hash was recorded");
    Cli::new().args(verify).args(["--format", "json"]).status(1).stdout_has(r#""unchained": 4"#);
    Cli::new().args(["audit", "verify", "--all", "--db", db.to_str().unwrap()]).status(1);
    Cli::new()
        .args(["audit", "export", INCIDENT, "--db", db.to_str().unwrap()])
        .succeeds()
        .stdout_has(r#""hash":null"#);
    Cli::new().args(["report", INCIDENT, "--db", db.to_str().unwrap()]).succeeds().stdout_has("not chained");
    assert!(std::fs::read(fixture.db()).unwrap() == before, "the database file changed");
    // A store opened read-only refuses to write.
    let store = SqliteStore::open_read_only(fixture.db()).await.unwrap();
    let refused = store.append(Append::new(INCIDENT, 16, &[note(30, "x")])).await.unwrap_err();
    assert!(matches!(refused, phasegate::store::Error::ReadOnly), "{refused}");
    store.close().await;
    assert!(std::fs::read(fixture.db()).unwrap() == before, "the database file changed");

    // A command that writes chains them, and says so.
    Cli::new()
        .args(["run", "--db", db.to_str().unwrap()])
        .succeeds()
        .stderr_has("note: chained 4 events of 1 incident(s) stored before the hash chain existed");
    let outcome = fixture.verify().await;
    assert_eq!((outcome.unchained, outcome.events), (0, 16), "{outcome:?}");
    let store = SqliteStore::open(fixture.db()).await.unwrap();
    assert_eq!(store.chained(), phasegate::store::Chained::default(), "nothing is left to chain");
    store.close().await;
}

/// `phasegate keygen` writes a private key that OpenSSL 3 and Python's `cryptography` read, as
/// docs/audit.md promises: it wrote PKCS#8 version 2 (the public key embedded), which neither
/// reads. Both find the same public key as phasegate's fingerprint.
#[tokio::test]
async fn keygen_writes_a_key_that_openssl_and_python_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.pem");
    let output = Cli::new().args(["keygen", key.to_str().unwrap()]).succeeds().stdout();
    let fingerprint = output.lines().find_map(|line| line.strip_prefix("fingerprint: ")).unwrap().to_string();
    let public = std::fs::read_to_string(dir.path().join("signing.pem.pub")).unwrap();
    if let Some(openssl) = crate::support::program_or_skip(&["openssl"], "OpenSSL", "`apt-get install openssl`") {
        let read = std::process::Command::new(&openssl)
            .args(["pkey", "-in"])
            .arg(&key)
            .args(["-noout", "-text"])
            .output()
            .unwrap();
        assert!(read.status.success(), "openssl pkey: {}", String::from_utf8_lossy(&read.stderr));
        assert!(String::from_utf8_lossy(&read.stdout).contains("ED25519 Private-Key"), "{read:?}");
        let derived =
            std::process::Command::new(&openssl).args(["pkey", "-in"]).arg(&key).arg("-pubout").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&derived.stdout), public, "openssl derives the same public key");
    }
    let Some(python) = crate::support::python_or_skip(&["cryptography"]) else { return };
    let script = "import sys, hashlib\n\
        from cryptography.hazmat.primitives import serialization as s\n\
        key = s.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)\n\
        raw = key.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)\n\
        print('sha256:' + hashlib.sha256(raw).hexdigest())\n";
    let read = std::process::Command::new(&python).args(["-c", script]).arg(&key).output().unwrap();
    assert!(read.status.success(), "python: {}", String::from_utf8_lossy(&read.stderr));
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), fingerprint);
}

/// An unsigned deployment (no key, so no checkpoint): every closed incident failed verification
/// ("no checkpoint covers its end"). Without a key and without checkpoints, verification checks
/// the hash chain and says plainly that nothing vouches for the log; an edit is still caught.
#[tokio::test]
async fn an_unsigned_log_verifies_as_a_chain_and_says_it_is_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phasegate.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let events = [
        started(INCIDENT, "breach", None),
        note(1, "a"),
        Event::new(at(2), "dana", EventKind::IncidentClosed { abandoned: false }),
    ];
    store.append(Append::new(INCIDENT, 0, &events)).await.unwrap();
    let summary = store.incident(INCIDENT).await.unwrap().unwrap();
    let outcome = audit::verify_stored(&store, &summary, None).await.unwrap();
    store.close().await;
    assert!(outcome.verified() && outcome.unsigned_log && outcome.closed, "{outcome:?}");
    let verify = ["audit", "verify", INCIDENT, "--db", db.to_str().unwrap()];
    Cli::new()
        .args(verify)
        .succeeds()
        .stdout_has("inc-1: UNSIGNED, chain intact (3 events, 0 checkpoints): no key signed this log");
    Cli::new()
        .args(["report", INCIDENT, "--db", db.to_str().unwrap()])
        .succeeds()
        .stdout_has("- Result: **UNSIGNED**: the hash chain verifies, but no key signed the log");
    let fixture = Fixture { dir, signer: audit::new_signer() };
    fixture.tamper(&["UPDATE events SET event = replace(event, '\"a\"', '\"b\"') WHERE seq = 2"]).await;
    Cli::new().args(verify).status(1).stdout_has("event 2: does not match its recorded hash");
}
