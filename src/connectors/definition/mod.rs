//! Connector definition files (`connectors/<vendor>.toml`): parsed strictly with serde, then
//! validated into the closed types the engine interprets, with errors naming file and key
//!
//! A connector has a poll part (the polling keys: how the hub fetches records), a push part
//! (`[webhook]`: how the vendor sends them), or both; a file that writes no polling key is
//! push-only (it may say so with `push_only = true`, and then must not write one).
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
    Order, OutcomeSpec, Pagination, Poll, RateLimitSpec, RecordsSpec, RequestSpec, ResetFormat,
    Rule, SinceSpec, TargetSpec, TimeFormat, TimeParamFormat, WebhookSpec,
    WEBHOOK_BODY_BYTES_RANGE,
};

use raw::{RawDefinition, POLLING_KEYS};
use validate::Validator;

/// Why a definition file was refused; `key` is the dotted TOML key at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: `{key}`: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// Parses and validates one definition file.
pub fn parse(file: &str, text: &str) -> Result<Connector, DefinitionError> {
    // a file that says it is push-only and writes a polling key anyway is told so, whatever
    // that key holds (before serde reads the key's table and finds fault with it)
    if let Ok(table) = toml::from_str::<toml::Table>(text) {
        let push_only = table.get("push_only").and_then(toml::Value::as_bool);
        if let (Some(true), Some(key)) = (
            push_only,
            POLLING_KEYS.iter().find(|k| table.contains_key(**k)),
        ) {
            return Err(DefinitionError {
                file: file.to_string(),
                key: key.to_string(),
                message: "a push_only connector is never polled: leave this out".into(),
            });
        }
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
