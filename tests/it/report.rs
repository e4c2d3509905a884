//! The post-incident report: a scripted incident driven through the engine with a manual clock
//! (four-eyes approval, a relaxation that runs past its expiry, a reinstatement, a note, status
//! updates and a notify step), reported in both formats and snapshotted; hostile text from the log
//! comes out escaped; both shapes of the integrity result are shown.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use phasegate::audit::report::{self, Format, Integrity};
use phasegate::engine::event::SYSTEM;
use phasegate::engine::{Command, Directory, EffectKind, Event, EventKind, Outcome};

use crate::support::harness::Harness;

mod browser;

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: till-breach
version: "2"
title: Till breach
inputs:
  severity: { type: string, default: high, allowed: [high, critical] }
roles:
  commander: {}
  ciso: {}
rights: { close: [commander], abandon: [ciso] }
controls:
  till-mfa: { title: MFA on store tills }
channels:
  out: { stdout: {} }
  board: { file: { path: board.log } }
audiences:
  internal: { title: Incident team, template: internal-update, channels: [out] }
  executives: { title: Executive team, template: executive-briefing, channels: [out, board] }
phases:
  - id: contain
    title: Contain the intrusion
    steps:
      - id: isolate
        manual: { instructions: Isolate the tills, assignee: commander }
  - id: relax
    title: Relax MFA to keep trading
    needs: [contain]
    entry:
      - approval: { roles: [ciso], count: 2, four_eyes: true }
    steps:
      - id: tills
        relax:
          control: till-mfa
          reason: The identity provider is quarantined; tills cannot complete MFA
          expires_in: 2h
          compensating: [Till sessions limited to 4 hours, Refunds reviewed daily]
      - id: tell-executives
        notify: { audience: executives, message: MFA on the tills is off for up to two hours }
  - id: restore
    needs: [relax]
    entry:
      - id: shop-up
        check:
          request: { url: "https://shop.example/health" }
          expect: response.status == 200
          interval: 1m
          deadline: 1h
    steps:
      - id: reopen
        manual: { instructions: Reopen the shop }
  - id: reinstate
    title: Bring MFA back
    needs: [restore]
    entry:
      - id: all-clear
        signal: { role: commander }
    steps:
      - id: back
        reinstate: { control: till-mfa, strengthened: [Hardware keys for store managers] }
  - id: regulator
    needs: [reinstate]
    when: inputs.severity == "critical"
    steps:
      - id: file
        manual: { instructions: File the regulator notice }
status_updates:
  - on: [control_relaxed, control_reinstated]
    audiences: [internal]
"#;

/// An incident driven through the pure engine (`support::harness`), with a script's answers
/// to what it asks of the world.
struct Scripted {
    engine: Harness,
    /// What the shop's health check answers, poll by poll.
    health: VecDeque<u16>,
    /// The text every update is recorded with, when set.
    said: Option<String>,
}

impl Scripted {
    fn new() -> Scripted {
        Scripted::with(
            RUNBOOK,
            Directory::with(&[("dana", &["commander", "ciso"]), ("sam", &["ciso"]), ("lee", &["ciso"])]),
        )
    }

    /// An incident of `runbook` among the people of `directory`, before it starts.
    fn with(runbook: &str, directory: Directory) -> Scripted {
        Scripted {
            engine: Harness::new(runbook, directory, at("02:00:00")),
            health: VecDeque::from([503, 200]),
            said: None,
        }
    }

    /// The log as stored.
    fn events(&self) -> &[Event] {
        &self.engine.events
    }

    /// `actor` gives `command` at `time`, which the script expects to be accepted.
    fn run(&mut self, time: &str, actor: &str, command: Command) {
        self.engine.now = at(time);
        self.engine.run(actor, command).unwrap_or_else(|error| panic!("{actor} at {time}: {error}"));
    }

    /// Carries out everything in the outbox at `time`: updates are delivered, checks answered.
    fn deliver(&mut self, time: &str) {
        while let Some(effect) = self.engine.outbox.pop_front() {
            let outcome = match &effect.kind {
                EffectKind::Notify { audience, channels, .. } => {
                    // What a delivery records: the update's text, here with a line break and markup
                    // for the report to keep as text; the internal updates' as a log written before
                    // phasegate recorded texts has them: without it.
                    let text = (audience != "internal")
                        .then(|| format!("Update for {audience}:\nTills <b>trading</b> again."))
                        .or_else(|| self.said.clone());
                    Outcome::Sent { channels: channels.clone(), text }
                }
                EffectKind::Check { .. } => {
                    let status = self.health.pop_front().expect("a health answer left");
                    Outcome::Http { status, headers: BTreeMap::new(), body: serde_json::json!({}) }
                }
                other => panic!("the test runbook has no {other:?}"),
            };
            self.run(time, SYSTEM, Command::Record { effect, outcome });
        }
    }
}

fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-11-24T{time}Z")).unwrap().to_utc()
}

