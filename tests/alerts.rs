//! Alert rules on a generated stream with an abrupt concept change: every record of the
//! `alerts` changelog equals a recomputation from the `quality` and `label_health` changelogs'
//! final rows, the first quality alert is for the window of the change, the minimum sample
//! size holds, and the records are the same on another worker count and in a replay.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tidemark::config::Job;
use tidemark::runtime::{replay, RunOptions};

const RULES: &str = r#"
[[alerts]]
name = "accuracy_low"
metric = "accuracy"
below = 0.7
windows = ["1m"]
segments = ["all"]
min_count = 300
severity = "P2"

[[alerts]]
name = "accuracy_drop"
metric = "accuracy"
drop = 0.15
baseline_windows = 3
windows = ["1m"]
segments = ["all"]
min_count = 300
severity = "P3"

[[alerts]]
name = "error_budget_burn"
metric = "accuracy"
objective = 0.75
burn_rate = 1.5
windows = ["1m", "5m"]
segments = ["all"]
min_count = 300
severity = "P1"

[[alerts]]
name = "segment_sample"
metric = "accuracy"
below = 1.01
windows = ["1m"]
min_count = 200
severity = "P4"

[[alerts]]
name = "labels_late"
metric = "latency_p95_ms"
above = 89000
windows = ["1m"]
segments = ["all"]
min_count = 300
severity = "P3"
"#;

const EVENTS: u64 = 24_000;
const RATE: f64 = 20.0;

fn job(dir: &Path) -> PathBuf {
    common::generator_job(
        dir,
        &common::Times::default(),
        &format!("events = {EVENTS}\nseed = 11\nrate_per_s = {RATE}\nlatency_median_ms = 20000.0"),
        &format!(
            r#"[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000

[[windows]]
name = "5m"
kind = "tumbling"
size_ms = 300000

[metrics]
segments = ["country"]

[outputs]
dir = "out"
emit_interval_ms = 10000
summary = false

[replay]
segment_ms = 60000
{RULES}"#
        ),
    )
}

/// A final row's value of one rule's metric, in changelog order.
#[derive(Debug, Clone)]
struct Final {
    ts: u64,
    family: String,
    end: u64,
    segment: String,
    model: String,
    count: u64,
    value: Option<f64>,
}

fn finals(rows: &[Value], metric: &str, count: &str) -> Vec<Final> {
    rows.iter()
        .filter(|r| r["diff"] == 1 && r["status"] == "final")
        .map(|r| Final {
            ts: r["ts"].as_u64().unwrap(),
            family: r["window"].as_str().unwrap().into(),
            end: r["window_end"].as_u64().unwrap(),
            segment: r["segment"].as_str().unwrap().into(),
            model: r["model_version"].as_str().unwrap_or("").into(),
            count: r[count].as_u64().unwrap(),
            value: r[metric].as_f64(),
        })
        .collect()
}

/// `(ts, rule, state, window, window_end, segment, model)` of an alert record.
type Record = (u64, String, String, String, u64, String, String);

enum Cond {
    Below(f64),
    Above(f64),
    Drop(f64, usize),
    Burn(f64, f64, usize),
}

