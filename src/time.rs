//! Timestamps as microseconds since the Unix epoch, and the text forms the hub reads and writes

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Microseconds since 1970-01-01T00:00:00Z. The store's keys and rollups are built on it.
pub type Micros = i64;

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MINUTE: i64 = 60 * MICROS_PER_SEC;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

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

/// A point in time given as RFC 3339, or as a duration before `now` (`1h` = an hour ago).
pub fn parse_time_or_ago(s: &str, now: Micros) -> Option<Micros> {
    parse_rfc3339(s).or_else(|| parse_short_duration(s).map(|d| now - d))
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
        assert_eq!(parse_time_or_ago("1h", 10 * HOUR), Some(9 * HOUR));
        assert_eq!(parse_short_duration("7d"), Some(7 * DAY));
        assert_eq!(parse_short_duration("h"), None);
        assert_eq!(parse_short_duration("5y"), None);
    }
}
