//! `/healthz`, `/metrics` and `/api/v1/integrity`

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiError, AppState, Caller, Routes};
use crate::auth::Role;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/healthz", healthz)
        .get("/metrics", metrics)
        .get("/api/v1/integrity", integrity)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "events": state.store.event_count(),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
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

/// Walks the whole hash chain (O(events)): proof that no stored event was altered.
async fn integrity(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Viewer])?;
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || store.verify())
        .await
        .map_err(|_| ApiError::new(super::ErrorCode::Internal, "integrity check panicked"))??;
    Ok(Json(report))
}
