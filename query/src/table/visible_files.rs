//! The object store `query` reads through: the real store (local files, S3). Listings (of hive
//! layouts; a Delta table's files come from its log) are filtered to the files that are data:
//! hidden (`.writing-*`) and internal (`_*`) names never are. Reads go straight to the real
//! store, counted (the progress display shows the bytes read), with every Parquet footer checked
//! before a Parquet reader sees it (Delta tables' files included).
//!
//! Listings are also where a wrong answer is stopped before it starts: DataFusion skips empty
//! files without a word and takes any `date=`/`hour=` directory name as a partition value, so a
//! zero-length `.parquet` file is an error naming it, and a partition directory whose value is not
//! a date (`YYYY-MM-DD`) or an hour (`00`-`23`) is skipped with a warning naming it.

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::DataType;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A store whose listings show only data files.
#[derive(Debug, Clone)]
pub(crate) struct VisibleFiles {
    inner: Arc<dyn ObjectStore>,
    /// Set when `inner` is the local file system: plain reads are then done in place.
    local: Option<Arc<LocalFileSystem>>,
    bytes_read: Arc<AtomicU64>,
    /// Partition directories already warned about (a statement lists several times).
    warned: Arc<Mutex<BTreeSet<String>>>,
}

impl VisibleFiles {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, bytes_read: Arc<AtomicU64>) -> Self {
        VisibleFiles {
            inner,
            local: None,
            bytes_read,
            warned: Arc::default(),
        }
    }

    /// Over the local file system, reading in place (`crate::source::local_reads`).
    pub(crate) fn local(bytes_read: Arc<AtomicU64>) -> Self {
        let local = Arc::new(LocalFileSystem::new());
        VisibleFiles {
            inner: local.clone(),
            local: Some(local),
            bytes_read,
            warned: Arc::default(),
        }
    }
}

/// Bytes of a Parquet file's end: metadata length (u32, little-endian) and `PAR1`.
const FOOTER: u64 = 8;

/// A read that ends at a Parquet file's end carries its footer: checks that the metadata length
/// it gives fits in the file before any Parquet reader sees it. A crafted length (`PAR1`, zeros,
/// a huge length, `PAR1`) made the parquet crate's decoder overflow and panic.
async fn check_footer(result: GetResult) -> Result<GetResult> {
    let (meta, range, attributes) = (
        result.meta.clone(),
        result.range.clone(),
        result.attributes.clone(),
    );
    let bytes = result.bytes().await?;
    let size = meta.size;
    let damaged = |why: String| object_store::Error::Generic {
        store: "log store",
        source: format!("{}: not a valid Parquet file: {why}", meta.location).into(),
    };
    if size < 12 {
        return Err(damaged(format!(
            "{size} bytes, shorter than Parquet's header and footer"
        )));
    }
    if bytes.len() as u64 >= FOOTER {
        footer_fits(&meta.location, &bytes, size)?;
    }
    Ok(GetResult {
        payload: object_store::GetResultPayload::Stream(
            stream::once(async move { Ok(bytes) }).boxed(),
        ),
        meta,
        range,
        attributes,
    })
}

/// `data` ends at the end of a `size`-byte Parquet file: its footer must end in `PAR1` and give a
/// metadata length that fits in the file.
fn footer_fits(location: &Path, data: &[u8], size: u64) -> Result<()> {
    let damaged = |why: String| object_store::Error::Generic {
        store: "log store",
        source: format!("{location}: not a valid Parquet file: {why}").into(),
    };
    let tail = &data[data.len() - FOOTER as usize..];
    if &tail[4..] != b"PAR1" {
        return Err(damaged("no PAR1 at its end".into()));
    }
    let metadata_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if metadata_len + FOOTER + 4 > size {
        return Err(damaged(format!(
            "its footer gives {metadata_len} bytes of metadata in a {size}-byte file"
        )));
    }
    // A read holding the whole metadata (readers ask for it in one read, or the footer first
    // and then the metadata with it): decoded and its columns checked here.
    let metadata_end = data.len() - FOOTER as usize;
    if let Some(start) = metadata_end.checked_sub(metadata_len as usize) {
        schema_fits(&data[start..metadata_end]).map_err(damaged)?;
    }
    Ok(())
}

