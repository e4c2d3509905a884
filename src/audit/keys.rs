//! Signed checkpoints: an Ed25519 key signs the head of an incident's chain.
//!
//! A checkpoint says "incident I had N events and the hash of event N was H", names the
//! checkpoint before it by its hash (so checkpoints form a chain of their own), and is signed
//! over its RFC 8785 canonical JSON. Keys are kept as PEM: the private key in PKCS#8, the public
//! key as a SubjectPublicKeyInfo, the forms `openssl pkey` reads, so a third party can check a
//! signature with tools of their own.

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::{self, Hash};

/// The version of the checkpoint shape that this phasegate writes.
pub const FORMAT: u32 = 1;

/// What a checkpoint vouches for. Its hash, `SHA-256(JCS(checkpoint))`, is what the next
/// checkpoint's `prev` names; its signature is over the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: u32,
    pub incident: String,
    /// 1 for an incident's first checkpoint, and one more for each after it.
    pub number: u64,
    /// How many events the incident had: the checkpoint covers events 1 to `events`.
    pub events: u64,
    /// The hash of event `events`, in hex.
    pub head: String,
    /// The hash of the checkpoint before this one, in hex; 64 zeros for the first.
    pub prev: String,
    pub at: DateTime<Utc>,
    /// The fingerprint of the key that signed it.
    pub key: String,
}

impl Checkpoint {
    /// The bytes that are signed and hashed.
    pub fn canonical(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json_canonicalizer::to_string(self).unwrap_or_default()
    }

    pub fn hash(&self) -> Hash {
        Sha256::digest(self.canonical().as_bytes()).into()
    }
}

/// A checkpoint with its Ed25519 signature (128 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature: String,
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): {0}")]
    Private(String),
    #[error("not an Ed25519 public key in PEM (`-----BEGIN PUBLIC KEY-----`): {0}")]
    Public(String),
}

/// The private key that signs checkpoints. Its `Debug` shows only the fingerprint.
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Signer").field("fingerprint", &self.public.fingerprint).finish_non_exhaustive()
    }
}

impl Signer {
    /// The key made from 32 secret random bytes (the caller draws them: the core has no
    /// source of randomness).
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        Signer::from_key(SigningKey::from_bytes(seed))
    }

    pub fn from_pem(text: &str) -> Result<Signer, KeyError> {
        let key = SigningKey::from_pkcs8_pem(text).map_err(|error| KeyError::Private(error.to_string()))?;
        Ok(Signer::from_key(key))
    }

    fn from_key(key: SigningKey) -> Signer {
        let public = PublicKey::from_key(key.verifying_key());
        Signer { key, public }
    }

    /// The private key as PKCS#8 PEM; wiped from memory when dropped. Version 1 (RFC 8410's
    /// `PrivateKeyInfo`, the secret key alone): OpenSSL 3 and Python's `cryptography` read it,
    /// and neither reads the version 2 that ed25519-dalek writes (the public key embedded).
    /// Keys written that way are still read (`from_pem`).
    pub fn to_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        let bytes = KeypairBytes { secret_key: self.key.to_bytes(), public_key: None };
        bytes.to_pkcs8_pem(LineEnding::LF).map_err(|error| KeyError::Private(error.to_string()))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let signature = self.key.sign(checkpoint.canonical().as_bytes());
        SignedCheckpoint { checkpoint, signature: hex::encode(signature.to_bytes()) }
    }
}

/// The public key that checks checkpoints, with its fingerprint: `sha256:` and the SHA-256 of
/// the 32-byte key in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    fingerprint: String,
}

