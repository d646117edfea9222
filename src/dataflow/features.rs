//! Windowed entity features: per window × entity, count, mean, standard deviation, min and max
//! of the configured numeric features, and freshness (window end minus the entity's last event).
//!
//! Semantics: nulls are skipped per feature (`n` counts non-null values); the standard deviation
//! is the population one. Time: one reduce per (window, entity) over its events, re-run when that
//! key changes; sums are exact 128-bit fixed-point. State: the window's events, until retirement.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::join::Joined;
use super::status::{with_status, StatusRow};
use super::temporal::expire_at;
use super::windows::{Status, Win, Windows};
use crate::config::Job;

/// Key of a feature row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FKey {
    /// The window (by event time).
    pub win: Win,
    /// The entity.
    pub entity: String,
}

/// Exact statistics of one feature in one window of one entity (micro-units).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct FeatureStat {
    /// Non-null values.
    pub n: i64,
    /// Sum of values.
    pub sum: i128,
    /// Sum of squared values (micro² units).
    pub sum_sq: i128,
    /// Least value.
    pub min: i64,
    /// Greatest value.
    pub max: i64,
}

impl FeatureStat {
    /// Mean, if any value is present.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64 / 1e6)
    }

    /// Population standard deviation, if any value is present.
    pub fn std(&self) -> Option<f64> {
        (self.n > 0).then(|| {
            let n = self.n as f64;
            // n·Σx² − (Σx)² exactly in i128 when it fits (values are within ±1e9, so it does
            // up to about 1e4 maximal values per window and entity); otherwise in f64.
            let exact = (self.n as i128)
                .checked_mul(self.sum_sq)
                .zip(self.sum.checked_mul(self.sum))
                .and_then(|(a, b)| a.checked_sub(b));
            let var_micro2 = match exact {
                Some(num) => num.max(0) as f64 / (n * n),
                None => {
                    let mean = self.sum as f64 / n;
                    (self.sum_sq as f64 / n - mean * mean).max(0.0)
                }
            };
            var_micro2.sqrt() / 1e6
        })
    }
}

/// Aggregates of one window × entity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct FeatureAgg {
    /// Events of the entity in the window.
    pub events: i64,
    /// Event time of its latest event.
    pub last_time: u64,
    /// One entry per configured feature.
    pub stats: Vec<FeatureStat>,
}

/// One value of the entity-feature changelog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FeatureRow {
    /// Which window and entity.
    pub key: FKey,
    /// Window status.
    pub status: Status,
    /// The aggregates.
    pub agg: FeatureAgg,
}

impl StatusRow for FeatureRow {
    fn retired(&self) -> Self {
        FeatureRow {
            status: Status::Retired,
            ..self.clone()
        }
    }
}

/// Builds the entity-feature changelog.
pub fn features<'s>(
    job: &Job,
    windows: &Windows,
    joined: &Joined<'s>,
) -> VecCollection<'s, u64, FeatureRow> {
    let name = &job.spec.name;
    let idx = job.entity_feature_idx.clone();
    let w = windows.clone();
    let keyed = joined.events.clone().flat_map(move |e| {
        let values: Vec<Option<i64>> = idx.iter().map(|&i| e.numeric[i]).collect();
        w.of(e.time)
            .into_iter()
            .map(|win| {
                (
                    FKey {
                        win,
                        entity: e.entity.clone(),
                    },
                    (e.time, values.clone()),
                )
            })
            .collect::<Vec<_>>()
    });
    let w = windows.clone();
    let keyed = expire_at(keyed, &format!("{name}.FeaturesRetire"), move |(k, _)| {
        w.retire_at(&k.win)
    });
    let k = job.entity_feature_idx.len();
    let aggs = keyed.reduce_named(
        &format!("{name}.EntityFeatures"),
        move |_key, input, output| {
            let mut a = FeatureAgg {
                stats: vec![
                    FeatureStat {
                        min: i64::MAX,
                        max: i64::MIN,
                        ..Default::default()
                    };
                    k
                ],
                ..Default::default()
            };
            for ((time, values), r) in input {
                let r = *r as i64;
                a.events += r;
                a.last_time = a.last_time.max(*time);
                for (s, v) in a.stats.iter_mut().zip(values) {
                    if let Some(v) = *v {
                        s.n += r;
                        s.sum += (v as i128) * r as i128;
                        s.sum_sq = s
                            .sum_sq
                            .saturating_add((v as i128) * (v as i128) * r as i128);
                        s.min = s.min.min(v);
                        s.max = s.max.max(v);
                    }
                }
            }
            for s in &mut a.stats {
                if s.n == 0 {
                    (s.min, s.max) = (0, 0);
                }
            }
            output.push((a, 1));
        },
    );
    with_status(
        &format!("{name}.Features"),
        windows,
        aggs,
        |k: &FKey| k.win,
        |key, status, agg| FeatureRow { key, status, agg },
        |r| r.key.win,
    )
}

#[cfg(test)]
mod tests {
    use super::FeatureStat;

    #[test]
    fn std_is_exact_when_it_fits_and_falls_back_when_it_does_not() {
        // Values 1, 2, 3: population std sqrt(2/3).
        let s = FeatureStat {
            n: 3,
            sum: 6_000_000,
            sum_sq: 14_000_000_000_000,
            min: 1_000_000,
            max: 3_000_000,
        };
        assert!((s.std().unwrap() - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // 20 000 values of 1e9: n·Σx² overflows i128; the f64 path still gives 0.
        let v: i128 = 1_000_000_000_000_000;
        let s = FeatureStat {
            n: 20_000,
            sum: 20_000 * v,
            sum_sq: 20_000 * v * v,
            min: v as i64,
            max: v as i64,
        };
        assert_eq!(s.std(), Some(0.0));
        assert_eq!(s.mean(), Some(1e9));
    }
}
