//! CACAO 2.0 import: the playbooks in `tests/cacao/`, written from the standard, one per
//! construct. Files named `caNNNN-*.json` are broken and must be refused with that code (among
//! others, all located); the rest must import into a runbook that phasegate's own validator
//! accepts. Snapshots hold the runbooks written and the problems as printed.

use std::fmt::Write as _;
use std::path::PathBuf;

use phasegate::interchange::cacao::{self, Code, Problem, Severity};
use phasegate::render::Catalog;
use phasegate::runbook;

use crate::support::{Cli, root};

fn samples() -> Vec<(String, Vec<u8>)> {
    let dir = root().join("tests/cacao");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/cacao exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 names").to_string();
            (name, std::fs::read(&path).expect("readable"))
        })
        .collect()
}

fn printed(name: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        let severity = if p.severity == Severity::Error { "error" } else { "warning" };
        writeln!(out, "{name}:{}:{}: {severity}[{}]: {}", p.mark.line, p.mark.column, p.code, p.message).unwrap();
        writeln!(out, "  at: {}", p.pointer).unwrap();
        if let Some(help) = &p.help {
            writeln!(out, "  help: {help}").unwrap();
        }
    }
    out
}

fn expected_code(name: &str) -> Option<Code> {
    let prefix = name.split('-').next()?.to_ascii_uppercase();
    Code::ALL.iter().copied().find(|code| code.as_str() == prefix)
}

#[test]
fn broken_playbooks_are_refused_with_their_code_located() {
    let mut broken = 0;
    for (name, bytes) in samples() {
        let Some(code) = expected_code(&name) else { continue };
        broken += 1;
        let problems = match cacao::import(&bytes, &cacao::NoTemplates) {
            Ok(imported) => panic!("{name} imported, but should be refused with {code}:\n{}", imported.yaml),
            Err(problems) => problems,
        };
        assert!(
            problems.iter().any(|p| p.code == code && p.severity == Severity::Error),
            "{name}: no {code} error among:\n{}",
            printed(&name, &problems)
        );
        for problem in &problems {
            assert!(problem.mark.line >= 1 && problem.mark.column >= 1, "{name}: {problem:?} is not located");
        }
        insta::with_settings!({ description => name.clone(), omit_expression => true }, {
            insta::assert_snapshot!(format!("cacao-{}", name.trim_end_matches(".json")), printed(&name, &problems));
        });
    }
    assert!(broken >= 12, "only {broken} broken playbooks in tests/cacao");
}

#[test]
fn valid_playbooks_import_into_runbooks_that_validate() {
    let catalog = Catalog::built_in();
    let mut valid = 0;
    for (name, bytes) in samples() {
        if expected_code(&name).is_some() {
            continue;
        }
        valid += 1;
        let imported = cacao::import(&bytes, &cacao::NoTemplates)
            .unwrap_or_else(|problems| panic!("{name} refused:\n{}", printed(&name, &problems)));
        if let Err(diagnostics) = runbook::parse(&imported.yaml, &catalog) {
            panic!("{name}: the runbook written does not validate: {diagnostics:#?}\n{}", imported.yaml);
        }
        let stem = name.trim_end_matches(".json");
        insta::with_settings!({ description => name.clone(), omit_expression => true }, {
            insta::assert_snapshot!(format!("cacao-{stem}-runbook"), imported.yaml);
            insta::assert_snapshot!(format!("cacao-{stem}-warnings"), printed(&name, &imported.warnings));
        });
    }
    assert!(valid >= 2);
}

