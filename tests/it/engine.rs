//! The engine driven with a manual clock (`support::harness`): a scenario end to end, and
//! properties that must hold for any sequence of commands, among them that the log as stored
//! folds into the state the engine decided with.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use phasegate::engine::{
    Command, Decision, Directory, EffectKind, Error, EventKind, Incident, Outcome, Request, decide,
};
use phasegate::render::Catalog;
use proptest::prelude::*;
use serde_json::json;

use crate::support::harness::Harness;

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: shop-breach
title: Shop breach
inputs:
  severity: { type: string, default: high, allowed: [low, high] }
roles:
  commander: {}
  ciso: {}
controls:
  till-mfa: { title: MFA on store tills }
channels:
  out: { stdout: {} }
audiences:
  internal: { template: internal-update, channels: [out] }
  public: { template: public-status, channels: [out], senders: [commander] }
  customers: { template: customer-update, channels: [out] }
rights:
  close: [commander]
  abandon: [ciso]
  recover: [commander, ciso]
phases:
  - id: contain
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts, assignee: commander, outputs: [hosts] }
      - id: rotate
        retry: { attempts: 3, backoff: 1m }
        http: { url: "https://idp.example/rotate/${inputs.severity}", expect: response.status == 200 }
  - id: relax
    needs: [contain]
    when: inputs.severity == "high"
    entry:
      - approval: { roles: [ciso], count: 2, four_eyes: true }
    steps:
      - id: tills
        relax: { control: till-mfa, reason: Keep the tills trading, expires_in: 2h }
  - id: restore
    needs: [relax]
    entry:
      - id: shop-up
        check:
          request: { url: "https://shop.example/health" }
          expect: response.body.healthy == true
          interval: 1m
          deadline: 1h
    steps:
      - id: reopen
        manual: { instructions: Reopen the shop }
  - id: reinstate
    needs: [restore]
    steps:
      - id: tills-back
        reinstate: { control: till-mfa }
status_updates:
  - on: [control_relaxed, control_reinstated, relaxation_overdue]
    audiences: [internal]
"#;

fn directory() -> Directory {
    Directory::with(&[
        ("dana", &["commander", "ciso"]),
        ("sam", &["ciso"]),
        ("lee", &["ciso"]),
        ("eve", &[]),
        ("tom", &["comms"]),
    ])
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T02:00:00Z").unwrap().with_timezone(&Utc)
}

fn harness() -> Harness {
    Harness::new(RUNBOOK, directory(), t0())
}

/// What the engine's tests do with an incident of the test runbook.
impl Harness {
    fn start(&mut self) {
        let command = Command::Start {
            incident: "inc-1".into(),
            runbook_text: RUNBOOK.into(),
            inputs: BTreeMap::new(),
            key: None,
        };
        self.run("dana", command).unwrap();
    }

    /// Started, with the first phase done and the relaxation's approval waiting: where random
    /// walks begin, so that most of them get to the relaxation and to closing.
    fn contained() -> Harness {
        let mut h = harness();
        h.start();
        h.contain();
        h
    }

    /// Where random walks begin: contained, with the first phase's http step under way, or with
    /// that step failed for good (to be recovered).
    fn walk_start(start: u16) -> Harness {
        match start % 3 {
            0 => Harness::contained(),
            1 => {
                let mut h = harness();
                h.start();
                h.run("dana", complete("contain", "isolate", None, BTreeMap::new())).unwrap();
                h
            }
            _ => failed_for_good(),
        }
    }

    /// Marks the manual step of the first phase done and answers its http step with success.
    fn contain(&mut self) {
        let h = self;
        h.run(
            "dana",
            Command::CompleteStep {
                phase: "contain".into(),
                step: "isolate".into(),
                evidence: None,
                outputs: BTreeMap::new(),
            },
        )
        .unwrap();
        let effect = h.take(|k| matches!(k, EffectKind::Http { .. }));
        h.record(effect, http(200, json!({}))).unwrap();
    }
}

fn http(status: u16, body: serde_json::Value) -> Outcome {
    Outcome::Http { status, headers: BTreeMap::new(), body }
}

fn approve(phase: &str) -> Command {
    Command::Approve { phase: phase.into(), gate: None, note: Some("agreed on the bridge".into()) }
}

