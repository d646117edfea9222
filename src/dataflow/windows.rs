//! Event-time windows, window status and segments.
//!
//! A window is **provisional** until the watermark reaches `end + label_horizon`, then **final**;
//! it is **retired** (leaves state) at `end + retention`. Because timestamps are event-time
//! ticks, both times are known from the window itself.

use ahash::AHashMap;

use serde::{Deserialize, Serialize};

use crate::config::{Job, WindowKind};
use crate::records::Event;

/// One window of one window family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Win {
    /// Index of the family in the job's `windows`.
    pub family: u16,
    /// Inclusive start, epoch ms.
    pub start: u64,
    /// Exclusive end, epoch ms.
    pub end: u64,
}

/// Lifecycle of a window's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Labels may still arrive within the horizon.
    Provisional,
    /// The label horizon has passed; later changes are amendments by late records.
    Final,
    /// The window left state; this is its last value.
    Retired,
}

impl Status {
    /// The status name written to outputs.
    pub fn name(self) -> &'static str {
        match self {
            Status::Provisional => "provisional",
            Status::Final => "final",
            Status::Retired => "retired",
        }
    }
}

/// Window arithmetic for a job.
#[derive(Debug, Clone)]
pub struct Windows {
    families: Vec<(WindowKind, u64, u64)>,
    names: Vec<String>,
    horizon: u64,
    retention: u64,
}

impl Windows {
    /// The windows of `job`.
    pub fn new(job: &Job) -> Windows {
        Windows {
            families: job
                .spec
                .windows
                .iter()
                .map(|w| (w.kind, w.size_ms, w.slide_ms.unwrap_or(w.size_ms)))
                .collect(),
            names: job.spec.windows.iter().map(|w| w.name.clone()).collect(),
            horizon: job.spec.time.label_horizon_ms,
            retention: job.spec.time.retention_ms,
        }
    }

    /// Every window that contains time `t`, in a fixed order.
    pub fn of(&self, t: u64) -> Vec<Win> {
        let mut out = Vec::new();
        for (family, (_, size, slide)) in self.families.iter().enumerate() {
            let mut start = t - t % slide;
            loop {
                out.push(Win {
                    family: family as u16,
                    start,
                    end: start + size,
                });
                if start < *slide || start - slide + size <= t {
                    break;
                }
                start -= slide;
            }
        }
        out
    }

    /// The time at which `w` becomes final.
    pub fn final_at(&self, w: &Win) -> u64 {
        w.end + self.horizon
    }

    /// The time at which `w` is retired.
    pub fn retire_at(&self, w: &Win) -> u64 {
        w.end + self.retention
    }

    /// When the last window containing `t` retires: per family the latest of them starts at
    /// `t - t % slide` (as in [`Windows::of`]), so nothing is allocated.
    pub fn last_retire(&self, t: u64) -> u64 {
        self.families
            .iter()
            .map(|(_, size, slide)| t - t % slide + size + self.retention)
            .max()
            .unwrap_or(0)
    }

    /// The pane length: the gcd of every window size and slide, so that each window is a union
    /// of whole panes.
    pub fn pane_ms(&self) -> u64 {
        fn gcd(a: u64, b: u64) -> u64 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        self.families
            .iter()
            .fold(0, |g, (_, size, slide)| gcd(gcd(g, *size), *slide))
            .max(1)
    }

    /// The name of `w`'s family.
    pub fn name(&self, w: &Win) -> &str {
        &self.names[w.family as usize]
    }
}

/// The overall segment's name.
pub const ALL: &str = "all";

/// Names interned per segment column (or of models) before the cache starts over.
const NAMES_CACHED: usize = 65_536;

/// Segment names of events and model names of predictions, interned by content (the same
/// names in every worker, whatever the arrival order), so that pane groups share them.
#[derive(Debug, Clone)]
pub struct Names {
    all: std::sync::Arc<str>,
    /// Per segment column: its categorical index, name, interned values and null name.
    columns: Vec<(
        usize,
        String,
        AHashMap<String, std::sync::Arc<str>>,
        std::sync::Arc<str>,
    )>,
    models: AHashMap<String, std::sync::Arc<str>>,
}

