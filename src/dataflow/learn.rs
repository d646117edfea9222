//! Online learning in the dataflow: the learner over labeled events, its prequential scores
//! joined back for quality metrics and the shadow comparison with the production model.
//!
//! Semantics: an event becomes an example at the timestamp its first effective label appears
//! (a correction or duplicate label is not learned again); examples are learned in
//! (timestamp, event id) order on one worker. The online score of an example is the one the
//! model gave it before learning from it; joined with the *current* label, a later correction
//! amends the online model's quality as it amends the production model's. Model versions,
//! decisions and quarantined records are outputs at the timestamp they happened; a live run
//! also writes versions and decisions to the registry.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::progress::operate::FrontierInterest;

use super::cardinality::admit;
use super::join::{push, ById, Joined, Labeled, Side, Sides};
use super::keyed_join::keyed_join;
use super::ordered::{in_order, Snapshots};
use super::panes::{assemble, ident, pre_aggregate, PaneAcc, Panes, Render};
use super::quality::QKey;
use super::windows::{Names, Status, Win};
use crate::config::Job;
use crate::control::Control;
use crate::error::Error;
use crate::learn::learner::{
    Action, By, DecisionRow, Example, Learner, LearnerState, Out, QuarantineRow, VersionRow,
};
use crate::learn::Learn;
use crate::records::{Event, Prediction};
use crate::registry::{HistoryEntry, Registry};

/// The model name the online model's scores carry in the quality output.
pub const ONLINE: &str = "online";

/// One output of the learner at a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LearnOut {
    /// Prequential score of an example: its event, the score in micro-units, and what it
    /// meets in the online join at its time (`None` for a score restored by a restart, which
    /// meets what the join rebuilt).
    Score(super::join::Ev, i64, Option<Sides>),
    /// A published version.
    Version(VersionRow),
    /// A decision.
    Decision(DecisionRow),
    /// A quarantined example.
    Quarantine(QuarantineRow),
}

impl super::keyed_join::EventTime for Side {
    fn event_time(&self) -> u64 {
        match self {
            Side::Label(e, _) | Side::Scored(e, _) => e.time,
        }
    }
}

/// An online score with its event's time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Score(u64, Arc<Prediction>);

impl super::keyed_join::EventTime for Score {
    fn event_time(&self) -> u64 {
        self.0
    }
}

/// An online score joined: with a labeled event (quality input) or a production prediction
/// (the shadow comparison: event, production prediction, online score).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Met {
    Labeled(super::join::Ev, super::join::Pr, super::join::LabelState),
    Pair(super::join::Ev, super::join::Pr, i64),
}

/// Online and production scores of the same events, per window × segment × production model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShadowRow {
    /// Window, segment and production model version.
    pub key: QKey,
    /// Events scored by both.
    pub count: i64,
    /// Of which both classify alike at the threshold.
    pub agree: i64,
    /// Sum of |online − production| scores, micro-units.
    pub abs_diff: i64,
    /// Sum of (online − production) scores, micro-units.
    pub diff: i64,
}

/// The accumulator of one shadow pane: [count, agree, Σ|diff|, Σ diff].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct ShadowPane([i64; 4]);

impl PaneAcc for ShadowPane {
    fn merge(&mut self, d: &Self) {
        for (a, b) in self.0.iter_mut().zip(d.0) {
            *a += b;
        }
    }

    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

/// Renders shadow rows (no status: a row lives until its window retires, with no tombstone).
struct ShadowRender;

impl Render for ShadowRender {
    type Group = (Arc<str>, Arc<str>);
    type Memo = ();
    type Acc = ShadowPane;
    type Row = ShadowRow;

    fn render(
        &self,
        (segment, model): &(Arc<str>, Arc<str>),
        win: Win,
        _status: Status,
        panes: &[&ShadowPane],
        out: &mut Vec<ShadowRow>,
    ) {
        let mut a = ShadowPane::default();
        for p in panes {
            a.merge(p);
        }
        if a.is_empty() {
            return;
        }
        let [count, agree, abs_diff, diff] = a.0;
        out.push(ShadowRow {
            key: QKey {
                win,
                segment: segment.to_string(),
                model: model.to_string(),
            },
            count,
            agree,
            abs_diff,
            diff,
        });
    }

