//! What one instance's Runtime API handlers and its life share: the instance's context, the invocation it
//! runs, and how an invocation is answered (its END and REPORT lines, its metrics). Below the Runtime API
//! and the instance's life, above the queue: the three form a line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use stoke_sandbox::InstanceControl;
use tokio::sync::{mpsc, oneshot};

use crate::logs::LogLine;
use crate::queue::{FunctionQueue, Origin};
use crate::{lock, InvokeError, InvokeResult, Outcome, Report, Shared};

/// The invocation an instance is running.
pub(crate) struct Current {
    pub id: Arc<str>,
    pub responder: oneshot::Sender<InvokeResult>,
    pub started: Instant,
    pub cold: bool,
    pub want_log: bool,
    /// From the invocation's arrival until this instance took it.
    pub queued: Duration,
    /// The instance's first invocation.
    pub first: bool,
    /// The workflow execution the invocation is a step of.
    pub execution: Option<Arc<str>>,
    /// The execution has a scratch directory.
    pub scratch: bool,
    /// Of a preparation invocation: the reservation it holds this instance for.
    pub reservation: Option<Arc<crate::reserve::Reservation>>,
    /// When it times out, and its timeout as configured (for the message).
    pub deadline: Instant,
    pub timeout_s: u32,
}

/// What the Runtime API handlers of one instance share.
pub(crate) struct InstanceCtx {
    pub id: u64,
    /// The workflow step the instance was started for, if any: known to its init.
    pub origin: Option<Origin>,
    pub shared: Arc<Shared>,
    pub queue: Arc<FunctionQueue>,
    pub spawned_at: Instant,
    /// Set on the first `/next`: the init duration.
    pub ready: OnceLock<Duration>,
    /// Set when the sandboxed process is running: how long creating the sandbox took.
    pub launched: OnceLock<Duration>,
    pub current: Mutex<Option<Current>>,
    pub control: OnceLock<Arc<dyn InstanceControl>>,
    pub init_error: Mutex<Option<Outcome>>,
    pub trace_seq: AtomicU64,
    /// Peak memory and when it was read: `/proc` is sampled at most every [`MEMORY_SAMPLE`].
    pub peak_memory: Mutex<Option<(Instant, u64)>>,
    /// The peak, in MB, the node's memory ledger last charged the instance by (0: not measured yet).
    pub charged_peak_mb: AtomicU64,
    /// Ask the stdout/stderr pumps to read everything already written, and wait for them.
    pub drains: Mutex<Vec<mpsc::UnboundedSender<oneshot::Sender<()>>>>,
    /// The GPUs it holds, from the node's GPU ledger.
    pub gpus: Option<Vec<stoke_core::gpu::GrantedGpu>>,
    /// The most GPU memory its processes were seen holding, in bytes.
    pub gpu_peak_bytes: AtomicU64,
    /// Wakes the instance's deadline watchdog (see `runtime_api::watchdog`) when it waits for an invocation.
    pub watchdog: Arc<tokio::sync::Notify>,
    /// The watchdog waits for an invocation to start (rather than for a deadline).
    pub watchdog_parked: AtomicBool,
    /// The watchdog has been started (on the first invocation).
    pub watchdog_started: OnceLock<()>,
}

impl Drop for InstanceCtx {
    fn drop(&mut self) {
        // The watchdog holds the instance weakly: woken, it finds it gone and ends.
        self.watchdog.notify_one();
    }
}

/// How stale the Max Memory Used of a REPORT may be.
const MEMORY_SAMPLE: Duration = Duration::from_millis(250);

impl InstanceCtx {
    /// Instance `id` of `queue`'s function, spawned now, not yet launched.
    pub fn new(id: u64, origin: Option<Origin>, shared: Arc<Shared>, queue: Arc<FunctionQueue>) -> Self {
        InstanceCtx {
            id,
            origin,
            spawned_at: shared.clock.now(),
            shared,
            queue,
            ready: OnceLock::new(),
            launched: OnceLock::new(),
            current: Mutex::new(None),
            control: OnceLock::new(),
            init_error: Mutex::new(None),
            trace_seq: AtomicU64::new(0),
            peak_memory: Mutex::new(None),
            charged_peak_mb: AtomicU64::new(0),
            drains: Mutex::new(Vec::new()),
            gpus: None,
            gpu_peak_bytes: AtomicU64::new(0),
            watchdog: Arc::new(tokio::sync::Notify::new()),
            watchdog_parked: AtomicBool::new(false),
            watchdog_started: OnceLock::new(),
        }
    }

    /// Reads the GPU memory its processes hold now (NVML), keeping the peak; false when it cannot be read
    /// (no GPUs, no NVML, or the instance not started yet).
    pub fn sample_gpu_memory(&self) -> bool {
        let (Some(gpus), Some(host), Some(control)) = (&self.gpus, &self.shared.settings.gpu, self.control.get())
        else {
            return false;
        };
        let pids = control.processes();
        let mut total = 0;
        for g in gpus {
            match host.memory_of(g.index, &pids) {
                Some(bytes) => total += bytes,
                None => return false,
            }
        }
        self.gpu_peak_bytes.fetch_max(total, Ordering::Relaxed);
        true
    }

