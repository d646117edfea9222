//! Builds a reference profile from files or from a range of a job's own sources.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::profile::{Profile, ProfileBuilder};
use crate::config::Job;
use crate::error::{Error, Result};
use crate::records::Record;
use crate::schema::{Role, Stream};
use crate::sources::partition::{Partition, PartitionSpec};

/// Records read and refused while building a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileCounts {
    /// Records read.
    pub read: u64,
    /// Records profiled.
    pub used: u64,
    /// Records left out as duplicates: an event whose id, or a prediction whose (event id,
    /// model version), came before in the order the inputs are read (the job decides by
    /// timestamp, source and position, within its memory of an id: for a reference range of
    /// its own sources, the same records but where the two orders differ).
    pub duplicates: u64,
    /// Records outside the time range.
    pub outside: u64,
    /// Records refused by their schema, with the first refusal's description.
    pub refused: u64,
    /// The first refusal: where and why.
    pub first_refusal: Option<String>,
}

/// The partition a reference file is read as, by extension.
pub fn file_partition(path: &Path) -> Result<PartitionSpec> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Ok(PartitionSpec::Parquet(path.to_path_buf())),
        Some("jsonl") | Some("json") | Some("ndjson") => {
            Ok(PartitionSpec::Jsonl(path.to_path_buf()))
        }
        _ => Err(Error::profile(
            path,
            "reference files must end in .parquet or .jsonl",
        )),
    }
}

/// Profiles `inputs` (stream, partition) read with `job`'s schemas, keeping records whose own
/// time lies in `range`; with `skip_outside`, the counts leave out Parquet rows that could not
/// be in it.
pub fn build(
    job: &Job,
    inputs: &[(Stream, PartitionSpec)],
    range: std::ops::Range<u64>,
    skip_outside: bool,
    source: &str,
    fine_bins: u32,
    max_values: usize,
) -> Result<(Profile, ProfileCounts)> {
    let ev = job.schema(Stream::Events);
    let mut b = ProfileBuilder::new(&ev.numeric, &ev.categorical);
    // Decoding is nearly all of the work: each input is read and filtered on a thread of its
    // own, and what it keeps is profiled in input order, as reading the inputs in turn would.
    // (A range of the job's own sources is read at every start, before the dataflow runs.)
    let counts = std::thread::scope(|scope| -> Result<ProfileCounts> {
        let mut readers = Vec::new();
        for (stream, spec) in inputs {
            let (tx, rx) = std::sync::mpsc::sync_channel(KEPT_BATCHES);
            let range = range.clone();
            let reader =
                scope.spawn(move || read_input(job, *stream, spec, range, skip_outside, tx));
            readers.push((rx, reader));
        }
        let mut counts = ProfileCounts::default();
        let mut seen = std::collections::HashSet::new();
        for (rx, reader) in readers {
            for batch in rx {
                for r in batch {
                    let first = match &r {
                        Record::Event(e) => seen.insert((e.id.clone(), None)),
                        Record::Prediction(p) => {
                            seen.insert((p.event_id.clone(), Some(p.model.clone())))
                        }
                        Record::Label(_) => continue,
                    };
                    if !first {
                        counts.duplicates += 1;
                        continue;
                    }
                    match &r {
                        Record::Event(e) => b.event(e),
                        Record::Prediction(p) => b.prediction(p),
                        Record::Label(_) => {}
                    }
                }
            }
            let c = reader
                .join()
                .map_err(|_| Error::config(&job.file, "drift.reference", "a reader panicked"))??;
            counts.read += c.read;
            counts.used += c.used;
            counts.outside += c.outside;
            counts.refused += c.refused;
            counts.first_refusal = counts.first_refusal.or(c.first_refusal);
        }
        Ok(counts)
    })?;
    Ok((b.finish(source, fine_bins, max_values), counts))
}

/// Batches of kept records a reader may hold before the profile takes them.
const KEPT_BATCHES: usize = 8;

