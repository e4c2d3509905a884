//! Provable delivery: a Merkle tree over what a campaign did with each message, whose root the
//! incident's log records (`campaign_finished`), so that one recipient's message can be proven
//! sent (or rejected, or failed) with a proof of a few hundred bytes, checked against an export.
//!
//! - A message's digest ([`message_digest`]) is SHA-256 over its fields, each preceded by its
//!   length, so no two messages share an encoding.
//! - A leaf ([`Leaf`]) is one recipient's outcome: its hash is `SHA-256(0x00 ‖ JCS(leaf))`, the
//!   leaf's canonical JSON (RFC 8785) with `at`, `digest`, `id`, `outcome` and, unless sent,
//!   `reason`.
//! - The tree is the one of RFC 6962 / RFC 9162 section 2.1: an interior node is
//!   `SHA-256(0x01 ‖ left ‖ right)`, a tree of `n > 1` leaves splits after the largest power of
//!   two smaller than `n`, and the empty tree's root is the SHA-256 of nothing. [`Builder`]
//!   computes the root as leaves come, in O(log n) memory; [`proof`] and [`verify`] are the audit
//!   path of RFC 9162 section 2.1.3.
//! - The store keeps each batch's leaves as one blob: [`encode_leaves`], [`decode_leaves`].
//!
//! `docs/audit.md` states the same rules for anyone checking a proof without phasegate.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::Hash;

mod blob;
mod proof;

pub use blob::{VERSION, decode_leaves, encode_leaves};
pub use proof::Proof;

/// What a campaign did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafOutcome {
    /// The channel accepted it.
    Sent,
    /// The channel refused this recipient, for this reason, and accepted the rest of the batch.
    Rejected(String),
    /// It was not sent: the batch failed for good, for this reason.
    Failed(String),
}

impl LeafOutcome {
    /// The name the leaf's JSON gives it.
    pub fn name(&self) -> &'static str {
        match self {
            LeafOutcome::Sent => "sent",
            LeafOutcome::Rejected(_) => "rejected",
            LeafOutcome::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            LeafOutcome::Sent => None,
            LeafOutcome::Rejected(reason) | LeafOutcome::Failed(reason) => Some(reason),
        }
    }
}

/// One recipient's message and what became of it: a leaf of the campaign's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LeafJson", into = "LeafJson")]
pub struct Leaf {
    /// The recipient's id, from the list.
    pub id: String,
    /// [`message_digest`] of the message sent (or that would have been).
    pub digest: Hash,
    pub outcome: LeafOutcome,
    /// When the answer came. The leaf keeps it to the second: what is finer is neither hashed
    /// nor encoded.
    pub at: DateTime<Utc>,
}

impl Leaf {
    /// The leaf's canonical JSON (RFC 8785), which its hash covers:
    /// `{"at":"2026-12-04T21:55:00Z","digest":"<hex>","id":"...","outcome":"rejected","reason":"..."}`.
    pub fn canonical(&self) -> String {
        let mut out = Vec::with_capacity(128 + self.id.len());
        self.write_canonical(&mut out);
        // Only UTF-8 is written: the strings given, ASCII punctuation, hex and the time.
        String::from_utf8(out).unwrap_or_default()
    }

    /// `SHA-256(0x00 ‖ canonical JSON)`: the leaf as the tree holds it.
    pub fn hash(&self) -> Hash {
        let mut out = Vec::with_capacity(129 + self.id.len());
        self.hash_with(&mut out)
    }

    /// [`Leaf::hash`], writing the canonical JSON into `buffer` (emptied first): a campaign's
    /// millions of leaves are hashed with one buffer.
    pub fn hash_with(&self, buffer: &mut Vec<u8>) -> Hash {
        buffer.clear();
        buffer.push(0x00);
        self.write_canonical(buffer);
        Sha256::digest(&buffer).into()
    }

