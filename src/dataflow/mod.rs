//! The dataflow: ingest, one keyed join, window aggregates on panes (quality, label health,
//! entity features, drift, shadow), the history-dependent operators (learner, detectors,
//! alerts) and the sinks.

pub mod alerting;
pub mod cardinality;
pub mod detect;
pub mod drift;
pub mod features;
pub mod intake;
pub mod join;
pub mod keyed_join;
pub mod labels;
pub mod learn;
pub mod ordered;
pub mod panes;
pub mod quality;
pub mod status;
pub mod timers;
pub mod verdicts;
pub mod windows;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::collection::AsCollection;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::vec::ToStream;
use timely::worker::Worker;

use crate::config::Job;
use crate::error::Result;
use crate::outputs::rows::{Format, IngestRow, OutputRow};
use crate::outputs::sink::{sink, SinkState};
use crate::outputs::writer::ChangelogWriter;
use crate::records::DeadLetter;
use crate::replay::manifest::Manifest;
use crate::replay::recorder::{record, Checkpointer, OutputCut};
use crate::replay::source::{replay, ReplayFeed};
use crate::schema::{Role, Stream};
use crate::sources::{
    ingest, lead_ms, partition_key, partitions, position_source, Progress, Resume,
};

/// What a run feeds, records and writes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Read the job's sources, continuing where `Resume` says (`None`: a pure replay).
    pub live: Option<Arc<Resume>>,
    /// Replay-buffer segments fed before (and beside) the live sources.
    pub feed: Option<Arc<ReplayFeed>>,
    /// Ingest counts of records older than the feed, as `(stream, kind, n)`.
    pub base: Vec<(Stream, u8, isize)>,
    /// Output lines are written only for timestamps in this range.
    pub write: Range<u64>,
    /// Record live records into this buffer directory, continuing this manifest.
    pub record: Option<(PathBuf, Manifest)>,
    /// JSON Lines lengths the outputs resume at (the committed part of an interrupted run).
    pub resume_outputs: Option<BTreeMap<String, u64>>,
    /// Where the history-dependent operators (detectors, learner) start.
    pub state: ordered::StateStart,
    /// Publish model versions and decisions to the job's registry (live runs only).
    pub publish: bool,
    /// Metrics the output rows move (a live run with an endpoint).
    pub metrics: Option<crate::metrics::Shared>,
    /// Told after each change the job makes to its model registry (MLflow publishing).
    pub registry_changed: Option<crate::mlflow::publisher::Notifier>,
}

impl Plan {
    /// A plain run of the job's sources, without a replay buffer.
    pub fn live() -> Plan {
        Plan {
            live: Some(Arc::new(Resume::default())),
            feed: None,
            base: Vec::new(),
            write: 0..u64::MAX,
            record: None,
            resume_outputs: None,
            state: Default::default(),
            publish: true,
            metrics: None,
            registry_changed: None,
        }
    }
}

/// The sink states of one worker, for the summary (only worker 0's hold data).
pub struct Sinks {
    /// Quality metrics.
    pub quality: Rc<RefCell<SinkState<quality::QualityRow>>>,
    /// Label latency and completeness.
    pub labels: Rc<RefCell<SinkState<labels::LabelRow>>>,
    /// Entity features.
    pub features: Rc<RefCell<SinkState<features::FeatureRow>>>,
    /// Dead letters.
    pub dead_letters: Rc<RefCell<SinkState<DeadLetter>>>,
    /// Ingest reconciliation.
    pub ingest: Rc<RefCell<SinkState<IngestRow>>>,
    /// Drift (written only when the job has `[drift]`).
    pub drift: Rc<RefCell<SinkState<drift::DriftRow>>>,
    /// Drift alerts (likewise).
    pub drift_alerts: Rc<RefCell<SinkState<drift::AlertRow>>>,
    /// Concept-drift detections (likewise).
    pub detections: Rc<RefCell<SinkState<detect::DetectionRow>>>,
    /// Model versions (written only when the job has `[learn]`).
    pub versions: Rc<RefCell<SinkState<crate::learn::learner::VersionRow>>>,
    /// Learner decisions (likewise).
    pub decisions: Rc<RefCell<SinkState<crate::learn::learner::DecisionRow>>>,
    /// Quarantined examples (likewise).
    pub quarantine: Rc<RefCell<SinkState<crate::learn::learner::QuarantineRow>>>,
    /// Shadow comparison (likewise).
    pub shadow: Rc<RefCell<SinkState<learn::ShadowRow>>>,
    /// Alert state changes (written only when the job has alert rules).
    pub alerts: Rc<RefCell<SinkState<crate::alerts::AlertEvent>>>,
}

