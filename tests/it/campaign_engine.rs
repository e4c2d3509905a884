//! Campaign steps in the engine: the step sends as an effect, milestones come from the sender,
//! and pausing, resuming and cancelling are for the runbook's `campaign` roles only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use phasegate::engine::command::{CampaignAction, CampaignReport, CampaignTest};
use phasegate::engine::effect::CampaignTotals;
use phasegate::engine::event::SYSTEM;
use phasegate::engine::{Command, Directory, EffectKind, Error, Outcome};

use crate::support::harness::Harness;

const RUNBOOK: &str = r#"
apiVersion: phasegate/v1
kind: Runbook
id: notices
title: Notices
roles:
  incident-commander: {}
  comms-lead: {}
  analyst: {}
rights:
  close: [incident-commander]
  recover: [incident-commander]
  campaign: [comms-lead]
inputs:
  members:
    type: string
    default: members.jsonl
channels:
  mailer:
    batch:
      url: https://mailer.example/batches
phases:
  - id: notify
    steps:
      - id: send
        title: Tell every member
        campaign:
          recipients: { input: members, id_field: member_id }
          template: customer-notice
          channel: mailer
          batch_size: 100
"#;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T02:00:00Z").unwrap().with_timezone(&Utc)
}

fn sending() -> Harness {
    let directory =
        Directory::with(&[("dana", &["incident-commander"]), ("tom", &["comms-lead"]), ("sam", &["analyst"])]);
    let mut h = Harness::new(RUNBOOK, directory, t0());
    let start =
        Command::Start { incident: "inc-1".into(), runbook_text: RUNBOOK.into(), inputs: BTreeMap::new(), key: None };
    h.run("dana", start).unwrap();
    let started = CampaignReport::Started {
        list: "members.jsonl".into(),
        list_sha256: "00".repeat(32),
        recipients: 250,
        rejected: 1,
        duplicates: 2,
        suppressed: 3,
        batches: 3,
    };
    h.run(SYSTEM, report(started)).unwrap();
    h
}

fn report(report: CampaignReport) -> Command {
    Command::CampaignReport { phase: "notify".into(), step: "send".into(), report }
}

fn act(action: CampaignAction, reason: Option<&str>) -> Command {
    Command::Campaign { phase: "notify".into(), step: "send".into(), action, reason: reason.map(str::to_string) }
}

fn totals(cancelled: bool) -> Outcome {
    Outcome::Campaign(CampaignTotals {
        recipients: 250,
        sent: if cancelled { 100 } else { 249 },
        failed: if cancelled { 0 } else { 1 },
        rejected: 1,
        duplicates: 2,
        suppressed: 3,
        batches: 3,
        possible_repeats: vec![2],
        merkle_root: "ab".repeat(32),
        leaves: if cancelled { 100 } else { 250 },
        cancelled,
        failed_by_reason: if cancelled { BTreeMap::new() } else { BTreeMap::from([("mailbox full".to_string(), 1)]) },
    })
}

#[test]
fn a_campaign_step_sends_as_an_effect_with_its_list_and_key() {
    let mut h = sending();
    let effect = h.take(|kind| matches!(kind, EffectKind::Campaign { .. }));
    let EffectKind::Campaign { campaign, list, attempt, .. } = &effect.kind else { unreachable!() };
    assert_eq!((campaign.as_str(), list.as_str(), *attempt), ("inc-1/notify/send", "members.jsonl", 1));
    let campaign = h.state().step("notify", "send").campaign.unwrap();
    assert_eq!((campaign.recipients, campaign.batches, campaign.suppressed), (250, 3, 3));
    // Nobody marks it done by hand while it sends.
    let done = Command::CompleteStep {
        phase: "notify".into(),
        step: "send".into(),
        evidence: Some("sent".into()),
        outputs: BTreeMap::new(),
    };
    assert!(matches!(h.run("dana", done), Err(Error::NotManual { .. })));
    h.record(effect, totals(false)).unwrap();
    let finished = h.events.iter().rev().find(|e| e.kind.name() == "campaign_finished").unwrap();
    let json = serde_json::to_value(&finished.kind).unwrap();
    assert_eq!(json["campaign"], "inc-1/notify/send");
    assert_eq!(json["merkle_root"], "ab".repeat(32));
    assert_eq!(json["possible_repeats"], serde_json::json!([2]));
    assert_eq!(h.state().step("notify", "send").status.as_str(), "done");
    assert_eq!(h.folded(), *h.state(), "the stored log folds to the state decided with");
}

