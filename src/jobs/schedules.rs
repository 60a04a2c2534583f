//! Report schedules: a report kind made on a cron in a named time zone, over a range that ends at
//! the fire time (`P7D`: the seven days before it). The runner's clock looks every second for a
//! schedule whose latest fire time is past its last run: a schedule that missed fires while the
//! hub was down runs once, for the latest of them. The fire it runs for and the job it queues are
//! stored in one batch, so a crash neither skips nor repeats one.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::record::{self, key, Creator, Job, Progress, Range, Spec, State, SCHEDULE_PREFIX};
use super::{JobError, Jobs, MAX_NAME_CHARS};
use crate::auth::{Principal, Role};
use crate::schema::{Action, Category, Target};
use crate::time::{format_micros, now_micros, Micros};

/// Schedules a hub keeps at most.
pub const MAX_SCHEDULES: usize = 100;
/// Notification channels one schedule may name.
pub const MAX_CHANNELS: usize = 10;
const MAX_CHANNEL_ID_CHARS: usize = 64;

/// A schedule as an admin sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    pub name: Option<String>,
    /// The report kind.
    pub kind: String,
    /// Cron, 5 fields (Unix) or 6 (with seconds first), as integrations take it.
    pub cron: String,
    /// The range each report covers, ending at the fire time: an ISO 8601 duration (`P7D`).
    pub range: String,
    /// IANA time zone the cron is read in (`Europe/Paris`) [default: UTC].
    pub time_zone: Option<String>,
    #[serde(default)]
    pub filter: serde_json::Map<String, Value>,
    /// Ids of notification channels to deliver each report to.
    #[serde(default)]
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub v: u32,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub cron: String,
    pub range: String,
    pub time_zone: String,
    pub filter: BTreeMap<String, String>,
    pub channels: Vec<String>,
    pub created_at: Micros,
    pub created_by: Creator,
    /// The fire time of the last run.
    #[serde(default)]
    pub last_fire: Option<Micros>,
    /// The report job of the last run.
    #[serde(default)]
    pub last_job: Option<String>,
}

impl Schedule {
    fn parsed(&self) -> Option<(cron::Schedule, chrono_tz::Tz, Micros)> {
        let cron = crate::schedule::parse_schedule(&self.cron).ok()?;
        let tz = chrono_tz::Tz::from_str(&self.time_zone).ok()?;
        let span = crate::connectors::iso_duration(&self.range)?;
        Some((cron, tz, span))
    }

    /// The latest fire time at or before `now` not yet run, if any.
    pub fn due(&self, now: Micros) -> Option<Micros> {
        let (cron, tz, _) = self.parsed()?;
        let after = DateTime::<Utc>::from_timestamp_micros(now.checked_add(1)?)?.with_timezone(&tz);
        let latest = cron.after(&after).next_back()?.timestamp_micros();
        let since = self.last_fire.unwrap_or(self.created_at);
        (latest > since && latest <= now).then_some(latest)
    }

    /// The next fire time after `now`.
    pub fn next_fire(&self, now: Micros) -> Option<Micros> {
        let (cron, tz, _) = self.parsed()?;
        let from = DateTime::<Utc>::from_timestamp_micros(now)?.with_timezone(&tz);
        Some(cron.after(&from).next()?.timestamp_micros())
    }

    pub fn to_json(&self, now: Micros) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "cron": self.cron,
            "range": self.range,
            "time_zone": self.time_zone,
            "filter": self.filter,
            "channels": self.channels,
            "created_at": format_micros(self.created_at),
            "created_by": {"token_id": self.created_by.token_id, "name": self.created_by.name},
            "last_run_for": self.last_fire.map(format_micros),
            "last_report": self.last_job,
            "next_run": self.next_fire(now).map(format_micros),
        })
    }
}

