//! The Prometheus rules in `docs/prometheus/` against Prometheus itself: `promtool check rules`
//! and `promtool test rules` (series shaped like a scrape of the demo), `promtool check
//! metrics` on a real scrape of a running job, and a real Prometheus scraping a running job and
//! evaluating the recording rules on its series.
//!
//! Prometheus comes from Debian (`prometheus`, which `.ci/run` installs); without it these
//! tests fail unless `TIDEMARK_SKIP_PROMETHEUS=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, generator_job, Times};
use serde_json::Value;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus")
}

/// `program` on the path, or None when the tests are told to skip.
fn tool(program: &str) -> Option<PathBuf> {
    if std::env::var("TIDEMARK_SKIP_PROMETHEUS").as_deref() == Ok("1") {
        eprintln!("TIDEMARK_SKIP_PROMETHEUS=1: not testing against Prometheus");
        return None;
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    assert!(
        found.is_some(),
        "{program} not found: run `bash .ci/run` (it installs Debian's prometheus), or set \
         TIDEMARK_SKIP_PROMETHEUS=1"
    );
    found
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    for args in [
        vec!["check", "rules", "tidemark-rules.yml"],
        vec!["test", "rules", "tidemark-rules.test.yml"],
    ] {
        let o = Command::new(&promtool)
            .args(&args)
            .current_dir(rules_dir())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// GET `url` as JSON, or None if it does not answer 200.
fn get_json(url: &str) -> Option<Value> {
    ureq::get(url).call().ok()?.body_mut().read_json().ok()
}

#[test]
fn prometheus_scraping_a_running_job_evaluates_the_recording_rules() {
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    // A long learning job with dead letters, labels and a shadow comparison.
    let job = generator_job(
        d.path(),
        &Times::default(),
        "events = 600000\nseed = 3\nrate_per_s = 20.0",
        &format!(
            "[[windows]]\nname = \"5m\"\nkind = \"tumbling\"\nsize_ms = 300000\n\
             [metrics]\nsegments = [\"country\"]\n\
             [outputs]\ndir = \"{}\"\nsummary = false\n\
             [learn]\npublish_every = 5000\n",
            s(&d.path().join("out"))
        ),
    );
    let port = free_port();
    let _job = Killed(
        Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["run", &s(&job), "--no-progress", "--metrics"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let start = Instant::now();
    // A scrape once the job has written final windows passes promtool's checks.
    let scrape = loop {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no scrape with a final window"
        );
        if let Ok(mut r) = ureq::get(&metrics).call() {
            let text = r.body_mut().read_to_string().unwrap();
            if text.contains("tidemark_label_completeness_ratio{") {
                break text;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let o = check.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // Every tidemark metric the rules read is one the job exposes (the MLflow backlog only
    // with `[learn.mlflow]`, which tests/mlflow.rs checks).
    let families: std::collections::BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let rules_text = std::fs::read_to_string(rules_dir().join("tidemark-rules.yml")).unwrap();
    for (i, _) in rules_text.match_indices("tidemark_") {
        let name: String = rules_text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(
            families.contains(family) || family.starts_with("tidemark_mlflow_"),
            "the rules read {name}, which the job does not expose"
        );
    }

    // Prometheus scrapes it every second and evaluates the rules every second.
    let rules = std::fs::read_to_string(rules_dir().join("tidemark-rules.yml"))
        .unwrap()
        .replace("interval: 30s", "interval: 1s");
    std::fs::write(d.path().join("rules.yml"), rules).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [\"{}\"]\n\
         scrape_configs:\n  - job_name: tidemark\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n",
        s(&d.path().join("rules.yml"))
    );
    std::fs::write(d.path().join("prometheus.yml"), config).unwrap();
    let web = free_port();
    let log = std::fs::File::create(d.path().join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                s(&d.path().join("prometheus.yml"))
            ))
            .arg(format!("--storage.tsdb.path={}", s(&d.path().join("tsdb"))))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{web}/api/v1/query?query={}",
            q.replace('+', "%2B")
                .replace(' ', "%20")
                .replace('"', "%22")
        );
        get_json(&url)
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    };
    let recorded = [
        "tidemark:dead_letter_ratio:rate5m",
        "tidemark:dead_letter_budget_burn:rate5m",
        "tidemark:model_accuracy:newest",
        "tidemark:model_error_budget_burn:newest",
        "tidemark:label_completeness:newest",
        "tidemark:update_latency_seconds:p99_10m",
        "tidemark:shadow_disagreement:newest",
    ];
    let start = Instant::now();
    let mut missing: Vec<&str> = recorded.to_vec();
    while !missing.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "recording rules without samples: {missing:?}\n{}",
            std::fs::read_to_string(d.path().join("prometheus.log")).unwrap_or_default()
        );
        missing.retain(|r| query(r).is_empty());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(query("up{job=\"tidemark\"}")[0]["value"][1], "1");
    // The rules read tidemark's series with their labels.
    let ratio = query("tidemark:dead_letter_ratio:rate5m");
    let streams: Vec<&str> = ratio
        .iter()
        .filter_map(|r| r["metric"]["stream"].as_str())
        .collect();
    for stream in ["events", "predictions", "labels"] {
        assert!(streams.contains(&stream), "{ratio:?}");
    }
    for r in &ratio {
        let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
        assert!((0.0..0.05).contains(&v), "{r}");
    }
    let accuracy = query("tidemark:model_accuracy:newest");
    assert!(
        accuracy
            .iter()
            .all(|r| r["metric"]["model_version"] != "online" && r["metric"]["segment"] == "all"),
        "{accuracy:?}"
    );
}
