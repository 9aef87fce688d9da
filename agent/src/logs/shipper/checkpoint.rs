//! The warm shipper's durable position in the local log: the file and the byte offset of the
//! first line Kafka has not acknowledged yet. Written atomically (temporary file, fsync, rename),
//! so after a crash it is either the old position or the new one, never a torn one.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A position in the hourly files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Name of the hourly file, e.g. `agent.2026-11-21-09.log`.
    pub file: String,
    /// Byte offset in it of the first line not yet acknowledged.
    pub offset: u64,
}

impl Checkpoint {
    /// The stored checkpoint, `None` when there is none yet.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
        logrecord::durable::read_json(path).map_err(|e| anyhow::anyhow!("shipper checkpoint: {e}"))
    }

    /// Replaces the stored checkpoint atomically.
    pub(crate) fn store(&self, path: &Path) -> anyhow::Result<()> {
        logrecord::durable::write_atomically(path, &serde_json::to_vec(self)?)
            .map_err(|e| anyhow::anyhow!("storing checkpoint {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shipper/checkpoint.json");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let checkpoint = Checkpoint {
            file: "agent.2026-11-21-09.log".into(),
            offset: 4096,
        };
        checkpoint.store(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(checkpoint));
        std::fs::write(&path, "{torn").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
