//! The emulator core: one loopback HTTP server per emulated vendor, holding its events and
//! serving them through a [`Vendor`] (how that vendor pages, authenticates and shapes a page),
//! with the faults every vendor can show (429 with or without Retry-After, 5xx, slow and truncated
//! answers, spent budgets, echoed credentials), the token endpoint's bookkeeping, the advertised
//! rate budget, and a log of every request
//!
//! Shared by the integration tests and the benches (`#[path]`), so it names nothing outside
//! `support`.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// What one vendor's API does differently: the rest (serving, faults, auth failures, the log,
/// budget headers) is the core's.
pub trait Vendor: Send + Sync + 'static {
    /// The built-in connector that polls this API.
    fn connector(&self) -> &'static str;

    /// The integration `config` that points the connector at an emulator at `url`.
    fn config(&self, url: &str) -> Value;

    /// The integration `credentials` the emulator accepts when started with this client id and
    /// secret.
    fn credentials(&self, client_id: &str, secret: &str) -> Value;

    /// A record stamped `micros`: its time at the vendor's precision, its id and its body.
    /// `tag` tells this emulator's ids from another's in the same process.
    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value);

    /// Whether the request carries the credentials the emulator was started with (or a token
    /// its token endpoint issued).
    fn authorized(&self, req: &Request, state: &EmuState) -> bool;

    /// The answer to wrong credentials.
    fn unauthorized(&self) -> (u16, Value) {
        (401, json!({"message": "Bad credentials"}))
    }

    /// The token endpoint (`…/token`), for vendors that have one; `None`: no such endpoint.
    fn token(&self, _req: &Request, _state: &mut EmuState) -> Option<(u16, Value)> {
        None
    }

    /// One page of events for this request, or a refusal (status, message).
    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal>;

    /// The headers that advertise the rate budget, if the vendor sends any.
    fn budget(&self) -> Option<Budget> {
        None
    }
}

/// A page: the body, and the `Link` header value if the vendor pages with one.
pub struct Page {
    pub body: Body,
    pub link: Option<String>,
}

pub enum Body {
    Json(Value),
    /// The array of these records, written from the JSON each event keeps (a bench walks
    /// thousands of pages: the emulator's cost must stay out of its figures).
    Records(Vec<Arc<str>>),
}

impl Page {
    pub fn body(body: Value) -> Page {
        Page {
            body: Body::Json(body),
            link: None,
        }
    }

    /// A page whose body is the array of these events' records.
    pub fn records(events: &[&EmuEvent], link: Option<String>) -> Page {
        Page {
            body: Body::Records(events.iter().map(|e| e.json.clone()).collect()),
            link,
        }
    }
}

/// A request the vendor refuses: status and message.
pub type Refusal = (u16, String);

/// How a vendor advertises its rate budget on each answer.
#[derive(Clone, Copy)]
pub struct Budget {
    /// (remaining, reset) header names; reset is in epoch seconds.
    pub headers: &'static [(&'static str, &'static str)],
    /// The header that states the whole budget, with its value.
    pub limit: Option<(&'static str, u64)>,
    /// What `remaining` says until a fault spends it.
    pub remaining: u64,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status, with `Retry-After` seconds if given.
    Status(u16, Option<u64>),
    /// 429 without Retry-After, budget headers saying remaining 0 until `reset_in` seconds.
    RateLimitedUntilReset(u64),
    /// Answer normally, but say the budget is spent until `reset_in` seconds from now.
    BudgetSpent(u64),
    /// Sleep first, then answer normally.
    Slow(Duration),
    /// Cut the normal body in half.
    Truncated,
    /// Answer 200 with this body (e.g. Slack's `{"ok": false, "error": ...}`).
    Body(Value),
    /// Answer this status with this body, no Retry-After (e.g. GitHub's secondary limit 403).
    StatusBody(u16, Value),
    /// Answer this status with a body that echoes the `Authorization` header received, as is,
    /// base64 and percent-encoded (a debugging proxy's error page).
    EchoAuthorization(u16),
    /// Answer normally, but the first record quotes the `Authorization` header received.
    EchoInRecord,
    /// Answer normally, but the next link carries the `Authorization` header received.
    EchoInLink,
    /// The token endpoint answers this status, with `Retry-After` seconds if given.
    TokenStatus(u16, Option<u64>),
    /// The token endpoint answers this status with the client secret received as its OAuth
    /// `error` code and the whole form echoed in `error_description`.
    TokenEcho(u16),
}

impl Fault {
    /// Token faults wait for a token request, the others for an API request.
    fn for_token_endpoint(&self) -> bool {
        matches!(self, Fault::TokenStatus(..) | Fault::TokenEcho(_))
    }
}

/// What a careless proxy writes back: the header as is, base64 and percent-encoded.
pub fn echo_body(authorization: &str) -> Value {
    use base64::Engine;
    let token = authorization
        .split_once(' ')
        .map_or(authorization, |(_, t)| t);
    json!({
        "message": format!("upstream refused the request with Authorization: {authorization}"),
        "b64": base64::engine::general_purpose::STANDARD.encode(authorization),
        "token_b64url": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token),
        "query": format!("token={}", serde_urlencoded::to_string([("t", token)]).unwrap_or_default()),
    })
}

