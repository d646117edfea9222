//! The `[[alerts]]` tables of a job file, and their validation into [`Rule`]s.

use serde::{Deserialize, Serialize};

use crate::drift::spec::{Severity, Statistic};

/// One alert rule as written in a job file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// Unique name, used in the `alerts` changelog and in metric labels.
    pub name: String,
    /// The metric watched (see [`Metric`]).
    pub metric: Metric,
    /// Fires when the metric is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fires when the metric is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Fires when the metric falls this share below its baseline (0.1: 10 % lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<f64>,
    /// Fires when the metric rises this share above its baseline (0.5: 50 % higher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<f64>,
    /// Evaluated windows before the current one that make the baseline.
    #[serde(default = "default_baseline_windows")]
    pub baseline_windows: u32,
    /// Service-level objective of a good-fraction metric (0.9: 90 % good), for burn rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<f64>,
    /// Fires when the error budget burns at least this fast in every listed window family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate: Option<f64>,
    /// Window families evaluated (default: all); a burn-rate rule needs all of them breached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// Segments evaluated (`all`, `country=US` …); empty means every segment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
    /// Which model's quality a quality rule watches.
    #[serde(default)]
    pub model: ModelRole,
    /// Examples (or events) a window needs before the rule may change state.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// The alert's severity.
    pub severity: Severity,
    /// The runbook an on-call engineer follows (default: by metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

fn default_baseline_windows() -> u32 {
    6
}

fn default_min_count() -> u64 {
    100
}

/// Metrics of final windows that rules can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Share of predictions correct at the threshold (`quality`).
    Accuracy,
    /// Mean log-loss (`quality`).
    LogLoss,
    /// Mean Brier score (`quality`).
    Brier,
    /// ROC AUC (`quality`).
    Auc,
    /// Share of events labeled within the label horizon (`label_health`).
    LabeledFraction,
    /// Median label latency in ms (`label_health`).
    LatencyP50Ms,
    /// 95th-percentile label latency in ms (`label_health`).
    LatencyP95Ms,
    /// 99th-percentile label latency in ms (`label_health`).
    LatencyP99Ms,
    /// Share of events the online model and a production model classify alike (`shadow`;
    /// evaluated when the window retires, since shadow rows have no final status).
    ShadowAgreement,
    /// Mean absolute difference of the online and a production model's scores (`shadow`).
    ShadowDivergence,
    /// A drift statistic (`drift`; from `[[drift.alerts]]`).
    #[serde(skip)]
    Drift(Statistic),
}

impl Metric {
    /// The name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::LogLoss => "log_loss",
            Metric::Brier => "brier",
            Metric::Auc => "auc",
            Metric::LabeledFraction => "labeled_fraction",
            Metric::LatencyP50Ms => "latency_p50_ms",
            Metric::LatencyP95Ms => "latency_p95_ms",
            Metric::LatencyP99Ms => "latency_p99_ms",
            Metric::ShadowAgreement => "shadow_agreement",
            Metric::ShadowDivergence => "shadow_divergence",
            Metric::Drift(s) => s.name(),
        }
    }

    /// The changelog the metric is read from.
    pub fn output(self) -> &'static str {
        match self {
            Metric::Accuracy | Metric::LogLoss | Metric::Brier | Metric::Auc => "quality",
            Metric::Drift(_) => "drift",
            Metric::ShadowAgreement | Metric::ShadowDivergence => "shadow",
            _ => "label_health",
        }
    }

    /// Whether the metric is a share of good outcomes, so that a burn rate is defined.
    pub fn is_good_fraction(self) -> bool {
        matches!(
            self,
            Metric::Accuracy | Metric::LabeledFraction | Metric::ShadowAgreement
        )
    }

    /// The runbook of rules that name none.
    pub fn default_runbook(self) -> &'static str {
        match self.output() {
            "quality" | "shadow" => "docs/runbooks/quality-degradation.md",
            "drift" => "docs/runbooks/drift.md",
            _ => "docs/runbooks/label-pipeline.md",
        }
    }
}

/// Which model a quality rule watches.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// Every production model version (from the predictions), each its own alert.
    #[default]
    Production,
    /// The online model's prequential quality (`model_version = "online"`).
    Online,
}

