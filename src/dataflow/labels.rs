//! Label latency and completeness per window × segment.
//!
//! Semantics: `events` in the window; `labeled`, those with a label; `labeled_within_horizon`,
//! those whose first label arrived within `label_horizon` of the event; `relabeled`, those that
//! received more than one label (duplicates or corrections); `orphan_labels`, labels whose event
//! was unseen when their decision fell due, and `late_labels`, labels that arrived after every
//! window of their event had retired (both by label time, overall segment only: neither counts
//! in an event's segment); latency from event time to the first label as hdrhistogram buckets
//! (3 significant digits). Unlabeled events are `events - labeled_within_horizon` once final.
//! A window and segment with no events has no row: labels alone open none (the `ingest` row of
//! labels counts every orphaned and late label). Time and state as for quality metrics: counts
//! and latency buckets per pane and segment, dropped with the last window containing the pane.

use std::sync::Arc;

use differential_dataflow::VecCollection;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::cardinality::admit;
use super::join::{Joined, LabelInput};
use super::panes::{assemble, ident, pre_aggregate, PaneAcc, Panes, Render, Tally};
use super::status::StatusRow;
use super::windows::{Names, Status, Win, ALL};
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
    /// Labels that arrived after every window of their event had retired (overall segment
    /// only).
    pub late: i64,
    /// Latency histogram: (bucket lowest value in ms, count), ascending.
    pub latency: Latency,
}

/// Latency buckets, shared (a window's histogram holds thousands of buckets and its row is
/// cloned by every reader), with their percentiles computed once for all of them (the sink,
/// the alert rules and the metrics each read them). Compared, hashed and serialized as the
/// buckets alone.
#[derive(Debug, Clone, Default)]
pub struct Latency(Arc<(Vec<(u64, i64)>, std::sync::OnceLock<Option<Percentiles>>)>);

impl Latency {
    /// The buckets, ascending.
    pub fn buckets(&self) -> &[(u64, i64)] {
        &self.0 .0
    }
}

impl std::ops::Deref for Latency {
    type Target = [(u64, i64)];
    fn deref(&self) -> &[(u64, i64)] {
        self.buckets()
    }
}

impl From<Vec<(u64, i64)>> for Latency {
    fn from(v: Vec<(u64, i64)>) -> Self {
        Latency(Arc::new((v, Default::default())))
    }
}

impl PartialEq for Latency {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.buckets() == other.buckets()
    }
}

impl Eq for Latency {}

impl PartialOrd for Latency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Latency {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.buckets().cmp(other.buckets())
    }
}

impl std::hash::Hash for Latency {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.buckets().hash(state)
    }
}

impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.buckets().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Vec::<(u64, i64)>::deserialize(d).map(Latency::from)
    }
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

    /// Percentiles of the latency buckets, if any label arrived: what hdrhistogram's
    /// `value_at_quantile` and `max` give for the buckets recorded, read off the sorted
    /// buckets directly (building a histogram allocated and zeroed ~100 KB per row formatted).
    pub fn percentiles(&self) -> Option<Percentiles> {
        *self.latency.0 .1.get_or_init(|| self.compute_percentiles())
    }

    fn compute_percentiles(&self) -> Option<Percentiles> {
        if self.latency.iter().any(|(_, n)| *n <= 0) {
            return self.percentiles_recorded();
        }
        let total: u64 = self.latency.iter().map(|(_, n)| *n as u64).sum();
        let &(last, _) = self.latency.last()?;
        static BUCKETS: std::sync::OnceLock<Histogram<u64>> = std::sync::OnceLock::new();
        let h = BUCKETS.get_or_init(histogram);
        // The three quantiles' ranks, found in one pass over the buckets.
        let targets = [0.5, 0.95, 0.99].map(|q: f64| ((q * total as f64).ceil() as u64).max(1));
        let mut found = [last; 3];
        let mut next = 0;
        let mut seen = 0u64;
        for &(v, n) in self.latency.iter() {
            seen += n as u64;
            while next < 3 && seen >= targets[next] {
                found[next] = v;
                next += 1;
            }
            if next == 3 {
                break;
            }
        }
        let [p50, p95, p99] = found.map(|v| h.highest_equivalent(v));
        Some(Percentiles {
            p50,
            p95,
            p99,
            max: h.highest_equivalent(last),
        })
    }

    /// [`LabelAgg::percentiles`] by recording the buckets into a histogram.
    fn percentiles_recorded(&self) -> Option<Percentiles> {
        let mut h = histogram();
        for &(v, n) in self.latency.iter() {
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

/// Counts of a label-health pane: [events, labeled, labeled within horizon, relabeled,
/// orphans, late].
type Sums = [i64; 6];

/// The accumulator of one label-health pane: its counts and the labeled count per latency
/// bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct LabelPane {
    sums: Sums,
    latency: Tally<u64, 1>,
}

impl PaneAcc for LabelPane {
    fn held(&self) -> usize {
        1 + self.latency.len()
    }

    fn merge(&mut self, d: &Self) {
        for (a, b) in self.sums.iter_mut().zip(d.sums) {
            *a += b;
        }
        self.latency.merge(&d.latency);
    }

    fn is_empty(&self) -> bool {
        self.sums == [0; 6] && self.latency.is_empty()
    }

    fn seal(&mut self) {
        self.latency.seal();
    }
}

/// Renders label rows of windows from their panes.
struct LabelRender;

impl Render for LabelRender {
    type Group = Arc<str>;
    /// The window's latency buckets summed over its panes, kept up to date from the deltas:
    /// summing the panes' thousands of buckets at every render was most of rendering a row
    /// when rows change every second.
    type Memo = Option<Tally<u64, 1>>;
    type Acc = LabelPane;
    type Row = LabelRow;

    fn render(
        &self,
        segment: &Arc<str>,
        win: Win,
        status: Status,
        panes: &[&LabelPane],
        out: &mut Vec<LabelRow>,
    ) {
        self.render_with(segment, win, status, panes, &mut None, out)
    }

    fn absorb(&self, memo: &mut Self::Memo, delta: &LabelPane) {
        if let Some(sum) = memo {
            sum.merge(&delta.latency);
        }
    }

    fn render_with(
        &self,
        segment: &Arc<str>,
        win: Win,
        status: Status,
        panes: &[&LabelPane],
        memo: &mut Self::Memo,
        out: &mut Vec<LabelRow>,
    ) {
        let mut sums: Sums = [0; 6];
        for p in panes {
            for (a, b) in sums.iter_mut().zip(p.sums) {
                *a += b;
            }
        }
        let sum = memo.get_or_insert_with(|| {
            let parts: Vec<&Tally<u64, 1>> = panes.iter().map(|p| &p.latency).collect();
            let mut sum = Vec::new();
            Tally::sum(&parts, &mut sum);
            Tally::from_sorted(sum)
        });
        if sums[0] == 0 {
            // No events: labels alone (orphans, late ones) open no window.
            return;
        }
        let latency: Latency = sum
            .iter()
            .map(|&(k, [n])| (k, n))
            .collect::<Vec<_>>()
            .into();
        let [events, labeled, within_horizon, relabeled, orphans, late] = sums;
        out.push(LabelRow {
            key: LKey {
                win,
                segment: segment.to_string(),
            },
            status,
            agg: LabelAgg {
                events,
                labeled,
                within_horizon,
                relabeled,
                orphans,
                late,
                latency,
            },
        });
    }

    fn tombstone(&self, row: &LabelRow) -> Option<LabelRow> {
        (row.status == Status::Final).then(|| row.retired())
    }
}

/// Builds the label latency and completeness changelog.
pub fn labels<'s>(
    job: &Job,
    panes: &Panes,
    joined: &Joined<'s>,
) -> VecCollection<'s, u64, LabelRow> {
    let name = &job.spec.name;
    let horizon = job.spec.time.label_horizon_ms;
    let panes = panes.clone();

    // Per event: one count per segment; per labeled event, its latency bucket; per orphaned or
    // late label, one count in the overall segment of the windows of its label time.
    let contributions = joined.label_inputs.clone();
    let p = panes.clone();
    let mut names = Names::new(job);
    let mut segments = Vec::new();
    let all: Arc<str> = Arc::from(ALL);
    let buckets = histogram();
    let deltas = pre_aggregate(
        contributions,
        &format!("{name}.LabelsPre"),
        &panes,
        move |input: &LabelInput, r, emit| {
            let r = r as i64;
            match input {
                LabelInput::Event(e) => {
                    names.segments(e, &mut segments);
                    for segment in &segments {
                        emit(
                            ident(segment),
                            &|| segment.clone(),
                            p.pane_of(e.time),
                            &mut |a: &mut LabelPane| a.sums[0] += r,
                        );
                    }
                }
                LabelInput::Labeled(e, l) => {
                    let bucket = latency_bucket(&buckets, l.first_time.saturating_sub(e.time));
                    let within = (l.first_time <= e.time + horizon) as i64;
                    let relabeled = (l.versions > 1) as i64;
                    names.segments(e, &mut segments);
                    for segment in &segments {
                        emit(
                            ident(segment),
                            &|| segment.clone(),
                            p.pane_of(e.time),
                            &mut |a: &mut LabelPane| {
                                a.sums[1] += r;
                                a.sums[2] += within * r;
                                a.sums[3] += relabeled * r;
                                a.latency.push(bucket, [r]);
                            },
                        );
                    }
                }
                LabelInput::Orphan(time) | LabelInput::TooLate(time) => {
                    let k = 4 + matches!(input, LabelInput::TooLate(_)) as usize;
                    emit(
                        ident(&all),
                        &|| all.clone(),
                        p.pane_of(*time),
                        &mut |a: &mut LabelPane| a.sums[k] += r,
                    );
                }
            }
        },
    );
    let cap = job.spec.limits.clone().unwrap_or_default().segment_values();
    let deltas = admit(deltas, &format!("{name}.LabelsCap"), panes.clone(), cap);
    assemble(deltas, &format!("{name}.LabelsWindows"), panes, LabelRender)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A window's latency kept up to date from pane deltas (labels added and retracted)
        /// renders the row that summing its panes renders, at every render.
        #[test]
        fn incremental_latency_equals_recomputation(
            rounds in proptest::collection::vec(
                proptest::collection::vec((0usize..3, 0u64..40, 0u8..4), 0..30),
                1..6,
            ),
        ) {
            let render = LabelRender;
            let group: Arc<str> = Arc::from("all");
            let win = Win { family: 0, start: 0, end: 300 };
            let mut panes = vec![LabelPane::default(); 3];
            let mut added: Vec<(usize, u64)> = Vec::new();
            let mut memo = None;
            for round in rounds {
                for (pane, bucket, op) in round {
                    // One op in four retracts an earlier label.
                    let (pane, bucket, r) = if op == 0 && !added.is_empty() {
                        let (p, b) = added.swap_remove(bucket as usize % added.len());
                        (p, b, -1)
                    } else {
                        added.push((pane, bucket));
                        (pane, bucket, 1)
                    };
                    let mut delta = LabelPane::default();
                    delta.sums[0] += 1;
                    delta.sums[1] += r;
                    delta.latency.push(bucket * 1000, [r]);
                    delta.seal();
                    panes[pane].merge(&delta);
                    render.absorb(&mut memo, &delta);
                }
                let parts: Vec<&LabelPane> = panes.iter().filter(|p| !p.is_empty()).collect();
                let (mut got, mut want) = (Vec::new(), Vec::new());
                render.render_with(&group, win, Status::Final, &parts, &mut memo, &mut got);
                render.render(&group, win, Status::Final, &parts, &mut want);
                proptest::prop_assert_eq!(got, want);
            }
        }


        /// Percentiles read off the sorted buckets equal hdrhistogram's over the same buckets.
        #[test]
        fn percentiles_equal_hdrhistogram(
            raw in proptest::collection::btree_map(0u64..2_000_000, 1i64..50, 0..60),
        ) {
            let h = histogram();
            let mut latency: std::collections::BTreeMap<u64, i64> = Default::default();
            for (ms, n) in raw {
                *latency.entry(latency_bucket(&h, ms)).or_default() += n;
            }
            let agg = LabelAgg { latency: latency.into_iter().collect::<Vec<_>>().into(), ..Default::default() };
            proptest::prop_assert_eq!(agg.percentiles(), agg.percentiles_recorded());
        }
    }
}
