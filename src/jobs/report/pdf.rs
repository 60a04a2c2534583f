//! The printable report: an A4 summary page (title, range, filters, selection, generation time,
//! counts by outcome, category and integration, the top actors, and a bar chart of events per
//! day drawn as vector shapes), then the rows as A4 landscape tables with the header repeated on
//! every page
//!
//! Text is set in the standard Helvetica fonts every PDF reader has, so nothing is embedded; they
//! take Windows-1252 (WinAnsi) text, and any other character prints as `?` (the CSV keeps it).
//! Cells are cut to their column's width with the fonts' published advance widths.

use pdf_writer::{Content, Date, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::kinds::Column;
use super::{Summary, TOP_ACTORS};
use crate::jobs::writer::WriteError;
use crate::time::format_micros;

const PORTRAIT: (f32, f32) = (595.28, 841.89);
const LANDSCAPE: (f32, f32) = (841.89, 595.28);
const MARGIN: f32 = 36.0;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");
const CELL_SIZE: f32 = 6.5;
const ROW_HEIGHT: f32 = 9.0;
const CELL_PAD: f32 = 2.0;
/// Groups listed per count table on the summary page; the rest are summed in one line.
const MAX_GROUPS: usize = 8;

/// Helvetica's advance widths (1/1000 em) for ASCII 32..=126, from Adobe's core-14 metrics.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];
/// Charged for any other character: wider than most, so a cut cell never overflows.
const WIDE: u16 = 722;

/// Width of `text` in points at `size` (bold counted 10% wider, which covers Helvetica-Bold).
fn width(text: &str, size: f32, bold: bool) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            n @ 32..=126 => u32::from(HELVETICA[(n - 32) as usize]),
            _ => u32::from(WIDE),
        })
        .sum();
    let w = units as f32 * size / 1000.0;
    if bold {
        w * 1.1
    } else {
        w
    }
}

/// `text` cut (with `...`) to fit `max` points.
fn fit(text: &str, size: f32, max: f32) -> String {
    // control characters (a newline in a description) would break the line
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if width(&clean, size, false) <= max {
        return clean;
    }
    let budget = max - width("...", size, false);
    let mut out = String::new();
    let mut used = 0.0;
    for c in clean.chars() {
        let w = width(c.encode_utf8(&mut [0; 4]), size, false);
        if used + w > budget {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push_str("...");
    out
}

/// Windows-1252 bytes of `text`; characters it lacks become `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c as u32 {
            n @ (32..=126 | 160..=255) => n as u8,
            _ => match c {
                '€' => 0x80,
                '‚' => 0x82,
                'ƒ' => 0x83,
                '„' => 0x84,
                '…' => 0x85,
                '†' => 0x86,
                '‡' => 0x87,
                'ˆ' => 0x88,
                '‰' => 0x89,
                'Š' => 0x8A,
                '‹' => 0x8B,
                'Œ' => 0x8C,
                'Ž' => 0x8E,
                '‘' => 0x91,
                '’' => 0x92,
                '“' => 0x93,
                '”' => 0x94,
                '•' => 0x95,
                '–' => 0x96,
                '—' => 0x97,
                '˜' => 0x98,
                '™' => 0x99,
                'š' => 0x9A,
                '›' => 0x9B,
                'œ' => 0x9C,
                'ž' => 0x9E,
                'Ÿ' => 0x9F,
                _ => b'?',
            },
        })
        .collect()
}

/// One page's drawing, in top-down coordinates.
struct Page {
    content: Content,
    height: f32,
    landscape: bool,
}

impl Page {
    fn new(landscape: bool) -> Page {
        let (_, height) = if landscape { LANDSCAPE } else { PORTRAIT };
        Page {
            content: Content::new(),
            height,
            landscape,
        }
    }

    /// Text with its baseline `y` points from the top.
    fn text(&mut self, font: Name, size: f32, x: f32, y: f32, text: &str) {
        let bytes = win_ansi(text);
        self.content
            .begin_text()
            .set_font(font, size)
            .next_line(x, self.height - y)
            .show(Str(&bytes))
            .end_text();
    }

    /// Text ending at `right`.
    fn text_right(&mut self, font: Name, size: f32, right: f32, y: f32, text: &str) {
        let w = width(text, size, font == BOLD);
        self.text(font, size, right - w, y, text);
    }

