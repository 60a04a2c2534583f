//! The query planner: a filter's terms are looked up in every source that may hold matches —
//! the in-memory tails and the sealed segments whose time range overlaps — and each source's
//! matches, newest first, are merged. Segments are opened lazily, in the order of their newest
//! possible match, so a page touches only the segments that hold its events. Pages resume from an
//! opaque (time, seq) cursor; histograms are answered from rollups where the filters allow.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::{Arc, RwLock};

use base64::Engine;

use super::keys::{self, Dimension, Field, Granularity};
pub use super::postings::Position;
use super::segment::{self, SegmentMeta, DOC_CHUNK};
use super::tail::Tail;
use super::{prepare, Shared, Store, StoreError};
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

    pub fn terms(&self) -> Vec<Vec<u8>> {
        let mut terms: Vec<Vec<u8>> = self.fields.iter().map(|(f, v)| keys::term(*f, v)).collect();
        terms.sort();
        terms.dedup();
        terms
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
        if s.len() > 64 {
            return None;
        }
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

/// Positions a tail source hands out per refill.
const TAIL_REFILL: usize = 256;

enum Source {
    Tail {
        tail: Arc<RwLock<Tail>>,
        /// Matches not yet handed out, newest first.
        pending: VecDeque<Position>,
        /// Unfiltered walks refill lazily below this position; filtered ones take all at once.
        next_upper: Option<Position>,
    },
    Segment {
        meta: Arc<SegmentMeta>,
        open: Option<SegmentWalk>,
    },
}

/// A segment's matches being walked, newest (highest rank) first.
struct SegmentWalk {
    /// Matching ranks ascending, or every rank in [lo, hi] when the filter has no terms.
    ranks: Option<Vec<u32>>,
    /// Index into `ranks` (or the rank itself) of the next match, plus one; 0 when done.
    next: usize,
    lo: usize,
    /// Matches came from hashed buckets: check each event.
    verify: bool,
    docs: Option<(usize, Vec<Position>)>,
}

/// Positions of matching events, newest first.
pub struct Scan {
    shared: Arc<Shared>,
    lower: Position,
    upper: Option<Position>,
    terms: Vec<Vec<u8>>,
    sources: Vec<Source>,
    /// (newest possible next match, source): a source's real next match once it is open, an
    /// upper bound before.
    heap: BinaryHeap<(Position, usize)>,
    /// Purged events, skipped (their postings stay in the index).
    purged: Arc<super::purge::SeqRanges>,
}

impl Store {
    /// Walks the events matching `filter`, newest first, strictly older than `after` if given.
    pub fn scan(&self, filter: &Filter, after: Option<Position>) -> Scan {
        let shared = self.shared().clone();
        let purged = shared.purged();
        let lower = Position {
            time: filter.since.unwrap_or(i64::MIN),
            seq: 0,
        };
        let mut upper = Some(Position::MAX);
        if let Some(until) = filter.until {
            upper = upper.min(
                Position {
                    time: until,
                    seq: 0,
                }
                .previous(),
            );
        }
        if let Some(after) = after {
            upper = upper.min(after.previous());
        }
        let mut scan = Scan {
            shared,
            lower,
            upper: upper.filter(|u| *u >= lower),
            terms: filter.terms(),
            sources: Vec::new(),
            heap: BinaryHeap::new(),
            purged,
        };
        let Some(upper) = scan.upper else {
            return scan;
        };
        let view = scan.shared.view();
        for meta in &view.segments {
            if meta.last < lower || meta.first() > upper {
                continue;
            }
            scan.heap.push((meta.last.min(upper), scan.sources.len()));
            scan.sources.push(Source::Segment {
                meta: meta.clone(),
                open: None,
            });
        }
        for tail in &view.tails {
            let i = scan.sources.len();
            scan.sources.push(Source::Tail {
                tail: tail.clone(),
                pending: VecDeque::new(),
                next_upper: Some(upper),
            });
            match scan.fill_tail(i) {
                Ok(Some(p)) => scan.heap.push((p, i)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "tail scan failed");
                }
            }
        }
        scan
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
                // purged after the scan took its snapshot of the purged ranges
                None if self.is_purged(position.seq) => continue,
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

impl Scan {
    /// Makes sure a tail source has its next match ready; returns it.
    fn fill_tail(&mut self, i: usize) -> Result<Option<Position>, StoreError> {
        let (lower, filtered) = (self.lower, !self.terms.is_empty());
        let Source::Tail {
            tail,
            pending,
            next_upper,
        } = &mut self.sources[i]
        else {
            return Ok(None);
        };
        if pending.is_empty() {
            if let Some(upper) = next_upper.take() {
                let guard = tail
                    .read()
                    .map_err(|_| StoreError::Io("the tail's lock is poisoned".into()))?;
                if filtered {
                    pending.extend(guard.matching(&self.terms, lower, upper));
                } else {
                    let batch = guard.newest(lower, upper, TAIL_REFILL);
                    if batch.len() == TAIL_REFILL {
                        *next_upper = batch.last().and_then(|p| p.previous());
                    }
                    pending.extend(batch);
                }
            }
        }
        Ok(pending.front().copied())
    }

    /// Opens a segment: works out its rank range and, with terms, its matching ranks.
    fn open_segment(&mut self, i: usize) -> Result<Option<Position>, StoreError> {
        let Some(upper) = self.upper else {
            return Ok(None);
        };
        let lower = self.lower;
        let index = &self.shared.index;
        let Source::Segment { meta, open } = &mut self.sources[i] else {
            return Ok(None);
        };
        // the highest rank at or below `upper` and the lowest at or above `lower`
        let c = meta.chunk_first.partition_point(|p| *p <= upper);
        if c == 0 {
            return Ok(None);
        }
        let docs_hi = segment::load_docs(index, meta, c - 1)?;
        // the chunk's first position is at or below `upper` (its description says so); a
        // damaged doc table may disagree
        let below = docs_hi.partition_point(|p| *p <= upper).checked_sub(1);
        let Some(below) = below else {
            return Err(StoreError::Corrupt(format!(
                "segment {} doc table disagrees with its description",
                meta.id()
            )));
        };
        let hi = (c - 1) * DOC_CHUNK + below;
        let c = meta.chunk_first.partition_point(|p| *p < lower);
        let lo = if c == 0 {
            0
        } else {
            let docs = segment::load_docs(index, meta, c - 1)?;
            (c - 1) * DOC_CHUNK + docs.partition_point(|p| *p < lower)
        };
        if lo > hi {
            return Ok(None);
        }
        let mut walk = SegmentWalk {
            ranks: None,
            next: hi + 1,
            lo,
            verify: false,
            docs: Some((hi / DOC_CHUNK, docs_hi)),
        };
        if !self.terms.is_empty() {
            let mut lists = Vec::with_capacity(self.terms.len());
            for term in &self.terms {
                let (ranks, verify) = segment::term_ranks(index, meta, term)?;
                walk.verify |= verify;
                lists.push(ranks);
            }
            let mut ranks = super::postings::intersect(lists);
            ranks.retain(|r| (lo..=hi).contains(&(*r as usize)));
            walk.next = ranks.len();
            walk.ranks = Some(ranks);
        }
        *open = Some(walk);
        self.next_in_segment(i)
    }

    /// The next match of an open segment (verified when it came from a hashed bucket).
    fn next_in_segment(&mut self, i: usize) -> Result<Option<Position>, StoreError> {
        loop {
            let Source::Segment {
                meta,
                open: Some(walk),
            } = &mut self.sources[i]
            else {
                return Ok(None);
            };
            let rank = match &walk.ranks {
                None if walk.next > walk.lo => walk.next - 1,
                Some(ranks) if walk.next > 0 => ranks[walk.next - 1] as usize,
                _ => return Ok(None),
            };
            let chunk = rank / DOC_CHUNK;
            if walk.docs.as_ref().map(|(c, _)| *c) != Some(chunk) {
                walk.docs = Some((chunk, segment::load_docs(&self.shared.index, meta, chunk)?));
            }
            let docs = &walk.docs.as_ref().expect("loaded above").1;
            let position = *docs.get(rank % DOC_CHUNK).ok_or_else(|| {
                StoreError::Corrupt(format!("segment {} rank {rank} out of range", meta.id()))
            })?;
            if walk.verify && !self.event_has_terms(position.seq)? {
                self.step_segment(i);
                continue;
            }
            return Ok(Some(position));
        }
    }

    fn step_segment(&mut self, i: usize) {
        if let Source::Segment {
            open: Some(walk), ..
        } = &mut self.sources[i]
        {
            walk.next = walk.next.saturating_sub(1);
        }
    }

    /// Whether a stored event carries every term of the filter (for hashed-bucket candidates).
    fn event_has_terms(&self, seq: u64) -> Result<bool, StoreError> {
        let Some(body) = self.shared.event_body(seq)? else {
            return Ok(false);
        };
        let json = prepare::full_json(seq, &body);
        let event: crate::schema::Event = serde_json::from_slice(&json)
            .map_err(|e| StoreError::Corrupt(format!("event {seq:016x} does not decode: {e}")))?;
        let terms = prepare::prepare(&event).terms;
        Ok(self.terms.iter().all(|t| terms.contains(t)))
    }

    /// Consumes a source's current match and returns its next one.
    fn advance(&mut self, i: usize) -> Result<Option<Position>, StoreError> {
        match &mut self.sources[i] {
            Source::Tail { pending, .. } => {
                pending.pop_front();
                self.fill_tail(i)
            }
            Source::Segment { .. } => {
                self.step_segment(i);
                self.next_in_segment(i)
            }
        }
    }

    fn step(&mut self) -> Result<Option<Position>, StoreError> {
        loop {
            let Some(upper) = self.upper else {
                return Ok(None);
            };
            let Some((key, i)) = self.heap.pop() else {
                self.upper = None;
                return Ok(None);
            };
            let unopened = matches!(&self.sources[i], Source::Segment { open: None, .. });
            if unopened {
                if let Some(p) = self.open_segment(i)? {
                    self.heap.push((p, i));
                }
                continue;
            }
            if let Some(next) = self.advance(i)? {
                self.heap.push((next, i));
            }
            if key > upper || key < self.lower {
                continue;
            }
            self.upper = key.previous().filter(|u| *u >= self.lower);
            if !self.purged.is_empty() && self.purged.contains(key.seq) {
                continue;
            }
            return Ok(Some(key));
        }
    }
}

impl Iterator for Scan {
    type Item = Result<Position, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => None,
            Err(e) => {
                self.upper = None;
                Some(Err(e))
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

/// The start of every bucket of `size` that overlaps [since, until), oldest first. The caller
/// bounds the count (`timeline::histogram_range`); the arithmetic is checked whatever it gets.
pub fn bucket_starts(
    since: Micros,
    until: Micros,
    size: BucketSize,
) -> impl Iterator<Item = Micros> {
    let step = size.micros();
    std::iter::successors(Some(keys::bucket_start(since, step)), move |start| {
        start.checked_add(step)
    })
    .take_while(move |start| *start < until)
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
        let mut out: Histogram = bucket_starts(since, until, size)
            .map(|start| (start, BTreeMap::new()))
            .collect();
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
        let first_full = keys::bucket_start(since.saturating_add(step - 1), step);
        let last_full = keys::bucket_start(until, step);
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
                    let end = keys::bucket_start(p, hour).saturating_add(hour).min(to);
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
        self.for_each_rollup(g, group, from, to, |bucket, name, n| {
            let start = keys::bucket_start(bucket, step);
            *out.entry(start)
                .or_default()
                .entry(name.to_string())
                .or_insert(0) += n;
        })
    }

    /// Every rollup count of granularity `g` and dimension `d` whose bucket lies in [from, to):
    /// the tails' and the sealed keys', as (bucket, group, count).
    fn for_each_rollup(
        &self,
        g: Granularity,
        d: Dimension,
        from: Micros,
        to: Micros,
        mut f: impl FnMut(Micros, &str, u64),
    ) -> Result<(), StoreError> {
        let prefix = keys::rollup_prefix(g, d);
        let mut lo = prefix.to_vec();
        lo.extend_from_slice(&keys::encode_time(from));
        let mut hi = prefix.to_vec();
        hi.extend_from_slice(&keys::encode_time(to));
        // a seal moves a tail's counts into the rollup keys and swaps the view under this lock:
        // holding it, every event is counted once, from a tail or from the keys
        let _sealing = self
            .shared()
            .seal_lock
            .read()
            .map_err(|_| StoreError::Io("the seal lock is poisoned".into()))?;
        let view = self.shared().view();
        for tail in &view.tails {
            let guard = tail
                .read()
                .map_err(|_| StoreError::Io("the tail's lock is poisoned".into()))?;
            for (bucket, name, n) in guard.rollup_counts(g, d, from, to) {
                f(bucket, name, n);
            }
        }
        for item in self.shared().index.range(lo..hi) {
            let (k, v) = item?;
            let (bucket, name) = keys::rollup_parts(&k);
            f(bucket, &String::from_utf8_lossy(name), keys::decode_u64(&v));
        }
        Ok(())
    }

    /// Per group of `d`, over all time: (events, the first day holding one), from the day
    /// rollups and the tails (purges keep the rollups exact).
    pub fn totals_by(&self, d: Dimension) -> Result<BTreeMap<String, (u64, Micros)>, StoreError> {
        let mut out: BTreeMap<String, (u64, Micros)> = BTreeMap::new();
        self.for_each_rollup(
            Granularity::Day,
            d,
            Micros::MIN,
            Micros::MAX,
            |bucket, name, n| {
                if n == 0 {
                    return;
                }
                let e = out.entry(name.to_string()).or_insert((0, bucket));
                e.0 += n;
                e.1 = e.1.min(bucket);
            },
        )?;
        Ok(out)
    }

    /// Hands each event matching `filter`, newest first (strictly older than `after` if given),
    /// to `visit` with its complete JSON, reading each block once for the neighbours it holds;
    /// stops when `visit` answers false. For readers that look at many events in a row
    /// (dashboards, an actor's activity) without a page of them in memory.
    pub fn visit_events(
        &self,
        filter: &Filter,
        after: Option<Position>,
        mut visit: impl FnMut(Position, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let shared = self.shared();
        let mut held = None;
        for position in self.scan(filter, after) {
            let position = position?;
            let Some((frame, i)) = shared.body_near(position.seq, &mut held)? else {
                continue;
            };
            let json = prepare::full_json(position.seq, frame.body(i));
            if !visit(position, &json)? {
                break;
            }
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
        let shared = self.shared();
        let mut held = None;
        let mut json = Vec::new();
        for position in self.scan(filter, None) {
            let position = position?;
            let start = keys::bucket_start(position.time, step);
            let name = if group == Dimension::Total {
                String::new()
            } else {
                let Some((frame, i)) = shared.body_near(position.seq, &mut held)? else {
                    continue;
                };
                // the stored body is the event's JSON after its id member
                json.clear();
                json.push(b'{');
                json.extend_from_slice(frame.body(i));
                prepare::group_value_of_json(&json, group).map_err(|e| {
                    StoreError::Corrupt(format!("event {:016x} does not decode: {e}", position.seq))
                })?
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
