//! Panes: windowed aggregation by slicing (Flink's window slicing, Arroyo's bins, Li et al.'s
//! "No pane, no gain").
//!
//! Every window of every family is a union of **panes** of `pane_ms` = gcd of all window sizes
//! and slides. A record's contribution updates one pane, never every window it lies in; a window
//! is assembled from its panes when its row is emitted.
//!
//! Two operators, connected by an exchange on the aggregation group (segment and model, entity,
//! …):
//!
//! - [`pre_aggregate`] (`…Pre`, pipelined): per worker and timestamp, a map of
//!   (group, pane) → accumulator, flushed consolidated once the frontier passes the timestamp, so
//!   accumulators cross the exchange, not records.
//! - [`assemble`] (`…Windows`): per group, the panes' accumulators; at every timestamp at which
//!   a window's panes changed, or its status changes (one timer at `final_at`, one at
//!   `retire_at`), it renders the window's row and emits `−old`/`+new` if it differs.
//!
//! Semantics: a window's row at time `t` is a function of the contributions with timestamps
//! `≤ t` and of `t` (provisional before `final_at`, final until `retire_at`, gone after, with a
//! retirement tombstone of its last final row). Contributions that reach a retired window are
//! ignored. State: the panes of live windows and each live window's last rows; a pane is
//! dropped when the last window containing it retires.
//! Failure modes: none on input; accumulators are integer sums (exact, order-free).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::{Data, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

use super::timers::{pending_at, stash_with, Pending, TimerHold};
use super::windows::{Status, Win, Windows};

/// An accumulator of one pane (and of a delta to it): integer sums that add exactly in any order.
pub trait PaneAcc: ExchangeData + Default {
    /// Adds `delta` into `self`.
    fn merge(&mut self, delta: &Self);
    /// Whether every sum is zero (the pane holds nothing).
    fn is_empty(&self) -> bool;
    /// How many entries it holds, for the state gauge (histogram entries, or 1).
    fn held(&self) -> usize {
        1
    }
    /// Brings additions made one record at a time into the accumulator's canonical form (a
    /// pre-aggregation seals every delta before it leaves).
    fn seal(&mut self) {}
}

/// How one output renders a window from its panes.
pub trait Render: 'static {
    /// The aggregation group (everything in a row's key except the window).
    type Group: ExchangeData + Hash;
    /// The pane accumulator.
    type Acc: PaneAcc;
    /// An output row.
    type Row: Data;
    /// The rows of window `win` of `group` with `status`, from its non-empty panes in order.
    fn render(
        &self,
        group: &Self::Group,
        win: Win,
        status: Status,
        panes: &[&Self::Acc],
        out: &mut Vec<Self::Row>,
    );
    /// The tombstone a row leaves when its window retires (final rows only), if any.
    fn tombstone(&self, row: &Self::Row) -> Option<Self::Row>;
    /// What a window keeps between its renders (a statistic maintained incrementally), `()`
    /// for none.
    type Memo: Default + 'static;
    /// Takes note of `delta`, just merged into one of the window's panes.
    fn absorb(&self, _memo: &mut Self::Memo, _delta: &Self::Acc) {}
    /// [`Render::render`], with the window's memo.
    fn render_with(
        &self,
        group: &Self::Group,
        win: Win,
        status: Status,
        panes: &[&Self::Acc],
        _memo: &mut Self::Memo,
        out: &mut Vec<Self::Row>,
    ) {
        self.render(group, win, status, panes, out)
    }
}

/// A stable hash for exchanges (the same in every process of a build): aHash with fixed
/// seeds, several times cheaper than SipHash on the short ids every record is routed by.
pub fn stable_hash<T: Hash>(x: &T) -> u64 {
    const SEEDS: ahash::RandomState = ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    SEEDS.hash_one(x)
}

/// Worker 0's share of keyed work, in percent of an even share: it alone also runs the
/// learner, the sinks and the replay recorder. (At 1M bench events on two workers, worker 0
/// took 54 % of the workers' CPU samples with an even split and 45 % with 70 %.)
const FIRST_SHARE: u64 = 85;

