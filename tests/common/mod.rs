//! Helpers shared by the integration tests: write inputs and jobs, run, read changelogs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use tidemark::config::Job;
use tidemark::runtime::{run, RunOptions, RunSummary};

/// The repository's schema directory.
pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// Time parameters for a file job.
pub struct Times {
    pub tick: u64,
    pub disorder: u64,
    pub max_lateness: u64,
    pub horizon: u64,
    pub retention: u64,
}

impl Default for Times {
    fn default() -> Self {
        Times {
            tick: 1000,
            disorder: 2000,
            max_lateness: 60_000,
            horizon: 120_000,
            retention: 600_000,
        }
    }
}

impl Times {
    /// Short windows of time: a 30 s horizon and a 60 s retention, so that a few minutes of
    /// input span many state horizons.
    #[allow(dead_code)]
    pub fn short() -> Self {
        Times {
            tick: 1000,
            disorder: 2000,
            max_lateness: 20_000,
            horizon: 30_000,
            retention: 60_000,
        }
    }
}

/// The schema directory and `[time]` table of a test job.
fn head(times: &Times) -> String {
    format!(
        "schemas_dir = \"{}\"\n[time]\ntick_ms = {}\nallowed_disorder_ms = {}\nidle_timeout_ms = 10000\nmax_lateness_ms = {}\nlabel_horizon_ms = {}\nretention_ms = {}",
        schemas_dir().display(),
        times.tick,
        times.disorder,
        times.max_lateness,
        times.horizon,
        times.retention
    )
}

