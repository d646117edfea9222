//! The online learner on the generator's drift workload: prequential accuracy and log-loss,
//! overall and per drift phase, and the learning stage's examples/s.
//!
//! `cargo bench --bench learn`; figures go to BENCHMARKS.md ("Online learning"). Under
//! `cargo test --all-targets` it only checks one small round, so the suite never depends on
//! timing. Environment:
//!
//! - `TIDEMARK_BENCH_EVENTS`: events to generate (1M);
//! - `TIDEMARK_LEARN_ONLY=default,pure,demo`: which learner configurations to run (all);
//! - `TIDEMARK_LEARN_REPEAT`: the timing is the best of this many runs (3);
//! - `TIDEMARK_LEARN_SPEC`: also run this `[learn]` table (TOML text), e.g.
//!   `on_drift = { action = "reset" }`;
//! - `TIDEMARK_LEARN_EXPORT=path.csv`: write the ordered examples, the reference probabilities
//!   and the learner's prequential scores, for `benches/river_compare.py`.
//!
//! The stream is the one `tidemark generate --events N --format parquet` writes (the generator's
//! defaults: seed 42, 100 events/s, data drift at 30 %, abrupt concept change at 50 %, gradual
//! change over 70–90 %). Records the generator breaks on purpose are dropped (the dataflow
//! dead-letters them). Events are joined with their labels in memory, as the dataflow does: an
//! event becomes an example at the timestamp of its first label (label time floored to the demo
//! job's tick, then rounded up to its emit interval, as sources stamp records and the dataflow
//! delays them; watermark lateness is ignored), and learns the label it has then. A later
//! correction does not teach the model again, but every prediction is scored against the event's
//! final label, as the quality output does. Examples are fed to `Learner::step` per timestamp,
//! sorted by event id, and only the `step` calls are timed. Drift phases are by event time, from
//! the generator's drift points (`metadata.json`).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tidemark::config::Job;
use tidemark::generator::{
    concept_inputs, concept_logit, GeneratorParams, GeneratorStream, Metadata, CATEGORICAL, NUMERIC,
};
use tidemark::learn::learner::{Action, Example, Learner, Out};
use tidemark::learn::model::sigmoid;
use tidemark::learn::spec::LearnSpec;
use tidemark::records::{from_micro, to_micro, Event};
use tidemark::schema::Stream;

const PHASES: [&str; 5] = [
    "concept 0",
    "concept 0, data drift",
    "concept 1 (abrupt)",
    "concept 1 -> 2 (gradual)",
    "concept 2",
];

/// One example with what the metrics need besides it.
struct Row {
    ts: u64,
    example: Example,
    /// The event's final (corrected) label.
    truth: u8,
    phase: usize,
    /// The production model's score (`prod-v1`, the concept-0 model), if its prediction exists.
    prod: Option<f64>,
    /// Bayes-optimal probability: the generator's true concept mix at this event.
    oracle: f64,
}

/// Accuracy and log-loss sums, overall and per phase.
#[derive(Clone, Default)]
struct Metrics {
    n: [u64; 6],
    correct: [u64; 6],
    loss: [f64; 6],
}

impl Metrics {
    fn add(&mut self, phase: usize, p: f64, y: u8) {
        let q = p.clamp(1e-15, 1.0 - 1e-15);
        let loss = if y == 1 { -q.ln() } else { -(1.0 - q).ln() };
        let ok = ((p >= 0.5) as u8 == y) as u64;
        for k in [0, phase + 1] {
            self.n[k] += 1;
            self.correct[k] += ok;
            self.loss[k] += loss;
        }
    }

    fn print(&self, name: &str) {
        let cell = |k: usize| {
            if self.n[k] == 0 {
                format!("{:>17}", "-")
            } else {
                let n = self.n[k] as f64;
                format!(
                    "{:>8.4} {:>8.4}",
                    self.correct[k] as f64 / n,
                    self.loss[k] / n
                )
            }
        };
        println!(
            "  {name:<44}{}",
            (0..6).map(cell).collect::<Vec<_>>().join(" |")
        );
    }
}

