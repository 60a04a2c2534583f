//! The query planner: filters become posting lists walked newest-first (intersected by a
//! zig-zag join when there are several), pages resume from an opaque (time, seq) cursor, and
//! histograms are answered from rollups where the filters allow

use std::collections::BTreeMap;

use base64::Engine;

use super::keys::{self, Dimension, Field, Granularity};
use super::postings::BlockWalker;
pub use super::postings::Position;
use super::{prepare, Store, StoreError};
use crate::time::Micros;

/// Filters of the timeline. Every present filter must match (AND).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Inclusive.
    pub since: Option<Micros>,
    /// Exclusive.
    pub until: Option<Micros>,
    pub fields: Vec<(Field, String)>,
}

impl Filter {
    pub fn with(mut self, field: Field, value: &str) -> Filter {
        self.add(field, value);
        self
    }

    /// Adds a field filter; `q` text is split into tokens, each its own filter.
    pub fn add(&mut self, field: Field, value: &str) {
        if field == Field::Token {
            for token in prepare::tokenize(value) {
                self.fields.push((Field::Token, token));
            }
        } else {
            self.fields.push((field, keys::index_value(value)));
        }
    }

    /// True when any field filter (not just a time range) is set.
    pub fn has_field_filters(&self) -> bool {
        !self.fields.is_empty()
    }
}

impl Position {
    pub fn encode(self) -> String {
        let mut b = Vec::with_capacity(17);
        b.push(1u8);
        b.extend_from_slice(&keys::encode_time(self.time));
        b.extend_from_slice(&self.seq.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    pub fn decode(s: &str) -> Option<Position> {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        if b.len() != 17 || b[0] != 1 {
            return None;
        }
        Some(Position {
            time: keys::decode_time(&b[1..9]),
            seq: keys::decode_u64(&b[9..17]),
        })
    }
}

/// Positions of matching events, newest first.
pub struct Scan {
    tree: sled::Tree,
    lower: Position,
    state: ScanState,
}

enum ScanState {
    /// Posting lists (the time list when there is no field filter), intersected by a zig-zag join.
    Join {
        lists: Vec<BlockWalker>,
        upper: Option<Position>,
    },
    Done,
}

impl Store {
    /// Walks the events matching `filter`, newest first, strictly older than `after` if given.
    pub fn scan(&self, filter: &Filter, after: Option<Position>) -> Scan {
        let tree = self.index().clone();
        let lower = Position {
            time: filter.since.unwrap_or(i64::MIN),
            seq: 0,
        };
        let mut upper = Position::MAX;
        if let Some(until) = filter.until {
            upper = upper.min(
                Position {
                    time: until,
                    seq: 0,
                }
                .previous()
                .unwrap_or(lower),
            );
        }
        if let Some(after) = after {
            match after.previous() {
                Some(p) => upper = upper.min(p),
                None => {
                    return Scan {
                        tree,
                        lower,
                        state: ScanState::Done,
                    }
                }
            }
        }
        if upper < lower {
            return Scan {
                tree,
                lower,
                state: ScanState::Done,
            };
        }
        let mut prefixes: Vec<Vec<u8>> = filter
            .fields
            .iter()
            .map(|(f, v)| keys::posting_prefix(Some((*f, v))))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        if prefixes.is_empty() {
            prefixes.push(keys::posting_prefix(None));
        }
        let state = ScanState::Join {
            lists: prefixes.into_iter().map(BlockWalker::new).collect(),
            upper: Some(upper),
        };
        Scan { tree, lower, state }
    }

    /// One page of the timeline: the events' JSON and the cursor of the next page.
    pub fn page(
        &self,
        filter: &Filter,
        after: Option<Position>,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<Position>), StoreError> {
        let mut events = Vec::with_capacity(limit.min(1000));
        let mut last = None;
        let mut scan = self.scan(filter, after);
        for position in scan.by_ref() {
            let position = position?;
            if events.len() == limit {
                return Ok((events, last));
            }
            match self.event_json(position.seq)? {
                Some(json) => events.push(json),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "index names missing event {:016x}",
                        position.seq
                    )))
                }
            }
            last = Some(position);
        }
        Ok((events, None))
    }
}

impl Iterator for Scan {
    type Item = Result<Position, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.state {
            ScanState::Done => None,
            ScanState::Join { lists, upper } => {
                // Zig-zag: seek each list to its newest entry at or before the target; a list that
                // lands lower lowers the target; when every list agrees, that event matches all.
                let mut target = (*upper)?;
                let k = lists.len();
                let mut agreed = 0;
                let mut i = 0;
                loop {
                    let found = match lists[i].seek(&self.tree, self.lower, target) {
                        Err(e) => return Some(Err(e)),
                        Ok(found) => found,
                    };
                    let Some(position) = found else {
                        self.state = ScanState::Done;
                        return None;
                    };
                    if position == target {
                        agreed += 1;
                    } else {
                        target = position;
                        agreed = 1;
                    }
                    if agreed == k {
                        *upper = target.previous();
                        return Some(Ok(target));
                    }
                    i = (i + 1) % k;
                }
            }
        }
    }
}

/// Histogram bucket sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketSize {
    Minute,
    FiveMinutes,
    Hour,
    Day,
}

