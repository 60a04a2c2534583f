//! Retention, legal holds, the archive and the storage view:
//! `/api/v1/retention`, `/api/v1/legal-holds` (also `/api/v1/holds`), `/api/v1/archive`, `/api/v1/storage`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{query_pairs_among, read_body, ApiError, AppState, Caller, ErrorCode, Routes};
use crate::auth::Role;
use crate::retention::{archive, NewHold, Policy, RetentionError};
use crate::store::keys::Dimension;
use crate::time::{format_micros, now_micros, DAY};

/// Largest archive segment uploaded for a restore.
pub const MAX_RESTORE_UPLOAD: usize = 256 << 20;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/retention", show)
        .put("/api/v1/retention", set)
        .post("/api/v1/retention/run", run)
        .get("/api/v1/legal-holds", holds)
        .post("/api/v1/legal-holds", add_hold)
        .delete("/api/v1/legal-holds/{id}", remove_hold)
        // the contract's shorter name for the same resource
        .get("/api/v1/holds", holds)
        .post("/api/v1/holds", add_hold)
        .delete("/api/v1/holds/{id}", remove_hold)
        .get("/api/v1/archive", list_archive)
        .post("/api/v1/archive/restore", restore)
        .get("/api/v1/storage", storage)
}

impl From<RetentionError> for ApiError {
    fn from(e: RetentionError) -> Self {
        match e {
            RetentionError::Store(e) => e.into(),
            RetentionError::Invalid(m) => ApiError::new(ErrorCode::InvalidBody, m),
            RetentionError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            RetentionError::Archive(m) => ApiError::new(ErrorCode::Unavailable, m),
        }
    }
}

fn flag(pairs: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("`{name}`: expected true or false, got {other:?}"),
        )),
    }
}

async fn show(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let r = &state.retention;
    Ok(Json(json!({
        "policy": r.policy()?,
        "legal_holds": r.holds()?.len(),
        "restore_hold_days": r.restore_hold().as_secs() / 86_400,
        "archive": r.archive().map(|a| json!({"target": a.describe(), "encrypted": a.encrypted()})),
        "last_run": r.last_run()?,
        "next_run": r.next_run().map(format_micros),
    })))
}

async fn set(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let who = caller.require(&[])?.clone();
    let policy: Policy = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("expected a retention policy {{\"enabled\", \"categories\": {{\"system\": 90, ...}}, \"default_days\", \"integrations\": {{...}}, \"archive\"}}: {e}"),
        )
    })?;
    state.retention.set_policy(&who, policy).await?;
    Ok(Json(json!({"policy": state.retention.policy()?})))
}

async fn run(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let who = caller.require(&[])?.clone();
    let pairs = query_pairs_among(q.as_deref(), &["dry_run"])?;
    let dry_run = flag(&pairs, "dry_run")?;
    let report = state.retention.run(&who, dry_run).await?;
    Ok(Json(json!(report)))
}

async fn holds(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    Ok(Json(json!({"legal_holds": state.retention.holds()?})))
}

async fn add_hold(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = caller.require(&[])?.clone();
    let new: NewHold = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("expected {{\"reason\", \"integration\"?, \"filter\"?}}: {e}"),
        )
    })?;
    let hold = state.retention.add_hold(&who, new).await?;
    Ok((StatusCode::CREATED, Json(json!(hold))).into_response())
}

async fn remove_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = caller.require(&[])?.clone();
    if id.len() > 64 {
        return Err(ApiError::not_found("no legal hold with that id"));
    }
    if state.retention.remove_hold(&who, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no legal hold with that id"))
    }
}

fn no_archive() -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        "no archive is configured (`[retention.archive]` in the config file)",
    )
}

async fn list_archive(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[])?;
    let archive = state.retention.archive().ok_or_else(no_archive)?;
    let objects = archive
        .list()
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?;
    Ok(Json(json!({
        "target": archive.describe(),
        "objects": objects.iter().map(|(k, s)| json!({"object": k, "bytes": s})).collect::<Vec<_>>(),
    })))
}

/// Restores a segment: the one named by `?object=` from the configured archive, or the body.
async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let who = caller.require(&[])?.clone();
    let pairs = query_pairs_among(q.as_deref(), &["object"])?;
    let object = pairs
        .iter()
        .find(|(k, _)| k == "object")
        .map(|(_, v)| v.clone());
    let key = state.retention.archive().and_then(|a| a.key());
    let (bytes, source) = match &object {
        Some(name) => {
            let archive = state.retention.archive().ok_or_else(no_archive)?;
            let bytes = archive
                .read(name)
                .await
                .map_err(|e| ApiError::new(ErrorCode::NotFound, e))?;
            (bytes, format!("object {name}"))
        }
        None => {
            let bytes = read_body(body, &headers, MAX_RESTORE_UPLOAD).await?;
            if bytes.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidBody,
                    "send an archive segment as the body, or name one with ?object=",
                ));
            }
            (bytes.to_vec(), "an uploaded segment".to_string())
        }
    };
    let outcome = archive::restore_segment(&state.store, &state.checkpointer, key, bytes)
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Unprocessable,
                format!("{source} was not restored: {e}"),
            )
        })?;
    crate::audit::record(
        &state.store,
        &who,
        crate::audit::AdminAction {
            event_type: "archive.restore",
            action: crate::schema::Action::Import,
            category: crate::schema::Category::DataChange,
            target: None,
            description: format!("{} archived events restored from {source}", outcome.restored),
            details: json!({"source": source, "restored": outcome.restored, "already_present": outcome.present}),
        },
    )
    .await?;
    Ok(Json(json!(outcome)))
}

/// Bytes stored and archived, events per category with the oldest, and when purging comes.
async fn storage(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let store = state.store.clone();
    let (active, categories) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            store.block_bytes()?,
            store.totals_by(Dimension::Category)?,
        ))
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the storage view failed: {e}")))??;
    let store = &state.store;
    let purged = store.purged_total();
    let stored = store.event_count();
    let live = stored.saturating_sub(purged);
    let policy = state.retention.policy()?;
    let now = now_micros();
    let mut rows = Vec::new();
    for (category, (events, oldest_day)) in &categories {
        let days = policy
            .categories
            .get(category)
            .copied()
            .unwrap_or(policy.default_days);
        let estimated = if live == 0 {
            0
        } else {
            (active as u128 * *events as u128 / live as u128) as u64
        };
        rows.push(json!({
            "category": category,
            "events": events,
            "estimated_bytes": estimated,
            "oldest_day": format_micros(*oldest_day),
            "retention_days": days,
            "expires_from": days.map(|d| format_micros(oldest_day.saturating_add(i64::from(d) * DAY))),
            "expired_now": days.is_some_and(|d| *oldest_day + i64::from(d) * DAY <= now),
        }));
    }
    let (archived, archive_error) = match state.retention.archive() {
        Some(a) => match a.list().await {
            Ok(objects) => (Some(objects.iter().map(|(_, s)| *s).sum::<u64>()), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    Ok(Json(json!({
        "events": {
            "stored": stored,
            "live": live,
            "purged": purged,
            "restored": store.restored_ranges().ranges().map(|(f, l, _)| l - f + 1).sum::<u64>(),
        },
        "bytes": {
            "active": active,
            "on_disk": store.size_on_disk(),
            "archived": archived,
            "archive_error": archive_error,
        },
        "categories": rows,
        "retention": {
            "enabled": policy.enabled,
            "next_run": state.retention.next_run().map(format_micros),
            "legal_holds": state.retention.holds()?.len(),
        },
    })))
}
