//! Status updates on a step's failure: the audiences hear of a step once it fails for good (its
//! retries used up, or none), when a person must act, and not of each attempt that fails and
//! goes again. Every attempt's failure stays in the log, and the board shows the step retrying.
//!
//! Regression: each failed attempt queued a `step_failed` update, so stakeholders got a message
//! per retry (and, with the example configuration's Slack secret unset, the log a failed update
//! per attempt).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use phasegate::engine::{Command, Directory, EffectKind, EventKind, Outcome};
use serde_json::json;

use crate::support::harness::Harness;

/// A runbook whose step `contain/rotate` has `attempts` attempts (`optional` when asked), and
/// whose internal audience hears of every failed step and phase.
fn runbook(attempts: u32, optional: bool) -> String {
    format!(
        r#"apiVersion: phasegate/v1
kind: Runbook
id: rotate
title: Rotate credentials
roles:
  commander: {{}}
channels:
  out: {{ stdout: {{}} }}
audiences:
  internal: {{ template: internal-update, channels: [out] }}
rights:
  close: [commander]
  recover: [commander]
phases:
  - id: contain
    steps:
      - id: rotate
        optional: {optional}
        retry: {{ attempts: {attempts}, backoff: 1m }}
        http: {{ url: "https://idp.example/rotate", expect: response.status == 200 }}
      - id: confirm
        manual: {{ instructions: Confirm the rotation, assignee: commander }}
status_updates:
  - on: [step_failed, phase_failed]
    audiences: [internal]
"#
    )
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T02:00:00Z").unwrap().with_timezone(&Utc)
}

fn started(attempts: u32, optional: bool) -> Harness {
    let text = runbook(attempts, optional);
    let mut h = Harness::new(&text, Directory::with(&[("dana", &["commander"])]), t0());
    let start = Command::Start { incident: "inc-1".into(), runbook_text: text, inputs: BTreeMap::new(), key: None };
    h.run("dana", start).unwrap();
    h
}

/// Answers the step's next attempt, moving the clock on until it is due.
fn answer(h: &mut Harness, status: u16) {
    for _ in 0..60 {
        if h.outbox.iter().any(|effect| matches!(effect.kind, EffectKind::Http { .. })) {
            let attempt = h.take(|kind| matches!(kind, EffectKind::Http { .. }));
            let outcome = Outcome::Http { status, headers: BTreeMap::new(), body: json!(null) };
            h.record(attempt, outcome).unwrap();
            return;
        }
        h.later(1).unwrap();
    }
    panic!("the step's next attempt never started");
}

/// The status updates queued for the failure of a step or phase, by occasion, and the step's
/// failed attempts in the log.
fn counts(h: &Harness) -> (Vec<String>, usize) {
    let occasions = h
        .events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::StatusUpdateRequested { occasion, .. } => Some(occasion.clone()),
            _ => None,
        })
        .collect();
    let attempts = h.events.iter().filter(|event| matches!(event.kind, EventKind::StepFailed { .. })).count();
    (occasions, attempts)
}

/// A step's attempts and what they get, and what the audience is told.
struct Case {
    attempts: u32,
    answers: &'static [u16],
    optional: bool,
    updates: &'static [&'static str],
    status: &'static str,
}

#[test]
fn a_step_sends_one_update_when_it_fails_for_good_and_none_for_attempts_that_go_again() {
    let cases = [
        // Fails twice, then succeeds: the retries are in the log, nobody is told.
        Case { attempts: 3, answers: &[502, 503, 200], optional: false, updates: &[], status: "done" },
        // Fails every attempt: one update, when it gives up (its phase fails in the same decision).
        Case { attempts: 3, answers: &[502, 503, 504], optional: false, updates: &["step_failed"], status: "failed" },
        // No retry: its one failure is for good.
        Case { attempts: 1, answers: &[502], optional: false, updates: &["step_failed"], status: "failed" },
        // Five attempts, the last taken: none.
        Case { attempts: 5, answers: &[500, 500, 500, 500, 200], optional: false, updates: &[], status: "done" },
        // An optional step that gives up fails no phase, but it failed for good: one update.
        Case { attempts: 2, answers: &[500, 500], optional: true, updates: &["step_failed"], status: "failed" },
    ];
    for Case { attempts, answers, optional, updates, status } in cases {
        let mut h = started(attempts, optional);
        for &answer_status in answers {
            answer(&mut h, answer_status);
        }
        let (occasions, failed) = counts(&h);
        let case = format!("{attempts} attempts, answers {answers:?}, optional {optional}");
        assert_eq!(occasions, updates, "{case}");
        let failures = answers.iter().filter(|status| **status != 200).count();
        assert_eq!(failed, failures, "{case}: every failed attempt is in the log");
        assert_eq!(h.state().step("contain", "rotate").status.as_str(), status, "{case}");
        assert_eq!(h.folded(), *h.state(), "{case}: the stored log folds to the state decided with");
    }
}

#[test]
fn a_step_retried_by_hand_that_fails_for_good_again_sends_one_more_update() {
    let mut h = started(2, false);
    answer(&mut h, 502);
    // Between attempts the board shows the step retrying, with the attempt's error.
    let blockers = phasegate::engine::blocking::blockers(&h.runbook, h.state());
    let retrying = blockers.iter().find(|b| b.what == "contain/rotate").expect("the step is on the board");
    assert_eq!(retrying.kind, "retrying");
    assert!(retrying.waiting_for.contains("attempt 1 failed"), "{}", retrying.waiting_for);
    answer(&mut h, 503);
    assert_eq!(counts(&h).0, ["step_failed"]);
    let retry = Command::Retry { phase: "contain".into(), step: "rotate".into(), reason: Some("IdP back".into()) };
    h.run("dana", retry).unwrap();
    answer(&mut h, 500);
    // A retry by hand gets one attempt; failing it, the step has failed for good again.
    assert_eq!(h.state().step("contain", "rotate").status.as_str(), "failed");
    assert_eq!(counts(&h), (vec!["step_failed".to_string(), "step_failed".to_string()], 3));
}
