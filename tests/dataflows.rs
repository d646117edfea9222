//! Every example job in `dataflows/` loads and validates; bad jobs are refused with file, key and reason.

use std::path::Path;

use tidemark::config::Job;

#[test]
fn every_example_job_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            Job::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected the demo and file examples, found {n}");
}

fn demo_with(edit: impl Fn(String) -> String) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
    let text = std::fs::read_to_string(dir.join("demo.toml")).unwrap();
    match Job::from_toml(&dir.join("edited.toml"), &edit(text)) {
        Ok(_) => panic!("edited job was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_jobs_name_file_key_and_reason() {
    let e = demo_with(|t| t.replace("tick_ms = 1000", "tick_ms = 1000\nbogus = 1"));
    assert!(
        e.contains("edited.toml") && e.contains("unknown field `bogus`"),
        "{e}"
    );
    let e = demo_with(|t| t.replace("retention_ms = 900000", "retention_ms = 60000"));
    assert!(
        e.contains("time.retention_ms") && e.contains("max_lateness_ms"),
        "{e}"
    );
    let mlflow = |uri: &str| {
        let uri = uri.to_string();
        move |t: String| {
            t.replace(
                "[learn.rollback]",
                &format!("[learn.mlflow]\ntracking_uri = \"{uri}\"\n\n[learn.rollback]"),
            )
        }
    };
    let e = demo_with(mlflow("file:///tmp/mlruns"));
    assert!(
        e.contains("learn.mlflow.tracking_uri") && e.contains("mlflow server"),
        "{e}"
    );
    let e = demo_with(|t| {
        mlflow("http://127.0.0.1:5000")(t).replace("registry = \"out/demo/registry\"\n", "")
    });
    assert!(
        e.contains("learn.mlflow") && e.contains("needs learn.registry"),
        "{e}"
    );
    let e = demo_with(|t| t.replace("slide_ms = 300000", "slide_ms = 700000"));
    assert!(e.contains("windows[1].slide_ms"), "{e}");
    let e = demo_with(|t| {
        t.replace(
            "segments = [\"country\", \"device\"]",
            "segments = [\"colour\"]",
        )
    });
    assert!(
        e.contains("metrics.segments") && e.contains("colour"),
        "{e}"
    );
    let e = demo_with(|t| {
        t.replace(
            "kind = \"generator\"\n\n[sources.predictions]",
            "kind = \"jsonl\"\npath = \"nowhere/*.jsonl\"\n\n[sources.predictions]",
        )
    });
    assert!(
        e.contains("sources.events.path") && e.contains("matches no .jsonl file"),
        "{e}"
    );
    let e = demo_with(|t| t.replace("schema = \"labels.v1\"", "schema = \"labels.v9\""));
    assert!(e.contains("labels.v9.json"), "{e}");
    let e = demo_with(|t| t.replace("seed = 7", "seed = 7\nmalformed_fraction = 2.0"));
    assert!(e.contains("generator.malformed_fraction"), "{e}");
    let e = demo_with(|t| t + "\n[replay]\nretention_ms = 600000\n");
    assert!(
        e.contains("replay.retention_ms") && e.contains("state horizon"),
        "{e}"
    );
    let e = demo_with(|t| t + "\n[replay]\nsegment_ms = 90000\n");
    assert!(
        e.contains("replay.segment_ms") && e.contains("emit interval (60000)"),
        "{e}"
    );
    let e = demo_with(|t| {
        t.replace(
            "formats = [\"jsonl\", \"parquet\"]",
            "formats = [\"parquet\"]",
        )
    });
    assert!(e.contains("outputs.formats") && e.contains("jsonl"), "{e}");
}

/// The demo's fingerprint, pinned: a replay buffer of an earlier run resumes only while its
/// job's fingerprint is unchanged, so a change here must be deliberate (and said in the notes).
/// Settings that change no output (`learn.registry`, `learn.mlflow`) stay out of it.
#[test]
fn the_demo_fingerprint_is_stable_and_ignores_where_models_are_published() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
    let demo = Job::load(&dir.join("demo.toml")).unwrap();
    assert_eq!(
        demo.fingerprint(),
        "fffdc7d3abd4ac9edb5785f8baeda5662b7cf137e3f5c9f45db4fb3ba7d20d6f"
    );
    let text = std::fs::read_to_string(dir.join("demo.toml"))
        .unwrap()
        .replace(
            "[learn.rollback]",
            "[learn.mlflow]\ntracking_uri = \"http://127.0.0.1:5000\"\n\n[learn.rollback]",
        )
        .replace(
            "registry = \"out/demo/registry\"",
            "registry = \"elsewhere\"",
        );
    let published = Job::from_toml(&dir.join("demo.toml"), &text).unwrap();
    assert!(published.spec.learn.as_ref().unwrap().mlflow.is_some());
    assert_eq!(published.fingerprint(), demo.fingerprint());
}
