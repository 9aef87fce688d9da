//! The object store `query` reads through: the real store (local files, S3), with listings
//! filtered to the files that are data, so DataFusion's partition pruning and file listing see a
//! compacted warm store exactly as the compactor committed it (`logrecord::compaction`): merged
//! files only once their manifest names them, replaced files never. Hidden (`.writing-*`) and
//! internal (`_*`) names are never data either. Reads go straight to the real store, counted
//! (the progress display shows the bytes read).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use logrecord::compaction::{MANIFEST, Manifest, is_visible};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A store whose listings show only data files.
#[derive(Debug)]
pub struct VisibleFiles {
    inner: Arc<dyn ObjectStore>,
    /// Set when `inner` is the local file system: plain reads are then done in place.
    local: Option<Arc<LocalFileSystem>>,
    bytes_read: Arc<AtomicU64>,
}

impl VisibleFiles {
    pub fn new(inner: Arc<dyn ObjectStore>, bytes_read: Arc<AtomicU64>) -> Self {
        VisibleFiles {
            inner,
            local: None,
            bytes_read,
        }
    }

    /// Over the local file system, reading in place (`crate::local_reads`).
    pub fn local(bytes_read: Arc<AtomicU64>) -> Self {
        let local = Arc::new(LocalFileSystem::new());
        VisibleFiles {
            inner: local.clone(),
            local: Some(local),
            bytes_read,
        }
    }
}

impl std::fmt::Display for VisibleFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VisibleFiles({})", self.inner)
    }
}

/// The directory part and the file name of a location.
fn split(location: &Path) -> (String, String) {
    let text = location.as_ref();
    match text.rsplit_once('/') {
        Some((dir, name)) => (dir.to_owned(), name.to_owned()),
        None => (String::new(), text.to_owned()),
    }
}

fn manifest_location(dir: &str) -> Path {
    if dir.is_empty() {
        Path::from(MANIFEST)
    } else {
        Path::from(format!("{dir}/{MANIFEST}"))
    }
}

/// Keeps the data files of `objects`, reading the manifest of each directory that has one.
async fn keep_data(store: &dyn ObjectStore, objects: Vec<ObjectMeta>) -> Result<Vec<ObjectMeta>> {
    let mut manifests: BTreeMap<String, Option<Manifest>> = BTreeMap::new();
    for object in &objects {
        let (dir, name) = split(&object.location);
        if name == MANIFEST {
            manifests.insert(dir, None);
        }
    }
    for (dir, manifest) in manifests.iter_mut() {
        let bytes = store.get(&manifest_location(dir)).await?.bytes().await?;
        *manifest =
            Some(
                serde_json::from_slice(&bytes).map_err(|e| object_store::Error::Generic {
                    store: "compaction manifest",
                    source: format!("{}: {e}", manifest_location(dir)).into(),
                })?,
            );
    }
    Ok(objects
        .into_iter()
        .filter(|object| {
            let (dir, name) = split(&object.location);
            is_visible(manifests.get(&dir).and_then(Option::as_ref), &name)
        })
        .collect())
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
            .and_then(|local| crate::local_reads::get(local, location, &options));
        let result = match in_place {
            Some(result) => result?,
            None => self.inner.get_opts(location, options).await?,
        };
        self.bytes_read
            .fetch_add(result.range.end - result.range.start, Ordering::Relaxed);
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let in_place = self
            .local
            .as_ref()
            .and_then(|local| crate::local_reads::get_ranges(local, location, ranges));
        let read = match in_place {
            Some(read) => read?,
            None => self.inner.get_ranges(location, ranges).await?,
        };
        let bytes: usize = read.iter().map(Bytes::len).sum();
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
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
        stream::once(async move {
            let all: Vec<ObjectMeta> = inner.list(prefix.as_ref()).try_collect().await?;
            keep_data(inner.as_ref(), all).await
        })
        .map_ok(|kept| stream::iter(kept.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = keep_data(self.inner.as_ref(), result.objects).await?;
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
