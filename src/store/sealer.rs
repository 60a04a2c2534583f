//! The sealer thread: writes each full tail once as a segment (`segment`) with its dedup run and
//! rollup counts, moving the "sealed" watermark in the same batch; merges dedup runs in the
//! background; trains the zstd dictionary; deletes the data of runs that merges replaced.
//! Apart from the writer (`writer`) because none of this is on the path of an append: it only
//! talks to the writer through `SealerJob`s in and `WriterNote`s out.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, RwLock};
use std::time::Instant;

use super::block;
use super::dedup::{self, Run};
use super::keys;
use super::segment::{self, SegmentMeta};
use super::tail::Tail;
use super::writer::{SealerJob, WriterNote, TRAIN_AFTER};
use super::{Shared, StoreError};

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
            Some(SealerJob::Purge(job)) => {
                super::purge::run_purge(&sh, job);
                Ok(())
            }
            Some(SealerJob::Restore(job)) => {
                super::purge::run_restore(&sh, job);
                Ok(())
            }
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
        samples.extend(
            view.bodies(&sh.dicts)?
                .into_iter()
                .filter(|b| !block::is_tombstone(b)),
        );
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
