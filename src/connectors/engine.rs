//! The generic poll engine: one `poll_cycle` walks a vendor's pages as a definition describes,
//! and commits every page's events together with the cursor that covers them in one store append
//!
//! Cursor discipline:
//! - ascending walks commit their position page by page;
//! - newest-first walks keep the in-progress position (`next`, `walk_top`) in the cursor and
//!   move the high-water mark only when the walk reaches the previous high-water mark;
//! - time cursors re-query from the high-water mark minus the connector's overlap, never
//!   strictly after it (events can share a timestamp); dedup makes the overlap free.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::definition::{
    Auth, Connector, CursorKind, HttpMethod, Order, Pagination, RateLimitSpec, ResetFormat,
    TimeParamFormat,
};
use super::integrations::Status;
use super::normalise::{normalise, page_records, RecordError};
use super::paging::PostPosition;
use super::ratelimit::RateGate;
use super::template::{escape_path_segment, no_escape, Values};
use crate::config::Secret;
use crate::metrics::{IntegrationLabels, Metrics, UpstreamLabels};
use crate::redact::Scrubber;
use crate::schema::IntegrationRef;
use crate::store::{prepare, Store, StoreError};
use crate::time::{now_micros, Micros, MICROS_PER_SEC, MIN_TIME};

const CURSOR_VERSION: u8 = 1;
/// Rate-limit waits accepted for one page before the cycle gives up and reports an error.
const MAX_RATE_LIMIT_WAITS: u32 = 20;
/// A cycle stops after this many pages even if the vendor has more; the next fire continues.
const MAX_PAGES_PER_CYCLE: u32 = 10_000;
/// Largest page body accepted (a vendor page of 1,000 records is a few MiB).
const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;
/// Body bytes quoted in an error message.
const ERROR_BODY_QUOTE: usize = 200;

/// Knobs of the engine and scheduler (tests shorten them).
#[derive(Debug, Clone)]
pub struct PollTuning {
    pub request_timeout: Duration,
    /// First retry delay for 5xx and timeouts; doubles per attempt, with jitter.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub max_retries: u32,
    /// Upper bound on a single vendor-requested wait.
    pub max_wait: Duration,
    /// Cycles running at once.
    pub workers: usize,
    /// Longest pause after failing cycles.
    pub error_backoff_max: Duration,
    /// Longest idle backoff.
    pub idle_backoff_max: Duration,
}

impl Default for PollTuning {
    fn default() -> Self {
        PollTuning {
            request_timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            max_retries: 4,
            max_wait: Duration::from_secs(900),
            workers: 4,
            error_backoff_max: Duration::from_secs(900),
            idle_backoff_max: Duration::from_secs(300),
        }
    }
}

/// What is persisted per integration, committed with each page's events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CursorState {
    pub v: u8,
    /// Newest event time the hub has fully walked to.
    pub high_water: Option<Micros>,
    /// Where to continue: the page in hand of a walk, or the vendor's persistent next link.
    pub next: Option<String>,
    /// Newest-first walk in progress: newest time it has seen.
    pub walk_top: Option<Micros>,
    /// Newest-first walk in progress: it is complete once it reaches below this time.
    pub walk_floor: Option<Micros>,
}

impl CursorState {
    pub fn decode(bytes: Option<&[u8]>) -> CursorState {
        match bytes.map(serde_json::from_slice::<CursorState>) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "stored cursor does not decode; starting from the backfill window");
                CursorState::default()
            }
            None => CursorState::default(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.v = CURSOR_VERSION;
        serde_json::to_vec(&c).expect("a cursor serialises")
    }

    /// The cursor as shown in the integration object.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "high_water": self.high_water.map(crate::time::format_micros),
            "next": self.next,
            "walk_in_progress": self.walk_top.is_some() || self.walk_floor.is_some(),
        })
    }
}

/// Why a cycle ended without catching up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CycleError {
    /// The vendor refused the credentials (the detail says how: `HTTP 401`, a vendor code).
    #[error("credentials rejected ({0})")]
    CredentialsRejected(String),
    #[error("{0}")]
    Upstream(String),
    #[error("the hub is stopping")]
    Stopped,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
}

