//! What happens to an asynchronous (Event) invocation after an attempt: Lambda's rule of retries with
//! back-off (two unless the function's event invoke config says fewer), where being throttled is not a
//! failed attempt, and an event older than its maximum age is given up.

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
    /// Older than the policy's maximum age by the time it could run again: given up.
    Expired,
    RetryAfter(Duration),
}

/// A function's rule for its Event invocations (Lambda's event invoke config): how many retries after a
/// failed attempt, and how old an event may get before it is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPolicy {
    pub max_retries: u32,
    pub max_age: Duration,
}

/// Most retries Lambda allows (and its default).
pub const MAX_RETRIES: u32 = 2;
/// The range of `MaximumEventAgeInSeconds` (the default is the largest: 6 hours).
pub const MIN_EVENT_AGE_S: u32 = 60;
pub const MAX_EVENT_AGE_S: u32 = 21_600;

impl Default for EventPolicy {
    fn default() -> Self {
        Self { max_retries: MAX_RETRIES, max_age: Duration::from_secs(u64::from(MAX_EVENT_AGE_S)) }
    }
}

impl EventPolicy {
    /// The policy a config sets (`None`: Lambda's default for that field).
    pub fn from_config(max_retries: Option<u32>, max_age_s: Option<u32>) -> Self {
        let d = Self::default();
        Self {
            max_retries: max_retries.unwrap_or(d.max_retries),
            max_age: max_age_s.map_or(d.max_age, |s| Duration::from_secs(u64::from(s))),
        }
    }

    /// Checks a config's fields against Lambda's ranges; refused, the field out of range and Lambda's
    /// validation sentence.
    pub fn validate(
        max_retries: Option<i64>,
        max_age_s: Option<i64>,
    ) -> Result<(Option<u32>, Option<u32>), (EventConfigField, String)> {
        let check = |v: Option<i64>, which: EventConfigField, min: i64, max: i64| {
            let field = which.lambda_name();
            match v {
                None => Ok(None),
                Some(n) if n < min => Err(format!(
                "1 validation error detected: Value '{n}' at '{field}' failed to satisfy constraint: Member must have \
                 value greater than or equal to {min}"
            )),
                Some(n) if n > max => Err(format!(
                "1 validation error detected: Value '{n}' at '{field}' failed to satisfy constraint: Member must have \
                 value less than or equal to {max}"
            )),
                Some(n) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            }
            .map_err(|why| (which, why))
        };
        let ages = (i64::from(MIN_EVENT_AGE_S), i64::from(MAX_EVENT_AGE_S));
        Ok((
            check(max_retries, EventConfigField::MaxRetries, 0, i64::from(MAX_RETRIES))?,
            check(max_age_s, EventConfigField::MaxAge, ages.0, ages.1)?,
        ))
    }
}

/// A field of an event invoke config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventConfigField {
    MaxRetries,
    MaxAge,
}

impl EventConfigField {
    /// Its name as Lambda's validation messages give it.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Self::MaxRetries => "maximumRetryAttempts",
            Self::MaxAge => "maximumEventAgeInSeconds",
        }
    }
}

/// The longest wait between two attempts of an event.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How long an event waits after the platform could not run it.
pub const PLATFORM_RETRY: Duration = Duration::from_secs(1);

