//! The command line as a person or a script uses it: exit codes, output formats, paths.

use std::path::Path;

use crate::support::Cli;

const SMALL: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: small
title: A small breach
inputs:
  severity: { type: string, default: high, allowed: [low, high] }
roles:
  ciso: { title: Chief information security officer }
controls:
  till-mfa: { title: MFA on store tills, max_relaxation: 3d }
phases:
  - id: contain
    title: Contain the intrusion
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts, outputs: [hosts] }
  - id: investigate
    needs: [contain]
    steps:
      - id: collect
        manual: { instructions: Collect evidence }
  - id: relax
    needs: [contain]
    when: 'inputs.severity == "high"'
    entry:
      - approval: { roles: [ciso], count: 2, four_eyes: true }
    steps:
      - id: tills
        relax: { control: till-mfa, reason: Keep trading, expires_in: 72h, compensating: [Extra till monitoring] }
  - id: reinstate
    needs: [relax, investigate]
    entry:
      - condition: 'steps["contain/isolate"].outputs.hosts > 0'
    steps:
      - id: tills-back
        reinstate: { control: till-mfa, strengthened: [FIDO2 keys] }
"#;

const BROKEN: &str = "apiVersion: phasegate/v1\nkind: Runbook\nid: broken\ntitle: Broken\nphases:\n  - id: a\n    neds: []\n    steps:\n      - id: s\n        manual: { instructions: x }\n";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn validate_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yaml", SMALL);
    write(dir.path(), "bad.yml", BROKEN);
    let good = dir.path().join("good.yaml");
    let bad = dir.path().join("bad.yml");

    Cli::new().args(["validate".as_ref(), good.as_os_str()]).succeeds().stdout_has("ok (small)");
    Cli::new().args(["validate".as_ref(), bad.as_os_str()]).fails().stderr_has(&format!(
        "{}:7:5: error[RB0010]: unknown key `neds`\n  help: did you mean `needs`?",
        bad.display()
    ));
    Cli::new().args(["validate", "/nonexistent/runbook.yaml"]).status(2).stderr_has("cannot read");
    Cli::new().args(["validate"]).status(2);
    Cli::new().args(["validate", "--format", "xml", "x.yaml"]).status(2);
}

#[test]
fn validate_walks_directories_and_finds_duplicate_ids() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a/one.yaml", SMALL);
    write(dir.path(), "b/deeper/two.yml", SMALL);
    write(dir.path(), "notes.txt", "not a runbook");
    Cli::new()
        .args(["validate".as_ref(), dir.path().as_os_str()])
        .fails()
        .stderr_has("one.yaml:3:5: error[RB0020]: runbook id `small` is also used by")
        .stderr_has("two.yml:3:5: error[RB0020]: runbook id `small` is also used by")
        .stderr_has("2 file(s) checked, 2 invalid");
}

#[test]
fn empty_and_non_utf8_files_are_invalid_runbooks() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "empty.yaml", "");
    std::fs::write(dir.path().join("latin1.yaml"), b"id: caf\xe9\n").unwrap();
    Cli::new()
        .args(["validate".as_ref(), dir.path().as_os_str()])
        .fails()
        .stderr_has("empty.yaml:1:1: error[RB0003]: the file is empty")
        .stderr_has("latin1.yaml:1:8: error[RB0002]");
}

#[test]
fn validate_json_is_for_machines() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.yaml", BROKEN);
    let mut cli = Cli::new()
        .args(["validate".as_ref(), "--format".as_ref(), "json".as_ref(), dir.path().join("bad.yaml").as_os_str()])
        .fails();
    let report: serde_json::Value = serde_json::from_str(&cli.stdout()).expect("stdout is JSON");
    assert_eq!(report["valid"], false);
    let diagnostic = &report["files"][0]["diagnostics"][0];
    assert_eq!(diagnostic["code"], "RB0010");
    assert_eq!(diagnostic["line"], 7);
    assert_eq!(diagnostic["column"], 5);
    assert_eq!(diagnostic["help"], "did you mean `needs`?");
}