/// When a rule breaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// Outside fixed bounds.
    Threshold {
        /// Breached above this.
        above: Option<f64>,
        /// Breached below this.
        below: Option<f64>,
    },
    /// A relative change against the mean of the previous evaluated windows.
    Relative {
        /// Signed share: −0.1 fires at 10 % below the baseline, 0.5 at 50 % above.
        change: f64,
        /// Windows in the baseline.
        windows: u32,
    },
    /// The error budget of an objective burning at least `factor` times too fast in every
    /// family of the rule.
    Burn {
        /// The good fraction promised.
        objective: f64,
        /// The burn rate that fires.
        factor: f64,
    },
}

/// A validated alert rule, from `[[alerts]]` or `[[drift.alerts]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// The metric watched.
    pub metric: Metric,
    /// When it breaches.
    pub condition: Condition,
    /// Window family indexes evaluated (sorted).
    pub families: Vec<u16>,
    /// Segments evaluated; empty means every segment.
    pub segments: Vec<String>,
    /// Drift features evaluated (drift rules); empty means every feature.
    pub features: Vec<String>,
    /// The model a quality rule watches.
    pub model: ModelRole,
    /// Examples a window needs before the rule may change state.
    pub min_count: u64,
    /// Severity.
    pub severity: Severity,
    /// Runbook reference.
    pub runbook: String,
}

impl Rule {
    /// Whether the rule watches `segment`.
    pub fn watches_segment(&self, segment: &str) -> bool {
        self.segments.is_empty() || self.segments.iter().any(|s| s == segment)
    }

