//! Source partitions: one input file, or one generated stream, read in order.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};

use crate::decode::{decode, decode_json_bytes, decode_json_line, Value};
use crate::error::{Error, Result};
use crate::generator::{GeneratorParams, GeneratorStream};
use crate::records::{excerpt, DeadLetter, Position, Record};
use crate::schema::{InputSchema, Stream};

/// A record read from a partition, decoded or refused.
pub type Decoded = (Position, std::result::Result<Record, DeadLetter>);

/// Where a partition's records come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartitionSpec {
    /// A JSON Lines file.
    Jsonl(PathBuf),
    /// A Parquet file.
    Parquet(PathBuf),
    /// The built-in generator's stream.
    Generator,
    /// A partition of a Kafka topic.
    Kafka(crate::kafka::KafkaPartition),
}

/// How far a partition has been read: enough to reopen it at the next record.
///
/// For Kafka, `offset` is the next offset to read.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Cursor {
    /// Lines (JSON Lines), rows (Parquet) or records (generator) consumed.
    pub offset: u64,
    /// Bytes consumed (JSON Lines only).
    pub byte: u64,
}

enum Reader {
    Jsonl {
        path: Arc<str>,
        lines: BufReader<File>,
        line_no: u64,
        byte: u64,
        buf: Vec<u8>,
    },
    Parquet {
        path: Arc<str>,
        reader: Option<ParquetRecordBatchReader>,
        row: u64,
    },
    Generator {
        name: Arc<str>,
        inner: GeneratorStream,
        seq: u64,
    },
    Kafka(crate::kafka::source::PartitionReader),
    /// Could not be opened: one dead letter naming why, then the end.
    Failed {
        source: Arc<str>,
        offset: u64,
        reason: Option<String>,
    },
}

/// An open partition of one stream.
pub struct Partition {
    /// The stream it feeds.
    pub stream: Stream,
    schema: Arc<InputSchema>,
    reader: Reader,
    bytes_read: Arc<AtomicU64>,
    done: bool,
}

fn dead(
    stream: Stream,
    position: Position,
    field: String,
    reason: String,
    raw: &str,
) -> DeadLetter {
    DeadLetter {
        stream: stream.name().to_string(),
        position,
        field,
        reason,
        raw: excerpt(raw),
    }
}

