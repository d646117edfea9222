//! Drift per window × segment × feature against the job's reference profile.
//!
//! Semantics: every monitored event feature (and the production score, per model version) of
//! the events in a window (by event time) is compared with the reference: PSI and
//! Jensen–Shannon over the reference's quantile bins, KS and Wasserstein-1 for numeric values,
//! chi-square, PSI and the unseen-category rate for categorical ones, null rate and a
//! constant-feature flag for all. Time: each record adds one count to its feature's fine
//! reference bin in one pane per segment, and an open window's statistics come from those counts
//! (`binned`); when the window becomes final, KS and Wasserstein are computed from the window's
//! sorted values, merged from its panes (`exact`, or `sketch` when the reference itself is a
//! sketch), and again only if a late record amends the window. State: per pane, segment, feature
//! and model, the bin counts, category counts and every numeric value with its count, until the
//! last window containing the pane retires; the segments of a column beyond `[limits]`'s cap
//! fold into `<column>=__other__` (`…DriftCap`).

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::join::Joined;
use super::panes::{assemble, ident, pre_aggregate, PaneAcc, Panes, Render, Tally};
use super::windows::{Names, Status, Win, ALL};
use crate::drift::profile::{cell_of, NumericRef};
use crate::drift::spec::{Severity, Statistic};
use crate::drift::stats::{
    chi2_homogeneity, js_distance, ks_from_numerator, ks_numerator, psi,
    wasserstein_from_numerator, wasserstein_numerator,
};
use crate::drift::{Drift, FeatureKind};

/// Key of a drift row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DKey {
    /// The window (by event time).
    pub win: Win,
    /// `all` or `column=value` (shared: every key of a record holds the same few names).
    pub segment: Arc<str>,
    /// Index into the job's monitored features.
    pub feature: u16,
    /// Model version (the score only; empty for event features).
    pub model: Arc<str>,
}

/// What one value of a feature counts towards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Cell {
    /// A null.
    Null,
    /// A numeric value in this fine reference bin.
    Bin(u32),
    /// A categorical value.
    Cat(Arc<str>),
}

/// Counts of one drift key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct DriftAgg {
    /// Null values.
    pub nulls: u64,
    /// Numeric: values per fine reference bin (empty for categorical features). Shared: a
    /// row is kept as its window's last row and travels to several consumers, and its bins
    /// (thousands) were most of those copies' memory.
    pub cells: std::sync::Arc<[u64]>,
    /// Categorical: values per category, by name.
    pub cats: Vec<(String, u64)>,
}

impl DriftAgg {
    /// Non-null values.
    pub fn n(&self) -> u64 {
        self.cells.iter().sum::<u64>() + self.cats.iter().map(|c| c.1).sum::<u64>()
    }
}

/// KS and Wasserstein of a final window's numeric values against the reference, as exact
/// integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExactNumeric {
    /// Non-null values.
    pub n: u64,
    /// Distinct non-null values.
    pub distinct: u64,
    /// KS statistic × n × reference n.
    pub ks: u128,
    /// Wasserstein-1 (micro-units) × n × reference n.
    pub wasserstein: u128,
}

/// One value of the drift changelog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DriftRow {
    /// Which window, segment, feature and model.
    pub key: DKey,
    /// Window status.
    pub status: Status,
    /// The counts.
    pub agg: DriftAgg,
    /// Exact numeric statistics, once the window is final.
    pub exact: Option<ExactNumeric>,
}

/// How a row's statistics were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Method {
    /// From bin counts (an open window).
    Binned,
    /// From the window's values against every reference value.
    Exact,
    /// From the window's values against a sketch of the reference.
    Sketch,
}

impl Method {
    /// The name written to outputs.
    pub fn name(self) -> &'static str {
        match self {
            Method::Binned => "binned",
            Method::Exact => "exact",
            Method::Sketch => "sketch",
        }
    }
}

