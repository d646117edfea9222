//! Quality metrics of the production predictions per window × segment × model version.
//!
//! Semantics: count, positives, accuracy at the job's threshold, log-loss, Brier score,
//! calibration bins and AUC over the labeled predictions of each window (by event time).
//! Time: each labeled prediction updates one pane per segment (see [`super::panes`]); sums are
//! fixed-point integers (log-loss and Brier in 1e-9 units), so any worker count adds the same
//! integers. The provisional AUC comes from score-bin counts; a final window's exact AUC comes
//! from its panes' score histograms, merged in score order when it is first rendered final and
//! then kept up to date from the deltas of its panes ([`ExactIndex`]).
//! State: per pane, segment and model, the sums, the score bins and every score with its label
//! counts; per large final window, its exact-AUC index (bucket counts); a pane leaves state when
//! the last window containing it retires.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::cardinality::admit;
use super::join::Labeled;
use super::panes::{assemble, ident, merge_sorted, pre_aggregate, PaneAcc, Panes, Render, Tally};
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
    bins: Tally<u16, 3>,
    /// Score → [negatives, positives].
    scores: Tally<i64, 2>,
}

impl PaneAcc for QualityPane {
    fn held(&self) -> usize {
        1 + self.bins.len() + self.scores.len()
    }

    fn merge(&mut self, d: &Self) {
        for (a, b) in self.sums.iter_mut().zip(d.sums) {
            *a += b;
        }
        self.bins.merge(&d.bins);
        // Read only by final windows' exact AUC, which reads the runs.
        self.scores.merge_lazily(&d.scores);
    }

    fn is_empty(&self) -> bool {
        self.sums == [0; 6] && self.scores.is_empty()
    }

