//! The local log writer's settings, declared once (flattened into the agent's settings,
//! `config.rs`) and validated here.

use serde::{Deserialize, Serialize};
use tracing::level_filters::LevelFilter;

/// Lines the log buffer may hold at most: at a few hundred bytes a line, about 2-3 GB.
const MAX_LOG_BUFFER_LINES: usize = 10_000_000;

/// How much the local log keeps and how much may wait for it.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WriterSettings {
    /// Lowest level written to the local log files: trace, debug, info, warn, error.
    #[arg(long, env = "AGENT_LOG_LEVEL", default_value = "debug")]
    pub log_level: String,
    /// Log lines that may wait for the log writer, all logging threads together; beyond it new
    /// events are dropped and counted.
    #[arg(long, env = "AGENT_LOG_BUFFER_LINES", default_value = "128000")]
    pub log_buffer_lines: usize,
}

impl WriterSettings {
    /// The level, or an error naming the levels there are.
    pub fn level(&self) -> anyhow::Result<LevelFilter> {
        self.log_level.parse::<LevelFilter>().map_err(|_| {
            anyhow::anyhow!(
                "--log-level {:?} is not one of trace, debug, info, warn, error, off",
                self.log_level
            )
        })
    }

    /// The buffer's size in lines, refused at zero or beyond what memory could hold.
    pub fn buffer_lines(&self) -> anyhow::Result<usize> {
        service::config::within(
            "--log-buffer-lines",
            self.log_buffer_lines,
            1,
            MAX_LOG_BUFFER_LINES,
        )
    }
}
