//! Kafka: the cluster a job reads and writes, partition discovery, and client configuration.
//!
//! tidemark assigns partitions itself rather than through a consumer group's rebalancing: a
//! partition's read position, watermark and the records already committed travel with the
//! replay buffer's manifest, and a group rebalance could not move them between timely workers.
//! The group id is used only to commit offsets for monitoring (lag tools); auto-commit is off.

pub mod bench;
pub mod load;
pub mod offsets;
pub mod sink;
pub mod source;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::config::{Job, SourceKind};
use crate::error::{Error, Result};
use crate::schema::Stream;

/// The `[kafka]` section of a job: brokers and client options.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSpec {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Consumer group that read positions are committed to, for monitoring only; defaults to
    /// `tidemark-<job name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Read each partition up to its end offset at start, then finish (a bounded run or a
    /// backfill from Kafka) instead of following the topic.
    #[serde(default)]
    pub until_end: bool,
    /// librdkafka properties passed through as they are (`security.protocol`, `sasl.*`,
    /// `ssl.*`, timeouts …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// `[outputs.kafka]`: changelogs produced to topics, by output name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutputs {
    /// Output name (`quality`, `drift_alerts`, `dead_letters`, `model_versions` …) → topic.
    pub topics: BTreeMap<String, String>,
}

/// Properties tidemark sets itself: passing them would break its delivery guarantees.
const OWNED: [&str; 6] = [
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "group.id",
    "auto.offset.reset",
];

/// Checks a topic name as Kafka does.
pub fn check_topic(topic: &str) -> std::result::Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{topic:?} is not a Kafka topic name (1–249 of ASCII letters, digits, '.', '_', '-')"
        ))
    }
}

impl KafkaSpec {
    /// Checks the section; returns the offending key and why.
    pub fn check(&self) -> std::result::Result<(), (String, String)> {
        if self.brokers.trim().is_empty() {
            return Err(("brokers".into(), "must name at least one broker".into()));
        }
        for key in self.options.keys() {
            if OWNED.contains(&key.as_str()) {
                return Err((
                    format!("options.{key:?}"),
                    "tidemark sets this property itself (use `brokers` / `group_id` for the first and fifth)"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The group offsets are committed to.
    pub fn group(&self, job_name: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("tidemark-{job_name}"))
    }

    /// A client configuration with the brokers and pass-through options.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// A consumer configuration: no auto-commit, positions chosen by tidemark.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10");
        c
    }

    /// A producer configuration: idempotent, so a broker retry never duplicates a record.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.client();
        c.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        c
    }
}

/// How long metadata and watermark queries may take before a run gives up.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// The partition ids of `topic`, sorted; an error if the topic does not exist.
pub fn topic_partitions(spec: &KafkaSpec, topic: &str) -> Result<Vec<i32>> {
    let context = || format!("metadata of topic {topic} at {}", spec.brokers);
    let consumer: BaseConsumer = spec
        .consumer("tidemark-metadata")
        .create()
        .map_err(|e| Error::kafka(context(), e))?;
    let md = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| Error::kafka(context(), e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::kafka(
            context(),
            "the broker did not describe the topic",
        ));
    };
    if let Some(e) = t.error() {
        return Err(Error::kafka(
            context(),
            format!("{:?} (create the topic first)", e),
        ));
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err(Error::kafka(context(), "the topic has no partitions"));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Creates `topic` with `partitions` (replication 1) through the admin API: for a local broker
/// in tests and benchmarks.
pub fn create_topic(spec: &KafkaSpec, topic: &str, partitions: i32) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let context = || format!("creating topic {topic} at {}", spec.brokers);
    let admin: AdminClient<DefaultClientContext> = spec
        .client()
        .create()
        .map_err(|e| Error::kafka(context(), e))?;
    let results = block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
    ))
    .map_err(|e| Error::kafka(context(), e))?;
    for r in results {
        r.map_err(|(_, code)| Error::kafka(context(), format!("{code:?}")))?;
    }
    Ok(())
}

/// Runs a future to completion on this thread, polling it every few milliseconds (for the
/// admin client's replies, which a librdkafka thread completes).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Fills `job.kafka_partitions` from the brokers: every process of a run asks, and must see
/// the same partitions.
pub fn discover(job: &mut Job) -> Result<()> {
    let Some(spec) = job.spec.kafka.clone() else {
        return Ok(());
    };
    for stream in Stream::ALL {
        let src = job.spec.sources.get(stream);
        if src.kind != SourceKind::Kafka {
            continue;
        }
        let topic = src
            .topic
            .as_deref()
            .expect("validated: Kafka sources name a topic");
        job.kafka_partitions[stream.index()] = topic_partitions(&spec, topic)?;
    }
    Ok(())
}

/// Validates `[kafka]` and `[outputs.kafka]` of a parsed job; returns the key and the reason.
pub fn validate(job: &Job) -> std::result::Result<(), (String, String)> {
    if let Some(k) = &job.spec.kafka {
        k.check().map_err(|(key, r)| (format!("kafka.{key}"), r))?;
    }
    if let Some(out) = &job.spec.outputs.kafka {
        if job.spec.kafka.is_none() {
            return Err((
                "outputs.kafka".into(),
                "Kafka outputs need a [kafka] section with the brokers".into(),
            ));
        }
        if out.topics.is_empty() {
            return Err(("outputs.kafka.topics".into(), "names no output".into()));
        }
        for (name, topic) in &out.topics {
            let key = format!("outputs.kafka.topics.{name}");
            if sink::key_columns(name).is_none() {
                return Err((
                    key,
                    format!(
                        "no output is called {name:?}; Kafka outputs: {}",
                        sink::KEYS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            check_topic(topic).map_err(|r| (key.clone(), r))?;
        }
    }
    Ok(())
}

/// One partition of a Kafka source, with what opening it needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KafkaPartition {
    /// The cluster.
    pub spec: KafkaSpec,
    /// The group positions are committed to.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition id.
    pub partition: i32,
}

/// The name a Kafka partition's records carry as their source position.
pub fn source_name(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}/{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_pass_through_except_the_ones_tidemark_owns() {
        let mut spec = KafkaSpec {
            brokers: "127.0.0.1:9092".into(),
            group_id: None,
            until_end: false,
            options: BTreeMap::from([
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
                ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string()),
            ]),
        };
        assert!(spec.check().is_ok());
        let c = spec.consumer("g");
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(spec.producer().get("enable.idempotence"), Some("true"));
        spec.options
            .insert("enable.auto.commit".into(), "true".into());
        let (key, reason) = spec.check().unwrap_err();
        assert!(
            key.contains("enable.auto.commit") && reason.contains("sets this"),
            "{key}: {reason}"
        );
        assert!(check_topic("events.v1_x-y").is_ok());
        assert!(check_topic("bad topic").is_err());
        assert!(check_topic("").is_err());
    }
}
