//! The full-fidelity local log: a tracing layer that turns every event into the shared
//! [`LogRecord`] and writes it as one JSON line, through a batching queue (`log_queue.rs`), to
//! the hourly file (`hourly_file.rs`: `<data-dir>/logs/agent.YYYY-MM-DD-HH.log`, UTC hours).
//!
//! These files are the write-ahead log of the warm and cold paths. Writing never blocks the
//! thread that logs: lines go through a bounded channel to a writer thread, and when it falls
//! behind the line is dropped and counted (`agent_log_dropped_events_total`).
//!
//! The writer thread, being the only one, stamps each line's `seq` as it writes it, so `seq`
//! follows file order exactly (the warm path's deduplication relies on that) with no lock on the
//! request path. It starts above both the last `seq` on disk and the current Unix time in
//! microseconds, so it keeps increasing across restarts, even when the log directory is lost.
//!
//! A failed write (a full disk) loses the lines that did not reach the file, and only them: each
//! is counted in `agent_log_dropped_events_total`, its `seq` is used up (a reader sees the loss
//! as a gap), and a line the file took only part of is cut back out of it, so no line on disk is
//! cut short or starts twice. Serving goes on throughout.

pub(crate) mod hourly_file;
mod line_sink;
pub(crate) mod log_queue;
pub(crate) mod request_log;
pub(crate) mod settings;

use crate::metrics::LOG_EVENTS_TOTAL;
use hourly_file::AppendLines;
use line_sink::LineSink;
use log_queue::{LogQueue, WriterGuard};
use logrecord::{Level, LogRecordRef, SEQ_PLACEHOLDER};
use request_log::RequestLog;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The layer writing [`LogRecord`] lines.
#[derive(Debug)]
pub(crate) struct FileLayer {
    lines: LineSink,
}

/// The writer's handles: keep the guard alive until exit (dropping it flushes the file), read
/// the drop count at scrape time.
#[derive(Debug)]
pub(crate) struct FileWriter {
    pub guard: WriterGuard,
    pub dropped: DroppedLines,
}

/// Lines lost before reaching the file: dropped from a full queue, or lost to a failed write.
#[derive(Debug, Clone)]
pub struct DroppedLines {
    queue: LogQueue,
    write_failed: Arc<AtomicU64>,
}

impl DroppedLines {
    pub fn dropped_lines(&self) -> u64 {
        self.queue.dropped() + self.write_failed.load(Ordering::Relaxed)
    }
}

impl FileLayer {
    /// Opens the hourly appender under `dir` with a buffer of `buffered_lines`.
    pub(crate) fn new(
        dir: &Path,
        cluster: &str,
        machine: &str,
        buffered_lines: usize,
    ) -> anyhow::Result<(Self, FileWriter)> {
        std::fs::create_dir_all(dir)?;
        let appender = hourly_file::HourlyFile::new(dir.to_owned());
        // The writer thread writes and flushes each batch it drains (every few milliseconds under
        // load, at once when idle). A line queued across the top of the hour may land in the
        // next hour's file: its timestamp, not its file, is the truth.
        let first_seq = last_seq_in(dir).map_or(0, |seq| seq + 1).max(unix_micros());
        let write_failed = Arc::new(AtomicU64::new(0));
        let buffered = SequencingWriter::new(appender, first_seq, Arc::clone(&write_failed));
        let events =
            Level::ALL.map(|level| metrics::counter!(LOG_EVENTS_TOTAL, "level" => level.as_str()));
        let count_queued = {
            let events = events.clone();
            Box::new(move |level: Level, lines: u64| events[level as usize].increment(lines))
        };
        let (writer, guard) = log_queue::start(buffered, buffered_lines, count_queued)?;
        let dropped = DroppedLines {
            queue: writer.clone(),
            write_failed,
        };
        let layer = FileLayer {
            lines: LineSink::new(writer, cluster, machine, events),
        };
        Ok((layer, FileWriter { guard, dropped }))
    }

    /// The direct way in for request events (see [`RequestLog`]).
    pub(crate) fn request_log(&self) -> RequestLog {
        RequestLog::new(self.lines.clone())
    }
}

impl<S: Subscriber> Layer<S> for FileLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // The visitor's strings are scratch space kept per thread and reused: writing a line
        // allocates nothing (it is written straight into this thread's shard of the queue).
        thread_local! {
            static SCRATCH: RefCell<RecordVisitor> = RefCell::default();
        }
        let level = level_of(*event.metadata().level());
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut visitor) => self.write(event, level, &mut visitor),
            // An event logged while this thread writes one (nothing does today): fresh scratch.
            Err(_) => self.write(event, level, &mut RecordVisitor::default()),
        });
    }
}