#[test]
fn only_the_campaign_roles_pause_resume_and_cancel() {
    let mut h = sending();
    let before = h.events.len();
    for actor in ["dana", "sam"] {
        let refused = h.run(actor, act(CampaignAction::Pause, None)).unwrap_err();
        assert!(matches!(refused, Error::MissingRole { .. }), "{actor}: {refused}");
        assert!(refused.to_string().contains("comms-lead"), "{refused}");
    }
    assert!(matches!(h.run("nobody", act(CampaignAction::Pause, None)), Err(Error::UnknownActor(_))));
    assert_eq!(h.events.len(), before, "refusals record nothing");

    h.run("tom", act(CampaignAction::Pause, Some("complaint rate 0.4 %"))).unwrap();
    assert_eq!(h.state().step("notify", "send").campaign.unwrap().paused.unwrap().by, "tom");
    let again = h.run("tom", act(CampaignAction::Pause, None)).unwrap_err();
    assert!(again.to_string().contains("already paused"), "{again}");
    h.run("tom", act(CampaignAction::Resume, None)).unwrap();
    let not_paused = h.run("tom", act(CampaignAction::Resume, None)).unwrap_err();
    assert!(not_paused.to_string().contains("not paused"), "{not_paused}");
    let unexplained = h.run("tom", act(CampaignAction::Cancel, None)).unwrap_err();
    assert!(matches!(unexplained, Error::Unexplained { .. }), "{unexplained}");
    h.run("tom", act(CampaignAction::Cancel, Some("wrong offer in the template"))).unwrap();
    let cancelled = h.run("tom", act(CampaignAction::Pause, None)).unwrap_err();
    assert!(cancelled.to_string().contains("cancelled"), "{cancelled}");
}

#[test]
fn a_cancelled_campaign_fails_its_step_and_a_retry_goes_on_with_the_same_key() {
    let mut h = sending();
    let effect = h.take(|kind| matches!(kind, EffectKind::Campaign { .. }));
    h.run("tom", act(CampaignAction::Cancel, Some("wrong offer"))).unwrap();
    h.record(effect, totals(true)).unwrap();
    let step = h.state().step("notify", "send");
    assert_eq!(step.status.as_str(), "failed");
    assert!(step.error.unwrap().contains("100 of 250"), "the error says how far it got");
    // The sender's late milestones are refused once the step is not sending.
    let late = h.run(SYSTEM, report(CampaignReport::Progress { sent: 1, failed: 0, batches_done: 1, batches: 3 }));
    assert!(matches!(late, Err(Error::Campaign { .. })), "{late:?}");
    h.run(
        "dana",
        Command::Retry { phase: "notify".into(), step: "send".into(), reason: Some("template fixed".into()) },
    )
    .unwrap();
    let again = h.take(|kind| matches!(kind, EffectKind::Campaign { .. }));
    let EffectKind::Campaign { campaign, attempt, .. } = &again.kind else { unreachable!() };
    assert_eq!((campaign.as_str(), *attempt), ("inc-1/notify/send", 2));
    let state = h.state().step("notify", "send").campaign.unwrap();
    assert!(state.cancelled.is_none() && state.finished.is_none(), "a retry goes on from where it stopped");
}

fn test_send(to: &[&str]) -> Command {
    let test = CampaignTest {
        to: to.iter().map(|address| address.to_string()).collect(),
        recipients: vec!["m1".into()],
        messages: to.len() as u32,
        refused: 0,
        error: None,
    };
    Command::CampaignTest { phase: "notify".into(), step: "send".into(), test }
}

#[test]
fn a_test_send_is_recorded_for_the_campaign_right_only_and_leaves_the_campaign_as_it_was() {
    let mut h = sending();
    let campaign = h.state().step("notify", "send").campaign;
    let events = h.events.len();
    // Someone without the `campaign` right, and an unknown step: refused, nothing recorded.
    assert!(matches!(h.run("sam", test_send(&["ciso@harbour.example"])), Err(Error::MissingRole { .. })));
    let unknown = Command::CampaignTest {
        phase: "notify".into(),
        step: "nothing".into(),
        test: CampaignTest {
            to: vec!["a@harbour.example".into()],
            recipients: vec![],
            messages: 0,
            refused: 0,
            error: None,
        },
    };
    assert!(matches!(h.run("tom", unknown), Err(Error::UnknownStep { .. })));
    assert!(h.run("tom", test_send(&[])).is_err(), "a test to nobody is not recorded");
    assert_eq!(h.events.len(), events);
    h.run("tom", test_send(&["ciso@harbour.example", "dana@harbour.example"])).unwrap();
    let recorded = h.events.last().unwrap();
    assert_eq!((recorded.kind.name(), recorded.actor.as_str()), ("campaign_test_sent", "tom"));
    let step = h.state().step("notify", "send");
    assert_eq!(step.campaign, campaign, "the campaign's progress is untouched");
    assert_eq!(step.tests, 1);
    let last = step.last_test.unwrap();
    assert_eq!((last.by.as_str(), last.test.messages), ("tom", 2));
    assert_eq!(h.folded(), *h.state(), "the stored log folds to the state decided with");
}

