//! The EventBridge Scheduler API (`2021-06-30`, rest-json, SigV4 with the `scheduler` service), so that
//! boto3's `scheduler` client and the aws cli drive stoke's schedules unchanged: `CreateSchedule`,
//! `GetSchedule`, `UpdateSchedule`, `DeleteSchedule`, `ListSchedules`, and the `default` schedule group.
//! Errors are Scheduler's: the code in `x-amzn-ErrorType`, the sentence in `Message`.

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use stoke_store::ScheduleRecord;

use super::lambda::{LambdaError, Signed};
use super::AppState;
use crate::error::Classified;
use crate::schedules::{ScheduleError, ScheduleInput, Schedules};
use stoke_core::error::ErrorKind;
use stoke_core::schedule::DEFAULT_GROUP;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/schedules", get(list_schedules))
        .route(
            "/schedules/{name}",
            get(get_schedule).post(create_schedule).put(update_schedule).delete(delete_schedule),
        )
        .route("/schedule-groups", get(list_groups))
        .route("/schedule-groups/{name}", get(get_group).post(create_group).delete(delete_group))
}

/// A Scheduler error: its exception, status and sentence.
#[derive(Debug)]
pub struct SchedulerError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl SchedulerError {
    fn validation(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "ValidationException", message: message.into() }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "ResourceNotFoundException", message: message.into() }
    }
}

impl IntoResponse for SchedulerError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "Message": self.message }))).into_response();
        if let Ok(v) = HeaderValue::from_str(self.code) {
            resp.headers_mut().insert(HeaderName::from_static("x-amzn-errortype"), v);
        }
        resp
    }
}

impl From<ScheduleError> for SchedulerError {
    fn from(e: ScheduleError) -> Self {
        let class = e.class();
        let (status, code) = match class.kind {
            ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "ValidationException"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "ConflictException"),
            ErrorKind::Unavailable | ErrorKind::Full => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException"),
        };
        Self { status, code, message: crate::error::message(&class, &e) }
    }
}

impl From<LambdaError> for SchedulerError {
    fn from(e: LambdaError) -> Self {
        let (status, code, message) = e.parts();
        Self { status, code, message }
    }
}

