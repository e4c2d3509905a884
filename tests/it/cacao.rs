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
fn a_credential_that_names_a_variable_is_not_called_a_credential() {
    let text = std::fs::read_to_string(root().join("tests/cacao/ransomware-host.json")).unwrap();
    let warned = |text: &str| {
        let imported = cacao::import(text.as_bytes(), &cacao::NoTemplates).expect("imports");
        imported.warnings.iter().any(|w| w.code == Code::Credential && w.pointer.ends_with("/password"))
    };
    assert!(warned(&text), "the password's value is a credential");
    let referenced = text.replace(r#""password": "hunter2""#, r#""password": "__edr_password__:value""#);
    assert_ne!(referenced, text, "the sample holds the password this test replaces");
    assert!(!warned(&referenced), "a variable reference was called a credential");
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

/// CA0019 covers every object the standard defines: each command type, markings, signatures
/// and their countersignatures, authentication information, agents, targets, extension
/// definitions, the processing summary and the playbook's own properties; each warning is at the
/// property's key.
#[test]
fn unknown_properties_are_reported_on_every_object_the_standard_defines() {
    let name = "unknown-properties-everywhere.json";
    let bytes = std::fs::read(root().join("tests/cacao").join(name)).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let imported = cacao::import(&bytes, &cacao::NoTemplates)
        .unwrap_or_else(|problems| panic!("refused:\n{}", printed(name, &problems)));
    let unknown: Vec<&Problem> = imported.warnings.iter().filter(|w| w.code == Code::UnknownProperty).collect();
    let a = "/workflow/action--1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e/commands";
    let b = "/workflow/action--2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f/commands";
    let expected = [
        "/playbook_processing_summary/loops".to_string(),
        format!("{a}/0/urgency"),
        format!("{a}/1/shell"),
        format!("{a}/2/execution_policy"),
        format!("{a}/3/adversary"),
        format!("{a}/4/index"),
        format!("{a}/5/kernel"),
        format!("{a}/6/hunt_id"),
        format!("{a}/7/command"),
        format!("{a}/7/level"),
        format!("{a}/8/ruleset"),
        format!("{a}/9/retries"),
        format!("{b}/0/expect_status"),
        format!("{b}/1/pty"),
        "/data_marking_definitions/marking-tlp--34098fce-860f-48ae-8e50-ebd3cc5e41da/colour".into(),
        "/data_marking_definitions/marking-statement--6424867b-0440-4885-bd0b-604d51786d06/licence".into(),
        "/data_marking_definitions/marking-iep--9f0a1b2c-3d4e-4f5a-8b6c-7d8e9f0a1b2c/iep_id".into(),
        "/signatures/0/key_id".into(),
        "/signatures/0/signature/countersigned_at".into(),
        "/agent_definitions/individual--5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b/shift".into(),
        "/target_definitions/http-api--6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c/vendor".into(),
        "/target_definitions/linux--7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d/distro".into(),
        "/authentication_info_definitions/oauth2--8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e/scope".into(),
        "/authentication_info_definitions/http-basic--9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f/realm".into(),
        "/authentication_info_definitions/user-auth--0d1e2f3a-4b5c-4d6e-9f7a-8b9c0d1e2f3a/mfa".into(),
        "/extension_definitions/extension-definition--1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b/homepage".into(),
    ];
    let mut found: Vec<&str> = unknown.iter().map(|w| w.pointer.as_str()).collect();
    found.sort();
    let mut wanted: Vec<&str> = expected.iter().map(String::as_str).collect();
    wanted.sort();
    assert_eq!(found, wanted, "\n{}", printed(name, &imported.warnings));
    for warning in &unknown {
        // At the key: the line holds the property's name in quotes, at the column given.
        let key = warning.pointer.rsplit('/').next().unwrap();
        let line = text.lines().nth(warning.mark.line as usize - 1).unwrap();
        let column = warning.mark.column as usize - 1;
        assert!(line[column..].starts_with(&format!("\"{key}\"")), "{} is not at its key: {line:?}", warning.pointer);
    }
    // The sigma command's `command` was read all the same, and the warning says so.
    let sigma = unknown.iter().find(|w| w.pointer == format!("{a}/7/command")).unwrap();
    assert!(sigma.message.contains("read all the same"), "{}", sigma.message);
    assert!(imported.yaml.contains("title: sample run"), "{}", imported.yaml);
    // `related_to` is provenance, kept in the description.
    assert!(imported.yaml.contains("Related to: playbook--7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e."), "{}", imported.yaml);
    // The OpenC2 command's content, given as base64, is kept in the manual step, decoded.
    assert!(imported.yaml.contains(r#"{\"action\": \"query\""#), "{}", imported.yaml);
}

/// Whatever is changed in a playbook, the importer answers (a runbook that validates, or
/// located problems) and never panics.
mod mangled {
    use proptest::prelude::*;

    use super::*;

    /// The `n`th value of `json` (in document order), replaced by `with`.
    fn replace(json: &mut serde_json::Value, n: &mut usize, with: &serde_json::Value) -> bool {
        if *n == 0 {
            *json = with.clone();
            return true;
        }
        *n -= 1;
        match json {
            serde_json::Value::Array(items) => items.iter_mut().any(|item| replace(item, n, with)),
            serde_json::Value::Object(members) => members.values_mut().any(|value| replace(value, n, with)),
            _ => false,
        }
    }

    fn count(json: &serde_json::Value) -> usize {
        1 + match json {
            serde_json::Value::Array(items) => items.iter().map(count).sum(),
            serde_json::Value::Object(members) => members.values().map(count).sum(),
            _ => 0,
        }
    }

    fn playbooks() -> Vec<serde_json::Value> {
        samples()
            .into_iter()
            .filter_map(|(_, bytes)| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(|json| json["type"] == "playbook")
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
        #[test]
        fn mangled_playbooks_are_answered_never_a_panic(
            sample in any::<prop::sample::Index>(),
            changes in prop::collection::vec((any::<prop::sample::Index>(), 0usize..9), 1..4),
        ) {
            let samples = playbooks();
            let mut json = sample.get(&samples).clone();
            let replacements = [
                serde_json::json!(null),
                serde_json::json!(-1),
                serde_json::json!("end--1"),
                serde_json::json!([]),
                serde_json::json!({}),
                serde_json::json!(true),
                serde_json::json!("__nope__:value = 'x'"),
                serde_json::json!({"type": "while-condition", "condition": "__x__:value", "on_true": "start--1"}),
                serde_json::json!([{"type": "manual"}, {"type": "x-new"}]),
            ];
            for (at, with) in changes {
                let mut n = at.index(count(&json));
                replace(&mut json, &mut n, &replacements[with]);
            }
            let bytes = serde_json::to_vec_pretty(&json).unwrap();
            match cacao::import(&bytes, &cacao::NoTemplates) {
                Ok(imported) => {
                    prop_assert!(runbook::parse(&imported.yaml, &Catalog::built_in()).is_ok(), "{}", imported.yaml);
                }
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    for problem in &problems {
                        prop_assert!(problem.mark.line >= 1 && problem.mark.column >= 1, "{problem:?}");
                        prop_assert!(problem.code != Code::Invalid, "the importer wrote a runbook that does not validate: {problem:?}");
                    }
                }
            }
        }
    }
}
