//! Timestamps as microseconds since the Unix epoch, and the text forms the hub reads and writes
//!
//! Every time that comes from outside (query parameters, ingested lines, vendor records, webhook
//! bodies, cursors) is checked against one range, [`MIN_TIME`]..=[`MAX_TIME`]
//! (1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z). Inside it, sums and differences of
//! times, durations of up to [`MAX_TIME`] and histogram bucket sizes cannot overflow an `i64`,
//! so the code downstream can do plain arithmetic; outside it, the input is refused by name.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Microseconds since 1970-01-01T00:00:00Z. The store's keys and rollups are built on it.
pub type Micros = i64;

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MINUTE: i64 = 60 * MICROS_PER_SEC;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// The earliest time accepted from outside: 1970-01-01T00:00:00Z. Audit events are not older.
pub const MIN_TIME: Micros = 0;
/// The latest time accepted from outside: 9999-12-31T23:59:59.999999Z, the last instant RFC 3339
/// can write with a four-digit year.
pub const MAX_TIME: Micros = 253_402_300_799_999_999;
/// The accepted range, as shown in error messages.
pub const TIME_RANGE: &str = "1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z";

/// Why a time given from outside was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeInputError {
    #[error("expected an RFC 3339 time or a duration ago such as 15m, 1h, 7d")]
    Malformed,
    #[error("outside the accepted range {TIME_RANGE}")]
    OutOfRange,
}

/// `t` if it lies in [`MIN_TIME`]..=[`MAX_TIME`].
pub fn in_range(t: Micros) -> Option<Micros> {
    (MIN_TIME..=MAX_TIME).contains(&t).then_some(t)
}

/// Parses an RFC 3339 time given from outside and checks it is in the accepted range.
pub fn parse_rfc3339_in_range(s: &str) -> Result<Micros, TimeInputError> {
    let t = parse_rfc3339(s).ok_or(TimeInputError::Malformed)?;
    in_range(t).ok_or(TimeInputError::OutOfRange)
}

pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// Formats as UTC RFC 3339 with six fraction digits: `2024-08-13T15:58:20.353000Z`.
pub fn format_micros(t: Micros) -> String {
    match Utc.timestamp_micros(t).single() {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => "1970-01-01T00:00:00.000000Z".to_string(),
    }
}

/// Parses RFC 3339 with any offset and any fraction (nanoseconds are truncated to micros).
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    let dt = DateTime::parse_from_rfc3339(s.trim()).ok()?;
    Some(dt.with_timezone(&Utc).timestamp_micros())
}

/// Parses a short duration such as `90s`, `15m`, `1h`, `7d`, `2w` into micros.
pub fn parse_short_duration(s: &str) -> Option<Micros> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let unit_micros = match unit {
        "s" => MICROS_PER_SEC,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => return None,
    };
    n.checked_mul(unit_micros)
}

/// A point in time given as RFC 3339, or as a duration before `now` (`1h` = an hour ago), in the
/// accepted range. A duration reaching before 1970 is out of range, however long it is.
pub fn parse_time_or_ago(s: &str, now: Micros) -> Result<Micros, TimeInputError> {
    if let Some(t) = parse_rfc3339(s) {
        return in_range(t).ok_or(TimeInputError::OutOfRange);
    }
    let s = s.trim();
    let is_duration = s.len() > 1
        && s.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && matches!(s.as_bytes()[s.len() - 1], b's' | b'm' | b'h' | b'd' | b'w')
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if !is_duration {
        return Err(TimeInputError::Malformed);
    }
    // a number too large for i64 micros is a duration too, just one reaching before 1970
    parse_short_duration(s)
        .and_then(|d| now.checked_sub(d))
        .and_then(in_range)
        .ok_or(TimeInputError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_micro_fraction() {
        let t = parse_rfc3339("2024-08-13T15:58:20.353Z").expect("valid");
        assert_eq!(format_micros(t), "2024-08-13T15:58:20.353000Z");
        let graph = parse_rfc3339("2018-01-09T21:20:02.7215374Z").expect("7 digits");
        assert_eq!(format_micros(graph), "2018-01-09T21:20:02.721537Z");
        let offset = parse_rfc3339("2023-03-15T16:33:50-03:00").expect("offset");
        assert_eq!(format_micros(offset), "2023-03-15T19:33:50.000000Z");
    }

    #[test]
    fn relative_times() {
        assert_eq!(parse_time_or_ago("1h", 10 * HOUR), Ok(9 * HOUR));
        assert_eq!(parse_short_duration("7d"), Some(7 * DAY));
        assert_eq!(parse_short_duration("h"), None);
        assert_eq!(parse_short_duration("5y"), None);
    }

    #[test]
    fn times_outside_the_range_are_refused_without_overflow() {
        let now = parse_rfc3339("2024-05-01T00:00:00Z").expect("valid");
        assert_eq!(
            parse_time_or_ago("9223372036854s", now),
            Err(TimeInputError::OutOfRange)
        );
        assert_eq!(
            parse_time_or_ago("99999999999999999999999d", now),
            Err(TimeInputError::OutOfRange)
        );
        assert_eq!(
            parse_time_or_ago("9223372036854775807s", i64::MIN),
            Err(TimeInputError::OutOfRange)
        );
        assert_eq!(
            parse_time_or_ago("1969-12-31T23:59:59Z", now),
            Err(TimeInputError::OutOfRange)
        );
        assert_eq!(
            parse_time_or_ago("0000-01-01T00:00:00Z", now),
            Err(TimeInputError::OutOfRange)
        );
        assert_eq!(
            parse_time_or_ago("9999-12-31T23:59:59.999999Z", now),
            Ok(MAX_TIME)
        );
        assert_eq!(
            parse_time_or_ago("9999-12-31T23:59:59-01:00", now),
            Err(TimeInputError::OutOfRange)
        );
        assert_eq!(parse_time_or_ago("1970-01-01T00:00:00Z", now), Ok(MIN_TIME));
        assert_eq!(
            parse_time_or_ago("soon", now),
            Err(TimeInputError::Malformed)
        );
        assert_eq!(parse_time_or_ago("5y", now), Err(TimeInputError::Malformed));
        assert_eq!(
            parse_time_or_ago("-5s", now),
            Err(TimeInputError::Malformed)
        );
        assert_eq!(format_micros(MAX_TIME), "9999-12-31T23:59:59.999999Z");
    }
}
