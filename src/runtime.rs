//! Running a job: timely execution across worker threads and processes, and the run summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Job;
use crate::dataflow::labels::LabelRow;
use crate::dataflow::quality::QualityRow;
use crate::error::{Error, Result};
use crate::outputs::rows::IngestRow;
use crate::sources::Progress;

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads per process.
    pub workers: usize,
    /// Number of processes.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// `host:port` per process, in process order (default `127.0.0.1:2101+i`).
    pub hostfile: Option<PathBuf>,
    /// Output directory, overriding the job's.
    pub out_dir: Option<PathBuf>,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Discard an existing replay buffer and outputs instead of resuming from them.
    pub fresh: bool,
    /// Serve Prometheus metrics on this `host:port` (process 0 of a live run).
    pub metrics: Option<String>,
    /// Write into a non-empty directory that holds no tidemark outputs.
    pub force: bool,
    /// Deliver alert records to this Alertmanager (process 0 of a live run).
    pub alertmanager: Option<String>,
    /// How often active alerts are re-sent to Alertmanager.
    pub alertmanager_resend: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
            out_dir: None,
            progress: false,
            fresh: false,
            metrics: None,
            force: false,
            alertmanager: None,
            alertmanager_resend: Duration::from_secs(60),
        }
    }
}

/// What a finished run reports (from the process that holds worker 0).
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Per-stream reconciliation.
    pub ingest: Vec<IngestRow>,
    /// The job's `time.retention_ms`.
    pub retention_ms: u64,
    /// Current quality rows.
    pub quality: Vec<QualityRow>,
    /// Current label rows.
    pub labels: Vec<LabelRow>,
    /// Changelog lines written per output.
    pub lines: Vec<(&'static str, u64)>,
    /// Records read by this process.
    pub records_read: u64,
    /// Pane deltas folded into `__other__` by a cardinality cap (`[limits]`).
    pub folded: u64,
    /// Wall-clock duration of the run.
    pub elapsed: Duration,
    /// Worker threads per process.
    pub workers: usize,
    /// Records held in arrangements and batchers (all workers of this process), sampled as the
    /// watermark advanced: (watermark, records).
    pub state_samples: Vec<(u64, i64)>,
    /// The committed timestamp the run resumed from, if it continued an interrupted run.
    pub resumed_from: Option<u64>,
    /// Replay-buffer commits made by this run.
    pub commits: u64,
    /// Drift alerts firing at the end, as (window start, feature, statistic, severity, status).
    pub drift_alerts: Vec<(u64, String, String, String, String)>,
    /// Concept-drift detections, as (event time, model, detector, position).
    pub detections: Vec<(u64, String, String, u64)>,
    /// The online learner's decisions, in order.
    pub decisions: Vec<crate::learn::learner::DecisionRow>,
    /// Where publishing to MLflow stands at the end (`[learn.mlflow]`).
    pub mlflow: Option<crate::mlflow::publisher::Status>,
    /// Where delivery to Alertmanager stands at the end (`run --alertmanager`).
    pub alertmanager: Option<crate::alerts::deliver::Status>,
}

impl RunSummary {
    /// The streams whose source says `on_all_refused = "stop"` (the default) that read records
    /// and accepted none: the run did not do what its job meant.
    pub fn all_refused(&self, job: &Job) -> Vec<Error> {
        self.ingest
            .iter()
            .filter(|r| r.read > 0 && r.accepted == 0)
            .filter(|r| {
                crate::schema::Stream::parse(&r.stream).is_some_and(|s| {
                    job.spec.sources.get(s).on_all_refused == crate::config::OnAllRefused::Stop
                })
            })
            .map(|r| Error::AllRefused {
                stream: r.stream.clone(),
                reason: format!(
                    "read {} records and accepted none; each is in dead_letters.jsonl with its \
                     reason (on_all_refused = \"continue\" accepts a run like this)",
                    r.read
                ),
            })
            .collect()
    }
}

/// Records held in differential state across this process's workers, from differential's
/// arrangement log: batches built, merged and dropped, and records waiting in batchers. The
/// state samples add the hot path's own entries (`Progress::held`).
#[derive(Debug, Default)]
pub struct StateGauge {
    records: std::sync::atomic::AtomicI64,
}