    fn tombstone(&self, _row: &ShadowRow) -> Option<ShadowRow> {
        None
    }
}

/// Writes a live run's versions and decisions to the registry.
pub struct Publisher {
    /// The registry.
    pub registry: Registry,
    /// Only timestamps in this range are published (outputs below it were published before).
    pub write: Range<u64>,
    /// The first failure; the run reports it when it ends.
    pub error: Rc<RefCell<Option<Error>>>,
    /// Told after each change (MLflow publishing follows the registry).
    pub changed: Option<crate::mlflow::publisher::Notifier>,
}

impl Publisher {
    /// Publishes one output at `t`; `offline`: it is the decision on a command applied to the
    /// registry while no job ran.
    fn apply(&self, t: u64, out: &Out, offline: bool) {
        if !self.write.contains(&t) || self.error.borrow().is_some() {
            return;
        }
        let r = match out {
            Out::Version(_, file) => self.registry.publish(file),
            Out::Decision(d) => {
                let (by, command) = match d.by {
                    By::Job => ("job", None),
                    By::Operator(seq) => ("operator", Some(seq)),
                };
                let entry = HistoryEntry {
                    seq: Some(d.seq),
                    ts: Some(t),
                    action: d.action.name().to_string(),
                    version: d.version.clone(),
                    champion: d.champion.clone(),
                    reason: d.reason.clone(),
                    by: by.into(),
                    command,
                };
                // A command applied to the registry while no job ran is in its history
                // already (the same action under the same number): the learner only followed
                // it, unless it refused it.
                self.registry.apply(d.seq, entry, |f| {
                    if offline {
                        return;
                    }
                    match d.action {
                        Action::Promote => {
                            f.champion = d.champion.clone();
                            if d.by == By::Job || f.challenger == d.champion {
                                f.challenger = None;
                            }
                        }
                        Action::Block => f.challenger = d.version.clone(),
                        Action::Rollback => {
                            f.champion = d.champion.clone();
                            f.paused = true;
                        }
                        Action::Pause => f.paused = true,
                        Action::Resume => f.paused = false,
                        _ => {}
                    }
                })
            }
            _ => Ok(()),
        };
        match r {
            Ok(()) => {
                if let (Some(n), Out::Version(..) | Out::Decision(_)) = (&self.changed, out) {
                    n.notify();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "publishing to the model registry failed");
                *self.error.borrow_mut() = Some(e);
            }
        }
    }
}

/// What the learning stage produces.
pub struct LearnOutputs<'s> {
    /// Published versions.
    pub versions: VecCollection<'s, u64, VersionRow>,
    /// Gate, rollback and schedule decisions.
    pub decisions: VecCollection<'s, u64, DecisionRow>,
    /// Examples kept out of learning.
    pub quarantine: VecCollection<'s, u64, QuarantineRow>,
    /// The online model's prequential predictions with their current labels, as quality input.
    pub labeled: VecCollection<'s, u64, Labeled>,
    /// The shadow comparison with the production model.
    pub shadow: VecCollection<'s, u64, ShadowRow>,
}

/// Where the learner starts.
#[derive(Debug, Clone, Default)]
pub struct LearnStart {
    /// Its state as of `first`.
    pub state: Option<LearnerState>,
    /// Examples labeled before this timestamp are already in the state.
    pub first: u64,
}

/// What the learner takes at a timestamp: operators' commands first (in their order), then
/// the examples.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum LearnIn {
    Control(Control),
    Example(ExampleIn),
}