fn done(phase: &str, step: &str, evidence: &str) -> Command {
    Command::CompleteStep {
        phase: phase.into(),
        step: step.into(),
        evidence: Some(evidence.into()),
        outputs: BTreeMap::new(),
    }
}

fn approve(note: &str) -> Command {
    Command::Approve { phase: "relax".into(), gate: None, note: Some(note.into()) }
}

/// The incident up to the last event before the reinstatement: MFA is still relaxed, overdue.
fn still_relaxed() -> Scripted {
    let mut incident = Scripted::new();
    let start = Command::Start {
        incident: "inc-20261124-0001".into(),
        runbook_text: RUNBOOK.into(),
        inputs: BTreeMap::new(),
        key: None,
    };
    incident.run("02:00:00", "dana", start);
    incident.run("02:12:30", "dana", done("contain", "isolate", "Till VLAN shut at the core switch"));
    incident.run("02:20:00", "dana", Command::Note { text: "Store managers told to expect no MFA prompts".into() });
    incident.run("02:24:41", "sam", approve("Tills must trade through the weekend"));
    incident.run("02:31:07", "lee", approve("Agreed, with the compensating measures"));
    incident.deliver("02:31:40");
    incident.run("02:33:00", SYSTEM, Command::Tick);
    incident.deliver("02:33:02");
    incident.run("03:05:00", "dana", Command::StatusUpdate { audience: "executives".into() });
    incident.deliver("03:05:03");
    incident.run("04:10:00", "dana", done("restore", "reopen", "Shop healthy for 30 minutes"));
    incident.run("04:40:00", SYSTEM, Command::Tick);
    incident
}

/// The whole incident: MFA comes back at 04:45:12, then the incident closes.
fn closed() -> Scripted {
    let mut incident = still_relaxed();
    let signal = Command::Signal {
        phase: "reinstate".into(),
        gate: "all-clear".into(),
        note: Some("SOC confirms the identity provider is clean".into()),
    };
    incident.run("04:45:12", "dana", signal);
    incident.deliver("04:45:15");
    incident.run("05:02:00", "dana", Command::Close { note: Some("Handed over to problem management".into()) });
    incident
}

fn verified(events: &[Event]) -> Integrity {
    Integrity {
        verified: true,
        events: events.len() as u64,
        checkpoints: 2,
        signed_through: events.len() as u64,
        fingerprint: Some("sha256:3f9a0c1d2e4b5a6978812c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071".into()),
        problem: None,
    }
}

#[test]
fn the_script_went_as_planned() {
    let incident = closed();
    let kinds: Vec<&str> = incident.events().iter().map(|e| e.kind.name()).collect();
    for expected in [
        "approval_given",
        "control_relaxed",
        "status_update_sent",
        "check_answered",
        "relaxation_overdue",
        "control_reinstated",
        "phase_skipped",
        "note_added",
        "incident_closed",
    ] {
        assert!(kinds.contains(&expected), "no {expected} in {kinds:?}");
    }
    assert!(incident.engine.outbox.is_empty() && incident.health.is_empty());
}

#[test]
fn the_markdown_report_of_a_closed_incident() {
    let incident = closed();
    let markdown = report::render(incident.events(), &verified(incident.events()), Format::Markdown).unwrap();
    // Relaxed at 02:31:07 (the second approval), reinstated at 04:45:12 (the signal).
    assert!(markdown.contains("- **Exposure window: 2h 14m 05s**\n"), "{markdown}");
    assert!(markdown.contains("reinstated 14m 05s after it expired"), "{markdown}");
    assert!(markdown.contains("relaxation_overdue recorded at 2026-11-24 04:40:00 UTC"), "{markdown}");
    assert!(markdown.contains("| Duration | 3h 02m 00s |"), "{markdown}");
    assert!(markdown.contains("| `relax/approval` | 2 of ciso | sam, lee | yes | no | required; met |"));
    assert!(markdown.contains("Update for executives:<br>Tills &lt;b>trading&lt;/b> again."), "{markdown}");
    assert!(markdown.contains("text not recorded in the log (template `internal-update`)"), "{markdown}");
    assert!(markdown.contains("routine events not shown"));
    insta::assert_snapshot!("report_closed_md", markdown);
}

