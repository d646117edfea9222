//! Replay segments: the records of one buffer stream over one timestamp range, as Parquet.
//!
//! A segment is encoded in memory, checksummed, written under a temporary name, fsynced and
//! renamed into place. Reading verifies length and checksum before the Parquet decoder sees a
//! byte, because the decoder can panic on some corrupt inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder, UInt64Builder, UInt8Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::records::{DeadLetter, Event, Label, Origin, Position, Prediction, Record};
use crate::sources::Ingested;

/// What a replay buffer keeps: the three input streams and the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferStream {
    /// Accepted events.
    Events,
    /// Accepted predictions.
    Predictions,
    /// Accepted labels.
    Labels,
    /// Refused records of every stream.
    DeadLetters,
    /// Operators' commands to the learner.
    Controls,
}

impl BufferStream {
    /// All buffer streams, in their canonical order.
    pub const ALL: [BufferStream; 5] = [
        BufferStream::Events,
        BufferStream::Predictions,
        BufferStream::Labels,
        BufferStream::DeadLetters,
        BufferStream::Controls,
    ];

    /// The directory name of the stream inside a buffer.
    pub fn name(self) -> &'static str {
        match self {
            BufferStream::Events => "events",
            BufferStream::Predictions => "predictions",
            BufferStream::Labels => "labels",
            BufferStream::DeadLetters => "dead_letters",
            BufferStream::Controls => "controls",
        }
    }

    /// The buffer stream an ingested record belongs to (`None` for marks).
    pub fn of(item: &Ingested) -> Option<BufferStream> {
        match item {
            Ingested::Accepted(Record::Event(_), _) => Some(BufferStream::Events),
            Ingested::Accepted(Record::Prediction(_), _) => Some(BufferStream::Predictions),
            Ingested::Accepted(Record::Label(_), _) => Some(BufferStream::Labels),
            Ingested::Dead(_) => Some(BufferStream::DeadLetters),
            Ingested::Control(..) => Some(BufferStream::Controls),
            Ingested::Mark(..) => None,
        }
    }

    /// The Arrow schema of the stream's segments.
    pub fn schema(self) -> SchemaRef {
        let mut fields = vec![
            Field::new("ts", DataType::UInt64, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("offset", DataType::UInt64, false),
        ];
        let list = |ty: DataType| DataType::List(Arc::new(Field::new("item", ty, true)));
        match self {
            BufferStream::Events => fields.extend([
                Field::new("id", DataType::Utf8, false),
                Field::new("entity", DataType::Utf8, false),
                Field::new("time", DataType::UInt64, false),
                Field::new("numeric_micro", list(DataType::Int64), false),
                Field::new("categorical", list(DataType::Utf8), false),
            ]),
            BufferStream::Predictions => fields.extend([
                Field::new("event_id", DataType::Utf8, false),
                Field::new("model", DataType::Utf8, false),
                Field::new("score_micro", DataType::Int64, false),
                Field::new("time", DataType::UInt64, false),
            ]),
            BufferStream::Labels => fields.extend([
                Field::new("event_id", DataType::Utf8, false),
                Field::new("label", DataType::UInt8, false),
                Field::new("time", DataType::UInt64, false),
            ]),
            BufferStream::DeadLetters => fields.extend([
                Field::new("stream", DataType::Utf8, false),
                Field::new("field", DataType::Utf8, false),
                Field::new("reason", DataType::Utf8, false),
                Field::new("raw", DataType::Utf8, false),
            ]),
            // The command as JSON, with the version file it names: rare and small records,
            // whose shape may grow without a new column each time.
            BufferStream::Controls => fields.push(Field::new("control", DataType::Utf8, false)),
        }
        Arc::new(Schema::new(fields))
    }
}

