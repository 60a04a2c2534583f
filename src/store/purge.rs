//! Purging events in place, and putting them back
//!
//! Retention removes an event's bytes but not its place in the log: its slot in the block gets
//! a tombstone (`block::Tombstone`, 42 bytes) carrying the event's leaf hash and the purge that
//! removed it. So every Merkle proof and `verify`'s walk keep working over a purged range,
//! exactly-once too (a hash match on a purged slot is a duplicate), and a restore can put the
//! very bytes back — accepted only when they hash to the leaf the tombstone kept.
//!
//! Both run on the sealer thread, the one writer of the index: a purge rewrites the blocks, the
//! purged ranges (`X`), the per-integration purged counts (`P`) and the rollup counts in one
//! transaction over the log and the index trees, so that counts and histograms stay exact after
//! any crash. Only sealed events are purged (their rollups are in the index); the index
//! postings stay, and readers skip the purged ranges (`Shared::purged`), which are few: events
//! expire in runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use tokio::sync::oneshot;

use super::block::{self, BlockView, Packer, Tombstone};
use super::keys::{self, Dimension, Granularity};
use super::{prepare, Shared, Store, StoreError};
use crate::time::Micros;

/// The integration the hub records its own actions under (`audit`).
pub const SYSTEM_INTEGRATION: &str = "trailhub";
/// The event type of the record a retention purge writes before it removes anything; every
/// tombstone names one.
pub const PURGE_EVENT_TYPE: &str = "retention.purge";

/// Blocks rewritten per transaction: bounds what one transaction holds in memory.
const BLOCKS_PER_TRANSACTION: usize = 64;

/// Inclusive ranges of sequence numbers, by first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRanges(BTreeMap<u64, u64>);

impl SeqRanges {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.0
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, last)| seq <= *last)
    }

    /// Events covered.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(first, last)| last - first + 1).sum()
    }

    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(f, l)| (*f, *l))
    }

    /// Adds `seq`, merging with neighbouring ranges.
    pub fn insert(&mut self, seq: u64) {
        if self.contains(seq) {
            return;
        }
        let (mut first, mut last) = (seq, seq);
        if let Some((f, l)) = self.0.range(..seq).next_back().map(|(f, l)| (*f, *l)) {
            if l + 1 == seq {
                first = f;
                self.0.remove(&f);
            }
        }
        if let Some(l) = seq.checked_add(1).and_then(|n| self.0.remove(&n)) {
            last = l;
        }
        self.0.insert(first, last);
    }

    /// Removes `seq`, splitting its range.
    pub fn remove(&mut self, seq: u64) {
        let Some((f, l)) = self.0.range(..=seq).next_back().map(|(f, l)| (*f, *l)) else {
            return;
        };
        if seq > l {
            return;
        }
        self.0.remove(&f);
        if f < seq {
            self.0.insert(f, seq - 1);
        }
        if seq < l {
            self.0.insert(seq + 1, l);
        }
    }
}

/// Restored ranges and when each was restored (a retention run spares them for a while).
#[derive(Debug, Clone, Default)]
pub struct RestoredRanges(BTreeMap<u64, (u64, Micros)>);

impl RestoredRanges {
    /// When `seq` was restored, if it was.
    pub fn restored_at(&self, seq: u64) -> Option<Micros> {
        self.0
            .range(..=seq)
            .next_back()
            .filter(|(_, (last, _))| seq <= *last)
            .map(|(_, (_, at))| *at)
    }

    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64, Micros)> + '_ {
        self.0.iter().map(|(f, (l, at))| (*f, *l, *at))
    }
}

/// What a purge did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PurgeOutcome {
    pub purged: u64,
    /// Asked for but already purged, or not sealed yet (the next run takes those).
    pub skipped: u64,
    pub blocks_rewritten: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub by_integration: BTreeMap<String, u64>,
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreOutcome {
    pub restored: u64,
    /// Events that were not purged (already there): nothing to do.
    pub present: u64,
}

pub(super) struct PurgeJob {
    pub seqs: Vec<u64>,
    pub purge_seq: u64,
    pub reply: oneshot::Sender<Result<PurgeOutcome, StoreError>>,
}