impl CycleError {
    /// The same error with every secret of the scrubber removed from its text.
    pub fn scrubbed(self, scrubber: &Scrubber) -> CycleError {
        let clean = |s: String| scrubber.scrub(&s).into_owned();
        match self {
            CycleError::CredentialsRejected(s) => CycleError::CredentialsRejected(clean(s)),
            CycleError::Upstream(s) => CycleError::Upstream(clean(s)),
            CycleError::Config(s) => CycleError::Config(clean(s)),
            other @ (CycleError::Stopped | CycleError::Store(_)) => other,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub pages: u32,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The walk reached the vendor's present.
    pub caught_up: bool,
}

/// Everything one cycle needs.
pub struct PollContext {
    pub integration: IntegrationRef,
    pub connector: Arc<Connector>,
    pub config: BTreeMap<String, String>,
    pub credentials: BTreeMap<String, Secret>,
    /// http is accepted for URL fields on a loopback host (see `outbound`).
    pub allow_insecure_http: bool,
    /// This integration's secrets, to scrub from vendor text (see `secrets_scrubber`); access
    /// tokens are added as they are fetched.
    pub scrubber: Mutex<Scrubber>,
    /// Backfill window (already clamped to retention).
    pub backfill: Micros,
    pub http: reqwest::Client,
    pub store: Store,
    pub gate: Arc<RateGate>,
    pub tuning: PollTuning,
    pub metrics: Arc<Metrics>,
    pub stop: watch::Receiver<bool>,
    pub status: Arc<Mutex<Status>>,
    /// Where the status is saved after each page (so progress survives a crash, roughly).
    pub integrations: Option<super::integrations::Integrations>,
}

/// A scrubber for everything of this integration a vendor could echo: each secret credential
/// (identifiers such as an account email are left alone: vendors write them into records), and
/// the header values rendered from them (`SSWS <token>`, `user:pass` of basic auth).
pub fn secrets_scrubber(
    connector: &Connector,
    config: &BTreeMap<String, String>,
    credentials: &BTreeMap<String, Secret>,
) -> Scrubber {
    let values = Values {
        config,
        credentials: Some(credentials),
        time: None,
    };
    let mut secrets: Vec<String> = connector
        .secret_values(credentials)
        .map(str::to_string)
        .collect();
    let mut rendered: Vec<String> = connector
        .auth_templates
        .iter()
        .filter_map(|t| t.render(&values, no_escape))
        .collect();
    if let Auth::Basic { .. } = connector.auth {
        rendered.push(rendered.join(":"));
    }
    // only what carries a secret: a basic-auth user name alone is an identifier
    rendered.retain(|r| secrets.iter().any(|s| r.contains(s.as_str())));
    secrets.extend(rendered);
    Scrubber::new(secrets)
}

/// The HTTP client every connector uses: our User-Agent, no redirects (a redirect must not
/// carry credentials anywhere), the request timeout.
pub fn http_client(tuning: &PollTuning) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("trailhub/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(tuning.request_timeout)
        .connect_timeout(tuning.request_timeout.min(Duration::from_secs(10)))
        .build()
        .expect("the TLS backend initialises")
}

pub(super) struct Page {
    records: Vec<Box<RawValue>>,
    next: Option<String>,
    /// `pagination.more` as the page said it (`Some(false)`: nothing more now).
    more: Option<bool>,
}

pub(super) enum Attempt {
    Done(Page),
    /// Wait this long, then try again without counting an attempt.
    RateLimited(Duration, String),
    /// Count an attempt, back off, try again.
    Transient(String),
    Fatal(CycleError),
    /// The persisted link was refused: restart the walk from the time cursor.
    LinkRefused(u16),
    /// 401 to a fetched OAuth2 token: fetch a new one and try once more.
    StaleToken,
}

impl PollContext {
    fn id(&self) -> &str {
        &self.integration.id
    }

    fn scrubber(&self) -> Scrubber {
        match self.scrubber.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Adds a secret learnt during the cycle (an access token) to what is scrubbed.
    pub(super) fn learn_secret(&self, secret: &str) {
        let mut s = match self.scrubber.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        *s = s.with(secret);
    }

    /// Vendor-derived text made safe to store, log and show.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.scrubber().scrub(text).into_owned()
    }

    /// At most `ERROR_BODY_QUOTE` bytes of vendor text for a message, scrubbed.
    fn quote(&self, text: &str) -> String {
        self.scrubber().quote(text, ERROR_BODY_QUOTE)
    }

    fn labels(&self) -> IntegrationLabels {
        IntegrationLabels {
            integration: self.integration.id.clone(),
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps unless asked to stop first; `Err(Stopped)` if so.
    async fn sleep(&self, d: Duration) -> Result<(), CycleError> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return Err(CycleError::Stopped);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = stop.wait_for(|s| *s) => Err(CycleError::Stopped),
        }
    }

    fn values<'a>(&'a self, time: Option<&'a str>) -> Values<'a> {
        Values {
            config: &self.config,
            credentials: Some(&self.credentials),
            time,
        }
    }

    fn base_url(&self) -> Result<reqwest::Url, CycleError> {
        let text = self
            .config
            .get("base_url")
            .ok_or_else(|| CycleError::Config("config.base_url is not set".into()))?;
        super::outbound::check_url(text, self.allow_insecure_http)
            .map_err(|m| CycleError::Config(format!("config.base_url: {m}")))
    }

    /// Every URL field must pass the outbound rule before anything is sent (a record saved
    /// before the rule, or edited on disk, must not send credentials in the clear).
    fn check_outbound(&self) -> Result<(), CycleError> {
        super::outbound::check_config(&self.connector, &self.config, self.allow_insecure_http)
            .map_err(|(field, m)| CycleError::Config(format!("{field}: {m}")))
    }

    /// Whether a URL is one credentials may go to: an origin of one of the URL fields.
    pub(super) fn allowed_destination(&self, url: &reqwest::Url) -> bool {
        let wanted = super::outbound::origin(url);
        super::outbound::origins(&self.connector, &self.config)
            .values()
            .any(|o| *o == wanted)
    }

    /// The first request of a walk: the definition's path and query, plus the since parameter.
    pub fn first_url(&self, since: Micros) -> Result<String, CycleError> {
        let mut url = self.base_url()?;
        let c = &self.connector.request;
        let path_template = c
            .path_choice
            .as_ref()
            .and_then(|(field, paths)| paths.get(self.config.get(field)?))
            .unwrap_or(&c.path);
        let path = path_template
            .render(&self.values(None), escape_path_segment)
            .ok_or_else(|| {
                CycleError::Config("request.path needs a config value that is not set".into())
            })?;
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        if c.method == HttpMethod::Post {
            // the body carries the time: the position is kept in the fragment (never sent)
            let time = format_time_param(since, c.since.format);
            let v = c
                .since
                .template
                .render(&self.values(Some(&time)), no_escape)
                .unwrap_or(time);
            url.set_fragment(Some(&super::paging::post_position(PostPosition::Since, &v)));
            return Ok(url.to_string());
        }
        {
            let mut q = url.query_pairs_mut();
            for (k, t) in &c.query {
                if let Some(v) = t.render(&self.values(None), no_escape) {
                    q.append_pair(k, &v);
                }
            }
            let time = format_time_param(since, c.since.format);
            if let Some(v) = c
                .since
                .template
                .render(&self.values(Some(&time)), no_escape)
            {
                q.append_pair(&c.since.param, &v);
            }
        }
        Ok(url.to_string())
    }

    /// Only links to the configured host are followed: credentials never go elsewhere.
    fn same_origin(&self, link: &str) -> Option<String> {
        let base = self.base_url().ok()?;
        let url = base.join(link).ok()?;
        if url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
        {
            Some(url.to_string())
        } else {
            tracing::warn!(integration = %self.id(), "next link points at another host; not followed");
            None
        }
    }

    fn request(&self, url: &str) -> Result<reqwest::RequestBuilder, CycleError> {
        let mut req = match self.connector.request.method {
            HttpMethod::Get => self.http.get(url),
            HttpMethod::Post => {
                let (endpoint, body) = super::paging::post_request(&self.connector, url)?;
                self.http.post(endpoint).json(&body)
            }
        };
        for (name, t) in &self.connector.request.headers {
            if let Some(v) = t.render(&self.values(None), no_escape) {
                req = req.header(name.as_str(), v);
            }
        }
        let missing = || CycleError::Config("a credential the connector needs is not set".into());
        req = match &self.connector.auth {
            Auth::Header { header, .. } => {
                let value = self.connector.auth_templates[0]
                    .render(&self.values(None), no_escape)
                    .ok_or_else(missing)?;
                let mut hv = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    CycleError::Config("a credential holds characters a header cannot".into())
                })?;
                hv.set_sensitive(true);
                req.header(header.as_str(), hv)
            }
            // the bearer token is added by `attempt` (fetching it is async)
            Auth::OAuth2ClientCredentials(_) | Auth::OAuth2JwtBearer(_) => req,
            Auth::Basic { .. } => {
                let user = self.connector.auth_templates[0]
                    .render(&self.values(None), no_escape)
                    .ok_or_else(missing)?;
                let pass = self.connector.auth_templates[1]
                    .render(&self.values(None), no_escape)
                    .ok_or_else(missing)?;
                req.basic_auth(user, Some(pass))
            }
        };
        Ok(req)
    }

