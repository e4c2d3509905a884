//! `phasegate campaign test`: a sample's real messages (their own fields) through the campaign's
//! own channel (a spool file here) to allowed internal addresses only, subject prefixed
//! `[TEST] `, recorded in the log with the campaign itself untouched; refused, with nothing sent
//! or recorded, for a person without the `campaign` right, an address outside
//! `campaigns.test_recipients`, one that does not parse, no address, an unknown step, and a step
//! that is not a campaign.

use serde_json::Value;

use crate::support::Cli;

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: test-send
title: Test sends
roles:
  incident-commander: {}
  comms-lead: {}
  analyst: {}
rights:
  campaign: [comms-lead]
inputs:
  member_list: { type: string }
channels:
  export:
    spool: { path: spool.jsonl }
phases:
  - id: notify
    steps:
      - id: check
        title: Check the list
        manual: { assignee: comms-lead, instructions: Count the lines. }
      - id: apology
        campaign:
          recipients: { input: member_list, id_field: member_id }
          template: customer-notice
          subject: About your account
          channel: export
"#;

const CONFIG: &str = "people:\n  dana: { roles: [incident-commander] }\n  tom: { roles: [comms-lead] }\n  \
                      sam: { roles: [analyst] }\ncampaigns:\n  test_recipients: [\"@harbour.example\", \
                      \"auditor@partner.example\"]\n";

struct Fixture {
    dir: tempfile::TempDir,
    incident: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("phasegate.yaml"), CONFIG).unwrap();
        std::fs::write(dir.path().join("runbook.yaml"), RUNBOOK).unwrap();
        let members: String = (1..=5)
            .map(|n| {
                format!(
                    "{{\"member_id\":\"m{n}\",\"email\":\"member{n}@members.example\",\"first_name\":\"Member{n}\"}}\n"
                )
            })
            .collect();
        std::fs::write(dir.path().join("members.jsonl"), members).unwrap();
        let mut fixture = Fixture { dir, incident: String::new() };
        let mut start = fixture.cli(&["start", "runbook.yaml", "--as", "dana", "--input", "member_list=members.jsonl"]);
        let stdout = start.stdout();
        assert_eq!(start.code(), Some(0), "{stdout}\n{}", start.stderr());
        fixture.incident = stdout.lines().next().unwrap().trim().to_string();
        fixture
    }

    fn cli(&self, args: &[&str]) -> Cli {
        Cli::new().current_dir(self.dir.path()).args(args).args(["--config", "phasegate.yaml", "--db", "phasegate.db"])
    }

    fn test(&self, actor: &str, step: &str, extra: &[&str]) -> Cli {
        let mut args = vec!["campaign", "test", self.incident.as_str(), step, "--as", actor];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    fn spooled(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("spool.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        let mut export = self.cli(&["audit", "export", self.incident.as_str()]);
        let stdout = export.stdout();
        assert_eq!(export.code(), Some(0), "{}", export.stderr());
        stdout
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["type"] == "event")
            .map(|line| line["event"].clone())
            .collect()
    }
}

#[test]
fn a_test_send_goes_to_internal_addresses_only_is_recorded_and_leaves_the_campaign_alone() {
    let fixture = Fixture::new();
    let before = fixture.events().len();
    fixture
        .test("tom", "notify/apology", &["--to", "dana.ito@harbour.example,auditor@partner.example", "--sample", "2"])
        .stdout_has("4 message(s) (2 recipient(s): m1, m2) to dana.ito@harbour.example, auditor@partner.example")
        .stdout_has("4 taken, 0 refused")
        .succeeds();
    let spooled = fixture.spooled();
    assert_eq!(spooled.len(), 4, "{spooled:?}");
    let mut seen: Vec<(String, String)> = Vec::new();
    for line in &spooled {
        let to = line["to"].as_str().unwrap().to_string();
        assert!(to == "dana.ito@harbour.example" || to == "auditor@partner.example", "{line}");
        assert_eq!(line["subject"], "[TEST] About your account");
        let id = line["id"].as_str().unwrap().to_string();
        // Each message is its recipient's own: their name is in it.
        let n = &id[1..2];
        assert!(line["text"].as_str().unwrap().contains(&format!("Dear Member{n},")), "{line}");
        assert!(line["campaign"].as_str().unwrap().ends_with("/notify/apology/test"), "{line}");
        seen.push((id, to));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "each sample message once to each address");

    let events = fixture.events();
    assert_eq!(events.len(), before + 1, "one event, nothing else");
    let event = &events[before];
    assert_eq!(event["actor"], "tom");
    assert_eq!(event["event"]["type"], "campaign_test_sent");
    assert_eq!(event["event"]["recipients"], serde_json::json!(["m1", "m2"]));
    assert_eq!(event["event"]["to"], serde_json::json!(["dana.ito@harbour.example", "auditor@partner.example"]));
    assert_eq!(event["event"]["messages"], 4);

    // The campaign has not started: status says so, and shows the test.
    fixture
        .cli(&["campaign", "status", fixture.incident.as_str(), "notify/apology"])
        .stdout_has("0 of 0 sent")
        .stdout_has("test sends: 1; the last by tom at ")
        .stdout_has("4 message(s) of m1, m2 to dana.ito@harbour.example, auditor@partner.example")
        .succeeds();
}

#[test]
fn a_test_send_is_refused_with_nothing_sent_or_recorded_for_bad_input_or_the_wrong_person() {
    let fixture = Fixture::new();
    let before = fixture.events().len();
    let to = ["--to", "dana.ito@harbour.example"];
    // (actor, step, flags, what the error says)
    let table: &[(&str, &str, &[&str], &str)] = &[
        ("sam", "notify/apology", &to, "`sam` does not hold"),
        ("nobody", "notify/apology", &to, "nobody"),
        ("tom", "notify/apology", &[], "needs at least one address"),
        (
            "tom",
            "notify/apology",
            &["--to", "member1@members.example"],
            "not among the configuration's `campaigns.test_recipients`",
        ),
        ("tom", "notify/apology", &["--to", "cfo@partner.example"], "`cfo@partner.example` is not among"),
        ("tom", "notify/apology", &["--to", "not an address"], "`not an address` is not an email address"),
        ("tom", "notify/apology", &["--to", "dana.ito@harbour.example", "--sample", "0"], "the sample is 1 to 20"),
        ("tom", "notify/nothing", &to, "nothing"),
        ("tom", "notify/check", &to, "is not a campaign"),
    ];
    for (actor, step, flags, expected) in table {
        let mut cli = fixture.test(actor, step, flags);
        let stderr = cli.stderr();
        assert_ne!(cli.code(), Some(0), "{actor} {step} {flags:?} was not refused");
        assert!(stderr.contains(expected), "{actor} {step} {flags:?}: {stderr}");
    }
    assert!(fixture.spooled().is_empty(), "nothing was sent");
    assert_eq!(fixture.events().len(), before, "nothing was recorded");
}