/// The worker among `peers` that owns keys of hash `hash`: worker 0 takes [`FIRST_SHARE`] percent
/// of an even share, the others split the rest evenly. Which worker owns a key changes no output
/// (sinks sort what they write), and every process computes the same owner.
pub fn owner(hash: u64, peers: usize) -> u64 {
    let peers = peers.max(1) as u64;
    if peers == 1 {
        return 0;
    }
    let x = hash % (100 * peers);
    if x < FIRST_SHARE {
        0
    } else {
        1 + (x - FIRST_SHARE) * (peers - 1) / (100 * peers - FIRST_SHARE)
    }
}

/// Deltas of panes at a timestamp: `(group, pane start, timestamp, delta)`.
pub type PaneDelta<G, A> = (G, u64, u64, A);

/// The identity of an interned name (its allocation): equal identities are the same name, so a
/// pre-aggregation can key by it without hashing or cloning the name.
pub fn ident(name: &Arc<str>) -> usize {
    Arc::as_ptr(name) as *const u8 as usize
}

/// How an explode function names a pane delta's group: `emit(id, group, pane, f)`, where `id`
/// identifies the group (equal ids are equal groups), `group` makes it (called only for an id
/// new in the timestamp), and `f` updates the pane accumulator.
pub type Emit<'a, I, G, A> = dyn FnMut(I, &dyn Fn() -> G, u64, &mut dyn FnMut(&mut A)) + 'a;

/// Pre-aggregates the contributions of `coll` per timestamp and (group, pane): `explode(d, r,
/// emit)` calls `emit` (see [`Emit`]) for every pane accumulator record `d` (with multiplicity
/// `r`) changes. Deltas of panes of `panes` whose last window has retired are dropped here.
///
/// Time: a timestamp's map is flushed, in key order, when the frontier passes it. State: the
/// maps of open timestamps only. Groups are keyed by their ids, not their values: a group
/// reached under two ids (the same name interned twice) is merged when flushed, so what leaves
/// is the same as keying by value.
pub fn pre_aggregate<'s, D, I, G, A, F>(
    coll: VecCollection<'s, u64, D>,
    name: &str,
    panes: &Panes,
    mut explode: F,
) -> Stream<'s, u64, Vec<PaneDelta<G, A>>>
where
    D: Data,
    I: Hash + Eq + 'static,
    G: ExchangeData + Hash,
    A: PaneAcc,
    F: FnMut(&D, isize, &mut Emit<'_, I, G, A>) + 'static,
{
    type Map<I, G, A> = ahash::AHashMap<(I, u64), (G, A)>;
    let panes = panes.clone();
    coll.inner
        .unary_frontier::<CapacityContainerBuilder<Vec<PaneDelta<G, A>>>, _, _, _>(
            Pipeline,
            name,
            move |_, _| {
                // Hashed, not ordered, per record; sorted once per flush, so what leaves is in
                // key order as before.
                let mut open: Pending<Map<I, G, A>> = BTreeMap::new();
                // Flushed maps, emptied with their capacity kept: the next timestamps' maps.
                let mut spare: Vec<Map<I, G, A>> = Vec::new();
                let mut deltas: Vec<(G, u64, A)> = Vec::new();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each(|cap, data| {
                        let fresh = || spare.pop().unwrap_or_default();
                        stash_with(&mut open, &cap, port, data, fresh, |map, d, t, r| {
                            explode(&d, r, &mut |id, group, pane, f| {
                                // A pane whose windows have all retired takes no more deltas
                                // (`assemble` would ignore them): most are the retractions of
                                // records leaving the join, half of what it emits.
                                if panes.pane_expiry(pane) > t {
                                    let (_, a) = map
                                        .entry((id, pane))
                                        .or_insert_with(|| (group(), A::default()));
                                    f(a);
                                }
                            });
                        });
                    });
                    while let Some(entry) = open.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let t = *entry.key();
                        let (cap, mut map) = entry.remove();
                        deltas.extend(map.drain().map(|((_, pane), (g, a))| (g, pane, a)));
                        spare.push(map);
                        deltas.sort_unstable_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
                        let mut session = output.session(&cap);
                        let mut deltas = deltas.drain(..).peekable();
                        while let Some((g, pane, mut a)) = deltas.next() {
                            while let Some((_, _, b)) =
                                deltas.next_if(|(h, p, _)| *h == g && *p == pane)
                            {
                                a.merge(&b);
                            }
                            a.seal();
                            if !a.is_empty() {
                                session.give((g, pane, t, a));
                            }
                        }
                    }
                }
            },
        )
}

