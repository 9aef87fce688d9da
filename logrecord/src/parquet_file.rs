//! Parquet files of log records, written so that a reader never sees a partial file: the rows go
//! to a hidden temporary file in the target directory (`.writing-*`, which readers skip), the file
//! is closed, its footer re-read to verify the row count, fsynced, and only then renamed to its
//! final name (and the directory fsynced). Rows are sorted by time; columns are zstd-compressed.
//!
//! Two steps, so a caller can stage several files and make them visible together after it has
//! recorded its intent: [`stage`] then [`StagedFile::publish`].

use crate::{LogRecord, to_record_batch};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowRowGroupWriterFactory, ArrowWriterOptions, compute_leaves,
};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, LogicalType, Type as PhysicalType, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, SchemaDescriptor, Type};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Prefix of files being written: hidden, so readers skip them, and recognisable, so a writer can
/// remove the ones a crash left behind.
pub const TEMP_PREFIX: &str = ".writing-";

/// Rows per row group: big enough for good compression, small enough that a one-machine lookup
/// can skip most of a file by its statistics.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Why a Parquet file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("i/o on {path}: {source}")]
    /// A file could not be created, written, synced or renamed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    #[error("arrow: {0}")]
    /// Arrow refused the data.
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    /// The Parquet encoder failed.
    Parquet(#[from] ParquetError),
    #[error("{path}: wrote {expected} rows but the footer says {found}")]
    /// The file read back does not hold what was written.
    RowCount {
        /// The file.
        path: PathBuf,
        /// Rows written.
        expected: usize,
        /// Rows its footer counts.
        found: i64,
    },
}

/// A complete, verified, fsynced file under a temporary name.
#[derive(Debug)]
pub struct StagedFile {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
    rows: usize,
}

/// A published file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The file written.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: usize,
    /// Its size, bytes.
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `records` (sorted here by timestamp, then sequence) to a temporary file beside `path`.
pub fn stage(path: &Path, records: &mut [LogRecord]) -> Result<StagedFile, WriteError> {
    let mut writer = StagingWriter::create(path)?;
    writer.write(records)?;
    writer.finish()
}

/// Writes a Parquet file a row group at a time; [`StagingWriter::finish`] verifies and fsyncs it.
/// Row groups can be encoded on other threads ([`StagingWriter::encoder`]) and appended in order.
pub struct StagingWriter {
    temp: tempfile::NamedTempFile,
    writer: SerializedFileWriter<File>,
    encoder: RowGroupEncoder,
    path: PathBuf,
    rows: usize,
}

impl std::fmt::Debug for StagingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagingWriter")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

/// How the columns are encoded. Dictionaries suit the low-cardinality text and numbers; the
/// monotonic `seq` and `timestamp` are stored as deltas (a few bits a row instead of a dictionary
/// index that never repeats); the unique ids skip the dictionary attempt, which can only fail,
/// and are stored plain with zstd's fastest level: random bytes do not compress, and the shared
/// time prefix of UUIDv7s sorted by time is found at any level.
pub fn writer_properties() -> Result<WriterProperties, ParquetError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for monotonic in ["seq", "timestamp"] {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(monotonic), false)
            .set_column_encoding(ColumnPath::from(monotonic), Encoding::DELTA_BINARY_PACKED);
    }
    for unique in uuid_columns() {
        let unique = unique.as_str();
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(unique), false)
            .set_column_encoding(ColumnPath::from(unique), Encoding::PLAIN)
            .set_column_compression(
                ColumnPath::from(unique),
                Compression::ZSTD(ZstdLevel::try_new(1)?),
            );
    }
    Ok(builder.build())
}

/// The columns of [`crate::UUID`] type (the ids).
fn uuid_columns() -> Vec<String> {
    crate::schema()
        .fields()
        .iter()
        .filter(|f| f.data_type() == &crate::UUID)
        .map(|f| f.name().clone())
        .collect()
}

