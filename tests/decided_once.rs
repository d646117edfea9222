//! Records decided once: duplicates refused naming the first, labels too late for their event's
//! windows counted (never orphans), orphans never retracted, and no window opened by labels alone.

mod common;

use common::*;
use serde_json::Value;

const T0: u64 = 1_767_225_600_000;
const WINDOWS: &str = "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n";
const SEGMENTS: &str = "[metrics]\nsegments = [\"country\"]\n";

/// Filler events from `from` to `to` (every 20 s), moving the events watermark on.
fn fillers(from: u64, to: u64) -> Vec<String> {
    (0..)
        .map(|k| from + k * 20_000)
        .take_while(|t| *t <= to)
        .map(|t| event(&format!("f{t}"), "C", t, 1.0, "DE"))
        .collect()
}

fn ingest_row<'a>(rows: &'a [Value], stream: &str) -> &'a Value {
    rows.iter()
        .rev()
        .find(|r| r["stream"] == stream && r["diff"] == 1)
        .unwrap_or_else(|| panic!("an ingest row of {stream}"))
}

fn prediction_by(id: &str, model: &str, score: f64, t: u64) -> String {
    format!(
        r#"{{"event_id":"{id}","model_version":"{model}","score":{score},"prediction_time":{t}}}"#
    )
}

#[test]
fn duplicates_are_refused_naming_the_first_on_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two event files: `x` is in both at the same time, so the same timestamp; the first source
    // (by name) holds the event. `e1` twice in one file at one time: the first line is the
    // event. `e2` again later, with another country: a duplicate, which opens no segment.
    let mut a = vec![
        event("e1", "A", T0 + 1_000, 10.0, "US"),
        event("e1", "A", T0 + 1_000, 99.0, "FR"),
        event("x", "A", T0 + 3_000, 1.0, "US"),
        event("e2", "B", T0 + 2_000, 20.0, "US"),
        event("e2", "B", T0 + 9_000, 20.0, "GB"),
    ];
    a.extend(fillers(T0 + 61_000, T0 + 400_000));
    write_lines(d, "events_a.jsonl", &a);
    write_lines(
        d,
        "events_b.jsonl",
        &[event("x", "A", T0 + 3_000, 5.0, "JP")],
    );
    write_lines(
        d,
        "predictions.jsonl",
        &[
            prediction("e1", 0.8, T0 + 1_010),
            prediction("e1", 0.1, T0 + 1_500),
            prediction_by("e1", "m2", 0.7, T0 + 1_600),
            prediction("x", 0.6, T0 + 3_010),
        ],
    );
    write_lines(
        d,
        "labels.jsonl",
        &[label("e1", 1, T0 + 5_000), label("x", 0, T0 + 6_000)],
    );
    let job = file_job(d, &Times::default(), WINDOWS, SEGMENTS);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("path = \"events.jsonl\"", "path = \"events_*.jsonl\"");
    std::fs::write(&job, text).unwrap();

    let (one, two) = (d.join("w1"), d.join("w2"));
    let summary = run_job(&job, 1, &one);
    run_job(&job, 2, &two);
    assert_same_outputs(&one, &two, "duplicates on 1 and 2 workers");

    // Dead letters: e1's second line, e2's later copy, x from events_b; e1's second m1
    // prediction. Each names the record accepted first.
    let dead = changelog(&one, "dead_letters");
    let dups: Vec<&Value> = dead
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains("already accepted"))
        .collect();
    assert_eq!(dups.len(), 4, "{dups:#?}");
    let find = |needle: &str| {
        dups.iter()
            .find(|r| r["reason"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("a duplicate {needle}: {dups:#?}"))
    };
    let e1 = find("event id \"e1\"");
    assert!(e1["source"].as_str().unwrap().ends_with("events_a.jsonl"));
    assert_eq!(e1["offset"], 2, "{e1}");
    assert_eq!(e1["field"], "event_id");
    assert!(e1["reason"].as_str().unwrap().contains("events_a.jsonl:1 "));
    let x = find("event id \"x\"");
    assert!(
        x["source"].as_str().unwrap().ends_with("events_b.jsonl"),
        "{x}"
    );
    assert!(x["reason"].as_str().unwrap().contains("events_a.jsonl:3 "));
    let e2 = find("event id \"e2\"");
    assert_eq!(e2["offset"], 5, "{e2}");
    let p = find("model version \"m1\"");
    assert_eq!(p["stream"], "predictions");
    assert_eq!(p["offset"], 2, "{p}");
    assert!(p["reason"]
        .as_str()
        .unwrap()
        .contains("predictions.jsonl:1 "));

    // Counted: duplicates are dead letters, not accepted records.
    let ingest = changelog(&one, "ingest");
    let ev = ingest_row(&ingest, "events");
    assert_eq!(ev["duplicates"], 3);
    assert_eq!(ev["dead_lettered"], 3);
    assert_eq!(
        ev["accepted"].as_i64().unwrap() + 3,
        ev["read"].as_i64().unwrap()
    );
    assert_eq!(ingest_row(&ingest, "predictions")["duplicates"], 1);
    assert_eq!(ingest_row(&ingest, "labels")["duplicates"], 0);
    let events = summary
        .ingest
        .iter()
        .find(|r| r.stream == "events")
        .unwrap();
    assert_eq!(events.duplicates, 3);

    // The first copies count, once: e1 (US, amount 10), x (US), e2 (US) in W0; its m1 score 0.8.
    let l = retired(
        &changelog(&one, "label_health"),
        &["window_start", "segment"],
    );
    let w0 = &l[&format!("{T0}|\"all\"")];
    assert_eq!(w0["events"], 3);
    assert_eq!(w0["labeled"], 2);
    assert_eq!(l[&format!("{T0}|\"country=US\"")]["events"], 3);
    for c in ["FR", "GB", "JP"] {
        assert!(
            !l.contains_key(&format!("{T0}|\"country={c}\"")),
            "a duplicate opened segment {c}"
        );
    }
    let q = retired(
        &changelog(&one, "quality"),
        &["window_start", "segment", "model_version"],
    );
    let m1 = &q[&format!("{T0}|\"all\"|\"m1\"")];
    assert_eq!(m1["count"], 2, "{m1}");
    assert_eq!(m1["positives"], 1, "{m1}");
    assert_eq!(q[&format!("{T0}|\"all\"|\"m2\"")]["count"], 1);
}

