//! Notification channels and the delivery history: `/api/v1/channels` (create, list, show,
//! change, delete, test) and `/api/v1/deliveries`. Secrets go in and never come out (a minted
//! webhook signing secret is shown once, in the answer that minted it); every change is an
//! audit event

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{query_pairs_among, read_body, ApiError, AppState, Caller, ErrorCode, Routes};
use crate::audit::{self, AdminAction};
use crate::auth::{Principal, Role};
use crate::notify::{
    ChannelError, ChannelId, ChannelInput, ChannelPatch, ChannelRecord, DeliveryId, DeliveryQuery,
    DeliveryStatus, Message, NewDelivery, NotifyError, MAX_KEY_BYTES,
};
use crate::schema::{Action, Category, Target};
use crate::time::{format_micros, now_micros};

/// Largest channel body: a channel is a few hundred bytes, fifty addresses a few KiB.
pub const MAX_CHANNEL_BODY: usize = 64 * 1024;
/// How long `POST /api/v1/channels/{id}/test` waits for the first attempt.
const TEST_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/channels", list)
        .post("/api/v1/channels", create)
        .get("/api/v1/channels/{id}", show)
        .patch("/api/v1/channels/{id}", update)
        .delete("/api/v1/channels/{id}", remove)
        .post("/api/v1/channels/{id}/test", test)
        .get("/api/v1/deliveries", deliveries)
        .get("/api/v1/deliveries/{id}", delivery)
}

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Invalid { .. } => ApiError::new(ErrorCode::InvalidBody, e.to_string()),
            ChannelError::NameTaken(_) | ChannelError::TooMany => {
                ApiError::new(ErrorCode::Conflict, e.to_string())
            }
            ChannelError::NotFound(_) => ApiError::not_found(e.to_string()),
            ChannelError::CredentialsRequired { .. } => {
                ApiError::new(ErrorCode::Unprocessable, e.to_string())
            }
            ChannelError::Sealed(_) => {
                tracing::error!(error = %e, "channel secrets do not open");
                ApiError::new(ErrorCode::Internal, e.to_string())
            }
            ChannelError::Store(s) => s.into(),
        }
    }
}

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Invalid { .. } => ApiError::new(ErrorCode::InvalidBody, e.to_string()),
            NotifyError::UnknownChannel(_) => ApiError::not_found(e.to_string()),
            NotifyError::Full => {
                ApiError::new(ErrorCode::Unavailable, e.to_string()).with_retry_after(60)
            }
            NotifyError::Store(s) => s.into(),
        }
    }
}

fn channel_id(id: &str) -> Result<ChannelId, ApiError> {
    ChannelId::parse(id).ok_or_else(|| ApiError::not_found(format!("no channel with id {id:?}")))
}

fn target(record: &ChannelRecord) -> Target {
    Target {
        kind: "notification_channel".into(),
        id: record.id.to_string(),
        name: Some(record.name.clone()),
    }
}

async fn record_change(
    state: &AppState,
    who: &Principal,
    event_type: &str,
    action: Action,
    record: &ChannelRecord,
    description: String,
    details: Value,
) -> Result<(), ApiError> {
    audit::record(
        &state.store,
        who,
        AdminAction {
            event_type,
            action,
            category: Category::Configuration,
            target: Some(target(record)),
            description,
            details,
        },
    )
    .await?;
    Ok(())
}

async fn json_body<T: serde::de::DeserializeOwned>(
    body: Body,
    headers: &HeaderMap,
    expected: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(body, headers, MAX_CHANNEL_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("expected {expected}: {}", without_strings(&e.to_string())),
        )
    })
}

