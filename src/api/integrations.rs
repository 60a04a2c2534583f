//! `GET /api/v1/connectors` and the integrations admin API: create, list, show, change, delete,
//! poll now. Credentials go in and never come out; every change is an audit event

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, AppState, Caller, ErrorCode, Routes};
use crate::audit::{self, AdminAction};
use crate::auth::Role;
use crate::connectors::cursor::CursorState;
use crate::connectors::integrations::{
    IntegrationError, IntegrationPatch, IntegrationRecord, NewIntegration,
};
use crate::connectors::Connector;
use crate::schema::{Action, Category, Target};
use crate::time::{format_micros, now_micros};

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/connectors", connectors)
        .get("/api/v1/integrations", list)
        .post("/api/v1/integrations", create)
        .post("/api/v1/integrations/test", test_connection)
        .get("/api/v1/integrations/{id}", show)
        .patch("/api/v1/integrations/{id}", update)
        .delete("/api/v1/integrations/{id}", remove)
        .post("/api/v1/integrations/{id}/poll", poll)
}

impl From<IntegrationError> for ApiError {
    fn from(e: IntegrationError) -> Self {
        match e {
            IntegrationError::Invalid { ref field, .. } => {
                let field = field.clone();
                ApiError::new(ErrorCode::InvalidBody, e.to_string()).with_field(field)
            }
            IntegrationError::NameTaken(_) => {
                ApiError::new(ErrorCode::Conflict, e.to_string()).with_field("name")
            }
            IntegrationError::CredentialsRequired { ref field, .. } => {
                // several moved fields are joined with "`, `": the first names a form field
                let first = field.split('`').next().unwrap_or_default().to_string();
                ApiError::new(ErrorCode::Unprocessable, e.to_string()).with_field(first)
            }
            IntegrationError::NotFound(_) => ApiError::not_found(e.to_string()),
            IntegrationError::Sealed(_) => {
                tracing::error!(error = %e, "credentials do not open");
                ApiError::new(
                    ErrorCode::Internal,
                    "the stored credentials do not open with this hub's master key; set them again",
                )
            }
            IntegrationError::Store(s) => s.into(),
        }
    }
}

fn field_json(f: &crate::connectors::definition::FieldSpec) -> Value {
    json!({
        "name": f.name,
        "required": f.required,
        "description": f.description,
        "default": f.default,
        "choices": f.choices,
        "kind": f.kind.as_str(),
        "secret": f.secret,
    })
}

fn connector_json(c: &Connector) -> Value {
    json!({
        "name": c.name,
        "title": c.title,
        "config": c.config.iter().map(field_json).collect::<Vec<_>>(),
        "credentials": c.credentials.iter().map(field_json).collect::<Vec<_>>(),
        "webhook": c.webhook.is_some(),
        "default_schedule": c.poll.as_ref().map(|p| &p.default_schedule),
        "retention_days": c.retention.map(|r| r / crate::time::DAY),
    })
}

async fn connectors(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Viewer])?;
    let list: Vec<Value> = state
        .integrations
        .registry()
        .all()
        .map(|c| connector_json(c))
        .collect();
    Ok(Json(json!({ "connectors": list })))
}

