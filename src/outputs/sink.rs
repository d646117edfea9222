//! The changelog sink: consolidates each timestamp once it is complete and writes it in order.
//!
//! All updates of an output are exchanged to worker 0, buffered per timestamp, and written when
//! the frontier passes that timestamp: consolidated (equal rows' diffs summed, zeros dropped)
//! and sorted by row, so the bytes do not depend on the worker count or on arrival order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::rows::{Columns, Format, OutputRow};
use super::writer::ChangelogWriter;
use crate::dataflow::windows::Status;

/// What a sink keeps for the end-of-run summary.
pub struct SinkState<R> {
    /// Current contents (retractions applied, tombstones left out), if kept.
    pub current: Option<BTreeMap<R, isize>>,
    /// Changelog lines written.
    pub lines: u64,
    /// The first write error, which stops further writes of this sink.
    pub error: Option<crate::Error>,
    /// The writer, taken on finish.
    pub writer: Option<ChangelogWriter>,
    /// Retired rows kept in `current`, oldest first.
    pub retired: std::collections::VecDeque<R>,
    /// Every line below this timestamp has been handed to the writer.
    pub written_below: u64,
    /// `(ts, JSON Lines length before ts's first line)` for timestamps not yet committed;
    /// `None` when nothing commits (a replay).
    pub cuts: Option<std::collections::VecDeque<(u64, u64)>>,
    /// Lines are written only for timestamps in this range (others update `current` only).
    pub write: std::ops::Range<u64>,
    /// The JSON Lines length once the writer finished.
    pub finished_len: Option<u64>,
    /// Metrics moved by the rows written (a live run's worker 0).
    pub metrics: Option<crate::metrics::Shared>,
}

impl<R> SinkState<R> {
    /// A sink state; `keep` decides whether current contents are tracked.
    pub fn new(writer: Option<ChangelogWriter>, keep: bool) -> Rc<RefCell<SinkState<R>>> {
        Rc::new(RefCell::new(SinkState {
            current: keep.then(BTreeMap::new),
            lines: 0,
            error: None,
            writer,
            retired: Default::default(),
            written_below: 0,
            cuts: None,
            write: 0..u64::MAX,
            finished_len: None,
            metrics: None,
        }))
    }

    /// The JSON Lines length holding exactly the lines below `ts`, made durable; forgets cuts
    /// below `ts`.
    pub fn commit_cut(&mut self, ts: u64) -> crate::Result<Option<u64>> {
        // A failed write leaves a hole: nothing after it may be committed.
        if let Some(e) = &self.error {
            return Err(crate::Error::Runtime(format!(
                "an output write failed: {e}"
            )));
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(self.finished_len);
        };
        let len = w.sync()?;
        let cuts = self.cuts.get_or_insert_with(Default::default);
        while cuts.front().is_some_and(|(t, _)| *t < ts) {
            cuts.pop_front();
        }
        Ok(Some(cuts.front().map_or(len, |(_, before)| *before)))
    }
}

/// How many retired rows the summary remembers (the most recent windows).
const RETIRED_KEPT: usize = 512;

/// Attaches a changelog sink to `coll`; changes are reported as of the next multiple of `emit`.
pub fn sink<'s, R>(
    coll: VecCollection<'s, u64, R>,
    job_name: &str,
    format: Format,
    emit: u64,
    state: Rc<RefCell<SinkState<R>>>,
) where
    R: OutputRow + ExchangeData,
{
    let name = format!("{job_name}.Sink.{}", R::NAME);
    let mut pending: BTreeMap<u64, Vec<(R, isize)>> = BTreeMap::new();
    let mut cols: Vec<Columns> = Vec::new();
    coll.inner
        .sink(Exchange::new(|_| 0), &name, move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for (r, t, d) in data.drain(..) {
                    let at = t.div_ceil(emit) * emit;
                    let batch = pending.entry(at).or_default();
                    batch.push((r, d));
                    // Keep a long interval's buffer consolidated as it grows.
                    if batch.len() >= 4096 && batch.len().is_power_of_two() {
                        consolidate(batch);
                    }
                }
            });
            let mut st = state.borrow_mut();
            let shared = st.metrics.clone();
            let mut metrics = shared.as_ref().map(|m| m.lock());
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let ts = *entry.key();
                let mut updates = entry.remove();
                consolidate(&mut updates);
                let st = &mut *st;
                let write = st.write.contains(&ts);
                if let (true, Some(w), Some(cuts)) = (
                    write && !updates.is_empty(),
                    st.writer.as_ref(),
                    st.cuts.as_mut(),
                ) {
                    cuts.push_back((ts, w.jsonl_bytes));
                }
                for (row, diff) in updates {
                    if let Some(cur) = st.current.as_mut() {
                        let e = cur.entry(row.clone()).or_insert(0);
                        *e += diff;
                        if *e == 0 {
                            cur.remove(&row);
                        }
                        if row.status() == Some(Status::Retired) {
                            // Tombstones are never retracted: keep only the most recent ones.
                            st.retired.push_back(row.clone());
                            if st.retired.len() > RETIRED_KEPT {
                                if let Some(old) = st.retired.pop_front() {
                                    cur.remove(&old);
                                }
                            }
                        }
                    }
                    if !write {
                        continue;
                    }
                    // Only written lines move metrics: a restart's muted replay of
                    // history does not count its lines twice.
                    if let Some(m) = metrics.as_mut() {
                        row.observe(diff, &format, m);
                    }
                    cols.clear();
                    row.columns(&format, &mut cols);
                    if let (Some(w), None) = (st.writer.as_mut(), &st.error) {
                        for c in &cols {
                            if let Err(e) = w.write(ts, diff, c) {
                                st.error = Some(e);
                                break;
                            }
                        }
                    }
                    st.lines += cols.len() as u64;
                }
            }
            st.written_below = frontier.frontier().first().copied().unwrap_or(u64::MAX);
            if let Some(m) = metrics.as_mut() {
                crate::metrics::observe::written_below(m, R::NAME, st.written_below);
            }
        });
}
