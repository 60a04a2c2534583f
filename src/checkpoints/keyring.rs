//! Which key signed the log's checkpoints of which tree sizes: the history of the checkpoint
//! signing keys, with the signed hand-over between each key and the next
//!
//! An auditor holds one public key, handed over once, out of band. When the key changes
//! (`trailhub keys rotate-signing`), what keeps that auditor able to check the log is a
//! **hand-over checkpoint**: a checkpoint of the tree at the moment of the change, with a
//! `key-handover <new vkey>` extension line, signed by both the old and the new key. Holding the
//! old key, one verifies it and learns the new key from it; holding the new key, one sees that
//! the old key endorsed it. The keys form a chain from the log's first key, each link signed by
//! both of its keys.
//!
//! The history is one value in the store's settings tree ([`KEYRING_KEY`]): each key (a C2SP
//! vkey, named by the log's origin), the tree size from which it signs, and its hand-over note;
//! the first entry is the log's original key, from size 0, without one. A log whose key was
//! never rotated has no such value: its keyring is empty and its one key is the key file's
//! ([`Keyring::or_original`]). Whoever can write the data dir can write this value too, so every
//! hand-over is checked when it is read: a key is in the chain only if the key before it signed
//! it in.
//!
//! The value also holds the marker of a rotation in progress ([`PendingHandover`]), written in
//! the same transaction as the new entry, so that an interrupted rotation is found, finished or
//! rolled back (see `key_handover`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::evidence::checkpoint::Checkpoint;
use crate::evidence::note::{Note, NoteVerifier};
use crate::store::StoreError;
use crate::time::Micros;

/// The settings-tree key of the signing key history. (The settings tree is shared: the
/// publishers keep `published:<sink>` marks in it.)
pub const KEYRING_KEY: &[u8] = b"signing_keys";
/// The schema version of the stored value.
const KEYRING_VERSION: u8 = 1;
/// The extension line of a hand-over checkpoint naming the key that signs from its size on.
pub const HANDOVER_PREFIX: &str = "key-handover ";
/// The most keys a history may hold: room for a rotation a week for a century.
const MAX_KEYS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint signing key history (settings key signing_keys) does not decode: {0}")]
    Undecodable(String),
    #[error("the checkpoint signing key history is broken at key {index} ({vkey}): {reason}; it was altered, since `trailhub keys rotate-signing` writes only hand-overs signed by both keys")]
    Broken {
        index: usize,
        vkey: String,
        reason: String,
    },
    #[error("the key {held} is not one of the log's signing keys ({known}): checkpoints signed by its keys cannot be tied to it")]
    NotInHistory { held: String, known: String },
}

/// One signing key of the log and the tree sizes it signs from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    verifier: NoteVerifier,
    from_size: u64,
    handover: Option<String>,
}

impl KeyEntry {
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The key as C2SP vkey text.
    pub fn vkey(&self) -> String {
        self.verifier.vkey()
    }

    /// The tree size of its first checkpoint (the hand-over, for every key but the first).
    pub fn from_size(&self) -> u64 {
        self.from_size
    }

    /// The hand-over note signed by the key before it and by it; `None` for the first key.
    pub fn handover(&self) -> Option<&str> {
        self.handover.as_deref()
    }
}

/// A rotation committed to the store whose new key may not be in the key file yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingHandover {
    /// The key file the hub reads ...
    pub key_file: PathBuf,
    /// ... where the new key waits until it is renamed there (`<key file>.new`) ...
    pub pending_file: PathBuf,
    /// ... and where the old key is kept (`<key file>.old-<unix time>`).
    pub old_copy: PathBuf,
    /// The checkpoint the hand-over replaced at its size, if there was one: put back by a
    /// roll-back.
    pub replaced: Option<String>,
    /// Whether the rotation added the original key as the history's first entry (the history
    /// was empty before): a roll-back removes it too.
    pub seeded: bool,
    #[serde(with = "crate::schema::rfc3339_micros")]
    pub started_at: Micros,
}

