//! The Step Functions JSON 1.0 API (`POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>`), so
//! `boto3.client("stepfunctions", endpoint_url=…)` and `aws stepfunctions --endpoint-url …` drive workflows
//! unchanged. A thin adapter over the same `Workflows` service as `/v1`; SigV4-authenticated.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stoke_store::{ExecutionRecord, ExecutionStatus, WorkflowRecord};

use super::lambda::Signed;
use super::AppState;
use crate::workflows::engine::{child_index, execution_arn, map_run_arn, map_run_of, parse_map_run_arn, workflow_arn};
use crate::workflows::history::{ErrorCause, HistoryEvent, Integration, Recorded, TaskFailure};
use crate::workflows::{WorkflowChange, WorkflowError, Workflows};

/// A Step Functions error: `__type` names it (botocore reads it as the error code).
#[derive(Debug)]
pub struct StatesError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl StatesError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        StatesError { status: StatusCode::BAD_REQUEST, kind, message: message.into() }
    }
}

impl IntoResponse for StatesError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({"__type": self.kind, "message": self.message}))).into_response();
        resp.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
        resp
    }
}

impl From<WorkflowError> for StatesError {
    fn from(e: WorkflowError) -> Self {
        let message = e.to_string();
        match e {
            WorkflowError::InvalidDefinition(_) => Self::new("InvalidDefinition", message),
            WorkflowError::InvalidInput { field: "input", .. } => Self::new("InvalidExecutionInput", message),
            WorkflowError::InvalidInput { field: "role_arn", .. } => Self::new("ValidationException", message),
            WorkflowError::InvalidInput { .. } => Self::new("InvalidName", message),
            WorkflowError::WorkflowNotFound(_) => Self::new("StateMachineDoesNotExist", message),
            WorkflowError::ExecutionNotFound(_) => Self::new("ExecutionDoesNotExist", message),
            WorkflowError::Exists(m) if m.contains("execution") => Self::new("ExecutionAlreadyExists", m),
            WorkflowError::Exists(m) => Self::new("StateMachineAlreadyExists", m),
            WorkflowError::ConcurrentModification(m) => Self::new("ConflictException", m),
            WorkflowError::NotRunning(m) => Self::new("ValidationException", m),
            WorkflowError::Store(_) => {
                StatesError { status: StatusCode::INTERNAL_SERVER_ERROR, kind: "ServiceException", message }
            }
        }
    }
}

type StatesResult = Result<Json<Value>, StatesError>;

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn str_field<'a>(body: &'a Value, field: &str) -> Result<&'a str, StatesError> {
    body.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| StatesError::new("ValidationException", format!("the request needs {field} (a string)")))
}

/// `timeoutInSeconds` in a scheduled event's details, when the Task's definition gave one (Step Functions
/// leaves it out otherwise).
fn with_timeout(mut details: Value, timeout: Option<u64>) -> Value {
    if let Some(t) = timeout {
        details["timeoutInSeconds"] = json!(t);
    }
    details
}

fn machine_arn(region: &str, w: &WorkflowRecord) -> String {
    workflow_arn(region, &w.account, &w.name)
}

/// The state machine name an ARN (or a bare name) refers to.
fn machine_name(arn: &str) -> Result<String, StatesError> {
    if !arn.contains(':') {
        return Ok(arn.to_string());
    }
    match stoke_core::reference::parse_state_machine_arn(arn) {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(StatesError::new(
            "InvalidArn",
            format!("{arn:?} is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)"),
        )),
    }
}

/// The map run a map run ARN names, with the execution that started it (`ResourceNotFound` when there is
/// none in this account).
fn map_run(
    wf: &Workflows,
    account: &stoke_core::AccountId,
    arn: &str,
) -> Result<(stoke_store::MapRunRecord, ExecutionRecord), StatesError> {
    let Some((children, id)) = parse_map_run_arn(arn) else {
        return Err(StatesError::new(
            "InvalidArn",
            format!("{arn:?} is not a map run ARN (arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<id>)"),
        ));
    };
    let not_found = || StatesError::new("ResourceNotFound", format!("map run {arn} does not exist"));
    let run = wf.map_run(account, &id)?.filter(|r| r.children == children).ok_or_else(not_found)?;
    let parent = wf.describe(account, &run.execution_id)?;
    Ok((run, parent))
}

/// The (state machine, execution) names an execution ARN refers to.
fn execution_names(arn: &str) -> Result<(String, String), StatesError> {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "states", _, _, "execution", machine, name] => Ok((machine.to_string(), name.to_string())),
        _ => Err(StatesError::new(
            "InvalidArn",
            format!("{arn:?} is not an execution ARN (arn:aws:states:<region>:<account>:execution:<machine>:<name>)"),
        )),
    }
}

