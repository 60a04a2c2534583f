//! Exactly-once without a key per event
//!
//! An event is identified by its integration and source id (`keys::dedup_identity`), hashed to
//! 64 bits. The writer looks a new event's hash up in:
//! - `Recent`: every event not yet sealed, with its full identity, in memory;
//! - sealed `Run`s: immutable sorted arrays of (hash, seq) in the index tree, each with a
//!   blocked Bloom filter in memory. Runs are written once per sealed segment and merged in
//!   tiers (four runs of a tier become one of the next), so a lookup probes a handful of
//!   filters however many events are stored.
//!
//! A hash match is never taken as a duplicate by itself: the stored event is read and its
//! identity compared, so a collision stores both events.

use std::collections::HashMap;

use super::bloom::Bloom;
use super::keys;
use super::StoreError;

/// Entries per stored chunk of a run: 16 KiB values, binary-searched in place.
pub const RUN_CHUNK: usize = 1024;
const ENTRY: usize = 16;
/// Bloom filter bytes per stored part.
const BLOOM_PART: usize = 64 * 1024;
/// Runs of one tier merged into one of the next.
pub const MERGE_FAN_IN: usize = 4;
const RUN_VERSION: u8 = 1;

/// One identity seen but not yet sealed.
#[derive(Debug, Clone)]
struct Seen {
    seq: u64,
    identity: Box<[u8]>,
}

/// The unsealed events' identities, by hash (owned by the writer thread).
#[derive(Default)]
pub struct Recent {
    map: HashMap<u64, Vec<Seen>>,
}

impl Recent {
    pub fn insert(&mut self, h: u64, seq: u64, identity: &[u8]) {
        self.map.entry(h).or_default().push(Seen {
            seq,
            identity: identity.into(),
        });
    }

    /// The stored event with exactly this identity, if one is unsealed.
    pub fn find(&self, h: u64, identity: &[u8]) -> Option<u64> {
        self.map
            .get(&h)?
            .iter()
            .find(|s| *s.identity == *identity)
            .map(|s| s.seq)
    }

