//! The one writer of events as CSV, JSON or NDJSON: the streamed export
//! (`GET /api/v1/events/export`) and export jobs both write through it, so a job's file and the
//! stream of the same filter are the same bytes. CSV cells go through `crate::spreadsheet`, so no
//! formula reaches a spreadsheet. Memory stays at one event and the output's buffer however many
//! events match.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::checkpoints::Stored;
use crate::evidence::bundle::{BundleEvent, BundleHeader, BUNDLE_FORMAT};
use crate::schema::Event;
use crate::store::query::Filter;
use crate::store::Store;
use crate::time::format_micros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Ndjson,
    Csv,
    Json,
}

impl ExportFormat {
    pub const EXPECTED: &'static str = "ndjson, csv, json";

    pub fn parse(s: &str) -> Option<ExportFormat> {
        Some(match s {
            "ndjson" => ExportFormat::Ndjson,
            "csv" => ExportFormat::Csv,
            "json" => ExportFormat::Json,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
        }
    }

    /// The file name extension, which is also the format's name.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
        }
    }
}

/// The columns of an event export's CSV, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "time",
    "ingested_at",
    "integration_id",
    "integration_name",
    "connector",
    "source_id",
    "event_type",
    "category",
    "action",
    "outcome",
    "actor_id",
    "actor_name",
    "actor_email",
    "actor_type",
    "actor_ip",
    "actor_user_agent",
    "targets",
    "changes",
    "session_id",
    "description",
    "severity",
];

/// Why an export stopped before its last event.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Failed(String),
    /// The caller's `after_each` said stop (a client went away, a job was cancelled).
    #[error("{0}")]
    Stopped(String),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Failed(e.to_string())
    }
}

impl From<csv::Error> for WriteError {
    fn from(e: csv::Error) -> Self {
        WriteError::Failed(e.to_string())
    }
}

impl From<crate::store::StoreError> for WriteError {
    fn from(e: crate::store::StoreError) -> Self {
        WriteError::Failed(e.to_string())
    }
}

/// Writes every event matching `filter`, newest first, in `format` to `out`; answers how many.
/// With a checkpoint, the NDJSON is an evidence bundle (`evidence::bundle`): a header with the
/// checkpoint, then each event it covers with its inclusion proof. `after_each` is called with
/// the count written so far after every event; its error stops the export.
pub fn write_events<W: Write>(
    store: &Store,
    filter: &Filter,
    format: ExportFormat,
    checkpoint: Option<&Stored>,
    out: W,
    mut after_each: impl FnMut(u64) -> Result<(), String>,
) -> Result<u64, WriteError> {
    let mut written = 0u64;
    let mut each = |n: &mut u64| -> Result<(), WriteError> {
        *n += 1;
        after_each(*n).map_err(WriteError::Stopped)
    };
    if format == ExportFormat::Csv {
        // one CSV writer for the whole export: every field quoted, formulas neutralised
        let mut w = crate::spreadsheet::csv_writer(out);
        w.write_record(CSV_COLUMNS)?;
        for json in events(store, filter, None) {
            let (seq, json) = json?;
            let event: Event = serde_json::from_slice(&json).map_err(|e| {
                WriteError::Failed(format!("event {seq:016x} does not decode: {e}"))
            })?;
            w.write_record(
                csv_cells(&event)
                    .iter()
                    .map(|c| crate::spreadsheet::safe_cell(c).into_owned()),
            )?;
            each(&mut written)?;
        }
        w.flush()?;
        return Ok(written);
    }
    let mut out = out;
    let prover = match checkpoint {
        Some(cp) => {
            let header = BundleHeader {
                trailhub_bundle: BUNDLE_FORMAT,
                origin: cp.checkpoint.origin().to_string(),
                tree_size: cp.size(),
                checkpoint: cp.note.clone(),
            };
            serde_json::to_writer(&mut out, &header)
                .map_err(|e| WriteError::Failed(e.to_string()))?;
            out.write_all(b"\n")?;
            Some(
                store
                    .prover(cp.size())
                    .map_err(|e| WriteError::Failed(e.to_string()))?,
            )
        }
        None => None,
    };
    if format == ExportFormat::Json {
        out.write_all(b"[")?;
    }
    // events stored after a bundle's checkpoint are in the next bundle, not this one
    let below = prover.as_ref().map(|p| p.size());
    for json in events(store, filter, below) {
        let (seq, json) = json?;
        match (format, &prover) {
            (ExportFormat::Ndjson, Some(prover)) => {
                let proof = prover
                    .inclusion(seq)
                    .map_err(|e| WriteError::Failed(e.to_string()))?;
                let line = BundleEvent::new(seq - 1, &proof, &json);
                serde_json::to_writer(&mut out, &line)
                    .map_err(|e| WriteError::Failed(e.to_string()))?;
                out.write_all(b"\n")?;
            }
            (ExportFormat::Json, _) => {
                if written > 0 {
                    out.write_all(b",\n")?;
                }
                out.write_all(&json)?;
            }
            _ => {
                out.write_all(&json)?;
                out.write_all(b"\n")?;
            }
        }
        each(&mut written)?;
    }
    if format == ExportFormat::Json {
        out.write_all(b"]\n")?;
    }
    out.flush()?;
    Ok(written)
}

