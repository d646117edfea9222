//! Capabilities of frontier-driven operators: per-timestamp pending input, and one capability
//! held at the earliest pending timer.
//!
//! Operators that act at data-dependent times (a window becoming final or retiring, a join slot
//! expiring) keep their timers in a map by time and hold one capability: at the earliest
//! timer, so the frontier downstream waits for exactly that and no longer.

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

/// Input waiting for its timestamp to complete, with a capability for that timestamp.
pub type Pending<S> = BTreeMap<u64, (Capability<u64>, S)>;

/// The pending state of timestamp `t`, created (with a capability for `t` on output `port`,
/// derived from the message's `cap`) if it is new.
pub fn pending_at<'a, S: Default>(
    pending: &'a mut Pending<S>,
    cap: &InputCapability<u64>,
    port: usize,
    t: u64,
) -> &'a mut S {
    &mut pending
        .entry(t)
        .or_insert_with(|| (cap.delayed(&t, port), S::default()))
        .1
}

/// Files each update of a message under its timestamp's pending state (created as
/// [`pending_at`] does) with `add(state, data, time, diff)`: one lookup per run of updates with
/// the same timestamp, which is nearly always the whole message.
pub fn stash<S: Default, D>(
    pending: &mut Pending<S>,
    cap: &InputCapability<u64>,
    port: usize,
    data: &mut Vec<(D, u64, isize)>,
    add: impl FnMut(&mut S, D, u64, isize),
) {
    stash_with(pending, cap, port, data, S::default, add)
}

/// [`stash`], a new timestamp's state made by `fresh` (a recycled one, say).
pub fn stash_with<S, D>(
    pending: &mut Pending<S>,
    cap: &InputCapability<u64>,
    port: usize,
    data: &mut Vec<(D, u64, isize)>,
    mut fresh: impl FnMut() -> S,
    mut add: impl FnMut(&mut S, D, u64, isize),
) {
    let mut updates = data.drain(..).peekable();
    while let Some((d, t, r)) = updates.next() {
        let state = &mut pending
            .entry(t)
            .or_insert_with(|| (cap.delayed(&t, port), fresh()))
            .1;
        add(state, d, t, r);
        while let Some((d, _, r)) = updates.next_if(|u| u.1 == t) {
            add(state, d, t, r);
        }
    }
}

/// The capability of an operator's earliest pending timer, if any.
#[derive(Debug, Default)]
pub struct TimerHold(Option<Capability<u64>>);

impl TimerHold {
    /// Holds a capability at or below `at`, derived from `cap` (whose time is at most `at`).
    pub fn cover(&mut self, cap: &Capability<u64>, at: u64) {
        if self.0.as_ref().is_none_or(|h| *h.time() > at) {
            self.0 = Some(cap.delayed(&at));
        }
    }

    /// A capability for a due timer at `t`.
    ///
    /// Panics if no timer is held: a due timer was covered when it was set.
    pub fn at(&self, t: u64) -> Capability<u64> {
        self.0
            .as_ref()
            .expect("a pending timer is held")
            .delayed(&t)
    }

    /// The earliest timestamp the `frontier` has passed with pending input or a due timer: its
    /// capability and its input (empty if only timers are due).
    pub fn next_due<S: Default, V>(
        &self,
        pending: &mut Pending<S>,
        timers: &BTreeMap<u64, V>,
        frontier: &MutableAntichain<u64>,
    ) -> Option<(u64, Capability<u64>, S)> {
        let t = match (pending.keys().next(), timers.keys().next()) {
            (Some(a), Some(b)) => *a.min(b),
            (Some(a), None) => *a,
            (None, Some(b)) => *b,
            (None, None) => return None,
        };
        if frontier.less_equal(&t) {
            return None;
        }
        let (cap, input) = pending
            .remove(&t)
            .unwrap_or_else(|| (self.at(t), S::default()));
        Some((t, cap, input))
    }

    /// Keeps only what the earliest remaining timer `next` needs.
    pub fn release_to(&mut self, next: Option<u64>) {
        match (next, self.0.as_mut()) {
            (Some(next), Some(h)) if *h.time() < next => h.downgrade(&next),
            (Some(_), _) => {}
            (None, _) => self.0 = None,
        }
    }
}
