//! The drift heatmap: features × windows, each cell coloured by its population stability index.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::html::{esc, exact, fixed, iso};
use super::load::{self, f64_of, text, Window};
use super::svg::{self, px, Area, Entry, Swatch};
use super::Inputs;

/// PSI colour stops (value, red, green, blue): white, pale yellow at 0.1, orange at 0.25,
/// dark red from 0.5.
const STOPS: [(f64, f64, f64, f64); 4] = [
    (0.0, 255.0, 255.0, 255.0),
    (0.1, 255.0, 237.0, 160.0),
    (0.25, 253.0, 141.0, 60.0),
    (0.5, 189.0, 0.0, 38.0),
];
/// Colour of a cell without a PSI.
const NO_VALUE: &str = "#d9d9d9";

/// The colour of a PSI value (clamped to the stops).
pub(crate) fn psi_color(psi: f64) -> String {
    let v = psi.clamp(0.0, STOPS[STOPS.len() - 1].0);
    let i = STOPS
        .iter()
        .rposition(|s| s.0 <= v)
        .unwrap_or(0)
        .min(STOPS.len() - 2);
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let t = ((v - a.0) / (b.0 - a.0)).clamp(0.0, 1.0);
    let mix = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.1, b.1),
        mix(a.2, b.2),
        mix(a.3, b.3)
    )
}

/// The drift section.
pub(crate) fn section(inputs: &Inputs) -> String {
    let explain = "The heatmap shows how far each monitored feature's distribution in each \
        event-time window is from the job's reference distribution, measured by the population \
        stability index (PSI, over the reference's quantile bins or categories; 0 means the same \
        distribution). A common reading: below 0.1 little change, 0.1 to 0.25 a moderate shift, \
        above 0.25 a large one. Rows are features (score is the production model's score, per \
        model version), columns are the windows of the family with the smallest windows, in \
        time order; each cell holds the window's latest value (its final value once the run has \
        finished) and its tooltip gives the exact PSI. Grey cells have no PSI (no values in the \
        window).";
    let Some(d) = &inputs.drift else {
        return super::section(
            "drift",
            "Feature drift",
            explain,
            &super::missing(
                "drift.jsonl",
                "the job has no [drift] table, so no feature drift was measured.",
            ),
        );
    };
    let Some((family, windows)) = load::smallest_family(&d.rows) else {
        return super::section(
            "drift",
            "Feature drift",
            explain,
            "<p class=\"missing\">drift.jsonl holds no windowed rows yet.</p>\n",
        );
    };
    let latest = d.latest_by(&[
        "window",
        "window_start",
        "window_end",
        "segment",
        "feature",
        "model_version",
    ]);
    let segments: BTreeSet<String> = latest.values().map(|r| text(&r.cols, "segment")).collect();
    let segment = if segments.contains("all") {
        "all".to_string()
    } else {
        segments.iter().next().cloned().unwrap_or_default()
    };
    let keep = svg::thin(windows.len(), super::MAX_WINDOWS);
    let cols: Vec<Window> = keep.iter().map(|&i| windows[i]).collect();
    let col_of: BTreeMap<Window, usize> = cols.iter().enumerate().map(|(i, w)| (*w, i)).collect();
    // Feature label -> column -> row.
    let mut cells: BTreeMap<String, BTreeMap<usize, &load::Row>> = BTreeMap::new();
    for r in latest.values() {
        let Some((f, w)) = load::window_of(&r.cols) else {
            continue;
        };
        if f != family || text(&r.cols, "segment") != segment {
            continue;
        }
        let feature = match load::str_of(&r.cols, "model_version") {
            Some(mv) => format!("{} ({mv})", text(&r.cols, "feature")),
            None => text(&r.cols, "feature"),
        };
        let row = cells.entry(feature).or_default();
        if let Some(&c) = col_of.get(&w) {
            row.insert(c, r);
        }
    }

    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p class=\"note\">Window family {}, segment {}: {} features × {} windows.</p>",
        esc(&family),
        esc(&segment),
        cells.len(),
        cols.len()
    );
    if segments.len() > 1 {
        let _ = writeln!(
            body,
            "<p class=\"note\">drift.jsonl also has the segments {}; only segment {} is shown.</p>",
            esc(&segments
                .iter()
                .filter(|s| **s != segment)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")),
            esc(&segment)
        );
    }
    body.push_str(&super::thinned_note(&family, cols.len(), windows.len()));
    body.push_str(&heatmap(&family, &cols, &cells));
    body.push('\n');
    super::section("drift", "Feature drift", explain, &body)
}

