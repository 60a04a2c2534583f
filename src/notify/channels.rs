//! Notification channels: what an admin sends (`ChannelInput`, `ChannelPatch`), its checks, and
//! the records in the `desk:channels` tree with every secret sealed under the master key
//!
//! Key: `c<id>` → `ChannelRecord` (JSON, with `v`). What may be a secret is sealed, bound to the
//! channel's id: a webhook's URL and signing secret, a Slack URL (the URL is the credential), an
//! SMTP password. The record keeps only what may be shown: a webhook URL without user info,
//! query or fragment, a Slack URL's scheme and host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ChannelId;
use crate::config::Secret;
use crate::redact::Scrubber;
use crate::secrets::MasterKey;
use crate::store::StoreError;
use crate::time::{format_micros, now_micros, Micros};

const RECORD_VERSION: u8 = 1;
const KEY_CHANNEL: u8 = b'c';

/// Channels at once.
pub const MAX_CHANNELS: usize = 100;
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_URL_CHARS: usize = 2048;
/// Recipients of an email channel.
pub const MAX_RECIPIENTS: usize = 50;
pub const MAX_ADDRESS_CHARS: usize = 320;
pub const MAX_HOST_CHARS: usize = 253;
pub const MAX_USERNAME_CHARS: usize = 256;
pub const MAX_PASSWORD_CHARS: usize = 1024;
pub const MAX_SUBJECT_PREFIX_CHARS: usize = 100;
/// A Standard Webhooks secret's key, bytes (the specification's range).
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
const WHSEC: &str = "whsec_";

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChannelError {
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("a channel named {0:?} already exists")]
    NameTaken(String),
    #[error("at most {MAX_CHANNELS} channels; delete one first")]
    TooMany,
    #[error("no channel with id {0:?}")]
    NotFound(String),
    #[error("the secrets of channel {0} do not open with this master key; set them again")]
    Sealed(String),
    /// A change of where the password goes that does not bring the password along.
    #[error("`{field}`: {message}")]
    CredentialsRequired { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for ChannelError {
    fn from(e: sled::Error) -> Self {
        ChannelError::Store(e.into())
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ChannelError {
    ChannelError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// POST JSON signed per Standard Webhooks.
    Webhook,
    /// A Slack incoming-webhook URL.
    Slack,
    /// SMTP.
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
        }
    }
}

/// How an email channel talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain SMTP (a relay on the same host or network); no password is sent this way.
    None,
    /// Plain, then upgraded with STARTTLS (required); port 587 by default.
    Starttls,
    /// TLS from the first byte; port 465 by default.
    Tls,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::None => 25,
            Security::Starttls => 587,
            Security::Tls => 465,
        }
    }
}

/// A new channel as an admin sends it: `name`, `kind`, and the fields of that kind. No `Debug`:
/// it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    pub name: String,
    pub kind: ChannelKind,
    /// webhook, slack
    pub url: Option<String>,
    /// webhook: `whsec_<base64>`; minted when absent
    pub secret: Option<String>,
    /// email
    pub host: Option<String>,
    pub port: Option<u32>,
    pub security: Option<Security>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub subject_prefix: Option<String>,
}

/// A change: only what is given changes. `rotate_secret` mints a new webhook signing secret
/// (shown once). `username: null` / `password: null` remove them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    #[serde(default)]
    pub rotate_secret: bool,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub security: Option<Security>,
    #[serde(default, deserialize_with = "some")]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    pub password: Option<Option<String>>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub subject_prefix: Option<String>,
}

/// `null` → `Some(None)`, absent → `None` (with `#[serde(default)]`).
fn some<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// What a channel keeps in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// webhook: the URL without user info, query or fragment; slack: scheme and host only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
}

/// The sealed part.
#[derive(Default, Serialize, Deserialize)]
struct SealedSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

impl SealedSecrets {
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.url.is_some() {
            out.push("url".to_string());
        }
        if self.secret.is_some() {
            out.push("secret".to_string());
        }
        if self.password.is_some() {
            out.push("password".to_string());
        }
        out
    }
}

