//! The online model: feature encoding, prediction and one deterministic minibatch step.
//!
//! Numeric features are standardized by running statistics of the examples learned so far
//! (nulls contribute nothing); categorical values are hashed, with a hash the project owns, into
//! `2^hash_bits` buckets. A minibatch's gradient is summed per logical shard (by the event id's
//! hash) in example order, then over shards in shard order: that order of addition is fixed by
//! the data alone, so the same model comes out whatever runs it.

use serde::{Deserialize, Serialize};

use super::spec::{LearnSpec, Loss, Schedule};

/// FNV-1a, 64 bits: stable across versions and platforms, unlike the standard library's hasher.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separates parts, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The logical shard of an example.
pub fn shard_of(event_id: &str, shards: u16) -> usize {
    (fnv1a(&[event_id.as_bytes()]) % shards as u64) as usize
}

/// Which event features the model reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Numeric features: (name, index in the event's numeric values).
    pub numeric: Vec<(String, usize)>,
    /// Categorical features: (name, index in the event's categorical values).
    pub categorical: Vec<(String, usize)>,
    /// Hash buckets are `2^hash_bits`.
    pub hash_bits: u8,
}

impl FeatureSpec {
    /// Number of weights.
    pub fn dim(&self) -> usize {
        self.numeric.len() + (1usize << self.hash_bits)
    }
}

/// The feature values of one example, as the model reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Input<'a> {
    /// Numeric values in micro-units, by event index.
    pub numeric: &'a [Option<i64>],
    /// Categorical values, by event index.
    pub categorical: &'a [Option<crate::records::Text>],
}

/// Running mean and variance of each numeric feature (Welford), over learned examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Non-null values seen, per feature.
    pub n: Vec<u64>,
    /// Their mean.
    pub mean: Vec<f64>,
    /// Their sum of squared deviations.
    pub m2: Vec<f64>,
}

impl Scaler {
    /// Statistics of `d` features, none seen yet.
    pub fn new(d: usize) -> Scaler {
        Scaler {
            n: vec![0; d],
            mean: vec![0.0; d],
            m2: vec![0.0; d],
        }
    }

    /// The standardized value of `x` for feature `i`; 0 until the feature has a spread.
    pub fn z(&self, i: usize, x: f64) -> f64 {
        if self.n[i] < 2 || self.m2[i] <= 0.0 {
            return 0.0;
        }
        let sd = (self.m2[i] / self.n[i] as f64).sqrt();
        (x - self.mean[i]) / sd
    }

    /// Adds one value of feature `i`.
    pub fn update(&mut self, i: usize, x: f64) {
        self.n[i] += 1;
        let d = x - self.mean[i];
        self.mean[i] += d / self.n[i] as f64;
        self.m2[i] += d * (x - self.mean[i]);
    }
}

/// Model parameters and the optimizer state behind them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The loss.
    pub loss: Loss,
    /// The features read.
    pub features: FeatureSpec,
    /// Numeric weights, then one per hash bucket.
    pub weights: Vec<f64>,
    /// The intercept.
    pub bias: f64,
    /// Standardization of the numeric features.
    pub scaler: Scaler,
    /// Minibatches applied since the schedule (re)started.
    pub step: u64,
    /// AdaGrad: sums of squared gradients per weight, then the bias's last.
    pub g2: Vec<f64>,
    /// Examples learned.
    pub examples: u64,
}

/// A sparse encoded example: (weight index, value).
pub type Encoded = Vec<(usize, f64)>;

impl Model {
    /// An untrained model.
    pub fn new(loss: Loss, features: FeatureSpec) -> Model {
        let d = features.dim();
        let nn = features.numeric.len();
        Model {
            loss,
            weights: vec![0.0; d],
            bias: 0.0,
            scaler: Scaler::new(nn),
            step: 0,
            g2: vec![0.0; d + 1],
            examples: 0,
            features,
        }
    }

