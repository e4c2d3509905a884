//! Provable delivery: a proof phasegate builds for one recipient of a campaign checks, with
//! `scripts/verify-export.py --proof` (written from docs/audit.md), against a signed export whose
//! `campaign_finished` event records the tree's root; a proof changed in any way does not.

use std::path::{Path, PathBuf};

use phasegate::audit::chain::{self, GENESIS};
use phasegate::audit::export::{self, Header};
use phasegate::audit::keys::{self, Checkpoint, Signer};
use phasegate::audit::merkle::{self, Leaf, LeafOutcome, Proof};
use phasegate::engine::{Event, EventKind};
use phasegate::runtime::audit;
use phasegate::store::contract::{at, started};
use serde_json::json;

const INCIDENT: &str = "inc-1";
const CAMPAIGN: &str = "inc-1/notify/customers";

/// Five recipients, with what canonical JSON is hard about in their ids and reasons.
fn leaves() -> Vec<Leaf> {
    let outcomes = [
        LeafOutcome::Sent,
        LeafOutcome::Rejected("mailbox \"full\"\n550 5.2.2".into()),
        LeafOutcome::Sent,
        LeafOutcome::Failed("timeout \u{1f6d2} caf\u{e9}\t\u{7}".into()),
        LeafOutcome::Sent,
    ];
    outcomes
        .into_iter()
        .enumerate()
        .map(|(n, outcome)| Leaf {
            id: format!("c-{n} \u{e9}\u{2028}"),
            digest: merkle::message_digest(
                &format!("c{n}@example.com"),
                "Your card",
                &format!("Dear customer {n}"),
                (n % 2 == 0).then_some("<p>Dear customer</p>"),
            ),
            outcome,
            at: at(20 + n as i64),
        })
        .collect()
}

/// An export of a closed incident whose second event finishes the campaign with `root`, chained
/// and signed as phasegate chains and signs (the engine's own `campaign_finished` event comes
/// with the campaign runner; this writes its JSON by hand, with the fields the proof is checked
/// against).
fn export(dir: &Path, signer: &Signer, root: &[u8; 32], leaves: u64) -> PathBuf {
    let finished = json!({
        "format": 2, "at": "2026-11-24T02:44:00Z", "actor": "phasegate",
        "event": {
            "type": "campaign_finished", "phase": "notify", "step": "customers",
            "merkle_root": hex::encode(root), "leaves": leaves, "sent": 3, "rejected": 1, "failed": 1,
        },
    });
    let events = [
        chain::canonical(&started(INCIDENT, "breach", None)).unwrap(),
        chain::canonicalize(&finished.to_string()).unwrap(),
        chain::canonical(&Event::new(at(40), "dana", EventKind::IncidentClosed { abandoned: false })).unwrap(),
    ];
    let path = dir.join("export.jsonl");
    let header = Header { format: export::FORMAT, incident: INCIDENT.into(), events: 3, checkpoints: 1 };
    let mut writer = export::Writer::new(std::fs::File::create(&path).unwrap(), &header).unwrap();
    let mut head = GENESIS;
    for (seq, event) in (1..).zip(&events) {
        head = chain::link(&head, seq, event.as_bytes());
        writer.event(seq, Some(&chain::to_hex(&head)), event).unwrap();
    }
    let signed = signer.sign(Checkpoint {
        format: keys::FORMAT,
        incident: INCIDENT.into(),
        number: 1,
        events: 3,
        head: chain::to_hex(&head),
        prev: chain::to_hex(&GENESIS),
        at: at(41),
        key: signer.public().fingerprint().to_owned(),
    });
    writer.checkpoint(&signed.checkpoint.canonical(), &signed.signature).unwrap();
    writer.finish().unwrap();
    path
}

