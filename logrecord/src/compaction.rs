//! Which files of a store partition are data, once compaction has run: the contract between the
//! compactor (`collector compact`) and every reader (`query`, [`crate::parquet_file::list`]).
//!
//! Compaction merges a partition directory's files into one `compacted-<id>.parquet`, then commits
//! by atomically replacing the directory's manifest, `_compaction.json`, which names the compacted
//! file and the files it replaces. Readers apply one rule per directory:
//! - a `compacted-*` file is data only if the manifest names it (one renamed in place but not yet
//!   committed, or left by a crash, is not);
//! - any other file is data unless the manifest lists it as replaced.
//!
//! So a reader sees either the inputs or the merged file, never both and never neither, whichever
//! moment it lists at. Replaced files stay on disk for a grace period (the compactor deletes them on
//! a later run), so a query that listed them just before the commit can still read them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The manifest's name in a partition directory (internal: `_` names are never data).
pub const MANIFEST: &str = "_compaction.json";
/// Prefix of compacted files.
pub const COMPACTED_PREFIX: &str = "compacted-";

/// A partition directory's compaction manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The compacted file that holds the directory's compacted rows.
    pub file: String,
    /// Its row count (the sum of its inputs', verified when written).
    pub rows: u64,
    /// Files whose rows are in `file`, not yet deleted.
    pub replaces: Vec<Replaced>,
}

/// A file superseded by compaction, and since when (deleted after the grace period).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replaced {
    pub name: String,
    pub since: DateTime<Utc>,
}

impl Manifest {
    /// The manifest of `dir`: `Ok(None)` when it has none.
    pub fn load(dir: &Path) -> std::io::Result<Option<Manifest>> {
        match std::fs::read(dir.join(MANIFEST)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(MANIFEST).display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn replaces(&self, name: &str) -> bool {
        self.replaces.iter().any(|r| r.name == name)
    }
}

/// Hidden names (`.writing-*`: being written) and internal ones (`_collector`, the manifest) are
/// never data, whatever the manifest says.
pub fn is_internal(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Whether the file `name` of a directory with `manifest` is data (see the module's rule).
pub fn is_visible(manifest: Option<&Manifest>, name: &str) -> bool {
    if is_internal(name) {
        return false;
    }
    match manifest {
        None => !name.starts_with(COMPACTED_PREFIX),
        Some(m) if name.starts_with(COMPACTED_PREFIX) => name == m.file,
        Some(m) => !m.replaces(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_inputs_or_the_merged_file_never_both() {
        let manifest = Manifest {
            file: "compacted-2.parquet".into(),
            rows: 3,
            replaces: vec![
                Replaced {
                    name: "t-0-1-2.parquet".into(),
                    since: Utc::now(),
                },
                Replaced {
                    name: "compacted-1.parquet".into(),
                    since: Utc::now(),
                },
            ],
        };
        // Before the commit: the merged file is not data yet.
        assert!(is_visible(None, "t-0-1-2.parquet"));
        assert!(!is_visible(None, "compacted-2.parquet"));
        // After: the merged file is, its inputs are not; later files still are.
        assert!(is_visible(Some(&manifest), "compacted-2.parquet"));
        assert!(!is_visible(Some(&manifest), "compacted-1.parquet"));
        assert!(!is_visible(Some(&manifest), "t-0-1-2.parquet"));
        assert!(is_visible(Some(&manifest), "t-0-3-9.parquet"));
        assert!(!is_visible(Some(&manifest), "compacted-3.parquet"));
        // Files being written and internal files never are.
        assert!(!is_visible(None, ".writing-abc.parquet"));
        assert!(!is_visible(Some(&manifest), MANIFEST));
    }
}
