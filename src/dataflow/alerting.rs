//! Alert rules evaluated over final windows, in timestamp order on worker 0.
//!
//! Every final row of `quality`, `label_health` and `drift` becomes one observation per rule
//! that watches it; the state machine ([`crate::alerts::eval`]) turns them into firing and
//! resolved records. Its state depends on the whole history, so it is snapshotted with the
//! replay buffer like the drift detectors': restarts and replays continue from a snapshot.

use std::sync::Arc;

use differential_dataflow::VecCollection;

use differential_dataflow::collection::AsCollection;
use timely::dataflow::operators::core::Map;

use super::drift::DriftRow;
use super::labels::LabelRow;
use super::learn::ShadowRow;
use super::ordered::{in_order, Snapshots};
use super::quality::QualityRow;
use super::windows::{Status, Win};
use crate::alerts::spec::{Metric, ModelRole, Rule};
use crate::alerts::{AlertEvent, AlertState, Observation};
use crate::drift::Drift;

/// The observations of one quality row.
fn of_quality(rules: &[Rule], r: &QualityRow) -> Vec<Observation> {
    let online = &*r.key.model == "online";
    observe(rules, &r.key.win, &r.key.segment, "quality", |rule| {
        if (rule.model == ModelRole::Online) != online {
            return None;
        }
        let v = match rule.metric {
            Metric::Accuracy => r.accuracy(),
            Metric::LogLoss => r.log_loss(),
            Metric::Brier => r.brier(),
            Metric::Auc => r.auc().0,
            _ => None,
        }?;
        Some((
            v,
            r.agg.count as u64,
            r.key.model.to_string(),
            String::new(),
        ))
    })
}

/// The observations of one label-health row.
fn of_labels(rules: &[Rule], r: &LabelRow) -> Vec<Observation> {
    let a = &r.agg;
    let p = a.percentiles();
    observe(rules, &r.key.win, &r.key.segment, "label_health", |rule| {
        let (v, n) = match rule.metric {
            Metric::LabeledFraction => (a.labeled_fraction(), a.events),
            Metric::LatencyP50Ms => (p.map(|p| p.p50 as f64), a.labeled),
            Metric::LatencyP95Ms => (p.map(|p| p.p95 as f64), a.labeled),
            Metric::LatencyP99Ms => (p.map(|p| p.p99 as f64), a.labeled),
            _ => (None, 0),
        };
        Some((v?, n.max(0) as u64, String::new(), String::new()))
    })
}

/// The observations of one drift row.
fn of_drift(rules: &[Rule], drift: &Drift, r: &DriftRow) -> Vec<Observation> {
    let stats = r.stats(drift);
    let feature = &drift.features[r.key.feature as usize].name;
    observe(rules, &r.key.win, &r.key.segment, "drift", |rule| {
        let Metric::Drift(s) = rule.metric else {
            return None;
        };
        if !rule.features.is_empty() && !rule.features.contains(feature) {
            return None;
        }
        let v = stats.get(s)?;
        Some((v, stats.count, r.key.model.to_string(), feature.clone()))
    })
}

/// The observations of one shadow row (the online model against production model `model`).
fn of_shadow(rules: &[Rule], r: &ShadowRow) -> Vec<Observation> {
    if r.count <= 0 {
        return Vec::new();
    }
    let n = r.count as f64;
    observe(rules, &r.key.win, &r.key.segment, "shadow", |rule| {
        let v = match rule.metric {
            Metric::ShadowAgreement => r.agree as f64 / n,
            Metric::ShadowDivergence => crate::records::from_micro(r.abs_diff) / n,
            _ => return None,
        };
        Some((v, r.count as u64, r.key.model.clone(), String::new()))
    })
}

