//! The three-way join: events ⋈ predictions ⋈ deduplicated labels, on event id.
//!
//! One keyed operator holds a slot per event id (see [`join`]); what leaves it are ±1
//! contributions of each changed slot, split into the collections downstream operators read,
//! and what it decided once about single records: duplicates refused, labels too late for their
//! event's windows, orphaned labels.

use std::collections::BTreeMap;

use smallvec::SmallVec;
use std::sync::Arc;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream as TimelyStream;
use timely::progress::operate::FrontierInterest;

use super::timers::{stash, Pending, TimerHold};
use crate::records::{excerpt, DeadLetter, Event, Origin, Prediction, Record, Text};
use crate::schema::Stream;
use crate::sources::stamp::tick_floor;

/// The effective label of an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelState {
    /// The winning label value.
    pub label: u8,
    /// Label time of the winning label.
    pub time: u64,
    /// The earliest `label_time` among the event's labels (label latency is measured to it).
    pub first_time: u64,
    /// How many labels were received for the event (duplicates and corrections included).
    pub versions: u32,
}

/// An event shared by every output it appears in (cloning it is a reference count).
pub type Ev = Arc<Event>;

/// A prediction shared likewise.
pub type Pr = Arc<Prediction>;

/// A prediction joined with its event and effective label.
pub type Labeled = (Ev, Pr, LabelState);

/// What one slot contributes at a time: every output of the join stage, keyed as downstream
/// needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JoinOut {
    /// An event in state.
    Event(Ev),
    /// An event with its effective label.
    EventLabel(Ev, LabelState),
    /// A prediction with its event.
    Scored(Ev, Pr),
    /// A prediction with its event and effective label.
    Labeled(Ev, Pr, LabelState),
    /// A label orphaned when its decision fell due, by its label time (added once, never
    /// retracted).
    Orphan(u64),
    /// A label whose event was seen but had no live window left when the two met: its label
    /// time and its latency (when the later of the two was processed, minus the event time).
    TooLate(u64, u64),
    /// A duplicate record, refused.
    Refused(Stream, Box<DeadLetter>),
    /// An event that became labeled: its first effective label appeared (with no earlier one
    /// retracted at the same time), with the slot's labeled events and predictions then (if the
    /// online join is wanted). Only ever added, once per such change.
    Example(Ev, LabelState, Sides),
    /// A change of a labeled event or prediction for the online join.
    Online(Side),
}

/// What label health reads of the join.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LabelInput {
    /// An event in state.
    Event(Ev),
    /// An event with its effective label.
    Labeled(Ev, LabelState),
    /// An orphaned label, by its label time.
    Orphan(u64),
    /// A label too late for its event's windows, by its label time.
    TooLate(u64),
}

/// What the join decided about one record beyond joining it: counted in `ingest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// A second event of an id, or a second prediction of an (event id, model version): refused.
    Duplicate(Stream),
    /// A label whose event had no live window left when it arrived, with its latency (ms).
    TooLate(u64),
    /// A label whose event was unseen when its decision fell due.
    Orphaned,
}

/// The schema fields that name a duplicate in its dead letter.
#[derive(Debug, Clone)]
pub struct IdFields {
    /// The events' id field.
    pub event_id: String,
    /// The predictions' event id field.
    pub prediction_event_id: String,
}

/// A value the online join meets an online score with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// An event with its effective label.
    Label(Ev, LabelState),
    /// A production prediction with its event.
    Scored(Ev, Pr),
}

/// An event id as a join key, hashed by the hash the join routes it by (computed once: hashing,
/// routing and comparing an equal key read no string but the id itself). It holds no event:
/// the online join reads events from its values, and a key that crosses workers is a few
/// bytes, not the whole event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ById {
    /// `stable_hash` of the event's id.
    hash: u64,
    /// The event's id.
    id: Text,
}

impl ById {
    /// The key of event `e`.
    pub fn new(e: &Event) -> ById {
        ById {
            hash: super::panes::stable_hash(&e.id),
            id: e.id.clone(),
        }
    }
}

impl super::keyed_join::Route for ById {
    fn route(&self) -> u64 {
        self.hash
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.id == other.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash)
    }
}

