//! One function version's queue: invocations waiting for instances, instances waiting for invocations,
//! and the controller step that starts and evicts instances from the pool rules.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stoke_core::memory::{charge_mb, IdleInstance, DEFAULT_RESTART_MS};
use stoke_core::pool::{
    account_check_needed, idle_to_evict, init_backoff, instances_to_start, should_throttle, InstanceState,
    PoolSnapshot, Throttle,
};
use stoke_sandbox::InstanceControl;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::logs::LogBuffer;
use crate::metrics::Eviction;
use crate::{lock, InstanceInfo, InvokeError, InvokeRequest, InvokeResult, InvokeTarget, Outcome, Shared};

/// The workflow step an instance was started for (see `FunctionQueue::origin_of_new`).
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub execution: Arc<str>,
    /// The step's input, or for a preparation, its preparation input.
    pub event: axum::body::Bytes,
    /// The invocation is a preparation (`prepare`).
    pub prepared: bool,
    /// The execution has a scratch directory (its steps and preparations stay on its node).
    pub scratch: bool,
}

/// An invocation on its way to an instance.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub id: Arc<str>,
    pub request: InvokeRequest,
    /// When the invocation arrived: it is a cold start if its instance became ready after this.
    pub arrived: Instant,
    pub deadline: Instant,
    pub deadline_epoch_ms: i64,
    pub timeout_s: u32,
    pub responder: oneshot::Sender<InvokeResult>,
    /// Of a preparation invocation (`prepare`): the reservation it holds its instance for.
    pub reservation: Option<Arc<crate::reserve::Reservation>>,
}

impl Invocation {
    pub fn new(
        id: String,
        request: InvokeRequest,
        timeout_s: u32,
        clock: &dyn Clock,
    ) -> (Self, oneshot::Receiver<InvokeResult>) {
        let (tx, rx) = oneshot::channel();
        let timeout = Duration::from_secs(u64::from(timeout_s));
        let now = clock.now();
        let inv = Self {
            id: Arc::from(id),
            request,
            arrived: now,
            deadline: now + timeout,
            deadline_epoch_ms: clock.now_ms() + stoke_core::num::millis_i64(timeout),
            timeout_s,
            responder: tx,
            reservation: None,
        };
        (inv, rx)
    }

    /// Whether another node's instance may run it: any invocation but the steps and preparations of an
    /// execution with a scratch directory, which stay on the node running the execution (the directory is
    /// that node's). A preparation another node takes waits for its turn there, relayed from here.
    pub fn movable(&self) -> bool {
        !(self.request.scratch && self.request.execution.is_some())
    }
}

/// An instance waiting in `/next`.
struct Waiter {
    instance: u64,
    since: Instant,
    tx: oneshot::Sender<Invocation>,
}

pub(crate) struct InstanceEntry {
    pub state: InstanceState,
    /// When it was handed its current invocation (while busy).
    pub busy_since: Option<Instant>,
    /// Its current invocation is a preparation (`prepare`): it is held for one execution's step.
    pub held: bool,
    pub control: Option<Arc<dyn InstanceControl>>,
    pub invocations: u64,
    pub init_duration: Option<Duration>,
    pub timeline: Vec<(InstanceState, i64)>,
    /// What the node's memory ledger counts for it, in MB; 0 once released (evicted or gone).
    pub charge_mb: u64,
}

/// Instances by state, kept as they change, so that what an invocation reads of its pool costs the same
/// however large the pool is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    starting: usize,
    initializing: usize,
    idle: usize,
    /// Busy with an invocation that frees them for queued work when done.
    busy: usize,
    /// Busy with a preparation: held for one execution's step.
    held: usize,
    evicted: usize,
}

impl Counts {
    fn slot(&mut self, state: InstanceState, held: bool) -> &mut usize {
        match state {
            InstanceState::Starting => &mut self.starting,
            InstanceState::Initializing => &mut self.initializing,
            InstanceState::Idle => &mut self.idle,
            InstanceState::Busy if held => &mut self.held,
            InstanceState::Busy => &mut self.busy,
            InstanceState::Evicted => &mut self.evicted,
        }
    }

    /// Counts against the account's allowance: starting, initialising or running something.
    fn in_use(state: InstanceState) -> bool {
        matches!(state, InstanceState::Starting | InstanceState::Initializing | InstanceState::Busy)
    }
}

/// The invocations in flight (queued or running) of one function, averaged over time: what its pool must
/// hold to serve a load that lasts, as opposed to a burst that drains on its own.
#[derive(Debug)]
struct LoadMeter {
    in_flight: usize,
    since: Instant,
    window_start: Instant,
    /// In-flight invocations × seconds since `window_start`.
    area: f64,
    /// The average of the last windows (halved each window).
    average: Option<f64>,
}

