//! Where the scheduler reads the time. Every decision it makes by time — keep-alive, init back-off, announced
//! invocations lapsing, the idle time that orders eviction, whether an invocation was a cold start, when its
//! deadline is — reads one [`Clock`], so a test can move time instead of waiting for it.
//!
//! Timers still run on tokio's time (the controller's tick, an invocation's timeout watchdog, a reservation's
//! expiry, the delay before an idle instance freezes): a test clock moved ahead makes decisions see the later
//! time at their next look, it does not fire timers sooner.

use std::time::Instant;

/// Monotonic time for durations and deadlines, and wall-clock time for what is shown or handed to runtimes.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(stoke_core::num::millis_i64)
            .unwrap_or_default()
    }
}

/// The system's clocks moved ahead by what [`TestClock::advance`] added: time still passes, and a test can
/// skip ahead (past a keep-alive, a back-off) at once.
#[cfg(any(test, feature = "test-fixtures"))]
#[derive(Debug, Default)]
pub struct TestClock {
    ahead_ms: std::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "test-fixtures"))]
impl TestClock {
    pub fn advance(&self, by: std::time::Duration) {
        self.ahead_ms.fetch_add(stoke_core::num::millis_u64(by), std::sync::atomic::Ordering::SeqCst);
    }

    fn ahead(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ahead_ms.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[cfg(any(test, feature = "test-fixtures"))]
impl Clock for TestClock {
    fn now(&self) -> Instant {
        Instant::now() + self.ahead()
    }

    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + stoke_core::num::millis_i64(self.ahead())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_test_clock_runs_with_the_system_and_skips_ahead_when_told() {
        let clock = TestClock::default();
        let (before, before_ms) = (Instant::now(), SystemClock.now_ms());
        clock.advance(Duration::from_secs(600));
        let (now, now_ms) = (clock.now(), clock.now_ms());
        let (after, after_ms) = (Instant::now(), SystemClock.now_ms());
        assert!(now >= before + Duration::from_secs(600) && now <= after + Duration::from_secs(600));
        assert!((before_ms + 600_000..=after_ms + 600_000).contains(&now_ms));
    }
}
