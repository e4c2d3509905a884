//! The HTML report in a real browser (the harness of `support::browser`): a crowded incident (eight
//! relaxations, four of them in the same minute, long phase names, long status updates) is opened
//! in headless Chromium, which measures every label of the chart and the status updates' rows. No
//! two labels may overlap, none may be cut off at the chart's edge, and an update takes a few lines
//! until it is opened. That report and the reference drill's are held to WCAG 2.2 AA by axe-core.

use std::path::PathBuf;

use phasegate::audit::report::{self, Format};
use phasegate::engine::event::SYSTEM;
use phasegate::engine::{Command, Directory};

use super::{Scripted, verified};
use crate::support::Cli;
use crate::support::browser::{Browser, WINDOW};

const CROWDED: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: crowded
version: "1"
title: A crowded chart
roles:
  commander: {}
  ciso: {}
controls:
  till-mfa: { title: MFA on store tills }
  admin-sso: { title: Single sign-on for every administrator account in the estate }
  card-auth: { title: Online card authorisation }
  vpn-geo: { title: VPN geofencing }
  wifi-psk: { title: Wi-Fi pre-shared keys }
  usb-block: { title: USB storage blocked on the back-office PCs of every store }
  dlp-mail: { title: Outbound mail data-loss prevention }
  change-freeze: { title: WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW }
channels:
  out: { stdout: {} }
audiences:
  internal: { title: Incident team, template: internal-update, channels: [out] }
phases:
  - id: contain
    title: Contain the intrusion at every store, warehouse and distribution centre in the northern region
    entry:
      - approval: { roles: [ciso] }
    steps:
      - { id: r1, relax: { control: till-mfa, reason: tills cannot sign in, expires_in: 1h } }
      - { id: r2, relax: { control: admin-sso, reason: the identity provider is down, expires_in: 30m } }
      - { id: r3, relax: { control: card-auth, reason: the acquirer is down, expires_in: 4h } }
      - { id: r4, relax: { control: vpn-geo, reason: responders abroad, expires_in: 2h } }
  - id: keep-trading
    title: Keep trading while the identity provider is rebuilt from known-good backups
    needs: [contain]
    entry:
      - approval: { roles: [ciso] }
    steps:
      - { id: r5, relax: { control: wifi-psk, reason: badges cannot be issued, expires_in: 1h } }
      - { id: r6, relax: { control: usb-block, reason: forensics needs images, expires_in: 3h } }
      - { id: r7, relax: { control: dlp-mail, reason: the regulator needs the evidence, expires_in: 1h } }
      - { id: r8, relax: { control: change-freeze, reason: the emergency patch, expires_in: 10m } }
  - id: bring-some-back
    needs: [keep-trading]
    entry:
      - { id: go, signal: { role: commander } }
    steps:
      - { id: b1, reinstate: { control: card-auth } }
      - { id: b2, reinstate: { control: vpn-geo } }
      - { id: b3, reinstate: { control: usb-block } }
  - id: a-phase-whose-identifier-is-long-and-has-no-title-at-all
    needs: [bring-some-back]
    entry:
      - { id: go, signal: { role: commander } }
    steps:
      - { id: b4, reinstate: { control: till-mfa } }
      - { id: b5, reinstate: { control: admin-sso } }
      - { id: b6, reinstate: { control: wifi-psk } }
      - { id: b7, reinstate: { control: dlp-mail } }
      - { id: b8, reinstate: { control: change-freeze } }
status_updates:
  - on: [control_relaxed, control_reinstated]
    audiences: [internal]
"#;

/// The last line of every update's text: the report must keep it, to be shown on request.
const LAST_LINE: &str = "Line 40 of 40: the end of the update.";

fn crowded() -> Scripted {
    let mut incident = Scripted::with(CROWDED, Directory::with(&[("dana", &["commander"]), ("sam", &["ciso"])]));
    let lines: Vec<String> = (1..=40)
        .map(|n| match n {
            40 => LAST_LINE.to_string(),
            n => format!("Line {n} of 40: what the incident team was told, at some length, about the stores."),
        })
        .collect();
    incident.said = Some(lines.join("\n"));
    let start = Command::Start {
        incident: "inc-20261124-0002".into(),
        runbook_text: CROWDED.into(),
        inputs: Default::default(),
        key: None,
    };
    incident.run("02:00:00", "dana", start);
    let approve = |phase: &str| Command::Approve { phase: phase.into(), gate: None, note: None };
    incident.run("02:00:10", "sam", approve("contain"));
    incident.deliver("02:00:20");
    incident.run("02:00:40", "sam", approve("keep-trading"));
    incident.deliver("02:00:50");
    incident.run("02:45:00", SYSTEM, Command::Tick);
    let signal = |phase: &str| Command::Signal { phase: phase.into(), gate: "go".into(), note: None };
    incident.run("03:10:00", "dana", signal("bring-some-back"));
    incident.deliver("03:10:05");
    incident.run("04:30:00", SYSTEM, Command::Tick);
    incident
}

