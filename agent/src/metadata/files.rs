//! A file source: one instance document in a JSON file, or a directory of `default.json` and
//! `<caller-ip>.json` files (a host serves several VMs).
//!
//! Changes are picked up two ways, because each alone misses cases: inotify (via `notify`) reacts
//! at once to edits, and a one-second stat scan catches what inotify cannot see (network file
//! systems, bind mounts, a watch that could not be set up). An edit is served within about a
//! second. A file that fails to parse is refused, logged and counted, and its last good version
//! stays served; so does the default document when its file disappears.
//!
//! Only changed content counts as a change: inotify also reports reads (an operator's `cat`, the
//! agent's own reads), and reacting to those reloaded the file in an endless loop. Access events
//! are ignored and a file whose bytes are the ones last read is not parsed, logged or counted
//! again. Only regular files are read (opened without blocking, then checked): a FIFO or a device
//! named `*.json` would hang the reader; it is skipped with a warning.

use super::{Document, Documents, MetadataStore, parse_document};
use crate::metrics::{METADATA_RELOAD_ERRORS_TOTAL, METADATA_RELOADS_TOTAL};
use anyhow::{Context, bail};
use notify::{RecursiveMode, Watcher};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DEFAULT_FILE: &str = "default.json";
const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Editors write in several steps; let them finish before reading.
const SETTLE: Duration = Duration::from_millis(50);
/// A metadata document larger than this is refused (Azure's are a few KB).
const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// What a path holds: modification time and length, to notice edits in the periodic scan.
type Fingerprint = BTreeMap<PathBuf, Option<(SystemTime, u64)>>;

/// The watched file or directory and the last good document of each of its files.
#[derive(Debug)]
pub(crate) struct FileSource {
    path: PathBuf,
    is_dir: bool,
    last_good: BTreeMap<PathBuf, Arc<Document>>,
    /// Hash of the bytes last read from each file, valid or not: the same bytes are not read
    /// as a change again.
    last_read: BTreeMap<PathBuf, u64>,
    fingerprint: Fingerprint,
}

