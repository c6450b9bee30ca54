//! Runs functions (seed 004's scheduler: see docs/architecture.md and docs/running-functions.md).
//!
//! Each function version has a [`queue::FunctionQueue`]. Invocations join it; instances *pull* work through
//! their own Lambda Runtime API endpoint (`GET /2018-06-01/runtime/invocation/next`). The controller
//! starts instances in the background from the pool rules in `stoke_core::pool`, so an invocation never
//! waits behind an unrelated instance's creation, and one function's pool never touches another's.

pub mod clock;
mod codecache;
mod context;
mod ids;
mod instance;
pub mod logs;
mod metrics;
mod queue;
mod reserve;
mod runtime_api;
pub mod runtimes;
#[cfg(test)]
mod scheduling_tests;
#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use stoke_core::pool::InstanceState;
use stoke_core::{AccountId, FunctionConfig, FunctionName};
use stoke_sandbox::Sandbox;

pub use clock::{Clock, SystemClock};
use queue::FunctionQueue;

/// Everything needed to run one function version, resolved once and cached by the caller.
#[derive(Debug, Clone)]
pub struct InvokeTarget {
    pub account: AccountId,
    pub function: FunctionName,
    /// `$LATEST` or the version number.
    pub version: String,
    pub config: FunctionConfig,
    /// The zip on disk.
    pub archive: PathBuf,
    pub code_sha256: String,
    /// The unpacked layers the configuration lists, in order (later ones win where files collide).
    pub layers: Vec<PathBuf>,
    /// The root file system of an imported base image; `None` for the host's own.
    pub image: Option<PathBuf>,
    /// ARN the caller used (qualified), passed to the runtime.
    pub invoked_arn: String,
    pub region: String,
    /// Variables the platform gives this function's instances beyond the reserved ones (a durable function's
    /// endpoint and key); a variable the function sets itself wins.
    pub platform_env: Vec<(String, String)>,
    /// Filled on first use by the scheduler.
    pub key: std::sync::OnceLock<String>,
}

impl InvokeTarget {
    /// A target for unit tests: function `resize` of account 123456789012 at `version`, 128 MB, code
    /// `abc` that is nowhere.
    #[cfg(any(test, feature = "test-fixtures"))]
    pub fn fixture(version: &str) -> Self {
        let config = serde_json::from_value(serde_json::json!({
            "runtime": "provided", "handler": "x", "memory_mb": 128, "timeout_s": 3, "environment": {},
            "description": "", "layers": [], "base_image": "host", "gpu_count": 0, "gpu_memory_mb": 0,
            "gpu_percentage": null, "concurrency_limit": null, "min_warm": 0, "keep_alive_s": 600}))
        .expect("config");
        InvokeTarget {
            account: AccountId::parse("123456789012").expect("account"),
            function: FunctionName::parse("resize").expect("name"),
            version: version.into(),
            config,
            archive: PathBuf::from("/nowhere.zip"),
            code_sha256: "abc".into(),
            layers: Vec::new(),
            image: None,
            invoked_arn: String::new(),
            region: "us-east-1".into(),
            platform_env: Vec::new(),
            key: Default::default(),
        }
    }

    /// Instances are shared by invocations of the same code and configuration only. Computed once per
    /// target (targets are resolved once and cached), not per invocation.
    fn queue_key(&self) -> &str {
        self.key.get_or_init(|| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&self.config).unwrap_or_default().hash(&mut h);
            format!("{}/{}/{}/{}/{:x}", self.account, self.function, self.version, self.code_sha256, h.finish())
        })
    }

    /// `account/function/version`: what statistics are kept by (they outlive code and configuration
    /// changes of `$LATEST`). Borrowed from the queue key, so it costs nothing per invocation.
    pub fn version_key(&self) -> &str {
        let key = self.queue_key();
        let mut cut = key.len();
        for _ in 0..2 {
            cut = key[..cut].rfind('/').unwrap_or(0);
        }
        &key[..cut]
    }
}

/// One invocation request.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    pub payload: Bytes,
    /// Client context as raw JSON (already base64-decoded).
    pub client_context: Option<String>,
    /// Collect the invocation's log lines into the result (`Tail`); skipped otherwise.
    pub want_log: bool,
    /// The request id to run under, when the caller minted it already (an HTTP trigger puts it in the
    /// event it builds); a fresh one otherwise.
    pub request_id: Option<String>,
    /// The workflow execution this invocation is a step of: its function may `prepare` the execution's
    /// later steps, and it runs on an instance the execution reserved for it, when there is one.
    pub execution: Option<Arc<str>>,
    /// The execution has a workflow scratch directory the function may ask for.
    pub scratch: bool,
    /// Told when an instance takes the invocation (a node that forwarded it to another tells its caller
    /// so: an invocation lost with that node before it started may run elsewhere, one lost after may not).
    pub started: Option<StartSignal>,
}

/// Told when a pool's controller wants instances the node's memory has no room for.
pub trait Overflow: Send + Sync {
    /// `target`'s pool is `instances` short, with `queued` invocations waiting. Returns whether capacity
    /// elsewhere is (being) arranged, so the queued invocations wait for it rather than being refused.
    /// Called on the invocation path: must not block.
    fn short(&self, target: &Arc<InvokeTarget>, instances: usize, queued: usize) -> bool;
}

/// An invocation taken from its queue by another node (see [`Scheduler::take`]).
pub struct Taken {
    inv: queue::Invocation,
    queue: Arc<queue::FunctionQueue>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taken").field("id", &self.inv.id).finish_non_exhaustive()
    }
}

impl Taken {
    pub fn id(&self) -> &str {
        &self.inv.id
    }

    pub fn request(&self) -> &InvokeRequest {
        &self.inv.request
    }

    pub fn timeout_s(&self) -> u32 {
        self.inv.timeout_s
    }

    /// Of a preparation (`prepare`): its reservation here, whose turn the taking node's instance waits for.
    pub fn prepared(&self) -> Option<Prepared> {
        self.inv.reservation.clone().map(Prepared)
    }