/// The runbook above with `test_first: true` on its campaign step.
fn test_first_runbook() -> String {
    RUNBOOK.replace("          batch_size: 100\n", "          batch_size: 100\n          test_first: true\n")
}

fn launch() -> Command {
    act(CampaignAction::Launch, Some("test message checked"))
}

fn tested(messages: u32, refused: u32, error: Option<&str>) -> Command {
    let test = CampaignTest {
        to: vec!["ciso@harbour.example".into()],
        recipients: vec!["m1".into()],
        messages,
        refused,
        error: error.map(str::to_string),
    };
    Command::CampaignTest { phase: "notify".into(), step: "send".into(), test }
}

#[test]
fn a_test_first_campaign_waits_for_a_launch_after_a_test_that_went_out() {
    let runbook = test_first_runbook();
    let directory =
        Directory::with(&[("dana", &["incident-commander"]), ("tom", &["comms-lead"]), ("sam", &["analyst"])]);
    let mut h = Harness::new(&runbook, directory, t0());
    let start =
        Command::Start { incident: "inc-1".into(), runbook_text: runbook.clone(), inputs: BTreeMap::new(), key: None };
    h.run("dana", start).unwrap();
    // Reached, the step waits: nothing to send, and the status board says who may launch it.
    assert!(h.outbox.iter().all(|effect| !matches!(effect.kind, EffectKind::Campaign { .. })));
    assert_eq!(h.state().step("notify", "send").status.as_str(), "pending");
    let blockers = phasegate::engine::blocking::blockers(&h.runbook, h.state());
    let waiting = blockers.iter().find(|b| b.what == "notify/send").expect("the step is listed as waiting");
    assert!(waiting.waiting_for.contains("send a test first"), "{}", waiting.waiting_for);
    assert_eq!(waiting.roles, vec!["comms-lead".to_string()]);

    // No launch without a test, nor after one that did not go out; nobody else launches.
    let before = h.events.len();
    let untested = h.run("tom", launch()).unwrap_err();
    assert!(untested.to_string().contains("no test send"), "{untested}");
    h.run("tom", tested(1, 0, Some("relay refused the connection"))).unwrap();
    h.run("tom", tested(2, 2, None)).unwrap();
    let refused = h.run("tom", launch()).unwrap_err();
    assert!(refused.to_string().contains("did not go out"), "{refused}");
    h.run("tom", tested(1, 0, None)).unwrap();
    assert_eq!(h.events.len(), before + 3, "only the three tests are recorded");
    for actor in ["dana", "sam"] {
        let refused = h.run(actor, launch()).unwrap_err();
        assert!(matches!(refused, Error::MissingRole { .. }), "{actor}: {refused}");
    }
    assert!(h.outbox.iter().all(|effect| !matches!(effect.kind, EffectKind::Campaign { .. })));

    // Launched after the test that went out: the step starts sending in the same decision.
    h.run("tom", launch()).unwrap();
    let launched = h.events.iter().find(|e| e.kind.name() == "campaign_launched").unwrap();
    assert_eq!((launched.actor.as_str(), launched.reason.as_deref()), ("tom", Some("test message checked")));
    assert_eq!(h.events.last().unwrap().kind.name(), "step_started");
    let effect = h.take(|kind| matches!(kind, EffectKind::Campaign { .. }));
    let EffectKind::Campaign { campaign, attempt, .. } = &effect.kind else { unreachable!() };
    assert_eq!((campaign.as_str(), *attempt), ("inc-1/notify/send", 1));
    let again = h.run("tom", launch()).unwrap_err();
    assert!(again.to_string().contains("already launched"), "{again}");
    assert_eq!(h.folded(), *h.state(), "the stored log folds to the state decided with");
}

#[test]
fn a_campaign_without_test_first_has_nothing_to_launch() {
    let mut h = sending();
    h.run("tom", tested(1, 0, None)).unwrap();
    let refused = h.run("tom", launch()).unwrap_err();
    assert!(refused.to_string().contains("has no `test_first`"), "{refused}");
}

/// What the status board says the campaign step waits for.
fn board(h: &Harness) -> phasegate::engine::blocking::Blocker {
    let blockers = phasegate::engine::blocking::blockers(&h.runbook, h.state());
    blockers.into_iter().find(|b| b.what == "notify/send").expect("the campaign is on the board")
}

