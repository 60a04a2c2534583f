//! Loopback emulators for the connector catalogue: each serves a vendor's audit-log endpoint
//! with its real pagination and cursor parameters, its auth (including an OAuth2 token
//! endpoint), and faults on demand
//!
//! - Graph (`entra_audits`, `entra_signins`): `POST /{tenant}/oauth2/v2.0/token` (client
//!   credentials, form body), `GET /v1.0/auditLogs/{directoryAudits,signIns}` with
//!   `$filter=<field> ge <t>`, `$top`, newest first, absolute `@odata.nextLink` with `$skiptoken`
//! - Auth0: `POST /oauth/token` (client credentials with `audience`), `GET /api/v2/logs`:
//!   `from=<log_id>&take=n` in log_id (arrival) order with `Link rel="next"` (the same URL on an
//!   empty page), or a search (`q=date:[t TO *]`, `sort=date:1`, `per_page`); x-ratelimit-*
//! - GitLab: `PRIVATE-TOKEN`, `/api/v4/groups/:id/audit_events` or `/api/v4/audit_events`,
//!   keyset (`pagination=keyset&order_by=id&sort=desc`), `created_after`, `Link rel="next"`
//! - 1Password: `POST /api/v1/auditevents` with `{limit, start_time}` or `{cursor}`, answering
//!   `{cursor, has_more, items}` in arrival order; the cursor is durable
//! - Jira: basic auth, `offset`/`limit`/`from`, newest first, `{offset, limit, total, records}`
//! - Cloudflare: bearer, `since`, `direction=asc`, `page`/`per_page` until `result` is empty
//! - Google: `POST /token` with an RS256 JWT assertion (verified with the test public key),
//!   activities.list with `startTime`, `maxResults`, `pageToken`/`nextPageToken`, newest first
//! - Atlassian Admin: `GET /admin/v1/orgs/{org}/events-stream`, `from` (epoch ms), `limit`,
//!   `sortOrder=asc` by processing (arrival) order, `meta.next` cursor also on the last page

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatVendor {
    EntraAudits,
    EntraSignIns,
    Auth0,
    /// GitLab; static token in `PRIVATE-TOKEN` (the emulator's `client_secret`)
    Gitlab,
    /// 1Password audit events; static bearer token (the emulator's `client_secret`)
    OnePassword,
    /// Jira; basic auth `client_id:client_secret`
    Jira,
    /// Cloudflare account audit logs v1; static bearer token (`client_secret`)
    Cloudflare,
    /// Google Workspace reports; JWT bearer grant checked against the test key pair, `client_id`
    /// is the service account email
    Google,
    /// Atlassian organization events-stream; static bearer API key (`client_secret`)
    AtlassianAdmin,
}

impl CatVendor {
    pub fn connector(self) -> &'static str {
        match self {
            CatVendor::EntraAudits => "entra_audits",
            CatVendor::EntraSignIns => "entra_signins",
            CatVendor::Auth0 => "auth0",
            CatVendor::Gitlab => "gitlab",
            CatVendor::OnePassword => "onepassword_audit",
            CatVendor::Jira => "jira",
            CatVendor::Cloudflare => "cloudflare",
            CatVendor::Google => "google_workspace",
            CatVendor::AtlassianAdmin => "atlassian_admin",
        }
    }
}

#[derive(Debug, Clone)]
pub enum CatFault {
    /// Answer this status, with `Retry-After` seconds if given.
    Status(u16, Option<u64>),
    /// Cut the normal body in half.
    Truncated,
    /// The token endpoint answers this status (OAuth2 vendors).
    TokenStatus(u16, Option<u64>),
    /// The API answers this status with a body echoing the `Authorization` header received.
    EchoStatus(u16),
    /// The token endpoint answers this status with the client secret received as its OAuth
    /// `error` code and the whole form echoed in `error_description`.
    TokenEcho(u16),
}

#[derive(Debug, Clone)]
pub struct CatEvent {
    pub seq: u64,
    pub time: i64,
    pub id: String,
    pub record: Value,
}

#[derive(Debug, Clone)]
pub struct CatReq {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: String,
    pub body: String,
    pub status: u16,
}

pub struct CatState {
    pub vendor: CatVendor,
    pub client_id: String,
    pub client_secret: String,
    /// Access tokens handed out and still accepted, with when they expire.
    pub valid_tokens: HashMap<String, Instant>,
    pub issued: u64,
    /// `expires_in` of issued tokens, seconds.
    pub token_lifetime: u64,
    /// Prefix of issued access tokens (leak tests plant a recognisable one).
    pub token_prefix: String,
    pub events: Vec<CatEvent>,
    pub faults: VecDeque<CatFault>,
    pub requests: Vec<CatReq>,
    pub page_size: usize,
    pub repeat_across_pages: bool,
    next_seq: u64,
    prefix: u64,
}

static EMULATORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Clone)]
pub struct CatEmu {
    pub state: Arc<Mutex<CatState>>,
    pub url: String,
}

const GRAPH_AUDIT: &str = include_str!("../../fixtures/entra_audits/directory_audits/page.json");
const GRAPH_SIGNIN: &str = include_str!("../../fixtures/entra_signins/sign_ins/page.json");
const AUTH0_PAGE: &str = include_str!("../../fixtures/auth0/logs/page.json");
const ONEPASSWORD_PAGE: &str =
    include_str!("../../fixtures/onepassword_audit/auditevents/page.json");
const JIRA_PAGE: &str = include_str!("../../fixtures/jira/auditing_record/page.json");
const CLOUDFLARE_PAGE: &str = include_str!("../../fixtures/cloudflare/audit_logs/page.json");
const GOOGLE_PAGE: &str = include_str!("../../fixtures/google_workspace/activities/page.json");
pub const GOOGLE_TEST_KEY: &str = include_str!("../keys/test-only-service-account.pem");
const GOOGLE_TEST_PUBLIC_KEY: &str = include_str!("../keys/test-only-service-account.pub.pem");
const ATLASSIAN_PAGE: &str = include_str!("../../fixtures/atlassian_admin/events_stream/page.json");
const GITLAB_PAGE: &str = include_str!("../../fixtures/gitlab/instance_audit_events/page.json");

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl CatEmu {
    pub async fn start(
        vendor: CatVendor,
        client_id: &str,
        secret: &str,
        page_size: usize,
    ) -> CatEmu {
        let state = Arc::new(Mutex::new(CatState {
            vendor,
            client_id: client_id.to_string(),
            client_secret: secret.to_string(),
            valid_tokens: HashMap::new(),
            issued: 0,
            token_lifetime: 3599,
            token_prefix: "emu-access-token".into(),
            events: Vec::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            page_size,
            repeat_across_pages: false,
            next_seq: 0,
            prefix: EMULATORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new()
            .fallback(handle)
            .with_state((state.clone(), url.clone()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CatEmu { state, url }
    }

    /// The integration config that points the connector at this emulator.
    pub fn config(&self) -> Value {
        match self.state.lock().expect("lock").vendor {
            CatVendor::EntraAudits | CatVendor::EntraSignIns => json!({
                "base_url": format!("{}/v1.0", self.url),
                "login_url": self.url,
                "tenant_id": "contoso.onmicrosoft.com",
            }),
            CatVendor::Auth0 => json!({"base_url": self.url}),
            CatVendor::Gitlab => json!({"base_url": self.url, "group": "60"}),
            CatVendor::OnePassword | CatVendor::Jira => json!({"base_url": self.url}),
            CatVendor::Cloudflare => json!({"base_url": self.url, "account_id": "acc123"}),
            CatVendor::AtlassianAdmin => json!({"base_url": self.url, "org_id": "org-1"}),
            CatVendor::Google => json!({"base_url": self.url,
                "token_url": format!("{}/token", self.url), "admin_email": "admin@example.com"}),
        }
    }

    pub fn add_events(&self, times: &[i64]) -> Vec<String> {
        let mut s = self.state.lock().expect("lock");
        let mut ids = Vec::new();
        for &t in times {
            s.next_seq += 1;
            let seq = s.next_seq;
            let (time, id, record) = make_record(s.vendor, s.prefix, seq, t);
            ids.push(id.clone());
            s.events.push(CatEvent {
                seq,
                time,
                id,
                record,
            });
        }
        ids
    }

    pub fn add_recent(&self, n: usize, span_secs: i64) -> Vec<String> {
        let now = now_micros();
        let times: Vec<i64> = (0..n)
            .map(|i| {
                now - span_secs * 1_000_000 + (i as i64 * span_secs * 1_000_000) / n.max(1) as i64
            })
            .collect();
        self.add_events(&times)
    }

    pub fn fault(&self, f: CatFault) {
        self.state.lock().expect("lock").faults.push_back(f);
    }

    pub fn requests(&self) -> Vec<CatReq> {
        self.state.lock().expect("lock").requests.clone()
    }

    /// Requests to the token endpoint.
    pub fn token_requests(&self) -> Vec<CatReq> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/token"))
            .collect()
    }

    /// Requests to the audit-log endpoint.
    pub fn api_requests(&self) -> Vec<CatReq> {
        self.requests()
            .into_iter()
            .filter(|r| !r.path.ends_with("/token"))
            .collect()
    }

    /// The vendor stops accepting every access token issued so far.
    pub fn revoke_tokens(&self) {
        self.state.lock().expect("lock").valid_tokens.clear();
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

/// Graph writes 7 fractional digits (100 ns ticks).
fn graph_time(t: i64, seq: u64) -> String {
    let dt = chrono::DateTime::from_timestamp_micros(t).expect("time");
    format!(
        "{}.{:06}{}Z",
        dt.format("%Y-%m-%dT%H:%M:%S"),
        t.rem_euclid(1_000_000),
        seq % 10
    )
}

fn make_record(vendor: CatVendor, prefix: u64, seq: u64, t: i64) -> (i64, String, Value) {
    match vendor {
        CatVendor::EntraAudits => {
            let page: Value = serde_json::from_str(GRAPH_AUDIT).expect("fixture");
            let mut r = page["value"][0].clone();
            let id = format!("Directory_{prefix}_{seq:06}");
            let activities = [
                "Add member to group",
                "Add user",
                "Update user",
                "Delete user",
            ];
            r["id"] = json!(id);
            r["activityDateTime"] = json!(graph_time(t, seq));
            r["activityDisplayName"] = json!(activities[seq as usize % activities.len()]);
            (t, id, r)
        }
        CatVendor::EntraSignIns => {
            let page: Value = serde_json::from_str(GRAPH_SIGNIN).expect("fixture");
            let mut r = page["value"][0].clone();
            let id = format!("{prefix:08x}-{seq:04x}-4ee5-be62-ff5a759b0100");
            r["id"] = json!(id);
            r["createdDateTime"] = json!(graph_time(t, seq));
            (t, id, r)
        }
        CatVendor::Auth0 => {
            let page: Vec<Value> = serde_json::from_str(AUTH0_PAGE).expect("fixture");
            let mut r = page[seq as usize % page.len()].clone();
            let ms = t / 1000;
            // fixed width: string order is arrival order, as Auth0's log ids
            let id = format!("900{prefix:020}{seq:012}");
            r["_id"] = json!(id);
            r["log_id"] = json!(id);
            r["date"] = json!(chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            (ms * 1000, id, r)
        }
        CatVendor::Gitlab => {
            let page: Vec<Value> = serde_json::from_str(GITLAB_PAGE).expect("fixture");
            let mut r = page[seq as usize % page.len()].clone();
            let ms = t / 1000;
            // ids are integers, increasing with arrival
            let id = prefix * 1_000_000 + seq;
            r["id"] = json!(id);
            r["created_at"] = json!(chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            (ms * 1000, id.to_string(), r)
        }
        CatVendor::OnePassword => {
            let page: Value = serde_json::from_str(ONEPASSWORD_PAGE).expect("fixture");
            let mut r = page["items"][0].clone();
            let secs = t / 1_000_000;
            let id = format!("OP{prefix:06}{seq:018}");
            r["uuid"] = json!(id);
            // RFC 3339 with an offset, as the API writes it
            let offset = chrono::FixedOffset::west_opt(3 * 3600).expect("offset");
            r["timestamp"] = json!(chrono::DateTime::from_timestamp(secs, 0)
                .expect("time")
                .with_timezone(&offset)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
            (secs * 1_000_000, id, r)
        }
        CatVendor::Jira => {
            let page: Value = serde_json::from_str(JIRA_PAGE).expect("fixture");
            let mut r = page["records"][0].clone();
            let ms = t / 1000;
            let id = prefix * 1_000_000 + seq;
            r["id"] = json!(id);
            r["created"] = json!(chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
                .to_string());
            (ms * 1000, id.to_string(), r)
        }
        CatVendor::AtlassianAdmin => {
            let page: Value = serde_json::from_str(ATLASSIAN_PAGE).expect("fixture");
            let mut r = page["data"][0].clone();
            let ms = t / 1000;
            let id = format!("ev-{prefix}-{seq:08}");
            r["id"] = json!(id);
            r["attributes"]["time"] = json!(chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            (ms * 1000, id, r)
        }
        CatVendor::Google => {
            let page: Value = serde_json::from_str(GOOGLE_PAGE).expect("fixture");
            let mut r = page["items"][(seq % 3) as usize].clone();
            let ms = t / 1000;
            let time = chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let qualifier = format!("{}", prefix * 1_000_000 + seq);
            r["id"]["time"] = json!(time);
            r["id"]["uniqueQualifier"] = json!(qualifier);
            r["id"]["applicationName"] = json!("admin");
            let id = format!("admin/{time}/{qualifier}");
            (ms * 1000, id, r)
        }
        CatVendor::Cloudflare => {
            let page: Value = serde_json::from_str(CLOUDFLARE_PAGE).expect("fixture");
            let mut r = page["result"][0].clone();
            let secs = t / 1_000_000;
            let id = format!("d5b0f326-{prefix:04x}-4452-8858-{seq:012x}");
            r["id"] = json!(id);
            r["when"] = json!(chrono::DateTime::from_timestamp(secs, 0)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            (secs * 1_000_000, id, r)
        }
    }
}

type Shared = (Arc<Mutex<CatState>>, String);

fn reply(status: u16, headers: HeaderMap, body: String) -> Response {
    let mut h = headers;
    h.insert("content-type", "application/json".parse().expect("header"));
    (StatusCode::from_u16(status).expect("status"), h, body).into_response()
}

async fn handle(
    State((state, base)): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let log = |status: u16| {
        state.lock().expect("lock").requests.push(CatReq {
            at: Instant::now(),
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            authorization: authorization.clone(),
            body: body.clone(),
            status,
        });
    };
    let is_token = uri.path().ends_with("/token");
    // faults apply to the endpoint they name
    let fault = {
        let mut s = state.lock().expect("lock");
        let applies = match s.faults.front() {
            Some(CatFault::TokenStatus(..) | CatFault::TokenEcho(_)) => is_token,
            Some(_) => !is_token,
            None => false,
        };
        if applies {
            s.faults.pop_front()
        } else {
            None
        }
    };
    match &fault {
        Some(CatFault::Status(code, retry)) | Some(CatFault::TokenStatus(code, retry)) => {
            log(*code);
            let mut h = HeaderMap::new();
            if let Some(r) = retry {
                h.insert("retry-after", r.to_string().parse().expect("header"));
            }
            return reply(
                *code,
                h,
                json!({"error": {"code": "TooManyRequests", "message": "emulated fault"}})
                    .to_string(),
            );
        }
        Some(CatFault::EchoStatus(code)) => {
            log(*code);
            let echo = crate::emulator::echo_body(&authorization);
            return reply(*code, HeaderMap::new(), echo.to_string());
        }
        Some(CatFault::TokenEcho(code)) => {
            log(*code);
            let form: HashMap<String, String> =
                serde_urlencoded::from_str(&body).unwrap_or_default();
            let secret = form.get("client_secret").cloned().unwrap_or_default();
            return reply(
                *code,
                HeaderMap::new(),
                json!({"error": secret, "error_description": format!("rejected {body}")})
                    .to_string(),
            );
        }
        _ => {}
    }
    if is_token {
        let (status, text) = token(&base, &state, &method, &headers, &body);
        log(status);
        return reply(status, HeaderMap::new(), text);
    }
    let bearer = authorization.strip_prefix("Bearer ").unwrap_or("");
    let valid = {
        let s = state.lock().expect("lock");
        match s.vendor {
            CatVendor::Gitlab => {
                headers.get("private-token").and_then(|v| v.to_str().ok())
                    == Some(s.client_secret.as_str())
            }
            CatVendor::OnePassword | CatVendor::Cloudflare | CatVendor::AtlassianAdmin => {
                bearer == s.client_secret
            }
            CatVendor::Jira => {
                use base64::Engine;
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", s.client_id, s.client_secret));
                authorization == format!("Basic {basic}")
            }
            _ => s
                .valid_tokens
                .get(bearer)
                .is_some_and(|expiry| Instant::now() < *expiry),
        }
    };
    if !valid {
        log(401);
        return reply(
            401,
            HeaderMap::new(),
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}}).to_string(),
        );
    }
    let q: HashMap<String, String> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let mut out_headers = HeaderMap::new();
    let page = {
        let s = state.lock().expect("lock");
        match s.vendor {
            CatVendor::EntraAudits | CatVendor::EntraSignIns => {
                graph_page(&s, &q, &base, uri.path())
            }
            CatVendor::Auth0 => auth0_page(&s, &q, &base, &mut out_headers),
            CatVendor::Gitlab => gitlab_page(&s, &q, &base, uri.path(), &mut out_headers),
            CatVendor::OnePassword => onepassword_page(&s, &method, uri.path(), &body),
            CatVendor::Jira => jira_page(&s, &q, uri.path()),
            CatVendor::Cloudflare => cloudflare_page(&s, &q, uri.path()),
            CatVendor::Google => google_page(&s, &q, uri.path()),
            CatVendor::AtlassianAdmin => atlassian_page(&s, &q, uri.path()),
        }
    };
    let mut text = match page {
        Ok(v) => v.to_string(),
        Err((status, message)) => {
            log(status);
            return reply(
                status,
                HeaderMap::new(),
                json!({"error": {"message": message}}).to_string(),
            );
        }
    };
    if let Some(CatFault::Truncated) = fault {
        text.truncate(text.len() / 2);
    }
    log(200);
    reply(200, out_headers, text)
}

/// The token endpoint: client credentials in the form body (or basic auth).
fn token(
    base: &str,
    state: &Mutex<CatState>,
    method: &Method,
    headers: &HeaderMap,
    body: &str,
) -> (u16, String) {
    let form: HashMap<String, String> = serde_urlencoded::from_str(body).unwrap_or_default();
    let form_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if method != Method::POST || !form_type.starts_with("application/x-www-form-urlencoded") {
        return (400, json!({"error": "invalid_request"}).to_string());
    }
    if state.lock().expect("lock").vendor == CatVendor::Google {
        return google_token(base, state, &form);
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (400, json!({"error": "unsupported_grant_type"}).to_string());
    }
    let mut s = state.lock().expect("lock");
    let scope_ok = match s.vendor {
        CatVendor::EntraAudits | CatVendor::EntraSignIns => {
            form.get("scope").map(String::as_str) == Some("https://graph.microsoft.com/.default")
        }
        CatVendor::Auth0 => form.get("audience") == Some(&format!("{base}/api/v2/")),
        CatVendor::Gitlab
        | CatVendor::OnePassword
        | CatVendor::Jira
        | CatVendor::Cloudflare
        | CatVendor::Google
        | CatVendor::AtlassianAdmin => false,
    };
    if !scope_ok {
        return (400, json!({"error": "invalid_scope"}).to_string());
    }
    if form.get("client_id") != Some(&s.client_id)
        || form.get("client_secret") != Some(&s.client_secret)
    {
        return (
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}).to_string(),
        );
    }
    s.issued += 1;
    let token = format!("{}-{}", s.token_prefix, s.issued);
    let expiry = Instant::now() + std::time::Duration::from_secs(s.token_lifetime);
    s.valid_tokens.insert(token.clone(), expiry);
    (
        200,
        json!({"token_type": "Bearer", "expires_in": s.token_lifetime, "ext_expires_in": s.token_lifetime, "access_token": token}).to_string(),
    )
}

fn graph_page(
    s: &CatState,
    q: &HashMap<String, String>,
    base: &str,
    path: &str,
) -> Result<Value, (u16, String)> {
    let field = match s.vendor {
        CatVendor::EntraAudits => "activityDateTime",
        _ => "createdDateTime",
    };
    let since = match q.get("$filter") {
        Some(f) => {
            let parts: Vec<&str> = f.split_whitespace().collect();
            match parts.as_slice() {
                [name, "ge", t] if *name == field => chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|_| (400, format!("bad datetime literal {t}")))?
                    .timestamp_micros(),
                _ => return Err((400, format!("unsupported $filter {f}"))),
            }
        }
        None => i64::MIN,
    };
    if s.vendor == CatVendor::EntraAudits
        && q.get("$orderby").map(String::as_str) != Some("activityDateTime desc")
    {
        return Err((
            400,
            "the emulator expects $orderby=activityDateTime desc".into(),
        ));
    }
    let mut matching: Vec<&CatEvent> = s.events.iter().filter(|e| e.time >= since).collect();
    matching.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
    let offset = q
        .get("$skiptoken")
        .and_then(|t| t.strip_prefix("o"))
        .and_then(|t| t.parse::<usize>().ok())
        .map(|o| {
            if s.repeat_across_pages {
                o.saturating_sub(1)
            } else {
                o
            }
        })
        .unwrap_or(0);
    let n = q
        .get("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(s.page_size)
        .min(s.page_size)
        .max(1);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(n)
        .map(|e| e.record.clone())
        .collect();
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#auditLogs"),
        "value": page,
    });
    if offset + page.len() < matching.len() {
        let mut next = reqwest::Url::parse(&format!("{base}{path}")).expect("url");
        next.query_pairs_mut()
            .append_pair("$top", &n.to_string())
            .append_pair("$skiptoken", &format!("o{}", offset + page.len()));
        if let Some(f) = q.get("$filter") {
            next.query_pairs_mut().append_pair("$filter", f);
        }
        if let Some(o) = q.get("$orderby") {
            next.query_pairs_mut().append_pair("$orderby", o);
        }
        body["@odata.nextLink"] = json!(next.to_string());
    }
    Ok(body)
}

fn auth0_page(
    s: &CatState,
    q: &HashMap<String, String>,
    base: &str,
    headers: &mut HeaderMap,
) -> Result<Value, (u16, String)> {
    let reset = now_micros() / 1_000_000 + 60;
    headers.insert("x-ratelimit-limit", "50".parse().expect("header"));
    headers.insert("x-ratelimit-remaining", "49".parse().expect("header"));
    headers.insert(
        "x-ratelimit-reset",
        reset.to_string().parse().expect("header"),
    );
    if let Some(from) = q.get("from") {
        // checkpoint: every other parameter but take is ignored
        let n = q
            .get("take")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(50);
        if n > 100 {
            return Err((400, "take must be at most 100".into()));
        }
        let n = n.min(s.page_size).max(1);
        let mut after: Vec<&CatEvent> = s.events.iter().filter(|e| e.id > *from).collect();
        after.sort_by(|a, b| a.id.cmp(&b.id));
        let mut page: Vec<&CatEvent> = after.into_iter().take(n).collect();
        if s.repeat_across_pages && !page.is_empty() {
            if let Some(same) = s.events.iter().find(|e| e.id == *from) {
                page.insert(0, same);
                page.truncate(n);
            }
        }
        let last = page.last().map(|e| e.id.clone()).unwrap_or(from.clone());
        let mut next = reqwest::Url::parse(&format!("{base}/api/v2/logs")).expect("url");
        next.query_pairs_mut()
            .append_pair("take", &q.get("take").cloned().unwrap_or("50".into()))
            .append_pair("from", &last);
        headers.insert(
            "link",
            format!("<{next}>; rel=\"next\"").parse().expect("header"),
        );
        return Ok(Value::Array(
            page.iter().map(|e| e.record.clone()).collect(),
        ));
    }
    // search: q=date:[<t> TO *], sort=date:1, per_page ≤ 100, page 0 (no Link)
    let since = match q.get("q") {
        Some(text) => {
            let inner = text
                .strip_prefix("date:[")
                .and_then(|r| r.strip_suffix(" TO *]"))
                .ok_or((400, format!("unsupported q {text}")))?;
            chrono::DateTime::parse_from_rfc3339(inner)
                .map_err(|_| (400, format!("bad date {inner}")))?
                .timestamp_micros()
        }
        None => i64::MIN,
    };
    if q.get("sort").map(String::as_str) != Some("date:1") {
        return Err((400, "the emulator expects sort=date:1".into()));
    }
    let n = q
        .get("per_page")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(50)
        .min(s.page_size)
        .max(1);
    let mut matching: Vec<&CatEvent> = s.events.iter().filter(|e| e.time >= since).collect();
    matching.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    Ok(Value::Array(
        matching.iter().take(n).map(|e| e.record.clone()).collect(),
    ))
}

fn gitlab_page(
    s: &CatState,
    q: &HashMap<String, String>,
    base: &str,
    path: &str,
    headers: &mut HeaderMap,
) -> Result<Value, (u16, String)> {
    if path != "/api/v4/audit_events" && path != "/api/v4/groups/60/audit_events" {
        return Err((404, format!("no route {path}")));
    }
    for (k, v) in [
        ("pagination", "keyset"),
        ("order_by", "id"),
        ("sort", "desc"),
    ] {
        if q.get(k).map(String::as_str) != Some(v) {
            return Err((400, format!("keyset needs {k}={v}")));
        }
    }
    let since = match q.get("created_after") {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| (400, format!("bad created_after {t}")))?
            .timestamp_micros(),
        None => i64::MIN,
    };
    let before: u64 = q
        .get("cursor")
        .and_then(|c| c.strip_prefix('k'))
        .and_then(|c| c.parse().ok())
        .map(|c: u64| if s.repeat_across_pages { c + 1 } else { c })
        .unwrap_or(u64::MAX);
    let n = q
        .get("per_page")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(20)
        .min(100)
        .min(s.page_size)
        .max(1);
    let mut matching: Vec<&CatEvent> = s
        .events
        .iter()
        .filter(|e| e.time >= since && e.id.parse::<u64>().unwrap_or(0) < before)
        .collect();
    matching.sort_by_key(|e| std::cmp::Reverse(e.id.parse::<u64>().unwrap_or(0)));
    let page: Vec<&CatEvent> = matching.iter().take(n).copied().collect();
    if matching.len() > page.len() {
        if let Some(last) = page.last() {
            let mut next = reqwest::Url::parse(&format!("{base}{path}")).expect("url");
            let mut pairs: Vec<(&String, &String)> =
                q.iter().filter(|(k, _)| k.as_str() != "cursor").collect();
            pairs.sort();
            next.query_pairs_mut()
                .extend_pairs(pairs)
                .append_pair("cursor", &format!("k{}", last.id));
            headers.insert(
                "link",
                format!("<{next}>; rel=\"next\"").parse().expect("header"),
            );
        }
    }
    headers.insert("ratelimit-remaining", "199".parse().expect("header"));
    let reset = now_micros() / 1_000_000 + 60;
    headers.insert(
        "ratelimit-reset",
        reset.to_string().parse().expect("header"),
    );
    Ok(Value::Array(
        page.iter().map(|e| e.record.clone()).collect(),
    ))
}

fn onepassword_page(
    s: &CatState,
    method: &Method,
    path: &str,
    body: &str,
) -> Result<Value, (u16, String)> {
    if method != Method::POST || path != "/api/v1/auditevents" {
        return Err((404, format!("no route {method} {path}")));
    }
    let req: Value = serde_json::from_str(body).map_err(|_| (400, "body is not JSON".into()))?;
    // the cursor names the last item handed out and the start time of the stream
    let (after, since, limit) = match req.get("cursor") {
        Some(c) => {
            let text = c.as_str().unwrap_or("");
            let (seq, since) = text
                .strip_prefix('c')
                .and_then(|r| r.split_once('_'))
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<i64>().ok()?)))
                .ok_or((400, format!("invalid cursor {text}")))?;
            if req.as_object().map(|o| o.len()) != Some(1) {
                return Err((400, "a cursor request has only the cursor".into()));
            }
            (seq, since, 1000)
        }
        None => {
            let limit = req["limit"].as_u64().unwrap_or(100) as usize;
            if !(1..=1000).contains(&limit) {
                return Err((400, "limit must be 1 to 1000".into()));
            }
            let since = match req.get("start_time").and_then(Value::as_str) {
                Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|_| (400, format!("bad start_time {t}")))?
                    .timestamp_micros(),
                None => i64::MIN,
            };
            (0, since, limit)
        }
    };
    let n = limit.min(s.page_size).max(1);
    let matching: Vec<&CatEvent> = s
        .events
        .iter()
        .filter(|e| e.seq > after && e.time >= since)
        .collect();
    let mut page: Vec<&CatEvent> = matching.iter().take(n).copied().collect();
    if s.repeat_across_pages && !page.is_empty() {
        if let Some(same) = s.events.iter().find(|e| e.seq == after) {
            page.insert(0, same);
            page.truncate(n);
        }
    }
    let last = page.last().map(|e| e.seq).unwrap_or(after).max(after);
    let has_more = matching.iter().any(|e| e.seq > last);
    Ok(json!({
        "cursor": format!("c{last}_{since}"),
        "has_more": has_more,
        "items": page.iter().map(|e| e.record.clone()).collect::<Vec<_>>(),
    }))
}