    pub fn current_id(&self) -> Option<Arc<str>> {
        lock(&self.current).as_ref().map(|c| c.id.clone())
    }

    pub fn log(&self, request_id: Option<Arc<str>>, text: String) {
        self.queue.logs.push(LogLine { at_ms: self.shared.clock.now_ms(), request_id, instance: self.id, text });
    }

    /// The instance's peak memory, re-read from the sandbox when the last reading is stale (or `fresh` asks
    /// for a new one). Peak memory only grows, so a slightly old value is a lower bound that is exact again
    /// at the next sample. A peak above what the node's ledger charged the instance by is recorded there.
    pub fn peak_memory_bytes(&self, fresh: bool) -> u64 {
        let now = self.shared.clock.now();
        let mut cached = lock(&self.peak_memory);
        if let Some((at, bytes)) = *cached {
            if !fresh && now.saturating_duration_since(at) < MEMORY_SAMPLE {
                return bytes;
            }
        }
        let bytes = self.control.get().and_then(|c| c.peak_memory_bytes()).unwrap_or(0);
        *cached = Some((now, bytes));
        drop(cached);
        let mb = bytes.div_ceil(1024 * 1024);
        if mb > self.charged_peak_mb.load(Ordering::Relaxed) {
            self.charged_peak_mb.store(mb, Ordering::Relaxed);
            self.queue.measured(&self.shared, self.id, mb);
        }
        bytes
    }

    pub fn kill(&self) {
        if let Some(c) = self.control.get() {
            c.kill();
        }
    }

    /// Answers the running invocation and writes its END and REPORT lines.
    pub fn finish(&self, cur: Current, outcome: Outcome) {
        // A prepared instance runs its step from its turn; before that it was held. One that answers before
        // its turn has prepared for nothing: the step runs as any other invocation.
        let turn = cur.reservation.as_ref().and_then(|r| {
            if r.release("the prepared instance ended its invocation before its turn came") {
                let msg = format!("RequestId: {} ended before its turn came; its reservation is released", cur.id);
                self.log(Some(cur.id.clone()), msg);
            }
            r.arrived_at()
        });
        let ran_from = turn.map_or(cur.started, |t| t.max(cur.started));
        let held = turn.map(|t| t.saturating_duration_since(cur.started));
        let elapsed = self.shared.clock.now().saturating_duration_since(ran_from);
        if self.queue.record_duration(elapsed) {
            crate::queue::reconcile(&self.shared, &self.queue);
        }
        if let Some(o) = self.shared.observer.get() {
            o.ran(&self.queue.target, elapsed);
        }
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let duration_ms = ms(&elapsed);
        let init_duration_ms = if cur.cold { self.ready.get().map(ms) } else { None };
        let max_memory_used_mb =
            stoke_core::cost::max_memory_used_mb(self.peak_memory_bytes(false), self.queue.target.config.memory_mb);
        let max_gpu_memory_used_mb = self.gpus.as_ref().map(|_| {
            self.sample_gpu_memory();
            self.gpu_peak_bytes.load(Ordering::Relaxed).div_ceil(1024 * 1024)
        });
        let report = Report {
            duration_ms,
            billed_ms: stoke_core::cost::billed_ms(duration_ms).max(1),
            memory_mb: self.queue.target.config.memory_mb,
            max_memory_used_mb,
            init_duration_ms,
            instance: self.id,
            queued_ms: ms(&cur.queued),
            sandbox_ms: if cur.cold { self.launched.get().map(ms) } else { None },
            instance_init_ms: if cur.first { self.ready.get().map(ms) } else { None },
            held_ms: held.as_ref().map(ms),
            max_gpu_memory_used_mb,
        };
        self.log(Some(cur.id.clone()), format!("END RequestId: {}", cur.id));
        let mut init = init_duration_ms.map(|d| format!("\tInit Duration: {d:.2} ms")).unwrap_or_default();
        if let Some(mb) = max_gpu_memory_used_mb {
            init.push_str(&format!("\tMax GPU Memory Used: {mb} MB"));
        }
        self.log(
            Some(cur.id.clone()),
            format!(
                "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB{init}",
                cur.id, report.duration_ms, report.billed_ms, report.memory_mb, report.max_memory_used_mb
            ),
        );
        let m = &self.shared.metrics;
        let failed = !matches!(outcome, Outcome::Success(_));
        self.queue.metrics.answered(m, failed, elapsed);
        m.recent.answered(duration_ms, failed, init_duration_ms.is_some());
        self.queue.answered(failed, self.shared.clock.now_ms());
        if let Some(init) = init_duration_ms {
            let labels = self.queue.labels();
            m.cold_starts.get_or_create(labels).inc();
            m.node_cold_starts.inc();
            m.init_duration.get_or_create(labels).observe(init / 1000.0);
        }
        let log = if cur.want_log { self.queue.logs.of_request(&cur.id) } else { Vec::new() };
        let _ = cur.responder.send(InvokeResult { request_id: cur.id.to_string(), outcome, report, log, node: None });
    }
}

