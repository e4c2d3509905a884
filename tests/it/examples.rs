//! Every runbook under `runbooks/` and every template under `templates/`, as shipped, and the
//! example configuration `examples/phasegate.yaml` that fits them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use phasegate::render::Catalog;
use phasegate::runbook::model::{Action, GateKind, Runbook};
use serde_json::json;

use phasegate::config::{Config, Overrides, fit};

use crate::support::{Cli, root};

fn example_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("runbooks"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    paths
}

fn examples() -> Vec<(PathBuf, Runbook)> {
    let catalog = Catalog::built_in();
    example_paths()
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            match phasegate::runbook::load(&bytes, &catalog) {
                Ok(runbook) => (path, runbook),
                Err(diagnostics) => panic!("{} is invalid: {diagnostics:#?}", path.display()),
            }
        })
        .collect()
}

#[test]
fn the_examples_cover_the_four_scenarios() {
    let ids: BTreeSet<String> = examples().into_iter().map(|(_, runbook)| runbook.id().to_owned()).collect();
    for expected in ["retail-breach", "ransomware", "account-takeover", "cloud-bucket-exposure"] {
        assert!(ids.contains(expected), "no `{expected}` runbook among {ids:?}");
    }
}

#[test]
fn every_example_uses_gates_approvals_and_status_updates() {
    for (path, runbook) in examples() {
        let gates = runbook.phases().iter().flat_map(|phase| phase.gates());
        let approvals = gates.filter(|gate| matches!(gate.kind, GateKind::Approval { .. })).count();
        assert!(approvals > 0, "{} has no approval gate", path.display());
        assert!(!runbook.status_updates().is_empty(), "{} sends no status updates", path.display());
        assert!(!runbook.triggers().is_empty(), "{} has no trigger", path.display());
    }
}

#[test]
fn the_reference_scenario_relaxes_reinstates_and_notifies_customers() {
    let (_, runbook) =
        examples().into_iter().find(|(_, runbook)| runbook.id() == "retail-breach").expect("retail-breach exists");
    let actions: Vec<&Action> =
        runbook.phases().iter().flat_map(|phase| phase.steps.iter().map(|step| &step.action)).collect();
    let relaxed: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| if let Action::Relax { control, .. } = a { Some(control.as_str()) } else { None })
        .collect();
    let reinstated: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| if let Action::Reinstate { control, .. } = a { Some(control.as_str()) } else { None })
        .collect();
    assert!(relaxed.len() >= 2, "the reference scenario relaxes several controls: {relaxed:?}");
    assert!(relaxed.is_subset(&reinstated), "every relaxed control comes back: {relaxed:?} vs {reinstated:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Campaign { .. })), "customers are notified by a campaign");
    let phase_ids: Vec<&str> = runbook.phases().iter().map(|phase| phase.id.as_str()).collect();
    for expected in ["contain", "relax-controls", "restore", "reinstate-mfa", "notify-customers"] {
        assert!(phase_ids.contains(&expected), "no phase `{expected}` in {phase_ids:?}");
    }
}

#[test]
fn every_example_validates_and_plans_through_the_cli() {
    Cli::new().args(["validate", "runbooks"]).succeeds();
    for path in example_paths() {
        for format in ["text", "mermaid", "dot", "json"] {
            Cli::new().args(["plan".as_ref(), path.as_os_str(), "--format".as_ref(), format.as_ref()]).succeeds();
        }
    }
}

/// The example configuration holds someone for every role the runbooks need (and, for four-eyes
/// gates, one person more, whoever starts the incident), declares every secret they name and
/// every webhook source their triggers listen to, and each source's secrets.
#[test]
fn the_example_configuration_fits_every_runbook() {
    let path = root().join("examples/phasegate.yaml");
    let config = Config::load(Some(&path), &Overrides::default()).unwrap();
    let mut problems = Vec::new();
    for (file, runbook) in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for misfit in fit::misfits(&config, &runbook, None) {
            match misfit {
                // The example reads secrets from the environment, which tests do not set.
                fit::Misfit::SecretEmpty { .. } => {}
                misfit => problems.push(format!("{name}: {misfit}")),
            }
        }
        for role in runbook.roles().iter().map(|role| &role.id) {
            if !config.directory.people.values().any(|roles| roles.contains(role)) {
                problems.push(format!("{name}: role `{role}` is declared and nobody in the example holds it"));
            }
        }
        for source in runbook.trigger_sources() {
            if !config.server.sources.contains_key(&source) {
                problems.push(format!("{name}: webhook source `{source}` is not under `server.sources`"));
            }
        }
    }
    for (name, source) in &config.server.sources {
        for secret in &source.secrets {
            if config.secrets.source(secret).is_none() {
                problems.push(format!("webhook source `{name}` names secret `{secret}`, not under `secrets:`"));
            }
        }
    }
    assert!(problems.is_empty(), "examples/phasegate.yaml does not fit runbooks/:\n{}", problems.join("\n"));
}

