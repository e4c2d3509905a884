//! Who may deliver a webhook: each source's authentication scheme, checked over the raw body and
//! its headers before anything in it is parsed.
//!
//! [`verify`] is pure: the headers, the body and the time come in as arguments, and the answer is
//! a [`Verified`] delivery id or a [`Refusal`] with its HTTP status and a stable code. Every
//! comparison of a signature or a token takes the same time wherever the first difference lies.
//! No refusal quotes a secret, a token or a signature, so a refusal may be logged and returned to
//! the sender as it is. Replays are not refused here: a replayed delivery verifies, and the store
//! recognises its delivery id (see [`IdSource`] for how far each scheme's id can be trusted).

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use hmac::digest::CtOutput;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// How far a Standard Webhooks timestamp may lie from now, in either direction (the
/// specification's and the reference libraries' five minutes).
pub const TOLERANCE_SECONDS: i64 = 5 * 60;
/// The longest signature or authorization header read; a longer one is refused unread.
pub const MAX_SIGNATURE_HEADER: usize = 4 * 1024;
/// The most signatures a Standard Webhooks header may list (several serve key rotation).
pub const MAX_SIGNATURES: usize = 16;
/// The longest delivery id taken from a header.
pub const MAX_ID: usize = 256;
/// The longest timestamp header: 20 digits hold any `i64`.
const MAX_TIMESTAMP: usize = 20;

/// Base64 as Standard Webhooks uses it: the standard alphabet, with or without padding (the
/// reference libraries accept secrets without it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A webhook source's authentication scheme, with the secrets it is checked against. Every scheme
/// takes several secrets, so that a secret can be rotated without refusing deliveries: add the new
/// one, switch the sender, remove the old one.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-id`, `webhook-timestamp`
    /// and `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` over
    /// `{id}.{timestamp}.{body}` (other versions are ignored). The timestamp must lie within
    /// [`TOLERANCE_SECONDS`] of now, both ways. Secrets come from [`Secret::standard_webhooks`].
    StandardWebhooks { secrets: Vec<Secret> },
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; the delivery id is
    /// `X-GitHub-Delivery`, which must be present.
    GitHub { secrets: Vec<Secret> },
    /// A configured header carrying the hex HMAC-SHA256 of the body, optionally after `sha256=`.
    /// The delivery id comes from `id_header` when one is configured (it must then be present),
    /// else from the body's SHA-256.
    Hmac { header: String, id_header: Option<String>, secrets: Vec<Secret> },
    /// `Authorization: Bearer <token>`, what Prometheus Alertmanager's `http_config` sends (the
    /// scheme name in any case, as RFC 9110 has it). Alertmanager sends no delivery id, so the id
    /// is the body's SHA-256: a repeated notification is the same delivery.
    Bearer { tokens: Vec<Secret> },
}

impl Scheme {
    /// The headers that carry this scheme's signature or token (lowercase): a delivery is never
    /// kept with them. GitHub's older `X-Hub-Signature` (HMAC-SHA1 with the same secret) too,
    /// though it is not checked.
    pub fn credential_headers(&self) -> Vec<String> {
        match self {
            Scheme::StandardWebhooks { .. } => vec!["webhook-signature".into()],
            Scheme::GitHub { .. } => vec!["x-hub-signature-256".into(), "x-hub-signature".into()],
            Scheme::Hmac { header, .. } => vec![header.to_ascii_lowercase()],
            Scheme::Bearer { .. } => vec!["authorization".into()],
        }
    }
}

