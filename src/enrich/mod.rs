//! Read-time enrichment: what an event's user agent and IP address say about the client
//! (browser, OS, device; country, city, network), derived when the event is served.
//!
//! Never stored: the stored bytes are what the hash chain and the Merkle leaves cover, and what
//! an exported line or an event's detail must hand a verifier unchanged. So enrichment is a
//! separate `enrichment` member added to a served copy, only when a reader asks for it
//! (`enrich=true`), and a posted event cannot carry one (the ingest schema has no such field).

pub mod geo;
pub mod user_agent;

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

pub use geo::{Geo, GeoDatabases, GeoError};
pub use user_agent::{AgentParser, UserAgent};

/// What enrichment adds to an event: `{"user_agent": {...} | null, "geo": {...} | null}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Enrichment {
    #[serde(serialize_with = "shared")]
    pub user_agent: Option<Arc<UserAgent>>,
    pub geo: Option<Geo>,
}

fn shared<S: Serializer>(v: &Option<Arc<UserAgent>>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().serialize(s)
}

/// The user agent parser with its cache, and the geo databases when configured.
pub struct Enricher {
    agents: AgentParser,
    geo: Option<GeoDatabases>,
}

impl Enricher {
    /// An enricher with the given MaxMind DB files (each optional); a file that cannot be read,
    /// is too large or is not a valid database is refused here, so the hub does not start.
    pub fn open(city_mmdb: Option<&Path>, asn_mmdb: Option<&Path>) -> Result<Enricher, GeoError> {
        let enricher = Enricher {
            agents: AgentParser::new(),
            geo: GeoDatabases::open(city_mmdb, asn_mmdb)?,
        };
        // woothee compiles its patterns on first use (milliseconds): pay that at start, not on
        // the first reader's request
        enricher.agents.parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36");
        Ok(enricher)
    }

    /// No geo databases: user agents only.
    pub fn without_geo() -> Enricher {
        Enricher {
            agents: AgentParser::new(),
            geo: None,
        }
    }

    /// The geo files in use (empty when none is configured).
    pub fn geo_files(&self) -> Vec<String> {
        self.geo.as_ref().map(|g| g.describe()).unwrap_or_default()
    }

    pub fn user_agent(&self, agent: &str) -> Option<Arc<UserAgent>> {
        self.agents.parse(agent)
    }

    /// `None` without geo files, for an address that does not parse, or one the files do not
    /// know.
    pub fn geo(&self, ip: &str) -> Option<Geo> {
        let db = self.geo.as_ref()?;
        let ip: IpAddr = ip.trim().parse().ok()?;
        db.lookup(ip)
    }

    pub fn enrich(&self, user_agent: Option<&str>, ip: Option<&str>) -> Enrichment {
        Enrichment {
            user_agent: user_agent.and_then(|a| self.user_agent(a)),
            geo: ip.and_then(|ip| self.geo(ip)),
        }
    }

    /// The enrichment of an event given as its JSON (as stored and served). An event whose
    /// actor does not decode gets an empty enrichment rather than an error: it is extra.
    pub fn of_event_json(&self, json: &[u8]) -> Enrichment {
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(borrow)]
            actor: Option<ActorProbe<'a>>,
        }
        #[derive(Deserialize)]
        struct ActorProbe<'a> {
            #[serde(borrow)]
            user_agent: Option<Cow<'a, str>>,
            #[serde(borrow)]
            ip: Option<Cow<'a, str>>,
        }
        match serde_json::from_slice::<Probe>(json) {
            Ok(Probe { actor: Some(a) }) => self.enrich(a.user_agent.as_deref(), a.ip.as_deref()),
            _ => Enrichment::default(),
        }
    }
}

/// A served copy of an event's JSON object with `"enrichment"` added as its last member.
pub fn with_enrichment(json: &[u8], enrichment: &Enrichment) -> Vec<u8> {
    let Some(body) = json.strip_suffix(b"}") else {
        debug_assert!(false, "an event's JSON is an object");
        return json.to_vec();
    };
    let mut out = Vec::with_capacity(json.len() + 256);
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"enrichment\":");
    serde_json::to_writer(&mut out, enrichment).expect("an enrichment serialises");
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_is_added_last_and_the_rest_is_untouched() {
        let enricher = Enricher::without_geo();
        let json = br#"{"id":"0000000000000001","actor":{"id":"u","user_agent":"curl/8.5.0","ip":"192.0.2.1"},"raw":{"enrichment":1}}"#;
        let e = enricher.of_event_json(json);
        assert_eq!(e.geo, None, "no geo files");
        let out = with_enrichment(json, &e);
        assert!(out.starts_with(&json[..json.len() - 1]));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["enrichment"]["user_agent"]["browser"], "curl");
        assert_eq!(v["enrichment"]["user_agent"]["device_type"], "api_client");
        assert!(v["enrichment"]["geo"].is_null());
        assert_eq!(v["raw"]["enrichment"], 1);
    }

    #[test]
    fn an_event_without_agent_or_actor_gets_nulls() {
        let enricher = Enricher::without_geo();
        for json in [
            &br#"{"actor":{"id":"u","user_agent":null,"ip":null}}"#[..],
            br#"{"actor":{"id":"u","user_agent":"","ip":"not an ip"}}"#,
            br#"{"no":"actor"}"#,
            br#"not json"#,
        ] {
            let e = enricher.of_event_json(json);
            assert_eq!(e, Enrichment::default());
            let v = serde_json::to_value(&e).expect("serialises");
            assert_eq!(v, serde_json::json!({"user_agent": null, "geo": null}));
        }
    }
}
