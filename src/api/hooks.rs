//! `POST /hooks/{integration_id}`: a vendor's push, verified against the integration's secret
//! on the raw body, normalised by the connector's own mapping (off the async workers), stored
//! through the pipeline every source shares (so a pushed event and the same event polled are
//! stored once), and only then answered 2xx. Deliveries that only announce activity nudge an
//! immediate poll instead. `GET` on the same path answers the vendor's verification handshake
//! where the scheme has one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ApiError, AppState, ErrorCode, Routes};
use crate::connectors::definition::{Mapping, RecordsSpec, WebhookSpec};
use crate::connectors::integrations::{IntegrationError, IntegrationRecord};
use crate::connectors::normalise::{normalise, page_records};
use crate::connectors::Connector;
use crate::metrics::WebhookLabels;
use crate::pipeline::{self, Pipeline, Prepared, Rejected};
use crate::schema::IntegrationRef;
use crate::store::prepare;
use serde_json::value::RawValue;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/hooks/{integration_id}", handshake)
        .post("/hooks/{integration_id}", receive)
}

/// One warning per integration per this long: a flood of bad deliveries must not flood the log.
const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether `integration`'s `what` may be logged now: once per `REJECT_LOG_EVERY`.
fn may_log(integration: &str, what: &'static str) -> bool {
    static LAST: Mutex<Option<HashMap<(String, &'static str), Instant>>> = Mutex::new(None);
    let Ok(mut last) = LAST.lock() else {
        return false;
    };
    let map = last.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    let key = (integration.to_string(), what);
    if map
        .get(&key)
        .is_some_and(|t| now.duration_since(*t) < REJECT_LOG_EVERY)
    {
        return false;
    }
    map.insert(key, now);
    true
}

fn log_rejection(integration: &str, reason: &str) {
    if may_log(integration, "rejected") {
        tracing::warn!(integration = %integration, reason, "webhook delivery rejected (further rejections for this integration are counted in /metrics, not logged, for 10 s)");
    }
}

/// The `integration` label of a delivery whose path names no integration that takes deliveries:
/// one series for all of them, however many random paths are tried.
const UNKNOWN_INTEGRATION: &str = "unknown";

fn count(state: &AppState, integration: &str, result: &str) {
    state
        .metrics
        .webhook_deliveries
        .get_or_create(&WebhookLabels {
            integration: integration.to_string(),
            result: result.to_string(),
        })
        .inc();
}

fn delivery_too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("delivery larger than {limit} bytes, the cap of this connector's deliveries"),
    )
}

/// Counts a delivery in `trailhub_webhook_deliveries_in_flight` while it is alive.
struct InFlight(std::sync::Arc<crate::metrics::Metrics>);

