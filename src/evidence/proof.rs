//! Inclusion and consistency proofs (RFC 9162 section 2.1.3.1 and 2.1.4.1), built from the
//! hashes a store keeps rather than from all the leaves.
//!
//! Every hash in a proof is the root of a range of leaves, and each range is a handful of
//! perfect subtrees, so a store that keeps perfect-subtree hashes answers a proof in O(log n)
//! reads. [`HashSource`] is how it hands them over: it must give every leaf hash, and may give
//! any node it kept (all of them, or only some levels, trading reads for space); a node it did
//! not keep is computed from its two children.

use super::merkle::{empty_root, node_hash, CompactTree, Hash, NodeId, TreeError};

/// Where proofs read the tree's hashes. Only nodes of leaves below the tree size asked about
/// are read.
pub trait HashSource {
    type Error;
    /// The hash of leaf `index`.
    fn leaf(&self, index: u64) -> Result<Hash, Self::Error>;
    /// The hash of the perfect subtree `id` (level 1 and up) if it was kept; `None` has it
    /// computed from its children, at up to twice the reads per level left out.
    fn node(&self, id: NodeId) -> Result<Option<Hash>, Self::Error>;
}

/// Why a proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size1} is larger than tree size {size2}")]
    SizesOutOfOrder { size1: u64, size2: u64 },
    #[error("reading the tree's hashes: {0}")]
    Source(E),
}

impl<E> From<E> for ProofError<E> {
    fn from(e: E) -> Self {
        ProofError::Source(e)
    }
}

/// The hash of the perfect subtree `id`: kept by the source, or computed from its children.
pub fn subtree_hash<S: HashSource + ?Sized>(src: &S, id: NodeId) -> Result<Hash, S::Error> {
    if id.level == 0 {
        return src.leaf(id.index);
    }
    if let Some(hash) = src.node(id)? {
        return Ok(hash);
    }
    // the ids come from ranges inside a u64 size, so the children's indexes fit
    let left = subtree_hash(src, NodeId::new(id.level - 1, id.index << 1))?;
    let right = subtree_hash(src, NodeId::new(id.level - 1, (id.index << 1) | 1))?;
    Ok(node_hash(&left, &right))
}

