//! Connectors are data: one TOML definition per vendor in `connectors/`, embedded in the binary,
//! validated at start into typed definitions, and run by one generic engine
//!
//! - `definition`: the file format and its validation into closed types
//! - `path`, `template`: the small languages a definition uses
//! - `normalise`: a vendor record → the unified event
//! - `engine`: requests, pagination, cursors, retries for one poll cycle
//! - `ratelimit`: the per-integration limiter tightened by vendor headers
//! - `integrations`: the configured integrations, their sealed credentials and status

pub mod definition;
pub mod engine;
pub mod integrations;
pub mod normalise;
pub mod path;
pub mod ratelimit;
pub mod template;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use definition::{Connector, DefinitionError};

/// The definitions compiled into the binary: (file, text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "connectors/github.toml",
        include_str!("../../connectors/github.toml"),
    ),
    (
        "connectors/okta.toml",
        include_str!("../../connectors/okta.toml"),
    ),
    (
        "connectors/slack.toml",
        include_str!("../../connectors/slack.toml"),
    ),
];

/// Every connector the hub knows, by name.
#[derive(Clone)]
pub struct Registry {
    connectors: BTreeMap<String, Arc<Connector>>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown connector {name:?} (known: {known})")]
pub struct UnknownConnector {
    pub name: String,
    pub known: String,
}

impl Registry {
    /// The built-in definitions. They are tested at build time, so a failure here is a bug.
    pub fn builtin() -> Result<Registry, DefinitionError> {
        let mut connectors = BTreeMap::new();
        for (file, text) in BUILTIN {
            let c = definition::parse(file, text)?;
            connectors.insert(c.name.clone(), Arc::new(c));
        }
        Ok(Registry { connectors })
    }

    pub fn get(&self, name: &str) -> Result<Arc<Connector>, UnknownConnector> {
        self.connectors
            .get(name)
            .cloned()
            .ok_or_else(|| UnknownConnector {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    pub fn names(&self) -> Vec<String> {
        self.connectors.keys().cloned().collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Connector>> {
        self.connectors.values()
    }
}

/// Parses an ISO 8601 duration (`P30D`, `PT5M`, `P1DT12H`, `PT0.5S`, `P2W`) into micros.
/// Years count 365 days and months 30: retention and backfill windows need no calendar.
pub fn iso_duration(text: &str) -> Option<crate::time::Micros> {
    use crate::time::{DAY, HOUR, MICROS_PER_SEC, MINUTE};
    let rest = text.trim().strip_prefix(['P', 'p'])?;
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut in_time = false;
    let mut number = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            'T' | 't' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            _ => {
                let n: f64 = number.parse().ok()?;
                number.clear();
                let unit = match (c.to_ascii_uppercase(), in_time) {
                    ('Y', false) => 365 * DAY,
                    ('M', false) => 30 * DAY,
                    ('W', false) => 7 * DAY,
                    ('D', false) => DAY,
                    ('H', true) => HOUR,
                    ('M', true) => MINUTE,
                    ('S', true) => MICROS_PER_SEC,
                    _ => return None,
                };
                total += n * unit as f64;
                any = true;
            }
        }
    }
    if !number.is_empty() || !any || total > i64::MAX as f64 / 2.0 {
        return None;
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{DAY, HOUR, MICROS_PER_SEC, MINUTE};

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration("P30D"), Some(30 * DAY));
        assert_eq!(iso_duration("PT5M"), Some(5 * MINUTE));
        assert_eq!(iso_duration("P1DT12H"), Some(DAY + 12 * HOUR));
        assert_eq!(iso_duration("PT0.5S"), Some(MICROS_PER_SEC / 2));
        assert_eq!(iso_duration("P2W"), Some(14 * DAY));
        assert_eq!(iso_duration("P"), None);
        assert_eq!(iso_duration("PT"), None);
        assert_eq!(iso_duration("30D"), None);
        assert_eq!(iso_duration("P5H"), None);
        assert_eq!(iso_duration("P1D2"), None);
    }

    #[test]
    fn unknown_connector_lists_the_known() {
        let r = Registry::builtin().expect("builtin definitions are valid");
        let e = r.get("zoom").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unknown connector \"zoom\" (known: github, okta, slack)"
        );
    }
}