/// Outputs of the join stage, each shaped as the operators that read it take it (so that no
/// stream is copied, mapped and concatenated on the way).
pub struct Joined<'s> {
    /// Events, valid until their expiry (entity features).
    pub events: VecCollection<'s, u64, Ev>,
    /// Label health's input.
    pub label_inputs: VecCollection<'s, u64, LabelInput>,
    /// Drift's input (if wanted): events `(e, None)` and, if wanted, predictions with their
    /// event `(e, prediction)`.
    pub drift_inputs: VecCollection<'s, u64, (Ev, Option<Pr>)>,
    /// The online join's input (if wanted): labeled events and predictions, by event.
    pub online_sides: VecCollection<'s, u64, (ById, Side)>,
    /// Predictions with their event and label.
    pub labeled: VecCollection<'s, u64, Labeled>,
    /// Events as they become labeled: what the learner learns from, at the time it happens,
    /// with what the online join meets its score with then (empty unless the online join is
    /// wanted).
    pub examples: VecCollection<'s, u64, (Ev, LabelState, Sides)>,
    /// Duplicates refused.
    pub dead: VecCollection<'s, u64, DeadLetter>,
    /// What was decided about single records, for the ingest counts.
    pub verdicts: VecCollection<'s, u64, Verdict>,
}

/// A slot's labeled events and predictions at one time, with multiplicities: what an online
/// score given then meets. Boxed: an example is one output in many, and every output of the
/// join is the size of its largest kind.
pub type Sides = Box<SmallVec<[(Side, isize); 2]>>;

/// Which of the join's optional outputs the job reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// Events for drift.
    pub drift_events: bool,
    /// Predictions for drift (a score reference exists).
    pub drift_scores: bool,
    /// Labeled events and predictions for the online join: `Some(until)` sends it every slot's
    /// changes at timestamps before `until` (a restart's rebuild, whose restored scores meet
    /// them there) and, from `until` on, only the changes of slots that gave an example at an
    /// earlier timestamp (an example carries its slot's values at its own time).
    pub online: Option<u64>,
}

/// How long join state is kept, in milliseconds of event time.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// The job's tick.
    pub tick: u64,
    /// The emit interval: a record is processed at its stamp rounded up to it.
    pub emit: u64,
    /// How long after its own time an event or prediction stays in state.
    pub ttl: u64,
    /// The label horizon.
    pub horizon: u64,
    /// The job's retention.
    pub retention: u64,
    /// The longest window (labels are windowed by their first label time).
    pub label_window: u64,
}

/// An element of a slot: a value, when it arrived, when it leaves, its multiplicity, and what
/// else its kind keeps (a prediction its origin and the end of its memory, a label the time a
/// live run processes it while its decision is pending).
#[derive(Debug, Clone)]
struct Held<V, X = ()> {
    value: V,
    from: u64,
    until: u64,
    r: isize,
    extra: X,
}

impl<V, X> Held<V, X> {
    fn present(&self, t: u64) -> bool {
        self.from <= t && t < self.until
    }
}

/// An accepted event of an id, remembered after the event leaves state (see [`join`]).
#[derive(Debug)]
struct Seen {
    /// When a live run processes it (its stamp at the emit boundary): decisions about it are
    /// made as of then, so that a replay that feeds it later makes the same ones.
    t0: u64,
    /// The memory of the id ends here: `seen_ttl` (see [`join`]) after the event's time, or
    /// after that of a later copy refused as its duplicate (so that whether a record is a duplicate depends
    /// only on the copies within one memory before it, which a restart replays).
    until: u64,
    /// The event's time.
    time: u64,
    origin: Origin,
}

/// Everything the join holds for one event id. Nearly every slot holds one event, one
/// prediction and one label: they are stored inline, not in heap allocations of their own
/// (peak RSS at 1M bench events fell from 1,199 to 1,037 MiB).
#[derive(Debug)]
struct Slot {
    /// The slot's event id (inline: comparing it is no second pointer to chase).
    id: Text,
    /// The accepted event while in state (one, but for an id used again after its memory).
    events: SmallVec<[Held<Ev>; 1]>,
    /// The accepted events remembered, oldest first (one, but for an id used again).
    seen: SmallVec<[Seen; 1]>,
    /// Predictions, each with its origin (which a duplicate's dead letter names) and the end of
    /// its (event id, model version)'s memory (see [`Seen::until`]).
    predictions: SmallVec<[Held<Pr, (Origin, u64)>; 1]>,
    /// Labels `(label time, label)`, each, while its decision is pending, with when a live
    /// run processes it.
    labels: SmallVec<[Held<(u64, u8), Option<u64>>; 1]>,
    /// The time of the slot's last evaluation (its outputs as of then were emitted).
    last: Option<u64>,
    /// The slot's pending timer.
    timer: Option<u64>,
    /// Its changes go to the online join (it gave an example, or was evaluated before the
    /// online join's `until`).
    online: bool,
}

/// Slots per chunk of [`Slots`]' slab.
const CHUNK: usize = 1024;

/// The slots of the ids a worker holds, in a slab of fixed-size chunks (a slot never moves, so
/// its index names it in the touched list and in the timers), and a table from each id to its
/// slot's index. A bucket holds the id's full hash beside the index, so that probing and
/// growing compare and rehash without reading the slot (a cache miss each: the table holds
/// every live id). Freed slots are reused.
#[derive(Default)]
struct Slots {
    table: hashbrown::HashTable<(u64, u32)>,
    slab: Vec<Vec<Slot>>,
    free: Vec<u32>,
    hasher: ahash::RandomState,
}

