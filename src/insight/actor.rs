//! One actor's activity: how many events, where (integrations) and what (actions), logins and
//! failed logins, sessions, first and last seen, the newest events, and the browsers, systems
//! and countries they came from.
//!
//! The actor is named as the timeline's `actor` filter names one (id, name or email). Counting
//! walks the index only, up to [`COUNT_CAP`] events; the breakdowns read the newest
//! [`DETAIL_CAP`] events. Past either cap the answer says so (`capped`), and what the
//! breakdowns cover (`details_since`).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{ranked, Brief, Count};
use crate::enrich::Enricher;
use crate::store::query::{Filter, Position};
use crate::store::{Field, Store, StoreError};
use crate::time::format_micros;

/// Events counted (positions in the index; no event is read for them).
pub const COUNT_CAP: u64 = 1_000_000;
/// Events read for the breakdowns, newest first.
pub const DETAIL_CAP: u64 = 10_000;
/// Newest events listed in full.
pub const RECENT: usize = 20;
/// Entries of each breakdown.
pub const TOP: usize = 20;
/// Distinct user agents and addresses looked at; the rest count as `other`.
const DISTINCT_CAP: usize = 1_000;

#[derive(Debug, Serialize)]
pub struct Activity {
    /// As the newest event names the actor.
    pub actor: Identity,
    /// Events matching the actor (exact unless `capped.total`).
    pub total: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub by_integration: Vec<Count>,
    pub by_action: Vec<Count>,
    pub by_category: Vec<Count>,
    pub logins: Logins,
    /// Distinct session ids.
    pub sessions: u64,
    pub browsers: Vec<Count>,
    pub operating_systems: Vec<Count>,
    pub device_types: Vec<Count>,
    /// From the geo databases where configured, else as the vendor located the request.
    pub countries: Vec<Count>,
    pub ip_addresses: Vec<Count>,
    /// The newest events, in full.
    pub recent: Vec<serde_json::Value>,
    pub capped: Capped,
    /// The breakdowns (everything but `total`, `first_seen` and `last_seen`) cover the events
    /// from this time on: the first event's time unless `capped.details`.
    pub details_since: String,
    pub details_events: u64,
}

#[derive(Debug, Serialize)]
pub struct Identity {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Logins {
    pub succeeded: u64,
    pub failed: u64,
    /// Login events whose outcome the vendor did not say.
    pub unknown: u64,
}

#[derive(Debug, Serialize)]
pub struct Capped {
    /// More than [`COUNT_CAP`] events: `total` is the cap, `first_seen` the oldest counted.
    pub total: bool,
    /// More than [`DETAIL_CAP`] events: the breakdowns cover the newest ones.
    pub details: bool,
}

fn bump(map: &mut HashMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_string(), n);
        }
    }
}

/// Counts under a key, with at most [`DISTINCT_CAP`] distinct keys: the rest go to `None`.
#[derive(Default)]
struct Distinct {
    counts: HashMap<String, u64>,
    other: u64,
}

impl Distinct {
    fn add(&mut self, key: &str) {
        if let Some(n) = self.counts.get_mut(key) {
            *n += 1;
        } else if self.counts.len() < DISTINCT_CAP {
            self.counts.insert(key.to_string(), 1);
        } else {
            self.other += 1;
        }
    }
}

