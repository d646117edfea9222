//! The manifest's journal: its growing lists (segments, state snapshots, watermark points) as an
//! append-only JSON Lines file beside `MANIFEST.json`, so that a commit writes what it adds and
//! not the whole history (rewriting them made a 10M-event run's commits quadratic).
//!
//! `MANIFEST.json` names the journal, how many of its bytes are committed with their SHA-256,
//! and how many leading entries of each list retention has dropped. A commit appends its new
//! entries, fsyncs the journal, then replaces `MANIFEST.json` atomically: bytes past the
//! committed length are a crashed commit's, which readers ignore and the next writer cuts off.
//! Once dropped entries outnumber live ones the journal is written afresh under the next
//! generation's name, and the old one is deleted after the manifest names the new one.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, StateMeta, WatermarkPoint};
use super::segment::{sha256_hex, write_atomic, SegmentMeta};
use crate::error::{Error, Result};

/// What `MANIFEST.json` says of its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalRef {
    /// The journal's file name inside the buffer directory.
    pub file: String,
    /// Committed length in bytes; anything after it is not part of the manifest.
    pub bytes: u64,
    /// SHA-256 of the committed bytes, hex.
    pub sha256: String,
    /// Leading entries of each list that the manifest no longer holds.
    pub dropped: Counts,
}

/// Entries per list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Segments.
    pub segments: u64,
    /// State snapshots.
    pub states: u64,
    /// Watermark points.
    pub watermarks: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.segments + self.states + self.watermarks
    }
}

/// One journal line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Entry {
    Segment(SegmentMeta),
    State(StateMeta),
    Watermark(WatermarkPoint),
}

