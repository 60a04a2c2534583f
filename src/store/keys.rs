//! Every key the store writes, built and taken apart in this one module
//!
//! What exactly-once rests on lives in one sled tree (`log`), so that an append — the event
//! blocks, the chain head, the per-integration counts and the integration cursor that covers
//! them — is one atomic `Batch`. What can be derived again from it (sealed index segments, dedup
//! runs, rollups) lives in `index`, written by the sealer with an "indexed through" watermark.
//! Each record kind has a one-byte prefix. Numbers are big-endian so that bytes sort as numbers;
//! times have their sign bit flipped so that negative times sort first too.
//!
//! | tree | key | value |
//! |---|---|---|
//! | log | `B` first seq | a block of events (see `block`) |
//! | log | `C` integration | the integration's cursor |
//! | log | `N` integration | events stored for the integration (u64) |
//! | log | `Z` dictionary id (u32) | a zstd dictionary |
//! | log | `M` name | `head` (seq, chain hash), `format` (u32), `migrated` (seq), `tree` (the Merkle nodes are kept), `frontier` (see `merkle`) |
//! | log | `H` level (u8), index (u64) | the hash of a perfect Merkle subtree of `2^level` events, level >= 8 (see `merkle`) |
//! | log | `X` first seq | a range of purged events: last seq (see `purge`) |
//! | log | `P` integration | events of the integration purged so far (u64) |
//! | log | `Y` first seq | a range of restored events: last seq, when (see `purge`) |
//! | log | `F` integration | events its collection filters dropped (u64), counted with the cursor |
//! | index | `G` segment | a sealed segment's description (see `segment`) |
//! | index | `S` segment, kind, ... | its doc table chunks (`d`), postings (`p`), hashed buckets (`h`) |
//! | index | `V` run | a dedup run's description (see `dedup`) |
//! | index | `U` run, kind, n | its entry chunks (`c`) and Bloom filter parts (`b`) |
//! | index | `R` granularity, dimension, bucket, group | a rollup count |
//! | index | `M` name | `sealed` (watermark), `next_run`, `garbage` |
//!
//! Format 1 (before blocks) wrote one `E` key per event and one `D` key per dedup entry in the
//! log, and `T` / `I` posting keys in the index; only `migrate` reads those now.

use crate::time::Micros;

/// Names of the sled trees.
pub const TREE_LOG: &str = "log";
pub const TREE_INDEX: &str = "index";
pub const TREE_TOKENS: &str = "tokens";
pub const TREE_SETTINGS: &str = "settings";
pub const TREE_INTEGRATIONS: &str = "integrations";
/// Signed checkpoints, by tree size (the checkpoints module keeps them).
pub const TREE_CHECKPOINTS: &str = "checkpoints";

/// The layout this code writes, kept under `M format` in the log.
pub const FORMAT: u32 = 2;

pub const BLOCK: u8 = b'B';
pub const CURSOR: u8 = b'C';
pub const COUNT: u8 = b'N';
pub const DICTIONARY: u8 = b'Z';
pub const META: u8 = b'M';
pub const TREE_NODE: u8 = b'H';
pub const PURGED: u8 = b'X';
pub const PURGED_COUNT: u8 = b'P';
pub const RESTORED: u8 = b'Y';
pub const FILTERED: u8 = b'F';
pub const SEGMENT: u8 = b'G';
pub const SEGMENT_DATA: u8 = b'S';
pub const RUN: u8 = b'V';
pub const RUN_DATA: u8 = b'U';
pub const ROLLUP: u8 = b'R';
/// Format 1 prefixes, read only by `migrate`.
pub const V1_EVENT: u8 = b'E';
pub const V1_DEDUP: u8 = b'D';

/// The indexed fields of the timeline, each a posting list of (time, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Integration,
    Connector,
    Actor,
    Action,
    Category,
    Outcome,
    EventType,
    Target,
    Ip,
    Token,
}

impl Field {
    pub const ALL: [Field; 10] = [
        Field::Integration,
        Field::Connector,
        Field::Actor,
        Field::Action,
        Field::Category,
        Field::Outcome,
        Field::EventType,
        Field::Target,
        Field::Ip,
        Field::Token,
    ];

    /// Position in `ALL`.
    pub fn index(self) -> usize {
        Field::ALL
            .iter()
            .position(|f| *f == self)
            .expect("every field is in ALL")
    }

    pub fn code(self) -> u8 {
        match self {
            Field::Integration => b'i',
            Field::Connector => b'c',
            Field::Actor => b'a',
            Field::Action => b'x',
            Field::Category => b'g',
            Field::Outcome => b'o',
            Field::EventType => b'e',
            Field::Target => b't',
            Field::Ip => b'p',
            Field::Token => b'q',
        }
    }
}

