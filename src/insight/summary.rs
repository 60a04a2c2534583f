//! The dashboard's summary: events today / this week / this month in the reader's time zone,
//! storage, the share of each category, the top actors and actions of the last seven days,
//! recent high-priority events, and the integrations in error.
//!
//! Counts come from the rollups (whole hours and days) and, for a zone whose midnight is not on
//! a UTC hour, from the index for the sub-hour edges: no event is read for them. Only the high
//! severity list reads events (severity is not indexed), newest first, at most
//! [`HIGH_SEVERITY_SCAN`] of them, and says how far it got.

use std::collections::HashMap;

use chrono_tz::Tz;
use serde::Serialize;

use super::period::{periods, Period};
use super::{ranked, Brief, Count, EventLine};
use crate::connectors::integrations::{Integrations, State};
use crate::scheduler::Scheduler;
use crate::store::query::{BucketSize, Filter};
use crate::store::{Dimension, Field, Store, StoreError};
use crate::time::{format_micros, Micros, DAY, HOUR, MAX_TIME};

/// Entries of each ranking.
pub const TOP: usize = 10;
/// Days the rankings cover.
pub const RANKING_DAYS: i64 = 7;
/// High-priority events listed.
pub const RECENT: usize = 10;
/// Events read (newest first, within the ranking days) looking for high severities.
pub const HIGH_SEVERITY_SCAN: usize = 10_000;
/// The event type the alert engine records a firing under, in the `trailhub` integration.
pub const ALERT_FIRED: &str = "alert.fired";

#[derive(Debug, Serialize)]
pub struct Summary {
    pub time_zone: String,
    pub generated_at: String,
    pub events: PeriodCounts,
    pub storage: Storage,
    /// Every stored event (all time), per category.
    pub categories: Vec<CategoryShare>,
    pub top_actors: Ranking,
    pub top_actions: Ranking,
    pub high_priority: HighPriority,
    pub integrations_in_error: Vec<IntegrationInError>,
}

#[derive(Debug, Serialize)]
pub struct PeriodCounts {
    pub today: PeriodCount,
    pub this_week: PeriodCount,
    pub this_month: PeriodCount,
}

#[derive(Debug, Serialize)]
pub struct PeriodCount {
    pub count: u64,
    pub since: String,
    pub until: String,
}

#[derive(Debug, Serialize)]
pub struct Storage {
    pub bytes_on_disk: u64,
    pub events_stored: u64,
    pub events_purged: u64,
    pub events_live: u64,
}

#[derive(Debug, Serialize)]
pub struct CategoryShare {
    pub category: String,
    pub events: u64,
    /// Of all live events, 0 to 1 (four decimals).
    pub share: f64,
}

#[derive(Debug, Serialize)]
pub struct Ranking {
    /// The window: the whole hours of the last seven days, the current hour included.
    pub since: String,
    pub until: String,
    /// Events in the window.
    pub total: u64,
    pub top: Vec<Count>,
}

