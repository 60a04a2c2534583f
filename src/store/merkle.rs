//! The store's side of the evidence log: every stored event is a leaf of an RFC 9162 Merkle
//! tree (leaf `n - 1` is event `n`, so leaf indexes are as dense as sequence numbers), and the
//! hashes proofs need are kept beside the events.
//!
//! The writer grows a [`CompactTree`] as it assigns sequence numbers and writes, in the same
//! atomic batch as the events, the hash of every perfect subtree of 256 events or more that the
//! batch completes (`H` keys, about one per 128 events: a quarter of a byte per event). Hashes
//! below that level are not kept: they are computed from the events themselves (at most 255
//! leaf hashes, which share one or two blocks), so a proof costs O(log n) reads.
//!
//! Nothing here is trusted by a verifier: a proof is checked against a signed root, and
//! `verify` recomputes every leaf from the event bytes and every kept node from the leaves.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use crate::evidence::merkle::{frontier_ids, CompactTree, Hash, NodeId};
use crate::evidence::proof::{self, HashSource, ProofError};

use super::{keys, prepare, Shared, Store, StoreError};

/// The lowest level whose subtree hashes are kept: subtrees of 256 events.
pub const KEPT_LEVEL: u32 = 8;

/// The tree over the stored events at one moment: its size (= the last sequence number) and
/// root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

/// Why a proof was not given.
#[derive(Debug, thiserror::Error)]
pub enum ProofRequestError {
    #[error("the log holds {have} events; a tree of {asked} is past its end")]
    PastEnd { asked: u64, have: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ProofError<StoreError>> for ProofRequestError {
    fn from(e: ProofError<StoreError>) -> Self {
        match e {
            ProofError::Source(e) => ProofRequestError::Store(e),
            other => ProofRequestError::Invalid(other.to_string()),
        }
    }
}

/// The kept nodes a group of events completed, to be written with them.
pub(super) fn kept(id: NodeId) -> bool {
    id.level >= KEPT_LEVEL
}

/// The store's hashes as proofs read them: leaves from the events, kept nodes from `H` keys.
pub(super) struct StoreHashes<'a> {
    sh: &'a Shared,
    /// The block read last: neighbouring leaves mostly share it.
    held: RefCell<Option<(u64, sled::IVec)>>,
}

impl<'a> StoreHashes<'a> {
    pub(super) fn new(sh: &'a Shared) -> Self {
        StoreHashes {
            sh,
            held: RefCell::new(None),
        }
    }
}

impl HashSource for StoreHashes<'_> {
    type Error = StoreError;

    fn leaf(&self, index: u64) -> Result<Hash, StoreError> {
        let seq = index + 1;
        let mut held = self.held.borrow_mut();
        match self.sh.body_near(seq, &mut held)? {
            Some((frame, i)) => prepare::leaf_of_slot(seq, frame.body(i)),
            None => Err(StoreError::Corrupt(format!(
                "event {seq:016x}, a leaf of the Merkle log, is missing"
            ))),
        }
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        if !kept(id) {
            return Ok(None);
        }
        read_node(&self.sh.log, id)
    }
}

/// Leaf hashes of whole 256-event subtrees, computed once for many proofs (an export proves
/// neighbouring events against one tree): a few subtrees are kept, each 8 KiB.
pub struct Prover<'a> {
    hashes: StoreHashes<'a>,
    size: u64,
    blocks: RefCell<Vec<(u64, Vec<Hash>)>>,
}

/// Subtrees of leaf hashes a prover keeps.
const PROVER_BLOCKS: usize = 16;

impl Prover<'_> {
    /// The tree size proofs are made against.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The inclusion proof of event `seq` in the prover's tree.
    pub fn inclusion(&self, seq: u64) -> Result<Vec<Hash>, ProofRequestError> {
        if seq == 0 || seq > self.size {
            return Err(ProofRequestError::Invalid(format!(
                "event {seq:016x} is not in the tree of {} events",
                self.size
            )));
        }
        Ok(proof::inclusion_proof(self, seq - 1, self.size)?)
    }
}

