//! Micro-benchmark of the ingest hot path: generating records and decoding JSON lines by schema.
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
    let params = GeneratorParams {
        events: n,
        malformed_fraction: 0.0,
        ..Default::default()
    };

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
    if measuring {
        println!(
            "generate events.v1 lines: {:>10.0} records/s",
            n as f64 / generate
        );
        println!(
            "decode events.v1 lines:   {:>10.0} records/s",
            n as f64 / decode
        );
    }
}