impl PublicKey {
    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        let key = VerifyingKey::from_public_key_pem(text).map_err(|error| KeyError::Public(error.to_string()))?;
        Ok(PublicKey::from_key(key))
    }

    fn from_key(key: VerifyingKey) -> PublicKey {
        let fingerprint = format!("sha256:{}", chain::to_hex(&Sha256::digest(key.as_bytes()).into()));
        PublicKey { key, fingerprint }
    }

    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key.to_public_key_pem(LineEnding::LF).map_err(|error| KeyError::Public(error.to_string()))
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signed` carries this key's valid signature over its checkpoint. Strict: a
    /// signature that another encoding of the same values would also match is refused.
    pub fn verifies(&self, signed: &SignedCheckpoint) -> bool {
        let mut bytes = [0; 64];
        if hex::decode_to_slice(&signed.signature, &mut bytes).is_err() {
            return false;
        }
        let signature = Signature::from_bytes(&bytes);
        self.key.verify_strict(signed.checkpoint.canonical().as_bytes(), &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032, section 7.1, tests 1 to 3: secret key, public key, message, signature.
    const RFC_8032: &[(&str, &str, &str, &str)] = &[
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];

    #[test]
    fn ed25519_answers_rfc_8032() {
        for (secret, public, message, signature) in RFC_8032 {
            let secret: [u8; 32] = hex::decode(secret).unwrap().try_into().unwrap();
            let key = SigningKey::from_bytes(&secret);
            assert_eq!(hex::encode(key.verifying_key().as_bytes()), *public);
            let message = hex::decode(message).unwrap();
            let signed = key.sign(&message);
            assert_eq!(hex::encode(signed.to_bytes()), *signature);
            assert!(key.verifying_key().verify_strict(&message, &signed).is_ok());
            let mut forged = message.clone();
            forged.push(0);
            assert!(key.verifying_key().verify_strict(&forged, &signed).is_err());
        }
    }

    #[test]
    fn sha_256_answers_fips_180_examples() {
        let abc: Hash = Sha256::digest(b"abc").into();
        assert_eq!(chain::to_hex(&abc), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let two_blocks: Hash = Sha256::digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").into();
        assert_eq!(chain::to_hex(&two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }

    fn checkpoint(signer: &Signer) -> Checkpoint {
        Checkpoint {
            format: FORMAT,
            incident: "inc-1".into(),
            number: 1,
            events: 3,
            head: "ab".repeat(32),
            prev: "0".repeat(64),
            at: DateTime::parse_from_rfc3339("2026-11-24T02:14:00Z").unwrap().with_timezone(&Utc),
            key: signer.public().fingerprint().into(),
        }
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_only_unchanged() {
        let signer = Signer::from_seed(&[1; 32]);
        let signed = signer.sign(checkpoint(&signer));
        assert!(signer.public().verifies(&signed));
        assert!(!Signer::from_seed(&[2; 32]).public().verifies(&signed));
        let mut moved = signed.clone();
        moved.checkpoint.events = 2;
        assert!(!signer.public().verifies(&moved));
        let mut garbled = signed;
        garbled.signature.truncate(10);
        assert!(!signer.public().verifies(&garbled));
    }

    #[test]
    fn keys_round_trip_through_pem_and_never_show_in_debug() {
        let signer = Signer::from_seed(&[3; 32]);
        let pem = signer.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = Signer::from_pem(&pem).unwrap();
        assert_eq!(again.public(), signer.public());
        let public = PublicKey::from_pem(&signer.public().to_pem().unwrap()).unwrap();
        assert_eq!(&public, signer.public());
        assert!(public.fingerprint().starts_with("sha256:") && public.fingerprint().len() == 71);
        let debug = format!("{signer:?}");
        assert!(debug.contains(public.fingerprint()));
        let secret = hex::encode(signer.key.to_bytes());
        assert!(!debug.contains(&secret) && !debug.contains("PRIVATE"));
        assert!(matches!(Signer::from_pem(&public.to_pem().unwrap()), Err(KeyError::Private(_))));
        assert!(matches!(PublicKey::from_pem("garbage"), Err(KeyError::Public(_))));
    }

    /// `keygen` wrote PKCS#8 version 2 (the public key embedded), which OpenSSL 3 and Python's
    /// `cryptography` refuse; it writes version 1 now, and keys already written still read.
    #[test]
    fn keys_are_written_in_pkcs8_version_1_and_version_2_keys_still_read() {
        let signer = Signer::from_seed(&[4; 32]);
        let pem = signer.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        // Version 1 holds the secret key alone: 48 bytes of DER, 64 characters of base64.
        assert!(KeypairBytes::from_pkcs8_pem(&pem).unwrap().public_key.is_none());
        assert_eq!(pem.lines().nth(1).map(str::len), Some(64));
        let version_2 = signer.key.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(KeypairBytes::from_pkcs8_pem(&version_2).unwrap().public_key.is_some());
        assert_eq!(Signer::from_pem(&version_2).unwrap().public(), signer.public());
    }
}