impl FileSource {
    /// First load, strict: a single file must be valid; a directory must hold at least one valid
    /// document (invalid ones are logged and counted, as on reload).
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("--metadata {}", path.display()))?;
        let mut source = FileSource {
            path: path.to_owned(),
            is_dir: meta.is_dir(),
            last_good: BTreeMap::new(),
            last_read: BTreeMap::new(),
            fingerprint: Fingerprint::new(),
        };
        if !source.is_dir {
            let bytes =
                read_regular(path).with_context(|| format!("--metadata {}", path.display()))?;
            let document =
                parse_document(&bytes).with_context(|| format!("--metadata {}", path.display()))?;
            source
                .last_good
                .insert(path.to_owned(), Arc::new(Document::new(document)));
            source.last_read.insert(path.to_owned(), hash_of(&bytes));
            source.fingerprint = source.scan();
        } else {
            source.reload()?;
            if source.last_good.is_empty() {
                bail!(
                    "--metadata {}: no valid {DEFAULT_FILE} or <caller-ip>.json in the directory",
                    path.display()
                );
            }
        }
        Ok(source)
    }

    /// Serves the last good documents.
    pub(crate) fn publish(&self, store: &MetadataStore) {
        let mut documents = Documents {
            default: None,
            by_caller: HashMap::new(),
        };
        for (file, document) in &self.last_good {
            match caller_of_file(file, self.is_dir) {
                FileRole::Default => documents.default = Some(Arc::clone(document)),
                FileRole::Caller(ip) => {
                    documents.by_caller.insert(ip, Arc::clone(document));
                }
                FileRole::Ignored => {}
            }
        }
        store.replace(documents, Instant::now());
    }

    /// Keeps `store` current until shutdown.
    pub(crate) async fn watch(mut self, store: Arc<MetadataStore>, shutdown: CancellationToken) {
        let (tx, mut events) = mpsc::channel::<()>(1);
        // Kept alive for the duration of the loop; without it, only the scan notices changes.
        let _watcher = self.start_watcher(tx);
        let mut scan = tokio::time::interval(SCAN_INTERVAL);
        loop {
            let changed = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = events.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while events.try_recv().is_ok() {}
                    true
                }
                _ = scan.tick() => self.scan() != self.fingerprint,
            };
            if changed {
                match self.reload() {
                    Ok(true) => self.publish(&store),
                    Ok(false) => store.confirm(),
                    Err(error) => {
                        tracing::warn!(path = %self.path.display(), error = %format!("{error:#}"), "metadata directory unreadable; last good documents stay served");
                    }
                }
            } else if self.fingerprint.values().all(Option::is_some) {
                store.confirm();
            }
        }
    }

    fn start_watcher(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let dir = if self.is_dir {
            self.path.clone()
        } else {
            self.path.parent().map(Path::to_owned).unwrap_or_default()
        };
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let only: Option<OsString> = (!self.is_dir)
            .then(|| self.path.file_name().map(OsString::from))
            .flatten();
        let handler = move |event: notify::Result<notify::Event>| {
            // Reads (open, read, close without writing) change nothing.
            if let Ok(notify::Event {
                kind: notify::EventKind::Access(_),
                ..
            }) = &event
            {
                return;
            }
            let relevant = match (&event, &only) {
                (Ok(event), Some(name)) => event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str())),
                _ => true,
            };
            if relevant {
                // A full channel already holds a wake-up: nothing is lost by dropping this one.
                let _ = tx.try_send(());
            }
        };
        let watcher = notify::recommended_watcher(handler).and_then(|mut watcher| {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot watch metadata files; changes are seen by the periodic scan only");
                None
            }
        }
    }

    /// The files this source reads right now: regular files (or links to them) only.
    fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        Ok(self.listing()?.0)
    }

    /// `*.json` entries of the directory: (regular files, anything else).
    fn listing(&self) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        if !self.is_dir {
            return Ok((vec![self.path.clone()], Vec::new()));
        }
        let (mut files, mut others) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(&self.path)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => files.push(path),
                    Ok(_) => others.push(path),
                    // Gone since the listing, or a dangling link: nothing to read.
                    Err(_) => {}
                }
            }
        }
        files.sort();
        others.sort();
        Ok((files, others))
    }

    fn scan(&self) -> Fingerprint {
        let files = self.files().unwrap_or_default();
        files
            .into_iter()
            .map(|file| {
                let stamp = std::fs::metadata(&file)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                (file, stamp)
            })
            .collect()
    }

    /// Reads every file whose bytes changed; refused files keep their last good document.
    /// `Ok(true)` when the served documents changed.
    fn reload(&mut self) -> anyhow::Result<bool> {
        let fingerprint = self.scan();
        let (files, others) = self
            .listing()
            .with_context(|| format!("listing {}", self.path.display()))?;
        for other in &others {
            tracing::warn!(file = %other.display(), "skipping metadata file: not a regular file");
        }
        let mut changed = false;
        for file in &files {
            if let FileRole::Ignored = caller_of_file(file, self.is_dir) {
                tracing::warn!(file = %file.display(), "ignoring metadata file: name it default.json or <caller-ip>.json");
                continue;
            }
            let bytes = match read_regular(file) {
                Ok(bytes) => bytes,
                Err(error) => {
                    metrics::counter!(METADATA_RELOAD_ERRORS_TOTAL, "source" => "file")
                        .increment(1);
                    tracing::warn!(file = %file.display(), %error, "metadata file unreadable; the last good copy stays served");
                    continue;
                }
            };
            let hash = hash_of(&bytes);
            if self.last_read.insert(file.clone(), hash) == Some(hash) {
                continue;
            }
            match parse_document(&bytes) {
                Ok(document) => {
                    metrics::counter!(METADATA_RELOADS_TOTAL, "source" => "file").increment(1);
                    tracing::info!(file = %file.display(), "metadata document loaded");
                    self.last_good
                        .insert(file.clone(), Arc::new(Document::new(document)));
                    changed = true;
                }
                Err(error) => {
                    metrics::counter!(METADATA_RELOAD_ERRORS_TOTAL, "source" => "file")
                        .increment(1);
                    tracing::warn!(file = %file.display(), error = %format!("{error:#}"), "metadata document refused; the last good copy stays served");
                }
            }
        }
        // A per-caller file that is gone withdraws that caller's document; the default document
        // is never withdrawn by a failed read or a missing file.
        let single_file = !self.is_dir;
        let kept = self.last_good.len();
        self.last_good.retain(|file, _| {
            files.contains(file)
                || single_file
                || matches!(caller_of_file(file, true), FileRole::Default)
        });
        changed |= self.last_good.len() != kept;
        self.last_read.retain(|file, _| files.contains(file));
        self.fingerprint = fingerprint;
        Ok(changed)
    }
}

/// Reads a regular file (or a link to one), at most [`MAX_DOCUMENT_BYTES`]. Opened without
/// blocking and checked on the open handle, so a FIFO swapped in after a listing cannot hang
/// the reader either.
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

enum FileRole {
    Default,
    Caller(IpAddr),
    Ignored,
}

fn caller_of_file(file: &Path, is_dir: bool) -> FileRole {
    if !is_dir {
        return FileRole::Default;
    }
    match file.file_name().and_then(|n| n.to_str()) {
        Some(DEFAULT_FILE) => FileRole::Default,
        Some(name) => match name
            .strip_suffix(".json")
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        {
            Some(ip) => FileRole::Caller(ip.to_canonical()),
            None => FileRole::Ignored,
        },
        None => FileRole::Ignored,
    }
}