/// The statistics of one drift row; `None` where a statistic does not apply or has no data.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DriftStats {
    /// Non-null values.
    pub count: u64,
    /// Null values.
    pub nulls: u64,
    /// Share of nulls.
    pub null_rate: Option<f64>,
    /// All values equal while the reference's are not.
    pub constant: Option<bool>,
    /// Population stability index.
    pub psi: Option<f64>,
    /// Jensen–Shannon distance.
    pub js_distance: Option<f64>,
    /// KS statistic.
    pub ks: Option<f64>,
    /// KS p-value.
    pub ks_p_value: Option<f64>,
    /// Wasserstein-1 distance.
    pub wasserstein: Option<f64>,
    /// Chi-square statistic.
    pub chi2: Option<f64>,
    /// Chi-square degrees of freedom.
    pub chi2_dof: Option<u64>,
    /// Chi-square p-value.
    pub chi2_p_value: Option<f64>,
    /// Share of values in categories the reference never saw.
    pub unseen_rate: Option<f64>,
}

impl DriftStats {
    /// The value of `s`, if present.
    pub fn get(&self, s: Statistic) -> Option<f64> {
        match s {
            Statistic::Psi => self.psi,
            Statistic::Ks => self.ks,
            Statistic::KsPValue => self.ks_p_value,
            Statistic::Wasserstein => self.wasserstein,
            Statistic::JsDistance => self.js_distance,
            Statistic::Chi2 => self.chi2,
            Statistic::Chi2PValue => self.chi2_p_value,
            Statistic::UnseenRate => self.unseen_rate,
            Statistic::NullRate => self.null_rate,
            Statistic::Constant => self.constant.map(|c| c as u8 as f64),
        }
    }
}

/// Sums consecutive groups of `fine` counts into `groups` coarse bins.
fn coarse(fine: &[u64], groups: usize) -> Vec<u64> {
    let per = fine.len().div_ceil(groups).max(1);
    fine.chunks(per).map(|c| c.iter().sum()).collect()
}

/// The reference of a numeric or score feature.
fn numeric_ref(drift: &Drift, feature: u16) -> Option<&NumericRef> {
    let f = &drift.features[feature as usize];
    match f.kind {
        FeatureKind::Numeric(_) => drift.profile.numeric.get(&f.name),
        FeatureKind::Score => drift.profile.score.as_ref(),
        FeatureKind::Categorical(_) => None,
    }
}

impl DriftRow {
    /// How its statistics are computed.
    pub fn method(&self, drift: &Drift) -> Method {
        match (&self.exact, numeric_ref(drift, self.key.feature)) {
            (Some(_), Some(r)) if !r.exact => Method::Sketch,
            (Some(_), _) => Method::Exact,
            (None, Some(_)) => Method::Binned,
            // Categorical statistics are exact from the counts.
            (None, None) => Method::Exact,
        }
    }

