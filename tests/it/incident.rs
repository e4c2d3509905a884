//! The incident commands through the binary, as responders use them: the reference runbook
//! (`runbooks/retail-breach.yaml`) driven from `start` to `close` against stub servers on
//! 127.0.0.1 and a real SMTP server (`crate::smtp`), bad input that must change nothing, `list`,
//! `note`, `update`, and the pinning of the runbook an incident started with.
//!
//! Every command runs in a temporary directory with a configuration file and `--db` there. The
//! runbook is copied there with its `*.internal.example` hosts pointed at the stub (its email
//! channels unchanged: their relay is the SMTP server, which wants a login), and secrets come from
//! the configuration (environment variables and files); no secret value may show in anything
//! phasegate prints, records or sends as a status update.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use phasegate::render::Catalog;
use phasegate::runbook::model::Action;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::smtp::{Options, Sink, skipped};
use crate::support::{Cli, Received, Reply, Stub, root};

/// The secrets of the reference runbook's steps and channels, each read from the environment
/// (`true`) or from a file (`false`). The SMTP relay's URL, `SMTP_RELAY_URL`, is added by
/// [`Desk::retail`], which knows the relay's port.
const SECRETS: &[(&str, bool)] = &[
    ("SIEM_API_TOKEN", true),
    ("EDR_API_TOKEN", true),
    ("TIP_API_TOKEN", true),
    ("VAULT_TOKEN", true),
    ("POS_MGMT_TOKEN", true),
    ("DEPLOY_API_TOKEN", true),
    ("LOYALTY_ADMIN_TOKEN", true),
    ("WAF_API_TOKEN", true),
    ("GIFTCARD_API_TOKEN", true),
    ("PAGING_ROUTING_KEY", true),
    ("STATUSPAGE_API_TOKEN", true),
    ("MAILER_API_TOKEN", true),
    ("IDP_ADMIN_TOKEN", false),
    ("EVIDENCE_ARCHIVE_TOKEN", false),
    ("SOC_SLACK_WEBHOOK", true),
];

/// The login the SMTP relay of the reference runbook's email channels wants (the user is a secret
/// too: it must not show either).
const RELAY_USER: &str = "relay-user-5f1c9e2a";
const RELAY_PASSWORD: &str = "relay-pw-5f1c9e2a";

/// The path of the Slack webhook URL: whoever knows it can post to the channel.
const SLACK_PATH: &str = "/slack/services/T024BE7LD/B01ABCDEF/xoxslackpath93ab";

const PEOPLE: &str = "people:
  dana: { roles: [incident-commander, ciso, legal, dpo, soc-analyst] }
  sam: { roles: [ciso, dpo] }
  lee: { roles: [legal] }
  rita: { roles: [retail-ops] }
  olly: { roles: [it-ops, identity-team, forensics, ecommerce-lead, loyalty-lead, payments-team] }
  pat: { roles: [customer-service, comms-lead] }
";

/// A temporary working directory with a configuration and a database, and the secret values
/// that must never show.
struct Desk {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    secrets: Vec<String>,
    /// The SMTP relay of a reference runbook's desk, or why it cannot run (`aiosmtpd` missing).
    sink: Result<Sink, String>,
    /// The database every command is given (`--db`): `phasegate.db` in the directory, or a
    /// PostgreSQL URL.
    db: Option<String>,
}

impl Desk {
    /// A desk whose configuration is `PEOPLE` plus `extra`.
    fn new(extra: &str) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("phasegate.yaml"), format!("{PEOPLE}{extra}")).unwrap();
        Desk { dir, env: Vec::new(), secrets: Vec::new(), sink: Err("no relay on this desk".into()), db: None }
    }

    /// A desk for the reference runbook: `retail-breach.yaml` in the directory, its hosts and
    /// channels pointed at `stub`, its email channels' relay a real SMTP server on 127.0.0.1
    /// (when `aiosmtpd` is missing, a closed port, and `sink` says why), its secrets configured,
    /// commands allowed, and the loopback address allowed (the outbound policy refuses it otherwise).
    fn retail(stub: &Stub) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from("commands: true\noutbound:\n  allow: [127.0.0.1/32]\nsecrets:\n");
        let mut env = Vec::new();
        let mut secrets = vec![SLACK_PATH.to_string()];
        let sink = Sink::launch(Options { login: Some((RELAY_USER, RELAY_PASSWORD)), ..Options::default() });
        let relay = match &sink {
            Ok(sink) => sink.url(&format!("{RELAY_USER}:{RELAY_PASSWORD}@")),
            Err(_) => format!("smtp://{RELAY_USER}:{RELAY_PASSWORD}@127.0.0.1:1"),
        };
        config.push_str("  SMTP_RELAY_URL: { env: PGTEST_SMTP_RELAY_URL }\n");
        env.push(("PGTEST_SMTP_RELAY_URL".to_string(), relay.clone()));
        secrets.extend([relay, RELAY_USER.to_string(), RELAY_PASSWORD.to_string()]);
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        for (name, from_env) in SECRETS {
            let value = if *name == "SOC_SLACK_WEBHOOK" {
                format!("{}{SLACK_PATH}", stub.base())
            } else {
                format!("tok-{}-5f1c9e2a", name.to_lowercase().replace('_', "-"))
            };
            if *from_env {
                config.push_str(&format!("  {name}: {{ env: PGTEST_{name} }}\n"));
                env.push((format!("PGTEST_{name}"), value.clone()));
            } else {
                let file = dir.path().join("secrets").join(name);
                std::fs::write(&file, format!("{value}\n")).unwrap();
                config.push_str(&format!("  {name}: {{ file: {} }}\n", file.display()));
            }
            secrets.push(value);
        }
        std::fs::write(dir.path().join("phasegate.yaml"), format!("{PEOPLE}{config}")).unwrap();
        let script = dir.path().join("archive-evidence");
        let seen = dir.path().join("archive-token-seen");
        let script_text = format!(
            "#!/bin/sh\nprintf '%s' \"$ARCHIVE_TOKEN\" > '{}'\necho \"archived case $2 to $ARCHIVE_BUCKET with $ARCHIVE_TOKEN\"\n",
            seen.display()
        );
        std::fs::write(&script, script_text).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let original = std::fs::read_to_string(root().join("runbooks/retail-breach.yaml")).unwrap();
        std::fs::write(dir.path().join("retail-breach.yaml"), localised(&original, stub.base(), &script)).unwrap();
        Desk { dir, env, secrets, sink, db: None }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `phasegate ARGS --config ... --db ...`, run in the desk's directory.
    fn cli(&self, args: &[&str]) -> Cli {
        let db = self.db.clone().map_or_else(|| self.path("phasegate.db").into_os_string(), Into::into);
        let mut cli = Cli::new().current_dir(self.dir.path()).args(args).args([
            "--config".as_ref(),
            self.path("phasegate.yaml").as_os_str(),
            "--db".as_ref(),
            db.as_os_str(),
        ]);
        for (key, value) in &self.env {
            cli = cli.env(key, value);
        }
        cli
    }

    /// Runs a command, checks that its output shows no secret, and returns the status, stdout
    /// and stderr.
    fn exec(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut cli = self.cli(args);
        let (code, stdout, stderr) = (cli.code(), cli.stdout(), cli.stderr());
        self.no_secret_in(&format!("{stdout}\n{stderr}"), &format!("the output of `{}`", args.join(" ")));
        (code, stdout, stderr)
    }

    /// Runs a command that must succeed, and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.exec(args);
        assert_eq!(code, Some(0), "`{}` failed:\nstdout:\n{stdout}\nstderr:\n{stderr}", args.join(" "));
        stdout
    }

    /// Runs a command that must be refused with `code` and a message containing each of
    /// `wanted`, and checks that the incident's log and state did not change.
    fn refused(&self, incident: &str, args: &[&str], code: i32, wanted: &[&str]) {
        let before = self.status_text_json(incident);
        let (status, stdout, stderr) = self.exec(args);
        assert_eq!(status, Some(code), "`{}`:\nstdout:\n{stdout}\nstderr:\n{stderr}", args.join(" "));
        for text in wanted {
            assert!(stderr.contains(text), "`{}`: stderr lacks {text:?}:\n{stderr}", args.join(" "));
        }
        assert!(stderr.starts_with("error: "), "`{}`: not one clear error:\n{stderr}", args.join(" "));
        assert_eq!(self.status_text_json(incident), before, "`{}` changed the incident", args.join(" "));
    }

    fn no_secret_in(&self, text: &str, what: &str) {
        for secret in &self.secrets {
            assert!(!text.contains(secret.as_str()), "{what} shows the secret {secret:?}:\n{text}");
        }
    }

    fn status_text_json(&self, incident: &str) -> String {
        self.ok(&["status", incident, "--format", "json", "--events", "100000"])
    }

    /// `status --format json` with every event.
    fn status(&self, incident: &str) -> Value {
        serde_json::from_str(&self.status_text_json(incident)).unwrap()
    }

    fn start(&self, runbook: &str, actor: &str) -> String {
        let id = self.ok(&["start", runbook, "--as", actor]).trim().to_string();
        assert!(id.starts_with("inc-") && !id.contains('\n'), "start printed {id:?}");
        id
    }

    fn done(&self, incident: &str, step: &str, actor: &str, extra: &[&str]) {
        let evidence = format!("evidence for {step} by {actor}");
        let mut args = vec!["done", incident, step, "--as", actor, "--evidence", &evidence];
        args.extend_from_slice(extra);
        let stdout = self.ok(&args);
        assert!(stdout.contains(&format!("step `{step}` done: {evidence}")), "{stdout}");
    }
}

