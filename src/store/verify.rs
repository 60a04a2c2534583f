//! Walking the integrity hash chain: every event's hash must equal
//! SHA-256(previous hash ‖ the event's JSON) — checked against the prefix stored beside each
//! event and the full hash stored at the end of each block — sequence numbers must be
//! contiguous, and the last hash must equal the stored chain head

use serde::Serialize;

use super::block::{BlockView, CHAIN_PREFIX};
use super::{keys, prepare, Store, StoreError};

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
    pub first_broken: Option<BrokenLink>,
}

fn broken(seq: u64, reason: impl Into<String>) -> BrokenLink {
    BrokenLink {
        seq,
        id: format!("{seq:016x}"),
        reason: reason.into(),
    }
}

impl Store {
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let sh = self.shared();
        let head = self.head()?;
        let mut prev = [0u8; 32];
        let mut checked = 0u64;
        let mut first_broken = None;
        'blocks: for item in sh.log.range(keys::block_key(0)..=keys::block_key(u64::MAX)) {
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
            for f in 0..view.frame_count() {
                let frame = match view.decode_frame(f, &sh.dicts) {
                    Ok(frame) => frame,
                    Err(e) => {
                        first_broken = Some(broken(seq, e.to_string()));
                        break 'blocks;
                    }
                };
                for i in 0..frame.len() {
                    let computed = prepare::chain_hash_of(&prev, seq, frame.body(i));
                    if computed[..CHAIN_PREFIX] != *frame.chain_prefix(i) {
                        first_broken = Some(broken(
                            seq,
                            "hash does not match the event's content and its predecessor",
                        ));
                        break 'blocks;
                    }
                    prev = computed;
                    checked += 1;
                    seq += 1;
                }
            }
            if prev != view.hash {
                first_broken = Some(broken(
                    seq - 1,
                    "the block's chain hash does not match its events",
                ));
                break;
            }
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
            first_broken,
        })
    }
}
