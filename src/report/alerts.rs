//! The alerts tables: alert rules (`alerts.jsonl`) and drift alerts (`drift_alerts.jsonl`).
//!
//! `alerts.jsonl` records state changes: a `firing` row when an alert starts firing and a
//! `resolved` row when it stops, each naming the window evaluated. An alert is one rule on one
//! series (window family, segment, model version or feature, metric); a firing row and the next
//! resolved row of the same alert make one episode, and an episode without a resolved row is
//! still firing at the end. Rows are taken in file order, less any a later line retracts. Columns
//! this report does not know are named in a note; missing ones show as a dash, and the optional
//! ones (baseline, burn rate, model version, feature) get a column only when some row has them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::html::{esc, iso, num, table};
use super::load::{f64_of, str_of, text, u64_of, window_of, Cols};
use super::Inputs;

/// The columns that identify one alert of `alerts.jsonl` (a rule on a series).
const ALERT_KEY: [&str; 6] = [
    "rule",
    "metric",
    "window",
    "segment",
    "model_version",
    "feature",
];
/// The columns of `alerts.jsonl` this report knows.
const KNOWN: [&str; 18] = [
    "rule",
    "severity",
    "state",
    "runbook",
    "metric",
    "window",
    "window_start",
    "window_end",
    "segment",
    "model_version",
    "feature",
    "value",
    "threshold",
    "baseline",
    "burn_rate",
    "count",
    "message",
    "diff",
];

/// One episode of an alert: from a firing row to the next resolved row, if any.
#[derive(Debug, Clone)]
struct Episode {
    /// The alert's identity.
    key: Vec<String>,
    /// `ts` of the firing row.
    fired_ts: u64,
    /// The firing row.
    fired: Cols,
    /// The resolved row and its `ts`.
    resolved: Option<(u64, Cols)>,
}

/// Whether a row says its alert is firing (rows without a state count as firing).
fn is_firing(c: &Cols) -> bool {
    str_of(c, "state").is_none_or(|s| s == "firing")
}

/// Every episode of `alerts.jsonl`, in the order they started.
fn episodes(inputs: &Inputs) -> Vec<Episode> {
    // Rows that hold (not retracted), by canonical text, with their multiplicity.
    let mut budget: BTreeMap<String, i64> = BTreeMap::new();
    for (_, diff, c) in &inputs.alerts_lines {
        *budget
            .entry(serde_json::to_string(c).unwrap_or_default())
            .or_default() += diff;
    }
    let mut out: Vec<Episode> = Vec::new();
    let mut open: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for (ts, diff, c) in &inputs.alerts_lines {
        if *diff <= 0 {
            continue;
        }
        let left = budget
            .entry(serde_json::to_string(c).unwrap_or_default())
            .or_default();
        if *left <= 0 {
            continue;
        }
        *left -= 1;
        let key: Vec<String> = ALERT_KEY.iter().map(|k| text(c, k)).collect();
        if is_firing(c) {
            if !open.contains_key(&key) {
                open.insert(key.clone(), out.len());
                out.push(Episode {
                    key,
                    fired_ts: *ts,
                    fired: c.clone(),
                    resolved: None,
                });
            }
        } else if let Some(i) = open.remove(&key) {
            out[i].resolved = Some((*ts, c.clone()));
        }
    }
    out
}

/// Alerts fired, for the summary.
pub(crate) fn fired_summary(inputs: &Inputs) -> String {
    let mut parts = Vec::new();
    if inputs.alerts.is_some() {
        let all = episodes(inputs);
        let firing = all.iter().filter(|e| e.resolved.is_none()).count();
        parts.push(format!(
            "{} alerts fired ({firing} still firing at the end) in alerts.jsonl",
            all.len()
        ));
    } else {
        parts.push("no alerts.jsonl".to_string());
    }
    if let Some(d) = &inputs.drift_alerts {
        let ever: BTreeSet<Vec<String>> = inputs
            .drift_alerts_fired
            .iter()
            .map(|(_, c)| drift_key(c))
            .collect();
        parts.push(format!(
            "{} drift alerts (window, segment, feature and rule) firing at the end, {} fired at some point",
            d.rows.len(),
            ever.len()
        ));
    } else {
        parts.push("no drift_alerts.jsonl".to_string());
    }
    parts.join("; ")
}