    fn fill_rect(&mut self, rgb: (f32, f32, f32), x: f32, y: f32, w: f32, h: f32) {
        self.content
            .save_state()
            .set_fill_rgb(rgb.0, rgb.1, rgb.2)
            .rect(x, self.height - y - h, w, h)
            .fill_nonzero()
            .restore_state();
    }

    fn line(&mut self, gray: f32, x1: f32, y1: f32, x2: f32, y2: f32) {
        self.content
            .save_state()
            .set_stroke_gray(gray)
            .set_line_width(0.5)
            .move_to(x1, self.height - y1)
            .line_to(x2, self.height - y2)
            .stroke()
            .restore_state();
    }
}

const INK: (f32, f32, f32) = (0.1, 0.12, 0.16);
const ACCENT: (f32, f32, f32) = (0.18, 0.36, 0.62);
const WARN: (f32, f32, f32) = (0.72, 0.16, 0.12);
const SHADE: (f32, f32, f32) = (0.93, 0.94, 0.96);

/// Draws the report: the summary page, then `rows` (the report's rows, `summary.rows` of them).
pub fn render(
    summary: &Summary,
    name: &str,
    rows: impl Iterator<Item = Result<Vec<String>, WriteError>>,
) -> Result<Vec<u8>, WriteError> {
    // each page is written into the document as soon as it is drawn
    let mut pages = Assembler::new();
    pages.push(summary_page(summary, name));
    let columns = summary.kind.columns;
    let (page_w, page_h) = LANDSCAPE;
    let usable = page_w - 2.0 * MARGIN;
    let total_weight: f32 = columns.iter().map(|c| c.weight()).sum();
    let widths: Vec<f32> = columns
        .iter()
        .map(|c| usable * c.weight() / total_weight)
        .collect();
    let top = MARGIN + 28.0;
    let per_page = ((page_h - top - MARGIN - 20.0) / ROW_HEIGHT)
        .floor()
        .max(1.0) as u64;
    let table_pages = summary.rows.div_ceil(per_page).max(1);
    let title = format!("{} ({})", summary.kind.title, name);
    let mut page_no = 0u64;
    let mut current: Option<(Page, f32, u64)> = None;
    for row in rows {
        let row = row?;
        if current.as_ref().is_some_and(|state| state.2 >= per_page) {
            if let Some((done, _, _)) = current.take() {
                pages.push(done);
            }
        }
        let (page, y, n) = current.get_or_insert_with(|| {
            page_no += 1;
            let page = table_page(summary, &title, &widths, page_no, table_pages);
            (page, top + ROW_HEIGHT, 0)
        });
        if *n % 2 == 1 {
            page.fill_rect(SHADE, MARGIN, *y - ROW_HEIGHT + 2.0, usable, ROW_HEIGHT);
        }
        let mut x = MARGIN;
        for ((cell, w), column) in row.iter().zip(&widths).zip(columns) {
            // the CSV keeps the full RFC 3339 time; a printed row shows it to the second
            let cell = if *column == Column::Time && cell.len() >= 19 {
                cell[..19].replacen('T', " ", 1)
            } else {
                cell.clone()
            };
            let shown = fit(&cell, CELL_SIZE, w - 2.0 * CELL_PAD);
            page.text(REGULAR, CELL_SIZE, x + CELL_PAD, *y, &shown);
            x += w;
        }
        *y += ROW_HEIGHT;
        *n += 1;
    }
    let mut last = match current.take() {
        Some((page, y, _)) => (page, y),
        None => {
            let mut page = table_page(summary, &title, &widths, 1, 1);
            page.text(
                REGULAR,
                9.0,
                MARGIN,
                top + 2.0 * ROW_HEIGHT,
                "No events in this report.",
            );
            (page, top + 3.0 * ROW_HEIGHT)
        }
    };
    if summary.cut {
        let note = format!(
            "The report was cut at {} rows: it selected {} events in all (counted on the summary page). Narrow the range or the filters for the rest.",
            summary.max_rows, summary.events
        );
        last.0.content.set_fill_rgb(WARN.0, WARN.1, WARN.2);
        let mut y = last.1 + 6.0;
        for line in wrap(&note, 8.0, usable / 1.1) {
            last.0.text(BOLD, 8.0, MARGIN, y, &line);
            y += 10.0;
        }
    }
    pages.push(last.0);
    Ok(pages.finish(summary, name))
}

