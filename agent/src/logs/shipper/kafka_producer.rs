//! The warm shipper's Kafka producer: idempotent, acks=all, messages that never expire, delivery
//! reports collected for the shipper thread to read (its acknowledgement window), librdkafka's
//! own log lines forwarded into the agent's log, and the errors Kafka reports (a refused
//! password or certificate, an ACL) logged and counted by kind.

use crate::metrics::SHIPPER_KAFKA_ERRORS_TOTAL;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use service::kafka_security::{KafkaSecurity, report_error};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// A producer to `brokers` named after `machine`, authenticated as `security` says (its password
/// file read now).
pub(super) fn producer(
    brokers: &str,
    machine: &str,
    security: &KafkaSecurity,
) -> anyhow::Result<BaseProducer<Acks>> {
    let mut client = ClientConfig::new();
    security.apply(&mut client)?;
    Ok(client
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

/// Delivery reports, collected on the shipper thread by `poll`; and the last error event seen.
#[derive(Default)]
pub(super) struct Acks(
    pub(super) Mutex<Vec<(usize, Result<(), KafkaError>)>>,
    Mutex<Option<(String, Instant)>>,
);

impl ClientContext for Acks {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_librdkafka_log(level, facility, message);
    }

    /// Errors of the connection itself (librdkafka retries them on its own): a refused password
    /// or certificate is said in the log and counted, so an operator sees why the backlog grows.
    /// rdkafka 0.39's `BaseProducer::poll` hands each error event to this callback twice (once
    /// in `Client::poll_event`, once in its own loop): the second, identical call is skipped.
    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error} {reason}");
        if let Ok(mut last) = self.1.lock() {
            if last
                .as_ref()
                .is_some_and(|(seen, at)| *seen == text && at.elapsed() < REPEAT_WINDOW)
            {
                return;
            }
            *last = Some((text, Instant::now()));
        }
        count_kafka_error(&error, reason);
    }
}

/// Logs and counts an error Kafka reported to the shipper, by kind (events wait on disk).
pub(super) fn count_kafka_error(error: &KafkaError, reason: &str) {
    report_error(SHIPPER_KAFKA_ERRORS_TOTAL, "shipper", error, reason);
}

/// Within this, an error event identical to the last one is the same event seen again.
const REPEAT_WINDOW: Duration = Duration::from_millis(50);

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
