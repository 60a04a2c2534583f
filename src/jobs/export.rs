//! Export jobs: the events of a range and filter written to one file in CSV, JSON or NDJSON by
//! the same writer as the streamed export, so the file equals the stream of the same filter

use super::context::{Finished, RunContext};
use super::record::Range;
use super::writer::{write_events, ExportFormat, WriteError};
use crate::store::query::BucketSize;
use crate::store::Dimension;

/// Runs an export job: estimates its size from the store's counts, then writes the file.
pub fn run(
    ctx: &RunContext<'_>,
    format: ExportFormat,
    range: &Range,
) -> Result<Finished, WriteError> {
    let filter = range
        .to_filter()
        .map_err(|e| WriteError::Failed(format!("the job's filter no longer parses: {e}")))?;
    ctx.set_estimate(estimate(ctx.store(), range)?);
    let mut events = 0;
    let output = ctx.write_file(format.extension(), |out| {
        events = write_events(ctx.store(), &filter, format, None, out, |n| {
            ctx.after_each(n)
        })?;
        Ok(())
    })?;
    Ok(Finished {
        outputs: vec![output],
        events,
        summary: None,
    })
}

/// Events matching a job's range and filter, from the day rollups where the filter is only a
/// range (cheap), else counted from the index (no event is read).
pub fn estimate(store: &crate::store::Store, range: &Range) -> Result<u64, WriteError> {
    let filter = range
        .to_filter()
        .map_err(|e| WriteError::Failed(e.to_string()))?;
    let counts = store.histogram(
        &filter,
        range.since,
        range.until,
        BucketSize::Day,
        Dimension::Total,
    )?;
    Ok(counts.values().flat_map(|g| g.values()).sum())
}
