//! Read positions committed to the job's consumer group when the replay buffer commits, so that
//! lag tools (`kafka-consumer-groups --describe`) see how far the job has got. The job itself
//! never reads them back: its positions are in the manifest.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::Job;
use crate::error::{Error, Result};
use crate::sources::partition::PartitionSpec;
use crate::sources::{partition_key, partitions, PartitionState};

/// How long the last commit waits for earlier commits to settle, and how often it tries.
const LAST_COMMIT_WAIT: Duration = Duration::from_secs(10);
const LAST_COMMIT_TRIES: u32 = 5;

/// Counts the commits whose results came back, so the last commit can wait for them: an
/// asynchronous commit that librdkafka retries after a newer one would otherwise leave an older
/// position in the group.
#[derive(Default)]
struct Settled(AtomicU64);

impl ClientContext for Settled {}

impl ConsumerContext for Settled {
    fn commit_callback(&self, _: KafkaResult<()>, _: &TopicPartitionList) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Commits the manifest's Kafka positions to the job's group.
pub struct GroupOffsets {
    consumer: BaseConsumer<Settled>,
    /// Asynchronous commits issued so far.
    issued: std::cell::Cell<u64>,
    /// (manifest key, topic, partition) of every Kafka partition of the job.
    parts: Vec<(String, String, i32)>,
}

impl GroupOffsets {
    /// The committer of `job`'s group; `None` if the job reads no Kafka topic.
    pub fn new(job: &Job) -> Result<Option<GroupOffsets>> {
        let Some(spec) = &job.spec.kafka else {
            return Ok(None);
        };
        let parts: Vec<(String, String, i32)> = partitions(job)
            .into_iter()
            .filter_map(|(stream, p)| match &p {
                PartitionSpec::Kafka(k) => {
                    Some((partition_key(stream, &p), k.topic.clone(), k.partition))
                }
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            return Ok(None);
        }
        let group = spec.group(&job.spec.name);
        let consumer = spec
            .consumer(&group)
            .create_with_context(Settled::default())
            .map_err(|e| Error::kafka(format!("committing offsets of group {group}"), e))?;
        Ok(Some(GroupOffsets {
            consumer,
            issued: std::cell::Cell::new(0),
            parts,
        }))
    }

    /// Commits each partition's resume offset (monitoring only: a failure is logged, and the
    /// next commit carries newer positions). Asynchronously unless `last`; the last commit first
    /// waits (boundedly) for the earlier ones to settle, so none lands after it, and is retried
    /// a few times if the group's coordinator refuses it.
    pub fn commit(&self, states: &BTreeMap<String, PartitionState>, last: bool) {
        let mut tpl = TopicPartitionList::new();
        for (key, topic, partition) in &self.parts {
            if let Some(s) = states.get(key) {
                let _ = tpl.add_partition_offset(
                    topic,
                    *partition,
                    Offset::Offset(s.cursor.offset as i64),
                );
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if !last {
            match self.consumer.commit(&tpl, CommitMode::Async) {
                Ok(()) => self.issued.set(self.issued.get() + 1),
                Err(e) => {
                    tracing::warn!(error = %e, "committing read positions to the consumer group")
                }
            }
            // Serve the commit's callback queue.
            let _ = self.consumer.poll(Duration::ZERO);
            return;
        }
        let deadline = Instant::now() + LAST_COMMIT_WAIT;
        while self.consumer.context().0.load(Ordering::Relaxed) < self.issued.get()
            && Instant::now() < deadline
        {
            let _ = self.consumer.poll(Duration::from_millis(10));
        }
        for attempt in 1..=LAST_COMMIT_TRIES {
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => break,
                Err(e) if attempt == LAST_COMMIT_TRIES => {
                    tracing::warn!(error = %e, "committing read positions to the consumer group")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100 * u64::from(attempt))),
            }
        }
        let _ = self.consumer.poll(Duration::ZERO);
    }
}