/// The live windows of one group: their panes, and per window its last emitted rows and memo.
struct GroupState<A, R, M> {
    panes: BTreeMap<u64, A>,
    rows: BTreeMap<Win, (Vec<R>, M)>,
}

impl<A, R, M> Default for GroupState<A, R, M> {
    fn default() -> Self {
        GroupState {
            panes: BTreeMap::new(),
            rows: BTreeMap::new(),
        }
    }
}

/// Pane arithmetic of a job's windows.
#[derive(Debug, Clone)]
pub struct Panes {
    /// The windows.
    pub windows: Windows,
    /// Pane length in ms: the gcd of every window size and slide.
    pub pane_ms: u64,
    /// The state gauge's count of entries held by pane operators.
    held: Arc<AtomicI64>,
    /// Pane deltas folded into an overflow value by a cardinality cap.
    pub folded: Arc<std::sync::atomic::AtomicU64>,
    /// The last pane whose expiry was asked for, and its expiry: an operator asks about the
    /// same few panes for every record, and each answer costs a division per window family.
    last: std::cell::Cell<Option<(u64, u64)>>,
}

impl Panes {
    /// The panes of `windows`; the entries they hold are counted in `held`, deltas folded by a
    /// cardinality cap in `folded`.
    pub fn new(
        windows: &Windows,
        held: Arc<AtomicI64>,
        folded: Arc<std::sync::atomic::AtomicU64>,
    ) -> Panes {
        Panes {
            pane_ms: windows.pane_ms(),
            windows: windows.clone(),
            held,
            folded,
            last: Default::default(),
        }
    }

    /// The start of the pane containing `t`.
    pub fn pane_of(&self, t: u64) -> u64 {
        t - t % self.pane_ms
    }

    /// When the last window containing pane `p` retires.
    pub fn pane_expiry(&self, p: u64) -> u64 {
        match self.last.get() {
            Some((q, e)) if q == p => e,
            _ => {
                let e = self.windows.last_retire(p);
                self.last.set(Some((p, e)));
                e
            }
        }
    }
}