    /// Answers the invocation's caller. One the other node had no room for (throttled there) goes back to
    /// its queue here instead, for an instance of this node's or another taker; it fails only if this node
    /// has no room for it either.
    pub fn finish(self, outcome: Result<InvokeResult, InvokeError>) {
        let Taken { inv, queue, shared } = self;
        let result = match outcome {
            Ok(r) => r,
            Err(InvokeError::Throttled { reason, retry_after_s }) => {
                // The caller hears whatever the queue here makes of it; if it is refused or dropped, the throttle.
                submit_again(&shared, &queue, inv, InvokeError::Throttled { reason, retry_after_s });
                return;
            }
            Err(e) => context::platform_result(&inv.id, e),
        };
        // A preparation that ended (or was lost) before its turn prepared for nothing: the step runs as
        // any other invocation.
        if let Some(r) = &inv.reservation {
            r.release("the prepared instance ended its invocation before its turn came");
        }
        let _ = inv.responder.send(result);
    }
}

/// Puts an invocation back in its queue ([`queue::submit`] again, its arrival counted once): its caller hears
/// whatever the queue makes of it, or `otherwise` if it is refused for want of room or dropped.
pub(crate) fn submit_again(
    shared: &Arc<Shared>,
    queue: &Arc<queue::FunctionQueue>,
    mut inv: queue::Invocation,
    otherwise: InvokeError,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let caller = std::mem::replace(&mut inv.responder, tx);
    let id = inv.id.to_string();
    match queue::submit(shared, queue, inv, true) {
        Ok(None) => {
            tokio::spawn(async move {
                let result = rx.await.unwrap_or_else(|_| context::platform_result(&id, otherwise));
                let _ = caller.send(result);
            });
        }
        Ok(Some(_)) => {
            let _ = caller.send(context::platform_result(&id, otherwise));
        }
        Err(e) => {
            let _ = caller.send(context::platform_result(&id, e));
        }
    }
}

/// A reservation (seed 000's `prepare`) as another node sees it, in a cluster: the queue's owner holds the
/// reservation and decides its turn; the node whose instance took the preparation holds a relayed copy,
/// which it gives the turn (or the release) it hears from the owner.
#[derive(Debug, Clone)]
pub struct Prepared(Arc<reserve::Reservation>);

impl Prepared {
    /// The relayed copy of reservation `id` (the owner's) for `execution`, prepared with `params`: a
    /// preparation run here with [`Scheduler::invoke_prepared`] waits on it for its turn.
    pub fn relayed(id: u64, execution: Arc<str>, params: Bytes) -> Self {
        Prepared(Arc::new(reserve::Reservation::relayed(id, execution, params)))
    }

    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Waits until the turn comes (the step's input) or the reservation is released (why).
    pub async fn turn(&self) -> Result<Bytes, String> {
        self.0.wait_turn().await
    }

    /// Gives the step's input to the prepared instance; false when it was released first.
    pub fn arrive(&self, input: Bytes) -> bool {
        self.0.arrive(input, std::time::Instant::now())
    }

    /// Releases the reservation unless its turn came; true when this call released it.
    pub fn release(&self, why: &str) -> bool {
        self.0.release(why)
    }
}

/// Fired once, when an instance takes an invocation.
#[derive(Debug, Clone)]
pub struct StartSignal(Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>);

impl StartSignal {
    /// A signal and what hears it.
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Self(Arc::new(std::sync::Mutex::new(Some(tx)))), rx)
    }

    pub(crate) fn fire(&self) {
        if let Some(tx) = stoke_core::sync::lock(&self.0).take() {
            let _ = tx.send(());
        }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function's response body.
    Success(Bytes),
    /// The function (or its runtime) failed; `body` is the error JSON the runtime sent or the platform wrote.
    FunctionError { error_type: String, body: Bytes },
}

/// The fields of Lambda's `REPORT` line.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub max_memory_used_mb: u64,
    /// Present on a cold start only.
    pub init_duration_ms: Option<f64>,
    pub instance: u64,
    /// From arrival until an instance took the invocation (includes waiting for a cold start).
    pub queued_ms: f64,
    /// Of a cold start: how long creating the sandbox took, before the runtime's own initialisation.
    pub sandbox_ms: Option<f64>,
    /// The initialisation of the instance that ran this, when this was the instance's first invocation —
    /// also when that initialisation happened ahead of time (pre-warmed): what this invocation caused.
    pub instance_init_ms: Option<f64>,
    /// Of an invocation that ran on a reserved (prepared) instance: how long the instance was held for it,
    /// from the start of its preparation until its turn came. `duration_ms` counts from the turn.
    pub held_ms: Option<f64>,
    /// Of a GPU function: the most GPU memory the instance's processes held so far, in MB (0 where the node
    /// cannot read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpu_memory_used_mb: Option<u64>,
}

/// A finished invocation.
#[derive(Debug, Clone)]
pub struct InvokeResult {
    pub request_id: String,
    pub outcome: Outcome,
    pub report: Report,
    /// The invocation's log lines (START … REPORT), newest last, when asked for.
    pub log: Vec<String>,
    /// The node it ran on, when another node than the one asked ran it (a cluster's queue owner).
    pub node: Option<String>,
}

/// Told of every instance initialisation and every invocation's run time (the planner's statistics).
/// Called on the warm path: implementations must be quick and must not block.
pub trait Observer: Send + Sync {
    fn initialised(&self, target: &InvokeTarget, init: Duration);
    fn ran(&self, target: &InvokeTarget, run: Duration);
    /// What was learned of the version's typical init and run times before its queue existed (earlier
    /// runs, also before a restart): the controller sizes a first burst with them.
    fn learned(&self, _target: &InvokeTarget) -> Learned {
        Learned::default()
    }
}

/// Typical durations of a function version, when known.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Learned {
    pub init: Option<Duration>,
    pub run: Option<Duration>,
}