/// A secret or a token. Its value never prints (`Debug` shows `<redacted>`, and there is no
/// `Display`) and is wiped from memory when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// A secret of raw bytes: a GitHub or generic HMAC secret, or a bearer token.
    pub fn new(value: impl Into<Vec<u8>>) -> Result<Secret, Error> {
        let value = Zeroizing::new(value.into());
        if value.is_empty() {
            return Err(Error::EmptySecret);
        }
        Ok(Secret(value))
    }

    /// A Standard Webhooks secret as senders show it: `whsec_` and base64 (the prefix is
    /// optional, as in the reference libraries). The key is the decoded bytes.
    pub fn standard_webhooks(text: &str) -> Result<Secret, Error> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let bytes = Zeroizing::new(BASE64.decode(encoded.trim()).map_err(|_| Error::NotBase64)?);
        Secret::new(bytes.to_vec())
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What is wrong with a configured secret. The messages never quote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("a secret may not be empty")]
    EmptySecret,
    #[error("a Standard Webhooks secret must be base64, optionally after `whsec_`")]
    NotBase64,
}

/// The request's headers, looked up by name in any case: implemented for lists of name and value
/// pairs here, and by the server for its header map.
pub trait Headers {
    /// Every value of the header called `name` (ASCII, compared without regard to case), in the
    /// order received.
    fn get_all(&self, name: &str) -> impl Iterator<Item = &[u8]>;
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for [(N, V)] {
    fn get_all(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        self.iter().filter(move |(key, _)| key.as_ref().eq_ignore_ascii_case(name)).map(|(_, value)| value.as_ref())
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn get_all(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        self.as_slice().get_all(name)
    }
}

/// A delivery that proved who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// A stable id for deduplication: the scheme's id header, else `sha256:` and the body's hash.
    pub delivery_id: String,
    /// Where the id came from, and so whether a sender could change it.
    pub id_source: IdSource,
}

/// Where a delivery id came from. Only a signed id ties a delivery to its id: whoever captured a
/// GitHub delivery can send it again under a new `X-GitHub-Delivery`, with a valid signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// Covered by the signature (Standard Webhooks' `webhook-id`).
    Signed,
    /// A header outside the signature (`X-GitHub-Delivery`, a generic source's id header).
    Header,
    /// The SHA-256 of the body: the same bytes are the same delivery.
    BodyHash,
}

/// Why a delivery was refused. The message names headers and limits, never a value that could
/// be a secret, a token or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the `{header}` header is missing")]
    MissingHeader { header: String },
    #[error("the `{header}` header is malformed: {why}")]
    Malformed { header: String, why: &'static str },
    #[error("the `{header}` header is longer than {limit} bytes")]
    TooLarge { header: String, limit: usize },
    #[error("no signature matches the delivery")]
    BadSignature,
    #[error("the `webhook-signature` header has no `v1` signature")]
    NoSupportedSignature,
    #[error("the bearer token is not one of the source's tokens")]
    BadToken,
    #[error("the delivery was signed {age_seconds} seconds ago, more than the {TOLERANCE_SECONDS} allowed")]
    Stale { age_seconds: i64 },
    #[error("the delivery is dated {ahead_seconds} seconds ahead, more than the {TOLERANCE_SECONDS} allowed")]
    FromTheFuture { ahead_seconds: i64 },
}

impl Refusal {
    /// The HTTP status to answer with. Missing or wrong credentials, and signatures outside their
    /// time window, are 401; a header that cannot be read is 400, or 431 when it is too large.
    /// Every refusal is a 4xx: a sender must not retry a delivery that will never verify
    /// (Alertmanager retries only on 5xx).
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed { .. } => 400,
            Refusal::TooLarge { .. } => 431,
            Refusal::MissingHeader { .. }
            | Refusal::BadSignature
            | Refusal::NoSupportedSignature
            | Refusal::BadToken
            | Refusal::Stale { .. }
            | Refusal::FromTheFuture { .. } => 401,
        }
    }

    /// A stable code for JSON errors and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::MissingHeader { .. } => "missing_header",
            Refusal::Malformed { .. } => "malformed_header",
            Refusal::TooLarge { .. } => "header_too_large",
            Refusal::BadSignature => "bad_signature",
            Refusal::NoSupportedSignature => "no_supported_signature",
            Refusal::BadToken => "bad_token",
            Refusal::Stale { .. } => "timestamp_too_old",
            Refusal::FromTheFuture { .. } => "timestamp_too_new",
        }
    }
}

