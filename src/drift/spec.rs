//! The `[drift]` section of a job file: reference, features, bins, detectors and alert rules.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::detectors::DetectorSpec;

/// Drift monitoring of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSpec {
    /// What the windows are compared with.
    pub reference: ReferenceSpec,
    /// Event features monitored (numeric or categorical); empty means every feature.
    #[serde(default)]
    pub features: Vec<String>,
    /// Also monitor the production prediction score, per model version.
    #[serde(default = "yes")]
    pub score: bool,
    /// Quantile bins of the reference that PSI and Jensen–Shannon are computed over.
    #[serde(default = "default_bins")]
    pub bins: u32,
    /// Finer quantile bins that open windows are counted in (a multiple of `bins`).
    #[serde(default = "default_fine_bins")]
    pub fine_bins: u32,
    /// Distinct reference values kept per feature; above it the reference is a sketch.
    #[serde(default = "default_max_values")]
    pub max_reference_values: u64,
    /// Compute drift per segment (`metrics.segments`) besides the overall slice.
    #[serde(default)]
    pub segments: bool,
    /// Concept-drift detectors over the production model's prequential error stream; unset
    /// runs ADWIN, Page–Hinkley and DDM with their usual parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<Vec<DetectorSpec>>,
    /// Alert rules over the drift statistics.
    #[serde(default)]
    pub alerts: Vec<AlertRule>,
}

fn yes() -> bool {
    true
}
fn default_bins() -> u32 {
    10
}
fn default_fine_bins() -> u32 {
    100
}
fn default_max_values() -> u64 {
    100_000
}

/// Where the reference distribution comes from: exactly one of a saved profile, reference
/// files, or an event-time range of the job's own sources.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// A profile written by `tidemark profile`, relative to the job file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<PathBuf>,
    /// Reference event files (JSON Lines or Parquet, by extension), relative to the job file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<PathBuf>,
    /// Reference prediction files, for the score's reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predictions: Vec<PathBuf>,
    /// Start of a range of the job's own sources (ISO-8601, or epoch ms as an integer or a
    /// string), inclusive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time_text"
    )]
    pub from: Option<String>,
    /// End of that range, exclusive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time_text"
    )]
    pub to: Option<String>,
}

/// A time given as a string or as integer epoch milliseconds, kept as text (parsed with the
/// job's other times).
fn time_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Ms(u64),
        Text(String),
        Other(toml::Value),
    }
    match Given::deserialize(d)? {
        Given::Ms(ms) => Ok(Some(ms.to_string())),
        Given::Text(t) => Ok(Some(t)),
        Given::Other(v) => Err(serde::de::Error::custom(format!(
            "{v} is no time: give ISO-8601 text (\"2026-01-01T00:00:00Z\") or epoch \
             milliseconds (a non-negative integer)"
        ))),
    }
}

/// A drift statistic an alert rule can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// Population stability index.
    Psi,
    /// Two-sample KS statistic.
    Ks,
    /// KS p-value.
    KsPValue,
    /// Wasserstein-1 distance.
    Wasserstein,
    /// Jensen–Shannon distance.
    JsDistance,
    /// Chi-square statistic.
    Chi2,
    /// Chi-square p-value.
    Chi2PValue,
    /// Share of values in categories the reference never saw.
    UnseenRate,
    /// Share of null values.
    NullRate,
    /// 1 when the window's values are all equal (and the reference's are not), else 0.
    Constant,
}

impl Statistic {
    /// The name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::Psi => "psi",
            Statistic::Ks => "ks",
            Statistic::KsPValue => "ks_p_value",
            Statistic::Wasserstein => "wasserstein",
            Statistic::JsDistance => "js_distance",
            Statistic::Chi2 => "chi2",
            Statistic::Chi2PValue => "chi2_p_value",
            Statistic::UnseenRate => "unseen_rate",
            Statistic::NullRate => "null_rate",
            Statistic::Constant => "constant",
        }
    }
}

/// Alert severities, P1 the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Page now.
    P1,
    /// Page in working hours.
    P2,
    /// Ticket.
    P3,
    /// Informational.
    P4,
}

/// One alert rule: a statistic crossing a threshold in a window with enough values.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The statistic watched.
    pub statistic: Statistic,
    /// Fires when the statistic is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fires when the statistic is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// The alert's severity.
    pub severity: Severity,
    /// Features the rule applies to (`score` for the prediction score); empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Values a window needs before the rule may fire.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Name in the `alerts` changelog (default `drift_<statistic>_<index>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The runbook (default `docs/runbooks/drift.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

fn default_min_count() -> u64 {
    100
}

// Written out so that rules without a name or runbook print as they did before those fields
// existed: the text is part of the job's fingerprint, and buffers of unchanged jobs must resume.
impl std::fmt::Debug for AlertRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("AlertRule");
        d.field("statistic", &self.statistic)
            .field("above", &self.above)
            .field("below", &self.below)
            .field("severity", &self.severity)
            .field("features", &self.features)
            .field("min_count", &self.min_count);
        if let Some(n) = &self.name {
            d.field("name", n);
        }
        if let Some(r) = &self.runbook {
            d.field("runbook", r);
        }
        d.finish()
    }
}

impl AlertRule {
    /// Whether `value` breaches the rule.
    pub fn breached(&self, value: f64) -> bool {
        self.above.is_some_and(|a| value > a) || self.below.is_some_and(|b| value < b)
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    #[test]
    fn rules_without_name_or_runbook_print_as_before_those_fields() {
        let r: AlertRule =
            toml::from_str("statistic = \"psi\"\nabove = 0.2\nseverity = \"P2\"").unwrap();
        assert_eq!(
            format!("{r:?}"),
            "AlertRule { statistic: Psi, above: Some(0.2), below: None, severity: P2, features: [], min_count: 100 }"
        );
    }
}
