//! The online join: online scores against the joined events, for the small joins beside the hot
//! path.
//!
//! Semantics: the relational join of the two collections' contents at every timestamp, as a
//! changelog: at a complete timestamp `t`, `A(t⁻) ⋈ ΔB + ΔA ⋈ B(t)`, for values whose event's
//! pane still has a live window at `t`. A value of `a` carries `B(t)` for its key, so `B` is
//! not held: `b` brings only the changes that can meet an `a` of an earlier timestamp. A value
//! of `a` without it (one restored by a restart, before `until`) meets `B` as held from the
//! changes of `b` before `until`. Every output is about one event and lands in that event's
//! pane, so once the pane's windows have all retired a value can only produce outputs that pane
//! aggregations drop: such values are ignored on input and leave state when their pane retires
//! (the join upstream no longer sends their retractions). A timestamp's outputs are not
//! consolidated: an output added and retracted at one timestamp may both leave, which changes
//! nothing for its readers, pane aggregations that sum what they read. Time: processed in
//! timestamp order once both frontiers pass `t`. State: each key's values of `a`, and before
//! `until` its values of `b`, dropped when they cancel or their panes retire. Failure modes:
//! none.

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

/// A key's values of one side: nearly always one or two (inline: no allocation per key).
type Values<V> = SmallVec<[(V, isize); 2]>;

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

/// Each key's values of one side, hashed by `hasher`.
struct Table<K, V> {
    table: hashbrown::HashTable<(K, Values<V>)>,
    hasher: ahash::RandomState,
}

impl<K: Hash + Eq, V: PartialEq> Table<K, V> {
    fn new() -> Self {
        Table {
            table: hashbrown::HashTable::new(),
            hasher: ahash::RandomState::new(),
        }
    }

    fn get(&self, k: &K) -> Option<&Values<V>> {
        let h = self.hasher.hash_one(k);
        self.table.find(h, |(x, _)| x == k).map(|(_, v)| v)
    }

    /// Adds `r` of `v` to `k`'s values; drops the key when its values cancel.
    fn add(&mut self, k: K, v: V, r: isize) {
        let hasher = &self.hasher;
        let h = hasher.hash_one(&k);
        match self
            .table
            .entry(h, |(x, _)| *x == k, |(x, _)| hasher.hash_one(x))
        {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                if add(&mut o.get_mut().1, v, r) {
                    o.remove();
                }
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                let mut values = Values::new();
                values.push((v, r));
                e.insert((k, values));
            }
        }
    }
}

/// One side's values, in a table per retirement time (of their pane): a pane's values leave
/// together, as one table, with no lookup per key; and a table holds one pane's values, not
/// every live one, so adding to it touches less memory. A key's values are looked up in every
/// table (a few: one per live pane), which only the rare later changes and restored scores do.
struct Held<K, V> {
    tables: BTreeMap<u64, Table<K, V>>,
}

impl<K: Hash + Eq, V: PartialEq> Held<K, V> {
    fn new() -> Self {
        Held {
            tables: BTreeMap::new(),
        }
    }

    /// Adds `r` of `v` to `k`'s values that retire at `at`.
    fn add(&mut self, k: K, v: V, r: isize, at: u64) {
        self.tables
            .entry(at)
            .or_insert_with(Table::new)
            .add(k, v, r);
    }

