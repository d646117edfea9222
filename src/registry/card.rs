//! Model cards: a Markdown page about one registry version, from its version file, the
//! registry's history and (optionally) the job's output changelogs.
//!
//! Everything the card says is read or computed from those files: status and decisions from
//! `REGISTRY.json`, training range, examples, model and canary metrics from the version file,
//! and, given the output directory, quality per segment (`quality.jsonl`) and drift
//! (`drift.jsonl`, `drift_alerts.jsonl`) over the windows that overlap the training range. The
//! limitations are measured facts (weakest segments, drifted features, blocks and rollbacks,
//! held-out size), not advice. The same files give the same card.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use super::{HistoryEntry, Registry, RegistryFile, VersionFile};
use crate::error::Result;
use crate::learn::spec::Loss;
use crate::report::load::{self, f64_of, text, Current, Window};
use crate::runtime::iso_time;

/// The Markdown model card of `version` in the registry at `registry_dir`; with `outputs`, the
/// job's output directory, it adds quality per segment and drift over the training range.
pub fn card(registry_dir: &Path, version: &str, outputs: Option<&Path>) -> Result<String> {
    let reg = Registry::existing(registry_dir)?;
    let file = reg.read()?;
    let v = reg.version(version)?;
    let quality = match outputs {
        Some(dir) => load::current(dir, "quality")?,
        None => None,
    };
    let (drift, drift_alerts) = match outputs {
        Some(dir) => (
            load::current(dir, "drift")?,
            load::current(dir, "drift_alerts")?,
        ),
        None => (None, None),
    };
    let segments = quality
        .as_ref()
        .map(|q| segment_metrics(q, &v))
        .unwrap_or_default();
    let drifted = drift_alerts
        .as_ref()
        .map(|d| alerts_in_range(d, &v))
        .unwrap_or_default();

    let mut out = String::new();
    let _ = writeln!(out, "# Model card: {}\n", md(&v.version));
    let _ = writeln!(
        out,
        "Online model of job `{}`, version file `{}` (SHA-256 `{}`). Parent: {}.\n",
        md(&v.job),
        reg.version_path(&v.version).display(),
        v.checksum,
        v.parent
            .as_deref()
            .map_or("none (first version)".to_string(), md)
    );
    status(&mut out, &file, &v.version);
    training(&mut out, &v);
    model(&mut out, &v);
    hyperparameters(&mut out, &v);
    metrics(&mut out, &v, outputs, quality.is_some(), &segments);
    drift_section(
        &mut out,
        &v,
        outputs,
        drift.as_ref(),
        drift_alerts.is_some(),
        &drifted,
    );
    limitations(&mut out, &file, &v, &segments, &drifted);
    Ok(out)
}

/// Markdown text with the characters that would start markup escaped.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An epoch-ms time as ISO-8601 UTC, with milliseconds when it has any.
fn iso_ms(ms: u64) -> String {
    let s = iso_time(ms);
    if ms.is_multiple_of(1000) {
        s
    } else {
        format!("{}.{:03}Z", &s[..s.len() - 1], ms % 1000)
    }
}

/// An optional number with 4 decimals, or a dash.
fn opt4(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.4}"))
}

/// The history entries that concern `version`: those naming it, and those that replaced it
/// as champion. Each comes with the champion before it.
fn involving<'a>(
    file: &'a RegistryFile,
    version: &str,
) -> Vec<(&'a HistoryEntry, Option<&'a str>)> {
    let mut before: Option<&str> = None;
    let mut out = Vec::new();
    for h in &file.history {
        let replaced = before == Some(version) && h.champion.as_deref() != Some(version);
        if h.version.as_deref() == Some(version) || replaced {
            out.push((h, before));
        }
        before = h.champion.as_deref();
    }
    out
}