/// RFC 9162's split of `n` >= 2 leaves: the largest power of two smaller than `n`.
fn split(n: u64) -> u64 {
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[lo:hi]) for lo < hi. The ranges proofs ask for start at a multiple of their largest
/// power of two, so their left parts are kept nodes; any other range is still computed right.
fn range_hash<S: HashSource + ?Sized>(src: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    if n.is_power_of_two() && lo % n == 0 {
        return subtree_hash(src, NodeId::new(n.trailing_zeros(), lo / n));
    }
    let k = split(n);
    let left = range_hash(src, lo, lo + k)?;
    let right = range_hash(src, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree's first `size` leaves: for signing a checkpoint at an older size, or
/// checking the store's hashes against the [`CompactTree`].
pub fn root_at<S: HashSource + ?Sized>(src: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 PATH), leaf
/// end first, as [`super::merkle::verify_inclusion`] reads it.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // PATH(m, D[lo:hi]) walked from the root down; the RFC lists it from the leaf up
    let (mut lo, mut hi) = (0, size);
    let mut proof = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof from the tree of `size1` leaves to the tree of `size2` (RFC 9162
/// PROOF), as [`super::merkle::verify_consistency`] reads it; empty when the sizes are equal
/// or `size1` is 0.
pub fn consistency_proof<S: HashSource + ?Sized>(
    src: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 || size1 == size2 {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], b) walked from the root down, m being size1 - lo
    let (mut lo, mut hi, mut whole) = (0, size2, true);
    let mut proof = Vec::new();
    loop {
        if size1 == hi {
            // the old tree's root is a node here; the verifier knows it unless it is partial
            if !whole {
                proof.push(range_hash(src, lo, hi)?);
            }
            break;
        }
        let k = split(hi - lo);
        if size1 <= lo + k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            lo += k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// A hash the source does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no hash is kept for leaf {}", .0.index)]
pub struct MissingLeaf(pub NodeId);

/// A tree that keeps every leaf and every complete node in memory: for tests, and as the
/// model a store's [`HashSource`] must agree with.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    tree: CompactTree,
    /// `levels[l][i]` is node (l, i); level 0 holds the leaves
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash and returns its index.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, TreeError> {
        let levels = &mut self.levels;
        self.tree.push_with(leaf, |id, hash| {
            // nodes of a level complete in index order
            let level = id.level as usize;
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            levels[level].push(*hash);
        })
    }

    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    pub fn root(&self) -> Hash {
        self.tree.root()
    }
}

impl HashSource for MemoryTree {
    type Error = MissingLeaf;

    fn leaf(&self, index: u64) -> Result<Hash, MissingLeaf> {
        let at = usize::try_from(index).ok();
        let leaf = self.levels.first().zip(at).and_then(|(l, i)| l.get(i));
        leaf.copied().ok_or(MissingLeaf(NodeId::new(0, index)))
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, MissingLeaf> {
        let level = self.levels.get(id.level as usize);
        let at = usize::try_from(id.index).ok();
        Ok(level.zip(at).and_then(|(l, i)| l.get(i)).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::super::merkle::{leaf_hash, verify_consistency, verify_inclusion, VerifyError};
    use super::super::vectors::{ct_leaves, h, CT_CONSISTENCY, CT_INCLUSION, CT_ROOTS};
    use super::*;
    use std::cell::Cell;

    // RFC 9162 section 2.1.1-2.1.4 written as the recursions they are, over all the leaves.
    fn ref_mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
            }
        }
    }

    fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = split(d.len() as u64) as usize;
        if m < k {
            let mut p = ref_path(m, &d[..k]);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_path(m - k, &d[k..]);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { Vec::new() } else { vec![ref_mth(d)] };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut p = ref_subproof(m, &d[..k], b);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_subproof(m - k, &d[k..], false);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("event {i}").as_bytes()))
            .collect()
    }

    fn memory_tree(leaves: &[Hash]) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf in leaves {
            tree.push(*leaf).expect("room");
        }
        tree
    }

    fn flipped(hashes: &[Hash], at: usize, byte: usize) -> Vec<Hash> {
        let mut out = hashes.to_vec();
        out[at][byte] ^= 0x01;
        out
    }

    fn flip(hash: &Hash, byte: usize) -> Hash {
        let mut out = *hash;
        out[byte] ^= 0x80;
        out
    }

    #[test]
    fn published_proofs_are_made_and_verify() {
        let tree = memory_tree(&ct_leaves());
        for n in 0..=8 {
            assert_eq!(root_at(&tree, n), Ok(h(CT_ROOTS[n as usize])), "size {n}");
        }
        for (index, size, want) in CT_INCLUSION {
            let want: Vec<Hash> = want.iter().map(|p| h(p)).collect();
            assert_eq!(inclusion_proof(&tree, index, size), Ok(want.clone()));
            let leaf = ct_leaves()[index as usize];
            let root = h(CT_ROOTS[size as usize]);
            assert_eq!(verify_inclusion(&leaf, index, size, &want, &root), Ok(()));
        }
        for (size1, size2, want) in CT_CONSISTENCY {
            let want: Vec<Hash> = want.iter().map(|p| h(p)).collect();
            assert_eq!(consistency_proof(&tree, size1, size2), Ok(want.clone()));
            let (r1, r2) = (h(CT_ROOTS[size1 as usize]), h(CT_ROOTS[size2 as usize]));
            assert_eq!(verify_consistency(size1, &r1, size2, &r2, &want), Ok(()));
        }
    }

    #[test]
    fn every_inclusion_proof_up_to_64_leaves_matches_the_rfc_and_resists_tampering() {
        // 128 leaves so that the same proof can be tried on larger trees, with their roots
        let d = leaves(128);
        let tree = memory_tree(&d);
        let roots: Vec<Hash> = (0..=128).map(|n| ref_mth(&d[..n])).collect();
        for n in 1..=64u64 {
            let root = roots[n as usize];
            assert_eq!(root_at(&tree, n), Ok(root));
            for i in 0..n {
                let proof = inclusion_proof(&tree, i, n).expect("in range");
                assert_eq!(proof, ref_path(i as usize, &d[..n as usize]), "({i}, {n})");
                let leaf = &d[i as usize];
                assert_eq!(verify_inclusion(leaf, i, n, &proof, &root), Ok(()));
                for at in 0..proof.len() {
                    for byte in 0..32 {
                        let bad = flipped(&proof, at, byte);
                        assert!(verify_inclusion(leaf, i, n, &bad, &root).is_err());
                    }
                }
                for byte in 0..32 {
                    let (bad_leaf, bad_root) = (flip(leaf, byte), flip(&root, byte));
                    assert!(verify_inclusion(&bad_leaf, i, n, &proof, &root).is_err());
                    assert!(verify_inclusion(leaf, i, n, &proof, &bad_root).is_err());
                }
                // another leaf, or another position or size with that tree's root (a root
                // alone does not bind the size: a checkpoint signs the two together)
                let other = &d[((i + 1) % n) as usize];
                if n > 1 {
                    assert!(verify_inclusion(other, i, n, &proof, &root).is_err());
                }
                for (i2, n2) in [(i + 1, n), (i ^ 1, n), (i, n + 1), (i, n - 1), (i, 2 * n)] {
                    if (i2, n2) != (i, n) && i2 < n2 {
                        let root2 = &roots[n2 as usize];
                        let got = verify_inclusion(leaf, i2, n2, &proof, root2);
                        assert!(got.is_err(), "({i}, {n}) as ({i2}, {n2})");
                    }
                }
                // a proof cut short or padded
                if let Some((_, short)) = proof.split_last() {
                    assert!(verify_inclusion(leaf, i, n, short, &root).is_err());
                }
                let mut long = proof.clone();
                long.push(root);
                assert!(verify_inclusion(leaf, i, n, &long, &root).is_err());
            }
            assert_eq!(
                inclusion_proof(&tree, n, n),
                Err(ProofError::IndexOutOfRange { index: n, size: n })
            );
        }
    }

    #[test]
    fn every_consistency_proof_up_to_64_leaves_matches_the_rfc_and_resists_tampering() {
        let d = leaves(64);
        let tree = memory_tree(&d);
        let roots: Vec<Hash> = (0..=64).map(|n| ref_mth(&d[..n])).collect();
        for n in 0..=64u64 {
            for m in 0..=n {
                let proof = consistency_proof(&tree, m, n).expect("in order");
                let want = if m == 0 || m == n {
                    Vec::new()
                } else {
                    ref_subproof(m as usize, &d[..n as usize], true)
                };
                assert_eq!(proof, want, "({m}, {n})");
                let (r1, r2) = (&roots[m as usize], &roots[n as usize]);
                assert_eq!(verify_consistency(m, r1, n, r2, &proof), Ok(()));
                for at in 0..proof.len() {
                    for byte in 0..32 {
                        let bad = flipped(&proof, at, byte);
                        assert!(verify_consistency(m, r1, n, r2, &bad).is_err());
                    }
                }
                for byte in 0..32 {
                    let (b1, b2) = (flip(r1, byte), flip(r2, byte));
                    assert!(
                        verify_consistency(m, &b1, n, r2, &proof).is_err(),
                        "({m}, {n})"
                    );
                    if m > 0 {
                        assert!(verify_consistency(m, r1, n, &b2, &proof).is_err());
                    }
                }
                if let Some((_, short)) = proof.split_last() {
                    assert!(verify_consistency(m, r1, n, r2, short).is_err());
                }
                let mut long = proof.clone();
                long.push(*r2);
                assert!(verify_consistency(m, r1, n, r2, &long).is_err());
                // the same proof for other sizes, with those sizes' roots
                for (m2, n2) in [(m + 1, n), (m, n + 1), (m.saturating_sub(1), n)] {
                    if (m2, n2) != (m, n) && m2 <= n2 && n2 <= 64 && m2 > 0 && m2 < n2 {
                        let (q1, q2) = (&roots[m2 as usize], &roots[n2 as usize]);
                        assert!(verify_consistency(m2, q1, n2, q2, &proof).is_err());
                    }
                }
            }
        }
        assert_eq!(
            consistency_proof(&tree, 5, 4),
            Err(ProofError::SizesOutOfOrder { size1: 5, size2: 4 })
        );
        assert_eq!(
            verify_consistency(5, &roots[5], 4, &roots[4], &[]),
            Err(VerifyError::SizesOutOfOrder { size1: 5, size2: 4 })
        );
    }

    /// Counts reads, and keeps nodes of only the levels `keep` allows.
    struct Counting<'a> {
        tree: &'a MemoryTree,
        keep: fn(u32) -> bool,
        reads: Cell<usize>,
    }

    impl HashSource for Counting<'_> {
        type Error = MissingLeaf;
        fn leaf(&self, index: u64) -> Result<Hash, MissingLeaf> {
            self.reads.set(self.reads.get() + 1);
            self.tree.leaf(index)
        }
        fn node(&self, id: NodeId) -> Result<Option<Hash>, MissingLeaf> {
            self.reads.set(self.reads.get() + 1);
            if (self.keep)(id.level) {
                self.tree.node(id)
            } else {
                Ok(None)
            }
        }
    }

    #[test]
    fn proofs_take_logarithmic_reads_and_any_kept_levels_give_the_same_proofs() {
        let n = 100_003u64;
        let tree = memory_tree(&leaves(n));
        let all = Counting {
            tree: &tree,
            keep: |_| true,
            reads: Cell::new(0),
        };
        let every_4th = Counting {
            tree: &tree,
            keep: |l| l % 4 == 0,
            reads: Cell::new(0),
        };
        let pairs = [
            (0, n),
            (1, n),
            (77_777, n),
            (n - 1, n),
            (65_535, 65_537),
            (3, 99_999),
        ];
        let (mut most_all, mut most_4th) = (0, 0);
        for (a, b) in pairs {
            let mut check = |made: &dyn Fn(&Counting) -> Vec<Hash>| {
                all.reads.set(0);
                every_4th.reads.set(0);
                assert_eq!(made(&all), made(&every_4th), "({a}, {b})");
                most_all = most_all.max(all.reads.get());
                most_4th = most_4th.max(every_4th.reads.get());
            };
            check(&|s| inclusion_proof(s, a, b).expect("in range"));
            check(&|s| consistency_proof(s, a.max(1), b).expect("in order"));
            check(&|s| vec![root_at(s, b).expect("kept")]);
        }
        assert_eq!(root_at(&tree, n), Ok(tree.root()));
        // 17 levels: a few reads per level, nowhere near the 100,003 leaves
        assert!(most_all <= 2 * 64, "{most_all} reads with every node kept");
        assert!(
            most_4th <= 16 * 2 * 64,
            "{most_4th} reads with every 4th level"
        );
        eprintln!("evidence: at most {most_all} reads per proof (all levels kept), {most_4th} (every 4th)");
        // with no nodes kept it is still right, only slow: a small tree shows it
        let small = memory_tree(&leaves(37));
        let leaves_only = Counting {
            tree: &small,
            keep: |_| false,
            reads: Cell::new(0),
        };
        for size in 1..=37 {
            assert_eq!(root_at(&leaves_only, size), root_at(&small, size));
            for m in 1..=size {
                let (got, want) = (
                    consistency_proof(&leaves_only, m, size),
                    consistency_proof(&small, m, size),
                );
                assert_eq!(got, want);
                let (got, want) = (
                    inclusion_proof(&leaves_only, m - 1, size),
                    inclusion_proof(&small, m - 1, size),
                );
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn a_source_missing_a_leaf_is_an_error_not_a_wrong_proof() {
        let tree = memory_tree(&leaves(5));
        assert_eq!(
            inclusion_proof(&tree, 2, 9),
            Err(ProofError::Source(MissingLeaf(NodeId::new(0, 8))))
        );
        assert!(consistency_proof(&tree, 3, 6).is_err());
        assert_eq!(root_at(&tree, 6), Err(MissingLeaf(NodeId::new(0, 5))));
        assert_eq!(
            tree.leaf(u64::MAX),
            Err(MissingLeaf(NodeId::new(0, u64::MAX)))
        );
    }
}
