//! The incident commander's dashboard: HTML pages rendered on the server (tera, `render::web`),
//! plain forms that work without JavaScript, and server-sent events that tell a page when its
//! incident changed. People sign in with their API token, exchanged for a session
//! (`session.rs`); every POST carries the session's CSRF token; every action is decided by the
//! engine as the signed-in person through the runtime, as the API's and the CLI's are.
//! `docs/dashboard.md` lists the URLs and form fields.

pub mod campaign;
pub mod graph;
pub mod incident;
pub mod list;
pub mod live;
pub mod other;
pub mod session;
pub mod start;
pub mod timeline;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use super::App;
use crate::engine::decide::{Error as Refusal, decide};
use crate::engine::{Command, Directory, Incident};
use crate::runbook::Runbook;
use crate::store::Store;
use session::{COOKIE, Flash, SIGNIN_COOKIE, Signed};

/// The dashboard's Content-Security-Policy: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The stylesheet and script, built into the binary.
pub const CSS: &str = include_str!("app.css");
pub const JS: &str = include_str!("app.js");

/// The header the page's script sends when it fetches the page again for a live update.
pub const LIVE_HEADER: &str = "x-phasegate-live";

/// Every dashboard route: method and path (`docs/dashboard.md` describes each).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("POST", "/signout"),
    ("GET", "/assets/app.css"),
    ("GET", "/assets/app.js"),
    ("GET", "/incidents"),
    ("GET", "/incidents/new"),
    ("POST", "/incidents/new"),
    ("GET", "/incidents/{id}"),
    ("GET", "/incidents/{id}/events"),
    ("GET", "/incidents/{id}/updates/{audience}"),
    ("POST", "/incidents/{id}/updates/{audience}"),
    ("POST", "/incidents/{id}/approve"),
    ("POST", "/incidents/{id}/signal"),
    ("POST", "/incidents/{id}/note"),
    ("POST", "/incidents/{id}/close"),
    ("POST", "/incidents/{id}/steps/{phase}/{step}/done"),
    ("POST", "/incidents/{id}/steps/{phase}/{step}/retry"),
    ("POST", "/incidents/{id}/steps/{phase}/{step}/skip"),
    ("POST", "/incidents/{id}/campaigns/{phase}/{step}/{action}"),
    ("GET", "/incidents/{id}/audit"),
    ("GET", "/incidents/{id}/export.jsonl"),
    ("GET", "/incidents/{id}/report.html"),
    ("GET", "/runbooks"),
    ("GET", "/runbooks/{id}"),
    ("POST", "/runbooks/validate"),
    ("GET", "/audit"),
];

