//! The same job on 1 and 2 workers writes byte-identical output files.

mod common;

use std::path::Path;

use common::*;
use tidemark::generate::{write_dataset, DataFormat};
use tidemark::generator::GeneratorParams;

/// Output files and replay-buffer segments (the commit history in the manifest and its journal
/// depends on when frontiers moved, and so does which commits' state snapshots are kept: they
/// are left out).
fn files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = tree(out)
        .into_iter()
        .filter(|(name, _)| {
            !name.contains("MANIFEST")
                && !name.ends_with("LOCK")
                && !name.starts_with("replay/state/")
        })
        .collect();
    v.sort();
    v
}

fn assert_same(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let outputs = fa.iter().filter(|f| !f.0.starts_with("replay/")).count();
    assert_eq!(outputs, 10, "five changelogs in two formats");
    assert!(fa.len() > 10, "replay segments are compared too");
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(
            x == y,
            "{name} differs between runs ({} vs {} bytes)",
            x.len(),
            y.len()
        );
        assert!(!x.is_empty() || name.starts_with("dead"), "{name} is empty");
    }
}

const WINDOWS: &str = r#"
[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000
[[windows]]
name = "3m"
kind = "sliding"
size_ms = 180000
slide_ms = 60000
"#;

const METRICS: &str = r#"
[metrics]
segments = ["country", "device"]
entity_features = ["amount", "velocity"]
"#;

#[test]
fn generated_files_give_identical_outputs_on_one_and_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let params = GeneratorParams {
        events: 4000,
        seed: 11,
        malformed_fraction: 0.01,
        latency_median_ms: 10_000.0,
        ..Default::default()
    };
    let data = d.join("data");
    write_dataset(&params, &data, DataFormat::Jsonl).unwrap();
    // Two event files, so the events stream has two partitions (one per worker on -w 2).
    let text = std::fs::read_to_string(data.join("events.jsonl")).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    let parts = d.join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    write_lines(&parts, "a.jsonl", a);
    write_lines(&parts, "b.jsonl", b);
    std::fs::copy(data.join("predictions.jsonl"), d.join("predictions.jsonl")).unwrap();
    std::fs::copy(data.join("labels.jsonl"), d.join("labels.jsonl")).unwrap();
    let job = file_job(d, &Times::default(), WINDOWS, METRICS);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("path = \"events.jsonl\"", "path = \"parts\"");
    std::fs::write(&job, text).unwrap();

    let one = d.join("out1");
    let two = d.join("out2");
    let s1 = run_job(&job, 1, &one);
    let s2 = run_job(&job, 2, &two);
    assert_eq!(s1.ingest, s2.ingest);
    assert_eq!(
        s1.ingest
            .iter()
            .find(|r| r.stream == "events")
            .unwrap()
            .read,
        4000
    );
    assert_same(&one, &two);
}

#[test]
fn the_built_in_generator_gives_identical_outputs_on_one_and_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let times = Times {
        tick: 1000,
        disorder: 2000,
        max_lateness: 60_000,
        horizon: 60_000,
        retention: 300_000,
    };
    let generator =
        "events = 3000\nseed = 5\nmalformed_fraction = 0.01\nlatency_median_ms = 5000.0";
    let rest = format!("{WINDOWS}\n{METRICS}\n[outputs]\ndir = \"unused\"\nformats = [\"jsonl\", \"parquet\"]\nemit_interval_ms = 10000\n");
    let job = generator_job(d, &times, generator, &rest);
    let (one, two) = (d.join("out1"), d.join("out2"));
    run_job(&job, 1, &one);
    run_job(&job, 2, &two);
    assert_same(&one, &two);
}

#[test]
fn the_committed_samples_give_the_same_metrics_from_jsonl_and_parquet_on_any_worker_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        ("files.toml", 1),
        ("files.toml", 2),
        ("backfill.toml", 1),
        ("backfill.toml", 2),
    ];
    let mut outs = Vec::new();
    for (i, (job, w)) in runs.iter().enumerate() {
        let out = dir.path().join(format!("run{i}"));
        run_job(&root.join(job), *w, &out);
        outs.push(out);
    }
    for name in [
        "quality.jsonl",
        "label_health.jsonl",
        "entity_features.jsonl",
        "ingest.jsonl",
    ] {
        let first = std::fs::read(outs[0].join(name)).unwrap();
        assert!(first.len() > 1000, "{name} has content");
        for (out, run) in outs.iter().zip(runs).skip(1) {
            assert!(
                std::fs::read(out.join(name)).unwrap() == first,
                "{name} differs for {run:?}"
            );
        }
    }
}

/// Sums a changelog's diffs per (timestamp rounded up to `emit`, row), dropping zeros.
fn rolled_up(path: &Path, emit: u64) -> std::collections::BTreeMap<(u64, String), i64> {
    let mut acc = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let mut row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap();
        let ts = row.remove("ts").unwrap().as_u64().unwrap();
        let diff = row.remove("diff").unwrap().as_i64().unwrap();
        *acc.entry((
            ts.div_ceil(emit) * emit,
            serde_json::Value::Object(row).to_string(),
        ))
        .or_insert(0) += diff;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

#[test]
fn a_coarse_emit_interval_equals_the_per_tick_changelog_rolled_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
    let dir = tempfile::tempdir().unwrap();
    let coarse = dir.path().join("coarse");
    run_job(&root.join("files.toml"), 2, &coarse);
    let text = std::fs::read_to_string(root.join("files.toml")).unwrap();
    assert!(text.contains("emit_interval_ms = 60000"));
    let fine_job = dir.path().join("fine.toml");
    let text = text
        .replace("emit_interval_ms = 60000", "")
        .replace(
            "path = \"sample/",
            &format!("path = \"{}/sample/", root.display()),
        )
        .replace(
            "name = \"files\"",
            &format!(
                "name = \"files\"\nschemas_dir = \"{}\"",
                schemas_dir().display()
            ),
        );
    std::fs::write(&fine_job, text).unwrap();
    let fine = dir.path().join("fine");
    run_job(&fine_job, 1, &fine);
    for name in [
        "quality.jsonl",
        "label_health.jsonl",
        "entity_features.jsonl",
        "ingest.jsonl",
        "dead_letters.jsonl",
    ] {
        let a = rolled_up(&fine.join(name), 60_000);
        assert!(!a.is_empty());
        assert_eq!(a, rolled_up(&coarse.join(name), 60_000), "{name}");
    }
}
