//! A symmetric keyed join of two collections, for the small joins beside the hot path (the
//! online model's scores against the joined events).
//!
//! Semantics: the relational join of the two collections' contents at every timestamp, as a
//! changelog: at a complete timestamp `t`, `ΔA ⋈ B(t⁻) + A(t) ⋈ ΔB`. Time: processed in
//! timestamp order once both frontiers pass `t`. State: each side's current values per key,
//! dropped when a key's values cancel. Failure modes: none.

use std::collections::BTreeMap;

use ahash::AHashMap;
use std::hash::Hash;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{Data, ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::panes::{owner, stable_hash};
use super::timers::{pending_at, Pending};

type Sides<A, B> = (Vec<(A, isize)>, Vec<(B, isize)>);

/// Joins `a` and `b` on their keys, emitting `f(key, a, b)` for every matching pair.
pub fn keyed_join<'s, K, A, B, O, F>(
    a: VecCollection<'s, u64, (K, A)>,
    b: VecCollection<'s, u64, (K, B)>,
    name: &str,
    f: F,
) -> VecCollection<'s, u64, O>
where
    K: ExchangeData + Hash,
    A: ExchangeData,
    B: ExchangeData,
    O: Data,
    F: Fn(&K, &A, &B) -> O + 'static,
{
    let peers = a.inner.scope().peers();
    a.inner
        .binary_frontier::<_, CapacityContainerBuilder<Vec<(O, u64, isize)>>, _, _, _, _>(
            b.inner,
            Exchange::new(move |((k, _), _, _): &((K, A), u64, isize)| {
                owner(stable_hash(k), peers)
            }),
            Exchange::new(move |((k, _), _, _): &((K, B), u64, isize)| {
                owner(stable_hash(k), peers)
            }),
            name,
            move |_, _| {
                let mut state: AHashMap<K, Sides<A, B>> = AHashMap::new();
                let mut pending: Pending<Sides<(K, A), (K, B)>> = BTreeMap::new();
                move |(in_a, fa), (in_b, fb), output| {
                    let port = output.output_index();
                    in_a.for_each(|cap, data| {
                        for (d, t, r) in data.drain(..) {
                            pending_at(&mut pending, &cap, port, t).0.push((d, r));
                        }
                    });
                    in_b.for_each(|cap, data| {
                        for (d, t, r) in data.drain(..) {
                            pending_at(&mut pending, &cap, port, t).1.push((d, r));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        let t = *entry.key();
                        if fa.less_equal(&t) || fb.less_equal(&t) {
                            break;
                        }
                        let (cap, (mut da, mut db)) = entry.remove();
                        consolidate(&mut da);
                        consolidate(&mut db);
                        let mut out = Vec::new();
                        // ΔA against B before t, then ΔB against A after ΔA.
                        for ((k, va), ra) in da {
                            let sides = state.entry(k.clone()).or_default();
                            for (vb, rb) in &sides.1 {
                                out.push((f(&k, &va, vb), ra * rb));
                            }
                            sides.0.push((va, ra));
                            consolidate(&mut sides.0);
                            if sides.0.is_empty() && sides.1.is_empty() {
                                state.remove(&k);
                            }
                        }
                        for ((k, vb), rb) in db {
                            let sides = state.entry(k.clone()).or_default();
                            for (va, ra) in &sides.0 {
                                out.push((f(&k, va, &vb), ra * rb));
                            }
                            sides.1.push((vb, rb));
                            consolidate(&mut sides.1);
                            if sides.0.is_empty() && sides.1.is_empty() {
                                state.remove(&k);
                            }
                        }
                        consolidate(&mut out);
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
