//! `tidemark bench`: the demo pipeline over generated Parquet files, measured end to end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::Job;
use crate::error::{Error, Result};
use crate::generate::{write_dataset, DataFormat};
use crate::generator::GeneratorParams;
use crate::runtime::{run, RunOptions};

/// What a benchmark run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Events in the input.
    pub events: u64,
    /// Records read (all streams).
    pub records: u64,
    /// Worker threads.
    pub workers: usize,
    /// Event-time events per second of the input.
    pub rate: f64,
    /// Seconds spent generating the input (not part of the throughput).
    pub generate_secs: f64,
    /// Seconds the job ran.
    pub run_secs: f64,
    /// Peak resident set size of this process, in bytes (Linux only).
    pub peak_rss_bytes: Option<u64>,
    /// Peak records in differential state.
    pub peak_state_records: i64,
    /// Seconds to replay the whole buffer (every record, outputs written), if measured.
    pub replay_secs: Option<f64>,
    /// Seconds to rebuild state at the end of the buffer (one state horizon replayed, outputs
    /// muted): what a restart costs, if measured.
    pub rebuild_secs: Option<f64>,
    /// The job's state horizon in milliseconds.
    pub horizon_ms: u64,
}

impl BenchReport {
    /// Events per second of job run time.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.run_secs
    }
}

/// Peak RSS of this process from `/proc/self/status`.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The benchmark job: the demo's windows, segments and entity features over `sources` (TOML
/// tables), with drift against the ten minutes from `drift_from` and learning if asked;
/// `extra` is appended (top-level tables).
#[allow(clippy::too_many_arguments)]
pub fn job_text(
    schemas: &Path,
    sources: &str,
    retention_ms: u64,
    out: &Path,
    drift_from: Option<u64>,
    learn: bool,
    emit_interval_ms: u64,
    extra: &str,
) -> String {
    format!(
        r#"name = "bench"
schemas_dir = "{schemas}"
[time]
tick_ms = 1000
allowed_disorder_ms = 2000
idle_timeout_ms = 10000
max_lateness_ms = 120000
label_horizon_ms = 300000
retention_ms = {retention_ms}
{sources}
[[windows]]
name = "5m"
kind = "tumbling"
size_ms = 300000
[[windows]]
name = "15m_sliding"
kind = "sliding"
size_ms = 900000
slide_ms = 300000
[metrics]
segments = ["country", "device"]
entity_features = ["amount", "velocity"]
[outputs]
dir = "{out}"
formats = ["jsonl"]
emit_interval_ms = {emit_interval_ms}
summary = false
{drift}{learn}{extra}"#,
        learn = if learn {
            "[learn]\npublish_every = 2000\non_drift = { action = \"reset\" }\n"
        } else {
            ""
        },
        drift = match drift_from {
            // Against the stream's first ten minutes, read from the job's own sources.
            Some(from) => format!(
                "[drift]\nreference = {{ from = \"{from}\", to = \"{}\" }}\n\
                 [[drift.alerts]]\nstatistic = \"psi\"\nabove = 0.2\nseverity = \"P2\"\n",
                from + 600_000
            ),
            None => String::new(),
        },
        schemas = schemas.display(),
        out = out.display(),
    )
}

/// Generates `events` events as Parquet under `dir` (reused if present) and runs the demo job over them.
#[allow(clippy::too_many_arguments)]
pub fn bench(
    dir: &Path,
    events: u64,
    workers: usize,
    schemas_dir: &Path,
    retention_ms: u64,
    replay: bool,
    drift: bool,
    learn: bool,
    rate: f64,
) -> Result<BenchReport> {
    let params = GeneratorParams {
        events,
        seed: 7,
        rate_per_s: rate,
        ..Default::default()
    };
    // The default rate keeps its old directory, so inputs generated before `--rate` are reused.
    let data = if rate == GeneratorParams::default().rate_per_s {
        dir.join(format!("data-{events}"))
    } else {
        dir.join(format!("data-{events}-r{rate}"))
    };
    let start = Instant::now();
    if !data.join("metadata.json").exists() {
        write_dataset(&params, &data, DataFormat::Parquet)?;
    }
    let generate_secs = start.elapsed().as_secs_f64();
    let job_path = dir.join("bench.toml");
    let schemas = std::fs::canonicalize(schemas_dir).map_err(|e| Error::io(schemas_dir, e))?;
    let data = std::fs::canonicalize(&data).map_err(|e| Error::io(&data, e))?;
    let sources: String = ["events", "predictions", "labels"]
        .iter()
        .map(|s| {
            format!(
                "[sources.{s}]\nschema = \"{s}.v1\"\nkind = \"parquet\"\npath = \"{}/{s}.parquet\"\n",
                data.display()
            )
        })
        .collect();
    let drift_from = drift.then_some(params.start_ms);
    let text = job_text(
        &schemas,
        &sources,
        retention_ms,
        &dir.join("out"),
        drift_from,
        learn,
        60_000,
        "",
    );
    std::fs::write(&job_path, text).map_err(|e| Error::io(&job_path, e))?;
    let job = Job::load(&job_path)?;
    let opts = RunOptions {
        workers,
        out_dir: Some(dir.join("out")),
        fresh: true,
        ..Default::default()
    };
    let horizon_ms = job.state_horizon_ms();
    // A previous run's outputs (about 0.9 GB at 1M events) are removed before the clock starts:
    // the run starts fresh either way, and its time must not depend on what an earlier one left.
    let out = dir.join("out");
    if out.exists() {
        crate::runtime::start_over(&out, &crate::replay::buffer_dir(&out))?;
    }
    let started = Instant::now();
    let summary = run(job.clone(), &opts)?
        .ok_or_else(|| Error::Runtime("no summary from worker 0".into()))?;
    let run_secs = started.elapsed().as_secs_f64();
    let (mut replay_secs, mut rebuild_secs) = (None, None);
    if replay {
        let buffer = crate::replay::buffer_dir(&dir.join("out"));
        let end = crate::replay::manifest::Manifest::load(&buffer)?
            .map(|m| m.segments.iter().map(|s| s.ts_end).max().unwrap_or(0))
            .unwrap_or(0);
        let opts = RunOptions {
            workers,
            out_dir: Some(dir.join("replay-out")),
            ..Default::default()
        };
        let t = Instant::now();
        crate::runtime::replay(job.clone(), &buffer, 0..u64::MAX, &opts)?;
        replay_secs = Some(t.elapsed().as_secs_f64());
        let t = Instant::now();
        crate::runtime::replay(job, &buffer, end..end, &opts)?;
        rebuild_secs = Some(t.elapsed().as_secs_f64());
    }
    Ok(BenchReport {
        events,
        records: summary.records_read,
        workers,
        rate,
        generate_secs,
        run_secs,
        peak_rss_bytes: peak_rss_bytes(),
        peak_state_records: summary.state_samples.iter().map(|s| s.1).max().unwrap_or(0),
        replay_secs,
        rebuild_secs,
        horizon_ms,
    })
}

/// The default benchmark directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from("out/bench")
}
