//! The Lambda Runtime API (`2018-06-01`) served to one instance on its own loopback port, to the instance's
//! processes only, so an instance can only ever pull its own function's invocations and answer its own
//! request ids, and nothing else can pull or answer them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use stoke_sandbox::InstanceControl;
use tokio::sync::oneshot;

use crate::context::{error_outcome, Current, InstanceCtx};
use crate::metrics::Connections;
use crate::queue::Invocation;
use crate::{lock, Outcome};

/// Largest response a function may return: the synchronous payload limit.
pub use stoke_core::limits::MAX_PAYLOAD_BYTES as MAX_RESPONSE_BYTES;

pub(crate) fn router(ctx: Arc<InstanceCtx>) -> Router {
    static ROUTES: std::sync::LazyLock<Router<Arc<InstanceCtx>>> = std::sync::LazyLock::new(routes);
    ROUTES.clone().with_state(ctx)
}

/// The Runtime API's routes, built once for every instance.
fn routes() -> Router<Arc<InstanceCtx>> {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .route("/2018-06-01/stoke/prepare", post(prepare))
        .route("/2018-06-01/stoke/prepared", get(prepared))
        .route("/2018-06-01/stoke/origin", get(origin))
        .route("/2018-06-01/stoke/turn", get(wait_turn))
        .route("/2018-06-01/stoke/available/{function}", get(available))
        .route("/2018-06-01/stoke/scratch", get(scratch))
        .layer(DefaultBodyLimit::max(wire::MAX_BODY))
}

/// The instance's endpoint: a loopback listener that serves only connections opened by the instance's own
/// processes. Any other process — another instance, anything else on the host — is disconnected before
/// it can send a request, so the port number is not a secret anyone relies on.
pub(crate) struct InstanceListener {
    inner: tokio::net::TcpListener,
    instance: u64,
    control: Watched,
    counted: Connections,
}

/// The instance's control, known once the sandbox has started it (a runtime may connect before that).
enum Watched {
    Pending(oneshot::Receiver<Arc<dyn InstanceControl>>),
    Known(Arc<dyn InstanceControl>),
}

impl InstanceListener {
    /// The listener, and where to send the instance's control once it runs.
    pub fn new(
        inner: tokio::net::TcpListener,
        instance: u64,
        counted: Connections,
    ) -> (Self, oneshot::Sender<Arc<dyn InstanceControl>>) {
        let (tx, rx) = oneshot::channel();
        (InstanceListener { inner, instance, control: Watched::Pending(rx), counted }, tx)
    }

    async fn control(&mut self) -> Option<Arc<dyn InstanceControl>> {
        if let Watched::Pending(rx) = &mut self.control {
            self.control = Watched::Known(rx.await.ok()?);
        }
        match &self.control {
            Watched::Known(c) => Some(c.clone()),
            Watched::Pending(_) => None,
        }
    }

    /// The next connection one of the instance's processes opened; others are refused (closed) meanwhile.
    async fn accept(&mut self) -> (tokio::net::TcpStream, std::net::SocketAddr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted: the endpoint
                    // stays up; the pause keeps a lasting error from spinning.
                    tracing::debug!(instance = self.instance, error = %e, "cannot accept a Runtime API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(control) = self.control().await else {
                // The instance never started; nothing will connect that should be served.
                std::future::pending::<()>().await;
                continue;
            };
            let Ok(local) = stream.local_addr() else { continue };
            // The kernel's record of the socket's cgroup settles almost every connection at once; the
            // `/proc` walk, on a blocking thread, only the rest.
            if control.opened_connection_quickly(local, peer) {
                self.counted.opened("socket_cgroup");
                return (stream, peer);
            }
            let owned = tokio::task::spawn_blocking(move || control.opened_connection(local, peer)).await;
            if owned.unwrap_or(false) {
                self.counted.opened("process_walk");
                return (stream, peer);
            }
            self.counted.opened("refused");
            tracing::warn!(
                instance = self.instance,
                %peer,
                "refused a Runtime API connection that no process of the instance opened"
            );
        }
    }
}

/// Serves the instance's Runtime API on `listener` until the task is aborted: each connection on a task of
/// its own, with Nagle's delay off (an answer is written whole, in one write), by the Runtime API's own
/// HTTP/1.1 reader ([`wire`]), which hands any request it does not read itself to the router.
pub(crate) async fn serve(mut listener: InstanceListener, ctx: Arc<InstanceCtx>) {
    let app = router(ctx.clone());
    loop {
        let (stream, _) = listener.accept().await;
        let _ = stream.set_nodelay(true);
        tokio::spawn(wire::serve_connection(stream, ctx.clone(), app.clone()));
    }
}

