//! Reference profiles: what "no drift" looks like, computed once from reference data.
//!
//! Per numeric feature (and the prediction score): the reference's fine quantile bin edges, its
//! counts per fine bin, and its sorted values with counts (or, above a bound, a sketch of them);
//! per categorical feature: category counts; per feature: non-null and null counts. Values are
//! micro-units, as inside the dataflow, so a window's values are compared with the reference's
//! exactly.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::records::{Event, Prediction};

/// Version of the profile file format.
pub const FORMAT: u32 = 1;

/// The reference distribution of one numeric feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumericRef {
    /// Non-null values.
    pub n: u64,
    /// Null values.
    pub nulls: u64,
    /// Fine bin edges: the reference quantiles at k/fine_bins, k = 1..fine_bins.
    pub edges: Vec<i64>,
    /// Reference values per fine bin (`edges.len() + 1` bins).
    pub cells: Vec<u64>,
    /// Distinct values ascending, with counts (a sketch when `exact` is false).
    pub values: Vec<(i64, u64)>,
    /// Whether `values` holds every reference value.
    pub exact: bool,
}

impl NumericRef {
    /// The fine bin of `v`.
    pub fn cell(&self, v: i64) -> u32 {
        cell_of(&self.edges, v)
    }
}

/// The fine bin of `v` among sorted `edges`: how many edges are at or below it.
pub fn cell_of(edges: &[i64], v: i64) -> u32 {
    edges.partition_point(|e| *e <= v) as u32
}

/// The reference distribution of one categorical feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoricalRef {
    /// Non-null values.
    pub n: u64,
    /// Null values.
    pub nulls: u64,
    /// Count per category.
    pub counts: BTreeMap<String, u64>,
}

/// A saved reference profile (`tidemark profile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// File format version.
    pub format: u32,
    /// What it was computed from.
    pub source: String,
    /// Events profiled.
    pub events: u64,
    /// Predictions profiled.
    pub predictions: u64,
    /// Number of fine bins per numeric feature.
    pub fine_bins: u32,
    /// Numeric features by name.
    pub numeric: BTreeMap<String, NumericRef>,
    /// Categorical features by name.
    pub categorical: BTreeMap<String, CategoricalRef>,
    /// Production prediction scores (all models), if predictions were profiled.
    pub score: Option<NumericRef>,
}

/// Accumulates reference records into a profile.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    numeric_names: Vec<String>,
    categorical_names: Vec<String>,
    numeric: Vec<(Vec<i64>, u64)>,
    categorical: Vec<(BTreeMap<String, u64>, u64)>,
    scores: Vec<i64>,
    events: u64,
    predictions: u64,
}

impl ProfileBuilder {
    /// A builder for events with these numeric and categorical feature names (schema order).
    pub fn new(numeric: &[String], categorical: &[String]) -> ProfileBuilder {
        ProfileBuilder {
            numeric_names: numeric.to_vec(),
            categorical_names: categorical.to_vec(),
            numeric: vec![(Vec::new(), 0); numeric.len()],
            categorical: vec![(BTreeMap::new(), 0); categorical.len()],
            scores: Vec::new(),
            events: 0,
            predictions: 0,
        }
    }

    /// Adds one event.
    pub fn event(&mut self, e: &Event) {
        self.events += 1;
        for ((values, nulls), v) in self.numeric.iter_mut().zip(&e.numeric) {
            match v {
                Some(v) => values.push(*v),
                None => *nulls += 1,
            }
        }
        for ((counts, nulls), v) in self.categorical.iter_mut().zip(&e.categorical) {
            match v {
                Some(v) => *counts.entry(v.to_string()).or_insert(0) += 1,
                None => *nulls += 1,
            }
        }
    }

    /// Adds one prediction.
    pub fn prediction(&mut self, p: &Prediction) {
        self.predictions += 1;
        self.scores.push(p.score);
    }

    /// The profile, with `fine_bins` bins per numeric feature and at most `max_values` distinct
    /// values kept per feature.
    pub fn finish(self, source: &str, fine_bins: u32, max_values: usize) -> Profile {
        let numeric = self
            .numeric_names
            .into_iter()
            .zip(self.numeric)
            .map(|(name, (values, nulls))| {
                (name, numeric_ref(values, nulls, fine_bins, max_values))
            })
            .collect();
        let categorical = self
            .categorical_names
            .into_iter()
            .zip(self.categorical)
            .map(|(name, (counts, nulls))| {
                let n = counts.values().sum();
                (name, CategoricalRef { n, nulls, counts })
            })
            .collect();
        let score =
            (self.predictions > 0).then(|| numeric_ref(self.scores, 0, fine_bins, max_values));
        Profile {
            format: FORMAT,
            source: source.to_string(),
            events: self.events,
            predictions: self.predictions,
            fine_bins,
            numeric,
            categorical,
            score,
        }
    }
}

/// Builds the reference of one numeric feature from its non-null values.
fn numeric_ref(mut values: Vec<i64>, nulls: u64, fine_bins: u32, max_values: usize) -> NumericRef {
    values.sort_unstable();
    let n = values.len();
    let edges: Vec<i64> = if n == 0 {
        Vec::new()
    } else {
        (1..fine_bins as usize)
            .map(|k| values[k * n / fine_bins as usize])
            .collect()
    };
    let mut distinct: Vec<(i64, u64)> = Vec::new();
    for v in values {
        match distinct.last_mut() {
            Some((x, c)) if *x == v => *c += 1,
            _ => distinct.push((v, 1)),
        }
    }
    let mut r = NumericRef {
        n: n as u64,
        nulls,
        cells: vec![0; edges.len() + 1],
        edges,
        values: Vec::new(),
        exact: true,
    };
    for &(v, c) in &distinct {
        let cell = r.cell(v) as usize;
        r.cells[cell] += c;
    }
    r.exact = distinct.len() <= max_values;
    r.values = if r.exact {
        distinct
    } else {
        sketch(&distinct, n as u64, max_values)
    };
    r
}