/// The integration object: settings, credential names (never values), status and cursor.
fn integration_json(state: &AppState, r: &IntegrationRecord) -> Result<Value, ApiError> {
    let status = state.scheduler.status(&r.id);
    let cursor = CursorState::decode(state.store.cursor(&r.id)?.as_deref());
    let connector = state.integrations.registry().get(&r.connector).ok();
    let now = now_micros();
    let push_only = connector.as_ref().is_some_and(|c| c.push_only());
    let poll = connector.as_ref().and_then(|c| c.poll.as_deref());
    // the next fires, so an admin sees what a cron expression means (idle backoff may skip some)
    let next_polls: Vec<String> = poll
        .and_then(|p| crate::schedule::parse_schedule(r.schedule_text(p)).ok())
        .map(|s| {
            s.upcoming(chrono::Utc)
                .take(3)
                .map(|t| format_micros(t.timestamp_micros()))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "id": r.id,
        "name": r.name,
        "connector": r.connector,
        "config": r.config,
        "credentials": r.credential_names,
        "schedule": poll.map(|p| r.schedule_text(p).to_string()).or(r.schedule.clone()),
        "backfill": r.backfill.clone().or(poll.map(|p| p.default_backfill_text.clone())),
        // the window actually used: clamped to the vendor's retention
        "backfill_seconds": connector.as_ref().zip(poll).map(|(c, p)| r.backfill_micros(p, c.retention) / crate::time::MICROS_PER_SEC),
        "next_polls": if r.paused || push_only { Vec::new() } else { next_polls },
        "push_only": push_only,
        "idle_backoff": r.idle_backoff.unwrap_or(crate::scheduler::DEFAULT_IDLE_BACKOFF),
        "requests_per_minute": r.requests_per_minute.or(poll.map(|p| p.rate_limit.requests_per_minute)),
        "paused": r.paused,
        "allow_insecure_http": r.allow_insecure_http,
        "filters": r.filters,
        "created_at": format_micros(r.created_at),
        "updated_at": format_micros(r.updated_at),
        "state": if push_only && !r.paused { crate::connectors::integrations::State::Live } else { status.state(r.paused) },
        "polling": status.polling,
        "cursor": cursor.summary(),
        "last_poll_at": status.last_poll_at.map(format_micros),
        "last_success_at": status.last_success_at.map(format_micros),
        "last_error": status.last_error,
        // counted in the same atomic batch as the events: exact after any crash, for polls,
        // webhooks and ingest alike
        "events_ingested": state.store.integration_count(&r.id)?,
        // of those, purged by retention since (counted in the purge's own transaction)
        "events_purged": state.store.purged_count(&r.id)?,
        // dropped by the collection filters before they were stored, counted with the cursor
        // (or the webhook delivery) that covered them
        "events_filtered": state.store.filtered_count(&r.id)?,
        "lag_seconds": status.lag_seconds(now),
        "backfill_progress": {
            "from": status.backfill_from.map(format_micros),
            "oldest_reached": status.backfill_oldest.map(format_micros),
            "done": status.backfill_done,
        },
    }))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes, expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("expected {expected}: {e}")))
}

fn target(r: &IntegrationRecord) -> Option<Target> {
    Some(Target {
        kind: "integration".into(),
        id: r.id.clone(),
        name: Some(r.name.clone()),
    })
}

/// The shape of a new integration, as a refusal of a body names it.
const NEW_INTEGRATION: &str = "{\"name\", \"connector\", \"config\": {...}, \"credentials\": {...}, \"schedule\"?, \"backfill\"?}";

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let who = caller.require(&[])?.clone();
    let req: NewIntegration = parse_body(&body, NEW_INTEGRATION)?;
    let record = state.integrations.create(req)?;
    // stored means scheduled, whatever becomes of the audit record below
    state.scheduler.upsert(record.clone());
    audit::record(
        &state.store,
        &who,
        AdminAction {
            event_type: "integration.create",
            action: Action::Create,
            category: Category::Configuration,
            target: target(&record),
            description: format!(
                "integration {} ({}) added with connector {}",
                record.id, record.name, record.connector
            ),
            details: json!({"connector": record.connector, "config": record.config, "credentials": record.credential_names, "allow_insecure_http": record.allow_insecure_http}),
        },
    )
    .await?;
    tracing::info!(integration = %record.id, connector = %record.connector, "integration added");
    Ok((
        StatusCode::CREATED,
        Json(integration_json(&state, &record)?),
    ))
}

