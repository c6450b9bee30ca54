//! Choosing a function's keep-alive from its own traffic ("Serverless in the Wild", ATC '20): instead of
//! one timeout for everyone, keep an idle instance as long as this function's idle gaps usually last.
//! Replaying the recorded invocations against a keep-alive gives its cold starts and idle instance time,
//! so the choice is compared with the current setting on the same traffic.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::MAX_KEEP_ALIVE_S;
use crate::num::{saturate_u32, saturate_usize};

/// One recorded invocation, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Invocations recorded per function version (the most recent).
pub const RECORDED_CALLS: usize = 1000;
/// Fewer calls than this say too little about the function's gaps.
pub const MIN_CALLS: usize = 20;
/// The share of idle gaps the chosen keep-alive covers, and the margin on top.
const COVER: f64 = 0.99;
const MARGIN: f64 = 1.1;

/// What a keep-alive costs on the recorded traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Replay {
    pub keep_alive_s: u32,
    pub cold_starts: u64,
    /// Time instances spent idle (kept alive but not running), in seconds.
    pub idle_instance_s: f64,
}

/// The chosen keep-alive beside the current one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeepAliveAdvice {
    pub calls: usize,
    pub current: Replay,
    pub chosen: Replay,
}

/// Replays `calls` against a keep-alive: each call takes the most recently freed idle instance if one is
/// still kept, otherwise starts a new one (a cold start). An instance idle longer than the keep-alive is
/// gone, having cost the keep-alive in idle time; so do the instances left at the end.
pub fn replay(calls: &[Call], keep_alive_ms: i64) -> (u64, i64, Vec<i64>) {
    let mut sorted = calls.to_vec();
    sorted.sort_by_key(|c| c.start_ms);
    // Idle instances by the time they were freed; busy ones by the time they will be.
    let mut idle: Vec<i64> = Vec::new();
    let mut busy: Vec<i64> = Vec::new();
    let (mut cold, mut idle_ms, mut gaps) = (0u64, 0i64, Vec::new());
    for c in &sorted {
        // Instances that finished before this call are idle now.
        busy.retain(|&end| {
            if end <= c.start_ms {
                idle.push(end);
                false
            } else {
                true
            }
        });
        // Those idle for longer than the keep-alive were evicted.
        idle.retain(|&freed| {
            let keep = c.start_ms - freed <= keep_alive_ms;
            if !keep {
                idle_ms += keep_alive_ms;
            }
            keep
        });
        match idle.iter().enumerate().max_by_key(|(_, &freed)| freed).map(|(i, _)| i) {
            Some(i) => {
                let freed = idle.swap_remove(i);
                idle_ms += c.start_ms - freed;
                gaps.push(c.start_ms - freed);
            }
            None => cold += 1,
        }
        busy.push(c.end_ms.max(c.start_ms));
    }
    idle_ms += keep_alive_ms * (idle.len() + busy.len()) as i64;
    (cold, idle_ms, gaps)
}

fn replay_s(calls: &[Call], keep_alive_s: u32) -> Replay {
    let (cold_starts, idle_ms, _) = replay(calls, i64::from(keep_alive_s) * 1000);
    Replay { keep_alive_s, cold_starts, idle_instance_s: idle_ms as f64 / 1000.0 }
}

/// The keep-alive this traffic calls for — long enough for 99 % of its idle gaps (as they are when nothing
/// is evicted), with a 10 % margin — compared with `current_s`. `None` below [`MIN_CALLS`] calls.
pub fn advise(calls: &[Call], current_s: u32) -> Option<KeepAliveAdvice> {
    if calls.len() < MIN_CALLS {
        return None;
    }
    let (_, _, mut gaps) = replay(calls, i64::MAX / 4);
    gaps.sort_unstable();
    let chosen_s = if gaps.is_empty() {
        1
    } else {
        let rank = saturate_usize((COVER * gaps.len() as f64).ceil()).clamp(1, gaps.len());
        let ms = gaps[rank - 1] as f64 * MARGIN;
        saturate_u32((ms / 1000.0).ceil()).clamp(1, MAX_KEEP_ALIVE_S)
    };
    Some(KeepAliveAdvice { calls: calls.len(), current: replay_s(calls, current_s), chosen: replay_s(calls, chosen_s) })
}

/// Idle gaps kept per function to decide when its idle instances freeze.
pub const FREEZE_GAPS: usize = 32;
/// Fewer gaps than this say too little: the base delay applies.
const FREEZE_MIN_GAPS: usize = 5;
/// The share of a function's idle gaps an instance is left unfrozen through, and the margin on top.
const FREEZE_COVER: f64 = 0.9;
const FREEZE_MARGIN: f64 = 1.5;
/// However regular a function's calls, an instance idle this long is frozen.
pub const FREEZE_AFTER_MAX: Duration = Duration::from_secs(60);