#[derive(Debug, Clone)]
pub struct EmuEvent {
    /// Arrival order.
    pub seq: u64,
    /// Micros, at the vendor's precision.
    pub time: i64,
    pub id: String,
    pub record: Value,
    /// `record` as JSON, written once.
    json: Arc<str>,
}

impl EmuEvent {
    pub fn new(seq: u64, time: i64, id: String, record: Value) -> EmuEvent {
        EmuEvent {
            seq,
            time,
            json: record.to_string().into(),
            id,
            record,
        }
    }
}

/// One request as the emulator saw it.
#[derive(Debug, Clone)]
pub struct Req {
    /// When the request arrived.
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub user_agent: String,
    pub authorization: String,
    pub body: String,
    pub status: u16,
}

/// The events, in arrival order, with a time-sorted view kept until they change (a walk of a
/// large history must not sort it again for every page).
#[derive(Default)]
pub struct Events {
    list: Vec<EmuEvent>,
    by_time: OnceCell<Vec<usize>>,
}

impl Events {
    pub fn iter(&self) -> std::slice::Iter<'_, EmuEvent> {
        self.list.iter()
    }

    pub fn push(&mut self, e: EmuEvent) {
        self.list.push(e);
        self.by_time.take();
    }

    pub fn remove(&mut self, i: usize) -> EmuEvent {
        self.by_time.take();
        self.list.remove(i)
    }

    /// Those stamped at or after `since`, in time order.
    pub fn since(&self, since: i64) -> TimeView<'_> {
        let order = self.by_time.get_or_init(|| {
            let mut order: Vec<usize> = (0..self.list.len()).collect();
            order.sort_by_key(|&i| (self.list[i].time, self.list[i].seq));
            order
        });
        let first = order.partition_point(|&i| self.list[i].time < since);
        TimeView {
            list: &self.list,
            order: &order[first..],
        }
    }
}

/// Events in (time, arrival) order.
pub struct TimeView<'a> {
    list: &'a [EmuEvent],
    order: &'a [usize],
}

impl<'a> TimeView<'a> {
    /// Those stamped at or before `until` (a vendor's inclusive upper bound).
    pub fn until(self, until: i64) -> TimeView<'a> {
        let list = self.list;
        let end = self.order.partition_point(|&i| list[i].time <= until);
        TimeView {
            list,
            order: &self.order[..end],
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// `n` records from `offset`, newest first.
    pub fn newest(&self, offset: usize, n: usize) -> Vec<&'a EmuEvent> {
        let list = self.list;
        self.order
            .iter()
            .rev()
            .skip(offset)
            .take(n)
            .map(|&i| &list[i])
            .collect()
    }

    /// `n` records from `offset`, oldest first.
    pub fn oldest(&self, offset: usize, n: usize) -> Vec<&'a EmuEvent> {
        let list = self.list;
        self.order
            .iter()
            .skip(offset)
            .take(n)
            .map(|&i| &list[i])
            .collect()
    }
}

pub struct EmuState {
    pub client_id: String,
    pub secret: String,
    pub events: Events,
    pub faults: VecDeque<Fault>,
    pub requests: Vec<Req>,
    /// Requests received, counted on arrival (an answer the client abandoned is counted too).
    pub started: usize,
    /// Most records per page, whatever the client asks.
    pub page_size: usize,
    /// Each page repeats the last record of the page before (a duplicate across pages).
    pub repeat_across_pages: bool,
    /// What the budget headers say remains (the vendor's default until changed).
    pub budget_remaining: u64,
    /// Access tokens handed out and still accepted, with when they expire.
    pub valid_tokens: HashMap<String, Instant>,
    pub issued: u64,
    /// `expires_in` of issued tokens, seconds.
    pub token_lifetime: u64,
    /// Prefix of issued access tokens (leak tests plant a recognisable one).
    pub token_prefix: String,
    /// Where the emulator listens (next links and token audiences name it).
    pub base: String,
    /// How long every API answer takes (a real vendor's 100 ms to 1 s per page).
    pub latency: Duration,
    next_seq: u64,
    tag: u64,
}