/// Applies `f` to every sink state, whatever its row type.
macro_rules! each_sink {
    ($sinks:expr, $f:ident $(, $arg:expr)*) => {{
        $f(&$sinks.quality $(, $arg)*)?;
        $f(&$sinks.labels $(, $arg)*)?;
        $f(&$sinks.features $(, $arg)*)?;
        $f(&$sinks.dead_letters $(, $arg)*)?;
        $f(&$sinks.ingest $(, $arg)*)?;
        $f(&$sinks.drift $(, $arg)*)?;
        $f(&$sinks.drift_alerts $(, $arg)*)?;
        $f(&$sinks.detections $(, $arg)*)?;
        $f(&$sinks.versions $(, $arg)*)?;
        $f(&$sinks.decisions $(, $arg)*)?;
        $f(&$sinks.quarantine $(, $arg)*)?;
        $f(&$sinks.shadow $(, $arg)*)?;
        $f(&$sinks.alerts $(, $arg)*)?;
    }};
}

impl Sinks {
    /// Finishes every writer; the first error wins.
    pub fn finish(&self) -> Result<()> {
        fn one<R>(s: &Rc<RefCell<SinkState<R>>>) -> Result<()> {
            let mut st = s.borrow_mut();
            if let Some(e) = st.error.take() {
                return Err(e);
            }
            match st.writer.take() {
                Some(w) => {
                    st.finished_len = Some(w.jsonl_bytes);
                    w.finish()
                }
                None => Ok(()),
            }
        }
        each_sink!(self, one);
        Ok(())
    }

    /// Every sink has written all of its lines below this timestamp.
    pub fn written_below(&self) -> u64 {
        [
            self.quality.borrow().written_below,
            self.labels.borrow().written_below,
            self.features.borrow().written_below,
            self.dead_letters.borrow().written_below,
            self.ingest.borrow().written_below,
            self.drift.borrow().written_below,
            self.drift_alerts.borrow().written_below,
            self.detections.borrow().written_below,
            self.versions.borrow().written_below,
            self.decisions.borrow().written_below,
            self.quarantine.borrow().written_below,
            self.shadow.borrow().written_below,
            self.alerts.borrow().written_below,
        ]
        .into_iter()
        .min()
        .unwrap_or(0)
    }

    /// Each output file's length holding exactly its lines below `ts`, and what makes those
    /// lengths durable.
    pub fn cuts(&self, ts: u64) -> Result<OutputCut> {
        fn one<R: OutputRow>(
            s: &Rc<RefCell<SinkState<R>>>,
            ts: u64,
            out: &mut OutputCut,
        ) -> Result<()> {
            if let Some((len, durable)) = s.borrow_mut().commit_cut(ts)? {
                out.lengths.insert(format!("{}.jsonl", R::NAME), len);
                out.durable.push(Box::new(move || durable.make()));
            }
            Ok(())
        }
        let mut out = OutputCut::default();
        each_sink!(self, one, ts, &mut out);
        Ok(out)
    }
}

/// The dataflow of one worker: its probe, its sinks and (worker 0 of a recording run) the
/// replay buffer's checkpointer.
pub struct Built {
    /// The probe on every output.
    pub probe: ProbeHandle<u64>,
    /// The output sinks.
    pub sinks: Sinks,
    /// Commits the replay buffer (worker 0 of a recording run).
    pub checkpointer: Option<Rc<RefCell<Checkpointer>>>,
    /// The first failure to publish to the model registry.
    pub publish_error: Rc<RefCell<Option<crate::error::Error>>>,
}

