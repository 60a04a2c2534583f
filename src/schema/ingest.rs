//! Validation of one posted line into an `Event`, with errors that name the field at fault
//!
//! The rules mirror `$defs/ingest_event` in `schemas/event.schema.json`; a test feeds the same
//! good and bad lines to both and checks that they agree.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    Action, Actor, ActorType, Category, Change, Event, IntegrationRef, Location, Outcome, Severity,
    Target,
};
use crate::time::{parse_rfc3339_in_range, Micros, TimeInputError};

pub const MAX_STRING_LEN: usize = 8192;
const MAX_SHORT_LEN: usize = 256;
const MAX_LIST_LEN: usize = 256;

/// Why a line was rejected: a human sentence that starts with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError(pub String);

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, LineError> {
    Err(LineError(msg.into()))
}

/// Fields the hub assigns itself: accepted on input (so an export can be re-ingested) and ignored.
const HUB_ASSIGNED: &[&str] = &["id", "ingested_at", "integration"];
const TOP_LEVEL: &[&str] = &[
    "time",
    "source_id",
    "event_type",
    "category",
    "action",
    "outcome",
    "actor",
    "targets",
    "changes",
    "session_id",
    "description",
    "severity",
    "raw",
];

/// Validates one posted event. `raw_line` is the exact text of the line when the body was NDJSON,
/// kept as the event's `raw` payload unless the line carries its own `raw`.
pub fn parse_ingest_line(
    value: &Value,
    raw_line: Option<&str>,
    integration: &IntegrationRef,
    ingested_at: Micros,
) -> Result<Event, LineError> {
    let Value::Object(obj) = value else {
        return err(format!(
            "line must be a JSON object, got {}",
            kind_of(value)
        ));
    };
    for key in obj.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) && !HUB_ASSIGNED.contains(&key.as_str()) {
            return err(format!("unknown field `{key}`"));
        }
    }
    let time_text = required_string(obj, "time", "time", MAX_SHORT_LEN)?;
    let time = match parse_rfc3339_in_range(&time_text) {
        Ok(t) => t,
        Err(TimeInputError::Malformed) => {
            return err(format!("`time`: not an RFC 3339 timestamp: {time_text:?}"))
        }
        Err(e @ TimeInputError::OutOfRange) => return err(format!("`time`: {e}: {time_text:?}")),
    };
    let event_type = required_string(obj, "event_type", "event_type", MAX_SHORT_LEN)?;
    let action = enum_field(obj, "action", "action", Action::parse, Action::expected)?
        .ok_or_else(|| LineError("`action` is required".into()))?;
    let category = enum_field(
        obj,
        "category",
        "category",
        Category::parse,
        Category::expected,
    )?
    .unwrap_or(Category::Other);
    let outcome = enum_field(obj, "outcome", "outcome", Outcome::parse, Outcome::expected)?
        .unwrap_or(Outcome::Unknown);
    let severity = enum_field(
        obj,
        "severity",
        "severity",
        Severity::parse,
        Severity::expected,
    )?
    .unwrap_or(Severity::Info);

    let actor = match obj.get("actor") {
        Some(Value::Object(a)) => parse_actor(a)?,
        None | Some(Value::Null) => return err("`actor.id` is required"),
        Some(other) => {
            return err(format!(
                "`actor`: expected an object, got {}",
                kind_of(other)
            ))
        }
    };
    let targets = list_field(obj, "targets", parse_target)?;
    let changes = list_field(obj, "changes", parse_change)?;
    let session_id = optional_string(obj, "session_id", "session_id", MAX_STRING_LEN)?;
    let description = optional_string(obj, "description", "description", MAX_STRING_LEN)?;

    let raw_text = match (obj.get("raw"), raw_line) {
        (Some(Value::Null) | None, Some(line)) => single_line_json(line.trim()).into_owned(),
        (Some(Value::Null) | None, None) => value.to_string(),
        (Some(raw), _) => raw.to_string(),
    };
    let raw = serde_json::value::RawValue::from_string(raw_text)
        .map_err(|e| LineError(format!("`raw`: not valid JSON: {e}")))?;

    let source_id = match optional_string(obj, "source_id", "source_id", MAX_SHORT_LEN)? {
        Some(s) if s.is_empty() => return err("`source_id`: must not be empty"),
        Some(s) => s,
        None => content_hash(value),
    };

    Ok(Event {
        id: String::new(),
        time,
        ingested_at,
        integration: integration.clone(),
        source_id,
        event_type,
        category,
        action,
        outcome,
        actor,
        targets,
        changes,
        session_id,
        description,
        severity,
        raw,
    })
}

