//! Publishing to a real MLflow server (`mlflow server` on 127.0.0.1, SQLite backend, local
//! artifact store behind its proxy): a learning job's versions, parameters, metrics, lineage and
//! aliases as MLflow's REST API returns them; the champion loaded with `mlflow.pyfunc` and served
//! by `mlflow models serve` scores events as tidemark does; MLflow stopped mid-run loses and
//! doubles nothing; `models sync` publishes a run that had no MLflow.
//!
//! MLflow comes from `.ci/venv` (which `.ci/run` installs) or `TIDEMARK_MLFLOW_PYTHON`; with
//! neither, these tests fail unless `TIDEMARK_SKIP_MLFLOW=1`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, generator_job, Times};
use serde_json::{json, Value};
use tidemark::registry::Registry;

/// The Python of an environment with MLflow, or None when the tests are told to skip.
fn mlflow_python() -> Option<PathBuf> {
    if std::env::var("TIDEMARK_SKIP_MLFLOW").as_deref() == Ok("1") {
        eprintln!("TIDEMARK_SKIP_MLFLOW=1: not testing against MLflow");
        return None;
    }
    let python = std::env::var_os("TIDEMARK_MLFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import mlflow"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import mlflow: run `bash .ci/run` (it installs MLflow into .ci/venv), set \
         TIDEMARK_MLFLOW_PYTHON to a Python with MLflow, or set TIDEMARK_SKIP_MLFLOW=1",
        python.display()
    );
    Some(python)
}

/// A command of the MLflow environment (its `bin/` first on the path, no telemetry).
fn mlflow_command(python: &Path, program: &str) -> Command {
    let bin = python.parent().unwrap();
    let mut c = Command::new(bin.join(program));
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{}:{path}", bin.display()))
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .stdin(Stdio::null());
    c
}

/// A process group killed when dropped (MLflow's servers fork workers).
struct Group(Child);

