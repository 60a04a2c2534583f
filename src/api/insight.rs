//! The desk's overviews: `/api/v1/summary` (the dashboard), `/api/v1/actors/{id}` (one actor's
//! activity) and `/api/v1/events/{id}/related`.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::{query_pairs_among, ApiError, AppState, Caller, ErrorCode, Routes};
use crate::auth::Role;
use crate::insight::{actor, period, related, summary};
use crate::schema::EventId;
use crate::time::now_micros;

/// Longest actor name looked up (the index keeps the first 200 bytes of a value).
pub const MAX_ACTOR_LEN: usize = 1024;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/summary", summary)
        .get("/api/v1/actors/{id}", actor)
        .get("/api/v1/events/{id}/related", related)
}

/// Runs store reads off the async runtime.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, format!("{what} panicked")))??)
}

async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let pairs = query_pairs_among(q.as_deref(), &["tz"])?;
    let tz = match pairs.iter().find(|(k, _)| k == "tz") {
        None => chrono_tz::Tz::UTC,
        Some((_, name)) => period::parse_zone(name).ok_or_else(|| {
            let shown: String = name.chars().take(64).collect();
            ApiError::new(
                ErrorCode::InvalidParameter,
                format!("`tz`: expected an IANA time zone name such as Europe/Paris or UTC, got {shown:?}"),
            )
        })?,
    };
    let in_error = summary::integrations_in_error(&state.integrations, &state.scheduler)?;
    let store = state.store.clone();
    let s = blocking("the summary", move || {
        summary::summary(&store, tz, now_micros(), in_error)
    })
    .await?;
    Ok(Json(json!(s)))
}

async fn actor(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    query_pairs_among(q.as_deref(), &[])?;
    let who = id.trim().to_string();
    if who.is_empty() || who.len() > MAX_ACTOR_LEN {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("`id`: an actor id, name or email of 1 to {MAX_ACTOR_LEN} bytes"),
        ));
    }
    let store = state.store.clone();
    let enricher = state.enricher.clone();
    let lookup = who.clone();
    let activity = blocking("the actor view", move || {
        actor::activity(&store, &enricher, &lookup)
    })
    .await?;
    match activity {
        Some(a) => Ok(Json(json!(a))),
        None => Err(ApiError::not_found(format!(
            "no event names an actor {:?} (by id, name or email)",
            who.chars().take(64).collect::<String>()
        ))),
    }
}

async fn related(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let pairs = query_pairs_among(q.as_deref(), &["limit"])?;
    let limit = match pairs.iter().find(|(k, _)| k == "limit") {
        None => related::DEFAULT_LIMIT,
        Some((_, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=related::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "`limit`: expected a whole number from 1 to {}, got {:?}",
                        related::MAX_LIMIT,
                        v.chars().take(32).collect::<String>()
                    ),
                )
            })?,
    };
    let not_found = || {
        ApiError::not_found(format!(
            "no event with id {:?}",
            id.chars().take(32).collect::<String>()
        ))
    };
    let Some(seq) = EventId::parse(&id) else {
        return Err(not_found());
    };
    let store = state.store.clone();
    let found = blocking("related events", move || {
        related::related(&store, seq.0, limit)
    })
    .await?;
    match found {
        Some(r) => Ok(Json(json!(r))),
        None => Err(not_found()),
    }
}
