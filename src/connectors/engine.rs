//! The poll engine: a walk over a vendor's pages as a definition describes, each page's events
//! committed with the cursor that covers them through the one ingest pipeline
//!
//! The parts: `transport` fetches a page (request, retries, rate gate), `paging` says where the
//! next page is, `cursor` says how a page moves the cursor (pure, table-tested), and this file
//! walks: it fetches ahead while the page in hand is normalised off the async workers, keeps a
//! few pages queued in the store, and tells the scheduler what it did through a `Progress`
//! sink (the scheduler alone owns an integration's status).

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::cursor::{self, PageView};
use super::definition::{Mapping, Poll};
use super::normalise::normalise;
use super::transport::Page;
use crate::connectors::filters::Filters;
use crate::metrics::IntegrationLabels;
use crate::schema::IntegrationRef;
use crate::store::{prepare, Store, StoreError};
use crate::time::{now_micros, Micros, MIN_TIME};

pub use super::cursor::CursorState;
pub use super::transport::{http_client, secrets_scrubber, CycleError, Transport};
pub use crate::config::PollTuning;

/// A cycle stops after this many pages even if the vendor has more; the next fire continues.
const MAX_PAGES_PER_CYCLE: u32 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub pages: u32,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The walk reached the vendor's present (a backfill cycle: every slice is walked).
    pub caught_up: bool,
    /// Backfill windows still to walk after the cycle (see `backfill_cycle`).
    pub slices_left: usize,
}

impl CycleReport {
    fn add(&mut self, other: &CycleReport) {
        self.pages += other.pages;
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// Where the engine reports progress as it commits; the scheduler turns it into the
/// integration's status (so a crash loses at most the last page's progress).
pub trait Progress: Send + Sync {
    /// A walk from the time cursor begins; `backfill_from` is where a first walk starts.
    fn walk_started(&self, backfill_from: Micros);
    /// A page's events and cursor are applied; `oldest` is its oldest event time.
    fn page_committed(&self, oldest: Option<Micros>);
}

/// A sink that keeps nothing (one-off walks, benchmarks).
pub struct NoProgress;

impl Progress for NoProgress {
    fn walk_started(&self, _: Micros) {}
    fn page_committed(&self, _: Option<Micros>) {}
}

/// Everything one cycle needs.
pub struct PollContext {
    pub transport: Transport,
    /// Backfill window (already clamped to retention).
    pub backfill: Micros,
    pub store: Store,
    pub progress: Arc<dyn Progress>,
    /// The integration's cursor, shared by its live walk and its backfill lanes.
    pub cursor: Arc<CursorCell>,
}

/// An integration's cursor as last queued for commit, shared by its live walk and its backfill
/// lanes. Each commit takes the lock, moves its own part (the live walk's position, or one
/// slice's), and queues the whole cursor with its page before letting go: the store applies
/// commits in the order they were queued, so every stored cursor covers exactly the events
/// stored before it, whichever walk committed last.
#[derive(Default)]
pub struct CursorCell {
    /// `None` until first read from the store, and after a failed commit (read again).
    state: tokio::sync::Mutex<Option<CursorState>>,
}

impl CursorCell {
    pub fn new() -> CursorCell {
        CursorCell::default()
    }

    /// The cursor as last queued (read from the store the first time).
    pub async fn current(&self, store: &Store, id: &str) -> Result<CursorState, CycleError> {
        let mut state = self.state.lock().await;
        Ok(Self::loaded(&mut state, store, id)?.clone())
    }

    fn loaded<'s>(
        state: &'s mut Option<CursorState>,
        store: &Store,
        id: &str,
    ) -> Result<&'s mut CursorState, CycleError> {
        if state.is_none() {
            *state = Some(CursorState::decode(store.cursor(id)?.as_deref()));
        }
        Ok(state.get_or_insert_with(CursorState::default))
    }

    /// Changes the cursor without a commit: it is committed with the next page.
    async fn update(
        &self,
        store: &Store,
        id: &str,
        f: impl FnOnce(&mut CursorState),
    ) -> Result<(), CycleError> {
        let mut state = self.state.lock().await;
        f(Self::loaded(&mut state, store, id)?);
        Ok(())
    }

    /// Forgets what was queued (a commit failed): the next reader takes the stored cursor.
    async fn forget(&self) {
        *self.state.lock().await = None;
    }
}

