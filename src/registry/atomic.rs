//! Crash-safe file replacement for the registry, with fault points for tests.
//!
//! Steps: write a temporary file in the same directory, fsync it, rename it over the target,
//! fsync the directory. A crash at any step leaves the old file or the new one. Setting
//! `TIDEMARK_FAULT=registry:<step>[:<n>]` aborts the process at the n-th occurrence of that step
//! (`create`, `write` — after half of the bytes —, `fsync`, `rename`, `dir_fsync`), so that tests
//! can kill a real process mid-publish.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Aborts the process if the environment asks for a fault at `step`: `registry:<step>` at its
/// first occurrence, `registry:<step>:<n>` at its n-th.
fn fault(step: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEEN: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
    let Ok(v) = std::env::var("TIDEMARK_FAULT") else {
        return;
    };
    let Some(spec) = v.strip_prefix("registry:") else {
        return;
    };
    let (name, nth) = match spec.split_once(':') {
        Some((n, k)) => (n, k.parse::<u64>().unwrap_or(1)),
        None => (spec, 1),
    };
    let steps = ["create", "write", "fsync", "rename", "dir_fsync"];
    let Some(i) = steps.iter().position(|s| *s == step) else {
        return;
    };
    let seen = SEEN[i].fetch_add(1, Ordering::SeqCst) + 1;
    if name == step && seen == nth {
        eprintln!("fault injected at registry step {step} (occurrence {nth})");
        std::process::abort();
    }
}

/// The temporary name `path` is written under.
pub fn temp_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` by `bytes`, crash-safely.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(path);
    fault("create");
    let mut f = crate::confine::create(&tmp)?;
    let half = bytes.len() / 2;
    f.write_all(&bytes[..half])
        .map_err(|e| Error::io(&tmp, e))?;
    fault("write");
    f.write_all(&bytes[half..])
        .map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    fault("fsync");
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    fault("rename");
    crate::replay::segment::sync_dir(dir)?;
    fault("dir_fsync");
    Ok(())
}
