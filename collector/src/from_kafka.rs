//! The consumer loop: a member of the consumer group, on a thread of its own. Messages go into
//! per-partition batches (`batch.rs`); when one is due, every partition's batch goes to the
//! writer thread as one flush (`writer.rs` -> `to_delta.rs`: one Delta commit), and only once it
//! is committed are the offsets committed to Kafka, so a crash at any point replays, never skips.
//!
//! The table, not Kafka, says where each partition continues: on assignment the partition's
//! offset is set from its application transaction in the table (Kafka's committed offset is only
//! used where the table holds none). When a partition is taken away in a rebalance, the callback
//! first waits for the writer to finish what it holds, then the partition's unwritten batch is
//! dropped: nothing of it was committed, so its next owner consumes it again.

use crate::batch::{Outcome, PartitionBatch};
use crate::config::Config;
use crate::metrics::{
    CONSUMED_TOTAL, CONSUMER_LAG, DEAD_LETTERED_TOTAL, KAFKA_ERRORS_TOTAL, REPLAYED_SKIPPED_TOTAL,
};
use crate::to_delta::TableWriter;
use crate::writer::{Job, Writer, WriterHandle};
use anyhow::bail;
use deltalake::DeltaTable;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(100);

/// Rebalance and statistics callbacks, run inside `poll` on the consumer thread.
struct GroupContext {
    revoked: Mutex<Vec<i32>>,
    /// Partitions assigned, with the last offset the table holds for each.
    assigned: Mutex<Vec<(i32, Option<i64>)>>,
    /// Partitions whose flush was fenced: to be sought again from the table.
    fenced: Arc<Mutex<Vec<i32>>>,
    writer: WriterHandle,
    progress: TableProgress,
}

/// Reads the partitions' progress from the table (its own handle, refreshed on every read).
#[derive(Clone)]
struct TableProgress {
    table: Arc<Mutex<DeltaTable>>,
    runtime: Handle,
    group: String,
    topic: String,
    /// Stops the retries at shutdown.
    shutdown: CancellationToken,
}

impl TableProgress {
    /// The last offset the table holds for `partition`, retried until it can be read (at
    /// shutdown: `None`, so the assignment falls back on Kafka's committed offset; nothing is
    /// consumed after that, and a commit built on it would be fenced anyway).
    fn version(&self, partition: i32) -> Option<i64> {
        let app_id = warm_table::partition_app_id(&self.group, &self.topic, partition);
        let mut tries = 0u32;
        loop {
            let mut table = match self.table.lock() {
                Ok(table) => table.clone(),
                Err(_) => return None,
            };
            let result = self.runtime.block_on(async {
                table.update_incremental(None).await?;
                let version = warm_table::stored_version(&table, &app_id).await?;
                anyhow::Ok((version, table))
            });
            let result = result.map(|(version, updated)| {
                if let Ok(mut table) = self.table.lock() {
                    *table = updated;
                }
                version
            });
            match result {
                Ok(version) => return version,
                Err(error) => {
                    tries += 1;
                    tracing::error!(partition, tries, error = %format!("{error:#}"), "cannot read the partition's progress from the table; retrying");
                    if self.shutdown.is_cancelled() {
                        return None;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
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

    /// Errors of the connection itself (librdkafka retries them): a refused login, certificate
    /// or ACL is said in the log and counted.
    fn error(&self, error: KafkaError, reason: &str) {
        count_kafka_error(&error, reason);
    }
}

/// A client whose errors are logged and counted (the start-up check's).
struct ErrorsCounted;

impl ClientContext for ErrorsCounted {
    fn error(&self, error: KafkaError, reason: &str) {
        count_kafka_error(&error, reason);
    }
}

impl ConsumerContext for ErrorsCounted {}

/// Logs and counts an error Kafka reported to the consumer, by kind: a refused password or
/// certificate, an ACL denial.
fn count_kafka_error(error: &KafkaError, reason: &str) {
    service::kafka_security::report_error(KAFKA_ERRORS_TOTAL, "collector", error, reason);
}

impl ConsumerContext for GroupContext {
    /// The eager protocol's rebalance (librdkafka's default assignors), with the assignment's
    /// offsets taken from the table before the partitions are assigned.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assigned = Vec::new();
                for element in partitions.elements() {
                    let partition = element.partition();
                    let version = self.progress.version(partition);
                    tracing::info!(partition, stored_offset = ?version, "partition assigned");
                    assigned.push((partition, version));
                }
                for (partition, version) in &assigned {
                    if let Some(last) = version {
                        let _ = partitions.set_partition_offset(
                            &self.progress.topic,
                            *partition,
                            Offset::Offset(last + 1),
                        );
                    }
                }
                if let Ok(mut list) = self.assigned.lock() {
                    list.extend(assigned);
                }
                consumer.assign(partitions)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Before the partitions go: everything handed to the writer is committed.
                self.writer.wait_idle();
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(partitions.elements().iter().map(|e| e.partition()));
                }
                consumer.unassign()
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "applying a rebalance failed");
        }
    }
}

/// Consumes until `shutdown`, then writes what it holds and commits.
pub(crate) fn consume(
    config: &Config,
    runtime: Handle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    check_topic(config)?;
    let url = warm_table::location(&config.out)?;
    let table = runtime.block_on(warm_table::open_or_create(&url))?;
    let progress = TableProgress {
        table: Arc::new(Mutex::new(table.clone())),
        runtime: runtime.clone(),
        group: config.group.clone(),
        topic: config.topic.clone(),
        shutdown: shutdown.clone(),
    };
    let writer_handle = WriterHandle::default();
    let fenced = Arc::new(Mutex::new(Vec::new()));
    let mut client = ClientConfig::new();
    config.security.apply(&mut client)?;
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
            // The eager protocol: `GroupContext::rebalance` assigns with the table's offsets.
            .set("partition.assignment.strategy", "range,roundrobin")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .create_with_context(GroupContext {
                revoked: Mutex::default(),
                assigned: Mutex::default(),
                fenced: Arc::clone(&fenced),
                writer: writer_handle.clone(),
                progress: progress.clone(),
            })?,
    );
    consumer.subscribe(&[&config.topic])?;
    tracing::info!(brokers = %config.brokers, topic = %config.topic, group = %config.group, table = %url, "consuming");

