//! `POST/GET /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` (admin)

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState, Caller, ErrorCode, Routes};
use crate::audit::{self, AdminAction};
use crate::auth::Role;
use crate::schema::{Action, Category, Target};

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/tokens", list)
        .post("/api/v1/tokens", create)
        .delete("/api/v1/tokens/{id}", revoke)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: String,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let who = caller.require(&[])?.clone();
    let req: CreateToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("expected {{\"name\": \"...\", \"role\": \"viewer|admin|ingest\"}}: {e}"),
        )
    })?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "`name`: must be 1 to 100 characters",
        ));
    }
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "`role`: expected one of admin, viewer, ingest, got {:?}",
                req.role
            ),
        )
    })?;
    let (record, token) = state.tokens.create(name, role)?;
    audit::record_token_created(&state.store, &who, &record, "through the API").await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": record.id,
            "name": record.name,
            "role": record.role,
            "created_at": crate::time::format_micros(record.created_at),
            "token": token.expose(),
        })),
    ))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[])?;
    Ok(Json(serde_json::json!({ "tokens": state.tokens.list()? })))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let who = caller.require(&[])?.clone();
    if !state.tokens.revoke(&id)? {
        return Err(ApiError::not_found(format!("no token with id {id:?}")));
    }
    audit::record(
        &state.store,
        &who,
        AdminAction {
            event_type: "token.revoke",
            action: Action::Revoke,
            category: Category::Authorization,
            target: Some(Target {
                kind: "token".into(),
                id: id.clone(),
                name: None,
            }),
            description: format!("token {id} revoked"),
            details: serde_json::json!({}),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
