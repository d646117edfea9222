//! Producing a changelog to a Kafka topic: keyed, idempotent, and without duplicates after a
//! restart.
//!
//! A line is keyed by its output's identity columns (a quality row by window, segment and
//! model) and goes to the partition `fnv1a(key) mod partitions`, chosen here so that the sink
//! knows where every line lands. Each record carries headers `tidemark.run` (the run's id),
//! `tidemark.ts` and `tidemark.index` (the line's place among its timestamp's lines): lines are
//! deterministic, so `(ts, index)` names a line in every attempt of a run. A restart rewrites
//! the lines from its committed timestamp on; before it does, the sink reads the last record of
//! each partition, and skips every line at or before that record's `(ts, index)` in that
//! partition (the idempotent producer keeps a partition in order). A commit of the replay
//! buffer first waits until every line below it is acknowledged.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{KafkaSpec, METADATA_TIMEOUT};
use crate::error::{Error, Result};

/// Outputs that can go to Kafka, with the columns that key their lines.
pub const KEYS: [(&str, &[&str]); 13] = [
    (
        "quality",
        &["window", "window_start", "segment", "model_version"],
    ),
    ("label_health", &["window", "window_start", "segment"]),
    (
        "entity_features",
        &["window", "window_start", "entity", "feature"],
    ),
    ("dead_letters", &["stream", "source", "offset"]),
    ("ingest", &["stream"]),
    (
        "drift",
        &[
            "window",
            "window_start",
            "segment",
            "feature",
            "model_version",
        ],
    ),
    (
        "drift_alerts",
        &["window", "window_start", "segment", "feature", "statistic"],
    ),
    ("drift_detections", &["model_version", "detector"]),
    ("model_versions", &["version"]),
    ("model_decisions", &["seq"]),
    ("quarantine", &["event_id"]),
    (
        "shadow",
        &["window", "window_start", "segment", "model_version"],
    ),
    // One series' records share a partition, so firing and resolved stay in order.
    (
        "alerts",
        &["rule", "window", "segment", "model_version", "feature"],
    ),
];