/// Builds the learning stage over the joined streams and the operators' commands; `ttl` is how
/// long an event stays in the join's state.
#[allow(clippy::too_many_arguments)]
pub fn learn<'s>(
    job: &Job,
    learn: Arc<Learn>,
    panes: &Panes,
    joined: &Joined<'s>,
    controls: VecCollection<'s, u64, Control>,
    ttl: u64,
    start: LearnStart,
    segment_ms: u64,
    snapshots: Option<Snapshots>,
    publisher: Option<Publisher>,
) -> LearnOutputs<'s> {
    let name = job.spec.name.clone();
    let learner = Learner::new(
        learn.spec.clone(),
        learn.features.clone(),
        &name,
        &job.fingerprint(),
        job.spec.metrics.threshold,
        ttl,
        start.state,
    );
    let earlier = learner
        .live_scores()
        .map(|s| {
            // A restart knows the event of an earlier score only by its id and time: all
            // that a score's key and its prediction read.
            let e = Arc::new(Event {
                id: s.event_id.as_str().into(),
                entity: Default::default(),
                time: s.event_time,
                numeric: Default::default(),
                categorical: Default::default(),
                segments: Default::default(),
            });
            let o = LearnOut::Score(e, s.score, None);
            (o, s.ts, 1)
        })
        .collect();
    let input = joined
        .examples
        .clone()
        .map(LearnIn::Example)
        .concat(controls.map(LearnIn::Control));
    let outs = in_order(
        input,
        &format!("{name}.Learner"),
        learner,
        earlier,
        start.first,
        segment_ms,
        snapshots,
        Learner::snapshot,
        move |learner, t, batch, out| {
            let mut produced = Vec::new();
            let mut examples_in = Vec::with_capacity(batch.len());
            for (i, r) in batch {
                match i {
                    LearnIn::Control(c) if r > 0 => {
                        let from = produced.len();
                        learner.control(&c, &mut produced);
                        for o in &produced[from..] {
                            if let Some(p) = &publisher {
                                p.apply(t, o, c.offline);
                            }
                        }
                    }
                    LearnIn::Control(_) => {}
                    LearnIn::Example(e) => examples_in.push((e, r)),
                }
            }
            let (examples, mut sides) = new_examples(examples_in);
            let from = produced.len();
            learner.step(t, &examples, &mut produced);
            for o in &produced[from..] {
                if let Some(p) = &publisher {
                    p.apply(t, o, false);
                }
            }
            // One score per example, in the examples' order.
            let mut sides = sides.drain(..);
            for o in produced {
                let row = match o {
                    Out::Score(e, score) => {
                        let s = sides.next().expect("the learner scores each example once");
                        LearnOut::Score(e, score, Some(s))
                    }
                    Out::Version(v, _) => LearnOut::Version(v),
                    Out::Decision(d) => LearnOut::Decision(d),
                    Out::Quarantine(q) => LearnOut::Quarantine(q),
                };
                out.push((row, 1));
            }
        },
    );
    let Split {
        versions,
        decisions,
        quarantine,
        scores,
    } = split(outs, &name);
    // Scores are never retracted: the online join forgets a score when the last window of its
    // event's pane retires, and a retraction could only arrive later still (an event leaves
    // the join `ttl` after its tick, past that retirement), when the join drops it unread.
    // The scores meet the join's labeled events (the online model's quality) and its
    // production predictions (the shadow comparison) in one keyed join.
    let sides = joined.online_sides.clone();
    let met = keyed_join(
        scores,
        sides,
        &format!("{name}.Online"),
        panes,
        start.first,
        |_, Score(_, online), side| match side {
            Side::Label(e, l) => Met::Labeled(e.clone(), online.clone(), l.clone()),
            Side::Scored(e, p) => Met::Pair(e.clone(), p.clone(), online.score),
        },
    );
    let (labeled, pairs) = split_met(met, &name);
    let threshold = crate::records::to_micro(job.spec.metrics.threshold);
    let panes = panes.clone();
    let pn = panes.clone();
    let mut names = Names::new(job);
    let mut segments = Vec::new();
    let deltas = pre_aggregate(
        pairs,
        &format!("{name}.ShadowPre"),
        &panes,
        move |(e, p, online): &(super::join::Ev, super::join::Pr, i64), r, emit| {
            let r = r as i64;
            let agree = ((*online >= threshold) == (p.score >= threshold)) as i64;
            let d = online - p.score;
            names.segments(e, &mut segments);
            let model = names.model(&p.model);
            for segment in &segments {
                emit(
                    (ident(segment), ident(&model)),
                    &|| (segment.clone(), model.clone()),
                    pn.pane_of(e.time),
                    &mut |a: &mut ShadowPane| {
                        for (x, y) in a.0.iter_mut().zip([1, agree, d.abs(), d]) {
                            *x += y * r;
                        }
                    },
                );
            }
        },
    );
    let cap = job.spec.limits.clone().unwrap_or_default().segment_values();
    let deltas = admit(deltas, &format!("{name}.ShadowCap"), panes.clone(), cap);
    let shadow = assemble(
        deltas,
        &format!("{name}.ShadowWindows"),
        panes,
        ShadowRender,
    );
    LearnOutputs {
        versions,
        decisions,
        quarantine,
        labeled,
        shadow,
    }
}

/// The examples of one timestamp: events whose first effective label appeared at it (a label
/// state added with no earlier one retracted), sorted by event id; and beside each, what its
/// score meets in the online join.
fn new_examples(batch: Vec<(ExampleIn, isize)>) -> (Vec<Example>, Vec<Sides>) {
    let mut out = (Vec::new(), Vec::new());
    let mut batch = batch.into_iter().peekable();
    while let Some(((e, l, s), r)) = batch.next() {
        let (mut last, mut added) = ((e, l, s), r > 0);
        while let Some(next) = batch.next_if(|((x, _, _), _)| x.id == last.0.id) {
            added &= next.1 > 0;
            last = next.0;
        }
        if added {
            let (e, l, s) = last;
            out.0.push(Example {
                event: e,
                label: l.label,
            });
            out.1.push(s);
        }
    }
    out
}

/// An example as the join gives it: the event, its label, and what its score meets.
type ExampleIn = (super::join::Ev, super::join::LabelState, Sides);