impl PollContext {
    fn id(&self) -> &str {
        &self.transport.integration.id
    }

    fn poll(&self) -> &Poll {
        &self.transport.poll
    }

    fn labels(&self) -> IntegrationLabels {
        IntegrationLabels {
            integration: self.id().to_string(),
        }
    }
}

/// Pages whose commits may be queued at once: the walk goes on fetching and normalising while
/// the writer applies them (commits are applied in the order they were queued).
const PAGES_IN_FLIGHT: usize = 4;

/// A page whose events and cursor are queued in the store but not yet known to be applied.
struct InFlight<'a> {
    pending: crate::pipeline::Pending<'a>,
    page_min: Option<Micros>,
    records: usize,
}

/// Waits for the oldest queued page's commit, counts it and reports it.
async fn settle_one(
    ctx: &PollContext,
    report: &mut CycleReport,
    in_flight: &mut VecDeque<InFlight<'_>>,
) -> Result<(), CycleError> {
    let Some(page) = in_flight.pop_front() else {
        return Ok(());
    };
    let outcome = match page.pending.wait().await {
        Ok(o) => o,
        Err(e) => {
            ctx.cursor.forget().await;
            return Err(e.into());
        }
    };
    let (stored, duplicates) = (outcome.stored as u64, outcome.duplicates as u64);
    report.stored += stored;
    report.duplicates += duplicates;
    ctx.progress.page_committed(page.page_min);
    tracing::debug!(integration = %ctx.id(), page = report.pages, records = page.records, stored, duplicates, "page committed");
    Ok(())
}

/// Waits for every queued page.
async fn settle_all(
    ctx: &PollContext,
    report: &mut CycleReport,
    in_flight: &mut VecDeque<InFlight<'_>>,
) -> Result<(), CycleError> {
    while !in_flight.is_empty() {
        settle_one(ctx, report, in_flight).await?;
    }
    Ok(())
}

/// A page's records, normalised and prepared for the store (off the async workers).
struct Normalised {
    prepared: Vec<crate::store::PreparedEvent>,
    page_min: Option<Micros>,
    page_max: Option<Micros>,
    /// Why each skipped record was skipped (vendor text, not yet scrubbed).
    rejected: Vec<String>,
    /// Records the integration's collection filters dropped.
    filtered: u64,
}

fn normalise_page(
    map: &Mapping,
    integration: &IntegrationRef,
    filters: &Filters,
    records: &[Box<RawValue>],
    ingested_at: Micros,
) -> Normalised {
    let mut prepared = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    let mut filtered = 0;
    let (mut page_min, mut page_max) = (None::<Micros>, None::<Micros>);
    for (i, raw) in records.iter().enumerate() {
        match normalise(map, integration, raw, i, ingested_at) {
            Ok(e) => {
                // a dropped record still moves the page's time range: the cursor covers it
                page_min = Some(page_min.map_or(e.time, |m| m.min(e.time)));
                page_max = Some(page_max.map_or(e.time, |m| m.max(e.time)));
                if filters.keeps(&e) {
                    prepared.push(prepare(&e));
                } else {
                    filtered += 1;
                }
            }
            Err(e) => rejected.push(e.to_string()),
        }
    }
    Normalised {
        prepared,
        page_min,
        page_max,
        rejected,
        filtered,
    }
}

/// Normalises a page's records on a blocking thread; counts and logs (scrubbed) the skipped.
async fn normalise_off_runtime(
    ctx: &PollContext,
    records: Vec<Box<RawValue>>,
    report: &mut CycleReport,
) -> Result<Normalised, CycleError> {
    let ingested_at = now_micros();
    let t = &ctx.transport;
    let (poll, integration, filters) = (t.poll.clone(), t.integration.clone(), t.filters.clone());
    let normalised = tokio::task::spawn_blocking(move || {
        normalise_page(&poll.map, &integration, &filters, &records, ingested_at)
    })
    .await
    .map_err(|_| CycleError::Store(StoreError::Closed))?;
    for error in &normalised.rejected {
        report.rejected += 1;
        t.metrics
            .records_rejected
            .get_or_create(&ctx.labels())
            .inc();
        let error = t.scrub(error);
        tracing::warn!(integration = %ctx.id(), %error, "record skipped");
    }
    Ok(normalised)
}