impl Slots {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn slot(slab: &[Vec<Slot>], i: u32) -> &Slot {
        &slab[i as usize / CHUNK][i as usize % CHUNK]
    }

    /// The slot at index `i`.
    fn at(&mut self, i: u32) -> &mut Slot {
        &mut self.slab[i as usize / CHUNK][i as usize % CHUNK]
    }

    /// The index of `id`'s slot (of hash `h`), created empty if there is none.
    fn get_or_insert(&mut self, h: u64, id: &Text) -> u32 {
        let slab = &self.slab;
        let entry = self.table.entry(
            h,
            |&(x, i)| x == h && Slots::slot(slab, i).id == *id,
            |&(x, _)| x,
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => o.get().1,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slab[i as usize / CHUNK][i as usize % CHUNK] = Slot::new(id.clone());
                        i
                    }
                    None => {
                        if self.slab.last().is_none_or(|c| c.len() == CHUNK) {
                            self.slab.push(Vec::with_capacity(CHUNK));
                        }
                        let n = (self.slab.len() - 1) * CHUNK;
                        let chunk = self.slab.last_mut().expect("a chunk with room");
                        chunk.push(Slot::new(id.clone()));
                        (n + chunk.len() - 1) as u32
                    }
                };
                v.insert((h, i));
                i
            }
        }
    }

    /// Frees the slot at index `i`, whose id has hash `h`.
    fn remove(&mut self, h: u64, i: u32) {
        if let Ok(e) = self.table.find_entry(h, |&(_, j)| j == i) {
            e.remove();
            *self.at(i) = Slot::new(Text::default());
            self.free.push(i);
        }
    }
}

/// Values present at a time, with multiplicities: nearly always one.
type Present<'a, V> = SmallVec<[(&'a V, isize); 2]>;

/// The values of `held` present at `t`, with their multiplicities summed (zeros dropped).
fn present<V: Ord, X>(held: &[Held<V, X>], t: u64) -> Present<'_, V> {
    let mut out: Present<'_, V> = held
        .iter()
        .filter(|h| h.present(t))
        .map(|h| (&h.value, h.r))
        .collect();
    consolidate_small(&mut out);
    out
}

/// Sums the multiplicities of equal values of a short list and drops zeros, sorted.
fn consolidate_small<T: Ord>(v: &mut SmallVec<[(T, isize); 2]>) {
    let n = differential_dataflow::consolidation::consolidate_slice(v);
    v.truncate(n);
}

/// The same shared value: the same allocation, or equal contents.
fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl JoinOut {
    /// Equality that compares shared records by address first (a slot's outputs before and
    /// after a change share them; comparing their contents was most of the diff's time).
    fn same(&self, other: &JoinOut) -> bool {
        use JoinOut::*;
        match (self, other) {
            (Event(a), Event(b)) => same(a, b),
            (EventLabel(a, l), EventLabel(b, m)) => l == m && same(a, b),
            (Scored(a, p), Scored(b, q)) => same(p, q) && same(a, b),
            (Labeled(a, p, l), Labeled(b, q, m)) => l == m && same(p, q) && same(a, b),
            (Orphan(l), Orphan(m)) => l == m,
            (TooLate(l, a), TooLate(m, b)) => l == m && a == b,
            (Refused(s, a), Refused(t, b)) => s == t && a == b,
            (Example(a, l, _), Example(b, m, _)) => l == m && same(a, b),
            (Online(a), Online(b)) => a == b,
            _ => false,
        }
    }
}

/// `after − before`, zeros dropped, into `after` (both lists are a slot's few outputs).
fn diff(before: &mut Vec<(JoinOut, isize)>, after: &mut Vec<(JoinOut, isize)>) {
    for (o, r) in before.drain(..) {
        match after.iter_mut().find(|(x, _)| x.same(&o)) {
            Some(a) => a.1 -= r,
            None => after.push((o, -r)),
        }
    }
    after.retain(|(_, r)| *r != 0);
}

impl Slot {
    fn new(id: Text) -> Slot {
        Slot {
            id,
            events: SmallVec::new(),
            seen: SmallVec::new(),
            predictions: SmallVec::new(),
            labels: SmallVec::new(),
            last: None,
            timer: None,
            online: false,
        }
    }