    /// Its statistics against `drift`'s reference.
    pub fn stats(&self, drift: &Drift) -> DriftStats {
        let a = &self.agg;
        let n = a.n();
        let mut s = DriftStats {
            count: n,
            nulls: a.nulls,
            null_rate: (n + a.nulls > 0).then(|| a.nulls as f64 / (n + a.nulls) as f64),
            ..Default::default()
        };
        let bins = drift.spec.bins as usize;
        let f = &drift.features[self.key.feature as usize];
        if let Some(r) = numeric_ref(drift, self.key.feature) {
            let (rc, wc) = (coarse(&r.cells, bins), coarse(&a.cells, bins));
            s.psi = psi(&rc, &wc);
            s.js_distance = js_distance(&rc, &wc);
            if n == 0 || r.n == 0 {
                return s;
            }
            let ref_constant = r.values.len() == 1;
            match &self.exact {
                Some(e) => {
                    let d = ks_from_numerator(e.ks, e.n, r.n);
                    s.ks = Some(d);
                    s.ks_p_value =
                        Some(crate::drift::kolmogorov::ks_2samp_asymp_pvalue(d, e.n, r.n));
                    s.wasserstein = Some(wasserstein_from_numerator(e.wasserstein, e.n, r.n));
                    s.constant = Some(e.n >= 2 && e.distinct == 1 && !ref_constant);
                }
                None => {
                    // The empirical CDFs compared at the fine bin edges: a lower bound of KS.
                    // Wasserstein: between two edges the CDFs move from their values below the
                    // lower edge to those below the upper one; the trapezoid of the two
                    // differences approximates the integral (tails beyond the outer edges are
                    // left out).
                    let (mut cr, mut cw, mut best, mut w) = (0u64, 0u64, 0u128, 0u128);
                    let mut below: Option<u128> = None;
                    for k in 0..r.edges.len() {
                        cr += r.cells[k];
                        cw += a.cells[k];
                        let diff = (cr as u128 * n as u128).abs_diff(cw as u128 * r.n as u128);
                        best = best.max(diff);
                        if let Some(prev) = below {
                            let width = (r.edges[k] as i128 - r.edges[k - 1] as i128) as u128;
                            w += (prev + diff) * width / 2;
                        }
                        below = Some(diff);
                    }
                    let d = ks_from_numerator(best, r.n, n);
                    s.ks = Some(d);
                    s.ks_p_value = Some(crate::drift::kolmogorov::ks_2samp_asymp_pvalue(d, n, r.n));
                    s.wasserstein = Some(wasserstein_from_numerator(w, r.n, n));
                    // Bin counts cannot tell equal values from close ones: known once final.
                    s.constant = None;
                }
            }
        } else if let Some(r) = drift.profile.categorical.get(&f.name) {
            // The union of categories, in name order: reference ones, then unseen ones.
            let mut names: Vec<&str> = r.counts.keys().map(String::as_str).collect();
            names.extend(
                a.cats
                    .iter()
                    .map(|c| c.0.as_str())
                    .filter(|c| !r.counts.contains_key(*c)),
            );
            names.sort_unstable();
            let window = |c: &str| {
                a.cats
                    .binary_search_by(|x| x.0.as_str().cmp(c))
                    .map_or(0, |i| a.cats[i].1)
            };
            let rc: Vec<u64> = names
                .iter()
                .map(|c| r.counts.get(*c).copied().unwrap_or(0))
                .collect();
            let wc: Vec<u64> = names.iter().map(|c| window(c)).collect();
            s.psi = psi(&rc, &wc);
            s.js_distance = js_distance(&rc, &wc);
            if let Some(c) = chi2_homogeneity(&rc, &wc) {
                s.chi2 = Some(c.statistic);
                s.chi2_dof = Some(c.dof);
                s.chi2_p_value = Some(c.p_value);
            }
            if n > 0 {
                let unseen: u64 = a
                    .cats
                    .iter()
                    .filter(|c| !r.counts.contains_key(&c.0))
                    .map(|c| c.1)
                    .sum();
                s.unseen_rate = Some(unseen as f64 / n as f64);
                s.constant = Some(n >= 2 && a.cats.len() == 1 && r.counts.len() > 1);
            }
        }
        s
    }
}

/// One firing alert: a rule breached by a drift row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertRow {
    /// The drift row's key.
    pub key: DKey,
    /// The drift row's window status.
    pub status: Status,
    /// Index of the rule in `drift.alerts`.
    pub rule: u16,
    /// The statistic's value, as `f64` bits.
    pub value: u64,
    /// Values in the window.
    pub count: u64,
    /// Whether the statistic was binned, exact or against a sketch.
    pub method: Method,
}

impl AlertRow {
    /// The rule's statistic and severity.
    pub fn rule<'a>(&self, drift: &'a Drift) -> &'a crate::drift::spec::AlertRule {
        &drift.spec.alerts[self.rule as usize]
    }

    /// The severity.
    pub fn severity(&self, drift: &Drift) -> Severity {
        self.rule(drift).severity
    }
}

/// The alerts one drift row fires.
pub fn alerts_of(drift: &Drift, row: &DriftRow) -> Vec<AlertRow> {
    if drift.spec.alerts.is_empty() {
        return Vec::new();
    }
    let stats = row.stats(drift);
    let name = &drift.features[row.key.feature as usize].name;
    let method = row.method(drift);
    let mut out = Vec::new();
    for (i, rule) in drift.spec.alerts.iter().enumerate() {
        if !rule.features.is_empty() && !rule.features.contains(name) {
            continue;
        }
        if stats.count < rule.min_count {
            continue;
        }
        if let Some(v) = stats.get(rule.statistic).filter(|v| rule.breached(*v)) {
            out.push(AlertRow {
                key: row.key.clone(),
                status: row.status,
                rule: i as u16,
                value: v.to_bits(),
                count: stats.count,
                method,
            });
        }
    }
    out
}

