//! The hourly local log files of a directory (names: `logrecord::layout`), oldest first: the
//! order the shipper reads them in.

use logrecord::layout::is_raw_log_name;
use std::path::{Path, PathBuf};

/// One hourly file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFile {
    /// `agent.2026-11-21-09.log`
    pub name: String,
    pub path: PathBuf,
}

/// The hourly files in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_raw_log_name(&name) {
            files.push(LogFile {
                name,
                path: entry.path(),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}
