//! Every key the store writes, built and taken apart in this one module
//!
//! What exactly-once rests on lives in one sled tree (`log`), so that an append — events, dedup
//! entries, chain head and the integration cursor that covers them — is one atomic `Batch`.
//! What can be derived again from it (posting blocks, rollups) lives in `index`, written one
//! batch behind with a watermark. Each record kind has a one-byte prefix. Numbers are big-endian
//! so that bytes sort as numbers; times have their sign bit flipped so that negative times sort
//! first too.

use crate::time::Micros;

/// Names of the sled trees.
pub const TREE_LOG: &str = "log";
pub const TREE_INDEX: &str = "index";
pub const TREE_TOKENS: &str = "tokens";
pub const TREE_SETTINGS: &str = "settings";
pub const TREE_INTEGRATIONS: &str = "integrations";

/// Record kinds: `E`, `D`, `C`, `M` in `log`; `T`, `I`, `R`, `M` in `index`.
pub const EVENT: u8 = b'E';
pub const DEDUP: u8 = b'D';
pub const TIME: u8 = b'T';
pub const INDEX: u8 = b'I';
pub const ROLLUP: u8 = b'R';
pub const CURSOR: u8 = b'C';
pub const META: u8 = b'M';

/// Stored values start with this version byte, so that a later layout can read older ones.
pub const VALUE_VERSION: u8 = 1;

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
    fn code(self) -> u8 {
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

pub fn event_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENT;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn dedup_key(integration: &str, source_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + integration.len() + source_id.len());
    k.push(DEDUP);
    k.push(integration.len().min(255) as u8);
    k.extend_from_slice(&integration.as_bytes()[..integration.len().min(255)]);
    k.extend_from_slice(source_id.as_bytes());
    k
}

/// The prefix of a posting list; its keys are `prefix ‖ time ‖ seq`.
pub fn posting_prefix(field: Option<(Field, &str)>) -> Vec<u8> {
    match field {
        None => vec![TIME],
        Some((f, value)) => {
            let mut k = Vec::with_capacity(4 + value.len());
            k.push(INDEX);
            k.push(f.code());
            k.extend_from_slice(&(value.len() as u16).to_be_bytes());
            k.extend_from_slice(value.as_bytes());
            k
        }
    }
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
/// In the index tree: the last sequence number whose postings and rollups are written.
pub const META_INDEXED: &str = "indexed";

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
    fn posting_keys_of_one_value_never_interleave_with_a_longer_value() {
        use crate::store::postings::{chunk_key, chunk_of_key};
        let a = posting_prefix(Some((Field::Actor, "al")));
        let b = posting_prefix(Some((Field::Actor, "alice")));
        let ka = chunk_key(&a, i64::MAX, u8::MAX);
        assert!(!ka.starts_with(&b) && !chunk_key(&b, 0, 0).starts_with(&a));
        assert_eq!(chunk_of_key(&ka), (i64::MAX, u8::MAX));
    }
}
