//! The events related to an event: those that touched the same target (by target id), and
//! those of the same session, just before it and just after it in time.
//!
//! Before: the index walks matches newest first from the event down, so the nearest come first.
//! After: it walks newest first from the end of time, so the nearest are the last it would reach;
//! the walk is over a window after the event that widens (an hour, a day, a week, ...) until it
//! holds enough matches, and a window holding more than [`WINDOW_CAP`] matches is not walked
//! (the answer then says `capped`). Candidates are read and checked (the index matches target
//! names too, and session words), at most [`CHECK_CAP`] per key and side.

use serde::Serialize;

use crate::schema::Event;
use crate::store::keys::index_value;
use crate::store::query::{Filter, Position};
use crate::store::{Field, Store, StoreError};
use crate::time::{Micros, DAY, HOUR, MAX_TIME};

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;
/// Targets of the event looked for (an event may name hundreds).
pub const MAX_TARGETS: usize = 16;
/// Matches a window after the event may hold for it to be walked.
pub const WINDOW_CAP: usize = 50_000;
/// Candidates read and checked per key and side.
pub const CHECK_CAP: usize = 2_000;
/// The windows after the event, widening; the last is the rest of time.
const WINDOWS: [Option<Micros>; 6] = [
    Some(HOUR),
    Some(DAY),
    Some(7 * DAY),
    Some(30 * DAY),
    Some(365 * DAY),
    None,
];

#[derive(Debug, Serialize)]
pub struct Related {
    pub event: String,
    /// What was looked for: the event's targets (at most [`MAX_TARGETS`]) and its session.
    pub targets: Vec<TargetKey>,
    pub session_id: Option<String>,
    pub limit: usize,
    /// Nearest first (newest first).
    pub before: Vec<RelatedEvent>,
    /// Nearest first (oldest first).
    pub after: Vec<RelatedEvent>,
    pub capped: SidesCapped,
}

#[derive(Debug, Serialize)]
pub struct TargetKey {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct SidesCapped {
    pub before: bool,
    pub after: bool,
}

#[derive(Debug, Serialize)]
pub struct RelatedEvent {
    /// Why it is related: `target:<id>` for each shared target, `session`.
    pub via: Vec<String>,
    pub event: serde_json::Value,
}

/// One thing two events can share.
enum Key {
    Target(String),
    Session(String),
}

impl Key {
    fn filter(&self) -> Filter {
        match self {
            Key::Target(id) => Filter::default().with(Field::Target, id),
            Key::Session(s) => Filter::default().with(Field::Token, s),
        }
    }

    fn label(&self) -> String {
        match self {
            Key::Target(id) => format!("target:{id}"),
            Key::Session(_) => "session".to_string(),
        }
    }