/// Why a function's request to the platform (`prepare`, `is_available`) was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// HTTP status for the instance.
    pub status: u16,
    /// Machine-readable, e.g. `ResourceNotFoundException`.
    pub code: String,
    pub message: String,
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Resolves a function reference a running function names (to `prepare` it, or ask whether it is
/// available) to the target its invocations would run as, in the caller's account — exactly as an
/// invocation of that reference would, so a reservation is found by the step that invokes it.
pub trait Resolver: Send + Sync {
    fn resolve<'a>(
        &'a self,
        account: &'a AccountId,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Arc<InvokeTarget>, Refusal>>;

    /// In a cluster, where another node owns `target`'s queue: prepares it there for `execution` and
    /// returns the reservation's id (the owner picks the node of the instance). `None`: this node owns the
    /// queue, or there is no cluster; prepare here.
    fn prepare_at_owner<'a>(
        &'a self,
        _target: &'a Arc<InvokeTarget>,
        _execution: &'a str,
        _params: Bytes,
    ) -> BoxFuture<'a, Option<Result<u64, InvokeError>>> {
        Box::pin(async { None })
    }

    /// In a cluster, where another node owns `target`'s queue: the pool there. `None`: this node's.
    fn pool_at_owner<'a>(
        &'a self,
        _target: &'a Arc<InvokeTarget>,
    ) -> BoxFuture<'a, Option<stoke_core::pool::PoolSnapshot>> {
        Box::pin(async { None })
    }
}

/// Why an invocation did not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// `reason` says which limit was hit.
    #[error("{reason}; retry after {retry_after_s} s")]
    Throttled { reason: String, retry_after_s: u64 },
    #[error("the platform failed: {0}")]
    Platform(String),
    /// The node's disk is full: the function's code could not be unpacked. Retry once space is freed.
    #[error("{0}")]
    NoSpace(String),
    /// The node running it (its queue's owner in a cluster) was lost after the invocation started: whether
    /// it finished is unknown, so it is not run again silently. The caller may retry.
    #[error("{0}")]
    NodeLost(String),
}

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The node's GPUs (`None`: it has none). Instances of GPU functions get theirs from the node's ledger.
    pub gpu: Option<Arc<stoke_sandbox::gpu::GpuHost>>,
    /// Most instances of one function that may initialise at once. Starting is CPU work: far more of them
    /// than the node has cores only slows each one, and every invocation running meanwhile, down.
    pub max_starting_per_function: usize,
    /// Most instances a function starts for queued work before one has initialised and run (see
    /// [`stoke_core::pool::PoolSnapshot::first_wave`]). 0: one per queued invocation.
    pub first_wave: usize,
    /// Concurrency limit for functions that set none.
    pub default_concurrency: usize,
    /// How often the controller looks at every pool (keep-alive, min-warm, back-off).
    pub tick: Duration,
    /// Log lines kept per function.
    pub log_lines: usize,
    /// Node memory budget: what live instances may really use together (their measured peaks plus headroom),
    /// in MB. Idle instances give way when it is reached.
    pub memory_budget_mb: u64,
    /// Live instances' configured sizes may add up to at most this many times the budget.
    pub memory_overcommit: f64,
    /// Most instances one account may have in use (starting, initialising or busy) across all its functions;
    /// idle ones do not count.
    pub account_concurrency: usize,
    /// Freeze an instance that has waited this long for work (when the sandbox can), and thaw it when work
    /// arrives: an idle instance then uses no CPU at all. `None`: never.
    pub freeze_idle_after: Option<Duration>,
    /// How long a reservation made by `prepare` waits for its step before it is released.
    pub reservation_ttl: Duration,
    /// Generic instances to keep ready (where the sandbox can), by kind: `sandbox` (set up, nothing started)
    /// and `python` (stoke's Python runtime already started).
    pub generic: Vec<(runtimes::GenericKind, usize)>,
    /// Most Python zygotes kept, one per layer set (where the sandbox can): instances of Python functions
    /// with layers are forked from them. 0: none.
    pub zygotes: usize,
    /// The node's cores (a lasting load of short invocations keeps at most this many instances of a function
    /// busy).
    pub cores: usize,
    /// This node's name in a cluster: every metric carries it as the `node` label, so that a cluster's
    /// nodes can be scraped into one place. `None` alone.
    pub node: Option<String>,
}

/// Twice the node's cores, at least 4.
pub fn default_max_starting() -> usize {
    (2 * std::thread::available_parallelism().map_or(2, |n| n.get())).max(4)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            gpu: None,
            max_starting_per_function: default_max_starting(),
            first_wave: 2,
            default_concurrency: 1000,
            tick: Duration::from_millis(250),
            log_lines: 5000,
            memory_budget_mb: 10_240,
            memory_overcommit: stoke_core::memory::DEFAULT_OVERCOMMIT,
            account_concurrency: 1000,
            freeze_idle_after: Some(Duration::from_secs(1)),
            reservation_ttl: Duration::from_secs(60),
            generic: Vec::new(),
            zygotes: 0,
            cores: std::thread::available_parallelism().map_or(2, |n| n.get()),
            node: None,
        }
    }
}

/// One instance as `stoke instances` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceInfo {
    pub id: u64,
    pub function: String,
    pub version: String,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub invocations: u64,
    pub init_duration_ms: Option<f64>,
    /// Every state change, as (state, milliseconds since the Unix epoch).
    pub timeline: Vec<(InstanceState, i64)>,
}

pub use stoke_core::memory::NodeStatus;

/// Queues taking work, by target key; and queues being drained (their function changed or went away),
/// still reconciled until their last instance is gone.
#[derive(Default)]
struct Queues {
    active: HashMap<String, Arc<FunctionQueue>>,
    draining: Vec<Arc<FunctionQueue>>,
}

impl Queues {
    fn all(&self) -> Vec<Arc<FunctionQueue>> {
        self.active.values().chain(self.draining.iter()).cloned().collect()
    }

    fn of(&self, account: &AccountId, function: &FunctionName) -> Vec<Arc<FunctionQueue>> {
        self.all().into_iter().filter(|q| &q.target.account == account && &q.target.function == function).collect()
    }
}

/// The node's memory ledger: what its live instances are charged and configured at, added up. Changed when an
/// instance starts, is measured, or goes — never per invocation.
#[derive(Default)]
pub(crate) struct NodeMemory {
    charged_mb: AtomicU64,
    configured_mb: AtomicU64,
    instances: AtomicUsize,
}

