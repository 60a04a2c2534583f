//! Settings, layered: defaults < config file (`--config`/`TRAILHUB_CONFIG`, TOML) < environment < flags

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7410";
pub const DEFAULT_DATA_DIR: &str = "./trailhub-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Enough for the hot index blocks; more mostly grows RSS (see docs/PERFORMANCE.md).
pub const DEFAULT_CACHE_MB: u64 = 64;
pub const DEFAULT_MIN_FREE_MB: u64 = 256;
pub const DEFAULT_MAX_QUEUED_EVENTS: usize = crate::store::StoreOptions::DEFAULT_MAX_QUEUED_EVENTS;
/// Time for a request's headers, from when the hub waits for the request (also the keep-alive
/// idle timeout: see `crate::http::ConnectionLimits`).
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Time for a request's body, from the first time it waits for the client.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Largest webhook delivery, unless its connector's `[webhook] max_body_bytes` says otherwise.
pub const DEFAULT_WEBHOOK_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Webhook deliveries read and verified at once; more answer `503` with `Retry-After`.
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 64;
/// Seconds between `/readyz` turning 503 and the server stopping, at shutdown.
pub const DEFAULT_SHUTDOWN_DRAIN_SECS: u64 = 0;
/// Wrong bearer tokens a client address may present per window before it gets `429`.
pub const DEFAULT_AUTH_FAILURE_LIMIT: u32 = 10;
pub const DEFAULT_AUTH_FAILURE_WINDOW_SECS: u64 = 60;
/// Shortest admin token accepted from settings: long enough that guessing it (even at the
/// throttled rate) is hopeless. Minted tokens are 43 characters.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 24;
/// Events between two signed checkpoints (at most; see `checkpoint_interval_secs`).
pub const DEFAULT_CHECKPOINT_EVERY_EVENTS: u64 = 10_000;
/// Seconds between two signed checkpoints while events arrive.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;
/// Longest `since`..`until` of one export job or report (about three months).
pub const DEFAULT_JOBS_MAX_RANGE_DAYS: u32 = 92;
/// Days a finished export or report is kept for download before it expires.
pub const DEFAULT_JOBS_EXPIRE_DAYS: u32 = 7;
/// Export and report jobs running at once.
pub const DEFAULT_JOBS_WORKERS: usize = 2;
/// Jobs that may wait for a worker; more are refused until some finish.
pub const DEFAULT_JOBS_MAX_QUEUED: usize = 100;
/// Rows of one report (CSV and PDF); a report that would have more is cut and says so.
pub const DEFAULT_REPORT_MAX_ROWS: usize = 100_000;

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

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    /// For command-line flags: `#[arg(value_parser = clap::value_parser!(Secret))]` keeps a
    /// token given as a flag out of the parsed arguments' Debug output.
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(s))
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
    /// Master key for sealing credentials (`TRAILHUB_MASTER_KEY`); else read from
    /// [`Settings::master_key_path`].
    pub master_key: Option<Secret>,
    /// Where the master key file is (`master_key_file`); `None`: `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Poll engine and scheduler knobs.
    pub poll: PollTuning,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub webhook_max_body_bytes: usize,
    pub webhook_concurrency: usize,
    /// At shutdown, `/readyz` answers 503 this long before the server stops accepting requests.
    pub shutdown_drain: Duration,
    /// Wrong tokens per client address per `auth_failure_window` before `429`; 0 = no limit.
    pub auth_failure_limit: u32,
    pub auth_failure_window: Duration,
    /// The checkpoint signing key, how often the log is checkpointed, where checkpoints go.
    pub checkpoints: CheckpointSettings,
    /// Retention, legal holds' defaults, and the archive (`[retention]`, `[archive]`).
    pub retention: RetentionConfig,
    /// The MaxMind DB files of read-time enrichment (`[enrichment]`).
    pub enrichment: EnrichmentConfig,
    /// The notification outbox: retries, timeouts, history (`[notify]`).
    pub notify: NotifyTuning,
    /// Export jobs and reports (`[jobs]`).
    pub jobs: JobSettings,
}

/// Export jobs and reports: the range one may cover, how long its file is kept, how many run
/// and wait (`[jobs]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// Longest `until - since` of one export or report (`max_range_days`).
    pub max_range: Duration,
    /// A finished job's files are deleted this long after it finished (`expire_days`).
    pub expire_after: Duration,
    /// How often expired files are looked for.
    pub cleanup_interval: Duration,
    /// Jobs running at once (`workers`, 1 or 2).
    pub workers: usize,
    /// Jobs waiting for a worker, at most (`max_queued`).
    pub max_queued: usize,
    /// Rows of one report, at most (`max_report_rows`).
    pub max_report_rows: usize,
    /// A pause after every 1,000 events a job writes: zero, except in tests that need a job
    /// to be still running when they kill the hub (`--jobs-test-pause-ms`, hidden).
    pub test_pause: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            max_range: Duration::from_secs(u64::from(DEFAULT_JOBS_MAX_RANGE_DAYS) * 86_400),
            expire_after: Duration::from_secs(u64::from(DEFAULT_JOBS_EXPIRE_DAYS) * 86_400),
            cleanup_interval: Duration::from_secs(60),
            workers: DEFAULT_JOBS_WORKERS,
            max_queued: DEFAULT_JOBS_MAX_QUEUED,
            max_report_rows: DEFAULT_REPORT_MAX_ROWS,
            test_pause: Duration::ZERO,
        }
    }
}

