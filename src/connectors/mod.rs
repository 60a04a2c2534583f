//! Connectors are data: one TOML definition per vendor in `connectors/`, embedded in the binary,
//! validated at start into typed definitions, and run by one generic engine
//!
//! - `definition`: the file format and its validation into closed types
//! - `path`, `template`: the small languages a definition uses
//! - `normalise`: a vendor record → the unified event
//! - `engine`: requests, pagination, cursors, retries for one poll cycle
//! - `ratelimit`: the per-integration limiter tightened by vendor headers
//! - `integrations`: the configured integrations, their sealed credentials and status

pub mod cursor;
pub mod definition;
pub mod engine;
pub mod filters;
pub mod integrations;
pub mod normalise;
pub mod oauth;
pub mod outbound;
pub mod paging;
pub mod path;
pub mod ratelimit;
pub mod request;
pub mod template;
pub mod transport;

#[cfg(test)]
mod catalogue_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use definition::{Connector, DefinitionError};

/// The definitions compiled into the binary: (file, text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "connectors/atlassian_admin.toml",
        include_str!("../../connectors/atlassian_admin.toml"),
    ),
    (
        "connectors/auth0.toml",
        include_str!("../../connectors/auth0.toml"),
    ),
    (
        "connectors/cloudflare.toml",
        include_str!("../../connectors/cloudflare.toml"),
    ),
    (
        "connectors/entra_audits.toml",
        include_str!("../../connectors/entra_audits.toml"),
    ),
    (
        "connectors/entra_signins.toml",
        include_str!("../../connectors/entra_signins.toml"),
    ),
    (
        "connectors/github.toml",
        include_str!("../../connectors/github.toml"),
    ),
    (
        "connectors/github_enterprise.toml",
        include_str!("../../connectors/github_enterprise.toml"),
    ),
    (
        "connectors/gitlab.toml",
        include_str!("../../connectors/gitlab.toml"),
    ),
    (
        "connectors/google_workspace.toml",
        include_str!("../../connectors/google_workspace.toml"),
    ),
    (
        "connectors/jira.toml",
        include_str!("../../connectors/jira.toml"),
    ),
    (
        "connectors/okta.toml",
        include_str!("../../connectors/okta.toml"),
    ),
    (
        "connectors/onepassword_audit.toml",
        include_str!("../../connectors/onepassword_audit.toml"),
    ),
    (
        "connectors/onepassword_itemusages.toml",
        include_str!("../../connectors/onepassword_itemusages.toml"),
    ),
    (
        "connectors/onepassword_signins.toml",
        include_str!("../../connectors/onepassword_signins.toml"),
    ),
    (
        "connectors/slack.toml",
        include_str!("../../connectors/slack.toml"),
    ),
    (
        "connectors/webhook.toml",
        include_str!("../../connectors/webhook.toml"),
    ),
];

