//! Recovering a check gate (retry it, or pass it by hand with evidence), decided by the engine
//! with a manual clock: who may, on which gates, in which states, and what is recorded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use phasegate::engine::{Command, Directory, EffectKind, Outcome};

use crate::support::harness::Harness;

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: edr-check
title: EDR check
roles:
  commander: {}
  ciso: {}
rights:
  recover: [commander]
phases:
  - id: contain
    entry:
      - id: hosts-isolated
        check:
          request: { url: "http://edr.example/hosts" }
          expect: response.status == 200
          interval: 1m
          deadline: 10m
      - id: settle
        timer: { not_before: 1m }
    steps:
      - id: note
        manual: { instructions: Write down what was isolated }
  - id: eradicate
    needs: [contain]
    entry:
      - id: sign-off
        approval: { roles: [ciso] }
    steps:
      - id: wipe
        manual: { instructions: Wipe the hosts }
"#;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-05T22:00:00Z").unwrap().with_timezone(&Utc)
}

fn started() -> Harness {
    let directory = Directory::with(&[("dana", &["commander"]), ("sam", &["ciso"]), ("eve", &[])]);
    let mut h = Harness::new(RUNBOOK, directory, t0());
    let start =
        Command::Start { incident: "inc-1".into(), runbook_text: RUNBOOK.into(), inputs: BTreeMap::new(), key: None };
    h.run("dana", start).unwrap();
    h
}

/// The EDR cannot be reached: each poll is answered with a refused connection, a minute at a time.
fn unreachable_for(h: &mut Harness, minutes: i64) {
    for _ in 0..minutes {
        while let Some(index) = h.outbox.iter().position(|e| matches!(e.kind, EffectKind::Check { .. })) {
            let poll = h.outbox.remove(index).unwrap();
            h.record(poll, Outcome::Failed { error: "connection refused".into() }).unwrap();
        }
        h.later(1).unwrap();
    }
}

/// Waiting: two minutes in, the check has not answered as expected and its deadline is ahead.
fn waiting() -> Harness {
    let mut h = started();
    unreachable_for(&mut h, 2);
    assert_eq!(h.state().phase("contain").status.as_str(), "ready");
    h
}

/// Failed: past the check's ten minutes, the phase failed on it.
fn failed() -> Harness {
    let mut h = started();
    unreachable_for(&mut h, 10);
    assert_eq!(h.state().phase("contain").status.as_str(), "failed");
    assert_eq!(h.state().phase("contain").error.as_deref(), Some("check `hosts-isolated` did not pass within 10m"));
    h
}

/// Passed by hand already.
fn passed() -> Harness {
    let mut h = failed();
    h.run("dana", pass("hosts-isolated", "isolated in the EDR console, ticket SEC-1")).unwrap();
    h
}

fn pass(gate: &str, evidence: &str) -> Command {
    Command::PassGate { phase: gate_phase(gate).into(), gate: gate.into(), evidence: evidence.into() }
}

fn retry(gate: &str) -> Command {
    Command::RetryGate { phase: gate_phase(gate).into(), gate: gate.into(), reason: Some("EDR back up".into()) }
}

fn gate_phase(gate: &str) -> &'static str {
    if gate == "sign-off" { "eradicate" } else { "contain" }
}

const NO_RIGHT: &str =
    "`eve` does not hold role `commander` (held by dana), which recovering check gate `contain/hosts-isolated` needs";

/// What is tried, from which state, by whom, the command, and the events it records or the refusal.
type Row = (&'static str, fn() -> Harness, &'static str, Command, Result<Vec<&'static str>, &'static str>);

