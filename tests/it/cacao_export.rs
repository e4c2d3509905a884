//! CACAO 2.0 export: every example runbook exports to a playbook that the standard's JSON
//! Schemas accept, and importing the export gives the same validated runbook back, whose export
//! is the same bytes again.

use std::path::PathBuf;

use phasegate::interchange::cacao::{self, Code};
use phasegate::render::Catalog;
use phasegate::runbook;

use crate::support::{Cli, root};

fn example_runbooks() -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("runbooks"))
        .expect("runbooks/ exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 4, "the four scenarios are in runbooks/");
    paths
        .into_iter()
        .map(|path| (path.display().to_string(), std::fs::read_to_string(&path).expect("readable")))
        .collect()
}

fn model(name: &str, text: &str, catalog: &Catalog) -> serde_json::Value {
    let runbook = runbook::parse(text, catalog).unwrap_or_else(|d| panic!("{name} does not validate: {d:#?}\n{text}"));
    serde_json::to_value(&runbook).expect("a runbook serializes")
}

#[test]
fn every_example_runbook_survives_export_and_import() {
    let catalog = Catalog::built_in();
    for (name, text) in example_runbooks() {
        let exported = cacao::export(&text, &catalog).unwrap_or_else(|d| panic!("{name} not exported: {d:#?}")).json;
        let imported = cacao::import(exported.as_bytes(), &catalog)
            .unwrap_or_else(|problems| panic!("{name}: the export is refused: {problems:#?}"));
        assert!(imported.warnings.is_empty(), "{name}: {:#?}", imported.warnings);
        // The validated models are the same: phases in order, needs, when, gates, steps,
        // relaxations, audiences, status updates, triggers, rights.
        let before = model(&name, &text, &catalog);
        let after = model(&name, &imported.yaml, &catalog);
        if before != after {
            let before = serde_json::to_string_pretty(&before).unwrap();
            let after = serde_json::to_string_pretty(&after).unwrap();
            let first = before.lines().zip(after.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{name}: the runbook changed on the way through CACAO, from line {first} of its model:\n\
                 before: {}\nafter:  {}\n\nthe runbook imported:\n{}",
                before.lines().nth(first).unwrap_or(""),
                after.lines().nth(first).unwrap_or(""),
                imported.yaml
            );
        }
        let again = cacao::export(&imported.yaml, &catalog).expect("the imported runbook exports").json;
        assert!(again == exported, "{name}: export(import(export(R))) differs from export(R)");
    }
}

/// The extension is the only place gates, relaxations, status updates and campaigns go; the
/// CACAO part says the rest: phases as action steps with their commands, `when` as if-conditions,
/// side-by-side phases under a parallel step, inputs as variables.
#[test]
fn the_reference_scenario_exports_its_graph_in_cacao_and_the_rest_in_the_extension() {
    let catalog = Catalog::built_in();
    let text = std::fs::read_to_string(root().join("runbooks/retail-breach.yaml")).unwrap();
    let exported = cacao::export(&text, &catalog).unwrap().json;
    let playbook: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(playbook["spec_version"], "cacao-2.0");
    assert_eq!(playbook["id"], cacao::identifier("playbook", "retail-breach"));
    let workflow = playbook["workflow"].as_object().unwrap();
    let of_type = |kind: &str| workflow.values().filter(|step| step["type"] == kind).count();
    let runbook = runbook::parse(&text, &catalog).unwrap();
    assert_eq!(of_type("action"), runbook.phases().len());
    assert_eq!(of_type("start"), 1);
    assert!(of_type("parallel") >= 1, "retail-breach runs phases side by side");
    let guarded = runbook.phases().iter().filter(|phase| phase.when.is_some()).count();
    assert!(guarded >= 1);
    assert_eq!(of_type("if-condition"), guarded);
    assert_eq!(playbook["playbook_variables"]["__card_data_in_scope__"]["type"], "bool");
    // Relaxations, approvals and campaigns are in the extension of their phase's action step.
    let extensions: Vec<String> = workflow
        .values()
        .filter_map(|step| step["step_extensions"].get(cacao::EXTENSION))
        .map(|extension| extension.to_string())
        .collect();
    for kept in ["\"relax\"", "\"reinstate\"", "\"four_eyes\"", "\"campaign\"", "\"notify\""] {
        assert!(extensions.iter().any(|e| e.contains(kept)), "no {kept} in any step extension");
    }
    let kept = &playbook["playbook_extensions"][cacao::EXTENSION]["runbook"];
    for key in ["controls", "audiences", "status_updates", "triggers", "channels", "roles"] {
        assert!(kept.get(key).is_some(), "the playbook extension lacks `{key}`");
    }
    // Secret values never appear: headers that are secrets are left out of the http-api commands.
    assert!(!exported.contains("\"Authorization\": [\n"), "a secret header went into a command");
}

