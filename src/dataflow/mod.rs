//! The dataflow: join, windows, label latency, quality metrics and entity features.

pub mod features;
pub mod join;
pub mod labels;
pub mod quality;
pub mod status;
pub mod temporal;
pub mod windows;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use crate::config::Job;
use crate::error::Result;
use crate::outputs::rows::{Format, IngestRow};
use crate::outputs::sink::{sink, SinkState};
use crate::outputs::writer::ChangelogWriter;
use crate::records::{DeadLetter, Record};
use crate::sources::{ingest, Ingested, Progress};

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
                Some(w) => w.finish(),
                None => Ok(()),
            }
        }
        one(&self.quality)?;
        one(&self.labels)?;
        one(&self.features)?;
        one(&self.dead_letters)?;
        one(&self.ingest)
    }
}

/// Builds the job's dataflow on `worker`; `out_dir` is given to the worker that writes outputs.
pub fn build(
    worker: &mut Worker,
    job: Arc<Job>,
    progress: Arc<Progress>,
    out_dir: Option<&Path>,
) -> Result<(ProbeHandle<u64>, Sinks)> {
    let schemas_dir = job
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(&job.spec.schemas_dir);
    let formats = job.spec.outputs.formats.clone();
    let writer = |name: &str| -> Result<Option<ChangelogWriter>> {
        out_dir
            .map(|d| ChangelogWriter::create(d, &schemas_dir, name, &formats))
            .transpose()
    };
    let keep = out_dir.is_some();
    let sinks = Sinks {
        quality: SinkState::new(writer("quality")?, keep),
        labels: SinkState::new(writer("label_health")?, keep),
        features: SinkState::new(writer("entity_features")?, false),
        dead_letters: SinkState::new(writer("dead_letters")?, false),
        ingest: SinkState::new(writer("ingest")?, keep),
    };
    let probe = ProbeHandle::new();
    let name = job.spec.name.clone();
    let format = Format::new(&job);
    let win = windows::Windows::new(&job);
    let t = job.spec.time.clone();
    let emit = job.spec.outputs.emit_interval(t.tick_ms);
    worker.dataflow_named(&format!("tidemark.{name}"), |scope| {
        // Records are processed at emit boundaries: outputs are reported only there, and the
        // changelog at every boundary is the same as with per-tick processing, at a fraction of
        // the work (fewer distinct times for every arrangement and reduce).
        let ingested = ingest(scope, job.clone(), probe.clone(), progress, None)
            .filter(Ingested::is_record)
            .delay(move |t| t.div_ceil(emit) * emit);
        let events = ingested.clone().flat_map(|i| match i {
            Ingested::Accepted(Record::Event(e), _) => Some(e),
            _ => None,
        });
        let predictions = ingested.clone().flat_map(|i| match i {
            Ingested::Accepted(Record::Prediction(p), _) => Some(p),
            _ => None,
        });
        let labels_in = ingested.clone().flat_map(|i| match i {
            Ingested::Accepted(Record::Label(l), _) => Some(l),
            _ => None,
        });
        let dead = ingested.clone().flat_map(|i| match i {
            Ingested::Dead(d) => Some(d),
            _ => None,
        });
        let ingest_rows = ingested
            .explode(|i| {
                let s = i.stream();
                let kind = if matches!(i, Ingested::Accepted(..)) {
                    1u8
                } else {
                    2
                };
                [((s, 0u8), 1isize), ((s, kind), 1)]
            })
            .count()
            .map(|((s, c), n)| (s, (c, n as i64)))
            .reduce_named(&format!("{name}.IngestCounts"), |s, input, output| {
                let mut row = IngestRow {
                    stream: s.name().to_string(),
                    read: 0,
                    accepted: 0,
                    dead_lettered: 0,
                };
                for ((c, n), _) in input {
                    match c {
                        0 => row.read = *n,
                        1 => row.accepted = *n,
                        _ => row.dead_lettered = *n,
                    }
                }
                output.push((row, 1));
            })
            .map(|(_, row)| row);

        let ttl = t.retention_ms + job.max_window_ms() + t.tick_ms;
        let life = join::Lifetimes {
            tick: t.tick_ms,
            ttl,
            horizon: t.label_horizon_ms,
            retention: t.retention_ms,
            label_window: job.max_window_ms(),
        };
        let joined = join::join(&name, events, predictions, labels_in, life);
        let q = quality::quality(&job, &win, joined.labeled.clone());
        let l = labels::labels(&job, &win, &joined);
        let f = features::features(&job, &win, &joined);

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
    });
    Ok((probe, sinks))
}
pub mod sums;
