//! Replay buffers: every record a job accepts or refuses, in Parquet segments with a manifest,
//! so that any range can be fed through the same dataflow again and a killed job can resume.
//!
//! - [`segment`]: one buffer stream over one timestamp range, checksummed;
//! - [`background`]: the threads that encode segments and make commits durable, below the
//!   workers' priority;
//! - [`manifest`]: the committed segments, source resume points and output lengths;
//! - [`recorder`]: the operator that cuts segments and the commit protocol;
//! - [`source`]: the operator that feeds segments back at their recorded timestamps;
//! - [`verify`]: digests of output directories and where two differ.
//!
//! A buffer lives at `<outputs.dir>/replay`, beside the outputs whose lengths its manifest
//! records; a `LOCK` file keeps two jobs from writing one buffer.

pub mod background;
pub mod frames;
pub mod journal;
pub mod manifest;
pub mod recorder;
pub mod segment;
pub mod source;
pub mod verify;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::Job;
use crate::error::{Error, Result};
use crate::schema::Stream;
use manifest::{Counts, Manifest, MANIFEST};
use segment::{BufferStream, SegmentMeta};

/// The buffer directory of an output directory.
pub fn buffer_dir(out_dir: &Path) -> PathBuf {
    out_dir.join("replay")
}

/// An exclusive hold on a buffer directory, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the buffer's lock, creating the directory; fails if another job holds it.
pub fn lock(dir: &Path) -> Result<Lock> {
    crate::confine::create_dir(dir)?;
    let path = dir.join("LOCK");
    let file = crate::confine::lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::replay(
            &path,
            "another tidemark job is writing this replay buffer (and its outputs); give this run its own output directory",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Removes what a crash can leave in a buffer: temporary files, and segment and state files
/// that the manifest does not name (written after the last commit). Returns how many were
/// removed.
///
/// Only names of tidemark's own pattern are removed (`<20 digits>-<20 digits>.parquet` in a
/// stream directory, `<20 digits>.json.zst` in `state/`, `.<name>.tmp`, and without a manifest
/// its journals `MANIFEST-<20 digits>.jsonl`); anything else is left
/// where it is. A link in place of the buffer or one of its directories is refused before
/// anything is removed, and one file that cannot be removed does not stop the others.
pub fn clean(dir: &Path, manifest: Option<&Manifest>) -> Result<usize> {
    let named: std::collections::BTreeSet<PathBuf> = manifest
        .map(|m| m.files(dir).into_iter().collect())
        .unwrap_or_default();
    crate::confine::not_link(dir)?;
    if !dir.is_dir() {
        return Ok(0);
    }
    let streams = BufferStream::ALL.iter().map(|s| (s.name(), false));
    let subdirs: Vec<(PathBuf, bool)> = streams
        .chain([(manifest::STATE_DIR, true)])
        .map(|(name, state)| (dir.join(name), state))
        .collect();
    for (sub, _) in &subdirs {
        crate::confine::not_link(sub)?;
    }
    let mut doomed = Vec::new();
    for entry in read_dir(dir)? {
        let name = entry.file_name().to_string_lossy().to_string();
        // Without a manifest no journal is named; with one, its journal deletes the older ones.
        if is_temp(&name) || (manifest.is_none() && journal::generation(&name).is_some()) {
            doomed.push(entry.path());
        }
    }
    for (sub, state) in &subdirs {
        if !sub.is_dir() {
            continue;
        }
        for entry in read_dir(sub)? {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let ours = is_temp(&name)
                || if *state {
                    is_state_name(&name)
                } else {
                    is_segment_name(&name)
                };
            if ours && !named.contains(&p) {
                doomed.push(p);
            }
        }
    }
    let mut removed = 0;
    let mut first_error = None;
    for p in doomed {
        match crate::confine::remove(&p) {
            Ok(r) => removed += r as usize,
            Err(e) => {
                tracing::error!("replay buffer: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// `.<name>.tmp`: a file tidemark was writing.
fn is_temp(name: &str) -> bool {
    name.len() > 5 && name.starts_with('.') && name.ends_with(".tmp")
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// `<start>-<end>.parquet`, both 20 digits: a segment.
fn is_segment_name(name: &str) -> bool {
    name.strip_suffix(".parquet")
        .and_then(|s| s.split_once('-'))
        .is_some_and(|(a, b)| digits(a, 20) && digits(b, 20))
}

/// `<at>.json.zst`, 20 digits: a state snapshot.
fn is_state_name(name: &str) -> bool {
    name.strip_suffix(".json.zst")
        .is_some_and(|s| digits(s, 20))
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        out.push(e.map_err(|e| Error::io(dir, e))?);
    }
    out.sort_by_key(|e| e.file_name());
    Ok(out)
}

/// Loads a buffer's manifest for `job`, refusing one written by a different job definition.
pub fn load_for(job: &Job, dir: &Path) -> Result<Option<Manifest>> {
    let Some(m) = Manifest::load(dir)? else {
        return Ok(None);
    };
    let fp = job.fingerprint();
    if m.fingerprint != fp {
        // A drift reference read from the sources changes with them: say the root cause.
        let cause = if m.sources != job.sources_fingerprint() {
            "it read other sources (paths, kinds or generator parameters), and what depends on \
             them (a drift reference read from them) changed"
        } else {
            "time, windows, metrics, schemas, drift settings or the drift reference changed"
        };
        return Err(Error::replay(
            dir.join(MANIFEST),
            format!(
                "written by a different definition of the job (fingerprint {}, the job's is {fp}): \
                 {cause}; replay it with the job file that wrote it, or start over with --fresh",
                m.fingerprint
            ),
        ));
    }
    Ok(Some(m))
}

/// What to feed to rebuild state and produce outputs for timestamps in `[from, to)`: the
/// segments from one state horizon before `from`, and the counts of all records before them.
pub fn plan(
    job: &Job,
    m: &Manifest,
    from: u64,
    to: u64,
) -> (Vec<SegmentMeta>, BTreeMap<String, Counts>) {
    let start = from.saturating_sub(job.state_horizon_ms());
    let mut base = m.base.clone();
    let mut feed = Vec::new();
    for s in &m.segments {
        if s.ts_end <= start {
            // Commands count in no stream's totals (each made a decision).
            if s.stream == BufferStream::Controls {
                continue;
            }
            for (stream, n) in &s.rows_by_stream {
                let c = base.entry(stream.clone()).or_default();
                if s.stream == BufferStream::DeadLetters {
                    c.dead_lettered += n;
                } else {
                    c.accepted += n;
                }
            }
        } else if s.ts_start < to {
            feed.push(s.clone());
        }
    }
    (feed, base)
}

/// Checks every segment of `segments` against its recorded length and checksum, and that it
/// decodes to rows within its range, before anything is fed.
pub fn verify_all(dir: &Path, segments: &[SegmentMeta]) -> Result<()> {
    for s in segments {
        segment::read_segment(dir, s)?;
    }
    Ok(())
}

/// Whether the buffer holds records from before `from - horizon` that retention removed,
/// which a replay starting at `from` would need.
pub fn missing_history(job: &Job, m: &Manifest, from: u64) -> Option<u64> {
    let start = from.saturating_sub(job.state_horizon_ms());
    let first = m.segments.iter().map(|s| s.ts_start).min()?;
    let dropped = m.base.values().any(|c| c.accepted + c.dead_lettered > 0);
    (dropped && first > start).then_some(first)
}

/// Base ingest counts as `(stream, kind, n)` with kind 1 accepted, 2 dead-lettered.
pub fn base_counts(base: &BTreeMap<String, Counts>) -> Vec<(Stream, u8, isize)> {
    let mut out = Vec::new();
    for (name, c) in base {
        if let Some(s) = Stream::parse(name) {
            out.push((s, 1, c.accepted as isize));
            out.push((s, 2, c.dead_lettered as isize));
        }
    }
    out
}

/// Reads and verifies the state snapshot `meta` of the buffer in `dir`.
pub fn read_state(
    dir: &Path,
    meta: &manifest::StateMeta,
) -> Result<crate::dataflow::ordered::OpState> {
    let path = dir.join(&meta.file);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let sum = segment::sha256_hex(&bytes);
    if bytes.len() as u64 != meta.bytes || sum != meta.sha256 {
        return Err(Error::replay(
            &path,
            format!(
                "state snapshot damaged: {} bytes with SHA-256 {sum}, the manifest says {} bytes with {}",
                bytes.len(),
                meta.bytes,
                meta.sha256
            ),
        ));
    }
    let json = zstd::decode_all(bytes.as_slice())
        .map_err(|e| Error::replay(&path, format!("not a zstd-compressed state file: {e}")))?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::replay(&path, format!("not an operator state file: {e}")))
}
