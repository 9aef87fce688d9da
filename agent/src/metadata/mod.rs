//! Metadata is data, not code: instance documents come from a source (the built-in example, a
//! watched file or directory, or a polled upstream URL) into a [`MetadataStore`] that the API
//! reads without locks. A source that fails keeps the last good documents served: availability
//! over consistency. How long ago the source last confirmed them is `imds_metadata_age_seconds`.

pub mod by_version;
pub(crate) mod files;
pub(crate) mod upstream;

use arc_swap::ArcSwap;
use serde_json::Value;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the instance documents come from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataSource {
    /// The built-in example document: zero configuration.
    Builtin,
    /// A JSON file, or a directory of per-caller files, watched for changes.
    Path(PathBuf),
    /// An upstream HTTP endpoint, polled; its last good copy is kept under the data directory.
    Url {
        /// The upstream's URL (http).
        url: String,
        /// How often it is polled while healthy.
        poll_interval: Duration,
    },
}

/// The built-in example document, served when no source is configured.
pub const EXAMPLE_DOCUMENT: &str = include_str!("example.json");

/// One instance document, with its version tag and its views at older api-versions.
#[derive(Debug)]
pub struct Document {
    value: Value,
    /// The version tag, quoted, made once as a header value (every answer carries it).
    etag: axum::http::HeaderValue,
    /// The document as served at each api-version older than the newest field of
    /// [`by_version::FIELDS`], made on first use (most callers ask the same few versions).
    older: Box<[OnceLock<Value>]>,
    /// Large answers rendered from this document, shared by every caller that asks the same;
    /// `None` for a document too small for any answer to be large (most of them).
    answers: Option<SharedAnswers>,
}

/// Answers of at least this many bytes are kept once rendered; smaller ones are cheap to render
/// again and are only shared by the callers that asked at the same moment. A document whose
/// JSON is smaller has no answer this large: its answers are rendered per request, with no key
/// made and no lock taken.
const KEPT_ANSWER_MIN_BYTES: usize = 64 * 1024;
/// Bytes of kept answers per document at most (a 16 MiB document: its few large views).
const KEPT_ANSWERS_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Rendered answers, one render per key however many callers ask at once: without it a
/// 15.9 MB document asked by 200 callers at once was rendered 200 times over, taking the agent
/// from 0.9 to 3 GB. A key being rendered has one cell that every caller waits on; once rendered
/// it stays only if large, within [`KEPT_ANSWERS_MAX_BYTES`] (what callers can make it hold is
/// bounded by the document: only paths that exist are rendered).
#[derive(Debug, Default)]
struct SharedAnswers {
    cells: Mutex<HashMap<String, Arc<OnceLock<axum::body::Bytes>>>>,
    kept_bytes: std::sync::atomic::AtomicUsize,
}

impl Document {
    /// A document from its JSON value (counted and rendered once, served many times).
    pub fn new(value: Value) -> Self {
        // The tag is the content's hash, so it survives restarts and is the same on every agent
        // serving the same document: a client's `If-None-Match` stays valid across both.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let text = value.to_string();
        text.hash(&mut hasher);
        let answers = (text.len() >= KEPT_ANSWER_MIN_BYTES).then(SharedAnswers::default);
        // Quotes and hex digits only: always a valid header value.
        let etag = axum::http::HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("\"\""));
        let older = (0..by_version::newest_field_version())
            .map(|_| OnceLock::new())
            .collect();
        Document {
            value,
            etag,
            older,
            answers,
        }
    }

    /// The answer for `key()` (the view, path and format asked), rendered by `render` once for
    /// every caller asking it at the same time, and kept for later ones if large. For a small
    /// document, just `render()`.
    pub fn shared_answer(
        &self,
        key: impl FnOnce() -> String,
        render: impl FnOnce() -> axum::body::Bytes,
    ) -> axum::body::Bytes {
        use std::sync::atomic::Ordering;
        let Some(answers) = &self.answers else {
            return render();
        };
        let key = key();
        let cell = {
            let Ok(mut cells) = answers.cells.lock() else {
                return render();
            };
            Arc::clone(cells.entry(key.clone()).or_default())
        };
        let mut rendered_here = false;
        let answer = cell
            .get_or_init(|| {
                rendered_here = true;
                render()
            })
            .clone();
        if rendered_here {
            let keep = answer.len() >= KEPT_ANSWER_MIN_BYTES
                && answers
                    .kept_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |kept| {
                        (kept + answer.len() <= KEPT_ANSWERS_MAX_BYTES)
                            .then_some(kept + answer.len())
                    })
                    .is_ok();
            if !keep && let Ok(mut cells) = answers.cells.lock() {
                cells.remove(&key);
            }
        }
        answer
    }

    /// The `ETag` header of this document version.
    pub fn etag_header(&self) -> axum::http::HeaderValue {
        self.etag.clone()
    }

    /// The `ETag` value (quoted) of this document version.
    pub fn etag(&self) -> &str {
        // Made from ASCII above.
        self.etag.to_str().unwrap_or_default()
    }

    /// The whole document, every field.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The document with the fields that exist at `version` (an index into
    /// [`crate::api_version::SUPPORTED`]).
    pub fn at_version(&self, version: usize) -> &Value {
        match self.older.get(version) {
            Some(view) => view.get_or_init(|| by_version::filter(&self.value, version)),
            None => &self.value,
        }
    }
}

/// The documents one host serves: a default, and any per-caller ones.
#[derive(Debug, Default, Clone)]
pub struct Documents {
    /// What callers without a document of their own get, if anything.
    pub default: Option<Arc<Document>>,
    /// Documents of particular callers, by address.
    pub by_caller: HashMap<IpAddr, Arc<Document>>,
}

/// What the store has for a caller.
#[derive(Debug)]
pub enum Lookup {
    /// The caller's document (its own or the default).
    Found(Arc<Document>),
    /// Documents are loaded, but none for this caller and no default.
    NoDocumentForCaller,
    /// The source has not delivered anything yet.
    NotLoadedYet,
}

/// The documents being served, swapped whole when the source changes.
#[derive(Debug)]
pub struct MetadataStore {
    documents: ArcSwap<Option<Documents>>,
    /// When the source last confirmed the served documents (`None`: never).
    confirmed_at: Mutex<Option<Instant>>,
    /// Bumped on every replacement: what held `wait-for-change` requests wait on.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for MetadataStore {
    fn default() -> Self {
        MetadataStore {
            documents: ArcSwap::default(),
            confirmed_at: Mutex::default(),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl MetadataStore {
    /// A store with no document yet (answers 503 until the first is loaded).
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver that sees every replacement of the documents from now on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
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
        self.generation.send_modify(|generation| *generation += 1);
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
    /// Not JSON.
    Json(#[from] serde_json::Error),
    #[error("the instance document must be a JSON object, found {0}")]
    /// JSON, but this part is not an object.
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
    source: &MetadataSource,
    data_dir: &std::path::Path,
    store: &Arc<MetadataStore>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match source {
        MetadataSource::Builtin => {
            let document = parse_document(EXAMPLE_DOCUMENT.as_bytes())?;
            let documents = Documents {
                default: Some(Arc::new(Document::new(document))),
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
            let mut poller = upstream::Upstream::new(url, *poll_interval, data_dir)?;
            poller.load_disk_copy(store);
            tasks.spawn(poller.poll(Arc::clone(store), shutdown));
        }
    }
    Ok(())
}