#[test]
fn a_proof_checks_against_the_root_a_verified_export_records_and_a_changed_one_does_not() {
    let Some(interpreter) = crate::support::python_or_skip(&["cryptography"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let signer = audit::new_signer();
    let public = dir.path().join("key.pub");
    std::fs::write(&public, signer.public().to_pem().unwrap()).unwrap();
    let leaves = leaves();
    let hashes: Vec<[u8; 32]> = leaves.iter().map(Leaf::hash).collect();
    let root = merkle::root(&hashes);
    let export = export(dir.path(), &signer, &root, hashes.len() as u64);

    let python = |export: &Path, proof: &str| {
        let file = dir.path().join("proof.json");
        std::fs::write(&file, proof).unwrap();
        let output = std::process::Command::new(&interpreter)
            .arg(crate::support::root().join("scripts/verify-export.py"))
            .args([export, &public])
            .arg("--proof")
            .arg(&file)
            .output()
            .expect("python runs (`python_or_skip` found it)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.is_empty(), "{stderr}");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };

    for (index, leaf) in leaves.iter().enumerate() {
        let proof = Proof::new(INCIDENT, CAMPAIGN, leaf.clone(), index, &hashes).unwrap();
        let (status, stdout) = python(&export, &proof.to_json());
        assert_eq!(status, Some(0), "{stdout}");
        let proven = format!("proven: recipient `{}` is leaf {index} of 5 of campaign {CAMPAIGN}: ", leaf.id);
        assert!(stdout.starts_with("verified: ") && stdout.contains(&proven), "{stdout}");
        assert!(stdout.ends_with("; the root is recorded in event 2\n"), "{stdout}");
    }

    let proof = Proof::new(INCIDENT, CAMPAIGN, leaves[3].clone(), 3, &hashes).unwrap();
    let genuine: serde_json::Value = serde_json::from_str(&proof.to_json()).unwrap();
    // A proof of a tree the campaign did not make: every leaf of it proves, but against its own root.
    let mut other = leaves.clone();
    other[3].outcome = LeafOutcome::Sent;
    let other_hashes: Vec<[u8; 32]> = other.iter().map(Leaf::hash).collect();
    let forged = Proof::new(INCIDENT, CAMPAIGN, other[3].clone(), 3, &other_hashes).unwrap();
    assert!(forged.verifies(), "it holds together");

    let flipped = {
        let mut text = genuine["path"][0].as_str().unwrap().to_owned();
        let last = if text.ends_with('0') { "1" } else { "0" };
        text.replace_range(63.., last);
        text
    };
    type Edit = fn(&mut serde_json::Value, &str);
    let edits: [(&str, Edit, &str); 8] = [
        (
            "another outcome",
            |proof, _| {
                proof["leaf"]["outcome"] = json!("rejected");
            },
            "the proof's path does not take its leaf (`c-3 \u{e9}\u{2028}`, leaf 3 of 5) to the root",
        ),
        (
            "another reason",
            |proof, _| {
                proof["leaf"]["reason"] = json!("timeout");
            },
            "does not take its leaf",
        ),
        (
            "another recipient",
            |proof, _| {
                proof["leaf"]["id"] = json!("c-9");
            },
            "does not take its leaf (`c-9`",
        ),
        (
            "a path bit",
            |proof, flipped| {
                proof["path"][0] = json!(flipped);
            },
            "does not take its leaf",
        ),
        (
            "another index",
            |proof, _| {
                proof["index"] = json!(2);
            },
            "does not take its leaf (`c-3 \u{e9}\u{2028}`, leaf 2 of 5)",
        ),
        (
            "another size",
            |proof, _| {
                proof["size"] = json!(6);
            },
            "is not the root recorded for campaign inc-1/notify/customers (event 2: ",
        ),
        (
            "another campaign",
            |proof, _| {
                proof["campaign"] = json!("inc-1/notify/staff");
            },
            "the export has no `campaign_finished` event of campaign inc-1/notify/staff",
        ),
        (
            "a sent leaf with a reason",
            |proof, _| {
                proof["leaf"]["outcome"] = json!("sent");
            },
            "the proof's leaf has the fields ['at', 'digest', 'id', 'outcome', 'reason'], not ['at', 'digest', 'id', 'outcome']",
        ),
    ];
    for (what, edit, expected) in edits {
        let mut changed = genuine.clone();
        edit(&mut changed, &flipped);
        let (status, stdout) = python(&export, &changed.to_string());
        assert_eq!(status, Some(1), "{what}: {stdout}");
        assert!(stdout.starts_with("verified: ") && stdout.contains(expected), "{what}: {stdout}");
        if let Ok(proof) = Proof::from_json(&changed.to_string()) {
            assert!(
                !proof.verifies() || what == "another size" || what == "another campaign",
                "{what}: phasegate agrees"
            );
        }
    }

    let (status, stdout) = python(&export, &forged.to_json());
    assert_eq!(status, Some(1), "{stdout}");
    let expected = format!("the proof's root {} of 5 leaves is not the root recorded", hex::encode(forged.root));
    assert!(stdout.contains(&expected), "{stdout}");

    // Nor does an export whose recorded root was swapped for the forged one: the log catches it.
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replace(&hex::encode(root), &hex::encode(forged.root))).unwrap();
    let (status, stdout) = python(&tampered, &forged.to_json());
    assert_eq!((status, stdout.as_str()), (Some(1), "event 2: does not match its recorded hash\n"));
    let (status, stdout) = python(&export, "{\"format\": ");
    assert_eq!(status, Some(1), "{stdout}");
    assert!(stdout.starts_with("the proof is not JSON: "), "{stdout}");
}
