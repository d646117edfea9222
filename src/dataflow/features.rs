//! Windowed entity features: per window × entity, count, mean, standard deviation, min and max
//! of the configured numeric features, and freshness (window end minus the entity's last event).
//!
//! Semantics: nulls are skipped per feature (`n` counts non-null values); the standard deviation
//! is the population one. Time: each event updates one pane of its entity; sums are exact
//! 128-bit fixed-point. State: per pane and entity, (n, Σ, Σ², min, max) per feature and the
//! last event time, until the last window containing the pane retires.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::cardinality::admit;
use super::join::Joined;
use super::panes::{assemble, pre_aggregate, PaneAcc, Panes, Render};
use super::status::StatusRow;
use super::windows::{Status, Win};
use crate::config::Job;

/// Key of a feature row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FKey {
    /// The window (by event time).
    pub win: Win,
    /// The entity.
    pub entity: crate::records::Text,
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

/// The accumulator of one entity-feature pane. Events leave the join only after every window
/// they lie in has retired, so a live pane only ever grows: min, max and the last time need no
/// retraction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct FeaturePane {
    events: i64,
    last_time: u64,
    stats: Vec<FeatureStat>,
}

impl PaneAcc for FeaturePane {
    fn held(&self) -> usize {
        1 + self.stats.len()
    }

    fn merge(&mut self, d: &Self) {
        self.events += d.events;
        self.last_time = self.last_time.max(d.last_time);
        if self.stats.len() < d.stats.len() {
            self.stats.resize(
                d.stats.len(),
                FeatureStat {
                    min: i64::MAX,
                    max: i64::MIN,
                    ..Default::default()
                },
            );
        }
        for (s, x) in self.stats.iter_mut().zip(&d.stats) {
            s.n += x.n;
            s.sum += x.sum;
            s.sum_sq = s.sum_sq.saturating_add(x.sum_sq);
            s.min = s.min.min(x.min);
            s.max = s.max.max(x.max);
        }
    }

    fn is_empty(&self) -> bool {
        self.events == 0 && self.stats.iter().all(|s| s.n == 0)
    }
}

/// Renders entity-feature rows of windows from their panes.
struct FeatureRender {
    features: usize,
}

impl Render for FeatureRender {
    type Group = crate::records::Text;
    type Memo = ();
    type Acc = FeaturePane;
    type Row = FeatureRow;

    fn render(
        &self,
        entity: &crate::records::Text,
        win: Win,
        status: Status,
        panes: &[&FeaturePane],
        out: &mut Vec<FeatureRow>,
    ) {
        let mut a = FeaturePane {
            stats: vec![
                FeatureStat {
                    min: i64::MAX,
                    max: i64::MIN,
                    ..Default::default()
                };
                self.features
            ],
            ..Default::default()
        };
        for p in panes {
            a.merge(p);
        }
        for s in &mut a.stats {
            if s.n == 0 {
                (s.min, s.max) = (0, 0);
            }
        }
        out.push(FeatureRow {
            key: FKey {
                win,
                entity: entity.clone(),
            },
            status,
            agg: FeatureAgg {
                events: a.events,
                last_time: a.last_time,
                stats: a.stats,
            },
        });
    }

    fn tombstone(&self, row: &FeatureRow) -> Option<FeatureRow> {
        (row.status == Status::Final).then(|| row.retired())
    }
}

/// Builds the entity-feature changelog.
pub fn features<'s>(
    job: &Job,
    panes: &Panes,
    joined: &Joined<'s>,
) -> VecCollection<'s, u64, FeatureRow> {
    let name = &job.spec.name;
    let idx = job.entity_feature_idx.clone();
    let features = idx.len();
    let panes = panes.clone();
    let p = panes.clone();
    let deltas = pre_aggregate(
        joined.events.clone(),
        &format!("{name}.FeaturesPre"),
        &panes,
        move |e: &super::join::Ev, r, emit| {
            let r = r as i64;
            emit(
                e.entity.clone(),
                &|| e.entity.clone(),
                p.pane_of(e.time),
                &mut |a: &mut FeaturePane| {
                    a.events += r;
                    a.last_time = a.last_time.max(e.time);
                    if a.stats.is_empty() {
                        a.stats = vec![
                            FeatureStat {
                                min: i64::MAX,
                                max: i64::MIN,
                                ..Default::default()
                            };
                            features
                        ];
                    }
                    for (s, &i) in a.stats.iter_mut().zip(&idx) {
                        if let Some(v) = e.numeric[i] {
                            s.n += r;
                            s.sum += (v as i128) * r as i128;
                            s.sum_sq = s
                                .sum_sq
                                .saturating_add((v as i128) * (v as i128) * r as i128);
                            s.min = s.min.min(v);
                            s.max = s.max.max(v);
                        }
                    }
                },
            );
        },
    );
    let cap = job.spec.limits.clone().unwrap_or_default().entities();
    let deltas = admit(deltas, &format!("{name}.FeaturesCap"), panes.clone(), cap);
    assemble(
        deltas,
        &format!("{name}.FeaturesWindows"),
        panes,
        FeatureRender { features },
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
