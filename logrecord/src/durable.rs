//! Small files the pipeline must never leave half written (the shipper's checkpoint, the
//! collector's state, the agent's copy of its upstream document): written to a hidden temporary
//! file in the same directory, fsynced, renamed over the old one, and the directory fsynced. After a
//! crash the file is the old version or the new one, whole.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` atomically and durably, creating its directory if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".writing-")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        super::write_atomically(&path, b"one").unwrap();
        super::write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
