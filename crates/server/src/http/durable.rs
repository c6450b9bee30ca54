//! Lambda's durable execution API (`2025-12-01`), as botocore's model has it: checkpoints and state for the
//! SDK inside a durable function (signed with the function's own key), and the reads, stop and callback
//! answers for everyone else (signed with the account's key). Handlers translate; `crate::durable` decides.
//!
//! botocore sends an execution's ARN percent-encoded as one path segment (`%2F`, `%24`): axum routes on the
//! raw path and decodes the captured segment, so `{arn}` is one segment, never a wildcard.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use stoke_core::durable::{ErrorObject, OperationUpdate};

use super::lambda::{LambdaError, LambdaResult, ScopedSigned, Signed};
use super::AppState;
use crate::durable::ListFilter;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/durable-executions/{arn}", get(describe))
        .route("/durable-executions/{arn}/checkpoint", post(checkpoint))
        .route("/durable-executions/{arn}/state", get(state_page))
        .route("/durable-executions/{arn}/history", get(history))
        .route("/durable-executions/{arn}/stop", post(stop))
        .route("/durable-execution-callbacks/{id}/succeed", post(callback_success))
        .route("/durable-execution-callbacks/{id}/fail", post(callback_failure))
        .route("/durable-execution-callbacks/{id}/heartbeat", post(callback_heartbeat))
        .route("/functions/{name}/durable-executions", get(list))
        .layer(axum::middleware::from_fn_with_state(state, super::lambda::other_regions_are_not_found))
}

/// The query string's parameters, each name with all its values in order (`Statuses` repeats).
fn params(uri: &axum::http::Uri) -> Vec<(String, String)> {
    let decode = |s: &str| stoke_core::percent::decode_str(&s.replace('+', " "));
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn param<'a>(all: &'a [(String, String)], name: &str) -> Option<&'a str> {
    all.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A boolean query parameter (`true` / `false`), `default` when absent.
fn flag(all: &[(String, String)], name: &str, default: bool) -> LambdaResult<bool> {
    match param(all, name) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(LambdaError::validation(format!("{name} must be true or false, not {other:?}"))),
    }
}

/// `MaxItems`: 0 or absent is the default of 100; at most 1000.
fn max_items(all: &[(String, String)]) -> LambdaResult<usize> {
    match param(all, "MaxItems") {
        None => Ok(100),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Ok(100),
            Ok(n) if n <= 1000 => Ok(n),
            _ => Err(LambdaError::validation(format!(
                "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have \
                 value less than or equal to 1000"
            ))),
        },
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckpointIn {
    checkpoint_token: Option<String>,
    client_token: Option<String>,
    #[serde(default)]
    updates: Vec<OperationUpdate>,
}

async fn checkpoint(
    State(s): State<AppState>,
    Path(arn): Path<String>,
    req: ScopedSigned,
) -> LambdaResult<Json<Value>> {
    let input: CheckpointIn = req.json()?;
    let token = input.checkpoint_token.ok_or_else(|| {
        LambdaError::validation("1 validation error detected: Value null at 'checkpointToken' failed to satisfy constraint: Member must not be null")
    })?;
    let answer = s
        .durable
        .checkpoint(&req.caller.account.id, &req.scope, &arn, &token, input.client_token.as_deref(), &input.updates)
        .await?;
    Ok(Json(answer))
}

async fn state_page(
    State(s): State<AppState>,
    Path(arn): Path<String>,
    uri: axum::http::Uri,
    req: ScopedSigned,
) -> LambdaResult<Json<Value>> {
    let q = params(&uri);
    let token = param(&q, "CheckpointToken").ok_or_else(|| {
        LambdaError::validation("1 validation error detected: Value null at 'checkpointToken' failed to satisfy constraint: Member must not be null")
    })?;
    let marker = match param(&q, "Marker") {
        None | Some("") => 0,
        Some(m) => m.parse().map_err(|_| LambdaError::invalid(format!("Marker {m:?} is not one this API gave")))?,
    };
    let page = s.durable.state(&req.caller.account.id, &req.scope, &arn, token, marker, max_items(&q)?).await?;
    Ok(Json(page))
}

async fn describe(
    State(s): State<AppState>,
    Path(arn): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let include = flag(&params(&uri), "IncludeExecutionData", true)?;
    Ok(Json(s.durable.describe(&req.caller.account.id, &arn, include).await?))
}

async fn history(
    State(s): State<AppState>,
    Path(arn): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let q = params(&uri);
    let marker = match param(&q, "Marker") {
        None | Some("") => None,
        Some(m) => Some(m.parse().map_err(|_| LambdaError::invalid(format!("Marker {m:?} is not one this API gave")))?),
    };
    let (include, reverse) = (flag(&q, "IncludeExecutionData", true)?, flag(&q, "ReverseOrder", false)?);
    let out = s.durable.history(&req.caller.account.id, &arn, marker, max_items(&q)?, reverse, include).await?;
    Ok(Json(out))
}

/// A body that is an `ErrorObject` itself (stop, a callback's failure), or nothing.
fn error_body(body: &Bytes) -> LambdaResult<Option<ErrorObject>> {
    if stoke_core::json::is_blank(body) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        LambdaError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("the body must be an error object ({{\"ErrorType\": …, \"ErrorMessage\": …}}): {e}"),
        )
    })
}