/// The runbook with every `https://NAME.internal.example` as `BASE/NAME` and its evidence
/// archiver as `script`; its email channels are left as they are.
fn localised(text: &str, base: &str, script: &Path) -> String {
    let mut hosts = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(".internal.example") {
        let start = rest[..at].rfind("https://").expect("every internal host is called over https");
        hosts.push_str(&rest[..start]);
        hosts.push_str(&format!("{base}/{}", &rest[start + "https://".len()..at]));
        rest = &rest[at + ".internal.example".len()..];
    }
    hosts.push_str(rest);
    let out = hosts;
    assert_eq!(
        out.matches("relay_secret: SMTP_RELAY_URL").count(),
        3,
        "the reference runbook's email channels changed"
    );
    let archiver = "/opt/ir-tools/bin/archive-evidence";
    assert!(out.contains(archiver), "the reference runbook's archive command changed; update this test");
    out.replace(archiver, &script.display().to_string())
}

/// What the reference runbook's services answer when all is well.
fn retail_answer(request: &Received) -> Reply {
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("POST", "/siem/api/v1/retention/holds") => Reply::json(201, json!({ "id": "hold-7731" })),
        ("POST", "/edr/api/v2/device-groups/retail-breach-suspect/actions") => {
            Reply::json(202, json!({ "action_id": "act-19", "device_count": 12 }))
        }
        ("GET", "/edr/api/v2/device-groups/retail-breach-suspect/containment") => {
            Reply::json(200, json!({ "total": 12, "contained": 12, "pending": 0 }))
        }
        ("POST", "/tip/api/v1/collections/retail-breach/publish") => Reply::json(200, json!({ "failed_targets": [] })),
        ("POST", "/vault/v1/database/rotate-role/loyalty-api-rw") => Reply::empty(204),
        ("PUT", "/pos-mgmt/api/v1/estates/uk-retail/policies/authentication") => {
            Reply::json(200, json!({ "applied_to_stores": 640 }))
        }
        ("POST", "/deploy/api/v1/pipelines/shop-frontend/runs" | "/deploy/api/v1/pipelines/loyalty-api/runs") => {
            Reply::json(201, json!({ "id": "run-2209" }))
        }
        ("POST", "/loyalty/api/v2/admin/credential-resets") => Reply::json(202, json!({ "job_id": "reset-1" })),
        ("POST", "/loyalty/api/v2/goodwill/batches") => Reply::json(202, json!({ "batch_id": "gw-1" })),
        ("POST", "/giftcards/api/v1/bulk-issues") => Reply::json(202, json!({ "issue_id": "gc-1" })),
        ("GET", "/shop/healthz") => Reply::json(200, json!({ "status": "ok", "deployment": "green" })),
        ("GET", "/loyalty/api/v2/health") => Reply::json(200, json!({ "database": "ok", "auth": "ok" })),
        ("GET", "/idp-stores/health/ready") => Reply::json(200, json!({ "ready": true })),
        ("GET", "/idp-stores/admin/api/v1/policies/store-tills") => Reply::json(
            200,
            json!({ "mfa": { "required": true, "allowed_factors": ["webauthn"] }, "fallback": "none" }),
        ),
        (
            "PUT",
            "/pos-mgmt/api/v1/estates/uk-retail/policies/payments"
            | "/waf/api/v1/policies/shop-prod/rule-sets/retail-breach-virtual-patch"
            | "/idp-stores/admin/api/v1/policies/store-tills",
        ) => Reply::json(200, json!({ "applied": true })),
        ("POST", _) if is_channel(path) => Reply::json(200, json!({ "ok": true })),
        _ => Reply::json(404, json!({ "error": "no such stub route" })),
    }
}

/// Whether a request is a status update delivered to a notify channel.
fn is_channel(path: &str) -> bool {
    ["/slack/", "/paging/", "/status-admin/", "/mailer/"].iter().any(|prefix| path.starts_with(prefix))
}

fn phase_status(status: &Value, phase: &str) -> String {
    status["incident"]["phases"][phase]["status"].as_str().unwrap_or("pending").to_string()
}

/// What an event says happened (its `type` and fields), apart from who, when and why.
fn what(event: &Value) -> &Value {
    // The event shape nests what happened under `event`; older logs flattened it.
    if event["event"].is_object() { &event["event"] } else { event }
}

