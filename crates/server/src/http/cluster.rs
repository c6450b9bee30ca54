//! The cluster's routes: `GET /v1/nodes` for operators, and `/internal/v1/blobs/{sha256}`, which only peers
//! presenting the cluster secret may call.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stoke_scheduler::{InvokeRequest, StartSignal};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{blocking, AppState};
use crate::accounts::Caller;
use crate::cluster::{is_sha256, SECRET_HEADER};

/// A node of the cluster.
// `ClusterNode` in the document: its `NodeView` is what `GET /v1/node` answers (`super::views::NodeView`), and
// two schemas of one name would replace each other.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ClusterNode)]
pub struct NodeView {
    pub name: String,
    /// `live` while the node renews its lease; `gone` after its lease lapsed.
    pub state: String,
    /// Where peers and clients reach it.
    pub advertise: String,
    pub version: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub gpus: u32,
    pub sandbox: String,
    /// Live instances at its last heartbeat.
    pub instances: u64,
    /// Requests it has sent to etcd's key-value API (0 on a single node).
    pub etcd_requests: u64,
    /// Function queues it owns: invocations of those versions run on it, whichever node received them
    /// (0 on a single node, which has no cluster-wide queues).
    #[serde(default)]
    pub queues: u64,
    /// Feeders pulling other nodes' queues' invocations onto its instances (it hosts them for their owners).
    #[serde(default)]
    pub hosting: u64,
    /// Room other nodes' queues hold reserved on it now: configured MB and GPUs.
    #[serde(default)]
    pub reserved_mb: u64,
    #[serde(default)]
    pub reserved_gpus: u32,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// Its GPUs and what its instances hold of each (at its last heartbeat, in a cluster).
    #[serde(default)]
    pub gpu_use: Vec<super::views::GpuView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeList {
    /// `cluster` when nodes share an etcd, `single` for a node on its own store.
    pub mode: String,
    pub nodes: Vec<NodeView>,
}

/// The nodes of the cluster with their state, capacity and load (admin only). A single node lists itself.
#[utoipa::path(get, path = "/v1/nodes", tag = "accounts",
    responses((status = 200, body = NodeList), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<NodeList>> {
    if !caller.account.is_admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only an admin account may list the nodes"));
    }
    let instances = u64::try_from(s.invoker.scheduler().node_status().instances).unwrap_or(u64::MAX);
    let Some(cluster) = s.cluster.clone() else {
        let limits = s.registry.node_limits();
        return Ok(Json(NodeList {
            mode: "single".into(),
            nodes: vec![NodeView {
                name: "local".into(),
                state: "live".into(),
                advertise: String::new(),
                version: env!("CARGO_PKG_VERSION").into(),
                memory_mb: u64::from(limits.max_memory_mb),
                cpus: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)),
                gpus: limits.gpu_count,
                sandbox: s.invoker.scheduler().sandbox_kind().to_string(),
                instances,
                etcd_requests: 0,
                queues: 0,
                hosting: 0,
                reserved_mb: 0,
                reserved_gpus: 0,
                started_ms: 0,
                heartbeat_ms: crate::registry::now_ms(),
                gpu_use: crate::node_gpus(s.invoker.scheduler()).into_iter().map(Into::into).collect(),
            }],
        }));
    };
    let (nodes, reserved) = blocking(move || {
        let store = |e| -> ApiError { crate::registry::RegistryError::Store(e).into() };
        Ok((cluster.nodes().map_err(store)?, cluster.store().reservations(crate::registry::now_ms()).map_err(store)?))
    })
    .await?;
    Ok(Json(NodeList {
        mode: "cluster".into(),
        nodes: nodes
            .into_iter()
            .map(|n| NodeView {
                reserved_mb: reserved.get(&n.node.name).map_or(0, |r| r.memory_mb),
                reserved_gpus: reserved.get(&n.node.name).map_or(0, |r| r.gpus),
                name: n.node.name,
                state: n.state,
                advertise: n.node.advertise,
                version: n.node.version,
                memory_mb: n.node.memory_mb,
                cpus: n.node.cpus,
                gpus: n.node.gpus,
                sandbox: n.node.sandbox,
                instances: n.node.instances,
                etcd_requests: n.node.etcd_requests,
                queues: n.node.queues,
                hosting: n.node.hosting,
                started_ms: n.node.started_ms,
                heartbeat_ms: n.node.heartbeat_ms,
                gpu_use: n.node.gpu_use.into_iter().map(Into::into).collect(),
            })
            .collect(),
    }))
}

/// The cluster, when the caller is a peer presenting the secret: 404 on a single node, 401 otherwise.
pub(crate) fn peer_authorized(s: &AppState, headers: &HeaderMap) -> ApiResult<std::sync::Arc<crate::cluster::Cluster>> {
    let cluster = s
        .cluster
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_route", "this node is not part of a cluster"))?;
    let presented = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    if !cluster.authorized(presented) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "internal calls are for the nodes of this cluster: present the cluster secret",
        ));
    }
    Ok(cluster)
}

