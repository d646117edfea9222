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

use crate::decode::{decode, decode_json_bytes, decode_json_line, unknown_field, Value};
use crate::error::{Error, Result};
use crate::generator::{GeneratorParams, GeneratorStream};
use crate::records::{excerpt, DeadLetter, Position, Record};
use crate::schema::{ExtraFields, InputSchema, Stream};

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
                let reader = guarded(|| {
                    ParquetRecordBatchReaderBuilder::try_new(f).and_then(|b| {
                        b.with_batch_size(4096)
                            .with_offset(at.offset as usize)
                            .build()
                    })
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
    /// integer, timestamp or date outside `range`, or null, are skipped; a time column of any other type selects
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
        use arrow_array::types::{Date64Type, Int64Type, TimestampMillisecondType, UInt64Type};
        use arrow_array::BooleanArray;
        use parquet::arrow::arrow_reader::{ArrowPredicateFn, RowFilter};
        use parquet::arrow::ProjectionMask;

        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(f))
            .map_err(|e| Error::parquet(path, e))?;
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
                    let col = &normalized(batch.column(0));
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
                        DataType::Date64 => col
                            .as_primitive::<Date64Type>()
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
        let reader = guarded(|| builder.with_batch_size(4096).build())
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
                match guarded(|| r.next().transpose()).transpose() {
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

/// Runs a call into the Parquet reader, turning a panic into an error. The parquet crate does
/// not promise that every malformed file is an `Err` (a mutated footer overflowed an addition
/// in its row count; the test below found it), and a source must not panic on its input.
pub(crate) fn guarded<T, E: std::fmt::Display>(
    call: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(p) => Err(format!(
            "malformed Parquet (the reader failed: {})",
            p.downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a panic")
        )),
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
    Date64(&'a arrow_array::Date64Array),
    Unsupported(&'a ArrayRef),
}

/// `col` in a type [`Column`] reads directly: narrow integers are widened, half floats and
/// decimals become `f64`, dictionaries of strings (pandas' `category`) become strings, dates
/// become milliseconds and timestamps of another unit become milliseconds (sub-millisecond
/// digits cut off; the time zone is kept, the value is UTC either way), all by arrow's own
/// casts. Other types are returned as they are and read as unsupported; so is a column with a
/// value its cast cannot carry (a timestamp in seconds beyond i64 milliseconds).
fn normalized(col: &ArrayRef) -> ArrayRef {
    let to = match col.data_type() {
        DataType::Int8 | DataType::Int16 => DataType::Int64,
        DataType::UInt8 | DataType::UInt16 => DataType::UInt64,
        DataType::Float16
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => DataType::Float64,
        DataType::Dictionary(_, v)
            if matches!(
                **v,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            DataType::Utf8
        }
        DataType::Dictionary(_, v) if v.is_unsigned_integer() => DataType::UInt64,
        DataType::Dictionary(_, v) if v.is_integer() => DataType::Int64,
        DataType::Dictionary(_, v) if v.is_floating() => DataType::Float64,
        DataType::Timestamp(unit, tz) if *unit != TimeUnit::Millisecond => {
            DataType::Timestamp(TimeUnit::Millisecond, tz.clone())
        }
        DataType::Date32 => DataType::Date64,
        _ => return col.clone(),
    };
    // Not arrow's "safe" casts, which turn a value that does not fit into a null: a column
    // that cannot be cast whole is read as it is, and its cells are refused naming its type.
    let strict = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow_cast::cast_with_options(col, &to, &strict).unwrap_or_else(|_| col.clone())
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
            DataType::Date64 => Column::Date64(col.as_primitive::<Date64Type>()),
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
            Column::Date64(a) if !null(*a) => Value::I64(a.value(row)),
            Column::Unsupported(a) if !a.is_null(row) => Value::Column((*a).data_type()),
            _ => Value::Null,
        }
    }
}

/// One sampled cell, owned: what `tidemark init` guesses roles from.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampled {
    /// Null or absent.
    Null,
    /// A string.
    Str(String),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A value no role reads (named).
    Other(String),
}

impl From<Value<'_>> for Sampled {
    fn from(v: Value<'_>) -> Sampled {
        match v {
            Value::Null => Sampled::Null,
            Value::Str(s) => Sampled::Str(s.to_string()),
            Value::F64(x) => Sampled::Float(x),
            Value::I64(x) => Sampled::Int(x.into()),
            Value::U64(x) => Sampled::Int(x.into()),
            Value::Bool(b) => Sampled::Bool(b),
            Value::Other(k) => Sampled::Other(k.to_string()),
            Value::Column(t) => Sampled::Other(format!("Arrow type {t}")),
        }
    }
}