fn header() {
    let mut cols = vec!["overall".to_string()];
    cols.extend(PHASES.iter().map(|p| p.to_string()));
    println!(
        "  {:<44}{}",
        "accuracy / log-loss",
        cols.iter()
            .map(|c| format!("{:>17}", &c[..c.len().min(17)]))
            .collect::<Vec<_>>()
            .join(" |")
    );
}

/// The generator's stream as ordered examples, with phase boundaries' counts.
fn example_stream(params: &GeneratorParams, emit: u64, tick: u64) -> (Vec<Row>, [u64; 5]) {
    let meta = Metadata::new(params);
    let dp = |kind: &str| {
        meta.drift_points
            .iter()
            .find(|d| d.kind == kind)
            .expect("the generator describes its drift points")
            .clone()
    };
    let (data, abrupt, gradual) = (dp("data"), dp("concept_abrupt"), dp("concept_gradual"));
    let bounds = [
        data.start_time_ms,
        abrupt.start_time_ms,
        gradual.start_time_ms,
        gradual.end_time_ms,
    ];
    let phase_of = |t: u64| bounds.iter().take_while(|b| t >= **b).count();
    let (g0, g1) = (gradual.start_index, gradual.end_index);

    let index = |id: &str| -> u64 { id[2..].parse().expect("generator ids are ev<index>") };
    // Labels per event: (label time, value), malformed ones dropped.
    let mut labels: HashMap<u64, Vec<(u64, u8)>> = HashMap::new();
    for r in GeneratorStream::new(params.clone(), Stream::Labels, true) {
        if r.malformed.is_some() {
            continue;
        }
        let id = r.id.as_deref().expect("well-formed labels have ids");
        let v = r.numbers[0].expect("well-formed labels have values") as u8;
        labels
            .entry(index(id))
            .or_default()
            .push((r.time_ms() as u64, v));
    }
    let mut prod: HashMap<u64, f64> = HashMap::new();
    for r in GeneratorStream::new(params.clone(), Stream::Predictions, true) {
        if r.malformed.is_none() {
            let id = r.id.as_deref().expect("well-formed predictions have ids");
            prod.insert(index(id), r.numbers[0].expect("score"));
        }
    }
    let stamp = |t: u64| (t - t % tick).div_ceil(emit) * emit;
    let mut rows = Vec::with_capacity(labels.len());
    let mut counts = [0u64; 5];
    for r in GeneratorStream::new(params.clone(), Stream::Events, true) {
        if r.malformed.is_some() {
            continue;
        }
        let id = r.id.clone().expect("well-formed events have ids");
        let i = index(&id);
        let Some(ls) = labels.get_mut(&i) else {
            continue;
        };
        ls.sort_unstable();
        let event_time = r.time_ms() as u64;
        let first_ts = stamp(ls[0].0);
        // The label state when the event first has one: the latest label of that timestamp.
        let learned = ls
            .iter()
            .rev()
            .find(|(t, _)| stamp(*t) == first_ts)
            .expect("the first label")
            .1;
        let truth = ls[ls.len() - 1].1;
        let x = concept_inputs(&r.numbers, &r.cats);
        let q = if i >= g1 {
            1.0
        } else if i >= g0 {
            (i - g0) as f64 / (g1 - g0).max(1) as f64
        } else {
            0.0
        };
        let c = if i >= abrupt.start_index { 1 } else { 0 };
        let oracle = (1.0 - q) * sigmoid(concept_logit(c, &x)) + q * sigmoid(concept_logit(2, &x));
        let phase = phase_of(event_time);
        counts[phase] += 1;
        rows.push(Row {
            ts: first_ts.max(stamp(event_time)),
            example: Example {
                event: Arc::new(Event {
                    id: id.into(),
                    entity: r.entity.as_str().into(),
                    time: event_time,
                    numeric: r.numbers.iter().map(|v| v.map(to_micro)).collect(),
                    categorical: r.cats.iter().map(|v| v.map(Into::into)).collect(),
                    segments: Default::default(),
                }),
                label: learned,
            },
            truth,
            phase,
            prod: prod.get(&i).copied(),
            oracle,
        });
    }
    rows.sort_by(|a, b| (a.ts, &a.example.event.id).cmp(&(b.ts, &b.example.event.id)));
    (rows, counts)
}

