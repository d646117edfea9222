//! Reading one Kafka partition from a chosen offset, in offset order.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaSpec, METADATA_TIMEOUT};
use crate::error::{Error, Result};

/// A consumer of one partition.
pub struct PartitionReader {
    consumer: BaseConsumer,
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
    /// Opens `topic`/`partition` at offset `from` (the first record still to read); `bounded`
    /// stops at the partition's current end.
    pub fn open(
        spec: &KafkaSpec,
        group: &str,
        topic: &str,
        partition: i32,
        from: u64,
        bounded: bool,
    ) -> Result<PartitionReader> {
        let source = super::source_name(topic, partition);
        let context = || format!("reading {source} at {}", spec.brokers);
        let consumer: BaseConsumer = spec
            .consumer(group)
            .create()
            .map_err(|e| Error::kafka(context(), e))?;
        let (low, high) = consumer
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
        consumer
            .assign(&tpl)
            .map_err(|e| Error::kafka(context(), e))?;
        Ok(PartitionReader {
            consumer,
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
        let mut n = 0;
        while n < max && !self.is_done() {
            match self.consumer.poll(Duration::ZERO) {
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
