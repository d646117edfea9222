//! The three-way join: events ⋈ predictions ⋈ deduplicated labels, on event id.
//!
//! Semantics: the latest label (by label time, then value) of an event wins and a correction
//! retracts the old one. Events, predictions and labels leave state by temporal expiry
//! `ttl` after their own time, which is at or after the retirement of every window they feed.
//! A label whose event is still unknown `label_horizon` after its label time is an orphan; if the
//! event turns up later, the orphan count is amended.
//!
//! State: the event and label arrangements are shared by both joins and by the orphan antijoin.

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::temporal::{delay_to, expire_at};
use crate::records::{Event, Label, Prediction};
use crate::sources::stamp::tick_floor;

/// The effective label of an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelState {
    /// The winning label value.
    pub label: u8,
    /// Label time of the winning label.
    pub time: u64,
    /// Time the first label for the event arrived (label latency is measured to it).
    pub first_time: u64,
    /// How many labels were received for the event (duplicates and corrections included).
    pub versions: u32,
}

/// A prediction joined with its event and effective label.
pub type Labeled = (Event, Prediction, LabelState);

/// A collection arranged by event id.
pub type Arr<'s, V> = Arranged<'s, TraceAgent<ValSpine<String, V, u64, isize>>>;

/// Outputs of the join stage.
pub struct Joined<'s> {
    /// Events, valid until their expiry.
    pub events: VecCollection<'s, u64, Event>,
    /// Events that have a label, with it.
    pub event_labels: VecCollection<'s, u64, (Event, LabelState)>,
    /// Predictions with their event.
    pub scored: VecCollection<'s, u64, (Event, Prediction)>,
    /// Predictions with their event and label.
    pub labeled: VecCollection<'s, u64, Labeled>,
    /// Effective labels whose event is unknown after the label horizon.
    pub orphans: VecCollection<'s, u64, (String, LabelState)>,
    /// `events` arranged by event id, for other joins to share.
    pub events_by_id: Arr<'s, Event>,
    /// Effective labels arranged by event id.
    pub labels_by_id: Arr<'s, LabelState>,
    /// `scored` arranged by event id.
    pub scored_by_id: Arr<'s, (Event, Prediction)>,
}

/// How long join state is kept, in milliseconds of event time.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// The job's tick.
    pub tick: u64,
    /// How long after its own time an event or prediction stays in state.
    pub ttl: u64,
    /// The label horizon.
    pub horizon: u64,
    /// The job's retention.
    pub retention: u64,
    /// The longest window (labels are windowed by their first label time).
    pub label_window: u64,
}

/// Builds the join stage.
pub fn join<'s>(
    name: &str,
    events: VecCollection<'s, u64, Event>,
    predictions: VecCollection<'s, u64, Prediction>,
    labels: VecCollection<'s, u64, Label>,
    life: Lifetimes,
) -> Joined<'s> {
    let Lifetimes {
        tick,
        ttl,
        horizon,
        retention,
        label_window,
    } = life;
    // Event ids outlive their events (and the labels that may refer to them), so that an
    // event's expiry never turns its labels into orphans after the fact.
    let known_ttl = ttl + label_window + retention;
    let known = expire_at(
        events.clone().map(|e| (e.id, e.time)),
        &format!("{name}.KnownExpiry"),
        move |(_, t)| tick_floor(*t, tick) + known_ttl,
    )
    .map(|(id, _)| id)
    .distinct();
    let events = expire_at(events, &format!("{name}.EventExpiry"), move |e: &Event| {
        tick_floor(e.time, tick) + ttl
    });
    let predictions = expire_at(
        predictions,
        &format!("{name}.PredictionExpiry"),
        move |p: &Prediction| tick_floor(p.time, tick) + ttl,
    );
    // Labels stay one retention longer than events: when an event's first label expires, its
    // remaining labels form a new state, which must land only in already retired windows (or an
    // orphan would be counted twice). Labels of one event more than `retention` apart are
    // therefore treated as separate histories.
    let label_ttl = ttl + retention;
    let labels = expire_at(labels, &format!("{name}.LabelExpiry"), move |l: &Label| {
        tick_floor(l.time, tick) + label_ttl
    });

    let label_state = labels
        .map(|l| (l.event_id, (l.time, l.label)))
        .reduce_named(&format!("{name}.LabelDedupe"), |_id, input, output| {
            let versions: isize = input.iter().map(|(_, r)| *r).sum();
            let first_time = input[0].0 .0;
            // Values arrive sorted: the last one has the latest label time (ties: larger label).
            let &(time, label) = input[input.len() - 1].0;
            output.push((
                LabelState {
                    label,
                    time,
                    first_time,
                    versions: versions as u32,
                },
                1,
            ));
        });

    let ev_arr: Arr<'s, Event> = events
        .clone()
        .map(|e| (e.id.clone(), e))
        .arrange_by_key_named(&format!("{name}.EventsById"));
    let lab_arr: Arr<'s, LabelState> = label_state
        .clone()
        .arrange_by_key_named(&format!("{name}.LabelsById"));

    let event_labels = ev_arr
        .clone()
        .join_core(lab_arr.clone(), |_id, e, l| Some((e.clone(), l.clone())));
    let scored = predictions
        .map(|p| (p.event_id.clone(), p))
        .join_core(ev_arr.clone(), |id, p, e| {
            Some((id.clone(), (e.clone(), p.clone())))
        });
    let scored_arr: Arr<'s, (Event, Prediction)> = scored
        .clone()
        .arrange_by_key_named(&format!("{name}.ScoredById"));
    let labeled = scored_arr
        .clone()
        .join_core(lab_arr.clone(), |_id, (e, p), l| {
            Some((e.clone(), p.clone(), l.clone()))
        });

    let waited = delay_to(
        label_state,
        &format!("{name}.OrphanWait"),
        move |(_, l): &(String, LabelState)| tick_floor(l.first_time, tick) + horizon,
    );
    let orphans = waited.antijoin(known);

    Joined {
        events,
        scored: scored.map(|(_, ep)| ep),
        event_labels,
        labeled,
        orphans,
        events_by_id: ev_arr,
        labels_by_id: lab_arr,
        scored_by_id: scored_arr,
    }
}
