//! The HTTP API: router, shared state, bearer-token auth, request metrics. Handlers are thin:
//! they parse and validate, call the store or the shared query layer, and serialise

mod alerts;
mod console;
mod error;
mod events;
mod evidence;
mod hooks;
mod insight;
mod integrations;
mod jobs;
mod notify;
mod retention;
mod routes;
mod system;
pub mod throttle;
mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

pub use error::{store_failed_error, ApiError, ErrorCode, StoreRefusal};
pub use retention::MAX_RESTORE_UPLOAD;
pub use routes::{RouteEntry, Routes};

use crate::auth::{Principal, Role, Tokens};
use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: Tokens,
    pub integrations: crate::connectors::integrations::Integrations,
    pub scheduler: crate::scheduler::Scheduler,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Largest webhook delivery when its connector sets no `[webhook] max_body_bytes`.
    pub webhook_max_body_bytes: usize,
    /// One per webhook delivery being read and verified (`webhook_concurrency`).
    pub webhook_permits: Arc<tokio::sync::Semaphore>,
    /// The free-space reserve, for `/healthz` (the store refuses writes below it).
    pub min_free_bytes: u64,
    /// Wrong bearer tokens per client address (`auth_failure_limit`).
    pub auth_throttle: Arc<throttle::AuthThrottle>,
    /// True from when the hub listens until it starts shutting down (`/readyz`).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    pub started: Instant,
    /// Signs the evidence log's checkpoints and keeps their history.
    pub checkpointer: crate::checkpoints::Checkpointer,
    pub checkpoint_cadence: crate::checkpoints::Cadence,
    /// The retention policy, legal holds, purge job and archive.
    pub retention: crate::retention::Retention,
    /// Alert rules, their evaluation and history.
    pub alerts: crate::alerts::Alerts,
    /// Notification channels and the delivery outbox.
    pub notifier: crate::notify::Notifier,
    /// Export jobs, reports and report schedules.
    pub jobs: crate::jobs::Jobs,
    /// Read-time enrichment of events (user agents, and IPs when MaxMind DB files are set).
    pub enricher: Arc<crate::enrich::Enricher>,
}

/// Every route the hub serves, and the table of them.
fn routes() -> Routes<AppState> {
    Routes::new()
        .merge(system::routes())
        .merge(events::routes())
        .merge(tokens::routes())
        .merge(console::routes())
        .merge(hooks::routes())
        .merge(retention::routes())
        .merge(integrations::routes())
        .merge(evidence::routes())
        .merge(alerts::routes())
        .merge(notify::routes())
        .merge(jobs::routes())
        .merge(insight::routes())
}

/// Every (path template, method) the router serves, from the same calls that build it: the
/// route × role test covers exactly this table.
pub fn route_table() -> Vec<RouteEntry> {
    routes().into_parts().1
}

pub fn router(state: AppState) -> Router {
    routes()
        .into_parts()
        .0
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        })
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Errors that axum answers by itself — an extractor's rejection (`Path`, `Query`, `Json`,
/// `Bytes`), the default 2 MB body limit — come as plain text; the contract wants
/// `{"error": {"code", "message"}}` for every error. This layer rewrites any error response that
/// is not JSON into that shape, keeping the status and axum's sentence.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidParameter,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        409 => ErrorCode::Conflict,
        410 => ErrorCode::Gone,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::Unavailable,
        507 => ErrorCode::StorageFull,
        _ if status.is_client_error() => ErrorCode::InvalidParameter,
        _ => ErrorCode::Internal,
    };
    // axum's rejection texts are short sentences about the request; keep at most a line of one
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| {
            String::from_utf8_lossy(&b)
                .chars()
                .take(300)
                .collect::<String>()
        })
        .unwrap_or_default();
    let mut message = text.trim().to_string();
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase();
    }
    if message.contains(crate::http::BODY_TIMEOUT_TEXT) {
        // a body extractor gave up on a body that ran out of time (crate::http::DeadlineBody)
        return ApiError::new(ErrorCode::RequestTimeout, message).into_response();
    }
    if code == ErrorCode::InvalidParameter && message.to_ascii_lowercase().contains("body") {
        return ApiError::new(ErrorCode::InvalidBody, message).into_response();
    }
    let mut rewritten = ApiError::new(code, message).into_response();
    // the status is kept even where the table would choose another
    *rewritten.status_mut() = status;
    rewritten
}