    /// The keys are written in their sorted order (they are ASCII), the strings escaped as
    /// RFC 8785 escapes them.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"at":""#);
        write_rfc3339(out, &self.at);
        out.extend_from_slice(br#"","digest":""#);
        let mut digits = [0u8; 64];
        // 64 digits for 32 bytes: the sizes agree, so this cannot fail.
        let _ = hex::encode_to_slice(self.digest, &mut digits);
        out.extend_from_slice(&digits);
        out.extend_from_slice(br#"","id":"#);
        json_string(out, &self.id);
        out.extend_from_slice(br#","outcome":""#);
        out.extend_from_slice(self.outcome.name().as_bytes());
        out.push(b'"');
        if let Some(reason) = self.outcome.reason() {
            out.extend_from_slice(br#","reason":"#);
            json_string(out, reason);
        }
        out.push(b'}');
    }
}

/// A time as leaves write it: RFC 3339 in UTC, to the second, with `Z`.
fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// [`rfc3339`] appended to `out`, written digit by digit for the years of four digits (what
/// chrono writes for them; it writes other years its own way, so they are left to it).
fn write_rfc3339(out: &mut Vec<u8>, at: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = at.year();
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(rfc3339(at).as_bytes());
        return;
    }
    let two = |value: u32| [b'0' + (value / 10 % 10) as u8, b'0' + (value % 10) as u8];
    let year = year as u32;
    let [a, b] = two(year / 100);
    let [c, d] = two(year % 100);
    let [mo1, mo2] = two(at.month());
    let [d1, d2] = two(at.day());
    let [h1, h2] = two(at.hour());
    let [mi1, mi2] = two(at.minute());
    // A leap second (`:60`) is as chrono writes it: seconds past 59 come from the nanoseconds.
    let [s1, s2] = two(at.second() + at.nanosecond() / 1_000_000_000);
    out.extend_from_slice(&[
        a, b, c, d, b'-', mo1, mo2, b'-', d1, d2, b'T', h1, h2, b':', mi1, mi2, b':', s1, s2, b'Z',
    ]);
}

/// A JSON string as RFC 8785 writes it: `"` and `\` escaped, the control characters that have a
/// short escape with it (`\b \t \n \f \r`), the others as `\u00xx` in lowercase hex, and nothing
/// else escaped.
fn json_string(out: &mut Vec<u8>, text: &str) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => br#"\""#,
            b'\\' => br"\\",
            0x08 => br"\b",
            b'\t' => br"\t",
            b'\n' => br"\n",
            0x0c => br"\f",
            b'\r' => br"\r",
            0x00..=0x1f => &[b'\\', b'u', b'0', b'0', DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 15)]],
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..index]);
        out.extend_from_slice(escape);
        plain = index + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// The digest of a message as sent: SHA-256 over `to`, `subject` and `text`, each as its length
/// in bytes (8 bytes, big-endian) followed by its UTF-8 bytes, then `0x00` when there is no HTML
/// part, or `0x01`, its length and its bytes when there is.
pub fn message_digest(to: &str, subject: &str, text: &str, html: Option<&str>) -> Hash {
    let mut hasher = Sha256::new();
    for field in [to, subject, text] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    match html {
        None => hasher.update([0x00]),
        Some(html) => {
            hasher.update([0x01]);
            hasher.update((html.len() as u64).to_be_bytes());
            hasher.update(html.as_bytes());
        }
    }
    hasher.finalize().into()
}

/// An interior node: `SHA-256(0x01 ‖ left ‖ right)`.
fn node(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: the SHA-256 of nothing.
fn empty() -> Hash {
    Sha256::digest(b"").into()
}

/// The root of a tree, computed as its leaf hashes come, keeping one hash per bit set in the
/// count: the roots of the complete subtrees the leaves so far make, largest first.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    subtrees: Vec<Hash>,
    len: u64,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds the next leaf's hash ([`Leaf::hash`]).
    pub fn push(&mut self, leaf_hash: Hash) {
        // Each trailing one of the count is a complete subtree of the size this one now has.
        let mut hash = leaf_hash;
        let mut count = self.len;
        while count & 1 == 1 {
            let Some(left) = self.subtrees.pop() else { break };
            hash = node(&left, &hash);
            count >>= 1;
        }
        self.subtrees.push(hash);
        self.len += 1;
    }

    /// The root of the tree of the leaves pushed so far. The split of RFC 6962 puts the largest
    /// complete subtree on the left and the tree of the rest on the right, so the root joins the
    /// complete subtrees from the smallest up.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(last) = subtrees.next() else { return empty() };
        subtrees.fold(*last, |right, left| node(left, &right))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The root of the tree of these leaf hashes.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    let mut builder = Builder::new();
    leaf_hashes.iter().for_each(|hash| builder.push(*hash));
    builder.root()
}

/// Where a tree of `size > 1` leaves splits: the largest power of two smaller than `size`.
fn split(size: usize) -> usize {
    1 << (usize::BITS - 1 - (size - 1).leading_zeros())
}

