//! Walking the log: every event's hash must equal SHA-256(previous hash ‖ the event's JSON) —
//! checked against the prefix stored beside each event and the full hash stored at the end of
//! each block — sequence numbers must be contiguous, and the last hash must equal the stored
//! chain head. The same walk rebuilds the Merkle tree from the event bytes: every kept node
//! must equal the one recomputed, and the root at the size of every checkpoint handed in (those
//! the hub signed, one published elsewhere) must equal the checkpoint's.
//!
//! The chain alone cannot catch someone with disk access who deletes the newest events and sets
//! the head back, or rewrites the whole chain: a checkpoint signed before, and kept where they
//! cannot reach it, does.
//!
//! A purged event's slot holds a tombstone (`purge`) with its leaf and chain hashes: the walk
//! goes on from those, and checks that the purge it names is recorded in the log.

use serde::Serialize;

use std::collections::BTreeMap;

use super::block::{BlockView, Tombstone, CHAIN_PREFIX};
use super::merkle::{kept, read_node};
use super::purge::{PURGE_EVENT_TYPE, SYSTEM_INTEGRATION};
use super::{keys, prepare, Store, StoreError};
use crate::evidence::merkle::{CompactTree, Hash, NodeId};

#[derive(Debug, Clone, Serialize)]
pub struct BrokenLink {
    pub seq: u64,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub events_checked: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// The Merkle tree rebuilt from the events: its size and root.
    pub tree_size: u64,
    pub tree_root: String,
    /// Checkpoints whose root was compared with the rebuilt tree's at their size.
    pub checkpoints_checked: u64,
    pub first_broken: Option<BrokenLink>,
}

/// A root someone vouches for: the store must have `size` events whose tree has this root.
#[derive(Debug, Clone)]
pub struct TreeClaim {
    pub size: u64,
    pub root: Hash,
    /// What vouches for it, for the report: "checkpoint 1200 (stored)", a file name...
    pub source: String,
}

fn broken(seq: u64, reason: impl Into<String>) -> BrokenLink {
    BrokenLink {
        seq,
        id: format!("{seq:016x}"),
        reason: reason.into(),
    }
}

/// The Merkle side of the walk: the tree rebuilt leaf by leaf, each kept node compared with the
/// stored one, each claim compared when the tree reaches its size.
struct TreeCheck<'a> {
    log: &'a sled::Tree,
    tree: CompactTree,
    /// Claims by size, smallest last (popped as the walk reaches them).
    claims: Vec<&'a TreeClaim>,
    checked: u64,
}

impl<'a> TreeCheck<'a> {
    fn new(log: &'a sled::Tree, claims: &'a [TreeClaim]) -> Self {
        let mut claims: Vec<&TreeClaim> = claims.iter().collect();
        claims.sort_by_key(|c| std::cmp::Reverse(c.size));
        TreeCheck {
            log,
            tree: CompactTree::new(),
            claims,
            checked: 0,
        }
    }

    /// Adds event `seq`'s leaf; a broken link when a kept node or a claim disagrees.
    fn push(&mut self, seq: u64, leaf: Hash) -> Result<Option<BrokenLink>, StoreError> {
        let mut nodes: Vec<(NodeId, Hash)> = Vec::new();
        self.tree
            .push_with(leaf, |id, hash| {
                if kept(id) {
                    nodes.push((id, *hash));
                }
            })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for (id, hash) in nodes {
            if read_node(self.log, id)? != Some(hash) {
                let first = id.first_leaf().unwrap_or(0) + 1;
                return Ok(Some(broken(
                    seq,
                    format!(
                        "the stored Merkle node over events {first:016x}..={seq:016x} is missing or does not match them"
                    ),
                )));
            }
        }
        Ok(self.claims_at_size())
    }

    fn claims_at_size(&mut self) -> Option<BrokenLink> {
        while let Some(claim) = self.claims.last() {
            if claim.size != self.tree.size() {
                break;
            }
            self.checked += 1;
            if claim.root != self.tree.root() {
                return Some(broken(
                    claim.size,
                    format!(
                        "the events up to {:016x} do not have the root {} signed in {}: the history it covers was rewritten",
                        claim.size,
                        hex::encode(claim.root),
                        claim.source
                    ),
                ));
            }
            self.claims.pop();
        }
        None
    }

    /// Claims past the end of the log: events they cover were removed.
    fn past_end(&self) -> Option<BrokenLink> {
        let claim = self.claims.first()?;
        let have = self.tree.size();
        Some(broken(
            have + 1,
            format!(
                "{} covers {} events but the log holds {have}: events were removed from its end",
                claim.source, claim.size
            ),
        ))
    }
}

