//! Quality metrics of the production predictions per window × segment × model version.
//!
//! Semantics: count, positives, accuracy at the job's threshold, log-loss, Brier score,
//! calibration bins and AUC over the labeled predictions of each window (by event time).
//! Time: each labeled prediction updates one pane per segment (see [`super::panes`]); sums are
//! fixed-point integers (log-loss and Brier in 1e-9 units), so any worker count adds the same
//! integers. The provisional AUC comes from score-bin counts; a final window's exact AUC comes
//! from its panes' score histograms, merged in score order, whenever the final row is rendered.
//! State: per pane, segment and model, the sums, the score bins and every score with its label
//! counts; a pane leaves state when the last window containing it retires.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::cardinality::admit;
use super::join::Labeled;
use super::panes::{assemble, merge_sorted, pre_aggregate, PaneAcc, Panes, Render};
use super::windows::{Names, Status, Win};
use crate::config::Job;
use crate::records::MICRO;

/// Key of a quality row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QKey {
    /// The window (by event time).
    pub win: Win,
    /// `all` or `column=value`.
    pub segment: String,
    /// Model version of the predictions.
    pub model: String,
}

/// Exact integer aggregates of one quality key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct QualityAgg {
    /// Labeled predictions.
    pub count: i64,
    /// Of which with label 1.
    pub positives: i64,
    /// Of which scored at or above the threshold.
    pub predicted_positive: i64,
    /// Of which classified correctly at the threshold.
    pub correct: i64,
    /// Sum of log-losses in 1e-9 units.
    pub logloss_nano: i64,
    /// Sum of squared errors in 1e-9 units.
    pub brier_nano: i64,
    /// Per calibration bin: (count, sum of scores in micro-units, positives).
    pub calibration: Vec<(i64, i64, i64)>,
    /// Per AUC score bin: positives.
    pub auc_positive: Vec<i64>,
    /// Per AUC score bin: negatives.
    pub auc_negative: Vec<i64>,
}

impl QualityAgg {
    /// AUC from the score bins, ties within a bin counted half.
    pub fn binned_auc(&self) -> Option<f64> {
        let p: i64 = self.auc_positive.iter().sum();
        let n: i64 = self.auc_negative.iter().sum();
        if p == 0 || n == 0 {
            return None;
        }
        let mut below = 0i128;
        let mut twice = 0i128;
        for (pos, neg) in self.auc_positive.iter().zip(&self.auc_negative) {
            twice += *pos as i128 * (2 * below + *neg as i128);
            below += *neg as i128;
        }
        Some(twice as f64 / (2.0 * p as f64 * n as f64))
    }
}

/// The exact AUC of a final window, as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AucExact {
    /// Positive examples.
    pub positives: u64,
    /// Negative examples.
    pub negatives: u64,
    /// Twice the number of (positive, negative) pairs ordered correctly, ties counting one.
    pub twice_concordant: u128,
}

impl AucExact {
    /// Computes the exact AUC from `(score, label)` values sorted by score, with multiplicities.
    pub fn from_sorted<'a>(values: impl IntoIterator<Item = (&'a (i64, u8), isize)>) -> AucExact {
        let mut out = AucExact {
            positives: 0,
            negatives: 0,
            twice_concordant: 0,
        };
        let mut group: Option<i64> = None;
        let (mut gp, mut gn) = (0u64, 0u64);
        let flush = |out: &mut AucExact, gp: u64, gn: u64| {
            out.twice_concordant += gp as u128 * (2 * out.negatives as u128 + gn as u128);
            out.positives += gp;
            out.negatives += gn;
        };
        for (&(score, label), r) in values {
            if group != Some(score) {
                flush(&mut out, gp, gn);
                (gp, gn) = (0, 0);
                group = Some(score);
            }
            if label == 1 {
                gp += r as u64;
            } else {
                gn += r as u64;
            }
        }
        flush(&mut out, gp, gn);
        out
    }

    /// The AUC, if both classes are present.
    pub fn auc(&self) -> Option<f64> {
        (self.positives > 0 && self.negatives > 0).then(|| {
            self.twice_concordant as f64 / (2.0 * self.positives as f64 * self.negatives as f64)
        })
    }
}

/// One value of the quality changelog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualityRow {
    /// Which window, segment and model.
    pub key: QKey,
    /// Window status.
    pub status: Status,
    /// The aggregates.
    pub agg: QualityAgg,
    /// The exact AUC, once the window is final.
    pub exact: Option<AucExact>,
}

impl QualityRow {
    /// Share of predictions correct at the threshold.
    pub fn accuracy(&self) -> Option<f64> {
        let a = &self.agg;
        (a.count > 0).then(|| a.correct as f64 / a.count as f64)
    }