impl Jobs {
    /// Checks and stores a schedule; records its creation.
    pub async fn add_schedule(
        &self,
        who: &Principal,
        new: NewSchedule,
    ) -> Result<Schedule, JobError> {
        let now = now_micros();
        let kind = super::report::kinds::kind(&new.kind).ok_or_else(|| {
            JobError::invalid(
                "kind",
                format!(
                    "no report kind {:?}; known: {}",
                    short(&new.kind),
                    super::report::kinds::names()
                ),
            )
        })?;
        crate::schedule::parse_schedule(&new.cron)
            .map_err(|e| JobError::invalid("cron", e.chars().take(300).collect::<String>()))?;
        let span = crate::connectors::iso_duration(&new.range)
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                JobError::invalid(
                    "range",
                    format!(
                        "expected an ISO 8601 duration such as P7D or PT12H, got {:?}",
                        short(&new.range)
                    ),
                )
            })?;
        let zone = new.time_zone.unwrap_or_else(|| "UTC".to_string());
        let tz = chrono_tz::Tz::from_str(&zone).map_err(|_| {
            JobError::invalid(
                "time_zone",
                format!(
                    "{:?} is not an IANA time zone name (such as UTC or Europe/Paris)",
                    short(&zone)
                ),
            )
        })?;
        // the range is checked as a job's would be: the same filters and the same longest span
        let range = self.check_range(
            Some(&format_micros(now.saturating_sub(span))),
            Some(&format_micros(now)),
            &new.filter,
            now,
        )?;
        if new.channels.len() > MAX_CHANNELS {
            return Err(JobError::invalid(
                "channels",
                format!("{} channels; at most {MAX_CHANNELS}", new.channels.len()),
            ));
        }
        for c in &new.channels {
            let ok = !c.is_empty()
                && c.len() <= MAX_CHANNEL_ID_CHARS
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(JobError::invalid(
                    "channels",
                    format!("{:?} is not a channel id (letters, digits, - and _, at most {MAX_CHANNEL_ID_CHARS})", short(c)),
                ));
            }
            if self.delivery().is_some_and(|d| !d.channel_exists(c)) {
                return Err(JobError::invalid(
                    "channels",
                    format!("there is no notification channel {:?}", short(c)),
                ));
            }
        }
        let name = new
            .name
            .map(|n| n.trim().to_string())
            .unwrap_or_else(|| format!("{} every {}", kind.title, new.cron.trim()));
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(JobError::invalid(
                "name",
                format!("1 to {MAX_NAME_CHARS} characters, no control characters"),
            ));
        }
        let schedule = Schedule {
            v: record::RECORD_VERSION,
            id: record::new_id(now),
            name,
            kind: kind.name.to_string(),
            cron: new.cron.trim().to_string(),
            range: new.range.trim().to_string(),
            time_zone: tz.name().to_string(),
            filter: range.filter,
            channels: new.channels,
            created_at: now,
            created_by: Creator::from(who),
            last_fire: None,
            last_job: None,
        };
        {
            let _one_at_a_time = self.inner.create.lock().await;
            let count = self.tree().scan_prefix([SCHEDULE_PREFIX]).count();
            if count >= MAX_SCHEDULES {
                return Err(JobError::Busy(format!(
                    "the hub keeps at most {MAX_SCHEDULES} report schedules; delete one first"
                )));
            }
            self.put_schedule(&schedule)?;
        }
        let recorded = self
            .audit_schedule(
                who,
                &schedule,
                "report_schedule.create",
                Action::Create,
                "created",
            )
            .await;
        if let Err(e) = recorded {
            let _ = self.tree().remove(key(SCHEDULE_PREFIX, &schedule.id));
            return Err(e);
        }
        self.tree().flush_async().await?;
        Ok(schedule)
    }

    pub fn schedules(&self) -> Result<Vec<Schedule>, JobError> {
        self.tree()
            .scan_prefix([SCHEDULE_PREFIX])
            .map(|item| {
                let (_, v) = item?;
                decode_schedule(&v)
            })
            .collect()
    }

    /// Deletes a schedule (the reports it made stay); false when there is none of that id.
    pub async fn remove_schedule(&self, who: &Principal, id: &str) -> Result<bool, JobError> {
        if !record::is_id(id) {
            return Ok(false);
        }
        let Some(v) = self.tree().remove(key(SCHEDULE_PREFIX, id))? else {
            return Ok(false);
        };
        let schedule = decode_schedule(&v)?;
        self.audit_schedule(
            who,
            &schedule,
            "report_schedule.delete",
            Action::Delete,
            "deleted",
        )
        .await?;
        self.tree().flush_async().await?;
        Ok(true)
    }

    fn put_schedule(&self, s: &Schedule) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(s).map_err(|e| JobError::Io(e.to_string()))?;
        self.tree().insert(key(SCHEDULE_PREFIX, &s.id), bytes)?;
        Ok(())
    }

    async fn audit_schedule(
        &self,
        who: &Principal,
        s: &Schedule,
        event_type: &str,
        action: Action,
        verb: &str,
    ) -> Result<(), JobError> {
        crate::audit::record(
            self.store(),
            who,
            crate::audit::AdminAction {
                event_type,
                action,
                category: Category::Configuration,
                target: Some(Target {
                    kind: "report_schedule".into(),
                    id: s.id.clone(),
                    name: Some(s.name.clone()),
                }),
                description: format!(
                    "report schedule {} ({}) {verb}: {} on {:?} in {}, over {}",
                    s.id, s.name, s.kind, s.cron, s.time_zone, s.range
                ),
                details: json!({"kind": s.kind, "cron": s.cron, "range": s.range, "time_zone": s.time_zone, "filter": s.filter, "channels": s.channels}),
            },
        )
        .await?;
        Ok(())
    }
}

