//! Schedules as EventBridge Scheduler has them: `rate(…)`, `cron(…)` (AWS's six fields, with `?`, `L`, `W`
//! and `#`) and one-time `at(…)` expressions, evaluated in an IANA time zone, and the next fire after a
//! given instant.
//!
//! Daylight saving time follows Scheduler's documented rule: a cron time that does not exist on a day
//! (skipped by the clocks going forward) does not fire that day; a time that happens twice (the clocks going
//! back) fires once, the first time. `rate(…)` is a fixed duration (a day is 24 hours), counted from the
//! schedule's start. Pure: the caller loads the time zone (`jiff::tz::TimeZone`) and passes instants in
//! milliseconds since the Unix epoch.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// The longest expression Scheduler takes.
pub const MAX_EXPRESSION_LEN: usize = 256;
/// The years a cron expression may name.
pub const FIRST_YEAR: i16 = 1970;
pub const LAST_YEAR: i16 = 2199;

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// Every `every_ms`, counted from the schedule's start.
    Rate {
        value: u32,
        unit: RateUnit,
    },
    Cron(Box<Cron>),
    /// Once, at this civil time in the schedule's time zone.
    At(DateTime),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Minutes,
    Hours,
    Days,
}

impl RateUnit {
    fn ms(self) -> i64 {
        match self {
            Self::Minutes => 60_000,
            Self::Hours => 3_600_000,
            Self::Days => 86_400_000,
        }
    }
}

/// A cron expression's fields as sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// Bit n: minute n.
    minutes: u64,
    /// Bit n: hour n.
    hours: u64,
    days: Days,
    /// Bit n: month n (1–12).
    months: u64,
    /// Bit (year − 1970).
    years: [u64; 4],
}

/// Which days a cron expression fires on: by the day of the month, or by the day of the week (the other
/// field is `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Days {
    /// Bit n: day n of the month (1–31).
    OfMonth(u64),
    /// `L`: the last day of the month.
    LastOfMonth,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    LastWeekdayOfMonth,
    /// `nW`: the weekday nearest day n, within the month.
    NearestWeekday(i8),
    /// Bit n: day n of the week (1 = Sunday … 7 = Saturday).
    OfWeek(u64),
    /// `dL`: the last day d of the week in the month.
    LastOfWeek(i8),
    /// `d#n`: the n-th day d of the week in the month.
    NthOfWeek(i8, i8),
}

/// An expression Scheduler would refuse; the message leads with Scheduler's sentence and says which part
/// is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid Schedule Expression {expression}. {why}")]
pub struct ExpressionError {
    pub expression: String,
    pub why: String,
}

impl Expression {
    pub fn parse(s: &str) -> Result<Self, ExpressionError> {
        let fail = |why: String| ExpressionError { expression: s.to_string(), why };
        if s.len() > MAX_EXPRESSION_LEN {
            return Err(fail(format!("It is {} characters long; the limit is {MAX_EXPRESSION_LEN}.", s.len())));
        }
        let inner = |prefix: &str| s.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
        if let Some(body) = inner("rate(") {
            return parse_rate(body).map_err(fail);
        }
        if let Some(body) = inner("cron(") {
            return parse_cron(body).map(|c| Self::Cron(Box::new(c))).map_err(fail);
        }
        if let Some(body) = inner("at(") {
            return parse_at(body).map(Self::At).map_err(fail);
        }
        Err(fail(
            "Use rate(value unit), cron(minutes hours day-of-month month day-of-week year) or \
             at(yyyy-mm-ddThh:mm:ss)."
                .into(),
        ))
    }

    /// Whether it fires once (`at(…)`).
    pub fn is_one_time(&self) -> bool {
        matches!(self, Self::At(_))
    }

