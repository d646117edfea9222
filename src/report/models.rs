//! The online model's published versions and the canary gate's decisions on an event-time axis.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::html::{esc, fixed, iso, opt, table};
use super::load::{f64_of, text, u64_of, Row};
use super::svg::{self, px, Area, Scale};
use super::Inputs;

/// Decision actions in the order of their lanes (others follow, sorted).
const ACTIONS: [(&str, &str); 9] = [
    ("promote", "#2e7d32"),
    ("block", "#c62828"),
    ("rollback", "#6a1b9a"),
    ("pause", "#ef6c00"),
    ("resume", "#0277bd"),
    ("update_failed", "#4e342e"),
    ("rate_boost", "#00838f"),
    ("rate_reset", "#757575"),
    ("refuse", "#9e9d24"),
];
/// Colour of version bars and marks.
const VERSION: &str = "#4e79a7";
/// Most version rows drawn; further versions share rows (`index % VERSION_ROWS`).
const VERSION_ROWS: usize = 40;

/// The models section.
pub(crate) fn section(inputs: &Inputs) -> String {
    let explain = "With online learning, the job trains its own model on the labeled events and \
        publishes a new version to the model registry every so many examples. A canary gate \
        compares each published version (the challenger) with the current champion on held-out \
        examples and promotes or blocks it; the champion is rolled back when its quality breaks \
        a threshold, and a detected drift restarts or boosts the learning rate. The timeline \
        shows, on the event-time axis: one row per version, a bar over the range of timestamps \
        of the examples it learned and a diamond when it was published; below, one lane per kind \
        of decision with a dot at the time it was made, labeled with the version concerned. \
        Hover over a mark for its numbers and reason; the tables below list them all.";
    let (versions, decisions) = (&inputs.model_versions, &inputs.model_decisions);
    if versions.is_none() && decisions.is_none() {
        return super::section(
            "models",
            "Model versions and canary decisions",
            explain,
            &super::missing(
                "model_versions.jsonl or model_decisions.jsonl",
                "the job has no [learn] table (no online model), so there are no versions or decisions to show.",
            ),
        );
    }
    let vs: Vec<&Row> = versions.iter().flat_map(|c| &c.rows).collect();
    let mut ds: Vec<&Row> = decisions.iter().flat_map(|c| &c.rows).collect();
    ds.sort_by_key(|r| (u64_of(&r.cols, "seq"), r.ts));
    let vkeep = svg::thin(vs.len(), super::MAX_WINDOWS);
    let dkeep = svg::thin(ds.len(), super::MAX_WINDOWS);
    let vs_shown: Vec<&Row> = vkeep.iter().map(|&i| vs[i]).collect();
    let ds_shown: Vec<&Row> = dkeep.iter().map(|&i| ds[i]).collect();

    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p class=\"note\">{} versions published, {} decisions.</p>",
        vs.len(),
        ds.len()
    );
    if vs_shown.len() < vs.len() || ds_shown.len() < ds.len() {
        let _ = writeln!(
            body,
            "<p class=\"note\">The timeline shows {} of the {} versions and {} of the {} decisions, evenly spread.</p>",
            vs_shown.len(),
            vs.len(),
            ds_shown.len(),
            ds.len()
        );
    }
    if vs.len() > VERSION_ROWS {
        let _ = writeln!(
            body,
            "<p class=\"note\">Versions are drawn on {VERSION_ROWS} rows: the n-th version (counting from 0) is on row n mod {VERSION_ROWS}.</p>"
        );
    }
    body.push_str(&timeline(&vs_shown, &ds_shown));
    body.push('\n');
    if versions.is_some() {
        body.push_str("<h3>Versions</h3>\n");
        let rows: Vec<Vec<String>> = vs
            .iter()
            .map(|r| {
                let c = &r.cols;
                vec![
                    text(c, "version"),
                    load_or_dash(c, "parent"),
                    iso(r.ts),
                    format!(
                        "{} to {}",
                        u64_of(c, "trained_from_ts").map_or("–".into(), iso),
                        u64_of(c, "trained_through_ts").map_or("–".into(), iso)
                    ),
                    text(c, "examples"),
                    opt(f64_of(c, "online_accuracy"), 4),
                    opt(f64_of(c, "online_log_loss"), 4),
                    opt(f64_of(c, "weight_norm"), 4),
                ]
            })
            .collect();
        body.push_str(&table(
            "model-versions-table",
            &[
                "version",
                "parent",
                "published",
                "trained on examples labeled",
                "examples",
                "accuracy (canary window)",
                "log-loss (canary window)",
                "weight norm",
            ],
            &rows,
            super::MAX_WINDOWS,
        ));
        body.push('\n');
    } else {
        body.push_str(&super::missing(
            "model_versions.jsonl",
            "no published versions are known.",
        ));
    }
    if decisions.is_some() {
        body.push_str("<h3>Decisions</h3>\n");
        let rows: Vec<Vec<String>> = ds
            .iter()
            .map(|r| {
                let c = &r.cols;
                vec![
                    text(c, "seq"),
                    iso(r.ts),
                    text(c, "action"),
                    by(c),
                    load_or_dash(c, "version"),
                    load_or_dash(c, "champion"),
                    text(c, "reason"),
                ]
            })
            .collect();
        body.push_str(&table(
            "model-decisions-table",
            &[
                "#",
                "time",
                "action",
                "by",
                "version",
                "champion after",
                "reason",
            ],
            &rows,
            super::MAX_WINDOWS,
        ));
        body.push('\n');
    } else {
        body.push_str(&super::missing(
            "model_decisions.jsonl",
            "no canary decisions are known.",
        ));
    }
    super::section(
        "models",
        "Model versions and canary decisions",
        explain,
        &body,
    )
}

