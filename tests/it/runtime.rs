//! The runtime over the SQLite store: commands are decided on the stored state, effects are
//! stored with the events that cause them, carried out, and their results recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use phasegate::engine::{Command, Directory, Effect, EffectKind, Event, Incident, Outcome};
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;
use phasegate::runtime::{Executor, Runtime};
use phasegate::store::{SqliteStore, Store};
use serde_json::json;

pub const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: rotate
title: Rotate credentials
roles:
  commander: {}
rights: { close: [commander], abandon: [commander] }
phases:
  - id: contain
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts }
      - id: rotate
        retry: { attempts: 2, backoff: 1s }
        http: { url: "https://idp.example/rotate" }
"#;

/// Answers every http effect with `status` and remembers what it was asked.
struct Fake {
    status: u16,
    seen: Mutex<Vec<(String, String)>>,
}

impl Executor for Fake {
    async fn carry_out(&self, effect: &Effect, _: &Runbook, _: &Incident, _: &[Event], _: DateTime<Utc>) -> Outcome {
        if let EffectKind::Http { idempotency_key, .. } = &effect.kind {
            self.seen.lock().unwrap().push((effect.id.clone(), idempotency_key.clone()));
        }
        Outcome::Http { status: self.status, headers: BTreeMap::new(), body: json!({}) }
    }

    async fn send_campaign_batch(
        &self,
        _: phasegate::actions::campaign::BatchJob<'_>,
    ) -> phasegate::actions::campaign::BatchSent {
        let error = "this test's executor sends no campaigns".to_string();
        phasegate::actions::campaign::BatchSent {
            answer: phasegate::actions::campaign::Answer::Failed {
                error,
                class: phasegate::campaign::FailureClass::Local,
            },
            leaves: Vec::new(),
        }
    }
}

async fn runtime(dir: &tempfile::TempDir) -> Runtime<SqliteStore, Catalog> {
    let store = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["commander"])]))
}

pub fn done(step: &str) -> Command {
    Command::CompleteStep {
        phase: "contain".into(),
        step: step.into(),
        evidence: Some("done".into()),
        outputs: BTreeMap::new(),
    }
}

#[tokio::test]
async fn effects_are_stored_then_carried_out_then_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    runtime.submit(&id, "dana", done("isolate")).await.unwrap();
    assert_eq!(runtime.store().pending_effects(10).await.unwrap().len(), 1, "the http step waits in the outbox");

    let fake = Fake { status: 200, seen: Mutex::new(Vec::new()) };
    let progress = runtime.run_due(&fake).await.unwrap();
    assert_eq!(progress.effects, 1);
    assert!(runtime.store().pending_effects(10).await.unwrap().is_empty());
    let loaded = runtime.load(&id).await.unwrap();
    assert_eq!(loaded.incident.phase("contain").status.as_str(), "done");
    assert_eq!(fake.seen.lock().unwrap().len(), 1);

    // Nothing more is due: a second pass does nothing.
    assert_eq!(runtime.run_due(&fake).await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_refused_command_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let before = runtime.store().events(&id).await.unwrap();
    assert!(runtime.submit(&id, "mallory", done("isolate")).await.is_err());
    assert!(runtime.submit(&id, "dana", done("rotate")).await.is_err());
    assert_eq!(runtime.store().events(&id).await.unwrap(), before);
    assert!(runtime.submit("inc-nope", "dana", done("isolate")).await.is_err());
}

#[tokio::test]
async fn racing_commands_are_both_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(runtime(&dir).await);
    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let notes = (0..20).map(|n| {
        let runtime = runtime.clone();
        let id = id.clone();
        tokio::spawn(async move { runtime.submit(&id, "dana", Command::Note { text: format!("note {n}") }).await })
    });
    for note in notes {
        note.await.unwrap().unwrap();
    }
    let events = runtime.store().events(&id).await.unwrap();
    let mut texts: Vec<String> =
        events.iter().filter_map(|e| e.reason.clone()).filter(|r| r.starts_with("note ")).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 20, "every note is recorded exactly once");
    assert_eq!(Incident::from_events(&events).unwrap().version as usize, events.len());
}

#[tokio::test]
async fn the_runbook_is_pinned_by_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let loaded = runtime.load(&id).await.unwrap();
    assert_eq!(&*loaded.incident.runbook_text, RUNBOOK);
    assert_eq!(loaded.incident.runbook_sha256, phasegate::engine::decide::sha256_hex(RUNBOOK));
}

