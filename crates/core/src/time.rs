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
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
}
