//! The HTML report: changelogs of an output directory rendered as plots.
//!
//! [`render`] reads a finished (or running) job's output directory and writes one
//! self-contained HTML page: inline CSS, plots as inline SVG, no scripts and nothing fetched
//! (a Content-Security-Policy says so to the browser). Each changelog is read back into the rows
//! that hold at its end (`load.rs`); the page has a summary, quality over time with drift
//! markers, a drift heatmap, label latency and completeness, the online model's versions and
//! decisions, and the alerts. A missing changelog (drift and learning are optional) turns its
//! section into one sentence saying so.
//!
//! The output is deterministic: rows are taken in a canonical order, maps are `BTreeMap`s and
//! numbers are written with a fixed precision (data attributes with the shortest text that
//! reads back as the same number), so the same directory gives the same bytes. A window family
//! with more than [`MAX_WINDOWS`] windows is thinned to that many, evenly and always keeping the
//! first and the last, and the page says so.
//!
//! Every chart is an `<svg>` with an `id`, and every element that shows a value carries it in
//! `data-*` attributes, so tests (and readers with developer tools) can check the plots against
//! the changelogs.

mod alerts;
mod drift;
mod html;
mod labels;
pub(crate) mod load;
mod models;
mod quality;
mod shadow;
mod summary;
mod svg;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use load::{Cols, Current};

/// Most windows (columns, points) a chart shows per family; more are thinned.
pub const MAX_WINDOWS: usize = 500;

/// The changelogs of one output directory.
pub(crate) struct Inputs {
    /// The directory.
    pub dir: PathBuf,
    /// `quality.jsonl`.
    pub quality: Option<Current>,
    /// `label_health.jsonl`.
    pub label_health: Option<Current>,
    /// `drift.jsonl`.
    pub drift: Option<Current>,
    /// `drift_alerts.jsonl`.
    pub drift_alerts: Option<Current>,
    /// Every row `drift_alerts.jsonl` ever inserted (a firing, even if later resolved).
    pub drift_alerts_fired: Vec<(u64, Cols)>,
    /// `drift_detections.jsonl`.
    pub drift_detections: Option<Current>,
    /// `model_versions.jsonl`.
    pub model_versions: Option<Current>,
    /// `model_decisions.jsonl`.
    pub model_decisions: Option<Current>,
    /// `ingest.jsonl`.
    pub ingest: Option<Current>,
    /// `dead_letters.jsonl`.
    pub dead_letters: Option<Current>,
    /// `alerts.jsonl`.
    pub alerts: Option<Current>,
    /// Every line of `alerts.jsonl`, as (ts, diff, columns).
    pub alerts_lines: Vec<(u64, i64, Cols)>,
    /// Whether there is a `shadow.jsonl`.
    pub shadow_present: bool,
    /// The last row `shadow.jsonl` inserted for each window, segment and production model, with
    /// its ts: shadow rows leave without a tombstone when their window retires, so the rows
    /// that hold at the end do not show them.
    pub shadow_last: Vec<(u64, Cols)>,
}

