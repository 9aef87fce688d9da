//! The cold-path roller's settings, declared once (flattened into the agent's settings,
//! `config.rs`) and validated here.

use super::Retention;
use serde::{Deserialize, Serialize};
use service::config::duration;
use std::time::Duration;

/// How long the cold path keeps its files, how much disk it may use, how many threads roll.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RollerSettings {
    /// How long raw hourly log files are kept after their hour (once rolled and shipped).
    #[arg(long, env = "AGENT_RETAIN_RAW", value_parser = humantime::parse_duration, default_value = "2days")]
    #[serde(with = "duration")]
    pub retain_raw: Duration,
    /// How long hourly Parquet files are kept.
    #[arg(long, env = "AGENT_RETAIN_PARQUET", value_parser = humantime::parse_duration, default_value = "90days")]
    #[serde(with = "duration")]
    pub retain_parquet: Duration,
    /// Disk budget for raw and Parquet files together, bytes; oldest go first. 0: none.
    #[arg(long, env = "AGENT_MAX_DISK_BYTES", default_value = "0")]
    pub max_disk_bytes: u64,
    /// Threads that parse and compress a closed hour's log into Parquet (once an hour, for
    /// seconds). Default: the number of cores.
    #[arg(long, env = "AGENT_ROLL_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub roll_threads: Option<u16>,
}

impl RollerSettings {
    /// What retention keeps.
    pub fn retention(&self) -> Retention {
        Retention {
            raw: self.retain_raw,
            parquet: self.retain_parquet,
            max_disk_bytes: Some(self.max_disk_bytes).filter(|&b| b > 0),
        }
    }

    /// The rolling threads: as many as cores unless set, at most 1024.
    pub fn threads(&self) -> anyhow::Result<usize> {
        match self.roll_threads {
            None => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
            Some(threads) => Ok(usize::from(service::config::within(
                "--roll-threads",
                threads,
                1,
                1024,
            )?)),
        }
    }
}
