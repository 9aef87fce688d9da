//! The warm shipper: tails the hourly local log files from a durable checkpoint and produces every
//! INFO-and-above line to Kafka, keyed by machine, on a thread of its own (a metadata request never
//! waits for it).
//!
//! Guarantee: at least once. The checkpoint advances only over the contiguous prefix of lines Kafka
//! has acknowledged (idempotent producer, acks=all), so a crash, a restart or a Kafka outage of any
//! length resends from the checkpoint and loses nothing still on disk. Messages never expire
//! (`message.timeout.ms=0`): other agents lose data exactly there, after librdkafka's default
//! 5 minutes. Resent lines carry their original `seq`, which the collector uses to drop them.
//! Lines below INFO are skipped (they stay in the cold path); lines that are not records (a line
//! cut short by a crash) are skipped and counted.
//!
//! Reading whole lines is `tail.rs`'s job and the acknowledged prefix `ack_window.rs`'s; this file
//! holds the loop that joins them with the producer (`kafka_producer.rs`), the checkpoint's storage and the backlog gauge.

mod ack_window;
pub(crate) mod checkpoint;
mod kafka_producer;
pub(crate) mod settings;
mod tail;

use super::local_files;
use crate::metrics::{
    SHIPPER_BACKLOG_BYTES, SHIPPER_DELIVERED_EVENTS_TOTAL, SHIPPER_DROPPED_EVENTS_TOTAL,
    SHIPPER_LAST_DELIVERY_SECONDS, SHIPPER_LOST_FILES_TOTAL, SHIPPER_PENDING_EVENTS,
    SHIPPER_SEND_ERRORS_TOTAL, SHIPPER_SKIPPED_LINES_TOTAL,
};
use ack_window::AckWindow;
use checkpoint::Checkpoint;
use kafka_producer::{Acks, check_topic, count_kafka_error, producer};
use logrecord::Level;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use service::kafka_security::{KafkaSecurity, error_kind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tail::Tail;
use tokio_util::sync::CancellationToken;

/// Sent but unacknowledged messages kept at most; past it the shipper waits for Kafka.
const MAX_PENDING: usize = 200_000;
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
/// How often the credential files are compared with those the producer was made with.
const CREDENTIALS_EVERY: Duration = Duration::from_secs(1);
const IDLE_POLL: Duration = Duration::from_millis(50);
/// With nothing logged and nothing awaiting Kafka, the wait doubles up to this: an idle host's
/// agent wakes a few times a second, and its next event ships at most this late.
const IDLE_POLL_MAX: Duration = Duration::from_millis(400);
/// Back-off after a failed delivery (the project's one policy, `service::retry`).
const FIRST_RETRY_BACKOFF: Duration = Duration::from_secs(1);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
const SHUTDOWN_QUIET: Duration = Duration::from_millis(100);

/// What the shipper needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ShipperConfig {
    pub brokers: String,
    pub topic: String,
    /// How the producer authenticates; its files are watched for replacement.
    pub security: KafkaSecurity,
    /// Message key: one machine's events stay in one partition, in order.
    pub machine: String,
    pub log_dir: PathBuf,
    pub checkpoint: PathBuf,
}

/// Starts the shipper thread; it stops (flushing what it can and storing its checkpoint) when
/// `shutdown` is cancelled.
pub(crate) fn start(
    config: ShipperConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let producer = producer(&config.brokers, &config.machine, &config.security)?;
    let start = Checkpoint::load(&config.checkpoint)?;
    // Counters exist from the start, at 0: a dashboard or alert sees "no errors", not "no data".
    for counter in [
        SHIPPER_DELIVERED_EVENTS_TOTAL,
        SHIPPER_SEND_ERRORS_TOTAL,
        SHIPPER_SKIPPED_LINES_TOTAL,
        SHIPPER_LOST_FILES_TOTAL,
    ] {
        metrics::counter!(counter).increment(0);
    }
    let handle = std::thread::Builder::new().name("agent-shipper".into()).spawn(move || {
        tracing::info!(brokers = %config.brokers, topic = %config.topic, security_protocol = ?config.security.protocol(), user = config.security.principal(), checkpoint = ?start, "shipper started");
        config.security.warn_if_exposed(&config.brokers, "agent shipper");
        let mut shipper = Shipper::new(config, producer, start);
        check_topic(&shipper.producer, &shipper.config.brokers, &shipper.config.topic);
        shipper.run(&shutdown);
        tracing::info!("shipper stopped");
    })?;
    Ok(handle)
}

