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
            BytesRejection::FailedToBufferBody(inner) if crate::transport::is_body_timeout(&inner) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time (the server's --body-timeout); send it faster or in smaller parts",
            ),
            other => ApiError::bad_request("invalid_body", format!("the request body could not be read: {other}")),
        })
    }
}

/// Parses a JSON body, which must be an object (every request body is); an empty body parses as `{}` so
/// optional bodies may be left out. An array is refused rather than read as the fields in order, which is
/// what serde would make of it.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Only no body at all is left out: white space alone is not a JSON document, and is refused as one.
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_json",
            format!("the request body must be a JSON object ({{...}}), not {}", json_kind(&value)),
        ));
    }
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| json_error("is not valid JSON for this request", e))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// JSON has one number type: `1.0` is the integer 1 to a JSON Schema validator, and so to every integer field
/// here. A number with a fraction stays as it is (and an integer field refuses it, naming the field).
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    /// Below 2^53 every whole f64 is exact.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < EXACT) {
                #[allow(clippy::cast_possible_truncation)] // whole and below 2^53: exact in an i64
                let whole = f as i64;
                *value = serde_json::Value::from(whole);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Converts an already-parsed JSON value, naming the field at fault when there is one.
pub fn from_value<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, ApiError> {
    whole_numbers_as_integers(&mut value);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Req {
        size: u32,
        #[serde(default)]
        weight: Option<f64>,
        #[serde(default)]
        list: Vec<u64>,
    }

    #[test]
    fn whole_numbers_fill_integer_fields_and_fractions_are_refused_naming_the_field() {
        let r: Req = parse_json(br#"{"size": 128.0, "weight": 1.0, "list": [1.0, 2]}"#).unwrap();
        assert_eq!(r, Req { size: 128, weight: Some(1.0), list: vec![1, 2] });
        let r: Req = parse_json(br#"{"size": 1e2, "weight": 0.25}"#).unwrap();
        assert_eq!((r.size, r.weight), (100, Some(0.25)));
        let e = parse_json::<Req>(br#"{"size": 1.5}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid_json", Some("size")), "{}", e.message);
        let e = parse_json::<Req>(br#"{"size": -1.0}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("size"), "{}", e.message);
        for not_an_object in [&b"[1.0, 2.0]"[..], b"[null, null]", b"null", b"7", b"\"x\""] {
            let e = parse_json::<Req>(not_an_object).unwrap_err();
            assert!(e.message.contains("must be a JSON object"), "{}", e.message);
        }
        for blank in [&b"\r"[..], b" ", b"\n\t"] {
            assert_eq!(parse_json::<Req>(blank).unwrap_err().code, "invalid_json", "{blank:?}");
        }
        let e = parse_json::<Req>(b"{not json").unwrap_err();
        assert_eq!((e.code, e.status.as_u16()), ("invalid_json", 400));
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse_json::<Req>(br#"{"size": 1, "extra": 2}"#).unwrap_err();
        assert!(e.message.contains("extra"), "{}", e.message);
    }
}
