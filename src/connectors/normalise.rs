//! Turning one vendor record into the unified `Event`, driven only by a definition's `[map]`
//!
//! The record's raw JSON is kept byte for byte; the paths are read from a parsed copy.

use serde_json::value::RawValue;
use serde_json::Value;

use super::definition::{Lookup, Mapping, RecordsSpec, Rule, TimeFormat};
use super::path::PathList;
use crate::schema::{
    content_hash, Actor, Change, Event, IntegrationRef, Location, Outcome, Target, MAX_STRING_LEN,
};
use crate::time::Micros;

/// Why a page body or a record could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    #[error("the body is not valid JSON: {0}")]
    Body(String),
    #[error("no array of records at `{0}`")]
    NoRecords(String),
    #[error("the vendor reported an error: {0}")]
    Vendor(String),
    #[error("record {index}: {message}")]
    Record { index: usize, message: String },
    /// Replay asked of a connector whose records do not go through a mapping.
    #[error("{0}")]
    NotReplayable(String),
}

/// The records of one page, each as its exact raw JSON.
pub fn page_records<'a>(
    body: &'a str,
    spec: &RecordsSpec,
) -> Result<Vec<&'a RawValue>, RecordError> {
    if let Some(flag) = &spec.error_flag {
        let parsed: Value =
            serde_json::from_str(body).map_err(|e| RecordError::Body(e.to_string()))?;
        if flag.get(&parsed) == Some(&Value::Bool(false)) {
            let message = spec
                .error_message
                .as_ref()
                .and_then(|p| p.get(&parsed))
                .and_then(Value::as_str)
                .unwrap_or("unspecified")
                .to_string();
            return Err(RecordError::Vendor(message));
        }
    }
    let mut current: &'a RawValue =
        serde_json::from_str(body).map_err(|e| RecordError::Body(e.to_string()))?;
    let mut walked = String::new();
    if let Some(path) = &spec.path {
        for key in path.keys() {
            let object: std::collections::HashMap<String, &'a RawValue> =
                serde_json::from_str(current.get())
                    .map_err(|_| RecordError::NoRecords(walked.clone() + key))?;
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(key);
            current = object
                .get(key)
                .copied()
                .ok_or_else(|| RecordError::NoRecords(walked.clone()))?;
        }
    }
    if current.get() == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(current.get()).map_err(|_| {
        RecordError::NoRecords(if walked.is_empty() {
            "(body)".into()
        } else {
            walked
        })
    })
}

/// The same JSON without insignificant whitespace: keys, their order, numbers and strings are
/// kept byte for byte, so the raw payload stays the vendor's, yet fits on one NDJSON line.
pub fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Most changes taken from one record.
const MAX_CHANGES: usize = 256;

/// Adds a change for each key whose value differs between the two objects.
fn diff_objects(old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    let empty = serde_json::Map::new();
    let old_map = old.and_then(Value::as_object).unwrap_or(&empty);
    let new_map = new.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let before = old_map.get(key).cloned().unwrap_or(Value::Null);
        let after = new_map.get(key).cloned().unwrap_or(Value::Null);
        if before != after && out.len() < MAX_CHANGES {
            out.push(Change {
                field: clip(key.clone()),
                old: before,
                new: after,
            });
        }
    }
}

fn clip(s: String) -> String {
    if s.len() <= MAX_STRING_LEN {
        return s;
    }
    let mut end = MAX_STRING_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn text(list: &Option<PathList>, v: &Value) -> Option<String> {
    list.as_ref().and_then(|l| l.text(v)).map(clip)
}

fn number(list: &Option<PathList>, v: &Value) -> Option<f64> {
    let value = list.as_ref()?.value(v)?;
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn lookup<T: Clone>(l: &Lookup<T>, v: &Value) -> T {
    match l {
        Lookup::Value(t) => t.clone(),
        Lookup::Path {
            path,
            table,
            default,
            parse,
        } => path
            .text(v)
            .and_then(|s| table.get(&s).cloned().or_else(|| parse(&s)))
            .unwrap_or_else(|| default.clone()),
        Lookup::Present { entries, default } => entries
            .iter()
            .find(|(p, _)| match p.get(v) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(_) => true,
            })
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| default.clone()),
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn classify<'a>(rules: &'a [Rule], event_type: &str) -> Option<&'a Rule> {
    rules
        .iter()
        .find(|r| r.patterns.iter().any(|p| glob_match(p, event_type)))
}

/// A vendor's time in the hub's accepted range (1970..=9999, see `crate::time`); `None` when it
/// does not parse in `format` or lies outside the range.
pub fn parse_time(value: &Value, format: TimeFormat) -> Option<Micros> {
    parse_time_unchecked(value, format).and_then(crate::time::in_range)
}

