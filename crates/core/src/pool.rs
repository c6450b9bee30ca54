//! Pool decisions for one function version (seed 004's controller), as pure functions of a snapshot.
//!
//! Creation is decoupled from dispatch: the controller only decides *how many* instances to start and
//! which idle ones to evict; invocations are handed to whichever instance pulls next.

use std::time::Duration;

use crate::num::saturate_usize;

/// What the controller sees of one function's pool at one moment (a cluster node asks the queue's owner
/// for it: it travels as JSON).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct PoolSnapshot {
    /// Invocations waiting for an instance.
    pub queued: usize,
    /// Invocations announced to arrive soon (the workflow pre-warmer's forecast): instances are started
    /// for them as for queued ones, so they find a warm instance when they come.
    pub forecast: usize,
    /// Instances waiting for work.
    pub idle: usize,
    /// Instances started but not yet ready (initialising).
    pub starting: usize,
    /// Instances running an invocation that will free them for queued work.
    pub busy: usize,
    /// Instances reserved by `prepare` for one execution's step: running, but never free for queued work
    /// until that step has run.
    pub held: usize,
    /// Most instances this function may have (its limit, or the account's).
    pub concurrency_limit: usize,
    /// Instances to keep even without traffic.
    pub min_warm: usize,
    /// Most instances of this function that may initialise at once (no "specialisation storm").
    pub max_starting: usize,
    /// Most instances a function starts for queued work before one of them has initialised and run
    /// (TCP's slow start): until then nothing says whether a burst is 100 long invocations or 100 that
    /// one instance clears in a few milliseconds. Announced invocations ([`forecast`](Self::forecast)) are
    /// not held to it. 0: no first wave (one instance per queued invocation).
    pub first_wave: usize,
    /// How long the longest-running current invocation (of a busy instance) has been running.
    pub longest_running: Option<Duration>,
    /// The run time of one invocation the pool plans with, once measured: the fastest recent run. A busy
    /// node lengthens runs, never shortens them, and instances started because of that would only add to
    /// the load (as BBR takes the smallest recent round trip for the path's delay).
    pub typical_duration: Option<Duration>,
    /// Typical initialisation time of an instance, once measured.
    pub typical_init: Option<Duration>,
    /// A recent initialisation failed: do not start instances until the back-off ends.
    pub backing_off: bool,
    /// Instances the function's account could still put to use on the node: what is left of its allowance of
    /// instances in use (starting, initialising or busy; idle ones do not count). `None` until looked at —
    /// it is read only when [`account_check_needed`] says so.
    pub account_room: Option<usize>,
    /// The invocations in flight (queued, or running on an instance free for queued work when done), averaged
    /// over the last half second or so; `None` before the first controller tick.
    pub sustained_load: Option<f64>,
    /// The node's cores: a lasting load of short invocations keeps at most this many instances busy.
    pub cores: usize,
}

impl PoolSnapshot {
    pub fn total(&self) -> usize {
        self.idle + self.starting + self.busy + self.held
    }
}

/// Seed 000's `is_available`: an invocation arriving now would find an idle instance — idle instances
/// outnumber the invocations queued for them.
pub fn is_available(s: &PoolSnapshot) -> bool {
    s.idle > s.queued
}

/// How far the [sustained load](PoolSnapshot::sustained_load) must pass a whole number of instances before
/// one more is started for it. A caller that sends its next invocation as soon as the last one is answered
/// finds the instance still on its way back to `next`: for a moment two invocations are in flight, and a
/// load of one instance averages slightly above 1. Half an invocation waiting on average is a queue.
pub const LOAD_SLACK: f64 = 0.5;

