//! Posting lists of the timeline indexes, stored in blocks of one hour
//!
//! For each indexed (field, value) the store keeps the (time, seq) of its events. One key per
//! event per value made sled touch dozens of scattered pages per event; instead each list is cut
//! into hour blocks (`prefix ‖ hour start`), each a sorted, delta-encoded array. An append batch
//! rewrites one block per list per hour it touches, so ingest costs a few keys per batch per
//! value, and a walk decodes a block once and then binary-searches it.

use super::keys;
use super::StoreError;
use crate::time::{Micros, HOUR};

/// A place in the timeline order: by event time, ties broken by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub time: Micros,
    pub seq: u64,
}

impl Position {
    pub const MAX: Position = Position {
        time: i64::MAX,
        seq: u64::MAX,
    };

    /// The position just before this one.
    pub fn previous(self) -> Option<Position> {
        if self.seq > 0 {
            Some(Position {
                time: self.time,
                seq: self.seq - 1,
            })
        } else if self.time > i64::MIN {
            Some(Position {
                time: self.time - 1,
                seq: u64::MAX,
            })
        } else {
            None
        }
    }
}

pub const BLOCK: Micros = HOUR;

pub fn block_start(t: Micros) -> Micros {
    t.div_euclid(BLOCK).checked_mul(BLOCK).unwrap_or(i64::MIN)
}

/// A key and its value, to be written.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Entries per stored chunk. A busy hour's block would otherwise grow into a value that every
/// append decodes and rewrites whole (and sled moves large values to blob files): instead a
/// block is a run of chunks, appends touch only the last one, and a reader merges them.
pub const CHUNK_MAX: usize = 256;

/// Key of one chunk of a block: `prefix ‖ block start ‖ chunk number`.
pub fn chunk_key(prefix: &[u8], block: Micros, chunk: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&keys::encode_time(block));
    k.push(chunk);
    k
}

/// (block start, chunk number) of a chunk key.
pub fn chunk_of_key(key: &[u8]) -> (Micros, u8) {
    let n = key.len();
    (keys::decode_time(&key[n - 9..n - 1]), key[n - 1])
}

/// Every entry of one block, sorted (its chunks merged).
pub fn load_block(
    tree: &sled::Tree,
    prefix: &[u8],
    block: Micros,
) -> Result<Vec<Position>, StoreError> {
    let mut entries = Vec::new();
    let mut chunks = 0;
    for item in tree.range(chunk_key(prefix, block, 0)..=chunk_key(prefix, block, u8::MAX)) {
        let (_, v) = item?;
        entries.extend(decode(&v)?);
        chunks += 1;
    }
    if chunks > 1 {
        entries.sort_unstable();
        entries.dedup();
    }
    Ok(entries)
}

/// The chunks to write so that `new` entries join a block: they go into its last chunk while it
/// has room, then into fresh chunks. Earlier, full chunks are never rewritten.
pub fn append_to_block(
    tree: &sled::Tree,
    prefix: &[u8],
    block: Micros,
    new: Vec<Position>,
) -> Result<Vec<KeyValue>, StoreError> {
    let last = tree
        .range(chunk_key(prefix, block, 0)..=chunk_key(prefix, block, u8::MAX))
        .next_back()
        .transpose()?;
    let (mut chunk, existing) = match last {
        None => (0u8, Vec::new()),
        Some((k, v)) => {
            let (_, n) = chunk_of_key(&k);
            let existing = decode(&v)?;
            if existing.len() >= CHUNK_MAX && n < u8::MAX {
                (n + 1, Vec::new())
            } else {
                (n, existing)
            }
        }
    };
    let merged = merge(existing, new);
    let mut out = Vec::new();
    let mut rest: &[Position] = &merged;
    while !rest.is_empty() {
        let take = if chunk == u8::MAX {
            rest.len()
        } else {
            rest.len().min(CHUNK_MAX)
        };
        out.push((chunk_key(prefix, block, chunk), encode(&rest[..take])));
        rest = &rest[take..];
        chunk = chunk.saturating_add(1);
    }
    Ok(out)
}