async fn stop(State(s): State<AppState>, Path(arn): Path<String>, req: Signed) -> LambdaResult<Json<Value>> {
    let error = error_body(&req.body)?;
    let at = s.durable.stop(&req.caller.account.id, &arn, error).await?;
    Ok(Json(json!({ "StopTimestamp": at as f64 / 1000.0 })))
}

/// Lambda's limit on a callback's result.
const MAX_CALLBACK_RESULT: usize = 1024 * 1024;

async fn callback_success(State(s): State<AppState>, Path(id): Path<String>, req: Signed) -> LambdaResult<Response> {
    if req.body.len() > MAX_CALLBACK_RESULT {
        return Err(LambdaError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!("a callback's result is at most {MAX_CALLBACK_RESULT} bytes; this one is {}", req.body.len()),
        ));
    }
    let result = String::from_utf8(req.body.to_vec())
        .map_err(|_| LambdaError::invalid("a callback's result must be UTF-8 text (usually JSON)"))?;
    s.durable.answer_callback(&req.caller.account.id, &id, Some(Ok(result))).await?;
    Ok(StatusCode::OK.into_response())
}

async fn callback_failure(State(s): State<AppState>, Path(id): Path<String>, req: Signed) -> LambdaResult<Response> {
    let error = error_body(&req.body)?.unwrap_or_default();
    s.durable.answer_callback(&req.caller.account.id, &id, Some(Err(error))).await?;
    Ok(StatusCode::OK.into_response())
}

async fn callback_heartbeat(State(s): State<AppState>, Path(id): Path<String>, req: Signed) -> LambdaResult<Response> {
    s.durable.answer_callback(&req.caller.account.id, &id, None).await?;
    Ok(StatusCode::OK.into_response())
}

async fn list(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let q = params(&uri);
    let time = |key: &str| -> LambdaResult<Option<i64>> {
        param(&q, key)
            .map(|t| {
                stoke_core::time::parse_rfc3339(t)
                    .and_then(|ns| i64::try_from(ns / 1_000_000).ok())
                    .ok_or_else(|| LambdaError::validation(format!("{key} {t:?} is not an ISO-8601 time")))
            })
            .transpose()
    };
    let filter = ListFilter {
        qualifier: param(&q, "Qualifier").map(str::to_string),
        name: param(&q, "DurableExecutionName").map(str::to_string),
        statuses: q.iter().filter(|(k, _)| k == "Statuses").map(|(_, v)| v.clone()).collect(),
        started_after_ms: time("StartedAfter")?,
        started_before_ms: time("StartedBefore")?,
        reverse: flag(&q, "ReverseOrder", false)?,
    };
    let account = req.caller.account.id.clone();
    let (registry, a) = (s.registry.clone(), account.clone());
    let function = super::blocking(move || {
        let function = registry.parse_function_name(&a, &name)?;
        registry.get_function(&a, &function)?;
        Ok(function)
    })
    .await
    .map_err(LambdaError::from)?;
    let max = max_items(&q)?;
    Ok(Json(s.durable.list(&account, &function, &filter, param(&q, "Marker"), max).await?))
}
