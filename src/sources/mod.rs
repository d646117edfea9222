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
use crate::records::{DeadLetter, Origin, Position, Record};
use crate::schema::{Role, Stream};
use partition::{Cursor, Partition, PartitionSpec};
use stamp::{Stamped, Stamper};

/// What leaves a source: an accepted record, a refused one, or a partition's resume point.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ingested {
    /// Decoded and on time, with its stamp and where it was read.
    Accepted(Record, Origin),
    /// Refused; goes to dead letters (boxed: the rare variants would otherwise make every
    /// accepted record carry 120 bytes through ingest, the recorder and the intake, not 64).
    Dead(Box<DeadLetter>),
    /// Partition `.0` (global index) may resume from `.1` once everything before its
    /// timestamp is committed; it carries no data.
    Mark(u32, Box<PartitionState>),
    /// An operator's command, with its stamp and its place in the control directory.
    Control(Box<crate::control::Control>, Origin),
}

impl Ingested {
    /// The stream the record was read from (events for what belongs to none).
    pub fn stream(&self) -> Stream {
        match self {
            Ingested::Accepted(Record::Event(_), _) => Stream::Events,
            Ingested::Accepted(Record::Prediction(_), _) => Stream::Predictions,
            Ingested::Accepted(Record::Label(_), _) => Stream::Labels,
            Ingested::Dead(d) => Stream::parse(&d.stream).unwrap_or(Stream::Labels),
            Ingested::Mark(..) | Ingested::Control(..) => Stream::Events,
        }
    }
}

/// Where a partition stands after a batch: what a restart needs to continue it exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionState {
    /// The next record to read.
    pub cursor: Cursor,
    /// The largest own time delivered (the watermark's basis).
    pub max_seen: Option<u64>,
    /// The largest timestamp given to any record read so far.
    pub hi: u64,
    /// Whether the partition was read to its end.
    pub done: bool,
    /// The least timestamp it may give (raised when it woke from idleness).
    #[serde(default)]
    pub floor: u64,
    /// The largest position offset of its records in committed segments (set by the recorder):
    /// a restart skips a re-read record only if it is at or below this and stamped below the
    /// commit point. (Always serialized: the exchange between processes is not self-describing.)
    #[serde(default)]
    pub committed: Option<u64>,
}

impl PartitionState {
    /// The state of a partition read up to `cursor`, with `stamper`'s watermark bookkeeping.
    fn of(cursor: Cursor, stamper: &Stamper, hi: u64, done: bool) -> PartitionState {
        PartitionState {
            cursor,
            max_seen: stamper.max_seen(),
            hi,
            done,
            floor: stamper.floor(),
            committed: None,
        }
    }
}

/// Where sources continue after a restart: partitions by key, and the committed timestamp
/// below which every record is already in the replay buffer (and is skipped when re-read).
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Records stamped below this are not emitted again.
    pub below: u64,
    /// Partition states by [`partition_key`].
    pub partitions: BTreeMap<String, PartitionState>,
}

/// The stable name of a partition, as the replay manifest records it.
pub fn partition_key(stream: Stream, spec: &PartitionSpec) -> String {
    match spec {
        PartitionSpec::Jsonl(p) | PartitionSpec::Parquet(p) => format!("{stream}:{}", p.display()),
        PartitionSpec::Generator => format!("{stream}:generator"),
        PartitionSpec::Kafka(k) => {
            format!(
                "{stream}:{}",
                crate::kafka::source_name(&k.topic, k.partition)
            )
        }
    }
}

