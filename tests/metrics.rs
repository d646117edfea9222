//! The Prometheus endpoint of `tidemark run`: every scrape during a run is valid text format
//! (parsed strictly) and its SLIs equal what the changelogs say as of the
//! timestamps the scrape claims to reflect; the final `metrics.prom` equals the whole changelogs.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

const RETENTION_MS: u64 = 600_000;

fn job(dir: &Path) -> std::path::PathBuf {
    let times = common::Times {
        retention: RETENTION_MS,
        ..Default::default()
    };
    let rest = format!(
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
entity_features = ["amount"]

[outputs]
dir = "out"
emit_interval_ms = 10000
summary = false

[drift]
reference = {{ from = "2026-01-01T00:00:00Z", to = "2026-01-01T00:08:00Z" }}
features = ["amount", "country"]

[[drift.alerts]]
statistic = "psi"
above = 0.2
severity = "P2"

[learn]
registry = "{registry}"
publish_every = 3000

[[alerts]]
name = "accuracy_low"
metric = "accuracy"
below = 0.7
windows = ["1m"]
min_count = 150
severity = "P2"
"#,
        registry = dir.join("registry").display(),
    );
    common::generator_job(
        dir,
        &times,
        "events = 40000\nseed = 5\nrate_per_s = 20.0",
        &rest,
    )
}

/// One GET of `/metrics`, or `None` while nothing listens.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    Some(body.to_string())
}

/// One sample of the text format.
#[derive(Debug)]
struct Sample {
    metric: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4) strictly: names, label escapes, values, `# TYPE`
/// before a family's samples, histogram suffixes and `le`, no duplicate series.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let is_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            assert!(is_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "{line}"
            );
            assert!(
                types.insert(name.into(), ty.into()).is_none(),
                "second TYPE: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(is_name(rest.split(' ').next().unwrap()), "{line}");
            continue;
        }
        assert!(!line.starts_with('#') || line.starts_with("# "), "{line}");
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample");
        let metric = &line[..name_end];
        assert!(is_name(metric), "{line}");
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            loop {
                let (i, c) = chars.next().expect("unterminated labels");
                if c == '}' {
                    rest = &r[i + 1..];
                    break;
                }
                if c == ',' {
                    continue;
                }
                let start = i;
                let mut eq = i;
                for (j, c) in chars.by_ref() {
                    if c == '=' {
                        eq = j;
                        break;
                    }
                }
                let key = &r[start..eq];
                assert!(is_name(key), "label name {key:?} in {line}");
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
                let mut v = String::new();
                loop {
                    match chars.next().expect("unterminated value").1 {
                        '"' => break,
                        '\\' => match chars.next().expect("escape").1 {
                            '\\' => v.push('\\'),
                            '"' => v.push('"'),
                            'n' => v.push('\n'),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        c => v.push(c),
                    }
                }
                assert!(
                    labels.insert(key.to_string(), v).is_none(),
                    "duplicate label in {line}"
                );
            }
        }
        let mut parts = rest.trim_start_matches(' ').split(' ');
        let v = parts.next().expect("value");
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp in {line}"));
        }
        assert!(parts.next().is_none(), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                metric
                    .strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(metric);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        if metric.ends_with("_bucket") && family != metric {
            assert!(labels.contains_key("le"), "{line}");
        }
        assert!(
            seen.insert((metric.to_string(), format!("{labels:?}"))),
            "duplicate series {line}"
        );
        out.push(Sample {
            metric: metric.into(),
            labels,
            value,
        });
    }
    out
}

/// Series of `metric` (with `fixed` labels) keyed by the values of `keys`.
fn series(
    scrape: &[Sample],
    metric: &str,
    keys: &[&str],
    fixed: &[(&str, &str)],
) -> BTreeMap<Vec<String>, f64> {
    scrape
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| {
            fixed
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| {
            let key = keys
                .iter()
                .map(|k| s.labels.get(*k).cloned().unwrap_or_default())
                .collect();
            (key, s.value)
        })
        .collect()
}

fn written_below(scrape: &[Sample], output: &str) -> u64 {
    let s = series(
        scrape,
        "tidemark_output_written_below_timestamp_seconds",
        &[],
        &[("output", output)],
    );
    match s.values().next() {
        Some(v) if v.is_infinite() => u64::MAX,
        Some(v) => (*v * 1000.0).round() as u64,
        None => 0,
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(String::new, str::to_string)
}

/// The newest final window's `column` per series of `keys`, from lines below `below`; series
/// whose newest window is more than the retention behind their family's newest are dropped,
/// and a null value has no series.
fn newest(
    rows: &[Value],
    below: u64,
    keys: &[&str],
    column: &str,
    per: f64,
) -> BTreeMap<Vec<String>, f64> {
    let mut cur: BTreeMap<Vec<String>, (u64, Option<f64>)> = BTreeMap::new();
    let mut family: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        if r["ts"].as_u64().unwrap() >= below || r["diff"] != 1 || r["status"] != "final" {
            continue;
        }
        let key: Vec<String> = keys.iter().map(|k| text(&r[*k])).collect();
        let end = r["window_end"].as_u64().unwrap();
        let e = cur.entry(key).or_insert((end, None));
        if end < e.0 {
            continue;
        }
        *e = (end, r[column].as_f64().map(|v| v / per));
        let f = family.entry(text(&r["window"])).or_default();
        *f = (*f).max(end);
    }
    cur.into_iter()
        .filter(|(k, (end, _))| end + RETENTION_MS >= family[&k[0]])
        .filter_map(|(k, (_, v))| v.map(|v| (k, v)))
        .collect()
}

