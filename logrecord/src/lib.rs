//! The log record: the one contract every binary of the pipeline shares.
//!
//! The agent writes each tracing event as one [`LogRecord`] serialized to a JSON line (the
//! full-fidelity local log, [`LogRecord::to_json_line`]). The warm shipper sends those same lines to
//! Kafka, the collector decodes them with [`LogRecord::from_json_line`], and both the collector and
//! the cold-path roller turn batches of records into Arrow with [`to_record_batch`] over the one
//! [`schema`]. Schema changes are additive: a new optional field gets a new nullable column, and
//! readers accept unknown JSON keys so an older collector keeps working with a newer agent.
#![warn(missing_docs, unreachable_pub)]

mod arrow_schema;
pub mod durable;
mod json_line;
mod json_write;
pub mod layout;
mod level;
pub mod lines_to_parquet;
pub mod parquet_file;

pub use arrow_schema::{ReadError, UUID, from_record_batch, schema, to_record_batch};
pub use json_write::SEQ_PLACEHOLDER;
pub use level::Level;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
pub use uuid::Uuid;

/// One log event, as written by the agent and stored by the collector and the roller.
///
/// Request events (one per metadata request) fill the typed `request_id` .. `caller` fields; any
/// other structured field of an event goes into `fields`, a JSON object.
/// Read with [`LogRecord::from_json_line`] (through the borrowed `json_line::RecordRef`: one
/// parser, one notion of a valid line), so the type itself only serializes.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Per-host sequence number, assigned by the agent's single log-writer thread in file order
    /// and increasing across restarts (it starts above both the last one on disk and the current
    /// time in microseconds). The warm path deduplicates replays with it. First in the JSON line.
    pub seq: u64,
    /// Unique per event and stable: it is written into the line, so reading the same line again
    /// (a replay after a crash) yields the same id. A UUIDv7, so ids sort by creation time. Text
    /// in the line, 16 bytes in Parquet (a line whose id is not a UUID is not a valid line).
    pub id: Uuid,
    /// When the event happened, UTC, microsecond precision.
    pub timestamp: DateTime<Utc>,
    /// Severity.
    pub level: Level,
    /// The tracing target (usually the module path).
    pub target: String,
    /// The human message.
    pub message: String,
    /// Host identity, from the agent's configuration.
    pub cluster: String,
    /// The host that logged it.
    pub machine: String,

    /// `x-ms-request-id` of the response this event describes (the agent makes it a UUIDv4; an
    /// event field `request_id` that is not a UUID stays in `fields`).
    pub request_id: Option<Uuid>,
    /// Request events: the HTTP method.
    pub method: Option<String>,
    /// Request events: the path asked for.
    pub path: Option<String>,
    /// Request events: the `api-version` asked for.
    pub api_version: Option<String>,
    /// Request events: `json` or `text`.
    pub format: Option<String>,
    /// Request events: the HTTP status answered.
    pub status: Option<u16>,
    /// Time from the request's arrival to its response being ready, microseconds.
    pub latency_us: Option<u64>,
    /// Request events: bytes of the response body.
    pub response_bytes: Option<u64>,
    /// The caller's IP address.
    pub caller: Option<String>,

    /// Every other field of the event. A JSON object here; a JSON string column in Arrow.
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A [`LogRecord`] borrowed: what the JSON line is written from. `LogRecord` serializes through
/// it, and the agent's log layer writes its lines with it without copying each event's strings
/// into an owned record first; one definition of the line, field order and names included.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LogRecordRef<'a> {
    /// Per-machine sequence number, increasing in file order.
    pub seq: u64,
    /// The event's id (UUIDv7).
    pub id: Uuid,
    #[serde(with = "timestamp_micros")]
    /// When it was logged (UTC).
    pub timestamp: DateTime<Utc>,
    /// Severity.
    pub level: Level,
    /// The tracing target.
    pub target: &'a str,
    /// The human message.
    pub message: &'a str,
    /// The cluster of the host that logged it.
    pub cluster: &'a str,
    /// The host that logged it.
    pub machine: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: the request id sent in the response header.
    pub request_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: the HTTP method.
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: the path asked for.
    pub path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: the `api-version` asked for.
    pub api_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: `json` or `text`.
    pub format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: the HTTP status answered.
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: time to answer, microseconds.
    pub latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: bytes of the response body.
    pub response_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Request events: the caller's address.
    pub caller: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Any other fields of the event.
    pub fields: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl Serialize for LogRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.borrowed().serialize(serializer)
    }
}