/// The common case, fast: a line that is valid as it stands, read straight into typed fields
/// without building a JSON tree. `None` for anything else (a missing or wrong field, no
/// `source_id`, a duplicate key...): the caller then runs `parse_ingest_line`, which applies the
/// same rules and names the field at fault. Both accept exactly the same lines.
pub fn parse_ingest_line_fast(
    text: &str,
    integration: &IntegrationRef,
    ingested_at: Micros,
) -> Option<Event> {
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    type Text<'a> = Option<Cow<'a, str>>;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line<'a> {
        #[serde(borrow)]
        time: Text<'a>,
        #[serde(borrow)]
        source_id: Text<'a>,
        #[serde(borrow)]
        event_type: Text<'a>,
        #[serde(borrow)]
        category: Text<'a>,
        #[serde(borrow)]
        action: Text<'a>,
        #[serde(borrow)]
        outcome: Text<'a>,
        #[serde(borrow)]
        actor: Option<LineActor<'a>>,
        #[serde(borrow)]
        targets: Option<Vec<LineTarget<'a>>>,
        changes: Option<Vec<LineChange>>,
        #[serde(borrow)]
        session_id: Text<'a>,
        #[serde(borrow)]
        description: Text<'a>,
        #[serde(borrow)]
        severity: Text<'a>,
        #[serde(borrow)]
        raw: Option<&'a RawValue>,
        #[allow(dead_code)]
        id: Option<serde::de::IgnoredAny>,
        #[allow(dead_code)]
        ingested_at: Option<serde::de::IgnoredAny>,
        #[allow(dead_code)]
        integration: Option<serde::de::IgnoredAny>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LineActor<'a> {
        #[serde(borrow)]
        id: Text<'a>,
        #[serde(borrow)]
        name: Text<'a>,
        #[serde(borrow)]
        email: Text<'a>,
        #[serde(borrow, rename = "type")]
        kind: Text<'a>,
        #[serde(borrow)]
        ip: Text<'a>,
        #[serde(borrow)]
        user_agent: Text<'a>,
        #[serde(borrow)]
        location: Option<LineLocation<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LineLocation<'a> {
        #[serde(borrow)]
        city: Text<'a>,
        #[serde(borrow)]
        region: Text<'a>,
        #[serde(borrow)]
        country: Text<'a>,
        latitude: Option<f64>,
        longitude: Option<f64>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LineTarget<'a> {
        #[serde(borrow, rename = "type")]
        kind: Text<'a>,
        #[serde(borrow)]
        id: Text<'a>,
        #[serde(borrow)]
        name: Text<'a>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LineChange {
        field: Option<String>,
        old: Option<Value>,
        new: Option<Value>,
    }

    fn short(t: &Text<'_>, max: usize) -> Option<Option<String>> {
        match t {
            None => Some(None),
            Some(s) if s.len() > max => None,
            Some(s) => Some(Some(s.to_string())),
        }
    }
    fn required(t: &Text<'_>, max: usize) -> Option<String> {
        short(t, max)?.filter(|s| !s.is_empty())
    }
    fn enumerated<T>(t: &Text<'_>, parse: fn(&str) -> Option<T>) -> Option<Option<T>> {
        match t {
            None => Some(None),
            Some(s) => parse(s).map(Some),
        }
    }

    let line: Line = serde_json::from_str(text).ok()?;
    let time_text = required(&line.time, MAX_SHORT_LEN)?;
    let time = parse_rfc3339_in_range(&time_text).ok()?;
    let event_type = required(&line.event_type, MAX_SHORT_LEN)?;
    let action = enumerated(&line.action, Action::parse)??;
    let category = enumerated(&line.category, Category::parse)?.unwrap_or(Category::Other);
    let outcome = enumerated(&line.outcome, Outcome::parse)?.unwrap_or(Outcome::Unknown);
    let severity = enumerated(&line.severity, Severity::parse)?.unwrap_or(Severity::Info);
    let a = line.actor.as_ref()?;
    let ip = short(&a.ip, MAX_SHORT_LEN)?;
    if let Some(ip) = &ip {
        ip.parse::<std::net::IpAddr>().ok()?;
    }
    let location = match &a.location {
        None => None,
        Some(l) => Some(Location {
            city: short(&l.city, MAX_SHORT_LEN)?,
            region: short(&l.region, MAX_SHORT_LEN)?,
            country: short(&l.country, MAX_SHORT_LEN)?,
            latitude: l.latitude,
            longitude: l.longitude,
        }),
    };
    let actor = Actor {
        id: required(&a.id, MAX_STRING_LEN)?,
        name: short(&a.name, MAX_STRING_LEN)?,
        email: short(&a.email, MAX_STRING_LEN)?,
        kind: enumerated(&a.kind, ActorType::parse)?.unwrap_or(ActorType::Unknown),
        ip,
        user_agent: short(&a.user_agent, MAX_STRING_LEN)?,
        location,
    };
    let targets = match &line.targets {
        None => Vec::new(),
        Some(list) if list.len() > MAX_LIST_LEN => return None,
        Some(list) => list
            .iter()
            .map(|t| {
                Some(Target {
                    kind: required(&t.kind, MAX_SHORT_LEN)?,
                    id: required(&t.id, MAX_STRING_LEN)?,
                    name: short(&t.name, MAX_STRING_LEN)?,
                })
            })
            .collect::<Option<Vec<_>>>()?,
    };
    let changes = match line.changes {
        None => Vec::new(),
        Some(list) if list.len() > MAX_LIST_LEN => return None,
        Some(list) => list
            .into_iter()
            .map(|c| {
                let field = c
                    .field
                    .filter(|f| !f.is_empty() && f.len() <= MAX_SHORT_LEN)?;
                Some(Change {
                    field,
                    old: c.old.unwrap_or(Value::Null),
                    new: c.new.unwrap_or(Value::Null),
                })
            })
            .collect::<Option<Vec<_>>>()?,
    };
    let source_id = required(&line.source_id, MAX_SHORT_LEN)?;
    let raw_text = match line.raw {
        Some(raw) => raw.get(),
        None => text.trim(),
    };
    // a payload nested deeper than serde_json reads back must meet the validator's limit: more
    // than 100 brackets in all goes the careful way
    if raw_text
        .bytes()
        .filter(|b| matches!(b, b'{' | b'['))
        .count()
        > 100
    {
        return None;
    }
    let raw = RawValue::from_string(single_line_json(raw_text).into_owned()).ok()?;
    Some(Event {
        id: String::new(),
        time,
        ingested_at,
        integration: integration.clone(),
        source_id,
        event_type,
        category,
        action,
        outcome,
        actor,
        targets,
        changes,
        session_id: short(&line.session_id, MAX_STRING_LEN)?,
        description: short(&line.description, MAX_STRING_LEN)?,
        severity,
        raw,
    })
}