/// A nullable string column, or an en dash.
fn load_or_dash(c: &super::load::Cols, k: &str) -> String {
    let t = text(c, k);
    if t.is_empty() {
        "–".into()
    } else {
        t
    }
}

/// Who made a decision: the job, or an operator's command by its number (changelogs
/// written before decisions said are the job's).
fn by(c: &super::load::Cols) -> String {
    match super::load::u64_of(c, "command") {
        Some(n) => format!("operator (command {n})"),
        None => "job".into(),
    }
}

/// The lanes of decision actions present, known ones first.
fn lanes(ds: &[&Row]) -> Vec<(String, &'static str)> {
    let present: BTreeMap<String, ()> = ds.iter().map(|r| (text(&r.cols, "action"), ())).collect();
    let mut out: Vec<(String, &'static str)> = ACTIONS
        .iter()
        .filter(|(a, _)| present.contains_key(*a))
        .map(|(a, c)| ((*a).to_string(), *c))
        .collect();
    for a in present.keys() {
        if !ACTIONS.iter().any(|(k, _)| k == a) {
            out.push((a.clone(), "#333333"));
        }
    }
    out
}

/// The timeline's `<svg>`.
fn timeline(vs: &[&Row], ds: &[&Row]) -> String {
    const VROW: f64 = 16.0;
    const DROW: f64 = 24.0;
    let lanes = lanes(ds);
    let vrows = vs.len().min(VERSION_ROWS);
    let area = Area {
        left: 110.0,
        top: 12.0,
        width: svg::WIDTH - 110.0 - 30.0,
        height: VROW * vrows as f64 + 10.0 + DROW * lanes.len() as f64,
    };
    let mut times: Vec<u64> = ds.iter().map(|r| r.ts).collect();
    for r in vs {
        times.push(r.ts);
        times.extend(u64_of(&r.cols, "trained_from_ts"));
        times.extend(u64_of(&r.cols, "trained_through_ts"));
    }
    let lo = times.iter().copied().min().unwrap_or(0);
    let hi = times.iter().copied().max().unwrap_or(1);
    let pad = ((hi - lo) / 40).max(1000);
    let (lo, hi) = (lo.saturating_sub(pad), hi + pad);
    let x = Scale::new((lo as f64, hi as f64), (area.left, area.right()));
    let xt: Vec<(f64, String)> = svg::time_ticks(lo, hi, 5)
        .into_iter()
        .map(|t| (x.map(t as f64), svg::time_label(t)))
        .collect();
    let mut out = svg::open(
        "model-timeline",
        svg::WIDTH,
        area.bottom() + 48.0,
        "model versions and decisions over event time",
        &svg::attrs(&[
            ("data-versions", vs.len().to_string()),
            ("data-decisions", ds.len().to_string()),
        ]),
    );
    out.push_str(&svg::x_axis(&area, &xt, "event time (UTC)"));
    for (i, r) in vs.iter().enumerate() {
        let c = &r.cols;
        let y = area.top + VROW * (i % VERSION_ROWS) as f64 + VROW / 2.0;
        let version = text(c, "version");
        let from = u64_of(c, "trained_from_ts");
        let through = u64_of(c, "trained_through_ts");
        let _ = write!(
            out,
            "<g class=\"mark\"{}><title>{}</title>",
            svg::attrs(&[
                ("data-kind", "version".into()),
                ("data-version", version.clone()),
                ("data-ts", iso(r.ts)),
                ("data-ts-ms", r.ts.to_string()),
                ("data-examples", text(c, "examples")),
            ]),
            esc(&format!(
                "{version} (parent {}) published at {}: learned {} examples labeled {} to {}; \
                 canary-window accuracy {}, log-loss {}",
                load_or_dash(c, "parent"),
                iso(r.ts),
                text(c, "examples"),
                from.map_or("–".into(), iso),
                through.map_or("–".into(), iso),
                opt(f64_of(c, "online_accuracy"), 4),
                opt(f64_of(c, "online_log_loss"), 4)
            ))
        );
        if let (Some(a), Some(b)) = (from, through) {
            let _ = write!(
                out,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{VERSION}\" stroke-opacity=\"0.45\" stroke-width=\"6\"/>",
                px(x.map(a as f64)),
                px(x.map(b as f64).max(x.map(a as f64) + 1.0)),
                y = px(y)
            );
        }
        let cx = x.map(r.ts as f64);
        let _ = write!(
            out,
            "<path d=\"M{} {} L{} {} L{} {} L{} {} Z\" fill=\"{VERSION}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></g>",
            px(cx),
            px(y - 5.0),
            px(cx + 5.0),
            px(y),
            px(cx),
            px(y + 5.0),
            px(cx - 5.0),
            px(y),
            px(area.left - 6.0),
            px(y + 4.0),
            esc(&version)
        );
    }
    let lane_top = area.top + VROW * vrows as f64 + 10.0;
    let lane_y: BTreeMap<&str, (f64, &str)> = lanes
        .iter()
        .enumerate()
        .map(|(i, (a, c))| (a.as_str(), (lane_top + DROW * i as f64 + DROW / 2.0, *c)))
        .collect();
    for (a, (y, _)) in &lane_y {
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            px(area.left),
            px(area.right()),
            px(area.left - 6.0),
            px(y + 4.0),
            esc(a),
            y = px(*y)
        );
    }
    for (i, r) in ds.iter().enumerate() {
        let c = &r.cols;
        let action = text(c, "action");
        let (y, color) = lane_y
            .get(action.as_str())
            .copied()
            .unwrap_or((lane_top, "#333333"));
        let cx = x.map(r.ts as f64);
        let version = text(c, "version");
        let mut tip = format!(
            "#{} {action} by {} {} at {}: champion after it {}. {}",
            text(c, "seq"),
            by(c),
            if version.is_empty() { "–" } else { &version },
            iso(r.ts),
            load_or_dash(c, "champion"),
            text(c, "reason")
        );
        if let Some(p) = f64_of(c, "score_psi") {
            let _ = write!(tip, " (score PSI {})", fixed(p, 4));
        }
        let _ = write!(
            out,
            "<g class=\"mark\"{}><title>{}</title><circle cx=\"{}\" cy=\"{}\" r=\"4.5\" fill=\"{color}\"/>",
            svg::attrs(&[
                ("data-kind", "decision".into()),
                ("data-seq", text(c, "seq")),
                ("data-action", action.clone()),
                ("data-version", version.clone()),
                ("data-champion", text(c, "champion")),
                ("data-ts", iso(r.ts)),
                ("data-ts-ms", r.ts.to_string()),
            ]),
            esc(&tip),
            px(cx),
            px(y)
        );
        if !version.is_empty() {
            // Labels alternate above and below the lane so neighbours overlap less.
            let ty = if i % 2 == 0 { y - 7.0 } else { y + 14.0 };
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"9\">{}</text>",
                px(cx),
                px(ty),
                esc(&version)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}
