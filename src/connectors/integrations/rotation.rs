//! The master key against the sealed credentials: the check at start that the configured key is
//! the one they were sealed with, and the steps of `trailhub keys rotate-master`, which re-seals
//! every credential under a new key without a moment where a crash leaves them unopenable.
//!
//! A rotation is `prepare` (open every credential with the old key, write the new key to
//! `<key file>.new`, synced), `commit` (every re-sealed record and a `PendingRotation` marker in
//! one sled batch), then `install` (keep the old key file as `<key file>.old-<unix time>`, rename
//! the new one into place) or the hand-over of the new key to the admin (key from the
//! environment), and `complete` (marker removed). Whoever meets the marker later (the hub at
//! start, or `rotate-master` run again) calls `diagnose`, which reads the key files to tell
//! where the new key is, and takes the remaining steps. The marker also keeps every record's
//! credentials as sealed under the old key, so that if the new key is lost before it was
//! installed (its `.new` file deleted), `rollback` puts the old ones back.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{IntegrationRecord, KEY_RECORD};
use crate::secrets::{self, KeySource, MasterKey, SecretsError};
use crate::store::StoreError;
use crate::time::{now_micros, Micros};

/// The marker of a rotation in progress, in the integrations tree (`r`).
pub(super) const KEY_ROTATION: &[u8] = b"r";
const MARKER_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the credentials of {names} do not open with the master key from {origin}: nothing was changed (restore the key they were sealed with, or set those credentials again)")]
    DoNotOpen { names: String, origin: String },
    #[error("the master key from {origin} (fingerprint {fingerprint}) opens none of the {sealed} stored credentials (e.g. those of {example}): it is not the key they were sealed with. Restore that key ({restore}) and start again; the credentials cannot be recovered without it. If it is lost for good, `trailhub keys forget-credentials --yes` forgets them so that the hub starts, and each integration's credentials must then be set again")]
    WrongKey {
        origin: String,
        fingerprint: String,
        sealed: usize,
        example: String,
        restore: String,
    },
    #[error("the master key file {path} does not exist, but {sealed} integrations have credentials sealed under a master key: put that key file back at {path} (or point master_key_file / TRAILHUB_MASTER_KEY_FILE at it, or set TRAILHUB_MASTER_KEY); the credentials cannot be recovered without it, and a new key is not minted over them")]
    KeyMissing { path: String, sealed: usize },
    #[error("a master key rotation (to the key with fingerprint {new_fingerprint}) was interrupted and the hub cannot finish it with {origin}: {next}")]
    Unfinished {
        new_fingerprint: String,
        origin: String,
        next: String,
    },
    #[error("a master key rotation was interrupted and its new key (fingerprint {new_fingerprint}) is neither in {pending} nor where it was going, while {origin} holds neither it nor the old key (fingerprint {old_fingerprint}): restore either key and run `trailhub keys rotate-master` again")]
    KeyLost {
        new_fingerprint: String,
        old_fingerprint: String,
        pending: String,
        origin: String,
    },
    #[error("--new-key-file {0} already exists: give a path that does not exist yet, or the current key file")]
    DestinationExists(String),
    #[error("a master key rotation is in progress: run `trailhub keys rotate-master` to finish it first")]
    InProgress,
    #[error("stored integration {0} does not decode: nothing was changed")]
    Undecodable(String),
    #[error("the rotation marker does not decode: {0}")]
    Marker(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for RotationError {
    fn from(e: sled::Error) -> Self {
        RotationError::Store(e.into())
    }
}

fn io(what: impl std::fmt::Display, path: &Path) -> impl FnOnce(std::io::Error) -> RotationError {
    let context = format!("{what} {}", path.display());
    move |e| RotationError::Io(context, e)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationState {
    /// The re-sealed records are committed; the new key may not be in place yet.
    Pending,
}

/// `rotation: pending`, committed in the same batch as the re-sealed records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingRotation {
    pub v: u8,
    pub rotation: RotationState,
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    /// Where the new key waits, written (0600, synced) before the batch.
    pub pending_file: PathBuf,
    /// Where the new key goes; `None`: it is handed to the admin (printed once), the old key
    /// having come from `TRAILHUB_MASTER_KEY`.
    pub key_file: Option<PathBuf>,
    /// The key file the old key was read from (`None`: the environment) ...
    pub old_key_file: Option<PathBuf>,
    /// ... and where it is kept once the new key is in place.
    pub old_copy: Option<PathBuf>,
    pub resealed: usize,
    /// Each re-sealed record's credentials as they were sealed under the old key (hex), for
    /// `rollback`.
    pub previous: BTreeMap<String, String>,
    #[serde(with = "crate::schema::rfc3339_micros")]
    pub started_at: Micros,
}

/// Whether a key is the one the stored credentials were sealed with.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// No credential is stored: any key will do.
    NothingSealed,
    /// At least one stored credential opens (others may be stale: sealed under a key since
    /// lost, and set again since; those show as an error on their integration).
    Opens,
    /// None opens: `sealed` credentials, `example` one of their integrations.
    OpensNone { sealed: usize, example: String },
}

