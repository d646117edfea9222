//! Late labels amend closed windows, corrections retract, orphans and unlabeled events are exact.

mod common;

use common::*;
use serde_json::Value;

const T0: u64 = 1_767_225_600_000;

fn rows_at<'a>(rows: &'a [Value], status: &str, start: u64) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| r["status"] == status && r["window_start"] == start && r["segment"] == "all")
        .collect()
}

#[test]
fn late_label_amends_a_final_window_and_corrections_retract() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut events = vec![
        event("e1", "A", T0 + 1_000, 10.0, "US"),
        event("e2", "A", T0 + 2_000, 20.0, "US"),
        event("e3", "B", T0 + 3_000, 30.0, "GB"),
    ];
    // Filler events move the events watermark on; they have no predictions or labels.
    for k in 1..=20 {
        events.push(event(
            &format!("f{k}"),
            "C",
            T0 + 61_000 + k * 20_000,
            1.0,
            "DE",
        ));
    }
    write_lines(d, "events.jsonl", &events);
    write_lines(
        d,
        "predictions.jsonl",
        &[
            prediction("e1", 0.8, T0 + 1_010),
            prediction("e2", 0.3, T0 + 2_010),
            prediction("e3", 0.6, T0 + 3_010),
        ],
    );
    write_lines(
        d,
        "labels.jsonl",
        &[
            label("e1", 1, T0 + 5_000),
            label("e2", 0, T0 + 6_000),
            label("ghost", 1, T0 + 7_000),
            // The correction: e2 was a positive after all.
            label("e2", 1, T0 + 30_000),
            // Long after W0 became final (T0 + 60 s + 120 s horizon).
            label("e3", 1, T0 + 250_000),
        ],
    );
    let job = file_job(
        d,
        &Times::default(),
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "",
    );
    let out = d.join("out");
    run_job(&job, 1, &out);
    let q = changelog(&out, "quality");

    // Provisional: after e1 and e2 are labeled, before the correction: 2 examples, 1 positive.
    let prov = rows_at(&q, "provisional", T0);
    assert!(
        prov.iter()
            .any(|r| r["diff"] == 1 && r["count"] == 2 && r["positives"] == 1),
        "{prov:#?}"
    );
    // The correction retracts the old value and inserts the new one at the same timestamp.
    let corrected_ts = T0 + 30_000;
    assert!(prov
        .iter()
        .any(|r| r["ts"] == corrected_ts && r["diff"] == -1 && r["positives"] == 1));
    assert!(prov
        .iter()
        .any(|r| r["ts"] == corrected_ts && r["diff"] == 1 && r["positives"] == 2));

    // Final at T0 + 180 s without e3; amended at T0 + 250 s when its label arrives.
    let fin = rows_at(&q, "final", T0);
    assert!(fin.iter().any(|r| r["ts"] == T0 + 180_000
        && r["diff"] == 1
        && r["count"] == 2
        && r["auc_method"] == "exact"));
    let amended: Vec<_> = fin.iter().filter(|r| r["ts"] == T0 + 250_000).collect();
    assert_eq!(amended.len(), 2, "retraction and new value: {amended:#?}");
    assert!(amended.iter().any(|r| r["diff"] == -1 && r["count"] == 2));
    assert!(amended
        .iter()
        .any(|r| r["diff"] == 1 && r["count"] == 3 && r["positives"] == 3));

    // The last value of W0: three labeled predictions, all positive; accuracy 2/3 at 0.5.
    let last = retired(&q, &["window_start", "segment", "model_version"]);
    let w0 = &last[&format!("{T0}|\"all\"|\"m1\"")];
    assert_eq!(w0["count"], 3);
    assert_eq!(w0["positives"], 3);
    assert_eq!(w0["accuracy"].as_f64().unwrap(), 2.0 / 3.0);

    // Label health: W0 has 3 events; e3's label came after the horizon; e2 was relabeled;
    // the ghost label is an orphan of the window of its label time.
    let l = changelog(&out, "label_health");
    let last = retired(&l, &["window_start", "segment"]);
    let w0 = &last[&format!("{T0}|\"all\"")];
    assert_eq!(w0["events"], 3);
    assert_eq!(w0["labeled"], 3);
    assert_eq!(w0["labeled_within_horizon"], 2);
    assert_eq!(w0["unlabeled"], 1);
    assert_eq!(w0["relabeled"], 1);
    assert_eq!(w0["orphan_labels"], 1);
    // Latency is measured to the first label: 4 s, 4 s and 247 s.
    assert_eq!(w0["latency_max_ms"].as_u64().unwrap() / 1000, 247);
    // At finality, before e3's label: one event unlabeled by the horizon.
    let fin = rows_at(&l, "final", T0);
    assert!(fin.iter().any(|r| r["ts"] == T0 + 180_000
        && r["diff"] == 1
        && r["unlabeled"] == 1
        && r["labeled"] == 2));
    // Filler windows: every event unlabeled.
    let w2 = &last[&format!("{}|\"all\"", T0 + 120_000)];
    assert_eq!(w2["events"], w2["unlabeled"]);
    assert_eq!(w2["labeled"], 0);
}
