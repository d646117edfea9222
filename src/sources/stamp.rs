//! Per-partition watermarks and the timestamp each record is given.
//!
//! A partition's watermark is the largest own time it has delivered minus the allowed disorder.
//! A record is stamped with its own time rounded down to the tick, or with the partition's
//! watermark tick if that is later; past `max_lateness` behind the watermark it is refused.
//! Stamping depends only on the partition's own order, never on how partitions interleave, so
//! every worker count gives every record the same timestamp.

/// Rounds an epoch-millisecond time down to a multiple of `tick`.
pub fn tick_floor(t: u64, tick: u64) -> u64 {
    t - t % tick
}

/// Watermark bookkeeping for one source partition.
#[derive(Debug, Clone)]
pub struct Stamper {
    tick: u64,
    disorder: u64,
    max_lateness: u64,
    max_seen: Option<u64>,
    floor: u64,
}

/// Why a record was refused as too late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLate {
    /// The watermark tick the record would have been stamped with.
    pub ts: u64,
    /// Human reason naming times and the limit.
    pub reason: String,
}

impl Stamper {
    /// A partition that has seen nothing yet.
    pub fn new(tick: u64, disorder: u64, max_lateness: u64) -> Self {
        Stamper {
            tick,
            disorder,
            max_lateness,
            max_seen: None,
            floor: 0,
        }
    }

    /// Restores a partition's bookkeeping from the largest own time it had delivered and its
    /// floor.
    pub fn restored(mut self, max_seen: Option<u64>, floor: u64) -> Self {
        self.max_seen = max_seen;
        self.floor = floor;
        self
    }

    /// The least timestamp the partition may still give (raised when it wakes from idleness).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Raises the floor: a partition that was idle while the others' watermarks moved on
    /// gives its next records at least `floor`, where the frontier has got to.
    pub fn raise(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
    }

    /// The largest own time delivered so far.
    pub fn max_seen(&self) -> Option<u64> {
        self.max_seen
    }

    /// The partition's watermark (not rounded); 0 before its first record.
    pub fn watermark(&self) -> u64 {
        self.max_seen
            .map(|m| m.saturating_sub(self.disorder))
            .unwrap_or(0)
    }

    /// The timely time the partition's capability may be held at.
    pub fn frontier(&self) -> u64 {
        tick_floor(self.watermark(), self.tick).max(self.floor)
    }

    /// Stamps a record whose own time is `own`, advancing the watermark.
    pub fn stamp(&mut self, own: u64) -> Result<u64, TooLate> {
        let wm = self.watermark();
        if own.saturating_add(self.max_lateness) < wm {
            return Err(TooLate {
                ts: self.frontier(),
                reason: format!(
                    "time {own} is {} ms behind the partition watermark {wm}, past max_lateness_ms {}",
                    wm - own,
                    self.max_lateness
                ),
            });
        }
        let ts = tick_floor(own, self.tick).max(self.frontier());
        self.max_seen = Some(self.max_seen.map_or(own, |m| m.max(own)));
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_on_time_late_and_too_late_records() {
        let mut s = Stamper::new(100, 1000, 5000);
        assert_eq!(s.stamp(10_050), Ok(10_000));
        assert_eq!(s.frontier(), 9_000);
        // Within disorder: own tick.
        assert_eq!(s.stamp(9_950), Ok(9_900));
        // Late (below the watermark) but within max lateness: stamped at the watermark tick.
        assert_eq!(s.stamp(20_000), Ok(20_000));
        assert_eq!(s.stamp(15_000), Ok(19_000));
        // Past max lateness.
        let e = s.stamp(13_999).unwrap_err();
        assert_eq!(e.ts, 19_000);
        assert!(
            e.reason.contains("past max_lateness_ms 5000"),
            "{}",
            e.reason
        );
        assert_eq!(s.stamp(14_000), Ok(19_000));
    }

    #[test]
    fn a_raised_floor_delays_stamps_but_not_lateness() {
        let mut s = Stamper::new(100, 1000, 5000);
        assert_eq!(s.stamp(10_050), Ok(10_000));
        s.raise(30_000);
        assert_eq!(s.frontier(), 30_000);
        // On time by its own watermark, so accepted, but given the floor.
        assert_eq!(s.stamp(10_100), Ok(30_000));
        assert!(s.stamp(3_000).is_err());
        let r = Stamper::new(100, 1000, 5000).restored(s.max_seen(), s.floor());
        assert_eq!(r.frontier(), 30_000);
    }
}