impl StateGauge {
    /// Records currently held.
    pub fn records(&self) -> i64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Subscribes to `worker`'s differential arrangement log.
    pub fn register(self: &Arc<Self>, worker: &mut timely::worker::Worker) {
        use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
        let gauge = self.clone();
        if let Some(mut registry) = worker.log_register() {
            registry.insert::<DifferentialEventBuilder, _>(
                "differential/arrange",
                move |_, data| {
                    let Some(events) = data.as_ref() else { return };
                    let mut delta = 0i64;
                    for (_, event) in events {
                        delta += match event {
                            DifferentialEvent::Batch(b) => b.length as i64,
                            DifferentialEvent::Drop(d) => -(d.length as i64),
                            DifferentialEvent::Merge(m) => match m.complete {
                                Some(n) => n as i64 - m.length1 as i64 - m.length2 as i64,
                                None => 0,
                            },
                            DifferentialEvent::Batcher(b) => b.records_diff as i64,
                            _ => 0,
                        };
                    }
                    gauge.records.fetch_add(delta, Ordering::Relaxed);
                },
            );
        }
    }
}

fn communication(opts: &RunOptions) -> Result<timely::CommunicationConfig> {
    if opts.workers == 0 {
        return Err(Error::Runtime("need at least one worker".into()));
    }
    if opts.processes <= 1 {
        return Ok(if opts.workers == 1 {
            timely::CommunicationConfig::Thread
        } else {
            timely::CommunicationConfig::Process(opts.workers)
        });
    }
    if opts.process >= opts.processes {
        return Err(Error::Runtime(format!(
            "process index {} is not below the process count {}",
            opts.process, opts.processes
        )));
    }
    let addresses = match &opts.hostfile {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let addrs: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if addrs.len() < opts.processes {
                return Err(Error::config(
                    path,
                    "hosts",
                    format!(
                        "lists {} hosts for {} processes",
                        addrs.len(),
                        opts.processes
                    ),
                ));
            }
            addrs[..opts.processes].to_vec()
        }
        None => (0..opts.processes)
            .map(|i| format!("127.0.0.1:{}", 2101 + i))
            .collect(),
    };
    Ok(timely::CommunicationConfig::Cluster {
        threads: opts.workers,
        process: opts.process,
        addresses,
        report: false,
        zerocopy: false,
    })
}

/// The output files a run writes, by name.
const OUTPUTS: [&str; 13] = [
    "quality",
    "label_health",
    "entity_features",
    "dead_letters",
    "ingest",
    "drift",
    "drift_alerts",
    "drift_detections",
    "model_versions",
    "model_decisions",
    "quarantine",
    "shadow",
    "alerts",
];

/// Refuses an output directory a run must not write into: empty, the root, the working
/// directory.
fn check_out_dir(out_dir: &Path) -> Result<()> {
    crate::confine::output_dir(out_dir)
        .and_then(|()| crate::confine::not_working_dir(out_dir))
        .map_err(|reason| Error::Confined {
            path: out_dir.to_path_buf(),
            reason: format!("cannot be an output directory: it {reason}"),
        })
}

/// Whether `dir` is missing, empty, or a tidemark output directory (it has a replay buffer, a
/// changelog or `metrics.prom`).
fn holds_only_ours_or_nothing(dir: &Path) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut any = false;
    for e in entries {
        let name = e.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        let ours = name == "replay"
            || name == "metrics.prom"
            || OUTPUTS.iter().any(|o| {
                name.strip_prefix(o)
                    .is_some_and(|ext| ext == ".jsonl" || ext == ".parquet")
            });
        if ours {
            return Ok(true);
        }
        any = true;
    }
    Ok(!any)
}

/// A `[learn]` registry inside the job's output directory moves with `--out`: a run into another
/// directory must not publish into the first one's registry. A registry elsewhere is shared on
/// purpose and stays.
fn rebase_registry(job: &mut Job, out_dir: &Path) {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (from, to) = (abs(&job.spec.outputs.dir), abs(out_dir));
    if from == to {
        return;
    }
    let Some(learn) = job.learn.as_mut() else {
        return;
    };
    let Some(registry) = learn.registry.as_deref().map(abs) else {
        return;
    };
    // Already under the run's directory (a backfill's own registry): it stays.
    if registry.starts_with(&to) {
        return;
    }
    let Ok(rel) = registry.strip_prefix(&from).map(Path::to_path_buf) else {
        return;
    };
    let moved = to.join(rel);
    tracing::info!(registry = %moved.display(), "the registry moves with --out");
    std::sync::Arc::make_mut(learn).registry = Some(moved);
}

