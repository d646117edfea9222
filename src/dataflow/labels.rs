//! Label latency and completeness per window × segment.
//!
//! Semantics: `events` in the window; `labeled`, those with a label; `labeled_within_horizon`,
//! those whose first label arrived within `label_horizon` of the event; `relabeled`, those that
//! received more than one label (duplicates or corrections); `orphan_labels`, labels whose event
//! was still unknown `label_horizon` after the label (overall segment only: an orphan has no
//! event and so no segment); latency from event time to the first label as hdrhistogram buckets
//! (3 significant digits). Unlabeled events are `events - labeled_within_horizon` once final.
//! Time and state as for quality metrics: counts in diffs, retired with the window.

use differential_dataflow::VecCollection;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::join::Joined;
use super::status::{with_status, StatusRow};
use super::sums::Sums;
use super::temporal::expire_at;
use super::windows::{window_segments, Status, Win, Windows, ALL};
use crate::config::Job;

/// Key of a label row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LKey {
    /// The window (by event time; by label time for orphans).
    pub win: Win,
    /// `all` or `column=value`.
    pub segment: String,
}

/// Exact counts of one label key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct LabelAgg {
    /// Events in the window and segment.
    pub events: i64,
    /// Events with a label.
    pub labeled: i64,
    /// Events labeled within the label horizon.
    pub within_horizon: i64,
    /// Events that received more than one label.
    pub relabeled: i64,
    /// Orphan labels (overall segment only).
    pub orphans: i64,
    /// Latency histogram: (bucket lowest value in ms, count), ascending.
    pub latency: Vec<(u64, i64)>,
}

/// Latency percentiles read from the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Maximum (bucket upper bound).
    pub max: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant digits is valid")
}

/// The bucket a latency falls in: the lowest value hdrhistogram treats as equivalent to it.
pub fn latency_bucket(h: &Histogram<u64>, ms: u64) -> u64 {
    h.lowest_equivalent(ms)
}

impl LabelAgg {
    /// Share of events labeled within the horizon, if the window has events.
    pub fn labeled_fraction(&self) -> Option<f64> {
        (self.events > 0).then(|| self.within_horizon as f64 / self.events as f64)
    }

    /// Percentiles of the latency buckets, if any label arrived.
    pub fn percentiles(&self) -> Option<Percentiles> {
        let mut h = histogram();
        for &(v, n) in &self.latency {
            h.record_n(v, n as u64).ok()?;
        }
        (!h.is_empty()).then(|| Percentiles {
            p50: h.value_at_quantile(0.5),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

/// One value of the label changelog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelRow {
    /// Which window and segment.
    pub key: LKey,
    /// Window status.
    pub status: Status,
    /// The counts.
    pub agg: LabelAgg,
}

impl StatusRow for LabelRow {
    fn retired(&self) -> Self {
        LabelRow {
            status: Status::Retired,
            ..self.clone()
        }
    }
}

/// Builds the label latency and completeness changelog.
pub fn labels<'s>(
    job: &Job,
    windows: &Windows,
    joined: &Joined<'s>,
) -> VecCollection<'s, u64, LabelRow> {
    let name = &job.spec.name;
    let horizon = job.spec.time.label_horizon_ms;

    // One update per event (or orphan) and key: the latency bucket is the value, the counts
    // ride in the diff [events, labeled, labeled within horizon, relabeled, orphans].
    let (w, j) = (windows.clone(), job.clone());
    let events = joined.events.clone().flat_map(move |e| {
        window_segments(&w, &j, &e)
            .into_iter()
            .map(|(win, segment)| ((LKey { win, segment }, None), Sums([1, 0, 0, 0, 0])))
            .collect::<Vec<_>>()
    });
    let (w, j) = (windows.clone(), job.clone());
    let buckets = histogram();
    let labeled = joined.event_labels.clone().flat_map(move |(e, l)| {
        let bucket = latency_bucket(&buckets, l.first_time.saturating_sub(e.time));
        let within = (l.first_time <= e.time + horizon) as i64;
        let sums = Sums([0, 1, within, (l.versions > 1) as i64, 0]);
        window_segments(&w, &j, &e)
            .into_iter()
            .map(|(win, segment)| ((LKey { win, segment }, Some(bucket)), sums))
            .collect::<Vec<_>>()
    });
    let w = windows.clone();
    let orphans = joined.orphans.clone().flat_map(move |(_, l)| {
        w.of(l.first_time)
            .into_iter()
            .map(|win| {
                (
                    (
                        LKey {
                            win,
                            segment: ALL.to_string(),
                        },
                        None,
                    ),
                    Sums([0, 0, 0, 0, 1]),
                )
            })
            .collect::<Vec<_>>()
    });
    let keyed = events.concat(labeled).concat(orphans);
    let w = windows.clone();
    let keyed = expire_at(
        keyed,
        &format!("{name}.LabelsRetire"),
        move |((k, _), _)| w.retire_at(&k.win),
    );
    let aggs = keyed.explode(|(kb, sums)| Some((kb, sums))).reduce_named(
        &format!("{name}.LabelsAssemble"),
        |_k, input, output: &mut Vec<(LabelAgg, isize)>| {
            let mut a = LabelAgg::default();
            for (bucket, Sums([events, labeled, within, relabeled, orphans])) in input {
                a.events += events;
                a.labeled += labeled;
                a.within_horizon += within;
                a.relabeled += relabeled;
                a.orphans += orphans;
                if let Some(b) = bucket {
                    a.latency.push((*b, *labeled));
                }
            }
            output.push((a, 1));
        },
    );
    with_status(
        &format!("{name}.Labels"),
        windows,
        aggs,
        |k: &LKey| k.win,
        |key, status, agg| LabelRow { key, status, agg },
        |r| r.key.win,
    )
}