    /// The deduplicated label at `t`: latest label time wins (ties: larger label).
    fn label_state(&self, t: u64) -> Option<LabelState> {
        let mut present: SmallVec<[((u64, u8), isize); 2]> = self
            .labels
            .iter()
            .filter(|l| l.present(t))
            .map(|l| (l.value, l.r))
            .collect();
        consolidate_small(&mut present);
        let first = present.first()?;
        let last = present[present.len() - 1];
        Some(LabelState {
            label: last.0 .1,
            time: last.0 .0,
            first_time: first.0 .0,
            versions: present.iter().map(|(_, r)| *r).sum::<isize>() as u32,
        })
    }

    /// Every output of the slot at `t`, with multiplicities, into `out` (none about its
    /// events unless `with_events`).
    fn outputs(&self, t: u64, with_events: bool, out: &mut Vec<(JoinOut, isize)>) {
        if !with_events {
            return;
        }
        let events = present(&self.events, t);
        let preds = present(&self.predictions, t);
        let label = self.label_state(t);
        for (e, r) in &events {
            out.push((JoinOut::Event((*e).clone()), *r));
            if let Some(l) = &label {
                out.push((JoinOut::EventLabel((*e).clone(), l.clone()), *r));
            }
            for (p, rp) in &preds {
                out.push((JoinOut::Scored((*e).clone(), (*p).clone()), r * rp));
                if let Some(l) = &label {
                    out.push((
                        JoinOut::Labeled((*e).clone(), (*p).clone(), l.clone()),
                        r * rp,
                    ));
                }
            }
        }
    }

    /// Admits event `held` (processed live at `t0`, the records of a timestamp taken in the
    /// order of their origins) unless the id is remembered then. A refused one extends the
    /// memory; it is returned with the origin of the event it duplicates.
    fn admit_event(
        &mut self,
        held: Held<Ev>,
        origin: Origin,
        t0: u64,
        memory: u64,
    ) -> Option<(Ev, Origin, Origin)> {
        if let Some(s) = self.seen.last_mut().filter(|s| t0 < s.until) {
            s.until = s.until.max(memory);
            return Some((held.value, origin, s.origin.clone()));
        }
        self.seen.push(Seen {
            t0,
            until: memory,
            time: held.value.time,
            origin,
        });
        self.events.push(held);
        None
    }

    /// Admits prediction `held` (processed live at `t0`) unless its (event id, model version)
    /// is remembered then; a refused one extends the memory and is returned with the origin
    /// of the prediction it duplicates.
    fn admit_prediction(
        &mut self,
        held: Held<Pr, (Origin, u64)>,
        t0: u64,
    ) -> Option<(Pr, Origin, Origin)> {
        let model = &held.value.model;
        if let Some(h) = self
            .predictions
            .iter_mut()
            .rev()
            .find(|h| h.value.model == *model && t0 < h.extra.1)
        {
            h.extra.1 = h.extra.1.max(held.extra.1);
            return Some((held.value, held.extra.0, h.extra.0.clone()));
        }
        self.predictions.push(held);
        None
    }

    /// Decides, once, every pending label that can be decided at `t`, as a live run decides
    /// it (by the times a live run processes the label and its event, so that a replay that
    /// feeds them later decides the same): a label whose event is remembered by its deadline
    /// (`max(its arrival, label time + horizon)`) meets it when the later of the two arrives,
    /// and is too late if every window of the event has retired by then; a label whose event
    /// is not is an orphan once `t` reaches the deadline. Pushes what was decided.
    fn decide(
        &mut self,
        t: u64,
        life: &Lifetimes,
        panes: &super::panes::Panes,
        out: &mut Vec<(JoinOut, isize)>,
    ) {
        for l in self.labels.iter_mut() {
            let Some(t0) = l.extra else { continue };
            let due = deadline(t0, l.value.0, life);
            // The event remembered when the later of the two arrived, by the deadline.
            let met = self
                .seen
                .iter()
                .rev()
                .map(|s| (s, t0.max(s.t0)))
                .find(|(s, at)| s.t0 <= due && *at < s.until);
            match met {
                Some((s, at)) => {
                    l.extra = None;
                    if panes.pane_expiry(panes.pane_of(s.time)) <= at {
                        out.push((JoinOut::TooLate(l.value.0, at.saturating_sub(s.time)), l.r));
                    }
                }
                None if t >= due => {
                    l.extra = None;
                    out.push((JoinOut::Orphan(l.value.0), l.r));
                }
                None => {}
            }
        }
    }

    /// The first time after `t` at which the slot's outputs may change by themselves.
    fn next_change(&self, t: u64, life: &Lifetimes) -> Option<u64> {
        self.events
            .iter()
            .map(|e| e.until)
            .chain(self.seen.iter().map(|s| s.until))
            .chain(self.predictions.iter().map(|p| p.until.max(p.extra.1)))
            .chain(self.labels.iter().map(|l| l.until))
            .chain(
                self.labels
                    .iter()
                    .filter_map(|l| Some(deadline(l.extra?, l.value.0, life))),
            )
            .filter(|x| *x > t)
            .min()
    }