/// The `source` that a partition's records carry in their [`Position`].
pub fn position_source(stream: Stream, spec: &PartitionSpec) -> String {
    match spec {
        PartitionSpec::Jsonl(p) | PartitionSpec::Parquet(p) => p.display().to_string(),
        PartitionSpec::Generator => format!("generator:{stream}"),
        PartitionSpec::Kafka(k) => crate::kafka::source_name(&k.topic, k.partition),
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
    /// Per worker of this process, the least frontier of its partitions that are not idle
    /// (`u64::MAX` when all are idle or done): a worker whose partitions are all idle follows
    /// the others instead of holding the frontier.
    pub active: std::sync::Mutex<BTreeMap<usize, u64>>,
    /// Records read per stream (by [`Stream::index`]).
    pub stream_records: [AtomicU64; 3],
    /// The newest record time read per stream (ms of its own clock).
    pub stream_newest: [AtomicU64; 3],
    /// Entries held by the hot path's own operators (join slot entries, pane histogram
    /// entries), beside what differential's arrangements hold: the rest of the state gauge.
    pub held: Arc<std::sync::atomic::AtomicI64>,
    /// Pane deltas folded into `__other__` by a cardinality cap (`[limits]`).
    pub folded: Arc<AtomicU64>,
    /// Set when a partition whose source says `on_all_refused = "stop"` refused its first
    /// records, all of them: the job stops with this error (of the partition with the least
    /// index among those that did).
    pub all_refused: std::sync::Mutex<Option<(u32, crate::error::Error)>>,
    /// Whether partitions stop the job early when they refuse everything: only a job of one
    /// process can stop all its workers together (a cluster's runs are judged at their end).
    pub stop_on_refusals: bool,
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
            SourceKind::Kafka => {
                let spec = job
                    .spec
                    .kafka
                    .clone()
                    .expect("validated: Kafka sources have [kafka]");
                let group = spec.group(&job.spec.name);
                let topic = src
                    .topic
                    .clone()
                    .expect("validated: Kafka sources name a topic");
                out.extend(
                    job.kafka_partitions[stream.index()]
                        .iter()
                        .map(|&partition| {
                            (
                                stream,
                                PartitionSpec::Kafka(crate::kafka::KafkaPartition {
                                    spec: spec.clone(),
                                    group: group.clone(),
                                    topic: topic.clone(),
                                    partition,
                                }),
                            )
                        }),
                )
            }
        }
    }
    out
}

/// The worker that reads each partition (of [`partitions`]), among `peers`.
///
/// Heaviest first, each to the least-loaded worker; ties go to the highest worker index, since
/// worker 0 also carries the sinks, the replay recorder and the history-dependent operators.
/// An event weighs two (it carries the features: decoding the bench's events takes about as
/// long as its predictions and labels together), a prediction or a label one. Weights need no
/// I/O, so every process of a cluster computes the same owners (file sizes could differ
/// between processes, and a partition would then be read twice or not at all). Which worker
/// reads a partition changes no output (stamps are per partition), only the balance.
pub fn owners(parts: &[(Stream, PartitionSpec)], peers: usize) -> Vec<usize> {
    let peers = peers.max(1);
    let weight = |stream: Stream| match stream {
        Stream::Events => 2u64,
        Stream::Predictions | Stream::Labels => 1,
    };
    let mut order: Vec<(u64, usize)> = parts
        .iter()
        .enumerate()
        .map(|(g, (stream, _))| (weight(*stream), g))
        .collect();
    order.sort_by_key(|&(w, g)| (std::cmp::Reverse(w), g));
    let mut load = vec![0u64; peers];
    let mut owner = vec![0; parts.len()];
    for (w, g) in order {
        let least = (0..peers)
            .rev()
            .min_by_key(|&i| load[i])
            .expect("at least one worker");
        load[least] += w;
        owner[g] = least;
    }
    // Worker 0 reads the operators' commands, which needs a partition to hold its capability:
    // with fewer partitions than workers, the last worker's go to it instead.
    if !owner.is_empty() && !owner.contains(&0) {
        for o in owner.iter_mut().filter(|o| **o == peers - 1) {
            *o = 0;
        }
    }
    owner
}

/// Where a live run reads operators' commands (worker 0 only; see [`crate::control`]).
#[derive(Debug, Clone)]
pub struct ControlInput {
    /// The registry whose control directory it reads.
    pub registry: PathBuf,
    /// No replay buffer records the commands: they are retired as soon as read.
    pub retire_on_read: bool,
}