impl NodeMemory {
    pub fn ledger(&self) -> stoke_core::memory::Ledger {
        stoke_core::memory::Ledger {
            charged_mb: self.charged_mb.load(Ordering::Relaxed),
            configured_mb: self.configured_mb.load(Ordering::Relaxed),
        }
    }

    fn add(&self, charged_mb: u64, configured_mb: u64) {
        self.charged_mb.fetch_add(charged_mb, Ordering::Relaxed);
        self.configured_mb.fetch_add(configured_mb, Ordering::Relaxed);
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes an instance's charge and configured size off the ledger. Once per instance: callers pass the
    /// charge they took out of its entry, and 0 (nothing to release) when it was taken already.
    pub fn release(&self, charged_mb: u64, configured_mb: u64) {
        if charged_mb == 0 {
            return;
        }
        let sub = |a: &AtomicU64, v: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(x.saturating_sub(v)));
        };
        sub(&self.charged_mb, charged_mb);
        sub(&self.configured_mb, configured_mb);
        let _ = self.instances.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(x.saturating_sub(1)));
    }

    /// An instance's charge changed from `old` to `new` (it was measured).
    pub fn adjust(&self, old: u64, new: u64) {
        if new >= old {
            self.charged_mb.fetch_add(new - old, Ordering::Relaxed);
        } else {
            let _ = self
                .charged_mb
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(x.saturating_sub(old - new)));
        }
    }
}

pub(crate) struct Shared {
    sandbox: Arc<dyn Sandbox>,
    /// What every decision by time reads (see [`clock`]).
    pub(crate) clock: Arc<dyn Clock>,
    run_dir: PathBuf,
    settings: Settings,
    queues: Mutex<Queues>,
    next_instance: AtomicU64,
    ids: ids::RequestIds,
    pub(crate) metrics: metrics::Metrics,
    /// Held while deciding where new instances fit, so two pools never claim the same free memory.
    placement: Mutex<()>,
    pub(crate) memory: NodeMemory,
    /// Until when a search for idle instances to give way is not repeated, after one found none.
    barren_until: Mutex<Option<std::time::Instant>>,
    /// Each account's instances in use on the node, shared by its queues.
    accounts: Mutex<HashMap<AccountId, Arc<AtomicUsize>>>,
    /// Each function's invocations on the node, counted by its queues and kept when they go (one entry per
    /// function ever invoked here).
    activity: Mutex<HashMap<(AccountId, FunctionName), Arc<queue::FunctionActivity>>>,
    pub(crate) observer: std::sync::OnceLock<Arc<dyn Observer>>,
    pub(crate) resolver: std::sync::OnceLock<Arc<dyn Resolver>>,
    /// Told when a pool needs instances the node has no room for (a cluster places them on other nodes).
    pub(crate) overflow: std::sync::OnceLock<Arc<dyn Overflow>>,
    pub(crate) reservations: reserve::Reservations,
    pub(crate) next_reservation: AtomicU64,
    /// What of each GPU live instances hold (`stoke_core::gpu`): taken when a GPU function's instance is
    /// placed, given back when it is gone.
    pub(crate) gpus: Mutex<stoke_core::gpu::GpuLedger>,
}