/// Checks one scrape against the changelogs in `out`.
fn check(scrape: &[Sample], out: &Path, last: bool) {
    let quality = common::changelog(out, "quality");
    let labels = common::changelog(out, "label_health");
    let drift = common::changelog(out, "drift");
    let q = &["window", "segment", "model_version"];
    let below = written_below(scrape, "quality");
    for (metric, column) in [
        ("tidemark_quality_accuracy", "accuracy"),
        ("tidemark_quality_log_loss", "log_loss"),
        ("tidemark_quality_auc", "auc"),
        ("tidemark_quality_examples", "count"),
    ] {
        assert_eq!(
            series(scrape, metric, q, &[]),
            newest(&quality, below, q, column, 1.0),
            "{metric} below {below}"
        );
    }
    let l = &["window", "segment"];
    let below = written_below(scrape, "label_health");
    assert_eq!(
        series(scrape, "tidemark_label_completeness_ratio", l, &[]),
        newest(&labels, below, l, "labeled_fraction", 1.0)
    );
    assert_eq!(
        series(
            scrape,
            "tidemark_label_latency_seconds",
            l,
            &[("percentile", "0.95")]
        ),
        newest(&labels, below, l, "latency_p95_ms", 1000.0)
    );
    let d = &["window", "segment", "feature", "model_version"];
    let below = written_below(scrape, "drift");
    assert_eq!(
        series(scrape, "tidemark_drift_score", d, &[("statistic", "psi")]),
        newest(&drift, below, d, "psi", 1.0)
    );

    // Counters: the ingest changelog's latest row, dead letters and alert records counted.
    let below = written_below(scrape, "ingest");
    let mut ingest = BTreeMap::new();
    for r in common::changelog(out, "ingest") {
        if r["diff"] == 1 && r["ts"].as_u64().unwrap() < below {
            let outcomes = [
                ("read", "read"),
                ("accepted", "accepted"),
                ("dead_lettered", "dead_lettered"),
                ("duplicate", "duplicates"),
                ("too_late", "too_late_labels"),
                ("orphaned", "orphaned_labels"),
            ];
            for (o, column) in outcomes {
                // Labels alone can be too late or orphaned.
                if ["too_late", "orphaned"].contains(&o) && r["stream"] != "labels" {
                    continue;
                }
                ingest.insert(
                    vec![text(&r["stream"]), o.to_string()],
                    r[column].as_f64().unwrap(),
                );
            }
        }
    }
    assert_eq!(
        series(
            scrape,
            "tidemark_ingest_records_total",
            &["stream", "outcome"],
            &[]
        ),
        ingest
    );
    let below = written_below(scrape, "dead_letters");
    let mut dead: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for r in common::changelog(out, "dead_letters") {
        if r["ts"].as_u64().unwrap() < below {
            *dead.entry(vec![text(&r["stream"])]).or_default() += 1.0;
        }
    }
    let mut got: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for (k, v) in series(
        scrape,
        "tidemark_dead_letters_total",
        &["stream", "field", "reason"],
        &[],
    ) {
        *got.entry(vec![k[0].clone()]).or_default() += v;
    }
    assert_eq!(got, dead);
    let below = written_below(scrape, "alerts");
    let mut firing: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for r in common::changelog(out, "alerts") {
        if r["ts"].as_u64().unwrap() < below {
            let e = firing
                .entry(vec![text(&r["rule"]), text(&r["severity"])])
                .or_default();
            *e += if r["state"] == "firing" { 1.0 } else { -1.0 };
        }
    }
    let got: BTreeMap<_, _> = series(scrape, "tidemark_alerts_firing", &["rule", "severity"], &[])
        .into_iter()
        .filter(|(_, v)| *v != 0.0)
        .collect();
    firing.retain(|_, v| *v != 0.0);
    assert_eq!(got, firing);
    if last {
        // Freshness: min and max over the entities of each family's newest final window.
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        let mut fresh: BTreeMap<(String, u64, String), f64> = BTreeMap::new();
        for r in common::changelog(out, "entity_features") {
            let kept = r["diff"] == 1 && (r["status"] == "final" || r["status"] == "retired");
            if !kept {
                continue;
            }
            let (w, end) = (text(&r["window"]), r["window_end"].as_u64().unwrap());
            if r["status"] == "final" {
                let n = newest.entry(w.clone()).or_default();
                *n = (*n).max(end);
            }
            let f = r["freshness_ms"].as_f64().unwrap() / 1000.0;
            fresh.insert((w, end, text(&r["entity"])), f);
        }
        let mut want: BTreeMap<Vec<String>, f64> = BTreeMap::new();
        for ((w, end, _), f) in &fresh {
            if newest.get(w) == Some(end) {
                let lo = want.entry(vec![w.clone(), "min".into()]).or_insert(*f);
                *lo = lo.min(*f);
                let hi = want.entry(vec![w.clone(), "max".into()]).or_insert(*f);
                *hi = hi.max(*f);
            }
        }
        assert!(!want.is_empty());
        assert_eq!(
            series(
                scrape,
                "tidemark_feature_freshness_seconds",
                &["window", "stat"],
                &[]
            ),
            want
        );
        assert!(!firing.is_empty(), "the run fires alerts");
        let versions = common::changelog(out, "model_versions").len() as f64;
        let got = series(scrape, "tidemark_model_versions_published_total", &[], &[]);
        assert_eq!(got.values().next().copied().unwrap_or(0.0), versions);
        assert!(versions > 0.0);
        let mut decisions: BTreeMap<Vec<String>, f64> = BTreeMap::new();
        for r in common::changelog(out, "model_decisions") {
            *decisions.entry(vec![text(&r["action"])]).or_default() += 1.0;
        }
        assert_eq!(
            series(scrape, "tidemark_model_decisions_total", &["action"], &[]),
            decisions
        );
        // Shadow gauges: each series shows the last row written for its newest window.
        let mut shadow: BTreeMap<Vec<String>, (u64, f64, f64)> = BTreeMap::new();
        for r in common::changelog(out, "shadow") {
            if r["diff"] != 1 || r["count"].as_u64() == Some(0) {
                continue;
            }
            let key = vec![
                text(&r["window"]),
                text(&r["segment"]),
                text(&r["model_version"]),
            ];
            let end = r["window_end"].as_u64().unwrap();
            let v = (
                end,
                r["agreement"].as_f64().unwrap(),
                r["mean_abs_score_diff"].as_f64().unwrap(),
            );
            match shadow.get(&key) {
                Some((e, _, _)) if *e > end => {}
                _ => {
                    shadow.insert(key, v);
                }
            }
        }
        let s = &["window", "segment", "model_version"];
        let agreement = series(scrape, "tidemark_shadow_agreement_ratio", s, &[]);
        let divergence = series(scrape, "tidemark_shadow_score_divergence", s, &[]);
        assert!(!agreement.is_empty(), "no shadow series");
        assert_eq!(
            agreement.keys().collect::<Vec<_>>(),
            divergence.keys().collect::<Vec<_>>()
        );
        for (k, v) in &agreement {
            let (_, a, d) = shadow[k];
            assert_eq!((*v, divergence[k]), (a, d), "shadow {k:?}");
        }
        let commits = series(scrape, "tidemark_replay_commits_total", &[], &[]);
        assert!(
            commits.values().next().is_some_and(|c| *c > 0.0),
            "{commits:?}"
        );
        assert!(scrape
            .iter()
            .any(|s| s.metric == "tidemark_replay_commit_duration_seconds_count"));
        let read = series(
            scrape,
            "tidemark_source_records_read_total",
            &["stream"],
            &[],
        );
        assert_eq!(
            read[&vec!["events".to_string()]],
            ingest[&vec!["events".to_string(), "read".to_string()]]
        );
    }
}