/// The cluster of an internal call from a peer: 404 on a single node (there is no internal API), 401 without
/// the secret, 400 for a name that is not a sha256.
fn peer_call(s: &AppState, headers: &HeaderMap, sha256: &str) -> ApiResult<std::sync::Arc<crate::cluster::Cluster>> {
    let cluster = peer_authorized(s, headers)?;
    if !is_sha256(sha256) {
        return Err(ApiError::bad_request("invalid_parameter", format!("{sha256:?} is not a sha256 in lowercase hex"))
            .with_field("sha256"));
    }
    Ok(cluster)
}

/// A peer fetches an archive this node keeps.
pub async fn get_blob(State(s): State<AppState>, headers: HeaderMap, Path(sha256): Path<String>) -> ApiResult<Vec<u8>> {
    let cluster = peer_call(&s, &headers, &sha256)?;
    let path = cluster.blobs().path(&sha256);
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("this node has no archive {sha256}")))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// A peer hands this node an archive to keep; it is kept only if its content hashes to its name.
pub async fn put_blob(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(sha256): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let cluster = peer_call(&s, &headers, &sha256)?;
    if stoke_store::sha256_hex(&body) != sha256 {
        return Err(ApiError::bad_request("digest_mismatch", "the archive's content does not hash to its name"));
    }
    blocking(move || cluster.blobs().keep(&sha256, &body).map_err(ApiError::internal)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A peer forwards an invocation of a version whose queue this node owns (`crate::queues`). The answer is a
/// stream: `S` once an instance took the invocation, then its outcome; so a peer that loses this node knows
/// whether the invocation had started.
pub async fn peer_invoke(State(s): State<AppState>, headers: HeaderMap, payload: Bytes) -> ApiResult<Response> {
    use crate::queues::{encode_outcome, STARTED};
    let cluster = peer_authorized(&s, &headers)?;
    let (account, reference, version) = forwarded_target(&headers)?;
    let (signal, mut started) = StartSignal::new();
    let req = crate::queues::request_from_headers(&headers, payload).map_err(|name| {
        ApiError::bad_request("invalid_parameter", format!("{name} is not what stoke sends")).with_field(name)
    })?;
    let req = InvokeRequest { started: Some(signal), ..req };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let (invoker, node) = (s.invoker.clone(), cluster.name());
    tokio::spawn(async move {
        // What the forwarding node can act on: a failure here is the scheduler's, or this node's view of the
        // function (deleted, blocked meanwhile), which it reports as the platform's.
        let run = crate::queues::RunHere::run_here(invoker.as_ref(), &account, &reference, &version, req, None);
        tokio::pin!(run);
        let mut told = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                heard = &mut started, if !told => {
                    told = true;
                    if heard.is_ok() {
                        let _ = tx.send(Bytes::from_static(&[STARTED])).await;
                    }
                }
            }
        };
        let _ = tx.send(encode_outcome(outcome, &node)).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], axum::body::Body::from_stream(body))
        .into_response())
}

/// The cluster's queues, when the caller is a peer presenting the secret (as [`peer_authorized`]).
fn peer_queues(s: &AppState, headers: &HeaderMap) -> ApiResult<std::sync::Arc<crate::queues::Queues>> {
    peer_authorized(s, headers)?;
    s.invoker
        .queues()
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_route", "this node is not part of a cluster"))
}

/// A header's value as text, if present (400 naming it when it is not text).
fn header_text(headers: &HeaderMap, name: &'static str) -> ApiResult<Option<String>> {
    headers
        .get(name)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid_parameter", format!("{name} is not text")).with_field(name))
}

/// The account, reference and version a peer's internal call names in its headers.
fn forwarded_target(headers: &HeaderMap) -> ApiResult<(stoke_core::AccountId, String, String)> {
    use crate::queues::header;
    let required = |name: &'static str| -> ApiResult<String> {
        header_text(headers, name)?.ok_or_else(|| {
            ApiError::bad_request("invalid_parameter", format!("a forwarded invocation needs {name}")).with_field(name)
        })
    };
    let account = stoke_core::AccountId::parse(&required(header::ACCOUNT)?)
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.message).with_field(header::ACCOUNT))?;
    Ok((account, required(header::REFERENCE)?, required(header::VERSION)?))
}

/// An owner asks this node to host instances of one of its queues (`crate::queues`).
pub async fn peer_host(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let queues = peer_queues(&s, &headers)?;
    let req: crate::queues::HostRequest = peer_body(&body, "the hosting request")?;
    if req.slots == 0 {
        return Err(ApiError::bad_request("invalid_parameter", "slots must be at least 1").with_field("slots"));
    }
    if req.warm > 0 {
        // Instances for invocations the owner expects soon, started here ahead of them.
        let account = stoke_core::AccountId::parse(&req.queue.account)
            .map_err(|e| ApiError::bad_request("invalid_parameter", e.message).with_field("account"))?;
        let target = s.invoker.version_target(&account, &req.reference, &req.queue.version).await?;
        let ttl =
            crate::queues::HOST_WARM_TTL.min(std::time::Duration::from_secs(u64::from(target.config.keep_alive_s)));
        s.invoker.scheduler().announce(&target, req.warm, ttl);
    }
    let feeders = queues.host(req.queue, req.reference, req.owner, req.slots);
    Ok(Json(serde_json::json!({ "feeders": feeders })))
}