impl EmuState {
    /// An offset the client sent back, one less when pages repeat their predecessor's last.
    pub fn repeat_offset(&self, offset: usize) -> usize {
        if self.repeat_across_pages {
            offset.saturating_sub(1)
        } else {
            offset
        }
    }

    /// Hands out a new access token, valid for `token_lifetime`.
    pub fn issue_token(&mut self) -> String {
        self.issued += 1;
        let token = format!("{}-{}", self.token_prefix, self.issued);
        let expiry = Instant::now() + Duration::from_secs(self.token_lifetime);
        self.valid_tokens.insert(token.clone(), expiry);
        token
    }

    /// Whether a bearer token was issued here and has not expired or been revoked.
    pub fn token_valid(&self, bearer: &str) -> bool {
        self.valid_tokens
            .get(bearer)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }
}

/// A request as the vendor sees it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: HashMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: &'a str,
    pub authorization: &'a str,
}

impl Request<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// The page size asked for in `name` (else `default`), within the emulator's page size.
    pub fn page_size(&self, name: &str, default: usize, state: &EmuState) -> usize {
        self.param(name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
            .min(state.page_size)
            .max(1)
    }

    /// An offset sent back in `name` after `prefix` (0 when absent).
    pub fn offset(&self, name: &str, prefix: &str, state: &EmuState) -> usize {
        self.param(name)
            .and_then(|v| v.strip_prefix(prefix))
            .and_then(|v| v.parse::<usize>().ok())
            .map(|o| state.repeat_offset(o))
            .unwrap_or(0)
    }

    /// An RFC 3339 time parameter in micros; absent: the beginning of time; unreadable: 400.
    pub fn time(&self, name: &str) -> Result<i64, Refusal> {
        match self.param(name) {
            Some(t) => Ok(chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| (400, format!("bad {name} {t}")))?
                .timestamp_micros()),
            None => Ok(i64::MIN),
        }
    }

    /// An RFC 3339 upper bound in micros (inclusive); absent: no bound; unreadable: 400.
    pub fn until(&self, name: &str) -> Result<i64, Refusal> {
        match self.param(name) {
            Some(_) => self.time(name),
            None => Ok(i64::MAX),
        }
    }

    /// The bearer token of the `Authorization` header ("" without one).
    pub fn bearer(&self) -> &str {
        self.authorization.strip_prefix("Bearer ").unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The form body of a token request.
    pub fn form(&self) -> HashMap<String, String> {
        serde_urlencoded::from_str(self.body).unwrap_or_default()
    }
}