/// The columns that identify a drift alert: window, segment, feature, model version and rule.
const DRIFT_KEY: [&str; 10] = [
    "window",
    "window_start",
    "window_end",
    "segment",
    "feature",
    "model_version",
    "statistic",
    "direction",
    "threshold",
    "severity",
];

/// The identity of a drift alert.
fn drift_key(c: &Cols) -> Vec<String> {
    DRIFT_KEY.iter().map(|k| text(c, k)).collect()
}

/// The alerts section.
pub(crate) fn section(inputs: &Inputs) -> String {
    let explain = "Alerts are rules over the outputs that fire when a monitored number crosses \
        a threshold in a final window. The first table lists every time an alert rule fired \
        (alerts.jsonl): its severity (P1 most urgent to P4), whether it was still firing when \
        the outputs end or had resolved, the window that fired it and the one that resolved \
        it, and the numbers compared. The second table summarizes the drift alerts \
        (drift_alerts.jsonl), one line per window family, segment, feature and rule: in how \
        many windows the rule fires at the end of the run, over which window ends, and the most \
        extreme value.";
    let mut body = String::new();
    body.push_str("<h3>Alert rules</h3>\n");
    if inputs.alerts.is_none() {
        body.push_str(&super::missing(
            "alerts.jsonl",
            "the job wrote no alert-rule changelog (no alert rules, or outputs written before alert rules existed).",
        ));
    } else {
        body.push_str(&rules_table(inputs));
    }
    body.push_str("<h3>Drift alerts</h3>\n");
    if inputs.drift_alerts.is_none() {
        body.push_str(&super::missing(
            "drift_alerts.jsonl",
            "the job has no [drift] table, so no drift alert rules ran.",
        ));
    } else {
        body.push_str(&drift_table(inputs));
    }
    super::section("alerts", "Alerts", explain, &body)
}

/// Severity order: P1 first, unknown last.
fn severity_rank(s: &str) -> (u8, String) {
    match s {
        "P1" => (1, String::new()),
        "P2" => (2, String::new()),
        "P3" => (3, String::new()),
        "P4" => (4, String::new()),
        other => (9, other.to_string()),
    }
}

/// A column as text, or an en dash.
fn or_dash(c: &Cols, k: &str) -> String {
    let t = text(c, k);
    if t.is_empty() {
        "–".into()
    } else {
        t
    }
}

/// A window as family and range, or the family alone.
fn window_text(c: &Cols) -> String {
    match window_of(c) {
        Some((f, w)) => format!("{f} ending {}", iso(w.end)),
        None => or_dash(c, "window"),
    }
}

