//! Parsing a JSON line without copying it: [`RecordRef`] borrows every string from the line (only
//! a string with escapes is copied), so the roller turns lines into Arrow columns without
//! allocating per field. [`LogRecord::from_json_line`] parses through it too: one parser, one
//! notion of a valid line.

use crate::{Level, LogRecord, Uuid};
use chrono::{DateTime, Utc};
use serde::de::{Deserialize, Deserializer, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A string field of a line: borrowed from the line unless it held escapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

impl<'a> Text<'a> {
    fn of(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }
}

/// The fields of [`LogRecord`], borrowed (same names, same rules: see there).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RecordRef<'a> {
    pub seq: u64,
    pub id: Uuid,
    #[serde(deserialize_with = "crate::timestamp_micros::deserialize")]
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    #[serde(borrow)]
    pub target: Text<'a>,
    #[serde(borrow)]
    pub message: Text<'a>,
    #[serde(borrow)]
    pub cluster: Text<'a>,
    #[serde(borrow)]
    pub machine: Text<'a>,
    #[serde(default)]
    pub request_id: Option<Uuid>,
    #[serde(default, borrow)]
    pub method: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub path: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub api_version: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub format: Option<Text<'a>>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub latency_us: Option<u64>,
    #[serde(default)]
    pub response_bytes: Option<u64>,
    #[serde(default, borrow)]
    pub caller: Option<Text<'a>>,
    #[serde(default)]
    pub fields: Option<Cow<'a, Map<String, Value>>>,
}

impl<'a> RecordRef<'a> {
    /// Parses one JSON line (a trailing newline is allowed).
    pub(crate) fn parse(line: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches(['\n', '\r']))
    }

    /// A view of an owned record.
    pub(crate) fn of(r: &'a LogRecord) -> Self {
        let text = |t: &'a Option<String>| t.as_deref().map(Text::of);
        RecordRef {
            seq: r.seq,
            id: r.id,
            timestamp: r.timestamp,
            level: r.level,
            target: Text::of(&r.target),
            message: Text::of(&r.message),
            cluster: Text::of(&r.cluster),
            machine: Text::of(&r.machine),
            request_id: r.request_id,
            method: text(&r.method),
            path: text(&r.path),
            api_version: text(&r.api_version),
            format: text(&r.format),
            status: r.status,
            latency_us: r.latency_us,
            response_bytes: r.response_bytes,
            caller: text(&r.caller),
            fields: r.fields.as_ref().map(Cow::Borrowed),
        }
    }

    /// `fields` as the JSON text stored in its column.
    pub(crate) fn fields_json(&self) -> Option<String> {
        // Serializing a JSON map cannot fail.
        self.fields
            .as_ref()
            .map(|f| serde_json::to_string(&**f).unwrap_or_default())
    }

    pub(crate) fn into_owned(self) -> LogRecord {
        let text = |t: Option<Text<'a>>| t.map(|t| t.0.into_owned());
        LogRecord {
            seq: self.seq,
            id: self.id,
            timestamp: self.timestamp,
            level: self.level,
            target: self.target.0.into_owned(),
            message: self.message.0.into_owned(),
            cluster: self.cluster.0.into_owned(),
            machine: self.machine.0.into_owned(),
            request_id: self.request_id,
            method: text(self.method),
            path: text(self.path),
            api_version: text(self.api_version),
            format: text(self.format),
            status: self.status,
            latency_us: self.latency_us,
            response_bytes: self.response_bytes,
            caller: text(self.caller),
            fields: self.fields.map(Cow::into_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let line = r#"{"seq":1,"id":"01930000-0000-7000-8000-00000000000a","timestamp":"2026-01-01T00:00:00Z","level":"INFO","target":"t","message":"say \"hi\"","cluster":"c","machine":"h","path":"/p"}"#;
        let record = RecordRef::parse(line).unwrap();
        assert!(matches!(record.target.0, Cow::Borrowed("t")));
        assert!(matches!(record.path, Some(Text(Cow::Borrowed("/p")))));
        assert_eq!(record.message.0, r#"say "hi""#);
        assert!(matches!(record.message.0, Cow::Owned(_)));
    }
}