    /// Entries held: events, the seen id, predictions and labels.
    fn len(&self) -> usize {
        self.events.len() + self.seen.len() + self.predictions.len() + self.labels.len()
    }

    /// Forgets what can no longer be present at any time after `t`.
    fn prune(&mut self, t: u64) {
        self.events.retain(|e| e.until > t);
        self.seen.retain(|s| s.until > t);
        self.predictions.retain(|p| p.until.max(p.extra.1) > t);
        self.labels.retain(|l| l.until > t);
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.seen.is_empty()
            && self.predictions.is_empty()
            && self.labels.is_empty()
    }
}

/// When the orphan decision of a label processed live at `t0`, of label time `time`, falls
/// due: then, or `label_horizon` after its label time (in ticks), whichever is later, at an
/// emit boundary (as every decision is: a snapshot at a boundary then holds exactly the
/// decisions of the outputs written before it).
fn deadline(t0: u64, time: u64, life: &Lifetimes) -> u64 {
    let due = t0.max(tick_floor(time, life.tick) + life.horizon);
    due.div_ceil(life.emit) * life.emit
}

/// Origins in order: timestamp, then source, then position (a source's name is compared only
/// between two sources: records of one share it).
fn by_origin(a: &Origin, b: &Origin) -> std::cmp::Ordering {
    a.stamp.cmp(&b.stamp).then_with(|| {
        let (p, q) = (&a.position, &b.position);
        if Arc::ptr_eq(&p.source, &q.source) {
            p.offset.cmp(&q.offset)
        } else {
            p.cmp(q)
        }
    })
}

/// When a live run processes a record of origin `o`: its stamp at the next emit boundary.
fn processed(o: &Origin, emit: u64) -> u64 {
    o.stamp.div_ceil(emit) * emit
}

/// A record refused as a duplicate.
enum Dup {
    Event(Ev),
    Prediction(Pr),
}

/// The dead letter of `refused`, read at `at`, a duplicate of the record read at `first`.
fn duplicate_letter(
    refused: &Dup,
    at: &Origin,
    first: &Origin,
    fields: &IdFields,
) -> (Stream, DeadLetter) {
    let first = format!("from {} (timestamp {})", first.position, first.stamp);
    let (stream, field, reason) = match refused {
        Dup::Event(e) => (
            Stream::Events,
            &fields.event_id,
            format!(
                "duplicate event id {:?}: already accepted {first}; the first record of an id is the event",
                e.id.as_str()
            ),
        ),
        Dup::Prediction(p) => (
            Stream::Predictions,
            &fields.prediction_event_id,
            format!(
                "duplicate prediction for event id {:?} by model version {:?}: already accepted {first}",
                p.event_id.as_str(),
                p.model.as_str()
            ),
        ),
    };
    // The record as decoded (its text is not kept past the source); its position finds it.
    let raw = match refused {
        Dup::Event(e) => serde_json::to_string(&**e),
        Dup::Prediction(p) => serde_json::to_string(&**p),
    }
    .unwrap_or_default();
    (
        stream,
        DeadLetter {
            stream: stream.name().to_string(),
            position: at.position.clone(),
            field: field.clone(),
            reason,
            raw: excerpt(&raw),
        },
    )
}

