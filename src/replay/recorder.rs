//! Recording: the dataflow operator that writes ingested records into segments, and the commit
//! that makes segments, source positions and output lengths durable together.
//!
//! All records are exchanged to worker 0, which cuts them into segments at multiples of the segment
//! length (so segment files are the same on every worker count) once the frontier has passed a
//! boundary, and has them encoded and written on a thread of their own. A commit at boundary `T`
//! needs two things: every segment below `T` is written, and every output sink has written its
//! lines below `T`. Then the manifest is replaced, naming the segments, the partitions' resume
//! points valid at `T` (marks stamped below `T`), and each output file's length holding exactly its
//! lines below `T`.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::VecCollection;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::journal::Journal;
use super::manifest::{Manifest, WatermarkPoint, WATERMARKS_KEPT};
use super::segment::{write_segment, BufferStream, SegmentMeta};
use crate::error::{Error, Result};
use crate::sources::{Ingested, PartitionState};

/// Segments being written and partition states captured up to a boundary, awaiting the
/// outputs.
#[derive(Debug)]
struct Staged {
    end: u64,
    /// The boundary's segment files, encoded and written off the worker thread (Parquet
    /// encoding and compression are most of the recorder's work, and need nothing of the
    /// dataflow); the boundary is committed once they are written.
    segments: Result<std::thread::JoinHandle<Result<Vec<SegmentMeta>>>>,
    partitions: BTreeMap<String, PartitionState>,
}

/// Output lengths at a commit boundary, and the work that makes them durable.
#[derive(Default)]
pub struct OutputCut {
    /// Each output file's length holding exactly its lines below the boundary.
    pub lengths: BTreeMap<String, u64>,
    /// Each waits until an output file's lines are durable (its Kafka lines before the cut
    /// acknowledged, the file synced); run on the commit thread before the manifest naming
    /// the lengths.
    pub durable: Vec<Box<dyn FnOnce() -> Result<()> + Send>>,
}

/// A commit being made durable on a thread of its own.
struct Writing {
    began: Instant,
    /// The stored manifest, its journal, and the files it no longer names.
    done: std::thread::JoinHandle<Result<(Manifest, Journal, Vec<String>)>>,
}

/// The commit state of a recording job (worker 0 only).
pub struct Checkpointer {
    dir: PathBuf,
    manifest: Arc<Manifest>,
    /// The journal holding `manifest`'s lists; `None` until this run's first commit writes it.
    journal: Option<Journal>,
    staged: VecDeque<Staged>,
    writing: Option<Writing>,
    /// Compressed pieces of the last state file, shared with its writer thread.
    frames: std::sync::Arc<std::sync::Mutex<super::frames::Frames>>,
    retention: Option<u64>,
    disorder: u64,
    /// Commits made in this run.
    pub commits: u64,
    /// Operator-state snapshots at segment boundaries, committed with them (drift detectors).
    pub snapshots: Vec<(&'static str, crate::dataflow::ordered::Snapshots)>,
    /// Kafka read positions, committed to the job's group after each commit (monitoring).
    pub group_offsets: Option<crate::kafka::offsets::GroupOffsets>,
    /// The control directory whose commands a commit retires (see [`crate::control`]).
    pub controls: Option<PathBuf>,
}

impl Checkpointer {
    /// A checkpointer continuing `manifest` in buffer `dir`.
    pub fn new(
        dir: PathBuf,
        manifest: Manifest,
        retention: Option<u64>,
        disorder: u64,
    ) -> Rc<RefCell<Checkpointer>> {
        Rc::new(RefCell::new(Checkpointer {
            dir,
            manifest: Arc::new(manifest),
            journal: None,
            staged: VecDeque::new(),
            writing: None,
            frames: Default::default(),
            retention,
            disorder,
            commits: 0,
            snapshots: Vec::new(),
            group_offsets: None,
            controls: None,
        }))
    }

