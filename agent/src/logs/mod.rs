//! The agent's logs at their source. `to_file.rs` writes every event to the hourly local files,
//! the write-ahead log that the warm shipper and the cold-path roller read.

pub mod to_file;
