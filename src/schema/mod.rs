//! The unified event: the Rust twin of `schemas/event.schema.json`, and validation of the lines
//! that in-house applications post to `POST /api/v1/events`

mod enums;
mod ingest;

pub use enums::{Action, ActorType, Category, Outcome, Severity};
pub use ingest::{
    canonical_json, content_hash, parse_ingest_line, parse_ingest_line_fast, single_line_json,
    LineError, MAX_STRING_LEN,
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time::Micros;

/// The integration an event came from, denormalised into the event when it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationRef {
    pub id: String,
    pub name: String,
    pub connector: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub city: Option<String>,
    pub region: Option<String>,
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    #[serde(rename = "type")]
    pub kind: ActorType,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub location: Option<Location>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// One normalised event. Field order here is the field order on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(with = "rfc3339_micros")]
    pub time: Micros,
    #[serde(with = "rfc3339_micros")]
    pub ingested_at: Micros,
    pub integration: IntegrationRef,
    pub source_id: String,
    pub event_type: String,
    pub category: Category,
    pub action: Action,
    pub outcome: Outcome,
    pub actor: Actor,
    pub targets: Vec<Target>,
    pub changes: Vec<Change>,
    pub session_id: Option<String>,
    pub description: Option<String>,
    pub severity: Severity,
    /// The vendor payload exactly as received.
    pub raw: Box<RawValue>,
}

/// The wire form of an event id: the store sequence number as 16 lowercase hex digits, so ids
/// sort in the order the hub stored them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u64);

impl EventId {
    pub fn parse(s: &str) -> Option<EventId> {
        if s.len() != 16
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(EventId)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Serde for `Micros` as an RFC 3339 UTC string with six fraction digits.
pub mod rfc3339_micros {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::format_micros(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::time::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_round_trip() {
        let id = EventId(0x1a2b);
        assert_eq!(id.to_string(), "0000000000001a2b");
        assert_eq!(EventId::parse("0000000000001a2b"), Some(id));
        assert_eq!(EventId::parse("0000000000001A2B"), None);
        assert_eq!(EventId::parse("1a2b"), None);
    }
}
