//! Transport: one request to a vendor and everything around it — the request a definition
//! describes (URL, headers, auth), the answer's classification (page, rate limit, transient
//! fault, refusal), retries with backoff, and the integration's rate gate
//!
//! Nothing here knows about cursors or the store: the engine asks for a page and gets one, or
//! the reason there is none.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::definition::{Auth, Connector, Poll};
use super::normalise::{page_records, RecordError};
use super::paging::Next;
use super::ratelimit::{RateGate, RateHeaders};
use super::template::{no_escape, Values};
use crate::config::{PollTuning, Secret};
use crate::metrics::{IntegrationLabels, Metrics, UpstreamLabels};
use crate::redact::Scrubber;
use crate::schema::IntegrationRef;
use crate::store::StoreError;
use crate::time::now_micros;

/// Rate-limit waits accepted for one page before the cycle gives up and reports an error.
const MAX_RATE_LIMIT_WAITS: u32 = 20;
/// Largest page body accepted (a vendor page of 1,000 records is a few MiB).
const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;
/// Body bytes quoted in an error message.
const ERROR_BODY_QUOTE: usize = 200;

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

/// What talking to one integration's vendor needs.
pub struct Transport {
    pub integration: IntegrationRef,
    pub connector: Arc<Connector>,
    /// The connector's poll part: a transport exists only for a polled connector.
    pub poll: Arc<Poll>,
    pub config: BTreeMap<String, String>,
    pub credentials: BTreeMap<String, Secret>,
    /// http is accepted for URL fields on a loopback host (see `outbound`).
    pub allow_insecure_http: bool,
    /// The integration's collection filters, applied as pages are normalised.
    pub filters: Arc<crate::connectors::filters::Filters>,
    /// This integration's secrets, to scrub from vendor text (see `secrets_scrubber`); access
    /// tokens are added as they are fetched.
    pub scrubber: Mutex<Scrubber>,
    pub http: reqwest::Client,
    /// The integration's one rate gate: every request of every walk waits at it.
    pub gate: Arc<RateGate>,
    pub tuning: PollTuning,
    pub metrics: Arc<Metrics>,
    pub stop: watch::Receiver<bool>,
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
    // a push-only connector sends no request: nothing is rendered from its credentials
    let mut rendered: Vec<String> = Vec::new();
    if let Some(poll) = &connector.poll {
        rendered.extend(
            poll.auth_templates
                .iter()
                .filter_map(|t| t.render(&values, no_escape)),
        );
        if let Auth::Basic { .. } = poll.auth {
            rendered.push(rendered.join(":"));
        }
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

/// A page as fetched: its records (redacted of this integration's secrets) and its paging.
pub(super) struct Page {
    pub records: Vec<Box<RawValue>>,
    pub next: Option<String>,
    /// `pagination.more` as the page said it (`Some(false)`: nothing more now).
    pub more: Option<bool>,
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

impl Transport {
    pub(super) fn id(&self) -> &str {
        &self.integration.id
    }

    pub(super) fn scrubber(&self) -> Scrubber {
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
    pub(super) fn quote(&self, text: &str) -> String {
        self.scrubber().quote(text, ERROR_BODY_QUOTE)
    }

    fn labels(&self) -> IntegrationLabels {
        IntegrationLabels {
            integration: self.integration.id.clone(),
        }
    }

    pub(super) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps unless asked to stop first; `Err(Stopped)` if so.
    pub(super) async fn sleep(&self, d: Duration) -> Result<(), CycleError> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return Err(CycleError::Stopped);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = stop.wait_for(|s| *s) => Err(CycleError::Stopped),
        }
    }

    async fn attempt(&self, url: &str, from_saved_link: bool) -> Result<Attempt, CycleError> {
        self.attempt_seeing(url, from_saved_link, &mut None).await
    }

    /// One request of `url`, as a cycle sends it (auth, token exchange, the client and its
    /// timeouts, the size bound), without retrying or waiting: a connection test. The vendor's
    /// status, if it answered, and what the answer means.
    pub(super) async fn probe(&self, url: &str) -> (Option<u16>, Result<Attempt, CycleError>) {
        let mut status = None;
        let attempt = self.attempt_seeing(url, false, &mut status).await;
        (status, attempt)
    }

    /// `attempt`, writing the answer's status into `status_seen` once the vendor answered.
    async fn attempt_seeing(
        &self,
        url: &str,
        from_saved_link: bool,
        status_seen: &mut Option<u16>,
    ) -> Result<Attempt, CycleError> {
        let started = Instant::now();
        let mut req = self.request(url)?;
        if self.poll.auth.fetches_tokens() {
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
                    crate::http::reqwest_error_text(&e)
                )));
            }
        };
        let status = response.status();
        *status_seen = Some(status.as_u16());
        self.metrics
            .upstream_responses
            .get_or_create(&UpstreamLabels {
                integration: self.integration.id.clone(),
                status: status.as_u16(),
            })
            .inc();
        let headers = response.headers().clone();
        let rate = RateHeaders::read(&self.poll.rate_limit, &headers, now_micros());
        self.gate.observe(rate.remaining, rate.reset_in);
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
                    crate::http::reqwest_error_text(&e)
                )))
            }
        };
        tracing::debug!(integration = %self.id(), status = status.as_u16(), bytes = body.len(), millis = started.elapsed().as_millis() as u64, "page fetched");
        let answer = Answer {
            status,
            rate,
            body: &body,
        };
        if let Some(outcome) = classify(&self.poll, &answer, from_saved_link) {
            return Ok(outcome.into_attempt(|| self.quote(&body)));
        }
        let records: Vec<Box<RawValue>> = match page_records(&body, &self.poll.records) {
            Ok(r) => r.into_iter().map(|r| r.to_owned()).collect(),
            Err(RecordError::Vendor(m)) if self.poll.records.credential_errors.contains(&m) => {
                return Ok(Attempt::Fatal(CycleError::CredentialsRejected(format!(
                    "vendor error {}",
                    self.quote(&m)
                ))))
            }
            Err(RecordError::Vendor(m))
                if from_saved_link && self.poll.records.cursor_errors.contains(&m) =>
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
        let Next { next, more } =
            super::paging::next_page(&self.poll, url, &body, &headers, &records, |link| {
                self.same_origin(link)
            })
            .map_err(|e| CycleError::Config(e.0))?;
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
    pub(super) async fn fetch(
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

/// A vendor's answer as far as classification needs it.
pub struct Answer<'a> {
    pub status: StatusCode,
    pub rate: RateHeaders,
    pub body: &'a str,
}

/// What an answer that is not a page means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    RateLimited(Duration, String),
    Transient(String),
    StaleToken,
    CredentialsRejected(String),
    LinkRefused(u16),
    /// Any other non-success (the message quotes the body, scrubbed).
    Failed(u16),
}

