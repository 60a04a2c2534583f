//! Publishing signed checkpoints where the hub's host cannot rewrite them
//!
//! A checkpoint kept only on the hub proves nothing against whoever controls the hub: they can
//! rewrite the log and sign new checkpoints. Once a checkpoint is elsewhere (a directory on
//! another machine or WORM storage, an HTTP endpoint such as a witness, the shipped logs), a
//! rewritten history no longer matches it. Three sinks, each optional:
//!
//! - directory: every checkpoint as `checkpoint-<size, 20 digits>.txt`, never overwritten with
//!   different bytes (that would be a rewrite, or two hubs sharing the directory), and
//!   `latest.txt`;
//! - HTTP: the newest checkpoint POSTed to a URL, retried in the background with backoff; a
//!   newer checkpoint replaces an older one not yet sent, since it commits to everything
//!   before it;
//! - log: each checkpoint as one info line.
//!
//! What each sink has is recorded durably (`published:<sink>` → newest size, u64 big-endian,
//! in the tree the caller gives), so that after a restart [`Publisher::catch_up`] sends what a
//! sink missed, instead of the checkpoint being lost with the memory that held it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{url_for_logs, CheckpointSettings};
use crate::redact::Scrubber;

/// Where a checkpoint is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Dir,
    Http,
    Log,
}

impl Sink {
    pub fn name(self) -> &'static str {
        match self {
            Sink::Dir => "dir",
            Sink::Http => "http",
            Sink::Log => "log",
        }
    }

    /// The key of this sink's mark in the marks tree.
    fn mark_key(self) -> String {
        format!("published:{}", self.name())
    }
}

/// The mark of the newest key hand-over published (u64 big-endian).
const HANDOVER_MARK: &str = "published:handover";
/// POSTs of one hand-over before it is left to the directory and the API.
const HANDOVER_ATTEMPTS: u32 = 20;

/// The newest checkpoint in the publish directory.
pub const LATEST_FILE: &str = "latest.txt";
/// First wait after a failed POST; it doubles per failure.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest wait between two POSTs of a checkpoint.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// The time a POST may take, connecting included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on a `Retry-After` the endpoint asks for, seconds.
const RETRY_AFTER_SECS: std::ops::RangeInclusive<u64> = 1..=600;
/// The most of a response body read (the rest is ignored).
const MAX_RESPONSE_BYTES: usize = 4096;
/// The most of a response body quoted in a log line.
const MAX_QUOTED_BYTES: usize = 200;

/// The file a checkpoint of `size` is written to in the publish directory.
pub fn checkpoint_file_name(size: u64) -> String {
    format!("checkpoint-{size:020}.txt")
}

/// The file a key hand-over checkpoint of tree size `size` is published as: beside the
/// checkpoint of that size the old key signed before, not over it.
pub fn handover_file_name(size: u64) -> String {
    format!("handover-{size:020}.txt")
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("checkpoint_publish_dir: cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} already holds a different checkpoint of size {size}: the log was rewritten, or two hubs publish to one directory", path.display())]
    Conflict { path: PathBuf, size: u64 },
    #[error("cannot record which checkpoints were published: {0}")]
    Marks(#[from] sled::Error),
    #[error("checkpoint_publish_url {0}: {1}")]
    Url(String, String),
}

/// A checkpoint waiting for the HTTP endpoint.
#[derive(Clone)]
struct Pending {
    size: u64,
    note: Arc<str>,
}

/// Publishes signed checkpoints to the configured sinks. The HTTP sink's deliveries run in a
/// background task, started with the first checkpoint and ended when the publisher is dropped
/// (what it had not delivered is sent by the next start's [`Publisher::catch_up`]).
pub struct Publisher {
    dir: Option<DirSink>,
    http: Option<HttpSink>,
    log: bool,
    marks: sled::Tree,
    retry_base: Duration,
    retry_max: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("dir", &self.dir.as_ref().map(|d| &d.path))
            .field("url", &self.http.as_ref().map(|h| &h.target.shown))
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

struct DirSink {
    path: PathBuf,
    /// One writer at a time: `latest.txt` and the mark follow the newest checkpoint.
    lock: tokio::sync::Mutex<()>,
}

struct HttpSink {
    target: Arc<HttpTarget>,
    /// The newest checkpoint handed to the HTTP sink; the delivery task takes it from here.
    newest: watch::Sender<Option<Pending>>,
    worker: OnceLock<()>,
}

struct HttpTarget {
    url: reqwest::Url,
    /// The URL as logs show it: no user info, query or fragment.
    shown: String,
    client: reqwest::Client,
    /// The URL's secrets, scrubbed from any response body quoted in a log line.
    scrubber: Scrubber,
}

impl Publisher {
    /// The sinks `settings` configures; `marks` keeps what each has.
    pub fn new(
        settings: &CheckpointSettings,
        marks: sled::Tree,
    ) -> Result<Publisher, PublishError> {
        let http = match &settings.publish_url {
            Some(text) => Some(HttpSink::new(text)?),
            None => None,
        };
        Ok(Publisher {
            dir: settings.publish_dir.clone().map(|path| DirSink {
                path,
                lock: tokio::sync::Mutex::new(()),
            }),
            http,
            log: settings.publish_log,
            marks,
            retry_base: DEFAULT_RETRY_BASE,
            retry_max: DEFAULT_RETRY_MAX,
        })
    }