/// Longest indexed value; longer values are cut (at a char boundary) both when stored and queried.
pub const MAX_INDEX_VALUE: usize = 200;

pub fn index_value(s: &str) -> String {
    let lower = s.to_lowercase();
    if lower.len() <= MAX_INDEX_VALUE {
        return lower;
    }
    let mut end = MAX_INDEX_VALUE;
    while !lower.is_char_boundary(end) {
        end -= 1;
    }
    lower[..end].to_string()
}

/// The start of the bucket of `size` micros holding `t`; saturates at the ends of time, where
/// `div_euclid(..) * size` would overflow.
pub fn bucket_start(t: Micros, size: Micros) -> Micros {
    t.div_euclid(size).checked_mul(size).unwrap_or(Micros::MIN)
}

pub fn encode_time(t: Micros) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn decode_time(b: &[u8]) -> Micros {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

pub fn decode_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

pub fn block_key(first_seq: u64) -> [u8; 9] {
    seq_key(BLOCK, first_seq)
}

/// The key of the Merkle subtree `index` at `level`: level first, so one level's nodes sort by
/// index.
pub fn node_key(level: u32, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = TREE_NODE;
    k[1] = level.min(255) as u8;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn seq_key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The identity an event is deduplicated by: its integration and source id. Format 1 stored
/// this as a key; now it is hashed (`dedup_hash`) and compared in full only on a hash match.
pub fn dedup_identity(integration: &str, source_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + integration.len() + source_id.len());
    k.push(V1_DEDUP);
    k.push(integration.len().min(255) as u8);
    k.extend_from_slice(&integration.as_bytes()[..integration.len().min(255)]);
    k.extend_from_slice(source_id.as_bytes());
    k
}

/// The 64-bit hash of a dedup identity (the first 8 bytes of its SHA-256).
pub fn dedup_hash(identity: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(identity);
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// An indexed term: the field's code and the (normalised) value.
pub fn term(field: Field, value: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(1 + value.len());
    t.push(field.code());
    t.extend_from_slice(value.as_bytes());
    t
}

/// The term of a raw value: lowercased and cut like `index_value`, built in one buffer.
pub fn term_of(field: Field, value: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(1 + value.len().min(MAX_INDEX_VALUE));
    t.push(field.code());
    if value.is_ascii() {
        let cut = value.len().min(MAX_INDEX_VALUE);
        t.extend(value.as_bytes()[..cut].iter().map(u8::to_ascii_lowercase));
    } else {
        t.extend_from_slice(index_value(value).as_bytes());
    }
    t
}

/// The field a term belongs to.
pub fn term_field(term: &[u8]) -> Option<Field> {
    Field::ALL
        .iter()
        .copied()
        .find(|f| Some(&f.code()) == term.first())
}

pub fn segment_key(segment: u64) -> [u8; 9] {
    seq_key(SEGMENT, segment)
}

/// `S ‖ segment ‖ kind ‖ rest`: a segment's data keys.
pub fn segment_data_key(segment: u64, kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + rest.len());
    k.push(SEGMENT_DATA);
    k.extend_from_slice(&segment.to_be_bytes());
    k.push(kind);
    k.extend_from_slice(rest);
    k
}

pub fn segment_data_prefix(segment: u64) -> [u8; 9] {
    seq_key(SEGMENT_DATA, segment)
}

pub fn run_key(run: u64) -> [u8; 9] {
    seq_key(RUN, run)
}

/// `U ‖ run ‖ kind ‖ n`: a dedup run's entry chunks (`c`) and Bloom parts (`b`).
pub fn run_data_key(run: u64, kind: u8, n: u32) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[0] = RUN_DATA;
    k[1..9].copy_from_slice(&run.to_be_bytes());
    k[9] = kind;
    k[10..].copy_from_slice(&n.to_be_bytes());
    k
}

pub fn run_data_prefix(run: u64) -> [u8; 9] {
    seq_key(RUN_DATA, run)
}

pub fn count_key(integration: &str) -> Vec<u8> {
    let mut k = vec![COUNT];
    k.extend_from_slice(integration.as_bytes());
    k
}

pub fn filtered_key(integration: &str) -> Vec<u8> {
    let mut k = vec![FILTERED];
    k.extend_from_slice(integration.as_bytes());
    k
}

pub fn purged_count_key(integration: &str) -> Vec<u8> {
    let mut k = vec![PURGED_COUNT];
    k.extend_from_slice(integration.as_bytes());
    k
}