static EMULATORS: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub struct Emulator {
    pub state: Arc<Mutex<EmuState>>,
    pub url: String,
    vendor: Arc<dyn Vendor>,
}

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Emulator {
    /// An emulator that accepts `secret` (a token, an API key or a client secret).
    pub async fn start(vendor: impl Vendor, secret: &str, page_size: usize) -> Emulator {
        Emulator::start_as(vendor, "", secret, page_size).await
    }

    /// An emulator that accepts this client id (or user, or service account) with `secret`.
    pub async fn start_as(
        vendor: impl Vendor,
        client_id: &str,
        secret: &str,
        page_size: usize,
    ) -> Emulator {
        Emulator::start_shared(Arc::new(vendor), client_id, secret, page_size).await
    }

    /// The same for a vendor chosen at run time.
    pub async fn start_shared(
        vendor: Arc<dyn Vendor>,
        client_id: &str,
        secret: &str,
        page_size: usize,
    ) -> Emulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(EmuState {
            client_id: client_id.to_string(),
            secret: secret.to_string(),
            events: Events::default(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            started: 0,
            page_size,
            repeat_across_pages: false,
            budget_remaining: vendor.budget().map_or(0, |b| b.remaining),
            valid_tokens: HashMap::new(),
            issued: 0,
            token_lifetime: 3599,
            token_prefix: "emu-access-token".into(),
            base: url.clone(),
            latency: Duration::ZERO,
            next_seq: 0,
            tag: EMULATORS.fetch_add(1, Ordering::Relaxed),
        }));
        let emu = Emulator { state, url, vendor };
        let app = Router::new().fallback(handle).with_state(emu.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        emu
    }

    /// The body that creates an integration of this vendor's connector polling the emulator
    /// every second with the credentials it accepts.
    pub fn integration(&self, name: &str) -> Value {
        let credentials = {
            let s = self.state.lock().expect("lock");
            self.vendor.credentials(&s.client_id, &s.secret)
        };
        self.integration_with(name, credentials)
    }

    /// The same with other credentials.
    pub fn integration_with(&self, name: &str, credentials: Value) -> Value {
        json!({"name": name, "connector": self.vendor.connector(),
            "config": self.vendor.config(&self.url), "credentials": credentials,
            "schedule": "* * * * * *", "backfill": "P3D", "requests_per_minute": 6000,
            "allow_insecure_http": true})
    }

    pub fn connector(&self) -> &'static str {
        self.vendor.connector()
    }

    /// Adds events at these times (micros; truncated to the vendor's precision); returns ids.
    pub fn add_events(&self, times: &[i64]) -> Vec<String> {
        let mut s = self.state.lock().expect("lock");
        let mut ids = Vec::new();
        for &t in times {
            s.next_seq += 1;
            let seq = s.next_seq;
            let (time, id, record) = self.vendor.record(s.tag, seq, t);
            ids.push(id.clone());
            s.events.push(EmuEvent::new(seq, time, id, record));
        }
        ids
    }

    /// Adds a record made elsewhere (a bench's own shapes), stamped `time` micros.
    #[allow(dead_code)] // benches/engine.rs
    pub fn add_record(&self, time: i64, id: &str, record: Value) {
        let mut s = self.state.lock().expect("lock");
        s.next_seq += 1;
        let seq = s.next_seq;
        s.events
            .push(EmuEvent::new(seq, time, id.to_string(), record));
    }

    /// Adds `n` events spread over the last `span_secs` seconds.
    pub fn add_recent(&self, n: usize, span_secs: i64) -> Vec<String> {
        let now = now_micros();
        let times: Vec<i64> = (0..n)
            .map(|i| {
                now - span_secs * 1_000_000 + (i as i64 * span_secs * 1_000_000) / n.max(1) as i64
            })
            .collect();
        self.add_events(&times)
    }

    /// Takes an event out of what the vendor serves (put it back with `restore`).
    pub fn withhold(&self, i: usize) -> EmuEvent {
        self.state.lock().expect("lock").events.remove(i)
    }

    pub fn restore(&self, e: EmuEvent) {
        self.state.lock().expect("lock").events.push(e);
    }

    /// The record of the `i`th event.
    pub fn record(&self, i: usize) -> Value {
        let s = self.state.lock().expect("lock");
        s.events.iter().nth(i).expect("an event").record.clone()
    }

    pub fn fault(&self, f: Fault) {
        self.state.lock().expect("lock").faults.push_back(f);
    }

    pub fn clear_faults(&self) {
        self.state.lock().expect("lock").faults.clear();
    }

    pub fn set_repeat_across_pages(&self) {
        self.state.lock().expect("lock").repeat_across_pages = true;
    }

    /// Every request, token requests included.
    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().expect("lock").requests.clone()
    }

    /// Requests to the token endpoint.
    pub fn token_requests(&self) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/token"))
            .collect()
    }

    /// Requests to the audit-log endpoint.
    pub fn api_requests(&self) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| !r.path.ends_with("/token"))
            .collect()
    }

    /// The vendor stops accepting every access token issued so far.
    pub fn revoke_tokens(&self) {
        self.state.lock().expect("lock").valid_tokens.clear();
    }

    /// The most requests that arrived within any one second (`[t, t + 1 s)`): what a vendor
    /// counting a per-second budget sees at its busiest.
    pub fn busiest_second(&self) -> usize {
        let mut at: Vec<Instant> = self.requests().iter().map(|r| r.at).collect();
        at.sort();
        (0..at.len())
            .map(|i| at[i..].partition_point(|t| t.duration_since(at[i]) < Duration::from_secs(1)))
            .max()
            .unwrap_or(0)
    }

    pub fn ids(&self) -> BTreeSet<String> {
        self.state
            .lock()
            .expect("lock")
            .events
            .iter()
            .map(|e| e.id.clone())
            .collect()
    }
}