    async fn attempt(&self, url: &str, from_saved_link: bool) -> Result<Attempt, CycleError> {
        let started = Instant::now();
        let mut req = self.request(url)?;
        if self.connector.auth.fetches_tokens() {
            match self.oauth2_bearer().await {
                Ok(value) => req = req.header(reqwest::header::AUTHORIZATION, value),
                Err(a) => return Ok(a),
            }
        }
        let sent = req.send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Ok(Attempt::Transient(format!(
                    "request {kind}: {}",
                    without_url(&e)
                )));
            }
        };
        let status = response.status();
        self.metrics
            .upstream_responses
            .get_or_create(&UpstreamLabels {
                integration: self.integration.id.clone(),
                status: status.as_u16(),
            })
            .inc();
        let headers = response.headers().clone();
        let spec = &self.connector.rate_limit;
        let RateHeaders {
            remaining,
            reset_in,
            retry_after,
        } = RateHeaders::read(spec, &headers, now_micros());
        self.gate.observe(remaining, reset_in);
        let body = match read_body(response).await {
            Ok(b) => b,
            Err(BodyRead::TooLarge) => {
                return Ok(Attempt::Fatal(CycleError::Upstream(format!(
                    "a page is larger than {} MiB",
                    MAX_PAGE_BYTES / (1024 * 1024)
                ))))
            }
            Err(BodyRead::Failed(e)) => {
                return Ok(Attempt::Transient(format!(
                    "reading the body failed: {}",
                    without_url(&e)
                )))
            }
        };
        tracing::debug!(integration = %self.id(), status = status.as_u16(), bytes = body.len(), millis = started.elapsed().as_millis() as u64, "page fetched");
        let exhausted = remaining == Some(0) || status == StatusCode::TOO_MANY_REQUESTS;
        let rate_wait = || {
            retry_after
                .or(reset_in.filter(|_| exhausted))
                .unwrap_or(Duration::from_micros(spec.default_wait.max(0) as u64))
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_none() {
                return Ok(Attempt::Transient(format!("HTTP {}", status.as_u16())));
            }
            return Ok(Attempt::RateLimited(
                rate_wait(),
                format!("HTTP {}", status.as_u16()),
            ));
        }
        if status == StatusCode::FORBIDDEN {
            let lower = body.to_lowercase();
            let limited = retry_after.is_some()
                || remaining == Some(0)
                || spec.body_markers.iter().any(|m| lower.contains(m.as_str()));
            if limited {
                return Ok(Attempt::RateLimited(
                    rate_wait(),
                    "HTTP 403 (rate limit)".into(),
                ));
            }
        }
        if status == StatusCode::UNAUTHORIZED && self.connector.auth.fetches_tokens() {
            return Ok(Attempt::StaleToken);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Ok(Attempt::Fatal(CycleError::CredentialsRejected(format!(
                "HTTP {}",
                status.as_u16()
            ))));
        }
        if status.is_server_error() {
            return Ok(Attempt::Transient(format!("HTTP {}", status.as_u16())));
        }
        if from_saved_link && matches!(status.as_u16(), 400 | 404 | 410) {
            return Ok(Attempt::LinkRefused(status.as_u16()));
        }
        if !status.is_success() {
            return Ok(Attempt::Fatal(CycleError::Upstream(format!(
                "vendor answered HTTP {}: {}",
                status.as_u16(),
                self.quote(&body)
            ))));
        }
        let records: Vec<Box<RawValue>> = match page_records(&body, &self.connector.records) {
            Ok(r) => r.into_iter().map(|r| r.to_owned()).collect(),
            Err(RecordError::Vendor(m))
                if self.connector.records.credential_errors.contains(&m) =>
            {
                return Ok(Attempt::Fatal(CycleError::CredentialsRejected(format!(
                    "vendor error {}",
                    self.quote(&m)
                ))))
            }
            Err(RecordError::Vendor(m))
                if from_saved_link && self.connector.records.cursor_errors.contains(&m) =>
            {
                return Ok(Attempt::LinkRefused(status.as_u16()))
            }
            Err(RecordError::Vendor(m)) => {
                return Ok(Attempt::Fatal(CycleError::Upstream(format!(
                    "vendor reported an error: {}",
                    self.quote(&m)
                ))))
            }
            // a cut-off or garbled body is a transport fault: fetch the same page again
            Err(e) => return Ok(Attempt::Transient(self.scrub(&e.to_string()))),
        };
        let next = match &self.connector.pagination {
            Pagination::LinkHeader => next_link(&headers).and_then(|l| self.same_origin(&l)),
            Pagination::BodyCursor { path, param }
                if self.connector.request.method == HttpMethod::Post =>
            {
                super::paging::post_next(url, &body, path, param)
            }
            Pagination::BodyCursor { path, param } => {
                let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let token = super::path::JsonPath::parse(path)
                    .ok()
                    .and_then(|p| p.get(&parsed).and_then(|v| v.as_str()).map(str::to_string))
                    .filter(|t| !t.is_empty());
                match token {
                    Some(t) => {
                        let mut u = reqwest::Url::parse(url)
                            .map_err(|e| CycleError::Config(format!("page URL: {e}")))?;
                        let kept: Vec<(String, String)> = u
                            .query_pairs()
                            .filter(|(k, _)| k != param)
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                        u.query_pairs_mut()
                            .clear()
                            .extend_pairs(kept)
                            .append_pair(param, &t);
                        Some(u.to_string())
                    }
                    None => None,
                }
            }
            Pagination::Offset { param, unit, start } => {
                super::paging::offset_next(url, records.len(), param, *unit, *start)?
            }
            Pagination::LastRecord { path, param } => {
                super::paging::last_record_next(url, &records, path, param)?
            }
            Pagination::NextUrlInBody { path } => {
                let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                super::path::JsonPath::parse(path)
                    .ok()
                    .and_then(|p| p.get(&parsed).and_then(|v| v.as_str()).map(str::to_string))
                    .filter(|t| !t.is_empty())
                    .and_then(|l| self.same_origin(&l))
            }
            Pagination::None => None,
        };
        let more = self.connector.pagination_more.as_ref().and_then(|p| {
            let parsed: serde_json::Value = serde_json::from_str(&body).ok()?;
            p.get(&parsed)?.as_bool()
        });
        let scrubber = self.scrubber();
        if next.as_deref().is_some_and(|n| scrubber.contains(n)) {
            // the link would be stored in the cursor (shown to viewers) and sent again
            return Ok(Attempt::Fatal(CycleError::Upstream(
                "the vendor's next-page link carries a credential of this integration; it is neither followed nor stored".into(),
            )));
        }
        let records = if scrubber.contains(&body) {
            tracing::warn!(integration = %self.id(), "a vendor page carried a credential of this integration; redacted before storing (rotate the credential)");
            records
                .into_iter()
                .map(|r| match scrubber.scrub_json(r.get()) {
                    std::borrow::Cow::Borrowed(_) => Ok(r),
                    std::borrow::Cow::Owned(clean) => RawValue::from_string(clean),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    CycleError::Upstream("a record does not parse after redaction".into())
                })?
        } else {
            records
        };
        Ok(Attempt::Done(Page {
            records,
            next,
            more,
        }))
    }

    /// Fetches one page: waits at the rate gate, honours rate limits, retries transient faults
    /// with exponential backoff and jitter.
    async fn fetch(
        &self,
        url: &str,
        from_saved_link: bool,
    ) -> Result<Result<Page, u16>, CycleError> {
        let mut failures = 0u32;
        let mut waits = 0u32;
        let mut token_refreshed = false;
        loop {
            while let Some(w) = self.gate.next_wait() {
                self.sleep(w).await?;
            }
            match self.attempt(url, from_saved_link).await? {
                Attempt::Done(page) => return Ok(Ok(page)),
                Attempt::LinkRefused(code) => return Ok(Err(code)),
                Attempt::Fatal(e) => return Err(e),
                Attempt::StaleToken => {
                    if token_refreshed {
                        return Err(CycleError::CredentialsRejected(
                            "HTTP 401 with a newly fetched token".into(),
                        ));
                    }
                    token_refreshed = true;
                    self.forget_oauth2_token();
                    tracing::info!(integration = %self.id(), "HTTP 401: fetching a new access token");
                }
                Attempt::RateLimited(wait, why) => {
                    waits += 1;
                    let wait = wait.min(self.tuning.max_wait);
                    self.metrics
                        .rate_limit_waits
                        .get_or_create(&self.labels())
                        .inc();
                    tracing::info!(integration = %self.id(), reason = %why, wait_ms = wait.as_millis() as u64, "rate limited; waiting");
                    if waits > MAX_RATE_LIMIT_WAITS {
                        return Err(CycleError::Upstream(format!(
                            "still rate limited after {waits} waits ({why})"
                        )));
                    }
                    self.gate.close_for(wait);
                }
                Attempt::Transient(why) => {
                    failures += 1;
                    if failures > self.tuning.max_retries {
                        return Err(CycleError::Upstream(format!(
                            "{why} (gave up after {failures} attempts)"
                        )));
                    }
                    let backoff = backoff(&self.tuning, failures);
                    tracing::warn!(integration = %self.id(), reason = %why, attempt = failures, retry_in_ms = backoff.as_millis() as u64, "page failed; retrying");
                    self.sleep(backoff).await?;
                }
            }
        }
    }

    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}