/// Runs `job` to completion, recording its replay buffer; resumes an interrupted run from its
/// buffer. Returns the summary in the process that writes outputs.
pub fn run(mut job: Job, opts: &RunOptions) -> Result<Option<RunSummary>> {
    crate::kafka::discover(&mut job)?;
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| job.spec.outputs.dir.clone());
    rebase_registry(&mut job, &out_dir);
    check_out_dir(&out_dir)?;
    let dir = crate::replay::buffer_dir(&out_dir);
    let writes = opts.process == 0;
    if writes && !opts.force && !holds_only_ours_or_nothing(&out_dir)? {
        return Err(Error::Confined {
            path: out_dir.clone(),
            reason: "is not empty and holds no tidemark outputs: the run would write its \
                     changelogs and replay buffer among files it did not make. Name a new or \
                     empty directory, or pass --force"
                .into(),
        });
    }
    // Only the process that writes outputs holds the buffer; the others read its manifest.
    let _lock = if writes {
        Some(crate::replay::lock(&dir)?)
    } else {
        None
    };
    // The endpoint is bound before anything in the output directory is touched: a taken port
    // must not cost a finished run its outputs.
    let server = match (&opts.metrics, writes) {
        (Some(addr), true) => {
            let shared = crate::metrics::Shared::new(&job);
            let server = crate::metrics::Server::start(addr, shared.clone())?;
            tracing::info!("metrics at http://{}/metrics", server.addr());
            eprintln!("metrics: http://{}/metrics", server.addr());
            Some((shared, Some(server)))
        }
        // Alert delivery reads the alert records as the metrics do.
        _ if writes && opts.alertmanager.is_some() => {
            Some((crate::metrics::Shared::new(&job), None))
        }
        _ => None,
    };
    // `--fresh` must work on a buffer that no longer loads (damaged, or another job's).
    let mut manifest = if opts.fresh {
        None
    } else {
        crate::replay::load_for(&job, &dir)?
    };
    if manifest.as_ref().is_some_and(|m| m.complete) {
        manifest = None;
    }
    let plan = match manifest {
        None => {
            let lost = !dir.join(crate::replay::manifest::MANIFEST).exists()
                && dir.join(crate::replay::manifest::COMMITTED).exists();
            if writes && lost && !opts.fresh {
                return Err(Error::replay(
                    dir.join(crate::replay::manifest::MANIFEST),
                    "missing, but this buffer has committed before: the interrupted run cannot \
                     resume without it. Restore MANIFEST.json from a backup, or start over with \
                     --fresh (which deletes the buffer and the outputs)",
                ));
            }
            if writes {
                start_over(&out_dir, &dir)?;
            }
            let m = crate::replay::manifest::Manifest::new(
                &job.spec.name,
                &job.fingerprint(),
                &job.sources_fingerprint(),
                job.segment_ms(),
            );
            crate::dataflow::Plan {
                record: Some((dir, m)),
                ..crate::dataflow::Plan::live()
            }
        }
        Some(m) => {
            if m.segment_ms != job.segment_ms() {
                return Err(Error::replay(
                    dir.join(crate::replay::manifest::MANIFEST),
                    format!(
                        "the interrupted run cut segments of {} ms, the job now says {} ms; \
                         restore replay.segment_ms to resume, or start over with --fresh",
                        m.segment_ms,
                        job.segment_ms()
                    ),
                ));
            }
            if m.sources != job.sources_fingerprint() {
                return Err(Error::replay(
                    dir.join(crate::replay::manifest::MANIFEST),
                    "the interrupted run read other sources (paths, kinds or generator parameters changed); \
                     restore them to resume, or start over with --fresh",
                ));
            }
            if writes {
                crate::replay::clean(&dir, Some(&m))?;
            }
            let below = m.committed;
            let (segments, base) = crate::replay::plan(&job, &m, below, below);
            crate::replay::verify_all(&dir, &segments)?;
            tracing::info!(committed = below, segments = segments.len(), "resuming");
            let state = state_start(&job, &dir, &m, below)?;
            crate::dataflow::Plan {
                state,
                publish: true,
                live: Some(Arc::new(crate::sources::Resume {
                    below,
                    partitions: m.partitions.clone(),
                })),
                feed: Some(Arc::new(crate::replay::source::ReplayFeed::new(
                    dir.clone(),
                    &segments,
                    below,
                    settle_time(&job, below),
                ))),
                base: crate::replay::base_counts(&base),
                write: below..u64::MAX,
                resume_outputs: Some(m.outputs.clone()),
                record: Some((dir, m)),
                metrics: None,
                registry_changed: None,
            }
        }
    };
    let mut plan = plan;
    if let Some((shared, _)) = &server {
        if let Some(s) = plan.state.state.as_ref().and_then(|s| s.alerts.as_ref()) {
            crate::metrics::observe::seed_alerts(&mut shared.lock(), s, &job.alerts);
        }
        plan.metrics = Some(shared.clone());
    }
    execute(job, opts, plan, out_dir, server.and_then(|(_, s)| s))
}