/// One observation per rule of `output` that watches the window and segment, valued by `value`
/// as `(value, count, model, feature)`.
fn observe(
    rules: &[Rule],
    win: &Win,
    segment: &str,
    output: &str,
    value: impl Fn(&Rule) -> Option<(f64, u64, String, String)>,
) -> Vec<Observation> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.metric.output() != output
            || !rule.watches_family(win.family)
            || !rule.watches_segment(segment)
        {
            continue;
        }
        if let Some((v, count, model, feature)) = value(rule).filter(|(v, ..)| v.is_finite()) {
            out.push(Observation {
                rule: i as u16,
                segment: segment.to_string(),
                model,
                feature,
                win: *win,
                value: v.to_bits(),
                count,
            });
        }
    }
    out
}

/// Where the alert operator starts and what it snapshots.
pub struct AlertStart {
    /// State as of `first` (a restart or replay), or empty.
    pub state: Option<AlertState>,
    /// The first timestamp processed.
    pub first: u64,
    /// The replay buffer's segment length (snapshot interval).
    pub segment_ms: u64,
    /// Receives snapshots (worker 0 of a recording run).
    pub snapshots: Option<Snapshots>,
    /// How long a series may go without an evaluated window before its alert is forgotten.
    pub retention_ms: u64,
}

/// The changelogs rules watch.
pub struct Watched<'a, 's> {
    /// Quality rows.
    pub quality: &'a VecCollection<'s, u64, QualityRow>,
    /// Label-health rows.
    pub labels: &'a VecCollection<'s, u64, LabelRow>,
    /// Drift rows.
    pub drift: &'a VecCollection<'s, u64, DriftRow>,
    /// Shadow rows and the windows that say when they retire (jobs that learn).
    pub shadow: Option<(
        &'a VecCollection<'s, u64, ShadowRow>,
        super::windows::Windows,
    )>,
}

/// The `alerts` changelog of `rules` over the job's final windows.
pub fn alerts<'s>(
    name: &str,
    rules: Arc<Vec<Rule>>,
    drift: Option<Arc<Drift>>,
    watched: Watched<'_, 's>,
    start: AlertStart,
) -> VecCollection<'s, u64, AlertEvent> {
    let Watched {
        quality,
        labels,
        drift: drift_rows,
        shadow,
    } = watched;
    let retention = start.retention_ms;
    let r = rules.clone();
    let q = quality
        .clone()
        .filter(|r| r.status == Status::Final)
        .flat_map(move |row| of_quality(&r, &row));
    let r = rules.clone();
    let l = labels
        .clone()
        .filter(|r| r.status == Status::Final)
        .flat_map(move |row| of_labels(&r, &row));
    let r = rules.clone();
    let d = drift_rows
        .clone()
        .filter(|r| r.status == Status::Final)
        .flat_map(move |row| match &drift {
            Some(drift) => of_drift(&r, drift, &row),
            None => Vec::new(),
        });
    // Shadow rows have no final status: a window's row is final when its window retires and
    // the row leaves (a retraction at or after its retirement time).
    let s = shadow.map(|(rows, windows)| {
        let r = rules.clone();
        rows.inner
            .clone()
            .flat_map::<Vec<(Observation, u64, isize)>, _, _>(move |(row, t, diff)| {
                if diff < 0 && t >= windows.retire_at(&row.key.win) {
                    of_shadow(&r, &row)
                        .into_iter()
                        .map(|o| (o, t, 1))
                        .collect::<Vec<_>>()
                } else {
                    Vec::new()
                }
            })
            .as_collection()
    });
    let mut all = q.concat(l).concat(d);
    if let Some(s) = s {
        all = all.concat(s);
    }
    in_order(
        all,
        &format!("{name}.Alerts"),
        start.state.unwrap_or_default(),
        Vec::new(),
        start.first,
        start.segment_ms,
        start.snapshots,
        |state: &mut AlertState| serde_json::to_vec(state).expect("state serializes").into(),
        move |state, _t, batch, out| {
            let mut events = Vec::new();
            // Retractions (a final row amended) carry no new value: the +1 that replaces it does.
            for (o, _) in batch.into_iter().filter(|(_, r)| *r > 0) {
                state.observe(&rules, &o, &mut events);
            }
            state.expire(retention, &mut events);
            out.extend(events.into_iter().map(|e| (e, 1)));
        },
    )
}