/// The status line and the history involving the version.
fn status(out: &mut String, file: &RegistryFile, version: &str) {
    let hist = involving(file, version);
    let promoted = hist
        .iter()
        .any(|(h, _)| h.action == "promote" && h.version.as_deref() == Some(version));
    let blocked = hist
        .iter()
        .any(|(h, _)| h.action == "block" && h.version.as_deref() == Some(version));
    let (status, why) = if file.champion.as_deref() == Some(version) {
        (
            "champion",
            "REGISTRY.json names it the champion: serving uses it.".to_string(),
        )
    } else if file.challenger.as_deref() == Some(version) {
        (
            "challenger",
            "REGISTRY.json names it the challenger: the latest version that did not pass the gate."
                .to_string(),
        )
    } else if promoted {
        (
            "retired",
            format!(
                "It was champion and has been replaced; the champion is now {}.",
                file.champion.as_deref().map_or("none".to_string(), md)
            ),
        )
    } else if blocked {
        (
            "retired",
            "The canary gate blocked it and a newer version has been judged since; it was never champion."
                .to_string(),
        )
    } else {
        (
            "retired",
            "It is neither champion nor challenger and no decision names it.".to_string(),
        )
    };
    let _ = writeln!(out, "## Status\n\nStatus: **{status}**. {why}");
    if file.paused {
        let _ = writeln!(
            out,
            "\nThe registry's updates are paused (after a rollback) until `tidemark models resume`."
        );
    }
    if hist.is_empty() {
        let _ = writeln!(out, "\nNo registry decision names this version.\n");
        return;
    }
    let _ = writeln!(
        out,
        "\nRegistry history involving it (oldest first):\n\n| # | time (UTC) | action | by | version | champion before | champion after | reason |\n|---|---|---|---|---|---|---|---|"
    );
    for (h, before) in hist {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            h.seq.map_or("–".into(), |s| s.to_string()),
            h.ts.map_or("–".into(), iso_time),
            md(&h.action),
            md(&h.by),
            h.version.as_deref().map_or("–".into(), md),
            before.map_or("–".into(), md),
            h.champion.as_deref().map_or("–".into(), md),
            md(&h.reason)
        );
    }
    out.push('\n');
}

/// Training range, examples and lineage.
fn training(out: &mut String, v: &VersionFile) {
    let _ = writeln!(
        out,
        "## Training\n\n\
         - Training range: {} to {} (UTC; timestamps of the first and the last example it learned, inclusive).\n\
         - Examples learned: {}.\n\
         - Lineage: `tidemark replay JOB --from {} --to {}` over the replay buffer of the job with definition fingerprint `{}` reproduces it.\n",
        iso_time(v.trained_from_ts),
        iso_time(v.trained_through_ts),
        v.examples,
        iso_ms(v.lineage.from_ts),
        iso_ms(v.lineage.to_ts),
        v.lineage.job_fingerprint
    );
}

/// The `[learn]` settings it was trained with.
fn hyperparameters(out: &mut String, v: &VersionFile) {
    let _ = writeln!(out, "## Hyperparameters\n");
    if v.hyperparameters.is_none() {
        let _ = writeln!(
            out,
            "Not recorded: the version file was written before tidemark recorded them (the job \
             fingerprint in its lineage still identifies the job definition).\n"
        );
        return;
    }
    let _ = writeln!(out, "| setting | value |\n|---|---|");
    for (k, val) in v.hyperparameter_list() {
        let _ = writeln!(out, "| `{}` | {} |", k.replace('`', "'"), md(&val));
    }
    let _ = writeln!(out);
}

/// Loss, features, weights and optimizer state.
fn model(out: &mut String, v: &VersionFile) {
    let m = &v.model;
    let loss = match m.loss {
        Loss::Log => "log (logistic regression)",
        Loss::Squared => "squared (linear regression on the 0/1 label)",
    };
    let numeric: Vec<String> = m.features.numeric.iter().map(|(n, _)| md(n)).collect();
    let categorical: Vec<String> = m.features.categorical.iter().map(|(n, _)| md(n)).collect();
    let means: Vec<String> = m
        .features
        .numeric
        .iter()
        .zip(&m.scaler.mean)
        .zip(&m.scaler.n)
        .map(|(((name, _), mean), n)| format!("{} {mean:.4} (n {n})", md(name)))
        .collect();
    let nonzero_g2 = m.g2.iter().filter(|g| **g != 0.0).count();
    let _ = writeln!(
        out,
        "## Model\n\n\
         - Loss: {loss}.\n\
         - Numeric features (standardized by running mean and standard deviation): {}.\n\
         - Their running means at publication: {}.\n\
         - Categorical features (hashed into 2^{} = {} buckets): {}.\n\
         - Parameters: {} weights and a bias; L2 norm {:.4}, bias {:.4}, {} weights non-zero.\n\
         - Optimizer state: {} minibatches since the learning-rate schedule last (re)started; \
           squared-gradient sums (AdaGrad) non-zero for {} of {} parameters.\n",
        if numeric.is_empty() {
            "none".into()
        } else {
            numeric.join(", ")
        },
        if means.is_empty() {
            "none".into()
        } else {
            means.join(", ")
        },
        m.features.hash_bits,
        1u64 << m.features.hash_bits,
        if categorical.is_empty() {
            "none".into()
        } else {
            categorical.join(", ")
        },
        m.weights.len(),
        m.norm(),
        m.bias,
        m.weights.iter().filter(|w| **w != 0.0).count(),
        m.step,
        nonzero_g2,
        m.g2.len()
    );
}