/// The scheduler: owns every function queue and instance.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("sandbox", &self.shared.sandbox.kind()).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Prepares `run_dir` (runtime bootstraps, unpacked code) and starts the controller's tick.
    /// Must be called inside a tokio runtime.
    pub fn start(sandbox: Arc<dyn Sandbox>, run_dir: PathBuf, settings: Settings) -> std::io::Result<Self> {
        Self::start_with_clock(sandbox, run_dir, settings, Arc::new(SystemClock))
    }

    /// [`Scheduler::start`], reading the time from `clock` (tests move a [`clock::TestClock`]).
    pub fn start_with_clock(
        sandbox: Arc<dyn Sandbox>,
        run_dir: PathBuf,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let scheduler = Self::without_ticks(sandbox, run_dir, settings, clock)?;
        scheduler.tick_every(scheduler.shared.settings.tick);
        Ok(scheduler)
    }

    /// The scheduler without its controller's tick: the crate's tests tick it themselves, when they choose.
    pub(crate) fn without_ticks(
        sandbox: Arc<dyn Sandbox>,
        run_dir: PathBuf,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        runtimes::install(&run_dir)?;
        // All instances together stay within the budget: beyond it the kernel reclaims and kills among them.
        if !sandbox.limit_instances_memory(settings.memory_budget_mb.saturating_mul(1024 * 1024)) {
            tracing::debug!(sandbox = sandbox.kind(), "instances are not held to the memory budget together");
        }
        sandbox.keep_generic(runtimes::generic_specs(&run_dir, &settings.generic));
        sandbox.keep_zygotes(runtimes::zygote_spec(&run_dir, settings.zygotes));
        let gpus = settings.gpu.as_ref().map_or_else(Vec::new, |g| {
            g.devices.iter().map(|d| stoke_core::gpu::GpuCapacity { index: d.index, memory_mb: d.memory_mb }).collect()
        });
        let shared = Arc::new(Shared {
            gpus: Mutex::new(stoke_core::gpu::GpuLedger::new(&gpus)),
            sandbox,
            clock,
            run_dir,
            settings,
            queues: Mutex::new(Queues::default()),
            next_instance: AtomicU64::new(1),
            ids: ids::RequestIds::new(),
            metrics: metrics::Metrics::new(),
            placement: Mutex::new(()),
            memory: NodeMemory::default(),
            barren_until: Mutex::new(None),
            accounts: Mutex::new(HashMap::new()),
            activity: Mutex::new(HashMap::new()),
            observer: std::sync::OnceLock::new(),
            resolver: std::sync::OnceLock::new(),
            overflow: std::sync::OnceLock::new(),
            reservations: reserve::Reservations::default(),
            next_reservation: AtomicU64::new(1),
        });
        Ok(Self { shared })
    }

    /// Runs the controller's tick every `every`, for as long as the scheduler lives.
    fn tick_every(&self, every: Duration) {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                tick(&shared);
            }
        });
    }

    pub fn sandbox_kind(&self) -> &'static str {
        self.shared.sandbox.kind()
    }

    /// Generic instances ready, by kind.
    pub fn generic_ready(&self) -> Vec<(String, usize)> {
        self.shared.sandbox.generic_ready()
    }

    /// Zygotes ready.
    pub fn zygotes_ready(&self) -> usize {
        self.shared.sandbox.zygotes_ready()
    }

    /// Snapshots instances are restored from, by name.
    pub fn snapshots_ready(&self) -> Vec<String> {
        self.shared.sandbox.snapshots_ready()
    }

    fn queue_for(&self, target: &Arc<InvokeTarget>) -> Arc<FunctionQueue> {
        queue_of(&self.shared, target)
    }

    /// Runs one invocation and waits for its result.
    pub async fn invoke(&self, target: &Arc<InvokeTarget>, req: InvokeRequest) -> Result<InvokeResult, InvokeError> {
        if let Some(execution) = &req.execution {
            let now = self.shared.clock.now();
            let reserved = self.shared.reservations.take_turn(execution, target.queue_key(), &req.payload, now);
            if let Some(result) = reserved.and_then(|r| r.take_result()) {
                return result
                    .await
                    .map_err(|_| InvokeError::Platform("the invocation was dropped".into()))
                    .and_then(context::platform_failure);
            }
        }
        self.run(target, req, None).await
    }

    /// Runs a preparation another node (the queue's owner) handed this one: it holds an instance here
    /// for `prepared`'s turn, which the caller relays from the owner. Its result is the step's.
    pub async fn invoke_prepared(
        &self,
        target: &Arc<InvokeTarget>,
        req: InvokeRequest,
        prepared: Prepared,
    ) -> Result<InvokeResult, InvokeError> {
        self.run(target, req, Some(prepared.0)).await
    }

    /// Prepares `target` for a later step of `execution` (seed 000's `prepare`) on this node's queue, as a
    /// step's own `prepare` does; returns the reservation's id. For the queue's owner in a cluster, which
    /// another node asked.
    pub fn prepare(&self, target: &Arc<InvokeTarget>, execution: Arc<str>, params: Bytes) -> Result<u64, InvokeError> {
        prepare(&self.shared, target, execution, params).map(|r| r.id)
    }

    async fn run(
        &self,
        target: &Arc<InvokeTarget>,
        req: InvokeRequest,
        reservation: Option<Arc<reserve::Reservation>>,
    ) -> Result<InvokeResult, InvokeError> {
        let queue = self.queue_for(target);
        let id = req.request_id.clone().unwrap_or_else(|| self.shared.ids.next());
        let (mut invocation, done) =
            queue::Invocation::new(id, req, target.config.timeout_s, self.shared.clock.as_ref());
        invocation.reservation = reservation;
        // A node short of memory is often so only for a moment: an instance that has just answered is idle,
        // and can give way, a few hundred microseconds later. Try again for a short while before refusing.
        let give_up = self.shared.clock.now() + NO_ROOM_GRACE;
        let mut again = false;
        while let Some(back) = queue::submit(&self.shared, &queue, invocation, again)? {
            if self.shared.clock.now() >= give_up {
                return Err(queue::no_room(&self.shared, &queue));
            }
            tokio::time::sleep(NO_ROOM_RETRY).await;
            (invocation, again) = (back, true);
        }
        done.await
            .map_err(|_| InvokeError::Platform("the invocation was dropped".into()))
            .and_then(context::platform_failure)
    }

    /// Sets who is told when a pool needs instances this node has no room for (the first one set stays).
    pub fn overflow_to(&self, overflow: Arc<dyn Overflow>) {
        let _ = self.shared.overflow.set(overflow);
    }

    /// Takes the next invocation queued for `target` for an instance on another node (cluster mode: that
    /// node pulls from this one, the queue's owner), waiting up to `wait` for one. The taker answers it with
    /// [`Taken::finish`]; a `Taken` dropped unanswered fails the invocation.
    pub async fn take(&self, target: &Arc<InvokeTarget>, wait: Duration) -> Option<Taken> {
        let queue = self.queue_for(target);
        let inv = match queue.take_remote() {
            Ok(inv) => inv,
            Err(rx) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(inv)) => inv,
                _ => {
                    queue.forget_closed_takers();
                    return None;
                }
            },
        };
        if let Some(started) = &inv.request.started {
            started.fire();
        }
        Some(Taken { inv, queue, shared: self.shared.clone() })
    }

    /// Sets how functions' references are resolved for `prepare` and `is_available`; the first one set stays.
    /// Without one, both are refused.
    pub fn resolve_with(&self, resolver: Arc<dyn Resolver>) {
        let _ = self.shared.resolver.set(resolver);
    }

    /// Releases the open reservations of `execution` for `targets` (the execution took another branch), or
    /// all of them (`None`: the execution ended). Their instances' `wait_turn` fails with `why`; the
    /// instances return to their pools. Returns how many were released.
    pub fn release_reservations(&self, execution: &str, targets: Option<&[Arc<InvokeTarget>]>, why: &str) -> usize {
        let keys: Option<Vec<String>> = targets.map(|ts| ts.iter().map(|t| t.queue_key().to_string()).collect());
        self.shared.reservations.release(execution, keys.as_deref(), why)
    }

    /// Creates the scratch directory of `execution` (idempotent): the steps of the execution that run on
    /// this node share it, at the path `scratch` answers them.
    pub fn open_scratch(&self, account: &AccountId, execution: &str) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = runtimes::scratch_root(&self.shared.run_dir, account).join(execution);
        std::fs::create_dir_all(&dir)?;
        // Instances run as an unprivileged user; the directory is theirs to write (the account's root is
        // mounted into that account's instances only).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
    }

    /// Removes the scratch directory of `execution` and everything in it.
    pub fn close_scratch(&self, account: &AccountId, execution: &str) -> std::io::Result<()> {
        let dir = runtimes::scratch_root(&self.shared.run_dir, account).join(execution);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes every execution scratch directory but those of `running` executions (at start: executions
    /// that ended while the server was down, or whose end could not remove theirs). Returns how many.
    pub fn sweep_scratch(&self, running: &std::collections::HashSet<String>) -> usize {
        let root = self.shared.run_dir.join("scratch");
        let Ok(accounts) = std::fs::read_dir(&root) else { return 0 };
        let mut removed = 0;
        for dir in accounts.flatten().filter_map(|a| std::fs::read_dir(a.path()).ok()).flat_map(|d| d.flatten()) {
            let name = dir.file_name().to_string_lossy().into_owned();
            if !running.contains(&name) && std::fs::remove_dir_all(dir.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Open reservations of an execution.
    pub fn reservations(&self, execution: &str) -> usize {
        self.shared.reservations.count(execution)
    }

    /// Sets the observer told of initialisations and run times; the first one set stays.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        let _ = self.shared.observer.set(observer);
    }

    /// Announces `count` invocations of `target` expected soon: the pool starts instances for them now (as
    /// far as its rules allow), so they find warm instances. Each announcement is used up by the next
    /// invocation that arrives, or lapses after `ttl`. Instances started for it are ordinary warm instances.
    pub fn announce(&self, target: &Arc<InvokeTarget>, count: usize, ttl: Duration) {
        if count == 0 {
            return;
        }
        let queue = self.queue_for(target);
        queue.announce(count, ttl);
        queue::reconcile(&self.shared, &queue);
    }

    /// The pool of `target` as the controller sees it now (all zero when it has none).
    pub fn pool(&self, target: &Arc<InvokeTarget>) -> stoke_core::pool::PoolSnapshot {
        pool_of(&self.shared, target)
    }

    /// Prometheus text exposition of every metric.
    pub fn metrics(&self) -> String {
        let queues = lock(&self.shared.queues).all();
        let mut depth = Vec::new();
        let mut states = Vec::new();
        for q in &queues {
            let labels = q.labels().clone();
            for info in q.instance_infos() {
                states.push((labels.with_state(info.state.as_str()), 1));
            }
            depth.push((labels, q.depth() as i64));
        }
        self.shared.metrics.encode(self.shared.settings.node.as_deref(), depth, states)
    }

    /// The node's GPUs, each with what live instances hold of it.
    pub fn gpus(&self) -> Vec<(stoke_sandbox::gpu::GpuDevice, stoke_core::gpu::GpuUse)> {
        let Some(host) = &self.shared.settings.gpu else { return Vec::new() };
        let usage = lock(&self.shared.gpus).usage();
        host.devices
            .iter()
            .filter_map(|d| Some((d.clone(), usage.iter().find(|u| u.index == d.index)?.clone())))
            .collect()
    }

    /// Whether GPU shares are held to their size (an MPS daemon per GPU); false without GPUs.
    pub fn gpu_shares_enforced(&self) -> bool {
        self.shared.settings.gpu.as_ref().is_some_and(|host| host.enforces_shares())
    }

    /// The node as a whole (every account's instances).
    pub fn node_status(&self) -> NodeStatus {
        let ledger = self.shared.memory.ledger();
        let m = &self.shared.metrics;
        NodeStatus {
            memory_budget_mb: self.shared.settings.memory_budget_mb,
            memory_overcommit: self.shared.settings.memory_overcommit,
            instances: self.shared.memory.instances.load(Ordering::Relaxed),
            charged_mb: ledger.charged_mb,
            configured_mb: ledger.configured_mb,
            used_mb: self.shared.sandbox.instances_memory_bytes().map(|b| b.div_ceil(1024 * 1024)),
            cold_starts: m.node_cold_starts.get(),
            evictions: metrics::Eviction::ALL.iter().map(|e| (e.as_str().to_string(), m.evictions_of(*e))).collect(),
            reclaim_walks: m.reclaim_walks.get(),
        }
    }

    /// What each of `account`'s functions did on this node since it started (every version and alias).
    pub fn activity(&self, account: &AccountId) -> HashMap<String, stoke_core::stats::Activity> {
        lock(&self.shared.activity)
            .iter()
            .filter(|((a, _), _)| a == account)
            .map(|((_, function), counts)| (function.to_string(), counts.read()))
            .collect()
    }

    /// The node's last hour in ten-second slots, oldest first (every account's invocations).
    pub fn node_history(&self) -> Vec<stoke_core::history::HistoryPoint> {
        self.shared.metrics.recent.points()
    }

    /// A fresh request id.
    pub fn request_id(&self) -> String {
        self.shared.ids.next()
    }

    /// Makes sure `target` has a queue, so its `min_warm` instances are started and kept.
    pub fn keep_warm(&self, target: &Arc<InvokeTarget>) {
        let queue = self.queue_for(target);
        queue::reconcile(&self.shared, &queue);
    }

    /// Instances of one account (optionally one function), for `stoke instances`.
    pub fn instances(&self, account: &AccountId, function: Option<&FunctionName>) -> Vec<InstanceInfo> {
        let queues = lock(&self.shared.queues).all();
        let mut out: Vec<_> = queues
            .iter()
            .filter(|q| &q.target.account == account && function.is_none_or(|f| &q.target.function == f))
            .flat_map(|q| q.instance_infos())
            .collect();
        out.sort_by_key(|i| i.id);
        out
    }

    /// Invocations queued or running for a function (any version): retirement waits for this to be 0.
    pub fn in_flight(&self, account: &AccountId, function: &FunctionName) -> usize {
        lock(&self.shared.queues).of(account, function).iter().map(|q| q.in_flight()).sum()
    }

    /// Stops sending new work to a function's current instances and lets them go once idle (after a code or
    /// configuration change, a block, a retirement or a delete). The next invocation gets fresh instances.
    pub fn drain(&self, account: &AccountId, function: &FunctionName) {
        self.drain_where(|t| &t.account == account && &t.function == function);
    }

    /// Lets `target`'s instances go once idle, leaving the function's other pools alone (a tuner's test
    /// sizes when the tune is done).
    pub fn release(&self, target: &Arc<InvokeTarget>) {
        let key = target.queue_key();
        self.drain_where(|t| t.queue_key() == key);
    }

    fn drain_where(&self, matches: impl Fn(&InvokeTarget) -> bool) {
        let drained: Vec<_> = {
            let mut queues = lock(&self.shared.queues);
            let keys: Vec<_> =
                queues.active.iter().filter(|(_, q)| matches(&q.target)).map(|(k, _)| k.clone()).collect();
            let drained: Vec<_> = keys.iter().filter_map(|k| queues.active.remove(k)).collect();
            queues.draining.extend(drained.iter().cloned());
            drained
        };
        for q in drained {
            q.retire();
            queue::reconcile(&self.shared, &q);
        }
    }

    /// Log lines of a function (all versions), oldest first, at most `limit`.
    pub fn logs(
        &self,
        account: &AccountId,
        function: &FunctionName,
        since_ms: i64,
        limit: usize,
    ) -> Vec<logs::LogLine> {
        let queues = lock(&self.shared.queues).of(account, function);
        let mut lines: Vec<_> = queues.iter().flat_map(|q| q.logs.since(since_ms)).collect();
        lines.sort_by_key(|l| l.at_ms);
        let skip = lines.len().saturating_sub(limit);
        lines.split_off(skip)
    }

    pub(crate) fn next_instance_id(shared: &Shared) -> u64 {
        shared.next_instance.fetch_add(1, Ordering::Relaxed)
    }
}

/// The queue of `target`, made when it has none.
pub(crate) fn queue_of(shared: &Shared, target: &Arc<InvokeTarget>) -> Arc<FunctionQueue> {
    let mut queues = lock(&shared.queues);
    if let Some(q) = queues.active.get(target.queue_key()) {
        return q.clone();
    }
    queues
        .active
        .entry(target.queue_key().to_string())
        .or_insert_with(|| {
            let learned = shared.observer.get().map(|o| o.learned(target)).unwrap_or_default();
            let in_use = lock(&shared.accounts).entry(target.account.clone()).or_default().clone();
            let log_lines = shared.settings.log_lines;
            let activity =
                lock(&shared.activity).entry((target.account.clone(), target.function.clone())).or_default().clone();
            Arc::new(FunctionQueue::new(target.clone(), log_lines, learned, in_use, activity, shared.clock.clone()))
        })
        .clone()
}

/// The pool of `target` as the controller sees it now (all zero when it has none).
pub(crate) fn pool_of(shared: &Shared, target: &Arc<InvokeTarget>) -> stoke_core::pool::PoolSnapshot {
    let queue = lock(&shared.queues).active.get(target.queue_key()).cloned();
    queue.map(|q| q.snapshot_now(shared)).unwrap_or_default()
}

/// Reserves an instance of `target` for a later step of `execution` and starts its preparation invocation
/// with `params` (an idle instance takes it at once, else one is started). The reservation is released
/// after the configured time if the execution has not reached the step by then.
pub(crate) fn prepare(
    shared: &Arc<Shared>,
    target: &Arc<InvokeTarget>,
    execution: Arc<str>,
    params: Bytes,
) -> Result<Arc<reserve::Reservation>, InvokeError> {
    let queue = queue_of(shared, target);
    let ttl = shared.settings.reservation_ttl;
    // The function's own time limit counts from its turn; until then, the reservation's.
    let timeout_s = target.config.timeout_s.saturating_add(u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX));
    let req = InvokeRequest { payload: params.clone(), execution: Some(execution.clone()), ..Default::default() };
    let (mut invocation, result) = queue::Invocation::new(shared.ids.next(), req, timeout_s, shared.clock.as_ref());
    let id = shared.next_reservation.fetch_add(1, Ordering::Relaxed);
    let reservation =
        Arc::new(reserve::Reservation::new(id, execution, target.queue_key().to_string(), params, result));
    invocation.reservation = Some(reservation.clone());
    shared.reservations.add(reservation.clone());
    let submitted = match queue::submit(shared, &queue, invocation, false) {
        Ok(None) => Ok(()),
        // A preparation is a hint: no waiting for room.
        Ok(Some(_)) => Err(queue::no_room(shared, &queue)),
        Err(e) => Err(e),
    };
    if let Err(e) = submitted {
        reservation.release(&format!("the function could not be prepared: {e}"));
        return Err(e);
    }
    let expiring = reservation.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ttl).await;
        expiring.release(&format!(
            "the reservation expired: the execution did not reach this step within {} s",
            ttl.as_secs_f64()
        ));
    });
    Ok(reservation)
}

