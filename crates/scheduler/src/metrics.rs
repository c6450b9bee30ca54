//! Prometheus metrics of the execution core: invocations by outcome, cold starts, throttles, duration and
//! init-duration histograms (recorded as things happen), queue depth and instances by state (read from the
//! queues when scraped).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use stoke_core::history;

use crate::lock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FunctionLabels {
    pub account: String,
    pub function: String,
    pub version: String,
}

impl FunctionLabels {
    pub fn with_outcome(&self, outcome: &str) -> OutcomeLabels {
        OutcomeLabels {
            account: self.account.clone(),
            function: self.function.clone(),
            version: self.version.clone(),
            outcome: outcome.to_string(),
        }
    }

    pub fn with_state(&self, state: &str) -> StateLabels {
        StateLabels {
            account: self.account.clone(),
            function: self.function.clone(),
            version: self.version.clone(),
            state: state.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub account: String,
    pub function: String,
    pub version: String,
    pub outcome: String,
}

/// Why instances were evicted (see [`Eviction`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub reason: &'static str,
}

/// Why an idle instance was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// Idle past its function's keep-alive.
    KeepAlive,
    /// Its memory was reclaimed: another instance needed room, or the node's real use neared its budget.
    Reclaimed,
    /// Its function changed, was blocked, retired or deleted (its queue is draining).
    Drained,
}

impl Eviction {
    pub const ALL: [Eviction; 3] = [Eviction::KeepAlive, Eviction::Reclaimed, Eviction::Drained];

    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::KeepAlive => "keep_alive",
            Eviction::Reclaimed => "reclaimed",
            Eviction::Drained => "drained",
        }
    }
}

/// How a new Runtime API connection was found to be its instance's own (see
/// `runtime_api::InstanceListener::accept`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CheckLabels {
    pub check: &'static str,
}

/// New Runtime API connections, by how their owner was checked: `socket_cgroup` (one netlink query),
/// `process_walk` (the instance's processes' open files, on a blocking thread) or `refused`. Cloned into
/// every instance's listener.
#[derive(Clone, Default)]
pub(crate) struct Connections(Family<CheckLabels, Counter>);

impl Connections {
    pub fn opened(&self, check: &'static str) {
        self.0.get_or_create(&CheckLabels { check }).inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub account: String,
    pub function: String,
    pub version: String,
    pub state: String,
}

/// One queue's series in the families every answer updates, looked up on its first use and kept: an answer
/// then costs atomic adds, not a label set's four allocations, a hash and a lock per family.
pub(crate) struct QueueMetrics {
    labels: FunctionLabels,
    succeeded: OnceLock<Counter>,
    failed: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
}

impl QueueMetrics {
    pub fn new(labels: FunctionLabels) -> Self {
        QueueMetrics { labels, succeeded: OnceLock::new(), failed: OnceLock::new(), duration: OnceLock::new() }
    }

    pub fn labels(&self) -> &FunctionLabels {
        &self.labels
    }

    /// Counts one answered invocation, by outcome, and its run time.
    pub fn answered(&self, metrics: &Metrics, error: bool, ran: Duration) {
        let (series, outcome) = if error { (&self.failed, "error") } else { (&self.succeeded, "success") };
        series.get_or_init(|| metrics.invocations.get_or_create(&self.labels.with_outcome(outcome)).clone()).inc();
        let duration = self.duration.get_or_init(|| metrics.duration.get_or_create(&self.labels).clone());
        duration.observe(ran.as_secs_f64());
    }
}

fn latency_buckets() -> Histogram {
    // 100 µs … ~105 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 21))
}

pub(crate) struct Metrics {
    pub invocations: Family<OutcomeLabels, Counter>,
    pub cold_starts: Family<FunctionLabels, Counter>,
    pub throttles: Family<FunctionLabels, Counter>,
    pub duration: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    pub init_duration: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    /// Node-wide: invocations that waited for an instance to initialise, whatever the function.
    pub node_cold_starts: Counter,
    /// Node-wide: idle instances stopped, by why.
    pub evictions: Family<ReasonLabels, Counter>,
    /// Times the scheduler looked at every queue on the node for idle instances to give way (memory was short).
    /// The only walk over all functions outside the controller's tick: invocations on a node with room never
    /// cause one.
    pub reclaim_walks: Counter,
    /// Node-wide: new Runtime API connections, by how their owner was checked.
    pub runtime_connections: Connections,
    /// Node-wide: the slot being counted now and the last hour's, for `GET /v1/node/history`.
    pub recent: Recent,
}

/// What the node did in the [slot](stoke_core::history::SLOT) under way, counted with relaxed atomic adds
/// (an invocation's answer pays three), and the slots before it. The controller's tick closes the slot.
pub(crate) struct Recent {
    invocations: AtomicU64,
    errors: AtomicU64,
    throttles: AtomicU64,
    cold_starts: AtomicU64,
    durations: [AtomicU64; history::BUCKETS],
    started: Mutex<Option<std::time::Instant>>,
    history: Mutex<history::History>,
}

impl Recent {
    fn new() -> Self {
        Recent {
            invocations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            cold_starts: AtomicU64::new(0),
            durations: std::array::from_fn(|_| AtomicU64::new(0)),
            started: Mutex::new(None),
            history: Mutex::new(history::History::default()),
        }
    }

