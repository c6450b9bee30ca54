//! Lambda durable executions in the native API (`stoke durable …`): a function's executions, one execution,
//! its history, stopping it, answering its callbacks. The Lambda API's `2025-12-01` routes do the same for
//! SigV4 clients; both call `crate::durable`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiQuery, Body};
use super::AppState;
use crate::accounts::Caller;
use crate::durable::ListFilter;
use stoke_store::DurableRecord;

/// A durable execution's states.
const STATUSES: [&str; 5] = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"];

/// A durable execution and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DurableExecutionView {
    /// Its id (the last part of its ARN).
    pub id: String,
    pub arn: String,
    /// Unique per function.
    pub name: String,
    pub function: String,
    /// The version it runs: `$LATEST` or a number.
    pub version: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or STOPPED.
    pub status: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Once it has ended: when it is deleted (its function's retention, in days, after its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Its input (as the invocation gave it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Its result, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Its error (`ErrorType`, `ErrorMessage`, …), once it failed, timed out or was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl DurableExecutionView {
    /// A record as listed: where it stands, without its input, result or error.
    fn from_record(r: &DurableRecord) -> Self {
        DurableExecutionView {
            id: r.id.clone(),
            arn: r.arn.clone(),
            name: r.name.clone(),
            function: r.function.to_string(),
            version: r.version.clone(),
            status: r.status.clone(),
            started_at: stoke_core::time::format_rfc3339(r.started_ms),
            ended_at: r.ended_ms.map(stoke_core::time::format_rfc3339),
            expires_at: r.expires_ms.map(stoke_core::time::format_rfc3339),
            input: None,
            result: None,
            error: None,
        }
    }

    /// A record with its input and what it came to.
    async fn detailed(s: &AppState, r: &DurableRecord) -> ApiResult<Self> {
        let (result, error) = s.durable.outcome(r);
        Ok(DurableExecutionView {
            input: s.durable.input(r).await?,
            result,
            error: error.map(|e| serde_json::to_value(e).unwrap_or_default()),
            ..Self::from_record(r)
        })
    }
}

/// A page of a function's durable executions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DurableExecutionList {
    pub executions: Vec<DurableExecutionView>,
    pub next_cursor: Option<String>,
}

/// An execution's history: Lambda's events (`EventType`, `EventId`, `<EventType>Details`, …), oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DurableHistory {
    pub events: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DurableListQuery {
    /// Only executions in this state: RUNNING, SUCCEEDED, FAILED, TIMED_OUT or STOPPED.
    #[param(pattern = r"^(RUNNING|SUCCEEDED|FAILED|TIMED_OUT|STOPPED)$")]
    status: Option<String>,
    /// Items per page, 1-1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 64)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DurableHistoryQuery {
    /// Items per page, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 32, pattern = r"^[0-9]+$")]
    cursor: Option<String>,
}

/// `{id}` of a durable execution.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DurableExecutionPath {
    /// Its id.
    #[param(max_length = 64)]
    pub id: String,
}

/// `{callback}` of a durable execution's callback.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DurableCallbackPath {
    /// The callback's id, as `CallbackStarted` gave it.
    #[param(max_length = 1024)]
    pub callback: String,
}

/// Why an execution is stopped (both optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DurableStop {
    #[schema(max_length = 256)]
    pub error_type: Option<String>,
    #[schema(max_length = 4096)]
    pub message: Option<String>,
}

/// A callback's answer: its result (as text), its error, or a heartbeat.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackAnswer {
    /// Succeeds the callback with this result.
    Result {
        #[schema(max_length = 1048576)]
        result: String,
    },
    /// Fails the callback with this error.
    Error { error: DurableStop },
    /// Keeps a callback with a heartbeat timeout alive (`true`).
    Heartbeat { heartbeat: bool },
}

/// A page size: `default` when not given, else 1-1000.
fn page_size(limit: Option<usize>, default: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request("invalid_parameter", format!("limit {n} is not valid: give 1-1000"))
            .with_field("limit")),
    }
}

fn error_object(r: &DurableStop) -> stoke_core::durable::ErrorObject {
    stoke_core::durable::ErrorObject {
        error_type: r.error_type.clone(),
        error_message: r.message.clone(),
        ..Default::default()
    }
}

/// A function's durable executions, oldest first.
#[utoipa::path(get, path = "/v1/functions/{function}/durable-executions", tag = "durable",
    params(super::views::FunctionPath, DurableListQuery),
    responses((status = 200, body = DurableExecutionList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiQuery(q): ApiQuery<DurableListQuery>,
) -> ApiResult<Json<DurableExecutionList>> {
    if let Some(status) = q.status.as_deref().filter(|st| !STATUSES.contains(st)) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("status {status:?} is not one of {}", STATUSES.join(", ")),
        )
        .with_field("status"));
    }
    if q.cursor.as_ref().is_some_and(|c| c.chars().count() > 64) {
        return Err(ApiError::bad_request("invalid_parameter", "cursor is not one this API gave: use next_cursor")
            .with_field("cursor"));
    }
    let account = caller.account.id.clone();
    let (registry, a) = (s.registry.clone(), account.clone());
    let function = super::blocking(move || {
        let name = registry.parse_function_name(&a, &function)?;
        registry.get_function(&a, &name)?;
        Ok(name)
    })
    .await?;
    let filter = ListFilter { statuses: q.status.into_iter().collect(), ..Default::default() };
    let limit = page_size(q.limit, 50)?;
    let (page, next_cursor) = s.durable.list_records(&account, &function, &filter, q.cursor.as_deref(), limit).await?;
    let executions = page.iter().map(DurableExecutionView::from_record).collect();
    Ok(Json(DurableExecutionList { executions, next_cursor }))
}