#[tokio::test]
async fn a_runtime_sees_what_another_process_appended() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime(&dir).await;
    let (id, _) = first.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    first.submit(&id, "dana", Command::Note { text: "from the first".into() }).await.unwrap();
    // A second runtime on the same file, as `phasegate run` beside a person's `phasegate done`.
    let second = runtime(&dir).await;
    second.submit(&id, "dana", done("isolate")).await.unwrap();
    // The first runtime's cached state catches up before it decides: the step is done already.
    let refused = first.submit(&id, "dana", done("isolate")).await;
    assert!(matches!(refused, Err(phasegate::runtime::Error::Refused(_))), "{:?}", refused.map(|d| d.events));
    first.submit(&id, "dana", Command::Note { text: "after".into() }).await.unwrap();
    let events = first.store().events(&id).await.unwrap();
    assert_eq!(Incident::from_events(&events).unwrap().phase("contain").steps["isolate"].status.as_str(), "done");
}

/// Regression: a runbook parsed for reading a pinned incident (templates not checked) was served
/// from the cache to `start`, which must check the templates.
#[tokio::test]
async fn start_checks_templates_even_after_reading_an_incident_of_the_same_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/note.md"), "{{ incident.id }}").unwrap();
    let text = format!(
        "{RUNBOOK}channels:\n  out: {{ stdout: {{}} }}\naudiences:\n  team: {{ template: note, channels: [out] }}\n"
    );
    let people = Directory::with(&[("dana", &["commander"])]);
    let with_template = Runtime::new(
        SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap(),
        Catalog::with_dir(&dir.path().join("templates")).unwrap(),
        people.clone(),
    );
    let (id, _) = with_template.start(&text, "dana", BTreeMap::new(), None).await.unwrap();

    let without = runtime(&dir).await;
    without.load(&id).await.unwrap();
    let refused = without.start(&text, "dana", BTreeMap::new(), None).await;
    assert!(matches!(refused, Err(phasegate::runtime::Error::InvalidRunbook(_))), "{:?}", refused.map(|(id, _)| id));
}

#[tokio::test]
async fn heads_are_signed_at_the_start_every_interval_and_at_the_close() {
    use phasegate::runtime::audit;
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(Mutex::new(DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().to_utc()));
    let clock = Arc::clone(&now);
    let signer = Arc::new(audit::new_signer());
    let runtime = runtime(&dir)
        .await
        .with_clock(move || *clock.lock().unwrap())
        .with_signer(Arc::clone(&signer), chrono::Duration::minutes(10));
    let advance = |minutes: i64| *now.lock().unwrap() += chrono::Duration::minutes(minutes);
    let checkpoints = |id: String| {
        let store = runtime.store();
        async move {
            let summary = store.incident(&id).await.unwrap().unwrap();
            (store.checkpoints(&id).await.unwrap().len(), summary.checkpointed, summary.version)
        }
    };
    let note = |text: &str| Command::Note { text: text.into() };

    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let (count, covered, version) = checkpoints(id.clone()).await;
    assert_eq!((count, covered), (1, version), "signed as it starts");
    advance(1);
    runtime.submit(&id, "dana", note("one minute in")).await.unwrap();
    assert_eq!(checkpoints(id.clone()).await.0, 1, "not again within the interval");
    advance(10);
    runtime.submit(&id, "dana", note("eleven minutes in")).await.unwrap();
    let (count, covered, version) = checkpoints(id.clone()).await;
    assert_eq!((count, covered), (2, version), "again once the interval has passed");
    advance(1);
    runtime.submit(&id, "dana", note("twelve minutes in")).await.unwrap();
    // Abandoned (closed before its phase is done): a close all the same, signed at once.
    runtime.submit(&id, "dana", Command::Abandon { reason: "contained by the vendor".into() }).await.unwrap();
    let (count, covered, version) = checkpoints(id.clone()).await;
    assert_eq!((count, covered), (3, version), "the close is signed at once");

    let summary = runtime.store().incident(&id).await.unwrap().unwrap();
    let outcome = audit::verify_stored(runtime.store(), &summary, Some(signer.public())).await.unwrap();
    assert!(outcome.verified() && outcome.closed && outcome.signed_through == summary.version, "{outcome:?}");
}

#[tokio::test]
async fn run_signs_what_commands_left_unsigned() {
    use phasegate::runtime::audit;
    let dir = tempfile::tempdir().unwrap();
    let plain = runtime(&dir).await;
    let (id, _) = plain.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    plain.submit(&id, "dana", Command::Note { text: "no key configured here".into() }).await.unwrap();
    drop(plain);
    let signer = Arc::new(audit::new_signer());
    let runtime = runtime(&dir).await.with_signer(Arc::clone(&signer), chrono::Duration::minutes(10));
    let fake = Fake { status: 200, seen: Mutex::new(Vec::new()) };
    assert_eq!(runtime.run_due(&fake).await.unwrap().checkpoints, 1);
    let summary = runtime.store().incident(&id).await.unwrap().unwrap();
    assert_eq!(summary.checkpointed, summary.version);
    assert_eq!(runtime.run_due(&fake).await.unwrap().checkpoints, 0, "nothing new to sign");
}

