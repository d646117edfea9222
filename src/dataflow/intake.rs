//! The ingested stream made ready for processing: records, dead letters and their counts.

use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::progress::operate::FrontierInterest;

use crate::control::Control;
use crate::records::{DeadLetter, Origin, Record};
use crate::schema::Stream;
use crate::sources::Ingested;

/// What processing reads of the ingested stream.
pub struct Intake<'s> {
    /// Accepted records, with where they entered (the join decides duplicates by it).
    pub records: VecCollection<'s, u64, (Record, Origin)>,
    /// Refused records.
    pub dead: VecCollection<'s, u64, DeadLetter>,
    /// Per stream, `(stream, 0)` counts every record read, `(stream, 1)` the accepted and
    /// `(stream, 2)` the dead-lettered.
    pub counts: VecCollection<'s, u64, (Stream, u8)>,
    /// Operators' commands (counted in no stream: each makes a decision).
    pub controls: VecCollection<'s, u64, Control>,
}

/// Splits `ingested` into records, dead letters and counts, each at the next multiple of
/// `step` (`…Intake`).
///
/// Semantics: `delay(|t| t.div_ceil(step) * step)` of the accepted records (each with its
/// [`Origin`]: its own timestamp and position), the dead letters, the operators' commands and
/// two counts per record of a stream; partition marks (which carry no data) are dropped. Records are
/// processed at emit boundaries: outputs are reported only there, and the changelog at every
/// boundary is the same as with per-tick processing, at a fraction of the work. One operator
/// that moves each record once: a collection read by several operators is copied for each
/// of them. Time: each batch leaves at its capability's rounded time (rounding is monotone, so
/// every update's new time is at or after it); counts are summed per batch and time, not sent
/// per record.
/// State: none. Failure modes: none.
pub fn intake<'s>(ingested: VecCollection<'s, u64, Ingested>, name: &str, step: u64) -> Intake<'s> {
    let stream = ingested.inner;
    let mut builder = OperatorBuilder::new(format!("{name}.Intake"), stream.scope());
    let mut input = builder.new_input(stream, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut o_records, records) = builder.new_output::<Vec<((Record, Origin), u64, isize)>>();
    let (mut o_dead, dead) = builder.new_output::<Vec<(DeadLetter, u64, isize)>>();
    let (mut o_counts, counts) = builder.new_output::<Vec<((Stream, u8), u64, isize)>>();
    let (mut o_controls, controls) = builder.new_output::<Vec<(Control, u64, isize)>>();
    let round = move |t: u64| t.div_ceil(step) * step;
    builder.build(move |_| {
        move |_| {
            let mut h_records = o_records.activate();
            let mut h_dead = o_dead.activate();
            let mut h_counts = o_counts.activate();
            let mut h_controls = o_controls.activate();
            input.for_each_stamp(|cap, data| {
                // Every message of the sources and the replay feed carries a stamp; one without
                // could not be sent on (no capability), so it is reported, not dropped unseen.
                let Some(&least) = cap.least() else {
                    let n: usize = data.map(|c| c.len()).sum();
                    tracing::error!(records = n, "ingested records without a timestamp");
                    return;
                };
                let at = round(least);
                let (mut rec, mut dl, mut ctl) = (Vec::new(), Vec::new(), Vec::new());
                // Counts by time, stream and kind [read, accepted, dead-lettered], summed over
                // the batch (its records share one time, rarely a few).
                let mut counts: Vec<(u64, [[isize; 3]; 3])> = Vec::new();
                for container in data {
                    for (i, t, r) in container.drain(..) {
                        let t = round(t);
                        let s = i.stream().index();
                        let kind = match i {
                            Ingested::Control(c, _) => {
                                ctl.push((*c, t, r));
                                continue;
                            }
                            Ingested::Dead(d) if d.stream == crate::control::STREAM => {
                                dl.push((*d, t, r));
                                continue;
                            }
                            Ingested::Accepted(x, origin) => {
                                rec.push(((x, origin), t, r));
                                1
                            }
                            Ingested::Dead(d) => {
                                dl.push((*d, t, r));
                                2
                            }
                            Ingested::Mark(..) => continue,
                        };
                        if counts.last().is_none_or(|(last, _)| *last != t) {
                            counts.push((t, Default::default()));
                        }
                        let c = &mut counts.last_mut().expect("pushed above").1[s];
                        c[0] += r;
                        c[kind] += r;
                    }
                }
                let mut n = Vec::new();
                for (t, c) in counts {
                    for s in Stream::ALL {
                        for (kind, k) in c[s.index()].into_iter().enumerate() {
                            if k != 0 {
                                n.push(((s, kind as u8), t, k));
                            }
                        }
                    }
                }
                h_records.give(&cap.delayed(&at, 0), &mut rec);
                h_dead.give(&cap.delayed(&at, 1), &mut dl);
                h_counts.give(&cap.delayed(&at, 2), &mut n);
                h_controls.give(&cap.delayed(&at, 3), &mut ctl);
            });
        }
    });
    Intake {
        records: records.as_collection(),
        dead: dead.as_collection(),
        counts: counts.as_collection(),
        controls: controls.as_collection(),
    }
}
