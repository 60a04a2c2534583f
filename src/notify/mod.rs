//! Notification channels and the durable delivery outbox that alerts and scheduled reports send
//! through: a message is enqueued (written and flushed before `enqueue` returns), a background
//! worker woken at once delivers it, retries it with backoff across restarts, and reports every
//! attempt to the observers plugged in
//!
//! Channels (`channels`): a signed webhook (Standard Webhooks), a Slack incoming-webhook URL, or
//! email over SMTP; their secrets sealed with the master key and never shown again. The outbox
//! (`outbox`): one record per delivery in the `desk:outbox` tree, with its attempts, an
//! idempotency index (key, channel) → delivery, and the finished ones kept as bounded history.
//! How an answer is classified and when the next attempt comes is `retry` (pure); the requests
//! themselves are `send`; the loop that picks due deliveries is `worker`.
//!
//! Delivery is at least once: an attempt in flight when the hub dies is made again after the
//! restart, with the same delivery id (the webhook's `webhook-id`, the email's `Message-ID`), so
//! a receiver can drop the repeat.

pub mod channels;
mod observer;
mod outbox;
mod retry;
mod send;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use channels::{
    ChannelError, ChannelInput, ChannelKind, ChannelPatch, ChannelRecord, Channels, Created,
};
pub use observer::AuditObserver;
pub use outbox::{AttemptRecord, Delivery, DeliveryQuery, DeliveryStatus};

use crate::config::NotifyTuning;
use crate::secrets::MasterKey;
use crate::store::{Store, StoreError};
use crate::time::{now_micros, Micros};

/// Longest idempotency key of a delivery, bytes.
pub const MAX_KEY_BYTES: usize = 200;
/// Longest subject of a message, characters.
pub const MAX_SUBJECT_CHARS: usize = 500;
/// Largest text of a message, bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Largest JSON part of a message, serialised, bytes.
pub const MAX_JSON_BYTES: usize = 256 * 1024;
/// Deliveries waiting (pending) at once; past it `enqueue` is refused with `Full`.
pub const MAX_PENDING: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Bad input; `field` names the part at fault.
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("no channel with id {0:?}")]
    UnknownChannel(String),
    #[error("the outbox holds {MAX_PENDING} pending deliveries; refusing more until some are delivered or given up")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for NotifyError {
    fn from(e: sled::Error) -> Self {
        NotifyError::Store(e.into())
    }
}

fn invalid(field: &str, message: impl Into<String>) -> NotifyError {
    NotifyError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A channel's id: `ch_` and 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(String);

impl ChannelId {
    /// The id if `text` has the shape of one (it may still name no channel).
    pub fn parse(text: &str) -> Option<ChannelId> {
        let hex = text.strip_prefix("ch_")?;
        (hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| ChannelId(text.to_string()))
    }

    fn generate() -> ChannelId {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random source is available");
        ChannelId(format!("ch_{}", hex::encode(b)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A delivery's id: `dlv_`, the enqueue time (16 hex digits of micros, so ids sort by it) and 8
/// random hex digits. It is the webhook's `webhook-id` (no `.`, as the signature scheme wants).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn parse(text: &str) -> Option<DeliveryId> {
        let hex = text.strip_prefix("dlv_")?;
        (hex.len() == 24 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| DeliveryId(text.to_string()))
    }

    fn generate(at: Micros) -> DeliveryId {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).expect("the OS random source is available");
        DeliveryId(format!("dlv_{:016x}{}", at.max(0), hex::encode(b)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is sent: a subject (email subject, Slack header), a text (email body, Slack text), and
/// a JSON value (the webhook's `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub json: serde_json::Value,
}

impl Message {
    fn check(&self) -> Result<(), NotifyError> {
        if self.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(invalid(
                "message.subject",
                format!("at most {MAX_SUBJECT_CHARS} characters"),
            ));
        }
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(invalid(
                "message.text",
                format!("at most {MAX_TEXT_BYTES} bytes"),
            ));
        }
        let json_len = serde_json::to_vec(&self.json).map_or(usize::MAX, |v| v.len());
        if json_len > MAX_JSON_BYTES {
            return Err(invalid(
                "message.json",
                format!("at most {MAX_JSON_BYTES} bytes serialised"),
            ));
        }
        Ok(())
    }
}

/// A delivery to enqueue. `key` makes it idempotent: a second enqueue with the same key to the
/// same channel returns the first one's id and sends nothing more (an alert firing re-evaluated
/// after a restart, a report schedule fired twice).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub key: String,
    pub channel: ChannelId,
    pub message: Message,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AttemptOutcome {
    /// The receiver took it (2xx; the SMTP server accepted the mail).
    Delivered,
    /// It failed and is tried again at `next_at`.
    Retrying {
        #[serde(with = "crate::schema::rfc3339_micros")]
        next_at: Micros,
    },
    /// It failed for good: a permanent refusal, or the attempts or the time ran out.
    Failed,
}

impl AttemptOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retrying { .. } => "retrying",
            AttemptOutcome::Failed => "failed",
        }
    }
}

