//! Changelogs read back into the rows that hold at their end.
//!
//! A changelog line is `{"ts", "diff", columns…}`; a row holds while the sum of its diffs is
//! positive. Reading consolidates as it goes (a retracted row leaves memory), so memory follows
//! the number of rows that hold, not the length of the file. A line that is not a changelog line
//! is an error naming the file and the line (as `tidemark verify` reports it).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The columns of one row.
pub(crate) type Cols = Map<String, Value>;

/// A row that holds at the end of a changelog.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The `ts` of the latest line that inserted it.
    pub ts: u64,
    /// Its columns (without `ts` and `diff`).
    pub cols: Cols,
}

/// What a changelog holds at its end.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The file read.
    pub path: PathBuf,
    /// Lines in the file.
    pub lines: usize,
    /// Smallest and largest `ts` of any line.
    pub ts_range: Option<(u64, u64)>,
    /// Rows that hold, once per unit of multiplicity, ordered by (ts, columns).
    pub rows: Vec<Row>,
}

/// The path of changelog `name` in `dir`.
pub(crate) fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.jsonl"))
}

/// Calls `f(ts, diff, columns)` for every line of `path`; `Ok(false)` if there is no such file.
pub(crate) fn scan(path: &Path, mut f: impl FnMut(u64, i64, Cols)) -> Result<bool> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let (ts, diff, cols) = parse_line(&line).map_err(|reason| {
            Error::replay(
                path,
                format!("line {} is not a changelog line: {reason}", i + 1),
            )
        })?;
        f(ts, diff, cols);
    }
    Ok(true)
}

/// Splits one line into its `ts`, `diff` and columns.
fn parse_line(line: &str) -> std::result::Result<(u64, i64, Cols), String> {
    let mut cols = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("not JSON ({e})")),
    };
    let ts = cols
        .remove("ts")
        .and_then(|v| v.as_u64())
        .ok_or("no unsigned integer ts")?;
    let diff = cols
        .remove("diff")
        .and_then(|v| v.as_i64())
        .filter(|d| *d != 0)
        .ok_or("no non-zero integer diff")?;
    Ok((ts, diff, cols))
}

/// Reads changelog `name` of `dir` into the rows that hold at its end; `None` if it is missing.
pub(crate) fn current(dir: &Path, name: &str) -> Result<Option<Current>> {
    let path = path_of(dir, name);
    // Canonical text of a row -> (multiplicity, latest insert ts, columns).
    let mut held: BTreeMap<String, (i64, u64, Cols)> = BTreeMap::new();
    let (mut lines, mut ts_range) = (0usize, None::<(u64, u64)>);
    let found = scan(&path, |ts, diff, cols| {
        lines += 1;
        ts_range = Some(ts_range.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
        let key = serde_json::to_string(&cols).expect("JSON values serialize");
        let slot = held.entry(key).or_insert_with(|| (0, ts, cols));
        slot.0 += diff;
        if diff > 0 {
            slot.1 = slot.1.max(ts);
        }
    })?;
    if !found {
        return Ok(None);
    }
    let mut rows: Vec<(u64, String, Cols, i64)> = held
        .into_iter()
        .filter(|(_, (n, _, _))| *n > 0)
        .map(|(k, (n, ts, cols))| (ts, k, cols, n))
        .collect();
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let rows = rows
        .into_iter()
        .flat_map(|(ts, _, cols, n)| {
            (0..n).map(move |_| Row {
                ts,
                cols: cols.clone(),
            })
        })
        .collect();
    Ok(Some(Current {
        path,
        lines,
        ts_range,
        rows,
    }))
}

impl Current {
    /// The latest row per value of the `key` columns (ties: the later in row order).
    pub(crate) fn latest_by(&self, key: &[&str]) -> BTreeMap<Vec<String>, &Row> {
        let mut out: BTreeMap<Vec<String>, &Row> = BTreeMap::new();
        for r in &self.rows {
            out.insert(key.iter().map(|k| text(&r.cols, k)).collect(), r);
        }
        out
    }
}

/// A column as text: strings as they are, null or missing as the empty string, others as JSON.
pub(crate) fn text(cols: &Cols, k: &str) -> String {
    match cols.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// A string column, if present and a string.
pub(crate) fn str_of<'a>(cols: &'a Cols, k: &str) -> Option<&'a str> {
    cols.get(k).and_then(Value::as_str)
}

/// A numeric column, if present and a finite number (booleans count as 0 and 1).
pub(crate) fn f64_of(cols: &Cols, k: &str) -> Option<f64> {
    match cols.get(k)? {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        v => v.as_f64().filter(|x| x.is_finite()),
    }
}

/// An unsigned integer column, if present.
pub(crate) fn u64_of(cols: &Cols, k: &str) -> Option<u64> {
    cols.get(k).and_then(Value::as_u64)
}

