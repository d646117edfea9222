//! Micro-benchmark of the ingest hot path: generating records, and decoding JSON lines and a
//! Parquet file by schema.
//!
//! Run with `cargo bench --bench ingest`. Under `cargo test --all-targets` it only checks that it
//! runs (one small round), so the suite never depends on timing.

use std::time::Instant;

use tidemark::decode::decode_json_line;
use tidemark::generator::{GeneratorParams, GeneratorStream};
use tidemark::schema::{InputSchema, Stream};

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = if measuring { 200_000 } else { 1_000 };
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let schema = InputSchema::load(&schemas, "events.v1", Stream::Events).expect("schema");
    let params = params_of(n);

    let start = Instant::now();
    let lines: Vec<String> = GeneratorStream::new(params, Stream::Events, false)
        .map(|r| r.to_json_line())
        .collect();
    let generate = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut ok = 0u64;
    for line in &lines {
        ok += decode_json_line(&schema, line).is_ok() as u64;
    }
    let decode = start.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every generated event decodes");
    // The same events as a Parquet file, read and decoded the way a file partition reads them.
    let dir = tempfile::tempdir().expect("a temporary directory");
    tidemark::generate::write_dataset(
        &params_of(n),
        dir.path(),
        tidemark::generate::DataFormat::Parquet,
    )
    .expect("a generated dataset");
    let start = Instant::now();
    let mut partition = tidemark::sources::partition::Partition::open(
        Stream::Events,
        std::sync::Arc::new(schema.clone()),
        &tidemark::sources::partition::PartitionSpec::Parquet(dir.path().join("events.parquet")),
        &Default::default(),
        &GeneratorParams::default(),
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        None,
    )
    .expect("the Parquet partition opens");
    let (mut batch, mut parquet_ok) = (Vec::new(), 0u64);
    while !partition.is_done() {
        batch.clear();
        partition.read_batch(4096, &mut batch).expect("a batch");
        parquet_ok += batch.iter().filter(|(_, r)| r.is_ok()).count() as u64;
    }
    let parquet = start.elapsed().as_secs_f64();
    assert_eq!(parquet_ok, n, "every generated event decodes from Parquet");
    if measuring {
        println!(
            "generate events.v1 lines: {:>10.0} records/s",
            n as f64 / generate
        );
        println!(
            "read and decode events.v1 Parquet: {:>10.0} records/s",
            n as f64 / parquet
        );
        println!(
            "decode events.v1 lines:   {:>10.0} records/s",
            n as f64 / decode
        );
    }
}

/// `n` well-formed events.
fn params_of(n: u64) -> GeneratorParams {
    GeneratorParams {
        events: n,
        malformed_fraction: 0.0,
        ..Default::default()
    }
}
