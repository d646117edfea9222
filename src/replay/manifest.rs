//! The replay manifest: which segments are committed, where sources resume, and how far the
//! outputs were written when that was true.
//!
//! `MANIFEST.json` is replaced atomically (temporary file, fsync, rename, directory fsync) and
//! carries a checksum of its own content, so a reader sees the old manifest or the new one and
//! can tell a damaged one from either. Its growing lists live in a journal it names and checks
//! ([`super::journal`]); a `tidemark.replay.v1` manifest, which holds them inline, still reads.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::journal::JournalRef;
use super::segment::{sha256_hex, write_atomic, BufferStream, SegmentMeta};
use crate::error::{Error, Result};
use crate::sources::PartitionState;

/// The manifest's file name inside a buffer directory.
pub const MANIFEST: &str = "MANIFEST.json";

/// The format tag every manifest carries.
pub const FORMAT: &str = "tidemark.replay.v2";

/// The format of manifests that held their lists inline (still read).
pub const FORMAT_V1: &str = "tidemark.replay.v1";

/// Records of one input stream that left the buffer by retention, for cumulative counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Accepted records.
    pub accepted: u64,
    /// Dead-lettered records.
    pub dead_lettered: u64,
}

/// The watermark of every partition when a commit was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkPoint {
    /// The committed timestamp.
    pub ts: u64,
    /// Partition key → its watermark (largest own time minus the allowed disorder).
    pub partitions: BTreeMap<String, u64>,
}

/// The content of `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The job's name.
    pub job: String,
    /// Fingerprint of everything in the job that decides timestamps and outputs.
    pub fingerprint: String,
    /// Fingerprint of the job's sources (a restart must read the same ones).
    pub sources: String,
    /// Every record stamped below this timestamp is in a committed segment, and every output
    /// line below it is in the output files within `outputs`' lengths.
    pub committed: u64,
    /// The job read all of its input and finished.
    pub complete: bool,
    /// Segment length in timestamp milliseconds.
    pub segment_ms: u64,
    /// Counts of records in segments deleted by retention, per input stream.
    pub base: BTreeMap<String, Counts>,
    /// Committed segments, in (start, stream) order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentMeta>,
    /// Where each source partition resumes.
    pub partitions: BTreeMap<String, PartitionState>,
    /// Watermarks at recent commits, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watermarks: Vec<WatermarkPoint>,
    /// Output file (relative to the output directory) → committed length in bytes.
    pub outputs: BTreeMap<String, u64>,
    /// Snapshots of history-dependent operator state (drift detectors) at commits, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<StateMeta>,
    /// This run's id (new at every start over; kept by resumes): it tells a restarted Kafka sink
    /// which records in its topics it wrote itself.
    #[serde(default)]
    pub run: String,
}

/// A committed operator-state snapshot: the state once every timestamp below `at` is processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateMeta {
    /// The timestamp it holds the state at.
    pub at: u64,
    /// Path relative to the buffer directory.
    pub file: String,
    /// File length in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// A run id unlikely to repeat: job name, process id and the clock, hashed. It names a run; it
/// never enters a result.
fn new_run_id(job: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{job}|{}|{now}", std::process::id());
    super::segment::sha256_hex(seed.as_bytes())[..16].to_string()
}

/// The file name of the state snapshot at `at`, relative to the buffer.
pub fn state_file(at: u64) -> String {
    format!("{STATE_DIR}/{at:020}.json.zst")
}

/// The buffer subdirectory of state snapshots.
pub const STATE_DIR: &str = "state";

/// The file a buffer gains at its first commit: a buffer that has it but no manifest lost its
/// manifest (it did not merely crash before committing), and is not started over silently.
pub const COMMITTED: &str = "COMMITTED";

/// How many watermark points the manifest keeps.
pub const WATERMARKS_KEPT: usize = 1024;

