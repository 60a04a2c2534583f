//! Object storage: named blobs in a local directory or an S3-compatible bucket, behind one
//! small API (`put`, `get`, `list`, `delete`)
//!
//! Archived evidence segments must outlive the hub's own disk, so an operator points them at a
//! directory (a mounted volume, a backup share) or at a bucket (AWS S3, MinIO, Ceph, R2, ...).
//! The callers (archive before purge, `trailhub archive restore`, the S3 sink) should not care
//! which: they hold an [`ObjectStore`] built from an [`ObjectTarget`] in the config.
//!
//! Keys are restricted to a portable subset (see [`ObjectKey`]) so that the same key means the
//! same object in a directory, in a bucket and in a URL path without any escaping, and so that a
//! key can never leave the directory or the bucket prefix it is given. Secrets (the S3 secret
//! access key) are read at build time into a [`Secret`] and never printed: `describe()`, Debug
//! and every error name the target without them.

mod dir;
mod s3;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::Secret;

pub use dir::DirStore;
pub use s3::S3Store;

/// Longest key accepted, in bytes (S3 allows 1,024; a prefix is added in front of ours).
pub const MAX_KEY_BYTES: usize = 512;
/// The region signed for when the config names none (what S3-compatible servers expect).
pub const DEFAULT_REGION: &str = "us-east-1";

/// What went wrong with an object store. Messages name the target and the key, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("invalid object target: {0}")]
    Config(String),
    #[error("cannot read the S3 credentials: {0}")]
    Credentials(String),
    #[error("object {key} not found in {target}")]
    NotFound { target: String, key: String },
    #[error("object {key} in {target} is larger than the {max} bytes allowed")]
    TooLarge {
        target: String,
        key: String,
        max: u64,
    },
    #[error("{} in {target}: {source}", op_key(.op, .key))]
    Io {
        target: String,
        op: &'static str,
        key: String,
        source: std::io::Error,
    },
    /// The S3 server answered with an error (`code` from its XML body, e.g. `NoSuchBucket`,
    /// `SignatureDoesNotMatch`, `AccessDenied`; `HTTP <status>` when the body had none).
    #[error("{} in {target}: S3 error {code} (HTTP {status}){}", op_key(.op, .key), message_suffix(.message))]
    S3 {
        target: String,
        op: &'static str,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer from the server (connection refused, timeout, TLS), after the retries.
    #[error("{} in {target}: {text}", op_key(.op, .key))]
    Transport {
        target: String,
        op: &'static str,
        key: String,
        text: String,
    },
    /// An answer that is not what S3 sends (a list response that does not parse, one too big).
    #[error("{} in {target}: unexpected response: {text}", op_key(.op, .key))]
    Protocol {
        target: String,
        op: &'static str,
        key: String,
        text: String,
    },
}

