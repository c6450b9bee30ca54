//! What the workflow pre-warmer learns from: recent durations of each function version, how often each
//! Choice branch is taken, how many items a Map gets. Robust estimates (quantiles over a recent window)
//! rather than means, so one slow outlier does not move a plan.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Samples kept per window: recent enough to follow a change, enough for a p90.
pub const WINDOW: usize = 64;

/// The most recent samples of one quantity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Window {
    samples: VecDeque<f64>,
}

impl Window {
    pub fn push(&mut self, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `q` quantile (0–1) by nearest rank; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = crate::num::saturate_usize((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil());
        Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
    }
}

/// What a function's invocations did on one node since it started (every version and alias).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activity {
    /// Invocations answered.
    pub invocations: u64,
    /// Of those, how many ended in an error (the function's or the platform's).
    pub errors: u64,
    /// When the last one was answered, in ms since the Unix epoch (0: never).
    pub last_invoked_ms: i64,
}

impl Activity {
    /// The share of invocations that failed; `None` before any.
    pub fn error_rate(&self) -> Option<f64> {
        (self.invocations > 0).then(|| self.errors as f64 / self.invocations as f64)
    }
}

/// Durations of one function version, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionStats {
    pub init_ms: Window,
    pub run_ms: Window,
}

impl FunctionStats {
    /// What the planner assumes of a new instance: a pessimistic init (p90), so it is ready in time.
    pub fn predicted_init_ms(&self) -> Option<f64> {
        self.init_ms.quantile(0.9)
    }

    /// What the planner assumes of a run: the median.
    pub fn predicted_run_ms(&self) -> Option<f64> {
        self.run_ms.quantile(0.5)
    }
}

/// How often each target of a Choice state was taken, by target state name.
pub type BranchCounts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_rate_is_the_share_of_failed_invocations() {
        assert_eq!(Activity { invocations: 10, errors: 2, last_invoked_ms: 900 }.error_rate(), Some(0.2));
        assert_eq!(Activity::default().error_rate(), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut w = Window::default();
        assert_eq!(w.quantile(0.5), None);
        for s in [5.0, 1.0, 3.0, 2.0, 4.0] {
            w.push(s);
        }
        assert_eq!(w.quantile(0.5), Some(3.0));
        assert_eq!(w.quantile(0.9), Some(5.0));
        assert_eq!(w.quantile(0.0), Some(1.0));
        assert_eq!(w.quantile(1.0), Some(5.0));
        w.push(f64::NAN);
        assert_eq!(w.len(), 5, "non-finite samples are dropped");
    }

    #[test]
    fn the_window_keeps_the_most_recent_samples() {
        let mut w = Window::default();
        for i in 0..(WINDOW + 10) {
            w.push(i as f64);
        }
        assert_eq!(w.len(), WINDOW);
        assert_eq!(w.quantile(0.0), Some(10.0), "the oldest ten went");
        let mut f = FunctionStats::default();
        for i in 1..=10 {
            f.init_ms.push(100.0 * i as f64);
            f.run_ms.push(i as f64);
        }
        // One slow outlier moves neither estimate much.
        f.run_ms.push(10_000.0);
        assert_eq!((f.predicted_init_ms(), f.predicted_run_ms()), (Some(900.0), Some(6.0)));
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<FunctionStats>(&json).unwrap(), f);
    }
}
