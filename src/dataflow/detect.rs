//! Concept-drift detectors over the production model's prequential error stream.
//!
//! Semantics: every labeled prediction, when it becomes labeled, is one error value (1 when the
//! prediction at the job's threshold disagrees with the label) fed to each configured detector
//! of its model version. Order: by the timestamp it became labeled at, then event time, event
//! id; a relabel is a new example. A detection is an output row at that timestamp, with the example's position in the model's stream.
//! State: the detectors, on worker 0. They depend on the whole history, so their state is
//! snapshotted at every segment boundary and committed with the replay buffer: a restart or a
//! replay continues from a snapshot instead of from an empty state.

use std::collections::BTreeMap;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::join::Labeled;
use super::ordered::{in_order, Snapshots};
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
    models: BTreeMap<crate::records::Text, ModelDetectors>,
}

/// Runs the detectors over `labeled`, from `state` as of timestamp `first`; `snapshots`
/// (worker 0 of a recording run) receives the state at every multiple of `segment_ms`.
#[allow(clippy::too_many_arguments)]
pub fn detect<'s>(
    name: &str,
    labeled: VecCollection<'s, u64, Labeled>,
    specs: Vec<DetectorSpec>,
    threshold: f64,
    segment_ms: u64,
    state: Option<DetectorState>,
    first: u64,
    snapshots: Option<Snapshots>,
) -> VecCollection<'s, u64, DetectionRow> {
    let threshold = (threshold * MICRO as f64).round() as i64;
    let examples = labeled.map(move |(e, p, l)| {
        let error = ((p.score >= threshold) as u8 != l.label) as u8;
        (e.time, e.id.clone(), p.model.clone(), error)
    });
    in_order(
        examples,
        &format!("{name}.DriftDetectors"),
        state.unwrap_or_default(),
        Vec::new(),
        first,
        segment_ms,
        snapshots,
        |state: &mut DetectorState| serde_json::to_vec(state).expect("state serializes").into(),
        move |state, _t, batch, out| {
            for ((time, id, model, error), r) in batch {
                let m = state
                    .models
                    .entry(model.clone())
                    .or_insert_with(|| ModelDetectors {
                        seen: 0,
                        detectors: specs.iter().map(Detector::new).collect(),
                    });
                for _ in 0..r.max(0) {
                    m.seen += 1;
                    for (i, det) in m.detectors.iter_mut().enumerate() {
                        if det.update(error as f64) == Signal::Drift {
                            let row = DetectionRow {
                                model: model.to_string(),
                                detector: i as u16,
                                position: m.seen,
                                event_id: id.to_string(),
                                event_time: time,
                                detail: det.detail(),
                            };
                            out.push((row, 1));
                        }
                    }
                }
            }
        },
    )
}
