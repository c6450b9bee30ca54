//! One function version's queue: invocations waiting for instances, instances waiting for invocations,
//! and the controller step that starts and evicts instances from the pool rules.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stoke_core::pool::{
    account_check_needed, idle_to_evict, init_backoff, instances_to_start, should_throttle, IdleInstance,
    InstanceState, PoolSnapshot, Throttle,
};
use stoke_sandbox::InstanceControl;
use tokio::sync::oneshot;

use crate::logs::LogBuffer;
use crate::metrics::Eviction;
use crate::{lock, now_ms, InstanceInfo, InvokeError, InvokeRequest, InvokeResult, InvokeTarget, Outcome, Shared};

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
    pub fn new(id: String, request: InvokeRequest, timeout_s: u32) -> (Self, oneshot::Receiver<InvokeResult>) {
        let (tx, rx) = oneshot::channel();
        let timeout = Duration::from_secs(u64::from(timeout_s));
        let now = Instant::now();
        let inv = Self {
            id: Arc::from(id),
            request,
            arrived: now,
            deadline: now + timeout,
            deadline_epoch_ms: now_ms() + timeout.as_millis() as i64,
            timeout_s,
            responder: tx,
            reservation: None,
        };
        (inv, rx)
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
}

impl InstanceEntry {
    fn set(&mut self, state: InstanceState) {
        self.state = state;
        self.busy_since = (state == InstanceState::Busy).then(Instant::now);
        self.held = false;
        self.timeline.push((state, now_ms()));
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

#[derive(Default)]
struct State {
    pending: VecDeque<Invocation>,
    waiters: VecDeque<Waiter>,
    instances: HashMap<u64, InstanceEntry>,
    stats: Stats,
    init_failures: u32,
    backoff_until: Option<Instant>,
    /// What the last failed initialisation reported, given to invocations refused during the back-off.
    last_init_error: Option<Outcome>,
    /// Announced invocations not yet arrived, by when each announcement lapses (oldest first).
    forecast: VecDeque<Instant>,
}

impl State {
    fn count(&self, state: InstanceState) -> usize {
        self.instances.values().filter(|i| i.state == state).count()
    }

    fn healthy(&self) -> usize {
        self.count(InstanceState::Idle) + self.count(InstanceState::Busy)
    }

    /// Records that instance `id` was handed an invocation (`held`: a preparation).
    fn mark_busy(&mut self, id: u64, held: bool) {
        if let Some(e) = self.instances.get_mut(&id) {
            e.set(InstanceState::Busy);
            e.held = held;
            e.invocations += 1;
        }
    }

    /// Busy instances, in one pass: how many are free for queued work when done, how many are held for a
    /// workflow step, and when the longest-running invocation of the former began.
    fn busy_and_held(&self) -> (usize, usize, Option<Instant>) {
        let busy = self.instances.values().filter(|i| i.state == InstanceState::Busy);
        busy.fold((0, 0, None), |(b, h, oldest), i| match (i.held, i.busy_since) {
            (true, _) => (b, h + 1, oldest),
            (false, since) => (b + 1, h, oldest.into_iter().chain(since).min()),
        })
    }

    /// Takes the given instances out of the idle set and marks them evicted; returns their controls so the
    /// caller can kill them after releasing the lock.
    fn evict_waiting(&mut self, ids: &[u64]) -> Vec<Arc<dyn InstanceControl>> {
        self.waiters.retain(|w| !ids.contains(&w.instance));
        ids.iter()
            .filter_map(|id| {
                let e = self.instances.get_mut(id)?;
                e.set(InstanceState::Evicted);
                e.control.clone()
            })
            .collect()
    }
}

pub(crate) struct FunctionQueue {
    pub target: Arc<InvokeTarget>,
    state: Mutex<State>,
    /// No new work: the function changed or went away. Instances leave once idle.
    retired: AtomicBool,
    pub code_dir: tokio::sync::OnceCell<std::path::PathBuf>,
    pub logs: LogBuffer,
}

impl FunctionQueue {
    pub fn new(target: Arc<InvokeTarget>, log_lines: usize, learned: crate::Learned) -> Self {
        let stats = Stats {
            recent_runs_s: learned.run.map(|d| d.as_secs_f64()).into_iter().collect(),
            init_s: learned.init.map(|d| d.as_secs_f64()),
        };
        Self {
            target,
            state: Mutex::new(State { stats, ..State::default() }),
            retired: AtomicBool::new(false),
            code_dir: tokio::sync::OnceCell::new(),
            logs: LogBuffer::new(log_lines),
        }
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
        let now = Instant::now();
        st.forecast.retain(|t| *t > now);
        st.forecast.extend(std::iter::repeat_n(now + ttl, count));
    }

    pub fn snapshot_now(&self, shared: &Shared) -> PoolSnapshot {
        let st = lock(&self.state);
        self.snapshot(&st, shared)
    }

    fn snapshot(&self, st: &State, shared: &Shared) -> PoolSnapshot {
        let now = Instant::now();
        let (busy, held, running_since) = st.busy_and_held();
        PoolSnapshot {
            queued: st.pending.len(),
            forecast: st.forecast.iter().filter(|t| **t > now).count(),
            idle: st.waiters.len(),
            starting: st.count(InstanceState::Starting) + st.count(InstanceState::Initializing),
            busy,
            held,
            concurrency_limit: self.concurrency_limit(shared),
            min_warm: if self.is_retired() { 0 } else { self.target.config.min_warm as usize },
            max_starting: shared.settings.max_starting_per_function,
            first_wave: shared.settings.first_wave,
            longest_running: running_since.map(|t| now - t),
            typical_duration: st.stats.run_s().map(Duration::from_secs_f64),
            typical_init: st.stats.init_s.map(Duration::from_secs_f64),
            backing_off: st.backoff_until.is_some_and(|t| Instant::now() < t),
            account_room: None,
        }
    }

    pub fn labels(&self) -> crate::metrics::FunctionLabels {
        crate::metrics::FunctionLabels {
            account: self.target.account.to_string(),
            function: self.target.function.to_string(),
            version: self.target.version.clone(),
        }
    }

    pub fn memory_mb(&self) -> u64 {
        u64::from(self.target.config.memory_mb)
    }

    /// Live instances, and the idle ones as candidates to make room on the node.
    pub fn placement_view(&self, for_account: &stoke_core::AccountId) -> (usize, Vec<IdleInstance>) {
        let st = lock(&self.state);
        let live = st.instances.values().filter(|i| i.state != InstanceState::Evicted).count();
        let now = Instant::now();
        let idle = st
            .waiters
            .iter()
            .map(|w| IdleInstance {
                id: w.instance,
                memory_mb: self.memory_mb(),
                idle_for: now - w.since,
                same_account: &self.target.account == for_account,
            })
            .collect();
        (live, idle)
    }

    /// Evicts one idle instance (to make room for another function); false if it is no longer idle.
    pub fn evict_idle(&self, id: u64) -> bool {
        let controls = {
            let mut st = lock(&self.state);
            if !st.waiters.iter().any(|w| w.instance == id) {
                return false;
            }
            st.evict_waiting(&[id])
        };
        controls.iter().for_each(|c| c.kill());
        true
    }

    pub fn depth(&self) -> usize {
        lock(&self.state).pending.len()
    }

    pub fn in_flight(&self) -> usize {
        let st = lock(&self.state);
        st.pending.len() + st.count(InstanceState::Busy)
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

    /// Records a new instance in state `Starting`.
    pub fn add_instance(&self, id: u64) {
        let mut entry = InstanceEntry {
            state: InstanceState::Starting,
            busy_since: None,
            held: false,
            control: None,
            invocations: 0,
            init_duration: None,
            timeline: vec![],
        };
        entry.set(InstanceState::Starting);
        lock(&self.state).instances.insert(id, entry);
    }

    /// The workflow step a just-added instance is started for: the queued invocation that no other
    /// starting instance is ahead of, when it is a step of an execution. A hint for the instance's init (it
    /// may `prepare` that execution's later steps); any instance may still take the invocation.
    pub fn origin_of_new(&self) -> Option<crate::instance::Origin> {
        let st = lock(&self.state);
        let starting = st.count(InstanceState::Starting) + st.count(InstanceState::Initializing);
        let inv = st.pending.get(starting.checked_sub(1)?)?;
        let execution = inv.request.execution.clone()?;
        let reservation = inv.reservation.as_ref();
        Some(crate::instance::Origin {
            execution,
            event: reservation.map_or_else(|| inv.request.payload.clone(), |r| r.params.clone()),
            prepared: reservation.is_some(),
        })
    }

    pub fn set_control(&self, id: u64, control: Arc<dyn InstanceControl>) {
        if let Some(e) = lock(&self.state).instances.get_mut(&id) {
            e.control = Some(control);
            e.set(InstanceState::Initializing);
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
        if let Some(inv) = st.pending.pop_front() {
            st.mark_busy(id, inv.reservation.is_some());
            return Ok(inv);
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back(Waiter { instance: id, since: Instant::now(), tx });
        if let Some(e) = st.instances.get_mut(&id) {
            e.set(InstanceState::Idle);
        }
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

    /// Removes a gone instance. If it never became ready, this is an initialisation failure: back off,
    /// and fail queued invocations no healthy instance will take.
    pub fn instance_gone(&self, id: u64, init_error: Option<Outcome>) -> Vec<Invocation> {
        let mut st = lock(&self.state);
        st.waiters.retain(|w| w.instance != id);
        st.instances.remove(&id);
        let Some(error) = init_error else { return vec![] };
        st.init_failures += 1;
        st.backoff_until = Some(Instant::now() + init_backoff(st.init_failures));
        st.last_init_error = Some(error);
        let starting = st.count(InstanceState::Starting) + st.count(InstanceState::Initializing);
        if st.healthy() == 0 && starting == 0 {
            st.pending.drain(..).collect()
        } else {
            vec![]
        }
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
        queued_ms: inv.arrived.elapsed().as_secs_f64() * 1000.0,
        sandbox_ms: None,
        instance_init_ms: None,
        held_ms: None,
    };
    if let (Some(r), Outcome::FunctionError { body, .. }) = (&inv.reservation, &outcome) {
        r.release(&format!("the prepared instance could not start: {}", String::from_utf8_lossy(body)));
    }
    let _ = inv.responder.send(InvokeResult { request_id: inv.id.to_string(), outcome, report, log: vec![] });
}

/// Adds an invocation: straight to an idle instance if one is waiting, else to the queue (and the
/// controller starts instances for it). Refuses at the concurrency limit, and during an init back-off
/// when no instance is healthy.
pub(crate) fn submit(shared: &Arc<Shared>, queue: &Arc<FunctionQueue>, mut inv: Invocation) -> Result<(), InvokeError> {
    let mut account_room = None;
    loop {
        let mut st = lock(&queue.state);
        if account_room.is_none() {
            // The invocation an announcement foresaw has come (once, not again on the second pass).
            st.forecast.pop_front();
        }
        let mut snap = queue.snapshot(&st, shared);
        snap.account_room = account_room;
        if snap.backing_off && st.healthy() == 0 {
            if let Some(error) = st.last_init_error.clone() {
                drop(st);
                fail(queue, inv, error);
                return Ok(());
            }
        }
        if account_check_needed(&snap) {
            // A node-wide count: taken without this queue's lock, then judged again on a fresh snapshot.
            drop(st);
            account_room = Some(crate::account_room(shared, queue));
            continue;
        }
        if let Some(limit) = should_throttle(&snap) {
            shared.metrics.throttles.get_or_create(&queue.labels()).inc();
            shared.metrics.invocations.get_or_create(&queue.labels().with_outcome("throttled")).inc();
            let reason = match limit {
                Throttle::Function => format!(
                    "function {} is at its concurrency limit of {}",
                    queue.target.function, snap.concurrency_limit
                ),
                Throttle::Account => format!(
                    "account {} is at its allowance of {} instances on this node, all busy",
                    queue.target.account, shared.settings.account_concurrency
                ),
            };
            return Err(InvokeError::Throttled { reason, retry_after_s: 1 });
        }
        while let Some(w) = st.waiters.pop_front() {
            let held = inv.reservation.is_some();
            match w.tx.send(inv) {
                Ok(()) => {
                    st.mark_busy(w.instance, held);
                    return Ok(());
                }
                // That instance stopped waiting (it went away); try the next one.
                Err(back) => inv = back,
            }
        }
        st.pending.push_back(inv);
        break;
    }
    reconcile(shared, queue);
    Ok(())
}

/// One controller step for one queue: start what the pool rules ask for, evict idle instances past their
/// keep-alive (all of them once the queue is retired).
pub(crate) fn reconcile(shared: &Arc<Shared>, queue: &Arc<FunctionQueue>) {
    let (to_start, to_evict) = {
        let mut st = lock(&queue.state);
        let snap = queue.snapshot(&st, shared);
        let start = if queue.is_retired() && st.pending.is_empty() { 0 } else { instances_to_start(&snap) };
        let keep_alive = if queue.is_retired() {
            Duration::ZERO
        } else {
            Duration::from_secs(u64::from(queue.target.config.keep_alive_s))
        };
        let now = Instant::now();
        let idle: Vec<_> = st.waiters.iter().map(|w| (w.instance, now - w.since)).collect();
        let evict = idle_to_evict(&idle, keep_alive, snap.min_warm, snap.total());
        if start > 0 {
            tracing::debug!(
                function = %queue.target.function, start, queued = snap.queued, forecast = snap.forecast,
                idle = snap.idle, starting = snap.starting, busy = snap.busy, held = snap.held,
                run = ?snap.typical_duration, init = ?snap.typical_init, longest_running = ?snap.longest_running,
                "starting instances"
            );
        }
        let why = if queue.is_retired() { Eviction::Drained } else { Eviction::KeepAlive };
        shared.metrics.evicted(why, evict.len());
        (start, st.evict_waiting(&evict))
    };
    for control in to_evict {
        control.kill();
    }
    crate::place(shared, queue, to_start);
}