/// Records read per partition per activation.
const BATCH: usize = 1024;

/// How far (event time) a partition may read ahead of the output frontier.
///
/// At least two emit intervals: records are processed at emit boundaries, so with a shorter lead
/// the sources stopped inside the next interval while the current one was processed, and then
/// the workers idled while they read the rest (a quarter of the wall time at 300k events).
pub fn lead_ms(job: &Job) -> u64 {
    let t = &job.spec.time;
    let emit = job.spec.outputs.emit_interval(t.tick_ms);
    (20 * t.tick_ms)
        .max(2 * t.allowed_disorder_ms)
        .max(5_000)
        .max(2 * emit)
}

/// Builds the source operator of this worker; `pace` is the probe on the job's outputs,
/// `resume` where a restarted job continues, and `controls` where it reads operators' commands.
///
/// Commands are stamped at the operator's current capability when they are read (the
/// partition `controls`, after every partition of the job, marks how far the directory was
/// read); they hold no frontier back.
pub fn ingest<'s>(
    scope: Scope<'s, u64>,
    job: Arc<Job>,
    pace: ProbeHandle<u64>,
    progress: Arc<Progress>,
    resume: Option<Arc<Resume>>,
    controls: Option<ControlInput>,
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
            let below = resume.as_ref().map_or(0, |r| r.below);
            let all = partitions(&job);
            let owner = owners(&all, peers);
            let control_index = all.len() as u32;
            let mut controls = controls.map(|c| {
                // A resumed run continues at its recorded cursor (0 if it read no command).
                let next = resume.as_ref().filter(|r| r.below > 0).map(|r| {
                    r.partitions
                        .get(crate::control::PARTITION_KEY)
                        .map_or(0, |s| s.cursor.offset)
                });
                (
                    crate::control::Reader::new(&c.registry, next),
                    c.retire_on_read,
                )
            });
            let mut commands = Vec::new();
            // The worker's topic partitions share one consumer (it lives as long as they do).
            let consumers = crate::kafka::source::Consumers::default();
            let mut parts: Vec<Part> = all
                .into_iter()
                .enumerate()
                .filter(|(g, _)| owner[*g] == index)
                .filter_map(|(g, (stream, spec))| {
                    let state = resume
                        .as_ref()
                        .and_then(|r| r.partitions.get(&partition_key(stream, &spec)))
                        .cloned()
                        .unwrap_or_default();
                    if state.done {
                        return None;
                    }
                    let schema = Arc::new(job.schema(stream).clone());
                    // A partition that cannot be opened (a file changed since validation,
                    // a broker gone) yields one dead letter naming it, and ends.
                    let p = Partition::open(
                        stream,
                        schema.clone(),
                        &spec,
                        &consumers,
                        &job.spec.generator,
                        progress.bytes_read.clone(),
                        Some(state.cursor),
                    )
                    .unwrap_or_else(|e| {
                        let source = position_source(stream, &spec);
                        tracing::error!("cannot open source partition {source}: {e}");
                        Partition::failed(stream, schema, source, state.cursor.offset, e)
                    });
                    let stamper = Stamper::new(t.tick_ms, t.allowed_disorder_ms, t.max_lateness_ms)
                        .with_jump(t.jump_bound())
                        .restored(state.max_seen, state.floor);
                    Some(Part {
                        index: g as u32,
                        part: p,
                        stamper,
                        hi: state.hi,
                        committed: state.committed,
                        idle: false,
                        held: Vec::new(),
                        origin: None,
                        refusals: (progress.stop_on_refusals
                            && job.spec.sources.get(stream).on_all_refused
                                == crate::config::OnAllRefused::Stop
                            && state.cursor == Cursor::default())
                        .then(Refusals::default),
                    })
                })
                .collect();
            let lead = lead_ms(&job);
            let time_fields: Vec<String> = Stream::ALL
                .iter()
                .map(|s| job.schema(*s).field(Role::Time).name.clone())
                .collect();
            let mut cap = if parts.is_empty() { None } else { Some(cap) };
            let idle_after = Duration::from_millis(t.idle_timeout_ms);
            let mut buf = Vec::with_capacity(BATCH);
            let mut decided = Vec::with_capacity(BATCH);
            let mut staged: BTreeMap<u64, Vec<(Ingested, u64, isize)>> = BTreeMap::new();
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                let now = *c.time();
                let limit = pace
                    .with_frontier(|f| f.first().copied())
                    .unwrap_or(u64::MAX)
                    .saturating_add(lead);
                let mut paused = 0;
                let mut read_any = false;
                for Part {
                    index,
                    part,
                    stamper,
                    hi,
                    committed,
                    idle,
                    held,
                    origin,
                    refusals,
                } in parts.iter_mut()
                {
                    if stamper.frontier() > limit {
                        paused += 1;
                        continue;
                    }
                    let before = part.cursor();
                    if let Err(e) = part.read_batch(BATCH, &mut buf) {
                        // A read error ends the partition with a dead letter naming it.
                        tracing::error!("source read failed: {e}");
                        part.fail(e, &mut buf);
                    }
                    progress
                        .records
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    progress.stream_records[part.stream.index()]
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    let read = !buf.is_empty();
                    read_any |= read;
                    if read && *idle {
                        // Woken: the frontier moved on without this partition, so its records
                        // come no earlier than where the frontier (and its own last record) got.
                        // The floor is marked before any record it stamps.
                        *idle = false;
                        let floor = (*hi).max(now);
                        if floor > stamper.frontier() {
                            stamper.raise(floor);
                            // With records held from an earlier batch, the batch's own mark
                            // (below) carries where they began; a mark past them here could
                            // let a restart skip them.
                            if origin.is_none() {
                                let state = PartitionState::of(before, stamper, *hi, false);
                                staged.entry(floor).or_default().push((
                                    Ingested::Mark(*index, Box::new(state)),
                                    floor,
                                    1,
                                ));
                            }
                        }
                    }
                    // Where a restart re-reads this batch from, should it hold records back:
                    // the stamper as this batch's records meet it (after any wake-up raise).
                    let at_start = PartitionState::of(before, stamper, *hi, false);
                    for (pos, r) in buf.drain(..) {
                        match r {
                            Ok(rec) => {
                                stamper.admit(rec.time(), (pos, Ok(rec)), held, &mut decided)
                            }
                            // Undecodable records move no watermark: they need not wait.
                            Err(dl) => {
                                let ts = stamper.frontier();
                                decided.push(((pos, Err(dl)), Stamped::At(ts)));
                            }
                        }
                    }
                    if part.is_done() {
                        stamper.finish(held, &mut decided);
                    }
                    if held.is_empty() {
                        *origin = None;
                    } else if origin.is_none() {
                        *origin = Some(at_start);
                    }
                    if let Some(r) = refusals.as_mut() {
                        if let Some(e) = r.count(part.stream, &decided) {
                            tracing::error!("{e}");
                            let mut slot = progress
                                .all_refused
                                .lock()
                                .unwrap_or_else(|e| e.into_inner());
                            // The first partition's, whichever worker saw its own first.
                            if slot.as_ref().is_none_or(|(i, _)| *index < *i) {
                                *slot = Some((*index, e));
                            }
                        }
                        if r.decided() {
                            *refusals = None;
                        }
                    }
                    for ((pos, r), stamped) in decided.drain(..) {
                        let offset = pos.offset;
                        let (item, ts) = match (r, stamped) {
                            (Ok(rec), Stamped::At(ts)) => (
                                Ingested::Accepted(
                                    rec,
                                    Origin {
                                        stamp: ts,
                                        position: pos,
                                    },
                                ),
                                ts,
                            ),
                            (Ok(rec), Stamped::Refused(late)) => (
                                Ingested::Dead(Box::new(too_late(
                                    part.stream,
                                    &time_fields[part.stream.index()],
                                    pos,
                                    late.reason,
                                    &rec,
                                ))),
                                late.ts,
                            ),
                            (Err(dl), Stamped::At(ts)) => (Ingested::Dead(Box::new(dl)), ts),
                            (Err(dl), Stamped::Refused(late)) => {
                                (Ingested::Dead(Box::new(dl)), late.ts)
                            }
                        };
                        // A restarted partition re-reads from its last mark: records already in
                        // committed segments are skipped. Stamps of files and bounded reads are
                        // deterministic, so those are the ones stamped below the commit point;
                        // an idle wake-up the commit did not see can stamp an uncommitted record
                        // below it, which then goes at the commit point.
                        *hi = (*hi).max(ts);
                        if ts < below && committed.is_some_and(|c| offset <= c) {
                            continue;
                        }
                        let ts = ts.max(below);
                        *hi = (*hi).max(ts);
                        staged.entry(ts).or_default().push((item, ts, 1));
                    }
                    if let Some(t) = stamper.max_seen() {
                        progress.stream_newest[part.stream.index()].fetch_max(t, Ordering::Relaxed);
                    }
                    if read || part.is_done() {
                        // With records held back, a restart re-reads from the batch the first
                        // of them came in, with the stamper as it was then: the same decisions.
                        let state = match origin {
                            Some(o) => PartitionState {
                                hi: *hi,
                                ..o.clone()
                            },
                            None => PartitionState::of(part.cursor(), stamper, *hi, part.is_done()),
                        };
                        // `hi` is at or above the partition's frontier, hence the capability.
                        let at = (*hi).max(now);
                        staged.entry(at).or_default().push((
                            Ingested::Mark(*index, Box::new(state)),
                            at,
                            1,
                        ));
                    } else if !*idle && part.silent_for().is_some_and(|s| s >= idle_after) {
                        // Silent past the idle timeout: stop holding the frontier back.
                        *idle = true;
                        tracing::info!(partition = *index, "source partition idle");
                    }
                }
                if let Some((reader, retire)) = controls.as_mut() {
                    if reader.poll(now.max(below), &mut commands) && !commands.is_empty() {
                        for (r, ts) in commands.drain(..) {
                            let (item, seq) = match r {
                                Ok(c) => {
                                    tracing::info!(
                                        command = c.seq,
                                        action = c.command.name(),
                                        ts,
                                        "operator command taken"
                                    );
                                    let seq = c.seq;
                                    let origin = Origin {
                                        stamp: ts,
                                        position: Position {
                                            source: crate::control::SOURCE.into(),
                                            offset: seq,
                                        },
                                    };
                                    (Ingested::Control(Box::new(c), origin), seq)
                                }
                                Err(d) => {
                                    tracing::error!("operator command refused: {}", d.reason);
                                    let seq = d.position.offset;
                                    (Ingested::Dead(Box::new(d)), seq)
                                }
                            };
                            // Each command with its own mark: a commit between two commands
                            // read together resumes after the first (never applies it twice).
                            let state = PartitionState {
                                cursor: Cursor {
                                    offset: seq.saturating_add(1),
                                    byte: 0,
                                },
                                hi: ts,
                                ..Default::default()
                            };
                            let at = staged.entry(ts).or_default();
                            at.push((item, ts, 1));
                            at.push((Ingested::Mark(control_index, Box::new(state)), ts, 1));
                        }
                        if *retire {
                            let upto = reader.next().saturating_sub(1);
                            if let Err(e) = crate::control::retire(reader.dir(), upto) {
                                tracing::warn!("cannot retire operator commands: {e}");
                            }
                        }
                    }
                }
                for (ts, mut batch) in std::mem::take(&mut staged) {
                    output.session(&c.delayed(&ts)).give_container(&mut batch);
                }
                parts.retain(|p| !p.part.is_done());
                let active = parts
                    .iter()
                    .filter(|p| !p.idle)
                    .map(|p| p.stamper.frontier())
                    .min();
                let (others, others_running) = {
                    let mut a = progress.active.lock().unwrap_or_else(|e| e.into_inner());
                    // A worker whose partitions are all done leaves the map.
                    if parts.is_empty() {
                        a.remove(&index);
                    } else {
                        a.insert(index, active.unwrap_or(u64::MAX));
                    }
                    let others = a.iter().filter(|(w, _)| **w != index);
                    (others.clone().map(|(_, f)| *f).min(), others.count() > 0)
                };
                if parts.is_empty() {
                    // Worker 0 keeps reading operators' commands while the job runs on other
                    // workers of its process, following their frontier.
                    if controls.is_none() || !others_running {
                        cap = None;
                        return;
                    }
                    if let Some(o) = others.filter(|o| *o != u64::MAX && *o > now) {
                        c.downgrade(&o);
                    }
                    activator.activate_after(Duration::from_millis(10));
                    return;
                }
                // Idle partitions do not hold the frontier. When all of this worker's are idle,
                // it follows the other workers' active partitions (if any; else it stays).
                match (active, others) {
                    (Some(f), _) => c.downgrade(&f.max(now)),
                    (None, Some(o)) if o != u64::MAX && o > now => c.downgrade(&o),
                    _ => {}
                }
                if paused == parts.len() {
                    activator.activate_after(Duration::from_micros(200));
                } else if !read_any {
                    // Waiting on a broker: poll again shortly rather than spin.
                    activator.activate_after(Duration::from_millis(1));
                } else {
                    activator.activate();
                }
            }
        },
    )
    .as_collection()
}