/// Copied next to the runbooks, as its first lines say, the example opens the reference scenario
/// and finds its database, runbooks and templates beside itself.
#[test]
fn the_example_copied_next_to_the_runbooks_starts_the_reference_scenario() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["runbooks", "templates"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        for entry in std::fs::read_dir(root().join(folder)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(folder).join(entry.file_name())).unwrap();
        }
    }
    std::fs::copy(root().join("examples/phasegate.yaml"), dir.path().join("phasegate.yaml")).unwrap();
    // The example names a signing key: without it, `start` says how to make it and starts nothing.
    let start = || Cli::new().current_dir(dir.path()).args(["start", "retail-breach", "--as", "dana.ito"]);
    start().status(2).stderr_has(
        "`audit.signing_key` names `keys/phasegate.pem`, which does not exist; `phasegate keygen keys/phasegate.pem` \
         writes a new key pair there",
    );
    Cli::new().current_dir(dir.path()).args(["keygen", "keys/phasegate.pem"]).succeeds();
    let mut started = start().succeeds();
    let incident = started.stdout().trim().to_string();
    assert!(incident.starts_with("inc-"), "{incident}");
    // Warned about secrets without values, and nothing about people or undeclared secrets.
    let stderr = started.stderr();
    assert!(stderr.contains("warning: secret `SOC_SLACK_WEBHOOK`"), "{stderr}");
    assert!(!stderr.contains("holding") && !stderr.contains("not configured"), "{stderr}");
    assert!(dir.path().join("phasegate.db").is_file(), "the database is beside the configuration");
    // Signed and witnessed: no warning about either, and the start's checkpoint is in the witness.
    assert!(!stderr.contains("audit."), "{stderr}");
    let witness = std::fs::read_to_string(dir.path().join("phasegate-witness.jsonl")).unwrap();
    assert!(witness.contains(&format!(r#""incident":"{incident}","key""#)), "{witness}");
    // From another directory, the same configuration finds the same database.
    let config = dir.path().join("phasegate.yaml");
    Cli::new().args(["list".as_ref(), "--config".as_ref(), config.as_os_str()]).succeeds().stdout_has(&incident);
}

/// A status-update context of the shape the engine provides (see `runbook::STATUS_CONTEXT`).
fn status_context() -> serde_json::Value {
    json!({
        "incident": {
            "id": "inc-20261124-0001", "title": "Retail platform breach", "state": "open",
            "started_at": "2026-11-24T02:14:00Z", "started_by": "alertmanager", "closed_at": null,
            "inputs": { "severity": "critical", "affected_members": 2100000 }
        },
        "runbook": { "id": "retail-breach", "title": "Retail platform breach", "version": "3", "hash": "sha256:9f2c…" },
        "phases": [
            { "id": "contain", "title": "Contain the intrusion", "state": "done", "started_at": "2026-11-24T02:15:00Z", "done_at": "2026-11-24T05:40:00Z" },
            { "id": "relax-controls", "title": "Relax controls to keep trading", "state": "running", "started_at": "2026-11-24T05:41:00Z", "done_at": null },
            { "id": "restore", "title": "Restore services", "state": "pending", "started_at": null, "done_at": null }
        ],
        "blocking": [
            { "phase": "restore", "gate": "shop-healthy", "waiting_for": "check GET https://shop.internal.example/healthz until response.status == 200", "who": "it-ops" }
        ],
        "relaxations": [
            { "control": "mfa-store-tills", "title": "MFA on store till logins", "reason": "Keep the tills trading while the identity provider is quarantined",
              "relaxed_at": "2026-11-24T05:50:00Z", "relaxed_by": "dana.ito", "approved_by": ["sam.okafor", "lee.marsh"],
              "expires_at": "2026-11-27T05:50:00Z", "time_left": "71h 10m", "overdue": false,
              "compensating": ["Till sessions limited to 4 hours", "Store managers review refunds daily"], "reinstated_at": null }
        ],
        "timeline": [
            { "at": "2026-11-24T02:14:00Z", "actor": "alertmanager", "kind": "incident_started", "summary": "ShopIntrusionDetected fired" },
            { "at": "2026-11-24T05:50:00Z", "actor": "dana.ito", "kind": "control_relaxed", "summary": "MFA on store till logins relaxed for 72h" }
        ],
        "audience": { "id": "executives", "title": "Executive team" },
        "update": { "reason": "control_relaxed", "message": null, "at": "2026-11-24T06:00:00Z" },
        "now": "2026-11-24T06:00:00Z"
    })
}

/// A campaign context of the shape the engine provides (see `runbook::CAMPAIGN_CONTEXT`).
fn campaign_context() -> serde_json::Value {
    let status = status_context();
    json!({
        "recipient": { "member_id": "M-0042", "first_name": "Amara", "last_name": "Diallo", "email": "amara@example.net",
                       "offer_points": 5000, "gift_card_value": "£20", "gift_card_code": "GC-7QX-2KD", "tier": "Gold", "language": "en" },
        "campaign": { "step": "send-apology", "phase": "notify-customers" },
        "incident": status["incident"], "runbook": status["runbook"], "now": status["now"]
    })
}

#[test]
fn every_template_renders_with_the_context_the_engine_provides() {
    let catalog = Catalog::built_in();
    let examples = examples();
    let campaign_templates = crate::support::campaign_templates(examples.iter().map(|(_, runbook)| runbook));
    let mut files: Vec<String> = std::fs::read_dir(root().join("templates"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".md") || name.ends_with(".txt") || name.ends_with(".html"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "templates/ holds the example templates: {files:?}");
    for file in files {
        let family = file.rsplit_once('.').unwrap().0;
        let context = if campaign_templates.contains(family) { campaign_context() } else { status_context() };
        let rendered = catalog.render(&file, &context).unwrap_or_else(|error| panic!("{error}"));
        assert!(!rendered.trim().is_empty(), "{file} renders nothing");
        insta::assert_snapshot!(format!("template_{file}"), rendered);
    }
}