fn describe_execution(region: &str, e: &ExecutionRecord) -> Value {
    let mut v = json!({
        "executionArn": execution_arn(region, e),
        "stateMachineArn": workflow_arn(region, &e.account, &e.workflow),
        "name": e.name,
        "status": e.status.as_str(),
        "startDate": seconds(e.started_ms),
        "input": e.input,
        "inputDetails": {"included": true},
    });
    if let Some(run) = map_run_of(e) {
        v["mapRunArn"] = json!(map_run_arn(region, &e.account, &e.workflow, run));
    }
    if let Some(s) = e.stopped_ms {
        v["stopDate"] = json!(seconds(s));
    }
    if let Some(o) = &e.output {
        v["output"] = json!(o);
        v["outputDetails"] = json!({"included": true});
    }
    if let Some(err) = &e.error {
        v["error"] = json!(err);
    }
    if let Some(c) = &e.cause {
        v["cause"] = json!(c);
    }
    v
}

/// A history event in Step Functions' shape: JSON documents travel as strings, details under a key named
/// after the event type.
fn history_event(h: &Recorded, region: &str, account: &stoke_core::AccountId) -> Value {
    use HistoryEvent as E;
    let text = |v: &Value| v.to_string();
    let invoke = |v: Value| {
        let mut v = v;
        v["resourceType"] = json!("lambda");
        v["resource"] = json!("invoke");
        v
    };
    let failure = |f: &TaskFailure| json!({"error": f.error, "cause": f.cause});
    let details = match &h.event {
        E::ExecutionStarted(d) => Some((
            "executionStartedEventDetails",
            json!({"input": text(&d.input), "roleArn": d.role_arn.as_deref().unwrap_or("")}),
        )),
        E::StateEntered(d) => Some(("stateEnteredEventDetails", json!({"name": d.name, "input": text(&d.input)}))),
        E::StateExited(d) => {
            let mut v = json!({"name": d.name, "output": text(&d.output)});
            // As Step Functions shows them: each variable's value as JSON text.
            if let Some(assigned) = &d.assigned {
                let texts: serde_json::Map<String, Value> =
                    assigned.iter().map(|(k, x)| (k.clone(), Value::String(x.to_string()))).collect();
                v["assignedVariables"] = Value::Object(texts);
                v["assignedVariablesDetails"] = json!({"truncated": false});
            }
            Some(("stateExitedEventDetails", v))
        }
        E::TaskScheduled(Integration::Lambda, d) => Some((
            "lambdaFunctionScheduledEventDetails",
            with_timeout(json!({"resource": d.resource, "input": text(&d.input)}), d.timeout_seconds),
        )),
        E::TaskSucceeded(Integration::Lambda, d) => {
            Some(("lambdaFunctionSucceededEventDetails", json!({"output": text(&d.output)})))
        }
        E::TaskFailed(Integration::Lambda, f) => Some(("lambdaFunctionFailedEventDetails", failure(f))),
        E::TaskTimedOut(Integration::Lambda, f) => Some(("lambdaFunctionTimedOutEventDetails", failure(f))),
        E::TaskStarted(Integration::Lambda) => None,
        E::TaskStarted(Integration::LambdaInvoke) => Some(("taskStartedEventDetails", invoke(json!({})))),
        E::TaskScheduled(Integration::LambdaInvoke, d) => Some((
            "taskScheduledEventDetails",
            invoke(with_timeout(json!({"region": region, "parameters": text(&d.input)}), d.timeout_seconds)),
        )),
        E::TaskSucceeded(Integration::LambdaInvoke, d) => {
            Some(("taskSucceededEventDetails", invoke(json!({"output": text(&d.output)}))))
        }
        E::TaskFailed(Integration::LambdaInvoke, f) => Some(("taskFailedEventDetails", invoke(failure(f)))),
        E::TaskTimedOut(Integration::LambdaInvoke, f) => Some(("taskTimedOutEventDetails", invoke(failure(f)))),
        E::MapStateStarted(d) => Some(("mapStateStartedEventDetails", json!({"length": d.length}))),
        E::MapIterationStarted(d) => Some(("mapIterationStartedEventDetails", json!({"index": d.index}))),
        E::MapIterationSucceeded(d) => Some(("mapIterationSucceededEventDetails", json!({"index": d.index}))),
        E::MapIterationFailed(d) => Some(("mapIterationFailedEventDetails", json!({"index": d.index}))),
        E::ExecutionSucceeded(d) => Some(("executionSucceededEventDetails", json!({"output": text(&d.output)}))),
        E::ExecutionFailed(d) => Some(("executionFailedEventDetails", error_cause(d))),
        E::ExecutionAborted(d) => Some(("executionAbortedEventDetails", error_cause(d))),
        E::ExecutionTimedOut(d) => Some(("executionTimedOutEventDetails", error_cause(d))),
        E::MapRunStarted(d) => Some((
            "mapRunStartedEventDetails",
            json!({"mapRunArn": map_run_arn(region, account, &d.children, &d.map_run)}),
        )),
        E::MapRunFailed(d) => Some(("mapRunFailedEventDetails", error_cause(d))),
        E::EvaluationFailed(d) => Some((
            "evaluationFailedEventDetails",
            json!({"error": d.error, "cause": d.cause, "location": d.location, "state": d.state}),
        )),
        E::MapRunSucceeded
        | E::ParallelStateStarted
        | E::ParallelStateSucceeded
        | E::ParallelStateFailed
        | E::MapStateSucceeded
        | E::MapStateFailed
        | E::Other { .. } => None,
    };
    let mut v = json!({
        "timestamp": seconds(h.timestamp_ms),
        "type": h.event.kind(),
        "id": h.seq,
        "previousEventId": h.seq.saturating_sub(1),
    });
    if let Some((key, details)) = details {
        v[key] = details;
    }
    v
}

