//! An alert rule as an admin writes it (`RuleInput`), checked into what is stored (`Rule`) and
//! compiled into what the evaluator runs (`Compiled`): the timeline's filter as index terms, the
//! condition, the group and value paths, the schedule window in its time zone, and the message
//! template.

use std::collections::BTreeMap;

use chrono::{Datelike, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::path::JsonPath;
use crate::time::{Micros, MICROS_PER_SEC};

/// Most rules a hub keeps.
pub const MAX_RULES: usize = 1000;
pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_MESSAGE: usize = 2000;
pub const MAX_CHANNELS: usize = 10;
pub const MAX_THRESHOLD: u32 = 10_000;
pub const MAX_WINDOW_SECS: u64 = 7 * 86_400;
pub const MAX_SUPPRESS_SECS: u64 = 30 * 86_400;
/// Longest filter value or path an admin may write.
pub const MAX_VALUE: usize = 256;

/// What a rule waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Every matching event.
    Event,
    /// `threshold` matching events (of one group) within any `window_secs` of event time.
    Count { threshold: u32, window_secs: u64 },
    /// A number in the event (`field`, a dotted path such as `raw.records`) compared to `value`.
    Value { field: String, op: Op, value: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    /// The severity of the `alert.fired` record.
    pub fn severity(self) -> crate::schema::Severity {
        use crate::schema::Severity;
        match self {
            Priority::Low => Severity::Low,
            Priority::Medium => Severity::Medium,
            Priority::High | Priority::Critical => Severity::High,
        }
    }
}

/// When a rule is armed: on these days, between `from` and `to` (local times in `timezone`;
/// `to` before `from` spans midnight, and the day is the one the window starts on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub timezone: String,
    /// `mon`..`sun`; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// The timeline's filter parameters (`actor`, `event_type`, `q`, ...), without a time range.
    pub filter: BTreeMap<String, String>,
    pub condition: Condition,
    /// A dotted path into the event whose value splits the counts and the suppression
    /// (`actor.id`, `actor.ip`, `integration.id`, `raw.org`); none: one group.
    pub group_by: Option<String>,
    pub schedule: Option<Schedule>,
    /// After a firing, the same group does not fire again for events within this many seconds
    /// (of event time) of the one that fired.
    pub suppress_secs: u64,
    pub priority: Priority,
    /// The message, with `{{path}}` replaced by the event's values (`{{actor.name}}`) and the
    /// alert's (`{{alert.rule}}`, `{{alert.count}}`, `{{alert.group}}`, `{{alert.priority}}`).
    pub message: String,
    /// Notification channel ids.
    pub channels: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Raised by every change; the evaluation state of an older version is dropped.
    pub version: u64,
    /// The first event (sequence number) this version sees: a rule looks forward from when it
    /// was made or changed.
    pub from_seq: u64,
}

/// A rule as written in a request: every field optional (a PATCH names only what changes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub filter: Option<BTreeMap<String, String>>,
    pub condition: Option<Condition>,
    pub group_by: Option<Option<String>>,
    pub schedule: Option<Option<Schedule>>,
    pub suppress_secs: Option<u64>,
    pub priority: Option<Priority>,
    pub message: Option<String>,
    pub channels: Option<Vec<String>>,
}

/// Why a rule was refused: the field and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.to_string(),
        message: message.into(),
    }
}

pub const DEFAULT_MESSAGE: &str =
    "{{alert.rule}}: {{event_type}} by {{actor.name}} ({{actor.id}}) from {{actor.ip}} at {{time}}";

