//! Sealed segments: a frozen tail written once to the index tree
//!
//! A segment covers `SEAL_EVENTS` consecutive sequence numbers. Its events are numbered by rank
//! in time order; a doc table maps ranks to (time, seq), and each term with more than
//! `RARE_MAX` events gets one posting list of ranks. Rare terms (ids, session tokens: most
//! values of a high-cardinality field) would cost a key each, so they share hashed buckets per
//! field, each entry a 32-bit fingerprint of its term and a rank; a match there is a candidate
//! that the reader verifies against the event. Sealing therefore costs a few thousand keys per
//! 65,536 events, however many distinct values they carry.

use super::block::{get_varint, put_varint};
use super::keys::{self, Field};
use super::postings::{encode_ranks, Position};
use super::tail::Tail;
use super::StoreError;

/// Ranks per doc table chunk.
pub const DOC_CHUNK: usize = 4096;
/// Terms with at most this many events in a segment go to hashed buckets.
pub const RARE_MAX: usize = 2;
/// Entries aimed at per hashed bucket.
const BUCKET_TARGET: usize = 256;
const MAX_BUCKETS: usize = 4096;
const META_VERSION: u8 = 1;

pub const KIND_DOCS: u8 = b'd';
pub const KIND_POSTING: u8 = b'p';
pub const KIND_BUCKET: u8 = b'h';

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Events indexed (ranks); fewer than the sequence numbers covered when some could not be
    /// read back.
    pub count: u32,
    /// The position of the first rank of each doc chunk.
    pub chunk_first: Vec<Position>,
    /// The position of the last rank.
    pub last: Position,
    /// Hashed buckets per field (by `Field::index`); 0 when the field has no rare term here.
    pub buckets: [u16; Field::ALL.len()],
}

impl SegmentMeta {
    pub fn id(&self) -> u64 {
        self.first_seq
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn first(&self) -> Position {
        self.chunk_first[0]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.chunk_first.len() * 16);
        v.push(META_VERSION);
        v.extend_from_slice(&self.first_seq.to_be_bytes());
        v.extend_from_slice(&self.last_seq.to_be_bytes());
        v.extend_from_slice(&self.count.to_be_bytes());
        v.extend_from_slice(&(self.chunk_first.len() as u16).to_be_bytes());
        for p in self.chunk_first.iter().chain(std::iter::once(&self.last)) {
            v.extend_from_slice(&keys::encode_time(p.time));
            v.extend_from_slice(&p.seq.to_be_bytes());
        }
        for b in self.buckets {
            v.extend_from_slice(&b.to_be_bytes());
        }
        v
    }

    pub fn decode(v: &[u8]) -> Result<SegmentMeta, StoreError> {
        let corrupt = || StoreError::Corrupt("segment description does not decode".into());
        const H: usize = 23;
        if v.len() < H || v[0] != META_VERSION {
            return Err(corrupt());
        }
        let first_seq = keys::decode_u64(&v[1..9]);
        let last_seq = keys::decode_u64(&v[9..17]);
        let count = u32::from_be_bytes(v[17..21].try_into().expect("4 bytes"));
        let n = u16::from_be_bytes([v[21], v[22]]) as usize;
        let fields = Field::ALL.len();
        if n == 0 || count == 0 || last_seq < first_seq || v.len() != H + (n + 1) * 16 + fields * 2
        {
            return Err(corrupt());
        }
        let position = |i: usize| Position {
            time: keys::decode_time(&v[H + i * 16..]),
            seq: keys::decode_u64(&v[H + 8 + i * 16..]),
        };
        let chunk_first = (0..n).map(position).collect();
        let last = position(n);
        let mut buckets = [0u16; Field::ALL.len()];
        let at = H + (n + 1) * 16;
        for (i, b) in buckets.iter_mut().enumerate() {
            *b = u16::from_be_bytes([v[at + i * 2], v[at + i * 2 + 1]]);
        }
        Ok(SegmentMeta {
            first_seq,
            last_seq,
            count,
            chunk_first,
            last,
            buckets,
        })
    }

    /// The number of doc chunks.
    pub fn chunks(&self) -> usize {
        self.chunk_first.len()
    }
}

