//! Why a write to the table failed, decided where the error is made (from delta-rs's and
//! object_store's own error types), so a writer branches on the variant: drop the write, stop,
//! or retry.

use deltalake::{DeltaTableError, ObjectStoreError};

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Another writer stored progress for a partition this write expected to own: the write is
    /// dropped (its rows are the other writer's to store).
    #[error("fenced: {0}")]
    Fenced(String),
    /// Retrying cannot cure it: the store refuses this writer (permissions, credentials, a
    /// read-only file system) or the table is not one it can write (not a Delta table, another
    /// schema, a protocol feature it lacks).
    #[error("{context}")]
    Refused {
        /// What was being done.
        context: &'static str,
        /// delta-rs's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<DeltaTableError>,
    },
    /// May pass: network, throttling, a full disk someone may clear, a conflicting commit.
    #[error("{context}")]
    Passing {
        /// What was being done.
        context: &'static str,
        /// delta-rs's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<DeltaTableError>,
    },
}

impl WriteError {
    /// Classifies `source`, which happened while doing `context`.
    pub fn new(context: &'static str, source: impl Into<DeltaTableError>) -> Self {
        let source = Box::new(source.into());
        if refuses(&source) {
            WriteError::Refused { context, source }
        } else {
            WriteError::Passing { context, source }
        }
    }
}

fn refuses(error: &DeltaTableError) -> bool {
    match error {
        DeltaTableError::NotATable(_)
        | DeltaTableError::SchemaMismatch { .. }
        | DeltaTableError::MissingFeature { .. }
        | DeltaTableError::InvalidTableLocation(_)
        | DeltaTableError::UnsupportedColumnMapping { .. } => true,
        // A refusal by the store may come wrapped several times (the Parquet writer's external
        // error around an I/O error around object_store's generic one around the local file
        // system's I/O error): any refusing store or I/O error in the chain decides.
        other => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(other);
            while let Some(error) = cause {
                if let Some(store) = error.downcast_ref::<ObjectStoreError>() {
                    if store_refuses(store) {
                        return true;
                    }
                } else if let Some(io) = error.downcast_ref::<std::io::Error>() {
                    if io_refuses(io) {
                        return true;
                    }
                    // object_store's buffered writer turns its errors into I/O errors of kind
                    // Other; the store's own error is inside (`source()` would skip it).
                    if let Some(inner) = io.get_ref() {
                        cause = Some(inner);
                        continue;
                    }
                }
                cause = error.source();
            }
            false
        }
    }
}

fn store_refuses(error: &ObjectStoreError) -> bool {
    matches!(
        error,
        ObjectStoreError::PermissionDenied { .. }
            | ObjectStoreError::Unauthenticated { .. }
            | ObjectStoreError::NotSupported { .. }
    )
}

fn io_refuses(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(error: DeltaTableError) -> bool {
        matches!(
            WriteError::new("writing", error),
            WriteError::Refused { .. }
        )
    }

    #[test]
    fn refusals_are_permanent_and_the_rest_may_pass() {
        let io = |kind| DeltaTableError::from(std::io::Error::from(kind));
        assert!(refused(io(std::io::ErrorKind::PermissionDenied)));
        assert!(refused(io(std::io::ErrorKind::ReadOnlyFilesystem)));
        assert!(!refused(io(std::io::ErrorKind::StorageFull)));
        assert!(!refused(io(std::io::ErrorKind::ConnectionReset)));
        let denied = ObjectStoreError::PermissionDenied {
            path: "warm/_delta_log/00000000000000000007.json".into(),
            source: "403 Forbidden".into(),
        };
        assert!(refused(denied.into()));
        let read_only = ObjectStoreError::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem)),
        };
        assert!(refused(read_only.into()));
        let read_only_inside_parquet = ObjectStoreError::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem)),
        };
        let parquet = deltalake::parquet::errors::ParquetError::External(Box::new(
            std::io::Error::other(read_only_inside_parquet),
        ));
        assert!(refused(parquet.into()));
        let throttled = ObjectStoreError::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        };
        assert!(!refused(throttled.into()));
        assert!(refused(DeltaTableError::NotATable(
            "s3://bucket/warm".into()
        )));
        assert!(!refused(DeltaTableError::VersionAlreadyExists(7)));
    }
}
