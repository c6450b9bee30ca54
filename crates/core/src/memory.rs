//! A node's memory (DESIGN.md §3.6): instances are admitted by what they really use, within a stated
//! overcommit bound, and idle instances give way under pressure in an order decided here. Pure rules; the
//! scheduler feeds them measurements.
//!
//! Each instance keeps a hard limit at its configured size (its cgroup), so one that grows past its share is
//! the one stopped. Admitting by configured size instead is what made 1,000 small functions run at 0.04× of
//! one on a node: 1,000 × 128 MB is more than a 24 GB node has, while each such instance really uses a few MB.

use std::time::Duration;

use crate::num::saturate_u64;

/// The node's configured sizes of live instances may add up to at most this many times its memory budget
/// (`--memory-overcommit`). See docs/running-functions.md ("Memory") for why 16.
pub const DEFAULT_OVERCOMMIT: f64 = 16.0;

/// The least headroom an instance is charged beyond its measured peak, in MB.
pub const HEADROOM_MIN_MB: u64 = 8;

/// An instance is charged its peak plus this share of it (at least [`HEADROOM_MIN_MB`]).
pub const HEADROOM_SHARE: f64 = 0.25;

/// Reclaiming starts when the instances' measured working set passes this share of the budget…
pub const PRESSURE_HIGH: f64 = 0.90;
/// …and evicts idle instances until it would be back at this share.
pub const PRESSURE_LOW: f64 = 0.80;

/// What an instance's cold start costs when nothing was measured for its function, in ms.
pub const DEFAULT_RESTART_MS: f64 = 100.0;

/// The time over which a function's arrival rate is averaged, in seconds.
pub const RATE_HORIZON_S: f64 = 60.0;

/// A function's arrival rate (calls per second), averaged over about [`RATE_HORIZON_S`]: `old` updated with
/// `arrivals` counted over the last `dt_s` seconds. A function called once a minute settles near 1/60.
pub fn update_rate(old: f64, arrivals: u64, dt_s: f64) -> f64 {
    if dt_s <= 0.0 {
        return old;
    }
    let weight = 1.0 - (-dt_s / RATE_HORIZON_S).exp();
    old + (arrivals as f64 / dt_s - old) * weight
}

/// How the node admits instances by memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryPolicy {
    /// What live instances may really use together, in MB.
    pub budget_mb: u64,
    /// Their configured sizes may add up to at most `budget_mb × overcommit`. 1 admits by configured size.
    pub overcommit: f64,
}

impl MemoryPolicy {
    /// The most configured memory live instances may hold together, in MB.
    pub fn configured_limit_mb(&self) -> u64 {
        saturate_u64(self.budget_mb as f64 * self.overcommit.max(1.0))
    }
}

/// The headroom charged on top of a measured peak: room to grow between measurements.
pub fn headroom_mb(peak_mb: u64) -> u64 {
    HEADROOM_MIN_MB.max(saturate_u64((peak_mb as f64 * HEADROOM_SHARE).ceil()))
}

/// What the node counts for one instance, in MB: its measured peak (or, before it has one, the peak measured
/// for earlier instances of its function) plus headroom — never more than its configured size, which is all
/// it is counted before anything was measured.
pub fn charge_mb(configured_mb: u64, peak_mb: Option<u64>) -> u64 {
    match peak_mb {
        Some(peak) => peak.saturating_add(headroom_mb(peak)).min(configured_mb),
        None => configured_mb,
    }
}

/// The node's live instances as admission sees them: charged and configured memory added up, in MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ledger {
    pub charged_mb: u64,
    pub configured_mb: u64,
}

/// How many of the wanted instances fit, and what idle instances would have to free for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Instances that fit now.
    pub fits: usize,
    /// Charged MB to reclaim so that every wanted instance fits (0 when they all fit).
    pub reclaim_charged_mb: u64,
    /// Configured MB to reclaim so that every wanted instance fits within the overcommit bound.
    pub reclaim_configured_mb: u64,
}