/// The activity of the actor `who`; `None` when no event names them.
pub fn activity(
    store: &Store,
    enricher: &Enricher,
    who: &str,
) -> Result<Option<Activity>, StoreError> {
    let filter = Filter::default().with(Field::Actor, who);
    let mut read = 0u64;
    let mut last: Option<Position> = None;
    let mut first_position: Option<Position> = None;
    let mut identity = None;
    let (mut integrations, mut actions, mut categories) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let mut logins = Logins::default();
    let mut sessions: HashSet<String> = HashSet::new();
    let mut agents = Distinct::default();
    let mut addresses = Distinct::default();
    let mut vendor_countries: HashMap<String, HashMap<String, u64>> = HashMap::new();
    let mut recent = Vec::new();
    let mut details_capped = false;
    store.visit_events(&filter, None, |position, json| {
        if read >= DETAIL_CAP {
            details_capped = true;
            return Ok(false);
        }
        read += 1;
        last = Some(position);
        first_position.get_or_insert(position);
        let e = Brief::parse(json)?;
        if identity.is_none() {
            identity = Some(Identity {
                id: e.actor.id.to_string(),
                name: e.actor.name.as_deref().map(str::to_string),
                email: e.actor.email.as_deref().map(str::to_string),
                kind: e.actor.kind.to_string(),
            });
        }
        bump(&mut integrations, &e.integration.id, 1);
        bump(&mut actions, &e.action, 1);
        bump(&mut categories, &e.category, 1);
        if e.action == "login" {
            match e.outcome.as_ref() {
                "success" => logins.succeeded += 1,
                "failure" => logins.failed += 1,
                _ => logins.unknown += 1,
            }
        }
        if let Some(s) = e.session_id.as_deref().filter(|s| !s.is_empty()) {
            // at most one per event read, so bounded by DETAIL_CAP
            if !sessions.contains(s) {
                sessions.insert(s.to_string());
            }
        }
        if let Some(a) = e
            .actor
            .user_agent
            .as_deref()
            .filter(|a| !a.trim().is_empty())
        {
            agents.add(a);
        }
        if let Some(ip) = e.actor.ip.as_deref().filter(|ip| !ip.is_empty()) {
            addresses.add(ip);
            if let Some(country) = e
                .actor
                .location
                .as_ref()
                .and_then(|l| l.country.as_deref())
                .filter(|c| !c.is_empty())
            {
                if let Some(by_country) = vendor_countries.get_mut(ip) {
                    bump(by_country, country, 1);
                } else if vendor_countries.len() < DISTINCT_CAP {
                    let mut by_country = HashMap::new();
                    bump(&mut by_country, country, 1);
                    vendor_countries.insert(ip.to_string(), by_country);
                }
            }
        }
        if recent.len() < RECENT {
            recent.push(serde_json::from_slice(json).map_err(|e| {
                StoreError::Corrupt(format!("a stored event does not decode: {e}"))
            })?);
        }
        Ok(true)
    })?;
    let (Some(newest), Some(identity), Some(oldest_read)) = (first_position, identity, last) else {
        return Ok(None);
    };
    // the rest are counted from the index alone
    let mut total = read;
    let mut oldest = oldest_read;
    let mut total_capped = false;
    if details_capped {
        for position in store.scan(&filter, Some(oldest_read)) {
            let position = position?;
            if total >= COUNT_CAP {
                total_capped = true;
                break;
            }
            oldest = position;
            total += 1;
        }
    }

    let (mut browsers, mut systems, mut devices) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (agent, n) in &agents.counts {
        if let Some(ua) = enricher.user_agent(agent) {
            bump(
                &mut browsers,
                ua.browser.as_deref().unwrap_or("unknown"),
                *n,
            );
            bump(&mut systems, ua.os.as_deref().unwrap_or("unknown"), *n);
            bump(&mut devices, ua.device_type, *n);
        }
    }
    for (map, other) in [
        (&mut browsers, agents.other),
        (&mut systems, agents.other),
        (&mut devices, agents.other),
    ] {
        if other > 0 {
            bump(map, "other", other);
        }
    }
    let mut countries = HashMap::new();
    for (ip, n) in &addresses.counts {
        match enricher.geo(ip).and_then(|g| g.country.or(g.country_code)) {
            Some(country) => bump(&mut countries, &country, *n),
            None => {
                if let Some(by_country) = vendor_countries.get(ip) {
                    for (country, m) in by_country {
                        bump(&mut countries, country, *m);
                    }
                }
            }
        }
    }
    let mut ips = addresses.counts;
    if addresses.other > 0 {
        bump(&mut ips, "other", addresses.other);
    }
    Ok(Some(Activity {
        actor: identity,
        total,
        first_seen: format_micros(oldest.time),
        last_seen: format_micros(newest.time),
        by_integration: ranked(integrations, TOP),
        by_action: ranked(actions, TOP),
        by_category: ranked(categories, TOP),
        logins,
        sessions: sessions.len() as u64,
        browsers: ranked(browsers, TOP),
        operating_systems: ranked(systems, TOP),
        device_types: ranked(devices, TOP),
        countries: ranked(countries, TOP),
        ip_addresses: ranked(ips, TOP),
        recent,
        capped: Capped {
            total: total_capped,
            details: details_capped,
        },
        details_since: format_micros(oldest_read.time),
        details_events: read,
    }))
}
