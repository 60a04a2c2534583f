//! The embedded sled store: append-only events with exactly-once dedup, timeline indexes,
//! search, histogram rollups, the integrity hash chain and integration cursors
//!
//! Layout (format 2, see `keys`): the log packs each group commit's events into compressed
//! blocks (`block`), so an append costs a few sled keys whatever its size; dedup keeps unsealed
//! identities in memory and sealed ones in tiered runs behind Bloom filters (`dedup`); the index
//! of unsealed events is an in-memory tail (`tail`), written once per 65,536 events as a segment
//! (`segment`). Everything but the log is derived and rebuilt from it when needed.
//!
//! One writer thread owns every write to the log. Callers hand it jobs; it merges the jobs that
//! are waiting into one sled `Batch` (atomic: all of it or none survives a crash), applies it,
//! and passes the durable ones to a flusher thread that makes them stable with one `flush`
//! shared by everyone waiting (group commit). Only then are the callers answered.

pub mod block;
pub mod bloom;
pub mod dedup;
pub mod keys;
pub mod merkle;
pub mod migrate;
mod open;
pub mod postings;
pub mod prepare;
pub mod purge;
pub mod query;
mod sealer;
pub mod segment;
pub mod tail;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, Semaphore};

use writer::{Reply, WriteJob};

pub use keys::{Dimension, Field, Granularity};
pub use merkle::{ProofRequestError, TreeHead};
pub use open::open_db;
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
    /// The write queue is full: the caller should retry shortly.
    #[error("the write queue is full ({0} events waiting)")]
    Busy(usize),
    #[error("{0}")]
    NeedsMigration(String),
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
    /// Events that may wait in the write queue; past it `submit` answers `Busy`.
    pub max_queued_events: usize,
    /// Bits of the dedup hash kept (all by default). Tests narrow it to force collisions.
    pub dedup_hash_mask: u64,
    /// Events per sealed segment (at most 65,536). Tests lower it to seal often.
    pub seal_events: usize,
}

impl StoreOptions {
    pub const DEFAULT_MAX_QUEUED_EVENTS: usize = 32_768;

