//! Errors as the API answers them: a status, a stable code and a message safe to show, as JSON
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine;
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
            runtime::Error::Contended { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contended", message),
            other => ApiError::internal(&other),
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
        E::NotManual { .. } | E::WhichApproval { .. } | E::Unexplained { .. } => {
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
