//! Moving a data dir from store format 1 (one `E` key and one `D` key per event) to format 2
//! (blocks), keeping every event, id, cursor and the hash chain
//!
//! Resumable: each step moves a run of events into blocks, deletes their format-1 keys and
//! records the last one moved (`M migrated`) in one atomic batch, so an interrupted migration
//! continues where it stopped. Every event's format-1 chain hash is checked on the way: the chain
//! of the migrated store is the same chain, with the same head. The index is rebuilt from the new
//! log by the next open.

use std::collections::HashMap;
use std::path::Path;

use super::block::{self, Dictionaries, Dictionary, Packer, BLOCK_EVENTS};
use super::{keys, open_db, prepare, read_head, StoreError};

/// Events moved per atomic step.
const STEP_EVENTS: usize = 16 * BLOCK_EVENTS;

#[derive(Debug, Clone, Default)]
pub struct MigrateReport {
    /// Events moved by this run.
    pub moved: u64,
    /// Events the data dir holds.
    pub total: u64,
    /// Where this run started (0 for a fresh migration).
    pub resumed_after: u64,
    /// False when the data dir was already in the current format.
    pub needed: bool,
    /// Stopped before the end (the next run resumes).
    pub interrupted: bool,
}

/// Decodes a format-1 event value: version 1, chain hash, lz4 body.
fn decode_v1(seq: u64, value: &[u8]) -> Result<([u8; 32], Vec<u8>), StoreError> {
    if value.len() < 33 || value[0] != 1 {
        return Err(StoreError::Corrupt(format!(
            "format-1 event {seq:016x} has an unknown layout"
        )));
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&value[1..33]);
    let body = lz4_flex::decompress_size_prepended(&value[33..]).map_err(|e| {
        StoreError::Corrupt(format!(
            "format-1 event {seq:016x} does not decompress: {e}"
        ))
    })?;
    Ok((hash, body))
}