impl InFlight {
    fn enter(state: &AppState) -> InFlight {
        state.metrics.webhooks_in_flight.inc();
        InFlight(state.metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.webhooks_in_flight.dec();
    }
}

/// An integration that takes deliveries (its connector has a `[webhook]` table, it is not
/// paused), and its connector.
struct Receiving {
    record: IntegrationRecord,
    connector: std::sync::Arc<Connector>,
}

impl Receiving {
    fn spec(&self) -> &WebhookSpec {
        self.connector
            .webhook
            .as_ref()
            .expect("receiving() admits only connectors with a [webhook] table")
    }
}

fn receiving(state: &AppState, id: &str) -> Result<Receiving, ApiError> {
    let record = match state.integrations.get(id) {
        Ok(r) => r,
        Err(IntegrationError::NotFound(_)) => {
            return Err(ApiError::not_found(format!(
                "no integration with id {id:?}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let connector = state
        .integrations
        .registry()
        .get(&record.connector)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    if connector.webhook.is_none() {
        return Err(ApiError::not_found(format!(
            "the {} connector does not receive webhooks",
            connector.name
        )));
    }
    if record.paused {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this integration is paused and accepts no deliveries",
        ));
    }
    Ok(Receiving { record, connector })
}

async fn handshake(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let receiving = receiving(&state, &id)?;
    let spec = receiving.spec();
    match spec.signature.verification_handshake(&headers) {
        None => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "deliveries are POSTed; this scheme has no GET handshake",
        )),
        Some(Err(reason)) => {
            count(&state, &id, reason.code());
            Err(ApiError::new(
                ErrorCode::InvalidParameter,
                reason.to_string(),
            ))
        }
        Some(Ok(reply)) => Ok((
            [(header::CONTENT_TYPE, "application/json")],
            reply.to_json(),
        )
            .into_response()),
    }
}

async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let receiving = match receiving(&state, &id) {
        Ok(r) => r,
        Err(e) => {
            // the id comes from the path: only a stored integration's id becomes a label
            let known = !matches!(
                state.integrations.get(&id),
                Err(IntegrationError::NotFound(_))
            );
            count(
                &state,
                if known { &id } else { UNKNOWN_INTEGRATION },
                e.code.as_str(),
            );
            return Err(e);
        }
    };
    let outcome = receive_inner(&state, &id, receiving, &headers, body).await;
    if let Err(e) = &outcome {
        if e.code != ErrorCode::Unauthorized {
            count(&state, &id, e.code.as_str());
        }
    }
    outcome
}

async fn receive_inner(
    state: &AppState,
    id: &str,
    receiving: Receiving,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (record, connector, spec) = (&receiving.record, &receiving.connector, receiving.spec());
    if let Some(ct) = crate::api::media_type(headers) {
        if ct != "application/json" && !ct.ends_with("+json") {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("content type {ct:?} is not accepted; deliveries are application/json"),
            ));
        }
    }
    // the cap is checked before any work and while reading (Content-Length first, then the
    // stream), and only a bounded number of deliveries are read and verified at once: a flood of
    // large forged deliveries costs at most webhook_concurrency × cap bytes
    let limit = spec.max_body_bytes.unwrap_or(state.webhook_max_body_bytes);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(delivery_too_large(limit));
    }
    let Ok(_permit) = state.webhook_permits.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "too many webhook deliveries are being verified right now; retry shortly",
        )
        .with_retry_after(1));
    };
    let _in_flight = InFlight::enter(state);
    let bytes = crate::api::read_body(body, headers, limit)
        .await
        .map_err(|e| match e.code {
            ErrorCode::PayloadTooLarge => delivery_too_large(limit),
            _ => e,
        })?;

    let opened = state.integrations.opened(record, connector)?;
    let secrets: Vec<crate::config::Secret> = spec
        .secrets
        .iter()
        .filter_map(|name| opened.credentials.get(name).cloned())
        .collect();
    let now = crate::time::now_micros() / crate::time::MICROS_PER_SEC;
    let verified = match spec.signature.verify(&secrets, headers, &bytes, now) {
        Ok(v) => v,
        Err(reason) => {
            count(state, id, reason.code());
            log_rejection(id, reason.code());
            if reason.is_configuration_fault() {
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    format!(
                        "{reason}: set the integration's {} credential",
                        spec.secrets.join(" or ")
                    ),
                ));
            }
            return Err(ApiError::new(ErrorCode::Unauthorized, reason.to_string()));
        }
    };

    if verified.matched_secret > 0 && may_log(id, "previous secret") {
        // the rotation is not finished while the vendor still signs with an old secret
        tracing::info!(integration = %id, "a delivery verified with a previous secret; remove it once the vendor signs with the current one");
    }
    let Some(records_spec) = &spec.records else {
        // The delivery only says something happened: fetch it now.
        state.scheduler.poll_now(id);
        count(state, id, "nudged");
        tracing::debug!(integration = %id, delivery = ?verified.delivery_id.as_ref().map(|d| d.to_string()), "webhook nudged a poll");
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"polled": true})),
        )
            .into_response());
    };
    // verified on the raw bytes; what is stored, logged or answered carries no secret of ours
    let scrubbed = std::str::from_utf8(&bytes)
        .map(|text| opened.scrubber.scrub_json(text).into_owned())
        .map_err(|_| ApiError::new(ErrorCode::InvalidBody, "delivery is not UTF-8"))?;
    let reference = record.reference();
    // records that are not unified events go through the poll part's mapping
    let mapped = match (spec.unified, &connector.poll) {
        (true, _) => None,
        (false, Some(poll)) => Some(poll.clone()),
        (false, None) => return Err(ApiError::new(
            ErrorCode::Internal,
            "this connector's deliveries are not unified events, and it has no [map] to read them",
        )),
    };
    let records_spec = records_spec.clone();
    // checked when the integration was stored; a record that fails now collects everything
    let filters = record.filters.compile().unwrap_or_default();
    let prepared = pipeline::prepare_for(scrubbed.len(), move || {
        let map = mapped.as_ref().map(|poll| &poll.map);
        prepare_delivery(&records_spec, map, &reference, &filters, &scrubbed)
    })
    .await??;
    for r in &prepared.rejected {
        tracing::debug!(integration = %id, line = r.line, error = %r.error, "webhook record rejected");
    }
    // a full write queue answers 503 with Retry-After: the vendor redelivers later
    let report = Pipeline::new(&state.store, Some(&state.metrics))
        .commit(id, prepared, pipeline::Options::pushed())
        .await?;
    if report.all_rejected() {
        count(state, id, "invalid_records");
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(report)).into_response());
    }
    count(state, id, "stored");
    Ok(Json(report).into_response())
}

/// A verified delivery's records as events, validated as `POST /api/v1/events` lines when the
/// connector is `unified` (`map` is `None`), normalised by the mapping otherwise (CPU work: run
/// off the runtime).
fn prepare_delivery(
    records_spec: &RecordsSpec,
    map: Option<&Mapping>,
    reference: &IntegrationRef,
    filters: &crate::connectors::filters::Filters,
    text: &str,
) -> Result<Prepared, ApiError> {
    let does_not_parse = |e: String| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("delivery does not parse: {e}"),
        )
    };
    let records = if records_spec.path.is_none() && text.trim_start().starts_with('{') {
        // one record rather than an array of them
        vec![serde_json::from_str::<&RawValue>(text).map_err(|e| does_not_parse(e.to_string()))?]
    } else {
        page_records(text, records_spec).map_err(|e| does_not_parse(e.to_string()))?
    };
    let ingested_at = crate::time::now_micros();
    let mut prepared = Prepared::default();
    for (i, raw) in records.into_iter().enumerate() {
        let event = match map {
            Some(map) => normalise(map, reference, raw, i, ingested_at).map_err(|e| e.to_string()),
            // an in-house application's events: validated exactly as POST /api/v1/events lines
            None => crate::ingest::parse_line(raw.get(), reference, ingested_at),
        };
        match event {
            Ok(event) if !filters.keeps(&event) => prepared.filtered += 1,
            Ok(event) => prepared.events.push(prepare(&event)),
            Err(error) => prepared.rejected.push(Rejected { line: i + 1, error }),
        }
    }
    Ok(prepared)
}
