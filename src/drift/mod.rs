//! Drift: reference profiles, two-sample statistics, concept-drift detectors and their
//! configuration. The dataflow side is `dataflow::drift`.

pub mod detectors;
pub mod kolmogorov;
pub mod profile;
pub mod reference;
pub mod spec;
pub mod stats;

use std::sync::Arc;

use profile::Profile;
use spec::DriftSpec;

/// What one monitored feature is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// A numeric event feature, by position in the schema's numeric features.
    Numeric(usize),
    /// A categorical event feature, by position in the schema's categorical features.
    Categorical(usize),
    /// The production prediction score.
    Score,
}

/// A monitored feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// Its name (`score` for the prediction score).
    pub name: String,
    /// Its kind.
    pub kind: FeatureKind,
}

/// A job's drift monitoring, resolved: the features and the reference profile.
#[derive(Debug, Clone)]
pub struct Drift {
    /// The `[drift]` section as written.
    pub spec: DriftSpec,
    /// The monitored features, in output order (events schema order, then the score).
    pub features: Vec<Feature>,
    /// The reference.
    pub profile: Arc<Profile>,
    /// The concept-drift detectors in effect: the job's, or ADWIN, Page–Hinkley and DDM.
    pub detectors: Vec<detectors::DetectorSpec>,
}

/// The name the prediction score is monitored under.
pub const SCORE: &str = "score";

/// Checks `spec` against `job` and loads or builds its reference.
pub fn resolve(job: &crate::config::Job, spec: &DriftSpec) -> crate::error::Result<Drift> {
    use crate::error::Error;
    use crate::schema::Stream;
    let err = |key: &str, reason: String| Error::config(&job.file, key, reason);
    if !(2..=1000).contains(&spec.bins) {
        return Err(err("drift.bins", "must be in 2..=1000".into()));
    }
    if spec.fine_bins < spec.bins
        || spec.fine_bins > 100_000
        || !spec.fine_bins.is_multiple_of(spec.bins)
    {
        return Err(err(
            "drift.fine_bins",
            format!(
                "must be a multiple of drift.bins ({}) up to 100000",
                spec.bins
            ),
        ));
    }
    if spec.max_reference_values == 0 {
        return Err(err("drift.max_reference_values", "must be positive".into()));
    }
    let ev = job.schema(Stream::Events);
    let mut features = Vec::new();
    let wanted: Vec<&String> = if spec.features.is_empty() {
        ev.numeric.iter().chain(&ev.categorical).collect()
    } else {
        spec.features.iter().collect()
    };
    for name in wanted {
        let kind = if let Some(i) = ev.numeric.iter().position(|n| n == name) {
            FeatureKind::Numeric(i)
        } else if let Some(i) = ev.categorical.iter().position(|n| n == name) {
            FeatureKind::Categorical(i)
        } else {
            return Err(err(
                "drift.features",
                format!(
                    "{name:?} is not a numeric or categorical field of schema {}",
                    ev.id
                ),
            ));
        };
        features.push((name.clone(), kind));
    }
    // Output order is schema order, whatever order the job lists them in.
    features.sort_by_key(|(_, k)| match k {
        FeatureKind::Numeric(i) => (0, *i),
        FeatureKind::Categorical(i) => (1, *i),
        FeatureKind::Score => (2, 0),
    });
    features.dedup();
    let mut features: Vec<Feature> = features
        .into_iter()
        .map(|(name, kind)| Feature { name, kind })
        .collect();
    if spec.score {
        features.push(Feature {
            name: SCORE.into(),
            kind: FeatureKind::Score,
        });
    }
    for (i, d) in spec.detectors.iter().flatten().enumerate() {
        d.check()
            .map_err(|r| err(&format!("drift.detectors[{i}]"), r))?;
    }
    for (i, a) in spec.alerts.iter().enumerate() {
        let key = format!("drift.alerts[{i}]");
        if a.above.is_some() == a.below.is_some() {
            return Err(err(&key, "give exactly one of above or below".into()));
        }
        if a.above.is_some_and(|x| !x.is_finite()) || a.below.is_some_and(|x| !x.is_finite()) {
            return Err(err(&key, "thresholds must be finite".into()));
        }
        for f in &a.features {
            let Some(feature) = features.iter().find(|x| &x.name == f) else {
                return Err(err(
                    &format!("{key}.features"),
                    format!("{f:?} is not a monitored feature"),
                ));
            };
            if !applies(a.statistic, feature.kind) {
                return Err(err(
                    &format!("{key}.features"),
                    format!(
                        "{} does not apply to {f:?} ({})",
                        a.statistic.name(),
                        if matches!(feature.kind, FeatureKind::Categorical(_)) {
                            "categorical"
                        } else {
                            "numeric"
                        }
                    ),
                ));
            }
        }
        if a.features.is_empty() && !features.iter().any(|f| applies(a.statistic, f.kind)) {
            return Err(err(
                &key,
                format!(
                    "{} applies to none of the monitored features",
                    a.statistic.name()
                ),
            ));
        }
    }
    if features.len() > u16::MAX as usize || spec.alerts.len() > u16::MAX as usize {
        return Err(err("drift", "too many features or alert rules".into()));
    }
    let profile = reference::resolve(job, spec)?;
    let source = profile.source.clone();
    for f in &features {
        // A feature the reference never saw a value of has nothing to compare with.
        let present = match f.kind {
            FeatureKind::Numeric(_) => profile.numeric.get(&f.name).is_some_and(|r| r.n > 0),
            FeatureKind::Categorical(_) => {
                profile.categorical.get(&f.name).is_some_and(|r| r.n > 0)
            }
            FeatureKind::Score => profile.score.as_ref().is_some_and(|r| r.n > 0),
        };
        if !present {
            return Err(err(
                "drift.reference",
                format!(
                    "the reference ({source}) has no values of {:?}{}",
                    f.name,
                    if f.kind == FeatureKind::Score {
                        " (give reference predictions, or set drift.score = false)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    let detectors = spec.detectors.clone().unwrap_or_else(|| {
        vec![
            detectors::DetectorSpec::adwin(),
            detectors::DetectorSpec::page_hinkley(),
            detectors::DetectorSpec::ddm(),
        ]
    });
    Ok(Drift {
        spec: spec.clone(),
        features,
        profile: Arc::new(profile),
        detectors,
    })
}

/// Whether `statistic` is computed for features of `kind`.
fn applies(statistic: spec::Statistic, kind: FeatureKind) -> bool {
    use spec::Statistic::*;
    let categorical = matches!(kind, FeatureKind::Categorical(_));
    match statistic {
        Psi | JsDistance | NullRate | Constant => true,
        Ks | KsPValue | Wasserstein => !categorical,
        Chi2 | Chi2PValue | UnseenRate => categorical,
    }
}