/// The heatmap's `<svg>`.
fn heatmap(
    family: &str,
    cols: &[Window],
    cells: &BTreeMap<String, BTreeMap<usize, &load::Row>>,
) -> String {
    const ROW_H: f64 = 22.0;
    let legend_entries = legend_entries();
    let area = Area {
        left: 170.0,
        top: 12.0,
        width: svg::WIDTH - 170.0 - 150.0,
        height: ROW_H * cells.len().max(1) as f64,
    };
    let height =
        (area.bottom() + 48.0).max(area.top + svg::legend_height(legend_entries.len()) + 20.0);
    let cw = area.width / cols.len().max(1) as f64;
    let mut out = svg::open(
        "drift-heatmap",
        svg::WIDTH,
        height,
        &format!("PSI per feature and window, family {family}"),
        &svg::attrs(&[
            ("data-features", cells.len().to_string()),
            ("data-windows", cols.len().to_string()),
        ]),
    );
    let ticks: Vec<(f64, String)> = svg::thin(cols.len(), 5)
        .into_iter()
        .map(|i| {
            (
                area.left + cw * (i as f64 + 0.5),
                svg::time_label(cols[i].end),
            )
        })
        .collect();
    out.push_str(&svg::x_axis(&area, &ticks, "window end (event time, UTC)"));
    for (ri, (feature, row)) in cells.iter().enumerate() {
        let y = area.top + ROW_H * ri as f64;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            px(area.left - 6.0),
            px(y + ROW_H / 2.0 + 4.0),
            esc(feature)
        );
        for (ci, w) in cols.iter().enumerate() {
            let r = row.get(&ci);
            let psi = r.and_then(|r| f64_of(&r.cols, "psi"));
            let status = r.map(|r| text(&r.cols, "status")).unwrap_or_default();
            let title = match psi {
                Some(p) => format!(
                    "{feature}, window {} to {} ({status}): PSI {} (exact {})",
                    iso(w.start),
                    iso(w.end),
                    fixed(p, 4),
                    exact(p)
                ),
                None => format!(
                    "{feature}, window {} to {}: no PSI{}",
                    iso(w.start),
                    iso(w.end),
                    if r.is_some() {
                        " (no values)"
                    } else {
                        " (no row)"
                    }
                ),
            };
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#bbb\" stroke-width=\"0.5\"{}><title>{}</title></rect>",
                px(area.left + cw * ci as f64),
                px(y),
                px(cw),
                px(ROW_H),
                psi.map_or_else(|| NO_VALUE.to_string(), psi_color),
                svg::attrs(&[
                    ("data-feature", feature.clone()),
                    ("data-window-end", iso(w.end)),
                    ("data-window-end-ms", w.end.to_string()),
                    ("data-psi", psi.map(exact).unwrap_or_default()),
                    ("data-status", status),
                ]),
                esc(&title)
            );
        }
    }
    let _ = write!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">PSI (colour)</text>",
        px(area.right() + 70.0),
        px(area.top + 2.0)
    );
    out.push_str(&svg::legend(
        area.right() + 16.0,
        area.top + 6.0,
        &legend_entries,
    ));
    out.push_str("</svg>");
    out
}

/// The colour legend: boxes at round PSI values.
fn legend_entries() -> Vec<Entry> {
    let mut v: Vec<Entry> = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4]
        .iter()
        .map(|p| Entry {
            label: format!("PSI {}", fixed(*p, 2)),
            color: psi_color(*p),
            swatch: Swatch::Box,
        })
        .collect();
    v.push(Entry {
        label: "PSI ≥ 0.50".into(),
        color: psi_color(0.5),
        swatch: Swatch::Box,
    });
    v.push(Entry {
        label: "no value".into(),
        color: NO_VALUE.into(),
        swatch: Swatch::Box,
    });
    v
}

#[cfg(test)]
mod tests {
    use super::psi_color;

    #[test]
    fn the_colour_scale_is_monotone_and_clamped() {
        assert_eq!(psi_color(0.0), "#ffffff");
        assert_eq!(psi_color(0.1), "#ffeda0");
        assert_eq!(psi_color(0.25), "#fd8d3c");
        assert_eq!(psi_color(0.5), "#bd0026");
        assert_eq!(psi_color(7.0), "#bd0026");
        assert_eq!(psi_color(-1.0), "#ffffff");
        let greens: Vec<u8> = (0..=50)
            .map(|i| u8::from_str_radix(&psi_color(i as f64 / 100.0)[3..5], 16).unwrap())
            .collect();
        assert!(greens.windows(2).all(|w| w[0] >= w[1]), "{greens:?}");
    }
}
