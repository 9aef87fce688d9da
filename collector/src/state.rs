//! What the store already holds, per Kafka partition: the next offset to consume and, per machine,
//! the highest `seq` stored. Kept in the store itself (`_collector/<topic>/<partition>.json`) so
//! whichever collector owns the partition next continues exactly where the data ends. The Kafka
//! committed offset is only a hint: this file is the commit point.
//!
//! A batch becomes visible in three steps: an intent naming its files is stored, the files are
//! renamed into place, the new state is stored. A crash between the first and the last leaves
//! files the state does not cover; the next owner reads the intent and removes them before it
//! consumes (they are rewritten from Kafka). Every write is atomic (temporary file, fsync, rename).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Stored progress of one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The first offset not in the store.
    pub next_offset: i64,
    /// Highest `seq` stored per machine.
    pub high_water: BTreeMap<String, u64>,
}

/// Files a batch is about to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub first_offset: i64,
    pub files: Vec<PathBuf>,
}

/// Where one partition's state lives.
#[derive(Debug, Clone)]
pub struct StatePaths {
    state: PathBuf,
    intent: PathBuf,
}

impl StatePaths {
    pub fn new(out: &Path, topic: &str, partition: i32) -> Self {
        let dir = out.join("_collector").join(topic);
        StatePaths {
            state: dir.join(format!("{partition}.json")),
            intent: dir.join(format!("{partition}.intent.json")),
        }
    }

    /// Loads the state, first finishing or undoing whatever a crashed owner left half done.
    pub fn recover(&self) -> anyhow::Result<PartitionState> {
        let state: PartitionState = read_json(&self.state)?.unwrap_or_default();
        if let Some(intent) = read_json::<Intent>(&self.intent)? {
            if state.next_offset <= intent.first_offset {
                for file in &intent.files {
                    match std::fs::remove_file(file) {
                        Ok(()) => {
                            tracing::warn!(file = %file.display(), "removed a file of an unfinished batch; it is rewritten from Kafka")
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(anyhow::anyhow!("removing {}: {e}", file.display())),
                    }
                }
            }
            std::fs::remove_file(&self.intent)?;
        }
        Ok(state)
    }

    pub fn store_intent(&self, intent: &Intent) -> anyhow::Result<()> {
        write_json(&self.intent, intent)
    }

    /// Stores the new state: the batch is committed. Then drops the intent.
    pub fn commit(&self, state: &PartitionState) -> anyhow::Result<()> {
        write_json(&self.state, state)?;
        match std::fs::remove_file(&self.intent) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Atomic replace: temporary file, fsync, rename, fsync the directory.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomically(path, &serde_json::to_vec(value)?)
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    logrecord::durable::write_atomically(path, bytes)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_batch_is_undone_and_a_finished_one_kept() {
        let out = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(out.path(), "t", 3);
        let file = out.path().join("date=2026-01-01/part.parquet");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();

        // Crash after publishing, before the state: the file goes.
        std::fs::write(&file, "x").unwrap();
        paths
            .store_intent(&Intent {
                first_offset: 0,
                files: vec![file.clone()],
            })
            .unwrap();
        assert_eq!(paths.recover().unwrap(), PartitionState::default());
        assert!(!file.exists());

        // Crash after the state, before the intent was removed: the file stays.
        std::fs::write(&file, "x").unwrap();
        paths
            .store_intent(&Intent {
                first_offset: 0,
                files: vec![file.clone()],
            })
            .unwrap();
        let state = PartitionState {
            next_offset: 10,
            high_water: [("m".to_owned(), 7)].into(),
        };
        write_json(&paths.state, &state).unwrap();
        assert_eq!(paths.recover().unwrap(), state);
        assert!(file.exists());
        assert!(!paths.intent.exists());
    }
}