#[test]
fn labels_are_decided_once_and_none_vanishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut events = vec![
        event("e1", "A", T0 + 1_000, 10.0, "US"),
        event("e2", "A", T0 + 2_000, 20.0, "US"),
        // `ghost`'s label is orphaned at T0 + 7 s + 120 s; the event comes after that.
        event("ghost", "B", T0 + 200_000, 30.0, "US"),
    ];
    events.extend(fillers(T0 + 61_000, T0 + 800_000));
    events.sort_by_key(|e| serde_json::from_str::<Value>(e).unwrap()["event_time"].as_u64());
    write_lines(d, "events.jsonl", &events);
    write_lines(
        d,
        "predictions.jsonl",
        &[
            prediction("e1", 0.8, T0 + 1_010),
            prediction("e2", 0.3, T0 + 2_010),
        ],
    );
    write_lines(
        d,
        "labels.jsonl",
        &[
            label("e2", 0, T0 + 6_000),
            label("ghost", 1, T0 + 7_000),
            // W0 retires at T0 + 60 s + 600 s: e1's label comes after that, too late.
            label("e1", 1, T0 + 701_000),
            // No event ever: orphaned, in a window no event opened.
            label("never", 1, T0 + 900_000),
        ],
    );
    let job = file_job(d, &Times::default(), WINDOWS, SEGMENTS);
    let out = d.join("out");
    let summary = run_job(&job, 2, &out);

    let ingest = changelog(&out, "ingest");
    let labels = ingest_row(&ingest, "labels");
    assert_eq!(labels["accepted"], 4);
    assert_eq!(labels["too_late_labels"], 1, "{labels}");
    assert_eq!(labels["orphaned_labels"], 2, "{labels}");
    // e1's label came 700 s after its event: a retention of 701 s would have held it.
    assert_eq!(labels["retention_to_hold_ms"], 701_000, "{labels}");
    assert!(ingest_row(&ingest, "events")["retention_to_hold_ms"].is_null());
    let s = summary
        .ingest
        .iter()
        .find(|r| r.stream == "labels")
        .unwrap();
    assert_eq!((s.too_late, s.orphaned), (1, 2));

    let l = retired(
        &changelog(&out, "label_health"),
        &["window_start", "segment"],
    );
    let w0 = &l[&format!("{T0}|\"all\"")];
    // e2 labeled; e1's label too late for W0, so counted where it arrived, not here.
    assert_eq!(w0["events"], 2);
    assert_eq!(w0["labeled"], 1);
    assert_eq!(w0["late_labels"], 0);
    // The orphan stays an orphan of its label time's window, though its event came later.
    assert_eq!(w0["orphan_labels"], 1);
    // The late event joins its label.
    let w3 = &l[&format!("{}|\"all\"", T0 + 180_000)];
    assert_eq!(w3["labeled"], 1, "{w3}");
    // e1's label in the window of its label time, which has filler events.
    let late = &l[&format!("{}|\"all\"", T0 + 660_000)];
    assert_eq!(late["late_labels"], 1, "{late}");
    assert_eq!(late["orphan_labels"], 0);
    // The window of `never`'s label has no events: no row.
    assert!(
        !l.keys()
            .any(|k| k.starts_with(&format!("{}|", T0 + 900_000))),
        "a window opened by an orphan: {:?}",
        l.keys().collect::<Vec<_>>()
    );
    let all_rows = changelog(&out, "label_health");
    assert!(all_rows.iter().all(|r| r["events"].as_i64().unwrap() > 0));
    // Quality never saw e1's late label.
    let q = retired(
        &changelog(&out, "quality"),
        &["window_start", "segment", "model_version"],
    );
    assert_eq!(q[&format!("{T0}|\"all\"|\"m1\"")]["count"], 1);
}

