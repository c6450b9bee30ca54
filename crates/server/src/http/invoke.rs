//! `POST /v1/functions/{function}/invoke`, `GET /v1/instances`, `GET /v1/functions/{function}/logs`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use stoke_scheduler::{InvokeRequest, Outcome};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiQuery, Body};
use super::views::{FunctionPath, FunctionRefPath};
use super::{blocking, AppState};
use crate::accounts::Caller;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvokeQuery {
    /// `tail` returns the invocation's log (base64) in `X-Stoke-Log`.
    log: Option<String>,
    /// A durable function: the execution's name (the same name with the same event is the same
    /// execution). A new id when left out.
    #[param(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")]
    durable_execution_name: Option<String>,
}

/// Runs the function with the request body as its event and returns what it returned. A function error
/// still answers 200, with `X-Stoke-Function-Error` naming the error type (as Lambda does).
#[utoipa::path(post, path = "/v1/functions/{function}/invoke", tag = "invoke",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "the event: any JSON (`{}` when the body is left out)"),
    params(FunctionRefPath, InvokeQuery),
    responses(
        (status = 200, description = "the function's output; see X-Stoke-* headers for the report"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn invoke(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiQuery(q): ApiQuery<InvokeQuery>,
    Body(payload): Body,
) -> ApiResult<Response> {
    let payload = crate::invoke::Invoker::payload(payload)?;
    if let Some(name) = q.durable_execution_name.as_deref().filter(|n| !crate::durable::valid_name(n)) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("durable_execution_name {name:?} is not valid: use 1-64 letters, digits, '-' or '_'"),
        )
        .with_field("durable_execution_name"));
    }
    let target = s.invoker.check(&caller.account.id, &function).await?;
    if target.config.durable.is_some() {
        // A durable function: the invocation starts an execution and answers what it came to.
        let started = s.durable.start(&target, q.durable_execution_name.as_deref(), &payload).await?;
        let answer = s.durable.answer_sync(&caller.account.id, &started, &target).await?;
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-stoke-durable-execution-arn", Some(started.arn)),
            ("x-stoke-executed-version", Some(answer.version)),
            ("x-stoke-function-error", answer.error_type),
            ("content-type", Some("application/json".to_string())),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        return Ok((StatusCode::OK, headers, answer.body).into_response());
    }
    let want_log = q.log.as_deref() == Some("tail");
    let req = InvokeRequest { payload, client_context: None, want_log, request_id: None, ..Default::default() };
    let (result, version) = s.invoker.invoke(&caller.account.id, &function, req).await?;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    let r = &result.report;
    set("x-stoke-request-id", result.request_id.clone());
    set("x-stoke-executed-version", version);
    set("x-stoke-duration-ms", format!("{:.3}", r.duration_ms));
    set("x-stoke-billed-duration-ms", r.billed_ms.to_string());
    set("x-stoke-max-memory-used-mb", r.max_memory_used_mb.to_string());
    if let Some(gpu) = r.max_gpu_memory_used_mb {
        set("x-stoke-max-gpu-memory-used-mb", gpu.to_string());
    }
    set("x-stoke-instance", r.instance.to_string());
    if let Some(node) = &result.node {
        // In a cluster: the node that owns the version's queue ran it.
        set("x-stoke-node", node.clone());
    }
    if let Some(init) = r.init_duration_ms {
        set("x-stoke-init-duration-ms", format!("{init:.3}"));
    }
    if want_log {
        let text = result.log.join("\n");
        let tail = &text.as_bytes()[text.len().saturating_sub(4096)..];
        set("x-stoke-log", base64::engine::general_purpose::STANDARD.encode(tail));
    }
    set("content-type", "application/json".to_string());
    let body = match result.outcome {
        Outcome::Success(body) => body,
        Outcome::FunctionError { error_type, body } => {
            set("x-stoke-function-error", error_type);
            body
        }
    };
    Ok((StatusCode::OK, headers, body).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstancesQuery {
    /// Only this function's instances: its name or unqualified ARN.
    #[param(
        max_length = 256,
        pattern = r"^(?:[0-9]{12}:function:|arn:aws[^:]*:lambda:[^:]*:[0-9]{12}:function:)?[A-Za-z0-9_-]{1,64}$"
    )]
    function: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceView {
    pub id: u64,
    pub function: String,
    pub version: String,
    pub state: stoke_core::pool::InstanceState,
    pub pid: Option<u32>,
    pub invocations: u64,
    pub init_duration_ms: Option<f64>,
    /// State changes as [state, unix ms].
    pub timeline: Vec<(stoke_core::pool::InstanceState, i64)>,
    /// The node it runs on (in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceList {
    pub sandbox: String,
    pub instances: Vec<InstanceView>,
    /// Generic instances ready on this node (set up before their function is known), by kind.
    #[serde(default)]
    pub generic: std::collections::BTreeMap<String, usize>,
    /// Python zygotes ready on this node (one per layer set).
    #[serde(default)]
    pub zygotes: usize,
    /// VM snapshots ready on this node (`--sandbox vm`), by shape — memory, vCPUs, `/tmp` size, as in
    /// `128m-1c-512t`: VMs of these shapes are restored from a saved guest rather than booted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// In a cluster: the live nodes that did not answer in time (their instances are missing here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// This node's instances of `account` (of one function, if given), for `/v1/instances` and for peers.
pub(crate) fn local_instances(
    s: &AppState,
    account: &stoke_core::AccountId,
    function: Option<&stoke_core::FunctionName>,
) -> Vec<InstanceView> {
    let node = s.cluster.as_ref().map(|c| c.name());
    s.invoker
        .scheduler()
        .instances(account, function)
        .into_iter()
        .map(|i| InstanceView {
            id: i.id,
            function: i.function,
            version: i.version,
            state: i.state,
            pid: i.pid,
            invocations: i.invocations,
            init_duration_ms: i.init_duration_ms,
            timeline: i.timeline,
            node: node.clone(),
        })
        .collect()
}

/// The caller's running instances and their state timelines; in a cluster, those of every live node.
#[utoipa::path(get, path = "/v1/instances", tag = "invoke", params(InstancesQuery),
    responses((status = 200, body = InstanceList), (status = 400, body = ErrorBody)))]
