//! Retriers and catchers: which error each matches, how long to wait before the next attempt.

use crate::errors;
use crate::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub errors: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub full_jitter: bool,
}

impl Retrier {
    pub const DEFAULT_INTERVAL_SECONDS: u64 = 1;
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    pub const DEFAULT_BACKOFF_RATE: f64 = 2.0;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub errors: Vec<String>,
    pub next: String,
    /// Where `{Error, Cause}` goes in the state's raw input; `None` is `"ResultPath": null`.
    pub result_path: Option<Path>,
    /// JSONata's `Output` (absent: `$states.errorOutput`).
    pub output: Option<crate::jsonata::Shape>,
    /// The variables the catcher sets.
    pub assign: Option<crate::template::Payload>,
}

/// Does an `ErrorEquals` list match `error`? `States.ALL` matches every error but the terminal ones,
/// `States.Runtime` and `States.DataLimitExceeded`; `States.TaskFailed` every error but `States.Timeout` and
/// `States.Runtime`.
pub fn matches(list: &[String], error: &str) -> bool {
    list.iter().any(|e| match e.as_str() {
        errors::ALL => error != errors::RUNTIME && error != errors::DATA_LIMIT_EXCEEDED,
        errors::TASK_FAILED => error != errors::TIMEOUT && error != errors::RUNTIME,
        other => other == error,
    })
}

/// The state of a state's retriers while it runs: attempts used per retrier. It resets when the
/// execution leaves the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempts(pub Vec<u32>);

/// What to do after `error`: retry after `delay_ms`, or give up (then catchers are tried).
/// `random` in `[0, 1)` feeds full jitter.
pub fn next_retry(retriers: &[Retrier], attempts: &mut Attempts, error: &str, random: f64) -> Option<u64> {
    let (i, r) = retriers.iter().enumerate().find(|(_, r)| matches(&r.errors, error))?;
    if attempts.0.len() < retriers.len() {
        attempts.0.resize(retriers.len(), 0);
    }
    let used = attempts.0[i];
    if used >= r.max_attempts {
        return None;
    }
    attempts.0[i] = used + 1;
    let mut delay = r.interval_seconds as f64 * 1000.0 * r.backoff_rate.powi(used as i32);
    if let Some(max) = r.max_delay_seconds {
        delay = delay.min(max as f64 * 1000.0);
    }
    if r.full_jitter {
        delay *= random.clamp(0.0, 1.0);
    }
    Some(stoke_core::num::saturate_u64(delay))
}

/// The first catcher that matches `error`.
pub fn find_catcher<'a>(catchers: &'a [Catcher], error: &str) -> Option<&'a Catcher> {
    catchers.iter().find(|c| matches(&c.errors, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrier(errors: &[&str], max_attempts: u32) -> Retrier {
        Retrier {
            errors: errors.iter().map(|s| s.to_string()).collect(),
            interval_seconds: 1,
            max_attempts,
            backoff_rate: 2.0,
            max_delay_seconds: None,
            full_jitter: false,
        }
    }

    #[test]
    fn error_matching_follows_the_spec() {
        let all = vec!["States.ALL".to_string()];
        let task = vec!["States.TaskFailed".to_string()];
        assert!(matches(&all, "Custom"));
        assert!(matches(&all, "States.Timeout"));
        assert!(!matches(&all, "States.Runtime"));
        assert!(matches(&task, "Lambda.Unknown"));
        assert!(!matches(&task, "States.Timeout"));
        assert!(matches(&["A".to_string(), "B".to_string()], "B"));
        assert!(!matches(&["A".to_string()], "a"));
    }

    #[test]
    fn backoff_grows_caps_and_stops() {
        let mut r = retrier(&["E"], 4);
        r.max_delay_seconds = Some(5);
        let rs = vec![retrier(&["Other"], 1), r];
        let mut a = Attempts::default();
        let delays: Vec<_> = (0..5).map(|_| next_retry(&rs, &mut a, "E", 0.5)).collect();
        assert_eq!(delays, vec![Some(1000), Some(2000), Some(4000), Some(5000), None]);
        assert_eq!(next_retry(&rs, &mut a, "Other", 0.5), Some(1000), "counts are per retrier");
        assert_eq!(next_retry(&rs, &mut a, "Other", 0.5), None);
        assert_eq!(next_retry(&rs, &mut a, "Unmatched", 0.5), None);
    }

    #[test]
    fn zero_attempts_never_retries_and_jitter_scales() {
        let rs = vec![retrier(&["States.ALL"], 0)];
        assert_eq!(next_retry(&rs, &mut Attempts::default(), "X", 0.5), None);
        let mut r = retrier(&["States.ALL"], 2);
        r.full_jitter = true;
        r.interval_seconds = 10;
        assert_eq!(next_retry(&[r], &mut Attempts::default(), "X", 0.25), Some(2500));
    }
}