impl RuleInput {
    /// A new rule from a POST body: `name` is required, the rest has defaults.
    pub fn create(self, id: String, now: &str, from_seq: u64) -> Result<Rule, RuleError> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| bad("name", "is required"))?;
        let condition = self.condition.clone().unwrap_or(Condition::Event);
        let default_suppress = match &condition {
            Condition::Count { window_secs, .. } => *window_secs,
            _ => 0,
        };
        let rule = Rule {
            id,
            name,
            description: None,
            enabled: true,
            filter: BTreeMap::new(),
            condition,
            group_by: None,
            schedule: None,
            suppress_secs: default_suppress,
            priority: Priority::Medium,
            message: DEFAULT_MESSAGE.to_string(),
            channels: Vec::new(),
            created_at: now.to_string(),
            updated_at: now.to_string(),
            version: 1,
            from_seq,
        };
        self.apply(rule, now, from_seq)
    }

    /// `rule` with this input's fields applied, checked; a new version from `from_seq`.
    pub fn apply(self, mut rule: Rule, now: &str, from_seq: u64) -> Result<Rule, RuleError> {
        if let Some(v) = self.name {
            rule.name = v;
        }
        if let Some(v) = self.description {
            rule.description = v;
        }
        if let Some(v) = self.enabled {
            rule.enabled = v;
        }
        if let Some(v) = self.filter {
            rule.filter = v;
        }
        if let Some(v) = self.condition {
            rule.condition = v;
        }
        if let Some(v) = self.group_by {
            rule.group_by = v;
        }
        if let Some(v) = self.schedule {
            rule.schedule = v;
        }
        if let Some(v) = self.suppress_secs {
            rule.suppress_secs = v;
        }
        if let Some(v) = self.priority {
            rule.priority = v;
        }
        if let Some(v) = self.message {
            rule.message = v;
        }
        if let Some(v) = self.channels {
            rule.channels = v;
        }
        rule.updated_at = now.to_string();
        rule.from_seq = from_seq;
        Compiled::new(&rule)?;
        Ok(rule)
    }
}

/// A rule made ready to evaluate.
#[derive(Debug)]
pub struct Compiled {
    pub rule: Rule,
    /// Index terms every matching event has (the filter's), sorted.
    pub terms: Vec<Vec<u8>>,
    pub group_by: Option<JsonPath>,
    pub value: Option<(JsonPath, Op, f64)>,
    pub schedule: Option<Window>,
    pub message: Template,
}