/// The audit path of leaf `index` (RFC 9162 section 2.1.3.1): the hashes that, joined with the
/// leaf's from the bottom up, give the root. `None` when there is no such leaf.
pub fn proof(leaf_hashes: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaf_hashes.len() {
        return None;
    }
    let (mut tree, mut index) = (leaf_hashes, index);
    let mut path = Vec::new();
    // From the root down: the sibling of the half that holds the leaf, then within that half.
    while tree.len() > 1 {
        let (left, right) = tree.split_at(split(tree.len()));
        if index < left.len() {
            path.push(root(right));
            tree = left;
        } else {
            path.push(root(left));
            index -= left.len();
            tree = right;
        }
    }
    path.reverse();
    Some(path)
}

/// Whether `path` takes `leaf_hash`, leaf `index` of a tree of `size` leaves, to `root`
/// (RFC 9162 section 2.1.3.2).
pub fn verify(root: &Hash, leaf_hash: &Hash, index: u64, size: u64, path: &[Hash]) -> bool {
    if index >= size {
        return false;
    }
    let (mut position, mut last) = (index, size - 1);
    let mut hash = *leaf_hash;
    for sibling in path {
        if last == 0 {
            return false;
        }
        if position & 1 == 1 || position == last {
            hash = node(sibling, &hash);
            // A right edge without a sibling at this level: climb until the leaf's side has one.
            while position & 1 == 0 && position != 0 {
                position >>= 1;
                last >>= 1;
            }
        } else {
            hash = node(&hash, sibling);
        }
        position >>= 1;
        last >>= 1;
    }
    last == 0 && hash == *root
}

/// Why stored leaves or a proof cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the encoded leaves are empty (not even a version byte)")]
    Empty,
    #[error("the encoded leaves are in version {0}, which this phasegate does not read (it reads {VERSION})")]
    Version(u8),
    #[error("the encoded leaves are bad at byte {offset}: {what}")]
    Bad { offset: usize, what: String },
    #[error("the proof is not a phasegate Merkle proof: {0}")]
    Proof(String),
}

/// A leaf in JSON: its fields as its hash covers them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafJson {
    at: String,
    digest: String,
    id: String,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<Leaf> for LeafJson {
    fn from(leaf: Leaf) -> LeafJson {
        LeafJson {
            at: rfc3339(&leaf.at),
            digest: hex::encode(leaf.digest),
            reason: leaf.outcome.reason().map(str::to_owned),
            outcome: leaf.outcome.name().to_owned(),
            id: leaf.id,
        }
    }
}

impl TryFrom<LeafJson> for Leaf {
    type Error = String;

    /// Only the JSON a leaf writes reads back: what differs would hash differently.
    fn try_from(json: LeafJson) -> Result<Leaf, String> {
        let at = DateTime::parse_from_rfc3339(&json.at)
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .filter(|at| rfc3339(at) == json.at)
            .ok_or_else(|| format!("the leaf's `at` is `{}`, not a time like 2026-12-04T21:55:00Z", json.at))?;
        let digest = hash_hex(&json.digest).ok_or_else(|| format!("the leaf's `digest` is `{}`", json.digest))?;
        let outcome = match (json.outcome.as_str(), json.reason) {
            ("sent", None) => LeafOutcome::Sent,
            ("rejected", Some(reason)) => LeafOutcome::Rejected(reason),
            ("failed", Some(reason)) => LeafOutcome::Failed(reason),
            ("sent", Some(_)) => return Err("a sent leaf has no `reason`".into()),
            ("rejected" | "failed", None) => return Err(format!("a {} leaf needs its `reason`", json.outcome)),
            (other, _) => return Err(format!("the leaf's `outcome` is `{other}`, not sent, rejected or failed")),
        };
        Ok(Leaf { id: json.id, digest, outcome, at })
    }
}

