//! The outbox's records in the `desk:outbox` tree: one per delivery with its attempts, the
//! idempotency index, and the order in which finished deliveries leave the history
//!
//! | key | value |
//! |---|---|
//! | `d` delivery id | `StoredDelivery` (JSON, with `v`); ids start with the enqueue time, so these sort by it |
//! | `k` channel id `0x00` key | the delivery id: a second enqueue of the key to the channel finds it |
//! | `f` finished at (8 bytes, big-endian micros) delivery id | empty: the history's order, oldest first |
//!
//! A new delivery's `d` and `k` are written in one transaction (so two enqueues of one key
//! cannot both win); an attempt's result rewrites `d` (and adds `f` when it finishes) in one batch.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{AttemptOutcome, ChannelId, ChannelKind, DeliveryId, Message, NewDelivery};
use crate::config::NotifyTuning;
use crate::store::StoreError;
use crate::time::{format_micros, Micros};

const RECORD_VERSION: u8 = 1;
const KEY_DELIVERY: u8 = b'd';
const KEY_IDEMPOTENCY: u8 = b'k';
const KEY_FINISHED: u8 = b'f';
/// Attempts kept on a record (the first ones and the last ones); `max_attempts` is at most 50.
const MAX_KEPT_ATTEMPTS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One attempt as kept on its delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub number: u32,
    /// When it ended.
    pub at: Micros,
    pub outcome: AttemptOutcome,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
    /// How long the attempt itself took.
    pub duration_ms: u64,
}

impl From<&super::Attempt> for AttemptRecord {
    fn from(a: &super::Attempt) -> Self {
        AttemptRecord {
            number: a.number,
            at: a.at,
            outcome: a.outcome,
            status: a.status,
            error: a.error.clone(),
            duration_ms: 0,
        }
    }
}

impl AttemptRecord {
    pub fn view(&self) -> Value {
        let mut v = json!({
            "number": self.number,
            "at": format_micros(self.at),
            "outcome": self.outcome.as_str(),
            "status": self.status,
            "error": self.error,
            "duration_ms": self.duration_ms,
        });
        if let AttemptOutcome::Retrying { next_at } = self.outcome {
            v["next_at"] = json!(format_micros(next_at));
        }
        v
    }
}

/// A delivery with its attempts, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub v: u8,
    pub id: DeliveryId,
    pub key: String,
    pub channel: ChannelId,
    pub channel_kind: ChannelKind,
    pub message: Message,
    pub status: DeliveryStatus,
    pub created_at: Micros,
    /// When the next attempt is due (pending deliveries).
    pub next_at: Micros,
    #[serde(default)]
    pub finished_at: Option<Micros>,
    /// Attempts made, oldest first (at most 50 kept).
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// Attempts made in all (the kept ones may be fewer).
    #[serde(default)]
    pub attempt_count: u32,
}

impl Delivery {
    /// As the API shows it; `with_message` adds the message itself.
    pub fn view(&self, with_message: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "key": self.key,
            "channel": self.channel,
            "channel_kind": self.channel_kind,
            "status": self.status,
            "created_at": format_micros(self.created_at),
            "finished_at": self.finished_at.map(format_micros),
            "attempt_count": self.attempt_count,
            "attempts": self.attempts.iter().map(AttemptRecord::view).collect::<Vec<_>>(),
            "subject": self.message.subject,
        });
        if self.status == DeliveryStatus::Pending {
            v["next_attempt_at"] = json!(format_micros(self.next_at));
        }
        if with_message {
            v["message"] = json!(self.message);
        }
        v
    }

    /// Adds an attempt's result; a finished delivery gets `finished_at`.
    pub(super) fn record_attempt(&mut self, attempt: AttemptRecord) {
        self.attempt_count = attempt.number.max(self.attempt_count);
        match attempt.outcome {
            AttemptOutcome::Delivered => {
                self.status = DeliveryStatus::Delivered;
                self.finished_at = Some(attempt.at);
            }
            AttemptOutcome::Failed => {
                self.status = DeliveryStatus::Failed;
                self.finished_at = Some(attempt.at);
            }
            AttemptOutcome::Retrying { next_at } => self.next_at = next_at,
        }
        if self.attempts.len() >= MAX_KEPT_ATTEMPTS {
            // keep the first attempt, drop the oldest of the rest
            self.attempts.remove(1);
        }
        self.attempts.push(attempt);
    }
}

/// Filters of a history listing.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub channel: Option<ChannelId>,
    pub key: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// At most this many, newest first.
    pub limit: usize,
}

pub(super) enum Inserted {
    New(DeliveryId),
    Existing(DeliveryId),
}

pub(super) struct Outbox {
    tree: sled::Tree,
    /// Finished deliveries in the history (the `f` keys).
    finished: AtomicUsize,
}

