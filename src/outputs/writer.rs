//! Changelog files: JSON Lines (streamed) and Parquet (row groups as the changelog grows).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::rows::{json_line, Columns};
use crate::config::OutputFormat;
use crate::error::{Error, Result};
use crate::schema::{FieldType, SchemaFile};

/// The schema id of output `name`.
pub fn output_schema_id(name: &str) -> String {
    format!("out.{name}.v1")
}

/// The Arrow schema of an output schema file.
pub fn arrow_schema(file: &SchemaFile) -> Schema {
    let fields: Vec<Field> = file
        .fields
        .iter()
        .map(|f| {
            let ty = match f.ty {
                FieldType::String => DataType::Utf8,
                FieldType::Float64 => DataType::Float64,
                FieldType::Int64 => DataType::Int64,
                FieldType::Uint64 | FieldType::TimestampMs => DataType::UInt64,
                FieldType::Bool => DataType::Boolean,
                FieldType::ListInt64 => {
                    DataType::List(Arc::new(Field::new("item", DataType::Int64, true)))
                }
                FieldType::ListFloat64 => {
                    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
                }
            };
            Field::new(&f.name, ty, f.nullable)
        })
        .collect();
    Schema::new(fields)
}

const PARQUET_BATCH: usize = 8192;

/// What makes a changelog's lines up to a cut durable: its Kafka lines acknowledged and its
/// JSON Lines file synced.
#[derive(Default)]
pub struct Durable {
    kafka: Option<crate::kafka::sink::Acked>,
    file: Option<(PathBuf, File)>,
}