/// Writes a job over `events.jsonl`, `predictions.jsonl`, `labels.jsonl` in `dir`.
pub fn file_job(dir: &Path, times: &Times, windows: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "test"
{head}
[sources.events]
schema = "events.v1"
kind = "jsonl"
path = "events.jsonl"
[sources.predictions]
schema = "predictions.v1"
kind = "jsonl"
path = "predictions.jsonl"
[sources.labels]
schema = "labels.v1"
kind = "jsonl"
path = "labels.jsonl"
{windows}
[outputs]
dir = "{out}"
formats = ["jsonl", "parquet"]
summary = false
{extra}
"#,
        head = head(times),
        out = dir.join("out").display(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a job whose three sources are the built-in generator.
pub fn generator_job(dir: &Path, times: &Times, generator: &str, rest: &str) -> PathBuf {
    let text = format!(
        r#"name = "gen"
{head}
[sources.events]
schema = "events.v1"
kind = "generator"
[sources.predictions]
schema = "predictions.v1"
kind = "generator"
[sources.labels]
schema = "labels.v1"
kind = "generator"
[generator]
{generator}
{rest}
"#,
        head = head(times),
    );
    let path = dir.join("gen.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes lines to `dir/name` (no lines: an empty file).
pub fn write_lines(dir: &Path, name: &str, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(dir.join(name), text).unwrap();
}

/// An event line in events.v1.
pub fn event(id: &str, entity: &str, t: u64, amount: f64, country: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","entity":"{entity}","event_time":{t},"amount":{amount},"age_days":10,"velocity":1,"score_ext":0.5,"country":"{country}","device":"ios"}}"#
    )
}

/// A prediction line in predictions.v1.
pub fn prediction(id: &str, score: f64, t: u64) -> String {
    format!(r#"{{"event_id":"{id}","model_version":"m1","score":{score},"prediction_time":{t}}}"#)
}

/// A label line in labels.v1.
pub fn label(id: &str, label: u8, t: u64) -> String {
    format!(r#"{{"event_id":"{id}","label":{label},"label_time":{t}}}"#)
}

/// Runs a job file on `workers` threads with outputs in `out`.
pub fn run_job(job: &Path, workers: usize, out: &Path) -> RunSummary {
    let job = Job::load(job).unwrap_or_else(|e| panic!("job invalid: {e}"));
    let opts = RunOptions {
        workers,
        out_dir: Some(out.to_path_buf()),
        ..Default::default()
    };
    run(job, &opts)
        .expect("run succeeds")
        .expect("worker 0 summary")
}

/// Reads a JSONL changelog.
pub fn changelog(out: &Path, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join(format!("{name}.jsonl"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The last value of every window row (the retired tombstones), keyed by the given columns.
pub fn retired(rows: &[Value], key: &[&str]) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for r in rows {
        if r["status"] == "retired" && r["diff"] == 1 {
            let k: Vec<String> = key.iter().map(|c| r[*c].to_string()).collect();
            assert!(
                out.insert(k.join("|"), r.clone()).is_none(),
                "one retirement per key: {r}"
            );
        }
    }
    out
}

/// Every file under `dir` (recursively, not hidden), as (relative path, bytes).
#[allow(dead_code)]
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Asserts that two output directories hold byte-identical outputs and replay segments (the
/// manifest's commit history and the lock file are left out; detector state snapshots exist
/// only at the commits a run happened to make, so those both runs have must be equal); returns
/// how many files matched.
#[allow(dead_code)]
pub fn assert_same_outputs(a: &Path, b: &Path, what: &str) -> usize {
    let states = |dir: &Path| -> std::collections::BTreeMap<String, Vec<u8>> {
        tree(dir)
            .into_iter()
            .filter(|(n, _)| n.contains("replay/state/"))
            .collect()
    };
    let sb = states(b);
    for (name, x) in states(a) {
        if let Some(y) = sb.get(&name) {
            assert!(&x == y, "{name} differs {what}");
        }
    }
    let keep = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        tree(dir)
            .into_iter()
            .filter(|(n, _)| {
                !n.contains("MANIFEST")
                    && !n.ends_with("LOCK")
                    // Operational metrics (wall-clock latencies and lags), not a result.
                    && !n.ends_with("metrics.prom")
                    && !n.contains("replay/state/")
            })
            .collect()
    };
    let (fa, fb) = (keep(a), keep(b));
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        if x != y && name.ends_with(".jsonl") {
            // The first line that differs says what.
            let (a, b) = (String::from_utf8_lossy(x), String::from_utf8_lossy(y));
            let line = a.lines().zip(b.lines()).find(|(l, m)| l != m);
            panic!("{name} differs {what}: first differing lines {line:#?}");
        }
        assert!(x == y, "{name} differs {what}");
    }
    fa.len()
}

/// `tidemark run JOB --out OUT --no-progress`, stdout discarded, stderr captured.
pub fn tidemark_run(job: &Path, out: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"));
    c.arg("run")
        .arg(job)
        .arg("--out")
        .arg(out)
        .arg("--no-progress")
        .args(["--metrics", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    c
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for every child to succeed, killing all of them if any takes longer than `limit`.
pub fn wait_all(children: Vec<std::process::Child>, limit: std::time::Duration) {
    if let Err(e) = finish_all(children, limit) {
        panic!("{e}");
    }
}

/// Waits for every child to finish (killing all of them if any takes longer than `limit`):
/// the standard error of one that failed, if any did.
pub fn finish_all(
    mut children: Vec<std::process::Child>,
    limit: std::time::Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut running = false;
        for c in children.iter_mut() {
            running |= c.try_wait().unwrap().is_none();
        }
        if !running {
            break;
        }
        if std::time::Instant::now() > deadline {
            for c in children.iter_mut() {
                let _ = c.kill();
            }
            panic!("the processes did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut failed = Ok(());
    for c in children {
        let out = c.wait_with_output().unwrap();
        if !out.status.success() && failed.is_ok() {
            failed = Err(format!(
                "a process failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    failed
}

/// The demo job with `events` events, its outputs (and registry) under `dir/out`.
pub fn demo_job(dir: &Path, events: u64) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("dataflows/demo.toml"))
        .unwrap()
        .replace("events = 60000", &format!("events = {events}"))
        .replace(
            "name = \"demo\"",
            &format!(
                "name = \"demo\"\nschemas_dir = \"{}\"",
                root.join("schemas").display()
            ),
        )
        .replace(
            "dir = \"out/demo\"",
            &format!("dir = \"{}\"", dir.join("out").display()),
        )
        .replace(
            "registry = \"out/demo/registry\"",
            &format!("registry = \"{}\"", dir.join("out/registry").display()),
        );
    let path = dir.join("demo.toml");
    std::fs::write(&path, text).unwrap();
    path
}