/// Regression: events are stored in canonical JSON, which writes `2.0` as `2`; an input of `2.0`
/// was refused by the store as "does not read back as it was written".
#[tokio::test]
async fn numbers_are_kept_as_the_log_gives_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let runbook = RUNBOOK.replace("phases:", "inputs:\n  score: { type: number }\n  ratio: { type: number }\nphases:");
    let inputs = BTreeMap::from([("score".to_string(), json!(2.0)), ("ratio".to_string(), json!(-0.0))]);
    let (id, decision) = runtime.start(&runbook, "dana", inputs, None).await.unwrap();
    let phasegate::engine::EventKind::IncidentStarted { inputs, .. } = &decision.events[0].kind else { panic!() };
    assert_eq!((inputs["score"].clone(), inputs["ratio"].clone()), (json!(2), json!(0)));
    assert_eq!(runtime.store().events(&id).await.unwrap()[0], decision.events[0], "as decided, so as cached");
}

/// Several deliveries' commands to one incident are decided in order and stored in one append; a
/// command the engine refuses is answered with why and the others are still taken; when one of
/// the deliveries was taken before, each is submitted on its own, so the rest are still taken.
#[tokio::test]
async fn deliveries_to_one_incident_are_stored_in_one_append() {
    use phasegate::runtime::Error;
    use phasegate::store::Delivery;
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let (id, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    let delivery = |n: u32| Delivery { source: "siem".into(), id: format!("d-{n}"), received_at: Utc::now() };
    let note = |text: &str| Command::Note { text: text.into() };
    let asked = |items: &[(u32, Command)]| -> Vec<(String, Command, Delivery)> {
        items.iter().map(|(n, command)| ("dana".to_string(), command.clone(), delivery(*n))).collect()
    };

    let before = (version(&runtime, &id).await, runtime.store().commits());
    let items = asked(&[(1, note("first")), (2, done("no-such-step")), (3, note("second"))]);
    let answers = runtime.submit_all_delivered(&id, &items).await.unwrap();
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(matches!(answers[1], Err(Error::Refused(_))), "{answers:?}");
    assert_eq!(version(&runtime, &id).await, before.0 + 2, "the two notes, and nothing of the refused command");
    assert_eq!(runtime.store().commits(), before.1 + 1, "in one commit");
    assert_eq!(runtime.store().delivery("siem", "d-2").await.unwrap(), None, "a refused command takes no delivery");

    // d-3 was taken: each is submitted on its own, and d-4 is still taken, once.
    let answers = runtime.submit_all_delivered(&id, &asked(&[(3, note("second")), (4, note("third"))])).await.unwrap();
    assert!(matches!(&answers[0], Err(Error::Store(phasegate::store::Error::Duplicate { .. }))), "{answers:?}");
    assert!(answers[1].is_ok(), "{answers:?}");
    let events = runtime.store().events(&id).await.unwrap();
    let notes: Vec<&str> = events.iter().filter_map(|event| event.reason.as_deref()).collect();
    assert_eq!(notes.iter().filter(|note| ["first", "second", "third"].contains(note)).count(), 3, "{notes:?}");
    assert_eq!(runtime.store().delivery("siem", "d-4").await.unwrap().as_deref(), Some(id.as_str()));
}

async fn version(runtime: &Runtime<SqliteStore, Catalog>, id: &str) -> u64 {
    runtime.store().incident(id).await.unwrap().unwrap().version
}

/// Two phases, the second after the first: completing `recover`'s step is refused until `contain`
/// is done.
const TWO_PHASES: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: two-phases
title: Contain, then recover
roles:
  commander: {}
phases:
  - id: contain
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts }
  - id: recover
    needs: [contain]
    steps:
      - id: restore
        manual: { instructions: Restore the service }
"#;

fn done_in(phase: &str, step: &str) -> Command {
    Command::CompleteStep { phase: phase.into(), step: step.into(), evidence: None, outputs: BTreeMap::new() }
}