/// Every changelog but the dead letters and the ingest counts, by name.
fn results(out: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .filter(|(n, _)| n != "dead_letters.jsonl" && n != "ingest.jsonl")
        .collect();
    v.sort();
    v
}

#[test]
fn events_and_predictions_sent_twice_change_no_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let times = Times::short();
    let rest = "[[windows]]\nname = \"30s\"\nkind = \"tumbling\"\nsize_ms = 30000\n\
                [metrics]\nsegments = [\"country\"]\nentity_features = [\"amount\"]\n\
                [drift]\nreference = { from = \"1767225600000\", to = \"1767225660000\" }\n\
                [learn]\npublish_every = 500\n[learn.canary]\nmin_examples = 30\n\
                [outputs]\ndir = \"unused\"\nformats = [\"jsonl\"]\n";
    let gen = "events = 6000\nseed = 5\nrate_per_s = 20.0\nlatency_median_ms = 4000.0";
    let once = generator_job(d, &times, gen, rest);
    let clean = d.join("once");
    run_job(&once, 1, &clean);
    let twice = generator_job(
        d,
        &times,
        &format!("{gen}\nduplicate_event_fraction = 0.05"),
        rest,
    );
    for workers in [1, 2] {
        let out = d.join(format!("twice{workers}"));
        let summary = run_job(&twice, workers, &out);
        let dups: i64 = summary.ingest.iter().map(|r| r.duplicates).sum();
        assert!(
            dups > 400,
            "both streams have duplicates: {:?}",
            summary.ingest
        );
        let (a, b) = (results(&clean), results(&out));
        assert_eq!(
            a.iter().map(|x| &x.0).collect::<Vec<_>>(),
            b.iter().map(|x| &x.0).collect::<Vec<_>>()
        );
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(
                x == y,
                "{name} changed by refused duplicates ({workers} workers)"
            );
        }
    }
}