    /// Whether `event` really shares it (the index also matches target names, and each word of
    /// a session id on its own).
    fn holds(&self, event: &Event) -> bool {
        match self {
            Key::Target(id) => {
                let want = index_value(id);
                event.targets.iter().any(|t| index_value(&t.id) == want)
            }
            Key::Session(s) => event.session_id.as_deref() == Some(s.as_str()),
        }
    }
}

/// A candidate read and checked: its position and JSON.
type Found = (Position, Vec<u8>);

fn read(store: &Store, position: Position, key: &Key) -> Result<Option<Found>, StoreError> {
    let Some(json) = store.event_json(position.seq)? else {
        return Ok(None);
    };
    let event: Event = serde_json::from_slice(&json).map_err(|e| {
        StoreError::Corrupt(format!("event {:016x} does not decode: {e}", position.seq))
    })?;
    Ok(key.holds(&event).then_some((position, json)))
}

/// The nearest `limit` events sharing `key`, older than `at`.
fn before(
    store: &Store,
    key: &Key,
    at: Position,
    limit: usize,
) -> Result<(Vec<Found>, bool), StoreError> {
    let mut out = Vec::new();
    for (checked, position) in store.scan(&key.filter(), Some(at)).enumerate() {
        if checked >= CHECK_CAP {
            return Ok((out, true));
        }
        if let Some(found) = read(store, position?, key)? {
            out.push(found);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok((out, false))
}

/// The nearest `limit` events sharing `key`, newer than `at`.
fn after(
    store: &Store,
    key: &Key,
    at: Position,
    limit: usize,
) -> Result<(Vec<Found>, bool), StoreError> {
    let mut best = Vec::new();
    for window in WINDOWS {
        let filter = Filter {
            since: Some(at.time),
            until: window.map(|w| at.time.saturating_add(w).min(MAX_TIME)),
            ..key.filter()
        };
        let mut matches = Vec::new();
        for position in store.scan(&filter, None) {
            let position = position?;
            if position <= at {
                break;
            }
            if matches.len() >= WINDOW_CAP {
                // too many to walk to the nearest: keep what the narrower window found
                return Ok((best, true));
            }
            matches.push(position);
        }
        let mut found = Vec::new();
        for (checked, position) in matches.into_iter().rev().enumerate() {
            if checked >= CHECK_CAP {
                return Ok((found, true));
            }
            if let Some(f) = read(store, position, key)? {
                found.push(f);
                if found.len() >= limit {
                    break;
                }
            }
        }
        best = found;
        if best.len() >= limit {
            break;
        }
    }
    Ok((best, false))
}

/// Merges each key's nearest events into one list, nearest first, each once with every key it
/// shares.
fn merge(
    per_key: Vec<(String, Vec<Found>)>,
    limit: usize,
    nearest_first: impl Fn(&Position, &Position) -> std::cmp::Ordering,
) -> Result<Vec<RelatedEvent>, StoreError> {
    let mut all: std::collections::BTreeMap<u64, (Position, Vec<u8>, Vec<String>)> =
        std::collections::BTreeMap::new();
    for (label, found) in per_key {
        for (position, json) in found {
            all.entry(position.seq)
                .or_insert_with(|| (position, json, Vec::new()))
                .2
                .push(label.clone());
        }
    }
    let mut list: Vec<_> = all.into_values().collect();
    list.sort_by(|a, b| nearest_first(&a.0, &b.0));
    list.truncate(limit);
    list.into_iter()
        .map(|(_, json, via)| {
            Ok(RelatedEvent {
                via,
                event: serde_json::from_slice(&json).map_err(|e| {
                    StoreError::Corrupt(format!("a stored event does not decode: {e}"))
                })?,
            })
        })
        .collect()
}

/// The events related to event `seq`; `None` when there is no such event (or it was purged).
pub fn related(store: &Store, seq: u64, limit: usize) -> Result<Option<Related>, StoreError> {
    let Some(event) = store.event(seq)? else {
        return Ok(None);
    };
    let at = Position {
        time: event.time,
        seq,
    };
    let mut keys = Vec::new();
    let mut targets = Vec::new();
    for t in &event.targets {
        if targets.len() >= MAX_TARGETS {
            break;
        }
        if t.id.is_empty()
            || keys
                .iter()
                .any(|k| matches!(k, Key::Target(id) if index_value(id) == index_value(&t.id)))
        {
            continue;
        }
        targets.push(TargetKey {
            kind: t.kind.clone(),
            id: t.id.clone(),
        });
        keys.push(Key::Target(t.id.clone()));
    }
    let session = event.session_id.clone().filter(|s| !s.is_empty());
    if let Some(s) = &session {
        // a session id with no word of two letters or digits cannot be looked up
        if !crate::store::prepare::tokenize(s).is_empty() {
            keys.push(Key::Session(s.clone()));
        }
    }
    let (mut older, mut newer) = (Vec::new(), Vec::new());
    let mut capped = SidesCapped {
        before: false,
        after: false,
    };
    for key in &keys {
        let (found, c) = before(store, key, at, limit)?;
        capped.before |= c;
        older.push((key.label(), found));
        let (found, c) = after(store, key, at, limit)?;
        capped.after |= c;
        newer.push((key.label(), found));
    }
    Ok(Some(Related {
        event: crate::schema::EventId(seq).to_string(),
        targets,
        session_id: session,
        limit,
        before: merge(older, limit, |a, b| b.cmp(a))?,
        after: merge(newer, limit, |a, b| a.cmp(b))?,
        capped,
    }))
}