    /// The first fire strictly after `after_ms`, in `tz`, for a schedule that starts at `start_ms` (rates
    /// count from it; nothing fires before it) and ends at `end_ms` (nothing fires after it); `None` when
    /// it will not fire again. A one-time schedule ignores the start and end, as Scheduler does.
    pub fn next_after(&self, tz: &TimeZone, after_ms: i64, start_ms: i64, end_ms: Option<i64>) -> Option<i64> {
        let next = match self {
            Self::At(dt) => {
                let at = tz.to_ambiguous_timestamp(*dt).compatible().ok()?.as_millisecond();
                return (at > after_ms).then_some(at);
            }
            Self::Rate { value, unit } => {
                let every = i64::from(*value) * unit.ms();
                if after_ms < start_ms {
                    start_ms
                } else {
                    start_ms + ((after_ms - start_ms) / every + 1) * every
                }
            }
            Self::Cron(c) => c.next_after(tz, after_ms.max(start_ms - 1))?,
        };
        match end_ms {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }
}

fn parse_rate(body: &str) -> Result<Expression, String> {
    let Some((value, unit)) = body.split_once(' ') else {
        return Err(
            "A rate is rate(value unit): a positive whole number, a space, and minute(s), hour(s) or day(s).".into()
        );
    };
    let n: u32 = match value.parse() {
        Ok(n) if n > 0 && value.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(format!("The rate's value {value:?} is not a positive whole number.")),
    };
    let unit = match unit {
        "minute" | "minutes" => RateUnit::Minutes,
        "hour" | "hours" => RateUnit::Hours,
        "day" | "days" => RateUnit::Days,
        other => return Err(format!("The rate's unit {other:?} is not one of minute(s), hour(s), day(s).")),
    };
    Ok(Expression::Rate { value: n, unit })
}

fn parse_at(body: &str) -> Result<DateTime, String> {
    let b = body.as_bytes();
    let shape = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    let bad =
        || format!("A one-time schedule is at(yyyy-mm-ddThh:mm:ss), in the schedule's time zone; {body:?} is not.");
    if !shape {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| body[r].parse::<i8>().unwrap_or(-1);
    let year = body[0..4].parse::<i16>().unwrap_or(-1);
    let date = Date::new(year, n(5..7), n(8..10)).map_err(|_| bad())?;
    let time = jiff::civil::Time::new(n(11..13), n(14..16), n(17..19), 0).map_err(|_| bad())?;
    Ok(DateTime::from_parts(date, time))
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's name, range and value names, for parsing and for messages.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Field = Field { name: "minutes", min: 0, max: 59, names: &[] };
const HOURS: Field = Field { name: "hours", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Field = Field { name: "day-of-month", min: 1, max: 31, names: &[] };
const MONTH: Field = Field { name: "month", min: 1, max: 12, names: &MONTHS };
const DAY_OF_WEEK: Field = Field { name: "day-of-week", min: 1, max: 7, names: &WEEKDAYS };
const YEAR: Field = Field { name: "year", min: FIRST_YEAR as u32, max: LAST_YEAR as u32, names: &[] };

impl Field {
    fn value(&self, s: &str) -> Result<u32, String> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(self.min + u32::try_from(i).unwrap_or(0));
        }
        match s.parse::<u32>() {
            Ok(v) if s.bytes().all(|b| b.is_ascii_digit()) && (self.min..=self.max).contains(&v) => Ok(v),
            Ok(_) if s.bytes().all(|b| b.is_ascii_digit()) => {
                Err(format!("The {} field's value {s} is out of its range {}-{}.", self.name, self.min, self.max))
            }
            _ => Err(format!(
                "The {} field's value {s:?} is not a number{}.",
                self.name,
                if self.names.is_empty() { String::new() } else { format!(" or one of {}", self.names.join(", ")) }
            )),
        }
    }

    /// The values a field's list (`,` of `*`, `a`, `a-b`, each with an optional `/step`) names; a range
    /// may wrap past the field's end (`20-2` in hours), as AWS's examples do.
    fn values(&self, s: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        for item in s.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, st)) => {
                    let step = match st.parse::<u32>() {
                        Ok(n) if n > 0 && st.bytes().all(|b| b.is_ascii_digit()) => n,
                        _ => {
                            return Err(format!("The {} field's increment {st:?} is not a positive number.", self.name))
                        }
                    };
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (first, last) = match range {
                "*" => (self.min, self.max),
                r => match r.split_once('-') {
                    Some((a, b)) => (self.value(a)?, self.value(b)?),
                    // `a/n`: from a to the end, every n.
                    None if step.is_some() => (self.value(r)?, self.max),
                    None => {
                        let v = self.value(r)?;
                        (v, v)
                    }
                },
            };
            let span = if last >= first { last - first } else { last + (self.max - self.min + 1) - first };
            let step = step.unwrap_or(1);
            let mut k = 0;
            while k <= span {
                let v = first + k;
                out.push(if v > self.max { v - (self.max - self.min + 1) } else { v });
                k += step;
            }
        }
        Ok(out)
    }

