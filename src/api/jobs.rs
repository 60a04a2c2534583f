//! Export jobs and reports: `/api/v1/exports`, `/api/v1/reports`, `/api/v1/reports/schedules`.
//! Viewers may make, list and download exports and reports (the timeline's export is theirs
//! too) and cancel or delete their own; schedules are an admin's. Every create, download and
//! delete is recorded by `crate::jobs` before it is answered.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query_pairs_among, read_body, ApiError, AppState, Caller, ErrorCode, Routes};
use crate::auth::{Principal, Role};
use crate::jobs::report::kinds;
use crate::jobs::writer::ExportFormat;
use crate::jobs::{JobError, JobKind, Jobs, NewSchedule, Spec};
use crate::time::now_micros;

/// Largest body of a job or schedule request.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Jobs one list answers unless `limit` says otherwise.
const DEFAULT_LIST: usize = 100;
/// Bytes per chunk of a download.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/exports", list_exports)
        .post("/api/v1/exports", create_export)
        .get("/api/v1/exports/{id}", show_export)
        .get("/api/v1/exports/{id}/download", download_export)
        .delete("/api/v1/exports/{id}", delete_export)
        .get("/api/v1/reports", list_reports)
        .post("/api/v1/reports", create_report)
        .get("/api/v1/reports/schedules", list_schedules)
        .post("/api/v1/reports/schedules", add_schedule)
        .delete("/api/v1/reports/schedules/{id}", remove_schedule)
        .get("/api/v1/reports/{id}", show_report)
        .get("/api/v1/reports/{id}/download", download_report)
        .delete("/api/v1/reports/{id}", delete_report)
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid { ref field, .. } => {
                let field = field.clone();
                ApiError::new(ErrorCode::InvalidBody, e.to_string()).with_field(field)
            }
            JobError::Unprocessable(m) => ApiError::new(ErrorCode::Unprocessable, m),
            JobError::NotFound(m) => ApiError::not_found(m),
            JobError::NotReady(m) => ApiError::new(ErrorCode::Conflict, m),
            JobError::Expired(m) => ApiError::new(ErrorCode::Gone, m),
            JobError::Busy(m) => ApiError::new(ErrorCode::TooManyRequests, m).with_retry_after(30),
            JobError::Store(s) => s.into(),
            JobError::Io(m) => {
                tracing::error!(error = %m, "export job files");
                ApiError::new(
                    ErrorCode::Internal,
                    "the hub failed to read or write a job's files; see its log",
                )
            }
        }
    }
}

fn jobs(state: &AppState) -> &Jobs {
    &state.jobs
}

async fn body_json<T: for<'de> Deserialize<'de>>(
    body: Body,
    headers: &HeaderMap,
    shape: &str,
) -> Result<T, ApiError> {
    let bytes: Bytes = read_body(body, headers, MAX_REQUEST_BYTES).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("expected {shape}: {e}")))
}

/// `limit` of a list: 1 to `crate::jobs::MAX_LIST`.
fn list_limit(q: Option<&str>) -> Result<usize, ApiError> {
    let pairs = query_pairs_among(q, &["limit"])?;
    match pairs.first() {
        None => Ok(DEFAULT_LIST),
        Some((_, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::jobs::MAX_LIST).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "`limit`: expected a whole number from 1 to {}, got {:?}",
                        crate::jobs::MAX_LIST,
                        v.chars().take(32).collect::<String>()
                    ),
                )
            }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewExport {
    name: Option<String>,
    format: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    filter: serde_json::Map<String, Value>,
}

async fn create_export(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who = caller.require(&[Role::Viewer])?.clone();
    let new: NewExport = body_json(
        body,
        &headers,
        "{\"name\", \"format\": \"csv\"|\"json\"|\"ndjson\", \"since\", \"until\", \"filter\": {...}}",
    )
    .await?;
    let format_text = new.format.as_deref().unwrap_or("ndjson");
    let format = ExportFormat::parse(format_text).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "`format`: expected one of {}, got {:?}",
                ExportFormat::EXPECTED,
                format_text.chars().take(32).collect::<String>()
            ),
        )
        .with_field("format")
    })?;
    let range = jobs(&state).check_range(
        new.since.as_deref(),
        new.until.as_deref(),
        &new.filter,
        now_micros(),
    )?;
    let job = jobs(&state)
        .create(&who, new.name, Spec::Export { format, range })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job.to_json())).into_response())
}

async fn list_exports(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let (list, total) = jobs(&state).list(JobKind::Export, list_limit(q.as_deref())?)?;
    Ok(Json(json!({
        "exports": list.iter().map(|j| j.to_json()).collect::<Vec<_>>(),
        "total": total,
    })))
}

async fn show_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    Ok(Json(jobs(&state).get(JobKind::Export, &id)?.to_json()))
}