/// What is left of an interrupted rotation, from where its new key is now.
pub enum Resume {
    /// The new key is in place (the configured key, or the file it was going to): only the
    /// marker and perhaps a leftover `.new` file remain.
    Installed,
    /// The new key waits in `pending_file`, to be moved to `key_file`.
    Install,
    /// The new key waits in `pending_file` for the admin, who gave the old one as
    /// `TRAILHUB_MASTER_KEY`: only `rotate-master` may show it.
    HandOver(MasterKey),
    /// The new key is nowhere and the configured key is the old one: the credentials sealed
    /// under the old key are put back.
    RollBack,
}

/// A rotation prepared: its new key written to `pending_file`, the records re-sealed in memory.
pub struct Plan {
    pub new_key: MasterKey,
    pub marker: PendingRotation,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// `path` with `suffix` added to its file name (`master.key` → `master.key.new`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// The stored records that hold sealed credentials (`forget-credentials` leaves none on a
/// record), in key order. One that does not decode is an error naming it when `strict` (a
/// rotation must not leave it behind under the old key), else skipped as `list` skips it.
fn records_with_credentials(
    tree: &sled::Tree,
    strict: bool,
) -> Result<Vec<IntegrationRecord>, RotationError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix([KEY_RECORD]) {
        let (k, v) = item?;
        match serde_json::from_slice::<IntegrationRecord>(&v) {
            Ok(r) if r.sealed_credentials.is_empty() => {}
            Ok(r) => out.push(r),
            Err(_) if strict => {
                return Err(RotationError::Undecodable(
                    String::from_utf8_lossy(&k[1..]).into(),
                ))
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

fn sealed_records(tree: &sled::Tree) -> Result<Vec<IntegrationRecord>, RotationError> {
    records_with_credentials(tree, false)
}

fn open_record(
    key: &MasterKey,
    record: &IntegrationRecord,
) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let sealed = hex::decode(&record.sealed_credentials).map_err(|_| SecretsError::Layout)?;
    key.open(&sealed, &record.id).map(Zeroizing::new)
}

fn shown(record: &IntegrationRecord) -> String {
    format!("{} ({})", record.name, record.id)
}

pub fn sealed_count(tree: &sled::Tree) -> Result<usize, RotationError> {
    Ok(sealed_records(tree)?.len())
}

/// Tries the stored credentials until one opens: cheap when the key is right (the first one
/// does), one decryption per integration when it is wrong.
pub fn check_key(tree: &sled::Tree, key: &MasterKey) -> Result<KeyCheck, RotationError> {
    let sealed = sealed_records(tree)?;
    let Some(first) = sealed.first() else {
        return Ok(KeyCheck::NothingSealed);
    };
    if sealed.iter().any(|r| open_record(key, r).is_ok()) {
        return Ok(KeyCheck::Opens);
    }
    Ok(KeyCheck::OpensNone {
        sealed: sealed.len(),
        example: shown(first),
    })
}

/// The error for a key that opens nothing, saying how to put the right one back.
pub fn wrong_key(
    source: &KeySource,
    key: &MasterKey,
    sealed: usize,
    example: String,
) -> RotationError {
    let restore = match source {
        KeySource::Env(_) => "set TRAILHUB_MASTER_KEY to it".to_string(),
        KeySource::File(p) => format!(
            "put the right key file back at {} or point master_key_file / TRAILHUB_MASTER_KEY_FILE at it; a key kept by `trailhub keys rotate-master` is named <key file>.old-<unix time>",
            p.display()
        ),
    };
    RotationError::WrongKey {
        origin: source.to_string(),
        fingerprint: key.fingerprint(),
        sealed,
        example,
        restore,
    }
}

pub fn pending(tree: &sled::Tree) -> Result<Option<PendingRotation>, RotationError> {
    match tree.get(KEY_ROTATION)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| RotationError::Marker(e.to_string())),
    }
}

/// Where a rotation puts the new key: `new_key_file` if given, else the current key file, else
/// (the key came from the environment) nowhere but the admin's hands. The pending file is
/// `<that>.new`, or `<default_key_file>.new` for a hand-over.
pub fn destination(
    source: &KeySource,
    new_key_file: Option<&Path>,
    default_key_file: &Path,
) -> Result<(Option<PathBuf>, PathBuf), RotationError> {
    let key_file = new_key_file
        .map(Path::to_path_buf)
        .or_else(|| source.file().map(Path::to_path_buf));
    if let Some(p) = &key_file {
        if source.file() != Some(p.as_path()) && p.exists() {
            return Err(RotationError::DestinationExists(p.display().to_string()));
        }
    }
    let pending_file = with_suffix(key_file.as_deref().unwrap_or(default_key_file), ".new");
    Ok((key_file, pending_file))
}

/// Opens every stored credential with `old` (any that does not open stops everything, named),
/// draws the new key, writes it to `pending_file` (0600, synced) and re-seals in memory.
/// Nothing in the store has changed when this returns.
pub fn prepare(
    tree: &sled::Tree,
    old: &MasterKey,
    source: &KeySource,
    key_file: Option<PathBuf>,
    pending_file: PathBuf,
) -> Result<Plan, RotationError> {
    if pending(tree)?.is_some() {
        return Err(RotationError::InProgress);
    }
    let sealed = records_with_credentials(tree, true)?;
    let mut opened = Vec::with_capacity(sealed.len());
    let mut failed = Vec::new();
    for record in sealed {
        match open_record(old, &record) {
            Ok(plain) => opened.push((record, plain)),
            Err(_) => failed.push(shown(&record)),
        }
    }
    if !failed.is_empty() {
        return Err(RotationError::DoNotOpen {
            names: failed.join(", "),
            origin: source.to_string(),
        });
    }
    let new_key = MasterKey::generate();
    let mut previous = BTreeMap::new();
    let mut records = Vec::with_capacity(opened.len());
    for (mut record, plain) in opened {
        let resealed = hex::encode(new_key.seal(&plain, &record.id));
        let old_sealed = std::mem::replace(&mut record.sealed_credentials, resealed);
        previous.insert(record.id.clone(), old_sealed);
        let value = serde_json::to_vec(&record).expect("a record serialises");
        records.push((super::record_key(&record.id), value));
    }
    let old_key_file = source.file().map(Path::to_path_buf);
    let old_copy = old_key_file.as_deref().map(|p| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut t = now;
        // two rotations within a second keep both old keys
        while with_suffix(p, &format!(".old-{t}")).exists() {
            t += 1;
        }
        with_suffix(p, &format!(".old-{t}"))
    });
    let marker = PendingRotation {
        v: MARKER_VERSION,
        rotation: RotationState::Pending,
        old_fingerprint: old.fingerprint(),
        new_fingerprint: new_key.fingerprint(),
        pending_file,
        key_file,
        old_key_file,
        old_copy,
        resealed: records.len(),
        previous,
        started_at: now_micros(),
    };
    secrets::write_key_file(&marker.pending_file, &new_key)
        .map_err(io("cannot write the new key to", &marker.pending_file))?;
    Ok(Plan {
        new_key,
        marker,
        records,
    })
}