/// An answer of the Runtime API's own routes, which both of its servers write: the hand-written one an
/// invocation's requests take ([`wire`]) and hyper's, for everything else.
pub(crate) struct Reply {
    status: StatusCode,
    /// Header names and values, each value checked to be one a header may carry.
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Reply {
    fn new(status: StatusCode) -> Self {
        Reply { status, headers: Vec::new(), body: Bytes::new() }
    }

    fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Reply::new(status).header("content-type", "application/json").body(Bytes::from(body.to_string()))
    }

    /// Adds a header; a value no header may carry (a control character) is left out, as hyper would refuse it.
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        let value = value.into();
        if value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)) {
            self.headers.push((name, value));
        }
        self
    }

    fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = Response::new(axum::body::Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.append(HeaderName::from_static(name), v);
            }
        }
        response
    }
}

fn rapid_error(status: StatusCode, error_type: &str, message: &str) -> Reply {
    Reply::json(status, &json!({ "errorType": error_type, "errorMessage": message }))
}

/// The RIE's answer to an accepted POST.
fn accepted() -> Reply {
    Reply::json(StatusCode::ACCEPTED, &json!({ "status": "OK" }))
}

/// The answer to an invocation's response or error: 202 with no body. Runtimes check only for a 2xx
/// (awslambdaric, `lambda_runtime` and Node's runtime alike); with no body to read, an HTTP client can put the connection back in its pool as soon as
/// the head arrives. With the RIE's `{"status":"OK"}`, `lambda_runtime` (hyper's pooled client) often asked
/// for the next invocation before that connection was back and opened a new one — for 12 % of invocations,
/// 6.7 % with an empty body — and each new connection costs a handshake and an ownership check.
fn answered() -> Reply {
    Reply::new(StatusCode::ACCEPTED)
}

/// `GET /runtime/invocation/next`, step by step as the protocol reads: a runtime asking again has given up
/// what it was running; its first call ends its initialisation; it waits for work; it is handed the
/// invocation with its headers, and the invocation runs from then until its deadline.
async fn next(State(ctx): State<Arc<InstanceCtx>>) -> Reply {
    fail_unanswered(&ctx);
    let init = end_init(&ctx);
    let inv = match take_work(&ctx, init).await {
        Ok(inv) => inv,
        Err(_) => return rapid_error(StatusCode::GONE, "Runtime.Evicted", "this instance was evicted"),
    };
    hand_out(&ctx, inv)
}

/// A runtime that asks for more work without answering has abandoned its invocation: it fails.
fn fail_unanswered(ctx: &InstanceCtx) {
    let abandoned = lock(&ctx.current).take();
    if let Some(cur) = abandoned {
        let msg = format!(
            "RequestId: {} Error: the runtime asked for the next invocation without answering this one",
            cur.id
        );
        ctx.finish(cur, error_outcome("Runtime.InvalidState", msg));
    }
}

/// On the instance's first call: it is ready. Records its init time (the observer is told) and what the
/// initialised instance really uses — the node's memory admission charges it by that from now on (and new
/// instances of its function by the largest such peak). Returns the init time on the first call only.
fn end_init(ctx: &InstanceCtx) -> Option<Duration> {
    if ctx.ready.get().is_some() {
        return None;
    }
    let init = ctx.shared.clock.now().saturating_duration_since(ctx.spawned_at);
    let _ = ctx.ready.set(init);
    if let Some(o) = ctx.shared.observer.get() {
        o.initialised(&ctx.queue.target, init);
    }
    ctx.peak_memory_bytes(true);
    Some(init)
}

/// The instance's next invocation: queued work at once, else whatever arrives while it waits (frozen, after a
/// while). Fails when the instance is evicted while it waits.
async fn take_work(ctx: &InstanceCtx, init: Option<Duration>) -> Result<Invocation, oneshot::error::RecvError> {
    let next = ctx.queue.next_for(ctx.id, init);
    if init.is_some() {
        // An instance is ready and its init time measured: size the pool again for what is still queued.
        crate::queue::reconcile(&ctx.shared, &ctx.queue);
    }
    match next {
        Ok(inv) => Ok(inv),
        Err(rx) => wait_for_work(ctx, rx).await,
    }
}