/// The first `rows` rows of Parquet file `path`, by column: (name, Arrow type, whether the type
/// is a time (timestamp or date), cells read as the sources read them).
pub fn sample_parquet(
    path: &std::path::Path,
    rows: usize,
) -> Result<Vec<(String, String, bool, Vec<Sampled>)>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let batch = guarded(|| {
        ParquetRecordBatchReaderBuilder::try_new(f)?
            .with_batch_size(rows.max(1))
            .build()?
            .next()
            .transpose()
    })
    .map_err(|e| Error::parquet(path, e))?;
    let Some(batch) = batch else {
        return Err(Error::parquet(path, "the file holds no rows"));
    };
    Ok(batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, col)| {
            let ty = col.data_type();
            let time = matches!(
                ty,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            );
            let norm = normalized(col);
            let c = Column::of(Some(&norm));
            let cells = (0..batch.num_rows()).map(|r| c.cell(r).into()).collect();
            (field.name().clone(), ty.to_string(), time, cells)
        })
        .collect())
}

fn decode_batch(
    stream: Stream,
    schema: &InputSchema,
    path: &Arc<str>,
    first_row: u64,
    batch: &RecordBatch,
    out: &mut Vec<Decoded>,
) {
    let arrays: Vec<Option<ArrayRef>> = schema
        .fields
        .iter()
        .map(|f| batch.column_by_name(&f.name).map(normalized))
        .collect();
    let cols: Vec<(&str, Column)> = schema
        .fields
        .iter()
        .zip(&arrays)
        .map(|(f, a)| (f.name.as_str(), Column::of(a.as_ref())))
        .collect();
    // A column the schema does not declare refuses every row, if the source says so.
    let extra = (schema.extra_fields == ExtraFields::DeadLetter)
        .then(|| {
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .find(|name| !schema.fields.iter().any(|f| &f.name == name))
        })
        .flatten();
    for row in 0..batch.num_rows() {
        let pos = Position {
            source: path.clone(),
            offset: first_row + row as u64,
        };
        let r = match &extra {
            Some(name) => Err((name.clone(), unknown_field(schema))),
            None => {
                // The decoder asks for the fields in schema order, the order of `cols`.
                let mut next = 0;
                decode(schema, |name| {
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
            }
        }
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
            assert!(d.raw.contains("amount=Column(Binary)"), "{d:?}");
            assert!(d.reason.contains("Arrow type Binary"), "{d:?}");
        }
    }

    /// The types pandas and pyarrow write decode like their canonical forms: narrow and
    /// unsigned integers, decimals, half floats, dictionaries of strings, timestamps of every
    /// unit and zone, dates. Values that do not fit are refused naming the field, the value and
    /// what the role accepts.
    #[test]
    fn pandas_and_pyarrow_types_decode_like_canonical_ones() {
        use arrow_array::types::{Int16Type, Int8Type};
        use arrow_array::{
            Date32Array, Decimal128Array, DictionaryArray, Float16Array, Int16Array, Int8Array,
            TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt16Array,
            UInt64Array, UInt8Array,
        };
        let dir = tempfile::tempdir().expect("a temp dir");
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/events.v1.json"),
        )
        .expect("events.v1");
        let text = text
            .replacen(r#""type": "string""#, r#""type": "uint64""#, 1)
            .replace(r#""id": "events.v1""#, r#""id": "events.own""#);
        std::fs::write(dir.path().join("events.own.json"), text).expect("written");
        let schema = InputSchema::load(dir.path(), "events.own", Stream::Events).expect("loads");
        let days = (T0 / 86_400_000) as i32;
        let times: [(&str, ArrayRef); 4] = [
            (
                "s",
                Arc::new(TimestampSecondArray::from(vec![T0 / 1000; 3]).with_timezone("+02:00")),
            ),
            (
                "us",
                Arc::new(TimestampMicrosecondArray::from(vec![T0 * 1000 + 999; 3])),
            ),
            (
                "ns",
                Arc::new(
                    TimestampNanosecondArray::from(vec![T0 * 1_000_000 + 999_999; 3])
                        .with_timezone("UTC"),
                ),
            ),
            ("date", Arc::new(Date32Array::from(vec![days; 3]))),
        ];
        for (unit, time) in times {
            let batch = RecordBatch::try_from_iter(vec![
                (
                    "event_id",
                    Arc::new(UInt64Array::from(vec![7, u64::MAX, 9])) as ArrayRef,
                ),
                (
                    "entity",
                    Arc::new(
                        vec!["a", "b", "a"]
                            .into_iter()
                            .collect::<DictionaryArray<Int8Type>>(),
                    ) as ArrayRef,
                ),
                ("event_time", time),
                (
                    "amount",
                    Arc::new(
                        Decimal128Array::from(vec![125, -5, 0])
                            .with_precision_and_scale(10, 2)
                            .expect("a decimal type"),
                    ) as ArrayRef,
                ),
                (
                    "age_days",
                    Arc::new(Int8Array::from(vec![3, -4, 5])) as ArrayRef,
                ),
                (
                    "velocity",
                    Arc::new(UInt16Array::from(vec![5, 6, 7])) as ArrayRef,
                ),
                (
                    "score_ext",
                    Arc::new(Float16Array::from(vec![
                        half::f16::from_f32(0.25),
                        half::f16::from_f32(0.5),
                        half::f16::from_f32(1.0),
                    ])) as ArrayRef,
                ),
                (
                    "country",
                    Arc::new(
                        vec![Some("US"), None, Some("DE")]
                            .into_iter()
                            .collect::<DictionaryArray<Int16Type>>(),
                    ) as ArrayRef,
                ),
                (
                    "device",
                    Arc::new(UInt8Array::from(vec![1, 2, 3])) as ArrayRef,
                ),
                (
                    "pandas_index",
                    Arc::new(Int16Array::from(vec![0, 1, 2])) as ArrayRef,
                ),
            ])
            .expect("a batch");
            let mut out = Vec::new();
            decode_batch(
                Stream::Events,
                &schema,
                &Arc::from("f"),
                0,
                &batch,
                &mut out,
            );
            // Milliseconds, sub-millisecond digits cut off; a date is its midnight UTC.
            let t = if unit == "date" {
                days as i64 * 86_400_000
            } else {
                T0
            };
            let json = [
                format!(
                    r#"{{"event_id":7,"entity":"a","event_time":{t},"amount":1.25,"age_days":3,"velocity":5,"score_ext":0.25,"country":"US","device":1}}"#
                ),
                format!(
                    r#"{{"event_id":{},"entity":"b","event_time":{t},"amount":-0.05,"age_days":-4,"velocity":6,"score_ext":0.5,"device":2}}"#,
                    u64::MAX
                ),
                format!(
                    r#"{{"event_id":"9","entity":"a","event_time":{t},"amount":0,"age_days":5,"velocity":7,"score_ext":1.0,"country":"DE","device":"3"}}"#
                ),
            ];
            for ((_, got), line) in out.iter().zip(&json) {
                let want = decode_json_line(&schema, line).expect("the JSON record decodes");
                assert_eq!(got.as_ref().expect("decodes"), &want, "{unit}: {line}");
            }
            assert_eq!(out.len(), 3);
        }

        // A negative id does not fit a uint64 id; the reason names the value.
        let line = format!(r#"{{"event_id":-7,"entity":"a","event_time":{T0}}}"#);
        let (field, reason) = decode_json_line(&schema, &line).expect_err("refused");
        assert_eq!(field, "event_id");
        assert!(
            reason.contains("-7") && reason.contains("uint64"),
            "{reason}"
        );
        // An id declared an integer takes a string only in the integer's one spelling.
        for (id, ok) in [
            ("\"7\"", true),
            ("\"007\"", false),
            ("\"-7\"", false),
            ("\"7a\"", false),
        ] {
            let line = format!(r#"{{"event_id":{id},"entity":"a","event_time":{T0}}}"#);
            match decode_json_line(&schema, &line) {
                Ok(_) => assert!(ok, "{id} accepted"),
                Err((field, reason)) => {
                    assert!(!ok, "{id}: {reason}");
                    assert_eq!(field, "event_id");
                    assert!(reason.contains("declares uint64"), "{reason}");
                }
            }
        }
        // A time string that is no time names itself and what the role reads.
        let line = r#"{"event_id":1,"entity":"a","event_time":"yesterday"}"#;
        let (field, reason) = decode_json_line(&schema, line).expect_err("refused");
        assert_eq!(field, "event_time");
        assert!(
            reason.contains(r#""yesterday""#) && reason.contains("no RFC 3339"),
            "{reason}"
        );
        // An id given as a float names the float and the accepted kinds.
        let line = format!(r#"{{"event_id":1.5,"entity":"a","event_time":{T0}}}"#);
        let (_, reason) = decode_json_line(&schema, &line).expect_err("refused");
        assert!(
            reason.contains("the float 1.5") && reason.contains("an integer of any width"),
            "{reason}"
        );
    }

    /// An undeclared field is ignored by default and refused, naming it, when the source says
    /// `extra_fields = "dead_letter"`: the same in JSON Lines and Parquet.
    #[test]
    fn extra_fields_are_treated_alike_in_every_format() {
        let mut schema = events_schema();
        let line = format!(r#"{{"event_id":"e","entity":"a","event_time":{T0},"note":"x"}}"#);
        let batch = RecordBatch::try_from_iter(vec![
            (
                "event_id",
                Arc::new(StringArray::from(vec!["e"])) as ArrayRef,
            ),
            ("entity", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
            (
                "event_time",
                Arc::new(TimestampMillisecondArray::from(vec![T0])) as ArrayRef,
            ),
            ("note", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ])
        .expect("a batch");
        let parquet = |schema: &InputSchema| {
            let mut out = Vec::new();
            decode_batch(Stream::Events, schema, &Arc::from("f"), 0, &batch, &mut out);
            out.pop().expect("one row").1
        };
        let json = decode_json_line(&schema, &line).expect("ignored");
        assert_eq!(parquet(&schema).expect("ignored"), json);
        schema.extra_fields = ExtraFields::DeadLetter;
        let (field, reason) = decode_json_line(&schema, &line).expect_err("refused");
        let d = parquet(&schema).expect_err("refused");
        assert_eq!((field.as_str(), d.field.as_str()), ("note", "note"));
        assert_eq!(reason, d.reason);
        assert!(reason.contains("unknown field"), "{reason}");
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

    /// Truncated and mutated files never panic a source: each read either decodes records,
    /// refuses them as dead letters, or ends the partition with a dead letter naming why; and
    /// every record read is accounted for.
    #[test]
    fn truncated_and_mutated_files_are_refused_not_panics() {
        use rand::{Rng, SeedableRng};
        let schema = Arc::new(events_schema());
        let dir = tempfile::tempdir().expect("a temp dir");
        let n = 300;
        let batch = RecordBatch::try_from_iter(vec![
            (
                "event_id",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("e{i}")),
                )) as ArrayRef,
            ),
            (
                "entity",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("c{}", i % 7)),
                )) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    (0..n).map(|i| T0 + i * 1000),
                )) as ArrayRef,
            ),
            (
                "amount",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 3.0),
                )) as ArrayRef,
            ),
        ])
        .expect("a batch");
        let mut parquet = Vec::new();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(64))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut parquet, batch.schema(), Some(props))
            .expect("a writer");
        w.write(&batch).expect("written");
        w.close().expect("closed");
        let jsonl: Vec<u8> = (0..n)
            .map(|i| {
                format!(
                    "{{\"event_id\":\"e{i}\",\"entity\":\"c\",\"event_time\":{},\"amount\":{i}}}\n",
                    T0 + i * 1000
                )
            })
            .collect::<String>()
            .into_bytes();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        for original in [("parquet", &parquet), ("jsonl", &jsonl)] {
            let len = original.1.len();
            for cut in (0..len).step_by(len / 40 + 1) {
                cases.push((original.0, original.1[..cut].to_vec()));
            }
            for _ in 0..60 {
                let mut bytes = original.1.clone();
                for _ in 0..rng.gen_range(1..8) {
                    let at = rng.gen_range(0..len);
                    bytes[at] = rng.gen();
                }
                cases.push((original.0, bytes));
            }
        }
        for (i, (kind, bytes)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("case{i}.{kind}"));
            std::fs::write(&path, bytes).expect("written");
            let spec = if *kind == "parquet" {
                PartitionSpec::Parquet(path.clone())
            } else {
                PartitionSpec::Jsonl(path.clone())
            };
            let mut p = match Partition::open(
                Stream::Events,
                schema.clone(),
                &spec,
                &Default::default(),
                &Default::default(),
                Arc::new(AtomicU64::new(0)),
                None,
            ) {
                Ok(p) => p,
                // Refused at open: the job's validation names the file.
                Err(_) => continue,
            };
            let mut out = Vec::new();
            let mut reads = 0;
            while !p.is_done() {
                if let Err(e) = p.read_batch(4096, &mut out) {
                    p.fail(e, &mut out);
                }
                reads += 1;
                assert!(reads < 10_000, "case {i} ({kind}) does not end");
            }
            for (pos, r) in &out {
                if let Err(d) = r {
                    assert!(!d.reason.is_empty(), "case {i}: {pos}: {d:?}");
                }
            }
        }
    }
}
