//! Operators' commands reach a running job: `tidemark models pause|promote|rollback|resume`
//! against the demo job while it runs, through the binary. Each waits for the learner's
//! decision; the decision is in `model_decisions` (by the operator, naming the command) and in
//! the registry; a job killed right after a command keeps it when it resumes; a command given
//! while no job runs is taken up by the next start; a replay of the buffer shows them all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::demo_job;

/// The demo job with 400k events (it runs long enough for commands) in a temporary
/// directory: the directory, the job file, its outputs, its registry and its log file.
fn demo() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let job = demo_job(d.path(), 400_000);
    let out = d.path().join("out");
    let registry = out.join("registry");
    let log = d.path().join("run.log");
    (d, job, out, registry, log)
}

fn start(job: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("run")
        .arg(job)
        .args(["--no-progress", "--metrics", "off"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn models(registry: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("models")
        .arg("--registry")
        .arg(registry)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    text
}

fn registry_file(registry: &Path) -> Value {
    let text = std::fs::read_to_string(registry.join("REGISTRY.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn versions(registry: &Path) -> usize {
    std::fs::read_dir(registry.join("versions"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (bounded) until the running job has published `n` versions and has a champion.
fn wait_for_versions(child: &mut Child, registry: &Path, n: usize, log: &Path) {
    let start = Instant::now();
    while versions(registry) < n || registry_file(registry)["champion"].is_null() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended first: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no versions published"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(mut child: Child, log: &Path) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return;
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("the job did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn changelog(out: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(out.join(format!("{name}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The operators' decisions of a changelog, as (command, action, champion, ts).
fn operator_decisions(decisions: &[Value]) -> Vec<(u64, String, Value, u64)> {
    decisions
        .iter()
        .filter(|d| d["by"] == "operator")
        .map(|d| {
            (
                d["command"].as_u64().unwrap(),
                d["action"].as_str().unwrap().to_string(),
                d["champion"].clone(),
                d["ts"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The job's own gate decisions (it publishes only while it learns) between two timestamps.
fn gate_decisions(decisions: &[Value], from: u64, to: u64) -> usize {
    decisions
        .iter()
        .filter(|d| d["by"] == "job")
        .filter(|d| matches!(d["action"].as_str(), Some("promote" | "block")))
        .filter(|d| (from..to).contains(&d["ts"].as_u64().unwrap()))
        .count()
}

/// Replays the buffer of `job` over `[from, to)` into `into`: its decisions equal the live
/// run's in that range.
fn assert_replay_shows_them(job: &Path, out: &Path, into: &Path, (from, to): (u64, u64)) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    c.arg("replay")
        .arg(job)
        .args(["--from", &from.to_string(), "--out"])
        .arg(into);
    if to != u64::MAX {
        c.args(["--to", &to.to_string()]);
    }
    ok(&c.output().unwrap());
    let within = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .filter(|r| (from..to).contains(&r["ts"].as_u64().unwrap()))
            .collect()
    };
    let replayed = within(changelog(into, "model_decisions"));
    assert!(!operator_decisions(&replayed).is_empty());
    assert_eq!(
        replayed,
        within(changelog(out, "model_decisions")),
        "a replay of the buffer makes the live run's decisions, the operators' among them"
    );
}

/// A replay of the whole buffer, and one of just the commands' range (from the learner's
/// snapshot before it), make the live run's decisions.
fn assert_replays_show_them(job: &Path, out: &Path, dir: &Path, (first, last): (u64, u64)) {
    assert_replay_shows_them(job, out, &dir.join("replayed"), (0, u64::MAX));
    assert_replay_shows_them(job, out, &dir.join("range"), (first, last + 1));
}

#[test]
fn each_command_reaches_the_running_job_and_a_replay_shows_it() {
    let (d, job, out, registry, log) = demo();
    let mut child = start(&job, &log);
    wait_for_versions(&mut child, &registry, 3, &log);

    let said = ok(&models(&registry, &["pause", "--reason", "incident 42"]));
    assert!(
        said.contains("pause: champion") && said.contains("ms after the command"),
        "{said}"
    );
    assert_eq!(registry_file(&registry)["paused"], true);
    let champion = registry_file(&registry)["champion"]
        .as_str()
        .unwrap()
        .to_string();
    // An earlier version than the champion, promoted while paused.
    let target = if champion == "v000001" {
        "v000002"
    } else {
        "v000001"
    };
    let said = ok(&models(&registry, &["promote", target]));
    assert!(
        said.contains(&format!("promote: champion {target}")),
        "{said}"
    );
    assert_eq!(registry_file(&registry)["champion"], target);
    // A rollback restores the champion before the operator's.
    let said = ok(&models(&registry, &["rollback"]));
    assert!(
        said.contains(&format!("rollback: champion {champion}, updates paused")),
        "{said}"
    );
    // A promote of a version that does not exist is refused before it is sent.
    let o = models(&registry, &["promote", "v999999"]);
    assert!(!o.status.success());
    // One of another job's versions is refused by the learner: a decision that says why.
    let reg = tidemark::registry::Registry::existing(&registry).unwrap();
    let mut foreign = reg.version("v000001").unwrap();
    foreign.version = "v000900".into();
    foreign.job = "another".into();
    let foreign = foreign.sealed();
    std::fs::write(
        registry.join("versions/v000900.json"),
        serde_json::to_vec_pretty(&foreign).unwrap(),
    )
    .unwrap();
    let o = models(&registry, &["promote", "v000900"]);
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success() && said.contains("refused") && said.contains("trained by job"),
        "{said}"
    );
    assert_eq!(registry_file(&registry)["champion"], champion.as_str());
    let said = ok(&models(&registry, &["resume", "--reason", "fixed"]));
    assert!(said.contains("resume: champion"), "{said}");
    assert_eq!(registry_file(&registry)["paused"], false);
    finish(child, &log);

    let decisions = changelog(&out, "model_decisions");
    let ops = operator_decisions(&decisions);
    let got: Vec<(u64, &str, &Value)> = ops
        .iter()
        .map(|(c, a, ch, _)| (*c, a.as_str(), ch))
        .collect();
    let v = |s: &str| Value::String(s.into());
    assert_eq!(
        got,
        [
            (1, "pause", &v(&champion)),
            (2, "promote", &v(target)),
            (3, "rollback", &v(&champion)),
            (4, "refuse", &v(&champion)),
            (5, "resume", &v(&champion)),
        ],
        "{ops:?}"
    );
    let (paused_at, resumed_at) = (ops[0].3, ops[4].3);
    assert!(
        ops.windows(2).all(|w| w[0].3 <= w[1].3),
        "applied in order: {ops:?}"
    );
    assert_eq!(
        gate_decisions(&decisions, paused_at + 1, resumed_at),
        0,
        "nothing published while paused"
    );
    assert!(
        gate_decisions(&decisions, resumed_at + 1, u64::MAX) > 0,
        "learning again after the resume"
    );
    // The registry's history has each command once, as the changelog has it.
    let history = registry_file(&registry)["history"]
        .as_array()
        .unwrap()
        .clone();
    for (command, action, champion, ts) in &ops {
        let entries: Vec<&Value> = history
            .iter()
            .filter(|h| h["command"].as_u64() == Some(*command))
            .collect();
        assert_eq!(entries.len(), 1, "command {command}: {entries:?}");
        let h = entries[0];
        assert_eq!(
            (&h["action"], &h["champion"], &h["by"], h["ts"].as_u64()),
            (&v(action), champion, &v("operator"), Some(*ts))
        );
    }
    // Every command was retired once the buffer held it.
    let control = registry.join("control");
    let left: Vec<String> = std::fs::read_dir(&control)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with("CONSUMED"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        std::fs::read_to_string(control.join("CONSUMED"))
            .unwrap()
            .trim(),
        "5"
    );
    assert_replays_show_them(&job, &out, d.path(), (paused_at, resumed_at));
}

#[test]
fn a_command_holds_after_a_kill_and_one_given_while_no_job_runs_is_taken_up_at_the_next_start() {
    let (d, job, out, registry, log) = demo();
    let mut child = start(&job, &log);
    wait_for_versions(&mut child, &registry, 2, &log);
    ok(&models(&registry, &["pause"]));
    // Killed right after the job decided, likely before a commit covered the command.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(registry_file(&registry)["paused"], true);
    // With no job running, a command changes the registry at once and waits for the next run.
    let said = ok(&models(&registry, &["resume", "--reason", "fixed offline"]));
    assert!(said.contains("no job runs"), "{said}");
    assert_eq!(registry_file(&registry)["paused"], false);
    let log2 = d.path().join("run2.log");
    finish(start(&job, &log2), &log2);

    let decisions = changelog(&out, "model_decisions");
    let ops = operator_decisions(&decisions);
    let got: Vec<(u64, &str)> = ops.iter().map(|(c, a, _, _)| (*c, a.as_str())).collect();
    assert_eq!(got, [(1, "pause"), (2, "resume")], "{ops:?}");
    let offline = decisions.iter().find(|d| d["command"] == 2).unwrap();
    assert!(
        offline["reason"]
            .as_str()
            .unwrap()
            .contains("fixed offline (applied to the registry while no job ran)"),
        "{offline}"
    );
    let (paused_at, resumed_at) = (ops[0].3, ops[1].3);
    assert!(paused_at <= resumed_at);
    assert_eq!(gate_decisions(&decisions, paused_at + 1, resumed_at), 0);
    assert!(gate_decisions(&decisions, resumed_at + 1, u64::MAX) > 0);
    // The registry recorded each command once: the job's pause, the operator's resume.
    let file = registry_file(&registry);
    let history = file["history"].as_array().unwrap();
    for (command, by_job) in [(1, true), (2, false)] {
        let entries: Vec<&Value> = history
            .iter()
            .filter(|h| h["command"].as_u64() == Some(command))
            .collect();
        assert_eq!(entries.len(), 1, "command {command}: {entries:?}");
        assert_eq!(entries[0]["ts"].is_u64(), by_job, "{:?}", entries[0]);
    }
    assert_eq!(file["paused"], false);
    // The registry's champion is the last decision's.
    let last = decisions
        .iter()
        .rev()
        .find(|d| !d["champion"].is_null())
        .unwrap();
    assert_eq!(file["champion"], last["champion"]);
    assert_replays_show_them(&job, &out, d.path(), (paused_at, resumed_at));
}
