//! Numeric conversions named for what they do, where a bare `as` would leave the reader to work it out.

use std::time::Duration;

/// `f` as a `u64`: truncated toward zero, clamped to `0..=u64::MAX`, NaN to 0.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Float-to-int `as` saturates (NaN to 0): the clamp meant.
pub fn saturate_u64(f: f64) -> u64 {
    f as u64
}

/// `f` as a `u32`: truncated toward zero, clamped to `0..=u32::MAX`, NaN to 0.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Float-to-int `as` saturates (NaN to 0): the clamp meant.
pub fn saturate_u32(f: f64) -> u32 {
    f as u32
}

/// `f` as a `usize`: truncated toward zero, clamped to `0..=usize::MAX`, NaN to 0.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Float-to-int `as` saturates (NaN to 0): the clamp meant.
pub fn saturate_usize(f: f64) -> usize {
    f as usize
}

/// `f` as an `i64`: truncated toward zero, clamped to `i64::MIN..=i64::MAX`, NaN to 0.
#[allow(clippy::cast_possible_truncation)] // Float-to-int `as` saturates (NaN to 0): the clamp meant.
pub fn saturate_i64(f: f64) -> i64 {
    f as i64
}

/// Whole milliseconds in `d`, `u64::MAX` past that (some 584 million years).
pub fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in whole microseconds, saturating at `u64::MAX` (half a million years).
pub fn micros_u64(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Whole milliseconds in `d`, `i64::MAX` past that (some 292 million years).
pub fn millis_i64(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_saturate() {
        assert_eq!(saturate_u64(2.9), 2);
        assert_eq!(saturate_u64(-1.0), 0);
        assert_eq!(saturate_u64(f64::NAN), 0);
        assert_eq!(saturate_u64(1e30), u64::MAX);
        assert_eq!(saturate_u32(1e30), u32::MAX);
        assert_eq!(saturate_usize(-0.5), 0);
        assert_eq!(saturate_i64(-1e30), i64::MIN);
        assert_eq!(saturate_i64(f64::INFINITY), i64::MAX);
    }

    #[test]
    fn millis_saturate() {
        assert_eq!(millis_u64(Duration::from_micros(2_999)), 2);
        assert_eq!(millis_u64(Duration::MAX), u64::MAX);
        assert_eq!(millis_i64(Duration::MAX), i64::MAX);
    }
}
