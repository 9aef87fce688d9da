//! An agent's data directory read back: its local log records and its shipper's checkpoint, and
//! from both, what the warm store must hold.

use logrecord::{Level, LogRecord};
use std::path::{Path, PathBuf};

/// The complete records of one log file (the writer may be mid-line: only complete lines count).
pub fn read_log_records_of(file: &Path) -> Vec<LogRecord> {
    let text = std::fs::read_to_string(file).unwrap();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|line| {
            LogRecord::from_json_line(line)
                .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()))
        })
        .collect()
}

/// The complete records of every log file in `dir`, in file and line order (none without `dir`).
pub fn read_log_records(dir: &Path) -> Vec<LogRecord> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    files.iter().flat_map(|f| read_log_records_of(f)).collect()
}

/// The INFO-and-above events of stopped agents' local logs that their shippers' checkpoints
/// cover: what the warm store must hold. What follows a checkpoint (the events a stopping agent
/// logs after its shipper stopped) waits on disk for the next start; this checks it is only that.
pub fn warm_events(data_dirs: &[&Path]) -> Vec<LogRecord> {
    let mut shipped = Vec::new();
    for dir in data_dirs {
        let position = checkpoint(dir);
        let (before, after): (Vec<_>, Vec<_>) = warm_lines(dir)
            .into_iter()
            .partition(|line| line.is_before(&position));
        let after: Vec<String> = after.into_iter().map(|line| line.record.message).collect();
        assert!(
            after
                .iter()
                .all(|m| m == "shipper stopped" || m == "agent stopped"),
            "events after the checkpoint of {}: {after:?}",
            dir.display()
        );
        shipped.extend(before.into_iter().map(|line| line.record));
    }
    shipped
}

/// An INFO-and-above record of an agent's local log, with where its line ends.
#[derive(Debug)]
pub struct WarmLine {
    file: String,
    end: u64,
    /// The record.
    pub record: LogRecord,
}

impl WarmLine {
    /// Whether the line lies before a shipper position (file name, byte offset).
    fn is_before(&self, position: &(String, u64)) -> bool {
        self.file < position.0 || (self.file == position.0 && self.end <= position.1)
    }
}

/// The INFO-and-above records of an agent's local log, in file order, with their positions.
pub fn warm_lines(data_dir: &Path) -> Vec<WarmLine> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut end = 0u64;
        for line in std::fs::read(&path)
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
        {
            end += line.len() as u64;
            if let Ok(record) = LogRecord::from_json_line(std::str::from_utf8(line).unwrap())
                && record.level >= Level::Info
            {
                lines.push(WarmLine {
                    file: file.clone(),
                    end,
                    record,
                });
            }
        }
    }
    lines
}

/// The shipper's checkpoint of an agent's data directory: file name and offset.
pub fn checkpoint(data_dir: &Path) -> (String, u64) {
    let checkpoint: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.join("shipper/checkpoint.json")).unwrap(),
    )
    .unwrap();
    (
        checkpoint["file"].as_str().unwrap().to_owned(),
        checkpoint["offset"].as_u64().unwrap(),
    )
}

/// How many INFO-and-above lines lie before `position` in an agent's local log.
pub fn warm_lines_before(data_dir: &Path, position: &(String, u64)) -> usize {
    warm_lines(data_dir)
        .iter()
        .filter(|line| line.is_before(position))
        .count()
}
