//! Plain-text tables for people: aligned columns, cut to a sensible width.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Renders rows under a header; the last column is not padded.
pub fn render(header: &[&str], rows: &[Vec<String>], max_width: usize) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.width().min(max_width));
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = cut(cell, max_width);
            if i + 1 == cols {
                l.push_str(&cell);
            } else {
                l.push_str(&cell);
                l.push_str(&" ".repeat(widths[i] - cell.width() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

/// Cuts display text to `max` columns, marking the cut with '…'. Control characters
/// (which could move the cursor or fake lines) are replaced.
pub fn cut(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        let cw = c.width().unwrap_or(0);
        if w + cw > max.saturating_sub(1) && s.width() > max {
            out.push('…');
            return out;
        }
        w += cw;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_and_cuts_long_cells() {
        let t = render(
            &["ID", "SUBJECT"],
            &[vec!["CASE-1".into(), "x".repeat(100)], vec!["CASE-10".into(), "日本語".into()]],
            20,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID       SUBJECT");
        assert!(lines[1].starts_with("CASE-1   xxx") && lines[1].ends_with('…') && lines[1].width() == 9 + 20);
        assert_eq!(lines[2], "CASE-10  日本語");
        assert_eq!(cut("a\u{1b}[2Jb", 10), "a [2Jb");
    }
}
