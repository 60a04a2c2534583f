//! Alert rules and their history: `/api/v1/alerts/rules` (viewers read, admins change and
//! test-fire), `/api/v1/alerts` (firings with their deliveries).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{query_pairs_among, ApiError, AppState, Caller, ErrorCode, Routes};
use crate::alerts::{AlertError, RuleInput};
use crate::auth::Role;

/// Largest rule body.
pub const MAX_RULE_BODY: usize = 64 * 1024;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/alerts/rules", list_rules)
        .post("/api/v1/alerts/rules", create_rule)
        .get("/api/v1/alerts/rules/{id}", one_rule)
        .patch("/api/v1/alerts/rules/{id}", update_rule)
        .delete("/api/v1/alerts/rules/{id}", delete_rule)
        .post("/api/v1/alerts/rules/{id}/test", test_rule)
        .get("/api/v1/alerts", history)
        .get("/api/v1/alerts/{id}", one_firing)
}

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> Self {
        match e {
            AlertError::Rule(e) => {
                ApiError::new(ErrorCode::Unprocessable, e.to_string()).with_field(e.field)
            }
            AlertError::NoRule(_) | AlertError::NoFiring(_) => ApiError::not_found(e.to_string()),
            AlertError::TooMany => ApiError::new(ErrorCode::Conflict, e.to_string()),
            AlertError::NothingToTest(m) => ApiError::new(ErrorCode::Unprocessable, m),
            AlertError::Store(e) => e.into(),
            AlertError::Corrupt(m) => ApiError::new(ErrorCode::Internal, m),
        }
    }
}

fn rule_input(body: &[u8]) -> Result<RuleInput, ApiError> {
    if body.len() > MAX_RULE_BODY {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a rule is at most {MAX_RULE_BODY} bytes"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("expected an alert rule {{\"name\", \"filter\": {{...}}, \"condition\": {{\"type\": \"event\"|\"count\"|\"value\", ...}}, \"group_by\", \"schedule\", \"suppress_secs\", \"priority\", \"message\", \"channels\"}}: {e}"),
        )
    })
}

/// An id from a path: an unknown shape is simply not found.
fn checked_id(id: &str, what: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::not_found(format!("no {what} with id {id:?}")));
    }
    Ok(())
}

async fn list_rules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    Ok(Json(json!({"rules": state.alerts.rules()?})))
}

async fn create_rule(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = caller.require(&[])?.clone();
    let input = rule_input(&body)?;
    let rule = state.alerts.create(&who, input).await?;
    Ok((StatusCode::CREATED, Json(json!(rule))).into_response())
}

async fn one_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    checked_id(&id, "alert rule")?;
    Ok(Json(json!(state.alerts.rule(&id)?)))
}

async fn update_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let who = caller.require(&[])?.clone();
    checked_id(&id, "alert rule")?;
    let input = rule_input(&body)?;
    Ok(Json(json!(state.alerts.update(&who, &id, input).await?)))
}

async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = caller.require(&[])?.clone();
    checked_id(&id, "alert rule")?;
    state.alerts.delete(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let who = caller.require(&[])?.clone();
    checked_id(&id, "alert rule")?;
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct TestBody {
        event_id: Option<String>,
    }
    let test: TestBody = if body.iter().all(u8::is_ascii_whitespace) {
        TestBody::default()
    } else if body.len() > MAX_RULE_BODY {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the body is too large",
        ));
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!("expected {{\"event_id\"?}} or no body: {e}"),
            )
        })?
    };
    let firing = state
        .alerts
        .test_fire(&who, &id, test.event_id.as_deref())
        .await?;
    Ok(Json(state.alerts.firing(&firing.id)?))
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let pairs = query_pairs_among(q.as_deref(), &["rule", "limit", "cursor"])?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = match get("limit") {
        None => 50,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::alerts::MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "`limit`: expected a whole number from 1 to {}",
                        crate::alerts::MAX_PAGE
                    ),
                )
            })?,
    };
    if let Some(rule) = get("rule") {
        checked_id(rule, "alert rule")
            .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "`rule`: not a rule id"))?;
    }
    let cursor = get("cursor").filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| c.len() > 200) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "`cursor`: not a cursor this hub issued",
        ));
    }
    let (firings, next) =
        state
            .alerts
            .history(get("rule"), cursor, limit)
            .map_err(|e| match e {
                AlertError::NoFiring(_) => ApiError::new(
                    ErrorCode::InvalidParameter,
                    "`cursor`: not a cursor this hub issued",
                ),
                other => other.into(),
            })?;
    Ok(Json(json!({"alerts": firings, "next_cursor": next})))
}

async fn one_firing(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    checked_id(&id, "firing")?;
    Ok(Json(state.alerts.firing(&id)?))
}