enum BodyRead {
    TooLarge,
    Failed(reqwest::Error),
}

/// Reads a body up to `MAX_PAGE_BYTES`, as text (invalid UTF-8 replaced, as reqwest does).
async fn read_body(mut response: reqwest::Response) -> Result<String, BodyRead> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
    {
        return Err(BodyRead::TooLarge);
    }
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyRead::Failed)? {
        if bytes.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(BodyRead::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// reqwest errors name the URL; ours carry no secrets, but keep messages short and stable.
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut text = String::new();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    if text.is_empty() {
        "connection error".into()
    } else {
        text
    }
}

/// Exponential backoff with up to 50% jitter, capped.
fn backoff(t: &PollTuning, attempt: u32) -> Duration {
    let exp = t
        .retry_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(t.retry_max);
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("the OS random source is available");
    let jitter = exp.mul_f64(u16::from_le_bytes(b) as f64 / u16::MAX as f64 / 2.0);
    exp + jitter
}

/// What a vendor's answer says about its rate limit, read from its headers alone: pure, so that
/// tests and the fuzz targets (docs/FUZZING.md) can feed it any header a vendor could send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    /// Requests left in the budget (the definition's `remaining_header`).
    pub remaining: Option<u64>,
    /// Time until the budget resets (the definition's `reset_header` and `reset_format`).
    pub reset_in: Option<Duration>,
    /// `Retry-After`, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
}

