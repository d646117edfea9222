//! History-dependent operators: one worker processes each complete timestamp in order, and
//! their state is snapshotted at every segment boundary for the replay buffer.
//!
//! Such an operator (the drift detectors, the learner) depends on the whole history, not on a
//! window of it, so a restart or a replay cannot rebuild it from one state horizon of records:
//! it continues from a committed snapshot instead. The operator holds a capability just below
//! the next boundary until it has snapshotted there, so the outputs, and so the commit of that
//! boundary, cannot pass it first.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::{Data, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::detect::DetectorState;
use super::timers::{stash, Pending};
use crate::learn::learner::LearnerState;

/// One operator's serialized state: the concatenation of its pieces. Pieces are shared, not
/// copied: consecutive learner snapshots share almost all of their score log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot(pub Vec<bytes::Bytes>);

impl Snapshot {
    /// Appends the serialized state to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for p in &self.0 {
            out.extend_from_slice(p);
        }
    }

    /// The serialized state.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.iter().map(|p| p.len()).sum());
        self.write_to(&mut out);
        out
    }
}

impl From<Vec<u8>> for Snapshot {
    fn from(bytes: Vec<u8>) -> Snapshot {
        Snapshot(vec![bytes.into()])
    }
}

/// Snapshots of one operator's state at segment boundaries, shared with the checkpointer:
/// first boundary → (last boundary it holds for, serialized state).
pub type Snapshots = Rc<RefCell<BTreeMap<u64, (u64, Snapshot)>>>;

/// The snapshot that holds at boundary `at`, if taken.
pub fn snapshot_at(snapshots: &BTreeMap<u64, (u64, Snapshot)>, at: u64) -> Option<&Snapshot> {
    snapshots
        .range(..=at)
        .next_back()
        .filter(|(_, (last, _))| *last >= at)
        .map(|(_, (_, s))| s)
}

/// The committed state of every history-dependent operator at one boundary: one state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpState {
    /// The drift detectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<DetectorState>,
    /// The learner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learner: Option<Box<LearnerState>>,
    /// The alert rules' state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<crate::alerts::AlertState>,
    /// The join's verdict totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<super::verdicts::VerdictTotals>,
}

/// Where the history-dependent operators start: their state and the first timestamp they process.
#[derive(Debug, Clone, Default)]
pub struct StateStart {
    /// The state as of `at`; empty state if `None`.
    pub state: Option<OpState>,
    /// Updates before this timestamp are already in the state.
    pub at: u64,
}

/// Runs `step(state, t, updates, out)` on worker 0 for every timestamp `t ≥ first`, in order,
/// once `t` is complete, with `t`'s consolidated updates; `out` receives `(output, diff)` pairs
/// emitted at `t`. `snapshot(state)` is stored in `snapshots` at every multiple of `segment_ms`.
/// `earlier` are outputs of times before `first` that downstream state still needs (a restart
/// does not recompute them); they are emitted at their own times.
#[allow(clippy::too_many_arguments)]
pub fn in_order<'s, D, O, S, F, G>(
    coll: VecCollection<'s, u64, D>,
    name: &str,
    mut state: S,
    earlier: Vec<(O, u64, isize)>,
    first: u64,
    segment_ms: u64,
    snapshots: Option<Snapshots>,
    mut snapshot: G,
    mut step: F,
) -> VecCollection<'s, u64, O>
where
    D: ExchangeData + Ord,
    O: Data,
    S: 'static,
    F: FnMut(&mut S, u64, Vec<(D, isize)>, &mut Vec<(O, isize)>) + 'static,
    G: FnMut(&mut S) -> Snapshot + 'static,
{
    // Only worker 0 receives the input, so only it holds a state and its earlier outputs.
    let earlier = if coll.inner.scope().index() == 0 {
        earlier
    } else {
        Vec::new()
    };
    coll.inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(O, u64, isize)>>, _, _, _>(
            Exchange::new(|_| 0u64),
            name,
            move |cap, _| {
                let mut pending: Pending<Vec<(D, isize)>> = BTreeMap::new();
                let mut next_snapshot = first.div_ceil(segment_ms) * segment_ms;
                let mut hold = Some(cap);
                let mut earlier = Some(earlier);
                let mut produced = Vec::new();
                move |(input, frontier), output| {
                    if let (Some(mut outs), Some(h)) = (earlier.take(), hold.as_mut()) {
                        outs.sort_by_key(|(_, t, _)| *t);
                        for (o, t, r) in outs {
                            output.session(&h.delayed(&t)).give((o, t, r));
                        }
                        h.downgrade(&next_snapshot.saturating_sub(1));
                    }
                    let port = output.output_index();
                    input.for_each(|cap, data| {
                        stash(&mut pending, &cap, port, data, |s, d, _, r| s.push((d, r)));
                    });
                    // The state is the same at every boundary from `next` up to `upto`: one
                    // snapshot covers them all.
                    let mut snap = |state: &mut S, upto: u64, next: &mut u64| {
                        if *next > upto {
                            return;
                        }
                        let last = if upto == u64::MAX {
                            u64::MAX
                        } else {
                            upto - upto % segment_ms
                        };
                        if let Some(s) = &snapshots {
                            s.borrow_mut().insert(*next, (last, snapshot(state)));
                        }
                        *next = last.saturating_add(segment_ms);
                    };
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let t = *entry.key();
                        let (cap, mut batch) = entry.remove();
                        // Everything below `t` is processed: boundaries up to `t` are due.
                        snap(&mut state, t, &mut next_snapshot);
                        if t < first {
                            continue;
                        }
                        differential_dataflow::consolidation::consolidate(&mut batch);
                        step(&mut state, t, batch, &mut produced);
                        if !produced.is_empty() {
                            let mut session = output.session(&cap);
                            for (o, r) in produced.drain(..) {
                                session.give((o, t, r));
                            }
                        }
                    }
                    match frontier.frontier().first() {
                        Some(f) => {
                            snap(&mut state, *f, &mut next_snapshot);
                            if let Some(h) = hold.as_mut() {
                                h.downgrade(&next_snapshot.saturating_sub(1));
                            }
                        }
                        None => {
                            // Input complete: this state holds at every later boundary.
                            if hold.take().is_some() {
                                snap(&mut state, u64::MAX, &mut next_snapshot);
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}
