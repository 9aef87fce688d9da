//! The warm shipper's Kafka producer: idempotent, acks=all, messages that never expire, delivery
//! reports collected for the shipper thread to read (its acknowledgement window), and
//! librdkafka's own log lines forwarded into the agent's log.

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use std::sync::Mutex;
use std::time::Duration;

/// Says at start whether the topic is there; either way the shipper runs, and what it cannot
/// send yet waits on disk.
pub(super) fn check_topic(producer: &BaseProducer<Acks>, brokers: &str, topic: &str) {
    match producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
    {
        Ok(metadata) => {
            let found = metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
            if !found {
                tracing::error!(
                    topic,
                    brokers,
                    "the warm-path topic does not exist; events wait on disk until it is created"
                );
            }
        }
        Err(error) => {
            tracing::warn!(brokers, %error, "Kafka does not answer; events wait on disk until it does")
        }
    }
}

/// A producer to `brokers` named after `machine`.
pub(super) fn producer(brokers: &str, machine: &str) -> anyhow::Result<BaseProducer<Acks>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", format!("imds-agent-{machine}"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "262144")
        // Never expire: an outage of any length is waited out, the backlog stays on disk.
        .set("message.timeout.ms", "0")
        // After an outage, try the broker again at least every 2 s (librdkafka's default backs
        // off to 10 s), so the backlog starts draining soon after the broker is back.
        .set("reconnect.backoff.max.ms", "2000")
        .create_with_context(Acks::default())?)
}

/// Delivery reports, collected on the shipper thread by `poll`.
#[derive(Default)]
pub(super) struct Acks(pub(super) Mutex<Vec<(usize, Result<(), KafkaError>)>>);

impl ClientContext for Acks {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_librdkafka_log(level, facility, message);
    }
}

/// librdkafka's own log lines, as tracing events of target `librdkafka`.
fn forward_librdkafka_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, message_no: usize) {
        let outcome = result
            .as_ref()
            .map(|_| ())
            .map_err(|(error, _)| error.clone());
        if let Ok(mut acks) = self.0.lock() {
            acks.push((message_no, outcome));
        }
    }
}
