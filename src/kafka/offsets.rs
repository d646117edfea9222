//! Read positions committed to the job's consumer group when the replay buffer commits, so that
//! lag tools (`kafka-consumer-groups --describe`) see how far the job has got. The job itself
//! never reads them back: its positions are in the manifest.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Job;
use crate::error::{Error, Result};
use crate::sources::partition::PartitionSpec;
use crate::sources::{partition_key, partitions, PartitionState};

/// Commits the manifest's Kafka positions to the job's group.
pub struct GroupOffsets {
    consumer: BaseConsumer,
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
            .create()
            .map_err(|e| Error::kafka(format!("committing offsets of group {group}"), e))?;
        Ok(Some(GroupOffsets { consumer, parts }))
    }

    /// Commits each partition's resume offset; asynchronously unless `last` (monitoring only:
    /// a failure is logged, and the next commit carries newer positions).
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
        let mode = if last {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "committing read positions to the consumer group");
        }
        // Serve the commit's callback queue.
        let _ = self.consumer.poll(std::time::Duration::ZERO);
    }
}