/// What the browser measures: one line per problem, then the numbers.
const MEASURE: &str = r#"
  const lines = [];
  const svg = document.querySelector('.chart svg');
  const frame = svg.getBoundingClientRect();
  const labels = [...svg.querySelectorAll('text')].map(t => ({ text: t.textContent, box: t.getBoundingClientRect() }));
  const slack = 0.5;
  for (const { text, box } of labels) {
    if (box.left < frame.left - slack || box.right > frame.right + slack
        || box.top < frame.top - slack || box.bottom > frame.bottom + slack) {
      lines.push('cut off at the edge of the chart: ' + JSON.stringify(text));
    }
  }
  for (let i = 0; i < labels.length; i++) {
    for (let j = i + 1; j < labels.length; j++) {
      const a = labels[i].box, b = labels[j].box;
      if (a.left < b.right - slack && b.left < a.right - slack && a.top < b.bottom - slack && b.top < a.bottom - slack) {
        lines.push('overlap: ' + JSON.stringify(labels[i].text) + ' and ' + JSON.stringify(labels[j].text));
      }
    }
  }
  const section = [...document.querySelectorAll('section')].find(s => s.querySelector('h2')?.textContent.startsWith('Status updates'));
  const rows = section ? [...section.querySelectorAll('tbody tr')] : [];
  lines.push('labels ' + labels.length);
  lines.push('update rows ' + rows.length);
  lines.push('tallest update row ' + Math.ceil(Math.max(0, ...rows.map(r => r.getBoundingClientRect().height))));
  lines.push('page width ' + document.documentElement.scrollWidth);
  return lines.join('\n');
"#;

/// Writes `html` as `NAME.html` under target/tmp, to be looked at, and gives its `file://` address.
fn kept(name: &str, html: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-in-a-browser");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join(format!("{name}.html"));
    std::fs::write(&page, html).unwrap();
    format!("file://{}", page.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_has_no_overlapping_labels_in_a_browser() {
    let Some(browser) = Browser::open_or_skip().await else { return };
    let incident = crowded();
    let relaxed = incident.events().iter().filter(|e| e.kind.name() == "control_relaxed").count();
    assert_eq!(relaxed, 8, "the script relaxes eight controls");
    let html = report::render(incident.events(), &verified(incident.events()), Format::Html).unwrap();
    assert!(html.contains(LAST_LINE), "every update's whole text is in the report");

    let page = kept("crowded", &html);
    browser.open(&page).await;
    let screenshot = browser.screenshot("report-crowded").await;
    let measured = browser.script(MEASURE).await.as_str().expect("the measures, as text").to_string();
    let number = |name: &str| -> f64 {
        let line = measured.lines().find_map(|line| line.strip_prefix(name)).unwrap_or_else(|| panic!("{measured}"));
        line.trim().parse().unwrap()
    };
    let look = format!("the report is {page}, its screenshot {}", screenshot.display());
    let problems: Vec<&str> =
        measured.lines().filter(|line| line.starts_with("overlap") || line.starts_with("cut off")).collect();
    assert!(problems.is_empty(), "{} problems in the chart ({look}):\n{}", problems.len(), problems.join("\n"));
    assert!(number("labels ") >= 20.0, "the chart has its labels ({look}):\n{measured}");
    let sent = incident.events().iter().filter(|e| e.kind.name() == "status_update_sent").count();
    assert!(sent >= 3, "the rules sent updates as controls were relaxed and reinstated");
    assert_eq!(number("update rows "), sent as f64, "a row for each update ({look})");
    // Forty lines of text each, shown as their first lines until opened.
    assert!(number("tallest update row ") <= 100.0, "an update takes a few lines ({look}):\n{measured}");
    assert!(number("page width ") <= f64::from(WINDOW.0), "nothing is wider than the window ({look}):\n{measured}");

    let found = browser.axe().await;
    assert!(found.is_empty(), "{found}\n({look})");
    assert!(found.passed >= 10, "axe-core checked the report's content: {found}");
    // Of axe's best practices, the landmarks: a banner and one main, holding everything.
    let landmarks = browser.axe_rules(&["region", "landmark-one-main", "landmark-no-duplicate-banner"]).await;
    assert!(landmarks.is_empty(), "{landmarks}\n({look})");
}

/// The reference drill's own report, as `phasegate drill` writes it: no accessibility problem
/// that axe-core finds, and kept as a screenshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_drills_report_passes_axe_in_a_browser() {
    let Some(browser) = Browser::open_or_skip().await else { return };
    let out = tempfile::tempdir().unwrap();
    Cli::new().args(["drill", "-q", "drills/retail-breach.yaml", "--out"]).args([out.path()]).succeeds();
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    let page = kept("retail-breach-drill", &html);
    browser.open(&page).await;
    assert!(browser.text("h1").await.starts_with("Post-incident report: "), "{page}");
    let screenshot = browser.screenshot("report-retail-breach-drill").await;
    let found = browser.axe().await;
    assert!(found.is_empty(), "{found}\n(the report is {page}, its screenshot {})", screenshot.display());
    assert!(found.passed >= 10, "axe-core checked the report's content: {found}");
}