impl FileLayer {
    fn write(&self, event: &Event<'_>, level: Level, visitor: &mut RecordVisitor) {
        visitor.clear();
        event.record(visitor);
        let record = LogRecordRef {
            request_id: visitor.request_id,
            method: visitor.method.get(),
            path: visitor.path.get(),
            api_version: visitor.api_version.get(),
            format: visitor.format.get(),
            status: visitor.status,
            latency_us: visitor.latency_us,
            response_bytes: visitor.response_bytes,
            caller: visitor.caller.get(),
            fields: (!visitor.fields.is_empty()).then_some(&visitor.fields),
            ..self
                .lines
                .record(level, event.metadata().target(), &visitor.message)
        };
        // One message is one line.
        self.lines.send(&record);
    }
}

/// Sits between the queue and the hourly files on the writer thread: replaces the `0` of each
/// line's leading `{"seq":0,` with the next sequence number, and batches whole lines. Lines a
/// failed append did not take are counted as lost (see the module header).
struct SequencingWriter<F> {
    file: F,
    next_seq: u64,
    /// Whole lines waiting to be written.
    buffer: Vec<u8>,
    /// Lines lost to failed writes.
    lost: Arc<AtomicU64>,
}

impl<F: AppendLines> SequencingWriter<F> {
    fn new(file: F, next_seq: u64, lost: Arc<AtomicU64>) -> Self {
        SequencingWriter {
            file,
            next_seq,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            lost,
        }
    }

    fn write_buffer(&mut self) -> std::io::Result<()> {
        let result = self.file.append_lines(&self.buffer);
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(partial) => {
                let lost = count_lines(&self.buffer[partial.written..]);
                self.lost.fetch_add(lost, Ordering::Relaxed);
                Err(partial.error)
            }
        };
        self.buffer.clear();
        outcome
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl<F: AppendLines> Write for SequencingWriter<F> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        // The queue hands over one whole line per call (one event, one message). Its seq is used
        // whether or not the line reaches the file: a lost line is a gap, never a reused number.
        match line.strip_prefix(SEQ_PLACEHOLDER) {
            Some(rest) => {
                let _ = write!(self.buffer, "{{\"seq\":{},", self.next_seq);
                self.buffer.extend_from_slice(rest);
                self.next_seq += 1;
            }
            None => self.buffer.extend_from_slice(line),
        }
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            // The error is counted, not returned: the queue's worker has nothing better to do
            // with it, and the line is accounted for either way.
            let _ = self.write_buffer();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let written = self.write_buffer();
        let flushed = self.file.flush();
        written.and(flushed)
    }
}

fn unix_micros() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// The highest `seq` in the newest log file of `dir` that has a complete record.
pub(crate) fn last_seq_in(dir: &Path) -> Option<u64> {
    let files = super::local_files::list(dir).ok()?;
    files.iter().rev().find_map(|file| {
        // Only the tail matters; its first and last lines may be partial (cut by the seek, or
        // by a crash), and fail to parse.
        let text = read_tail(&file.path, TAIL_BYTES).ok()?;
        text.split(|&b| b == b'\n')
            .rev()
            .find_map(|line| serde_json::from_slice::<SeqOnly>(line).ok())
            .map(|s| s.seq)
    })
}

const TAIL_BYTES: u64 = 1024 * 1024;

fn read_tail(path: &Path, bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(bytes)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(tail)
}

#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: u64,
}

fn level_of(level: tracing::Level) -> Level {
    match level {
        tracing::Level::TRACE => Level::Trace,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::ERROR => Level::Error,
    }
}

/// Sorts an event's fields into the record's typed columns and the `fields` object.
/// A text field of the event, its buffer kept between events.
#[derive(Default)]
struct Slot {
    text: String,
    set: bool,
}

impl Slot {
    fn put(&mut self, value: &str) {
        self.text.clear();
        self.text.push_str(value);
        self.set = true;
    }

    fn put_debug(&mut self, value: &dyn fmt::Debug) {
        use std::fmt::Write as _;
        self.text.clear();
        let _ = write!(self.text, "{value:?}");
        self.set = true;
    }

    fn get(&self) -> Option<&str> {
        self.set.then_some(self.text.as_str())
    }
}

#[derive(Default)]
struct RecordVisitor {
    message: String,
    request_id: Option<uuid::Uuid>,
    method: Slot,
    path: Slot,
    api_version: Slot,
    format: Slot,
    caller: Slot,
    status: Option<u16>,
    latency_us: Option<u64>,
    response_bytes: Option<u64>,
    fields: Map<String, Value>,
}

impl RecordVisitor {
    /// Empties every field, keeping the buffers.
    fn clear(&mut self) {
        self.message.clear();
        self.request_id = None;
        for slot in [
            &mut self.method,
            &mut self.path,
            &mut self.api_version,
            &mut self.format,
            &mut self.caller,
        ] {
            slot.set = false;
        }
        self.status = None;
        self.latency_us = None;
        self.response_bytes = None;
        self.fields.clear();
    }