/// The decision after attempt number `attempts` (1-based, counting this one unless throttled) of an event
/// `age` old, under `policy`: a failed attempt is retried `policy.max_retries` times with doubling back-off;
/// an event that would be older than `policy.max_age` when it next runs is given up, as Lambda does.
pub fn after_attempt(
    policy: &EventPolicy,
    attempts: u32,
    age: Duration,
    outcome: AttemptOutcome,
    base: Duration,
) -> EventNext {
    let wait = match outcome {
        AttemptOutcome::Succeeded => return EventNext::Succeeded,
        AttemptOutcome::Throttled => Duration::from_millis(200),
        AttemptOutcome::Unavailable => PLATFORM_RETRY,
        AttemptOutcome::Failed if attempts > policy.max_retries => return EventNext::Failed,
        // Doubling, up to MAX_BACKOFF (a schedule's fire may be retried 185 times).
        AttemptOutcome::Failed => base.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF),
    };
    if age.saturating_add(wait) > policy.max_age {
        return EventNext::Expired;
    }
    EventNext::RetryAfter(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YOUNG: Duration = Duration::ZERO;

    #[test]
    fn two_retries_with_doubling_back_off() {
        let (base, p) = (Duration::from_secs(1), EventPolicy::default());
        let after = |n, outcome| after_attempt(&p, n, YOUNG, outcome, base);
        assert_eq!(after(1, AttemptOutcome::Failed), EventNext::RetryAfter(Duration::from_secs(1)));
        assert_eq!(after(2, AttemptOutcome::Failed), EventNext::RetryAfter(Duration::from_secs(2)));
        assert_eq!(after(3, AttemptOutcome::Failed), EventNext::Failed);
        assert_eq!(after(1, AttemptOutcome::Succeeded), EventNext::Succeeded);
        assert!(matches!(after(3, AttemptOutcome::Throttled), EventNext::RetryAfter(_)));
    }

    #[test]
    fn back_off_is_capped_for_many_retries() {
        let p = EventPolicy { max_retries: 185, max_age: Duration::from_secs(86_400) };
        let base = Duration::from_secs(1);
        assert_eq!(
            after_attempt(&p, 9, YOUNG, AttemptOutcome::Failed, base),
            EventNext::RetryAfter(Duration::from_secs(256))
        );
        for n in [10, 50, 185] {
            assert_eq!(after_attempt(&p, n, YOUNG, AttemptOutcome::Failed, base), EventNext::RetryAfter(MAX_BACKOFF));
        }
        assert_eq!(after_attempt(&p, 186, YOUNG, AttemptOutcome::Failed, base), EventNext::Failed);
    }

    #[test]
    fn the_platform_failing_never_uses_up_an_event() {
        let (base, p) = (Duration::from_secs(1), EventPolicy::default());
        for attempts in [0, 3, 100] {
            assert_eq!(
                after_attempt(&p, attempts, YOUNG, AttemptOutcome::Unavailable, base),
                EventNext::RetryAfter(PLATFORM_RETRY)
            );
        }
    }

    #[test]
    fn a_policy_sets_the_retries_and_the_age_past_which_an_event_is_given_up() {
        let base = Duration::from_secs(1);
        let none = EventPolicy::from_config(Some(0), None);
        assert_eq!(after_attempt(&none, 1, YOUNG, AttemptOutcome::Failed, base), EventNext::Failed);
        let one = EventPolicy::from_config(Some(1), Some(60));
        assert_eq!(after_attempt(&one, 1, YOUNG, AttemptOutcome::Failed, base), EventNext::RetryAfter(base));
        assert_eq!(after_attempt(&one, 2, YOUNG, AttemptOutcome::Failed, base), EventNext::Failed);
        // 59.5 s old: a retry a second later would be past the minute.
        let old = Duration::from_millis(59_500);
        assert_eq!(after_attempt(&one, 1, old, AttemptOutcome::Failed, base), EventNext::Expired);
        assert_eq!(
            after_attempt(&one, 1, old, AttemptOutcome::Throttled, base),
            EventNext::RetryAfter(Duration::from_millis(200))
        );
        assert_eq!(
            after_attempt(&one, 1, Duration::from_secs(60), AttemptOutcome::Unavailable, base),
            EventNext::Expired
        );
        assert_eq!(EventPolicy::from_config(None, None), EventPolicy::default());
        assert_eq!(EventPolicy::default().max_age, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn a_config_out_of_lambdas_ranges_is_refused_with_its_sentence() {
        assert_eq!(EventPolicy::validate(Some(2), Some(60)), Ok((Some(2), Some(60))));
        assert_eq!(EventPolicy::validate(None, None), Ok((None, None)));
        let (field, e) = EventPolicy::validate(Some(3), None).unwrap_err();
        assert!(e.contains("'3' at 'maximumRetryAttempts'") && e.contains("less than or equal to 2"), "{e}");
        assert_eq!(field, EventConfigField::MaxRetries);
        let (field, e) = EventPolicy::validate(None, Some(59)).unwrap_err();
        assert!(e.contains("'maximumEventAgeInSeconds'") && e.contains("greater than or equal to 60"), "{e}");
        assert_eq!(field, EventConfigField::MaxAge);
        assert!(EventPolicy::validate(Some(-1), None).is_err());
        assert!(EventPolicy::validate(None, Some(21_601)).is_err());
    }
}
