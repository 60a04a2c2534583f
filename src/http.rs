//! The HTTP server loop: hyper's HTTP/1 connections with a header/idle timeout, a time budget
//! for request bodies and a cap on open connections
//!
//! `axum::serve` has no knobs, and without them one client can hold the hub: a slowloris that
//! sends its headers a byte at a time, a body that never ends, or thousands of idle connections.
//! This loop accepts a connection only while it holds one of `max_connections` permits; past
//! the cap a connection is answered `503` with `Retry-After` by a small, separately bounded
//! responder (or dropped when that is full too), so a flood neither grows memory nor starves the
//! connections already served.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use crate::metrics::Metrics;

/// Connections past the cap that are answered `503` at once; beyond these they are dropped.
const OVERFLOW_RESPONDERS: usize = 32;
/// How long a connection past the cap may take to send the request it is refused.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The server's limits (settings `header_timeout_secs`, `body_timeout_secs`, `max_connections`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From the moment a connection waits for a request (a new connection, or a kept-alive one
    /// between requests) until that request's headers are complete. hyper starts this timer
    /// when it starts waiting, so it is also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// From the first time a request body waits for the client until its last byte.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight finish
/// (idle connections close at once) and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_RESPONDERS));
    let (closing, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // e.g. EMFILE: wait for descriptors to free up rather than spin or exit
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let connection = Connection {
                    app: app.clone(),
                    peer,
                    limits,
                    metrics: metrics.clone(),
                    _permit: permit,
                };
                tokio::spawn(connection.serve(stream, closing_rx.clone()));
            }
            Err(_) => {
                metrics.http_connections_refused.inc();
                match overflow.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(refuse(stream, permit));
                    }
                    Err(_) => drop(stream),
                }
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    // every connection holds a permit until it is closed
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

struct Connection {
    app: Router,
    peer: SocketAddr,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream, mut closing: watch::Receiver<bool>) {
        self.metrics.http_connections_open.inc();
        let (app, peer, body_timeout) = (self.app.clone(), self.peer, self.limits.body_timeout);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut app = app.clone();
            let mut request = request.map(|b| Body::new(DeadlineBody::new(b, body_timeout)));
            request.extensions_mut().insert(ConnectInfo(peer));
            async move { app.call(request).await }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let result = tokio::select! {
            r = connection.as_mut() => r,
            _ = closed(&mut closing) => {
                connection.as_mut().graceful_shutdown();
                connection.as_mut().await
            }
        };
        if let Err(e) = result {
            // timeouts and clients going away: expected on the open internet, not worth a warning
            tracing::debug!(peer = %self.peer, error = %e, "connection closed with an error");
        }
        self.metrics.http_connections_open.dec();
    }
}

/// Resolves once the server is closing (or the loop is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Answers a connection past the cap with `503` and `Retry-After`, then closes it. The request
/// is read first (bounded by a short header timeout), so that the client sees the answer rather
/// than a reset.
async fn refuse(stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
        let body = serde_json::json!({"error": {
            "code": "unavailable",
            "message": "the hub is serving as many connections as it allows; retry shortly",
        }});
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        Ok::<_, Infallible>(response)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
        .keep_alive(false);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(OVERFLOW_HEADER_TIMEOUT * 2, served).await;
}

/// A request body that fails once it has taken longer than its time budget, counted from the
/// first time it has to wait for the client: a client trickling a body cannot hold a request
/// (and its buffer) forever.
///
/// Dropped before its end — a handler answered `413` from `Content-Length`, or stopped reading
/// at a size cap — the rest is read and discarded in the background, up to
/// [`MAX_DISCARDED_BYTES`] and within the same time budget, before the connection is released.
/// Without this "lingering" read, the hub would close a socket with unread data, the kernel
/// would reset it, and the client — still writing — would see a broken pipe instead of the
/// answer. Discarding costs bandwidth, never memory, and the connection keeps its slot under
/// `max_connections` meanwhile.
pub struct DeadlineBody {
    /// `None` once handed to the background discard.
    inner: Option<Incoming>,
    budget: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    discard_on_drop: bool,
}

/// Most bytes of a refused request body read and thrown away so the client sees the answer.
pub const MAX_DISCARDED_BYTES: u64 = 64 * 1024 * 1024;

impl DeadlineBody {
    pub fn new(inner: Incoming, budget: Duration) -> DeadlineBody {
        DeadlineBody {
            inner: Some(inner),
            budget,
            deadline: None,
            discard_on_drop: true,
        }
    }
}

impl Drop for DeadlineBody {
    fn drop(&mut self) {
        if !self.discard_on_drop {
            return;
        }
        let Some(inner) = self.inner.take() else {
            return;
        };
        if inner.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let rest = DeadlineBody {
            inner: Some(inner),
            budget: self.budget,
            deadline: self.deadline.take(),
            discard_on_drop: false,
        };
        runtime.spawn(discard(rest));
    }
}

/// Reads and drops what is left of a body, up to [`MAX_DISCARDED_BYTES`] or its time budget.
async fn discard(mut rest: DeadlineBody) {
    use http_body_util::BodyExt;
    let mut seen: u64 = 0;
    while let Some(Ok(frame)) = rest.frame().await {
        if let Some(data) = frame.data_ref() {
            seen = seen.saturating_add(data.len() as u64);
            if seen > MAX_DISCARDED_BYTES {
                return;
            }
        }
    }
}

/// The error of a body that ran out of time; `api::read_body` (and, for axum's own body
/// extractors, `api::json_errors`) answer it with `408`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{BODY_TIMEOUT_TEXT} {} s", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

/// How [`BodyTimeout`]'s message starts.
pub const BODY_TIMEOUT_TEXT: &str = "the request body was not received within";

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let budget = this.budget;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(budget)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(budget))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

/// A reqwest error as logs and statuses show it: its innermost cause, without the URL (which may
/// hold a query string or credentials), short and stable.
pub fn reqwest_error_text(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut text = String::new();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if text.is_empty() {
        "connection error".into()
    } else {
        text
    }
}