/// A playbook edited after export so that its commands no longer match the extension's steps
/// is refused, located, rather than restored wrongly.
#[test]
fn an_export_edited_out_of_step_with_its_extension_is_refused() {
    let catalog = Catalog::built_in();
    let text = std::fs::read_to_string(root().join("runbooks/account-takeover.yaml")).unwrap();
    let mut playbook: serde_json::Value = serde_json::from_str(&cacao::export(&text, &catalog).unwrap().json).unwrap();
    let (id, action) = playbook["workflow"]
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .find(|(_, step)| step["type"] == "action" && step["commands"].as_array().is_some_and(|c| c.len() > 1))
        .expect("an action with several commands");
    let id = id.clone();
    action["commands"].as_array_mut().unwrap().pop();
    let bytes = serde_json::to_vec_pretty(&playbook).unwrap();
    let problems = cacao::import(&bytes, &catalog).unwrap_err();
    let problem = problems.iter().find(|p| p.code == Code::Unsupported).expect("refused with CA0020");
    assert_eq!(problem.pointer, format!("/workflow/{id}/commands"));
    assert!(problem.mark.line > 1, "{problem:?}");
}

#[test]
fn the_command_exports_only_a_valid_runbook_and_keeps_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("retail.json");
    Cli::new()
        .args(["export", "cacao", "runbooks/retail-breach.yaml", "-o"])
        .args([&out])
        .succeeds()
        .stderr_has("exported as a CACAO 2.0 playbook");
    let written = std::fs::read_to_string(&out).unwrap();
    let mut stdout = Cli::new().args(["export", "cacao", "runbooks/retail-breach.yaml"]).succeeds();
    assert_eq!(stdout.stdout(), written, "standard output and the file differ");
    Cli::new().args(["export", "cacao", "runbooks/ransomware.yaml", "-o"]).args([&out]).status(2).stderr_has("--force");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
    // The file round-trips through the CLI too.
    let back = dir.path().join("back.yaml");
    Cli::new().args(["import", "cacao"]).args([&out]).args(["-o"]).args([&back]).succeeds();
    Cli::new().args(["validate"]).args([&back]).succeeds();
    // A runbook that does not validate is not exported, and says why.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: phasegate/v1\nkind: Runbook\nid: x\ntitle: X\nphases:\n  - id: a\n    needs: [b]\n",
    )
    .unwrap();
    let refused = dir.path().join("refused.json");
    Cli::new()
        .args(["export", "cacao"])
        .args([&broken])
        .args(["-o"])
        .args([&refused])
        .fails()
        .stderr_has("error[RB")
        .stderr_has("not exported");
    assert!(!refused.exists());
}

/// The standard's schema files, vendored in `tests/cacao/schema/` (see its README), served to
/// the validator by their published URLs. The files of objects an export never holds are not
/// vendored; those are served as a schema that accepts anything, and only those.
struct Schemas;

/// Schema files of objects that no export holds (markings, signatures, authentication,
/// other agents, commands and steps), which `tests/cacao/schema/` leaves out.
const NOT_VENDORED: &[&str] = &[
    "agent-target/http-api.json",
    "agent-target/individual.json",
    "agent-target/linux.json",
    "agent-target/location.json",
    "agent-target/net-address.json",
    "agent-target/organization.json",
    "agent-target/sector.json",
    "agent-target/security-category.json",
    "agent-target/ssh.json",
    "authentication-info/http-basic.json",
    "authentication-info/oauth2.json",
    "authentication-info/user-auth.json",
    "data-markings/marking-iep.json",
    "data-markings/marking-statement.json",
    "data-markings/marking-tlp.json",
    "data-types/playbook-processing-summary.json",
    "data-types/signature.json",
    "workflows/playbook-action.json",
    "workflows/switch-condition.json",
    "workflows/while-condition.json",
];

const PUBLISHED: &str = "https://raw.githubusercontent.com/oasis-open/cacao-json-schemas/main/schemas/";

