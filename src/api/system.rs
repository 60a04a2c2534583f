//! `/healthz`, `/readyz`, `/metrics` and `/api/v1/integrity`

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiError, AppState, Caller, Routes};
use crate::auth::Role;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics)
        .get("/api/v1/integrity", integrity)
}

/// Why the hub cannot take writes now, if it cannot.
fn degraded_reason(state: &AppState) -> Option<String> {
    if let Some(failure) = state.store.stats().failed() {
        return Some(format!(
            "the store refuses writes after an I/O error ({failure}); restart the hub once the cause is fixed"
        ));
    }
    if state.min_free_bytes > 0 {
        if let Ok(free) = fs2::available_space(state.store.path()) {
            if free < state.min_free_bytes {
                return Some(format!(
                    "the data dir's disk has {} MiB free, below the reserve of {} MiB: writes are refused until space is freed, then resume by themselves",
                    free / (1024 * 1024),
                    state.min_free_bytes / (1024 * 1024)
                ));
            }
        }
    }
    None
}

/// `200 {"status": "ok"}`, or `503 {"status": "degraded", "reason"}` while writes are refused
/// (reads still work). No auth: say nothing a stranger should not know.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "events": state.store.event_count(),
        "uptime_seconds": state.started.elapsed().as_secs(),
    });
    match degraded_reason(&state) {
        None => (StatusCode::OK, Json(body)),
        Some(reason) => {
            body["status"] = "degraded".into();
            body["reason"] = reason.into();
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

/// `200 {"status": "ready"}` once the store is open and the server listens; `503` from the moment
/// the hub starts shutting down (load balancers stop sending it requests during the drain).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "shutting_down"})),
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(&state.store);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Walks the whole log (O(events)): the hash chain, the Merkle tree rebuilt from the events, and
/// the root of every checkpoint the hub signed.
async fn integrity(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Viewer])?;
    let store = state.store.clone();
    let history = state.checkpointer.history().clone();
    let key = state.checkpointer.verifier();
    // the checkpoints the hub signed, each checked with its key first, are roots the log must have
    let report = tokio::task::spawn_blocking(move || {
        let (claims, _unsigned) = history.claims(&key)?;
        store.verify_against(&claims)
    })
    .await
    .map_err(|_| ApiError::new(super::ErrorCode::Internal, "integrity check panicked"))??;
    Ok(Json(report))
}
