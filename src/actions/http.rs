//! HTTP requests for http steps and check gates, and the posts that notify channels make.
//!
//! A request is sent as the engine built it, with secret header values filled in at the last
//! moment. What comes back is an [`Outcome::Http`] whatever the status: whether a 500 (or a
//! redirect, which is never followed) fails the step is the runbook's `expect` to say, in the
//! engine. Only a request that got no complete answer (refused, unreachable, timed out) is
//! `Failed`.
//!
//! Secrets cannot leak through what is kept: header values marked as secret are flagged
//! sensitive, the answer is scrubbed of every secret value sent (an echo server would otherwise
//! put a token into the log), headers that carry credentials are dropped, and error messages name
//! the method and the URL without its credentials or query, never a header.

use std::collections::BTreeMap;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};

use super::{Error, MAX_BODY, Revealed, SecretSource, TRUNCATED_HEADER, scrubbed_text};
use crate::engine::Outcome;
use crate::engine::effect::HttpRequest;
use crate::runbook::model::{Text, format_duration};

/// Sends `request`; step requests carry their `idempotency_key` so that a server seeing a retry
/// of a request it already carried out can answer without doing it twice.
pub(super) async fn send(
    client: &Client,
    secrets: &dyn SecretSource,
    request: &HttpRequest,
    idempotency_key: Option<&str>,
) -> Result<Outcome, Error> {
    let method = method(&request.method)?;
    let url = url(&request.url)?;
    let target = format!("{method} {}", shown(&url));
    let mut revealed = Revealed::new(secrets);
    let mut headers = headers(&request.headers, &mut revealed)?;
    if let Some(key) = idempotency_key {
        let value = HeaderValue::from_str(key).map_err(|_| Error::HeaderValue("Idempotency-Key".to_string()))?;
        headers.insert(HeaderName::from_static("idempotency-key"), value);
    }
    let mut builder = client.request(method, url);
    if let Some(body) = &request.body {
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        builder = builder.body(serde_json::to_vec(body).expect("a JSON value serializes"));
    }
    let builder = builder.headers(headers);
    // Reading the body counts against the timeout too: a server that trickles an answer must not
    // hold a step beyond its limit.
    let exchange = async {
        let response = builder.send().await.map_err(|error| request_error(&target, error))?;
        let status = response.status().as_u16();
        let headers = response_headers(response.headers(), &revealed);
        let (bytes, truncated) =
            read_capped(response, MAX_BODY, revealed.longest()).await.map_err(|error| request_error(&target, error))?;
        Ok::<_, Error>((status, headers, bytes, truncated))
    };
    let (status, mut headers, bytes, truncated) = tokio::time::timeout(request.timeout, exchange)
        .await
        .map_err(|_| Error::Timeout { target: target.clone(), after: format_duration(request.timeout) })??;
    let body = if truncated {
        headers.insert(TRUNCATED_HEADER.to_string(), "true".to_string());
        serde_json::Value::String(scrubbed_text(&bytes, MAX_BODY, &revealed))
    } else {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(json) => revealed.scrub_json(json),
            Err(_) => serde_json::Value::String(scrubbed_text(&bytes, MAX_BODY, &revealed)),
        }
    };
    Ok(Outcome::Http { status, headers, body })
}

/// Posts a notify channel's JSON. The error says why it did not get through in a few fixed words,
/// without the URL (a Slack webhook's URL is its secret) and without the client's own message
/// (which may quote the URL).
pub(super) async fn post_json(
    client: &Client,
    url: Url,
    headers: HeaderMap,
    body: &serde_json::Value,
) -> Result<(), String> {
    let request = client
        .post(url)
        .headers(headers)
        .header(CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).expect("a JSON value serializes"))
        .send();
    match tokio::time::timeout(super::DELIVERY_TIMEOUT, request).await {
        Err(_) => Err(format!("delivery failed: no answer within {}", format_duration(super::DELIVERY_TIMEOUT))),
        Ok(Err(error)) if error.is_connect() => Err("delivery failed: could not connect".to_string()),
        Ok(Err(error)) if error.is_timeout() => Err("delivery failed: timed out".to_string()),
        Ok(Err(_)) => Err("delivery failed: the request could not be sent".to_string()),
        Ok(Ok(response)) if response.status().is_success() => Ok(()),
        Ok(Ok(response)) => Err(format!("delivery failed: status {}", response.status().as_u16())),
    }
}

