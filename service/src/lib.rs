//! Plumbing every long-running binary of the project shares, so it is written and fixed once:
//! configuration layered from defaults, a file, the environment and flags ([`config`]), shutdown
//! at SIGTERM or Ctrl-C ([`shutdown`]), the Prometheus `/metrics` endpoint with its
//! upkeep ([`exporter`]), the human log on stderr ([`console_log`]), the back-off policy of
//! every retry ([`retry`]), secrets read from private files ([`secrets`]), and how every Kafka
//! client authenticates ([`kafka_security`]).
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod console_log;
pub mod exporter;
pub mod kafka_security;
pub mod retry;
pub mod secrets;
pub mod shutdown;
pub mod text;
