//! An upstream source: an HTTP endpoint serving the instance document, polled with
//! `If-None-Match` so an unchanged document costs a 304. Each new document is written to
//! `<data-dir>/metadata/upstream.json` (temporary name, fsync, rename) before it is served, and
//! that copy is what the agent serves at start-up while the upstream is unreachable. Failures
//! back off exponentially up to half a minute, plus jitter of up to as much again, so a fleet
//! does not retry in step (`service::retry`).

use super::{Documents, MetadataStore, parse_document};
use crate::metrics::{METADATA_RELOAD_ERRORS_TOTAL, METADATA_RELOADS_TOTAL};
use anyhow::{Context, bail};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The on-disk copy: the document and the ETag it was served with.
#[derive(Debug, Serialize, Deserialize)]
struct DiskCopy {
    etag: Option<String>,
    /// Unix seconds when it was fetched.
    fetched_at: u64,
    document: Value,
}

/// Polls one upstream URL.
#[derive(Debug)]
pub(crate) struct Upstream {
    url: String,
    interval: Duration,
    copy_path: PathBuf,
    client: reqwest::Client,
    etag: Option<String>,
}

impl Upstream {
    pub(crate) fn new(url: &str, interval: Duration, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("metadata");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()?;
        Ok(Upstream {
            url: url.to_owned(),
            interval,
            copy_path: dir.join("upstream.json"),
            client,
            etag: None,
        })
    }

    /// Serves the last good copy from disk, if there is one, until the upstream answers.
    pub(crate) fn load_disk_copy(&mut self, store: &MetadataStore) {
        match logrecord::durable::read_json::<DiskCopy>(&self.copy_path) {
            Ok(Some(copy)) => match copy.document {
                document @ Value::Object(_) => {
                    // Its age counts from when it was fetched, not from now.
                    let fetched = SystemTime::UNIX_EPOCH + Duration::from_secs(copy.fetched_at);
                    let age = SystemTime::now()
                        .duration_since(fetched)
                        .unwrap_or_default();
                    let confirmed = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    store.replace(single(document), confirmed);
                    self.etag = copy.etag;
                    tracing::info!(path = %self.copy_path.display(), age_s = age.as_secs(), "serving the last good upstream document from disk");
                }
                _ => {
                    tracing::warn!(path = %self.copy_path.display(), "disk copy of the upstream document is not an object; ignoring it")
                }
            },
            Ok(None) => {
                tracing::info!(url = %self.url, "no disk copy of the upstream document yet; waiting for the upstream");
            }
            Err(error) => {
                tracing::warn!(path = %self.copy_path.display(), %error, "cannot read the disk copy of the upstream document")
            }
        }
    }

    /// Polls until shutdown.
    pub(crate) async fn poll(mut self, store: Arc<MetadataStore>, shutdown: CancellationToken) {
        let new_backoff = || service::retry::backoff(FIRST_BACKOFF, MAX_BACKOFF);
        let mut backoff = new_backoff();
        loop {
            let wait = match self.fetch_once(&store).await {
                Ok(()) => {
                    backoff = new_backoff();
                    self.interval
                }
                Err(error) => {
                    metrics::counter!(METADATA_RELOAD_ERRORS_TOTAL, "source" => "upstream")
                        .increment(1);
                    let wait = backoff.next().unwrap_or(MAX_BACKOFF);
                    tracing::warn!(url = %self.url, error = %format!("{error:#}"), retry_in_ms = wait.as_millis() as u64, "upstream metadata fetch failed; the last good document stays served");
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn fetch_once(&mut self, store: &MetadataStore) -> anyhow::Result<()> {
        let mut request = self.client.get(&self.url);
        if let Some(etag) = &self.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request.send().await?;
        match response.status() {
            StatusCode::NOT_MODIFIED if self.etag.is_some() => {
                store.confirm();
                Ok(())
            }
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let bytes = response.bytes().await?;
                let document = parse_document(&bytes).context("upstream document refused")?;
                self.save_copy(&document, etag.clone())
                    .context("saving the disk copy")?;
                store.replace(single(document), Instant::now());
                self.etag = etag;
                metrics::counter!(METADATA_RELOADS_TOTAL, "source" => "upstream").increment(1);
                tracing::info!(url = %self.url, etag = self.etag.as_deref(), "upstream metadata document loaded");
                Ok(())
            }
            status => bail!("upstream answered {status}"),
        }
    }

    /// Atomic and durable: the copy on disk is whole, old or new.
    fn save_copy(&self, document: &Value, etag: Option<String>) -> anyhow::Result<()> {
        let fetched_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let copy = DiskCopy {
            etag,
            fetched_at,
            document: document.clone(),
        };
        Ok(logrecord::durable::write_atomically(
            &self.copy_path,
            &serde_json::to_vec(&copy)?,
        )?)
    }
}

fn single(document: Value) -> Documents {
    Documents {
        default: Some(Arc::new(super::Document::new(document))),
        by_caller: HashMap::new(),
    }
}
