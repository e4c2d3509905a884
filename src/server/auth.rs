//! Who is calling: `Authorization: Bearer TOKEN`, checked against the configured tokens' hashes.
//! A missing or unknown token is 401; what the person may do is the engine's to check (a missing
//! role is 403, naming the role).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::App;
use super::error::ApiError;
use crate::config::server::Token;
use crate::store::Store;

/// The person a request acts as, from its token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub person: String,
}

impl<S: Store> FromRequestParts<Arc<App<S>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App<S>>) -> Result<Caller, ApiError> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("an API token is needed: `Authorization: Bearer TOKEN`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
        let token =
            find(&app.config.server.tokens, token.trim()).ok_or_else(|| unauthorized("the API token is not valid"))?;
        Ok(Caller { person: token.person.clone() })
    }
}

/// The configured token whose hash is the hash of `presented`. Every token is compared, each in
/// constant time, so the time taken says nothing about which one came close.
pub fn find<'t>(tokens: &'t [Token], presented: &str) -> Option<&'t Token> {
    let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for token in tokens {
        let difference = token.sha256.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 {
            found = Some(token);
        }
    }
    found
}

/// A new token: `pg_` and 32 random bytes in URL-safe base64, with its hash for the configuration.
pub fn new_token() -> (String, String) {
    use base64::Engine as _;
    use rand_core::RngCore as _;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::OsRng.fill_bytes(bytes.as_mut());
    let token = format!("pg_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let (token, hash) = new_token();
        assert!(token.starts_with("pg_") && token.len() == 46);
        let mut sha256 = [0; 32];
        hex::decode_to_slice(&hash, &mut sha256).unwrap();
        let tokens = [
            Token { name: "other".into(), person: "lee".into(), sha256: [7; 32] },
            Token { name: "ci".into(), person: "dana".into(), sha256 },
        ];
        assert_eq!(find(&tokens, &token).map(|t| t.person.as_str()), Some("dana"));
        assert!(find(&tokens, &hash).is_none(), "the hash itself is not a token");
        assert!(find(&tokens, "").is_none());
        assert!(!format!("{:?}", tokens[1]).contains(&hash));
    }
}