type SchedulerResult<T> = Result<T, SchedulerError>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> SchedulerResult<T> + Send + 'static) -> SchedulerResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| SchedulerError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "InternalServerException",
        message: e.to_string(),
    })?
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FlexibleTimeWindow {
    mode: String,
    maximum_window_in_minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetryPolicy {
    maximum_event_age_in_seconds: Option<i64>,
    maximum_retry_attempts: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Target {
    arn: String,
    role_arn: String,
    input: Option<String>,
    retry_policy: Option<RetryPolicy>,
    dead_letter_config: Option<Value>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// `CreateSchedule` and `UpdateSchedule`'s body (the same shape).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleIn {
    group_name: Option<String>,
    description: Option<String>,
    schedule_expression: String,
    schedule_expression_timezone: Option<String>,
    start_date: Option<f64>,
    end_date: Option<f64>,
    state: Option<String>,
    action_after_completion: Option<String>,
    flexible_time_window: FlexibleTimeWindow,
    target: Target,
    kms_key_arn: Option<String>,
}

fn body<T: serde::de::DeserializeOwned>(req: &Signed) -> SchedulerResult<T> {
    let bytes = if stoke_core::json::is_blank(&req.body) { &b"{}"[..] } else { &req.body[..] };
    serde_json::from_slice(bytes).map_err(|e| {
        SchedulerError::validation(format!(
            "The request body is not what the operation takes: {e}. Required: ScheduleExpression, \
             FlexibleTimeWindow {{Mode}}, Target {{Arn, RoleArn}}."
        ))
    })
}

/// An IAM role's ARN, as Scheduler's `RoleArn` pattern has it: `arn:aws(-[a-z]+)?:iam::<12 digits>:role/<name>`.
fn is_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:aws") else { return false };
    let rest = match rest.strip_prefix('-') {
        Some(r) => match r.split_once(':') {
            Some((p, r)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()) => r,
            _ => return false,
        },
        None => match rest.strip_prefix(':') {
            Some(r) => r,
            None => return false,
        },
    };
    let Some(rest) = rest.strip_prefix("iam::") else { return false };
    let Some((account, name)) = rest.split_once(":role/") else { return false };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@/_-".contains(&b))
}

fn seconds_to_ms(field: &str, v: Option<f64>) -> SchedulerResult<Option<i64>> {
    v.map(|s| {
        if s.is_finite() && s.abs() < 1e12 {
            Ok(stoke_core::num::saturate_i64(s * 1000.0))
        } else {
            Err(SchedulerError::validation(format!("{field} {s} is not a time")))
        }
    })
    .transpose()
}

/// The service's input from Scheduler's request, refusing what stoke does not do.
fn input_of(i: ScheduleIn) -> SchedulerResult<(String, ScheduleInput)> {
    let group = i.group_name.unwrap_or_else(|| DEFAULT_GROUP.to_string());
    if !is_role_arn(&i.target.role_arn) {
        return Err(SchedulerError::validation(format!(
            "1 validation error detected: Value '{}' at 'target.roleArn' failed to satisfy constraint: Member must \
             satisfy regular expression pattern: ^arn:aws(-[a-z]+)?:iam::\\d{{12}}:role\\/[\\w+=,.@\\/-]+$",
            i.target.role_arn
        )));
    }
    if i.target.dead_letter_config.is_some() {
        return Err(SchedulerError::validation(
            "stoke takes no DeadLetterConfig: a fire whose invocation fails its retries waits in stoke's failed-event \
             store (stoke events failed ls), and its function's OnFailure destination receives its record",
        ));
    }
    if let Some(k) = i.target.other.keys().next() {
        return Err(SchedulerError::validation(format!(
            "stoke's schedules run functions and state machines: {k} is not taken"
        )));
    }
    if i.kms_key_arn.is_some() {
        return Err(SchedulerError::validation("stoke takes no KmsKeyArn: schedules are kept in stoke's own store"));
    }
    let window = match i.flexible_time_window.mode.as_str() {
        "OFF" => None,
        "FLEXIBLE" => Some(i.flexible_time_window.maximum_window_in_minutes.ok_or_else(|| {
            SchedulerError::validation("MaximumWindowInMinutes is required when FlexibleTimeWindow's Mode is FLEXIBLE")
        })?),
        other => {
            return Err(SchedulerError::validation(format!(
                "1 validation error detected: Value '{other}' at 'flexibleTimeWindow.mode' failed to satisfy \
                 constraint: Member must satisfy enum value set: [OFF, FLEXIBLE]"
            )))
        }
    };
    let enabled = match i.state.as_deref() {
        None | Some("ENABLED") => true,
        Some("DISABLED") => false,
        Some(other) => {
            return Err(SchedulerError::validation(format!(
                "1 validation error detected: Value '{other}' at 'state' failed to satisfy constraint: Member must \
                 satisfy enum value set: [ENABLED, DISABLED]"
            )))
        }
    };
    let delete_after_completion = match i.action_after_completion.as_deref() {
        None | Some("NONE") => false,
        Some("DELETE") => true,
        Some(other) => {
            return Err(SchedulerError::validation(format!(
                "1 validation error detected: Value '{other}' at 'actionAfterCompletion' failed to satisfy \
                 constraint: Member must satisfy enum value set: [NONE, DELETE]"
            )))
        }
    };
    let retry = i
        .target
        .retry_policy
        .unwrap_or(RetryPolicy { maximum_event_age_in_seconds: None, maximum_retry_attempts: None });
    Ok((
        group,
        ScheduleInput {
            expression: i.schedule_expression,
            timezone: i.schedule_expression_timezone,
            description: i.description,
            enabled: Some(enabled),
            start_ms: seconds_to_ms("StartDate", i.start_date)?,
            end_ms: seconds_to_ms("EndDate", i.end_date)?,
            window_min: window,
            target: i.target.arn,
            input: i.target.input,
            max_retries: retry.maximum_retry_attempts,
            max_age_s: retry.maximum_event_age_in_seconds,
            delete_after_completion,
        },
    ))
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `GetScheduleOutput`.
fn schedule_doc(s: &ScheduleRecord, schedules: &Schedules) -> Value {
    let mut target = json!({
        "Arn": s.target,
        "RoleArn": format!("arn:aws:iam::{}:role/stoke-scheduler", s.account),
        "RetryPolicy": {"MaximumEventAgeInSeconds": s.max_age_s, "MaximumRetryAttempts": s.max_retries},
    });
    if let Some(input) = &s.input {
        target["Input"] = json!(input);
    }
    let mut v = json!({
        "ActionAfterCompletion": if s.delete_after_completion { "DELETE" } else { "NONE" },
        "Arn": schedules.arn(s),
        "CreationDate": secs(s.created_ms),
        "Description": s.description,
        "FlexibleTimeWindow": if s.window_min == 0 { json!({"Mode": "OFF"}) }
            else { json!({"Mode": "FLEXIBLE", "MaximumWindowInMinutes": s.window_min}) },
        "GroupName": s.group,
        "LastModificationDate": secs(s.modified_ms),
        "Name": s.name,
        "ScheduleExpression": s.expression,
        "ScheduleExpressionTimezone": s.timezone,
        "State": if s.enabled { "ENABLED" } else { "DISABLED" },
        "Target": target,
    });
    if let Some(t) = s.start_ms {
        v["StartDate"] = json!(secs(t));
    }
    if let Some(t) = s.end_ms {
        v["EndDate"] = json!(secs(t));
    }
    v
}

#[derive(Debug, Deserialize, Default)]
struct GroupQuery {
    #[serde(rename = "groupName")]
    group_name: Option<String>,
}

fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> SchedulerResult<T> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| SchedulerError::validation(format!("the query is not valid: {}", e.body_text())))
}

