//! The witness: each signed checkpoint copied outside the database (a file, a webhook), and
//! `audit verify --witness` catching a log cut back to an earlier checkpoint, which checkpoints
//! alone cannot.

use std::path::{Path, PathBuf};

use phasegate::audit::keys::Checkpoint;
use phasegate::audit::witness;
use phasegate::runtime::audit;
use phasegate::store::contract::{at, note, started};
use phasegate::store::{Append, SqliteStore, Store};
use sqlx::{Connection, SqliteConnection};

use crate::support::{Cli, Reply, Stub};

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: lost-laptop
title: Lost laptop
roles:
  soc-analyst: {}
rights: { close: [soc-analyst] }
phases:
  - id: contain
    title: Contain
    steps:
      - id: wipe
        manual: { instructions: Wipe the laptop remotely, assignee: soc-analyst }
"#;

/// What an attacker with the database file and no key does to cut incident `id` back to its
/// first checkpoint: drop the triggers that refuse deletes, delete every later event and
/// checkpoint, and make the incident's row agree (open again, checkpointed as of the first
/// checkpoint; its version and head are its latest event's). (The triggers are put back after, as
/// a careful attacker would.)
fn cut_back(id: &str) -> Vec<String> {
    let first = format!("(SELECT events, at FROM checkpoints WHERE incident = '{id}' AND number = 1)");
    let mut statements = drop_the_triggers();
    statements.extend([
        format!(
            "DELETE FROM events WHERE incident = '{id}' AND seq > (SELECT events FROM checkpoints WHERE incident = \
             '{id}' AND number = 1)"
        ),
        format!("DELETE FROM checkpoints WHERE incident = '{id}' AND number > 1"),
        format!(
            "UPDATE incidents SET closed_at = NULL, checkpointed = (SELECT events FROM {first}), checkpointed_at = \
             (SELECT at FROM {first}) WHERE id = '{id}'"
        ),
    ]);
    statements
}

/// The triggers that refuse to change or delete events and checkpoints, dropped.
fn drop_the_triggers() -> Vec<String> {
    [
        "events_are_never_changed",
        "events_are_never_deleted",
        "checkpoints_are_never_changed",
        "checkpoints_are_never_deleted",
    ]
    .map(|trigger| format!("DROP TRIGGER {trigger}"))
    .into()
}

