//! The hourly local log files: `<data-dir>/logs/agent.YYYY-MM-DD-HH.log` (UTC). Their names sort
//! in time order, which is the order the shipper reads them in.

use super::to_file::{FILE_PREFIX, FILE_SUFFIX};
use std::path::{Path, PathBuf};

/// One hourly file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// `agent.2026-11-21-09.log`
    pub name: String,
    pub path: PathBuf,
}

/// Whether `name` is an hourly log file's name.
pub fn is_log_file(name: &str) -> bool {
    let Some(hour) = name
        .strip_prefix(FILE_PREFIX)
        .and_then(|n| n.strip_prefix('.'))
    else {
        return false;
    };
    let Some(hour) = hour
        .strip_suffix(FILE_SUFFIX)
        .and_then(|n| n.strip_suffix('.'))
    else {
        return false;
    };
    // YYYY-MM-DD-HH
    hour.len() == 13
        && hour.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 4 | 7 | 10) {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// The hourly files in `dir`, oldest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_log_file(&name) {
            files.push(LogFile {
                name,
                path: entry.path(),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hourly_names_only() {
        assert!(is_log_file("agent.2026-02-29-23.log"));
        for other in [
            "agent.log",
            "agent.2026-02-29.log",
            "agent.2026-02-29-23.log.tmp",
            "x.2026-02-29-23.log",
            "agent.2026-02-2x-23.log",
        ] {
            assert!(!is_log_file(other), "{other}");
        }
    }
}