/// Admission of `want` new instances of one function, each charged `charge_mb` and configured at
/// `configured_mb`, onto a node holding `ledger`: they must fit both in the budget by charge and within
/// the overcommit bound by configured size.
pub fn admit(policy: &MemoryPolicy, ledger: Ledger, want: usize, charge_mb: u64, configured_mb: u64) -> Admission {
    let free_charged = policy.budget_mb.saturating_sub(ledger.charged_mb);
    let free_configured = policy.configured_limit_mb().saturating_sub(ledger.configured_mb);
    let by = |free: u64, each: u64| {
        free.checked_div(each).and_then(|n| usize::try_from(n).ok()).map_or(want, |n| n.min(want))
    };
    let fits = by(free_charged, charge_mb).min(by(free_configured, configured_mb));
    let want = want as u64;
    Admission {
        fits,
        reclaim_charged_mb: (want * charge_mb).saturating_sub(free_charged),
        reclaim_configured_mb: (want * configured_mb).saturating_sub(free_configured),
    }
}

/// How much the instances' working set must shrink, in MB: nothing below [`PRESSURE_HIGH`] of the budget;
/// above it, back down to [`PRESSURE_LOW`].
pub fn pressure_reclaim_mb(working_set_mb: u64, budget_mb: u64) -> u64 {
    let high = saturate_u64(budget_mb as f64 * PRESSURE_HIGH);
    if working_set_mb <= high {
        return 0;
    }
    working_set_mb - saturate_u64(budget_mb as f64 * PRESSURE_LOW)
}

/// The node as a whole, for an administrator (`GET /v1/node`) and the benchmarks: what its live instances
/// hold in memory, and what the node has done since it started.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    /// Memory all live instances together may use, in MB.
    pub memory_budget_mb: u64,
    /// How far their configured sizes may add up beyond the budget (`--memory-overcommit`).
    pub memory_overcommit: f64,
    /// Live instances (starting, initialising, idle or busy), of every account.
    pub instances: usize,
    /// What admission counts for them: each one's measured peak plus headroom (its configured size until it
    /// was measured), added up, in MB.
    pub charged_mb: u64,
    /// Their configured memory sizes added up, in MB.
    pub configured_mb: u64,
    /// What they use together now (their working set), in MB, where the sandbox can measure it.
    pub used_mb: Option<u64>,
    /// Invocations that waited for an instance to initialise, since the node started.
    pub cold_starts: u64,
    /// Idle instances stopped since the node started, by why: `keep_alive` (idle past the keep-alive),
    /// `reclaimed` (their memory was needed), `drained` (their function changed or went away).
    pub evictions: std::collections::BTreeMap<String, u64>,
    /// Times every queue on the node was searched for idle instances to give way (memory was short): the one
    /// walk over all functions an invocation can cause.
    pub reclaim_walks: u64,
}

/// An idle instance anywhere on the node, as a candidate to give way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleInstance {
    pub id: u64,
    /// What the node counts for it.
    pub charge_mb: u64,
    pub configured_mb: u64,
    /// How long it has waited for work.
    pub idle_for: Duration,
    /// Its function's recent arrival rate, in calls per second.
    pub calls_per_s: f64,
    /// What starting it again would cost (its function's typical initialisation), in ms.
    pub restart_ms: f64,
}

impl IdleInstance {
    /// What keeping it is worth: the cold-start time per second its eviction would likely cost, per MB it
    /// holds. It would be used as often as its function is called — but no more often than its own idle
    /// time says (an instance idle for a minute is not the one its function's next call takes).
    pub fn keep_value(&self) -> f64 {
        let own = 1.0 / self.idle_for.as_secs_f64().max(1e-3);
        let reuse_per_s = self.calls_per_s.max(0.0).min(own);
        reuse_per_s * self.restart_ms.max(0.0) / self.charge_mb.max(1) as f64
    }
}

