//! A file with every kind of bad record: the job keeps running, every bad record is a dead
//! letter with its position and reason, and read = accepted + dead-lettered per stream.

mod common;

use common::*;

const T0: u64 = 1_767_225_600_000;

#[test]
fn every_kind_of_bad_record_is_dead_lettered_and_counts_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = |i: u64| event(&format!("e{i}"), "A", T0 + i * 1000, 5.0, "US");
    let events = vec![
        good(1),
        r#"{"event_id":"bad1","entity":"A","event_time":"#.to_string(), // 2: truncated JSON
        good(3),
        r#"{"entity":"A","event_time":1767225604000,"amount":1}"#.to_string(), // 4: missing id
        r#"{"event_id":"bad5","entity":"A","event_time":"1767225605000"}"#.to_string(), // 5: time as string
        r#"{"event_id":"bad6","entity":"A","event_time":1767225606000,"amount":"NaN"}"#.to_string(), // 6: NaN
        r#"{"event_id":"bad7","entity":"A","event_time":-5}"#.to_string(), // 7: negative time
        r#"{"event_id":"bad8","entity":"A","event_time":7258118400000}"#.to_string(), // 8: absurd time
        r#"{"event_id":"bad9","entity":"A","event_time":1767225609000,"amount":true}"#.to_string(), // 9: mistyped
        r#"[1,2,3]"#.to_string(), // 10: not an object
        r#"{"event_id":"bad11","entity":"A","event_time":1767225611000,"colour":"red"}"#
            .to_string(), // 11: unknown field
        good(100),
        event("late12", "A", T0 + 1_000, 5.0, "US"), // 13: far behind the watermark: past max lateness
        good(101),
        r#"{"event_id":"bad15","entity":"A","event_id":"bad15b","event_time":1767225615000}"#
            .to_string(), // 15: a key given twice
        r#"{"event_id":"bad16","entity":"A","event_time":1767225616000,"amount":1e400}"#
            .to_string(), // 16: a number out of range
        r#"{"event_id":"bad17","entity":"A","event_time":1180591620717411303424}"#.to_string(), // 17: 2^70
        String::new(), // 18: a blank line
        good(102),
    ];
    write_lines(d, "events.jsonl", &events);
    write_lines(
        d,
        "predictions.jsonl",
        &[
            prediction("e1", 0.7, T0 + 1_010),
            prediction("e3", 1.5, T0 + 3_010), // score outside [0, 1]
            r#"{"event_id":"e3","model_version":"m1","prediction_time":1767225603010}"#.to_string(), // missing score
        ],
    );
    write_lines(
        d,
        "labels.jsonl",
        &[
            label("e1", 1, T0 + 2_000),
            r#"{"event_id":"e3","label":2,"label_time":1767225603500}"#.to_string(),
        ],
    );
    let times = Times {
        max_lateness: 30_000,
        ..Times::default()
    };
    let job = file_job(
        d,
        &times,
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "",
    );
    // Undeclared fields are ignored unless the source says otherwise; this one does.
    let text = std::fs::read_to_string(&job).unwrap().replacen(
        "path = \"events.jsonl\"",
        "path = \"events.jsonl\"\nextra_fields = \"dead_letter\"",
        1,
    );
    std::fs::write(&job, text).unwrap();
    let out = d.join("out");
    let summary = run_job(&job, 2, &out);

    let dead = changelog(&out, "dead_letters");
    let find = |stream: &str, offset: u64| {
        dead.iter()
            .find(|r| r["stream"] == stream && r["offset"] == offset)
            .unwrap_or_else(|| panic!("no dead letter for {stream}:{offset}: {dead:#?}"))
    };
    let expect = [
        ("events", 2, "", "invalid JSON"),
        ("events", 4, "event_id", "missing"),
        (
            "events",
            5,
            "event_time",
            "epoch milliseconds are a number, not a string",
        ),
        ("events", 6, "amount", "NaN"),
        ("events", 7, "event_time", "negative time"),
        ("events", 8, "event_time", "absurd time"),
        ("events", 9, "amount", "expected an integer or float"),
        ("events", 10, "", "not a JSON object"),
        ("events", 11, "colour", "unknown field"),
        ("events", 13, "event_time", "past max_lateness_ms"),
        ("events", 15, "event_id", "duplicate field"),
        ("events", 16, "amount", "invalid JSON: number out of range"),
        ("events", 17, "event_time", "absurd time 11805916207174113"),
        ("events", 18, "", "blank line"),
        ("predictions", 2, "score", "outside [0, 1]"),
        ("predictions", 3, "score", "missing"),
        ("labels", 2, "label", "expected 0 or 1"),
    ];
    for (stream, offset, field, reason) in expect {
        let r = find(stream, offset);
        assert_eq!(r["field"], field, "{r}");
        assert!(r["reason"].as_str().unwrap().contains(reason), "{r}");
        assert!(
            r["source"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{stream}.jsonl")),
            "{r}"
        );
        assert_eq!(r["diff"], 1);
    }
    assert_eq!(dead.len(), expect.len(), "no other dead letters: {dead:#?}");

    let counts: Vec<_> = summary
        .ingest
        .iter()
        .map(|r| (r.stream.as_str(), r.read, r.accepted, r.dead_lettered))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("events", 19, 5, 14),
            ("labels", 2, 1, 1),
            ("predictions", 3, 1, 2)
        ]
    );
    // The good records made it through: e1 is a labeled, scored example.
    let q = changelog(&out, "quality");
    let last = retired(&q, &["window_start", "segment", "model_version"]);
    assert_eq!(last[&format!("{T0}|\"all\"|\"m1\"")]["count"], 1);
}

