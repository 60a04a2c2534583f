//! Calendar periods (today, this week, this month) in a named time zone, as UTC instants: what
//! "today" means depends on where the reader is.

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::time::{Micros, HOUR};

/// A [start, end) range of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: Micros,
    pub end: Micros,
}

/// The calendar periods holding an instant, in a zone. Weeks start on Monday (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub today: Period,
    pub week: Period,
    pub month: Period,
}

/// Longest zone name accepted (the longest IANA name has 32 characters).
pub const MAX_ZONE_LEN: usize = 64;

/// An IANA zone name (`Europe/Paris`, `UTC`), `None` for anything else.
pub fn parse_zone(name: &str) -> Option<Tz> {
    if name.is_empty() || name.len() > MAX_ZONE_LEN {
        return None;
    }
    name.parse::<Tz>().ok()
}

/// The first instant of `date` in `tz`: its midnight, or where a zone skips midnight (a
/// daylight-saving change at 00:00), the first hour of that date that exists.
fn start_of(tz: Tz, date: NaiveDate) -> Micros {
    for hour in 0..24 {
        let Some(local) = date.and_hms_opt(hour, 0, 0) else {
            continue;
        };
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.timestamp_micros();
        }
    }
    // no hour of the date exists in the zone (only historic skipped days): its UTC midnight
    date.and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp_micros())
        .unwrap_or(0)
}

pub fn periods(tz: Tz, now: Micros) -> Periods {
    let here = chrono::DateTime::from_timestamp_micros(now)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive();
    let next = |d: NaiveDate, days: u64| d.checked_add_days(chrono::Days::new(days)).unwrap_or(d);
    let monday = here
        .checked_sub_days(chrono::Days::new(u64::from(
            here.weekday().num_days_from_monday(),
        )))
        .unwrap_or(here);
    let first = here.with_day(1).unwrap_or(here);
    let next_month = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or_else(|| next(first, 31));
    let period = |from: NaiveDate, to: NaiveDate| {
        let start = start_of(tz, from);
        Period {
            start,
            end: start_of(tz, to).max(start.saturating_add(HOUR)),
        }
    };
    Periods {
        today: period(here, next(here, 1)),
        week: period(monday, next(monday, 7)),
        month: period(first, next_month),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Micros {
        crate::time::parse_rfc3339(s).expect("time")
    }

    #[test]
    fn periods_follow_the_zone_and_its_daylight_saving() {
        let paris = parse_zone("Europe/Paris").expect("zone");
        // 2024-03-31 (a Sunday) is the day Paris moves to summer time: 23 hours long
        let p = periods(paris, at("2024-03-31T12:00:00Z"));
        assert_eq!(p.today.start, at("2024-03-30T23:00:00Z"));
        assert_eq!(p.today.end, at("2024-03-31T22:00:00Z"));
        assert_eq!(p.week.start, at("2024-03-24T23:00:00Z"));
        assert_eq!(p.week.end, at("2024-03-31T22:00:00Z"));
        assert_eq!(p.month.start, at("2024-02-29T23:00:00Z"));
        assert_eq!(p.month.end, at("2024-03-31T22:00:00Z"));
        // 22:30 UTC on the 31st is already April 1st, a Monday, in Paris
        let p = periods(paris, at("2024-03-31T22:30:00Z"));
        assert_eq!(p.today.start, at("2024-03-31T22:00:00Z"));
        assert_eq!(p.week.start, at("2024-03-31T22:00:00Z"));
        assert_eq!(p.month.start, at("2024-03-31T22:00:00Z"));
        assert_eq!(p.month.end, at("2024-04-30T22:00:00Z"));
        let utc = periods(Tz::UTC, at("2024-03-31T22:30:00Z"));
        assert_eq!(utc.today.start, at("2024-03-31T00:00:00Z"));
        assert_eq!(utc.week.start, at("2024-03-25T00:00:00Z"));
    }

    #[test]
    fn a_zone_that_skips_midnight_starts_the_day_at_its_first_hour() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2024-09-08
        let santiago = parse_zone("America/Santiago").expect("zone");
        let p = periods(santiago, at("2024-09-08T15:00:00Z"));
        assert_eq!(p.today.start, at("2024-09-08T04:00:00Z"));
        assert_eq!(p.today.end, at("2024-09-09T03:00:00Z"));
    }

    #[test]
    fn only_iana_names_are_zones() {
        assert!(parse_zone("Asia/Kolkata").is_some());
        assert!(parse_zone("UTC").is_some());
        for bad in ["", "Mars/Olympus", "+02:00", &"A".repeat(100)] {
            assert!(parse_zone(bad).is_none(), "{bad}");
        }
    }
}
