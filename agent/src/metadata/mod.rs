//! Metadata is data, not code: instance documents come from a source (the built-in example, a
//! watched file or directory, or a polled upstream URL) into a [`MetadataStore`] that the API
//! reads without locks. A source that fails keeps the last good documents served: availability
//! over consistency. How long ago the source last confirmed them is `imds_metadata_age_seconds`.

pub mod files;
pub mod upstream;

use crate::config::{Config, MetadataSource};
use arc_swap::ArcSwap;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The built-in example document, served when no source is configured.
pub const EXAMPLE_DOCUMENT: &str = include_str!("example.json");

/// The documents one host serves: a default, and any per-caller ones.
#[derive(Debug, Default, Clone)]
pub struct Documents {
    pub default: Option<Arc<Value>>,
    pub by_caller: HashMap<IpAddr, Arc<Value>>,
}

/// What the store has for a caller.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<Value>),
    /// Documents are loaded, but none for this caller and no default.
    NoDocumentForCaller,
    /// The source has not delivered anything yet.
    NotLoadedYet,
}

/// The documents being served, swapped whole when the source changes.
#[derive(Debug, Default)]
pub struct MetadataStore {
    documents: ArcSwap<Option<Documents>>,
    /// When the source last confirmed the served documents (`None`: never).
    confirmed_at: Mutex<Option<Instant>>,
}

impl MetadataStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The document for `caller`: its own, else the default.
    pub fn lookup(&self, caller: IpAddr) -> Lookup {
        let guard = self.documents.load();
        let Some(documents) = guard.as_ref() else {
            return Lookup::NotLoadedYet;
        };
        match documents
            .by_caller
            .get(&caller)
            .or(documents.default.as_ref())
        {
            Some(document) => Lookup::Found(Arc::clone(document)),
            None => Lookup::NoDocumentForCaller,
        }
    }

    /// Serves `documents` from now on; they are current as of `confirmed_at`.
    pub fn replace(&self, documents: Documents, confirmed_at: Instant) {
        self.documents.store(Arc::new(Some(documents)));
        self.confirm_at(confirmed_at);
    }

    /// The source says the served documents are still current.
    pub fn confirm(&self) {
        self.confirm_at(Instant::now());
    }

    fn confirm_at(&self, at: Instant) {
        if let Ok(mut confirmed) = self.confirmed_at.lock() {
            *confirmed = Some(at);
        }
    }

    /// Time since the last confirmation; `None` before the first document.
    pub fn age(&self) -> Option<Duration> {
        self.confirmed_at
            .lock()
            .ok()
            .and_then(|c| *c)
            .map(|at| at.elapsed())
    }
}

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the instance document must be a JSON object, found {0}")]
    NotAnObject(&'static str),
}

/// Parses and checks one instance document.
pub fn parse_document(bytes: &[u8]) -> Result<Value, DocumentError> {
    match serde_json::from_slice::<Value>(bytes)? {
        document @ Value::Object(_) => Ok(document),
        Value::Array(_) => Err(DocumentError::NotAnObject("an array")),
        Value::String(_) => Err(DocumentError::NotAnObject("a string")),
        Value::Number(_) => Err(DocumentError::NotAnObject("a number")),
        Value::Bool(_) => Err(DocumentError::NotAnObject("a boolean")),
        Value::Null => Err(DocumentError::NotAnObject("null")),
    }
}

/// Loads the configured source into `store` (an invalid file at start-up is an error) and
/// spawns whatever keeps it current: a file watcher or an upstream poller.
pub async fn start(
    config: &Config,
    store: &Arc<MetadataStore>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match &config.source {
        MetadataSource::Builtin => {
            let document = parse_document(EXAMPLE_DOCUMENT.as_bytes())?;
            let documents = Documents {
                default: Some(Arc::new(document)),
                by_caller: HashMap::new(),
            };
            store.replace(documents, Instant::now());
            // Built into the binary: always current.
            let store = Arc::clone(store);
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while tokio::select! { _ = shutdown.cancelled() => false, _ = tick.tick() => true }
                {
                    store.confirm();
                }
            });
        }
        MetadataSource::Path(path) => {
            let watcher = files::FileSource::load(path)?;
            watcher.publish(store);
            tasks.spawn(watcher.watch(Arc::clone(store), shutdown));
        }
        MetadataSource::Url { url, poll_interval } => {
            let mut poller = upstream::Upstream::new(url, *poll_interval, &config.data_dir)?;
            poller.load_disk_copy(store);
            tasks.spawn(poller.poll(Arc::clone(store), shutdown));
        }
    }
    Ok(())
}
