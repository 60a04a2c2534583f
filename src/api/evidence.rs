//! `/api/v1/checkpoints` and `/api/v1/events/{id}/proof`: the signed checkpoints of the evidence
//! log and the proofs that tie events and later checkpoints to them. Every hash is hex; every
//! checkpoint is the signed note exactly as signed, which a client checks with the hub's public
//! key (`public_key`, a C2SP verifier key) before trusting any root. After a key rotation
//! `keys` lists every key the log was signed with and the hand-over checkpoints between them,
//! so that a client holding an older key can learn the newer ones from signatures, not from
//! the hub's word.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{query_pairs_among, ApiError, AppState, Caller, ErrorCode, Routes};
use crate::auth::Role;
use crate::checkpoints::Stored;
use crate::evidence::merkle::Hash;
use crate::schema::EventId;
use crate::store::ProofRequestError;
use crate::time::format_micros;

/// Most checkpoints in one page of the history.
const MAX_PAGE: u64 = 1000;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/api/v1/checkpoints", list)
        .post("/api/v1/checkpoints", sign)
        .get("/api/v1/checkpoints/latest", latest)
        .get("/api/v1/checkpoints/consistency", consistency)
        .get("/api/v1/checkpoints/{size}", one)
        .get("/api/v1/events/{id}/proof", proof)
}

impl From<ProofRequestError> for ApiError {
    fn from(e: ProofRequestError) -> Self {
        match e {
            ProofRequestError::Store(e) => e.into(),
            other => ApiError::new(ErrorCode::InvalidParameter, other.to_string()),
        }
    }
}

/// The query's numeric parameters among `allowed`, each at most once.
fn numbers(q: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, u64)>, ApiError> {
    query_pairs_among(q, allowed)?
        .into_iter()
        .map(|(k, v)| {
            let n = v.parse::<u64>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("{k} must be a whole number from 0 to 18446744073709551615, not {v:?}"),
                )
            })?;
            Ok((k, n))
        })
        .collect()
}

fn get(params: &[(String, u64)], name: &str) -> Option<u64> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn describe(stored: &Stored) -> Value {
    json!({
        "size": stored.size(),
        "root": hex::encode(stored.checkpoint.root()),
        "time": stored.time.map(format_micros),
        "note": stored.note,
    })
}

fn note_response(stored: &Stored) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        stored.note.clone(),
    )
        .into_response()
}

/// Runs store reads that may touch hundreds of events off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "a proof task failed"))?
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let params = numbers(q.as_deref(), &["limit", "before"])?;
    let limit = get(&params, "limit").unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("limit must be from 1 to {MAX_PAGE}"),
        ));
    }
    let cp = &state.checkpointer;
    let history = cp.history();
    let page = history.page(get(&params, "before"), limit as usize)?;
    let next_before = (page.len() as u64 == limit)
        .then(|| page.last().map(Stored::size))
        .flatten();
    Ok(Json(json!({
        "origin": cp.origin(),
        "public_key": cp.verifier().vkey(),
        "keys": cp.keyring().entries().iter().map(|k| json!({
            "public_key": k.vkey(),
            "from_size": k.from_size(),
            "handover": k.handover(),
        })).collect::<Vec<_>>(),
        "tree_size": state.store.tree_head().size,
        "signing": match cp.diverged() {
            None => json!({"state": "ok"}),
            Some(why) => json!({"state": "diverged", "reason": why.to_string()}),
        },
        "count": history.len(),
        "latest": history.latest()?.as_ref().map(describe),
        "checkpoints": page.iter().map(describe).collect::<Vec<_>>(),
        "next_before": next_before,
    })))
}