const BLOCK_VERSION: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Encodes sorted positions: count, then per entry the time delta and the zig-zag seq delta.
pub fn encode(entries: &[Position]) -> Vec<u8> {
    debug_assert!(entries.windows(2).all(|w| w[0] < w[1]));
    let mut out = Vec::with_capacity(2 + entries.len() * 5);
    out.push(BLOCK_VERSION);
    put_varint(&mut out, entries.len() as u64);
    let mut prev_time = 0u64;
    let mut prev_seq = 0i64;
    for (i, p) in entries.iter().enumerate() {
        let t = (p.time as u64) ^ (1 << 63);
        put_varint(&mut out, if i == 0 { t } else { t - prev_time });
        let d = (p.seq as i64).wrapping_sub(prev_seq);
        put_varint(&mut out, ((d << 1) ^ (d >> 63)) as u64);
        prev_time = t;
        prev_seq = p.seq as i64;
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Vec<Position>, StoreError> {
    let corrupt = || StoreError::Corrupt("posting block does not decode".into());
    if bytes.first() != Some(&BLOCK_VERSION) {
        return Err(corrupt());
    }
    let mut at = 1;
    let n = get_varint(bytes, &mut at).ok_or_else(corrupt)? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    let mut time = 0u64;
    let mut seq = 0i64;
    for i in 0..n {
        let dt = get_varint(bytes, &mut at).ok_or_else(corrupt)?;
        time = if i == 0 { dt } else { time.wrapping_add(dt) };
        let z = get_varint(bytes, &mut at).ok_or_else(corrupt)?;
        seq = seq.wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
        out.push(Position {
            time: (time ^ (1 << 63)) as i64,
            seq: seq as u64,
        });
    }
    Ok(out)
}

/// Merges new positions into a block's sorted entries (the common case, all newer, appends).
pub fn merge(mut existing: Vec<Position>, mut new: Vec<Position>) -> Vec<Position> {
    new.sort_unstable();
    if existing
        .last()
        .is_none_or(|last| new.first().is_none_or(|first| last < first))
    {
        existing.extend(new);
        return existing;
    }
    existing.extend(new);
    existing.sort_unstable();
    existing.dedup();
    existing
}

/// A walker over one posting list, newest first, answering "the newest entry at or before X".
pub struct BlockWalker {
    prefix: Vec<u8>,
    /// The decoded block, and the range of hour blocks [block, asked] it answers for.
    cached: Option<(Micros, Micros, Vec<Position>)>,
}

impl BlockWalker {
    pub fn new(prefix: Vec<u8>) -> BlockWalker {
        BlockWalker {
            prefix,
            cached: None,
        }
    }

    pub fn seek(
        &mut self,
        tree: &sled::Tree,
        lower: Position,
        target: Position,
    ) -> Result<Option<Position>, StoreError> {
        let mut target = target;
        loop {
            if target < lower {
                return Ok(None);
            }
            let wanted = block_start(target.time);
            if let Some((block, asked, entries)) = &self.cached {
                if *block <= wanted && wanted <= *asked {
                    let idx = entries.partition_point(|p| *p <= target);
                    if idx > 0 {
                        let p = entries[idx - 1];
                        return Ok((p >= lower).then_some(p));
                    }
                    // Nothing in this block at or before the target: continue in older blocks.
                    match (Position {
                        time: *block,
                        seq: 0,
                    })
                    .previous()
                    {
                        Some(p) => target = p,
                        None => return Ok(None),
                    }
                    continue;
                }
            }
            let from = chunk_key(&self.prefix, block_start(lower.time), 0);
            let to = chunk_key(&self.prefix, wanted, u8::MAX);
            match tree.range(from..=to).next_back() {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok((k, _))) => {
                    let (block, _) = chunk_of_key(&k);
                    self.cached = Some((block, wanted, load_block(tree, &self.prefix, block)?));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip() {
        let entries = vec![
            Position { time: -5, seq: 9 },
            Position { time: 0, seq: 3 },
            Position { time: 0, seq: 4 },
            Position {
                time: 1_700_000_000_000_000,
                seq: 1,
            },
            Position {
                time: 1_700_000_000_000_001,
                seq: u64::MAX / 2,
            },
        ];
        assert_eq!(decode(&encode(&entries)).expect("decodes"), entries);
        assert!(decode(&[1, 5, 1]).is_err());
        let merged = merge(
            entries[..2].to_vec(),
            vec![entries[4], entries[2], entries[3]],
        );
        assert_eq!(merged, entries);
        let merged = merge(
            entries[2..].to_vec(),
            vec![entries[0], entries[1], entries[2]],
        );
        assert_eq!(merged, entries);
    }

    #[test]
    fn busy_blocks_grow_by_chunks_and_read_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new()
            .path(dir.path())
            .temporary(true)
            .open()
            .expect("sled");
        let tree = db.open_tree("t").expect("tree");
        let prefix = b"Ix";
        let mut all = Vec::new();
        // 3,000 entries in 30 appends, times deliberately out of order across appends
        for round in 0..30u64 {
            let new: Vec<Position> = (0..100u64)
                .map(|i| Position {
                    time: ((i * 37 + round * 11) % 3600) as i64,
                    seq: round * 100 + i,
                })
                .collect();
            all.extend(new.iter().copied());
            for (k, v) in append_to_block(&tree, prefix, 0, new).expect("append") {
                tree.insert(k, v).expect("insert");
            }
        }
        all.sort_unstable();
        assert_eq!(load_block(&tree, prefix, 0).expect("load"), all);
        let chunks: Vec<usize> = tree
            .scan_prefix(prefix)
            .map(|kv| decode(&kv.expect("kv").1).expect("chunk").len())
            .collect();
        assert_eq!(chunks.len(), 12);
        assert!(chunks[..11].iter().all(|n| *n == CHUNK_MAX));
    }
}
