//! What `--data` can name: a local directory, an object store URL (`s3://bucket/prefix`), or an
//! agent's admin API (`https://host:port`, or `http://` on loopback, whose files are fetched into a local cache first, see
//! `fetch.rs`). Each becomes an object store (wrapped so listings show data files only) and a
//! table URL inside it.

pub(crate) mod fetch;
pub(crate) mod local_reads;

use crate::table::visible_files::VisibleFiles;
use anyhow::{Context, bail};
use datafusion::datasource::listing::ListingTableUrl;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A `--data` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3 {
        bucket: String,
        prefix: String,
    },
    /// An agent's admin API base URL.
    Agent(url::Url),
}

impl Source {
    pub(crate) fn parse(text: &str) -> anyhow::Result<Source> {
        let Some((scheme, _)) = text.split_once("://") else {
            return Ok(Source::Local(PathBuf::from(text)));
        };
        match scheme {
            "s3" => {
                let url = url::Url::parse(text).with_context(|| format!("{text}: not a URL"))?;
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .with_context(|| format!("{text}: no bucket (s3://bucket/prefix)"))?
                    .to_owned();
                let prefix = url.path().trim_matches('/').to_owned();
                Ok(Source::S3 { bucket, prefix })
            }
            "http" | "https" => Ok(Source::Agent(
                url::Url::parse(text).with_context(|| format!("{text}: not a URL"))?,
            )),
            other => bail!(
                "{text}: unsupported source scheme {other}:// (use a directory, s3://, or an agent's https://)"
            ),
        }
    }
}

/// A source ready for DataFusion: the store to register and the table URL in it.
#[derive(Debug)]
pub(crate) struct Opened {
    pub store: Arc<dyn ObjectStore>,
    pub table_url: ListingTableUrl,
    /// Prefix of the table inside the store (for layout detection).
    pub prefix: object_store::path::Path,
}

/// Opens a local directory or an object store (agents are fetched into a directory first).
pub(crate) fn open(source: &Source, bytes_read: &Arc<AtomicU64>) -> anyhow::Result<Opened> {
    match source {
        Source::Local(path) => {
            let absolute = std::fs::canonicalize(path)
                .with_context(|| format!("{}: no such directory", path.display()))?;
            if !absolute.is_dir() {
                bail!("{}: not a directory", path.display());
            }
            let store = VisibleFiles::local(Arc::clone(bytes_read));
            Ok(Opened {
                store: Arc::new(store),
                table_url: ListingTableUrl::parse(format!("{}/", absolute.display()))?,
                prefix: object_store::path::Path::from_absolute_path(&absolute)?,
            })
        }
        Source::S3 { bucket, prefix } => {
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .with_context(|| {
                    format!("s3://{bucket}: configuring the object store from AWS_* variables")
                })?;
            let store = VisibleFiles::new(Arc::new(s3), Arc::clone(bytes_read));
            let url = if prefix.is_empty() {
                format!("s3://{bucket}/")
            } else {
                format!("s3://{bucket}/{prefix}/")
            };
            Ok(Opened {
                store: Arc::new(store),
                table_url: ListingTableUrl::parse(url)?,
                prefix: object_store::path::Path::from(prefix.as_str()),
            })
        }
        Source::Agent(url) => bail!("{url}: fetch agent sources before opening them"),
    }
}

/// The default cache of fetched agent files.
pub(crate) fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("imds-query")
}
