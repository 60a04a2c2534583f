//! `/api/v1/events`: ingest, timeline pages, one event, histogram, export

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio_stream::wrappers::ReceiverStream;

use super::{query_pairs, ApiError, AppState, Caller, ErrorCode, Routes};
use crate::audit::{self, AdminAction};
use crate::auth::Role;
use crate::ingest::{self, BodyFormat};
use crate::jobs::writer::{write_events, ChunkSender, ExportFormat};
use crate::pipeline::Pipeline;
use crate::schema::{Action, Category, EventId};
use crate::store::query::{BucketSize, Filter};
use crate::store::Dimension;
use crate::time::{format_micros, now_micros};
use crate::timeline;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/events", list)
        .post("/api/v1/events", post_events)
        .get("/api/v1/events/histogram", histogram)
        .get("/api/v1/events/export", export)
        .get("/api/v1/events/{id}", one)
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let Some(ct) = super::media_type(headers) else {
        return Ok(BodyFormat::Sniff);
    };
    match ct.as_str() {
        "application/json" | "" => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" | "text/plain" => Ok(BodyFormat::Ndjson),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("content type {other:?} is not accepted; send application/x-ndjson or application/json"),
        )),
    }
}

async fn post_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Ingest])?;
    let format = body_format(&headers)?;
    let bytes = super::read_body(body, &headers, state.max_body_bytes)
        .await
        .map_err(|mut e| {
            if e.code == ErrorCode::PayloadTooLarge {
                e.message.push_str("; split it into smaller requests");
            }
            e
        })?;
    let report = ingest::ingest_body(
        Pipeline::new(&state.store, Some(&state.metrics)),
        bytes,
        format,
        ingest::custom_integration(),
        now_micros(),
    )
    .await?;
    let status = if report.all_rejected() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Viewer])?;
    let request = timeline::parse(
        &query_pairs(q.as_deref())?,
        &["limit", "cursor", "enrich"],
        now_micros(),
    )?;
    let limit = request.limit()?;
    let after = request.cursor()?;
    let enrich = enrich_flag(request.extra.get("enrich").map(String::as_str))?;
    let store = state.store.clone();
    let enricher = state.enricher.clone();
    let (events, next) = tokio::task::spawn_blocking(move || {
        let (events, next) = store.page(&request.filter, after, limit)?;
        if !enrich {
            return Ok((events, next));
        }
        // derived per served copy; the stored bytes stay as they are
        let enriched = events
            .iter()
            .map(|e| crate::enrich::with_enrichment(e, &enricher.of_event_json(e)))
            .collect();
        Ok::<_, crate::store::StoreError>((enriched, next))
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "query panicked"))??;
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    match next {
        Some(p) => body.extend_from_slice(format!("\"{}\"", p.encode()).as_bytes()),
        None => body.extend_from_slice(b"null"),
    }
    // events of this page put back from the archive, by id: when (their bytes are as first stored)
    body.extend_from_slice(b",\"restored\":");
    let restored = state.store.restored_ranges();
    let marks: serde_json::Map<String, serde_json::Value> = events
        .iter()
        .filter_map(|e| {
            let id = std::str::from_utf8(e.get(7..23)?).ok()?;
            let at = restored.restored_at(EventId::parse(id)?.0)?;
            Some((id.to_string(), format_micros(at).into()))
        })
        .collect();
    body.extend_from_slice(serde_json::Value::Object(marks).to_string().as_bytes());
    body.push(b'}');
    Ok(json_response(body))
}

/// `enrich=true|false` (default false): whether served events carry their `enrichment`.
fn enrich_flag(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!(
                "`enrich`: expected true or false, got {:?}",
                other.chars().take(32).collect::<String>()
            ),
        )),
    }
}

/// One event. Its body is exactly the bytes the evidence log's leaf hashes (so a verifier can
/// hash what it is served); with `enrich=true` it is a copy with `enrichment` added, which is
/// derived at read time and never stored.
async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Viewer])?;
    let pairs = super::query_pairs_among(q.as_deref(), &["enrich"])?;
    let enrich = enrich_flag(
        pairs
            .iter()
            .find(|(k, _)| k == "enrich")
            .map(|(_, v)| v.as_str()),
    )?;
    let not_found = || ApiError::not_found(format!("no event with id {id:?}"));
    let Some(seq) = EventId::parse(&id) else {
        return Err(not_found());
    };
    match state.store.event_json(seq.0)? {
        Some(json) => {
            let json = if enrich {
                crate::enrich::with_enrichment(&json, &state.enricher.of_event_json(&json))
            } else {
                json
            };
            let mut response = json_response(json);
            if let Some(at) = state.store.restored_ranges().restored_at(seq.0) {
                if let Ok(v) = header::HeaderValue::from_str(&format_micros(at)) {
                    response.headers_mut().insert("trailhub-restored-at", v);
                }
            }
            Ok(response)
        }
        None if state.store.is_purged(seq.0) => Err(ApiError::not_found(format!(
            "event {id} was purged by retention (its retention.purge record in the trailhub integration says when and why; an archived copy can be restored)"
        ))),
        None => Err(not_found()),
    }
}

