//! `phasegate drill`: every drill in `drills/` passes, a drill gives the same log byte for byte
//! each time, opens no socket, and says precisely what is wrong with a scenario or a run.

use std::path::{Path, PathBuf};

use crate::support::{Cli, root};

fn drills() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join("drills"))
        .expect("drills/ exists")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    found.sort();
    found
}

#[test]
fn every_drill_in_drills_passes_and_keeps_its_report_export_and_messages() {
    let drills = drills();
    assert!(drills.iter().any(|path| path.ends_with("retail-breach.yaml")), "the reference drill is missing");
    for drill in drills {
        let out = tempfile::tempdir().unwrap();
        let junit = out.path().join("junit.xml");
        // Run from elsewhere: a drill's runbook and member lists are found from the drill's file.
        let mut cli = Cli::new()
            .current_dir(out.path())
            .args(["drill", "-q"])
            .arg_path(&drill)
            .args(["--out"])
            .arg_path(out.path())
            .args(["--junit"])
            .arg_path(&junit)
            .succeeds();
        let stdout = cli.stdout();
        assert!(!stdout.contains("FAIL"), "{}:\n{stdout}", drill.display());
        for kept in ["drill.db", "export.jsonl", "report.html", "report.md", "timeline.txt", "drill-key.pub"] {
            assert!(out.path().join(kept).is_file(), "{}: no {kept}", drill.display());
        }
        let verification = std::fs::read_to_string(out.path().join("export-verification.txt")).unwrap();
        assert!(verification.contains(": verified ("), "{}: {verification}", drill.display());
        let messages = std::fs::read_dir(out.path().join("messages")).unwrap().count();
        assert!(messages > 0, "{}: no message captured", drill.display());
        let junit = std::fs::read_to_string(&junit).unwrap();
        assert!(junit.contains("failures=\"0\""), "{}: {junit}", drill.display());
        let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
        assert!(html.contains("<html"), "{}: the report is not HTML", drill.display());
        // A campaign's proof note names its commands as code, not between backticks.
        if html.contains("Customer campaigns") {
            assert!(html.contains("<code>phasegate audit prove "), "{}: the proof note", drill.display());
            assert!(!html.contains("`phasegate audit prove"), "{}: backticks in the report", drill.display());
        }
    }
}

#[test]
fn the_reference_drill_goes_start_to_close_with_the_containment_check_pending_then_contained() {
    let out = tempfile::tempdir().unwrap();
    let mut cli = Cli::new().args(["drill", "drills/retail-breach.yaml", "--out"]).arg_path(out.path()).succeeds();
    let stdout = cli.stdout();
    for line in [
        "check `contain/hosts-isolated` answered status 200, not as expected",
        "gate `contain/hosts-isolated` passed",
        "control `till-mfa` relaxed until",
        "phase `restore` done",
        "control `till-mfa` reinstated",
        "phase `notify-customers` done",
        "incident closed",
        "PASS  gate `contain/hosts-isolated` waited at most 30m: `contain/hosts-isolated` waited 20m",
    ] {
        assert!(stdout.contains(line), "the timeline lacks {line:?}:\n{stdout}");
    }
    // Email is captured with its recipients and subject, not sent.
    let messages = out.path().join("messages");
    let email = std::fs::read_dir(&messages)
        .unwrap()
        .flatten()
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
        .find(|text| text.contains("(email)"))
        .expect("an email was captured");
    assert!(email.contains("to: exec-incident@harbourandhale.example"), "{email}");
    assert!(email.contains("subject: "), "{email}");
    // No secret value: only the drill's placeholders, and those never in the log.
    let export = std::fs::read_to_string(out.path().join("export.jsonl")).unwrap();
    assert!(!export.contains("drill-placeholder-"), "a placeholder secret reached the log");
    // The closed incident's head is signed through its last event, the results of the updates
    // that follow the close included.
    let verification = std::fs::read_to_string(out.path().join("export-verification.txt")).unwrap();
    let number_after = |marker: &str| -> String {
        let at = verification.find(marker).unwrap_or_else(|| panic!("no {marker:?} in {verification}"));
        verification[at + marker.len()..].chars().take_while(char::is_ascii_digit).collect()
    };
    assert_eq!(number_after("signed through event "), number_after("verified ("), "{verification}");
}