fn method(text: &str) -> Result<Method, Error> {
    let upper = text.trim().to_ascii_uppercase();
    Method::from_bytes(upper.as_bytes()).map_err(|_| Error::Method(text.to_string()))
}

/// An absolute http or https URL.
pub(super) fn url(text: &str) -> Result<Url, Error> {
    let url = Url::parse(text).map_err(|error| Error::Url { url: shown_text(text), reason: error.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Url { url: shown(&url), reason: "only http and https are supported".to_string() });
    }
    Ok(url)
}

/// A URL as messages show it: without user, password, query or fragment, where credentials and
/// tokens would sit if anyone put them in a URL.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Text that did not parse as a URL, as messages show it: up to any `@`, `?` or `#`.
fn shown_text(text: &str) -> String {
    let cut = text.find(['?', '#']).unwrap_or(text.len());
    let text = &text[..cut];
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://{}", &text[..scheme_end], &text[at + 1..]),
        _ => text.to_string(),
    }
}

/// The request's headers, secrets filled in and marked sensitive (so that no `Debug` prints them).
pub(super) fn headers(given: &[(String, Text)], revealed: &mut Revealed<'_>) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    for (name, text) in given {
        let value = revealed.text(text, || format!("header `{name}`"))?;
        let header_name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| Error::HeaderName(name.clone()))?;
        let mut header_value = HeaderValue::from_str(&value).map_err(|_| Error::HeaderValue(name.clone()))?;
        header_value.set_sensitive(matches!(text, Text::Secret { .. }));
        headers.append(header_name, header_value);
    }
    Ok(headers)
}

/// Headers that carry credentials or sessions: kept out of the outcome, and so out of the log.
fn is_sensitive(name: &str) -> bool {
    const PARTS: &[&str] =
        &["auth", "cookie", "token", "secret", "session", "api-key", "apikey", "password", "signature"];
    PARTS.iter().any(|part| name.contains(part))
}

/// The response's headers by lowercase name, repeated headers joined with `, `.
fn response_headers(headers: &HeaderMap, revealed: &Revealed<'_>) -> BTreeMap<String, String> {
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        // `HeaderName` is lowercase already.
        let name = name.as_str();
        if is_sensitive(name) {
            continue;
        }
        let value = revealed.scrub(&String::from_utf8_lossy(value.as_bytes()));
        kept.entry(name.to_string()).and_modify(|joined| *joined = format!("{joined}, {value}")).or_insert(value);
    }
    kept
}

/// Reads the body up to `cap` bytes plus `slack` (see [`scrubbed_text`]), and whether there was
/// more than `cap`. Whatever is past that is never read: the connection is dropped instead.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    slack: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let limit = cap + slack;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            bytes.truncate(limit);
            return Ok((bytes, true));
        }
    }
    let truncated = bytes.len() > cap;
    Ok((bytes, truncated))
}

/// A request error as a message: what was asked, then why, without the URL that the client's
/// own message carries (it is in `target` already, shown without credentials).
fn request_error(target: &str, error: reqwest::Error) -> Error {
    let error = error.without_url();
    let reason = if error.is_connect() {
        format!("could not connect: {}", root_cause(&error))
    } else if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_body() || error.is_decode() {
        format!("the answer broke off: {}", root_cause(&error))
    } else {
        format!("the request failed: {}", root_cause(&error))
    };
    Error::Request { target: target.to_string(), reason }
}

/// The innermost cause of an error, where the useful words are (`Connection refused`).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_lose_credentials_and_queries() {
        let url = Url::parse("https://user:pw@siem.example/api/holds?token=abc#x").unwrap();
        assert_eq!(shown(&url), "https://siem.example/api/holds");
        assert_eq!(shown_text("https://user:pw@bad host/?token=abc"), "https://bad host/");
        assert!(matches!(super::url("ftp://files.example/"), Err(Error::Url { .. })));
        assert!(matches!(super::url("not a url"), Err(Error::Url { .. })));
    }

    #[test]
    fn credentials_in_response_headers_are_dropped() {
        for name in
            ["set-cookie", "authorization", "proxy-authenticate", "x-auth-token", "x-api-key", "x-amz-security-token"]
        {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["content-type", "location", "retry-after", "etag"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn methods_are_read_in_any_case() {
        assert_eq!(method("post").unwrap(), Method::POST);
        assert!(method("NOT A METHOD").is_err());
    }
}