fn group_of(uri: &axum::http::Uri) -> SchedulerResult<String> {
    let q: GroupQuery = query(uri)?;
    Ok(q.group_name.unwrap_or_else(|| DEFAULT_GROUP.to_string()))
}

/// `CreateSchedule` (`replace` false) and `UpdateSchedule` (a whole replacement).
async fn write_schedule(s: AppState, name: String, req: Signed, replace: bool) -> SchedulerResult<Json<Value>> {
    let (group, input) = input_of(body(&req)?)?;
    let schedules = s.schedules.clone();
    blocking(move || {
        let account = &req.caller.account.id;
        let made = if replace {
            schedules.replace(account, &group, &name, input)?
        } else {
            schedules.create(account, &group, &name, input)?
        };
        Ok(Json(json!({ "ScheduleArn": schedules.arn(&made) })))
    })
    .await
}

async fn create_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> SchedulerResult<Json<Value>> {
    write_schedule(s, name, req, false).await
}

async fn update_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> SchedulerResult<Json<Value>> {
    write_schedule(s, name, req, true).await
}

async fn get_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> SchedulerResult<Json<Value>> {
    let group = group_of(&uri)?;
    let schedules = s.schedules.clone();
    blocking(move || {
        let found = schedules.get(&req.caller.account.id, &group, &name)?;
        Ok(Json(schedule_doc(&found, &schedules)))
    })
    .await
}

