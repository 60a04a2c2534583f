//! The write path, in three threads:
//!
//! - the writer appends each group of queued jobs to the `log` tree as one atomic batch: events,
//!   dedup keys, chain head, integration cursors — everything the exactly-once guarantee rests on;
//! - the indexer, one group behind, writes the same events' posting blocks and rollups to the
//!   `index` tree, with an "indexed through" watermark in the same batch;
//! - the flusher makes both durable with one flush shared by every waiting request, and only then
//!   answers them.
//!
//! Log and index are separate trees so that the writer and the indexer each keep a core busy
//! (sled applies a batch on the calling thread). A crash between the two leaves a log tail past
//! the watermark; `reindex_tail` indexes it again on open, exactly once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use tokio::sync::oneshot;

use super::keys::{self, Dimension, Granularity};
use super::{
    encode_event_value, postings, prepare, AppendOutcome, Commit, Head, PreparedEvent, StoreError,
    StoreStats,
};

/// Most events merged into one batch.
const GROUP_MAX_EVENTS: usize = 8192;

type Reply = oneshot::Sender<Result<AppendOutcome, StoreError>>;

pub(super) struct WriteJob {
    pub events: Vec<PreparedEvent>,
    pub commit: Commit,
    pub reply: Reply,
}

/// What the indexer needs of one stored event.
pub(super) struct IndexEntry {
    seq: u64,
    time: i64,
    postings: Vec<Vec<u8>>,
    groups: Vec<(Dimension, String)>,
}

pub(super) struct IndexJob {
    entries: Vec<IndexEntry>,
    /// The last sequence number these entries cover.
    through: u64,
    replies: Vec<(Reply, AppendOutcome, bool)>,
}

pub(super) struct FlushTicket {
    replies: Vec<(Reply, AppendOutcome)>,
}

fn answer_all_with(replies: impl IntoIterator<Item = Reply>, e: &StoreError) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

pub(super) fn run_writer(
    log: sled::Tree,
    mut head: Head,
    jobs: mpsc::Receiver<WriteJob>,
    indexer: mpsc::Sender<IndexJob>,
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
        if let Some(e) = stats.failed() {
            answer_all_with(group.into_iter().map(|j| j.reply), &e);
            continue;
        }
        let started = Instant::now();
        let built = build_log_batch(&log, head, &mut group).and_then(
            |(batch, new_head, outcomes, entries)| {
                log.apply_batch(batch)?;
                let stored: usize = outcomes.iter().map(|o| o.stored.len()).sum();
                stats
                    .log_keys
                    .fetch_add(2 * stored as u64 + 1, Ordering::Relaxed);
                Ok((new_head, outcomes, entries))
            },
        );
        match built {
            Ok((new_head, outcomes, entries)) => {
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
                    "log batch applied"
                );
                let replies = group
                    .into_iter()
                    .zip(outcomes)
                    .map(|(job, outcome)| (job.reply, outcome, job.commit.durable))
                    .collect();
                if let Err(mpsc::SendError(job)) = indexer.send(IndexJob {
                    entries,
                    through: head.seq,
                    replies,
                }) {
                    answer_all_with(job.replies.into_iter().map(|r| r.0), &StoreError::Closed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "log batch failed, nothing of it was stored");
                if !matches!(e, StoreError::Corrupt(_)) {
                    stats.fail(&e);
                }
                answer_all_with(group.into_iter().map(|j| j.reply), &e);
            }
        }
    }
}

/// The log batch of a group of jobs. Pure with respect to `head`: the caller adopts the returned
/// head only once the batch is applied.
#[allow(clippy::type_complexity)]
fn build_log_batch(
    log: &sled::Tree,
    head: Head,
    group: &mut [WriteJob],
) -> Result<(sled::Batch, Head, Vec<AppendOutcome>, Vec<IndexEntry>), StoreError> {
    let mut batch = sled::Batch::default();
    let mut seq = head.seq;
    let mut hash = head.hash;
    let mut stored_now: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(group.len());
    let mut entries = Vec::new();
    for job in group.iter_mut() {
        let mut outcome = AppendOutcome::default();
        for (index, event) in job.events.iter_mut().enumerate() {
            if let Some(&earlier) = stored_now.get(&event.dedup_key) {
                outcome.duplicates.push((index, earlier));
                continue;
            }
            if let Some(earlier) = log.get(&event.dedup_key)? {
                outcome.duplicates.push((index, keys::decode_u64(&earlier)));
                continue;
            }
            seq += 1;
            hash = prepare::chain_hash_of(&hash, seq, &event.body);
            batch.insert(
                &keys::event_key(seq)[..],
                encode_event_value(&hash, &event.compressed),
            );
            batch.insert(event.dedup_key.as_slice(), &seq.to_be_bytes()[..]);
            stored_now.insert(std::mem::take(&mut event.dedup_key), seq);
            entries.push(IndexEntry {
                seq,
                time: event.time,
                postings: std::mem::take(&mut event.postings),
                groups: std::mem::take(&mut event.groups),
            });
            outcome.stored.push((index, seq));
        }
        if let Some((integration, cursor)) = &job.commit.cursor {
            batch.insert(keys::cursor_key(integration), cursor.as_slice());
        }
        outcomes.push(outcome);
    }
    if seq != head.seq {
        let mut head_value = Vec::with_capacity(40);
        head_value.extend_from_slice(&seq.to_be_bytes());
        head_value.extend_from_slice(&hash);
        batch.insert(keys::meta_key(keys::META_HEAD), head_value);
    }
    Ok((batch, Head { seq, hash }, outcomes, entries))
}

