//! The warm store is one Delta Lake table (delta-rs), and this crate is its one home: what the
//! collector writes, what `query` reads with, and what tests and benchmarks build fixtures with.
//! The table's log is the only record of what it holds, so every engine that reads Delta (Spark,
//! DuckDB, Polars, `query`) sees exactly the committed rows, and a commit is all or nothing.
//!
//! | what | file |
//! |---|---|
//! | columns in Delta's types, partition columns, records <-> file batches | `schema.rs` |
//! | `--out` -> URL, storage registration, create/open, checkpoints | `location.rs` |
//! | records -> one file per `date=/hour=/cluster=` directory | `partition_files.rs` |
//! | one commit of files with progress (`txn`) and a fence; dead letters | `append.rs` |
//! | why a write failed: fenced, refused (stop), passing (retry) | `write_error.rs` |
//! | progress: per Kafka partition and per machine | `progress.rs` |
//! | closed hours' small files -> sorted large ones | `compact.rs` |
//! | closed hours -> rollup tables beside the table (`_rollups/`) | `rollup/` |
//! | old hours deleted, unreferenced files vacuumed | `retain.rs` |
//! | every row, data files, a file's bytes (tests, benchmarks) | `read.rs` |
//!
//! It is a crate of its own, not a module of `logrecord`, because it brings delta-rs and
//! DataFusion: the agent, which uses `logrecord`, must stay small and build without them.

mod append;
pub mod compact;
mod location;
mod partition_files;
mod progress;
mod read;
pub mod retain;
pub mod rollup;
mod schema;
mod write_error;

pub use append::{Appended, append, put_dead_letters, write_records};
pub use location::{
    CHECKPOINT_INTERVAL, checkpoint, location, open, open_or_create, open_with, register_storage,
};
pub use partition_files::{
    Directory, PartitionFile, directories, file_order, partition_files, sort_into_file_order,
};
pub use progress::{machine_app_id, partition_app_id, stored_version};
pub use read::{data_files, loaded_data_files, read_file, read_records, read_records_with};
pub use schema::{PARTITION_COLUMNS, schema, to_file_batch, to_records};
pub use write_error::WriteError;