    fn bits(&self, s: &str) -> Result<u64, String> {
        Ok(self.values(s)?.into_iter().fold(0u64, |acc, v| acc | 1 << v))
    }
}

fn parse_cron(body: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = body.split(' ').collect();
    if fields.len() != 6 || fields.iter().any(|f| f.is_empty()) {
        return Err(format!(
            "A cron expression has six fields separated by single spaces (minutes hours day-of-month month \
             day-of-week year); this one has {}.",
            fields.iter().filter(|f| !f.is_empty()).count()
        ));
    }
    let (dom, dow) = (fields[2], fields[4]);
    let days = match (dom, dow) {
        ("?", "?") => return Err("Only one of day-of-month and day-of-week may be '?'.".into()),
        ("?", dow) => parse_dow(dow)?,
        (dom, "?") => parse_dom(dom)?,
        _ => {
            return Err(
                "One of day-of-month and day-of-week must be '?': a value or '*' in one needs '?' in the other.".into(),
            )
        }
    };
    let mut years = [0u64; 4];
    for y in YEAR.values(fields[5])? {
        let i = (y - YEAR.min) as usize;
        years[i / 64] |= 1 << (i % 64);
    }
    Ok(Cron {
        minutes: MINUTES.bits(fields[0])?,
        hours: HOURS.bits(fields[1])?,
        days,
        months: MONTH.bits(fields[3])?,
        years,
    })
}

fn parse_dom(s: &str) -> Result<Days, String> {
    match s {
        "L" => return Ok(Days::LastOfMonth),
        "LW" => return Ok(Days::LastWeekdayOfMonth),
        _ => {}
    }
    if let Some(day) = s.strip_suffix('W') {
        return Ok(Days::NearestWeekday(small(DAY_OF_MONTH.value(day)?)));
    }
    if s.contains(['L', 'W', '#']) {
        return Err(format!("The day-of-month field {s:?} is not valid: L, LW and nW stand alone."));
    }
    Ok(Days::OfMonth(DAY_OF_MONTH.bits(s)?))
}

fn parse_dow(s: &str) -> Result<Days, String> {
    if s == "L" {
        return Ok(Days::OfWeek(1 << 7));
    }
    if let Some((day, n)) = s.split_once('#') {
        let n = match n.parse::<i8>() {
            Ok(n) if (1..=5).contains(&n) => n,
            _ => return Err(format!("In the day-of-week field {s:?}, the week after '#' must be 1 to 5.")),
        };
        return Ok(Days::NthOfWeek(small(DAY_OF_WEEK.value(day)?), n));
    }
    if let Some(day) = s.strip_suffix('L') {
        return Ok(Days::LastOfWeek(small(DAY_OF_WEEK.value(day)?)));
    }
    if s.contains(['L', 'W', '#']) {
        return Err(format!("The day-of-week field {s:?} is not valid: L, dL and d#n stand alone."));
    }
    Ok(Days::OfWeek(DAY_OF_WEEK.bits(s)?))
}

/// A field's value (at most 59) as jiff's small integers.
fn small(v: u32) -> i8 {
    i8::try_from(v).unwrap_or(i8::MAX)
}

impl Cron {
    fn year_ok(&self, y: i16) -> bool {
        let Ok(i) = usize::try_from(i32::from(y) - i32::from(FIRST_YEAR)) else { return false };
        i < 230 && self.years[i / 64] >> (i % 64) & 1 == 1
    }

