//! The embedded sled store: append-only events with dedup, timeline indexes, search tokens,
//! histogram rollups, the integrity hash chain and integration cursors
//!
//! One writer thread owns every write to the event log. Callers hand it jobs; it merges the jobs
//! that are waiting into one sled `Batch` (atomic: all of it or none survives a crash), applies
//! it, and passes the durable ones to a flusher thread that makes them stable with one `flush`
//! shared by everyone waiting (group commit). Only then are the callers answered.

pub mod keys;
pub mod postings;
pub mod prepare;
pub mod query;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use writer::{FlushTicket, IndexJob, WriteJob};

pub use keys::{Dimension, Field, Granularity};
pub use prepare::{prepare, PreparedEvent};

use crate::schema::Event;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the disk is full: {0}")]
    StorageFull(String),
    #[error("storage i/o failed: {0}")]
    Io(String),
    #[error("the data directory is in use by another process: {0}")]
    Locked(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io)
                if io.raw_os_error() == Some(28)
                    || io.kind() == std::io::ErrorKind::StorageFull =>
            {
                StoreError::StorageFull(io.to_string())
            }
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                StoreError::Locked(io.to_string())
            }
            sled::Error::Io(io) => StoreError::Io(io.to_string()),
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled page cache, bytes.
    pub cache_bytes: u64,
    /// Writes are refused (and resume by themselves) while the disk has less free space than
    /// this: sled must never meet a full disk, it does not recover cleanly from one.
    pub min_free_bytes: u64,
}

/// How an append is committed besides its events.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// The integration cursor covering these events, written in the same batch.
    pub cursor: Option<(String, Vec<u8>)>,
    /// Answer only after the batch is flushed to disk.
    pub durable: bool,
}

/// What became of each event of an append, by its index in the request.
#[derive(Debug, Clone, Default)]
pub struct AppendOutcome {
    pub stored: Vec<(usize, u64)>,
    /// (index, sequence of the event stored earlier with the same source id)
    pub duplicates: Vec<(usize, u64)>,
}

#[derive(Debug, Default)]
pub struct StoreStats {
    pub events_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_micros: AtomicU64,
    pub last_seq: AtomicU64,
    /// Keys written to the log and index trees (events, dedup, posting blocks, rollups).
    pub log_keys: AtomicU64,
    pub index_keys: AtomicU64,
    /// Set by the first failed write or flush: from then on the store refuses writes until the
    /// hub restarts and sled recovers what reached the disk. Without this, a retry of a request
    /// whose flush failed would be answered "duplicate" from memory and never reach the disk.
    pub failure: Mutex<Option<StoreError>>,
}

impl StoreStats {
    fn fail(&self, e: &StoreError) {
        if let Ok(mut f) = self.failure.lock() {
            if f.is_none() {
                tracing::error!(error = %e, "store write failed: refusing further writes until restart");
                *f = Some(e.clone());
            }
        }
    }

    pub fn failed(&self) -> Option<StoreError> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// The chain head: the last sequence number and the hash that covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// An append that was queued; `wait` yields its outcome.
pub struct PendingAppend(oneshot::Receiver<Result<AppendOutcome, StoreError>>);

impl PendingAppend {
    pub async fn wait(self) -> Result<AppendOutcome, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    log: sled::Tree,
    index: sled::Tree,
    tokens: sled::Tree,
    settings: sled::Tree,
    integrations: sled::Tree,
    jobs: Mutex<Option<mpsc::Sender<WriteJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<StoreStats>,
    min_free_bytes: u64,
}

impl Store {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let log = db.open_tree(keys::TREE_LOG)?;
        let index = db.open_tree(keys::TREE_INDEX)?;
        let tokens = db.open_tree(keys::TREE_TOKENS)?;
        let settings = db.open_tree(keys::TREE_SETTINGS)?;
        let integrations = db.open_tree(keys::TREE_INTEGRATIONS)?;
        let head = read_head(&log)?;
        writer::reindex_tail(&log, &index, head)?;
        let stats = Arc::new(StoreStats::default());
        stats.last_seq.store(head.seq, Ordering::Relaxed);

