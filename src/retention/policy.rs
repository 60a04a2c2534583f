//! What is kept how long, and what must not be purged
//!
//! A policy gives each event category a number of days (or keeps it forever), and may give an
//! integration its own number, which then applies to all its events. The defaults follow what
//! compliance frameworks usually ask: authentication and authorization records two years, user
//! and data changes one year, system events ninety days. The hub's own records (`trailhub`,
//! among them every purge's record) are kept two years unless set otherwise.
//!
//! A legal hold suspends purging for an integration, a timeline filter, or both (an event is
//! held when it matches every part the hold names).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schema::{Category, Event};
use crate::store::query::Filter;
use crate::time::{Micros, DAY};

/// Longest retention one can set: a century.
pub const MAX_DAYS: u32 = 36_500;
/// Most integrations with their own retention.
pub const MAX_INTEGRATION_RULES: usize = 1000;
/// Most legal holds at once.
pub const MAX_HOLDS: usize = 100;
const MAX_TEXT: usize = 500;

/// Days to keep, `None` = forever.
pub type Days = Option<u32>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Whether the hub purges at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Days per category (`authentication = 730`); a category left out keeps `default_days`.
    #[serde(default)]
    pub categories: BTreeMap<String, Days>,
    /// Days for categories the map leaves out; `null` keeps them forever.
    #[serde(default = "default_days")]
    pub default_days: Days,
    /// Days per integration id, overriding the category for all its events.
    #[serde(default)]
    pub integrations: BTreeMap<String, Days>,
    /// Write what a purge removes to the archive first (when an archive is configured).
    #[serde(default = "yes")]
    pub archive: bool,
}

fn yes() -> bool {
    true
}

fn default_days() -> Days {
    Some(365)
}

impl Default for Policy {
    fn default() -> Self {
        let categories = [
            ("authentication", 730),
            ("authorization", 730),
            ("user_management", 365),
            ("configuration", 365),
            ("data_access", 365),
            ("data_change", 365),
            ("system", 90),
            ("other", 365),
        ]
        .into_iter()
        .map(|(c, d)| (c.to_string(), Some(d)))
        .collect();
        let integrations = [(
            crate::store::purge::SYSTEM_INTEGRATION.to_string(),
            Some(730),
        )]
        .into_iter()
        .collect();
        Policy {
            enabled: true,
            categories,
            default_days: Some(365),
            integrations,
            archive: true,
        }
    }
}

/// Every category name, as the schema spells it.
pub fn category_names() -> Vec<&'static str> {
    Category::ALL.iter().map(|c| c.as_str()).collect()
}

impl Policy {
    /// Refuses what cannot be right: unknown categories, out-of-range days, too many rules.
    pub fn check(&self) -> Result<(), String> {
        let names = category_names();
        for (c, d) in &self.categories {
            if !names.contains(&c.as_str()) {
                return Err(format!(
                    "unknown category {c:?}; categories are {}",
                    names.join(", ")
                ));
            }
            check_days(&format!("categories.{c}"), *d)?;
        }
        check_days("default_days", self.default_days)?;
        if self.integrations.len() > MAX_INTEGRATION_RULES {
            return Err(format!(
                "at most {MAX_INTEGRATION_RULES} integrations may have their own retention"
            ));
        }
        for (i, d) in &self.integrations {
            if i.is_empty() || i.len() > 128 {
                return Err("an integration id is 1 to 128 characters".into());
            }
            check_days(&format!("integrations.{i}"), *d)?;
        }
        Ok(())
    }

    /// Days an event of `integration` and `category` is kept.
    pub fn days_for(&self, integration: &str, category: &str) -> Days {
        if let Some(d) = self.integrations.get(integration) {
            return *d;
        }
        match self.categories.get(category) {
            Some(d) => *d,
            None => self.default_days,
        }
    }

    /// The shortest retention any rule gives `category` (what a scan for it must reach back
    /// to); `None` when nothing of it ever expires.
    pub fn shortest_for(&self, category: &str) -> Days {
        let own = match self.categories.get(category) {
            Some(d) => *d,
            None => self.default_days,
        };
        own.into_iter()
            .chain(self.integrations.values().flatten().copied())
            .min()
    }