async fn tamper(db: &Path, statements: &[String]) {
    let mut connection = SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    for statement in statements {
        // The test writes these statements itself: tampering is the point.
        sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    sqlx::raw_sql(include_str!("../../migrations/sqlite/0006_append_only.sql")).execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
}

/// A working directory with the runbook, a signing key and a configuration naming `witness`.
struct Desk {
    dir: tempfile::TempDir,
}

impl Desk {
    fn new(witness: &str) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lost-laptop.yaml"), RUNBOOK).unwrap();
        Cli::new().current_dir(dir.path()).args(["keygen", "keys/phasegate.pem"]).succeeds();
        let config = format!(
            "database: phasegate.db\npeople:\n  dana: {{ roles: [soc-analyst] }}\naudit:\n  signing_key: \
             keys/phasegate.pem\n{witness}"
        );
        std::fs::write(dir.path().join("phasegate.yaml"), config).unwrap();
        Desk { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cli(&self, args: &[&str]) -> Cli {
        Cli::new().current_dir(self.dir.path()).args(args)
    }

    /// Starts an incident, does its one step and closes it: checkpoint 1 at the start, 2 at the close.
    fn closed_incident(&self) -> String {
        let mut started = self.cli(&["start", "lost-laptop.yaml", "--as", "dana"]).succeeds();
        let id = started.stdout().trim().to_string();
        self.cli(&["done", &id, "contain/wipe", "--as", "dana"]).succeeds();
        self.cli(&["close", &id, "--as", "dana"]).succeeds();
        id
    }
}

/// The attack the witness is for. A closed incident is cut back to its first checkpoint by
/// someone who can write the database: without a witness what is left verifies, as an open
/// incident (the limit docs/audit.md states); with the witness file it fails, naming the
/// checkpoint, the events witnessed and the events left, in the database and in an export.
/// Verifying changes neither the database nor the witness.
#[tokio::test]
async fn a_closed_incident_cut_back_verifies_without_the_witness_and_fails_with_it() {
    let desk = Desk::new("  witness:\n    file: witness.jsonl\n");
    let id = desk.closed_incident();
    let witness_file = desk.path("witness.jsonl");
    let witness_path = witness_file.to_str().unwrap();
    let lines = std::fs::read_to_string(&witness_file).unwrap();
    assert_eq!(lines.lines().count(), 2, "a checkpoint at the start and one at the close: {lines}");
    let mut verified = desk.cli(&["audit", "verify", &id, "--witness", witness_path]).succeeds();
    let total = verified.stdout().split(" events").next().unwrap().rsplit('(').next().unwrap().parse::<u64>().unwrap();
    verified.stdout_has(&format!("the witness saw checkpoints through 2 (events 1 to {total})"));

    let db = desk.path("phasegate.db");
    tamper(&db, &cut_back(&id)).await;
    let before = (std::fs::read(&db).unwrap(), std::fs::read(&witness_file).unwrap());

    // Without the witness: the limit. It verifies, as an open incident signed to its end.
    let mut alone = desk.cli(&["audit", "verify", &id]).succeeds();
    let kept = alone.stdout().split(" events").next().unwrap().rsplit('(').next().unwrap().parse::<u64>().unwrap();
    assert!(kept < total, "{}", alone.stdout());
    alone.stdout_has(&format!("{id}: verified ({kept} events, 1 checkpoint, signed through event {kept}"));

    // With it: caught, and said with the numbers.
    let expected = format!(
        "checkpoint 2 (event {}): was witnessed (witness line 2) covering events 1 to {total}, but the log has {kept} \
         events and 1 checkpoint: it was cut back, events {} to {total} are missing",
        kept + 1,
        kept + 1
    );
    desk.cli(&["audit", "verify", &id, "--witness", witness_path])
        .fails()
        .stdout_has(&format!("{id}: NOT VERIFIED ({kept} events, 1 checkpoint"))
        .stdout_has(&expected);
    desk.cli(&["audit", "verify", "--all", "--witness", witness_path]).fails().stdout_has(&expected);
    let json = desk.cli(&["audit", "verify", &id, "--witness", witness_path, "--format", "json"]).fails().stdout();
    let outcome: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(outcome[0]["witness"], serde_json::json!({ "lines": 2, "checkpoint": 2, "events": total }));
    assert_eq!(outcome[0]["problems"][0]["checkpoint"], 2);

    // An export of the cut log, checked offline: the same.
    let export = desk.path("cut.jsonl");
    desk.cli(&["audit", "export", &id, "-o", export.to_str().unwrap()]).succeeds();
    let public = desk.path("keys/phasegate.pem.pub");
    let offline = ["audit", "verify", "--file", export.to_str().unwrap(), "--public-key", public.to_str().unwrap()];
    desk.cli(&offline).succeeds();
    desk.cli(&[&offline[..], &["--witness", witness_path]].concat()).fails().stdout_has(&expected);

    let after = (std::fs::read(&db).unwrap(), std::fs::read(&witness_file).unwrap());
    assert!(before == after, "verifying changed the database or the witness");

    // The whole incident deleted: the witness still knows it.
    let mut gone = drop_the_triggers();
    gone.extend([
        format!("DELETE FROM events WHERE incident = '{id}'"),
        format!("DELETE FROM checkpoints WHERE incident = '{id}'"),
        format!("DELETE FROM incidents WHERE id = '{id}'"),
    ]);
    tamper(&db, &gone).await;
    let missing = format!(
        "checkpoint 1 (event 1): was witnessed (witness line 1) covering events 1 to {kept}, but the log has 0 events \
         and 0 checkpoints: it was cut back, events 1 to {kept} are missing"
    );
    desk.cli(&["audit", "verify", "--all", "--witness", witness_path]).fails().stdout_has(&missing);
    desk.cli(&["audit", "verify", &id, "--witness", witness_path]).fails().stdout_has(&missing);
}

/// Lines of a witness file that do not read are each named by their line number (the good ones
/// are still used), and the verdict fails: a witness with holes cannot vouch for anything.
#[tokio::test]
async fn bad_witness_lines_are_reported_with_their_line_numbers() {
    let desk = Desk::new("  witness:\n    file: witness.jsonl\n");
    let id = desk.closed_incident();
    let witness_file = desk.path("witness.jsonl");
    let good = std::fs::read_to_string(&witness_file).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    let cut_short = &lines[1][..40];
    lines.insert(1, "not json at all");
    lines.push(cut_short);
    // Ending in the line cut short, without a line break, as a crash mid-write leaves it.
    std::fs::write(&witness_file, lines.join("\n")).unwrap();
    let path = witness_file.display().to_string();
    let mut verify = desk
        .cli(&["audit", "verify", &id, "--witness", &path])
        .fails()
        .stderr_has(&format!("error: witness `{path}` line 2: is not a checkpoint line"))
        .stderr_has(&format!("error: witness `{path}` line 4: ends before the checkpoint does (cut short?)"))
        // The readable lines were still compared: the log matches them.
        .stdout_has("the witness saw checkpoints through 2");
    assert!(!verify.stderr().contains("line 1:") && !verify.stderr().contains("line 3:"), "{}", verify.stderr());
    // A file phasegate writes to again after a line was cut short puts the next line on its own.
    let mut started = desk.cli(&["start", "lost-laptop.yaml", "--as", "dana"]).succeeds();
    let second = started.stdout().trim().to_string();
    let text = std::fs::read_to_string(&witness_file).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.contains(&second) && last.starts_with(r#"{"type":"checkpoint""#), "{text}");
    desk.cli(&["audit", "verify", &second, "--witness", &path]).fails().stdout_has(&format!("{second}: verified"));
}

/// A witnessed checkpoint that is not the log's (a checkpoint of the same number signed over
/// another head) is reported, as is a witness line whose signature does not verify.
#[tokio::test]
async fn a_witnessed_checkpoint_unlike_the_logs_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    let signer = audit::new_signer();
    let events = [started("inc-1", "breach", None), note(1, "a"), note(2, "b")];
    store.append(Append::new("inc-1", 0, &events)).await.unwrap();
    let summary = store.incident("inc-1").await.unwrap().unwrap();
    let signed = audit::sign_head(&store, &signer, &summary, at(3)).await.unwrap().unwrap();
    let summary = store.incident("inc-1").await.unwrap().unwrap();
    let other = signer.sign(Checkpoint { head: "ab".repeat(32), ..signed.checkpoint.clone() });
    let mut forged = signed.clone();
    forged.checkpoint.events = 2;
    let text = [&signed, &other, &forged].map(witness::line).join("\n");
    let read = witness::read(text.as_bytes()).unwrap();
    let outcome =
        audit::verify_stored_witnessed(&store, &summary, Some(signer.public()), Some(read.of("inc-1"))).await.unwrap();
    store.close().await;
    let problems: Vec<String> = outcome.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().all(|problem| !problem.contains("  ")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with(
            "checkpoint 1 (event 3): is not the one witnessed (witness line 2): the log's \
             covers events 1 to 3 with head"
        ) && p.ends_with("the witnessed one events 1 to 3 with head abababababab")),
        "{problems:?}"
    );
    assert!(
        problems.contains(&format!(
            "checkpoint 1 (event 2): witness line 3: its signature does not verify with key {}, so it proves nothing",
            signer.public().fingerprint()
        )),
        "{problems:?}"
    );
}

/// A webhook witness gets each checkpoint as a POST of the witness line, through the outbound
/// policy, with its secret header; one that fails is logged loudly and tried again, and the
/// command that signed was not held up by it: the incident started and its id was printed.
#[test]
fn a_webhook_witness_that_fails_is_tried_again_and_the_command_goes_on() {
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let stub = Stub::start(move |_| {
        if failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::empty(503)
        } else {
            Reply::empty(204)
        }
    });
    let witness = format!(
        "  witness:\n    webhook:\n      url: {}/witness\n      headers: {{ Authorization: {{ secret: W, prefix: \"Bearer \
         \" }} }}\nsecrets:\n  W: {{ env: PGTEST_WITNESS_TOKEN }}\noutbound:\n  allow: [127.0.0.1]\n",
        stub.base()
    );
    let desk = Desk::new(&witness);
    let mut started =
        desk.cli(&["start", "lost-laptop.yaml", "--as", "dana"]).env("PGTEST_WITNESS_TOKEN", "w-token-1234").succeeds();
    let id = started.stdout().trim().to_string();
    assert!(id.starts_with("inc-"), "{id}");
    let mut started = started
        .stderr_has(&format!(
            "error: cannot write checkpoint 1 of incident `{id}` to the witness webhook `http://127.0.0.1"
        ))
        .stderr_has("it answered 503; it is kept and tried again")
        .stderr_has("is written again; what it missed has been caught up");
    assert!(!started.stderr().contains("w-token-1234"), "{}", started.stderr());
    let received = stub.received();
    assert_eq!(received.len(), 2, "{received:?}");
    for request in &received {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/witness"));
        assert_eq!(request.header("authorization"), Some("Bearer w-token-1234"));
        assert_eq!(request.header("idempotency-key"), Some(format!("{id}/checkpoint-1").as_str()));
    }
    // What the webhook received is a witness file's line: kept as one, it verifies the log.
    let kept = desk.path("received.jsonl");
    std::fs::write(&kept, format!("{}\n", received[1].body)).unwrap();
    desk.cli(&["audit", "verify", &id, "--witness", kept.to_str().unwrap()])
        .succeeds()
        .stdout_has("the witness saw checkpoints through 1");
}

