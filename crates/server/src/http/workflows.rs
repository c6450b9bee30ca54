//! `/v1/workflows` and `/v1/executions`: state machines, their executions and histories.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoke_core::time::format_rfc3339;
use stoke_store::{ExecutionRecord, ExecutionStatus, WorkflowRecord};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use super::{blocking, AppState};
use crate::accounts::Caller;
use crate::workflows::engine::{execution_arn, workflow_arn};
use crate::workflows::history::Recorded;
use crate::workflows::timeline::Timeline;
use crate::workflows::WorkflowChange;
use stoke_core::cost::{Bill, Pricing};

/// A workflow.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowView {
    pub name: String,
    /// Step Functions' ARN for the state machine.
    pub arn: String,
    /// The Amazon States Language definition.
    pub definition: Value,
    pub revision: u64,
    /// The pre-warm policy of its executions; absent: the server's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prewarm: Option<String>,
    /// The IAM role it was given; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl WorkflowView {
    pub fn new(w: &WorkflowRecord, region: &str) -> Self {
        WorkflowView {
            name: w.name.clone(),
            arn: workflow_arn(region, &w.account, &w.name),
            definition: serde_json::from_str(&w.definition).unwrap_or(Value::Null),
            revision: w.revision,
            prewarm: w.prewarm.clone(),
            role_arn: w.role_arn.clone(),
            created_at: format_rfc3339(w.created_ms),
            updated_at: format_rfc3339(w.updated_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowView>,
}

/// `{name}` of a workflow.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkflowPath {
    /// The workflow's name: 1–80 letters, digits, `-` or `_`.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,80}$")]
    pub name: String,
}

/// A workflow to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflowRequest {
    /// 1–80 letters, digits, `-` or `_`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,80}$")]
    name: String,
    /// The Amazon States Language definition, as a JSON object or as a string holding one.
    definition: Value,
    /// How executions hide cold starts: `off`, `eager`, `jit`; absent or `default`: the server's.
    #[serde(default)]
    prewarm: Option<String>,
    /// The IAM role's ARN, kept and shown to executions as `$$.Execution.RoleArn` (stoke assumes no role).
    #[serde(default)]
    role_arn: Option<String>,
}

/// A new definition; `revision`, when given, must be the revision you read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflowRequest {
    /// The Amazon States Language definition, as a JSON object or as a string holding one.
    definition: Value,
    #[serde(default)]
    revision: Option<u64>,
    /// A new pre-warm policy (`off`, `eager`, `jit`, `default`); absent keeps the current one.
    #[serde(default)]
    prewarm: Option<String>,
    /// A new role ARN; absent keeps the current one.
    #[serde(default)]
    role_arn: Option<String>,
}

/// An execution to start.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Unique per workflow (1–80 letters, digits, `-` or `_`); a UUID when absent.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,80}$")]
    name: Option<String>,
    /// The execution's input (any JSON; `{}` when absent).
    #[serde(default)]
    input: Option<Value>,
    /// This execution's pre-warm policy (`off`, `eager`, `jit`); absent or `default`: the workflow's.
    #[serde(default)]
    prewarm: Option<String>,
    /// Give the execution's steps a shared scratch directory (`stoke.scratch()`), removed when it ends.
    #[serde(default)]
    scratch: bool,
}

/// How to stop an execution.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// An execution.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionView {
    pub id: String,
    pub arn: String,
    pub workflow: String,
    pub name: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