/// The key columns of output `name`, if it can go to Kafka.
pub fn key_columns(name: &str) -> Option<&'static [&'static str]> {
    KEYS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// A line's Kafka message key: the values of its output's `keys` columns, joined by `|`.
pub fn key(keys: &[&str], cols: &crate::outputs::rows::Columns) -> String {
    let key: Vec<String> = keys
        .iter()
        .map(|k| {
            cols.iter()
                .find(|(n, _)| n == k)
                .map_or(String::new(), |(_, v)| match v {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
        })
        .collect();
    key.join("|")
}

/// Lines produced and not yet acknowledged (by sequence number), and the first failure.
#[derive(Default)]
struct InFlight {
    outstanding: BTreeSet<u64>,
    failed: Option<String>,
}

/// The producer's acknowledgements, shared between its background thread, the sink and the
/// commit thread that waits for them.
type Acks = Arc<(Mutex<InFlight>, Condvar)>;

fn lock(acks: &Acks) -> std::sync::MutexGuard<'_, InFlight> {
    acks.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// Collects acknowledgements and delivery failures from the producer's background thread.
#[derive(Default)]
struct Deliveries {
    acks: Acks,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The line's sequence number in this sink.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let mut f = lock(&self.acks);
        f.outstanding.remove(&(seq as u64));
        if let Err((e, m)) = result {
            f.failed.get_or_insert_with(|| {
                format!(
                    "a record to {}[{}] was not delivered: {e}",
                    m.topic(),
                    m.partition()
                )
            });
        }
        self.acks.1.notify_all();
    }
}

/// Waits, on any thread, until the lines a sink produced before it was made are acknowledged.
pub struct Acked {
    acks: Acks,
    below: u64,
    topic: String,
}

impl Acked {
    /// Blocks until every line before the cut is acknowledged; an error if any line was
    /// refused or the broker took longer than the flush timeout.
    pub fn wait(self) -> Result<()> {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        let mut f = lock(&self.acks);
        loop {
            if let Some(e) = &f.failed {
                return Err(Error::kafka(format!("producing to {}", self.topic), e));
            }
            if f.outstanding.first().is_none_or(|&s| s >= self.below) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::kafka(
                    format!("producing to {}", self.topic),
                    format!("lines unacknowledged after {} s", FLUSH_TIMEOUT.as_secs()),
                ));
            }
            f = self
                .acks
                .1
                .wait_timeout(f, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// One output's Kafka topic.
pub struct KafkaSink {
    producer: ThreadedProducer<Deliveries>,
    acks: Acks,
    topic: String,
    keys: &'static [&'static str],
    run: String,
    /// Per partition, the last `(ts, index)` of this run already in the topic.
    present: Vec<Option<(u64, u64)>>,
    /// The timestamp of the last line and how many lines it has had.
    at: (u64, u64),
    /// Lines produced and skipped by this sink.
    pub produced: u64,
    /// Lines found already in the topic after a restart.
    pub skipped: u64,
}

/// How long a commit waits for the broker to acknowledge the lines below it.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

impl KafkaSink {
    /// Opens output `name`'s sink into `topic` for run `run`, reading what the run already
    /// wrote there.
    pub fn open(spec: &KafkaSpec, name: &str, topic: &str, run: &str) -> Result<KafkaSink> {
        let keys = key_columns(name)
            .ok_or_else(|| Error::kafka(format!("output {name}"), "cannot go to Kafka"))?;
        let partitions = super::topic_partitions(spec, topic)?;
        if partitions != (0..partitions.len() as i32).collect::<Vec<_>>() {
            return Err(Error::kafka(
                format!("topic {topic}"),
                format!("partition ids {partitions:?} are not 0..n"),
            ));
        }
        let present = partitions
            .iter()
            .map(|&p| last_line(spec, topic, p, run))
            .collect::<Result<Vec<_>>>()?;
        let deliveries = Deliveries::default();
        let acks = deliveries.acks.clone();
        let producer: ThreadedProducer<Deliveries> = spec
            .producer()
            .create_with_context(deliveries)
            .map_err(|e| Error::kafka(format!("producer for {topic} at {}", spec.brokers), e))?;
        Ok(KafkaSink {
            producer,
            acks,
            topic: topic.into(),
            keys,
            run: run.into(),
            present,
            at: (u64::MAX, 0),
            produced: 0,
            skipped: 0,
        })
    }

    /// Produces one changelog line (`json`, the line as written to JSON Lines) at `ts`, keyed
    /// by `key` (see [`key`]).
    pub fn send(&mut self, ts: u64, json: &[u8], key: &str) -> Result<()> {
        if self.at.0 != ts {
            self.at = (ts, 0);
        }
        let index = self.at.1;
        self.at.1 += 1;
        let partition =
            (crate::learn::model::fnv1a(&[key.as_bytes()]) % self.present.len() as u64) as i32;
        if self.present[partition as usize].is_some_and(|last| (ts, index) <= last) {
            self.skipped += 1;
            return Ok(());
        }
        let ts_s = ts.to_string();
        let index_s = index.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "tidemark.run",
                value: Some(self.run.as_str()),
            })
            .insert(Header {
                key: "tidemark.ts",
                value: Some(ts_s.as_str()),
            })
            .insert(Header {
                key: "tidemark.index",
                value: Some(index_s.as_str()),
            });
        // A line's sequence number is its place among the lines produced.
        let seq = self.produced;
        {
            let mut f = lock(&self.acks);
            // A lost line leaves a hole in the topic: nothing after it is produced.
            if let Some(e) = &f.failed {
                return Err(Error::kafka(format!("producing to {}", self.topic), e));
            }
            // Outstanding before it is sent: its acknowledgement may come at once.
            f.outstanding.insert(seq);
        }
        let mut record = BaseRecord::with_opaque_to(&self.topic, seq as usize)
            .key(key)
            .payload(json)
            .partition(partition)
            .headers(headers);
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) if Instant::now() < deadline => {
                    // The local queue is full: wait for the broker to take some.
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    lock(&self.acks).outstanding.remove(&seq);
                    return Err(Error::kafka(format!("producing to {}", self.topic), e));
                }
            }
        }
        self.produced += 1;
        Ok(())
    }

    /// The key columns of this sink's output.
    pub fn keys(&self) -> &'static [&'static str] {
        self.keys
    }

    /// What waits until every line produced so far is acknowledged (on the commit thread:
    /// worker 0 goes on producing meanwhile, and the wait ends with the lines before it).
    pub fn acked(&self) -> Acked {
        Acked {
            acks: self.acks.clone(),
            below: self.produced,
            topic: self.topic.clone(),
        }
    }

    /// Waits until every line produced so far is acknowledged; an error if any was refused.
    pub fn flush(&mut self) -> Result<()> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| Error::kafka(format!("flushing {}", self.topic), e))?;
        self.acked().wait()
    }
}

