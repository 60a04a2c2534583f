//! Settings, layered: defaults < config file (`--config`/`TRAILHUB_CONFIG`, TOML) < environment < flags

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7410";
pub const DEFAULT_DATA_DIR: &str = "./trailhub-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Enough for the hot index blocks; more mostly grows RSS (see docs/PERFORMANCE.md).
pub const DEFAULT_CACHE_MB: u64 = 64;
pub const DEFAULT_MIN_FREE_MB: u64 = 256;
pub const DEFAULT_MAX_QUEUED_EVENTS: usize = crate::store::StoreOptions::DEFAULT_MAX_QUEUED_EVENTS;

/// A value that must never be printed: Debug and Display redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub cache_mb: u64,
    pub min_free_mb: u64,
    /// Events that may wait for the store's writer; past it writes answer 503 with Retry-After.
    pub max_queued_events: usize,
    /// Bits of the store's dedup hash kept: all, except in tests that force collisions.
    pub dedup_hash_mask: u64,
    /// Events per sealed index segment (65,536; tests lower it to exercise sealing).
    pub seal_events: usize,
    /// Master key for sealing credentials (`TRAILHUB_MASTER_KEY`); else `<data_dir>/master.key`.
    pub master_key: Option<Secret>,
    /// Poll engine and scheduler knobs.
    pub poll: crate::connectors::engine::PollTuning,
}

/// What flags and the environment said; `None` falls through to the file, then the default.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub cache_mb: Option<u64>,
    pub min_free_mb: Option<u64>,
    pub max_queued_events: Option<usize>,
    pub master_key: Option<String>,
    pub poll_workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    cache_mb: Option<u64>,
    min_free_mb: Option<u64>,
    max_queued_events: Option<usize>,
    /// Poll cycles running at once.
    poll_workers: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("listen address {0:?} is not host:port (e.g. 127.0.0.1:7410)")]
    Listen(String),
    #[error("max_body_bytes must be at least 1024")]
    MaxBody,
    #[error("poll_workers must be between 1 and 256")]
    PollWorkers,
    #[error("max_queued_events must be between 1,024 and 16,777,216")]
    MaxQueued,
}

impl Settings {
    pub fn resolve(o: Overrides) -> Result<Settings, ConfigError> {
        let file = match &o.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let listen_text = o
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text
            .parse()
            .map_err(|_| ConfigError::Listen(listen_text.clone()))?;
        let max_body_bytes = o
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(ConfigError::MaxBody);
        }
        let poll_workers = o
            .poll_workers
            .or(file.poll_workers)
            .unwrap_or(crate::connectors::engine::PollTuning::default().workers);
        if !(1..=256).contains(&poll_workers) {
            return Err(ConfigError::PollWorkers);
        }
        let max_queued_events = o
            .max_queued_events
            .or(file.max_queued_events)
            .unwrap_or(DEFAULT_MAX_QUEUED_EVENTS);
        if !(1024..=16 * 1024 * 1024).contains(&max_queued_events) {
            return Err(ConfigError::MaxQueued);
        }
        Ok(Settings {
            listen,
            max_queued_events,
            dedup_hash_mask: u64::MAX,
            seal_events: crate::store::tail::SEAL_EVENTS,
            data_dir: o
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            admin_token: o.admin_token.filter(|t| !t.is_empty()).map(Secret::new),
            max_body_bytes,
            cache_mb: o.cache_mb.or(file.cache_mb).unwrap_or(DEFAULT_CACHE_MB),
            min_free_mb: o
                .min_free_mb
                .or(file.min_free_mb)
                .unwrap_or(DEFAULT_MIN_FREE_MB),
            master_key: o.master_key.filter(|k| !k.is_empty()).map(Secret::new),
            poll: crate::connectors::engine::PollTuning {
                workers: poll_workers,
                ..Default::default()
            },
        })
    }

    /// Settings for a throwaway hub: port 0, the given data dir.
    pub fn for_data_dir(data_dir: &Path) -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            admin_token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cache_mb: DEFAULT_CACHE_MB,
            min_free_mb: DEFAULT_MIN_FREE_MB,
            max_queued_events: DEFAULT_MAX_QUEUED_EVENTS,
            dedup_hash_mask: u64::MAX,
            seal_events: crate::store::tail::SEAL_EVENTS,
            master_key: None,
            poll: Default::default(),
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_file_under_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trailhub.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmax_body_bytes = 2048\n",
        )
        .expect("write");
        let s = Settings::resolve(Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.max_body_bytes, 2048);
        let s = Settings::resolve(Overrides {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(s.listen.port(), 9100);
        std::fs::write(&path, "lisen = \"x\"\n").expect("write");
        let e = Settings::resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("typo");
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