impl Durable {
    /// Waits until the lines are durable (on any thread: the file is a handle of its own).
    pub fn make(self) -> Result<()> {
        if let Some(acked) = self.kafka {
            acked.wait()?;
        }
        if let Some((path, f)) = self.file {
            f.sync_data().map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}

struct ParquetOut {
    tmp: PathBuf,
    path: PathBuf,
    writer: ArrowWriter<File>,
    decoder: arrow_json::reader::Decoder,
    pending: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Writes one changelog in every configured format.
pub struct ChangelogWriter {
    jsonl: Option<(PathBuf, BufWriter<File>)>,
    parquet: Option<ParquetOut>,
    /// Lines written so far.
    pub lines: u64,
    /// Length of the JSON Lines file so far.
    pub jsonl_bytes: u64,
    /// The Kafka topic the lines also go to.
    kafka: Option<crate::kafka::sink::KafkaSink>,
    /// Early writeback of the JSON Lines file.
    writeback: Option<super::writeback::Writeback>,
}

impl ChangelogWriter {
    /// Creates `<dir>/<name>.jsonl` and/or `<dir>/<name>.parquet` (the latter renamed into
    /// place on finish). With `resume_at`, the JSON Lines file is kept up to that length (the
    /// committed part of an interrupted run), the rest cut off, and the Parquet file rebuilt
    /// from it.
    pub fn create(
        dir: &Path,
        schemas_dir: &Path,
        name: &str,
        formats: &[OutputFormat],
        resume_at: Option<u64>,
    ) -> Result<ChangelogWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut w = ChangelogWriter {
            jsonl: None,
            parquet: None,
            lines: 0,
            jsonl_bytes: 0,
            kafka: None,
            writeback: None,
        };
        let jsonl_path = dir.join(format!("{name}.jsonl"));
        let mut committed = Vec::new();
        if let Some(len) = resume_at {
            let mut f = crate::confine::read_write(&jsonl_path)?;
            let have = f.metadata().map_err(|e| Error::io(&jsonl_path, e))?.len();
            if have < len {
                return Err(Error::replay(
                    &jsonl_path,
                    format!("output is {have} bytes, shorter than its committed {len}"),
                ));
            }
            f.set_len(len).map_err(|e| Error::io(&jsonl_path, e))?;
            f.sync_all().map_err(|e| Error::io(&jsonl_path, e))?;
            if formats.contains(&OutputFormat::Parquet) {
                use std::io::Read;
                f.read_to_end(&mut committed)
                    .map_err(|e| Error::io(&jsonl_path, e))?;
            }
            w.jsonl_bytes = len;
        }
        if formats.contains(&OutputFormat::Jsonl) {
            let f = if resume_at.is_some() {
                crate::confine::append(&jsonl_path)?
            } else {
                crate::confine::create(&jsonl_path)?
            };
            w.writeback = super::writeback::Writeback::new(&f, w.jsonl_bytes);
            w.jsonl = Some((jsonl_path.clone(), BufWriter::with_capacity(1 << 16, f)));
        }
        if formats.contains(&OutputFormat::Parquet) {
            let schema = Arc::new(arrow_schema(&SchemaFile::load(
                schemas_dir,
                &output_schema_id(name),
            )?));
            let path = dir.join(format!("{name}.parquet"));
            let tmp = dir.join(format!(".{name}.parquet.tmp"));
            let f = crate::confine::create(&tmp)?;
            crate::confine::not_link(&path)?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_created_by("tidemark".to_string())
                .build();
            let writer = ArrowWriter::try_new(f, schema.clone(), Some(props))
                .map_err(|e| Error::parquet(&tmp, e))?;
            // Integer event ids (a job whose events schema declares them so) go into the
            // id's string column as their digits.
            let decoder = arrow_json::ReaderBuilder::new(schema)
                .with_coerce_primitive(true)
                .with_batch_size(PARQUET_BATCH)
                .build_decoder()
                .map_err(|e| Error::parquet(&tmp, e))?;
            let mut out = ParquetOut {
                tmp,
                path,
                writer,
                decoder,
                pending: Vec::new(),
            };
            for line in committed.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let m: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
                    .map_err(|e| Error::replay(&jsonl_path, format!("committed line: {e}")))?;
                out.pending.push(m);
                if out.pending.len() >= PARQUET_BATCH {
                    Self::flush_parquet(&mut out)?;
                }
            }
            w.parquet = Some(out);
        }
        Ok(w)
    }

    /// Hands the file's lines to the OS; returns the JSON Lines file's length and what makes
    /// the lines so far durable (run off the worker thread, before a manifest names that
    /// length).
    ///
    /// The Kafka wait is for the lines produced before the cut alone, by their sequence
    /// numbers: a producer's flush would also wait for the lines the worker goes on producing.
    /// On worker 0 it held every update back at each commit.
    pub fn cut(&mut self) -> Result<(u64, Durable)> {
        let mut durable = Durable {
            kafka: self.kafka.as_ref().map(|k| k.acked()),
            file: None,
        };
        if let Some((path, out)) = &mut self.jsonl {
            out.flush().map_err(|e| Error::io(path.as_path(), e))?;
            let f = out
                .get_ref()
                .try_clone()
                .map_err(|e| Error::io(path.as_path(), e))?;
            durable.file = Some((path.clone(), f));
        }
        Ok((self.jsonl_bytes, durable))
    }

    /// Also produces every line to a Kafka topic.
    pub fn with_kafka(mut self, sink: crate::kafka::sink::KafkaSink) -> Self {
        self.kafka = Some(sink);
        self
    }

    /// Appends one changelog line.
    pub fn write(&mut self, ts: u64, diff: isize, cols: &Columns) -> Result<()> {
        self.lines += 1;
        // Serialized once for the file and the topic.
        let line =
            (self.jsonl.is_some() || self.kafka.is_some()).then(|| json_line(ts, diff, cols));
        if let (Some(k), Some(line)) = (&mut self.kafka, &line) {
            k.send(
                ts,
                line.as_bytes(),
                &crate::kafka::sink::key(k.keys(), cols),
            )?;
        }
        if let Some(line) = &line {
            self.append_jsonl(line.as_bytes())?;
            self.append_jsonl(b"\n")?;
        }
        if let Some(p) = &mut self.parquet {
            let mut m = serde_json::Map::new();
            m.insert("ts".into(), ts.into());
            m.insert("diff".into(), (diff as i64).into());
            for (k, v) in cols {
                m.insert((*k).to_string(), v.clone());
            }
            p.pending.push(m);
            if p.pending.len() >= PARQUET_BATCH {
                Self::flush_parquet(p)?;
            }
        }
        Ok(())
    }

    /// Some format needs a line's columns, not only its JSON text (Parquet).
    pub fn needs_columns(&self) -> bool {
        self.parquet.is_some()
    }

    /// Appends `n` changelog lines at `ts` formatted elsewhere (as [`json_line`] formats them),
    /// each ended by a newline, with their Kafka keys if the output goes to Kafka; only for a
    /// writer that does not need the columns.
    pub fn write_lines(&mut self, ts: u64, text: &[u8], n: u64, keys: &[String]) -> Result<()> {
        debug_assert!(!self.needs_columns());
        if let Some(k) = &mut self.kafka {
            let lines = text.split(|b| *b == b'\n').take(n as usize);
            if keys.len() != n as usize {
                return Err(Error::Runtime(format!(
                    "{} lines at {ts} came with {} Kafka keys",
                    n,
                    keys.len()
                )));
            }
            for (line, key) in lines.zip(keys) {
                k.send(ts, line, key)?;
            }
        }
        self.lines += n;
        self.append_jsonl(text)
    }

    /// Appends `text` to the JSON Lines file, if there is one, counting its bytes.
    fn append_jsonl(&mut self, text: &[u8]) -> Result<()> {
        if let Some((path, out)) = &mut self.jsonl {
            out.write_all(text)
                .map_err(|e| Error::io(path.as_path(), e))?;
            self.jsonl_bytes += text.len() as u64;
            if let Some(wb) = &mut self.writeback {
                wb.written(self.jsonl_bytes - out.buffer().len() as u64);
            }
        }
        Ok(())
    }

    fn flush_parquet(p: &mut ParquetOut) -> Result<()> {
        if p.pending.is_empty() {
            return Ok(());
        }
        p.decoder
            .serialize(&p.pending)
            .map_err(|e| Error::parquet(&p.tmp, e))?;
        p.pending.clear();
        if let Some(batch) = p.decoder.flush().map_err(|e| Error::parquet(&p.tmp, e))? {
            p.writer
                .write(&batch)
                .map_err(|e| Error::parquet(&p.tmp, e))?;
        }
        Ok(())
    }

    /// Flushes everything, fsyncs, and moves the Parquet file into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(k) = &mut self.kafka {
            k.flush()?;
        }
        if let Some((path, mut out)) = self.jsonl.take() {
            out.flush().map_err(|e| Error::io(&path, e))?;
            out.get_ref().sync_all().map_err(|e| Error::io(&path, e))?;
        }
        if let Some(mut p) = self.parquet.take() {
            Self::flush_parquet(&mut p)?;
            let f = p
                .writer
                .into_inner()
                .map_err(|e| Error::parquet(&p.tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&p.tmp, e))?;
            std::fs::rename(&p.tmp, &p.path).map_err(|e| Error::io(&p.path, e))?;
        }
        Ok(())
    }
}