/// Builds the job's dataflow on `worker`; `out_dir` is given to the worker that writes outputs.
pub fn build(
    worker: &mut Worker,
    job: Arc<Job>,
    progress: Arc<Progress>,
    out_dir: Option<&Path>,
    plan: &Plan,
) -> Result<Built> {
    let schemas_dir = job
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(&job.spec.schemas_dir);
    let formats = job.spec.outputs.formats.clone();
    let writer = |name: &str| -> Result<Option<ChangelogWriter>> {
        let resume_at = plan
            .resume_outputs
            .as_ref()
            .map(|m| m.get(&format!("{name}.jsonl")).copied().unwrap_or(0));
        let Some(d) = out_dir else { return Ok(None) };
        let w = ChangelogWriter::create(d, &schemas_dir, name, &formats, resume_at)?;
        // Only a recording live run produces to the job's topics (never a replay or backfill).
        let topic = job
            .spec
            .outputs
            .kafka
            .as_ref()
            .and_then(|k| k.topics.get(name));
        Ok(Some(match (topic, &plan.record, &job.spec.kafka) {
            (Some(topic), Some((_, m)), Some(spec)) if plan.publish => w.with_kafka(
                crate::kafka::sink::KafkaSink::open(spec, name, topic, &m.run)?,
            ),
            _ => w,
        }))
    };
    let keep = out_dir.is_some();
    fn sink_if<R>(
        on: bool,
        writer: impl Fn(&str) -> Result<Option<ChangelogWriter>>,
        name: &str,
        keep: bool,
    ) -> Result<Rc<RefCell<SinkState<R>>>> {
        let w = if on { writer(name)? } else { None };
        Ok(SinkState::new(w, keep))
    }
    let sinks = Sinks {
        quality: SinkState::new(writer("quality")?, keep),
        labels: SinkState::new(writer("label_health")?, keep),
        features: SinkState::new(writer("entity_features")?, false),
        dead_letters: SinkState::new(writer("dead_letters")?, false),
        ingest: SinkState::new(writer("ingest")?, keep),
        drift: SinkState::new(
            job.drift
                .as_ref()
                .map(|_| writer("drift"))
                .transpose()?
                .flatten(),
            false,
        ),
        drift_alerts: SinkState::new(
            job.drift
                .as_ref()
                .map(|_| writer("drift_alerts"))
                .transpose()?
                .flatten(),
            keep,
        ),
        detections: SinkState::new(
            job.drift
                .as_ref()
                .map(|_| writer("drift_detections"))
                .transpose()?
                .flatten(),
            keep,
        ),
        versions: sink_if(job.learn.is_some(), writer, "model_versions", keep)?,
        decisions: sink_if(job.learn.is_some(), writer, "model_decisions", keep)?,
        quarantine: sink_if(job.learn.is_some(), writer, "quarantine", false)?,
        shadow: sink_if(job.learn.is_some(), writer, "shadow", false)?,
        alerts: sink_if(!job.alerts.is_empty(), writer, "alerts", false)?,
    };
    fn setup<R>(s: &Rc<RefCell<SinkState<R>>>, plan: &Plan) -> Result<()> {
        let mut s = s.borrow_mut();
        s.write = plan.write.clone();
        if plan.record.is_some() {
            // Commits need each changelog's length at every timestamp not yet committed.
            s.cuts = Some(Default::default());
        }
        Ok(())
    }
    each_sink!(sinks, setup, plan);
    let index = worker.index();
    if index == 0 {
        fn attach<R>(s: &Rc<RefCell<SinkState<R>>>, m: &crate::metrics::Shared) -> Result<()> {
            let mut s = s.borrow_mut();
            if s.writer.is_some() {
                s.metrics = Some(m.clone());
            }
            Ok(())
        }
        if let Some(m) = &plan.metrics {
            each_sink!(sinks, attach, m);
        }
    }
    let checkpointer = match (&plan.record, index) {
        (Some((dir, manifest)), 0) => {
            let cp = Checkpointer::new(
                dir.clone(),
                manifest.clone(),
                job.spec.replay.retention_ms,
                job.spec.time.allowed_disorder_ms,
            );
            // Only a live run commits its positions to the group.
            if plan.publish {
                cp.borrow_mut().group_offsets = crate::kafka::offsets::GroupOffsets::new(&job)?;
            }
            Some(cp)
        }
        _ => None,
    };
    let snapshots = |on: bool, name: &'static str| -> Option<ordered::Snapshots> {
        let cp = checkpointer.as_ref().filter(|_| on)?;
        let s = ordered::Snapshots::default();
        cp.borrow_mut().snapshots.push((name, s.clone()));
        Some(s)
    };
    let detect_snapshots = snapshots(job.drift.is_some(), "detectors");
    let learn_snapshots = snapshots(job.learn.is_some(), "learner");
    let alert_snapshots = snapshots(!job.alerts.is_empty(), "alerts");
    let verdict_snapshots = snapshots(true, "verdicts");
    let publish_error = Rc::new(RefCell::new(None));
    let publisher = match (&job.learn, plan.publish && index == 0) {
        (Some(l), true) => match &l.registry {
            Some(dir) => Some(learn::Publisher {
                registry: crate::registry::Registry::open(dir)?,
                write: plan.write.clone(),
                error: publish_error.clone(),
                changed: plan.registry_changed.clone(),
            }),
            None => None,
        },
        _ => None,
    };
    let mut publisher = publisher;
    // The job that publishes to a registry takes its operators' commands.
    let controls = publisher.as_ref().map(|p| crate::sources::ControlInput {
        registry: p.registry.dir().to_path_buf(),
        retire_on_read: plan.record.is_none(),
    });
    if let (Some(cp), Some(c)) = (&checkpointer, &controls) {
        cp.borrow_mut().controls = Some(crate::control::dir(&c.registry));
    }
    let mut keys: Vec<(String, String)> = partitions(&job)
        .iter()
        .map(|(s, spec)| (partition_key(*s, spec), position_source(*s, spec)))
        .collect();
    if controls.is_some() {
        keys.push((
            crate::control::PARTITION_KEY.to_string(),
            crate::control::SOURCE.to_string(),
        ));
    }
    let segment_ms = job.segment_ms();
    let probe = ProbeHandle::new();
    let name = job.spec.name.clone();
    let format = Format::new(&job);
    let held = progress.held.clone();
    let win = panes::Panes::new(
        &windows::Windows::new(&job),
        held.clone(),
        progress.folded.clone(),
    );
    let t = job.spec.time.clone();
    let emit = job.spec.outputs.emit_interval(t.tick_ms);
    worker.dataflow_named(&format!("tidemark.{name}"), |scope| {
        // Records are processed at emit boundaries: outputs are reported only there, and the
        // changelog at every boundary is the same as with per-tick processing, at a fraction of
        // the work (fewer distinct times for every arrangement and reduce).
        let mut ingested = Vec::new();
        if let Some(resume) = &plan.live {
            let live = ingest(
                scope,
                job.clone(),
                probe.clone(),
                progress,
                Some(resume.clone()),
                controls.clone(),
            );
            if plan.record.is_some() {
                record(live.clone(), &name, segment_ms, keys, checkpointer.clone());
            }
            ingested.push(live);
        }
        if let Some(feed) = &plan.feed {
            let lead = lead_ms(&job) + 2 * segment_ms;
            ingested.push(replay(scope, &name, feed.clone(), probe.clone(), lead));
        }
        let intake = intake::intake(
            differential_dataflow::collection::concatenate(scope, ingested),
            &name,
            emit,
        );
        // Counts of records older than the replayed ones, so that totals match the live run.
        // A stream whose files hold no record gets its row of zeros (`EMPTY` counts nothing):
        // "read nothing" is a fact worth a line, not the absence of one.
        const EMPTY: u8 = u8::MAX;
        let base: Vec<(((Stream, u8), ()), u64, isize)> = if index == 0 {
            plan.base
                .iter()
                .flat_map(|&(s, kind, n)| [(((s, 0u8), ()), 0, n), (((s, kind), ()), 0, n)])
                .chain(
                    job.empty_streams()
                        .into_iter()
                        .map(|s| (((s, EMPTY), ()), 0, 1)),
                )
                .collect()
        } else {
            Vec::new()
        };
        let base = base.to_stream(scope).as_collection().map(|(k, ())| k);
        let records = intake.records;
        let ttl = t.retention_ms + job.max_window_ms() + t.tick_ms;
        let life = join::Lifetimes {
            tick: t.tick_ms,
            ttl,
            horizon: t.label_horizon_ms,
            retention: t.retention_ms,
            label_window: job.max_window_ms(),
            emit,
        };
        let wanted = join::Wanted {
            drift_events: job.drift.is_some(),
            drift_scores: job.drift.as_ref().is_some_and(|d| drift::scores_wanted(d)),
            // A restart's restored scores meet what the join rebuilds before the state's time.
            online: job.learn.as_ref().map(|_| plan.state.at),
        };
        let fields = join::IdFields {
            event_id: job.schema(Stream::Events).field(Role::Id).name.clone(),
            prediction_event_id: job.schema(Stream::Predictions).field(Role::Id).name.clone(),
        };
        let joined = join::join(&name, records, life, fields, &win, held.clone(), wanted);
        let dead = intake.dead.concat(joined.dead.clone());
        let verdicts = verdicts::totals(
            joined.verdicts.clone(),
            &name,
            plan.state.state.as_ref().and_then(|s| s.verdicts.clone()),
            plan.state.at,
            segment_ms,
            verdict_snapshots.clone(),
        );
        let ingest_rows = intake
            .counts
            .concat(base)
            .count()
            .map(|((s, c), n)| (s, (c, n as i64)))
            .concat(verdicts)
            .reduce_named(&format!("{name}.IngestCounts"), move |s, input, output| {
                let mut row = IngestRow {
                    stream: s.name().to_string(),
                    ..Default::default()
                };
                for ((c, n), _) in input {
                    match *c {
                        0 => row.read = *n,
                        1 => row.accepted = *n,
                        2 => row.dead_lettered = *n,
                        verdicts::DUPLICATES => row.duplicates = *n,
                        verdicts::TOO_LATE => row.too_late = *n,
                        verdicts::ORPHANED => row.orphaned = *n,
                        verdicts::TOO_LATE_MAX => {
                            // A retention this long keeps every window of an event until its
                            // latest label so far arrived (as validation wants it: a multiple
                            // of the emit interval).
                            row.retention_to_hold_ms = Some((*n as u64 + 1).div_ceil(emit) * emit)
                        }
                        _ => {}
                    }
                }
                // The sources accepted a duplicate; the join refused it.
                row.accepted -= row.duplicates;
                row.dead_lettered += row.duplicates;
                output.push((row, 1));
            })
            .map(|(_, row)| row);

        let learned = job.learn.as_ref().map(|l| {
            let state = plan.state.state.as_ref();
            learn::learn(
                &job,
                l.clone(),
                &win,
                &joined,
                intake.controls.clone(),
                ttl,
                learn::LearnStart {
                    state: state.and_then(|s| s.learner.clone()).map(|b| *b),
                    first: plan.state.at,
                },
                segment_ms,
                learn_snapshots.clone(),
                publisher.take(),
            )
        });
        let quality_input = match &learned {
            Some(o) => joined.labeled.clone().concat(o.labeled.clone()),
            None => joined.labeled.clone(),
        };
        let q = quality::quality(&job, &win, quality_input);
        let l = labels::labels(&job, &win, &joined);
        let f = features::features(&job, &win, &joined);
        let (drift_rows, drift_alerts, detections) = match &job.drift {
            Some(d) => {
                let o = drift::drift(&name, &job, d.clone(), &win, &joined);
                let found = detect::detect(
                    &name,
                    joined.labeled.clone(),
                    d.detectors.clone(),
                    job.spec.metrics.threshold,
                    segment_ms,
                    plan.state.state.as_ref().and_then(|s| s.detectors.clone()),
                    plan.state.at,
                    detect_snapshots.clone(),
                );
                (o.rows, o.alerts, found)
            }
            None => (
                Vec::new().to_stream(scope).as_collection(),
                Vec::new().to_stream(scope).as_collection(),
                Vec::new().to_stream(scope).as_collection(),
            ),
        };

        let alerts = if job.alerts.is_empty() {
            Vec::new().to_stream(scope).as_collection()
        } else {
            alerting::alerts(
                &name,
                job.alerts.clone(),
                job.drift.clone(),
                alerting::Watched {
                    quality: &q,
                    labels: &l,
                    drift: &drift_rows,
                    shadow: learned.as_ref().map(|o| (&o.shadow, win.windows.clone())),
                },
                alerting::AlertStart {
                    state: plan.state.state.as_ref().and_then(|s| s.alerts.clone()),
                    first: plan.state.at,
                    segment_ms,
                    snapshots: alert_snapshots.clone(),
                    retention_ms: t.retention_ms,
                },
            )
        };
        sink(
            alerts.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.alerts.clone(),
        );
        sink(
            q.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.quality.clone(),
        );
        sink(
            l.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.labels.clone(),
        );
        sink(
            f.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.features.clone(),
        );
        sink(
            dead.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.dead_letters.clone(),
        );
        sink(
            ingest_rows.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.ingest.clone(),
        );
        sink(
            drift_rows.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.drift.clone(),
        );
        sink(
            drift_alerts.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.drift_alerts.clone(),
        );
        sink(
            detections.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.detections.clone(),
        );
        let (versions, decisions, quarantine, shadow) = match learned {
            Some(o) => (o.versions, o.decisions, o.quarantine, o.shadow),
            None => (
                Vec::new().to_stream(scope).as_collection(),
                Vec::new().to_stream(scope).as_collection(),
                Vec::new().to_stream(scope).as_collection(),
                Vec::new().to_stream(scope).as_collection(),
            ),
        };
        sink(
            versions.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.versions.clone(),
        );
        sink(
            decisions.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.decisions.clone(),
        );
        sink(
            quarantine.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.quarantine.clone(),
        );
        sink(
            shadow.probe_with(&probe),
            &name,
            format.clone(),
            emit,
            sinks.shadow.clone(),
        );
    });
    Ok(Built {
        probe,
        sinks,
        checkpointer,
        publish_error,
    })
}
