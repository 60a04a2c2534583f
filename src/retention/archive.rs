//! Archive before purge, and restore
//!
//! What a purge removes is first written as one archive segment (`crate::archive::segment`: an
//! evidence bundle, zstd-compressed, encrypted when an archive key is configured) to a directory
//! or an S3-compatible bucket (`crate::objects`). The segment's proofs are against the
//! checkpoint signed just before the purge, so a segment proves itself with nothing but the
//! hub's public key; the purge's record names the object and its SHA-256.
//!
//! A restore reads a segment back, checks its checkpoint against the one the hub itself signed
//! at that size and every event's proof, and only then puts the events back into their slots
//! (`Store::restore`, which also checks each event hashes to the leaf its tombstone kept).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::{self as format, ArchiveKey, SegmentSummary, SegmentWriter};
use crate::checkpoints::{Checkpointer, Stored};
use crate::evidence::bundle::{BundleEvent, BundleHeader, BUNDLE_FORMAT};
use crate::objects::{ObjectKey, ObjectStore, ObjectTarget};
use crate::store::purge::RestoreOutcome;
use crate::store::Store;
use crate::time::now_micros;

/// Largest segment read back for a restore.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Where purged events are archived (`[archive]` in the config file: the target's keys, and
/// `key_file`).
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub target: ObjectTarget,
    /// A 32-byte key (hex or base64) the segments are encrypted with.
    pub key_file: Option<PathBuf>,
}

impl ArchiveSettings {
    /// Reads the `[archive]` table: `key_file`, and the rest as the object target (unknown keys
    /// are refused there).
    pub fn from_table(table: &toml::Table) -> Result<ArchiveSettings, String> {
        let mut table = table.clone();
        let key_file = match table.remove("key_file") {
            None => None,
            Some(toml::Value::String(s)) if !s.is_empty() => Some(PathBuf::from(s)),
            Some(_) => return Err("key_file: a path".into()),
        };
        let target: ObjectTarget = toml::Value::Table(table)
            .try_into()
            .map_err(|e| e.to_string())?;
        Ok(ArchiveSettings { target, key_file })
    }
}

/// One segment written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchivedObject {
    pub object: String,
    pub sha256: String,
    pub events: u64,
    pub bytes: u64,
    pub encrypted: bool,
}

pub struct Archive {
    objects: ObjectStore,
    key: Option<Arc<ArchiveKey>>,
}

impl Archive {
    pub fn new(settings: &ArchiveSettings) -> Result<Archive, String> {
        let objects = settings.target.build().map_err(|e| e.to_string())?;
        let key = match &settings.key_file {
            Some(path) => {
                Some(Arc::new(ArchiveKey::load(path).map_err(|e| {
                    format!("archive key {}: {e}", path.display())
                })?))
            }
            None => None,
        };
        Ok(Archive { objects, key })
    }

    /// Where segments go, without secrets.
    pub fn describe(&self) -> String {
        self.objects.describe()
    }

    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Writes the events `seqs` (sorted) as one segment with proofs against `checkpoint`.
    pub async fn write(
        &self,
        store: &Store,
        checkpoint: &Stored,
        seqs: &[u64],
    ) -> Result<Vec<ArchivedObject>, String> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(Vec::new());
        };
        let store = store.clone();
        let checkpoint = checkpoint.clone();
        let seqs = seqs.to_vec();
        let key = self.key.clone();
        let (bytes, summary) = tokio::task::spawn_blocking(move || {
            build_segment(&store, &checkpoint, &seqs, key.as_deref())
        })
        .await
        .map_err(|e| format!("the archive task failed: {e}"))??;
        let name = format::segment_name(first - 1, last - 1, self.key.is_some());
        let key = ObjectKey::parse(&name).map_err(|e| e.to_string())?;
        self.objects
            .put(&key, bytes)
            .await
            .map_err(|e| format!("writing {name} to {}: {e}", self.describe()))?;
        tracing::info!(object = %name, events = summary.events, bytes = summary.stored_bytes, target = %self.describe(), "archive segment written");
        Ok(vec![ArchivedObject {
            object: name,
            sha256: summary.sha256,
            events: summary.events,
            bytes: summary.stored_bytes,
            encrypted: self.key.is_some(),
        }])
    }

    /// Reads one archived object.
    pub async fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        let key = ObjectKey::parse(name).map_err(|e| e.to_string())?;
        self.objects
            .get(&key, MAX_SEGMENT_BYTES)
            .await
            .map_err(|e| format!("reading {name} from {}: {e}", self.describe()))
    }

    /// The archived objects: (name, size).
    pub async fn list(&self) -> Result<Vec<(String, u64)>, String> {
        Ok(self
            .objects
            .list("segments/")
            .await
            .map_err(|e| format!("listing {}: {e}", self.describe()))?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect())
    }

    pub fn key(&self) -> Option<Arc<ArchiveKey>> {
        self.key.clone()
    }
}

