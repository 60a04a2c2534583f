//! The write path, in four threads:
//!
//! - the writer turns each group of queued jobs into one atomic batch of the `log` tree: it
//!   deduplicates (`dedup`), assigns sequence numbers, extends the hash chain, packs the stored
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
//! Only the log batch must be durable: the tail, segments and runs are derived from it, and a
//! start rebuilds whatever lies past the watermark.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, RwLock};
use std::time::Instant;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::block::{self, Packer, BLOCK_EVENTS};
use super::dedup::{self, Recent, Run};
use super::keys;
use super::segment::{self, SegmentMeta};
use super::tail::{Tail, TailEntry};
use super::{prepare, AppendOutcome, Commit, Head, PreparedEvent, Shared, StoreError, View};

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
            let Some(body) = sh.event_body(seq)? else {
                continue;
            };
            if prepare::stored_identity(seq, &body)? == identity {
                return Ok(Some(seq));
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

/// The sealer's own state.
pub(super) struct SealerState {
    pub runs: Vec<Arc<Run>>,
    pub next_run: u64,
    pub garbage: Vec<u64>,
}

pub(super) fn run_sealer(
    sh: Arc<Shared>,
    mut st: SealerState,
    jobs: mpsc::Receiver<SealerJob>,
    notes: mpsc::Sender<WriterNote>,
) {
    // tails waiting to be sealed, in order: on a full disk they wait (still served from memory)
    let mut waiting: std::collections::VecDeque<Arc<RwLock<Tail>>> = Default::default();
    let mut open = true;
    // a dedup merge writing its run on a thread of its own: sealing never waits for it
    let mut merging: Option<Merging> = None;
    while open || !waiting.is_empty() || merging.is_some() {
        // with a merge running or tails waiting (for disk space), wake up now and then
        let wake = if merging.is_some() {
            Some(std::time::Duration::from_millis(50))
        } else if !waiting.is_empty() {
            Some(std::time::Duration::from_secs(1))
        } else {
            None
        };
        let job = match wake {
            None => jobs.recv().ok(),
            Some(wake) => match jobs.recv_timeout(wake) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            },
        };
        let result = match job {
            None if open && waiting.is_empty() && merging.is_none() => break,
            None => Ok(()),
            Some(SealerJob::Seal(tail)) => {
                waiting.push_back(tail);
                Ok(())
            }
            Some(SealerJob::Train) => train_dictionary(&sh),
            Some(SealerJob::Garbage(ids)) => collect_garbage(&sh, &mut st, &ids),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "store maintenance failed");
            sh.stats.fail(&e);
        }
        while let Some(tail) = waiting.front().cloned() {
            match seal(&sh, &mut st, &tail).map(|sealed| {
                if let Some((meta, run)) = sealed {
                    let _ = notes.send(WriterNote::Sealed {
                        through: meta.last_seq(),
                        run,
                    });
                }
            }) {
                Ok(()) => {
                    waiting.pop_front();
                    tracing::debug!(waiting = waiting.len(), "tails waiting to be sealed");
                }
                Err(StoreError::StorageFull(e)) => {
                    tracing::warn!(error = %e, "sealing waits for free space; the tail stays in memory");
                    if !open {
                        // shutting down: the next start rebuilds it from the log
                        waiting.clear();
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "sealing failed; what it covered is rebuilt from the log on the next start");
                    sh.stats.fail(&e);
                    waiting.clear();
                }
            }
        }
        if merging.as_ref().is_some_and(|m| m.thread.is_finished()) || (!open && waiting.is_empty())
        {
            if let Some(m) = merging.take() {
                match finish_merge(&sh, &mut st, m) {
                    Ok(note) => {
                        let _ = notes.send(note);
                    }
                    Err(StoreError::StorageFull(e)) => {
                        tracing::warn!(error = %e, "a dedup merge stopped for lack of free space; it starts again later");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a dedup merge failed");
                        sh.stats.fail(&e);
                    }
                }
            }
        }
        if merging.is_none() && waiting.is_empty() && open {
            match start_merge(&sh, &mut st) {
                Ok(m) => merging = m,
                // tried again after the next seal
                Err(StoreError::StorageFull(_)) => {}
                Err(e) => tracing::warn!(error = %e, "a dedup merge could not start"),
            }
        }
        if !open && jobs.try_recv().is_err() && waiting.is_empty() && merging.is_none() {
            break;
        }
    }
}

