//! The hourly local log file the writer thread appends to: `<dir>/agent.YYYY-MM-DD-HH.log`, a new
//! file each UTC hour (names from `logrecord::layout`, the names `tracing-appender`'s hourly
//! appender uses).
//!
//! Written here rather than with `tracing-appender`'s appender, which hides its file: when a
//! write fails part-way (a full disk), the file must be cut back to its last whole line, or a
//! line would be left half written. Appends are whole lines or nothing.

use chrono::Utc;
use logrecord::layout::Hour;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// Where whole lines are appended: the hourly file, or a stand-in in tests.
pub(crate) trait AppendLines {
    /// Appends whole lines; on failure keeps a prefix of whole lines and says how long.
    fn append_lines(&mut self, lines: &[u8]) -> Result<(), Partial>;
    fn flush(&mut self) -> io::Result<()>;
}

/// The current hour's file, opened on the first write of each hour.
#[derive(Debug)]
pub(crate) struct HourlyFile {
    dir: PathBuf,
    /// The hour's name, its file, and the file's length (kept here: a `stat` per append was a
    /// syscall per flush, visible in the request path's profile).
    open: Option<(i64, File, u64)>,
}

/// A failed append: how many bytes of whole lines reached the file, and why the rest did not.
#[derive(Debug)]
pub(crate) struct Partial {
    pub written: usize,
    pub error: io::Error,
}

impl HourlyFile {
    pub(crate) fn new(dir: PathBuf) -> Self {
        HourlyFile { dir, open: None }
    }
}

impl AppendLines for HourlyFile {
    /// Appends `lines` (whole lines, each ending in `\n`) to this hour's file. On failure the file
    /// keeps the whole lines that fit and nothing of the line that did not.
    fn append_lines(&mut self, lines: &[u8]) -> Result<(), Partial> {
        let (file, len) = self
            .current()
            .map_err(|error| Partial { written: 0, error })?;
        let start = *len;
        let mut written = 0;
        let result = loop {
            if written == lines.len() {
                break Ok(());
            }
            match file.write(&lines[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                *len = start + written as u64;
                Ok(())
            }
            Err(error) => {
                let partial = cut_back(file, start, lines, written, error);
                *len = start + partial.written as u64;
                Err(partial)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.open {
            Some((_, file, _)) => file.flush(),
            None => Ok(()),
        }
    }
}

impl HourlyFile {
    fn current(&mut self) -> io::Result<(&mut File, &mut u64)> {
        let now = Utc::now();
        let hour = now.timestamp().div_euclid(3600);
        if self.open.as_ref().is_none_or(|(open, _, _)| *open != hour) {
            self.open = None;
            std::fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(Hour::of(now).raw_log_name());
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            // Only this writer appends to the hour's file.
            let len = file.metadata()?.len();
            self.open = Some((hour, file, len));
        }
        match &mut self.open {
            Some((_, file, len)) => Ok((file, len)),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
}

/// After `written` bytes of `lines` went in at `start`: truncates the file to the end of the last
/// whole line (appends go to the new end: the file is opened in append mode).
fn cut_back(file: &File, start: u64, lines: &[u8], written: usize, error: io::Error) -> Partial {
    let whole = lines[..written]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    if whole < written {
        // Nothing to do if even this fails (it does not, on a full disk: it frees space); not
        // logged, this being the log writer.
        let _ = file.set_len(start + whole as u64);
    }
    Partial {
        written: whole,
        error,
    }
}
