//! The steps of `trailhub keys rotate-signing`: a new checkpoint signing key for the same log,
//! handed over by a checkpoint both keys sign, without a moment where a crash leaves the hub
//! with a key its history does not know, or a history naming a key nobody has.
//!
//! A rotation is [`prepare`] (checks, the new key drawn and written to `<key file>.new`, synced,
//! the hand-over checkpoint signed by both keys), [`commit`] (the key history with the new key
//! and a [`PendingHandover`] marker, and the hand-over as the history's checkpoint of its size,
//! in one sled transaction, flushed), [`install`] (the old key file kept as
//! `<key file>.old-<unix time>`, the `.new` file renamed over the key file) and [`complete`]
//! (marker removed). Whoever meets the marker later (`rotate-signing` run again; the hub refuses
//! to start on it) calls [`diagnose`], which reads the key files to tell where the new key is,
//! and takes the remaining steps — or, when the new key was lost before it was installed,
//! [`rollback`]: the history and the checkpoint it replaced are put back as they were.

use std::path::{Path, PathBuf};

use sled::transaction::TransactionError;
use sled::Transactional;
use zeroize::Zeroizing;

use super::cadence::{diverged_from, Diverged};
use super::history::{history_key, History, TIME_PREFIX};
use super::keyring::{
    check_handover, KeyStanding, Keyring, KeyringError, PendingHandover, HANDOVER_PREFIX,
    KEYRING_KEY,
};
use super::signing_key::{pending_key_path, read_key_file, KeyError, SigningKey};
use crate::evidence::checkpoint::Checkpoint;
use crate::evidence::note::{NoteSigner, NoteVerifier};
use crate::store::{Store, StoreError};
use crate::time::{format_micros, now_micros};

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("the log is empty: no checkpoint was signed with the current key, so there is nothing to hand over; to use another key, stop the hub and delete the key file (a new key is made at the next start)")]
    EmptyLog,
    #[error("{0}; the key is not rotated over a log that diverged from its checkpoints")]
    Diverged(Diverged),
    #[error("the stored checkpoint of tree size {size} has another root than the log's tree of {size} events: the history it covers was rewritten; nothing was changed")]
    DifferentRoot { size: u64 },
    #[error("the key file holds the key {found}, not the key that signs this log now: nothing was changed")]
    NotCurrent { found: String },
    #[error("a signing key rotation is in progress: run `trailhub keys rotate-signing` again to finish it first")]
    InProgress,
    #[error("no signing key rotation is in progress")]
    NotPending,
    #[error("the interrupted signing key rotation was writing the key file {expected}, but these settings name {configured}: run `trailhub keys rotate-signing` with the settings the hub used then (signing_key_file / TRAILHUB_SIGNING_KEY_FILE)")]
    OtherKeyFile {
        expected: String,
        configured: String,
    },
    #[error("a signing key rotation was interrupted and its new key {new} is neither in {pending} nor in {key_file}, while {key_file} does not hold the old key {old} either: put back the key file of either key and run `trailhub keys rotate-signing` again")]
    KeyLost {
        new: String,
        old: String,
        pending: String,
        key_file: String,
    },
    #[error("cannot make the hand-over checkpoint: {0}")]
    Checkpoint(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for HandoverError {
    fn from(e: sled::Error) -> Self {
        HandoverError::Store(e.into())
    }
}

fn io(what: impl std::fmt::Display, path: &Path) -> impl FnOnce(std::io::Error) -> HandoverError {
    let context = format!("{what} {}", path.display());
    move |e| HandoverError::Io(context, e)
}

/// A rotation prepared: the new key waits in its `.new` file; nothing in the store changed.
pub struct Plan {
    /// The tree size handed over at: the new key signs from it on.
    pub size: u64,
    pub old: NoteVerifier,
    pub new: NoteVerifier,
    /// The hand-over checkpoint, signed by both keys.
    pub note: String,
    /// The history to commit: the new key added, with the marker.
    keyring: Keyring,
}

/// Where a rotation of a key in `key_file` keeps the old key: `<key file>.old-<unix time>`, a
/// name not taken yet.
fn old_copy_path(key_file: &Path) -> PathBuf {
    let mut t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    loop {
        let mut name = key_file.as_os_str().to_os_string();
        name.push(format!(".old-{t}"));
        let path = PathBuf::from(name);
        if !path.exists() {
            return path;
        }
        // two rotations within a second keep both old keys
        t += 1;
    }
}

/// Checks that `key` may hand the log over (it is the key that signs now, the log holds events
/// and extends every checkpoint signed), draws the new key, signs the hand-over checkpoint of
/// the durable tree with both keys, and writes the new key to `<key file>.new` (0600, synced).
/// Nothing in the store has changed when this returns.
pub fn prepare(store: &Store, key: &SigningKey) -> Result<Plan, HandoverError> {
    let keyring = Keyring::load(store.settings_tree())?;
    if keyring.pending().is_some() {
        return Err(HandoverError::InProgress);
    }
    let old = key.verifier();
    if !matches!(
        keyring.standing(&old),
        KeyStanding::Newest | KeyStanding::Unrecorded
    ) {
        return Err(HandoverError::NotCurrent { found: old.vkey() });
    }
    let head = store.flushed_tree_head()?;
    if head.size == 0 {
        return Err(HandoverError::EmptyLog);
    }
    let history = History::new(store.checkpoints_tree().clone());
    if let Some(latest) = history.latest()? {
        if let Some(why) = diverged_from(store, head.size, &latest)? {
            return Err(HandoverError::Diverged(why));
        }
    }
    // the hand-over takes the place of a checkpoint of its size: only over the same tree
    let replaced = history.get(head.size)?;
    if replaced
        .as_ref()
        .is_some_and(|r| r.checkpoint.root() != &head.root)
    {
        return Err(HandoverError::DifferentRoot { size: head.size });
    }
    let new_signer =
        NoteSigner::generate(key.origin()).map_err(|e| HandoverError::Checkpoint(e.to_string()))?;
    let new = new_signer.verifier();
    let checkpoint = Checkpoint::new(key.origin(), head.size, head.root)
        .and_then(|c| c.with_extension(&format!("{TIME_PREFIX}{}", format_micros(now_micros()))))
        .and_then(|c| c.with_extension(&format!("{HANDOVER_PREFIX}{}", new.vkey())))
        .map_err(|e| HandoverError::Checkpoint(e.to_string()))?;
    let mut note = checkpoint
        .sign(key.signer())
        .map_err(|e| HandoverError::Checkpoint(e.to_string()))?;
    note.sign(&new_signer);
    let note = note.to_string();
    // what every reader of the history will check, checked before anything is written
    check_handover(&note, &old, &new, head.size).map_err(HandoverError::Checkpoint)?;

    let key_file = key.path().to_path_buf();
    let pending = PendingHandover {
        pending_file: pending_key_path(&key_file),
        old_copy: old_copy_path(&key_file),
        key_file,
        replaced: replaced.map(|r| r.note),
        seeded: keyring.is_empty(),
        started_at: now_micros(),
    };
    let after =
        keyring
            .or_original(&old)
            .handed_over(new.clone(), head.size, note.clone(), pending);
    // the marker must store before the new key is written anywhere
    after.to_value()?;
    let pending = after.pending().expect("set just above");
    write_new_key(&pending.pending_file, &new_signer)?;
    Ok(Plan {
        size: head.size,
        old,
        new,
        note,
        keyring: after,
    })
}

/// Writes `signer` to `path` (0600, synced, its directory synced), replacing a stale file
/// there (one no committed rotation names: the caller checked there is none).
fn write_new_key(path: &Path, signer: &NoteSigner) -> Result<(), HandoverError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot remove the stale key file", path)(e)),
    }
    let mut text = signer.skey();
    text.push('\n');
    super::files::create_new(path, text.as_bytes(), true)
        .map_err(io("cannot write the new signing key to", path))
}

