//! Opening a store: the sled database and its format check, the derived state read back (dedup
//! runs, segments, dictionaries, counts), what a crash left half-written removed, the events
//! past the sealed watermark indexed again, and the four threads started (`writer`, `sealer`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::Semaphore;

use super::dedup::{self, Recent};
use super::sealer::{self, merge_runs, seal, SealerState};
use super::segment::SegmentMeta;
use super::tail::{self, Tail, TailEntry};
use super::writer::{self, SealerJob, WriteJob};
use super::{
    block, keys, prepare, read_head, Inner, Shared, Store, StoreError, StoreOptions, StoreStats,
    View,
};

fn read_meta_u64(tree: &sled::Tree, name: &str) -> Result<Option<u64>, StoreError> {
    match tree.get(keys::meta_key(name))? {
        None => Ok(None),
        Some(v) if v.len() == 8 => Ok(Some(keys::decode_u64(&v))),
        Some(_) => Err(StoreError::Corrupt(format!("meta `{name}` is not 8 bytes"))),
    }
}

/// The layout of an opened log: written by this code, by the format before it, or empty.
fn check_format(log: &sled::Tree) -> Result<(), StoreError> {
    match log.get(keys::meta_key(keys::META_FORMAT))? {
        Some(v) if v.as_ref() == keys::FORMAT.to_be_bytes() => Ok(()),
        Some(v) => Err(StoreError::NeedsMigration(format!(
            "the data dir was written in store format {:?}, which this version cannot read",
            v.as_ref()
        ))),
        None => {
            let v1 = log.scan_prefix([keys::V1_EVENT]).next().is_some()
                || log.get(keys::meta_key(keys::META_MIGRATED))?.is_some();
            if v1 {
                return Err(StoreError::NeedsMigration(
                    "the data dir holds events in store format 1; run `trailhub migrate` (with the same data dir) to convert it, then start again".into(),
                ));
            }
            log.insert(
                keys::meta_key(keys::META_FORMAT),
                &keys::FORMAT.to_be_bytes(),
            )?;
            Ok(())
        }
    }
}

/// sled's segment size for a new database. sled writes a page larger than a quarter of a
/// segment to a blob file of its own and then counts it in its page cache by the size of the
/// pointer (tens of bytes), so the cache never evicts it: with the default 512 KiB segments a
/// leaf of event blocks (up to 16 blocks of ~80 KiB) went to a blob, and reading 10M events kept
/// 1.5 GiB resident whatever `cache_capacity` said. With 8 MiB segments such a leaf is written
/// inline and counted at its size.
const SEGMENT_BYTES: usize = 8 << 20;

/// The segment size an existing database was created with (sled refuses to open it with
/// another), from sled's `conf` file.
fn existing_segment_size(path: &Path) -> Option<usize> {
    let conf = std::fs::read_to_string(path.join("conf")).ok()?;
    conf.lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok())
}