fn events(status: &Value) -> &Vec<Value> {
    status["recent"].as_array().expect("status lists the events")
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The people `status --format json` says can unblock `what` (`PHASE/STEP` or a gate's id).
fn unblockers(status: &Value, what: &str) -> Vec<String> {
    let blocking = status["blocking"].as_array().unwrap();
    let entry = blocking
        .iter()
        .find(|b| b["blocker"]["what"] == what)
        .unwrap_or_else(|| panic!("nothing blocks on `{what}`: {blocking:#?}"));
    serde_json::from_value(entry["people"].clone()).unwrap()
}

#[test]
fn the_reference_runbook_runs_from_start_to_close() {
    the_reference_runbook_runs(None);
}

/// The same, every command on a PostgreSQL database.
#[test]
fn the_reference_runbook_runs_from_start_to_close_on_postgres() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(schema) = runtime.block_on(crate::support::postgres::schema()) else { return };
    the_reference_runbook_runs(Some(schema.url()));
}

fn the_reference_runbook_runs(db: Option<String>) {
    let stub = Stub::start(retail_answer);
    let mut desk = Desk::retail(&stub);
    desk.db = db;
    if let Err(why) = &desk.sink {
        skipped(&format!("the_reference_runbook_runs_from_start_to_close: its email channels' relay: {why}"));
        return;
    }
    let runbook_text = std::fs::read_to_string(desk.path("retail-breach.yaml")).unwrap();
    Cli::new().current_dir(desk.dir.path()).args(["validate", "retail-breach.yaml"]).succeeds();
    let id = desk.start("retail-breach.yaml", "dana");
    let status = desk.status(&id);
    assert_eq!(status["incident"]["runbook_sha256"], sha256(&runbook_text));
    assert_eq!(phase_status(&status, "triage"), "running");
    assert_eq!(unblockers(&status, "triage/mobilise"), ["dana"]);

    // Triage: the bridge, the scoping (card data out of scope, the payment switch isolated).
    desk.ok(&["run"]);
    desk.done(&id, "triage/mobilise", "dana", &[]);
    let outputs = [
        "--output",
        "idp_compromised=yes",
        "--output",
        "card_data_in_scope=no",
        "--output",
        "payment_switch_isolated=yes",
        "--output",
        "records_accessed_estimate=2100000",
    ];
    desk.done(&id, "triage/scope-assessment", "dana", &outputs);
    desk.ok(&["run"]);
    let status = desk.status(&id);
    for (phase, expected) in [
        ("triage", "done"),
        ("card-scheme-notification", "skipped"),
        ("contain", "running"),
        ("relax-controls", "ready"),
        ("regulator-notification", "running"),
    ] {
        assert_eq!(phase_status(&status, phase), expected, "{phase}");
    }
    assert_eq!(status["incident"]["phases"]["triage"]["steps"]["legal-hold"]["outputs"]["hold_id"], "hold-7731");

    // Relaxing controls needs the CISO (four-eyes: not the starter) and the business.
    assert_eq!(unblockers(&status, "ciso-approval"), ["sam"], "four-eyes leaves the starter out");
    assert_eq!(unblockers(&status, "business-approval"), ["rita"]);
    let board = desk.ok(&["status", &id]);
    for line in ["relax-controls [ciso-approval]", "can unblock: ciso (sam)", "can unblock: retail-ops (rita)"] {
        assert!(board.contains(line), "the board lacks {line:?}:\n{board}");
    }
    let approve_ciso = ["approve", &id, "relax-controls", "--gate", "ciso-approval"];
    desk.refused(
        &id,
        &[&approve_ciso[..], &["--as", "dana"]].concat(),
        1,
        &["four-eyes", "`dana` started the incident"],
    );
    desk.refused(&id, &[&approve_ciso[..], &["--as", "pat"]].concat(), 1, &["`pat` does not hold role `ciso`"]);
    desk.ok(&[&approve_ciso[..], &["--as", "sam", "--note", "risk accepted for 72h"]].concat());
    desk.refused(&id, &[&approve_ciso[..], &["--as", "sam"]].concat(), 1, &["already passed"]);
    desk.ok(&["approve", &id, "relax-controls", "--as", "rita", "--note", "stores must trade"]);
    let board = desk.ok(&["status", &id]);
    for text in
        ["CONTROL RELAXATIONS", "till-mfa", "MFA for store till sign-in", "left (expires", "approved by sam, rita"]
    {
        assert!(board.contains(text), "the board lacks {text:?}:\n{board}");
    }
    desk.refused(&id, &["close", &id, "--as", "dana"], 1, &["cannot close while controls are relaxed", "`till-mfa`"]);
    desk.ok(&["run"]);
    let status = desk.status(&id);
    assert_eq!(phase_status(&status, "relax-controls"), "done");
    let open: BTreeSet<&str> = status["incident"]["relaxations"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["reinstated_at"].is_null())
        .map(|(control, _)| control.as_str())
        .collect();
    assert_eq!(open, BTreeSet::from(["admin-sso-only", "card-online-authorisation", "till-mfa"]));

    // Containment: manual steps, and the EDR sweep signal from a SOC analyst.
    for step in ["contain/quarantine-idp", "contain/rotate-credentials", "contain/preserve-evidence"] {
        desk.done(&id, step, "olly", &[]);
    }
    desk.refused(&id, &["signal", &id, "contain/edr-sweep-clean", "--as", "pat"], 1, &["role `soc-analyst`"]);
    desk.ok(&["signal", &id, "contain/edr-sweep-clean", "--as", "dana", "--note", "sweep clean"]);
    // The regulator is told.
    desk.done(&id, "regulator-notification/risk-assessment", "sam", &["--output", "high_risk_to_individuals=yes"]);
    desk.done(&id, "regulator-notification/submit-notification", "sam", &[]);
    desk.ok(&["run"]);
    desk.ok(&["approve", &id, "regulator-notification", "--as", "sam", "--note", "ICO ref 0042"]);
    desk.ok(&["note", &id, "Bridge moved to room 4", "--as", "lee"]);

    // Eradication, then the restore with go-live approval.
    desk.done(&id, "eradicate/root-cause", "olly", &["--output", "initial_access_vector=outdated plugin"]);
    for step in ["eradicate/remove-persistence", "eradicate/patch-entry-point", "eradicate/rebuild-idp"] {
        desk.done(&id, step, "olly", &[]);
    }
    desk.done(&id, "eradicate/threat-hunt", "dana", &[]);
    desk.ok(&["approve", &id, "eradicate", "--as", "olly"]);
    desk.ok(&["approve", &id, "restore", "--as", "dana", "--note", "eradication confirmed"]);
    desk.done(&id, "restore/rotate-partner-keys", "olly", &[]);
    desk.done(&id, "restore/smoke-test", "olly", &[]);
    desk.done(&id, "restore/heightened-monitoring", "dana", &[]);
    desk.refused(
        &id,
        &["update", &id, "public", "--as", "dana"],
        1,
        &["`dana` does not hold role `comms-lead` (held by pat)"],
    );
    desk.ok(&["update", &id, "public", "--as", "pat"]);
    desk.ok(&["run"]);
    assert_eq!(phase_status(&desk.status(&id), "restore"), "done");

    // Reinstating every relaxed control, stronger.
    desk.done(&id, "reinstate-mfa/enrol-fido2-badges", "olly", &["--output", "enrolment_percent=100"]);
    desk.done(&id, "reinstate-mfa/retire-break-glass", "olly", &[]);
    desk.done(&id, "reinstate-mfa/reconcile-offline-payments", "olly", &[]);
    desk.ok(&["run"]);
    desk.ok(&["approve", &id, "reinstate-mfa", "--as", "sam"]);
    let status = desk.status(&id);
    assert_eq!(phase_status(&status, "reinstate-mfa"), "done");
    assert!(status["incident"]["relaxations"].as_object().unwrap().values().all(|r| !r["reinstated_at"].is_null()));
    assert!(desk.ok(&["status", &id]).contains("reinstated "), "the board shows the exposure windows");

    // The customers: two four-eyes approvals, named because both wait.
    desk.refused(
        &id,
        &["approve", &id, "notify-customers", "--as", "lee"],
        1,
        &["several approvals waiting (`legal-approval`, `dpo-approval`)", "name the one to approve with `--gate GATE`"],
    );
    let approve_legal = ["approve", &id, "notify-customers", "--gate", "legal-approval"];
    desk.refused(&id, &[&approve_legal[..], &["--as", "dana"]].concat(), 1, &["four-eyes"]);
    desk.ok(&[&approve_legal[..], &["--as", "lee"]].concat());
    desk.ok(&["approve", &id, "notify-customers", "--gate", "dpo-approval", "--as", "sam"]);
    // The loyalty team's export: the campaign reads it where the input's default says.
    let exports = desk.path("exports/retail-breach");
    std::fs::create_dir_all(&exports).unwrap();
    let members = [
        r#"{"member_id": "M1", "email": "ann@example.com", "first_name": "Ann", "offer_kind": "gift_card", "gift_card_value": "GBP 10", "gift_card_code": "GC-1"}"#,
        r#"{"member_id": "M2", "email": "bo@example.com", "first_name": "Bo", "offer_kind": "points", "offer_points": 500}"#,
        r#"{"member_id": "M3", "email": "not an address"}"#,
        r#"{"member_id": "M4", "email": "cy@example.com", "first_name": "Cy", "offer_kind": "points", "offer_points": 500}"#,
    ];
    std::fs::write(exports.join("affected-members.jsonl"), members.join("\n") + "\n").unwrap();
    desk.done(&id, "notify-customers/build-recipient-list", "olly", &["--output", "recipient_count=2100000"]);
    desk.done(&id, "notify-customers/brief-contact-centre", "pat", &[]);
    // The apology campaign is not a person's to mark done: `run` sends it.
    desk.refused(&id, &["done", &id, "notify-customers/send-apology", "--as", "pat"], 1, &["is campaign"]);
    desk.ok(&["run"]);
    let batches: Vec<Received> = stub
        .received()
        .into_iter()
        .filter(|r| r.path.contains("/mailer/") && r.body.contains("\"messages\""))
        .collect();
    assert_eq!(batches.len(), 1, "one batch of three, sent once");
    let key = format!("{id}/notify-customers/send-apology/1");
    assert_eq!(batches[0].header("idempotency-key"), Some(key.as_str()));
    let sent: Value = serde_json::from_str(&batches[0].body).unwrap();
    let ids: Vec<&str> = sent["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["M1", "M2", "M4"], "the malformed address is set aside");
    assert!(sent["messages"][0]["text"].as_str().unwrap().contains("GC-1"), "the gift card code reaches its member");
    for step in ["monitor-campaign", "press-briefing"] {
        desk.done(&id, &format!("notify-customers/{step}"), "pat", &[]);
    }
    desk.ok(&["run"]);

    // Close-out: the review, the board, the evidence archive (a command given a secret).
    desk.done(&id, "close-out/post-incident-review", "dana", &[]);
    desk.done(&id, "close-out/board-report", "sam", &[]);
    desk.ok(&["run"]);
    desk.refused(&id, &["approve", &id, "close-out", "--as", "dana"], 1, &["four-eyes"]);
    desk.ok(&["approve", &id, "close-out", "--as", "sam"]);
    let status = desk.status(&id);
    for phase in status["incident"]["phases"].as_object().unwrap().keys() {
        let expected = if phase == "card-scheme-notification" { "skipped" } else { "done" };
        assert_eq!(phase_status(&status, phase), expected, "{phase}");
    }
    assert_eq!(status["incident"]["phases"].as_object().unwrap().len(), 10, "every phase has a state");
    assert_eq!(status["blocking"], json!([]));
    desk.ok(&["close", &id, "--as", "dana", "--note", "PIR actions tracked in RB-2026"]);
    desk.ok(&["run"]);

    let status = desk.status(&id);
    assert_eq!(status["incident"]["closed"]["by"], "dana");
    assert_eq!(status["incident"]["runbook_sha256"], sha256(&runbook_text));
    let board = desk.ok(&["status", &id]);
    assert!(board.contains("[CLOSED") && board.contains("skipped  card-scheme-notification"), "{board}");
    assert!(!desk.ok(&["list"]).contains(&id));
    assert!(desk.ok(&["list", "--all"]).contains(&id));
    check_log(&status);
    check_deliveries(&desk, &stub, &id, &runbook_text);
}

/// What the log of the reference incident must say.
fn check_log(status: &Value) {
    let log = events(status);
    let failed: Vec<&Value> =
        log.iter().filter(|e| what(e)["type"] == "step_failed" || what(e)["type"] == "phase_failed").collect();
    assert!(failed.is_empty(), "nothing failed: {failed:#?}");
    let undelivered: Vec<&Value> = log.iter().filter(|e| what(e)["type"] == "status_update_failed").collect();
    assert!(undelivered.is_empty(), "every status update was delivered: {undelivered:#?}");
    let approvals: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| what(e)["type"] == "approval_given")
        .map(|e| (e["actor"].as_str().unwrap(), what(e)["gate"].as_str().unwrap()))
        .collect();
    assert!(approvals.contains(&("sam", "ciso-approval")) && approvals.contains(&("lee", "legal-approval")));
    let by_starter: Vec<&str> = approvals.iter().filter(|(who, _)| *who == "dana").map(|(_, gate)| *gate).collect();
    assert_eq!(by_starter, ["go-live-approval"], "the starter approved only what is not four-eyes");
    let note = log.iter().find(|e| what(e)["type"] == "note_added").expect("the note is in the log");
    assert_eq!((&note["actor"], &note["reason"]), (&json!("lee"), &json!("Bridge moved to room 4")));
    assert!(log.iter().any(|e| what(e)["type"] == "status_update_requested"
        && what(e)["audience"] == "public"
        && what(e)["occasion"] == "requested"));
    let archived = &status["incident"]["phases"]["close-out"]["steps"]["archive-evidence"];
    let stdout = archived["outputs"]["stdout"].as_str().unwrap();
    assert!(stdout.contains("with [secret `EVIDENCE_ARCHIVE_TOKEN`]"), "the command's output is scrubbed: {stdout}");
}

/// What the stub received: each http step once per idempotency key, with its secret in its
/// header; status updates on the Slack and webhook channels, and by mail, none with a secret in it.
fn check_deliveries(desk: &Desk, stub: &Stub, id: &str, runbook_text: &str) {
    desk.no_secret_in(&serde_json::to_string(&desk.status(id)).unwrap(), "the incident's state and events");
    let runbook = phasegate::runbook::parse(runbook_text, &Catalog::built_in()).unwrap();
    let mut expected = BTreeMap::new();
    for phase in runbook.phases() {
        for step in &phase.steps {
            if let Action::Http { request, .. } = &step.action {
                expected.insert(format!("{id}/{}/{}", phase.id, step.id), request.url.clone());
            }
        }
    }
    assert_eq!(expected.len(), 14, "the reference runbook's http steps changed; update this test");
    let received = stub.received();
    let mut keyed: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for request in &received {
        // Channels' deliveries (the campaign's batch among them) are checked above and below.
        if is_channel(&request.path) {
            continue;
        }
        if let Some(key) = request.header("idempotency-key") {
            keyed.entry(key.to_string()).or_default().push(request);
        }
    }
    assert_eq!(keyed.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "one key per http step");
    for (key, requests) in &keyed {
        assert_eq!(requests.len(), 1, "`{key}` was sent {} times", requests.len());
        let url = &expected[key];
        assert!(url.ends_with(&requests[0].path), "`{key}` went to {} instead of {url}", requests[0].path);
        assert!(
            requests[0].header("authorization").is_some_and(|a| a.starts_with("Bearer tok-"))
                || requests[0].header("x-vault-token") == Some("tok-vault-token-5f1c9e2a")
        );
    }
    let updates: Vec<&Received> = received.iter().filter(|r| is_channel(&r.path)).collect();
    let slack = updates.iter().filter(|r| r.path == SLACK_PATH).count();
    let statuspage: Vec<&&Received> = updates.iter().filter(|r| r.path.starts_with("/status-admin/")).collect();
    assert!(slack >= 10, "the incident team's Slack got {slack} updates");
    assert!(statuspage.len() >= 3, "the public status page got {} updates", statuspage.len());
    assert_eq!(statuspage[0].header("authorization"), Some("Bearer tok-statuspage-api-token-5f1c9e2a"));
    for update in &updates {
        let body: Value = serde_json::from_str(&update.body).unwrap();
        // A campaign's batch carries its messages; a status update, its text.
        let text = match body["messages"].as_array() {
            Some(messages) => messages.iter().filter_map(|m| m["text"].as_str()).collect::<Vec<_>>().join("\n"),
            None => body["text"].as_str().unwrap_or_default().to_string(),
        };
        assert!(text.contains("Harbour") || text.contains(id), "{body}");
        desk.no_secret_in(&update.body, &format!("the message sent to {}", update.path));
    }
    check_mail(desk, id);
    for file in ["status/retail-breach-public.md", "status/retail-breach-customer-faq.html"] {
        let text = std::fs::read_to_string(desk.path(file)).unwrap();
        desk.no_secret_in(&text, file);
    }
    let seen = std::fs::read_to_string(desk.path("archive-token-seen")).unwrap();
    assert_eq!(seen, "tok-evidence-archive-token-5f1c9e2a", "the command got its secret");
}

/// The reference runbook with its legal hold failing for good at the first attempt, while the
/// SIEM is down: the board says what blocks and the command that unblocks it; only the runbook's
/// `recover` roles retry (same idempotency key) or skip; only `close` roles close, and only once
/// every phase is done; an `abandon` role closes early with a reason, which the report, the list,
/// the board and the public status page show.
#[test]
fn a_step_that_failed_for_good_is_recovered_and_only_rights_close_or_abandon() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let siem_down = Arc::new(AtomicBool::new(true));
    let down = Arc::clone(&siem_down);
    let stub = Stub::start(move |request| {
        if request.path.starts_with("/siem/") && down.load(Ordering::SeqCst) {
            Reply::json(503, json!({ "error": "maintenance" }))
        } else {
            retail_answer(request)
        }
    });
    let desk = Desk::retail(&stub);
    let runbook = std::fs::read_to_string(desk.path("retail-breach.yaml")).unwrap();
    let retries = "retry: { attempts: 5, backoff: 2s, max_backoff: 1m }";
    assert!(runbook.find(retries) < runbook.find("id: isolate-hosts"), "the legal hold's retries changed");
    std::fs::write(desk.path("retail-breach.yaml"), runbook.replacen(retries, "retry: { attempts: 1 }", 1)).unwrap();
    let id = desk.start("retail-breach.yaml", "dana");
    desk.done(&id, "triage/mobilise", "dana", &[]);
    desk.ok(&["run"]);
    let status = desk.status(&id);
    assert_eq!(phase_status(&status, "triage"), "failed");
    let board = desk.ok(&["status", &id]);
    for line in [
        "[OPEN, FAILED: see BLOCKING]".to_string(),
        "triage [triage/legal-hold]: http step failed for good after 1 attempt(s)".to_string(),
        "can unblock: incident-commander or soc-analyst (dana)".to_string(),
        format!("run: phasegate retry {id} triage/legal-hold --as dana"),
        format!("run: phasegate skip {id} triage/legal-hold --reason TEXT --as dana"),
        format!("run: phasegate done {id} triage/legal-hold --evidence TEXT --as dana"),
    ] {
        assert!(board.contains(&line), "the board lacks {line:?}:\n{board}");
    }
    assert!(desk.ok(&["list"]).lines().any(|l| l.starts_with(&id) && l.contains(" failed ")));

    let retry = ["retry", &id, "triage/legal-hold"];
    desk.refused(
        &id,
        &[&retry[..], &["--as", "pat"]].concat(),
        1,
        &["`pat` does not hold any of the roles `incident-commander`, `soc-analyst` (held by dana)"],
    );
    desk.refused(&id, &["retry", &id, "triage/mobilise", "--as", "dana"], 1, &["is done, not failed"]);
    desk.refused(&id, &["skip", &id, "triage/legal-hold", "--as", "dana"], 2, &["--reason"]);
    desk.refused(&id, &["close", &id, "--as", "pat"], 1, &["role `incident-commander` (held by dana)"]);
    desk.refused(&id, &["close", &id, "--as", "dana"], 1, &["`triage` is failed", "`close-out` is pending"]);
    desk.refused(&id, &["update", &id, "public", "--as", "dana"], 1, &["role `comms-lead` (held by pat)"]);

    // A retry while the SIEM is still down fails again; once it is back, the same key goes through.
    desk.ok(&[&retry[..], &["--as", "dana", "--reason", "SIEM restarted"]].concat());
    desk.ok(&["run"]);
    assert_eq!(phase_status(&desk.status(&id), "triage"), "failed");
    siem_down.store(false, Ordering::SeqCst);
    desk.ok(&[&retry[..], &["--as", "dana", "--reason", "SIEM vendor confirms it is up"]].concat());
    desk.ok(&["run"]);
    let status = desk.status(&id);
    assert_eq!(phase_status(&status, "triage"), "running", "the incident goes on");
    assert_eq!(status["incident"]["phases"]["triage"]["steps"]["legal-hold"]["outputs"]["hold_id"], "hold-7731");
    let keys: Vec<String> = stub
        .received()
        .iter()
        .filter(|r| r.path.starts_with("/siem/"))
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys, vec![format!("{id}/triage/legal-hold"); 3], "three attempts, one key");

    // Abandoned early, with a reason, by the runbook's `abandon` role (ciso) only.
    let abandon = ["close", &id, "--abandon", "--reason", "false positive: scheduled loyalty migration"];
    desk.refused(&id, &[&abandon[..], &["--as", "pat"]].concat(), 1, &["role `ciso` (held by dana, sam)"]);
    desk.ok(&[&abandon[..], &["--as", "sam"]].concat());
    desk.ok(&["run"]);
    let board = desk.ok(&["status", &id]);
    assert!(board.contains("[ABANDONED ") && board.contains("by sam: false positive"), "{board}");
    assert!(desk.ok(&["list", "--all"]).lines().any(|l| l.starts_with(&id) && l.contains(" abandoned ")));
    let public = std::fs::read_to_string(desk.path("status/retail-breach-public.md")).unwrap();
    let last = public.rsplit("===== phasegate:").next().unwrap();
    assert!(last.contains("(incident_closed)") && last.contains("## Closed — "), "{last}");
    assert!(!last.contains("Resolved"), "an abandoned incident is not resolved: {last}");
    let report = desk.ok(&["report", &id]);
    assert!(report.contains("> **ABANDONED.** The incident was closed at "), "{report}");
    for row in ["| dana | retried | `triage/legal-hold` | SIEM restarted |", "| sam | abandoned | the incident |"] {
        assert!(report.contains(row), "the report lacks {row:?}");
    }
    let html = desk.ok(&["report", &id, "--format", "html"]);
    assert!(html.contains("<p class=\"abandoned\"><strong>ABANDONED.</strong>"), "the HTML report's banner");
}

