//! Oracle: for random small streams, the last value of every window in the changelogs equals a
//! from-scratch batch computation of the same metrics in plain Rust.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use serde_json::Value;

const T0: u64 = 1_767_225_600_000;
const HORIZON: u64 = 100_000;

#[derive(Debug, Clone)]
struct Ev {
    id: usize,
    entity: usize,
    t: u64,
    amount: Option<i64>,
    country: usize,
}

#[derive(Debug, Clone)]
struct Input {
    events: Vec<Ev>,
    preds: Vec<(usize, i64)>,
    labels: Vec<(usize, u8, u64)>,
    /// Copies of events sent again `dt` ms later, with another country: duplicates.
    dup_events: Vec<(usize, u64)>,
    /// Second predictions of events, sent after the first: duplicates.
    dup_preds: Vec<(usize, i64)>,
}

fn input() -> impl Strategy<Value = Input> {
    let ev = (
        0usize..3,
        0u64..300_000,
        prop::option::of(-5_000i64..5_000),
        0usize..2,
    );
    (
        prop::collection::vec(ev, 1..30),
        prop::collection::vec((0usize..40, 0i64..=1000), 0..30),
        prop::collection::vec((0usize..40, 0u8..2, 0u64..200_000), 0..40),
        prop::collection::vec((0usize..30, 0u64..50_000), 0..4),
        prop::collection::vec((0usize..30, 0i64..=1000), 0..4),
    )
        .prop_map(|(evs, preds, labels, dup_events, dup_preds)| {
            let mut events: Vec<Ev> = evs
                .into_iter()
                .enumerate()
                .map(|(id, (entity, t, amount, country))| Ev {
                    id,
                    entity,
                    t: T0 + t,
                    amount,
                    country,
                })
                .collect();
            events.sort_by_key(|e| e.t);
            let n = events.len();
            let mut seen = std::collections::BTreeSet::new();
            // At most one prediction per event; ids beyond the events are unknown events.
            let preds: Vec<(usize, i64)> = preds
                .into_iter()
                .filter(|(i, _)| *i < n && seen.insert(*i))
                .collect();
            let dup_events = dup_events.into_iter().filter(|(i, _)| *i < n).collect();
            let dup_preds = dup_preds
                .into_iter()
                .filter(|(i, _)| seen.contains(i))
                .collect();
            Input {
                events,
                preds,
                labels,
                dup_events,
                dup_preds,
            }
        })
}

fn event_time(inp: &Input, id: usize) -> Option<u64> {
    inp.events.iter().find(|e| e.id == id).map(|e| e.t)
}

fn write(inp: &Input, d: &std::path::Path) {
    let countries = ["US", "GB", "FR"];
    let line = |e: &Ev| {
        let amount = e
            .amount
            .map(|a| format!("{}", a as f64 / 100.0))
            .unwrap_or_else(|| "null".into());
        format!(
            r#"{{"event_id":"e{}","entity":"n{}","event_time":{},"amount":{amount},"country":"{}"}}"#,
            e.id, e.entity, e.t, countries[e.country]
        )
    };
    // Each duplicate after its original (a stable sort keeps the original first at equal times).
    let mut events: Vec<(u64, String)> = inp.events.iter().map(|e| (e.t, line(e))).collect();
    for (i, dt) in &inp.dup_events {
        let e = &inp.events[*i];
        let copy = Ev {
            t: e.t + dt,
            country: 2,
            amount: Some(77),
            ..e.clone()
        };
        events.push((copy.t, line(&copy)));
    }
    events.sort_by_key(|e| e.0);
    write_lines(
        d,
        "events.jsonl",
        &events.into_iter().map(|e| e.1).collect::<Vec<_>>(),
    );
    let mut preds: Vec<(u64, String)> = inp
        .preds
        .iter()
        .map(|(i, s)| {
            let t = event_time(inp, *i).unwrap() + 10;
            (t, prediction(&format!("e{i}"), *s as f64 / 1000.0, t))
        })
        .collect();
    for (i, s) in &inp.dup_preds {
        let t = event_time(inp, *i).unwrap() + 20;
        preds.push((t, prediction(&format!("e{i}"), *s as f64 / 1000.0, t)));
    }
    preds.sort_by_key(|p| p.0);
    write_lines(
        d,
        "predictions.jsonl",
        &preds.into_iter().map(|p| p.1).collect::<Vec<_>>(),
    );
    let mut labels: Vec<(u64, String)> = inp
        .labels
        .iter()
        .map(|(i, l, dt)| {
            let t = event_time(inp, *i).unwrap_or(T0) + dt;
            (t, label(&format!("e{i}"), *l, t))
        })
        .collect();
    labels.sort();
    write_lines(
        d,
        "labels.jsonl",
        &labels.into_iter().map(|p| p.1).collect::<Vec<_>>(),
    );
}

