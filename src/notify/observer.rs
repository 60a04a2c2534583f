//! The default observer: every attempt becomes a `notify.delivery` event of the `trailhub`
//! integration, outcome success (delivered) or failure (retrying, failed)
//!
//! Attempts are handed over through a bounded queue to a task that records them (many at once,
//! so that they share the store's group commits); a full queue drops the record, counted and
//! logged, rather than hold a delivery back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::mpsc;

use super::{Attempt, AttemptObserver, AttemptOutcome};
use crate::audit::{self, AdminAction};
use crate::schema::{Action, Category, Outcome, Severity, Target};
use crate::store::Store;
use crate::time::format_micros;

/// Attempts waiting to be recorded.
const QUEUE: usize = 16_384;
/// Attempts recorded at once.
const BATCH: usize = 256;

pub struct AuditObserver {
    tx: Mutex<Option<mpsc::Sender<Attempt>>>,
    dropped: AtomicU64,
}

impl AuditObserver {
    /// The observer and the task that records; `close` then await the task to drain it.
    pub fn spawn(store: Store) -> (Arc<AuditObserver>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Attempt>(QUEUE);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // one commit for the batch: idempotent by each attempt's own source id
                let events: Vec<_> = batch.drain(..).map(event_of).collect();
                if let Err(e) = audit::commit(&store, events).await {
                    tracing::warn!(error = %e, "notification attempts were not recorded as events");
                }
            }
        });
        (
            Arc::new(AuditObserver {
                tx: Mutex::new(Some(tx)),
                dropped: AtomicU64::new(0),
            }),
            task,
        )
    }

    /// No more attempts are taken; the task ends once it has recorded those queued.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }

    /// Attempts not recorded because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AttemptObserver for AuditObserver {
    fn attempted(&self, attempt: &Attempt) {
        let full = match self.tx.lock() {
            Ok(tx) => match tx.as_ref() {
                Some(tx) => matches!(
                    tx.try_send(attempt.clone()),
                    Err(mpsc::error::TrySendError::Full(_))
                ),
                None => false,
            },
            Err(_) => false,
        };
        if full {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "notification attempts arrive faster than they are recorded as events; some are not recorded");
            }
        }
    }
}

/// The `notify.delivery` record of one attempt; its source id (delivery and attempt number)
/// makes recording it twice store it once.
fn event_of(a: Attempt) -> crate::schema::Event {
    let outcome = match a.outcome {
        AttemptOutcome::Delivered => Outcome::Success,
        AttemptOutcome::Retrying { .. } | AttemptOutcome::Failed => Outcome::Failure,
    };
    let next_at = match a.outcome {
        AttemptOutcome::Retrying { next_at } => Some(format_micros(next_at)),
        _ => None,
    };
    let mut description = format!(
        "notification {} to {} channel {}: attempt {} {}",
        a.delivery_id,
        a.channel_kind.as_str(),
        a.channel_id,
        a.number,
        a.outcome.as_str()
    );
    if let Some(s) = a.status {
        description.push_str(&format!(" (status {s})"));
    }
    let severity = match a.outcome {
        AttemptOutcome::Failed => Severity::Medium,
        _ => Severity::Low,
    };
    audit::system_event(
        "notifier",
        format!("notify.delivery:{}:{}", a.delivery_id, a.number),
        severity,
        outcome,
        AdminAction {
            event_type: "notify.delivery",
            action: Action::Execute,
            category: Category::System,
            target: Some(Target {
                kind: "notification_channel".into(),
                id: a.channel_id.to_string(),
                name: None,
            }),
            description,
            details: json!({
                "delivery_id": a.delivery_id,
                "key": a.key,
                "channel_id": a.channel_id,
                "channel_kind": a.channel_kind,
                "attempt": a.number,
                "outcome": a.outcome.as_str(),
                "next_at": next_at,
                "status": a.status,
                "error": a.error,
                "latency_ms": a.latency.as_millis() as u64,
            }),
        },
    )
}
