//! One record cannot poison a partition's watermark: a far-future record among good ones goes
//! to dead letters and changes no metric, while a genuine gap in the data is followed.

mod common;

use common::*;
use serde_json::Value;

const T0: u64 = 1_767_225_600_000;
const DAY: u64 = 86_400_000;
/// 2099-12-31T00:00:00Z.
const Y2099: u64 = 4_102_358_400_000;

const WINDOWS: &str = "[[windows]]\nname = \"5m\"\nkind = \"tumbling\"\nsize_ms = 300000\n";

/// `n` events one second apart from `from`, each with a prediction and a label a minute later;
/// ids start at `first`.
fn stream(first: usize, n: usize, from: u64) -> [Vec<String>; 3] {
    let (mut ev, mut pr, mut lb) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("e{:05}", first + i);
        let t = from + i as u64 * 1000;
        let country = ["US", "DE", "FR"][i % 3];
        ev.push(event(&id, &format!("u{}", i % 7), t, i as f64, country));
        pr.push(prediction(&id, 0.1 + 0.8 * ((i % 5) as f64 / 4.0), t + 10));
        lb.push(label(&id, (i % 2) as u8, t + 60_000));
    }
    [ev, pr, lb]
}

/// Runs the three streams (events with `inserted` lines at `at`) and returns the output dir.
fn run_with(dir: &std::path::Path, s: &[Vec<String>; 3], at: usize, inserted: &[String]) {
    let mut events = s[0].clone();
    events.splice(at..at, inserted.iter().cloned());
    write_lines(dir, "events.jsonl", &events);
    write_lines(dir, "predictions.jsonl", &s[1]);
    write_lines(dir, "labels.jsonl", &s[2]);
    let job = file_job(dir, &Times::default(), WINDOWS, "");
    run_job(&job, 2, &dir.join("out"));
}

fn jump_letters(out: &std::path::Path) -> Vec<Value> {
    changelog(out, "dead_letters")
        .into_iter()
        .filter(|d| d["diff"] == 1)
        .collect()
}

/// The far-future records are dead letters naming the jump, and every metric equals a run
/// without them.
fn assert_refused_without_effect(inserted: &[String]) {
    let s = stream(0, 1000, T0);
    let clean = tempfile::tempdir().unwrap();
    run_with(clean.path(), &s, 0, &[]);
    let bad = tempfile::tempdir().unwrap();
    run_with(bad.path(), &s, 300, inserted);
    let letters = jump_letters(&bad.path().join("out"));
    assert_eq!(letters.len(), inserted.len(), "{letters:?}");
    for d in &letters {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("ahead of the partition watermark"),
            "{reason}"
        );
        assert!(reason.contains("past max_jump_ms 3600000"), "{reason}");
        assert_eq!(d["field"], "event_time");
    }
    assert!(jump_letters(&clean.path().join("out")).is_empty());
    for name in ["quality", "label_health", "entity_features"] {
        let a = std::fs::read(clean.path().join("out").join(format!("{name}.jsonl"))).unwrap();
        let b = std::fs::read(bad.path().join("out").join(format!("{name}.jsonl"))).unwrap();
        assert!(
            a == b,
            "{name} changed by {} far-future records",
            inserted.len()
        );
    }
}

#[test]
fn one_record_in_2099_is_refused_and_changes_no_metric() {
    assert_refused_without_effect(&[event("bad", "u0", Y2099, 1.0, "US")]);
}

#[test]
fn one_record_a_day_ahead_is_refused_and_changes_no_metric() {
    assert_refused_without_effect(&[event("bad", "u0", T0 + 300_000 + DAY, 1.0, "US")]);
}

#[test]
fn a_burst_of_far_future_records_is_refused() {
    let burst: Vec<String> = (0..10)
        .map(|i| event(&format!("bad{i}"), "u0", T0 + DAY + i * 1000, 1.0, "US"))
        .collect();
    assert_refused_without_effect(&burst);
}

#[test]
fn a_genuine_gap_in_the_data_is_followed() {
    // 300 events, then three hours without any, then 300 more: every record is accepted.
    let a = stream(0, 300, T0);
    let b = stream(300, 300, T0 + 3 * 3_600_000);
    let s: [Vec<String>; 3] = std::array::from_fn(|i| [a[i].clone(), b[i].clone()].concat());
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), &s, 0, &[]);
    let out = dir.path().join("out");
    assert!(jump_letters(&out).is_empty(), "{:?}", jump_letters(&out));
    let quality = changelog(&out, "quality");
    let rows = retired(&quality, &["window_start", "segment", "model_version"]);
    let counted: i64 = rows
        .values()
        .filter(|r| r["segment"] == "all")
        .map(|r| r["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, 600, "every labeled prediction counted");
}