fn reply(status: u16, headers: HeaderMap, body: String) -> Response {
    let mut h = headers;
    h.insert("content-type", "application/json".parse().expect("header"));
    (StatusCode::from_u16(status).expect("status"), h, body).into_response()
}

fn budget_headers(h: &mut HeaderMap, budget: &Budget, remaining: u64, reset_in: u64) {
    let reset = (now_micros() / 1_000_000) as u64 + reset_in;
    for (r, s) in budget.headers {
        h.insert(*r, remaining.to_string().parse().expect("header"));
        h.insert(*s, reset.to_string().parse().expect("header"));
    }
    if let Some((name, limit)) = budget.limit {
        h.insert(name, limit.to_string().parse().expect("header"));
    }
}

/// The record array of a page body: the body itself, or its first array-valued field.
fn records_mut(body: &mut Value) -> Option<&mut Vec<Value>> {
    match body {
        Value::Array(items) => Some(items),
        Value::Object(fields) => fields.values_mut().find_map(|v| v.as_array_mut()),
        _ => None,
    }
}

async fn handle(
    State(emu): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // requests are timed as they arrive (what a vendor's rate limit counts)
    let arrived = Instant::now();
    let body = String::from_utf8_lossy(&body).into_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let authorization = header("authorization");
    let user_agent = header("user-agent");
    let log = |status: u16| {
        emu.state.lock().expect("lock").requests.push(Req {
            at: arrived,
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            user_agent: user_agent.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
            status,
        });
    };
    let req = Request {
        method: &method,
        path: uri.path(),
        query: uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default(),
        headers: &headers,
        body: &body,
        authorization: &authorization,
    };
    let vendor = emu.vendor.clone();
    let is_token = uri.path().ends_with("/token");
    // a fault waits for a request to the endpoint it names
    let fault = {
        let mut s = emu.state.lock().expect("lock");
        s.started += 1;
        match s.faults.front() {
            Some(f) if f.for_token_endpoint() == is_token => s.faults.pop_front(),
            _ => None,
        }
    };
    let budget = vendor.budget();
    let mut out = HeaderMap::new();
    if let Some(b) = &budget {
        let remaining = emu.state.lock().expect("lock").budget_remaining;
        budget_headers(&mut out, b, remaining, 60);
    }
    match &fault {
        Some(Fault::Status(code, retry_after)) | Some(Fault::TokenStatus(code, retry_after)) => {
            log(*code);
            if let Some(r) = retry_after {
                out.insert("retry-after", r.to_string().parse().expect("header"));
            }
            return reply(*code, out, json!({"message": "emulated fault"}).to_string());
        }
        Some(Fault::RateLimitedUntilReset(reset_in)) => {
            log(429);
            let mut h = HeaderMap::new();
            if let Some(b) = &budget {
                budget_headers(&mut h, b, 0, *reset_in);
            }
            return reply(429, h, json!({"errorCode": "E0000047"}).to_string());
        }
        Some(Fault::EchoAuthorization(code)) => {
            log(*code);
            return reply(*code, out, echo_body(&authorization).to_string());
        }
        Some(Fault::TokenEcho(code)) => {
            log(*code);
            let secret = req.form().get("client_secret").cloned().unwrap_or_default();
            return reply(
                *code,
                HeaderMap::new(),
                json!({"error": secret, "error_description": format!("rejected {body}")})
                    .to_string(),
            );
        }
        Some(Fault::StatusBody(code, b)) => {
            log(*code);
            return reply(*code, out, b.to_string());
        }
        Some(Fault::Body(b)) => {
            log(200);
            return reply(200, out, b.to_string());
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    if is_token {
        let answer = vendor.token(&req, &mut emu.state.lock().expect("lock"));
        if let Some((status, v)) = answer {
            log(status);
            return reply(status, HeaderMap::new(), v.to_string());
        }
    }
    let latency = emu.state.lock().expect("lock").latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let authorized = vendor.authorized(&req, &emu.state.lock().expect("lock"));
    if !authorized {
        let (status, v) = vendor.unauthorized();
        log(status);
        return reply(status, HeaderMap::new(), v.to_string());
    }
    let page = vendor.page(&req, &emu.state.lock().expect("lock"));
    let Page { body, mut link } = match page {
        Ok(page) => page,
        Err((status, message)) => {
            log(status);
            return reply(
                status,
                HeaderMap::new(),
                json!({"error": {"message": message}}).to_string(),
            );
        }
    };
    let mut text = match body {
        Body::Records(records) if !matches!(fault, Some(Fault::EchoInRecord)) => {
            format!("[{}]", records.join(","))
        }
        body => {
            let mut body = match body {
                Body::Json(v) => v,
                Body::Records(records) => records
                    .iter()
                    .map(|r| serde_json::from_str::<Value>(r).expect("a record written here"))
                    .collect(),
            };
            if let Some(Fault::EchoInRecord) = &fault {
                if let Some(record) = records_mut(&mut body).and_then(|r| r.first_mut()) {
                    record["debugContext"] = json!({"echo": authorization, "echo_b64": echo_body(&authorization)["b64"]});
                }
            }
            body.to_string()
        }
    };
    if let (Some(Fault::EchoInLink), Some(l)) = (&fault, &link) {
        let echo = serde_urlencoded::to_string([("echo", &authorization)]).unwrap_or_default();
        link = Some(l.replacen(">; rel=\"next\"", &format!("&{echo}>; rel=\"next\""), 1));
    }
    if let Some(l) = link {
        out.insert("link", l.parse().expect("header"));
    }
    if let (Some(Fault::BudgetSpent(reset_in)), Some(b)) = (&fault, &budget) {
        budget_headers(&mut out, b, 0, *reset_in);
    }
    if let Some(Fault::Truncated) = fault {
        text.truncate(text.len() / 2);
    }
    log(200);
    reply(200, out, text)
}

/// Micros as RFC 3339 with milliseconds, as most vendors write them.
pub fn rfc3339_millis(micros: i64) -> String {
    chrono::DateTime::from_timestamp_millis(micros / 1000)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A `<url>; rel="next"` link to `base` + `path` with this query.
pub fn next_link(base: &str, path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(&format!("{base}{path}")).expect("url");
    url.query_pairs_mut().extend_pairs(pairs);
    format!("<{url}>; rel=\"next\"")
}

/// A token request must be a form POST.
pub fn token_form(req: &Request) -> Result<HashMap<String, String>, (u16, Value)> {
    let form_type = req.header("content-type").unwrap_or("");
    if req.method != Method::POST || !form_type.starts_with("application/x-www-form-urlencoded") {
        return Err((400, json!({"error": "invalid_request"})));
    }
    Ok(req.form())
}

/// The OAuth2 client-credentials grant: the emulator's client id and secret in the form, and
/// whatever else the vendor asks for (`extra_ok`: its scope or audience).
pub fn client_credentials(
    req: &Request,
    state: &mut EmuState,
    extra_ok: impl Fn(&HashMap<String, String>, &EmuState) -> bool,
) -> (u16, Value) {
    let form = match token_form(req) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (400, json!({"error": "unsupported_grant_type"}));
    }
    if !extra_ok(&form, state) {
        return (400, json!({"error": "invalid_scope"}));
    }
    if form.get("client_id") != Some(&state.client_id)
        || form.get("client_secret") != Some(&state.secret)
    {
        return (
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
        );
    }
    let token = state.issue_token();
    (
        200,
        json!({"token_type": "Bearer", "expires_in": state.token_lifetime, "ext_expires_in": state.token_lifetime, "access_token": token}),
    )
}

/// A stream in arrival order (a cursor naming the last event handed out): `n` events after
/// `after` stamped at or after `since`, led by the one at `after` again when pages repeat and
/// there is something new; with the last seq handed out and whether more wait.
pub fn stream_page(
    state: &EmuState,
    after: u64,
    since: i64,
    n: usize,
) -> (Vec<&EmuEvent>, u64, bool) {
    let matching: Vec<&EmuEvent> = state
        .events
        .iter()
        .filter(|e| e.seq > after && e.time >= since)
        .collect();
    let mut page: Vec<&EmuEvent> = matching.iter().take(n).copied().collect();
    if state.repeat_across_pages && !page.is_empty() {
        if let Some(same) = state.events.iter().find(|e| e.seq == after) {
            page.insert(0, same);
            page.truncate(n);
        }
    }
    let last = page.last().map(|e| e.seq).unwrap_or(after).max(after);
    let more = matching.iter().any(|e| e.seq > last);
    (page, last, more)
}

/// The records of these events.
pub fn records(events: &[&EmuEvent]) -> Vec<Value> {
    events.iter().map(|e| e.record.clone()).collect()
}