/// The key history with the new key and the marker, and the hand-over as the checkpoint of its
/// size, in one transaction, flushed: from here the history says the new key signs.
pub fn commit(store: &Store, plan: &Plan) -> Result<(), HandoverError> {
    let value = plan.keyring.to_value()?.unwrap_or_default();
    let (settings, checkpoints) = (store.settings_tree(), store.checkpoints_tree());
    let key = history_key(plan.size);
    let committed: Result<(), TransactionError<()>> =
        (settings, checkpoints).transaction(|(s, c)| {
            s.insert(KEYRING_KEY, value.as_slice())?;
            c.insert(&key, plan.note.as_bytes())?;
            Ok(())
        });
    committed.map_err(transaction_failed)?;
    settings.flush()?;
    Ok(())
}

fn transaction_failed(e: TransactionError<()>) -> HandoverError {
    match e {
        TransactionError::Storage(e) => e.into(),
        TransactionError::Abort(()) => {
            HandoverError::Store(StoreError::Io("a transaction was aborted".into()))
        }
    }
}

/// What is left of a rotation whose marker was found, from where its new key is now.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// The key file holds the new key: only the marker remains.
    Installed,
    /// The new key waits in its `.new` file, to be renamed over the key file.
    Install,
    /// The new key is nowhere and the key file holds the old one: the history and the
    /// checkpoint the hand-over replaced are put back.
    RollBack,
}