    /// Encodes one example with the current standardization.
    pub fn encode(&self, x: &Input) -> Encoded {
        let f = &self.features;
        let mut out = Vec::with_capacity(f.numeric.len() + f.categorical.len());
        for (i, (_, at)) in f.numeric.iter().enumerate() {
            if let Some(v) = x.numeric.get(*at).copied().flatten() {
                out.push((i, self.scaler.z(i, crate::records::from_micro(v))));
            }
        }
        let mask = (1u64 << f.hash_bits) - 1;
        for (j, (_, at)) in f.categorical.iter().enumerate() {
            if let Some(v) = x.categorical.get(*at).and_then(|v| v.as_deref()) {
                let h = fnv1a(&[&(j as u16).to_le_bytes(), v.as_bytes()]) & mask;
                out.push((f.numeric.len() + h as usize, 1.0));
            }
        }
        out
    }

    /// The model's raw output for an encoded example.
    pub fn margin(&self, x: &Encoded) -> f64 {
        let mut z = self.bias;
        for &(i, v) in x {
            z += self.weights[i] * v;
        }
        z
    }

    /// The predicted probability of label 1 (squared loss: the output clamped to [0, 1]).
    pub fn predict(&self, x: &Encoded) -> f64 {
        let z = self.margin(x);
        match self.loss {
            Loss::Log => sigmoid(z),
            Loss::Squared => z.clamp(0.0, 1.0),
        }
    }

    /// The L2 norm of the weights and bias.
    pub fn norm(&self) -> f64 {
        (self.weights.iter().map(|w| w * w).sum::<f64>() + self.bias * self.bias).sqrt()
    }

    /// Every parameter is finite.
    pub fn finite(&self) -> bool {
        self.bias.is_finite() && self.weights.iter().all(|w| w.is_finite())
    }
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// One example of a minibatch, encoded before the step.
#[derive(Debug, Clone)]
pub struct BatchExample<'a> {
    /// Its logical shard.
    pub shard: usize,
    /// Its encoding under the pre-step standardization.
    pub x: Encoded,
    /// Its raw numeric values (for the scaler update).
    pub input: Input<'a>,
    /// The label.
    pub y: f64,
}

/// Gradient scratch space, reused across steps.
#[derive(Debug, Default)]
pub struct Scratch {
    shards: Vec<Vec<f64>>,
    used: Vec<bool>,
    total: Vec<f64>,
}