async fn delete_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> SchedulerResult<Json<Value>> {
    let group = group_of(&uri)?;
    let schedules = s.schedules.clone();
    blocking(move || {
        schedules.delete(&req.caller.account.id, &group, &name)?;
        Ok(Json(json!({})))
    })
    .await
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListIn {
    schedule_group: Option<String>,
    name_prefix: Option<String>,
    state: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

async fn list_schedules(State(s): State<AppState>, uri: axum::http::Uri, req: Signed) -> SchedulerResult<Json<Value>> {
    let q: ListIn = query(&uri)?;
    let limit = q.max_results.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(SchedulerError::validation(format!(
            "1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy constraint: Member must \
             have value between 1 and 100"
        )));
    }
    let want_enabled = match q.state.as_deref() {
        None => None,
        Some("ENABLED") => Some(true),
        Some("DISABLED") => Some(false),
        Some(other) => {
            return Err(SchedulerError::validation(format!(
                "1 validation error detected: Value '{other}' at 'state' failed to satisfy constraint: Member must \
                 satisfy enum value set: [ENABLED, DISABLED]"
            )))
        }
    };
    let schedules = s.schedules.clone();
    blocking(move || {
        let prefix = q.name_prefix.unwrap_or_default();
        let account = &req.caller.account.id;
        // Filtering by state may leave a read short of a page: read on until the page is full (then there is
        // more when anything follows it) or the list ends.
        let (mut page, mut after, mut more) = (Vec::new(), q.next_token, false);
        'read: loop {
            let read = schedules.list(account, q.schedule_group.as_deref(), &prefix, after.as_deref(), limit)?;
            let last = read.len() < limit;
            for x in read {
                if page.len() == limit {
                    more = true;
                    break 'read;
                }
                after = Some(x.name.clone());
                if want_enabled.is_none_or(|e| e == x.enabled) {
                    page.push(x);
                }
            }
            if last {
                break;
            }
        }
        let summaries: Vec<Value> = page
            .iter()
            .map(|x| {
                json!({
                    "Arn": schedules.arn(x),
                    "CreationDate": secs(x.created_ms),
                    "GroupName": x.group,
                    "LastModificationDate": secs(x.modified_ms),
                    "Name": x.name,
                    "State": if x.enabled { "ENABLED" } else { "DISABLED" },
                    "Target": {"Arn": x.target},
                })
            })
            .collect();
        let mut out = json!({ "Schedules": summaries });
        if more {
            out["NextToken"] = json!(page.last().map(|x| x.name.clone()));
        }
        Ok(Json(out))
    })
    .await
}

fn group_doc(s: &AppState, account: &stoke_core::AccountId) -> Value {
    json!({
        "Arn": format!("arn:aws:scheduler:{}:{account}:schedule-group/{DEFAULT_GROUP}", s.region),
        "CreationDate": 0.0,
        "LastModificationDate": 0.0,
        "Name": DEFAULT_GROUP,
        "State": "ACTIVE",
    })
}

async fn get_group(State(s): State<AppState>, Path(name): Path<String>, req: Signed) -> SchedulerResult<Json<Value>> {
    if name != DEFAULT_GROUP {
        return Err(SchedulerError::not_found(format!("Schedule group {name} does not exist.")));
    }
    Ok(Json(group_doc(&s, &req.caller.account.id)))
}

async fn list_groups(State(s): State<AppState>, req: Signed) -> SchedulerResult<Json<Value>> {
    Ok(Json(json!({ "ScheduleGroups": [group_doc(&s, &req.caller.account.id)] })))
}

async fn create_group(Path(name): Path<String>, _req: Signed) -> SchedulerResult<Json<Value>> {
    Err(if name == DEFAULT_GROUP {
        SchedulerError {
            status: StatusCode::CONFLICT,
            code: "ConflictException",
            message: format!("Schedule group {name} already exists."),
        }
    } else {
        SchedulerError::validation(format!(
            "stoke has one schedule group, {DEFAULT_GROUP}: create schedules in it (leave GroupName out)"
        ))
    })
}

async fn delete_group(Path(name): Path<String>, _req: Signed) -> SchedulerResult<Json<Value>> {
    Err(if name == DEFAULT_GROUP {
        SchedulerError::validation("The default schedule group cannot be deleted.")
    } else {
        SchedulerError::not_found(format!("Schedule group {name} does not exist."))
    })
}

#[cfg(test)]
mod tests {
    use super::is_role_arn;

    #[test]
    fn role_arns_follow_scheduler_s_pattern() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/scheduler"));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/path/to/r+=,.@_-"));
        for bad in [
            "",
            "role",
            "arn:aws:iam::12345:role/r",
            "arn:aws:iam::123456789012:user/u",
            "arn:aws-:iam::123456789012:role/r",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
    }
}
