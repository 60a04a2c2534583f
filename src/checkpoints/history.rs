//! The hub's own copy of every checkpoint it signed, by tree size, in the store's
//! `checkpoints` tree: the API serves them, proofs are made against them, and `verify` checks
//! the log against each (after checking its signature, since whoever can write the data dir can
//! write this tree too — what they cannot rewrite is a copy published elsewhere).
//!
//! After a key rotation the checkpoints of different sizes are signed by different keys; the
//! log's key history ([`Keyring`]) says which, and [`History::claims_with`] checks each with
//! the key in force at its size.

use super::keyring::Keyring;
use crate::evidence::checkpoint::Checkpoint;
use crate::evidence::note::{Note, NoteVerifier};
use crate::store::verify::TreeClaim;
use crate::store::StoreError;
use crate::time::{parse_rfc3339, Micros};

/// The extension line that carries a checkpoint's signing time: `time <RFC 3339>`.
pub const TIME_PREFIX: &str = "time ";

/// The key of the checkpoint of tree size `size` in the `checkpoints` tree: the size,
/// big-endian, so that keys sort as sizes.
pub(super) fn history_key(size: u64) -> [u8; 8] {
    size.to_be_bytes()
}

/// One stored checkpoint, read back.
#[derive(Debug, Clone)]
pub struct Stored {
    pub checkpoint: Checkpoint,
    /// When it was signed (its `time` extension line), if it has one.
    pub time: Option<Micros>,
    /// The signed note, exactly as signed and published.
    pub note: String,
}

impl Stored {
    pub fn parse(note_text: &str) -> Result<Stored, StoreError> {
        let note = Note::parse(note_text.as_bytes())
            .map_err(|e| StoreError::Corrupt(format!("a stored checkpoint: {e}")))?;
        let checkpoint = Checkpoint::from_text(note.text())
            .map_err(|e| StoreError::Corrupt(format!("a stored checkpoint: {e}")))?;
        let time = checkpoint
            .extensions()
            .iter()
            .find_map(|l| l.strip_prefix(TIME_PREFIX))
            .and_then(parse_rfc3339);
        Ok(Stored {
            checkpoint,
            time,
            note: note_text.to_string(),
        })
    }

    /// A stored checkpoint as the `checkpoints` tree holds it.
    fn from_value(value: &[u8]) -> Result<Stored, StoreError> {
        Stored::parse(&String::from_utf8_lossy(value))
    }

    pub fn size(&self) -> u64 {
        self.checkpoint.size()
    }

    /// Whether `verifier` signed it.
    pub fn signed_by(&self, verifier: &NoteVerifier) -> bool {
        Note::parse(self.note.as_bytes())
            .ok()
            .is_some_and(|n| n.verify(std::slice::from_ref(verifier)).is_ok())
    }

    /// Whether every key of `signers` (at least one) signed it, and no signature by one of
    /// them fails.
    pub fn signed_by_all(&self, signers: &[NoteVerifier]) -> bool {
        !signers.is_empty()
            && Note::parse(self.note.as_bytes())
                .ok()
                .and_then(|n| n.verify(signers).ok())
                .is_some_and(|signed| signed.len() == signers.len())
    }

    /// Whether the keys that should have signed it, by the key history, did: the key in
    /// force at its size, and for a hand-over the key before it too.
    pub fn signed_as_expected(&self, keyring: &Keyring) -> bool {
        self.signed_by_all(&keyring.signers_at(self.size()))
    }
}

/// The stored checkpoints.
#[derive(Clone)]
pub struct History {
    tree: sled::Tree,
}

impl History {
    pub fn new(tree: sled::Tree) -> History {
        History { tree }
    }

    /// Keeps a signed checkpoint; durable after the next `Store::sync`.
    pub fn put(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.tree.insert(history_key(size), note.as_bytes())?;
        Ok(())
    }

    pub fn get(&self, size: u64) -> Result<Option<Stored>, StoreError> {
        self.tree
            .get(history_key(size))?
            .map(|v| Stored::from_value(&v))
            .transpose()
    }

