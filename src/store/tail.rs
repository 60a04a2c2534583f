//! The tail: the index of the events not yet sealed, kept in memory
//!
//! The indexer appends every stored event here (its time, terms and rollup groups); readers
//! query it beside the sealed segments. When a tail holds `SEAL_EVENTS` events it is frozen and
//! handed to the sealer, which writes it once as a segment. Nothing here needs to be durable:
//! after a crash the tail is rebuilt from the log past the sealed watermark.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;

use super::keys::{self, Dimension, Granularity};
use super::postings::Position;
use super::prepare::{term_hash, Terms};
use crate::time::Micros;

/// Events per sealed segment (ranks in a segment fit in 16 bits).
pub const SEAL_EVENTS: usize = 65_536;

/// What the indexer needs of one stored event.
#[derive(Debug, Clone)]
pub struct TailEntry {
    pub seq: u64,
    pub time: Micros,
    /// Dedup hash (as the writer used it), kept for the segment's dedup run.
    pub hash: u64,
    pub terms: Terms,
    pub groups: Vec<(Dimension, String)>,
}

/// A rollup cell: granularity, dimension, bucket start (its counts are per group value).
pub type Cell = (Granularity, Dimension, Micros);

pub struct Tail {
    pub first_seq: u64,
    /// Events at which the tail is full.
    capacity: usize,
    /// By local index (seq - first_seq).
    pub times: Vec<Micros>,
    pub hashes: Vec<u64>,
    /// Local indexes of events that could not be read back when the tail was rebuilt: they
    /// hold a place in the sequence but are in no index.
    pub missing: Vec<u32>,
    /// (time, local index): the time order.
    order: BTreeSet<(Micros, u32)>,
    /// Term → local indexes, ascending; keyed by `prepare::term_hash`.
    postings: hashbrown::HashTable<(Box<[u8]>, Vec<u32>)>,
    pub rollups: HashMap<Cell, HashMap<String, u64>>,
}