impl Shared {
    pub(crate) fn memory_policy(&self) -> stoke_core::memory::MemoryPolicy {
        stoke_core::memory::MemoryPolicy {
            budget_mb: self.settings.memory_budget_mb,
            overcommit: self.settings.memory_overcommit,
        }
    }
}

/// Instances `queue`'s account could still put to use on the node: the rest of its allowance. One counter.
pub(crate) fn account_room(shared: &Shared, queue: &Arc<FunctionQueue>) -> usize {
    let in_use = lock(&shared.accounts).get(&queue.target.account).map_or(0, |c| c.load(Ordering::Relaxed));
    shared.settings.account_concurrency.saturating_sub(in_use)
}

/// Starts up to `want` instances of `queue`'s function where the account's allowance and the node's memory
/// let it (`stoke_core::memory::admit`): each is charged its function's measured peak plus headroom (its
/// configured size until one was measured). When they do not all fit, idle instances anywhere on the node
/// give way (`stoke_core::memory::pick_victims`) and admission is asked again. Reads counters only, unless
/// memory is short.
pub(crate) fn place(shared: &Arc<Shared>, queue: &Arc<FunctionQueue>, want: usize) -> queue::Placed {
    if want == 0 {
        return queue::Placed::default();
    }
    let _placing = lock(&shared.placement);
    let want = want.min(queue.still_to_start(shared)).min(account_room(shared, queue));
    if want == 0 {
        return queue::Placed::default();
    }
    let (charge, configured) = (queue.new_instance_charge(), queue.memory_mb());
    let policy = shared.memory_policy();
    let mut admission = stoke_core::memory::admit(&policy, shared.memory.ledger(), want, charge, configured);
    if admission.fits < want {
        reclaim(shared, admission.reclaim_charged_mb, admission.reclaim_configured_mb);
        admission = stoke_core::memory::admit(&policy, shared.memory.ledger(), want, charge, configured);
    }
    let mut started = 0;
    for _ in 0..admission.fits {
        let id = Scheduler::next_instance_id(shared);
        let gpus = match gpu_for(shared, queue, id) {
            Ok(g) => g,
            Err(()) => break,
        };
        shared.memory.add(charge, configured);
        instance::spawn(shared, queue.clone(), charge, id, gpus);
        started += 1;
    }
    let short = want - started;
    let elsewhere = short > 0 && shared.overflow.get().is_some_and(|o| o.short(&queue.target, short, queue.queued()));
    queue::Placed { short_of_memory: short > 0, elsewhere }
}

