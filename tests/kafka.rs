//! Kafka in and out, against a real Kafka-protocol broker: librdkafka's mock cluster in this
//! process, or the broker named by `TIDEMARK_TEST_KAFKA` (`host:port`) when it is set.
//!
//! - a job reading the generator's streams from topics writes what the same job writes over
//!   the same records split into files the same way, on one process and on two;
//! - killed and restarted over and over during consumption, it accounts for every record
//!   exactly once, and its Kafka changelog holds every line exactly once;
//! - a silent partition stops holding the watermark after the idle timeout, and records it
//!   delivers later are still counted, exactly once across a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tidemark::generator::{GeneratorParams, GeneratorStream};
use tidemark::kafka::load::{key_of, partition_for};
use tidemark::kafka::KafkaSpec;
use tidemark::replay::manifest::Manifest;
use tidemark::replay::segment::read_segment;
use tidemark::schema::Stream;

/// A broker for one test: the mock cluster unless `TIDEMARK_TEST_KAFKA` names a real one
/// (`TIDEMARK_TEST_KAFKA_OPTIONS="k=v,k=v"` adds librdkafka properties for every client).
struct Broker {
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    brokers: String,
    options: BTreeMap<String, String>,
    /// Prefix of this test's topics (unique, so a real broker can be reused).
    prefix: String,
}

impl Broker {
    fn start(test: &str) -> Broker {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let prefix = format!("{test}-{nonce}-");
        let options = std::env::var("TIDEMARK_TEST_KAFKA_OPTIONS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        match std::env::var("TIDEMARK_TEST_KAFKA") {
            Ok(b) if !b.is_empty() => Broker {
                mock: None,
                brokers: b,
                options,
                prefix,
            },
            _ => {
                let mock = MockCluster::new(1).expect("librdkafka mock cluster");
                let brokers = mock.bootstrap_servers();
                Broker {
                    mock: Some(mock),
                    brokers,
                    options,
                    prefix,
                }
            }
        }
    }

    fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Creates `name` (prefixed) with `partitions`; returns the full name.
    fn create(&self, name: &str, partitions: i32) -> String {
        let topic = self.topic(name);
        match &self.mock {
            Some(m) => m.create_topic(&topic, partitions, 1).unwrap(),
            None => tidemark::kafka::create_topic(&self.spec(), &topic, partitions).unwrap(),
        }
        // Wait until the topic is described with all its partitions.
        let spec = self.spec();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(p) = tidemark::kafka::topic_partitions(&spec, &topic) {
                if p.len() == partitions as usize {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "topic {topic} never appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
        topic
    }

    fn spec(&self) -> KafkaSpec {
        KafkaSpec {
            brokers: self.brokers.clone(),
            group_id: None,
            until_end: true,
            options: self.options.clone(),
        }
    }

    /// The `[kafka]` table of a test job (`until_end` as given).
    fn table(&self, until_end: bool) -> String {
        let mut t = format!(
            "[kafka]\nbrokers = \"{}\"\nuntil_end = {until_end}\n",
            self.brokers
        );
        if !self.options.is_empty() {
            t.push_str("[kafka.options]\n");
            for (k, v) in &self.options {
                t.push_str(&format!("\"{k}\" = \"{v}\"\n"));
            }
        }
        t
    }
}

const REST: &str = r#"
[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000
[metrics]
segments = ["country"]
entity_features = ["amount"]
[drift]
reference = { from = "1767225600000", to = "1767225630000" }
[[drift.alerts]]
statistic = "psi"
above = 0.1
severity = "P2"
min_count = 20
[learn]
publish_every = 500
[learn.canary]
min_examples = 50
[replay]
segment_ms = 5000
"#;

fn params(events: u64, seed: u64) -> GeneratorParams {
    GeneratorParams {
        events,
        seed,
        malformed_fraction: 0.01,
        latency_median_ms: 5000.0,
        ..GeneratorParams::default()
    }
}

const PARTITIONS: [i32; 3] = [3, 2, 3];

/// Creates the three input topics and produces the generator's streams into them.
fn produce_inputs(b: &Broker, p: &GeneratorParams) -> [String; 3] {
    let topics: [String; 3] = [
        b.create("events", PARTITIONS[0]),
        b.create("predictions", PARTITIONS[1]),
        b.create("labels", PARTITIONS[2]),
    ];
    let mut spec = b.spec();
    spec.until_end = false;
    tidemark::kafka::load::produce(p, &spec, &topics, 0.0, |_, _, _| {}).unwrap();
    topics
}

/// Writes the generator's streams split into `<stream>/p<k>.jsonl` as the load generator
/// partitions them: each file holds one partition's records in its order.
fn split_files(dir: &Path, p: &GeneratorParams) {
    for (i, stream) in Stream::ALL.iter().enumerate() {
        let n = PARTITIONS[i] as usize;
        let mut parts = vec![String::new(); n];
        for r in GeneratorStream::new(p.clone(), *stream, false) {
            let k = partition_for(&key_of(&r), n);
            parts[k].push_str(&r.to_json_line());
            parts[k].push('\n');
        }
        let d = dir.join(stream.name());
        std::fs::create_dir_all(&d).unwrap();
        for (k, text) in parts.iter().enumerate() {
            std::fs::write(d.join(format!("p{k}.jsonl")), text).unwrap();
        }
    }
}

/// The job text with `sources` and `extra` (top-level tables after `[outputs]`).
fn job_text(out: &Path, sources: &str, outputs_extra: &str, extra: &str) -> String {
    format!(
        r#"name = "kafka-test"
schemas_dir = "{schemas}"
[time]
tick_ms = 1000
allowed_disorder_ms = 2000
idle_timeout_ms = 600000
max_lateness_ms = 30000
label_horizon_ms = 60000
retention_ms = 120000
{sources}
{REST}
[outputs]
dir = "{out}"
formats = ["jsonl"]
summary = false
emit_interval_ms = 5000
{outputs_extra}
{extra}
"#,
        schemas = schemas_dir().display(),
        out = out.display(),
    )
}

fn kafka_sources(topics: &[String; 3]) -> String {
    format!(
        r#"[sources.events]
schema = "events.v1"
kind = "kafka"
topic = "{}"
[sources.predictions]
schema = "predictions.v1"
kind = "kafka"
topic = "{}"
[sources.labels]
schema = "labels.v1"
kind = "kafka"
topic = "{}"
"#,
        topics[0], topics[1], topics[2]
    )
}

fn kafka_table(b: &Broker) -> String {
    b.table(true)
}

fn write_job(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run_ok(mut c: Command, what: &str) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Output files (JSON Lines) of a run, by name; dead letters without their positions, which
/// name files in one run and topic partitions in the other.
fn outputs(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&p).unwrap();
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            if name == "dead_letters" {
                lines = lines
                    .iter()
                    .map(|l| {
                        let mut v: Value = serde_json::from_str(l).unwrap();
                        let o = v.as_object_mut().unwrap();
                        o.remove("source");
                        o.remove("offset");
                        v.to_string()
                    })
                    .collect();
                lines.sort();
            }
            m.insert(name, lines);
        }
    }
    m
}

fn assert_same(a: &BTreeMap<String, Vec<String>>, b: &BTreeMap<String, Vec<String>>, what: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (name, x) in a {
        let y = &b[name];
        assert_eq!(x.len(), y.len(), "{name}.jsonl line count differs {what}");
        for (i, (l, r)) in x.iter().zip(y).enumerate() {
            assert_eq!(l, r, "{name}.jsonl line {} differs {what}", i + 1);
        }
    }
}

#[test]
fn a_kafka_job_writes_what_the_file_job_writes_on_one_and_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = Broker::start("equal");
    let p = params(3000, 5);
    let topics = produce_inputs(&b, &p);
    split_files(d, &p);

    let files = format!(
        r#"[sources.events]
schema = "events.v1"
kind = "jsonl"
path = "{d}/events"
[sources.predictions]
schema = "predictions.v1"
kind = "jsonl"
path = "{d}/predictions"
[sources.labels]
schema = "labels.v1"
kind = "jsonl"
path = "{d}/labels"
"#,
        d = d.display()
    );
    let file_job = write_job(d, "files.toml", &job_text(&d.join("f"), &files, "", ""));
    run_ok(tidemark_run(&file_job, &d.join("f")), "the file job");
    let expected = outputs(&d.join("f"));
    assert!(expected["quality"].len() > 100, "a meaningful run");
    assert!(
        !expected["dead_letters"].is_empty(),
        "malformed records reach dead letters"
    );

