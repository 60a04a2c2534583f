//! The one way into the store: every source of events (the ingest API and `trailhub ingest`,
//! webhook deliveries, polls) hands its prepared events to `Pipeline`, which chunks them into
//! atomic store jobs, queues them, waits for their outcome, counts them in `/metrics` and answers
//! the same `Report` everywhere. What differs between the sources stays with them: how a body or
//! a vendor page becomes events (`prepare_off_runtime` runs that off the async workers), whether a
//! full write queue refuses the request (API, webhooks: the client retries) or waits (polls: the
//! vendor's pages can wait), and the cursor a poll commits with its page.

use std::collections::VecDeque;

use serde::Serialize;

use crate::metrics::{IntegrationLabels, Metrics};
use crate::store::{Commit, PendingAppend, PreparedEvent, Store, StoreError};

/// Events per store job; a job is one atomic batch.
pub const JOB_EVENTS: usize = 2048;
/// At most this many rejected records are listed in a report (all are counted).
pub const MAX_LISTED_REJECTS: usize = 1000;

/// A record that did not become an event: its 1-based position in what was sent (the line of
/// an NDJSON body, the element of a JSON array, the record of a delivery or a page) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub line: usize,
    pub error: String,
}

/// What became of one request's, delivery's or page's records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Events stored as new.
    pub stored: usize,
    /// Events already stored (same integration and source id).
    pub duplicates: usize,
    pub rejected_count: usize,
    /// Records the integration's collection filters dropped.
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered: u64,
    /// The first `MAX_LISTED_REJECTS` rejects.
    pub rejected: Vec<Rejected>,
    /// The sequence number of the last event stored as new (the hub's own records name it).
    #[serde(skip)]
    pub last_seq: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Report {
    /// Every record was rejected (and there was at least one).
    pub fn all_rejected(&self) -> bool {
        self.rejected_count > 0 && self.stored == 0 && self.duplicates == 0
    }
}

/// Records made into events, and the ones that could not be.
#[derive(Debug, Default)]
pub struct Prepared {
    pub events: Vec<PreparedEvent>,
    pub rejected: Vec<Rejected>,
    /// Records the integration's collection filters dropped (counted with the last job).
    pub filtered: u64,
}

/// What a full write queue does to a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Answer `StoreError::Busy` at once (nothing is stored; the sender retries later). Only the
    /// first job of a submission can be refused: later jobs of one already accepted wait.
    Refuse,
    /// Wait for room.
    Wait,
}

/// How a submission is committed.
#[derive(Debug, Clone)]
pub struct Options {
    /// The integration's cursor committed with the last job (so it never covers an event that
    /// is not stored).
    pub cursor: Option<Vec<u8>>,
    /// Answer only once the events are on disk.
    pub durable: bool,
    pub when_full: WhenFull,
}

impl Options {
    /// An outside sender's push (the ingest API, a webhook): refused when the queue is full,
    /// answered once durable.
    pub fn pushed() -> Options {
        Options {
            cursor: None,
            durable: true,
            when_full: WhenFull::Refuse,
        }
    }

    /// A poll's page with the cursor that covers it: waits for room; the flusher makes it durable
    /// with the next flush (the cursor commits in the same batch, so a crash re-fetches it).
    pub fn polled(cursor: Vec<u8>) -> Options {
        Options {
            cursor: Some(cursor),
            durable: false,
            when_full: WhenFull::Wait,
        }
    }

    /// The hub's own record of what was done (audit events): waits for room, answered once
    /// durable.
    pub fn recorded() -> Options {
        Options {
            cursor: None,
            durable: true,
            when_full: WhenFull::Wait,
        }
    }
}

/// Runs the CPU work of turning a body or a page into events on a blocking thread, so that the
/// async workers keep answering.
pub async fn prepare_off_runtime<T, F>(work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| StoreError::Closed)
}

/// Bodies up to this size are prepared on the async worker that received them: their CPU work
/// takes microseconds, less than handing them to a blocking thread and back (measured on the
/// webhook benchmark: the handoff cost a quarter of the throughput of one-event deliveries).
pub const INLINE_PREPARE_BYTES: usize = 64 * 1024;