/// The cursor's view of a fetched, normalised page.
fn page_view(next: Option<String>, goes_on: bool, normalised: &Normalised) -> PageView {
    PageView {
        min: normalised.page_min,
        // a record stamped in the future must not carry the high-water mark past events still
        // to come (newest-first walks would then stop early): the cursor takes at most now;
        // the overlap covers ordinary clock skew
        max: normalised.page_max.map(|t| t.min(now_micros())),
        next,
        goes_on,
    }
}

/// The page itself lets the walk go on: it has records and a next position that makes
/// progress. A next link naming the page just fetched ends the walk (a vendor that keeps
/// answering the same last record must not spin a cycle forever), and so does
/// `pagination.more = false` (the next position is still kept).
fn page_goes_on(url: &str, page: &Page) -> bool {
    let stalled = page.next.as_deref() == Some(url) || page.more == Some(false);
    !page.records.is_empty() && page.next.is_some() && !stalled
}

/// Queues a page's events with the cursor that covers them: `moved` gives the cursor after the
/// page from the one last queued. A poll waits for room in the write queue (the vendor's pages
/// can wait, nothing is lost).
async fn queue_commit<'a>(
    ctx: &'a PollContext,
    report: &mut CycleReport,
    in_flight: &mut VecDeque<InFlight<'a>>,
    normalised: Normalised,
    records: usize,
    moved: impl FnOnce(&CursorState) -> CursorState,
) -> Result<(), CycleError> {
    while in_flight.len() >= PAGES_IN_FLIGHT {
        settle_one(ctx, report, in_flight).await?;
    }
    let mut state = ctx.cursor.state.lock().await;
    let cursor = moved(CursorCell::loaded(&mut state, &ctx.store, ctx.id())?);
    let submitted = crate::pipeline::Pipeline::new(&ctx.store, Some(&ctx.transport.metrics))
        .submit(
            ctx.id(),
            crate::pipeline::Prepared {
                events: normalised.prepared,
                rejected: Vec::new(),
                filtered: normalised.filtered,
            },
            crate::pipeline::Options::polled(cursor.encode()),
        )
        .await;
    let pending = match submitted {
        Ok(p) => {
            *state = Some(cursor);
            p
        }
        Err(e) => {
            *state = None;
            return Err(e.into());
        }
    };
    drop(state);
    in_flight.push_back(InFlight {
        pending,
        page_min: normalised.page_min,
        records,
    });
    Ok(())
}

/// One poll cycle: walk pages until the vendor has nothing more (or stop is asked), committing
/// each page's events with the cursor that covers them. Where the next link is known from the
/// page alone, the next page is fetched while this one is normalised (on a blocking thread),
/// and up to `PAGES_IN_FLIGHT` pages are queued in the store at once: commits are applied in the
/// order they were queued, so a page's cursor never lands before the events of the pages before
/// it, and a kill at any point leaves a cursor that covers exactly the events stored.
pub async fn poll_cycle(ctx: &PollContext) -> Result<CycleReport, CycleError> {
    // whatever a vendor put in the reason, last_error and the log get it scrubbed
    walk(ctx)
        .await
        .map_err(|e| e.scrubbed(&ctx.transport.scrubber()))
}

/// A fetched page, or the vendor's refusal of it (its status code).
type Fetched = Result<Result<Page, u16>, CycleError>;

async fn walk(ctx: &PollContext) -> Result<CycleReport, CycleError> {
    let mut report = CycleReport::default();
    let mut in_flight = VecDeque::new();
    let walked = walk_pages(ctx, &mut report, &mut in_flight).await;
    // pages queued before a failure are committed all the same: count them
    let settled = settle_all(ctx, &mut report, &mut in_flight).await;
    walked?;
    settled?;
    report.slices_left = ctx.cursor.current(&ctx.store, ctx.id()).await?.slices.len();
    Ok(report)
}