/// Why a line could not be read as a [`LogRecord`].
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, a required field missing, or a field of the wrong type.
    #[error("invalid log record: {0}")]
    Invalid(#[from] serde_json::Error),
}

impl LogRecord {
    /// A record of the required fields, every optional one empty: add request fields with
    /// struct update syntax, `LogRecord { status: Some(200), ..LogRecord::new(..) }`.
    // Eight parameters: exactly the required columns, in the line's order; a builder would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: u64,
        id: Uuid,
        timestamp: DateTime<Utc>,
        level: Level,
        target: impl Into<String>,
        message: impl Into<String>,
        cluster: impl Into<String>,
        machine: impl Into<String>,
    ) -> Self {
        LogRecord {
            seq,
            id,
            timestamp,
            level,
            target: target.into(),
            message: message.into(),
            cluster: cluster.into(),
            machine: machine.into(),
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

    /// The record borrowed, as it is serialized.
    pub fn borrowed(&self) -> LogRecordRef<'_> {
        LogRecordRef {
            seq: self.seq,
            id: self.id,
            timestamp: self.timestamp,
            level: self.level,
            target: &self.target,
            message: &self.message,
            cluster: &self.cluster,
            machine: &self.machine,
            request_id: self.request_id,
            method: self.method.as_deref(),
            path: self.path.as_deref(),
            api_version: self.api_version.as_deref(),
            format: self.format.as_deref(),
            status: self.status,
            latency_us: self.latency_us,
            response_bytes: self.response_bytes,
            caller: self.caller.as_deref(),
            fields: self.fields.as_ref(),
        }
    }

    /// Parses one JSON line (a trailing newline is allowed).
    pub fn from_json_line(line: &str) -> Result<Self, RecordError> {
        Ok(json_line::RecordRef::parse(line)?.into_owned())
    }

    /// Serializes to one JSON line, newline included.
    pub fn to_json_line(&self) -> String {
        let mut line = Vec::new();
        self.borrowed().write_json_line(&mut line);
        // Only UTF-8 strings and ASCII went in.
        String::from_utf8(line).unwrap_or_default()
    }

    /// The timestamp format of the wire form and of every printed timestamp: RFC 3339, UTC,
    /// microseconds, `Z` suffix.
    pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
        let mut buffer = [0u8; timestamp_micros::LEN];
        timestamp_micros::format(ts, &mut buffer).to_owned()
    }

    /// Truncates a timestamp to the precision the record keeps.
    pub fn truncate_timestamp(ts: DateTime<Utc>) -> DateTime<Utc> {
        ts.trunc_subsecs(6)
    }
}