/// 64 lowercase hex digits: how hashes are written.
pub(super) fn hash_hex(text: &str) -> Option<Hash> {
    let hash = super::chain::from_hex(text)?;
    super::chain::is_hex_of(text, &hash).then_some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn unhex(text: &str) -> Hash {
        super::super::chain::from_hex(text).unwrap()
    }

    /// RFC 6962's leaf hash of raw data, for its test vectors.
    fn data_hash(data: &[u8]) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update([0x00]);
        hasher.update(data);
        hasher.finalize().into()
    }

    pub(super) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// The leaves and roots of the Certificate Transparency tests (RFC 6962 trees of 0 to 8
    /// leaves), as published with its reference implementations.
    const DATA: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference_leaves() -> Vec<Hash> {
        DATA.iter().map(|data| data_hash(&hex::decode(data).unwrap())).collect()
    }

    #[test]
    fn the_roots_are_rfc_6962s() {
        let leaves = reference_leaves();
        for (size, expected) in ROOTS.iter().enumerate() {
            let mut builder = Builder::new();
            leaves[..size].iter().for_each(|hash| builder.push(*hash));
            assert_eq!((builder.len(), hex::encode(builder.root())), (size as u64, expected.to_string()));
        }
        assert!(Builder::new().is_empty());
    }

    #[test]
    fn the_audit_paths_are_rfc_6962s() {
        // (index from 0, size, path): the inclusion vectors published with the reference tests.
        let vectors: [(usize, usize, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let leaves = reference_leaves();
        for (index, size, expected) in vectors {
            let path = proof(&leaves[..size], index).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|text| unhex(text)).collect();
            assert_eq!(path, expected, "leaf {index} of {size}");
            let root = unhex(ROOTS[size]);
            assert!(verify(&root, &leaves[index], index as u64, size as u64, &path), "leaf {index} of {size}");
        }
        assert_eq!(proof(&leaves, 8), None);
        assert_eq!(proof(&[], 0), None);
        assert!(!verify(&empty(), &empty(), 0, 0, &[]), "the empty tree has no leaf");
    }

    #[test]
    fn a_leaf_hashes_its_canonical_json() {
        let digest = message_digest("ada@example.com", "Your card", "Hello", None);
        let cases = [
            (LeafOutcome::Sent, r#""outcome":"sent"}"#),
            (LeafOutcome::Rejected("mailbox \"full\"".into()), r#""outcome":"rejected","reason":"mailbox \"full\""}"#),
            (LeafOutcome::Failed("550\n".into()), r#""outcome":"failed","reason":"550\n"}"#),
        ];
        for (outcome, end) in cases {
            let leaf = Leaf { id: "c-1".into(), digest, outcome, at: at("2026-12-04T21:55:00.750Z") };
            let json = leaf.canonical();
            let start = format!(r#"{{"at":"2026-12-04T21:55:00Z","digest":"{}","id":"c-1","#, hex::encode(digest));
            assert!(json.starts_with(&start) && json.ends_with(end), "{json}");
            assert_eq!(serde_json_canonicalizer::pipe(&json).unwrap(), json, "already canonical");
            let mut preimage = vec![0x00];
            preimage.extend_from_slice(json.as_bytes());
            assert_eq!(leaf.hash(), <Hash>::from(Sha256::digest(&preimage)));
            assert_eq!(serde_json::to_string(&leaf).unwrap(), json, "its JSON is what it hashes");
        }
    }

    #[test]
    fn the_message_digest_is_its_length_prefixed_fields() {
        let mut preimage = Vec::new();
        for field in ["to", "subject", "text"] {
            preimage.extend_from_slice(&(field.len() as u64).to_be_bytes());
            preimage.extend_from_slice(field.as_bytes());
        }
        let without = preimage.clone();
        preimage.push(1);
        preimage.extend_from_slice(&4u64.to_be_bytes());
        preimage.extend_from_slice(b"html");
        assert_eq!(message_digest("to", "subject", "text", Some("html")), <Hash>::from(Sha256::digest(&preimage)));
        let mut without = without;
        without.push(0);
        assert_eq!(message_digest("to", "subject", "text", None), <Hash>::from(Sha256::digest(&without)));
        // Fields cannot trade bytes, and an empty HTML part is not the lack of one.
        let cases = [("ab", "c", "", None), ("a", "bc", "", None), ("a", "b", "c", None), ("a", "b", "c", Some(""))];
        let digests: std::collections::BTreeSet<Hash> =
            cases.iter().map(|(to, subject, text, html)| message_digest(to, subject, text, *html)).collect();
        assert_eq!(digests.len(), cases.len());
    }

    pub(super) fn arbitrary_leaf() -> impl Strategy<Value = Leaf> {
        let outcome = prop_oneof![
            Just(LeafOutcome::Sent),
            any::<String>().prop_map(LeafOutcome::Rejected),
            any::<String>().prop_map(LeafOutcome::Failed),
        ];
        // Whole seconds from 1900 to 2200: the leaf keeps no finer time.
        (any::<String>(), any::<[u8; 32]>(), outcome, -2_208_988_800i64..7_258_118_400).prop_map(
            |(id, digest, outcome, seconds)| Leaf { id, digest, outcome, at: Utc.timestamp_opt(seconds, 0).unwrap() },
        )
    }

    #[test]
    fn a_leafs_time_is_written_as_chrono_writes_it() {
        let mut times: Vec<DateTime<Utc>> = [-62_198_755_200i64, -2_208_988_800, 0, 1_796_420_100, 253_402_300_799]
            .into_iter()
            .map(|seconds| Utc.timestamp_opt(seconds, 0).unwrap())
            .collect();
        // A year of five digits and one before year 0 are chrono's to write; a leap second too.
        times.extend([253_402_300_800i64, -62_198_755_201].map(|seconds| Utc.timestamp_opt(seconds, 0).unwrap()));
        times.push(Utc.timestamp_opt(1_483_228_799, 1_000_000_000).unwrap());
        for at in times {
            let mut out = Vec::new();
            write_rfc3339(&mut out, &at);
            assert_eq!(String::from_utf8(out).unwrap(), rfc3339(&at), "{at:?}");
        }
    }

    proptest! {
        #[test]
        fn a_leafs_hash_is_the_hash_of_its_canonical_json(leaf in arbitrary_leaf(), seconds in -70_000_000_000i64..300_000_000_000) {
            let leaf = Leaf { at: Utc.timestamp_opt(seconds, 0).unwrap(), ..leaf };
            let mut prefixed = vec![0x00];
            prefixed.extend_from_slice(leaf.canonical().as_bytes());
            let expected: Hash = Sha256::digest(&prefixed).into();
            prop_assert_eq!(leaf.hash(), expected);
            let mut buffer = b"left over".to_vec();
            prop_assert_eq!(leaf.hash_with(&mut buffer), expected);
            let start = format!(r#"{{"at":"{}","#, rfc3339(&leaf.at));
            let canonical = leaf.canonical();
            prop_assert!(canonical.starts_with(&start), "{} does not start with {}", canonical, start);
        }

        #[test]
        fn every_leaf_of_every_tree_proves_and_no_flipped_bit_does(
            seed in any::<u64>(),
            size in 1usize..70,
            pick in any::<prop::sample::Index>(),
            bit in 0usize..256,
        ) {
            // Distinct leaves: with two alike, a proof for one is a proof for the other.
            let leaves: Vec<Hash> =
                (0..size).map(|index| data_hash(&[seed.to_be_bytes(), (index as u64).to_be_bytes()].concat())).collect();
            let size = size as u64;
            let top = root(&leaves);
            for (index, leaf) in leaves.iter().enumerate() {
                let path = proof(&leaves, index).unwrap();
                prop_assert!(verify(&top, leaf, index as u64, size, &path), "leaf {} of {}", index, size);
            }
            let index = pick.index(leaves.len());
            let path = proof(&leaves, index).unwrap();
            let flip = |hash: &Hash| { let mut hash = *hash; hash[bit / 8] ^= 1 << (bit % 8); hash };
            prop_assert!(!verify(&flip(&top), &leaves[index], index as u64, size, &path));
            prop_assert!(!verify(&top, &flip(&leaves[index]), index as u64, size, &path));
            for item in 0..path.len() {
                let mut bad = path.clone();
                bad[item] = flip(&bad[item]);
                prop_assert!(!verify(&top, &leaves[index], index as u64, size, &bad));
            }
            let mut longer = path.clone();
            longer.push(top);
            prop_assert!(!verify(&top, &leaves[index], index as u64, size, &longer));
            if !path.is_empty() {
                prop_assert!(!verify(&top, &leaves[index], index as u64, size, &path[..path.len() - 1]));
            }
            if leaves.len() > 1 {
                let other = (index + 1) % leaves.len();
                prop_assert!(!verify(&top, &leaves[index], other as u64, size, &path));
            }
        }

        #[test]
        fn the_canonical_json_is_rfc_8785s(leaf in arbitrary_leaf()) {
            let json = leaf.canonical();
            prop_assert_eq!(serde_json_canonicalizer::pipe(&json).unwrap(), json.clone());
            let back: Leaf = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, leaf);
        }
    }
}