/// Which runs a merge replaces, and by which new run.
pub(super) struct MergeJob {
    id: u64,
    tier: u8,
    inputs: Vec<u64>,
    started: Instant,
}

/// A dedup merge in progress: its run is written by `thread`, invisible until committed.
pub(super) struct Merging {
    job: MergeJob,
    thread: std::thread::JoinHandle<Result<(Run, Vec<u8>), StoreError>>,
}

/// Starts merging the runs of a full tier in the background, if one is full. The run's id is
/// recorded first (`META_MERGING`), so that a crash before the merge commits leaves no data
/// keys behind on the next start.
fn start_merge(sh: &Arc<Shared>, st: &mut SealerState) -> Result<Option<Merging>, StoreError> {
    if sh.stats.failed().is_some() {
        return Ok(None);
    }
    let Some((tier, ids)) = dedup::pick_merge(&st.runs) else {
        return Ok(None);
    };
    sh.check_free_space()?;
    let started = Instant::now();
    let id = st.next_run;
    let mut batch = sled::Batch::default();
    batch.insert(keys::meta_key(keys::META_MERGING), &id.to_be_bytes()[..]);
    batch.insert(
        keys::meta_key(keys::META_NEXT_RUN),
        &(id + 1).to_be_bytes()[..],
    );
    sh.index.apply_batch(batch)?;
    st.next_run = id + 1;
    let inputs: Vec<Arc<Run>> = st
        .runs
        .iter()
        .filter(|r| ids.contains(&r.id))
        .cloned()
        .collect();
    let shared = sh.clone();
    let thread = std::thread::Builder::new()
        .name("trailhub-merger".into())
        .spawn(move || {
            let refs: Vec<&Run> = inputs.iter().map(|r| r.as_ref()).collect();
            dedup::merge_runs(&shared.index, &refs, id, tier + 1)
        })
        .map_err(|e| StoreError::Io(format!("cannot start a merge thread: {e}")))?;
    Ok(Some(Merging {
        job: MergeJob {
            id,
            tier,
            inputs: ids,
            started,
        },
        thread,
    }))
}

/// Commits a finished background merge: the new run replaces its inputs in one batch.
fn finish_merge(sh: &Shared, st: &mut SealerState, m: Merging) -> Result<WriterNote, StoreError> {
    let written = m
        .thread
        .join()
        .map_err(|_| StoreError::Io("the merge thread panicked".into()))?;
    let (run, description) = match written {
        Ok(w) => w,
        Err(e) => {
            // its keys are invisible; remove them now (or on the next start)
            let _ = dedup::delete_run_data(&sh.index, m.job.id);
            let _ = sh.index.remove(keys::meta_key(keys::META_MERGING));
            return Err(e);
        }
    };
    commit_merge(sh, st, m.job, run, description)
}

/// Makes a written merge visible: its run replaces its inputs in one batch (the inputs' data
/// keys become garbage, deleted once no reader can hold them).
fn commit_merge(
    sh: &Shared,
    st: &mut SealerState,
    job: MergeJob,
    run: Run,
    description: Vec<u8>,
) -> Result<WriterNote, StoreError> {
    let MergeJob {
        id,
        tier,
        inputs,
        started,
    } = job;
    let mut garbage = st.garbage.clone();
    garbage.extend(&inputs);
    let mut batch = sled::Batch::default();
    batch.insert(&keys::run_key(id)[..], description);
    for old in &inputs {
        batch.remove(&keys::run_key(*old)[..]);
    }
    batch.insert(
        keys::meta_key(keys::META_NEXT_RUN),
        &st.next_run.to_be_bytes()[..],
    );
    batch.insert(keys::meta_key(keys::META_GARBAGE), encode_ids(&garbage));
    batch.remove(keys::meta_key(keys::META_MERGING));
    sh.index.apply_batch(batch)?;
    st.garbage = garbage;
    let run = Arc::new(run);
    st.runs.retain(|r| !inputs.contains(&r.id));
    st.runs.push(run.clone());
    tracing::debug!(
        run = id,
        tier = tier + 1,
        entries = run.count,
        millis = started.elapsed().as_millis() as u64,
        "dedup runs merged"
    );
    Ok(WriterNote::Merged {
        removed: inputs,
        run,
    })
}

