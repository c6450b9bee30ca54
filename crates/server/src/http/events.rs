//! The failed-event store: Event invocations that used up their retries stay here, in the caller's reach,
//! until they are redriven (queued again, retries counted afresh) or deleted.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoke_store::EventRecord;
use utoipa::ToSchema;

use super::error::{ApiResult, ErrorBody};
use super::extract::ApiQuery;
use super::{blocking, AppState};
use crate::accounts::Caller;

/// Page size when the request gives none.
const DEFAULT_PAGE: usize = 50;

/// An Event invocation and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Its request id (what the 202 named).
    pub id: String,
    /// The function reference it invokes, as the caller gave it.
    pub function: String,
    /// queued, running, succeeded or failed.
    pub state: String,
    /// Attempts made (the first run and its retries).
    pub attempts: u32,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The error type of the last attempt, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The event it was invoked with.
    pub payload: Value,
    /// The last attempt's output or error document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl EventView {
    pub fn from_record(e: &EventRecord) -> Self {
        // JSON where it is JSON (an event always is), else the text.
        let doc = |b: &[u8]| {
            serde_json::from_slice(b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
        };
        EventView {
            id: e.id.clone(),
            function: e.reference.clone(),
            state: e.state.as_str().to_string(),
            attempts: e.attempts,
            created_at: stoke_core::time::format_rfc3339(e.created_ms),
            finished_at: e.finished_ms.map(stoke_core::time::format_rfc3339),
            error_type: e.error_type.clone(),
            payload: doc(&e.payload),
            result: e.result.as_deref().map(doc),
        }
    }
}

/// A page of failed events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
    pub next_cursor: Option<String>,
}

/// How many events a bulk redrive or purge took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventCount {
    pub count: usize,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventListQuery {
    /// Items per page, 1-1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `{id}` of an Event invocation.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventPath {
    /// Its request id.
    #[param(max_length = 256)]
    pub id: String,
}

/// The caller's failed Event invocations (they used up their retries), oldest id first.
#[utoipa::path(get, path = "/v1/events/failed", tag = "events", params(EventListQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody)))]
pub async fn list_failed(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventListQuery>,
) -> ApiResult<Json<EventList>> {
    let registry = s.registry.clone();
    let (page, next) = blocking(move || {
        Ok(registry.failed_events(&caller.account.id, q.cursor.as_deref(), q.limit.unwrap_or(DEFAULT_PAGE))?)
    })
    .await?;
    Ok(Json(EventList { events: page.iter().map(EventView::from_record).collect(), next_cursor: next }))
}

/// One Event invocation of the caller's, in any state.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(EventPath),
    responses((status = 200, body = EventView), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<EventView>> {
    let registry = s.registry.clone();
    let e = blocking(move || Ok(registry.get_event(&caller.account.id, &id)?)).await?;
    Ok(Json(EventView::from_record(&e)))
}

/// Queues a failed Event invocation again, under the same request id, its retries counted afresh.
#[utoipa::path(post, path = "/v1/events/{id}/redrive", tag = "events", params(EventPath),
    responses((status = 200, body = EventView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn redrive(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<EventView>> {
    let registry = s.registry.clone();
    let account = caller.account.id.clone();
    let e = blocking(move || Ok(registry.redrive_event(&account, &id)?)).await?;
    s.invoker.count_event(&caller.account.id, &e.reference, crate::invoke::EventOutcome::Redriven);
    s.invoker.events_queued();
    Ok(Json(EventView::from_record(&e)))
}

/// Queues every failed Event invocation of the caller again.
#[utoipa::path(post, path = "/v1/events/failed/redrive", tag = "events",
    responses((status = 200, body = EventCount)))]
pub async fn redrive_all(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<EventCount>> {
    let (registry, account) = (s.registry.clone(), caller.account.id.clone());
    let redriven = blocking(move || Ok(registry.redrive_failed(&account)?)).await?;
    for reference in &redriven {
        s.invoker.count_event(&caller.account.id, reference, crate::invoke::EventOutcome::Redriven);
    }
    s.invoker.events_queued();
    Ok(Json(EventCount { count: redriven.len() }))
}

/// Deletes a failed Event invocation.
#[utoipa::path(delete, path = "/v1/events/{id}", tag = "events", params(EventPath),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let registry = s.registry.clone();
    blocking(move || Ok(registry.delete_failed_event(&caller.account.id, &id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes every failed Event invocation of the caller.
#[utoipa::path(delete, path = "/v1/events/failed", tag = "events", responses((status = 200, body = EventCount)))]
pub async fn purge(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<EventCount>> {
    let registry = s.registry.clone();
    let count = blocking(move || Ok(registry.purge_failed(&caller.account.id)?)).await?;
    Ok(Json(EventCount { count }))
}