impl Partition {
    /// Opens a partition at `at` (its start if `None`); `bytes_read` is advanced as file bytes
    /// are consumed (for progress). Topic partitions share the consumers of `consumers`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        stream: Stream,
        schema: Arc<InputSchema>,
        spec: &PartitionSpec,
        consumers: &crate::kafka::source::Consumers,
        generator: &GeneratorParams,
        bytes_read: Arc<AtomicU64>,
        at: Option<Cursor>,
    ) -> Result<Partition> {
        let at = at.unwrap_or_default();
        let reader = match spec {
            PartitionSpec::Jsonl(p) => {
                let mut f = File::open(p).map_err(|e| Error::io(p, e))?;
                f.seek(SeekFrom::Start(at.byte))
                    .map_err(|e| Error::io(p, e))?;
                bytes_read.fetch_add(at.byte, Ordering::Relaxed);
                Reader::Jsonl {
                    path: Arc::from(p.display().to_string()),
                    lines: BufReader::with_capacity(1 << 16, f),
                    line_no: at.offset,
                    byte: at.byte,
                    buf: Vec::new(),
                }
            }
            PartitionSpec::Parquet(p) => {
                let f = File::open(p).map_err(|e| Error::io(p, e))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                    .and_then(|b| {
                        b.with_batch_size(4096)
                            .with_offset(at.offset as usize)
                            .build()
                    })
                    .map_err(|e| Error::parquet(p, e))?;
                Reader::Parquet {
                    path: Arc::from(p.display().to_string()),
                    reader: Some(reader),
                    row: at.offset,
                }
            }
            PartitionSpec::Generator => {
                let mut inner = GeneratorStream::new(generator.clone(), stream, false);
                for _ in 0..at.offset {
                    inner.next();
                }
                Reader::Generator {
                    name: Arc::from(format!("generator:{stream}")),
                    inner,
                    seq: at.offset,
                }
            }
            PartitionSpec::Kafka(k) => Reader::Kafka(crate::kafka::source::PartitionReader::open(
                consumers,
                &k.spec,
                &k.group,
                &k.topic,
                k.partition,
                at.offset,
                k.spec.until_end,
            )?),
        };
        Ok(Partition {
            stream,
            schema,
            reader,
            bytes_read,
            done: false,
        })
    }

    /// Opens Parquet file `path` reading only the rows whose `time_field` may lie in `range`:
    /// that column is read first and the others are decoded for the rows it selects (a drift
    /// reference of ten minutes no longer decodes a day of input). Rows whose time is an
    /// integer outside `range`, or null, are skipped; a time column of any other type selects
    /// every row. The caller still checks each record's own time: this only skips rows that
    /// cannot be in range. Positions of what it reads are counted in selected rows, not file
    /// rows.
    pub fn parquet_in_range(
        stream: Stream,
        schema: Arc<InputSchema>,
        path: &std::path::Path,
        time_field: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Partition> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Int64Type, TimestampMillisecondType, UInt64Type};
        use arrow_array::BooleanArray;
        use parquet::arrow::arrow_reader::{ArrowPredicateFn, RowFilter};
        use parquet::arrow::ProjectionMask;

        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| Error::parquet(path, e))?;
        let column = builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().parts() == [time_field]);
        let builder = match column {
            Some(i) => {
                let mask = ProjectionMask::leaves(builder.parquet_schema(), [i]);
                let (lo, hi) = (range.start, range.end);
                let keep = move |batch: RecordBatch| {
                    let col = batch.column(0);
                    let inside = |v: Option<u64>| Some(v.is_some_and(|v| lo <= v && v < hi));
                    Ok(match col.data_type() {
                        DataType::Int64 => col
                            .as_primitive::<Int64Type>()
                            .iter()
                            .map(|v| inside(v.and_then(|v| u64::try_from(v).ok())))
                            .collect::<BooleanArray>(),
                        DataType::UInt64 => col
                            .as_primitive::<UInt64Type>()
                            .iter()
                            .map(inside)
                            .collect::<BooleanArray>(),
                        DataType::Timestamp(TimeUnit::Millisecond, _) => col
                            .as_primitive::<TimestampMillisecondType>()
                            .iter()
                            .map(|v| inside(v.and_then(|v| u64::try_from(v).ok())))
                            .collect::<BooleanArray>(),
                        _ => BooleanArray::from(vec![true; col.len()]),
                    })
                };
                let filter = RowFilter::new(vec![Box::new(ArrowPredicateFn::new(mask, keep))]);
                builder.with_row_filter(filter)
            }
            None => builder,
        };
        let reader = builder
            .with_batch_size(4096)
            .build()
            .map_err(|e| Error::parquet(path, e))?;
        Ok(Partition {
            stream,
            schema,
            reader: Reader::Parquet {
                path: Arc::from(path.display().to_string()),
                reader: Some(reader),
                row: 0,
            },
            bytes_read: Arc::new(AtomicU64::new(0)),
            done: false,
        })
    }

    /// Whether the partition has delivered everything.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How long a partition that can fall silent (Kafka) has had no new record; `None` for
    /// partitions that are read at will (files, the generator).
    pub fn silent_for(&self) -> Option<std::time::Duration> {
        match &self.reader {
            Reader::Kafka(r) => Some(r.silent_for()),
            _ => None,
        }
    }

    /// How far the partition has been read.
    pub fn cursor(&self) -> Cursor {
        match &self.reader {
            Reader::Jsonl { line_no, byte, .. } => Cursor {
                offset: *line_no,
                byte: *byte,
            },
            Reader::Parquet { row, .. } => Cursor {
                offset: *row,
                byte: 0,
            },
            Reader::Generator { seq, .. } => Cursor {
                offset: *seq,
                byte: 0,
            },
            Reader::Kafka(r) => Cursor {
                offset: r.next_offset(),
                byte: 0,
            },
            Reader::Failed { offset, .. } => Cursor {
                offset: *offset,
                byte: 0,
            },
        }
    }

    /// A partition that could not be opened: it yields one dead letter with `error`, and ends.
    pub fn failed(
        stream: Stream,
        schema: Arc<InputSchema>,
        source: String,
        offset: u64,
        error: Error,
    ) -> Partition {
        Partition {
            stream,
            schema,
            reader: Reader::Failed {
                source: source.into(),
                offset,
                reason: Some(format!("cannot read this source: {error}")),
            },
            bytes_read: Arc::default(),
            done: false,
        }
    }

    /// Ends the partition after a read error, with a dead letter naming it at the cursor.
    pub fn fail(&mut self, error: Error, out: &mut Vec<Decoded>) {
        let pos = Position {
            source: self.source_name(),
            offset: self.cursor().offset,
        };
        let reason = format!("cannot read this source from here on: {error}");
        out.push((
            pos.clone(),
            Err(dead(self.stream, pos, String::new(), reason, "")),
        ));
        self.done = true;
    }

    fn source_name(&self) -> Arc<str> {
        match &self.reader {
            Reader::Jsonl { path, .. } | Reader::Parquet { path, .. } => path.clone(),
            Reader::Generator { name, .. } => name.clone(),
            Reader::Kafka(r) => Arc::from(r.source.as_str()),
            Reader::Failed { source, .. } => source.clone(),
        }
    }

    /// Reads up to about `max` records into `out`; marks the partition done at its end.
    pub fn read_batch(&mut self, max: usize, out: &mut Vec<Decoded>) -> Result<()> {
        let stream = self.stream;
        let schema = &*self.schema;
        match &mut self.reader {
            Reader::Jsonl {
                path,
                lines,
                line_no,
                byte,
                buf,
            } => {
                for _ in 0..max {
                    buf.clear();
                    let n = lines
                        .read_until(b'\n', buf)
                        .map_err(|e| Error::io(&**path, e))?;
                    if n == 0 {
                        self.done = true;
                        break;
                    }
                    self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                    *byte += n as u64;
                    *line_no += 1;
                    let pos = Position {
                        source: path.clone(),
                        offset: *line_no,
                    };
                    let mut line: &[u8] = buf;
                    while let [rest @ .., b'\n' | b'\r'] = line {
                        line = rest;
                    }
                    // A blank line is no record, but it was read: it is counted as a dead letter
                    // so that read = accepted + dead-lettered holds for every line.
                    let r = if line.iter().all(u8::is_ascii_whitespace) {
                        Err(dead(
                            stream,
                            pos.clone(),
                            String::new(),
                            "blank line: not a record".into(),
                            "",
                        ))
                    } else {
                        decode_json_bytes(schema, line).map_err(|(field, reason)| {
                            dead(
                                stream,
                                pos.clone(),
                                field,
                                reason,
                                &String::from_utf8_lossy(line),
                            )
                        })
                    };
                    out.push((pos, r));
                }
            }
            Reader::Parquet { path, reader, row } => {
                let Some(r) = reader.as_mut() else {
                    self.done = true;
                    return Ok(());
                };
                match r.next() {
                    None => {
                        self.done = true;
                        *reader = None;
                    }
                    Some(Err(e)) => {
                        let pos = Position {
                            source: path.clone(),
                            offset: *row,
                        };
                        let reason = format!("unreadable Parquet from this row on: {e}");
                        out.push((
                            pos.clone(),
                            Err(dead(stream, pos, String::new(), reason, "")),
                        ));
                        self.done = true;
                        *reader = None;
                    }
                    Some(Ok(batch)) => {
                        self.bytes_read
                            .fetch_add(batch.get_array_memory_size() as u64 / 4, Ordering::Relaxed);
                        decode_batch(stream, schema, path, *row, &batch, out);
                        *row += batch.num_rows() as u64;
                    }
                }
            }
            Reader::Generator { name, inner, seq } => {
                for _ in 0..max {
                    let Some(rec) = inner.next() else {
                        self.done = true;
                        break;
                    };
                    *seq += 1;
                    let line = rec.to_json_line();
                    let pos = Position {
                        source: name.clone(),
                        offset: rec.seq,
                    };
                    let r = decode_json_line(schema, &line)
                        .map_err(|(field, reason)| dead(stream, pos.clone(), field, reason, &line));
                    out.push((pos, r));
                }
            }
            Reader::Failed {
                source,
                offset,
                reason,
            } => {
                if let Some(reason) = reason.take() {
                    let pos = Position {
                        source: source.clone(),
                        offset: *offset,
                    };
                    out.push((
                        pos.clone(),
                        Err(dead(stream, pos, String::new(), reason, "")),
                    ));
                }
                self.done = true;
            }
            Reader::Kafka(r) => {
                let source: Arc<str> = Arc::from(r.source.as_str());
                r.read(max, |offset, payload| {
                    let pos = Position {
                        source: source.clone(),
                        offset,
                    };
                    let bytes = payload.unwrap_or_default();
                    self.bytes_read
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    let rec = match payload {
                        None => Err(dead(
                            stream,
                            pos.clone(),
                            String::new(),
                            "a record without a value (a tombstone)".into(),
                            "",
                        )),
                        Some(_) => decode_json_bytes(schema, bytes).map_err(|(field, reason)| {
                            dead(
                                stream,
                                pos.clone(),
                                field,
                                reason,
                                &String::from_utf8_lossy(bytes),
                            )
                        }),
                    };
                    out.push((pos, rec));
                })?;
                self.done = r.is_done();
            }
        }
        Ok(())
    }
}