impl Model {
    /// Applies one minibatch step: per-example gradients (clipped to norm `clip`), summed per
    /// shard in batch order then over shards in shard order, averaged; the weights decay by
    /// `rate · l2` (not the bias); then the scaler learns the batch's values. Returns false,
    /// changing nothing, if the step would make a parameter or AdaGrad sum non-finite.
    pub fn step(
        &mut self,
        spec: &LearnSpec,
        rate_factor: f64,
        batch: &[BatchExample],
        scratch: &mut Scratch,
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        let d = self.weights.len();
        let s = spec.shards as usize;
        if scratch.shards.len() != s || scratch.total.len() != d + 1 {
            scratch.shards = vec![vec![0.0; d + 1]; s];
            scratch.used = vec![false; s];
            scratch.total = vec![0.0; d + 1];
        }
        for ex in batch {
            let r = self.predict_raw(&ex.x) - ex.y;
            let sq: f64 = ex.x.iter().map(|(_, v)| v * v).sum::<f64>() + 1.0;
            let norm = r.abs() * sq.sqrt();
            let scale = if norm > spec.clip {
                spec.clip / norm
            } else {
                1.0
            };
            let g = r * scale;
            let acc = &mut scratch.shards[ex.shard];
            for &(i, v) in &ex.x {
                acc[i] += g * v;
            }
            acc[d] += g;
            scratch.used[ex.shard] = true;
        }
        let total = &mut scratch.total;
        total.iter_mut().for_each(|t| *t = 0.0);
        for (acc, used) in scratch.shards.iter_mut().zip(scratch.used.iter_mut()) {
            if !*used {
                continue;
            }
            for (t, a) in total.iter_mut().zip(acc.iter_mut()) {
                *t += *a;
                *a = 0.0;
            }
            *used = false;
        }
        let n = batch.len() as f64;
        let mut weights = self.weights.clone();
        let mut bias = self.bias;
        let mut g2 = self.g2.clone();
        let base = match spec.learning_rate {
            Schedule::Constant { rate } | Schedule::Adagrad { rate, .. } => rate * rate_factor,
            Schedule::InverseScaling { rate, power } => {
                rate * rate_factor / ((1 + self.step) as f64).powf(power)
            }
        };
        // L2 as decoupled weight decay, outside the per-coordinate AdaGrad scaling: inside it,
        // a weight absent from a batch right after a schedule reset would move by a full
        // `rate` step in the direction of its sign, whatever the size of `l2`.
        let decay = 1.0 - base * spec.l2;
        for i in 0..=d {
            let g = total[i] / n;
            let delta = match spec.learning_rate {
                Schedule::Constant { .. } | Schedule::InverseScaling { .. } => base * g,
                Schedule::Adagrad { epsilon, .. } => {
                    g2[i] += g * g;
                    if g == 0.0 {
                        0.0
                    } else {
                        base * g / (g2[i].sqrt() + epsilon)
                    }
                }
            };
            if i < d {
                weights[i] = weights[i] * decay - delta;
            } else {
                bias -= delta;
            }
        }
        if !bias.is_finite()
            || weights.iter().any(|w| !w.is_finite())
            || g2.iter().any(|g| !g.is_finite())
        {
            return false;
        }
        self.weights = weights;
        self.bias = bias;
        self.g2 = g2;
        self.step += 1;
        self.examples += batch.len() as u64;
        for ex in batch {
            for (i, (_, at)) in self.features.numeric.iter().enumerate() {
                if let Some(v) = ex.input.numeric.get(*at).copied().flatten() {
                    self.scaler.update(i, crate::records::from_micro(v));
                }
            }
        }
        true
    }

    /// The loss's prediction before clamping (the residual of both losses is `output - y`).
    fn predict_raw(&self, x: &Encoded) -> f64 {
        let z = self.margin(x);
        match self.loss {
            Loss::Log => sigmoid(z),
            Loss::Squared => z,
        }
    }

    /// Restarts the schedule: step count and AdaGrad sums.
    pub fn reset_schedule(&mut self) {
        self.step = 0;
        self.g2.iter_mut().for_each(|g| *g = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_absent_from_a_batch_only_decay_even_after_a_schedule_reset() {
        let spec: LearnSpec = toml::from_str("l2 = 1e-5").unwrap();
        let features = FeatureSpec {
            numeric: vec![("x".into(), 0)],
            categorical: vec![("c".into(), 0)],
            hash_bits: 3,
        };
        let mut m = Model::new(Loss::Log, features);
        m.weights[3] = 0.05;
        m.reset_schedule();
        let numeric = [Some(1_000_000)];
        let categorical = [None];
        let input = Input {
            numeric: &numeric,
            categorical: &categorical,
        };
        let batch = [BatchExample {
            shard: 0,
            x: m.encode(&input),
            input: input.clone(),
            y: 1.0,
        }];
        let mut scratch = Scratch::default();
        for _ in 0..5 {
            assert!(m.step(&spec, 1.0, &batch, &mut scratch));
        }
        // AdaGrad rate 0.1: five decays by 1 - 0.1 · 1e-5, nothing else.
        let expected = 0.05 * (1.0 - 0.1 * 1e-5f64).powi(5);
        assert!((m.weights[3] - expected).abs() < 1e-15, "{}", m.weights[3]);
        assert!(m.bias > 0.0, "the bias learned");
    }
}
