//! Positions in the timeline order, and the encoding of a sealed segment's posting lists
//!
//! Inside a segment, events are numbered by rank: their place in the segment's time order. A
//! posting list is the sorted ranks carrying a term, stored as delta varints, or as a bitmap
//! when that is smaller (common values such as an action or an outcome).

use super::block::{get_varint, put_varint};
use super::StoreError;
use crate::time::Micros;

/// A place in the timeline order: by event time, ties broken by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub time: Micros,
    pub seq: u64,
}

impl Position {
    pub const MIN: Position = Position {
        time: i64::MIN,
        seq: 0,
    };
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

const LIST_DELTAS: u8 = 0;
const LIST_BITMAP: u8 = 1;

/// Encodes sorted, distinct ranks below `universe`.
pub fn encode_ranks(ranks: &[u32], universe: u32) -> Vec<u8> {
    debug_assert!(ranks.windows(2).all(|w| w[0] < w[1]));
    let bitmap_len = (universe as usize).div_ceil(8);
    // delta varints cost at least a byte each: a bitmap wins past one rank in eight
    if ranks.len() * 8 > universe as usize {
        let mut out = vec![0u8; 1 + bitmap_len];
        out[0] = LIST_BITMAP;
        for &r in ranks {
            out[1 + (r as usize >> 3)] |= 1 << (r & 7);
        }
        return out;
    }
    let mut out = Vec::with_capacity(2 + ranks.len() * 2);
    out.push(LIST_DELTAS);
    put_varint(&mut out, ranks.len() as u64);
    let mut prev = 0u32;
    for (i, &r) in ranks.iter().enumerate() {
        put_varint(&mut out, u64::from(if i == 0 { r } else { r - prev }));
        prev = r;
    }
    out
}

pub fn decode_ranks(bytes: &[u8]) -> Result<Vec<u32>, StoreError> {
    let corrupt = || StoreError::Corrupt("posting list does not decode".into());
    match bytes.first() {
        Some(&LIST_BITMAP) => {
            let mut out = Vec::new();
            for (i, b) in bytes[1..].iter().enumerate() {
                let mut b = *b;
                while b != 0 {
                    let bit = b.trailing_zeros();
                    out.push((i as u32) * 8 + bit);
                    b &= b - 1;
                }
            }
            Ok(out)
        }
        Some(&LIST_DELTAS) => {
            let mut at = 1;
            let n = get_varint(bytes, &mut at).ok_or_else(corrupt)? as usize;
            let mut out = Vec::with_capacity(n.min(1 << 16));
            let mut prev = 0u64;
            for i in 0..n {
                let d = get_varint(bytes, &mut at).ok_or_else(corrupt)?;
                prev = if i == 0 { d } else { prev.saturating_add(d) };
                out.push(u32::try_from(prev).map_err(|_| corrupt())?);
            }
            if at != bytes.len() {
                return Err(corrupt());
            }
            Ok(out)
        }
        _ => Err(corrupt()),
    }
}

/// The ranks present in every list (each sorted ascending).
pub fn intersect(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    lists.sort_by_key(Vec::len);
    let mut it = lists.into_iter();
    let Some(mut acc) = it.next() else {
        return Vec::new();
    };
    for list in it {
        if acc.is_empty() {
            break;
        }
        let mut j = 0;
        acc.retain(|r| {
            while j < list.len() && list[j] < *r {
                j += 1;
            }
            j < list.len() && list[j] == *r
        });
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_lists_round_trip_in_both_encodings() {
        let sparse = vec![0, 7, 300, 65_535];
        let enc = encode_ranks(&sparse, 65_536);
        assert_eq!(enc[0], LIST_DELTAS);
        assert_eq!(decode_ranks(&enc).expect("sparse"), sparse);
        let dense: Vec<u32> = (0..1000).step_by(3).collect();
        let enc = encode_ranks(&dense, 1000);
        assert_eq!(enc[0], LIST_BITMAP);
        assert_eq!(decode_ranks(&enc).expect("dense"), dense);
        assert!(decode_ranks(&[0, 5, 1]).is_err());
        assert!(decode_ranks(&[9]).is_err());
        assert_eq!(
            intersect(vec![vec![1, 3, 5, 7], vec![3, 4, 5], vec![0, 3, 5, 9]]),
            vec![3, 5]
        );
    }

    #[test]
    fn previous_steps_back_through_seq_then_time() {
        let p = Position { time: 5, seq: 0 };
        assert_eq!(
            p.previous(),
            Some(Position {
                time: 4,
                seq: u64::MAX
            })
        );
        assert_eq!(Position::MIN.previous(), None);
    }
}