/// At most `k` values carrying the counts of consecutive groups of `distinct` of about equal
/// total count; each group is represented by its median.
fn sketch(distinct: &[(i64, u64)], n: u64, k: usize) -> Vec<(i64, u64)> {
    let mut out: Vec<(i64, u64)> = Vec::with_capacity(k);
    let mut group: Vec<(i64, u64)> = Vec::new();
    let mut seen = 0u64;
    let mut next_cut = 1u64;
    let flush = |group: &mut Vec<(i64, u64)>, out: &mut Vec<(i64, u64)>| {
        let total: u64 = group.iter().map(|g| g.1).sum();
        let mut acc = 0;
        for &(v, c) in group.iter() {
            acc += c;
            if 2 * acc >= total {
                match out.last_mut() {
                    Some((x, cx)) if *x == v => *cx += total,
                    _ => out.push((v, total)),
                }
                break;
            }
        }
        group.clear();
    };
    for &(v, c) in distinct {
        group.push((v, c));
        seen += c;
        if seen * k as u64 >= next_cut * n {
            flush(&mut group, &mut out);
            next_cut = seen * k as u64 / n + 1;
        }
    }
    if !group.is_empty() {
        flush(&mut group, &mut out);
    }
    out
}

impl Profile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let p: Profile = serde_json::from_slice(&text)
            .map_err(|e| Error::profile(path, format!("not a profile: {e}")))?;
        p.check().map_err(|reason| Error::profile(path, reason))?;
        Ok(p)
    }

    /// Writes the profile (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec(self).expect("profiles serialize");
        text.push(b'\n');
        crate::replay::segment::write_atomic(path, &text)
    }

    /// A digest of the profile's statistical content (not where it came from), for the job
    /// fingerprint.
    pub fn digest(&self) -> String {
        let content = Profile {
            source: String::new(),
            ..self.clone()
        };
        crate::replay::segment::sha256_hex(
            &serde_json::to_vec(&content).expect("profiles serialize"),
        )
    }

    /// Checks the invariants the statistics rely on; the reason names the feature.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "profile format {} is not supported (expected {FORMAT})",
                self.format
            ));
        }
        if self.fine_bins < 2 {
            return Err("fine_bins must be at least 2".into());
        }
        let numeric = self
            .numeric
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(self.score.iter().map(|s| ("score", s)));
        // Decoded values are within ±1e9 (±1e15 micro-units); the statistics rely on it.
        const BOUND: i64 = 1_000_000_000_000_000;
        for (name, r) in numeric {
            let bad = |what: &str| Err(format!("feature {name:?}: {what}"));
            if r.edges
                .iter()
                .chain(r.values.iter().map(|v| &v.0))
                .any(|x| x.abs() > BOUND)
            {
                return bad("a value is beyond ±1e9");
            }
            if r.n > 0 && r.edges.len() + 1 != self.fine_bins as usize {
                return bad("edge count does not match fine_bins");
            }
            if r.edges.windows(2).any(|w| w[0] > w[1]) {
                return bad("edges are not sorted");
            }
            if r.cells.len() != r.edges.len() + 1 || r.cells.iter().sum::<u64>() != r.n {
                return bad("bin counts do not add up to n");
            }
            if r.values.windows(2).any(|w| w[0].0 >= w[1].0)
                || r.values.iter().map(|v| v.1).sum::<u64>() != r.n
            {
                return bad("values are not sorted or do not add up to n");
            }
            if r.exact {
                // Binned and exact statistics must describe the same reference.
                let mut cells = vec![0u64; r.cells.len()];
                for &(v, c) in &r.values {
                    cells[r.cell(v) as usize] += c;
                }
                if cells != r.cells {
                    return bad("bin counts disagree with the values");
                }
            }
        }
        for (name, r) in &self.categorical {
            if r.counts.values().sum::<u64>() != r.n {
                return Err(format!(
                    "feature {name:?}: category counts do not add up to n"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_cells_and_sketch() {
        let values: Vec<i64> = (0..1000).map(|i| (i % 100) * 10).collect();
        let r = numeric_ref(values.clone(), 3, 10, 1_000);
        assert_eq!(r.edges, vec![100, 200, 300, 400, 500, 600, 700, 800, 900]);
        assert_eq!(r.cells, vec![100; 10]);
        assert!(r.exact);
        assert_eq!(r.values.len(), 100);
        let s = numeric_ref(values, 0, 10, 10);
        assert!(!s.exact);
        assert!(s.values.len() <= 10);
        assert_eq!(s.values.iter().map(|v| v.1).sum::<u64>(), 1000);
        assert!(s.values.windows(2).all(|w| w[0].0 < w[1].0));
        // Ties: a value equal to several edges lands above all of them.
        let t = numeric_ref(vec![5; 50], 0, 10, 100);
        assert_eq!(t.cell(5), 9);
        assert_eq!(t.cells[9], 50);
    }
}