    /// The manifest as of the last commit.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Commits the latest staged boundary at or below `outputs_below` whose segments are
    /// written (every staged one, at the last commit); `cut(T)` gives each output file's length
    /// holding exactly its lines below `T`, and what makes it durable. Returns how long a
    /// commit that completed took.
    ///
    /// What waits on the disk (syncing the outputs, compressing and writing the operators'
    /// state, storing the manifest) runs on a thread of its own: on worker 0 it held every
    /// update back for as long as a commit took (10–120 ms each at the Kafka bench's half-peak
    /// load). A later call completes the commit once that thread is done, and no other
    /// boundary is prepared meanwhile. The last commit (`u64::MAX`) waits.
    pub fn try_commit(
        &mut self,
        outputs_below: u64,
        cut: impl FnOnce(u64) -> Result<OutputCut>,
    ) -> Result<Option<Duration>> {
        let mut done = None;
        if let Some(w) = self.writing.take() {
            if !w.done.is_finished() && outputs_below != u64::MAX {
                self.writing = Some(w);
                return Ok(None);
            }
            done = Some(self.complete(w)?);
        }
        let mut last = None;
        let mut added = Vec::new();
        while let Some(s) = self.staged.front().filter(|s| s.end <= outputs_below) {
            // Worker 0 does not wait for a segment being encoded (a core for about a tenth of
            // a second at a 5-minute boundary): joining it here held every update back that
            // long, at every boundary. A later call commits once it is written.
            let encoding = matches!(&s.segments, Ok(h) if !h.is_finished());
            if encoding && outputs_below != u64::MAX {
                break;
            }
            let s = self.staged.pop_front().expect("checked");
            let segments = s
                .segments?
                .join()
                .map_err(|_| Error::replay(&self.dir, "the segment writer panicked"))??;
            added.extend(segments);
            last = Some((s.end, s.partitions));
        }
        let Some((end, partitions)) = last else {
            return Ok(done);
        };
        let began = Instant::now();
        // The next manifest; `self.manifest` stays the committed one until it is stored.
        let prev = self.manifest.clone();
        let mut m = (*prev).clone();
        m.segments.extend(added);
        m.segments.sort_by_key(|s| (s.ts_start, s.stream));
        m.committed = end;
        m.complete = end == u64::MAX;
        m.watermarks.push(WatermarkPoint {
            ts: end,
            partitions: partitions
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        p.max_seen.map_or(0, |t| t.saturating_sub(self.disorder)),
                    )
                })
                .collect(),
        });
        if m.watermarks.len() > WATERMARKS_KEPT {
            let excess = m.watermarks.len() - WATERMARKS_KEPT;
            m.watermarks.drain(..excess);
        }
        m.partitions.extend(partitions);
        let outputs = cut(end)?;
        m.outputs = outputs.lengths;
        let mut expired: Vec<String> = self
            .expire(&mut m, end)
            .into_iter()
            .map(|s| s.file)
            .collect();
        // One state file holds every operator's snapshot: `{"name": state, …}`, put together
        // on the commit thread (the snapshots share their pieces; nothing is copied here).
        let mut states = Vec::with_capacity(self.snapshots.len());
        if end != u64::MAX {
            for (name, snaps) in &self.snapshots {
                let snaps = snaps.borrow();
                let Some(state) = crate::dataflow::ordered::snapshot_at(&snaps, end) else {
                    return Err(Error::replay(
                        &self.dir,
                        format!("no {name} state at the commit point {end}"),
                    ));
                };
                states.push((*name, state.clone()));
            }
            for (_, snaps) in &self.snapshots {
                snaps.borrow_mut().retain(|_, (last, _)| *last > end);
            }
        }
        let dir = self.dir.clone();
        let frames = self.frames.clone();
        let retention = self.retention;
        let durable = outputs.durable;
        let journal = self.journal.take();
        let thread = super::background::spawn(
            "tidemark-commit",
            move || -> Result<(Manifest, Journal, Vec<String>)> {
                for d in durable {
                    d()?;
                }
                if !states.is_empty() {
                    m.states.push(write_state(&dir, end, &states, &frames)?);
                }
                if let (Some(keep), false) = (retention, end == u64::MAX) {
                    let cutoff = end.saturating_sub(keep);
                    expired.extend(
                        m.states
                            .iter()
                            .filter(|s| s.at <= cutoff)
                            .map(|s| s.file.clone()),
                    );
                    m.states.retain(|s| s.at > cutoff);
                }
                let journal = match journal {
                    Some(j) => j.commit(&dir, &prev, &mut m)?,
                    None => Journal::create(&dir, &mut m)?,
                };
                Ok((m, journal, expired))
            },
        )
        .map_err(|e| Error::io(&self.dir, e))?;
        let w = Writing {
            began,
            done: thread,
        };
        if end == u64::MAX {
            return self.complete(w).map(Some);
        }
        self.writing = Some(w);
        Ok(done)
    }

    /// Completes the commit `w` once its manifest is stored: deletes the files it no longer
    /// names; returns how long the commit took.
    fn complete(&mut self, w: Writing) -> Result<Duration> {
        let (m, journal, expired) = w
            .done
            .join()
            .map_err(|_| Error::replay(&self.dir, "the commit thread panicked"))??;
        self.manifest = Arc::new(m);
        self.journal = Some(journal);
        if self.commits == 0 {
            let marker = self.dir.join(super::manifest::COMMITTED);
            if !marker.exists() {
                use std::io::Write;
                let mut f = crate::confine::create(&marker)?;
                f.write_all(b"this replay buffer has committed: its MANIFEST.json must exist\n")
                    .and_then(|()| f.sync_all())
                    .map_err(|e| Error::io(&marker, e))?;
                super::segment::sync_dir(&self.dir)?;
            }
        }
        // Only after the manifest stops naming them may expired segments go.
        for file in expired {
            let path = self.dir.join(&file);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io(path, e));
                }
            }
        }
        self.commits += 1;
        if let (Some(dir), Some(p)) = (
            &self.controls,
            self.manifest.partitions.get(crate::control::PARTITION_KEY),
        ) {
            // The commands the buffer now holds are done with: a later run must not apply
            // them again. A failure leaves them for the next commit (the cursor still skips
            // them on a restart).
            if let Err(e) = crate::control::retire(dir, p.cursor.offset.saturating_sub(1)) {
                tracing::warn!("cannot retire applied operator commands: {e}");
            }
        }
        if let Some(g) = &self.group_offsets {
            g.commit(
                &self.manifest.partitions,
                self.manifest.committed == u64::MAX,
            );
        }
        Ok(w.began.elapsed())
    }

    /// Drops segments older than retention from the manifest, adding them to the base counts.
    fn expire(&self, m: &mut Manifest, end: u64) -> Vec<SegmentMeta> {
        let (Some(keep), false) = (self.retention, end == u64::MAX) else {
            return Vec::new();
        };
        let cutoff = end.saturating_sub(keep);
        let (old, kept): (Vec<_>, Vec<_>) = m.segments.drain(..).partition(|s| s.ts_end <= cutoff);
        m.segments = kept;
        // Commands count in no stream's totals (each made a decision).
        for s in old.iter().filter(|s| s.stream != BufferStream::Controls) {
            for (stream, n) in &s.rows_by_stream {
                let c = m.base.entry(stream.clone()).or_default();
                if s.stream == BufferStream::DeadLetters {
                    c.dead_lettered += n;
                } else {
                    c.accepted += n;
                }
            }
        }
        old
    }
}

