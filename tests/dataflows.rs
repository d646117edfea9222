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