fn check_text(field: &str, v: &str, max: usize) -> Result<(), RuleError> {
    if v.chars().count() > max {
        return Err(bad(field, format!("is longer than {max} characters")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad(field, "holds control characters"));
    }
    Ok(())
}

fn path(field: &str, text: &str) -> Result<JsonPath, RuleError> {
    check_text(field, text, MAX_VALUE)?;
    JsonPath::parse(text).map_err(|e| bad(field, e))
}

impl Compiled {
    pub fn new(rule: &Rule) -> Result<Compiled, RuleError> {
        let name = rule.name.trim();
        if name.is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        check_text("name", &rule.name, MAX_NAME)?;
        if let Some(d) = &rule.description {
            check_text("description", d, MAX_DESCRIPTION)?;
        }
        let mut pairs = Vec::with_capacity(rule.filter.len());
        for (k, v) in &rule.filter {
            if matches!(k.as_str(), "since" | "until") {
                return Err(bad(
                    &format!("filter.{k}"),
                    "a rule looks at events as they arrive; it takes no time range (use `schedule`)",
                ));
            }
            check_text(&format!("filter.{k}"), v, MAX_VALUE)?;
            pairs.push((k.clone(), v.clone()));
        }
        let request = crate::timeline::parse(&pairs, &[], 0)
            .map_err(|e| bad(&format!("filter.{}", e.field), e.message))?;
        let terms = request.filter.terms();
        let value = match &rule.condition {
            Condition::Event => None,
            Condition::Count {
                threshold,
                window_secs,
            } => {
                if !(1..=MAX_THRESHOLD).contains(threshold) {
                    return Err(bad(
                        "condition.threshold",
                        format!("must be from 1 to {MAX_THRESHOLD}"),
                    ));
                }
                if !(1..=MAX_WINDOW_SECS).contains(window_secs) {
                    return Err(bad(
                        "condition.window_secs",
                        format!("must be from 1 to {MAX_WINDOW_SECS} (7 days)"),
                    ));
                }
                None
            }
            Condition::Value { field, op, value } => {
                if !value.is_finite() {
                    return Err(bad("condition.value", "must be a finite number"));
                }
                Some((path("condition.field", field)?, *op, *value))
            }
        };
        if rule.suppress_secs > MAX_SUPPRESS_SECS {
            return Err(bad(
                "suppress_secs",
                format!("must be at most {MAX_SUPPRESS_SECS} (30 days)"),
            ));
        }
        let group_by = match &rule.group_by {
            Some(p) => Some(path("group_by", p)?),
            None => None,
        };
        let schedule = match &rule.schedule {
            Some(s) => Some(Window::new(s)?),
            None => None,
        };
        check_text("message", &rule.message, MAX_MESSAGE)?;
        if rule.message.trim().is_empty() {
            return Err(bad("message", "must not be empty"));
        }
        let message = Template::parse(&rule.message).map_err(|e| bad("message", e))?;
        if rule.channels.len() > MAX_CHANNELS {
            return Err(bad(
                "channels",
                format!("at most {MAX_CHANNELS} channels per rule"),
            ));
        }
        for (i, c) in rule.channels.iter().enumerate() {
            if c.is_empty()
                || c.len() > 64
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(bad(&format!("channels[{i}]"), "is not a channel id"));
            }
            if rule.channels[..i].contains(c) {
                return Err(bad(&format!("channels[{i}]"), "is named twice"));
            }
        }
        Ok(Compiled {
            rule: rule.clone(),
            terms,
            group_by,
            value,
            schedule,
            message,
        })
    }

    /// The group an event falls in ("" when the rule has no `group_by`, or the event no value).
    pub fn group(&self, event: &Value) -> String {
        match &self.group_by {
            None => String::new(),
            Some(p) => p.get(event).map(text_of).unwrap_or_default(),
        }
    }

    /// Adds the event's top-level keys that `group` and `value_holds` read; false when a path
    /// could read any.
    pub fn root_keys(&self, out: &mut Vec<String>) -> bool {
        self.group_by.as_ref().is_none_or(|p| p.root_keys(out))
            && self.value.as_ref().is_none_or(|(p, _, _)| p.root_keys(out))
    }

    /// The value condition holds (always, for rules without one).
    pub fn value_holds(&self, event: &Value) -> bool {
        match &self.value {
            None => true,
            Some((p, op, right)) => p
                .get(event)
                .and_then(|v| match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                })
                .is_some_and(|left| op.holds(left, *right)),
        }
    }

    /// The schedule window admits an event at `time` (always, for rules without one).
    pub fn armed_at(&self, time: Micros) -> bool {
        self.schedule.as_ref().is_none_or(|w| w.admits(time))
    }

    pub fn window_micros(&self) -> Option<Micros> {
        match self.rule.condition {
            Condition::Count { window_secs, .. } => Some(window_secs as Micros * MICROS_PER_SEC),
            _ => None,
        }
    }
}

/// A JSON value as message or group text: strings as they are, the rest as JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A schedule window, compiled.
#[derive(Debug, Clone)]
pub struct Window {
    tz: chrono_tz::Tz,
    /// Bit `n` set: armed on the day `n` days after Monday.
    days: u8,
    from: u32,
    to: u32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn minutes(field: &str, hhmm: &str) -> Result<u32, RuleError> {
    let parsed = hhmm
        .split_once(':')
        .filter(|(h, m)| h.len() == 2 && m.len() == 2)
        .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
        .filter(|(h, m)| *h < 24 && *m < 60);
    match parsed {
        Some((h, m)) => Ok(h * 60 + m),
        None => Err(bad(
            field,
            format!(
                "expected HH:MM (00:00 to 23:59), got {:?}",
                hhmm.chars().take(16).collect::<String>()
            ),
        )),
    }
}

impl Window {
    pub fn new(s: &Schedule) -> Result<Window, RuleError> {
        check_text("schedule.timezone", &s.timezone, 64)?;
        let tz: chrono_tz::Tz = s.timezone.parse().map_err(|_| {
            bad(
                "schedule.timezone",
                "is not an IANA time zone name (such as Europe/Paris or UTC)",
            )
        })?;
        let mut days = 0u8;
        if s.days.len() > 7 {
            return Err(bad("schedule.days", "names at most the 7 days"));
        }
        for d in &s.days {
            let lower = d.to_ascii_lowercase();
            let i = DAYS
                .iter()
                .position(|x| lower.get(..3) == Some(x) && (lower.len() == 3 || full_day(&lower)))
                .ok_or_else(|| {
                    bad(
                        "schedule.days",
                        format!(
                            "expected mon, tue, wed, thu, fri, sat or sun, got {:?}",
                            d.chars().take(16).collect::<String>()
                        ),
                    )
                })?;
            days |= 1 << i;
        }
        if days == 0 {
            days = 0x7f;
        }
        let from = minutes("schedule.from", &s.from)?;
        let to = minutes("schedule.to", &s.to)?;
        if from == to {
            return Err(bad(
                "schedule.to",
                "must differ from `from` (leave out `schedule` for all day)",
            ));
        }
        Ok(Window { tz, days, from, to })
    }

