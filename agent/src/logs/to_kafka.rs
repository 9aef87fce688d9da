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

use super::checkpoint::Checkpoint;
use super::local_files;
use crate::metrics::{
    SHIPPER_BACKLOG_BYTES, SHIPPER_DELIVERED_EVENTS_TOTAL, SHIPPER_DROPPED_EVENTS_TOTAL,
    SHIPPER_LAST_DELIVERY_SECONDS, SHIPPER_LOST_FILES_TOTAL, SHIPPER_PENDING_EVENTS,
    SHIPPER_SEND_ERRORS_TOTAL, SHIPPER_SKIPPED_LINES_TOTAL,
};
use logrecord::Level;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Lines read per pass.
const READ_CHUNK: usize = 1024 * 1024;
/// Sent but unacknowledged messages kept at most; past it the shipper waits for Kafka.
const MAX_PENDING: usize = 200_000;
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
const IDLE_POLL: Duration = Duration::from_millis(50);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
const SHUTDOWN_QUIET: Duration = Duration::from_millis(100);

/// What the shipper needs to know.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    pub brokers: String,
    pub topic: String,
    /// Message key: one machine's events stay in one partition, in order.
    pub machine: String,
    pub log_dir: PathBuf,
    pub checkpoint: PathBuf,
}

/// Starts the shipper thread; it stops (flushing what it can and storing its checkpoint) when
/// `shutdown` is cancelled.
pub fn start(
    config: ShipperConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let producer = producer(&config)?;
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
        tracing::info!(brokers = %config.brokers, topic = %config.topic, checkpoint = ?start, "shipper started");
        let mut shipper = Shipper::new(config, producer, start);
        check_topic(&shipper.producer, &shipper.config);
        shipper.run(&shutdown);
        tracing::info!("shipper stopped");
    })?;
    Ok(handle)
}

/// Says at start whether the topic is there; either way the shipper runs, and what it cannot
/// send yet waits on disk.
fn check_topic(producer: &BaseProducer<Acks>, config: &ShipperConfig) {
    match producer
        .client()
        .fetch_metadata(Some(&config.topic), Duration::from_secs(5))
    {
        Ok(metadata) => {
            let found = metadata.topics().iter().any(|t| {
                t.name() == config.topic && t.error().is_none() && !t.partitions().is_empty()
            });
            if !found {
                tracing::error!(topic = %config.topic, brokers = %config.brokers, "the warm-path topic does not exist; events wait on disk until it is created");
            }
        }
        Err(error) => {
            tracing::warn!(brokers = %config.brokers, %error, "Kafka does not answer; events wait on disk until it does")
        }
    }
}

fn producer(config: &ShipperConfig) -> anyhow::Result<BaseProducer<Acks>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("imds-agent-{}", config.machine))
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
struct Acks(Mutex<Vec<(usize, Result<(), KafkaError>)>>);

impl ClientContext for Acks {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_librdkafka_log(level, facility, message);
    }
}

/// librdkafka's own log lines, as tracing events of target `librdkafka`.
pub fn forward_librdkafka_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
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

/// A sent line: its message number and where the line ends.
struct Pending {
    message_no: usize,
    file: Arc<str>,
    end: u64,
}

/// The reading side: the current file and the offset of the first line not yet processed.
struct Reader {
    file: Option<(Arc<str>, std::fs::File)>,
    /// Offset of the first byte not yet turned into a line.
    consumed: u64,
    /// Bytes after `consumed` read but not yet a complete line.
    carry: Vec<u8>,
}

