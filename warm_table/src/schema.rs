//! The table's columns: the log record's in Delta's types (ids `binary`, unsigned counts as
//! signed `long`/`integer`, `timestamp` in UTC microseconds), plus `date` (`YYYY-MM-DD`) and
//! `hour` (`HH`); partitioned by `date`, `hour`, `cluster`, so data files sit under
//! `date=/hour=/cluster=/part-*.parquet` and a cluster's hour is skipped or read as a whole.

use anyhow::Context;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use logrecord::LogRecord;
use std::sync::{Arc, LazyLock};

/// The table's partition columns, in directory order.
pub const PARTITION_COLUMNS: [&str; 3] = logrecord::layout::WARM_PARTITIONS;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = logrecord::schema()
        .fields()
        .iter()
        .map(|field| {
            Field::new(
                field.name(),
                delta_type(field.data_type()),
                field.is_nullable(),
            )
        })
        .collect();
    for name in logrecord::layout::HOUR_PARTITIONS {
        fields.push(Field::new(name, DataType::Utf8, false));
    }
    Arc::new(Schema::new(fields))
});

/// Delta has no unsigned or fixed-size binary types: the record's are stored in the nearest
/// Delta type that holds every value (`seq` and the counts stay below 2^63, checked on intake).
fn delta_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::FixedSizeBinary(_) => DataType::Binary,
        DataType::UInt64 => DataType::Int64,
        DataType::UInt16 => DataType::Int32,
        other => other.clone(),
    }
}

/// The table's Arrow schema (partition columns included).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Records -> one batch in the table's file schema (partition columns left out: `cluster` is
/// dropped by the writer, `date` and `hour` come from the partition values).
pub fn to_file_batch(records: &[LogRecord]) -> anyhow::Result<RecordBatch> {
    let batch = logrecord::to_record_batch(records)?;
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| cast(column, &delta_type(column.data_type())))
        .collect::<Result<_, _>>()?;
    let fields: Vec<Field> = SCHEMA.fields()[..columns.len()]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Rows read from the table (any column order, partition columns as text or dictionaries) ->
/// records.
pub fn to_records(batch: &RecordBatch) -> anyhow::Result<Vec<LogRecord>> {
    let record_schema = logrecord::schema();
    let columns: Vec<ArrayRef> = record_schema
        .fields()
        .iter()
        .map(|field| {
            let mut column = batch
                .column_by_name(field.name())
                .with_context(|| format!("no column {}", field.name()))?
                .clone();
            // Readers hand binaries over as views, which cast to fixed sizes only via `Binary`.
            if column.data_type() == &DataType::BinaryView {
                column = cast(&column, &DataType::Binary)?;
            }
            Ok(cast(&column, field.data_type())?)
        })
        .collect::<anyhow::Result<_>>()?;
    let batch = RecordBatch::try_new(record_schema, columns)?;
    Ok(logrecord::from_record_batch(&batch)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_tables_types() {
        let line = r#"{"seq":9223372036854775807,"id":"01930000-0000-7000-8000-000000000001","timestamp":"2026-01-01T00:00:00.123456Z","level":"INFO","target":"imds::request","message":"m","cluster":"east","machine":"host-1","request_id":"4fa4fc1c-0000-4000-8000-000000000002","status":65535,"latency_us":12,"response_bytes":9223372036854775807}"#;
        let records = vec![LogRecord::from_json_line(line).unwrap_or_else(|e| panic!("{e}"))];
        let batch = to_file_batch(&records).unwrap_or_else(|e| panic!("{e}"));
        let types: Vec<&DataType> = ["id", "seq", "status", "latency_us"]
            .iter()
            .map(|name| {
                batch
                    .schema_ref()
                    .field_with_name(name)
                    .map(|f| f.data_type())
            })
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            types,
            [
                &DataType::Binary,
                &DataType::Int64,
                &DataType::Int32,
                &DataType::Int64
            ]
        );
        assert_eq!(
            to_records(&batch).unwrap_or_else(|e| panic!("{e}")),
            records
        );
        // The table adds date and hour after the record's columns; cluster is the record's.
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[names.len() - 2..], ["date", "hour"]);
        assert!(names.contains(&"cluster"));
        assert_eq!(PARTITION_COLUMNS, ["date", "hour", "cluster"]);
    }
}
