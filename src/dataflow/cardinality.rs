//! Bounded cardinality: at most a configured number of distinct values of each segment column,
//! and of entities, per pane; deltas of further values fold into the overflow value
//! (`<column>=__other__`, the entity `__other__`), so state and output stay bounded however many
//! distinct values the input carries.
//!
//! Semantics: per (column, pane), values are admitted first come, in timestamp order and, within
//! a timestamp, in group order, until the cap; a value admitted stays admitted while its pane
//! lives, and a value refused has every delta of that pane folded (so its additions and
//! retractions meet in the overflow row). Which values are admitted depends only on the deltas
//! and their timestamps: one worker decides per (column, pane), after the frontier passes the
//! timestamp. Time: a timestamp's deltas leave when the frontier passes it. State: the admitted
//! values of each live (column, pane), dropped when the pane's last window retires. Failure
//! modes: none.

use std::collections::{BTreeMap, HashSet};

use ahash::{AHashMap, AHashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use differential_dataflow::ExchangeData;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

use super::panes::{owner, stable_hash, PaneAcc, PaneDelta, Panes};
use super::timers::{pending_at, Pending};

/// The value distinct values beyond the cap fold into.
pub const OTHER: &str = "__other__";

/// A pane group whose one component may be capped: a segment (`column=value`) or an entity.
pub trait Capped: Sized {
    /// The capped column and the group's value of it; `None` when not capped (`all`).
    fn capped(&self) -> Option<(&str, &str)>;
    /// The same group with the capped value replaced by the overflow value.
    fn folded(&self) -> Self;
}

/// `column=value` → (`column`, `column=value`); `all` is not capped.
fn segment_column(s: &str) -> Option<(&str, &str)> {
    s.split_once('=').map(|(c, _)| (c, s))
}

fn fold_segment(s: &str) -> Arc<str> {
    let column = s.split_once('=').map_or(s, |(c, _)| c);
    Arc::from(format!("{column}={OTHER}").as_str())
}

impl Capped for Arc<str> {
    fn capped(&self) -> Option<(&str, &str)> {
        segment_column(self)
    }
    fn folded(&self) -> Self {
        fold_segment(self)
    }
}

impl Capped for (Arc<str>, Arc<str>) {
    fn capped(&self) -> Option<(&str, &str)> {
        segment_column(&self.0)
    }
    fn folded(&self) -> Self {
        (fold_segment(&self.0), self.1.clone())
    }
}

/// A drift group: (segment, feature, model version).
impl Capped for (Arc<str>, u16, Arc<str>) {
    fn capped(&self) -> Option<(&str, &str)> {
        segment_column(&self.0)
    }
    fn folded(&self) -> Self {
        (fold_segment(&self.0), self.1, self.2.clone())
    }
}

impl Capped for crate::records::Text {
    fn capped(&self) -> Option<(&str, &str)> {
        Some(("entity", self))
    }
    fn folded(&self) -> Self {
        OTHER.into()
    }
}

/// Caps distinct values per (column, pane) of `deltas` at `cap` (see the module doc); the
/// panes' `folded` counts the deltas folded into the overflow value.
pub fn admit<'s, G, A>(
    deltas: Stream<'s, u64, Vec<PaneDelta<G, A>>>,
    name: &str,
    panes: Panes,
    cap: usize,
) -> Stream<'s, u64, Vec<PaneDelta<G, A>>>
where
    G: ExchangeData + std::hash::Hash + Capped,
    A: PaneAcc,
{
    let peers = deltas.scope().peers();
    let label = name.to_string();
    let folded: Arc<AtomicU64> = panes.folded.clone();
    let route = move |(g, pane, _, _): &PaneDelta<G, A>| match g.capped() {
        Some((column, _)) => owner(stable_hash(&(column, *pane)), peers),
        None => owner(stable_hash(g), peers),
    };
    deltas.unary_frontier::<CapacityContainerBuilder<Vec<PaneDelta<G, A>>>, _, _, _>(
        Exchange::new(route),
        name,
        move |_, _| {
            let mut pending: Pending<Vec<(G, u64, A)>> = BTreeMap::new();
            // Admitted values per column and pane, and when each pane's last window retires.
            // Looked up by `&str`: nothing is allocated for a value already admitted.
            let mut admitted: AHashMap<String, AHashMap<u64, AHashSet<String>>> = AHashMap::new();
            let mut expiry: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
            let mut warned: HashSet<String> = HashSet::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for (g, pane, t, a) in data.drain(..) {
                        pending_at(&mut pending, &cap, output.output_index(), t).push((g, pane, a));
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let t = *entry.key();
                    let (capability, mut batch) = entry.remove();
                    // Panes whose windows have all retired admit nothing more (their deltas
                    // are ignored downstream too).
                    while let Some(e) = expiry.first_entry() {
                        if *e.key() > t {
                            break;
                        }
                        for (column, pane) in e.remove() {
                            if let Some(by_pane) = admitted.get_mut(&column) {
                                by_pane.remove(&pane);
                            }
                        }
                    }
                    batch.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
                    let mut session = output.session(&capability);
                    for (g, pane, a) in batch {
                        let keep = match g.capped() {
                            None => true,
                            Some((column, value)) => {
                                if !admitted.contains_key(column) {
                                    admitted.insert(column.to_string(), AHashMap::new());
                                }
                                let by_pane = admitted.get_mut(column).expect("inserted above");
                                let set = by_pane.entry(pane).or_insert_with(|| {
                                    expiry
                                        .entry(panes.pane_expiry(pane))
                                        .or_default()
                                        .push((column.to_string(), pane));
                                    AHashSet::new()
                                });
                                if set.contains(value) {
                                    true
                                } else if set.len() < cap {
                                    set.insert(value.to_string());
                                    true
                                } else {
                                    if warned.insert(column.to_string()) {
                                        tracing::warn!(
                                            "{label}: more than {cap} distinct values of {column} in a pane; the rest fold into {OTHER}"
                                        );
                                    }
                                    false
                                }
                            }
                        };
                        if keep {
                            session.give((g, pane, t, a));
                        } else {
                            folded.fetch_add(1, Ordering::Relaxed);
                            session.give((g.folded(), pane, t, a));
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_fold_by_column_and_entities_into_one() {
        let s: Arc<str> = Arc::from("country=FR");
        assert_eq!(s.capped(), Some(("country", "country=FR")));
        assert_eq!(&*s.folded(), "country=__other__");
        let all: Arc<str> = Arc::from("all");
        assert_eq!(all.capped(), None);
        let g = (Arc::<str>::from("device=ios"), Arc::<str>::from("m1"));
        assert_eq!(&*g.folded().0, "device=__other__");
        assert_eq!(&*g.folded().1, "m1");
        assert_eq!(crate::records::Text::from("u17").folded(), OTHER);
    }
}
