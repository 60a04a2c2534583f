//! Loopback emulators of the vendors' audit-log APIs: real pagination, real headers, and faults
//! on demand (429 with/without Retry-After, 5xx, slow answers, truncated JSON, spent budgets)
//!
//! - GitHub: newest first, `phrase=created:>=<date>`, `per_page`, Link `rel="next"` (`after=`)
//! - Okta: polling mode — persistence order, `since` then `after`, a next link on every page
//! - Slack: newest first, `oldest` (epoch s), `limit`, `response_metadata.next_cursor`

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Github,
    Okta,
    Slack,
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
    pub seq: u64,
    pub time: i64,
    pub id: String,
    pub record: Value,
}

#[derive(Debug, Clone)]
pub struct Req {
    pub at: Instant,
    pub query: String,
    pub user_agent: String,
    pub authorization: String,
    pub status: u16,
}

pub struct EmuState {
    pub vendor: Vendor,
    pub token: String,
    pub events: Vec<EmuEvent>,
    pub faults: VecDeque<Fault>,
    pub requests: Vec<Req>,
    /// Requests received, counted on arrival (an answer the client abandoned is counted too).
    pub started: usize,
    /// Most records per page, whatever the client asks.
    pub page_size: usize,
    /// Each page repeats the last record of the page before (a duplicate across pages).
    pub repeat_across_pages: bool,
    next_seq: u64,
    /// Distinguishes this emulator's ids from another's in the same process.
    prefix: u64,
}

static EMULATORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Clone)]
pub struct Emulator {
    pub state: Arc<Mutex<EmuState>>,
    pub url: String,
}