    /// `k`'s values.
    fn get<'a>(&'a self, k: &'a K) -> impl Iterator<Item = &'a (V, isize)> + 'a {
        self.tables.values().filter_map(|t| t.get(k)).flatten()
    }

    /// Drops the values that retire at or before `t`.
    fn retire(&mut self, t: u64) {
        while let Some(e) = self.tables.first_entry() {
            if *e.key() > t {
                break;
            }
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
/// values' panes (of `panes`) have a live window (see the module doc; `until` is where
/// restored values of `a` end). `b` must already be on the worker that owns its key
/// (`owner(key.route())`, as the join's outputs are): it is not exchanged again.
pub fn keyed_join<'s, K, A, B, O, F>(
    a: VecCollection<'s, u64, (K, (A, Option<Box<Values<B>>>))>,
    b: VecCollection<'s, u64, (K, B)>,
    name: &str,
    panes: &Panes,
    until: u64,
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
            Exchange::new(
                move |((k, _), _, _): &((K, (A, Option<Box<Values<B>>>)), u64, isize)| {
                    owner(k.route(), peers)
                },
            ),
            Pipeline,
            name,
            move |_, _| {
                let mut held_a: Held<K, A> = Held::new();
                let mut held_b: Held<K, B> = Held::new();
                type Changes<A, B> = (Vec<(A, isize)>, Vec<(B, isize)>);
                type In<K, A, B> = (K, (A, Option<Box<Values<B>>>));
                let mut pending: Pending<Changes<In<K, A, B>, (K, B)>> = BTreeMap::new();
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
                        let live = |e: u64| retires(e) > t;
                        // A(t⁻) ⋈ ΔB, then ΔA ⋈ B(t). The changes are applied one by one,
                        // unsorted: the join is bilinear, so their order changes no sum of the
                        // outputs.
                        for ((k, vb), rb) in db {
                            if !live(vb.event_time()) {
                                continue;
                            }
                            for (va, ra) in held_a.get(&k) {
                                out.push((f(&k, va, &vb), ra * rb));
                            }
                            if t < until {
                                let at = retires(vb.event_time());
                                held_b.add(k, vb, rb, at);
                            }
                        }
                        for ((k, (va, carried)), ra) in da {
                            if !live(va.event_time()) {
                                continue;
                            }
                            let mut meet = |(vb, rb): &(B, isize)| {
                                if live(vb.event_time()) {
                                    out.push((f(&k, &va, vb), ra * rb));
                                }
                            };
                            match &carried {
                                Some(values) => values.iter().for_each(&mut meet),
                                None => held_b.get(&k).for_each(&mut meet),
                            }
                            let at = retires(va.event_time());
                            held_a.add(k, va, ra, at);
                        }
                        // Values of retired panes leave (they could only join into retired
                        // windows from now on).
                        held_a.retire(t);
                        held_b.retire(t);
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

    /// A value of `a` meets what it carries and the later changes of `b`; a restored one (before
    /// `until`) meets what `b` brought before `until`; values of a pane whose windows have all
    /// retired join nothing.
    #[test]
    fn scores_meet_what_they_carry_and_later_changes() {
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
        let windows = panes.windows.clone();
        let until = e + 1;
        let carry = |vs: &[u64]| {
            Some(Box::new(
                vs.iter().map(|v| (V(*v), 1)).collect::<Values<V>>(),
            ))
        };
        let out = timely::execute_directly(move |worker| {
            let p = Panes::new(
                &windows,
                Arc::new(AtomicI64::new(0)),
                Arc::new(AtomicU64::new(0)),
            );
            let (mut a, mut b, rx) = worker.dataflow::<u64, _, _>(|scope| {
                let (a, ca) = scope.new_collection::<(u32, (V, Option<Box<Values<V>>>)), isize>();
                let (b, cb) = scope.new_collection::<(u32, V), isize>();
                let rx = keyed_join(ca, cb, "test", &p, until, |k: &u32, x: &V, y: &V| {
                    (*k, x.0, y.0)
                })
                .inner
                .capture();
                (a, b, rx)
            });
            a.advance_to(e);
            b.advance_to(e);
            b.insert((2, V(e))); // held: before `until`
            a.insert((2, (V(e), None))); // restored: meets what is held
            a.insert((3, (V(e), carry(&[e, e])))); // meets what it carries
            b.insert((3, V(e))); // at its own time: already carried
            a.advance_to(e + 2);
            b.advance_to(e + 2);
            b.insert((3, V(e + 2))); // a later change meets the score
            b.insert((6, V(e))); // not held (after `until`): a restored score misses it
            a.insert((6, (V(e), None)));
            a.advance_to(dead);
            b.advance_to(dead);
            b.insert((3, V(e))); // its pane has retired
            a.insert((5, (V(e), carry(&[e])))); // likewise
            a.insert((4, (V(live), carry(&[]))));
            a.advance_to(dead + 1);
            b.advance_to(dead + 1);
            b.insert((4, V(live))); // a live pane pairs as ever
            drop((a, b));
            while worker.step() {}
            rx
        });
        let mut got: Vec<((u32, u64, u64), u64, isize)> =
            out.extract().into_iter().flat_map(|(_, v)| v).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ((2, e, e), e, 1),
                ((3, e, e), e, 1),
                ((3, e, e), e, 1),
                ((3, e, e + 2), e + 2, 1),
                ((4, live, live), dead + 1, 1)
            ]
        );
    }
}