fn plan(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "small.yaml", SMALL);
    let mut cli = Cli::new()
        .args(["plan".as_ref(), dir.path().join("small.yaml").as_os_str(), "--format".as_ref(), format.as_ref()])
        .succeeds();
    cli.stdout()
}

#[test]
fn plan_text() {
    insta::assert_snapshot!(plan("text"));
}

#[test]
fn plan_mermaid() {
    insta::assert_snapshot!(plan("mermaid"));
}

#[test]
fn plan_dot() {
    insta::assert_snapshot!(plan("dot"));
}

#[test]
fn plan_json_lists_phases_in_dependency_order() {
    let plan: serde_json::Value = serde_json::from_str(&plan("json")).unwrap();
    let order: Vec<&str> = plan["phases"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["contain", "investigate", "relax", "reinstate"]);
    assert_eq!(plan["phases"][2]["steps"][0]["action"]["relax"]["expires_in"], "3d");
    assert_eq!(plan["phases"][2]["when"], r#"inputs.severity == "high""#);
}

#[test]
fn plan_of_an_invalid_runbook_prints_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.yaml", BROKEN);
    Cli::new().args(["plan".as_ref(), dir.path().join("bad.yaml").as_os_str()]).fails().stderr_has("error[RB0010]");
}

#[test]
fn schema_is_json_schema_of_the_format() {
    let mut cli = Cli::new().args(["schema"]).succeeds();
    let schema: serde_json::Value = serde_json::from_str(&cli.stdout()).unwrap();
    assert!(schema["$schema"].as_str().unwrap().contains("json-schema.org"));
    let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for key in ["apiVersion", "kind", "id", "title", "phases"] {
        assert!(required.contains(&key), "{key} is not required: {required:?}");
    }
    assert_eq!(schema["additionalProperties"], false);
}

/// `start` says, before it opens an incident, what the configuration lacks for the runbook: here
/// the second CISO that the four-eyes gate of `relax` needs besides whoever starts it.
#[test]
fn start_warns_about_a_role_held_by_too_few_and_strict_refuses() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "small.yaml", SMALL);
    write(dir.path(), "phasegate.yaml", "database: phasegate.db\npeople:\n  dana: { roles: [ciso] }\n");
    let config = dir.path().join("phasegate.yaml");
    let start = |strict: bool| {
        let mut args = vec!["start", "small.yaml", "--as", "dana", "--config", config.to_str().unwrap()];
        if strict {
            args.push("--strict");
        }
        Cli::new().current_dir(dir.path()).args(args)
    };
    let warning = "approval gate `approval` of phase `relax` needs 2 people holding `ciso` other than `dana`, who \
                   starts the incident (four-eyes), and nobody in the configuration can; give `ciso` to someone \
                   under `people:` in the configuration";

    let mut refused = start(true).fails().stderr_has(&format!("error: {warning}"));
    assert!(refused.stdout().is_empty(), "no incident id: {}", refused.stdout());
    refused.stderr_has("error: `start --strict` refuses: the configuration does not fit runbook `small`");
    let list = || Cli::new().current_dir(dir.path()).args(["list", "--all", "--config", config.to_str().unwrap()]);
    assert!(!list().succeeds().stdout().contains("inc-"), "nothing was stored");

    let mut started = start(false).succeeds().stderr_has(&format!("warning: {warning}"));
    let incident = started.stdout().trim().to_string();
    list().succeeds().stdout_has(&incident);

    started.stderr_has("warning: no `audit.signing_key` is configured");
    // With a second CISO (and a signing key) the configuration fits, and `--strict` starts it
    // without a word.
    Cli::new().current_dir(dir.path()).args(["keygen", "signing.pem"]).succeeds();
    write(
        dir.path(),
        "phasegate.yaml",
        "database: phasegate.db\npeople:\n  dana: { roles: [ciso] }\n  sam: { roles: [ciso] }\n  lee: { roles: [ciso] }\n\
         audit: { signing_key: signing.pem }\n",
    );
    let mut quiet = start(true).succeeds();
    assert!(!quiet.stderr().contains("warning") && !quiet.stderr().contains("error"), "{}", quiet.stderr());
}