/// The time replayed records below it are collapsed to, for outputs written from `first`:
/// every collection of the dataflow is a function of its input collection at each time, so
/// moving earlier records to one time at least an emit interval before `first` leaves every
/// collection, and so every output diff, from there on unchanged.
fn settle_time(job: &Job, first: u64) -> u64 {
    let emit = job.spec.outputs.emit_interval(job.spec.time.tick_ms);
    (first - first % emit).saturating_sub(emit)
}

/// Where the history-dependent operators of a run resuming at `below` start: the committed
/// snapshot there.
fn state_start(
    job: &Job,
    dir: &Path,
    m: &crate::replay::manifest::Manifest,
    below: u64,
) -> Result<crate::dataflow::ordered::StateStart> {
    if below == 0 {
        return Ok(Default::default());
    }
    match m.states.last().filter(|s| s.at == below) {
        Some(st) => Ok(crate::dataflow::ordered::StateStart {
            state: Some(crate::replay::read_state(dir, st)?),
            at: below,
        }),
        None if m.states.is_empty() && !history_dependent(job) => {
            // A buffer of an earlier version, whose job had no state to snapshot: only the
            // join's verdict totals (duplicates, too-late and orphaned labels) start again.
            tracing::warn!(
                "the buffer holds no operator state: ingest's duplicates, too_late_labels and orphaned_labels count from the resume on"
            );
            Ok(crate::dataflow::ordered::StateStart {
                state: None,
                at: below,
            })
        }
        None => Err(Error::replay(
            dir.join(crate::replay::manifest::MANIFEST),
            format!("the buffer holds no operator state (drift detectors, learner, alert rules, the join's verdict totals) at its commit point {below}"),
        )),
    }
}

/// The job has operators besides the join's verdict totals whose state depends on the whole
/// history (drift detectors, learner, alert rules), which an earlier version snapshotted alone.
fn history_dependent(job: &Job) -> bool {
    job.drift.is_some() || job.learn.is_some() || !job.alerts.is_empty()
}

/// Removes a previous run's buffer and outputs: only the names tidemark writes, none reached
/// through a link (refused before anything is removed).
pub(crate) fn start_over(out_dir: &Path, dir: &Path) -> Result<()> {
    let manifest = dir.join(crate::replay::manifest::MANIFEST);
    let mut files = vec![out_dir.join("metrics.prom")];
    for name in OUTPUTS {
        for ext in ["jsonl", "parquet"] {
            files.push(out_dir.join(format!("{name}.{ext}")));
        }
    }
    crate::confine::not_link(dir)?;
    for p in files.iter().chain([&manifest]) {
        crate::confine::not_link(p)?;
    }
    // The manifest goes first: a crash part-way must not leave it naming deleted segments.
    if crate::confine::remove(&manifest)? {
        crate::replay::segment::sync_dir(dir)?;
    }
    crate::confine::remove(&dir.join(crate::replay::manifest::COMMITTED))?;
    crate::replay::clean(dir, None)?;
    for p in &files {
        crate::confine::remove(p)?;
    }
    Ok(())
}

