//! CloudWatch Logs' `FilterLogEvents` (JSON 1.1: `POST /` with `X-Amz-Target: Logs_20140328.FilterLogEvents`)
//! over the functions' logs, so that what reads a Lambda function's log group (`/aws/lambda/<function>`, or
//! its `LoggingConfig.LogGroup`) with an AWS SDK reads stoke's: the lines this node and, in a cluster, the
//! nodes that ran the function keep (the newest of them; see docs/running-functions.md).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stoke_core::logfilter::Pattern;
use stoke_core::{AccountId, FunctionName};

use super::invoke::collect_logs;
use super::lambda::Signed;
use super::AppState;

/// The prefix of CloudWatch Logs' operations in `X-Amz-Target`.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// Events per page by default, and at most (`limit`).
const MAX_EVENTS: usize = 10_000;
/// Lines read per function at most: what the nodes keep is bounded anyway.
const MAX_LINES: usize = 100_000;

pub struct LogsError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl LogsError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        LogsError { status: StatusCode::BAD_REQUEST, kind, message: message.into() }
    }
}

impl IntoResponse for LogsError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({"__type": self.kind, "message": self.message}))).into_response();
        resp.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
        resp
    }
}

impl From<super::error::ApiError> for LogsError {
    fn from(e: super::error::ApiError) -> Self {
        let retryable = e.status.is_server_error();
        LogsError {
            status: if retryable { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST },
            kind: if retryable { "ServiceUnavailableException" } else { "InvalidParameterException" },
            message: e.message,
        }
    }
}

/// One CloudWatch Logs operation, `operation` from `X-Amz-Target`.
pub async fn dispatch(s: &AppState, req: Signed, operation: &str) -> Result<Response, LogsError> {
    if operation != "FilterLogEvents" {
        return Err(LogsError::new(
            "UnknownOperationException",
            format!("CloudWatch Logs' {operation} is not served here: this server answers FilterLogEvents"),
        ));
    }
    let body: Value = if stoke_core::json::is_blank(&req.body) {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| LogsError::new("SerializationException", format!("the request body is not JSON: {e}")))?
    };
    let q = Query::read(&body)?;
    let account = req.caller.account.id.clone();
    let function = function_of(s, &account, &q.group).await?;
    let lines = collect_logs(s, &account, &function, q.start_ms.unwrap_or(0), MAX_LINES).await?.lines;
    let stream_of = |instance: u64| format!("[$LATEST]{instance:016x}");
    let matching: Vec<Value> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| q.end_ms.is_none_or(|end| l.at_ms <= end))
        .filter(|(_, l)| q.streams.is_empty() || q.streams.contains(&stream_of(l.instance)))
        .filter(|(_, l)| q.pattern.matches(&l.text))
        .skip(q.offset)
        .take(q.limit + 1)
        .map(|(i, l)| {
            json!({
                "logStreamName": stream_of(l.instance),
                "timestamp": l.at_ms,
                "message": l.text,
                "ingestionTime": l.at_ms,
                "eventId": format!("{}{i:012}", l.at_ms),
            })
        })
        .collect();
    let more = matching.len() > q.limit;
    let events: Vec<Value> = matching.into_iter().take(q.limit).collect();
    let mut out = json!({ "events": events, "searchedLogStreams": [] });
    if more {
        out["nextToken"] = json!((q.offset + q.limit).to_string());
    }
    let mut resp = Json(out).into_response();
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
    Ok(resp)
}

/// `FilterLogEvents`' request, checked.
struct Query {
    group: String,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    pattern: Pattern,
    streams: Vec<String>,
    offset: usize,
    limit: usize,
}

impl Query {
    fn read(body: &Value) -> Result<Query, LogsError> {
        let invalid = |m: String| LogsError::new("InvalidParameterException", m);
        let group = match (body.get("logGroupName"), body.get("logGroupIdentifier")) {
            (Some(Value::String(g)), _) => g.clone(),
            // An identifier may be the group's ARN: `arn:aws:logs:<region>:<account>:log-group:<name>[:*]`.
            (None, Some(Value::String(id))) => {
                id.split(":log-group:").nth(1).map_or(id.as_str(), |n| n.trim_end_matches(":*")).to_string()
            }
            _ => {
                return Err(invalid(
                    "logGroupName is required: the function's log group, /aws/lambda/<function>".into(),
                ))
            }
        };
        let time = |key: &str| match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|t| *t >= 0)
                .map(Some)
                .ok_or_else(|| invalid(format!("{key} must be a time in milliseconds since the epoch, not {v}"))),
        };
        let pattern = match body.get("filterPattern") {
            None | Some(Value::Null) => Pattern::All,
            Some(Value::String(p)) => Pattern::parse(p).map_err(invalid)?,
            Some(other) => return Err(invalid(format!("filterPattern must be a string, not {other}"))),
        };
        let streams = match body.get("logStreamNames") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(other) => return Err(invalid(format!("logStreamNames must be a list of names, not {other}"))),
        };
        let offset = match body.get("nextToken") {
            None | Some(Value::Null) => 0,
            Some(t) => t.as_str().and_then(|t| t.parse().ok()).ok_or_else(|| {
                invalid(format!("nextToken {t} is not one this server gave: pass the last answer's nextToken"))
            })?,
        };
        let limit = match body.get("limit") {
            None | Some(Value::Null) => MAX_EVENTS,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_EVENTS).contains(n))
                .ok_or_else(|| invalid(format!("limit must be 1-{MAX_EVENTS}, not {v}")))?,
        };
        Ok(Query { group, start_ms: time("startTime")?, end_ms: time("endTime")?, pattern, streams, offset, limit })
    }
}

/// The function whose logs `group` is: one whose `LoggingConfig.LogGroup` is it, else `/aws/lambda/<name>`.
async fn function_of(s: &AppState, account: &AccountId, group: &str) -> Result<FunctionName, LogsError> {
    let (registry, account, group) = (s.registry.clone(), account.clone(), group.to_string());
    let missing = |group: &str| {
        LogsError::new("ResourceNotFoundException", format!("The specified log group does not exist: {group}"))
    };
    let found = super::blocking(move || {
        let mut cursor = None;
        loop {
            let (page, next) = registry.list_functions(&account, cursor.as_deref(), 1000)?;
            if let Some(f) = page.iter().find(|f| f.config.logging.log_group.as_deref() == Some(group.as_str())) {
                return Ok(Ok(f.name.clone()));
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let Some(name) = group.strip_prefix("/aws/lambda/") else { return Ok(Err(group)) };
        let Ok(name) = registry.parse_function_name(&account, name) else { return Ok(Err(group)) };
        match registry.get_function(&account, &name) {
            Ok(f) if f.config.logging.log_group.is_none() => Ok(Ok(name)),
            Ok(_) => Ok(Err(group)),
            Err(crate::registry::RegistryError::NotFound(_)) => Ok(Err(group)),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    found.map_err(|g| missing(&g))
}
