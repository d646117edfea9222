//! Memory stays bounded: on a long generated stream with short retention, the records held in
//! differential state (arrangements and batchers) stop growing after warm-up.

mod common;

use common::*;

fn run(events: u64) -> Vec<(u64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"name = "bounded"
schemas_dir = "{schemas}"
[time]
tick_ms = 1000
allowed_disorder_ms = 1000
idle_timeout_ms = 10000
max_lateness_ms = 5000
label_horizon_ms = 5000
retention_ms = 15000
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
events = {events}
seed = 9
rate_per_s = 200.0
entities = 200
latency_median_ms = 1000.0
latency_sigma = 0.5
very_late_ms = 60000
[[windows]]
name = "5s"
kind = "tumbling"
size_ms = 5000
[metrics]
segments = ["country"]
entity_features = ["amount"]
[outputs]
dir = "unused"
formats = ["jsonl"]
emit_interval_ms = 5000
"#,
        schemas = schemas_dir().display()
    );
    let job = dir.path().join("job.toml");
    std::fs::write(&job, text).unwrap();
    run_job(&job, 1, &dir.path().join("out")).state_samples
}

#[test]
fn state_is_flat_after_warm_up() {
    // 60 000 events at 200/s: 300 s of event time against 15 s of retention.
    let samples = run(60_000);
    eprintln!("{samples:?}");
    assert!(
        samples.len() > 40,
        "watermark advanced in steps: {}",
        samples.len()
    );
    let n = samples.len();
    let peak = |s: &[(u64, i64)]| s.iter().map(|x| x.1).max().unwrap();
    // Warm-up is the first fifth; compare the middle with the last part (before the final drain).
    let middle = peak(&samples[n / 5..n / 2]);
    let late = peak(&samples[n / 2..n * 9 / 10]);
    assert!(middle > 0);
    assert!(
        (late as f64) < 1.3 * middle as f64,
        "state grew from {middle} to {late} records with retention fixed"
    );
}
