//! The desk's read-only views over the timeline: the dashboard summary, one actor's activity,
//! and the events related to an event. Each answers from the store's rollups and indexes, and
//! where it must read events one by one it reads a bounded number and says so in its answer, so
//! that none of them slows down as the store grows.

pub mod actor;
pub mod period;
pub mod related;
pub mod summary;

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The fields of a stored event the views look at, read from its JSON without building the rest
/// (the raw payload is skipped).
#[derive(Debug, Deserialize)]
pub struct Brief<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub integration: BriefIntegration<'a>,
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    #[serde(borrow)]
    pub outcome: Cow<'a, str>,
    #[serde(borrow)]
    pub severity: Cow<'a, str>,
    #[serde(borrow)]
    pub actor: BriefActor<'a>,
    #[serde(borrow, default)]
    pub targets: Vec<BriefTarget<'a>>,
    #[serde(borrow)]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub description: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct BriefIntegration<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct BriefActor<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub email: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub location: Option<BriefLocation<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct BriefLocation<'a> {
    #[serde(borrow)]
    pub country: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct BriefTarget<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

impl<'a> Brief<'a> {
    pub fn parse(json: &'a [u8]) -> Result<Brief<'a>, crate::store::StoreError> {
        serde_json::from_slice(json).map_err(|e| {
            crate::store::StoreError::Corrupt(format!("a stored event does not decode: {e}"))
        })
    }

    /// The short form an overview lists: enough to show a line and link to the event.
    pub fn line(&self) -> EventLine {
        EventLine {
            id: self.id.to_string(),
            time: self.time.to_string(),
            integration: self.integration.id.to_string(),
            event_type: self.event_type.to_string(),
            category: self.category.to_string(),
            action: self.action.to_string(),
            outcome: self.outcome.to_string(),
            severity: self.severity.to_string(),
            actor: ActorLine {
                id: self.actor.id.to_string(),
                name: self.actor.name.as_deref().map(str::to_string),
                email: self.actor.email.as_deref().map(str::to_string),
            },
            description: self.description.as_deref().map(|d| clip(d, 300)),
        }
    }
}

/// An event as an overview lists it.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    pub id: String,
    pub time: String,
    pub integration: String,
    pub event_type: String,
    pub category: String,
    pub action: String,
    pub outcome: String,
    pub severity: String,
    pub actor: ActorLine,
    /// At most 300 characters of it.
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActorLine {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

fn clip(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A named count in a ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub name: String,
    pub events: u64,
}

/// Counts by name, largest first (ties by name), at most `top`.
pub fn ranked(counts: HashMap<String, u64>, top: usize) -> Vec<Count> {
    let mut v: Vec<Count> = counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, events)| Count { name, events })
        .collect();
    v.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.name.cmp(&b.name)));
    v.truncate(top);
    v
}