/// A vendor's time as written, any `i64` (the arithmetic is checked, never wraps).
fn parse_time_unchecked(value: &Value, format: TimeFormat) -> Option<Micros> {
    let as_number = || {
        value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .or_else(|| value.as_str().and_then(|s| s.trim().parse::<i64>().ok()))
    };
    match format {
        TimeFormat::EpochMillis => as_number()?.checked_mul(1000),
        TimeFormat::EpochSeconds => match value.as_f64() {
            Some(f) if value.is_f64() => Some((f * 1e6) as i64),
            _ => as_number()?.checked_mul(1_000_000),
        },
        TimeFormat::Rfc3339 => crate::time::parse_rfc3339(value.as_str()?),
        TimeFormat::Iso8601 => {
            let text = value.as_str()?.trim();
            crate::time::parse_rfc3339(text).or_else(|| {
                chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
                    .ok()
                    .map(|d| d.timestamp_micros())
            })
        }
    }
}

/// Normalises one record. Records without a vendor id get a content hash, so a record seen twice
/// is still stored once; a record without a readable time is refused.
pub fn normalise(
    map: &Mapping,
    integration: &IntegrationRef,
    raw: &RawValue,
    index: usize,
    ingested_at: Micros,
) -> Result<Event, RecordError> {
    let record: Value = serde_json::from_str(raw.get()).map_err(|e| RecordError::Record {
        index,
        message: e.to_string(),
    })?;
    if !record.is_object() {
        return Err(RecordError::Record {
            index,
            message: "is not a JSON object".into(),
        });
    }
    let time_value = map.time.value(&record).ok_or_else(|| RecordError::Record {
        index,
        message: "has no time".into(),
    })?;
    let time = parse_time(time_value, map.time_format).ok_or_else(|| {
        // a vendor's value is echoed into an error: keep it short
        let shown: String = time_value.to_string().chars().take(64).collect();
        let message = if parse_time_unchecked(time_value, map.time_format).is_some() {
            format!(
                "time {shown} is outside the accepted range {}",
                crate::time::TIME_RANGE
            )
        } else {
            format!("time {shown} is not {:?}", map.time_format)
        };
        RecordError::Record { index, message }
    })?;
    let joined: Option<Vec<String>> = (!map.source_id_join.is_empty()).then(|| {
        map.source_id_join
            .iter()
            .filter_map(|p| match p.get(&record)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    });
    let source_id = joined
        .filter(|parts| parts.len() == map.source_id_join.len())
        .map(|parts| parts.join("/"))
        .or_else(|| map.source_id.text(&record))
        .map(clip)
        .unwrap_or_else(|| content_hash(&record));
    let event_type = map
        .event_type
        .as_ref()
        .and_then(|p| p.text(&record))
        .or_else(|| map.default_event_type.clone())
        .map(clip)
        .unwrap_or_else(|| "unknown".into());
    let rule = classify(&map.rules, &event_type);
    let outcome = match rule.and_then(|r| r.outcome) {
        Some(o) => o,
        None => match map.outcome.path.as_ref().and_then(|p| p.text(&record)) {
            Some(v) if map.outcome.success.contains(&v) => Outcome::Success,
            Some(v) if map.outcome.failure.contains(&v) => Outcome::Failure,
            _ => map.outcome.default,
        },
    };
    let a = &map.actor;
    let location = Location {
        city: text(&a.city, &record),
        region: text(&a.region, &record),
        country: text(&a.country, &record),
        latitude: number(&a.latitude, &record),
        longitude: number(&a.longitude, &record),
    };
    let actor = Actor {
        // The schema requires an actor id: a record that names none (a system action, or a
        // vendor placeholder) is attributed to `unknown` rather than dropped.
        id: a
            .id
            .text(&record)
            .map(clip)
            .unwrap_or_else(|| "unknown".into()),
        name: text(&a.name, &record),
        email: text(&a.email, &record),
        kind: lookup(&a.kind, &record),
        ip: text(&a.ip, &record),
        user_agent: text(&a.user_agent, &record),
        location: (location != Location::default()).then_some(location),
    };
    let mut targets = Vec::new();
    for spec in &map.targets {
        let elements: Vec<&Value> = match &spec.each {
            None => vec![&record],
            Some(path) => match path.get(&record) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(Value::Object(_)) => path.get(&record).into_iter().collect(),
                _ => Vec::new(),
            },
        };
        for element in elements {
            let Some(id) = spec.id.text(element) else {
                continue;
            };
            let kind = clip(lookup(&spec.kind, element));
            targets.push(Target {
                kind: if kind.is_empty() {
                    "unknown".into()
                } else {
                    kind
                },
                id: clip(id),
                name: text(&spec.name, element),
            });
        }
    }
    let mut changes = Vec::new();
    for spec in &map.changes {
        let elements: Vec<&Value> = match &spec.each {
            None => vec![&record],
            Some(path) => match path.get(&record) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(v @ Value::Object(_)) => vec![v],
                _ => Vec::new(),
            },
        };
        for element in elements {
            match &spec.list {
                None if spec.field.is_some() => {
                    let name = match spec.field.as_ref().and_then(|f| f.get(element)) {
                        Some(Value::String(s)) if !s.is_empty() => s.clone(),
                        _ => continue,
                    };
                    if changes.len() < MAX_CHANGES {
                        changes.push(Change {
                            field: clip(name),
                            old: spec.old.get(element).cloned().unwrap_or(Value::Null),
                            new: spec.new.get(element).cloned().unwrap_or(Value::Null),
                        });
                    }
                }
                None => diff_objects(spec.old.get(element), spec.new.get(element), &mut changes),
                Some((list, field)) => {
                    let Some(Value::Array(items)) = list.get(element) else {
                        continue;
                    };
                    for item in items {
                        let name = match field.get(item) {
                            Some(Value::String(s)) if !s.is_empty() => s.clone(),
                            Some(Value::Number(n)) => n.to_string(),
                            _ => continue,
                        };
                        if changes.len() < MAX_CHANGES {
                            changes.push(Change {
                                field: clip(name),
                                old: spec.old.get(item).cloned().unwrap_or(Value::Null),
                                new: spec.new.get(item).cloned().unwrap_or(Value::Null),
                            });
                        }
                    }
                }
            }
        }
    }
    let raw_box =
        RawValue::from_string(compact_json(raw.get())).map_err(|e| RecordError::Record {
            index,
            message: e.to_string(),
        })?;
    Ok(Event {
        id: String::new(),
        time,
        ingested_at,
        integration: integration.clone(),
        source_id,
        event_type,
        category: rule.map(|r| r.category).unwrap_or(map.default_category),
        action: rule.map(|r| r.action).unwrap_or(map.default_action),
        outcome,
        actor,
        targets,
        changes,
        session_id: text(&map.session_id, &record),
        description: text(&map.description, &record),
        severity: rule
            .and_then(|r| r.severity)
            .unwrap_or_else(|| lookup(&map.severity, &record)),
        raw: raw_box,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_strings_and_order() {
        let pretty = "{\n  \"b\": \"x y\\\" z\",\n  \"a\": [1.50, 2]\n}";
        assert_eq!(compact_json(pretty), "{\"b\":\"x y\\\" z\",\"a\":[1.50,2]}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("org.*", "org.add_member"));
        assert!(glob_match("*.create", "repo.create"));
        assert!(!glob_match("*.create", "repo.create_x"));
        assert!(glob_match("user_*_created", "user_guest_created"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", "ab"));
    }

    #[test]
    fn times() {
        use serde_json::json;
        assert_eq!(
            parse_time(&json!(1606929874512i64), TimeFormat::EpochMillis),
            Some(1_606_929_874_512_000)
        );
        assert_eq!(
            parse_time(&json!(1521214343), TimeFormat::EpochSeconds),
            Some(1_521_214_343_000_000)
        );
        assert_eq!(
            parse_time(&json!("2024-08-13T15:58:20.353Z"), TimeFormat::Rfc3339),
            Some(1_723_564_700_353_000)
        );
        assert_eq!(parse_time(&json!("x"), TimeFormat::EpochMillis), None);
        // outside 1970..=9999, or beyond i64 once scaled: refused, never wrapped or panicked
        for (v, f) in [
            (json!(i64::MAX), TimeFormat::EpochMillis),
            (json!(i64::MIN), TimeFormat::EpochSeconds),
            (json!(-1), TimeFormat::EpochSeconds),
            (json!(1e300), TimeFormat::EpochSeconds),
            (json!(-1e300), TimeFormat::EpochMillis),
            (json!(253_402_300_800i64), TimeFormat::EpochSeconds),
            (json!("9223372036854775807"), TimeFormat::EpochSeconds),
            (json!("1969-12-31T23:59:59Z"), TimeFormat::Rfc3339),
            (json!("0001-01-01T00:00:00+0000"), TimeFormat::Iso8601),
        ] {
            assert_eq!(parse_time(&v, f), None, "{v} as {f:?}");
        }
        assert_eq!(
            parse_time(&json!(253_402_300_799i64), TimeFormat::EpochSeconds),
            Some(crate::time::MAX_TIME - 999_999)
        );
    }
}
