//! RFC 9162 Merkle tree hashing, the append-only tree the log keeps in memory, and the
//! verification of inclusion and consistency proofs.
//!
//! Every stored event becomes a leaf; a signed checkpoint commits to the root. To append and
//! to know the root, the log needs only the roots of the perfect subtrees that make up the
//! tree so far (its frontier: one per set bit of the size, so at most 64 hashes), not the
//! leaves. Proof generation, which does need stored hashes, is in `proof.rs`; verification,
//! which anyone holding a checkpoint runs, is here and follows RFC 9162 section 2.1.3.2 and
//! 2.1.4.2 step by step.

use sha2::{Digest, Sha256};

/// Bytes in a SHA-256 hash.
pub const HASH_LEN: usize = 32;

/// A leaf, node or root hash.
pub type Hash = [u8; HASH_LEN];

/// The root of the empty tree: SHA-256 of no bytes (RFC 9162 section 2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of one leaf: SHA-256(0x00 || data). The prefix keeps a leaf from passing for a node.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A perfect subtree: at `level` 0 the leaf `index`; at level `l` the node over the leaves
/// `index << l .. (index + 1) << l`. The store keys the hashes it keeps by this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

impl NodeId {
    pub fn new(level: u32, index: u64) -> Self {
        NodeId { level, index }
    }

    /// The first leaf under this node, if it fits in a u64.
    pub fn first_leaf(&self) -> Option<u64> {
        self.index
            .checked_shl(self.level)
            .filter(|f| f >> self.level == self.index)
    }
}

/// Why a tree could not be built or grown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("a tree of {size} leaves has {expected} frontier hashes, not {got}")]
    FrontierLength {
        size: u64,
        expected: usize,
        got: usize,
    },
    #[error("the tree is full: it cannot hold more than u64::MAX leaves")]
    Full,
}

/// The perfect subtrees that make up a tree of `size` leaves, left (largest) to right: one per
/// set bit of `size`. A store that keeps these nodes can rebuild a [`CompactTree`] in
/// O(log n) reads on start-up.
pub fn frontier_ids(size: u64) -> impl Iterator<Item = NodeId> {
    let mut offset = 0u64;
    (0..u64::BITS).rev().filter_map(move |level| {
        if size >> level & 1 == 0 {
            return None;
        }
        let id = NodeId::new(level, offset >> level);
        offset += 1 << level;
        Some(id)
    })
}

/// The append-only tree in O(log n) memory: its size and the roots of its frontier, the
/// perfect subtrees of [`frontier_ids`]. Appending is amortised O(1) hashes; the root is
/// O(log n) hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    frontier: Vec<Hash>,
}

