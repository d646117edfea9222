//! The join's verdicts on single records (duplicates, too-late and orphaned labels), totalled
//! for the `ingest` changelog.
//!
//! Semantics: per stream, the number of duplicates refused; for labels, the number too late for
//! their event's windows and the number orphaned, and the largest latency of a too-late label.
//! Each total is emitted as `(stream, (kind, value))`, retracting its previous value, in the
//! shape the ingest counts take after counting. Time: at the timestamp of the verdicts that
//! change it. State: the totals, on worker 0. They depend on the whole history, and a verdict
//! depends on what the join remembers of earlier records, which a replay of one state horizon
//! rebuilds only from its start on: the totals are snapshotted at every segment boundary and a
//! restart or a replay continues from a snapshot, with the verdicts before it discarded.
//! Failure modes: none.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::join::Verdict;
use super::ordered::{in_order, Snapshots};
use crate::schema::Stream;

/// The ingest count kind of duplicates (beside 0 read, 1 accepted, 2 dead-lettered).
pub const DUPLICATES: u8 = 3;
/// The ingest count kind of labels too late for their event's windows.
pub const TOO_LATE: u8 = 4;
/// The ingest count kind of orphaned labels.
pub const ORPHANED: u8 = 5;
/// The ingest kind of the largest latency of a too-late label, ms.
pub const TOO_LATE_MAX: u8 = 6;

/// The totals: the operator's whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictTotals {
    /// Duplicates per stream, in [`Stream::ALL`] order.
    pub duplicates: [i64; 3],
    /// Labels too late for their event's windows.
    pub too_late: i64,
    /// Orphaned labels.
    pub orphaned: i64,
    /// The largest latency of a too-late label (its timestamp minus its event's time), ms.
    pub too_late_max_ms: u64,
}

impl VerdictTotals {
    /// The totals as ingest values, zeros left out.
    fn values(&self) -> Vec<(Stream, (u8, i64))> {
        let mut out: Vec<(Stream, (u8, i64))> = Stream::ALL
            .into_iter()
            .map(|s| (s, (DUPLICATES, self.duplicates[s.index()])))
            .collect();
        out.push((Stream::Labels, (TOO_LATE, self.too_late)));
        out.push((Stream::Labels, (ORPHANED, self.orphaned)));
        out.push((Stream::Labels, (TOO_LATE_MAX, self.too_late_max_ms as i64)));
        out.retain(|(_, (_, n))| *n != 0);
        out
    }
}

/// Totals `verdicts` from `state` as of timestamp `first` (`…Verdicts`); `snapshots` (worker 0
/// of a recording run) receives the totals at every multiple of `segment_ms`.
pub fn totals<'s>(
    verdicts: VecCollection<'s, u64, Verdict>,
    name: &str,
    state: Option<VerdictTotals>,
    first: u64,
    segment_ms: u64,
    snapshots: Option<Snapshots>,
) -> VecCollection<'s, u64, (Stream, (u8, i64))> {
    let state = state.unwrap_or_default();
    // The totals before `first` stand where a restart found them.
    let earlier = state.values().into_iter().map(|v| (v, 0, 1)).collect();
    in_order(
        verdicts,
        &format!("{name}.Verdicts"),
        state,
        earlier,
        first,
        segment_ms,
        snapshots,
        |state: &mut VerdictTotals| serde_json::to_vec(state).expect("totals serialize").into(),
        |state, _t, batch, out| {
            let before = state.values();
            for (v, r) in batch {
                let r = r as i64;
                match v {
                    Verdict::Duplicate(s) => state.duplicates[s.index()] += r,
                    Verdict::TooLate(latency) => {
                        state.too_late += r;
                        state.too_late_max_ms = state.too_late_max_ms.max(latency);
                    }
                    Verdict::Orphaned => state.orphaned += r,
                }
            }
            let after = state.values();
            if before != after {
                out.extend(before.into_iter().map(|v| (v, -1)));
                out.extend(after.into_iter().map(|v| (v, 1)));
            }
        },
    )
}