pub async fn instances(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<InstancesQuery>,
) -> ApiResult<Json<InstanceList>> {
    let function = match q.function {
        Some(f) => {
            let registry = s.registry.clone();
            let acct = caller.account.id.clone();
            Some(blocking(move || Ok(registry.parse_function_name(&acct, &f)?)).await?)
        }
        None => None,
    };
    let mut instances = local_instances(&s, &caller.account.id, function.as_ref());
    let mut unreachable = Vec::new();
    if let Some(c) = s.cluster.clone() {
        let (theirs, missing) = peer_instances(&c, &caller.account.id, function.as_ref()).await?;
        instances.extend(theirs);
        unreachable = missing;
    }
    let scheduler = s.invoker.scheduler();
    Ok(Json(InstanceList {
        sandbox: scheduler.sandbox_kind().to_string(),
        instances,
        generic: scheduler.generic_ready().into_iter().collect(),
        zygotes: scheduler.zygotes_ready(),
        snapshots: scheduler.snapshots_ready(),
        unreachable,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines at or after this time (milliseconds since the Unix epoch).
    since_ms: Option<i64>,
    /// At most this many of the newest lines (default 1000; more than 10000 reads as 10000).
    #[param(maximum = 18446744073709551615u64)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLineView {
    pub at_ms: i64,
    pub request_id: Option<String>,
    pub instance: u64,
    pub text: String,
    /// The node whose instance wrote it (in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogList {
    pub lines: Vec<LogLineView>,
    /// In a cluster: the live nodes that did not answer in time (their lines are missing here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// This node's most recent `limit` log lines of a function since `since_ms`, oldest first.
fn local_logs(
    s: &AppState,
    account: &stoke_core::AccountId,
    function: &stoke_core::FunctionName,
    since_ms: i64,
    limit: usize,
) -> Vec<LogLineView> {
    let node = s.cluster.as_ref().map(|c| c.name());
    s.invoker
        .scheduler()
        .logs(account, function, since_ms, limit)
        .into_iter()
        .map(|l| LogLineView {
            at_ms: l.at_ms,
            request_id: l.request_id.map(|r| r.to_string()),
            instance: l.instance,
            text: l.text,
            node: node.clone(),
        })
        .collect()
}

/// A function's recent log lines (all versions), oldest first.
#[utoipa::path(get, path = "/v1/functions/{function}/logs", tag = "invoke",
    params(FunctionPath, LogsQuery),
    responses((status = 200, body = LogList), (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Json<LogList>> {
    let name = log_function(&s, &caller, function).await?;
    let (since_ms, limit) = (q.since_ms.unwrap_or(0), q.limit.unwrap_or(1000).min(10_000));
    Ok(Json(collect_logs(&s, &caller.account.id, &name, since_ms, limit).await?))
}

/// The function whose logs are asked for, once it is known to exist in the caller's account.
async fn log_function(s: &AppState, caller: &Caller, function: String) -> ApiResult<stoke_core::FunctionName> {
    let registry = s.registry.clone();
    let acct = caller.account.id.clone();
    blocking(move || {
        let name = registry.parse_function_name(&acct, &function)?;
        registry.get_function(&acct, &name)?;
        Ok(name)
    })
    .await
}

/// The newest `limit` lines of a function since `since_ms`, from this node and, in a cluster, from the nodes
/// its invocations ran on, oldest first.
pub(super) async fn collect_logs(
    s: &AppState,
    account: &stoke_core::AccountId,
    name: &stoke_core::FunctionName,
    since_ms: i64,
    limit: usize,
) -> ApiResult<LogList> {
    let mut lines = local_logs(s, account, name, since_ms, limit);
    let mut unreachable = Vec::new();
    if let Some(c) = s.cluster.clone() {
        // A function's invocations run on its queue's owner and on the nodes hosting that queue: its lines
        // are wherever they ran.
        let query = [
            ("account", account.to_string()),
            ("function", name.to_string()),
            ("since_ms", since_ms.to_string()),
            ("limit", limit.to_string()),
        ];
        let (theirs, missing) = ask_peers::<Vec<LogLineView>>(&c, "/internal/v1/logs", &query).await?;
        lines.extend(theirs.into_iter().flatten());
        lines.sort_by_key(|l| l.at_ms);
        lines.drain(..lines.len().saturating_sub(limit));
        unreachable = missing;
    }
    Ok(LogList { lines, unreachable })
}

/// How often a log stream looks for new lines.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// How often a quiet log stream says it is still there (a comment line), so that proxies keep it open.
const STREAM_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /v1/functions/{function}/logs/stream`: a function's log lines as they are written, as server-sent
/// events (`data: <line as JSON>`), from `since_ms` (default: now) on, until the client goes away or the
/// server shuts down. What the console's live logs read (with `fetch`, so that the key travels in the
/// `Authorization` header, never in the URL). Not in the OpenAPI document: an answer that never ends is not
/// something a generated client or a fuzzer can call.
pub async fn logs_stream(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    let name = log_function(&s, &caller, function).await?;
    let since_ms = q.since_ms.unwrap_or_else(crate::registry::now_ms);
    let account = caller.account.id.clone();
    let closing = s.closing.subscribe();
    let follow = LogFollow { since_ms, seen: Vec::new(), quiet: std::time::Duration::ZERO };
    let events = futures_util::stream::unfold((s, follow, closing), move |(s, mut follow, mut closing)| {
        let (account, name) = (account.clone(), name.clone());
        async move {
            loop {
                if *closing.borrow() {
                    return None;
                }
                let batch = collect_logs(&s, &account, &name, follow.since_ms, 1000).await.ok();
                let chunk = batch.map(|b| follow.take(b.lines)).unwrap_or_default();
                if !chunk.is_empty() {
                    follow.quiet = std::time::Duration::ZERO;
                    return Some((Ok::<_, std::convert::Infallible>(chunk), (s, follow, closing)));
                }
                if follow.quiet >= STREAM_KEEPALIVE {
                    follow.quiet = std::time::Duration::ZERO;
                    return Some((Ok(": still here\n\n".to_string()), (s, follow, closing)));
                }
                tokio::select! {
                    () = tokio::time::sleep(STREAM_POLL) => follow.quiet += STREAM_POLL,
                    _ = closing.changed() => return None,
                }
            }
        }
    });
    let mut response = axum::body::Body::from_stream(events).into_response();
    let headers = response.headers_mut();
    headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Where a log stream is: lines from `since_ms` on are new, but for those at exactly `since_ms` it has sent.
struct LogFollow {
    since_ms: i64,
    /// The lines of the newest millisecond already sent: (instance, text).
    seen: Vec<(u64, String)>,
    quiet: std::time::Duration,
}

impl LogFollow {
    /// The new lines among `lines` (oldest first) as server-sent events; moves past them.
    fn take(&mut self, lines: Vec<LogLineView>) -> String {
        let mut out = String::new();
        for line in lines {
            if line.at_ms < self.since_ms {
                continue;
            }
            let key = (line.instance, line.text.clone());
            if line.at_ms == self.since_ms && self.seen.contains(&key) {
                continue;
            }
            if line.at_ms > self.since_ms {
                self.since_ms = line.at_ms;
                self.seen.clear();
            }
            self.seen.push(key);
            if let Ok(json) = serde_json::to_string(&line) {
                out.push_str("data: ");
                out.push_str(&json);
                out.push_str("\n\n");
            }
        }
        out
    }
}

#[derive(Debug, Deserialize)]
pub struct PeerLogsQuery {
    account: String,
    function: String,
    since_ms: i64,
    limit: usize,
}

/// A peer reads this node's log lines of a function (for that function's `/v1/functions/{f}/logs` there).
pub async fn peer_logs(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<PeerLogsQuery>,
) -> ApiResult<Json<Vec<LogLineView>>> {
    super::cluster::peer_authorized(&s, &headers)?;
    let account = peer_param("account", stoke_core::AccountId::parse(&q.account))?;
    let function = peer_param("function", stoke_core::FunctionName::parse(&q.function))?;
    Ok(Json(local_logs(&s, &account, &function, q.since_ms, q.limit.min(10_000))))
}

/// A peer's query parameter as parsed (400 naming `field` when it is not valid).
fn peer_param<T>(field: &str, parsed: Result<T, stoke_core::ValidationError>) -> ApiResult<T> {
    parsed.map_err(|e| ApiError::bad_request("invalid_parameter", e.message).with_field(field))
}

/// Prometheus metrics of the whole server (admin API key required: they cover every account).
pub async fn metrics(State(s): State<AppState>, caller: Caller) -> ApiResult<Response> {
    if !caller.account.is_admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only an admin account may read /metrics"));
    }
    let mut body = s.invoker.scheduler().metrics();
    // OpenMetrics ends with `# EOF`: the server's own families go before it.
    let eof = body.rfind("# EOF").unwrap_or(body.len());
    body.truncate(eof);
    let node = s.cluster.as_ref().map(|c| c.name());
    body.push_str(&s.invoker.event_metrics(node.as_deref()));
    body.push_str(&s.schedules.metrics(node.as_deref()));
    if let Some(c) = &s.cluster {
        use std::fmt::Write;
        let etcd = c.store();
        let _ = write!(
            body,
            "# HELP stoke_etcd_requests Requests this node sent to etcd's key-value API: while serving calls, and \
             for background work (statistics flushes, the Event queue's poll, the reaper).\n# TYPE stoke_etcd_requests counter\n\
             stoke_etcd_requests_total{{node=\"{node}\",source=\"requests\"}} {}\n\
             stoke_etcd_requests_total{{node=\"{node}\",source=\"background\"}} {}\n",
            etcd.requests(),
            etcd.background_requests(),
            node = c.name(),
        );
    }
    body.push_str("# EOF\n");
    Ok(([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response())
}

/// How long `/v1/instances` waits for a peer's list.
const PEER_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The instances of `account` (of one function) on every other live node, asked concurrently; and the live
/// nodes that did not answer in time.
pub(crate) async fn peer_instances(
    cluster: &std::sync::Arc<crate::cluster::Cluster>,
    account: &stoke_core::AccountId,
    function: Option<&stoke_core::FunctionName>,
) -> ApiResult<(Vec<InstanceView>, Vec<String>)> {
    let mut query = vec![("account", account.to_string())];
    if let Some(f) = function {
        query.push(("function", f.to_string()));
    }
    let (lists, unreachable) = ask_peers::<Vec<InstanceView>>(cluster, "/internal/v1/instances", &query).await?;
    Ok((lists.into_iter().flatten().collect(), unreachable))
}

/// Asks every other live node for `path` with `query`, concurrently, each for at most
/// [`PEER_LIST_TIMEOUT`]; returns the answers and the live nodes that did not answer in time.
async fn ask_peers<T: serde::de::DeserializeOwned>(
    cluster: &std::sync::Arc<crate::cluster::Cluster>,
    path: &str,
    query: &[(&str, String)],
) -> ApiResult<(Vec<T>, Vec<String>)> {
    let c = cluster.clone();
    let peers = blocking(move || c.peers().map_err(|e| crate::registry::RegistryError::Store(e).into())).await?;
    let asks = peers.into_iter().map(|(name, address)| {
        let request = cluster
            .http()
            .get(format!("{address}{path}"))
            .query(query)
            .header(crate::cluster::SECRET_HEADER, cluster.secret())
            .timeout(PEER_LIST_TIMEOUT);
        async move {
            let answer = async { request.send().await?.error_for_status()?.json::<T>().await };
            (name, answer.await)
        }
    });
    let mut found = Vec::new();
    let mut unreachable = Vec::new();
    for (name, answer) in futures_util::future::join_all(asks).await {
        match answer {
            Ok(one) => found.push(one),
            Err(e) => {
                tracing::debug!(node = %name, error = %e, path, "a peer did not answer");
                unreachable.push(name);
            }
        }
    }
    Ok((found, unreachable))
}

#[derive(Debug, Deserialize)]
pub struct PeerInstancesQuery {
    account: String,
    function: Option<String>,
}

/// A peer lists this node's instances of an account (for that account's `/v1/instances` on the peer).
pub async fn peer_list_instances(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<PeerInstancesQuery>,
) -> ApiResult<Json<Vec<InstanceView>>> {
    super::cluster::peer_authorized(&s, &headers)?;
    let account = peer_param("account", stoke_core::AccountId::parse(&q.account))?;
    let function =
        q.function.as_deref().map(|f| peer_param("function", stoke_core::FunctionName::parse(f))).transpose()?;
    Ok(Json(local_instances(&s, &account, function.as_ref())))
}
