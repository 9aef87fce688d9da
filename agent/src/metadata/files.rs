//! A file source: one instance document in a JSON file, or a directory of `default.json` and
//! `<caller-ip>.json` files (a host serves several VMs).
//!
//! Changes are picked up two ways, because each alone misses cases: inotify (via `notify`) reacts
//! at once to edits, and a one-second stat scan catches what inotify cannot see (network file
//! systems, bind mounts, a watch that could not be set up). An edit is served within about a
//! second. A file that fails to parse is refused, logged and counted, and its last good version
//! stays served; so does the default document when its file disappears.

use super::{Documents, MetadataStore, parse_document};
use crate::metrics::{METADATA_RELOAD_ERRORS_TOTAL, METADATA_RELOADS_TOTAL};
use anyhow::{Context, bail};
use notify::{RecursiveMode, Watcher};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
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

/// What a path holds: modification time and length, to notice edits in the periodic scan.
type Fingerprint = BTreeMap<PathBuf, Option<(SystemTime, u64)>>;

/// The watched file or directory and the last good document of each of its files.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    is_dir: bool,
    last_good: BTreeMap<PathBuf, Arc<Value>>,
    fingerprint: Fingerprint,
}

impl FileSource {
    /// First load, strict: a single file must be valid; a directory must hold at least one valid
    /// document (invalid ones are logged and counted, as on reload).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("--metadata {}", path.display()))?;
        let mut source = FileSource {
            path: path.to_owned(),
            is_dir: meta.is_dir(),
            last_good: BTreeMap::new(),
            fingerprint: Fingerprint::new(),
        };
        if !source.is_dir {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let document =
                parse_document(&bytes).with_context(|| format!("--metadata {}", path.display()))?;
            source.last_good.insert(path.to_owned(), Arc::new(document));
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
    pub fn publish(&self, store: &MetadataStore) {
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
    pub async fn watch(mut self, store: Arc<MetadataStore>, shutdown: CancellationToken) {
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
                if let Err(error) = self.reload() {
                    tracing::warn!(path = %self.path.display(), error = %format!("{error:#}"), "metadata directory unreadable; last good documents stay served");
                }
                self.publish(&store);
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

    /// The files this source reads right now.
    fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        if !self.is_dir {
            return Ok(vec![self.path.clone()]);
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
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

    /// Reads every file again; refused files keep their last good document.
    fn reload(&mut self) -> anyhow::Result<()> {
        let fingerprint = self.scan();
        let files = self
            .files()
            .with_context(|| format!("listing {}", self.path.display()))?;
        for file in &files {
            if let FileRole::Ignored = caller_of_file(file, self.is_dir) {
                tracing::warn!(file = %file.display(), "ignoring metadata file: name it default.json or <caller-ip>.json");
                continue;
            }
            let result = std::fs::read(file)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(parse_document(&bytes)?));
            match result {
                Ok(document) => {
                    metrics::counter!(METADATA_RELOADS_TOTAL, "source" => "file").increment(1);
                    tracing::info!(file = %file.display(), "metadata document loaded");
                    self.last_good.insert(file.clone(), Arc::new(document));
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
        self.last_good.retain(|file, _| {
            files.contains(file)
                || single_file
                || matches!(caller_of_file(file, true), FileRole::Default)
        });
        self.fingerprint = fingerprint;
        Ok(())
    }
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