/// Starts `inv` on the instance and answers `next` with it: its event, and the headers the protocol gives an
/// invocation.
fn hand_out(ctx: &Arc<InstanceCtx>, inv: Invocation) -> Reply {
    // Cold: this invocation waited for the instance to initialise. One served by an instance that was
    // ready before it arrived (pre-warmed, min-warm) is warm, even if it is the instance's first.
    let ready_at = ctx.spawned_at + ctx.ready.get().copied().unwrap_or_default();
    let cold = inv.arrived < ready_at;
    let started = ctx.shared.clock.now();
    let seq = ctx.trace_seq.fetch_add(1, Ordering::Relaxed);
    let reply = invocation_headers(ctx, &inv, seq);
    if let Some(started) = &inv.request.started {
        started.fire();
    }
    ctx.log(Some(inv.id.clone()), format!("START RequestId: {} Version: {}", inv.id, ctx.queue.target.version));
    let payload = inv.request.payload.clone();
    *lock(&ctx.current) = Some(Current {
        queued: started - inv.arrived,
        first: seq == 0,
        started,
        cold,
        want_log: inv.request.want_log,
        execution: inv.request.execution,
        reservation: inv.reservation,
        scratch: inv.request.scratch,
        id: inv.id,
        responder: inv.responder,
        deadline: inv.deadline,
        timeout_s: inv.timeout_s,
    });
    start_watchdog(ctx);
    reply.body(payload)
}

/// The answer to `next` handing out an invocation, without its event: the headers the protocol gives it
/// (`seq`: the instance's how-manieth).
fn invocation_headers(ctx: &InstanceCtx, inv: &Invocation, seq: u64) -> Reply {
    let trace = format!(
        "Root=1-{:08x}-{:012x}{:012x};Parent={:016x};Sampled=0",
        ctx.shared.clock.now_ms() / 1000,
        ctx.id,
        seq,
        seq
    );
    let mut reply = Reply::new(StatusCode::OK)
        .header("lambda-runtime-aws-request-id", &*inv.id)
        .header("lambda-runtime-deadline-ms", inv.deadline_epoch_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", &*ctx.queue.target.invoked_arn)
        .header("lambda-runtime-trace-id", trace);
    if let Some(cc) = &inv.request.client_context {
        reply = reply.header("lambda-runtime-client-context", &**cc);
    }
    // awslambdaric crashes without a Content-Type.
    reply.header("content-type", "application/json")
}

/// Fails the running invocation at its deadline, and kills the instance running it: one task per instance
/// for all its invocations. It sleeps until the running invocation's deadline; woken there, it finds either
/// that invocation still running (it times out), a later one running (it sleeps on to that one's deadline,
/// so back-to-back invocations arm no timer and wake nothing), or none, and then waits to be woken by the
/// next one's start ([`start_watchdog`]). It holds the instance weakly and ends with it.
async fn watchdog(ctx: std::sync::Weak<InstanceCtx>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let Some(c) = ctx.upgrade() else { return };
        let now = c.shared.clock.now();
        // One look at the running invocation: taken if its deadline has passed, else its deadline.
        let (expired, deadline) = {
            let mut cur = lock(&c.current);
            match cur.as_ref().map(|cur| cur.deadline) {
                Some(deadline) if deadline <= now => (cur.take(), None),
                deadline => (None, deadline),
            }
        };
        if let Some(cur) = expired {
            let msg = format!("RequestId: {} Error: Task timed out after {}.00 seconds", cur.id, cur.timeout_s);
            c.log(Some(cur.id.clone()), msg.clone());
            c.finish(cur, error_outcome("Sandbox.Timedout", msg));
            c.kill();
            continue;
        }
        match deadline {
            Some(deadline) => {
                drop(c);
                tokio::time::sleep(deadline - now).await;
            }
            None => {
                c.watchdog_parked.store(true, Ordering::SeqCst);
                // An invocation that started before the flag was up found it down and woke no one.
                if lock(&c.current).is_some() {
                    c.watchdog_parked.store(false, Ordering::SeqCst);
                    continue;
                }
                drop(c);
                wake.notified().await;
            }
        }
    }
}

/// Starts the instance's watchdog on its first invocation, and wakes it when it waits for one.
fn start_watchdog(ctx: &Arc<InstanceCtx>) {
    ctx.watchdog_started.get_or_init(|| {
        tokio::spawn(watchdog(Arc::downgrade(ctx), ctx.watchdog.clone()));
    });
    if ctx.watchdog_parked.swap(false, Ordering::SeqCst) {
        ctx.watchdog.notify_one();
    }
}

