//! Walking the integrity hash chain: every event's hash must equal
//! SHA-256(previous hash ‖ the event's JSON), sequence numbers must be contiguous, and the last
//! hash must equal the stored chain head

use serde::Serialize;

use super::{decode_event_value, keys, prepare, Store, StoreError};

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

impl Store {
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let head = self.head()?;
        let mut prev = [0u8; 32];
        let mut checked = 0u64;
        let broken = |seq: u64, reason: String| BrokenLink {
            seq,
            id: format!("{seq:016x}"),
            reason,
        };
        let mut first_broken = None;
        let from = keys::event_key(0);
        let to = keys::event_key(u64::MAX);
        for (expected_seq, item) in (1u64..).zip(self.log().range(from..=to)) {
            let (k, v) = item?;
            let seq = keys::decode_u64(&k[1..]);
            if seq != expected_seq {
                first_broken = Some(broken(
                    expected_seq,
                    format!("event {expected_seq:016x} is missing (next stored is {seq:016x})"),
                ));
                break;
            }
            let (stored_hash, body) = match decode_event_value(&v) {
                Ok(parts) => parts,
                Err(e) => {
                    first_broken = Some(broken(seq, e.to_string()));
                    break;
                }
            };
            let computed = prepare::chain_hash_of(&prev, seq, &body);
            if computed != stored_hash {
                first_broken = Some(broken(
                    seq,
                    "hash does not match the event's content and its predecessor".into(),
                ));
                break;
            }
            prev = computed;
            checked += 1;
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
                    "chain head hash does not match the last event".into(),
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
