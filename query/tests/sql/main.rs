//! The `query` binary as its users run it: the CLI over stores written as the collector and the
//! agent write them, remote sources (a real agent's admin API, an S3 server), hostile input, and
//! `query serve` with real PostgreSQL clients. One test binary with a module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;
mod hostile_input;
mod latest_delta;
mod mutations;
mod pattern_ids;
mod query_cli;
mod remote_sources;
mod rollups;
mod serve;
mod serve_mutations;
