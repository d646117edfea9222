//! Per-partition watermarks and the timestamp each record is given.
//!
//! A partition's watermark is the largest own time it has delivered minus the allowed disorder.
//! A record is stamped with its own time rounded down to the tick, or with the partition's
//! watermark tick if that is later; past `max_lateness` behind the watermark it is refused.
//! Stamping depends only on the partition's own order, never on how partitions interleave, so
//! every worker count gives every record the same timestamp.
//!
//! No single record moves the watermark far: a record more than `max_jump` ahead of the
//! watermark is held back, and the partition's next records decide. If `confirm` of them in a
//! row agree with it (far ahead too, within `max_jump` of it), the jump is genuine and the held
//! records are stamped in order; the first record that does not agree refuses them all (dead
//! letters naming the jump) and is stamped as usual. A partition that ends with records held
//! refuses them. Counting records, not wall-clock time, keeps this deterministic.

/// Rounds an epoch-millisecond time down to a multiple of `tick`.
pub fn tick_floor(t: u64, tick: u64) -> u64 {
    t - t % tick
}

/// How far ahead of its partition's watermark a record may be before it needs confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JumpBound {
    /// The largest jump (ms ahead of the watermark) a single record may make.
    pub max_jump: u64,
    /// How many following records in a row must agree before a larger jump is taken.
    pub confirm: usize,
}

impl JumpBound {
    /// Never holds a record back.
    pub const NONE: JumpBound = JumpBound {
        max_jump: u64::MAX,
        confirm: 0,
    };
}

/// Watermark bookkeeping for one source partition.
#[derive(Debug, Clone)]
pub struct Stamper {
    tick: u64,
    disorder: u64,
    max_lateness: u64,
    jump: JumpBound,
    max_seen: Option<u64>,
    floor: u64,
}

