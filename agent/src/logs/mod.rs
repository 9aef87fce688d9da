//! The agent's logs at their source. `to_file.rs` writes every event to the hourly local files
//! (`local_files.rs`), the write-ahead log that `to_kafka.rs` ships to the warm path and the
//! cold-path roller turns into Parquet.

pub mod checkpoint;
pub mod local_files;
pub mod roll_to_parquet;
pub mod to_file;
pub mod to_kafka;
