//! The consumer loop: a member of the consumer group, on a thread of its own. Messages go into
//! per-partition batches (`batch.rs`); a batch that is due goes to the writer thread
//! (`writer.rs` -> `to_parquet.rs`), and only once it is durable is its offset committed to Kafka,
//! so a crash at any point replays, never skips.
//!
//! When a partition is taken away in a rebalance, the callback first waits for the writer to
//! finish what it holds, then the partition's unwritten batch is dropped: nothing of it was
//! committed, so its next owner consumes it again from the stored state.

use crate::batch::{Outcome, PartitionBatch};
use crate::config::Config;
use crate::metrics::{
    CONSUMED_TOTAL, CONSUMER_LAG, DEAD_LETTERED_TOTAL, DUPLICATES_DROPPED_TOTAL,
    REPLAYED_SKIPPED_TOTAL,
};
use crate::to_parquet::Store;
use crate::writer::{Writer, WriterHandle};
use anyhow::{Context, bail};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(100);

/// Rebalance and statistics callbacks, run inside `poll` on the consumer thread.
struct GroupContext {
    revoked: Mutex<Vec<i32>>,
    writer: WriterHandle,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::gauge!(CONSUMER_LAG, "partition" => partition.to_string())
                        .set(stats.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Before the partitions go: everything handed to the writer is written and committed.
            self.writer.wait_idle();
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(partitions.elements().iter().map(|e| e.partition()));
            }
        }
    }
}

/// Consumes until `shutdown`, then writes what it holds and commits.
pub fn consume(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let writer_handle = WriterHandle::default();
    let mut client = ClientConfig::new();
    if let Some(id) = &config.instance_id {
        client.set("group.instance.id", id);
    }
    let consumer: Arc<BaseConsumer<GroupContext>> = Arc::new(
        client
            .set("bootstrap.servers", &config.brokers)
            // A collector that dies holds its partitions until this expires (Kafka's default is 45 s).
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000")
            // librdkafka stops fetching for this long once its prefetch queue (64 MB) is full; at
            // its default of 1 s the collector drained the queue in a third of that and then sat
            // idle, halving throughput.
            .set("fetch.queue.backoff.ms", "20")
            // Back soon after a broker outage (librdkafka's default backs off to 10 s).
            .set("reconnect.backoff.max.ms", "2000")
            .set("group.id", &config.group)
            .set("client.id", "imds-collector")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .create_with_context(GroupContext {
                revoked: Mutex::default(),
                writer: writer_handle.clone(),
            })?,
    );
    check_topic(&consumer, config)?;
    consumer.subscribe(&[&config.topic])?;
    tracing::info!(brokers = %config.brokers, topic = %config.topic, group = %config.group, out = %config.out.display(), "consuming");

    let store = Store {
        out: config.out.clone(),
        topic: config.topic.clone(),
    };
    let committer = Arc::clone(&consumer);
    let topic = config.topic.clone();
    let writer = Writer::start(
        store.clone(),
        writer_handle,
        Box::new(move |partition, next| commit(&committer, &topic, partition, next)),
    )?;
    let mut batches: HashMap<i32, PartitionBatch> = HashMap::new();
    while !shutdown.is_cancelled() {
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                metrics::counter!(CONSUMED_TOTAL).increment(1);
                let partition = message.partition();
                let batch = match batches.entry(partition) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        let state = store
                            .state_paths(partition)
                            .recover()
                            .with_context(|| format!("recovering partition {partition}"))?;
                        tracing::info!(
                            partition,
                            next_offset = state.next_offset,
                            machines = state.high_water.len(),
                            "partition state loaded"
                        );
                        entry.insert(PartitionBatch::new(partition, state))
                    }
                };
                count(batch.add(message.offset(), message.payload()));
            }
            Some(Err(error)) => tracing::warn!(%error, "consumer error"),
            None => {}
        }
        drop_revoked(&consumer, &mut batches);
        for batch in batches.values_mut() {
            if batch.is_due(config.flush_interval, config.max_batch_rows) {
                writer.submit(batch.hand_over());
            }
        }
    }
    // Shutdown: stop consuming, write what is held, commit.
    for batch in batches.values_mut() {
        if batch.offsets.is_some() {
            writer.submit(batch.hand_over());
        }
    }
    writer.finish();
    tracing::info!("consumer stopped");
    Ok(())
}

fn check_topic(consumer: &BaseConsumer<GroupContext>, config: &Config) -> anyhow::Result<()> {
    let metadata = consumer
        .fetch_metadata(Some(&config.topic), Duration::from_secs(10))
        .with_context(|| {
            format!(
                "cannot reach Kafka at {} (start it with scripts/kafka start)",
                config.brokers
            )
        })?;
    match metadata.topics().iter().find(|t| t.name() == config.topic) {
        Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => {
            tracing::info!(topic = %config.topic, partitions = topic.partitions().len(), "topic found");
            Ok(())
        }
        _ => bail!(
            "topic {:?} does not exist on {}: create it first",
            config.topic,
            config.brokers
        ),
    }
}

fn count(outcome: Outcome) {
    match outcome {
        Outcome::Added => {}
        Outcome::Replayed => metrics::counter!(REPLAYED_SKIPPED_TOTAL).increment(1),
        Outcome::Duplicate => metrics::counter!(DUPLICATES_DROPPED_TOTAL).increment(1),
        Outcome::DeadLettered(reason) => {
            metrics::counter!(DEAD_LETTERED_TOTAL, "reason" => reason).increment(1)
        }
    }
}

fn drop_revoked(consumer: &BaseConsumer<GroupContext>, batches: &mut HashMap<i32, PartitionBatch>) {
    let revoked = match consumer.context().revoked.lock() {
        Ok(mut revoked) => std::mem::take(&mut *revoked),
        Err(_) => return,
    };
    for partition in revoked {
        if let Some(batch) = batches.remove(&partition)
            && let Some((first, last)) = batch.offsets
        {
            tracing::info!(
                partition,
                first,
                last,
                "partition revoked; its unwritten batch is left to the next owner"
            );
        }
    }
}

/// After a batch is durable: the offset goes to Kafka, a hint for lag and a fast restart (the
/// stored state is what counts).
fn commit(consumer: &BaseConsumer<GroupContext>, topic: &str, partition: i32, next_offset: i64) {
    let mut offsets = TopicPartitionList::new();
    if offsets
        .add_partition_offset(topic, partition, Offset::Offset(next_offset))
        .is_ok()
        && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
    {
        tracing::warn!(%error, partition, "offset commit failed; the stored state still holds the position");
    }
}
