//! Tailing one hourly log file from a byte offset, whole lines only: a line the writer has not
//! finished yet is carried over to the next read, never handed out cut short. Every line comes
//! with the offset just past its newline, the position a checkpoint may take once the line is
//! done with. One read buffer serves every pass (the carried partial line stays at its front).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

/// Bytes read per pass (the buffer grows past it only to hold one line longer than this).
const READ_CHUNK: usize = 1024 * 1024;

/// The file being tailed and how far it has been turned into lines.
#[derive(Debug)]
pub(super) struct Tail {
    name: Arc<str>,
    file: File,
    /// Offset of the first byte not yet handed out as part of a line.
    consumed: u64,
    /// `buffer[..carry]` is the start of a line not yet complete.
    buffer: Vec<u8>,
    carry: usize,
}

impl Tail {
    /// Opens `dir/name` at `offset` (the start of a line).
    pub(super) fn open(dir: &Path, name: &str, offset: u64) -> std::io::Result<Tail> {
        let mut file = File::open(dir.join(name))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Tail {
            name: Arc::from(name),
            file,
            consumed: offset,
            buffer: Vec::new(),
            carry: 0,
        })
    }

    /// The file's name.
    pub(super) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The offset of the first line not yet handed out.
    pub(super) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether a partial line is held (at the end of a file that will not grow again: a line cut
    /// short by a crash).
    pub(super) fn has_partial_line(&self) -> bool {
        self.carry > 0
    }

    /// Reads what the file has gained and hands each complete line (without its newline) and
    /// the offset just past it to `line`, in order. Returns the bytes read (0: nothing new). A
    /// read error counts as nothing new: the next pass tries again. If `line` fails, the lines
    /// after it are read again by the next call.
    pub(super) fn read_lines<E>(
        &mut self,
        mut line: impl FnMut(&[u8], u64) -> Result<(), E>,
    ) -> Result<usize, E> {
        self.buffer.resize(self.carry + READ_CHUNK, 0);
        let read = self.file.read(&mut self.buffer[self.carry..]).unwrap_or(0);
        let filled = self.carry + read;
        let mut start = 0;
        let result = loop {
            let Some(newline) = self.buffer[start..filled].iter().position(|&b| b == b'\n') else {
                break Ok(read);
            };
            let end = self.consumed + (start + newline + 1) as u64;
            if let Err(error) = line(&self.buffer[start..start + newline], end) {
                break Err(error);
            }
            start += newline + 1;
        };
        self.consumed += start as u64;
        if result.is_err() {
            // Back to the first line not handed out, so the next call starts there.
            self.carry = 0;
            let _ = self.file.seek(SeekFrom::Start(self.consumed));
        } else {
            self.buffer.copy_within(start..filled, 0);
            self.carry = filled - start;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(tail: &mut Tail) -> Vec<(String, u64)> {
        let mut lines = Vec::new();
        tail.read_lines(|line, end| {
            lines.push((String::from_utf8(line.to_vec()).unwrap(), end));
            Ok::<(), ()>(())
        })
        .unwrap();
        lines
    }

    #[test]
    fn hands_out_whole_lines_with_the_offset_past_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.2026-01-01-00.log");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let mut tail = Tail::open(dir.path(), "agent.2026-01-01-00.log", 0).unwrap();
        assert_eq!(lines_of(&mut tail), [("one".into(), 4), ("two".into(), 8)]);
        assert!(tail.has_partial_line());
        assert_eq!(tail.consumed(), 8);
        // The writer finishes the line and adds one.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"ee\nfour\n").unwrap();
        assert_eq!(
            lines_of(&mut tail),
            [("three".into(), 14), ("four".into(), 19)]
        );
        assert!(!tail.has_partial_line());
        assert_eq!(lines_of(&mut tail), []);
        assert_eq!(tail.consumed(), 19);
    }

    #[test]
    fn starts_at_an_offset_and_keeps_lines_longer_than_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(READ_CHUNK * 2 + 17);
        std::fs::write(dir.path().join("f"), format!("skipped\n{long}\nlast\n")).unwrap();
        let mut tail = Tail::open(dir.path(), "f", 8).unwrap();
        let mut lines = Vec::new();
        while tail
            .read_lines(|line, end| {
                lines.push((line.len(), end));
                Ok::<(), ()>(())
            })
            .unwrap()
            > 0
        {}
        let long_end = 8 + long.len() as u64 + 1;
        assert_eq!(lines, [(long.len(), long_end), (4, long_end + 5)]);
    }

    #[test]
    fn a_failed_line_is_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "a\nb\nc\n").unwrap();
        let mut tail = Tail::open(dir.path(), "f", 0).unwrap();
        let mut seen = Vec::new();
        let failed = tail.read_lines(|line, _| {
            if line == b"b" {
                return Err("full");
            }
            seen.push(line.to_vec());
            Ok(())
        });
        assert_eq!(failed, Err("full"));
        assert_eq!(tail.consumed(), 2);
        assert_eq!(lines_of(&mut tail), [("b".into(), 4), ("c".into(), 6)]);
        assert_eq!(seen, [b"a".to_vec()]);
    }
}