/// Signs a checkpoint now (before maintenance, or to hand an auditor a fresh one): 201 with
/// the new checkpoint, or 200 with the latest when the log has not grown since.
async fn sign(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let cp = &state.checkpointer;
    if let Some(stored) = cp.sign_now().await? {
        return Ok((StatusCode::CREATED, Json(describe(&stored))).into_response());
    }
    if let Some(why) = cp.diverged() {
        return Err(ApiError::new(ErrorCode::Conflict, why.to_string()));
    }
    match cp.history().latest()? {
        Some(stored) => Ok(Json(describe(&stored)).into_response()),
        None => Err(ApiError::new(
            ErrorCode::Conflict,
            "the log is empty: there is nothing to sign yet",
        )),
    }
}

async fn latest(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Viewer])?;
    match state.checkpointer.history().latest()? {
        Some(stored) => Ok(note_response(&stored)),
        None => Err(ApiError::not_found(
            "no checkpoint has been signed yet (the first is signed once the log holds an event)",
        )),
    }
}

fn parse_size(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("a checkpoint is named by its tree size, a whole number; not {text:?}"),
        )
    })
}

async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(size): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Viewer])?;
    let size = parse_size(&size)?;
    match state.checkpointer.history().get(size)? {
        Some(stored) => Ok(note_response(&stored)),
        None => Err(ApiError::not_found(format!(
            "no checkpoint of tree size {size} was signed"
        ))),
    }
}

async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let params = numbers(q.as_deref(), &["from", "to"])?;
    let history = state.checkpointer.history().clone();
    let Some(from) = get(&params, "from") else {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "from (the tree size of the checkpoint you hold) is required",
        ));
    };
    let to = match get(&params, "to") {
        Some(to) => to,
        None => history
            .latest()?
            .map(|s| s.size())
            .ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?,
    };
    if from > to {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("from ({from}) must not be larger than to ({to})"),
        ));
    }
    let store = state.store.clone();
    blocking(move || {
        let proof = store.consistency_proof(from, to)?;
        Ok(json!({
            "from": from,
            "to": to,
            "from_root": hex::encode(store.root_at(from)?),
            "to_root": hex::encode(store.root_at(to)?),
            "proof": hexes(&proof),
            "from_checkpoint": history.get(from)?.map(|s| s.note),
            "to_checkpoint": history.get(to)?.map(|s| s.note),
        }))
    })
    .await
    .map(Json)
}

async fn proof(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Viewer])?;
    let params = numbers(q.as_deref(), &["checkpoint"])?;
    let not_found = || ApiError::not_found(format!("no event with id {id:?}"));
    let seq = EventId::parse(&id).ok_or_else(not_found)?.0;
    if seq == 0 || seq > state.store.tree_head().size {
        return Err(not_found());
    }
    let history = state.checkpointer.history();
    let checkpoint = match get(&params, "checkpoint") {
        Some(size) => history.get(size)?.ok_or_else(|| {
            ApiError::not_found(format!("no checkpoint of tree size {size} was signed"))
        })?,
        None => history
            .latest()?
            .filter(|latest| latest.size() >= seq)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "event {id} is newer than the latest signed checkpoint; the next one is signed within {} s or {} events",
                        state.checkpoint_cadence.interval.as_secs(),
                        state.checkpoint_cadence.every_events
                    ),
                )
                .with_retry_after(5)
            })?,
    };
    if checkpoint.size() < seq {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!(
                "checkpoint {} covers events up to {:016x}; event {id} is not in it",
                checkpoint.size(),
                checkpoint.size()
            ),
        ));
    }
    let store = state.store.clone();
    blocking(move || {
        let size = checkpoint.size();
        let path = store.inclusion_proof(seq, size)?;
        Ok(json!({
            "id": format!("{seq:016x}"),
            "leaf_index": seq - 1,
            "leaf_hash": hex::encode(store.leaf_hash(seq)?),
            "tree_size": size,
            "root": hex::encode(checkpoint.checkpoint.root()),
            "proof": hexes(&path),
            "checkpoint": checkpoint.note,
        }))
    })
    .await
    .map(Json)
}