/// Each pause keeps who gave it, when, and its own reason, and the board shows that reason for a
/// person's pause and for phasegate's alike (it once told them apart by the actor, and showed
/// phasegate's fixed sentence instead of the batch and error its pause recorded).
#[test]
fn each_pause_keeps_its_own_reason_and_the_board_shows_it_whoever_paused() {
    let mut h = sending();
    h.run("tom", act(CampaignAction::Pause, Some("complaint rate 0.4 %"))).unwrap();
    let paused = h.state().step("notify", "send").campaign.unwrap().paused.unwrap();
    assert_eq!((paused.by.as_str(), paused.at, paused.reason.as_deref()), ("tom", t0(), Some("complaint rate 0.4 %")));
    let blocker = board(&h);
    assert_eq!(
        blocker.waiting_for,
        "campaign paused by tom at 02:00:00 UTC (0 of 250 sent); resume it to go on, or cancel it; reason: complaint \
         rate 0.4 %"
    );
    assert_eq!(blocker.roles, ["comms-lead"]);
    h.run("tom", act(CampaignAction::Resume, None)).unwrap();
    assert!(h.state().step("notify", "send").campaign.unwrap().paused.is_none());

    // Without a reason, the board says there was none.
    h.now += chrono::Duration::minutes(5);
    h.run("tom", act(CampaignAction::Pause, None)).unwrap();
    assert!(
        board(&h)
            .waiting_for
            .ends_with("at 02:05:00 UTC (0 of 250 sent); resume it to go on, or cancel it; no reason given")
    );
    h.run("tom", act(CampaignAction::Resume, Some("checked"))).unwrap();

    // Phasegate's sender pauses it after a batch failed its attempts in a row: its reason shows.
    h.now += chrono::Duration::minutes(5);
    let reason = "batch 2 was not accepted in 8 attempts in a row; its last error: status 503";
    h.run(SYSTEM, report(CampaignReport::Halted { reason: reason.into() })).unwrap();
    let paused = h.state().step("notify", "send").campaign.unwrap().paused.unwrap();
    assert_eq!((paused.by.as_str(), paused.reason.as_deref()), (SYSTEM, Some(reason)));
    let blocker = board(&h);
    assert_eq!(
        blocker.waiting_for,
        format!(
            "campaign paused by phasegate at 02:10:00 UTC (0 of 250 sent); resume it to go on, or cancel it; reason: {reason}"
        )
    );
    assert_eq!(blocker.roles, ["comms-lead"], "the `campaign` roles resume it");

    // Cancelled, the board says by whom and why.
    h.run("tom", act(CampaignAction::Cancel, Some("wrong offer in the template"))).unwrap();
    let cancelled = board(&h).waiting_for;
    assert!(cancelled.starts_with("campaign cancelled by tom at 02:10:00 UTC"), "{cancelled}");
    assert!(cancelled.ends_with("reason: wrong offer in the template"), "{cancelled}");
    assert_eq!(h.folded(), *h.state(), "the stored log folds to the state decided with");
}

/// A log written before the pause's reason was kept in the state reads with it: the reason was
/// always the `campaign_paused` event's own, so the events of that log, as stored, give it back.
#[test]
fn a_log_written_before_pauses_kept_their_reason_replays_with_each_pauses_reason() {
    let h = sending();
    let mut log: Vec<String> = h.events.iter().map(|event| serde_json::to_string(event).unwrap()).collect();
    // As phasegate stored them before this change, key for key: a person's pause, its resume, then phasegate's.
    log.extend([
        r#"{"actor":"tom","at":"2026-11-24T02:01:00Z","event":{"phase":"notify","step":"send","type":"campaign_paused"},"format":2,"reason":"complaint rate 0.4 %"}"#.to_string(),
        r#"{"actor":"tom","at":"2026-11-24T02:02:00Z","event":{"phase":"notify","step":"send","type":"campaign_resumed"},"format":2}"#.to_string(),
        r#"{"actor":"phasegate","at":"2026-11-24T02:03:00Z","event":{"phase":"notify","step":"send","type":"campaign_paused"},"format":2,"reason":"batch 2 was not accepted in 8 attempts in a row; its last error: status 503 (batch 2); no recipient was given up: resume once the channel takes messages again"}"#.to_string(),
    ]);
    let events: Vec<phasegate::engine::Event> = log.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    let replayed = phasegate::engine::Incident::from_events(&events).unwrap();
    let paused = replayed.step("notify", "send").campaign.unwrap().paused.unwrap();
    assert_eq!(paused.by, "phasegate");
    assert_eq!(paused.at.to_rfc3339(), "2026-11-24T02:03:00+00:00");
    assert!(paused.reason.as_deref().unwrap().starts_with("batch 2 was not accepted in 8 attempts"));
    let blockers = phasegate::engine::blocking::blockers(&h.runbook, &replayed);
    let blocker = blockers.iter().find(|b| b.what == "notify/send").unwrap();
    assert!(blocker.waiting_for.contains("reason: batch 2 was not accepted"), "{}", blocker.waiting_for);
}