/// The drift changelog and its alerts.
pub struct DriftOutputs<'s> {
    /// Drift rows.
    pub rows: VecCollection<'s, u64, DriftRow>,
    /// Firing alerts.
    pub alerts: VecCollection<'s, u64, AlertRow>,
}

/// The accumulator of one drift pane: nulls, fine-bin counts (numeric), category counts
/// (categorical), and every numeric value with its count for the exact statistics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct DriftPane {
    nulls: i64,
    cells: Tally<u32, 1>,
    cats: BTreeMap<crate::records::Text, i64>,
    values: Tally<i64, 1>,
}

fn add_to<K: Ord + Clone>(m: &mut BTreeMap<K, i64>, k: &K, r: i64) {
    let e = m.entry(k.clone()).or_default();
    *e += r;
    if *e == 0 {
        m.remove(k);
    }
}

impl PaneAcc for DriftPane {
    fn held(&self) -> usize {
        1 + self.cells.len() + self.cats.len() + self.values.len()
    }

    fn merge(&mut self, d: &Self) {
        self.nulls += d.nulls;
        self.cells.merge(&d.cells);
        for (k, n) in &d.cats {
            add_to(&mut self.cats, k, *n);
        }
        // Read only by final windows' exact statistics, which read the runs.
        self.values.merge_lazily(&d.values);
    }

    fn seal(&mut self) {
        self.cells.seal();
        self.values.seal();
    }

    fn is_empty(&self) -> bool {
        self.nulls == 0 && self.cells.is_empty() && self.cats.is_empty() && self.values.is_empty()
    }
}

/// Renders drift rows of windows from their panes.
struct DriftRender {
    drift: Arc<Drift>,
}

impl Render for DriftRender {
    type Group = (Arc<str>, u16, Arc<str>);
    type Memo = ();
    type Acc = DriftPane;
    type Row = DriftRow;

    fn render(
        &self,
        (segment, feature, model): &(Arc<str>, u16, Arc<str>),
        win: Win,
        status: Status,
        panes: &[&DriftPane],
        out: &mut Vec<DriftRow>,
    ) {
        let numeric = numeric_ref(&self.drift, *feature);
        let mut nulls = 0i64;
        let mut cells = vec![0i64; numeric.map_or(0, |r| r.cells.len())];
        let mut cats: BTreeMap<&str, i64> = BTreeMap::new();
        for p in panes {
            nulls += p.nulls;
            for (c, [n]) in p.cells.iter() {
                if let Some(a) = cells.get_mut(*c as usize) {
                    *a += n;
                }
            }
            for (k, n) in &p.cats {
                *cats.entry(k.as_str()).or_default() += n;
            }
        }
        cats.retain(|_, n| *n != 0);
        if nulls == 0 && cells.iter().all(|c| *c == 0) && cats.is_empty() {
            return;
        }
        let agg = DriftAgg {
            nulls: nulls as u64,
            cells: cells
                .into_iter()
                .map(|c| c as u64)
                .collect::<Vec<u64>>()
                .into(),
            cats: cats
                .into_iter()
                .map(|(k, n)| (k.to_string(), n as u64))
                .collect(),
        };
        let exact = match (status, numeric) {
            (Status::Final, Some(r)) => {
                let mut window: Vec<(i64, u64)> = Vec::new();
                let runs: Vec<_> = panes
                    .iter()
                    .flat_map(|p| p.values.runs())
                    .filter(|r| !r.is_empty())
                    .map(|r| r.iter().map(|(k, [v])| (*k, *v)))
                    .collect();
                super::panes::merge_sorted(
                    runs,
                    |a, b| *a += b,
                    |v, n| {
                        if n != 0 {
                            window.push((v, n as u64));
                        }
                    },
                );
                Some(ExactNumeric {
                    n: window.iter().map(|v| v.1).sum(),
                    distinct: window.len() as u64,
                    ks: ks_numerator(&window, &r.values),
                    wasserstein: wasserstein_numerator(&window, &r.values),
                })
            }
            _ => None,
        };
        out.push(DriftRow {
            key: DKey {
                win,
                segment: segment.clone(),
                feature: *feature,
                model: model.clone(),
            },
            status,
            agg,
            exact,
        });
    }

    fn tombstone(&self, row: &DriftRow) -> Option<DriftRow> {
        (row.status == Status::Final).then(|| DriftRow {
            status: Status::Retired,
            ..row.clone()
        })
    }
}

