//! Label health: label latency percentiles per window (bars) and label completeness over time
//! (lines).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::html::{esc, exact, iso};
use super::load::{self, f64_of, text, u64_of, Window};
use super::svg::{self, px, Area, Entry, LineChart, LogScale, Point, Series, Swatch};
use super::Inputs;

/// The latency columns drawn, with their legend names.
const QUANTILES: [(&str, &str); 4] = [
    ("latency_p50_ms", "p50"),
    ("latency_p95_ms", "p95"),
    ("latency_p99_ms", "p99"),
    ("latency_max_ms", "max"),
];

/// The label section.
pub(crate) fn section(inputs: &Inputs) -> String {
    let explain = "Labels (the ground truth) arrive after the predictions, so each window's \
        metrics are only as complete as its labels. The first chart is a bar chart with one \
        group of bars per window (x: the window's end) for the segment \"all\": the 50th, 95th \
        and 99th percentile and the maximum of the label latency, the time from a prediction to \
        its first label, on a logarithmic axis in seconds. The second chart shows completeness: \
        the share of each window's events that have a label (per segment), as of the window's \
        latest value (its final value once the run has finished). Both use the window family \
        with the smallest windows.";
    let Some(lh) = &inputs.label_health else {
        return super::section(
            "labels",
            "Label latency and completeness",
            explain,
            &super::missing(
                "label_health.jsonl",
                "the job wrote no label health, so label latency and completeness are unknown.",
            ),
        );
    };
    let Some((family, windows)) = load::smallest_family(&lh.rows) else {
        return super::section(
            "labels",
            "Label latency and completeness",
            explain,
            "<p class=\"missing\">label_health.jsonl holds no windowed rows yet.</p>\n",
        );
    };
    let keep = svg::thin(windows.len(), super::MAX_WINDOWS);
    let shown: Vec<Window> = keep.iter().map(|&i| windows[i]).collect();
    let shown_set: BTreeSet<Window> = shown.iter().copied().collect();
    let mut by_segment: BTreeMap<String, BTreeMap<Window, &load::Row>> = BTreeMap::new();
    for r in lh
        .latest_by(&["window", "window_start", "window_end", "segment"])
        .into_values()
    {
        if let Some((f, w)) = load::window_of(&r.cols) {
            if f == family && shown_set.contains(&w) {
                by_segment
                    .entry(text(&r.cols, "segment"))
                    .or_default()
                    .insert(w, r);
            }
        }
    }
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p class=\"note\">Window family {} ({} windows).</p>",
        esc(&family),
        windows.len()
    );
    body.push_str(&super::thinned_note(&family, shown.len(), windows.len()));
    body.push_str("<h3>Label latency per window (segment all)</h3>\n");
    let empty = BTreeMap::new();
    body.push_str(&latency(&shown, by_segment.get("all").unwrap_or(&empty)));
    body.push('\n');
    body.push_str("<h3>Label completeness per window</h3>\n");
    body.push_str(&completeness(&family, &by_segment));
    body.push('\n');
    super::section("labels", "Label latency and completeness", explain, &body)
}