/// Every re-sealed record and the marker, in one batch, flushed: from here the credentials
/// open only with the new key, and the marker says where it is.
pub fn commit(tree: &sled::Tree, plan: &Plan) -> Result<(), RotationError> {
    let marker = serde_json::to_vec(&plan.marker)
        .map_err(|e| RotationError::Marker(format!("a key path is not UTF-8: {e}")))?;
    let mut batch = sled::Batch::default();
    for (k, v) in &plan.records {
        batch.insert(k.as_slice(), v.as_slice());
    }
    batch.insert(KEY_ROTATION, marker);
    tree.apply_batch(batch)?;
    tree.flush()?;
    Ok(())
}

/// The key in `path` if it is the one named by `fingerprint`.
fn key_in(path: &Path, fingerprint: &str) -> Result<Option<MasterKey>, RotationError> {
    Ok(secrets::read_key_file(path)?.filter(|k| k.fingerprint() == fingerprint))
}

/// Where the new key of an interrupted rotation is, read from the key files; changes nothing.
pub fn diagnose(marker: &PendingRotation, configured: &KeySource) -> Result<Resume, RotationError> {
    let new = &marker.new_fingerprint;
    let configured_fp = configured.read()?.map(|k| k.fingerprint());
    if configured_fp.as_deref() == Some(new.as_str()) {
        return Ok(Resume::Installed);
    }
    if let Some(dest) = &marker.key_file {
        if key_in(dest, new)?.is_some() {
            return Ok(Resume::Installed);
        }
    }
    if let Some(k) = key_in(&marker.pending_file, new)? {
        return Ok(match marker.key_file {
            Some(_) => Resume::Install,
            None => Resume::HandOver(k),
        });
    }
    if configured_fp.as_deref() == Some(marker.old_fingerprint.as_str()) {
        return Ok(Resume::RollBack);
    }
    Err(RotationError::KeyLost {
        new_fingerprint: new.clone(),
        old_fingerprint: marker.old_fingerprint.clone(),
        pending: marker.pending_file.display().to_string(),
        origin: configured.to_string(),
    })
}