/// `get archive/seg-1.zst`, or `list` for a listing of everything.
fn op_key(op: &str, key: &str) -> String {
    if key.is_empty() {
        op.to_string()
    } else {
        format!("{op} {key}")
    }
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl ObjectsError {
    /// The S3 error code, when the server sent one.
    pub fn s3_code(&self) -> Option<&str> {
        match self {
            ObjectsError::S3 { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An object key: relative, of `[A-Za-z0-9._/-]`, segments separated by single `/`, no `.` or
/// `..` segment, at most [`MAX_KEY_BYTES`]. Such a key is the same path in a directory, a bucket
/// and a URL, and cannot climb out of the root it is joined to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(key: &str) -> Result<ObjectKey, ObjectsError> {
        check_path(key, false)?;
        Ok(ObjectKey(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = ObjectsError;

    fn from_str(s: &str) -> Result<ObjectKey, ObjectsError> {
        ObjectKey::parse(s)
    }
}

/// Checks a listing prefix: the empty string, or the start of a key (it may end with `/`).
pub fn check_prefix(prefix: &str) -> Result<(), ObjectsError> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_path(prefix, true)
}

/// The key rules; a prefix may also end with `/` (`archive/2026/`).
fn check_path(key: &str, is_prefix: bool) -> Result<(), ObjectsError> {
    let bad = |reason: &'static str| ObjectsError::InvalidKey {
        key: key.chars().take(MAX_KEY_BYTES + 8).collect(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad("it is longer than 512 bytes"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
    {
        return Err(bad("only A-Z, a-z, 0-9, '.', '_', '-' and '/' are allowed"));
    }
    if key.starts_with('/') {
        return Err(bad("it must be relative (no leading '/')"));
    }
    let body = match (is_prefix, key.strip_suffix('/')) {
        (true, Some(body)) => body,
        (false, Some(_)) => return Err(bad("it must not end with '/'")),
        (_, None) => key,
    };
    for segment in body.split('/') {
        match segment {
            "" => return Err(bad("it has an empty segment ('//')")),
            "." | ".." => return Err(bad("'.' and '..' segments are not allowed")),
            _ => {}
        }
    }
    Ok(())
}

/// One listed object: its key (relative to the store's root or prefix) and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// Where objects go, as the config file says it (`[archive.target]` and the like): either
/// `dir = "/path"`, or an S3 bucket. Checked and turned into a store by [`ObjectTarget::build`].
///
/// ```toml
/// endpoint = "http://127.0.0.1:9000"
/// bucket = "trailhub-archive"
/// prefix = "hub-1"
/// access_key_id = "AKIA..."
/// secret_access_key_file = "/etc/trailhub/s3.secret"
/// ```
///
/// The secret access key is never in this struct: only the file or environment variable that
/// holds it, so Debug output and config dumps cannot leak it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectTarget {
    /// A local directory (created if missing). Excludes every S3 field.
    pub dir: Option<PathBuf>,
    /// The S3 endpoint URL; `https://s3.<region>.amazonaws.com` when absent.
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    /// Signed into every request; `us-east-1` when absent.
    pub region: Option<String>,
    /// Put in front of every key (`hub-1` stores `k` as `hub-1/k`).
    pub prefix: Option<String>,
    /// `https://host/bucket/key` (true, the default: what MinIO and most self-hosted servers
    /// want) or `https://bucket.host/key` (false).
    pub path_style: Option<bool>,
    /// The access key id itself (not a secret), or the environment variable holding it.
    pub access_key_id: Option<String>,
    pub access_key_id_env: Option<String>,
    /// The file holding the secret access key (surrounding whitespace trimmed), or the
    /// environment variable holding it: exactly one of the two.
    pub secret_access_key_file: Option<PathBuf>,
    pub secret_access_key_env: Option<String>,
}

impl ObjectTarget {
    /// A directory target.
    pub fn dir(path: impl Into<PathBuf>) -> ObjectTarget {
        ObjectTarget {
            dir: Some(path.into()),
            ..ObjectTarget::default()
        }
    }

    /// Checks the fields, reads the credentials and builds the store (the directory is created
    /// if missing; no request is sent to S3).
    pub fn build(&self) -> Result<ObjectStore, ObjectsError> {
        let s3_fields = [
            ("endpoint", self.endpoint.is_some()),
            ("bucket", self.bucket.is_some()),
            ("region", self.region.is_some()),
            ("prefix", self.prefix.is_some()),
            ("path_style", self.path_style.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("access_key_id_env", self.access_key_id_env.is_some()),
            (
                "secret_access_key_file",
                self.secret_access_key_file.is_some(),
            ),
            (
                "secret_access_key_env",
                self.secret_access_key_env.is_some(),
            ),
        ];
        if let Some(dir) = &self.dir {
            let given: Vec<&str> = s3_fields
                .iter()
                .filter(|(_, set)| *set)
                .map(|(name, _)| *name)
                .collect();
            if !given.is_empty() {
                return Err(ObjectsError::Config(format!(
                    "`dir` excludes the S3 fields, but {} given",
                    given.join(", ")
                )));
            }
            return Ok(ObjectStore::Dir(DirStore::open(dir)?));
        }
        let bucket = self.bucket.as_deref().ok_or_else(|| {
            ObjectsError::Config("give either `dir` or an S3 `bucket` (with `endpoint`)".into())
        })?;
        let region = self.region.as_deref().unwrap_or(DEFAULT_REGION);
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let access_key_id = self.read_access_key_id()?;
        let secret = self.read_secret()?;
        let options = s3::S3Options {
            endpoint,
            bucket: bucket.to_string(),
            region: region.to_string(),
            prefix: self.prefix.clone().unwrap_or_default(),
            path_style: self.path_style.unwrap_or(true),
            access_key_id,
            secret_access_key: secret,
        };
        Ok(ObjectStore::S3(S3Store::new(options)?))
    }

    fn read_access_key_id(&self) -> Result<String, ObjectsError> {
        match (&self.access_key_id, &self.access_key_id_env) {
            (Some(id), None) => Ok(id.clone()),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                ObjectsError::Credentials(format!(
                    "the environment variable {var} (access_key_id_env) is not set"
                ))
            }),
            (Some(_), Some(_)) => Err(ObjectsError::Config(
                "give `access_key_id` or `access_key_id_env`, not both".into(),
            )),
            (None, None) => Err(ObjectsError::Config(
                "an S3 target needs `access_key_id` or `access_key_id_env`".into(),
            )),
        }
    }

    fn read_secret(&self) -> Result<Secret, ObjectsError> {
        let value = match (&self.secret_access_key_file, &self.secret_access_key_env) {
            (Some(path), None) => read_secret_file(path)?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                ObjectsError::Credentials(format!(
                    "the environment variable {var} (secret_access_key_env) is not set"
                ))
            })?,
            (Some(_), Some(_)) => {
                return Err(ObjectsError::Config(
                    "give `secret_access_key_file` or `secret_access_key_env`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(ObjectsError::Config(
                    "an S3 target needs `secret_access_key_file` or `secret_access_key_env`".into(),
                ))
            }
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(ObjectsError::Credentials(
                "the secret access key is empty".into(),
            ));
        }
        Ok(Secret::new(value))
    }
}

/// Reads a secret file; the error names the file, never its content.
fn read_secret_file(path: &Path) -> Result<String, ObjectsError> {
    // a secret key is 40 characters; refuse to slurp something that is clearly not one
    const MAX_SECRET_FILE_BYTES: u64 = 4096;
    let cannot = |why: String| {
        ObjectsError::Credentials(format!("secret_access_key_file {}: {why}", path.display()))
    };
    let meta = std::fs::metadata(path).map_err(|e| cannot(e.to_string()))?;
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(cannot(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes, not a secret key"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| cannot(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| cannot("not UTF-8 text".into()))
}

/// An object store: a directory or an S3 bucket.
#[derive(Debug, Clone)]
pub enum ObjectStore {
    Dir(DirStore),
    S3(S3Store),
}

impl ObjectStore {
    /// Writes `bytes` under `key`, replacing any object there; the write is whole or absent.
    pub async fn put(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), ObjectsError> {
        match self {
            ObjectStore::Dir(d) => d.put(key, bytes).await,
            ObjectStore::S3(s) => s.put(key, bytes).await,
        }
    }

    /// Reads the object under `key`, refusing one larger than `max_bytes`
    /// ([`ObjectsError::TooLarge`]); a missing one is [`ObjectsError::NotFound`].
    pub async fn get(&self, key: &ObjectKey, max_bytes: u64) -> Result<Vec<u8>, ObjectsError> {
        match self {
            ObjectStore::Dir(d) => d.get(key, max_bytes).await,
            ObjectStore::S3(s) => s.get(key, max_bytes).await,
        }
    }

    /// Every object whose key starts with `prefix` (`""` for all), sorted by key, over all the
    /// pages of the listing.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectsError> {
        check_prefix(prefix)?;
        match self {
            ObjectStore::Dir(d) => d.list(prefix).await,
            ObjectStore::S3(s) => s.list(prefix).await,
        }
    }

    /// Removes the object under `key`; removing a missing object is no error (as in S3).
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectsError> {
        match self {
            ObjectStore::Dir(d) => d.delete(key).await,
            ObjectStore::S3(s) => s.delete(key).await,
        }
    }

    /// Asks an S3 listing for at most `keys` keys per page (see
    /// [`S3Store::with_list_page_size`]); a directory lists in one go.
    pub fn with_list_page_size(self, keys: u32) -> ObjectStore {
        match self {
            ObjectStore::S3(s) => ObjectStore::S3(s.with_list_page_size(keys)),
            dir => dir,
        }
    }

    /// The target for messages and logs, without any secret: `dir:/path` or
    /// `s3://bucket/prefix at https://endpoint`.
    pub fn describe(&self) -> String {
        match self {
            ObjectStore::Dir(d) => d.describe(),
            ObjectStore::S3(s) => s.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> &'static str {
        match ObjectKey::parse(key) {
            Err(ObjectsError::InvalidKey { reason, .. }) => reason,
            other => panic!("{key:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn keys_of_the_portable_subset_are_accepted() {
        for key in [
            "a",
            "segment-000001.zst",
            "archive/2026/12/01/seg_1.tar.zst",
            "A.B-c_d/e",
            "..a/b..",
            ".hidden",
            &"k".repeat(MAX_KEY_BYTES),
        ] {
            assert!(ObjectKey::parse(key).is_ok(), "{key:?}");
        }
    }

    #[test]
    fn keys_that_could_escape_or_differ_between_stores_are_refused() {
        assert_eq!(reason(""), "it is empty");
        assert_eq!(
            reason("/etc/passwd"),
            "it must be relative (no leading '/')"
        );
        assert_eq!(reason(".."), "'.' and '..' segments are not allowed");
        assert_eq!(reason("a/../../b"), "'.' and '..' segments are not allowed");
        assert_eq!(reason("a/./b"), "'.' and '..' segments are not allowed");
        assert_eq!(reason("a//b"), "it has an empty segment ('//')");
        assert_eq!(reason("a/"), "it must not end with '/'");
        for key in ["a b", "a\\b", "a%2e", "ä", "a\0b", "a?x=1", "a#b", "a\nb"] {
            assert_eq!(
                reason(key),
                "only A-Z, a-z, 0-9, '.', '_', '-' and '/' are allowed",
                "{key:?}"
            );
        }
        assert_eq!(
            reason(&"k".repeat(MAX_KEY_BYTES + 1)),
            "it is longer than 512 bytes"
        );
    }

    #[test]
    fn prefixes_may_be_empty_or_end_with_a_slash() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("archive/").is_ok());
        assert!(check_prefix("archive/seg-").is_ok());
        assert!(check_prefix("../").is_err());
        assert!(check_prefix("/").is_err());
        assert!(check_prefix("a//").is_err());
    }

    #[test]
    fn a_dir_target_refuses_s3_fields_and_an_s3_target_needs_credentials() {
        let both = ObjectTarget {
            bucket: Some("b".into()),
            ..ObjectTarget::dir("/tmp/x")
        };
        let err = both.build().expect_err("dir and bucket").to_string();
        assert!(err.contains("bucket"), "{err}");
        let no_creds = ObjectTarget {
            bucket: Some("b".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            ..ObjectTarget::default()
        };
        let err = no_creds.build().expect_err("no credentials").to_string();
        assert!(err.contains("access_key_id"), "{err}");
        let nothing = ObjectTarget::default().build().expect_err("empty");
        assert!(nothing.to_string().contains("dir"), "{nothing}");
    }

    #[test]
    fn the_target_parses_from_toml_and_refuses_unknown_fields() {
        let target: ObjectTarget = toml::from_str(
            r#"
            endpoint = "http://127.0.0.1:9000"
            bucket = "archive"
            prefix = "hub-1"
            access_key_id = "AKID"
            secret_access_key_env = "S3_SECRET"
            "#,
        )
        .expect("parses");
        assert_eq!(target.bucket.as_deref(), Some("archive"));
        assert_eq!(target.path_style, None);
        let err = toml::from_str::<ObjectTarget>("dir = \"/x\"\nsecret_access_key = \"s\"\n")
            .expect_err("a literal secret is not a field");
        assert!(err.to_string().contains("secret_access_key"), "{err}");
    }
}
