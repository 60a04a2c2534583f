//! The six reports, as data: which events each selects (any of its clauses, each clause all of
//! its conditions) and which columns its rows have. The generator knows conditions and columns,
//! never a report by name.

use crate::schema::{Action, ActorType, Category, Change, Event, Outcome, Severity};
use crate::time::format_micros;

/// One test on an event.
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    Category(&'static [Category]),
    NotCategory(&'static [Category]),
    Action(&'static [Action]),
    Outcome(&'static [Outcome]),
    Severity(&'static [Severity]),
    ActorType(&'static [ActorType]),
    /// The event type starts with one of these.
    EventTypePrefix(&'static [&'static str]),
    /// The event's integration id is one of these.
    Integration(&'static [&'static str]),
    /// The event carries `changes`.
    HasChanges,
}

impl Cond {
    pub fn holds(&self, e: &Event) -> bool {
        match self {
            Cond::Category(c) => c.contains(&e.category),
            Cond::NotCategory(c) => !c.contains(&e.category),
            Cond::Action(a) => a.contains(&e.action),
            Cond::Outcome(o) => o.contains(&e.outcome),
            Cond::Severity(s) => s.contains(&e.severity),
            Cond::ActorType(t) => t.contains(&e.actor.kind),
            Cond::EventTypePrefix(p) => p.iter().any(|p| e.event_type.starts_with(p)),
            Cond::Integration(i) => i.contains(&e.integration.id.as_str()),
            Cond::HasChanges => !e.changes.is_empty(),
        }
    }

    /// The condition in words, for the report's summary page and the docs.
    pub fn describe(&self) -> String {
        fn list<T: std::fmt::Display>(items: &[T]) -> String {
            items
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        }
        match self {
            Cond::Category(c) => format!("category {}", list(c)),
            Cond::NotCategory(c) => format!("category not {}", list(c)),
            Cond::Action(a) => format!("action {}", list(a)),
            Cond::Outcome(o) => format!("outcome {}", list(o)),
            Cond::Severity(s) => format!("severity {}", list(s)),
            Cond::ActorType(t) => format!("actor type {}", list(t)),
            Cond::EventTypePrefix(p) => format!("event type starting {}", list(p)),
            Cond::Integration(i) => format!("integration {}", list(i)),
            Cond::HasChanges => "with changes".to_string(),
        }
    }
}

/// One column of a report's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Time,
    EventId,
    Actor,
    ActorId,
    ActorEmail,
    ActorType,
    Ip,
    UserAgent,
    Action,
    Category,
    Outcome,
    Severity,
    EventType,
    Targets,
    Description,
    Integration,
    SessionId,
    /// All changes of the event, `field: old -> new` joined by `; `.
    Changes,
    /// With [`Rows::PerChange`]: the changed field, its value before and after.
    Field,
    Before,
    After,
}

impl Column {
    pub fn header(self) -> &'static str {
        match self {
            Column::Time => "time",
            Column::EventId => "event_id",
            Column::Actor => "actor",
            Column::ActorId => "actor_id",
            Column::ActorEmail => "actor_email",
            Column::ActorType => "actor_type",
            Column::Ip => "ip",
            Column::UserAgent => "user_agent",
            Column::Action => "action",
            Column::Category => "category",
            Column::Outcome => "outcome",
            Column::Severity => "severity",
            Column::EventType => "event_type",
            Column::Targets => "targets",
            Column::Description => "description",
            Column::Integration => "integration",
            Column::SessionId => "session_id",
            Column::Changes => "changes",
            Column::Field => "field",
            Column::Before => "before",
            Column::After => "after",
        }
    }

    /// Relative width in the PDF's tables.
    pub fn weight(self) -> f32 {
        match self {
            Column::Time => 2.2,
            Column::Category => 1.9,
            Column::Description | Column::Changes | Column::UserAgent => 3.2,
            Column::Actor | Column::ActorEmail | Column::Targets | Column::EventType => 2.4,
            Column::EventId | Column::ActorId | Column::SessionId => 2.0,
            Column::Ip | Column::Integration | Column::Before | Column::After | Column::Field => {
                1.8
            }
            _ => 1.3,
        }
    }

    /// The cell of this column for an event (and, for per-change rows, one of its changes).
    pub fn cell(self, e: &Event, change: Option<&Change>) -> String {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let value = |v: Option<&serde_json::Value>| match v {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        match self {
            Column::Time => format_micros(e.time),
            Column::EventId => e.id.clone(),
            Column::Actor => e
                .actor
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| e.actor.email.clone())
                .unwrap_or_else(|| e.actor.id.clone()),
            Column::ActorId => e.actor.id.clone(),
            Column::ActorEmail => opt(&e.actor.email),
            Column::ActorType => e.actor.kind.to_string(),
            Column::Ip => opt(&e.actor.ip),
            Column::UserAgent => opt(&e.actor.user_agent),
            Column::Action => e.action.to_string(),
            Column::Category => e.category.to_string(),
            Column::Outcome => e.outcome.to_string(),
            Column::Severity => e.severity.to_string(),
            Column::EventType => e.event_type.clone(),
            Column::Targets => e
                .targets
                .iter()
                .map(|t| match &t.name {
                    Some(n) if !n.is_empty() && *n != t.id => format!("{}:{} ({n})", t.kind, t.id),
                    _ => format!("{}:{}", t.kind, t.id),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Column::Description => opt(&e.description),
            Column::Integration => e.integration.name.clone(),
            Column::SessionId => opt(&e.session_id),
            Column::Changes => e
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "{}: {} -> {}",
                        c.field,
                        value(Some(&c.old)),
                        value(Some(&c.new))
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Column::Field => change.map(|c| c.field.clone()).unwrap_or_default(),
            Column::Before => value(change.map(|c| &c.old)),
            Column::After => value(change.map(|c| &c.new)),
        }
    }
}

/// How an event becomes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// One row per event.
    PerEvent,
    /// One row per change of the event (one row, with empty change cells, when it has none).
    PerChange,
}

/// A report: its name, what it selects, how its rows look.
#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    pub title: &'static str,
    pub about: &'static str,
    /// An event is in the report when every condition of at least one clause holds.
    pub any_of: &'static [&'static [Cond]],
    pub rows: Rows,
    pub columns: &'static [Column],
}

