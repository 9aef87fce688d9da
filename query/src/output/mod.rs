//! What a statement's rows become: a table, CSV, JSON lines or Parquet (`print.rs`), and the
//! progress of a long scan on stderr (`progress.rs`).

pub(crate) mod print;
pub(crate) mod progress;