fn jira_page(
    s: &CatState,
    q: &HashMap<String, String>,
    path: &str,
) -> Result<Value, (u16, String)> {
    if path != "/rest/api/3/auditing/record" {
        return Err((404, format!("no route {path}")));
    }
    let since = match q.get("from") {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| (400, format!("bad from {t}")))?
            .timestamp_micros(),
        None => i64::MIN,
    };
    let offset: usize = q
        .get("offset")
        .and_then(|o| o.parse().ok())
        .map(|o: usize| {
            if s.repeat_across_pages {
                o.saturating_sub(1)
            } else {
                o
            }
        })
        .unwrap_or(0);
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(s.page_size)
        .max(1);
    let mut matching: Vec<&CatEvent> = s.events.iter().filter(|e| e.time >= since).collect();
    matching.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| e.record.clone())
        .collect();
    Ok(json!({"offset": offset, "limit": limit, "total": matching.len(), "records": page}))
}

fn cloudflare_page(
    s: &CatState,
    q: &HashMap<String, String>,
    path: &str,
) -> Result<Value, (u16, String)> {
    if path != "/client/v4/accounts/acc123/audit_logs" {
        return Err((404, format!("no route {path}")));
    }
    if q.get("direction").map(String::as_str) != Some("asc") {
        return Err((400, "the emulator expects direction=asc".into()));
    }
    let since = match q.get("since") {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| (400, format!("bad since {t}")))?
            .timestamp_micros(),
        None => i64::MIN,
    };
    let page_no: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page = q
        .get("per_page")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .min(s.page_size)
        .max(1);
    let mut matching: Vec<&CatEvent> = s.events.iter().filter(|e| e.time >= since).collect();
    matching.sort_by(|a, b| a.time.cmp(&b.time).then(a.seq.cmp(&b.seq)));
    let mut skip = (page_no - 1) * per_page;
    if s.repeat_across_pages {
        skip = skip.saturating_sub(1);
    }
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(per_page)
        .map(|e| e.record.clone())
        .collect();
    Ok(
        json!({"success": true, "errors": [], "messages": [], "result": page,
        "result_info": {"page": page_no, "per_page": per_page, "count": page.len(), "total_count": matching.len()}}),
    )
}