/// A sealed segment and the dedup run written with it.
pub(super) type Sealed = (Arc<SegmentMeta>, Arc<Run>);

/// Writes a frozen tail as a segment with its dedup run and rollups, then publishes it in place
/// of the tail.
pub(super) fn seal(
    sh: &Shared,
    st: &mut SealerState,
    tail: &Arc<RwLock<Tail>>,
) -> Result<Option<Sealed>, StoreError> {
    if let Some(e) = sh.stats.failed() {
        return Err(e);
    }
    sh.check_free_space()?;
    let started = Instant::now();
    let guard = tail
        .read()
        .map_err(|_| StoreError::Io("the tail's lock is poisoned".into()))?;
    if guard.is_empty() {
        return Ok(None);
    }
    if guard.missing.len() == guard.len() {
        // nothing of it could be read back: only the watermark moves past it
        let last = guard.last_seq();
        drop(guard);
        let _sealing = sh
            .seal_lock
            .write()
            .map_err(|_| StoreError::Io("the seal lock is poisoned".into()))?;
        sh.index
            .insert(keys::meta_key(keys::META_SEALED), &last.to_be_bytes()[..])?;
        sh.publish(|view| view.tails.retain(|t| !Arc::ptr_eq(t, tail)));
        return Ok(None);
    }
    let (meta, data) = segment::build(&guard)?;
    let mut keys_written = data.len();
    for (k, v) in data {
        sh.index.insert(k, v)?;
    }
    let mut entries: Vec<(u64, u64)> = guard
        .hashes
        .iter()
        .enumerate()
        .filter(|(i, _)| !guard.missing.contains(&(*i as u32)))
        .map(|(i, h)| (*h, guard.first_seq + i as u64))
        .collect();
    entries.sort_unstable();
    let run_id = st.next_run;
    let (run, description) = dedup::write_run(&sh.index, run_id, 0, entries.into_iter())?;
    keys_written += run.chunks() + 1;
    let mut batch = sled::Batch::default();
    batch.insert(&keys::segment_key(meta.id())[..], meta.encode());
    batch.insert(&keys::run_key(run_id)[..], description);
    batch.insert(
        keys::meta_key(keys::META_NEXT_RUN),
        &(run_id + 1).to_be_bytes()[..],
    );
    batch.insert(
        keys::meta_key(keys::META_SEALED),
        &meta.last_seq().to_be_bytes()[..],
    );
    for ((g, d, bucket), groups) in &guard.rollups {
        for (group, n) in groups {
            let key = keys::rollup_key(*g, *d, *bucket, group);
            let current = sh
                .index
                .get(&key)?
                .map(|v| keys::decode_u64(&v))
                .unwrap_or(0);
            batch.insert(key, &(current + n).to_be_bytes()[..]);
            keys_written += 1;
        }
    }
    keys_written += 4;
    drop(guard);
    let meta = Arc::new(meta);
    {
        let _sealing = sh
            .seal_lock
            .write()
            .map_err(|_| StoreError::Io("the seal lock is poisoned".into()))?;
        sh.index.apply_batch(batch)?;
        sh.publish(|view| {
            view.segments.push(meta.clone());
            view.tails.retain(|t| !Arc::ptr_eq(t, tail));
        });
    }
    st.next_run = run_id + 1;
    let run = Arc::new(run);
    st.runs.push(run.clone());
    sh.stats
        .index_keys
        .fetch_add(keys_written as u64, Ordering::Relaxed);
    tracing::debug!(
        segment = meta.id(),
        events = meta.count,
        keys = keys_written,
        millis = started.elapsed().as_millis() as u64,
        "segment sealed"
    );
    Ok(Some((meta, run)))
}