/// An execution's end: `error` and `cause` where they are known.
fn error_cause(d: &ErrorCause) -> Value {
    let mut v = json!({});
    if let Some(e) = &d.error {
        v["error"] = json!(e);
    }
    if let Some(c) = &d.cause {
        v["cause"] = json!(c);
    }
    v
}

/// Pages of up to `maxResults` (default 100, at most 1000) with an opaque `nextToken` (an offset).
fn page(body: &Value) -> Result<(usize, usize), StatesError> {
    let max = match body.get("maxResults").and_then(Value::as_u64) {
        None | Some(0) => 100,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= 1000 => n,
            _ => return Err(StatesError::new("ValidationException", format!("maxResults is at most 1000, got {n}"))),
        },
    };
    let offset = match body.get("nextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| StatesError::new("InvalidToken", format!("nextToken {t:?} is not one this server gave")))?,
    };
    Ok((offset, max))
}

/// `POST /`: dispatches on `X-Amz-Target`.
pub async fn dispatch(State(s): State<AppState>, req: Signed) -> Result<Response, StatesError> {
    let target = req.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // CloudWatch Logs speaks the same protocol on the same path.
    if let Some(operation) = target.strip_prefix(super::logs::TARGET_PREFIX) {
        return Ok(super::logs::dispatch(&s, req, operation).await.into_response());
    }
    let Some(operation) = target.strip_prefix("AWSStepFunctions.") else {
        return Err(StatesError::new(
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not a Step Functions operation (AWSStepFunctions.<Operation>)"),
        ));
    };
    let body: Value = if stoke_core::json::is_blank(&req.body) {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| StatesError::new("SerializationException", format!("the request body is not JSON: {e}")))?
    };
    let account = req.caller.account.id.clone();
    let wf = s.workflows.clone();
    let region = s.region.clone();
    let op = operation.to_string();
    if op == "StartSyncExecution" {
        return Ok(start_sync(&s.workflows, &account, &region, &body).await?.into_response());
    }
    let out = tokio::task::spawn_blocking(move || operation_blocking(&wf, &account, &region, &op, &body))
        .await
        .map_err(|e| StatesError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "ServiceException",
            message: e.to_string(),
        })??;
    let mut resp = out.into_response();
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
    Ok(resp)
}

async fn start_sync(
    wf: &std::sync::Arc<Workflows>,
    account: &stoke_core::AccountId,
    region: &str,
    body: &Value,
) -> StatesResult {
    let name = machine_name(str_field(body, "stateMachineArn")?)?;
    let input = body.get("input").and_then(Value::as_str).map(String::from);
    let exec_name = body.get("name").and_then(Value::as_str).map(String::from);
    let started = wf.start(account, &name, exec_name.as_deref(), input.as_deref(), None, false)?;
    wf.wait(&started.id).await;
    let e = wf.describe(account, &started.id)?;
    Ok(Json(describe_execution(region, &e)))
}