/// Migrates the store at `path` in place. `progress(done, total)` is called after each step;
/// returning false stops there (the next run resumes), as an interruption would.
pub fn migrate(
    path: &Path,
    cache_bytes: u64,
    mut progress: impl FnMut(u64, u64) -> bool,
) -> Result<MigrateReport, StoreError> {
    let db = open_db(path, cache_bytes)?;
    let log = db.open_tree(keys::TREE_LOG)?;
    let index = db.open_tree(keys::TREE_INDEX)?;
    let format_key = keys::meta_key(keys::META_FORMAT);
    let migrated_key = keys::meta_key(keys::META_MIGRATED);
    let head = read_head(&log)?;
    let mut report = MigrateReport {
        total: head.seq,
        ..MigrateReport::default()
    };
    if log.get(&format_key)?.is_some() {
        return Ok(report);
    }
    report.needed = true;
    let mut done = match log.get(&migrated_key)? {
        Some(v) if v.len() == 8 => keys::decode_u64(&v),
        Some(_) => return Err(StoreError::Corrupt("migration checkpoint".into())),
        None => {
            // a fresh start: format 1's index is of no use to format 2
            index.clear()?;
            log.insert(&migrated_key, &0u64.to_be_bytes())?;
            db.flush()?;
            0
        }
    };
    report.resumed_after = done;

    let dicts = Dictionaries::default();
    for item in log.scan_prefix([keys::DICTIONARY]) {
        let (k, v) = item?;
        let id = u32::from_be_bytes(
            k[1..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("dictionary key".into()))?,
        );
        dicts.add(Dictionary::new(id, v.to_vec()), true);
    }
    if dicts.current().is_none() {
        let mut samples = Vec::new();
        for item in log.scan_prefix([keys::V1_EVENT]).take(4096) {
            let (k, v) = item?;
            samples.push(decode_v1(keys::decode_u64(&k[1..]), &v)?.1);
        }
        if let Some(raw) = block::train(&samples) {
            log.insert(keys::dictionary_key(1), raw.as_slice())?;
            dicts.add(Dictionary::new(1, raw), true);
        }
    }
    let dict = dicts.current();

    // the chain continues from the last event already moved
    let mut prev = [0u8; 32];
    if done > 0 {
        let (_, v) = log
            .range(keys::block_key(0)..=keys::block_key(done))
            .next_back()
            .ok_or_else(|| StoreError::Corrupt("migrated blocks are missing".into()))??;
        prev = block::BlockView::parse(&v)?.hash;
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    for item in log.scan_prefix([keys::COUNT]) {
        let (k, v) = item?;
        counts.insert(
            String::from_utf8_lossy(&k[1..]).into_owned(),
            keys::decode_u64(&v),
        );
    }
    let mut packer = Packer::new()?;
    loop {
        let mut events: Vec<(u64, Vec<u8>, [u8; 32])> = Vec::with_capacity(STEP_EVENTS);
        for item in log
            .range(keys::v1_event_key(done + 1)..=keys::v1_event_key(u64::MAX))
            .take(STEP_EVENTS)
        {
            let (k, v) = item?;
            let seq = keys::decode_u64(&k[1..]);
            let expected = done + events.len() as u64 + 1;
            if seq != expected {
                return Err(StoreError::Corrupt(format!(
                    "format-1 event {expected:016x} is missing; `verify` with the previous version names the damage"
                )));
            }
            let (stored, body) = decode_v1(seq, &v)?;
            let computed = prepare::chain_hash_of(&prev, seq, &body);
            if computed != stored {
                return Err(StoreError::Corrupt(format!(
                    "format-1 event {seq:016x} does not match its chain hash: the store was altered; nothing after it was migrated"
                )));
            }
            prev = computed;
            events.push((seq, body, computed));
        }
        if events.is_empty() {
            break;
        }
        let mut batch = sled::Batch::default();
        let mut touched: HashMap<String, u64> = HashMap::new();
        for chunk in events.chunks(BLOCK_EVENTS) {
            let refs: Vec<(&[u8], [u8; 32])> =
                chunk.iter().map(|(_, b, h)| (b.as_slice(), *h)).collect();
            batch.insert(&keys::block_key(chunk[0].0)[..], packer.block(&refs, dict)?);
        }
        for (seq, body, _) in &events {
            batch.remove(&keys::v1_event_key(*seq)[..]);
            let identity = prepare::stored_identity(*seq, body)?;
            let integration = identity_integration(&identity);
            let n = counts.entry(integration.clone()).or_insert(0);
            *n += 1;
            touched.insert(integration, *n);
        }
        for (integration, n) in touched {
            batch.insert(keys::count_key(&integration), &n.to_be_bytes()[..]);
        }
        let last = events.last().map(|e| e.0).unwrap_or(done);
        batch.insert(migrated_key.clone(), &last.to_be_bytes()[..]);
        log.apply_batch(batch)?;
        report.moved += events.len() as u64;
        done = last;
        if !progress(done, head.seq) {
            db.flush()?;
            report.interrupted = true;
            return Ok(report);
        }
    }
    if done != head.seq || prev != head.hash {
        return Err(StoreError::Corrupt(format!(
            "the chain head names event {:016x} but the events end at {done:016x}",
            head.seq
        )));
    }
    // the dedup keys are derived data in format 2: drop them last
    loop {
        let dedup: Vec<sled::IVec> = log
            .scan_prefix([keys::V1_DEDUP])
            .keys()
            .take(10_000)
            .collect::<Result<_, _>>()?;
        if dedup.is_empty() {
            break;
        }
        let mut batch = sled::Batch::default();
        for k in dedup {
            batch.remove(k);
        }
        log.apply_batch(batch)?;
    }
    let mut batch = sled::Batch::default();
    batch.remove(migrated_key);
    batch.insert(format_key, &keys::FORMAT.to_be_bytes()[..]);
    log.apply_batch(batch)?;
    db.flush()?;
    Ok(report)
}

/// The integration id inside a dedup identity (`keys::dedup_identity`).
fn identity_integration(identity: &[u8]) -> String {
    let n = identity.get(1).copied().unwrap_or(0) as usize;
    String::from_utf8_lossy(identity.get(2..2 + n).unwrap_or_default()).into_owned()
}

/// Writes a format-1 store (one key per event, as the previous version did): for migration
/// tests and for benchmarking the migration.
pub fn write_v1_for_tests(
    path: &Path,
    events: &[crate::schema::Event],
    cursors: &[(&str, &[u8])],
) -> Result<[u8; 32], StoreError> {
    let db = open_db(path, 16 * 1024 * 1024)?;
    let log = db.open_tree(keys::TREE_LOG)?;
    let mut batch = sled::Batch::default();
    let mut hash = [0u8; 32];
    for (i, e) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        let p = prepare::prepare(e);
        hash = prepare::chain_hash_of(&hash, seq, &p.body);
        let mut value = vec![1u8];
        value.extend_from_slice(&hash);
        value.extend_from_slice(&lz4_flex::compress_prepend_size(&p.body));
        batch.insert(&keys::v1_event_key(seq)[..], value);
        batch.insert(p.identity.as_slice(), &seq.to_be_bytes()[..]);
    }
    for (integration, cursor) in cursors {
        batch.insert(keys::cursor_key(integration), *cursor);
    }
    let mut head = Vec::with_capacity(40);
    head.extend_from_slice(&(events.len() as u64).to_be_bytes());
    head.extend_from_slice(&hash);
    batch.insert(keys::meta_key(keys::META_HEAD), head);
    log.apply_batch(batch)?;
    db.flush()?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_keeps_cursors_and_resumes_to_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        write_v1_for_tests(&path, &[], &[("gh-1", b"abc")]).expect("write");
        {
            let db = open_db(&path, 1 << 20).expect("db");
            let log = db.open_tree(keys::TREE_LOG).expect("log");
            assert!(log.get(keys::cursor_key("gh-1")).expect("get").is_some());
        }
        let r = migrate(&path, 1 << 20, |_, _| true).expect("migrate");
        let db = open_db(&path, 1 << 20).expect("db");
        let log = db.open_tree(keys::TREE_LOG).expect("log");
        assert!(
            log.get(keys::cursor_key("gh-1")).expect("get").is_some(),
            "{r:?}"
        );
    }
}