pub fn purged_key(first_seq: u64) -> [u8; 9] {
    seq_key(PURGED, first_seq)
}

pub fn restored_key(first_seq: u64) -> [u8; 9] {
    seq_key(RESTORED, first_seq)
}

pub fn dictionary_key(id: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = DICTIONARY;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn v1_event_key(seq: u64) -> [u8; 9] {
    seq_key(V1_EVENT, seq)
}

/// Rollup granularities, coarsest last. There are no minute rollups: when events are spread
/// out they would cost about one key per event, so sub-hour counts come from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Granularity; 2] = [Granularity::Hour, Granularity::Day];

    pub fn micros(self) -> Micros {
        match self {
            Granularity::Hour => crate::time::HOUR,
            Granularity::Day => crate::time::DAY,
        }
    }

    fn code(self) -> u8 {
        match self {
            Granularity::Hour => b'h',
            Granularity::Day => b'd',
        }
    }
}

/// What a rollup counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Total,
    Action,
    Category,
    Integration,
    Actor,
    Outcome,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Total,
        Dimension::Action,
        Dimension::Category,
        Dimension::Integration,
        Dimension::Actor,
        Dimension::Outcome,
    ];

    pub fn parse(s: &str) -> Option<Dimension> {
        Some(match s {
            "action" => Dimension::Action,
            "category" => Dimension::Category,
            "integration" => Dimension::Integration,
            "actor" => Dimension::Actor,
            "outcome" => Dimension::Outcome,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            Dimension::Total => b'*',
            Dimension::Action => b'x',
            Dimension::Category => b'g',
            Dimension::Integration => b'i',
            Dimension::Actor => b'a',
            Dimension::Outcome => b'o',
        }
    }
}

pub fn rollup_prefix(g: Granularity, d: Dimension) -> [u8; 3] {
    [ROLLUP, g.code(), d.code()]
}

pub fn rollup_key(g: Granularity, d: Dimension, bucket: Micros, group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(11 + group.len());
    k.extend_from_slice(&rollup_prefix(g, d));
    k.extend_from_slice(&encode_time(bucket));
    k.extend_from_slice(group.as_bytes());
    k
}

/// (bucket start, group) of a rollup key.
pub fn rollup_parts(key: &[u8]) -> (Micros, &[u8]) {
    (decode_time(&key[3..11]), &key[11..])
}

pub fn cursor_key(integration: &str) -> Vec<u8> {
    let mut k = vec![CURSOR];
    k.extend_from_slice(integration.as_bytes());
    k
}

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(name.as_bytes());
    k
}

pub const META_HEAD: &str = "head";
pub const META_FORMAT: &str = "format";
/// While `migrate` runs: the last format-1 event already moved into blocks.
pub const META_MIGRATED: &str = "migrated";
/// Present once the log keeps its Merkle nodes: every batch since writes the nodes its events
/// complete. A store written before them builds them on start.
pub const META_TREE: &str = "tree";
/// The Merkle tree's size and the frontier hashes below the kept level (at most 8), written
/// with every batch, so that opening the store reads no event.
pub const META_FRONTIER: &str = "frontier";
/// In the index tree: the last sequence number covered by sealed segments and dedup runs.
pub const META_SEALED: &str = "sealed";
pub const META_NEXT_RUN: &str = "next_run";
/// Dedup runs replaced by a merge whose data keys are still to be deleted.
pub const META_GARBAGE: &str = "garbage";
/// While a dedup merge writes its run in the background: that run's id (its data keys are
/// removed on start if the merge did not commit).
pub const META_MERGING: &str = "merging";
/// Format 1's index watermark (only `migrate` reads it).
pub const V1_META_INDEXED: &str = "indexed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sort_as_bytes() {
        let times = [-5_000_000i64, -1, 0, 1, 1_700_000_000_000_000];
        for w in times.windows(2) {
            assert!(encode_time(w[0]) < encode_time(w[1]));
            assert_eq!(decode_time(&encode_time(w[0])), w[0]);
        }
    }

    #[test]
    fn terms_of_raw_values_match_index_values() {
        for v in [
            "Alice@Example.COM",
            "ÉLODIE",
            &"x".repeat(300),
            &"é".repeat(150),
        ] {
            assert_eq!(
                term_of(Field::Actor, v),
                term(Field::Actor, &index_value(v))
            );
        }
    }

    #[test]
    fn terms_name_their_field() {
        for f in Field::ALL {
            assert_eq!(term_field(&term(f, "x")), Some(f));
            assert_eq!(Field::ALL[f.index()], f);
        }
        assert_eq!(term_field(b""), None);
    }
}