/// A node hosting instances of a queue this node owns takes its next invocation: 200 with the payload
/// and the invocation's headers, or 204 when none came within `crate::queues::TAKE_WAIT`.
pub async fn peer_take(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    use crate::queues::{TAKER_HEADER, TAKE_WAIT};
    let queues = peer_queues(&s, &headers)?;
    let taker = header_text(&headers, TAKER_HEADER)?.ok_or_else(|| {
        ApiError::bad_request("invalid_parameter", format!("taking work needs {TAKER_HEADER}")).with_field(TAKER_HEADER)
    })?;
    let target = owned_target(&s, &headers).await?;
    let Some(taken) = s.invoker.scheduler().take(&target, TAKE_WAIT).await else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let reservation = taken.prepared().map(|p| p.id());
    let req = queues.taken_by(&taker, taken);
    let mut out = crate::queues::request_headers(&req);
    if let Some(id) = reservation {
        out.insert(crate::queues::header::RESERVATION, axum::http::HeaderValue::from(id));
    }
    Ok((StatusCode::OK, out, req.payload).into_response())
}

/// A node whose instance took a preparation from this node's queue waits for its turn: 200 with the step's
/// input, 410 with why the reservation was released, or 204 when neither came within
/// `crate::queues::TURN_WAIT` (it asks again).
pub async fn peer_turn(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let queues = peer_queues(&s, &headers)?;
    let prepared = queues.turn_of(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no preparation {id} is running for this node's queues (it ended, or its node was seen lost)"),
        )
    })?;
    match tokio::time::timeout(crate::queues::TURN_WAIT, prepared.turn()).await {
        Err(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(Ok(input)) => Ok((StatusCode::OK, input).into_response()),
        Ok(Err(why)) => Err(ApiError::new(StatusCode::GONE, "reservation_released", why)),
    }
}

/// The target of a peer's call about one of this node's queues (its owner's), when the caller is a peer
/// (as [`peer_queues`]).
async fn owned_target(s: &AppState, headers: &HeaderMap) -> ApiResult<std::sync::Arc<stoke_scheduler::InvokeTarget>> {
    peer_queues(s, headers)?;
    let (account, reference, version) = forwarded_target(headers)?;
    Ok(s.invoker.version_target(&account, &reference, &version).await?)
}

/// A peer's JSON body, as stoke sends it (`what` names it in the 400 otherwise).
fn peer_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_parameter", format!("{what} is not one stoke sends: {e}")))
}

/// A step running on another node prepares a later step whose queue this node owns (seed 000's `prepare`):
/// this node's pool reserves the instance, on whichever node it places it.
pub async fn peer_prepare(State(s): State<AppState>, headers: HeaderMap, params: Bytes) -> ApiResult<Response> {
    use crate::queues::header;
    let target = owned_target(&s, &headers).await?;
    let execution = header_text(&headers, header::EXECUTION)?.ok_or_else(|| {
        ApiError::bad_request("invalid_parameter", format!("a preparation needs {}", header::EXECUTION))
            .with_field(header::EXECUTION)
    })?;
    let id = s
        .invoker
        .scheduler()
        .prepare(&target, execution.into(), params)
        .map_err(crate::invoke::InvokeFailure::Scheduler)?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "reservationId": id }))).into_response())
}

/// The pool of a queue this node owns, as its controller sees it (a peer's pre-warmer or `is_available`).
pub async fn peer_pool(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<stoke_core::pool::PoolSnapshot>> {
    let target = owned_target(&s, &headers).await?;
    Ok(Json(s.invoker.scheduler().pool(&target)))
}

/// A peer's pre-warmer announces invocations of a queue this node owns.
pub async fn peer_announce(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<StatusCode> {
    let target = owned_target(&s, &headers).await?;
    let a: crate::queues::Announce = peer_body(&body, "the announcement")?;
    s.invoker.scheduler().announce(&target, a.count, std::time::Duration::from_millis(a.ttl_ms));
    Ok(StatusCode::NO_CONTENT)
}

/// A peer running a workflow execution releases the execution's reservations of a queue this node owns.
pub async fn peer_release(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let target = owned_target(&s, &headers).await?;
    let r: crate::queues::Release = peer_body(&body, "the release")?;
    let released = s.invoker.scheduler().release_reservations(&r.execution, Some(&[target]), &r.why);
    Ok(Json(serde_json::json!({ "released": released })))
}

/// A hosting node reports the outcome of an invocation it took from this node's queue.
pub async fn peer_done(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    frame: Bytes,
) -> ApiResult<StatusCode> {
    let queues = peer_queues(&s, &headers)?;
    match queues.done(&id, &frame) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no invocation {id} is running for this node's queues (it timed out, or its node was seen lost)"),
        )),
        Err(why) => Err(ApiError::bad_request("invalid_outcome", why)),
    }
}