/// The GPUs instance `id` of `queue`'s function takes from the node's ledger (none for a function without
/// one). When they are held by others, idle GPU instances give way (they hand theirs back once gone) and the
/// refusal is kept for the invocation's answer.
fn gpu_for(shared: &Shared, queue: &FunctionQueue, id: u64) -> Result<Option<Vec<stoke_core::gpu::GrantedGpu>>, ()> {
    let Some(request) = stoke_core::gpu::GpuRequest::of(&queue.target.config) else { return Ok(None) };
    let assigned = lock(&shared.gpus).assign(id, request);
    match assigned {
        Ok(granted) => {
            queue.set_gpu_refusal(None);
            Ok(Some(granted))
        }
        Err(refusal) => {
            if matches!(refusal, stoke_core::gpu::GpuRefusal::Busy(_)) {
                reclaim_gpus(shared);
            }
            queue.set_gpu_refusal(Some(refusal.message().to_string()));
            Err(())
        }
    }
}

/// Evicts the idle instances of GPU functions, so that what they hold comes back to the ledger when they are
/// gone. Called only when a GPU instance found no room.
fn reclaim_gpus(shared: &Shared) {
    let now = shared.clock.now();
    let queues = lock(&shared.queues).all();
    let mut evicted = 0;
    for q in queues.iter().filter(|q| q.target.config.gpu_count > 0) {
        let mut idle = Vec::new();
        q.idle_candidates(now, &mut idle);
        for i in idle {
            if q.evict_idle(shared, i.id) {
                evicted += 1;
            }
        }
    }
    shared.metrics.evicted(metrics::Eviction::Reclaimed, evicted);
}

