//! tidemark changes no file outside the directories it owns: a symbolic link planted where it
//! expects its own file or directory is an error naming it, and a sentinel file behind the link
//! survives byte for byte; starting over removes only the names tidemark writes.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tidemark::config::Job;
use tidemark::runtime::{run, RunOptions};

const T0: u64 = 1_767_225_600_000;
const WINDOWS: &str = "[[windows]]\nname = \"5m\"\nkind = \"tumbling\"\nsize_ms = 300000\n";

/// A small job in `dir` (inputs and job file); its outputs go to `dir/out`.
fn job(dir: &Path, extra: &str) -> PathBuf {
    let (mut ev, mut pr, mut lb) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..50u64 {
        let id = format!("e{i}");
        let t = T0 + i * 1000;
        ev.push(event(&id, "u1", t, i as f64, "US"));
        pr.push(prediction(&id, 0.5, t));
        lb.push(label(&id, (i % 2) as u8, t + 1000));
    }
    write_lines(dir, "events.jsonl", &ev);
    write_lines(dir, "predictions.jsonl", &pr);
    write_lines(dir, "labels.jsonl", &lb);
    file_job(dir, &Times::default(), WINDOWS, extra)
}

/// Runs the job into `out` and returns its error, if any.
fn try_run(job_file: &Path, out: &Path) -> Result<(), String> {
    run_opts(job_file, out, RunOptions::default())
}

/// Runs the job into `out` with `opts` (its workers and output directory set here).
fn run_opts(job_file: &Path, out: &Path, opts: RunOptions) -> Result<(), String> {
    let job = Job::load(job_file).map_err(|e| e.to_string())?;
    let opts = RunOptions {
        workers: 1,
        out_dir: Some(out.to_path_buf()),
        ..opts
    };
    run(job, &opts).map(|_| ()).map_err(|e| e.to_string())
}

/// Options that start over.
fn fresh() -> RunOptions {
    RunOptions {
        fresh: true,
        ..Default::default()
    }
}

/// A directory outside the outputs with a sentinel file (named like a segment, so a careless
/// clean would take it) and its bytes.
fn outside(root: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let d = root.join("elsewhere");
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("00000000000000000001-00000000000000000002.parquet");
    let bytes = b"not tidemark's".to_vec();
    std::fs::write(&f, &bytes).unwrap();
    (d, f, bytes)
}

fn assert_refused(err: Result<(), String>, names: &str) {
    let e = err.expect_err("the run must refuse the link");
    assert!(e.contains("symbolic link") && e.contains(names), "{e}");
}

/// A job in a fresh directory with `out/<linked>` a link to the outside directory (`to_dir`) or
/// to its sentinel file: the directory guard, the job, its outputs and the outside.
fn planted(
    linked: &str,
    to_dir: bool,
) -> (
    tempfile::TempDir,
    PathBuf,
    PathBuf,
    PathBuf,
    PathBuf,
    Vec<u8>,
) {
    let d = tempfile::tempdir().unwrap();
    let job = job(d.path(), "");
    let out = d.path().join("out");
    let (elsewhere, sentinel, bytes) = outside(d.path());
    let link = out.join(linked);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let target = if to_dir { &elsewhere } else { &sentinel };
    std::os::unix::fs::symlink(target, &link).unwrap();
    (d, job, out, elsewhere, sentinel, bytes)
}

#[test]
fn a_linked_buffer_directory_is_refused_and_its_target_untouched() {
    for linked in ["replay", "replay/events", "replay/state"] {
        let (_d, job, out, elsewhere, sentinel, bytes) = planted(linked, true);
        assert_refused(try_run(&job, &out), linked);
        assert_eq!(std::fs::read(&sentinel).unwrap(), bytes, "{linked}");
        assert_eq!(
            std::fs::read_dir(&elsewhere).unwrap().count(),
            1,
            "{linked}"
        );
    }
}

#[test]
fn a_linked_lock_or_changelog_is_refused_and_its_target_not_truncated() {
    for linked in ["replay/LOCK", "quality.jsonl", "replay/MANIFEST.json"] {
        let (_d, job, out, _, sentinel, bytes) = planted(linked, false);
        assert!(try_run(&job, &out).is_err(), "{linked}");
        assert_eq!(std::fs::read(&sentinel).unwrap(), bytes, "{linked}");
    }
}

#[test]
fn a_linked_registry_lock_is_refused_and_its_target_not_truncated() {
    let d = tempfile::tempdir().unwrap();
    let registry = d.path().join("registry");
    let job = job(
        d.path(),
        &format!("[learn]\nregistry = \"{}\"\n", registry.display()),
    );
    let (_, sentinel, bytes) = outside(d.path());
    std::fs::create_dir_all(&registry).unwrap();
    std::os::unix::fs::symlink(&sentinel, registry.join("LOCK")).unwrap();
    assert_refused(try_run(&job, &d.path().join("out")), "LOCK");
    let resume = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["models", "resume"])
        .arg(&registry)
        .output()
        .unwrap();
    assert!(!resume.status.success());
    assert_eq!(std::fs::read(&sentinel).unwrap(), bytes);
}