/// The marker, the new key and the key before it.
fn pending_keys(
    keyring: &Keyring,
) -> Result<(&PendingHandover, &NoteVerifier, &NoteVerifier), HandoverError> {
    let pending = keyring.pending().ok_or(HandoverError::NotPending)?;
    let entries = keyring.entries();
    match entries {
        [.., old, new] => Ok((pending, old.verifier(), new.verifier())),
        _ => Err(HandoverError::NotPending),
    }
}

/// The key in `path`, if it is `key`.
fn holds(path: &Path, key: &NoteVerifier) -> Result<bool, HandoverError> {
    Ok(read_key_file(path)?.is_some_and(|s| &s.verifier() == key))
}

/// Where the new key of an interrupted rotation is, from the key files; changes nothing.
/// `key_file`: the key file of the settings given now, which must be the rotation's.
pub fn diagnose(keyring: &Keyring, key_file: &Path) -> Result<Resume, HandoverError> {
    let (pending, old, new) = pending_keys(keyring)?;
    if pending.key_file != key_file {
        return Err(HandoverError::OtherKeyFile {
            expected: pending.key_file.display().to_string(),
            configured: key_file.display().to_string(),
        });
    }
    if holds(&pending.key_file, new)? {
        return Ok(Resume::Installed);
    }
    if holds(&pending.pending_file, new)? {
        return Ok(Resume::Install);
    }
    if holds(&pending.key_file, old)? {
        return Ok(Resume::RollBack);
    }
    Err(HandoverError::KeyLost {
        new: new.vkey(),
        old: old.vkey(),
        pending: pending.pending_file.display().to_string(),
        key_file: pending.key_file.display().to_string(),
    })
}

/// Keeps the old key file as `old_copy` (0600), then renames the `.new` file over the key
/// file; each step is skipped when a previous run took it, so this may be repeated after a
/// crash. There is a key file at every moment: the old one until the rename, the new one after.
pub fn install(keyring: &Keyring) -> Result<(), HandoverError> {
    let (pending, old, new) = pending_keys(keyring)?;
    if !pending.old_copy.exists() && holds(&pending.key_file, old)? {
        let bytes = Zeroizing::new(
            std::fs::read(&pending.key_file)
                .map_err(io("cannot read the old key file", &pending.key_file))?,
        );
        match super::files::create_new(&pending.old_copy, &bytes, true) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("cannot keep the old key as", &pending.old_copy)(e)),
        }
    }
    if holds(&pending.pending_file, new)? {
        std::fs::rename(&pending.pending_file, &pending.key_file)
            .map_err(io("cannot move the new key to", &pending.key_file))?;
        sync_dir(&pending.key_file)
            .map_err(io("cannot sync the directory of", &pending.key_file))?;
    }
    Ok(())
}

/// Makes a rename in the directory of `path` durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(super::files::parent_dir(path))?.sync_all()?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Drops the marker, flushed; then a `.new` file still holding the new key (left by a copy,
/// not by this code): the marker first, so that a crash between the two leaves a finished
/// rotation and a stale file the hub warns about, never a marker whose new key is gone.
pub fn complete(store: &Store, keyring: &Keyring) -> Result<(), HandoverError> {
    let (pending, _, new) = pending_keys(keyring)?;
    let settings = store.settings_tree();
    if let Some(value) = keyring.finished().to_value()? {
        settings.insert(KEYRING_KEY, value)?;
    }
    settings.flush()?;
    if holds(&pending.pending_file, new)? {
        std::fs::remove_file(&pending.pending_file)
            .map_err(io("cannot remove", &pending.pending_file))?;
    }
    Ok(())
}