#[test]
fn the_same_scenario_gives_the_same_log_byte_for_byte() {
    let runs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for out in &runs {
        Cli::new().args(["drill", "-q", "drills/retail-breach.yaml", "--out"]).arg_path(out.path()).succeeds();
    }
    for file in ["export.jsonl", "report.md", "report.html", "timeline.txt"] {
        let first = std::fs::read(runs[0].path().join(file)).unwrap();
        let second = std::fs::read(runs[1].path().join(file)).unwrap();
        assert!(first == second, "`{file}` differs between two runs of the same drill");
    }
    let export = std::fs::read_to_string(runs[0].path().join("export.jsonl")).unwrap();
    assert!(export.lines().count() > 100, "the export is too short to prove anything:\n{export}");
}

#[test]
fn a_drill_opens_no_network_socket() {
    let Some(strace) = crate::support::program_or_skip(&["strace"], "strace", "`apt-get install strace`") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let trace = out.path().join("trace.txt");
    let status = std::process::Command::new(strace)
        .args(["-f", "-e", "trace=socket,connect", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_phasegate"))
        .args(["drill", "-q", "drills/retail-breach.yaml", "--out"])
        .arg(out.path().join("out"))
        .current_dir(root())
        .output()
        .unwrap();
    let traced = std::fs::read_to_string(&trace).unwrap_or_default();
    if !status.status.success() && traced.is_empty() {
        crate::support::skip(
            &format!("strace cannot trace here (ptrace not permitted?): {}", String::from_utf8_lossy(&status.stderr)),
            "allow ptrace (run as root, outside a seccomp sandbox that forbids it)",
        );
        return;
    }
    assert!(status.status.success(), "the drill failed under strace:\n{}", String::from_utf8_lossy(&status.stdout));
    assert!(traced.contains("execve") || !traced.is_empty(), "strace recorded nothing");
    let network: Vec<&str> =
        traced.lines().filter(|line| line.contains("AF_INET") || line.contains("AF_INET6")).collect();
    assert!(network.is_empty(), "the drill made network sockets:\n{}", network.join("\n"));
}

/// A runbook small enough to drill in a test: one approval, one manual step, a relaxation.
const RUNBOOK: &str = r#"
apiVersion: phasegate/v1
kind: Runbook
id: tiny
title: Tiny
roles:
  lead: {}
  ciso: {}
rights:
  close: [lead]
  abandon: [ciso]
controls:
  mfa: { title: MFA, max_relaxation: 1d }
channels:
  out: { stdout: {} }
audiences:
  team: { template: internal-update, channels: [out] }
phases:
  - id: triage
    steps:
      - id: look
        manual: { assignee: lead, instructions: Look. }
  - id: relax
    needs: [triage]
    entry:
      - approval: { roles: [ciso] }
    steps:
      - id: relax-mfa
        relax: { control: mfa, reason: test, expires_in: 12h }
  - id: back
    needs: [relax]
    steps:
      - id: reinstate-mfa
        reinstate: { control: mfa }
status_updates:
  - on: [phase_done]
    audiences: [team]
"#;

fn scenario_dir(scenario: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.yaml"), RUNBOOK).unwrap();
    std::fs::write(dir.path().join("drill.yaml"), scenario).unwrap();
    dir
}

const HEAD: &str = "apiVersion: phasegate/v1
kind: Drill
name: tiny
runbook: tiny.yaml
start: { at: 2026-11-24T02:00:00Z, as: dana }
people:
  dana: [lead]
  priya: [ciso]
  tom: []
";

#[test]
fn a_scenario_that_does_not_parse_exits_2_with_every_problem_located() {
    let dir = scenario_dir(&format!(
        "{HEAD}script:
  - at: 5 minutes later
    as: dana
    done: triage/look
  - when: approval of relax
    as: nobody
    approve: relax
  - at: 1h
    as: dana
    done: triage/nope
expect:
  - phase_done: triage
    by: 1h
    colour: blue
"
    ));
    let path = dir.path().join("drill.yaml");
    let mut cli = Cli::new().args(["drill"]).arg_path(&path).status(2);
    let stderr = cli.stderr();
    let shown = path.display().to_string();
    for expected in [
        format!("{shown}:11:9: error[DR0010]: `at` is `5 minutes later`, which is not a duration"),
        format!("{shown}:15:9: error[DR0013]: `nobody` is not one of the drill's `people`"),
        format!("{shown}:23:5: error[DR0002]: unknown key `colour`"),
    ] {
        assert!(stderr.contains(&expected), "stderr lacks {expected:?}:\n{stderr}");
    }
    // Once the scenario itself is right, its references to the runbook are checked.
    let dir = scenario_dir(&format!(
        "{HEAD}script:
  - at: 1h
    as: dana
    done: triage/nope
"
    ));
    let path = dir.path().join("drill.yaml");
    let mut cli = Cli::new().args(["drill"]).arg_path(&path).status(2);
    let stderr = cli.stderr();
    assert!(
        stderr
            .contains(&format!("{}:11:5: error[DR0021]: step `triage/nope` is not in runbook `tiny`", path.display())),
        "{stderr}"
    );
}

#[test]
fn an_expectation_that_does_not_hold_fails_the_drill_with_exit_1() {
    let dir = scenario_dir(&format!(
        "{HEAD}script:
  - when: step triage/look
    after: 2h
    as: dana
    done: triage/look
  - when: approval of relax
    after: 10m
    as: priya
    approve: relax
expect:
  - phase_done: triage
    by: 1h
  - phase_done: back
  - exposure: mfa
    at_most: 1h
"
    ));
    let mut cli = Cli::new().args(["drill"]).arg_path(&dir.path().join("drill.yaml")).status(1);
    let stdout = cli.stdout();
    assert!(stdout.contains("FAIL  phase `triage` done by 1h: done at +2h"), "{stdout}");
    assert!(stdout.contains("PASS  phase `back` done: done at +2h 10m"), "{stdout}");
    assert!(stdout.contains("PASS  control `mfa` relaxed for at most 1h: relaxed for 0s"), "{stdout}");
}

#[test]
fn an_action_without_the_right_is_refused_and_fails_the_drill_unless_the_script_expects_the_refusal() {
    // tom holds no role: the engine refuses his approval of a gate that needs `ciso`.
    let script = |refused: &str| {
        format!(
            "{HEAD}script:
  - when: step triage/look
    as: dana
    done: triage/look
  - when: approval of relax
    as: tom
    approve: relax{refused}
  - when: approval of relax
    after: 5m
    as: priya
    approve: relax
"
        )
    };
    let dir = scenario_dir(&script(""));
    let mut cli = Cli::new().args(["drill"]).arg_path(&dir.path().join("drill.yaml")).status(1);
    let stdout = cli.stdout();
    assert!(stdout.contains("refused: approve by `tom`: `tom` does not hold role `ciso`"), "{stdout}");
    assert!(stdout.contains("FAIL  every scripted action was accepted or refused as written"), "{stdout}");
    let dir = scenario_dir(&script("\n    refused: true"));
    let mut cli = Cli::new().args(["drill"]).arg_path(&dir.path().join("drill.yaml")).succeeds();
    let stdout = cli.stdout();
    assert!(stdout.contains("PASS  every scripted action was accepted or refused as written"), "{stdout}");
}

#[test]
fn an_abandon_by_someone_without_the_right_is_refused_and_by_the_ciso_closes_the_incident() {
    let dir = scenario_dir(&format!(
        "{HEAD}script:
  - at: 10m
    as: dana
    abandon: False alarm.
    refused: true
  - at: 20m
    as: priya
    abandon: False alarm; the alert was a load test.
expect:
  - closed: true
    by: 1h
"
    ));
    let mut cli = Cli::new().args(["drill"]).arg_path(&dir.path().join("drill.yaml")).succeeds();
    let stdout = cli.stdout();
    assert!(stdout.contains("refused: abandon by `dana`: `dana` does not hold role `ciso`"), "{stdout}");
    assert!(stdout.contains("PASS  the incident closed by 1h: closed at +20m by priya"), "{stdout}");
}

/// A scripted delivery's headers reach the triggers by lowercase name, without the credentials
/// the server would not keep either; a delivery without the header a trigger reads is ignored.
#[test]
fn a_scripted_delivery_gives_its_headers_to_the_triggers_without_credentials() {
    let head = HEAD.replace("as: dana }", "as: dana, key: c-1 }");
    let dir = scenario_dir(&format!(
        "{head}script:
  - at: 5m
    webhook:
      source: siem
      headers: {{ X-SIEM-Env: prod, Authorization: Bearer t0ken, Cookie: session=c00kie }}
      payload: {{ case: c-1 }}
  - at: 6m
    webhook:
      source: siem
      payload: {{ case: c-1 }}
"
    ));
    let runbook = format!(
        "{RUNBOOK}triggers:
  - id: prod-note
    source: siem
    when: headers[\"x-siem-env\"] == \"prod\"
    key: payload.case
    evidence:
      note: '\"from \" + headers[\"x-siem-env\"] + \", credentials seen: \" + string([\"authorization\", \"cookie\"].filter(name, name in headers).size())'
"
    );
    std::fs::write(dir.path().join("tiny.yaml"), runbook).unwrap();
    let mut cli = Cli::new().args(["drill"]).arg_path(&dir.path().join("drill.yaml")).succeeds();
    let stdout = cli.stdout();
    assert!(stdout.contains("+5m  note: from prod, credentials seen: 0  [trigger:prod-note]"), "{stdout}");
    assert!(stdout.contains("+6m  webhook from `siem`: trigger `prod-note` ignored it"), "{stdout}");
}

/// The first keys of the complete scenario in `docs/drill.md`, which the other examples follow.
const DOC_HEADER: &str = "apiVersion: phasegate/v1
kind: Drill
name: example
runbook: ../runbooks/retail-breach.yaml
start: { at: 2026-11-24T02:14:00Z, as: dana }
people:
  dana: [incident-commander]
  priya: [ciso]
  sam: [soc-analyst]
  rita: [retail-ops]
  tom.reyes: [comms-lead]
";

#[test]
fn every_example_in_the_drill_docs_is_valid_or_refused_with_its_code() {
    let text = std::fs::read_to_string(root().join("docs/drill.md")).unwrap();
    let catalog = phasegate::render::Catalog::with_dir(&root().join("templates")).unwrap();
    let runbook_text = std::fs::read_to_string(root().join("runbooks/retail-breach.yaml")).unwrap();
    let runbook = phasegate::runbook::parse(&runbook_text, &catalog).expect("the reference runbook validates");
    let mut examples = 0;
    let mut previous = "";
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        if line == "```yaml" {
            let block: Vec<&str> = lines.by_ref().map(|(_, line)| line).take_while(|line| *line != "```").collect();
            let block = block.join("\n") + "\n";
            let scenario = if block.contains("kind: Drill") { block.clone() } else { format!("{DOC_HEADER}{block}") };
            let parsed = phasegate::drill::parse(&scenario);
            let problems: Vec<phasegate::drill::Diagnostic> = match &parsed {
                Ok(scenario) => phasegate::drill::validate::check(scenario, &runbook),
                Err(problems) => problems.clone(),
            };
            match previous.strip_prefix("<!-- invalid: ").and_then(|rest| rest.strip_suffix(" -->")) {
                Some(code) => assert!(
                    problems.iter().any(|problem| problem.code.as_str() == code),
                    "docs/drill.md:{}: the example is not refused with {code}: {problems:?}",
                    number + 1
                ),
                None => assert!(problems.is_empty(), "docs/drill.md:{}: {problems:?}\n{scenario}", number + 1),
            }
            examples += 1;
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    assert!(examples >= 10, "docs/drill.md has only {examples} examples");
    for code in phasegate::drill::Code::ALL {
        assert!(text.contains(&format!("| {} |", code.as_str())), "docs/drill.md does not list {}", code.as_str());
    }
}

/// Where a path argument is used as given.
trait PathArg {
    fn arg_path(self, path: &Path) -> Self;
}

impl PathArg for Cli {
    fn arg_path(self, path: &Path) -> Cli {
        self.args([path])
    }
}
