//! The poll cursor: what is persisted per integration with each page's events, and how a page
//! moves it — pure functions, so the exactly-once core is tested without a vendor or a store
//!
//! Cursor discipline:
//! - ascending walks commit their position page by page;
//! - newest-first walks keep the in-progress position (`next`, `walk_top`) in the cursor and
//!   move the high-water mark only when the walk reaches the previous high-water mark;
//! - time cursors re-query from the high-water mark minus the connector's overlap, never
//!   strictly after it (events can share a timestamp); dedup makes the overlap free;
//! - a backfill split into time slices keeps each unfinished slice (its window and its next
//!   link) in the cursor, so every slice's progress commits with that slice's events.

use serde::{Deserialize, Serialize};

use super::definition::{CursorKind, CursorSpec, Order};
use crate::time::{Micros, MIN_TIME};

const CURSOR_VERSION: u8 = 1;

/// What is persisted per integration, committed with each page's events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    pub v: u8,
    /// Newest event time the hub has fully walked to (with slices: the backfill's top, which
    /// the live walk continues from).
    pub high_water: Option<Micros>,
    /// Where to continue: the page in hand of a walk, or the vendor's persistent next link.
    pub next: Option<String>,
    /// Newest-first walk in progress: newest time it has seen.
    pub walk_top: Option<Micros>,
    /// Newest-first walk in progress: it is complete once it reaches below this time.
    pub walk_floor: Option<Micros>,
    /// Backfill slices not yet walked to their end (see `plan_slices`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<Slice>,
}

/// One time window of a sliced backfill, walked on its own: it is done when the vendor has no
/// page after the one in hand, whatever the order of its pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// The window the slice is responsible for: `from <= time < to`.
    pub from: Micros,
    pub to: Micros,
    /// The next page of the slice's walk; `None` = the first page of its query.
    pub next: Option<String>,
}

impl CursorState {
    pub fn decode(bytes: Option<&[u8]>) -> CursorState {
        match bytes.map(serde_json::from_slice::<CursorState>) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "stored cursor does not decode; starting from the backfill window");
                CursorState::default()
            }
            None => CursorState::default(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.v = CURSOR_VERSION;
        serde_json::to_vec(&c).expect("a cursor serialises")
    }

    /// The cursor as shown in the integration object.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "high_water": self.high_water.map(crate::time::format_micros),
            "next": self.next,
            "walk_in_progress": self.walk_top.is_some() || self.walk_floor.is_some(),
            "backfill_slices_left": self.slices.len(),
        })
    }

    /// This cursor with the live walk's part (everything but the slices) taken from `live`.
    pub fn with_live(&self, live: &CursorState) -> CursorState {
        CursorState {
            v: self.v,
            high_water: live.high_water,
            next: live.next.clone(),
            walk_top: live.walk_top,
            walk_floor: live.walk_floor,
            slices: self.slices.clone(),
        }
    }

    /// Forgets a walk in progress (its saved link was refused, or points at another host).
    pub fn forget_walk(&mut self) {
        self.next = None;
        self.walk_top = None;
        self.walk_floor = None;
    }
}

/// Starts a walk from the time cursor (no saved link): the time to query from, and for a
/// newest-first walk the floor it must reach. `backfill_from` is where a first walk starts.
pub fn begin(cursor: &mut CursorState, spec: &CursorSpec, backfill_from: Micros) -> Micros {
    let resume = cursor
        .high_water
        .map(|h| h.saturating_sub(spec.overlap).max(MIN_TIME));
    if spec.order == Order::NewestFirst {
        cursor.walk_floor = resume;
        cursor.walk_top = None;
    }
    resume.unwrap_or(backfill_from)
}

/// What the cursor needs to know of a fetched page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageView {
    /// Oldest and newest event time of the page's records (the newest clamped to now: a
    /// record stamped in the future must not carry the high-water mark past events to come).
    pub min: Option<Micros>,
    pub max: Option<Micros>,
    /// The vendor's next position.
    pub next: Option<String>,
    /// The page itself lets the walk go on: it has records, a next position, and that
    /// position is not the page just fetched nor denied by `pagination.more = false`.
    pub goes_on: bool,
}