/// What the SMTP server received: the executives' briefings (text and HTML) and the stores'
/// updates (text), each from its channel's sender to its recipients, none with a secret in it.
fn check_mail(desk: &Desk, id: &str) {
    let mails = desk.sink.as_ref().expect("the test skips without the SMTP server").received();
    let to = |address: &str| -> Vec<&crate::smtp::Mail> {
        mails.iter().filter(|mail| mail.rcpt_tos.iter().any(|rcpt| rcpt == address)).collect()
    };
    let executives = to("exec-incident@harbourandhale.example");
    assert!(executives.len() >= 3, "the executives got {} updates by mail", executives.len());
    let stores = to("all-store-managers@harbourandhale.example");
    assert_eq!(stores.len(), 2, "the stores were briefed, then told MFA is back");
    for mail in &executives {
        assert_eq!(mail.rcpt_tos, ["exec-incident@harbourandhale.example", "board-secretary@harbourandhale.example"]);
        assert_eq!(mail.mail_from, "phasegate@harbourandhale.example");
        let subject = mail.header("Subject").unwrap();
        assert!(subject.starts_with(&format!("[{id}] ")) && subject.contains(": update for Executive committee ("));
        let html = mail.part("text/html").expect("the briefing's HTML variant");
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains(id), "{html}");
        assert!(mail.part("text/plain").is_some_and(|text| text.contains(id)), "{mail:#?}");
    }
    for mail in &stores {
        assert_eq!(mail.mail_from, "store-operations@harbourandhale.example");
        assert!(
            mail.header("Subject")
                .unwrap()
                .contains(": update for Store and regional managers (a message from the response team)")
        );
        assert!(mail.part("text/plain").is_some_and(|text| text.contains(id)) && mail.part("text/html").is_none());
    }
    let message_ids: BTreeSet<&str> = mails.iter().map(|mail| mail.header("Message-ID").unwrap()).collect();
    assert_eq!(message_ids.len(), mails.len(), "every update is a message of its own");
    for mail in &mails {
        desk.no_secret_in(&mail.data, &format!("the mail to {:?}", mail.rcpt_tos));
    }
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let stub = Stub::start(retail_answer);
    let desk = Desk::retail(&stub);
    let id = desk.start("retail-breach.yaml", "dana");
    desk.done(&id, "triage/mobilise", "dana", &[]);
    let listed = desk.ok(&["list", "--all", "--format", "json"]);
    let table: &[(&[&str], i32, &[&str])] = &[
        // Regression: an unknown incident exited 2 (unreadable) where the docs say 1 (refused).
        (
            &["done", "inc-20260101-000000", "triage/mobilise", "--as", "dana"],
            1,
            &["`inc-20260101-000000`", "list --all"],
        ),
        (&["note", "inc-20260101-000000", "hello", "--as", "dana"], 1, &["`inc-20260101-000000`"]),
        (&["status", "inc-20260101-000000"], 1, &["no incident `inc-20260101-000000`"]),
        // The same for `report` and `audit`, which exited 2 (issue 12's user test).
        (&["report", "inc-20260101-000000"], 1, &["no incident `inc-20260101-000000`", "list --all"]),
        (&["audit", "export", "inc-20260101-000000"], 1, &["no incident `inc-20260101-000000`", "list --all"]),
        (&["audit", "verify", "inc-20260101-000000"], 1, &["no incident `inc-20260101-000000`", "list --all"]),
        (&["done", &id, "triage/scope-assessment", "--as", "mallory"], 1, &["`mallory` is not a person"]),
        (&["note", &id, "hello", "--as", "mallory"], 1, &["`mallory` is not a person"]),
        (&["approve", &id, "relax-controls", "--as", "mallory"], 1, &["`mallory` is not a person"]),
        (&["done", &id, "triage/scope-assessment", "--as", "pat"], 1, &["`pat` does not hold role `soc-analyst`"]),
        (&["approve", &id, "no-such-phase", "--as", "sam"], 1, &["phase `no-such-phase` does not exist"]),
        (&["done", &id, "no-such-phase/mobilise", "--as", "dana"], 1, &["phase `no-such-phase` does not exist"]),
        (&["done", &id, "triage/no-such-step", "--as", "dana"], 1, &["phase `triage` has no step `no-such-step`"]),
        (&["done", &id, "mobilise", "--as", "dana"], 2, &["`mobilise` is not `PHASE/STEP`"]),
        (&["done", &id, "triage/mobilise", "--as", "dana"], 1, &["step `triage/mobilise` is already done"]),
        (&["done", &id, "triage/legal-hold", "--as", "dana"], 1, &["is http, not a step a person marks done"]),
        (&["done", &id, "contain/quarantine-idp", "--as", "olly"], 1, &["phase `contain` is pending"]),
        (
            &["approve", &id, "triage", "--gate", "no-such-gate", "--as", "sam"],
            1,
            &["phase `triage` has no approval gate `no-such-gate`"],
        ),
        (&["approve", &id, "restore", "--as", "dana"], 1, &["phase `restore` is pending"]),
        (&["signal", &id, "contain/no-such-gate", "--as", "dana"], 1, &["has no signal gate `no-such-gate`"]),
        (&["signal", &id, "contain", "--as", "dana"], 2, &["`contain` is not `PHASE/GATE`"]),
        (
            &["done", &id, "triage/scope-assessment", "--as", "dana", "--output", "no_such_output=1"],
            1,
            &["step `triage/scope-assessment` declares no output `no_such_output`"],
        ),
        (
            &["done", &id, "triage/scope-assessment", "--as", "dana", "--output", "idp_compromised"],
            2,
            &["output `idp_compromised` is not KEY=VALUE"],
        ),
        (&["update", &id, "no-such-audience", "--as", "dana"], 1, &["audience `no-such-audience` does not exist"]),
        (&["update", &id, "public", "--as", "mallory"], 1, &["`mallory` is not a person"]),
        (&["close", &id, "--as", "mallory"], 1, &["`mallory` is not a person"]),
        (&["status", &id, "--format", "yaml"], 2, &["invalid value 'yaml'"]),
    ];
    for (args, code, wanted) in table {
        desk.refused(&id, args, *code, wanted);
    }
    // A start with bad input opens no incident.
    let starts: &[(&[&str], i32, &str)] = &[
        (&["--input", "severity=apocalyptic"], 1, "input `severity` is \"apocalyptic\", which is not one of"),
        (&["--input", "affected_members=lots"], 1, "input `affected_members` is \"lots\", which is not a whole number"),
        (&["--input", "no_such_input=1"], 1, "input `no_such_input` is not one the runbook declares"),
        (&["--input", "severity"], 2, "input `severity` is not KEY=VALUE"),
    ];
    for (extra, code, wanted) in starts {
        let mut args = vec!["start", "retail-breach.yaml", "--as", "dana"];
        args.extend_from_slice(extra);
        let (status, stdout, stderr) = desk.exec(&args);
        assert_eq!(status, Some(*code), "{args:?}:\n{stdout}\n{stderr}");
        assert!(stderr.contains(wanted), "{args:?}: stderr lacks {wanted:?}:\n{stderr}");
        assert_eq!(stdout, "", "{args:?} printed no id");
    }
    let (status, _, stderr) = desk.exec(&["start", "no-such-runbook", "--as", "dana"]);
    assert_eq!(status, Some(2));
    assert!(stderr.contains("`no-such-runbook` is not a file"), "{stderr}");
    // Regression: an unknown person could start an incident, and four-eyes compares approvers
    // with whoever started it.
    let (status, _, stderr) = desk.exec(&["start", "retail-breach.yaml", "--as", "mallory"]);
    assert_eq!(status, Some(1));
    assert!(stderr.contains("`mallory` is not a person phasegate knows"), "{stderr}");
    assert_eq!(desk.ok(&["list", "--all", "--format", "json"]), listed, "no incident was opened");
    assert!(stub.received().iter().all(|r| is_channel(&r.path) || r.path.starts_with("/siem/")), "nothing else ran");
}

