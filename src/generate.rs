//! `tidemark generate`: the generator's three streams written to files, with `metadata.json`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use crate::error::{Error, Result};
use crate::generator::{
    GenRecord, GeneratorParams, GeneratorStream, Metadata, CATEGORICAL, NUMERIC,
};
use crate::schema::Stream;

/// File format of generated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// JSON Lines: every kind of malformed record.
    Jsonl,
    /// Parquet: the malformations a typed column can hold.
    Parquet,
}

/// Writes `<out>/{events,predictions,labels}.<ext>` and `<out>/metadata.json`; returns the metadata.
pub fn write_dataset(params: &GeneratorParams, out: &Path, format: DataFormat) -> Result<Metadata> {
    params
        .check()
        .map_err(|(k, r)| Error::config("(generator parameters)", k, r))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut meta = Metadata::new(params);
    for stream in Stream::ALL {
        let gen = GeneratorStream::new(params.clone(), stream, format == DataFormat::Parquet);
        let (n, bad) = match format {
            DataFormat::Jsonl => {
                write_jsonl(gen, &out.join(format!("{stream}.jsonl")), &mut meta, stream)?
            }
            DataFormat::Parquet => write_parquet(
                gen,
                &out.join(format!("{stream}.parquet")),
                &mut meta,
                stream,
            )?,
        };
        meta.records.insert(stream.name().into(), n);
        meta.malformed.insert(stream.name().into(), bad);
    }
    let path = out.join("metadata.json");
    let text = serde_json::to_string_pretty(&meta).expect("metadata serializes");
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
    Ok(meta)
}

fn tally(meta: &mut Metadata, stream: Stream, r: &GenRecord) -> bool {
    if let Some(kind) = r.malformed {
        let key = format!(
            "{stream}.{}",
            serde_json::to_value(kind)
                .expect("enum")
                .as_str()
                .unwrap_or("?")
        );
        *meta.malformed.entry(key).or_default() += 1;
        true
    } else {
        false
    }
}

fn write_jsonl(
    gen: GeneratorStream,
    path: &Path,
    meta: &mut Metadata,
    stream: Stream,
) -> Result<(u64, u64)> {
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 16, f);
    let (mut n, mut bad) = (0, 0);
    for r in gen {
        n += 1;
        bad += tally(meta, stream, &r) as u64;
        w.write_all(r.to_json_line().as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            .map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))?;
    Ok((n, bad))
}

fn schema_of(stream: Stream) -> Arc<Schema> {
    let s = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    let f = |n: &str, nullable: bool| Field::new(n, DataType::Float64, nullable);
    let fields = match stream {
        Stream::Events => {
            let mut v = vec![s("event_id", true), s("entity", false), i("event_time")];
            v.extend(NUMERIC.iter().map(|n| f(n, true)));
            v.extend(CATEGORICAL.iter().map(|n| s(n, true)));
            v
        }
        Stream::Predictions => vec![
            s("event_id", true),
            s("model_version", false),
            f("score", true),
            i("prediction_time"),
        ],
        Stream::Labels => vec![s("event_id", true), f("label", true), i("label_time")],
    };
    Arc::new(Schema::new(fields))
}

fn write_parquet(
    gen: GeneratorStream,
    path: &Path,
    meta: &mut Metadata,
    stream: Stream,
) -> Result<(u64, u64)> {
    let schema = schema_of(stream);
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w =
        ArrowWriter::try_new(f, schema.clone(), None).map_err(|e| Error::parquet(path, e))?;
    let (mut n, mut bad) = (0u64, 0u64);
    let mut chunk = Vec::with_capacity(65_536);
    let mut gen = gen.peekable();
    while gen.peek().is_some() {
        chunk.clear();
        chunk.extend(gen.by_ref().take(65_536));
        for r in &chunk {
            n += 1;
            bad += tally(meta, stream, r) as u64;
        }
        let batch = batch_of(stream, &schema, &chunk).map_err(|e| Error::parquet(path, e))?;
        w.write(&batch).map_err(|e| Error::parquet(path, e))?;
    }
    w.close().map_err(|e| Error::parquet(path, e))?;
    Ok((n, bad))
}

fn batch_of(
    stream: Stream,
    schema: &Arc<Schema>,
    rows: &[GenRecord],
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let strings = |f: &dyn Fn(&GenRecord) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let floats = |k: usize| -> ArrayRef {
        let mut b = Float64Builder::new();
        for r in rows {
            b.append_option(r.numbers[k]);
        }
        Arc::new(b.finish())
    };
    let mut times = Int64Builder::new();
    for r in rows {
        times.append_value(r.time_ms());
    }
    let times: ArrayRef = Arc::new(times.finish());
    let id = strings(&|r| r.id.clone());
    let cols: Vec<ArrayRef> = match stream {
        Stream::Events => {
            let mut v = vec![id, strings(&|r| Some(r.entity.clone())), times];
            v.extend((0..NUMERIC.len()).map(floats));
            v.extend(
                (0..CATEGORICAL.len())
                    .map(|k| strings(&|r: &GenRecord| r.cats[k].map(String::from))),
            );
            v
        }
        Stream::Predictions => vec![id, strings(&|r| Some(r.model.clone())), floats(0), times],
        Stream::Labels => vec![id, floats(0), times],
    };
    RecordBatch::try_new(schema.clone(), cols)
}