/// A partition being read by this worker.
struct Part {
    index: u32,
    part: Partition,
    stamper: Stamper,
    hi: u64,
    /// The largest offset of its records a restart found committed.
    committed: Option<u64>,
    /// Silent past the idle timeout: not holding the frontier.
    idle: bool,
    /// Records far ahead of the watermark, waiting for the next records to confirm the jump.
    held: Vec<(u64, partition::Decoded)>,
    /// The partition's state where the batch of the first held record began.
    origin: Option<PartitionState>,
    /// Its first records' refusals, until one is accepted (`on_all_refused = "stop"`).
    refusals: Option<Refusals>,
}

/// A partition's first records, while none has been accepted: how many were refused and the
/// first reasons, to stop a job whose source does not fit its data.
#[derive(Default)]
struct Refusals {
    refused: u64,
    accepted: bool,
    first: Vec<String>,
}

impl Refusals {
    /// Counts a batch of decisions in order, up to the first accepted record; the error once
    /// [`crate::config::ALL_REFUSED_AFTER`] records were refused before any was accepted (the
    /// same record wherever batches end, so the same in every format).
    fn count(
        &mut self,
        stream: Stream,
        decided: &[((Position, Result<Record, DeadLetter>), Stamped)],
    ) -> Option<crate::error::Error> {
        let limit = crate::config::ALL_REFUSED_AFTER;
        for ((pos, r), stamped) in decided {
            if self.decided() {
                break;
            }
            let reason = match (r, stamped) {
                (Ok(_), Stamped::At(_)) => {
                    self.accepted = true;
                    continue;
                }
                (Err(d), _) if d.field.is_empty() => format!("{pos}: {}", d.reason),
                (Err(d), _) => format!("{pos} field {}: {}", d.field, d.reason),
                (Ok(_), Stamped::Refused(late)) => format!("{pos}: {}", late.reason),
            };
            self.refused += 1;
            if self.first.len() < 3 {
                self.first.push(reason);
            }
            if self.refused == limit {
                return Some(crate::error::Error::AllRefused {
                    stream: stream.name().to_string(),
                    reason: format!(
                        "the first {limit} records read were all refused, so the job stopped \
                         (its schema or format does not fit the data; on_all_refused = \
                         \"continue\" runs anyway). First reasons: {}",
                        self.first.join("; ")
                    ),
                });
            }
        }
        None
    }