async fn download_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let who = caller.require(&[Role::Viewer])?.clone();
    let pairs = query_pairs_among(q.as_deref(), &["format"])?;
    let job = jobs(&state).get(JobKind::Export, &id)?;
    let Spec::Export { format, .. } = job.spec else {
        return Err(ApiError::not_found("no export job with that id"));
    };
    if let Some((_, asked)) = pairs.first() {
        if asked != format.as_str() {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "`format`: this export was made as {}; make another job for {:?}",
                    format.as_str(),
                    asked.chars().take(32).collect::<String>()
                ),
            ));
        }
    }
    download(&state, &who, JobKind::Export, &id, format.as_str()).await
}

async fn delete_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = caller.require(&[Role::Viewer])?.clone();
    delete(&state, &who, JobKind::Export, &id).await
}

/// A viewer may delete the jobs it made; an admin any.
async fn delete(
    state: &AppState,
    who: &Principal,
    kind: JobKind,
    id: &str,
) -> Result<StatusCode, ApiError> {
    let job = jobs(state).get(kind, id)?;
    if who.role != Role::Admin && job.created_by.token_id != who.token_id {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this {} job was made by another token; only its maker or an admin may delete it",
                kind.noun()
            ),
        ));
    }
    jobs(state).delete(who, kind, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Streams a completed job's file in chunks (memory stays at one chunk), after recording the
/// download.
async fn download(
    state: &AppState,
    who: &Principal,
    kind: JobKind,
    id: &str,
    format: &str,
) -> Result<Response, ApiError> {
    let (job, output, file) = jobs(state).open_download(who, kind, id, format).await?;
    let content_type = match output.format.as_str() {
        "pdf" => "application/pdf",
        other => ExportFormat::parse(other)
            .map(|f| f.content_type())
            .unwrap_or("application/octet-stream"),
    };
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; DOWNLOAD_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, output.bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"trailhub-{}-{}.{}\"",
                    kind.noun(),
                    job.id,
                    output.format
                ),
            ),
            (
                header::HeaderName::from_static("trailhub-sha256"),
                output.sha256.clone(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReport {
    name: Option<String>,
    kind: String,
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    filter: serde_json::Map<String, Value>,
}

async fn create_report(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who = caller.require(&[Role::Viewer])?.clone();
    let new: NewReport = body_json(
        body,
        &headers,
        "{\"kind\", \"since\", \"until\", \"filter\": {...}, \"name\"}",
    )
    .await?;
    let kind = kinds::kind(&new.kind).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "`kind`: no report kind {:?}; known: {}",
                new.kind.chars().take(64).collect::<String>(),
                kinds::names()
            ),
        )
        .with_field("kind")
    })?;
    let range = jobs(&state).check_range(
        new.since.as_deref(),
        new.until.as_deref(),
        &new.filter,
        now_micros(),
    )?;
    let job = jobs(&state)
        .create(
            &who,
            new.name,
            Spec::Report {
                report: kind.name.to_string(),
                range,
                schedule: None,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job.to_json())).into_response())
}

async fn list_reports(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let (list, total) = jobs(&state).list(JobKind::Report, list_limit(q.as_deref())?)?;
    Ok(Json(json!({
        "reports": list.iter().map(|j| j.to_json()).collect::<Vec<_>>(),
        "total": total,
        "kinds": kinds::KINDS.iter().map(|k| json!({
            "name": k.name,
            "title": k.title,
            "about": k.about,
            "selects": k.describe(),
            "columns": k.headers(),
        })).collect::<Vec<_>>(),
    })))
}

async fn show_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    Ok(Json(jobs(&state).get(JobKind::Report, &id)?.to_json()))
}

async fn download_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let who = caller.require(&[Role::Viewer])?.clone();
    let pairs = query_pairs_among(q.as_deref(), &["format"])?;
    let format = match pairs.first().map(|(_, v)| v.as_str()) {
        None | Some("pdf") => "pdf",
        Some("csv") => "csv",
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "`format`: expected csv or pdf, got {:?}",
                    other.chars().take(32).collect::<String>()
                ),
            ))
        }
    };
    download(&state, &who, JobKind::Report, &id, format).await
}

async fn delete_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = caller.require(&[Role::Viewer])?.clone();
    delete(&state, &who, JobKind::Report, &id).await
}

async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let now = now_micros();
    let list = jobs(&state).schedules()?;
    Ok(Json(json!({
        "schedules": list.iter().map(|s| s.to_json(now)).collect::<Vec<_>>(),
    })))
}

async fn add_schedule(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who = caller.require(&[])?.clone();
    let new: NewSchedule = body_json(
        body,
        &headers,
        "{\"kind\", \"cron\", \"range\": \"P7D\", \"time_zone\", \"filter\": {...}, \"channels\": [ids], \"name\"}",
    )
    .await?;
    let schedule = jobs(&state).add_schedule(&who, new).await?;
    Ok((StatusCode::CREATED, Json(schedule.to_json(now_micros()))).into_response())
}

async fn remove_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = caller.require(&[])?.clone();
    if jobs(&state).remove_schedule(&who, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no report schedule with that id"))
    }
}