/// Checks a delivery against its source's scheme, before anything in the body is parsed.
///
/// Headers are read first, each refused if it is missing, repeated, too long or not printable
/// ASCII; then the signature or token is compared; for Standard Webhooks the time window is
/// checked last, so that only a correctly signed delivery is ever called stale (an unsigned one
/// is a bad signature, whatever its date).
pub fn verify<H: Headers + ?Sized>(
    scheme: &Scheme,
    headers: &H,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Verified, Refusal> {
    match scheme {
        Scheme::StandardWebhooks { secrets } => standard_webhooks(secrets, headers, body, now),
        Scheme::GitHub { secrets } => {
            let signature = required(headers, "x-hub-signature-256", MAX_SIGNATURE_HEADER)?;
            let Some(hex) = signature.strip_prefix("sha256=") else {
                return Err(malformed("x-hub-signature-256", "expected `sha256=` and 64 hex digits"));
            };
            let signature =
                hex_digest(hex).ok_or_else(|| malformed("x-hub-signature-256", "expected 64 hex digits"))?;
            let delivery_id = required(headers, "x-github-delivery", MAX_ID)?.to_owned();
            check_hmac(secrets, &[body], &[signature])?;
            Ok(Verified { delivery_id, id_source: IdSource::Header })
        }
        Scheme::Hmac { header, id_header, secrets } => {
            let header = header.to_ascii_lowercase();
            let signature = required(headers, &header, MAX_SIGNATURE_HEADER)?;
            let hex = signature.strip_prefix("sha256=").unwrap_or(signature);
            let signature = hex_digest(hex).ok_or_else(|| malformed(&header, "expected 64 hex digits"))?;
            let id = match id_header {
                Some(id_header) => Some(required(headers, &id_header.to_ascii_lowercase(), MAX_ID)?.to_owned()),
                None => None,
            };
            check_hmac(secrets, &[body], &[signature])?;
            Ok(match id {
                Some(delivery_id) => Verified { delivery_id, id_source: IdSource::Header },
                None => body_hash(body),
            })
        }
        Scheme::Bearer { tokens } => {
            let authorization = required(headers, "authorization", MAX_SIGNATURE_HEADER)?;
            let (name, token) = authorization.split_once(' ').unwrap_or((authorization, ""));
            if !name.eq_ignore_ascii_case("bearer") {
                return Err(malformed("authorization", "expected `Bearer` and a token"));
            }
            let token = token.trim_start_matches(' ');
            if token.is_empty() || token.contains([' ', '\t']) {
                return Err(malformed("authorization", "expected one token after `Bearer`"));
            }
            let presented = CtOutput::<Sha256>::new(Sha256::digest(token.as_bytes()));
            // Hashing first gives both sides one length, so the comparison's time says nothing
            // about the token's length either.
            let matches = tokens
                .iter()
                .fold(false, |found, expected| found | (CtOutput::new(Sha256::digest(expected.expose())) == presented));
            if !matches {
                return Err(Refusal::BadToken);
            }
            Ok(body_hash(body))
        }
    }
}

/// The Standard Webhooks signature of a delivery, `v1,<base64>`, as a sender puts it in
/// `webhook-signature`: for tests, load generators, and outbound deliveries.
pub fn sign_standard_webhooks(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mac = hmac_over(secret, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(mac.into_bytes()))
}

/// The hex HMAC-SHA256 of a body, as GitHub (after `sha256=`) and generic HMAC senders send it.
pub fn sign_hex(secret: &Secret, body: &[u8]) -> String {
    hex::encode(hmac_over(secret, &[body]).into_bytes())
}

fn hmac_over(secret: &Secret, parts: &[&[u8]]) -> CtOutput<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret.expose()).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
}