    /// Other waits between POSTs (tests shorten them). Takes effect for a delivery task not
    /// yet started, so call it before the first checkpoint.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Publisher {
        self.retry_base = base;
        self.retry_max = max.max(base);
        self
    }

    /// The sinks checkpoints go to.
    pub fn sinks(&self) -> Vec<Sink> {
        let mut sinks = Vec::new();
        if self.dir.is_some() {
            sinks.push(Sink::Dir);
        }
        if self.http.is_some() {
            sinks.push(Sink::Http);
        }
        if self.log {
            sinks.push(Sink::Log);
        }
        sinks
    }

    /// The size of the newest checkpoint `sink` is known to have.
    pub fn published(&self, sink: Sink) -> Result<Option<u64>, PublishError> {
        read_mark(&self.marks, sink)
    }

    /// The checkpoints some sink may lack are those larger than this (`None`: all of them);
    /// what to pass to [`Publisher::catch_up`].
    pub fn pending_after(&self) -> Result<Option<u64>, PublishError> {
        let mut lowest = u64::MAX;
        for sink in self.sinks() {
            match self.published(sink)? {
                Some(size) => lowest = lowest.min(size),
                None => return Ok(None),
            }
        }
        Ok(Some(lowest))
    }

    /// Publishes a newly signed checkpoint (`note_text`: the whole signed note) of tree size
    /// `size`. The directory is written before this returns; the HTTP endpoint is sent to in
    /// the background. Fails when the directory cannot be written or already holds a
    /// different checkpoint of this size (logged at error too: an operator must look).
    pub async fn publish(&self, size: u64, note_text: &str) -> Result<(), PublishError> {
        let mut first_error = None;
        if self.log {
            if let Err(e) = self.log_checkpoint(size, note_text) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(http) = &self.http {
            self.hand_to_http(http, size, note_text);
        }
        if let Some(dir) = &self.dir {
            let _one_writer = dir.lock.lock().await;
            let newest = read_mark(&self.marks, Sink::Dir)?.is_none_or(|m| size >= m);
            if let Err(e) = self
                .write_to_dir(dir, vec![(size, note_text.to_string())], newest)
                .await
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// After a restart: publishes to each sink what it has not got of `pending` (checkpoints
    /// as `(size, signed note)`, those after [`Publisher::pending_after`]). The directory gets
    /// every checkpoint whose file is missing; HTTP and the log only the newest, which commits
    /// to all before it.
    pub async fn catch_up(
        &self,
        pending: impl Iterator<Item = (u64, String)>,
    ) -> Result<(), PublishError> {
        let mut pending: Vec<(u64, String)> = pending.collect();
        pending.sort_by_key(|(size, _)| *size);
        pending.dedup_by_key(|(size, _)| *size);
        let Some((newest_size, newest_note)) = pending.last().cloned() else {
            return Ok(());
        };
        let mut first_error = None;
        if self.log && read_mark(&self.marks, Sink::Log)?.is_none_or(|m| newest_size > m) {
            if let Err(e) = self.log_checkpoint(newest_size, &newest_note) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(http) = &self.http {
            if read_mark(&self.marks, Sink::Http)?.is_none_or(|m| newest_size > m) {
                self.hand_to_http(http, newest_size, &newest_note);
            }
        }
        if let Some(dir) = &self.dir {
            let _one_writer = dir.lock.lock().await;
            let mark = read_mark(&self.marks, Sink::Dir)?;
            let newest = mark.is_none_or(|m| newest_size >= m);
            // at or below the mark a file is rewritten only if it went missing
            let missing: Vec<(u64, String)> = pending
                .into_iter()
                .filter(|(size, _)| {
                    mark.is_none_or(|m| *size > m)
                        || !dir.path.join(checkpoint_file_name(*size)).exists()
                })
                .collect();
            if let Err(e) = self.write_to_dir(dir, missing, newest).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Publishes the hand-over checkpoints of the log's key history (`(size, signed note)`)
    /// that no earlier start published: a hand-over is signed by the old and the new key while
    /// the hub is stopped (`trailhub keys rotate-signing`), so whoever follows the published
    /// checkpoints with the old key learns the new one from them. The directory gets
    /// `handover-<size>.txt`, the log a line, the HTTP endpoint one POST (retried with backoff
    /// in the background; a hand-over is not superseded by later checkpoints the way a
    /// checkpoint is, so it has its own delivery).
    pub async fn publish_handovers(
        &self,
        handovers: Vec<(u64, String)>,
    ) -> Result<(), PublishError> {
        let done = self
            .marks
            .get(HANDOVER_MARK)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes);
        let mut first_error = None;
        for (size, note) in handovers {
            if done.is_some_and(|d| size <= d) {
                continue;
            }
            if self.log {
                tracing::info!(size, handover = %note.escape_debug(), "key hand-over checkpoint (signed by the old and the new key)");
            }
            if let Some(dir) = &self.dir {
                let path = dir.path.clone();
                let name = handover_file_name(size);
                let text = note.clone();
                let written =
                    tokio::task::spawn_blocking(move || write_note_file(&path, &name, size, &text))
                        .await
                        .map_err(|e| PublishError::Io {
                            path: dir.path.clone(),
                            source: std::io::Error::other(e.to_string()),
                        })?;
                if let Err(e) = written {
                    log_dir_error(&e);
                    first_error.get_or_insert(e);
                    continue;
                }
            }
            if let Some(http) = &self.http {
                let target = http.target.clone();
                let backoff = Backoff {
                    base: self.retry_base,
                    max: self.retry_max,
                };
                let pending = Pending {
                    size,
                    note: Arc::from(note.as_str()),
                };
                tokio::spawn(async move {
                    let mut failures = 0u32;
                    loop {
                        match target.post(&pending).await {
                            Outcome::Delivered => {
                                tracing::info!(size, url = %target.shown, "key hand-over delivered");
                                return;
                            }
                            Outcome::Refused(why) => {
                                tracing::error!(size, url = %target.shown, reason = %why, "the checkpoint endpoint refused the key hand-over");
                                return;
                            }
                            Outcome::Retry { why, after } => {
                                failures += 1;
                                if failures >= HANDOVER_ATTEMPTS {
                                    tracing::error!(size, url = %target.shown, reason = %why, "the key hand-over was not delivered; it is in the publish directory and at GET /api/v1/checkpoints (keys)");
                                    return;
                                }
                                tokio::time::sleep(
                                    after.unwrap_or_else(|| backoff.delay(failures)),
                                )
                                .await;
                            }
                        }
                    }
                });
            }
            self.marks.insert(HANDOVER_MARK, &size.to_be_bytes()[..])?;
        }
        first_error.map_or(Ok(()), Err)
    }

    fn log_checkpoint(&self, size: u64, note_text: &str) -> Result<(), PublishError> {
        tracing::info!(size, checkpoint = %note_text.escape_debug(), "checkpoint signed");
        raise_mark(&self.marks, Sink::Log, size)
    }

    /// Makes `size` the checkpoint the delivery task sends next, unless it has a newer one.
    fn hand_to_http(&self, http: &HttpSink, size: u64, note_text: &str) {
        http.worker.get_or_init(|| {
            tokio::spawn(deliver_newest(
                http.target.clone(),
                http.newest.subscribe(),
                self.marks.clone(),
                Backoff {
                    base: self.retry_base,
                    max: self.retry_max,
                },
            ));
        });
        http.newest.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| c.size >= size) {
                return false;
            }
            *current = Some(Pending {
                size,
                note: Arc::from(note_text),
            });
            true
        });
    }

    /// Writes `checkpoints` (ascending sizes) to the directory; with `newest`, the last one
    /// also becomes `latest.txt` and the mark. Every checkpoint is tried; the first failure is
    /// returned, each is logged.
    async fn write_to_dir(
        &self,
        dir: &DirSink,
        checkpoints: Vec<(u64, String)>,
        newest: bool,
    ) -> Result<(), PublishError> {
        let Some(last) = checkpoints.last().map(|(size, _)| *size) else {
            return Ok(());
        };
        let path = dir.path.clone();
        let count = checkpoints.len();
        let written = tokio::task::spawn_blocking(move || {
            let mut first_error = None;
            let mut written = 0usize;
            for (size, note) in &checkpoints {
                match write_checkpoint(&path, *size, note) {
                    Ok(true) => written += 1,
                    Ok(false) => {}
                    Err(e) => {
                        log_dir_error(&e);
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            if newest {
                let latest = path.join(LATEST_FILE);
                let (_, note) = checkpoints.last().expect("not empty: checked above");
                if let Err(source) = super::files::replace(&latest, note.as_bytes()) {
                    let e = PublishError::Io {
                        path: latest,
                        source,
                    };
                    log_dir_error(&e);
                    return Err(e);
                }
            }
            Ok(written)
        })
        .await
        .map_err(|e| PublishError::Io {
            path: dir.path.clone(),
            source: std::io::Error::other(e),
        })?;
        let written = written?;
        if newest {
            raise_mark(&self.marks, Sink::Dir, last)?;
        }
        if count > 1 {
            tracing::info!(dir = %dir.path.display(), written, newest = last, "checkpoint directory caught up");
        }
        Ok(())
    }
}

/// Logs a failure to publish to the directory: an operator must look.
fn log_dir_error(e: &PublishError) {
    match e {
        PublishError::Conflict { path, size } => tracing::error!(
            file = %path.display(),
            size,
            "a published checkpoint differs from the one signed now for the same size: the log was rewritten, or two hubs publish to one directory; the file is left as it was"
        ),
        other => tracing::error!(error = %other, "cannot publish a checkpoint to the directory"),
    }
}

/// Writes one checkpoint file; `Ok(false)` when it is there already with the same bytes.
fn write_checkpoint(dir: &Path, size: u64, note: &str) -> Result<bool, PublishError> {
    write_note_file(dir, &checkpoint_file_name(size), size, note)
}

/// Writes `note` as `name` in `dir`, never over different bytes.
fn write_note_file(dir: &Path, name: &str, size: u64, note: &str) -> Result<bool, PublishError> {
    let path = dir.join(name);
    if same_or_conflict(&path, size, note)? {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    match super::files::create_new(&path, note.as_bytes(), false) {
        Ok(()) => Ok(true),
        // written meanwhile by someone else: the same bytes are fine, others are not
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if same_or_conflict(&path, size, note)? {
                Ok(false)
            } else {
                Err(io_at(&path)(e))
            }
        }
        Err(e) => Err(io_at(&path)(e)),
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError {
    let path = path.to_path_buf();
    move |source| PublishError::Io { path, source }
}

/// `true` if `path` holds `note`, `false` if there is no such file, `Conflict` if it holds
/// something else.
fn same_or_conflict(path: &Path, size: u64, note: &str) -> Result<bool, PublishError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(PublishError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    // one byte more than the note tells a longer file apart without reading all of it
    let mut existing = Vec::with_capacity(note.len() + 1);
    file.take(note.len() as u64 + 1)
        .read_to_end(&mut existing)
        .map_err(|source| PublishError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if existing == note.as_bytes() {
        Ok(true)
    } else {
        Err(PublishError::Conflict {
            path: path.to_path_buf(),
            size,
        })
    }
}

fn read_mark(marks: &sled::Tree, sink: Sink) -> Result<Option<u64>, PublishError> {
    Ok(marks
        .get(sink.mark_key())?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes))
}

/// Records that `sink` has the checkpoint of `size`; the mark only grows.
fn raise_mark(marks: &sled::Tree, sink: Sink, size: u64) -> Result<(), PublishError> {
    marks.fetch_and_update(sink.mark_key(), |old| {
        let old = old
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(u64::from_be_bytes);
        Some(old.map_or(size, |o| o.max(size)).to_be_bytes().to_vec())
    })?;
    Ok(())
}

impl HttpSink {
    fn new(text: &str) -> Result<HttpSink, PublishError> {
        let shown = url_for_logs(text);
        let bad = |why: String| PublishError::Url(shown.clone(), why);
        let url = reqwest::Url::parse(text).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(bad("it must be an http or https URL naming a host".into()));
        }
        let mut secrets: Vec<String> = url.query_pairs().map(|(_, v)| v.into_owned()).collect();
        secrets.extend(url.query().map(str::to_string));
        secrets.extend(url.password().map(str::to_string));
        let client = reqwest::Client::builder()
            .user_agent(concat!("trailhub/", env!("CARGO_PKG_VERSION")))
            // a redirect would take the URL's credentials elsewhere
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT)
            .build()
            .expect("the TLS backend initialises");
        let (newest, _) = watch::channel(None);
        Ok(HttpSink {
            target: Arc::new(HttpTarget {
                url,
                shown: shown.clone(),
                client,
                scrubber: Scrubber::new(secrets),
            }),
            newest,
            worker: OnceLock::new(),
        })
    }
}

#[derive(Clone, Copy)]
struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row: doubling from `base` up to `max`,
    /// with jitter (between half and all of it) so that hubs restarted together spread out.
    fn delay(self, failures: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max);
        let mut b = [0u8; 2];
        let r = match getrandom::fill(&mut b) {
            Ok(()) => f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX),
            Err(_) => 1.0,
        };
        exp.mul_f64(0.5 + r / 2.0)
    }
}

/// What an attempt to POST a checkpoint came to.
enum Outcome {
    Delivered,
    /// Worth trying again; with the wait the endpoint asked for, if it did.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// The endpoint refused this checkpoint; sending it again would not change that.
    Refused(String),
}

impl HttpTarget {
    async fn post(&self, pending: &Pending) -> Outcome {
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(pending.note.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Outcome::Refused(crate::http::reqwest_error_text(&e))
            }
            Err(e) => {
                return Outcome::Retry {
                    why: crate::http::reqwest_error_text(&e),
                    after: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| {
                Duration::from_secs(secs.clamp(*RETRY_AFTER_SECS.start(), *RETRY_AFTER_SECS.end()))
            });
        let body = read_bounded(response).await;
        let quoted = self.scrubber.quote(&body, MAX_QUOTED_BYTES);
        let why = if quoted.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {}", status.as_u16(), quoted.escape_debug())
        };
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            Outcome::Retry {
                why,
                after: retry_after,
            }
        } else {
            Outcome::Refused(why)
        }
    }
}

/// At most `MAX_RESPONSE_BYTES` of a response body; the rest is not read.
async fn read_bounded(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The newest checkpoint handed over that is newer than `done`; `None` once the publisher is
/// gone.
async fn next_newer(
    newest: &mut watch::Receiver<Option<Pending>>,
    done: Option<u64>,
) -> Option<Pending> {
    loop {
        let current = newest.borrow_and_update().clone();
        if let Some(p) = current.filter(|p| done.is_none_or(|d| p.size > d)) {
            return Some(p);
        }
        newest.changed().await.ok()?;
    }
}

/// The HTTP sink's delivery task: sends the newest checkpoint until the endpoint takes it or
/// refuses it, switching to a newer one whenever one is handed over meanwhile.
async fn deliver_newest(
    target: Arc<HttpTarget>,
    mut newest: watch::Receiver<Option<Pending>>,
    marks: sled::Tree,
    backoff: Backoff,
) {
    // delivered or refused: nothing at or below it is sent again
    let mut done = read_mark(&marks, Sink::Http).ok().flatten();
    while let Some(mut current) = next_newer(&mut newest, done).await {
        let mut failures = 0u32;
        loop {
            match target.post(&current).await {
                Outcome::Delivered => {
                    if let Err(e) = raise_mark(&marks, Sink::Http, current.size) {
                        tracing::warn!(error = %e, size = current.size, "checkpoint delivered but not recorded; it will be sent again after a restart");
                    }
                    tracing::info!(size = current.size, url = %target.shown, attempts = failures + 1, "checkpoint delivered");
                    done = Some(current.size);
                    break;
                }
                Outcome::Refused(why) => {
                    tracing::error!(size = current.size, url = %target.shown, reason = %why, "the checkpoint endpoint refused a checkpoint; not retried, the next checkpoint will be sent");
                    done = Some(current.size);
                    break;
                }
                Outcome::Retry { why, after } => {
                    failures += 1;
                    let wait = after.unwrap_or_else(|| backoff.delay(failures));
                    tracing::warn!(size = current.size, url = %target.shown, reason = %why, attempt = failures, retry_in_ms = wait.as_millis() as u64, "checkpoint not delivered; retrying");
                    let sleep = tokio::time::sleep(wait);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            () = &mut sleep => break,
                            changed = newest.changed() => {
                                // the publisher is gone: the next start's catch_up sends it
                                if changed.is_err() {
                                    return;
                                }
                                let handed = newest.borrow_and_update().clone();
                                if let Some(newer) = handed.filter(|n| n.size > current.size) {
                                    current = newer;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