/// Quality of one (model version, segment) over the windows overlapping a training range.
#[derive(Debug, Clone, Default, PartialEq)]
struct SegmentMetrics {
    /// Windows with a row.
    windows: usize,
    /// Labeled predictions.
    count: u64,
    /// Sum of accuracy × count over windows with an accuracy.
    acc_sum: f64,
    /// Labeled predictions of windows with an accuracy.
    acc_n: u64,
    /// Sum of log-loss × count over windows with a log-loss.
    ll_sum: f64,
    /// Labeled predictions of windows with a log-loss.
    ll_n: u64,
    /// Smallest and largest AUC of a window.
    auc: Option<(f64, f64)>,
}

impl SegmentMetrics {
    /// Count-weighted accuracy.
    fn accuracy(&self) -> Option<f64> {
        (self.acc_n > 0).then(|| self.acc_sum / self.acc_n as f64)
    }

    /// Count-weighted log-loss.
    fn log_loss(&self) -> Option<f64> {
        (self.ll_n > 0).then(|| self.ll_sum / self.ll_n as f64)
    }
}

/// Per-segment metrics over the training range, and the family and windows used.
#[derive(Debug, Clone, Default)]
struct Segments {
    /// The window family.
    family: String,
    /// The windows that overlap the training range.
    windows: Vec<Window>,
    /// (model version, segment) -> metrics.
    by: BTreeMap<(String, String), SegmentMetrics>,
}

/// Whether window `w` overlaps the inclusive range of `v`'s training.
fn overlaps(w: &Window, v: &VersionFile) -> bool {
    w.start <= v.trained_through_ts && w.end > v.trained_from_ts
}

/// Quality rows of this version or of the online model, per segment, over the windows of the
/// smallest family that overlap the training range.
fn segment_metrics(q: &Current, v: &VersionFile) -> Segments {
    let Some((family, windows)) = load::smallest_family(&q.rows) else {
        return Segments::default();
    };
    let windows: Vec<Window> = windows.into_iter().filter(|w| overlaps(w, v)).collect();
    let in_range: BTreeSet<Window> = windows.iter().copied().collect();
    let mut by: BTreeMap<(String, String), SegmentMetrics> = BTreeMap::new();
    for r in q
        .latest_by(&[
            "window",
            "window_start",
            "window_end",
            "segment",
            "model_version",
        ])
        .into_values()
    {
        let c = &r.cols;
        let mv = text(c, "model_version");
        if mv != v.version && mv != "online" {
            continue;
        }
        let Some((f, w)) = load::window_of(c) else {
            continue;
        };
        if f != family || !in_range.contains(&w) {
            continue;
        }
        let n = load::u64_of(c, "count").unwrap_or(0);
        let m = by.entry((mv, text(c, "segment"))).or_default();
        m.windows += 1;
        m.count += n;
        if let Some(a) = f64_of(c, "accuracy") {
            m.acc_sum += a * n as f64;
            m.acc_n += n;
        }
        if let Some(l) = f64_of(c, "log_loss") {
            m.ll_sum += l * n as f64;
            m.ll_n += n;
        }
        if let Some(a) = f64_of(c, "auc") {
            m.auc = Some(m.auc.map_or((a, a), |(lo, hi)| (lo.min(a), hi.max(a))));
        }
    }
    Segments {
        family,
        windows,
        by,
    }
}

