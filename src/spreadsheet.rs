//! CSV cells that a spreadsheet will not run as formulas
//!
//! Actor names, user agents and descriptions come from outside (a failed login carries whatever
//! name the attacker typed). Opened in Excel, LibreOffice or Google Sheets, a CSV cell starting
//! with `=`, `+`, `-` or `@` (or a tab or carriage return before one) is a formula:
//! `=HYPERLINK("http://evil","x")` or worse. Following OWASP's "CSV Injection" advice, such a
//! cell gets a leading `'` (shown as text, not evaluated) and every cell is quoted.
//!
//! Negative numbers (`-5`) are neutralised too: no column the hub writes is numeric, and
//! `-2+3+cmd|' /C calc'!A0` starts like one. A program reading the CSV back can drop a leading
//! `'` that precedes one of these characters to get the original text.

use std::borrow::Cow;

/// Characters that make a spreadsheet read a cell as a formula when they lead it.
const FORMULA_TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// The cell as written to CSV: with a leading `'` when it would otherwise start a formula.
pub fn safe_cell(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// A cell read back from the hub's CSV as it was before [`safe_cell`]: the leading `'` dropped
/// where it precedes a formula trigger.
pub fn original_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_TRIGGERS) => rest,
        _ => cell,
    }
}

/// A CSV writer for cells from outside: every field quoted (OWASP), quotes doubled.
pub fn csv_writer<W: std::io::Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_get_a_quote_and_the_rest_is_untouched() {
        for bad in [
            "=HYPERLINK(\"http://evil\",\"x\")",
            "+cmd",
            "-2+3",
            "-5",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(safe_cell(bad), format!("'{bad}"));
            assert_eq!(original_cell(&safe_cell(bad)), bad);
        }
        for fine in ["alice", "", " =1", "'=1", "2024-05-01T00:00:00Z", "a=b"] {
            assert_eq!(safe_cell(fine), fine);
            // a cell that itself starts with `'` and a trigger reads back without its `'`: the
            // one ambiguity of the scheme
            if !fine.starts_with('\'') {
                assert_eq!(original_cell(&safe_cell(fine)), fine);
            }
        }
        let mut out = Vec::new();
        {
            let mut w = csv_writer(&mut out);
            w.write_record([safe_cell("=A1").as_ref(), "plain", "say \"hi\""])
                .expect("writes");
            w.flush().expect("flushes");
        }
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "\"'=A1\",\"plain\",\"say \"\"hi\"\"\"\n"
        );
    }
}