/// What becomes of a record offered to [`Stamper::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamped {
    /// Accepted at this timestamp.
    At(u64),
    /// Refused: too late, or an unconfirmed jump ahead.
    Refused(TooLate),
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
            jump: JumpBound::NONE,
            max_seen: None,
            floor: 0,
        }
    }

    /// Holds back records further than `jump.max_jump` ahead of the watermark until confirmed.
    pub fn with_jump(mut self, jump: JumpBound) -> Self {
        self.jump = jump;
        self
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

    /// Whether `own` lies further ahead of the watermark than one record may move it.
    fn far(&self, own: u64) -> bool {
        self.max_seen.is_some() && own > self.watermark().saturating_add(self.jump.max_jump)
    }

    /// Offers a record whose own time is `own`: what is decided (this record, or records held
    /// before it) goes to `out` in the partition's order; a record far ahead waits in `held`.
    pub fn admit<T>(
        &mut self,
        own: u64,
        item: T,
        held: &mut Vec<(u64, T)>,
        out: &mut Vec<(T, Stamped)>,
    ) {
        if let Some(&(anchor, _)) = held.first() {
            if self.far(own) && own.abs_diff(anchor) <= self.jump.max_jump {
                held.push((own, item));
                if held.len() > self.jump.confirm {
                    for (o, it) in held.drain(..) {
                        let s = self.stamp_one(o);
                        out.push((it, s));
                    }
                }
                return;
            }
            self.refuse_held(held, out, "the partition's next record does not confirm it");
        }
        if self.far(own) && self.jump.confirm > 0 {
            held.push((own, item));
            return;
        }
        let s = self.stamp_one(own);
        out.push((item, s));
    }

    /// Refuses every held record (the partition ended before they were confirmed).
    pub fn finish<T>(&mut self, held: &mut Vec<(u64, T)>, out: &mut Vec<(T, Stamped)>) {
        self.refuse_held(held, out, "the partition ended before records confirmed it");
    }

    fn refuse_held<T>(&self, held: &mut Vec<(u64, T)>, out: &mut Vec<(T, Stamped)>, why: &str) {
        let wm = self.watermark();
        let ts = self.frontier();
        for (o, it) in held.drain(..) {
            let reason = format!(
                "time {o} is {} ms ahead of the partition watermark {wm}, past max_jump_ms {}; {why}",
                o - wm,
                self.jump.max_jump
            );
            out.push((it, Stamped::Refused(TooLate { ts, reason })));
        }
    }

    fn stamp_one(&mut self, own: u64) -> Stamped {
        match self.stamp(own) {
            Ok(ts) => Stamped::At(ts),
            Err(late) => Stamped::Refused(late),
        }
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

    fn run(s: &mut Stamper, times: &[u64]) -> Vec<(u64, Stamped)> {
        let (mut held, mut out) = (Vec::new(), Vec::new());
        for &t in times {
            s.admit(t, t, &mut held, &mut out);
        }
        s.finish(&mut held, &mut out);
        out
    }

    fn jumpy() -> Stamper {
        Stamper::new(100, 1_000, 5_000).with_jump(JumpBound {
            max_jump: 60_000,
            confirm: 3,
        })
    }

    #[test]
    fn one_far_future_record_moves_nothing() {
        let mut s = jumpy();
        let out = run(&mut s, &[10_000, 11_000, 4_000_000_000_000, 12_000, 13_000]);
        assert_eq!(out.len(), 5);
        // Refused when the next record disagrees; that record and later ones are on time.
        assert_eq!(out[2].0, 4_000_000_000_000);
        let Stamped::Refused(r) = &out[2].1 else {
            panic!("{out:?}")
        };
        assert!(r.reason.contains("past max_jump_ms 60000"), "{}", r.reason);
        assert!(r.reason.contains("does not confirm"), "{}", r.reason);
        assert_eq!(out[3], (12_000, Stamped::At(12_000)));
        assert_eq!(out[4], (13_000, Stamped::At(13_000)));
        assert_eq!(s.max_seen(), Some(13_000));
    }

    #[test]
    fn a_burst_shorter_than_the_confirmation_is_refused() {
        let mut s = jumpy();
        let day = 86_400_000;
        let out = run(&mut s, &[10_000, day, day + 1, day + 2, 12_000]);
        let refused: Vec<u64> = out
            .iter()
            .filter(|(_, s)| matches!(s, Stamped::Refused(_)))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(refused, [day, day + 1, day + 2]);
        assert_eq!(s.max_seen(), Some(12_000));
    }

    #[test]
    fn a_genuine_gap_is_followed_after_confirmation() {
        let mut s = jumpy();
        let gap = 7_200_000;
        let out = run(
            &mut s,
            &[10_000, gap, gap + 100, gap + 50, gap + 300, gap + 400],
        );
        // Held until three more agree, then stamped in order at their own ticks.
        assert!(
            out.iter().all(|(_, s)| matches!(s, Stamped::At(_))),
            "{out:?}"
        );
        assert_eq!(
            out.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [10_000, gap, gap + 100, gap + 50, gap + 300, gap + 400]
        );
        assert_eq!(out[1].1, Stamped::At(gap));
        assert_eq!(s.max_seen(), Some(gap + 400));
    }

    #[test]
    fn records_disagreeing_with_the_held_one_start_over() {
        let mut s = jumpy();
        let (a, b) = (86_400_000, 4_000_000_000_000);
        let out = run(&mut s, &[10_000, a, b, b + 1, b + 2, b + 3, 11_000]);
        // `a` is refused when `b` disagrees; `b` and three agreeing records are a confirmed jump.
        assert!(
            matches!(out[1], (t, Stamped::Refused(_)) if t == a),
            "{out:?}"
        );
        assert!(out[2..6].iter().all(|(_, s)| matches!(s, Stamped::At(_))));
        // After the jump, 11 s is far behind the new watermark: too late.
        assert!(matches!(out[6], (11_000, Stamped::Refused(_))));
    }

    #[test]
    fn a_partition_ending_with_held_records_refuses_them() {
        let mut s = jumpy();
        let out = run(&mut s, &[10_000, 86_400_000]);
        let Stamped::Refused(r) = &out[1].1 else {
            panic!("{out:?}")
        };
        assert!(r.reason.contains("ended"), "{}", r.reason);
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