/// One delivery attempt, as reported to the observers.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    pub key: String,
    pub channel_id: ChannelId,
    pub channel_kind: ChannelKind,
    /// 1 for the first attempt.
    pub number: u32,
    pub outcome: AttemptOutcome,
    /// The receiver's HTTP status, or the SMTP reply code.
    pub status: Option<u16>,
    /// Why it failed: never a secret, nor a URL beyond its scheme and host.
    pub error: Option<String>,
    /// When the attempt ended.
    pub at: Micros,
    /// From the enqueue to the end of this attempt.
    pub latency: Duration,
}

/// Told of every attempt, from the worker's tasks: it must not block (hand the attempt to a
/// task or a channel of its own).
pub trait AttemptObserver: Send + Sync {
    fn attempted(&self, attempt: &Attempt);
}

/// The outbox and its channels; cheap to clone. `open` reads the state, `start` runs the worker.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    tuning: NotifyTuning,
    channels: Channels,
    outbox: outbox::Outbox,
    queue: worker::Queue,
    observers: RwLock<Vec<Arc<dyn AttemptObserver>>>,
    /// Callers waiting for a delivery's next attempt (the channel test).
    waiters: Mutex<HashMap<DeliveryId, Vec<tokio::sync::oneshot::Sender<Attempt>>>>,
    sender: send::Sender,
    pending: AtomicUsize,
    worker: tokio::sync::Mutex<Option<worker::Running>>,
    /// The default observer, when installed, and its task.
    audit: tokio::sync::Mutex<Option<(Arc<AuditObserver>, tokio::task::JoinHandle<()>)>>,
}

