//! The runner: at most `workers` jobs at once on blocking threads, oldest queued first; what a
//! start finds after a crash; expiry; and the report schedules' clock

use std::sync::Arc;
use std::time::Duration;

use super::context::{remove_files, Live, RunContext, Stop};
use super::record::{Job, JobKind, Progress, Spec, State};
use super::writer::WriteError;
use super::{decode, JobError, Jobs};
use crate::time::now_micros;

/// At start: a job left running is queued again; partial files and files no job owns are
/// deleted.
pub(super) fn recover(jobs: &Jobs) -> Result<(), JobError> {
    let tree = jobs.tree();
    let mut owned = std::collections::HashSet::new();
    for kind in [JobKind::Export, JobKind::Report] {
        for item in tree.scan_prefix([kind.prefix()]) {
            let (k, v) = item?;
            let mut job = decode(&v)?;
            if job.state == State::Running {
                tracing::info!(job = %job.id, kind = kind.noun(), "a job cut short by a stop or a crash is queued to run again from the start");
                job.state = State::Queued;
                job.progress = Progress::default();
                let bytes = serde_json::to_vec(&job).map_err(|e| JobError::Io(e.to_string()))?;
                tree.insert(k, bytes)?;
            }
            if job.state == State::Completed {
                for o in &job.outputs {
                    owned.insert(job.file_name(&o.format));
                }
            }
        }
    }
    tree.flush()?;
    let entries = std::fs::read_dir(jobs.dir())
        .map_err(|e| JobError::Io(format!("cannot read {}: {e}", jobs.dir().display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !owned.contains(&name) {
            tracing::debug!(file = %name, "removing a file no completed job owns");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

pub(super) fn spawn(
    jobs: Jobs,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut workers = tokio::task::JoinSet::new();
        let mut cleanup = tokio::time::interval(
            jobs.settings()
                .cleanup_interval
                .max(Duration::from_millis(10)),
        );
        let mut clock = tokio::time::interval(Duration::from_secs(1));
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while workers.len() < jobs.settings().workers {
                match next_queued(&jobs) {
                    Ok(Some(job)) => {
                        // the run is counted on disk before it starts (`attempts` after a crash)
                        if let Err(e) = jobs.tree().flush_async().await {
                            tracing::warn!(error = %e, "the job's start could not be flushed");
                        }
                        let live = Arc::new(Live::new());
                        if let Ok(mut l) = jobs.inner.live.lock() {
                            l.insert(job.id.clone(), live.clone());
                        }
                        let jobs = jobs.clone();
                        workers.spawn_blocking(move || run_one(&jobs, job, &live));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "the job queue cannot be read");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = jobs.inner.wake.notified() => {}
                Some(done) = workers.join_next(), if !workers.is_empty() => {
                    if let Err(e) = done {
                        // its record stays `running` until the next start runs it again
                        tracing::error!(error = %e, "a job's run panicked");
                    }
                }
                _ = cleanup.tick() => {
                    let j = jobs.clone();
                    let expired = tokio::task::spawn_blocking(move || expire(&j)).await;
                    if let Ok(Err(e)) = expired {
                        tracing::warn!(error = %e, "expiring old jobs failed; tried again at the next interval");
                    }
                }
                _ = clock.tick() => {
                    if let Err(e) = super::schedules::run_due(&jobs).await {
                        tracing::warn!(error = %e, "report schedules could not be run; tried again in a second");
                    }
                }
                _ = stop.changed() => break,
            }
        }
        if let Ok(live) = jobs.inner.live.lock() {
            for l in live.values() {
                l.cancel(Stop::Shutdown);
            }
        }
        while workers.join_next().await.is_some() {}
    })
}

/// The oldest queued job of either kind, marked running (and its attempt counted).
fn next_queued(jobs: &Jobs) -> Result<Option<Job>, JobError> {
    let tree = jobs.tree();
    let mut oldest: Option<Job> = None;
    for kind in [JobKind::Export, JobKind::Report] {
        for item in tree.scan_prefix([kind.prefix()]) {
            let (_, v) = item?;
            let job = decode(&v)?;
            if job.state == State::Queued && oldest.as_ref().is_none_or(|o| job.id < o.id) {
                oldest = Some(job);
                break;
            }
        }
    }
    let Some(mut job) = oldest else {
        return Ok(None);
    };
    let before = serde_json::to_vec(&job).map_err(|e| JobError::Io(e.to_string()))?;
    job.state = State::Running;
    job.started_at = Some(now_micros());
    job.attempts += 1;
    job.progress = Progress::default();
    job.error = None;
    let after = serde_json::to_vec(&job).map_err(|e| JobError::Io(e.to_string()))?;
    // deleted in between: nothing to run
    match tree.compare_and_swap(job.key(), Some(before), Some(after))? {
        Ok(()) => Ok(Some(job)),
        Err(_) => Ok(None),
    }
}

fn run_one(jobs: &Jobs, job: Job, live: &Live) {
    let ctx = RunContext {
        jobs,
        job: &job,
        live,
    };
    let result = match &job.spec {
        Spec::Export { format, range } => super::export::run(&ctx, *format, range),
        Spec::Report { report, range, .. } => super::report::run(&ctx, report, range),
    };
    if let Ok(mut l) = jobs.inner.live.lock() {
        l.remove(&job.id);
    }
    let mut done = job.clone();
    done.progress = live.progress();
    match result {
        Ok(finished) => {
            let now = now_micros();
            done.state = State::Completed;
            done.finished_at = Some(now);
            let keep = i64::try_from(jobs.settings().expire_after.as_micros()).unwrap_or(i64::MAX);
            done.expires_at = Some(now.saturating_add(keep));
            done.outputs = finished.outputs;
            done.progress.events = finished.events;
            done.summary = finished.summary;
            tracing::info!(job = %job.id, kind = job.spec.kind().noun(), events = finished.events, "job completed");
        }
        Err(WriteError::Stopped(why)) => match live.stopped() {
            Some(Stop::Shutdown) => {
                done.state = State::Queued;
                done.progress = Progress::default();
                tracing::info!(job = %job.id, "job stopped with the hub; it runs again at the next start");
            }
            _ => {
                tracing::info!(job = %job.id, reason = %why, "job cancelled");
                remove_files(jobs, &job);
                return;
            }
        },
        Err(WriteError::Failed(why)) => {
            let now = now_micros();
            done.state = State::Failed;
            done.finished_at = Some(now);
            let keep = i64::try_from(jobs.settings().expire_after.as_micros()).unwrap_or(i64::MAX);
            done.expires_at = Some(now.saturating_add(keep));
            tracing::warn!(job = %job.id, error = %why, "job failed");
            done.error = Some(why);
        }
    }
    let saved = store_result(jobs, &job, &done);
    if !matches!(saved, Ok(true)) {
        // deleted while it ran (or the record cannot be written): its files must not stay
        if let Err(e) = saved {
            tracing::error!(job = %job.id, error = %e, "a finished job's state could not be stored");
        }
        remove_files(jobs, &job);
        return;
    }
    if done.state == State::Completed {
        if let Spec::Report {
            schedule: Some(schedule),
            ..
        } = &done.spec
        {
            super::schedules::delivered(jobs, &done, schedule);
        }
    }
    jobs.inner.wake.notify_one();
}

/// Replaces the running job's record with its result, unless it was deleted meanwhile.
fn store_result(jobs: &Jobs, running: &Job, done: &Job) -> Result<bool, JobError> {
    let tree = jobs.tree();
    let key = running.key();
    loop {
        let Some(current) = tree.get(&key)? else {
            return Ok(false);
        };
        let after = serde_json::to_vec(done).map_err(|e| JobError::Io(e.to_string()))?;
        if tree
            .compare_and_swap(&key, Some(current), Some(after))?
            .is_ok()
        {
            tree.flush()?;
            return Ok(true);
        }
    }
}

/// Deletes the files of jobs past their expiry and marks them expired.
pub(super) fn expire(jobs: &Jobs) -> Result<usize, JobError> {
    let tree = jobs.tree();
    let now = now_micros();
    let mut n = 0;
    for kind in [JobKind::Export, JobKind::Report] {
        for item in tree.scan_prefix([kind.prefix()]) {
            let (k, v) = item?;
            let job = decode(&v)?;
            if !matches!(job.state, State::Completed | State::Failed)
                || job.expires_at.is_none_or(|at| at > now)
            {
                continue;
            }
            let mut expired = job.clone();
            expired.state = State::Expired;
            let after = serde_json::to_vec(&expired).map_err(|e| JobError::Io(e.to_string()))?;
            if tree.compare_and_swap(&k, Some(v), Some(after))?.is_ok() {
                remove_files(jobs, &job);
                tracing::info!(job = %job.id, kind = kind.noun(), "job expired: its files were deleted");
                n += 1;
            }
        }
    }
    if n > 0 {
        tree.flush()?;
    }
    Ok(n)
}