impl Tail {
    pub fn new(first_seq: u64, capacity: usize) -> Tail {
        Tail {
            first_seq,
            capacity: capacity.clamp(1, SEAL_EVENTS),
            missing: Vec::new(),
            times: Vec::new(),
            hashes: Vec::new(),
            order: BTreeSet::new(),
            postings: hashbrown::HashTable::new(),
            rollups: HashMap::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Holds the place of an event that cannot be indexed (its block does not decode).
    pub fn push_missing(&mut self, seq: u64) {
        debug_assert_eq!(seq, self.next_seq(), "tails take events in sequence");
        self.missing.push(self.times.len() as u32);
        self.times.push(Micros::MIN);
        self.hashes.push(0);
    }

    pub fn last_seq(&self) -> u64 {
        self.next_seq() - 1
    }

    /// The next sequence number this tail expects.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.len() as u64
    }

    pub fn push(&mut self, e: TailEntry) {
        debug_assert_eq!(e.seq, self.next_seq(), "tails take events in sequence");
        let local = self.times.len() as u32;
        self.times.push(e.time);
        self.hashes.push(e.hash);
        self.order.insert((e.time, local));
        for (term, hash) in e.terms.iter() {
            match self.postings.find_mut(hash, |(k, _)| **k == *term) {
                Some((_, list)) => list.push(local),
                None => {
                    self.postings
                        .insert_unique(hash, (term.into(), vec![local]), |(k, _)| term_hash(k));
                }
            }
        }
        for g in Granularity::ALL {
            let bucket = keys::bucket_start(e.time, g.micros());
            for (dimension, group) in &e.groups {
                let counts = self.rollups.entry((g, *dimension, bucket)).or_default();
                match counts.get_mut(group.as_str()) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(group.clone(), 1);
                    }
                }
            }
        }
    }

    fn position(&self, local: u32) -> Position {
        Position {
            time: self.times[local as usize],
            seq: self.first_seq + u64::from(local),
        }
    }

    /// Up to `limit` positions in [lower, upper], newest first (no filter).
    pub fn newest(&self, lower: Position, upper: Position, limit: usize) -> Vec<Position> {
        let mut out = Vec::with_capacity(limit.min(self.len()));
        for &(time, local) in self.order.range(..=(upper.time, u32::MAX)).rev() {
            let p = Position {
                time,
                seq: self.first_seq + u64::from(local),
            };
            if p > upper {
                continue;
            }
            if p < lower || out.len() == limit {
                break;
            }
            out.push(p);
        }
        out
    }

    /// Every position in [lower, upper] carrying all `terms`, newest first.
    pub fn matching(&self, terms: &[Vec<u8>], lower: Position, upper: Position) -> Vec<Position> {
        let mut lists: Vec<&Vec<u32>> = Vec::with_capacity(terms.len());
        for t in terms {
            match self.postings.find(term_hash(t), |(k, _)| **k == **t) {
                Some((_, list)) => lists.push(list),
                None => return Vec::new(),
            }
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return Vec::new();
        };
        let mut out: Vec<Position> = first
            .iter()
            .copied()
            .filter(|local| rest.iter().all(|l| l.binary_search(local).is_ok()))
            .map(|local| self.position(local))
            .filter(|p| *p >= lower && *p <= upper)
            .collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Rollup counts of one granularity and dimension in [from, to).
    pub fn rollup_counts(
        &self,
        g: Granularity,
        d: Dimension,
        from: Micros,
        to: Micros,
    ) -> impl Iterator<Item = (Micros, &str, u64)> + '_ {
        self.rollups
            .iter()
            .filter(move |((cg, cd, bucket), _)| {
                *cg == g && *cd == d && *bucket >= from && *bucket < to
            })
            .flat_map(|((_, _, bucket), groups)| {
                groups
                    .iter()
                    .map(move |(group, n)| (*bucket, group.as_str(), *n))
            })
    }

    /// Every term with its local indexes (ascending).
    pub fn postings(&self) -> impl Iterator<Item = (&[u8], &[u32])> + '_ {
        self.postings.iter().map(|(k, v)| (&k[..], &v[..]))
    }

    /// Distinct terms.
    pub fn term_count(&self) -> usize {
        self.postings.len()
    }

    /// Local indexes in time order: a sealed segment's ranks.
    pub fn time_order(&self) -> impl Iterator<Item = u32> + '_ {
        self.order.iter().map(|(_, local)| *local)
    }

    pub fn time_range(&self) -> Option<(Micros, Micros)> {
        Some((self.order.first()?.0, self.order.last()?.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, time: Micros, terms: &[&str]) -> TailEntry {
        let mut list = Terms::default();
        for t in terms {
            list.push(t.as_bytes());
        }
        TailEntry {
            seq,
            time,
            hash: seq,
            terms: list,
            groups: vec![(Dimension::Total, String::new())],
        }
    }

    #[test]
    fn queries_walk_time_order_whatever_the_arrival_order() {
        let mut t = Tail::new(10, SEAL_EVENTS);
        t.push(entry(10, 500, &["a", "b"]));
        t.push(entry(11, 100, &["a"]));
        t.push(entry(12, 300, &["b"]));
        t.push(entry(13, 300, &["a", "b"]));
        let all = Position {
            time: i64::MIN,
            seq: 0,
        };
        let seqs = |v: Vec<Position>| v.into_iter().map(|p| p.seq).collect::<Vec<_>>();
        assert_eq!(seqs(t.newest(all, Position::MAX, 10)), vec![10, 13, 12, 11]);
        assert_eq!(
            seqs(t.newest(all, Position { time: 300, seq: 12 }, 10)),
            vec![12, 11]
        );
        let ab = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(seqs(t.matching(&ab, all, Position::MAX)), vec![10, 13]);
        assert!(t.matching(&[b"zz".to_vec()], all, Position::MAX).is_empty());
        let hourly: u64 = t
            .rollup_counts(Granularity::Hour, Dimension::Total, 0, 3_600_000_000)
            .map(|(_, _, n)| n)
            .sum();
        assert_eq!(hourly, 4);
        assert_eq!(t.time_order().collect::<Vec<_>>(), vec![1, 2, 3, 0]);
    }
}