/// The `(ts, index)` of the last record of `topic`/`partition` if run `run` wrote it.
fn last_line(
    spec: &KafkaSpec,
    topic: &str,
    partition: i32,
    run: &str,
) -> Result<Option<(u64, u64)>> {
    let context = || format!("reading the tail of {topic}[{partition}]");
    let consumer: BaseConsumer = spec
        .consumer("tidemark-sink-tail")
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(|e| Error::kafka(context(), e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
        .map_err(|e| Error::kafka(context(), e))?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(high - 1))
        .map_err(|e| Error::kafka(context(), e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(context(), e))?;
    let deadline = Instant::now() + METADATA_TIMEOUT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => return Err(Error::kafka(context(), e)),
            Some(Ok(m)) => {
                let Some(h) = m.headers() else {
                    return Ok(None);
                };
                let get = |name: &str| {
                    h.iter()
                        .find(|x| x.key == name)
                        .and_then(|x| x.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned)
                };
                if get("tidemark.run").as_deref() != Some(run) {
                    return Ok(None);
                }
                let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
                return match (num("tidemark.ts"), num("tidemark.index")) {
                    (Some(ts), Some(i)) => Ok(Some((ts, i))),
                    _ => Err(Error::kafka(
                        context(),
                        "a record of this run without ts/index headers",
                    )),
                };
            }
        }
    }
    Err(Error::kafka(
        context(),
        "no record arrived from the partition's last offset",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(acks: &Acks, below: u64) -> Acked {
        Acked {
            acks: acks.clone(),
            below,
            topic: "t".into(),
        }
    }

    fn ack(acks: &Acks, seq: u64) {
        lock(acks).outstanding.remove(&seq);
        acks.1.notify_all();
    }

    #[test]
    fn a_cut_waits_for_its_own_lines_only() {
        let acks: Acks = Default::default();
        lock(&acks).outstanding.extend([0, 1, 2, 3]);
        let waiting = std::thread::spawn({
            let a = acked(&acks, 2);
            move || a.wait()
        });
        // Lines 2 and 3 were produced after the cut: they do not hold it.
        ack(&acks, 1);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiting.is_finished(), "line 0 is not acknowledged yet");
        ack(&acks, 0);
        waiting.join().expect("no panic").expect("acknowledged");
        assert_eq!(lock(&acks).outstanding, BTreeSet::from([2, 3]));
    }

    #[test]
    fn a_lost_line_fails_the_wait_and_names_it() {
        let acks: Acks = Default::default();
        lock(&acks).outstanding.insert(0);
        let waiting = std::thread::spawn({
            let a = acked(&acks, 1);
            move || a.wait()
        });
        lock(&acks).failed = Some("a record to t[0] was not delivered: timed out".into());
        acks.1.notify_all();
        let e = waiting.join().expect("no panic").expect_err("lost");
        assert!(e.to_string().contains("t[0] was not delivered"), "{e}");
    }
}