impl LoadMeter {
    fn new(now: Instant) -> Self {
        LoadMeter { in_flight: 0, since: now, window_start: now, area: 0.0, average: None }
    }

    fn observe(&mut self, now: Instant, in_flight: usize) {
        self.area += self.in_flight as f64 * now.saturating_duration_since(self.since).as_secs_f64();
        self.since = now;
        self.in_flight = in_flight;
    }

    /// Closes the window: its average joins the running one.
    fn roll(&mut self, now: Instant) {
        self.observe(now, self.in_flight);
        let span = now.saturating_duration_since(self.window_start).as_secs_f64();
        if span > 0.0 {
            let window = self.area / span;
            self.average = Some(self.average.map_or(window, |a| (a + window) / 2.0));
        }
        self.area = 0.0;
        self.window_start = now;
    }
}

/// Runs the planning run time is the fastest of.
const RECENT_RUNS: usize = 16;

/// What the controller plans with: the recent run times, and a moving average of init times.
#[derive(Default)]
struct Stats {
    recent_runs_s: VecDeque<f64>,
    init_s: Option<f64>,
}

impl Stats {
    /// The fastest recent run (see [`PoolSnapshot::typical_duration`]).
    fn run_s(&self) -> Option<f64> {
        self.recent_runs_s.iter().copied().reduce(f64::min)
    }

    fn record_run(&mut self, s: f64) {
        if self.recent_runs_s.len() == RECENT_RUNS {
            self.recent_runs_s.pop_front();
        }
        self.recent_runs_s.push_back(s);
    }
}

fn ewma(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(old.map_or(sample, |o| o * 0.8 + sample * 0.2))
}

struct State {
    pending: VecDeque<Invocation>,
    waiters: VecDeque<Waiter>,
    /// Other nodes waiting for work of this queue (cluster mode: their instances pull from its owner).
    takers: VecDeque<oneshot::Sender<Invocation>>,
    instances: HashMap<u64, InstanceEntry>,
    stats: Stats,
    init_failures: u32,
    backoff_until: Option<Instant>,
    /// What the last failed initialisation reported, given to invocations refused during the back-off.
    last_init_error: Option<Outcome>,
    /// Announced invocations not yet arrived, by when each announcement lapses (oldest first).
    forecast: VecDeque<Instant>,
    counts: Counts,
    /// The account's instances in use on the node (shared by all its queues).
    account_in_use: Arc<AtomicUsize>,
    load: LoadMeter,
    /// Invocations arrived since the last tick, and the arrival rate they feed (calls per second).
    arrivals: u64,
    calls_per_s: f64,
    last_tick: Option<Instant>,
    /// The largest peak memory measured of the function's instances, in MB: what a new one is charged by.
    peak_mb: Option<u64>,
    /// How long idle instances waited before their next invocation, most recent last.
    gaps: VecDeque<Duration>,
    clock: Arc<dyn Clock>,
}

impl State {
    fn new(account_in_use: Arc<AtomicUsize>, stats: Stats, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        State {
            pending: VecDeque::new(),
            waiters: VecDeque::new(),
            takers: VecDeque::new(),
            instances: HashMap::new(),
            stats,
            init_failures: 0,
            backoff_until: None,
            last_init_error: None,
            forecast: VecDeque::new(),
            counts: Counts::default(),
            account_in_use,
            load: LoadMeter::new(now),
            arrivals: 0,
            calls_per_s: 0.0,
            // The first tick counts the arrivals since the queue was made.
            last_tick: Some(now),
            peak_mb: None,
            gaps: VecDeque::with_capacity(stoke_core::keepalive::FREEZE_GAPS),
            clock,
        }
    }

    fn healthy(&self) -> usize {
        self.counts.idle + self.counts.busy + self.counts.held
    }

    fn starting(&self) -> usize {
        self.counts.starting + self.counts.initializing
    }

    /// Instances not evicted.
    fn live(&self) -> usize {
        self.instances.len() - self.counts.evicted
    }

