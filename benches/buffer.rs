//! Throughput of the replay buffer itself: cutting generated records into segments (encode,
//! checksum, fsync, rename) and reading them back (verify, decode), outside the dataflow.
//!
//! Run with `cargo bench --bench buffer` (10M events; `TIDEMARK_BENCH_EVENTS` overrides).
//! Under `cargo test --all-targets` it only checks one small round, so the suite never depends
//! on timing.

use std::time::Instant;

use tidemark::decode::decode_json_line;
use tidemark::generator::{GeneratorParams, GeneratorStream};
use tidemark::records::{Origin, Position};
use tidemark::replay::segment::{read_segment, write_segment, BufferStream};
use tidemark::schema::{InputSchema, Stream};
use tidemark::sources::Ingested;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n: u64 = match std::env::var("TIDEMARK_BENCH_EVENTS") {
        Ok(v) => v.parse().expect("TIDEMARK_BENCH_EVENTS is a number"),
        Err(_) if measuring => 10_000_000,
        Err(_) => 2_000,
    };
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let dir = tempfile::tempdir().expect("temp dir");
    let params = GeneratorParams {
        events: n,
        malformed_fraction: 0.0,
        // Records of one segment arrive within the generator's disorder, so segments can be
        // cut as the stream moves on (very late records would reopen old segments).
        very_late_fraction: 0.0,
        ..Default::default()
    };
    // One minute of timestamps per segment at the generator's 100 events/s.
    let segment_ms = 60_000;
    let mut metas = Vec::new();
    let (mut write_secs, mut rows_total, mut bytes_total) = (0.0, 0u64, 0u64);
    for (stream, buffer_stream, schema_id) in [
        (Stream::Events, BufferStream::Events, "events.v1"),
        (
            Stream::Predictions,
            BufferStream::Predictions,
            "predictions.v1",
        ),
        (Stream::Labels, BufferStream::Labels, "labels.v1"),
    ] {
        let schema = InputSchema::load(&schemas, schema_id, stream).expect("schema");
        let mut open: std::collections::BTreeMap<u64, Vec<(u64, Ingested)>> = Default::default();
        let mut flush = |rows: &mut Vec<(u64, Ingested)>, k: u64| {
            let t = Instant::now();
            rows.sort();
            let m = write_segment(
                dir.path(),
                buffer_stream,
                k * segment_ms,
                (k + 1) * segment_ms,
                rows,
            )
            .expect("segment written");
            write_secs += t.elapsed().as_secs_f64();
            rows_total += m.rows;
            bytes_total += m.bytes;
            metas.push(m);
            rows.clear();
        };
        for rec in GeneratorStream::new(params.clone(), stream, false) {
            let line = rec.to_json_line();
            let Ok(r) = decode_json_line(&schema, &line) else {
                continue;
            };
            let ts = r.time() - r.time() % 1000;
            let k = ts / segment_ms;
            // Segments two behind the newest record are complete.
            while let Some(mut e) = open.first_entry() {
                if *e.key() + 2 > k {
                    break;
                }
                let old = *e.key();
                flush(e.get_mut(), old);
                e.remove();
            }
            let pos = Position {
                source: format!("generator:{stream}").into(),
                offset: rec.seq,
            };
            open.entry(k).or_default().push((
                ts,
                Ingested::Accepted(
                    r,
                    Origin {
                        stamp: ts,
                        position: pos,
                    },
                ),
            ));
        }
        for (k, mut rows) in std::mem::take(&mut open) {
            flush(&mut rows, k);
        }
    }
    let t = Instant::now();
    let mut read = 0u64;
    for m in &metas {
        read += read_segment(dir.path(), m).expect("segment reads").len() as u64;
    }
    let read_secs = t.elapsed().as_secs_f64();
    assert_eq!(read, rows_total, "every record reads back");
    if measuring {
        println!(
            "events {n}, records {rows_total}, segments {}, {:.1} MiB on disk ({:.1} bytes/record)",
            metas.len(),
            bytes_total as f64 / 1048576.0,
            bytes_total as f64 / rows_total as f64
        );
        println!(
            "write (encode, sha256, fsync, rename): {:>10.0} records/s",
            rows_total as f64 / write_secs
        );
        println!(
            "read (verify sha256, decode):          {:>10.0} records/s",
            rows_total as f64 / read_secs
        );
    }
}