/// A command refused on the state a runtime cached is decided again on the stored state, where
/// another process has made it possible: alone, and among several deliveries (which are then all
/// decided again and stored in one append).
#[tokio::test]
async fn a_refusal_on_a_cached_state_is_confirmed_on_the_stored_one() {
    use phasegate::store::Delivery;
    let dir = tempfile::tempdir().unwrap();
    let first = runtime(&dir).await;
    let (id, _) = first.start(TWO_PHASES, "dana", BTreeMap::new(), None).await.unwrap();
    let second = runtime(&dir).await;
    second.submit(&id, "dana", done_in("contain", "isolate")).await.unwrap();
    // The first runtime still holds the state of its start, where `recover` has not begun.
    let decision = first.submit(&id, "dana", done_in("recover", "restore")).await.unwrap();
    assert!(!decision.events.is_empty(), "accepted on the stored state");

    let (id, _) = first.start(TWO_PHASES, "dana", BTreeMap::new(), None).await.unwrap();
    second.submit(&id, "dana", done_in("contain", "isolate")).await.unwrap();
    let delivery = |n: u32| Delivery { source: "siem".into(), id: format!("r-{n}"), received_at: Utc::now() };
    let items = vec![
        ("dana".to_string(), Command::Note { text: "before".into() }, delivery(1)),
        ("dana".to_string(), done_in("recover", "restore"), delivery(2)),
    ];
    let commits = first.store().commits();
    let answers = first.submit_all_delivered(&id, &items).await.unwrap();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(first.store().commits(), commits + 1, "both in one append");
    for n in [1, 2] {
        let taken = first.store().delivery("siem", &format!("r-{n}")).await.unwrap();
        assert_eq!(taken.as_deref(), Some(id.as_str()), "delivery r-{n}");
    }
    let loaded = first.load(&id).await.unwrap();
    assert_eq!(loaded.incident.phase("recover").steps["restore"].status.as_str(), "done");
}

/// Results of effects submitted together take their effects out of the outbox: an append records
/// one result, so they are stored one by one. Recorded again, a result only answers.
#[tokio::test]
async fn results_submitted_together_each_take_their_effect_out_of_the_outbox() {
    use phasegate::store::Delivery;
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let runbook = RUNBOOK.replace(
        "        http: { url: \"https://idp.example/rotate\" }\n",
        "        http: { url: \"https://idp.example/rotate\" }\n  - id: notify\n    steps:\n      - id: page\n        http: { url: \"https://pager.example/page\" }\n",
    );
    let (id, _) = runtime.start(&runbook, "dana", BTreeMap::new(), None).await.unwrap();
    runtime.submit(&id, "dana", done("isolate")).await.unwrap();
    let pending = runtime.store().pending_effects(10).await.unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let ok = Outcome::Http { status: 200, headers: BTreeMap::new(), body: json!({}) };
    let items: Vec<(String, Command, Delivery)> = pending
        .iter()
        .enumerate()
        .map(|(n, pending)| {
            let record = Command::Record { effect: pending.effect.clone(), outcome: ok.clone() };
            let delivery = Delivery { source: "relay".into(), id: format!("result-{n}"), received_at: Utc::now() };
            (phasegate::engine::event::SYSTEM.to_string(), record, delivery)
        })
        .collect();
    let answers = runtime.submit_all_delivered(&id, &items).await.unwrap();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert!(runtime.store().pending_effects(10).await.unwrap().is_empty(), "both results recorded");
    let loaded = runtime.load(&id).await.unwrap();
    assert_eq!(loaded.incident.phase("contain").status.as_str(), "done");
    assert_eq!(loaded.incident.phase("notify").status.as_str(), "done");
}

/// A delivery taken before changes nothing whichever way it comes again: as a start, as a single
/// command, or alone in a batch (answered, not failed: the batch was stored as far as it could be).
#[tokio::test]
async fn a_delivery_taken_before_changes_nothing_however_it_comes_again() {
    use phasegate::runtime::Error;
    use phasegate::store::{Delivery, Error::Duplicate};
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let taken = Delivery { source: "siem".into(), id: "d-1".into(), received_at: Utc::now() };
    let (id, _) = runtime.start_delivered(RUNBOOK, "dana", BTreeMap::new(), None, Some(&taken)).await.unwrap();
    let before = (runtime.store().incidents().await.unwrap().len(), version(&runtime, &id).await);

    let again = runtime.start_delivered(RUNBOOK, "dana", BTreeMap::new(), None, Some(&taken)).await;
    assert!(matches!(again, Err(Error::Store(Duplicate { .. }))), "{:?}", again.map(|(id, _)| id));
    let note = Command::Note { text: "again".into() };
    let again = runtime.submit_delivered(&id, "dana", note.clone(), Some(&taken)).await;
    assert!(matches!(again, Err(Error::Store(Duplicate { .. }))), "{:?}", again.map(|decision| decision.events));
    let answers = runtime.submit_all_delivered(&id, &[("dana".to_string(), note, taken.clone())]).await.unwrap();
    assert!(matches!(answers[..], [Err(Error::Store(Duplicate { .. }))]), "{answers:?}");

    let after = (runtime.store().incidents().await.unwrap().len(), version(&runtime, &id).await);
    assert_eq!(after, before, "no incident started and no event appended");
}