/// RFC 7523: the assertion must be an RS256 JWT signed by the service account's key, for the
/// token URL, with the delegated subject and the reports scope.
fn google_token(
    base: &str,
    state: &Mutex<CatState>,
    form: &HashMap<String, String>,
) -> (u16, String) {
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return (400, json!({"error": "unsupported_grant_type"}).to_string());
    }
    let mut s = state.lock().expect("lock");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(GOOGLE_TEST_PUBLIC_KEY.as_bytes())
        .expect("test public key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{base}/token")]);
    validation.set_issuer(&[s.client_id.clone()]);
    let claims =
        match jsonwebtoken::decode::<Value>(
            form.get("assertion").map(String::as_str).unwrap_or(""),
            &key,
            &validation,
        ) {
            Ok(d) => d.claims,
            Err(_) => return (
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
                    .to_string(),
            ),
        };
    if claims["sub"] != "admin@example.com"
        || claims["scope"] != "https://www.googleapis.com/auth/admin.reports.audit.readonly"
    {
        return (
            401,
            json!({"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve access tokens using this method."}).to_string(),
        );
    }
    s.issued += 1;
    let token = format!("{}-{}", s.token_prefix, s.issued);
    let expiry = Instant::now() + std::time::Duration::from_secs(s.token_lifetime);
    s.valid_tokens.insert(token.clone(), expiry);
    (
        200,
        json!({"access_token": token, "expires_in": s.token_lifetime, "token_type": "Bearer"})
            .to_string(),
    )
}

