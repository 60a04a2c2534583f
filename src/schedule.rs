//! Cron schedules as integrations write them: 6 fields (the cron crate's form) or Unix 5 fields,
//! checked to fire at all; below the connectors (definitions carry a default schedule) and the
//! scheduler that runs them

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;

/// Parses a cron schedule: 6 fields (`sec min hour dom month dow`, the cron crate's form) or
/// Unix 5 fields (`min hour dom month dow`), which get a `0` seconds field and their numeric
/// day-of-week translated (Unix 0/7 = Sunday, 1 = Monday; the cron crate counts 1 = Sunday).
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let six = match fields.len() {
        5 => {
            let dow = unix_dow_to_cron(fields[4])?;
            format!("0 {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], dow)
        }
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "{text:?} has {n} fields; give 5 (min hour dom month dow) or 6 (sec min hour dom month dow)"
            ))
        }
    };
    let schedule = cron::Schedule::from_str(&six).map_err(|e| format!("{text:?}: {e}"))?;
    if schedule.upcoming(Utc).next().is_none() {
        return Err(format!("{text:?} never fires"));
    }
    Ok(schedule)
}

fn unix_dow_to_cron(field: &str) -> Result<String, String> {
    let map = |s: &str| -> Result<String, String> {
        match s.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(((n % 7) + 1).to_string()),
            Ok(n) => Err(format!("day of week {n} is out of 0-7")),
            Err(_) => Ok(s.to_string()),
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let translated = match range.split_once('-') {
            Some((a, b)) => {
                let (a2, b2) = (map(a)?, map(b)?);
                match (a2.parse::<u32>(), b2.parse::<u32>()) {
                    // Fri-Sun (5-7) becomes 6-1: split across the week's end
                    (Ok(x), Ok(y)) if x > y && step.is_none() => {
                        out.push(format!("{x}-7"));
                        format!("1-{y}")
                    }
                    _ => format!("{a2}-{b2}"),
                }
            }
            None => map(range)?,
        };
        out.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(out.join(","))
}

/// Time between the next two fires, the unit of idle backoff.
pub fn interval(schedule: &cron::Schedule) -> Duration {
    let mut it = schedule.upcoming(Utc);
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(60)),
        _ => Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields() {
        assert!(parse_schedule("*/5 * * * *").is_ok());
        assert!(parse_schedule("*/2 * * * * *").is_ok());
        assert!(parse_schedule("* * *").is_err());
        assert!(parse_schedule("61 * * * *").is_err());
        assert_eq!(
            interval(&parse_schedule("*/5 * * * *").unwrap()),
            Duration::from_secs(300)
        );
        assert_eq!(
            interval(&parse_schedule("* * * * * *").unwrap()),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn unix_day_of_week_means_the_same_day() {
        assert_eq!(unix_dow_to_cron("1").unwrap(), "2"); // Monday
        assert_eq!(unix_dow_to_cron("0").unwrap(), "1"); // Sunday
        assert_eq!(unix_dow_to_cron("7").unwrap(), "1");
        assert_eq!(unix_dow_to_cron("1-5").unwrap(), "2-6");
        assert_eq!(unix_dow_to_cron("5-7").unwrap(), "6-7,1-1");
        assert_eq!(unix_dow_to_cron("MON-FRI").unwrap(), "MON-FRI");
        assert_eq!(unix_dow_to_cron("*").unwrap(), "*");
        // every Monday at 09:00 fires on a Monday
        let s = parse_schedule("0 9 * * 1").unwrap();
        let next = s.upcoming(Utc).next().unwrap();
        assert_eq!(chrono::Datelike::weekday(&next), chrono::Weekday::Mon);
    }
}