/// Replays the buffer in `buffer` for timestamps `[from, to)` into `opts.out_dir`: state is
/// rebuilt from one state horizon before `from` with outputs muted.
pub fn replay(
    job: Job,
    buffer: &Path,
    range: std::ops::Range<u64>,
    opts: &RunOptions,
) -> Result<Option<RunSummary>> {
    let out_dir = opts
        .out_dir
        .clone()
        .ok_or_else(|| Error::Runtime("a replay needs an output directory".into()))?;
    check_out_dir(&out_dir)?;
    let m = crate::replay::load_for(&job, buffer)?.ok_or_else(|| {
        Error::replay(
            buffer.join(crate::replay::manifest::MANIFEST),
            "no manifest: not a replay buffer, or nothing was committed yet",
        )
    })?;
    if range.end > m.committed {
        return Err(Error::replay(
            buffer.join(crate::replay::manifest::MANIFEST),
            format!(
                "the buffer is committed up to ts {}, the replay asks up to {}",
                m.committed, range.end
            ),
        ));
    }
    if let Some(first) = crate::replay::missing_history(&job, &m, range.start) {
        return Err(Error::replay(
            buffer.join(crate::replay::manifest::MANIFEST),
            format!(
                "retention removed the state history a replay from ts {} needs (the buffer starts at {first}, the job's state horizon is {} ms)",
                range.start,
                job.state_horizon_ms()
            ),
        ));
    }
    // History-dependent operators continue from the latest snapshot at or before the range;
    // records from there on are fed at their own timestamps.
    let (from, state) = match m.state_before(range.start) {
        Some(st) => (
            st.at.min(range.start),
            crate::dataflow::ordered::StateStart {
                state: Some(crate::replay::read_state(buffer, st)?),
                at: st.at,
            },
        ),
        None if m.base.is_empty() => (0, Default::default()),
        None if m.states.is_empty() && !history_dependent(&job) => {
            tracing::warn!(
                "the buffer holds no operator state: ingest's duplicates, too_late_labels and orphaned_labels count from the replay's start on"
            );
            (
                range.start,
                crate::dataflow::ordered::StateStart {
                    state: None,
                    at: range.start,
                },
            )
        }
        None => {
            return Err(Error::replay(
                buffer.join(crate::replay::manifest::MANIFEST),
                format!(
                    "no operator state (drift detectors, learner, alert rules, the join's verdict totals) at or before ts {} is kept (retention removed it)",
                    range.start
                ),
            ))
        }
    };
    if let Some(first) = crate::replay::missing_history(&job, &m, from) {
        return Err(Error::replay(
            buffer.join(crate::replay::manifest::MANIFEST),
            format!(
                "retention removed the history the drift detectors and learner need: they continue from their snapshot at ts {from}, \
                 whose state horizon starts before the buffer ({first})"
            ),
        ));
    }
    let settle = settle_time(&job, range.start).min(settle_time(&job, from));
    let (segments, base) = crate::replay::plan(&job, &m, from, range.end);
    crate::replay::verify_all(buffer, &segments)?;
    let own = crate::replay::buffer_dir(&out_dir);
    if same_dir(&own, buffer) {
        return Err(Error::replay(
            buffer,
            "a replay would overwrite the outputs and buffer it replays; give it its own --out",
        ));
    }
    // Holding the output directory's lock keeps a replay off a running job's outputs.
    let _lock = crate::replay::lock(&own)?;
    start_over(&out_dir, &own)?;
    let plan = crate::dataflow::Plan {
        live: None,
        feed: Some(Arc::new(crate::replay::source::ReplayFeed::new(
            buffer.to_path_buf(),
            &segments,
            range.end,
            settle,
        ))),
        base: crate::replay::base_counts(&base),
        write: range,
        record: None,
        resume_outputs: None,
        state,
        publish: false,
        metrics: None,
        registry_changed: None,
    };
    execute(job, opts, plan, out_dir, None)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// Runs the dataflow of `plan` to completion.
fn execute(
    job: Job,
    opts: &RunOptions,
    plan: crate::dataflow::Plan,
    out_dir: PathBuf,
    server: Option<crate::metrics::Server>,
) -> Result<Option<RunSummary>> {
    let start = Instant::now();
    let resumed_from = plan.live.as_ref().map(|r| r.below).filter(|b| *b > 0);
    let retention_ms = job.spec.time.retention_ms;
    let mut plan = plan;
    let mlflow = mlflow_publisher(&job, opts, &plan);
    let alertmanager = match (&opts.alertmanager, &plan.metrics, plan.publish) {
        (Some(url), Some(m), true) => {
            let d = crate::alerts::deliver::Deliverer::start(
                url,
                &job.spec.name,
                opts.alertmanager_resend,
                Some(m.clone()),
            );
            m.lock().alerts_out = Some(d.outbox());
            // A resumed run does not write its records below the commit point again: the
            // alerts firing there are sent from the changelog.
            if resumed_from.is_some() {
                let out = d.outbox();
                for n in crate::alerts::deliver::still_firing(&out_dir.join("alerts.jsonl")) {
                    out.send(n);
                }
            }
            Some(d)
        }
        _ => None,
    };
    plan.registry_changed = mlflow.as_ref().map(|p| p.notifier());
    let plan = Arc::new(plan);
    let metrics = plan.metrics.clone();
    let config = timely::Config {
        communication: communication(opts)?,
        worker: timely::WorkerConfig::default(),
    };
    let progress = Arc::new(Progress {
        stop_on_refusals: opts.processes <= 1,
        ..Progress::for_job(&job)
    });
    let watermark = Arc::new(AtomicU64::new(0));
    let job = Arc::new(job);
    let expected_records = expected_records(&job);

    let gauge = Arc::new(StateGauge::default());
    let done = Arc::new(AtomicBool::new(false));
    let bar = opts.progress.then(|| {
        let (progress, done, watermark, gauge) = (
            progress.clone(),
            done.clone(),
            watermark.clone(),
            gauge.clone(),
        );
        std::thread::spawn(move || {
            draw_progress(&progress, &done, &watermark, &gauge, expected_records)
        })
    });

    // A job that follows Kafka topics never finishes by itself: after a failed commit or
    // publish its workers stop (this process's), and a restart continues from the last commit.
    let follows = job.spec.kafka.as_ref().is_some_and(|k| !k.until_end)
        && crate::schema::Stream::ALL
            .iter()
            .any(|s| job.spec.sources.get(*s).kind == crate::config::SourceKind::Kafka);
    let stop = Arc::new(AtomicBool::new(false));
    let (p, wm, dir, g) = (
        progress.clone(),
        watermark.clone(),
        out_dir.clone(),
        gauge.clone(),
    );
    type WorkerResult = Option<(
        Vec<IngestRow>,
        Vec<QualityRow>,
        Vec<LabelRow>,
        Vec<(&'static str, u64)>,
        Vec<(u64, i64)>,
        u64,
        (
            Vec<(u64, String, String, String, String)>,
            Vec<(u64, String, String, u64)>,
        ),
        Vec<crate::learn::learner::DecisionRow>,
    )>;
    let guards = timely::execute(config, move |worker| -> Result<WorkerResult> {
        let writes = worker.index() == 0;
        g.register(worker);
        let profile = crate::profile::OperatorProfile::register(worker);
        let mut samples = Vec::new();
        let built = crate::dataflow::build(
            worker,
            job.clone(),
            p.clone(),
            writes.then_some(dir.as_path()),
            &plan,
        )?;
        let (probe, sinks, checkpointer) = (built.probe, built.sinks, built.checkpointer);
        let publish_error = built.publish_error;
        let mut sampler = plan
            .metrics
            .clone()
            .filter(|_| writes)
            .map(crate::metrics::Sampler::new);
        let _span = tracing::info_span!("worker", index = worker.index()).entered();
        // Step until the dataflow has completed, not merely until the probe is done: the probe
        // sits before the sinks' exchange, so data may still be in flight to worker 0.
        let mut failed = None;
        while worker.step_or_park(Some(Duration::from_millis(5))) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if writes {
                let frontier = probe.with_frontier(|f| f.first().copied());
                if let Some(t) = frontier {
                    if wm.swap(t, Ordering::Relaxed) != t {
                        samples.push((t, g.records() + p.held.load(Ordering::Relaxed)));
                    }
                }
                if let Some(s) = sampler.as_mut() {
                    s.step(&p, frontier.unwrap_or(u64::MAX), sinks.written_below());
                }
            }
            if failed.is_none() {
                let refused = p
                    .all_refused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some((_, e)) = refused {
                    failed = Some(e);
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
            if failed.is_none() {
                // A version or decision the registry lacks must not be committed past: a
                // restart from the last commit publishes it again.
                if let Some(e) = publish_error.borrow_mut().take() {
                    tracing::error!("model registry: {e}");
                    failed = Some(e);
                    stop.store(follows, Ordering::Relaxed);
                }
            }
            if let (Some(cp), None) = (&checkpointer, &failed) {
                // The final commit waits for the finished files, after the loop.
                let below = sinks.written_below().min(u64::MAX - 1);
                let mut cp = cp.borrow_mut();
                let r = cp.try_commit(below, |t| sinks.cuts(t));
                if let (Ok(Some(took)), Some(s)) = (&r, sampler.as_mut()) {
                    s.commit(*took, cp.manifest());
                }
                if let Err(e) = r {
                    // Keep stepping so the other workers can finish; report at the end.
                    tracing::error!("replay buffer: {e}");
                    failed = Some(e);
                    stop.store(follows, Ordering::Relaxed);
                }
            }
        }
        if let Some(s) = sampler.as_mut() {
            s.finished();
        }
        if stop.load(Ordering::Relaxed) {
            // Stopped mid-stream: nothing more is written or committed, and the dataflow is
            // dropped (timely would otherwise wait for it to complete, which it never does).
            drop((probe, sinks, checkpointer));
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            return match failed {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        sinks.finish()?;
        if let Some(p) = &profile {
            eprint!("{}", p.borrow().report(worker.index()));
        }
        if let Some(e) = publish_error.borrow_mut().take() {
            return Err(e);
        }
        if checkpointer.is_none() {
            if let Some(e) = failed.take() {
                return Err(e);
            }
        }
        let mut commits = 0;
        if let Some(cp) = &checkpointer {
            if let Some(e) = failed {
                return Err(e);
            }
            let mut cp = cp.borrow_mut();
            if let Some(took) = cp.try_commit(u64::MAX, |t| sinks.cuts(t))? {
                if let Some(s) = sampler.as_mut() {
                    s.commit(took, cp.manifest());
                }
            }
            commits = cp.commits;
        }
        if !writes {
            return Ok(None);
        }
        let ingest = current_rows(&mut sinks.ingest.borrow_mut().current);
        let quality = current_rows(&mut sinks.quality.borrow_mut().current);
        let labels = current_rows(&mut sinks.labels.borrow_mut().current);
        let mut lines = vec![
            ("quality", sinks.quality.borrow().lines),
            ("label_health", sinks.labels.borrow().lines),
            ("entity_features", sinks.features.borrow().lines),
            ("dead_letters", sinks.dead_letters.borrow().lines),
            ("ingest", sinks.ingest.borrow().lines),
        ];
        let (mut alerts, mut detections) = (Vec::new(), Vec::new());
        if let Some(d) = &job.drift {
            lines.extend([
                ("drift", sinks.drift.borrow().lines),
                ("drift_alerts", sinks.drift_alerts.borrow().lines),
                ("drift_detections", sinks.detections.borrow().lines),
            ]);
            for a in current_rows(&mut sinks.drift_alerts.borrow_mut().current) {
                let rule = a.rule(d);
                alerts.push((
                    a.key.win.start,
                    d.features[a.key.feature as usize].name.clone(),
                    rule.statistic.name().to_string(),
                    format!("{:?}", rule.severity),
                    a.status.name().to_string(),
                ));
            }
            for r in current_rows(&mut sinks.detections.borrow_mut().current) {
                let name = d.detectors[r.detector as usize].name();
                detections.push((r.event_time, r.model, name.to_string(), r.position));
            }
            detections.sort();
        }
        if !job.alerts.is_empty() {
            lines.push(("alerts", sinks.alerts.borrow().lines));
        }
        let mut decisions = Vec::new();
        if job.learn.is_some() {
            lines.extend([
                ("model_versions", sinks.versions.borrow().lines),
                ("model_decisions", sinks.decisions.borrow().lines),
                ("quarantine", sinks.quarantine.borrow().lines),
                ("shadow", sinks.shadow.borrow().lines),
            ]);
            decisions = current_rows(&mut sinks.decisions.borrow_mut().current);
            decisions.sort_by_key(|d| d.seq);
        }
        Ok(Some((
            ingest,
            quality,
            labels,
            lines,
            samples,
            commits,
            (alerts, detections),
            decisions,
        )))
    })
    .map_err(Error::Runtime)?;
    let results = guards.join();
    let elapsed = start.elapsed();
    // What the run published reaches MLflow now if MLflow is up; if not, the backlog is in the
    // summary and the next start or `tidemark models sync` publishes it.
    let mlflow = mlflow.map(|p| p.finish(MLFLOW_FINISH));
    if let Some(m) = &metrics {
        m.lock().alerts_out = None;
    }
    let alertmanager = alertmanager.map(|d| d.finish(MLFLOW_FINISH));
    done.store(true, Ordering::Relaxed);
    if let (Some(server), Some(m)) = (server, &metrics) {
        // The final values, for a textfile collector: a bounded run may end between scrapes.
        let path = out_dir.join("metrics.prom");
        crate::replay::segment::write_atomic(&path, m.render().as_bytes())?;
        drop(server);
    }
    if let Some(b) = bar {
        let _ = b.join();
    }
    let mut summary = None;
    for r in results {
        if let Some((
            ingest,
            quality,
            labels,
            lines,
            state_samples,
            commits,
            (alerts, detections),
            decisions,
        )) = r.map_err(Error::Runtime)??
        {
            summary = Some(RunSummary {
                out_dir: out_dir.clone(),
                ingest,
                retention_ms,
                quality,
                labels,
                lines,
                records_read: progress.records.load(Ordering::Relaxed),
                folded: progress.folded.load(Ordering::Relaxed),
                elapsed,
                workers: opts.workers,
                state_samples,
                resumed_from,
                commits,
                drift_alerts: alerts,
                detections,
                decisions,
                mlflow: mlflow.clone(),
                alertmanager: alertmanager.clone(),
            })
        }
    }
    Ok(summary)
}

/// How long a finished run keeps trying to bring MLflow up to date (while it answers, for as
/// long as it publishes) and to deliver its last alerts to Alertmanager.
const MLFLOW_FINISH: Duration = Duration::from_secs(15);

/// The MLflow publisher of a run that publishes to a registry with `[learn.mlflow]` (process 0
/// only; replays and backfills never publish).
fn mlflow_publisher(
    job: &Job,
    opts: &RunOptions,
    plan: &crate::dataflow::Plan,
) -> Option<crate::mlflow::publisher::Publisher> {
    let learn = job.learn.as_ref()?;
    let spec = learn.spec.mlflow.as_ref()?;
    let dir = learn.registry.clone()?;
    if !plan.publish || opts.process != 0 {
        return None;
    }
    let target = crate::mlflow::Target::new(spec, &job.spec.name);
    Some(crate::mlflow::publisher::Publisher::start(
        dir,
        target,
        plan.metrics.clone(),
    ))
}

fn current_rows<R: Ord + Clone>(current: &mut Option<crate::outputs::sink::Contents<R>>) -> Vec<R> {
    current.as_mut().map(|c| c.rows()).unwrap_or_default()
}

fn expected_records(job: &Job) -> u64 {
    use crate::config::SourceKind;
    use crate::schema::Stream;
    let g = &job.spec.generator;
    Stream::ALL
        .iter()
        .filter(|s| job.spec.sources.get(**s).kind == SourceKind::Generator)
        .map(|s| match s {
            Stream::Labels => {
                (g.events as f64
                    * (1.0 - g.unlabeled_fraction)
                    * (1.0 + g.duplicate_label_fraction + g.corrected_label_fraction))
                    as u64
            }
            _ => g.events,
        })
        .sum()
}

/// Shows progress on stderr: a bar on a terminal, otherwise a status line every 10 s.
fn draw_progress(
    progress: &Progress,
    done: &AtomicBool,
    watermark: &AtomicU64,
    gauge: &StateGauge,
    expected_records: u64,
) {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    let by_bytes = progress.bytes_total > 0;
    let total = if by_bytes {
        progress.bytes_total
    } else {
        expected_records.max(1)
    };
    let terminal = std::io::stderr().is_terminal();
    let bar = ProgressBar::new(total);
    let template = if by_bytes {
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records ({eta}) {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let mut last_line = Instant::now();
    while !done.load(Ordering::Relaxed) {
        let records = progress.records.load(Ordering::Relaxed);
        bar.set_position(if by_bytes {
            progress.bytes_read.load(Ordering::Relaxed)
        } else {
            records.min(total)
        });
        let rate = records as f64 / start.elapsed().as_secs_f64().max(1e-3);
        let status = format!(
            "{records} records, {rate:.0} rec/s, watermark {}, state {} records",
            iso_time(watermark.load(Ordering::Relaxed)),
            gauge.records() + progress.held.load(Ordering::Relaxed)
        );
        if terminal {
            bar.set_message(status);
        } else if last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("tidemark: {status}");
            last_line = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}

/// Formats epoch milliseconds as an ISO-8601 UTC time (second precision).
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses a timestamp given as epoch milliseconds or as ISO-8601 UTC
/// (`2026-01-01T00:05:00Z`, optionally with `.mmm` milliseconds).
pub fn parse_time(s: &str) -> std::result::Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || format!("{s:?} is neither epoch milliseconds nor YYYY-MM-DDTHH:MM:SS[.mmm]Z");
    let body = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').ok_or_else(bad)?;
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let (secs, ms) = match time.split_once('.') {
        Some((a, b)) if b.len() == 3 => (a, num(b)?),
        Some(_) => return Err(bad()),
        None => (time, 0),
    };
    let t: Vec<&str> = secs.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    let (y, m, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hh, mm, ss) = (num(t[0])?, num(t[1])?, num(t[2])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 59 {
        return Err(bad());
    }
    // Days-from-civil, after H. Hinnant.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000 + ms).max(0);
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_time_inverts_iso_time() {
        for ms in [
            0u64,
            951_782_400_000 + 3_723_000,
            1_767_225_600_000,
            4_102_444_799_000,
        ] {
            assert_eq!(super::parse_time(&super::iso_time(ms)), Ok(ms));
        }
        assert_eq!(super::parse_time("1767225600123"), Ok(1_767_225_600_123));
        assert_eq!(
            super::parse_time("2026-01-01T00:00:00.250Z"),
            Ok(1_767_225_600_250)
        );
        assert!(super::parse_time("2026-13-01T00:00:00Z").is_err());
        assert!(super::parse_time("yesterday").is_err());
    }

    #[test]
    fn iso_time_known_values() {
        assert_eq!(super::iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso_time(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(
            super::iso_time(951_782_400_000 + 3_723_000),
            "2000-02-29T01:02:03Z"
        );
    }
}