/// `[enrichment]`: MaxMind DB files (GeoLite2 / GeoIP2 City and ASN) for locating actors' IP
/// addresses when events are read; without them events are served with `geo: null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentConfig {
    pub city_mmdb: Option<PathBuf>,
    pub asn_mmdb: Option<PathBuf>,
}

/// The signed checkpoints: the key that signs them, how often, and where they are published
/// (places the hub's host cannot rewrite, so that a rewritten history shows).
#[derive(Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// Where the signing key file is (`signing_key_file`); `None`: `<data_dir>/signing.key`.
    pub signing_key_file: Option<PathBuf>,
    /// The checkpoint origin line and key name (`log_origin`); `None`: the key file's name, or
    /// for a new key `trailhub/<16 hex digits of the public key's SHA-256>`.
    pub log_origin: Option<String>,
    /// At most this many events between checkpoints (`checkpoint_every_events`).
    pub every_events: u64,
    /// At most this long between checkpoints while events arrive (`checkpoint_interval_secs`).
    pub interval: Duration,
    /// A directory to write each checkpoint to (`checkpoint_publish_dir`), best on storage the
    /// host cannot rewrite (another machine's mount, WORM storage).
    pub publish_dir: Option<PathBuf>,
    /// An http(s) URL each newest checkpoint is POSTed to (`checkpoint_publish_url`); checked
    /// when settings are resolved. It may carry credentials: `Debug` hides them.
    pub publish_url: Option<String>,
    /// Also log each checkpoint at info (`checkpoint_publish_log`), for log shipping.
    pub publish_log: bool,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            signing_key_file: None,
            log_origin: None,
            every_events: DEFAULT_CHECKPOINT_EVERY_EVENTS,
            interval: Duration::from_secs(DEFAULT_CHECKPOINT_INTERVAL_SECS),
            publish_dir: None,
            publish_url: None,
            publish_log: true,
        }
    }
}

impl std::fmt::Debug for CheckpointSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSettings")
            .field("signing_key_file", &self.signing_key_file)
            .field("log_origin", &self.log_origin)
            .field("every_events", &self.every_events)
            .field("interval", &self.interval)
            .field("publish_dir", &self.publish_dir)
            .field(
                "publish_url",
                &self.publish_url.as_deref().map(url_for_logs),
            )
            .field("publish_log", &self.publish_log)
            .finish()
    }
}

/// A URL as logs and messages may show it: without user info (credentials), query or fragment,
/// which may carry secrets. Text that does not parse is not shown at all.
pub fn url_for_logs(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(mut url) => {
            // both fail only for URLs that cannot have user info, which then have none
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "<not a URL>".to_string(),
    }
}

/// Checks `checkpoint_publish_url`: an http or https URL naming a host.
fn check_publish_url(text: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| ConfigError::PublishUrl(url_for_logs(text), why.to_string());
    let url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("it must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it must name a host"));
    }
    Ok(())
}

/// What flags and the environment said; `None` falls through to the file, then the default.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: Option<usize>,
    pub cache_mb: Option<u64>,
    pub min_free_mb: Option<u64>,
    pub max_queued_events: Option<usize>,
    pub master_key: Option<Secret>,
    pub master_key_file: Option<PathBuf>,
    pub poll_workers: Option<usize>,
    pub header_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub webhook_max_body_bytes: Option<usize>,
    pub webhook_concurrency: Option<usize>,
    pub shutdown_drain_secs: Option<u64>,
    pub auth_failure_limit: Option<u32>,
    pub auth_failure_window_secs: Option<u64>,
    pub signing_key_file: Option<PathBuf>,
    pub log_origin: Option<String>,
    pub checkpoint_every_events: Option<u64>,
    pub checkpoint_interval_secs: Option<u64>,
    pub checkpoint_publish_dir: Option<PathBuf>,
    pub checkpoint_publish_url: Option<Secret>,
    pub checkpoint_publish_log: Option<bool>,
    pub jobs_test_pause_ms: Option<u64>,
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
    /// Outside the data dir, so that a copy of the data dir does not carry its key.
    master_key_file: Option<PathBuf>,
    /// Poll cycles running at once.
    poll_workers: Option<usize>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    webhook_max_body_bytes: Option<usize>,
    webhook_concurrency: Option<usize>,
    shutdown_drain_secs: Option<u64>,
    auth_failure_limit: Option<u32>,
    auth_failure_window_secs: Option<u64>,
    /// Outside the data dir, so that whoever can write the data dir cannot also sign.
    signing_key_file: Option<PathBuf>,
    log_origin: Option<String>,
    checkpoint_every_events: Option<u64>,
    checkpoint_interval_secs: Option<u64>,
    checkpoint_publish_dir: Option<PathBuf>,
    checkpoint_publish_url: Option<String>,
    checkpoint_publish_log: Option<bool>,
    /// `[retention]`: the policy until one is set through the API or CLI, and the job's pace.
    retention: Option<RetentionFile>,
    /// `[archive]`: where purged events are archived first.
    archive: Option<toml::Table>,
    /// `[enrichment]`: the MaxMind DB files.
    enrichment: Option<EnrichmentConfig>,
    /// `[notify]`: the notification outbox's retries, timeouts and history.
    notify: Option<NotifyFile>,
    /// `[jobs]`: export jobs and reports.
    jobs: Option<JobsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    retry_base_ms: Option<u64>,
    retry_max_secs: Option<u64>,
    max_attempts: Option<u32>,
    max_age_hours: Option<u64>,
    concurrency: Option<usize>,
    connect_timeout_secs: Option<u64>,
    timeout_secs: Option<u64>,
    history_max: Option<usize>,
    history_days: Option<u64>,
}

