//! The shadow comparison: the online model against each production model on the same events,
//! per window (agreement at the threshold, mean absolute score difference).

use std::collections::BTreeSet;
use std::fmt::Write;

use super::html::{esc, exact, fixed, iso};
use super::load::{self, f64_of, text, Row, Window};
use super::svg::{self, LineChart, Point, Series};
use super::Inputs;

/// The charts: column, title, y axis title, fixed y domain.
const CHARTS: [(&str, &str, &str, Option<(f64, f64)>); 2] = [
    (
        "agreement",
        "Agreement",
        "share of events both models classify alike (0–1)",
        Some((0.0, 1.0)),
    ),
    (
        "mean_abs_score_diff",
        "Score divergence",
        "mean |online score − production score|",
        None,
    ),
];

/// The shadow section.
pub(crate) fn section(inputs: &Inputs) -> String {
    let explain = "With online learning, every event is also scored by the online model (before \
        it learns from it) and compared with the production model's score of the same event. \
        Agreement is the share of events both classify alike at the job's threshold; divergence \
        is the mean absolute difference of the two scores. A fall in agreement means one of the \
        two models changed: the online model adapting to a drift the production model does not \
        follow, or a poisoned update. One line per segment and production model version, for \
        the window family with the smallest windows, each window's last value.";
    if !inputs.shadow_present {
        return super::section(
            "shadow",
            "Shadow comparison",
            explain,
            &super::missing(
                "shadow.jsonl",
                "the job has no [learn] table (no online model), so there is nothing to compare.",
            ),
        );
    }
    let rows: Vec<Row> = inputs
        .shadow_last
        .iter()
        .map(|(ts, cols)| Row {
            ts: *ts,
            cols: cols.clone(),
        })
        .collect();
    let Some((family, windows)) = load::smallest_family(&rows) else {
        return super::section(
            "shadow",
            "Shadow comparison",
            explain,
            "<p class=\"missing\">shadow.jsonl holds no windowed rows yet.</p>\n",
        );
    };
    let keep = svg::thin(windows.len(), super::MAX_WINDOWS);
    let shown: BTreeSet<Window> = keep.iter().map(|&i| windows[i]).collect();
    let series = load::by_segment_and_model(&rows, &family, &shown);
    let seg_color = load::segment_colors(&series);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p class=\"note\">Window family {} ({} windows); {} series.</p>",
        esc(&family),
        windows.len(),
        series.len()
    );
    body.push_str(&super::thinned_note(&family, keep.len(), windows.len()));
    for (col, title, y_title, y_domain) in CHARTS {
        let chart = LineChart {
            id: format!("shadow-{}", col.replace('_', "-")),
            label: format!("{title} per window, family {family}"),
            x_title: "window end (event time, UTC)".into(),
            y_title: y_title.into(),
            y_domain,
            series: series
                .iter()
                .map(|((seg, mv), rows)| Series {
                    label: format!("{seg} · online vs {mv}"),
                    color: seg_color[seg],
                    dashed: false,
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
            markers: Vec::new(),
            marker_legend: Vec::new(),
        };
        let _ = writeln!(body, "<h3>{}</h3>", esc(title));
        body.push_str(&chart.render());
        body.push('\n');
    }
    super::section("shadow", "Shadow comparison", explain, &body)
}

fn point(col: &str, title: &str, seg: &str, mv: &str, w: &Window, cols: &load::Cols) -> Point {
    let v = f64_of(cols, col);
    let mut data = vec![
        ("data-segment", seg.to_string()),
        ("data-model-version", mv.to_string()),
        ("data-window-end", iso(w.end)),
        ("data-window-end-ms", w.end.to_string()),
    ];
    if let Some(v) = v {
        data.push(("data-value", exact(v)));
    }
    Point {
        x: w.end as f64,
        y: v,
        data,
        title: format!(
            "{seg}, online vs {mv}: {title} {} in window {} to {} ({} events scored by both)",
            v.map_or("–".into(), |v| fixed(v, 4)),
            iso(w.start),
            iso(w.end),
            text(cols, "count")
        ),
    }
}
