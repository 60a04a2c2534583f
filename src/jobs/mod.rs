//! Export jobs and reports: named, asynchronous work over a time range of the timeline, run in
//! the background by a small bounded runner, written to files under `<data_dir>/exports`, kept
//! with a history, downloaded when complete, and expired after a while
//!
//! A job is stored (and flushed) before it is answered, so a `kill -9` never loses an accepted
//! one. A job's file is written as `<id>.<ext>.partial`, synced and renamed, and only then is the
//! job marked completed: a crash leaves a partial file (deleted at the next start) and a job still
//! marked running, which the next start runs again from the beginning. Nothing half-written is
//! ever served.
//!
//! Exports write events through `writer` (the one writer the streamed export uses too); reports
//! (`report`) select and shape events by a kind defined as data and write a CSV and a PDF.
//! Schedules (`schedules`) make report jobs on a cron. Every create, download and delete is
//! recorded as an event of the `trailhub` integration before it is answered.

mod context;
pub mod export;
mod record;
pub mod report;
mod runner;
pub mod schedules;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use context::Live;
pub use record::{Creator, Job, JobKind, Output, Progress, Range, Spec, State};
pub use schedules::{NewSchedule, Schedule};

use crate::audit::{self, AdminAction};
use crate::auth::Principal;
use crate::config::JobSettings;
use crate::schema::{Action, Category, Target};
use crate::store::{Store, StoreError};
use crate::time::{now_micros, Micros};

/// The directory, under the data dir, of the jobs' files.
pub const JOBS_DIR: &str = "exports";
/// The tree of jobs and schedules (`Store::desk_tree`).
const TREE: &str = "jobs";
/// Jobs of one kind kept in the history; past it the oldest finished ones are forgotten.
pub const MAX_HISTORY: usize = 1_000;
/// Longest job name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest value of one filter parameter.
pub const MAX_FILTER_VALUE_CHARS: usize = 1_000;
/// Most jobs one list answers.
pub const MAX_LIST: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A field of the request is not acceptable (400).
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    /// Valid, but more than the hub will do (422): a range longer than the limit.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    /// The job is not in a state that allows this (409): a download before it completed.
    #[error("{0}")]
    NotReady(String),
    /// The job's files expired and were deleted (410).
    #[error("{0}")]
    Expired(String),
    /// Too many jobs are waiting (429).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

