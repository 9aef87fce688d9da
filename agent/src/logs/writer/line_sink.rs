//! The way into the local log shared by the tracing layer (`mod.rs`) and the request log
//! (`request_log.rs`): the host identity every line carries, the queue, the per-level counters,
//! and each event's id and time.

use super::log_queue::LogQueue;
use chrono::{Timelike, Utc};
use logrecord::{Level, LogRecordRef};
use std::sync::Arc;

/// The way into the file both the tracing layer and the request log (`request_log.rs`) take:
/// the host identity every line carries, the queue, and the per-level event counters.
#[derive(Debug, Clone)]
pub(super) struct LineSink {
    writer: LogQueue,
    cluster: Arc<str>,
    machine: Arc<str>,
    events: [metrics::Counter; 5],
}

impl LineSink {
    pub(super) fn new(
        writer: LogQueue,
        cluster: &str,
        machine: &str,
        events: [metrics::Counter; 5],
    ) -> Self {
        LineSink {
            writer,
            cluster: cluster.into(),
            machine: machine.into(),
            events,
        }
    }

    /// A record of this host with a new id and the current time, and no other field; its `seq`
    /// is stamped by the writer thread (`SequencingWriter`).
    pub(super) fn record<'a>(
        &'a self,
        level: Level,
        target: &'a str,
        message: &'a str,
    ) -> LogRecordRef<'a> {
        let (id, timestamp) = id_and_time();
        LogRecordRef {
            id,
            seq: 0,
            timestamp,
            level,
            target,
            message,
            cluster: &self.cluster,
            machine: &self.machine,
            request_id: None,
            method: None,
            path: None,
            api_version: None,
            format: None,
            status: None,
            latency_us: None,
            response_bytes: None,
            caller: None,
            fields: None,
        }
    }

    /// Queues `record`'s line (written straight into this thread's shard of the queue); a full
    /// queue drops it and counts it. Queued lines are counted by the writer, per batch.
    pub(super) fn send(&self, record: &LogRecordRef<'_>) {
        if !self
            .writer
            .send_with(record.level, |out| record.write_json_line(out))
        {
            self.events[record.level as usize].increment(1);
        }
    }
}

/// A new event's id and time from one clock read: the UUIDv7's time is the event's timestamp.
/// Each thread keeps its own v7 context (ids from one thread increase even within a millisecond;
/// `seq` orders the file), so ids are made without the process-wide lock of `Uuid::now_v7`. The
/// calendar date of the last second is kept per thread too: `Utc::now()` works it out from the
/// day count on every call, and that showed in the request event's profile.
pub(super) fn id_and_time() -> (uuid::Uuid, chrono::DateTime<Utc>) {
    thread_local! {
        static CONTEXT: uuid::ContextV7 = const { uuid::ContextV7::new() };
        static LAST_SECOND: std::cell::Cell<Option<(u64, chrono::NaiveDateTime)>> =
            const { std::cell::Cell::new(None) };
    }
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (seconds, micros) = (since_epoch.as_secs(), since_epoch.subsec_micros());
    let nanos = micros * 1000;
    let second = match LAST_SECOND.get() {
        Some((cached, at)) if cached == seconds => at,
        _ => {
            let at = i64::try_from(seconds)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_default()
                .naive_utc();
            LAST_SECOND.set(Some((seconds, at)));
            at
        }
    };
    let timestamp = second.with_nanosecond(nanos).unwrap_or(second).and_utc();
    let id = CONTEXT
        .with(|context| uuid::Uuid::new_v7(uuid::Timestamp::from_unix(context, seconds, nanos)));
    (id, timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logrecord::LogRecord;

    #[test]
    fn ids_and_times_follow_the_clock_across_seconds_in_microseconds() {
        // Across more than one second (the date of the last second is kept per thread).
        let end = Utc::now() + chrono::TimeDelta::milliseconds(1300);
        let mut seconds_seen = std::collections::BTreeSet::new();
        while Utc::now() < end {
            let before = LogRecord::truncate_timestamp(Utc::now());
            let (id, timestamp) = id_and_time();
            let after = Utc::now();
            assert!(
                before <= timestamp && timestamp <= after,
                "{timestamp} in the clock's range"
            );
            assert_eq!(timestamp.timestamp_subsec_nanos() % 1000, 0, "microseconds");
            let (id_seconds, id_nanos) = id.get_timestamp().unwrap().to_unix();
            assert_eq!(
                (id_seconds, id_nanos / 1_000_000),
                (
                    timestamp.timestamp() as u64,
                    timestamp.timestamp_subsec_millis()
                ),
                "the id's time is the event's"
            );
            seconds_seen.insert(timestamp.timestamp());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(seconds_seen.len() >= 2, "{seconds_seen:?}");
    }
}