    fn day_ok(&self, d: Date) -> bool {
        let weekday = d.weekday().to_sunday_one_offset();
        let last = d.days_in_month();
        match self.days {
            Days::OfMonth(bits) => bits >> d.day() & 1 == 1,
            Days::LastOfMonth => d.day() == last,
            Days::LastWeekdayOfMonth => {
                let end = d.last_of_month();
                let back = match end.weekday().to_sunday_one_offset() {
                    1 => 2, // Sunday: the Friday before
                    7 => 1, // Saturday
                    _ => 0,
                };
                d.day() == last - back
            }
            Days::NearestWeekday(n) => {
                if n > last {
                    return false;
                }
                let Ok(target) = Date::new(d.year(), d.month(), n) else { return false };
                let nearest = match target.weekday().to_sunday_one_offset() {
                    7 if n == 1 => 3,        // Saturday the 1st: Monday the 3rd
                    7 => n - 1,              // Saturday: the Friday before
                    1 if n == last => n - 2, // Sunday the last: the Friday before
                    1 => n + 1,              // Sunday: the Monday after
                    _ => n,
                };
                d.day() == nearest
            }
            Days::OfWeek(bits) => bits >> weekday & 1 == 1,
            Days::LastOfWeek(w) => weekday == w && d.day() + 7 > last,
            Days::NthOfWeek(w, n) => weekday == w && (d.day() - 1) / 7 + 1 == n,
        }
    }