impl RateHeaders {
    pub fn read(spec: &RateLimitSpec, headers: &HeaderMap, now: Micros) -> RateHeaders {
        RateHeaders {
            remaining: header_number(headers, spec.remaining_header.as_deref()),
            reset_in: reset_in(spec, headers, now),
            retry_after: retry_after(headers, now),
        }
    }
}

fn header_number(headers: &HeaderMap, name: Option<&str>) -> Option<u64> {
    headers
        .get(name?)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|f| *f >= 0.0)
        .map(|f| f as u64)
}

/// Time until the vendor's budget resets, from the reset header.
fn reset_in(spec: &RateLimitSpec, headers: &HeaderMap, now: Micros) -> Option<Duration> {
    let n = header_number(headers, spec.reset_header.as_deref())?;
    let secs = match spec.reset_format {
        ResetFormat::EpochSeconds => {
            // outside input: a reset past i64 must not wrap into the past, nor overflow
            let reset_at = i64::try_from(n).unwrap_or(i64::MAX);
            reset_at
                .saturating_sub(now / MICROS_PER_SEC)
                .max(0)
                .unsigned_abs()
                .saturating_add(1)
        }
        ResetFormat::DeltaSeconds => n,
    };
    Some(Duration::from_secs(secs))
}

fn retry_after(headers: &HeaderMap, now: Micros) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        // outside input: NaN, negative or absurd values must not panic
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.timestamp_micros().saturating_sub(now);
    Some(Duration::from_micros(delta.max(0).unsigned_abs()))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), across one or several headers.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else {
                continue;
            };
            let target = target.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| {
                        r.trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                    })
                    .unwrap_or(false)
            });
            if is_next {
                if let Some(url) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
                    return Some(url.to_string());
                }
            }
        }
    }
    None
}

