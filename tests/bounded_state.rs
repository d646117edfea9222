//! Memory stays bounded: on a long generated stream with short retention, the state gauge
//! (records in differential's arrangements and batchers, plus the entries held by the join's
//! slots and the window panes) stops growing after warm-up.

mod common;

use common::*;

fn run(events: u64) -> Vec<(u64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let times = Times {
        tick: 1000,
        disorder: 1000,
        max_lateness: 5000,
        horizon: 5000,
        retention: 15_000,
    };
    let generator = format!(
        "events = {events}\nseed = 9\nrate_per_s = 200.0\nentities = 200\nlatency_median_ms = 1000.0\nlatency_sigma = 0.5\nvery_late_ms = 60000"
    );
    let rest = r#"
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
"#;
    let job = generator_job(dir.path(), &times, &generator, rest);
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
