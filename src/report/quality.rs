//! Quality over time: one line chart per metric, a line per segment and model version, with
//! markers where drift was detected or drift alerts fired.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::html::{esc, exact, fixed, iso};
use super::load::{self, f64_of, text, Window};
use super::svg::{self, Entry, LineChart, Marker, Point, Series, Swatch};
use super::Inputs;

/// The metrics plotted: column, chart title, y axis title, fixed y domain.
const METRICS: [(&str, &str, &str, Option<(f64, f64)>); 4] = [
    (
        "accuracy",
        "Accuracy",
        "accuracy at the threshold (share correct, 0–1)",
        Some((0.0, 1.0)),
    ),
    (
        "log_loss",
        "Log-loss",
        "log-loss (nats per prediction; lower is better)",
        None,
    ),
    (
        "auc",
        "AUC",
        "ROC AUC (0.5 = chance, 1 = perfect)",
        Some((0.0, 1.0)),
    ),
    (
        "brier",
        "Brier score",
        "Brier score (mean squared error of the score)",
        None,
    ),
];

/// Colour of concept-drift detection markers.
const DETECTION: &str = "#7f0000";
/// Colour of drift-alert window markers.
const ALERT: &str = "#e07b00";

/// The quality section.
pub(crate) fn section(inputs: &Inputs) -> String {
    let explain = "Each chart shows one quality metric of the model's predictions per event-time \
        window (x: the window's end), computed from the predictions whose labels have arrived. \
        There is one line per segment (slice of the traffic, e.g. country=US; \"all\" is \
        everything) and model version; dashed lines are the online model's prequential scores \
        (each example scored before it was learned), solid lines the production model's. Only \
        the window family with the smallest windows is plotted, with each window's latest value \
        (its final value once the run has finished). Vertical lines mark drift: solid dark red \
        at the event time of an example on which a concept-drift detector (ADWIN, Page-Hinkley, \
        DDM) fired on the model's errors, dashed orange at the end of a window in which a \
        feature-drift alert fired at some point of the run.";
    let Some(q) = &inputs.quality else {
        return super::section(
            "quality",
            "Quality over time",
            explain,
            &super::missing(
                "quality.jsonl",
                "the job wrote no quality metrics, so there is nothing to plot.",
            ),
        );
    };
    let Some((family, windows)) = load::smallest_family(&q.rows) else {
        return super::section(
            "quality",
            "Quality over time",
            explain,
            "<p class=\"missing\">quality.jsonl holds no windowed rows yet.</p>\n",
        );
    };
    let keep = svg::thin(windows.len(), super::MAX_WINDOWS);
    let shown: BTreeSet<Window> = keep.iter().map(|&i| windows[i]).collect();

    // (segment, model version) -> window -> row.
    let latest = q.latest_by(&[
        "window",
        "window_start",
        "window_end",
        "segment",
        "model_version",
    ]);
    let series = load::by_segment_and_model(latest.into_values(), &family, &shown);
    let seg_color = load::segment_colors(&series);

    let (markers, marker_legend, marker_note) = markers(inputs, &family);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p class=\"note\">Window family {} ({} windows{}); {} series.</p>",
        esc(&family),
        windows.len(),
        windows
            .first()
            .zip(windows.last())
            .map_or(String::new(), |(a, b)| format!(
                ", window ends {} to {}",
                iso(a.end),
                iso(b.end)
            )),
        series.len()
    );
    body.push_str(&super::thinned_note(&family, keep.len(), windows.len()));
    body.push_str(&marker_note);
    for (col, title, y_title, y_domain) in METRICS {
        let chart = LineChart {
            id: format!("quality-{}", col.replace('_', "-")),
            label: format!("{title} per window, family {family}"),
            x_title: "window end (event time, UTC)".into(),
            y_title: y_title.into(),
            y_domain,
            series: series
                .iter()
                .map(|((seg, mv), rows)| Series {
                    label: format!("{seg} · {mv}"),
                    color: seg_color[seg],
                    dashed: mv == "online",
                    data: vec![
                        ("data-segment", seg.clone()),
                        ("data-model-version", mv.clone()),
                    ],
                    points: rows
                        .iter()
                        .map(|(w, r)| point(col, title, seg, mv, w, &r.cols))
                        .collect(),
                })
                .collect(),
            markers: markers.clone(),
            marker_legend: marker_legend.clone(),
        };
        let _ = writeln!(body, "<h3>{}</h3>", esc(title));
        body.push_str(&chart.render());
        body.push('\n');
    }
    super::section("quality", "Quality over time", explain, &body)
}