/// The file's schema, decoded from its metadata, has each log record column it holds in a type
/// of that column: decoding a crafted Arrow schema made arrow-ipc panic (caught here: an error
/// naming the file), and a file with an int64 `timestamp` or a text `seq` would be cast to the
/// table's types without a word, giving wrong answers.
fn schema_fits(metadata: &[u8]) -> std::result::Result<(), String> {
    use parquet::file::metadata::ParquetMetaDataReader;
    let decoded = crate::table::damaged::catch(|| {
        let metadata = ParquetMetaDataReader::decode_metadata(metadata)
            .map_err(|error| format!("its metadata does not decode: {error}"))?;
        let file = metadata.file_metadata();
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|error| format!("its schema does not decode: {error}"))
    });
    let schema = match decoded {
        Ok(Ok(schema)) => schema,
        Ok(Err(why)) => return Err(why),
        Err(panic) => return Err(format!("its metadata does not decode ({panic})")),
    };
    let record = logrecord::schema();
    for field in schema.fields() {
        let Ok(wanted) = record.field_with_name(field.name()) else {
            continue;
        };
        if !same_column_type(wanted.data_type(), field.data_type()) {
            return Err(format!(
                "column {} is {} where a log record has {}",
                field.name(),
                field.data_type(),
                wanted.data_type()
            ));
        }
    }
    Ok(())
}

/// Whether a file's column type `stored` holds the log record's `wanted` type as written by the
/// agent, the collector's Delta table (ids as binary, counts signed) or another engine (text and
/// binary in their large or view forms, any timestamp unit in UTC).
fn same_column_type(wanted: &DataType, stored: &DataType) -> bool {
    use DataType::*;
    match (wanted, stored) {
        (Utf8, Utf8 | LargeUtf8 | Utf8View) => true,
        (Utf8, Dictionary(_, values)) => matches!(**values, Utf8 | LargeUtf8 | Utf8View),
        (FixedSizeBinary(16), FixedSizeBinary(16) | Binary | LargeBinary | BinaryView) => true,
        (Timestamp(..), Timestamp(_, Some(zone))) => {
            matches!(zone.as_ref(), "UTC" | "+00:00" | "Z" | "Etc/UTC")
        }
        (UInt64, UInt64 | Int64) | (UInt16, UInt16 | Int32 | Int16 | UInt32) => true,
        _ => wanted == stored,
    }
}

/// The first path segment `name=value` whose value is not valid for that partition column, as
/// the directory up to it.
fn bad_partition(location: &str) -> Option<String> {
    let mut end = 0;
    for segment in location.split('/') {
        end += segment.len() + 1;
        let valid = match segment.split_once('=') {
            Some(("date", value)) => logrecord::layout::parse_date(value).is_some(),
            Some(("hour", value)) => logrecord::layout::parse_hour(value).is_some(),
            _ => true,
        };
        if !valid {
            return Some(location[..end - 1].to_owned());
        }
    }
    None
}

impl VisibleFiles {
    /// Drops what lies under a bad partition directory (warning once per directory), and fails
    /// on an empty Parquet file.
    fn check(&self, objects: Vec<ObjectMeta>) -> Result<Vec<ObjectMeta>> {
        let mut kept = Vec::with_capacity(objects.len());
        let mut links = std::collections::HashMap::new();
        for object in objects {
            if let Some(dir) = bad_partition(object.location.as_ref()) {
                self.warn_once(dir, "not a date=YYYY-MM-DD/hour=HH partition");
                continue;
            }
            if let Some(link) = self.linked_partition(&object.location, &mut links) {
                self.warn_once(link, "a symbolic link (not followed)");
                continue;
            }
            if object.size == 0 && object.location.as_ref().ends_with(".parquet") {
                return Err(object_store::Error::Generic {
                    store: "log store",
                    source: format!(
                        "{}: empty file (0 bytes), not a Parquet file: its rows would be missing from every answer; restore or remove it",
                        object.location
                    )
                    .into(),
                });
            }
            kept.push(object);
        }
        Ok(kept)
    }

    fn warn_once(&self, dir: String, why: &str) {
        let first = self
            .warned
            .lock()
            .map(|mut w| w.insert(dir.clone()))
            .unwrap_or(false);
        if first {
            eprintln!("query: warning: skipping {dir}: {why}, its files are not read");
        }
    }

