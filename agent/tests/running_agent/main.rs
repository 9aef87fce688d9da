//! The agent as its users meet it: the real binary started by the test kit (`testkit`), called
//! over loopback HTTP, its log files, Parquet and metrics read back. One test binary with a
//! module per concern (one link instead of ten; each module says what it proves).
#![allow(clippy::unwrap_used)]

mod admin_api;
mod admin_tls;
mod api_contract;
mod azure_client;
mod azure_compat;
mod clock;
mod cold_path;
mod example;
mod hostile_callers;
mod hot_path_and_log;
mod lifecycle;
mod metadata_sources;