/// Queues a report for every schedule that is due, each with its fire recorded in the same batch.
pub(super) async fn run_due(jobs: &Jobs) -> Result<(), JobError> {
    let now = now_micros();
    for schedule in jobs.schedules()? {
        let Some(fire) = schedule.due(now) else {
            continue;
        };
        // a full queue holds the schedule back: it runs once, for its latest fire, when there
        // is room
        if jobs.count_active()? >= jobs.settings().max_queued {
            tracing::debug!(schedule = %schedule.id, "a scheduled report waits: the job queue is full");
            continue;
        }
        let Some((_, _, span)) = schedule.parsed() else {
            continue;
        };
        let who = Principal {
            token_id: format!("schedule:{}", schedule.id),
            name: format!("report schedule {}", schedule.name),
            role: Role::Admin,
        };
        let job = Job {
            v: record::RECORD_VERSION,
            id: record::new_id(now),
            name: format!("{} for {}", schedule.name, format_micros(fire)),
            spec: Spec::Report {
                report: schedule.kind.clone(),
                range: Range {
                    since: fire.saturating_sub(span),
                    until: fire,
                    filter: schedule.filter.clone(),
                },
                schedule: Some(schedule.id.clone()),
            },
            state: State::Queued,
            created_at: now,
            created_by: Creator::from(&who),
            started_at: None,
            finished_at: None,
            expires_at: None,
            attempts: 0,
            progress: Progress::default(),
            outputs: Vec::new(),
            summary: None,
            error: None,
        };
        let mut next = schedule.clone();
        next.last_fire = Some(fire);
        next.last_job = Some(job.id.clone());
        let schedule_key = key(SCHEDULE_PREFIX, &schedule.id);
        let before = serde_json::to_vec(&schedule).map_err(|e| JobError::Io(e.to_string()))?;
        let after = serde_json::to_vec(&next).map_err(|e| JobError::Io(e.to_string()))?;
        let job_bytes = serde_json::to_vec(&job).map_err(|e| JobError::Io(e.to_string()))?;
        let job_key = job.key();
        // one transaction: the fire and its job together, and only if the schedule is unchanged
        // (not deleted meanwhile)
        let committed = jobs
            .tree()
            .transaction(|t| {
                if t.get(&schedule_key)?.as_deref() != Some(before.as_slice()) {
                    return Ok(false);
                }
                t.insert(schedule_key.as_slice(), after.as_slice())?;
                t.insert(job_key.as_slice(), job_bytes.as_slice())?;
                Ok(true)
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(s) => JobError::from(s),
                sled::transaction::TransactionError::Abort(()) => JobError::Io("aborted".into()),
            })?;
        if !committed {
            continue;
        }
        jobs.tree().flush_async().await?;
        tracing::info!(schedule = %schedule.id, job = %job.id, fire = %format_micros(fire), "scheduled report queued");
        let recorded = jobs
            .audit(
                &who,
                &job,
                "create",
                Action::Export,
                format!(
                    "report job {} ({}) queued by schedule {}",
                    job.id, job.name, schedule.id
                ),
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(job = %job.id, error = %e, "a scheduled report's record could not be stored");
        }
        if let Err(e) = jobs.forget_oldest(super::JobKind::Report) {
            tracing::warn!(error = %e, "the report history could not be trimmed");
        }
        jobs.inner.wake.notify_one();
    }
    Ok(())
}

/// A scheduled report completed: hands it to the delivery hook with its schedule's channels.
pub(super) fn delivered(jobs: &Jobs, job: &Job, schedule_id: &str) {
    let Ok(Some(v)) = jobs.tree().get(key(SCHEDULE_PREFIX, schedule_id)) else {
        return;
    };
    let Ok(schedule) = decode_schedule(&v) else {
        return;
    };
    if schedule.channels.is_empty() {
        return;
    }
    match jobs.delivery() {
        Some(d) => d.deliver(job, &schedule),
        None => {
            tracing::debug!(job = %job.id, channels = ?schedule.channels, "no report delivery is connected; the report is kept in the history")
        }
    }
}

fn decode_schedule(bytes: &[u8]) -> Result<Schedule, JobError> {
    serde_json::from_slice(bytes).map_err(|e| {
        JobError::Store(crate::store::StoreError::Corrupt(format!(
            "a stored report schedule: {e}"
        )))
    })
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: &str, created_at: Micros) -> Schedule {
        Schedule {
            v: 1,
            id: "000000000000000000000000".into(),
            name: "t".into(),
            kind: "user_access".into(),
            cron: cron.into(),
            range: "P7D".into(),
            time_zone: zone.into(),
            filter: BTreeMap::new(),
            channels: Vec::new(),
            created_at,
            created_by: Creator {
                token_id: "t".into(),
                name: "t".into(),
            },
            last_fire: None,
            last_job: None,
        }
    }

    #[test]
    fn a_missed_fire_runs_once_for_the_latest() {
        // daily at 09:00 in Paris (07:00 UTC in summer), made 2024-05-01T00:00Z
        let made = crate::time::parse_rfc3339("2024-05-01T00:00:00Z").expect("time");
        let mut s = schedule("0 9 * * *", "Europe/Paris", made);
        let before = crate::time::parse_rfc3339("2024-05-01T06:59:59Z").expect("time");
        assert_eq!(s.due(before), None);
        // the hub was down for three days: one run, for the latest fire
        let later = crate::time::parse_rfc3339("2024-05-04T12:00:00Z").expect("time");
        let fire = s.due(later).expect("due");
        assert_eq!(format_micros(fire), "2024-05-04T07:00:00.000000Z");
        s.last_fire = Some(fire);
        assert_eq!(s.due(later), None);
        assert_eq!(
            s.next_fire(later).map(format_micros).as_deref(),
            Some("2024-05-05T07:00:00.000000Z")
        );
    }
}