/// One point of a metric's series.
fn point(col: &str, title: &str, seg: &str, mv: &str, w: &Window, cols: &load::Cols) -> Point {
    let v = f64_of(cols, col);
    let mut data = vec![
        ("data-segment", seg.to_string()),
        ("data-model-version", mv.to_string()),
        ("data-window-end", iso(w.end)),
        ("data-window-end-ms", w.end.to_string()),
        ("data-status", text(cols, "status")),
    ];
    if let Some(v) = v {
        data.push(("data-value", exact(v)));
    }
    Point {
        x: w.end as f64,
        y: v,
        data,
        title: format!(
            "{seg}, {mv}: {title} {} in window {} to {} ({}, {} labeled predictions)",
            v.map_or("–".into(), |v| fixed(v, 4)),
            iso(w.start),
            iso(w.end),
            text(cols, "status"),
            text(cols, "count")
        ),
    }
}

/// The drift markers (detections at their event time, alert windows of `family` at their end),
/// their legend entries and a note.
fn markers(inputs: &Inputs, family: &str) -> (Vec<Marker>, Vec<Entry>, String) {
    let mut out = Vec::new();
    let mut legend = Vec::new();
    let mut note = String::new();
    if let Some(d) = &inputs.drift_detections {
        let all: Vec<&load::Row> = d
            .rows
            .iter()
            .filter(|r| load::u64_of(&r.cols, "event_time").is_some())
            .collect();
        let keep = svg::thin(all.len(), super::MAX_WINDOWS);
        if keep.len() < all.len() {
            let _ = writeln!(
                note,
                "<p class=\"note\">{} of {} concept-drift detections are marked.</p>",
                keep.len(),
                all.len()
            );
        }
        for i in keep {
            let c = &all[i].cols;
            let t = load::u64_of(c, "event_time").unwrap_or(0);
            out.push(Marker {
                x: t as f64,
                class: "detection",
                color: DETECTION,
                dashed: false,
                data: vec![
                    ("data-event-time", iso(t)),
                    ("data-event-time-ms", t.to_string()),
                    ("data-detector", text(c, "detector")),
                    ("data-model-version", text(c, "model_version")),
                    ("data-position", text(c, "position")),
                ],
                title: format!(
                    "{} detected drift on {}'s errors at {} (example {}, {}): {}",
                    text(c, "detector"),
                    text(c, "model_version"),
                    iso(t),
                    text(c, "position"),
                    text(c, "event_id"),
                    text(c, "detail")
                ),
            });
        }
        legend.push(Entry {
            label: "concept-drift detection".into(),
            color: DETECTION.into(),
            swatch: Swatch::Marker { dashed: false },
        });
    }
    if inputs.drift_alerts.is_some() {
        let mut fired: BTreeMap<Window, BTreeSet<String>> = BTreeMap::new();
        for (_, c) in &inputs.drift_alerts_fired {
            if let Some((f, w)) = load::window_of(c) {
                if f == family {
                    fired.entry(w).or_default().insert(format!(
                        "{} {} {}",
                        text(c, "feature"),
                        text(c, "statistic"),
                        text(c, "severity")
                    ));
                }
            }
        }
        let ws: Vec<(&Window, &BTreeSet<String>)> = fired.iter().collect();
        for i in svg::thin(ws.len(), super::MAX_WINDOWS) {
            let (w, what) = ws[i];
            out.push(Marker {
                x: w.end as f64,
                class: "drift-alert",
                color: ALERT,
                dashed: true,
                data: vec![
                    ("data-window-end", iso(w.end)),
                    ("data-window-end-ms", w.end.to_string()),
                ],
                title: format!(
                    "drift alerts fired in window {} to {}: {}",
                    iso(w.start),
                    iso(w.end),
                    what.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        legend.push(Entry {
            label: "window with a drift alert".into(),
            color: ALERT.into(),
            swatch: Swatch::Marker { dashed: true },
        });
    }
    (out, legend, note)
}