/// The reference playbook's constructs, read from the model the runbook validates into.
#[test]
fn the_ransomware_playbook_maps_every_construct() {
    let bytes = std::fs::read(root().join("tests/cacao/ransomware-host.json")).unwrap();
    let imported = cacao::import(&bytes, &cacao::NoTemplates).expect("imports");
    let yaml = &imported.yaml;
    // Variables: inputs with types; a constant is an input that allows its one value.
    assert!(yaml.contains("encrypted_files:\n    type: integer"), "{yaml}");
    assert!(yaml.contains("allowed:\n      - v2"), "{yaml}");
    // out_args of a manual action: the person records them; the if-condition reads them.
    assert!(yaml.contains("outputs:\n            - encrypted_files"), "{yaml}");
    assert!(yaml.contains(r#"steps[\"confirm-the-alert/manual\"].outputs.encrypted_files > 0"#), "{yaml}");
    // http-api: method, URL from the target, interpolated variables, the body as JSON, a named secret.
    assert!(
        yaml.contains("url: \"https://edr.example.com/api/${inputs.api_version}/hosts/${inputs.host}/isolate\""),
        "{yaml}"
    );
    assert!(yaml.contains("secret: EDR_API") && yaml.contains("prefix: \"Basic \""), "{yaml}");
    assert!(!yaml.contains("hunter2"), "a credential was copied:\n{yaml}");
    // on_failure: the step is optional, the phase waits for it, and the failure branch runs on it.
    assert!(yaml.contains(r#"steps[\"isolate-the-host/http-api\"].state == \"failed\""#), "{yaml}");
    // switch-condition: each case and the default.
    assert!(yaml.contains(r#"inputs.severity == \"critical\""#), "{yaml}");
    assert!(yaml.contains(r#"!(inputs.severity in [\"critical\"])"#), "{yaml}");
    // Provenance.
    for kept in [
        "TLP:AMBER",
        "Valid from: 2026-03-15",
        "Valid until: 2027-03-15",
        "Derived from: playbook--1f2e",
        "1 signature(s)",
        "wiki.example.com",
    ] {
        assert!(yaml.contains(kept), "{kept} was lost:\n{yaml}");
    }
    let codes: Vec<Code> = imported.warnings.iter().map(|w| w.code).collect();
    for code in [Code::Credential, Code::KeptManual, Code::SubPlaybook] {
        assert!(codes.contains(&code), "no {code} warning: {codes:?}");
    }
}

#[test]
fn hostile_input_is_refused_quickly_and_located() {
    // Deep nesting: refused at the limit, not by overflowing the stack.
    let deep = format!("{{\"type\": \"playbook\", \"x\": {}}}", "[".repeat(1_000_000));
    let problems = cacao::import(deep.as_bytes(), &cacao::NoTemplates).unwrap_err();
    assert_eq!(problems[0].code, Code::TooComplex, "{problems:?}");
    // Too large.
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(5 * 1024 * 1024));
    assert_eq!(cacao::import(huge.as_bytes(), &cacao::NoTemplates).unwrap_err()[0].code, Code::TooComplex);
    // Not UTF-8.
    let problems = cacao::import(b"{\"name\": \"\xff\"}", &cacao::NoTemplates).unwrap_err();
    assert_eq!((problems[0].code, problems[0].mark.column), (Code::JsonSyntax, 11));
    // A long chain of steps that loops back to its start: one loop, found without recursion.
    let problems = cacao::import(chain(450).as_bytes(), &cacao::NoTemplates).unwrap_err();
    assert!(problems.iter().any(|p| p.code == Code::EndlessLoop), "{}", printed("loop", &problems));
    // More steps than a runbook may have phases, and more than any playbook written by hand.
    for steps in [501, 20_000] {
        let problems = cacao::import(chain(steps).as_bytes(), &cacao::NoTemplates).unwrap_err();
        assert_eq!(problems[0].code, Code::TooComplex, "{}", printed("loop", &problems));
    }
}

/// A playbook whose `steps` actions lead each to the next, and the last back to the first.
fn chain(steps: usize) -> String {
    let mut workflow = String::from(
        "\"start--1\": {\"type\": \"start\", \"on_completion\": \"action--0\"}, \"end--1\": {\"type\": \"end\"}",
    );
    for n in 0..steps {
        let next = (n + 1) % steps;
        write!(workflow, ", \"action--{n}\": {{\"type\": \"action\", \"commands\": [{{\"type\": \"manual\", \"command\": \"x\"}}], \"on_completion\": \"action--{next}\"}}").unwrap();
    }
    format!(
        "{{\"type\": \"playbook\", \"spec_version\": \"cacao-2.0\", \"name\": \"loop\", \"workflow_start\": \"start--1\", \"workflow\": {{{workflow}}}}}"
    )
}

#[test]
fn the_command_imports_writes_only_on_success_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ransomware.yaml");
    Cli::new()
        .args(["import", "cacao", "tests/cacao/ransomware-host.json", "-o"])
        .args([&out])
        .succeeds()
        .stderr_has("warning[CA0026]")
        .stderr_has("imported as runbook `ransomware-on-a-workstation`");
    let written = std::fs::read_to_string(&out).unwrap();
    Cli::new().args(["validate"]).args([&out]).succeeds();
    // An existing file is kept unless `--force`.
    Cli::new()
        .args(["import", "cacao", "tests/cacao/soarca-linear.json", "-o"])
        .args([&out])
        .status(2)
        .stderr_has("--force");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
    // A refused playbook writes nothing and says where.
    let refused = dir.path().join("refused.yaml");
    Cli::new()
        .args(["import", "cacao", "tests/cacao/ca0012-unknown-step.json", "-o"])
        .args([&refused])
        .fails()
        .stderr_has(
            "tests/cacao/ca0012-unknown-step.json:11:21: error[CA0012]: no workflow step has the id `action--tow`",
        )
        .stderr_has("  at: /workflow/action--one/on_success")
        .stderr_has("help: did you mean `action--two`?");
    assert!(!refused.exists());
    let mut json = Cli::new().args(["import", "cacao", "tests/cacao/ca0013-no-end.json", "--format", "json"]).fails();
    let report: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(report["imported"], false);
    assert_eq!(report["problems"][0]["code"], "CA0013");
    assert_eq!(report["problems"][0]["pointer"], "/workflow");
}

/// A drill of an imported playbook runs its conditions: the if-condition on a manual step's
/// output, `on_failure` after the EDR refuses, the switch's case and default.
#[test]
fn a_drill_of_the_imported_playbook_takes_the_branches_its_conditions_say() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root().join("tests/cacao/ransomware-host.json")).unwrap();
    let imported = cacao::import(&bytes, &cacao::NoTemplates).expect("imports");
    std::fs::write(dir.path().join("ransomware-host.yaml"), &imported.yaml).unwrap();
    let drill = dir.path().join("drill.yaml");
    std::fs::copy(root().join("tests/cacao/ransomware-host.drill.yaml"), &drill).unwrap();
    let out = dir.path().join("out");
    let mut cli = Cli::new().args(["drill"]).args([&drill]).args(["--out"]).args([&out]).succeeds();
    let stdout = cli.stdout();
    for line in [
        "phase `close-as-false-positive` skipped",
        "step `isolate-the-host/http-api` attempt 1 failed",
        "phase `pull-the-network-cable` started",
        "phase `tell-the-service-desk` skipped",
        "phase `start-the-crisis-playbook` done",
        "6 of 6 expectations held",
    ] {
        assert!(stdout.contains(line), "the drill did not say {line:?}:\n{stdout}");
    }
}

/// Every code has a row in docs/cacao.md's table, and every row there is a code.
#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(root().join("docs/cacao.md")).unwrap();
    let rows: Vec<&str> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| CA"))
        .filter_map(|rest| rest.get(..4))
        .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    for code in Code::ALL {
        assert!(rows.contains(&&code.as_str()[2..]), "{code} ({}) has no row in docs/cacao.md", code.summary());
    }
    assert_eq!(rows.len(), Code::ALL.len(), "docs/cacao.md lists codes that do not exist: {rows:?}");
}