impl CompactTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree restored from its size and frontier hashes (in [`frontier_ids`] order), as kept
    /// by a store. The hashes are not checked against anything: that is what the next signed
    /// checkpoint's root is compared with.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Result<Self, TreeError> {
        let expected = size.count_ones() as usize;
        if frontier.len() != expected {
            return Err(TreeError::FrontierLength {
                size,
                expected,
                got: frontier.len(),
            });
        }
        Ok(CompactTree { size, frontier })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, in [`frontier_ids`]`(self.size())` order.
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }

    /// Appends a leaf hash and returns its index.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, TreeError> {
        self.push_with(leaf, |_, _| {})
    }

    /// Appends a leaf hash and returns its index; `completed` sees every perfect subtree that
    /// this leaf completes, the leaf itself first and then upwards, so that a store can keep
    /// the ones it wants for proofs.
    pub fn push_with(
        &mut self,
        leaf: Hash,
        mut completed: impl FnMut(NodeId, &Hash),
    ) -> Result<u64, TreeError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(TreeError::Full)?;
        completed(NodeId::new(0, index), &leaf);
        // each trailing one bit of the old size is a frontier node that now has its right half
        let mut hash = leaf;
        let mut level = 0;
        while index >> level & 1 == 1 {
            let Some(left) = self.frontier.pop() else {
                // count_ones(size) == frontier.len() is kept by every constructor and push
                unreachable!("frontier shorter than the set bits of the size");
            };
            hash = node_hash(&left, &hash);
            level += 1;
            completed(NodeId::new(level, index >> level), &hash);
        }
        self.frontier.push(hash);
        self.size = new_size;
        Ok(index)
    }

    /// The root hash: the frontier folded from the right (RFC 9162 MTH, whose left subtree is
    /// always the largest perfect one).
    pub fn root(&self) -> Hash {
        let mut nodes = self.frontier.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// Why a proof did not verify. Any of these means: do not trust the claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size1} is larger than tree size {size2}")]
    SizesOutOfOrder { size1: u64, size2: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the given root hash")]
    RootMismatch,
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`, by
/// the inclusion `proof` (RFC 9162 section 2.1.3.2, step by step).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    // 1.
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    // 2. and 3.
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    // 4.
    for p in proof {
        // 4a.
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        // 4b.
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        // 4c.
        f >>= 1;
        s >>= 1;
    }
    // 5.
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree of `size1` leaves
/// with root `root1`, by the consistency `proof` (RFC 9162 section 2.1.4.2, step by step).
///
/// Two cases the RFC's steps leave out have an empty proof: equal sizes (the roots must be
/// equal) and `size1` 0 (`root1` must be the empty root; every tree extends it).
pub fn verify_consistency(
    size1: u64,
    root1: &Hash,
    size2: u64,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if size1 > size2 {
        return Err(VerifyError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == size2 || size1 == 0 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        let expected = if size1 == 0 { empty_root() } else { *root2 };
        return if *root1 == expected {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    // 1.
    if proof.is_empty() {
        return Err(VerifyError::WrongLength);
    }
    // 2. a power-of-two first tree is a node of the second: its root starts the path
    let prepended = size1.is_power_of_two().then_some(root1);
    let mut path = prepended.into_iter().chain(proof);
    // 3.
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    // 4.
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // 5.
    let Some(first) = path.next() else {
        return Err(VerifyError::WrongLength);
    };
    let (mut fr, mut sr) = (*first, *first);
    // 6.
    for c in path {
        // 6a.
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        // 6b.
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        // 6c.
        f >>= 1;
        s >>= 1;
    }
    // 7.
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if fr != *root1 || sr != *root2 {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::vectors::{ct_leaves, h, CT_ROOTS};
    use super::*;

    #[test]
    fn hashes_carry_the_rfc_prefixes() {
        assert_eq!(empty_root(), h(CT_ROOTS[0]));
        assert_eq!(leaf_hash(b""), h(CT_ROOTS[1]));
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut pre = vec![0x01];
        pre.extend_from_slice(&a);
        pre.extend_from_slice(&b);
        assert_eq!(node_hash(&a, &b), <Hash>::from(Sha256::digest(&pre)));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn the_compact_tree_gives_the_published_roots() {
        let mut tree = CompactTree::new();
        assert_eq!(tree.root(), h(CT_ROOTS[0]));
        for (i, leaf) in ct_leaves().into_iter().enumerate() {
            assert_eq!(tree.push(leaf), Ok(i as u64));
            assert_eq!(tree.size(), i as u64 + 1);
            assert_eq!(tree.root(), h(CT_ROOTS[i + 1]), "size {}", i + 1);
        }
    }

    /// A root computed another way: pair neighbours level by level, carrying an odd last node
    /// up unchanged. This is the same tree as RFC 9162's split at the largest power of two.
    fn root_by_levels(mut level: Vec<Hash>) -> Hash {
        if level.is_empty() {
            return empty_root();
        }
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|c| {
                    if c.len() == 2 {
                        node_hash(&c[0], &c[1])
                    } else {
                        c[0]
                    }
                })
                .collect();
        }
        level[0]
    }

    #[test]
    fn push_reports_every_completed_node_and_the_frontier_matches_its_ids() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut tree = CompactTree::new();
        let mut nodes = std::collections::BTreeMap::new();
        for (i, leaf) in leaves.iter().enumerate() {
            tree.push_with(*leaf, |id, hash| {
                assert!(nodes.insert(id, *hash).is_none(), "{id:?} reported twice");
            })
            .expect("room");
            let size = i as u64 + 1;
            assert_eq!(tree.root(), root_by_levels(leaves[..=i].to_vec()));
            // every frontier node was reported with the hash the frontier holds
            let ids: Vec<NodeId> = frontier_ids(size).collect();
            assert_eq!(ids.len(), tree.frontier().len());
            for (id, hash) in ids.iter().zip(tree.frontier()) {
                assert_eq!(nodes.get(id), Some(hash), "size {size} {id:?}");
            }
            let restored = CompactTree::from_frontier(size, tree.frontier().to_vec());
            assert_eq!(restored.as_ref().map(|t| t.root()), Ok(tree.root()));
        }
        // every reported node is the root of the leaves under it
        for (id, hash) in &nodes {
            let first = id.first_leaf().expect("small") as usize;
            let under = leaves[first..first + (1 << id.level)].to_vec();
            assert_eq!(root_by_levels(under), *hash, "{id:?}");
        }
        // all complete nodes of 300 leaves: 300 + 150 + 75 + 37 + 18 + 9 + 4 + 2 + 1
        assert_eq!(nodes.len(), 596);
    }

    #[test]
    fn a_frontier_of_the_wrong_length_is_refused() {
        let err = CompactTree::from_frontier(5, vec![[0; 32]; 3]);
        assert_eq!(
            err,
            Err(TreeError::FrontierLength {
                size: 5,
                expected: 2,
                got: 3
            })
        );
        assert!(CompactTree::from_frontier(0, vec![]).is_ok());
        let full = CompactTree::from_frontier(u64::MAX, vec![[0; 32]; 64]);
        assert_eq!(full.expect("64 nodes").push([1; 32]), Err(TreeError::Full));
    }

    #[test]
    fn frontier_ids_cover_the_leaves_in_order() {
        for size in [0u64, 1, 2, 3, 7, 8, 13, 1000, u64::MAX] {
            let mut next = 0u64;
            for id in frontier_ids(size) {
                assert_eq!(id.first_leaf(), Some(next), "size {size}");
                next = next.wrapping_add(1 << id.level);
            }
            assert_eq!(next, size, "size {size}");
        }
        assert_eq!(NodeId::new(1, u64::MAX).first_leaf(), None);
    }

    #[test]
    fn trivial_and_out_of_range_cases() {
        let (e, r) = (empty_root(), h(CT_ROOTS[8]));
        let r4 = h(CT_ROOTS[4]);
        assert_eq!(verify_consistency(0, &e, 8, &r, &[]), Ok(()));
        assert_eq!(verify_consistency(0, &e, 0, &e, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, &r4, 8, &r, &[]),
            Err(VerifyError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(0, &e, 8, &r, &[e]),
            Err(VerifyError::WrongLength)
        );
        assert_eq!(verify_consistency(8, &r, 8, &r, &[]), Ok(()));
        assert_eq!(
            verify_consistency(8, &r, 8, &r4, &[]),
            Err(VerifyError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(8, &r, 8, &r, &[r]),
            Err(VerifyError::WrongLength)
        );
        assert_eq!(
            verify_consistency(4, &r4, 8, &r, &[]),
            Err(VerifyError::WrongLength)
        );
        assert_eq!(
            verify_consistency(8, &r, 4, &r4, &[r]),
            Err(VerifyError::SizesOutOfOrder { size1: 8, size2: 4 })
        );
        let leaf = leaf_hash(b"x");
        assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &leaf), Ok(()));
        assert_eq!(
            verify_inclusion(&leaf, 1, 1, &[], &leaf),
            Err(VerifyError::IndexOutOfRange { index: 1, size: 1 })
        );
        assert_eq!(
            verify_inclusion(&leaf, 0, 1, &[leaf], &leaf),
            Err(VerifyError::WrongLength)
        );
        assert_eq!(
            verify_inclusion(&leaf, u64::MAX - 1, u64::MAX, &[], &leaf),
            Err(VerifyError::WrongLength)
        );
    }

    /// Not a timed assertion: prints how long 1,000,000 appends take, and checks the root.
    #[test]
    fn a_million_appends() {
        let leaves: Vec<Hash> = (0u64..1_000_000)
            .map(|i| leaf_hash(&i.to_le_bytes()))
            .collect();
        let mut tree = CompactTree::new();
        let start = std::time::Instant::now();
        for leaf in &leaves {
            tree.push(*leaf).expect("room");
        }
        let root = tree.root();
        let took = start.elapsed();
        eprintln!("evidence: 1,000,000 appends and a root in {took:?}");
        assert_eq!(tree.size(), 1_000_000);
        assert_eq!(tree.frontier().len(), 1_000_000u64.count_ones() as usize);
        assert_eq!(root, root_by_levels(leaves));
    }
}