/// Waits for the next invocation; an instance idle for `freeze_idle_after` — or longer, when its function's
/// instances are usually reused after longer gaps (`FunctionQueue::freeze_after`) — is frozen meanwhile, and
/// thawed before it hears of the work (or of its eviction).
async fn wait_for_work(
    ctx: &InstanceCtx,
    rx: oneshot::Receiver<Invocation>,
) -> Result<Invocation, oneshot::error::RecvError> {
    let mut wait = Waiting { ctx, rx };
    let Some(base) = ctx.shared.settings.freeze_idle_after else { return (&mut wait.rx).await };
    let after = ctx.queue.freeze_after(base);
    if let Ok(done) = tokio::time::timeout(after, &mut wait.rx).await {
        return done;
    }
    let control = ctx.control.get().cloned();
    let frozen = control.as_ref().is_some_and(|c| c.freeze(true));
    let done = (&mut wait.rx).await;
    if frozen {
        if let Some(c) = control {
            c.freeze(false);
        }
    }
    done
}

/// A runtime's wait for work. Given up (its connection closed) in the instant the queue handed it an
/// invocation, it puts that invocation back in the queue for another instance instead of losing it.
struct Waiting<'a> {
    ctx: &'a InstanceCtx,
    rx: oneshot::Receiver<Invocation>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Nothing can be handed to it from here on; what was, and not taken, goes back.
        self.rx.close();
        if let Ok(inv) = self.rx.try_recv() {
            let (shared, queue) = (&self.ctx.shared, &self.ctx.queue);
            tracing::debug!(instance = self.ctx.id, request_id = %inv.id, "an invocation handed to a runtime that went away goes back to its queue");
            crate::submit_again(shared, queue, inv, crate::queue::no_room(shared, queue));
        }
    }
}

/// Takes the running invocation if `id` is it.
fn take_current(ctx: &InstanceCtx, id: &str) -> Option<Current> {
    let mut cur = lock(&ctx.current);
    if cur.as_ref().is_some_and(|c| &*c.id == id) {
        cur.take()
    } else {
        None
    }
}

fn invalid_request_id(id: &str) -> Reply {
    rapid_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        &format!("{id} is not the invocation this instance is running"),
    )
}

/// When the caller asked for the invocation's log, reads the runtime's output written so far while the
/// invocation is still current (so its lines carry its request id).
async fn collect_output(ctx: &InstanceCtx, id: &str) {
    let wants = lock(&ctx.current).as_ref().is_some_and(|c| &*c.id == id && c.want_log);
    if wants {
        ctx.drain_logs().await;
    }
}

async fn response(State(ctx): State<Arc<InstanceCtx>>, Path(id): Path<String>, body: Bytes) -> Reply {
    collect_output(&ctx, &id).await;
    let Some(cur) = take_current(&ctx, &id) else {
        return invalid_request_id(&id);
    };
    if body.len() > MAX_RESPONSE_BYTES {
        let msg = format!(
            "Response payload size ({} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
            body.len()
        );
        ctx.finish(cur, error_outcome("Function.ResponseSizeTooLarge", msg.clone()));
        return rapid_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &msg);
    }
    ctx.finish(cur, Outcome::Success(body));
    answered()
}

/// The header a runtime may name its error's type in.
const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";

/// The error type of a runtime's error report: the body's `errorType`, else a well-formed error-type
/// header (`header`, its value), else `Unhandled`.
fn error_type(header: Option<&str>, body: &serde_json::Value) -> String {
    if let Some(t) = body.get("errorType").and_then(|v| v.as_str()).filter(|t| !t.is_empty()) {
        return t.to_string();
    }
    let header = header.unwrap_or("");
    let well_formed = header.split_once('.').is_some_and(|(kind, rest)| {
        matches!(kind, "Runtime" | "Function") && rest.starts_with(|c: char| c.is_ascii_uppercase())
    });
    if well_formed {
        header.to_string()
    } else {
        "Unhandled".to_string()
    }
}

fn error_body(header: Option<&str>, body: &Bytes) -> Outcome {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let error_type = error_type(header, &parsed);
    let body = if parsed.is_object() {
        body.clone()
    } else {
        let message = String::from_utf8_lossy(body).into_owned();
        Bytes::from(json!({ "errorType": error_type, "errorMessage": message }).to_string())
    };
    Outcome::FunctionError { error_type, body }
}

/// The value of the error-type header, when it is text.
fn error_type_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(ERROR_TYPE_HEADER).and_then(|v| v.to_str().ok())
}

