//! `tidemark bench --kafka`: throughput from Kafka through the whole pipeline, and the latency
//! from input to the metric and model updates that reflect it, at half of that peak.
//!
//! Latency of an update: a changelog line at timestamp `E` can exist only once every input
//! partition's watermark has passed `E` (its frontier is beyond `E`), which happens when the
//! record that lifts the last partition's watermark is produced (`ready(E)`). The update's
//! latency is the time its last line reached its output topic (the record's create time, set by
//! the sink's producer) minus `ready(E)`: the time the pipeline took once it had everything it
//! needed. The watermark's own wait (`allowed_disorder_ms` of event time) is the job's choice
//! and is not counted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaSpec, METADATA_TIMEOUT};
use crate::config::Job;
use crate::error::{Error, Result};
use crate::generator::GeneratorParams;
use crate::runtime::{run, RunOptions};

/// Latency percentiles of one output's updates, in milliseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Output name.
    pub output: String,
    /// Updates measured.
    pub updates: u64,
    /// Percentiles 50, 90, 99 and the maximum.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// The 99th percentile of each third of the run's updates, by timestamp: a job (or a
    /// broker) falling behind shows as a rising tail.
    pub p99_thirds: [u64; 3],
}

/// What the Kafka benchmark measured.
#[derive(Debug, Clone)]
pub struct KafkaBenchReport {
    /// Events in the throughput run.
    pub events: u64,
    /// Records (all streams) in the throughput run.
    pub records: u64,
    /// Records per second the load generator produced (no cap).
    pub produce_per_sec: f64,
    /// Seconds the bounded job ran over the topics (startup included).
    pub run_secs: f64,
    /// Records per second through the pipeline: the peak.
    pub peak_per_sec: f64,
    /// The paced rate of the latency run.
    pub paced_per_sec: f64,
    /// The paced rate as a fraction of the peak.
    pub load: f64,
    /// Records in the latency run.
    pub paced_records: u64,
    /// Latency of metric (quality) and model (versions) updates.
    pub latency: Vec<Latency>,
    /// Where the broker was: the mock cluster or an address.
    pub broker: String,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// A broker for the benchmark: the in-process mock cluster unless `brokers` is given.
struct Broker {
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    spec: KafkaSpec,
    prefix: String,
}

impl Broker {
    fn start(brokers: Option<String>) -> Result<Broker> {
        let prefix = format!("tidemark-bench-{}-", wall_ms());
        let (mock, brokers) = match brokers {
            Some(b) => (None, b),
            None => {
                let m = MockCluster::new(1)
                    .map_err(|e| Error::kafka("starting the mock cluster", e))?;
                let b = m.bootstrap_servers();
                (Some(m), b)
            }
        };
        Ok(Broker {
            mock,
            spec: KafkaSpec {
                brokers,
                group_id: None,
                until_end: false,
                options: BTreeMap::new(),
            },
            prefix,
        })
    }