/// Assembles windows from pane deltas and renders their changelog (see the module doc).
pub fn assemble<'s, R>(
    deltas: Stream<'s, u64, Vec<PaneDelta<R::Group, R::Acc>>>,
    name: &str,
    panes: Panes,
    render: R,
) -> VecCollection<'s, u64, R::Row>
where
    R: Render,
{
    let peers = deltas.scope().peers();
    deltas
        .unary_frontier::<CapacityContainerBuilder<Vec<(R::Row, u64, isize)>>, _, _, _>(
            Exchange::new(move |(g, _, _, _): &PaneDelta<R::Group, R::Acc>| {
                owner(stable_hash(g), peers)
            }),
            name,
            move |_, _| {
                let w = panes.windows.clone();
                let mut pending: Pending<Vec<(R::Group, u64, R::Acc)>> = BTreeMap::new();
                let mut timers: BTreeMap<u64, BTreeSet<(R::Group, Win)>> = BTreeMap::new();
                // A capability at the earliest timer.
                let mut hold = TimerHold::default();
                let mut groups: BTreeMap<R::Group, GroupState<R::Acc, R::Row, R::Memo>> =
                    BTreeMap::new();
                let mut rendered = Vec::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        for (g, pane, t, a) in data.drain(..) {
                            pending_at(&mut pending, &cap, output.output_index(), t)
                                .push((g, pane, a));
                        }
                    });
                    while let Some((t, cap, deltas)) =
                        hold.next_due(&mut pending, &timers, frontier)
                    {
                        let mut dirty: BTreeSet<(R::Group, Win)> =
                            timers.remove(&t).unwrap_or_default();
                        for (g, pane, a) in deltas {
                            if panes.pane_expiry(pane) <= t {
                                continue;
                            }
                            let st = groups.entry(g.clone()).or_default();
                            let slot = st.panes.entry(pane).or_default();
                            let before = slot.held() as i64;
                            slot.merge(&a);
                            let mut held = slot.held() as i64 - before;
                            if slot.is_empty() {
                                held -= slot.held() as i64;
                                st.panes.remove(&pane);
                            }
                            panes.held.fetch_add(held, Ordering::Relaxed);
                            for win in w.of(pane) {
                                let retire = w.retire_at(&win);
                                if retire <= t {
                                    continue;
                                }
                                match st.rows.entry(win) {
                                    std::collections::btree_map::Entry::Vacant(v) => {
                                        // A new window: one timer when it becomes final, one
                                        // when it retires.
                                        v.insert((Vec::new(), R::Memo::default()));
                                        let fin = w.final_at(&win);
                                        for at in [fin, retire] {
                                            if at > t {
                                                timers
                                                    .entry(at)
                                                    .or_default()
                                                    .insert((g.clone(), win));
                                                hold.cover(&cap, at);
                                            }
                                        }
                                    }
                                    std::collections::btree_map::Entry::Occupied(mut o) => {
                                        render.absorb(&mut o.get_mut().1, &a);
                                    }
                                }
                                dirty.insert((g.clone(), win));
                            }
                        }
                        let mut session = output.session(&cap);
                        for (g, win) in dirty {
                            let Some(st) = groups.get_mut(&g) else {
                                continue;
                            };
                            let retire = w.retire_at(&win);
                            if t >= retire {
                                for row in st.rows.remove(&win).map(|r| r.0).unwrap_or_default() {
                                    if let Some(tomb) = render.tombstone(&row) {
                                        session.give((tomb, t, 1));
                                    }
                                    session.give((row, t, -1));
                                }
                                let live = &panes;
                                let mut dropped = 0;
                                st.panes.retain(|p, a| {
                                    let keep = live.pane_expiry(*p) > t;
                                    if !keep {
                                        dropped += a.held() as i64;
                                    }
                                    keep
                                });
                                panes.held.fetch_sub(dropped, Ordering::Relaxed);
                                if st.rows.is_empty() && st.panes.is_empty() {
                                    groups.remove(&g);
                                }
                                continue;
                            }
                            let status = if t < w.final_at(&win) {
                                Status::Provisional
                            } else {
                                Status::Final
                            };
                            let parts: Vec<&R::Acc> =
                                st.panes.range(win.start..win.end).map(|(_, a)| a).collect();
                            let (old, memo) = st.rows.get_mut(&win).expect("live window");
                            rendered.clear();
                            if !parts.is_empty() {
                                render.render_with(&g, win, status, &parts, memo, &mut rendered);
                            }
                            if *old != rendered {
                                for row in old.drain(..) {
                                    session.give((row, t, -1));
                                }
                                for row in &rendered {
                                    session.give((row.clone(), t, 1));
                                }
                                old.clone_from(&rendered);
                            }
                        }
                        drop(session);
                        hold.release_to(timers.keys().next().copied());
                    }
                }
            },
        )
        .as_collection()
}