    /// Forgets what the runs now cover.
    pub fn drop_through(&mut self, through: u64) {
        self.map.retain(|_, seen| {
            seen.retain(|s| s.seq > through);
            !seen.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.map.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A sealed, immutable run of (hash, seq) entries sorted by hash.
#[derive(Debug)]
pub struct Run {
    pub id: u64,
    pub tier: u8,
    pub count: u64,
    /// The first hash of each chunk.
    fences: Vec<u64>,
    bloom: Bloom,
}

impl Run {
    /// Sequence numbers stored under hash `h` (candidates: the caller compares identities).
    pub fn lookup(&self, index: &sled::Tree, h: u64) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        if !self.bloom.may_contain(h) {
            return Ok(out);
        }
        // equal hashes may straddle a chunk edge: look from the last chunk starting below `h`
        // through the last chunk starting at or below it
        let from = self.fences.partition_point(|f| *f < h).saturating_sub(1);
        let to = self.fences.partition_point(|f| *f <= h);
        for chunk in from..to {
            let Some(value) = index.get(keys::run_data_key(self.id, b'c', chunk as u32))? else {
                return Err(StoreError::Corrupt(format!(
                    "dedup run {} lacks chunk {chunk}",
                    self.id
                )));
            };
            let entries = value.len() / ENTRY;
            let at = |i: usize| entry_at(&value, i);
            let (mut lo, mut hi) = (0, entries);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if at(mid).0 < h {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            while lo < entries && at(lo).0 == h {
                out.push(at(lo).1);
                lo += 1;
            }
        }
        Ok(out)
    }

    pub fn chunks(&self) -> usize {
        self.fences.len()
    }
}

fn entry_at(value: &[u8], i: usize) -> (u64, u64) {
    let e = &value[i * ENTRY..(i + 1) * ENTRY];
    (
        u64::from_be_bytes(e[..8].try_into().expect("8 bytes")),
        u64::from_be_bytes(e[8..].try_into().expect("8 bytes")),
    )
}

/// Writes a run's chunks and Bloom parts (plain inserts: invisible until its description is
/// committed) and returns the run with the description to commit.
pub fn write_run(
    index: &sled::Tree,
    id: u64,
    tier: u8,
    entries: impl ExactSizeIterator<Item = (u64, u64)>,
) -> Result<(Run, Vec<u8>), StoreError> {
    let mut bloom = Bloom::with_capacity(entries.len());
    let mut fences = Vec::with_capacity(entries.len().div_ceil(RUN_CHUNK));
    let mut chunk = Vec::with_capacity(RUN_CHUNK * ENTRY);
    let mut count = 0u64;
    let mut last = (0u64, 0u64);
    for (h, seq) in entries {
        debug_assert!(count == 0 || (h, seq) > last, "run entries must be sorted");
        last = (h, seq);
        if chunk.is_empty() {
            fences.push(h);
        }
        bloom.insert(h);
        chunk.extend_from_slice(&h.to_be_bytes());
        chunk.extend_from_slice(&seq.to_be_bytes());
        count += 1;
        if chunk.len() == RUN_CHUNK * ENTRY {
            index.insert(
                keys::run_data_key(id, b'c', fences.len() as u32 - 1),
                std::mem::take(&mut chunk),
            )?;
        }
    }
    if !chunk.is_empty() {
        index.insert(keys::run_data_key(id, b'c', fences.len() as u32 - 1), chunk)?;
    }
    let run = Run {
        id,
        tier,
        count,
        fences,
        bloom,
    };
    for (i, part) in run.bloom.to_bytes().chunks(BLOOM_PART).enumerate() {
        index.insert(keys::run_data_key(id, b'b', i as u32), part)?;
    }
    let description = describe(&run);
    Ok((run, description))
}

fn describe(run: &Run) -> Vec<u8> {
    let mut v = Vec::with_capacity(18 + run.fences.len() * 8);
    v.push(RUN_VERSION);
    v.push(run.tier);
    v.extend_from_slice(&run.count.to_be_bytes());
    v.extend_from_slice(&(run.fences.len() as u32).to_be_bytes());
    for f in &run.fences {
        v.extend_from_slice(&f.to_be_bytes());
    }
    v.extend_from_slice(&(run.bloom.byte_len() as u64).to_be_bytes());
    v
}

/// Every committed run, with its Bloom filter read back.
pub fn load_runs(index: &sled::Tree) -> Result<Vec<Run>, StoreError> {
    let corrupt = |id: u64, what: &str| StoreError::Corrupt(format!("dedup run {id}: {what}"));
    let mut runs = Vec::new();
    for item in index.scan_prefix([keys::RUN]) {
        let (k, v) = item?;
        let id = keys::decode_u64(&k[1..]);
        if v.len() < 14 || v[0] != RUN_VERSION {
            return Err(corrupt(id, "unknown description"));
        }
        let tier = v[1];
        let count = keys::decode_u64(&v[2..10]);
        let n = u32::from_be_bytes(v[10..14].try_into().expect("4 bytes")) as usize;
        if v.len() != 14 + n * 8 + 8 {
            return Err(corrupt(id, "description length"));
        }
        let fences = (0..n).map(|i| keys::decode_u64(&v[14 + i * 8..])).collect();
        let bloom_len = keys::decode_u64(&v[14 + n * 8..]) as usize;
        let mut bytes = Vec::with_capacity(bloom_len);
        for part in index.scan_prefix(&keys::run_data_key(id, b'b', 0)[..10]) {
            bytes.extend_from_slice(&part?.1);
        }
        let bloom = Bloom::from_bytes(&bytes)
            .filter(|b| b.byte_len() == bloom_len)
            .ok_or_else(|| corrupt(id, "bloom filter"))?;
        runs.push(Run {
            id,
            tier,
            count,
            fences,
            bloom,
        });
    }
    Ok(runs)
}

/// Reads a run's entries in order, chunk by chunk.
struct RunReader<'a> {
    index: &'a sled::Tree,
    run: &'a Run,
    chunk: usize,
    value: Option<sled::IVec>,
    at: usize,
}

impl RunReader<'_> {
    fn next(&mut self) -> Result<Option<(u64, u64)>, StoreError> {
        loop {
            if let Some(v) = &self.value {
                if self.at < v.len() / ENTRY {
                    self.at += 1;
                    return Ok(Some(entry_at(v, self.at - 1)));
                }
            }
            if self.chunk >= self.run.chunks() {
                return Ok(None);
            }
            let key = keys::run_data_key(self.run.id, b'c', self.chunk as u32);
            self.value = Some(index_get(self.index, &key, self.run.id)?);
            self.chunk += 1;
            self.at = 0;
        }
    }
}

fn index_get(index: &sled::Tree, key: &[u8], run: u64) -> Result<sled::IVec, StoreError> {
    index
        .get(key)?
        .ok_or_else(|| StoreError::Corrupt(format!("dedup run {run} lacks a chunk")))
}

/// Merges runs into one new run of `tier` (chunks written, description returned to commit).
pub fn merge_runs(
    index: &sled::Tree,
    runs: &[&Run],
    id: u64,
    tier: u8,
) -> Result<(Run, Vec<u8>), StoreError> {
    let total: u64 = runs.iter().map(|r| r.count).sum();
    let mut readers: Vec<RunReader> = runs
        .iter()
        .map(|run| RunReader {
            index,
            run,
            chunk: 0,
            value: None,
            at: 0,
        })
        .collect();
    let mut heads = Vec::with_capacity(readers.len());
    for r in readers.iter_mut() {
        heads.push(r.next()?);
    }
    let mut merged = MergeIter {
        readers,
        heads,
        remaining: total as usize,
        error: None,
    };
    let result = write_run(index, id, tier, &mut merged);
    if let Some(e) = merged.error {
        return Err(e);
    }
    result
}

struct MergeIter<'a> {
    readers: Vec<RunReader<'a>>,
    heads: Vec<Option<(u64, u64)>>,
    remaining: usize,
    error: Option<StoreError>,
}

impl Iterator for MergeIter<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.error.is_some() {
            return None;
        }
        let (i, head) = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (i, h)))
            .min_by_key(|(_, h)| *h)?;
        match self.readers[i].next() {
            Ok(next) => self.heads[i] = next,
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        }
        self.remaining = self.remaining.saturating_sub(1);
        Some(head)
    }
}

