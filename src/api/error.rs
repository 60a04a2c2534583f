//! The one table of API errors: code → HTTP status → `{"error": {"code", "message"}}`

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::ingest::{BodyError, IngestError};
use crate::store::StoreError;
use crate::timeline::ParamError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidParameter,
    InvalidBody,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    Gone,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    StorageFull,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Gone => "gone",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidParameter | ErrorCode::InvalidBody => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Gone => StatusCode::GONE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (503 and 429 answers).
    pub retry_after: Option<u64>,
    /// The store refused or failed a write: the router's `observe` layer says whether only a
    /// restart helps (see [`StoreRefusal`]).
    pub from_store: bool,
    /// The request field at fault (`config.base_url`, `condition.threshold`, `since`), sent as
    /// `error.field` so a form can show the message next to it.
    pub field: Option<String>,
}

/// Marks a response whose error came from the store, for the layer that knows the store's state.
#[derive(Debug, Clone, Copy)]
pub struct StoreRefusal;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            from_store: false,
            field: None,
        }
    }

    /// The same error, naming the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}});
        if let Some(field) = &self.field {
            body["error"]["field"] = serde_json::Value::String(field.clone());
        }
        let mut response = (self.code.status(), Json(body)).into_response();
        if self.from_store {
            response.extensions_mut().insert(StoreRefusal);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if self.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        let field = e.field.clone();
        ApiError::new(ErrorCode::InvalidParameter, e.to_string()).with_field(field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let mut error = match e {
            StoreError::StorageFull(_) => {
                let e = e.to_string();
                tracing::warn!(error = %e, "store write refused: disk full");
                // the free-space reserve; a store that failed after an I/O error is told apart by
                // `api::observe`, which can see the store (`store_failed_error`)
                ApiError::new(
                    ErrorCode::StorageFull,
                    format!("the hub's disk is below its free-space reserve ({e}): this request was not acknowledged; writes resume by themselves once space is freed, so retry then; reads still work"),
                )
            }
            StoreError::Closed => ApiError::new(
                ErrorCode::Unavailable,
                "the hub is shutting down; retry later",
            )
            .with_retry_after(5),
            StoreError::Busy(waiting) => {
                tracing::debug!(waiting, "write refused: the store's queue is full");
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("the hub's write queue is full ({waiting} events waiting); nothing of this request was stored, retry shortly"),
                )
                .with_retry_after(1)
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    ErrorCode::Internal,
                    "the hub failed to read or write its store; see its log",
                )
            }
        };
        error.from_store = true;
        error
    }
}

/// The answer to a write while the store refuses every write after a failed write or flush: only
/// a restart helps (sled recovers what reached the disk), freeing space alone does not.
pub fn store_failed_error(failure: &StoreError) -> ApiError {
    let code = match failure {
        StoreError::StorageFull(_) => ErrorCode::StorageFull,
        _ => ErrorCode::Internal,
    };
    let mut error = ApiError::new(
        code,
        format!("the hub's store failed after an I/O error ({failure}) and refuses every write until the hub is restarted (freeing space alone does not help): this request was not acknowledged; reads still work"),
    );
    error.from_store = true;
    error
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        ApiError::new(ErrorCode::InvalidBody, e.to_string())
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Body(b) => b.into(),
            IngestError::Store(s) => s.into(),
        }
    }
}