/// Grouped bars of the latency percentiles per window, on a log axis.
fn latency(windows: &[Window], rows: &BTreeMap<Window, &load::Row>) -> String {
    let values: Vec<u64> = rows
        .values()
        .flat_map(|r| QUANTILES.iter().filter_map(|(c, _)| u64_of(&r.cols, c)))
        .collect();
    let min_s = values.iter().copied().min().unwrap_or(1000).max(1) as f64 / 1000.0;
    let max_s = values.iter().copied().max().unwrap_or(1000).max(1) as f64 / 1000.0;
    let entries: Vec<Entry> = QUANTILES
        .iter()
        .enumerate()
        .map(|(i, (_, name))| Entry {
            label: format!("{name} latency"),
            color: svg::color(i).into(),
            swatch: Swatch::Box,
        })
        .collect();
    let area = Area {
        left: 70.0,
        top: 12.0,
        width: svg::WIDTH - 70.0 - 250.0,
        height: 260.0,
    };
    let y = LogScale::covering(min_s, max_s, (area.bottom(), area.top));
    let yt: Vec<(f64, String)> = y
        .decades()
        .into_iter()
        .map(|v| (y.map(v), svg::tick_text(v)))
        .collect();
    let gw = area.width / windows.len().max(1) as f64;
    let bw = gw * 0.8 / QUANTILES.len() as f64;
    let xt: Vec<(f64, String)> = svg::thin(windows.len(), 5)
        .into_iter()
        .map(|i| {
            (
                area.left + gw * (i as f64 + 0.5),
                svg::time_label(windows[i].end),
            )
        })
        .collect();
    let mut out = svg::open(
        "label-latency",
        svg::WIDTH,
        area.bottom() + 48.0,
        "label latency percentiles per window",
        &svg::attrs(&[("data-windows", windows.len().to_string())]),
    );
    out.push_str(&svg::y_axis(
        &area,
        &yt,
        "label latency, seconds (log scale)",
    ));
    out.push_str(&svg::x_axis(&area, &xt, "window end (event time, UTC)"));
    for (wi, w) in windows.iter().enumerate() {
        let Some(r) = rows.get(w) else { continue };
        for (qi, (col, name)) in QUANTILES.iter().enumerate() {
            let Some(ms) = u64_of(&r.cols, col) else {
                continue;
            };
            let top = y.map(ms as f64 / 1000.0);
            let x = area.left + gw * wi as f64 + gw * 0.1 + bw * qi as f64;
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"{}><title>{}</title></rect>",
                px(x),
                px(top),
                px(bw.max(0.5)),
                px((area.bottom() - top).max(0.0)),
                svg::color(qi),
                svg::attrs(&[
                    ("data-window-end", iso(w.end)),
                    ("data-window-end-ms", w.end.to_string()),
                    ("data-quantile", (*name).to_string()),
                    ("data-ms", ms.to_string()),
                ]),
                esc(&format!(
                    "window {} to {}: {name} label latency {} ms ({} of {} events labeled)",
                    iso(w.start),
                    iso(w.end),
                    ms,
                    text(&r.cols, "labeled"),
                    text(&r.cols, "events")
                ))
            );
        }
    }
    out.push_str(&svg::legend(area.right() + 16.0, area.top, &entries));
    out.push_str("</svg>");
    out
}

/// Labeled fraction per window, one line per segment.
fn completeness(
    family: &str,
    by_segment: &BTreeMap<String, BTreeMap<Window, &load::Row>>,
) -> String {
    LineChart {
        id: "label-completeness".into(),
        label: format!("labeled fraction per window, family {family}"),
        x_title: "window end (event time, UTC)".into(),
        y_title: "labeled fraction (labeled ÷ events, 0–1)".into(),
        y_domain: Some((0.0, 1.0)),
        series: by_segment
            .iter()
            .enumerate()
            .map(|(i, (seg, rows))| Series {
                label: seg.clone(),
                color: svg::color(i),
                dashed: false,
                data: vec![("data-segment", seg.clone())],
                points: rows
                    .iter()
                    .map(|(w, r)| {
                        let v = f64_of(&r.cols, "labeled_fraction");
                        let mut data = vec![
                            ("data-segment", seg.clone()),
                            ("data-window-end", iso(w.end)),
                            ("data-window-end-ms", w.end.to_string()),
                            ("data-status", text(&r.cols, "status")),
                        ];
                        if let Some(v) = v {
                            data.push(("data-value", exact(v)));
                        }
                        Point {
                            x: w.end as f64,
                            y: v,
                            data,
                            title: format!(
                                "{seg}, window {} to {}: {} of {} events labeled ({}, {} unlabeled at the horizon)",
                                iso(w.start),
                                iso(w.end),
                                text(&r.cols, "labeled"),
                                text(&r.cols, "events"),
                                text(&r.cols, "status"),
                                load::u64_of(&r.cols, "unlabeled")
                                    .map_or("unknown".to_string(), |u| u.to_string())
                            ),
                        }
                    })
                    .collect(),
            })
            .collect(),
        markers: vec![],
        marker_legend: vec![],
    }
    .render()
}