async fn histogram(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Viewer])?;
    let now = now_micros();
    let request = timeline::parse(&query_pairs(q.as_deref())?, &["bucket", "group_by"], now)?;
    let bucket_text = request
        .extra
        .get("bucket")
        .map(String::as_str)
        .unwrap_or("1h");
    let size = BucketSize::parse(bucket_text).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("`bucket`: expected one of 1m, 5m, 1h, 1d, got {bucket_text:?}"),
        )
    })?;
    let group_name = request.extra.get("group_by").cloned();
    let group = match &group_name {
        None => Dimension::Total,
        Some(g) => Dimension::parse(g).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidParameter, format!("`group_by`: expected one of action, category, integration, actor, outcome, got {g:?}"))
        })?,
    };
    let (since, until) = timeline::histogram_range(&request.filter, size, now)?;
    let filter = Filter {
        since: Some(since),
        until: Some(until),
        fields: request.filter.fields,
    };
    let store = state.store.clone();
    let counts =
        tokio::task::spawn_blocking(move || store.histogram(&filter, since, until, size, group))
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "histogram panicked"))??;
    let buckets: Vec<serde_json::Value> = counts
        .into_iter()
        .map(|(start, groups)| {
            let total: u64 = groups.values().sum();
            let counts: serde_json::Map<String, serde_json::Value> = if group == Dimension::Total {
                std::iter::once(("all".to_string(), total.into())).collect()
            } else {
                groups.into_iter().map(|(k, v)| (k, v.into())).collect()
            };
            serde_json::json!({"start": format_micros(start), "total": total, "counts": counts})
        })
        .collect();
    Ok(Json(serde_json::json!({
        "bucket": bucket_text,
        "group_by": group_name,
        "since": format_micros(since),
        "until": format_micros(until),
        "buckets": buckets,
    }))
    .into_response())
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let who = caller.require(&[Role::Viewer])?.clone();
    let pairs = query_pairs(q.as_deref())?;
    let request = timeline::parse(&pairs, &["format", "proofs"], now_micros())?;
    let proofs = match request.extra.get("proofs").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("`proofs`: expected true or false, got {other:?}"),
            ))
        }
    };
    let format_text = request
        .extra
        .get("format")
        .map(String::as_str)
        .unwrap_or("ndjson");
    let format = ExportFormat::parse(format_text).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!(
                "`format`: expected one of {}, got {format_text:?}",
                ExportFormat::EXPECTED
            ),
        )
    })?;
    if proofs && format != ExportFormat::Ndjson {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "`proofs=true` exports an evidence bundle, which is NDJSON: use format=ndjson",
        ));
    }
    let described: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    audit::record(
        &state.store,
        &who,
        AdminAction {
            event_type: "export.create",
            action: Action::Export,
            category: Category::DataAccess,
            target: None,
            description: format!("events exported ({})", if described.is_empty() { "all".to_string() } else { described.join(" ") }),
            details: serde_json::json!({"query": pairs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>()}),
        },
    )
    .await?;

    // a bundle's proofs are against a checkpoint signed now, which covers the export's record too
    let checkpoint =
        if proofs {
            let cp = &state.checkpointer;
            cp.sign_now().await?;
            if let Some(why) = cp.diverged() {
                return Err(ApiError::new(ErrorCode::Conflict, why.to_string()));
            }
            Some(cp.history().latest()?.ok_or_else(|| {
                ApiError::new(ErrorCode::Conflict, "no checkpoint could be signed")
            })?)
        } else {
            None
        };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = state.store.clone();
    let filter = request.filter;
    let file_name = if proofs {
        "trailhub-evidence"
    } else {
        "trailhub-export"
    };
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkSender::new(tx);
        match write_events(
            &store,
            &filter,
            format,
            checkpoint.as_ref(),
            &mut out,
            |_| Ok(()),
        ) {
            Ok(_) => {
                let _ = out.finish();
            }
            Err(e) => {
                tracing::warn!(error = %e, "export stopped early");
                out.fail(e.to_string());
            }
        }
    });
    let (content_type, extension) = (format.content_type(), format.extension());
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}.{extension}\""),
            ),
        ],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}