struct Shipper {
    config: ShipperConfig,
    producer: BaseProducer<Acks>,
    /// The file being read, `None` before there is one.
    tail: Option<Tail>,
    window: AckWindow,
    /// Everything before this position is acknowledged (or needed no sending).
    acked_pos: Option<Checkpoint>,
    stored_pos: Option<Checkpoint>,
    last_store: Instant,
    last_backlog: Instant,
    /// Delays before the next resends; a new series after each delivery.
    retry_backoff: backon::ExponentialBackoff,
    /// The credential files' fingerprint the producer was made with.
    credentials: u64,
    /// When the credential files were last compared with it.
    credentials_checked: Instant,
}

#[derive(serde::Deserialize)]
struct LevelOnly {
    level: Level,
}

impl Shipper {
    fn new(config: ShipperConfig, producer: BaseProducer<Acks>, start: Option<Checkpoint>) -> Self {
        let mut shipper = Shipper {
            config,
            producer,
            tail: None,
            window: AckWindow::default(),
            acked_pos: start.clone(),
            stored_pos: start,
            last_store: Instant::now(),
            last_backlog: Instant::now() - BACKLOG_EVERY,
            retry_backoff: new_backoff(),
            credentials: 0,
            credentials_checked: Instant::now(),
        };
        shipper.credentials = shipper.config.security.fingerprint();
        shipper.rewind();
        shipper
    }

    fn run(&mut self, shutdown: &CancellationToken) {
        let mut idle_wait = IDLE_POLL;
        while !shutdown.is_cancelled() {
            self.producer.poll(Duration::ZERO);
            if let Err(error) = self.collect_acks() {
                self.recover(&error, shutdown);
                continue;
            }
            self.store_checkpoint(false);
            self.report_backlog();
            self.follow_credentials();
            let progressed = if self.window.len() < MAX_PENDING {
                self.ship_some()
            } else {
                Ok(false)
            };
            match progressed {
                Ok(true) => idle_wait = IDLE_POLL,
                // Acknowledgements awaited: look again soon, so the checkpoint follows them.
                Ok(false) if !self.window.is_empty() => wait_then_poll(&self.producer, IDLE_POLL),
                Ok(false) => {
                    wait_then_poll(&self.producer, idle_wait);
                    idle_wait = (idle_wait * 2).min(IDLE_POLL_MAX);
                }
                Err(error) => self.recover(&error, shutdown),
            }
        }
        // Shutdown: send what was logged up to now (the shutdown events included), give Kafka a
        // moment to acknowledge, keep what it did; the rest waits on disk for the next start.
        // The log writer thread may still hold the last lines for a moment: read until the file
        // has been quiet for a while.
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline && self.window.len() < MAX_PENDING {
            match self.ship_some() {
                Ok(true) => quiet_since = Instant::now(),
                Ok(false) if quiet_since.elapsed() >= SHUTDOWN_QUIET => break,
                Ok(false) => wait_then_poll(&self.producer, Duration::from_millis(10)),
                Err(_) => break,
            }
            self.producer.poll(Duration::ZERO);
        }
        let _ = self
            .producer
            .flush(deadline.saturating_duration_since(Instant::now()));
        let _ = self.collect_acks();
        self.store_checkpoint(true);
    }