/// Counts and times every request, under its route template (never the raw path; `unmatched`
/// for every path no route matches) and a known method (`other` for the rest).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let mut response = next.run(request).await;
    if response.extensions().get::<StoreRefusal>().is_some() {
        if let Some(failure) = state.store.stats().failed() {
            response = store_failed_error(&failure).into_response();
        }
    }
    let status = response.status().as_u16();
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .http_duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    // 503 is a limit doing its job (webhook_concurrency, shutting down): a flood of them must
    // not flood the log; the metrics count them
    if status >= 500 && status != 503 {
        tracing::warn!(%method, %route, status, "request failed");
    } else {
        tracing::debug!(%method, %route, status, micros = started.elapsed().as_micros() as u64, "request");
    }
    response
}

/// The `method` label of the request metrics: a fixed set, so that a client inventing methods
/// cannot add series (each series is memory, kept until restart).
fn method_label(method: &axum::http::Method) -> String {
    use axum::http::Method;
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    if known.contains(method) {
        method.as_str().to_string()
    } else {
        "other".to_string()
    }
}

/// The authenticated caller of an `/api` route.
pub struct Caller(pub Principal);

impl Caller {
    /// Admins may do everything; other roles only what `allowed` lists.
    pub fn require(&self, allowed: &[Role]) -> Result<&Principal, ApiError> {
        if self.0.role == Role::Admin || allowed.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "a token with role `{}` may not do this",
                    self.0.role.as_str()
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "missing `Authorization: Bearer <token>` header",
            ));
        };
        // the peer address, inserted by `crate::http` (absent when the router is called directly)
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let now = Instant::now();
        if let Some(wait) = peer.and_then(|ip| state.auth_throttle.blocked(ip, now)) {
            return Err(ApiError::new(
                ErrorCode::TooManyRequests,
                format!("too many wrong tokens from this address; retry in {wait} s"),
            )
            .with_retry_after(wait));
        }
        let wrong = || {
            if let Some(ip) = peer {
                state.auth_throttle.failed(ip, now);
            }
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                wrong();
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        match state.tokens.authenticate(token)? {
            Some(p) => Ok(Caller(p)),
            None => {
                wrong();
                Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "invalid or revoked token",
                ))
            }
        }
    }
}

/// The media type of a request's `Content-Type` (lowercase, parameters dropped), if it has one.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::CONTENT_TYPE)?;
    let text = value.to_str().unwrap_or("");
    Some(
        text.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads a request body of at most `limit` bytes: `413` when `Content-Length` says more (before
/// reading anything) or the stream turns out longer, `408` when the client is too slow
/// (`body_timeout_secs`), `400` when the body breaks off.
pub async fn read_body(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            if let Some(t) = s.downcast_ref::<crate::http::BodyTimeout>() {
                return ApiError::new(ErrorCode::RequestTimeout, t.to_string());
            }
            source = s.source();
        }
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("could not read the body: {e}"),
        )
    })
}

/// Query pairs of a request, percent-decoded.
/// The query's pairs, refused when a name is not among `allowed` or is given twice.
pub fn query_pairs_among(
    parts: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = query_pairs(parts)?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "unknown parameter {k:?}; this route takes {}",
                    allowed.join(", ")
                ),
            ));
        }
        if pairs[..i].iter().any(|(seen, _)| seen == k) {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("{k} is given more than once"),
            ));
        }
    }
    Ok(pairs)
}

pub fn query_pairs(parts: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(parts.unwrap_or("")).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("query string does not parse: {e}"),
        )
    })
}