/// How many instances to start now.
///
/// Queued work that instances already starting will take is not counted again. Once an instance has
/// initialised, an instance is started for queued work only if waiting for the running ones to free up
/// would take longer than a cold start: a burst of short invocations drains through a few instances instead
/// of creating one per invocation. Before that, only a [first wave](PoolSnapshot::first_wave) starts; it
/// grows as soon as the first run ends, or once an invocation has run for two cold starts' time: the run
/// time is then at least that long, whatever was measured before.
///
/// A load that lasts is another matter: a queue that never empties costs every invocation a wait for as
/// long as the load lasts, while a cold start is paid once. Once runs are measured, while work is queued,
/// the pool grows toward the [load it sustains](PoolSnapshot::sustained_load), up to one instance per
/// [core](PoolSnapshot::cores): short invocations are CPU work, so more instances than cores cannot run any
/// more of them at once — they would only contend for the cores with the node's other functions, whose
/// invocations would then wait behind this one's (a flood kept in its own queue leaves them the slack). Long
/// invocations grow the pool past that through the rule above, since waiting for them takes longer than a
/// cold start.
pub fn instances_to_start(s: &PoolSnapshot) -> usize {
    if s.backing_off {
        return 0;
    }
    let wanted = s.queued + s.forecast;
    let uncovered = wanted.saturating_sub(s.starting + s.idle);
    let long = match (s.longest_running, s.typical_init) {
        (Some(l), Some(init)) if s.busy > 0 && l > 2 * init => Some(l),
        _ => None,
    };
    let run = match (s.typical_duration, long) {
        (Some(run), Some(l)) => Some(run.max(l)),
        (run, l) => run.or(l),
    };
    let demand = match (run, s.typical_init) {
        _ if uncovered == 0 => 0,
        (Some(run), Some(init)) => {
            let running = s.busy + s.starting;
            // Work queued per running instance, in time: if it drains before a new instance would be ready,
            // starting one wastes memory. Otherwise start enough to bring the wait down to one cold start.
            let wait = run.as_secs_f64() * wanted as f64 / running.max(1) as f64;
            if running > 0 && wait <= init.as_secs_f64() {
                0
            } else {
                let per_instance = (init.as_secs_f64() / run.as_secs_f64().max(1e-6)).max(1.0);
                let needed = saturate_usize((wanted as f64 / per_instance).ceil());
                // A busy instance takes queued work within a cold start only when a run is shorter than
                // one; a longer run leaves the queue to the instances already starting.
                let covering = if run < init { running } else { s.starting };
                needed.saturating_sub(covering).min(uncovered).max(1)
            }
        }
        _ if s.first_wave == 0 => uncovered,
        _ => {
            // Held instances are for their steps, not for this queue.
            let serving = s.total() - s.held;
            let for_queued = s.first_wave.saturating_sub(serving).max(usize::from(serving == 0));
            uncovered.min(s.forecast + for_queued)
        }
    };
    let sustained = match (s.sustained_load, s.typical_duration) {
        (Some(load), Some(_)) if s.queued > 0 => {
            let serving = s.total() - s.held;
            saturate_usize((load - LOAD_SLACK).ceil()).min(s.cores.max(1)).saturating_sub(serving)
        }
        _ => 0,
    };
    let warm_gap = s.min_warm.saturating_sub(s.total());
    let want = demand.max(sustained).max(warm_gap);
    let room = s.concurrency_limit.saturating_sub(s.total());
    let burst_room = s.max_starting.saturating_sub(s.starting);
    want.min(room).min(burst_room)
}

/// Idle instances to evict: those idle longer than the keep-alive, oldest first, never going below
/// `min_warm` instances in all. `idle` is (instance id, how long it has been idle).
pub fn idle_to_evict(idle: &[(u64, Duration)], keep_alive: Duration, min_warm: usize, total: usize) -> Vec<u64> {
    let mut expired: Vec<_> = idle.iter().filter(|(_, d)| *d >= keep_alive).collect();
    expired.sort_by_key(|e| std::cmp::Reverse(e.1));
    let may_evict = total.saturating_sub(min_warm);
    expired.into_iter().take(may_evict).map(|(id, _)| *id).collect()
}

/// The limit a refused invocation hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The function's own concurrency limit.
    Function,
    /// The account's instance allowance on the node.
    Account,
}

/// Whether a synchronous invocation must be refused (429) rather than queued: nothing is idle, the pool
/// cannot grow — it is at the function's limit, or the account has no room left — and the queue already
/// holds a full round of work for every instance the function has.
pub fn should_throttle(s: &PoolSnapshot) -> Option<Throttle> {
    if s.idle > 0 {
        return None;
    }
    if s.total() >= s.concurrency_limit && s.queued >= s.concurrency_limit {
        return Some(Throttle::Function);
    }
    (s.account_room == Some(0) && s.queued >= s.total()).then_some(Throttle::Account)
}

/// Whether the account's room must be counted before deciding on [`should_throttle`]: only when the
/// invocation would otherwise wait behind a full round of work with the pool below the function's limit.
pub fn account_check_needed(s: &PoolSnapshot) -> bool {
    s.account_room.is_none() && s.idle == 0 && s.total() < s.concurrency_limit && s.queued >= s.total()
}