const OKTA_TEMPLATE: &str = include_str!("../../fixtures/okta/logs/page.json");
const SLACK_TEMPLATE: &str = include_str!("../../fixtures/slack/logs/page.json");

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Emulator {
    pub async fn start(vendor: Vendor, token: &str, page_size: usize) -> Emulator {
        let state = Arc::new(Mutex::new(EmuState {
            vendor,
            token: token.to_string(),
            events: Vec::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            started: 0,
            page_size,
            repeat_across_pages: false,
            next_seq: 0,
            prefix: EMULATORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let app = Router::new()
            .fallback(handle)
            .with_state((state.clone(), url.clone()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Emulator { state, url }
    }

    /// Adds events at these times (micros; truncated to the vendor's precision); returns ids.
    pub fn add_events(&self, times: &[i64]) -> Vec<String> {
        let mut s = self.state.lock().expect("lock");
        let mut ids = Vec::new();
        for &t in times {
            s.next_seq += 1;
            let seq = s.next_seq;
            let (time, id, record) = make_record(s.vendor, s.prefix, seq, t);
            ids.push(id.clone());
            s.events.push(EmuEvent {
                seq,
                time,
                id,
                record,
            });
        }
        ids
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

    pub fn fault(&self, f: Fault) {
        self.state.lock().expect("lock").faults.push_back(f);
    }

    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().expect("lock").requests.clone()
    }

    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        self.state
            .lock()
            .expect("lock")
            .events
            .iter()
            .map(|e| e.id.clone())
            .collect()
    }
}

fn make_record(vendor: Vendor, prefix: u64, seq: u64, t: i64) -> (i64, String, Value) {
    let actions_gh = [
        "repo.create",
        "org.add_member",
        "team.add_member",
        "repo.destroy",
        "git.clone",
    ];
    let actions_okta = [
        "user.session.start",
        "user.lifecycle.create",
        "group.user_membership.add",
        "user.session.end",
    ];
    let actions_slack = [
        "user_login",
        "user_created",
        "file_downloaded",
        "channel_created",
    ];
    match vendor {
        Vendor::Github => {
            let ms = t / 1000;
            let id = format!("gh-doc-{prefix}-{seq:06}");
            let record = json!({
                "@timestamp": ms,
                "action": actions_gh[seq as usize % actions_gh.len()],
                "actor": "octocat",
                "created_at": ms,
                "_document_id": id,
                "org": "octo-corp",
                "user": "monalisa",
            });
            (ms * 1000, id, record)
        }
        Vendor::Okta => {
            let ms = t / 1000;
            let template: Vec<Value> = serde_json::from_str(OKTA_TEMPLATE).expect("fixture");
            let mut record = template[0].clone();
            let id = format!("okta-{prefix}-{seq:06}-598c-11ef-8478-2b7584bf8d5a");
            let published = chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            record["uuid"] = json!(id);
            record["published"] = json!(published);
            record["eventType"] = json!(actions_okta[seq as usize % actions_okta.len()]);
            (ms * 1000, id, record)
        }
        Vendor::Slack => {
            let secs = t / 1_000_000;
            let template: Value = serde_json::from_str(SLACK_TEMPLATE).expect("fixture");
            let mut record = template["entries"][0].clone();
            let id = format!("slack-{prefix}-{seq:06}");
            record["id"] = json!(id);
            record["date_create"] = json!(secs);
            record["action"] = json!(actions_slack[seq as usize % actions_slack.len()]);
            (secs * 1_000_000, id, record)
        }
    }
}

type Shared = (Arc<Mutex<EmuState>>, String);

fn budget_headers(h: &mut HeaderMap, remaining: u64, reset_in: u64) {
    let reset = (now_micros() / 1_000_000) as u64 + reset_in;
    for (r, s) in [
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("x-rate-limit-remaining", "x-rate-limit-reset"),
    ] {
        h.insert(r, remaining.to_string().parse().expect("header"));
        h.insert(s, reset.to_string().parse().expect("header"));
    }
}

async fn handle(
    State((state, base)): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (fault, vendor, token) = {
        let mut s = state.lock().expect("lock");
        s.started += 1;
        (s.faults.pop_front(), s.vendor, s.token.clone())
    };
    let log = |status: u16| {
        let mut s = state.lock().expect("lock");
        s.requests.push(Req {
            at: Instant::now(),
            query: uri.query().unwrap_or("").to_string(),
            user_agent: headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            status,
        });
    };
    let mut out_headers = HeaderMap::new();
    budget_headers(&mut out_headers, 1000, 60);
    let received = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match &fault {
        Some(Fault::EchoAuthorization(code)) => {
            log(*code);
            let status = StatusCode::from_u16(*code).expect("status");
            return (status, out_headers, echo_body(&received).to_string()).into_response();
        }
        Some(Fault::Status(code, retry_after)) => {
            log(*code);
            let mut h = out_headers;
            if let Some(r) = retry_after {
                h.insert("retry-after", r.to_string().parse().expect("header"));
            }
            let status = StatusCode::from_u16(*code).expect("status");
            return (status, h, json!({"message": "emulated fault"}).to_string()).into_response();
        }
        Some(Fault::RateLimitedUntilReset(reset_in)) => {
            log(429);
            let mut h = HeaderMap::new();
            budget_headers(&mut h, 0, *reset_in);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                h,
                json!({"errorCode": "E0000047"}).to_string(),
            )
                .into_response();
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(*d).await,
        Some(Fault::StatusBody(code, body)) => {
            log(*code);
            let status = StatusCode::from_u16(*code).expect("status");
            return (status, out_headers, body.to_string()).into_response();
        }
        Some(Fault::Body(body)) => {
            log(200);
            return (StatusCode::OK, out_headers, body.to_string()).into_response();
        }
        _ => {}
    }
    let expected = match vendor {
        Vendor::Okta => format!("SSWS {token}"),
        _ => format!("Bearer {token}"),
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        if vendor == Vendor::Slack {
            // Slack's Web API answers 200 with an error code in the body
            log(200);
            return (
                StatusCode::OK,
                json!({"ok": false, "error": "invalid_auth"}).to_string(),
            )
                .into_response();
        }
        log(401);
        return (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials"}).to_string(),
        )
            .into_response();
    }
    let (mut body, mut link) = {
        let s = state.lock().expect("lock");
        match vendor {
            Vendor::Github => github_page(&s, &q, &base, uri.path()),
            Vendor::Okta => okta_page(&s, &q, &base),
            Vendor::Slack => slack_page(&s, &q),
        }
    };
    if let Some(Fault::EchoInRecord) = &fault {
        let first = match &mut body {
            Value::Array(items) => items.first_mut(),
            other => other["entries"].as_array_mut().and_then(|e| e.first_mut()),
        };
        if let Some(record) = first {
            record["debugContext"] =
                json!({"echo": received, "echo_b64": echo_body(&received)["b64"]});
        }
    }
    if let (Some(Fault::EchoInLink), Some(l)) = (&fault, &link) {
        let echo = serde_urlencoded::to_string([("echo", &received)]).unwrap_or_default();
        link = Some(l.replacen(">; rel=\"next\"", &format!("&{echo}>; rel=\"next\""), 1));
    }
    if let Some(l) = link {
        out_headers.insert("link", l.parse().expect("header"));
    }
    if let Some(Fault::BudgetSpent(reset_in)) = &fault {
        budget_headers(&mut out_headers, 0, *reset_in);
    }
    let mut text = body.to_string();
    if let Some(Fault::Truncated) = fault {
        text.truncate(text.len() / 2);
    }
    log(200);
    out_headers.insert("content-type", "application/json".parse().expect("header"));
    (StatusCode::OK, out_headers, text).into_response()
}

fn page_size(s: &EmuState, q: &HashMap<String, String>, param: &str) -> usize {
    q.get(param)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(s.page_size)
        .min(s.page_size)
        .max(1)
}

fn github_page(
    s: &EmuState,
    q: &HashMap<String, String>,
    base: &str,
    path: &str,
) -> (Value, Option<String>) {
    let since = q
        .get("phrase")
        .and_then(|p| p.strip_prefix("created:>="))
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_micros()
        })
        .unwrap_or(i64::MIN);
    let mut matching: Vec<&EmuEvent> = s.events.iter().filter(|e| e.time >= since).collect();
    matching.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
    let offset: usize = q
        .get("after")
        .and_then(|a| a.strip_prefix('o'))
        .and_then(|a| a.parse::<usize>().ok())
        .map(|o| {
            if s.repeat_across_pages {
                o.saturating_sub(1)
            } else {
                o
            }
        })
        .unwrap_or(0);
    let n = page_size(s, q, "per_page");
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(n)
        .map(|e| e.record.clone())
        .collect();
    let next = (offset + page.len() < matching.len()).then(|| {
        let mut url = reqwest::Url::parse(&format!("{base}{path}")).expect("url");
        url.query_pairs_mut()
            .append_pair("phrase", q.get("phrase").map(String::as_str).unwrap_or(""))
            .append_pair("per_page", &n.to_string())
            .append_pair("after", &format!("o{}", offset + page.len()))
            .append_pair("before", "");
        format!("<{url}>; rel=\"next\"")
    });
    (Value::Array(page), next)
}

fn okta_page(s: &EmuState, q: &HashMap<String, String>, base: &str) -> (Value, Option<String>) {
    let since = q
        .get("since")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_micros())
        .unwrap_or(i64::MIN);
    let after: u64 = q
        .get("after")
        .and_then(|a| a.strip_prefix('s'))
        .and_then(|a| a.parse::<u64>().ok())
        .map(|a| {
            if s.repeat_across_pages {
                a.saturating_sub(1)
            } else {
                a
            }
        })
        .unwrap_or(0);
    let n = page_size(s, q, "limit");
    // polling mode: persistence (insertion) order, so late events still come after `after`
    let page: Vec<&EmuEvent> = s
        .events
        .iter()
        .filter(|e| e.seq > after && e.time >= since)
        .take(n)
        .collect();
    let last = page.last().map(|e| e.seq).unwrap_or(after);
    let mut next = reqwest::Url::parse(&format!("{base}/api/v1/logs")).expect("url");
    next.query_pairs_mut()
        .append_pair("limit", &n.to_string())
        .append_pair("sortOrder", "ASCENDING")
        .append_pair("after", &format!("s{last}"));
    if let Some(since) = q.get("since") {
        next.query_pairs_mut().append_pair("since", since);
    }
    let link = format!("<{base}/api/v1/logs?self=1>; rel=\"self\", <{next}>; rel=\"next\"");
    (
        Value::Array(page.iter().map(|e| e.record.clone()).collect()),
        Some(link),
    )
}

fn slack_page(s: &EmuState, q: &HashMap<String, String>) -> (Value, Option<String>) {
    let oldest = q
        .get("oldest")
        .and_then(|o| o.parse::<i64>().ok())
        .map(|o| o * 1_000_000)
        .unwrap_or(i64::MIN);
    let mut matching: Vec<&EmuEvent> = s.events.iter().filter(|e| e.time >= oldest).collect();
    matching.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
    let offset: usize = q
        .get("cursor")
        .and_then(|c| c.strip_prefix('c'))
        .and_then(|c| c.parse::<usize>().ok())
        .map(|o| {
            if s.repeat_across_pages {
                o.saturating_sub(1)
            } else {
                o
            }
        })
        .unwrap_or(0);
    let n = page_size(s, q, "limit");
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(n)
        .map(|e| e.record.clone())
        .collect();
    let next = if offset + page.len() < matching.len() {
        format!("c{}", offset + page.len())
    } else {
        String::new()
    };
    (
        json!({"ok": true, "entries": page, "response_metadata": {"next_cursor": next}}),
        None,
    )
}