    pub fn admits(&self, time: Micros) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_micros(time) else {
            return false;
        };
        let local = self.tz.from_utc_datetime(&utc.naive_utc());
        let minute = local.hour() * 60 + local.minute();
        let weekday = local.weekday().num_days_from_monday();
        let armed_on = |day: u32| self.days & (1 << day) != 0;
        if self.from < self.to {
            armed_on(weekday) && (self.from..self.to).contains(&minute)
        } else if minute >= self.from {
            // the evening part: the window started today
            armed_on(weekday)
        } else if minute < self.to {
            // the morning part: the window started yesterday
            armed_on((weekday + 6) % 7)
        } else {
            false
        }
    }
}

fn full_day(lower: &str) -> bool {
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .contains(&lower)
}

/// `{{path}}` placeholders in a message.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Field(JsonPath),
}

/// Longest rendered message; each placeholder's value is cut at `MAX_FIELD_TEXT`.
pub const MAX_RENDERED: usize = 4000;
pub const MAX_FIELD_TEXT: usize = 500;
const MAX_PLACEHOLDERS: usize = 50;

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or("a `{{` is not closed by `}}`")?;
            let name = after[..close].trim();
            let path =
                JsonPath::parse(name).map_err(|e| format!("placeholder {{{{{name}}}}}: {e}"))?;
            parts.push(Part::Field(path));
            if parts.len() > 2 * MAX_PLACEHOLDERS {
                return Err(format!("at most {MAX_PLACEHOLDERS} placeholders"));
            }
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The message for `context` (the event's JSON with an `alert` member); a missing value is
    /// empty; control characters other than a newline are dropped from values.
    pub fn render(&self, context: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(p) => {
                    let v = p.get(context).map(text_of).unwrap_or_default();
                    out.extend(
                        v.chars()
                            .filter(|c| !c.is_control() || *c == '\n')
                            .take(MAX_FIELD_TEXT),
                    );
                }
            }
            if out.len() > MAX_RENDERED {
                break;
            }
        }
        if out.len() > MAX_RENDERED {
            let mut cut = MAX_RENDERED;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> RuleInput {
        serde_json::from_value(v).expect("a rule input")
    }

    #[test]
    fn checks_name_every_field_at_fault() {
        let e = input(json!({}))
            .create("r".into(), "t", 1)
            .expect_err("no name");
        assert_eq!(e.field, "name");
        let e = input(json!({"name": "x", "filter": {"actr": "a"}}))
            .create("r".into(), "t", 1)
            .expect_err("typo");
        assert_eq!(e.field, "filter.actr");
        let e = input(json!({"name": "x", "filter": {"since": "1h"}}))
            .create("r".into(), "t", 1)
            .expect_err("range");
        assert_eq!(e.field, "filter.since");
        let e = input(
            json!({"name": "x", "condition": {"type": "count", "threshold": 0, "window_secs": 60}}),
        )
        .create("r".into(), "t", 1)
        .expect_err("threshold");
        assert_eq!(e.field, "condition.threshold");
        let e = input(json!({"name": "x", "schedule": {"timezone": "Mars/Olympus", "from": "22:00", "to": "06:00"}}))
            .create("r".into(), "t", 1)
            .expect_err("zone");
        assert_eq!(e.field, "schedule.timezone");
        let e = input(
            json!({"name": "x", "schedule": {"timezone": "UTC", "from": "24:00", "to": "06:00"}}),
        )
        .create("r".into(), "t", 1)
        .expect_err("time");
        assert_eq!(e.field, "schedule.from");
        let e = input(json!({"name": "x", "message": "{{actor.name"}))
            .create("r".into(), "t", 1)
            .expect_err("template");
        assert_eq!(e.field, "message");
        let e = input(json!({"name": "n".repeat(MAX_NAME + 1)}))
            .create("r".into(), "t", 1)
            .expect_err("long");
        assert_eq!(e.field, "name");
        assert!(serde_json::from_value::<RuleInput>(json!({"name": "x", "colour": 1})).is_err());
        let rule = input(json!({"name": "x", "condition": {"type": "count", "threshold": 5, "window_secs": 600}}))
            .create("r".into(), "t", 7)
            .expect("valid");
        assert_eq!(rule.suppress_secs, 600, "a burst fires once by default");
        assert_eq!(rule.from_seq, 7);
    }

    #[test]
    fn a_night_window_spans_midnight_in_its_zone() {
        let w = Window::new(&Schedule {
            timezone: "Europe/Paris".into(),
            days: vec!["mon".into()],
            from: "22:00".into(),
            to: "06:00".into(),
        })
        .expect("valid");
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("time")
                .timestamp_micros()
        };
        // Monday 2024-06-03 in Paris is UTC+2
        assert!(w.admits(at("2024-06-03T20:30:00Z")), "Monday 22:30 Paris");
        assert!(
            w.admits(at("2024-06-04T03:00:00Z")),
            "Tuesday 05:00, the window of Monday"
        );
        assert!(
            !w.admits(at("2024-06-04T04:00:00Z")),
            "Tuesday 06:00 Paris is out"
        );
        assert!(!w.admits(at("2024-06-03T19:59:00Z")), "Monday 21:59 Paris");
        assert!(
            !w.admits(at("2024-06-04T20:30:00Z")),
            "Tuesday night is not armed"
        );
        assert!(
            !w.admits(at("2024-06-03T03:00:00Z")),
            "Monday 05:00 belongs to Sunday's window"
        );
    }

    #[test]
    fn templates_fill_in_event_and_alert_values_and_stay_bounded() {
        let t = Template::parse(
            "{{alert.rule}}: {{actor.name}} did {{event_type}} {{raw.n}}{{missing}}!",
        )
        .expect("parses");
        let ctx = json!({"actor": {"name": "Ann\u{7}"}, "event_type": "user.login", "raw": {"n": 3}, "alert": {"rule": "R"}});
        assert_eq!(t.render(&ctx), "R: Ann did user.login 3!");
        let long = json!({"actor": {"name": "x".repeat(10_000)}});
        let t = Template::parse(&"{{actor.name}}".repeat(20)).expect("parses");
        assert!(t.render(&long).len() <= MAX_RENDERED);
    }

    #[test]
    fn values_and_groups_come_from_dotted_paths() {
        let rule = input(json!({"name": "big export", "group_by": "actor.id", "condition": {"type": "value", "field": "raw.count", "op": ">=", "value": 1000}}))
            .create("r".into(), "t", 1)
            .expect("valid");
        let c = Compiled::new(&rule).expect("compiles");
        assert!(c.value_holds(&json!({"raw": {"count": 1000}})));
        assert!(c.value_holds(&json!({"raw": {"count": "2500"}})));
        assert!(!c.value_holds(&json!({"raw": {"count": 999}})));
        assert!(!c.value_holds(&json!({"raw": {}})));
        assert_eq!(c.group(&json!({"actor": {"id": "u1"}})), "u1");
    }
}