async fn error(State(ctx): State<Arc<InstanceCtx>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Reply {
    report_error(&ctx, &id, error_type_header(&headers), body).await
}

/// `POST /runtime/invocation/{id}/error`: the invocation fails with the runtime's error.
async fn report_error(ctx: &InstanceCtx, id: &str, error_type: Option<&str>, body: Bytes) -> Reply {
    collect_output(ctx, id).await;
    let Some(cur) = take_current(ctx, id) else {
        return invalid_request_id(id);
    };
    ctx.finish(cur, error_body(error_type, &body));
    answered()
}

async fn init_error(State(ctx): State<Arc<InstanceCtx>>, headers: HeaderMap, body: Bytes) -> Reply {
    let mut outcome = error_body(error_type_header(&headers), &body);
    if let Outcome::FunctionError { error_type, .. } = &mut outcome {
        if error_type == "Unhandled" {
            *error_type = "Runtime.InitError".to_string();
        }
    }
    *lock(&ctx.init_error) = Some(outcome);
    // The runtime exits after reporting; make sure it does.
    let ctx2 = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ctx2.kill();
    });
    accepted()
}

// stoke's extensions (seed 000's runtime interfaces): a step of a workflow prepares a later step's instance;
// the prepared instance reads its preparation input and waits for its turn.

/// `prepare`'s request body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareBody {
    /// Name, name:qualifier or ARN, as a Task state names it.
    function: String,
    /// The preparation input; `null` when absent.
    #[serde(default)]
    params: serde_json::Value,
}

async fn resolve(ctx: &InstanceCtx, reference: &str) -> Result<Arc<crate::InvokeTarget>, Reply> {
    let Some(resolver) = ctx.shared.resolver.get() else {
        return Err(rapid_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Stoke.Unavailable",
            "this node does not resolve function references for running functions",
        ));
    };
    resolver.resolve(&ctx.queue.target.account, reference).await.map_err(|r| {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
        rapid_error(status, &r.code, &r.message)
    })
}

/// The workflow step an initialising instance was started for; `None` once init is over.
fn origin_in_init(ctx: &InstanceCtx) -> Option<&crate::queue::Origin> {
    ctx.origin.as_ref().filter(|_| ctx.ready.get().is_none())
}

async fn prepare(State(ctx): State<Arc<InstanceCtx>>, body: Bytes) -> Reply {
    let execution = lock(&ctx.current).as_ref().map(|c| (c.execution.clone(), c.scratch));
    // During init, the execution of the step the instance was started for: a cold step can prepare the
    // next one before its own (long) init, so their cold starts overlap.
    let execution = execution.or_else(|| origin_in_init(&ctx).map(|o| (Some(o.execution.clone()), o.scratch)));
    let (execution, scratch) = match execution {
        None => {
            return rapid_error(
                StatusCode::CONFLICT,
                "Stoke.NoInvocation",
                "prepare is called while handling an invocation of a workflow step, or during the init of an \
                 instance started for one; this instance is doing neither",
            )
        }
        Some((None, _)) => {
            return rapid_error(
                StatusCode::CONFLICT,
                "Stoke.NotInWorkflow",
                "prepare reserves an instance for a later step of this workflow execution, but the running \
                 invocation is not a step of one: run the function from a workflow",
            )
        }
        Some((Some(e), scratch)) => (e, scratch),
    };
    let request: PrepareBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return rapid_error(
                StatusCode::BAD_REQUEST,
                "Stoke.InvalidRequest",
                &format!("the prepare request must be {{\"function\": NAME, \"params\": JSON}}: {e}"),
            )
        }
    };
    let target = match resolve(&ctx, &request.function).await {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let params = Bytes::from(request.params.to_string());
    // In a cluster the version's queue may be another node's: its owner reserves the instance, on the node
    // it picks. An execution with a scratch directory keeps its steps on its own node, so prepares here.
    let elsewhere = match ctx.shared.resolver.get() {
        Some(r) if !scratch => r.prepare_at_owner(&target, &execution, params.clone()).await,
        _ => None,
    };
    let prepared = elsewhere.unwrap_or_else(|| crate::prepare(&ctx.shared, &target, execution, params).map(|r| r.id));
    match prepared {
        Ok(id) => {
            ctx.log(
                ctx.current_id(),
                format!("PREPARE {}:{} reservation {id} for this execution", target.function, target.version),
            );
            let body = json!({
                "reservationId": id.to_string(),
                "function": target.function.to_string(),
                "version": target.version,
                "expiresInMs": stoke_core::num::millis_u64(ctx.shared.settings.reservation_ttl),
            });
            Reply::json(StatusCode::ACCEPTED, &body)
        }
        Err(crate::InvokeError::Throttled { reason, .. }) => {
            rapid_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", &reason)
        }
        Err(e @ crate::InvokeError::NodeLost(_)) => {
            rapid_error(StatusCode::SERVICE_UNAVAILABLE, "Stoke.Unavailable", &e.to_string())
        }
        Err(e) => rapid_error(StatusCode::INTERNAL_SERVER_ERROR, "Stoke.PlatformError", &e.to_string()),
    }
}