/// Windows as (name, start) for time t: 1m tumbling and 2m sliding by 1m.
fn windows(t: u64) -> Vec<(&'static str, u64)> {
    let m = t - t % 60_000;
    let mut w = vec![("1m", m), ("2m", m)];
    if m >= 60_000 {
        w.push(("2m", m - 60_000));
    }
    w
}

/// Effective label per event: (label, first time, versions), latest label time (then value) wins.
fn label_state(inp: &Input) -> BTreeMap<usize, (u8, u64, usize)> {
    let mut by: BTreeMap<usize, Vec<(u64, u8)>> = BTreeMap::new();
    for (i, l, dt) in &inp.labels {
        let t = event_time(inp, *i).unwrap_or(T0) + dt;
        by.entry(*i).or_default().push((t, *l));
    }
    by.into_iter()
        .map(|(i, mut v)| {
            v.sort();
            (i, (v.last().unwrap().1, v[0].0, v.len()))
        })
        .collect()
}

fn close(a: &Value, b: f64) -> bool {
    let a = a.as_f64().unwrap_or(f64::NAN);
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn check(inp: &Input) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(inp, d);
    let times = Times {
        tick: 1000,
        disorder: 2000,
        max_lateness: 600_000,
        horizon: HORIZON,
        retention: 700_000,
    };
    let win = "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n[[windows]]\nname = \"2m\"\nkind = \"sliding\"\nsize_ms = 120000\nslide_ms = 60000\n";
    let job = file_job(
        d,
        &times,
        win,
        "[metrics]\nsegments = [\"country\"]\nentity_features = [\"amount\"]\n",
    );
    let out = d.join("out");
    let summary = run_job(&job, 2, &out);
    // Every dead letter is a duplicate, and every duplicate a dead letter.
    let dups = |s: &str| {
        summary
            .ingest
            .iter()
            .find(|r| r.stream == s)
            .map(|r| (r.dead_lettered, r.duplicates))
    };
    prop_assert_eq!(
        dups("events"),
        Some((inp.dup_events.len() as i64, inp.dup_events.len() as i64))
    );
    prop_assert_eq!(
        dups("predictions"),
        Some((inp.dup_preds.len() as i64, inp.dup_preds.len() as i64))
    );
    let countries = ["US", "GB"];
    let labels = label_state(inp);

    // Quality.
    #[derive(Default, Debug)]
    struct Q {
        n: i64,
        pos: i64,
        correct: i64,
        ll: f64,
        brier: f64,
        scores: Vec<(f64, u8)>,
    }
    let mut q: BTreeMap<String, Q> = BTreeMap::new();
    for (i, s) in &inp.preds {
        let e = inp.events.iter().find(|e| e.id == *i).unwrap();
        let Some((l, _, _)) = labels.get(i) else {
            continue;
        };
        let p = *s as f64 / 1000.0;
        for (w, start) in windows(e.t) {
            for seg in [
                "all".to_string(),
                format!("country={}", countries[e.country]),
            ] {
                let k = format!("\"{w}\"|{start}|\"{seg}\"");
                let a = q.entry(k).or_default();
                a.n += 1;
                a.pos += *l as i64;
                a.correct += ((p >= 0.5) as u8 == *l) as i64;
                let pc = p.clamp(1e-15, 1.0 - 1e-15);
                a.ll += if *l == 1 { -pc.ln() } else { -(1.0 - pc).ln() };
                a.brier += (p - *l as f64).powi(2);
                a.scores.push((p, *l));
            }
        }
    }
    let got = retired(
        &changelog(&out, "quality"),
        &["window", "window_start", "segment"],
    );
    prop_assert_eq!(got.keys().collect::<Vec<_>>(), q.keys().collect::<Vec<_>>());
    for (k, a) in &q {
        let r = &got[k];
        prop_assert_eq!(r["count"].as_i64(), Some(a.n), "{}", k);
        prop_assert_eq!(r["positives"].as_i64(), Some(a.pos), "{}", k);
        prop_assert!(
            close(&r["accuracy"], a.correct as f64 / a.n as f64),
            "{} {}",
            k,
            r
        );
        prop_assert!(
            (r["log_loss"].as_f64().unwrap() - a.ll / a.n as f64).abs() < 1e-8,
            "{} {} {}",
            k,
            r,
            a.ll
        );
        prop_assert!(
            (r["brier"].as_f64().unwrap() - a.brier / a.n as f64).abs() < 1e-8,
            "{} {}",
            k,
            r
        );
        // Exact AUC by counting pairs.
        let (mut num, mut p, mut n) = (0.0, 0, 0);
        for (sp, lp) in &a.scores {
            if *lp == 1 {
                p += 1;
                for (sn, ln) in &a.scores {
                    if *ln == 0 {
                        num += if sp > sn {
                            1.0
                        } else if sp == sn {
                            0.5
                        } else {
                            0.0
                        };
                    }
                }
            } else {
                n += 1;
            }
        }
        if p > 0 && n > 0 {
            prop_assert!(close(&r["auc"], num / (p * n) as f64), "{} {}", k, r);
        } else {
            prop_assert!(r["auc"].is_null());
        }
        prop_assert_eq!(&r["auc_method"], "exact");
    }

    // Label health.
    let mut l: BTreeMap<String, [i64; 5]> = BTreeMap::new();
    for e in &inp.events {
        for (w, start) in windows(e.t) {
            for seg in [
                "all".to_string(),
                format!("country={}", countries[e.country]),
            ] {
                let a = l.entry(format!("\"{w}\"|{start}|\"{seg}\"")).or_default();
                a[0] += 1;
                if let Some((_, first, versions)) = labels.get(&e.id) {
                    a[1] += 1;
                    a[2] += (*first <= e.t + HORIZON) as i64;
                    a[3] += (*versions > 1) as i64;
                }
            }
        }
    }
    // Each label of an unknown id is an orphan of the windows of its label time that have
    // events (labels alone open no window).
    for (i, _, dt) in &inp.labels {
        if event_time(inp, *i).is_none() {
            for (w, start) in windows(T0 + dt) {
                if let Some(a) = l.get_mut(&format!("\"{w}\"|{start}|\"all\"")) {
                    a[4] += 1;
                }
            }
        }
    }
    let got = retired(
        &changelog(&out, "label_health"),
        &["window", "window_start", "segment"],
    );
    prop_assert_eq!(got.keys().collect::<Vec<_>>(), l.keys().collect::<Vec<_>>());
    for (k, a) in &l {
        let r = &got[k];
        let cols = [
            "events",
            "labeled",
            "labeled_within_horizon",
            "relabeled",
            "orphan_labels",
        ];
        for (c, v) in cols.iter().zip(a) {
            prop_assert_eq!(r[*c].as_i64(), Some(*v), "{} {}", k, c);
        }
        prop_assert_eq!(r["unlabeled"].as_i64(), Some(a[0] - a[2]), "{}", k);
        prop_assert_eq!(r["late_labels"].as_i64(), Some(0), "{}", k);
    }

    // Entity features.
    let mut f: BTreeMap<String, (i64, Vec<f64>, u64)> = BTreeMap::new();
    for e in &inp.events {
        for (w, start) in windows(e.t) {
            let a = f
                .entry(format!("\"{w}\"|{start}|\"n{}\"", e.entity))
                .or_default();
            a.0 += 1;
            a.2 = a.2.max(e.t);
            if let Some(x) = e.amount {
                a.1.push(x as f64 / 100.0);
            }
        }
    }
    let got = retired(
        &changelog(&out, "entity_features"),
        &["window", "window_start", "entity"],
    );
    prop_assert_eq!(got.keys().collect::<Vec<_>>(), f.keys().collect::<Vec<_>>());
    for (k, (n, xs, last)) in &f {
        let r = &got[k];
        prop_assert_eq!(r["events"].as_i64(), Some(*n));
        prop_assert_eq!(r["n"].as_i64(), Some(xs.len() as i64));
        let end = r["window_end"].as_u64().unwrap();
        prop_assert_eq!(r["freshness_ms"].as_u64(), Some(end - last));
        if xs.is_empty() {
            prop_assert!(r["mean"].is_null());
        } else {
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            prop_assert!(close(&r["mean"], mean), "{} {} {}", k, r, mean);
            prop_assert!(
                (r["std"].as_f64().unwrap() - var.sqrt()).abs() < 1e-9,
                "{} {}",
                k,
                r
            );
            prop_assert!(close(
                &r["min"],
                xs.iter().cloned().fold(f64::INFINITY, f64::min)
            ));
            prop_assert!(close(
                &r["max"],
                xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn last_values_equal_a_batch_recomputation(inp in input()) {
        check(&inp)?;
    }
}
