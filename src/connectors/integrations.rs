//! The configured integrations: validated against their connector's declared fields, stored in
//! their own sled tree with credentials sealed, plus each one's last known status
//!
//! Keys: `i<id>` → integration record (JSON), `s<id>` → status (JSON). Values carry `v`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Connector, Registry};
use crate::config::Secret;
use crate::schema::IntegrationRef;
use crate::secrets::MasterKey;
use crate::store::StoreError;
use crate::time::{now_micros, Micros};

const RECORD_VERSION: u8 = 1;
const KEY_RECORD: u8 = b'i';
const KEY_STATUS: u8 = b's';
/// Ids the hub reserves for its built-in integrations.
const RESERVED_NAMES: &[&str] = &["custom", "trailhub"];

#[derive(Debug, Clone, thiserror::Error)]
pub enum IntegrationError {
    /// Bad input; `field` is the JSON field at fault (e.g. `config.org`).
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("an integration named {0:?} already exists")]
    NameTaken(String),
    #[error("no integration with id {0:?}")]
    NotFound(String),
    #[error("the stored credentials of {0} do not open with this master key")]
    Sealed(String),
    /// A change of where the integration connects that does not bring the credentials along:
    /// sealed credentials are never sent to a host an admin token alone chose.
    #[error("`{field}`: {message}")]
    CredentialsRequired { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for IntegrationError {
    fn from(e: sled::Error) -> Self {
        IntegrationError::Store(e.into())
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> IntegrationError {
    IntegrationError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// One stored integration. Credentials are only ever held sealed here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntegrationRecord {
    pub v: u8,
    pub id: String,
    pub name: String,
    pub connector: String,
    pub config: BTreeMap<String, String>,
    /// Names of the credentials set (their values are sealed).
    pub credential_names: Vec<String>,
    /// `MasterKey::seal` of the credentials as a JSON object, hex.
    pub sealed_credentials: String,
    pub schedule: Option<String>,
    pub backfill: Option<String>,
    /// Idle backoff factor over the schedule interval (default 4; 0 = off).
    pub idle_backoff: Option<u32>,
    /// Overrides the connector's declared pace (e.g. a higher vendor tier).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    pub paused: bool,
    /// Plain http is allowed for URL fields on a loopback host (test doubles, local proxies).
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(with = "crate::schema::rfc3339_micros")]
    pub created_at: Micros,
    #[serde(with = "crate::schema::rfc3339_micros")]
    pub updated_at: Micros,
}

impl IntegrationRecord {
    pub fn reference(&self) -> IntegrationRef {
        IntegrationRef {
            id: self.id.clone(),
            name: self.name.clone(),
            connector: self.connector.clone(),
        }
    }

    /// The config with the connector's defaults filled in.
    pub fn effective_config(&self, connector: &Connector) -> BTreeMap<String, String> {
        with_defaults(connector, &self.config)
    }

    pub fn schedule_text<'a>(&'a self, connector: &'a Connector) -> &'a str {
        self.schedule
            .as_deref()
            .unwrap_or(&connector.default_schedule)
    }

    /// The backfill window, clamped to the vendor's retention.
    pub fn backfill_micros(&self, connector: &Connector) -> Micros {
        let wanted = self
            .backfill
            .as_deref()
            .and_then(super::iso_duration)
            .unwrap_or(connector.default_backfill);
        match connector.retention {
            Some(r) => wanted.min(r),
            None => wanted,
        }
    }
}

/// Where an integration stands, as shown in its API object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Backfilling,
    Live,
    Error,
    Paused,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub last_poll_at: Option<Micros>,
    pub last_success_at: Option<Micros>,
    /// When a cycle last drained everything the vendor had.
    pub caught_up_at: Option<Micros>,
    pub last_error: Option<String>,
    pub backfill_done: bool,
    /// Oldest event time reached so far by the backfill.
    pub backfill_oldest: Option<Micros>,
    /// Start of the backfill window.
    pub backfill_from: Option<Micros>,
    pub polling: bool,
}

impl Status {
    pub fn state(&self, paused: bool) -> State {
        if paused {
            State::Paused
        } else if self.last_error.is_some() {
            State::Error
        } else if !self.backfill_done {
            State::Backfilling
        } else {
            State::Live
        }
    }

    /// Seconds since the hub last had everything the vendor had.
    pub fn lag_seconds(&self, now: Micros) -> Option<i64> {
        self.caught_up_at
            .map(|t| ((now - t) / crate::time::MICROS_PER_SEC).max(0))
    }
}

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

#[derive(Clone)]
pub struct Integrations {
    tree: sled::Tree,
    /// `None` for a read-only view (the CLI listing a data dir): nothing can be sealed or opened.
    key: Option<Arc<MasterKey>>,
    registry: Registry,
    /// Opened credentials and the scrubber built from them, per integration, valid while its
    /// sealed credentials are unchanged: a webhook delivery must not pay for opening the seal
    /// and compiling the scrubber's automaton every time.
    opened: Arc<std::sync::Mutex<HashMap<String, Arc<OpenedSecrets>>>>,
}

/// An integration's credentials, opened, and the scrubber of their values.
pub struct OpenedSecrets {
    sealed: String,
    pub credentials: BTreeMap<String, Secret>,
    pub scrubber: crate::redact::Scrubber,
}

fn record_key(id: &str) -> Vec<u8> {
    let mut k = vec![KEY_RECORD];
    k.extend_from_slice(id.as_bytes());
    k
}

fn status_key(id: &str) -> Vec<u8> {
    let mut k = vec![KEY_STATUS];
    k.extend_from_slice(id.as_bytes());
    k
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source is available");
    format!("int_{}", hex::encode(b))
}

fn scalar_text(field: &str, v: &Value) -> Result<Option<String>, IntegrationError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(invalid(field, "must be a string, number or boolean")),
    }
}