/// How a key stands in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStanding {
    /// The history is empty (the key was never rotated): nothing to compare with.
    Unrecorded,
    /// The newest key: the one that signs now.
    Newest,
    /// A key rotated away: it signed checkpoints of sizes below `until`.
    Retired { until: u64 },
    /// Not a key of this log.
    Foreign,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeyring {
    v: u8,
    keys: Vec<StoredEntry>,
    #[serde(default)]
    pending: Option<PendingHandover>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredEntry {
    public_key: String,
    from_size: u64,
    handover: Option<String>,
}

/// An entry of the API's `keys` listing: fields added to it later are ignored.
#[derive(Deserialize)]
struct ListedEntry {
    public_key: String,
    from_size: u64,
    handover: Option<String>,
}

/// The log's signing keys, oldest first, each hand-over checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    entries: Vec<KeyEntry>,
    pending: Option<PendingHandover>,
}

/// Checks that `note` hands the log over from `old` to `new` at tree size `size`: signed by
/// both, a checkpoint of the keys' log (their name) of that size, naming `new` in exactly one
/// `key-handover` line. Returns the checkpoint.
pub fn check_handover(
    note: &str,
    old: &NoteVerifier,
    new: &NoteVerifier,
    size: u64,
) -> Result<Checkpoint, String> {
    let parsed = Note::parse(note.as_bytes()).map_err(|e| e.to_string())?;
    let both = [old.clone(), new.clone()];
    let signed = parsed.verify(&both).map_err(|e| e.to_string())?;
    if signed.len() != 2 {
        return Err(format!(
            "the hand-over is signed by {} but not by {}",
            signed[0].vkey(),
            both.iter()
                .find(|k| !signed.contains(k))
                .map(NoteVerifier::vkey)
                .unwrap_or_default()
        ));
    }
    let checkpoint = Checkpoint::from_text(parsed.text()).map_err(|e| e.to_string())?;
    if checkpoint.origin() != new.name() || old.name() != new.name() {
        return Err(format!(
            "the hand-over is a checkpoint of log {:?}, its keys are named {:?} and {:?}",
            checkpoint.origin(),
            old.name(),
            new.name()
        ));
    }
    if checkpoint.size() != size {
        return Err(format!(
            "the hand-over is a checkpoint of size {}, not of size {size} where the key starts",
            checkpoint.size()
        ));
    }
    let named: Vec<&str> = checkpoint
        .extensions()
        .iter()
        .filter_map(|l| l.strip_prefix(HANDOVER_PREFIX))
        .collect();
    if named != [new.vkey().as_str()] {
        return Err(format!(
            "the hand-over names {named:?}, not exactly the key {}",
            new.vkey()
        ));
    }
    Ok(checkpoint)
}

impl Keyring {
    /// The history kept in the settings tree; empty if the key was never rotated.
    pub fn load(settings: &sled::Tree) -> Result<Keyring, KeyringError> {
        match settings.get(KEYRING_KEY).map_err(StoreError::from)? {
            None => Ok(Keyring::default()),
            Some(bytes) => {
                let stored: StoredKeyring = serde_json::from_slice(&bytes)
                    .map_err(|e| KeyringError::Undecodable(e.to_string()))?;
                if stored.v != KEYRING_VERSION {
                    return Err(KeyringError::Undecodable(format!(
                        "schema version {} is not {KEYRING_VERSION}: written by another version of trailhub",
                        stored.v
                    )));
                }
                if stored.keys.is_empty() {
                    return Err(KeyringError::Undecodable("it lists no key".into()));
                }
                let mut keyring = Keyring::from_entries(stored.keys)?;
                keyring.pending = stored.pending;
                Ok(keyring)
            }
        }
    }

