//! `/v1/schedules`: schedules (rate, cron and one-time), their next fires, enabling and disabling.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoke_core::time::format_rfc3339;
use stoke_store::ScheduleRecord;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use super::{blocking, AppState};
use crate::accounts::Caller;
use crate::schedules::{ScheduleInput, Schedules};
use stoke_core::schedule::DEFAULT_GROUP;

/// What a schedule runs.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetView {
    /// The function or state machine ARN.
    pub arn: String,
    /// The payload each fire sends (Scheduler's context attributes replaced); absent: Scheduler's scheduled
    /// event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// A schedule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub group: String,
    pub arn: String,
    pub expression: String,
    pub timezone: String,
    pub description: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Fires are delivered within this many minutes after their time; 0: exactly at it.
    pub flexible_window_min: u32,
    pub target: TargetView,
    /// Retries of a fire's failed invocation, and the age past which it is given up.
    pub max_retries: u32,
    pub max_age_s: u32,
    pub delete_after_completion: bool,
    pub created: String,
    pub modified: String,
    /// When it fires next; absent when disabled or done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<String>,
    /// When its last fire was due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<String>,
    /// When the last fire was dealt with (its invocation queued, or counted as missed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fired_at: Option<String>,
    /// What became of it: its invocation's state (`queued`, `running`, `succeeded`, `failed`) or `missed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    /// The request id of its last fire's invocation (`stoke events failed show` takes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    pub fires: u64,
    pub missed: u64,
}

impl ScheduleView {
    pub fn new(s: &ScheduleRecord, schedules: &Schedules) -> Self {
        let input = s.input.as_ref().map(|i| serde_json::from_str(i).unwrap_or_else(|_| Value::String(i.clone())));
        ScheduleView {
            name: s.name.clone(),
            group: s.group.clone(),
            arn: schedules.arn(s),
            expression: s.expression.clone(),
            timezone: s.timezone.clone(),
            description: s.description.clone(),
            state: if s.enabled { "ENABLED" } else { "DISABLED" }.into(),
            start: s.start_ms.map(format_rfc3339),
            end: s.end_ms.map(format_rfc3339),
            flexible_window_min: s.window_min,
            target: TargetView { arn: s.target.clone(), input },
            max_retries: s.max_retries,
            max_age_s: s.max_age_s,
            delete_after_completion: s.delete_after_completion,
            created: format_rfc3339(s.created_ms),
            modified: format_rfc3339(s.modified_ms),
            next_fire: s.next_fire_ms.map(format_rfc3339),
            last_fire: s.last_fire_ms.map(format_rfc3339),
            last_fired_at: s.last_fired_at_ms.map(format_rfc3339),
            last_outcome: schedules.last_outcome(s),
            last_event: s.last_event.clone(),
            fires: s.fires,
            missed: s.missed,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A schedule's target: exactly one of `function`, `workflow` and `arn`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetRequest {
    /// A function of yours: `name` or `name:qualifier` (invoked asynchronously).
    #[schema(max_length = 256)]
    pub function: Option<String>,
    /// A workflow of yours (an execution is started).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,80}$")]
    pub workflow: Option<String>,
    /// A function or state machine ARN of your account.
    #[schema(max_length = 1600)]
    pub arn: Option<String>,
    /// The payload of each fire (any JSON; strings may hold `<aws.scheduler.scheduled-time>`,
    /// `<aws.scheduler.execution-id>`, `<aws.scheduler.schedule-arn>`, `<aws.scheduler.attempt-number>`);
    /// absent: Scheduler's scheduled event.
    pub input: Option<Value>,
}

/// A schedule, as created or replaced; what is left out takes Scheduler's default.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// `rate(5 minutes)`, `cron(0 12 * * ? *)` (AWS's six fields) or `at(2027-01-01T09:00:00)`.
    #[schema(min_length = 1, max_length = 256)]
    pub expression: String,
    /// An IANA time zone the expression is read in (default `UTC`).
    #[schema(max_length = 50)]
    pub timezone: Option<String>,
    #[schema(max_length = 512)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Nothing fires before it (RFC 3339); rates count from it (default: when it is created).
    pub start: Option<String>,
    /// Nothing fires after it (RFC 3339).
    pub end: Option<String>,
    /// Deliver each fire at a time within this many minutes after it (1-1440); absent: exactly at it.
    #[schema(minimum = 1, maximum = 1440)]
    pub flexible_window_min: Option<i64>,
    pub target: TargetRequest,
    /// Retries of a fire's failed invocation (0-185, default 185).
    #[schema(minimum = 0, maximum = 185)]
    pub max_retries: Option<i64>,
    /// How old a fire's invocation may get, and how late a missed fire may still be delivered (60-86400 s,
    /// default 86400).
    #[schema(minimum = 60, maximum = 86400)]
    pub max_age_s: Option<i64>,
    /// Delete the schedule once it will not fire again.
    #[serde(default)]
    pub delete_after_completion: bool,
}

/// `POST /v1/schedules`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CreateScheduleRequest {
    /// 1-64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = r"^[0-9a-zA-Z_.-]{1,64}$")]
    pub name: String,
    #[serde(flatten)]
    pub spec: ScheduleSpec,
}

/// `{name}` of a schedule.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SchedulePath {
    /// 1-64 letters, digits, `-`, `_` or `.`.
    #[param(pattern = r"^[0-9a-zA-Z_.-]{1,64}$")]
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleListQuery {
    /// Only names that start with it.
    #[param(max_length = 64)]
    prefix: Option<String>,
    /// Items per page, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// How many fire times, 1-100 (default 5).
    #[param(minimum = 1, maximum = 100)]
    n: Option<usize>,
}

/// A schedule's next fire times.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NextFires {
    /// RFC 3339, in order; fewer than asked when it stops firing.
    pub fires: Vec<String>,
}