/// How long an idle instance of a function waits before it is frozen, from the function's recent idle gaps
/// (how long its instances waited before their next invocation). A freeze and its thaw cost work on every
/// idle gap and save CPU only over a long one, so an instance stays unfrozen through the gaps its function
/// usually has — 90 % of them, with a 50 % margin — and is frozen once it has idled longer than that, when a
/// long wait is likely. Never sooner than `base`, never later than [`FREEZE_AFTER_MAX`].
pub fn freeze_after(recent_gaps: &[Duration], base: Duration) -> Duration {
    if recent_gaps.len() < FREEZE_MIN_GAPS {
        return base;
    }
    let mut gaps = recent_gaps.to_vec();
    gaps.sort_unstable();
    let rank = saturate_usize((FREEZE_COVER * gaps.len() as f64).ceil()).clamp(1, gaps.len());
    let usual = gaps[rank - 1].mul_f64(FREEZE_MARGIN);
    usual.clamp(base, FREEZE_AFTER_MAX.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_freeze_only_after_their_functions_usual_gaps() {
        let ms = Duration::from_millis;
        let base = ms(1000);
        // Too few gaps to say: the base delay.
        assert_eq!(freeze_after(&[ms(5000); 4], base), base);
        // Called every 2 s: left unfrozen for 3 s, so steady traffic never pays a thaw.
        assert_eq!(freeze_after(&[ms(2000); 20], base), ms(3000));
        // Called every 100 ms: the base delay (frozen only after a second of silence).
        assert_eq!(freeze_after(&[ms(100); 20], base), base);
        // The usual gap is the 90th percentile: one long pause among short gaps does not count.
        let mut gaps = vec![ms(2000); 19];
        gaps.push(ms(600_000));
        assert_eq!(freeze_after(&gaps, base), ms(3000));
        // Gaps of minutes: frozen after a minute at the latest.
        assert_eq!(freeze_after(&[ms(300_000); 20], base), FREEZE_AFTER_MAX);
        // A base beyond the cap is kept.
        assert_eq!(freeze_after(&[ms(300_000); 20], ms(120_000)), ms(120_000));
    }

    /// Calls of `run` ms, `gap` ms apart (start to start).
    fn periodic(n: usize, gap: i64, run: i64) -> Vec<Call> {
        (0..n as i64).map(|i| Call { start_ms: i * gap, end_ms: i * gap + run }).collect()
    }

    #[test]
    fn replay_counts_cold_starts_and_idle_time() {
        // Every 10 s, 1 s long: idle gaps of 9 s.
        let calls = periodic(5, 10_000, 1_000);
        // Kept 60 s: one cold start; idle 4 × 9 s, plus the last instance's 60 s.
        assert_eq!(replay(&calls, 60_000), (1, 36_000 + 60_000, vec![9_000; 4]));
        // Kept 5 s: every call is cold; each instance idles 5 s before it goes.
        assert_eq!(replay(&calls, 5_000).0, 5);
        assert_eq!(replay(&calls, 5_000).1, 5 * 5_000);
    }

    #[test]
    fn overlapping_calls_need_more_instances() {
        let calls = [
            Call { start_ms: 0, end_ms: 100 },
            Call { start_ms: 50, end_ms: 150 },
            Call { start_ms: 200, end_ms: 210 },
        ];
        let (cold, _, gaps) = replay(&calls, 1_000);
        assert_eq!(cold, 2);
        // The third takes the most recently freed instance (free since 150).
        assert_eq!(gaps, vec![50]);
    }

    #[test]
    fn the_advice_follows_the_functions_own_gaps() {
        // A function called every 2 minutes: 10 minutes keeps everything warm but idles; 132 s (the 119.9 s
        // gap × 1.1, rounded up) keeps it just as warm for less.
        let calls = periodic(30, 120_000, 100);
        let a = advise(&calls, 600).unwrap();
        assert_eq!(a.calls, 30);
        assert_eq!(a.chosen.keep_alive_s, 132);
        assert_eq!((a.current.cold_starts, a.chosen.cold_starts), (1, 1));
        assert!(a.chosen.idle_instance_s < a.current.idle_instance_s);
        // Called every 20 minutes with a 10-minute keep-alive, every call is cold; the advice covers the gap.
        let rare = periodic(30, 1_200_000, 100);
        let a = advise(&rare, 600).unwrap();
        assert_eq!(a.current.cold_starts, 30);
        assert_eq!(a.chosen.cold_starts, 1);
        assert_eq!(a.chosen.keep_alive_s, 1320);
        assert!(advise(&rare[..MIN_CALLS - 1], 600).is_none(), "too few calls to say");
    }

    #[test]
    fn the_advice_stays_within_the_configurable_range() {
        let calls = periodic(30, 10, 5);
        assert_eq!(advise(&calls, 600).unwrap().chosen.keep_alive_s, 1);
        let calls = periodic(30, 200_000_000, 5);
        assert_eq!(advise(&calls, 600).unwrap().chosen.keep_alive_s, MAX_KEEP_ALIVE_S);
    }
}