const SMALL: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: lost-laptop
title: Lost laptop
roles:
  soc-analyst: {}
rights: { close: [soc-analyst] }
channels:
  log: { file: { path: updates/log.md } }
audiences:
  internal: { title: Incident team, template: internal-update, channels: [log] }
phases:
  - id: contain
    title: Contain
    steps:
      - id: wipe
        manual: { instructions: Wipe the laptop remotely, assignee: soc-analyst }
"#;

#[test]
fn list_note_and_update() {
    let desk = Desk::new("");
    std::fs::write(desk.path("lost-laptop.yaml"), SMALL).unwrap();
    assert!(desk.ok(&["list"]).contains("no open incidents"));
    assert!(desk.ok(&["list", "--all"]).contains("no incidents"));
    let first = desk.start("lost-laptop.yaml", "dana");
    let second = desk.start("lost-laptop.yaml", "dana");
    desk.ok(&["note", &first, "User reported it at 09:12", "--as", "pat"]);
    let stdout = desk.ok(&["update", &first, "internal", "--as", "dana"]);
    assert!(stdout.contains("status update for `internal` (requested)"), "{stdout}");
    assert!(stdout.contains("1 action(s) queued"), "{stdout}");
    desk.ok(&["run"]);
    let log = std::fs::read_to_string(desk.path("updates/log.md")).unwrap();
    assert!(log.contains(&format!("update for Incident team, incident {first} (requested)")), "{log}");
    assert!(log.contains("User reported it at 09:12"), "the update shows the timeline: {log}");
    let status = desk.status(&first);
    let note = events(&status).iter().find(|e| what(e)["type"] == "note_added").unwrap();
    assert_eq!((&note["actor"], &note["reason"]), (&json!("pat"), &json!("User reported it at 09:12")));
    assert!(
        events(&status).iter().any(|e| what(e)["type"] == "status_update_sent" && what(e)["audience"] == "internal")
    );

    desk.done(&second, "contain/wipe", "dana", &[]);
    desk.ok(&["close", &second, "--as", "dana"]);
    desk.refused(&second, &["note", &second, "too late", "--as", "dana"], 1, &["is closed"]);
    let open = desk.ok(&["list"]);
    assert!(open.contains(&first) && !open.contains(&second), "{open}");
    assert!(open.lines().any(|line| line.starts_with(&first) && line.contains("open") && line.contains("lost-laptop")));
    let all = desk.ok(&["list", "--all"]);
    assert!(all.lines().any(|line| line.starts_with(&second) && line.contains("closed")), "{all}");
    let listed: Value = serde_json::from_str(&desk.ok(&["list", "--all", "--format", "json"])).unwrap();
    let ids: BTreeSet<&str> = listed.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from([first.as_str(), second.as_str()]));
}