#[derive(Debug, Serialize)]
pub struct HighPriority {
    /// Newest first: events of severity `high` and alert firings.
    pub events: Vec<HighPriorityEvent>,
    /// Events read looking for high severities.
    pub examined: u64,
    /// True when the list holds the newest high-severity events of the window; false when the
    /// reading stopped at its cap first (older ones may exist before `examined_since`).
    pub complete: bool,
    /// How far back the reading went: the window's start when it read all of it.
    pub examined_since: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HighPriorityEvent {
    /// `severity_high` or `alert_fired`.
    pub reason: &'static str,
    #[serde(flatten)]
    pub event: EventLine,
}

#[derive(Debug, Serialize)]
pub struct IntegrationInError {
    pub id: String,
    pub name: String,
    pub connector: String,
    pub last_error: Option<String>,
    pub last_poll_at: Option<String>,
    pub last_success_at: Option<String>,
}

/// Events in [start, end), from the rollups (and the index for sub-hour edges).
fn count(store: &Store, p: Period) -> Result<u64, StoreError> {
    let start = p.start.clamp(0, MAX_TIME - 1);
    let end = p.end.min(MAX_TIME).max(start + 1);
    let h = store.histogram(
        &Filter::default(),
        start,
        end,
        BucketSize::Day,
        Dimension::Total,
    )?;
    Ok(h.values().flat_map(|g| g.values()).sum())
}

fn period_count(store: &Store, p: Period) -> Result<PeriodCount, StoreError> {
    Ok(PeriodCount {
        count: count(store, p)?,
        since: format_micros(p.start),
        until: format_micros(p.end),
    })
}

/// Per group of `d` over [since, until) (whole hours: rollups only).
fn totals(
    store: &Store,
    since: Micros,
    until: Micros,
    d: Dimension,
) -> Result<HashMap<String, u64>, StoreError> {
    let h = store.histogram(&Filter::default(), since, until, BucketSize::Day, d)?;
    let mut out: HashMap<String, u64> = HashMap::new();
    for groups in h.into_values() {
        for (name, n) in groups {
            *out.entry(name).or_insert(0) += n;
        }
    }
    Ok(out)
}

/// The newest events of severity `high` within [since, ∞), reading at most
/// [`HIGH_SEVERITY_SCAN`] events; and the newest alert firings of the same window (indexed:
/// found without reading other events).
fn high_priority(store: &Store, since: Micros) -> Result<HighPriority, StoreError> {
    let mut found: Vec<(Micros, HighPriorityEvent)> = Vec::new();
    let mut examined = 0u64;
    let mut oldest: Option<Micros> = None;
    let mut capped = false;
    let needle = memchr::memmem::Finder::new(br#""severity":"high""#);
    let window = Filter {
        since: Some(since),
        ..Filter::default()
    };
    store.visit_events(&window, None, |position, json| {
        if examined as usize >= HIGH_SEVERITY_SCAN {
            capped = true;
            return Ok(false);
        }
        examined += 1;
        oldest = Some(position.time);
        // most events are not high: a byte search rules them out without decoding; a match may
        // come from the raw payload, so the decoded field decides
        if needle.find(json).is_some() {
            let brief = Brief::parse(json)?;
            if brief.severity == "high" {
                found.push((
                    position.time,
                    HighPriorityEvent {
                        reason: "severity_high",
                        event: brief.line(),
                    },
                ));
            }
        }
        Ok(found.len() < RECENT)
    })?;
    let exhausted = !capped && found.len() < RECENT;
    let fired = Filter {
        since: Some(since),
        ..Filter::default()
    }
    .with(Field::Integration, "trailhub")
    .with(Field::EventType, ALERT_FIRED);
    let mut alerts = 0;
    store.visit_events(&fired, None, |position, json| {
        let brief = Brief::parse(json)?;
        // the index matches case-insensitively; the alert engine writes the exact name
        if brief.event_type == ALERT_FIRED && brief.integration.id == "trailhub" {
            found.push((
                position.time,
                HighPriorityEvent {
                    reason: "alert_fired",
                    event: brief.line(),
                },
            ));
            alerts += 1;
        }
        Ok(alerts < RECENT)
    })?;
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.event.id.cmp(&a.1.event.id)));
    // an alert firing of severity high would be listed twice
    let mut seen = std::collections::HashSet::new();
    found.retain(|(_, e)| seen.insert(e.event.id.clone()));
    found.truncate(RECENT);
    Ok(HighPriority {
        events: found.into_iter().map(|(_, e)| e).collect(),
        examined,
        complete: !capped,
        examined_since: if exhausted {
            Some(format_micros(since))
        } else {
            oldest.map(format_micros)
        },
    })
}

/// The integrations whose last poll failed (paused ones are not in error; push-only ones have
/// no polls to fail).
pub fn integrations_in_error(
    integrations: &Integrations,
    scheduler: &Scheduler,
) -> Result<Vec<IntegrationInError>, crate::connectors::integrations::IntegrationError> {
    let mut out = Vec::new();
    for r in integrations.list()? {
        let push_only = integrations
            .registry()
            .get(&r.connector)
            .ok()
            .is_some_and(|c| c.push_only());
        let status = scheduler.status(&r.id);
        if push_only || status.state(r.paused) != State::Error {
            continue;
        }
        out.push(IntegrationInError {
            id: r.id,
            name: r.name,
            connector: r.connector,
            last_error: status.last_error,
            last_poll_at: status.last_poll_at.map(format_micros),
            last_success_at: status.last_success_at.map(format_micros),
        });
    }
    Ok(out)
}

/// Everything but the integrations, which the caller reads from the scheduler.
pub fn summary(
    store: &Store,
    tz: Tz,
    now: Micros,
    integrations_in_error: Vec<IntegrationInError>,
) -> Result<Summary, StoreError> {
    let p = periods(tz, now);
    // whole hours, so that the rankings come from rollups alone
    let until = crate::store::keys::bucket_start(now, HOUR).saturating_add(HOUR);
    let since = until - RANKING_DAYS * DAY;
    let actors = totals(store, since, until, Dimension::Actor)?;
    let window_total = actors.values().sum();
    let actions = totals(store, since, until, Dimension::Action)?;
    let stored = store.event_count();
    let purged = store.purged_total();
    let categories = store.totals_by(Dimension::Category)?;
    let live: u64 = categories.values().map(|(n, _)| n).sum();
    let mut shares: Vec<CategoryShare> = categories
        .into_iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(category, (events, _))| CategoryShare {
            category,
            events,
            share: if live == 0 {
                0.0
            } else {
                (events as f64 / live as f64 * 10_000.0).round() / 10_000.0
            },
        })
        .collect();
    shares.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.category.cmp(&b.category))
    });
    Ok(Summary {
        time_zone: tz.name().to_string(),
        generated_at: format_micros(now),
        events: PeriodCounts {
            today: period_count(store, p.today)?,
            this_week: period_count(store, p.week)?,
            this_month: period_count(store, p.month)?,
        },
        storage: Storage {
            bytes_on_disk: store.size_on_disk(),
            events_stored: stored,
            events_purged: purged,
            events_live: stored.saturating_sub(purged),
        },
        categories: shares,
        top_actors: Ranking {
            since: format_micros(since),
            until: format_micros(until),
            total: window_total,
            top: ranked(actors, TOP),
        },
        top_actions: Ranking {
            since: format_micros(since),
            until: format_micros(until),
            total: window_total,
            top: ranked(actions, TOP),
        },
        high_priority: high_priority(store, since)?,
        integrations_in_error,
    })
}
