//! When each integration polls: cron fires, a bounded worker pool, idle and error backoff,
//! manual polls, and a shutdown that lets each cycle finish the page in hand
//!
//! A due fire starts a poll cycle unless one is running for that integration. A cycle that
//! finds nothing lengthens the wait before the next (up to `idle_backoff` × the schedule
//! interval, at most `PollTuning::idle_backoff_max`); one that finds events, or a manual poll,
//! resets it. Failing cycles back off the same way, bounded by `error_backoff_max`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify, Semaphore};

use crate::connectors::definition::{LimitScope, Poll};
use crate::connectors::engine::{
    self, CursorCell, CycleError, PollContext, PollTuning, Progress, Transport,
};
use crate::connectors::integrations::{IntegrationRecord, Integrations, Status};
use crate::connectors::ratelimit::RateGate;
use crate::connectors::Connector;
use crate::metrics::{IntegrationLabels, Metrics};
use crate::schedule::{interval, parse_schedule};
use crate::store::Store;
use crate::time::{now_micros, Micros};

/// Default idle backoff factor over the schedule interval.
pub const DEFAULT_IDLE_BACKOFF: u32 = 4;
/// How often the scheduler looks at the clock when nothing wakes it.
const TICK: Duration = Duration::from_millis(200);
/// How long shutdown waits for running cycles to finish their page.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

struct Slot {
    record: Arc<IntegrationRecord>,
    schedule: cron::Schedule,
    next_fire: DateTime<Utc>,
    not_before: Option<DateTime<Utc>>,
    empty_cycles: u32,
    failed_cycles: u32,
    running: bool,
    poll_requested: bool,
    gate: Arc<RateGate>,
    status: Arc<Mutex<Status>>,
    stop: watch::Sender<bool>,
    /// The cursor shared by the live cycles and the backfill (see `CursorCell`).
    cursor: Arc<CursorCell>,
    /// Backfill windows are left to walk (a cycle said so); `backfilling` while they are.
    backfill_pending: bool,
    backfilling: bool,
}