    /// Moves instance `id` to `state` (`held`: busy with a preparation), keeping the counts and the account's
    /// instances in use true.
    fn set(&mut self, id: u64, state: InstanceState, held: bool) {
        let Some(e) = self.instances.get_mut(&id) else { return };
        let (was, was_held) = (e.state, e.held);
        e.state = state;
        e.busy_since = (state == InstanceState::Busy).then(|| self.clock.now());
        e.held = held && state == InstanceState::Busy;
        e.timeline.push((state, self.clock.now_ms()));
        let now_held = e.held;
        *self.counts.slot(was, was_held) -= 1;
        *self.counts.slot(state, now_held) += 1;
        match (Counts::in_use(was), Counts::in_use(state)) {
            (true, false) => {
                self.account_in_use.fetch_sub(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.account_in_use.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Adds instance `id` in state `Starting`, charged `charge_mb`.
    fn add(&mut self, id: u64, charge_mb: u64) {
        let entry = InstanceEntry {
            state: InstanceState::Starting,
            busy_since: None,
            held: false,
            control: None,
            invocations: 0,
            init_duration: None,
            timeline: vec![(InstanceState::Starting, self.clock.now_ms())],
            charge_mb,
        };
        self.instances.insert(id, entry);
        self.counts.starting += 1;
        self.account_in_use.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets instance `id`; returns the charge it still held.
    fn remove(&mut self, id: u64) -> u64 {
        self.waiters.retain(|w| w.instance != id);
        let Some(e) = self.instances.remove(&id) else { return 0 };
        *self.counts.slot(e.state, e.held) -= 1;
        if Counts::in_use(e.state) {
            self.account_in_use.fetch_sub(1, Ordering::Relaxed);
        }
        e.charge_mb
    }

    /// Records that instance `id` was handed an invocation (`held`: a preparation).
    fn mark_busy(&mut self, id: u64, held: bool) {
        self.set(id, InstanceState::Busy, held);
        if let Some(e) = self.instances.get_mut(&id) {
            e.invocations += 1;
        }
    }

    /// When the longest-running invocation of a busy instance (not a held one) began. Walks the function's
    /// own instances: only the controller asks, when work is waiting.
    fn running_since(&self) -> Option<Instant> {
        if self.counts.busy == 0 {
            return None;
        }
        self.instances.values().filter(|i| i.state == InstanceState::Busy && !i.held).filter_map(|i| i.busy_since).min()
    }

    /// Invocations queued or running on an instance free for queued work, as the load meter counts them.
    fn observe_load(&mut self, now: Instant) {
        let in_flight = self.pending.len() + self.counts.busy;
        self.load.observe(now, in_flight);
    }

    /// Takes the given instances out of the idle set, marks them evicted and takes their charge (and
    /// `configured_mb` each) off the node's ledger; returns their controls so the caller can kill them after
    /// releasing the lock.
    fn evict_waiting(
        &mut self,
        ids: &[u64],
        configured_mb: u64,
        memory: &crate::NodeMemory,
    ) -> Vec<Arc<dyn InstanceControl>> {
        self.waiters.retain(|w| !ids.contains(&w.instance));
        let mut controls = Vec::new();
        for id in ids {
            self.set(*id, InstanceState::Evicted, false);
            let Some(e) = self.instances.get_mut(id) else { continue };
            memory.release(std::mem::take(&mut e.charge_mb), configured_mb);
            controls.extend(e.control.clone());
        }
        controls
    }
}

pub(crate) struct FunctionQueue {
    pub target: Arc<InvokeTarget>,
    state: Mutex<State>,
    /// No new work: the function changed or went away. Instances leave once idle.
    retired: AtomicBool,
    pub code_dir: tokio::sync::OnceCell<std::path::PathBuf>,
    pub logs: LogBuffer,
    /// How long an idle instance waits before it is frozen, in ms, from the function's own idle gaps
    /// (`stoke_core::keepalive::freeze_after`, worked out each tick); 0 until then.
    freeze_after_ms: AtomicU64,
    pub clock: Arc<dyn Clock>,
    /// Its function's invocations on this node, shared by the function's queues and kept when they go.
    activity: Arc<FunctionActivity>,
    /// Why its last instance could not get its GPUs, until one does: the answer to an invocation refused
    /// for want of them.
    gpu_refusal: Mutex<Option<String>>,
    /// Its series in the node's metrics.
    pub metrics: crate::metrics::QueueMetrics,
}

/// Invocations of one function answered on this node, those that failed, and when the last one was (ms since
/// the epoch): counted by every queue of the function, its versions and aliases, old and new.
#[derive(Debug, Default)]
pub(crate) struct FunctionActivity {
    answered: AtomicU64,
    failed: AtomicU64,
    last_answered_ms: std::sync::atomic::AtomicI64,
}

impl FunctionActivity {
    /// Counts one answered invocation, at `at_ms` (ms since the epoch).
    pub fn answered(&self, error: bool, at_ms: i64) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if error {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_answered_ms.fetch_max(at_ms, Ordering::Relaxed);
    }

    pub fn read(&self) -> stoke_core::stats::Activity {
        stoke_core::stats::Activity {
            invocations: self.answered.load(Ordering::Relaxed),
            errors: self.failed.load(Ordering::Relaxed),
            last_invoked_ms: self.last_answered_ms.load(Ordering::Relaxed),
        }
    }
}

impl FunctionQueue {
    pub fn new(
        target: Arc<InvokeTarget>,
        log_lines: usize,
        learned: crate::Learned,
        account_in_use: Arc<AtomicUsize>,
        activity: Arc<FunctionActivity>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let stats = Stats {
            recent_runs_s: learned.run.map(|d| d.as_secs_f64()).into_iter().collect(),
            init_s: learned.init.map(|d| d.as_secs_f64()),
        };
        let labels = crate::metrics::FunctionLabels {
            account: target.account.to_string(),
            function: target.function.to_string(),
            version: target.version.clone(),
        };
        Self {
            metrics: crate::metrics::QueueMetrics::new(labels),
            target,
            state: Mutex::new(State::new(account_in_use, stats, clock.clone())),
            retired: AtomicBool::new(false),
            code_dir: tokio::sync::OnceCell::new(),
            logs: LogBuffer::new(log_lines),
            freeze_after_ms: AtomicU64::new(0),
            clock,
            activity,
            gpu_refusal: Mutex::new(None),
        }
    }

    /// Counts one answered invocation of its function, at `at_ms` (ms since the epoch).
    pub fn answered(&self, error: bool, at_ms: i64) {
        self.activity.answered(error, at_ms);
    }

    /// How long an idle instance of this function waits before it is frozen: `base` (the server's setting)
    /// or longer, when the function's instances are usually reused after longer gaps than that.
    pub fn freeze_after(&self, base: Duration) -> Duration {
        Duration::from_millis(self.freeze_after_ms.load(Ordering::Relaxed)).max(base)
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Retired, with nothing left in it: can be dropped.
    pub fn is_finished(&self) -> bool {
        let st = lock(&self.state);
        self.is_retired() && st.instances.is_empty() && st.pending.is_empty()
    }

    fn concurrency_limit(&self, shared: &Shared) -> usize {
        self.target.config.concurrency_limit.map_or(shared.settings.default_concurrency, |l| l as usize)
    }

    /// Adds `count` announced invocations, each lapsing after `ttl`.
    pub fn announce(&self, count: usize, ttl: Duration) {
        let mut st = lock(&self.state);
        let now = self.clock.now();
        st.forecast.retain(|t| *t > now);
        st.forecast.extend(std::iter::repeat_n(now + ttl, count));
    }

    /// How many instances the pool needs started, decided again from its state now. A sizing decides
    /// under the queue's lock and places under the node's placement lock; another sizing (the tick, an
    /// arrival, an instance reporting ready) may have placed instances in between, and both must not start
    /// one for the same work.
    pub fn still_to_start(&self, shared: &Shared) -> usize {
        let st = lock(&self.state);
        if self.is_retired() && st.pending.is_empty() {
            return 0;
        }
        let snap = self.snapshot(&st, shared, !st.pending.is_empty() || !st.forecast.is_empty());
        instances_to_start(&snap)
    }

    pub fn snapshot_now(&self, shared: &Shared) -> PoolSnapshot {
        let st = lock(&self.state);
        self.snapshot(&st, shared, true)
    }

    /// What the pool rules see. Costs the same however large the pool is, but for `longest_running`, which
    /// walks the function's busy instances and is read only when asked for.
    fn snapshot(&self, st: &State, shared: &Shared, longest_running: bool) -> PoolSnapshot {
        let now = self.clock.now();
        let forecast = if st.forecast.is_empty() { 0 } else { st.forecast.iter().filter(|t| **t > now).count() };
        PoolSnapshot {
            queued: st.pending.len(),
            forecast,
            idle: st.waiters.len(),
            starting: st.starting(),
            busy: st.counts.busy,
            held: st.counts.held,
            concurrency_limit: self.concurrency_limit(shared),
            min_warm: if self.is_retired() { 0 } else { self.target.config.min_warm as usize },
            max_starting: shared.settings.max_starting_per_function,
            first_wave: shared.settings.first_wave,
            longest_running: if longest_running { st.running_since().map(|t| now - t) } else { None },
            typical_duration: st.stats.run_s().map(Duration::from_secs_f64),
            typical_init: st.stats.init_s.map(Duration::from_secs_f64),
            backing_off: st.backoff_until.is_some_and(|t| now < t),
            account_room: None,
            sustained_load: st.load.average,
            cores: shared.settings.cores,
        }
    }

    pub fn labels(&self) -> &crate::metrics::FunctionLabels {
        self.metrics.labels()
    }

    pub fn memory_mb(&self) -> u64 {
        u64::from(self.target.config.memory_mb)
    }

    /// Invocations waiting for an instance.
    pub fn queued(&self) -> usize {
        lock(&self.state).pending.len()
    }

    /// The oldest queued invocation for another node's instance, or a receiver that gets the next one.
    pub fn take_remote(&self) -> Result<Invocation, oneshot::Receiver<Invocation>> {
        let mut st = lock(&self.state);
        let movable = st.pending.iter().position(Invocation::movable);
        if let Some(inv) = movable.and_then(|at| st.pending.remove(at)) {
            st.observe_load(self.clock.now());
            return Ok(inv);
        }
        let (tx, rx) = oneshot::channel();
        st.takers.push_back(tx);
        Err(rx)
    }

    /// Drops the takers that stopped waiting.
    pub fn forget_closed_takers(&self) {
        lock(&self.state).takers.retain(|t| !t.is_closed());
    }

    /// Live instances (not evicted).
    pub fn live(&self) -> usize {
        lock(&self.state).live()
    }

    /// What a new instance is charged: the function's largest measured peak plus headroom, or its configured
    /// size before anything was measured.
    pub fn new_instance_charge(&self) -> u64 {
        charge_mb(self.memory_mb(), lock(&self.state).peak_mb)
    }

    /// Adds this queue's idle instances to `out`, as candidates to give way.
    pub fn idle_candidates(&self, now: Instant, out: &mut Vec<IdleInstance>) {
        let st = lock(&self.state);
        let restart_ms = st.stats.init_s.map_or(DEFAULT_RESTART_MS, |s| s * 1000.0);
        for w in &st.waiters {
            let Some(e) = st.instances.get(&w.instance) else { continue };
            out.push(IdleInstance {
                id: w.instance,
                charge_mb: e.charge_mb,
                configured_mb: self.memory_mb(),
                idle_for: now.saturating_duration_since(w.since),
                calls_per_s: st.calls_per_s,
                restart_ms,
            });
        }
    }

    /// Evicts one idle instance (its memory is needed); false if it is no longer idle.
    pub fn evict_idle(&self, shared: &Shared, id: u64) -> bool {
        let controls = {
            let mut st = lock(&self.state);
            if !st.waiters.iter().any(|w| w.instance == id) {
                return false;
            }
            st.evict_waiting(&[id], self.memory_mb(), &shared.memory)
        };
        controls.iter().for_each(|c| c.kill());
        true
    }

    /// Records a measured peak of instance `id`: its charge follows, and new instances of the function are
    /// charged by the largest peak measured.
    pub fn measured(&self, shared: &Shared, id: u64, peak_mb: u64) {
        let mut st = lock(&self.state);
        st.peak_mb = Some(st.peak_mb.unwrap_or(0).max(peak_mb));
        let configured = self.memory_mb();
        if let Some(e) = st.instances.get_mut(&id) {
            if e.charge_mb > 0 {
                let charge = charge_mb(configured, Some(peak_mb)).max(1);
                shared.memory.adjust(e.charge_mb, charge);
                e.charge_mb = charge;
            }
        }
    }

    /// One controller tick: closes the load meter's window, updates the arrival rate, and works out when idle
    /// instances freeze (from the gaps recorded since; `base` is the server's delay, `None`: never).
    pub fn tick(&self, now: Instant, freeze_base: Option<Duration>) {
        let mut st = lock(&self.state);
        st.load.roll(now);
        let dt = st.last_tick.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        st.calls_per_s = stoke_core::memory::update_rate(st.calls_per_s, st.arrivals, dt);
        let arrived = std::mem::take(&mut st.arrivals) > 0;
        st.last_tick = Some(now);
        if let (Some(base), true) = (freeze_base, arrived) {
            let gaps: Vec<Duration> = st.gaps.iter().copied().collect();
            drop(st);
            let after = stoke_core::keepalive::freeze_after(&gaps, base);
            self.freeze_after_ms.store(stoke_core::num::millis_u64(after), Ordering::Relaxed);
        }
    }

    pub fn depth(&self) -> usize {
        lock(&self.state).pending.len()
    }

    pub fn in_flight(&self) -> usize {
        let st = lock(&self.state);
        st.pending.len() + st.counts.busy + st.counts.held
    }

    pub fn instance_infos(&self) -> Vec<InstanceInfo> {
        let st = lock(&self.state);
        st.instances
            .iter()
            .map(|(id, e)| InstanceInfo {
                id: *id,
                function: self.target.function.to_string(),
                version: self.target.version.clone(),
                state: e.state,
                pid: e.control.as_ref().map(|c| c.pid()),
                invocations: e.invocations,
                init_duration_ms: e.init_duration.map(|d| d.as_secs_f64() * 1000.0),
                timeline: e.timeline.clone(),
            })
            .collect()
    }

    /// Records why an instance could not get its GPUs (`None`: one did).
    pub fn set_gpu_refusal(&self, why: Option<String>) {
        *lock(&self.gpu_refusal) = why;
    }

    /// Records a new instance in state `Starting`, charged `charge_mb` on the node's ledger.
    pub fn add_instance(&self, id: u64, charge_mb: u64) {
        lock(&self.state).add(id, charge_mb);
    }

    /// The workflow step a just-added instance is started for: the queued invocation that no other
    /// starting instance is ahead of, when it is a step of an execution. A hint for the instance's init (it
    /// may `prepare` that execution's later steps); any instance may still take the invocation.
    pub fn origin_of_new(&self) -> Option<Origin> {
        let st = lock(&self.state);
        let inv = st.pending.get(st.starting().checked_sub(1)?)?;
        let execution = inv.request.execution.clone()?;
        let reservation = inv.reservation.as_ref();
        Some(Origin {
            execution,
            event: reservation.map_or_else(|| inv.request.payload.clone(), |r| r.params.clone()),
            prepared: reservation.is_some(),
            scratch: inv.request.scratch,
        })
    }

    pub fn set_control(&self, id: u64, control: Arc<dyn InstanceControl>) {
        let mut st = lock(&self.state);
        if let Some(e) = st.instances.get_mut(&id) {
            e.control = Some(control);
            st.set(id, InstanceState::Initializing, false);
        }
    }

    /// Called by an instance's `/next`: hands it queued work at once, or parks it as idle. The first call
    /// ends initialisation. Returns the receiver to await when nothing is queued.
    pub fn next_for(&self, id: u64, first: Option<Duration>) -> Result<Invocation, oneshot::Receiver<Invocation>> {
        let mut st = lock(&self.state);
        if let Some(init) = first {
            st.stats.init_s = ewma(st.stats.init_s, init.as_secs_f64());
            st.init_failures = 0;
            st.backoff_until = None;
            st.last_init_error = None;
            if let Some(e) = st.instances.get_mut(&id) {
                e.init_duration = Some(init);
            }
        }
        let now = self.clock.now();
        if let Some(inv) = st.pending.pop_front() {
            st.mark_busy(id, inv.reservation.is_some());
            st.observe_load(now);
            return Ok(inv);
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back(Waiter { instance: id, since: now, tx });
        st.set(id, InstanceState::Idle, false);
        st.observe_load(now);
        Err(rx)
    }

    /// Records a finished invocation's run time (for planning). True when it is the first one measured
    /// and work is queued: the controller may now see that the first wave of instances is too small.
    pub fn record_duration(&self, d: Duration) -> bool {
        let mut st = lock(&self.state);
        let first = st.stats.recent_runs_s.is_empty();
        st.stats.record_run(d.as_secs_f64());
        first && !st.pending.is_empty()
    }

    /// Removes a gone instance, taking what it still held off the node's ledger. If it never became ready,
    /// this is an initialisation failure: back off, and fail queued invocations no healthy instance will take.
    pub fn instance_gone(&self, shared: &Shared, id: u64, init_error: Option<Outcome>) -> Vec<Invocation> {
        let mut st = lock(&self.state);
        let charge = st.remove(id);
        shared.memory.release(charge, self.memory_mb());
        let now = self.clock.now();
        st.observe_load(now);
        let Some(error) = init_error else { return vec![] };
        st.init_failures += 1;
        st.backoff_until = Some(now + init_backoff(st.init_failures));
        st.last_init_error = Some(error);
        if st.healthy() == 0 && st.starting() == 0 {
            let failed: Vec<_> = st.pending.drain(..).collect();
            st.observe_load(now);
            failed
        } else {
            vec![]
        }
    }

    /// Takes invocation `id` back out of the queue, when no instance has taken it yet.
    fn withdraw(&self, id: &str) -> Option<Invocation> {
        let mut st = lock(&self.state);
        let at = st.pending.iter().position(|i| &*i.id == id)?;
        let inv = st.pending.remove(at);
        st.observe_load(self.clock.now());
        inv
    }
}

/// Fails an invocation with an outcome the platform wrote.
pub(crate) fn fail(queue: &FunctionQueue, inv: Invocation, outcome: Outcome) {
    let report = crate::Report {
        duration_ms: 0.0,
        billed_ms: 0,
        memory_mb: queue.target.config.memory_mb,
        max_memory_used_mb: 0,
        init_duration_ms: None,
        instance: 0,
        queued_ms: queue.clock.now().saturating_duration_since(inv.arrived).as_secs_f64() * 1000.0,
        sandbox_ms: None,
        instance_init_ms: None,
        held_ms: None,
        max_gpu_memory_used_mb: None,
    };
    if let (Some(r), Outcome::FunctionError { body, .. }) = (&inv.reservation, &outcome) {
        r.release(&format!("the prepared instance could not start: {}", String::from_utf8_lossy(body)));
    }
    let _ =
        inv.responder.send(InvokeResult { request_id: inv.id.to_string(), outcome, report, log: vec![], node: None });
}

/// Adds an invocation: straight to an idle instance if one is waiting (the most recently idle: its caches
/// are warm, it is not frozen, and the others can reach their keep-alive), else to the queue (and the
/// controller starts instances for it). Refuses at the concurrency limit, and during an init back-off when no
/// instance is healthy. When the function has no instance and the node's memory has no room for one, hands
/// the invocation back (`Ok(Some)`): the caller may try again shortly ([`no_room`] refuses it for good).
/// `again`: the same invocation, handed back before (its arrival is counted once).
pub(crate) fn submit(
    shared: &Arc<Shared>,
    queue: &Arc<FunctionQueue>,
    mut inv: Invocation,
    again: bool,
) -> Result<Option<Invocation>, InvokeError> {
    let mut account_room = None;
    loop {
        let mut st = lock(&queue.state);
        if account_room.is_none() && !again {
            // The invocation an announcement foresaw has come (once, not again on the second pass).
            st.forecast.pop_front();
            st.arrivals += 1;
        }
        let mut snap = queue.snapshot(&st, shared, false);
        snap.account_room = account_room;
        if snap.backing_off && st.healthy() == 0 {
            if let Some(error) = st.last_init_error.clone() {
                drop(st);
                fail(queue, inv, error);
                return Ok(None);
            }
        }
        if account_check_needed(&snap) {
            // The account's instances in use on the node: one counter, read without this queue's lock, then
            // judged again on a fresh snapshot.
            drop(st);
            account_room = Some(crate::account_room(shared, queue));
            continue;
        }
        if let Some(limit) = should_throttle(&snap) {
            let reason = match limit {
                Throttle::Function => format!(
                    "function {} is at its concurrency limit of {}",
                    queue.target.function, snap.concurrency_limit
                ),
                Throttle::Account => format!(
                    "account {} is at its allowance of {} instances in use on this node",
                    queue.target.account, shared.settings.account_concurrency
                ),
            };
            return Err(throttled(shared, queue, reason));
        }
        while let Some(w) = st.waiters.pop_back() {
            let held = inv.reservation.is_some();
            match w.tx.send(inv) {
                Ok(()) => {
                    let now = queue.clock.now();
                    st.mark_busy(w.instance, held);
                    st.observe_load(now);
                    if st.gaps.len() == stoke_core::keepalive::FREEZE_GAPS {
                        st.gaps.pop_front();
                    }
                    st.gaps.push_back(now.saturating_duration_since(w.since));
                    return Ok(None);
                }
                // That instance stopped waiting (it went away); try the next one.
                Err(back) => inv = back,
            }
        }
        // No instance here waits: another node's may (it pulls from this queue, its owner).
        if inv.movable() {
            while let Some(taker) = st.takers.pop_front() {
                match taker.send(inv) {
                    Ok(()) => return Ok(None),
                    Err(back) => inv = back,
                }
            }
        }
        let id = inv.id.clone();
        st.pending.push_back(inv);
        st.observe_load(queue.clock.now());
        drop(st);
        let placed = reconcile(shared, queue);
        if placed.short_of_memory && !placed.elsewhere && queue.live() == 0 {
            // Nothing will take it: the function has no instance and the node's memory has no room for one
            // now. Handed back rather than left waiting.
            return Ok(queue.withdraw(&id));
        }
        return Ok(None);
    }
}

/// The refusal of an invocation no instance could be started for, the node's memory being taken by
/// instances in use.
pub(crate) fn no_room(shared: &Shared, queue: &FunctionQueue) -> InvokeError {
    if let Some(why) = lock(&queue.gpu_refusal).clone() {
        return throttled(shared, queue, format!("no instance of function {} can start: {why}", queue.target.function));
    }
    let ledger = shared.memory.ledger();
    let reason = format!(
        "this node's memory is taken by instances in use ({} MB of its {} MB budget, {} MB configured of the {} MB \
         its overcommit allows); no instance of function {} can start",
        ledger.charged_mb,
        shared.settings.memory_budget_mb,
        ledger.configured_mb,
        shared.memory_policy().configured_limit_mb(),
        queue.target.function
    );
    throttled(shared, queue, reason)
}

/// Counts a refused invocation and says why, retryable after a second.
fn throttled(shared: &Shared, queue: &FunctionQueue, reason: String) -> InvokeError {
    shared.metrics.throttles.get_or_create(queue.labels()).inc();
    shared.metrics.recent.throttled();
    shared.metrics.invocations.get_or_create(&queue.labels().with_outcome("throttled")).inc();
    InvokeError::Throttled { reason, retry_after_s: 1 }
}

/// What one placement did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Placed {
    /// Fewer instances started than wanted because the node's memory had no room for them.
    pub short_of_memory: bool,
    /// Instances the node had no room for are being placed on other nodes (cluster mode).
    pub elsewhere: bool,
}

/// One controller step for one queue: start what the pool rules ask for, evict idle instances past their
/// keep-alive (all of them once the queue is retired). Returns early, having read a few counters, when there
/// is nothing to do — the tick calls it for every queue on the node.
pub(crate) fn reconcile(shared: &Arc<Shared>, queue: &Arc<FunctionQueue>) -> Placed {
    let retired = queue.is_retired();
    let (to_start, to_evict) = {
        let mut st = lock(&queue.state);
        let keep_alive =
            if retired { Duration::ZERO } else { Duration::from_secs(u64::from(queue.target.config.keep_alive_s)) };
        let now = queue.clock.now();
        let oldest_idle = st.waiters.front().map(|w| now.saturating_duration_since(w.since));
        let total = st.live();
        let min_warm = if retired { 0 } else { queue.target.config.min_warm as usize };
        let quiet = st.pending.is_empty()
            && st.forecast.is_empty()
            && total >= min_warm
            && oldest_idle.is_none_or(|idle| idle < keep_alive);
        if quiet {
            return Placed::default();
        }
        let snap = queue.snapshot(&st, shared, !st.pending.is_empty() || !st.forecast.is_empty());
        let start = if retired && st.pending.is_empty() { 0 } else { instances_to_start(&snap) };
        let evict = if oldest_idle.is_some_and(|idle| idle >= keep_alive) {
            let idle: Vec<_> = st.waiters.iter().map(|w| (w.instance, now - w.since)).collect();
            idle_to_evict(&idle, keep_alive, snap.min_warm, snap.total())
        } else {
            Vec::new()
        };
        if start > 0 {
            tracing::debug!(
                function = %queue.target.function, start, queued = snap.queued, forecast = snap.forecast,
                idle = snap.idle, starting = snap.starting, busy = snap.busy, held = snap.held,
                run = ?snap.typical_duration, init = ?snap.typical_init, longest_running = ?snap.longest_running,
                load = ?snap.sustained_load, "starting instances"
            );
        }
        let why = if retired { Eviction::Drained } else { Eviction::KeepAlive };
        shared.metrics.evicted(why, evict.len());
        (start, st.evict_waiting(&evict, queue.memory_mb(), &shared.memory))
    };
    for control in to_evict {
        control.kill();
    }
    crate::place(shared, queue, to_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_meter_averages_invocations_in_flight_over_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut meter = LoadMeter::new(t0);
        meter.observe(t0, 4);
        meter.observe(ms(100), 0);
        meter.roll(ms(200));
        assert_eq!(meter.average, Some(2.0), "4 for half the window, none for the other half");
        // The next window: 6 throughout. The running average halves the old one into the new.
        meter.observe(ms(200), 6);
        meter.roll(ms(400));
        assert_eq!(meter.average, Some(4.0));
        // An empty window pulls it down.
        meter.observe(ms(400), 0);
        meter.roll(ms(600));
        assert_eq!(meter.average, Some(2.0));
    }

    #[test]
    fn counts_and_the_accounts_instances_in_use_follow_every_transition() {
        let in_use = Arc::new(AtomicUsize::new(0));
        let mut st = State::new(in_use.clone(), Stats::default(), Arc::new(crate::SystemClock));
        let using = || in_use.load(Ordering::Relaxed);
        st.add(1, 128);
        st.add(2, 128);
        assert_eq!((st.counts.starting, using()), (2, 2));
        st.set(1, InstanceState::Initializing, false);
        st.set(1, InstanceState::Idle, false);
        assert_eq!((st.starting(), st.counts.idle, using()), (1, 1, 1), "idle instances are not in use");
        st.mark_busy(1, false);
        st.set(2, InstanceState::Initializing, false);
        st.mark_busy(2, true);
        assert_eq!((st.counts.busy, st.counts.held, st.healthy(), using()), (1, 1, 2, 2));
        st.set(2, InstanceState::Idle, false);
        assert_eq!((st.counts.held, st.counts.idle, using()), (0, 1, 1));
        st.set(2, InstanceState::Evicted, false);
        assert_eq!((st.counts.idle, st.counts.evicted, using()), (0, 1, 1));
        assert_eq!(st.remove(2), 128, "a gone instance hands back its charge");
        assert_eq!(st.remove(1), 128);
        assert_eq!(st.remove(1), 0, "once");
        assert_eq!((st.counts, using()), (Counts::default(), 0));
    }
}