/// Reads one input, sending the records whose own time is in `range` in batches; stops early
/// if the receiver is gone. With `skip_outside`, rows of a Parquet file that cannot be in the
/// range are not decoded (nor counted).
fn read_input(
    job: &Job,
    stream: Stream,
    spec: &PartitionSpec,
    range: std::ops::Range<u64>,
    skip_outside: bool,
    tx: std::sync::mpsc::SyncSender<Vec<Record>>,
) -> Result<ProfileCounts> {
    let mut counts = ProfileCounts::default();
    let schema = Arc::new(job.schema(stream).clone());
    // Kafka consumers are per thread: a reader has its own.
    let consumers = crate::kafka::source::Consumers::default();
    let mut p = match spec {
        // Only the range's rows are decoded; what the others were is then not counted.
        PartitionSpec::Parquet(path) if skip_outside => {
            let time = &job.schema(stream).field(Role::Time).name;
            Partition::parquet_in_range(stream, schema, path, time, range.clone())?
        }
        spec => Partition::open(
            stream,
            schema,
            spec,
            &consumers,
            &job.spec.generator,
            Arc::new(AtomicU64::new(0)),
            None,
        )?,
    };
    let mut batch = Vec::new();
    let mut kept = Vec::new();
    while !p.is_done() {
        batch.clear();
        p.read_batch(4096, &mut batch)?;
        if batch.is_empty() && p.silent_for().is_some() {
            // A topic partition waiting on its broker.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for (pos, r) in batch.drain(..) {
            counts.read += 1;
            let r = match r {
                Ok(r) => r,
                Err(d) => {
                    counts.refused += 1;
                    counts
                        .first_refusal
                        .get_or_insert_with(|| format!("{pos}: {}: {}", d.field, d.reason));
                    continue;
                }
            };
            if !range.contains(&r.time()) {
                counts.outside += 1;
                continue;
            }
            counts.used += 1;
            kept.push(r);
        }
        if kept.len() >= 4096 && tx.send(std::mem::take(&mut kept)).is_err() {
            return Ok(counts);
        }
    }
    if !kept.is_empty() {
        let _ = tx.send(kept);
    }
    Ok(counts)
}

/// Resolves the reference of `job`'s `[drift]` section (paths relative to the job file).
pub fn resolve(job: &Job, spec: &super::spec::DriftSpec) -> Result<Profile> {
    let base = job.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let r = &spec.reference;
    let err = |reason: String| Error::config(&job.file, "drift.reference", reason);
    let kinds = [
        r.profile.is_some(),
        !r.events.is_empty() || !r.predictions.is_empty(),
        r.from.is_some() || r.to.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(err(
            "give exactly one of: profile, events (+ predictions) files, or from + to".into(),
        ));
    }
    let (fine, max) = (spec.fine_bins, spec.max_reference_values as usize);
    if let Some(p) = &r.profile {
        let path = base.join(p);
        let profile = Profile::load(&path)?;
        if profile.fine_bins != fine {
            return Err(Error::profile(
                &path,
                format!(
                    "has {} fine bins, drift.fine_bins says {fine}; rebuild it with --fine-bins {fine}",
                    profile.fine_bins
                ),
            ));
        }
        return Ok(profile);
    }
    if r.from.is_some() || r.to.is_some() {
        let (Some(from), Some(to)) = (&r.from, &r.to) else {
            return Err(err("a range needs both from and to".into()));
        };
        let from = crate::runtime::parse_time(from).map_err(|e| err(format!("from: {e}")))?;
        let to = crate::runtime::parse_time(to).map_err(|e| err(format!("to: {e}")))?;
        if from >= to {
            return Err(err("from must be before to".into()));
        }
        // Kafka topics are read up to their end offsets as of now.
        let mut found = job.clone();
        crate::kafka::discover(&mut found)?;
        let inputs: Vec<(Stream, PartitionSpec)> = crate::sources::partitions(&found)
            .into_iter()
            .filter(|(s, _)| *s != Stream::Labels)
            .map(|(s, spec)| match spec {
                PartitionSpec::Kafka(mut k) => {
                    k.spec.until_end = true;
                    (s, PartitionSpec::Kafka(k))
                }
                spec => (s, spec),
            })
            .collect();
        let source = format!("the job's sources over [{from}, {to})");
        let (p, counts) = build(job, &inputs, from..to, true, &source, fine, max)?;
        if p.events == 0 {
            return Err(err(no_usable_events(&source, counts)));
        }
        return Ok(p);
    }
    let mut inputs = Vec::new();
    let mut names: Vec<PathBuf> = Vec::new();
    for (stream, files) in [
        (Stream::Events, &r.events),
        (Stream::Predictions, &r.predictions),
    ] {
        for f in files {
            let path = base.join(f);
            inputs.push((stream, file_partition(&path)?));
            names.push(path);
        }
    }
    let source = names
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let (p, counts) = build(job, &inputs, 0..u64::MAX, false, &source, fine, max)?;
    if p.events == 0 {
        return Err(err(no_usable_events(&source, counts)));
    }
    Ok(p)
}

/// Why a reference has no events: what was read and refused, and the first refusal.
fn no_usable_events(source: &str, counts: ProfileCounts) -> String {
    format!(
        "no usable events in {source} ({} records read, {} refused{})",
        counts.read,
        counts.refused,
        counts
            .first_refusal
            .map(|f| format!("; first: {f}"))
            .unwrap_or_default()
    )
}
