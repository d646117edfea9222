//! The buffer commands end to end through the binary: backfill beside a running live job,
//! inspect, verify, replay, and the lock that keeps two jobs off one output directory.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use tidemark::generate::{write_dataset, DataFormat};
use tidemark::generator::GeneratorParams;

const WINDOWS: &str = r#"
[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000
[metrics]
segments = ["country"]
entity_features = ["amount"]
[replay]
segment_ms = 20000
"#;

fn tidemark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn backfill_inspect_verify_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let params = GeneratorParams {
        events: 4000,
        seed: 31,
        malformed_fraction: 0.01,
        ..GeneratorParams::default()
    };
    write_dataset(&params, d, DataFormat::Jsonl).unwrap();

    // A live job (the generator, paced by nothing but its own speed) runs meanwhile.
    let live_dir = d.join("live");
    std::fs::create_dir_all(&live_dir).unwrap();
    let live_job = generator_job(
        &live_dir,
        &Times::default(),
        "events = 20000\nseed = 2",
        &format!(
            "{WINDOWS}\n[outputs]\ndir = \"{}\"\nsummary = false\n",
            s(&live_dir.join("out"))
        ),
    );
    let live = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", &s(&live_job), "--no-progress", "--metrics", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // A run into a directory whose buffer another job holds is refused (the lock is held here,
    // so the check does not depend on how fast the live job is).
    let held = d.join("held");
    let guard = tidemark::replay::lock(&held.join("replay")).unwrap();
    let o = tidemark(&[
        "run",
        &s(&live_job),
        "--no-progress",
        "--metrics",
        "off",
        "--out",
        &s(&held),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("another tidemark job is writing"),
        "{}",
        text(&o)
    );
    drop(guard);

    // The backfill: the file job's definition over given files, in its own directory.
    let job = file_job(d, &Times::default(), WINDOWS, "");
    let bf = d.join("backfill");
    let mut args = vec!["backfill".to_string(), s(&job)];
    for st in ["events", "predictions", "labels"] {
        args.push("--input".into());
        args.push(format!("{st}={}", s(&d.join(format!("{st}.jsonl")))));
    }
    args.extend(["--out".into(), s(&bf), "--no-progress".into()]);
    let o = tidemark(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));

    // The same files through `run` give the same outputs.
    let o = tidemark(&["run", &s(&job), "--no-progress", "--metrics", "off"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = tidemark(&["verify", &s(&d.join("out")), &s(&bf)]);
    assert!(
        o.status.success() && text(&o).contains("identical"),
        "{}",
        text(&o)
    );

    // A backfill may not write into the job's own output directory.
    let o = tidemark(&[
        "backfill",
        &s(&job),
        "--input",
        "events=x.jsonl",
        "--out",
        &s(&d.join("out")),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("own output directory"), "{}", text(&o));

    // Inspect summarizes the buffer and verifies every checksum.
    let o = tidemark(&["inspect", &s(&bf.join("replay"))]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("complete") && t.contains("segment checksums verified"),
        "{t}"
    );

    // Replay of a range (ISO times accepted) and verify over that range.
    let m = tidemark::replay::manifest::Manifest::load(&bf.join("replay"))
        .unwrap()
        .unwrap();
    let first = m.segments[0].ts_start;
    let (from, to) = (first + 120_000, first + 150_000);
    let iso = |t: u64| tidemark::runtime::iso_time(t);
    let rep = d.join("rep");
    let o = tidemark(&[
        "replay",
        &s(&job),
        "--buffer",
        &s(&bf.join("replay")),
        "--from",
        &iso(from),
        "--to",
        &iso(to),
        "--out",
        &s(&rep),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("digest"), "{}", text(&o));
    let o = tidemark(&[
        "verify",
        &s(&bf),
        &s(&rep),
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
    ]);
    assert!(
        o.status.success() && text(&o).contains("identical"),
        "{}",
        text(&o)
    );
    // Over everything, the replay (one range) and the backfill differ, and verify says where.
    let o = tidemark(&["verify", &s(&bf), &s(&rep)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("first difference"), "{}", text(&o));

    // Damage a segment: inspect names it and fails.
    let seg = bf.join("replay").join(&m.segments[1].file);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let o = tidemark(&["inspect", &s(&bf.join("replay"))]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&m.segments[1].file) && text(&o).contains("checksum"),
        "{}",
        text(&o)
    );

    let out = live.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "live job: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspect_verifies_state_snapshots() {
    use tidemark::replay::manifest::{state_file, Manifest, StateMeta};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t0 = 1_767_225_600_000u64;
    let (mut ev, mut pr, mut lb) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..100u64 {
        let id = format!("e{i}");
        ev.push(common::event(&id, "u1", t0 + i * 1000, i as f64, "US"));
        pr.push(common::prediction(&id, 0.5, t0 + i * 1000));
        lb.push(common::label(&id, (i % 2) as u8, t0 + i * 1000 + 500));
    }
    common::write_lines(d, "events.jsonl", &ev);
    common::write_lines(d, "predictions.jsonl", &pr);
    common::write_lines(d, "labels.jsonl", &lb);
    let job = common::file_job(
        d,
        &common::Times::default(),
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "",
    );
    let o = tidemark(&["run", &s(&job), "--no-progress", "--metrics", "off"]);
    assert!(o.status.success(), "{}", text(&o));
    // A state snapshot as a stateful job's commit leaves it (an empty operator state).
    let buffer = d.join("out").join("replay");
    let mut m = Manifest::load(&buffer).unwrap().unwrap();
    let file = state_file(t0);
    let packed = zstd::encode_all(&b"{}"[..], 3).unwrap();
    std::fs::create_dir_all(buffer.join("state")).unwrap();
    std::fs::write(buffer.join(&file), &packed).unwrap();
    m.states.push(StateMeta {
        at: t0,
        file: file.clone(),
        bytes: packed.len() as u64,
        sha256: tidemark::replay::segment::sha256_hex(&packed),
    });
    m.store(&buffer).unwrap();
    let o = tidemark(&["inspect", &s(&buffer)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 state snapshots verified"),
        "{}",
        text(&o)
    );
    // One flipped byte in the snapshot: inspect names the file, and fails.
    let mut bytes = packed.clone();
    bytes[0] ^= 0xff;
    std::fs::write(buffer.join(&file), bytes).unwrap();
    let o = tidemark(&["inspect", &s(&buffer)]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("state snapshot damaged") && t.contains(&file),
        "{t}"
    );
}