impl ExecutionView {
    pub fn new(e: &ExecutionRecord, region: &str) -> Self {
        let parse = |s: &str| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()));
        ExecutionView {
            id: e.id.clone(),
            arn: execution_arn(region, e),
            workflow: e.workflow.clone(),
            name: e.name.clone(),
            status: e.status.as_str().to_string(),
            input: parse(&e.input),
            output: e.output.as_deref().map(parse),
            error: e.error.clone(),
            cause: e.cause.clone(),
            started_at: format_rfc3339(e.started_ms),
            stopped_at: e.stopped_ms.map(format_rfc3339),
            duration_ms: e.stopped_ms.map(|s| s - e.started_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionList {
    pub executions: Vec<ExecutionView>,
}

/// One history event.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEventView {
    pub id: u64,
    pub timestamp: String,
    /// Step Functions' event type, e.g. `TaskStateEntered`, `LambdaFunctionSucceeded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where in the run: `""` at the top level, else the Parallel branch or Map iteration.
    pub scope: String,
    pub step: u32,
    pub attempt: u32,
    pub details: Value,
}

impl From<&Recorded> for HistoryEventView {
    fn from(h: &Recorded) -> Self {
        HistoryEventView {
            id: h.seq,
            timestamp: format_rfc3339(h.timestamp_ms),
            kind: h.event.kind().into_owned(),
            scope: h.scope.clone(),
            step: h.step,
            attempt: h.attempt,
            details: h.event.details(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub events: Vec<HistoryEventView>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// A definition given as an object or as a string holding one, as JSON text.
fn definition_text(v: Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s),
        obj @ Value::Object(_) => Ok(obj.to_string()),
        _ => Err(ApiError::bad_request(
            "invalid_definition",
            "definition must be a JSON object (the state machine) or a string holding one",
        )
        .with_field("definition")),
    }
}

/// Creates a workflow.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", request_body = CreateWorkflowRequest,
    responses((status = 201, body = WorkflowView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateWorkflowRequest>,
) -> ApiResult<(StatusCode, Json<WorkflowView>)> {
    let text = definition_text(req.definition)?;
    let wf = s.workflows.clone();
    let w = blocking(move || {
        Ok(wf.create(&caller.account.id, &req.name, &text, req.prewarm.as_deref(), req.role_arn.as_deref())?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(WorkflowView::new(&w, &s.region))))
}

/// The account's workflows.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", responses((status = 200, body = WorkflowList)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<WorkflowList>> {
    let wf = s.workflows.clone();
    let all = blocking(move || Ok(wf.list(&caller.account.id)?)).await?;
    Ok(Json(WorkflowList { workflows: all.iter().map(|w| WorkflowView::new(w, &s.region)).collect() }))
}

/// One workflow with its definition.
#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows",
    params(WorkflowPath),
    responses((status = 200, body = WorkflowView), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<WorkflowView>> {
    let wf = s.workflows.clone();
    let w = blocking(move || Ok(wf.get(&caller.account.id, &name)?)).await?;
    Ok(Json(WorkflowView::new(&w, &s.region)))
}

/// Replaces a workflow's definition; running executions keep theirs.
#[utoipa::path(put, path = "/v1/workflows/{name}", tag = "workflows", request_body = UpdateWorkflowRequest,
    params(WorkflowPath),
    responses((status = 200, body = WorkflowView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateWorkflowRequest>,
) -> ApiResult<Json<WorkflowView>> {
    let text = definition_text(req.definition)?;
    let wf = s.workflows.clone();
    let w = blocking(move || {
        let change = WorkflowChange {
            definition: Some(&text),
            prewarm: req.prewarm.as_deref(),
            role_arn: req.role_arn.as_deref(),
        };
        Ok(wf.update(&caller.account.id, &name, change, req.revision)?)
    })
    .await?;
    Ok(Json(WorkflowView::new(&w, &s.region)))
}

/// Deletes a workflow; its executions stay readable and running ones finish.
#[utoipa::path(delete, path = "/v1/workflows/{name}", tag = "workflows",
    params(WorkflowPath),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let wf = s.workflows.clone();
    blocking(move || Ok(wf.delete(&caller.account.id, &name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn input_text(input: Option<Value>) -> Option<String> {
    input.map(|v| v.to_string())
}

/// Starts an execution and returns at once.
#[utoipa::path(post, path = "/v1/workflows/{name}/executions", tag = "workflows", request_body = StartRequest,
    params(WorkflowPath),
    responses((status = 201, body = ExecutionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<StartRequest>,
) -> ApiResult<(StatusCode, Json<ExecutionView>)> {
    let wf = s.workflows.clone();
    let input = input_text(req.input);
    let e = blocking(move || {
        Ok(wf.start(
            &caller.account.id,
            &name,
            req.name.as_deref(),
            input.as_deref(),
            req.prewarm.as_deref(),
            req.scratch,
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(ExecutionView::new(&e, &s.region))))
}

/// Starts an execution and answers when it has ended.
#[utoipa::path(post, path = "/v1/workflows/{name}/run", tag = "workflows", request_body = StartRequest,
    params(WorkflowPath),
    responses((status = 200, body = ExecutionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn run(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<StartRequest>,
) -> ApiResult<Json<ExecutionView>> {
    let wf = s.workflows.clone();
    let input = input_text(req.input);
    let account = caller.account.id.clone();
    let started = blocking(move || {
        Ok(wf.start(&account, &name, req.name.as_deref(), input.as_deref(), req.prewarm.as_deref(), req.scratch)?)
    })
    .await?;
    s.workflows.wait(&started.id).await;
    let wf = s.workflows.clone();
    let e = blocking(move || Ok(wf.describe(&caller.account.id, &started.id)?)).await?;
    Ok(Json(ExecutionView::new(&e, &s.region)))
}

/// A workflow's executions, newest first.
#[utoipa::path(get, path = "/v1/workflows/{name}/executions", tag = "workflows",
    params(WorkflowPath,
           ("status" = Option<String>, Query, description = "RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED"),
           ("before" = Option<String>, Query, description = "the last execution id of the previous page"),
           ("limit" = Option<usize>, Query, description = "at most this many (default 100, at most 1000)",
            minimum = 1, maximum = 1000)),
    responses((status = 200, body = ExecutionList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn executions(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ExecutionQuery>,
) -> ApiResult<Json<ExecutionList>> {
    let status = match q.status.as_deref() {
        None => None,
        Some(text) => Some(ExecutionStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("status {text:?} is not one of RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED"),
            )
            .with_field("status")
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("invalid_parameter", "limit must be 1 to 1000").with_field("limit"));
    }
    let wf = s.workflows.clone();
    let list =
        blocking(move || Ok(wf.executions(&caller.account.id, Some(&name), status, q.before.as_deref(), limit)?))
            .await?;
    Ok(Json(ExecutionList { executions: list.iter().map(|e| ExecutionView::new(e, &s.region)).collect() }))
}

/// One execution.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "workflows",
    params(("id" = String, Path, description = "the execution's id")),
    responses((status = 200, body = ExecutionView), (status = 404, body = ErrorBody)))]
pub async fn describe(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionView>> {
    let wf = s.workflows.clone();
    let e = blocking(move || Ok(wf.describe(&caller.account.id, &id)?)).await?;
    Ok(Json(ExecutionView::new(&e, &s.region)))
}

/// An execution's history, oldest first.
#[utoipa::path(get, path = "/v1/executions/{id}/history", tag = "workflows",
    params(("id" = String, Path, description = "the execution's id")),
    responses((status = 200, body = HistoryView), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<HistoryView>> {
    let wf = s.workflows.clone();
    let events = blocking(move || Ok(wf.history(&caller.account.id, &id)?)).await?;
    Ok(Json(HistoryView { events: events.iter().map(HistoryEventView::from).collect() }))
}

/// One map run of an execution's distributed Map: its children run as executions of their own.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapRunView {
    pub id: String,
    /// Step Functions' map run ARN.
    pub arn: String,
    /// The workflow name its children run under (`<workflow>/<label>`).
    pub children: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED` or `ABORTED`.
    pub status: String,
    pub started: String,
    pub stopped: Option<String>,
    pub max_concurrency: usize,
    pub tolerated_failure_count: usize,
    pub tolerated_failure_percentage: f64,
    /// Items by status: `pending`, `running`, `succeeded`, `failed`, `timedOut`, `aborted`, `total`.
    #[schema(value_type = Object)]
    pub item_counts: serde_json::Value,
    /// Child executions by status (a child holds one item, or a batch of them).
    #[schema(value_type = Object)]
    pub execution_counts: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapRunList {
    pub map_runs: Vec<MapRunView>,
}

/// The map runs an execution's distributed Map states started, with their children's counts.
#[utoipa::path(get, path = "/v1/executions/{id}/map-runs", tag = "workflows",
    params(("id" = String, Path, description = "the execution's id")),
    responses((status = 200, body = MapRunList), (status = 404, body = ErrorBody)))]
pub async fn map_runs(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<MapRunList>> {
    let wf = s.workflows.clone();
    let region = s.region.clone();
    let list = blocking(move || {
        let account = &caller.account.id;
        let mut out = Vec::new();
        for run in wf.map_runs(account, &id)? {
            let (d, item_counts, execution_counts) = wf.map_run_counts(account, &run)?;
            out.push(MapRunView {
                arn: crate::workflows::engine::map_run_arn(&region, account, &run.children, &run.id),
                id: run.id,
                children: run.children,
                status: run.status,
                started: stoke_core::time::format_rfc3339(run.started_ms),
                stopped: run.stopped_ms.map(stoke_core::time::format_rfc3339),
                max_concurrency: d.max_concurrency,
                tolerated_failure_count: d.tolerated_failure_count,
                tolerated_failure_percentage: d.tolerated_failure_percentage,
                item_counts,
                execution_counts,
            });
        }
        Ok(out)
    })
    .await?;
    Ok(Json(MapRunList { map_runs: list }))
}

/// The child executions of one of the execution's map runs, newest first: each is an execution of its own
/// (`GET /v1/executions/{id}` and its history take their ids).
#[utoipa::path(get, path = "/v1/executions/{id}/map-runs/{run}/executions", tag = "workflows",
    params(("id" = String, Path, description = "the execution's id"),
           ("run" = String, Path, description = "the map run's id (`id` of `GET /v1/executions/{id}/map-runs`)")),
    responses((status = 200, body = ExecutionList), (status = 404, body = ErrorBody)))]
pub async fn map_run_executions(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, run)): Path<(String, String)>,
) -> ApiResult<Json<ExecutionList>> {
    let wf = s.workflows.clone();
    let list = blocking(move || {
        let account = &caller.account.id;
        let found = wf.map_runs(account, &id)?.into_iter().find(|r| r.id == run);
        let Some(found) = found else {
            return Err(crate::workflows::WorkflowError::ExecutionNotFound(format!(
                "execution {id} has no map run {run}: GET /v1/executions/{id}/map-runs lists them"
            ))
            .into());
        };
        Ok(wf.map_run_children(account, &found)?)
    })
    .await?;
    Ok(Json(ExecutionList { executions: list.iter().map(|e| ExecutionView::new(e, &s.region)).collect() }))
}

/// Stops a running execution (it ends ABORTED).
#[utoipa::path(post, path = "/v1/executions/{id}/stop", tag = "workflows", request_body = StopRequest,
    params(("id" = String, Path, description = "the execution's id")),
    responses((status = 200, body = ExecutionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<StopRequest>,
) -> ApiResult<Json<ExecutionView>> {
    let wf = s.workflows.clone();
    let e = blocking(move || Ok(wf.stop(&caller.account.id, &id, req.error.as_deref(), req.cause.as_deref())?)).await?;
    Ok(Json(ExecutionView::new(&e, &s.region)))
}

/// Where an execution's time went: per step, the queued, sandbox, init, running and waiting stretches
/// (milliseconds since the start), cold starts, and the bill.
#[utoipa::path(get, path = "/v1/executions/{id}/timeline", tag = "workflows",
    params(("id" = String, Path, description = "the execution's id")),
    responses((status = 200, body = Timeline), (status = 404, body = ErrorBody)))]
pub async fn timeline(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Timeline>> {
    let wf = s.workflows.clone();
    Ok(Json(blocking(move || Ok(wf.timeline(&caller.account.id, &id)?)).await?))
}

/// What an execution cost: billed, init and held milliseconds, GB-seconds and money, in all and per step.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostView {
    pub execution: String,
    pub pricing: Pricing,
    pub total: Bill,
    pub steps: Vec<StepCost>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepCost {
    pub scope: String,
    pub step: u32,
    pub state: String,
    pub bill: Bill,
}

/// What an execution cost (only steps that invoked functions are listed).
#[utoipa::path(get, path = "/v1/executions/{id}/cost", tag = "workflows",
    params(("id" = String, Path, description = "the execution's id")),
    responses((status = 200, body = CostView), (status = 404, body = ErrorBody)))]
pub async fn cost(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<CostView>> {
    let wf = s.workflows.clone();
    let execution = id.clone();
    let t = blocking(move || Ok(wf.timeline(&caller.account.id, &id)?)).await?;
    let steps = t
        .steps
        .into_iter()
        .filter_map(|st| Some(StepCost { bill: st.bill?, scope: st.scope, step: st.step, state: st.state }))
        .collect();
    Ok(Json(CostView { execution, pricing: s.workflows.services().pricing, total: t.bill, steps }))
}