#[test]
fn an_empty_parquet_file_is_refused_by_validation_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("events.parquet"), b"").unwrap();
    let job = file_job(
        d,
        &Times::default(),
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "",
    );
    let text = std::fs::read_to_string(&job).unwrap().replacen(
        "kind = \"jsonl\"\npath = \"events.jsonl\"",
        "kind = \"parquet\"\npath = \"events.parquet\"",
        1,
    );
    std::fs::write(&job, text).unwrap();
    let e = tidemark::config::Job::load(&job).unwrap_err().to_string();
    assert!(
        e.contains("events.parquet") && e.contains("not a readable Parquet file"),
        "{e}"
    );
}

/// Writes a job over `d` whose events all carry a float id, which no id field reads.
fn misfit_events(d: &std::path::Path, n: u64) -> std::path::PathBuf {
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"event_id":{i}.5,"entity":"A","event_time":{},"amount":1}}"#,
                T0 + i * 1000
            )
        })
        .collect();
    write_lines(d, "events.jsonl", &events);
    write_lines(d, "predictions.jsonl", &[prediction("e1", 0.7, T0 + 10)]);
    write_lines(d, "labels.jsonl", &[label("e1", 1, T0 + 2_000)]);
    file_job(
        d,
        &Times::default(),
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "",
    )
}

#[test]
fn a_source_that_refuses_everything_stops_the_job_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = misfit_events(d, 5000);
    let loaded = tidemark::config::Job::load(&job).unwrap();
    let opts = tidemark::runtime::RunOptions {
        workers: 2,
        out_dir: Some(d.join("out")),
        ..Default::default()
    };
    let e = tidemark::runtime::run(loaded, &opts)
        .expect_err("stopped")
        .to_string();
    assert!(
        e.starts_with("sources.events: the first ")
            && e.contains("were all refused")
            && e.contains("events.jsonl:1 field event_id: expected a string")
            && e.contains("found the float 0.5")
            && e.contains("on_all_refused"),
        "{e}"
    );
    // Stopped early: not every record was read into dead letters.
    let dead = changelog(&d.join("out"), "dead_letters").len();
    assert!(dead < 5000, "{dead} dead letters");

    // A user who means it runs on, everything refused counted.
    let text = std::fs::read_to_string(&job).unwrap().replacen(
        "path = \"events.jsonl\"",
        "path = \"events.jsonl\"\non_all_refused = \"continue\"",
        1,
    );
    std::fs::write(&job, text).unwrap();
    let summary = run_job(&job, 2, &d.join("out2"));
    let events = summary
        .ingest
        .iter()
        .find(|r| r.stream == "events")
        .unwrap();
    assert_eq!((events.read, events.accepted), (5000, 0));
    assert!(summary
        .all_refused(&tidemark::config::Job::load(&job).unwrap())
        .is_empty());
}

#[test]
fn a_run_whose_stream_accepted_nothing_exits_non_zero_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Fewer than the early stop's count: the run ends, then says it.
    let job = misfit_events(d, 20);
    let out = tidemark_run(&job, &d.join("out")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sources.events: read 20 records and accepted none")
            && stderr.contains("dead_letters.jsonl"),
        "{stderr}"
    );
    assert_eq!(changelog(&d.join("out"), "dead_letters").len(), 20);
}

/// An empty labels file is a stream that read nothing: it has its row of zeros in `ingest`
/// (and so in the summary), and the run is no failure.
#[test]
fn an_empty_stream_has_its_ingest_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_lines(d, "events.jsonl", &[event("e1", "A", T0, 5.0, "US")]);
    write_lines(d, "predictions.jsonl", &[prediction("e1", 0.7, T0 + 10)]);
    write_lines(d, "labels.jsonl", &[]);
    let job = file_job(
        d,
        &Times::default(),
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "",
    );
    let summary = run_job(&job, 2, &d.join("out"));
    let counts: Vec<_> = summary
        .ingest
        .iter()
        .map(|r| (r.stream.as_str(), r.read, r.accepted, r.dead_lettered))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("events", 1, 1, 0),
            ("labels", 0, 0, 0),
            ("predictions", 1, 1, 0)
        ]
    );
    let rows = changelog(&d.join("out"), "ingest");
    assert!(
        rows.iter()
            .any(|r| r["stream"] == "labels" && r["read"] == 0 && r["diff"] == 1),
        "{rows:#?}"
    );
    assert!(summary
        .all_refused(&tidemark::config::Job::load(&job).unwrap())
        .is_empty());
}