#[test]
fn the_reference_path_from_start_to_close() {
    let mut h = harness();
    h.start();
    assert_eq!(h.state().phase("contain").status.as_str(), "running");
    assert_eq!(h.state().runbook_sha256.len(), 64);

    // A person without the assignee's role cannot do the manual step.
    let refused = h.run(
        "sam",
        Command::CompleteStep {
            phase: "contain".into(),
            step: "isolate".into(),
            evidence: None,
            outputs: BTreeMap::new(),
        },
    );
    assert!(matches!(refused, Err(Error::MissingRole { .. })), "{refused:?}");
    let outputs = BTreeMap::from([("hosts".to_string(), json!("12"))]);
    let done = h
        .run(
            "dana",
            Command::CompleteStep {
                phase: "contain".into(),
                step: "isolate".into(),
                evidence: Some("EDR ticket 4411".into()),
                outputs,
            },
        )
        .unwrap();
    assert_eq!(Harness::types(&done), ["step_done", "step_started"]);
    let EffectKind::Http { request, idempotency_key, .. } = &done.effects[0].kind else { panic!("an http effect") };
    assert_eq!(request.url, "https://idp.example/rotate/high");
    let key = idempotency_key.clone();

    // The first attempt fails; the retry waits for its backoff and keeps the idempotency key.
    let first = h.take(|k| matches!(k, EffectKind::Http { .. }));
    let failed = h.record(first, http(502, json!(null))).unwrap();
    assert_eq!(Harness::types(&failed), ["step_failed"]);
    assert!(h.later(0).unwrap().events.is_empty());
    let retried = h.later(2).unwrap();
    assert_eq!(Harness::types(&retried), ["step_started"]);
    let EffectKind::Http { idempotency_key: again, attempt, .. } = &retried.effects[0].kind else {
        panic!("an http effect")
    };
    assert_eq!((again, *attempt), (&key, 2));
    let second = h.take(|k| matches!(k, EffectKind::Http { .. }));
    let contained = h.record(second, http(200, json!({}))).unwrap();
    assert_eq!(Harness::types(&contained), ["step_done", "gate_passed", "phase_done", "phase_ready"]);

    // Two distinct CISOs, and not the person who started the incident.
    assert!(matches!(h.run("dana", approve("relax")), Err(Error::FourEyes { .. })));
    assert!(matches!(h.run("eve", approve("relax")), Err(Error::MissingRole { .. })));
    h.run("sam", approve("relax")).unwrap();
    assert!(matches!(h.run("sam", approve("relax")), Err(Error::AlreadyApproved { .. })));
    let relaxed = h.run("lee", approve("relax")).unwrap();
    let types = Harness::types(&relaxed);
    assert!(
        types.starts_with(&["approval_given", "gate_passed", "phase_started", "control_relaxed", "step_done"]),
        "{types:?}"
    );
    assert!(types.contains(&"status_update_requested"));
    let relaxation = &h.state().relaxations["till-mfa"];
    let approvers: Vec<&str> = relaxation.approved_by.iter().map(|a| a.person.as_str()).collect();
    assert_eq!(approvers, ["sam", "lee"]);
    assert!(matches!(h.run("dana", Command::Close { note: None }), Err(Error::RelaxationsOpen(_))));

    // The check polls until the shop answers as expected.
    let poll = h.take(|k| matches!(k, EffectKind::Check { .. }));
    let answered = h.record(poll, http(200, json!({ "healthy": false }))).unwrap();
    assert_eq!(Harness::types(&answered), ["check_answered"]);
    assert!(h.later(0).unwrap().effects.is_empty(), "no new poll before the interval");
    // Whoever waits on the gate sees what the probe last got, not only that it was not as expected.
    let runbook = phasegate::runbook::parse(RUNBOOK, &Catalog::built_in()).unwrap();
    let check_says = |h: &Harness| {
        let blockers = phasegate::engine::blocking::blockers(&runbook, h.state());
        blockers.into_iter().find(|b| b.kind == "check").expect("the check is on the board").waiting_for
    };
    assert!(check_says(&h).contains("last answered 02:"), "{}", check_says(&h));
    assert!(check_says(&h).contains("(not as expected: HTTP 200)"), "{}", check_says(&h));
    h.later(1).unwrap();
    let poll = h.take(|k| matches!(k, EffectKind::Check { .. }));
    let refused = Outcome::Failed { error: "connection refused (shop.internal.example:443)".into() };
    assert_eq!(Harness::types(&h.record(poll, refused).unwrap()), ["check_answered"]);
    assert!(check_says(&h).contains("(not as expected: connection refused (shop.internal.example:443))"));
    let gate = h.state().gate("restore", "shop-up");
    let last = gate.last_check.expect("the last answer is kept");
    assert_eq!(
        (last.ok, last.status, last.error.as_deref()),
        (false, None, Some("connection refused (shop.internal.example:443)"))
    );
    h.later(1).unwrap();
    let poll = h.take(|k| matches!(k, EffectKind::Check { .. }));
    let up = h.record(poll, http(200, json!({ "healthy": true }))).unwrap();
    assert_eq!(Harness::types(&up)[..3], ["check_answered", "gate_passed", "phase_started"]);

    // Past the relaxation's expiry it is overdue, and says so once.
    let overdue = h.later(120).unwrap();
    assert_eq!(Harness::types(&overdue), ["relaxation_overdue", "status_update_requested"]);
    assert!(h.later(10).unwrap().events.is_empty());

    h.run(
        "dana",
        Command::CompleteStep {
            phase: "restore".into(),
            step: "reopen".into(),
            evidence: None,
            outputs: BTreeMap::new(),
        },
    )
    .unwrap();
    assert!(h.state().relaxations["till-mfa"].reinstated_at.is_some());
    let closed = h.run("dana", Command::Close { note: Some("all clear".into()) }).unwrap();
    assert_eq!(Harness::types(&closed), ["incident_closed"]);
    assert!(matches!(h.run("dana", Command::Note { text: "late".into() }), Err(Error::Closed(_))));
    assert_eq!(h.folded(), *h.state());
}