impl Group {
    fn spawn(mut c: Command, log: &Path) -> Group {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log).unwrap();
        c.stdout(log.try_clone().unwrap()).stderr(log);
        Group(c.process_group(0).spawn().unwrap())
    }

    fn kill(&mut self) {
        // SAFETY: signals the process group this test started.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `mlflow server` on 127.0.0.1 with its database and artifacts under `dir`.
struct Server {
    python: PathBuf,
    dir: PathBuf,
    port: u16,
    process: Option<Group>,
}

impl Server {
    fn start(python: &Path, dir: &Path) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let mut s = Server {
            python: python.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port(),
            process: None,
        };
        s.up();
        s
    }

    fn up(&mut self) {
        let mut c = mlflow_command(&self.python, "mlflow");
        c.args(["server", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.dir.join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .args(["--workers", "1"]);
        self.process = Some(Group::spawn(c, &self.dir.join("server.log")));
        wait_http(
            &format!("{}/health", self.uri()),
            Duration::from_secs(180),
            || std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default(),
        );
    }

    fn down(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut r = ureq::get(format!("{}/api/2.0/mlflow/{path}", self.uri()));
        for (k, v) in query {
            r = r.query(*k, *v);
        }
        r.call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        ureq::post(format!("{}/api/2.0/mlflow/{path}", self.uri()))
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap()
    }

    /// The registered model's versions: tidemark version → every MLflow version carrying it.
    fn versions(&self, name: &str) -> BTreeMap<String, Vec<Value>> {
        let filter = format!("name='{name}'");
        let v = self.get(
            "model-versions/search",
            &[("filter", filter.as_str()), ("max_results", "1000")],
        );
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for mv in v["model_versions"].as_array().cloned().unwrap_or_default() {
            let tv = tags(&mv)["tidemark.version"].clone();
            out.entry(tv).or_default().push(mv);
        }
        out
    }

    /// Alias → MLflow version number.
    fn aliases(&self, name: &str) -> BTreeMap<String, String> {
        let v = self.get("registered-models/get", &[("name", name)]);
        v["registered_model"]["aliases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                (
                    a["alias"].as_str().unwrap().to_string(),
                    a["version"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Every run of the experiment named `name`.
    fn runs(&self, name: &str) -> Vec<Value> {
        let e = self.get("experiments/get-by-name", &[("experiment_name", name)]);
        let id = e["experiment"]["experiment_id"].as_str().unwrap();
        let r = self.post(
            "runs/search",
            &json!({ "experiment_ids": [id], "max_results": 1000 }),
        );
        r["runs"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.down();
    }
}

fn tags(v: &Value) -> BTreeMap<String, String> {
    v["tags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits (bounded) until `url` answers 200; on timeout, fails with `log()`.
fn wait_http(url: &str, limit: Duration, log: impl Fn() -> String) {
    let start = Instant::now();
    loop {
        if ureq::get(url).call().is_ok() {
            return;
        }
        if start.elapsed() > limit {
            panic!("{url} did not answer within {limit:?}:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A learning job over the generator publishing to `registry` (and to MLflow at `uri`).
fn learning_job(dir: &Path, events: u64, publish_every: u64, mlflow: Option<&str>) -> PathBuf {
    let mlflow = mlflow
        .map(|uri| {
            format!("[learn.mlflow]\ntracking_uri = \"{uri}\"\nregistered_model = \"fraud\"\n")
        })
        .unwrap_or_default();
    generator_job(
        dir,
        &Times::default(),
        &format!("events = {events}\nseed = 7\nrate_per_s = 20.0"),
        &format!(
            "[[windows]]\nname = \"5m\"\nkind = \"tumbling\"\nsize_ms = 300000\n\
             [metrics]\nsegments = [\"country\"]\n\
             [outputs]\ndir = \"{out}\"\n\
             [learn]\nregistry = \"{reg}\"\npublish_every = {publish_every}\nbatch_size = 32\n\
             [learn.rollback]\nmin_accuracy = 0.4\n\
             {mlflow}",
            out = s(&dir.join("out")),
            reg = s(&dir.join("out").join("registry")),
        ),
    )
}

fn tidemark(args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tidemark {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn run_job(job: &Path) -> String {
    let o = tidemark(&["run", &s(job), "--no-progress", "--metrics", "off"]);
    String::from_utf8(o.stdout).unwrap()
}

/// MLflow holds each version of the registry exactly once, with its checksum, and its aliases
/// name the registry's champion and challenger.
fn assert_mirrors(server: &Server, reg: &Registry) {
    let held = server.versions("fraud");
    let local = reg.versions().unwrap();
    assert_eq!(
        held.keys().cloned().collect::<Vec<_>>(),
        local,
        "MLflow holds every version of the registry, and nothing else"
    );
    for (v, mvs) in &held {
        assert_eq!(mvs.len(), 1, "{v} is in MLflow {} times", mvs.len());
        let file = reg.version(v).unwrap();
        assert_eq!(tags(&mvs[0])["tidemark.checksum"], file.checksum, "{v}");
    }
    let number = |v: &Option<String>| {
        v.as_ref()
            .map(|v| held[v][0]["version"].as_str().unwrap().to_string())
    };
    let f = reg.read().unwrap();
    let aliases = server.aliases("fraud");
    assert_eq!(
        aliases.get("champion").cloned(),
        number(&f.champion),
        "champion"
    );
    assert_eq!(
        aliases.get("challenger").cloned(),
        number(&f.challenger),
        "challenger"
    );
}

/// Scores `events` with `model_uri` through `mlflow.pyfunc` and compares with tidemark's scores
/// (`tm`, JSON lines of event id and score, in file order): (rows compared, largest difference).
fn compare_pyfunc(python: &Path, uri: &str, model_uri: &str, events: &Path, tm: &Path) -> Value {
    let script = r#"
import json, sys
from collections import defaultdict
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
expected = defaultdict(list)
for line in open(sys.argv[3]):
    r = json.loads(line)
    expected[r["event_id"]].append(r["score"])
rows = []
for line in open(sys.argv[2]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if isinstance(r, dict) and r.get("event_id") in expected:
        rows.append(r)
# tidemark scored the events it accepts; refused lines are not in `expected`.
seen = defaultdict(int)
keep = []
for r in rows:
    i = seen[r["event_id"]]
    seen[r["event_id"]] += 1
    if i < len(expected[r["event_id"]]):
        keep.append((r, expected[r["event_id"]][i]))
scores = model.predict(pd.DataFrame([r for r, _ in keep]))
worst = max(abs(float(a) - b) for a, (_, b) in zip(scores, keep))
print(json.dumps({"compared": len(keep), "max_diff": worst, "version": model.metadata.metadata["tidemark_version"]}))
"#;
    let o = mlflow_command(python, "python")
        .env("MLFLOW_TRACKING_URI", uri)
        .args(["-c", script, model_uri, &s(events), &s(tm)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mlflow.pyfunc failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

#[test]
fn a_learning_job_publishes_versions_with_lineage_aliases_and_a_servable_model() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let server = Server::start(&python, &d.path().join("mlflow"));
    let job = learning_job(d.path(), 20_000, 1000, Some(&server.uri()));
    let summary = run_job(&job);
    let reg = Registry::existing(&d.path().join("out").join("registry")).unwrap();
    let local = reg.versions().unwrap();
    assert!(
        local.len() >= 5,
        "the job published {} versions",
        local.len()
    );
    assert!(
        summary.contains(&format!("MLflow: {} versions published", local.len())),
        "{summary}"
    );
    assert_mirrors(&server, &reg);

    // Lineage as tags of the model version, hyperparameters and metrics on its run.
    let held = server.versions("fraud");
    let v = &local[2];
    let file = reg.version(v).unwrap();
    let mv = &held[v][0];
    let t = tags(mv);
    let bytes = std::fs::read(reg.version_path(v)).unwrap();
    assert_eq!(t["tidemark.job"], "gen");
    assert_eq!(t["tidemark.job_fingerprint"], file.lineage.job_fingerprint);
    assert_eq!(t["tidemark.parent"], local[1]);
    assert_eq!(
        t["tidemark.file_sha256"],
        tidemark::replay::segment::sha256_hex(&bytes)
    );
    assert_eq!(t["tidemark.examples"], file.examples.to_string());
    assert_eq!(
        t["tidemark.replay_from_ts"],
        file.lineage.from_ts.to_string()
    );
    assert_eq!(t["tidemark.replay_to_ts"], file.lineage.to_ts.to_string());
    assert_eq!(
        t["tidemark.trained_from_ts"],
        file.trained_from_ts.to_string()
    );
    let run = server.get("runs/get", &[("run_id", mv["run_id"].as_str().unwrap())]);
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    let params: BTreeMap<String, String> = run["run"]["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (k, want) in [
        ("batch_size", "32"),
        ("publish_every", "1000"),
        ("hash_bits", "10"),
        ("l2", "0.00001"),
        ("clip", "10.0"),
        ("learning_rate.kind", "adagrad"),
        ("learning_rate.rate", "0.1"),
        ("canary.window", "1000"),
        ("canary.max_loss_margin", "0.01"),
        ("rollback.min_accuracy", "0.4"),
        ("model.loss", "log"),
    ] {
        assert_eq!(params.get(k).map(String::as_str), Some(want), "param {k}");
    }
    let metrics: BTreeMap<String, f64> = run["run"]["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["key"].as_str().unwrap().to_string(),
                m["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(metrics["examples"], file.examples as f64);
    assert_eq!(
        metrics["canary.window_examples"],
        file.metrics.window_examples as f64
    );
    if let Some(l) = file.metrics.log_loss {
        assert_eq!(metrics["canary.log_loss"], l);
    }
    // The version file itself records the hyperparameters in clear.
    let h = file
        .hyperparameters
        .as_ref()
        .expect("hyperparameters recorded");
    assert_eq!(h.batch_size, 32);
    assert!(h.mlflow.is_none() && h.registry.is_none());

    // An operator's rollback and promote reach MLflow at once (the job recorded its target in
    // the registry), and `models sync` then finds nothing to publish.
    let r = s(reg.dir());
    let o = tidemark(&["models", "--registry", &r, "rollback", "--reason", "test"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("champion →"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_mirrors(&server, &reg);
    let latest = local.last().unwrap();
    tidemark(&["models", "--registry", &r, "promote", latest]);
    assert_mirrors(&server, &reg);
    assert_eq!(
        server.aliases("fraud")["champion"],
        held[latest][0]["version"].as_str().unwrap()
    );
    let synced = tidemark(&["models", "--registry", &r, "sync"]);
    let text = String::from_utf8_lossy(&synced.stdout).to_string();
    assert!(
        text.contains(&format!("{} versions, 0 published now", local.len())),
        "{text}"
    );
    assert_mirrors(&server, &reg);

    // The champion, loaded by MLflow, scores events as tidemark's model does.
    let gen = d.path().join("gen");
    tidemark(&["generate", "--out", &s(&gen), "--job", &s(&job)]);
    let events = gen.join("events.jsonl");
    let scored = tidemark(&[
        "models",
        "--registry",
        &r,
        "score",
        "champion",
        "--job",
        &s(&job),
        "--events",
        &s(&events),
    ]);
    let tm = d.path().join("tidemark-scores.jsonl");
    std::fs::write(&tm, &scored.stdout).unwrap();
    let c = compare_pyfunc(
        &python,
        &server.uri(),
        "models:/fraud@champion",
        &events,
        &tm,
    );
    assert_eq!(c["version"], latest.as_str());
    assert!(c["compared"].as_u64().unwrap() >= 19_000, "{c}");
    assert!(c["max_diff"].as_f64().unwrap() <= 1e-12, "{c}");

    // `mlflow models serve` answers a scoring request with the same numbers.
    let port = free_port();
    let mut serve = mlflow_command(&python, "mlflow");
    serve
        .env("MLFLOW_TRACKING_URI", server.uri())
        .args([
            "models",
            "serve",
            "-m",
            "models:/fraud@champion",
            "--env-manager",
            "local",
        ])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    let log = d.path().join("serve.log");
    let _serve = Group::spawn(serve, &log);
    wait_http(
        &format!("http://127.0.0.1:{port}/ping"),
        Duration::from_secs(180),
        || std::fs::read_to_string(&log).unwrap_or_default(),
    );
    let lines: Vec<Value> = std::fs::read_to_string(&tm)
        .unwrap()
        .lines()
        .take(50)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    let rows: Vec<Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["event_id"].as_str().is_some_and(|id| ids.contains(&id)))
        .take(50)
        .collect();
    assert_eq!(rows.len(), 50);
    let columns = [
        "event_id",
        "amount",
        "age_days",
        "velocity",
        "score_ext",
        "country",
        "device",
    ];
    let data: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| r[*c].clone()).collect())
        .collect();
    let answer: Value = ureq::post(format!("http://127.0.0.1:{port}/invocations"))
        .send_json(json!({ "dataframe_split": { "columns": columns, "data": data } }))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let served = answer["predictions"].as_array().unwrap();
    assert_eq!(served.len(), 50);
    for (row, (got, want)) in rows.iter().zip(served.iter().zip(&lines)) {
        assert_eq!(row["event_id"], want["event_id"]);
        let (a, b) = (got.as_f64().unwrap(), want["score"].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-12,
            "{}: served {a}, tidemark {b}",
            want["event_id"]
        );
    }

    // A replay publishes nothing.
    let runs = server.runs("fraud").len();
    tidemark(&[
        "replay",
        &s(&job),
        "--from",
        "0",
        "--out",
        &s(&d.path().join("replay")),
    ]);
    assert_eq!(server.runs("fraud").len(), runs);
    assert_eq!(runs, local.len(), "one run per version");
}

#[test]
fn mlflow_stopped_mid_run_loses_nothing_and_doubles_nothing() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let mut server = Server::start(&python, &d.path().join("mlflow"));
    let job = learning_job(d.path(), 400_000, 2000, Some(&server.uri()));
    let mut run = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", &s(&job), "--no-progress", "--metrics", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop MLflow once it holds a few versions, and start it again a while later.
    let start = Instant::now();
    while server.versions("fraud").len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no versions reached MLflow"
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "the job ended before MLflow held 3 versions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.down();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the job ended while MLflow was down: make it longer"
    );
    server.up();
    let o = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reg = Registry::existing(&d.path().join("out").join("registry")).unwrap();
    let local = reg.versions().unwrap().len();
    assert!(
        stdout.contains(&format!("MLflow: {local} versions published")),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed attempts"),
        "the outage was seen: {stdout}"
    );
    assert_mirrors(&server, &reg);
    assert_eq!(server.runs("fraud").len(), local, "one run per version");
}

#[test]
fn models_sync_publishes_a_run_that_had_no_mlflow_and_completes_an_interrupted_one() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let job = learning_job(d.path(), 10_000, 1000, None);
    run_job(&job);
    let reg = Registry::existing(&d.path().join("out").join("registry")).unwrap();
    let local = reg.versions().unwrap();
    let server = Server::start(&python, &d.path().join("mlflow"));

    // A sync that died after creating the first version's run, before finishing it.
    let e = server.post("experiments/create", &json!({ "name": "fraud" }));
    let first = reg.version(&local[0]).unwrap();
    server.post(
        "runs/create",
        &json!({
            "experiment_id": e["experiment_id"],
            "run_name": local[0],
            "tags": [
                { "key": "tidemark.version", "value": local[0] },
                { "key": "tidemark.checksum", "value": first.checksum },
            ],
        }),
    );

    let r = s(reg.dir());
    let uri = server.uri();
    let sync = || {
        let o = tidemark(&[
            "models",
            "--registry",
            &r,
            "sync",
            "--mlflow",
            &uri,
            "--registered-model",
            "fraud",
        ]);
        String::from_utf8(o.stdout).unwrap()
    };
    let text = sync();
    assert!(
        text.contains(&format!(
            "{} versions, {} published now",
            local.len(),
            local.len()
        )),
        "{text}"
    );
    assert_mirrors(&server, &reg);
    let runs = server.runs("fraud");
    assert_eq!(
        runs.len(),
        local.len(),
        "the interrupted run was completed, not doubled"
    );
    assert!(runs.iter().all(|r| r["info"]["status"] == "FINISHED"));
    // Again: nothing new.
    let text = sync();
    assert!(text.contains(", 0 published now"), "{text}");
    assert_eq!(server.runs("fraud").len(), local.len());
    assert_mirrors(&server, &reg);
}

/// Needs no MLflow: a server that cannot be reached costs the job nothing. It finishes, its
/// outputs are those of the job without `[learn.mlflow]`, and the summary names the backlog.
#[test]
fn an_unreachable_mlflow_leaves_a_backlog_and_changes_no_output() {
    let d = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let with = d.path().join("with");
    let without = d.path().join("without");
    std::fs::create_dir_all(&with).unwrap();
    std::fs::create_dir_all(&without).unwrap();
    let o = tidemark(&[
        "run",
        &s(&learning_job(&with, 6000, 1000, Some(&closed))),
        "--no-progress",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let summary = String::from_utf8(o.stdout).unwrap();
    run_job(&learning_job(&without, 6000, 1000, None));
    let reg = Registry::existing(&with.join("out").join("registry")).unwrap();
    let versions = reg.versions().unwrap().len();
    assert!(versions >= 2, "{versions} versions");
    assert!(
        summary.contains("MLflow: 0 versions published")
            && summary.contains("are not in MLflow yet")
            && summary.contains("tidemark models sync"),
        "{summary}"
    );
    let backlog: u64 = summary
        .lines()
        .find_map(|l| l.trim().split(" versions and aliases").next()?.parse().ok())
        .expect("a backlog line");
    let f = reg.read().unwrap();
    let aliases = [&f.champion, &f.challenger]
        .iter()
        .filter(|a| a.is_some())
        .count();
    assert_eq!(backlog, (versions + aliases) as u64, "{summary}");
    // The backlog is a metric too (every family docs/metrics.md names for MLflow).
    let prom = with.join("out/metrics.prom");
    let text = std::fs::read_to_string(&prom).unwrap();
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in metrics.prom:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(sample("tidemark_mlflow_backlog"), backlog as f64);
    assert!(sample("tidemark_mlflow_failures_total") >= 1.0);
    assert_eq!(sample("tidemark_mlflow_published_versions_total"), 0.0);
    std::fs::remove_file(&prom).unwrap();
    // The registry names its MLflow target, for operators' commands; nothing else differs.
    let target = with
        .join("out/registry")
        .join(tidemark::mlflow::TARGET_FILE);
    let bytes = std::fs::read(&target).unwrap();
    let t: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(t["tracking_uri"], closed.as_str());
    assert_eq!(t["registered_model"], "fraud");
    std::fs::remove_file(&target).unwrap();
    common::assert_same_outputs(
        &with.join("out"),
        &without.join("out"),
        "with an unreachable MLflow",
    );
    // An operator's change still happens, with a warning that MLflow did not follow.
    std::fs::write(&target, bytes).unwrap();
    let r = s(reg.dir());
    let o = tidemark(&["models", "--registry", &r, "promote", "v000001"]);
    assert_eq!(reg.read().unwrap().champion.as_deref(), Some("v000001"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("MLflow not updated") && err.contains("sync` retries"),
        "{err}"
    );
}