/// One window of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Window {
    /// Its end (exclusive), epoch ms; windows order by end first.
    pub end: u64,
    /// Its start, epoch ms.
    pub start: u64,
}

/// The window of a windowed row, if it has one.
pub(crate) fn window_of(cols: &Cols) -> Option<(String, Window)> {
    let family = str_of(cols, "window")?.to_string();
    let start = u64_of(cols, "window_start")?;
    let end = u64_of(cols, "window_end")?;
    Some((family, Window { end, start }))
}

/// The windows of each family in `rows`, ordered by end.
pub(crate) fn families<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> BTreeMap<String, std::collections::BTreeSet<Window>> {
    let mut out: BTreeMap<String, std::collections::BTreeSet<Window>> = BTreeMap::new();
    for r in rows {
        if let Some((f, w)) = window_of(&r.cols) {
            out.entry(f).or_default().insert(w);
        }
    }
    out
}

/// The rows of `family` in the `shown` windows, per (segment, model version) and window.
pub(crate) fn by_segment_and_model<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    family: &str,
    shown: &std::collections::BTreeSet<Window>,
) -> BTreeMap<(String, String), BTreeMap<Window, &'a Row>> {
    let mut series: BTreeMap<(String, String), BTreeMap<Window, &'a Row>> = BTreeMap::new();
    for r in rows {
        if let Some((f, w)) = window_of(&r.cols) {
            if f == family && shown.contains(&w) {
                series
                    .entry((text(&r.cols, "segment"), text(&r.cols, "model_version")))
                    .or_default()
                    .insert(w, r);
            }
        }
    }
    series
}

/// A colour per segment of `series`, in segment order.
pub(crate) fn segment_colors<V>(
    series: &BTreeMap<(String, String), V>,
) -> BTreeMap<String, &'static str> {
    let segments: std::collections::BTreeSet<&String> = series.keys().map(|(s, _)| s).collect();
    segments
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), super::svg::color(i)))
        .collect()
}

/// The family with the smallest window size (then name), with its windows.
pub(crate) fn smallest_family<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> Option<(String, Vec<Window>)> {
    families(rows)
        .into_iter()
        .min_by_key(|(name, ws)| {
            let size = ws.iter().map(|w| w.end.saturating_sub(w.start)).max();
            (size, name.clone())
        })
        .map(|(name, ws)| (name, ws.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(path_of(dir, name), text).unwrap();
    }

    #[test]
    fn retractions_cancel_and_the_latest_row_per_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "x",
            concat!(
                "{\"ts\":1,\"diff\":1,\"k\":\"a\",\"v\":1.0}\n",
                "{\"ts\":2,\"diff\":-1,\"k\":\"a\",\"v\":1.0}\n",
                "{\"ts\":2,\"diff\":1,\"k\":\"a\",\"v\":2.5}\n",
                "{\"ts\":3,\"diff\":1,\"k\":\"b\",\"v\":null}\n",
                "{\"ts\":3,\"diff\":1,\"k\":\"b\",\"v\":null}\n",
            ),
        );
        let c = current(dir.path(), "x").unwrap().unwrap();
        assert_eq!(c.lines, 5);
        assert_eq!(c.ts_range, Some((1, 3)));
        assert_eq!(c.rows.len(), 3, "b holds twice");
        let latest = c.latest_by(&["k"]);
        assert_eq!(f64_of(&latest[&vec!["a".to_string()]].cols, "v"), Some(2.5));
        assert_eq!(f64_of(&latest[&vec!["b".to_string()]].cols, "v"), None);
        assert!(current(dir.path(), "missing").unwrap().is_none());
    }

    #[test]
    fn a_malformed_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "bad",
            "{\"ts\":1,\"diff\":1}\n{\"ts\":1,\"diff\":1,\"x\":\n",
        );
        let e = current(dir.path(), "bad").unwrap_err().to_string();
        assert!(e.contains("bad.jsonl") && e.contains("line 2"), "{e}");
        write(dir.path(), "nots", "{\"diff\":1}\n");
        let e = current(dir.path(), "nots").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("ts"), "{e}");
    }

    #[test]
    fn the_smallest_family_is_chosen_by_size() {
        let row = |f: &str, s: u64, e: u64| Row {
            ts: 0,
            cols: serde_json::from_str(&format!(
                "{{\"window\":\"{f}\",\"window_start\":{s},\"window_end\":{e}}}"
            ))
            .unwrap(),
        };
        let rows = [row("a15", 0, 900), row("b5", 0, 300), row("b5", 300, 600)];
        let (name, ws) = smallest_family(&rows).unwrap();
        assert_eq!(name, "b5");
        assert_eq!(ws.len(), 2);
    }
}