#[test]
fn check_gate_recovery_is_decided_as_the_table_says() {
    let table: Vec<Row> = vec![
        (
            "a failed check passed by hand resumes and starts its phase",
            failed,
            "dana",
            pass("hosts-isolated", "isolated in the EDR console, ticket SEC-1"),
            Ok(vec!["gate_overridden", "phase_resumed", "phase_started"]),
        ),
        (
            "a failed check retried resumes its phase and polls at once",
            failed,
            "dana",
            retry("hosts-isolated"),
            Ok(vec!["gate_retried", "phase_resumed", "check_polled"]),
        ),
        (
            "a waiting check passed by hand starts its phase",
            waiting,
            "dana",
            pass("hosts-isolated", "isolated in the EDR console"),
            Ok(vec!["gate_overridden", "phase_started"]),
        ),
        (
            "a waiting check retried polls at once",
            waiting,
            "dana",
            retry("hosts-isolated"),
            Ok(vec!["gate_retried", "check_polled"]),
        ),
        ("someone without `recover` may not pass it", failed, "eve", pass("hosts-isolated", "trust me"), Err(NO_RIGHT)),
        ("someone without `recover` may not retry it", failed, "eve", retry("hosts-isolated"), Err(NO_RIGHT)),
        (
            "an approver who lacks `recover` may not pass it either",
            failed,
            "sam",
            pass("hosts-isolated", "seen it"),
            Err(
                "`sam` does not hold role `commander` (held by dana), which recovering check gate `contain/hosts-isolated` needs",
            ),
        ),
        (
            "an approval gate is its approvers' to pass",
            failed,
            "dana",
            pass("sign-off", "agreed"),
            Err(
                "gate `eradicate/sign-off` is an approval gate: its approvers (role `ciso`) pass it with `phasegate approve`, nobody passes or retries it by hand",
            ),
        ),
        (
            "a timer gate cannot fail",
            waiting,
            "dana",
            retry("settle"),
            Err(
                "gate `contain/settle` is a timer gate: it cannot fail; only a check gate (which fails past its deadline) is retried",
            ),
        ),
        (
            "a gate already passed is not passed again",
            passed,
            "dana",
            pass("hosts-isolated", "again"),
            Err("gate `hosts-isolated` of phase `contain` has already passed"),
        ),
        (
            "a gate already passed is not retried",
            passed,
            "dana",
            retry("hosts-isolated"),
            Err("gate `hosts-isolated` of phase `contain` has already passed"),
        ),
        (
            "passing by hand needs evidence",
            failed,
            "dana",
            pass("hosts-isolated", "  "),
            Err(
                "passing check gate `contain/hosts-isolated` by hand needs evidence on record; give it with `--evidence`",
            ),
        ),
        (
            "an unknown gate names the check gates there are",
            failed,
            "dana",
            pass("hosts-isolatd", "x"),
            Err(
                "phase `contain` has no check gate `hosts-isolatd`; did you mean `hosts-isolated`? declared check gates: `hosts-isolated`",
            ),
        ),
    ];
    for (what, setup, actor, command, expected) in table {
        let mut h = setup();
        let before = h.events.len();
        match (h.run(actor, command), expected) {
            (Ok(decision), Ok(types)) => {
                assert_eq!(Harness::types(&decision), types, "{what}");
                assert_eq!(h.folded(), *h.state(), "{what}: the log folds into the state");
            }
            (Err(error), Err(message)) => {
                assert_eq!(error.to_string(), message, "{what}");
                assert_eq!(h.events.len(), before, "{what}: a refusal records nothing");
            }
            (got, _) => panic!("{what}: got {got:?}"),
        }
    }
}

#[test]
fn a_gate_passed_by_hand_records_who_and_why_and_the_incident_goes_on() {
    let mut h = failed();
    h.run("dana", pass("hosts-isolated", "isolated in the EDR console, ticket SEC-1")).unwrap();
    let gate = h.state().gate("contain", "hosts-isolated");
    let recovery = gate.recovery.expect("recorded");
    assert_eq!((recovery.kind.as_str(), recovery.by.as_str()), ("overridden", "dana"));
    assert_eq!(recovery.reason.as_deref(), Some("isolated in the EDR console, ticket SEC-1"));
    assert_eq!(h.events.last().map(|e| e.summary()).as_deref(), Some("phase `contain` started"),);
    let overridden = h.events.iter().find(|e| e.kind.name() == "gate_overridden").unwrap();
    assert_eq!(
        overridden.summary(),
        "gate `contain/hosts-isolated` passed by hand: isolated in the EDR console, ticket SEC-1"
    );
    let done = Command::CompleteStep {
        phase: "contain".into(),
        step: "note".into(),
        evidence: None,
        outputs: BTreeMap::new(),
    };
    let decision = h.run("dana", done).unwrap();
    assert_eq!(Harness::types(&decision), ["step_done", "gate_passed", "phase_done", "phase_ready"]);
    assert_eq!(h.state().phase("eradicate").status.as_str(), "ready");
}

#[test]
fn a_retried_check_gets_a_fresh_deadline_and_an_old_answer_is_stale() {
    let mut h = started();
    unreachable_for(&mut h, 3);
    let in_flight = h.take(|k| matches!(k, EffectKind::Check { .. }));
    h.run("dana", retry("hosts-isolated")).unwrap();
    assert!(
        h.record(in_flight, Outcome::Failed { error: "late".into() }).is_err(),
        "an answer from before the retry is stale"
    );
    // Ten minutes from the retry at minute 3, not from the phase: still waiting at minute 12.
    unreachable_for(&mut h, 9);
    assert_eq!(h.state().phase("contain").status.as_str(), "ready");
    unreachable_for(&mut h, 1);
    assert_eq!(h.state().phase("contain").status.as_str(), "failed");
    assert_eq!(h.folded(), *h.state());
}