/// One stored channel. Its secrets are only ever held sealed here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub v: u8,
    pub id: ChannelId,
    pub name: String,
    pub kind: ChannelKind,
    pub config: ChannelConfig,
    /// Which secrets are set (`url`, `secret`, `password`); their values are sealed.
    pub secret_names: Vec<String>,
    /// `MasterKey::seal` of the secrets as JSON, hex.
    sealed: String,
    #[serde(with = "crate::schema::rfc3339_micros")]
    pub created_at: Micros,
    #[serde(with = "crate::schema::rfc3339_micros")]
    pub updated_at: Micros,
}

impl ChannelRecord {
    /// The channel as the API and CLI show it: no secret, only which are set.
    pub fn view(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "secrets_set": self.secret_names,
            "created_at": format_micros(self.created_at),
            "updated_at": format_micros(self.updated_at),
        });
        if let (Some(obj), Ok(Value::Object(config))) =
            (v.as_object_mut(), serde_json::to_value(&self.config))
        {
            obj.extend(config);
        }
        v
    }

    /// Where it sends, for messages: a URL's scheme, host and port, or the SMTP host and port.
    pub fn destination(&self) -> String {
        match self.kind {
            ChannelKind::Email => format!(
                "{}:{}",
                self.config.host.as_deref().unwrap_or("?"),
                self.config.port.unwrap_or(0)
            ),
            _ => self
                .config
                .url
                .as_deref()
                .and_then(|u| reqwest::Url::parse(u).ok())
                .map(|u| match u.port() {
                    Some(port) => {
                        format!("{}://{}:{port}", u.scheme(), u.host_str().unwrap_or("?"))
                    }
                    None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")),
                })
                .unwrap_or_else(|| "?".into()),
        }
    }
}

/// A channel's secrets, opened for a delivery, and the scrubber of their values.
pub struct Opened {
    sealed: String,
    pub url: Option<Secret>,
    pub secret: Option<Secret>,
    pub password: Option<Secret>,
    pub scrubber: Scrubber,
}

/// A created channel and, for a webhook whose secret the hub minted, that secret: shown once.
pub struct Created {
    pub record: ChannelRecord,
    pub minted_secret: Option<Secret>,
}

/// What a change did: the fields changed, and a secret minted by `rotate_secret` (shown once).
pub struct Updated {
    pub record: ChannelRecord,
    pub fields: Vec<String>,
    pub minted_secret: Option<Secret>,
}

#[derive(Clone)]
pub struct Channels {
    tree: sled::Tree,
    key: Arc<MasterKey>,
    opened: Arc<Mutex<HashMap<ChannelId, Arc<Opened>>>>,
    /// Creations and changes one at a time, so that the count and name checks hold.
    writing: Arc<Mutex<()>>,
}

fn record_key(id: &ChannelId) -> Vec<u8> {
    let mut k = vec![KEY_CHANNEL];
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ChannelError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            field,
            if min > 0 {
                format!("{min} to {max} characters, got {n}")
            } else {
                format!("at most {max} characters, got {n}")
            },
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "control characters are not allowed"));
    }
    Ok(())
}

/// Checks an http(s) URL naming a host; answers the URL as it may be shown.
fn check_url(field: &str, text: &str, kind: ChannelKind) -> Result<String, ChannelError> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(invalid(
            field,
            format!("at most {MAX_URL_CHARS} characters"),
        ));
    }
    // the URL itself is never quoted back: a Slack URL is a credential
    let url =
        reqwest::Url::parse(text.trim()).map_err(|e| invalid(field, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(field, "must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, "must name a host"));
    }
    Ok(match kind {
        ChannelKind::Slack => format!(
            "{}://{}/…",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ),
        _ => crate::config::url_for_logs(url.as_str()),
    })
}

/// A Standard Webhooks secret: `whsec_` and base64 of 24 to 64 bytes.
fn check_signing_secret(text: &str) -> Result<(), ChannelError> {
    let bad = || {
        invalid(
            "secret",
            format!(
                "must be `whsec_` followed by base64 of {} to {} random bytes (leave it out and the hub mints one)",
                SECRET_BYTES.start(),
                SECRET_BYTES.end()
            ),
        )
    };
    let encoded = text.strip_prefix(WHSEC).ok_or_else(bad)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad())?;
    if !SECRET_BYTES.contains(&key.len()) {
        return Err(bad());
    }
    Ok(())
}