/// What one learner run produced.
struct Run {
    scores: Vec<i64>,
    step_secs: f64,
    learned: u64,
    decisions: std::collections::BTreeMap<&'static str, u64>,
    quarantined: u64,
    /// Reasons of blocked versions (numbers left out), counted.
    blocked: std::collections::BTreeMap<String, u64>,
    /// Timestamps of rollbacks, pauses and failed updates, and of the last promotion.
    stops: Vec<(u64, &'static str)>,
    /// The largest of the learner's state snapshots (JSON, every tenth timestamp), and the time
    /// it took to serialize.
    snapshot_bytes: usize,
    snapshot_secs: f64,
}

fn run(
    job: &Job,
    spec: LearnSpec,
    rows: &[Row],
    examples: &[Example],
    groups: &[(usize, usize)],
    snapshot_every: usize,
) -> Run {
    let learn = tidemark::learn::resolve(job, &spec).expect("the learn spec resolves");
    let t = &job.spec.time;
    let ttl = t.retention_ms + job.max_window_ms() + t.tick_ms;
    let mut learner = Learner::new(
        learn.spec,
        learn.features,
        &job.spec.name,
        &job.fingerprint(),
        job.spec.metrics.threshold,
        ttl,
        None,
    );
    let mut scores = Vec::with_capacity(examples.len());
    let mut decisions = std::collections::BTreeMap::new();
    let mut quarantined = 0;
    let mut out = Vec::new();
    let mut step_secs = 0.0;
    let (mut snapshot_bytes, mut snapshot_secs) = (0, 0.0);
    let mut stops = Vec::new();
    let mut blocked = std::collections::BTreeMap::new();
    let mut last_promote = None;
    for (g, &(a, b)) in groups.iter().enumerate() {
        let start = Instant::now();
        learner.step(rows[a].ts, &examples[a..b], &mut out);
        step_secs += start.elapsed().as_secs_f64();
        let mut k = a;
        for o in out.drain(..) {
            match o {
                Out::Score(e, s) => {
                    assert_eq!(e.id, examples[k].event.id, "scores come in example order");
                    scores.push(s);
                    k += 1;
                }
                Out::Decision(d) => {
                    *decisions.entry(d.action.name()).or_insert(0) += 1;
                    if d.action == Action::Block {
                        // Why versions are blocked, numbers left out.
                        let kind: String = d
                            .reason
                            .chars()
                            .filter(|c| !c.is_ascii_digit() && *c != '.')
                            .collect();
                        *blocked.entry(kind).or_insert(0) += 1;
                    }
                    if matches!(
                        d.action,
                        Action::Rollback | Action::Pause | Action::UpdateFailed
                    ) {
                        stops.push((rows[a].ts, d.action.name()));
                    }
                    if d.action == Action::Promote {
                        last_promote = Some(rows[a].ts);
                    }
                }
                Out::Quarantine(_) => quarantined += 1,
                Out::Version(..) => {}
            }
        }
        assert_eq!(k, b, "every example is scored");
        // What the dataflow snapshots at every replay-buffer segment boundary (not timed).
        if snapshot_every > 0 && (g % snapshot_every == 0 || g + 1 == groups.len()) {
            let start = Instant::now();
            let snapshot = serde_json::to_vec(&learner.state).expect("learner state serializes");
            let secs = start.elapsed().as_secs_f64();
            if snapshot.len() > snapshot_bytes {
                (snapshot_bytes, snapshot_secs) = (snapshot.len(), secs);
            }
        }
    }
    if let Some(ts) = last_promote {
        stops.push((ts, "last promotion"));
    }
    Run {
        blocked,
        stops,
        snapshot_bytes,
        snapshot_secs,
        scores,
        step_secs,
        learned: learner.online().examples,
        decisions,
        quarantined,
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n: u64 = match std::env::var("TIDEMARK_BENCH_EVENTS") {
        Ok(v) => v.parse().expect("TIDEMARK_BENCH_EVENTS is a number"),
        Err(_) if measuring => 1_000_000,
        Err(_) => 3_000,
    };
    let repeat: usize = match std::env::var("TIDEMARK_LEARN_REPEAT") {
        Ok(v) => v.parse().expect("TIDEMARK_LEARN_REPEAT is a number"),
        Err(_) if measuring => 3,
        Err(_) => 1,
    };
    let only: Option<Vec<String>> = std::env::var("TIDEMARK_LEARN_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let job = Job::load(&root.join("dataflows/demo.toml")).expect("the demo job loads");
    let emit = job.spec.outputs.emit_interval(job.spec.time.tick_ms);
    // `tidemark generate --out DIR --events N --format parquet`.
    let params = GeneratorParams {
        events: n,
        ..Default::default()
    };

    let start = Instant::now();
    let (rows, counts) = example_stream(&params, emit, job.spec.time.tick_ms);
    let prep = start.elapsed().as_secs_f64();
    let examples: Vec<Example> = rows.iter().map(|r| r.example.clone()).collect();
    let mut groups = Vec::new();
    let mut a = 0;
    while a < rows.len() {
        let b = a + rows[a..].iter().take_while(|r| r.ts == rows[a].ts).count();
        groups.push((a, b));
        a = b;
    }
    let relabeled = rows.iter().filter(|r| r.example.label != r.truth).count();
    if measuring {
        println!(
            "{n} events (seed {}, {} events/s): {} examples at {} timestamps (emit interval {} s), \
             {relabeled} learned with a label corrected later; generated and joined in {prep:.1} s",
            params.seed,
            params.rate_per_s,
            rows.len(),
            groups.len(),
            emit / 1000
        );
        println!(
            "  examples per phase: {}",
            PHASES
                .iter()
                .zip(counts)
                .map(|(p, c)| format!("{p}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let default: LearnSpec = toml::from_str("").expect("defaults");
    let pure = LearnSpec {
        publish_every: u64::MAX,
        ..default.clone()
    };
    let demo = job
        .spec
        .learn
        .clone()
        .expect("the demo job has a [learn] section");
    let mut configs = vec![
        (
            "default",
            "defaults (publish every 2000)".to_string(),
            default,
        ),
        ("pure", "defaults, publish_every = inf".to_string(), pure),
        ("demo", "demo.toml [learn]".to_string(), demo),
    ];
    // Any other `[learn]` section, as TOML text, e.g. `on_drift = { action = "reset" }`.
    if let Ok(text) = std::env::var("TIDEMARK_LEARN_SPEC") {
        let spec: LearnSpec =
            toml::from_str(&text).expect("TIDEMARK_LEARN_SPEC is a [learn] table");
        configs.push(("custom", text.replace('\n', "; "), spec));
    }

    let mut metrics = Vec::new();
    let mut runs: Vec<(&str, Run)> = Vec::new();
    for (key, name, spec) in configs {
        if only.as_ref().is_some_and(|o| !o.iter().any(|k| k == key)) {
            continue;
        }
        // Best of `repeat` runs, so a busy machine does not inflate the figure; every run must
        // produce the same scores (the learner is deterministic).
        let mut r = run(&job, spec.clone(), &rows, &examples, &groups, 10);
        for _ in 1..repeat {
            let again = run(&job, spec.clone(), &rows, &examples, &groups, 0);
            assert_eq!(again.scores, r.scores, "the learner is deterministic");
            r.step_secs = r.step_secs.min(again.step_secs);
        }
        let mut m = Metrics::default();
        for (row, s) in rows.iter().zip(&r.scores) {
            m.add(row.phase, from_micro(*s), row.truth);
        }
        if measuring {
            println!(
                "tidemark learner, {name}: {:.0} examples/s in Learner::step (best of {repeat}: {:.3} s for {} examples, {} learned, {} quarantined){}",
                rows.len() as f64 / r.step_secs,
                r.step_secs,
                rows.len(),
                r.learned,
                r.quarantined,
                if r.decisions.is_empty() {
                    String::new()
                } else {
                    format!(", decisions {:?}", r.decisions)
                }
            );
        }
        if measuring {
            let mut blocked: Vec<_> = r.blocked.iter().collect();
            blocked.sort_by(|a, b| b.1.cmp(a.1));
            for (reason, k) in blocked.iter().take(3) {
                println!("  blocked {k}x: {reason}");
            }
            for (ts, what) in &r.stops {
                println!(
                    "  {what} at timestamp {:.1} min into the stream (the abrupt change is at {:.1} min)",
                    ts.saturating_sub(params.start_ms) as f64 / 60_000.0,
                    (params.nominal_time((n as f64 * params.abrupt_drift_at).round() as u64)
                        - params.start_ms) as f64
                        / 60_000.0
                );
            }
            println!(
                "  largest state snapshot (serde_json, every 10th timestamp): {:.1} MiB in {:.1} ms",
                r.snapshot_bytes as f64 / (1 << 20) as f64,
                r.snapshot_secs * 1e3
            );
        }
        metrics.push((name, m));
        runs.push((key, r));
    }
    // Publishing copies and checksums the model; it must not change what the online model does.
    if let (Some((_, a)), Some((_, b))) = (
        runs.iter().find(|(k, _)| *k == "default"),
        runs.iter().find(|(k, _)| *k == "pure"),
    ) {
        assert_eq!(
            a.scores, b.scores,
            "publishing does not change the online model"
        );
    }
    let mut prod = Metrics::default();
    let mut oracle = Metrics::default();
    for row in &rows {
        if let Some(p) = row.prod {
            prod.add(row.phase, p, row.truth);
        }
        oracle.add(row.phase, row.oracle, row.truth);
    }
    if measuring {
        header();
        for (name, m) in &metrics {
            m.print(&format!("tidemark, {name}"));
        }
        prod.print("production model (prod-v1 score)");
        oracle.print("oracle (true concept probability)");
    }
    for (_, m) in &metrics {
        assert_eq!(m.n[0], rows.len() as u64);
    }

    if let Ok(path) = std::env::var("TIDEMARK_LEARN_EXPORT") {
        let scores = runs
            .iter()
            .find(|(k, _)| *k == "pure" || *k == "default")
            .map(|(_, r)| &r.scores);
        let f = std::fs::File::create(&path).expect("export file");
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut head = vec!["ts", "event_id", "event_time", "phase"];
        head.extend(NUMERIC);
        head.extend(CATEGORICAL);
        head.extend(["label", "truth", "prod", "oracle", "tidemark"]);
        writeln!(w, "{}", head.join(",")).expect("write");
        for (k, row) in rows.iter().enumerate() {
            let (e, label) = (&row.example.event, row.example.label);
            let mut line = format!("{},{},{},{}", row.ts, e.id, e.time, row.phase);
            for v in &e.numeric {
                line.push(',');
                if let Some(v) = v {
                    line.push_str(&from_micro(*v).to_string());
                }
            }
            for v in &e.categorical {
                line.push(',');
                line.push_str(v.as_deref().unwrap_or(""));
            }
            let opt = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
            line.push_str(&format!(
                ",{},{},{},{},{}",
                label,
                row.truth,
                opt(row.prod),
                row.oracle,
                opt(scores.map(|s| from_micro(s[k])))
            ));
            writeln!(w, "{line}").expect("write");
        }
        w.flush().expect("write");
        if measuring {
            println!("wrote {} examples to {path}", rows.len());
        }
    }
}