fn validate_name(name: &str) -> Result<String, IntegrationError> {
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
fn check_urls(
    connector: &Connector,
    config: &BTreeMap<String, String>,
    allow_insecure_http: bool,
) -> Result<(), IntegrationError> {
    super::outbound::check_config(connector, config, allow_insecure_http)
        .map_err(|(field, message)| invalid(field, message))
}

fn merge(
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

fn check_fields(
    kind: &str,
    declared: &[super::definition::FieldSpec],
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
fn with_defaults(
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
fn require_all_credentials(
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

fn check_schedule_backfill(
    schedule: Option<&str>,
    backfill: Option<&str>,
) -> Result<(), IntegrationError> {
    if let Some(s) = schedule {
        crate::schedule::parse_schedule(s).map_err(|m| invalid("schedule", m))?;
    }
    if let Some(b) = backfill {
        if super::iso_duration(b).is_none() {
            return Err(invalid(
                "backfill",
                format!("not an ISO 8601 duration (e.g. P30D, PT12H): {b:?}"),
            ));
        }
    }
    Ok(())
}

fn check_pace(rpm: Option<u32>) -> Result<(), IntegrationError> {
    if rpm == Some(0) {
        return Err(invalid("requests_per_minute", "must be at least 1"));
    }
    Ok(())
}

impl Integrations {
    pub fn new(tree: sled::Tree, key: MasterKey, registry: Registry) -> Integrations {
        Integrations {
            tree,
            key: Some(Arc::new(key)),
            registry,
            opened: Default::default(),
        }
    }

    /// Records and status only; credentials can be neither set nor read.
    pub fn read_only(tree: sled::Tree, registry: Registry) -> Integrations {
        Integrations {
            tree,
            key: None,
            registry,
            opened: Default::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn connector(&self, name: &str) -> Result<Arc<Connector>, IntegrationError> {
        self.registry
            .get(name)
            .map_err(|e| invalid("connector", e.to_string()))
    }

    fn seal(
        &self,
        id: &str,
        credentials: &BTreeMap<String, String>,
    ) -> Result<String, IntegrationError> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| IntegrationError::Sealed(id.to_string()))?;
        let json = serde_json::to_vec(credentials).expect("a string map serialises");
        Ok(hex::encode(key.seal(&json, id)))
    }

    /// The decrypted credentials of an integration, for the engine only.
    /// The integration's credentials and their scrubber, opened once per change of credentials.
    pub fn opened(
        &self,
        record: &IntegrationRecord,
        connector: &Connector,
    ) -> Result<Arc<OpenedSecrets>, IntegrationError> {
        if let Ok(cache) = self.opened.lock() {
            if let Some(o) = cache.get(&record.id) {
                if o.sealed == record.sealed_credentials {
                    return Ok(o.clone());
                }
            }
        }
        let credentials = self.credentials(record)?;
        let scrubber = crate::redact::Scrubber::new(connector.secret_values(&credentials));
        let opened = Arc::new(OpenedSecrets {
            sealed: record.sealed_credentials.clone(),
            credentials,
            scrubber,
        });
        if let Ok(mut cache) = self.opened.lock() {
            // bounded by the integrations an admin created; a deleted one is dropped below
            cache.insert(record.id.clone(), opened.clone());
        }
        Ok(opened)
    }

    pub fn credentials(
        &self,
        record: &IntegrationRecord,
    ) -> Result<BTreeMap<String, Secret>, IntegrationError> {
        let sealed = hex::decode(&record.sealed_credentials)
            .map_err(|_| IntegrationError::Sealed(record.id.clone()))?;
        let plain = self
            .key
            .as_ref()
            .ok_or_else(|| IntegrationError::Sealed(record.id.clone()))?
            .open(&sealed, &record.id)
            .map_err(|_| IntegrationError::Sealed(record.id.clone()))?;
        let map: BTreeMap<String, String> = serde_json::from_slice(&plain)
            .map_err(|_| IntegrationError::Sealed(record.id.clone()))?;
        Ok(map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
    }

    fn name_taken(&self, name: &str, except: Option<&str>) -> Result<bool, IntegrationError> {
        Ok(self
            .list()?
            .iter()
            .any(|r| r.name == name && Some(r.id.as_str()) != except))
    }

    fn put(&self, record: &IntegrationRecord) -> Result<(), IntegrationError> {
        let value = serde_json::to_vec(record).expect("a record serialises");
        self.tree.insert(record_key(&record.id), value)?;
        self.tree.flush()?;
        Ok(())
    }

    pub fn create(&self, req: NewIntegration) -> Result<IntegrationRecord, IntegrationError> {
        let name = validate_name(&req.name)?;
        let connector = self.connector(&req.connector)?;
        let mut config = BTreeMap::new();
        merge("config", &mut config, &req.config)?;
        let mut credentials = BTreeMap::new();
        merge("credentials", &mut credentials, &req.credentials)?;
        check_fields("config", &connector.config, &config, &connector.name)?;
        check_fields(
            "credentials",
            &connector.credentials,
            &credentials,
            &connector.name,
        )?;
        check_urls(
            &connector,
            &with_defaults(&connector, &config),
            req.allow_insecure_http,
        )?;
        check_schedule_backfill(req.schedule.as_deref(), req.backfill.as_deref())?;
        check_pace(req.requests_per_minute)?;
        if self.name_taken(&name, None)? {
            return Err(IntegrationError::NameTaken(name));
        }
        let id = new_id();
        let now = now_micros();
        let record = IntegrationRecord {
            v: RECORD_VERSION,
            sealed_credentials: self.seal(&id, &credentials)?,
            credential_names: credentials.keys().cloned().collect(),
            id,
            name,
            connector: connector.name.clone(),
            config,
            schedule: req.schedule,
            backfill: req.backfill,
            idle_backoff: req.idle_backoff,
            requests_per_minute: req.requests_per_minute,
            paused: req.paused,
            allow_insecure_http: req.allow_insecure_http,
            created_at: now,
            updated_at: now,
        };
        self.put(&record)?;
        Ok(record)
    }

    pub fn update(
        &self,
        id: &str,
        patch: IntegrationPatch,
    ) -> Result<(IntegrationRecord, Changed), IntegrationError> {
        let mut record = self.get(id)?;
        let connector = self.connector(&record.connector)?;
        let mut changed = Changed::default();
        if let Some(name) = &patch.name {
            let name = validate_name(name)?;
            if self.name_taken(&name, Some(id))? {
                return Err(IntegrationError::NameTaken(name));
            }
            if name != record.name {
                record.name = name;
                changed.fields.push("name".into());
            }
        }
        let before = record.effective_config(&connector);
        if let Some(c) = &patch.config {
            merge("config", &mut record.config, c)?;
            check_fields("config", &connector.config, &record.config, &connector.name)?;
            changed.fields.push("config".into());
        }
        if let Some(a) = patch.allow_insecure_http {
            if a != record.allow_insecure_http {
                record.allow_insecure_http = a;
                changed.fields.push("allow_insecure_http".into());
            }
        }
        let after = record.effective_config(&connector);
        if patch.config.is_some() || patch.allow_insecure_http.is_some() {
            check_urls(&connector, &after, record.allow_insecure_http)?;
        }
        let moved = super::outbound::moved_fields(&connector, &before, &after);
        if !moved.is_empty() {
            require_all_credentials(&record, &moved, patch.credentials.as_ref())?;
        }
        if let Some(c) = &patch.credentials {
            let mut creds: BTreeMap<String, String> = match self.credentials(&record) {
                Ok(current) => current
                    .into_iter()
                    .map(|(k, v)| (k, v.expose().to_string()))
                    .collect(),
                // sealed under another master key: the new set must be complete on its own
                Err(IntegrationError::Sealed(_)) if self.key.is_some() => BTreeMap::new(),
                Err(e) => return Err(e),
            };
            merge("credentials", &mut creds, c)?;
            check_fields(
                "credentials",
                &connector.credentials,
                &creds,
                &connector.name,
            )?;
            record.sealed_credentials = self.seal(&record.id, &creds)?;
            record.credential_names = creds.keys().cloned().collect();
            changed.credentials_rotated = true;
            changed.fields.push("credentials".into());
        }
        if let Some(s) = patch.schedule {
            check_schedule_backfill(s.as_deref(), None)?;
            record.schedule = s;
            changed.fields.push("schedule".into());
        }
        if let Some(b) = patch.backfill {
            check_schedule_backfill(None, b.as_deref())?;
            record.backfill = b;
            changed.fields.push("backfill".into());
        }
        if let Some(i) = patch.idle_backoff {
            record.idle_backoff = i;
            changed.fields.push("idle_backoff".into());
        }
        if let Some(r) = patch.requests_per_minute {
            check_pace(r)?;
            record.requests_per_minute = r;
            changed.fields.push("requests_per_minute".into());
        }
        if let Some(p) = patch.paused {
            if p != record.paused {
                record.paused = p;
                changed.fields.push("paused".into());
            }
        }
        record.updated_at = now_micros();
        self.put(&record)?;
        Ok((record, changed))
    }

    pub fn get(&self, id: &str) -> Result<IntegrationRecord, IntegrationError> {
        let Some(v) = self.tree.get(record_key(id))? else {
            return Err(IntegrationError::NotFound(id.to_string()));
        };
        serde_json::from_slice(&v).map_err(|e| {
            IntegrationError::Store(StoreError::Corrupt(format!(
                "integration {id} does not decode: {e}"
            )))
        })
    }

    pub fn list(&self) -> Result<Vec<IntegrationRecord>, IntegrationError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([KEY_RECORD]) {
            let (k, v) = item?;
            match serde_json::from_slice::<IntegrationRecord>(&v) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&k[1..]), error = %e, "stored integration does not decode; skipped")
                }
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Forgets the integration (its events stay in the store).
    pub fn delete(&self, id: &str) -> Result<IntegrationRecord, IntegrationError> {
        let record = self.get(id)?;
        self.tree.remove(record_key(id))?;
        self.tree.remove(status_key(id))?;
        self.tree.flush()?;
        if let Ok(mut cache) = self.opened.lock() {
            cache.remove(id);
        }
        Ok(record)
    }

    pub fn status(&self, id: &str) -> Result<Status, IntegrationError> {
        Ok(match self.tree.get(status_key(id))? {
            Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
            None => Status::default(),
        })
    }

    /// Saves a status unless the integration was deleted meanwhile.
    pub fn save_status(&self, id: &str, status: &Status) -> Result<(), IntegrationError> {
        if self.tree.get(record_key(id))?.is_none() {
            return Ok(());
        }
        let value = serde_json::to_vec(status).expect("a status serialises");
        self.tree.insert(status_key(id), value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_requests_do_not_debug_print_credentials() {
        let planted = "planted-credential-value-1234";
        let new: NewIntegration = serde_json::from_value(serde_json::json!({
            "name": "acme", "connector": "okta", "config": {"base_url": "https://acme.okta.com"},
            "credentials": {"token": planted, "webhook_secret": planted},
        }))
        .expect("parses");
        let patch: IntegrationPatch =
            serde_json::from_value(serde_json::json!({"credentials": {"token": planted}}))
                .expect("parses");
        for shown in [
            format!("{new:?}"),
            format!("{patch:?}"),
            format!("{new:#?}"),
        ] {
            assert!(!shown.contains(planted), "{shown}");
            assert!(shown.contains("token"), "names are shown: {shown}");
        }
    }
    use crate::time::DAY;

    fn record(backfill: Option<&str>) -> IntegrationRecord {
        IntegrationRecord {
            v: RECORD_VERSION,
            id: "int_x".into(),
            name: "x".into(),
            connector: "okta".into(),
            config: BTreeMap::new(),
            credential_names: Vec::new(),
            sealed_credentials: String::new(),
            schedule: None,
            backfill: backfill.map(str::to_string),
            idle_backoff: None,
            requests_per_minute: None,
            paused: false,
            allow_insecure_http: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn backfill_is_clamped_to_retention() {
        let registry = Registry::builtin().expect("valid");
        let okta = registry.get("okta").expect("okta");
        assert_eq!(record(Some("P30D")).backfill_micros(&okta), 30 * DAY);
        assert_eq!(record(Some("P2Y")).backfill_micros(&okta), 90 * DAY);
        assert_eq!(record(None).backfill_micros(&okta), 7 * DAY);
        let slack = registry.get("slack").expect("slack");
        assert_eq!(record(Some("P2Y")).backfill_micros(&slack), 730 * DAY);
    }

    #[test]
    fn status_states() {
        let mut s = Status::default();
        assert_eq!(s.state(false), State::Backfilling);
        s.backfill_done = true;
        assert_eq!(s.state(false), State::Live);
        s.last_error = Some("credentials rejected (HTTP 401)".into());
        assert_eq!(s.state(false), State::Error);
        assert_eq!(s.state(true), State::Paused);
        s.caught_up_at = Some(10 * crate::time::MICROS_PER_SEC);
        assert_eq!(s.lag_seconds(25 * crate::time::MICROS_PER_SEC), Some(15));
    }
}
