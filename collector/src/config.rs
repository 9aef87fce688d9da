//! Configuration: one clap struct with `env = "COLLECTOR_*"` on every flag and an optional TOML
//! file. Precedence: defaults < file < environment < flags.

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Command line of the `collector` binary.
#[derive(Debug, Default, Parser)]
#[command(
    name = "collector",
    version,
    about = "Kafka -> validated, deduplicated rows in a Delta Lake table (the warm store)"
)]
pub struct Cli {
    /// TOML file with any of the settings below (keys spelled as the flags, without `--`).
    #[arg(long, env = "COLLECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers. [default: 127.0.0.1:9092]
    #[arg(long, env = "COLLECTOR_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Topic the agents ship to. [default: imds.logs]
    #[arg(long, env = "COLLECTOR_TOPIC")]
    pub topic: Option<String>,
    /// Consumer group: collectors in one group share the partitions. [default: imds-collector]
    #[arg(long, env = "COLLECTOR_GROUP")]
    pub group: Option<String>,
    /// Static group membership id: a collector restarted with the same id takes its partitions
    /// back at once instead of after a rebalance. Unique per collector. [default: none]
    #[arg(long, env = "COLLECTOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// The warm store's Delta table: a directory or s3://bucket/prefix (S3 settings from the
    /// AWS_* variables). [default: ./data/warm]
    #[arg(long, env = "COLLECTOR_OUT", global = true)]
    pub out: Option<String>,
    /// Address of `/metrics`. [default: 127.0.0.1:9465]
    #[arg(long, env = "COLLECTOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Longest time a consumed event waits before it is committed, e.g. `2s`; also the least
    /// time between this collector's commits while it keeps up. [default: 2s]
    #[arg(long, env = "COLLECTOR_FLUSH_INTERVAL", value_parser = humantime::parse_duration)]
    pub flush_interval: Option<Duration>,
    /// Rows of one Kafka partition that trigger a write before the interval. [default: 200000]
    #[arg(long, env = "COLLECTOR_MAX_BATCH_ROWS")]
    pub max_batch_rows: Option<usize>,
    /// Fault injection for tests: hold every commit this long after its files are written
    /// (a collector stopped mid-commit).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub fault_commit_delay: Option<Duration>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands besides consuming (the default).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Rewrite each closed hour's small files into large ones sorted by time (Delta OPTIMIZE),
    /// safely while collectors append and queries read. Run it periodically (cron, a systemd
    /// timer).
    Compact(CompactArgs),
    /// Delete hours older than --max-age, then vacuum files no recent version refers to.
    /// Run it daily.
    Retain(RetainArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompactArgs {
    /// Compact an hour once it ended at least this long ago (later events may still arrive;
    /// a later run compacts them too).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
    /// Size of the files written, in bytes.
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    pub target_file_size: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetainArgs {
    /// Keep this much of the newest logs, e.g. `90d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_age: Duration,
    /// Files no longer in the table are deleted once they have been out of it this long: longer
    /// than the longest query (a query reads the version it started on).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub vacuum_after: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    kafka_brokers: Option<String>,
    topic: Option<String>,
    group: Option<String>,
    instance_id: Option<String>,
    out: Option<String>,
    metrics_listen: Option<SocketAddr>,
    flush_interval: Option<String>,
    max_batch_rows: Option<usize>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub instance_id: Option<String>,
    pub out: String,
    pub metrics_listen: SocketAddr,
    pub flush_interval: Duration,
    pub max_batch_rows: usize,
    pub fault_commit_delay: Option<Duration>,
}

impl Config {
    pub fn from_cli(cli: Cli) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let file_interval = file
            .flush_interval
            .map(|t| {
                humantime::parse_duration(&t)
                    .with_context(|| format!("flush-interval {t:?} in the config file"))
            })
            .transpose()?;
        let topic = cli
            .topic
            .or(file.topic)
            .unwrap_or_else(|| "imds.logs".into());
        if topic.is_empty()
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            bail!("--topic {topic:?} is not a valid Kafka topic name");
        }
        let flush_interval = cli
            .flush_interval
            .or(file_interval)
            .unwrap_or(Duration::from_secs(2));
        if flush_interval.is_zero() {
            bail!("--flush-interval must be above zero");
        }
        let max_batch_rows = cli
            .max_batch_rows
            .or(file.max_batch_rows)
            .unwrap_or(200_000);
        if max_batch_rows == 0 {
            bail!("--max-batch-rows must be above zero");
        }
        Ok(Config {
            brokers: cli
                .kafka_brokers
                .or(file.kafka_brokers)
                .unwrap_or_else(|| "127.0.0.1:9092".into()),
            topic,
            group: cli
                .group
                .or(file.group)
                .unwrap_or_else(|| "imds-collector".into()),
            instance_id: cli.instance_id.or(file.instance_id),
            out: cli
                .out
                .or(file.out)
                .unwrap_or_else(|| "data/warm".to_owned()),
            metrics_listen: cli
                .metrics_listen
                .or(file.metrics_listen)
                .unwrap_or(([127, 0, 0, 1], 9465).into()),
            flush_interval,
            max_batch_rows,
            fault_commit_delay: cli.fault_commit_delay,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_file_and_flags() {
        let config = Config::from_cli(Cli::try_parse_from(["collector"]).unwrap()).unwrap();
        assert_eq!(
            (
                config.brokers.as_str(),
                config.topic.as_str(),
                config.group.as_str()
            ),
            ("127.0.0.1:9092", "imds.logs", "imds-collector")
        );
        assert_eq!(config.flush_interval, Duration::from_secs(2));
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "topic = \"from-file\"\nflush-interval = \"500ms\"\ngroup = \"g\""
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "collector",
            "--config",
            file.path().to_str().unwrap(),
            "--group",
            "flag",
        ])
        .unwrap();
        let config = Config::from_cli(cli).unwrap();
        assert_eq!(
            (config.topic.as_str(), config.group.as_str()),
            ("from-file", "flag")
        );
        assert_eq!(config.flush_interval, Duration::from_millis(500));
        let bad = Cli::try_parse_from(["collector", "--topic", "a b"]).unwrap();
        assert!(
            format!("{:#}", Config::from_cli(bad).unwrap_err()).contains("not a valid Kafka topic")
        );
    }
}
