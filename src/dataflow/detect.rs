//! Concept-drift detectors over the production model's prequential error stream.
//!
//! Semantics: every labeled prediction, when it becomes labeled, is one error value (1 when the
//! prediction at the job's threshold disagrees with the label) fed to each configured detector
//! of its model version. Order: by the timestamp it became labeled at, then event time, event
//! id; a relabel is a new example. A detection is an output row at that timestamp, with the example's position in the model's stream.
//! State: the detectors, on worker 0. They depend on the whole history, so their state is
//! snapshotted at every segment boundary and committed with the replay buffer: a restart or a
//! replay continues from a snapshot instead of from an empty state.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::Capability;

use super::join::Labeled;
use crate::drift::detectors::{Detector, DetectorSpec, Signal};
use crate::records::MICRO;

/// One detection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DetectionRow {
    /// Model version whose errors were watched.
    pub model: String,
    /// Index of the detector in the job's list.
    pub detector: u16,
    /// 1-based position of the example in the model's error stream.
    pub position: u64,
    /// The example's event id.
    pub event_id: String,
    /// Its event time.
    pub event_time: u64,
    /// The detector's own account of the change.
    pub detail: String,
}

/// The detectors of one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ModelDetectors {
    seen: u64,
    detectors: Vec<Detector>,
}

/// The detectors of every model version: the operator's whole state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorState {
    models: BTreeMap<String, ModelDetectors>,
}

/// Snapshots of the detector state at segment boundaries, shared with the checkpointer: first
/// boundary → (last boundary it holds for, state).
pub type Snapshots = Rc<RefCell<BTreeMap<u64, (u64, Vec<u8>)>>>;

/// The snapshot that holds at boundary `at`, if taken.
pub fn snapshot_at(snapshots: &BTreeMap<u64, (u64, Vec<u8>)>, at: u64) -> Option<&[u8]> {
    snapshots
        .range(..=at)
        .next_back()
        .filter(|(_, (last, _))| *last >= at)
        .map(|(_, (_, bytes))| bytes.as_slice())
}

/// Where the detectors start: their state and the first timestamp they process.
#[derive(Debug, Clone, Default)]
pub struct DetectStart {
    /// The state as of `at`; empty state if `None`.
    pub state: Option<DetectorState>,
    /// Examples labeled before this timestamp are already in the state.
    pub at: u64,
}

/// Runs the detectors over `labeled`; `snapshots` (worker 0 of a recording run) receives the
/// state at every multiple of `segment_ms`.
pub fn detect<'s>(
    name: &str,
    labeled: VecCollection<'s, u64, Labeled>,
    specs: Vec<DetectorSpec>,
    threshold: f64,
    segment_ms: u64,
    start: DetectStart,
    snapshots: Option<Snapshots>,
) -> VecCollection<'s, u64, DetectionRow> {
    let threshold = (threshold * MICRO as f64).round() as i64;
    let mut state = start.state.unwrap_or_default();
    let examples = labeled.map(move |(e, p, l)| {
        let error = ((p.score >= threshold) as u8 != l.label) as u8;
        (e.time, e.id, p.model, error)
    });
    let first = start.at;
    let stream = examples
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(DetectionRow, u64, isize)>>, _, _, _>(
            Exchange::new(|_| 0u64),
            &format!("{name}.DriftDetectors"),
            move |cap, _| {
                let mut pending: BTreeMap<u64, (Capability<u64>, Vec<_>)> = BTreeMap::new();
                // The next segment boundary whose snapshot is due. A capability held just below
                // it keeps the outputs (and so the commit of that boundary) from reaching it
                // before the snapshot is taken.
                let mut next_snapshot = first.div_ceil(segment_ms) * segment_ms;
                let mut hold = Some(cap);
                if let Some(h) = hold.as_mut() {
                    h.downgrade(&next_snapshot.saturating_sub(1));
                }
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        for (d, t, r) in data.drain(..) {
                            pending
                                .entry(t)
                                .or_insert_with(|| {
                                    (cap.delayed(&t, output.output_index()), Vec::new())
                                })
                                .1
                                .push((d, r));
                        }
                    });
                    // The state is the same at every boundary from `next` up to `upto`: one
                    // snapshot covers them all.
                    let snap = |state: &DetectorState, upto: u64, next: &mut u64| {
                        if *next > upto {
                            return;
                        }
                        let last = if upto == u64::MAX {
                            u64::MAX
                        } else {
                            upto - upto % segment_ms
                        };
                        if let Some(s) = &snapshots {
                            let bytes = serde_json::to_vec(state).expect("state serializes");
                            s.borrow_mut().insert(*next, (last, bytes));
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
                        snap(&state, t, &mut next_snapshot);
                        if t < first {
                            continue;
                        }
                        differential_dataflow::consolidation::consolidate(&mut batch);
                        let mut session = output.session(&cap);
                        for ((time, id, model, error), r) in batch {
                            let m = state.models.entry(model.clone()).or_insert_with(|| {
                                ModelDetectors {
                                    seen: 0,
                                    detectors: specs.iter().map(Detector::new).collect(),
                                }
                            });
                            for _ in 0..r.max(0) {
                                m.seen += 1;
                                for (i, det) in m.detectors.iter_mut().enumerate() {
                                    if det.update(error as f64) == Signal::Drift {
                                        let row = DetectionRow {
                                            model: model.clone(),
                                            detector: i as u16,
                                            position: m.seen,
                                            event_id: id.clone(),
                                            event_time: time,
                                            detail: det.detail(),
                                        };
                                        session.give((row, t, 1));
                                    }
                                }
                            }
                        }
                    }
                    match frontier.frontier().first() {
                        Some(f) => {
                            snap(&state, *f, &mut next_snapshot);
                            if let Some(h) = hold.as_mut() {
                                // Below the boundary: the outputs (and so a commit) cannot reach
                                // it until its snapshot exists.
                                h.downgrade(&next_snapshot.saturating_sub(1));
                            }
                        }
                        None => {
                            // Input complete: this state holds at every later boundary.
                            if hold.take().is_some() {
                                snap(&state, u64::MAX, &mut next_snapshot);
                            }
                        }
                    }
                }
            },
        );
    stream.as_collection()
}