/// Merges dedup runs tier by tier while a tier holds enough of them; returns what the writer
/// must learn.
pub(super) fn merge_runs(sh: &Shared, st: &mut SealerState) -> Result<Vec<WriterNote>, StoreError> {
    let mut notes = Vec::new();
    while let Some((tier, ids)) = dedup::pick_merge(&st.runs) {
        let started = Instant::now();
        let inputs: Vec<&Run> = st
            .runs
            .iter()
            .filter(|r| ids.contains(&r.id))
            .map(|r| r.as_ref())
            .collect();
        let id = st.next_run;
        let (run, description) = dedup::merge_runs(&sh.index, &inputs, id, tier + 1)?;
        st.next_run = id + 1;
        let job = MergeJob {
            id,
            tier,
            inputs: ids,
            started,
        };
        notes.push(commit_merge(sh, st, job, run, description)?);
    }
    Ok(notes)
}

pub(super) fn encode_ids(ids: &[u64]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_be_bytes()).collect()
}

pub(super) fn decode_ids(v: &[u8]) -> Vec<u64> {
    v.chunks_exact(8).map(keys::decode_u64).collect()
}

/// Deletes the data of runs nothing reads any more.
pub(super) fn collect_garbage(
    sh: &Shared,
    st: &mut SealerState,
    ids: &[u64],
) -> Result<(), StoreError> {
    for id in ids {
        dedup::delete_run_data(&sh.index, *id)?;
    }
    st.garbage.retain(|g| !ids.contains(g));
    sh.index
        .insert(keys::meta_key(keys::META_GARBAGE), encode_ids(&st.garbage))?;
    Ok(())
}