/// JSON text with the line breaks and tabs between its tokens removed (those inside strings are
/// escaped already, so every raw one is between tokens): a pretty-printed payload must not split
/// an NDJSON export line.
pub fn single_line_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.bytes().any(|b| matches!(b, b'\n' | b'\r' | b'\t')) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .filter(|c| !matches!(c, '\n' | '\r' | '\t'))
            .collect(),
    )
}

/// `sha256:<hex>` of the line's canonical JSON, with hub-assigned fields left out so that a
/// re-ingested export keeps its identity.
pub fn content_hash(value: &Value) -> String {
    let mut canonical = Vec::with_capacity(512);
    match value {
        Value::Object(obj) => {
            let mut filtered = Map::new();
            for (k, v) in obj {
                if !HUB_ASSIGNED.contains(&k.as_str()) {
                    filtered.insert(k.clone(), v.clone());
                }
            }
            canonical_json(&Value::Object(filtered), &mut canonical);
        }
        other => canonical_json(other, &mut canonical),
    }
    format!("sha256:{}", hex::encode(Sha256::digest(&canonical)))
}

/// Writes JSON with object keys sorted at every level, whatever map type serde_json was built with.
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(obj) => {
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String((*k).clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(&obj[k.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn parse_actor(a: &Map<String, Value>) -> Result<Actor, LineError> {
    for key in a.keys() {
        if ![
            "id",
            "name",
            "email",
            "type",
            "ip",
            "user_agent",
            "location",
        ]
        .contains(&key.as_str())
        {
            return err(format!("unknown field `actor.{key}`"));
        }
    }
    let id = required_string(a, "id", "actor.id", MAX_STRING_LEN)?;
    let ip = optional_string(a, "ip", "actor.ip", MAX_SHORT_LEN)?;
    if let Some(ip) = &ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return err(format!("`actor.ip`: not an IPv4 or IPv6 address: {ip:?}"));
        }
    }
    let location = match a.get("location") {
        None | Some(Value::Null) => None,
        Some(Value::Object(l)) => Some(parse_location(l)?),
        Some(other) => {
            return err(format!(
                "`actor.location`: expected an object, got {}",
                kind_of(other)
            ))
        }
    };
    Ok(Actor {
        id,
        name: optional_string(a, "name", "actor.name", MAX_STRING_LEN)?,
        email: optional_string(a, "email", "actor.email", MAX_STRING_LEN)?,
        kind: enum_field(
            a,
            "type",
            "actor.type",
            ActorType::parse,
            ActorType::expected,
        )?
        .unwrap_or(ActorType::Unknown),
        ip,
        user_agent: optional_string(a, "user_agent", "actor.user_agent", MAX_STRING_LEN)?,
        location,
    })
}

fn parse_location(l: &Map<String, Value>) -> Result<Location, LineError> {
    for key in l.keys() {
        if !["city", "region", "country", "latitude", "longitude"].contains(&key.as_str()) {
            return err(format!("unknown field `actor.location.{key}`"));
        }
    }
    let number = |key: &str| -> Result<Option<f64>, LineError> {
        match l.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => err(format!(
                "`actor.location.{key}`: expected a number, got {}",
                kind_of(other)
            )),
        }
    };
    Ok(Location {
        city: optional_string(l, "city", "actor.location.city", MAX_SHORT_LEN)?,
        region: optional_string(l, "region", "actor.location.region", MAX_SHORT_LEN)?,
        country: optional_string(l, "country", "actor.location.country", MAX_SHORT_LEN)?,
        latitude: number("latitude")?,
        longitude: number("longitude")?,
    })
}

fn parse_target(index: usize, v: &Value) -> Result<Target, LineError> {
    let Value::Object(t) = v else {
        return err(format!(
            "`targets[{index}]`: expected an object, got {}",
            kind_of(v)
        ));
    };
    for key in t.keys() {
        if !["type", "id", "name"].contains(&key.as_str()) {
            return err(format!("unknown field `targets[{index}].{key}`"));
        }
    }
    Ok(Target {
        kind: required_string(t, "type", &format!("targets[{index}].type"), MAX_SHORT_LEN)?,
        id: required_string(t, "id", &format!("targets[{index}].id"), MAX_STRING_LEN)?,
        name: optional_string(t, "name", &format!("targets[{index}].name"), MAX_STRING_LEN)?,
    })
}

fn parse_change(index: usize, v: &Value) -> Result<Change, LineError> {
    let Value::Object(c) = v else {
        return err(format!(
            "`changes[{index}]`: expected an object, got {}",
            kind_of(v)
        ));
    };
    for key in c.keys() {
        if !["field", "old", "new"].contains(&key.as_str()) {
            return err(format!("unknown field `changes[{index}].{key}`"));
        }
    }
    Ok(Change {
        field: required_string(
            c,
            "field",
            &format!("changes[{index}].field"),
            MAX_SHORT_LEN,
        )?,
        old: c.get("old").cloned().unwrap_or(Value::Null),
        new: c.get("new").cloned().unwrap_or(Value::Null),
    })
}

fn list_field<T>(
    obj: &Map<String, Value>,
    key: &str,
    parse: impl Fn(usize, &Value) -> Result<T, LineError>,
) -> Result<Vec<T>, LineError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() > MAX_LIST_LEN => err(format!(
            "`{key}`: at most {MAX_LIST_LEN} entries, got {}",
            items.len()
        )),
        Some(Value::Array(items)) => items.iter().enumerate().map(|(i, v)| parse(i, v)).collect(),
        Some(other) => err(format!(
            "`{key}`: expected an array, got {}",
            kind_of(other)
        )),
    }
}

fn required_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    max: usize,
) -> Result<String, LineError> {
    match optional_string(obj, key, path, max)? {
        Some(s) if s.is_empty() => err(format!("`{path}`: must not be empty")),
        Some(s) => Ok(s),
        None => err(format!("`{path}` is required")),
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    max: usize,
) -> Result<Option<String>, LineError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => {
            err(format!("`{path}`: longer than {max} bytes"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => err(format!(
            "`{path}`: expected a string, got {}",
            kind_of(other)
        )),
    }
}

fn enum_field<T>(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    parse: fn(&str) -> Option<T>,
    expected: fn() -> String,
) -> Result<Option<T>, LineError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match parse(s) {
            Some(v) => Ok(Some(v)),
            None => err(format!(
                "`{path}`: expected one of {}, got {s:?}",
                expected()
            )),
        },
        Some(other) => err(format!(
            "`{path}`: expected a string, got {}",
            kind_of(other)
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
