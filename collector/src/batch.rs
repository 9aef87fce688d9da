//! One Kafka partition's batch: messages decoded into the shared log record, malformed ones set
//! aside as dead letters with their reason, replays of offsets the table already holds dropped.
//! (Agent resends, the other kind of repeat, are dropped by the writer: `resends.rs`.)

use logrecord::LogRecord;
use std::time::{Duration, Instant};

/// Every reason a message is dead-lettered (the `reason` label's values).
pub(crate) const DEAD_LETTER_REASONS: &[&str] =
    &["empty", "not_utf8", "invalid_record", "invalid_identity"];

/// A message that could not be stored, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// Bounded reason, also the metric label: `empty`, `not_utf8`, `invalid_record`, `invalid_identity`.
    pub reason: &'static str,
    pub detail: String,
    /// The message as text (invalid UTF-8 replaced).
    pub payload: String,
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Added,
    /// Its offset is already in the store.
    Replayed,
    DeadLettered(&'static str),
}

/// The batch of one partition.
#[derive(Debug)]
pub(crate) struct PartitionBatch {
    pub partition: i32,
    /// The first offset neither in the table nor in an earlier batch.
    pub next_offset: i64,
    /// Offsets of the messages in this batch (rows, dead letters and dropped repeats alike).
    pub offsets: Option<(i64, i64)>,
    pub records: Vec<LogRecord>,
    pub dead_letters: Vec<DeadLetter>,
    started: Option<Instant>,
}

impl PartitionBatch {
    pub(crate) fn new(partition: i32, next_offset: i64) -> Self {
        PartitionBatch {
            partition,
            next_offset,
            offsets: None,
            records: Vec::new(),
            dead_letters: Vec::new(),
            started: None,
        }
    }

    pub(crate) fn add(&mut self, offset: i64, payload: Option<&[u8]>) -> Outcome {
        if offset < self.next_offset || self.offsets.is_some_and(|(_, last)| offset <= last) {
            return Outcome::Replayed;
        }
        self.offsets = Some(match self.offsets {
            Some((first, _)) => (first, offset),
            None => (offset, offset),
        });
        self.started.get_or_insert_with(Instant::now);
        let record = match decode(payload) {
            Ok(record) => record,
            Err((reason, detail)) => {
                let payload = String::from_utf8_lossy(payload.unwrap_or_default()).into_owned();
                self.dead_letters.push(DeadLetter {
                    partition: self.partition,
                    offset,
                    reason,
                    detail,
                    payload,
                });
                return Outcome::DeadLettered(reason);
            }
        };
        self.records.push(record);
        Outcome::Added
    }

    /// Whether it is time to write this batch.
    pub(crate) fn is_due(&self, interval: Duration, max_rows: usize) -> bool {
        self.records.len() >= max_rows || self.started.is_some_and(|s| s.elapsed() >= interval)
    }

    /// Hands this batch over to be written and continues with an empty one that starts where it
    /// ends (the writer stores batches in order).
    pub(crate) fn hand_over(&mut self) -> PartitionBatch {
        let next_offset = self.offsets.map_or(self.next_offset, |(_, last)| last + 1);
        std::mem::replace(self, PartitionBatch::new(self.partition, next_offset))
    }
}

fn decode(payload: Option<&[u8]>) -> Result<LogRecord, (&'static str, String)> {
    let payload = payload
        .filter(|p| !p.is_empty())
        .ok_or(("empty", "empty message".to_owned()))?;
    let text = std::str::from_utf8(payload).map_err(|e| ("not_utf8", e.to_string()))?;
    let record = LogRecord::from_json_line(text).map_err(|e| ("invalid_record", e.to_string()))?;
    // The table stores counts as Delta's signed `long`.
    for (name, value) in [
        ("seq", Some(record.seq)),
        ("latency_us", record.latency_us),
        ("response_bytes", record.response_bytes),
    ] {
        if value.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(("invalid_record", format!("{name} is above 2^63-1")));
        }
    }
    for (name, value) in [("cluster", &record.cluster), ("machine", &record.machine)] {
        if !is_partition_safe(value) {
            return Err((
                "invalid_identity",
                format!(
                    "{name} {value:?} must be 1-128 characters of letters, digits, '-', '_' or '.'"
                ),
            ));
        }
    }
    Ok(record)
}

/// Cluster and machine name directories of the store: nothing that could escape or confuse a path.
fn is_partition_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(machine: &str, seq: u64) -> Vec<u8> {
        format!(r#"{{"seq":{seq},"id":"01930000-0000-7000-8000-{seq:012x}","timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"m","cluster":"c","machine":"{machine}"}}"#).into_bytes()
    }

    #[test]
    fn replays_and_poison_are_sorted_out() {
        let mut batch = PartitionBatch::new(0, 10);
        assert_eq!(batch.add(9, Some(&line("a", 6))), Outcome::Replayed);
        assert_eq!(batch.add(10, Some(&line("a", 5))), Outcome::Added);
        assert_eq!(batch.add(11, Some(&line("a", 6))), Outcome::Added);
        assert_eq!(batch.add(12, Some(&line("b", 1))), Outcome::Added);
        assert_eq!(batch.add(14, None), Outcome::DeadLettered("empty"));
        assert_eq!(
            batch.add(15, Some(b"\xff\xfe")),
            Outcome::DeadLettered("not_utf8")
        );
        assert_eq!(
            batch.add(16, Some(b"{\"seq\":1}")),
            Outcome::DeadLettered("invalid_record")
        );
        assert_eq!(
            batch.add(17, Some(&line("../etc", 1))),
            Outcome::DeadLettered("invalid_identity")
        );
        assert_eq!(batch.add(17, Some(&line("a", 7))), Outcome::Replayed);
        assert_eq!(
            batch.add(18, Some(&line("a", u64::MAX))),
            Outcome::DeadLettered("invalid_record")
        );
        assert_eq!(batch.offsets, Some((10, 18)));
        assert_eq!(batch.records.len(), 3);
        assert_eq!(
            batch
                .dead_letters
                .iter()
                .map(|d| d.offset)
                .collect::<Vec<_>>(),
            [14, 15, 16, 17, 18]
        );
        let next = batch.hand_over();
        assert_eq!((next.records.len(), batch.next_offset), (3, 19));
    }
}
