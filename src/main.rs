//! The `tidemark` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tidemark::config::Job;
use tidemark::generate::{write_dataset, DataFormat};
use tidemark::generator::GeneratorParams;
use tidemark::runtime::{iso_time, run, RunOptions, RunSummary};

// The hot path allocates many small, short-lived values across worker threads; mimalloc's
// thread-local free lists beat glibc's arenas there and keep large buffers mapped instead of
// returning them to the kernel and faulting them back in, zeroed, on the next allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Streaming model monitoring and online learning on timely/differential dataflow.
#[derive(Parser)]
#[command(name = "tidemark", version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Arguments of `tidemark init`.
#[derive(Args)]
struct InitCli {
    /// Events file (Parquet or JSON Lines).
    #[arg(long)]
    events: PathBuf,
    /// Predictions file.
    #[arg(long)]
    predictions: PathBuf,
    /// Labels file.
    #[arg(long)]
    labels: PathBuf,
    /// Directory for the job file and its schemas/.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The job's name (and the schemas' version suffix).
    #[arg(long, default_value = "myjob")]
    name: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file to completion and write its changelogs.
    Run(RunArgs),
    /// Write the generator's events, predictions and labels (plus metadata.json) to files.
    Generate(GenerateArgs),
    /// Guess a job file and schemas from the first rows of your own files.
    Init(InitCli),
    /// Measure the demo pipeline end to end over generated Parquet files.
    Bench {
        /// Number of events to generate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Worker threads.
        #[arg(short = 'w', long = "workers", default_value_t = 2)]
        workers: usize,
        /// Working directory (input is generated once and reused).
        #[arg(long, default_value = "out/bench")]
        dir: PathBuf,
        /// Schema directory.
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
        /// The job's time.retention_ms.
        #[arg(long, default_value_t = 900_000)]
        retention_ms: u64,
        /// Also replay the whole buffer, and time a restart's state rebuild at its end.
        #[arg(long)]
        replay: bool,
        /// Monitor drift of every feature and the score against the stream's first ten minutes.
        #[arg(long)]
        drift: bool,
        /// Learn an online model (publishing versions as outputs, no registry).
        #[arg(long)]
        learn: bool,
        /// Event-time events per second of the generated input (state grows with it: a window
        /// holds rate × size events).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Read the input from Kafka: the peak throughput from topics through the pipeline,
        /// then update latency at half of it (the mock cluster in process unless --brokers).
        #[arg(long)]
        kafka: bool,
        /// A Kafka broker to use instead of the in-process mock cluster (with --kafka).
        #[arg(long, requires = "kafka")]
        brokers: Option<String>,
        /// Seconds of paced input for the latency measurement (with --kafka).
        #[arg(long, default_value_t = 20.0, requires = "kafka")]
        paced_secs: f64,
        /// The latency run's rate as a fraction of the measured peak (with --kafka).
        #[arg(long, default_value_t = 0.5, requires = "kafka")]
        load: f64,
    },
    /// Feed a range of a job's replay buffer back through the job and write its outputs.
    Replay(ReplayArgs),
    /// Run a job over historical files at full speed, into its own output directory.
    Backfill(BackfillArgs),
    /// Compare the changelogs of two output directories; say where they first differ.
    Verify {
        /// First output directory.
        a: PathBuf,
        /// Second output directory.
        b: PathBuf,
        /// Compare lines from this timestamp on (epoch ms or ISO-8601 UTC).
        #[arg(long, value_parser = parse_ts)]
        from: Option<u64>,
        /// Compare lines below this timestamp (epoch ms or ISO-8601 UTC).
        #[arg(long, value_parser = parse_ts)]
        to: Option<u64>,
    },
    /// Summarize a replay buffer and verify the checksum of every segment.
    Inspect {
        /// The buffer directory (`<outputs.dir>/replay`).
        dir: PathBuf,
    },
    /// Compute a drift reference profile from files or a range of a job's own sources.
    Profile(ProfileArgs),
    /// Inspect a model registry, and act on its job: list, show, diff, promote, rollback, pause,
    /// resume (on a running job, as commands its learner applies).
    Models {
        /// The registry directory (a job's `learn.registry`).
        #[arg(long, default_value = "out/demo/registry")]
        registry: PathBuf,
        #[command(subcommand)]
        op: ModelsOp,
    },
    /// Render a job's changelogs as a self-contained HTML report with plots.
    Report {
        /// The job's output directory (its changelogs).
        #[arg(long)]
        outputs: PathBuf,
        /// The HTML file to write.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
    },
    /// Check job files and their schemas; report every problem with file, key and reason.
    Validate {
        /// Job files (TOML).
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelsOp {
    /// Every version with its parent, examples, metrics and alias.
    List,
    /// One version: lineage, metrics, checksum and its largest weights.
    Show {
        /// The version (e.g. v000003).
        version: String,
    },
    /// How version B differs from version A.
    Diff {
        /// The older version.
        a: String,
        /// The newer version.
        b: String,
    },
    /// Make a version the champion (on a running job: when its learner takes the command).
    Promote {
        /// The version.
        version: String,
        /// Why (recorded in the history).
        #[arg(long, default_value = "promoted by an operator")]
        reason: String,
        /// Seconds to wait for a running job's decision.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Restore the champion before the current one and pause updates.
    Rollback {
        /// Why (recorded in the history).
        #[arg(long, default_value = "rolled back by an operator")]
        reason: String,
        /// Seconds to wait for a running job's decision.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Stop updates of the online model (the champion keeps serving).
    Pause {
        /// Why (recorded in the history).
        #[arg(long, default_value = "paused by an operator")]
        reason: String,
        /// Seconds to wait for a running job's decision.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Write a version's model card (Markdown): training, metrics per segment, drift, limits.
    Card {
        /// The version (e.g. v000003).
        version: String,
        /// The job's output directory, for metrics per segment and drift at training time.
        #[arg(long)]
        outputs: Option<PathBuf>,
        /// Write the card to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Bring an MLflow registered model up to date with this registry: versions (with their
    /// parameters, metrics, lineage and a servable model) and the champion/challenger aliases.
    Sync {
        /// The MLflow tracking server, e.g. http://127.0.0.1:5000 (default: where the job
        /// that publishes to this registry publishes).
        #[arg(long)]
        mlflow: Option<String>,
        /// The registered model (default: the job name the versions carry).
        #[arg(long)]
        registered_model: Option<String>,
        /// The experiment of the versions' runs (default: the registered model's name).
        #[arg(long)]
        experiment: Option<String>,
    },
    /// Score events (JSON Lines of the job's events schema) with a version, as the job's model
    /// does: one {"event_id", "score"} line each.
    Score {
        /// The version (e.g. v000003), or `champion` / `challenger`.
        version: String,
        /// The job file whose events schema the events follow.
        #[arg(long)]
        job: PathBuf,
        /// The events file (JSON Lines).
        #[arg(long)]
        events: PathBuf,
    },
    /// Let a job whose updates were paused (by a rollback or an operator) learn again.
    Resume {
        /// Why (recorded in the history).
        #[arg(long, default_value = "resumed by an operator")]
        reason: String,
        /// Seconds to wait for a running job's decision.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
}

impl ModelsOp {
    /// The operator's command this is, with its version, reason and wait (`None`: not one).
    fn command(&self) -> Option<(tidemark::control::Command, Option<String>, &str, u64)> {
        use tidemark::control::Command;
        match self {
            ModelsOp::Promote {
                version,
                reason,
                wait,
            } => Some((Command::Promote, Some(version.clone()), reason, *wait)),
            ModelsOp::Rollback { reason, wait } => Some((Command::Rollback, None, reason, *wait)),
            ModelsOp::Pause { reason, wait } => Some((Command::Pause, None, reason, *wait)),
            ModelsOp::Resume { reason, wait } => Some((Command::Resume, None, reason, *wait)),
            _ => None,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    workers: usize,
    /// Number of processes (timely cluster mode).
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// Index of this process, 0-based.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// File with one host:port per process (default 127.0.0.1:2101+i).
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// Output directory (overrides outputs.dir of the job).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Discard the replay buffer and outputs of an interrupted run instead of resuming it.
    #[arg(long)]
    fresh: bool,
    /// Write into a non-empty directory that holds no tidemark outputs.
    #[arg(long)]
    force: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (`off` to disable; port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    metrics: String,
    /// Deliver alert records to the Alertmanager at URL (its v2 API), e.g. http://127.0.0.1:9093.
    #[arg(long, value_name = "URL")]
    alertmanager: Option<String>,
    /// Seconds between re-sends of active alerts to Alertmanager.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    alertmanager_resend: f64,
}

#[derive(Args)]
struct ReplayArgs {
    /// The job file (TOML) that wrote the buffer.
    job: PathBuf,
    /// First timestamp whose outputs are written (epoch ms or ISO-8601 UTC).
    #[arg(long, value_parser = parse_ts)]
    from: u64,
    /// Outputs are written below this timestamp (default: everything committed).
    #[arg(long, value_parser = parse_ts)]
    to: Option<u64>,
    /// Output directory of the replay.
    #[arg(long)]
    out: PathBuf,
    /// The buffer (default: the job's `<outputs.dir>/replay`).
    #[arg(long)]
    buffer: Option<PathBuf>,
    /// Worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    workers: usize,
}

#[derive(Args)]
struct BackfillArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Input for one stream as STREAM=PATH (a .jsonl or .parquet file, a directory or a
    /// glob); streams not given keep the job's source.
    #[arg(long = "input", required = true, value_parser = parse_input)]
    inputs: Vec<(String, String)>,
    /// Output directory (its own; never the live job's).
    #[arg(long)]
    out: PathBuf,
    /// Worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    workers: usize,
    /// Do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Write into a non-empty directory that holds no tidemark outputs.
    #[arg(long)]
    force: bool,
}

fn parse_ts(s: &str) -> Result<u64, String> {
    tidemark::runtime::parse_time(s)
}

fn parse_input(s: &str) -> Result<(String, String), String> {
    let (stream, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not STREAM=PATH"))?;
    if tidemark::schema::Stream::parse(stream).is_none() {
        return Err(format!(
            "{stream:?} is not a stream (events, predictions, labels)"
        ));
    }
    Ok((stream.to_string(), path.to_string()))
}

#[derive(Args)]
struct ProfileArgs {
    /// The job whose schemas decode the records (its [drift] section gives the defaults).
    job: PathBuf,
    /// Reference files as STREAM=PATH (events or predictions; .jsonl or .parquet); without
    /// any, the job's own sources over --from/--to.
    #[arg(long = "input", value_parser = parse_input)]
    inputs: Vec<(String, String)>,
    /// Keep records whose own time is at or after this (epoch ms or ISO-8601 UTC).
    #[arg(long, value_parser = parse_ts)]
    from: Option<u64>,
    /// Keep records whose own time is before this.
    #[arg(long, value_parser = parse_ts)]
    to: Option<u64>,
    /// Where to write the profile (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Fine quantile bins per numeric feature (default: the job's drift.fine_bins, or 100).
    #[arg(long)]
    fine_bins: Option<u32>,
    /// Distinct values kept per feature before the profile keeps a sketch (default: the job's
    /// drift.max_reference_values, or 100000).
    #[arg(long)]
    max_values: Option<u64>,
}

#[derive(Args)]
struct GenerateArgs {
    /// Output directory (or use --kafka).
    #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
    out: Option<PathBuf>,
    /// Produce the streams into Kafka at these brokers instead of writing files (a load
    /// generator); the topics must exist.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Topics of the events, predictions and labels, comma-separated (with --kafka).
    #[arg(long, default_value = "events,predictions,labels", requires = "kafka")]
    topics: String,
    /// Records produced per second of wall clock, all streams together; 0 for as fast as
    /// possible (with --kafka).
    #[arg(long, default_value_t = 0.0, requires = "kafka")]
    per_second: f64,
    /// A librdkafka property for the producer, `key=value` (security settings …); repeatable.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", requires = "kafka")]
    kafka_options: Vec<String>,
    /// File format.
    #[arg(long, value_enum, default_value_t = DataFormat::Jsonl)]
    format: DataFormat,
    /// Take the generator parameters from this job file's [generator] table (flags override).
    #[arg(long)]
    job: Option<PathBuf>,
    /// Number of events.
    #[arg(long)]
    events: Option<u64>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Events per second of event time.
    #[arg(long)]
    rate: Option<f64>,
    /// Number of distinct entities.
    #[arg(long)]
    entities: Option<u64>,
    /// Fraction of records per stream that are malformed.
    #[arg(long)]
    malformed_fraction: Option<f64>,
    /// Fraction of events that never get a label.
    #[arg(long)]
    unlabeled_fraction: Option<f64>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Generate(a) => cmd_generate(a),
        Command::Init(a) => cmd_init(a),
        Command::Validate { jobs } => cmd_validate(&jobs),
        Command::Replay(a) => cmd_replay(a),
        Command::Backfill(a) => cmd_backfill(a),
        Command::Verify { a, b, from, to } => cmd_verify(&a, &b, from, to),
        Command::Inspect { dir } => cmd_inspect(&dir),
        Command::Models { registry, op } => cmd_models(&registry, op),
        Command::Report { outputs, out } => cmd_report(&outputs, &out),
        Command::Profile(a) => cmd_profile(a),
        Command::Bench {
            events,
            workers,
            dir,
            schemas,
            learn,
            kafka: true,
            brokers,
            paced_secs,
            load,
            ..
        } => cmd_bench_kafka(
            &dir,
            &schemas,
            &tidemark::kafka::bench::KafkaBench {
                events,
                workers,
                brokers,
                learn,
                paced_secs,
                load,
            },
        ),
        Command::Bench {
            events,
            workers,
            dir,
            schemas,
            retention_ms,
            replay,
            drift,
            learn,
            rate,
            ..
        } => cmd_bench(
            &dir,
            events,
            workers,
            &schemas,
            retention_ms,
            replay,
            drift,
            learn,
            rate,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_profile(a: ProfileArgs) -> Result<(), String> {
    use tidemark::drift::reference::{build, file_partition};
    use tidemark::schema::Stream;
    // The job's own reference may be the profile being written: load it without [drift].
    let mut spec = tidemark::config::Job::read_spec(&a.job).map_err(|e| e.to_string())?;
    let drift = spec.drift.take();
    let job = tidemark::config::Job::validate(&a.job, spec).map_err(|e| e.to_string())?;
    let fine = a
        .fine_bins
        .or(drift.as_ref().map(|d| d.fine_bins))
        .unwrap_or(100);
    let max = a
        .max_values
        .or(drift.as_ref().map(|d| d.max_reference_values))
        .unwrap_or(100_000);
    if fine < 2 || max == 0 {
        return Err("--fine-bins must be at least 2 and --max-values positive".into());
    }
    let range = a.from.unwrap_or(0)..a.to.unwrap_or(u64::MAX);
    let (inputs, source) = if a.inputs.is_empty() {
        if a.from.is_none() || a.to.is_none() {
            return Err(
                "without --input, give --from and --to: the range of the job's sources".into(),
            );
        }
        let inputs: Vec<_> = tidemark::sources::partitions(&job)
            .into_iter()
            .filter(|(s, _)| *s != Stream::Labels)
            .collect();
        let source = format!(
            "{}'s sources over [{}, {})",
            job.spec.name, range.start, range.end
        );
        (inputs, source)
    } else {
        let mut inputs = Vec::new();
        for (stream, path) in &a.inputs {
            let stream = Stream::parse(stream).expect("checked by the parser");
            if stream == Stream::Labels {
                return Err("labels are not profiled: give events and predictions".into());
            }
            inputs.push((
                stream,
                file_partition(std::path::Path::new(path)).map_err(|e| e.to_string())?,
            ));
        }
        let names: Vec<&str> = a.inputs.iter().map(|(_, p)| p.as_str()).collect();
        (inputs, names.join(", "))
    };
    let (profile, counts) = build(&job, &inputs, range, false, &source, fine, max as usize)
        .map_err(|e| e.to_string())?;
    if profile.events == 0 {
        return Err(format!("no events in {source}: nothing to profile"));
    }
    profile.save(&a.out).map_err(|e| e.to_string())?;
    println!(
        "profiled {} events and {} predictions from {source}",
        profile.events, profile.predictions
    );
    println!(
        "records read {}, used {}, outside the range {}, refused by the schema {}, duplicates {}",
        counts.read,
        counts.used - counts.duplicates,
        counts.outside,
        counts.refused,
        counts.duplicates
    );
    if let Some(first) = &counts.first_refusal {
        println!("first refusal: {first}");
    }
    println!(
        "{:<14} {:>10} {:>8}  reference",
        "feature", "values", "nulls"
    );
    let numeric = profile
        .numeric
        .iter()
        .map(|(k, r)| (k.as_str(), r))
        .chain(profile.score.iter().map(|r| ("score", r)));
    for (name, r) in numeric {
        let kind = if r.exact {
            format!("exact, {} distinct values", r.values.len())
        } else {
            format!("sketch of {} values", r.values.len())
        };
        println!("{name:<14} {:>10} {:>8}  {kind}", r.n, r.nulls);
    }
    for (name, r) in &profile.categorical {
        println!(
            "{name:<14} {:>10} {:>8}  {} categories",
            r.n,
            r.nulls,
            r.counts.len()
        );
    }
    println!("written to {}", a.out.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn cmd_bench(
    dir: &std::path::Path,
    events: u64,
    workers: usize,
    schemas: &std::path::Path,
    retention_ms: u64,
    replay: bool,
    drift: bool,
    learn: bool,
    rate: f64,
) -> Result<(), String> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!(
            "--rate must be a positive number of events per second, not {rate}"
        ));
    }
    let r = tidemark::bench::bench(
        dir,
        events,
        workers,
        schemas,
        retention_ms,
        replay,
        drift,
        learn,
        rate,
    )
    .map_err(|e| e.to_string())?;
    println!("events            {}", r.events);
    println!(
        "records read      {} (events, predictions, labels)",
        r.records
    );
    println!("workers           {}", r.workers);
    println!("rate              {} events/s of event time", r.rate);
    println!("generate (once)   {:.1} s", r.generate_secs);
    println!("run               {:.1} s", r.run_secs);
    println!(
        "throughput        {:.0} events/s, {:.0} records/s",
        r.events_per_sec(),
        r.records as f64 / r.run_secs
    );
    println!(
        "peak RSS          {}",
        r.peak_rss_bytes
            .map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "n/a".into())
    );
    println!("peak state        {} records", r.peak_state_records);
    println!(
        "state horizon     {:.0} min (retention {:.0} min)",
        r.horizon_ms as f64 / 60_000.0,
        retention_ms as f64 / 60_000.0
    );
    if let (Some(rep), Some(reb)) = (r.replay_secs, r.rebuild_secs) {
        println!(
            "replay (all)      {rep:.1} s, {:.0} events/s",
            r.events as f64 / rep
        );
        println!("restart rebuild   {reb:.1} s (one state horizon, outputs muted)");
    }
    Ok(())
}

fn cmd_init(a: InitCli) -> Result<(), String> {
    let g = tidemark::init::init(&tidemark::init::InitArgs {
        events: a.events,
        predictions: a.predictions,
        labels: a.labels,
        out: a.out,
        name: a.name,
    })
    .map_err(|e| e.to_string())?;
    println!(
        "guessed from the first {} rows of each file:",
        tidemark::init::SAMPLE_ROWS
    );
    for r in &g.reasons {
        println!("  {r}");
    }
    println!();
    for s in &g.schemas {
        println!("wrote {}", s.display());
    }
    println!("wrote {}", g.job.display());
    println!();
    println!("next: check the roles, then");
    println!("  tidemark validate {}", g.job.display());
    println!("  tidemark run {}", g.job.display());
    Ok(())
}

fn cmd_validate(jobs: &[PathBuf]) -> Result<(), String> {
    let mut failed = 0;
    for path in jobs {
        match Job::load(path) {
            Ok(job) => println!(
                "ok: {} (job {:?}, {} windows)",
                path.display(),
                job.spec.name,
                job.spec.windows.len()
            ),
            Err(e) => {
                println!("invalid: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        Err(format!("{failed} of {} job files are invalid", jobs.len()))
    } else {
        Ok(())
    }
}

fn cmd_bench_kafka(
    dir: &std::path::Path,
    schemas: &std::path::Path,
    b: &tidemark::kafka::bench::KafkaBench,
) -> Result<(), String> {
    let workers = b.workers;
    let r = tidemark::kafka::bench::bench(dir, schemas, b).map_err(|e| e.to_string())?;
    println!("broker            {}", r.broker);
    println!(
        "produce           {} records at {:.0} records/s (load generator, no cap)",
        r.records, r.produce_per_sec
    );
    println!(
        "peak              {} events, {} records from Kafka through the pipeline in {:.1} s: {:.0} records/s ({workers} workers)",
        r.events, r.records, r.run_secs, r.peak_per_sec
    );
    println!(
        "latency run       {} records paced at {:.0} records/s ({:.0} % of the peak)",
        r.paced_records,
        r.paced_per_sec,
        r.load * 100.0
    );
    for l in &r.latency {
        println!(
            "  {:<15} {} updates: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (p99 by third of the run: {} / {} / {} ms)",
            l.output, l.updates, l.p50, l.p90, l.p99, l.max, l.p99_thirds[0], l.p99_thirds[1], l.p99_thirds[2]
        );
    }
    // The live job follows its topics until the process ends.
    std::process::exit(0);
}

fn cmd_generate(a: GenerateArgs) -> Result<(), String> {
    let mut params = match &a.job {
        Some(p) => Job::load(p).map_err(|e| e.to_string())?.spec.generator,
        None => GeneratorParams::default(),
    };
    if let Some(v) = a.events {
        params.events = v;
    }
    if let Some(v) = a.seed {
        params.seed = v;
    }
    if let Some(v) = a.rate {
        params.rate_per_s = v;
    }
    if let Some(v) = a.entities {
        params.entities = v;
    }
    if let Some(v) = a.malformed_fraction {
        params.malformed_fraction = v;
    }
    if let Some(v) = a.unlabeled_fraction {
        params.unlabeled_fraction = v;
    }
    if let Some(brokers) = a.kafka {
        let mut options = std::collections::BTreeMap::new();
        for kv in &a.kafka_options {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--kafka-option {kv:?}: expected KEY=VALUE"))?;
            options.insert(k.to_string(), v.to_string());
        }
        let spec = tidemark::kafka::KafkaSpec {
            brokers,
            group_id: None,
            until_end: false,
            options,
        };
        spec.check()
            .map_err(|(k, r)| format!("--kafka-option {k}: {r}"))?;
        let topics: Vec<String> = a.topics.split(',').map(|t| t.trim().to_string()).collect();
        let topics: [String; 3] = topics.try_into().map_err(|_| {
            "--topics: expected three topics: events,predictions,labels".to_string()
        })?;
        let p = tidemark::kafka::load::produce(&params, &spec, &topics, a.per_second, |_, _, _| {})
            .map_err(|e| e.to_string())?;
        let total: u64 = p.records.values().sum();
        println!(
            "produced {} to {} in {:.1} s ({:.0} records/s)",
            serde_json::to_string(&p.records).unwrap_or_default(),
            topics.join(", "),
            p.secs,
            total as f64 / p.secs.max(1e-9)
        );
        return Ok(());
    }
    let out = a.out.expect("clap requires --out without --kafka");
    let meta = write_dataset(&params, &out, a.format).map_err(|e| e.to_string())?;
    println!(
        "wrote {} to {}",
        serde_json::to_string(&meta.records).unwrap_or_default(),
        out.display()
    );
    for d in &meta.drift_points {
        println!(
            "  {:<16} events {:>8}..{:<8} {} .. {}  {}",
            d.kind,
            d.start_index,
            d.end_index,
            iso_time(d.start_time_ms),
            iso_time(d.end_time_ms),
            d.what
        );
    }
    Ok(())
}

fn cmd_run(a: RunArgs) -> Result<(), String> {
    let job = Job::load(&a.job).map_err(|e| e.to_string())?;
    let summary_wanted = job.spec.outputs.summary;
    let opts = RunOptions {
        workers: a.workers,
        processes: a.processes,
        process: a.process,
        hostfile: a.hostfile,
        out_dir: a.out,
        progress: !a.no_progress,
        fresh: a.fresh,
        metrics: (a.metrics != "off").then_some(a.metrics),
        force: a.force,
        alertmanager: a.alertmanager,
        alertmanager_resend: std::time::Duration::try_from_secs_f64(a.alertmanager_resend)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or("--alertmanager-resend: a positive number of seconds")?,
    };
    let summary = run(job.clone(), &opts).map_err(|e| e.to_string())?;
    report_run(&job, summary, summary_wanted)
}

fn cmd_replay(a: ReplayArgs) -> Result<(), String> {
    let job = Job::load(&a.job).map_err(|e| e.to_string())?;
    let buffer = a
        .buffer
        .unwrap_or_else(|| tidemark::replay::buffer_dir(&job.spec.outputs.dir));
    let to = match a.to {
        Some(t) => t,
        None => tidemark::replay::manifest::Manifest::load(&buffer)
            .map_err(|e| e.to_string())?
            .map(|m| m.committed)
            .ok_or_else(|| format!("{}: no manifest", buffer.display()))?,
    };
    let opts = RunOptions {
        workers: a.workers,
        out_dir: Some(a.out.clone()),
        ..RunOptions::default()
    };
    let s =
        tidemark::runtime::replay(job, &buffer, a.from..to, &opts).map_err(|e| e.to_string())?;
    let digests =
        tidemark::replay::verify::digest(&a.out, a.from..to).map_err(|e| e.to_string())?;
    if let Some(s) = s {
        println!(
            "replayed ts {}..{} ({} .. {}) in {:.2} s into {}",
            a.from,
            to,
            iso_time(a.from),
            iso_time(to),
            s.elapsed.as_secs_f64(),
            a.out.display()
        );
    }
    for (name, d) in &digests {
        println!("  {name:<24} {:>8} lines  sha256 {}", d.lines, d.sha256);
    }
    println!("digest {}", tidemark::replay::verify::combined(&digests));
    Ok(())
}

fn cmd_backfill(a: BackfillArgs) -> Result<(), String> {
    let mut spec = Job::read_spec(&a.job).map_err(|e| e.to_string())?;
    let live_out = std::path::absolute(&spec.outputs.dir).map_err(|e| e.to_string())?;
    let out = std::path::absolute(&a.out).map_err(|e| e.to_string())?;
    if out == live_out {
        return Err(format!(
            "--out {} is the job's own output directory; a backfill needs its own",
            a.out.display()
        ));
    }
    for (stream, path) in &a.inputs {
        let stream = tidemark::schema::Stream::parse(stream).expect("checked by clap");
        let src = spec.sources.get_mut(stream);
        src.kind = input_kind(path);
        let abs = std::path::absolute(path).map_err(|e| e.to_string())?;
        src.path = Some(abs.display().to_string());
        src.topic = None;
    }
    // A backfill's changelogs stay in its directory: never the live job's topics.
    spec.outputs.kafka = None;
    // A backfill publishes model versions into its own directory, never the live registry,
    // and not to MLflow (`models sync --registry <out>/registry` publishes them on purpose).
    if let Some(l) = spec.learn.as_mut().filter(|l| l.registry.is_some()) {
        l.registry = Some(out.join("registry"));
        l.mlflow = None;
    }
    let job = Job::validate(&a.job, spec).map_err(|e| e.to_string())?;
    let summary_wanted = job.spec.outputs.summary;
    let opts = RunOptions {
        workers: a.workers,
        out_dir: Some(a.out),
        progress: !a.no_progress,
        fresh: true,
        force: a.force,
        ..RunOptions::default()
    };
    let summary = run(job.clone(), &opts).map_err(|e| e.to_string())?;
    report_run(&job, summary, summary_wanted)
}

/// Parquet for `.parquet` paths and directories holding Parquet files, JSON Lines otherwise.
fn input_kind(path: &str) -> tidemark::config::SourceKind {
    use tidemark::config::SourceKind;
    let p = std::path::Path::new(path);
    let parquet = if p.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            })
            .unwrap_or(false)
    } else {
        path.ends_with(".parquet")
    };
    if parquet {
        SourceKind::Parquet
    } else {
        SourceKind::Jsonl
    }
}

fn cmd_verify(
    a: &std::path::Path,
    b: &std::path::Path,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<(), String> {
    use tidemark::replay::verify;
    let range = from.unwrap_or(0)..to.unwrap_or(u64::MAX);
    let da = verify::digest(a, range.clone()).map_err(|e| e.to_string())?;
    let db = verify::digest(b, range.clone()).map_err(|e| e.to_string())?;
    println!("{}  {}", verify::combined(&da), a.display());
    println!("{}  {}", verify::combined(&db), b.display());
    match verify::compare(a, b, range).map_err(|e| e.to_string())? {
        None => {
            println!("identical");
            Ok(())
        }
        Some(d) => {
            println!(
                "first difference: {} line {} (within the range)",
                d.file, d.line
            );
            println!("  {}: {}", a.display(), d.a.as_deref().unwrap_or("(none)"));
            println!("  {}: {}", b.display(), d.b.as_deref().unwrap_or("(none)"));
            Err("the outputs differ".into())
        }
    }
}

fn cmd_report(outputs: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    let html = tidemark::report::render(outputs).map_err(|e| e.to_string())?;
    tidemark::replay::segment::write_atomic(out, html.as_bytes()).map_err(|e| e.to_string())?;
    println!(
        "report of {}: {} ({} bytes)",
        outputs.display(),
        out.display(),
        html.len()
    );
    Ok(())
}

fn cmd_models(dir: &std::path::Path, op: ModelsOp) -> Result<(), String> {
    use tidemark::registry::{ops, Registry};
    let e = |e: tidemark::error::Error| e.to_string();
    // An operator's command goes to the job holding the registry, if one runs.
    if let Some((command, version, reason, wait)) = op.command() {
        if Registry::try_locked(dir).map_err(e)?.is_none() {
            return command_running_job(dir, command, version, reason, wait);
        }
    }
    // A sync takes the lock too: a running job publishes to MLflow itself, and two writers
    // would create a version twice.
    let changes = op.command().is_some() || matches!(op, ModelsOp::Sync { .. });
    let reg = if changes {
        Registry::locked(dir)
    } else {
        Registry::existing(dir)
    }
    .map_err(|e| e.to_string())?;
    match op {
        ModelsOp::List => print!("{}", ops::list(&reg).map_err(e)?),
        ModelsOp::Show { version } => print!("{}", ops::show(&reg, &version).map_err(e)?),
        ModelsOp::Diff { a, b } => print!("{}", ops::diff(&reg, &a, &b).map_err(e)?),
        ModelsOp::Card {
            version,
            outputs,
            out,
        } => {
            let card =
                tidemark::registry::card::card(dir, &version, outputs.as_deref()).map_err(e)?;
            match out {
                Some(path) => {
                    tidemark::replay::segment::write_atomic(&path, card.as_bytes()).map_err(e)?;
                    println!("model card of {version}: {}", path.display());
                }
                None => print!("{card}"),
            }
        }
        ModelsOp::Promote {
            version, reason, ..
        } => {
            ops::promote(&reg, &version, &reason).map_err(e)?;
            println!(
                "champion: {version} (no job runs: the next one to hold the registry follows)"
            );
            follow_in_mlflow(&reg);
        }
        ModelsOp::Rollback { reason, .. } => {
            let v = ops::rollback(&reg, &reason).map_err(e)?;
            println!("champion: {v}, updates paused (no job runs: the next one to hold the registry follows)");
            follow_in_mlflow(&reg);
        }
        ModelsOp::Pause { reason, .. } => {
            if ops::pause(&reg, &reason).map_err(e)? {
                println!("updates paused (no job runs: the next one to hold the registry follows)");
            } else {
                println!("updates were already paused");
            }
        }
        ModelsOp::Sync {
            mlflow,
            registered_model,
            experiment,
        } => {
            let versions = reg.versions().map_err(e)?;
            let Some(first) = versions.first() else {
                return Err(format!("{}: no versions to publish", dir.display()));
            };
            let job = reg.version(first).map_err(e)?.job;
            let remembered = tidemark::mlflow::Target::remembered(dir).map_err(e)?;
            let target = match (mlflow, remembered) {
                (Some(uri), _) => {
                    let spec = tidemark::mlflow::MlflowSpec {
                        tracking_uri: uri,
                        registered_model,
                        experiment,
                    };
                    tidemark::mlflow::check(&spec).map_err(|(_, reason)| reason)?;
                    tidemark::mlflow::Target::new(&spec, &job)
                }
                (None, Some(t)) => {
                    let mut spec = t.spec();
                    spec.registered_model = registered_model.or(spec.registered_model);
                    spec.experiment = experiment.or(spec.experiment);
                    tidemark::mlflow::Target::new(&spec, &job)
                }
                (None, None) => {
                    return Err(format!(
                        "{}: no job has published this registry to MLflow: name the server with --mlflow URI",
                        dir.display()
                    ))
                }
            };
            sync_mlflow(&reg, &target)?;
        }
        ModelsOp::Score {
            version,
            job,
            events,
        } => {
            let job = tidemark::config::Job::load(&job).map_err(e)?;
            let file = reg.read().map_err(e)?;
            let name = match version.as_str() {
                "champion" => file.champion.clone(),
                "challenger" => file.challenger.clone(),
                _ => Some(version.clone()),
            }
            .ok_or_else(|| format!("{}: no {version} now", dir.display()))?;
            let v = reg.version(&name).map_err(e)?;
            let input = std::fs::File::open(&events)
                .map_err(|err| format!("{}: {err}", events.display()))?;
            let stdout = std::io::stdout();
            let n = tidemark::registry::score::score_lines(
                &v,
                job.schema(tidemark::schema::Stream::Events),
                std::io::BufReader::new(input),
                std::io::BufWriter::new(stdout.lock()),
                std::io::stderr(),
                &events.display().to_string(),
            )
            .map_err(e)?;
            eprintln!(
                "{name}: {} events scored, {} lines refused",
                n.scored, n.refused
            );
        }
        ModelsOp::Resume { reason, .. } => {
            if ops::resume(&reg, &reason).map_err(e)? {
                println!(
                    "updates resumed (no job runs: the next one to hold the registry follows)"
                );
            } else {
                println!("updates were not paused");
            }
        }
    }
    Ok(())
}

/// Sends an operator's command to the job that holds the registry in `dir` and waits for its
/// decision; should the job stop before it takes the command, applies it as with no job.
fn command_running_job(
    dir: &std::path::Path,
    command: tidemark::control::Command,
    version: Option<String>,
    reason: &str,
    wait: u64,
) -> Result<(), String> {
    use std::time::{Duration, Instant};
    use tidemark::control;
    use tidemark::registry::{ops, Registry};
    let e = |e: tidemark::error::Error| e.to_string();
    let reg = Registry::existing(dir).map_err(e)?;
    if let Some(v) = &version {
        // Checked before it is sent: the job would refuse it, but later.
        reg.version(v).map_err(e)?;
    }
    let started = Instant::now();
    let seq = control::submit(
        dir,
        control::Control {
            seq: 0,
            command,
            version: version.clone(),
            reason: reason.to_string(),
            offline: false,
            model: None,
        },
    )
    .map_err(e)?;
    eprintln!(
        "{} sent to the running job as command {seq} ({}); waiting for its decision",
        command.name(),
        control::dir(dir).display()
    );
    let until = started + Duration::from_secs(wait);
    loop {
        if let Some(h) = control::decision(&reg, seq).map_err(e)? {
            let took = started.elapsed();
            if h.action == "refuse" {
                return Err(format!(
                    "the running job refused command {seq}: {}",
                    h.reason
                ));
            }
            println!(
                "{}: champion {}{}; decision {} by the running job at ts {}, {:.0} ms after the command",
                h.action,
                h.champion.as_deref().unwrap_or("none"),
                if reg.read().map_err(e)?.paused {
                    ", updates paused"
                } else {
                    ""
                },
                h.seq.unwrap_or_default(),
                h.ts.unwrap_or_default(),
                took.as_secs_f64() * 1e3
            );
            return Ok(());
        }
        if let Some(locked) = Registry::try_locked(dir).map_err(e)? {
            // The job stopped. Its decision may have landed just before.
            if control::decision(&locked, seq).map_err(e)?.is_none()
                && control::withdraw(dir, seq).map_err(e)?
            {
                eprintln!(
                    "the job stopped before it took command {seq}: applying it to the registry"
                );
                let done = match command {
                    control::Command::Promote => {
                        let v = version.unwrap_or_default();
                        ops::promote(&locked, &v, reason).map(|()| format!("champion: {v}"))
                    }
                    control::Command::Rollback => ops::rollback(&locked, reason)
                        .map(|v| format!("champion: {v}, updates paused")),
                    control::Command::Pause => {
                        ops::pause(&locked, reason).map(|_| "updates paused".to_string())
                    }
                    control::Command::Resume => {
                        ops::resume(&locked, reason).map(|_| "updates resumed".to_string())
                    }
                }
                .map_err(e)?;
                println!("{done} (the next job to hold the registry follows)");
                follow_in_mlflow(&locked);
                return Ok(());
            }
            if let Some(h) = control::decision(&locked, seq).map_err(e)? {
                println!(
                    "{}: champion {}",
                    h.action,
                    h.champion.as_deref().unwrap_or("none")
                );
                return Ok(());
            }
            return Err(format!(
                "the job took command {seq} and stopped before deciding on it: its next start applies it"
            ));
        }
        if Instant::now() >= until {
            return Err(format!(
                "the running job has not decided on command {seq} within {wait} s (a command applies with \
                 the job's next records: is its input quiet?); it stays queued in {} and will be applied",
                control::dir(dir).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Brings MLflow up to date with the registry; prints what it did.
fn sync_mlflow(
    reg: &tidemark::registry::Registry,
    target: &tidemark::mlflow::Target,
) -> Result<(), String> {
    let mut progress = tidemark::mlflow::sync::Progress::default();
    tidemark::mlflow::sync::sync(reg, target, &mut progress).map_err(|e| e.to_string())?;
    println!(
        "MLflow registered model {:?} at {}: {} versions, {} published now{}",
        target.registered_model,
        target.client.base(),
        progress.versions.len(),
        progress.created.len(),
        if progress.moved.is_empty() {
            String::new()
        } else {
            format!("; {}", progress.moved.join(", "))
        }
    );
    Ok(())
}

/// After an operator's change: MLflow's aliases follow, if a job publishes this registry there.
/// A failure is reported, not fatal: the registry changed, and `models sync` retries.
fn follow_in_mlflow(reg: &tidemark::registry::Registry) {
    match tidemark::mlflow::Target::remembered(reg.dir()) {
        Ok(Some(target)) => {
            if let Err(e) = sync_mlflow(reg, &target) {
                eprintln!(
                    "warning: MLflow not updated ({e}); `tidemark models --registry {} sync` retries",
                    reg.dir().display()
                );
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("warning: {e}"),
    }
}

fn cmd_inspect(dir: &std::path::Path) -> Result<(), String> {
    use tidemark::replay::manifest::Manifest;
    use tidemark::replay::segment::BufferStream;
    let m = Manifest::load(dir)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "{}: no MANIFEST.json (not a replay buffer, or nothing committed yet)",
                dir.display()
            )
        })?;
    println!("buffer     {}", dir.display());
    println!(
        "job        {} (fingerprint {})",
        m.job,
        &m.fingerprint[..16.min(m.fingerprint.len())]
    );
    let committed = if m.committed == u64::MAX {
        "end of input".to_string()
    } else {
        format!("{} ({})", m.committed, iso_time(m.committed))
    };
    println!(
        "committed  {committed}{}",
        if m.complete { ", complete" } else { "" }
    );
    println!("segments   {} of {} ms", m.segments.len(), m.segment_ms);
    println!();
    println!(
        "{:<13} {:>8} {:>10} {:>12}  ts range",
        "stream", "segments", "rows", "bytes"
    );
    for stream in BufferStream::ALL {
        let segs: Vec<_> = m.segments_of(stream).collect();
        let rows: u64 = segs.iter().map(|s| s.rows).sum();
        let bytes: u64 = segs.iter().map(|s| s.bytes).sum();
        let range = match (segs.first(), segs.last()) {
            (Some(a), Some(b)) => format!(
                "{} .. {}",
                iso_time(a.ts_start),
                iso_time(b.ts_end.min(u64::MAX / 2))
            ),
            _ => "-".into(),
        };
        println!(
            "{:<13} {:>8} {:>10} {:>12}  {range}",
            stream.name(),
            segs.len(),
            rows,
            bytes
        );
    }
    for (stream, c) in &m.base {
        println!(
            "(removed by retention: {stream} {} accepted, {} dead-lettered)",
            c.accepted, c.dead_lettered
        );
    }
    println!();
    println!("partitions (resume points):");
    for (key, p) in &m.partitions {
        println!(
            "  {key}: offset {}{}, watermark {}",
            p.cursor.offset,
            if p.done { " (done)" } else { "" },
            p.max_seen.map(iso_time).unwrap_or_else(|| "-".into())
        );
    }
    let mut bad = 0;
    for s in &m.segments {
        if let Err(e) = tidemark::replay::segment::verify_segment(dir, s) {
            println!("BAD {e}");
            bad += 1;
        }
    }
    let mut bad_states = 0;
    for st in &m.states {
        if let Err(e) = tidemark::replay::read_state(dir, st) {
            println!("BAD {e}");
            bad_states += 1;
        }
    }
    if bad + bad_states > 0 {
        return Err(format!(
            "{bad} of {} segments and {bad_states} of {} state snapshots failed verification",
            m.segments.len(),
            m.states.len()
        ));
    }
    println!();
    println!("all {} segment checksums verified", m.segments.len());
    println!("all {} state snapshots verified", m.states.len());
    Ok(())
}

/// Prints a finished run's summary (if wanted) and fails it when a stream accepted nothing.
fn report_run(job: &Job, summary: Option<RunSummary>, print: bool) -> Result<(), String> {
    if let Some(s) = summary {
        if print {
            print_summary(&s);
        }
        let refused: Vec<String> = s.all_refused(job).iter().map(|e| e.to_string()).collect();
        if !refused.is_empty() {
            return Err(refused.join("\n"));
        }
    }
    Ok(())
}

/// What became of accepted labels that joined no live window: too late, or orphaned.
fn print_label_fates(s: &RunSummary) {
    let Some(r) = s.ingest.iter().find(|r| r.stream == "labels") else {
        return;
    };
    if r.too_late > 0 {
        println!(
            "labels: {} of {} accepted ({:.2} %) arrived after every window of their event had retired \
             (in label_health's late_labels, not in quality); time.retention_ms = {} would have kept them \
             (it is {})",
            r.too_late,
            r.accepted,
            100.0 * r.too_late as f64 / r.accepted.max(1) as f64,
            r.retention_to_hold_ms.unwrap_or(0).max(s.retention_ms),
            s.retention_ms
        );
    }
    if r.orphaned > 0 {
        println!(
            "labels: {} orphaned: no event with their id was seen by max(arrival, label time + label_horizon)",
            r.orphaned
        );
    }
}

fn print_summary(s: &RunSummary) {
    let secs = s.elapsed.as_secs_f64();
    println!(
        "tidemark: done in {secs:.2} s on {} worker(s), {:.0} records/s read",
        s.workers,
        s.records_read as f64 / secs.max(1e-9)
    );
    if let Some(t) = s.resumed_from {
        println!(
            "resumed an interrupted run from its replay buffer, committed up to {} ({t})",
            iso_time(t)
        );
    }
    println!(
        "replay buffer: {} commits, in {}",
        s.commits,
        tidemark::replay::buffer_dir(&s.out_dir).display()
    );
    if s.folded > 0 {
        println!(
            "cardinality caps ([limits]) folded {} pane updates of values beyond them into __other__",
            s.folded
        );
    }
    println!();
    println!(
        "{:<12} {:>10} {:>10} {:>14} {:>11}  reconciles",
        "stream", "read", "accepted", "dead-lettered", "duplicates"
    );
    for stream in tidemark::schema::Stream::ALL {
        let Some(r) = s.ingest.iter().find(|r| r.stream == stream.name()) else {
            println!(
                "{:<12} {:>10} {:>10} {:>14} {:>11}  (read nothing)",
                stream, 0, 0, 0, 0
            );
            continue;
        };
        let ok = if r.read == r.accepted + r.dead_lettered {
            "yes"
        } else {
            "NO"
        };
        println!(
            "{:<12} {:>10} {:>10} {:>14} {:>11}  {ok}",
            r.stream, r.read, r.accepted, r.dead_lettered, r.duplicates
        );
    }
    print_label_fates(s);
    let finals: Vec<_> = s
        .quality
        .iter()
        .filter(|q| q.key.segment == "all" && q.key.win.family == 0)
        .collect();
    if !finals.is_empty() {
        println!();
        println!("quality, overall, first window family (last 8 windows):");
        println!(
            "{:<22} {:<12} {:>7} {:>9} {:>9} {:>7} {:>7}  status",
            "window start", "model", "count", "accuracy", "log_loss", "brier", "auc"
        );
        let starts: std::collections::BTreeSet<u64> =
            finals.iter().map(|q| q.key.win.start).collect();
        let from = starts.iter().rev().nth(7).copied().unwrap_or(0);
        for q in finals.iter().filter(|q| q.key.win.start >= from) {
            let a = &q.agg;
            let n = a.count.max(1) as f64;
            let auc = q.exact.and_then(|e| e.auc()).or_else(|| a.binned_auc());
            println!(
                "{:<22} {:<12} {:>7} {:>9.4} {:>9.4} {:>7.4} {:>7}  {}",
                iso_time(q.key.win.start),
                q.key.model,
                a.count,
                a.correct as f64 / n,
                a.logloss_nano as f64 / 1e9 / n,
                a.brier_nano as f64 / 1e9 / n,
                auc.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into()),
                q.status.name()
            );
        }
    }
    let labels: Vec<_> = s
        .labels
        .iter()
        .filter(|l| l.key.segment == "all" && l.key.win.family == 0)
        .collect();
    if !labels.is_empty() {
        println!();
        println!("labels, overall, first window family (last 8 windows):");
        println!(
            "{:<22} {:>7} {:>9} {:>10} {:>8} {:>10} {:>10}  status",
            "window start", "events", "labeled%", "unlabeled", "orphans", "p50 ms", "p95 ms"
        );
        for l in labels.iter().rev().take(8).rev() {
            let a = &l.agg;
            let p = a.percentiles();
            println!(
                "{:<22} {:>7} {:>8.1}% {:>10} {:>8} {:>10} {:>10}  {}",
                iso_time(l.key.win.start),
                a.events,
                100.0 * a.within_horizon as f64 / a.events.max(1) as f64,
                if l.status.name() == "provisional" {
                    "-".to_string()
                } else {
                    (a.events - a.within_horizon).to_string()
                },
                a.orphans,
                p.map(|p| p.p50.to_string()).unwrap_or_else(|| "-".into()),
                p.map(|p| p.p95.to_string()).unwrap_or_else(|| "-".into()),
                l.status.name()
            );
        }
    }
    let alerts: Vec<_> = s
        .drift_alerts
        .iter()
        .filter(|a| a.4 == "retired" || a.4 == "final")
        .collect();
    if !alerts.is_empty() {
        // Per feature and rule: how many windows fired, and the first one.
        let mut by: std::collections::BTreeMap<(&str, &str, &str), (usize, u64)> =
            Default::default();
        for (start, feature, stat, sev, _) in &alerts {
            let e = by.entry((feature, stat, sev)).or_insert((0, u64::MAX));
            e.0 += 1;
            e.1 = e.1.min(*start);
        }
        println!();
        println!("drift alerts in final windows (all window families):");
        println!(
            "{:<14} {:<14} {:<8} {:>8}  first window",
            "feature", "statistic", "severity", "windows"
        );
        for ((feature, stat, sev), (n, first)) in by {
            println!(
                "{feature:<14} {stat:<14} {sev:<8} {n:>8}  {}",
                iso_time(first)
            );
        }
    }
    if !s.decisions.is_empty() {
        use tidemark::learn::learner::Action;
        let count = |a: Action| s.decisions.iter().filter(|d| d.action == a).count();
        println!();
        println!(
            "online model: {} promoted, {} blocked, {} rolled back, {} paused, {} rate changes; champion {}",
            count(Action::Promote),
            count(Action::Block),
            count(Action::Rollback),
            count(Action::Pause),
            count(Action::RateBoost) + count(Action::RateReset),
            s.decisions
                .last()
                .and_then(|d| d.champion.clone())
                .unwrap_or_else(|| "none".into())
        );
        for d in s
            .decisions
            .iter()
            .filter(|d| {
                !matches!(
                    d.action,
                    Action::Promote | Action::RateBoost | Action::RateReset
                )
            })
            .take(8)
        {
            println!(
                "  #{:<4} {:<13} {:<8} {}",
                d.seq,
                d.action.name(),
                d.version.as_deref().unwrap_or("-"),
                d.reason
            );
        }
    }
    if let Some(a) = &s.alertmanager {
        println!();
        println!(
            "Alertmanager {}: {} alerts posted, {} firing at the end{}",
            a.url,
            a.posted,
            a.firing,
            match (&a.last_error, a.failures) {
                (Some(e), n) => format!("; {n} failed posts, the last undelivered: {e}"),
                (None, 0) => String::new(),
                (None, n) => format!("; {n} failed posts were retried"),
            }
        );
    }
    if let Some(m) = &s.mlflow {
        println!();
        let aliases: Vec<String> = m
            .aliases
            .iter()
            .map(|(a, v)| format!("{a} {}", v.as_deref().unwrap_or("none")))
            .collect();
        let aliases = if aliases.is_empty() {
            "aliases not set yet".to_string()
        } else {
            format!("{} ({} alias changes)", aliases.join(", "), m.moved.len())
        };
        println!(
            "MLflow: {} versions published to {}; {aliases}",
            m.created.len(),
            m.target,
        );
        if m.backlog == 0 && m.failures > 0 {
            println!(
                "  {} failed attempts were retried; MLflow is up to date",
                m.failures
            );
        }
        if m.backlog > 0 {
            println!(
                "  {} versions and aliases are not in MLflow yet ({} failed attempts; last: {}). \
                 The next start or `tidemark models sync` publishes them.",
                m.backlog,
                m.failures,
                m.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    if !s.detections.is_empty() {
        println!();
        println!("concept-drift detections (first 12):");
        for (t, model, detector, position) in s.detections.iter().take(12) {
            println!(
                "{:<22} {model:<12} {detector:<13} example {position}",
                iso_time(*t)
            );
        }
    }
    println!();
    let peak = s.state_samples.iter().map(|x| x.1).max().unwrap_or(0);
    println!("state: peak {peak} records in arrangements and batchers");
    let lines: Vec<String> = s.lines.iter().map(|(n, c)| format!("{n} {c}")).collect();
    println!(
        "changelog lines: {}; outputs in {}",
        lines.join(", "),
        s.out_dir.display()
    );
}
