//! Online learning: the model, its minibatch step, the learner with its canary gate, rollback
//! and poisoning defences, and the `[learn]` configuration. The dataflow side is
//! `dataflow::learn`; published versions go to the `registry`.

pub mod learner;
pub mod model;
pub mod spec;

use std::path::PathBuf;

use model::FeatureSpec;
use spec::{LearnSpec, Schedule};

use crate::error::{Error, Result};
use crate::schema::Stream;

/// A job's online learning, resolved against its schema.
#[derive(Debug, Clone)]
pub struct Learn {
    /// The `[learn]` section as written.
    pub spec: LearnSpec,
    /// The features the model reads.
    pub features: FeatureSpec,
    /// The registry directory (relative paths are taken from the working directory, like
    /// `outputs.dir`).
    pub registry: Option<PathBuf>,
}

/// Checks `spec` against `job`'s events schema.
pub fn resolve(job: &crate::config::Job, spec: &LearnSpec) -> Result<Learn> {
    let err = |key: &str, reason: String| Error::config(&job.file, key, reason);
    let schema = job.schema(Stream::Events);
    let pick = |names: &[String]| -> Vec<(String, usize)> {
        names
            .iter()
            .enumerate()
            .filter(|(_, n)| spec.features.is_empty() || spec.features.contains(n))
            .map(|(i, n)| (n.clone(), i))
            .collect()
    };
    for f in &spec.features {
        if !schema.numeric.contains(f) && !schema.categorical.contains(f) {
            return Err(err(
                "learn.features",
                format!("{f:?} is not a feature of the events schema {}", schema.id),
            ));
        }
    }
    if !(1..=24).contains(&spec.hash_bits) {
        return Err(err("learn.hash_bits", "must be in 1..=24".into()));
    }
    if spec.batch_size == 0 {
        return Err(err("learn.batch_size", "must be at least 1".into()));
    }
    if !(1..=256).contains(&spec.shards) {
        return Err(err("learn.shards", "must be in 1..=256".into()));
    }
    // Gradient scratch is shards × 2^hash_bits floats.
    if (spec.shards as u64) << spec.hash_bits > 1 << 26 {
        return Err(err(
            "learn.shards",
            format!(
                "{} shards × 2^{} buckets is more gradient scratch than 2^26 floats",
                spec.shards, spec.hash_bits
            ),
        ));
    }
    if spec.publish_every == 0 {
        return Err(err("learn.publish_every", "must be at least 1".into()));
    }
    let positive = |key: &str, x: f64| {
        if x.is_finite() && x > 0.0 {
            Ok(())
        } else {
            Err(err(key, format!("must be a positive number, not {x}")))
        }
    };
    positive("learn.clip", spec.clip)?;
    if !(spec.l2.is_finite() && spec.l2 >= 0.0) {
        return Err(err("learn.l2", "must be a number ≥ 0".into()));
    }
    match spec.learning_rate {
        Schedule::Constant { rate } => positive("learn.learning_rate.rate", rate)?,
        Schedule::InverseScaling { rate, power } => {
            positive("learn.learning_rate.rate", rate)?;
            positive("learn.learning_rate.power", power)?;
        }
        Schedule::Adagrad { rate, epsilon } => {
            positive("learn.learning_rate.rate", rate)?;
            positive("learn.learning_rate.epsilon", epsilon)?;
        }
    }
    let c = &spec.canary;
    if c.window == 0 || c.min_examples == 0 || c.min_examples > c.window {
        return Err(err(
            "learn.canary.min_examples",
            format!("must be in 1..=learn.canary.window ({})", c.window),
        ));
    }
    if !(c.holdout > 0.0 && c.holdout < 1.0) {
        return Err(err("learn.canary.holdout", "must be in (0, 1)".into()));
    }
    if !(c.trim >= 0.0 && c.trim < 0.5) {
        return Err(err("learn.canary.trim", "must be in [0, 0.5)".into()));
    }
    positive("learn.canary.max_norm", c.max_norm)?;
    positive("learn.canary.max_score_psi", c.max_score_psi)?;
    if !(c.max_loss_margin.is_finite() && c.max_loss_margin >= 0.0) {
        return Err(err(
            "learn.canary.max_loss_margin",
            "must be a number ≥ 0".into(),
        ));
    }
    if let Some(rb) = &spec.rollback {
        if let Some(a) = rb.min_accuracy {
            if !(0.0..=1.0).contains(&a) {
                return Err(err(
                    "learn.rollback.min_accuracy",
                    "must be in [0, 1]".into(),
                ));
            }
        }
        if let Some(l) = rb.max_log_loss {
            positive("learn.rollback.max_log_loss", l)?;
        }
        if rb.max_log_loss.is_none() && rb.min_accuracy.is_none() {
            return Err(err(
                "learn.rollback",
                "needs max_log_loss or min_accuracy".into(),
            ));
        }
        if rb.min_examples == 0 || rb.min_examples > c.window {
            return Err(err(
                "learn.rollback.min_examples",
                format!("must be in 1..=learn.canary.window ({})", c.window),
            ));
        }
    }
    if let Some(d) = &spec.on_drift {
        d.detector
            .check()
            .map_err(|e| err("learn.on_drift.detector", e))?;
        positive("learn.on_drift.factor", d.factor)?;
        if d.examples == 0 {
            return Err(err("learn.on_drift.examples", "must be at least 1".into()));
        }
    }
    if let Some(k) = spec.defence.outlier_z {
        positive("learn.defence.outlier_z", k)?;
    }
    if spec.defence.entity_window_ms == 0 {
        return Err(err(
            "learn.defence.entity_window_ms",
            "must be at least 1".into(),
        ));
    }
    if spec.defence.entity_cap == Some(0) {
        return Err(err("learn.defence.entity_cap", "must be at least 1".into()));
    }
    if let Some(m) = &spec.mlflow {
        crate::mlflow::check(m).map_err(|(key, reason)| err(key, reason))?;
        if spec.registry.is_none() {
            return Err(err(
                "learn.mlflow",
                "needs learn.registry: the local registry is written first and MLflow follows it"
                    .into(),
            ));
        }
    }
    let features = FeatureSpec {
        numeric: pick(&schema.numeric),
        categorical: pick(&schema.categorical),
        hash_bits: spec.hash_bits,
    };
    Ok(Learn {
        spec: spec.clone(),
        features,
        registry: spec.registry.clone(),
    })
}
