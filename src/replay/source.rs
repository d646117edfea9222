//! Feeding a replay buffer back: committed segments, in timestamp order, at their recorded
//! timestamps.
//!
//! Segment ranges are divided among workers (range `i` to worker `i % peers`); each worker
//! holds its capability at the start of its next range, so the frontier advances exactly as
//! the recorded timestamps allow. Ranges are loaded one at a time and paced against the
//! outputs, which bounds memory on long replays.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use super::segment::{read_segment, SegmentMeta};
use crate::sources::Ingested;

/// What to replay: segments grouped by range, ascending, and the timestamp to stop below.
#[derive(Debug, Clone, Default)]
pub struct ReplayFeed {
    /// The buffer directory.
    pub dir: PathBuf,
    /// Segments of each range (one per buffer stream at most), by ascending range start.
    pub ranges: Vec<Vec<SegmentMeta>>,
    /// Records stamped at or above this are not fed.
    pub below: u64,
    /// Records stamped below this are fed at this time instead: the state they build is the
    /// same from this time on, with far fewer distinct times to process (outputs before it
    /// must be muted).
    pub settle_at: u64,
}

impl ReplayFeed {
    /// Groups `segments` by their range.
    pub fn new(dir: PathBuf, segments: &[SegmentMeta], below: u64, settle_at: u64) -> ReplayFeed {
        let mut by_start: BTreeMap<u64, Vec<SegmentMeta>> = BTreeMap::new();
        for s in segments.iter().filter(|s| s.ts_start < below) {
            by_start.entry(s.ts_start).or_default().push(s.clone());
        }
        ReplayFeed {
            dir,
            ranges: by_start.into_values().collect(),
            below,
            settle_at,
        }
    }
}

/// Builds this worker's replay source; `pace` is the probe on the job's outputs.
pub fn replay<'s>(
    scope: Scope<'s, u64>,
    name: &str,
    feed: Arc<ReplayFeed>,
    pace: ProbeHandle<u64>,
    lead: u64,
) -> VecCollection<'s, u64, Ingested> {
    let index = scope.index();
    let peers = scope.peers();
    source::<_, CapacityContainerBuilder<Vec<(Ingested, u64, isize)>>, _, _>(
        scope,
        &format!("{name}.Replay"),
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mine: Vec<Vec<SegmentMeta>> = feed
                .ranges
                .iter()
                .enumerate()
                .filter(|(i, _)| i % peers == index)
                .map(|(_, r)| r.clone())
                .collect();
            let mut next = 0;
            let mut cap = mine.first().map(|r| {
                let mut c = cap;
                c.downgrade(&r[0].ts_start);
                c
            });
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                let range = &mine[next];
                let start = range[0].ts_start;
                let limit = pace
                    .with_frontier(|f| f.first().copied())
                    .unwrap_or(u64::MAX)
                    .saturating_add(lead);
                if start > limit {
                    activator.activate_after(Duration::from_micros(200));
                    return;
                }
                let mut by_ts: BTreeMap<u64, Vec<(Ingested, u64, isize)>> = BTreeMap::new();
                for seg in range {
                    // Checksums were verified before the run; a failure here means the file
                    // changed under a running replay.
                    let rows = read_segment(&feed.dir, seg)
                        .unwrap_or_else(|e| panic!("replay segment changed while replaying: {e}"));
                    for (t, item) in rows.into_iter().filter(|(t, _)| *t < feed.below) {
                        let t = t.max(feed.settle_at);
                        by_ts.entry(t).or_default().push((item, t, 1));
                    }
                }
                for (t, mut batch) in by_ts {
                    output.session(&c.delayed(&t)).give_container(&mut batch);
                }
                next += 1;
                match mine.get(next) {
                    Some(r) => {
                        c.downgrade(&r[0].ts_start);
                        activator.activate();
                    }
                    None => cap = None,
                }
            }
        },
    )
    .as_collection()
}