/// Puts back the history as it was before the rotation and the checkpoint the hand-over
/// replaced (or none, if there was none), in one transaction, flushed.
pub fn rollback(store: &Store, keyring: &Keyring) -> Result<(), HandoverError> {
    let (pending, _, _) = pending_keys(keyring)?;
    let size = keyring
        .newest()
        .map(|k| k.from_size())
        .ok_or(HandoverError::NotPending)?;
    let before = keyring.rolled_back().to_value()?;
    let (settings, checkpoints) = (store.settings_tree(), store.checkpoints_tree());
    let key = history_key(size);
    let rolled: Result<(), TransactionError<()>> = (settings, checkpoints).transaction(|(s, c)| {
        match &before {
            Some(value) => s.insert(KEYRING_KEY, value.as_slice())?,
            None => s.remove(KEYRING_KEY)?,
        };
        match &pending.replaced {
            Some(note) => c.insert(&key, note.as_bytes())?,
            None => c.remove(&key)?,
        };
        Ok(())
    });
    rolled.map_err(transaction_failed)?;
    settings.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::store::StoreOptions;

    /// A data dir whose log holds `events` events, its signing key made and a checkpoint of
    /// the log signed with it (none for an empty log).
    async fn hub_dir(dir: &Path, events: usize) -> (Store, Settings, SigningKey) {
        let settings = Settings::for_data_dir(dir);
        std::fs::create_dir_all(dir).expect("data dir");
        let store = Store::open(
            &settings.store_path(),
            &StoreOptions::new(16 * 1024 * 1024, 0),
        )
        .expect("store opens");
        append(&store, events).await;
        let key = SigningKey::open(&settings, &store).expect("key made");
        if events > 0 {
            sign(&store, &key);
        }
        (store, settings, key)
    }

    async fn append(store: &Store, events: usize) {
        let who = crate::auth::Principal {
            token_id: "test".into(),
            name: "test".into(),
            role: crate::auth::Role::Admin,
        };
        for n in 0..events {
            crate::audit::record(
                store,
                &who,
                crate::audit::AdminAction {
                    event_type: "test.event",
                    action: crate::schema::Action::Create,
                    category: crate::schema::Category::Configuration,
                    target: None,
                    description: format!("event {n}"),
                    details: serde_json::json!({}),
                },
            )
            .await
            .expect("recorded");
        }
    }

    /// Signs and keeps a checkpoint of the durable tree with `key`, as the hub does.
    fn sign(store: &Store, key: &SigningKey) -> String {
        let head = store.flushed_tree_head().expect("head");
        let note = Checkpoint::new(key.origin(), head.size, head.root)
            .and_then(|c| c.sign(key.signer()))
            .expect("signed")
            .to_string();
        History::new(store.checkpoints_tree().clone())
            .put(head.size, &note)
            .expect("kept");
        note
    }

    fn keyring(store: &Store) -> Keyring {
        Keyring::load(store.settings_tree()).expect("loads")
    }

    fn key_in(path: &Path) -> Option<NoteVerifier> {
        read_key_file(path).expect("readable").map(|s| s.verifier())
    }

    #[tokio::test]
    async fn a_rotation_hands_over_with_both_keys_and_the_hub_starts_with_the_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, settings, old) = hub_dir(dir.path(), 3).await;
        let before = History::new(store.checkpoints_tree().clone())
            .get(3)
            .expect("read")
            .expect("signed");
        let plan = prepare(&store, &old).expect("prepared");
        assert_eq!(plan.size, 3);
        assert_eq!(plan.new.name(), old.origin());
        assert_ne!(plan.new.key_id(), old.verifier().key_id());
        assert!(
            keyring(&store).is_empty(),
            "prepare changes nothing in the store"
        );
        commit(&store, &plan).expect("committed");
        let pending = keyring(&store);
        let marker = pending.pending().expect("marked").clone();
        assert_eq!(marker.replaced.as_deref(), Some(before.note.as_str()));
        assert!(marker.seeded);
        assert_eq!(
            diagnose(&pending, old.path()).expect("diagnosed"),
            Resume::Install
        );
        install(&pending).expect("installed");
        install(&pending).expect("and again: each step is skipped once taken");
        assert_eq!(
            diagnose(&pending, old.path()).expect("diagnosed"),
            Resume::Installed
        );
        complete(&store, &pending).expect("completed");

        let keys = keyring(&store);
        assert!(keys.pending().is_none());
        let vkeys: Vec<String> = keys.entries().iter().map(|k| k.vkey()).collect();
        assert_eq!(vkeys, [old.vkey(), plan.new.vkey()]);
        assert_eq!(keys.entries()[1].from_size(), 3);
        assert_eq!(keys.entries()[1].handover(), Some(plan.note.as_str()));
        // the key file holds the new key, the old one is kept (0600), no `.new` is left
        assert_eq!(key_in(old.path()), Some(plan.new.clone()));
        assert_eq!(key_in(&marker.old_copy), Some(old.verifier()));
        assert!(!marker.pending_file.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [old.path(), marker.old_copy.as_path()] {
                let mode = std::fs::metadata(p).expect("exists").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", p.display());
            }
        }
        // the hand-over is the checkpoint of its size, same root, signed by both keys
        let history = History::new(store.checkpoints_tree().clone());
        let stored = history.get(3).expect("read").expect("kept");
        assert_eq!(stored.note, plan.note);
        assert_eq!(stored.checkpoint.root(), before.checkpoint.root());
        assert!(stored.signed_by(&old.verifier()) && stored.signed_by(&plan.new));
        // the hub starts with the new key and its history
        let reopened = SigningKey::open(&settings, &store).expect("the newest key");
        assert_eq!(reopened.vkey(), plan.new.vkey());
        assert_eq!(reopened.keyring(), &keys);
        // the next checkpoint is the new key's; each stored one checks with the key of its size
        append(&store, 2).await;
        sign(&store, &reopened);
        let (claims, unsigned) = history.claims_with(&keys).expect("claims");
        assert_eq!((claims.len(), unsigned), (2, vec![]));
        let (_, by_new_only) = history.claims(&plan.new).expect("claims");
        assert_eq!(by_new_only, Vec::<u64>::new());
        let (_, by_old_only) = history.claims(&old.verifier()).expect("claims");
        assert_eq!(by_old_only, vec![5]);
        // a checker holding either key trusts both through the hand-over; another key, neither
        for held in [old.verifier(), plan.new.clone()] {
            let (claims, unsigned) = history.claims_for(&keys, &held).expect("claims");
            assert_eq!((claims.len(), unsigned), (2, vec![]));
        }
        let stranger = NoteSigner::generate(old.origin()).expect("key").verifier();
        let (_, unsigned) = history.claims_for(&keys, &stranger).expect("claims");
        assert_eq!(unsigned, vec![3, 5]);
        // a checkpoint before the hand-over, signed by the new key only, is not the old key's
        let early = Checkpoint::new(old.origin(), 1, [1; 32])
            .and_then(|c| c.sign(reopened.signer()))
            .expect("signed")
            .to_string();
        history.put(1, &early).expect("kept");
        let (_, unsigned) = history.claims_with(&keys).expect("claims");
        assert_eq!(unsigned, vec![1]);
        store
            .checkpoints_tree()
            .remove(history_key(1))
            .expect("removed");

        // a second rotation hands over from the new key
        let plan2 = prepare(&store, &reopened).expect("prepared");
        assert_eq!(plan2.size, 5);
        commit(&store, &plan2).expect("committed");
        let pending2 = keyring(&store);
        assert!(!pending2.pending().expect("marked").seeded);
        install(&pending2).expect("installed");
        complete(&store, &pending2).expect("completed");
        assert_eq!(keyring(&store).entries().len(), 3);
        assert_eq!(
            SigningKey::open(&settings, &store).expect("opens").vkey(),
            plan2.new.vkey()
        );
    }

    #[tokio::test]
    async fn an_interrupted_rotation_stops_the_hub_and_is_finished_or_rolled_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, settings, old) = hub_dir(dir.path(), 2).await;
        let before = History::new(store.checkpoints_tree().clone())
            .get(2)
            .expect("read")
            .expect("signed");

        // killed before the commit: a `.new` file in no history; the hub starts with the old key
        let abandoned = prepare(&store, &old).expect("prepared");
        assert_eq!(
            key_in(&pending_key_path(old.path())),
            Some(abandoned.new.clone())
        );
        let opened = SigningKey::open(&settings, &store).expect("old key");
        assert_eq!(opened.vkey(), old.vkey());

        // killed after the commit: the hub refuses, saying what to run
        let plan = prepare(&store, &old).expect("prepared again, over the stale file");
        commit(&store, &plan).expect("committed");
        let err = SigningKey::open(&settings, &store).expect_err("unfinished");
        assert!(matches!(err, KeyError::RotationUnfinished { .. }), "{err}");
        assert!(err.to_string().contains("rotate-signing"), "{err}");
        // another rotation does not start over it
        assert!(matches!(
            prepare(&store, &old),
            Err(HandoverError::InProgress)
        ));
        let pending = keyring(&store);
        // another key file in the settings is refused
        let elsewhere = dir.path().join("elsewhere.key");
        assert!(matches!(
            diagnose(&pending, &elsewhere),
            Err(HandoverError::OtherKeyFile { .. })
        ));
        // the new key lost (its `.new` file deleted): rolled back, as before the rotation
        std::fs::remove_file(pending_key_path(old.path())).expect("deleted");
        assert_eq!(
            diagnose(&pending, old.path()).expect("diagnosed"),
            Resume::RollBack
        );
        rollback(&store, &pending).expect("rolled back");
        assert!(keyring(&store).is_empty());
        let history = History::new(store.checkpoints_tree().clone());
        assert_eq!(
            history.get(2).expect("read").map(|s| s.note),
            Some(before.note)
        );
        assert_eq!(
            SigningKey::open(&settings, &store).expect("old key").vkey(),
            old.vkey()
        );

        // both keys gone: nothing is guessed
        let plan = prepare(&store, &old).expect("prepared");
        commit(&store, &plan).expect("committed");
        let pending = keyring(&store);
        std::fs::remove_file(pending_key_path(old.path())).expect("deleted");
        let kept = std::fs::read(old.path()).expect("read");
        std::fs::remove_file(old.path()).expect("deleted");
        assert!(matches!(
            diagnose(&pending, old.path()),
            Err(HandoverError::KeyLost { .. })
        ));
        std::fs::write(old.path(), kept).expect("put back");
        assert_eq!(
            diagnose(&pending, old.path()).expect("diagnosed"),
            Resume::RollBack
        );
    }

    #[tokio::test]
    async fn the_hub_refuses_a_key_file_that_is_not_the_newest_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, settings, old) = hub_dir(dir.path(), 1).await;
        let plan = prepare(&store, &old).expect("prepared");
        commit(&store, &plan).expect("committed");
        let pending = keyring(&store);
        install(&pending).expect("installed");
        complete(&store, &pending).expect("completed");
        let path = settings.signing_key_path();
        let new_file = std::fs::read(&path).expect("read");

        // a key swapped in (same origin, another key): never signed this log
        let foreign = NoteSigner::generate(old.origin()).expect("key");
        std::fs::write(&path, format!("{}\n", *foreign.skey())).expect("write");
        let err = SigningKey::open(&settings, &store).expect_err("foreign");
        assert!(matches!(err, KeyError::NotInHistory { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&foreign.verifier().vkey()), "{message}");
        assert!(message.contains(&plan.new.vkey()), "{message}");
        assert!(
            !message.contains(&foreign.skey()[20..]),
            "no private key shown"
        );
        // the old key restored from a backup: retired at the hand-over's size
        std::fs::write(&path, format!("{}\n", *old.signer().skey())).expect("write");
        let err = SigningKey::open(&settings, &store).expect_err("retired");
        assert!(matches!(err, KeyError::Retired { until: 1, .. }), "{err}");
        // no key file: none is made in its place
        std::fs::remove_file(&path).expect("deleted");
        let err = SigningKey::open(&settings, &store).expect_err("missing");
        assert!(matches!(err, KeyError::Missing { .. }), "{err}");
        assert!(!path.exists());
        std::fs::write(&path, new_file).expect("put back");
        assert!(SigningKey::open(&settings, &store).is_ok());
    }

    #[tokio::test]
    async fn a_rotation_is_refused_over_an_empty_or_diverged_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _settings, key) = hub_dir(dir.path(), 0).await;
        assert!(matches!(
            prepare(&store, &key),
            Err(HandoverError::EmptyLog)
        ));
        append(&store, 2).await;
        // a checkpoint of a bigger tree than the log holds: events were cut off
        let history = History::new(store.checkpoints_tree().clone());
        let note = Checkpoint::new(key.origin(), 5, [7; 32])
            .and_then(|c| c.sign(key.signer()))
            .expect("signed")
            .to_string();
        history.put(5, &note).expect("kept");
        let err = prepare(&store, &key).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("fewer than")),
            "{err:?}"
        );
        // a checkpoint of the log's size with another root: rewritten
        store.checkpoints_tree().clear().expect("cleared");
        let note = Checkpoint::new(key.origin(), 2, [7; 32])
            .and_then(|c| c.sign(key.signer()))
            .expect("signed")
            .to_string();
        history.put(2, &note).expect("kept");
        assert!(matches!(
            prepare(&store, &key),
            Err(HandoverError::Diverged(Diverged::Rewritten { signed: 2 }))
        ));
        assert!(keyring(&store).is_empty());
        assert!(!pending_key_path(key.path()).exists(), "no key was written");
    }
}
