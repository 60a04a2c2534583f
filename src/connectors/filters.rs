//! Collection filters: an integration's include and exclude rules, which drop noise (health
//! checks, a chatty service account) before it is stored. An event is kept when it matches an
//! `include` rule (or there are none) and no `exclude` rule. What is dropped is counted in the
//! store with the page's cursor (`events_filtered` in the integration's status), so nothing
//! disappears silently.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::path::JsonPath;
use crate::schema::{Action, Category, Event, Outcome};

/// Most rules in each list.
pub const MAX_RULES: usize = 50;
const MAX_TEXT: usize = 256;

/// One rule: every condition it names must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    /// The vendor's event type; a trailing `*` matches a prefix (`user.session.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// A dotted path into the normalised event (`actor.id`, `raw.client.type`), with `equals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionFilters {
    #[serde(default)]
    pub include: Vec<FilterRule>,
    #[serde(default)]
    pub exclude: Vec<FilterRule>,
}

/// A rule made ready to match.
#[derive(Debug, Clone)]
struct Compiled {
    event_type: Option<(String, bool)>,
    action: Option<Action>,
    category: Option<Category>,
    outcome: Option<Outcome>,
    field: Option<(JsonPath, String)>,
}

/// Filters checked and compiled; `keeps` decides per event.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Vec<Compiled>,
    exclude: Vec<Compiled>,
}

fn text(field: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.chars().count() > MAX_TEXT {
        return Err(format!("`{field}` must be 1 to {MAX_TEXT} characters"));
    }
    Ok(())
}

fn compile(where_: &str, r: &FilterRule) -> Result<Compiled, String> {
    let name = |f: &str| format!("{where_}.{f}");
    let enumerated = |f: &str, v: &Option<String>| -> Result<(), String> {
        match v {
            Some(v) => text(&name(f), v),
            None => Ok(()),
        }
    };
    enumerated("event_type", &r.event_type)?;
    let action = match &r.action {
        Some(v) => Some(Action::parse(v).ok_or_else(|| {
            format!(
                "`{}`: expected one of {}",
                name("action"),
                Action::expected()
            )
        })?),
        None => None,
    };
    let category = match &r.category {
        Some(v) => Some(Category::parse(v).ok_or_else(|| {
            format!(
                "`{}`: expected one of {}",
                name("category"),
                Category::expected()
            )
        })?),
        None => None,
    };
    let outcome = match &r.outcome {
        Some(v) => Some(Outcome::parse(v).ok_or_else(|| {
            format!(
                "`{}`: expected one of {}",
                name("outcome"),
                Outcome::expected()
            )
        })?),
        None => None,
    };
    let field = match (&r.field, &r.equals) {
        (Some(f), Some(v)) => {
            text(&name("field"), f)?;
            if v.chars().count() > MAX_TEXT {
                return Err(format!(
                    "`{}` is longer than {MAX_TEXT} characters",
                    name("equals")
                ));
            }
            let path = JsonPath::parse(f).map_err(|e| format!("`{}`: {e}", name("field")))?;
            Some((path, v.clone()))
        }
        (None, None) => None,
        _ => {
            return Err(format!(
                "`{}` and `{}` go together",
                name("field"),
                name("equals")
            ))
        }
    };
    let event_type = r.event_type.as_ref().map(|t| match t.strip_suffix('*') {
        Some(prefix) => (prefix.to_string(), true),
        None => (t.clone(), false),
    });
    if event_type.is_none()
        && action.is_none()
        && category.is_none()
        && outcome.is_none()
        && field.is_none()
    {
        return Err(format!("`{where_}` names no condition"));
    }
    Ok(Compiled {
        event_type,
        action,
        category,
        outcome,
        field,
    })
}