    /// When an event of this kind expires (events older than this are purged).
    pub fn cutoff(&self, integration: &str, category: &str, now: Micros) -> Option<Micros> {
        self.days_for(integration, category)
            .map(|d| now.saturating_sub(i64::from(d) * DAY))
    }
}

fn check_days(name: &str, d: Days) -> Result<(), String> {
    match d {
        Some(0) => Err(format!(
            "{name}: 0 days would purge events as they arrive; use at least 1 (or null to keep forever)"
        )),
        Some(d) if d > MAX_DAYS => Err(format!("{name}: at most {MAX_DAYS} days")),
        _ => Ok(()),
    }
}

/// A legal hold: what it covers, why, and who placed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub reason: String,
    /// Only this integration's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// Only events matching this timeline query (`actor=alice&category=authentication`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

/// A new hold as asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    pub reason: String,
    #[serde(default)]
    pub integration: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
}

impl NewHold {
    pub fn check(&self) -> Result<(), String> {
        if self.reason.trim().is_empty() || self.reason.len() > MAX_TEXT {
            return Err(format!("reason: 1 to {MAX_TEXT} characters, saying why"));
        }
        if let Some(i) = &self.integration {
            if i.is_empty() || i.len() > 128 {
                return Err("integration: an integration id, 1 to 128 characters".into());
            }
        }
        if let Some(f) = &self.filter {
            if f.len() > MAX_TEXT {
                return Err(format!("filter: at most {MAX_TEXT} characters"));
            }
            hold_filter(f)?;
        }
        if self.integration.is_none() && self.filter.is_none() {
            return Err(
                "a hold names an integration, a filter or both (to hold everything, disable retention)".into(),
            );
        }
        Ok(())
    }
}

/// A hold's filter as the timeline reads it: the same parameters as `GET /api/v1/events`.
pub fn hold_filter(q: &str) -> Result<Filter, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(q).map_err(|e| format!("filter: not a query string: {e}"))?;
    let request = crate::timeline::parse(&pairs, &[], crate::time::now_micros())
        .map_err(|e| format!("filter: {}: {}", e.field, e.message))?;
    Ok(request.filter)
}

/// Holds made ready to match events.
pub struct Holds {
    holds: Vec<(Hold, Option<Filter>)>,
}

impl Holds {
    pub fn new(holds: &[Hold]) -> Holds {
        Holds {
            holds: holds
                .iter()
                .map(|h| {
                    (
                        h.clone(),
                        h.filter.as_deref().and_then(|f| hold_filter(f).ok()),
                    )
                })
                .collect(),
        }
    }

    /// The first hold covering `event`.
    pub fn holding(&self, event: &Event) -> Option<&Hold> {
        let mut terms = None;
        self.holds.iter().find_map(|(hold, filter)| {
            if let Some(i) = &hold.integration {
                if *i != event.integration.id {
                    return None;
                }
            }
            if let Some(f) = filter {
                if f.since.is_some_and(|s| event.time < s)
                    || f.until.is_some_and(|u| event.time >= u)
                {
                    return None;
                }
                let have = terms.get_or_insert_with(|| crate::store::prepare::prepare(event).terms);
                if !f.terms().iter().all(|t| have.contains(t)) {
                    return None;
                }
            }
            Some(hold)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_rules_win_and_zero_days_is_refused() {
        let mut p = Policy::default();
        assert_eq!(p.days_for("okta", "system"), Some(90));
        assert_eq!(p.days_for("okta", "authentication"), Some(730));
        p.integrations.insert("okta".into(), Some(30));
        assert_eq!(p.days_for("okta", "authentication"), Some(30));
        assert_eq!(p.shortest_for("authentication"), Some(30));
        p.categories.insert("system".into(), Some(0));
        assert!(p.check().unwrap_err().contains("0 days"));
        p.categories.remove("system");
        p.categories.insert("logins".into(), Some(10));
        assert!(p.check().unwrap_err().contains("unknown category"));
    }

    #[test]
    fn a_hold_must_name_something() {
        let h = NewHold {
            reason: "case 7".into(),
            integration: None,
            filter: None,
        };
        assert!(h.check().is_err());
        let h = NewHold {
            filter: Some("actor=alice&nonsense=1".into()),
            ..h
        };
        assert!(h.check().unwrap_err().contains("filter"));
    }
}
