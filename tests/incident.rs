//! The committed incident capture (`replay/drift-incident`) replays to its expected digest, and
//! shows the incident it was captured for.

use std::path::Path;

use tidemark::config::Job;
use tidemark::replay::verify::{combined, digest};
use tidemark::runtime::{parse_time, replay, RunOptions};

#[derive(serde::Deserialize)]
struct Expected {
    from: String,
    to: String,
    digest: String,
    files: std::collections::BTreeMap<String, File>,
}

#[derive(serde::Deserialize)]
struct File {
    lines: u64,
    sha256: String,
}

#[test]
fn the_committed_incident_replays_to_its_expected_digest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay/drift-incident");
    let expected: Expected =
        toml::from_str(&std::fs::read_to_string(root.join("expected.toml")).unwrap()).unwrap();
    let range = parse_time(&expected.from).unwrap()..parse_time(&expected.to).unwrap();
    let job = Job::load(&root.join("job.toml")).unwrap();
    let out = tempfile::tempdir().unwrap();
    for workers in [1, 2] {
        let opts = RunOptions {
            workers,
            out_dir: Some(out.path().to_path_buf()),
            ..Default::default()
        };
        replay(job.clone(), &root.join("buffer"), range.clone(), &opts).unwrap();
        let got = digest(out.path(), 0..u64::MAX).unwrap();
        for (name, want) in &expected.files {
            let g = &got[name];
            assert_eq!((g.lines, &g.sha256), (want.lines, &want.sha256), "{name}");
        }
        assert_eq!(combined(&got), expected.digest);
    }

    // The incident itself: overall accuracy of the 30 s windows falls after the drift point.
    let text = std::fs::read_to_string(out.path().join("quality.jsonl")).unwrap();
    let mut last = std::collections::BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["segment"] == "all" && v["diff"] == 1 && v["status"] != "retired" {
            last.insert(
                v["window_start"].as_u64().unwrap(),
                v["accuracy"].as_f64().unwrap(),
            );
        }
    }
    let drift = parse_time("2026-01-01T00:02:30Z").unwrap();
    let before: Vec<f64> = last.range(..drift).map(|(_, a)| *a).collect();
    let after: Vec<f64> = last.range(drift..).map(|(_, a)| *a).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(!before.is_empty() && !after.is_empty());
    assert!(
        mean(&before) > mean(&after) + 0.15,
        "accuracy before {before:?}, after {after:?}"
    );
}
