//! Alert records delivered to a real Alertmanager (Debian's `prometheus-alertmanager`, which
//! `.ci/run` installs) on 127.0.0.1: every alert firing at the end of a run is active there with
//! its labels and annotations, every alert tidemark resolved is not, and an Alertmanager
//! restarted mid-run (it keeps alerts in memory only) has every still-firing alert again.
//! Without Alertmanager these tests fail unless `TIDEMARK_SKIP_PROMETHEUS=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{demo_job as demo, free_port};
use serde_json::Value;

fn alertmanager() -> Option<PathBuf> {
    if std::env::var("TIDEMARK_SKIP_PROMETHEUS").as_deref() == Ok("1") {
        eprintln!("TIDEMARK_SKIP_PROMETHEUS=1: not testing against Alertmanager");
        return None;
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus-alertmanager"))
        .find(|p| p.is_file());
    assert!(
        found.is_some(),
        "prometheus-alertmanager not found: run `bash .ci/run` (it installs Debian's \
         prometheus-alertmanager), or set TIDEMARK_SKIP_PROMETHEUS=1"
    );
    found
}

/// Alertmanager on 127.0.0.1 with a receiver that delivers nowhere.
struct Am {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Am {
    fn start(bin: &Path, dir: &Path) -> Am {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("am.yml"),
            "route:\n  receiver: \"null\"\n  group_wait: 1s\nreceivers:\n  - name: \"null\"\n",
        )
        .unwrap();
        let mut am = Am {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        am.up();
        am
    }

    fn up(&mut self) {
        let log = std::fs::File::create(self.dir.join("am.log")).unwrap();
        self.child = Some(
            Command::new(&self.bin)
                .arg(format!(
                    "--config.file={}",
                    self.dir.join("am.yml").display()
                ))
                .arg(format!(
                    "--storage.path={}",
                    self.dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
                .arg("--cluster.listen-address=")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while ureq::get(format!("{}/-/ready", self.url())).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Alertmanager did not start:\n{}",
                std::fs::read_to_string(self.dir.join("am.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The active alerts: labels → annotations.
    fn active(&self) -> BTreeMap<BTreeMap<String, String>, BTreeMap<String, String>> {
        let v: Value = ureq::get(format!("{}/api/v2/alerts?active=true", self.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let map = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        };
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["status"]["state"] == "active")
            .map(|a| (map(&a["labels"]), map(&a["annotations"])))
            .collect()
    }
}

impl Drop for Am {
    fn drop(&mut self) {
        self.down();
    }
}

/// What the alerts changelog says is firing at the end: labels → summary.
fn firing_at_end(out: &Path) -> BTreeMap<BTreeMap<String, String>, String> {
    let mut last: BTreeMap<BTreeMap<String, String>, (bool, String)> = BTreeMap::new();
    for r in common::changelog(out, "alerts") {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), text(&r["rule"]));
        labels.insert("severity".to_string(), text(&r["severity"]));
        labels.insert("job".to_string(), "demo".to_string());
        labels.insert("segment".to_string(), text(&r["segment"]));
        for (k, col) in [("model_version", "model_version"), ("feature", "feature")] {
            if let Some(v) = r[col].as_str() {
                labels.insert(k.to_string(), v.to_string());
            }
        }
        last.insert(labels, (r["state"] == "firing", text(&r["message"])));
    }
    last.into_iter()
        .filter(|(_, (firing, _))| *firing)
        .map(|(l, (_, m))| (l, m))
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn run(job: &Path, am: &Am) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run"])
        .arg(job)
        .args([
            "--no-progress",
            "--metrics",
            "127.0.0.1:0",
            "--alertmanager",
        ])
        .arg(am.url())
        .args(["--alertmanager-resend", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Alertmanager's active alerts equal what tidemark's changelog has firing at the end, labels
/// and summary, with the rule's runbook.
fn assert_same(am: &Am, out: &Path) {
    let want = firing_at_end(out);
    let got = am.active();
    assert!(!want.is_empty(), "the demo fires alerts that stay firing");
    assert_eq!(
        got.keys().collect::<BTreeSet<_>>(),
        want.keys().collect::<BTreeSet<_>>(),
        "the active alerts in Alertmanager are the ones firing in alerts.jsonl"
    );
    for (labels, summary) in &want {
        let a = &got[labels];
        assert_eq!(&a["summary"], summary, "{labels:?}");
        assert!(a["runbook_url"].starts_with("docs/runbooks/"), "{a:?}");
        assert!(a.contains_key("value") && a.contains_key("window"), "{a:?}");
    }
}

#[test]
fn every_alert_firing_at_the_end_is_active_in_alertmanager_and_resolved_ones_are_not() {
    let Some(bin) = alertmanager() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let am = Am::start(&bin, &d.path().join("am"));
    let job = demo(d.path(), 60_000);
    let o = run(&job, &am).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let out = d.path().join("out");
    let want = firing_at_end(&out);
    assert!(
        stdout.contains(&format!("{} firing at the end", want.len())),
        "{stdout}"
    );
    // Some alerts fired and resolved during the run: Alertmanager does not hold them active.
    let resolved = common::changelog(&out, "alerts")
        .iter()
        .filter(|r| r["state"] == "resolved")
        .count();
    assert!(resolved > 0);
    assert_same(&am, &out);
    // Delivery is in the metrics (every family docs/metrics.md names for Alertmanager).
    let prom = std::fs::read_to_string(out.join("metrics.prom")).unwrap();
    let sample = |name: &str| -> f64 {
        prom.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in metrics.prom"))
            .parse()
            .unwrap()
    };
    assert!(sample("tidemark_alertmanager_alerts_sent_total") >= want.len() as f64);
    assert_eq!(sample("tidemark_alertmanager_failures_total"), 0.0);
    assert_eq!(
        sample("tidemark_alertmanager_active_alerts"),
        want.len() as f64
    );
}

#[test]
fn an_alertmanager_restarted_mid_run_gets_every_firing_alert_again() {
    let Some(bin) = alertmanager() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let mut am = Am::start(&bin, &d.path().join("am"));
    let job = demo(d.path(), 400_000);
    let mut child = run(&job, &am);
    let start = Instant::now();
    while am.active().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no alert arrived"
        );
        assert!(child.try_wait().unwrap().is_none(), "the job ended first");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Alertmanager loses its alerts; within a resend interval they are back.
    am.down();
    am.up();
    let start = Instant::now();
    while am.active().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no alert was re-sent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&am, &d.path().join("out"));
}

#[test]
fn a_resumed_run_sends_the_alerts_still_firing_from_before_its_crash() {
    let Some(bin) = alertmanager() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let first = Am::start(&bin, &d.path().join("am1"));
    let job = demo(d.path(), 400_000);
    let mut child = run(&job, &first);
    // Killed once alerts fired and the buffer committed past some of them.
    let committed = d.path().join("out/replay/COMMITTED");
    let start = Instant::now();
    while first.active().is_empty() || !committed.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no alert and commit"
        );
        assert!(child.try_wait().unwrap().is_none(), "the job ended first");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    // The resumed run delivers to an Alertmanager that has never seen the first run's alerts.
    let second = Am::start(&bin, &d.path().join("am2"));
    let o = run(&job, &second).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("resumed"),
        "the second run resumed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_same(&second, &d.path().join("out"));
}
