//! Reports: the events of a range and filter that a report kind selects (`kinds`, defined as
//! data), written as a CSV of the kind's rows and a printable PDF (`pdf`) with a summary page
//!
//! A report job reads the range once: each selected event is counted in the summary (by outcome,
//! category, integration, actor and day) and turned into rows, written to the CSV until
//! `max_report_rows` (past it the report is cut, and says so); the PDF is then drawn from the
//! summary and the CSV just written.

pub mod kinds;
mod pdf;

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::context::{Finished, RunContext};
use super::record::Range;
use super::writer::{events, WriteError};
use crate::schema::Event;
use crate::time::{format_micros, now_micros, Micros, DAY};
pub use kinds::{Kind, KINDS};

/// Distinct actors counted one by one in a summary; the rest are counted together.
const MAX_ACTORS_COUNTED: usize = 100_000;
/// Actors named on the summary page.
pub const TOP_ACTORS: usize = 10;

/// Runs a report job: the CSV, then the PDF.
pub fn run(ctx: &RunContext<'_>, name: &str, range: &Range) -> Result<Finished, WriteError> {
    let kind =
        kinds::kind(name).ok_or_else(|| WriteError::Failed(format!("no report kind {name:?}")))?;
    let filter = range
        .to_filter()
        .map_err(|e| WriteError::Failed(format!("the report's filter no longer parses: {e}")))?;
    ctx.set_estimate(super::export::estimate(ctx.store(), range)?);
    let max_rows = ctx.settings().max_report_rows as u64;
    let mut summary = Summary::new(kind, range, now_micros(), max_rows);
    let csv = ctx.write_file("csv", |out| {
        let mut w = crate::spreadsheet::csv_writer(out);
        w.write_record(kind.headers())?;
        let mut read = 0u64;
        for item in events(ctx.store(), &filter, None) {
            let (seq, json) = item?;
            read += 1;
            ctx.after_each(read).map_err(WriteError::Stopped)?;
            let event: Event = serde_json::from_slice(&json).map_err(|e| {
                WriteError::Failed(format!("event {seq:016x} does not decode: {e}"))
            })?;
            if !kind.selects(&event) {
                continue;
            }
            summary.count(&event);
            for row in kind.rows_of(&event) {
                if summary.rows >= max_rows {
                    summary.cut = true;
                    break;
                }
                w.write_record(
                    row.iter()
                        .map(|c| crate::spreadsheet::safe_cell(c).into_owned()),
                )?;
                summary.rows += 1;
            }
        }
        w.flush()?;
        Ok(())
    })?;
    let csv_path = ctx.jobs.file_path(ctx.job, "csv");
    let pdf = ctx.write_file("pdf", |out| {
        let file = std::fs::File::open(&csv_path)?;
        let mut rows = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(std::io::BufReader::new(file));
        let rows = rows.records().map(|r| {
            r.map(|record| {
                record
                    .iter()
                    .map(|c| crate::spreadsheet::original_cell(c).to_string())
                    .collect::<Vec<String>>()
            })
            .map_err(|e| WriteError::Failed(format!("the report's CSV does not read back: {e}")))
        });
        let bytes = pdf::render(&summary, &ctx.job.name, rows)?;
        out.write_all(&bytes)?;
        Ok(())
    })?;
    Ok(Finished {
        outputs: vec![csv, pdf],
        events: summary.events,
        summary: Some(summary.to_json()),
    })
}

/// What the summary page shows: counts over every selected event (also past a cut).
pub struct Summary {
    pub kind: &'static Kind,
    pub since: Micros,
    pub until: Micros,
    pub filter: BTreeMap<String, String>,
    pub generated_at: Micros,
    /// Events the report selected.
    pub events: u64,
    /// Rows written (at most `max_rows`).
    pub rows: u64,
    pub max_rows: u64,
    /// Rows were left out past `max_rows`.
    pub cut: bool,
    pub by_outcome: BTreeMap<String, u64>,
    pub by_category: BTreeMap<String, u64>,
    pub by_integration: BTreeMap<String, u64>,
    actors: HashMap<String, u64>,
    /// Events of actors past the first [`MAX_ACTORS_COUNTED`] distinct ones.
    other_actors: u64,
    /// Events per UTC day (the day's start).
    pub per_day: BTreeMap<Micros, u64>,
}

impl Summary {
    pub fn new(kind: &'static Kind, range: &Range, generated_at: Micros, max_rows: u64) -> Self {
        Summary {
            kind,
            since: range.since,
            until: range.until,
            filter: range.filter.clone(),
            generated_at,
            events: 0,
            rows: 0,
            max_rows,
            cut: false,
            by_outcome: BTreeMap::new(),
            by_category: BTreeMap::new(),
            by_integration: BTreeMap::new(),
            actors: HashMap::new(),
            other_actors: 0,
            per_day: BTreeMap::new(),
        }
    }

    pub fn count(&mut self, e: &Event) {
        self.events += 1;
        *self.by_outcome.entry(e.outcome.to_string()).or_default() += 1;
        *self.by_category.entry(e.category.to_string()).or_default() += 1;
        *self
            .by_integration
            .entry(e.integration.name.clone())
            .or_default() += 1;
        let actor = kinds::Column::Actor.cell(e, None);
        let room = self.actors.len() < MAX_ACTORS_COUNTED;
        match self.actors.get_mut(&actor) {
            Some(n) => *n += 1,
            None if room => {
                self.actors.insert(actor, 1);
            }
            None => self.other_actors += 1,
        }
        *self
            .per_day
            .entry(e.time.div_euclid(DAY) * DAY)
            .or_default() += 1;
    }

    /// The most active actors, most events first (ties by name).
    pub fn top_actors(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.actors.iter().map(|(a, c)| (a.as_str(), *c)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }

    /// Every UTC day of the range with its count (0 for a day without events), oldest first.
    pub fn days(&self) -> Vec<(Micros, u64)> {
        let first = self.since.div_euclid(DAY) * DAY;
        let mut out = Vec::new();
        let mut day = first;
        while day < self.until {
            out.push((day, self.per_day.get(&day).copied().unwrap_or(0)));
            day += DAY;
        }
        out
    }

    pub fn to_json(&self) -> Value {
        json!({
            "title": self.kind.title,
            "events": self.events,
            "rows": self.rows,
            "max_rows": self.max_rows,
            "cut": self.cut,
            "generated_at": format_micros(self.generated_at),
            "by_outcome": self.by_outcome,
            "by_category": self.by_category,
            "by_integration": self.by_integration,
            "top_actors": self.top_actors(TOP_ACTORS).iter().map(|(a, n)| json!({"actor": a, "events": n})).collect::<Vec<_>>(),
            "other_actors_events": self.other_actors,
            "per_day": self.days().iter().map(|(d, n)| json!({"day": &format_micros(*d)[..10], "events": n})).collect::<Vec<_>>(),
        })
    }
}
