//! One error type for the HTTP API: a status, a machine-readable code, a sentence, and the field at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stoke_store::archive::ArchiveError;

use crate::accounts::AccountError;
use crate::registry::RegistryError;

/// The body of every error response: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `invalid_parameter`, `not_found`, `illegal_transition`.
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds to wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the server failed: {message}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message, field: self.field } };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        resp
    }
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::TooLarge { .. } | ArchiveError::UnpackedTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "archive_too_large", e.to_string()).with_field("code")
            }
            _ => Self::bad_request("invalid_archive", e.to_string()).with_field("code"),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Validation(v) => Self::bad_request("invalid_parameter", v.message).with_field(v.field),
            RegistryError::Reference(r) => Self::bad_request("invalid_reference", r.0),
            RegistryError::Archive(a) => a.into(),
            RegistryError::Image(stoke_store::ImageError::Io(io)) => Self::internal(io),
            RegistryError::Image(e @ stoke_store::ImageError::TooLarge { .. }) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", e.to_string())
            }
            RegistryError::Image(e) => Self::bad_request("invalid_image", e.to_string()),
            RegistryError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            RegistryError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            RegistryError::IllegalTransition(t) => Self::new(StatusCode::CONFLICT, "illegal_transition", t.to_string()),
            e @ RegistryError::CrossAccount { .. } => Self::new(StatusCode::FORBIDDEN, "cross_account", e.to_string()),
            RegistryError::ConcurrentModification(m) => Self::new(StatusCode::CONFLICT, "concurrent_modification", m),
            RegistryError::Store(s) => Self::internal(s),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Validation(v) => Self::bad_request("invalid_parameter", v.message).with_field(v.field),
            AccountError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            AccountError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            AccountError::Random(_) | AccountError::Store(_) => Self::internal(e),
        }
    }
}
