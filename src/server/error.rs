//! Errors as the API answers them: a status, a stable code and a message safe to show, as JSON
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine;
use crate::runbook::registry;
use crate::runtime;
use crate::store;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A body past what the server reads (`server.max_body`), or past what its reader takes.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// A body that could not be read: `too_large` past `server.max_body`, else `bad_request`
    /// (the client went away, say).
    pub fn unread_body(rejection: &axum::extract::rejection::BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("the body is larger than the server reads (`server.max_body`)")
        } else {
            ApiError::new(rejection.status(), "bad_request", rejection.body_text())
        }
    }

    /// Something failed on our side: the details go to the log, not to the caller.
    pub fn internal(error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed; its log says why")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<runtime::Error> for ApiError {
    fn from(error: runtime::Error) -> ApiError {
        let message = error.to_string();
        match error {
            runtime::Error::Refused(refused) => refusal(&refused, message),
            runtime::Error::Store(store::Error::NotFound { .. }) => ApiError::not_found(message),
            runtime::Error::InvalidRunbook(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_runbook", message)
            }
            runtime::Error::BadRequest(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            }
            runtime::Error::Contended { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contended", message),
            other => ApiError::internal(&other),
        }
    }
}

/// The registry's refusals, naming files by their name only: where the server keeps its runbooks
/// is not the caller's business.
impl From<registry::Error> for ApiError {
    fn from(error: registry::Error) -> ApiError {
        let name = |path: &std::path::Path| path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let invalid = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_runbook", message);
        match error {
            registry::Error::Unknown { id, suggestion, .. } => ApiError::not_found(format!(
                "no runbook `{id}` among the configured runbooks{}",
                suggestion.map(|meant| format!("; did you mean `{meant}`?")).unwrap_or_default()
            )),
            registry::Error::Invalid { id, path, problems } => invalid(format!(
                "runbook `{id}` does not validate ({problems} problem(s) in `{}`; `GET /api/v1/runbooks` lists them)",
                name(&path)
            )),
            registry::Error::Duplicate { id, paths } => {
                let files: Vec<String> = paths.iter().map(|path| format!("`{}`", name(path))).collect();
                invalid(format!(
                    "runbook id `{id}` is used by several files ({}); ids must be unique",
                    files.join(", ")
                ))
            }
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> ApiError {
        ApiError::from(runtime::Error::Store(error))
    }
}

/// What the engine refused, as a status and a code: who may not (403), what does not exist (404),
/// what the request got wrong (422), what the incident's state does not allow now (409).
fn refusal(error: &engine::Error, message: String) -> ApiError {
    use engine::Error as E;
    let (status, code) = match error {
        E::MissingRole { .. } | E::NobodyMay { .. } => (StatusCode::FORBIDDEN, "missing_role"),
        E::FourEyes { .. } => (StatusCode::FORBIDDEN, "four_eyes"),
        E::UnknownActor(_) => (StatusCode::FORBIDDEN, "unknown_person"),
        E::UnknownPhase(_) | E::UnknownGate { .. } | E::UnknownStep { .. } | E::UnknownAudience { .. } => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        E::UnknownInput(_) | E::MissingInput { .. } | E::BadInput { .. } | E::UnknownOutput { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")
        }
        E::NotManual { .. } | E::NotCheckGate { .. } | E::WhichApproval { .. } | E::Unexplained { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
        }
        _ => (StatusCode::CONFLICT, "conflict"),
    };
    ApiError::new(status, code, message)
}

/// A JSON request body, refused as an [`ApiError`] (JSON, with a stable code) rather than axum's
/// plain-text rejection: `invalid_json` for a body that is not the JSON the route takes,
/// `too_large` past the configured `server.max_body`.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Body<T>, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "invalid_json" };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// A request's query parameters, refused as an [`ApiError`] rather than axum's plain-text
/// rejection. Each route names the parameters it takes ([`Params::only`]) and checks their values
/// itself, so every error names the parameter and what it may be: 400 `invalid_query`.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// The parameters, once every one is among `allowed` and none is given twice.
    pub fn only(self, allowed: &[&str]) -> Result<Params, ApiError> {
        let names = || allowed.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ");
        for (index, (name, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let name: String = name.chars().take(40).collect();
                let takes = if allowed.is_empty() { "no query parameters".to_string() } else { names() };
                return Err(Params::invalid(format!("unknown query parameter `{name}`: this route takes {takes}")));
            }
            if self.0[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(Params::invalid(format!("query parameter `{name}` is given twice")));
            }
        }
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(given, _)| given == name).map(|(_, value)| value.as_str())
    }

    /// A whole number from `min` to `max`, or `default` when the parameter is absent.
    pub fn number(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ApiError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        value.parse::<u64>().ok().filter(|number| (min..=max).contains(number)).ok_or_else(|| {
            let value: String = value.chars().take(40).collect();
            let range = if max == u64::MAX { format!("{min} or more") } else { format!("from {min} to {max}") };
            Params::invalid(format!("query parameter `{name}` must be a whole number {range}, not `{value}`"))
        })
    }

    /// One of `allowed`, or `default` when the parameter is absent.
    pub fn choice<'a>(&self, name: &str, allowed: &[&'a str], default: &'a str) -> Result<&'a str, ApiError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        allowed.iter().find(|choice| **choice == value).copied().ok_or_else(|| {
            let choices = allowed.iter().map(|choice| format!("`{choice}`")).collect::<Vec<_>>().join(", ");
            let value: String = value.chars().take(40).collect();
            Params::invalid(format!("query parameter `{name}` must be one of {choices}, not `{value}`"))
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Params, ApiError> {
        match axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(pairs)) => Ok(Params(pairs)),
            Err(rejection) => Err(Params::invalid(rejection.body_text())),
        }
    }
}