impl Notifier {
    /// The channels and the outbox of `store`, with every pending delivery queued again (due at
    /// once if its attempt was in flight when the hub stopped). Nothing runs until `start`.
    pub fn open(
        store: &Store,
        key: MasterKey,
        tuning: NotifyTuning,
    ) -> Result<Notifier, NotifyError> {
        let channels = Channels::new(store.desk_tree("channels")?, key);
        match channels.unopenable() {
            Ok(lost) if !lost.is_empty() => {
                tracing::warn!(channels = %lost.join(", "), "the secrets of these notification channels do not open with this master key (sealed under another one): their deliveries fail until the secrets are set again (PATCH /api/v1/channels/{{id}})")
            }
            _ => {}
        }
        let outbox = outbox::Outbox::new(store.desk_tree("outbox")?);
        let queue = worker::Queue::default();
        let pending = outbox.pending()?;
        let count = pending.len();
        for (next_at, id) in pending {
            queue.push(next_at, id);
        }
        outbox.prune(&tuning, now_micros())?;
        let sender = send::Sender::new(&tuning);
        Ok(Notifier {
            shared: Arc::new(Shared {
                store: store.clone(),
                tuning,
                channels,
                outbox,
                queue,
                observers: RwLock::new(Vec::new()),
                waiters: Mutex::new(HashMap::new()),
                sender,
                pending: AtomicUsize::new(count),
                worker: tokio::sync::Mutex::new(None),
                audit: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Starts the worker on the current runtime.
    pub async fn start(&self) {
        let mut worker = self.shared.worker.lock().await;
        if worker.is_none() {
            *worker = Some(worker::spawn(self.clone()));
        }
    }

    /// Records every attempt as a `notify.delivery` event of the `trailhub` integration (the
    /// default observer; see `AuditObserver`). Once is enough: a second call does nothing.
    pub async fn record_attempts_as_events(&self) {
        let mut audit = self.shared.audit.lock().await;
        if audit.is_none() {
            let (observer, task) = AuditObserver::spawn(self.shared.store.clone());
            self.add_observer(observer.clone());
            *audit = Some((observer, task));
        }
    }

    /// Stops the worker: no new attempt starts, those in flight get up to 5 s (or the attempt
    /// timeout) to finish (one cut short stays pending and is made again after the next start); then
    /// the attempts' events are recorded. Call it before the store closes.
    pub async fn shutdown(&self) {
        let running = self.shared.worker.lock().await.take();
        if let Some(r) = running {
            r.stop().await;
        }
        let audit = self.shared.audit.lock().await.take();
        if let Some((observer, task)) = audit {
            observer.close();
            let _ = task.await;
        }
    }

    pub fn channels(&self) -> &Channels {
        &self.shared.channels
    }

    pub fn tuning(&self) -> &NotifyTuning {
        &self.shared.tuning
    }

    /// Adds an observer of every attempt from now on.
    pub fn add_observer(&self, observer: Arc<dyn AttemptObserver>) {
        if let Ok(mut list) = self.shared.observers.write() {
            list.push(observer);
        }
    }

    /// Persists the delivery (flushed before this returns) and wakes the worker. A second
    /// enqueue with the same key to the same channel returns the existing delivery's id.
    pub async fn enqueue(&self, new: NewDelivery) -> Result<DeliveryId, NotifyError> {
        if new.key.is_empty() || new.key.len() > MAX_KEY_BYTES {
            return Err(invalid(
                "key",
                format!("1 to {MAX_KEY_BYTES} bytes, got {}", new.key.len()),
            ));
        }
        new.message.check()?;
        let channel = self
            .shared
            .channels
            .get(&new.channel)
            .map_err(|_| NotifyError::UnknownChannel(new.channel.to_string()))?;
        if self.shared.pending.load(Ordering::Relaxed) >= MAX_PENDING {
            return Err(NotifyError::Full);
        }
        let now = now_micros();
        let added = self.shared.outbox.insert(new, channel.kind, now)?;
        let id = match added {
            outbox::Inserted::New(id) => {
                self.shared.outbox.flush().await?;
                self.shared.pending.fetch_add(1, Ordering::Relaxed);
                self.shared.queue.push(now, id.clone());
                id
            }
            outbox::Inserted::Existing(id) => id,
        };
        Ok(id)
    }

    /// One delivery with its attempts.
    pub fn delivery(&self, id: &DeliveryId) -> Result<Option<Delivery>, NotifyError> {
        Ok(self.shared.outbox.get(id)?)
    }

    /// Deliveries newest first, filtered.
    pub fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, NotifyError> {
        Ok(self.shared.outbox.list(query)?)
    }

    /// Deliveries not yet delivered nor given up.
    pub fn pending_count(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// The delivery's first attempt: the one recorded already, else the next one to end within
    /// `wait` (`None` if none did).
    pub async fn first_attempt(&self, id: &DeliveryId, wait: Duration) -> Option<AttemptRecord> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Ok(mut w) = self.shared.waiters.lock() {
            w.entry(id.clone()).or_default().push(tx);
        }
        // registered first, so an attempt ending between the two is seen one way or the other
        let recorded = self
            .delivery(id)
            .ok()
            .flatten()
            .and_then(|d| d.attempts.first().cloned());
        let answer = match recorded {
            Some(a) => Some(a),
            None => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(a)) => Some(AttemptRecord::from(&a)),
                _ => None,
            },
        };
        if let Ok(mut w) = self.shared.waiters.lock() {
            w.remove(id);
        }
        answer
    }

    fn report(&self, attempt: &Attempt) {
        let observers = match self.shared.observers.read() {
            Ok(list) => list.clone(),
            Err(_) => Vec::new(),
        };
        for o in observers {
            o.attempted(attempt);
        }
        let waiting = match self.shared.waiters.lock() {
            Ok(mut w) => w.remove(&attempt.delivery_id),
            Err(_) => None,
        };
        for tx in waiting.into_iter().flatten() {
            let _ = tx.send(attempt.clone());
        }
    }
}