/// A column of a record batch, its type resolved once per batch rather than per cell.
enum Column<'a> {
    Missing,
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Float64(&'a arrow_array::Float64Array),
    Float32(&'a arrow_array::Float32Array),
    Int64(&'a arrow_array::Int64Array),
    Int32(&'a arrow_array::Int32Array),
    UInt64(&'a arrow_array::UInt64Array),
    UInt32(&'a arrow_array::UInt32Array),
    Boolean(&'a arrow_array::BooleanArray),
    TimestampMs(&'a arrow_array::TimestampMillisecondArray),
    Unsupported(&'a ArrayRef),
}

impl<'a> Column<'a> {
    fn of(col: Option<&'a ArrayRef>) -> Column<'a> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::*;
        let Some(col) = col else {
            return Column::Missing;
        };
        match col.data_type() {
            DataType::Utf8 => Column::Utf8(col.as_string::<i32>()),
            DataType::LargeUtf8 => Column::LargeUtf8(col.as_string::<i64>()),
            DataType::Utf8View => Column::Utf8View(col.as_string_view()),
            DataType::Float64 => Column::Float64(col.as_primitive::<Float64Type>()),
            DataType::Float32 => Column::Float32(col.as_primitive::<Float32Type>()),
            DataType::Int64 => Column::Int64(col.as_primitive::<Int64Type>()),
            DataType::Int32 => Column::Int32(col.as_primitive::<Int32Type>()),
            DataType::UInt64 => Column::UInt64(col.as_primitive::<UInt64Type>()),
            DataType::UInt32 => Column::UInt32(col.as_primitive::<UInt32Type>()),
            DataType::Boolean => Column::Boolean(col.as_boolean()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                Column::TimestampMs(col.as_primitive::<TimestampMillisecondType>())
            }
            _ => Column::Unsupported(col),
        }
    }

    /// The value at `row`.
    fn cell(&self, row: usize) -> Value<'a> {
        let null = |a: &dyn Array| a.is_null(row);
        match self {
            Column::Missing => Value::Null,
            Column::Utf8(a) if !null(*a) => Value::Str(a.value(row)),
            Column::LargeUtf8(a) if !null(*a) => Value::Str(a.value(row)),
            Column::Utf8View(a) if !null(*a) => Value::Str(a.value(row)),
            Column::Float64(a) if !null(*a) => Value::F64(a.value(row)),
            Column::Float32(a) if !null(*a) => Value::F64(a.value(row) as f64),
            Column::Int64(a) if !null(*a) => Value::I64(a.value(row)),
            Column::Int32(a) if !null(*a) => Value::I64(a.value(row) as i64),
            Column::UInt64(a) if !null(*a) => Value::U64(a.value(row)),
            Column::UInt32(a) if !null(*a) => Value::U64(a.value(row) as u64),
            Column::Boolean(a) if !null(*a) => Value::Bool(a.value(row)),
            Column::TimestampMs(a) if !null(*a) => Value::I64(a.value(row)),
            Column::Unsupported(a) if !a.is_null(row) => Value::Other("an unsupported column type"),
            _ => Value::Null,
        }
    }
}

fn decode_batch(
    stream: Stream,
    schema: &InputSchema,
    path: &Arc<str>,
    first_row: u64,
    batch: &RecordBatch,
    out: &mut Vec<Decoded>,
) {
    let cols: Vec<(&str, Column)> = schema
        .fields
        .iter()
        .map(|f| (f.name.as_str(), Column::of(batch.column_by_name(&f.name))))
        .collect();
    for row in 0..batch.num_rows() {
        let pos = Position {
            source: path.clone(),
            offset: first_row + row as u64,
        };
        // The decoder asks for the fields in schema order, the order of `cols`.
        let mut next = 0;
        let r = decode(schema, |name| {
            let i = match cols.get(next) {
                Some((n, _)) if *n == name => next,
                _ => match cols.iter().position(|(n, _)| *n == name) {
                    Some(i) => i,
                    None => return Value::Null,
                },
            };
            next = i + 1;
            cols[i].1.cell(row)
        })
        .map_err(|(field, reason)| {
            let raw: Vec<String> = cols
                .iter()
                .map(|(n, c)| format!("{n}={:?}", c.cell(row)))
                .collect();
            dead(stream, pos.clone(), field, reason, &raw.join(" "))
        });
        out.push((pos, r));
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{
        BinaryArray, Float32Array, Float64Array, Int32Array, LargeStringArray, StringArray,
        StringViewArray, TimestampMillisecondArray, UInt32Array,
    };

    use super::*;

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600_000;

    fn events_schema() -> InputSchema {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        InputSchema::load(&dir, "events.v1", Stream::Events).expect("the events schema")
    }

    fn batch(amount: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "event_id",
                Arc::new(LargeStringArray::from(vec!["e1", "e2"])) as ArrayRef,
            ),
            (
                "entity",
                Arc::new(StringViewArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMillisecondArray::from(vec![T0, T0 + 1000])) as ArrayRef,
            ),
            ("amount", amount),
            (
                "age_days",
                Arc::new(Int32Array::from(vec![3, 4])) as ArrayRef,
            ),
            (
                "velocity",
                Arc::new(UInt32Array::from(vec![5, 6])) as ArrayRef,
            ),
            (
                "score_ext",
                Arc::new(Float64Array::from(vec![0.25, 0.5])) as ArrayRef,
            ),
            (
                "country",
                Arc::new(StringArray::from(vec![Some("US"), None])) as ArrayRef,
            ),
            // `device` is absent: read as missing.
        ])
        .expect("a batch")
    }

    /// Each supported Arrow type decodes to what the same record decodes to from JSON; a null
    /// or absent column is missing; a column of another type sends the record to dead letters
    /// naming the field.
    #[test]
    fn every_supported_column_type_decodes_like_json() {
        let schema = events_schema();
        let amount = Arc::new(Float32Array::from(vec![Some(1.5), None])) as ArrayRef;
        let mut out = Vec::new();
        decode_batch(
            Stream::Events,
            &schema,
            &Arc::from("f"),
            10,
            &batch(amount),
            &mut out,
        );
        let json = [
            r#"{"event_id":"e1","entity":"a","event_time":1767225600000,"amount":1.5,"age_days":3,"velocity":5,"score_ext":0.25,"country":"US"}"#,
            r#"{"event_id":"e2","entity":"b","event_time":1767225601000,"age_days":4,"velocity":6,"score_ext":0.5}"#,
        ];
        assert_eq!(out.len(), 2);
        for ((pos, got), line) in out.iter().zip(json) {
            let want = decode_json_line(&schema, line).expect("the JSON record decodes");
            assert_eq!(got.as_ref().expect("decodes"), &want, "{line}");
            assert_eq!(&*pos.source, "f");
        }
        assert_eq!((out[0].0.offset, out[1].0.offset), (10, 11));

        let amount = Arc::new(BinaryArray::from(vec![&b"x"[..], &b"y"[..]])) as ArrayRef;
        out.clear();
        decode_batch(
            Stream::Events,
            &schema,
            &Arc::from("f"),
            0,
            &batch(amount),
            &mut out,
        );
        for (_, r) in &out {
            let d = r.as_ref().expect_err("an unsupported column is refused");
            assert_eq!(d.field, "amount", "{d:?}");
            assert!(d.raw.contains("amount=Other"), "{d:?}");
        }
    }

    /// Reading a Parquet file for a time range yields exactly the records a full read keeps
    /// for that range, in the same order, whatever the time column holds (in range, outside,
    /// null, negative) and whatever its type.
    #[test]
    fn a_range_read_keeps_what_a_full_read_keeps() {
        use arrow_array::{Int64Array, UInt64Array};
        let schema = Arc::new(events_schema());
        let dir = tempfile::tempdir().expect("a temp dir");
        let times = [
            Some(T0 + 5),
            None,
            Some(T0 - 1),
            Some(-7),
            Some(T0),
            Some(T0 + 10),
            Some(T0 + 9),
        ];
        let n = times.len();
        let columns: [(&str, ArrayRef); 3] = [
            ("int64", Arc::new(Int64Array::from(times.to_vec()))),
            (
                "uint64",
                Arc::new(UInt64Array::from(
                    times
                        .iter()
                        .map(|t| t.and_then(|t| u64::try_from(t).ok()))
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "timestamp",
                Arc::new(TimestampMillisecondArray::from(times.to_vec())),
            ),
        ];
        for (kind, time) in columns {
            let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
            let batch = RecordBatch::try_from_iter(vec![
                ("event_id", Arc::new(StringArray::from(ids)) as ArrayRef),
                (
                    "entity",
                    Arc::new(StringArray::from(vec!["a"; n])) as ArrayRef,
                ),
                ("event_time", time),
                (
                    "amount",
                    Arc::new(Float64Array::from(
                        (0..n).map(|i| i as f64).collect::<Vec<_>>(),
                    )) as ArrayRef,
                ),
            ])
            .expect("a batch");
            let path = dir.path().join(format!("{kind}.parquet"));
            let mut w = parquet::arrow::ArrowWriter::try_new(
                File::create(&path).expect("created"),
                batch.schema(),
                None,
            )
            .expect("a writer");
            w.write(&batch).expect("written");
            w.close().expect("closed");
            let range = (T0 as u64)..(T0 as u64 + 10);
            let read_all = |mut p: Partition| {
                let mut out = Vec::new();
                while !p.is_done() {
                    p.read_batch(4096, &mut out).expect("read");
                }
                let read = out.len();
                let kept = out
                    .into_iter()
                    .filter_map(|(_, r)| r.ok())
                    .filter(|r| range.contains(&r.time()))
                    .collect::<Vec<_>>();
                (read, kept)
            };
            let full = Partition::open(
                Stream::Events,
                schema.clone(),
                &PartitionSpec::Parquet(path.clone()),
                &Default::default(),
                &Default::default(),
                Arc::new(AtomicU64::new(0)),
                None,
            )
            .expect("opened");
            let ranged = Partition::parquet_in_range(
                Stream::Events,
                schema.clone(),
                &path,
                "event_time",
                range.clone(),
            )
            .expect("opened");
            let ((read_full, want), (read_ranged, got)) = (read_all(full), read_all(ranged));
            assert_eq!(want.len(), 3, "{kind}");
            assert_eq!(got, want, "{kind}");
            // Only the range's rows were decoded.
            assert_eq!((read_full, read_ranged), (n, 3), "{kind}");
        }
    }
}