struct Shipper {
    config: ShipperConfig,
    producer: BaseProducer<Acks>,
    reader: Reader,
    pending: VecDeque<Pending>,
    acked: BTreeSet<usize>,
    next_message_no: usize,
    /// Everything before this position is acknowledged (or needed no sending).
    acked_pos: Option<Checkpoint>,
    stored_pos: Option<Checkpoint>,
    last_store: Instant,
    last_backlog: Instant,
    retry_backoff: Duration,
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
            reader: Reader {
                file: None,
                consumed: 0,
                carry: Vec::new(),
            },
            pending: VecDeque::new(),
            acked: BTreeSet::new(),
            next_message_no: 0,
            acked_pos: start.clone(),
            stored_pos: start,
            last_store: Instant::now(),
            last_backlog: Instant::now() - BACKLOG_EVERY,
            retry_backoff: Duration::from_secs(1),
        };
        shipper.rewind();
        shipper
    }

    fn run(&mut self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            self.producer.poll(Duration::ZERO);
            if let Err(error) = self.collect_acks() {
                self.recover(&error, shutdown);
                continue;
            }
            self.store_checkpoint(false);
            self.report_backlog();
            let progressed = if self.pending.len() < MAX_PENDING {
                self.ship_some()
            } else {
                Ok(false)
            };
            match progressed {
                Ok(true) => {}
                Ok(false) => self.producer.poll(IDLE_POLL),
                Err(error) => self.recover(&error, shutdown),
            }
        }
        // Shutdown: send what was logged up to now (the shutdown events included), give Kafka a
        // moment to acknowledge, keep what it did; the rest waits on disk for the next start.
        // The log writer thread may still hold the last lines for a moment: read until the file
        // has been quiet for a while.
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline && self.pending.len() < MAX_PENDING {
            match self.ship_some() {
                Ok(true) => quiet_since = Instant::now(),
                Ok(false) if quiet_since.elapsed() >= SHUTDOWN_QUIET => break,
                Ok(false) => self.producer.poll(Duration::from_millis(10)),
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
                Ok(()) => {
                    self.acked.insert(message_no);
                }
                // A line Kafka will never take: skipping it is the only way forward. Loud.
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                    metrics::counter!(SHIPPER_DROPPED_EVENTS_TOTAL, "reason" => "too_large")
                        .increment(1);
                    tracing::error!(
                        message_no,
                        "log line larger than the broker accepts; it stays in the cold path only"
                    );
                    self.acked.insert(message_no);
                }
                Err(error) => failure = Some(error),
            }
        }
        let mut delivered = 0u64;
        while let Some(front) = self.pending.front() {
            if !self.acked.remove(&front.message_no) {
                break;
            }
            self.acked_pos = Some(Checkpoint {
                file: front.file.to_string(),
                offset: front.end,
            });
            self.pending.pop_front();
            delivered += 1;
        }
        if delivered > 0 {
            tracing::debug!(
                delivered,
                pending = self.pending.len(),
                "Kafka acknowledged events"
            );
            metrics::counter!(SHIPPER_DELIVERED_EVENTS_TOTAL).increment(delivered);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            metrics::gauge!(SHIPPER_LAST_DELIVERY_SECONDS).set(now.as_secs_f64());
            self.retry_backoff = Duration::from_secs(1);
        }
        if self.pending.is_empty() {
            // Lines that needed no sending (below INFO, unreadable) are done too.
            if let Some((file, _)) = &self.reader.file {
                self.acked_pos = Some(Checkpoint {
                    file: file.to_string(),
                    offset: self.reader.consumed,
                });
            }
        }
        metrics::gauge!(SHIPPER_PENDING_EVENTS).set(self.pending.len() as f64);
        failure.map_or(Ok(()), Err)
    }

    /// After a failed delivery: count it, wait, and resend everything after the checkpoint with a
    /// fresh producer. The collector drops what arrives twice.
    fn recover(&mut self, error: &KafkaError, shutdown: &CancellationToken) {
        metrics::counter!(SHIPPER_SEND_ERRORS_TOTAL).increment(1);
        tracing::error!(%error, retry_in_s = self.retry_backoff.as_secs(), "shipping to Kafka failed; resending from the checkpoint");
        let deadline = Instant::now() + self.retry_backoff;
        while Instant::now() < deadline && !shutdown.is_cancelled() {
            std::thread::sleep(IDLE_POLL);
        }
        self.retry_backoff = (self.retry_backoff * 2).min(MAX_RETRY_BACKOFF);
        match producer(&self.config) {
            Ok(producer) => self.producer = producer,
            Err(error) => tracing::error!(%error, "cannot create a Kafka producer"),
        }
        self.pending.clear();
        self.acked.clear();
        self.rewind();
    }

    /// Positions the reader at the acknowledged position (or the oldest file when there is none).
    fn rewind(&mut self) {
        self.reader = Reader {
            file: None,
            consumed: 0,
            carry: Vec::new(),
        };
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
        let path = self.config.log_dir.join(name);
        match std::fs::File::open(&path)
            .and_then(|mut file| file.seek(SeekFrom::Start(offset)).map(|_| file))
        {
            Ok(file) => {
                self.reader = Reader {
                    file: Some((Arc::from(name), file)),
                    consumed: offset,
                    carry: Vec::new(),
                };
                if self.pending.is_empty() {
                    self.acked_pos = Some(Checkpoint {
                        file: name.to_owned(),
                        offset,
                    });
                }
            }
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot open log file for shipping")
            }
        }
    }

    /// Reads what is new and sends its INFO+ lines. `Ok(false)` when there was nothing to do.
    fn ship_some(&mut self) -> Result<bool, KafkaError> {
        let Some((name, _)) = &self.reader.file else {
            self.rewind();
            return Ok(self.reader.file.is_some());
        };
        let name = Arc::clone(name);
        // Listed before reading: the writer never returns to a file once it has started the next,
        // so if a newer file exists now and the read below finds nothing, this one is complete.
        let newer = local_files::list(&self.config.log_dir)
            .unwrap_or_default()
            .into_iter()
            .find(|f| f.name.as_str() > &*name);
        let mut chunk = vec![0u8; READ_CHUNK];
        let read = match &mut self.reader.file {
            Some((_, file)) => file.read(&mut chunk).unwrap_or(0),
            None => 0,
        };
        if read == 0 {
            let Some(newer) = newer else { return Ok(false) };
            if !self.reader.carry.is_empty() {
                // A last line cut short by a crash: it will never be completed.
                metrics::counter!(SHIPPER_SKIPPED_LINES_TOTAL).increment(1);
            }
            self.open(&newer.name, 0);
            return Ok(true);
        }
        let mut buffer = std::mem::take(&mut self.reader.carry);
        buffer.extend_from_slice(&chunk[..read]);
        let mut start = 0;
        while let Some(newline) = buffer[start..].iter().position(|&b| b == b'\n') {
            let end = self.reader.consumed + (start + newline + 1) as u64;
            self.ship_line(&name, &buffer[start..start + newline], end)?;
            start += newline + 1;
        }
        self.reader.consumed += start as u64;
        self.reader.carry = buffer.split_off(start);
        Ok(true)
    }

    fn ship_line(&mut self, file: &Arc<str>, line: &[u8], end: u64) -> Result<(), KafkaError> {
        match serde_json::from_slice::<LevelOnly>(line) {
            Ok(record) if record.level.is_warm() => {}
            Ok(_) => return Ok(()),
            Err(_) => {
                metrics::counter!(SHIPPER_SKIPPED_LINES_TOTAL).increment(1);
                return Ok(());
            }
        }
        let message_no = self.next_message_no;
        self.next_message_no += 1;
        let mut record = BaseRecord::with_opaque_to(&self.config.topic, message_no)
            .key(self.config.machine.as_bytes())
            .payload(line);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // librdkafka's queue is full: let it deliver, then try again.
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error),
            }
        }
        self.pending.push_back(Pending {
            message_no,
            file: Arc::clone(file),
            end,
        });
        Ok(())
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