/// Calls `f(key, value)` for every key of the sorted `runs` (each with distinct keys) in
/// ascending order, the values of equal keys added up with `add`.
///
/// The runs' entries are copied into one vector and stably sorted: the sort finds the sorted
/// runs and merges them, which is several times cheaper than a k-way merge stepping k
/// iterators per key (that was most of rendering a sliding window's exact AUC).
pub fn merge_sorted<K: Ord + Copy, V: Copy + Default, I: IntoIterator<Item = (K, V)>>(
    runs: Vec<I>,
    add: impl Fn(&mut V, &V),
    mut f: impl FnMut(K, V),
) {
    if runs.len() == 1 {
        // One run: its keys are distinct already; nothing to copy.
        for (k, v) in runs.into_iter().flatten() {
            let mut sum = V::default();
            add(&mut sum, &v);
            f(k, sum);
        }
        return;
    }
    let mut all: Vec<(K, V)> = Vec::new();
    for r in runs {
        all.extend(r);
    }
    all.sort_by_key(|(k, _)| *k);
    let mut i = 0;
    while i < all.len() {
        let k = all[i].0;
        let mut sum = V::default();
        while i < all.len() && all[i].0 == k {
            add(&mut sum, &all[i].1);
            i += 1;
        }
        f(k, sum);
    }
}

/// Tails at least this long are sealed by a radix sort (below, a comparison sort is cheaper than
/// a radix sort's histograms).
const RADIX_FROM: usize = 256;

/// Counts by key as a sorted vector, zeros dropped. Additions (a pre-aggregation's, one per
/// record) are appended unsorted and folded in at once by `seal`: sorting a batch is several
/// times cheaper than a map insertion per record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, [i64; N]: Serialize",
    deserialize = "K: Deserialize<'de>, [i64; N]: Deserialize<'de>"
))]
pub struct Tally<K, const N: usize> {
    /// The sealed counts, by key.
    sorted: Vec<(K, [i64; N])>,
    /// Additions not yet folded in.
    tail: Vec<(K, [i64; N])>,
    /// Sealed counts merged in lazily ([`Tally::merge_lazily`]), not yet folded into `sorted`:
    /// sorted runs, each less than half as long as the one before (`sorted` first).
    runs: Vec<Vec<(K, [i64; N])>>,
}

impl<K, const N: usize> Default for Tally<K, N> {
    fn default() -> Self {
        Tally {
            sorted: Vec::new(),
            tail: Vec::new(),
            runs: Vec::new(),
        }
    }
}