/// `serve` says in its log what the audit configuration leaves open: no key (nothing vouches
/// for a log's end), or a key and no witness (a log can be cut back unseen); with both, neither.
#[test]
fn serve_warns_when_the_log_is_unsigned_or_unwitnessed() {
    use std::io::BufRead as _;
    let serve_log = |desk: &Desk| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phasegate"))
            .current_dir(desk.dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--config", "phasegate.yaml"])
            .env_remove("PHASEGATE_CONFIG")
            .env_remove("PHASEGATE_DB")
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut log = String::new();
        // Up to the line that says it listens (or the end, if it stopped): the warnings come first.
        for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains("listening") {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(log.contains("listening"), "{log}");
        log
    };
    let witnessed = Desk::new("  witness:\n    file: witness.jsonl\n");
    let log = serve_log(&witnessed);
    assert!(!log.contains("WARN"), "{log}");
    let unwitnessed = Desk::new("");
    let log = serve_log(&unwitnessed);
    assert!(log.contains("no `audit.witness` is configured: whoever can write the database can cut"), "{log}");
    let unsigned = Desk::new("");
    let config = std::fs::read_to_string(unsigned.path("phasegate.yaml")).unwrap();
    std::fs::write(unsigned.path("phasegate.yaml"), config.replace("audit:\n  signing_key: keys/phasegate.pem\n", ""))
        .unwrap();
    let log = serve_log(&unsigned);
    assert!(log.contains("no `audit.signing_key` is configured, so nothing signs incidents' logs"), "{log}");
    assert!(!log.contains("audit.witness"), "{log}");
}