pub(super) struct RestoreJob {
    /// (seq, stored body) of each event to put back.
    pub events: Vec<(u64, Vec<u8>)>,
    pub at: Micros,
    pub reply: oneshot::Sender<Result<RestoreOutcome, StoreError>>,
}

/// Reads the purged and restored ranges kept in the log.
pub(super) fn load(log: &sled::Tree) -> Result<(SeqRanges, RestoredRanges), StoreError> {
    let mut purged = SeqRanges::default();
    for item in log.scan_prefix([keys::PURGED]) {
        let (k, v) = item?;
        if k.len() != 9 || v.len() != 8 {
            return Err(StoreError::Corrupt(
                "a purged range key is malformed".into(),
            ));
        }
        purged
            .0
            .insert(keys::decode_u64(&k[1..]), keys::decode_u64(&v));
    }
    let mut restored = RestoredRanges::default();
    for item in log.scan_prefix([keys::RESTORED]) {
        let (k, v) = item?;
        if k.len() != 9 || v.len() != 16 {
            return Err(StoreError::Corrupt(
                "a restored range key is malformed".into(),
            ));
        }
        restored.0.insert(
            keys::decode_u64(&k[1..]),
            (keys::decode_u64(&v[..8]), keys::decode_time(&v[8..])),
        );
    }
    Ok((purged, restored))
}