/// Whether the walk goes on after a page, where that is known before its records are read
/// (so the next page can be fetched while this one is normalised): only a newest-first walk
/// down to a floor needs the page's times.
pub fn known_before_records(
    cursor: &CursorState,
    spec: &CursorSpec,
    goes_on: bool,
) -> Option<bool> {
    (spec.order == Order::Ascending || cursor.walk_floor.is_none()).then_some(goes_on)
}

/// The cursor after a page, and whether the walk is done. Pure: the engine commits the
/// returned cursor with the page's events.
pub fn advance(cursor: &CursorState, spec: &CursorSpec, page: &PageView) -> (CursorState, bool) {
    let mut c = cursor.clone();
    let done = match (spec.order, spec.kind) {
        (Order::Ascending, CursorKind::NextLink) => {
            c.high_water = c.high_water.max(page.max);
            // the vendor's link is the position: keep it even when the page is empty
            c.next = page.next.clone();
            !page.goes_on
        }
        (Order::Ascending, CursorKind::Time) => {
            c.high_water = c.high_water.max(page.max);
            c.next = if page.goes_on {
                page.next.clone()
            } else {
                None
            };
            !page.goes_on
        }
        (Order::NewestFirst, _) => {
            c.walk_top = c.walk_top.max(page.max);
            let reached = match (c.walk_floor, page.min) {
                (Some(floor), Some(min)) => min < floor,
                _ => false,
            };
            let more = page.goes_on && !reached;
            if more {
                c.next = page.next.clone();
            } else {
                c.high_water = c.high_water.max(c.walk_top);
                c.forget_walk();
            }
            !more
        }
    };
    (c, done)
}

/// Splits a first backfill of `[from, to)` into at most `count` slices of at least `min_len`
/// each, oldest first. Fewer than two slices means no split (the ordinary walk does it).
pub fn plan_slices(from: Micros, to: Micros, count: u32, min_len: Micros) -> Vec<Slice> {
    let span = to.saturating_sub(from);
    if span <= 0 || count < 2 {
        return Vec::new();
    }
    let n = (span / min_len.max(1)).clamp(1, count as i64);
    if n < 2 {
        return Vec::new();
    }
    let len = span / n;
    (0..n)
        .map(|i| Slice {
            from: from + i * len,
            to: if i == n - 1 { to } else { from + (i + 1) * len },
            next: None,
        })
        .collect()
}