pub fn format_time_param(t: Micros, format: TimeParamFormat) -> String {
    use chrono::{TimeZone, Utc};
    match format {
        TimeParamFormat::Date => Utc
            .timestamp_micros(t)
            .single()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "1970-01-01".into()),
        TimeParamFormat::Rfc3339 => Utc
            .timestamp_micros(t)
            .single()
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into()),
        TimeParamFormat::EpochSeconds => t.div_euclid(MICROS_PER_SEC).to_string(),
        TimeParamFormat::EpochMillis => t.div_euclid(1000).to_string(),
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

/// Waits for the oldest queued page's commit and does its bookkeeping (counts, status, metrics).
async fn settle_one(
    ctx: &PollContext,
    report: &mut CycleReport,
    in_flight: &mut VecDeque<InFlight<'_>>,
) -> Result<(), CycleError> {
    let Some(page) = in_flight.pop_front() else {
        return Ok(());
    };
    let id = &ctx.integration.id;
    let outcome = page.pending.wait().await?;
    let (stored, duplicates) = (outcome.stored as u64, outcome.duplicates as u64);
    report.stored += stored;
    report.duplicates += duplicates;
    ctx.update_status(|s| {
        if !s.backfill_done {
            s.backfill_oldest = match (s.backfill_oldest, page.page_min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    });
    if let (Some(integrations), Ok(status)) = (&ctx.integrations, ctx.status.lock()) {
        if let Err(e) = integrations.save_status(id, &status) {
            tracing::warn!(integration = %id, error = %e, "cannot save the integration status");
        }
    }
    tracing::debug!(integration = %id, page = report.pages, records = page.records, stored, duplicates, "page committed");
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
}

fn normalise_page(
    connector: &Connector,
    integration: &IntegrationRef,
    records: &[Box<RawValue>],
    ingested_at: Micros,
) -> Normalised {
    let mut prepared = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    let (mut page_min, mut page_max) = (None::<Micros>, None::<Micros>);
    for (i, raw) in records.iter().enumerate() {
        match normalise(&connector.map, integration, raw, i, ingested_at) {
            Ok(e) => {
                page_min = Some(page_min.map_or(e.time, |m| m.min(e.time)));
                page_max = Some(page_max.map_or(e.time, |m| m.max(e.time)));
                prepared.push(prepare(&e));
            }
            Err(e) => rejected.push(e.to_string()),
        }
    }
    Normalised {
        prepared,
        page_min,
        page_max,
        rejected,
    }
}

/// One poll cycle: walk pages until the vendor has nothing more (or stop is asked), committing
/// each page's events with the cursor that covers them. Where the next link is known from the
/// page alone, the next page is fetched while this one is normalised (on a blocking thread),
/// and up to `PAGES_IN_FLIGHT` pages are queued in the store at once: commits are applied in the
/// order they were queued, so a page's cursor never lands before the events of the pages before
/// it, and a kill at any point leaves a cursor that covers exactly the events stored.
pub async fn poll_cycle(ctx: &PollContext) -> Result<CycleReport, CycleError> {
    // whatever a vendor put in the reason, last_error and the log get it scrubbed
    walk(ctx).await.map_err(|e| e.scrubbed(&ctx.scrubber()))
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
    Ok(report)
}

async fn walk_pages<'a>(
    ctx: &'a PollContext,
    report: &mut CycleReport,
    in_flight: &mut VecDeque<InFlight<'a>>,
) -> Result<(), CycleError> {
    let id = ctx.integration.id.clone();
    let spec = &ctx.connector.cursor;
    ctx.check_outbound()?;
    let mut cursor = CursorState::decode(ctx.store.cursor(&id)?.as_deref());
    let mut restarted_from_time = false;
    // the next page, fetched while the previous one was normalised: (its url, what came)
    let mut prefetched: Option<(String, Fetched)> = None;
    loop {
        // a page already fetched is committed before a stop: the vendor served it
        if ctx.stopping() && prefetched.is_none() {
            return Err(CycleError::Stopped);
        }
        if report.pages >= MAX_PAGES_PER_CYCLE {
            tracing::info!(integration = %id, pages = report.pages, "page budget of this cycle spent; the next fire continues");
            return Ok(());
        }
        let now = now_micros();
        let (url, fetched) = match prefetched.take() {
            Some(p) => p,
            None => {
                if let Some(next) = &cursor.next {
                    // a saved link must still point at the configured host (base_url may have
                    // changed): credentials go nowhere else
                    if ctx.same_origin(next).is_none() {
                        tracing::warn!(integration = %id, "saved link is for another host than config.base_url; resuming from the time cursor");
                        cursor.next = None;
                        cursor.walk_top = None;
                        cursor.walk_floor = None;
                    }
                }
                let (url, from_saved_link) = match &cursor.next {
                    Some(next) => (next.clone(), true),
                    None => {
                        // a window reaching before 1970 starts at 1970 (crate::time's range)
                        let backfill_from = now.saturating_sub(ctx.backfill).max(MIN_TIME);
                        let since = match cursor.high_water {
                            Some(h) => h.saturating_sub(spec.overlap).max(MIN_TIME),
                            None => backfill_from,
                        };
                        if spec.order == Order::NewestFirst {
                            cursor.walk_floor = cursor
                                .high_water
                                .map(|h| h.saturating_sub(spec.overlap).max(MIN_TIME));
                            cursor.walk_top = None;
                        }
                        ctx.update_status(|s| {
                            if s.backfill_from.is_none() && !s.backfill_done {
                                s.backfill_from = Some(backfill_from);
                            }
                        });
                        (ctx.first_url(since)?, false)
                    }
                };
                let fetched = ctx.fetch(&url, from_saved_link).await;
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
                tracing::warn!(integration = %id, status = code, "vendor refused the saved link; resuming from the time cursor minus the overlap");
                cursor.next = None;
                restarted_from_time = true;
                continue;
            }
        };
        report.pages += 1;
        let page_empty = page.records.is_empty();
        // a next link that names the page just fetched makes no progress: the walk ends here
        // (a vendor that keeps answering the same last record must not spin a cycle forever)
        // `pagination.more = false` also ends the walk (the next position is still kept)
        let stalled = page.next.as_deref() == Some(url.as_str()) || page.more == Some(false);
        // the page itself allows the walk to go on; a newest-first walk also stops at its floor
        let page_goes_on = !page_empty && page.next.is_some() && !stalled;
        // Whether the walk goes on, where that is known before the records are read: only a
        // newest-first walk down to a floor needs the page's times to know it.
        let goes_on =
            (spec.order == Order::Ascending || cursor.walk_floor.is_none()).then_some(page_goes_on);
        let prefetch = match (goes_on, &page.next) {
            (Some(true), Some(next))
                if report.pages < MAX_PAGES_PER_CYCLE
                    && !ctx.stopping()
                    && ctx.same_origin(next).is_some() =>
            {
                Some(next.clone())
            }
            _ => None,
        };
        let ingested_at = now_micros();
        let records = std::mem::take(&mut page.records);
        let record_count = records.len();
        let (connector, integration) = (ctx.connector.clone(), ctx.integration.clone());
        let work = tokio::task::spawn_blocking(move || {
            normalise_page(&connector, &integration, &records, ingested_at)
        });
        let normalised = match prefetch {
            Some(next) => {
                let (normalised, fetched) = tokio::join!(work, ctx.fetch(&next, true));
                prefetched = Some((next, fetched));
                normalised
            }
            None => work.await,
        }
        .map_err(|_| CycleError::Store(StoreError::Closed))?;
        for error in &normalised.rejected {
            report.rejected += 1;
            ctx.metrics
                .records_rejected
                .get_or_create(&ctx.labels())
                .inc();
            let error = ctx.scrub(error);
            tracing::warn!(integration = %id, %error, "record skipped");
        }
        let page_min = normalised.page_min;
        // a record stamped in the future must not carry the high-water mark past events still
        // to come (newest-first walks would then stop early): the cursor takes at most now;
        // the overlap covers ordinary clock skew
        let page_max = normalised.page_max.map(|t| t.min(now_micros()));
        let walk_done = match (spec.order, spec.kind) {
            (Order::Ascending, CursorKind::NextLink) => {
                cursor.high_water = cursor.high_water.max(page_max);
                // the vendor's link is the position: keep it even when the page is empty
                cursor.next = page.next.clone();
                !page_goes_on
            }
            (Order::Ascending, CursorKind::Time) => {
                cursor.high_water = cursor.high_water.max(page_max);
                cursor.next = if page_goes_on {
                    page.next.clone()
                } else {
                    None
                };
                !page_goes_on
            }
            (Order::NewestFirst, _) => {
                cursor.walk_top = cursor.walk_top.max(page_max);
                let reached = match (cursor.walk_floor, page_min) {
                    (Some(floor), Some(min)) => min < floor,
                    _ => false,
                };
                let more = page_goes_on && !reached;
                if more {
                    cursor.next = page.next.clone();
                } else {
                    cursor.high_water = cursor.high_water.max(cursor.walk_top);
                    cursor.next = None;
                    cursor.walk_top = None;
                    cursor.walk_floor = None;
                }
                !more
            }
        };
        debug_assert!(goes_on.is_none_or(|more| more != walk_done));
        while in_flight.len() >= PAGES_IN_FLIGHT {
            settle_one(ctx, report, in_flight).await?;
        }
        // a poll waits for room in the write queue: the vendor's pages can wait, nothing is lost
        // (skipped records were counted and logged above, scrubbed)
        let pending = crate::pipeline::Pipeline::new(&ctx.store, Some(&ctx.metrics))
            .submit(
                &id,
                crate::pipeline::Prepared {
                    events: normalised.prepared,
                    rejected: Vec::new(),
                },
                crate::pipeline::Options::polled(cursor.encode()),
            )
            .await?;
        in_flight.push_back(InFlight {
            pending,
            page_min,
            records: record_count,
        });
        if walk_done {
            report.caught_up = true;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            "<https://x/api?after=1>; rel=\"self\", <https://x/api?after=2&b=c>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://x/api?after=2&b=c"));
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            "<https://x/a>; rel=\"self\"".parse().unwrap(),
        );
        assert_eq!(next_link(&h), None);
    }

    /// Secrets are scrubbed in their echoed forms; identifiers vendors write into their own
    /// records (a basic-auth account's email) are not.
    #[test]
    fn the_scrubber_takes_secrets_not_identifiers() {
        use base64::Engine as _;
        let registry = super::super::Registry::builtin().expect("valid");
        let jira = registry.get("jira").expect("jira");
        let credentials: BTreeMap<String, Secret> = [
            ("email", "admin@example.com"),
            ("api_token", "jira-api-t0ken-93"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Secret::new(v)))
        .collect();
        let scrubber = secrets_scrubber(&jira, &BTreeMap::new(), &credentials);
        let basic =
            base64::engine::general_purpose::STANDARD.encode("admin@example.com:jira-api-t0ken-93");
        assert_eq!(
            scrubber.scrub(&format!("actor admin@example.com sent Basic {basic}")),
            "actor admin@example.com sent Basic [redacted]"
        );
        assert_eq!(scrubber.scrub("jira-api-t0ken-93"), "[redacted]");
    }

    #[test]
    fn retry_after_from_outside_never_panics() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, v.parse().expect("header"));
            retry_after(&h, now_micros())
        };
        assert_eq!(h("2"), Some(Duration::from_secs(2)));
        assert_eq!(h("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(h("1e400"), None);
        assert_eq!(h("-3"), None);
        assert_eq!(h("NaN"), None);
        assert_eq!(h("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(h("soon"), None);
    }

    #[test]
    fn time_params() {
        let t = 1_723_564_700_353_000;
        assert_eq!(format_time_param(t, TimeParamFormat::Date), "2024-08-13");
        assert_eq!(
            format_time_param(t, TimeParamFormat::Rfc3339),
            "2024-08-13T15:58:20.353Z"
        );
        assert_eq!(
            format_time_param(t, TimeParamFormat::EpochSeconds),
            "1723564700"
        );
        assert_eq!(
            format_time_param(t, TimeParamFormat::EpochMillis),
            "1723564700353"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let t = PollTuning {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(350),
            ..PollTuning::default()
        };
        let b1 = backoff(&t, 1);
        assert!(b1 >= Duration::from_millis(100) && b1 <= Duration::from_millis(150));
        let b3 = backoff(&t, 3);
        assert!(b3 >= Duration::from_millis(350) && b3 <= Duration::from_millis(525));
    }
}