/// Platform-written error body in the runtimes' shape.
/// The error type of an instance that could not start for want of disk space: the platform's failure, not the
/// function's. It travels through the queue like an init error (back-off included) and leaves the scheduler
/// as [`InvokeError::NoSpace`], never as the function's error.
pub(crate) const NO_SPACE: &str = "Stoke.NoSpace";
/// The error type of an invocation the node running it (another node, in a cluster) was lost with.
const NODE_LOST: &str = "Stoke.NodeLost";
/// The error type of an invocation another node could not run for a reason of the platform's.
pub(crate) const PLATFORM: &str = "Stoke.Platform";
/// The error type of an invocation refused for want of room or by a concurrency limit, on its way back to
/// its caller: a throttle still (retryable, 429), not the platform's failure.
const THROTTLED: &str = "Stoke.Throttled";

/// The result that carries a platform's failure through an invocation's responder, for [`platform_failure`]
/// to turn back into the error.
pub(crate) fn platform_result(id: &str, e: InvokeError) -> InvokeResult {
    let outcome = match e {
        InvokeError::NoSpace(m) => error_outcome(NO_SPACE, m),
        InvokeError::NodeLost(m) => error_outcome(NODE_LOST, m),
        InvokeError::Throttled { reason, retry_after_s } => {
            let body =
                serde_json::json!({ "errorType": THROTTLED, "errorMessage": reason, "retryAfter": retry_after_s });
            Outcome::FunctionError { error_type: THROTTLED.to_string(), body: Bytes::from(body.to_string()) }
        }
        InvokeError::Platform(m) => error_outcome(PLATFORM, m),
    };
    InvokeResult { request_id: id.to_string(), outcome, report: crate::Report::default(), log: vec![], node: None }
}

/// A result as the caller sees it: an instance that could not start for want of disk space is an error of
/// the platform (retryable), not an outcome of the function.
pub(crate) fn platform_failure(result: InvokeResult) -> Result<InvokeResult, InvokeError> {
    match &result.outcome {
        Outcome::FunctionError { error_type, body }
            if [NO_SPACE, NODE_LOST, PLATFORM, THROTTLED].contains(&error_type.as_str()) =>
        {
            let body = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
            let message = body["errorMessage"].as_str().map_or_else(|| error_type.clone(), str::to_string);
            Err(match error_type.as_str() {
                NO_SPACE => InvokeError::NoSpace(message),
                NODE_LOST => InvokeError::NodeLost(message),
                THROTTLED => {
                    InvokeError::Throttled { reason: message, retry_after_s: body["retryAfter"].as_u64().unwrap_or(1) }
                }
                _ => InvokeError::Platform(message),
            })
        }
        _ => Ok(result),
    }
}

pub(crate) fn error_outcome(error_type: &str, message: String) -> Outcome {
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message });
    Outcome::FunctionError { error_type: error_type.to_string(), body: Bytes::from(body.to_string()) }
}

impl InstanceCtx {
    /// Makes every line the runtime wrote so far part of the log (a runtime writes its output before it
    /// posts its response, so after this the invocation's lines are all there). Bounded wait.
    pub async fn drain_logs(&self) {
        let acks: Vec<_> = lock(&self.drains)
            .iter()
            .filter_map(|tx| {
                let (ack, done) = oneshot::channel();
                tx.send(ack).ok().map(|_| done)
            })
            .collect();
        for done in acks {
            let _ = tokio::time::timeout(Duration::from_millis(200), done).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_refusal_carried_through_a_result_comes_back_as_the_same_kind() {
        let throttle = InvokeError::Throttled { reason: "no room".into(), retry_after_s: 3 };
        let back = platform_failure(platform_result("r1", throttle)).unwrap_err();
        assert!(
            matches!(&back, InvokeError::Throttled { reason, retry_after_s: 3 } if reason == "no room"),
            "{back:?}"
        );
        for e in [
            InvokeError::NoSpace("disk".into()),
            InvokeError::NodeLost("gone".into()),
            InvokeError::Platform("broken".into()),
        ] {
            let back = platform_failure(platform_result("r1", e.clone())).unwrap_err();
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e), "{back:?}");
            assert_eq!(back.to_string(), e.to_string());
        }
        // A function's own error of any other type stays the function's.
        let own = InvokeResult {
            request_id: "r1".into(),
            outcome: error_outcome("ValueError", "bad".into()),
            report: Report::default(),
            log: vec![],
            node: None,
        };
        assert!(platform_failure(own).is_ok());
    }
}