/// A fresh `whsec_` secret: 32 random bytes.
fn mint_secret() -> Secret {
    crate::webhooks::signature::new_standard_webhooks_secret()
}

/// An address as SMTP takes it (`a@example.com` or `Name <a@example.com>`), one per field.
fn check_address(field: &str, text: &str) -> Result<String, ChannelError> {
    check_text(field, text, 3, MAX_ADDRESS_CHARS)?;
    if text.contains([',', ';']) {
        return Err(invalid(field, "one address per entry"));
    }
    text.parse::<lettre::message::Mailbox>()
        .map_err(|_| invalid(field, "not an email address such as ops@example.com"))?;
    Ok(text.trim().to_string())
}

fn check_host(text: &str) -> Result<String, ChannelError> {
    check_text("host", text, 1, MAX_HOST_CHARS)?;
    let ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(invalid(
            "host",
            "a host name or IP address (letters, digits, `.`, `-`)",
        ));
    }
    Ok(text.to_string())
}

fn check_port(port: u32) -> Result<u16, ChannelError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid("port", format!("1 to 65535, got {port}")))
}

/// The fields of `input` that do not apply to `kind`, for a clear refusal.
fn foreign_fields(kind: ChannelKind, present: &[(&'static str, bool)]) -> Result<(), ChannelError> {
    let allowed: &[&str] = match kind {
        ChannelKind::Webhook => &["url", "secret", "rotate_secret"],
        ChannelKind::Slack => &["url"],
        ChannelKind::Email => &[
            "host",
            "port",
            "security",
            "username",
            "password",
            "from",
            "to",
            "subject_prefix",
        ],
    };
    for (name, given) in present {
        if *given && !allowed.contains(name) {
            return Err(invalid(
                name,
                format!("does not apply to a {} channel", kind.as_str()),
            ));
        }
    }
    Ok(())
}

/// The email part, checked: host, port, security, username/password pairing, from, to, prefix.
struct EmailFields {
    host: String,
    port: u16,
    security: Security,
    username: Option<String>,
    password: Option<String>,
    from: String,
    to: Vec<String>,
    subject_prefix: Option<String>,
}

impl EmailFields {
    fn check(self) -> Result<EmailFields, ChannelError> {
        let host = check_host(&self.host)?;
        if let Some(u) = &self.username {
            check_text("username", u, 1, MAX_USERNAME_CHARS)?;
        }
        if let Some(p) = &self.password {
            let n = p.chars().count();
            if n == 0 || n > MAX_PASSWORD_CHARS {
                return Err(invalid(
                    "password",
                    format!("1 to {MAX_PASSWORD_CHARS} characters"),
                ));
            }
        }
        match (&self.username, &self.password) {
            (Some(_), None) => return Err(invalid("password", "required with `username`")),
            (None, Some(_)) => return Err(invalid("username", "required with `password`")),
            _ => {}
        }
        if self.password.is_some() && self.security == Security::None {
            return Err(invalid(
                "security",
                "a password is only sent over TLS: use `starttls` or `tls`",
            ));
        }
        let from = check_address("from", &self.from)?;
        if self.to.is_empty() || self.to.len() > MAX_RECIPIENTS {
            return Err(invalid(
                "to",
                format!("1 to {MAX_RECIPIENTS} addresses, got {}", self.to.len()),
            ));
        }
        let mut to = Vec::with_capacity(self.to.len());
        for (i, a) in self.to.iter().enumerate() {
            to.push(check_address(&format!("to[{i}]"), a)?);
        }
        if let Some(p) = &self.subject_prefix {
            check_text("subject_prefix", p, 0, MAX_SUBJECT_PREFIX_CHARS)?;
        }
        Ok(EmailFields {
            host,
            from,
            to,
            ..self
        })
    }

    fn config(&self) -> ChannelConfig {
        ChannelConfig {
            url: None,
            host: Some(self.host.clone()),
            port: Some(self.port),
            security: Some(self.security),
            username: self.username.clone(),
            from: Some(self.from.clone()),
            to: Some(self.to.clone()),
            subject_prefix: self.subject_prefix.clone(),
        }
    }
}

impl Channels {
    pub fn new(tree: sled::Tree, key: MasterKey) -> Channels {
        Channels {
            tree,
            key: Arc::new(key),
            opened: Default::default(),
            writing: Default::default(),
        }
    }

    fn seal(&self, id: &ChannelId, secrets: &SealedSecrets) -> String {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(secrets).expect("a struct of strings serialises"),
        );
        hex::encode(self.key.seal(&json, id.as_str()))
    }

    fn open(&self, record: &ChannelRecord) -> Result<SealedSecrets, ChannelError> {
        let sealed = ChannelError::Sealed(record.id.to_string());
        let bytes = hex::decode(&record.sealed).map_err(|_| sealed.clone())?;
        let plain = zeroize::Zeroizing::new(
            self.key
                .open(&bytes, record.id.as_str())
                .map_err(|_| sealed.clone())?,
        );
        serde_json::from_slice(&plain).map_err(|_| sealed)
    }

    /// The channel's secrets, opened once per change of them.
    pub fn opened(&self, record: &ChannelRecord) -> Result<Arc<Opened>, ChannelError> {
        if let Ok(cache) = self.opened.lock() {
            if let Some(o) = cache.get(&record.id) {
                if o.sealed == record.sealed {
                    return Ok(o.clone());
                }
            }
        }
        let s = self.open(record)?;
        let values: Vec<&str> = [&s.url, &s.secret, &s.password]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut scrubber = Scrubber::new(values);
        if let Some(url) = s.url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()) {
            // the parts of a URL that may be a credential, on their own: a Slack path, a token
            // in a query, a password in the user info
            for part in [
                url.path(),
                url.query().unwrap_or(""),
                url.password().unwrap_or(""),
            ] {
                scrubber = scrubber.with(part);
            }
        }
        let opened = Arc::new(Opened {
            sealed: record.sealed.clone(),
            url: s.url.map(Secret::new),
            secret: s.secret.map(Secret::new),
            password: s.password.map(Secret::new),
            scrubber,
        });
        if let Ok(mut cache) = self.opened.lock() {
            // bounded by MAX_CHANNELS; a deleted one is dropped in `delete`
            cache.insert(record.id.clone(), opened.clone());
        }
        Ok(opened)
    }

    pub fn get(&self, id: &ChannelId) -> Result<ChannelRecord, ChannelError> {
        let Some(v) = self.tree.get(record_key(id))? else {
            return Err(ChannelError::NotFound(id.to_string()));
        };
        serde_json::from_slice(&v).map_err(|e| {
            ChannelError::Store(StoreError::Corrupt(format!(
                "channel {id} does not decode: {e}"
            )))
        })
    }

    /// Every channel, oldest first.
    pub fn list(&self) -> Result<Vec<ChannelRecord>, ChannelError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([KEY_CHANNEL]) {
            let (k, v) = item?;
            match serde_json::from_slice::<ChannelRecord>(&v) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&k[1..]), error = %e, "stored channel does not decode; skipped")
                }
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn put(&self, record: &ChannelRecord) -> Result<(), ChannelError> {
        let value = serde_json::to_vec(record).expect("a record serialises");
        self.tree.insert(record_key(&record.id), value)?;
        self.tree.flush()?;
        Ok(())
    }

    fn name_taken(&self, name: &str, except: Option<&ChannelId>) -> Result<bool, ChannelError> {
        Ok(self
            .list()?
            .iter()
            .any(|r| r.name == name && Some(&r.id) != except))
    }

    pub fn create(&self, input: ChannelInput) -> Result<Created, ChannelError> {
        let name = input.name.trim().to_string();
        check_text("name", &name, 1, MAX_NAME_CHARS)?;
        foreign_fields(
            input.kind,
            &[
                ("url", input.url.is_some()),
                ("secret", input.secret.is_some()),
                ("host", input.host.is_some()),
                ("port", input.port.is_some()),
                ("security", input.security.is_some()),
                ("username", input.username.is_some()),
                ("password", input.password.is_some()),
                ("from", input.from.is_some()),
                ("to", input.to.is_some()),
                ("subject_prefix", input.subject_prefix.is_some()),
            ],
        )?;
        let mut secrets = SealedSecrets::default();
        let mut minted_secret = None;
        let config = match input.kind {
            ChannelKind::Webhook | ChannelKind::Slack => {
                let url = input.url.ok_or_else(|| invalid("url", "required"))?;
                let shown = check_url("url", &url, input.kind)?;
                secrets.url = Some(url.trim().to_string());
                if input.kind == ChannelKind::Webhook {
                    let secret = match input.secret {
                        Some(s) => {
                            check_signing_secret(&s)?;
                            s
                        }
                        None => {
                            let s = mint_secret();
                            let text = s.expose().to_string();
                            minted_secret = Some(s);
                            text
                        }
                    };
                    secrets.secret = Some(secret);
                }
                ChannelConfig {
                    url: Some(shown),
                    ..ChannelConfig::default()
                }
            }
            ChannelKind::Email => {
                let security = input.security.unwrap_or(Security::Starttls);
                let fields = EmailFields {
                    host: input.host.ok_or_else(|| invalid("host", "required"))?,
                    port: match input.port {
                        Some(p) => check_port(p)?,
                        None => security.default_port(),
                    },
                    security,
                    username: input.username,
                    password: input.password,
                    from: input.from.ok_or_else(|| invalid("from", "required"))?,
                    to: input.to.ok_or_else(|| invalid("to", "required"))?,
                    subject_prefix: input.subject_prefix,
                }
                .check()?;
                secrets.password = fields.password.clone();
                fields.config()
            }
        };
        let _one = self.writing.lock().map_err(|_| poisoned())?;
        if self.list()?.len() >= MAX_CHANNELS {
            return Err(ChannelError::TooMany);
        }
        if self.name_taken(&name, None)? {
            return Err(ChannelError::NameTaken(name));
        }
        let id = ChannelId::generate();
        let now = now_micros();
        let record = ChannelRecord {
            v: RECORD_VERSION,
            sealed: self.seal(&id, &secrets),
            secret_names: secrets.names(),
            id,
            name,
            kind: input.kind,
            config,
            created_at: now,
            updated_at: now,
        };
        self.put(&record)?;
        Ok(Created {
            record,
            minted_secret,
        })
    }

    pub fn update(&self, id: &ChannelId, patch: ChannelPatch) -> Result<Updated, ChannelError> {
        let _one = self.writing.lock().map_err(|_| poisoned())?;
        let mut record = self.get(id)?;
        let kind = record.kind;
        foreign_fields(
            kind,
            &[
                ("url", patch.url.is_some()),
                ("secret", patch.secret.is_some()),
                ("rotate_secret", patch.rotate_secret),
                ("host", patch.host.is_some()),
                ("port", patch.port.is_some()),
                ("security", patch.security.is_some()),
                ("username", patch.username.is_some()),
                ("password", patch.password.is_some()),
                ("from", patch.from.is_some()),
                ("to", patch.to.is_some()),
                ("subject_prefix", patch.subject_prefix.is_some()),
            ],
        )?;
        let mut fields = Vec::new();
        if let Some(name) = &patch.name {
            let name = name.trim().to_string();
            check_text("name", &name, 1, MAX_NAME_CHARS)?;
            if self.name_taken(&name, Some(id))? {
                return Err(ChannelError::NameTaken(name));
            }
            if name != record.name {
                record.name = name;
                fields.push("name".to_string());
            }
        }
        let (mut secrets, lost) = match self.open(&record) {
            Ok(s) => (s, false),
            // sealed under another master key (a restored backup, a rotation that did not
            // cover channels): the change must bring every secret again
            Err(ChannelError::Sealed(_)) => (SealedSecrets::default(), true),
            Err(e) => return Err(e),
        };
        let mut minted_secret = None;
        match kind {
            ChannelKind::Webhook | ChannelKind::Slack => {
                if let Some(url) = &patch.url {
                    record.config.url = Some(check_url("url", url, kind)?);
                    secrets.url = Some(url.trim().to_string());
                    fields.push("url".to_string());
                }
                if patch.secret.is_some() && patch.rotate_secret {
                    return Err(invalid(
                        "rotate_secret",
                        "give either `secret` or `rotate_secret`, not both",
                    ));
                }
                if let Some(s) = &patch.secret {
                    check_signing_secret(s)?;
                    secrets.secret = Some(s.clone());
                    fields.push("secret".to_string());
                }
                if patch.rotate_secret {
                    let s = mint_secret();
                    secrets.secret = Some(s.expose().to_string());
                    minted_secret = Some(s);
                    fields.push("secret".to_string());
                }
            }
            ChannelKind::Email => {
                let c = &record.config;
                let security = patch.security.or(c.security).unwrap_or(Security::Starttls);
                let host = patch
                    .host
                    .clone()
                    .or_else(|| c.host.clone())
                    .unwrap_or_default();
                let port = match patch.port {
                    Some(p) => check_port(p)?,
                    None => c.port.unwrap_or(security.default_port()),
                };
                let password = match &patch.password {
                    Some(p) => p.clone(),
                    None => secrets.password.clone(),
                };
                // a stored password goes only where it was set for: moving the server needs it again
                let moved = Some(&host) != c.host.as_ref() || Some(port) != c.port;
                if moved && secrets.password.is_some() && patch.password.is_none() {
                    return Err(ChannelError::CredentialsRequired {
                        field: "password".into(),
                        message: "changing the SMTP host or port needs the password again (a stored password is only sent to the server it was set for)".into(),
                    });
                }
                let fields_in = EmailFields {
                    host,
                    port,
                    security,
                    username: match &patch.username {
                        Some(u) => u.clone(),
                        None => c.username.clone(),
                    },
                    password,
                    from: patch
                        .from
                        .clone()
                        .or_else(|| c.from.clone())
                        .unwrap_or_default(),
                    to: patch
                        .to
                        .clone()
                        .or_else(|| c.to.clone())
                        .unwrap_or_default(),
                    subject_prefix: patch
                        .subject_prefix
                        .clone()
                        .or_else(|| c.subject_prefix.clone()),
                }
                .check()?;
                for (name, given) in [
                    ("host", patch.host.is_some()),
                    ("port", patch.port.is_some()),
                    ("security", patch.security.is_some()),
                    ("username", patch.username.is_some()),
                    ("password", patch.password.is_some()),
                    ("from", patch.from.is_some()),
                    ("to", patch.to.is_some()),
                    ("subject_prefix", patch.subject_prefix.is_some()),
                ] {
                    if given {
                        fields.push(name.to_string());
                    }
                }
                secrets.password = fields_in.password.clone();
                record.config = fields_in.config();
            }
        }
        if lost {
            let missing = match kind {
                ChannelKind::Webhook if secrets.url.is_none() => Some("url"),
                ChannelKind::Webhook if secrets.secret.is_none() => Some("secret"),
                ChannelKind::Slack if secrets.url.is_none() => Some("url"),
                _ => None,
            };
            if let Some(field) = missing {
                return Err(ChannelError::CredentialsRequired {
                    field: field.into(),
                    message: "the channel's stored secrets do not open with this hub's master key: give them all again (`url` and `secret` or `rotate_secret` for a webhook, `url` for Slack, `password` for email)".into(),
                });
            }
        }
        if lost
            || fields
                .iter()
                .any(|f| matches!(f.as_str(), "url" | "secret" | "password"))
        {
            record.sealed = self.seal(id, &secrets);
            record.secret_names = secrets.names();
        }
        record.updated_at = now_micros();
        self.put(&record)?;
        Ok(Updated {
            record,
            fields,
            minted_secret,
        })
    }

    /// The channels whose secrets do not open with this master key (named for a warning).
    pub fn unopenable(&self) -> Result<Vec<String>, ChannelError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| self.open(r).is_err())
            .map(|r| format!("{} ({})", r.name, r.id))
            .collect())
    }

    /// Forgets the channel; its deliveries stay in the history (pending ones fail).
    pub fn delete(&self, id: &ChannelId) -> Result<ChannelRecord, ChannelError> {
        let _one = self.writing.lock().map_err(|_| poisoned())?;
        let record = self.get(id)?;
        self.tree.remove(record_key(id))?;
        self.tree.flush()?;
        if let Ok(mut cache) = self.opened.lock() {
            cache.remove(id);
        }
        Ok(record)
    }
}