impl jsonschema::Retrieve for Schemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        let path = uri.as_str().strip_prefix(PUBLISHED).ok_or_else(|| format!("not a CACAO schema: {uri}"))?;
        if NOT_VENDORED.contains(&path) {
            return Ok(serde_json::json!({}));
        }
        let text = std::fs::read_to_string(root().join("tests/cacao/schema").join(path))
            .map_err(|error| format!("{path}: {error}"))?;
        Ok(serde_json::from_str(&text)?)
    }
}

#[test]
fn every_export_meets_the_cacao_json_schemas() {
    let catalog = Catalog::built_in();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/cacao/schema/playbook.json")).unwrap())
            .unwrap();
    let validator = jsonschema::options().with_retriever(Schemas).build(&schema).expect("the schemas compile");
    // The example runbooks, and one whose conditions are all written as STIX.
    let route = "tests/cacao/route-by-severity.yaml";
    let route = (route.to_string(), std::fs::read_to_string(root().join(route)).unwrap());
    for (name, text) in example_runbooks().into_iter().chain([route]) {
        let exported: serde_json::Value = serde_json::from_str(&cacao::export(&text, &catalog).unwrap().json).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&exported).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: the export does not meet the schema:\n{}", errors.join("\n"));
        // The objects whose schemas are not vendored are absent, so nothing went unchecked.
        for (key, prefixes) in [
            ("workflow", &["start--", "end--", "action--", "parallel--", "if-condition--"][..]),
            ("agent_definitions", &["group--"]),
        ] {
            for id in exported[key].as_object().unwrap().keys() {
                assert!(prefixes.iter().any(|p| id.starts_with(p)), "{name}: `{id}` in `{key}` was not checked");
            }
        }
        for absent in
            ["target_definitions", "authentication_info_definitions", "data_marking_definitions", "signatures"]
        {
            assert!(exported.get(absent).is_none(), "{name}: `{absent}` was not checked");
        }
    }
    // The check can fail: a step without its `agent`, and a timestamp without milliseconds' form.
    let text = std::fs::read_to_string(root().join("runbooks/ransomware.yaml")).unwrap();
    let mut broken: serde_json::Value = serde_json::from_str(&cacao::export(&text, &catalog).unwrap().json).unwrap();
    broken["created"] = serde_json::json!("yesterday");
    let action = broken["workflow"].as_object_mut().unwrap().values_mut().find(|s| s["type"] == "action").unwrap();
    action.as_object_mut().unwrap().remove("agent");
    let errors: Vec<String> = validator.iter_errors(&broken).map(|e| e.to_string()).collect();
    assert!(errors.iter().any(|e| e.contains("agent")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("yesterday")), "{errors:?}");
}

/// The workflow's if-conditions by the phase they guard, from their names.
fn conditions(playbook: &serde_json::Value) -> Vec<(String, String, String)> {
    playbook["workflow"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, step)| step["type"] == "if-condition")
        .map(|(id, step)| {
            let name = step["name"].as_str().unwrap();
            let phase = name.split('`').nth(1).expect("the name quotes the phase").to_string();
            (phase, id.clone(), step["condition"].as_str().expect("a condition is a string").to_string())
        })
        .collect()
}

/// The playbook without phasegate's extension: what any other CACAO reader has to go by.
fn without_extension(playbook: &mut serde_json::Value) {
    let object = playbook.as_object_mut().unwrap();
    object.remove("playbook_extensions");
    object.remove("extension_definitions");
    for step in object["workflow"].as_object_mut().unwrap().values_mut() {
        step.as_object_mut().unwrap().remove("step_extensions");
    }
}