/// How long a search for idle instances to give way that found none is not repeated: a node full of busy
/// instances does not search every queue for each invocation it cannot place.
const BARREN_RETRY: Duration = Duration::from_millis(50);

/// How long an invocation that no instance can be started for (the node's memory taken by instances in
/// use) waits for room before it is refused with a retryable 429.
const NO_ROOM_GRACE: Duration = Duration::from_millis(250);
/// How often such an invocation tries again within its grace.
const NO_ROOM_RETRY: Duration = Duration::from_millis(50);

/// Evicts idle instances, least worth keeping first, until they free `charged_mb` of charge and
/// `configured_mb` of configured memory (in batches of at least 1 % of the budget, so that a run of cold
/// starts on a full node does not look at every instance for each one). Walks every queue: called only when
/// memory is short. Returns how many it evicted.
pub(crate) fn reclaim(shared: &Shared, charged_mb: u64, configured_mb: u64) -> usize {
    if charged_mb == 0 && configured_mb == 0 {
        return 0;
    }
    let now = shared.clock.now();
    if lock(&shared.barren_until).is_some_and(|until| now < until) {
        return 0;
    }
    shared.metrics.reclaim_walks.inc();
    let queues = lock(&shared.queues).all();
    let mut idle = Vec::new();
    let mut owners = HashMap::new();
    for q in &queues {
        let before = idle.len();
        q.idle_candidates(now, &mut idle);
        for i in &idle[before..] {
            owners.insert(i.id, q.clone());
        }
    }
    let batch = shared.settings.memory_budget_mb / 100;
    let (charged, configured) =
        if charged_mb > 0 { (charged_mb.max(batch), configured_mb) } else { (0, configured_mb.max(batch)) };
    let mut evicted = 0;
    tracing::debug!(candidates = ?idle, charged, configured, "looking for idle instances to give way");
    for id in stoke_core::memory::pick_victims(&idle, charged, configured) {
        if owners.get(&id).is_some_and(|q| q.evict_idle(shared, id)) {
            evicted += 1;
        }
    }
    shared.metrics.evicted(metrics::Eviction::Reclaimed, evicted);
    if evicted > 0 {
        tracing::debug!(evicted, charged_mb, configured_mb, "reclaimed idle instances' memory");
    } else {
        *lock(&shared.barren_until) = Some(now + BARREN_RETRY);
    }
    evicted
}

/// One controller tick over every pool on the node: load and arrival rates, pool sizes and keep-alive, queues
/// drained empty, memory pressure.
fn tick(shared: &Arc<Shared>) {
    let queues = lock(&shared.queues).all();
    let now = shared.clock.now();
    for q in &queues {
        q.tick(now, shared.settings.freeze_idle_after);
        queue::reconcile(shared, q);
    }
    lock(&shared.queues).draining.retain(|q| !q.is_finished());
    shared.metrics.recent.roll(now, shared.clock.now_ms(), || queues.iter().map(|q| q.depth() as u64).sum());
    relieve_pressure(shared);
}

/// Once a tick: when the instances' measured working set nears the budget, or what they are charged has
/// grown past it (instances measured bigger than they were charged), idle instances give way.
fn relieve_pressure(shared: &Shared) {
    let budget = shared.settings.memory_budget_mb;
    let used_mb = shared.sandbox.instances_memory_bytes().map_or(0, |b| b / (1024 * 1024));
    let by_use = stoke_core::memory::pressure_reclaim_mb(used_mb, budget);
    let ledger = shared.memory.ledger();
    let by_charge = ledger.charged_mb.saturating_sub(budget);
    let by_configured = ledger.configured_mb.saturating_sub(shared.memory_policy().configured_limit_mb());
    if by_use > 0 || by_charge > 0 || by_configured > 0 {
        let _placing = lock(&shared.placement);
        reclaim(shared, by_use.max(by_charge), by_configured);
    }
}

pub(crate) use stoke_core::sync::lock;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_kept_by_account_function_and_version() {
        let target = InvokeTarget::fixture("$LATEST");
        assert_eq!(target.version_key(), "123456789012/resize/$LATEST");
        assert!(target.queue_key().starts_with("123456789012/resize/$LATEST/abc/"));
    }
}