fn delivery_key(id: &DeliveryId) -> Vec<u8> {
    let mut k = vec![KEY_DELIVERY];
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn idempotency_key(channel: &ChannelId, key: &str) -> Vec<u8> {
    let mut k = vec![KEY_IDEMPOTENCY];
    k.extend_from_slice(channel.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn finished_key(at: Micros, id: &DeliveryId) -> Vec<u8> {
    let mut k = vec![KEY_FINISHED];
    k.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("outbox {what} does not decode: {e}"))
}

impl Outbox {
    pub(super) fn new(tree: sled::Tree) -> Outbox {
        let finished = tree.scan_prefix([KEY_FINISHED]).count();
        Outbox {
            tree,
            finished: AtomicUsize::new(finished),
        }
    }

    /// Every pending delivery's (due time, id).
    pub(super) fn pending(&self) -> Result<Vec<(Micros, DeliveryId)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([KEY_DELIVERY]) {
            let (k, v) = item?;
            match serde_json::from_slice::<Delivery>(&v) {
                Ok(d) if d.status == DeliveryStatus::Pending => out.push((d.next_at, d.id)),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&k[1..]), error = %e, "stored delivery does not decode; skipped")
                }
            }
        }
        Ok(out)
    }

    pub(super) fn insert(
        &self,
        new: NewDelivery,
        kind: ChannelKind,
        now: Micros,
    ) -> Result<Inserted, StoreError> {
        let id = DeliveryId::generate(now);
        let kkey = idempotency_key(&new.channel, &new.key);
        let record = Delivery {
            v: RECORD_VERSION,
            id: id.clone(),
            key: new.key,
            channel: new.channel,
            channel_kind: kind,
            message: new.message,
            status: DeliveryStatus::Pending,
            created_at: now,
            next_at: now,
            finished_at: None,
            attempts: Vec::new(),
            attempt_count: 0,
        };
        let value = serde_json::to_vec(&record).map_err(|e| StoreError::Io(e.to_string()))?;
        let dkey = delivery_key(&id);
        let outcome = self
            .tree
            .transaction(|t| {
                if let Some(existing) = t.get(&kkey)? {
                    return Ok(Inserted::Existing(DeliveryId(
                        String::from_utf8_lossy(&existing).into_owned(),
                    )));
                }
                t.insert(kkey.as_slice(), id.as_str().as_bytes())?;
                t.insert(dkey.as_slice(), value.as_slice())?;
                Ok(Inserted::New(id.clone()))
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(s) => StoreError::from(s),
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::Io("the outbox insert was aborted".into())
                }
            })?;
        Ok(outcome)
    }

    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        self.tree.flush_async().await?;
        Ok(())
    }

    pub(super) fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        match self.tree.get(delivery_key(id))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| corrupt(id.as_str(), e)),
        }
    }

    /// Writes a delivery after an attempt (and its place in the history once finished).
    pub(super) fn save(&self, d: &Delivery) -> Result<(), StoreError> {
        let value = serde_json::to_vec(d).map_err(|e| StoreError::Io(e.to_string()))?;
        let mut batch = sled::Batch::default();
        batch.insert(delivery_key(&d.id), value);
        if let Some(at) = d.finished_at {
            batch.insert(finished_key(at, &d.id), &[][..]);
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Drops the oldest finished deliveries past `history_max` and those finished more than
    /// `history_age` ago (their idempotency keys with them).
    pub(super) fn prune(&self, tuning: &NotifyTuning, now: Micros) -> Result<usize, StoreError> {
        let cutoff =
            now.saturating_sub(i64::try_from(tuning.history_age.as_micros()).unwrap_or(i64::MAX));
        let mut removed = 0;
        loop {
            let Some(item) = self.tree.scan_prefix([KEY_FINISHED]).next() else {
                break;
            };
            let (fkey, _) = item?;
            if fkey.len() < 9 {
                self.tree.remove(&fkey)?;
                continue;
            }
            let at = u64::from_be_bytes(fkey[1..9].try_into().expect("8 bytes")) as i64;
            let over = self.finished.load(Ordering::Relaxed) > tuning.history_max;
            if !over && at >= cutoff {
                break;
            }
            let id = DeliveryId(String::from_utf8_lossy(&fkey[9..]).into_owned());
            let mut batch = sled::Batch::default();
            batch.remove(&fkey);
            if let Some(d) = self.get(&id)? {
                batch.remove(idempotency_key(&d.channel, &d.key));
            }
            batch.remove(delivery_key(&id));
            self.tree.apply_batch(batch)?;
            let _ = self
                .finished
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            removed += 1;
        }
        Ok(removed)
    }

    /// Deliveries newest first, filtered.
    pub(super) fn list(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>, StoreError> {
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        if let (Some(channel), Some(key)) = (&q.channel, &q.key) {
            if let Some(id) = self.tree.get(idempotency_key(channel, key))? {
                let id = DeliveryId(String::from_utf8_lossy(&id).into_owned());
                if let Some(d) = self.get(&id)? {
                    if q.status.is_none_or(|s| s == d.status) {
                        out.push(d);
                    }
                }
            }
            return Ok(out);
        }
        for item in self.tree.scan_prefix([KEY_DELIVERY]).rev() {
            let (_, v) = item?;
            let Ok(d) = serde_json::from_slice::<Delivery>(&v) else {
                continue;
            };
            if q.channel.as_ref().is_some_and(|c| *c != d.channel)
                || q.key.as_ref().is_some_and(|k| *k != d.key)
                || q.status.is_some_and(|s| s != d.status)
            {
                continue;
            }
            out.push(d);
            if out.len() >= q.limit {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outbox() -> (sled::Db, Outbox) {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("desk:outbox").expect("tree");
        (db, Outbox::new(tree))
    }

    fn new(key: &str, channel: &ChannelId) -> NewDelivery {
        NewDelivery {
            key: key.into(),
            channel: channel.clone(),
            message: Message {
                subject: "s".into(),
                text: "t".into(),
                json: json!({"n": 1}),
            },
        }
    }

    fn finish(o: &Outbox, id: &DeliveryId, at: Micros) {
        let mut d = o.get(id).expect("read").expect("there");
        d.record_attempt(AttemptRecord {
            number: 1,
            at,
            outcome: AttemptOutcome::Delivered,
            status: Some(200),
            error: None,
            duration_ms: 1,
        });
        o.save(&d).expect("saved");
    }

    #[test]
    fn the_same_key_to_the_same_channel_is_one_delivery() {
        let (_db, o) = outbox();
        let a = ChannelId("ch_000000000000000a".into());
        let b = ChannelId("ch_000000000000000b".into());
        let Inserted::New(first) = o
            .insert(new("k1", &a), ChannelKind::Webhook, 1)
            .expect("in")
        else {
            panic!("first is new")
        };
        let Inserted::Existing(again) = o
            .insert(new("k1", &a), ChannelKind::Webhook, 2)
            .expect("in")
        else {
            panic!("second is the first")
        };
        assert_eq!(first, again);
        assert!(matches!(
            o.insert(new("k1", &b), ChannelKind::Webhook, 3)
                .expect("in"),
            Inserted::New(_)
        ));
        assert_eq!(o.pending().expect("pending").len(), 2);
    }

    #[test]
    fn history_is_pruned_by_count_then_age_and_frees_the_key() {
        let (_db, o) = outbox();
        let c = ChannelId("ch_000000000000000c".into());
        let tuning = NotifyTuning {
            history_max: 10,
            history_age: Duration::from_secs(100),
            ..NotifyTuning::default()
        };
        let mut ids = Vec::new();
        for i in 0..15 {
            let Inserted::New(id) = o
                .insert(new(&format!("k{i}"), &c), ChannelKind::Slack, i)
                .expect("in")
            else {
                panic!("new")
            };
            finish(&o, &id, 1_000_000 + i);
            ids.push(id);
        }
        assert_eq!(o.prune(&tuning, 2_000_000).expect("pruned"), 5);
        assert!(o.get(&ids[4]).expect("read").is_none());
        assert!(o.get(&ids[5]).expect("read").is_some());
        assert!(matches!(
            o.insert(new("k0", &c), ChannelKind::Slack, 99).expect("in"),
            Inserted::New(_)
        ));
        // 200 s later every one is older than 100 s
        assert_eq!(o.prune(&tuning, 201_000_000).expect("pruned"), 10);
        let all = o
            .list(&DeliveryQuery {
                limit: 100,
                ..DeliveryQuery::default()
            })
            .expect("list");
        assert_eq!(all.len(), 1, "only the pending one is left");
        assert_eq!(all[0].status, DeliveryStatus::Pending);
    }

    #[test]
    fn listing_filters_and_orders_newest_first() {
        let (_db, o) = outbox();
        let c = ChannelId("ch_000000000000000c".into());
        let d = ChannelId("ch_000000000000000d".into());
        for i in 0..6 {
            let ch = if i % 2 == 0 { &c } else { &d };
            let Inserted::New(id) = o
                .insert(new(&format!("k{i}"), ch), ChannelKind::Slack, i * 10)
                .expect("in")
            else {
                panic!("new")
            };
            if i < 2 {
                finish(&o, &id, 100 + i);
            }
        }
        let q = |channel: Option<&ChannelId>, status, limit| DeliveryQuery {
            channel: channel.cloned(),
            key: None,
            status,
            limit,
        };
        let keys = |v: Vec<Delivery>| v.into_iter().map(|d| d.key).collect::<Vec<_>>();
        assert_eq!(
            keys(o.list(&q(Some(&c), None, 10)).expect("l")),
            ["k4", "k2", "k0"]
        );
        assert_eq!(
            keys(
                o.list(&q(None, Some(DeliveryStatus::Delivered), 10))
                    .expect("l")
            ),
            ["k1", "k0"]
        );
        assert_eq!(keys(o.list(&q(None, None, 2)).expect("l")), ["k5", "k4"]);
        let by_key = o
            .list(&DeliveryQuery {
                channel: Some(d.clone()),
                key: Some("k3".into()),
                status: None,
                limit: 10,
            })
            .expect("l");
        assert_eq!(keys(by_key), ["k3"]);
    }
}