impl<K: Ord + Copy + radsort::Key, const N: usize> Tally<K, N> {
    /// A tally of counts already sorted by key, distinct, without zeros.
    pub fn from_sorted(sorted: Vec<(K, [i64; N])>) -> Self {
        Tally {
            sorted,
            tail: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds `c` to `k`'s counts (folded in by the next `seal`).
    pub fn push(&mut self, k: K, c: [i64; N]) {
        self.tail.push((k, c));
    }

    /// Folds the additions into the sorted counts.
    pub fn seal(&mut self) {
        self.fold_runs();
        if self.tail.is_empty() {
            return;
        }
        let mut tail = std::mem::take(&mut self.tail);
        // Integer keys: a radix sort of a long tail (a pre-aggregation seals one per record)
        // takes a few passes over it where a comparison sort takes log n.
        if tail.len() < RADIX_FROM {
            tail.sort_unstable_by_key(|(k, _)| *k);
        } else {
            radsort::sort_by_key(&mut tail, |(k, _)| *k);
        }
        add_equal_keys(&mut tail);
        if self.sorted.is_empty() {
            self.sorted = tail;
        } else {
            self.fold(&tail);
        }
    }

    /// Adds the sealed counts of `other`, as a run of its own that is folded in only once it
    /// is about as long as the run before it: a tally that takes many deltas (a pane's score
    /// counts take one at every timestamp) copies each count a logarithmic number of times,
    /// not once per delta. Its readers read the runs ([`Tally::runs`], [`Tally::below_and_at`]);
    /// a `seal` or an eager `merge` folds them all.
    pub fn merge_lazily(&mut self, other: &Self) {
        if !self.tail.is_empty() || !other.tail.is_empty() || !other.runs.is_empty() {
            return self.merge(other);
        }
        if other.sorted.is_empty() {
            return;
        }
        if self.sorted.is_empty() && self.runs.is_empty() {
            self.sorted.clone_from(&other.sorted);
            return;
        }
        self.runs.push(other.sorted.clone());
        while let Some(last) = self.runs.last() {
            let before = match self.runs.len() {
                1 => self.sorted.len(),
                n => self.runs[n - 2].len(),
            };
            if 2 * last.len() < before {
                break;
            }
            let last = self.runs.pop().expect("a run");
            match self.runs.last_mut() {
                Some(prev) => *prev = merged(prev, &last),
                None => self.sorted = merged(&self.sorted, &last),
            }
        }
    }

    /// Folds the lazily merged runs into the sorted counts.
    fn fold_runs(&mut self) {
        while let Some(last) = self.runs.pop() {
            match self.runs.last_mut() {
                Some(prev) => *prev = merged(prev, &last),
                None => self.sorted = merged(&self.sorted, &last),
            }
        }
    }

    /// The sorted runs whose counts, added up, are the tally's sealed counts (a key may be in
    /// several runs, and its sum may be zero).
    pub fn runs(&self) -> impl Iterator<Item = &[(K, [i64; N])]> {
        std::iter::once(self.sorted.as_slice()).chain(self.runs.iter().map(Vec::as_slice))
    }

    /// The counts of keys in `lo..k`, and of `k`, summed over the runs: two binary searches
    /// per run.
    pub fn below_and_at(&self, lo: K, k: K) -> ([i64; N], [i64; N]) {
        let (mut below, mut at) = ([0; N], [0; N]);
        for run in self.runs() {
            let a = run.partition_point(|(x, _)| *x < lo);
            let rest = &run[a..];
            let b = rest.partition_point(|(x, _)| *x < k);
            for (_, c) in &rest[..b] {
                for (x, y) in below.iter_mut().zip(c) {
                    *x += y;
                }
            }
            if let Some((x, c)) = rest.get(b) {
                if *x == k {
                    for (x, y) in at.iter_mut().zip(c) {
                        *x += y;
                    }
                }
            }
        }
        (below, at)
    }

    /// Adds `counts` (sorted by key, distinct) into the sorted counts.
    fn fold(&mut self, counts: &[(K, [i64; N])]) {
        if counts.len() <= 8 {
            // A few keys: in place (each insertion moves the keys after it, so more than a
            // few cost more than one linear merge).
            for &(k, c) in counts {
                match self.sorted.binary_search_by(|(x, _)| x.cmp(&k)) {
                    Ok(i) => {
                        let e = &mut self.sorted[i].1;
                        for (a, b) in e.iter_mut().zip(c) {
                            *a += b;
                        }
                        if e.iter().all(|x| *x == 0) {
                            self.sorted.remove(i);
                        }
                    }
                    Err(i) => self.sorted.insert(i, (k, c)),
                }
            }
            return;
        }
        self.sorted = merged(&self.sorted, counts);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Self) {
        self.fold_runs();
        if !self.tail.is_empty() || !other.tail.is_empty() || !other.runs.is_empty() {
            for run in other.runs() {
                self.tail.extend_from_slice(run);
            }
            self.tail.extend_from_slice(&other.tail);
            self.seal();
        } else if self.sorted.is_empty() {
            self.sorted.clone_from(&other.sorted);
        } else {
            // Both sealed: `other`'s counts are already sorted, distinct and non-zero.
            self.fold(&other.sorted);
        }
    }

    /// The counts, by key (sealed ones; not those merged lazily).
    pub fn iter(&self) -> std::slice::Iter<'_, (K, [i64; N])> {
        debug_assert!(
            self.runs.is_empty(),
            "read the runs of a lazily merged tally"
        );
        self.sorted.iter()
    }

    /// The counts of `parts` summed, zeros dropped, into `out`, by linear merges.
    pub fn sum(parts: &[&Self], out: &mut Vec<(K, [i64; N])>) {
        out.clear();
        let mut acc = Tally::default();
        for p in parts {
            acc.tail.extend_from_slice(&p.sorted);
            if acc.sorted.is_empty() {
                acc.sorted = std::mem::take(&mut acc.tail);
            } else {
                acc.seal();
            }
        }
        *out = acc.sorted;
    }

    /// How many counts are held, sealed ones (a key in several lazily merged runs counts once
    /// in each).
    pub fn len(&self) -> usize {
        self.sorted.len() + self.runs.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether no count is held, sealed or not.
    pub fn is_empty(&self) -> bool {
        if self.runs.is_empty() {
            return self.sorted.is_empty() && self.tail.is_empty();
        }
        // Runs may cancel each other: only their sum tells (rare: all of a pane retracted).
        let mut all = self.clone();
        all.fold_runs();
        all.sorted.is_empty() && all.tail.is_empty()
    }
}

/// The counts of `a` and `b` (each sorted by key, distinct) added up, zeros dropped, by one
/// linear merge.
fn merged<K: Ord + Copy, const N: usize>(
    a: &[(K, [i64; N])],
    b: &[(K, [i64; N])],
) -> Vec<(K, [i64; N])> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let mut c = a[i].1;
                for (x, y) in c.iter_mut().zip(b[j].1) {
                    *x += y;
                }
                if c.iter().any(|x| *x != 0) {
                    out.push((a[i].0, c));
                }
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Sums the counts of equal neighbouring keys of a sorted list and drops zeros.
fn add_equal_keys<K: Ord + Copy, const N: usize>(v: &mut Vec<(K, [i64; N])>) {
    let mut w = 0;
    for i in 0..v.len() {
        if w > 0 && v[w - 1].0 == v[i].0 {
            let c = v[i].1;
            for (a, b) in v[w - 1].1.iter_mut().zip(c) {
                *a += b;
            }
        } else {
            v[w] = v[i];
            w += 1;
        }
    }
    v.truncate(w);
    v.retain(|(_, c)| c.iter().any(|x| *x != 0));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::{owner, Tally};

    #[test]
    fn workers_own_their_shares() {
        for peers in 1..=4usize {
            let mut counts = vec![0u64; peers];
            let n = 70_000u64;
            for h in 0..n {
                let w = owner(h.wrapping_mul(0x9E37_79B9_7F4A_7C15), peers) as usize;
                counts[w] += 1;
            }
            let even = n / peers as u64;
            let first = if peers == 1 {
                n
            } else {
                even * super::FIRST_SHARE / 100
            };
            let rest = (n - first) / (peers as u64 - 1).max(1);
            for (w, c) in counts.iter().enumerate() {
                let want = if w == 0 { first } else { rest };
                assert!(c.abs_diff(want) <= want / 20, "{peers}: {counts:?}");
            }
        }
    }

    proptest! {
        /// Tallies, filled a record at a time, sealed and merged, hold what a map of sums
        /// holds: sorted, zeros dropped.
        #[test]
        fn tallies_sum_like_a_map(
            parts in proptest::collection::vec(
                proptest::collection::vec((0u64..50, -3i64..4), 0..40),
                1..5,
            )
        ) {
            let mut reference: BTreeMap<u64, i64> = BTreeMap::new();
            let mut window: Tally<u64, 1> = Tally::default();
            for part in &parts {
                let mut pane = Tally::default();
                let mut delta = Tally::default();
                for (i, &(k, n)) in part.iter().enumerate() {
                    *reference.entry(k).or_default() += n;
                    // Half the updates go straight in, half through a merged delta.
                    if i % 2 == 0 {
                        pane.push(k, [n]);
                    } else {
                        delta.push(k, [n]);
                    }
                    if i % 7 == 3 {
                        pane.seal();
                    }
                }
                delta.seal();
                pane.merge(&delta);
                prop_assert!(pane.iter().zip(pane.iter().skip(1)).all(|(a, b)| a.0 < b.0));
                prop_assert!(pane.iter().all(|(_, [n])| *n != 0));
                window.merge(&pane);
            }
            reference.retain(|_, n| *n != 0);
            let got: Vec<(u64, i64)> = window.iter().map(|(k, [n])| (*k, *n)).collect();
            prop_assert_eq!(got, reference.into_iter().collect::<Vec<_>>());
        }

        /// A tally merged lazily, delta by delta, holds in its runs what a map of sums holds,
        /// read whole, by range or by key, and after it is folded; it is empty exactly when
        /// the map is.
        #[test]
        fn lazily_merged_tallies_sum_like_a_map(
            deltas in proptest::collection::vec(
                proptest::collection::vec((0i64..60, -2i64..3), 0..30),
                1..12,
            ),
            lo in 0i64..60,
            width in 0i64..30,
        ) {
            let mut reference: BTreeMap<i64, i64> = BTreeMap::new();
            let mut lazy: Tally<i64, 1> = Tally::default();
            for d in &deltas {
                let mut delta = Tally::default();
                for &(k, n) in d {
                    *reference.entry(k).or_default() += n;
                    delta.push(k, [n]);
                }
                delta.seal();
                lazy.merge_lazily(&delta);
            }
            reference.retain(|_, n| *n != 0);
            let mut summed: BTreeMap<i64, i64> = BTreeMap::new();
            for run in lazy.runs() {
                prop_assert!(run.windows(2).all(|w| w[0].0 < w[1].0));
                for (k, [n]) in run {
                    *summed.entry(*k).or_default() += n;
                }
            }
            summed.retain(|_, n| *n != 0);
            prop_assert_eq!(&summed, &reference);
            let hi = lo + width;
            let want: i64 = reference.range(lo..hi).map(|(_, n)| n).sum();
            let at = reference.get(&hi).copied().unwrap_or(0);
            prop_assert_eq!(lazy.below_and_at(lo, hi), ([want], [at]));
            prop_assert_eq!(lazy.is_empty(), reference.is_empty());
            lazy.seal();
            let got: Vec<(i64, i64)> = lazy.iter().map(|(k, [n])| (*k, *n)).collect();
            prop_assert_eq!(got, reference.into_iter().collect::<Vec<_>>());
        }

        /// A long tail (sealed by the radix sort) seals to what a map of sums holds, negative
        /// keys included.
        #[test]
        fn long_tails_seal_like_a_map(
            adds in proptest::collection::vec((-40_000i64..40_000, -2i64..3), 0..900)
        ) {
            let mut reference: BTreeMap<i64, i64> = BTreeMap::new();
            let mut t: Tally<i64, 1> = Tally::default();
            for &(k, n) in &adds {
                *reference.entry(k).or_default() += n;
                t.push(k, [n]);
            }
            t.seal();
            reference.retain(|_, n| *n != 0);
            let got: Vec<(i64, i64)> = t.iter().map(|(k, [n])| (*k, *n)).collect();
            prop_assert_eq!(got, reference.into_iter().collect::<Vec<_>>());
        }

        /// Merging pane maps visits every key once, in order, with its values summed.
        #[test]
        fn merge_sorted_sums_keys_in_order(
            maps in proptest::collection::vec(
                proptest::collection::btree_map(-20i64..20, (0i64..5, 0i64..5), 0..30),
                1..5,
            )
        ) {
            let mut reference: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for m in &maps {
                for (k, (a, b)) in m {
                    let e = reference.entry(*k).or_default();
                    e.0 += a;
                    e.1 += b;
                }
            }
            let runs: Vec<_> = maps.iter().map(|m| m.iter().map(|(k, v)| (*k, *v))).collect();
            let mut out = Vec::new();
            super::merge_sorted(
                runs,
                |s: &mut (i64, i64), v: &(i64, i64)| {
                    s.0 += v.0;
                    s.1 += v.1;
                },
                |k, v| out.push((k, v)),
            );
            prop_assert_eq!(out, reference.into_iter().collect::<Vec<_>>());
        }
    }
}
