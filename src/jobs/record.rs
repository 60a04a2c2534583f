//! What the jobs tree holds: a job (an export or a report) with its state, progress and files,
//! and the keys they are stored under
//!
//! Tree `desk:jobs`, one JSON value per key (every value carries `v`, its schema version):
//!
//! | key | value |
//! |---|---|
//! | `e` id | an export job |
//! | `r` id | a report job |
//! | `s` id | a report schedule (`jobs::schedules`) |
//!
//! An id is 24 lowercase hex digits: the creation time in micros (16) and 32 random bits, so
//! keys sort by creation and a reverse scan lists newest first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::writer::ExportFormat;
use crate::auth::Principal;
use crate::store::query::Filter;
use crate::time::{format_micros, Micros};
use crate::timeline::ParamError;

/// The schema version of stored jobs and schedules.
pub const RECORD_VERSION: u32 = 1;

/// Which list a job belongs to: `/api/v1/exports` or `/api/v1/reports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Export,
    Report,
}

impl JobKind {
    pub fn prefix(self) -> u8 {
        match self {
            JobKind::Export => b'e',
            JobKind::Report => b'r',
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            JobKind::Export => "export",
            JobKind::Report => "report",
        }
    }

    /// The API collection its jobs live under.
    pub fn path(self) -> &'static str {
        match self {
            JobKind::Export => "/api/v1/exports",
            JobKind::Report => "/api/v1/reports",
        }
    }
}

pub const SCHEDULE_PREFIX: u8 = b's';

pub fn key(prefix: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(prefix);
    k.extend_from_slice(id.as_bytes());
    k
}

/// A new id made at `now`: sortable by creation time, unguessable enough not to collide.
pub fn new_id(now: Micros) -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS random source is available");
    format!("{:016x}{}", now.max(0), hex::encode(b))
}

/// True for text that can be an id this module made (checked before it reaches a key or a path).
pub fn is_id(text: &str) -> bool {
    text.len() == 24
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Completed,
    Failed,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Expired => "expired",
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Expired)
    }
}

/// The time range and timeline filters of a job: `since` and `until` resolved to instants when
/// the job was made (so a re-run after a restart covers the same range), the filters as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub since: Micros,
    pub until: Micros,
    /// Timeline parameters (`integration`, `actor`, `q`, ...), as the timeline takes them.
    pub filter: BTreeMap<String, String>,
}

impl Range {
    /// The store filter: the timeline's parsing of the parameters, within [since, until).
    pub fn to_filter(&self) -> Result<Filter, ParamError> {
        let pairs: Vec<(String, String)> = self
            .filter
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut filter = crate::timeline::parse(&pairs, &[], self.since)?.filter;
        filter.since = Some(self.since);
        filter.until = Some(self.until);
        Ok(filter)
    }