/// The document being written: pages as they come, then the catalog, the page tree, the two
/// fonts and the document information.
struct Assembler {
    pdf: Pdf,
    pages: Vec<Ref>,
    next: i32,
}

const CATALOG: Ref = Ref::new(1);
const TREE: Ref = Ref::new(2);
const FONT_REGULAR: Ref = Ref::new(3);
const FONT_BOLD: Ref = Ref::new(4);
const INFO: Ref = Ref::new(5);

impl Assembler {
    fn new() -> Assembler {
        Assembler {
            pdf: Pdf::new(),
            pages: Vec::new(),
            next: 6,
        }
    }

    fn push(&mut self, page: Page) {
        let page_id = Ref::new(self.next);
        let content_id = Ref::new(self.next + 1);
        self.next += 2;
        let (w, h) = if page.landscape { LANDSCAPE } else { PORTRAIT };
        let mut p = self.pdf.page(page_id);
        p.parent(TREE)
            .media_box(Rect::new(0.0, 0.0, w, h))
            .contents(content_id);
        p.resources()
            .fonts()
            .pair(REGULAR, FONT_REGULAR)
            .pair(BOLD, FONT_BOLD);
        p.finish();
        self.pdf.stream(content_id, &page.content.finish());
        self.pages.push(page_id);
    }

