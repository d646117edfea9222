//! The replay buffer: a replayed range equals the live run's outputs for it, on any worker
//! count; damaged buffers are refused with an error naming the file.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tidemark::config::Job;
use tidemark::replay::manifest::Manifest;
use tidemark::replay::verify::{compare, digest};
use tidemark::runtime::{replay, RunOptions};

const REST: &str = r#"
[[windows]]
name = "30s"
kind = "tumbling"
size_ms = 30000
[metrics]
segments = ["country"]
entity_features = ["amount"]
[outputs]
dir = "unused"
formats = ["jsonl", "parquet"]
emit_interval_ms = 5000
[drift]
reference = { from = "1767225600000", to = "1767225660000" }
[[drift.alerts]]
statistic = "psi"
above = 0.1
severity = "P2"
min_count = 20
[learn]
publish_every = 500
[learn.canary]
min_examples = 30
[replay]
segment_ms = 20000
"#;

/// A generated job longer than its state horizon, run live once into `<dir>/live`.
fn live_run(dir: &Path) -> (PathBuf, PathBuf) {
    let generator = "events = 12000\nseed = 11\nrate_per_s = 20.0\nmalformed_fraction = 0.01\nlatency_median_ms = 4000.0\nvery_late_fraction = 0.002";
    let job = generator_job(dir, &Times::short(), generator, REST);
    let live = dir.join("live");
    run_job(&job, 1, &live);
    (job, live)
}

fn replay_into(job: &Path, buffer: &Path, range: std::ops::Range<u64>, out: &Path, workers: usize) {
    let job = Job::load(job).unwrap();
    let opts = RunOptions {
        workers,
        out_dir: Some(out.to_path_buf()),
        ..Default::default()
    };
    replay(job, buffer, range, &opts).expect("replay succeeds");
}

fn replay_err(job: &Path, buffer: &Path, out: &Path) -> String {
    let job = Job::load(job).unwrap();
    let opts = RunOptions {
        out_dir: Some(out.to_path_buf()),
        ..Default::default()
    };
    replay(job, buffer, 0..u64::MAX, &opts)
        .expect_err("replay refuses the buffer")
        .to_string()
}

#[test]
fn a_replayed_range_equals_the_live_run_on_one_and_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (job, live) = live_run(d);
    let buffer = live.join("replay");
    let m = Manifest::load(&buffer).unwrap().expect("a manifest");
    assert!(m.complete, "a finished run commits everything");
    let first = m.segments.iter().map(|s| s.ts_start).min().unwrap();
    let last = m.segments.iter().map(|s| s.ts_end).max().unwrap();
    let horizon = Job::load(&job).unwrap().state_horizon_ms();
    // A range that starts well after one state horizon, so that replay must rebuild state
    // from earlier segments, and that does not start on a segment or emit boundary.
    let (from, to) = (first + horizon + 61_500, first + horizon + 243_700);
    assert!(to < last, "the stream is long enough for the test");

    for workers in [1, 2] {
        let out = d.join(format!("replay{workers}"));
        replay_into(&job, &buffer, from..to, &out, workers);
        let digests = digest(&out, 0..u64::MAX).unwrap();
        assert!(
            digests["quality.jsonl"].lines > 100,
            "the range has outputs: {digests:?}"
        );
        assert_eq!(
            digest(&out, from..to).unwrap(),
            digests,
            "nothing outside the range is written"
        );
        assert_eq!(compare(&live, &out, from..to).unwrap(), None);
    }
    // The whole buffer replays to the whole live run, Parquet outputs included.
    let all = d.join("all");
    replay_into(&job, &buffer, 0..u64::MAX, &all, 2);
    for name in [
        "quality",
        "label_health",
        "ingest",
        "dead_letters",
        "entity_features",
    ] {
        for ext in ["jsonl", "parquet"] {
            let f = format!("{name}.{ext}");
            assert!(
                std::fs::read(live.join(&f)).unwrap() == std::fs::read(all.join(&f)).unwrap(),
                "{f} differs between the live run and its full replay"
            );
        }
    }
}