impl ExactSizeIterator for MergeIter<'_> {
    fn len(&self) -> usize {
        self.remaining
    }
}

/// Deletes a replaced run's data keys.
pub fn delete_run_data(index: &sled::Tree, run: u64) -> Result<(), StoreError> {
    let keys: Vec<sled::IVec> = index
        .scan_prefix(keys::run_data_prefix(run))
        .keys()
        .collect::<Result<_, _>>()?;
    for k in keys {
        index.remove(k)?;
    }
    Ok(())
}

/// The runs of the lowest tier holding `MERGE_FAN_IN` or more, if any: what to merge next.
pub fn pick_merge(runs: &[std::sync::Arc<Run>]) -> Option<(u8, Vec<u64>)> {
    let mut tiers: std::collections::BTreeMap<u8, Vec<u64>> = Default::default();
    for r in runs {
        tiers.entry(r.tier).or_default().push(r.id);
    }
    tiers
        .into_iter()
        .find(|(_, ids)| ids.len() >= MERGE_FAN_IN)
        .map(|(tier, mut ids)| {
            ids.sort_unstable();
            ids.truncate(MERGE_FAN_IN);
            (tier, ids)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let t = db.open_tree("index").expect("tree");
        (db, t)
    }

    #[test]
    fn runs_find_every_entry_even_across_chunk_edges_and_merge_in_order() {
        let (_db, index) = tree();
        // many equal hashes straddling chunk edges, like forced collisions
        let a: Vec<(u64, u64)> = (0..3000u64).map(|i| (i / 700, i)).collect();
        let b: Vec<(u64, u64)> = (0..2500u64).map(|i| (i * 3 + 1, 10_000 + i)).collect();
        let (ra, _) = write_run(&index, 1, 0, a.iter().copied()).expect("a");
        let (rb, _) = write_run(&index, 2, 0, b.iter().copied()).expect("b");
        assert_eq!(ra.chunks(), 3);
        let found = ra.lookup(&index, 1).expect("lookup");
        assert_eq!(found, (700..1400).collect::<Vec<_>>());
        assert!(ra.lookup(&index, 99).expect("miss").is_empty());
        let (m, description) = merge_runs(&index, &[&ra, &rb], 3, 1).expect("merge");
        assert_eq!(m.count, 5500);
        index
            .insert(keys::run_key(3), description)
            .expect("describe");
        let loaded = load_runs(&index).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].lookup(&index, 7).expect("b entry"), vec![10_002]);
        assert_eq!(
            loaded[0].lookup(&index, 4).expect("both"),
            m.lookup(&index, 4).expect("same")
        );
        assert_eq!(loaded[0].lookup(&index, 2).expect("a").len(), 700);
        delete_run_data(&index, 1).expect("delete");
        assert!(index.scan_prefix(keys::run_data_prefix(1)).next().is_none());
    }

    #[test]
    fn recent_compares_identities_not_hashes() {
        let mut r = Recent::default();
        r.insert(5, 1, b"a");
        r.insert(5, 2, b"b");
        assert_eq!(r.find(5, b"b"), Some(2));
        assert_eq!(r.find(5, b"c"), None);
        r.drop_through(1);
        assert_eq!(r.find(5, b"a"), None);
        assert_eq!(r.len(), 1);
    }
}
