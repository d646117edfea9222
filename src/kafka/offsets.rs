//! Read positions committed to the job's consumer group when the replay buffer commits, so that
//! lag tools (`kafka-consumer-groups --describe`) see how far the job has got. The job itself
//! never reads them back: its positions are in the manifest.
//!
//! Commits run on a thread of their own, one synchronous commit at a time and each carrying the
//! newest positions handed to it: asynchronous commits could land out of order (one retried by
//! librdkafka after a newer one left an older position in the group), and a synchronous commit
//! on the worker would hold the dataflow back for a round trip to the broker. The last commit
//! is waited for, boundedly.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Job;
use crate::error::{Error, Result};
use crate::sources::partition::PartitionSpec;
use crate::sources::{partition_key, partitions, PartitionState};

/// How often the last commit is tried, and how long the job waits for it at most.
const LAST_COMMIT_TRIES: u32 = 5;
const LAST_COMMIT_WAIT: Duration = Duration::from_secs(30);

/// Positions to commit: (topic, partition, next offset).
type Positions = Vec<(String, i32, i64)>;

/// One request to the committer thread; `done` is answered once a last commit is over.
struct Request {
    positions: Positions,
    done: Option<mpsc::SyncSender<()>>,
}

/// Commits the manifest's Kafka positions to the job's group.
pub struct GroupOffsets {
    requests: mpsc::Sender<Request>,
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
        let consumer: BaseConsumer = spec
            .consumer(&group)
            .create()
            .map_err(|e| Error::kafka(format!("committing offsets of group {group}"), e))?;
        let (requests, incoming) = mpsc::channel();
        std::thread::Builder::new()
            .name("tidemark-offsets".into())
            .spawn(move || serve(consumer, incoming))
            .map_err(|e| Error::kafka(format!("committing offsets of group {group}"), e))?;
        Ok(Some(GroupOffsets { requests, parts }))
    }

    /// Hands each partition's resume offset to the committer (monitoring only: a failure is
    /// logged, and the next commit carries newer positions). If `last`, waits until it is
    /// committed, retried a few times if the group's coordinator refuses it.
    pub fn commit(&self, states: &BTreeMap<String, PartitionState>, last: bool) {
        let positions: Positions = self
            .parts
            .iter()
            .filter_map(|(key, topic, partition)| {
                let s = states.get(key)?;
                Some((topic.clone(), *partition, s.cursor.offset as i64))
            })
            .collect();
        if positions.is_empty() {
            return;
        }
        let (done, wait) = if last {
            let (tx, rx) = mpsc::sync_channel(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if self.requests.send(Request { positions, done }).is_err() {
            tracing::warn!("the consumer group's committer stopped; read positions not committed");
            return;
        }
        if let Some(rx) = wait {
            if rx.recv_timeout(LAST_COMMIT_WAIT).is_err() {
                tracing::warn!("the last commit of read positions to the consumer group timed out");
            }
        }
    }
}

/// The committer thread: commits the newest positions it was handed, one commit at a time,
/// until the job drops its [`GroupOffsets`].
fn serve(consumer: BaseConsumer, incoming: mpsc::Receiver<Request>) {
    while let Ok(mut request) = incoming.recv() {
        // Positions only grow: of the requests waiting, the newest carries the rest.
        let mut waiting = Vec::new();
        while let Ok(newer) = incoming.try_recv() {
            waiting.extend(request.done.take());
            request = newer;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in &request.positions {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        let tries = if request.done.is_some() {
            LAST_COMMIT_TRIES
        } else {
            1
        };
        for attempt in 1..=tries {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => break,
                Err(e) if attempt == tries => {
                    tracing::warn!(error = %e, "committing read positions to the consumer group")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100 * u64::from(attempt))),
            }
        }
        for done in waiting.into_iter().chain(request.done) {
            let _ = done.send(());
        }
    }
}