    /// The first fire strictly after `after_ms`, in `tz`.
    fn next_after(&self, tz: &TimeZone, after_ms: i64) -> Option<i64> {
        let after = Timestamp::from_millisecond(after_ms).ok()?;
        let from = tz.to_datetime(after);
        let mut day = from.date();
        while day.year() <= LAST_YEAR {
            if !self.year_ok(day.year()) {
                day = Date::new(day.year().checked_add(1)?, 1, 1).ok()?;
                continue;
            }
            if self.months >> day.month() & 1 == 0 {
                day = day.last_of_month().tomorrow().ok()?;
                continue;
            }
            if self.day_ok(day) {
                let today = day == from.date();
                for h in (0..24i8).filter(|h| self.hours >> h & 1 == 1) {
                    if today && h < from.hour() {
                        continue;
                    }
                    for m in (0..60i8).filter(|m| self.minutes >> m & 1 == 1) {
                        if today && h == from.hour() && m < from.minute() {
                            continue;
                        }
                        let civil = day.at(h, m, 0, 0);
                        // A time the clocks skip does not fire; one they repeat fires the first time.
                        let offset = match tz.to_ambiguous_timestamp(civil).offset() {
                            AmbiguousOffset::Unambiguous { offset } => offset,
                            AmbiguousOffset::Fold { before, .. } => before,
                            AmbiguousOffset::Gap { .. } => continue,
                        };
                        let at = offset.to_timestamp(civil).ok()?.as_millisecond();
                        if at > after_ms {
                            return Some(at);
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// Scheduler's limits on a schedule's fields.
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_DESCRIPTION_LEN: usize = 512;
pub const MAX_TIMEZONE_LEN: usize = 50;
pub const MAX_WINDOW_MIN: u32 = 1440;
pub const MAX_RETRIES: u32 = 185;
pub const MIN_EVENT_AGE_S: u32 = 60;
pub const MAX_EVENT_AGE_S: u32 = 86_400;
/// The default retry policy, as Scheduler's.
pub const DEFAULT_RETRIES: u32 = MAX_RETRIES;
pub const DEFAULT_EVENT_AGE_S: u32 = MAX_EVENT_AGE_S;
/// The only schedule group.
pub const DEFAULT_GROUP: &str = "default";

/// A schedule's or group's name: 1 to 64 of letters, digits, `-`, `_` and `.`, as Scheduler's pattern has it.
pub fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_NAME_LEN || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(format!("{s:?} is not a valid name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// Checks a number against a field's range; Scheduler's validation sentence when it is outside.
pub fn check_range(field: &str, v: i64, min: u32, max: u32) -> Result<u32, String> {
    if v < i64::from(min) || v > i64::from(max) {
        return Err(format!(
            "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must have \
             value {}",
            if v < i64::from(min) {
                format!("greater than or equal to {min}")
            } else {
                format!("less than or equal to {max}")
            }
        ));
    }
    Ok(u32::try_from(v).unwrap_or(max))
}

/// Whether a fire that was due while the server could not deliver it (it was down) is delivered now or
/// recorded as missed: delivered while it is younger than the schedule's maximum event age.
pub fn deliver_late(due_ms: i64, now_ms: i64, max_age_s: u32) -> bool {
    now_ms - due_ms <= i64::from(max_age_s) * 1000
}

/// How long after its time a fire is delivered, within a flexible window of `window_min` minutes: spread
/// over the window by `seed` (a hash of the schedule and the fire), the same every time it is computed.
pub fn window_delay_ms(window_min: u32, seed: u64) -> i64 {
    if window_min == 0 {
        return 0;
    }
    i64::try_from(seed % (u64::from(window_min) * 60_000)).unwrap_or(0)
}

/// What a fire knows about itself, for the target's payload.
#[derive(Debug, Clone, Copy)]
pub struct Fire<'a> {
    pub schedule_arn: &'a str,
    /// The fire's id (the invocation's request id, and `<aws.scheduler.execution-id>`).
    pub id: &'a str,
    pub scheduled_ms: i64,
    pub attempt: u32,
    pub account: &'a str,
    pub region: &'a str,
}

/// The payload a fire sends: the schedule's input with Scheduler's context attributes replaced
/// (`<aws.scheduler.schedule-arn>`, `<aws.scheduler.scheduled-time>`, `<aws.scheduler.execution-id>`,
/// `<aws.scheduler.attempt-number>`), or without an input, the scheduled event Scheduler sends by default.
pub fn payload(input: Option<&str>, fire: &Fire<'_>) -> String {
    let time = format_seconds(fire.scheduled_ms);
    match input {
        Some(input) => input
            .replace("<aws.scheduler.schedule-arn>", fire.schedule_arn)
            .replace("<aws.scheduler.scheduled-time>", &time)
            .replace("<aws.scheduler.execution-id>", fire.id)
            .replace("<aws.scheduler.attempt-number>", &fire.attempt.to_string()),
        None => {
            let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
            format!(
                "{{\"version\":\"0\",\"id\":{},\"detail-type\":\"Scheduled Event\",\"source\":\"aws.scheduler\",\
                 \"account\":{},\"time\":{},\"region\":{},\"resources\":[{}],\"detail\":\"{{}}\"}}",
                s(fire.id),
                s(fire.account),
                s(&time),
                s(fire.region),
                s(fire.schedule_arn)
            )
        }
    }
}

/// `2022-03-22T18:59:43Z`: an instant to the second, as Scheduler writes scheduled times.
pub fn format_seconds(ms: i64) -> String {
    let t = crate::time::format_rfc3339(ms);
    format!("{}Z", &t[..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn iso(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    /// The next `n` fires after `from` (UTC unless `tz`), as ISO instants.
    fn fires(expr: &str, tz: &TimeZone, from: &str, n: usize) -> Vec<String> {
        let e = Expression::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let mut at = ms(from);
        let mut out = vec![];
        for _ in 0..n {
            match e.next_after(tz, at, i64::MIN / 2, None) {
                Some(next) => {
                    out.push(iso(next));
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn awss_documented_cron_examples_fire_when_the_docs_say() {
        // EventBridge's cron reference table, from Friday 2027-01-01 00:00 UTC.
        let from = "2027-01-01T00:00:00Z";
        let cases: [(&str, &[&str]); 9] = [
            ("cron(0 10 * * ? *)", &["2027-01-01T10:00:00Z", "2027-01-02T10:00:00Z"]),
            ("cron(15 12 * * ? *)", &["2027-01-01T12:15:00Z", "2027-01-02T12:15:00Z"]),
            // 6:00 pm Monday to Friday: Friday the 1st, then Monday the 4th.
            ("cron(0 18 ? * MON-FRI *)", &["2027-01-01T18:00:00Z", "2027-01-04T18:00:00Z"]),
            ("cron(0 8 1 * ? *)", &["2027-01-01T08:00:00Z", "2027-02-01T08:00:00Z"]),
            ("cron(0/15 * * * ? *)", &["2027-01-01T00:15:00Z", "2027-01-01T00:30:00Z"]),
            // Every 10 minutes Monday to Friday: the 1st is a Friday.
            ("cron(0/10 * ? * MON-FRI *)", &["2027-01-01T00:10:00Z", "2027-01-01T00:20:00Z"]),
            ("cron(0/5 8-17 ? * MON-FRI *)", &["2027-01-01T08:00:00Z", "2027-01-01T08:05:00Z"]),
            // A wrapping range of hours, 20 to 2: from midnight, 00:30 (30 minutes in), …, 02:30, then 20:00.
            (
                "cron(0/30 20-2 ? * MON-FRI *)",
                &[
                    "2027-01-01T00:30:00Z",
                    "2027-01-01T01:00:00Z",
                    "2027-01-01T01:30:00Z",
                    "2027-01-01T02:00:00Z",
                    "2027-01-01T02:30:00Z",
                    "2027-01-01T20:00:00Z",
                ],
            ),
            // 10:15 on the last Friday of each month, 2019 to 2022 in the docs; here 2027 to 2028.
            ("cron(15 10 ? * 6L 2027-2028)", &["2027-01-29T10:15:00Z", "2027-02-26T10:15:00Z"]),
        ];
        for (expr, want) in cases {
            assert_eq!(fires(expr, &utc(), from, want.len()), want.to_vec(), "{expr}");
        }
    }

    #[test]
    fn l_w_and_hash_pick_the_days_quartz_and_aws_mean() {
        let from = "2027-01-01T00:00:00Z";
        // The last day of each month (February 2028 is a leap month).
        assert_eq!(
            fires("cron(0 0 L * ? 2028)", &utc(), from, 3),
            ["2028-01-31T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"]
        );
        // The weekday nearest the 1st: Saturday 2028-01-01 → Monday the 3rd (not December's Friday).
        assert_eq!(fires("cron(0 9 1W * ? 2028)", &utc(), from, 1), ["2028-01-03T09:00:00Z"]);
        // Nearest the 15th: Saturday 2027-05-15 → Friday the 14th; Sunday 2027-08-15 → Monday the 16th.
        assert_eq!(fires("cron(0 9 15W 5 ? 2027)", &utc(), from, 1), ["2027-05-14T09:00:00Z"]);
        assert_eq!(fires("cron(0 9 15W 8 ? 2027)", &utc(), from, 1), ["2027-08-16T09:00:00Z"]);
        // The last weekday: 2027-01-31 is a Sunday → Friday the 29th.
        assert_eq!(fires("cron(0 9 LW * ? *)", &utc(), from, 1), ["2027-01-29T09:00:00Z"]);
        // The second Tuesday (3#2), and the third Friday.
        assert_eq!(fires("cron(0 9 ? * 3#2 *)", &utc(), from, 2), ["2027-01-12T09:00:00Z", "2027-02-09T09:00:00Z"]);
        assert_eq!(fires("cron(0 9 ? * FRI#3 *)", &utc(), from, 1), ["2027-01-15T09:00:00Z"]);
        // Sunday is 1, Saturday 7; L alone in day-of-week is Saturday.
        assert_eq!(fires("cron(0 9 ? * 1 *)", &utc(), from, 1), ["2027-01-03T09:00:00Z"]);
        assert_eq!(fires("cron(0 9 ? * L *)", &utc(), from, 1), ["2027-01-02T09:00:00Z"]);
        // A year that is over fires no more.
        assert!(fires("cron(0 9 * * ? 2026)", &utc(), from, 1).is_empty());
    }

    #[test]
    fn expressions_aws_accepts_parse() {
        for ok in [
            "cron(0-15/1 8-8 ? * 2,3,4,5,6,7 *)",
            "cron(30-30 13-13 ? * 2,4,6 *)",
            "cron(1-31/30 1-1 ? * 1,7 *)",
            "cron(0 18 ? * MON-FRI *)",
            "cron(*/15 * * * ? *)",
            "cron(0-59/10 0-23/2 ? * * *)",
            "cron(5,35 14 * * ? *)",
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 days)",
            "rate(12 hours)",
            "at(2022-12-31T23:59:59)",
        ] {
            assert!(Expression::parse(ok).is_ok(), "{ok}: {:?}", Expression::parse(ok));
        }
    }

    #[test]
    fn expressions_aws_refuses_are_refused_with_scheduler_s_sentence_and_why() {
        for bad in [
            "cron(0 1 * * * *)",
            "cron(7 20 * * NOT *)",
            "cron(INVALID)",
            "cron(0 dummy ? * MON-FRI *)",
            "cron(71 8 1 * ? *)",
            "cron()",
            "cron(0 1 ? * ? *)",
            "cron(0 1 1 13 ? *)",
            "cron(0 1 ? * 8 *)",
            "cron(0 1 ? * 2#6 *)",
            "cron(0 1 1 * ? 2200)",
            "cron(0/0 1 1 * ? *)",
            "rate(10 seconds)",
            "rate(10 years)",
            "rate()",
            "rate(10)",
            "rate(10 minutess)",
            "rate(foo minutes)",
            "rate(-10 minutes)",
            "rate(0 minutes)",
            "rate( 10 minutes )",
            " rate(10 minutes)",
            "at(2021-12-31T23:59:59Z)",
            "at(2021-12-31)",
            "at(2021-02-30T00:00:00)",
            "every day",
        ] {
            let e = Expression::parse(bad).expect_err(bad);
            let text = e.to_string();
            assert!(text.starts_with(&format!("Invalid Schedule Expression {bad}. ")), "{text}");
            assert!(e.why.len() > 10, "says why: {text}");
        }
        let e = Expression::parse("cron(71 8 1 * ? *)").unwrap_err();
        assert!(e.why.contains("minutes") && e.why.contains("0-59"), "{e}");
        let e = Expression::parse("cron(0 1 * * * *)").unwrap_err();
        assert!(e.why.contains("'?'"), "{e}");
    }

    #[test]
    fn rates_count_from_the_start_and_stop_at_the_end() {
        let e = Expression::parse("rate(5 minutes)").unwrap();
        let start = ms("2027-01-01T00:00:00Z");
        assert_eq!(e.next_after(&utc(), start - 1, start, None), Some(start), "the first fire is the start");
        assert_eq!(e.next_after(&utc(), start, start, None), Some(start + 300_000));
        assert_eq!(e.next_after(&utc(), start + 299_999, start, None), Some(start + 300_000));
        assert_eq!(e.next_after(&utc(), start + 300_000, start, None), Some(start + 600_000));
        assert_eq!(e.next_after(&utc(), start, start, Some(start + 299_999)), None, "past the end");
        // A day is 24 hours, across a DST change too.
        let la = TimeZone::posix("PST8PDT,M3.2.0,M11.1.0").unwrap();
        let d = Expression::parse("rate(1 day)").unwrap();
        let before = ms("2027-03-13T10:00:00Z");
        assert_eq!(d.next_after(&la, before, before, None), Some(before + 86_400_000));
    }

    #[test]
    fn a_one_time_schedule_fires_once_in_its_zone() {
        let e = Expression::parse("at(2027-01-01T09:00:00)").unwrap();
        let ny = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        let at = ms("2027-01-01T14:00:00Z");
        assert_eq!(e.next_after(&ny, at - 1, 0, None), Some(at));
        assert_eq!(e.next_after(&ny, at, 0, None), None, "once");
        assert!(e.is_one_time());
        // The start and end do not apply to it, as on Scheduler.
        assert_eq!(e.next_after(&ny, 0, at + 1, Some(0)), Some(at));
    }

    #[test]
    fn daylight_saving_skips_the_missing_time_and_fires_a_repeated_one_once() {
        // Scheduler's own example: cron(30 2 * * ? *) in Los Angeles.
        let la = TimeZone::posix("PST8PDT,M3.2.0,M11.1.0").unwrap();
        // 2027-03-14: 02:00 → 03:00; 02:30 does not exist that day.
        assert_eq!(
            fires("cron(30 2 * * ? *)", &la, "2027-03-13T00:00:00Z", 3),
            ["2027-03-13T10:30:00Z", "2027-03-15T09:30:00Z", "2027-03-16T09:30:00Z"]
        );
        // 2027-11-07: 02:00 → 01:00; 01:30 happens twice and fires the first time (PDT) only.
        assert_eq!(
            fires("cron(30 1 * * ? *)", &la, "2027-11-06T00:00:00Z", 3),
            ["2027-11-06T08:30:00Z", "2027-11-07T08:30:00Z", "2027-11-08T09:30:00Z"]
        );
        // Every 15 minutes through the repeated hour: the second pass fires nothing.
        let through = fires("cron(0/15 * * * ? *)", &la, "2027-11-07T08:40:00Z", 6);
        assert_eq!(
            through,
            [
                "2027-11-07T08:45:00Z",
                "2027-11-07T10:00:00Z",
                "2027-11-07T10:15:00Z",
                "2027-11-07T10:30:00Z",
                "2027-11-07T10:45:00Z",
                "2027-11-07T11:00:00Z"
            ]
        );
    }

    #[test]
    fn names_and_ranges_follow_scheduler_s_model() {
        assert!(check_name("nightly-report_v1.2").is_ok());
        for bad in ["", "has space", "slash/", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(check_range("maximumRetryAttempts", 185, 0, MAX_RETRIES), Ok(185));
        let e = check_range("maximumRetryAttempts", 186, 0, MAX_RETRIES).unwrap_err();
        assert!(e.contains("'186' at 'maximumRetryAttempts'") && e.contains("less than or equal to 185"), "{e}");
        assert!(check_range("maximumEventAgeInSeconds", 59, MIN_EVENT_AGE_S, MAX_EVENT_AGE_S)
            .unwrap_err()
            .contains("greater"));
    }

    #[test]
    fn late_fires_are_delivered_only_within_the_maximum_age() {
        assert!(deliver_late(1_000, 61_000, 60));
        assert!(!deliver_late(1_000, 61_001, 60));
    }

    #[test]
    fn a_flexible_window_spreads_fires_within_it() {
        assert_eq!(window_delay_ms(0, 12345), 0);
        for seed in [0, 1, 59_999, 60_000, u64::MAX] {
            assert!((0..60_000).contains(&window_delay_ms(1, seed)));
        }
        assert_eq!(window_delay_ms(15, 7), window_delay_ms(15, 7), "the same every time");
    }

    #[test]
    fn a_fire_s_payload_is_the_input_with_its_context_or_scheduler_s_scheduled_event() {
        let fire = Fire {
            schedule_arn: "arn:aws:scheduler:us-east-1:123456789012:schedule/default/nightly",
            id: "f-1",
            scheduled_ms: ms("2022-03-22T18:59:43.250Z"),
            attempt: 1,
            account: "123456789012",
            region: "us-east-1",
        };
        let input = r#"{"arn":"<aws.scheduler.schedule-arn>","at":"<aws.scheduler.scheduled-time>","id":"<aws.scheduler.execution-id>","n":<aws.scheduler.attempt-number>}"#;
        let v: serde_json::Value = serde_json::from_str(&payload(Some(input), &fire)).unwrap();
        assert_eq!(v, serde_json::json!({"arn": fire.schedule_arn, "at": "2022-03-22T18:59:43Z", "id": "f-1", "n": 1}));
        let v: serde_json::Value = serde_json::from_str(&payload(None, &fire)).unwrap();
        assert_eq!(v["detail-type"], "Scheduled Event");
        assert_eq!(
            (&v["id"], &v["time"], &v["detail"]),
            (&serde_json::json!("f-1"), &serde_json::json!("2022-03-22T18:59:43Z"), &serde_json::json!("{}"))
        );
        assert_eq!(v["resources"][0], fire.schedule_arn);
    }
}