/// Idle instances in the order they give way: least worth keeping first (see [`IdleInstance::keep_value`]),
/// the longest idle first among equals.
pub fn reclaim_order(idle: &[IdleInstance]) -> Vec<IdleInstance> {
    let mut order = idle.to_vec();
    order.sort_by(|a, b| a.keep_value().total_cmp(&b.keep_value()).then(b.idle_for.cmp(&a.idle_for)));
    order
}

/// The idle instances to evict, in [`reclaim_order`], until they free `charged_mb` of charge and
/// `configured_mb` of configured memory. All of them when that is more than they hold together.
pub fn pick_victims(idle: &[IdleInstance], charged_mb: u64, configured_mb: u64) -> Vec<u64> {
    let (mut charged, mut configured) = (0u64, 0u64);
    let mut victims = Vec::new();
    for i in reclaim_order(idle) {
        if charged >= charged_mb && configured >= configured_mb {
            break;
        }
        charged += i.charge_mb;
        configured += i.configured_mb;
        victims.push(i.id);
    }
    victims
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: MemoryPolicy = MemoryPolicy { budget_mb: 24_000, overcommit: DEFAULT_OVERCOMMIT };

    #[test]
    fn an_instance_is_charged_its_peak_and_headroom_never_more_than_its_size() {
        assert_eq!(charge_mb(128, None), 128, "nothing measured: its configured size");
        assert_eq!(charge_mb(128, Some(3)), 11, "3 MB used: 8 MB headroom at least");
        assert_eq!(charge_mb(1024, Some(400)), 500, "a quarter of the peak on top");
        assert_eq!(charge_mb(128, Some(120)), 128, "capped at the hard limit");
        assert_eq!(charge_mb(128, Some(u64::MAX)), 128);
    }

    #[test]
    fn a_thousand_small_functions_fit_where_their_configured_sizes_do_not() {
        // 1,000 instances of 128 MB measured at 3 MB each: 11 GB charged, 128 GB configured.
        let ledger = Ledger { charged_mb: 999 * 11, configured_mb: 999 * 128 };
        assert_eq!(admit(&NODE, ledger, 1, 11, 128).fits, 1);
        // Admitted by configured size (overcommit 1), only 187 would have fitted.
        let strict = MemoryPolicy { overcommit: 1.0, ..NODE };
        assert_eq!(admit(&strict, Ledger::default(), 1000, 128, 128).fits, 187);
        // 2,000 warm ones still fit: 256 GB configured is within 16 × 24 GB.
        let ledger = Ledger { charged_mb: 1999 * 11, configured_mb: 1999 * 128 };
        assert_eq!(admit(&NODE, ledger, 1, 11, 128).fits, 1);
    }

    #[test]
    fn admission_says_what_to_reclaim_for_the_rest() {
        let full = Ledger { charged_mb: 23_990, configured_mb: 100_000 };
        // 10 MB free: none of 3 instances of 11 MB fits; 33 − 10 = 23 MB to reclaim.
        assert_eq!(
            admit(&NODE, full, 3, 11, 128),
            Admission { fits: 0, reclaim_charged_mb: 23, reclaim_configured_mb: 0 }
        );
        // The overcommit bound binds by configured size even with charge to spare.
        let bound = Ledger { charged_mb: 0, configured_mb: NODE.configured_limit_mb() - 200 };
        assert_eq!(
            admit(&NODE, bound, 3, 11, 128),
            Admission { fits: 1, reclaim_charged_mb: 0, reclaim_configured_mb: 184 }
        );
        // Nothing wanted, nothing to do.
        assert_eq!(admit(&NODE, full, 0, 11, 128), Admission::default());
    }

    #[test]
    fn the_arrival_rate_settles_on_the_average_over_a_minute() {
        // Four calls a second, ticked every 250 ms, for five minutes: close to 4.
        let mut rate = 0.0;
        for _ in 0..1200 {
            rate = update_rate(rate, 1, 0.25);
        }
        assert!((rate - 4.0).abs() < 0.05, "{rate}");
        // One call a minute: about 1/60 on average over the minute.
        let mut rate = 0.0;
        let mut sum = 0.0;
        for tick in 0..(240 * 10) {
            rate = update_rate(rate, u64::from(tick % 240 == 0), 0.25);
            if tick >= 240 * 9 {
                sum += rate;
            }
        }
        let mean = sum / 240.0;
        assert!((mean - 1.0 / 60.0).abs() < 0.002, "{mean}");
        // Silence decays it.
        let mut rate = 4.0;
        for _ in 0..(4 * 300) {
            rate = update_rate(rate, 0, 0.25);
        }
        assert!(rate < 0.03, "{rate}");
        assert_eq!(update_rate(2.0, 5, 0.0), 2.0, "no time passed: unchanged");
    }

    #[test]
    fn pressure_reclaims_from_the_high_to_the_low_mark() {
        assert_eq!(pressure_reclaim_mb(21_000, 24_000), 0, "87.5 %: no pressure");
        assert_eq!(pressure_reclaim_mb(21_600, 24_000), 0, "exactly 90 %");
        assert_eq!(pressure_reclaim_mb(22_000, 24_000), 22_000 - 19_200);
        assert_eq!(pressure_reclaim_mb(30_000, 24_000), 30_000 - 19_200);
    }

    fn idle(id: u64, charge_mb: u64, idle_s: f64, calls_per_s: f64, restart_ms: f64) -> IdleInstance {
        IdleInstance {
            id,
            charge_mb,
            configured_mb: 128,
            idle_for: Duration::from_secs_f64(idle_s),
            calls_per_s,
            restart_ms,
        }
    }

    #[test]
    fn the_least_used_go_first_then_the_cheapest_to_restart_and_the_biggest() {
        let pool = [
            idle(1, 10, 5.0, 2.0, 10.0),    // busy function, cheap restart: 0.2 × 10 / 10 = 0.2
            idle(2, 10, 600.0, 0.0, 300.0), // never called since: 0
            idle(3, 10, 5.0, 2.0, 300.0),   // busy function, dear restart: 0.2 × 300 / 10 = 6
            idle(4, 100, 5.0, 2.0, 300.0),  // the same, ten times the memory: 0.6
            idle(5, 10, 120.0, 2.0, 300.0), // of a busy function, but idle for 2 minutes: 1/120 × 300 / 10 = 0.25
        ];
        let order: Vec<u64> = reclaim_order(&pool).iter().map(|i| i.id).collect();
        assert_eq!(order, vec![2, 1, 5, 4, 3]);
        // Equal worth: the longest idle first.
        let tie = [idle(1, 10, 5.0, 0.0, 10.0), idle(2, 10, 50.0, 0.0, 10.0)];
        assert_eq!(reclaim_order(&tie).iter().map(|i| i.id).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn victims_free_enough_of_both_and_no_more() {
        let pool = [idle(1, 10, 50.0, 0.0, 1.0), idle(2, 20, 40.0, 0.0, 1.0), idle(3, 30, 30.0, 0.0, 1.0)];
        assert_eq!(pick_victims(&pool, 0, 0), Vec::<u64>::new());
        assert_eq!(pick_victims(&pool, 10, 0), vec![1]);
        assert_eq!(pick_victims(&pool, 11, 0), vec![1, 2]);
        // 200 configured MB needs two 128 MB instances even though one frees enough charge.
        assert_eq!(pick_victims(&pool, 5, 200), vec![1, 2]);
        // More than they hold: all of them.
        assert_eq!(pick_victims(&pool, 1_000, 0), vec![1, 2, 3]);
    }
}