pub fn router<S: Store>(app: Arc<App<S>>) -> Router<Arc<App<S>>> {
    Router::new()
        .route("/", get(home::<S>))
        .route("/signin", get(signin_form::<S>).post(signin::<S>))
        .route("/signout", post(signout::<S>))
        .route("/assets/app.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .route("/incidents", get(list::list::<S>))
        .route("/incidents/new", get(start::form::<S>).post(start::start::<S>))
        .route("/incidents/{id}", get(incident::page::<S>))
        .route("/incidents/{id}/events", get(live::events::<S>))
        .route("/incidents/{id}/updates/{audience}", get(incident::preview::<S>).post(incident::send_update::<S>))
        .route("/incidents/{id}/approve", post(incident::approve::<S>))
        .route("/incidents/{id}/signal", post(incident::signal::<S>))
        .route("/incidents/{id}/note", post(incident::note::<S>))
        .route("/incidents/{id}/close", post(incident::close::<S>))
        .route("/incidents/{id}/steps/{phase}/{step}/done", post(incident::done::<S>))
        .route("/incidents/{id}/steps/{phase}/{step}/retry", post(incident::retry::<S>))
        .route("/incidents/{id}/steps/{phase}/{step}/skip", post(incident::skip::<S>))
        .route("/incidents/{id}/gates/{phase}/{gate}/retry", post(incident::retry_gate::<S>))
        .route("/incidents/{id}/gates/{phase}/{gate}/pass", post(incident::pass_gate::<S>))
        .route("/incidents/{id}/campaigns/{phase}/{step}/{action}", post(campaign::campaign::<S>))
        .route("/incidents/{id}/audit", get(other::incident_audit::<S>))
        .route("/incidents/{id}/export.jsonl", get(other::export::<S>))
        .route("/incidents/{id}/report.html", get(other::report::<S>))
        .route("/runbooks", get(other::runbooks::<S>))
        .route("/runbooks/{id}", get(other::runbook::<S>))
        .route("/runbooks/validate", post(other::validate::<S>))
        .route("/audit", get(other::audit::<S>))
        .layer(middleware::from_fn_with_state(app, headers::<S>))
}

/// The headers every dashboard answer carries: the CSP, no sniffing, no referrer, no framing, and
/// no caching of pages (which hold a person's view and a CSRF token). A response that set its own
/// CSP (the sandboxed report) keeps it.
async fn headers<S: Store>(State(_): State<Arc<App<S>>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    protect(&mut response);
    response
}

/// Adds the dashboard's headers to `response` (see [`headers`]).
fn protect(response: &mut Response) {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// What the server answers for a path it does not serve: under the API's prefixes (`/api/`,
/// `/hooks/`) the API's JSON error, elsewhere the dashboard's 404 page (with the person's
/// navigation when a session is open).
pub async fn unknown<S: Store>(State(app): State<Arc<App<S>>>, request: Request) -> Response {
    let path = request.uri().path();
    let api = ["/api", "/hooks"]
        .iter()
        .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    if api {
        return super::error::ApiError::not_found("no such route; `/openapi.json` lists them").into_response();
    }
    let signed = session::cookie(request.headers(), COOKIE).and_then(|id| app.sessions.find(id));
    let why = "the dashboard has no such page; the incidents, the runbooks and the audit are linked above";
    let mut response = app.not_found(signed.as_ref(), why);
    protect(&mut response);
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// What a page handler answers: the page, or an error page (or a redirect) already rendered.
pub type Page = Result<Response, Answered>;

/// An error page or a redirect answered instead of a page (boxed: a response is large).
pub struct Answered(Box<Response>);

impl From<Response> for Answered {
    fn from(response: Response) -> Answered {
        Answered(Box::new(response))
    }
}

impl IntoResponse for Answered {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl<S: Store> App<S> {
    /// Renders page `name` with the layout's variables (who is signed in, the CSRF token, the
    /// flash message, which section is current) and `page`'s.
    pub fn page(&self, name: &str, signed: Option<&Signed>, nav: &str, title: &str, page: Value) -> Page {
        let flash = signed.filter(|signed| !signed.live).and_then(|signed| self.sessions.take_flash(signed));
        let who = signed.map(|s| (s.person.as_str(), s.csrf.as_str()));
        match render(&self.pages, name, who, flash.as_ref(), nav, title, page) {
            Ok(html) => Ok(html_response(StatusCode::OK, html)),
            Err(error) => {
                tracing::error!(%error, "a dashboard page failed to render");
                let why = "the server could not render this page; its log says why";
                Err(self.error_page(StatusCode::INTERNAL_SERVER_ERROR, signed, "The page failed", why).into())
            }
        }
    }

    /// An error page: a status, a heading, and why.
    pub fn error_page(&self, status: StatusCode, signed: Option<&Signed>, heading: &str, why: &str) -> Response {
        let context = Layout {
            title: heading,
            nav: "",
            person: signed.map(|s| s.person.as_str()),
            csrf: signed.map(|s| s.csrf.as_str()),
            flash: None,
            page: json!({ "status": status.as_u16(), "heading": heading, "why": why }),
        };
        match self.pages.render("web/error.html", &context) {
            Ok(html) => html_response(status, html),
            Err(error) => {
                tracing::error!(%error, "the dashboard's error page failed to render");
                (status, format!("{heading}: {why}\n")).into_response()
            }
        }
    }

    /// The 404 page, saying why.
    pub fn not_found(&self, signed: Option<&Signed>, why: &str) -> Response {
        self.error_page(StatusCode::NOT_FOUND, signed, "Not found", why)
    }

    /// The error page for what the runtime answered (a refusal, an unknown incident, a failure).
    pub fn runtime_error(&self, signed: &Signed, error: crate::runtime::Error) -> Response {
        let api = super::error::ApiError::from(error);
        self.error_page(api.status, Some(signed), &heading(api.status), &api.message)
    }
}

fn heading(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "Not found".into(),
        StatusCode::FORBIDDEN => "Refused".into(),
        StatusCode::INTERNAL_SERVER_ERROR => "The server failed".into(),
        other => other.canonical_reason().unwrap_or("Error").into(),
    }
}

/// Renders page `name` in the layout: `who` is the signed-in person and the session's CSRF
/// token, `nav` the current section.
pub fn render(
    pages: &crate::render::web::Pages,
    name: &str,
    who: Option<(&str, &str)>,
    flash: Option<&Flash>,
    nav: &str,
    title: &str,
    page: Value,
) -> Result<String, crate::render::Error> {
    let context = Layout { title, nav, person: who.map(|w| w.0), csrf: who.map(|w| w.1), flash, page };
    pages.render(name, &context)
}

#[derive(Serialize)]
struct Layout<'a> {
    title: &'a str,
    nav: &'a str,
    person: Option<&'a str>,
    csrf: Option<&'a str>,
    flash: Option<&'a Flash>,
    page: Value,
}

pub fn html_response(status: StatusCode, html: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// The signed-in person of a request, from the session cookie; without a live session, a
/// redirect to the sign-in page that comes back here.
impl<S: Store> FromRequestParts<Arc<App<S>>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App<S>>) -> Result<Signed, Response> {
        if let Some(mut signed) = session::cookie(&parts.headers, COOKIE).and_then(|id| app.sessions.find(id)) {
            signed.live = parts.headers.contains_key(LIVE_HEADER);
            return Ok(signed);
        }
        let back = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let next = if parts.method == axum::http::Method::GET && local(back) { back } else { "/incidents" };
        let query: String = url_encode(next);
        Err(Redirect::to(&format!("/signin?next={query}")).into_response())
    }
}

/// A posted form, once its CSRF token was found to be the session's: every dashboard POST but
/// the sign-in's takes one, so none can skip the check.
pub struct Posted {
    pub signed: Signed,
    pub fields: Fields,
}

/// A form's fields, as posted (`application/x-www-form-urlencoded`).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(given, _)| given == name).map(|(_, value)| value.as_str())
    }

    /// The field's text, trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::trim).filter(|text| !text.is_empty()).map(str::to_string)
    }

    /// Every field whose name starts with `prefix`, without it, in order.
    pub fn prefixed<'f>(&'f self, prefix: &'f str) -> impl Iterator<Item = (&'f str, &'f str)> + 'f {
        self.0.iter().filter_map(move |(name, value)| name.strip_prefix(prefix).map(|rest| (rest, value.as_str())))
    }
}