    /// Processes delivery reports and advances the acknowledged position over the contiguous
    /// prefix of delivered messages.
    fn collect_acks(&mut self) -> Result<(), KafkaError> {
        let reports = std::mem::take(
            &mut *self
                .producer
                .context()
                .0
                .lock()
                .map_err(|_| KafkaError::Canceled)?,
        );
        let mut failure = None;
        for (message_no, outcome) in reports {
            match outcome {
                Ok(()) => self.window.acknowledged(message_no),
                // A line Kafka will never take: skipping it is the only way forward. Loud.
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                    metrics::counter!(SHIPPER_DROPPED_EVENTS_TOTAL, "reason" => "too_large")
                        .increment(1);
                    tracing::error!(
                        message_no,
                        "log line larger than the broker accepts; it stays in the cold path only"
                    );
                    self.window.acknowledged(message_no);
                }
                Err(error) => failure = Some(error),
            }
        }
        let (delivered, position) = self.window.advance();
        if let Some((file, offset)) = position {
            self.acked_pos = Some(Checkpoint {
                file: file.to_string(),
                offset,
            });
        }
        if delivered > 0 {
            tracing::debug!(
                delivered,
                pending = self.window.len(),
                "Kafka acknowledged events"
            );
            metrics::counter!(SHIPPER_DELIVERED_EVENTS_TOTAL).increment(delivered);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            metrics::gauge!(SHIPPER_LAST_DELIVERY_SECONDS).set(now.as_secs_f64());
            self.retry_backoff = new_backoff();
        }
        if self.window.is_empty()
            && let Some(tail) = &self.tail
        {
            // Lines that needed no sending (below INFO, unreadable) are done too.
            self.acked_pos = Some(Checkpoint {
                file: tail.name().to_string(),
                offset: tail.consumed(),
            });
        }
        metrics::gauge!(SHIPPER_PENDING_EVENTS).set(self.window.len() as f64);
        failure.map_or(Ok(()), Err)
    }

    /// A replaced password, key or certificate file takes effect without a restart: a producer
    /// made with the old ones may never connect (librdkafka retries a refused login forever, and
    /// messages never expire here), so a new one resends from the checkpoint. The collector
    /// drops what arrives twice.
    fn follow_credentials(&mut self) {
        if self.credentials_checked.elapsed() < CREDENTIALS_EVERY {
            return;
        }
        self.credentials_checked = Instant::now();
        if self.config.security.fingerprint() != self.credentials {
            tracing::info!(
                pending = self.window.len(),
                "Kafka credentials changed; reconnecting and resending from the checkpoint"
            );
            if self.replace_producer() {
                self.resend_from_checkpoint();
            }
        }
    }

    /// After a failed delivery: count it, wait, and resend everything after the checkpoint with a
    /// fresh producer. The collector drops what arrives twice.
    fn recover(&mut self, error: &KafkaError, shutdown: &CancellationToken) {
        metrics::counter!(SHIPPER_SEND_ERRORS_TOTAL).increment(1);
        if error_kind(error, "") != "other" {
            count_kafka_error(error, "delivery failed");
        }
        let wait = self.retry_backoff.next().unwrap_or(MAX_RETRY_BACKOFF);
        tracing::error!(%error, retry_in_ms = wait.as_millis() as u64, "shipping to Kafka failed; resending from the checkpoint");
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !shutdown.is_cancelled() {
            std::thread::sleep(IDLE_POLL);
        }
        self.replace_producer();
        self.resend_from_checkpoint();
    }

    /// A new producer with the credential files as they are now; `false` (the old one kept) when
    /// one cannot be made, e.g. from a half-written or too-open file.
    fn replace_producer(&mut self) -> bool {
        let fingerprint = self.config.security.fingerprint();
        match producer(
            &self.config.brokers,
            &self.config.machine,
            &self.config.security,
        ) {
            Ok(producer) => {
                self.producer = producer;
                self.credentials = fingerprint;
                true
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot create a Kafka producer");
                false
            }
        }
    }

    /// Forgets what was sent and not acknowledged and reads again from the checkpoint.
    fn resend_from_checkpoint(&mut self) {
        self.window.clear();
        self.rewind();
    }

    /// Positions the reader at the acknowledged position (or the oldest file when there is none).
    fn rewind(&mut self) {
        self.tail = None;
        let files = local_files::list(&self.config.log_dir).unwrap_or_default();
        let start = match &self.acked_pos {
            Some(position) if files.iter().any(|f| f.name == position.file) => {
                Some((position.file.clone(), position.offset))
            }
            Some(position) => {
                // Retention removed a file before it was shipped: say so, go on with the next one.
                metrics::counter!(SHIPPER_LOST_FILES_TOTAL).increment(1);
                tracing::error!(file = %position.file, offset = position.offset, "log file removed before it was shipped; its remaining events are lost to the warm path");
                files
                    .iter()
                    .find(|f| f.name > position.file)
                    .map(|f| (f.name.clone(), 0))
            }
            None => files.first().map(|f| (f.name.clone(), 0)),
        };
        if let Some((name, offset)) = start {
            self.open(&name, offset);
        }
    }

    fn open(&mut self, name: &str, offset: u64) {
        match Tail::open(&self.config.log_dir, name, offset) {
            Ok(tail) => {
                self.tail = Some(tail);
                if self.window.is_empty() {
                    self.acked_pos = Some(Checkpoint {
                        file: name.to_owned(),
                        offset,
                    });
                }
            }
            Err(error) => {
                tracing::warn!(file = %self.config.log_dir.join(name).display(), %error, "cannot open log file for shipping")
            }
        }
    }

    /// Reads what is new and sends its INFO+ lines. `Ok(false)` when there was nothing to do.
    fn ship_some(&mut self) -> Result<bool, KafkaError> {
        let Some(tail) = &mut self.tail else {
            self.rewind();
            return Ok(self.tail.is_some());
        };
        let name = Arc::clone(tail.name());
        // Listed before reading: the writer never returns to a file once it has started the next,
        // so if a newer file exists now and the read below finds nothing, this one is complete.
        let newer = local_files::list(&self.config.log_dir)
            .unwrap_or_default()
            .into_iter()
            .find(|f| f.name.as_str() > &*name);
        let (producer, window, config) = (&self.producer, &mut self.window, &self.config);
        let read = tail.read_lines(|line, end| {
            send_line(producer, window, config, (Arc::clone(&name), end), line)
        })?;
        if read > 0 {
            return Ok(true);
        }
        let Some(newer) = newer else { return Ok(false) };
        if tail.has_partial_line() {
            // A last line cut short by a crash: it will never be completed.
            metrics::counter!(SHIPPER_SKIPPED_LINES_TOTAL).increment(1);
        }
        self.open(&newer.name, 0);
        Ok(true)
    }

    fn store_checkpoint(&mut self, force: bool) {
        if self.acked_pos == self.stored_pos
            || (!force && self.last_store.elapsed() < CHECKPOINT_EVERY)
        {
            return;
        }
        let Some(position) = &self.acked_pos else {
            return;
        };
        match position.store(&self.config.checkpoint) {
            Ok(()) => {
                self.stored_pos = Some(position.clone());
                self.last_store = Instant::now();
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot store the shipper checkpoint")
            }
        }
    }

    /// Bytes of the local log not yet acknowledged by Kafka.
    fn report_backlog(&mut self) {
        if self.last_backlog.elapsed() < BACKLOG_EVERY {
            return;
        }
        self.last_backlog = Instant::now();
        let files = local_files::list(&self.config.log_dir).unwrap_or_default();
        let backlog: u64 = files
            .iter()
            .filter_map(|f| {
                let len = std::fs::metadata(&f.path).ok()?.len();
                match &self.acked_pos {
                    Some(p) if f.name < p.file => None,
                    Some(p) if f.name == p.file => Some(len.saturating_sub(p.offset)),
                    _ => Some(len),
                }
            })
            .sum();
        metrics::gauge!(SHIPPER_BACKLOG_BYTES).set(backlog as f64);
    }
}