/// Regression: a command that queues actions said "`phasegate run` carries them out" even with
/// a `phasegate serve` running on the database, which carries them out itself. On PostgreSQL the
/// running processes' presence leases tell; on SQLite they cannot (each process keeps its own in
/// memory), and the line says what holds either way.
#[test]
fn the_queued_actions_line_says_what_carries_them_out() {
    let queued = |desk: &Desk| {
        let id = desk.start("lost-laptop.yaml", "dana");
        let stdout = desk.ok(&["update", &id, "internal", "--as", "dana"]);
        let line = stdout.lines().find(|line| line.contains("action(s) queued")).map(str::to_string);
        line.unwrap_or_else(|| panic!("no queued line: {stdout}"))
    };
    let mut desk = Desk::new("");
    std::fs::write(desk.path("lost-laptop.yaml"), SMALL).unwrap();
    let line = queued(&desk);
    assert!(
        line.ends_with(
            "1 action(s) queued; a `phasegate serve` or `run --watch` running on this database carries them out; if \
             none is, `phasegate run` does"
        ),
        "{line}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(schema) = runtime.block_on(crate::support::postgres::schema()) else { return };
    desk.db = Some(schema.url());
    let line = queued(&desk);
    assert!(
        line.ends_with(
            "queued; no `phasegate serve` or `run --watch` is running on this database: `phasegate run` carries them out"
        ),
        "{line}"
    );
    // A process present on the database, as `serve` and `run --watch` are: its presence lease.
    use phasegate::store::Store as _;
    use std::time::Duration;
    let store = runtime.block_on(phasegate::store::postgres::PostgresStore::connect(schema.options())).unwrap();
    let present = phasegate::store::presence("replica-test");
    let held = runtime.block_on(store.claim_leases("replica-test", &[present], Duration::from_secs(600))).unwrap();
    assert_eq!(held.len(), 1);
    let line = queued(&desk);
    assert!(
        line.ends_with("queued; the `phasegate serve` or `run --watch` running on this database carries them out"),
        "{line}"
    );
    // Gone (its lease run out): no longer counted.
    runtime.block_on(store.renew_leases("replica-test", &[held[0].token], Duration::ZERO)).unwrap();
    assert!(queued(&desk).contains("no `phasegate serve` or `run --watch` is running"));
    // A `phasegate run` that carried the actions out and stopped lets its presence go as it stops.
    desk.ok(&["run"]);
    assert!(queued(&desk).contains("no `phasegate serve` or `run --watch` is running"));
    runtime.block_on(store.close());
}

#[test]
fn a_running_incident_keeps_the_runbook_it_started_with() {
    let desk = Desk::new("");
    std::fs::write(desk.path("lost-laptop.yaml"), SMALL).unwrap();
    let id = desk.start("lost-laptop.yaml", "dana");
    let edited = SMALL.replace("title: Lost laptop", "title: Lost laptop (v2)").replace("id: wipe", "id: erase");
    std::fs::write(desk.path("lost-laptop.yaml"), &edited).unwrap();

    let status = desk.status(&id);
    assert_eq!(status["incident"]["runbook_sha256"], sha256(SMALL));
    let started = &events(&status)[0];
    assert_eq!(what(started)["runbook_text"], SMALL, "the log keeps the text it started with");
    let board = desk.ok(&["status", &id]);
    assert!(board.contains("Lost laptop  [OPEN]") && board.contains(&sha256(SMALL)[..12]), "{board}");
    desk.refused(&id, &["done", &id, "contain/erase", "--as", "dana"], 1, &["has no step `erase`"]);
    desk.done(&id, "contain/wipe", "dana", &[]);
    assert_eq!(phase_status(&desk.status(&id), "contain"), "done");

    let later = desk.start("lost-laptop.yaml", "dana");
    assert_eq!(desk.status(&later)["incident"]["runbook_sha256"], sha256(&edited), "a new incident takes the edit");
}

/// One automated HTTP step, to a stub on loopback.
const CALL_OUT: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: call-out
title: Call out
roles:
  soc-analyst: {}
phases:
  - id: contain
    title: Contain
    steps:
      - id: isolate
        timeout: 5s
        http: { method: POST, url: "STUB/edr/isolate" }
"#;

#[test]
fn http_steps_reach_loopback_only_when_configuration_allows_it() {
    let stub = Stub::start(|_| Reply::json(200, json!({ "ok": true })));
    let runbook = CALL_OUT.replace("STUB", stub.base());
    // By default the stub's address is refused: the step fails, saying why, and nothing is sent.
    let refusing = Desk::new("");
    std::fs::write(refusing.path("call-out.yaml"), &runbook).unwrap();
    let id = refusing.start("call-out.yaml", "dana");
    refusing.ok(&["run"]);
    let status = refusing.status(&id);
    let failed = events(&status).iter().map(what).find(|e| e["type"] == "step_failed").expect("the step failed");
    let error = failed["error"].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "POST {}/edr/isolate: not sent: `127.0.0.1` is a loopback address; allow it under `outbound.allow` to call it",
            stub.base()
        )
    );
    assert!(stub.received().is_empty(), "nothing was sent: {:?}", stub.received());

    // Allowed explicitly, the same step goes through.
    let allowing = Desk::new("outbound:\n  allow: [127.0.0.1/32]\n");
    std::fs::write(allowing.path("call-out.yaml"), &runbook).unwrap();
    let id = allowing.start("call-out.yaml", "dana");
    allowing.ok(&["run"]);
    assert!(events(&allowing.status(&id)).iter().map(what).any(|e| e["type"] == "step_done"));
    assert_eq!(stub.received().len(), 1);
}

