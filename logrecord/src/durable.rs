//! Small files the pipeline must never leave half written (the shipper's checkpoint, the
//! collector's state, the agent's copy of its upstream document): written to a hidden temporary
//! file in the same directory, fsynced, renamed over the old one, and the directory fsynced. After a
//! crash the file is the old version or the new one, whole.

use std::io::Write;
use std::path::Path;

/// The directory a file is in: `.` for a bare file name (whose `parent()` is the empty path,
/// which cannot be created, listed or fsynced).
pub fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes` atomically and durably, creating its directory if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = directory_of(path);
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
    use super::directory_of;
    use std::path::Path;

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        assert_eq!(directory_of(Path::new("out.parquet")), Path::new("."));
        assert_eq!(directory_of(Path::new("a/out.parquet")), Path::new("a"));
        assert_eq!(directory_of(Path::new("/out.parquet")), Path::new("/"));
    }

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