/// `prepare_off_runtime` for a body of `bytes`: inline when it is small (see
/// `INLINE_PREPARE_BYTES`), on a blocking thread otherwise.
pub async fn prepare_for<T, F>(bytes: usize, work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if bytes <= INLINE_PREPARE_BYTES {
        Ok(work())
    } else {
        prepare_off_runtime(work).await
    }
}

/// The store and the counters every entry point shares.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    store: &'a Store,
    /// `None` outside a running hub (`trailhub ingest` on a data dir).
    metrics: Option<&'a Metrics>,
}

impl<'a> Pipeline<'a> {
    pub fn new(store: &'a Store, metrics: Option<&'a Metrics>) -> Pipeline<'a> {
        Pipeline { store, metrics }
    }

    /// Queues `prepared` for `integration` in jobs of `JOB_EVENTS`; returns a handle to await.
    /// Jobs are applied in the order queued, so the last one's flush covers them all.
    pub async fn submit(
        &self,
        integration: &str,
        prepared: Prepared,
        options: Options,
    ) -> Result<Pending<'a>, StoreError> {
        let Prepared {
            events,
            rejected,
            filtered,
        } = prepared;
        let mut chunks: VecDeque<Vec<PreparedEvent>> = VecDeque::new();
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            chunks.push_back(events.by_ref().take(JOB_EVENTS).collect());
        }
        // a cursor alone (a page whose records were all skipped) still commits, and so does a
        // count of filtered records
        if chunks.is_empty() && (options.cursor.is_some() || filtered > 0) {
            chunks.push_back(Vec::new());
        }
        let mut jobs = Vec::with_capacity(chunks.len());
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let commit = Commit {
                cursor: if i == last {
                    options.cursor.clone().map(|c| (integration.to_string(), c))
                } else {
                    None
                },
                durable: options.durable && i == last,
                filtered: (i == last && filtered > 0).then(|| (integration.to_string(), filtered)),
            };
            jobs.push(match options.when_full {
                WhenFull::Refuse if i == 0 => self.store.submit(chunk, commit)?,
                _ => self.store.submit_waiting(chunk, commit).await?,
            });
        }
        Ok(Pending {
            jobs,
            rejected,
            filtered,
            integration: integration.to_string(),
            metrics: self.metrics,
        })
    }

    /// `submit`, then wait for the outcome.
    pub async fn commit(
        &self,
        integration: &str,
        prepared: Prepared,
        options: Options,
    ) -> Result<Report, StoreError> {
        self.submit(integration, prepared, options)
            .await?
            .wait()
            .await
    }
}

/// A queued submission; `wait` yields its report and counts it.
pub struct Pending<'a> {
    jobs: Vec<PendingAppend>,
    rejected: Vec<Rejected>,
    filtered: u64,
    integration: String,
    metrics: Option<&'a Metrics>,
}