/// The Parquet schema of [`crate::schema`], with the ids marked as Parquet's UUID logical type, so
/// other readers (DuckDB, Spark, pandas) show them as UUIDs rather than as bytes. parquet's own
/// mapping needs its `arrow_canonical_extension_types` feature for that, which would rebuild the
/// whole Arrow and DataFusion tree for two annotations.
fn parquet_schema() -> Result<SchemaDescriptor, ParquetError> {
    let derived = ArrowSchemaConverter::new().convert(&crate::schema())?;
    let root = derived.root_schema();
    let uuids = uuid_columns();
    let fields = root
        .get_fields()
        .iter()
        .map(|field| {
            let info = field.get_basic_info();
            if !uuids.iter().any(|name| name == info.name()) {
                return Ok(field.clone());
            }
            let uuid =
                Type::primitive_type_builder(info.name(), PhysicalType::FIXED_LEN_BYTE_ARRAY)
                    .with_repetition(info.repetition())
                    .with_length(16)
                    .with_logical_type(Some(LogicalType::Uuid))
                    .build()?;
            Ok(Arc::new(uuid))
        })
        .collect::<Result<Vec<_>, ParquetError>>()?;
    let root = Type::group_type_builder(root.name())
        .with_fields(fields)
        .build()?;
    Ok(SchemaDescriptor::new(Arc::new(root)))
}

impl StagingWriter {
    /// Starts a file at a temporary name beside `path`; it appears at `path` only once finished.
    pub fn create(path: &Path) -> Result<Self, WriteError> {
        let dir = crate::durable::directory_of(path);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".parquet")
            .tempfile_in(dir)
            .map_err(io(dir))?;
        let file = temp.as_file().try_clone().map_err(io(temp.path()))?;
        // ArrowWriter sets up the Parquet schema and the embedded Arrow schema (the `UTC` zone,
        // unsigned types); row groups are then written directly, so they can be encoded anywhere.
        let options = ArrowWriterOptions::new()
            .with_properties(writer_properties()?)
            .with_parquet_schema(parquet_schema()?);
        let (writer, factory) = ArrowWriter::try_new_with_options(file, crate::schema(), options)?
            .into_serialized_writer()?;
        Ok(StagingWriter {
            temp,
            writer,
            encoder: RowGroupEncoder(Arc::new(factory)),
            path: path.to_owned(),
            rows: 0,
        })
    }

    /// An encoder for this file's row groups, to use on any thread.
    pub fn encoder(&self) -> RowGroupEncoder {
        self.encoder.clone()
    }

    /// Sorts `records` by time and appends them (as row groups of at most [`ROW_GROUP_ROWS`]).
    pub fn write(&mut self, records: &mut [LogRecord]) -> Result<(), WriteError> {
        records.sort_by(|a, b| {
            (a.timestamp, &a.machine, a.seq).cmp(&(b.timestamp, &b.machine, b.seq))
        });
        for chunk in records.chunks(ROW_GROUP_ROWS) {
            let group = self.encoder.encode(&to_record_batch(chunk)?)?;
            self.append(group)?;
        }
        Ok(())
    }

    /// Appends an encoded row group after the ones already written.
    pub fn append(&mut self, group: EncodedRowGroup) -> Result<(), WriteError> {
        if group.rows == 0 {
            return Ok(());
        }
        let mut row_group = self.writer.next_row_group()?;
        for chunk in group.chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.rows += group.rows;
        Ok(())
    }

    /// Closes the file, checks its footer holds every row written, and fsyncs it.
    pub fn finish(self) -> Result<StagedFile, WriteError> {
        let StagingWriter {
            temp,
            writer,
            path,
            rows,
            ..
        } = self;
        writer.close()?;
        let found = SerializedFileReader::new(File::open(temp.path()).map_err(io(temp.path()))?)?
            .metadata()
            .file_metadata()
            .num_rows();
        if found != rows as i64 {
            return Err(WriteError::RowCount {
                path,
                expected: rows,
                found,
            });
        }
        temp.as_file().sync_all().map_err(io(temp.path()))?;
        Ok(StagedFile { temp, path, rows })
    }
}

/// Encodes and compresses a batch into a row group's column chunks, off the writing thread.
#[derive(Debug, Clone)]
pub struct RowGroupEncoder(Arc<ArrowRowGroupWriterFactory>);