/// Opens a store's sled database (`<data dir>/db`) the way the hub does; tools and tests that
/// read the raw trees use this too, since sled refuses a database opened with another segment
/// size.
pub fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let segment_size = existing_segment_size(path).unwrap_or(SEGMENT_BYTES);
    let open = || {
        sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .segment_size(segment_size)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(StoreError::from)
    };
    // a handle of this same process closed a moment ago (`migrate`, then the store it built) may
    // still hold the directory's lock while its flusher thread winds down: wait a little for it
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match open() {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

impl Store {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let started = std::time::Instant::now();
        let db = open_db(path, options.cache_bytes)?;
        let log = db.open_tree(keys::TREE_LOG)?;
        let index = db.open_tree(keys::TREE_INDEX)?;
        check_format(&log)?;
        let head = read_head(&log)?;

        let dicts = block::Dictionaries::default();
        let mut persisted = HashSet::new();
        let mut latest = None;
        for item in log.scan_prefix([keys::DICTIONARY]) {
            let (k, v) = item?;
            let id = u32::from_be_bytes(
                k[1..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("dictionary key".into()))?,
            );
            dicts.add(block::Dictionary::new(id, v.to_vec()), false);
            persisted.insert(id);
            latest = Some(latest.unwrap_or(0).max(id));
        }
        if let Some(id) = latest {
            if let Some(d) = dicts.get(id) {
                dicts.add(d, true);
            }
        }
        let mut counts = HashMap::new();
        for item in log.scan_prefix([keys::COUNT]) {
            let (k, v) = item?;
            if v.len() == 8 {
                counts.insert(
                    String::from_utf8_lossy(&k[1..]).into_owned(),
                    keys::decode_u64(&v),
                );
            }
        }

        let sealed = read_meta_u64(&index, keys::META_SEALED)?.unwrap_or(0);
        let next_run = read_meta_u64(&index, keys::META_NEXT_RUN)?.unwrap_or(1);
        let garbage = index
            .get(keys::meta_key(keys::META_GARBAGE))?
            .map(|v| sealer::decode_ids(&v))
            .unwrap_or_default();
        if sealed > head.seq {
            return Err(StoreError::Corrupt(format!(
                "the index is sealed through {sealed} but the log ends at {}",
                head.seq
            )));
        }
        if let Some(merging) = read_meta_u64(&index, keys::META_MERGING)? {
            if index.get(keys::run_key(merging))?.is_none() {
                dedup::delete_run_data(&index, merging)?;
                tracing::info!(
                    run = merging,
                    "removed the run of a dedup merge that did not finish"
                );
            }
            index.remove(keys::meta_key(keys::META_MERGING))?;
        }
        let orphans = remove_orphans(&index, sealed, next_run)?;
        if orphans > 0 {
            tracing::info!(
                keys = orphans,
                "removed index keys an interrupted seal left"
            );
        }
        let segments = load_segments(&index)?;
        let runs: Vec<Arc<dedup::Run>> = dedup::load_runs(&index)?
            .into_iter()
            .map(Arc::new)
            .collect();

        let (purged, restored) = super::purge::load(&log)?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            tokens: db.open_tree(keys::TREE_TOKENS)?,
            settings: db.open_tree(keys::TREE_SETTINGS)?,
            integrations: db.open_tree(keys::TREE_INTEGRATIONS)?,
            checkpoints: db.open_tree(keys::TREE_CHECKPOINTS)?,
            tree_head: RwLock::new(super::TreeHead {
                size: 0,
                root: crate::evidence::merkle::empty_root(),
            }),
            db,
            log,
            index,
            dicts,
            frames: block::FrameCache::default(),
            stats: StoreStats::default(),
            view: RwLock::new(Arc::new(View::new(segments, Vec::new()))),
            seal_lock: RwLock::new(()),
            purged: RwLock::new(Arc::new(purged)),
            restored: RwLock::new(Arc::new(restored)),
            min_free_bytes: options.min_free_bytes,
            hash_mask: options.dedup_hash_mask,
            seal_events: options.seal_events.clamp(1, tail::SEAL_EVENTS),
            observer: RwLock::new(None),
        });
        shared.stats.last_seq.store(head.seq, Ordering::Relaxed);
        let tree = super::merkle::open_tree(&shared, head.seq)?;
        shared.publish_tree(&tree);
        let mut recent = dedup::Recent::default();
        let mut sealer_state = SealerState {
            runs,
            next_run,
            garbage: garbage.clone(),
        };
        let live = rebuild_tail(&shared, &mut sealer_state, sealed, head.seq, &mut recent)?;

        let (job_tx, job_rx) = mpsc::channel::<WriteJob>();
        let (index_tx, index_rx) = mpsc::channel();
        let (flush_tx, flush_rx) = mpsc::channel();
        let (sealer_tx, sealer_rx) = mpsc::channel();
        let (note_tx, note_rx) = mpsc::channel();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::Io(e.to_string()))
        };
        let state = writer::WriterState {
            head,
            recent,
            runs: sealer_state.runs.clone(),
            counts,
            persisted_dictionaries: persisted,
            tree,
        };
        let writer_thread = {
            let sh = shared.clone();
            let ch = writer::WriterChannels {
                jobs: job_rx,
                notes: note_rx,
                indexer: index_tx,
                sealer: sealer_tx.clone(),
            };
            spawn(
                "trailhub-writer",
                Box::new(move || writer::run_writer(sh, state, ch)),
            )?
        };
        let indexer_thread = {
            let sh = shared.clone();
            let ch = writer::IndexerChannels {
                jobs: index_rx,
                flusher: flush_tx,
                sealer: sealer_tx.clone(),
            };
            spawn(
                "trailhub-indexer",
                Box::new(move || writer::run_indexer(sh, live, ch)),
            )?
        };
        let flusher_thread = {
            let sh = shared.clone();
            spawn(
                "trailhub-flusher",
                Box::new(move || writer::run_flusher(sh, flush_rx)),
            )?
        };
        let garbage = sealer_state.garbage.clone();
        let sealer_thread = {
            let sh = shared.clone();
            spawn(
                "trailhub-sealer",
                Box::new(move || sealer::run_sealer(sh, sealer_state, sealer_rx, note_tx)),
            )?
        };
        if !garbage.is_empty() {
            let _ = sealer_tx.send(SealerJob::Garbage(garbage));
        }
        let max_queued = options.max_queued_events.max(1);
        tracing::debug!(
            events = head.seq,
            sealed,
            millis = started.elapsed().as_millis() as u64,
            "store opened"
        );
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                jobs: Mutex::new(Some(job_tx)),
                sealer: Mutex::new(Some(sealer_tx)),
                room: Arc::new(Semaphore::new(max_queued)),
                max_queued,
                threads: Mutex::new(vec![
                    writer_thread,
                    indexer_thread,
                    flusher_thread,
                    sealer_thread,
                ]),
            }),
        })
    }
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