/// Builds the join stage: one keyed operator (`…Join`, exchanged by event id) holding, per
/// event id, a slot with its events, predictions and labels.
///
/// Semantics: the latest label (by label time, then value) of an event wins and a correction
/// retracts the old one; events and predictions leave state `ttl` after their own time
/// (ticks), labels one retention later, and an event's id is remembered (seen) one window and
/// one retention longer still after its last copy. Decided once per record, in the order of
/// [`Origin`]s and as of the time a live run processes it (so that a replay, which feeds a
/// history at one time, decides the same):
/// - the first event of an id is the event; a later one while the id is remembered is a
///   duplicate, refused to dead letters naming the first, and extends the memory (likewise a
///   second prediction of an (event id, model version) within `ttl` of the last copy);
/// - a label whose event is seen joins it, or, if every window of the event has retired, is
///   too late (counted with its latency, never an orphan); a label whose event is unseen at
///   `max(its arrival, label time + label_horizon)` is an orphan, and stays one: an event that
///   arrives later is a late event and joins the label, but retracts no orphan.
///
/// Time: a slot is evaluated at every timestamp at which a record of its id arrives and at the
/// one timer it holds (the next expiry or label deadline); its outputs at that time minus its
/// outputs at its previous evaluation are emitted as ±1 contributions, except retractions
/// about an event whose pane (of `panes`) has no live window left: every reader of those drops
/// or ignores them. Decisions are emitted once, at the time they are made. No retraction waits
/// in any batcher. State: the slots of ids with a live record. Failure modes: none on input;
/// a duplicate is a dead letter.
#[allow(clippy::too_many_arguments)]
pub fn join<'s>(
    name: &str,
    records: VecCollection<'s, u64, (Record, Origin)>,
    life: Lifetimes,
    fields: IdFields,
    panes: &super::panes::Panes,
    held: Arc<std::sync::atomic::AtomicI64>,
    wanted: Wanted,
) -> Joined<'s> {
    let panes = panes.clone();
    let Lifetimes {
        tick,
        emit,
        ttl,
        retention,
        label_window,
        ..
    } = life;
    let seen_ttl = ttl + label_window + retention;
    // Labels stay one retention longer than events: when an event's first label expires, its
    // remaining labels form a new state, which must land only in already retired windows.
    // Labels of one event more than `retention` apart are therefore treated as separate
    // histories.
    let label_ttl = ttl + retention;
    let peers = records.inner.scope().peers();
    let out = records
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(JoinOut, u64, isize)>>, _, _, _>(
            Exchange::new(move |((r, _), _, _): &((Record, Origin), u64, isize)| {
                let id = match r {
                    Record::Event(e) => &e.id,
                    Record::Prediction(p) => &p.event_id,
                    Record::Label(l) => &l.event_id,
                };
                super::panes::owner(super::panes::stable_hash(id), peers)
            }),
            &format!("{name}.Join"),
            move |_, _| {
                let mut slots = Slots::default();
                let mut pending: Pending<Vec<((Record, Origin), isize)>> = BTreeMap::new();
                let mut timers: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
                let mut hold = TimerHold::default();
                let mut before = Vec::new();
                let mut after = Vec::new();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each(|cap, data| {
                        stash(&mut pending, &cap, port, data, |s, r, _, d| s.push((r, d)));
                    });
                    while let Some((t, cap, records)) =
                        hold.next_due(&mut pending, &timers, frontier)
                    {
                        // In the order a live run meets them (origins are unique; a replay feeds a whole history
                        // at one time; a worker receives its peers' records in any order).
                        let mut records = records;
                        records.sort_unstable_by(|a, b| by_origin(&a.0 .1, &b.0 .1));
                        // Slots touched at `t`, by index.
                        let mut touched: Vec<u32> = Vec::with_capacity(records.len());
                        let mut session = output.session(&cap);
                        let mut added = 0usize;
                        for ((rec, origin), r) in records {
                            let t0 = processed(&origin, emit);
                            let (id, dup) = match rec {
                                Record::Event(e) => {
                                    let id = slots.get_or_insert(slots.hash(&e.id), &e.id);
                                    let slot = slots.at(id);
                                    let base = tick_floor(e.time, tick);
                                    let n = slot.len();
                                    let h = Held {
                                        value: e,
                                        from: t,
                                        until: base + ttl,
                                        r,
                                        extra: (),
                                    };
                                    let dup = slot
                                        .admit_event(h, origin, t0, base + seen_ttl)
                                        .map(|(e, at, first)| (Dup::Event(e), at, first));
                                    added += slot.len() - n;
                                    (id, dup)
                                }
                                Record::Prediction(p) => {
                                    let id =
                                        slots.get_or_insert(slots.hash(&p.event_id), &p.event_id);
                                    let slot = slots.at(id);
                                    let n = slot.len();
                                    let until = tick_floor(p.time, tick) + ttl;
                                    let h = Held {
                                        until,
                                        value: p,
                                        from: t,
                                        r,
                                        extra: (origin, until),
                                    };
                                    let dup = slot
                                        .admit_prediction(h, t0)
                                        .map(|(p, at, first)| (Dup::Prediction(p), at, first));
                                    added += slot.len() - n;
                                    (id, dup)
                                }
                                Record::Label(l) => {
                                    let id =
                                        slots.get_or_insert(slots.hash(&l.event_id), &l.event_id);
                                    let slot = slots.at(id);
                                    slot.labels.push(Held {
                                        value: (l.time, l.label),
                                        from: t,
                                        until: tick_floor(l.time, tick) + label_ttl,
                                        r,
                                        extra: Some(t0),
                                    });
                                    added += 1;
                                    (id, None)
                                }
                            };
                            if let Some((dup, at, first)) = dup {
                                let (stream, letter) = duplicate_letter(&dup, &at, &first, &fields);
                                session.give((JoinOut::Refused(stream, Box::new(letter)), t, r));
                            }
                            touched.push(id);
                        }
                        held.fetch_add(added as i64, std::sync::atomic::Ordering::Relaxed);
                        if let Some(ids) = timers.remove(&t) {
                            // A slot freed and reused since has a timer of its own.
                            touched
                                .extend(ids.into_iter().filter(|&i| slots.at(i).timer == Some(t)));
                        }
                        for i in touched {
                            let slot = slots.at(i);
                            if slot.last == Some(t) {
                                // Touched twice at `t`: already evaluated.
                                continue;
                            }
                            before.clear();
                            after.clear();
                            // Once the slot's events have all left state, every change about
                            // one is a retraction about a retired pane (an event leaves after
                            // the last window of its pane has retired), dropped below: only its
                            // labels' decisions are made.
                            let with_events = slot.events.iter().any(|e| e.until > t);
                            if let Some(last) = slot.last {
                                slot.outputs(last, with_events, &mut before);
                            }
                            slot.outputs(t, with_events, &mut after);
                            diff(&mut before, &mut after);
                            // The slot's labeled events changed only by additions: an example
                            // (the greatest, as the learner takes the last of an id's sorted
                            // changes). Its outputs are all of this id's changes at `t`.
                            let mut labeled = after
                                .iter()
                                .filter(|(o, _)| matches!(o, JoinOut::EventLabel(..)))
                                .peekable();
                            let mut example = None;
                            if labeled.peek().is_some() && labeled.clone().all(|(_, r)| *r > 0) {
                                if let Some((JoinOut::EventLabel(e, l), _)) =
                                    labeled.max_by(|a, b| a.0.cmp(&b.0))
                                {
                                    example = Some((e.clone(), l.clone()));
                                }
                            }
                            // The online join meets this slot's changes with scores of earlier
                            // timestamps; an example's own score meets the slot's values at
                            // `t`, which it carries.
                            let online_sides = match wanted.online {
                                Some(until) => slot.online || t < until,
                                None => false,
                            };
                            if let Some((e, l)) = example {
                                let mut sides = Sides::default();
                                if wanted.online.is_some() {
                                    before.clear();
                                    slot.outputs(t, with_events, &mut before);
                                    sides.extend(before.drain(..).filter_map(|(o, r)| match o {
                                        JoinOut::EventLabel(e, l) => Some((Side::Label(e, l), r)),
                                        JoinOut::Scored(e, p) => Some((Side::Scored(e, p), r)),
                                        _ => None,
                                    }));
                                    slot.online = true;
                                }
                                session.give((JoinOut::Example(e, l, sides), t, 1));
                            }
                            slot.online |= online_sides;
                            // (After the example above, which must see every change.)
                            // Retractions about an event once every window of its pane has
                            // retired change nothing downstream: their readers are pane
                            // aggregations, which drop them, the concept-drift detectors, which
                            // read additions only, and the online join, which forgets values
                            // of retired panes by itself.
                            after.retain(|(o, r)| match o {
                                JoinOut::Event(e)
                                | JoinOut::EventLabel(e, _)
                                | JoinOut::Scored(e, _)
                                | JoinOut::Labeled(e, ..)
                                    if *r < 0 =>
                                {
                                    panes.pane_expiry(panes.pane_of(e.time)) > t
                                }
                                _ => true,
                            });
                            for (o, r) in after.drain(..) {
                                if online_sides {
                                    let side = match &o {
                                        JoinOut::EventLabel(e, l) => {
                                            Some(Side::Label(e.clone(), l.clone()))
                                        }
                                        JoinOut::Scored(e, p) => {
                                            Some(Side::Scored(e.clone(), p.clone()))
                                        }
                                        _ => None,
                                    };
                                    if let Some(side) = side {
                                        session.give((JoinOut::Online(side), t, r));
                                    }
                                }
                                session.give((o, t, r));
                            }
                            slot.decide(t, &life, &panes, &mut after);
                            for (o, r) in after.drain(..) {
                                session.give((o, t, r));
                            }
                            let before = slot.len();
                            slot.prune(t);
                            held.fetch_sub(
                                (before - slot.len()) as i64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            slot.last = Some(t);
                            slot.timer = slot.next_change(t, &life);
                            match slot.timer {
                                Some(at) => {
                                    timers.entry(at).or_default().push(i);
                                    hold.cover(&cap, at);
                                }
                                None if slot.is_empty() => {
                                    let id = std::mem::take(&mut slot.id);
                                    slots.remove(slots.hash(&id), i);
                                }
                                None => {}
                            }
                        }
                        drop(session);
                        hold.release_to(timers.keys().next().copied());
                    }
                }
            },
        )
        .as_collection();
    split(out.inner, name, wanted)
}