impl Pending<'_> {
    pub async fn wait(self) -> Result<Report, StoreError> {
        let mut report = Report {
            rejected_count: self.rejected.len(),
            filtered: self.filtered,
            ..Report::default()
        };
        let mut failed = None;
        for job in self.jobs {
            match job.wait().await {
                Ok(outcome) => {
                    report.stored += outcome.stored.len();
                    let last = outcome.stored.iter().map(|(_, seq)| *seq).max();
                    report.last_seq = report.last_seq.max(last);
                    report.duplicates += outcome.duplicates.len();
                }
                // every job is awaited, and what was stored counted, before the error is told
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(metrics) = self.metrics {
            let labels = IntegrationLabels {
                integration: self.integration,
            };
            for (family, n) in [
                (&metrics.events_ingested, report.stored),
                (&metrics.events_duplicate, report.duplicates),
                (&metrics.lines_rejected, report.rejected_count),
            ] {
                family.get_or_create(&labels).inc_by(n as u64);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        report.rejected = self.rejected;
        report.rejected.truncate(MAX_LISTED_REJECTS);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{custom_integration, parse_body, BodyFormat};
    use crate::store::{prepare, StoreOptions};

    /// `n` valid lines (source ids `s0`..) and `bad` invalid ones, prepared as the API does.
    fn prepared(n: usize, bad: usize) -> Prepared {
        let mut body = String::new();
        for i in 0..n {
            body.push_str(&format!(
                "{{\"time\":\"2024-05-01T00:00:00Z\",\"source_id\":\"s{i}\",\"event_type\":\"e\",\"action\":\"read\",\"actor\":{{\"id\":\"a\"}}}}\n"
            ));
        }
        for _ in 0..bad {
            body.push_str("{\"time\":\"not a time\"}\n");
        }
        let parsed = parse_body(
            body.as_bytes(),
            BodyFormat::Ndjson,
            &custom_integration(),
            1,
        )
        .expect("the body reads");
        Prepared {
            events: parsed.events.iter().map(prepare).collect(),
            rejected: parsed.rejected,
            filtered: 0,
        }
    }

    fn counter(metrics: &Metrics, store: &Store, name: &str) -> f64 {
        let text = metrics.render(store);
        let prefix = format!("{name}_total{{integration=\"custom\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    }

    /// A submission larger than a job is split into several, the cursor lands with the last, the
    /// report and `/metrics` count every event once, and a second submission of the same events
    /// is all duplicates.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_count_and_commit_the_cursor_with_the_last_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::new(8 << 20, 0)).expect("store");
        let metrics = Metrics::new();
        let pipeline = Pipeline::new(&store, Some(&metrics));
        let n = 2 * JOB_EVENTS + 7;
        let first = pipeline
            .submit("custom", prepared(n, 3), Options::polled(b"c1".to_vec()))
            .await
            .expect("queued");
        assert_eq!(first.jobs.len(), 3, "{n} events make three jobs");
        let report = first.wait().await.expect("stored");
        assert_eq!((report.stored, report.duplicates), (n, 0));
        assert_eq!(report.rejected_count, 3);
        assert_eq!(report.rejected.len(), 3);
        assert_eq!(report.rejected[0].line, n + 1, "rejects name their line");
        assert_eq!(
            store.cursor("custom").expect("cursor"),
            Some(b"c1".to_vec())
        );

        let again = pipeline
            .commit("custom", prepared(n, 0), Options::pushed())
            .await
            .expect("stored");
        assert_eq!((again.stored, again.duplicates), (0, n));
        assert_eq!(store.integration_count("custom").expect("count"), n as u64);
        assert_eq!(
            counter(&metrics, &store, "trailhub_events_ingested"),
            n as f64
        );
        assert_eq!(
            counter(&metrics, &store, "trailhub_events_duplicate"),
            n as f64
        );
        assert_eq!(
            counter(&metrics, &store, "trailhub_ingest_lines_rejected"),
            3.0
        );
        store.shutdown().expect("shutdown");
    }

    /// A page whose records were all skipped still moves the cursor; a body of rejects alone
    /// queues nothing, is counted in full and lists at most `MAX_LISTED_REJECTS`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cursor_alone_commits_and_rejects_are_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::new(8 << 20, 0)).expect("store");
        let pipeline = Pipeline::new(&store, None);
        let report = pipeline
            .commit(
                "custom",
                Prepared::default(),
                Options::polled(b"c2".to_vec()),
            )
            .await
            .expect("committed");
        assert_eq!(report, Report::default());
        assert_eq!(
            store.cursor("custom").expect("cursor"),
            Some(b"c2".to_vec())
        );

        let rejects = MAX_LISTED_REJECTS + 5;
        let pending = pipeline
            .submit("custom", prepared(0, rejects), Options::pushed())
            .await
            .expect("nothing to queue");
        assert!(pending.jobs.is_empty());
        let report = pending.wait().await.expect("report");
        assert!(report.all_rejected());
        assert_eq!(report.rejected_count, rejects);
        assert_eq!(report.rejected.len(), MAX_LISTED_REJECTS);
        store.shutdown().expect("shutdown");
    }
}