    let kafka_job = write_job(
        d,
        "kafka.toml",
        &job_text(&d.join("k"), &kafka_sources(&topics), "", &kafka_table(&b)),
    );
    let mut one = tidemark_run(&kafka_job, &d.join("k"));
    one.args(["-w", "2"]);
    run_ok(one, "the Kafka job");
    assert_same(&expected, &outputs(&d.join("k")), "between files and Kafka");
    // Dead letters name topic, partition and offset.
    let dl = std::fs::read_to_string(d.join("k/dead_letters.jsonl")).unwrap();
    let first: Value = serde_json::from_str(dl.lines().next().unwrap()).unwrap();
    let src = first["source"].as_str().unwrap();
    assert!(
        src.starts_with("kafka:") && src.contains(&b.prefix),
        "{first}"
    );
    assert!(first["offset"].as_u64().is_some(), "{first}");

    // The read positions went to the job's consumer group (for lag tools): all at the end.
    let spec = b.spec();
    let consumer: BaseConsumer = spec.consumer("tidemark-kafka-test").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for (i, t) in topics.iter().enumerate() {
        for p in 0..PARTITIONS[i] {
            tpl.add_partition(t, p);
        }
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    for e in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            e.offset(),
            Offset::Offset(high),
            "group offset of {}[{}]",
            e.topic(),
            e.partition()
        );
    }
    drop(committed);

    // Two processes on 127.0.0.1, the partitions divided between them.
    let hostfile = d.join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let children = (0..2)
        .map(|i| {
            let mut c = tidemark_run(&kafka_job, &d.join("k2"));
            c.args(["-w", "1", "-n", "2", "-p", &i.to_string(), "--hostfile"])
                .arg(&hostfile);
            c.spawn().unwrap()
        })
        .collect();
    wait_all(children, Duration::from_secs(300));
    assert_same(
        &expected,
        &outputs(&d.join("k2")),
        "between files and two processes on Kafka",
    );
}

/// Every record of `topic`, as (partition, offset, headers, payload).
fn read_topic(b: &Broker, topic: &str) -> Vec<(i32, i64, BTreeMap<String, String>, String)> {
    let spec = b.spec();
    let parts = tidemark::kafka::topic_partitions(&spec, topic).unwrap();
    let consumer: BaseConsumer = spec.consumer("test-reader").create().unwrap();
    let mut out = Vec::new();
    for p in parts {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = low;
        while next < high {
            assert!(Instant::now() < deadline, "{topic}[{p}] did not deliver");
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.unwrap();
            next = m.offset() + 1;
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.push((p, m.offset(), headers, payload));
        }
    }
    out
}