/// A row group ready to be appended ([`StagingWriter::append`]).
#[derive(Debug)]
pub struct EncodedRowGroup {
    chunks: Vec<ArrowColumnChunk>,
    rows: usize,
}

impl RowGroupEncoder {
    /// Encodes one row group, ready to append (encoding can run on another thread).
    pub fn encode(&self, batch: &RecordBatch) -> Result<EncodedRowGroup, WriteError> {
        // The row group index only matters for encryption, which these files do not use.
        let mut writers = self.0.create_column_writers(0)?;
        // The schema is flat: one Parquet leaf per Arrow column.
        for ((writer, field), column) in writers
            .iter_mut()
            .zip(batch.schema().fields())
            .zip(batch.columns())
        {
            for leaf in compute_leaves(field, column)? {
                writer.write(&leaf)?;
            }
        }
        let chunks = writers
            .into_iter()
            .map(|w| w.close())
            .collect::<Result<_, _>>()?;
        Ok(EncodedRowGroup {
            chunks,
            rows: batch.num_rows(),
        })
    }
}

impl StagedFile {
    /// The final name this file will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Renames the file to its final name (replacing any file there) and fsyncs the directory.
    pub fn publish(self) -> Result<WrittenFile, WriteError> {
        let bytes = self
            .temp
            .as_file()
            .metadata()
            .map_err(io(&self.path))?
            .len();
        self.temp.persist(&self.path).map_err(|e| WriteError::Io {
            path: self.path.clone(),
            source: e.error,
        })?;
        let dir = crate::durable::directory_of(&self.path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(WrittenFile {
            path: self.path,
            rows: self.rows,
            bytes,
        })
    }
}

/// [`stage`] and [`StagedFile::publish`] in one call.
pub fn write(path: &Path, records: &mut [LogRecord]) -> Result<WrittenFile, WriteError> {
    stage(path, records)?.publish()
}

/// Reads every record of a Parquet file of the log record schema.
pub fn read(path: &Path) -> Result<Vec<LogRecord>, crate::ReadError> {
    let file = File::open(path).map_err(|e| crate::ReadError::Io(path.to_owned(), e))?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut records = Vec::new();
    for batch in reader {
        records.extend(crate::from_record_batch(&batch?)?);
    }
    Ok(records)
}

/// Every data Parquet file under `root` (a hive layout: the agent's hourly Parquet), sorted,
/// skipping hidden (`.`) and internal (`_`) names: files being written are not data.
pub fn list(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(['.', '_']) {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::request_record;

    #[test]
    fn files_round_trip_sorted_and_appear_only_when_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("date=2024-02-29/hour=23/part-0.parquet");
        let mut later = request_record();
        later.timestamp += chrono::Duration::seconds(1);
        later.id = crate::Uuid::from_u128(2);
        later.fields = Some(serde_json::from_str(r#"{"k":[1,2]}"#).unwrap());
        let earlier = request_record();
        let mut records = vec![later.clone(), earlier.clone()];

        let staged = stage(&path, &mut records).unwrap();
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(
            names[0].starts_with(".writing-"),
            "staged files are hidden: {names:?}"
        );
        assert!(!path.exists());

        let written = staged.publish().unwrap();
        assert_eq!((written.rows, written.path.as_path()), (2, path.as_path()));
        assert!(written.bytes > 0);
        assert_eq!(read(&path).unwrap(), vec![earlier, later]);
        assert_eq!(list(dir.path()), vec![path.clone()]);
    }

    #[test]
    fn ids_are_parquet_uuids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.parquet");
        write(&path, &mut [request_record()]).unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        for name in ["id", "request_id"] {
            let column = schema
                .columns()
                .iter()
                .find(|c| c.name() == name)
                .unwrap()
                .clone();
            assert_eq!(
                (column.physical_type(), column.type_length()),
                (PhysicalType::FIXED_LEN_BYTE_ARRAY, 16),
                "{name}"
            );
            assert_eq!(
                column.logical_type_ref(),
                Some(&LogicalType::Uuid),
                "{name}"
            );
        }
    }
}