/// Every connector the hub knows, by name.
#[derive(Clone)]
pub struct Registry {
    /// Shared: the registry travels in every request's state, and a clone must be cheap.
    connectors: Arc<BTreeMap<String, Arc<Connector>>>,
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
        Ok(Registry {
            connectors: Arc::new(connectors),
        })
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

/// Runs a recorded page body through a connector's records and mapping: what `trailhub
/// connectors replay` prints. Each record is normalised on its own; bad ones say why.
pub fn replay(
    connector: &Connector,
    body: &str,
) -> Result<Vec<Result<crate::schema::Event, normalise::RecordError>>, normalise::RecordError> {
    let integration = crate::schema::IntegrationRef {
        id: format!("replay-{}", connector.name),
        name: format!("replay-{}", connector.name),
        connector: connector.name.clone(),
    };
    let Some(poll) = &connector.poll else {
        return Err(normalise::RecordError::NotReplayable(format!(
            "{} is push-only: its deliveries are unified events, validated like POST /api/v1/events lines",
            connector.name
        )));
    };
    let now = crate::time::now_micros();
    let records = normalise::page_records(body, &poll.records)?;
    Ok(records
        .into_iter()
        .enumerate()
        .map(|(i, raw)| normalise::normalise(&poll.map, &integration, raw, i, now))
        .collect())
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

    fn replay_fixture(connector: &str, fixture: &str) -> Vec<crate::schema::Event> {
        let r = Registry::builtin().expect("builtin definitions are valid");
        let c = r.get(connector).expect("known");
        let path = format!("{}/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read_to_string(&path).expect("fixture");
        replay(&c, &body)
            .expect("page parses")
            .into_iter()
            .map(|e| e.expect("record normalises"))
            .collect()
    }

    #[test]
    fn github_fixture_normalises() {
        use crate::schema::{Action, Category, Outcome};
        let events = replay_fixture("github", "github/audit-log/page.json");
        assert_eq!(events.len(), 3);
        let e = &events[0];
        assert_eq!(e.source_id, "xJJFlFOhQ6b-5vaAFy9Rjw");
        assert_eq!(e.event_type, "team.add_member");
        assert_eq!(
            crate::time::format_micros(e.time),
            "2020-12-02T17:24:34.512000Z"
        );
        assert_eq!(
            (e.category, e.action, e.outcome),
            (Category::UserManagement, Action::Grant, Outcome::Success)
        );
        assert_eq!(e.actor.id, "octocat");
        let targets: Vec<(&str, &str)> = e
            .targets
            .iter()
            .map(|t| (t.kind.as_str(), t.id.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("user", "monalisa"),
                ("team", "octo-corp/example-team"),
                ("organization", "octo-corp")
            ]
        );
        assert!(
            e.raw
                .get()
                .contains("\"_document_id\": \"xJJFlFOhQ6b-5vaAFy9Rjw\"")
                || e.raw
                    .get()
                    .contains("\"_document_id\":\"xJJFlFOhQ6b-5vaAFy9Rjw\"")
        );
        assert_eq!(
            (events[1].category, events[1].action),
            (Category::Configuration, Action::Create)
        );
        assert_eq!(
            (events[2].category, events[2].action),
            (Category::Configuration, Action::Delete)
        );
        assert_eq!(events[2].severity, crate::schema::Severity::Medium);
        assert_eq!(events[0].severity, crate::schema::Severity::Info);
    }

    #[test]
    fn okta_fixtures_normalise() {
        use crate::schema::{Action, ActorType, Category, Outcome};
        for fixture in [
            "okta/logs/page.json",
            "okta/logs/with_security_context.json",
        ] {
            let events = replay_fixture("okta", fixture);
            assert_eq!(events.len(), 1);
            let e = &events[0];
            assert_eq!(e.source_id, "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a");
            assert_eq!(
                (e.category, e.action, e.outcome),
                (Category::Authentication, Action::Login, Outcome::Success)
            );
            assert_eq!(e.actor.email.as_deref(), Some("john.doe@example.com"));
            assert_eq!(e.actor.kind, ActorType::User);
            assert_eq!(e.actor.ip.as_deref(), Some("10.0.0.1"));
            assert!(e
                .actor
                .user_agent
                .as_deref()
                .unwrap_or("")
                .starts_with("Mozilla/5.0"));
            let loc = e.actor.location.as_ref().expect("location");
            assert_eq!(loc.city.as_deref(), Some("New York"));
            assert_eq!(loc.latitude, Some(40.3157));
            assert_eq!(e.session_id.as_deref(), Some("idxBager62CSveUkTxvgRtonA"));
            assert_eq!(e.description.as_deref(), Some("User login to Okta"));
        }
        let e = &replay_fixture("okta", "okta/logs/with_security_context.json")[0];
        let targets: Vec<&str> = e.targets.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(targets, ["AuthenticatorEnrollment", "AppInstance"]);
    }

    #[test]
    fn okta_change_details_become_changes() {
        let events = replay_fixture("okta", "okta/logs/target_change_details.json");
        let changes: Vec<(&str, String, String)> = events[0]
            .changes
            .iter()
            .map(|c| (c.field.as_str(), c.old.to_string(), c.new.to_string()))
            .collect();
        assert_eq!(
            changes,
            [
                (
                    "message",
                    "null".to_string(),
                    "\"You must a use VPN to connect to this application\"".to_string()
                ),
                (
                    "vpnLocationOptions",
                    "\"DISABLED\"".to_string(),
                    "\"ZONE\"".to_string()
                ),
                (
                    "vpnSettingsZones",
                    "{\"exclude\":null,\"include\":null}".to_string(),
                    "{\"exclude\":null,\"include\":[\"ALL_ZONES\"]}".to_string()
                ),
            ]
        );
        assert_eq!(events[0].targets[0].kind, "AppInstance");
    }

    #[test]
    fn slack_fixtures_normalise() {
        use crate::schema::{Action, Category};
        let events = replay_fixture("slack", "slack/logs/page.json");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.source_id, "0123a45b-6c7d-8900-e12f-3456789gh0i1");
        assert_eq!(
            crate::time::format_micros(e.time),
            "2018-03-16T15:32:23.000000Z"
        );
        assert_eq!(
            (e.category, e.action),
            (Category::Authentication, Action::Login)
        );
        assert_eq!(e.actor.email.as_deref(), Some("bird@slack.com"));
        assert_eq!(e.actor.ip.as_deref(), Some("1.23.45.678"));
        assert_eq!(e.targets[0].kind, "user");
        assert_eq!(e.targets[0].id, "W123AB456");
        // the SDK's shape sample: placeholder values, still normalised (empty id → content hash)
        let shape = replay_fixture("slack", "slack/logs/shape_superset.json");
        assert_eq!(shape.len(), 1);
        assert!(shape[0].source_id.len() >= 64, "{}", shape[0].source_id);
    }

    #[test]
    fn unknown_connector_lists_the_known() {
        let r = Registry::builtin().expect("builtin definitions are valid");
        let e = r.get("zoom").expect_err("unknown");
        assert!(
            e.to_string()
                .starts_with("unknown connector \"zoom\" (known: "),
            "{e}"
        );
        for known in [
            "auth0",
            "entra_audits",
            "entra_signins",
            "github",
            "okta",
            "slack",
        ] {
            assert!(e.to_string().contains(known), "{e}");
        }
    }
}
