//! The timeline's query language: request parameters (from the API or the CLI) validated into a
//! store `Filter`, one place for both so they cannot drift apart

use std::collections::HashMap;

use crate::schema::{Action, Category, Outcome};
use crate::store::query::{BucketSize, Filter, Position};
use crate::store::Field;
use crate::time::{
    in_range, parse_time_or_ago, Micros, TimeInputError, DAY, HOUR, MAX_TIME, MIN_TIME,
};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Most buckets one histogram may have.
pub const MAX_BUCKETS: i64 = 10_000;

/// A parameter that is not acceptable, named so the caller can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        field: field.to_string(),
        message: message.into(),
    }
}

const FILTER_PARAMS: &[&str] = &[
    "since",
    "until",
    "integration",
    "connector",
    "actor",
    "action",
    "category",
    "outcome",
    "event_type",
    "target",
    "ip",
    "q",
];

/// Filters plus the endpoint's own parameters (`limit`, `cursor`, `bucket`, ...).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub filter: Filter,
    pub extra: HashMap<String, String>,
}

/// Parses query pairs. `extra` names the endpoint-specific parameters accepted besides filters;
/// anything else is an error, so a typo never silently widens a query.
pub fn parse(
    pairs: &[(String, String)],
    extra: &[&str],
    now: Micros,
) -> Result<Request, ParamError> {
    let mut request = Request::default();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in pairs {
        if seen.contains(&key.as_str()) {
            return Err(invalid(key, "given more than once"));
        }
        seen.push(key);
        let value = value.trim();
        match key.as_str() {
            "since" => request.filter.since = Some(parse_time(key, value, now)?),
            "until" => request.filter.until = Some(parse_time(key, value, now)?),
            "action" => request.filter.add(
                Field::Action,
                check_enum(key, value, Action::parse, Action::expected)?,
            ),
            "category" => request.filter.add(
                Field::Category,
                check_enum(key, value, Category::parse, Category::expected)?,
            ),
            "outcome" => request.filter.add(
                Field::Outcome,
                check_enum(key, value, Outcome::parse, Outcome::expected)?,
            ),
            "q" => {
                let before = request.filter.fields.len();
                request.filter.add(Field::Token, value);
                if request.filter.fields.len() == before {
                    return Err(invalid(
                        key,
                        "needs at least one word of two or more letters or digits",
                    ));
                }
            }
            k if FILTER_PARAMS.contains(&k) => {
                if value.is_empty() {
                    return Err(invalid(key, "must not be empty"));
                }
                let field = match k {
                    "integration" => Field::Integration,
                    "connector" => Field::Connector,
                    "actor" => Field::Actor,
                    "event_type" => Field::EventType,
                    "target" => Field::Target,
                    _ => Field::Ip,
                };
                request.filter.add(field, value);
            }
            k if extra.contains(&k) => {
                request.extra.insert(k.to_string(), value.to_string());
            }
            other => {
                let mut known: Vec<&str> = FILTER_PARAMS.to_vec();
                known.extend_from_slice(extra);
                return Err(invalid(
                    other,
                    format!("unknown parameter; known: {}", known.join(", ")),
                ));
            }
        }
    }
    if let (Some(since), Some(until)) = (request.filter.since, request.filter.until) {
        if since >= until {
            return Err(invalid("since", "must be before `until`"));
        }
    }
    Ok(request)
}

fn parse_time(field: &str, value: &str, now: Micros) -> Result<Micros, ParamError> {
    // the value is echoed back: keep an absurdly long one from making the error huge
    let shown: String = value.chars().take(64).collect();
    parse_time_or_ago(value, now).map_err(|e| match e {
        TimeInputError::Malformed => invalid(
            field,
            format!(
                "expected an RFC 3339 time or a duration ago such as 15m, 1h, 7d; got {shown:?}"
            ),
        ),
        TimeInputError::OutOfRange => invalid(field, format!("{e}; got {shown:?}")),
    })
}