struct Inner {
    store: Store,
    integrations: Integrations,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    tuning: PollTuning,
    slots: Mutex<HashMap<String, Slot>>,
    /// Rate gates by owner: an integration, or a connector's vendor host (see `gate_for`).
    gates: Mutex<HashMap<String, Arc<RateGate>>>,
    wake: Notify,
    workers: Arc<Semaphore>,
    shutting_down: watch::Sender<bool>,
    /// The loop and the cycles, awaited on shutdown so that no task still holds the store.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The running scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// Loads every stored integration and starts the scheduling loop on the current runtime.
    pub fn start(
        store: Store,
        integrations: Integrations,
        metrics: Arc<Metrics>,
        tuning: PollTuning,
    ) -> Scheduler {
        let (shutting_down, _) = watch::channel(false);
        let scheduler = Scheduler {
            inner: Arc::new(Inner {
                store,
                integrations: integrations.clone(),
                metrics,
                http: engine::http_client(&tuning),
                workers: Arc::new(Semaphore::new(tuning.workers.max(1))),
                tuning,
                slots: Mutex::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                shutting_down,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        match integrations.list() {
            Ok(list) => {
                for r in list {
                    scheduler.upsert(r);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot load the integrations; none will poll"),
        }
        let s = scheduler.clone();
        scheduler.track(tokio::spawn(async move { s.run().await }));
        scheduler
    }

    fn track(&self, handle: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(handle);
        }
    }

    /// Adds an integration or takes its changed settings (after create and update).
    pub fn upsert(&self, record: IntegrationRecord) {
        let Ok(connector) = self.inner.integrations.registry().get(&record.connector) else {
            tracing::error!(integration = %record.id, connector = %record.connector, "integration names an unknown connector; not scheduled");
            return;
        };
        let Some(poll) = &connector.poll else {
            // its vendor pushes to /hooks/<id>; there is nothing to poll
            return;
        };
        let schedule = match parse_schedule(record.schedule_text(poll)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(integration = %record.id, error = %e, "bad schedule; not scheduled");
                return;
            }
        };
        let now = Utc::now();
        let next_fire = schedule.after(&now).next().unwrap_or(now);
        let gate = self.gate_for(&connector, poll, &record);
        let Ok(mut slots) = self.inner.slots.lock() else {
            return;
        };
        match slots.get_mut(&record.id) {
            Some(slot) => {
                // pausing stops what runs (a long backfill too) after the page in hand;
                // resuming lets the next cycles run again
                if record.paused != slot.record.paused && !*self.inner.shutting_down.borrow() {
                    let _ = slot.stop.send(record.paused);
                }
                // the same gate (and any wait a vendor imposed) unless its key changed
                slot.gate = gate;
                slot.record = Arc::new(record);
                slot.schedule = schedule;
                slot.next_fire = next_fire;
                slot.not_before = None;
                slot.empty_cycles = 0;
                slot.failed_cycles = 0;
            }
            None => {
                let status = self
                    .inner
                    .integrations
                    .status(&record.id)
                    .unwrap_or_default();
                let (stop, _) = watch::channel(*self.inner.shutting_down.borrow() || record.paused);
                // a new integration starts its backfill at once
                let poll_requested = status.last_poll_at.is_none();
                slots.insert(
                    record.id.clone(),
                    Slot {
                        gate,
                        record: Arc::new(record),
                        schedule,
                        next_fire,
                        not_before: None,
                        empty_cycles: 0,
                        failed_cycles: 0,
                        running: false,
                        poll_requested,
                        status: Arc::new(Mutex::new(Status {
                            polling: false,
                            ..status
                        })),
                        stop,
                        cursor: Arc::new(CursorCell::new()),
                        backfill_pending: false,
                        backfilling: false,
                    },
                );
            }
        }
        drop(slots);
        self.inner.wake.notify_one();
    }

    /// The rate gate an integration waits at: its own, or the one every integration of the
    /// same connector and vendor host shares (`rate_limit.scope = "host"`: the vendor counts
    /// the budget per org host). A different pace override gets a gate of its own.
    fn gate_for(
        &self,
        connector: &Connector,
        poll: &Poll,
        record: &IntegrationRecord,
    ) -> Arc<RateGate> {
        let owner = match poll.rate_limit.scope {
            LimitScope::Integration => format!("integration {}", record.id),
            LimitScope::Host => {
                let config = record.effective_config(connector);
                let host = config
                    .get("base_url")
                    .and_then(|u| reqwest::Url::parse(u).ok())
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_default();
                format!("host {} {host}", connector.name)
            }
        };
        let key = format!("{owner} {:?}", record.requests_per_minute);
        let Ok(mut gates) = self.inner.gates.lock() else {
            return Arc::new(RateGate::new(&poll.rate_limit, record.requests_per_minute));
        };
        gates
            .entry(key)
            .or_insert_with(|| {
                Arc::new(RateGate::new(&poll.rate_limit, record.requests_per_minute))
            })
            .clone()
    }

    /// Stops collecting for a deleted integration; a running cycle finishes its page.
    pub fn remove(&self, id: &str) {
        if let Ok(mut gates) = self.inner.gates.lock() {
            let own = format!("integration {id} ");
            gates.retain(|k, _| !k.starts_with(&own));
        }
        if let Ok(mut slots) = self.inner.slots.lock() {
            if let Some(slot) = slots.remove(id) {
                let _ = slot.stop.send(true);
            }
        }
        let labels = IntegrationLabels {
            integration: id.to_string(),
        };
        self.inner.metrics.lag_seconds.remove(&labels);
    }

    /// Tests a new integration's settings with one real request of its first page (see
    /// `engine::test_connection`), through a transport built as a cycle's is: the same client,
    /// tuning and rate gate rules (a connector whose budget is the vendor host's shares that
    /// host's gate with the integrations already polling it). Nothing is scheduled or stored;
    /// the request counts in a scratch metrics registry, not under a throwaway id in the hub's.
    /// `None` for a push-only connector: there is nothing to request.
    pub async fn test_connection(
        &self,
        record: &IntegrationRecord,
        credentials: std::collections::BTreeMap<String, crate::config::Secret>,
    ) -> Result<Option<engine::ConnectionTest>, String> {
        let connector = self
            .inner
            .integrations
            .registry()
            .get(&record.connector)
            .map_err(|e| e.to_string())?;
        let Some(poll) = connector.poll.clone() else {
            return Ok(None);
        };
        let gate = match poll.rate_limit.scope {
            LimitScope::Host => self.gate_for(&connector, &poll, record),
            LimitScope::Integration => {
                Arc::new(RateGate::new(&poll.rate_limit, record.requests_per_minute))
            }
        };
        let config = record.effective_config(&connector);
        let scrubber = engine::secrets_scrubber(&connector, &config, &credentials);
        let transport = Transport {
            integration: record.reference(),
            scrubber: std::sync::Mutex::new(scrubber),
            config,
            connector: connector.clone(),
            poll: poll.clone(),
            credentials,
            allow_insecure_http: record.allow_insecure_http,
            filters: Arc::new(
                record
                    .filters
                    .compile()
                    .map_err(|e| format!("filters: {e}"))?,
            ),
            http: self.inner.http.clone(),
            gate,
            tuning: self.inner.tuning.clone(),
            metrics: Arc::new(Metrics::new()),
            stop: self.inner.shutting_down.subscribe(),
        };
        let backfill = record.backfill_micros(&poll, connector.retention);
        Ok(Some(engine::test_connection(&transport, backfill).await))
    }

    /// Polls now, outside the schedule; resets idle and error backoff. False if unknown.
    pub fn poll_now(&self, id: &str) -> bool {
        let found = match self.inner.slots.lock() {
            Ok(mut slots) => match slots.get_mut(id) {
                Some(slot) => {
                    slot.poll_requested = true;
                    slot.not_before = None;
                    slot.empty_cycles = 0;
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        self.inner.wake.notify_one();
        found
    }

    /// The live status of an integration (falls back to the stored one).
    pub fn status(&self, id: &str) -> Status {
        if let Ok(slots) = self.inner.slots.lock() {
            if let Some(slot) = slots.get(id) {
                if let Ok(s) = slot.status.lock() {
                    return s.clone();
                }
            }
        }
        self.inner.integrations.status(id).unwrap_or_default()
    }

    /// Asks every cycle to stop after its page in hand, and waits for them (bounded).
    pub async fn shutdown(&self) {
        let _ = self.inner.shutting_down.send(true);
        if let Ok(slots) = self.inner.slots.lock() {
            for slot in slots.values() {
                let _ = slot.stop.send(true);
            }
        }
        self.inner.wake.notify_one();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let running = self
            .inner
            .slots
            .lock()
            .map(|s| s.values().filter(|s| s.running).count())
            .unwrap_or(0);
        if running > 0 {
            tracing::info!(running, "waiting for poll cycles to commit their page");
        }
        // the loop and every cycle task hold the store: wait until they are gone (a task
        // spawned meanwhile is picked up by the next round)
        loop {
            let tasks: Vec<_> = match self.inner.tasks.lock() {
                Ok(mut t) => t.drain(..).collect(),
                Err(_) => Vec::new(),
            };
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                if tokio::time::timeout_at(deadline, t).await.is_err() {
                    tracing::warn!("a poll cycle is still running at the end of the grace period");
                    return;
                }
            }
        }
    }

    async fn run(&self) {
        let mut shutting = self.inner.shutting_down.subscribe();
        loop {
            if *shutting.borrow() {
                return;
            }
            self.start_due_cycles();
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = shutting.changed() => {}
            }
        }
    }

    fn start_due_cycles(&self) {
        let now = Utc::now();
        let mut due = Vec::new();
        let mut backfills = Vec::new();
        {
            let Ok(mut slots) = self.inner.slots.lock() else {
                return;
            };
            for (id, slot) in slots.iter_mut() {
                let mut fired = false;
                if slot.next_fire <= now {
                    fired = true;
                    slot.next_fire = slot
                        .schedule
                        .after(&now)
                        .next()
                        .unwrap_or(now + chrono::Duration::hours(1));
                }
                let lag = slot
                    .status
                    .lock()
                    .ok()
                    .and_then(|s| s.lag_seconds(now_micros()));
                if let Some(lag) = lag {
                    self.inner
                        .metrics
                        .lag_seconds
                        .get_or_create(&IntegrationLabels {
                            integration: id.clone(),
                        })
                        .set(lag);
                }
                if slot.record.paused {
                    continue;
                }
                if slot.backfill_pending && !slot.backfilling {
                    slot.backfilling = true;
                    backfills.push(id.clone());
                }
                if slot.running {
                    continue;
                }
                let backing_off = slot.not_before.is_some_and(|t| t > now);
                if slot.poll_requested || (fired && !backing_off) {
                    slot.poll_requested = false;
                    slot.running = true;
                    due.push(id.clone());
                }
            }
        }
        for id in due {
            let s = self.clone();
            self.track(tokio::spawn(async move { s.run_cycle(id).await }));
        }
        for id in backfills {
            let s = self.clone();
            self.track(tokio::spawn(async move { s.run_backfill(id).await }));
        }
    }

    /// A cycle's context, and the integration's status it reports to.
    fn context(&self, id: &str) -> Result<(PollContext, Arc<Mutex<Status>>), String> {
        let (record, gate, status, stop, cursor) = {
            let slots = self
                .inner
                .slots
                .lock()
                .map_err(|_| "scheduler lock poisoned".to_string())?;
            let slot = slots
                .get(id)
                .ok_or_else(|| "integration removed".to_string())?;
            (
                slot.record.clone(),
                slot.gate.clone(),
                slot.status.clone(),
                slot.stop.subscribe(),
                slot.cursor.clone(),
            )
        };
        let registry = self.inner.integrations.registry();
        let connector = registry.get(&record.connector).map_err(|e| e.to_string())?;
        let poll = connector.poll.clone().ok_or_else(|| {
            format!(
                "the {} connector is push-only: there is nothing to poll",
                connector.name
            )
        })?;
        let credentials = self
            .inner
            .integrations
            .credentials(&record)
            .map_err(|e| e.to_string())?;
        let config = record.effective_config(&connector);
        let scrubber = engine::secrets_scrubber(&connector, &config, &credentials);
        let progress = Arc::new(StatusProgress {
            id: record.id.clone(),
            status: status.clone(),
            integrations: self.inner.integrations.clone(),
        });
        Ok((
            PollContext {
                transport: Transport {
                    integration: record.reference(),
                    scrubber: std::sync::Mutex::new(scrubber),
                    config,
                    connector: connector.clone(),
                    poll: poll.clone(),
                    credentials,
                    allow_insecure_http: record.allow_insecure_http,
                    filters: Arc::new(record.filters.compile().unwrap_or_else(|e| {
                        // checked when the integration was stored: only a record from an older
                        // version can fail here; it collects everything rather than nothing
                        tracing::error!(integration = %record.id, error = %e, "collection filters do not compile; none applied");
                        crate::connectors::filters::Filters::default()
                    })),
                    http: self.inner.http.clone(),
                    gate,
                    tuning: self.inner.tuning.clone(),
                    metrics: self.inner.metrics.clone(),
                    stop,
                },
                backfill: record.backfill_micros(&poll, connector.retention),
                store: self.inner.store.clone(),
                progress,
                cursor,
            },
            status,
        ))
    }

    async fn run_cycle(&self, id: String) {
        let permit = self.inner.workers.clone().acquire_owned().await;
        let started = std::time::Instant::now();
        let labels = IntegrationLabels {
            integration: id.clone(),
        };
        let result = match self.context(&id) {
            Ok((ctx, status)) => {
                status
                    .lock()
                    .map(|mut s| {
                        s.polling = true;
                        s.last_poll_at = Some(now_micros());
                    })
                    .ok();
                tracing::info!(integration = %id, connector = %ctx.transport.connector.name, "poll started");
                let r = engine::poll_cycle(&ctx).await;
                Some((status, r))
            }
            Err(e) => {
                // e.g. credentials that no longer open: an error state with backoff, like a
                // failed cycle, rather than a complaint on every fire
                tracing::error!(integration = %id, error = %e, "cannot start a poll cycle");
                let status = self
                    .inner
                    .slots
                    .lock()
                    .ok()
                    .and_then(|slots| slots.get(&id).map(|s| s.status.clone()));
                status.map(|s| (s, Err(CycleError::Config(e))))
            }
        };
        drop(permit);
        self.inner
            .metrics
            .poll_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let now = Utc::now();
        let mut save: Option<Status> = None;
        if let Ok(mut slots) = self.inner.slots.lock() {
            if let Some(slot) = slots.get_mut(&id) {
                slot.running = false;
                let interval = interval(&slot.schedule);
                if let Some((status, result)) = &result {
                    let mut s = match status.lock() {
                        Ok(s) => s,
                        Err(p) => p.into_inner(),
                    };
                    s.polling = false;
                    match result {
                        Ok(report) => {
                            let t = now_micros();
                            s.last_success_at = Some(t);
                            s.last_error = None;
                            if report.caught_up {
                                s.caught_up_at = Some(t);
                                // a split backfill is done when its last window is
                                s.backfill_done = report.slices_left == 0;
                            }
                            slot.backfill_pending = report.slices_left > 0;
                            slot.failed_cycles = 0;
                            if report.stored == 0 && report.caught_up {
                                slot.empty_cycles += 1;
                            } else {
                                slot.empty_cycles = 0;
                            }
                            slot.not_before = idle_until(slot, interval, &self.inner.tuning, now);
                            tracing::info!(integration = %id, pages = report.pages, stored = report.stored, duplicates = report.duplicates, rejected = report.rejected, caught_up = report.caught_up, millis = started.elapsed().as_millis() as u64, "poll finished");
                        }
                        Err(CycleError::Stopped) => {
                            tracing::info!(integration = %id, "poll stopped after committing its page");
                        }
                        Err(e) => {
                            s.last_error = Some(e.to_string());
                            slot.failed_cycles += 1;
                            self.inner.metrics.poll_errors.get_or_create(&labels).inc();
                            let wait = interval
                                .saturating_mul(1u32 << slot.failed_cycles.min(10))
                                .min(self.inner.tuning.error_backoff_max);
                            slot.not_before =
                                chrono::Duration::from_std(wait).ok().map(|w| now + w);
                            tracing::warn!(integration = %id, error = %e, retry_in_secs = wait.as_secs(), "poll failed");
                        }
                    }
                    save = Some(s.clone());
                }
            }
        }
        self.finished(&id, save);
    }
}

impl Scheduler {
    /// Walks an integration's backfill windows (see `engine::backfill_cycle`) alongside its
    /// live cycles. It takes no worker: its lanes wait at the integration's rate gate, and one
    /// runs per integration at most.
    async fn run_backfill(&self, id: String) {
        let started = std::time::Instant::now();
        let result = match self.context(&id) {
            Ok((ctx, status)) => {
                tracing::info!(integration = %id, "backfill windows started");
                Some((engine::backfill_cycle(&ctx).await, status))
            }
            Err(e) => {
                tracing::error!(integration = %id, error = %e, "cannot start the backfill");
                None
            }
        };
        let mut save = None;
        if let Ok(mut slots) = self.inner.slots.lock() {
            if let Some(slot) = slots.get_mut(&id) {
                slot.backfilling = false;
                slot.backfill_pending = false;
                if let Some((result, status)) = &result {
                    let mut s = match status.lock() {
                        Ok(s) => s,
                        Err(p) => p.into_inner(),
                    };
                    match result {
                        Ok(report) => {
                            tracing::info!(integration = %id, pages = report.pages, stored = report.stored, duplicates = report.duplicates, rejected = report.rejected, windows_left = report.slices_left, millis = started.elapsed().as_millis() as u64, "backfill windows finished");
                            if report.slices_left == 0 && s.caught_up_at.is_some() {
                                s.backfill_done = true;
                            }
                            // what is left (a stop) is picked up again by the next cycle
                        }
                        Err(CycleError::Stopped) => {
                            tracing::info!(integration = %id, "backfill stopped after committing its pages");
                        }
                        Err(e) => {
                            // the next cycle finds the windows left and starts them again
                            s.last_error = Some(e.to_string());
                            self.inner
                                .metrics
                                .poll_errors
                                .get_or_create(&IntegrationLabels {
                                    integration: id.clone(),
                                })
                                .inc();
                            tracing::warn!(integration = %id, error = %e, "backfill failed; resumes with the next cycle");
                        }
                    }
                    save = Some(s.clone());
                }
            }
        }
        self.finished(&id, save);
    }
}

impl Scheduler {
    /// After a cycle or a backfill: saves the status it left, and wakes the loop (the
    /// integration may be due again).
    fn finished(&self, id: &str, status: Option<Status>) {
        if let Some(s) = status {
            if let Err(e) = self.inner.integrations.save_status(id, &s) {
                tracing::warn!(integration = %id, error = %e, "cannot save the integration status");
            }
        }
        self.inner.wake.notify_one();
    }
}

/// The engine's progress, kept in the integration's status and saved after each page (so the
/// backfill's progress survives a crash, roughly).
struct StatusProgress {
    id: String,
    status: Arc<Mutex<Status>>,
    integrations: Integrations,
}

impl StatusProgress {
    fn update(&self, f: impl FnOnce(&mut Status) -> bool) {
        let mut s = match self.status.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if f(&mut s) {
            if let Err(e) = self.integrations.save_status(&self.id, &s) {
                tracing::warn!(integration = %self.id, error = %e, "cannot save the integration status");
            }
        }
    }
}

impl Progress for StatusProgress {
    fn walk_started(&self, backfill_from: Micros) {
        self.update(|s| {
            if s.backfill_from.is_none() && !s.backfill_done {
                s.backfill_from = Some(backfill_from);
            }
            false
        });
    }

    fn page_committed(&self, oldest: Option<Micros>) {
        self.update(|s| {
            if !s.backfill_done {
                s.backfill_oldest = match (s.backfill_oldest, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            true
        });
    }
}

/// Idle backoff: after `n` empty cycles in a row, skip fires for interval × 2^(n-1), bounded by
/// factor × interval and the tuning's maximum. Factor 0 turns it off.
fn idle_until(
    slot: &Slot,
    interval: Duration,
    tuning: &PollTuning,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let factor = slot.record.idle_backoff.unwrap_or(DEFAULT_IDLE_BACKOFF);
    if factor == 0 || slot.empty_cycles < 2 {
        return None;
    }
    let bound = interval.saturating_mul(factor).min(tuning.idle_backoff_max);
    let wait = interval
        .saturating_mul(1u32 << (slot.empty_cycles - 1).min(16))
        .min(bound);
    chrono::Duration::from_std(wait).ok().map(|w| now + w)
}
