//! Data-dependent delays: the temporal filters that make windows final and retire state.
//!
//! Timestamps are event-time ticks, so the time at which a record becomes final or leaves state
//! is known when it is inserted. `delay_to` moves each update to `max(time, f(data))`; a record
//! valid during `[t, f(d))` is `x.concat(delay_to(x, f).negate())`.

use std::collections::BTreeMap;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::difference::Abelian;
use differential_dataflow::{Data, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

/// Moves every update of `coll` to `max(time, when(data))`.
pub fn delay_to<'s, D, R, F>(
    coll: VecCollection<'s, u64, D, R>,
    name: &str,
    when: F,
) -> VecCollection<'s, u64, D, R>
where
    D: Data,
    R: Data + Abelian,
    F: Fn(&D) -> u64 + 'static,
{
    coll.inner
        .unary::<CapacityContainerBuilder<Vec<(D, u64, R)>>, _, _, _>(
            Pipeline,
            name,
            move |_, _| {
                let mut staged: BTreeMap<u64, Vec<(D, u64, R)>> = BTreeMap::new();
                move |input, output| {
                    input.for_each(|cap, data| {
                        for (d, t, r) in data.drain(..) {
                            let nt = t.max(when(&d));
                            staged.entry(nt).or_default().push((d, nt, r));
                        }
                        for (nt, mut batch) in std::mem::take(&mut staged) {
                            output
                                .session(&cap.delayed(&nt, output.output_index()))
                                .give_container(&mut batch);
                        }
                    });
                }
            },
        )
        .as_collection()
}

/// Keeps each record only until `until(data)`: it is retracted at that time.
pub fn expire_at<'s, D, R, F>(
    coll: VecCollection<'s, u64, D, R>,
    name: &str,
    until: F,
) -> VecCollection<'s, u64, D, R>
where
    D: Data,
    R: Data + Abelian,
    F: Fn(&D) -> u64 + 'static,
{
    let delayed = delay_to(coll.clone(), name, until).negate();
    coll.concat(delayed)
}

/// A tombstone `mark(row)` at the time a row's accumulated count drops to zero, if that time is
/// at or after `retire_at(row)`: it says the row left state by retirement, not by an amendment.
///
/// Counts are accumulated per row (rows are exchanged by hash) and applied in time order once a
/// time is complete, so transient pairs that cancel within a time never produce a tombstone.
/// State: the rows currently present.
pub fn retirements<'s, D, D2, F, M>(
    coll: VecCollection<'s, u64, D, isize>,
    name: &str,
    retire_at: F,
    mark: M,
) -> VecCollection<'s, u64, D2, isize>
where
    D: differential_dataflow::ExchangeData + differential_dataflow::Hashable,
    D2: Data,
    F: Fn(&D) -> u64 + 'static,
    M: Fn(&D) -> D2 + 'static,
{
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::Capability;
    coll.inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(D2, u64, isize)>>, _, _, _>(
            Exchange::new(|(d, _, _): &(D, u64, isize)| d.hashed().into()),
            name,
            move |_, _| {
                let mut pending: BTreeMap<u64, (Capability<u64>, Vec<(D, isize)>)> =
                    BTreeMap::new();
                let mut present: BTreeMap<D, isize> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        for (d, t, r) in data.drain(..) {
                            pending
                                .entry(t)
                                .or_insert_with(|| {
                                    (cap.delayed(&t, output.output_index()), Vec::new())
                                })
                                .1
                                .push((d, r));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let t = *entry.key();
                        let (cap, mut updates) = entry.remove();
                        differential_dataflow::consolidation::consolidate(&mut updates);
                        let mut session = output.session(&cap);
                        for (d, r) in updates {
                            let n = present.entry(d.clone()).or_insert(0);
                            *n += r;
                            if *n == 0 {
                                present.remove(&d);
                                if r < 0 && t >= retire_at(&d) {
                                    session.give((mark(&d), t, -r));
                                }
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}