/// A first walk of a connector that takes a time window: the backfill window is split into
/// slices (walked by `backfill_cycle`, concurrently), and the live walk starts at their top.
async fn plan_backfill(
    ctx: &PollContext,
    cursor: &mut CursorState,
    backfill_from: Micros,
    now: Micros,
) -> Result<(), CycleError> {
    let Some(until) = &ctx.poll().request.until else {
        return Ok(());
    };
    let tuning = &ctx.transport.tuning;
    let min_len = (tuning.backfill_slice_min.as_micros() as Micros)
        .max(4 * super::request::time_param_step(until.format));
    let slices = cursor::plan_slices(backfill_from, now, tuning.backfill_slices, min_len);
    if slices.is_empty() {
        return Ok(());
    }
    tracing::info!(integration = %ctx.id(), slices = slices.len(), "backfill split into time windows walked concurrently");
    cursor.high_water = Some(now);
    ctx.cursor
        .update(&ctx.store, ctx.id(), |c| {
            c.high_water = Some(now);
            c.slices = slices;
        })
        .await
}

/// Walks the backfill's unfinished slices, `backfill_lanes` at once, every request under the
/// integration's one rate gate; each slice's progress commits with its events, so a kill
/// resumes every slice where it stopped. Live polls go on meanwhile (they share the cursor).
pub async fn backfill_cycle(ctx: &PollContext) -> Result<CycleReport, CycleError> {
    run_backfill(ctx)
        .await
        .map_err(|e| e.scrubbed(&ctx.transport.scrubber()))
}