/// serde's message with the string values it quotes (`invalid type: string "..."`) cut out: a
/// secret sent in the wrong field must not come back in the error.
fn without_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                quoted = false;
                out.push('"');
            }
            (_, false) => out.push(c),
            (_, true) => {}
        }
    }
    out
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let channels = state.notifier.channels().list()?;
    Ok(Json(json!({
        "channels": channels.iter().map(ChannelRecord::view).collect::<Vec<_>>(),
    })))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let record = state.notifier.channels().get(&channel_id(&id)?)?;
    Ok(Json(record.view()))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who = caller.require(&[])?.clone();
    let input: ChannelInput = json_body(
        body,
        &headers,
        "{\"name\", \"kind\": \"webhook\"|\"slack\"|\"email\", and the kind's fields}",
    )
    .await?;
    let created = state.notifier.channels().create(input)?;
    let record = &created.record;
    record_change(
        &state,
        &who,
        "notify.channel.create",
        Action::Create,
        record,
        format!(
            "{} notification channel {} ({}) created",
            record.kind.as_str(),
            record.name,
            record.id
        ),
        json!({"kind": record.kind, "destination": record.destination(), "secrets_set": record.secret_names}),
    )
    .await?;
    let mut view = record.view();
    if let Some(secret) = &created.minted_secret {
        // shown this once: the hub keeps it sealed and never shows it again
        view["secret"] = json!(secret.expose());
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let who = caller.require(&[])?.clone();
    let id = channel_id(&id)?;
    let patch: ChannelPatch = json_body(body, &headers, "the channel fields to change").await?;
    let updated = state.notifier.channels().update(&id, patch)?;
    let record = &updated.record;
    record_change(
        &state,
        &who,
        "notify.channel.update",
        Action::Update,
        record,
        format!(
            "notification channel {} ({}) changed: {}",
            record.name,
            record.id,
            if updated.fields.is_empty() {
                "nothing".to_string()
            } else {
                updated.fields.join(", ")
            }
        ),
        json!({"kind": record.kind, "fields": updated.fields, "destination": record.destination()}),
    )
    .await?;
    let mut view = record.view();
    if let Some(secret) = &updated.minted_secret {
        view["secret"] = json!(secret.expose());
    }
    Ok(Json(view))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = caller.require(&[])?.clone();
    let record = state.notifier.channels().delete(&channel_id(&id)?)?;
    record_change(
        &state,
        &who,
        "notify.channel.delete",
        Action::Delete,
        &record,
        format!(
            "notification channel {} ({}) deleted",
            record.name, record.id
        ),
        json!({"kind": record.kind}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a test message now and answers its first attempt (or that none ended within 10 s).
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = caller.require(&[])?.clone();
    let record = state.notifier.channels().get(&channel_id(&id)?)?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
    let now = now_micros();
    let message = Message {
        subject: format!("Trailhub test notification ({})", record.name),
        text: format!(
            "This is a test of the notification channel {} ({}), sent by {} at {}.",
            record.name,
            record.id,
            who.name,
            format_micros(now)
        ),
        json: json!({"test": true, "channel": record.id, "requested_by": who.name}),
    };
    record_change(
        &state,
        &who,
        "notify.channel.test",
        Action::Execute,
        &record,
        format!(
            "test notification sent to channel {} ({})",
            record.name, record.id
        ),
        json!({"kind": record.kind}),
    )
    .await?;
    let delivery_id = state
        .notifier
        .enqueue(NewDelivery {
            key: format!("test:{}", hex::encode(nonce)),
            channel: record.id.clone(),
            message,
        })
        .await?;
    let attempt = state.notifier.first_attempt(&delivery_id, TEST_WAIT).await;
    Ok(Json(json!({
        "delivery_id": delivery_id,
        "channel": record.id,
        "delivered": attempt.as_ref().is_some_and(|a| a.outcome.as_str() == "delivered"),
        "attempt": attempt.as_ref().map(|a| a.view()),
    })))
}

async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let pairs = query_pairs_among(q.as_deref(), &["channel", "key", "status", "limit"])?;
    let mut query = DeliveryQuery {
        limit: DEFAULT_LIMIT,
        ..DeliveryQuery::default()
    };
    let bad = |message: String| ApiError::new(ErrorCode::InvalidParameter, message);
    for (k, v) in &pairs {
        match k.as_str() {
            "channel" => {
                query.channel = Some(
                    ChannelId::parse(v)
                        .ok_or_else(|| bad(format!("`channel`: not a channel id: {v:?}")))?,
                )
            }
            "key" => {
                if v.is_empty() || v.len() > MAX_KEY_BYTES {
                    return Err(bad(format!("`key`: 1 to {MAX_KEY_BYTES} bytes")));
                }
                query.key = Some(v.clone());
            }
            "status" => {
                query.status = Some(DeliveryStatus::parse(v).ok_or_else(|| {
                    bad(format!(
                        "`status`: one of pending, delivered, failed, not {v:?}"
                    ))
                })?)
            }
            "limit" => {
                query.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad(format!("`limit`: 1 to {MAX_LIMIT}, not {v:?}")))?
            }
            _ => {}
        }
    }
    let found = state.notifier.deliveries(&query)?;
    Ok(Json(json!({
        "deliveries": found.iter().map(|d| d.view(false)).collect::<Vec<_>>(),
        "pending": state.notifier.pending_count(),
    })))
}

async fn delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let not_found = || ApiError::not_found(format!("no delivery with id {id:?}"));
    let parsed = DeliveryId::parse(&id).ok_or_else(not_found)?;
    let d = state.notifier.delivery(&parsed)?.ok_or_else(not_found)?;
    Ok(Json(d.view(true)))
}
