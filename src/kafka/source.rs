//! Reading one Kafka partition from a chosen offset, in offset order.
//!
//! A worker's partitions share one consumer (one client, one fetch per broker for all of them):
//! a consumer per partition multiplied the clients' fetch requests and threads, and at the
//! Kafka bench's paced load the clients and the broker took as much CPU as the dataflow. Each
//! partition's records are split off into a queue of its own, read in offset order.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaSpec, METADATA_TIMEOUT};
use crate::error::{Error, Result};

/// Records of a partition fetched before its queue was split off, by (topic, partition).
type Strays = BTreeMap<(String, i32), VecDeque<(i64, Option<Vec<u8>>)>>;

/// One consumer shared by a worker's partition readers.
struct Shared {
    consumer: Arc<BaseConsumer>,
    strays: RefCell<Strays>,
}

impl Shared {
    /// Serves the consumer's main queue: its callbacks, and records fetched for a partition
    /// before its queue was split off (kept for that partition's reader, which reads them
    /// first).
    fn serve(&self) {
        while let Some(r) = self.consumer.poll(Duration::ZERO) {
            match r {
                Ok(m) => self
                    .strays
                    .borrow_mut()
                    .entry((m.topic().to_string(), m.partition()))
                    .or_default()
                    .push_back((m.offset(), m.payload().map(<[u8]>::to_vec))),
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => tracing::warn!(error = %e, "kafka consumer"),
            }
        }
    }
}

/// A worker's consumers, one per broker list and group, shared by its partition readers.
#[derive(Default, Clone)]
pub struct Consumers(Rc<RefCell<Vec<(String, Rc<Shared>)>>>);

impl Consumers {
    fn get(&self, spec: &KafkaSpec, group: &str) -> Result<Rc<Shared>> {
        let key = format!("{}\n{group}", spec.brokers);
        let mut all = self.0.borrow_mut();
        if let Some((_, s)) = all.iter().find(|(k, _)| *k == key) {
            return Ok(s.clone());
        }
        let consumer: BaseConsumer = spec
            .consumer(group)
            .create()
            .map_err(|e| Error::kafka(format!("connecting to {}", spec.brokers), e))?;
        let shared = Rc::new(Shared {
            consumer: Arc::new(consumer),
            strays: Default::default(),
        });
        all.push((key, shared.clone()));
        Ok(shared)
    }
}

/// A reader of one partition.
pub struct PartitionReader {
    shared: Rc<Shared>,
    queue: PartitionQueue<DefaultConsumerContext>,
    topic: String,
    partition: i32,
    /// `kafka:<topic>/<partition>`.
    pub source: String,
    /// The next offset to deliver.
    next: i64,
    /// Where a bounded read stops (the end offset when the reader opened).
    end: Option<i64>,
    /// When the last record arrived (or the reader opened).
    last_data: Instant,
}

impl PartitionReader {
    /// Opens `topic`/`partition` at offset `from` (the first record still to read) on the
    /// worker's shared consumer; `bounded` stops at the partition's current end.
    pub fn open(
        consumers: &Consumers,
        spec: &KafkaSpec,
        group: &str,
        topic: &str,
        partition: i32,
        from: u64,
        bounded: bool,
    ) -> Result<PartitionReader> {
        let source = super::source_name(topic, partition);
        let context = || format!("reading {source} at {}", spec.brokers);
        let shared = consumers.get(spec, group)?;
        let (low, high) = shared
            .consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|e| Error::kafka(context(), e))?;
        let from = from as i64;
        if from > 0 && from < low {
            return Err(Error::kafka(
                context(),
                format!(
                    "offsets {from}..{low} were deleted by the topic's retention before they were read; \
                     they are lost to this run (start over with --fresh to read from {low})"
                ),
            ));
        }
        let next = from.max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(next))
            .map_err(|e| Error::kafka(context(), e))?;
        shared
            .consumer
            .incremental_assign(&tpl)
            .map_err(|e| Error::kafka(context(), e))?;
        // Split after assigning (an assignment forwards the partition to the main queue); what
        // was fetched before lands in the main queue, and `serve` keeps it for this reader.
        let queue = shared
            .consumer
            .split_partition_queue(topic, partition)
            .ok_or_else(|| Error::kafka(context(), "no queue for the partition"))?;
        shared.serve();
        Ok(PartitionReader {
            shared,
            queue,
            topic: topic.to_string(),
            partition,
            source,
            next,
            end: bounded.then_some(high),
            last_data: Instant::now(),
        })
    }

    /// The next offset to read.
    pub fn next_offset(&self) -> u64 {
        self.next as u64
    }

    /// Whether a bounded read has reached its end.
    pub fn is_done(&self) -> bool {
        self.end.is_some_and(|e| self.next >= e)
    }

    /// How long no record has arrived.
    pub fn silent_for(&self) -> Duration {
        self.last_data.elapsed()
    }

    /// Hands up to `max` records already fetched to `f` as (offset, payload); never waits.
    pub fn read(&mut self, max: usize, mut f: impl FnMut(u64, Option<&[u8]>)) -> Result<()> {
        self.shared.serve();
        let mut n = 0;
        // Records fetched before the split come first: they precede the queue's.
        if let Some(strays) = self
            .shared
            .strays
            .borrow_mut()
            .get_mut(&(self.topic.clone(), self.partition))
        {
            while n < max && !self.is_done() {
                let Some((offset, payload)) = strays.pop_front() else {
                    break;
                };
                if offset < self.next {
                    continue;
                }
                self.next = offset + 1;
                n += 1;
                f(offset as u64, payload.as_deref());
            }
        }
        while n < max && !self.is_done() {
            match self.queue.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    if m.offset() < self.next {
                        continue;
                    }
                    self.next = m.offset() + 1;
                    n += 1;
                    f(m.offset() as u64, m.payload());
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => {
                    // Transport errors are retried by librdkafka; say so and go on.
                    tracing::warn!(source = %self.source, error = %e, "kafka consumer");
                    break;
                }
            }
        }
        if n > 0 {
            self.last_data = Instant::now();
        }
        Ok(())
    }
}

impl Drop for PartitionReader {
    /// The shared consumer stops fetching the partition.
    fn drop(&mut self) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        if let Err(e) = self.shared.consumer.incremental_unassign(&tpl) {
            tracing::debug!(source = %self.source, error = %e, "unassigning a kafka partition");
        }
        self.shared
            .strays
            .borrow_mut()
            .remove(&(self.topic.clone(), self.partition));
    }
}