/// One id's copies spread over more than the join's memory of it, with labels and predictions:
/// a replay from any point, which rebuilds state from one state horizon fed at a single time,
/// decides every copy and label as the live run did.
#[test]
fn copies_spread_over_the_memory_replay_as_decided_live() {
    use tidemark::config::Job;
    use tidemark::replay::verify::compare;
    use tidemark::runtime::{replay, RunOptions};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |secs: u64| T0 + secs * 1000;
    // The memory of an event id here is 181 s (2 × 60 s retention + 2 × 30 s window + 1 s).
    let mut events: Vec<(u64, String)> = (0..900)
        .map(|k| (s(k), event(&format!("f{k}"), "C", s(k), 1.0, "DE")))
        .collect();
    // x at 10 s is the event; 100 s is its copy, and 250 s one of that copy (within its memory,
    // not the first's); 500 s is x again, a new event; 560 s its copy.
    for (at, country) in [
        (10, "US"),
        (100, "FR"),
        (250, "GB"),
        (500, "JP"),
        (560, "BR"),
    ] {
        events.push((s(at), event("x", "A", s(at), at as f64, country)));
    }
    events.sort_by_key(|e| e.0);
    write_lines(
        d,
        "events.jsonl",
        &events.into_iter().map(|e| e.1).collect::<Vec<_>>(),
    );
    let mut preds: Vec<(u64, String)> = [11, 80, 160, 300]
        .iter()
        .map(|&at| (s(at), prediction("x", 0.5 + at as f64 / 1000.0, s(at))))
        .collect();
    preds.extend(
        (0..900)
            .step_by(7)
            .map(|k| (s(k) + 10, prediction(&format!("f{k}"), 0.3, s(k) + 10))),
    );
    preds.sort_by_key(|p| p.0);
    write_lines(
        d,
        "predictions.jsonl",
        &preds.into_iter().map(|p| p.1).collect::<Vec<_>>(),
    );
    let mut labels: Vec<(u64, String)> = [(20, 1), (300, 0), (520, 1), (700, 0)]
        .iter()
        .map(|&(at, l)| (s(at), label("x", l, s(at))))
        .collect();
    labels.extend(
        (0..900)
            .step_by(5)
            .map(|k| (s(k) + 4_000, label(&format!("f{k}"), 1, s(k) + 4_000))),
    );
    labels.extend(
        (0..900)
            .step_by(97)
            .map(|k| (s(k) + 1, label(&format!("ghost{k}"), 1, s(k) + 1))),
    );
    labels.sort_by_key(|l| l.0);
    write_lines(
        d,
        "labels.jsonl",
        &labels.into_iter().map(|l| l.1).collect::<Vec<_>>(),
    );
    let times = Times::short();
    let windows = "[[windows]]\nname = \"30s\"\nkind = \"tumbling\"\nsize_ms = 30000\n";
    let job = file_job(
        d,
        &times,
        windows,
        "emit_interval_ms = 5000\n[replay]\nsegment_ms = 5000\n",
    );
    let live = d.join("live");
    let summary = run_job(&job, 1, &live);

    // Live: x's copies at 100 s and 250 s and 560 s are refused, 500 s is a new event; the
    // predictions at 80 s and 160 s are refused, 300 s is accepted.
    let dead = changelog(&live, "dead_letters");
    let refused = |stream: &str| {
        dead.iter()
            .filter(|r| r["stream"] == stream && r["reason"].as_str().unwrap().contains("\"x\""))
            .count()
    };
    assert_eq!(refused("events"), 3, "{dead:#?}");
    assert_eq!(refused("predictions"), 2, "{dead:#?}");
    let labels = summary
        .ingest
        .iter()
        .find(|r| r.stream == "labels")
        .unwrap();
    assert!(labels.too_late >= 1 && labels.orphaned >= 9, "{labels:?}");

    let job = Job::load(&job).unwrap();
    let horizon = job.state_horizon_ms();
    let end = s(900);
    for from in (s(200)..end - 60_000).step_by(45_000) {
        let out = d.join(format!("replay{from}"));
        let opts = RunOptions {
            workers: 2,
            out_dir: Some(out.clone()),
            ..Default::default()
        };
        replay(job.clone(), &live.join("replay"), from..end, &opts).expect("replay succeeds");
        assert_eq!(
            compare(&live, &out, from..end).unwrap(),
            None,
            "a replay from {from} (state horizon {horizon} ms)"
        );
    }
}