/// The records a rule gives, recomputed from final rows: per series, each window evaluated once
/// in order, when first seen with at least `min` examples (amendments only amend the values the
/// baseline uses), a record at each change of the breach state.
fn expect(
    rule: &str,
    rows: &[Final],
    families: &[&str],
    segment: Option<&str>,
    min: u64,
    cond: Cond,
) -> Vec<Record> {
    #[derive(Default)]
    struct S {
        firing: bool,
        current: Option<(u64, f64, u64)>,
        history: Vec<(u64, f64, u64)>,
        fams: BTreeMap<String, (u64, f64)>,
    }
    let mut state: BTreeMap<(String, String, String), S> = BTreeMap::new();
    let mut out = Vec::new();
    for r in rows {
        if !families.contains(&r.family.as_str()) || segment.is_some_and(|s| s != r.segment) {
            continue;
        }
        let Some(v) = r.value else { continue };
        if r.count < min {
            continue;
        }
        let fam_key = if matches!(cond, Cond::Burn(..)) {
            String::new()
        } else {
            r.family.clone()
        };
        let s = state
            .entry((fam_key, r.segment.clone(), r.model.clone()))
            .or_default();
        let breach = match cond {
            Cond::Burn(objective, factor, n) => {
                match s.fams.get(&r.family).map(|(e, _)| *e) {
                    Some(e) if r.end < e => continue,
                    Some(e) if r.end == e => {
                        s.fams.insert(r.family.clone(), (r.end, v));
                        continue;
                    }
                    _ => {
                        s.fams.insert(r.family.clone(), (r.end, v));
                    }
                }
                if s.fams.len() < n {
                    continue;
                }
                let burn = s
                    .fams
                    .values()
                    .map(|(_, v)| (1.0 - v) / (1.0 - objective))
                    .fold(f64::INFINITY, f64::min);
                burn >= factor
            }
            _ => {
                let keep = match cond {
                    Cond::Drop(_, n) => n,
                    _ => 0,
                };
                match s.current {
                    Some((e, ..)) if r.end < e => {
                        if let Some(h) = s.history.iter_mut().find(|h| h.0 == r.end) {
                            *h = (r.end, v, r.count);
                        }
                        continue;
                    }
                    Some((e, ..)) if r.end == e => {
                        s.current = Some((r.end, v, r.count));
                        continue;
                    }
                    prev => {
                        if let (Some(p), true) = (prev, keep > 0) {
                            s.history.push(p);
                            if s.history.len() > keep {
                                s.history.remove(0);
                            }
                        }
                        s.current = Some((r.end, v, r.count));
                    }
                }
                match cond {
                    Cond::Below(b) => v < b,
                    Cond::Above(a) => v > a,
                    Cond::Drop(d, n) => {
                        if s.history.len() < n {
                            continue;
                        }
                        let (sum, cnt) = s
                            .history
                            .iter()
                            .fold((0.0, 0u64), |(a, c), h| (a + h.1 * h.2 as f64, c + h.2));
                        v < sum / cnt as f64 * (1.0 - d)
                    }
                    Cond::Burn(..) => unreachable!(),
                }
            }
        };
        if breach != s.firing {
            s.firing = breach;
            let state = if breach { "firing" } else { "resolved" };
            out.push((
                r.ts,
                rule.into(),
                state.into(),
                r.family.clone(),
                r.end,
                r.segment.clone(),
                r.model.clone(),
            ));
        }
    }
    out
}