/// One journal line, borrowed for writing.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum EntryRef<'a> {
    Segment(&'a SegmentMeta),
    State(&'a StateMeta),
    Watermark(&'a WatermarkPoint),
}

/// Journals are rewritten only once they hold at least this many dropped entries.
const REWRITE_AT: u64 = 1024;

/// `MANIFEST-<generation, 20 digits>.jsonl`.
pub fn journal_file(generation: u64) -> String {
    format!("MANIFEST-{generation:020}.jsonl")
}

/// The generation of a journal file name; `None` if it is not one.
pub fn generation(name: &str) -> Option<u64> {
    let g = name.strip_prefix("MANIFEST-")?.strip_suffix(".jsonl")?;
    (g.len() == 20 && g.bytes().all(|b| b.is_ascii_digit()))
        .then(|| g.parse().ok())
        .flatten()
}

/// Reads the lists `r` names from the buffer `dir`, checking the committed bytes' checksum.
pub fn read(
    dir: &Path,
    r: &JournalRef,
) -> Result<(Vec<SegmentMeta>, Vec<StateMeta>, Vec<WatermarkPoint>)> {
    let path = dir.join(&r.file);
    let bad = |reason: String| Error::replay(&path, reason);
    if generation(&r.file).is_none() {
        return Err(bad("not a manifest journal's name".into()));
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let Some(committed) = bytes.get(..r.bytes as usize) else {
        return Err(bad(format!(
            "{} bytes, shorter than the {} the manifest committed: it was damaged",
            bytes.len(),
            r.bytes
        )));
    };
    let sum = sha256_hex(committed);
    if sum != r.sha256 {
        return Err(bad(format!(
            "journal checksum mismatch (content {sum}, recorded {}): it was damaged",
            r.sha256
        )));
    }
    let (mut segments, mut states, mut watermarks) = (Vec::new(), Vec::new(), Vec::new());
    for (i, line) in committed.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_slice(line)
            .map_err(|e| bad(format!("line {}: not a journal entry: {e}", i + 1)))?;
        match entry {
            Entry::Segment(s) => segments.push(s),
            Entry::State(s) => states.push(s),
            Entry::Watermark(w) => watermarks.push(w),
        }
    }
    let d = &r.dropped;
    let drop = |n: usize, dropped: u64, what: &str| -> Result<usize> {
        usize::try_from(dropped)
            .ok()
            .filter(|d| *d <= n)
            .ok_or_else(|| bad(format!("drops {dropped} {what} of {n}")))
    };
    let ds = drop(segments.len(), d.segments, "segments")?;
    let dt = drop(states.len(), d.states, "states")?;
    let dw = drop(watermarks.len(), d.watermarks, "watermark points")?;
    segments.drain(..ds);
    states.drain(..dt);
    watermarks.drain(..dw);
    Ok((segments, states, watermarks))
}

/// The writer of a buffer's journal: what it holds on disk, so a commit can append to it.
pub struct Journal {
    generation: u64,
    bytes: u64,
    hasher: Sha256,
    /// Entries in the file, per list.
    written: Counts,
    dropped: Counts,
}

impl Journal {
    /// Writes `m` whole: its lists as a new journal generation, then `MANIFEST.json` naming it;
    /// then deletes older journals. Returns the journal to append later commits to.
    pub fn create(dir: &Path, m: &mut Manifest) -> Result<Journal> {
        let generation = newest_generation(dir)?.map_or(1, |g| g + 1);
        let mut text = Vec::new();
        for s in &m.segments {
            line(&mut text, &EntryRef::Segment(s));
        }
        for s in &m.states {
            line(&mut text, &EntryRef::State(s));
        }
        for w in &m.watermarks {
            line(&mut text, &EntryRef::Watermark(w));
        }
        let file = journal_file(generation);
        write_atomic(&dir.join(&file), &text)?;
        let mut hasher = Sha256::new();
        hasher.update(&text);
        let written = Counts {
            segments: m.segments.len() as u64,
            states: m.states.len() as u64,
            watermarks: m.watermarks.len() as u64,
        };
        let j = Journal {
            generation,
            bytes: text.len() as u64,
            hasher,
            written,
            dropped: Counts::default(),
        };
        m.store_header(dir, &j.reference())?;
        // Older generations (the one the manifest named until now, or a crashed rewrite's).
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if generation_of(&name).is_some_and(|g| g < j.generation) {
                crate::confine::remove(&entry.path())?;
            }
        }
        Ok(j)
    }

    /// Stores `next`, given that the journal holds `prev` (the manifest stored last): appends
    /// the entries `next` adds and records the ones it dropped from the front. Writes `next`
    /// whole instead when its lists do not continue `prev`'s that way, or when dropped entries
    /// outnumber live ones.
    pub fn commit(self, dir: &Path, prev: &Manifest, next: &mut Manifest) -> Result<Journal> {
        let (Some((ds, new_s)), Some((dt, new_t)), Some((dw, new_w))) = (
            continuation(&prev.segments, &next.segments),
            continuation(&prev.states, &next.states),
            continuation(&prev.watermarks, &next.watermarks),
        ) else {
            return Journal::create(dir, next);
        };
        let dropped = Counts {
            segments: self.dropped.segments + ds as u64,
            states: self.dropped.states + dt as u64,
            watermarks: self.dropped.watermarks + dw as u64,
        };
        let live = (next.segments.len() + next.states.len() + next.watermarks.len()) as u64;
        if dropped.total() >= REWRITE_AT && dropped.total() > live {
            return Journal::create(dir, next);
        }
        let mut text = Vec::new();
        for s in new_s {
            line(&mut text, &EntryRef::Segment(s));
        }
        for s in new_t {
            line(&mut text, &EntryRef::State(s));
        }
        for w in new_w {
            line(&mut text, &EntryRef::Watermark(w));
        }
        let path = dir.join(journal_file(self.generation));
        let mut f = crate::confine::read_write(&path)?;
        let io = |e| Error::io(&path, e);
        // A crashed commit may have appended past the committed length.
        f.set_len(self.bytes).map_err(io)?;
        f.seek(SeekFrom::Start(self.bytes)).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_data().map_err(io)?;
        drop(f);
        let mut hasher = self.hasher;
        hasher.update(&text);
        let j = Journal {
            generation: self.generation,
            bytes: self.bytes + text.len() as u64,
            hasher,
            written: Counts {
                segments: self.written.segments + new_s.len() as u64,
                states: self.written.states + new_t.len() as u64,
                watermarks: self.written.watermarks + new_w.len() as u64,
            },
            dropped,
        };
        next.store_header(dir, &j.reference())?;
        Ok(j)
    }

    /// What `MANIFEST.json` says of this journal.
    fn reference(&self) -> JournalRef {
        JournalRef {
            file: journal_file(self.generation),
            bytes: self.bytes,
            sha256: hex(&self.hasher.clone().finalize()),
            dropped: self.dropped,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How `next` continues `prev`: (entries dropped from `prev`'s front, entries appended); `None`
/// if it does not (an entry changed, or one was removed from the middle).
fn continuation<'a, T: PartialEq>(prev: &[T], next: &'a [T]) -> Option<(usize, &'a [T])> {
    let dropped = next
        .first()
        .and_then(|f| prev.iter().position(|p| p == f))
        .unwrap_or(prev.len());
    let kept = prev.len() - dropped;
    (next.len() >= kept && prev[dropped..] == next[..kept]).then(|| (dropped, &next[kept..]))
}

fn line(out: &mut Vec<u8>, entry: &EntryRef) {
    serde_json::to_writer(&mut *out, entry).expect("a journal entry serializes");
    out.push(b'\n');
}

/// The generation of `name` if it is a journal (or a journal's temporary file).
fn generation_of(name: &str) -> Option<u64> {
    generation(name).or_else(|| {
        name.strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(generation)
    })
}

/// The newest journal generation in `dir`, committed or not.
fn newest_generation(dir: &Path) -> Result<Option<u64>> {
    let mut newest = None;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(g) = generation_of(&entry.file_name().to_string_lossy()) {
            newest = newest.max(Some(g));
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_finds_dropped_fronts_and_appended_tails() {
        assert_eq!(continuation(&[1, 2, 3], &[1, 2, 3, 4]), Some((0, &[4][..])));
        assert_eq!(continuation(&[1, 2, 3], &[3, 4]), Some((2, &[4][..])));
        assert_eq!(continuation(&[1, 2, 3], &[]), Some((3, &[][..])));
        assert_eq!(continuation(&[1, 2], &[5, 6]), Some((2, &[5, 6][..])));
        assert_eq!(continuation::<u8>(&[], &[]), Some((0, &[][..])));
        // Removed from the middle, or changed: not a continuation.
        assert_eq!(continuation(&[1, 2, 3], &[1, 3]), None);
        assert_eq!(continuation(&[1, 2, 3], &[2, 9]), None);
    }

    #[test]
    fn names_parse() {
        assert_eq!(generation(&journal_file(7)), Some(7));
        assert_eq!(generation_of(&format!(".{}.tmp", journal_file(8))), Some(8));
        assert_eq!(generation("MANIFEST-7.jsonl"), None);
        assert_eq!(generation("MANIFEST.json"), None);
    }
    fn segment(start: u64) -> SegmentMeta {
        SegmentMeta {
            stream: super::super::segment::BufferStream::Events,
            file: super::super::segment::segment_file(
                super::super::segment::BufferStream::Events,
                start,
                start + 10,
            ),
            ts_start: start,
            ts_end: start + 10,
            time_min: start,
            time_max: start + 9,
            rows: 1,
            rows_by_stream: [("events".to_string(), 1)].into(),
            bytes: 1,
            sha256: "00".into(),
        }
    }

    fn watermark(ts: u64) -> WatermarkPoint {
        WatermarkPoint {
            ts,
            partitions: [("events:x".to_string(), ts)].into(),
        }
    }

    fn journals(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| generation(n).is_some())
            .collect();
        v.sort();
        v
    }

    /// Commits that append, drop from the front, and rewrite all load back as the manifest
    /// committed last, and the journal stays within a bounded multiple of the live lists.
    #[test]
    fn commits_append_drop_and_rewrite_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut m = Manifest::new("j", "fp", "src", 10);
        let mut j = Journal::create(d, &mut m).unwrap();
        assert_eq!(Manifest::load(d).unwrap().unwrap(), m);
        let mut largest = 0;
        for i in 0..3000u64 {
            let prev = m.clone();
            m.committed = i * 10;
            m.segments.push(segment(i * 10));
            m.watermarks.push(watermark(i * 10));
            // Retention keeps 100 segments; 50 watermark points are kept.
            if m.segments.len() > 100 {
                m.segments.remove(0);
            }
            if m.watermarks.len() > 50 {
                m.watermarks.remove(0);
            }
            j = j.commit(d, &prev, &mut m).unwrap();
            if i % 97 == 0 {
                assert_eq!(Manifest::load(d).unwrap().unwrap(), m, "after commit {i}");
            }
            largest = largest.max(j.bytes);
        }
        assert_eq!(Manifest::load(d).unwrap().unwrap(), m);
        assert_eq!(journals(d).len(), 1, "older generations are deleted");
        assert!(j.generation > 1, "dropped entries led to rewrites");
        let one = (serde_json::to_string(&segment(0)).unwrap().len()
            + serde_json::to_string(&watermark(0)).unwrap().len()) as u64;
        assert!(largest < 3 * (150 + REWRITE_AT) * one, "{largest} bytes");

        // A change that is not an append (an entry edited) writes the manifest whole.
        let prev = m.clone();
        m.segments[5].rows = 2;
        let g = j.generation;
        j = j.commit(d, &prev, &mut m).unwrap();
        assert_eq!(j.generation, g + 1);
        assert_eq!(Manifest::load(d).unwrap().unwrap(), m);
    }

    /// A commit that crashed after appending (its manifest not stored) leaves bytes that readers
    /// ignore and the next commit cuts off.
    #[test]
    fn a_crashed_append_is_ignored_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut m = Manifest::new("j", "fp", "src", 10);
        m.segments.push(segment(0));
        let j = Journal::create(d, &mut m).unwrap();
        let path = d.join(journal_file(j.generation));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"segment\": {\"half a li").unwrap();
        drop(f);
        assert_eq!(Manifest::load(d).unwrap().unwrap(), m);
        let prev = m.clone();
        m.segments.push(segment(10));
        let j = j.commit(d, &prev, &mut m).unwrap();
        assert_eq!(Manifest::load(d).unwrap().unwrap(), m);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), j.bytes);
    }

    /// A version-1 manifest (lists inline) still loads, and its first commit writes a journal.
    #[test]
    fn a_v1_manifest_loads_and_is_continued_with_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut m = Manifest::new("j", "fp", "src", 10);
        m.segments.push(segment(0));
        m.watermarks.push(watermark(0));
        let mut value = serde_json::to_value(&m).unwrap();
        value["format"] = super::super::manifest::FORMAT_V1.into();
        let sum = sha256_hex(value.to_string().as_bytes());
        value["checksum"] = sum.into();
        std::fs::write(d.join(super::super::manifest::MANIFEST), value.to_string()).unwrap();
        let mut loaded = Manifest::load(d).unwrap().unwrap();
        assert_eq!(loaded, m);
        Journal::create(d, &mut loaded).unwrap();
        assert_eq!(Manifest::load(d).unwrap().unwrap(), m);
        assert_eq!(journals(d), vec![journal_file(1)]);
    }
}