pub(super) fn run_indexer(
    index: sled::Tree,
    jobs: mpsc::Receiver<IndexJob>,
    flusher: mpsc::Sender<FlushTicket>,
    stats: Arc<StoreStats>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while let Ok(more) = jobs.try_recv() {
            group.push(more);
        }
        let replies: Vec<(Reply, AppendOutcome, bool)> =
            group.iter_mut().flat_map(|j| j.replies.drain(..)).collect();
        if let Some(e) = stats.failed() {
            answer_all_with(replies.into_iter().map(|r| r.0), &e);
            continue;
        }
        let through = group.iter().map(|j| j.through).max().unwrap_or(0);
        let entries: Vec<&IndexEntry> = group.iter().flat_map(|j| j.entries.iter()).collect();
        match apply_index(&index, &entries, through) {
            Ok(keys) => {
                stats.index_keys.fetch_add(keys as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "index batch failed; its events are indexed again on the next start");
                stats.fail(&e);
                answer_all_with(replies.into_iter().map(|r| r.0), &e);
                continue;
            }
        }
        let mut durable = Vec::new();
        for (reply, outcome, wants_flush) in replies {
            if wants_flush {
                durable.push((reply, outcome));
            } else {
                let _ = reply.send(Ok(outcome));
            }
        }
        if !durable.is_empty() {
            if let Err(mpsc::SendError(ticket)) = flusher.send(FlushTicket { replies: durable }) {
                answer_all_with(ticket.replies.into_iter().map(|r| r.0), &StoreError::Closed);
            }
        }
    }
}

fn bucket_start(t: i64, g: Granularity) -> i64 {
    t.div_euclid(g.micros()) * g.micros()
}

/// Merges entries into their posting blocks, adds their rollup counts, and moves the watermark,
/// as one atomic batch of the index tree.
fn apply_index(
    index: &sled::Tree,
    entries: &[&IndexEntry],
    through: u64,
) -> Result<usize, StoreError> {
    let mut blocks: HashMap<(&[u8], i64), Vec<postings::Position>> = HashMap::new();
    let mut counters: HashMap<Vec<u8>, u64> = HashMap::new();
    let time_prefix = keys::posting_prefix(None);
    for entry in entries {
        let block = postings::block_start(entry.time);
        let position = postings::Position {
            time: entry.time,
            seq: entry.seq,
        };
        for prefix in std::iter::once(&time_prefix).chain(&entry.postings) {
            blocks
                .entry((prefix.as_slice(), block))
                .or_default()
                .push(position);
        }
        for (dimension, group_value) in &entry.groups {
            for g in Granularity::ALL {
                *counters
                    .entry(keys::rollup_key(
                        g,
                        *dimension,
                        bucket_start(entry.time, g),
                        group_value,
                    ))
                    .or_insert(0) += 1;
            }
        }
    }
    let mut batch = sled::Batch::default();
    let mut keys_written = counters.len() + 1;
    for ((prefix, block), new) in blocks {
        for (key, value) in postings::append_to_block(index, prefix, block, new)? {
            batch.insert(key, value);
            keys_written += 1;
        }
    }
    for (key, delta) in counters {
        let current = index.get(&key)?.map(|v| keys::decode_u64(&v)).unwrap_or(0);
        batch.insert(key, &(current + delta).to_be_bytes()[..]);
    }
    batch.insert(
        keys::meta_key(keys::META_INDEXED),
        &through.to_be_bytes()[..],
    );
    index.apply_batch(batch)?;
    Ok(keys_written)
}

pub(super) fn indexed_through(index: &sled::Tree) -> Result<u64, StoreError> {
    Ok(index
        .get(keys::meta_key(keys::META_INDEXED))?
        .map(|v| keys::decode_u64(&v))
        .unwrap_or(0))
}

/// Indexes the events a crash left between the index watermark and the log head.
pub(super) fn reindex_tail(
    log: &sled::Tree,
    index: &sled::Tree,
    head: Head,
) -> Result<u64, StoreError> {
    let from = indexed_through(index)?;
    if from >= head.seq {
        return Ok(0);
    }
    let started = Instant::now();
    let mut done = 0;
    let mut chunk: Vec<IndexEntry> = Vec::new();
    let mut last = from;
    let range = log.range(keys::event_key(from + 1)..=keys::event_key(head.seq));
    for item in range {
        let (k, v) = item?;
        let seq = keys::decode_u64(&k[1..]);
        let (_, body) = super::decode_event_value(&v)?;
        let json = prepare::full_json(seq, &body);
        let event: crate::schema::Event = serde_json::from_slice(&json)
            .map_err(|e| StoreError::Corrupt(format!("event {seq:016x} does not decode: {e}")))?;
        let prepared = prepare::prepare(&event);
        chunk.push(IndexEntry {
            seq,
            time: prepared.time,
            postings: prepared.postings,
            groups: prepared.groups,
        });
        last = seq;
        if chunk.len() == 4096 {
            apply_index(index, &chunk.iter().collect::<Vec<_>>(), last)?;
            done += chunk.len() as u64;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        apply_index(index, &chunk.iter().collect::<Vec<_>>(), last)?;
        done += chunk.len() as u64;
    }
    tracing::info!(
        events = done,
        from = from + 1,
        through = last,
        millis = started.elapsed().as_millis() as u64,
        "indexed the log tail left by the last run"
    );
    Ok(done)
}

pub(super) fn run_flusher(
    db: sled::Db,
    tickets: mpsc::Receiver<FlushTicket>,
    stats: Arc<StoreStats>,
) {
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
            stats.fail(e);
        }
        for ticket in waiting {
            for (reply, outcome) in ticket.replies {
                let _ = reply.send(result.clone().map(|_| outcome));
            }
        }
    }
}