    /// The `keys` array of `GET /api/v1/checkpoints` (`public_key`, `from_size`, `handover`),
    /// checked as the stored history is: for a client that holds one of the keys and must learn
    /// the others from the hand-overs, never from the hub's word.
    pub fn from_listing(keys: &serde_json::Value) -> Result<Keyring, KeyringError> {
        let keys: Vec<ListedEntry> = serde_json::from_value(keys.clone())
            .map_err(|e| KeyringError::Undecodable(format!("the keys listing: {e}")))?;
        if keys.is_empty() {
            return Err(KeyringError::Undecodable(
                "the keys listing is empty".into(),
            ));
        }
        Keyring::from_entries(
            keys.into_iter()
                .map(|k| StoredEntry {
                    public_key: k.public_key,
                    from_size: k.from_size,
                    handover: k.handover,
                })
                .collect(),
        )
    }

    /// The entries, each hand-over checked against the key before it.
    fn from_entries(keys: Vec<StoredEntry>) -> Result<Keyring, KeyringError> {
        if keys.len() > MAX_KEYS {
            return Err(KeyringError::Undecodable(format!(
                "it lists {} keys, more than the {MAX_KEYS} accepted",
                keys.len()
            )));
        }
        let mut entries: Vec<KeyEntry> = Vec::with_capacity(keys.len());
        for (index, key) in keys.into_iter().enumerate() {
            let broken = |reason: String| KeyringError::Broken {
                index,
                vkey: key.public_key.clone(),
                reason,
            };
            let verifier = NoteVerifier::from_vkey(&key.public_key)
                .map_err(|e| broken(format!("not a verifier key: {e}")))?;
            if entries.iter().any(|e| e.verifier == verifier) {
                return Err(broken("the key is listed twice".into()));
            }
            match entries.last() {
                None => {
                    if key.from_size != 0 || key.handover.is_some() {
                        return Err(broken(
                            "the first key must sign from size 0, without a hand-over".into(),
                        ));
                    }
                }
                Some(previous) => {
                    if key.from_size < previous.from_size {
                        return Err(broken(format!(
                            "it signs from size {}, before the key before it ({})",
                            key.from_size, previous.from_size
                        )));
                    }
                    let Some(note) = &key.handover else {
                        return Err(broken("it has no hand-over from the key before it".into()));
                    };
                    check_handover(note, &previous.verifier, &verifier, key.from_size)
                        .map_err(broken)?;
                }
            }
            entries.push(KeyEntry {
                verifier,
                from_size: key.from_size,
                handover: key.handover,
            });
        }
        Ok(Keyring {
            entries,
            pending: None,
        })
    }

    /// The history as stored (entries and marker).
    fn encode(&self) -> Vec<u8> {
        let stored = StoredKeyring {
            v: KEYRING_VERSION,
            keys: self
                .entries
                .iter()
                .map(|e| StoredEntry {
                    public_key: e.vkey(),
                    from_size: e.from_size,
                    handover: e.handover.clone(),
                })
                .collect(),
            pending: self.pending.clone(),
        };
        serde_json::to_vec(&stored).expect("strings, numbers and UTF-8 paths serialise")
    }