    /// One answered invocation.
    pub fn answered(&self, duration_ms: f64, error: bool, cold: bool) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.durations[history::bucket_of(duration_ms)].fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if cold {
            self.cold_starts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn throttled(&self) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the slot under way once it has lasted a slot's span (at `now`, `now_ms` on the wall clock, with
    /// `queued` invocations waiting), and starts the next. What lands between two reads of the counters counts
    /// in the next slot.
    pub fn roll(&self, now: std::time::Instant, now_ms: i64, queued: impl FnOnce() -> u64) {
        {
            let mut started = lock(&self.started);
            let began = *started.get_or_insert(now);
            if now.saturating_duration_since(began) < history::SLOT {
                return;
            }
            *started = Some(now);
        }
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let slot = history::Slot {
            end_ms: now_ms,
            invocations: take(&self.invocations),
            errors: take(&self.errors),
            throttles: take(&self.throttles),
            cold_starts: take(&self.cold_starts),
            queued: queued(),
            durations: std::array::from_fn(|i| take(&self.durations[i])),
        };
        lock(&self.history).push(slot);
    }

    pub fn points(&self) -> Vec<history::HistoryPoint> {
        lock(&self.history).points()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            invocations: Family::default(),
            cold_starts: Family::default(),
            throttles: Family::default(),
            duration: Family::new_with_constructor(latency_buckets),
            init_duration: Family::new_with_constructor(latency_buckets),
            node_cold_starts: Counter::default(),
            evictions: Family::default(),
            reclaim_walks: Counter::default(),
            runtime_connections: Connections::default(),
            recent: Recent::new(),
        }
    }

    /// Counts `n` evictions for `why`.
    pub fn evicted(&self, why: Eviction, n: usize) {
        if n > 0 {
            self.evictions.get_or_create(&ReasonLabels { reason: why.as_str() }).inc_by(n as u64);
        }
    }

    /// Evictions so far for `why`.
    pub fn evictions_of(&self, why: Eviction) -> u64 {
        self.evictions.get_or_create(&ReasonLabels { reason: why.as_str() }).get()
    }

    /// The text exposition, with the gauges read now; every metric labelled `node` when `node` is given.
    pub fn encode(
        &self,
        node: Option<&str>,
        queue_depth: Vec<(FunctionLabels, i64)>,
        instances: Vec<(StateLabels, i64)>,
    ) -> String {
        let labels = node.map(|n| (std::borrow::Cow::Borrowed("node"), std::borrow::Cow::Owned(n.to_string())));
        let mut registry = Registry::with_prefix_and_labels("stoke", labels.into_iter());
        registry.register("invocations", "Invocations by outcome", self.invocations.clone());
        registry.register(
            "cold_starts",
            "Invocations that waited for an instance to initialise",
            self.cold_starts.clone(),
        );
        registry.register("throttles", "Invocations refused at the concurrency limit", self.throttles.clone());
        registry.register("invocation_duration_seconds", "Run time of invocations", self.duration.clone());
        registry.register("init_duration_seconds", "Initialisation time of instances", self.init_duration.clone());
        registry.register(
            "node_cold_starts",
            "Invocations of any function that waited for an instance to initialise",
            self.node_cold_starts.clone(),
        );
        registry.register("evictions", "Idle instances stopped, by reason", self.evictions.clone());
        registry.register(
            "reclaim_walks",
            "Times every queue on the node was searched for idle instances to give way",
            self.reclaim_walks.clone(),
        );
        registry.register(
            "runtime_api_connections",
            "New Runtime API connections, by how the instance's ownership of each was checked",
            self.runtime_connections.0.clone(),
        );
        let depth: Family<FunctionLabels, Gauge> = Family::default();
        for (labels, v) in queue_depth {
            depth.get_or_create(&labels).set(v);
        }
        registry.register("queue_depth", "Invocations waiting for an instance", depth);
        let states: Family<StateLabels, Gauge> = Family::default();
        for (labels, v) in instances {
            states.get_or_create(&labels).inc_by(v);
        }
        registry.register("instances", "Instances by state", states);
        let mut out = String::new();
        let _ = encode(&mut out, &registry);
        out
    }
}