impl<S: Store> FromRequest<Arc<App<S>>> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, app: &Arc<App<S>>) -> Result<Posted, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, app).await?;
        let request = Request::from_parts(parts, body);
        let fields = match axum::Form::<Vec<(String, String)>>::from_request(request, app).await {
            Ok(axum::Form(fields)) => Fields(fields),
            Err(rejection) => {
                let why = format!("the form could not be read: {}", rejection.body_text());
                return Err(app.error_page(rejection.status(), Some(&signed), "Bad form", &why));
            }
        };
        if !session::csrf_matches(&signed, fields.get("csrf")) {
            let why = if fields.get("csrf").is_none() {
                "the form came without its CSRF token, so it may not have come from this dashboard; nothing was done. \
                 Reload the page and try again."
            } else {
                "the form's CSRF token is not this session's (an old page, or another site's form); nothing was done. \
                 Reload the page and try again."
            };
            return Err(app.error_page(StatusCode::FORBIDDEN, Some(&signed), "Refused: CSRF check failed", why));
        }
        Ok(Posted { signed, fields })
    }
}

/// Whether `path` is a path on this server (not `//host` or `/\host`, which browsers read as
/// another site).
pub fn local(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\") && !path.contains(['\r', '\n'])
}

/// `text` percent-encoded for a query's value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether the request reached the server over TLS, as a proxy in front of it says.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

async fn home<S: Store>(State(app): State<Arc<App<S>>>, headers: HeaderMap) -> Response {
    let signed = session::cookie(&headers, COOKIE).and_then(|id| app.sessions.find(id));
    Redirect::to(if signed.is_some() { "/incidents" } else { "/signin" }).into_response()
}

#[derive(serde::Deserialize)]
struct SigninQuery {
    #[serde(default)]
    next: Option<String>,
}

async fn signin_form<S: Store>(
    State(app): State<Arc<App<S>>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SigninQuery>,
) -> Response {
    signin_page(&app, &headers, query.next.as_deref(), StatusCode::OK, None)
}