/// Whether drift reads predictions: the job watches the score and has a reference for it.
pub fn scores_wanted(drift: &Drift) -> bool {
    drift.features.iter().any(|f| f.kind == FeatureKind::Score) && drift.profile.score.is_some()
}

/// Builds the drift changelog and its alerts.
pub fn drift<'s>(
    name: &str,
    job: &crate::config::Job,
    drift: Arc<Drift>,
    panes: &Panes,
    joined: &Joined<'s>,
) -> DriftOutputs<'s> {
    let segments = drift.spec.segments;
    let all: Arc<str> = Arc::from(ALL);
    let none: Arc<str> = Arc::from("");
    let panes = panes.clone();
    let mut names = Names::new(job);
    let mut segs = Vec::new();
    // Each feature's fine bin edges and cell count, by feature index (None for categorical).
    let edges: Vec<Option<Vec<i64>>> = (0..drift.features.len())
        .map(|i| numeric_ref(&drift, i as u16).map(|r| r.edges.clone()))
        .collect();
    let score_feature = drift
        .features
        .iter()
        .position(|f| f.kind == FeatureKind::Score);
    let score_ref = score_feature
        .and(drift.profile.score.as_ref())
        .map(|r| r.edges.clone());
    // The join sends predictions only when a score reference exists (see `scores_wanted`).
    let all_in = joined.drift_inputs.clone();
    let (d, p) = (drift.clone(), panes.clone());
    let deltas = pre_aggregate(
        all_in,
        &format!("{name}.DriftPre"),
        &panes,
        move |(e, pred): &(super::join::Ev, Option<super::join::Pr>), r, emit| {
            let r = r as i64;
            let pane = p.pane_of(e.time);
            if segments {
                names.segments(e, &mut segs);
            } else {
                segs.clear();
                segs.push(all.clone());
            }
            if let Some(pred) = pred {
                let (Some(i), Some(edges)) = (score_feature, &score_ref) else {
                    return;
                };
                let model = names.model(&pred.model);
                let cell = cell_of(edges, pred.score);
                for s in &segs {
                    emit(
                        (ident(s), i as u16, ident(&model)),
                        &|| (s.clone(), i as u16, model.clone()),
                        pane,
                        &mut |a: &mut DriftPane| {
                            a.cells.push(cell, [r]);
                            a.values.push(pred.score, [r]);
                        },
                    );
                }
                return;
            }
            for (i, f) in d.features.iter().enumerate() {
                let feature = i as u16;
                match f.kind {
                    FeatureKind::Numeric(x) => {
                        let edges = edges[i]
                            .as_ref()
                            .expect("numeric features have a reference");
                        let v = e.numeric[x];
                        let cell = v.map(|v| cell_of(edges, v));
                        for s in &segs {
                            emit(
                                (ident(s), feature, ident(&none)),
                                &|| (s.clone(), feature, none.clone()),
                                pane,
                                &mut |a: &mut DriftPane| match (v, cell) {
                                    (Some(v), Some(c)) => {
                                        a.cells.push(c, [r]);
                                        a.values.push(v, [r]);
                                    }
                                    _ => a.nulls += r,
                                },
                            );
                        }
                    }
                    FeatureKind::Categorical(x) => {
                        let c = &e.categorical[x];
                        for s in &segs {
                            emit(
                                (ident(s), feature, ident(&none)),
                                &|| (s.clone(), feature, none.clone()),
                                pane,
                                &mut |a: &mut DriftPane| match c {
                                    Some(c) => add_to(&mut a.cats, c, r),
                                    None => a.nulls += r,
                                },
                            );
                        }
                    }
                    FeatureKind::Score => {}
                }
            }
        },
    );
    let cap = job.spec.limits.clone().unwrap_or_default().segment_values();
    let deltas = super::cardinality::admit(deltas, &format!("{name}.DriftCap"), panes.clone(), cap);
    let rows = assemble(
        deltas,
        &format!("{name}.DriftWindows"),
        panes,
        DriftRender {
            drift: drift.clone(),
        },
    );
    let d = drift.clone();
    let alerts = rows.clone().flat_map(move |r| alerts_of(&d, &r));
    DriftOutputs { rows, alerts }
}