    let committer = Arc::clone(&consumer);
    let topic = config.topic.clone();
    let fenced_sink = Arc::clone(&fenced);
    let writer = Writer::start(
        TableWriter::new(table, runtime, &config.group, &config.topic)
            .with_commit_delay(config.fault_commit_delay),
        writer_handle,
        Box::new(move |partition, next| commit(&committer, &topic, partition, next)),
        Box::new(move |partitions| {
            if let Ok(mut list) = fenced_sink.lock() {
                list.extend(partitions);
            }
        }),
        shutdown.clone(),
    )?;
    let mut batches: HashMap<i32, PartitionBatch> = HashMap::new();
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(POLL);
        take_assignments(&consumer, &writer, &mut batches);
        drop_revoked(&consumer, &mut batches);
        seek_fenced(&consumer, config, &writer, &mut batches);
        match polled {
            Some(Ok(message)) => {
                metrics::counter!(CONSUMED_TOTAL).increment(1);
                let partition = message.partition();
                let Some(batch) = batches.get_mut(&partition) else {
                    tracing::warn!(
                        partition,
                        offset = message.offset(),
                        "message of a partition not assigned here; left to its owner"
                    );
                    continue;
                };
                count(batch.add(message.offset(), message.payload()));
            }
            // Already logged and counted by `GroupContext::error` (rdkafka hands the event to
            // the context before `poll` returns it).
            Some(Err(error)) => tracing::debug!(%error, "consumer error"),
            None => {}
        }
        let due = batches
            .values()
            .any(|b| b.is_due(config.flush_interval, config.max_batch_rows));
        if due {
            flush(&writer, &mut batches);
        }
    }
    // Shutdown: stop consuming, write what is held, commit.
    flush(&writer, &mut batches);
    let written = writer.finish();
    tracing::info!("consumer stopped");
    written
}

/// Hands every partition's batch to the writer as one flush.
fn flush(writer: &Writer, batches: &mut HashMap<i32, PartitionBatch>) {
    let ready: Vec<PartitionBatch> = batches
        .values_mut()
        .filter(|b| b.offsets.is_some())
        .map(PartitionBatch::hand_over)
        .collect();
    if !ready.is_empty() {
        writer.submit(Job::Flush(ready));
    }
}

