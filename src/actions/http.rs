//! HTTP requests for http steps and check gates, and the posts that notify channels make.
//!
//! A request is sent as the engine built it, with secret header values filled in at the last
//! moment. What comes back is an [`Outcome::Http`] whatever the status: whether a 500 (or a
//! redirect, unless configuration follows them) fails the step is the runbook's `expect` to say,
//! in the engine. Only a request that got no complete answer (refused, unreachable, timed out) is
//! `Failed`.
//!
//! Where a request may go is the outbound policy's to say (`outbound.rs`): the URL's host is
//! checked before anything is sent, names are checked as they resolve, and, when redirects are
//! followed, every hop is checked again. Redirects are followed here, hop by hop, rather than by
//! the client, so that a hop to another origin loses the request's credentials: the client would
//! drop only the headers it knows (`Authorization`, `Cookie`), not a secret `X-Api-Key`.
//!
//! Secrets cannot leak through what is kept: header values marked as secret are flagged
//! sensitive, the answer is scrubbed of every secret value sent (an echo server would otherwise
//! put a token into the log), headers that carry credentials are dropped, and error messages name
//! the method and the URL without its credentials or query, never a header.

use std::collections::BTreeMap;

use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderMap, HeaderName, HeaderValue, LOCATION,
    PROXY_AUTHORIZATION,
};
use reqwest::{Client, Method, Response, StatusCode, Url};

use super::outbound::{self, MAX_REDIRECTS, Policy, Refusal};
use super::{Error, MAX_BODY, Revealed, SecretSource, TRUNCATED_HEADER, scrubbed_text};
use crate::engine::Outcome;
use crate::engine::effect::HttpRequest;
use crate::runbook::model::{Text, format_duration};