fn operation_blocking(
    wf: &std::sync::Arc<Workflows>,
    account: &stoke_core::AccountId,
    region: &str,
    op: &str,
    body: &Value,
) -> StatesResult {
    let definition = |body: &Value| -> Result<String, StatesError> {
        match body.get("definition") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => {
                Err(StatesError::new("ValidationException", "the request needs definition (the ASL JSON as a string)"))
            }
        }
    };
    let execution = |body: &Value| -> Result<ExecutionRecord, StatesError> {
        let (machine, name) = execution_names(str_field(body, "executionArn")?)?;
        Ok(wf.find(account, &machine, &name)?)
    };
    Ok(Json(match op {
        "CreateStateMachine" => {
            let role = body.get("roleArn").and_then(Value::as_str);
            let w = wf.create(account, str_field(body, "name")?, &definition(body)?, None, role)?;
            json!({"stateMachineArn": machine_arn(region, &w), "creationDate": seconds(w.created_ms)})
        }
        "DescribeStateMachine" => {
            let w = wf.get(account, &machine_name(str_field(body, "stateMachineArn")?)?)?;
            json!({"stateMachineArn": machine_arn(region, &w), "name": w.name, "status": "ACTIVE",
                   "definition": w.definition, "roleArn": w.role_arn.as_deref().unwrap_or(""), "type": "STANDARD",
                   "creationDate": seconds(w.created_ms), "revisionId": w.revision.to_string()})
        }
        "ListStateMachines" => {
            let (offset, max) = page(body)?;
            let all = wf.list(account)?;
            let items: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(max)
                .map(|w| {
                    json!({"stateMachineArn": machine_arn(region, w), "name": w.name, "type": "STANDARD",
                                "creationDate": seconds(w.created_ms)})
                })
                .collect();
            let mut v = json!({"stateMachines": items});
            if offset + max < all.len() {
                v["nextToken"] = json!((offset + max).to_string());
            }
            v
        }
        "UpdateStateMachine" => {
            let name = machine_name(str_field(body, "stateMachineArn")?)?;
            let role_arn = body.get("roleArn").and_then(Value::as_str);
            // Logging and tracing are taken and not kept (stoke's logs are its own): an update of only those
            // changes nothing but the revision.
            let other = body.get("loggingConfiguration").is_some() || body.get("tracingConfiguration").is_some();
            let definition =
                match body.get("definition") {
                    Some(_) => Some(definition(body)?),
                    None if role_arn.is_some() || other => None,
                    None => return Err(StatesError::new(
                        "MissingRequiredParameter",
                        "Either the definition, the role ARN, the LoggingConfiguration, or the TracingConfiguration \
                         must be specified",
                    )),
                };
            let change = WorkflowChange { definition: definition.as_deref(), prewarm: None, role_arn };
            let w = wf.update(account, &name, change, None)?;
            json!({"updateDate": seconds(w.updated_ms), "revisionId": w.revision.to_string()})
        }
        "DeleteStateMachine" => {
            match wf.delete(account, &machine_name(str_field(body, "stateMachineArn")?)?) {
                Ok(()) | Err(WorkflowError::WorkflowNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            json!({})
        }
        "StartExecution" => {
            let name = machine_name(str_field(body, "stateMachineArn")?)?;
            let input = body.get("input").and_then(Value::as_str);
            let e = wf.start(account, &name, body.get("name").and_then(Value::as_str), input, None, false)?;
            json!({"executionArn": execution_arn(region, &e), "startDate": seconds(e.started_ms)})
        }
        "DescribeExecution" => describe_execution(region, &execution(body)?),
        "StopExecution" => {
            let e = execution(body)?;
            let stopped = wf.stop(
                account,
                &e.id,
                body.get("error").and_then(Value::as_str),
                body.get("cause").and_then(Value::as_str),
            )?;
            json!({"stopDate": seconds(stopped.stopped_ms.unwrap_or(stopped.started_ms))})
        }
        "ListExecutions" if body.get("mapRunArn").is_some() => {
            if body.get("stateMachineArn").is_some() {
                return Err(StatesError::new(
                    "ValidationException",
                    "give stateMachineArn or mapRunArn, not both: a map run's children are listed by its ARN",
                ));
            }
            let (run, _) = map_run(wf, account, str_field(body, "mapRunArn")?)?;
            let details = Workflows::map_run_details(&run)?;
            let (offset, max) = page(body)?;
            let status = match body.get("statusFilter").and_then(Value::as_str) {
                None => None,
                Some(t) => Some(ExecutionStatus::parse(t).ok_or_else(|| {
                    StatesError::new("ValidationException", format!("statusFilter {t:?} is not a known status"))
                })?),
            };
            let mut children = wf.map_run_children(account, &run)?;
            children.retain(|e| status.is_none_or(|s| e.status == s));
            let arn = map_run_arn(region, account, &run.children, &run.id);
            let items: Vec<Value> = children
                .iter()
                .skip(offset)
                .take(max)
                .map(|e| {
                    let index = child_index(e);
                    let mut v = json!({"executionArn": execution_arn(region, e), "name": e.name,
                        "stateMachineArn": workflow_arn(region, account, &e.workflow), "status": e.status.as_str(),
                        "startDate": seconds(e.started_ms), "mapRunArn": arn,
                        "itemCount": index.and_then(|i| details.items.get(i)).copied().unwrap_or(1)});
                    if let Some(t) = e.stopped_ms {
                        v["stopDate"] = json!(seconds(t));
                    }
                    v
                })
                .collect();
            let mut v = json!({"executions": items});
            if children.len() > offset + max {
                v["nextToken"] = json!((offset + max).to_string());
            }
            v
        }
        "DescribeMapRun" => {
            let (run, parent) = map_run(wf, account, str_field(body, "mapRunArn")?)?;
            let (details, items, executions) = wf.map_run_counts(account, &run)?;
            let mut v = json!({
                "mapRunArn": map_run_arn(region, account, &run.children, &run.id),
                "executionArn": execution_arn(region, &parent),
                "status": run.status,
                "startDate": seconds(run.started_ms),
                "maxConcurrency": details.max_concurrency,
                "toleratedFailurePercentage": details.tolerated_failure_percentage,
                "toleratedFailureCount": details.tolerated_failure_count,
                "itemCounts": items,
                "executionCounts": executions,
            });
            if let Some(t) = run.stopped_ms {
                v["stopDate"] = json!(seconds(t));
            }
            v
        }
        "ListMapRuns" => {
            let e = execution(body)?;
            let (offset, max) = page(body)?;
            let runs = wf.map_runs(account, &e.id)?;
            let items: Vec<Value> = runs
                .iter()
                .skip(offset)
                .take(max)
                .map(|r| {
                    let mut v = json!({"executionArn": execution_arn(region, &e),
                        "mapRunArn": map_run_arn(region, account, &r.children, &r.id),
                        "stateMachineArn": workflow_arn(region, account, &r.children),
                        "startDate": seconds(r.started_ms)});
                    if let Some(t) = r.stopped_ms {
                        v["stopDate"] = json!(seconds(t));
                    }
                    v
                })
                .collect();
            let mut v = json!({"mapRuns": items});
            if runs.len() > offset + max {
                v["nextToken"] = json!((offset + max).to_string());
            }
            v
        }
        "ListExecutions" => {
            let name = machine_name(str_field(body, "stateMachineArn")?)?;
            let status = match body.get("statusFilter").and_then(Value::as_str) {
                None => None,
                Some(t) => Some(ExecutionStatus::parse(t).ok_or_else(|| {
                    StatesError::new("ValidationException", format!("statusFilter {t:?} is not a known status"))
                })?),
            };
            let (offset, max) = page(body)?;
            let all = wf.executions(account, Some(&name), status, None, offset + max + 1)?;
            let items: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(max)
                .map(|e| {
                    let mut v = describe_execution(region, e);
                    for k in ["input", "inputDetails", "output", "outputDetails", "error", "cause"] {
                        if let Some(m) = v.as_object_mut() {
                            m.remove(k);
                        }
                    }
                    v
                })
                .collect();
            let mut v = json!({"executions": items});
            if all.len() > offset + max {
                v["nextToken"] = json!((offset + max).to_string());
            }
            v
        }
        "GetExecutionHistory" => {
            let e = execution(body)?;
            let (offset, max) = page(body)?;
            let mut events = wf.history(account, &e.id)?;
            if body.get("reverseOrder").and_then(Value::as_bool) == Some(true) {
                events.reverse();
            }
            let items: Vec<Value> =
                events.iter().skip(offset).take(max).map(|h| history_event(h, region, account)).collect();
            let mut v = json!({"events": items});
            if events.len() > offset + max {
                v["nextToken"] = json!((offset + max).to_string());
            }
            v
        }
        other => {
            return Err(StatesError::new(
                "UnknownOperationException",
                format!(
                    "{other} is not supported; stoke serves CreateStateMachine, DescribeStateMachine, \
                     ListStateMachines, UpdateStateMachine, DeleteStateMachine, StartExecution, StartSyncExecution, \
                     DescribeExecution, StopExecution, ListExecutions, GetExecutionHistory, DescribeMapRun and \
                     ListMapRuns"
                ),
            ))
        }
    }))
}