/// New partitions start from the offset after the table's.
fn take_assignments(
    consumer: &BaseConsumer<GroupContext>,
    writer: &Writer,
    batches: &mut HashMap<i32, PartitionBatch>,
) {
    let assigned = match consumer.context().assigned.lock() {
        Ok(mut assigned) => std::mem::take(&mut *assigned),
        Err(_) => return,
    };
    for (partition, version) in assigned {
        batches.insert(
            partition,
            PartitionBatch::new(partition, version.map_or(0, |v| v + 1)),
        );
        writer.submit(Job::Assigned { partition, version });
    }
}

/// A fenced flush's partitions, if still assigned here, continue from what the table holds now.
fn seek_fenced(
    consumer: &BaseConsumer<GroupContext>,
    config: &Config,
    writer: &Writer,
    batches: &mut HashMap<i32, PartitionBatch>,
) {
    let any = consumer
        .context()
        .fenced
        .lock()
        .is_ok_and(|fenced| !fenced.is_empty());
    if !any {
        return;
    }
    // Flushes still queued were built on the stale position: let them fail first.
    writer.wait_idle();
    let mut fenced = match consumer.context().fenced.lock() {
        Ok(mut fenced) => std::mem::take(&mut *fenced),
        Err(_) => return,
    };
    fenced.sort_unstable();
    fenced.dedup();
    for partition in fenced {
        if !batches.contains_key(&partition) {
            continue;
        }
        let version = consumer.context().progress.version(partition);
        let offset = version.map_or(Offset::Beginning, |v| Offset::Offset(v + 1));
        if let Err(error) = consumer.seek(&config.topic, partition, offset, Duration::from_secs(10))
        {
            tracing::error!(partition, %error, "seeking a fenced partition failed; it continues where it was");
            continue;
        }
        tracing::warn!(
            partition,
            ?offset,
            "fenced partition sought again from the table"
        );
        batches.insert(
            partition,
            PartitionBatch::new(partition, version.map_or(0, |v| v + 1)),
        );
        writer.submit(Job::Assigned { partition, version });
    }
}

/// Kafka and the topic must exist before anything is created in the store.
fn check_topic(config: &Config) -> anyhow::Result<()> {
    config
        .security
        .warn_if_exposed(&config.brokers, "collector");
    let mut client = ClientConfig::new();
    config.security.apply(&mut client)?;
    let consumer: BaseConsumer<ErrorsCounted> = client
        .set("bootstrap.servers", &config.brokers)
        .create_with_context(ErrorsCounted)?;
    let metadata = match consumer.fetch_metadata(Some(&config.topic), Duration::from_secs(10)) {
        Ok(metadata) => metadata,
        Err(error) => {
            // The reason (a refused login or certificate) is in the client's error events, which
            // only a poll hands to `ErrorsCounted`: logged and counted before the exit.
            for _ in 0..10 {
                let _ = consumer.poll(Duration::from_millis(20));
            }
            return Err(anyhow::Error::new(error).context(format!(
                "cannot reach Kafka at {}, or it refused this client (the error above says which; a local broker starts with scripts/kafka start)",
                config.brokers
            )));
        }
    };
    match metadata.topics().iter().find(|t| t.name() == config.topic) {
        Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => {
            tracing::info!(topic = %config.topic, partitions = topic.partitions().len(), "topic found");
            Ok(())
        }
        Some(topic)
            if topic.error().is_some_and(|e| {
                RDKafkaErrorCode::from(e) == RDKafkaErrorCode::TopicAuthorizationFailed
            }) =>
        {
            metrics::counter!(KAFKA_ERRORS_TOTAL, "kind" => "authorization").increment(1);
            bail!(
                "Kafka's ACLs do not let {} describe topic {:?}: the collector's principal needs Read and Describe on it",
                config.security.principal().unwrap_or("this client"),
                config.topic
            )
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

/// After a commit: the offset goes to Kafka, a hint for lag and for partitions the table holds
/// nothing of yet (the table's transaction is what counts).
fn commit(consumer: &BaseConsumer<GroupContext>, topic: &str, partition: i32, next_offset: i64) {
    let mut offsets = TopicPartitionList::new();
    if offsets
        .add_partition_offset(topic, partition, Offset::Offset(next_offset))
        .is_ok()
        && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
    {
        tracing::warn!(%error, partition, "offset commit failed; the table still holds the position");
    }
}
