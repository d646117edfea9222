//! Input: partitions of every stream divided among workers, stamped with watermark ticks.
//!
//! One `Ingest` source operator per worker reads the partitions assigned to it (all streams),
//! stamps each record (see [`stamp`]) and holds its capability at the least partition watermark,
//! so timely's frontier is the watermark. Sources pace themselves against the frontier of the
//! outputs: a partition does not read ahead of it by more than a fixed lead, which bounds memory
//! without changing any timestamp (pacing affects scheduling only).

pub mod partition;
pub mod stamp;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::config::{Job, SourceKind};
use crate::records::{DeadLetter, Position, Record};
use crate::schema::{Role, Stream};
use partition::{Partition, PartitionSpec};
use stamp::Stamper;

/// A record as it leaves the source: accepted, or refused with its reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ingested {
    /// Decoded and on time.
    Accepted(Record),
    /// Refused; goes to dead letters.
    Dead(DeadLetter),
}

impl Ingested {
    /// The stream the record was read from.
    pub fn stream(&self) -> Stream {
        match self {
            Ingested::Accepted(Record::Event(_)) => Stream::Events,
            Ingested::Accepted(Record::Prediction(_)) => Stream::Predictions,
            Ingested::Accepted(Record::Label(_)) => Stream::Labels,
            Ingested::Dead(d) => match d.stream.as_str() {
                "events" => Stream::Events,
                "predictions" => Stream::Predictions,
                _ => Stream::Labels,
            },
        }
    }
}

/// Shared read progress of one process, for the progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Total bytes of all input files.
    pub bytes_total: u64,
    /// Bytes consumed so far.
    pub bytes_read: Arc<AtomicU64>,
    /// Records read so far.
    pub records: AtomicU64,
}

impl Progress {
    /// Progress for `job`'s input files.
    pub fn for_job(job: &Job) -> Progress {
        let bytes_total = job
            .files
            .iter()
            .flatten()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Progress {
            bytes_total,
            ..Default::default()
        }
    }
}

/// Every partition of the job, in a fixed global order.
pub fn partitions(job: &Job) -> Vec<(Stream, PartitionSpec)> {
    let mut out = Vec::new();
    for stream in Stream::ALL {
        let src = job.spec.sources.get(stream);
        match src.kind {
            SourceKind::Generator => out.push((stream, PartitionSpec::Generator)),
            SourceKind::Jsonl => out.extend(
                job.files[stream.index()]
                    .iter()
                    .map(|p: &PathBuf| (stream, PartitionSpec::Jsonl(p.clone()))),
            ),
            SourceKind::Parquet => out.extend(
                job.files[stream.index()]
                    .iter()
                    .map(|p: &PathBuf| (stream, PartitionSpec::Parquet(p.clone()))),
            ),
        }
    }
    out
}

/// Records read per partition per activation.
const BATCH: usize = 1024;

/// How far (event time) a partition may read ahead of the output frontier.
fn lead_ms(job: &Job) -> u64 {
    let t = &job.spec.time;
    (20 * t.tick_ms).max(2 * t.allowed_disorder_ms).max(5_000)
}

/// Builds the source operator of this worker; `pace` is the probe on the job's outputs.
pub fn ingest<'s>(
    scope: Scope<'s, u64>,
    job: Arc<Job>,
    pace: ProbeHandle<u64>,
    progress: Arc<Progress>,
) -> VecCollection<'s, u64, Ingested> {
    let index = scope.index();
    let peers = scope.peers();
    let name = format!("{}.Ingest", job.spec.name);
    source::<_, CapacityContainerBuilder<Vec<(Ingested, u64, isize)>>, _, _>(
        scope,
        &name,
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let t = &job.spec.time;
            let mut parts: Vec<(Partition, Stamper)> = partitions(&job)
                .into_iter()
                .enumerate()
                .filter(|(g, _)| g % peers == index)
                .map(|(_, (stream, spec))| {
                    let schema = Arc::new(job.schema(stream).clone());
                    let p = Partition::open(
                        stream,
                        schema,
                        &spec,
                        &job.spec.generator,
                        progress.bytes_read.clone(),
                    )
                    .unwrap_or_else(|e| panic!("cannot open a source partition: {e}"));
                    (
                        p,
                        Stamper::new(t.tick_ms, t.allowed_disorder_ms, t.max_lateness_ms),
                    )
                })
                .collect();
            let lead = lead_ms(&job);
            let time_fields: Vec<String> = Stream::ALL
                .iter()
                .map(|s| job.schema(*s).field(Role::Time).name.clone())
                .collect();
            let mut cap = if parts.is_empty() { None } else { Some(cap) };
            let mut buf = Vec::with_capacity(BATCH);
            let mut staged: BTreeMap<u64, Vec<(Ingested, u64, isize)>> = BTreeMap::new();
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                let limit = pace
                    .with_frontier(|f| f.first().copied())
                    .unwrap_or(u64::MAX)
                    .saturating_add(lead);
                let mut paused = 0;
                for (part, stamper) in parts.iter_mut() {
                    if stamper.frontier() > limit {
                        paused += 1;
                        continue;
                    }
                    part.read_batch(BATCH, &mut buf)
                        .unwrap_or_else(|e| panic!("source read failed: {e}"));
                    progress
                        .records
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    for (pos, r) in buf.drain(..) {
                        let (item, ts) = match r {
                            Ok(rec) => match stamper.stamp(rec.time()) {
                                Ok(ts) => (Ingested::Accepted(rec), ts),
                                Err(late) => (
                                    Ingested::Dead(too_late(
                                        part.stream,
                                        &time_fields[part.stream.index()],
                                        pos,
                                        late.reason,
                                        &rec,
                                    )),
                                    late.ts,
                                ),
                            },
                            Err(dl) => (Ingested::Dead(dl), stamper.frontier()),
                        };
                        staged.entry(ts).or_default().push((item, ts, 1));
                    }
                }
                for (ts, mut batch) in std::mem::take(&mut staged) {
                    output.session(&c.delayed(&ts)).give_container(&mut batch);
                }
                parts.retain(|(p, _)| !p.is_done());
                match parts.iter().map(|(_, s)| s.frontier()).min() {
                    None => cap = None,
                    Some(f) => {
                        c.downgrade(&f);
                        if paused == parts.len() {
                            activator.activate_after(Duration::from_micros(200));
                        } else {
                            activator.activate();
                        }
                    }
                }
            }
        },
    )
    .as_collection()
}

fn too_late(
    stream: Stream,
    time_field: &str,
    position: Position,
    reason: String,
    rec: &Record,
) -> DeadLetter {
    let raw = serde_json::to_string(rec).unwrap_or_default();
    DeadLetter {
        stream: stream.name().into(),
        position,
        field: time_field.into(),
        reason,
        raw: crate::records::excerpt(&raw),
    }
}
