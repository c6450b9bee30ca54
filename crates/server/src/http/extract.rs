//! Request extractors whose rejections are API errors (JSON, with a code), not axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::accounts::Caller;

/// The request body, buffered; a body over the server's limit is a 413.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state).await.map(Body).map_err(|e| match e {
            BytesRejection::FailedToBufferBody(inner) if inner.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    "the request body is larger than this server accepts (see --max-archive-mb)",
                )
            }
            other => ApiError::bad_request("invalid_body", format!("the request body could not be read: {other}")),
        })
    }
}

/// Parses a JSON body; an empty body parses as `{}` so optional bodies may be left out.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| json_error("is not valid JSON for this request", e))
}

/// Converts an already-parsed JSON value, naming the field at fault when there is one.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| json_error("is not valid for this request", e))
}

fn json_error(what: &str, e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    if path == "." || path.is_empty() {
        ApiError::bad_request("invalid_json", format!("the request body {what}: {}", e.inner()))
    } else {
        ApiError::bad_request("invalid_json", format!("the request body {what}: field {path}: {}", e.inner()))
            .with_field(path)
    }
}

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Body(bytes) = Body::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Query parameters of type `T`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state).await.map(|Query(q)| ApiQuery(q)).map_err(|e: QueryRejection| {
            ApiError::bad_request("invalid_query", format!("the query string is not valid: {}", e.body_text()))
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |code, message: String| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            // Nothing about the server (paths, accounts) to a caller who has not shown a key.
            return Err(unauthorized(
                "missing_credentials",
                "this request needs an API key: send 'Authorization: Bearer <api_key>' (the admin key is in \
                 credentials.json, in the server's data directory)"
                    .into(),
            ));
        };
        let value = value.to_str().unwrap_or_default();
        let Some(key) = value.strip_prefix("Bearer ").map(str::trim) else {
            return Err(unauthorized(
                "missing_credentials",
                "the /v1 API takes 'Authorization: Bearer <api_key>'; AWS-signed requests go to the Lambda-compatible routes".into(),
            ));
        };
        state.accounts.authenticate(key).ok_or_else(|| {
            unauthorized(
                "invalid_credentials",
                "the API key is not valid for this server; check STOKE_API_KEY or credentials.json".into(),
            )
        })
    }
}
