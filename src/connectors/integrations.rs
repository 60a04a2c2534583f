//! The configured integrations: validated against their connector's declared fields, stored in
//! their own sled tree with credentials sealed, plus each one's last known status
//!
//! Keys: `i<id>` → integration record (JSON), `s<id>` → status (JSON), `r` → a master key
//! rotation in progress (JSON, see `rotation`). Values carry `v`.
//!
//! This file is the records' storage and sealing; what an admin sends and its checks are
//! `input`, the status is `status`, the master key against the sealed credentials `rotation`.

mod input;
pub mod rotation;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::definition::Poll;
use super::{Connector, Registry};
use crate::config::Secret;
use crate::connectors::filters::CollectionFilters;
use crate::schema::IntegrationRef;
use crate::secrets::MasterKey;
use crate::store::StoreError;
use crate::time::{now_micros, Micros};
use input::{
    check_fields, check_pace, check_schedule_backfill, check_urls, merge, require_all_credentials,
    validate_name, with_defaults,
};
pub use input::{Changed, IntegrationPatch, NewIntegration};
use status::status_key;
pub use status::{State, Status};

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
    /// Include / exclude rules applied before events are stored.
    #[serde(default, skip_serializing_if = "CollectionFilters::is_empty")]
    pub filters: CollectionFilters,
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

    /// The cron schedule in force: the integration's, else the poll part's default.
    pub fn schedule_text<'a>(&'a self, poll: &'a Poll) -> &'a str {
        self.schedule.as_deref().unwrap_or(&poll.default_schedule)
    }

    /// The backfill window (the integration's, else the poll part's default), clamped to the
    /// vendor's retention.
    pub fn backfill_micros(&self, poll: &Poll, retention: Option<Micros>) -> Micros {
        let wanted = self
            .backfill
            .as_deref()
            .and_then(super::iso_duration)
            .unwrap_or(poll.default_backfill);
        match retention {
            Some(r) => wanted.min(r),
            None => wanted,
        }
    }
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

fn new_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source is available");
    format!("int_{}", hex::encode(b))
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

    /// Checks a new integration as `create` does (the same errors, in the same order) and
    /// builds its record under `id` without sealing or storing anything: the record's
    /// `sealed_credentials` is empty, the credentials are given back apart.
    fn checked(
        &self,
        req: NewIntegration,
        id: String,
    ) -> Result<(IntegrationRecord, BTreeMap<String, String>), IntegrationError> {
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
        req.filters.compile().map_err(|m| invalid("filters", m))?;
        if self.name_taken(&name, None)? {
            return Err(IntegrationError::NameTaken(name));
        }
        let now = now_micros();
        let record = IntegrationRecord {
            v: RECORD_VERSION,
            sealed_credentials: String::new(),
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
            filters: req.filters,
            created_at: now,
            updated_at: now,
        };
        Ok((record, credentials))
    }

    pub fn create(&self, req: NewIntegration) -> Result<IntegrationRecord, IntegrationError> {
        let (mut record, credentials) = self.checked(req, new_id())?;
        record.sealed_credentials = self.seal(&record.id, &credentials)?;
        self.put(&record)?;
        Ok(record)
    }

    /// A new integration checked exactly as `create` checks it, neither sealed nor stored, for
    /// a connection test: the record (under a throwaway id of its own, so that nothing cached
    /// for a real integration is shared) and its credentials.
    pub fn draft(
        &self,
        req: NewIntegration,
    ) -> Result<(IntegrationRecord, BTreeMap<String, Secret>), IntegrationError> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random source is available");
        let (record, credentials) = self.checked(req, format!("test_{}", hex::encode(b)))?;
        let credentials = credentials
            .into_iter()
            .map(|(k, v)| (k, Secret::new(v)))
            .collect();
        Ok((record, credentials))
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
        if let Some(f) = patch.filters {
            f.compile().map_err(|m| invalid("filters", m))?;
            if f != record.filters {
                record.filters = f;
                changed.fields.push("filters".into());
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
}
