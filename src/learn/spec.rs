//! The `[learn]` section of a job file: model, schedule, gate, rollback and defences.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::drift::detectors::DetectorSpec;

/// Online learning of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnSpec {
    /// The loss the model minimizes.
    #[serde(default)]
    pub loss: Loss,
    /// Event features the model reads; empty means every feature.
    #[serde(default)]
    pub features: Vec<String>,
    /// Categorical values are hashed into `2^hash_bits` buckets.
    #[serde(default = "default_hash_bits")]
    pub hash_bits: u8,
    /// Examples per minibatch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// L2 regularization as decoupled weight decay: each step multiplies the weights (not the
    /// bias) by `1 - rate · l2`.
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub learning_rate: Schedule,
    /// Bound on the L2 norm of one example's gradient.
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Logical shards the gradient is summed over, independent of the worker count.
    #[serde(default = "default_shards")]
    pub shards: u16,
    /// A model version is published after this many more examples were learned.
    #[serde(default = "default_publish")]
    pub publish_every: u64,
    /// Registry directory the versions and decisions are written to (relative paths from the
    /// working directory, like `outputs.dir`); unset: versions are only outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<PathBuf>,
    /// What a concept-drift detector on the online model's errors does to the learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<OnDrift>,
    /// The canary gate a new version passes before it becomes champion.
    #[serde(default)]
    pub canary: CanarySpec,
    /// When the champion is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackSpec>,
    /// Defences against poisoned examples.
    #[serde(default)]
    pub defence: DefenceSpec,
    /// An MLflow Model Registry every published version is also published to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<crate::mlflow::MlflowSpec>,
}

impl LearnSpec {
    /// The settings that decide what is learned: without where versions are published.
    pub fn hyperparameters(&self) -> LearnSpec {
        LearnSpec {
            registry: None,
            mlflow: None,
            ..self.clone()
        }
    }

    /// The text the job fingerprint hashes: every setting that changes an output, in the form
    /// buffers written before the `mlflow` key existed hashed (so they still resume).
    pub fn fingerprint_text(&self) -> String {
        let s = self.hyperparameters();
        let fields = format!(
            "LearnSpec {{ loss: {:?}, features: {:?}, hash_bits: {:?}, batch_size: {:?}, l2: {:?}, \
             learning_rate: {:?}, clip: {:?}, shards: {:?}, publish_every: {:?}, registry: None, \
             on_drift: {:?}, canary: {:?}, rollback: {:?}, defence: {:?} }}",
            s.loss,
            s.features,
            s.hash_bits,
            s.batch_size,
            s.l2,
            s.learning_rate,
            s.clip,
            s.shards,
            s.publish_every,
            s.on_drift,
            s.canary,
            s.rollback,
            s.defence,
        );
        fields
    }
}

fn default_hash_bits() -> u8 {
    10
}
fn default_batch() -> usize {
    64
}
fn default_l2() -> f64 {
    1e-5
}
fn default_clip() -> f64 {
    10.0
}
fn default_shards() -> u16 {
    16
}
fn default_publish() -> u64 {
    2000
}

/// The model's loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Logistic regression.
    #[default]
    Log,
    /// Linear regression on the 0/1 label.
    Squared,
}

/// A learning-rate schedule; `step` counts minibatches applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// `rate` for every step.
    Constant {
        /// The rate.
        rate: f64,
    },
    /// `rate / (1 + step)^power`.
    InverseScaling {
        /// The initial rate.
        rate: f64,
        /// The decay exponent.
        power: f64,
    },
    /// Per coordinate `rate / (sqrt(sum of squared gradients) + epsilon)`.
    Adagrad {
        /// The base rate.
        rate: f64,
        /// Added to the denominator.
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
}

fn default_epsilon() -> f64 {
    1e-8
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Adagrad {
            rate: 0.1,
            epsilon: 1e-8,
        }
    }
}