/// Back-off after consecutive initialisation failures: 1 s, 2 s, 4 s … capped at 30 s.
pub fn init_backoff(consecutive_failures: u32) -> Duration {
    if consecutive_failures == 0 {
        return Duration::ZERO;
    }
    let secs = 1u64 << (consecutive_failures - 1).min(5);
    Duration::from_secs(secs.min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_means_more_idle_instances_than_queued_invocations() {
        let s = |idle, queued| PoolSnapshot { idle, queued, busy: 3, starting: 2, ..PoolSnapshot::default() };
        assert!(!is_available(&s(0, 0)), "no idle instance");
        assert!(is_available(&s(1, 0)));
        assert!(!is_available(&s(2, 2)), "each idle instance has a queued invocation to take");
        assert!(is_available(&s(3, 2)));
    }

    fn snap() -> PoolSnapshot {
        PoolSnapshot { concurrency_limit: 100, max_starting: 16, first_wave: 2, ..Default::default() }
    }

    #[test]
    fn without_a_first_wave_a_cold_function_starts_one_instance_per_queued_invocation_up_to_the_burst_cap() {
        let snap = || PoolSnapshot { first_wave: 0, ..snap() };
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 1, ..snap() }), 1);
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 5, ..snap() }), 5);
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 100, ..snap() }), 16);
        // Those starting already cover part of the queue.
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 5, starting: 3, ..snap() }), 2);
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 100, starting: 16, ..snap() }), 0);
    }

    #[test]
    fn a_burst_onto_a_new_function_starts_a_first_wave_and_grows_it_once_runs_are_measured() {
        // Nothing measured: two instances for a burst of 100, however long the queue.
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 100, ..snap() }), 2);
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 1, ..snap() }), 1);
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 100, starting: 1, ..snap() }), 1);
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 100, starting: 2, ..snap() }), 0);
        // Initialised (20 ms) and running, the run time not measured yet: nothing to add until the first run
        // ends, or has run for two cold starts' time (on a busy node, even a no-op can take a cold start's).
        let running = PoolSnapshot {
            queued: 98,
            busy: 2,
            typical_init: Some(Duration::from_millis(20)),
            longest_running: Some(Duration::ZERO),
            ..snap()
        };
        assert_eq!(instances_to_start(&running), 0);
        assert_eq!(
            instances_to_start(&PoolSnapshot { longest_running: Some(Duration::from_millis(30)), ..running }),
            0
        );
        // Running for 250 ms already: each invocation is worth a cold start of its own (up to the cap).
        let long = PoolSnapshot { longest_running: Some(Duration::from_millis(250)), ..running };
        assert_eq!(instances_to_start(&long), 16);
        // Measured at 0.5 ms a run: one instance clears 40 invocations per cold start, so 3 in all.
        let short = PoolSnapshot { typical_duration: Some(Duration::from_micros(500)), ..running };
        assert_eq!(instances_to_start(&short), 1);
        // A run that is slow now, but shorter than two cold starts, does not undo the measurement...
        assert_eq!(instances_to_start(&PoolSnapshot { longest_running: Some(Duration::from_millis(35)), ..short }), 1);
        // ...one that has run for longer does: the work is long now, whatever it was before.
        assert_eq!(instances_to_start(&PoolSnapshot { longest_running: Some(Duration::from_secs(1)), ..short }), 16);
        // Measured durations and nothing running (its instances evicted): as many as the rule needs.
        let again = PoolSnapshot { busy: 0, queued: 100, ..short };
        assert_eq!(instances_to_start(&again), 3);
        // Instances held for workflow steps do not drain the queue, however short the runs.
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 1, held: 2, ..again }), 1);
        let plain = PoolSnapshot { queued: 1, held: 2, typical_init: Some(Duration::from_millis(20)), ..snap() };
        assert_eq!(instances_to_start(&plain), 1);
        assert_eq!(
            instances_to_start(&PoolSnapshot { concurrency_limit: 2, ..plain }),
            0,
            "held ones count for the limit"
        );
        // The pre-warmer's forecast is not held to the first wave.
        assert_eq!(instances_to_start(&PoolSnapshot { forecast: 5, ..snap() }), 5);
        assert_eq!(instances_to_start(&PoolSnapshot { forecast: 5, queued: 5, ..snap() }), 7);
    }

    #[test]
    fn idle_instances_cover_queued_work() {
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 2, idle: 2, ..snap() }), 0);
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 0, idle: 0, ..snap() }), 0);
    }

    #[test]
    fn never_exceeds_the_concurrency_limit() {
        let s = PoolSnapshot { queued: 50, busy: 8, concurrency_limit: 10, first_wave: 0, ..snap() };
        assert_eq!(instances_to_start(&s), 2);
        let s = PoolSnapshot { queued: 50, busy: 10, concurrency_limit: 10, first_wave: 0, ..snap() };
        assert_eq!(instances_to_start(&s), 0);
    }

    #[test]
    fn short_invocations_drain_through_busy_instances_instead_of_new_ones() {
        // 10 queued × 1 ms over 2 busy instances = 5 ms of waiting; a cold start takes 200 ms.
        let s = PoolSnapshot {
            queued: 10,
            busy: 2,
            typical_duration: Some(Duration::from_millis(1)),
            typical_init: Some(Duration::from_millis(200)),
            ..snap()
        };
        assert_eq!(instances_to_start(&s), 0);
        // 10 queued × 1 s over 2 busy = 5 s of waiting: start instances, each worth 1 queued invocation. The
        // busy ones free up only after a run, longer than a cold start: every queued invocation gets a new one.
        let s = PoolSnapshot { typical_duration: Some(Duration::from_secs(1)), ..s };
        assert_eq!(instances_to_start(&s), 10);
        // Those already starting cover their share.
        assert_eq!(instances_to_start(&PoolSnapshot { starting: 4, ..s }), 6);
        // Runs shorter than a cold start: a busy instance takes several queued invocations in that time.
        let s = PoolSnapshot { typical_duration: Some(Duration::from_millis(50)), ..s };
        assert_eq!(instances_to_start(&s), 1, "10 queued over 2 busy at 50 ms = 250 ms: one more (4 per cold start)");
    }

    #[test]
    fn a_lasting_load_of_short_invocations_grows_the_pool_to_one_instance_per_core() {
        // 30 queued behind one instance of a 0.1 ms function: the queue drains long before a 20 ms cold start
        // would be ready, so a burst like this starts nothing…
        let s = PoolSnapshot {
            queued: 30,
            busy: 1,
            typical_duration: Some(Duration::from_micros(100)),
            typical_init: Some(Duration::from_millis(20)),
            cores: 4,
            ..snap()
        };
        assert_eq!(instances_to_start(&s), 0);
        // …but 2.7 invocations in flight on average over the last ticks is a load that lasts: 3 instances.
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(2.7), ..s }), 2);
        // One caller sending back to back averages a little over 1 (its next call arrives before the instance
        // is back at `next`): that is one instance's load, not a queue.
        let one = PoolSnapshot { queued: 1, ..s };
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(1.02), ..one }), 0);
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(1.49), ..one }), 0);
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(1.6), ..one }), 1);
        // Never more than one per core: the rest wait in the function's own queue.
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(31.2), ..s }), 3);
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(31.2), busy: 4, ..s }), 0);
        // Nothing queued now: the instances there are enough, whatever the average says.
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(3.5), queued: 0, ..s }), 0);
        // Held instances serve their steps, not the load.
        assert_eq!(instances_to_start(&PoolSnapshot { sustained_load: Some(4.0), held: 2, ..s }), 3);
        // Before any run is measured, the first wave rules.
        let cold = PoolSnapshot { queued: 30, busy: 2, sustained_load: Some(31.0), cores: 4, ..snap() };
        assert_eq!(instances_to_start(&cold), 0);
        // Never past the function's limit.
        let capped = PoolSnapshot { sustained_load: Some(31.0), concurrency_limit: 2, ..s };
        assert_eq!(instances_to_start(&capped), 1);
        // Long invocations are another rule's: 1 s each, 30 queued, 5 ms cold starts: one per invocation.
        let long = PoolSnapshot {
            typical_duration: Some(Duration::from_secs(1)),
            typical_init: Some(Duration::from_millis(5)),
            ..s
        };
        assert_eq!(instances_to_start(&long), 16, "up to the burst cap, past the cores");
    }

    #[test]
    fn forecast_invocations_get_instances_like_queued_ones() {
        assert_eq!(instances_to_start(&PoolSnapshot { forecast: 3, ..snap() }), 3);
        // Idle and starting instances cover the forecast first; queued work and forecast add up.
        assert_eq!(instances_to_start(&PoolSnapshot { forecast: 3, idle: 1, starting: 1, ..snap() }), 1);
        assert_eq!(instances_to_start(&PoolSnapshot { forecast: 2, queued: 2, idle: 1, ..snap() }), 3);
        // A forecast never lifts the concurrency limit.
        let capped = PoolSnapshot { forecast: 5, busy: 9, concurrency_limit: 10, ..snap() };
        assert_eq!(instances_to_start(&capped), 1);
        // Forecast short work that busy instances finish before a cold start would: no new instance.
        let short = PoolSnapshot {
            forecast: 2,
            busy: 2,
            typical_duration: Some(Duration::from_millis(1)),
            typical_init: Some(Duration::from_millis(200)),
            ..snap()
        };
        assert_eq!(instances_to_start(&short), 0);
        // A forecast alone is never throttled: only queued invocations are.
        assert_eq!(should_throttle(&PoolSnapshot { forecast: 50, busy: 2, concurrency_limit: 2, ..snap() }), None);
    }

    #[test]
    fn min_warm_is_kept_without_traffic() {
        assert_eq!(instances_to_start(&PoolSnapshot { min_warm: 3, ..snap() }), 3);
        assert_eq!(instances_to_start(&PoolSnapshot { min_warm: 3, idle: 1, busy: 1, ..snap() }), 1);
        assert_eq!(instances_to_start(&PoolSnapshot { min_warm: 3, idle: 3, ..snap() }), 0);
    }

    #[test]
    fn backing_off_starts_nothing() {
        assert_eq!(instances_to_start(&PoolSnapshot { queued: 5, min_warm: 2, backing_off: true, ..snap() }), 0);
        assert_eq!(init_backoff(0), Duration::ZERO);
        assert_eq!(init_backoff(1), Duration::from_secs(1));
        assert_eq!(init_backoff(3), Duration::from_secs(4));
        assert_eq!(init_backoff(20), Duration::from_secs(30));
    }

    #[test]
    fn eviction_takes_oldest_expired_and_keeps_min_warm() {
        let ka = Duration::from_secs(10);
        let idle = [(1, Duration::from_secs(11)), (2, Duration::from_secs(30)), (3, Duration::from_secs(2))];
        assert_eq!(idle_to_evict(&idle, ka, 0, 3), vec![2, 1]);
        assert_eq!(idle_to_evict(&idle, ka, 2, 3), vec![2]);
        assert_eq!(idle_to_evict(&idle, ka, 3, 3), Vec::<u64>::new());
    }

    #[test]
    fn throttle_only_when_full_and_backlogged() {
        let full = PoolSnapshot { busy: 2, concurrency_limit: 2, queued: 2, ..snap() };
        assert_eq!(should_throttle(&full), Some(Throttle::Function));
        assert_eq!(should_throttle(&PoolSnapshot { queued: 1, ..full }), None);
        assert_eq!(should_throttle(&PoolSnapshot { busy: 1, ..full }), None);
        assert_eq!(should_throttle(&PoolSnapshot { idle: 1, busy: 1, ..full }), None);
        // The function's own limit is judged without the node-wide count.
        assert!(!account_check_needed(&full));
    }

    #[test]
    fn throttle_when_the_account_has_no_room_and_the_function_has_a_round_queued() {
        let below_limit = PoolSnapshot { busy: 2, queued: 2, concurrency_limit: 10, ..snap() };
        assert!(account_check_needed(&below_limit));
        assert_eq!(should_throttle(&below_limit), None, "not judged before the account is counted");
        let no_room = PoolSnapshot { account_room: Some(0), ..below_limit };
        assert!(!account_check_needed(&no_room));
        assert_eq!(should_throttle(&no_room), Some(Throttle::Account));
        // Room left: queue.
        assert_eq!(should_throttle(&PoolSnapshot { account_room: Some(1), ..below_limit }), None);
        // Less than a round queued: wait for one of the function's own instances.
        assert_eq!(should_throttle(&PoolSnapshot { queued: 1, ..no_room }), None);
        assert!(!account_check_needed(&PoolSnapshot { queued: 1, ..below_limit }));
        // A function with no instance at all in a full account cannot run the invocation any time soon.
        let nothing = PoolSnapshot { account_room: Some(0), concurrency_limit: 10, ..snap() };
        assert_eq!(should_throttle(&nothing), Some(Throttle::Account));
        // An idle instance always takes the invocation.
        assert_eq!(should_throttle(&PoolSnapshot { idle: 1, ..no_room }), None);
        assert!(!account_check_needed(&PoolSnapshot { idle: 1, ..below_limit }));
    }
}

/// Where an instance is in its life. Every change is timestamped and kept for the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Sandbox being created, code being unpacked.
    Starting,
    /// Process running its init code; has not asked for work yet.
    Initializing,
    /// Waiting for work.
    Idle,
    /// Running an invocation.
    Busy,
    /// Gone: evicted, crashed, timed out or failed to initialise.
    Evicted,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Initializing => "initializing",
            Self::Idle => "idle",
            Self::Busy => "busy",
            Self::Evicted => "evicted",
        }
    }
}