fn standard_webhooks<H: Headers + ?Sized>(
    secrets: &[Secret],
    headers: &H,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Verified, Refusal> {
    let id = required(headers, "webhook-id", MAX_ID)?;
    let timestamp_text = required(headers, "webhook-timestamp", MAX_TIMESTAMP)?;
    let signatures = required(headers, "webhook-signature", MAX_SIGNATURE_HEADER)?;
    let timestamp = seconds(timestamp_text).ok_or_else(|| malformed("webhook-timestamp", "expected whole seconds"))?;
    let signatures = v1_signatures(signatures)?;
    if signatures.is_empty() {
        return Err(Refusal::NoSupportedSignature);
    }
    check_hmac(secrets, &[id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body], &signatures)?;
    let now = now.timestamp();
    if timestamp < now.saturating_sub(TOLERANCE_SECONDS) {
        return Err(Refusal::Stale { age_seconds: now.saturating_sub(timestamp) });
    }
    if timestamp > now.saturating_add(TOLERANCE_SECONDS) {
        return Err(Refusal::FromTheFuture { ahead_seconds: timestamp.saturating_sub(now) });
    }
    Ok(Verified { delivery_id: id.to_owned(), id_source: IdSource::Signed })
}

/// The `v1` signatures of a `webhook-signature` header; entries of other versions are skipped
/// unread, as the specification asks.
fn v1_signatures(header: &str) -> Result<Vec<[u8; 32]>, Refusal> {
    let mut signatures = Vec::new();
    for (count, entry) in header.split(' ').filter(|entry| !entry.is_empty()).enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(malformed("webhook-signature", "more than 16 signatures"));
        }
        let Some((version, signature)) = entry.split_once(',') else {
            return Err(malformed("webhook-signature", "expected `v1,` and base64"));
        };
        if version != "v1" {
            continue;
        }
        let bytes =
            BASE64.decode(signature).map_err(|_| malformed("webhook-signature", "a `v1` signature is not base64"))?;
        // A signature of another length matches nothing, as in the reference libraries; it does not
        // make the header unreadable.
        if let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) {
            signatures.push(bytes);
        }
    }
    Ok(signatures)
}

/// Accepts when some secret's HMAC-SHA256 over the concatenated `parts` equals some signature.
/// Every secret is tried against every signature, each comparison in constant time.
fn check_hmac(secrets: &[Secret], parts: &[&[u8]], signatures: &[[u8; 32]]) -> Result<(), Refusal> {
    let mut matched = false;
    for secret in secrets {
        let expected = hmac_over(secret, parts);
        for signature in signatures {
            matched |= expected == CtOutput::new((*signature).into());
        }
    }
    if matched { Ok(()) } else { Err(Refusal::BadSignature) }
}

/// The one value of a header the scheme needs, as printable ASCII without surrounding whitespace.
fn required<'h, H: Headers + ?Sized>(headers: &'h H, name: &str, limit: usize) -> Result<&'h str, Refusal> {
    let mut values = headers.get_all(name);
    let Some(value) = values.next() else {
        return Err(Refusal::MissingHeader { header: name.to_owned() });
    };
    if values.next().is_some() {
        return Err(malformed(name, "sent more than once"));
    }
    if value.len() > limit {
        return Err(Refusal::TooLarge { header: name.to_owned(), limit });
    }
    if !value.iter().all(|&byte| byte == b'\t' || (b' '..=b'~').contains(&byte)) {
        return Err(malformed(name, "not printable ASCII"));
    }
    // Printable ASCII is UTF-8, so this never fails; the error path only avoids an unwrap.
    let value = std::str::from_utf8(value).map_err(|_| malformed(name, "not printable ASCII"))?.trim();
    if value.is_empty() {
        return Err(malformed(name, "empty"));
    }
    Ok(value)
}

fn malformed(header: &str, why: &'static str) -> Refusal {
    Refusal::Malformed { header: header.to_owned(), why }
}

/// Seconds since the epoch as ASCII digits only: no sign, fraction or exponent.
fn seconds(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A SHA-256-sized digest written in hex (either case).
fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let mut digest = [0; 32];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(digest)
}

fn body_hash(body: &[u8]) -> Verified {
    Verified { delivery_id: body_id(body), id_source: IdSource::BodyHash }
}