impl Store {
    /// Replaces the sealed events `seqs` by tombstones naming the purge event `purge_seq`.
    pub async fn purge(&self, seqs: Vec<u64>, purge_seq: u64) -> Result<PurgeOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send_purge(PurgeJob {
            seqs,
            purge_seq,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Puts purged events back: `events` are (seq, the event's complete JSON); each must hash to
    /// the leaf its tombstone kept.
    pub async fn restore(
        &self,
        events: Vec<(u64, Vec<u8>)>,
        at: Micros,
    ) -> Result<RestoreOutcome, StoreError> {
        let mut bodies = Vec::with_capacity(events.len());
        for (seq, json) in events {
            bodies.push((seq, prepare::body_of_full_json(seq, &json)?));
        }
        let (reply, answer) = oneshot::channel();
        self.send_restore(RestoreJob {
            events: bodies,
            at,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The last event whose index is sealed (what a purge can take).
    pub fn sealed_through(&self) -> Result<u64, StoreError> {
        Ok(self
            .shared()
            .index
            .get(keys::meta_key(keys::META_SEALED))?
            .map(|v| keys::decode_u64(&v))
            .unwrap_or(0))
    }

    pub fn is_purged(&self, seq: u64) -> bool {
        self.shared().purged().contains(seq)
    }

    /// The purged ranges (a copy).
    pub fn purged_ranges(&self) -> Arc<SeqRanges> {
        self.shared().purged()
    }

    pub fn restored_ranges(&self) -> Arc<RestoredRanges> {
        self.shared().restored()
    }

    /// Events purged in all.
    pub fn purged_total(&self) -> u64 {
        self.shared().purged().count()
    }

    /// Events of one integration purged so far.
    pub fn purged_count(&self, integration: &str) -> Result<u64, StoreError> {
        Ok(self
            .shared()
            .log
            .get(keys::purged_count_key(integration))?
            .map(|v| keys::decode_u64(&v))
            .unwrap_or(0))
    }

    /// Bytes the event blocks take (compressed, as stored).
    pub fn block_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        for item in self
            .shared()
            .log
            .range(keys::block_key(0)..=keys::block_key(u64::MAX))
        {
            let (_, v) = item?;
            total += v.len() as u64;
        }
        Ok(total)
    }
}

/// A block taken apart for rewriting: its slots, each with the chain prefix stored beside it
/// (kept as it is: a tombstone does not change it, and a restored event fits it again).
struct OpenBlock {
    first: u64,
    old_len: usize,
    hash: [u8; 32],
    dict: Option<&'static block::Dictionary>,
    slots: Vec<block::Slot>,
}

fn open_block(sh: &Shared, first: u64, value: &[u8]) -> Result<OpenBlock, StoreError> {
    let view = BlockView::parse(value)?;
    Ok(OpenBlock {
        first,
        old_len: value.len(),
        hash: view.hash,
        dict: view.dictionary(&sh.dicts),
        slots: view.slots(&sh.dicts)?,
    })
}

fn pack(packer: &mut Packer, b: &OpenBlock) -> Result<Vec<u8>, StoreError> {
    let slots: Vec<(&[u8], &[u8])> = b
        .slots
        .iter()
        .map(|(body, prefix)| (body.as_slice(), &prefix[..]))
        .collect();
    packer.pack(&slots, &b.hash, b.dict)
}

/// What a purge or restore changes the counts by, read from an event: its integration and the
/// rollup cells it counts in (the same groups as `prepare::prepare` gives the tail, without
/// building its search terms or serialising it again).
struct Counted {
    integration: String,
    cells: Vec<Vec<u8>>,
}

fn counted(seq: u64, body: &[u8]) -> Result<Counted, StoreError> {
    let json = prepare::full_json(seq, body);
    let event: crate::schema::Event = serde_json::from_slice(&json)
        .map_err(|e| StoreError::Corrupt(format!("event {seq:016x} does not decode: {e}")))?;
    let mut cells = Vec::with_capacity(Granularity::ALL.len() * Dimension::ALL.len());
    for g in Granularity::ALL {
        let bucket = keys::bucket_start(event.time, g.micros());
        for d in Dimension::ALL {
            cells.push(keys::rollup_key(
                g,
                d,
                bucket,
                &prepare::group_value(&event, d),
            ));
        }
    }
    Ok(Counted {
        integration: event.integration.id,
        cells,
    })
}

/// The changes of one transaction.
#[derive(Default)]
struct Changes {
    blocks: Vec<(u64, Vec<u8>)>,
    /// Rollup cell → change.
    rollups: HashMap<Vec<u8>, i64>,
    /// Integration → change of its purged count.
    purged_counts: HashMap<String, i64>,
}

type TxError = ConflictableTransactionError<StoreError>;

fn add_count(tree: &TransactionalTree, key: &[u8], delta: i64) -> Result<(), TxError> {
    let current = tree.get(key)?.map(|v| keys::decode_u64(&v)).unwrap_or(0);
    let next = (current as i64).saturating_add(delta).max(0) as u64;
    if next == 0 {
        tree.remove(key)?;
    } else {
        tree.insert(key, &next.to_be_bytes()[..])?;
    }
    Ok(())
}

/// Writes one transaction's blocks, counts and ranges; the ranges are written whole (`X`/`Y`
/// keys replaced by the new sets), which stays small because events expire in runs.
fn commit(
    sh: &Shared,
    changes: &Changes,
    purged: &SeqRanges,
    restored: &RestoredRanges,
) -> Result<(), StoreError> {
    let old_purged = sh.purged();
    let old_restored = sh.restored();
    let _sealing = sh
        .seal_lock
        .write()
        .map_err(|_| StoreError::Io("the seal lock is poisoned".into()))?;
    let result = (&sh.log, &sh.index).transaction(|(log, index)| {
        for (first, value) in &changes.blocks {
            log.insert(&keys::block_key(*first)[..], value.as_slice())?;
        }
        for (integration, delta) in &changes.purged_counts {
            add_count(log, &keys::purged_count_key(integration), *delta)?;
        }
        for (cell, delta) in &changes.rollups {
            add_count(index, cell, *delta)?;
        }
        for (first, _) in old_purged.ranges() {
            log.remove(&keys::purged_key(first)[..])?;
        }
        for (first, last) in purged.ranges() {
            log.insert(&keys::purged_key(first)[..], &last.to_be_bytes()[..])?;
        }
        for (first, _, _) in old_restored.ranges() {
            log.remove(&keys::restored_key(first)[..])?;
        }
        for (first, last, at) in restored.ranges() {
            let mut v = last.to_be_bytes().to_vec();
            v.extend_from_slice(&keys::encode_time(at));
            log.insert(&keys::restored_key(first)[..], v)?;
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TransactionError::Abort(e)) => return Err(e),
        Err(TransactionError::Storage(e)) => return Err(e.into()),
    }
    sh.set_ranges(purged.clone(), restored.clone());
    for (first, _) in &changes.blocks {
        sh.frames.forget_block(*first);
    }
    Ok(())
}

/// Groups sorted seqs by the block holding each: (block first seq, block value, seqs).
fn by_block(sh: &Shared, seqs: &[u64]) -> Result<Vec<(u64, sled::IVec, Vec<u64>)>, StoreError> {
    let mut out: Vec<(u64, sled::IVec, Vec<u64>)> = Vec::new();
    for &seq in seqs {
        if let Some((first, value, list)) = out.last_mut() {
            let count = BlockView::parse(value)?.count as u64;
            if seq >= *first && seq < *first + count {
                list.push(seq);
                continue;
            }
        }
        let Some((first, v)) = sh.block_holding(seq)? else {
            continue;
        };
        if seq - first >= BlockView::parse(&v)?.count as u64 {
            continue;
        }
        out.push((first, v, vec![seq]));
    }
    Ok(out)
}

pub(super) fn run_purge(sh: &Shared, job: PurgeJob) {
    let result = purge(sh, job.seqs, job.purge_seq);
    if let Err(e) = &result {
        tracing::error!(error = %e, "purge failed; nothing of its last transaction was applied");
    }
    let _ = job.reply.send(result);
}

fn purge(sh: &Shared, mut seqs: Vec<u64>, purge_seq: u64) -> Result<PurgeOutcome, StoreError> {
    sh.check_free_space()?;
    let sealed = sh
        .index
        .get(keys::meta_key(keys::META_SEALED))?
        .map(|v| keys::decode_u64(&v))
        .unwrap_or(0);
    seqs.sort_unstable();
    seqs.dedup();
    let mut out = PurgeOutcome::default();
    let mut purged = (*sh.purged()).clone();
    let restored = (*sh.restored()).clone();
    let asked = seqs.len() as u64;
    seqs.retain(|s| *s <= sealed && *s != purge_seq && !purged.contains(*s));
    out.skipped = asked - seqs.len() as u64;
    let mut packer = Packer::new()?;
    let blocks = by_block(sh, &seqs)?;
    for chunk in blocks.chunks(BLOCKS_PER_TRANSACTION) {
        let mut changes = Changes::default();
        for (first, value, targets) in chunk {
            let mut b = open_block(sh, *first, value)?;
            let mut changed = false;
            for &seq in targets {
                let i = (seq - b.first) as usize;
                let body = &b.slots[i].0;
                if block::is_tombstone(body) {
                    out.skipped += 1;
                    continue;
                }
                let prepared = counted(seq, body)?;
                let tombstone = Tombstone {
                    leaf: prepare::leaf_hash_of(seq, body),
                    purge_seq,
                };
                for cell in prepared.cells {
                    *changes.rollups.entry(cell).or_insert(0) -= 1;
                }
                *changes
                    .purged_counts
                    .entry(prepared.integration.clone())
                    .or_insert(0) += 1;
                *out.by_integration.entry(prepared.integration).or_insert(0) += 1;
                b.slots[i].0 = tombstone.encode();
                purged.insert(seq);
                out.purged += 1;
                changed = true;
            }
            if changed {
                let value = pack(&mut packer, &b)?;
                out.bytes_before += b.old_len as u64;
                out.bytes_after += value.len() as u64;
                out.blocks_rewritten += 1;
                changes.blocks.push((b.first, value));
            }
        }
        commit(sh, &changes, &purged, &restored)?;
    }
    tracing::info!(
        purged = out.purged,
        skipped = out.skipped,
        blocks = out.blocks_rewritten,
        bytes_before = out.bytes_before,
        bytes_after = out.bytes_after,
        purge_event = purge_seq,
        "events purged"
    );
    Ok(out)
}

pub(super) fn run_restore(sh: &Shared, job: RestoreJob) {
    let result = restore(sh, job.events, job.at);
    if let Err(e) = &result {
        tracing::error!(error = %e, "restore failed; nothing of its last transaction was applied");
    }
    let _ = job.reply.send(result);
}

fn restore(
    sh: &Shared,
    mut events: Vec<(u64, Vec<u8>)>,
    at: Micros,
) -> Result<RestoreOutcome, StoreError> {
    sh.check_free_space()?;
    events.sort_by_key(|(seq, _)| *seq);
    events.dedup_by_key(|(seq, _)| *seq);
    let mut out = RestoreOutcome::default();
    let mut purged = (*sh.purged()).clone();
    let mut restored = (*sh.restored()).clone();
    let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
    let bodies: HashMap<u64, Vec<u8>> = events.into_iter().collect();
    let mut packer = Packer::new()?;
    let blocks = by_block(sh, &seqs)?;
    let found: usize = blocks.iter().map(|(_, _, s)| s.len()).sum();
    if found != seqs.len() {
        return Err(StoreError::Corrupt(format!(
            "{} of the events to restore are past the end of the log",
            seqs.len() - found
        )));
    }
    for chunk in blocks.chunks(BLOCKS_PER_TRANSACTION) {
        let mut changes = Changes::default();
        for (first, value, targets) in chunk {
            let mut b = open_block(sh, *first, value)?;
            let mut changed = false;
            for &seq in targets {
                let i = (seq - b.first) as usize;
                let body = bodies.get(&seq).expect("every target has a body");
                let Some(tombstone) = Tombstone::parse(&b.slots[i].0)? else {
                    if b.slots[i].0 != *body {
                        return Err(StoreError::Corrupt(format!(
                            "event {seq:016x} is stored with other bytes than the ones to restore"
                        )));
                    }
                    out.present += 1;
                    continue;
                };
                if prepare::leaf_hash_of(seq, body) != tombstone.leaf {
                    return Err(StoreError::Corrupt(format!(
                        "event {seq:016x} to restore does not hash to the leaf its purge kept"
                    )));
                }
                let prepared = counted(seq, body)?;
                for cell in prepared.cells {
                    *changes.rollups.entry(cell).or_insert(0) += 1;
                }
                *changes
                    .purged_counts
                    .entry(prepared.integration)
                    .or_insert(0) -= 1;
                b.slots[i].0 = body.clone();
                purged.remove(seq);
                out.restored += 1;
                changed = true;
            }
            if changed {
                changes.blocks.push((b.first, pack(&mut packer, &b)?));
            }
        }
        let mut marks = SeqRanges::default();
        for (_, _, targets) in chunk {
            for seq in targets {
                marks.insert(*seq);
            }
        }
        for (first, last) in marks.ranges() {
            mark_restored(&mut restored, first, last, at);
        }
        commit(sh, &changes, &purged, &restored)?;
    }
    Ok(out)
}

/// Records [first, last] as restored at `at`, replacing what overlapping marks said.
fn mark_restored(r: &mut RestoredRanges, first: u64, last: u64, at: Micros) {
    let overlapping: Vec<(u64, u64, Micros)> =
        r.0.range(..=last)
            .filter(|(_, (l, _))| *l >= first)
            .map(|(f, (l, a))| (*f, *l, *a))
            .collect();
    for (f, l, a) in overlapping {
        r.0.remove(&f);
        if f < first {
            r.0.insert(f, (first - 1, a));
        }
        if l > last {
            r.0.insert(last + 1, (l, a));
        }
    }
    r.0.insert(first, (last, at));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_split() {
        let mut r = SeqRanges::default();
        for s in [5, 7, 6, 1, 2, 10] {
            r.insert(s);
        }
        assert_eq!(
            r.ranges().collect::<Vec<_>>(),
            vec![(1, 2), (5, 7), (10, 10)]
        );
        assert_eq!(r.count(), 6);
        assert!(r.contains(6) && !r.contains(8) && !r.contains(0));
        r.remove(6);
        assert_eq!(
            r.ranges().collect::<Vec<_>>(),
            vec![(1, 2), (5, 5), (7, 7), (10, 10)]
        );
        r.remove(10);
        r.remove(3);
        assert_eq!(r.count(), 4);
    }

    #[test]
    fn restored_marks_replace_overlaps() {
        let mut r = RestoredRanges::default();
        mark_restored(&mut r, 10, 20, 1);
        mark_restored(&mut r, 15, 25, 2);
        assert_eq!(r.restored_at(12), Some(1));
        assert_eq!(r.restored_at(15), Some(2));
        assert_eq!(r.restored_at(25), Some(2));
        assert_eq!(r.restored_at(26), None);
    }
}