fn new_backoff() -> backon::ExponentialBackoff {
    service::retry::backoff(FIRST_RETRY_BACKOFF, MAX_RETRY_BACKOFF)
}

/// Sends one line ending at `position` if it is a record at INFO or above; records it in the
/// window. Other lines need no sending (an unreadable one is counted).
fn send_line(
    producer: &BaseProducer<Acks>,
    window: &mut AckWindow,
    config: &ShipperConfig,
    position: (Arc<str>, u64),
    line: &[u8],
) -> Result<(), KafkaError> {
    match serde_json::from_slice::<LevelOnly>(line) {
        Ok(record) if record.level.is_warm() => {}
        Ok(_) => return Ok(()),
        Err(_) => {
            metrics::counter!(SHIPPER_SKIPPED_LINES_TOTAL).increment(1);
            return Ok(());
        }
    }
    let mut record = BaseRecord::with_opaque_to(&config.topic, window.next_message_no())
        .key(config.machine.as_bytes())
        .payload(line);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                // librdkafka's queue is full: let it deliver, then try again.
                record = returned;
                wait_then_poll(producer, Duration::from_millis(10));
            }
            Err((error, _)) => return Err(error),
        }
    }
    window.sent(position);
    Ok(())
}

/// Waits, then serves librdkafka's delivery reports without blocking. Not `poll(wait)`: rdkafka
/// 0.39 polls in whole milliseconds until its deadline, so the last fraction of a millisecond of
/// every timed poll is a busy loop; at 20 idle polls a second that was 1.8% of a core per agent
/// (measured with perf: `Deadline::elapsed` and `clock_gettime`), on every host of the fleet.
fn wait_then_poll(producer: &BaseProducer<Acks>, wait: Duration) {
    std::thread::sleep(wait);
    producer.poll(Duration::ZERO);
}
