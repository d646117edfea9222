//! Recovery: a job killed with SIGKILL over and over, restarted each time, ends with the same
//! outputs as an uninterrupted run, and its replay buffer holds every record exactly once.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use tidemark::generate::{write_dataset, DataFormat};
use tidemark::generator::GeneratorParams;
use tidemark::replay::manifest::Manifest;
use tidemark::replay::segment::read_segment;

const REST: &str = r#"
[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000
[metrics]
segments = ["country"]
entity_features = ["amount"]
[drift]
reference = { from = "1767225600000", to = "1767225630000" }
[[drift.alerts]]
statistic = "psi"
above = 0.1
severity = "P2"
min_count = 20
[learn]
publish_every = 1000
[learn.canary]
min_examples = 50
[learn.rollback]
min_accuracy = 0.3
[learn.defence]
entity_cap = 40
entity_window_ms = 60000
[replay]
segment_ms = 5000
"#;

/// Input lines of every stream (non-blank), which the buffer must account for exactly once.
fn input_records(dir: &Path) -> u64 {
    ["events", "predictions", "labels"]
        .iter()
        .map(|s| {
            std::fs::read_to_string(dir.join(format!("{s}.jsonl")))
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count() as u64
        })
        .sum()
}

/// Bursts of records a day ahead, across read-batch boundaries: the source holds them until
/// the next record refuses them, so kills land while records are held.
fn insert_time_jumps(events: &Path) {
    let text = std::fs::read_to_string(events).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for at in [4090usize, 1020] {
        let Some(model) = lines[at..]
            .iter()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event_time"].is_u64())
        else {
            continue;
        };
        let burst: Vec<String> = (0..10u64)
            .map(|k| {
                let mut v = model.clone();
                v["event_id"] = format!("jump{at}_{k}").into();
                v["event_time"] = (v["event_time"].as_u64().unwrap() + 86_400_000 + k).into();
                v.to_string()
            })
            .collect();
        lines.splice(at..at, burst);
    }
    std::fs::write(events, lines.join("\n") + "\n").unwrap();
}

#[test]
fn twenty_kills_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let params = GeneratorParams {
        events: 15000,
        seed: 21,
        malformed_fraction: 0.01,
        latency_median_ms: 5000.0,
        duplicate_event_fraction: 0.01,
        ..GeneratorParams::default()
    };
    write_dataset(&params, d, DataFormat::Jsonl).unwrap();
    insert_time_jumps(&d.join("events.jsonl"));
    let times = Times {
        tick: 1000,
        disorder: 2000,
        max_lateness: 30_000,
        horizon: 60_000,
        retention: 120_000,
    };
    let job = file_job(d, &times, REST, "emit_interval_ms = 5000");

    // The uninterrupted run.
    let clean = d.join("clean");
    let t0 = Instant::now();
    let st = tidemark_run(&job, &clean).status().unwrap();
    assert!(st.success());
    let full = t0.elapsed();
    let jumps = std::fs::read_to_string(clean.join("dead_letters.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("past max_jump_ms"))
        .count();
    assert_eq!(
        jumps, 20,
        "both bursts are refused, held until the next record"
    );

    // Kill at random points within the first part of a run, then restart.
    let crashed = d.join("crashed");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let window = (full.as_millis() as u64 * 3 / 4).max(200);
    let mut resumed = 0;
    for kill in 0..20 {
        let mut child = tidemark_run(&job, &crashed).spawn().unwrap();
        let after = Duration::from_millis(rng.gen_range(30..window));
        let deadline = Instant::now() + after;
        let mut finished = false;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !finished {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if finished {
            assert!(
                out.status.success(),
                "run {kill} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Ok(Some(m)) = Manifest::load(&crashed.join("replay")) {
            resumed += (!m.complete && m.committed > 0) as u32;
        }
    }
    assert!(
        resumed >= 5,
        "most kills should land after a commit (resumable states seen: {resumed})"
    );
    let out = tidemark_run(&job, &crashed).output().unwrap();
    assert!(
        out.status.success(),
        "final run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Outputs (both formats) and replay segments are byte-identical to the clean run's.
    assert_same_outputs(&clean, &crashed, "after the crash loop");

    // Temporary files left by the kills are gone.
    let buffer = crashed.join("replay");
    for sub in ["", "events", "predictions", "labels", "dead_letters"] {
        for e in std::fs::read_dir(buffer.join(sub)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(!name.ends_with(".tmp"), "{sub}/{name} left behind");
        }
    }

    // Every input record is in the buffer exactly once (accepted or dead-lettered).
    let m = Manifest::load(&buffer).unwrap().unwrap();
    assert!(m.complete);
    let mut seen = BTreeSet::new();
    let mut rows = 0u64;
    for s in &m.segments {
        for (_, item) in read_segment(&buffer, s).unwrap() {
            let pos = match &item {
                tidemark::sources::Ingested::Accepted(_, o)
                | tidemark::sources::Ingested::Control(_, o) => o.position.clone(),
                tidemark::sources::Ingested::Dead(dl) => dl.position.clone(),
                tidemark::sources::Ingested::Mark(..) => unreachable!(),
            };
            assert!(seen.insert(pos.clone()), "{pos} is in the buffer twice");
            rows += 1;
        }
    }
    assert_eq!(rows, input_records(d));
}