/// Trains the zstd dictionary from the first stored events and makes it current.
fn train_dictionary(sh: &Shared) -> Result<(), StoreError> {
    if sh.dicts.current().is_some() {
        return Ok(());
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    for item in sh.log.range(keys::block_key(1)..=keys::block_key(u64::MAX)) {
        let (_, v) = item?;
        let view = block::BlockView::parse(&v)?;
        samples.extend(view.bodies(&sh.dicts)?);
        if samples.len() as u64 >= TRAIN_AFTER {
            break;
        }
    }
    let Some(raw) = block::train(&samples) else {
        return Ok(());
    };
    let id = sh.dicts.next_id();
    sh.dicts.add(block::Dictionary::new(id, raw), true);
    tracing::debug!(
        dictionary = id,
        samples = samples.len(),
        millis = started.elapsed().as_millis() as u64,
        "compression dictionary trained"
    );
    Ok(())
}

/// Rebuilds the index of the events past the sealed watermark (after a crash or a restart):
/// full tails are sealed on the way, the last one is returned as the live tail, and the writer's
/// dedup entries for unsealed events are filled in.
pub(super) fn rebuild_tail(
    sh: &Shared,
    sealer: &mut SealerState,
    sealed: u64,
    head: u64,
    recent: &mut Recent,
) -> Result<Arc<RwLock<Tail>>, StoreError> {
    let started = Instant::now();
    let mut live = Arc::new(RwLock::new(Tail::new(sealed + 1, sh.seal_events)));
    sh.publish(|v| v.tails = vec![live.clone()]);
    if head <= sealed {
        return Ok(live);
    }
    // the block holding `sealed + 1` may start before it
    let start = match sh
        .log
        .range(keys::block_key(0)..=keys::block_key(sealed + 1))
        .next_back()
    {
        Some(item) => keys::decode_u64(&item?.0[1..]),
        None => sealed + 1,
    };
    let mut blocks = sh
        .log
        .range(keys::block_key(start)..=keys::block_key(u64::MAX))
        .peekable();
    while let Some(item) = blocks.next() {
        let (k, v) = item?;
        let first = keys::decode_u64(&k[1..]);
        // where this block ends: the next block's start, or the head
        let end = match blocks.peek() {
            Some(Ok((next, _))) => keys::decode_u64(&next[1..]),
            _ => head + 1,
        };
        // A block that does not decode (damaged on disk) is logged and its events kept out of
        // the index: the hub still starts, and `verify` names the damage.
        let bodies = match block::BlockView::parse(&v).and_then(|view| view.bodies(&sh.dicts)) {
            Ok(bodies) => Some(bodies),
            Err(e) => {
                tracing::error!(block = first, error = %e, "a stored block does not decode; its events are left out of the index (run `trailhub verify`)");
                None
            }
        };
        for seq in first.max(sealed + 1)..end {
            let body = bodies.as_ref().and_then(|b| b.get((seq - first) as usize));
            let prepared = body.and_then(|body| {
                let json = prepare::full_json(seq, body);
                match serde_json::from_slice::<crate::schema::Event>(&json) {
                    Ok(event) => Some(prepare::prepare(&event)),
                    Err(e) => {
                        tracing::error!(seq, error = %e, "a stored event does not decode; it is left out of the index");
                        None
                    }
                }
            });
            let full = {
                let mut tail = live
                    .write()
                    .map_err(|_| StoreError::Io("the tail's lock is poisoned".into()))?;
                match prepared {
                    Some(prepared) => {
                        let h = prepared.hash & sh.hash_mask;
                        recent.insert(h, seq, &prepared.identity);
                        tail.push(TailEntry {
                            seq,
                            time: prepared.time,
                            hash: h,
                            terms: prepared.terms,
                            groups: prepared.groups,
                        });
                    }
                    None => tail.push_missing(seq),
                }
                tail.is_full().then(|| tail.next_seq())
            };
            if let Some(next) = full {
                let fresh = Arc::new(RwLock::new(Tail::new(next, sh.seal_events)));
                sh.publish(|v| v.tails.push(fresh.clone()));
                let frozen = std::mem::replace(&mut live, fresh);
                if let Some((meta, _)) = seal(sh, sealer, &frozen)? {
                    recent.drop_through(meta.last_seq());
                }
                // the writer starts after this: it reads the merged runs from `sealer`
                let _ = merge_runs(sh, sealer)?;
            }
        }
    }
    tracing::info!(
        events = head - sealed,
        from = sealed + 1,
        through = head,
        millis = started.elapsed().as_millis() as u64,
        "indexed the events past the sealed watermark"
    );
    Ok(live)
}

/// Removes data keys a crash left behind: segments past the watermark and runs never committed.
pub(super) fn remove_orphans(
    index: &sled::Tree,
    sealed: u64,
    next_run: u64,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    let ranges = [
        (
            keys::segment_data_prefix(sealed + 1).to_vec(),
            keys::segment_data_prefix(u64::MAX).to_vec(),
        ),
        (
            keys::run_data_prefix(next_run).to_vec(),
            keys::run_data_prefix(u64::MAX).to_vec(),
        ),
    ];
    for (from, to) in ranges {
        let orphans: Vec<sled::IVec> = index
            .range(from..)
            .keys()
            .take_while(|k| {
                k.as_ref()
                    .map(|k| k.as_ref() <= to.as_slice())
                    .unwrap_or(true)
            })
            .collect::<Result<_, _>>()?;
        for k in orphans {
            index.remove(k)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Segments found in the index tree, oldest first.
pub(super) fn load_segments(index: &sled::Tree) -> Result<Vec<Arc<SegmentMeta>>, StoreError> {
    let mut out = Vec::new();
    for item in index.scan_prefix([keys::SEGMENT]) {
        let (_, v) = item?;
        out.push(Arc::new(SegmentMeta::decode(&v)?));
    }
    Ok(out)
}

impl View {
    pub(super) fn new(segments: Vec<Arc<SegmentMeta>>, tails: Vec<Arc<RwLock<Tail>>>) -> View {
        View { segments, tails }
    }
}
