//! What an admin sends to create or change an integration (`NewIntegration`, `IntegrationPatch`,
//! whose Debug never shows a credential) and the checks of it against the connector's declared
//! fields, made before anything is sealed or stored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{invalid, IntegrationError, IntegrationRecord, RESERVED_NAMES};
use crate::connectors::Connector;

/// What an admin asks for when creating an integration. Debug shows credential names only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIntegration {
    pub name: String,
    pub connector: String,
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
    #[serde(default)]
    pub credentials: serde_json::Map<String, Value>,
    pub schedule: Option<String>,
    pub backfill: Option<String>,
    pub idle_backoff: Option<u32>,
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default)]
    pub filters: crate::connectors::filters::CollectionFilters,
}

/// A change: config and credentials merge into what is there (`null` removes a key). Debug
/// shows credential names only.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationPatch {
    pub name: Option<String>,
    pub config: Option<serde_json::Map<String, Value>>,
    pub credentials: Option<serde_json::Map<String, Value>>,
    #[serde(default, with = "double_option")]
    pub schedule: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub backfill: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub idle_backoff: Option<Option<u32>>,
    #[serde(default, with = "double_option")]
    pub requests_per_minute: Option<Option<u32>>,
    pub paused: Option<bool>,
    pub allow_insecure_http: Option<bool>,
    pub filters: Option<crate::connectors::filters::CollectionFilters>,
}

/// Credential values as Debug shows them: their names, never the values.
struct CredentialNames<'a>(&'a serde_json::Map<String, Value>);

impl std::fmt::Debug for CredentialNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl std::fmt::Debug for NewIntegration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewIntegration")
            .field("name", &self.name)
            .field("connector", &self.connector)
            .field("config", &self.config)
            .field("credentials", &CredentialNames(&self.credentials))
            .field("schedule", &self.schedule)
            .field("backfill", &self.backfill)
            .field("idle_backoff", &self.idle_backoff)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for IntegrationPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationPatch")
            .field("name", &self.name)
            .field("config", &self.config)
            .field(
                "credentials",
                &self.credentials.as_ref().map(CredentialNames),
            )
            .field("schedule", &self.schedule)
            .field("backfill", &self.backfill)
            .field("idle_backoff", &self.idle_backoff)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

/// `absent` → None, `null` → Some(None), value → Some(Some(v)).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// What an update changed, for the audit record.
#[derive(Debug, Default)]
pub struct Changed {
    pub fields: Vec<String>,
    pub credentials_rotated: bool,
}

pub(super) fn scalar_text(field: &str, v: &Value) -> Result<Option<String>, IntegrationError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(invalid(field, "must be a string, number or boolean")),
    }
}

pub(super) fn validate_name(name: &str) -> Result<String, IntegrationError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(invalid("name", "must be 1 to 100 characters"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(invalid(
            "name",
            format!("{name:?} is reserved for a built-in integration"),
        ));
    }
    Ok(name.to_string())
}

/// Checks every URL field of the config (defaults filled in): https, or http to a loopback host
/// with `allow_insecure_http`.
pub(super) fn check_urls(
    connector: &Connector,
    config: &BTreeMap<String, String>,
    allow_insecure_http: bool,
) -> Result<(), IntegrationError> {
    crate::connectors::outbound::check_config(connector, config, allow_insecure_http)
        .map_err(|(field, message)| invalid(field, message))
}

pub(super) fn merge(
    kind: &str,
    current: &mut BTreeMap<String, String>,
    changes: &serde_json::Map<String, Value>,
) -> Result<(), IntegrationError> {
    for (k, v) in changes {
        match scalar_text(&format!("{kind}.{k}"), v)? {
            Some(s) => {
                current.insert(k.clone(), s);
            }
            None => {
                current.remove(k);
            }
        }
    }
    Ok(())
}

pub(super) fn check_fields(
    kind: &str,
    declared: &[crate::connectors::definition::FieldSpec],
    given: &BTreeMap<String, String>,
    connector: &str,
) -> Result<(), IntegrationError> {
    for k in given.keys() {
        if !declared.iter().any(|f| &f.name == k) {
            let known: Vec<&str> = declared.iter().map(|f| f.name.as_str()).collect();
            return Err(invalid(
                format!("{kind}.{k}"),
                format!(
                    "unknown field for connector {connector} (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    for f in declared {
        match given.get(&f.name) {
            None if f.required => {
                return Err(invalid(
                    format!("{kind}.{}", f.name),
                    format!("is required by connector {connector}: {}", f.description),
                ))
            }
            Some(v) if v.trim().is_empty() => {
                return Err(invalid(format!("{kind}.{}", f.name), "must not be empty"))
            }
            Some(v) if !f.choices.is_empty() && !f.choices.contains(v) => {
                return Err(invalid(
                    format!("{kind}.{}", f.name),
                    format!("must be one of {}", f.choices.join(", ")),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The config with the connector's defaults filled in.
pub(super) fn with_defaults(
    connector: &Connector,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = config.clone();
    for f in &connector.config {
        if let (false, Some(d)) = (out.contains_key(&f.name), &f.default) {
            out.insert(f.name.clone(), d.clone());
        }
    }
    out
}

/// A change of an outbound origin must name every credential the integration holds (a new
/// value, or `null` to drop it): none of the sealed ones may follow the integration to a host
/// chosen by whoever holds an admin token, which may be stolen.
pub(super) fn require_all_credentials(
    record: &IntegrationRecord,
    moved: &[String],
    given: Option<&serde_json::Map<String, Value>>,
) -> Result<(), IntegrationError> {
    let missing: Vec<&str> = record
        .credential_names
        .iter()
        .filter(|name| !given.is_some_and(|g| g.contains_key(name.as_str())))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(IntegrationError::CredentialsRequired {
        field: moved.join("`, `"),
        message: format!(
            "changing where this integration connects requires its credentials in the same request; give `credentials` with {} (the stored ones are never sent to a new host)",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

pub(super) fn check_schedule_backfill(
    schedule: Option<&str>,
    backfill: Option<&str>,
) -> Result<(), IntegrationError> {
    if let Some(s) = schedule {
        crate::schedule::parse_schedule(s).map_err(|m| invalid("schedule", m))?;
    }
    if let Some(b) = backfill {
        if crate::connectors::iso_duration(b).is_none() {
            return Err(invalid(
                "backfill",
                format!("not an ISO 8601 duration (e.g. P30D, PT12H): {b:?}"),
            ));
        }
    }
    Ok(())
}

pub(super) fn check_pace(rpm: Option<u32>) -> Result<(), IntegrationError> {
    if rpm == Some(0) {
        return Err(invalid("requests_per_minute", "must be at least 1"));
    }
    Ok(())
}