impl Store {
    /// Every tombstone must name the retention record of its purge: a stored event of the
    /// `trailhub` integration of type `PURGE_EVENT_TYPE` (retention never purges those). A slot
    /// emptied by hand names nothing of the kind.
    fn check_purges(&self, purges: &BTreeMap<u64, u64>) -> Result<Option<BrokenLink>, StoreError> {
        for (&purge_seq, &first) in purges {
            let named = match self.event(purge_seq)? {
                Some(e) => {
                    e.integration.id == SYSTEM_INTEGRATION && e.event_type == PURGE_EVENT_TYPE
                }
                None => false,
            };
            if !named {
                return Ok(Some(broken(
                    first,
                    format!(
                        "the event was removed, but the purge it names ({purge_seq:016x}) is not a retention record"
                    ),
                )));
            }
        }
        Ok(None)
    }

    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_against(&[])
    }

    /// Walks the log, rebuilding the chain and the Merkle tree, and checks the roots `claims`
    /// vouch for.
    pub fn verify_against(&self, claims: &[TreeClaim]) -> Result<VerifyReport, StoreError> {
        let sh = self.shared();
        let head = self.head()?;
        let mut tree = TreeCheck::new(&sh.log, claims);
        let mut prev = [0u8; 32];
        let mut checked = 0u64;
        // a claim on the empty tree is settled before any event
        let mut first_broken = tree.claims_at_size();
        // purge event seq → the first tombstone naming it
        let mut purges: BTreeMap<u64, u64> = BTreeMap::new();
        'blocks: for item in sh.log.range(keys::block_key(0)..=keys::block_key(u64::MAX)) {
            if first_broken.is_some() {
                break;
            }
            let (k, v) = item?;
            let first = keys::decode_u64(&k[1..]);
            let expected = checked + 1;
            if first != expected {
                first_broken = Some(broken(
                    expected,
                    format!(
                        "event {expected:016x} is missing (the next block starts at {first:016x})"
                    ),
                ));
                break;
            }
            let view = match BlockView::parse(&v) {
                Ok(view) => view,
                Err(e) => {
                    first_broken = Some(broken(first, e.to_string()));
                    break;
                }
            };
            let mut seq = first;
            // whether `prev` is the chain hash before `seq` (false past a tombstone)
            let mut chained = true;
            for f in 0..view.frame_count() {
                let frame = match view.decode_frame(f, &sh.dicts) {
                    Ok(frame) => frame,
                    Err(e) => {
                        first_broken = Some(broken(seq, e.to_string()));
                        break 'blocks;
                    }
                };
                for i in 0..frame.len() {
                    let slot = frame.body(i);
                    // a purged event's slot keeps its leaf, not its chain hash: past it the block
                    // is checked by the tree alone, and the chain picks up at the block's hash
                    let leaf = match Tombstone::parse(slot) {
                        Ok(Some(t)) => {
                            purges.entry(t.purge_seq).or_insert(seq);
                            chained = false;
                            t.leaf
                        }
                        Ok(None) => {
                            if chained {
                                let computed = prepare::chain_hash_of(&prev, seq, slot);
                                if computed[..CHAIN_PREFIX] != *frame.chain_prefix(i) {
                                    first_broken = Some(broken(
                                        seq,
                                        "hash does not match the event's content and its predecessor",
                                    ));
                                    break 'blocks;
                                }
                                prev = computed;
                            }
                            prepare::leaf_hash_of(seq, slot)
                        }
                        Err(e) => {
                            first_broken = Some(broken(seq, e.to_string()));
                            break 'blocks;
                        }
                    };
                    if let Some(b) = tree.push(seq, leaf)? {
                        first_broken = Some(b);
                        break 'blocks;
                    }
                    checked += 1;
                    seq += 1;
                }
            }
            if chained && prev != view.hash {
                first_broken = Some(broken(
                    seq - 1,
                    "the block's chain hash does not match its events",
                ));
                break;
            }
            prev = view.hash;
        }
        if first_broken.is_none() {
            first_broken = tree.past_end();
        }
        if first_broken.is_none() {
            first_broken = self.check_purges(&purges)?;
        }
        if first_broken.is_none() {
            if checked != head.seq {
                first_broken = Some(broken(
                    checked + 1,
                    format!(
                        "chain head names event {:016x} but the chain ends at {checked:016x}",
                        head.seq
                    ),
                ));
            } else if prev != head.hash {
                first_broken = Some(broken(
                    head.seq,
                    "chain head hash does not match the last event",
                ));
            }
        }
        Ok(VerifyReport {
            ok: first_broken.is_none(),
            events_checked: checked,
            head_seq: head.seq,
            head_hash: hex::encode(head.hash),
            tree_size: tree.tree.size(),
            tree_root: hex::encode(tree.tree.root()),
            checkpoints_checked: tree.checked,
            first_broken,
        })
    }
}