/// The table of `alerts.jsonl`.
fn rules_table(inputs: &Inputs) -> String {
    let all = episodes(inputs);
    let mut out = String::new();
    if all.is_empty() {
        out.push_str("<p class=\"missing\">alerts.jsonl holds no firing: no alert fired.</p>\n");
        return out;
    }
    let unknown: BTreeSet<&String> = inputs
        .alerts_lines
        .iter()
        .flat_map(|(_, _, c)| c.keys())
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .collect();
    let has = |k: &str| {
        inputs
            .alerts_lines
            .iter()
            .any(|(_, _, c)| c.get(k).is_some_and(|v| !v.is_null()))
    };
    let optional: Vec<&str> = ["model_version", "feature", "baseline", "burn_rate"]
        .into_iter()
        .filter(|k| has(k))
        .collect();
    let mut order: Vec<(bool, (u8, String), u64, &Vec<String>, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                e.resolved.is_some(),
                severity_rank(&text(&e.fired, "severity")),
                e.fired_ts,
                &e.key,
                i,
            )
        })
        .collect();
    order.sort();
    let mut header = vec![
        "severity",
        "rule",
        "state at end",
        "fired (window)",
        "resolved (window)",
        "metric",
        "segment",
    ];
    for k in &optional {
        header.push(match *k {
            "model_version" => "model version",
            "burn_rate" => "burn rate",
            other => other,
        });
    }
    header.extend(["value", "threshold", "count", "runbook"]);
    let cells: Vec<Vec<String>> = order
        .iter()
        .map(|o| {
            let e = &all[o.4];
            let c = &e.fired;
            let mut row = vec![
                or_dash(c, "severity"),
                or_dash(c, "rule"),
                if e.resolved.is_some() {
                    "resolved"
                } else {
                    "firing"
                }
                .to_string(),
                window_text(c),
                e.resolved
                    .as_ref()
                    .map_or_else(|| "still firing".to_string(), |(_, r)| window_text(r)),
                or_dash(c, "metric"),
                or_dash(c, "segment"),
            ];
            for k in &optional {
                row.push(match *k {
                    "baseline" | "burn_rate" => f64_of(c, k).map_or("–".into(), num),
                    other => or_dash(c, other),
                });
            }
            row.extend([
                f64_of(c, "value").map_or("–".into(), num),
                f64_of(c, "threshold").map_or("–".into(), num),
                u64_of(c, "count").map_or("–".into(), |n| n.to_string()),
                or_dash(c, "runbook"),
            ]);
            row
        })
        .collect();
    let firing = all.iter().filter(|e| e.resolved.is_none()).count();
    let _ = writeln!(
        out,
        "<p class=\"note\">{} alerts fired, {firing} still firing at the end. Firing alerts come \
         first, then by severity and time; value, threshold and count are those of the window \
         that fired it.</p>",
        all.len()
    );
    out.push_str(&table("alerts-table", &header, &cells, super::MAX_WINDOWS));
    out.push('\n');
    if !unknown.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">alerts.jsonl also has the columns {}, not shown.</p>",
            esc(&unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
    out
}

/// The summary table of `drift_alerts.jsonl`.
fn drift_table(inputs: &Inputs) -> String {
    let Some(d) = &inputs.drift_alerts else {
        return String::new();
    };
    /// Windows, first and last window end, most extreme value.
    type Agg = (usize, u64, u64, Option<f64>);
    let mut groups: BTreeMap<((u8, String), String, String, String, String, String), Agg> =
        BTreeMap::new();
    for r in d.latest_by(&DRIFT_KEY).into_values() {
        let c = &r.cols;
        let feature = match str_of(c, "model_version") {
            Some(mv) => format!("{} ({mv})", text(c, "feature")),
            None => text(c, "feature"),
        };
        let rule = format!(
            "{} {} {}",
            text(c, "statistic"),
            text(c, "direction"),
            f64_of(c, "threshold").map_or("–".into(), |t| format!("{t}"))
        );
        let end = u64_of(c, "window_end").unwrap_or(0);
        let value = f64_of(c, "value");
        let below = str_of(c, "direction") == Some("below");
        let g = groups
            .entry((
                severity_rank(&text(c, "severity")),
                text(c, "severity"),
                text(c, "window"),
                text(c, "segment"),
                feature,
                rule,
            ))
            .or_insert((0, end, end, value));
        g.0 += 1;
        g.1 = g.1.min(end);
        g.2 = g.2.max(end);
        g.3 = match (g.3, value) {
            (Some(a), Some(b)) => Some(if below { a.min(b) } else { a.max(b) }),
            (a, b) => a.or(b),
        };
    }
    if groups.is_empty() {
        return "<p class=\"missing\">No drift alert is firing at the end of the run.</p>\n".into();
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|((_, sev, fam, seg, feat, rule), (n, first, last, v))| {
            vec![
                sev.clone(),
                fam.clone(),
                seg.clone(),
                feat.clone(),
                rule.clone(),
                n.to_string(),
                iso(*first),
                iso(*last),
                v.map_or("–".into(), num),
            ]
        })
        .collect();
    let mut out = table(
        "drift-alerts-table",
        &[
            "severity",
            "window family",
            "segment",
            "feature",
            "rule",
            "windows firing",
            "first window end",
            "last window end",
            "most extreme value",
        ],
        &rows,
        super::MAX_WINDOWS,
    );
    out.push('\n');
    out
}
