//! The Arrow schema of the log record, defined once, and the conversion of records into a batch.
//!
//! Column order and names are the contract the Parquet stores and SQL queries rely on: add new
//! columns at the end, nullable, and never rename or retype one.

use crate::LogRecord;
use arrow::array::{
    ArrayRef, StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use std::sync::{Arc, LazyLock};

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        utf8("id", false),
        Field::new("seq", DataType::UInt64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        utf8("level", false),
        utf8("target", false),
        utf8("message", false),
        utf8("cluster", false),
        utf8("machine", false),
        utf8("request_id", true),
        utf8("method", true),
        utf8("path", true),
        utf8("api_version", true),
        utf8("format", true),
        Field::new("status", DataType::UInt16, true),
        Field::new("latency_us", DataType::UInt64, true),
        Field::new("response_bytes", DataType::UInt64, true),
        utf8("caller", true),
        utf8("fields", true),
    ]))
});

/// The Arrow schema of [`LogRecord`]: typed columns, `timestamp` in UTC microseconds, `fields` a
/// JSON string.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Builds one record batch of [`schema`] from records, in the order given.
pub fn to_record_batch(records: &[LogRecord]) -> Result<RecordBatch, ArrowError> {
    let n = records.len();
    let strings = || StringBuilder::with_capacity(n, n * 16);
    let (mut id, mut level, mut target, mut message) = (strings(), strings(), strings(), strings());
    let (mut cluster, mut machine, mut request_id, mut method) =
        (strings(), strings(), strings(), strings());
    let (mut path, mut api_version, mut format, mut caller, mut fields) =
        (strings(), strings(), strings(), strings(), strings());
    let mut seq = UInt64Builder::with_capacity(n);
    let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut status = UInt16Builder::with_capacity(n);
    let mut latency_us = UInt64Builder::with_capacity(n);
    let mut response_bytes = UInt64Builder::with_capacity(n);

    for r in records {
        id.append_value(&r.id);
        seq.append_value(r.seq);
        timestamp.append_value(r.timestamp.timestamp_micros());
        level.append_value(r.level.as_str());
        target.append_value(&r.target);
        message.append_value(&r.message);
        cluster.append_value(&r.cluster);
        machine.append_value(&r.machine);
        request_id.append_option(r.request_id.as_deref());
        method.append_option(r.method.as_deref());
        path.append_option(r.path.as_deref());
        api_version.append_option(r.api_version.as_deref());
        format.append_option(r.format.as_deref());
        status.append_option(r.status);
        latency_us.append_option(r.latency_us);
        response_bytes.append_option(r.response_bytes);
        caller.append_option(r.caller.as_deref());
        fields.append_option(
            r.fields
                .as_ref()
                .map(|f| serde_json::Value::Object(f.clone()).to_string()),
        );
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(seq.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(level.finish()),
        Arc::new(target.finish()),
        Arc::new(message.finish()),
        Arc::new(cluster.finish()),
        Arc::new(machine.finish()),
        Arc::new(request_id.finish()),
        Arc::new(method.finish()),
        Arc::new(path.finish()),
        Arc::new(api_version.finish()),
        Arc::new(format.finish()),
        Arc::new(status.finish()),
        Arc::new(latency_us.finish()),
        Arc::new(response_bytes.finish()),
        Arc::new(caller.finish()),
        Arc::new(fields.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::request_record;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{TimestampMicrosecondType, UInt16Type, UInt64Type};

    #[test]
    fn batch_holds_every_field_in_its_typed_column() {
        let request = request_record();
        let mut plain = request_record();
        plain.request_id = None;
        plain.status = None;
        plain.fields = Some(serde_json::from_str(r#"{"error":"disk full"}"#).unwrap());

        let batch = to_record_batch(&[request.clone(), plain]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), schema());

        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        assert_eq!(col("id").as_string::<i32>().value(0), request.id);
        assert_eq!(col("seq").as_primitive::<UInt64Type>().value(0), 7);
        assert_eq!(
            col("timestamp")
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            request.timestamp.timestamp_micros()
        );
        assert_eq!(col("level").as_string::<i32>().value(1), "INFO");
        assert_eq!(col("status").as_primitive::<UInt16Type>().value(0), 200);
        assert!(col("status").is_null(1));
        assert!(col("request_id").is_null(1));
        assert!(col("fields").is_null(0));
        assert_eq!(
            col("fields").as_string::<i32>().value(1),
            r#"{"error":"disk full"}"#
        );
        assert_eq!(col("latency_us").as_primitive::<UInt64Type>().value(0), 85);
    }
}