fn google_page(
    s: &CatState,
    q: &HashMap<String, String>,
    path: &str,
) -> Result<Value, (u16, String)> {
    if path != "/admin/reports/v1/activity/users/all/applications/admin" {
        return Err((404, format!("no route {path}")));
    }
    let since = match q.get("startTime") {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| (400, format!("bad startTime {t}")))?
            .timestamp_micros(),
        None => i64::MIN,
    };
    let n = q
        .get("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(s.page_size)
        .max(1);
    let offset: usize = q
        .get("pageToken")
        .and_then(|p| p.strip_prefix('p'))
        .and_then(|p| p.parse().ok())
        .map(|o: usize| {
            if s.repeat_across_pages {
                o.saturating_sub(1)
            } else {
                o
            }
        })
        .unwrap_or(0);
    let mut matching: Vec<&CatEvent> = s.events.iter().filter(|e| e.time >= since).collect();
    matching.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(n)
        .map(|e| e.record.clone())
        .collect();
    let mut body = json!({"kind": "admin#reports#activities", "items": page});
    if offset + n < matching.len() {
        body["nextPageToken"] = json!(format!("p{}", offset + n));
    }
    Ok(body)
}

fn atlassian_page(
    s: &CatState,
    q: &HashMap<String, String>,
    path: &str,
) -> Result<Value, (u16, String)> {
    if path != "/admin/v1/orgs/org-1/events-stream" {
        return Err((404, format!("no route {path}")));
    }
    if q.get("sortOrder").map(String::as_str) != Some("asc") {
        return Err((400, "the emulator expects sortOrder=asc".into()));
    }
    // the cursor names the last event handed out and the stream's start (like the real one,
    // it keeps the query it was made for)
    let (after, since) = match q.get("cursor") {
        Some(c) => c
            .strip_prefix('a')
            .and_then(|r| r.split_once('_'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<i64>().ok()?)))
            .ok_or((400, format!("invalid cursor {c}")))?,
        None => {
            let from = q
                .get("from")
                .map(|f| {
                    f.parse::<i64>()
                        .map_err(|_| (400, format!("from is epoch ms: {f}")))
                })
                .transpose()?
                .map(|ms| ms * 1000)
                .unwrap_or(i64::MIN);
            (0, from)
        }
    };
    let n = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .min(s.page_size)
        .max(1);
    let matching: Vec<&CatEvent> = s
        .events
        .iter()
        .filter(|e| e.seq > after && e.time >= since)
        .collect();
    let mut page: Vec<&CatEvent> = matching.iter().take(n).copied().collect();
    if s.repeat_across_pages && !page.is_empty() {
        if let Some(same) = s.events.iter().find(|e| e.seq == after) {
            page.insert(0, same);
            page.truncate(n);
        }
    }
    let last = page.last().map(|e| e.seq).unwrap_or(after).max(after);
    Ok(json!({
        "data": page.iter().map(|e| e.record.clone()).collect::<Vec<_>>(),
        "meta": {"next": format!("a{last}_{since}"), "page_size": page.len()},
        "links": {},
    }))
}
