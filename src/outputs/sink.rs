//! The changelog sink: consolidates each timestamp once it is complete and writes it in order.
//!
//! Each worker consolidates its own updates of an output per timestamp and formats their lines;
//! worker 0 receives them all, and writes each timestamp when the frontier passes it: merged
//! (equal rows' diffs summed, zeros dropped) and sorted by row, so the bytes do not depend on
//! the worker count or on arrival order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;

use super::rows::{push_json_line, Columns, Format, OutputRow};
use super::writer::ChangelogWriter;
use crate::dataflow::timers::{pending_at, Pending};
use crate::dataflow::windows::Status;

/// What a sink keeps for the end-of-run summary.
pub struct SinkState<R> {
    /// Current contents (retractions applied, old tombstones left out), if kept.
    pub current: Option<Contents<R>>,
    /// Changelog lines written.
    pub lines: u64,
    /// The first write error, which stops further writes of this sink.
    pub error: Option<crate::Error>,
    /// The writer, taken on finish.
    pub writer: Option<ChangelogWriter>,
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
            current: keep.then(Contents::default),
            lines: 0,
            error: None,
            writer,
            written_below: 0,
            cuts: None,
            write: 0..u64::MAX,
            finished_len: None,
            metrics: None,
        }))
    }

    /// The JSON Lines length holding exactly the lines below `ts`, with what makes it durable;
    /// forgets cuts below `ts`.
    pub fn commit_cut(
        &mut self,
        ts: u64,
    ) -> crate::Result<Option<(u64, crate::outputs::writer::Durable)>> {
        // A failed write leaves a hole: nothing after it may be committed.
        if let Some(e) = &self.error {
            return Err(crate::Error::Runtime(format!(
                "an output write failed: {e}"
            )));
        }
        let Some(w) = self.writer.as_mut() else {
            // Finished: the file was made durable when it was closed.
            return Ok(self.finished_len.map(|len| (len, Default::default())));
        };
        let (len, durable) = w.cut()?;
        let cuts = self.cuts.get_or_insert_with(Default::default);
        while cuts.front().is_some_and(|(t, _)| *t < ts) {
            cuts.pop_front();
        }
        Ok(Some((
            cuts.front().map_or(len, |(_, before)| *before),
            durable,
        )))
    }
}

/// How many retired rows the summary remembers (the most recent windows).
const RETIRED_KEPT: usize = 512;

/// An output's current rows, kept for the run's summary.
///
/// Changes are appended to a log that is consolidated (sorted, equal rows' diffs summed, zeros
/// dropped) each time it has doubled: a sort per doubling, where a search tree keyed by whole
/// rows cost worker 0 a fifth of its time in a job emitting every second. Tombstones (retired
/// rows) are never retracted, so only the most recent [`RETIRED_KEPT`] are kept.
pub struct Contents<R> {
    /// Consolidated rows, then changes not yet consolidated.
    log: Vec<(R, isize)>,
    /// How many rows the last consolidation left.
    consolidated: usize,
    /// Retired rows, oldest first.
    retired: std::collections::VecDeque<R>,
    /// Retired rows beyond the most recent, to leave out at the next consolidation.
    dropped: Vec<R>,
}

impl<R> Default for Contents<R> {
    fn default() -> Self {
        Contents {
            log: Vec::new(),
            consolidated: 0,
            retired: Default::default(),
            dropped: Vec::new(),
        }
    }
}

impl<R: Ord + Clone> Contents<R> {
    /// Applies one row's change.
    pub fn update(&mut self, row: R, diff: isize, retired: bool) {
        if retired {
            self.retired.push_back(row.clone());
            if self.retired.len() > RETIRED_KEPT {
                self.dropped.extend(self.retired.pop_front());
            }
        }
        self.log.push((row, diff));
        if self.log.len() >= 2 * self.consolidated.max(1024) {
            self.consolidate();
        }
    }

    fn consolidate(&mut self) {
        consolidate(&mut self.log);
        if !self.dropped.is_empty() {
            self.dropped.sort();
            let dropped = std::mem::take(&mut self.dropped);
            self.log.retain(|(r, _)| dropped.binary_search(r).is_err());
        }
        self.consolidated = self.log.len();
    }

