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