    fn create(&self, name: &str, partitions: i32) -> Result<String> {
        let topic = format!("{}{name}", self.prefix);
        match &self.mock {
            Some(m) => m
                .create_topic(&topic, partitions, 1)
                .map_err(|e| Error::kafka(format!("creating {topic}"), e))?,
            None => super::create_topic(&self.spec, &topic, partitions)?,
        }
        let deadline = Instant::now() + METADATA_TIMEOUT;
        while super::topic_partitions(&self.spec, &topic)
            .map_or(true, |p| p.len() < partitions as usize)
        {
            if Instant::now() > deadline {
                return Err(Error::kafka(format!("creating {topic}"), "never appeared"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(topic)
    }
}

/// How long the live job gets to start before the paced load begins.
const START_SECS: Duration = Duration::from_secs(3);

/// Input partitions per topic: the mock cluster keeps about 5 MiB per partition.
const PARTITIONS: i32 = 6;

fn sources(topics: &[String; 3]) -> String {
    ["events", "predictions", "labels"]
        .iter()
        .zip(topics)
        .map(|(s, t)| {
            format!("[sources.{s}]\nschema = \"{s}.v1\"\nkind = \"kafka\"\ntopic = \"{t}\"\n")
        })
        .collect()
}

/// How to run the Kafka benchmark.
#[derive(Debug, Clone)]
pub struct KafkaBench {
    /// Events for the peak measurement.
    pub events: u64,
    /// Worker threads.
    pub workers: usize,
    /// A broker address; the in-process mock cluster if `None`.
    pub brokers: Option<String>,
    /// Learn an online model (and measure its version updates).
    pub learn: bool,
    /// Seconds of paced input for the latency measurement.
    pub paced_secs: f64,
    /// The paced rate as a fraction of the peak.
    pub load: f64,
}

/// Runs the benchmark in `dir`: `events` events for the peak, then a run paced at `load` of it
/// for `paced_secs` seconds.
pub fn bench(dir: &Path, schemas_dir: &Path, b: &KafkaBench) -> Result<KafkaBenchReport> {
    let KafkaBench {
        events,
        workers,
        ref brokers,
        learn,
        paced_secs,
        load,
    } = *b;
    let brokers = brokers.clone();
    let broker = Broker::start(brokers)?;
    let schemas = std::fs::canonicalize(schemas_dir).map_err(|e| Error::io(schemas_dir, e))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;

    // Peak: everything produced first, then the job reads it to the end.
    let topics = [
        broker.create("events", PARTITIONS)?,
        broker.create("predictions", PARTITIONS)?,
        broker.create("labels", PARTITIONS)?,
    ];
    let params = GeneratorParams {
        events,
        seed: 7,
        ..Default::default()
    };
    let produced = super::load::produce(&params, &broker.spec, &topics, 0.0, |_, _, _| {})?;
    let records: u64 = produced.records.values().sum();
    let kafka = |until_end: bool| {
        format!(
            "[kafka]\nbrokers = \"{}\"\nuntil_end = {until_end}\n",
            broker.spec.brokers
        )
    };
    let out = dir.join("peak");
    let text = crate::bench::job_text(
        &schemas,
        &sources(&topics),
        900_000,
        &out,
        None,
        learn,
        1_000,
        &kafka(true),
    );
    let path = dir.join("peak.toml");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    let opts = RunOptions {
        workers,
        out_dir: Some(out),
        fresh: true,
        ..Default::default()
    };
    let t = Instant::now();
    run(Job::load(&path)?, &opts)?;
    let run_secs = t.elapsed().as_secs_f64();
    let peak = records as f64 / run_secs;

    // Latency: a live job, fed at a fraction of the peak; every update is a tick.
    let paced = peak * load;
    // One partition per worker: the mock broker scans a partition's batches linearly at every
    // fetch ("FIXME: Maintain an index" in librdkafka's rdkafka_mock.c), so its work grows with
    // partitions × batches held, and on two cores it took the job's CPU as the run went on (7 %
    // of a core in the paced run's first second, 60 % in its last, with 6 partitions). It
    // drops the oldest batches beyond 5 MiB a partition, which the job has read by then.
    let live_partitions = workers.max(1) as i32;
    let topics = [
        broker.create("live-events", live_partitions)?,
        broker.create("live-predictions", live_partitions)?,
        broker.create("live-labels", live_partitions)?,
    ];
    let quality = broker.create("live-quality", 1)?;
    let versions = broker.create("live-versions", 1)?;
    let mut extra = kafka(false);
    extra.push_str(&format!(
        "[outputs.kafka]\ntopics = {{ quality = \"{quality}\"{} }}\n",
        if learn {
            format!(", model_versions = \"{versions}\"")
        } else {
            String::new()
        }
    ));
    let out = dir.join("live");
    let text = crate::bench::job_text(
        &schemas,
        &sources(&topics),
        900_000,
        &out,
        None,
        learn,
        1_000,
        &extra,
    )
    // No idleness: the frontier is exactly the data's, which `ready` computes.
    .replace("idle_timeout_ms = 10000", "idle_timeout_ms = 3600000");
    let path = dir.join("live.toml");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    let job = Job::load(&path)?;
    let disorder = job.spec.time.allowed_disorder_ms;
    let tick = job.spec.time.tick_ms;
    let opts = RunOptions {
        workers,
        out_dir: Some(out),
        fresh: true,
        ..Default::default()
    };
    // The job follows the topics until this process exits.
    std::thread::spawn(move || {
        if let Err(e) = run(job, &opts) {
            eprintln!("the live job failed: {e}");
        }
    });
    // Its start (opening the topics' partitions, the first fetches) is not update latency: in
    // the first second of load it put 225 ms on the mean.
    std::thread::sleep(START_SECS);
    // Per input partition, (wall ms, own time) of each record as it was handed to the producer.
    let sent: Arc<Mutex<BTreeMap<(usize, usize), Vec<(u64, i64)>>>> = Default::default();
    let paced_events = ((paced * paced_secs) / 3.0).max(1000.0) as u64;
    let live_params = GeneratorParams {
        events: paced_events,
        seed: 8,
        ..Default::default()
    };
    // The output topics are read as the job writes them: the mock broker keeps only about
    // 5 MiB per partition, so a read after the run saw only its last hundred or so updates.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = vec![(
        "quality",
        read_updates(&broker.spec, &quality, stop.clone()),
    )];
    if learn {
        readers.push((
            "model_versions",
            read_updates(&broker.spec, &versions, stop.clone()),
        ));
    }
    let log = sent.clone();
    // Generated before the clock starts: making the records took 14 % of a core beside the job.
    let prepared: Vec<super::load::Prepared> = super::load::arrivals(&live_params)
        .map(super::load::prepare)
        .collect();
    let p = super::load::produce_prepared(
        prepared.into_iter(),
        &broker.spec,
        &topics,
        paced,
        |s, part, own| {
            // A malformed record moves no watermark.
            if let Some(own) = own {
                log.lock()
                    .expect("not poisoned")
                    .entry((s, part))
                    .or_default()
                    .push((wall_ms(), own));
            }
        },
    )?;
    let paced_records: u64 = p.records.values().sum();
    // Let the job catch up with the last records.
    std::thread::sleep(Duration::from_secs(5));
    let sent = sent.lock().expect("not poisoned");
    // ready(E): when every partition's watermark had passed E.
    let ready = |e: u64| -> Option<u64> {
        let mut latest = 0;
        for recs in sent.values() {
            let mut max_own = i64::MIN;
            let at = recs.iter().find_map(|(w, own)| {
                max_own = max_own.max(*own);
                (max_own >= (e + tick + disorder) as i64).then_some(*w)
            })?;
            latest = latest.max(at);
        }
        Some(latest)
    };
    stop.store(true, Ordering::Relaxed);
    let mut latency = Vec::new();
    for (output, reader) in readers {
        let last = reader
            .join()
            .map_err(|_| Error::Runtime(format!("the reader of {output} panicked")))??;
        latency.push(update_latency(output, &last, &ready));
    }
    // The live job still reads from the broker until the process exits.
    let mock = broker.mock.is_some();
    let brokers = broker.spec.brokers.clone();
    std::mem::forget(broker);
    Ok(KafkaBenchReport {
        events,
        records,
        produce_per_sec: records as f64 / produced.secs,
        run_secs,
        peak_per_sec: peak,
        paced_per_sec: paced,
        load,
        paced_records,
        latency,
        broker: if mock {
            "librdkafka mock cluster (in process)".into()
        } else {
            brokers
        },
    })
}

/// Reads `topic` from its start on a thread of its own until `stop` is set and it has read to
/// the topic's end then: each timestamp's create time of its last line.
fn read_updates(
    spec: &KafkaSpec,
    topic: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<BTreeMap<u64, u64>>> {
    let spec = spec.clone();
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let context = || format!("reading {topic}");
        let consumer: BaseConsumer = spec
            .consumer("tidemark-bench-reader")
            .create()
            .map_err(|e| Error::kafka(context(), e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(|e| Error::kafka(context(), e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Error::kafka(context(), e))?;
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        let mut next = 0;
        // Once stopped: the end to read to, and how long that may take.
        let mut end: Option<(i64, Instant)> = None;
        loop {
            if end.is_none() && stop.load(Ordering::Relaxed) {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, 0, METADATA_TIMEOUT)
                    .map_err(|e| Error::kafka(context(), e))?;
                end = Some((high, Instant::now() + Duration::from_secs(120)));
            }
            if let Some((high, deadline)) = end {
                if next >= high || Instant::now() > deadline {
                    return Ok(last);
                }
            }
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.map_err(|e| Error::kafka(context(), e))?;
            next = m.offset() + 1;
            let ts = m.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == "tidemark.ts")
                    .and_then(|x| x.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
            });
            if let (Some(ts), Some(created)) = (ts, m.timestamp().to_millis()) {
                let e = last.entry(ts).or_default();
                *e = (*e).max(created as u64);
            }
        }
    })
}

/// Measures each timestamp's update (`last`: the create time of its last line) against `ready`.
fn update_latency(
    output: &str,
    last: &BTreeMap<u64, u64>,
    ready: &dyn Fn(u64) -> Option<u64>,
) -> Latency {
    let new = || hdrhistogram::Histogram::<u64>::new(3).expect("valid precision");
    let mut h = new();
    let measured: Vec<u64> = last
        .iter()
        .filter_map(|(ts, created)| ready(*ts).map(|r| created.saturating_sub(r)))
        .collect();
    let mut thirds = [new(), new(), new()];
    for (i, l) in measured.iter().enumerate() {
        h.record(*l).expect("in range");
        thirds[i * 3 / measured.len()].record(*l).expect("in range");
    }
    Latency {
        output: output.into(),
        updates: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
        p99_thirds: thirds.map(|t| t.value_at_quantile(0.99)),
    }
}