    /// The stored value of this history, `None` for an empty one (nothing is stored then).
    pub(super) fn to_value(&self) -> Result<Option<Vec<u8>>, KeyringError> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        if let Some(p) = &self.pending {
            for path in [&p.key_file, &p.pending_file, &p.old_copy] {
                if path.to_str().is_none() {
                    return Err(KeyringError::Undecodable(format!(
                        "the key file path {} is not UTF-8",
                        path.display()
                    )));
                }
            }
        }
        Ok(Some(self.encode()))
    }

    /// This history, or for a log whose key was never rotated (an empty history), one holding
    /// `current` from size 0.
    pub fn or_original(self, current: &NoteVerifier) -> Keyring {
        if !self.entries.is_empty() {
            return self;
        }
        Keyring {
            entries: vec![KeyEntry {
                verifier: current.clone(),
                from_size: 0,
                handover: None,
            }],
            pending: self.pending,
        }
    }

    /// This history with `new` signing from `from_size`, handed over by `handover`, and the
    /// marker of the rotation (`or_original` first, for the first rotation).
    pub(super) fn handed_over(
        &self,
        new: NoteVerifier,
        from_size: u64,
        handover: String,
        pending: PendingHandover,
    ) -> Keyring {
        let mut entries = self.entries.clone();
        entries.push(KeyEntry {
            verifier: new,
            from_size,
            handover: Some(handover),
        });
        Keyring {
            entries,
            pending: Some(pending),
        }
    }

    /// This history without its marker (a finished rotation).
    pub(super) fn finished(&self) -> Keyring {
        Keyring {
            entries: self.entries.clone(),
            pending: None,
        }
    }

    /// This history as it was before the pending rotation: its newest key removed, and the
    /// original key too when the rotation added it.
    pub(super) fn rolled_back(&self) -> Keyring {
        let mut entries = self.entries.clone();
        entries.pop();
        if self.pending.as_ref().is_some_and(|p| p.seeded) {
            entries.clear();
        }
        Keyring {
            entries,
            pending: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys, oldest first.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The key that signs now.
    pub fn newest(&self) -> Option<&KeyEntry> {
        self.entries.last()
    }

    /// The marker of a rotation not finished yet.
    pub fn pending(&self) -> Option<&PendingHandover> {
        self.pending.as_ref()
    }

    /// The keys to check the log's checkpoints with: every key of the history, or `current`
    /// alone when the history is empty. `current` is not added to a non-empty history: a key
    /// file holding a key outside it is refused at start ([`Keyring::standing`]).
    pub fn trusted(&self, current: &NoteVerifier) -> Vec<NoteVerifier> {
        if self.entries.is_empty() {
            return vec![current.clone()];
        }
        self.entries.iter().map(|e| e.verifier.clone()).collect()
    }

    /// For someone who holds `held` (an auditor's key, `--key`): every key of the history,
    /// since each hand-over, signed by both its keys, ties every key to the ones before and
    /// after it; refused when `held` is not in the history.
    pub fn trusted_from(&self, held: &NoteVerifier) -> Result<Vec<NoteVerifier>, KeyringError> {
        if self.entries.iter().any(|e| &e.verifier == held) {
            return Ok(self.entries.iter().map(|e| e.verifier.clone()).collect());
        }
        Err(KeyringError::NotInHistory {
            held: held.vkey(),
            known: self
                .entries
                .iter()
                .map(KeyEntry::vkey)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The key in force at tree size `size`: the newest whose `from_size` is at most `size`.
    pub fn in_force(&self, size: u64) -> Option<&KeyEntry> {
        self.entries.iter().rev().find(|e| e.from_size <= size)
    }

    /// The keys a checkpoint of tree size `size` should be signed by: the key in force, and,
    /// when `size` is where that key took over (its hand-over), the key before it too.
    pub fn signers_at(&self, size: u64) -> Vec<NoteVerifier> {
        let Some(at) = self.entries.iter().rposition(|e| e.from_size <= size) else {
            return Vec::new();
        };
        let key = &self.entries[at];
        let mut signers = vec![key.verifier.clone()];
        if key.from_size == size && key.handover.is_some() && at > 0 {
            signers.push(self.entries[at - 1].verifier.clone());
        }
        signers
    }

    /// How `key` stands in the history.
    pub fn standing(&self, key: &NoteVerifier) -> KeyStanding {
        let Some(at) = self.entries.iter().position(|e| &e.verifier == key) else {
            return if self.entries.is_empty() {
                KeyStanding::Unrecorded
            } else {
                KeyStanding::Foreign
            };
        };
        match self.entries.get(at + 1) {
            None => KeyStanding::Newest,
            Some(next) => KeyStanding::Retired {
                until: next.from_size,
            },
        }
    }
}

#[cfg(test)]
#[path = "keyring_tests.rs"]
mod tests;