    /// Whether the partition has shown it fits (a record accepted) or already stopped the job.
    fn decided(&self) -> bool {
        self.accepted || self.refused >= crate::config::ALL_REFUSED_AFTER
    }
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The early stop is decided at the same record wherever batches end: a partition whose
    /// first 999 records are refused and whose 1000th is accepted runs on, whatever comes
    /// after; one whose first 1000 are refused stops at the 1000th, naming the first three.
    #[test]
    fn refusals_are_decided_by_record_not_by_batch() {
        use crate::records::Label;
        type Decision = ((Position, Result<Record, DeadLetter>), Stamped);
        let at = |i: u64, ok: bool| -> Decision {
            let pos = Position {
                source: Arc::from("f"),
                offset: i,
            };
            let r = if ok {
                Ok(Record::Label(Label {
                    event_id: "e".into(),
                    label: 1,
                    time: i,
                }))
            } else {
                Err(DeadLetter {
                    stream: "labels".into(),
                    position: pos.clone(),
                    field: "label".into(),
                    reason: format!("bad {i}"),
                    raw: String::new(),
                })
            };
            ((pos, r), Stamped::At(i))
        };
        let run = |records: &[Decision], batch: usize| {
            let mut r = Refusals::default();
            let mut stopped = None;
            for (n, chunk) in records.chunks(batch).enumerate() {
                if let Some(e) = r.count(Stream::Labels, chunk) {
                    stopped = Some((n, e.to_string()));
                }
                if r.decided() {
                    break;
                }
            }
            stopped
        };
        let fits: Vec<Decision> = (0..6000).map(|i| at(i, i == 999 || i > 3000)).collect();
        let misfit: Vec<Decision> = (0..6000).map(|i| at(i, i > 3000)).collect();
        for batch in [1, 600, 1024, 4096, 6000] {
            assert_eq!(run(&fits, batch), None, "batch {batch}");
            let (n, e) = run(&misfit, batch).expect("stopped");
            assert_eq!(n, 999 / batch, "stopped in the batch of the 1000th record");
            assert!(
                e.starts_with("sources.labels: the first 1000 records read were all refused")
                    && e.contains("f:0 field label: bad 0; f:1 field label: bad 1; f:2"),
                "{e}"
            );
        }
    }