#[test]
fn a_false_condition_skips_the_phase_and_says_what_it_saw() {
    let mut h = harness();
    let inputs = BTreeMap::from([("severity".to_string(), json!("low"))]);
    h.run("dana", Command::Start { incident: "inc-2".into(), runbook_text: RUNBOOK.into(), inputs, key: None })
        .unwrap();
    h.contain();
    let skipped = h.events.iter().find(|e| matches!(e.kind, EventKind::PhaseSkipped { .. })).expect("relax is skipped");
    let EventKind::PhaseSkipped { phase, values, .. } = &skipped.kind else { unreachable!() };
    assert_eq!(phase, "relax");
    assert_eq!(values["inputs"]["severity"], "low");
    assert_eq!(
        h.state().phase("restore").status.as_str(),
        "ready",
        "a skipped phase lets the phases that need it go on"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let mut h = harness();
    let table: Vec<(BTreeMap<String, serde_json::Value>, &str)> = vec![
        (
            BTreeMap::from([("severity".into(), json!("medium"))]),
            "input `severity` is \"medium\", which is not one of \"low\", \"high\"",
        ),
        (BTreeMap::from([("colour".into(), json!("red"))]), "input `colour` is not one the runbook declares"),
    ];
    for (inputs, message) in table {
        let error = h
            .run("dana", Command::Start { incident: "x".into(), runbook_text: RUNBOOK.into(), inputs, key: None })
            .unwrap_err();
        assert_eq!(error.to_string(), message);
    }
    assert!(h.events.is_empty());
    assert!(matches!(h.run("dana", Command::Tick), Err(Error::NotStarted)));
}

/// Starts an incident and fails the first phase's http step for good: three attempts, each 502.
fn failed_for_good() -> Harness {
    let mut h = harness();
    h.start();
    h.run("dana", complete("contain", "isolate", None, BTreeMap::new())).unwrap();
    for minutes in [0, 2, 5] {
        if minutes > 0 {
            h.later(minutes).unwrap();
        }
        let attempt = h.take(|k| matches!(k, EffectKind::Http { .. }));
        h.record(attempt, http(502, json!(null))).unwrap();
    }
    assert_eq!(h.state().phase("contain").status.as_str(), "failed");
    assert_eq!(h.state().step("contain", "rotate").status.as_str(), "failed");
    h
}

fn complete(phase: &str, step: &str, evidence: Option<&str>, outputs: BTreeMap<String, serde_json::Value>) -> Command {
    Command::CompleteStep { phase: phase.into(), step: step.into(), evidence: evidence.map(Into::into), outputs }
}

fn retry(reason: Option<&str>) -> Command {
    Command::Retry { phase: "contain".into(), step: "rotate".into(), reason: reason.map(Into::into) }
}

fn skip(reason: &str) -> Command {
    Command::Skip { phase: "contain".into(), step: "rotate".into(), reason: reason.into() }
}

#[test]
fn a_step_failed_for_good_is_retried_with_the_same_key_by_a_recover_role_and_the_incident_goes_on() {
    let mut h = failed_for_good();
    let key = h.state().step("contain", "rotate").idempotency_key.clone().unwrap();
    assert_eq!(h.state().phase("relax").status.as_str(), "pending");

    let refused = h.run("eve", retry(None)).unwrap_err().to_string();
    assert_eq!(
        refused,
        "`eve` does not hold any of the roles `commander`, `ciso` (held by dana, lee, sam), which recovering failed \
         step `contain/rotate` needs"
    );
    let Err(Error::NotFailed { status, .. }) =
        h.run("dana", Command::Retry { phase: "contain".into(), step: "isolate".into(), reason: None })
    else {
        panic!("a step that is done is not retried")
    };
    assert_eq!(status, "done");

    let retried = h.run("sam", retry(Some("the IdP was down for maintenance"))).unwrap();
    assert_eq!(Harness::types(&retried), ["step_retried", "phase_resumed", "step_started"]);
    assert_eq!(retried.events[0].reason.as_deref(), Some("the IdP was down for maintenance"));
    let EffectKind::Http { idempotency_key, attempt, .. } = &retried.effects[0].kind else { panic!("an http effect") };
    assert_eq!((idempotency_key, *attempt), (&key, 4));
    let Err(Error::NotFailed { status, .. }) = h.run("sam", retry(None)) else { panic!("running, not failed") };
    assert_eq!(status, "running");

    let attempt = h.take(|k| matches!(k, EffectKind::Http { .. }));
    let done = h.record(attempt, http(200, json!({}))).unwrap();
    assert_eq!(Harness::types(&done), ["step_done", "gate_passed", "phase_done", "phase_ready"]);
    assert_eq!(h.state().step("contain", "rotate").recovery.as_ref().unwrap().by, "sam");
    assert_eq!(h.folded(), *h.state());
}

/// A step waiting for its next attempt could not be recovered until its retries were spent
/// (minutes of backoff while the people on the bridge knew the system was down): the `recover`
/// roles now retry it at once, skip it or mark it done by hand; anyone else is still refused.
#[test]
fn a_step_waiting_for_its_next_attempt_is_recovered_by_a_recover_role_only() {
    let mut h = harness();
    h.start();
    h.run("dana", complete("contain", "isolate", None, BTreeMap::new())).unwrap();
    let attempt = h.take(|k| matches!(k, EffectKind::Http { .. }));
    h.record(attempt, http(502, json!(null))).unwrap();
    assert_eq!(h.state().step("contain", "rotate").status.as_str(), "retrying");
    assert!(matches!(h.run("eve", retry(None)), Err(Error::MissingRole { .. })));
    assert!(matches!(h.run("tom", skip("not mine")), Err(Error::MissingRole { .. })));
    let retried = h.run("sam", retry(Some("the IdP is back"))).unwrap();
    assert_eq!(Harness::types(&retried), ["step_retried", "step_started"]);
    let EffectKind::Http { attempt, .. } = &retried.effects[0].kind else { panic!("an http effect") };
    assert_eq!(*attempt, 2, "the next attempt, started now");
    let attempt = h.take(|k| matches!(k, EffectKind::Http { .. }));
    h.record(attempt, http(502, json!(null))).unwrap();
    assert_eq!(h.state().step("contain", "rotate").status.as_str(), "retrying");
    let skipped = h.run("dana", skip("rotated by hand, CHG-90")).unwrap();
    assert_eq!(Harness::types(&skipped)[0], "step_skipped_by_hand");
    assert_eq!(h.state().step("contain", "rotate").status.as_str(), "skipped");
    assert_eq!(h.folded(), *h.state());
}

#[test]
fn a_step_failed_for_good_is_skipped_with_a_reason_and_reads_as_skipped() {
    let mut h = failed_for_good();
    let Err(Error::Unexplained { .. }) = h.run("dana", skip("  ")) else { panic!("a skip needs a reason") };
    assert!(matches!(h.run("tom", skip("not needed")), Err(Error::MissingRole { .. })));
    let skipped = h.run("dana", skip("rotated by hand in the IdP console, ticket CHG-88")).unwrap();
    assert_eq!(
        Harness::types(&skipped),
        ["step_skipped_by_hand", "phase_resumed", "gate_passed", "phase_done", "phase_ready"]
    );
    assert_eq!(h.state().step("contain", "rotate").status.as_str(), "skipped");
    let variables = phasegate::engine::scope::variables(&h.runbook, h.state());
    assert_eq!(variables["steps"]["contain/rotate"]["state"], "skipped");
    assert!(matches!(h.run("dana", skip("again")), Err(Error::NotFailed { .. })));
}

#[test]
fn a_step_failed_for_good_is_marked_done_by_hand_with_evidence() {
    let mut h = failed_for_good();
    let override_ = |evidence: Option<&str>, outputs: &[(&str, &str)]| {
        let outputs = outputs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        complete("contain", "rotate", evidence, outputs)
    };
    assert!(matches!(h.run("eve", override_(Some("done in the console"), &[])), Err(Error::MissingRole { .. })));
    let refused = h.run("dana", override_(None, &[])).unwrap_err().to_string();
    assert_eq!(
        refused,
        "marking failed step `contain/rotate` done by hand needs evidence on record; give it with `--evidence`"
    );
    let overridden = h.run("dana", override_(Some("rotated in the console, CHG-88"), &[])).unwrap();
    assert_eq!(Harness::types(&overridden)[..2], ["step_overridden", "phase_resumed"]);
    assert_eq!(h.state().phase("contain").status.as_str(), "done");
    assert_eq!(h.state().step("contain", "rotate").evidence.as_deref(), Some("rotated in the console, CHG-88"));
    // An automated step that has not failed is still not a person's to mark done.
    let mut fresh = Harness::contained();
    assert!(matches!(fresh.run("dana", override_(Some("x"), &[])), Err(Error::NotManual { .. })));
}

#[test]
fn a_misspelt_output_names_the_nearest_and_the_declared_ones() {
    let mut h = harness();
    h.start();
    let outputs = BTreeMap::from([("host".to_string(), json!("12"))]);
    let refused = h.run("dana", complete("contain", "isolate", None, outputs)).unwrap_err().to_string();
    assert_eq!(
        refused,
        "step `contain/isolate` declares no output `host`; did you mean `hosts`? declared outputs: `hosts`"
    );
}

/// A new user's refusals named no fix (issue 12's user test): an approval before its phase waits
/// did not say what it waits for, a role refusal did not say who holds the role, a four-eyes
/// refusal did not say who else may approve, and a misspelt gate had no nearest.
#[test]
fn refusals_of_approvals_and_steps_name_who_can_and_what_is_awaited() {
    let mut h = harness();
    h.start();
    let refused = |h: &mut Harness, actor: &str, command: Command| h.run(actor, command).unwrap_err().to_string();
    assert_eq!(
        refused(&mut h, "sam", approve("relax")),
        "phase `relax` is pending, so none of its gates is waiting for approval: it waits for `contain` (running)"
    );
    assert_eq!(
        refused(&mut h, "tom", complete("contain", "isolate", None, BTreeMap::new())),
        "`tom` does not hold role `commander` (held by dana), which marking step `contain/isolate` done needs"
    );
    h.contain();
    let misspelt = Command::Approve { phase: "relax".into(), gate: Some("aproval".into()), note: None };
    assert_eq!(
        refused(&mut h, "sam", misspelt),
        "phase `relax` has no approval gate `aproval`; did you mean `approval`? declared approval gates: `approval`"
    );
    assert_eq!(
        refused(&mut h, "tom", approve("relax")),
        "`tom` does not hold role `ciso` (held by dana, lee, sam), which approving gate `approval` of phase `relax` needs"
    );
    h.run("sam", approve("relax")).unwrap();
    assert_eq!(
        refused(&mut h, "dana", approve("relax")),
        "gate `approval` of phase `relax` is four-eyes: `dana` started the incident and cannot approve it; another holder of role `ciso` must: lee"
    );
}

#[test]
fn closing_needs_the_close_role_and_every_phase_done_or_an_abandonment_with_a_reason() {
    let mut h = harness();
    h.start();
    let close = || Command::Close { note: None };
    let refused = h.run("tom", close()).unwrap_err().to_string();
    assert_eq!(refused, "`tom` does not hold role `commander` (held by dana), which closing the incident needs");
    let refused = h.run("dana", close()).unwrap_err().to_string();
    assert!(
        refused.starts_with(
            "the incident cannot close before every phase is done or skipped: `contain` is running: waits for \
             contain/isolate (manual step: Isolate the hosts), contain/rotate (http step waiting for the steps before \
             it); `relax` is pending: needs contain;"
        ),
        "{refused}"
    );
    assert!(
        refused.ends_with(
            "finish them, or abandon the incident with `phasegate close inc-1 --abandon --reason TEXT` (role `ciso`)"
        ),
        "{refused}"
    );

    let abandon = |reason: &str| Command::Abandon { reason: reason.into() };
    assert!(matches!(h.run("eve", abandon("false alarm")), Err(Error::MissingRole { .. })));
    assert!(matches!(h.run("sam", abandon(" ")), Err(Error::Unexplained { .. })));
    let abandoned = h.run("sam", abandon("false positive: the EDR alert was a pen test")).unwrap();
    assert_eq!(Harness::types(&abandoned), ["incident_closed"]);
    assert_eq!(abandoned.events[0].kind, EventKind::IncidentClosed { abandoned: true });
    let closed = h.state().closed.as_ref().unwrap();
    assert!(closed.abandoned);
    assert_eq!(closed.reason.as_deref(), Some("false positive: the EDR alert was a pen test"));
}

#[test]
fn an_abandonment_waits_for_open_relaxations_and_names_the_step_that_reinstates_them() {
    let mut h = Harness::contained();
    h.run("sam", approve("relax")).unwrap();
    h.run("lee", approve("relax")).unwrap();
    let refused = h.run("sam", Command::Abandon { reason: "handed to the police".into() }).unwrap_err().to_string();
    assert_eq!(
        refused,
        "the incident cannot close while controls are relaxed: `till-mfa` (reinstated by step \
         `reinstate/tills-back`); run the phases that reinstate them first"
    );
}

#[test]
fn an_update_by_hand_to_an_outside_audience_needs_a_sender_role() {
    let mut h = harness();
    h.start();
    let update = |audience: &str| Command::StatusUpdate { audience: audience.into() };
    let refused = h.run("tom", update("public")).unwrap_err().to_string();
    assert_eq!(
        refused,
        "`tom` does not hold role `commander` (held by dana), which sending audience `public` an update by hand needs"
    );
    assert_eq!(Harness::types(&h.run("dana", update("public")).unwrap()), ["status_update_requested"]);
    let refused = h.run("dana", update("customers")).unwrap_err().to_string();
    assert_eq!(
        refused,
        "sending audience `customers` an update by hand is a right the runbook gives nobody; audience `customers` \
         is outside the company and names no `senders`; add `senders: [ROLE]` to it in the runbook"
    );
    // An audience inside the company takes updates from anyone configured.
    assert_eq!(Harness::types(&h.run("eve", update("internal")).unwrap()), ["status_update_requested"]);
    let refused = h.run("dana", update("publc")).unwrap_err().to_string();
    assert_eq!(
        refused,
        "audience `publc` does not exist; did you mean `public`? declared audiences: `internal`, `public`, `customers`"
    );
}

/// Without `rights:`, closing, abandoning and recovering go to `incident-commander` when the
/// runbook declares that role, and to nobody otherwise; the refusal says what to declare.
#[test]
fn undeclared_rights_go_to_the_incident_commander_or_to_nobody() {
    let text = |roles: &str| {
        format!(
            "apiVersion: phasegate/v1\nkind: Runbook\nid: small\ntitle: Small\nroles: {{ {roles} }}\nphases:\n  - id: respond\n    steps:\n      - id: look\n        manual: {{ instructions: Look }}\n"
        )
    };
    let directory = Directory::with(&[("dana", &["incident-commander", "commander"]), ("sam", &["ciso"])]);
    let decide_on = |runbook_text: &str, actor: &str, command: Command, state: Option<&Incident>| {
        let runbook = phasegate::runbook::parse(runbook_text, &Catalog::built_in()).unwrap();
        decide(&runbook, &directory, state, &Request { actor: actor.into(), at: t0(), command })
    };
    for (roles, closer, refused) in [
        (
            "incident-commander: {}, ciso: {}",
            Some("dana"),
            "`sam` does not hold role `incident-commander` (held by dana), which abandoning the incident needs",
        ),
        (
            "commander: {}, ciso: {}",
            None,
            "abandoning the incident is a right the runbook gives nobody; the runbook declares neither \
             `rights.abandon` nor a role `incident-commander`; add `rights: { abandon: [ROLE] }` to it",
        ),
    ] {
        let runbook_text = text(roles);
        let start = Command::Start {
            incident: "s".into(),
            runbook_text: runbook_text.clone(),
            inputs: BTreeMap::new(),
            key: None,
        };
        let events = decide_on(&runbook_text, "dana", start, None).unwrap().events;
        let state = Incident::from_events(&events).unwrap();
        let abandon = || Command::Abandon { reason: "false alarm".into() };
        let error = decide_on(&runbook_text, "sam", abandon(), Some(&state)).unwrap_err().to_string();
        assert_eq!(error, refused);
        let by_dana = decide_on(&runbook_text, "dana", abandon(), Some(&state));
        assert_eq!(by_dana.is_ok(), closer.is_some(), "{roles}: {by_dana:?}");
    }
}

/// One step of a random walk through an incident.
#[derive(Debug, Clone)]
enum Move {
    Approve(usize),
    Complete(usize, &'static str, &'static str),
    Record(usize, u16, bool),
    Wait(i64),
    Close(usize),
    Note(usize),
    Abandon(usize, bool),
    Retry(usize),
    Skip(usize, bool),
    Override(usize),
    Update(usize, &'static str),
}

const ACTORS: [&str; 5] = ["dana", "sam", "lee", "eve", "tom"];

fn moves() -> impl Strategy<Value = Move> {
    // Weighted so that walks get far: through the relaxation, often past its expiry, and then
    // try to close both before and after the control is reinstated.
    prop_oneof![
        8 => (0..5usize).prop_map(Move::Approve),
        8 => (0..5usize, prop::sample::select(vec![("contain", "isolate"), ("restore", "reopen")])).prop_map(|(a, (p, s))| Move::Complete(a, p, s)),
        12 => (0..8usize, prop::sample::select(vec![200u16, 200, 500]), prop::bool::weighted(0.7)).prop_map(|(i, s, healthy)| Move::Record(i, s, healthy)),
        4 => (0..180i64).prop_map(Move::Wait),
        2 => (0..5usize).prop_map(Move::Close),
        2 => (0..5usize).prop_map(Move::Note),
        1 => (0..5usize, prop::bool::weighted(0.25)).prop_map(|(a, reason)| Move::Abandon(a, reason)),
        2 => (0..5usize).prop_map(Move::Retry),
        1 => (0..5usize, prop::bool::weighted(0.7)).prop_map(|(a, reason)| Move::Skip(a, reason)),
        1 => (0..5usize).prop_map(Move::Override),
        2 => (0..5usize, prop::sample::select(vec!["internal", "public", "customers"])).prop_map(|(a, audience)| Move::Update(a, audience)),
    ]
}

/// Plays one move; a refused command changes nothing, which the properties check.
fn play(h: &mut Harness, step: Move) -> Result<Decision, Error> {
    match step {
        Move::Approve(a) => h.run(ACTORS[a], approve("relax")),
        Move::Complete(a, phase, step) => h.run(
            ACTORS[a],
            Command::CompleteStep { phase: phase.into(), step: step.into(), evidence: None, outputs: BTreeMap::new() },
        ),
        Move::Record(i, status, healthy) if !h.outbox.is_empty() => {
            let effect = h.outbox.remove(i % h.outbox.len()).expect("an effect at that place");
            h.record(effect, http(status, json!({ "healthy": healthy })))
        }
        Move::Record(..) => Ok(Decision::default()),
        Move::Wait(minutes) => h.later(minutes),
        Move::Close(a) => h.run(ACTORS[a], Command::Close { note: None }),
        Move::Note(a) => h.run(ACTORS[a], Command::Note { text: "update".into() }),
        Move::Abandon(a, reason) => {
            h.run(ACTORS[a], Command::Abandon { reason: if reason { "called off".into() } else { String::new() } })
        }
        Move::Retry(a) => h.run(ACTORS[a], retry(None)),
        Move::Skip(a, reason) => h.run(ACTORS[a], skip(if reason { "done by hand" } else { "" })),
        Move::Override(a) => h.run(ACTORS[a], complete("contain", "rotate", Some("rotated by hand"), BTreeMap::new())),
        Move::Update(a, audience) => h.run(ACTORS[a], Command::StatusUpdate { audience: audience.into() }),
    }
}

/// The people who hold a role in the test directory.
fn holds(actor: &str, roles: &[&str]) -> bool {
    directory().people.get(actor).is_some_and(|held| roles.iter().any(|role| held.contains(*role)))
}

/// The properties below mean something only if random walks get to the states they are about.
#[test]
fn random_walks_reach_the_relaxation_and_try_to_close_around_it() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut relaxed, mut refused_close, mut closed_after_reinstating) = (0, 0, 0);
    let (mut recovered, mut abandoned, mut refused_rights, mut public_updates) = (0, 0, 0, 0);
    for walk_number in 0..300u16 {
        let walk = prop::collection::vec(moves(), 1..120).new_tree(&mut runner).unwrap().current();
        let mut h = Harness::walk_start(walk_number);
        for step in walk {
            match play(&mut h, step) {
                Err(Error::RelaxationsOpen(_)) => refused_close += 1,
                Err(Error::MissingRole { .. } | Error::NobodyMay { .. }) => refused_rights += 1,
                Ok(decision) => {
                    for event in &decision.events {
                        match &event.kind {
                            EventKind::StepRetried { .. }
                            | EventKind::StepSkippedByHand { .. }
                            | EventKind::StepOverridden { .. } => recovered += 1,
                            EventKind::StatusUpdateRequested { audience, occasion }
                                if audience == "public" && occasion == "requested" =>
                            {
                                public_updates += 1
                            }
                            _ => {}
                        }
                    }
                }
                Err(_) => {}
            }
        }
        let state = h.state();
        relaxed += usize::from(!state.relaxations.is_empty());
        closed_after_reinstating +=
            usize::from(state.closed.as_ref().is_some_and(|c| !c.abandoned) && !state.relaxations.is_empty());
        abandoned += usize::from(state.closed.as_ref().is_some_and(|c| c.abandoned));
    }
    assert!(relaxed >= 50, "only {relaxed} of 300 walks relaxed the control");
    assert!(refused_close >= 20, "only {refused_close} closes were refused for an open relaxation");
    assert!(closed_after_reinstating >= 10, "only {closed_after_reinstating} walks closed after reinstating");
    assert!(recovered >= 10, "only {recovered} failed steps were recovered");
    assert!(abandoned >= 10, "only {abandoned} walks were abandoned");
    assert!(refused_rights >= 50, "only {refused_rights} commands were refused for want of a right");
    assert!(public_updates >= 10, "only {public_updates} updates were sent to `public` by hand");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn properties_hold_for_any_sequence_of_commands(start in 0..3u16, walk in prop::collection::vec(moves(), 1..120)) {
        let mut h = Harness::walk_start(start);
        for step in walk {
            // A refused command gives no decision at all, so it records nothing.
            let decided = play(&mut h, step.clone());
            let state = h.state();

            if let Ok(decision) = &decided {
                for event in &decision.events {
                    match &event.kind {
                        // A close by the close role once every phase is done or skipped, or an
                        // abandonment with a reason by the abandon role.
                        EventKind::IncidentClosed { abandoned: false } => {
                            prop_assert!(holds(&event.actor, &["commander"]), "{step:?}");
                            prop_assert!(state.phases.values().all(|p| p.status.is_finished()), "{step:?}");
                            prop_assert_eq!(h.runbook.phases().len(), state.phases.len());
                        }
                        EventKind::IncidentClosed { abandoned: true } => {
                            prop_assert!(holds(&event.actor, &["ciso"]), "{step:?}");
                            prop_assert!(event.reason.as_deref().is_some_and(|r| !r.trim().is_empty()));
                        }
                        // An update by hand to an outside audience only by a sender role.
                        EventKind::StatusUpdateRequested { audience, occasion } if occasion == "requested" => {
                            match audience.as_str() {
                                "public" => prop_assert!(holds(&event.actor, &["commander"]), "{step:?}"),
                                "customers" => prop_assert!(false, "nobody sends `customers` updates by hand"),
                                _ => {}
                            }
                        }
                        EventKind::StepRetried { .. } | EventKind::StepSkippedByHand { .. } | EventKind::StepOverridden { .. } => {
                            prop_assert!(holds(&event.actor, &["commander", "ciso"]), "{step:?}");
                        }
                        _ => {}
                    }
                }
            }

            // Folding the log as it was stored (each event through its JSON and back) gives the
            // state the engine decided with.
            prop_assert_eq!(&h.folded(), state);
            // No incident closes while a control relaxation is open.
            if state.closed.is_some() {
                prop_assert_eq!(state.open_relaxations().count(), 0);
            }
            for (phase, phase_state) in &state.phases {
                for (gate, gate_state) in &phase_state.gates {
                    // One person never counts twice toward a quorum.
                    let mut people: Vec<&str> = gate_state.approvals.iter().map(|a| a.person.as_str()).collect();
                    let before = people.len();
                    people.sort();
                    people.dedup();
                    prop_assert_eq!(before, people.len(), "{}/{}", phase, gate);
                    // The starter never approves a four-eyes gate (the relax gate is one).
                    if phase == "relax" {
                        prop_assert!(!people.contains(&state.started_by.as_str()));
                    }
                    // Every approver holds the role.
                    for approval in &gate_state.approvals {
                        prop_assert_eq!(approval.role.as_str(), "ciso");
                    }
                }
            }
        }
    }
}