#[test]
fn kills_during_consumption_lose_and_double_nothing_in_the_buffer_or_the_topics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = Broker::start("kills");
    let p = params(12000, 11);
    let topics = produce_inputs(&b, &p);
    let produced: u64 = Stream::ALL
        .iter()
        .map(|s| GeneratorStream::new(p.clone(), *s, false).count() as u64)
        .sum();
    let sink_topics = [
        ("quality", b.create("out-quality", 3)),
        ("dead_letters", b.create("out-dead", 1)),
        ("model_versions", b.create("out-versions", 2)),
    ];
    let outputs_kafka = format!(
        "[outputs.kafka]\ntopics = {{ {} }}\n",
        sink_topics
            .iter()
            .map(|(n, t)| format!("{n} = \"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let clean_job = write_job(
        d,
        "clean.toml",
        &job_text(
            &d.join("clean"),
            &kafka_sources(&topics),
            "",
            &kafka_table(&b),
        ),
    );
    run_ok(
        tidemark_run(&clean_job, &d.join("clean")),
        "the uninterrupted run",
    );

    let job = write_job(
        d,
        "crashed.toml",
        &job_text(
            &d.join("crashed"),
            &kafka_sources(&topics),
            &outputs_kafka,
            &kafka_table(&b),
        ),
    );
    let crashed = d.join("crashed");
    let committed = || {
        Manifest::load(&crashed.join("replay"))
            .ok()
            .flatten()
            .filter(|m| !m.complete)
            .map_or(0, |m| m.committed)
    };
    // Each run is killed a random moment (up to 300 ms) after it made a new commit, so every
    // kill lands mid-run with lines produced past the commit; no timing assumption.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut kills = 0;
    for run in 0..8 {
        let before = committed();
        let mut child = tidemark_run(&job, &crashed).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if committed() > before {
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
                break false;
            }
            assert!(
                Instant::now() < deadline,
                "run {run} made no commit in 120 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        if !finished {
            child.kill().unwrap();
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        if finished {
            assert!(
                out.status.success(),
                "run {run} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
    }
    assert!(
        kills >= 4,
        "the job finished before it was killed often ({kills} kills)"
    );
    run_ok(tidemark_run(&job, &crashed), "the final run");

    // The outputs equal the uninterrupted run's, byte for byte.
    let clean = outputs(&d.join("clean"));
    assert_same(&clean, &outputs(&crashed), "after the kills");

    // Every produced record is in the buffer exactly once.
    let buffer = crashed.join("replay");
    let m = Manifest::load(&buffer).unwrap().unwrap();
    assert!(m.complete);
    let mut seen = BTreeSet::new();
    for s in &m.segments {
        for (_, item) in read_segment(&buffer, s).unwrap() {
            let pos = match &item {
                tidemark::sources::Ingested::Accepted(_, o)
                | tidemark::sources::Ingested::Control(_, o) => o.position.clone(),
                tidemark::sources::Ingested::Dead(dl) => dl.position.clone(),
                tidemark::sources::Ingested::Mark(..) => unreachable!(),
            };
            assert!(seen.insert(pos.clone()), "{pos} is in the buffer twice");
        }
    }
    assert_eq!(seen.len() as u64, produced);

    // Each Kafka changelog holds the final run's lines exactly once, in the file's order per
    // partition.
    for (name, topic) in &sink_topics {
        let records = read_topic(&b, topic);
        let run = &m.run;
        let ours: Vec<_> = records
            .iter()
            .filter(|(_, _, h, _)| h.get("tidemark.run") == Some(run))
            .collect();
        let mut in_topic: Vec<&str> = ours.iter().map(|(_, _, _, p)| p.as_str()).collect();
        let file = std::fs::read_to_string(crashed.join(format!("{name}.jsonl"))).unwrap();
        let mut in_file: Vec<&str> = file.lines().collect();
        assert!(!in_file.is_empty(), "{name} has lines");
        in_topic.sort();
        in_file.sort();
        assert_eq!(
            in_topic.len(),
            in_file.len(),
            "{name}: lines in the topic vs the file"
        );
        assert_eq!(
            in_topic, in_file,
            "{name}: the topic holds the file's lines once each"
        );
        // Per partition, (ts, index) strictly increases: nothing was produced twice.
        let mut last: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
        for (part, _, h, _) in &ours {
            let k = (
                h["tidemark.ts"].parse::<u64>().unwrap(),
                h["tidemark.index"].parse::<u64>().unwrap(),
            );
            if let Some(prev) = last.insert(*part, k) {
                assert!(prev < k, "{name}[{part}]: {prev:?} then {k:?}");
            }
        }
    }
}

/// Produces `(topic, partition, payload)` records and waits for their acknowledgement.
fn send(b: &Broker, records: &[(String, i32, String)]) {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = b.spec().producer().create().unwrap();
    for (topic, part, payload) in records {
        p.send(
            BaseRecord::<(), _>::to(topic)
                .partition(*part)
                .payload(payload),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Waits until `pred` holds for the lines of `out/name.jsonl`, or fails after `limit`.
fn wait_for(out: &Path, name: &str, limit: Duration, what: &str, pred: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let rows: Vec<Value> = std::fs::read_to_string(out.join(format!("{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if pred(&rows) {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(out.with_extension("stderr")).unwrap_or_default();
            let last: Vec<&Value> = rows.iter().rev().take(3).collect();
            panic!("{what}: not within {limit:?}; last {name} rows {last:?}; job stderr:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The current accepted count of `stream` in the ingest changelog.
fn accepted(rows: &[Value], stream: &str) -> i64 {
    rows.iter()
        .filter(|r| r["stream"] == stream)
        .map(|r| r["accepted"].as_i64().unwrap() * r["diff"].as_i64().unwrap())
        .sum()
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_and_its_late_records_still_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = Broker::start("idle");
    let topics = [
        b.create("events", 2),
        b.create("predictions", 1),
        b.create("labels", 1),
    ];
    let t0 = 1_767_225_600_000u64;
    // Events only in partition 0 of the events topic: partition 1 stays silent.
    let batch = |from: u64, to: u64, part: i32| -> Vec<(String, i32, String)> {
        let mut v = Vec::new();
        for i in from..to {
            let id = format!("e{i:05}");
            let t = t0 + i * 1000;
            v.push((topics[0].clone(), part, event(&id, "a", t, 10.0, "US")));
            v.push((topics[1].clone(), 0, prediction(&id, 0.7, t)));
            v.push((topics[2].clone(), 0, label(&id, 1, t + 500)));
        }
        v
    };
    send(&b, &batch(0, 200, 0));
    let sources = kafka_sources(&topics);
    let live = b.table(false);
    let text = |kafka: &str| {
        format!(
            r#"name = "idle-test"
schemas_dir = "{schemas}"
[time]
tick_ms = 1000
allowed_disorder_ms = 2000
idle_timeout_ms = 300
max_lateness_ms = 30000
label_horizon_ms = 10000
retention_ms = 60000
{sources}
[[windows]]
name = "1m"
kind = "tumbling"
size_ms = 60000
[outputs]
dir = "{out}"
summary = false
emit_interval_ms = 5000
[replay]
segment_ms = 10000
{kafka}
"#,
            schemas = schemas_dir().display(),
            out = d.join("out").display(),
        )
    };
    let job = write_job(d, "idle.toml", &text(&live));
    let out = d.join("out");
    let log = std::fs::File::create(out.with_extension("stderr")).unwrap();
    // Three workers: the silent partition is the only one of worker 1, which must not hold the
    // frontier either. (The restart below runs on one worker: partitions are redistributed.)
    let mut child = tidemark_run(&job, &out)
        .args(["-w", "3"])
        .env("TIDEMARK_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    // The silent partition would hold the frontier at 0 forever (checked by hand: with the
    // idle timeout at 10 minutes no window gets final here): with idleness, windows of the
    // busy partition become final.
    wait_for(
        &out,
        "quality",
        Duration::from_secs(60),
        "a final window",
        |rows| rows.iter().any(|r| r["status"] == "final"),
    );
    wait_for(
        &out,
        "ingest",
        Duration::from_secs(60),
        "200 events counted",
        |rows| accepted(rows, "events") >= 190,
    );
    // The silent partition wakes with records far behind the frontier: they are accepted (its
    // own watermark is behind them) and stamped no earlier than where the frontier got. More
    // input follows; the job is killed once it has committed past it. (Records of a partition
    // that idled while another worker's moved on are floored too, so live counts at a given
    // moment depend on wall-clock order; the bounded restart below gives the exact account.)
    let late: Vec<(String, i32, String)> = (0..5)
        .map(|i| {
            let id = format!("late{i}");
            (
                topics[0].clone(),
                1,
                event(&id, "b", t0 + i * 1000, 5.0, "BR"),
            )
        })
        .collect();
    send(&b, &late);
    send(&b, &batch(200, 300, 0));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Manifest::load(&out.join("replay"))
        .ok()
        .flatten()
        .is_none_or(|m| m.committed < t0 + 250_000)
    {
        assert!(
            Instant::now() < deadline,
            "no commit past the new input within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // A restart reading to the end accounts for every record exactly once.
    send(&b, &batch(300, 350, 0));
    let bounded = b.table(true);
    std::fs::write(&job, text(&bounded)).unwrap();
    run_ok(tidemark_run(&job, &out), "the bounded restart");
    let buffer = out.join("replay");
    let m = Manifest::load(&buffer).unwrap().unwrap();
    assert!(m.complete);
    let mut seen = BTreeSet::new();
    let mut late_seen = 0;
    for s in &m.segments {
        for (_, item) in read_segment(&buffer, s).unwrap() {
            let pos = match &item {
                tidemark::sources::Ingested::Accepted(_, o)
                | tidemark::sources::Ingested::Control(_, o) => o.position.clone(),
                tidemark::sources::Ingested::Dead(dl) => {
                    panic!("no record here is bad: {dl:?}")
                }
                tidemark::sources::Ingested::Mark(..) => unreachable!(),
            };
            late_seen += pos.source.ends_with("events/1") as u32;
            assert!(seen.insert(pos.clone()), "{pos} is in the buffer twice");
        }
    }
    assert_eq!(late_seen, 5);
    assert_eq!(seen.len(), 350 * 3 + 5);
    let rows: Vec<Value> = std::fs::read_to_string(out.join("ingest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(accepted(&rows, "events"), 355);
}

#[test]
fn the_example_kafka_job_runs_against_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = Broker::start("example");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/kafka.toml");
    let mut spec = tidemark::config::Job::read_spec(&path).unwrap();
    // The example's own topics, prefixed for this test, on this test's broker.
    let mut inputs: Vec<String> = Vec::new();
    for stream in Stream::ALL {
        let src = spec.sources.get_mut(stream);
        let t = b.create(src.topic.as_ref().unwrap(), 2);
        src.topic = Some(t.clone());
        inputs.push(t);
    }
    let outs = spec.outputs.kafka.as_mut().unwrap();
    for topic in outs.topics.values_mut() {
        *topic = b.create(topic, 1);
    }
    let out_topics = outs.topics.clone();
    let k = spec.kafka.as_mut().unwrap();
    k.brokers = b.brokers.clone();
    k.until_end = true;
    k.options.extend(b.options.clone());
    spec.learn.as_mut().unwrap().registry = Some(d.join("registry"));
    let job = tidemark::config::Job::validate(&path, spec).unwrap();
    let p = GeneratorParams {
        events: 3000,
        seed: 9,
        malformed_fraction: 0.01,
        ..GeneratorParams::default()
    };
    // The load generator, as a user runs it.
    run_ok(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_tidemark"));
            c.args([
                "generate",
                "--kafka",
                &b.brokers,
                "--topics",
                &inputs.join(","),
            ])
            .args([
                "--events",
                "3000",
                "--seed",
                "9",
                "--malformed-fraction",
                "0.01",
            ])
            .args(["--per-second", "20000"])
            .args(
                b.options
                    .iter()
                    .flat_map(|(k, v)| ["--kafka-option".to_string(), format!("{k}={v}")]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            c
        },
        "tidemark generate --kafka",
    );
    let opts = tidemark::runtime::RunOptions {
        workers: 2,
        out_dir: Some(d.join("out")),
        ..Default::default()
    };
    let summary = tidemark::runtime::run(job, &opts).unwrap().unwrap();
    let read: i64 = summary.ingest.iter().map(|r| r.read).sum();
    let produced: usize = Stream::ALL
        .iter()
        .map(|s| GeneratorStream::new(p.clone(), *s, false).count())
        .sum();
    assert_eq!(read as usize, produced, "every produced record was read");
    for (name, topic) in &out_topics {
        let lines = std::fs::read_to_string(d.join(format!("out/{name}.jsonl"))).unwrap();
        let n = lines.lines().count();
        if name != "drift_alerts" {
            // (3000 events are 30 s of event time: no alert is expected.)
            assert!(n > 0, "{name} wrote nothing");
        }
        assert_eq!(read_topic(&b, topic).len(), n, "{name}: topic vs file");
    }
}

#[test]
fn a_job_following_topics_stops_when_a_commit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = Broker::start("stops");
    let p = params(3000, 4);
    let topics = produce_inputs(&b, &p);
    let sink = b.create("out-quality", 1);
    let text = job_text(
        &d.join("out"),
        &kafka_sources(&topics),
        &format!("[outputs.kafka]\ntopics = {{ quality = \"{sink}\" }}\n"),
        &b.table(false),
    )
    .replace("idle_timeout_ms = 600000", "idle_timeout_ms = 2000");
    let job = write_job(d, "follow.toml", &text);
    let mut child = tidemark_run(&job, &d.join("out")).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Manifest::load(&d.join("out/replay"))
        .ok()
        .flatten()
        .is_none_or(|m| m.committed == 0)
    {
        assert!(Instant::now() < deadline, "no commit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The buffer's events directory becomes a file: the next segment cannot be written (even
    // as root), and more input makes the job try.
    let events = d.join("out/replay/events");
    std::fs::rename(&events, d.join("events-moved")).unwrap();
    std::fs::write(&events, b"not a directory").unwrap();
    let later = GeneratorParams {
        start_ms: p.start_ms + 60_000,
        ..params(3000, 5)
    };
    let mut spec = b.spec();
    spec.until_end = false;
    tidemark::kafka::load::produce(&later, &spec, &topics, 0.0, |_, _, _| {}).unwrap();
    // The job, which would otherwise follow its topics forever, stops with the error.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String = err
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("the job went on after a failed commit: {tail}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success());
    assert!(err.contains("replay/events"), "{err}");
}
