//! `tidemark generate --kafka`: the generator's three streams produced into topics, as a load
//! generator.
//!
//! A record goes to partition `fnv1a(key) mod partitions`, keyed by its event id (the sequence
//! number when the id is missing on purpose), so a file split with [`partition_for`] holds the
//! same records in the same order as each partition.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::KafkaSpec;
use crate::error::{Error, Result};
use crate::generator::{GenRecord, GenTime, GeneratorParams, GeneratorStream};
use crate::schema::Stream;

/// The key a generated record is produced with.
pub fn key_of(r: &GenRecord) -> String {
    r.id.clone().unwrap_or_else(|| format!("seq-{}", r.seq))
}

/// The partition (of `n`) that `key` goes to.
pub fn partition_for(key: &str, n: usize) -> usize {
    (crate::learn::model::fnv1a(&[key.as_bytes()]) % n as u64) as usize
}

/// What a load run produced, per stream.
#[derive(Debug, Default)]
pub struct Produced {
    /// Records per stream name.
    pub records: BTreeMap<String, u64>,
    /// Wall-clock seconds it took, including the final flush.
    pub secs: f64,
}

/// The time a record moves its partition's watermark to: none for a malformed record, which
/// the job refuses.
fn watermark_time(r: &GenRecord) -> Option<i64> {
    match (r.malformed, r.time) {
        (None, GenTime::Ms(t)) => Some(t),
        _ => None,
    }
}

/// The generator's three streams (JSON Lines records, every kind of malformation) merged as
/// they would arrive live: `(stream index, record)`, the stream whose next record arrives first
/// going next.
pub fn arrivals(params: &GeneratorParams) -> impl Iterator<Item = (usize, GenRecord)> {
    let mut streams: Vec<std::iter::Peekable<GeneratorStream>> = Stream::ALL
        .iter()
        .map(|s| GeneratorStream::new(params.clone(), *s, false).peekable())
        .collect();
    std::iter::from_fn(move || {
        let (_, i) = (0..3)
            .filter_map(|i| streams[i].peek().map(|r| (r.arrival, i)))
            .min()?;
        Some((i, streams[i].next().expect("peeked")))
    })
}

/// Produces the generator's streams into `topics` (events, predictions, labels), interleaved
/// by their arrival times; `per_second` caps records per second of wall clock (0: no cap);
/// `sent(stream index, partition, own time)` is called as each record is handed over, with no
/// time for a malformed record.
///
/// Interleaving by the records' own times let one record with an absurd time hold its whole
/// stream back until every other stream met one too: seconds in which a topic received
/// nothing, which the Kafka bench measured as the job's latency.
pub fn produce(
    params: &GeneratorParams,
    spec: &KafkaSpec,
    topics: &[String; 3],
    per_second: f64,
    sent: impl FnMut(usize, usize, Option<i64>),
) -> Result<Produced> {
    params
        .check()
        .map_err(|(k, r)| Error::config("(generator parameters)", k, r))?;
    produce_prepared(
        arrivals(params).map(prepare),
        spec,
        topics,
        per_second,
        sent,
    )
}

/// A generated record ready to produce: stream index, key, JSON line and watermark time.
pub type Prepared = (usize, String, String, Option<i64>);

/// `r` of stream `i`, ready to produce.
pub fn prepare((i, r): (usize, GenRecord)) -> Prepared {
    (i, key_of(&r), r.to_json_line(), watermark_time(&r))
}

/// [`produce`] for records prepared beforehand (a benchmark prepares them before its clock
/// starts, so that generating them takes no cores from the job it measures).
pub fn produce_prepared(
    records: impl Iterator<Item = Prepared>,
    spec: &KafkaSpec,
    topics: &[String; 3],
    per_second: f64,
    mut sent: impl FnMut(usize, usize, Option<i64>),
) -> Result<Produced> {
    let parts: Vec<usize> = topics
        .iter()
        .map(|t| super::topic_partitions(spec, t).map(|p| p.len()))
        .collect::<Result<_>>()?;
    let producer: ThreadedProducer<DefaultProducerContext> = spec
        .producer()
        // Batches of 10 ms, as a high-throughput producer sends: the mock broker finds a fetch's
        // batch by a linear scan over the partition's batches, so 2 ms batches cost it a
        // quadratic share of the cores it shares with the job (a third of all samples at the
        // Kafka bench's half-peak load). The wait counts in the bench's latency.
        .set("linger.ms", "10")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| Error::kafka(format!("producer at {}", spec.brokers), e))?;
    let start = Instant::now();
    let mut out = Produced::default();
    let mut n = 0u64;
    for (i, key, line, own) in records {
        let topic = &topics[i];
        let partition = partition_for(&key, parts[i]);
        let mut record = BaseRecord::to(topic)
            .key(&key)
            .payload(&line)
            .partition(partition as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(Error::kafka(format!("producing to {topic}"), e)),
            }
        }
        sent(i, partition, own);
        *out.records.entry(Stream::ALL[i].name().into()).or_default() += 1;
        n += 1;
        if per_second > 0.0 {
            let due = Duration::from_secs_f64(n as f64 / per_second);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| Error::kafka("flushing the load generator", e))?;
    out.secs = start.elapsed().as_secs_f64();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::Malformation;

    /// A record broken with an absurd time must not hold its stream back: ordered by their own
    /// times, one such prediction held every later prediction back for 62,159 records.
    #[test]
    fn a_malformed_time_does_not_hold_its_stream_back() {
        let params = GeneratorParams {
            events: 20_000,
            malformed_fraction: 0.01,
            ..Default::default()
        };
        let merged: Vec<(usize, GenRecord)> = arrivals(&params).collect();
        let absurd = merged
            .iter()
            .filter(|(_, r)| r.malformed == Some(Malformation::AbsurdTime))
            .count();
        assert!(absurd > 10, "the input must hold absurd times: {absurd}");
        for stream in 0..3 {
            let total = merged.iter().filter(|(i, _)| *i == stream).count();
            assert!(total > 15_000, "stream {stream}: {total} records");
            // The longest stretch of other streams' records between two of this stream's.
            let mut longest = 0;
            let mut run = 0;
            for (i, _) in merged.iter().skip_while(|(i, _)| *i != stream) {
                if *i == stream {
                    longest = longest.max(run);
                    run = 0;
                } else {
                    run += 1;
                }
            }
            assert!(
                longest < 200,
                "stream {stream} held back for {longest} records"
            );
        }
    }
}