fn poisoned() -> ChannelError {
    ChannelError::Store(StoreError::Io(
        "a channel change panicked; restart the hub".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> (tempfile::TempDir, Channels) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new()
            .path(dir.path())
            .temporary(true)
            .open()
            .expect("sled");
        let tree = db.open_tree("desk:channels").expect("tree");
        (dir, Channels::new(tree, MasterKey::from_bytes([9; 32])))
    }

    fn input(v: Value) -> ChannelInput {
        serde_json::from_value(v).expect("parses")
    }

    #[test]
    fn a_webhook_secret_is_minted_sealed_and_never_in_the_view() {
        let (_d, ch) = channels();
        let created = ch
            .create(input(json!({"name": "hook", "kind": "webhook",
                "url": "https://user:pw@example.com/in?token=abcdefgh1234"})))
            .expect("created");
        let secret = created.minted_secret.expect("minted");
        assert!(secret.expose().starts_with("whsec_"));
        let view = created.record.view().to_string();
        assert!(!view.contains(secret.expose()), "{view}");
        assert!(
            !view.contains("abcdefgh1234") && !view.contains("pw@"),
            "{view}"
        );
        assert_eq!(created.record.view()["url"], "https://example.com/in");
        let raw = serde_json::to_string(&created.record).expect("json");
        assert!(!raw.contains(&secret.expose()[6..]), "sealed at rest");
        let opened = ch.opened(&created.record).expect("opens");
        assert_eq!(
            opened.secret.as_ref().map(Secret::expose),
            Some(secret.expose())
        );
        assert!(!opened
            .scrubber
            .scrub("GET /in?token=abcdefgh1234")
            .contains("abcdefgh1234"));
    }

    #[test]
    fn slack_urls_show_only_their_host() {
        let (_d, ch) = channels();
        let c = ch
            .create(input(json!({"name": "s", "kind": "slack",
                "url": "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX"})))
            .expect("created");
        assert_eq!(c.record.view()["url"], "https://hooks.slack.com/…");
        assert!(c.minted_secret.is_none());
    }

    #[test]
    fn bounds_and_bad_fields_are_refused_by_name() {
        let (_d, ch) = channels();
        let cases = [
            (
                json!({"name": "a", "kind": "webhook", "url": "ftp://x/y"}),
                "url",
            ),
            (
                json!({"name": "a", "kind": "webhook", "url": "not a url"}),
                "url",
            ),
            (json!({"name": "a", "kind": "webhook"}), "url"),
            (
                json!({"name": "", "kind": "slack", "url": "https://x"}),
                "name",
            ),
            (
                json!({"name": "x".repeat(101), "kind": "slack", "url": "https://x"}),
                "name",
            ),
            (
                json!({"name": "a", "kind": "slack", "url": format!("https://x/{}", "a".repeat(2050))}),
                "url",
            ),
            (
                json!({"name": "a", "kind": "webhook", "url": "https://x", "secret": "whsec_c2hvcnQ="}),
                "secret",
            ),
            (
                json!({"name": "a", "kind": "slack", "url": "https://x", "host": "h"}),
                "host",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "smtp.example.com", "from": "not-an-address", "to": ["a@example.com"]}),
                "from",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "smtp.example.com", "from": "a@example.com", "to": []}),
                "to",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "smtp.example.com", "from": "a@example.com",
                "to": (0..51).map(|i| format!("u{i}@example.com")).collect::<Vec<_>>()}),
                "to",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com, c@example.com"]}),
                "to[0]",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "smtp example", "from": "a@example.com", "to": ["b@example.com"]}),
                "host",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "h", "port": 70000, "from": "a@example.com", "to": ["b@example.com"]}),
                "port",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "h", "security": "none", "username": "u", "password": "p", "from": "a@example.com", "to": ["b@example.com"]}),
                "security",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "h", "username": "u", "from": "a@example.com", "to": ["b@example.com"]}),
                "password",
            ),
            (
                json!({"name": "a", "kind": "email", "host": "h", "from": "a@example.com", "to": ["b@example.com"], "subject_prefix": "x\ny"}),
                "subject_prefix",
            ),
        ];
        for (body, field) in cases {
            match ch.create(input(body.clone())) {
                Err(ChannelError::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
                Err(e) => panic!("{body}: {e}"),
                Ok(_) => panic!("{body} was accepted"),
            }
        }
        assert!(ch.list().expect("list").is_empty());
    }

    #[test]
    fn the_count_and_names_are_bounded() {
        let (_d, ch) = channels();
        for i in 0..MAX_CHANNELS {
            ch.create(input(
                json!({"name": format!("c{i}"), "kind": "slack", "url": "https://x/y"}),
            ))
            .expect("created");
        }
        assert!(matches!(
            ch.create(input(
                json!({"name": "one more", "kind": "slack", "url": "https://x/y"})
            )),
            Err(ChannelError::TooMany)
        ));
        let first = ch.list().expect("list").remove(0);
        ch.delete(&first.id).expect("deleted");
        assert!(matches!(
            ch.create(input(
                json!({"name": "c1", "kind": "slack", "url": "https://x/y"})
            )),
            Err(ChannelError::NameTaken(_))
        ));
    }

    #[test]
    fn moving_an_smtp_server_needs_its_password_again() {
        let (_d, ch) = channels();
        let c = ch
            .create(input(json!({"name": "m", "kind": "email", "host": "smtp.example.com",
                "username": "u", "password": "hunter2-hunter2", "from": "a@example.com", "to": ["b@example.com"]})))
            .expect("created");
        assert_eq!(c.record.config.port, Some(587));
        let patch: ChannelPatch =
            serde_json::from_value(json!({"host": "evil.example.net"})).expect("patch");
        assert!(matches!(
            ch.update(&c.record.id, patch),
            Err(ChannelError::CredentialsRequired { .. })
        ));
        let patch: ChannelPatch =
            serde_json::from_value(json!({"host": "smtp2.example.com", "password": "another-one"}))
                .expect("patch");
        let u = ch
            .update(&c.record.id, patch)
            .expect("moved with its password");
        assert_eq!(u.record.config.host.as_deref(), Some("smtp2.example.com"));
        let opened = ch.opened(&u.record).expect("opens");
        assert_eq!(
            opened.password.as_ref().map(Secret::expose),
            Some("another-one")
        );
        let patch: ChannelPatch =
            serde_json::from_value(json!({"subject_prefix": "[audit] "})).expect("patch");
        let u = ch.update(&c.record.id, patch).expect("a prefix alone");
        assert_eq!(u.fields, vec!["subject_prefix"]);
    }

    #[test]
    fn secrets_sealed_under_another_key_must_all_be_given_again() {
        let (dir, ch) = channels();
        let c = ch
            .create(input(
                json!({"name": "h", "kind": "webhook", "url": "https://x/y"}),
            ))
            .expect("created");
        let other = Channels::new(ch.tree.clone(), MasterKey::from_bytes([1; 32]));
        assert_eq!(other.unopenable().expect("listed").len(), 1);
        assert!(matches!(
            other.opened(&c.record),
            Err(ChannelError::Sealed(_))
        ));
        let patch: ChannelPatch = serde_json::from_value(json!({"name": "renamed"})).expect("p");
        assert!(matches!(
            other.update(&c.record.id, patch),
            Err(ChannelError::CredentialsRequired { .. })
        ));
        let patch: ChannelPatch =
            serde_json::from_value(json!({"url": "https://x/z", "rotate_secret": true}))
                .expect("p");
        let u = other.update(&c.record.id, patch).expect("set again");
        assert!(other.opened(&u.record).is_ok());
        assert!(other.unopenable().expect("listed").is_empty());
        drop(dir);
    }

    #[test]
    fn rotate_secret_mints_a_new_one() {
        let (_d, ch) = channels();
        let c = ch
            .create(input(
                json!({"name": "h", "kind": "webhook", "url": "https://x/y"}),
            ))
            .expect("created");
        let before = c.minted_secret.expect("minted");
        let patch: ChannelPatch =
            serde_json::from_value(json!({"rotate_secret": true})).expect("patch");
        let u = ch.update(&c.record.id, patch).expect("rotated");
        let after = u.minted_secret.expect("minted again");
        assert_ne!(before.expose(), after.expose());
        let opened = ch.opened(&u.record).expect("opens");
        assert_eq!(
            opened.secret.as_ref().map(Secret::expose),
            Some(after.expose())
        );
    }
}