/// A `when` that compares inputs is written as STIX patterning, which a CACAO executor can
/// evaluate; a reader without phasegate's extension (here phasegate's own importer, the
/// extension removed) reads the same conditions back from the STIX, and a drill of that import
/// takes the branches they say.
#[test]
fn conditions_over_inputs_export_as_stix_that_any_reader_takes_back() {
    let catalog = Catalog::built_in();
    let text = std::fs::read_to_string(root().join("tests/cacao/route-by-severity.yaml")).unwrap();
    let exported = cacao::export(&text, &catalog).unwrap();
    assert!(exported.warnings.is_empty(), "{:#?}", exported.warnings);
    let mut playbook: serde_json::Value = serde_json::from_str(&exported.json).unwrap();
    let mut found: Vec<(String, String)> = conditions(&playbook).into_iter().map(|(p, _, c)| (p, c)).collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("close-quietly", "__severity__:value NOT IN ('high', 'critical')"),
            (
                "escalate",
                "__severity__:value IN ('high', 'critical') AND (__hosts__:value > 10 OR __paged__:value = true)"
            ),
            ("watch", "__severity__:value = 'high' AND __hosts__:value <= 10 AND __paged__:value = false"),
        ]
        .map(|(p, c)| (p.to_string(), c.to_string()))
    );

    without_extension(&mut playbook);
    let bytes = serde_json::to_vec_pretty(&playbook).unwrap();
    let imported = cacao::import(&bytes, &catalog)
        .unwrap_or_else(|problems| panic!("the export without its extension is refused: {problems:#?}"));
    let runbook = runbook::parse(&imported.yaml, &catalog).expect("the import validates");
    let when_of = |title: &str| {
        let phase = runbook.phases().iter().find(|p| p.title.as_deref() == Some(title)).expect(title);
        phase.when.as_ref().map(|w| w.source().to_string()).unwrap_or_default()
    };
    // Import wraps a branch's condition in brackets; inside them is the runbook's own `when`.
    assert_eq!(
        when_of("Escalate"),
        r#"(inputs.severity in ["high", "critical"] && (inputs.hosts > 10 || inputs.paged == true))"#
    );
    assert_eq!(when_of("Close quietly"), r#"(!(inputs.severity in ["high", "critical"]))"#);
    assert_eq!(
        when_of("Watch the hosts"),
        r#"(inputs.severity == "high" && inputs.hosts <= 10 && inputs.paged == false)"#
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("route-by-severity.yaml"), &imported.yaml).unwrap();
    let drill = dir.path().join("drill.yaml");
    std::fs::copy(root().join("tests/cacao/route-by-severity.drill.yaml"), &drill).unwrap();
    let out = dir.path().join("out");
    let mut cli = Cli::new().args(["drill"]).args([&drill]).args(["--out"]).args([&out]).succeeds();
    let stdout = cli.stdout();
    for line in ["phase `escalate` done", "phase `close-quietly` skipped", "phase `watch-the-hosts` skipped"] {
        assert!(stdout.contains(line), "the drill did not say {line:?}:\n{stdout}\n{}", imported.yaml);
    }
}

/// A `when` that reads more than inputs keeps its CEL, which a CACAO executor cannot evaluate:
/// export says so, for each such phase, at its `when` in the runbook, and the CLI prints it.
#[test]
fn conditions_cacao_cannot_say_are_kept_as_cel_with_a_located_warning() {
    let catalog = Catalog::built_in();
    let text = std::fs::read_to_string(root().join("runbooks/ransomware.yaml")).unwrap();
    let exported = cacao::export(&text, &catalog).unwrap();
    let playbook: serde_json::Value = serde_json::from_str(&exported.json).unwrap();
    let runbook = runbook::parse(&text, &catalog).unwrap();
    let mut kept = 0;
    for (phase_id, step_id, condition) in conditions(&playbook) {
        let phase = runbook.phases().iter().find(|p| p.id.as_str() == phase_id).expect("a phase");
        let when = phase.when.as_ref().expect("a guarded phase").source();
        let warning = exported.warnings.iter().find(|w| w.message.contains(&format!("phase `{phase_id}`")));
        if when.starts_with("inputs.") && !when.contains("steps[") {
            assert!(warning.is_none(), "{phase_id}: {when} was not translated: {warning:?}");
            assert!(condition.starts_with("__"), "{phase_id}: {condition}");
            continue;
        }
        kept += 1;
        assert_eq!(condition, when, "{phase_id}: the if-condition holds the CEL");
        let warning = warning.unwrap_or_else(|| panic!("{phase_id}: no warning for {when}"));
        assert_eq!(warning.code, Code::ConditionKept);
        assert_eq!(warning.pointer, format!("/workflow/{step_id}/condition"));
        assert!(warning.message.contains("`steps`"), "{}", warning.message);
        // Located at the `when` in the runbook.
        let line = text.lines().nth(warning.mark.line as usize - 1).unwrap();
        assert!(line.trim_start().starts_with("when:"), "{phase_id}: line {} is {line:?}", warning.mark.line);
        assert!(line.contains(when), "{phase_id}: line {} is {line:?}", warning.mark.line);
    }
    assert!(kept >= 3, "ransomware.yaml has phases whose conditions read steps' outputs");
    assert_eq!(exported.warnings.len(), kept, "{:#?}", exported.warnings);
    Cli::new()
        .args(["export", "cacao", "runbooks/ransomware.yaml"])
        .succeeds()
        .stderr_has("runbooks/ransomware.yaml:")
        .stderr_has("warning[CA0031]: the `when` of phase `restore-from-backup`");
}