    pub fn new(cache_bytes: u64, min_free_bytes: u64) -> StoreOptions {
        StoreOptions {
            cache_bytes,
            min_free_bytes,
            max_queued_events: Self::DEFAULT_MAX_QUEUED_EVENTS,
            dedup_hash_mask: u64::MAX,
            seal_events: tail::SEAL_EVENTS,
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
    /// Events of the integration that its collection filters dropped from what this commit
    /// covers: added to its count in the same batch.
    pub filtered: Option<(String, u64)>,
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
    /// Keys written to the log and index trees.
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

/// What the writer finds at a dedup candidate's slot.
pub(crate) enum StoredIdentity {
    Stored(Vec<u8>),
    Purged,
    Missing,
}

/// What readers query: the sealed segments and the tails (frozen ones waiting to be sealed,
/// then the live one), swapped whole when the indexer or the sealer changes them.
pub(crate) struct View {
    segments: Vec<Arc<segment::SegmentMeta>>,
    tails: Vec<Arc<RwLock<tail::Tail>>>,
}

/// What the store's threads and readers share.
pub(crate) struct Shared {
    path: PathBuf,
    db: sled::Db,
    log: sled::Tree,
    index: sled::Tree,
    tokens: sled::Tree,
    settings: sled::Tree,
    integrations: sled::Tree,
    checkpoints: sled::Tree,
    /// The Merkle tree over the applied events, published by the writer after each batch.
    tree_head: RwLock<TreeHead>,
    dicts: block::Dictionaries,
    frames: block::FrameCache,
    stats: StoreStats,
    view: RwLock<Arc<View>>,
    /// Held by the sealer while it moves a tail into the index or purges, by histograms while
    /// they read.
    seal_lock: RwLock<()>,
    /// Purged and restored events (`purge`), swapped whole when a purge or restore commits.
    purged: RwLock<Arc<purge::SeqRanges>>,
    restored: RwLock<Arc<purge::RestoredRanges>>,
    min_free_bytes: u64,
    hash_mask: u64,
    seal_events: usize,
    /// Told of each batch of stored events as the indexer takes it (`Store::observe`).
    observer: RwLock<Option<Arc<dyn StoredObserver>>>,
}

/// Something that wants to see every stored event once, as it is stored (the alert engine):
/// called on the indexer thread with each batch, in sequence order, after the batch's events
/// are readable (`Store::event_json`) and before readers' queries see them. It must be quick
/// (it delays the index) and must not block: hand work to another thread. A batch may be
/// missed only if the hub stops, so an observer that must see everything keeps its own cursor
/// and reads what it missed back from the store.
pub trait StoredObserver: Send + Sync {
    fn stored(&self, entries: &[tail::TailEntry]);
}

impl Shared {
    fn observer(&self) -> Option<Arc<dyn StoredObserver>> {
        match self.observer.read() {
            Ok(o) => o.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The body of the event `seq` (its JSON after the id), if it is stored and not purged.
    fn event_body(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if self.purged().contains(seq) {
            return Ok(None);
        }
        let body = self
            .body_near(seq, &mut None)?
            .map(|(frame, i)| frame.body(i).to_vec());
        match body {
            // a frame cached before a restore rewrote its block: read the block again
            Some(b) if block::is_tombstone(&b) => {
                let Some((first, v)) = self.block_holding(seq)? else {
                    return Ok(None);
                };
                self.frames.forget_block(first);
                Ok(self
                    .cached_frame(first, &v, (seq - first) as u32)?
                    .map(|(frame, i)| frame.body(i).to_vec())
                    .filter(|b| !block::is_tombstone(b)))
            }
            other => Ok(other),
        }
    }

    /// The dedup identity of stored event `seq`; `Purged` when only its tombstone is left
    /// (which matches any identity of the same hash: `block::Tombstone`).
    fn stored_identity(&self, seq: u64) -> Result<StoredIdentity, StoreError> {
        let Some((frame, i)) = self.body_near(seq, &mut None)? else {
            return Ok(StoredIdentity::Missing);
        };
        let body = frame.body(i);
        if block::is_tombstone(body) {
            return Ok(StoredIdentity::Purged);
        }
        prepare::stored_identity(seq, body).map(StoredIdentity::Stored)
    }

    pub(crate) fn purged(&self) -> Arc<purge::SeqRanges> {
        match self.purged.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn restored(&self) -> Arc<purge::RestoredRanges> {
        match self.restored.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_ranges(&self, purged: purge::SeqRanges, restored: purge::RestoredRanges) {
        match self.purged.write() {
            Ok(mut p) => *p = Arc::new(purged),
            Err(p) => *p.into_inner() = Arc::new(purged),
        }
        match self.restored.write() {
            Ok(mut p) => *p = Arc::new(restored),
            Err(p) => *p.into_inner() = Arc::new(restored),
        }
    }

    /// The body of the event `seq`, reusing the block looked up last (`held`) when it holds
    /// `seq`: a scan reads neighbours, which mostly share a block, and a block lookup is a sled
    /// range search.
    pub(crate) fn body_near(
        &self,
        seq: u64,
        held: &mut Option<(u64, sled::IVec)>,
    ) -> Result<Option<(Arc<block::DecodedFrame>, usize)>, StoreError> {
        if let Some((first, value)) = held.as_ref() {
            if let Some(index) = seq.checked_sub(*first).and_then(|i| u32::try_from(i).ok()) {
                if let Some(found) = self.cached_frame(*first, value, index)? {
                    return Ok(Some(found));
                }
            }
        }
        let Some((first, v)) = self.block_holding(seq)? else {
            return Ok(None);
        };
        let Ok(index) = u32::try_from(seq - first) else {
            return Ok(None);
        };
        let found = self.cached_frame(first, &v, index)?;
        *held = Some((first, v));
        Ok(found)
    }

    /// The block that would hold `seq` (the last one starting at or before it): its first seq
    /// and value.
    fn block_holding(&self, seq: u64) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let Some(item) = self
            .log
            .range(keys::block_key(0)..=keys::block_key(seq))
            .next_back()
        else {
            return Ok(None);
        };
        let (k, v) = item?;
        Ok(Some((keys::decode_u64(&k[1..]), v)))
    }

    /// The decoded frame holding the `index`th event of block `first`, and its place in it.
    fn cached_frame(
        &self,
        first: u64,
        value: &[u8],
        index: u32,
    ) -> Result<Option<(Arc<block::DecodedFrame>, usize)>, StoreError> {
        let view = block::BlockView::parse(value)?;
        let Some((f, i)) = view.locate(index) else {
            return Ok(None);
        };
        let key = (first, f as u16);
        if let Some(frame) = self.frames.get(key) {
            return Ok(Some((frame, i)));
        }
        let frame = Arc::new(view.decode_frame(f, &self.dicts)?);
        self.frames.put(key, frame.clone());
        Ok(Some((frame, i)))
    }

    fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the view with a changed copy.
    fn publish(&self, change: impl FnOnce(&mut View)) {
        let mut guard = match self.view.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next = View {
            segments: guard.segments.clone(),
            tails: guard.tails.clone(),
        };
        change(&mut next);
        *guard = Arc::new(next);
    }

    /// Makes `tree` the tree readers and checkpoints see.
    fn publish_tree(&self, tree: &crate::evidence::merkle::CompactTree) {
        let head = TreeHead {
            size: tree.size(),
            root: tree.root(),
        };
        match self.tree_head.write() {
            Ok(mut h) => *h = head,
            Err(p) => *p.into_inner() = head,
        }
    }

    /// Refuses a write while the data dir's disk is below its free-space reserve.
    fn check_free_space(&self) -> Result<(), StoreError> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        match fs2::available_space(&self.path) {
            Ok(free) if free < self.min_free_bytes => Err(StoreError::StorageFull(format!(
                "{} MiB free on the data dir's disk, below the reserve of {} MiB",
                free / (1024 * 1024),
                self.min_free_bytes / (1024 * 1024)
            ))),
            _ => Ok(()),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    jobs: Mutex<Option<mpsc::Sender<WriteJob>>>,
    sealer: Mutex<Option<mpsc::Sender<writer::SealerJob>>>,
    room: Arc<Semaphore>,
    max_queued: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Store {
    fn sh(&self) -> &Shared {
        &self.inner.shared
    }

    pub fn path(&self) -> &Path {
        &self.sh().path
    }

    pub fn stats(&self) -> &StoreStats {
        &self.sh().stats
    }

    /// Events stored so far (the store is append-only, so this is the last sequence number).
    pub fn event_count(&self) -> u64 {
        self.sh().stats.last_seq.load(Ordering::Relaxed)
    }

    /// Events stored for one integration: written in the same batch as the events themselves,
    /// so it is exact after any crash.
    pub fn integration_count(&self, integration: &str) -> Result<u64, StoreError> {
        Ok(self
            .sh()
            .log
            .get(keys::count_key(integration))?
            .map(|v| keys::decode_u64(&v))
            .unwrap_or(0))
    }

    pub fn tokens_tree(&self) -> &sled::Tree {
        &self.sh().tokens
    }

    pub fn settings_tree(&self) -> &sled::Tree {
        &self.sh().settings
    }

    /// Signed checkpoints of the Merkle log (the checkpoints module keeps them).
    pub fn checkpoints_tree(&self) -> &sled::Tree {
        &self.sh().checkpoints
    }

    /// Integration records and status (see `connectors::integrations`).
    pub fn integrations_tree(&self) -> &sled::Tree {
        &self.sh().integrations
    }

    /// Events of `integration` its collection filters dropped, counted with the cursors that
    /// covered them (exact after any crash).
    pub fn filtered_count(&self, integration: &str) -> Result<u64, StoreError> {
        Ok(self
            .sh()
            .log
            .get(keys::filtered_key(integration))?
            .map(|v| keys::decode_u64(&v))
            .unwrap_or(0))
    }

    /// Installs the one observer of stored events (replacing any before it).
    pub fn observe(&self, observer: Arc<dyn StoredObserver>) {
        match self.sh().observer.write() {
            Ok(mut o) => *o = Some(observer),
            Err(p) => *p.into_inner() = Some(observer),
        }
    }

    /// A tree of its own for one of the hub's features beside the log (alert rules, the
    /// notification outbox, export jobs, reports): named `desk:<name>`, so it can never be one
    /// of the store's own trees. `name` is a constant of the calling module, never outside input.
    pub fn desk_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.sh().db.open_tree(format!("desk:{name}"))?)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.sh().db.size_on_disk().unwrap_or(0)
    }

    /// Appends events (deduplicated by integration and source id) and the cursor that covers
    /// them as one atomic batch, waiting for room in the write queue.
    pub async fn append(
        &self,
        events: Vec<PreparedEvent>,
        commit: Commit,
    ) -> Result<AppendOutcome, StoreError> {
        self.submit_waiting(events, commit).await?.wait().await
    }

    /// Refuses a write while the data dir's disk is below its free-space reserve.
    fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(e) = self.sh().stats.failed() {
            return Err(e);
        }
        self.sh().check_free_space()
    }

    fn room_for(&self, events: usize) -> u32 {
        events.clamp(1, self.inner.max_queued) as u32
    }

    /// Queues an append now and returns a handle to await its outcome, or `Busy` when the
    /// write queue is full. Jobs are applied in the order they were submitted, so a durable
    /// job's flush covers every job submitted before it.
    pub fn submit(
        &self,
        events: Vec<PreparedEvent>,
        commit: Commit,
    ) -> Result<PendingAppend, StoreError> {
        self.check_writable()?;
        let room = self
            .inner
            .room
            .clone()
            .try_acquire_many_owned(self.room_for(events.len()))
            .map_err(|_| {
                StoreError::Busy(self.inner.max_queued - self.inner.room.available_permits())
            })?;
        self.enqueue(events, commit, room)
    }

    /// Like `submit`, but waits for room in the write queue instead of answering `Busy`.
    pub async fn submit_waiting(
        &self,
        events: Vec<PreparedEvent>,
        commit: Commit,
    ) -> Result<PendingAppend, StoreError> {
        self.check_writable()?;
        let room = self
            .inner
            .room
            .clone()
            .acquire_many_owned(self.room_for(events.len()))
            .await
            .map_err(|_| StoreError::Closed)?;
        self.enqueue(events, commit, room)
    }

    fn enqueue(
        &self,
        events: Vec<PreparedEvent>,
        commit: Commit,
        room: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<PendingAppend, StoreError> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.inner.jobs.lock().map_err(|_| StoreError::Closed)?;
        let sender = jobs.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(WriteJob {
                events,
                commit,
                reply: Reply::new(reply, Some(room)),
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingAppend(answer))
    }

    /// The complete JSON of one stored event.
    pub fn event_json(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .sh()
            .event_body(seq)?
            .map(|body| prepare::full_json(seq, &body)))
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
            .sh()
            .log
            .get(keys::cursor_key(integration))?
            .map(|v| v.to_vec()))
    }

    pub fn head(&self) -> Result<Head, StoreError> {
        read_head(&self.sh().log)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Hands a job to the sealer thread.
    fn send_sealer(&self, job: writer::SealerJob) -> Result<(), StoreError> {
        let sealer = self
            .inner
            .sealer
            .lock()
            .map_err(|_| StoreError::Io("the sealer's lock is poisoned".into()))?;
        sealer
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    fn send_purge(&self, job: purge::PurgeJob) -> Result<(), StoreError> {
        self.send_sealer(writer::SealerJob::Purge(job))
    }

    fn send_restore(&self, job: purge::RestoreJob) -> Result<(), StoreError> {
        self.send_sealer(writer::SealerJob::Restore(job))
    }

    /// Makes everything applied so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.sh().db.flush_async().await?;
        Ok(())
    }

    /// Finishes every queued write, seals what is full, flushes, and stops the store's threads.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut sealer) = self.inner.sealer.lock() {
            sealer.take();
        }
        let threads: Vec<JoinHandle<()>> = match self.inner.threads.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in threads {
            let _ = t.join();
        }
        self.sh().db.flush()?;
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
