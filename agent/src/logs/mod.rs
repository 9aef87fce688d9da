//! The agent's logs at their source. `to_file.rs` writes every event to the hourly local files
//! (`local_files.rs`; request events come in directly through `request_log.rs`), the write-ahead
//! log that `to_kafka.rs` ships to the warm path and the cold-path roller turns into Parquet. The
//! shipper reads whole lines with `tail.rs` and moves its checkpoint by `ack_window.rs`.

mod ack_window;
pub(crate) mod checkpoint;
pub(crate) mod hourly_file;
mod kafka_producer;
mod line_sink;
pub(crate) mod local_files;
pub(crate) mod log_queue;
pub(crate) mod request_log;
pub mod roll_to_parquet;
mod tail;
pub(crate) mod to_file;
pub(crate) mod to_kafka;

use crate::config::Config;
use tokio_util::sync::CancellationToken;

/// The log threads of the warm and cold paths, stopped together after the servers.
#[derive(Debug)]
pub struct LogThreads {
    stop: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LogThreads {
    /// Starts the cold-path roller and, with Kafka configured, the warm shipper.
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let mut threads = Vec::new();
        if let Some(kafka) = &config.kafka {
            let shipper = to_kafka::ShipperConfig {
                brokers: kafka.brokers.clone(),
                topic: kafka.topic.clone(),
                security: kafka.security.clone(),
                machine: config.machine.clone(),
                log_dir: config.log_dir(),
                checkpoint: config.shipper_checkpoint(),
            };
            threads.push(to_kafka::start(shipper, stop.clone())?);
        }
        let roller = roll_to_parquet::RollerConfig {
            log_dir: config.log_dir(),
            parquet_dir: config.parquet_dir(),
            machine: config.machine.clone(),
            retention: config.retention.clone(),
            threads: config.roll_threads,
            shipper_checkpoint: config.kafka.is_some().then(|| config.shipper_checkpoint()),
        };
        threads.push(roll_to_parquet::start(roller, stop.clone())?);
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