async fn run_backfill(ctx: &PollContext) -> Result<CycleReport, CycleError> {
    ctx.transport.check_outbound()?;
    let slices = ctx.cursor.current(&ctx.store, ctx.id()).await?.slices;
    let queue = std::sync::Mutex::new(VecDeque::from(slices));
    let lanes = ctx.transport.tuning.backfill_lanes.clamp(1, 64);
    let results = futures_util::future::join_all((0..lanes).map(|_| lane(ctx, &queue))).await;
    let mut report = CycleReport::default();
    let mut failure = None;
    for r in results {
        match r {
            Ok(r) => report.add(&r),
            // a lane's real fault says more than another lane's stop
            Err(CycleError::Stopped) => failure = failure.or(Some(CycleError::Stopped)),
            Err(e) => {
                if !matches!(failure, Some(ref f) if !matches!(f, CycleError::Stopped)) {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    report.slices_left = ctx.cursor.current(&ctx.store, ctx.id()).await?.slices.len();
    report.caught_up = report.slices_left == 0;
    Ok(report)
}

/// One lane: takes the next slice and walks it to its end, until none is left.
async fn lane(
    ctx: &PollContext,
    queue: &std::sync::Mutex<VecDeque<cursor::Slice>>,
) -> Result<CycleReport, CycleError> {
    let mut report = CycleReport::default();
    let mut in_flight = VecDeque::new();
    let walked: Result<(), CycleError> = async {
        loop {
            let next = match queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(p) => p.into_inner().pop_front(),
            };
            let Some(slice) = next else {
                return Ok(());
            };
            walk_slice(ctx, &slice, &mut report, &mut in_flight).await?;
        }
    }
    .await;
    let settled = settle_all(ctx, &mut report, &mut in_flight).await;
    walked?;
    settled?;
    Ok(report)
}

/// Walks one slice's query (its window widened by the overlap and the time format's step, so
/// no event at a boundary is missed; dedup makes the widening free) page by page to its end.
async fn walk_slice<'a>(
    ctx: &'a PollContext,
    slice: &cursor::Slice,
    report: &mut CycleReport,
    in_flight: &mut VecDeque<InFlight<'a>>,
) -> Result<(), CycleError> {
    let t = &ctx.transport;
    let Some(until) = &ctx.poll().request.until else {
        return Err(CycleError::Config(
            "the cursor holds backfill windows, but the connector takes no request.until".into(),
        ));
    };
    let overlap = ctx.poll().cursor.overlap;
    let since = slice.from.saturating_sub(overlap).max(MIN_TIME);
    let to = slice
        .to
        .saturating_add(overlap)
        .saturating_add(super::request::time_param_step(until.format));
    let mut next = slice.next.clone();
    let mut restarted = false;
    loop {
        if t.stopping() {
            return Err(CycleError::Stopped);
        }
        if next.as_deref().is_some_and(|n| t.same_origin(n).is_none()) {
            next = None;
        }
        let (url, from_saved_link) = match &next {
            Some(n) => (n.clone(), true),
            // never past now (some vendors refuse it); what is newer than the window's top
            // minus the overlap is the live walk's
            None => (t.first_url(since, Some(to.min(now_micros())))?, false),
        };
        let mut page = match t.fetch(&url, from_saved_link).await? {
            Ok(p) => p,
            Err(code) if !restarted => {
                tracing::warn!(integration = %ctx.id(), status = code, "vendor refused a backfill window's saved link; walking the window again");
                restarted = true;
                next = None;
                continue;
            }
            Err(code) => {
                return Err(CycleError::Upstream(format!(
                    "vendor refused a backfill window (HTTP {code})"
                )))
            }
        };
        report.pages += 1;
        let goes_on = page_goes_on(&url, &page);
        let records = std::mem::take(&mut page.records);
        let count = records.len();
        let normalised = normalise_off_runtime(ctx, records, report).await?;
        let view = page_view(page.next.clone(), goes_on, &normalised);
        queue_commit(ctx, report, in_flight, normalised, count, |c| {
            cursor::advance_slice(c, slice, &view).0
        })
        .await?;
        if !goes_on {
            return Ok(());
        }
        next = page.next;
    }
}

async fn walk_pages<'a>(
    ctx: &'a PollContext,
    report: &mut CycleReport,
    in_flight: &mut VecDeque<InFlight<'a>>,
) -> Result<(), CycleError> {
    let t = &ctx.transport;
    let spec = &ctx.poll().cursor;
    t.check_outbound()?;
    let mut cursor = ctx.cursor.current(&ctx.store, ctx.id()).await?;
    let mut restarted_from_time = false;
    // the next page, fetched while the previous one was normalised: (its url, what came)
    let mut prefetched: Option<(String, Fetched)> = None;
    loop {
        // a page already fetched is committed before a stop: the vendor served it
        if t.stopping() && prefetched.is_none() {
            return Err(CycleError::Stopped);
        }
        if report.pages >= MAX_PAGES_PER_CYCLE {
            tracing::info!(integration = %ctx.id(), pages = report.pages, "page budget of this cycle spent; the next fire continues");
            return Ok(());
        }
        let (url, fetched) = match prefetched.take() {
            Some(p) => p,
            None => {
                // a saved link must still point at the configured host (base_url may have
                // changed): credentials go nowhere else
                if cursor
                    .next
                    .as_deref()
                    .is_some_and(|n| t.same_origin(n).is_none())
                {
                    tracing::warn!(integration = %ctx.id(), "saved link is for another host than config.base_url; resuming from the time cursor");
                    cursor.forget_walk();
                }
                let (url, from_saved_link) = match &cursor.next {
                    Some(next) => (next.clone(), true),
                    None => {
                        // a window reaching before 1970 starts at 1970 (crate::time's range)
                        let now = now_micros();
                        let backfill_from = now.saturating_sub(ctx.backfill).max(MIN_TIME);
                        if cursor.high_water.is_none() {
                            plan_backfill(ctx, &mut cursor, backfill_from, now).await?;
                        }
                        let since = cursor::begin(&mut cursor, spec, backfill_from);
                        ctx.progress.walk_started(backfill_from);
                        (t.first_url(since, None)?, false)
                    }
                };
                let fetched = t.fetch(&url, from_saved_link).await;
                (url, fetched)
            }
        };
        let mut page = match fetched? {
            Ok(p) => p,
            Err(code) => {
                if restarted_from_time {
                    return Err(CycleError::Upstream(format!(
                        "vendor refused the walk (HTTP {code})"
                    )));
                }
                tracing::warn!(integration = %ctx.id(), status = code, "vendor refused the saved link; resuming from the time cursor minus the overlap");
                cursor.next = None;
                restarted_from_time = true;
                continue;
            }
        };
        report.pages += 1;
        let page_goes_on = page_goes_on(&url, &page);
        let goes_on = cursor::known_before_records(&cursor, spec, page_goes_on);
        let prefetch = match (goes_on, &page.next) {
            (Some(true), Some(next))
                if report.pages < MAX_PAGES_PER_CYCLE
                    && !t.stopping()
                    && t.same_origin(next).is_some() =>
            {
                Some(next.clone())
            }
            _ => None,
        };
        let records = std::mem::take(&mut page.records);
        let record_count = records.len();
        let work = normalise_off_runtime(ctx, records, report);
        let normalised = match prefetch {
            Some(next) => {
                let (normalised, fetched) = tokio::join!(work, t.fetch(&next, true));
                prefetched = Some((next, fetched));
                normalised
            }
            None => work.await,
        }?;
        let view = page_view(page.next.clone(), page_goes_on, &normalised);
        let (next_cursor, walk_done) = cursor::advance(&cursor, spec, &view);
        debug_assert!(goes_on.is_none_or(|more| more != walk_done));
        cursor = next_cursor;
        let live = cursor.clone();
        queue_commit(ctx, report, in_flight, normalised, record_count, |c| {
            c.with_live(&live)
        })
        .await?;
        if walk_done {
            report.caught_up = true;
            return Ok(());
        }
    }
}

/// Longest the rate gate may hold a connection test before it answers that the vendor's
/// budget is spent (a test is a person waiting at a form, not a cycle that can wait minutes).
pub const TEST_MAX_GATE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a connection test found (`POST /api/v1/integrations/test`): the vendor's status when it
/// answered, and the first page's record count, or a clear reason (scrubbed of every secret of
/// the integration) why there is none.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionTest {
    pub ok: bool,
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<usize>,
    /// The vendor said there is a next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One request of the first page the integration's first walk would ask for (its backfill
/// window up to now), through the cycle's own transport — the integration's rate gate, auth and
/// token exchange, client, timeouts and size bound — without retrying, without waiting out a
/// rate limit, and without normalising or storing anything. A fetched access token is
/// forgotten afterwards: it was made for a throwaway id.
pub async fn test_connection(t: &Transport, backfill: Micros) -> ConnectionTest {
    let started = std::time::Instant::now();
    let (status, outcome) = probe_first_page(t, backfill).await;
    if t.poll.auth.fetches_tokens() {
        t.forget_oauth2_token();
    }
    let scrubber = t.scrubber();
    let elapsed_ms = started.elapsed().as_millis().min(u64::MAX as u128) as u64;
    match outcome {
        Ok(page) => ConnectionTest {
            ok: true,
            status,
            records: Some(page.records.len()),
            more: Some(page.next.is_some() && page.more != Some(false)),
            elapsed_ms,
            error: None,
        },
        Err(reason) => ConnectionTest {
            ok: false,
            status,
            records: None,
            more: None,
            elapsed_ms,
            error: Some(scrubber.scrub(&reason).into_owned()),
        },
    }
}

/// The first page, or why there is none in words.
async fn probe_first_page(
    t: &Transport,
    backfill: Micros,
) -> (Option<u16>, Result<super::transport::Page, String>) {
    use super::transport::Attempt;
    if let Err(e) = t.check_outbound() {
        return (None, Err(e.to_string()));
    }
    let now = now_micros();
    let since = now.saturating_sub(backfill).max(MIN_TIME);
    let until = t.poll.request.until.as_ref().map(|_| now);
    let url = match t.first_url(since, until) {
        Ok(u) => u,
        Err(e) => return (None, Err(e.to_string())),
    };
    while let Some(wait) = t.gate.next_wait() {
        if wait > TEST_MAX_GATE_WAIT {
            return (
                None,
                Err(format!(
                    "the vendor's rate budget is spent for now (polls of this host wait too); try again in {} s",
                    wait.as_secs().max(1)
                )),
            );
        }
        if t.sleep(wait).await.is_err() {
            return (None, Err(CycleError::Stopped.to_string()));
        }
    }
    let (status, attempt) = t.probe(&url).await;
    let outcome = match attempt {
        Ok(Attempt::Done(page)) => Ok(page),
        Ok(Attempt::RateLimited(wait, why)) => {
            // what a cycle would do: the integration's gate stays closed for the wait
            t.gate.close_for(wait);
            Err(format!(
                "rate limited by the vendor ({why}); try again in {} s",
                wait.as_secs().max(1)
            ))
        }
        Ok(Attempt::Transient(why)) => Err(format!(
            "{why} (a poll would retry this; the test does not)"
        )),
        Ok(Attempt::Fatal(e)) => Err(e.to_string()),
        Ok(Attempt::LinkRefused(code)) => Err(format!("vendor refused the request (HTTP {code})")),
        Ok(Attempt::StaleToken) => {
            Err("credentials rejected (HTTP 401 with the access token just fetched)".to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    (status, outcome)
}
