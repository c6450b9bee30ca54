//! Timestamp formatting from plain numbers; the caller supplies the clock.

/// Formats milliseconds since the Unix epoch the way Lambda formats `LastModified`:
/// `2024-01-01T00:00:00.000+0000`.
pub fn format_lambda_timestamp(unix_ms: i64) -> String {
    let (date, secs_of_day, ms) = split(unix_ms);
    format!("{}T{:02}:{:02}:{:02}.{:03}+0000", date, secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60, ms)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC: `2024-01-01T00:00:00.000Z`.
pub fn format_rfc3339(unix_ms: i64) -> String {
    let (date, secs_of_day, ms) = split(unix_ms);
    format!("{}T{:02}:{:02}:{:02}.{:03}Z", date, secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60, ms)
}

/// Formats milliseconds since the Unix epoch as an AWS `X-Amz-Date`: `20240101T000000Z`.
pub fn format_amz_date(unix_ms: i64) -> String {
    let (date, secs_of_day, _) = split(unix_ms);
    format!("{}T{:02}{:02}{:02}Z", date.replace('-', ""), secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60)
}

/// Formats milliseconds since the Unix epoch as an HTTP API event's `requestContext.time`:
/// `12/Mar/2020:19:03:58 +0000`.
pub fn format_request_time(unix_ms: i64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = unix_ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000", MONTHS[m as usize - 1], t / 3600, t / 60 % 60, t % 60)
}

fn split(unix_ms: i64) -> (String, i64, i64) {
    let ms = unix_ms.rem_euclid(1000);
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), secs.rem_euclid(86_400), ms)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) — Howard Hinnant's algorithm.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // The algorithm keeps d in 1..=31 and m in 1..=12.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an RFC 3339 timestamp as the States Language requires it (`2024-01-01T00:00:00Z`, an uppercase
/// `T`, optional fraction, `Z` or a numeric offset) into nanoseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    // Two digits always fit a u32.
    let (y, mo, d) = (digits(0, 4)?, u32::try_from(digits(5, 2)?).ok()?, u32::try_from(digits(8, 2)?).ok()?);
    let (h, mi, s) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let month_days = [
        31,
        if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[mo as usize - 1] || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &text[start..i.min(start + 9)];
        nanos = frac.parse::<i128>().ok()? * 10i128.pow(u32::try_from(9 - frac.len()).ok()?);
    }
    let offset_secs = match b.get(i)? {
        b'Z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// A proleptic Gregorian date to days since 1970-01-01 — the inverse of `civil_from_days`.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_lambda_timestamp(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(format_lambda_timestamp(1_704_067_200_000), "2024-01-01T00:00:00.000+0000");
        assert_eq!(format_rfc3339(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_amz_date(1_709_210_096_789), "20240229T123456Z");
        assert_eq!(format_request_time(1_584_039_838_000), "12/Mar/2020:19:03:58 +0000");
    }

    #[test]
    fn parses_rfc3339_and_round_trips() {
        let ns = |ms: i64| Some(i128::from(ms) * 1_000_000);
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56.789Z"), ns(1_709_210_096_789));
        assert_eq!(parse_rfc3339("2024-02-29T13:34:56.789+01:00"), ns(1_709_210_096_789));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000000001Z"), Some(1));
        for ms in [0i64, 951_782_400_000, 1_709_210_096_789, -86_400_001, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), ns(ms), "{ms}");
        }
        for bad in [
            "2024-02-30T00:00:00Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01",
            "x",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00+0100",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