/// Writes the operators' state snapshots at boundary `end` as one state file (`{"name":
/// state, …}`), compressed by `frames`.
fn write_state(
    dir: &std::path::Path,
    end: u64,
    states: &[(&'static str, crate::dataflow::ordered::Snapshot)],
    frames: &std::sync::Mutex<super::frames::Frames>,
) -> Result<super::manifest::StateMeta> {
    let file = super::manifest::state_file(end);
    let path = dir.join(&file);
    let parent = path.parent().expect("state files are in a subdirectory");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let mut pieces = vec![bytes::Bytes::from_static(b"{")];
    for (i, (name, state)) in states.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        pieces.push(format!("{sep}\"{name}\":").into());
        pieces.extend(state.0.iter().cloned());
    }
    pieces.push(bytes::Bytes::from_static(b"}"));
    let packed = frames
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pack(&pieces)
        .map_err(|e| Error::io(&path, e))?;
    super::segment::write_atomic(&path, &packed)?;
    Ok(super::manifest::StateMeta {
        at: end,
        file,
        bytes: packed.len() as u64,
        sha256: super::segment::sha256_hex(&packed),
    })
}

/// Records `ingested` (live records and marks, at their own timestamps) into the buffer;
/// `keys` gives each partition (by global index) its manifest key and its records' position
/// source.
pub fn record<'s>(
    ingested: VecCollection<'s, u64, Ingested>,
    job_name: &str,
    segment_ms: u64,
    keys: Vec<(String, String)>,
    checkpointer: Option<Rc<RefCell<Checkpointer>>>,
) {
    let mut pending: BTreeMap<u64, Vec<Ingested>> = BTreeMap::new();
    let mut marks: BTreeMap<u32, PartitionState> = BTreeMap::new();
    // The largest committed record offset per position source, continuing the manifest's.
    let mut offsets: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(cp) = &checkpointer {
        // A resumed run starts from the manifest's states: a partition that marks nothing new
        // (finished, or silent) keeps its recorded state rather than losing it.
        let m = &cp.borrow().manifest;
        for (p, (key, source)) in keys.iter().enumerate() {
            if let Some(state) = m.partitions.get(key) {
                marks.insert(p as u32, state.clone());
                if let Some(c) = state.committed {
                    offsets.insert(source.clone(), c);
                }
            }
        }
    }
    let mut staged_to = checkpointer
        .as_ref()
        .map_or(0, |c| c.borrow().manifest.committed);
    ingested.inner.sink(
        Exchange::new(|_| 0),
        &format!("{job_name}.ReplayRecorder"),
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for (item, t, _) in data.drain(..) {
                    pending.entry(t).or_default().push(item);
                }
            });
            let Some(cp) = checkpointer.as_ref() else {
                pending.clear();
                return;
            };
            let f = frontier.frontier().first().copied();
            let end = match f {
                None => u64::MAX,
                Some(f) => f - f % segment_ms,
            };
            if end <= staged_to {
                return;
            }
            // Everything stamped below `end` is here: file it by segment (all of them close,
            // since `end` is a boundary), and note the resume points.
            let mut closing: BTreeMap<u64, BTreeMap<BufferStream, Vec<(u64, Ingested)>>> =
                BTreeMap::new();
            while let Some(entry) = pending.first_entry() {
                if *entry.key() >= end {
                    break;
                }
                let t = *entry.key();
                for item in entry.remove() {
                    match item {
                        Ingested::Mark(p, state) => {
                            let newer = marks.get(&p).is_none_or(|old| {
                                (old.hi, old.cursor, old.done)
                                    <= (state.hi, state.cursor, state.done)
                            });
                            if newer {
                                marks.insert(p, *state);
                            }
                        }
                        item => {
                            let pos = match &item {
                                Ingested::Accepted(_, o) | Ingested::Control(_, o) => &o.position,
                                Ingested::Dead(d) => &d.position,
                                Ingested::Mark(..) => unreachable!("matched above"),
                            };
                            // Looked up before inserting: the source name is cloned once,
                            // not once per record.
                            match offsets.get_mut(&*pos.source) {
                                Some(o) => *o = (*o).max(pos.offset),
                                None => {
                                    offsets.insert(pos.source.to_string(), pos.offset);
                                }
                            }
                            let stream = BufferStream::of(&item).expect("a record");
                            closing
                                .entry(t / segment_ms)
                                .or_default()
                                .entry(stream)
                                .or_default()
                                .push((t, item));
                        }
                    }
                }
            }
            let mut cp = cp.borrow_mut();
            let dir = cp.dir.clone();
            let write = move || {
                let mut segments = Vec::new();
                for (k, streams) in closing {
                    for (stream, mut rows) in streams {
                        // By time and read position (unique per record; the whole record
                        // breaks any tie): a total order, without comparing record contents.
                        rows.sort_by(|a, b| {
                            (a.0, position(&a.1))
                                .cmp(&(b.0, position(&b.1)))
                                .then_with(|| a.cmp(b))
                        });
                        let start = k * segment_ms;
                        segments.push(write_segment(
                            &dir,
                            stream,
                            start,
                            start + segment_ms,
                            &rows,
                        )?);
                    }
                }
                Ok(segments)
            };
            let segments = super::background::spawn("tidemark-segments", write).map_err(|e| {
                Error::replay(&cp.dir, format!("cannot start the segment writer: {e}"))
            });
            let partitions = keys
                .iter()
                .enumerate()
                .filter_map(|(p, (key, source))| {
                    let committed = offsets.get(source).copied();
                    let mut state = match marks.get(&(p as u32)) {
                        Some(s) => s.clone(),
                        None if committed.is_some() => PartitionState::default(),
                        None => return None,
                    };
                    state.committed = committed;
                    Some((key.clone(), state))
                })
                .collect();
            cp.staged.push_back(Staged {
                end,
                segments,
                partitions,
            });
            staged_to = end;
        },
    );
}

/// Where a recorded item was read (marks, which are never recorded, have no position).
fn position(i: &Ingested) -> Option<&crate::records::Position> {
    match i {
        Ingested::Accepted(_, o) | Ingested::Control(_, o) => Some(&o.position),
        Ingested::Dead(d) => Some(&d.position),
        Ingested::Mark(..) => None,
    }
}