/// Moves the new key into place, keeping the old key file as `old_copy` first; each step is
/// skipped when a previous run took it, so this may be repeated after a crash.
pub fn install(marker: &PendingRotation) -> Result<(), RotationError> {
    let old = &marker.old_fingerprint;
    if let (Some(file), Some(copy)) = (&marker.old_key_file, &marker.old_copy) {
        if !copy.exists() && key_in(file, old)?.is_some() {
            secrets::keep_key_copy(file, copy).map_err(io("cannot keep the old key as", copy))?;
        }
    }
    if let Some(dest) = &marker.key_file {
        if key_in(&marker.pending_file, &marker.new_fingerprint)?.is_some() {
            secrets::install_key_file(&marker.pending_file, dest)
                .map_err(io("cannot move the new key to", dest))?;
        }
    }
    // the key moved elsewhere (--new-key-file): the old file is gone from where the hub read it
    if let (Some(file), Some(copy)) = (&marker.old_key_file, &marker.old_copy) {
        if marker.key_file.as_ref() != Some(file) && copy.exists() && key_in(file, old)?.is_some() {
            std::fs::remove_file(file).map_err(io("cannot remove the old key file", file))?;
        }
    }
    Ok(())
}

/// Puts back the credentials as sealed under the old key and drops the marker, in one batch.
pub fn rollback(tree: &sled::Tree, marker: &PendingRotation) -> Result<(), RotationError> {
    let mut batch = sled::Batch::default();
    for (id, sealed) in &marker.previous {
        let key = super::record_key(id);
        let Some(v) = tree.get(&key)? else { continue };
        let mut record: IntegrationRecord =
            serde_json::from_slice(&v).map_err(|_| RotationError::Undecodable(id.clone()))?;
        record.sealed_credentials = sealed.clone();
        batch.insert(
            key,
            serde_json::to_vec(&record).expect("a record serialises"),
        );
    }
    batch.remove(KEY_ROTATION);
    tree.apply_batch(batch)?;
    tree.flush()?;
    Ok(())
}

/// Drops the marker, then a `.new` file still holding the new key (a hand-over's, or one left
/// by a crash): the marker first, so a crash between the two leaves a finished rotation and a
/// stale file, never a marker whose new key is gone.
pub fn complete(tree: &sled::Tree, marker: &PendingRotation) -> Result<(), RotationError> {
    tree.remove(KEY_ROTATION)?;
    tree.flush()?;
    if key_in(&marker.pending_file, &marker.new_fingerprint)?.is_some() {
        std::fs::remove_file(&marker.pending_file)
            .map_err(io("cannot remove", &marker.pending_file))?;
        if let Some(dir) = marker.pending_file.parent() {
            // the removal need not survive a crash: a stale `.new` file is only warned about
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
    }
    Ok(())
}

/// The integrations whose credentials do not open with `key` (all of them without a key),
/// and with `apply` their credentials forgotten, in one batch: for a master key lost for good.
pub fn forget_unopenable(
    tree: &sled::Tree,
    key: Option<&MasterKey>,
    apply: bool,
) -> Result<Vec<String>, RotationError> {
    if pending(tree)?.is_some() {
        return Err(RotationError::InProgress);
    }
    let mut batch = sled::Batch::default();
    let mut forgotten = Vec::new();
    for mut record in sealed_records(tree)? {
        if key.is_some_and(|k| open_record(k, &record).is_ok()) {
            continue;
        }
        forgotten.push(shown(&record));
        record.sealed_credentials.clear();
        record.credential_names.clear();
        record.updated_at = now_micros();
        batch.insert(
            super::record_key(&record.id),
            serde_json::to_vec(&record).expect("a record serialises"),
        );
    }
    if apply && !forgotten.is_empty() {
        tree.apply_batch(batch)?;
        tree.flush()?;
    }
    Ok(forgotten)
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
