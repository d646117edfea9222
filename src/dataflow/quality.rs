//! Quality metrics of the production predictions per window × segment × model version.
//!
//! Semantics: count, positives, accuracy at the job's threshold, log-loss, Brier score,
//! calibration bins and AUC over the labeled predictions of each window (by event time).
//! Time: sums live in fixed-point diffs (log-loss and Brier in 1e-9 units), so any worker count
//! adds the same integers. The provisional AUC comes from score-bin counts; once the window is
//! final, the exact AUC is computed from the window's sorted scores, once, and again only if a
//! late record amends the window. State: per window key, the component counts and (after
//! finality) the scores; everything leaves state when the window retires.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::join::Labeled;
use super::sums::Sums;
use super::temporal::{delay_to, expire_at, retirements};
use super::windows::{window_segments, Status, Win, Windows};
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

/// Builds the quality changelog from labeled predictions.
pub fn quality<'s>(
    job: &Job,
    windows: &Windows,
    labeled: VecCollection<'s, u64, Labeled>,
) -> VecCollection<'s, u64, QualityRow> {
    let name = &job.spec.name;
    let m = &job.spec.metrics;
    let threshold = (m.threshold * MICRO as f64).round() as i64;
    let (cal_bins, auc_bins) = (m.calibration_bins, m.auc_bins);
    debug_assert_eq!(
        auc_bins % cal_bins,
        0,
        "validated: calibration bins group AUC bins"
    );

    let w = windows.clone();
    let j = job.clone();
    let keyed = labeled.flat_map(move |(e, p, l)| {
        window_segments(&w, &j, &e)
            .into_iter()
            .map(|(win, segment)| {
                (
                    QKey {
                        win,
                        segment,
                        model: p.model.clone(),
                    },
                    (p.score, l.label),
                )
            })
            .collect::<Vec<_>>()
    });
    let w = windows.clone();
    let keyed = expire_at(keyed, &format!("{name}.QualityRetire"), move |(k, _)| {
        w.retire_at(&k.win)
    });

    // One update per example and key: the score bin is the value, the sums ride in the diff
    // [count, positives, predicted positive, correct, log-loss, Brier, score].
    let binned = keyed.clone().explode(move |(k, (score, label))| {
        let predicted = (score >= threshold) as u8;
        let sums = Sums([
            1,
            label as i64,
            predicted as i64,
            (predicted == label) as i64,
            logloss_nano(score, label),
            brier_nano(score, label),
            score,
        ]);
        Some(((k, bin_of(score, auc_bins)), sums))
    });
    let per_cal = (auc_bins / cal_bins) as usize;
    let aggs = binned.reduce_named(
        &format!("{name}.QualityAssemble"),
        move |_k, input, output: &mut Vec<(QualityAgg, isize)>| {
            let mut a = QualityAgg {
                calibration: vec![(0, 0, 0); cal_bins as usize],
                auc_positive: vec![0; auc_bins as usize],
                auc_negative: vec![0; auc_bins as usize],
                ..Default::default()
            };
            for (bin, Sums([n, pos, pred, correct, ll, br, score])) in input {
                let b = **bin as usize;
                a.count += n;
                a.positives += pos;
                a.predicted_positive += pred;
                a.correct += correct;
                a.logloss_nano += ll;
                a.brier_nano += br;
                let c = &mut a.calibration[b / per_cal];
                c.0 += n;
                c.1 += score;
                c.2 += pos;
                a.auc_positive[b] += pos;
                a.auc_negative[b] += n - pos;
            }
            if a.count > 0 {
                output.push((a, 1));
            }
        },
    );

    let w = windows.clone();
    let scores_final = delay_to(keyed, &format!("{name}.AucWait"), move |(k, _)| {
        w.final_at(&k.win)
    });
    let exact = scores_final.reduce_named(&format!("{name}.AucExact"), |_k, input, output| {
        output.push((
            AucExact::from_sorted(input.iter().map(|(v, r)| (*v, *r))),
            1,
        ));
    });

    let w = windows.clone();
    let provisional = expire_at(
        aggs.clone(),
        &format!("{name}.QualityProvisional"),
        move |(k, _)| w.final_at(&k.win),
    )
    .map(|(key, agg)| QualityRow {
        key,
        status: Status::Provisional,
        agg,
        exact: None,
    });
    let w = windows.clone();
    let final_rows = delay_to(aggs, &format!("{name}.QualityFinal"), move |(k, _)| {
        w.final_at(&k.win)
    })
    .join(exact)
    .map(|(key, (agg, exact))| QualityRow {
        key,
        status: Status::Final,
        agg,
        exact: Some(exact),
    });
    let w = windows.clone();
    let retired = retirements(
        final_rows.clone(),
        &format!("{name}.QualityRetired"),
        move |r: &QualityRow| w.retire_at(&r.key.win),
        |r| QualityRow {
            status: Status::Retired,
            ..r.clone()
        },
    );
    provisional.concat(final_rows).concat(retired)
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
