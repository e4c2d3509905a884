//! Which of a delivery's request headers are kept with it, for its triggers to read as `headers`.
//!
//! Everything the sender sent, by lowercase name, except what could let someone else deliver in
//! its name: `Authorization`, `Proxy-Authorization` and `Cookie` from any source
//! (`engine::trigger::CREDENTIAL_HEADERS`) and the header that carries the source's signature or
//! token (`Scheme::credential_headers`). A name sent more than once is kept once, its values
//! joined by `, ` in the order sent (RFC 9110's rule for combining field lines). A value that is
//! not UTF-8 is left out. At most [`MAX_KEPT`] bytes of names and values are kept: headers are
//! taken in the order of their names and one that would pass the limit is left out whole, never
//! cut (a cut value could satisfy a condition the sent one does not).

use axum::http::HeaderMap;

use super::signature::Scheme;
use crate::engine::trigger::CREDENTIAL_HEADERS;
use crate::store::Headers;

/// The most bytes of header names and values kept with a delivery.
pub const MAX_KEPT: usize = 8 * 1024;

/// The headers of a request from a source authenticated by `scheme` that are kept with it.
pub fn kept(scheme: &Scheme, headers: &HeaderMap) -> Headers {
    let refused = scheme.credential_headers();
    let mut joined = Headers::new();
    for name in headers.keys() {
        // `HeaderMap` names are lowercase already.
        let name = name.as_str();
        if CREDENTIAL_HEADERS.contains(&name) || refused.iter().any(|refused| refused == name) {
            continue;
        }
        let values: Result<Vec<&str>, _> =
            headers.get_all(name).iter().map(|value| std::str::from_utf8(value.as_bytes())).collect();
        if let Ok(values) = values {
            joined.insert(name.to_string(), values.join(", "));
        }
    }
    let mut size = 0;
    joined.retain(|name, value| {
        let fits = size + name.len() + value.len() <= MAX_KEPT;
        if fits {
            size += name.len() + value.len();
        }
        fits
    });
    joined
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::webhooks::signature::Secret;

    fn secret() -> Vec<Secret> {
        vec![Secret::new("s3cret").unwrap()]
    }

    fn request(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, axum::http::HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    fn names(headers: &Headers) -> Vec<&str> {
        headers.keys().map(String::as_str).collect()
    }

    #[test]
    fn credentials_and_the_source_signature_are_never_kept() {
        let sent = request(&[
            ("Authorization", b"Bearer t0ken"),
            ("Proxy-Authorization", b"Basic eDp5"),
            ("Cookie", b"session=c00kie"),
            ("Webhook-Signature", b"v1,abc"),
            ("Webhook-Id", b"msg_1"),
            ("X-Hub-Signature-256", b"sha256=00"),
            ("X-Hub-Signature", b"sha1=00"),
            ("X-GitHub-Delivery", b"d-1"),
            ("X-Signature", b"00"),
            ("X-SIEM-Env", b"prod"),
        ]);
        let table: Vec<(&str, Scheme, Vec<&str>)> = vec![
            (
                "bearer",
                Scheme::Bearer { tokens: secret() },
                vec![
                    "webhook-id",
                    "webhook-signature",
                    "x-github-delivery",
                    "x-hub-signature",
                    "x-hub-signature-256",
                    "x-siem-env",
                    "x-signature",
                ],
            ),
            (
                "standard webhooks",
                Scheme::StandardWebhooks { secrets: secret() },
                vec![
                    "webhook-id",
                    "x-github-delivery",
                    "x-hub-signature",
                    "x-hub-signature-256",
                    "x-siem-env",
                    "x-signature",
                ],
            ),
            (
                "github",
                Scheme::GitHub { secrets: secret() },
                vec!["webhook-id", "webhook-signature", "x-github-delivery", "x-siem-env", "x-signature"],
            ),
            (
                "hmac, its header named in any case",
                Scheme::Hmac { header: "X-Signature".into(), id_header: None, secrets: secret() },
                vec![
                    "webhook-id",
                    "webhook-signature",
                    "x-github-delivery",
                    "x-hub-signature",
                    "x-hub-signature-256",
                    "x-siem-env",
                ],
            ),
        ];
        for (what, scheme, expected) in table {
            let taken = kept(&scheme, &sent);
            assert_eq!(names(&taken), expected, "{what}");
            let credential =
                |value: &String| value.contains("t0ken") || value.contains("c00kie") || value.contains("eDp5");
            assert!(!taken.values().any(credential), "{what}: {taken:?}");
        }
    }

    #[test]
    fn repeated_headers_are_joined_and_values_not_text_left_out() {
        let sent = request(&[("X-Tag", b"a"), ("x-tag", b"b"), ("X-Bytes", b"caf\xe9"), ("X-Env", b"prod")]);
        let taken = kept(&Scheme::Bearer { tokens: secret() }, &sent);
        assert_eq!(taken, Headers::from([("x-env".into(), "prod".into()), ("x-tag".into(), "a, b".into())]));
    }

    #[test]
    fn headers_past_the_limit_are_left_out_whole() {
        let big = vec![b'v'; MAX_KEPT - "x-a".len() - 10];
        let sent = request(&[("x-a", &big), ("x-b", &[b'w'; 20]), ("x-c", b"small")]);
        let taken = kept(&Scheme::Bearer { tokens: secret() }, &sent);
        assert_eq!(names(&taken), ["x-a", "x-c"], "`x-b` would pass the limit; `x-c` still fits");
        assert!(taken.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>() <= MAX_KEPT);
        let alone = request(&[("x-huge", &vec![b'v'; MAX_KEPT])]);
        assert!(kept(&Scheme::Bearer { tokens: secret() }, &alone).is_empty(), "a header past the limit alone");
    }
}
