//! HTML text: escaping, fixed-precision numbers and tables.

use std::fmt::Write;

/// `s` escaped for HTML text and attribute values (`& < > " '`).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `x` with `prec` decimals, without a negative zero.
pub(crate) fn fixed(x: f64, prec: usize) -> String {
    let s = format!("{x:.prec$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// An optional number with `prec` decimals, or an en dash.
pub(crate) fn opt(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "–".to_string(), |v| fixed(v, prec))
}

/// A number readable at any magnitude: 4 decimals between 0.001 and a million, otherwise
/// scientific notation with 4 decimals.
pub(crate) fn num(x: f64) -> String {
    if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        fixed(x, 4)
    } else {
        format!("{x:.4e}")
    }
}

/// A data value written exactly (the shortest text that reads back as the same `f64`).
pub(crate) fn exact(x: f64) -> String {
    format!("{x}")
}

/// An epoch-ms time as ISO-8601 UTC, to the second.
pub(crate) fn iso(ms: u64) -> String {
    crate::runtime::iso_time(ms)
}

/// A table with a header row; every cell is escaped text. Above `limit` rows, the rest are
/// counted in a final line instead of shown.
pub(crate) fn table(id: &str, header: &[&str], rows: &[Vec<String>], limit: usize) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<div class=\"tw\"><table id=\"{}\"><thead><tr>",
        esc(id)
    );
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows.iter().take(limit) {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", esc(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    if rows.len() > limit {
        let _ = write!(
            out,
            "<p class=\"note\">{} more rows are not shown (the first {limit} are).</p>",
            rows.len() - limit
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("country=US"), "country=US");
        let t = table("t", &["<h>"], &[vec!["<x>".into()], vec!["y".into()]], 1);
        assert!(t.contains("&lt;h&gt;") && t.contains("&lt;x&gt;") && !t.contains(">y<"));
        assert!(t.contains("1 more rows"));
    }

    #[test]
    fn numbers_have_a_fixed_precision_and_no_negative_zero() {
        assert_eq!(fixed(0.81234, 4), "0.8123");
        assert_eq!(fixed(-0.00001, 3), "0.000");
        assert_eq!(fixed(-1.5, 1), "-1.5");
        assert_eq!(opt(None, 2), "–");
        assert_eq!(num(0.34524), "0.3452");
        assert_eq!(num(3.0976e-307), "3.0976e-307");
        assert_eq!(num(0.0), "0.0000");
        assert_eq!(exact(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(iso(1_767_225_600_000), "2026-01-01T00:00:00Z");
    }
}