#[test]
fn the_html_report_is_self_contained_and_printable() {
    let incident = closed();
    let html = report::render(incident.events(), &verified(incident.events()), Format::Html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>") && html.contains("@media print"), "inline style with print rules");
    assert!(html.contains("<svg") && html.contains("</svg>"), "the phases are drawn inline");
    assert!(html.contains("<strong>2h 14m 05s</strong>"), "the exposure window to the second");
    for external in ["http://", "https://", "src=", "href=", "@import", "url("] {
        // The runbook's check URL is reported nowhere, so no address appears at all.
        assert!(!html.contains(external), "the report refers to something outside: {external}");
    }
    insta::assert_snapshot!("report_closed_html", html);
}

#[test]
fn an_open_incident_measures_open_relaxations_to_its_last_event_and_shows_a_failed_verification() {
    let incident = still_relaxed();
    let events = incident.events();
    let integrity = Integrity {
        verified: false,
        events: events.len() as u64,
        checkpoints: 1,
        signed_through: 12,
        fingerprint: Some("sha256:3f9a0c1d2e4b5a6978812c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071".into()),
        problem: Some("event 13: its hash does not follow from event 12".into()),
    };
    let markdown = report::render(events, &integrity, Format::Markdown).unwrap();
    // The last event is the tick at 04:40:00: 02:31:07 to 04:40:00 is 2h 08m 53s.
    assert_eq!(events.last().unwrap().at, at("04:40:00"));
    assert!(markdown.contains("- **Exposure window: 2h 08m 53s, still relaxed**"), "{markdown}");
    assert!(markdown.contains("still relaxed 8m 53s past its expiry"), "{markdown}");
    assert!(markdown.contains("- Result: **NOT verified**"));
    assert!(markdown.contains("- First problem: **event 13: its hash does not follow from event 12**"));
    assert!(markdown.contains("- Signed through: event 12 of"));
    insta::assert_snapshot!("report_open_md", markdown);

    let html = report::render(events, &integrity, Format::Html).unwrap();
    assert!(html.contains("<span class=\"bad\">NOT verified</span>"));
    assert!(html.contains("still relaxed"));
}

#[test]
fn the_report_is_the_same_whenever_it_is_made() {
    let incident = closed();
    let integrity = verified(incident.events());
    for format in [Format::Markdown, Format::Html] {
        let first = report::render(incident.events(), &integrity, format).unwrap();
        assert_eq!(report::render(incident.events(), &integrity, format).unwrap(), first);
    }
}

/// A log written by hand: its runbook text does not parse, and people typed markup into it.
fn hostile_log() -> Vec<Event> {
    let start = EventKind::IncidentStarted {
        incident: "inc-<b>1</b>".into(),
        runbook_id: "rb\"><script>alert('id')</script>".into(),
        runbook_version: Some("1|2".into()),
        runbook_sha256: "00".into(),
        runbook_text: "title: <script>alert('title')</script>\nphases: [".into(),
        inputs: BTreeMap::from([("who".into(), serde_json::json!("<img src=x onerror=alert(1)>"))]),
        key: None,
    };
    let t = at("02:00:00");
    vec![
        Event::new(t, "trigger:<svg onload=alert(1)>", start),
        Event::new(t + Duration::seconds(5), "mallory", EventKind::NoteAdded)
            .because(Some("<script>alert('note')</script> | cell\nnew row [x](javascript:alert(1))".into())),
        Event::new(
            t + Duration::seconds(9),
            "sam",
            EventKind::ApprovalGiven { phase: "p</code>".into(), gate: "g".into(), role: "<i>ciso</i>".into() },
        )
        .because(Some("ok</td><script>alert('approval')</script>".into())),
    ]
}

#[test]
fn hostile_text_from_the_log_comes_out_escaped() {
    let events = hostile_log();
    let integrity = Integrity {
        verified: false,
        events: 3,
        checkpoints: 0,
        signed_through: 0,
        fingerprint: None,
        problem: Some("checkpoint 1: <script>bad</script>".into()),
    };
    let html = report::render(&events, &integrity, Format::Html).unwrap();
    for raw in ["<script", "<img", "<svg onload", "<b>1", "<i>ciso", "</td><script", "p</code>"] {
        assert!(!html.contains(raw), "{raw} reaches the HTML unescaped");
    }
    assert!(html.contains("&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;"), "{html}");
    assert!(html.contains("does not parse"), "the report says why it lacks the runbook's details");
    assert!(html.contains("does not match the pinned text"));

    let markdown = report::render(&events, &integrity, Format::Markdown).unwrap();
    assert!(!markdown.contains("<script"), "{markdown}");
    assert!(!markdown.contains("[x](javascript"), "{markdown}");
    let note = markdown.lines().find(|line| line.starts_with("| 2 |")).expect("the note's row");
    assert!(
        note.ends_with("&lt;script>alert('note')&lt;/script> \\| cell<br>new row \\[x\\](javascript:alert(1)) |"),
        "{note}"
    );
    // Every table row keeps its cells: the pipe in the note is escaped, not a new column.
    assert_eq!(note.matches(" | ").count(), 4, "{note}");
}

#[test]
fn a_log_that_is_not_an_incident_is_refused() {
    let integrity = verified(&[]);
    let error = report::render(&[], &integrity, Format::Markdown).unwrap_err();
    assert_eq!(error.to_string(), "the log is empty: there is no incident to report on");
    let note = Event::new(at("02:00:00"), "dana", EventKind::NoteAdded);
    let error = report::render(&[note], &integrity, Format::Html).unwrap_err();
    assert_eq!(error, report::Error::NoStart { found: "note_added" });
    let mut twice = hostile_log();
    twice.push(twice[0].clone());
    assert_eq!(report::render(&twice, &integrity, Format::Markdown), Err(report::Error::SecondStart { number: 4 }));
}