/// Splits the join's outputs into the streams their readers take (`…JoinSplit`), each value
/// moved or shared into every stream that wants it: one stateless operator where maps and
/// concatenations per reader each copied every value. Time: outputs keep their timestamps.
/// State: none. Failure modes: none.
fn split<'s>(
    out: TimelyStream<'s, u64, Vec<(JoinOut, u64, isize)>>,
    name: &str,
    wanted: Wanted,
) -> Joined<'s> {
    let mut builder = OperatorBuilder::new(format!("{name}.JoinSplit"), out.scope());
    let mut input = builder.new_input(out, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut o_events, events) = builder.new_output::<Vec<(Ev, u64, isize)>>();
    let (mut o_labels, label_inputs) = builder.new_output::<Vec<(LabelInput, u64, isize)>>();
    let (mut o_drift, drift_inputs) = builder.new_output::<Vec<((Ev, Option<Pr>), u64, isize)>>();
    let (mut o_online, online_sides) = builder.new_output::<Vec<((ById, Side), u64, isize)>>();
    let (mut o_labeled, labeled) = builder.new_output::<Vec<(Labeled, u64, isize)>>();
    let (mut o_examples, examples) =
        builder.new_output::<Vec<((Ev, LabelState, Sides), u64, isize)>>();
    let (mut o_dead, dead) = builder.new_output::<Vec<(DeadLetter, u64, isize)>>();
    let (mut o_verdicts, verdicts) = builder.new_output::<Vec<(Verdict, u64, isize)>>();
    builder.build(move |_| {
        move |_| {
            let mut h_events = o_events.activate();
            let mut h_labels = o_labels.activate();
            let mut h_drift = o_drift.activate();
            let mut h_online = o_online.activate();
            let mut h_labeled = o_labeled.activate();
            let mut h_examples = o_examples.activate();
            let mut h_dead = o_dead.activate();
            let mut h_verdicts = o_verdicts.activate();
            input.for_each_stamp(|cap, data| {
                // Each message's outputs leave as messages of their own: a stamp's outputs
                // gathered into one vector per stream grew it by copying it over and over.
                for container in data {
                    let n = container.len();
                    let (mut ev, mut la, mut dr, mut on, mut lb, mut ex) = Default::default();
                    let (mut dl, mut vd) = (Vec::new(), Vec::new());
                    for (o, t, r) in container.drain(..) {
                        match o {
                            JoinOut::Event(e) => {
                                push(&mut la, n, (LabelInput::Event(e.clone()), t, r));
                                if wanted.drift_events {
                                    push(&mut dr, n, ((e.clone(), None), t, r));
                                }
                                push(&mut ev, n, (e, t, r));
                            }
                            JoinOut::EventLabel(e, l) => {
                                push(&mut la, n, (LabelInput::Labeled(e, l), t, r));
                            }
                            JoinOut::Scored(e, p) => {
                                if wanted.drift_scores {
                                    push(&mut dr, n, ((e.clone(), Some(p.clone())), t, r));
                                }
                            }
                            JoinOut::Labeled(e, p, l) => push(&mut lb, n, ((e, p, l), t, r)),
                            JoinOut::Orphan(time) => {
                                la.push((LabelInput::Orphan(time), t, r));
                                vd.push((Verdict::Orphaned, t, r));
                            }
                            JoinOut::TooLate(time, latency) => {
                                la.push((LabelInput::TooLate(time), t, r));
                                vd.push((Verdict::TooLate(latency), t, r));
                            }
                            JoinOut::Refused(stream, letter) => {
                                dl.push((*letter, t, r));
                                vd.push((Verdict::Duplicate(stream), t, r));
                            }
                            JoinOut::Example(e, l, s) => push(&mut ex, n, ((e, l, s), t, r)),
                            JoinOut::Online(side) => {
                                let (Side::Label(e, _) | Side::Scored(e, _)) = &side;
                                push(&mut on, n, ((ById::new(e), side), t, r));
                            }
                        }
                    }
                    h_events.give(&cap, &mut ev);
                    h_labels.give(&cap, &mut la);
                    h_drift.give(&cap, &mut dr);
                    h_online.give(&cap, &mut on);
                    h_labeled.give(&cap, &mut lb);
                    h_examples.give(&cap, &mut ex);
                    h_dead.give(&cap, &mut dl);
                    h_verdicts.give(&cap, &mut vd);
                }
            });
        }
    });
    Joined {
        events: events.as_collection(),
        label_inputs: label_inputs.as_collection(),
        drift_inputs: drift_inputs.as_collection(),
        online_sides: online_sides.as_collection(),
        labeled: labeled.as_collection(),
        examples: examples.as_collection(),
        dead: dead.as_collection(),
        verdicts: verdicts.as_collection(),
    }
}

/// Pushes `x`, allocating room for the `n` values of the message it comes from at the first
/// push (a stream that receives any of them is sized once; one that receives none allocates
/// nothing).
pub(super) fn push<T>(v: &mut Vec<T>, n: usize, x: T) {
    if v.capacity() == 0 {
        v.reserve(n.max(1));
    }
    v.push(x);
}