    /// Whether the rule evaluates window family `family`.
    pub fn watches_family(&self, family: u16) -> bool {
        self.families.binary_search(&family).is_ok()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Validates `[[alerts]]` and `[[drift.alerts]]` into one rule list (the `[[alerts]]` first);
/// an error is `(key, reason)`.
pub fn rules(
    alerts: &[AlertSpec],
    drift: &[crate::drift::spec::AlertRule],
    families: &[String],
) -> Result<Vec<Rule>, (String, String)> {
    let all: Vec<u16> = (0..families.len() as u16).collect();
    let mut out = Vec::new();
    for (i, a) in alerts.iter().enumerate() {
        let key = |k: &str| format!("alerts[{i}].{k}");
        let bad = |k: &str, r: &str| Err((key(k), r.to_string()));
        if !valid_name(&a.name) {
            return bad(
                "name",
                "must be non-empty ASCII letters, digits, '_' or '-'",
            );
        }
        let given = [
            a.above.is_some() || a.below.is_some(),
            a.drop.is_some() || a.rise.is_some(),
            a.objective.is_some() || a.burn_rate.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return bad(
                "metric",
                "give exactly one condition: above/below, drop/rise (with baseline_windows), or objective with burn_rate",
            );
        }
        let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
        if !(finite(a.above) && finite(a.below)) {
            return bad("above", "thresholds must be finite");
        }
        let condition = if given[0] {
            Condition::Threshold {
                above: a.above,
                below: a.below,
            }
        } else if given[1] {
            let change = match (a.drop, a.rise) {
                (Some(d), None) if d > 0.0 && d < 1.0 => -d,
                (None, Some(r)) if r > 0.0 && r.is_finite() => r,
                (Some(_), None) => return bad("drop", "must be inside (0, 1)"),
                (None, Some(_)) => return bad("rise", "must be positive"),
                _ => return bad("drop", "give drop or rise, not both"),
            };
            if a.baseline_windows == 0 {
                return bad("baseline_windows", "must be positive");
            }
            Condition::Relative {
                change,
                windows: a.baseline_windows,
            }
        } else {
            let (Some(objective), Some(factor)) = (a.objective, a.burn_rate) else {
                return bad(
                    "burn_rate",
                    "a burn-rate rule needs objective and burn_rate",
                );
            };
            if !(objective > 0.0 && objective < 1.0) {
                return bad("objective", "must be inside (0, 1)");
            }
            if !(factor > 0.0 && factor.is_finite()) {
                return bad("burn_rate", "must be positive");
            }
            if !a.metric.is_good_fraction() {
                return bad(
                    "metric",
                    "burn rates are defined for good fractions: accuracy, labeled_fraction or shadow_agreement",
                );
            }
            Condition::Burn { objective, factor }
        };
        let mut fams = Vec::new();
        for w in &a.windows {
            match families.iter().position(|f| f == w) {
                Some(p) => fams.push(p as u16),
                None => return Err((key("windows"), format!("no window family named {w:?}"))),
            }
        }
        if fams.is_empty() {
            fams = all.clone();
        }
        fams.sort_unstable();
        fams.dedup();
        if a.min_count == 0 {
            return bad("min_count", "must be at least 1");
        }
        if a.model == ModelRole::Online && a.metric.output() != "quality" {
            return bad("model", "only quality metrics have an online model");
        }
        if out.iter().any(|r: &Rule| r.name == a.name) {
            return Err((key("name"), format!("duplicate alert name {:?}", a.name)));
        }
        out.push(Rule {
            name: a.name.clone(),
            metric: a.metric,
            condition,
            families: fams,
            segments: a.segments.clone(),
            features: Vec::new(),
            model: a.model,
            min_count: a.min_count,
            severity: a.severity,
            runbook: a
                .runbook
                .clone()
                .unwrap_or_else(|| a.metric.default_runbook().to_string()),
        });
    }
    for (i, d) in drift.iter().enumerate() {
        let name = d
            .name
            .clone()
            .unwrap_or_else(|| format!("drift_{}_{i}", d.statistic.name()));
        if !valid_name(&name) {
            return Err((
                format!("drift.alerts[{i}].name"),
                "must be non-empty ASCII letters, digits, '_' or '-'".into(),
            ));
        }
        if out.iter().any(|r| r.name == name) {
            return Err((
                format!("drift.alerts[{i}].name"),
                format!("duplicate alert name {name:?}"),
            ));
        }
        let metric = Metric::Drift(d.statistic);
        out.push(Rule {
            name,
            metric,
            condition: Condition::Threshold {
                above: d.above,
                below: d.below,
            },
            families: all.clone(),
            segments: Vec::new(),
            features: d.features.clone(),
            model: ModelRole::Production,
            min_count: d.min_count,
            severity: d.severity,
            runbook: d
                .runbook
                .clone()
                .unwrap_or_else(|| metric.default_runbook().to_string()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> Result<Vec<Rule>, (String, String)> {
        let text = format!("name = \"a\"\nseverity = \"P2\"\n{extra}");
        let a: AlertSpec = toml::from_str(&text).expect("parses");
        rules(&[a], &[], &["5m".into(), "1h".into()])
    }

    #[test]
    fn exactly_one_condition() {
        assert!(spec("metric = \"accuracy\"\nbelow = 0.8").is_ok());
        let e = spec("metric = \"accuracy\"\nbelow = 0.8\ndrop = 0.1").unwrap_err();
        assert_eq!(e.0, "alerts[0].metric");
        let e = spec("metric = \"accuracy\"").unwrap_err();
        assert!(e.1.contains("exactly one"), "{e:?}");
    }

    #[test]
    fn burn_rates_need_good_fractions_and_known_windows() {
        let ok = spec(
            "metric = \"accuracy\"\nobjective = 0.9\nburn_rate = 2.0\nwindows = [\"1h\", \"5m\"]",
        )
        .unwrap();
        assert_eq!(ok[0].families, vec![0, 1]);
        let e = spec("metric = \"log_loss\"\nobjective = 0.9\nburn_rate = 2.0").unwrap_err();
        assert!(e.1.contains("good fractions"), "{e:?}");
        let e = spec("metric = \"accuracy\"\nbelow = 0.8\nwindows = [\"2h\"]").unwrap_err();
        assert_eq!(e.0, "alerts[0].windows");
    }

    #[test]
    fn relative_rules_and_runbook_defaults() {
        let r = spec("metric = \"labeled_fraction\"\ndrop = 0.2\nbaseline_windows = 3").unwrap();
        assert_eq!(
            r[0].condition,
            Condition::Relative {
                change: -0.2,
                windows: 3
            }
        );
        assert_eq!(r[0].runbook, "docs/runbooks/label-pipeline.md");
        assert!(spec("metric = \"accuracy\"\ndrop = 1.5").is_err());
        let e = spec("metric = \"labeled_fraction\"\nbelow = 0.5\nmodel = \"online\"").unwrap_err();
        assert_eq!(e.0, "alerts[0].model");
    }
}