    /// The current rows, in order.
    pub fn rows(&mut self) -> Vec<R> {
        self.consolidate();
        self.log.iter().map(|(r, _)| r.clone()).collect()
    }
}

/// A row's JSON lines formatted by the worker that produced it: how many, their bytes (each
/// line ended by a newline), and for an output that goes to Kafka each line's message key.
type Lines = (usize, Vec<u8>, Vec<String>);

/// A row's change at a timestamp, with its lines (`None`: format them again, as the change
/// merged changes of several workers, or the output is written as Parquet).
type Formatted<R> = (R, isize, Option<Lines>);

/// Attaches a changelog sink to `coll`; changes are reported as of the next multiple of `emit`.
///
/// Two operators: `…Format.<output>` on every worker consolidates each complete timestamp of
/// its own rows and formats their JSON lines (with their Kafka keys, if the output goes to a
/// topic) unless the output is also written as Parquet (formatting is most of a sink's work,
/// and worker 0 has the most else to do); `…Sink.<output>` on worker 0
/// merges them in row order and writes.
/// Time: a timestamp is written once the frontier passes it. State: the rows of incomplete
/// timestamps. Failure modes: the first write error stops this sink's writes and is reported
/// by the commit and at the end of the run.
pub fn sink<'s, R>(
    coll: VecCollection<'s, u64, R>,
    job_name: &str,
    format: Format,
    emit: u64,
    state: Rc<RefCell<SinkState<R>>>,
) where
    R: OutputRow + ExchangeData,
{
    let formatted = format_rows(
        coll,
        &format!("{job_name}.Format.{}", R::NAME),
        &format,
        emit,
    );
    let name = format!("{job_name}.Sink.{}", R::NAME);
    let mut pending: BTreeMap<u64, Vec<Formatted<R>>> = BTreeMap::new();
    let mut cols: Vec<Columns> = Vec::new();
    formatted.sink(Exchange::new(|_| 0), &name, move |(input, frontier)| {
        input.for_each(|_cap, data| {
            for ((r, d, lines), t, _) in data.drain(..) {
                pending.entry(t).or_default().push((r, d, lines));
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
            let updates = merge(entry.remove());
            let st = &mut *st;
            let write = st.write.contains(&ts);
            if let (true, Some(w), Some(cuts)) = (
                write && !updates.is_empty(),
                st.writer.as_ref(),
                st.cuts.as_mut(),
            ) {
                cuts.push_back((ts, w.jsonl_bytes));
            }
            for (row, diff, lines) in updates {
                if write {
                    // Only written lines move metrics: a restart's muted replay of
                    // history does not count its lines twice.
                    if let Some(m) = metrics.as_mut() {
                        row.observe(diff, &format, m);
                    }
                    let text =
                        lines.filter(|_| !st.writer.as_ref().is_some_and(|w| w.needs_columns()));
                    if text.is_none() {
                        cols.clear();
                        row.columns(&format, &mut cols);
                    }
                    st.lines += text.as_ref().map_or(cols.len(), |(n, _, _)| *n) as u64;
                    if let (Some(w), None) = (st.writer.as_mut(), &st.error) {
                        let written = match &text {
                            Some((n, lines, keys)) => w.write_lines(ts, lines, *n as u64, keys),
                            None => cols.iter().try_for_each(|c| w.write(ts, diff, c)),
                        };
                        if let Err(e) = written {
                            st.error = Some(e);
                        }
                    }
                }
                if let Some(cur) = st.current.as_mut() {
                    let retired = row.status() == Some(Status::Retired);
                    cur.update(row, diff, retired);
                }
            }
        }
        st.written_below = frontier.frontier().first().copied().unwrap_or(u64::MAX);
        if let Some(m) = metrics.as_mut() {
            crate::metrics::observe::written_below(m, R::NAME, st.written_below);
        }
    });
}

/// Sorts a timestamp's formatted changes by row and merges equal rows (their diffs summed,
/// zeros dropped, lines formatted again).
fn merge<R: Ord>(mut updates: Vec<Formatted<R>>) -> Vec<Formatted<R>> {
    updates.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<Formatted<R>> = Vec::with_capacity(updates.len());
    for (r, d, lines) in updates {
        match out.last_mut() {
            Some(last) if last.0 == r => {
                last.1 += d;
                last.2 = None;
            }
            _ => out.push((r, d, lines)),
        }
    }
    out.retain(|u| u.1 != 0);
    out
}

/// Consolidates each complete timestamp (rounded up to `emit`) of this worker's rows and, if
/// the lines' text is all that is written, formats them.
fn format_rows<'s, R>(
    coll: VecCollection<'s, u64, R>,
    name: &str,
    format: &Format,
    emit: u64,
) -> timely::dataflow::Stream<'s, u64, Vec<(Formatted<R>, u64, isize)>>
where
    R: OutputRow + ExchangeData,
{
    let format = format.clone();
    // An output that goes to Kafka needs each line's key, from its columns; the rest are
    // formatted by the row's own (faster) writer.
    let keys = format.kafka_keys(R::NAME);
    coll.inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(Formatted<R>, u64, isize)>>, _, _, _>(
            Pipeline,
            name,
            move |_, _| {
                let mut pending: Pending<Vec<(R, isize)>> = BTreeMap::new();
                let mut cols: Vec<Columns> = Vec::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        for (r, t, d) in data.drain(..) {
                            let at = t.div_ceil(emit) * emit;
                            let batch = pending_at(&mut pending, &cap, output.output_index(), at);
                            batch.push((r, d));
                            // Keep a long interval's buffer consolidated as it grows.
                            if batch.len() >= 4096 && batch.len().is_power_of_two() {
                                consolidate(batch);
                            }
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let ts = *entry.key();
                        let (cap, mut updates) = entry.remove();
                        consolidate(&mut updates);
                        let mut session = output.session(&cap);
                        // Rows of one output have lines of about one length: sized after the
                        // last row's, a row's text is rarely copied as it grows.
                        let mut hint = 256;
                        for (row, diff) in updates {
                            let lines = format.text_only.then(|| {
                                let mut lines = Vec::with_capacity(hint);
                                let mut line_keys = Vec::new();
                                let n = match keys {
                                    None => row.lines(ts, diff, &format, &mut cols, &mut lines),
                                    Some(keys) => {
                                        cols.clear();
                                        row.columns(&format, &mut cols);
                                        for c in &cols {
                                            push_json_line(&mut lines, ts, diff, c);
                                            lines.push(b'\n');
                                            line_keys.push(crate::kafka::sink::key(keys, c));
                                        }
                                        cols.len()
                                    }
                                };
                                hint = lines.len() + 64;
                                (n, lines, line_keys)
                            });
                            session.give(((row, diff, lines), ts, 1));
                        }
                    }
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The logged, lazily consolidated contents equal a map updated change by change, with
        /// only the most recent tombstones kept. Rows are `(retired, n)`; a tombstone is never
        /// retracted and never sent twice, as the windows emit them.
        #[test]
        fn contents_equal_a_map_updated_per_change(
            changes in proptest::collection::vec((0u16..300, any::<bool>(), 0u8..10), 0..6000)
        ) {
            let mut contents = Contents::default();
            let mut map: BTreeMap<(bool, u32), isize> = BTreeMap::new();
            let mut retired = std::collections::VecDeque::new();
            let mut next_tombstone = 1000u32;
            for (row, add, kind) in changes {
                let (r, d) = if kind == 0 {
                    next_tombstone += 1;
                    ((true, next_tombstone), 1)
                } else {
                    ((false, u32::from(row)), if add { 1 } else { -1 })
                };
                let e = map.entry(r).or_insert(0);
                *e += d;
                if *e == 0 {
                    map.remove(&r);
                }
                if r.0 {
                    retired.push_back(r);
                    if retired.len() > RETIRED_KEPT {
                        let old = retired.pop_front().unwrap();
                        map.remove(&old);
                    }
                }
                contents.update(r, d, r.0);
            }
            let want: Vec<(bool, u32)> = map.keys().copied().collect();
            prop_assert_eq!(contents.rows(), want);
        }
    }
}
