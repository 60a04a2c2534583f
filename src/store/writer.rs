//! The write path, in four threads:
//!
//! - the writer turns each group of queued jobs into one atomic batch of the `log` tree: it
//!   deduplicates (`dedup`), assigns sequence numbers, extends the hash chain and the Merkle
//!   tree (`merkle`, whose kept nodes go in the same batch), packs the stored
//!   events into compressed blocks (`block`), and writes the chain head, the per-integration
//!   counts and the cursors in the same batch — everything exactly-once rests on;
//! - the indexer appends the same events to the in-memory tail (`tail`) that readers query, and
//!   hands a full tail to the sealer;
//! - the flusher makes the batches durable with one flush shared by every waiting request, and
//!   only then answers them;
//! - the sealer writes each full tail once as a segment (`segment`) with its dedup run and rollup
//!   counts, moves the "sealed" watermark in the same batch, merges dedup runs, trains the zstd
//!   dictionary and deletes what merges replaced.
//!
//! This file holds the first three, which every append passes through, and the messages all
//! four exchange; the sealer, which no append waits for, is `sealer`, and the rebuild on start
//! is `open`.
//!
//! Only the log batch must be durable: the tail, segments and runs are derived from it, and a
//! start rebuilds whatever lies past the watermark.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, RwLock};
use std::time::Instant;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::block::{Packer, BLOCK_EVENTS};
use super::dedup::{Recent, Run};
use super::keys;
use super::merkle::kept;
use super::tail::{Tail, TailEntry};
use super::{prepare, AppendOutcome, Commit, Head, PreparedEvent, Shared, StoreError};
use crate::evidence::merkle::CompactTree;

/// Most events merged into one batch.
const GROUP_MAX_EVENTS: usize = 8192;
/// Events stored before a dictionary is trained from them.
pub const TRAIN_AFTER: u64 = 4096;

/// Where an append's outcome goes; holds the job's room in the queue until answered.
pub(super) struct Reply {
    tx: oneshot::Sender<Result<AppendOutcome, StoreError>>,
    _room: Option<OwnedSemaphorePermit>,
}

impl Reply {
    pub fn new(
        tx: oneshot::Sender<Result<AppendOutcome, StoreError>>,
        room: Option<OwnedSemaphorePermit>,
    ) -> Reply {
        Reply { tx, _room: room }
    }

    fn send(self, r: Result<AppendOutcome, StoreError>) {
        let _ = self.tx.send(r);
    }
}

pub(super) struct WriteJob {
    pub events: Vec<PreparedEvent>,
    pub commit: Commit,
    pub reply: Reply,
}

pub(super) struct IndexJob {
    entries: Vec<TailEntry>,
    replies: Vec<(Reply, AppendOutcome, bool)>,
}

pub(super) struct FlushTicket {
    replies: Vec<(Reply, AppendOutcome)>,
}

/// What the sealer tells the writer about dedup runs.
pub(super) enum WriterNote {
    /// Events through `through` are covered by `run`: forget them from memory.
    Sealed { through: u64, run: Arc<Run> },
    /// `run` replaces the runs `removed`.
    Merged { removed: Vec<u64>, run: Arc<Run> },
}

pub(super) enum SealerJob {
    Seal(Arc<RwLock<Tail>>),
    Train,
    /// Runs the writer no longer reads: delete their data.
    Garbage(Vec<u64>),
    /// Replace events by tombstones (`purge`).
    Purge(super::purge::PurgeJob),
    /// Put purged events back (`purge`).
    Restore(super::purge::RestoreJob),
}

fn answer_all_with(replies: impl IntoIterator<Item = Reply>, e: &StoreError) {
    for reply in replies {
        reply.send(Err(e.clone()));
    }
}

/// The writer's own state.
pub(super) struct WriterState {
    pub head: Head,
    pub recent: Recent,
    pub runs: Vec<Arc<Run>>,
    pub counts: HashMap<String, u64>,
    pub persisted_dictionaries: HashSet<u32>,
    /// The Merkle tree over the stored events.
    pub tree: CompactTree,
}

pub(super) struct WriterChannels {
    pub jobs: mpsc::Receiver<WriteJob>,
    pub notes: mpsc::Receiver<WriterNote>,
    pub indexer: mpsc::Sender<IndexJob>,
    pub sealer: mpsc::Sender<SealerJob>,
}