    /// On the local file system, the first partition directory (`name=value`) on the way to
    /// `location`, or the file itself, that is a symbolic link. The local store follows links
    /// when it lists, so a partition linked to another (or to its own parent) was listed, and
    /// read, twice: every row counted twice. `seen` caches the directories looked at.
    fn linked_partition(
        &self,
        location: &Path,
        seen: &mut std::collections::HashMap<std::path::PathBuf, bool>,
    ) -> Option<String> {
        let local = self.local.as_ref()?;
        let file = local.path_to_filesystem(location).ok()?;
        let mut on_the_way: Vec<&std::path::Path> = file
            .ancestors()
            .skip(1)
            .take_while(|dir| {
                dir.file_name()
                    .is_some_and(|name| name.to_string_lossy().contains('='))
            })
            .collect();
        on_the_way.reverse();
        on_the_way.push(&file);
        on_the_way.into_iter().find_map(|path| {
            let linked = *seen.entry(path.to_owned()).or_insert_with(|| {
                std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
            });
            linked.then(|| path.display().to_string())
        })
    }
}

impl std::fmt::Display for VisibleFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VisibleFiles({})", self.inner)
    }
}

/// Drops hidden (`.`) and internal (`_`) file names: files being written, internal files. None
/// of them is data to a listing. (Only the name: the store's own root may sit under a hidden
/// directory.)
fn keep_data(objects: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    objects
        .into_iter()
        .filter(|object| {
            !object
                .location
                .filename()
                .is_some_and(|name| name.starts_with(['.', '_']))
        })
        .collect()
}

#[async_trait]
impl ObjectStore for VisibleFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let in_place = self
            .local
            .as_ref()
            .and_then(|local| crate::source::local_reads::get(local, location, &options));
        let result = match in_place {
            Some(result) => result?,
            None => self.inner.get_opts(location, options).await?,
        };
        self.bytes_read
            .fetch_add(result.range.end - result.range.start, Ordering::Relaxed);
        if location.as_ref().ends_with(".parquet") {
            crate::table::damaged::reading(location.as_ref());
            crate::table::damaged::note_read(&self.inner, location);
            if result.range.end == result.meta.size {
                return check_footer(result).await;
            }
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let in_place = self
            .local
            .as_ref()
            .and_then(|local| crate::source::local_reads::get_ranges(local, location, ranges));
        let read = match in_place {
            Some(read) => read?,
            None => self.inner.get_ranges(location, ranges).await?,
        };
        let bytes: usize = read.iter().map(Bytes::len).sum();
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
        if location.as_ref().ends_with(".parquet") {
            crate::table::damaged::reading(location.as_ref());
            crate::table::damaged::note_read(&self.inner, location);
            for (range, data) in ranges.iter().zip(&read) {
                // Only a read ending in PAR1 can be the footer; its file's size says if it is.
                if data.ends_with(b"PAR1") && data.len() as u64 >= FOOTER {
                    let size = self.inner.head(location).await?.size;
                    if range.end == size {
                        footer_fits(location, data, size)?;
                    }
                }
            }
        }
        Ok(read)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        let checker = self.clone();
        stream::once(async move {
            let all: Vec<ObjectMeta> = inner.list(prefix.as_ref()).try_collect().await?;
            checker.check(keep_data(all))
        })
        .map_ok(|kept| stream::iter(kept.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = self.check(keep_data(result.objects))?;
        result
            .common_prefixes
            .retain(|dir| match bad_partition(dir.as_ref()) {
                Some(bad) => {
                    self.warn_once(bad, "not a date=YYYY-MM-DD/hour=HH partition");
                    false
                }
                None => true,
            });
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_must_be_dates_and_hours() {
        assert_eq!(
            bad_partition("warm/date=2026-12-01/hour=07/cluster=east/a.parquet"),
            None
        );
        assert_eq!(
            bad_partition("warm/date=notadate/hour=07/a.parquet").as_deref(),
            Some("warm/date=notadate")
        );
        assert_eq!(
            bad_partition("date=2026-12-01/hour=24/a.parquet").as_deref(),
            Some("date=2026-12-01/hour=24")
        );
        assert_eq!(
            bad_partition("date=2026-02-30/hour=01").as_deref(),
            Some("date=2026-02-30")
        );
        assert_eq!(
            bad_partition("date=2026-12-01/hour=7").as_deref(),
            Some("date=2026-12-01/hour=7")
        );
    }
}