/// The id a delivery has by its bytes alone: `sha256:` and the body's hash in hex.
pub fn body_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn github() -> Scheme {
        Scheme::GitHub { secrets: vec![Secret::new(GITHUB_SECRET).unwrap()] }
    }

    fn standard(secrets: &[&str]) -> Scheme {
        Scheme::StandardWebhooks { secrets: secrets.iter().map(|s| Secret::standard_webhooks(s).unwrap()).collect() }
    }

    fn sw_headers(id: &str, timestamp: &str, signature: &str) -> Vec<(String, String)> {
        vec![
            ("webhook-id".into(), id.into()),
            ("webhook-timestamp".into(), timestamp.into()),
            ("webhook-signature".into(), signature.into()),
        ]
    }

    fn sw_known(signature: &str) -> Vec<(String, String)> {
        sw_headers(SW_ID, &SW_TIMESTAMP.to_string(), signature)
    }

    fn bearer(tokens: &[&str]) -> Scheme {
        Scheme::Bearer { tokens: tokens.iter().map(|t| Secret::new(*t).unwrap()).collect() }
    }

    /// GitHub's example in "Validating webhook deliveries".
    #[test]
    fn github_published_example_verifies() {
        let headers = [("X-Hub-Signature-256", GITHUB_SIGNATURE), ("X-GitHub-Delivery", "72d3162e-cc78-11e3")];
        let verified = verify(&github(), &headers[..], b"Hello, World!", at(0)).unwrap();
        assert_eq!(verified, Verified { delivery_id: "72d3162e-cc78-11e3".into(), id_source: IdSource::Header });
        let secret = Secret::new(GITHUB_SECRET).unwrap();
        assert_eq!(format!("sha256={}", sign_hex(&secret, b"Hello, World!")), GITHUB_SIGNATURE);
    }

    /// The Standard Webhooks reference libraries' signing test vector.
    #[test]
    fn standard_webhooks_published_example_verifies() {
        for secret in [SW_SECRET, SW_SECRET.trim_start_matches("whsec_")] {
            let verified = verify(&standard(&[secret]), &sw_known(SW_SIGNATURE), SW_BODY, at(SW_TIMESTAMP)).unwrap();
            assert_eq!(verified, Verified { delivery_id: SW_ID.into(), id_source: IdSource::Signed });
            let secret = Secret::standard_webhooks(secret).unwrap();
            assert_eq!(sign_standard_webhooks(&secret, SW_ID, SW_TIMESTAMP, SW_BODY), SW_SIGNATURE);
        }
    }

    #[test]
    fn standard_webhooks_refusals() {
        let other = "whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24=";
        let forged = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let ts = SW_TIMESTAMP.to_string();
        let now = SW_TIMESTAMP;
        let malformed = |why| Err(Refusal::Malformed { header: "webhook-signature".into(), why });
        let missing = |header: &str| Err(Refusal::MissingHeader { header: header.into() });
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("forged", standard(&[SW_SECRET]), sw_known(forged), SW_BODY, now, Err(Refusal::BadSignature)),
            ("tampered body", standard(&[SW_SECRET]), sw_known(SW_SIGNATURE), br#"{"test": 2432232315}"#, now, Err(Refusal::BadSignature)),
            ("other id", standard(&[SW_SECRET]), sw_headers("msg_other", &ts, SW_SIGNATURE), SW_BODY, now, Err(Refusal::BadSignature)),
            ("other timestamp", standard(&[SW_SECRET]), sw_headers(SW_ID, "1614265331", SW_SIGNATURE), SW_BODY, now, Err(Refusal::BadSignature)),
            ("leading zero changes the signed text", standard(&[SW_SECRET]), sw_headers(SW_ID, &format!("0{ts}"), SW_SIGNATURE), SW_BODY, now, Err(Refusal::BadSignature)),
            ("wrong secret", standard(&[other]), sw_known(SW_SIGNATURE), SW_BODY, now, Err(Refusal::BadSignature)),
            ("no secret configured", standard(&[]), sw_known(SW_SIGNATURE), SW_BODY, now, Err(Refusal::BadSignature)),
            ("rotation: second secret", standard(&[other, SW_SECRET]), sw_known(SW_SIGNATURE), SW_BODY, now, Ok(())),
            ("rotation: second signature", standard(&[SW_SECRET]), sw_known(&format!("{forged} {SW_SIGNATURE}")), SW_BODY, now, Ok(())),
            ("other versions ignored", standard(&[SW_SECRET]), sw_known(&format!("v1a,xyz v2,!! {SW_SIGNATURE}")), SW_BODY, now, Ok(())),
            ("short v1 matches nothing", standard(&[SW_SECRET]), sw_known(&format!("v1,bm9wZQ== {SW_SIGNATURE}")), SW_BODY, now, Ok(())),
            ("only other versions", standard(&[SW_SECRET]), sw_known("v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), SW_BODY, now, Err(Refusal::NoSupportedSignature)),
            ("exactly 5 minutes old", standard(&[SW_SECRET]), sw_known(SW_SIGNATURE), SW_BODY, now + 300, Ok(())),
            ("stale", standard(&[SW_SECRET]), sw_known(SW_SIGNATURE), SW_BODY, now + 301, Err(Refusal::Stale { age_seconds: 301 })),
            ("exactly 5 minutes ahead", standard(&[SW_SECRET]), sw_known(SW_SIGNATURE), SW_BODY, now - 300, Ok(())),
            ("future-dated", standard(&[SW_SECRET]), sw_known(SW_SIGNATURE), SW_BODY, now - 301, Err(Refusal::FromTheFuture { ahead_seconds: 301 })),
            ("stale and forged is forged", standard(&[SW_SECRET]), sw_known(forged), SW_BODY, now + 3600, Err(Refusal::BadSignature)),
            ("no v1 prefix", standard(&[SW_SECRET]), sw_known("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), SW_BODY, now, malformed("expected `v1,` and base64")),
            ("bad base64", standard(&[SW_SECRET]), sw_known("v1,g0hM9SsE*OTPJTGt"), SW_BODY, now, malformed("a `v1` signature is not base64")),
            ("empty signature", standard(&[SW_SECRET]), sw_known(" "), SW_BODY, now, malformed("empty")),
            ("too many signatures", standard(&[SW_SECRET]), sw_known(&[SW_SIGNATURE; 17].join(" ")), SW_BODY, now, malformed("more than 16 signatures")),
            ("oversized", standard(&[SW_SECRET]), sw_known(&format!("{SW_SIGNATURE} v2,{}", "A".repeat(4096))), SW_BODY, now, Err(Refusal::TooLarge { header: "webhook-signature".into(), limit: 4096 })),
            ("not ASCII", standard(&[SW_SECRET]), sw_known("v1,\u{e9}"), SW_BODY, now, malformed("not printable ASCII")),
            ("timestamp not a number", standard(&[SW_SECRET]), sw_headers(SW_ID, "16142653e3", SW_SIGNATURE), SW_BODY, now, Err(Refusal::Malformed { header: "webhook-timestamp".into(), why: "expected whole seconds" })),
            ("negative timestamp", standard(&[SW_SECRET]), sw_headers(SW_ID, "-1", SW_SIGNATURE), SW_BODY, now, Err(Refusal::Malformed { header: "webhook-timestamp".into(), why: "expected whole seconds" })),
            ("timestamp past i64", standard(&[SW_SECRET]), sw_headers(SW_ID, "99999999999999999999", SW_SIGNATURE), SW_BODY, now, Err(Refusal::Malformed { header: "webhook-timestamp".into(), why: "expected whole seconds" })),
            ("timestamp too long", standard(&[SW_SECRET]), sw_headers(SW_ID, &"1".repeat(21), SW_SIGNATURE), SW_BODY, now, Err(Refusal::TooLarge { header: "webhook-timestamp".into(), limit: 20 })),
            ("id too long", standard(&[SW_SECRET]), sw_headers(&"m".repeat(257), &ts, SW_SIGNATURE), SW_BODY, now, Err(Refusal::TooLarge { header: "webhook-id".into(), limit: 256 })),
            ("missing id", standard(&[SW_SECRET]), sw_known(SW_SIGNATURE)[1..].to_vec(), SW_BODY, now, missing("webhook-id")),
            ("missing signature", standard(&[SW_SECRET]), sw_known(SW_SIGNATURE)[..2].to_vec(), SW_BODY, now, missing("webhook-signature")),
            ("no headers", standard(&[SW_SECRET]), vec![], SW_BODY, now, missing("webhook-id")),
            ("repeated header", standard(&[SW_SECRET]), [sw_known(SW_SIGNATURE), sw_known(SW_SIGNATURE)].concat(), SW_BODY, now, Err(Refusal::Malformed { header: "webhook-id".into(), why: "sent more than once" })),
        ];
        check(cases);
    }

    #[test]
    fn github_hmac_and_bearer_refusals() {
        let gh = |signature: &str| {
            vec![("X-Hub-Signature-256".to_owned(), signature.to_owned()), ("X-GitHub-Delivery".into(), "d-1".into())]
        };
        let auth = |value: &str| vec![("Authorization".to_owned(), value.to_owned())];
        let hex = GITHUB_SIGNATURE.trim_start_matches("sha256=");
        let hmac = |id_header: Option<&str>| Scheme::Hmac {
            header: "X-Signature".into(),
            id_header: id_header.map(Into::into),
            secrets: vec![Secret::new("wrong").unwrap(), Secret::new(GITHUB_SECRET).unwrap()],
        };
        let body: &[u8] = b"Hello, World!";
        let malformed = |header: &str, why| Err(Refusal::Malformed { header: header.into(), why });
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("github: upper-case hex", github(), gh(&GITHUB_SIGNATURE.to_uppercase().replace("SHA256=", "sha256=")), body, 0, Ok(())),
            ("github: tampered body", github(), gh(GITHUB_SIGNATURE), b"Hello, World?", 0, Err(Refusal::BadSignature)),
            ("github: wrong secret", Scheme::GitHub { secrets: vec![Secret::new("guess").unwrap()] }, gh(GITHUB_SIGNATURE), body, 0, Err(Refusal::BadSignature)),
            ("github: sha1 header form", github(), gh(&format!("sha1={hex}")), body, 0, malformed("x-hub-signature-256", "expected `sha256=` and 64 hex digits")),
            ("github: bad hex", github(), gh(&format!("sha256={}", "z".repeat(64))), body, 0, malformed("x-hub-signature-256", "expected 64 hex digits")),
            ("github: short hex", github(), gh(&GITHUB_SIGNATURE[..70]), body, 0, malformed("x-hub-signature-256", "expected 64 hex digits")),
            ("github: no delivery id", github(), gh(GITHUB_SIGNATURE)[..1].to_vec(), body, 0, Err(Refusal::MissingHeader { header: "x-github-delivery".into() })),
            ("github: no signature", github(), gh(GITHUB_SIGNATURE)[1..].to_vec(), body, 0, Err(Refusal::MissingHeader { header: "x-hub-signature-256".into() })),
            ("hmac: bare hex, second secret", hmac(None), vec![("x-signature".into(), hex.into())], body, 0, Ok(())),
            ("hmac: prefixed hex", hmac(None), vec![("X-SIGNATURE".into(), format!("sha256={hex}"))], body, 0, Ok(())),
            ("hmac: tampered", hmac(None), vec![("x-signature".into(), hex.into())], b"", 0, Err(Refusal::BadSignature)),
            ("hmac: id header missing", hmac(Some("X-Request-Id")), vec![("x-signature".into(), hex.into())], body, 0, Err(Refusal::MissingHeader { header: "x-request-id".into() })),
            ("bearer", bearer(&["old", "s3cret"]), auth("Bearer s3cret"), body, 0, Ok(())),
            ("bearer: scheme in any case", bearer(&["s3cret"]), auth("bearer s3cret"), body, 0, Ok(())),
            ("bearer: wrong token", bearer(&["s3cret"]), auth("Bearer s3cre"), body, 0, Err(Refusal::BadToken)),
            ("bearer: no tokens configured", bearer(&[]), auth("Bearer s3cret"), body, 0, Err(Refusal::BadToken)),
            ("bearer: basic", bearer(&["s3cret"]), auth("Basic czNjcmV0"), body, 0, malformed("authorization", "expected `Bearer` and a token")),
            ("bearer: no token", bearer(&["s3cret"]), auth("Bearer"), body, 0, malformed("authorization", "expected one token after `Bearer`")),
            ("bearer: two tokens", bearer(&["s3cret"]), auth("Bearer s3cret s3cret"), body, 0, malformed("authorization", "expected one token after `Bearer`")),
            ("bearer: missing", bearer(&["s3cret"]), vec![], body, 0, Err(Refusal::MissingHeader { header: "authorization".into() })),
            ("bearer: oversized", bearer(&["s3cret"]), auth(&format!("Bearer {}", "t".repeat(5000))), body, 0, Err(Refusal::TooLarge { header: "authorization".into(), limit: 4096 })),
        ];
        check(cases);
    }

    type Case<'a> = (&'a str, Scheme, Vec<(String, String)>, &'a [u8], i64, Result<(), Refusal>);

    fn check(cases: Vec<Case<'_>>) {
        let mut failures = Vec::new();
        for (name, scheme, headers, body, now, expected) in cases {
            let outcome = verify(&scheme, &headers, body, at(now)).map(|_| ());
            if outcome != expected {
                failures.push(format!("{name}: expected {expected:?}, got {outcome:?}"));
            }
            if let Err(refusal) = outcome {
                // No refusal may repeat what the sender presented as a credential.
                let message = refusal.to_string();
                for (_, value) in &headers {
                    let quoted = value.len() > 8 && message.contains(value.as_str());
                    assert!(!quoted, "{name}: the refusal quotes a header value: {message}");
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn body_hash_is_the_delivery_id_without_an_id_header() {
        let verified = verify(&bearer(&["t"]), &[("authorization", "Bearer t")][..], b"abc", at(0)).unwrap();
        let expected = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(verified, Verified { delivery_id: expected.into(), id_source: IdSource::BodyHash });
    }

    #[test]
    fn statuses_and_codes() {
        let header = || "h".to_owned();
        let cases = [
            (Refusal::MissingHeader { header: header() }, 401, "missing_header"),
            (Refusal::Malformed { header: header(), why: "x" }, 400, "malformed_header"),
            (Refusal::TooLarge { header: header(), limit: 1 }, 431, "header_too_large"),
            (Refusal::BadSignature, 401, "bad_signature"),
            (Refusal::NoSupportedSignature, 401, "no_supported_signature"),
            (Refusal::BadToken, 401, "bad_token"),
            (Refusal::Stale { age_seconds: 301 }, 401, "timestamp_too_old"),
            (Refusal::FromTheFuture { ahead_seconds: 301 }, 401, "timestamp_too_new"),
        ];
        for (refusal, status, code) in cases {
            assert_eq!((refusal.status(), refusal.code()), (status, code), "{refusal}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::standard_webhooks(SW_SECRET).unwrap();
        let scheme = Scheme::Hmac { header: "x".into(), id_header: None, secrets: vec![secret] };
        let printed = format!("{scheme:?}");
        assert!(printed.contains("<redacted>") && !printed.contains("MfKQ9r8G"), "{printed}");
        assert!(matches!(Secret::new(""), Err(Error::EmptySecret)));
        assert!(matches!(Secret::standard_webhooks("whsec_not base64!"), Err(Error::NotBase64)));
        assert!(matches!(Secret::standard_webhooks("whsec_"), Err(Error::EmptySecret)));
        // Unpadded base64 is accepted, as the reference libraries accept it.
        assert!(Secret::standard_webhooks("whsec_c2VjcmV0cw").is_ok());
    }
}