impl Inputs {
    /// Reads every changelog the report uses from `dir`.
    fn load(dir: &Path) -> Result<Inputs> {
        let mut drift_alerts_fired = Vec::new();
        load::scan(&load::path_of(dir, "drift_alerts"), |ts, diff, cols| {
            if diff > 0 {
                drift_alerts_fired.push((ts, cols));
            }
        })?;
        let mut alerts_lines = Vec::new();
        load::scan(&load::path_of(dir, "alerts"), |ts, diff, cols| {
            alerts_lines.push((ts, diff, cols));
        })?;
        let mut shadow: std::collections::BTreeMap<Vec<String>, (u64, Cols)> =
            std::collections::BTreeMap::new();
        let shadow_present = load::scan(&load::path_of(dir, "shadow"), |ts, diff, cols| {
            if diff > 0 {
                let key = ["window", "window_start", "segment", "model_version"]
                    .iter()
                    .map(|k| cols.get(*k).map(|v| v.to_string()).unwrap_or_default())
                    .collect();
                shadow.insert(key, (ts, cols));
            }
        })?;
        Ok(Inputs {
            dir: dir.to_path_buf(),
            shadow_present,
            shadow_last: shadow.into_values().collect(),
            quality: load::current(dir, "quality")?,
            label_health: load::current(dir, "label_health")?,
            drift: load::current(dir, "drift")?,
            drift_alerts: load::current(dir, "drift_alerts")?,
            drift_alerts_fired,
            drift_detections: load::current(dir, "drift_detections")?,
            model_versions: load::current(dir, "model_versions")?,
            model_decisions: load::current(dir, "model_decisions")?,
            ingest: load::current(dir, "ingest")?,
            dead_letters: load::current(dir, "dead_letters")?,
            alerts: load::current(dir, "alerts")?,
            alerts_lines,
        })
    }
}

/// The page's style sheet.
const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;max-width:1000px;margin:0 auto;padding:0 16px 48px}\
h1{font-size:24px;margin:24px 0 4px}h2{font-size:19px;margin:36px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:20px 0 4px}\
p.explain{margin:4px 0 10px}p.note{color:#555;font-size:13px;margin:4px 0}p.missing{color:#555;font-style:italic}\
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
div.tw{overflow-x:auto}td:not(:last-child){white-space:nowrap}code{font-size:12px}\
svg{display:block;margin:6px 0 14px;background:#fff}svg text{font:11px sans-serif;fill:#333}svg text.title{font-size:12px}\
svg .grid{stroke:#eee}svg .frame{stroke:#999}svg .legend text{font-size:11px}\
dl.summary{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dl.summary dt{font-weight:600}dl.summary dd{margin:0}";

/// Renders the report of the output directory `outputs` as one self-contained HTML page.
pub fn render(outputs: &Path) -> Result<String> {
    std::fs::read_dir(outputs).map_err(|e| Error::io(outputs, e))?;
    let inputs = Inputs::load(outputs)?;
    let dir = html::esc(&outputs.display().to_string());
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<link rel=\"icon\" href=\"data:,\">\n<title>tidemark report: {dir}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
<h1>tidemark report</h1>\n<p class=\"note\">Outputs of <code>{dir}</code>. All times are event time, ISO-8601 UTC.</p>\n"
    );
    for section in [
        summary::section(&inputs),
        quality::section(&inputs),
        drift::section(&inputs),
        labels::section(&inputs),
        models::section(&inputs),
        shadow::section(&inputs),
        alerts::section(&inputs),
    ] {
        page.push_str(&section);
        page.push('\n');
    }
    page.push_str(
        "<footer><p class=\"note\">Written by <code>tidemark report</code> from the changelogs alone: \
the same directory gives the same page, byte for byte.</p></footer>\n</body>\n</html>\n",
    );
    Ok(page)
}

/// A section with a heading, an explanation paragraph and a body.
fn section(id: &str, heading: &str, explain: &str, body: &str) -> String {
    format!(
        "<section id=\"{}\">\n<h2>{}</h2>\n<p class=\"explain\">{}</p>\n{body}</section>\n",
        html::esc(id),
        html::esc(heading),
        html::esc(explain)
    )
}

/// The sentence a section shows instead of a plot when its changelog is missing.
fn missing(file: &str, why: &str) -> String {
    format!(
        "<p class=\"missing\">There is no <code>{}</code> in this directory: {}</p>\n",
        html::esc(file),
        html::esc(why)
    )
}

/// The note a chart gets when its windows were thinned.
fn thinned_note(family: &str, shown: usize, total: usize) -> String {
    if shown == total {
        return String::new();
    }
    format!(
        "<p class=\"note\">Window family {} has {total} windows; {shown} of them, evenly spread \
and including the first and the last, are plotted to keep this page small.</p>\n",
        html::esc(family)
    )
}