/// FNV-1a: a stable 64-bit hash of a term (its bucket and fingerprint).
pub fn term_hash(term: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in term {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn bucket_of(h: u64, buckets: u16) -> u16 {
    ((h & 0xffff_ffff) % u64::from(buckets.max(1))) as u16
}

fn fingerprint(h: u64) -> u32 {
    (h >> 32) as u32
}

/// A key and value to write.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The segment of a frozen tail: its description and every data key to write.
pub fn build(tail: &Tail) -> Result<(SegmentMeta, Vec<KeyValue>), StoreError> {
    let id = tail.first_seq;
    let by_rank: Vec<u32> = tail.time_order().collect();
    let count = u32::try_from(by_rank.len())
        .ok()
        .filter(|c| *c > 0 && (*c as usize) <= super::tail::SEAL_EVENTS)
        .ok_or_else(|| StoreError::Corrupt("a segment needs 1 to 65,536 events".into()))?;
    let mut rank_of = vec![0u32; tail.len()];
    for (rank, local) in by_rank.iter().enumerate() {
        rank_of[*local as usize] = rank as u32;
    }
    let position = |local: u32| Position {
        time: tail.times[local as usize],
        seq: id + u64::from(local),
    };
    let mut out: Vec<KeyValue> = Vec::new();
    let mut chunk_first = Vec::new();
    for (c, chunk) in by_rank.chunks(DOC_CHUNK).enumerate() {
        chunk_first.push(position(chunk[0]));
        let mut v = Vec::with_capacity(chunk.len() * 5);
        put_varint(&mut v, chunk.len() as u64);
        let mut prev = 0u64;
        for (i, local) in chunk.iter().enumerate() {
            let t = keys::decode_u64(&keys::encode_time(tail.times[*local as usize]));
            put_varint(&mut v, if i == 0 { t } else { t - prev });
            prev = t;
            put_varint(&mut v, u64::from(*local));
        }
        out.push((
            keys::segment_data_key(id, KIND_DOCS, &(c as u16).to_be_bytes()),
            v,
        ));
    }
    let last = position(*by_rank.last().expect("count > 0"));

    let mut rare_hashes: Vec<Vec<(u64, Vec<u32>)>> = vec![Vec::new(); Field::ALL.len()];
    for (term, locals) in tail.postings() {
        let mut ranks: Vec<u32> = locals.iter().map(|l| rank_of[*l as usize]).collect();
        ranks.sort_unstable();
        ranks.dedup();
        if ranks.len() > RARE_MAX {
            out.push((
                keys::segment_data_key(id, KIND_POSTING, term),
                encode_ranks(&ranks, count),
            ));
        } else if let Some(field) = keys::term_field(term) {
            rare_hashes[field.index()].push((term_hash(term), ranks));
        }
    }
    let mut buckets = [0u16; Field::ALL.len()];
    for (f, terms) in rare_hashes.into_iter().enumerate() {
        let entries: usize = terms.iter().map(|(_, r)| r.len()).sum();
        if entries == 0 {
            continue;
        }
        let n = entries.div_ceil(BUCKET_TARGET).clamp(1, MAX_BUCKETS) as u16;
        buckets[f] = n;
        let mut by_bucket: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n as usize];
        for (h, ranks) in terms {
            for r in ranks {
                by_bucket[bucket_of(h, n) as usize].push((r, fingerprint(h)));
            }
        }
        for (b, mut entries) in by_bucket.into_iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            entries.sort_unstable();
            let mut v = Vec::with_capacity(entries.len() * 6);
            put_varint(&mut v, entries.len() as u64);
            let mut prev = 0u32;
            for (i, (rank, fp)) in entries.iter().enumerate() {
                v.extend_from_slice(&fp.to_be_bytes());
                put_varint(&mut v, u64::from(if i == 0 { *rank } else { rank - prev }));
                prev = *rank;
            }
            let mut rest = vec![Field::ALL[f].code()];
            rest.extend_from_slice(&(b as u16).to_be_bytes());
            out.push((keys::segment_data_key(id, KIND_BUCKET, &rest), v));
        }
    }
    Ok((
        SegmentMeta {
            first_seq: id,
            last_seq: tail.last_seq(),
            count,
            chunk_first,
            last,
            buckets,
        },
        out,
    ))
}

/// One doc table chunk: positions by rank.
pub fn load_docs(
    index: &sled::Tree,
    meta: &SegmentMeta,
    chunk: usize,
) -> Result<Vec<Position>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("segment {} doc table", meta.id()));
    let key = keys::segment_data_key(meta.id(), KIND_DOCS, &(chunk as u16).to_be_bytes());
    let v = index.get(key)?.ok_or_else(corrupt)?;
    let mut at = 0;
    let n = get_varint(&v, &mut at).ok_or_else(corrupt)? as usize;
    let mut out = Vec::with_capacity(n.min(DOC_CHUNK));
    let mut t = 0u64;
    for i in 0..n {
        let d = get_varint(&v, &mut at).ok_or_else(corrupt)?;
        t = if i == 0 { d } else { t.wrapping_add(d) };
        let local = get_varint(&v, &mut at).ok_or_else(corrupt)?;
        // read from disk: a sequence number must lie inside the segment
        let seq = meta
            .first_seq
            .checked_add(local)
            .filter(|seq| *seq <= meta.last_seq)
            .ok_or_else(corrupt)?;
        out.push(Position {
            time: keys::decode_time(&t.to_be_bytes()),
            seq,
        });
    }
    Ok(out)
}