fn instant(field: &'static str, v: Option<&str>) -> ApiResult<Option<i64>> {
    v.map(|t| {
        t.parse::<jiff::Timestamp>().map(|t| t.as_millisecond()).map_err(|_| {
            ApiError::bad_request("invalid_parameter", format!("{field} {t:?} is not an RFC 3339 instant"))
                .with_field(field)
        })
    })
    .transpose()
}

/// The service's input from a request (the target made an ARN).
fn input_of(s: &Schedules, caller: &Caller, spec: ScheduleSpec) -> Result<ScheduleInput, ApiError> {
    let t = &spec.target;
    let target = s.target_arn(&caller.account.id, t.function.as_deref(), t.workflow.as_deref(), t.arn.as_deref())?;
    Ok(ScheduleInput {
        expression: spec.expression,
        timezone: spec.timezone,
        description: spec.description,
        enabled: spec.enabled,
        start_ms: instant("start", spec.start.as_deref())?,
        end_ms: instant("end", spec.end.as_deref())?,
        window_min: spec.flexible_window_min,
        target,
        input: spec.target.input.map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        }),
        max_retries: spec.max_retries,
        max_age_s: spec.max_age_s,
        delete_after_completion: spec.delete_after_completion,
    })
}

/// Creates a schedule.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = CreateScheduleRequest,
    responses((status = 201, body = ScheduleView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateScheduleRequest>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let schedules = s.schedules.clone();
    let view = blocking(move || {
        let input = input_of(&schedules, &caller, req.spec)?;
        let made = schedules.create(&caller.account.id, DEFAULT_GROUP, &req.name, input)?;
        Ok(ScheduleView::new(&made, &schedules))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The caller's schedules, by name.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", params(ScheduleListQuery),
    responses((status = 200, body = ScheduleList)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ScheduleListQuery>,
) -> ApiResult<Json<ScheduleList>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_parameter", "limit must be 1 to 1000").with_field("limit"));
    }
    if q.prefix.as_ref().is_some_and(|p| p.chars().count() > stoke_core::schedule::MAX_NAME_LEN) {
        return Err(ApiError::bad_request("invalid_parameter", "prefix is longer than a schedule name (64)")
            .with_field("prefix"));
    }
    let schedules = s.schedules.clone();
    Ok(Json(
        blocking(move || {
            let prefix = q.prefix.unwrap_or_default();
            let mut page =
                schedules.list(&caller.account.id, None, &prefix, q.cursor.as_deref(), limit.saturating_add(1))?;
            let more = page.len() > limit;
            page.truncate(limit);
            let next_cursor = more.then(|| page.last().map(|x| x.name.clone())).flatten();
            Ok(ScheduleList { schedules: page.iter().map(|x| ScheduleView::new(x, &schedules)).collect(), next_cursor })
        })
        .await?,
    ))
}

/// One schedule, with its last and next fire.
#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules", params(SchedulePath),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<ScheduleView>> {
    let schedules = s.schedules.clone();
    Ok(Json(
        blocking(move || Ok(ScheduleView::new(&schedules.get(&caller.account.id, DEFAULT_GROUP, &name)?, &schedules)))
            .await?,
    ))
}

/// Replaces a schedule whole (what is left out takes its default); its fires so far are kept.
#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "schedules", request_body = ScheduleSpec,
    params(SchedulePath),
    responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn replace(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<ScheduleSpec>,
) -> ApiResult<Json<ScheduleView>> {
    let schedules = s.schedules.clone();
    Ok(Json(
        blocking(move || {
            let input = input_of(&schedules, &caller, spec)?;
            Ok(ScheduleView::new(&schedules.replace(&caller.account.id, DEFAULT_GROUP, &name, input)?, &schedules))
        })
        .await?,
    ))
}

/// Deletes a schedule (an invocation a fire queued still runs).
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules", params(SchedulePath),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let schedules = s.schedules.clone();
    blocking(move || Ok(schedules.delete(&caller.account.id, DEFAULT_GROUP, &name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(s: AppState, caller: Caller, name: String, enabled: bool) -> ApiResult<Json<ScheduleView>> {
    let schedules = s.schedules.clone();
    Ok(Json(
        blocking(move || {
            let x = schedules.set_enabled(&caller.account.id, DEFAULT_GROUP, &name, enabled)?;
            Ok(ScheduleView::new(&x, &schedules))
        })
        .await?,
    ))
}

/// Enables a schedule: it fires from its next time after now (none missed while it was disabled).
#[utoipa::path(post, path = "/v1/schedules/{name}/enable", tag = "schedules", params(SchedulePath),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn enable(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    set_enabled(s, caller, name, true).await
}

/// Disables a schedule: it does not fire until enabled.
#[utoipa::path(post, path = "/v1/schedules/{name}/disable", tag = "schedules", params(SchedulePath),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn disable(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    set_enabled(s, caller, name, false).await
}

/// A schedule's next fire times from now.
#[utoipa::path(get, path = "/v1/schedules/{name}/next", tag = "schedules", params(SchedulePath, NextQuery),
    responses((status = 200, body = NextFires), (status = 404, body = ErrorBody)))]
pub async fn next(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NextQuery>,
) -> ApiResult<Json<NextFires>> {
    let n = q.n.unwrap_or(5);
    if !(1..=100).contains(&n) {
        return Err(ApiError::bad_request("invalid_parameter", "n must be 1 to 100").with_field("n"));
    }
    let schedules = s.schedules.clone();
    let fires = blocking(move || Ok(schedules.upcoming(&caller.account.id, DEFAULT_GROUP, &name, n)?)).await?;
    Ok(Json(NextFires { fires: fires.into_iter().map(format_rfc3339).collect() }))
}