#[test]
fn the_endpoint_serves_valid_text_whose_values_match_the_changelogs() {
    let d = tempfile::tempdir().unwrap();
    let job = job(d.path());
    let out = d.path().join("out");
    let port = common::free_port();
    let mut child = common::tidemark_run(&job, &out)
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .spawn()
        .unwrap();
    let mut scrapes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        if let Some(body) = scrape(port) {
            scrapes.push(body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains(&format!("metrics: http://127.0.0.1:{port}/metrics")),
        "{err}"
    );
    assert!(!scrapes.is_empty(), "no scrape answered while the job ran");
    for s in &scrapes {
        check(&parse(s), &out, false);
    }
    let last = std::fs::read_to_string(out.join("metrics.prom")).unwrap();
    // Every metric the dashboard and the reference name is one the job exposes.
    let families: std::collections::BTreeSet<&str> = last
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["docs/grafana-dashboard.json", "docs/metrics.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let mut named = 0;
        for (i, _) in text.match_indices("tidemark_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.ends_with('_') {
                continue; // a prefix, as in tidemark_source_*
            }
            if name.starts_with("tidemark_mlflow_") || name.starts_with("tidemark_alertmanager_") {
                // Only with [learn.mlflow] or --alertmanager: tests/mlflow.rs and
                // tests/alertmanager.rs check them.
                continue;
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
                .unwrap_or(&name);
            assert!(
                families.contains(family),
                "{doc} names {name}, which the job does not expose"
            );
            named += 1;
        }
        assert!(named > 10, "{doc}");
    }
    let last = parse(&last);
    assert_eq!(written_below(&last, "quality"), u64::MAX);
    check(&last, &out, true);
}