/// Sends `request` where `policy` allows; step requests carry their `idempotency_key` so that a
/// server seeing a retry of a request it already carried out can answer without doing it twice.
pub(super) async fn send(
    client: &Client,
    policy: &Policy,
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
    let body = request.body.as_ref().map(|body| serde_json::to_vec(body).expect("a JSON value serializes"));
    if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let outgoing = Outgoing { method, url, headers, body };
    // Reading the body counts against the timeout too: a server that trickles an answer must not
    // hold a step beyond its limit.
    let exchange = async {
        let response = exchange(client, policy, outgoing).await.map_err(|failure| match failure {
            Failure::Refused { refusal, redirected } => Error::Refused { target: target.clone(), refusal, redirected },
            Failure::Redirects => {
                Error::Request { target: target.clone(), reason: format!("more than {MAX_REDIRECTS} redirects") }
            }
            Failure::Client(error) => request_error(&target, error),
        })?;
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

/// Posts a notify channel's JSON where `policy` allows. Nothing of the answer but its status is
/// read. The error says why it did not get through in a few fixed words, without the URL (a Slack
/// webhook's URL is its secret) and without the client's own message (which may quote the URL);
/// a refusal names the host only.
pub(super) async fn post_json(
    client: &Client,
    policy: &Policy,
    url: Url,
    mut headers: HeaderMap,
    body: &serde_json::Value,
) -> Result<(), String> {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = Some(serde_json::to_vec(body).expect("a JSON value serializes"));
    let outgoing = Outgoing { method: Method::POST, url, headers, body };
    match tokio::time::timeout(super::DELIVERY_TIMEOUT, exchange(client, policy, outgoing)).await {
        Err(_) => Err(format!("delivery failed: no answer within {}", format_duration(super::DELIVERY_TIMEOUT))),
        Ok(Err(Failure::Refused { refusal, redirected: false })) => Err(format!("delivery refused: {refusal}")),
        Ok(Err(Failure::Refused { refusal, redirected: true })) => {
            Err(format!("delivery refused at a redirect: {refusal}"))
        }
        Ok(Err(Failure::Redirects)) => Err(format!("delivery failed: more than {MAX_REDIRECTS} redirects")),
        Ok(Err(Failure::Client(error))) if error.is_connect() => Err("delivery failed: could not connect".to_string()),
        Ok(Err(Failure::Client(error))) if error.is_timeout() => Err("delivery failed: timed out".to_string()),
        Ok(Err(Failure::Client(_))) => Err("delivery failed: the request could not be sent".to_string()),
        Ok(Ok(response)) if response.status().is_success() => Ok(()),
        Ok(Ok(response)) => Err(format!("delivery failed: status {}", response.status().as_u16())),
    }
}

/// A request as it goes out, hop after hop when redirects are followed.
struct Outgoing {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

/// Why no answer came back.
enum Failure {
    /// The policy refused the request's host, or, `redirected`, a redirect's.
    Refused {
        refusal: Refusal,
        redirected: bool,
    },
    /// More than [`MAX_REDIRECTS`] redirects.
    Redirects,
    Client(reqwest::Error),
}

/// Sends `outgoing` where the policy allows, following redirects if it says so, each hop checked
/// like the first; the answer is the first that is not a redirect to follow.
async fn exchange(client: &Client, policy: &Policy, mut outgoing: Outgoing) -> Result<Response, Failure> {
    let mut redirects = 0;
    loop {
        let redirected = redirects > 0;
        let refused = |refusal: Refusal| Failure::Refused { refusal, redirected };
        // A host that is an address is connected to without resolution, so it is checked here;
        // names are checked by the client's resolver as they resolve.
        policy.check_url(&outgoing.url).map_err(refused)?;
        let mut builder =
            client.request(outgoing.method.clone(), outgoing.url.clone()).headers(outgoing.headers.clone());
        if let Some(body) = &outgoing.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.map_err(|error| match outbound::refusal_in(&error) {
            Some(refusal) => refused(refusal.clone()),
            None => Failure::Client(error),
        })?;
        // The resolver made sure of it; this is a second look at where the answer came from.
        if let Some(remote) = response.remote_addr() {
            policy.check_connected(&outgoing.url, remote.ip()).map_err(refused)?;
        }
        if !policy.follows_redirects() {
            return Ok(response);
        }
        let Some(next) = redirect_target(&response) else { return Ok(response) };
        if redirects == MAX_REDIRECTS {
            return Err(Failure::Redirects);
        }
        redirects += 1;
        outgoing = outgoing.redirected(response.status(), next);
    }
}

/// Where a redirect points, when it is one that is followed and points to an http or https URL.
fn redirect_target(response: &Response) -> Option<Url> {
    let redirect = [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ];
    if !redirect.contains(&response.status()) {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    let next = response.url().join(location).ok()?;
    matches!(next.scheme(), "http" | "https").then_some(next)
}

impl Outgoing {
    /// The request that follows a redirect to `next`. A 303, and a 301 or 302 after a POST, becomes
    /// a GET without a body, as clients do. A hop to another origin (other than the same host moving
    /// up from http to https) carries no credentials: no secret header, no header whose name says it
    /// holds one, no user and password from the URL.
    fn redirected(mut self, status: StatusCode, mut next: Url) -> Outgoing {
        let same_host = next.host_str() == self.url.host_str();
        let upgraded = self.url.scheme() == "http"
            && next.scheme() == "https"
            && self.url.port().is_none()
            && next.port().is_none();
        if !(same_host && (next.origin() == self.url.origin() || upgraded)) {
            let mut kept = HeaderMap::new();
            for (name, value) in &self.headers {
                let credential = value.is_sensitive()
                    || [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION].contains(name)
                    || is_sensitive(name.as_str());
                if !credential {
                    kept.append(name.clone(), value.clone());
                }
            }
            self.headers = kept;
            let _ = next.set_username("");
            let _ = next.set_password(None);
        }
        let to_get = status == StatusCode::SEE_OTHER && self.method != Method::HEAD
            || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND) && self.method == Method::POST;
        if to_get {
            self.method = Method::GET;
            self.body = None;
            self.headers.remove(CONTENT_TYPE);
            self.headers.remove(CONTENT_LENGTH);
        }
        self.url = next;
        self
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
pub(super) fn shown(url: &Url) -> String {
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
pub(super) async fn read_capped(
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
pub(super) fn request_error(target: &str, error: reqwest::Error) -> Error {
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
    fn a_redirect_to_another_origin_carries_no_credentials() {
        let mut headers = HeaderMap::new();
        let mut secret = HeaderValue::from_static("s3cr3t");
        secret.set_sensitive(true);
        headers.insert("x-edr-key", secret);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer literal"));
        headers.insert("x-api-token", HeaderValue::from_static("literal-token"));
        headers.insert("x-team", HeaderValue::from_static("soc"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let outgoing = || Outgoing {
            method: Method::POST,
            url: Url::parse("http://user:pw@api.example/holds").unwrap(),
            headers: headers.clone(),
            body: Some(b"{}".to_vec()),
        };
        let names = |outgoing: &Outgoing| {
            let mut names: Vec<&str> = outgoing.headers.keys().map(HeaderName::as_str).collect();
            names.sort();
            names.join(" ")
        };
        let table = [
            // (status, next, method after, body kept, headers kept, user kept)
            (
                307,
                "http://api.example/v2/holds",
                "POST",
                true,
                "authorization content-type x-api-token x-edr-key x-team",
                true,
            ),
            (
                308,
                "https://api.example/holds",
                "POST",
                true,
                "authorization content-type x-api-token x-edr-key x-team",
                false,
            ),
            (307, "http://api.example:8080/holds", "POST", true, "content-type x-team", false),
            (307, "http://elsewhere.example/holds", "POST", true, "content-type x-team", false),
            (302, "http://api.example/done", "GET", false, "authorization x-api-token x-edr-key x-team", true),
            (303, "https://elsewhere.example/done", "GET", false, "x-team", false),
        ];
        for (status, next, method, body, kept, user) in table {
            let next = if next.starts_with("http://api.example/") {
                // A relative `Location` keeps the URL's user, as joining does.
                outgoing().url.join(next.trim_start_matches("http://api.example")).unwrap()
            } else {
                Url::parse(next).unwrap()
            };
            let redirected = outgoing().redirected(StatusCode::from_u16(status).unwrap(), next.clone());
            assert_eq!(redirected.method.as_str(), method, "{status} {next}");
            assert_eq!(redirected.body.is_some(), body, "{status} {next}");
            assert_eq!(names(&redirected), kept, "{status} {next}");
            assert_eq!(redirected.url.username() == "user", user, "{status} {next}");
        }
    }

    #[test]
    fn methods_are_read_in_any_case() {
        assert_eq!(method("post").unwrap(), Method::POST);
        assert!(method("NOT A METHOD").is_err());
    }
}
