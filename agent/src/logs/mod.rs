//! The agent's logs at their source, three components in their own folders, each with its
//! settings beside it (`settings.rs`, flattened into the agent's `config.rs`):
//! - `writer/`: every event to the hourly local files (named by `local_files.rs`; request events
//!   come in directly through `writer/request_log.rs`), the write-ahead log of both paths below;
//! - `shipper/`: the warm path, those files to Kafka (whole lines by `tail.rs`, the checkpoint
//!   moved by `ack_window.rs`);
//! - `roller/`: the cold path, each closed hour to Parquet, and retention.

pub(crate) mod local_files;
pub mod roller;
pub(crate) mod shipper;
pub(crate) mod writer;

pub use roller::settings::RollerSettings;
pub use shipper::settings::{KafkaConfig, ShipperSettings};
pub use writer::settings::WriterSettings;

use tokio_util::sync::CancellationToken;

/// The log threads of the warm and cold paths, stopped together after the servers.
#[derive(Debug)]
pub struct LogThreads {
    stop: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LogThreads {
    /// Starts the cold-path roller and, when given (Kafka configured), the warm shipper.
    pub(crate) fn start(
        shipper: Option<shipper::ShipperConfig>,
        roller: roller::RollerConfig,
    ) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let mut threads = Vec::new();
        if let Some(shipper) = shipper {
            threads.push(shipper::start(shipper, stop.clone())?);
        }
        threads.push(roller::start(roller, stop.clone())?);
        Ok(LogThreads { stop, threads })
    }

    /// Stops them: the shipper sends what was logged and stores its checkpoint, the roller
    /// finishes the pass it is in.
    pub async fn stop(self) {
        self.stop.cancel();
        for thread in self.threads {
            if tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_or(true, |joined| joined.is_err())
            {
                tracing::warn!("a log thread ended abnormally");
            }
        }
    }
}
