//! What happens to an asynchronous (Event) invocation after an attempt: Lambda's rule of two retries with
//! back-off, where being throttled is not a failed attempt.

use std::time::Duration;

/// How an attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    /// The function (or its runtime) failed.
    Failed,
    /// No instance could take it (concurrency limit): not counted as an attempt.
    Throttled,
    /// The platform could not run it for now (a full disk, an unreachable store): not the function's
    /// failure, so not counted as an attempt either; the event waits until the platform can.
    Unavailable,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventNext {
    Succeeded,
    /// Out of attempts.
    Failed,
    RetryAfter(Duration),
}

/// How long an event waits after the platform could not run it.
pub const PLATFORM_RETRY: Duration = Duration::from_secs(1);

/// Attempts an event gets in all (the first plus two retries).
pub const MAX_ATTEMPTS: u32 = 3;

/// The decision after attempt number `attempts` (1-based, counting this one unless throttled).
pub fn after_attempt(attempts: u32, outcome: AttemptOutcome, base: Duration) -> EventNext {
    match outcome {
        AttemptOutcome::Succeeded => EventNext::Succeeded,
        AttemptOutcome::Throttled => EventNext::RetryAfter(Duration::from_millis(200)),
        AttemptOutcome::Unavailable => EventNext::RetryAfter(PLATFORM_RETRY),
        AttemptOutcome::Failed if attempts >= MAX_ATTEMPTS => EventNext::Failed,
        AttemptOutcome::Failed => EventNext::RetryAfter(base * 2u32.pow(attempts.saturating_sub(1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_retries_with_doubling_back_off() {
        let base = Duration::from_secs(1);
        assert_eq!(after_attempt(1, AttemptOutcome::Failed, base), EventNext::RetryAfter(Duration::from_secs(1)));
        assert_eq!(after_attempt(2, AttemptOutcome::Failed, base), EventNext::RetryAfter(Duration::from_secs(2)));
        assert_eq!(after_attempt(3, AttemptOutcome::Failed, base), EventNext::Failed);
        assert_eq!(after_attempt(1, AttemptOutcome::Succeeded, base), EventNext::Succeeded);
        assert!(matches!(after_attempt(3, AttemptOutcome::Throttled, base), EventNext::RetryAfter(_)));
    }

    #[test]
    fn the_platform_failing_never_uses_up_an_event() {
        let base = Duration::from_secs(1);
        for attempts in [0, 3, 100] {
            assert_eq!(
                after_attempt(attempts, AttemptOutcome::Unavailable, base),
                EventNext::RetryAfter(PLATFORM_RETRY)
            );
        }
    }
}