/// The learner's outputs by kind.
struct Split<'s> {
    versions: VecCollection<'s, u64, VersionRow>,
    decisions: VecCollection<'s, u64, DecisionRow>,
    quarantine: VecCollection<'s, u64, QuarantineRow>,
    /// Online scores by event id, each made into a prediction shared by every row it joins,
    /// with what it meets at its time (see `keyed_join`).
    scores: VecCollection<'s, u64, (ById, (Score, Option<Sides>))>,
}

/// Splits the learner's outputs by kind (`…LearnerSplit`): one stateless operator that moves
/// each output once, where a map per kind copied every output for each.
/// Time: outputs keep their timestamps. State: none. Failure modes: none.
fn split<'s>(outs: VecCollection<'s, u64, LearnOut>, name: &str) -> Split<'s> {
    let stream = outs.inner;
    let mut builder = OperatorBuilder::new(format!("{name}.LearnerSplit"), stream.scope());
    let mut input = builder.new_input(stream, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut o_versions, versions) = builder.new_output::<Vec<(VersionRow, u64, isize)>>();
    let (mut o_decisions, decisions) = builder.new_output::<Vec<(DecisionRow, u64, isize)>>();
    let (mut o_quarantine, quarantine) = builder.new_output::<Vec<(QuarantineRow, u64, isize)>>();
    let (mut o_scores, scores) =
        builder.new_output::<Vec<((ById, (Score, Option<Sides>)), u64, isize)>>();
    builder.build(move |_| {
        move |_| {
            let mut h_versions = o_versions.activate();
            let mut h_decisions = o_decisions.activate();
            let mut h_quarantine = o_quarantine.activate();
            let mut h_scores = o_scores.activate();
            input.for_each_stamp(|cap, data| {
                // Each message's outputs leave as messages of their own (see `join::split`).
                for container in data {
                    let n = container.len();
                    let (mut v, mut d, mut q, mut s) = Default::default();
                    for (o, t, r) in container.drain(..) {
                        match o {
                            LearnOut::Version(x) => push(&mut v, n, (x, t, r)),
                            LearnOut::Decision(x) => push(&mut d, n, (x, t, r)),
                            LearnOut::Quarantine(x) => push(&mut q, n, (x, t, r)),
                            LearnOut::Score(e, score, sides) => {
                                let p = Arc::new(Prediction {
                                    event_id: e.id.clone(),
                                    model: ONLINE.into(),
                                    score,
                                    time: e.time,
                                });
                                let v = (Score(e.time, p), sides);
                                push(&mut s, n, ((ById::new(&e), v), t, r));
                            }
                        }
                    }
                    h_versions.give(&cap, &mut v);
                    h_decisions.give(&cap, &mut d);
                    h_quarantine.give(&cap, &mut q);
                    h_scores.give(&cap, &mut s);
                }
            });
        }
    });
    Split {
        versions: versions.as_collection(),
        decisions: decisions.as_collection(),
        quarantine: quarantine.as_collection(),
        scores: scores.as_collection(),
    }
}

/// Splits the online join's outputs into the online model's labeled predictions and the shadow
/// pairs (`…OnlineSplit`), moving each output once.
/// Time: outputs keep their timestamps. State: none. Failure modes: none.
fn split_met<'s>(
    met: VecCollection<'s, u64, Met>,
    name: &str,
) -> (
    VecCollection<'s, u64, Labeled>,
    VecCollection<'s, u64, (super::join::Ev, super::join::Pr, i64)>,
) {
    let stream = met.inner;
    let mut builder = OperatorBuilder::new(format!("{name}.OnlineSplit"), stream.scope());
    let mut input = builder.new_input(stream, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut o_labeled, labeled) = builder.new_output::<Vec<(Labeled, u64, isize)>>();
    let (mut o_pairs, pairs) =
        builder.new_output::<Vec<((super::join::Ev, super::join::Pr, i64), u64, isize)>>();
    builder.build(move |_| {
        move |_| {
            let mut h_labeled = o_labeled.activate();
            let mut h_pairs = o_pairs.activate();
            input.for_each_stamp(|cap, data| {
                // Each message's outputs leave as messages of their own (see `join::split`).
                for container in data {
                    let n = container.len();
                    let (mut l, mut p) = (Vec::new(), Vec::new());
                    for (m, t, r) in container.drain(..) {
                        match m {
                            Met::Labeled(e, pr, ls) => push(&mut l, n, ((e, pr, ls), t, r)),
                            Met::Pair(e, pr, online) => push(&mut p, n, ((e, pr, online), t, r)),
                        }
                    }
                    h_labeled.give(&cap, &mut l);
                    h_pairs.give(&cap, &mut p);
                }
            });
        }
    });
    (labeled.as_collection(), pairs.as_collection())
}