    fn file(stream: Stream, name: &str) -> (Stream, PartitionSpec) {
        (stream, PartitionSpec::Parquet(PathBuf::from(name)))
    }

    #[test]
    fn events_and_the_rest_go_to_different_workers() {
        let parts = [
            file(Stream::Events, "e"),
            file(Stream::Predictions, "p"),
            file(Stream::Labels, "l"),
        ];
        assert_eq!(owners(&parts, 2), vec![1, 0, 0]);
        assert_eq!(owners(&parts, 1), vec![0, 0, 0]);
        assert_eq!(owners(&parts, 3), vec![2, 1, 0]);
    }

    #[test]
    fn every_partition_has_one_owner_and_loads_differ_by_at_most_one_heaviest() {
        for peers in 1..6 {
            for n in 0..12 {
                let parts: Vec<_> = (0..n)
                    .map(|i| file(Stream::ALL[i % 3], &format!("f{i}")))
                    .collect();
                let owner = owners(&parts, peers);
                assert_eq!(owner.len(), n);
                assert!(owner.iter().all(|w| *w < peers));
                let mut load = vec![0u64; peers];
                for (g, w) in owner.iter().enumerate() {
                    load[*w] += if parts[g].0 == Stream::Events { 2 } else { 1 };
                }
                let (lo, hi) = (load.iter().min().unwrap(), load.iter().max().unwrap());
                assert!(hi - lo <= 2, "{peers} workers, {n} partitions: {load:?}");
            }
        }
    }
}