impl HashSource for Prover<'_> {
    type Error = StoreError;

    fn leaf(&self, index: u64) -> Result<Hash, StoreError> {
        let block = index >> KEPT_LEVEL;
        let at = (index & ((1 << KEPT_LEVEL) - 1)) as usize;
        let mut blocks = self.blocks.borrow_mut();
        if let Some((_, leaves)) = blocks.iter().find(|(b, _)| *b == block) {
            if let Some(h) = leaves.get(at) {
                return Ok(*h);
            }
        }
        // the whole subtree's leaves below the tree size, in one pass over its events
        let first = block << KEPT_LEVEL;
        let end = (first + (1 << KEPT_LEVEL)).min(self.size);
        let leaves = (first..end)
            .map(|i| self.hashes.leaf(i))
            .collect::<Result<Vec<_>, _>>()?;
        let hash = leaves.get(at).copied().ok_or_else(|| {
            StoreError::Corrupt(format!("leaf {index} is past the tree of {}", self.size))
        })?;
        if blocks.len() == PROVER_BLOCKS {
            blocks.remove(0);
        }
        blocks.push((block, leaves));
        Ok(hash)
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        self.hashes.node(id)
    }
}

pub(super) fn read_node(log: &sled::Tree, id: NodeId) -> Result<Option<Hash>, StoreError> {
    match log.get(keys::node_key(id.level, id.index))? {
        None => Ok(None),
        Some(v) => Hash::try_from(v.as_ref()).map(Some).map_err(|_| {
            StoreError::Corrupt(format!(
                "Merkle node ({}, {}) has {} bytes, want 32",
                id.level,
                id.index,
                v.len()
            ))
        }),
    }
}

/// The `frontier` meta value of a tree: its size, then its frontier hashes below the kept level
/// (the last ones, one per set bit of `size % 256`).
pub(super) fn lower_frontier(tree: &CompactTree) -> Vec<u8> {
    let below = (tree.size() & ((1 << KEPT_LEVEL) - 1)).count_ones() as usize;
    let frontier = tree.frontier();
    let mut value = Vec::with_capacity(8 + 32 * below);
    value.extend_from_slice(&tree.size().to_be_bytes());
    for hash in &frontier[frontier.len() - below..] {
        value.extend_from_slice(hash);
    }
    value
}

/// The tree from the kept nodes and the stored lower frontier, without reading an event;
/// `None` when they do not describe a tree of `size` (a store from before the frontier was kept).
fn stored_tree(sh: &Shared, size: u64) -> Result<Option<CompactTree>, StoreError> {
    let Some(value) = sh.log.get(keys::meta_key(keys::META_FRONTIER))? else {
        return Ok(None);
    };
    if value.len() < 8 || keys::decode_u64(&value) != size || (value.len() - 8) % 32 != 0 {
        return Ok(None);
    }
    let mut lower = value[8..].chunks_exact(32);
    let mut frontier = Vec::new();
    for id in frontier_ids(size) {
        let hash = if kept(id) {
            read_node(&sh.log, id)?
        } else {
            lower.next().and_then(|h| Hash::try_from(h).ok())
        };
        match hash {
            Some(h) => frontier.push(h),
            None => return Ok(None),
        }
    }
    if lower.next().is_some() {
        return Ok(None);
    }
    Ok(CompactTree::from_frontier(size, frontier).ok())
}