/// The metrics section.
fn metrics(
    out: &mut String,
    v: &VersionFile,
    outputs: Option<&Path>,
    have_quality: bool,
    segs: &Segments,
) {
    let _ = writeln!(
        out,
        "## Metrics\n\n\
         Prequential metrics at publication over its canary window (the last {} held-out \
         examples, which are never learned): log-loss {}, accuracy {}.\n",
        v.metrics.window_examples,
        opt4(v.metrics.log_loss),
        opt4(v.metrics.accuracy)
    );
    let _ = writeln!(out, "### Per segment\n");
    let Some(dir) = outputs else {
        let _ = writeln!(
            out,
            "The version file holds no per-segment metrics, and no output directory was given to read them from.\n"
        );
        return;
    };
    if !have_quality {
        let _ = writeln!(
            out,
            "The version file holds no per-segment metrics, and `{}` has no quality.jsonl.\n",
            dir.display()
        );
        return;
    }
    if segs.by.is_empty() {
        let _ = writeln!(
            out,
            "The version file holds no per-segment metrics, and quality.jsonl in `{}` has no rows of model version {} or \"online\" in windows overlapping the training range.\n",
            dir.display(),
            md(&v.version)
        );
        return;
    }
    let _ =
        writeln!(
        out,
        "From quality.jsonl in `{}`: the {} windows of family {} that overlap the training range \
         ({} to {}), each window's latest value. Rows of model version \"online\" are the online \
         model's prequential scores while it was being trained into this version; rows named {} \
         are this version serving as the production model. Accuracy and log-loss are weighted \
         by labeled predictions; AUC is the range over windows.\n",
        dir.display(),
        segs.windows.len(),
        md(&segs.family),
        segs.windows.first().map_or("–".into(), |w| iso_time(w.start)),
        segs.windows.last().map_or("–".into(), |w| iso_time(w.end)),
        md(&v.version)
    );
    let _ = writeln!(
        out,
        "| model version | segment | windows | labeled predictions | accuracy | log-loss | AUC (min–max) |\n|---|---|---|---|---|---|---|"
    );
    for ((mv, seg), m) in &segs.by {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md(mv),
            md(seg),
            m.windows,
            m.count,
            opt4(m.accuracy()),
            opt4(m.log_loss()),
            m.auc.map_or("–".into(), |(a, b)| format!("{a:.4}–{b:.4}"))
        );
    }
    out.push('\n');
}

/// A drift alert that fired in a window overlapping the training range: (feature, statistic,
/// severity) -> windows.
type Drifted = BTreeMap<(String, String, String), BTreeSet<(String, Window)>>;

/// Drift alerts holding at the end for windows that overlap the training range.
fn alerts_in_range(d: &Current, v: &VersionFile) -> Drifted {
    let mut out: Drifted = BTreeMap::new();
    for r in &d.rows {
        let c = &r.cols;
        let Some((f, w)) = load::window_of(c) else {
            continue;
        };
        if overlaps(&w, v) {
            out.entry((
                text(c, "feature"),
                text(c, "statistic"),
                text(c, "severity"),
            ))
            .or_default()
            .insert((f, w));
        }
    }
    out
}

/// The drift-at-training-time section.
fn drift_section(
    out: &mut String,
    v: &VersionFile,
    outputs: Option<&Path>,
    drift: Option<&Current>,
    have_alerts: bool,
    drifted: &Drifted,
) {
    let _ = writeln!(out, "## Drift at training time\n");
    let Some(dir) = outputs else {
        let _ = writeln!(
            out,
            "Not known: no output directory was given to read drift.jsonl from.\n"
        );
        return;
    };
    let Some(d) = drift else {
        let _ = writeln!(
            out,
            "Not measured: `{}` has no drift.jsonl (the job has no [drift] table).\n",
            dir.display()
        );
        return;
    };
    // Feature -> (largest PSI, its window), over the smallest family's overlapping windows.
    let mut worst: BTreeMap<String, (f64, Window)> = BTreeMap::new();
    let family = load::smallest_family(&d.rows).map(|(f, _)| f);
    for r in d
        .latest_by(&[
            "window",
            "window_start",
            "window_end",
            "segment",
            "feature",
            "model_version",
        ])
        .into_values()
    {
        let c = &r.cols;
        let Some((f, w)) = load::window_of(c) else {
            continue;
        };
        if Some(&f) != family.as_ref() || text(c, "segment") != "all" || !overlaps(&w, v) {
            continue;
        }
        let Some(psi) = f64_of(c, "psi") else {
            continue;
        };
        let name = match load::str_of(c, "model_version") {
            Some(mv) => format!("{} ({mv})", text(c, "feature")),
            None => text(c, "feature"),
        };
        let e = worst.entry(name).or_insert((psi, w));
        if psi > e.0 {
            *e = (psi, w);
        }
    }
    if worst.is_empty() {
        let _ = writeln!(
            out,
            "drift.jsonl has no rows (segment all) in windows overlapping the training range.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "Largest PSI against the job's reference per feature over the windows of family {} \
             overlapping the training range (segment all, each window's latest value):\n\n\
             | feature | largest PSI | in window |\n|---|---|---|",
            md(family.as_deref().unwrap_or(""))
        );
        for (feature, (psi, w)) in &worst {
            let _ = writeln!(
                out,
                "| {} | {psi:.4} | {} to {} |",
                md(feature),
                iso_time(w.start),
                iso_time(w.end)
            );
        }
        out.push('\n');
    }
    if !have_alerts {
        let _ = writeln!(out, "There is no drift_alerts.jsonl.\n");
    } else if drifted.is_empty() {
        let _ = writeln!(
            out,
            "No drift alert fires (at the end of the run) in a window overlapping the training range.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "Drift alerts firing (at the end of the run) in windows overlapping the training range:\n\n\
             | feature | statistic | severity | windows |\n|---|---|---|---|"
        );
        for ((feature, stat, sev), ws) in drifted {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                md(feature),
                md(stat),
                md(sev),
                ws.len()
            );
        }
        out.push('\n');
    }
}