/// A slice's page moved its walk: the slice's next link, or the slice removed when its walk is
/// done. Pure, like `advance`.
pub fn advance_slice(cursor: &CursorState, slice: &Slice, page: &PageView) -> (CursorState, bool) {
    let mut c = cursor.clone();
    let done = !page.goes_on;
    match c
        .slices
        .iter()
        .position(|s| s.from == slice.from && s.to == slice.to)
    {
        Some(i) if done => {
            c.slices.remove(i);
        }
        Some(i) => c.slices[i].next = page.next.clone(),
        None => {}
    }
    (c, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: CursorKind, order: Order) -> CursorSpec {
        CursorSpec {
            kind,
            order,
            overlap: 10,
        }
    }

    fn page(min: i64, max: i64, next: Option<&str>, goes_on: bool) -> PageView {
        PageView {
            min: Some(min),
            max: Some(max),
            next: next.map(str::to_string),
            goes_on,
        }
    }

    /// Every kind and order, one page at a time: (cursor before, page, cursor after, done).
    #[test]
    fn advance_table() {
        let asc_link = spec(CursorKind::NextLink, Order::Ascending);
        let asc_time = spec(CursorKind::Time, Order::Ascending);
        let newest = spec(CursorKind::Time, Order::NewestFirst);
        let at = |hw: Option<i64>, next: Option<&str>, top: Option<i64>, floor: Option<i64>| {
            CursorState {
                high_water: hw,
                next: next.map(str::to_string),
                walk_top: top,
                walk_floor: floor,
                ..CursorState::default()
            }
        };
        let empty_last = PageView {
            next: Some("p2".into()),
            ..PageView::default()
        };
        let cases: Vec<(&str, &CursorSpec, CursorState, PageView, CursorState, bool)> = vec![
            (
                "ascending link: a page with more moves high water and keeps the link",
                &asc_link,
                at(Some(100), None, None, None),
                page(110, 150, Some("p2"), true),
                at(Some(150), Some("p2"), None, None),
                false,
            ),
            (
                "ascending link: the last page keeps the vendor's link as the position",
                &asc_link,
                at(Some(150), Some("p2"), None, None),
                page(150, 160, Some("p3"), false),
                at(Some(160), Some("p3"), None, None),
                true,
            ),
            (
                "ascending link: an empty page keeps its link and the high water",
                &asc_link,
                at(Some(160), Some("p2"), None, None),
                empty_last.clone(),
                at(Some(160), Some("p2"), None, None),
                true,
            ),
            (
                "ascending time: a page with more keeps the link of the walk",
                &asc_time,
                at(None, None, None, None),
                page(10, 20, Some("p2"), true),
                at(Some(20), Some("p2"), None, None),
                false,
            ),
            (
                "ascending time: the last page drops the link (next walk from the time)",
                &asc_time,
                at(Some(20), Some("p2"), None, None),
                page(20, 30, Some("p3"), false),
                at(Some(30), None, None, None),
                true,
            ),
            (
                "ascending time: high water never goes back",
                &asc_time,
                at(Some(50), None, None, None),
                page(5, 6, None, false),
                at(Some(50), None, None, None),
                true,
            ),
            (
                "newest first: a page above the floor keeps walking, high water unmoved",
                &newest,
                at(Some(100), None, None, Some(90)),
                page(120, 200, Some("p2"), true),
                at(Some(100), Some("p2"), Some(200), Some(90)),
                false,
            ),
            (
                "newest first: reaching below the floor ends the walk at its top",
                &newest,
                at(Some(100), Some("p2"), Some(200), Some(90)),
                page(80, 119, Some("p3"), true),
                at(Some(200), None, None, None),
                true,
            ),
            (
                "newest first: the vendor's last page ends the walk",
                &newest,
                at(None, Some("p2"), Some(200), None),
                page(1, 50, None, false),
                at(Some(200), None, None, None),
                true,
            ),
            (
                "newest first: an empty first page ends the walk, nothing moves",
                &newest,
                at(Some(100), None, None, Some(90)),
                PageView::default(),
                at(Some(100), None, None, None),
                true,
            ),
        ];
        for (name, spec, before, page, after, done) in cases {
            let (got, got_done) = advance(&before, spec, &page);
            assert_eq!(got, after, "{name}");
            assert_eq!(got_done, done, "{name}");
            if let Some(known) = known_before_records(&before, spec, page.goes_on) {
                assert_eq!(known, !done, "{name}: known before the records");
            }
        }
    }

    #[test]
    fn begin_resumes_from_high_water_minus_overlap() {
        let newest = spec(CursorKind::Time, Order::NewestFirst);
        let mut c = CursorState {
            high_water: Some(100),
            walk_top: Some(5),
            ..CursorState::default()
        };
        assert_eq!(begin(&mut c, &newest, 0), 90);
        assert_eq!((c.walk_floor, c.walk_top), (Some(90), None));
        let asc = spec(CursorKind::Time, Order::Ascending);
        let mut fresh = CursorState::default();
        assert_eq!(begin(&mut fresh, &asc, 42), 42);
        assert_eq!(fresh, CursorState::default());
        let mut low = CursorState {
            high_water: Some(MIN_TIME + 3),
            ..CursorState::default()
        };
        assert_eq!(
            begin(&mut low, &asc, 0),
            MIN_TIME,
            "clamped to the time range"
        );
    }

    /// A newest-first vendor: `query(since, before)` answers the events in [since, before)
    /// newest first, `size` per page, the next link naming the last time served.
    struct NewestFirstVendor {
        times: Vec<i64>,
        size: usize,
    }

    impl NewestFirstVendor {
        fn page(&self, since: i64, before: Option<i64>) -> (Vec<i64>, Option<String>) {
            let mut hits: Vec<i64> = self
                .times
                .iter()
                .copied()
                .filter(|t| *t >= since && before.is_none_or(|b| *t < b))
                .collect();
            hits.sort_unstable_by(|a, b| b.cmp(a));
            let more = hits.len() > self.size;
            hits.truncate(self.size);
            let next = more
                .then(|| hits.last().map(|t| format!("{since}:{t}")))
                .flatten();
            (hits, next)
        }

        fn fetch(&self, since: i64, link: Option<&str>) -> (Vec<i64>, Option<String>) {
            match link.and_then(|l| l.split_once(':')) {
                Some((s, b)) => self.page(s.parse().expect("since"), Some(b.parse().expect("b"))),
                None => self.page(since, None),
            }
        }
    }

    /// Walks until done or `budget` pages (a kill after that page's commit): the pages served.
    fn walk(
        vendor: &NewestFirstVendor,
        spec: &CursorSpec,
        cursor: &mut CursorState,
        budget: usize,
        seen: &mut Vec<i64>,
    ) -> bool {
        for _ in 0..budget {
            let since = match cursor.next {
                Some(_) => 0,
                None => begin(cursor, spec, 0),
            };
            let (times, next) = vendor.fetch(since, cursor.next.as_deref());
            seen.extend(&times);
            let view = PageView {
                min: times.iter().min().copied(),
                max: times.iter().max().copied(),
                goes_on: !times.is_empty() && next.is_some(),
                next,
            };
            let (c, done) = advance(cursor, spec, &view);
            *cursor = c;
            if done {
                return true;
            }
        }
        false
    }

    /// A newest-first walk killed after every possible page, with new events arriving while
    /// it was down, still serves every event and ends with the high water at the newest.
    #[test]
    fn newest_first_walks_interrupted_at_every_page_miss_nothing() {
        let spec = spec(CursorKind::Time, Order::NewestFirst);
        for size in [1usize, 3, 7] {
            let first: Vec<i64> = (1..=20).map(|i| i * 100).collect();
            let pages = first.len().div_ceil(size) + 1;
            for kill_after in 1..=pages {
                let mut vendor = NewestFirstVendor {
                    times: first.clone(),
                    size,
                };
                let mut cursor = CursorState::default();
                let mut seen = Vec::new();
                // the first walk, killed after `kill_after` pages (its cursor committed)
                walk(&vendor, &spec, &mut cursor, kill_after, &mut seen);
                // new events while the hub is down, one of them late (inside the overlap)
                let newest = *vendor.times.iter().max().expect("times");
                vendor.times.extend([newest + 50, newest + 75, newest - 5]);
                // resume, then one more cycle
                assert!(
                    walk(&vendor, &spec, &mut cursor, 1000, &mut seen),
                    "finishes"
                );
                assert!(
                    walk(&vendor, &spec, &mut cursor, 1000, &mut seen),
                    "next cycle"
                );
                let mut served = seen.clone();
                served.sort_unstable();
                served.dedup();
                let mut all = vendor.times.clone();
                all.sort_unstable();
                all.dedup();
                assert_eq!(served, all, "size {size}, killed after page {kill_after}");
                assert_eq!(cursor.high_water, all.last().copied());
                assert_eq!((cursor.next.as_deref(), cursor.walk_top), (None, None));
            }
        }
    }

    #[test]
    fn slices_cover_the_window_and_finish_one_by_one() {
        assert!(plan_slices(0, 100, 4, 60).is_empty(), "too short to split");
        assert!(plan_slices(0, 100, 1, 1).is_empty());
        assert!(plan_slices(100, 0, 4, 1).is_empty());
        let slices = plan_slices(0, 1000, 4, 100);
        assert_eq!(slices.len(), 4);
        assert_eq!(slices[0].from, 0);
        assert_eq!(slices[3].to, 1000);
        for w in slices.windows(2) {
            assert_eq!(w[0].to, w[1].from, "contiguous");
        }
        assert_eq!(
            plan_slices(0, 1000, 8, 300).len(),
            3,
            "at least min_len each"
        );
        let cursor = CursorState {
            high_water: Some(1000),
            slices: slices.clone(),
            ..CursorState::default()
        };
        let (c, done) = advance_slice(&cursor, &slices[1], &page(300, 400, Some("s2p2"), true));
        assert!(!done);
        assert_eq!(c.slices[1].next.as_deref(), Some("s2p2"));
        assert_eq!(
            c.high_water,
            Some(1000),
            "slices never move the live high water"
        );
        let (c, done) = advance_slice(&c, &slices[1], &page(250, 260, None, false));
        assert!(done);
        assert_eq!(c.slices.len(), 3);
        assert!(!c.slices.contains(&slices[1]));
        let (c2, _) = advance_slice(&c, &slices[1], &page(250, 260, None, false));
        assert_eq!(c2, c, "a finished slice is gone for good");
    }
}