    fn finish(mut self, summary: &Summary, name: &str) -> Vec<u8> {
        let pdf = &mut self.pdf;
        pdf.catalog(CATALOG).pages(TREE);
        pdf.pages(TREE)
            .kids(self.pages.iter().copied())
            .count(self.pages.len() as i32);
        pdf.type1_font(FONT_REGULAR)
            .base_font(Name(b"Helvetica"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(FONT_BOLD)
            .base_font(Name(b"Helvetica-Bold"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        let generated = chrono::DateTime::from_timestamp_micros(summary.generated_at);
        let mut doc = pdf.document_info(INFO);
        doc.title(TextStr(&format!(
            "Trailhub report: {} ({name})",
            summary.kind.title
        )))
        .producer(TextStr(concat!("trailhub ", env!("CARGO_PKG_VERSION"))));
        if let Some(t) = generated {
            use chrono::{Datelike, Timelike};
            doc.creation_date(
                Date::new(t.year().clamp(0, 9999) as u16)
                    .month(t.month() as u8)
                    .day(t.day() as u8)
                    .hour(t.hour() as u8)
                    .minute(t.minute() as u8)
                    .second(t.second() as u8)
                    .utc_offset_hour(0)
                    .utc_offset_minute(0),
            );
        }
        doc.finish();
        self.pdf.finish()
    }
}

/// A rows page: the report's title line, the header row, and the page number.
fn table_page(summary: &Summary, title: &str, widths: &[f32], n: u64, of: u64) -> Page {
    let mut page = Page::new(true);
    let (page_w, page_h) = LANDSCAPE;
    let usable = page_w - 2.0 * MARGIN;
    page.text(
        BOLD,
        10.0,
        MARGIN,
        MARGIN + 6.0,
        &fit(title, 10.0, usable * 0.6),
    );
    page.text_right(
        REGULAR,
        8.0,
        page_w - MARGIN,
        MARGIN + 6.0,
        &format!(
            "{} to {} (UTC)",
            short_time(summary.since),
            short_time(summary.until)
        ),
    );
    let header_y = MARGIN + 28.0;
    page.fill_rect(
        ACCENT,
        MARGIN,
        header_y - ROW_HEIGHT + 1.0,
        usable,
        ROW_HEIGHT + 1.0,
    );
    page.content.set_fill_gray(1.0);
    let mut x = MARGIN;
    for (column, w) in summary.kind.columns.iter().zip(widths) {
        page.text(
            BOLD,
            CELL_SIZE,
            x + CELL_PAD,
            header_y - 1.0,
            &fit(column.header(), CELL_SIZE, w - 2.0 * CELL_PAD - 1.0),
        );
        x += w;
    }
    page.content.set_fill_rgb(INK.0, INK.1, INK.2);
    page.text_right(
        REGULAR,
        7.0,
        page_w - MARGIN,
        page_h - MARGIN + 14.0,
        &format!("rows, page {n} of {of}"),
    );
    page
}

fn short_time(t: crate::time::Micros) -> String {
    // 2024-05-01T00:00:00.000000Z -> 2024-05-01 00:00:00
    let s = format_micros(t);
    format!("{} {}", &s[..10], &s[11..19])
}

/// Lines of `text` no wider than `max` at `size`, broken at spaces.
fn wrap(text: &str, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if width(&candidate, size, false) > max && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
            line = word.to_string();
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.into_iter().map(|l| fit(&l, size, max)).collect()
}

fn summary_page(s: &Summary, name: &str) -> Page {
    let mut page = Page::new(false);
    let (page_w, _) = PORTRAIT;
    let usable = page_w - 2.0 * MARGIN;
    let mut y = MARGIN + 16.0;
    page.content.set_fill_rgb(ACCENT.0, ACCENT.1, ACCENT.2);
    page.text(
        BOLD,
        18.0,
        MARGIN,
        y,
        &fit(&format!("{} report", s.kind.title), 18.0, usable),
    );
    page.content.set_fill_rgb(INK.0, INK.1, INK.2);
    y += 16.0;
    page.text(REGULAR, 10.0, MARGIN, y, &fit(name, 10.0, usable));
    y += 12.0;
    for line in wrap(s.kind.about, 8.5, usable) {
        page.text(REGULAR, 8.5, MARGIN, y, &line);
        y += 11.0;
    }
    y += 8.0;
    let filters = if s.filter.is_empty() {
        "none".to_string()
    } else {
        s.filter
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let label_w = 70.0;
    let facts: Vec<(&str, String)> = vec![
        (
            "Range",
            format!("{} to {} (UTC)", short_time(s.since), short_time(s.until)),
        ),
        ("Filters", filters),
        ("Selects", s.kind.describe()),
        (
            "Generated",
            format!("{} (UTC) by trailhub", short_time(s.generated_at)),
        ),
        ("Events", s.events.to_string()),
        ("Rows", s.rows.to_string()),
    ];
    for (label, value) in facts {
        page.text(BOLD, 9.0, MARGIN, y, label);
        for line in wrap(&value, 9.0, usable - label_w) {
            page.text(REGULAR, 9.0, MARGIN + label_w, y, &line);
            y += 12.0;
        }
    }
    if s.cut {
        page.content.set_fill_rgb(WARN.0, WARN.1, WARN.2);
        for line in wrap(
            &format!(
                "Cut: the report holds its first {} rows (newest first); the counts on this page cover all {} events it selected.",
                s.max_rows, s.events
            ),
            9.0,
            usable,
        ) {
            page.text(BOLD, 9.0, MARGIN, y, &line);
            y += 12.0;
        }
        page.content.set_fill_rgb(INK.0, INK.1, INK.2);
    }
    y += 10.0;

    // three count tables side by side
    let col_w = (usable - 20.0) / 3.0;
    let tables = [
        ("By outcome", &s.by_outcome),
        ("By category", &s.by_category),
        ("By integration", &s.by_integration),
    ];
    let mut lowest = y;
    for (i, (title, counts)) in tables.iter().enumerate() {
        let x = MARGIN + i as f32 * (col_w + 10.0);
        let mut ty = y;
        page.text(BOLD, 9.5, x, ty, title);
        ty += 4.0;
        page.line(0.6, x, ty, x + col_w, ty);
        ty += 10.0;
        let mut sorted: Vec<(&String, &u64)> = counts.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown = sorted.len().min(MAX_GROUPS);
        for (group, n) in &sorted[..shown] {
            page.text(REGULAR, 8.5, x, ty, &fit(group, 8.5, col_w - 50.0));
            page.text_right(REGULAR, 8.5, x + col_w, ty, &n.to_string());
            ty += 11.0;
        }
        if sorted.len() > shown {
            let rest: u64 = sorted[shown..].iter().map(|(_, n)| **n).sum();
            page.text(
                REGULAR,
                8.5,
                x,
                ty,
                &format!("{} more", sorted.len() - shown),
            );
            page.text_right(REGULAR, 8.5, x + col_w, ty, &rest.to_string());
            ty += 11.0;
        }
        if sorted.is_empty() {
            page.text(REGULAR, 8.5, x, ty, "none");
            ty += 11.0;
        }
        lowest = lowest.max(ty);
    }
    y = lowest + 12.0;

    page.text(BOLD, 9.5, MARGIN, y, "Top actors");
    y += 4.0;
    page.line(0.6, MARGIN, y, MARGIN + usable, y);
    y += 10.0;
    let top = s.top_actors(TOP_ACTORS);
    let most = top.first().map(|(_, n)| *n).unwrap_or(1).max(1);
    for (actor, n) in &top {
        page.text(REGULAR, 8.5, MARGIN, y, &fit(actor, 8.5, 220.0));
        let bar = (usable - 300.0) * (*n as f32 / most as f32);
        page.fill_rect(ACCENT, MARGIN + 230.0, y - 6.5, bar.max(0.5), 7.0);
        page.text_right(REGULAR, 8.5, MARGIN + usable, y, &n.to_string());
        y += 11.0;
    }
    if top.is_empty() {
        page.text(REGULAR, 8.5, MARGIN, y, "none");
        y += 11.0;
    }
    y += 14.0;

    chart(&mut page, s, y, usable);
    page.text_right(
        REGULAR,
        7.0,
        page_w - MARGIN,
        PORTRAIT.1 - MARGIN + 14.0,
        "summary",
    );
    page
}

/// Events per UTC day as bars, with a zero line, the busiest day's count and the first and
/// last day under the axis.
fn chart(page: &mut Page, s: &Summary, y: f32, usable: f32) {
    page.text(BOLD, 9.5, MARGIN, y, "Events per day (UTC)");
    let days = s.days();
    let bottom_room = 40.0;
    let height = (PORTRAIT.1 - MARGIN - bottom_room - (y + 14.0)).clamp(60.0, 220.0);
    let top = y + 14.0;
    let base = top + height;
    let axis_x = MARGIN + 34.0;
    let plot_w = usable - 34.0;
    let most = days.iter().map(|(_, n)| *n).max().unwrap_or(0);
    page.line(0.3, axis_x, base, axis_x + plot_w, base);
    page.line(0.3, axis_x, top, axis_x, base);
    if most > 0 {
        page.line(0.85, axis_x, top, axis_x + plot_w, top);
        page.line(
            0.85,
            axis_x,
            top + height / 2.0,
            axis_x + plot_w,
            top + height / 2.0,
        );
    }
    page.text_right(REGULAR, 7.0, axis_x - 3.0, top + 3.0, &most.to_string());
    page.text_right(REGULAR, 7.0, axis_x - 3.0, base + 3.0, "0");
    if days.is_empty() {
        return;
    }
    let slot = plot_w / days.len() as f32;
    let gap = if slot > 3.0 { slot * 0.15 } else { 0.0 };
    for (i, (_, n)) in days.iter().enumerate() {
        if *n == 0 || most == 0 {
            continue;
        }
        let h = height * (*n as f32 / most as f32);
        page.fill_rect(
            ACCENT,
            axis_x + i as f32 * slot + gap / 2.0,
            base - h,
            (slot - gap).max(0.3),
            h,
        );
    }
    let day = |t: crate::time::Micros| format_micros(t)[..10].to_string();
    page.text(REGULAR, 7.0, axis_x, base + 10.0, &day(days[0].0));
    if days.len() > 1 {
        page.text_right(
            REGULAR,
            7.0,
            axis_x + plot_w,
            base + 10.0,
            &day(days[days.len() - 1].0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_win_ansi_and_cut_to_fit() {
        assert_eq!(win_ansi("Zoë – “ok” €"), b"Zo\xeb \x96 \x93ok\x94 \x80");
        assert_eq!(win_ansi("Łukasz 日本"), b"?ukasz ??");
        assert!((width("Hi", 10.0, false) - 7.22 - 2.22).abs() < 0.01);
        let cut = fit("a rather long description of an event", 6.5, 40.0);
        assert!(
            cut.ends_with("...") && width(&cut, 6.5, false) <= 40.0,
            "{cut}"
        );
        assert_eq!(fit("short", 6.5, 40.0), "short");
        assert_eq!(fit("two\nlines", 6.5, 100.0), "two lines");
        let lines = wrap("one two three four five six", 9.0, 50.0);
        assert!(lines.len() > 1 && lines.iter().all(|l| width(l, 9.0, false) <= 50.0));
    }
}