impl Kind {
    pub fn selects(&self, e: &Event) -> bool {
        self.any_of
            .iter()
            .any(|clause| clause.iter().all(|c| c.holds(e)))
    }

    /// The selection in words: `(a and b) or (c)`.
    pub fn describe(&self) -> String {
        self.any_of
            .iter()
            .map(|clause| {
                let parts: Vec<String> = clause.iter().map(Cond::describe).collect();
                format!("({})", parts.join(" and "))
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    pub fn headers(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.header()).collect()
    }

    /// The rows of an event in this report.
    pub fn rows_of(&self, e: &Event) -> Vec<Vec<String>> {
        let row = |change: Option<&Change>| -> Vec<String> {
            self.columns.iter().map(|c| c.cell(e, change)).collect()
        };
        match self.rows {
            Rows::PerChange if !e.changes.is_empty() => {
                e.changes.iter().map(|c| row(Some(c))).collect()
            }
            _ => vec![row(None)],
        }
    }
}

use Column as C;

/// Human and unknown actors: what "user access" is about (service actors have their own report).
const PEOPLE: &[ActorType] = &[ActorType::User, ActorType::Unknown];
const MACHINES: &[ActorType] = &[ActorType::Service, ActorType::ApiKey, ActorType::System];

pub const KINDS: &[Kind] = &[
    Kind {
        name: "user_access",
        title: "User access",
        about: "Who accessed what, when: sign-ins and sign-outs, and reads of data, by people",
        any_of: &[
            &[
                Cond::ActorType(PEOPLE),
                Cond::Action(&[Action::Login, Action::Logout, Action::Read]),
            ],
            &[
                Cond::ActorType(PEOPLE),
                Cond::Category(&[Category::Authentication, Category::DataAccess]),
            ],
        ],
        rows: Rows::PerEvent,
        columns: &[
            C::Time,
            C::Actor,
            C::ActorEmail,
            C::Action,
            C::EventType,
            C::Targets,
            C::Outcome,
            C::Ip,
            C::UserAgent,
            C::Integration,
            C::SessionId,
            C::EventId,
        ],
    },
    Kind {
        name: "data_changes",
        title: "Data changes",
        about: "Changes to data, one row per changed field with its value before and after",
        any_of: &[&[Cond::Category(&[Category::DataChange])], &[Cond::HasChanges]],
        rows: Rows::PerChange,
        columns: &[
            C::Time,
            C::Actor,
            C::Action,
            C::EventType,
            C::Targets,
            C::Field,
            C::Before,
            C::After,
            C::Outcome,
            C::Integration,
            C::EventId,
        ],
    },
    Kind {
        name: "security_events",
        title: "Security events",
        about: "Sign-ins, failures, permission changes and high-severity events",
        any_of: &[
            &[Cond::Category(&[Category::Authentication])],
            &[Cond::Action(&[Action::Login, Action::Logout])],
            &[Cond::Outcome(&[Outcome::Failure])],
            &[Cond::Category(&[Category::Authorization])],
            &[Cond::Action(&[Action::Grant, Action::Revoke])],
            &[Cond::Severity(&[Severity::High])],
        ],
        rows: Rows::PerEvent,
        columns: &[
            C::Time,
            C::Severity,
            C::Category,
            C::Action,
            C::Outcome,
            C::EventType,
            C::Actor,
            C::Ip,
            C::Targets,
            C::Description,
            C::Integration,
            C::EventId,
        ],
    },
    Kind {
        name: "export_activity",
        title: "Export activity",
        about: "Exports of data, in the vendors' logs and the hub's own (export jobs, streamed exports, report downloads)",
        any_of: &[
            &[Cond::Action(&[Action::Export])],
            &[
                Cond::Integration(&["trailhub"]),
                Cond::EventTypePrefix(&["export.", "export_job.", "report."]),
            ],
        ],
        rows: Rows::PerEvent,
        columns: &[
            C::Time,
            C::Actor,
            C::ActorType,
            C::EventType,
            C::Outcome,
            C::Targets,
            C::Description,
            C::Ip,
            C::Integration,
            C::EventId,
        ],
    },
    Kind {
        name: "admin_activity",
        title: "Admin activity",
        about: "Configuration, user management and authorization changes",
        any_of: &[
            &[Cond::Category(&[
                Category::Configuration,
                Category::UserManagement,
            ])],
            &[
                Cond::Category(&[Category::Authorization]),
                Cond::Action(&[
                    Action::Create,
                    Action::Update,
                    Action::Delete,
                    Action::Grant,
                    Action::Revoke,
                ]),
            ],
        ],
        rows: Rows::PerEvent,
        columns: &[
            C::Time,
            C::Actor,
            C::Category,
            C::Action,
            C::EventType,
            C::Targets,
            C::Changes,
            C::Outcome,
            C::Description,
            C::Integration,
            C::EventId,
        ],
    },
    Kind {
        name: "system_access",
        title: "System and API access",
        about: "What services, API keys and the system did: the non-human actors",
        any_of: &[&[Cond::ActorType(MACHINES)]],
        rows: Rows::PerEvent,
        columns: &[
            C::Time,
            C::ActorType,
            C::ActorId,
            C::Actor,
            C::Action,
            C::EventType,
            C::Targets,
            C::Outcome,
            C::Ip,
            C::UserAgent,
            C::Integration,
            C::EventId,
        ],
    },
];

/// The report kind of this name.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The names, for error messages.
pub fn names() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(category: &str, action: &str, actor_type: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "id": "0000000000000001", "time": "2024-05-01T00:00:00Z",
            "ingested_at": "2024-05-01T00:00:00Z",
            "integration": {"id": "custom", "name": "custom", "connector": "custom"},
            "source_id": "s", "event_type": "x.y", "category": category, "action": action,
            "outcome": "success", "actor": {"id": "u1", "name": "Zoë", "type": actor_type},
            "targets": [], "changes": [{"field": "role", "old": "member", "new": "owner"}],
            "severity": "info", "raw": {}
        }))
        .expect("an event")
    }

    #[test]
    fn every_kind_has_a_unique_name_and_an_event_column() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 6);
        for k in KINDS {
            assert!(k.columns.contains(&Column::Time), "{}", k.name);
            assert!(!k.any_of.is_empty());
        }
    }

    #[test]
    fn clauses_select_and_rows_expand() {
        let login = event("authentication", "login", "user");
        assert!(kind("user_access").expect("kind").selects(&login));
        assert!(kind("security_events").expect("kind").selects(&login));
        assert!(!kind("system_access").expect("kind").selects(&login));
        let bot = event("data_change", "update", "service");
        assert!(!kind("user_access").expect("kind").selects(&bot));
        assert!(kind("system_access").expect("kind").selects(&bot));
        let changes = kind("data_changes").expect("kind");
        let rows = changes.rows_of(&bot);
        assert_eq!(rows.len(), 1);
        let at = |h: &str| {
            changes
                .headers()
                .iter()
                .position(|x| *x == h)
                .expect("column")
        };
        assert_eq!(rows[0][at("field")], "role");
        assert_eq!(rows[0][at("before")], "member");
        assert_eq!(rows[0][at("after")], "owner");
        assert_eq!(rows[0][at("actor")], "Zoë");
        assert!(kind("nope").is_none());
    }
}
