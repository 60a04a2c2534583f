//! Connector definition files (`connectors/<vendor>.toml`): parsed strictly with serde, then
//! validated into the closed types the engine interprets, with errors naming file and key
//!
//! `raw` is the file as serde reads it, `model` the validated types the engine interprets,
//! `validate` the checks between them; this module is the public surface (every type other
//! modules name is re-exported here) and the entry point `parse`.

mod model;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

pub use model::{
    ActorSpec, Auth, ChangesSpec, ClientAuth, Connector, CursorKind, CursorSpec, FieldKind,
    FieldSpec, HttpMethod, JwtBearerSpec, LimitScope, Lookup, Mapping, OAuth2Spec, OffsetUnit,
    Order, OutcomeSpec, Pagination, RateLimitSpec, RecordsSpec, RequestSpec, ResetFormat, Rule,
    SinceSpec, TargetSpec, TimeFormat, TimeParamFormat, WebhookSpec, WEBHOOK_BODY_BYTES_RANGE,
};

use raw::RawDefinition;
use validate::Validator;

/// Why a definition file was refused; `key` is the dotted TOML key at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: `{key}`: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// What a push-only definition leaves out: inert polling tables that are never used (the
/// scheduler does not schedule push-only integrations) and a mapping that `webhook.unified`
/// replaces with the unified-event validator.
const PUSH_ONLY_STUB: &str = r#"
default_schedule = "0 0 0 1 1 *"
default_backfill = "P1D"
[auth]
kind = "header"
header = "X-Trailhub-Push-Only"
value = "push-only"
[request]
path = "/"
[request.since]
param = "since"
template = "{time}"
format = "rfc3339"
[pagination]
kind = "link_header"
[cursor]
kind = "time"
order = "ascending"
overlap = "PT0S"
[rate_limit]
requests_per_minute = 1
default_wait = "PT1M"
[records]
path = ""
[map]
source_id = "source_id"
event_type = "event_type"
default_category = "other"
default_action = "other"
[map.time]
path = "time"
format = "rfc3339"
[map.actor]
id = "actor.id"
[map.outcome]
default = "unknown"
"#;

const POLLING_KEYS: &[&str] = &[
    "default_schedule",
    "default_backfill",
    "auth",
    "request",
    "pagination",
    "cursor",
    "rate_limit",
    "records",
    "map",
];

/// Parses and validates one definition file.
pub fn parse(file: &str, text: &str) -> Result<Connector, DefinitionError> {
    let push_only = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("push_only").and_then(toml::Value::as_bool))
        .unwrap_or(false);
    if push_only {
        return parse_push_only(file, text);
    }
    let raw: RawDefinition = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    Validator { file }.build(raw)
}

/// A TOML or serde error as a `DefinitionError` naming the key where it sits.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> DefinitionError {
    let message = e.message().trim();
    let message = match e.span() {
        // toml says nothing for some syntax errors (`name = ` with no value): say where
        _ if !message.is_empty() => message.to_string(),
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            format!("not valid TOML at line {line}, column {column}")
        }
        None => "not valid TOML".to_string(),
    };
    DefinitionError {
        file: file.to_string(),
        key: e
            .span()
            .map(|s| key_at(text, s.start))
            .unwrap_or_else(|| "(file)".into()),
        message,
    }
}

/// A push-only definition: the polling tables must be absent, and inert ones stand in for them.
fn parse_push_only(file: &str, text: &str) -> Result<Connector, DefinitionError> {
    let err = |key: &str, message: String| DefinitionError {
        file: file.to_string(),
        key: key.to_string(),
        message,
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    for key in POLLING_KEYS {
        if table.contains_key(*key) {
            return Err(err(
                key,
                "a push_only connector is never polled: leave this out".into(),
            ));
        }
    }
    let stub: toml::Table =
        toml::from_str(PUSH_ONLY_STUB).expect("the push-only stub is valid TOML");
    table.extend(stub);
    let raw: RawDefinition = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| err("(file)", e.message().trim().to_string()))?;
    let connector = Validator { file }.build(raw)?;
    match &connector.webhook {
        Some(w) if w.unified && w.records.is_some() => Ok(connector),
        _ => Err(err(
            "webhook",
            "a push_only connector needs a [webhook] table with `records` and `unified = true`"
                .into(),
        )),
    }
}

/// The `[table]` heading and key on the line where a parse error sits, for the message.
fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let table = before
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.trim_matches(|c| c == '[' || c == ']').to_string())
        })
        .unwrap_or_default();
    let line = text[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..]
        .lines()
        .next()
        .unwrap_or("");
    let key = match line.trim_start() {
        comment if comment.starts_with('#') => "",
        _ => line.split('=').next().unwrap_or("").trim(),
    };
    match (table.is_empty(), key.is_empty() || key.starts_with('[')) {
        // nowhere to point: a required top-level key missing from a file with no tables
        (true, _) if key.is_empty() => "(file)".to_string(),
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}