fn check_enum<'a, T>(
    field: &str,
    value: &'a str,
    parse: fn(&str) -> Option<T>,
    expected: fn() -> String,
) -> Result<&'a str, ParamError> {
    match parse(value) {
        Some(_) => Ok(value),
        None => Err(invalid(
            field,
            format!("expected one of {}, got {value:?}", expected()),
        )),
    }
}

impl Request {
    pub fn limit(&self) -> Result<usize, ParamError> {
        match self.extra.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(invalid(
                    "limit",
                    format!("expected a whole number from 1 to {MAX_LIMIT}, got {v:?}"),
                )),
            },
        }
    }

    pub fn cursor(&self) -> Result<Option<Position>, ParamError> {
        match self.extra.get("cursor") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Position::decode(v)
                .filter(|p| in_range(p.time).is_some())
                .map(Some)
                .ok_or_else(|| invalid("cursor", "not a cursor this hub issued")),
        }
    }
}

/// The [since, until) range a histogram covers: the filter's, or a default window per bucket
/// size ending now; refused when it would need more than [`MAX_BUCKETS`] buckets.
pub fn histogram_range(
    filter: &Filter,
    size: BucketSize,
    now: Micros,
) -> Result<(Micros, Micros), ParamError> {
    // `since` and `until` were checked to lie in 1970..=9999 (crate::time), so the arithmetic
    // below cannot overflow; it is checked anyway, so that no input can make it wrap
    let until = filter
        .until
        .unwrap_or_else(|| now.saturating_add(1).clamp(MIN_TIME, MAX_TIME));
    let default_window = match size {
        BucketSize::Minute => 2 * HOUR,
        BucketSize::FiveMinutes => 12 * HOUR,
        BucketSize::Hour => 7 * DAY,
        BucketSize::Day => 90 * DAY,
    };
    let since = filter
        .since
        .unwrap_or_else(|| until.saturating_sub(default_window).max(MIN_TIME));
    if since >= until {
        return Err(invalid(
            "since",
            "must be before `until` (which defaults to now)",
        ));
    }
    let buckets_needed = until
        .checked_sub(since)
        .map(|span| span / size.micros())
        .filter(|n| *n <= MAX_BUCKETS);
    if buckets_needed.is_none() {
        return Err(invalid(
            "bucket",
            format!("the range would need more than {MAX_BUCKETS} buckets; use a larger bucket or a shorter range"),
        ));
    }
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rejects_what_would_silently_widen_a_query() {
        let e = parse(&pairs(&[("actr", "alice")]), &["limit"], 0).expect_err("typo");
        assert_eq!(e.field, "actr");
        let e = parse(&pairs(&[("action", "jump")]), &[], 0).expect_err("bad enum");
        assert!(e.message.contains("expected one of create"));
        let e = parse(&pairs(&[("q", "a")]), &[], 0).expect_err("no token");
        assert_eq!(e.field, "q");
        let r = parse(
            &pairs(&[("since", "1h"), ("limit", "5")]),
            &["limit"],
            7_200_000_000,
        )
        .expect("valid");
        assert_eq!(r.filter.since, Some(3_600_000_000));
        assert_eq!(r.limit(), Ok(5));
        let r = parse(&pairs(&[("limit", "5000")]), &["limit"], 0).expect("parses");
        assert!(r.limit().is_err());
    }

    #[test]
    fn times_outside_1970_to_9999_name_their_field() {
        let now = 1_714_521_600_000_000;
        let e = parse(&pairs(&[("since", "9223372036854s")]), &[], now).expect_err("too far");
        assert_eq!(e.field, "since");
        assert!(e.message.contains("1970-01-01T00:00:00Z"), "{}", e.message);
        let e = parse(&pairs(&[("until", "10000-01-01T00:00:00Z")]), &[], now).expect_err("bad");
        assert_eq!(e.field, "until");
        let far = Position {
            time: i64::MIN,
            seq: 0,
        }
        .encode();
        let r = parse(&pairs(&[("cursor", &far)]), &["cursor"], now).expect("parses");
        assert_eq!(r.cursor().expect_err("out of range").field, "cursor");
    }
}
