//! Reads of local files done on the calling thread. `object_store`'s local store hands every
//! read to tokio's blocking pool; over months of small hourly files (a few reads each) those
//! thread hand-offs cost more CPU than the reads (a third of a full scan, measured with perf).
//! A positioned read of a file in the page cache takes microseconds, so it is done in place;
//! a cold disk stalls one query thread instead of a pool thread. Anything but a plain range read
//! (conditions, versions, heads) goes to the real store.

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attributes, GetOptions, GetRange, GetResult, GetResultPayload, ObjectMeta, Result,
};
use std::ops::Range;
use std::os::unix::fs::FileExt;

fn io_error(path: &std::path::Path, location: &Path, error: std::io::Error) -> object_store::Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path: location.to_string(),
            source: error.into(),
        }
    } else {
        object_store::Error::Generic {
            store: "local reads",
            source: format!("{}: {error}", path.display()).into(),
        }
    }
}

fn read_at(file: &std::fs::File, range: &Range<u64>) -> std::io::Result<Bytes> {
    let mut buffer = vec![0; (range.end - range.start) as usize];
    file.read_exact_at(&mut buffer, range.start)?;
    Ok(buffer.into())
}

/// A bounded range read without conditions, done in place; `None`: let the store do it.
pub(crate) fn get(
    store: &LocalFileSystem,
    location: &Path,
    options: &GetOptions,
) -> Option<Result<GetResult>> {
    let Some(GetRange::Bounded(wanted)) = &options.range else {
        return None;
    };
    let plain = options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head;
    if !plain {
        return None;
    }
    let path = store.path_to_filesystem(location).ok()?;
    let result = (|| {
        let file = std::fs::File::open(&path)?;
        let metadata = file.metadata()?;
        let size = metadata.len();
        // Out-of-range requests get the store's own error.
        if wanted.start >= wanted.end || wanted.start >= size {
            return Ok(None);
        }
        let range = wanted.start..wanted.end.min(size);
        let bytes = read_at(&file, &range)?;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: metadata.modified()?.into(),
            size,
            e_tag: None,
            version: None,
        };
        Ok(Some(GetResult {
            payload: GetResultPayload::Stream(stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes: Attributes::default(),
        }))
    })();
    result.map_err(|e| io_error(&path, location, e)).transpose()
}

/// Several ranges of one file, read in place; `None`: let the store do it.
pub(crate) fn get_ranges(
    store: &LocalFileSystem,
    location: &Path,
    ranges: &[Range<u64>],
) -> Option<Result<Vec<Bytes>>> {
    let path = store.path_to_filesystem(location).ok()?;
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) => return Some(Err(io_error(&path, location, error))),
    };
    let size = match file.metadata() {
        Ok(metadata) => metadata.len(),
        Err(error) => return Some(Err(io_error(&path, location, error))),
    };
    Some(
        ranges
            .iter()
            .map(|range| {
                // A reader misled by a crafted file can ask for a reversed or enormous range:
                // an error, never an allocation of its length.
                if range.start > range.end || range.end > size {
                    return Err(object_store::Error::Generic {
                        store: "local reads",
                        source: format!(
                            "{}: range {}..{} is outside the file ({size} bytes): the file is damaged or not Parquet",
                            path.display(),
                            range.start,
                            range.end
                        )
                        .into(),
                    });
                }
                read_at(&file, range).map_err(|e| io_error(&path, location, e))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_ranges_are_read_in_place_and_anything_else_is_left_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("date=2026-01-01").join("a b.parquet");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"0123456789").unwrap();
        let store = LocalFileSystem::new();
        let location = Path::from_absolute_path(&file).unwrap();
        let range = |r: Range<u64>| GetOptions {
            range: Some(GetRange::Bounded(r)),
            ..Default::default()
        };

        let got = get(&store, &location, &range(2..5)).unwrap().unwrap();
        assert_eq!((got.range.clone(), got.meta.size), (2..5, 10));
        assert_eq!(&got.bytes().await.unwrap()[..], b"234");
        // Past the end: the rest of the file, as the store answers.
        let got = get(&store, &location, &range(8..50)).unwrap().unwrap();
        assert_eq!(&got.bytes().await.unwrap()[..], b"89");
        let ranges = get_ranges(&store, &location, &[0..1, 9..10])
            .unwrap()
            .unwrap();
        assert_eq!(ranges, vec![Bytes::from("0"), Bytes::from("9")]);

        // Starting past the end, conditional, whole-object: the store's own answer.
        assert!(get(&store, &location, &range(10..12)).is_none());
        let conditional = GetOptions {
            if_match: Some("x".into()),
            ..range(0..1)
        };
        assert!(get(&store, &location, &conditional).is_none());
        assert!(get(&store, &location, &GetOptions::default()).is_none());

        let missing = Path::from_absolute_path(dir.path().join("gone.parquet")).unwrap();
        assert!(matches!(
            get(&store, &missing, &range(0..1)),
            Some(Err(object_store::Error::NotFound { .. }))
        ));
        assert!(matches!(
            get_ranges(&store, &missing, &[0..1, 2..3]),
            Some(Err(object_store::Error::NotFound { .. }))
        ));
        // Reversed, and far past the end: errors, never a read (or an allocation) of the length.
        let reversed = std::ops::Range { start: 5, end: 2 };
        for bad in [vec![0..1, reversed], vec![0..u64::MAX, 0..1]] {
            assert!(matches!(
                get_ranges(&store, &location, &bad),
                Some(Err(object_store::Error::Generic { .. }))
            ));
        }
    }
}