/// A card track that relaxes a control only for card incidents, and a recovery whose card steps
/// run only if that control was relaxed.
const CONDITIONAL: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: card-track
title: Card track
inputs:
  card: { type: boolean, default: false }
roles:
  commander: {}
  ciso: {}
controls:
  pos-online: { title: Online card authorisation }
phases:
  - id: card
    when: inputs.card
    entry:
      - approval: { roles: [ciso] }
    steps:
      - id: go-offline
        relax: { control: pos-online, reason: Keep the tills trading, expires_in: 2h }
  - id: recover
    needs: [card]
    steps:
      - id: check
        manual: { instructions: Check the shop }
      - id: reconcile
        when: 'controls["pos-online"] in ["relaxed", "overdue"]'
        manual: { instructions: Reconcile offline payments }
      - id: back-online
        when: 'controls["pos-online"] in ["relaxed", "overdue"]'
        reinstate: { control: pos-online }
"#;

/// Regression: the recovery's card steps of an incident without card data were offered (and
/// taken) as work although the engine skips them when reached: a step whose condition is known
/// false is refused marking done, shown as skipped on the board, and then skipped.
#[test]
fn a_step_whose_condition_is_known_false_is_refused_marking_done_and_blocks_nothing() {
    let mut h = Harness::new(CONDITIONAL, directory(), t0());
    let start = Command::Start {
        incident: "inc-3".into(),
        runbook_text: CONDITIONAL.into(),
        inputs: BTreeMap::new(),
        key: None,
    };
    h.run("dana", start).unwrap();
    assert_eq!(h.state().phase("recover").status.as_str(), "running", "the card track was skipped");
    let runbook = phasegate::runbook::parse(CONDITIONAL, &Catalog::built_in()).unwrap();
    let blockers = phasegate::engine::blocking::blockers(&runbook, h.state());
    let reconcile = blockers.iter().find(|b| b.what == "recover/reconcile").expect("the step is on the board");
    assert_eq!(reconcile.kind, "will_skip");
    assert!(reconcile.roles.is_empty());
    let unfinished = phasegate::engine::blocking::unfinished(&runbook, h.state());
    assert_eq!(unfinished, ["`recover` is running: waits for recover/check (manual step: Check the shop)"]);

    let before = h.events.len();
    let error = h.run("dana", complete("recover", "reconcile", Some("done"), BTreeMap::new())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "step `recover/reconcile` will be skipped when reached: its condition \
         `controls[\"pos-online\"] in [\"relaxed\", \"overdue\"]` is false"
    );
    assert_eq!(h.events.len(), before, "a refusal records nothing");

    h.run("dana", complete("recover", "check", None, BTreeMap::new())).unwrap();
    assert_eq!(h.state().step("recover", "reconcile").status.as_str(), "skipped");
    assert_eq!(h.state().step("recover", "back-online").status.as_str(), "skipped");
    assert_eq!(h.state().phase("recover").status.as_str(), "done");
}