#[test]
fn damaged_buffers_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let generator = "events = 1500\nseed = 3\nrate_per_s = 20.0";
    let job = generator_job(d, &Times::short(), generator, REST);
    let live = d.join("live");
    run_job(&job, 1, &live);
    let buffer = live.join("replay");
    let m = Manifest::load(&buffer).unwrap().unwrap();
    let seg = &m.segments[m.segments.len() / 2];
    let seg_path = buffer.join(&seg.file);
    let fresh_copy = |name: &str| -> PathBuf {
        let to = d.join(name);
        copy_dir(&buffer, &to);
        to
    };
    let out = d.join("out");

    // A flipped byte.
    let b = fresh_copy("flipped");
    let mut bytes = std::fs::read(b.join(&seg.file)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(b.join(&seg.file), &bytes).unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(
        e.contains(&seg.file) && e.contains("checksum mismatch"),
        "{e}"
    );

    // A truncated segment.
    let b = fresh_copy("truncated");
    let bytes = std::fs::read(&seg_path).unwrap();
    std::fs::write(b.join(&seg.file), &bytes[..bytes.len() / 3]).unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(e.contains(&seg.file) && e.contains("truncated"), "{e}");

    // A missing segment.
    let b = fresh_copy("missing");
    std::fs::remove_file(b.join(&seg.file)).unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(e.contains(&seg.file), "{e}");

    // A damaged manifest.
    let b = fresh_copy("manifest");
    let mpath = b.join("MANIFEST.json");
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(
        &mpath,
        text.replacen("\"segment_ms\": ", "\"segment_ms\": 1", 1),
    )
    .unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(e.contains("MANIFEST.json") && e.contains("checksum"), "{e}");
    // A damaged or shortened journal (the manifest's lists).
    let journal = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".jsonl"))
        .expect("a journal beside the manifest");
    let name = journal.file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(&mpath, &text).unwrap();
    let lines = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, lines.replacen("\"rows\":", "\"rows\":1", 1)).unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(e.contains(&name) && e.contains("checksum mismatch"), "{e}");
    std::fs::write(&journal, &lines[..lines.len() - 10]).unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(e.contains(&name) && e.contains("shorter"), "{e}");
    // Bytes past the committed length (a commit that crashed before its manifest) are not read.
    std::fs::write(&journal, format!("{lines}{{\"segment\": damaged\n")).unwrap();
    assert_eq!(Manifest::load(&b).unwrap().unwrap(), m);
    std::fs::write(&mpath, &text[..text.len() - 40]).unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(
        e.contains("MANIFEST.json") && e.contains("not a readable manifest"),
        "{e}"
    );

    // A manifest (with a valid checksum) naming a segment outside the buffer.
    let b = fresh_copy("escape");
    let mut bad = m.clone();
    bad.segments[0].file = format!("../../{}", bad.segments[0].file);
    bad.store(&b).unwrap();
    let e = replay_err(&job, &b, &out);
    assert!(e.contains("inside the buffer directory"), "{e}");

    // A replay into the directory whose buffer it replays.
    let e = replay_err(&job, &buffer, &live);
    assert!(e.contains("give it its own --out"), "{e}");
    assert!(
        buffer.join("MANIFEST.json").exists(),
        "the buffer is untouched"
    );

    // `--fresh` starts over even where the manifest no longer loads.
    let damaged = d.join("damaged");
    copy_dir(&live, &damaged);
    let mpath = damaged.join("replay/MANIFEST.json");
    std::fs::write(&mpath, "{").unwrap();
    let opts = RunOptions {
        out_dir: Some(damaged.clone()),
        ..Default::default()
    };
    let e = tidemark::runtime::run(Job::load(&job).unwrap(), &opts)
        .expect_err("a damaged manifest stops a resume")
        .to_string();
    assert!(e.contains("MANIFEST.json"), "{e}");
    let opts = RunOptions {
        fresh: true,
        ..opts
    };
    tidemark::runtime::run(Job::load(&job).unwrap(), &opts).expect("--fresh starts over");
    assert!(
        Manifest::load(&damaged.join("replay"))
            .unwrap()
            .unwrap()
            .complete
    );

    // A buffer written by another definition of the job.
    let other = d.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other_job = generator_job(
        &other,
        &Times::short(),
        "events = 1500\nseed = 3",
        &REST.replace("size_ms = 30000", "size_ms = 60000"),
    );
    let e = replay_err(&other_job, &buffer, &out);
    assert!(e.contains("different definition of the job"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

#[test]
fn retention_deletes_old_segments_and_late_ranges_still_replay_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let probe = generator_job(d, &Times::short(), "events = 2000", REST);
    let need = {
        let j = Job::load(&probe).unwrap();
        j.state_horizon_ms() + j.segment_ms()
    };
    let rest = format!("{REST}retention_ms = {need}\n");
    let generator = "events = 12000\nseed = 13\nrate_per_s = 20.0\nmalformed_fraction = 0.01\nlatency_median_ms = 4000.0";
    let job = generator_job(d, &Times::short(), generator, &rest);
    let live = d.join("live");
    run_job(&job, 1, &live);
    let buffer = live.join("replay");
    let m = Manifest::load(&buffer).unwrap().unwrap();
    let first = m.segments.iter().map(|s| s.ts_start).min().unwrap();
    let last = m.segments.iter().map(|s| s.ts_end).max().unwrap();
    let removed: u64 = m.base.values().map(|c| c.accepted + c.dead_lettered).sum();
    assert!(removed > 0, "retention removed segments: {:?}", m.base);
    // Files of removed segments are gone; the named ones are all there.
    let on_disk = tree(&buffer)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".parquet"))
        .count();
    assert_eq!(on_disk, m.segments.len());

    // A range late enough to have its history replays exactly, counts included.
    // The drift detectors continue from a committed snapshot at or before the range, whose own
    // history must still be there: start a little after the first such snapshot.
    let horizon = Job::load(&job).unwrap().state_horizon_ms();
    let snapshot = m
        .states
        .iter()
        .map(|s| s.at)
        .find(|at| *at >= first + horizon)
        .expect("a detector snapshot late enough");
    let (from, to) = (snapshot + 7_000, last - 20_000);
    let out = d.join("late");
    replay_into(&job, &buffer, from..to, &out, 1);
    assert!(digest(&out, 0..u64::MAX).unwrap()["ingest.jsonl"].lines > 0);
    assert_eq!(compare(&live, &out, from..to).unwrap(), None);

    // A range whose history was removed is refused.
    let e = {
        let opts = RunOptions {
            out_dir: Some(d.join("early")),
            ..Default::default()
        };
        replay(Job::load(&job).unwrap(), &buffer, first..to, &opts)
            .expect_err("refused")
            .to_string()
    };
    assert!(e.contains("retention removed the state history"), "{e}");
}

#[test]
fn a_restart_refuses_a_buffer_whose_sources_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = generator_job(d, &Times::short(), "events = 1500\nseed = 3", REST);
    let live = d.join("live");
    run_job(&job, 1, &live);
    // Make the finished buffer look interrupted half-way.
    let buffer = live.join("replay");
    let mut m = Manifest::load(&buffer).unwrap().unwrap();
    m.complete = false;
    m.committed = m.segments[m.segments.len() / 2].ts_end;
    m.store(&buffer).unwrap();
    let other = generator_job(d, &Times::short(), "events = 1500\nseed = 4", REST);
    let opts = RunOptions {
        out_dir: Some(live.clone()),
        ..Default::default()
    };
    let e = tidemark::runtime::run(Job::load(&other).unwrap(), &opts)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("MANIFEST.json") && e.contains("other sources"),
        "{e}"
    );
}