/// Measured limitations.
fn limitations(
    out: &mut String,
    file: &RegistryFile,
    v: &VersionFile,
    segs: &Segments,
    drifted: &Drifted,
) {
    let _ = writeln!(out, "## Limitations (measured)\n");
    let _ = writeln!(
        out,
        "- Its canary metrics rest on {} held-out examples; it learned from {} examples.",
        v.metrics.window_examples, v.examples
    );
    for mv in segs
        .by
        .keys()
        .map(|(mv, _)| mv.clone())
        .collect::<BTreeSet<String>>()
    {
        let rows: Vec<(&String, &SegmentMetrics)> = segs
            .by
            .iter()
            .filter(|((m, _), _)| *m == mv)
            .map(|((_, s), m)| (s, m))
            .collect();
        let all = rows
            .iter()
            .find(|(s, _)| s.as_str() == "all")
            .and_then(|(_, m)| m.accuracy());
        let lowest = rows
            .iter()
            .filter(|(s, _)| s.as_str() != "all")
            .filter_map(|(s, m)| m.accuracy().map(|a| (a, *s, m.count)))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        if let Some((a, s, n)) = lowest {
            let _ = writeln!(
                out,
                "- Lowest accuracy of model version {} over the training range: segment {} with {a:.4} on {n} labeled predictions (all segments: {}).",
                md(&mv),
                md(s),
                opt4(all)
            );
        }
    }
    let features: BTreeSet<&String> = drifted.keys().map(|(f, _, _)| f).collect();
    if !features.is_empty() {
        let _ = writeln!(
            out,
            "- Features with a drift alert in windows overlapping its training range: {}.",
            features
                .iter()
                .map(|f| md(f))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (h, _) in involving(file, &v.version) {
        if h.version.as_deref() != Some(v.version.as_str()) {
            continue;
        }
        if matches!(h.action.as_str(), "block" | "rollback" | "update_failed") {
            let _ = writeln!(
                out,
                "- {} at {} ({}): {}",
                md(&h.action),
                h.ts.map_or("an operator's change".to_string(), iso_time),
                md(&h.by),
                md(&h.reason)
            );
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_bounds_keep_their_milliseconds() {
        assert_eq!(iso_ms(1_767_226_200_000), "2026-01-01T00:10:00Z");
        assert_eq!(iso_ms(1_767_226_200_001), "2026-01-01T00:10:00.001Z");
        assert_eq!(
            crate::runtime::parse_time(&iso_ms(1_767_226_200_001)),
            Ok(1_767_226_200_001)
        );
    }

    #[test]
    fn markdown_markup_in_names_is_escaped() {
        assert_eq!(md("a|b*c_d"), "a\\|b\\*c\\_d");
        assert_eq!(md("v000001"), "v000001");
    }

    #[test]
    fn history_involving_a_version_includes_its_replacement() {
        let e = |action: &str, version: Option<&str>, champion: Option<&str>| HistoryEntry {
            seq: None,
            ts: None,
            action: action.into(),
            version: version.map(String::from),
            champion: champion.map(String::from),
            reason: String::new(),
            command: None,
            by: "job".into(),
        };
        let file = RegistryFile {
            history: vec![
                e("promote", Some("v1"), Some("v1")),
                e("rate_reset", None, Some("v1")),
                e("promote", Some("v2"), Some("v2")),
                e("block", Some("v3"), Some("v2")),
            ],
            ..Default::default()
        };
        let h = involving(&file, "v1");
        assert_eq!(
            h.len(),
            2,
            "its promotion and the promotion that replaced it"
        );
        assert_eq!(h[1].0.version.as_deref(), Some("v2"));
        assert_eq!(h[1].1, Some("v1"));
        assert_eq!(involving(&file, "v3").len(), 1);
    }
}