    /// Mean log-loss.
    pub fn log_loss(&self) -> Option<f64> {
        let a = &self.agg;
        (a.count > 0).then(|| a.logloss_nano as f64 / 1e9 / a.count as f64)
    }

    /// Mean Brier score.
    pub fn brier(&self) -> Option<f64> {
        let a = &self.agg;
        (a.count > 0).then(|| a.brier_nano as f64 / 1e9 / a.count as f64)
    }

    /// The AUC (exact once final, binned before) and the method that gave it.
    pub fn auc(&self) -> (Option<f64>, &'static str) {
        match &self.exact {
            Some(e) => (e.auc(), "exact"),
            None => (self.agg.binned_auc(), "binned"),
        }
    }
}

/// Log-loss of one prediction in 1e-9 units, probabilities clipped to [1e-15, 1 - 1e-15].
pub fn logloss_nano(score: i64, label: u8) -> i64 {
    let p = (score as f64 / MICRO as f64).clamp(1e-15, 1.0 - 1e-15);
    let l = if label == 1 { -p.ln() } else { -(1.0 - p).ln() };
    (l * 1e9).round() as i64
}

/// Squared error of one prediction in 1e-9 units.
pub fn brier_nano(score: i64, label: u8) -> i64 {
    let d = (score - label as i64 * MICRO) as i128;
    ((d * d + 500) / 1000) as i64
}

/// Index of `score` (micro-units) among `bins` equal-width bins of [0, 1].
pub fn bin_of(score: i64, bins: u32) -> u16 {
    ((score as i128 * bins as i128 / MICRO as i128) as u32).min(bins - 1) as u16
}

/// The accumulator of one quality pane (or a delta to it): the component sums, the binned
/// counts, and every score with its label counts for the exact AUC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct QualityPane {
    /// [count, positives, predicted positive, correct, log-loss nano, Brier nano].
    sums: [i64; 6],
    /// Per AUC bin: [positives, negatives, sum of scores] (calibration bins group them).
    bins: BTreeMap<u16, [i64; 3]>,
    /// Score → [negatives, positives].
    scores: BTreeMap<i64, [i64; 2]>,
}

impl PaneAcc for QualityPane {
    fn held(&self) -> usize {
        1 + self.bins.len() + self.scores.len()
    }

