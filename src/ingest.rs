//! Posting events from in-house applications: a body of NDJSON or a JSON array is split into
//! lines, each validated on its own; the good ones are stored, the bad ones reported by line
//!
//! Shared by `POST /api/v1/events` and `trailhub ingest`.

use serde_json::value::RawValue;
use serde_json::Value;

use crate::pipeline::{self, Pipeline, Prepared};
use crate::schema::{parse_ingest_line, parse_ingest_line_fast, Event, IntegrationRef};
use crate::store::{prepare, StoreError};
use crate::time::Micros;

pub fn custom_integration() -> IntegrationRef {
    IntegrationRef {
        id: "custom".into(),
        name: "custom".into(),
        connector: "custom".into(),
    }
}

pub use crate::pipeline::{Rejected, Report as IngestReport};

/// Why a whole body could not be read as lines.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    #[error("body is empty")]
    Empty,
    #[error("body is not a valid JSON array: {0}")]
    Array(String),
    #[error("body is not a valid JSON object: {0}")]
    Object(String),
}

/// The format of a body, from its content type or, without one, its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON array of events, or one event object.
    Json,
    Ndjson,
    /// No content type given: a JSON array if the body starts with `[`, NDJSON otherwise.
    Sniff,
}

/// Validated lines, plus the rejects (1-based line numbers; for a JSON array, element numbers).
pub struct ParsedBody {
    pub events: Vec<Event>,
    pub rejected: Vec<Rejected>,
}

pub fn parse_body(
    body: &[u8],
    format: BodyFormat,
    integration: &IntegrationRef,
    ingested_at: Micros,
) -> Result<ParsedBody, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let Some(first) = first else {
        return Err(BodyError::Empty);
    };
    let format = match format {
        BodyFormat::Sniff if first == b'[' => BodyFormat::Json,
        BodyFormat::Sniff => BodyFormat::Ndjson,
        given => given,
    };
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    // `text` is one event's JSON, or why it could not be read
    let mut take = |line: usize, text: Result<&str, String>| {
        let text = match text {
            Ok(t) => t,
            Err(e) => return rejected.push(Rejected { line, error: e }),
        };
        match parse_line(text, integration, ingested_at) {
            Ok(e) => events.push(e),
            Err(error) => rejected.push(Rejected { line, error }),
        }
    };
    if format == BodyFormat::Json && first == b'[' {
        let items: Vec<&RawValue> =
            serde_json::from_slice(body).map_err(|e| BodyError::Array(e.to_string()))?;
        for (i, item) in items.iter().enumerate() {
            take(i + 1, Ok(item.get()));
        }
    } else if format == BodyFormat::Json && first == b'{' {
        let item: &RawValue =
            serde_json::from_slice(body).map_err(|e| BodyError::Object(e.to_string()))?;
        take(1, Ok(item.get()));
    } else {
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            match std::str::from_utf8(line) {
                Err(_) => take(i + 1, Err("line is not valid UTF-8".into())),
                Ok(text) => take(i + 1, Ok(text)),
            }
        }
    }
    Ok(ParsedBody { events, rejected })
}

/// One line (an NDJSON line, an array element, a unified webhook record) validated as an event,
/// or why not.
pub fn parse_line(
    text: &str,
    integration: &IntegrationRef,
    ingested_at: Micros,
) -> Result<Event, String> {
    if let Some(e) = parse_ingest_line_fast(text, integration, ingested_at) {
        return Ok(e);
    }
    // the text parsed as JSON, yet it can still fail as a value (a number out of range, nesting
    // past serde_json's limit): said the same way for every format
    let value = serde_json::from_str::<Value>(text).map_err(not_json)?;
    parse_ingest_line(&value, Some(text), integration, ingested_at).map_err(|e| e.0)
}

fn not_json(e: serde_json::Error) -> String {
    format!("line is not valid JSON: {e}")
}

/// Parse, validate and prepare a body (off the async workers), then store it through the
/// pipeline: the whole ingest path of `POST /api/v1/events` and `trailhub ingest`.
pub async fn ingest_body(
    pipeline: Pipeline<'_>,
    body: bytes::Bytes,
    format: BodyFormat,
    integration: IntegrationRef,
    ingested_at: Micros,
) -> Result<IngestReport, IngestError> {
    let id = integration.id.clone();
    let prepared = pipeline::prepare_off_runtime(move || {
        let parsed = parse_body(&body, format, &integration, ingested_at)?;
        Ok::<_, BodyError>(Prepared {
            events: parsed.events.iter().map(prepare).collect(),
            rejected: parsed.rejected,
            filtered: 0,
        })
    })
    .await??;
    Ok(pipeline
        .commit(&id, prepared, pipeline::Options::pushed())
        .await?)
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the property tests (tests/integration/fuzz.rs): an element of a JSON array (or a
    /// lone object) that is valid JSON text but no `Value` was rejected with serde's bare
    /// message, `number out of range at line 1 column 81`, which names neither the line nor
    /// the field. Every format now says `line is not valid JSON: ...`.
    #[test]
    fn elements_that_are_no_json_value_are_rejected_as_lines() {
        let deep = format!("{}0{}", "[".repeat(200), "]".repeat(200));
        let good = r#"{"time":"2024-05-01T00:00:00Z","event_type":"e","action":"read","actor":{"id":"a"}}"#;
        for element in [
            r#"{"time":"2024-05-01T00:00:00Z","raw":1e400}"#.to_string(),
            deep,
        ] {
            for (body, format) in [
                (format!("[{good},{element}]"), BodyFormat::Json),
                (format!("[{good},{element}]"), BodyFormat::Sniff),
                (element.clone(), BodyFormat::Json),
                (format!("{good}\n{element}"), BodyFormat::Ndjson),
            ] {
                let parsed = parse_body(body.as_bytes(), format, &custom_integration(), 0)
                    .expect("the body reads");
                let rejected = parsed.rejected.last().expect("the element is rejected");
                assert!(
                    rejected.error.starts_with("line is not valid JSON: "),
                    "{format:?}: {}",
                    rejected.error
                );
            }
        }
    }

    /// Found by the property tests (tests/integration/fuzz.rs): serde_json without its
    /// `float_roundtrip` feature reads some floats one ulp off, so `2.1221482989063873e275` in
    /// a line's `changes` was stored and served as `2.122148298906387e275`.
    #[test]
    fn a_float_is_served_back_as_posted() {
        let posted = "2.1221482989063873e275";
        let line = format!(
            r#"{{"time":"2024-05-01T00:00:00Z","event_type":"e","action":"update","actor":{{"id":"a"}},"changes":[{{"field":"f","old":1,"new":{posted}}}]}}"#
        );
        let parsed = parse_body(
            line.as_bytes(),
            BodyFormat::Ndjson,
            &custom_integration(),
            0,
        )
        .expect("reads");
        let event = parsed.events.first().expect("accepted");
        let served = crate::store::prepare::full_json(1, &prepare(event).body);
        let back: Value = serde_json::from_slice(&served).expect("served JSON");
        let want: f64 = posted.parse().expect("a float");
        assert_eq!(back["changes"][0]["new"].as_f64(), Some(want));
    }
}