    fn to_json(&self) -> Value {
        json!({
            "since": format_micros(self.since),
            "until": format_micros(self.until),
            "filter": self.filter,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Spec {
    Export {
        format: ExportFormat,
        #[serde(flatten)]
        range: Range,
    },
    Report {
        /// The report's kind (`jobs::report::kinds`), by name.
        report: String,
        #[serde(flatten)]
        range: Range,
        /// The schedule that made it, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<String>,
    },
}

impl Spec {
    pub fn kind(&self) -> JobKind {
        match self {
            Spec::Export { .. } => JobKind::Export,
            Spec::Report { .. } => JobKind::Report,
        }
    }

    pub fn range(&self) -> &Range {
        match self {
            Spec::Export { range, .. } | Spec::Report { range, .. } => range,
        }
    }
}

/// Who asked for a job (a token, or a schedule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    pub token_id: String,
    pub name: String,
}

impl From<&Principal> for Creator {
    fn from(p: &Principal) -> Self {
        Creator {
            token_id: p.token_id.clone(),
            name: p.name.clone(),
        }
    }
}

/// One file a finished job wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// `csv`, `json`, `ndjson` or `pdf`: also the file's extension.
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Events written so far (for a report: events read that it includes).
    pub events: u64,
    /// Events the job will write, estimated from the store's counts before it starts.
    pub estimated_total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub v: u32,
    pub id: String,
    pub name: String,
    pub spec: Spec,
    pub state: State,
    pub created_at: Micros,
    pub created_by: Creator,
    #[serde(default)]
    pub started_at: Option<Micros>,
    #[serde(default)]
    pub finished_at: Option<Micros>,
    #[serde(default)]
    pub expires_at: Option<Micros>,
    /// Times a run was started (a run cut short by a crash or a restart is started again).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub progress: Progress,
    /// The files of a completed job.
    #[serde(default)]
    pub outputs: Vec<Output>,
    /// A completed report's summary (counts, rows, whether it was cut).
    #[serde(default)]
    pub summary: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

impl Job {
    pub fn key(&self) -> Vec<u8> {
        key(self.spec.kind().prefix(), &self.id)
    }

    /// The file of one output in the jobs directory: `<id>.<format>`.
    pub fn file_name(&self, format: &str) -> String {
        format!("{}.{format}", self.id)
    }

    /// The job as the API shows it.
    pub fn to_json(&self) -> Value {
        let kind = self.spec.kind();
        let mut v = json!({
            "id": self.id,
            "kind": kind.noun(),
            "name": self.name,
            "state": self.state.as_str(),
            "created_at": format_micros(self.created_at),
            "created_by": {"token_id": self.created_by.token_id, "name": self.created_by.name},
            "started_at": self.started_at.map(format_micros),
            "finished_at": self.finished_at.map(format_micros),
            "expires_at": self.expires_at.map(format_micros),
            "attempts": self.attempts,
            "progress": {
                "events": self.progress.events,
                "estimated_total": self.progress.estimated_total,
                "percent": self.percent(),
            },
            "error": self.error,
        });
        let range = self.spec.range().to_json();
        for k in ["since", "until", "filter"] {
            v[k] = range[k].clone();
        }
        let files: serde_json::Map<String, Value> = self
            .outputs
            .iter()
            .map(|o| {
                (
                    o.format.clone(),
                    json!({
                        "bytes": o.bytes,
                        "sha256": o.sha256,
                        "download": format!("{}/{}/download?format={}", kind.path(), self.id, o.format),
                    }),
                )
            })
            .collect();
        match &self.spec {
            Spec::Export { format, .. } => {
                v["format"] = json!(format.as_str());
                let out = self.outputs.first();
                v["bytes"] = json!(out.map(|o| o.bytes));
                v["sha256"] = json!(out.map(|o| o.sha256.clone()));
                v["events"] = json!(if self.state == State::Completed
                    || self.state == State::Expired
                {
                    Some(self.progress.events)
                } else {
                    None
                });
                v["download"] = json!(format!("{}/{}/download", kind.path(), self.id));
            }
            Spec::Report {
                report, schedule, ..
            } => {
                v["report"] = json!(report);
                v["schedule"] = json!(schedule);
                v["files"] = Value::Object(files);
                v["summary"] = self.summary.clone().unwrap_or(Value::Null);
            }
        }
        v
    }

    /// Progress in percent of the estimate (capped at 99 until the job completes).
    fn percent(&self) -> Option<u64> {
        match self.state {
            State::Completed => Some(100),
            State::Running => self.progress.estimated_total.map(|t| {
                self.progress
                    .events
                    .saturating_mul(100)
                    .checked_div(t)
                    .unwrap_or(99)
                    .min(99)
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_are_checked() {
        let a = new_id(1_714_521_600_000_000);
        let b = new_id(1_714_521_600_000_001);
        assert!(is_id(&a) && is_id(&b));
        assert!(a < b);
        for bad in ["", "../../etc/passwd", "ABCDEF0123456789abcdef01", "0123"] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_spec_round_trips_with_its_kind() {
        let spec = Spec::Report {
            report: "user_access".into(),
            range: Range {
                since: 1,
                until: 2,
                filter: [("actor".to_string(), "alice".to_string())].into(),
            },
            schedule: None,
        };
        let text = serde_json::to_string(&spec).expect("serialises");
        assert!(text.contains("\"kind\":\"report\""), "{text}");
        assert_eq!(serde_json::from_str::<Spec>(&text).expect("parses"), spec);
    }
}
