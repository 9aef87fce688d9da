//! The collector and the warm store's Delta table with real parts: a Kafka broker
//! (`scripts/kafka`), real agents and collectors started by the test kit (`testkit`), Spark and
//! the Python `deltalake` package as other readers. One test binary with a module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod compaction;
mod new_patterns;
mod other_engines;
mod secured;
mod store;
mod warm_path;