/// One durable execution: its state, input, result or error.
#[utoipa::path(get, path = "/v1/durable-executions/{id}", tag = "durable", params(DurableExecutionPath),
    responses((status = 200, body = DurableExecutionView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DurableExecutionView>> {
    let record = s.durable.record_by_id(&caller.account.id, &id).await?;
    Ok(Json(DurableExecutionView::detailed(&s, &record).await?))
}

/// A durable execution's history, oldest first.
#[utoipa::path(get, path = "/v1/durable-executions/{id}/history", tag = "durable",
    params(DurableExecutionPath, DurableHistoryQuery),
    responses((status = 200, body = DurableHistory), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DurableHistoryQuery>,
) -> ApiResult<Json<DurableHistory>> {
    let record = s.durable.record_by_id(&caller.account.id, &id).await?;
    let after = q
        .cursor
        .map(|c| match c.parse::<u64>() {
            Ok(n) => Ok(n),
            // Digits past any event id: after the last event, nothing.
            Err(_) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) => Ok(u64::MAX),
            Err(_) => {
                Err(ApiError::bad_request("invalid_parameter", "cursor is not one this API gave: use next_cursor")
                    .with_field("cursor"))
            }
        })
        .transpose()?;
    let limit = page_size(q.limit, 100)?;
    let page = s.durable.history(&caller.account.id, &record.arn, after, limit, false, true).await?;
    let events = page["Events"].as_array().cloned().unwrap_or_default();
    Ok(Json(DurableHistory { events, next_cursor: page["NextMarker"].as_str().map(str::to_string) }))
}

/// Where a durable execution's time went, in a workflow timeline's shape: a row per invocation of its
/// function (queued, sandbox, init, running; cold starts) and per operation (steps running, waits and
/// callbacks waiting), milliseconds since its start, and the bill.
#[utoipa::path(get, path = "/v1/durable-executions/{id}/timeline", tag = "durable", params(DurableExecutionPath),
    responses((status = 200, body = crate::workflows::timeline::Timeline), (status = 404, body = ErrorBody)))]
pub async fn timeline(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::workflows::timeline::Timeline>> {
    let record = s.durable.record_by_id(&caller.account.id, &id).await?;
    Ok(Json(s.durable.timeline(&record).await?))
}

/// Stops a running durable execution (STOPPED, with the error given); one that has ended is a 409.
#[utoipa::path(post, path = "/v1/durable-executions/{id}/stop", tag = "durable", params(DurableExecutionPath),
    request_body(content = DurableStop, description = "why (optional)"),
    responses((status = 200, body = DurableExecutionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<DurableExecutionView>> {
    let why: DurableStop = if body.is_empty() {
        DurableStop::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?
    };
    let record = s.durable.record_by_id(&caller.account.id, &id).await?;
    let error = (why.error_type.is_some() || why.message.is_some()).then(|| error_object(&why));
    s.durable.stop(&caller.account.id, &record.arn, error).await.map_err(|e| match e {
        crate::durable::DurableFailure::Engine(stoke_core::durable::DurableError::Invalid(m)) => {
            ApiError::new(StatusCode::CONFLICT, "execution_not_running", m)
        }
        other => other.into(),
    })?;
    let stopped = s.durable.record_by_id(&caller.account.id, &id).await?;
    Ok(Json(DurableExecutionView::detailed(&s, &stopped).await?))
}

/// Answers a durable execution's callback: its result, its error, or a heartbeat.
#[utoipa::path(post, path = "/v1/durable-callbacks/{callback}", tag = "durable", params(DurableCallbackPath),
    request_body = CallbackAnswer,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn answer(
    State(s): State<AppState>,
    caller: Caller,
    Path(callback): Path<String>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let a: CallbackAnswer = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            "invalid_json",
            "the answer is one of {\"result\": \"…\"}, {\"error\": {\"error_type\": …, \"message\": …}} or \
             {\"heartbeat\": true}",
        )
    })?;
    let answer = match a {
        CallbackAnswer::Result { result } => Some(Ok(result)),
        CallbackAnswer::Error { error } => Some(Err(error_object(&error))),
        CallbackAnswer::Heartbeat { .. } => None,
    };
    s.durable.answer_callback(&caller.account.id, &callback, answer).await?;
    Ok(StatusCode::NO_CONTENT)
}