/// The JSON of every event matching `filter` (with its sequence number), newest first; events
/// past `up_to` (a sequence number) are left out.
pub fn events<'a>(
    store: &'a Store,
    filter: &Filter,
    up_to: Option<u64>,
) -> impl Iterator<Item = Result<(u64, Vec<u8>), WriteError>> + 'a {
    store.scan(filter, None).filter_map(move |position| {
        let position = match position {
            Ok(p) => p,
            Err(e) => return Some(Err(e.into())),
        };
        if up_to.is_some_and(|last| position.seq > last) {
            return None;
        }
        match store.event_json(position.seq) {
            Ok(Some(json)) => Some(Ok((position.seq, json))),
            // purged between the scan and the read
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    })
}

/// An event's CSV cells, in the order of [`CSV_COLUMNS`] (before formula neutralising).
fn csv_cells(e: &Event) -> [String; 22] {
    let targets: Vec<String> = e
        .targets
        .iter()
        .map(|t| format!("{}:{}", t.kind, t.id))
        .collect();
    let changes = if e.changes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&e.changes).unwrap_or_default()
    };
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        e.id.clone(),
        format_micros(e.time),
        format_micros(e.ingested_at),
        e.integration.id.clone(),
        e.integration.name.clone(),
        e.integration.connector.clone(),
        e.source_id.clone(),
        e.event_type.clone(),
        e.category.to_string(),
        e.action.to_string(),
        e.outcome.to_string(),
        e.actor.id.clone(),
        opt(&e.actor.name),
        opt(&e.actor.email),
        e.actor.kind.to_string(),
        opt(&e.actor.ip),
        opt(&e.actor.user_agent),
        targets.join(";"),
        changes,
        opt(&e.session_id),
        opt(&e.description),
        e.severity.to_string(),
    ]
}

/// Bytes per chunk a [`ChunkSender`] hands to a response stream.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// A `Write` that hands what is written to a response stream in chunks of about
/// [`STREAM_CHUNK`] bytes, waiting while the client reads (so memory stays at a few chunks).
/// `flush` sends nothing: only a full chunk and [`ChunkSender::finish`] do.
pub struct ChunkSender {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
}

impl ChunkSender {
    pub fn new(tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>) -> Self {
        ChunkSender {
            buf: Vec::with_capacity(STREAM_CHUNK + 4096),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(STREAM_CHUNK + 4096));
        self.tx
            .blocking_send(Ok(bytes::Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Sends what is left.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }

    /// Ends the stream with an error, so the client sees a broken body rather than a short one.
    pub fn fail(self, error: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(error)));
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name_their_files() {
        for f in [ExportFormat::Ndjson, ExportFormat::Csv, ExportFormat::Json] {
            assert_eq!(ExportFormat::parse(f.as_str()), Some(f));
            assert_eq!(
                serde_json::to_value(f).expect("serialises"),
                serde_json::json!(f.as_str())
            );
        }
        assert_eq!(ExportFormat::parse("xlsx"), None);
        assert_eq!(CSV_COLUMNS.len(), 22);
    }

    #[test]
    fn a_chunk_is_sent_only_when_full_or_finished() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let mut w = ChunkSender::new(tx);
        w.write_all(b"abc").expect("buffers");
        w.flush().expect("flush is a no-op");
        assert!(
            rx.try_recv().is_err(),
            "nothing sent before a chunk is full"
        );
        w.write_all(&vec![b'x'; STREAM_CHUNK]).expect("sends");
        let first = rx.try_recv().expect("a full chunk").expect("ok");
        assert_eq!(first.len(), STREAM_CHUNK + 3);
        w.write_all(b"tail").expect("buffers");
        w.finish().expect("sends the rest");
        assert_eq!(&rx.try_recv().expect("rest").expect("ok")[..], b"tail");
    }
}