#[test]
fn starting_over_removes_only_the_names_tidemark_writes() {
    let d = tempfile::tempdir().unwrap();
    let job = job(d.path(), "");
    let out = d.path().join("out");
    try_run(&job, &out).unwrap();
    // Someone else's files among tidemark's, and a directory where a file could be.
    let theirs = [
        "notes.txt",
        "replay/notes.txt",
        "replay/events/notes.txt",
        "replay/state/keep.json",
        "replay/events/sub/00000000000000000001-00000000000000000002.parquet",
    ];
    for f in theirs {
        let p = out.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f).unwrap();
    }
    let first = std::fs::read(out.join("quality.jsonl")).unwrap();
    run_opts(&job, &out, fresh()).unwrap();
    for f in theirs {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), f.as_bytes(), "{f}");
    }
    assert_eq!(std::fs::read(out.join("quality.jsonl")).unwrap(), first);
}

#[test]
fn the_root_and_the_working_directory_are_refused_as_outputs() {
    let d = tempfile::tempdir().unwrap();
    let job_file = job(d.path(), "");
    let text = std::fs::read_to_string(&job_file).unwrap();
    let out_line = text
        .lines()
        .find(|l| l.starts_with("dir = "))
        .unwrap()
        .to_string();
    for dir in ["/", ""] {
        std::fs::write(
            &job_file,
            text.replace(&out_line, &format!("dir = \"{dir}\"")),
        )
        .unwrap();
        let e = Job::load(&job_file).unwrap_err().to_string();
        assert!(e.contains("outputs.dir"), "{e}");
    }
    std::fs::write(&job_file, &text).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let e = try_run(&job_file, &cwd).unwrap_err();
    assert!(e.contains("working directory"), "{e}");
    let e = try_run(&job_file, Path::new("/")).unwrap_err();
    assert!(e.contains("root"), "{e}");
}

#[test]
fn a_registry_inside_the_outputs_moves_with_out() {
    let d = tempfile::tempdir().unwrap();
    let registry = d.path().join("out").join("registry");
    let job = job(
        d.path(),
        &format!("[learn]\nregistry = \"{}\"\n", registry.display()),
    );
    let elsewhere = d.path().join("other");
    try_run(&job, &elsewhere).unwrap();
    assert!(!registry.exists(), "the job's own registry was written");
    assert!(
        elsewhere.join("registry").is_dir(),
        "the registry moved under --out"
    );
}

#[test]
fn a_directory_of_other_files_is_refused_unless_forced() {
    let d = tempfile::tempdir().unwrap();
    let job = job(d.path(), "");
    let theirs = d.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("thesis.tex"), b"years of work").unwrap();
    let e = try_run(&job, &theirs).unwrap_err();
    assert!(
        e.contains("holds no tidemark outputs") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    let force = RunOptions {
        force: true,
        ..Default::default()
    };
    run_opts(&job, &theirs, force).unwrap();
    assert_eq!(
        std::fs::read(theirs.join("thesis.tex")).unwrap(),
        b"years of work"
    );
    assert!(theirs.join("quality.jsonl").exists());
}

#[test]
fn a_lost_manifest_is_not_silently_started_over() {
    let d = tempfile::tempdir().unwrap();
    let job = job(d.path(), "");
    let out = d.path().join("out");
    try_run(&job, &out).unwrap();
    let before = std::fs::read(out.join("quality.jsonl")).unwrap();
    std::fs::remove_file(out.join("replay").join("MANIFEST.json")).unwrap();
    let e = try_run(&job, &out).unwrap_err();
    assert!(e.contains("MANIFEST.json") && e.contains("--fresh"), "{e}");
    // Nothing was deleted by the refusal.
    assert_eq!(std::fs::read(out.join("quality.jsonl")).unwrap(), before);
    run_opts(&job, &out, fresh()).unwrap();
    assert_eq!(std::fs::read(out.join("quality.jsonl")).unwrap(), before);
}

#[test]
fn a_changelog_linked_before_a_resume_is_refused_and_its_target_not_cut() {
    let d = tempfile::tempdir().unwrap();
    let times = Times::short();
    let job = generator_job(
        d.path(),
        &times,
        "events = 400000\nseed = 3\nrate_per_s = 50.0",
        &format!(
            "{WINDOWS}[outputs]\ndir = \"unused\"\nformats = [\"jsonl\"]\n[replay]\nsegment_ms = 5000\n"
        ),
    );
    let out = d.path().join("out");
    // Interrupted once it has committed: the next run resumes and cuts each changelog back to
    // its committed length.
    let mut child = tidemark_run(&job, &out).spawn().unwrap();
    let manifest = out.join("replay").join("MANIFEST.json");
    let began = std::time::Instant::now();
    let committed = loop {
        let m = tidemark::replay::manifest::Manifest::load(&out.join("replay"))
            .ok()
            .flatten();
        if m.as_ref().is_some_and(|m| m.committed > 0 && !m.complete) {
            break true;
        }
        if child.try_wait().unwrap().is_some() || began.elapsed().as_secs() > 60 {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        committed,
        "the run committed before it ended ({})",
        manifest.display()
    );
    let (_, sentinel, bytes) = outside(d.path());
    let changelog = out.join("quality.jsonl");
    std::fs::remove_file(&changelog).unwrap();
    std::os::unix::fs::symlink(&sentinel, &changelog).unwrap();
    let e = run_opts(&job, &out, RunOptions::default()).expect_err("the resume refuses the link");
    assert_refused(Err(e), "quality.jsonl");
    assert_eq!(std::fs::read(&sentinel).unwrap(), bytes);
}