fn not_prepared(what: &str) -> Reply {
    rapid_error(
        StatusCode::NOT_FOUND,
        "Stoke.NotPrepared",
        &format!(
            "{what} is for an instance started by prepare; the running invocation is not a preparation \
             (its event is the step's input)"
        ),
    )
}

/// During init: the workflow step this instance was started for (its execution and input), so the init can
/// prepare the execution's next step at once. Any instance may still take that step's invocation.
async fn origin(State(ctx): State<Arc<InstanceCtx>>) -> Reply {
    if ctx.ready.get().is_some() {
        return rapid_error(
            StatusCode::NOT_FOUND,
            "Stoke.NoOrigin",
            "origin is known only during init; inside an invocation, the event is the handler's argument",
        );
    }
    let Some(o) = &ctx.origin else {
        return rapid_error(
            StatusCode::NOT_FOUND,
            "Stoke.NoOrigin",
            "this instance was not started for a workflow step (it was started ahead of demand, or for an \
             invocation outside a workflow)",
        );
    };
    let event: serde_json::Value = serde_json::from_slice(&o.event).unwrap_or(serde_json::Value::Null);
    Reply::json(StatusCode::OK, &json!({ "execution": &*o.execution, "event": event, "prepared": o.prepared }))
}

async fn prepared(State(ctx): State<Arc<InstanceCtx>>) -> Reply {
    let reservation = lock(&ctx.current).as_ref().and_then(|c| c.reservation.clone());
    match reservation {
        Some(r) => Reply::new(StatusCode::OK).header("content-type", "application/json").body(r.params.clone()),
        None => not_prepared("prepared_params"),
    }
}

async fn wait_turn(State(ctx): State<Arc<InstanceCtx>>) -> Reply {
    let reservation = lock(&ctx.current).as_ref().and_then(|c| c.reservation.clone());
    let Some(r) = reservation else { return not_prepared("wait_turn") };
    match r.wait_turn().await {
        Ok(input) => Reply::new(StatusCode::OK).header("content-type", "application/json").body(input),
        Err(why) => rapid_error(StatusCode::GONE, "Stoke.ReservationReleased", &why),
    }
}

async fn available(State(ctx): State<Arc<InstanceCtx>>, Path(function): Path<String>) -> Reply {
    let target = match resolve(&ctx, &function).await {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let at_owner = match ctx.shared.resolver.get() {
        Some(r) => r.pool_at_owner(&target).await,
        None => None,
    };
    let pool = at_owner.unwrap_or_else(|| crate::pool_of(&ctx.shared, &target));
    let body = json!({
        "available": stoke_core::pool::is_available(&pool),
        "idle": pool.idle,
        "queued": pool.queued,
    });
    Reply::json(StatusCode::OK, &body)
}

/// The execution's scratch directory, as the instance sees it.
async fn scratch(State(ctx): State<Arc<InstanceCtx>>) -> Reply {
    let current = lock(&ctx.current).as_ref().map(|c| (c.execution.clone(), c.scratch));
    let Some((Some(execution), true)) = current else {
        return rapid_error(
            StatusCode::NOT_FOUND,
            "Stoke.NoScratch",
            "the running invocation has no workflow scratch directory: start the execution with \"scratch\": true",
        );
    };
    let host = stoke_sandbox::InstancePaths {
        task_root: std::path::PathBuf::new(),
        runtime_dir: std::path::PathBuf::new(),
        scratch: crate::runtimes::scratch_root(&ctx.shared.run_dir, &ctx.queue.target.account),
    };
    let seen = ctx.shared.sandbox.paths(&host).scratch.join(&*execution);
    Reply::json(StatusCode::OK, &json!({ "path": seen.display().to_string() }))
}

mod wire;

#[cfg(test)]
mod tests;