impl JobError {
    pub fn invalid(field: &str, message: impl Into<String>) -> JobError {
        JobError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<sled::Error> for JobError {
    fn from(e: sled::Error) -> Self {
        JobError::Store(e.into())
    }
}

/// Told when a scheduled report completes, with the notification channels its schedule names.
/// The notification module connects here (`Jobs::set_delivery`); without it the ids are kept
/// and nothing is sent.
pub trait ReportDelivery: Send + Sync {
    /// `job` is completed; its files are [`Jobs::file_path`] of each output. Called on a blocking
    /// thread; delivery's own retries are the implementor's.
    fn deliver(&self, job: &Job, schedule: &Schedule);
    /// A schedule may name the channel `id` (it exists).
    fn channel_exists(&self, _id: &str) -> bool {
        true
    }
}

/// The export jobs, reports and report schedules of a hub, and the runner behind them.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tree: sled::Tree,
    dir: PathBuf,
    settings: JobSettings,
    /// Wakes the runner: a job was queued, a worker finished.
    wake: tokio::sync::Notify,
    /// Jobs running now, by id.
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Serialises creations, so the queue's bound and the history's hold.
    create: tokio::sync::Mutex<()>,
    delivery: RwLock<Option<Arc<dyn ReportDelivery>>>,
}

impl Jobs {
    /// Opens the jobs of `store`, with their files under `<data_dir>/exports`. A job a crash or
    /// a stop left running is queued again (from the start) and every partial file is deleted.
    pub fn open(store: Store, data_dir: &Path, settings: JobSettings) -> Result<Jobs, JobError> {
        let dir = data_dir.join(JOBS_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| JobError::Io(format!("cannot create {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| JobError::Io(format!("cannot restrict {}: {e}", dir.display())))?;
        }
        let tree = store.desk_tree(TREE)?;
        let jobs = Jobs {
            inner: Arc::new(Inner {
                store,
                tree,
                dir,
                settings,
                wake: tokio::sync::Notify::new(),
                live: Mutex::new(HashMap::new()),
                create: tokio::sync::Mutex::new(()),
                delivery: RwLock::new(None),
            }),
        };
        runner::recover(&jobs)?;
        Ok(jobs)
    }

    pub fn settings(&self) -> &JobSettings {
        &self.inner.settings
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.inner.tree
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Connects scheduled reports to notification channels.
    pub fn set_delivery(&self, delivery: Arc<dyn ReportDelivery>) {
        if let Ok(mut d) = self.inner.delivery.write() {
            *d = Some(delivery);
        }
    }

    pub(crate) fn delivery(&self) -> Option<Arc<dyn ReportDelivery>> {
        self.inner.delivery.read().ok().and_then(|d| d.clone())
    }

    /// Where a job's output of `format` is (or was) kept.
    pub fn file_path(&self, job: &Job, format: &str) -> PathBuf {
        self.inner.dir.join(job.file_name(format))
    }

    /// Checks a range and filter as the API and schedules give them: `since` required (RFC 3339
    /// or a duration ago such as 7d), `until` defaulting to `now`, the filters the timeline takes,
    /// and at most `max_range` between them.
    pub fn check_range(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        filter: &serde_json::Map<String, serde_json::Value>,
        now: Micros,
    ) -> Result<Range, JobError> {
        let since = since.ok_or_else(|| {
            JobError::invalid(
                "since",
                "required: the start of the range (RFC 3339, or a duration ago such as 7d)",
            )
        })?;
        let mut pairs = vec![("since".to_string(), since.to_string())];
        if let Some(u) = until {
            pairs.push(("until".to_string(), u.to_string()));
        }
        let mut kept = std::collections::BTreeMap::new();
        for (k, v) in filter {
            if k == "since" || k == "until" {
                return Err(JobError::invalid(
                    &format!("filter.{}", short(k)),
                    "give `since` and `until` beside `filter`, not inside it",
                ));
            }
            let Some(text) = v.as_str() else {
                return Err(JobError::invalid(
                    &format!("filter.{}", short(k)),
                    "must be a string, as in the timeline's query",
                ));
            };
            if text.chars().count() > MAX_FILTER_VALUE_CHARS {
                return Err(JobError::invalid(
                    &format!("filter.{}", short(k)),
                    format!("longer than {MAX_FILTER_VALUE_CHARS} characters"),
                ));
            }
            pairs.push((k.clone(), text.to_string()));
            kept.insert(k.clone(), text.trim().to_string());
        }
        let request = crate::timeline::parse(&pairs, &[], now).map_err(|e| {
            let field = if e.field == "since" || e.field == "until" {
                e.field.clone()
            } else {
                format!("filter.{}", short(&e.field))
            };
            JobError::invalid(&field, e.message)
        })?;
        let since = request.filter.since.unwrap_or(now);
        let until = request.filter.until.unwrap_or(now);
        if since >= until {
            return Err(JobError::invalid(
                "since",
                "must be before `until` (which defaults to now)",
            ));
        }
        let span = until.saturating_sub(since);
        let max = i64::try_from(self.inner.settings.max_range.as_micros()).unwrap_or(i64::MAX);
        if span > max {
            let days = |m: i64| m as f64 / crate::time::DAY as f64;
            return Err(JobError::Unprocessable(format!(
                "the range `since`..`until` spans {:.1} days; one job may span at most {:.0} days (`[jobs] max_range_days`): split it into several",
                days(span),
                days(max)
            )));
        }
        Ok(Range {
            since,
            until,
            filter: kept,
        })
    }

    /// Queues a job and records its creation; answers it as stored.
    pub async fn create(
        &self,
        who: &Principal,
        name: Option<String>,
        spec: Spec,
    ) -> Result<Job, JobError> {
        let kind = spec.kind();
        let name = check_name(name, &spec)?;
        let _one_at_a_time = self.inner.create.lock().await;
        let waiting = self.count_active()?;
        if waiting >= self.inner.settings.max_queued {
            return Err(JobError::Busy(format!(
                "{waiting} export and report jobs are queued or running, the most the hub keeps waiting (`[jobs] max_queued`); retry when some have finished"
            )));
        }
        let now = now_micros();
        let job = Job {
            v: record::RECORD_VERSION,
            id: record::new_id(now),
            name,
            spec,
            state: State::Queued,
            created_at: now,
            created_by: Creator::from(who),
            started_at: None,
            finished_at: None,
            expires_at: None,
            attempts: 0,
            progress: Progress::default(),
            outputs: Vec::new(),
            summary: None,
            error: None,
        };
        self.put(&job)?;
        let recorded = self
            .audit(
                who,
                &job,
                "create",
                Action::Export,
                format!("{} job {} ({}) queued", kind.noun(), job.id, job.name),
            )
            .await;
        if let Err(e) = recorded {
            // not answered, so not kept: a job exists only with its record
            let _ = self.inner.tree.remove(job.key());
            return Err(e);
        }
        self.inner.tree.flush_async().await?;
        self.forget_oldest(kind)?;
        self.inner.wake.notify_one();
        Ok(job)
    }

    /// One job, with the live progress of a running one.
    pub fn get(&self, kind: JobKind, id: &str) -> Result<Job, JobError> {
        let not_found = || JobError::NotFound(format!("no {} job with id {id:?}", kind.noun()));
        if !record::is_id(id) {
            return Err(not_found());
        }
        let bytes = self
            .inner
            .tree
            .get(record::key(kind.prefix(), id))?
            .ok_or_else(not_found)?;
        let mut job = decode(&bytes)?;
        self.overlay_live(&mut job);
        Ok(job)
    }

    /// Jobs of `kind`, newest first, at most `limit`; and how many there are in all.
    pub fn list(&self, kind: JobKind, limit: usize) -> Result<(Vec<Job>, usize), JobError> {
        let mut out = Vec::new();
        let mut total = 0;
        for item in self.inner.tree.scan_prefix([kind.prefix()]).rev() {
            let (_, v) = item?;
            total += 1;
            if out.len() < limit {
                let mut job = decode(&v)?;
                self.overlay_live(&mut job);
                out.push(job);
            }
        }
        Ok((out, total))
    }

    /// Opens a completed job's file of `format` for download and records the download.
    pub async fn open_download(
        &self,
        who: &Principal,
        kind: JobKind,
        id: &str,
        format: &str,
    ) -> Result<(Job, Output, tokio::fs::File), JobError> {
        let job = self.get(kind, id)?;
        match job.state {
            State::Completed => {}
            State::Expired => {
                return Err(JobError::Expired(format!(
                    "{} job {id} expired at {} and its files were deleted; make it again",
                    kind.noun(),
                    job.expires_at
                        .map(crate::time::format_micros)
                        .unwrap_or_default()
                )))
            }
            other => {
                return Err(JobError::NotReady(format!(
                    "{} job {id} is {}{}: there is nothing to download until it completes",
                    kind.noun(),
                    other.as_str(),
                    job.error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )))
            }
        }
        let output = job
            .outputs
            .iter()
            .find(|o| o.format == format)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = job.outputs.iter().map(|o| o.format.as_str()).collect();
                JobError::invalid(
                    "format",
                    format!(
                        "{} job {id} has no {format:?} file; it has {}",
                        kind.noun(),
                        known.join(", ")
                    ),
                )
            })?;
        let path = self.file_path(&job, &output.format);
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                JobError::Expired(format!(
                    "the file of {} job {id} is gone (expired or deleted)",
                    kind.noun()
                ))
            } else {
                JobError::Io(format!("cannot open {}: {e}", path.display()))
            }
        })?;
        self.audit(
            who,
            &job,
            "download",
            Action::Export,
            format!(
                "{} job {} ({}) downloaded as {} ({} bytes, sha256 {})",
                kind.noun(),
                job.id,
                job.name,
                output.format,
                output.bytes,
                output.sha256
            ),
        )
        .await?;
        Ok((job, output, file))
    }

    /// Cancels a job that is queued or running, or deletes a finished one and its files;
    /// answers the state it had.
    pub async fn delete(
        &self,
        who: &Principal,
        kind: JobKind,
        id: &str,
    ) -> Result<State, JobError> {
        let job = self.get(kind, id)?;
        if let Some(live) = self.live(id) {
            live.cancel(context::Stop::Deleted);
        }
        self.inner.tree.remove(job.key())?;
        context::remove_files(self, &job);
        let verb = if job.state.finished() {
            "deleted"
        } else {
            "cancelled"
        };
        self.audit(
            who,
            &job,
            "delete",
            Action::Delete,
            format!(
                "{} job {} ({}) {verb} while {}",
                kind.noun(),
                job.id,
                job.name,
                job.state.as_str()
            ),
        )
        .await?;
        self.inner.tree.flush_async().await?;
        Ok(job.state)
    }

    /// Records an action on a job as an event of the `trailhub` integration.
    async fn audit(
        &self,
        who: &Principal,
        job: &Job,
        verb: &str,
        action: Action,
        description: String,
    ) -> Result<(), JobError> {
        let kind = job.spec.kind();
        let event_type = match (kind, verb) {
            (JobKind::Export, "create") => "export_job.create",
            (JobKind::Export, "download") => "export_job.download",
            (JobKind::Export, _) => "export_job.delete",
            (JobKind::Report, "create") => "report.create",
            (JobKind::Report, "download") => "report.download",
            (JobKind::Report, _) => "report.delete",
        };
        let range = job.spec.range();
        audit::record(
            &self.inner.store,
            who,
            AdminAction {
                event_type,
                action,
                category: Category::DataAccess,
                target: Some(Target {
                    kind: format!("{}_job", kind.noun()),
                    id: job.id.clone(),
                    name: Some(job.name.clone()),
                }),
                description,
                details: serde_json::json!({
                    "spec": job.spec,
                    "since": crate::time::format_micros(range.since),
                    "until": crate::time::format_micros(range.until),
                }),
            },
        )
        .await?;
        Ok(())
    }

    fn put(&self, job: &Job) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(job).map_err(|e| JobError::Io(e.to_string()))?;
        self.inner.tree.insert(job.key(), bytes)?;
        Ok(())
    }

    /// Jobs of both kinds queued or running.
    pub(crate) fn count_active(&self) -> Result<usize, JobError> {
        let mut n = 0;
        for kind in [JobKind::Export, JobKind::Report] {
            for item in self.inner.tree.scan_prefix([kind.prefix()]) {
                let (_, v) = item?;
                if !decode(&v)?.state.finished() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Forgets the oldest finished jobs of `kind` (and their files) past [`MAX_HISTORY`].
    fn forget_oldest(&self, kind: JobKind) -> Result<(), JobError> {
        let total = self.inner.tree.scan_prefix([kind.prefix()]).count();
        let mut excess = total.saturating_sub(MAX_HISTORY);
        for item in self.inner.tree.scan_prefix([kind.prefix()]) {
            if excess == 0 {
                break;
            }
            let (k, v) = item?;
            let job = decode(&v)?;
            if job.state.finished() {
                self.inner.tree.remove(k)?;
                context::remove_files(self, &job);
                excess -= 1;
            }
        }
        Ok(())
    }

    fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.inner.live.lock().ok()?.get(id).cloned()
    }

    fn overlay_live(&self, job: &mut Job) {
        if job.state != State::Running {
            return;
        }
        if let Some(live) = self.live(&job.id) {
            job.progress = live.progress();
        }
    }

    /// Starts the runner (workers, expiry, schedules); it stops when `stop` turns true, putting
    /// the jobs it was running back in the queue.
    pub fn spawn(&self, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        runner::spawn(self.clone(), stop)
    }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

fn check_name(name: Option<String>, spec: &Spec) -> Result<String, JobError> {
    let minute = |t: Micros| {
        let s = crate::time::format_micros(t);
        format!("{} {}", &s[..10], &s[11..16])
    };
    let name = match name {
        Some(n) => n.trim().to_string(),
        None => {
            let (what, range) = match spec {
                Spec::Export { format, range } => (format!("{} export", format.as_str()), range),
                Spec::Report { report, range, .. } => (report.clone(), range),
            };
            format!(
                "{what} {} to {} UTC",
                minute(range.since),
                minute(range.until)
            )
        }
    };
    if name.is_empty() {
        return Err(JobError::invalid("name", "must not be empty"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(JobError::invalid(
            "name",
            format!("{chars} characters; at most {MAX_NAME_CHARS}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(JobError::invalid(
            "name",
            "must not hold control characters",
        ));
    }
    Ok(name)
}

fn decode(bytes: &[u8]) -> Result<Job, JobError> {
    serde_json::from_slice(bytes)
        .map_err(|e| JobError::Store(StoreError::Corrupt(format!("a stored job: {e}"))))
}

/// Scheduled reports announced on their schedule's notification channels: a message naming the
/// report, its summary and where to download it (the files stay on the hub, behind its tokens).
pub struct NotifyReports {
    notifier: crate::notify::Notifier,
    runtime: tokio::runtime::Handle,
}

impl NotifyReports {
    /// Built on the runtime the notifier's outbox runs on (`deliver` is called off it).
    pub fn new(notifier: crate::notify::Notifier) -> NotifyReports {
        NotifyReports {
            notifier,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl ReportDelivery for NotifyReports {
    fn channel_exists(&self, id: &str) -> bool {
        crate::notify::ChannelId::parse(id)
            .is_some_and(|c| self.notifier.channels().get(&c).is_ok())
    }

    fn deliver(&self, job: &Job, schedule: &Schedule) {
        let files: Vec<String> = job
            .outputs
            .iter()
            .map(|o| {
                let v = serde_json::to_value(o).unwrap_or(serde_json::Value::Null);
                let format = v["format"].as_str().unwrap_or("pdf").to_string();
                format!("/api/v1/reports/{}/download?format={format}", job.id)
            })
            .collect();
        let subject = format!("Report ready: {} ({})", schedule.name, schedule.kind);
        let text = format!(
            "The scheduled report {} ({}, range {}) is ready.\nDownload: {}",
            schedule.name,
            schedule.kind,
            schedule.range,
            files.join(" ")
        );
        let message = crate::notify::Message {
            subject,
            text,
            json: serde_json::json!({
                "type": "report.ready",
                "report": job.id,
                "schedule": schedule.id,
                "kind": schedule.kind,
                "summary": job.summary,
                "downloads": files,
            }),
        };
        for c in &schedule.channels {
            let Some(channel) = crate::notify::ChannelId::parse(c) else {
                tracing::error!(schedule = %schedule.id, channel = %c, "not a channel id; report not announced there");
                continue;
            };
            let new = crate::notify::NewDelivery {
                key: format!("report:{}", job.id),
                channel,
                message: message.clone(),
            };
            if let Err(e) = self.runtime.block_on(self.notifier.enqueue(new)) {
                tracing::error!(schedule = %schedule.id, channel = %c, error = %e, "report not queued for delivery");
            }
        }
    }
}