/// The ranks carrying `term`, and whether they are candidates to verify (from a hashed bucket).
pub fn term_ranks(
    index: &sled::Tree,
    meta: &SegmentMeta,
    term: &[u8],
) -> Result<(Vec<u32>, bool), StoreError> {
    if let Some(v) = index.get(keys::segment_data_key(meta.id(), KIND_POSTING, term))? {
        return Ok((super::postings::decode_ranks(&v)?, false));
    }
    let Some(field) = keys::term_field(term) else {
        return Ok((Vec::new(), false));
    };
    let n = meta.buckets[field.index()];
    if n == 0 {
        return Ok((Vec::new(), false));
    }
    let h = term_hash(term);
    let mut rest = vec![field.code()];
    rest.extend_from_slice(&bucket_of(h, n).to_be_bytes());
    let Some(v) = index.get(keys::segment_data_key(meta.id(), KIND_BUCKET, &rest))? else {
        return Ok((Vec::new(), false));
    };
    let corrupt = || StoreError::Corrupt(format!("segment {} hashed bucket", meta.id()));
    let mut at = 0;
    let count = get_varint(&v, &mut at).ok_or_else(corrupt)? as usize;
    let want = fingerprint(h);
    let mut out = Vec::new();
    let mut rank = 0u32;
    for i in 0..count {
        let fp = v
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(corrupt)?;
        at += 4;
        let d = get_varint(&v, &mut at).ok_or_else(corrupt)? as u32;
        rank = if i == 0 { d } else { rank.wrapping_add(d) };
        if fp == want && out.last() != Some(&rank) {
            out.push(rank);
        }
    }
    Ok((out, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::Dimension;
    use crate::store::tail::TailEntry;

    /// Found by the property tests (tests/integration/fuzz.rs): a doc table entry whose local
    /// number took the sequence number past 2^64 overflowed (a panic in a debug build); one
    /// past the segment's last sequence number named an event of another segment.
    #[test]
    fn a_doc_table_naming_a_seq_outside_its_segment_is_corrupt() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let index = db.open_tree("index").expect("tree");
        for (first_seq, local) in [(u64::MAX - 2, 5), (100, 1_000), (0, u64::MAX)] {
            let meta = SegmentMeta {
                first_seq,
                last_seq: first_seq.saturating_add(10),
                count: 1,
                chunk_first: vec![Position {
                    time: 0,
                    seq: first_seq,
                }],
                last: Position {
                    time: 0,
                    seq: first_seq,
                },
                buckets: [0; Field::ALL.len()],
            };
            let mut v = Vec::new();
            for n in [1, 5, local] {
                put_varint(&mut v, n);
            }
            index
                .insert(
                    keys::segment_data_key(first_seq, KIND_DOCS, &0u16.to_be_bytes()),
                    v,
                )
                .expect("insert");
            let e = load_docs(&index, &meta, 0).expect_err("outside the segment");
            assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        }
    }

    #[test]
    fn a_sealed_tail_answers_like_the_tail() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let index = db.open_tree("index").expect("tree");
        let mut tail = Tail::new(100, crate::store::tail::SEAL_EVENTS);
        for i in 0..10_000u64 {
            let mut terms = crate::store::prepare::Terms::default();
            terms.push(&keys::term(
                Field::Action,
                if i % 3 == 0 { "login" } else { "read" },
            ));
            terms.push(&keys::term(Field::Token, &format!("unique{i}")));
            if i % 1000 == 7 {
                terms.push(&keys::term(Field::Target, "seldom"));
            }
            tail.push(TailEntry {
                seq: 100 + i,
                // out of order in time, to exercise ranks
                time: ((i * 7919) % 10_000) as i64 * 1_000,
                hash: i,
                terms,
                groups: vec![(Dimension::Total, String::new())],
            });
        }
        let (meta, data) = build(&tail).expect("build");
        for (k, v) in data {
            index.insert(k, v).expect("insert");
        }
        assert_eq!(SegmentMeta::decode(&meta.encode()).expect("meta"), meta);
        assert_eq!(meta.chunks(), 3);
        let mut docs = Vec::new();
        for c in 0..meta.chunks() {
            docs.extend(load_docs(&index, &meta, c).expect("docs"));
        }
        assert!(docs.windows(2).all(|w| w[0] < w[1]), "ranks follow time");
        assert_eq!(docs.len(), 10_000);
        assert_eq!(docs.last(), Some(&meta.last));
        let seqs = |term: Vec<u8>| {
            let (ranks, verify) = term_ranks(&index, &meta, &term).expect("ranks");
            let mut s: Vec<u64> = ranks.iter().map(|r| docs[*r as usize].seq).collect();
            s.sort_unstable();
            (s, verify)
        };
        let (login, verify) = seqs(keys::term(Field::Action, "login"));
        assert!(!verify);
        assert_eq!(login.len(), 3334);
        let (seldom, verify) = seqs(keys::term(Field::Target, "seldom"));
        assert!(!verify, "ten events: a list of its own");
        assert_eq!(seldom.len(), 10);
        let (one, verify) = seqs(keys::term(Field::Token, "unique4242"));
        assert!(verify, "a rare term comes from a hashed bucket");
        assert!(one.contains(&4342));
        let (none, _) = seqs(keys::term(Field::Ip, "10.0.0.1"));
        assert!(none.is_empty());
    }
}
