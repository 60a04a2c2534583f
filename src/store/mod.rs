//! The embedded sled store: append-only events with dedup, timeline indexes, search tokens,
//! histogram rollups, the integrity hash chain and integration cursors
//!
//! One writer thread owns every write to the event log. Callers hand it jobs; it merges the jobs
//! that are waiting into one sled `Batch` (atomic: all of it or none survives a crash), applies
//! it, and passes the durable ones to a flusher thread that makes them stable with one `flush`
//! shared by everyone waiting (group commit). Only then are the callers answered.

pub mod keys;
pub mod prepare;
pub mod query;
pub mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

pub use keys::{Dimension, Field, Granularity};
pub use prepare::{prepare, PreparedEvent};

use crate::schema::Event;

/// Most events merged into one sled batch.
const GROUP_MAX_EVENTS: usize = 8192;

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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 128 * 1024 * 1024,
        }
    }
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
}

struct WriteJob {
    events: Vec<PreparedEvent>,
    commit: Commit,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

struct FlushTicket {
    replies: Vec<(
        oneshot::Sender<Result<AppendOutcome, StoreError>>,
        AppendOutcome,
    )>,
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
    tokens: sled::Tree,
    settings: sled::Tree,
    integrations: sled::Tree,
    jobs: Mutex<Option<mpsc::Sender<WriteJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<StoreStats>,
}

impl Store {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let log = db.open_tree(keys::TREE_LOG)?;
        let tokens = db.open_tree(keys::TREE_TOKENS)?;
        let settings = db.open_tree(keys::TREE_SETTINGS)?;
        let integrations = db.open_tree(keys::TREE_INTEGRATIONS)?;
        let head = read_head(&log)?;
        let stats = Arc::new(StoreStats::default());
        stats.last_seq.store(head.seq, Ordering::Relaxed);

        let (job_tx, job_rx) = mpsc::channel::<WriteJob>();
        let (flush_tx, flush_rx) = mpsc::channel::<FlushTicket>();
        let writer = {
            let log = log.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("trailhub-writer".into())
                .spawn(move || run_writer(log, head, job_rx, flush_tx, stats))
                .map_err(|e| StoreError::Io(e.to_string()))?
        };
        let flusher = {
            let db = db.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("trailhub-flusher".into())
                .spawn(move || run_flusher(db, flush_rx, stats))
                .map_err(|e| StoreError::Io(e.to_string()))?
        };
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db,
                log,
                tokens,
                settings,
                integrations,
                jobs: Mutex::new(Some(job_tx)),
                threads: Mutex::new(vec![writer, flusher]),
                stats,
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

