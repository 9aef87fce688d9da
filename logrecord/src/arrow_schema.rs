//! The Arrow schema of the log record, defined once, and the conversion of records into a batch.
//!
//! Column order and names are the contract the Parquet stores and SQL queries rely on: add new
//! columns at the end, nullable, and never rename or retype one.
//!
//! The two ids are 16-byte `FixedSizeBinary` columns (Parquet's UUID type, see
//! `parquet_file`): as 36-character text they were 88% of a compressed file's bytes, and text
//! cannot compress below its 18 bytes of symbol entropy a value. `query` shows them as text.

use crate::json_line::RecordRef;
use crate::{LogRecord, Uuid};
use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt16Builder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use std::sync::{Arc, LazyLock};

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let uuid = |name: &str, nullable: bool| Field::new(name, UUID, nullable);
    Arc::new(Schema::new(vec![
        uuid("id", false),
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
        uuid("request_id", true),
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

/// The Arrow type of the `id` and `request_id` columns: a UUID's 16 bytes, big-endian.
pub const UUID: DataType = DataType::FixedSizeBinary(16);

/// The Arrow schema of [`LogRecord`]: typed columns, ids as 16 bytes ([`UUID`]), `timestamp` in
/// UTC microseconds, `fields` a JSON string.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Builds one record batch of [`schema`] from records, in the order given.
pub fn to_record_batch(records: &[LogRecord]) -> Result<RecordBatch, ArrowError> {
    let mut builder = BatchBuilder::with_capacity(records.len());
    for record in records {
        builder.append(&RecordRef::of(record));
    }
    builder.finish()
}

/// The columns of [`schema`] being filled, a record at a time.
pub(crate) struct BatchBuilder {
    id: FixedSizeBinaryBuilder,
    seq: UInt64Builder,
    timestamp: TimestampMicrosecondBuilder,
    level: StringBuilder,
    target: StringBuilder,
    message: StringBuilder,
    cluster: StringBuilder,
    machine: StringBuilder,
    request_id: FixedSizeBinaryBuilder,
    method: StringBuilder,
    path: StringBuilder,
    api_version: StringBuilder,
    format: StringBuilder,
    status: UInt16Builder,
    latency_us: UInt64Builder,
    response_bytes: UInt64Builder,
    caller: StringBuilder,
    fields: StringBuilder,
}

impl BatchBuilder {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        // Byte capacities are guesses from the agent's request lines; builders grow as needed.
        let strings =
            |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        let uuids = || FixedSizeBinaryBuilder::with_capacity(rows, 16);
        BatchBuilder {
            id: uuids(),
            seq: UInt64Builder::with_capacity(rows),
            timestamp: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            level: strings(5),
            target: strings(16),
            message: strings(16),
            cluster: strings(8),
            machine: strings(16),
            request_id: uuids(),
            method: strings(3),
            path: strings(32),
            api_version: strings(10),
            format: strings(4),
            status: UInt16Builder::with_capacity(rows),
            latency_us: UInt64Builder::with_capacity(rows),
            response_bytes: UInt64Builder::with_capacity(rows),
            caller: strings(12),
            fields: strings(0),
        }
    }

    pub(crate) fn append(&mut self, r: &RecordRef<'_>) {
        append_uuid(&mut self.id, Some(r.id));
        self.seq.append_value(r.seq);
        self.timestamp.append_value(r.timestamp.timestamp_micros());
        self.level.append_value(r.level.as_str());
        self.target.append_value(&r.target.0);
        self.message.append_value(&r.message.0);
        self.cluster.append_value(&r.cluster.0);
        self.machine.append_value(&r.machine.0);
        append_uuid(&mut self.request_id, r.request_id);
        self.method.append_option(r.method.as_ref().map(|t| &t.0));
        self.path.append_option(r.path.as_ref().map(|t| &t.0));
        self.api_version
            .append_option(r.api_version.as_ref().map(|t| &t.0));
        self.format.append_option(r.format.as_ref().map(|t| &t.0));
        self.status.append_option(r.status);
        self.latency_us.append_option(r.latency_us);
        self.response_bytes.append_option(r.response_bytes);
        self.caller.append_option(r.caller.as_ref().map(|t| &t.0));
        self.fields.append_option(r.fields_json());
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.target.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.cluster.finish()),
            Arc::new(self.machine.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.api_version.finish()),
            Arc::new(self.format.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.latency_us.finish()),
            Arc::new(self.response_bytes.finish()),
            Arc::new(self.caller.finish()),
            Arc::new(self.fields.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

fn append_uuid(column: &mut FixedSizeBinaryBuilder, id: Option<Uuid>) {
    match id {
        // 16 bytes into a 16-byte column: the length check cannot fail.
        Some(id) => column.append_value(id.as_bytes()).unwrap_or_default(),
        None => column.append_null(),
    }
}

/// Why a batch (or file) could not be read back as records.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {0}: {1}")]
    /// The file could not be read.
    Io(std::path::PathBuf, std::io::Error),
    #[error("parquet: {0}")]
    /// Not Parquet, or a damaged file.
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    /// Arrow refused the data.
    Arrow(#[from] ArrowError),
    #[error("column {0} is missing or not of the log record's type")]
    /// A column the record needs is missing or of another type.
    Column(&'static str),
    /// A value is not one the record allows.
    #[error("row {row}: {problem}")]
    Value {
        /// The row, from 0.
        row: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// Reads records back from a batch of [`schema`] (columns found by name, so files written before
/// an additive schema change read with the new columns as null).
pub fn from_record_batch(batch: &RecordBatch) -> Result<Vec<LogRecord>, ReadError> {
    use arrow::array::{Array, AsArray, FixedSizeBinaryArray, StringArray};
    use arrow::datatypes::{TimestampMicrosecondType, UInt16Type, UInt64Type};

    let required = |name: &'static str| batch.column_by_name(name).ok_or(ReadError::Column(name));
    let text = |name: &'static str| -> Result<&StringArray, ReadError> {
        required(name)?
            .as_string_opt::<i32>()
            .ok_or(ReadError::Column(name))
    };
    let optional_text = |name: &'static str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
    };
    let optional_u64 = |name: &'static str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
    };
    let uuids = |name: &'static str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_fixed_size_binary_opt())
            .filter(|c| c.value_length() == 16)
    };
    let get_uuid = |column: Option<&FixedSizeBinaryArray>, row: usize| {
        column
            .filter(|c| c.is_valid(row))
            .and_then(|c| Uuid::from_slice(c.value(row)).ok())
    };
    let get_text = |column: Option<&StringArray>, row: usize| {
        column
            .filter(|c| c.is_valid(row))
            .map(|c| c.value(row).to_owned())
    };
    let get_u64 = |column: Option<&arrow::array::PrimitiveArray<UInt64Type>>, row: usize| {
        column.filter(|c| c.is_valid(row)).map(|c| c.value(row))
    };

    let id = uuids("id").ok_or(ReadError::Column("id"))?;
    let (level, target, message) = (text("level")?, text("target")?, text("message")?);
    let (cluster, machine) = (text("cluster")?, text("machine")?);
    let seq = required("seq")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or(ReadError::Column("seq"))?;
    let timestamp = required("timestamp")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or(ReadError::Column("timestamp"))?;
    let status = batch
        .column_by_name("status")
        .and_then(|c| c.as_primitive_opt::<UInt16Type>());
    let (request_id, method, path) = (
        uuids("request_id"),
        optional_text("method"),
        optional_text("path"),
    );
    let (api_version, format, caller) = (
        optional_text("api_version"),
        optional_text("format"),
        optional_text("caller"),
    );
    let (latency_us, response_bytes) = (optional_u64("latency_us"), optional_u64("response_bytes"));
    let fields = optional_text("fields");

    (0..batch.num_rows())
        .map(|row| {
            let bad = |problem: String| ReadError::Value { row, problem };
            let timestamp = chrono::DateTime::from_timestamp_micros(timestamp.value(row))
                .ok_or_else(|| bad("timestamp out of range".into()))?;
            let fields = match get_text(fields, row) {
                None => None,
                Some(json) => match serde_json::from_str(&json) {
                    Ok(serde_json::Value::Object(map)) => Some(map),
                    _ => return Err(bad(format!("fields is not a JSON object: {json}"))),
                },
            };
            Ok(LogRecord {
                id: get_uuid(Some(id), row).ok_or_else(|| bad("id is null".into()))?,
                seq: seq.value(row),
                timestamp,
                level: level.value(row).parse().map_err(bad)?,
                target: target.value(row).to_owned(),
                message: message.value(row).to_owned(),
                cluster: cluster.value(row).to_owned(),
                machine: machine.value(row).to_owned(),
                request_id: get_uuid(request_id, row),
                method: get_text(method, row),
                path: get_text(path, row),
                api_version: get_text(api_version, row),
                format: get_text(format, row),
                status: status.filter(|c| c.is_valid(row)).map(|c| c.value(row)),
                latency_us: get_u64(latency_us, row),
                response_bytes: get_u64(response_bytes, row),
                caller: get_text(caller, row),
                fields,
            })
        })
        .collect()
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
        assert_eq!(
            col("id").as_fixed_size_binary().value(0),
            request.id.as_bytes()
        );
        assert_eq!(
            col("request_id").as_fixed_size_binary().value(0),
            request.request_id.unwrap().as_bytes()
        );
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
        let plain = {
            let mut p = request_record();
            p.request_id = None;
            p.status = None;
            p.fields = Some(serde_json::from_str(r#"{"error":"disk full"}"#).unwrap());
            p
        };
        assert_eq!(from_record_batch(&batch).unwrap(), vec![request, plain]);
    }
}
