//! Timely's cluster mode: one job across two processes on 127.0.0.1 writes the same outputs and
//! replay segments as one process.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tidemark::generate::{write_dataset, DataFormat};
use tidemark::generator::GeneratorParams;

const REST: &str = r#"
[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000
[[windows]]
name = "3m"
kind = "sliding"
size_ms = 180000
slide_ms = 60000
[metrics]
segments = ["country", "device"]
entity_features = ["amount"]
[replay]
segment_ms = 30000
"#;

fn spawn(job: &Path, out: &Path, extra: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("run")
        .arg(job)
        .arg("--out")
        .arg(out)
        .arg("--no-progress")
        .args(["--metrics", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_processes_write_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let params = GeneratorParams {
        events: 3000,
        seed: 9,
        malformed_fraction: 0.01,
        ..GeneratorParams::default()
    };
    write_dataset(&params, d, DataFormat::Jsonl).unwrap();
    // Split every stream into two files so that both processes read partitions.
    for s in ["events", "predictions", "labels"] {
        let text = std::fs::read_to_string(d.join(format!("{s}.jsonl"))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let half = lines.len() / 2;
        std::fs::create_dir_all(d.join(s)).unwrap();
        std::fs::write(d.join(s).join("a.jsonl"), lines[..half].join("\n") + "\n").unwrap();
        std::fs::write(d.join(s).join("b.jsonl"), lines[half..].join("\n") + "\n").unwrap();
    }
    let job = file_job(d, &Times::default(), REST, "emit_interval_ms = 10000");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("path = \"events.jsonl\"", "path = \"events\"")
        .replace("path = \"predictions.jsonl\"", "path = \"predictions\"")
        .replace("path = \"labels.jsonl\"", "path = \"labels\"");
    std::fs::write(&job, text).unwrap();

    let single = d.join("single");
    wait_all(vec![spawn(&job, &single, &[])], Duration::from_secs(120));

    // The processes' ports are picked free and bound moments later: another process (one of
    // these two's metrics servers among them) may take one in between. Such a run is tried
    // again with new ports, a few times at most.
    let cluster = d.join("cluster");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let hostfile = d.join("hosts.txt");
        std::fs::write(
            &hostfile,
            format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&cluster);
        let procs = (0..2)
            .map(|p| {
                let args: Vec<String> = [
                    "-n",
                    "2",
                    "-p",
                    &p.to_string(),
                    "--hostfile",
                    &hostfile.display().to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                spawn(&job, &cluster, &args)
            })
            .collect();
        match finish_all(procs, Duration::from_secs(120)) {
            Ok(()) => break,
            Err(e) if e.contains("Address already in use") && attempts < 3 => continue,
            Err(e) => panic!("{e}"),
        }
    }

    let n = assert_same_outputs(&single, &cluster, "between one and two processes");
    assert!(n > 10, "outputs and segments: {n}");
}