pub(super) fn run_writer(sh: Arc<Shared>, mut st: WriterState, ch: WriterChannels) {
    let mut packer = match Packer::new() {
        Ok(p) => p,
        Err(e) => {
            sh.stats.fail(&e);
            while let Ok(job) = ch.jobs.recv() {
                job.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    while let Ok(first) = ch.jobs.recv() {
        let mut group = vec![first];
        let mut events = group[0].events.len();
        while events < GROUP_MAX_EVENTS {
            match ch.jobs.try_recv() {
                Ok(job) => {
                    events += job.events.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        while let Ok(note) = ch.notes.try_recv() {
            apply_note(&mut st, note, &ch.sealer);
        }
        if let Some(e) = sh.stats.failed() {
            answer_all_with(group.into_iter().map(|j| j.reply), &e);
            continue;
        }
        let started = Instant::now();
        let built = build_log_batch(&sh, &st, &mut packer, &mut group).and_then(|mut built| {
            sh.log.apply_batch(std::mem::take(&mut built.batch))?;
            Ok(built)
        });
        match built {
            Ok(built) => {
                st.head = built.head;
                st.tree = built.tree;
                sh.publish_tree(&st.tree);
                for (integration, n) in built.counts {
                    st.counts.insert(integration, n);
                }
                if let Some(id) = built.dictionary {
                    st.persisted_dictionaries.insert(id);
                }
                let stored = built.entries.len();
                for (h, seq, identity) in built.seen {
                    st.recent.insert(h, seq, &identity);
                }
                sh.stats.last_seq.store(st.head.seq, Ordering::Relaxed);
                sh.stats.batches.fetch_add(1, Ordering::Relaxed);
                sh.stats
                    .log_keys
                    .fetch_add(built.keys as u64, Ordering::Relaxed);
                let dups: usize = built.outcomes.iter().map(|o| o.duplicates.len()).sum();
                sh.stats
                    .events_stored
                    .fetch_add(stored as u64, Ordering::Relaxed);
                sh.stats
                    .duplicates
                    .fetch_add(dups as u64, Ordering::Relaxed);
                tracing::trace!(
                    jobs = group.len(),
                    stored,
                    dups,
                    micros = started.elapsed().as_micros() as u64,
                    "log batch applied"
                );
                let replies = group
                    .into_iter()
                    .zip(built.outcomes)
                    .map(|(job, outcome)| (job.reply, outcome, job.commit.durable))
                    .collect();
                if let Err(mpsc::SendError(job)) = ch.indexer.send(IndexJob {
                    entries: built.entries,
                    replies,
                }) {
                    answer_all_with(job.replies.into_iter().map(|r| r.0), &StoreError::Closed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "log batch failed, nothing of it was stored");
                if !matches!(e, StoreError::Corrupt(_)) {
                    sh.stats.fail(&e);
                }
                answer_all_with(group.into_iter().map(|j| j.reply), &e);
            }
        }
    }
}

fn apply_note(st: &mut WriterState, note: WriterNote, sealer: &mpsc::Sender<SealerJob>) {
    match note {
        WriterNote::Sealed { through, run } => {
            st.recent.drop_through(through);
            st.runs.push(run);
        }
        WriterNote::Merged { removed, run } => {
            st.runs.retain(|r| !removed.contains(&r.id));
            st.runs.push(run);
            let _ = sealer.send(SealerJob::Garbage(removed));
        }
    }
}

struct BuiltBatch {
    batch: sled::Batch,
    keys: usize,
    head: Head,
    outcomes: Vec<AppendOutcome>,
    entries: Vec<TailEntry>,
    /// (hash, seq, identity) of each stored event, for `Recent`.
    seen: Vec<(u64, u64, Vec<u8>)>,
    counts: Vec<(String, u64)>,
    dictionary: Option<u32>,
    tree: CompactTree,
}

/// The stored event with this identity, looking at events earlier in the group, the unsealed
/// ones and the sealed runs; a hash match is confirmed by comparing identities.
fn find_stored(
    sh: &Shared,
    st: &WriterState,
    in_group: &HashMap<u64, Vec<(u64, usize)>>,
    group_identities: &[Vec<u8>],
    h: u64,
    identity: &[u8],
) -> Result<Option<u64>, StoreError> {
    if let Some(found) = in_group.get(&h).and_then(|v| {
        v.iter()
            .find(|(_, i)| group_identities[*i] == identity)
            .map(|(seq, _)| *seq)
    }) {
        return Ok(Some(found));
    }
    if let Some(seq) = st.recent.find(h, identity) {
        return Ok(Some(seq));
    }
    for run in st.runs.iter().rev() {
        for seq in run.lookup(&sh.index, h)? {
            match sh.stored_identity(seq)? {
                super::StoredIdentity::Stored(stored) if stored == identity => {
                    return Ok(Some(seq))
                }
                super::StoredIdentity::Purged => return Ok(Some(seq)),
                _ => {}
            }
        }
    }
    Ok(None)
}

/// The log batch of a group of jobs. Pure with respect to the writer's state: the caller adopts
/// the returned head and counts only once the batch is applied.
fn build_log_batch(
    sh: &Shared,
    st: &WriterState,
    packer: &mut Packer,
    group: &mut [WriteJob],
) -> Result<BuiltBatch, StoreError> {
    let mut batch = sled::Batch::default();
    let mut keys_written = 0usize;
    let mut seq = st.head.seq;
    let mut hash = st.head.hash;
    let mut in_group: HashMap<u64, Vec<(u64, usize)>> = HashMap::new();
    let mut identities: Vec<Vec<u8>> = Vec::new();
    let mut outcomes = Vec::with_capacity(group.len());
    let mut entries = Vec::new();
    let mut seen = Vec::new();
    // (job, event index, chain hash after it) of each stored event, in sequence order
    let mut stored: Vec<(usize, usize, [u8; 32])> = Vec::new();
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut filtered: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut tree = st.tree.clone();
    for (j, job) in group.iter_mut().enumerate() {
        let mut outcome = AppendOutcome::default();
        for (index, event) in job.events.iter_mut().enumerate() {
            let h = event.hash & sh.hash_mask;
            if let Some(earlier) = find_stored(sh, st, &in_group, &identities, h, &event.identity)?
            {
                outcome.duplicates.push((index, earlier));
                continue;
            }
            seq += 1;
            hash = prepare::chain_hash_of(&hash, seq, &event.body);
            let leaf = prepare::leaf_hash_of(seq, &event.body);
            tree.push_with(leaf, |id, node| {
                if kept(id) {
                    batch.insert(&keys::node_key(id.level, id.index)[..], &node[..]);
                    keys_written += 1;
                }
            })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            in_group.entry(h).or_default().push((seq, identities.len()));
            identities.push(event.identity.clone());
            let count = match counts.get_mut(&event.integration) {
                Some(n) => n,
                None => counts
                    .entry(event.integration.clone())
                    .or_insert(st.counts.get(&event.integration).copied().unwrap_or(0)),
            };
            *count += 1;
            stored.push((j, index, hash));
            entries.push(TailEntry {
                seq,
                time: event.time,
                hash: h,
                terms: std::mem::take(&mut event.terms),
                groups: std::mem::take(&mut event.groups),
            });
            seen.push((h, seq, event.identity.clone()));
            outcome.stored.push((index, seq));
        }
        if let Some((integration, cursor)) = &job.commit.cursor {
            batch.insert(keys::cursor_key(integration), cursor.as_slice());
            keys_written += 1;
        }
        if let Some((integration, n)) = &job.commit.filtered {
            let key = keys::filtered_key(integration);
            let total = match filtered.get(&key) {
                Some(t) => *t,
                None => sh.log.get(&key)?.map(|v| keys::decode_u64(&v)).unwrap_or(0),
            } + n;
            filtered.insert(key.clone(), total);
            batch.insert(key, &total.to_be_bytes()[..]);
            keys_written += 1;
        }
        outcomes.push(outcome);
    }
    let dict = sh.dicts.current();
    let mut new_dictionary = None;
    if let Some(d) = dict {
        if !stored.is_empty() && !st.persisted_dictionaries.contains(&d.id) {
            // a dictionary reaches the log with the first block that needs it
            batch.insert(&keys::dictionary_key(d.id)[..], d.raw.as_slice());
            keys_written += 1;
            new_dictionary = Some(d.id);
        }
    }
    let mut first_seq = st.head.seq + 1;
    for chunk in stored.chunks(BLOCK_EVENTS) {
        let events: Vec<(&[u8], [u8; 32])> = chunk
            .iter()
            .map(|(j, i, h)| (group[*j].events[*i].body.as_slice(), *h))
            .collect();
        let value = packer.block(&events, dict)?;
        batch.insert(&keys::block_key(first_seq)[..], value);
        keys_written += 1;
        first_seq += chunk.len() as u64;
    }
    for (integration, n) in &counts {
        batch.insert(keys::count_key(integration), &n.to_be_bytes()[..]);
        keys_written += 1;
    }
    if seq != st.head.seq {
        batch.insert(
            keys::meta_key(keys::META_FRONTIER),
            super::merkle::lower_frontier(&tree),
        );
        keys_written += 1;
        let mut head_value = Vec::with_capacity(40);
        head_value.extend_from_slice(&seq.to_be_bytes());
        head_value.extend_from_slice(&hash);
        batch.insert(keys::meta_key(keys::META_HEAD), head_value);
        keys_written += 1;
    }
    Ok(BuiltBatch {
        batch,
        keys: keys_written,
        head: Head { seq, hash },
        outcomes,
        entries,
        seen,
        counts: counts.into_iter().collect(),
        dictionary: new_dictionary,
        tree,
    })
}

pub(super) struct IndexerChannels {
    pub jobs: mpsc::Receiver<IndexJob>,
    pub flusher: mpsc::Sender<FlushTicket>,
    pub sealer: mpsc::Sender<SealerJob>,
}

/// Appends the stored events to the live tail; a full tail is frozen and sent to be sealed.
pub(super) fn run_indexer(sh: Arc<Shared>, mut live: Arc<RwLock<Tail>>, ch: IndexerChannels) {
    let mut train_asked = sh.dicts.current().is_some();
    while let Ok(first) = ch.jobs.recv() {
        let mut group = vec![first];
        while let Ok(more) = ch.jobs.try_recv() {
            group.push(more);
        }
        let mut replies = Vec::new();
        let mut entries = Vec::new();
        for job in group {
            replies.extend(job.replies);
            entries.extend(job.entries);
        }
        if let Some(observer) = sh.observer() {
            observer.stored(&entries);
        }
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let full = {
                let Ok(mut tail) = live.write() else {
                    let e = StoreError::Io("the tail's lock is poisoned".into());
                    sh.stats.fail(&e);
                    break;
                };
                while !tail.is_full() {
                    match entries.next() {
                        Some(e) => tail.push(e),
                        None => break,
                    }
                }
                tail.is_full().then(|| tail.next_seq())
            };
            if let Some(next_seq) = full {
                let fresh = Arc::new(RwLock::new(Tail::new(next_seq, sh.seal_events)));
                sh.publish(|view| view.tails.push(fresh.clone()));
                let frozen = std::mem::replace(&mut live, fresh);
                let _ = ch.sealer.send(SealerJob::Seal(frozen));
            }
        }
        if !train_asked && sh.stats.last_seq.load(Ordering::Relaxed) >= TRAIN_AFTER {
            train_asked = true;
            let _ = ch.sealer.send(SealerJob::Train);
        }
        let mut durable = Vec::new();
        for (reply, outcome, wants_flush) in replies {
            if wants_flush {
                durable.push((reply, outcome));
            } else {
                reply.send(Ok(outcome));
            }
        }
        if !durable.is_empty() {
            if let Err(mpsc::SendError(ticket)) = ch.flusher.send(FlushTicket { replies: durable })
            {
                answer_all_with(ticket.replies.into_iter().map(|r| r.0), &StoreError::Closed);
            }
        }
    }
}

pub(super) fn run_flusher(sh: Arc<Shared>, tickets: mpsc::Receiver<FlushTicket>) {
    while let Ok(first) = tickets.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = tickets.try_recv() {
            waiting.push(more);
        }
        let started = Instant::now();
        let result = sh.db.flush().map_err(StoreError::from);
        sh.stats.flushes.fetch_add(1, Ordering::Relaxed);
        sh.stats
            .flush_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush failed; the waiting requests are answered with an error");
            sh.stats.fail(e);
        }
        for ticket in waiting {
            for (reply, outcome) in ticket.replies {
                reply.send(result.clone().map(|_| outcome));
            }
        }
    }
}