    fn seal(&mut self) {
        self.bins.seal();
        self.scores.seal();
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

/// What one labeled prediction adds to a quality pane, computed once for all its segments.
#[derive(Debug, Clone, Copy)]
pub struct Contribution {
    sums: [i64; 6],
    bin: (u16, [i64; 3]),
    score: (i64, [i64; 2]),
}

impl Contribution {
    /// `r` predictions of `score` with `label`.
    pub fn new(q: &QualityParams, score: i64, label: u8, r: i64) -> Contribution {
        let predicted = (score >= q.threshold) as u8;
        let one = [
            1,
            label as i64,
            predicted as i64,
            (predicted == label) as i64,
            logloss_nano(score, label),
            brier_nano(score, label),
        ];
        let mut bin = [0, 0, score * r];
        bin[(label != 1) as usize] = r;
        let mut counts = [0; 2];
        counts[label.min(1) as usize] = r;
        Contribution {
            sums: one.map(|x| x * r),
            bin: (bin_of(score, q.auc_bins), bin),
            score: (score, counts),
        }
    }
}

impl QualityPane {
    /// Adds a labeled prediction's contribution.
    pub fn add(&mut self, c: &Contribution) {
        for (a, b) in self.sums.iter_mut().zip(c.sums) {
            *a += b;
        }
        self.bins.push(c.bin.0, c.bin.1);
        self.scores.push(c.score.0, c.score.1);
    }
}

/// Renders quality rows of windows from their panes.
struct QualityRender {
    params: QualityParams,
    /// Final windows with at least this many distinct scores keep an [`ExactIndex`].
    index_from: usize,
}

/// Distinct scores from which a final window keeps its exact AUC up to date incrementally
/// rather than re-merging its panes' scores at every render.
const INDEX_FROM: usize = 1024;

/// Scores per bucket of the exact-AUC index, as a shift: 256 micro-units.
const BUCKET_SHIFT: u32 = 8;

/// Buckets of the exact-AUC index (scores outside [0, 1] fall into the first or last).
const BUCKETS: usize = (MICRO as usize >> BUCKET_SHIFT) + 1;

/// The bucket of `score`.
fn bucket(score: i64) -> usize {
    (score.clamp(0, MICRO) >> BUCKET_SHIFT) as usize
}

/// The lowest score in bucket `b`.
fn bucket_floor(b: usize) -> i64 {
    if b == 0 {
        i64::MIN
    } else {
        (b as i64) << BUCKET_SHIFT
    }
}

/// What a quality window keeps between renders: once final and large, its exact AUC and an
/// index to update it.
#[derive(Debug, Default)]
pub struct ExactMemo(Option<ExactIndex>);

/// The exact AUC of a final window, kept up to date by the score deltas of its panes.
///
/// Twice the concordant pairs is a bilinear form `B(P, N)` of the positives' and negatives'
/// score counts, so a delta `(ΔP, ΔN)` that is already in the panes changes it by
/// `B(ΔP, N) + B(P, ΔN) − B(ΔP, ΔN)`: for each delta score, the window's negatives below it
/// and positives above it. Those come from a Fenwick tree over score buckets plus the panes'
/// scores inside the score's own bucket, so a render costs the delta's size times a bucket,
/// not the window's size (re-merging every final window's scores at every render was three
/// quarters of `…QualityWindows` at 300k bench events). Integer arithmetic: the result is the
/// full recomputation's, exactly.
#[derive(Debug)]
struct ExactIndex {
    /// Fenwick tree (1-based) over buckets of `[negatives, positives]`.
    tree: Vec<[i64; 2]>,
    /// All `[negatives, positives]`.
    totals: [i64; 2],
    /// Twice the concordant pairs, ties counting one.
    twice: i128,
    /// Score deltas merged into the panes since the last render: score → [neg, pos].
    pending: BTreeMap<i64, [i64; 2]>,
}

impl ExactIndex {
    /// The index of a window whose scores, in order, are `scores` and whose exact AUC is `e`.
    fn new(scores: &[(i64, [i64; 2])], e: &AucExact) -> ExactIndex {
        let mut tree = vec![[0i64; 2]; BUCKETS + 1];
        for (s, c) in scores {
            let node = &mut tree[bucket(*s) + 1];
            node[0] += c[0];
            node[1] += c[1];
        }
        // Linear construction: each node passes its sum to its parent.
        for i in 1..=BUCKETS {
            let j = i + (i & i.wrapping_neg());
            if j <= BUCKETS {
                let v = tree[i];
                tree[j][0] += v[0];
                tree[j][1] += v[1];
            }
        }
        ExactIndex {
            tree,
            totals: [e.negatives as i64, e.positives as i64],
            twice: e.twice_concordant as i128,
            pending: BTreeMap::new(),
        }
    }

    fn add(&mut self, b: usize, c: [i64; 2]) {
        let mut i = b + 1;
        while i <= BUCKETS {
            self.tree[i][0] += c[0];
            self.tree[i][1] += c[1];
            i += i & i.wrapping_neg();
        }
    }

    /// `[negatives, positives]` in buckets below `b`.
    fn below_bucket(&self, b: usize) -> [i64; 2] {
        let (mut out, mut i) = ([0i64; 2], b);
        while i > 0 {
            out[0] += self.tree[i][0];
            out[1] += self.tree[i][1];
            i -= i & i.wrapping_neg();
        }
        out
    }

    /// Applies the pending deltas, which `panes` already hold.
    fn apply(&mut self, panes: &[&QualityPane]) {
        let pending = std::mem::take(&mut self.pending);
        for (s, c) in &pending {
            self.add(bucket(*s), *c);
            self.totals[0] += c[0];
            self.totals[1] += c[1];
        }
        let mut d: i128 = 0;
        for (s, [dn, dp]) in &pending {
            let b = bucket(*s);
            let mut below = self.below_bucket(b);
            let mut at = [0i64; 2];
            for p in panes {
                let (c, e) = p.scores.below_and_at(bucket_floor(b), *s);
                below[0] += c[0];
                below[1] += c[1];
                at[0] += e[0];
                at[1] += e[1];
            }
            let above_pos = self.totals[1] - below[1] - at[1];
            d += *dp as i128 * (2 * below[0] as i128 + at[0] as i128);
            d += *dn as i128 * (2 * above_pos as i128 + at[1] as i128);
        }
        // Pairs inside the delta were counted from both sides.
        let mut neg_below = 0i128;
        for [dn, dp] in pending.values() {
            d -= *dp as i128 * (2 * neg_below + *dn as i128);
            neg_below += *dn as i128;
        }
        self.twice += d;
    }

    /// The exact AUC, if every count is non-negative (it is, for a window's real contents).
    fn exact(&self) -> Option<AucExact> {
        Some(AucExact {
            negatives: u64::try_from(self.totals[0]).ok()?,
            positives: u64::try_from(self.totals[1]).ok()?,
            twice_concordant: u128::try_from(self.twice).ok()?,
        })
    }
}

impl QualityRender {
    /// The exact AUC of a final window of `panes`, from its memo when it has one.
    fn exact(&self, panes: &[&QualityPane], memo: &mut ExactMemo) -> AucExact {
        if let Some(index) = &mut memo.0 {
            index.apply(panes);
            if let Some(e) = index.exact() {
                return e;
            }
        }
        let runs: Vec<_> = panes
            .iter()
            .flat_map(|p| p.scores.runs())
            .filter(|r| !r.is_empty())
            .map(|r| r.iter().copied())
            .collect();
        let mut e = AucExact {
            positives: 0,
            negatives: 0,
            twice_concordant: 0,
        };
        let add = |a: &mut [i64; 2], b: &[i64; 2]| {
            a[0] += b[0];
            a[1] += b[1];
        };
        let mut scores = Vec::with_capacity(panes.iter().map(|p| p.scores.len()).sum());
        merge_sorted(runs, add, |s, [neg, pos]| {
            if neg == 0 && pos == 0 {
                // Counts of a score in lazily merged runs that cancel.
                return;
            }
            let (gp, gn) = (pos as u64, neg as u64);
            e.twice_concordant += gp as u128 * (2 * e.negatives as u128 + gn as u128);
            e.positives += gp;
            e.negatives += gn;
            scores.push((s, [neg, pos]));
        });
        memo.0 = (scores.len() >= self.index_from).then(|| ExactIndex::new(&scores, &e));
        e
    }
}

impl Render for QualityRender {
    type Group = (Arc<str>, Arc<str>);
    type Acc = QualityPane;
    type Row = QualityRow;
    type Memo = ExactMemo;

    fn render(
        &self,
        group: &(Arc<str>, Arc<str>),
        win: Win,
        status: Status,
        panes: &[&QualityPane],
        out: &mut Vec<QualityRow>,
    ) {
        self.render_with(group, win, status, panes, &mut ExactMemo::default(), out)
    }

    fn absorb(&self, memo: &mut ExactMemo, delta: &QualityPane) {
        if let Some(index) = &mut memo.0 {
            for (s, c) in delta.scores.iter() {
                let e = index.pending.entry(*s).or_default();
                e[0] += c[0];
                e[1] += c[1];
                if *e == [0, 0] {
                    index.pending.remove(s);
                }
            }
        }
    }

    fn render_with(
        &self,
        (segment, model): &(Arc<str>, Arc<str>),
        win: Win,
        status: Status,
        panes: &[&QualityPane],
        memo: &mut ExactMemo,
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
            for (b, [pos, neg, score]) in p.bins.iter() {
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
        let exact = (status == Status::Final).then(|| self.exact(panes, memo));
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
            let c = Contribution::new(&params, pr.score, l.label, r as i64);
            for segment in &segments {
                emit(
                    (ident(segment), ident(&model)),
                    &|| (segment.clone(), model.clone()),
                    pane,
                    &mut |a: &mut QualityPane| a.add(&c),
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
        QualityRender {
            params,
            index_from: INDEX_FROM,
        },
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

    proptest::proptest! {
        /// A final window's exact AUC kept up to date from pane deltas (additions and
        /// retractions, ties included) equals its recomputation from the panes at every render.
        #[test]
        fn incremental_exact_auc_equals_recomputation(
            rounds in proptest::collection::vec(
                proptest::collection::vec((0usize..3, 0i64..=MICRO, 0u8..2, 0u8..4), 0..40),
                1..6,
            ),
            spread in proptest::prop_oneof![proptest::strategy::Just(3000i64), proptest::strategy::Just(MICRO + 1)],
        ) {
            let q = QualityParams { threshold: 500_000, cal_bins: 10, auc_bins: 200 };
            let render = QualityRender { params: q, index_from: 0 };
            let group: (Arc<str>, Arc<str>) = (Arc::from("all"), Arc::from("m"));
            let win = Win { family: 0, start: 0, end: 300 };
            let mut panes = vec![QualityPane::default(); 3];
            let mut added: Vec<(usize, i64, u8)> = Vec::new();
            let mut memo = ExactMemo::default();
            for round in rounds {
                for (pane, score, label, op) in round {
                    // One op in four retracts an earlier prediction.
                    let (pane, score, label, r) = if op == 0 && !added.is_empty() {
                        let (p, s, l) = added.swap_remove(score as usize % added.len());
                        (p, s, l, -1)
                    } else {
                        added.push((pane, score % spread, label));
                        (pane, score % spread, label, 1)
                    };
                    let mut delta = QualityPane::default();
                    delta.add(&Contribution::new(&q, score, label, r));
                    delta.seal();
                    panes[pane].merge(&delta);
                    render.absorb(&mut memo, &delta);
                }
                let parts: Vec<&QualityPane> = panes.iter().filter(|p| !p.is_empty()).collect();
                let (mut got, mut want) = (Vec::new(), Vec::new());
                render.render_with(&group, win, Status::Final, &parts, &mut memo, &mut got);
                render.render(&group, win, Status::Final, &parts, &mut want);
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn loss_units() {
        assert_eq!(brier_nano(250_000, 1), 562_500_000);
        assert_eq!(logloss_nano(500_000, 0), 693_147_181);
        assert_eq!(bin_of(1_000_000, 10), 9);
        assert_eq!(bin_of(99_999, 10), 0);
    }
}