    pub fn latest(&self) -> Result<Option<Stored>, StoreError> {
        self.tree
            .last()?
            .map(|(_, v)| Stored::from_value(&v))
            .transpose()
    }

    /// The first checkpoint whose tree holds event `seq` (size >= seq): the smallest proof.
    pub fn covering(&self, seq: u64) -> Result<Option<Stored>, StoreError> {
        self.tree
            .range(seq.to_be_bytes()..)
            .next()
            .transpose()?
            .map(|(_, v)| Stored::from_value(&v))
            .transpose()
    }

    /// Up to `limit` checkpoints with a size below `before`, newest first.
    pub fn page(&self, before: Option<u64>, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let end = before.unwrap_or(u64::MAX);
        self.tree
            .range(..end.to_be_bytes())
            .rev()
            .take(limit)
            .map(|item| {
                let (_, v) = item?;
                Stored::from_value(&v)
            })
            .collect()
    }

    /// Every checkpoint after tree size `after` (all of them for `None`), as (size, signed
    /// note), oldest first.
    pub fn after(&self, after: Option<u64>) -> Result<Vec<(u64, String)>, StoreError> {
        let items = match after {
            Some(size) => self.tree.range(size.saturating_add(1).to_be_bytes()..),
            None => self.tree.range::<[u8; 8], _>(..),
        };
        items
            .map(|item| {
                let (k, v) = item?;
                let size = crate::store::keys::decode_u64(&k);
                Ok((size, String::from_utf8_lossy(&v).into_owned()))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Every stored checkpoint as a claim for `Store::verify_against`, each with its signature
    /// checked by `verifier` first: one that does not verify is reported, not trusted. For a
    /// log whose key was rotated, see [`History::claims_with`].
    pub fn claims(
        &self,
        verifier: &NoteVerifier,
    ) -> Result<(Vec<TreeClaim>, Vec<u64>), StoreError> {
        self.claims_checked(|stored| stored.signed_by(verifier))
    }

    /// The same, each checkpoint checked with the key in force at its size by `keyring` (a
    /// hand-over with both its keys): the check for a log whose key was rotated. Pass
    /// `Keyring::or_original(current key)` for a log never rotated (an empty history trusts
    /// no key).
    pub fn claims_with(&self, keyring: &Keyring) -> Result<(Vec<TreeClaim>, Vec<u64>), StoreError> {
        self.claims_checked(|stored| stored.signed_as_expected(keyring))
    }

    /// For a checker who holds `held` (`trailhub verify`: `--key`, else the key file's key):
    /// as [`History::claims_with`] when `held` is one of the log's keys in `keyring` (the
    /// hand-overs, each signed by both its keys, tie every key to it; `Keyring::load` checked
    /// them), else as [`History::claims`] with `held` alone (a log never rotated, or a key not
    /// of this log, whose checkpoints are then reported as not signed by it).
    pub fn claims_for(
        &self,
        keyring: &Keyring,
        held: &NoteVerifier,
    ) -> Result<(Vec<TreeClaim>, Vec<u64>), StoreError> {
        match keyring.trusted_from(held) {
            Ok(_) => self.claims_with(keyring),
            Err(_) => self.claims(held),
        }
    }

    fn claims_checked(
        &self,
        signed: impl Fn(&Stored) -> bool,
    ) -> Result<(Vec<TreeClaim>, Vec<u64>), StoreError> {
        let mut claims = Vec::new();
        let mut unsigned = Vec::new();
        for item in self.tree.iter() {
            let (_, v) = item?;
            let stored = Stored::from_value(&v)?;
            if !signed(&stored) {
                unsigned.push(stored.size());
                continue;
            }
            claims.push(TreeClaim {
                size: stored.size(),
                root: *stored.checkpoint.root(),
                source: format!("stored checkpoint {}", stored.size()),
            });
        }
        Ok((claims, unsigned))
    }
}