        let (job_tx, job_rx) = mpsc::channel::<WriteJob>();
        let (index_tx, index_rx) = mpsc::channel::<IndexJob>();
        let (flush_tx, flush_rx) = mpsc::channel::<FlushTicket>();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::Io(e.to_string()))
        };
        let writer = {
            let (log, stats) = (log.clone(), stats.clone());
            spawn(
                "trailhub-writer",
                Box::new(move || writer::run_writer(log, head, job_rx, index_tx, stats)),
            )?
        };
        let indexer = {
            let (index, stats) = (index.clone(), stats.clone());
            spawn(
                "trailhub-indexer",
                Box::new(move || writer::run_indexer(index, index_rx, flush_tx, stats)),
            )?
        };
        let flusher = {
            let (db, stats) = (db.clone(), stats.clone());
            spawn(
                "trailhub-flusher",
                Box::new(move || writer::run_flusher(db, flush_rx, stats)),
            )?
        };
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db,
                log,
                index,
                tokens,
                settings,
                integrations,
                jobs: Mutex::new(Some(job_tx)),
                threads: Mutex::new(vec![writer, indexer, flusher]),
                stats,
                min_free_bytes: options.min_free_bytes,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// Events stored so far (the store is append-only, so this is the last sequence number).
    pub fn event_count(&self) -> u64 {
        self.inner.stats.last_seq.load(Ordering::Relaxed)
    }

    pub fn tokens_tree(&self) -> &sled::Tree {
        &self.inner.tokens
    }

    pub fn settings_tree(&self) -> &sled::Tree {
        &self.inner.settings
    }

    /// Integration records and status (see `connectors::integrations`).
    pub fn integrations_tree(&self) -> &sled::Tree {
        &self.inner.integrations
    }

    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    /// Appends events (deduplicated by integration and source id) and the cursor that covers
    /// them as one atomic batch.
    pub async fn append(
        &self,
        events: Vec<PreparedEvent>,
        commit: Commit,
    ) -> Result<AppendOutcome, StoreError> {
        self.submit(events, commit)?.wait().await
    }

    /// Refuses a write while the data dir's disk is below its free-space reserve.
    fn check_free_space(&self) -> Result<(), StoreError> {
        if self.inner.min_free_bytes == 0 {
            return Ok(());
        }
        match fs2::available_space(&self.inner.path) {
            Ok(free) if free < self.inner.min_free_bytes => Err(StoreError::StorageFull(format!(
                "{} MiB free on the data dir's disk, below the reserve of {} MiB",
                free / (1024 * 1024),
                self.inner.min_free_bytes / (1024 * 1024)
            ))),
            _ => Ok(()),
        }
    }

    /// Queues an append now and returns a handle to await its outcome. Jobs are applied in the
    /// order they were submitted, so a durable job's flush covers every job submitted before it.
    pub fn submit(
        &self,
        events: Vec<PreparedEvent>,
        commit: Commit,
    ) -> Result<PendingAppend, StoreError> {
        if let Some(e) = self.inner.stats.failed() {
            return Err(e);
        }
        self.check_free_space()?;
        let (reply, answer) = oneshot::channel();
        let jobs = self.inner.jobs.lock().map_err(|_| StoreError::Closed)?;
        let sender = jobs.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(WriteJob {
                events,
                commit,
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingAppend(answer))
    }

    /// The complete JSON of one stored event.
    pub fn event_json(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(value) = self.inner.log.get(keys::event_key(seq))? else {
            return Ok(None);
        };
        let (_, body) = decode_event_value(&value)?;
        Ok(Some(prepare::full_json(seq, &body)))
    }

    pub fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        match self.event_json(seq)? {
            None => Ok(None),
            Some(json) => serde_json::from_slice(&json)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("event {seq:016x} does not decode: {e}"))),
        }
    }

    pub fn cursor(&self, integration: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .log
            .get(keys::cursor_key(integration))?
            .map(|v| v.to_vec()))
    }

    pub fn head(&self) -> Result<Head, StoreError> {
        read_head(&self.inner.log)
    }

    pub(crate) fn log(&self) -> &sled::Tree {
        &self.inner.log
    }

    /// Posting blocks and rollups (derived from the log; see `writer`).
    pub(crate) fn index(&self) -> &sled::Tree {
        &self.inner.index
    }

    /// Finishes every queued write, flushes, and stops the writer threads.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.take();
        }
        let threads: Vec<JoinHandle<()>> = match self.inner.threads.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in threads {
            let _ = t.join();
        }
        self.inner.db.flush()?;
        Ok(())
    }
}

fn read_head(log: &sled::Tree) -> Result<Head, StoreError> {
    match log.get(keys::meta_key(keys::META_HEAD))? {
        None => Ok(Head {
            seq: 0,
            hash: [0; 32],
        }),
        Some(v) if v.len() == 40 => {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&v[8..]);
            Ok(Head {
                seq: keys::decode_u64(&v),
                hash,
            })
        }
        Some(v) => Err(StoreError::Corrupt(format!(
            "chain head has {} bytes, want 40",
            v.len()
        ))),
    }
}

/// Stored event value: version byte, chain hash, lz4-compressed body.
fn encode_event_value(hash: &[u8; 32], compressed: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(33 + compressed.len());
    v.push(keys::VALUE_VERSION);
    v.extend_from_slice(hash);
    v.extend_from_slice(compressed);
    v
}

pub(crate) fn decode_event_value(value: &[u8]) -> Result<([u8; 32], Vec<u8>), StoreError> {
    if value.len() < 33 || value[0] != keys::VALUE_VERSION {
        return Err(StoreError::Corrupt(
            "event value has an unknown layout".into(),
        ));
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&value[1..33]);
    let body = lz4_flex::decompress_size_prepended(&value[33..])
        .map_err(|e| StoreError::Corrupt(format!("event body does not decompress: {e}")))?;
    Ok((hash, body))
}