fn build_segment(
    store: &Store,
    checkpoint: &Stored,
    seqs: &[u64],
    key: Option<&ArchiveKey>,
) -> Result<(Vec<u8>, SegmentSummary), String> {
    let header = BundleHeader {
        trailhub_bundle: BUNDLE_FORMAT,
        origin: checkpoint.checkpoint.origin().to_string(),
        tree_size: checkpoint.size(),
        checkpoint: checkpoint.note.clone(),
    };
    let prover = store.prover(checkpoint.size()).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    let mut writer = SegmentWriter::new(&mut bytes, &header, key).map_err(|e| e.to_string())?;
    for &seq in seqs {
        let json = store
            .event_json(seq)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("event {seq:016x} to archive is not stored"))?;
        let proof = prover.inclusion(seq).map_err(|e| e.to_string())?;
        writer
            .push(&BundleEvent::new(seq - 1, &proof, &json))
            .map_err(|e| e.to_string())?;
    }
    let summary = writer.finish().map_err(|e| e.to_string())?;
    Ok((bytes, summary))
}

/// Events put back per call to the store (one restore transaction set).
const RESTORE_CHUNK: usize = 10_000;

/// Checks a segment against the hub's own checkpoints and puts its events back.
pub async fn restore_segment(
    store: &Store,
    checkpointer: &Checkpointer,
    key: Option<Arc<ArchiveKey>>,
    bytes: Vec<u8>,
) -> Result<RestoreOutcome, String> {
    // the segment's checkpoint was signed by the key in force then: any key of the log's
    // history (a rotation since does not orphan older segments)
    let keys = checkpointer.keyring().trusted(&checkpointer.verifier());
    let bytes = std::sync::Arc::new(bytes);
    // first every proof, then the events: a segment with one bad line restores nothing
    let (header, verifier) = {
        let bytes = bytes.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            let mut first_error = None;
            for verifier in keys {
                let mut events =
                    match format::read_segment_events(&bytes[..], key.as_deref(), &verifier) {
                        Ok(events) => events,
                        Err(e) => {
                            first_error.get_or_insert(e.to_string());
                            continue;
                        }
                    };
                let header = events.header().clone();
                for event in events.by_ref() {
                    event.map_err(|e| e.to_string())?;
                }
                return Ok::<_, String>((header, verifier));
            }
            Err(first_error.unwrap_or_else(|| "no key to check the segment with".into()))
        })
        .await
        .map_err(|e| format!("the restore task failed: {e}"))??
    };
    // the segment's checkpoint must be the one this hub signed at that size: a segment from
    // another log (or a forged one under a leaked key) is refused
    let own = checkpointer
        .history()
        .get(header.tree_size)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "this hub has no checkpoint at tree size {}: the segment is not from this log",
                header.tree_size
            )
        })?;
    let theirs =
        crate::checkpoints::Stored::parse(&header.checkpoint).map_err(|e| e.to_string())?;
    if own.checkpoint.root() != theirs.checkpoint.root()
        || own.checkpoint.origin() != theirs.checkpoint.origin()
    {
        return Err(format!(
            "the segment's checkpoint at tree size {} is not the one this hub signed",
            header.tree_size
        ));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<(u64, Vec<u8>)>, String>>(1);
    tokio::task::spawn_blocking(move || {
        let events = match format::read_segment_events(&bytes[..], key.as_deref(), &verifier) {
            Ok(e) => e,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.to_string()));
                return;
            }
        };
        let mut chunk = Vec::with_capacity(RESTORE_CHUNK);
        for event in events {
            match event {
                Ok(e) => chunk.push((e.leaf_index + 1, e.event_bytes)),
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            }
            if chunk.len() == RESTORE_CHUNK
                && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
            {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    });
    let mut outcome = RestoreOutcome::default();
    let at = now_micros();
    while let Some(chunk) = rx.recv().await {
        let done = store.restore(chunk?, at).await.map_err(|e| e.to_string())?;
        outcome.restored += done.restored;
        outcome.present += done.present;
    }
    store.flush().await.map_err(|e| e.to_string())?;
    Ok(outcome)
}
