//! A proof of one leaf: what `phasegate audit prove` prints, as JSON.

use serde::{Deserialize, Serialize};

use super::{Error, Hash, Leaf, hash_hex, proof, root, verify};

/// What `phasegate audit prove` prints: one leaf of a campaign's tree, the audit path from it to
/// the root, and the root, which the incident's `campaign_finished` event records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProofJson", into = "ProofJson")]
pub struct Proof {
    pub incident: String,
    /// `INCIDENT/PHASE/STEP`.
    pub campaign: String,
    pub leaf: Leaf,
    /// The leaf's position in the tree, from 0.
    pub index: u64,
    /// How many leaves the tree has.
    pub size: u64,
    pub path: Vec<Hash>,
    pub root: Hash,
}

impl Proof {
    /// The `format` a proof's JSON names.
    pub const FORMAT: &'static str = "phasegate-merkle-proof/1";

    /// The proof that `leaf` is leaf `index` of the tree of `leaf_hashes`. `None` when there is
    /// no leaf `index`, or `leaf` is not the one there (its hash differs).
    pub fn new(incident: &str, campaign: &str, leaf: Leaf, index: usize, leaf_hashes: &[Hash]) -> Option<Proof> {
        if leaf_hashes.get(index) != Some(&leaf.hash()) {
            return None;
        }
        Some(Proof {
            incident: incident.to_owned(),
            campaign: campaign.to_owned(),
            leaf,
            index: index as u64,
            size: leaf_hashes.len() as u64,
            path: proof(leaf_hashes, index)?,
            root: root(leaf_hashes),
        })
    }

    /// Whether the path takes the leaf to the root. That the root is the campaign's, recorded in
    /// a verified log, is the other half of the check.
    pub fn verifies(&self) -> bool {
        verify(&self.root, &self.leaf.hash(), self.index, self.size, &self.path)
    }

    /// The proof's JSON, indented, as `phasegate audit prove` prints it.
    pub fn to_json(&self) -> String {
        // Strings and integers only: this always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Proof, Error> {
        serde_json::from_str(text).map_err(|error| Error::Proof(error.to_string()))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofJson {
    format: String,
    incident: String,
    campaign: String,
    leaf: Leaf,
    index: u64,
    size: u64,
    path: Vec<String>,
    root: String,
}

impl From<Proof> for ProofJson {
    fn from(proof: Proof) -> ProofJson {
        ProofJson {
            format: Proof::FORMAT.to_owned(),
            incident: proof.incident,
            campaign: proof.campaign,
            leaf: proof.leaf,
            index: proof.index,
            size: proof.size,
            path: proof.path.iter().map(hex::encode).collect(),
            root: hex::encode(proof.root),
        }
    }
}

impl TryFrom<ProofJson> for Proof {
    type Error = String;

    fn try_from(json: ProofJson) -> Result<Proof, String> {
        if json.format != Proof::FORMAT {
            return Err(format!("its format is `{}`, not `{}`", json.format, Proof::FORMAT));
        }
        let path = json
            .path
            .iter()
            .enumerate()
            .map(|(number, text)| hash_hex(text).ok_or_else(|| format!("`path` item {number} is `{text}`")))
            .collect::<Result<_, _>>()?;
        let root = hash_hex(&json.root).ok_or_else(|| format!("its `root` is `{}`", json.root))?;
        Ok(Proof {
            incident: json.incident,
            campaign: json.campaign,
            leaf: json.leaf,
            index: json.index,
            size: json.size,
            path,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::at;
    use super::super::{LeafOutcome, message_digest};
    use super::*;

    #[test]
    fn a_proof_reads_back_from_its_json_and_nothing_else_does() {
        let leaves: Vec<Leaf> = (0..5)
            .map(|n| Leaf {
                id: format!("c-{n}"),
                digest: message_digest(&format!("c{n}@example.com"), "s", "t", None),
                outcome: if n == 3 { LeafOutcome::Failed("timeout".into()) } else { LeafOutcome::Sent },
                at: at("2026-12-04T21:55:00Z"),
            })
            .collect();
        let hashes: Vec<Hash> = leaves.iter().map(Leaf::hash).collect();
        let proof = Proof::new("inc-1", "inc-1/notify/customers", leaves[3].clone(), 3, &hashes).unwrap();
        assert!(proof.verifies());
        assert_eq!(proof.root, root(&hashes));
        assert_eq!(Proof::new("inc-1", "inc-1/notify/customers", leaves[3].clone(), 2, &hashes), None);
        let json = proof.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["format"], "phasegate-merkle-proof/1");
        assert_eq!(value["leaf"]["reason"], "timeout");
        assert_eq!((value["index"].as_u64(), value["size"].as_u64()), (Some(3), Some(5)));
        assert_eq!(Proof::from_json(&json).unwrap(), proof);

        let edits: [(&str, &str, &str); 6] = [
            (r#""format": "phasegate-merkle-proof/1""#, r#""format": "other/1""#, "its format is `other/1`"),
            (r#""outcome": "failed""#, r#""outcome": "sent""#, "a sent leaf has no `reason`"),
            (r#""outcome": "failed""#, r#""outcome": "lost""#, "the leaf's `outcome` is `lost`"),
            ("21:55:00Z", "21:55:00.000Z", "the leaf's `at` is `2026-12-04T21:55:00.000Z`"),
            (r#""index": 3"#, r#""index": 3, "extra": 1"#, "unknown field `extra`"),
            (&hex::encode(proof.root), &hex::encode(proof.root).to_uppercase(), "its `root` is"),
        ];
        for (from, to, expected) in edits {
            assert!(json.contains(from), "{from} in {json}");
            let error = Proof::from_json(&json.replacen(from, to, 1)).unwrap_err().to_string();
            assert!(
                error.starts_with("the proof is not a phasegate Merkle proof: ") && error.contains(expected),
                "{error}"
            );
        }
    }

    /// docs/audit.md shows a proof of a campaign of three messages, computed from its rules
    /// with Python's hashlib: phasegate prints exactly that proof.
    #[test]
    fn the_proof_docs_audit_md_shows_is_what_phasegate_prints() {
        let messages = [
            ("c-1", "ada@example.com", "Hello Ada", None, LeafOutcome::Sent),
            (
                "c-2",
                "bob@example.com",
                "Hello Bob",
                Some("<p>Hello Bob</p>"),
                LeafOutcome::Rejected("550 mailbox unavailable".into()),
            ),
            ("c-3", "cy@example.com", "Hello Cy", None, LeafOutcome::Sent),
        ];
        let leaves: Vec<Leaf> = messages
            .into_iter()
            .map(|(id, to, text, html, outcome)| Leaf {
                id: id.into(),
                digest: message_digest(to, "Your card", text, html),
                outcome,
                at: at("2026-12-04T21:55:00Z"),
            })
            .collect();
        let hashes: Vec<Hash> = leaves.iter().map(Leaf::hash).collect();
        let campaign = "inc-20261204-7f3a9c/notify/customers";
        let proof = Proof::new("inc-20261204-7f3a9c", campaign, leaves[1].clone(), 1, &hashes).unwrap();
        let docs = include_str!("../../../docs/audit.md");
        let shown = format!("```json\n{}\n```", proof.to_json());
        assert!(docs.contains(&shown), "docs/audit.md shows another proof than\n{shown}");
    }
}