    /// Queues an append now and returns a handle to await its outcome. Jobs are applied in the
    /// order they were submitted, so a durable job's flush covers every job submitted before it.
    pub fn submit(
        &self,
        events: Vec<PreparedEvent>,
        commit: Commit,
    ) -> Result<PendingAppend, StoreError> {
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
fn encode_event_value(hash: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let compressed = lz4_flex::compress_prepend_size(body);
    let mut v = Vec::with_capacity(33 + compressed.len());
    v.push(keys::VALUE_VERSION);
    v.extend_from_slice(hash);
    v.extend_from_slice(&compressed);
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

pub(crate) fn chain_hash(prev: &[u8; 32], full_json: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(full_json);
    h.finalize().into()
}

fn run_writer(
    log: sled::Tree,
    mut head: Head,
    jobs: mpsc::Receiver<WriteJob>,
    flusher: mpsc::Sender<FlushTicket>,
    stats: Arc<StoreStats>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        let mut events = group[0].events.len();
        while events < GROUP_MAX_EVENTS {
            match jobs.try_recv() {
                Ok(job) => {
                    events += job.events.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        match apply_group(&log, head, &group) {
            Ok((new_head, outcomes)) => {
                head = new_head;
                stats.last_seq.store(head.seq, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                let stored: usize = outcomes.iter().map(|o| o.stored.len()).sum();
                let dups: usize = outcomes.iter().map(|o| o.duplicates.len()).sum();
                stats
                    .events_stored
                    .fetch_add(stored as u64, Ordering::Relaxed);
                stats.duplicates.fetch_add(dups as u64, Ordering::Relaxed);
                tracing::debug!(
                    jobs = group.len(),
                    stored,
                    dups,
                    micros = started.elapsed().as_micros() as u64,
                    "batch applied"
                );
                let mut durable = Vec::new();
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    if job.commit.durable {
                        durable.push((job.reply, outcome));
                    } else {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                if !durable.is_empty() {
                    if let Err(mpsc::SendError(ticket)) =
                        flusher.send(FlushTicket { replies: durable })
                    {
                        for (reply, _) in ticket.replies {
                            let _ = reply.send(Err(StoreError::Closed));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "batch failed, nothing of it was stored");
                for job in group {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn run_flusher(db: sled::Db, tickets: mpsc::Receiver<FlushTicket>, stats: Arc<StoreStats>) {
    while let Ok(first) = tickets.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = tickets.try_recv() {
            waiting.push(more);
        }
        let started = Instant::now();
        let result = db.flush().map_err(StoreError::from);
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats
            .flush_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush failed; the waiting requests are answered with an error");
        }
        for ticket in waiting {
            for (reply, outcome) in ticket.replies {
                let _ = reply.send(result.clone().map(|_| outcome));
            }
        }
    }
}

fn bucket_start(t: i64, g: Granularity) -> i64 {
    t.div_euclid(g.micros()) * g.micros()
}

/// Builds and applies one atomic batch for a group of jobs. Pure with respect to `head`: the
/// caller adopts the returned head only if the batch was applied.
fn apply_group(
    log: &sled::Tree,
    head: Head,
    group: &[WriteJob],
) -> Result<(Head, Vec<AppendOutcome>), StoreError> {
    let mut batch = sled::Batch::default();
    let mut seq = head.seq;
    let mut hash = head.hash;
    let mut stored_now: HashMap<&[u8], u64> = HashMap::new();
    let mut counters: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(group.len());
    let time_prefix = keys::posting_prefix(None);

    for job in group {
        let mut outcome = AppendOutcome::default();
        for (index, event) in job.events.iter().enumerate() {
            if let Some(&earlier) = stored_now.get(event.dedup_key.as_slice()) {
                outcome.duplicates.push((index, earlier));
                continue;
            }
            if let Some(earlier) = log.get(&event.dedup_key)? {
                outcome.duplicates.push((index, keys::decode_u64(&earlier)));
                continue;
            }
            seq += 1;
            let full = prepare::full_json(seq, &event.body);
            hash = chain_hash(&hash, &full);
            batch.insert(
                &keys::event_key(seq)[..],
                encode_event_value(&hash, &event.body),
            );
            batch.insert(event.dedup_key.as_slice(), &seq.to_be_bytes()[..]);
            batch.insert(keys::posting_key(&time_prefix, event.time, seq), &[][..]);
            for prefix in &event.postings {
                batch.insert(keys::posting_key(prefix, event.time, seq), &[][..]);
            }
            for (dimension, group_value) in &event.groups {
                for g in Granularity::ALL {
                    let key =
                        keys::rollup_key(g, *dimension, bucket_start(event.time, g), group_value);
                    *counters.entry(key).or_insert(0) += 1;
                }
            }
            stored_now.insert(event.dedup_key.as_slice(), seq);
            outcome.stored.push((index, seq));
        }
        if let Some((integration, cursor)) = &job.commit.cursor {
            batch.insert(keys::cursor_key(integration), cursor.as_slice());
        }
        outcomes.push(outcome);
    }
    for (key, delta) in counters {
        let current = log.get(&key)?.map(|v| keys::decode_u64(&v)).unwrap_or(0);
        batch.insert(key, &(current + delta).to_be_bytes()[..]);
    }
    if seq != head.seq {
        let mut head_value = Vec::with_capacity(40);
        head_value.extend_from_slice(&seq.to_be_bytes());
        head_value.extend_from_slice(&hash);
        batch.insert(keys::meta_key(keys::META_HEAD), head_value);
    }
    log.apply_batch(batch)?;
    Ok((Head { seq, hash }, outcomes))
}