    fn text_slot(&mut self, name: &str) -> Option<&mut Slot> {
        Some(match name {
            "method" => &mut self.method,
            "path" => &mut self.path,
            "api_version" => &mut self.api_version,
            "format" => &mut self.format,
            "caller" => &mut self.caller,
            _ => return None,
        })
    }

    fn number(&mut self, name: &str, value: u64) -> bool {
        match name {
            "status" => self.status = u16::try_from(value).ok(),
            "latency_us" => self.latency_us = Some(value),
            "response_bytes" => self.response_bytes = Some(value),
            _ => return false,
        }
        true
    }
}

impl Visit for RecordVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => {
                self.message.clear();
                self.message.push_str(value);
            }
            // The typed column holds UUIDs (16 bytes in Parquet); any other id stays a field.
            "request_id" => match value.parse() {
                Ok(id) => self.request_id = Some(id),
                Err(_) => {
                    self.fields
                        .insert("request_id".to_owned(), Value::from(value));
                }
            },
            name => match self.text_slot(name) {
                Some(slot) => slot.put(value),
                None => {
                    self.fields.insert(name.to_owned(), Value::from(value));
                }
            },
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.number(field.name(), value) {
            self.fields
                .insert(field.name().to_owned(), Value::from(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let typed = u64::try_from(value).is_ok_and(|v| self.number(field.name(), v));
        if !typed {
            self.fields
                .insert(field.name().to_owned(), Value::from(value));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here too, formatted with Display. Typed text columns and the
        // message are formatted straight into their buffers.
        match field.name() {
            "message" => {
                use std::fmt::Write as _;
                self.message.clear();
                let _ = write!(self.message, "{value:?}");
            }
            name => match self.text_slot(name) {
                Some(slot) => slot.put_debug(value),
                None => self.record_str(field, &format!("{value:?}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logrecord::LogRecord;

    /// A file that takes `room` more bytes of whole lines, then fails like a full disk.
    struct SmallDisk {
        written: Vec<u8>,
        room: usize,
    }

    impl AppendLines for SmallDisk {
        fn append_lines(&mut self, lines: &[u8]) -> Result<(), super::hourly_file::Partial> {
            if lines.len() <= self.room {
                self.written.extend_from_slice(lines);
                self.room -= lines.len();
                return Ok(());
            }
            let fits = &lines[..self.room];
            let whole = fits.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            self.written.extend_from_slice(&lines[..whole]);
            self.room -= whole;
            Err(super::hourly_file::Partial {
                written: whole,
                error: std::io::Error::from_raw_os_error(28), // ENOSPC
            })
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(n: u32) -> String {
        format!("{{\"seq\":0,\"n\":{n}}}\n")
    }

    #[test]
    fn a_full_disk_loses_whole_lines_counted_and_leaves_no_cut_or_repeated_line() {
        let lost = Arc::new(AtomicU64::new(0));
        let disk = SmallDisk {
            written: Vec::new(),
            room: 25,
        };
        let mut writer = SequencingWriter::new(disk, 100, Arc::clone(&lost));
        // Three lines of 18 bytes: the disk has room for the first and 7 bytes of the second.
        for n in 0..3 {
            writer.write_all(line(n).as_bytes()).unwrap();
        }
        assert!(writer.flush().is_err());
        assert_eq!(
            lost.load(Ordering::Relaxed),
            2,
            "the second and third lines"
        );
        // Still full: every line offered now is lost too, and counted.
        for n in 3..5 {
            writer.write_all(line(n).as_bytes()).unwrap();
            assert!(writer.flush().is_err());
        }
        assert_eq!(lost.load(Ordering::Relaxed), 4);
        // Room again: writing goes on.
        writer.file.room = 1000;
        writer.write_all(line(5).as_bytes()).unwrap();
        writer.flush().unwrap();
        let text = String::from_utf8(writer.file.written.clone()).unwrap();
        assert_eq!(text, "{\"seq\":100,\"n\":0}\n{\"seq\":105,\"n\":5}\n");
        // The gap 101..=104 is exactly the four lines counted as lost.
    }
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_become_records_with_typed_fields() {
        let dir = tempfile::tempdir().unwrap();
        let started = unix_micros();
        let (layer, writer) = FileLayer::new(dir.path(), "west", "host-1", 1024).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let request_id = uuid::Uuid::from_u128(0x5f0c3b1e_0000_4000_8000_000000000000);
            tracing::info!(target: "imds::request", request_id = %request_id, method = %"GET", status = 404u16, latency_us = 12u64, caller = %"127.0.0.2", "request served");
            tracing::debug!(
                attempt = 3,
                reason = "timeout",
                ratio = 0.5,
                request_id = "r-1",
                "retrying"
            );
        });
        drop(writer.guard);
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.starts_with("agent.") && name.ends_with(".log"),
            "{name}"
        );
        let text = std::fs::read_to_string(file).unwrap();
        let records: Vec<LogRecord> = text
            .lines()
            .map(|l| LogRecord::from_json_line(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        let request = &records[0];
        assert_eq!(
            (request.level, request.target.as_str()),
            (Level::Info, "imds::request")
        );
        assert_eq!(
            (request.cluster.as_str(), request.machine.as_str()),
            ("west", "host-1")
        );
        assert_eq!(request.message, "request served");
        assert_eq!(
            request.request_id.map(|id| id.to_string()).as_deref(),
            Some("5f0c3b1e-0000-4000-8000-000000000000")
        );
        assert_eq!(request.method.as_deref(), Some("GET"));
        assert_eq!((request.status, request.latency_us), (Some(404), Some(12)));
        assert_eq!(request.caller.as_deref(), Some("127.0.0.2"));
        assert_eq!(request.fields, None);
        let debug = &records[1];
        assert_eq!((debug.seq, debug.level), (request.seq + 1, Level::Debug));
        assert!(
            request.seq >= started,
            "seq starts above the current time in microseconds"
        );
        let fields = debug.fields.as_ref().unwrap();
        assert_eq!(
            (
                fields["attempt"].as_i64(),
                fields["reason"].as_str(),
                fields["ratio"].as_f64(),
                fields["request_id"].as_str(),
            ),
            (Some(3), Some("timeout"), Some(0.5), Some("r-1")),
            "a request_id that is not a UUID stays in fields"
        );
        assert_eq!(debug.request_id, None);
        assert_ne!(records[0].id, records[1].id);
    }

    #[test]
    fn seq_continues_above_the_last_one_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        // A newest file whose last complete line has a seq far above the clock, then a torn line.
        let far = unix_micros() + 10_000_000_000;
        let old = format!("{{\"seq\":{far},\"id\":\"x\"}}\n{{\"seq\":{},\"id", far + 5);
        std::fs::write(dir.path().join("agent.2099-01-01-00.log"), old).unwrap();
        assert_eq!(last_seq_in(dir.path()), Some(far));
        let (layer, writer) = FileLayer::new(dir.path(), "c", "m", 16).unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!("after restart")
        });
        drop(writer.guard);
        let newest = crate::logs::local_files::list(dir.path()).unwrap();
        let current = newest
            .iter()
            .find(|f| f.name != "agent.2099-01-01-00.log")
            .unwrap();
        let record =
            LogRecord::from_json_line(std::fs::read_to_string(&current.path).unwrap().trim())
                .unwrap();
        assert_eq!(record.seq, far + 1);
    }

    // The request log writes through the layer's queue: one sequence with the layer's events.
    #[test]
    fn request_events_written_directly_are_the_same_records_in_the_same_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (layer, writer) = FileLayer::new(dir.path(), "west", "host-1", 1024).unwrap();
        let requests = layer.request_log();
        let subscriber = tracing_subscriber::registry().with(layer);
        let request_id = uuid::Uuid::from_u128(0x5f0c3b1e_0000_4000_8000_000000000000);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before");
            requests.write(&super::request_log::RequestEvent {
                request_id,
                method: "GET",
                path: "/metadata/instance/compute/\"tag\"\n",
                api_version: Some("2021-02-01"),
                format: "text",
                status: 200,
                latency_us: 184,
                response_bytes: 36,
                caller: "::ffff:10.0.0.4"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .into(),
            });
            tracing::info!("after");
        });
        drop(writer.guard);
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        let records: Vec<LogRecord> = text
            .lines()
            .map(|l| LogRecord::from_json_line(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3);
        assert_eq!(
            records
                .iter()
                .map(|r| r.seq - records[0].seq)
                .collect::<Vec<_>>(),
            [0, 1, 2],
            "one sequence, in the order written"
        );
        let request = &records[1];
        let expected = LogRecord {
            request_id: Some(request_id),
            method: Some("GET".into()),
            path: Some("/metadata/instance/compute/\"tag\"\n".into()),
            api_version: Some("2021-02-01".into()),
            format: Some("text".into()),
            status: Some(200),
            latency_us: Some(184),
            response_bytes: Some(36),
            caller: Some("::ffff:10.0.0.4".into()),
            ..LogRecord::new(
                request.seq,
                request.id,
                request.timestamp,
                Level::Info,
                "imds::request",
                "request served",
                "west",
                "host-1",
            )
        };
        assert_eq!(request, &expected);
        assert_eq!(request.id.get_version_num(), 7);
        assert!(
            records[0].timestamp <= request.timestamp && request.timestamp <= records[2].timestamp
        );
    }
}