fn records(out: &Path) -> Vec<Record> {
    common::changelog(out, "alerts")
        .iter()
        .map(|r| {
            assert_eq!(r["diff"], 1, "alert records are never retracted: {r}");
            (
                r["ts"].as_u64().unwrap(),
                r["rule"].as_str().unwrap().into(),
                r["state"].as_str().unwrap().into(),
                r["window"].as_str().unwrap().into(),
                r["window_end"].as_u64().unwrap(),
                r["segment"].as_str().unwrap().into(),
                r["model_version"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

fn of_rule(all: &[Record], rule: &str) -> Vec<Record> {
    all.iter().filter(|r| r.1 == rule).cloned().collect()
}

#[test]
fn alerts_fire_and_resolve_where_the_changelogs_say() {
    let d = tempfile::tempdir().unwrap();
    let job = job(d.path());
    let live = d.path().join("live");
    common::run_job(&job, 1, &live);
    let quality = common::changelog(&live, "quality");
    let labels = common::changelog(&live, "label_health");
    let q: Vec<Final> = finals(&quality, "accuracy", "count")
        .into_iter()
        .filter(|r| r.model != "online")
        .collect();
    let l = finals(&labels, "latency_p95_ms", "labeled");
    let got = records(&live);

    let low = expect(
        "accuracy_low",
        &q,
        &["1m"],
        Some("all"),
        300,
        Cond::Below(0.7),
    );
    let drop = expect(
        "accuracy_drop",
        &q,
        &["1m"],
        Some("all"),
        300,
        Cond::Drop(0.15, 3),
    );
    let burn = expect(
        "error_budget_burn",
        &q,
        &["1m", "5m"],
        Some("all"),
        300,
        Cond::Burn(0.75, 1.5, 2),
    );
    let sample = expect("segment_sample", &q, &["1m"], None, 200, Cond::Below(1.01));
    let late = expect(
        "labels_late",
        &l,
        &["1m"],
        Some("all"),
        300,
        Cond::Above(89_000.0),
    );
    for (name, want) in [
        ("accuracy_low", &low),
        ("accuracy_drop", &drop),
        ("error_budget_burn", &burn),
        ("segment_sample", &sample),
        ("labels_late", &late),
    ] {
        assert_eq!(of_rule(&got, name), *want, "{name}");
    }
    assert_eq!(
        got.len(),
        low.len() + drop.len() + burn.len() + sample.len() + late.len()
    );

    // The stream's concept changes abruptly halfway: the first accuracy alert is for the window
    // holding the change, and the drop alert resolves once its baseline has moved on.
    let g = tidemark::generator::GeneratorParams::default();
    let change = g.start_ms + (g.abrupt_drift_at * EVENTS as f64 / RATE * 1000.0) as u64;
    let first = &low[0];
    assert_eq!(first.2, "firing");
    assert!(
        first.4 > change && first.4 - 60_000 <= change,
        "first alert window ends {} for a change at {change}",
        first.4
    );
    assert!(
        drop.len() >= 2 && drop[0].2 == "firing" && drop[1].2 == "resolved",
        "{drop:?}"
    );
    assert!(drop[0].4 > change, "{drop:?}");
    assert!(burn.iter().any(|r| r.2 == "firing"), "{burn:?}");
    assert!(
        late.iter().any(|r| r.2 == "firing") && late.iter().any(|r| r.2 == "resolved"),
        "the latency rule fires and resolves: {late:?}"
    );

    // Minimum sample size: segments whose windows never reach 200 examples never alert,
    // though the rule breaches in every window.
    let mut biggest: BTreeMap<&str, u64> = BTreeMap::new();
    for r in q.iter().filter(|r| r.family == "1m") {
        let e = biggest.entry(&r.segment).or_default();
        *e = (*e).max(r.count);
    }
    let alerted: BTreeSet<&str> = sample.iter().map(|r| r.5.as_str()).collect();
    let small: Vec<&str> = biggest
        .iter()
        .filter(|(_, n)| **n < 200)
        .map(|(s, _)| *s)
        .collect();
    let big: BTreeSet<&str> = biggest
        .iter()
        .filter(|(_, n)| **n >= 200)
        .map(|(s, _)| *s)
        .collect();
    assert!(!small.is_empty() && !big.is_empty(), "{biggest:?}");
    assert_eq!(alerted, big);
    assert!(sample.iter().all(|r| r.2 == "firing"));

    // The records carry the rule's severity and runbook, and a message naming the window.
    let lines = common::changelog(&live, "alerts");
    let r = lines.iter().find(|r| r["rule"] == "labels_late").unwrap();
    assert_eq!(r["severity"], "P3");
    assert_eq!(r["runbook"], "docs/runbooks/label-pipeline.md");
    assert!(
        r["message"].as_str().unwrap().contains("latency_p95_ms"),
        "{r}"
    );
    let r = lines.iter().find(|r| r["rule"] == "accuracy_drop").unwrap();
    assert!(r["baseline"].as_f64().is_some(), "{r}");

    // Same records on three workers, byte for byte.
    let three = d.path().join("three");
    common::run_job(&job, 3, &three);
    assert_eq!(
        std::fs::read(live.join("alerts.jsonl")).unwrap(),
        std::fs::read(three.join("alerts.jsonl")).unwrap()
    );

    // A replay of the second half gives the live run's records in its range: the alert state
    // at its start comes from the buffer's snapshot.
    let from = change + 120_000;
    let to = from + 6 * 60_000;
    let rep = d.path().join("replay");
    let opts = RunOptions {
        workers: 2,
        out_dir: Some(rep.clone()),
        ..Default::default()
    };
    replay(
        Job::load(&job).unwrap(),
        &live.join("replay"),
        from..to,
        &opts,
    )
    .unwrap();
    let in_range = |v: &[Record]| -> Vec<Record> {
        v.iter()
            .filter(|r| (from..to).contains(&r.0))
            .cloned()
            .collect()
    };
    let replayed = records(&rep);
    assert_eq!(replayed, in_range(&got));
    assert!(!replayed.is_empty(), "the range holds alert records");
}

#[test]
fn every_runbook_an_alert_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut named = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("dataflows")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let job = Job::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            named.extend(job.alerts.iter().map(|r| r.runbook.clone()));
        }
    }
    use tidemark::alerts::spec::Metric;
    for m in [
        Metric::Accuracy,
        Metric::LabeledFraction,
        Metric::Drift(tidemark::drift::spec::Statistic::Psi),
    ] {
        named.insert(m.default_runbook().to_string());
    }
    assert!(named.len() >= 3, "{named:?}");
    for r in &named {
        let text = std::fs::read_to_string(root.join(r)).unwrap_or_else(|e| panic!("{r}: {e}"));
        assert!(text.contains("tidemark "), "{r} names no command");
        assert!(text.contains("tidemark_"), "{r} names no metric");
    }
}

/// A rule on the shadow comparison: its windows are evaluated when they retire (shadow rows
/// have no final status), and the records equal a recomputation from `shadow.jsonl`, where a
/// window's retirement is its row's last line, a retraction.
#[test]
fn shadow_rules_fire_where_the_shadow_changelog_says() {
    let d = tempfile::tempdir().unwrap();
    let job = common::generator_job(
        d.path(),
        &common::Times::default(),
        &format!("events = {EVENTS}\nseed = 11\nrate_per_s = {RATE}"),
        r#"[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000

[outputs]
dir = "out"
summary = false

[learn]
publish_every = 1000

[[alerts]]
name = "shadow_disagrees"
metric = "shadow_agreement"
below = 0.8
windows = ["1m"]
segments = ["all"]
min_count = 100
severity = "P3"
"#,
    );
    let out = d.path().join("out");
    common::run_job(&job, 2, &out);
    let mut last: BTreeMap<(String, u64, String, String), Value> = BTreeMap::new();
    for r in common::changelog(&out, "shadow") {
        let key = (
            r["window"].as_str().unwrap().to_string(),
            r["window_end"].as_u64().unwrap(),
            r["segment"].as_str().unwrap().to_string(),
            r["model_version"].as_str().unwrap().to_string(),
        );
        last.insert(key, r);
    }
    let mut retired: Vec<Final> = last
        .into_values()
        .filter(|r| r["diff"] == -1)
        .map(|r| Final {
            ts: r["ts"].as_u64().unwrap(),
            family: r["window"].as_str().unwrap().into(),
            end: r["window_end"].as_u64().unwrap(),
            segment: r["segment"].as_str().unwrap().into(),
            model: r["model_version"].as_str().unwrap().into(),
            count: r["count"].as_u64().unwrap(),
            value: r["agreement"].as_f64(),
        })
        .collect();
    retired.sort_by_key(|a| (a.ts, a.end));
    let want = expect(
        "shadow_disagrees",
        &retired,
        &["1m"],
        Some("all"),
        100,
        Cond::Below(0.8),
    );
    let got = of_rule(&records(&out), "shadow_disagrees");
    assert!(
        got.iter().any(|r| r.2 == "firing"),
        "the rule fires: {retired:?}"
    );
    assert_eq!(got, want);
    // A shadow rule needs the online model.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[learn]\npublish_every = 1000\n", "");
    let e = Job::from_toml(&job, &text).unwrap_err().to_string();
    assert!(
        e.contains("alerts[0].metric") && e.contains("needs a [learn] table"),
        "{e}"
    );
}
