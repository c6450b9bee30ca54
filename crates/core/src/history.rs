//! The node's last hour, in ten-second slots: invocations, errors, throttles and cold starts counted, and
//! durations kept as a log-scale histogram so each slot's p50 and p99 can be read without keeping every
//! sample. What the web console's node charts draw (`GET /v1/node/history`).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One slot's span.
pub const SLOT: Duration = Duration::from_secs(10);
/// Slots kept: an hour.
pub const SLOTS: usize = 360;
/// Duration buckets: bucket `i` holds durations up to `FIRST_MS × GROWTH^i` (the last one everything
/// longer), from 50 µs to past 15 minutes, each 25 % wider than the one before — a percentile read from
/// them is within 25 % of the exact one.
pub const BUCKETS: usize = 80;
const FIRST_MS: f64 = 0.05;
const GROWTH: f64 = 1.25;

/// The bucket a duration of `ms` falls in.
pub fn bucket_of(ms: f64) -> usize {
    if ms.is_nan() || ms <= FIRST_MS {
        return 0;
    }
    let i = (ms / FIRST_MS).ln() / GROWTH.ln();
    crate::num::saturate_usize(i.ceil()).min(BUCKETS - 1)
}

/// The longest duration bucket `i` holds, in ms (what a percentile falling in it reads as).
pub fn bucket_upper_ms(i: usize) -> f64 {
    FIRST_MS * GROWTH.powi(i32::try_from(i.min(BUCKETS - 1)).unwrap_or(0))
}

/// What happened on the node during one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// When the slot ended, in ms since the Unix epoch.
    pub end_ms: i64,
    pub invocations: u64,
    pub errors: u64,
    pub throttles: u64,
    pub cold_starts: u64,
    /// Invocations waiting for an instance when the slot ended.
    pub queued: u64,
    /// How many of the slot's invocations fell in each [duration bucket](bucket_of).
    pub durations: [u64; BUCKETS],
}

impl Slot {
    pub fn empty(end_ms: i64) -> Self {
        Slot { end_ms, invocations: 0, errors: 0, throttles: 0, cold_starts: 0, queued: 0, durations: [0; BUCKETS] }
    }

    /// The `q` quantile (0–1) of the slot's durations, as its bucket's upper bound; `None` without any.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.durations.iter().sum();
        if total == 0 {
            return None;
        }
        // Nearest rank: the smallest bucket holding at least q of the samples.
        let rank = crate::num::saturate_u64((q.clamp(0.0, 1.0) * total as f64).ceil()).max(1);
        let mut seen = 0;
        for (i, n) in self.durations.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_upper_ms(i));
            }
        }
        Some(bucket_upper_ms(BUCKETS - 1))
    }
}

/// One slot as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPoint {
    /// When the slot ended, in ms since the Unix epoch.
    pub end_ms: i64,
    /// Invocations answered during the slot, per second.
    pub invocations_per_s: f64,
    pub invocations: u64,
    /// Of those, how many ended in an error (the function's or the platform's).
    pub errors: u64,
    /// Invocations refused for want of room or concurrency.
    pub throttles: u64,
    /// Invocations that waited for an instance to initialise.
    pub cold_starts: u64,
    /// Invocations waiting for an instance when the slot ended.
    pub queued: u64,
    /// Median and 99th percentile duration of the slot's invocations (within 25 %), none without any.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The last [`SLOTS`] slots, oldest first.
#[derive(Debug, Default)]
pub struct History {
    slots: VecDeque<Slot>,
}

impl History {
    pub fn push(&mut self, slot: Slot) {
        if self.slots.len() == SLOTS {
            self.slots.pop_front();
        }
        self.slots.push_back(slot);
    }

    pub fn points(&self) -> Vec<HistoryPoint> {
        let per_s = SLOT.as_secs_f64();
        self.slots
            .iter()
            .map(|s| HistoryPoint {
                end_ms: s.end_ms,
                invocations_per_s: s.invocations as f64 / per_s,
                invocations: s.invocations,
                errors: s.errors,
                throttles: s.throttles,
                cold_starts: s.cold_starts,
                queued: s.queued,
                p50_ms: s.quantile_ms(0.5),
                p99_ms: s.quantile_ms(0.99),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_buckets_that_grow_by_a_quarter() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(0.05), 0);
        assert_eq!(bucket_of(0.06), 1);
        for ms in [0.3, 1.0, 7.5, 120.0, 2_000.0, 60_000.0] {
            let i = bucket_of(ms);
            assert!(bucket_upper_ms(i) >= ms && bucket_upper_ms(i - 1) < ms, "{ms} ms in bucket {i}");
            assert!(bucket_upper_ms(i) <= ms * GROWTH * 1.000_001, "{ms} ms read as {}", bucket_upper_ms(i));
        }
        assert!(bucket_upper_ms(BUCKETS - 2) > 15.0 * 60_000.0, "a 15-minute invocation has its own bucket");
        assert_eq!(bucket_of(1e12), BUCKETS - 1);
    }

    #[test]
    fn a_slots_percentiles_are_read_from_its_buckets() {
        let mut s = Slot::empty(0);
        assert_eq!(s.quantile_ms(0.5), None);
        // 98 invocations of 2 ms, 2 of 400 ms: the median is 2 ms, the p99 400 ms (each within 25 %).
        s.durations[bucket_of(2.0)] += 98;
        s.durations[bucket_of(400.0)] += 2;
        let (p50, p99) = (s.quantile_ms(0.5).unwrap(), s.quantile_ms(0.99).unwrap());
        assert!((2.0..2.5).contains(&p50), "{p50}");
        assert!((400.0..500.0).contains(&p99), "{p99}");
        assert_eq!(s.quantile_ms(0.98), Some(bucket_upper_ms(bucket_of(2.0))), "the 98th is still a fast one");
    }

    #[test]
    fn the_history_keeps_the_last_hour_and_shows_rates() {
        let mut h = History::default();
        for i in 0..(SLOTS as i64 + 5) {
            let mut s = Slot::empty(i * 10_000);
            s.invocations = 50;
            s.cold_starts = u64::from(i == 3);
            h.push(s);
        }
        let points = h.points();
        assert_eq!(points.len(), SLOTS);
        assert_eq!(points[0].end_ms, 50_000, "the five oldest slots are gone");
        assert_eq!(points[0].invocations_per_s, 5.0);
        assert_eq!(points.iter().map(|p| p.cold_starts).sum::<u64>(), 0, "the cold start was in an old slot");
        assert_eq!((points[0].p50_ms, points[0].p99_ms), (None, None));
    }
}