    fn merge(&mut self, d: &Self) {
        for (a, b) in self.sums.iter_mut().zip(d.sums) {
            *a += b;
        }
        for (b, c) in &d.bins {
            let e = self.bins.entry(*b).or_default();
            for (x, y) in e.iter_mut().zip(c) {
                *x += y;
            }
            if *e == [0; 3] {
                self.bins.remove(b);
            }
        }
        for (score, c) in &d.scores {
            let e = self.scores.entry(*score).or_default();
            e[0] += c[0];
            e[1] += c[1];
            if *e == [0, 0] {
                self.scores.remove(score);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.sums == [0; 6] && self.scores.is_empty()
    }
}

/// Fixed parameters of the quality aggregation.
#[derive(Debug, Clone, Copy)]
pub struct QualityParams {
    /// Classification threshold, micro-units.
    pub threshold: i64,
    /// Calibration bins.
    pub cal_bins: u32,
    /// AUC bins (a multiple of the calibration bins).
    pub auc_bins: u32,
}

impl QualityParams {
    /// The job's quality parameters.
    pub fn new(m: &crate::config::MetricsSpec) -> QualityParams {
        QualityParams {
            threshold: (m.threshold * MICRO as f64).round() as i64,
            cal_bins: m.calibration_bins,
            auc_bins: m.auc_bins,
        }
    }
}

impl QualityPane {
    /// Adds `r` predictions of `score` with `label`.
    pub fn add(&mut self, q: &QualityParams, score: i64, label: u8, r: i64) {
        let predicted = (score >= q.threshold) as u8;
        let one = [
            1,
            label as i64,
            predicted as i64,
            (predicted == label) as i64,
            logloss_nano(score, label),
            brier_nano(score, label),
        ];
        for (a, b) in self.sums.iter_mut().zip(one) {
            *a += b * r;
        }
        let b = bin_of(score, q.auc_bins);
        let e = self.bins.entry(b).or_default();
        e[(label != 1) as usize] += r;
        e[2] += score * r;
        if *e == [0; 3] {
            self.bins.remove(&b);
        }
        let e = self.scores.entry(score).or_default();
        e[label.min(1) as usize] += r;
        if *e == [0, 0] {
            self.scores.remove(&score);
        }
    }
}

/// Renders quality rows of windows from their panes.
struct QualityRender {
    params: QualityParams,
}

impl Render for QualityRender {
    type Group = (Arc<str>, Arc<str>);
    type Acc = QualityPane;
    type Row = QualityRow;

    fn render(
        &self,
        (segment, model): &(Arc<str>, Arc<str>),
        win: Win,
        status: Status,
        panes: &[&QualityPane],
        out: &mut Vec<QualityRow>,
    ) {
        let q = &self.params;
        let per_cal = (q.auc_bins / q.cal_bins) as usize;
        let mut a = QualityAgg {
            calibration: vec![(0, 0, 0); q.cal_bins as usize],
            auc_positive: vec![0; q.auc_bins as usize],
            auc_negative: vec![0; q.auc_bins as usize],
            ..Default::default()
        };
        for p in panes {
            let s = p.sums;
            a.count += s[0];
            a.positives += s[1];
            a.predicted_positive += s[2];
            a.correct += s[3];
            a.logloss_nano += s[4];
            a.brier_nano += s[5];
            for (b, [pos, neg, score]) in &p.bins {
                let b = *b as usize;
                let c = &mut a.calibration[b / per_cal];
                c.0 += pos + neg;
                c.1 += score;
                c.2 += pos;
                a.auc_positive[b] += pos;
                a.auc_negative[b] += neg;
            }
        }
        if a.count <= 0 {
            return;
        }
        let exact = (status == Status::Final).then(|| {
            let maps: Vec<&BTreeMap<i64, [i64; 2]>> = panes.iter().map(|p| &p.scores).collect();
            let mut e = AucExact {
                positives: 0,
                negatives: 0,
                twice_concordant: 0,
            };
            let add = |a: &mut [i64; 2], b: &[i64; 2]| {
                a[0] += b[0];
                a[1] += b[1];
            };
            merge_sorted(&maps, add, |_, [neg, pos]| {
                let (gp, gn) = (pos as u64, neg as u64);
                e.twice_concordant += gp as u128 * (2 * e.negatives as u128 + gn as u128);
                e.positives += gp;
                e.negatives += gn;
            });
            e
        });
        out.push(QualityRow {
            key: QKey {
                win,
                segment: segment.to_string(),
                model: model.to_string(),
            },
            status,
            agg: a,
            exact,
        });
    }

    fn tombstone(&self, row: &QualityRow) -> Option<QualityRow> {
        (row.status == Status::Final).then(|| QualityRow {
            status: Status::Retired,
            ..row.clone()
        })
    }
}

/// Builds the quality changelog from labeled predictions.
pub fn quality<'s>(
    job: &Job,
    panes: &Panes,
    labeled: VecCollection<'s, u64, Labeled>,
) -> VecCollection<'s, u64, QualityRow> {
    let name = &job.spec.name;
    let params = QualityParams::new(&job.spec.metrics);
    debug_assert_eq!(
        params.auc_bins % params.cal_bins,
        0,
        "validated: calibration bins group AUC bins"
    );
    let panes = panes.clone();
    let p = panes.clone();
    let mut names = Names::new(job);
    let mut segments = Vec::new();
    let deltas = pre_aggregate(
        labeled,
        &format!("{name}.QualityPre"),
        &panes,
        move |(e, pr, l): &Labeled, r, emit| {
            let pane = p.pane_of(e.time);
            names.segments(e, &mut segments);
            let model = names.model(&pr.model);
            for segment in &segments {
                emit(
                    (segment.clone(), model.clone()),
                    pane,
                    &mut |a: &mut QualityPane| a.add(&params, pr.score, l.label, r as i64),
                );
            }
        },
    );
    let cap = job.spec.limits.clone().unwrap_or_default().segment_values();
    let deltas = admit(deltas, &format!("{name}.QualityCap"), panes.clone(), cap);
    assemble(
        deltas,
        &format!("{name}.QualityWindows"),
        panes,
        QualityRender { params },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_auc_counts_ties_half() {
        // scores: neg 0.1, pos 0.4, neg 0.4, pos 0.8 -> pairs: (0.4p>0.1n)=1, (0.4p=0.4n)=.5,
        // (0.8p>0.1n)=1, (0.8p>0.4n)=1 -> 3.5 / 4.
        let v = [
            ((100_000i64, 0u8), 1isize),
            ((400_000, 0), 1),
            ((400_000, 1), 1),
            ((800_000, 1), 1),
        ];
        let a = AucExact::from_sorted(v.iter().map(|(x, r)| (x, *r)));
        assert_eq!((a.positives, a.negatives, a.twice_concordant), (2, 2, 7));
        assert_eq!(a.auc(), Some(0.875));
    }

    #[test]
    fn loss_units() {
        assert_eq!(brier_nano(250_000, 1), 562_500_000);
        assert_eq!(logloss_nano(500_000, 0), 693_147_181);
        assert_eq!(bin_of(1_000_000, 10), 9);
        assert_eq!(bin_of(99_999, 10), 0);
    }
}