/// `POST /api/v1/integrations/test`: the body of a create, checked as create checks it (the
/// same errors, naming the field), then one real request of the connector's first page through
/// the poll engine's transport. Nothing is stored but the audit record; `200` whether the
/// vendor accepted or not (the test ran), with `ok` and the vendor's status or the reason.
async fn test_connection(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let who = caller.require(&[])?.clone();
    let req: NewIntegration = parse_body(&body, NEW_INTEGRATION)?;
    let (record, credentials) = state.integrations.draft(req)?;
    let tested = state
        .scheduler
        .test_connection(&record, credentials)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "connection test could not start");
            ApiError::new(
                ErrorCode::Internal,
                "the connection test could not start; see the hub's log",
            )
        })?;
    let answer = match &tested {
        Some(t) => json!(t),
        None => json!({
            "ok": true,
            "status": null,
            "push_only": true,
            "elapsed_ms": 0,
            "message": format!("the {} connector is push-only: there is nothing to request; once the integration is added, its vendor delivers to /hooks/<id>", record.connector),
        }),
    };
    let outcome = match &tested {
        Some(t) if t.ok => format!(
            "succeeded (HTTP {}, {} records on the first page)",
            t.status.unwrap_or_default(),
            t.records.unwrap_or_default()
        ),
        Some(t) => format!("failed: {}", t.error.as_deref().unwrap_or("no reason")),
        None => "not needed: the connector is push-only".to_string(),
    };
    audit::record(
        &state.store,
        &who,
        AdminAction {
            event_type: "integration.test",
            action: Action::Execute,
            category: Category::Configuration,
            target: Some(Target {
                kind: "connector".into(),
                id: record.connector.clone(),
                name: Some(record.name.clone()),
            }),
            description: format!(
                "connection test of {} ({}) {outcome}",
                record.name, record.connector
            ),
            details: json!({
                "connector": record.connector,
                "config": record.config,
                "credentials": record.credential_names,
                "allow_insecure_http": record.allow_insecure_http,
                "ok": answer["ok"],
                "status": answer["status"],
                "records": answer.get("records"),
                "error": answer.get("error"),
            }),
        },
    )
    .await?;
    tracing::info!(connector = %record.connector, ok = %answer["ok"], "connection test");
    Ok(Json(answer))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Viewer])?;
    let list = state
        .integrations
        .list()?
        .iter()
        .map(|r| integration_json(&state, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "integrations": list })))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Viewer])?;
    let record = state.integrations.get(&id)?;
    Ok(Json(integration_json(&state, &record)?))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let who = caller.require(&[])?.clone();
    let patch: IntegrationPatch = parse_body(
        &body,
        "an object with any of name, config, credentials, schedule, backfill, idle_backoff, requests_per_minute, paused, allow_insecure_http, filters",
    )?;
    let (record, changed) = match state.integrations.update(&id, patch) {
        Ok(done) => done,
        Err(e @ IntegrationError::CredentialsRequired { .. }) => {
            // what a stolen admin token would try: worth an operator's eye
            tracing::warn!(integration = %id, token = %who.token_id, error = %e, "a change of outbound host without the credentials was refused");
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    state.scheduler.upsert(record.clone());
    let (event_type, action, category) = if changed.credentials_rotated {
        (
            "integration.credentials_rotate",
            Action::Update,
            Category::Authorization,
        )
    } else {
        (
            "integration.update",
            Action::Update,
            Category::Configuration,
        )
    };
    audit::record(
        &state.store,
        &who,
        AdminAction {
            event_type,
            action,
            category,
            target: target(&record),
            description: format!(
                "integration {} ({}) changed: {}",
                record.id,
                record.name,
                changed.fields.join(", ")
            ),
            details: json!({"changed": changed.fields}),
        },
    )
    .await?;
    Ok(Json(integration_json(&state, &record)?))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let who = caller.require(&[])?.clone();
    let record = state.integrations.delete(&id)?;
    state.scheduler.remove(&id);
    audit::record(
        &state.store,
        &who,
        AdminAction {
            event_type: "integration.delete",
            action: Action::Delete,
            category: Category::Configuration,
            target: target(&record),
            description: format!(
                "integration {} ({}) removed; its events are kept",
                record.id, record.name
            ),
            details: json!({"connector": record.connector}),
        },
    )
    .await?;
    tracing::info!(integration = %id, "integration removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[])?;
    let record = state.integrations.get(&id)?;
    if record.paused {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the integration is paused; PATCH {\"paused\": false} first",
        ));
    }
    if state
        .integrations
        .registry()
        .get(&record.connector)
        .is_ok_and(|c| c.push_only())
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this integration's connector is push-only: its events arrive at /hooks/<id>",
        ));
    }
    if !state.scheduler.poll_now(&id) {
        return Err(ApiError::not_found(format!(
            "integration {id} is not scheduled"
        )));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "poll": "requested"})),
    ))
}