impl Refusal {
    fn into_attempt(self, quoted_body: impl FnOnce() -> String) -> Attempt {
        match self {
            Refusal::RateLimited(wait, why) => Attempt::RateLimited(wait, why),
            Refusal::Transient(why) => Attempt::Transient(why),
            Refusal::StaleToken => Attempt::StaleToken,
            Refusal::CredentialsRejected(why) => {
                Attempt::Fatal(CycleError::CredentialsRejected(why))
            }
            Refusal::LinkRefused(code) => Attempt::LinkRefused(code),
            Refusal::Failed(code) => Attempt::Fatal(CycleError::Upstream(format!(
                "vendor answered HTTP {code}: {}",
                quoted_body()
            ))),
        }
    }
}

/// Classifies an answer by its status, rate headers and (for a 403) body markers: `None` for a
/// success whose body is the page. Pure: the same answer always means the same thing.
pub fn classify(poll: &Poll, answer: &Answer<'_>, from_saved_link: bool) -> Option<Refusal> {
    let status = answer.status;
    let spec = &poll.rate_limit;
    let RateHeaders {
        remaining,
        reset_in,
        retry_after,
    } = answer.rate;
    let exhausted = remaining == Some(0) || status == StatusCode::TOO_MANY_REQUESTS;
    let rate_wait = || {
        retry_after
            .or(reset_in.filter(|_| exhausted))
            .unwrap_or(Duration::from_micros(spec.default_wait.max(0) as u64))
    };
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_none() {
            return Some(Refusal::Transient(format!("HTTP {code}")));
        }
        return Some(Refusal::RateLimited(rate_wait(), format!("HTTP {code}")));
    }
    if status == StatusCode::FORBIDDEN {
        let lower = answer.body.to_lowercase();
        let limited = retry_after.is_some()
            || remaining == Some(0)
            || spec.body_markers.iter().any(|m| lower.contains(m.as_str()));
        if limited {
            return Some(Refusal::RateLimited(
                rate_wait(),
                "HTTP 403 (rate limit)".into(),
            ));
        }
    }
    if status == StatusCode::UNAUTHORIZED && poll.auth.fetches_tokens() {
        return Some(Refusal::StaleToken);
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Some(Refusal::CredentialsRejected(format!("HTTP {code}")));
    }
    if status.is_server_error() {
        return Some(Refusal::Transient(format!("HTTP {code}")));
    }
    if from_saved_link && matches!(code, 400 | 404 | 410) {
        return Some(Refusal::LinkRefused(code));
    }
    if !status.is_success() {
        return Some(Refusal::Failed(code));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