impl Manifest {
    /// An empty manifest for a new buffer.
    pub fn new(job: &str, fingerprint: &str, sources: &str, segment_ms: u64) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            job: job.into(),
            fingerprint: fingerprint.into(),
            sources: sources.into(),
            committed: 0,
            complete: false,
            segment_ms,
            base: BTreeMap::new(),
            segments: Vec::new(),
            partitions: BTreeMap::new(),
            watermarks: Vec::new(),
            outputs: BTreeMap::new(),
            states: Vec::new(),
            run: new_run_id(job),
        }
    }

    /// Loads and checks `<dir>/MANIFEST.json` and its journal; `None` if the buffer has none
    /// yet.
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        // A commit that rewrites the journal deletes the old one once the new manifest names
        // the new one: a reader that read the old manifest just before then reads again.
        let mut tries = 0;
        loop {
            match Manifest::load_once(dir) {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && tries < 3 =>
                {
                    tries += 1;
                }
                r => return r,
            }
        }
    }

    fn load_once(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let bad = |reason: String| Error::replay(&path, reason);
        let mut value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("not a readable manifest: {e}")))?;
        let Some(obj) = value.as_object_mut() else {
            return Err(bad("not a readable manifest: not a JSON object".into()));
        };
        let Some(serde_json::Value::String(sum)) = obj.remove("checksum") else {
            return Err(bad("the manifest has no checksum".into()));
        };
        let actual = sha256_hex(value.to_string().as_bytes());
        if actual != sum {
            return Err(bad(format!(
                "manifest checksum mismatch (content {actual}, recorded {sum}): it was damaged"
            )));
        }
        let journal = value.as_object_mut().and_then(|o| o.remove("journal"));
        let mut m: Manifest = serde_json::from_value(value)
            .map_err(|e| bad(format!("not a readable manifest: {e}")))?;
        match (m.format.as_str(), journal) {
            (FORMAT, Some(j)) => {
                let j: JournalRef = serde_json::from_value(j)
                    .map_err(|e| bad(format!("not a readable manifest: journal: {e}")))?;
                if !(m.segments.is_empty() && m.states.is_empty() && m.watermarks.is_empty()) {
                    return Err(bad("lists belong in the journal, not the manifest".into()));
                }
                (m.segments, m.states, m.watermarks) = super::journal::read(dir, &j)?;
            }
            (FORMAT, None) => return Err(bad("the manifest names no journal".into())),
            (FORMAT_V1, None) => m.format = FORMAT.into(),
            (f, _) => return Err(bad(format!("format {f:?}, expected {FORMAT:?}"))),
        }
        for s in &m.segments {
            check_relative(&s.file, s.stream)
                .map_err(|r| bad(format!("segment {:?}: {r}", s.file)))?;
        }
        for st in &m.states {
            if st.file != state_file(st.at) {
                return Err(bad(format!(
                    "state {:?} must be {:?}",
                    st.file,
                    state_file(st.at)
                )));
            }
        }
        for f in m.outputs.keys() {
            if !is_plain_name(f) {
                return Err(bad(format!("output {f:?} is not a plain file name")));
            }
        }
        Ok(Some(m))
    }

    /// Writes the manifest whole: a new journal, then `<dir>/MANIFEST.json` naming it.
    pub fn store(&self, dir: &Path) -> Result<()> {
        super::journal::Journal::create(dir, &mut self.clone()).map(drop)
    }

    /// Replaces `<dir>/MANIFEST.json` atomically with everything but the lists, which `journal`
    /// holds.
    pub(super) fn store_header(&mut self, dir: &Path, journal: &JournalRef) -> Result<()> {
        let path = dir.join(MANIFEST);
        let lists = (
            std::mem::take(&mut self.segments),
            std::mem::take(&mut self.states),
            std::mem::take(&mut self.watermarks),
        );
        let value = serde_json::to_value(&*self);
        (self.segments, self.states, self.watermarks) = lists;
        let mut value = value.map_err(|e| Error::replay(&path, e.to_string()))?;
        let journal =
            serde_json::to_value(journal).map_err(|e| Error::replay(&path, e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("journal".into(), journal);
        }
        let sum = sha256_hex(value.to_string().as_bytes());
        if let Some(obj) = value.as_object_mut() {
            obj.insert("checksum".into(), sum.into());
        }
        let mut text =
            serde_json::to_vec_pretty(&value).map_err(|e| Error::replay(&path, e.to_string()))?;
        text.push(b'\n');
        write_atomic(&path, &text)
    }

    /// The segments of `stream`.
    pub fn segments_of(&self, stream: BufferStream) -> impl Iterator<Item = &SegmentMeta> {
        self.segments.iter().filter(move |s| s.stream == stream)
    }

    /// The files a committed buffer should hold besides the manifest.
    pub fn files(&self, dir: &Path) -> Vec<PathBuf> {
        self.segments
            .iter()
            .map(|s| dir.join(&s.file))
            .chain(self.states.iter().map(|s| dir.join(&s.file)))
            .collect()
    }

    /// The latest state snapshot at or before `at`.
    pub fn state_before(&self, at: u64) -> Option<&StateMeta> {
        self.states.iter().rev().find(|s| s.at <= at)
    }
}

/// A segment path must stay inside its stream's directory: `<stream>/<name>.parquet`.
fn check_relative(file: &str, stream: BufferStream) -> std::result::Result<(), String> {
    let parts: Vec<Component> = Path::new(file).components().collect();
    let ok = parts.len() == 2
        && parts[0] == Component::Normal(stream.name().as_ref())
        && matches!(parts[1], Component::Normal(n) if n.to_string_lossy().ends_with(".parquet"));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be {}/<name>.parquet inside the buffer directory",
            stream.name()
        ))
    }
}

fn is_plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::new("j", "fp", "src", 1000);
        m.committed = 5000;
        m.outputs.insert("quality.jsonl".into(), 42);
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Some(m));

        let path = dir.path().join(MANIFEST);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("5000", "6000")).unwrap();
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("MANIFEST.json") && e.contains("checksum mismatch"),
            "{e}"
        );

        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a readable manifest"), "{e}");
    }

    #[test]
    fn refuses_paths_that_escape_the_buffer() {
        for bad in [
            "../events/x.parquet",
            "/etc/x.parquet",
            "events/../../x.parquet",
            "labels/x.parquet",
            "events/sub/x.parquet",
        ] {
            assert!(check_relative(bad, BufferStream::Events).is_err(), "{bad}");
        }
        assert!(check_relative("events/0-1.parquet", BufferStream::Events).is_ok());
        assert!(!is_plain_name("../quality.jsonl"));
        assert!(is_plain_name("quality.jsonl"));
    }
}