const EDR_CHECK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: edr-check
title: EDR check
roles:
  incident-commander: {}
  soc-analyst: {}
rights:
  recover: [incident-commander]
phases:
  - id: contain
    entry:
      - id: hosts-isolated
        check:
          request: { url: "EDR/hosts" }
          expect: response.status == 200
          interval: 1s
          deadline: 2s
    steps:
      - id: note
        manual: { instructions: Write down what was isolated }
  - id: eradicate
    needs: [contain]
    steps:
      - id: wipe
        manual: { instructions: Wipe the hosts }
"#;

/// The EDR cannot be reached (a closed port on 127.0.0.1): the check gate fails its phase; the
/// board names the `recover` roles and the commands; someone without the right is refused and
/// nothing is recorded; the incident commander passes the gate with evidence, the next phase
/// starts, the report lists the override, and the audit log verifies.
#[test]
fn a_check_gate_that_cannot_reach_its_target_is_passed_by_hand_by_a_recover_role() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let edr = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let desk = Desk::new("outbound:\n  allow: [127.0.0.1/32]\naudit: { signing_key: signing.pem }\n");
    Cli::new().args(["keygen".as_ref(), desk.path("signing.pem").as_os_str()]).succeeds();
    std::fs::write(desk.path("edr-check.yaml"), EDR_CHECK.replace("EDR", &edr)).unwrap();
    let id = desk.start("edr-check.yaml", "dana");
    desk.ok(&["run"]);
    std::thread::sleep(std::time::Duration::from_millis(2200));
    desk.ok(&["run"]);
    let status = desk.status(&id);
    assert_eq!(phase_status(&status, "contain"), "failed");
    let answered = events(&status).iter().map(what).find(|e| e["type"] == "check_answered").expect("polled");
    assert_eq!(answered["ok"], false, "{answered}");
    let board = desk.ok(&["status", &id]);
    for line in [
        "contain [hosts-isolated]: phase failed: check `hosts-isolated` did not pass within 2s".to_string(),
        "can unblock: incident-commander (dana)".to_string(),
        format!("run: phasegate retry {id} contain/hosts-isolated --gate --as dana"),
        format!("run: phasegate pass {id} contain/hosts-isolated --evidence TEXT --as dana"),
    ] {
        assert!(board.contains(&line), "the board lacks {line:?}:\n{board}");
    }

    let pass = ["pass", &id, "contain/hosts-isolated", "--evidence", "isolated in the EDR console, ticket SEC-1"];
    desk.refused(
        &id,
        &[&pass[..], &["--as", "olly"]].concat(),
        1,
        &["`olly` does not hold role `incident-commander` (held by dana), which recovering check gate `contain/hosts-isolated` needs"],
    );
    desk.refused(
        &id,
        &["pass", &id, "contain/hosts-isolated", "--evidence", " ", "--as", "dana"],
        1,
        &["needs evidence"],
    );
    let passed = desk.ok(&[&pass[..], &["--as", "dana"]].concat());
    assert!(
        passed.contains("gate `contain/hosts-isolated` passed by hand: isolated in the EDR console, ticket SEC-1"),
        "{passed}"
    );
    desk.refused(&id, &[&pass[..], &["--as", "dana"]].concat(), 1, &["has already passed"]);
    desk.done(&id, "contain/note", "dana", &[]);
    let status = desk.status(&id);
    assert_eq!(phase_status(&status, "contain"), "done");
    assert_eq!(phase_status(&status, "eradicate"), "running", "the next phase starts");
    let gate = &status["incident"]["phases"]["contain"]["gates"]["hosts-isolated"]["recovery"];
    assert_eq!((gate["kind"].as_str(), gate["by"].as_str()), (Some("overridden"), Some("dana")), "{gate}");
    let report = desk.ok(&["report", &id]);
    let row = "| dana | gate passed by hand | `contain/hosts-isolated` | isolated in the EDR console, ticket SEC-1 |";
    assert!(report.contains(row), "the report lacks {row:?}:\n{report}");
    let verified = desk.ok(&["audit", "verify", &id]);
    assert!(verified.starts_with(&format!("{id}: verified (")), "{verified}");
}