/// The wire form of the timestamp: RFC 3339 with microseconds in UTC.
pub(crate) mod timestamp_micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub(crate) const LEN: usize = 27;
    /// `YYYY-MM-DDTHH:MM:SS`.
    const SECOND_LEN: usize = 19;

    /// Formats into `buffer` digit by digit: every log event is stamped, and chrono's `format`
    /// interprets its pattern on each call (a measurable part of a request's log event). Events
    /// come many to a second, so each thread keeps the text up to the second of the last one it
    /// stamped, and only a new second goes through the calendar. Years outside 0..=9999 are
    /// printed by chrono (they cannot come from the clock).
    pub(crate) fn format<'b>(ts: &DateTime<Utc>, buffer: &'b mut [u8; LEN]) -> &'b str {
        use chrono::{Datelike, Timelike};
        thread_local! {
            static LAST_SECOND: std::cell::Cell<(i64, [u8; SECOND_LEN])> =
                const { std::cell::Cell::new((i64::MIN, [0; SECOND_LEN])) };
        }
        let put = |buffer: &mut [u8; LEN], at: usize, digits: usize, value: u32| {
            let mut value = value;
            for i in (0..digits).rev() {
                buffer[at + i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        *buffer = *b"0000-00-00T00:00:00.000000Z";
        let nanos = ts.nanosecond();
        // A leap second's nanoseconds are >= 1e9: shown as second 60, as chrono does. It shares
        // its `timestamp()` with the second before, so it is never cached.
        let leap = nanos >= 1_000_000_000;
        let second = ts.timestamp();
        match LAST_SECOND.get() {
            (cached, text) if cached == second && !leap => {
                buffer[..SECOND_LEN].copy_from_slice(&text);
            }
            _ => {
                let year = ts.year();
                if !(0..=9999).contains(&year) {
                    let text = ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                    let n = text.len().min(LEN);
                    buffer[..n].copy_from_slice(&text.as_bytes()[..n]);
                    return std::str::from_utf8(&buffer[..n]).unwrap_or_default();
                }
                put(buffer, 0, 4, year as u32);
                put(buffer, 5, 2, ts.month());
                put(buffer, 8, 2, ts.day());
                put(buffer, 11, 2, ts.hour());
                put(buffer, 14, 2, ts.minute());
                put(buffer, 17, 2, ts.second() + u32::from(leap));
                if !leap {
                    let mut text = [0; SECOND_LEN];
                    text.copy_from_slice(&buffer[..SECOND_LEN]);
                    LAST_SECOND.set((second, text));
                }
            }
        }
        put(buffer, 20, 6, (nanos % 1_000_000_000) / 1000);
        // Only ASCII digits and separators were written.
        std::str::from_utf8(buffer).unwrap_or_default()
    }

    pub(crate) fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; LEN];
        s.serialize_str(format(ts, &mut buffer))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|ts| super::LogRecord::truncate_timestamp(ts.with_timezone(&Utc)))
            .map_err(|e| D::Error::custom(format!("timestamp {text:?} is not RFC 3339: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leap_second_formats_as_second_60_between_its_neighbours() {
        let day = chrono::NaiveDate::from_ymd_opt(2016, 12, 31).unwrap();
        let at = |nanos| day.and_hms_nano_opt(23, 59, 59, nanos).unwrap().and_utc();
        for (ts, text) in [
            (at(999_999_000), "2016-12-31T23:59:59.999999Z"),
            (at(1_500_000_000), "2016-12-31T23:59:60.500000Z"),
            (at(0), "2016-12-31T23:59:59.000000Z"),
        ] {
            assert_eq!(LogRecord::format_timestamp(&ts), text);
            assert_eq!(
                text,
                ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "as chrono"
            );
        }
    }

    #[test]
    fn timestamps_format_as_chrono_would() {
        for text in [
            "2024-02-29T23:59:59.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-12-01T09:05:07.000042Z",
            // The same second again, the next one, a day and a year later (the per-thread
            // cache of the second's text must follow), then back.
            "2026-12-01T09:05:07.999999Z",
            "2026-12-01T09:05:08.000000Z",
            "2026-12-02T09:05:08.000001Z",
            "2027-12-02T09:05:08.000001Z",
            "2026-12-01T09:05:07.500000Z",
        ] {
            let ts = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(LogRecord::format_timestamp(&ts), text);
            assert_eq!(
                LogRecord::format_timestamp(&ts),
                ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            );
        }
    }

    pub(crate) fn request_record() -> LogRecord {
        LogRecord {
            request_id: Some(Uuid::from_u128(0x5f0c3b1e_0000_4000_8000_000000000000)),
            method: Some("GET".into()),
            path: Some("/metadata/instance/compute".into()),
            api_version: Some("2021-02-01".into()),
            format: Some("json".into()),
            status: Some(200),
            latency_us: Some(85),
            response_bytes: Some(1234),
            caller: Some("127.0.0.1".into()),
            ..LogRecord::new(
                7,
                Uuid::from_u128(0x01930000_0000_7000_8000_000000000001),
                DateTime::parse_from_rfc3339("2024-02-29T23:59:59.123456Z")
                    .unwrap()
                    .with_timezone(&Utc),
                Level::Info,
                "imds::request",
                "request served",
                "west",
                "host-1",
            )
        }
    }

    #[test]
    fn json_line_round_trips_field_for_field() {
        let record = request_record();
        let line = record.to_json_line();
        assert!(line.ends_with('\n'));
        assert!(line.starts_with(r#"{"seq":7,"id":"#), "{line}");
        assert!(line.contains(r#""timestamp":"2024-02-29T23:59:59.123456Z""#));
        assert!(line.contains(r#""level":"INFO""#));
        assert_eq!(LogRecord::from_json_line(&line).unwrap(), record);
    }

    #[test]
    fn ids_are_written_hyphenated_and_read_in_any_uuid_form() {
        let line = request_record().to_json_line();
        assert!(
            line.contains(r#""id":"01930000-0000-7000-8000-000000000001""#)
                && line.contains(r#""request_id":"5f0c3b1e-0000-4000-8000-000000000000""#),
            "{line}"
        );
        let simple = r#"{"seq":1,"id":"0193000000007000800000000000000A","timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"m","cluster":"c","machine":"h"}"#;
        assert_eq!(
            LogRecord::from_json_line(simple).unwrap().id,
            Uuid::from_u128(0x01930000_0000_7000_8000_00000000000a)
        );
    }

    #[test]
    fn optional_fields_are_omitted_and_default_to_none() {
        let line = r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":1,"timestamp":"2026-01-01T00:00:00Z","level":"DEBUG","target":"t","message":"m","cluster":"c","machine":"h","fields":{"k":1}}"#;
        let record = LogRecord::from_json_line(line).unwrap();
        assert_eq!(record.status, None);
        assert_eq!(record.level, Level::Debug);
        assert_eq!(record.fields.unwrap()["k"], 1);
    }

    #[test]
    fn unknown_keys_are_accepted_for_additive_schema_changes() {
        let line = r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":1,"timestamp":"2026-01-01T00:00:00Z","level":"WARN","target":"t","message":"m","cluster":"c","machine":"h","new_column":"x"}"#;
        assert_eq!(LogRecord::from_json_line(line).unwrap().level, Level::Warn);
    }

    #[test]
    fn invalid_lines_are_errors_not_panics() {
        for bad in [
            "",
            "not json",
            "{}",
            // Ids are UUIDs (the Parquet column holds 16 bytes).
            r#"{"id":"a","seq":1,"timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"m","cluster":"c","machine":"h"}"#,
            r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":1,"timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"m","cluster":"c","machine":"h","request_id":"r-1"}"#,
            r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":-1,"timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"m","cluster":"c","machine":"h"}"#,
            r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":1,"timestamp":"yesterday","level":"INFO","target":"t","message":"m","cluster":"c","machine":"h"}"#,
            r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":1,"timestamp":"2026-01-01T00:00:00Z","level":"LOUD","target":"t","message":"m","cluster":"c","machine":"h"}"#,
            r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":1,"timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"m","cluster":"c","machine":"h","status":"200"}"#,
        ] {
            assert!(LogRecord::from_json_line(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn timestamps_with_offsets_are_normalised_to_utc_micros() {
        let line = r#"{"id":"01930000-0000-7000-8000-00000000000a","seq":1,"timestamp":"2026-03-01T01:00:00.1234567+01:00","level":"INFO","target":"t","message":"m","cluster":"c","machine":"h"}"#;
        let record = LogRecord::from_json_line(line).unwrap();
        assert_eq!(
            LogRecord::format_timestamp(&record.timestamp),
            "2026-03-01T00:00:00.123456Z"
        );
    }
}
