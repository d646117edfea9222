//! The summary at the top of the page: what the directory covers and how much it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::html::{esc, iso, table};
use super::load::{self, families, u64_of, Window};
use super::{alerts, Inputs};

/// The summary section.
pub(crate) fn section(inputs: &Inputs) -> String {
    let mut body = String::from("<dl class=\"summary\">");
    let mut item = |k: &str, v: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    };
    item("output directory", inputs.dir.display().to_string());
    item("event time covered", covered(inputs));

    let windowed = [&inputs.quality, &inputs.label_health, &inputs.drift];
    let mut fams: BTreeMap<String, BTreeSet<Window>> = BTreeMap::new();
    for c in windowed.into_iter().flatten() {
        for (f, ws) in families(&c.rows) {
            fams.entry(f).or_default().extend(ws);
        }
    }
    let windows = if fams.is_empty() {
        "none (no windowed outputs)".to_string()
    } else {
        fams.iter()
            .map(|(f, ws)| {
                let size = ws.iter().map(|w| w.end - w.start).max().unwrap_or(0);
                format!("{f}: {} windows of {}", ws.len(), duration(size))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    item("windows", windows);

    item("alerts fired", alerts::fired_summary(inputs));
    item(
        "concept-drift detections",
        inputs.drift_detections.as_ref().map_or_else(
            || "not monitored (no drift_detections.jsonl)".to_string(),
            |c| c.rows.len().to_string(),
        ),
    );
    item(
        "model versions published",
        inputs.model_versions.as_ref().map_or_else(
            || "no online learning (no model_versions.jsonl)".to_string(),
            |c| c.rows.len().to_string(),
        ),
    );
    item(
        "dead letters",
        inputs.dead_letters.as_ref().map_or_else(
            || "no dead_letters.jsonl".to_string(),
            |c| {
                format!(
                    "{} records refused (rows of dead_letters.jsonl)",
                    c.rows.len()
                )
            },
        ),
    );
    body.push_str("</dl>\n");

    match &inputs.ingest {
        None => body.push_str(&super::missing(
            "ingest.jsonl",
            "the counts of records read, accepted and dead-lettered are unknown.",
        )),
        Some(c) => {
            let mut rows = Vec::new();
            let mut total = [0u64; 3];
            for (k, r) in c.latest_by(&["stream"]) {
                let n = ["read", "accepted", "dead_lettered"].map(|col| u64_of(&r.cols, col));
                for (t, v) in total.iter_mut().zip(n) {
                    *t += v.unwrap_or(0);
                }
                let mut row = vec![k[0].clone()];
                row.extend(n.map(|v| v.map_or("–".into(), |v| v.to_string())));
                rows.push(row);
            }
            let mut all = vec!["all streams".to_string()];
            all.extend(total.map(|v| v.to_string()));
            rows.push(all);
            body.push_str("<h3>Records read (from ingest.jsonl)</h3>\n");
            body.push_str(&table(
                "ingest-table",
                &["stream", "read", "accepted", "dead-lettered"],
                &rows,
                super::MAX_WINDOWS,
            ));
            body.push('\n');
        }
    }
    let files = [
        "quality",
        "label_health",
        "drift",
        "drift_alerts",
        "drift_detections",
        "model_versions",
        "model_decisions",
        "ingest",
        "dead_letters",
        "alerts",
    ];
    let read: Vec<String> = [
        &inputs.quality,
        &inputs.label_health,
        &inputs.drift,
        &inputs.drift_alerts,
        &inputs.drift_detections,
        &inputs.model_versions,
        &inputs.model_decisions,
        &inputs.ingest,
        &inputs.dead_letters,
        &inputs.alerts,
    ]
    .into_iter()
    .flatten()
    .map(|c| {
        let name = c.path.file_name().map_or_else(
            || c.path.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        );
        format!("{name} ({} lines)", c.lines)
    })
    .collect();
    if !read.is_empty() {
        let _ = writeln!(
            body,
            "<p class=\"note\">Read: {}.</p>",
            esc(&read.join(", "))
        );
    }
    let absent: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !load::path_of(&inputs.dir, f).is_file())
        .collect();
    if !absent.is_empty() {
        let _ = writeln!(
            body,
            "<p class=\"note\">Not in this directory: {}.</p>",
            esc(&absent
                .iter()
                .map(|f| format!("{f}.jsonl"))
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
    super::section(
        "summary",
        "Summary",
        "This page describes one run of a tidemark monitoring job from the files it wrote. The job \
         reads events (feature records), the predictions a production model made for them and \
         the ground-truth labels that arrive later, and keeps per event-time window the model's \
         quality, how quickly labels arrive, and how far the features drifted from a reference. \
         Below: how many records the job read, accepted and refused, which stretch of event time \
         its windows cover, and how many alerts fired.",
        &body,
    )
}

/// The event time the windowed outputs cover, or the ingest timestamps when none.
fn covered(inputs: &Inputs) -> String {
    let mut range: Option<(u64, u64)> = None;
    for c in [&inputs.quality, &inputs.label_health, &inputs.drift]
        .into_iter()
        .flatten()
    {
        for r in &c.rows {
            if let Some((_, w)) = load::window_of(&r.cols) {
                range =
                    Some(range.map_or((w.start, w.end), |(a, b)| (a.min(w.start), b.max(w.end))));
            }
        }
    }
    match range {
        Some((a, b)) => format!(
            "{} to {} ({}; from the start of the first window to the end of the last)",
            iso(a),
            iso(b),
            duration(b - a)
        ),
        None => match inputs.ingest.as_ref().and_then(|c| c.ts_range) {
            Some((a, b)) => format!("{} to {} (timestamps of ingest.jsonl)", iso(a), iso(b)),
            None => "unknown (no windowed outputs and no ingest.jsonl)".to_string(),
        },
    }
}

/// A duration in ms as days, hours, minutes and seconds.
pub(crate) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d} d"));
    }
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec} s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(300_000), "5 min");
        assert_eq!(duration(90_061_000), "1 d 1 h 1 min 1 s");
        assert_eq!(duration(0), "0 s");
    }
}