/// The tree over the first `size` events at open: its frontier read from the kept nodes and the
/// stored lower frontier, else computed from the last partial subtree's events. A store written
/// before the nodes were kept gets them first.
pub(super) fn open_tree(sh: &Shared, size: u64) -> Result<CompactTree, StoreError> {
    if sh.log.get(keys::meta_key(keys::META_TREE))?.is_none() {
        return build_nodes(sh, size);
    }
    if let Some(tree) = stored_tree(sh, size)? {
        return Ok(tree);
    }
    let source = StoreHashes::new(sh);
    let frontier = frontier_ids(size)
        .map(|id| proof::subtree_hash(&source, id))
        .collect::<Result<Vec<_>, _>>()?;
    CompactTree::from_frontier(size, frontier).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes the kept nodes of a log that has none (written before this version), reading every
/// event once; marks the log as keeping them. Interrupted, it starts over on the next open.
fn build_nodes(sh: &Shared, size: u64) -> Result<CompactTree, StoreError> {
    let started = std::time::Instant::now();
    if size > 0 {
        tracing::info!(
            events = size,
            "building the Merkle log over the stored events"
        );
    }
    let source = StoreHashes::new(sh);
    let mut tree = CompactTree::new();
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    for index in 0..size {
        let leaf = source.leaf(index)?;
        tree.push_with(leaf, |id, hash| {
            if kept(id) {
                batch.insert(&keys::node_key(id.level, id.index)[..], &hash[..]);
                pending += 1;
            }
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if pending >= 4096 {
            sh.log.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    batch.insert(keys::meta_key(keys::META_TREE), &[1u8][..]);
    batch.insert(keys::meta_key(keys::META_FRONTIER), lower_frontier(&tree));
    sh.log.apply_batch(batch)?;
    sh.db.flush()?;
    if size > 0 {
        tracing::info!(
            events = size,
            seconds = started.elapsed().as_secs_f64(),
            "Merkle log built"
        );
    }
    Ok(tree)
}

impl Store {
    /// The tree over every event applied so far (not necessarily flushed yet).
    pub fn tree_head(&self) -> TreeHead {
        match self.shared().tree_head.read() {
            Ok(h) => *h,
            Err(p) => *p.into_inner(),
        }
    }

    /// The tree over every applied event, made durable first: what a checkpoint may sign, since
    /// a crash cannot take any of it back. The flush is the writer's own (an empty durable job
    /// behind every batch applied before the head was read), not one more flush beside it.
    pub async fn durable_tree_head(&self) -> Result<TreeHead, StoreError> {
        let head = self.tree_head();
        self.sync().await?;
        Ok(head)
    }

    /// The same for a tool with the store to itself (a stopped hub's data dir): the head, then a
    /// flush of the database from the caller's thread.
    pub fn flushed_tree_head(&self) -> Result<TreeHead, StoreError> {
        let head = self.tree_head();
        self.shared().db.flush()?;
        Ok(head)
    }

    /// Waits until everything written to the store before the call is on disk (whatever tree it
    /// went to), through the group commit.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.append(
            Vec::new(),
            super::Commit {
                cursor: None,
                durable: true,
                filtered: None,
            },
        )
        .await
        .map(|_| ())
    }

    fn check_size(&self, size: u64) -> Result<(), ProofRequestError> {
        let have = self.shared().stats.last_seq.load(Ordering::Acquire);
        if size > have {
            return Err(ProofRequestError::PastEnd { asked: size, have });
        }
        Ok(())
    }

    /// The leaf hash of event `seq`.
    pub fn leaf_hash(&self, seq: u64) -> Result<Hash, ProofRequestError> {
        if seq == 0 {
            return Err(ProofRequestError::Invalid(
                "event sequence 0 does not exist".into(),
            ));
        }
        self.check_size(seq)?;
        Ok(StoreHashes::new(self.shared()).leaf(seq - 1)?)
    }

    /// The root of the tree over the first `size` events.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofRequestError> {
        self.check_size(size)?;
        Ok(proof::root_at(&StoreHashes::new(self.shared()), size)?)
    }

    /// The inclusion proof of event `seq` in the tree of the first `size` events.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, ProofRequestError> {
        if seq == 0 {
            return Err(ProofRequestError::Invalid(
                "event sequence 0 does not exist".into(),
            ));
        }
        self.check_size(size)?;
        Ok(proof::inclusion_proof(
            &StoreHashes::new(self.shared()),
            seq - 1,
            size,
        )?)
    }

    /// A prover of inclusion in the tree of the first `size` events, for many proofs at once.
    pub fn prover(&self, size: u64) -> Result<Prover<'_>, ProofRequestError> {
        self.check_size(size)?;
        Ok(Prover {
            hashes: StoreHashes::new(self.shared()),
            size,
            blocks: RefCell::new(Vec::new()),
        })
    }

    /// The consistency proof from the tree of `from` events to the tree of `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofRequestError> {
        self.check_size(to)?;
        Ok(proof::consistency_proof(
            &StoreHashes::new(self.shared()),
            from,
            to,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::merkle::{leaf_hash, verify_consistency, verify_inclusion};
    use crate::evidence::proof::MemoryTree;
    use crate::store::verify::TreeClaim;
    use crate::store::{Commit, StoreOptions};

    fn options() -> StoreOptions {
        StoreOptions::new(16 << 20, 0)
    }

    fn events(from: usize, n: usize) -> Vec<super::super::PreparedEvent> {
        let integration = crate::ingest::custom_integration();
        (from..from + n)
            .map(|i| {
                let line = format!(
                    r#"{{"time":"2024-05-01T10:00:00Z","source_id":"s{i}","event_type":"user.login","action":"login","category":"authentication","outcome":"success","actor":{{"id":"u{}"}}}}"#,
                    i % 7
                );
                let event = crate::schema::parse_ingest_line_fast(&line, &integration, 0)
                    .expect("the line parses");
                super::super::prepare(&event)
            })
            .collect()
    }

    async fn append(store: &Store, from: usize, n: usize) {
        let outcome = store
            .append(
                events(from, n),
                Commit {
                    cursor: None,
                    durable: true,
                    filtered: None,
                },
            )
            .await
            .expect("append");
        assert_eq!(outcome.stored.len(), n);
    }

    /// The tree an outsider builds from the events' JSON as the API serves it.
    fn outside_tree(store: &Store) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for seq in 1..=store.event_count() {
            let json = store.event_json(seq).expect("read").expect("stored");
            tree.push(leaf_hash(&json)).expect("push");
        }
        tree
    }

    #[tokio::test]
    async fn the_log_is_the_merkle_tree_of_the_served_json_and_its_proofs_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let store = Store::open(&path, &options()).expect("open");
        assert_eq!(store.tree_head().size, 0);
        // sizes that cross the kept level (256) inside and between batches
        let mut sizes = Vec::new();
        let mut from = 0;
        for n in [1, 5, 250, 300, 1, 600] {
            append(&store, from, n).await;
            from += n;
            sizes.push(from as u64);
        }
        let outside = outside_tree(&store);
        let head = store.durable_tree_head().await.expect("head");
        assert_eq!(head.size, 1157);
        assert_eq!(head.root, outside.root());
        for &size in &sizes {
            let root = store.root_at(size).expect("root");
            for seq in [1, size / 2 + 1, size] {
                let proof = store.inclusion_proof(seq, size).expect("proof");
                let leaf = store.leaf_hash(seq).expect("leaf");
                verify_inclusion(&leaf, seq - 1, size, &proof, &root).expect("inclusion");
            }
            let proof = store
                .consistency_proof(size, head.size)
                .expect("consistency");
            verify_consistency(size, &root, head.size, &head.root, &proof).expect("consistency");
        }
        let prover = store.prover(head.size).expect("prover");
        for seq in (1..=head.size).rev().step_by(37) {
            assert_eq!(
                prover.inclusion(seq).expect("proof"),
                store.inclusion_proof(seq, head.size).expect("proof"),
                "{seq}"
            );
        }
        assert!(prover.inclusion(head.size + 1).is_err());
        assert!(matches!(
            store.inclusion_proof(5, head.size + 1),
            Err(ProofRequestError::PastEnd { .. })
        ));
        assert!(matches!(
            store.consistency_proof(10, 5),
            Err(ProofRequestError::Invalid(_))
        ));
        store.shutdown().expect("shutdown");
        drop(store);

        // reopened: the frontier comes back from the kept nodes and the last events
        let store = Store::open(&path, &options()).expect("reopen");
        assert_eq!(store.tree_head(), head);
        append(&store, from, 3).await;
        let head = store.tree_head();
        assert_eq!(head.root, outside_tree(&store).root());
        store.shutdown().expect("shutdown");
        drop(store);

        // without the stored lower frontier: computed from the last partial subtree's events
        {
            let db = super::super::open_db(&path, 16 << 20).expect("db");
            let log = db.open_tree(keys::TREE_LOG).expect("log");
            log.remove(keys::meta_key(keys::META_FRONTIER))
                .expect("remove");
            db.flush().expect("flush");
        }
        let store = Store::open(&path, &options()).expect("reopen");
        assert_eq!(store.tree_head(), head);
        store.shutdown().expect("shutdown");
    }

    #[tokio::test]
    async fn a_log_written_before_the_nodes_were_kept_builds_them_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let store = Store::open(&path, &options()).expect("open");
        append(&store, 0, 700).await;
        let head = store.tree_head();
        store.shutdown().expect("shutdown");
        drop(store);
        {
            // as the previous version left it: no nodes, no marker
            let db = super::super::open_db(&path, 16 << 20).expect("db");
            let log = db.open_tree(keys::TREE_LOG).expect("log");
            let nodes: Vec<_> = log
                .scan_prefix([keys::TREE_NODE])
                .keys()
                .collect::<Result<_, _>>()
                .expect("scan");
            assert_eq!(nodes.len(), 3, "nodes over 1..256, 257..512 and 1..512");
            for k in nodes {
                log.remove(k).expect("remove");
            }
            log.remove(keys::meta_key(keys::META_TREE)).expect("remove");
            db.flush().expect("flush");
        }
        let store = Store::open(&path, &options()).expect("reopen");
        assert_eq!(store.tree_head(), head);
        let report = store.verify().expect("verify");
        assert!(report.ok, "{report:?}");
        store.shutdown().expect("shutdown");
    }

    #[tokio::test]
    async fn verify_checks_kept_nodes_and_the_roots_checkpoints_vouch_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let store = Store::open(&path, &options()).expect("open");
        append(&store, 0, 600).await;
        let at_300 = TreeClaim {
            size: 300,
            root: store.root_at(300).expect("root"),
            source: "checkpoint 300".into(),
        };
        let now = TreeClaim {
            size: 600,
            root: store.tree_head().root,
            source: "checkpoint 600".into(),
        };
        let empty = TreeClaim {
            size: 0,
            root: crate::evidence::merkle::empty_root(),
            source: "checkpoint 0".into(),
        };
        let report = store
            .verify_against(&[now.clone(), empty, at_300.clone()])
            .expect("verify");
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checkpoints_checked, 3);
        assert_eq!(report.tree_size, 600);

        let wrong = TreeClaim {
            root: [7; 32],
            ..at_300.clone()
        };
        let report = store.verify_against(&[wrong]).expect("verify");
        let broken = report.first_broken.expect("broken");
        assert_eq!(broken.seq, 300);
        assert!(broken.reason.contains("rewritten"), "{}", broken.reason);

        let later = TreeClaim {
            size: 650,
            ..now.clone()
        };
        let report = store.verify_against(&[at_300, later]).expect("verify");
        let broken = report.first_broken.expect("broken");
        assert!(broken.reason.contains("were removed"), "{}", broken.reason);
        assert_eq!(report.checkpoints_checked, 1);

        // a kept node altered: named by the event that completes it
        store
            .shared()
            .log
            .insert(keys::node_key(8, 1), &[0u8; 32][..])
            .expect("tamper");
        let report = store.verify().expect("verify");
        let broken = report.first_broken.expect("broken");
        assert_eq!(broken.seq, 512, "{broken:?}");
        assert!(broken.reason.contains("Merkle node"), "{}", broken.reason);
        store.shutdown().expect("shutdown");
    }

    #[test]
    fn the_id_prefix_is_the_json_the_api_serves() {
        for seq in [0u64, 1, 0xabc, u64::MAX] {
            let json = prepare::full_json(seq, b"\"x\":1}");
            assert_eq!(
                json,
                format!("{{\"id\":\"{seq:016x}\",\"x\":1}}").into_bytes()
            );
            assert_eq!(prepare::leaf_hash_of(seq, b"\"x\":1}"), leaf_hash(&json));
        }
    }
}