/// The learning-rate response to a detected concept drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDrift {
    /// The detector over the online model's prequential errors.
    #[serde(default = "default_detector")]
    pub detector: DetectorSpec,
    /// `boost` multiplies the rate for a while; `reset` restarts the schedule.
    pub action: DriftAction,
    /// Multiplier of a boost.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Examples a boost lasts.
    #[serde(default = "default_boost_examples")]
    pub examples: u64,
}

fn default_detector() -> DetectorSpec {
    DetectorSpec::adwin()
}
fn default_factor() -> f64 {
    4.0
}
fn default_boost_examples() -> u64 {
    2000
}

/// What a detection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftAction {
    /// Multiply the rate by `factor` for `examples` examples.
    Boost,
    /// Restart the schedule (step count and AdaGrad sums).
    Reset,
}

/// The canary gate.
///
/// A deterministic share of the labeled examples (by event-id hash) is held out: scored, never
/// learned. The gate scores the last `window` held-out examples with the challenger and the
/// champion as they are at publication and compares their trimmed mean log-loss: the largest
/// `trim` share of each model's per-example losses is left out, so that a burst of poisoned
/// labels smaller than that share cannot make a poisoned challenger look better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// Share of examples held out for the gate (and the rollback check), in (0, 1).
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Held-out examples the gate compares on (the last N).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Fewer held-out examples than this: no comparison, the challenger waits.
    #[serde(default = "default_min_examples")]
    pub min_examples: usize,
    /// Share of each model's largest per-example losses left out of the comparison, in [0, 0.5).
    #[serde(default = "default_trim")]
    pub trim: f64,
    /// The challenger's trimmed mean loss may exceed the champion's by at most this much.
    #[serde(default = "default_margin")]
    pub max_loss_margin: f64,
    /// Bound on the L2 norm of the weights.
    #[serde(default = "default_max_norm")]
    pub max_norm: f64,
    /// Bound on the PSI between the two models' scores of the held-out examples, unless the
    /// challenger's trimmed loss beats the champion's by more than the margin.
    #[serde(default = "default_max_psi")]
    pub max_score_psi: f64,
}

fn default_holdout() -> f64 {
    0.1
}
fn default_trim() -> f64 {
    0.1
}
fn default_window() -> usize {
    1000
}
fn default_min_examples() -> usize {
    300
}
fn default_margin() -> f64 {
    0.01
}
fn default_max_norm() -> f64 {
    1000.0
}
fn default_max_psi() -> f64 {
    0.25
}

impl Default for CanarySpec {
    fn default() -> Self {
        CanarySpec {
            holdout: default_holdout(),
            trim: default_trim(),
            window: default_window(),
            min_examples: default_min_examples(),
            max_loss_margin: default_margin(),
            max_norm: default_max_norm(),
            max_score_psi: default_max_psi(),
        }
    }
}

/// When the champion's live quality over the last `canary.window` examples breaches a threshold,
/// the previous champion is restored and updates pause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackSpec {
    /// The champion's mean log-loss over the window above this breaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_loss: Option<f64>,
    /// The champion's accuracy over the window below this breaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_accuracy: Option<f64>,
    /// The champion must have scored this many examples of the window first.
    #[serde(default = "default_min_examples")]
    pub min_examples: usize,
}

/// Defences against poisoned examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenceSpec {
    /// At most this many examples of one entity are learned per `entity_window_ms` of event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_cap: Option<u32>,
    /// The event-time window of the entity cap.
    #[serde(default = "default_entity_window")]
    pub entity_window_ms: u64,
    /// Examples with a standardized numeric feature beyond this many standard deviations of
    /// what the model has seen are quarantined, not learned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_z: Option<f64>,
    /// The outlier gate opens after this many learned examples.
    #[serde(default = "default_warmup")]
    pub warmup: u64,
}

impl Default for DefenceSpec {
    fn default() -> Self {
        DefenceSpec {
            entity_cap: None,
            entity_window_ms: default_entity_window(),
            outlier_z: None,
            warmup: default_warmup(),
        }
    }
}

fn default_entity_window() -> u64 {
    3_600_000
}
fn default_warmup() -> u64 {
    1000
}