/// The sign-in form, with a fresh sign-in token in its cookie and its hidden field.
fn signin_page<S: Store>(
    app: &App<S>,
    headers: &HeaderMap,
    next: Option<&str>,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let token = session::random();
    let next = next.filter(|next| local(next)).unwrap_or("/incidents");
    let page = json!({ "signin": token, "next": next, "problem": problem });
    let context = Layout { title: "Sign in", nav: "signin", person: None, csrf: None, flash: None, page };
    let html = match app.pages.render("web/signin.html", &context) {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(%error, "the sign-in page failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "the sign-in page failed; the server's log says why\n")
                .into_response();
        }
    };
    let secure = app.sessions.settings().secure || over_tls(headers);
    let cookie = session::set_cookie(SIGNIN_COOKIE, &token, "/signin", 3600, secure);
    let mut response = html_response(status, html);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Exchanges an API token for a session: the form's sign-in token must be its cookie's, and the
/// API token one the configuration holds.
async fn signin<S: Store>(
    State(app): State<Arc<App<S>>>,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(fields);
    let next = fields.get("next").filter(|next| local(next)).unwrap_or("/incidents").to_string();
    let presented = session::cookie(&headers, SIGNIN_COOKIE);
    let form_token = fields.get("signin");
    let matches = matches!((presented, form_token), (Some(a), Some(b)) if session::same(a, b));
    if !matches {
        let why = "the sign-in form's token is missing or is not this browser's (an old page, another site's form, or \
                   cookies are off); try again";
        return signin_page(&app, &headers, Some(&next), StatusCode::FORBIDDEN, Some(why));
    }
    let token = fields.get("token").map(str::trim).unwrap_or_default();
    let Some(found) = super::auth::find(&app.config.server.tokens, token) else {
        let why = if token.is_empty() { "enter your API token" } else { "that API token is not valid" };
        return signin_page(&app, &headers, Some(&next), StatusCode::UNAUTHORIZED, Some(why));
    };
    let (id, _) = app.sessions.open(&found.person);
    tracing::info!(person = found.person, "signed in to the dashboard");
    let settings = app.sessions.settings();
    let secure = settings.secure || over_tls(&headers);
    let cookie = session::set_cookie(COOKIE, &id, "/", settings.absolute.as_secs(), secure);
    let clear = session::set_cookie(SIGNIN_COOKIE, "", "/signin", 0, secure);
    let mut response = Redirect::to(&next).into_response();
    for value in [cookie, clear] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn signout<S: Store>(State(app): State<Arc<App<S>>>, headers: HeaderMap, posted: Posted) -> Response {
    app.sessions.close(&posted.signed);
    let secure = app.sessions.settings().secure || over_tls(&headers);
    let mut response = Redirect::to("/signin").into_response();
    if let Ok(value) = HeaderValue::from_str(&session::set_cookie(COOKIE, "", "/", 0, secure)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether the engine would take `command` from `person` now, as far as rights go (or, for a
/// step the engine is bound to skip, at all): it is decided on the current state and nothing is
/// stored. Refusals for other reasons (a reason missing, the phase not finished) still offer the
/// form, whose answer then says why.
pub fn offered(runbook: &Runbook, directory: &Directory, incident: &Incident, person: &str, command: Command) -> bool {
    if incident.closed.is_some() {
        return false;
    }
    let request = crate::engine::Request { actor: person.to_string(), at: incident.updated_at, command };
    !matches!(
        decide(runbook, directory, Some(incident), &request),
        Err(Refusal::MissingRole { .. }
            | Refusal::NobodyMay { .. }
            | Refusal::UnknownActor(_)
            | Refusal::FourEyes { .. }
            | Refusal::AlreadyApproved { .. }
            | Refusal::Closed(_)
            | Refusal::WillBeSkipped { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_server_are_followed_after_sign_in() {
        for good in ["/", "/incidents", "/incidents/inc-1?page=2"] {
            assert!(local(good), "{good}");
        }
        for bad in ["", "//evil.example", "/\\evil.example", "https://evil.example", "javascript:alert(1)", "/a\r\nb"] {
            assert!(!local(bad), "{bad}");
        }
        assert_eq!(url_encode("/incidents/a b?x=1&y"), "/incidents/a%20b%3Fx%3D1%26y");
    }

    #[test]
    fn the_policy_allows_nothing_inline_and_nothing_from_elsewhere() {
        assert!(!CSP.contains("unsafe"), "{CSP}");
        for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
            assert!(CSP.contains(directive), "{directive}");
        }
        assert!(!JS.contains("eval(") && !JS.contains("innerHTML ="), "the script builds no code or markup from text");
    }
}