impl CollectionFilters {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Checks every rule, naming the one at fault (`filters.exclude[2].action`).
    pub fn compile(&self) -> Result<Filters, String> {
        let mut out = Filters::default();
        for (list, rules, into) in [
            ("include", &self.include, &mut out.include),
            ("exclude", &self.exclude, &mut out.exclude),
        ] {
            if rules.len() > MAX_RULES {
                return Err(format!("`filters.{list}` holds at most {MAX_RULES} rules"));
            }
            for (i, r) in rules.iter().enumerate() {
                into.push(compile(&format!("filters.{list}[{i}]"), r)?);
            }
        }
        Ok(out)
    }
}

impl Compiled {
    fn matches(&self, e: &Event, json: &mut Option<Value>) -> bool {
        if let Some((t, prefix)) = &self.event_type {
            let ok = if *prefix {
                e.event_type.starts_with(t.as_str())
            } else {
                e.event_type == *t
            };
            if !ok {
                return false;
            }
        }
        if self.action.is_some_and(|a| a != e.action)
            || self.category.is_some_and(|c| c != e.category)
            || self.outcome.is_some_and(|o| o != e.outcome)
        {
            return false;
        }
        if let Some((path, want)) = &self.field {
            let v = json.get_or_insert_with(|| serde_json::to_value(e).unwrap_or(Value::Null));
            let got = match path.get(v) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => return false,
                Some(other) => other.to_string(),
            };
            return got == *want;
        }
        true
    }
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The event is kept (stored).
    pub fn keeps(&self, e: &Event) -> bool {
        if self.is_empty() {
            return true;
        }
        let mut json = None;
        (self.include.is_empty() || self.include.iter().any(|r| r.matches(e, &mut json)))
            && !self.exclude.iter().any(|r| r.matches(e, &mut json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> Event {
        crate::schema::parse_ingest_line_fast(
            &v.to_string(),
            &crate::ingest::custom_integration(),
            0,
        )
        .expect("event")
    }

    #[test]
    fn include_then_exclude_with_prefixes_enums_and_fields() {
        let f: CollectionFilters = serde_json::from_value(json!({
            "include": [{"event_type": "user.*"}, {"category": "authentication"}],
            "exclude": [{"field": "actor.id", "equals": "healthcheck-bot"}, {"action": "read", "outcome": "success"}],
        }))
        .expect("filters");
        let f = f.compile().expect("compiles");
        let base = json!({"time": "2024-05-01T00:00:00Z", "source_id": "s", "event_type": "user.create", "action": "create", "outcome": "success", "actor": {"id": "ann"}});
        assert!(f.keeps(&event(base.clone())));
        let mut bot = base.clone();
        bot["actor"]["id"] = json!("healthcheck-bot");
        assert!(!f.keeps(&event(bot)), "excluded by field");
        let mut other = base.clone();
        other["event_type"] = json!("repo.create");
        assert!(!f.keeps(&event(other)), "not included");
        let mut read = base;
        read["action"] = json!("read");
        assert!(!f.keeps(&event(read.clone())), "read+success excluded");
        read["outcome"] = json!("failure");
        assert!(f.keeps(&event(read)), "a failed read is kept");
    }

    #[test]
    fn every_refusal_names_its_rule() {
        let bad = |v: Value| {
            serde_json::from_value::<CollectionFilters>(v)
                .map_err(|e| e.to_string())
                .and_then(|f| f.compile().map(|_| ()))
                .expect_err("refused")
        };
        assert!(bad(json!({"exclude": [{"action": "jump"}]})).contains("filters.exclude[0].action"));
        assert!(bad(json!({"include": [{}]})).contains("names no condition"));
        assert!(bad(json!({"include": [{"field": "actor.id"}]})).contains("go together"));
        assert!(bad(json!({"include": [{"colour": "red"}]})).contains("colour"));
        let many: Vec<Value> = (0..=MAX_RULES).map(|_| json!({"action": "read"})).collect();
        assert!(bad(json!({"exclude": many})).contains("at most"));
    }
}
