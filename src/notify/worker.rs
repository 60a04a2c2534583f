//! The loop that attempts due deliveries: woken at once by an enqueue (no polling delay),
//! otherwise asleep until the next retry is due; at most `concurrency` attempts at once
//!
//! The queue of due times is in memory and rebuilt from the outbox at start. An attempt leaves
//! its delivery pending until its result is written, so one cut short by a crash or a stop is
//! made again (the same delivery id) after the next start.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::outbox::{AttemptRecord, DeliveryStatus};
use super::retry::{self, Verdict};
use super::{Attempt, AttemptOutcome, ChannelError, DeliveryId, Notifier};
use crate::time::{now_micros, Micros};

/// Longest wait at a stop for attempts in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Due times, earliest first, and the wake-up of the loop.
#[derive(Default)]
pub(super) struct Queue {
    due: Mutex<BTreeSet<(Micros, DeliveryId)>>,
    /// Deliveries being attempted: never two attempts of one at once.
    in_flight: Mutex<HashSet<DeliveryId>>,
    wake: Notify,
}

enum Next {
    Due(DeliveryId),
    At(Micros),
    Empty,
}

impl Queue {
    pub(super) fn push(&self, at: Micros, id: DeliveryId) {
        if let Ok(mut due) = self.due.lock() {
            due.insert((at, id));
        }
        // a permit is stored when the loop is not waiting yet, so no wake-up is lost
        self.wake.notify_one();
    }

    fn next(&self, now: Micros) -> Next {
        let Ok(mut due) = self.due.lock() else {
            return Next::Empty;
        };
        loop {
            let Some((at, id)) = due.first().cloned() else {
                return Next::Empty;
            };
            if at > now {
                return Next::At(at);
            }
            due.pop_first();
            let fresh = self
                .in_flight
                .lock()
                .map(|mut f| f.insert(id.clone()))
                .unwrap_or(false);
            if fresh {
                return Next::Due(id);
            }
        }
    }

    fn done(&self, id: &DeliveryId) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(id);
        }
    }
}

/// The running loop.
pub(super) struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops starting attempts and waits for those in flight (at most `STOP_GRACE`).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub(super) fn spawn(notifier: Notifier) -> Running {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    // a stop does not wait long for a slow receiver: an attempt cut short is made again later
    let grace = notifier.shared.tuning.timeout.min(STOP_GRACE);
    let task = tokio::spawn(async move {
        let shared = notifier.shared.clone();
        let permits = Arc::new(Semaphore::new(shared.tuning.concurrency));
        let mut attempts = JoinSet::new();
        loop {
            while attempts.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stopped.changed() => break,
            };
            let now = now_micros();
            let wait = match shared.queue.next(now) {
                Next::Due(id) => {
                    attempts.spawn(attempt(notifier.clone(), id, permit));
                    continue;
                }
                Next::At(at) => Duration::from_micros((at - now).max(0) as u64),
                // an enqueue wakes the loop; the hour only bounds a sleep nothing else ends
                Next::Empty => Duration::from_secs(3600),
            };
            drop(permit);
            tokio::select! {
                _ = shared.queue.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => break,
            }
        }
        // attempts in flight get a little time to end; one cut short stays pending
        let drained = tokio::time::timeout(grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            attempts.abort_all();
            while attempts.join_next().await.is_some() {}
        }
    });
    Running { stop, task }
}

async fn attempt(notifier: Notifier, id: DeliveryId, _permit: OwnedSemaphorePermit) {
    let shared = &notifier.shared;
    let result = attempt_once(&notifier, &id).await;
    shared.queue.done(&id);
    if let Err(e) = result {
        // the delivery stays pending in the store: it is attempted again after a restart
        tracing::error!(delivery = %id, error = %e, "a notification attempt could not be recorded");
    }
}

async fn attempt_once(
    notifier: &Notifier,
    id: &DeliveryId,
) -> Result<(), crate::store::StoreError> {
    let shared = &notifier.shared;
    let Some(mut d) = shared.outbox.get(id)? else {
        return Ok(());
    };
    if d.status != DeliveryStatus::Pending {
        return Ok(());
    }
    let number = d.attempt_count.saturating_add(1);
    let started = Instant::now();
    let sent = match shared.channels.get(&d.channel) {
        Err(ChannelError::NotFound(_)) => super::send::Sent {
            verdict: Verdict::Permanent,
            status: None,
            error: Some("the channel was deleted".into()),
        },
        Err(e) => super::send::Sent {
            verdict: Verdict::Retry { wait: None },
            status: None,
            error: Some(e.to_string()),
        },
        Ok(channel) => match shared.channels.opened(&channel) {
            Ok(opened) => shared.sender.send(&channel, &opened, &d).await,
            Err(e) => super::send::Sent {
                verdict: Verdict::Retry { wait: None },
                status: None,
                error: Some(e.to_string()),
            },
        },
    };
    let now = now_micros();
    let (outcome, gave_up) = retry::decide(
        &shared.tuning,
        sent.verdict,
        number,
        d.created_at,
        now,
        retry::jitter(),
    );
    let error = match (sent.error, gave_up) {
        (Some(e), Some(why)) => Some(format!("{e}; given up: {why}")),
        (e, _) => e,
    };
    d.record_attempt(AttemptRecord {
        number,
        at: now,
        outcome,
        status: sent.status,
        error: error.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
    });
    shared.outbox.save(&d)?;
    match outcome {
        AttemptOutcome::Retrying { next_at } => {
            shared.queue.push(next_at, id.clone());
            tracing::debug!(delivery = %id, channel = %d.channel, attempt = number, status = ?sent.status, error = error.as_deref().unwrap_or(""), "notification attempt failed; retrying");
        }
        AttemptOutcome::Delivered | AttemptOutcome::Failed => {
            // a finished delivery is not attempted again after a crash: flushed
            shared.outbox.flush().await?;
            let _ = shared
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            shared.outbox.prune(&shared.tuning, now)?;
            if outcome == AttemptOutcome::Failed {
                tracing::warn!(delivery = %id, channel = %d.channel, attempts = number, status = ?sent.status, error = error.as_deref().unwrap_or(""), "notification delivery failed");
            } else {
                tracing::debug!(delivery = %id, channel = %d.channel, attempt = number, "notification delivered");
            }
        }
    }
    let latency = Duration::from_micros(now.saturating_sub(d.created_at).max(0) as u64);
    notifier.report(&Attempt {
        delivery_id: id.clone(),
        key: d.key.clone(),
        channel_id: d.channel.clone(),
        channel_kind: d.channel_kind,
        number,
        outcome,
        status: sent.status,
        error,
        at: now,
        latency,
    });
    Ok(())
}