impl BucketSize {
    pub fn parse(s: &str) -> Option<BucketSize> {
        Some(match s {
            "1m" => BucketSize::Minute,
            "5m" => BucketSize::FiveMinutes,
            "1h" => BucketSize::Hour,
            "1d" => BucketSize::Day,
            _ => return None,
        })
    }

    pub fn micros(self) -> Micros {
        match self {
            BucketSize::Minute => crate::time::MINUTE,
            BucketSize::FiveMinutes => 5 * crate::time::MINUTE,
            BucketSize::Hour => crate::time::HOUR,
            BucketSize::Day => crate::time::DAY,
        }
    }

    /// The rollup granularity that tiles this bucket size exactly, if there is one.
    fn granularity(self) -> Option<Granularity> {
        match self {
            BucketSize::Minute | BucketSize::FiveMinutes => None,
            BucketSize::Hour => Some(Granularity::Hour),
            BucketSize::Day => Some(Granularity::Day),
        }
    }
}

/// Counts per bucket start, per group value.
pub type Histogram = BTreeMap<Micros, BTreeMap<String, u64>>;

impl Store {
    /// Counts of the events matching `filter` in [since, until), per bucket and group. Whole
    /// buckets inside the range come from rollups when the filter is only a time range; partial
    /// edge buckets and other filters are counted from the index.
    pub fn histogram(
        &self,
        filter: &Filter,
        since: Micros,
        until: Micros,
        size: BucketSize,
        group: Dimension,
    ) -> Result<Histogram, StoreError> {
        let step = size.micros();
        let mut out: Histogram = BTreeMap::new();
        let mut start = since.div_euclid(step) * step;
        while start < until {
            out.insert(start, BTreeMap::new());
            start += step;
        }
        let granularity = match size.granularity() {
            Some(g) if !filter.has_field_filters() => g,
            _ => {
                let ranged = Filter {
                    since: Some(since),
                    until: Some(until),
                    fields: filter.fields.clone(),
                };
                self.count_by_scan(&ranged, step, group, &mut out)?;
                return Ok(out);
            }
        };
        let first_full = (since + step - 1).div_euclid(step) * step;
        let last_full = until.div_euclid(step) * step;
        if first_full >= last_full {
            self.count_range(since, until, step, group, &mut out)?;
            return Ok(out);
        }
        self.count_rollups(first_full, last_full, granularity, step, group, &mut out)?;
        self.count_range(since, first_full, step, group, &mut out)?;
        self.count_range(last_full, until, step, group, &mut out)?;
        Ok(out)
    }

    /// Exact counts for an arbitrary [from, to): whole rollup cells of the coarsest granularity
    /// that fits, and an index scan for the sub-hour remainder at either end.
    fn count_range(
        &self,
        from: Micros,
        to: Micros,
        step: Micros,
        group: Dimension,
        out: &mut Histogram,
    ) -> Result<(), StoreError> {
        let mut p = from;
        while p < to {
            let cell = Granularity::ALL
                .iter()
                .rev()
                .copied()
                .find(|g| p.rem_euclid(g.micros()) == 0 && p + g.micros() <= to);
            match cell {
                Some(g) => {
                    self.count_rollups(p, p + g.micros(), g, step, group, out)?;
                    p += g.micros();
                }
                None => {
                    let hour = Granularity::Hour.micros();
                    let end = ((p.div_euclid(hour) + 1) * hour).min(to);
                    let ranged = Filter {
                        since: Some(p),
                        until: Some(end),
                        fields: Vec::new(),
                    };
                    self.count_by_scan(&ranged, step, group, out)?;
                    p = end;
                }
            }
        }
        Ok(())
    }

    fn count_rollups(
        &self,
        from: Micros,
        to: Micros,
        g: Granularity,
        step: Micros,
        group: Dimension,
        out: &mut Histogram,
    ) -> Result<(), StoreError> {
        let prefix = keys::rollup_prefix(g, group);
        let mut lo = prefix.to_vec();
        lo.extend_from_slice(&keys::encode_time(from));
        let mut hi = prefix.to_vec();
        hi.extend_from_slice(&keys::encode_time(to));
        for item in self.index().range(lo..hi) {
            let (k, v) = item?;
            let (bucket, name) = keys::rollup_parts(&k);
            let start = bucket.div_euclid(step) * step;
            let name = String::from_utf8_lossy(name).into_owned();
            *out.entry(start).or_default().entry(name).or_insert(0) += keys::decode_u64(&v);
        }
        Ok(())
    }

    fn count_by_scan(
        &self,
        filter: &Filter,
        step: Micros,
        group: Dimension,
        out: &mut Histogram,
    ) -> Result<(), StoreError> {
        for position in self.scan(filter, None) {
            let position = position?;
            let start = position.time.div_euclid(step) * step;
            let name = if group == Dimension::Total {
                String::new()
            } else {
                match self.event(position.seq)? {
                    Some(e) => prepare::group_value(&e, group),
                    None => continue,
                }
            };
            *out.entry(start).or_default().entry(name).or_insert(0) += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejects_garbage() {
        let p = Position { time: -42, seq: 7 };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode("not-a-cursor"), None);
        assert_eq!(Position::decode(""), None);
    }
}