impl Names {
    /// The segment columns of `job`.
    pub fn new(job: &Job) -> Names {
        let names = &job.schema(crate::schema::Stream::Events).categorical;
        Names {
            all: std::sync::Arc::from(ALL),
            columns: job
                .segment_idx
                .iter()
                .map(|&i| {
                    let null = std::sync::Arc::from(format!("{}=<null>", names[i]).as_str());
                    (i, names[i].clone(), AHashMap::new(), null)
                })
                .collect(),
            models: AHashMap::new(),
        }
    }

    /// The segments `e` belongs to, into `out`: the overall one (`all`), then `column=value`
    /// per segment column (`column=<null>` for a null). Computed once per event (the first
    /// aggregation to ask keeps them with it; the others read them).
    pub fn segments(&mut self, e: &Event, out: &mut Vec<std::sync::Arc<str>>) {
        out.clear();
        out.push(self.all.clone());
        let named = e.segments.get_or_init(|| self.name_segments(e));
        out.extend(named.iter().cloned());
    }

    /// `column=value` of every segment column of `e`.
    fn name_segments(&mut self, e: &Event) -> smallvec::SmallVec<[std::sync::Arc<str>; 2]> {
        let mut out = smallvec::SmallVec::new();
        for (i, name, cache, null) in &mut self.columns {
            let s = match e.categorical[*i].as_deref() {
                None => null.clone(),
                Some(v) => match cache.get(v) {
                    Some(s) => s.clone(),
                    None => {
                        let s: std::sync::Arc<str> =
                            std::sync::Arc::from(format!("{name}={v}").as_str());
                        // Interning only shares memory; a flood of distinct values must not
                        // make the cache itself unbounded.
                        if cache.len() >= NAMES_CACHED {
                            cache.clear();
                        }
                        cache.insert(v.to_string(), s.clone());
                        s
                    }
                },
            };
            out.push(s);
        }
        out
    }

    /// The interned name of model `m`.
    pub fn model(&mut self, m: &str) -> std::sync::Arc<str> {
        if let Some(s) = self.models.get(m) {
            return s.clone();
        }
        let s: std::sync::Arc<str> = std::sync::Arc::from(m);
        if self.models.len() >= NAMES_CACHED {
            self.models.clear();
        }
        self.models.insert(m.to_string(), s.clone());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(families: Vec<(WindowKind, u64, u64)>) -> Windows {
        Windows {
            names: families.iter().map(|_| "w".into()).collect(),
            families,
            horizon: 10,
            retention: 20,
        }
    }

    #[test]
    fn tumbling_and_sliding_membership() {
        let w = windows(vec![
            (WindowKind::Tumbling, 100, 100),
            (WindowKind::Sliding, 300, 100),
        ]);
        let got: Vec<(u16, u64)> = w.of(1250).iter().map(|w| (w.family, w.start)).collect();
        assert_eq!(got, vec![(0, 1200), (1, 1200), (1, 1100), (1, 1000)]);
        for win in w.of(1250) {
            assert!(win.start <= 1250 && 1250 < win.end);
        }
        assert_eq!(w.of(50).iter().filter(|w| w.family == 1).count(), 1);
    }

    #[test]
    fn last_retire_is_the_latest_retirement_of_the_windows_containing_t() {
        let w = windows(vec![
            (WindowKind::Tumbling, 300, 300),
            (WindowKind::Sliding, 900, 300),
            (WindowKind::Sliding, 500, 100),
        ]);
        for t in (0..5000).step_by(7) {
            let want = w.of(t).iter().map(|x| w.retire_at(x)).max().unwrap();
            assert_eq!(w.last_retire(t), want, "t = {t}");
        }
    }

    #[test]
    fn panes_divide_every_window() {
        let w = windows(vec![
            (WindowKind::Tumbling, 300, 300),
            (WindowKind::Sliding, 900, 200),
        ]);
        assert_eq!(w.pane_ms(), 100);
        for win in w.of(1250) {
            assert_eq!(win.start % w.pane_ms(), 0);
            assert_eq!(win.end % w.pane_ms(), 0);
        }
    }
}