/// Knobs of the notification outbox (src/notify/); tests shorten the retry base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTuning {
    /// The first retry's delay; each later one doubles it (plus up to 25% jitter).
    pub retry_base: Duration,
    /// The longest delay between two attempts (also caps a receiver's `Retry-After`).
    pub retry_max: Duration,
    /// Attempts before a delivery is given up as failed...
    pub max_attempts: u32,
    /// ...or this long after it was enqueued, whichever comes first.
    pub max_age: Duration,
    /// Deliveries attempted at once.
    pub concurrency: usize,
    /// Time to connect to a receiver (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for a whole attempt: connect, send, and read the answer.
    pub timeout: Duration,
    /// Finished deliveries kept as history: at most this many...
    pub history_max: usize,
    /// ...and none older than this.
    pub history_age: Duration,
}

impl Default for NotifyTuning {
    fn default() -> Self {
        NotifyTuning {
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 3600),
            concurrency: 8,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            history_max: 10_000,
            history_age: Duration::from_secs(30 * 86_400),
        }
    }
}

fn resolve_notify(file: &FileSettings) -> Result<NotifyTuning, ConfigError> {
    let d = NotifyTuning::default();
    let Some(n) = &file.notify else {
        return Ok(d);
    };
    let range = |name: &'static str, v: u64, min: u64, max: u64| {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::OutOfRange(name, min as usize, max as usize))
        }
    };
    let retry_base_ms = range(
        "notify.retry_base_ms",
        n.retry_base_ms.unwrap_or(d.retry_base.as_millis() as u64),
        10,
        3_600_000,
    )?;
    let retry_max_secs = range(
        "notify.retry_max_secs",
        n.retry_max_secs.unwrap_or(d.retry_max.as_secs()),
        1,
        86_400,
    )?;
    Ok(NotifyTuning {
        retry_base: Duration::from_millis(retry_base_ms),
        retry_max: Duration::from_secs(retry_max_secs),
        max_attempts: range(
            "notify.max_attempts",
            u64::from(n.max_attempts.unwrap_or(d.max_attempts)),
            1,
            50,
        )? as u32,
        max_age: Duration::from_secs(
            3600 * range(
                "notify.max_age_hours",
                n.max_age_hours.unwrap_or(d.max_age.as_secs() / 3600),
                1,
                24 * 30,
            )?,
        ),
        concurrency: bounded(
            "notify.concurrency",
            n.concurrency.unwrap_or(d.concurrency),
            1,
            256,
        )?,
        connect_timeout: seconds(
            "notify.connect_timeout_secs",
            n.connect_timeout_secs
                .unwrap_or(d.connect_timeout.as_secs()),
        )?,
        timeout: seconds(
            "notify.timeout_secs",
            n.timeout_secs.unwrap_or(d.timeout.as_secs()),
        )?,
        history_max: bounded(
            "notify.history_max",
            n.history_max.unwrap_or(d.history_max),
            10,
            1_000_000,
        )?,
        history_age: Duration::from_secs(
            86_400
                * range(
                    "notify.history_days",
                    n.history_days.unwrap_or(d.history_age.as_secs() / 86_400),
                    1,
                    3650,
                )?,
        ),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsFile {
    max_range_days: Option<u32>,
    expire_days: Option<u32>,
    workers: Option<usize>,
    max_queued: Option<usize>,
    max_report_rows: Option<usize>,
}

fn resolve_jobs(o: &Overrides, file: &FileSettings) -> Result<JobSettings, ConfigError> {
    let mut out = JobSettings::default();
    let days = |d: u32| Duration::from_secs(u64::from(d) * 86_400);
    if let Some(j) = &file.jobs {
        if let Some(d) = j.max_range_days {
            out.max_range = days(bounded("jobs.max_range_days", d as usize, 1, 3660)? as u32);
        }
        if let Some(d) = j.expire_days {
            out.expire_after = days(bounded("jobs.expire_days", d as usize, 1, 3650)? as u32);
        }
        if let Some(w) = j.workers {
            out.workers = bounded("jobs.workers", w, 1, 2)?;
        }
        if let Some(q) = j.max_queued {
            out.max_queued = bounded("jobs.max_queued", q, 1, 1000)?;
        }
        if let Some(r) = j.max_report_rows {
            out.max_report_rows = bounded("jobs.max_report_rows", r, 1, 1_000_000)?;
        }
    }
    if let Some(ms) = o.jobs_test_pause_ms {
        out.test_pause = Duration::from_millis(ms.min(10_000));
    }
    Ok(out)
}

/// A number of days, or `"forever"` (TOML has no null).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DaysValue {
    Days(u32),
    Word(String),
}

impl DaysValue {
    fn days(&self, name: &str) -> Result<Option<u32>, ConfigError> {
        match self {
            DaysValue::Days(d) => Ok(Some(*d)),
            DaysValue::Word(w) if w == "forever" => Ok(None),
            DaysValue::Word(w) => Err(ConfigError::Retention(format!(
                "{name}: a number of days or \"forever\", not {w:?}"
            ))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    enabled: Option<bool>,
    default_days: Option<DaysValue>,
    categories: Option<std::collections::BTreeMap<String, DaysValue>>,
    integrations: Option<std::collections::BTreeMap<String, DaysValue>>,
    archive: Option<bool>,
    interval_secs: Option<u64>,
    restore_hold_days: Option<u64>,
}

/// `[retention]` and `[archive]` as the file gives them; the retention module checks and
/// applies them over its defaults (`RetentionSettings::from_config`).
#[derive(Debug, Clone, Default)]
pub struct RetentionConfig {
    pub enabled: Option<bool>,
    /// `Some(None)`: keep forever.
    pub default_days: Option<Option<u32>>,
    pub categories: std::collections::BTreeMap<String, Option<u32>>,
    pub integrations: std::collections::BTreeMap<String, Option<u32>>,
    pub archive_first: Option<bool>,
    pub interval_secs: Option<u64>,
    pub restore_hold_days: Option<u64>,
    /// The `[archive]` table: a target (`dir`, or S3 keys) and `key_file`.
    pub archive: Option<toml::Table>,
}

fn resolve_retention(file: &FileSettings) -> Result<RetentionConfig, ConfigError> {
    let mut out = RetentionConfig {
        archive: file.archive.clone(),
        ..RetentionConfig::default()
    };
    if let Some(r) = &file.retention {
        out.enabled = r.enabled;
        if let Some(d) = &r.default_days {
            out.default_days = Some(d.days("retention.default_days")?);
        }
        for (c, d) in r.categories.iter().flatten() {
            out.categories
                .insert(c.clone(), d.days(&format!("retention.categories.{c}"))?);
        }
        for (i, d) in r.integrations.iter().flatten() {
            out.integrations
                .insert(i.clone(), d.days(&format!("retention.integrations.{i}"))?);
        }
        out.archive_first = r.archive;
        out.interval_secs = r.interval_secs;
        out.restore_hold_days = r.restore_hold_days;
    }
    Ok(out)
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
    #[error(
        "the admin token (--admin-token / TRAILHUB_ADMIN_TOKEN) must be at least {MIN_ADMIN_TOKEN_CHARS} characters, got {0}; generate one with e.g. `openssl rand -base64 32`"
    )]
    AdminTokenTooShort(usize),
    #[error("{0} must be between 1 and 3600 seconds")]
    Timeout(&'static str),
    #[error("{0} must be between {1} and {2}")]
    OutOfRange(&'static str, usize, usize),
    #[error("log_origin {0:?} cannot name a checkpoint signing key: {1}")]
    LogOrigin(String, crate::evidence::note::NoteError),
    #[error("checkpoint_publish_url {0}: {1}")]
    PublishUrl(String, String),
    #[error("{0}")]
    Retention(String),
}

/// Refuses an admin token too short to resist guessing.
pub fn check_admin_token(token: &Secret) -> Result<(), ConfigError> {
    let chars = token.expose().chars().count();
    if chars < MIN_ADMIN_TOKEN_CHARS {
        return Err(ConfigError::AdminTokenTooShort(chars));
    }
    Ok(())
}

fn seconds(name: &'static str, value: u64) -> Result<Duration, ConfigError> {
    if (1..=3600).contains(&value) {
        Ok(Duration::from_secs(value))
    } else {
        Err(ConfigError::Timeout(name))
    }
}

fn bounded(name: &'static str, value: usize, min: usize, max: usize) -> Result<usize, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange(name, min, max))
    }
}

impl Settings {
    pub fn resolve(o: Overrides) -> Result<Settings, ConfigError> {
        let file = match &o.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let checkpoints = resolve_checkpoints(&o, &file)?;
        let retention = resolve_retention(&file)?;
        let notify = resolve_notify(&file)?;
        let jobs = resolve_jobs(&o, &file)?;
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
            .unwrap_or(PollTuning::default().workers);
        if !(1..=256).contains(&poll_workers) {
            return Err(ConfigError::PollWorkers);
        }
        let header_timeout = seconds(
            "header_timeout_secs",
            o.header_timeout_secs
                .or(file.header_timeout_secs)
                .unwrap_or(DEFAULT_HEADER_TIMEOUT_SECS),
        )?;
        let body_timeout = seconds(
            "body_timeout_secs",
            o.body_timeout_secs
                .or(file.body_timeout_secs)
                .unwrap_or(DEFAULT_BODY_TIMEOUT_SECS),
        )?;
        let max_connections = bounded(
            "max_connections",
            o.max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            1,
            1 << 20,
        )?;
        let webhook_max_body_bytes = bounded(
            "webhook_max_body_bytes",
            o.webhook_max_body_bytes
                .or(file.webhook_max_body_bytes)
                .unwrap_or(DEFAULT_WEBHOOK_MAX_BODY_BYTES.min(max_body_bytes)),
            1024,
            max_body_bytes,
        )?;
        let max_queued_events = bounded(
            "max_queued_events",
            o.max_queued_events
                .or(file.max_queued_events)
                .unwrap_or(DEFAULT_MAX_QUEUED_EVENTS),
            1024,
            16 << 20,
        )?;
        let webhook_concurrency = bounded(
            "webhook_concurrency",
            o.webhook_concurrency
                .or(file.webhook_concurrency)
                .unwrap_or(DEFAULT_WEBHOOK_CONCURRENCY),
            1,
            4096,
        )?;
        let shutdown_drain_secs = o
            .shutdown_drain_secs
            .or(file.shutdown_drain_secs)
            .unwrap_or(DEFAULT_SHUTDOWN_DRAIN_SECS);
        if shutdown_drain_secs > 300 {
            return Err(ConfigError::OutOfRange("shutdown_drain_secs", 0, 300));
        }
        let auth_failure_limit = o
            .auth_failure_limit
            .or(file.auth_failure_limit)
            .unwrap_or(DEFAULT_AUTH_FAILURE_LIMIT);
        let auth_failure_window = seconds(
            "auth_failure_window_secs",
            o.auth_failure_window_secs
                .or(file.auth_failure_window_secs)
                .unwrap_or(DEFAULT_AUTH_FAILURE_WINDOW_SECS),
        )?;
        let admin_token = o.admin_token.filter(|t| !t.expose().is_empty());
        if let Some(t) = &admin_token {
            check_admin_token(t)?;
        }
        Ok(Settings {
            listen,
            data_dir: o
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            admin_token,
            max_body_bytes,
            max_queued_events,
            dedup_hash_mask: u64::MAX,
            seal_events: crate::store::tail::SEAL_EVENTS,
            cache_mb: o.cache_mb.or(file.cache_mb).unwrap_or(DEFAULT_CACHE_MB),
            min_free_mb: o
                .min_free_mb
                .or(file.min_free_mb)
                .unwrap_or(DEFAULT_MIN_FREE_MB),
            master_key: o.master_key.filter(|k| !k.expose().is_empty()),
            master_key_file: o
                .master_key_file
                .or(file.master_key_file)
                .filter(|p| !p.as_os_str().is_empty()),
            poll: PollTuning {
                workers: poll_workers,
                ..Default::default()
            },
            header_timeout,
            body_timeout,
            max_connections,
            webhook_max_body_bytes,
            webhook_concurrency,
            shutdown_drain: Duration::from_secs(shutdown_drain_secs),
            auth_failure_limit,
            auth_failure_window,
            checkpoints,
            retention,
            notify,
            jobs,
            enrichment: file.enrichment.unwrap_or_default(),
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
            master_key_file: None,
            poll: Default::default(),
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            webhook_max_body_bytes: DEFAULT_WEBHOOK_MAX_BODY_BYTES,
            webhook_concurrency: DEFAULT_WEBHOOK_CONCURRENCY,
            shutdown_drain: Duration::from_secs(DEFAULT_SHUTDOWN_DRAIN_SECS),
            auth_failure_limit: DEFAULT_AUTH_FAILURE_LIMIT,
            auth_failure_window: Duration::from_secs(DEFAULT_AUTH_FAILURE_WINDOW_SECS),
            checkpoints: CheckpointSettings::default(),
            retention: RetentionConfig::default(),
            notify: NotifyTuning::default(),
            jobs: JobSettings::default(),
            enrichment: EnrichmentConfig::default(),
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// The master key file: `master_key_file`, else `<data_dir>/master.key`.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(MASTER_KEY_FILE))
    }

    /// True when the key that opens the credentials is read from a file inside the data dir.
    pub fn master_key_inside_data_dir(&self) -> bool {
        self.master_key.is_none() && self.inside_data_dir(&self.master_key_path())
    }

    /// The checkpoint signing key file: `signing_key_file`, else `<data_dir>/signing.key`.
    pub fn signing_key_path(&self) -> PathBuf {
        self.checkpoints
            .signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(SIGNING_KEY_FILE))
    }

    /// True when `file` (which may not exist yet) is inside the data dir.
    pub fn inside_data_dir(&self, file: &Path) -> bool {
        // the file may not exist yet: compare the directories that hold it
        let file_dir = file
            .parent()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
        let data = self
            .data_dir
            .canonicalize()
            .unwrap_or_else(|_| self.data_dir.clone());
        file_dir.is_some_and(|d| d.starts_with(&data))
    }
}

fn resolve_checkpoints(
    o: &Overrides,
    file: &FileSettings,
) -> Result<CheckpointSettings, ConfigError> {
    let defaults = CheckpointSettings::default();
    let log_origin = o
        .log_origin
        .clone()
        .or_else(|| file.log_origin.clone())
        .filter(|s| !s.is_empty());
    if let Some(origin) = &log_origin {
        crate::evidence::note::check_key_name(origin)
            .map_err(|e| ConfigError::LogOrigin(origin.clone(), e))?;
    }
    let every_events = o
        .checkpoint_every_events
        .or(file.checkpoint_every_events)
        .unwrap_or(defaults.every_events);
    if !(1..=10_000_000).contains(&every_events) {
        return Err(ConfigError::OutOfRange(
            "checkpoint_every_events",
            1,
            10_000_000,
        ));
    }
    let interval_secs = o
        .checkpoint_interval_secs
        .or(file.checkpoint_interval_secs)
        .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL_SECS);
    if !(1..=86_400).contains(&interval_secs) {
        return Err(ConfigError::OutOfRange(
            "checkpoint_interval_secs",
            1,
            86_400,
        ));
    }
    let publish_url = o
        .checkpoint_publish_url
        .as_ref()
        .map(|s| s.expose().to_string())
        .or_else(|| file.checkpoint_publish_url.clone())
        .filter(|s| !s.is_empty());
    if let Some(url) = &publish_url {
        check_publish_url(url)?;
    }
    Ok(CheckpointSettings {
        signing_key_file: o
            .signing_key_file
            .clone()
            .or_else(|| file.signing_key_file.clone())
            .filter(|p| !p.as_os_str().is_empty()),
        log_origin,
        every_events,
        interval: Duration::from_secs(interval_secs),
        publish_dir: o
            .checkpoint_publish_dir
            .clone()
            .or_else(|| file.checkpoint_publish_dir.clone())
            .filter(|p| !p.as_os_str().is_empty()),
        publish_url,
        publish_log: o
            .checkpoint_publish_log
            .or(file.checkpoint_publish_log)
            .unwrap_or(defaults.publish_log),
    })
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

/// The master key's file name in the data dir when `master_key_file` is not set.
pub const MASTER_KEY_FILE: &str = "master.key";
/// The checkpoint signing key's file name in the data dir when `signing_key_file` is not set.
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// Knobs of the engine and scheduler (tests shorten them).
#[derive(Debug, Clone)]
pub struct PollTuning {
    pub request_timeout: Duration,
    /// First retry delay for 5xx and timeouts; doubles per attempt, with jitter.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub max_retries: u32,
    /// Upper bound on a single vendor-requested wait.
    pub max_wait: Duration,
    /// Cycles running at once.
    pub workers: usize,
    /// Longest pause after failing cycles.
    pub error_backoff_max: Duration,
    /// Longest idle backoff.
    pub idle_backoff_max: Duration,
    /// A first backfill of a connector that takes a time window is split into this many
    /// windows (fewer when the backfill is short, see `backfill_slice_min`)...
    pub backfill_slices: u32,
    /// ...each at least this long...
    pub backfill_slice_min: Duration,
    /// ...walked this many at once, under the integration's one rate gate.
    pub backfill_lanes: usize,
}

impl Default for PollTuning {
    fn default() -> Self {
        PollTuning {
            request_timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            max_retries: 4,
            max_wait: Duration::from_secs(900),
            workers: 4,
            error_backoff_max: Duration::from_secs(900),
            idle_backoff_max: Duration::from_secs(300),
            backfill_slices: 16,
            backfill_slice_min: Duration::from_secs(3600),
            backfill_lanes: 8,
        }
    }
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
    fn enrichment_files_come_from_their_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trailhub.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::resolve(Overrides {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let s = resolve("listen = \"127.0.0.1:9000\"\n").expect("valid");
        assert_eq!(s.enrichment, EnrichmentConfig::default(), "none by default");
        let s = resolve(
            "[enrichment]\ncity_mmdb = \"/var/lib/geo/GeoLite2-City.mmdb\"\nasn_mmdb = \"/var/lib/geo/GeoLite2-ASN.mmdb\"\n",
        )
        .expect("valid");
        assert_eq!(
            s.enrichment.city_mmdb.as_deref(),
            Some(Path::new("/var/lib/geo/GeoLite2-City.mmdb"))
        );
        assert_eq!(
            s.enrichment.asn_mmdb.as_deref(),
            Some(Path::new("/var/lib/geo/GeoLite2-ASN.mmdb"))
        );
        let s = resolve("[enrichment]\nasn_mmdb = \"asn.mmdb\"\n").expect("valid");
        assert_eq!(s.enrichment.city_mmdb, None);
        let e = resolve("[enrichment]\ncountry_mmdb = \"x.mmdb\"\n").expect_err("typo");
        assert!(e.to_string().contains("country_mmdb"), "{e}");
    }

    #[test]
    fn jobs_table_sets_ranges_and_refuses_out_of_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trailhub.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::resolve(Overrides {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let s = resolve("").expect("defaults");
        assert_eq!(s.jobs, JobSettings::default());
        assert_eq!(s.jobs.max_range, Duration::from_secs(92 * 86_400));
        let s = resolve("[jobs]\nmax_range_days = 31\nexpire_days = 1\nworkers = 1\nmax_queued = 5\nmax_report_rows = 10\n")
            .expect("valid");
        assert_eq!(s.jobs.max_range, Duration::from_secs(31 * 86_400));
        assert_eq!(s.jobs.expire_after, Duration::from_secs(86_400));
        assert_eq!(
            (s.jobs.workers, s.jobs.max_queued, s.jobs.max_report_rows),
            (1, 5, 10)
        );
        for (bad, name) in [
            ("[jobs]\nworkers = 3\n", "jobs.workers"),
            ("[jobs]\nmax_range_days = 0\n", "jobs.max_range_days"),
            ("[jobs]\nmax_queued = 5000\n", "jobs.max_queued"),
            ("[jobs]\nexpire = 3\n", "expire"),
        ] {
            let e = resolve(bad).expect_err(bad);
            assert!(e.to_string().contains(name), "{bad}: {e}");
        }
    }

    #[test]
    fn the_notify_table_is_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trailhub.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::resolve(Overrides {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let s = resolve("").expect("valid");
        assert_eq!(s.notify, NotifyTuning::default());
        assert_eq!(s.notify.retry_base, Duration::from_secs(5));
        let s = resolve(
            "[notify]\nretry_base_ms = 100\nmax_attempts = 3\nmax_age_hours = 2\nconcurrency = 2\n\
             timeout_secs = 7\nhistory_max = 50\nhistory_days = 1\n",
        )
        .expect("valid");
        assert_eq!(s.notify.retry_base, Duration::from_millis(100));
        assert_eq!(s.notify.max_attempts, 3);
        assert_eq!(s.notify.max_age, Duration::from_secs(7200));
        assert_eq!(s.notify.concurrency, 2);
        assert_eq!(s.notify.timeout, Duration::from_secs(7));
        assert_eq!(s.notify.history_max, 50);
        assert_eq!(s.notify.history_age, Duration::from_secs(86_400));
        for bad in [
            "[notify]\nretry_base_ms = 1\n",
            "[notify]\nmax_attempts = 0\n",
            "[notify]\nmax_attempts = 51\n",
            "[notify]\nconcurrency = 0\n",
            "[notify]\ntimeout_secs = 0\n",
            "[notify]\nretry_bas_ms = 100\n",
        ] {
            let e = resolve(bad).expect_err(bad);
            assert!(
                e.to_string().contains("notify") || e.to_string().contains("retry_bas"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn limits_layer_and_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trailhub.toml");
        std::fs::write(
            &path,
            "header_timeout_secs = 5\nbody_timeout_secs = 30\nmax_connections = 64\n\
             webhook_max_body_bytes = 4096\nwebhook_concurrency = 8\nshutdown_drain_secs = 2\n\
             auth_failure_limit = 0\nauth_failure_window_secs = 10\n\
             master_key_file = \"/etc/trailhub/master.key\"\n",
        )
        .expect("write");
        let s = Settings::resolve(Overrides {
            config: Some(path.clone()),
            max_connections: Some(32),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(s.header_timeout, Duration::from_secs(5));
        assert_eq!(s.body_timeout, Duration::from_secs(30));
        assert_eq!(s.max_connections, 32, "flags win over the file");
        assert_eq!(s.webhook_max_body_bytes, 4096);
        assert_eq!(s.webhook_concurrency, 8);
        assert_eq!(s.shutdown_drain, Duration::from_secs(2));
        assert_eq!(s.auth_failure_limit, 0);
        assert_eq!(
            s.master_key_path(),
            PathBuf::from("/etc/trailhub/master.key")
        );
        assert!(!s.master_key_inside_data_dir());
        let bad = [
            Overrides {
                header_timeout_secs: Some(0),
                ..Default::default()
            },
            Overrides {
                max_connections: Some(0),
                ..Default::default()
            },
            Overrides {
                webhook_max_body_bytes: Some(DEFAULT_MAX_BODY_BYTES + 1),
                ..Default::default()
            },
            Overrides {
                admin_token: Some(Secret::new("short")),
                ..Default::default()
            },
        ];
        for o in bad {
            assert!(Settings::resolve(o).is_err());
        }
        let s = Settings::resolve(Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .expect("defaults");
        assert!(s.master_key_inside_data_dir());
    }

    #[test]
    fn checkpoint_settings_layer_and_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = Settings::resolve(Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .expect("defaults");
        assert_eq!(defaults.checkpoints, CheckpointSettings::default());
        assert_eq!(
            Settings::for_data_dir(dir.path()).checkpoints,
            CheckpointSettings::default()
        );
        assert_eq!(defaults.checkpoints.every_events, 10_000);
        assert_eq!(defaults.checkpoints.interval, Duration::from_secs(60));
        assert!(defaults.checkpoints.publish_log);
        assert_eq!(
            defaults.signing_key_path(),
            dir.path().join(SIGNING_KEY_FILE)
        );

        let path = dir.path().join("trailhub.toml");
        std::fs::write(
            &path,
            "signing_key_file = \"/etc/trailhub/signing.key\"\nlog_origin = \"example.com/audit\"\n\
             checkpoint_every_events = 500\ncheckpoint_interval_secs = 30\n\
             checkpoint_publish_dir = \"/mnt/worm/checkpoints\"\n\
             checkpoint_publish_url = \"https://witness.example/add\"\n\
             checkpoint_publish_log = false\n",
        )
        .expect("write");
        let s = Settings::resolve(Overrides {
            config: Some(path.clone()),
            checkpoint_every_events: Some(1000),
            log_origin: Some("example.com/flag".into()),
            ..Default::default()
        })
        .expect("valid");
        let c = &s.checkpoints;
        assert_eq!(c.every_events, 1000, "flags win over the file");
        assert_eq!(c.log_origin.as_deref(), Some("example.com/flag"));
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(
            c.publish_dir.as_deref(),
            Some(Path::new("/mnt/worm/checkpoints"))
        );
        assert_eq!(
            c.publish_url.as_deref(),
            Some("https://witness.example/add")
        );
        assert!(!c.publish_log);
        assert_eq!(
            s.signing_key_path(),
            PathBuf::from("/etc/trailhub/signing.key")
        );

        let refused = |o: Overrides| Settings::resolve(o).expect_err("invalid").to_string();
        let message = refused(Overrides {
            checkpoint_every_events: Some(0),
            ..Default::default()
        });
        assert!(message.contains("checkpoint_every_events"), "{message}");
        assert!(Settings::resolve(Overrides {
            checkpoint_every_events: Some(10_000_001),
            ..Default::default()
        })
        .is_err());
        let message = refused(Overrides {
            checkpoint_interval_secs: Some(86_401),
            ..Default::default()
        });
        assert!(message.contains("checkpoint_interval_secs"), "{message}");
        let message = refused(Overrides {
            log_origin: Some("two words".into()),
            ..Default::default()
        });
        assert!(message.contains("log_origin"), "{message}");
        for bad in [
            "ftp://user:pw-secret-1234@witness.example/",
            "witness.example/add",
            "https://",
        ] {
            let message = refused(Overrides {
                checkpoint_publish_url: Some(Secret::new(bad)),
                ..Default::default()
            });
            assert!(message.contains("checkpoint_publish_url"), "{message}");
            assert!(!message.contains("pw-secret-1234"), "{message}");
        }
        let with_secret = Settings::resolve(Overrides {
            checkpoint_publish_url: Some(Secret::new(
                "https://user:pw-secret-1234@witness.example/add?key=query-secret-5678",
            )),
            ..Default::default()
        })
        .expect("valid");
        let shown = format!("{with_secret:?}");
        assert!(shown.contains("https://witness.example/add"), "{shown}");
        assert!(
            !shown.contains("pw-secret-1234") && !shown.contains("query-secret-5678"),
            "{shown}"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
        let token = "admin-token-that-must-not-print-0123";
        let key = "3333333333333333333333333333333333333333333333333333333333333333";
        let overrides = Overrides {
            admin_token: Some(Secret::new(token)),
            master_key: Some(Secret::new(key)),
            ..Default::default()
        };
        let settings = Settings::resolve(overrides.clone()).expect("valid");
        for shown in [format!("{overrides:?}"), format!("{settings:?}")] {
            assert!(!shown.contains(token), "{shown}");
            assert!(!shown.contains(key), "{shown}");
        }
    }
}