impl std::fmt::Display for BufferStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A committed segment, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Which buffer stream it holds.
    pub stream: BufferStream,
    /// Path relative to the buffer directory.
    pub file: String,
    /// First timestamp of its range (inclusive).
    pub ts_start: u64,
    /// End of its range (exclusive).
    pub ts_end: u64,
    /// Smallest own time of its records (0 for dead letters without one).
    pub time_min: u64,
    /// Largest own time of its records.
    pub time_max: u64,
    /// Records it holds.
    pub rows: u64,
    /// Records per input stream (dead-letter segments hold all three).
    pub rows_by_stream: std::collections::BTreeMap<String, u64>,
    /// File length in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// The file name of a segment of `stream` over `[start, end)`, relative to the buffer.
pub fn segment_file(stream: BufferStream, start: u64, end: u64) -> String {
    format!("{}/{start:020}-{end:020}.parquet", stream.name())
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `rows` (sorted, all of `stream`) as the segment `[start, end)` under `dir`.
pub fn write_segment(
    dir: &Path,
    stream: BufferStream,
    start: u64,
    end: u64,
    rows: &[(u64, Ingested)],
) -> Result<SegmentMeta> {
    let file = segment_file(stream, start, end);
    let path = dir.join(&file);
    let batch = encode(stream, rows).map_err(|e| Error::parquet(&path, e))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        // Nothing reads a segment's statistics (readers verify and decode whole segments), and
        // computing them was a fifth of the writer's time (`cargo bench --bench buffer`).
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
        .set_created_by("tidemark".to_string());
    // Event ids are distinct, so a dictionary only costs interning every one of them before
    // the writer falls back to plain encoding (most of the segment writer's time after zstd).
    for column in ["id", "event_id", "offset"] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    let props = props.build();
    let mut bytes = Vec::new();
    let mut w = ArrowWriter::try_new(&mut bytes, stream.schema(), Some(props))
        .map_err(|e| Error::parquet(&path, e))?;
    w.write(&batch).map_err(|e| Error::parquet(&path, e))?;
    w.close().map_err(|e| Error::parquet(&path, e))?;
    write_atomic(&path, &bytes)?;
    let mut by_stream: std::collections::BTreeMap<&str, u64> = Default::default();
    let (mut time_min, mut time_max) = (u64::MAX, 0);
    for (_, item) in rows {
        let name = match item {
            Ingested::Dead(d) => d.stream.as_str(),
            Ingested::Control(..) => crate::control::STREAM,
            other => other.stream().name(),
        };
        *by_stream.entry(name).or_insert(0) += 1;
        if let Ingested::Accepted(r, _) = item {
            time_min = time_min.min(r.time());
            time_max = time_max.max(r.time());
        }
    }
    Ok(SegmentMeta {
        stream,
        file,
        ts_start: start,
        ts_end: end,
        time_min: if time_min == u64::MAX { 0 } else { time_min },
        time_max,
        rows: rows.len() as u64,
        rows_by_stream: by_stream
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

/// Writes `bytes` to `path` crash-safely: temporary file, fsync, rename, directory fsync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // A bare file name's parent is "", which cannot be opened to fsync.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The directory may be one the user named (and reached through a link); the file is ours.
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = crate::confine::create(&tmp)?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

/// Fsyncs a directory so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Reads a segment: checks its length and checksum, then decodes it.
pub fn read_segment(dir: &Path, meta: &SegmentMeta) -> Result<Vec<(u64, Ingested)>> {
    let path = dir.join(&meta.file);
    let bytes = verify_segment(dir, meta)?;
    let rows = decode(meta.stream, &path, bytes)?;
    // A checksum proves the file is the one the manifest names, not that its rows are in
    // range; a replay source relies on that.
    if let Some((t, _)) = rows
        .iter()
        .find(|(t, _)| !(meta.ts_start..meta.ts_end).contains(t))
    {
        return Err(Error::replay(
            &path,
            format!(
                "holds a record at ts {t}, outside its range {}..{}",
                meta.ts_start, meta.ts_end
            ),
        ));
    }
    Ok(rows)
}

/// Checks that a segment file exists with the recorded length and checksum; returns its bytes.
pub fn verify_segment(dir: &Path, meta: &SegmentMeta) -> Result<Vec<u8>> {
    let path = dir.join(&meta.file);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if bytes.len() as u64 != meta.bytes {
        return Err(Error::replay(
            &path,
            format!(
                "segment is {} bytes, the manifest says {} (truncated or replaced)",
                bytes.len(),
                meta.bytes
            ),
        ));
    }
    let sum = sha256_hex(&bytes);
    if sum != meta.sha256 {
        return Err(Error::replay(
            &path,
            format!(
                "checksum mismatch: file has sha256 {sum}, the manifest says {}",
                meta.sha256
            ),
        ));
    }
    Ok(bytes)
}

fn encode(
    stream: BufferStream,
    rows: &[(u64, Ingested)],
) -> std::result::Result<RecordBatch, String> {
    let mut ts = UInt64Builder::new();
    let mut source = StringBuilder::new();
    let mut offset = UInt64Builder::new();
    let mut s1 = StringBuilder::new();
    let mut s2 = StringBuilder::new();
    let mut s3 = StringBuilder::new();
    let mut s4 = StringBuilder::new();
    let mut u1 = UInt64Builder::new();
    let mut i1 = Int64Builder::new();
    let mut b1 = UInt8Builder::new();
    let mut nums = ListBuilder::new(Int64Builder::new());
    let mut cats = ListBuilder::new(StringBuilder::new());
    for (t, item) in rows {
        ts.append_value(*t);
        let pos = match item {
            Ingested::Accepted(_, o) | Ingested::Control(_, o) => &o.position,
            Ingested::Dead(d) => &d.position,
            Ingested::Mark(..) => return Err("a mark is not a record".into()),
        };
        source.append_value(&pos.source);
        offset.append_value(pos.offset);
        match (stream, item) {
            (BufferStream::Events, Ingested::Accepted(Record::Event(e), _)) => {
                s1.append_value(&e.id);
                s2.append_value(&e.entity);
                u1.append_value(e.time);
                nums.append_value(e.numeric.iter().copied());
                cats.append_value(e.categorical.iter().map(|c| c.as_deref()));
            }
            (BufferStream::Predictions, Ingested::Accepted(Record::Prediction(p), _)) => {
                s1.append_value(&p.event_id);
                s2.append_value(&p.model);
                i1.append_value(p.score);
                u1.append_value(p.time);
            }
            (BufferStream::Labels, Ingested::Accepted(Record::Label(l), _)) => {
                s1.append_value(&l.event_id);
                b1.append_value(l.label);
                u1.append_value(l.time);
            }
            (BufferStream::DeadLetters, Ingested::Dead(d)) => {
                s1.append_value(&d.stream);
                s2.append_value(&d.field);
                s3.append_value(&d.reason);
                s4.append_value(&d.raw);
            }
            (BufferStream::Controls, Ingested::Control(c, _)) => {
                s1.append_value(serde_json::to_string(c).map_err(|e| e.to_string())?);
            }
            _ => return Err(format!("a record of another stream in a {stream} segment")),
        }
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(source.finish()),
        Arc::new(offset.finish()),
    ];
    match stream {
        BufferStream::Events => cols.extend([
            Arc::new(s1.finish()) as ArrayRef,
            Arc::new(s2.finish()),
            Arc::new(u1.finish()),
            Arc::new(nums.finish()),
            Arc::new(cats.finish()),
        ]),
        BufferStream::Predictions => cols.extend([
            Arc::new(s1.finish()) as ArrayRef,
            Arc::new(s2.finish()),
            Arc::new(i1.finish()),
            Arc::new(u1.finish()),
        ]),
        BufferStream::Labels => cols.extend([
            Arc::new(s1.finish()) as ArrayRef,
            Arc::new(b1.finish()),
            Arc::new(u1.finish()),
        ]),
        BufferStream::DeadLetters => cols.extend([
            Arc::new(s1.finish()) as ArrayRef,
            Arc::new(s2.finish()),
            Arc::new(s3.finish()),
            Arc::new(s4.finish()),
        ]),
        BufferStream::Controls => cols.push(Arc::new(s1.finish())),
    }
    RecordBatch::try_new(stream.schema(), cols).map_err(|e| e.to_string())
}

fn decode(stream: BufferStream, path: &PathBuf, bytes: Vec<u8>) -> Result<Vec<(u64, Ingested)>> {
    let bad = |reason: String| Error::replay(path, reason);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| bad(format!("unreadable segment: {e}")))?;
    let expected = stream.schema();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(format!("unreadable segment: {e}")))?;
        if batch.schema().fields() != expected.fields() {
            return Err(bad(format!(
                "segment columns {:?} are not those of a {stream} segment",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
            )));
        }
        decode_batch(stream, &batch, &mut out).map_err(bad)?;
    }
    Ok(out)
}

fn decode_batch(
    stream: BufferStream,
    b: &RecordBatch,
    out: &mut Vec<(u64, Ingested)>,
) -> std::result::Result<(), String> {
    let u64s = |i: usize| b.column(i).as_primitive::<UInt64Type>();
    let strs = |i: usize| b.column(i).as_string::<i32>();
    let (ts, source, offset) = (u64s(0), strs(1), u64s(2));
    // Every record of a segment comes from a few sources: each name is shared, not copied.
    let mut last: Option<std::sync::Arc<str>> = None;
    for r in 0..b.num_rows() {
        let name = source.value(r);
        let shared = match &last {
            Some(s) if &**s == name => s.clone(),
            _ => last.insert(std::sync::Arc::from(name)).clone(),
        };
        let position = Position {
            source: shared,
            offset: offset.value(r),
        };
        // The stamp it was given, which a replay may feed it after (see `ReplayFeed::settle_at`).
        let origin = |position| Origin {
            stamp: ts.value(r),
            position,
        };
        let item = match stream {
            BufferStream::Events => {
                let nums = b.column(6).as_list::<i32>().value(r);
                let nums = nums.as_primitive::<Int64Type>();
                let cats = b.column(7).as_list::<i32>().value(r);
                let cats = cats.as_string::<i32>();
                Ingested::Accepted(
                    Record::Event(Arc::new(Event {
                        id: strs(3).value(r).into(),
                        entity: strs(4).value(r).into(),
                        time: u64s(5).value(r),
                        numeric: (0..nums.len())
                            .map(|i| (!nums.is_null(i)).then(|| nums.value(i)))
                            .collect(),
                        categorical: (0..cats.len())
                            .map(|i| (!cats.is_null(i)).then(|| cats.value(i).into()))
                            .collect(),
                        segments: Default::default(),
                    })),
                    origin(position),
                )
            }
            BufferStream::Predictions => Ingested::Accepted(
                Record::Prediction(Arc::new(Prediction {
                    event_id: strs(3).value(r).into(),
                    model: strs(4).value(r).into(),
                    score: b.column(5).as_primitive::<Int64Type>().value(r),
                    time: u64s(6).value(r),
                })),
                origin(position),
            ),
            BufferStream::Labels => Ingested::Accepted(
                Record::Label(Label {
                    event_id: strs(3).value(r).into(),
                    label: b.column(4).as_primitive::<UInt8Type>().value(r),
                    time: u64s(5).value(r),
                }),
                origin(position),
            ),
            BufferStream::DeadLetters => Ingested::Dead(Box::new(DeadLetter {
                stream: strs(3).value(r).to_string(),
                position,
                field: strs(4).value(r).to_string(),
                reason: strs(5).value(r).to_string(),
                raw: strs(6).value(r).to_string(),
            })),
            BufferStream::Controls => {
                let text = strs(3).value(r);
                match serde_json::from_str(text) {
                    Ok(c) => Ingested::Control(Box::new(c), origin(position)),
                    Err(e) => {
                        return Err(format!(
                            "row {r} holds no command ({e}): {}",
                            crate::records::excerpt(text)
                        ))
                    }
                }
            }
        };
        out.push((ts.value(r), item));
    }
    Ok(())
}
