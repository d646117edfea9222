//! A symmetric keyed join of two collections, for the small joins beside the hot path (the
//! online model's scores against the joined events).
//!
//! Semantics: the relational join of the two collections' contents at every timestamp, as a
//! changelog: at a complete timestamp `t`, `ΔA ⋈ B(t⁻) + A(t) ⋈ ΔB`, for values whose event's
//! pane still has a live window at `t`. Every output is about one event and lands in that
//! event's pane, so once the pane's windows have all retired a value can only produce outputs
//! that pane aggregations drop: such values are ignored on input and leave state when their
//! pane retires (the join upstream no longer sends their retractions). A timestamp's outputs
//! are not consolidated: an output added and retracted at one timestamp may both leave, which
//! changes nothing for its readers, pane aggregations that sum what they read (sorting the
//! outputs by their shared events' ids was a seventh of the join's time). Time: processed in
//! timestamp order once both frontiers pass `t`. State: each side's current values per key,
//! dropped when a key's values cancel or their panes retire. Failure modes: none.

use std::collections::BTreeMap;

use smallvec::SmallVec;
use std::hash::Hash;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::{Data, ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;

use super::panes::{owner, Panes};
use super::timers::{stash, Pending};

/// A key's values on each side: nearly always one score, and one or two values beside it
/// (inline: no allocation per key).
type Sides<A, B> = (SmallVec<[(A, isize); 1]>, SmallVec<[(B, isize); 2]>);

/// The event time of a joined value, whose pane decides how long it matters.
pub trait EventTime {
    /// Event time, epoch milliseconds.
    fn event_time(&self) -> u64;
}

/// A join key's hash that decides which worker owns it.
pub trait Route {
    /// The hash the key is routed by (`owner(route, peers)`).
    fn route(&self) -> u64;
}

/// Each key's values on both sides, hashed by `hasher`.
struct State<K, A, B> {
    table: hashbrown::HashTable<(K, Sides<A, B>)>,
    hasher: ahash::RandomState,
}

impl<K: Hash + Eq + Clone, A, B> State<K, A, B> {
    /// The sides of `k`, created if new and then listed in `retiring` at `at()` (a key is
    /// listed once, at its earliest retirement): one lookup per value, and the key is cloned
    /// only into the list.
    fn sides_of(
        &mut self,
        retiring: &mut BTreeMap<u64, Vec<K>>,
        k: K,
        at: impl FnOnce() -> u64,
    ) -> (&K, &mut Sides<A, B>) {
        let hasher = &self.hasher;
        let h = hasher.hash_one(&k);
        let entry = match self
            .table
            .entry(h, |(x, _)| *x == k, |(x, _)| hasher.hash_one(x))
        {
            hashbrown::hash_table::Entry::Occupied(o) => o,
            hashbrown::hash_table::Entry::Vacant(v) => {
                retiring.entry(at()).or_default().push(k.clone());
                v.insert((k, Default::default()))
            }
        };
        let (k, sides) = entry.into_mut();
        (k, sides)
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut Sides<A, B>> {
        let h = self.hasher.hash_one(k);
        self.table.find_mut(h, |(x, _)| x == k).map(|(_, s)| s)
    }

    fn remove(&mut self, k: &K) {
        let h = self.hasher.hash_one(k);
        if let Ok(e) = self.table.find_entry(h, |(x, _)| x == k) {
            e.remove();
        }
    }
}

/// Adds `r` of `v` to a key's short list of values (equal values' multiplicities summed, zeros
/// dropped); whether the list is now empty. Equality, not order: shared values compare by
/// address first.
fn add<V: PartialEq, const N: usize>(list: &mut SmallVec<[(V, isize); N]>, v: V, r: isize) -> bool {
    match list.iter().position(|(x, _)| *x == v) {
        Some(i) => {
            list[i].1 += r;
            if list[i].1 == 0 {
                list.swap_remove(i);
            }
        }
        None => list.push((v, r)),
    }
    list.is_empty()
}

/// Joins `a` and `b` on their keys, emitting `f(key, a, b)` for every matching pair while the
/// values' panes (of `panes`) have a live window. `b` must already be on the worker that owns
/// its key (`owner(key.route())`, as the join's outputs are): it is not exchanged again.
pub fn keyed_join<'s, K, A, B, O, F>(
    a: VecCollection<'s, u64, (K, A)>,
    b: VecCollection<'s, u64, (K, B)>,
    name: &str,
    panes: &Panes,
    f: F,
) -> VecCollection<'s, u64, O>
where
    K: ExchangeData + Hash + Route,
    A: ExchangeData + EventTime,
    B: ExchangeData + EventTime,
    O: Data,
    F: Fn(&K, &A, &B) -> O + 'static,
{
    let panes = panes.clone();
    // When the windows of the pane of event time `e` have all retired.
    let retires = move |e: u64| panes.pane_expiry(panes.pane_of(e));
    let peers = a.inner.scope().peers();
    a.inner
        .binary_frontier::<_, CapacityContainerBuilder<Vec<(O, u64, isize)>>, _, _, _, _>(
            b.inner,
            Exchange::new(move |((k, _), _, _): &((K, A), u64, isize)| owner(k.route(), peers)),
            Pipeline,
            name,
            move |_, _| {
                let mut state: State<K, A, B> = State {
                    table: hashbrown::HashTable::new(),
                    hasher: ahash::RandomState::new(),
                };
                type Changes<A, B> = (Vec<(A, isize)>, Vec<(B, isize)>);
                let mut pending: Pending<Changes<(K, A), (K, B)>> = BTreeMap::new();
                // Keys holding a value whose pane retires at a time, by that time.
                let mut retiring: BTreeMap<u64, Vec<K>> = BTreeMap::new();
                move |(in_a, fa), (in_b, fb), output| {
                    let port = output.output_index();
                    in_a.for_each(|cap, data| {
                        stash(&mut pending, &cap, port, data, |s, d, _, r| {
                            s.0.push((d, r))
                        });
                    });
                    in_b.for_each(|cap, data| {
                        stash(&mut pending, &cap, port, data, |s, d, _, r| {
                            s.1.push((d, r))
                        });
                    });
                    while let Some(entry) = pending.first_entry() {
                        let t = *entry.key();
                        if fa.less_equal(&t) || fb.less_equal(&t) {
                            break;
                        }
                        let (cap, (da, db)) = entry.remove();
                        let mut out = Vec::new();
                        // ΔA against B before t, then ΔB against A after ΔA. The changes are
                        // applied one by one, unsorted: the join is bilinear, so their order
                        // changes no sum of the outputs.
                        for ((k, va), ra) in da {
                            if retires(va.event_time()) <= t {
                                continue;
                            }
                            let at = || retires(va.event_time());
                            let (k, sides) = state.sides_of(&mut retiring, k, at);
                            for (vb, rb) in &sides.1 {
                                out.push((f(k, &va, vb), ra * rb));
                            }
                            if add(&mut sides.0, va, ra) && sides.1.is_empty() {
                                let k = k.clone();
                                state.remove(&k);
                            }
                        }
                        for ((k, vb), rb) in db {
                            if retires(vb.event_time()) <= t {
                                continue;
                            }
                            let at = || retires(vb.event_time());
                            let (k, sides) = state.sides_of(&mut retiring, k, at);
                            for (va, ra) in &sides.0 {
                                out.push((f(k, va, &vb), ra * rb));
                            }
                            if add(&mut sides.1, vb, rb) && sides.0.is_empty() {
                                let k = k.clone();
                                state.remove(&k);
                            }
                        }
                        // Values of retired panes leave (they could only join into retired
                        // windows from now on).
                        while let Some(e) = retiring.first_entry() {
                            if *e.key() > t {
                                break;
                            }
                            for k in e.remove() {
                                let Some(sides) = state.get_mut(&k) else {
                                    continue;
                                };
                                sides.0.retain(|(v, _)| retires(v.event_time()) > t);
                                sides.1.retain(|(v, _)| retires(v.event_time()) > t);
                                let next = sides
                                    .0
                                    .iter()
                                    .map(|(v, _)| retires(v.event_time()))
                                    .chain(sides.1.iter().map(|(v, _)| retires(v.event_time())))
                                    .min();
                                match next {
                                    Some(at) => retiring.entry(at).or_default().push(k),
                                    None => {
                                        state.remove(&k);
                                    }
                                }
                            }
                        }
                        let mut session = output.session(&cap);
                        for (o, r) in out {
                            session.give((o, t, r));
                        }
                    }
                }
            },
        )
        .as_collection()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicU64};
    use std::sync::Arc;

    use differential_dataflow::input::Input;
    use serde::{Deserialize, Serialize};
    use timely::dataflow::operators::capture::{Capture, Extract};

    use super::*;
    use crate::dataflow::windows::Windows;

    /// A value with its event time.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    struct V(u64);

    impl EventTime for V {
        fn event_time(&self) -> u64 {
            self.0
        }
    }

    impl Route for u32 {
        fn route(&self) -> u64 {
            crate::dataflow::panes::stable_hash(self)
        }
    }

    /// Values of a pane whose windows have all retired join nothing, whether they arrive then
    /// or were held from before; values of live panes join as ever.
    #[test]
    fn values_of_retired_panes_join_nothing() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/demo.toml");
        let job = crate::config::Job::load(&path).expect("the demo job loads");
        let panes = Panes::new(
            &Windows::new(&job),
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let e = 1_767_225_600_000u64;
        let dead = panes.pane_expiry(panes.pane_of(e));
        let live = dead + panes.pane_ms;
        assert!(panes.pane_expiry(panes.pane_of(live)) > dead + 1);
        let p = panes.clone();
        let out = timely::execute_directly(move |worker| {
            let (mut a, mut b, rx) = worker.dataflow::<u64, _, _>(|scope| {
                let (a, ca) = scope.new_collection::<(u32, V), isize>();
                let (b, cb) = scope.new_collection::<(u32, V), isize>();
                let rx = keyed_join(ca, cb, "test", &p, |k, x: &V, y: &V| (*k, x.0, y.0))
                    .inner
                    .capture();
                (a, b, rx)
            });
            a.advance_to(e);
            b.advance_to(e);
            a.insert((1, V(e))); // pairs now
            b.insert((1, V(e)));
            a.insert((2, V(e))); // its partner comes only after the pane retired
            a.advance_to(dead);
            b.advance_to(dead);
            b.insert((2, V(e)));
            a.insert((3, V(e))); // a held value of key 1's pane meets a late partner
            b.insert((1, V(e)));
            a.insert((4, V(live))); // a live pane pairs as ever
            b.insert((4, V(live)));
            drop((a, b));
            while worker.step() {}
            rx
        });
        let got: Vec<((u32, u64, u64), u64, isize)> =
            out.extract().into_iter().flat_map(|(_, v)| v).collect();
        assert_eq!(got, vec![((1, e, e), e, 1), ((4, live, live), dead, 1)]);
    }
}
