//! Small files the pipeline must never leave half written (the shipper's checkpoint, the agent's
//! copy of its upstream document), and their reading back. Written to a hidden temporary
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

/// Reads a small JSON file written by [`write_atomically`]: `None` when there is none yet; an
/// error naming the file when it cannot be read or is not what it should be.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(std::io::Error::new(
                error.kind(),
                format!("reading {}: {error}", path.display()),
            ));
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {error}", path.display()),
        )
    })
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
    fn reads_back_nothing_what_was_written_or_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(super::read_json::<Vec<u32>>(&path).unwrap(), None);
        super::write_atomically(&path, b"[1,2]").unwrap();
        assert_eq!(
            super::read_json::<Vec<u32>>(&path).unwrap(),
            Some(vec![1, 2])
        );
        std::fs::write(&path, b"[1,").unwrap();
        let error = super::read_json::<Vec<u32>>(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("state.json"), "{error}");
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
