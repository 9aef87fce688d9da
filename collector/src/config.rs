//! Configuration: every setting declared once in [`Settings`] (flag, `COLLECTOR_*` variable, file
//! key, default, type), layered by `service::config` (defaults < the `--config` TOML file <
//! environment < flags), then validated into [`Config`].

use anyhow::bail;
use clap::{CommandFactory, Parser};
use serde::{Deserialize, Serialize};
use service::config::duration;
use service::kafka_security::{KafkaSecurity, KafkaSecuritySettings, Protocol};
use service::secrets::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use warm_table::compact::CompactOptions;

/// Command line of the `collector` binary: the configuration file, every setting, the flags of
/// tests and the maintenance commands.
#[derive(Debug, Parser)]
#[command(
    name = "collector",
    version,
    about = "Kafka -> validated, deduplicated rows in a Delta Lake table (the warm store)"
)]
pub struct Cli {
    /// TOML file with any of the settings below (keys spelled as the flags, without `--`).
    #[arg(long, env = "COLLECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Every setting.
    #[command(flatten)]
    pub settings: Settings,
    /// Fault injection for tests: hold every commit this long after its files are written
    /// (a collector stopped mid-commit).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub fault_commit_delay: Option<Duration>,
    #[command(subcommand)]
    /// `compact` or `retain`; without one, consume.
    pub command: Option<Command>,
}

/// Every setting of the collector, each declared once: its doc is the help, `arg` gives the
/// flag, the variable and the default, the kebab-case name is the file key (an unknown key is an
/// error). Layered by `service::config::layered`, then validated into [`Config`].
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "COLLECTOR_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_brokers: String,
    /// How the collector reaches Kafka: plaintext (development on loopback), ssl (mutual TLS) or
    /// sasl_ssl (SCRAM-SHA-512 over TLS).
    #[arg(
        long,
        env = "COLLECTOR_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value = "plaintext"
    )]
    pub kafka_security_protocol: Protocol,
    /// PEM file of the CA that signed the brokers' certificates (default: the system's CAs).
    #[arg(long, env = "COLLECTOR_KAFKA_CA_FILE")]
    pub kafka_ca_file: Option<PathBuf>,
    /// PEM file of this collector's client certificate (ssl: mutual TLS).
    #[arg(long, env = "COLLECTOR_KAFKA_CERT_FILE")]
    pub kafka_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (mode 600: refused if others can read it).
    #[arg(long, env = "COLLECTOR_KAFKA_KEY_FILE")]
    pub kafka_key_file: Option<PathBuf>,
    /// SCRAM-SHA-512 user (sasl_ssl).
    #[arg(long, env = "COLLECTOR_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// File holding the SCRAM password (mode 600); or the password in COLLECTOR_KAFKA_SASL_PASSWORD
    /// (never a flag: arguments are visible in `ps`).
    #[arg(long, env = "COLLECTOR_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// Topic the agents ship to.
    #[arg(long, env = "COLLECTOR_TOPIC", default_value = "imds.logs")]
    pub topic: String,
    /// Consumer group: collectors in one group share the partitions.
    #[arg(long, env = "COLLECTOR_GROUP", default_value = "imds-collector")]
    pub group: String,
    /// Static group membership id: a collector restarted with the same id takes its partitions
    /// back at once instead of after a rebalance. Unique per collector; none by default.
    #[arg(long, env = "COLLECTOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// The warm store's Delta table: a directory or s3://bucket/prefix (S3 settings from the
    /// AWS_* variables).
    #[arg(
        long,
        env = "COLLECTOR_OUT",
        global = true,
        default_value = "data/warm"
    )]
    pub out: String,
    /// Address of `/metrics`.
    #[arg(
        long,
        env = "COLLECTOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9465"
    )]
    pub metrics_listen: SocketAddr,
    /// Longest time a consumed event waits before it is committed, e.g. `2s`; also the least
    /// time between this collector's commits while it keeps up.
    #[arg(long, env = "COLLECTOR_FLUSH_INTERVAL", value_parser = humantime::parse_duration, default_value = "2s")]
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Rows of one Kafka partition that trigger a write before the interval.
    #[arg(long, env = "COLLECTOR_MAX_BATCH_ROWS", default_value = "200000")]
    pub max_batch_rows: usize,
    /// Also run `collector compact` (with its defaults) this often, e.g. `10m`, and export what
    /// it finds: log patterns new to a cluster (the new-pattern alert) and lines per pattern.
    /// Off by default; one collector of a group is enough (runs at once are safe).
    #[arg(long, env = "COLLECTOR_COMPACT_EVERY", value_parser = humantime::parse_duration)]
    #[serde(default, with = "duration::option")]
    pub compact_every: Option<Duration>,
}

/// Commands besides consuming (the default).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Rewrite each closed hour's small files into large ones sorted by time (Delta OPTIMIZE),
    /// then roll up every closed hour not rolled up yet or with late rows since (the rollup
    /// tables under `_rollups/`), safely while collectors append and queries read. Run it
    /// periodically (cron, a systemd timer).
    Compact(CompactArgs),
    /// Delete hours older than --max-age, then vacuum files no recent version refers to.
    /// Run it daily.
    Retain(RetainArgs),
}

#[derive(Debug, Clone, clap::Args)]
/// Flags of `collector compact`.
pub struct CompactArgs {
    /// Compact an hour once it ended at least this long ago (later events may still arrive;
    /// a later run compacts them too).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
    /// Also compact the hour in progress (whatever --min-age says): at a short --flush-interval
    /// its small files pile up until it closes, and every reader loads them from the log. Its
    /// later events add small files again; the next run merges them.
    #[arg(long)]
    pub open_hour: bool,
    /// Size of the files written, in bytes (1 MiB to 16 GiB).
    #[arg(long, default_value_t = 128 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1 << 20..=1 << 34))]
    pub target_file_size: u64,
    /// Values kept per cluster and hour in each rollup dimension that callers or code fill
    /// (path, api-version, message, ...): the most frequent; the rest are counted under
    /// `(other)`, so a flood of distinct values cannot grow a rollup.
    #[arg(long, default_value_t = warm_table::rollup::DEFAULT_TOP_VALUES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub rollup_top_values: usize,
}

#[derive(Debug, Clone, clap::Args)]
/// Flags of `collector retain`.
pub struct RetainArgs {
    /// Keep this much of the newest logs, e.g. `90d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_age: Duration,
    /// Files no longer in the table are deleted once they have been out of it this long: longer
    /// than the longest query (a query reads the version it started on).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub vacuum_after: Duration,
}

impl CompactArgs {
    /// What `warm_table::compact::run` is given for the table at `out`, at `now`.
    pub fn options(&self, out: &str, now: chrono::DateTime<chrono::Utc>) -> CompactOptions {
        CompactOptions {
            out: out.to_owned(),
            min_age: self.min_age,
            open_hour: self.open_hour,
            target_file_size: self.target_file_size,
            rollup_top_values: self.rollup_top_values,
            now,
        }
    }
}

impl Default for CompactArgs {
    /// The flags' defaults, as declared above (what `--compact-every` runs with).
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let matches =
            Self::augment_args(clap::Command::new("compact")).get_matches_from(["compact"]);
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// The command line, `--help` showing every default and variable.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// How the collector authenticates to Kafka and checks the brokers.
    pub security: KafkaSecurity,
    /// The topic the agents ship to.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Static group membership id, if any.
    pub instance_id: Option<String>,
    /// The warm store's Delta table: a directory or `s3://` URL.
    pub out: String,
    /// Address of `/metrics`.
    pub metrics_listen: SocketAddr,
    /// Longest time a consumed event waits before it is committed.
    pub flush_interval: Duration,
    /// Rows of one partition that trigger a write before the interval.
    pub max_batch_rows: usize,
    /// Fault injection for tests: hold every commit this long after its files are written.
    pub fault_commit_delay: Option<Duration>,
    /// How often the consuming collector compacts the table too, if at all.
    pub compact_every: Option<Duration>,
}

impl Config {
    /// Layers the settings of the parsed command line `cli` (defaults < `--config` file <
    /// environment < flags) and validates them.
    pub fn from_matches(matches: &clap::ArgMatches, cli: &Cli) -> anyhow::Result<Self> {
        let s = service::config::layered(matches, cli.config.as_deref(), &cli.settings)?;
        if s.topic.is_empty()
            || !s
                .topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            bail!("--topic {:?} is not a valid Kafka topic name", s.topic);
        }
        if s.flush_interval.is_zero() {
            bail!("--flush-interval must be above zero");
        }
        service::config::within("--max-batch-rows", s.max_batch_rows, 1, 10_000_000)?;
        if s.compact_every
            .is_some_and(|every| every < Duration::from_secs(1))
        {
            bail!("--compact-every must be at least 1s");
        }
        let security = KafkaSecurity::new(KafkaSecuritySettings {
            protocol: s.kafka_security_protocol,
            ca_file: s.kafka_ca_file,
            cert_file: s.kafka_cert_file,
            key_file: s.kafka_key_file,
            sasl_username: s.kafka_sasl_username,
            sasl_password_file: s.kafka_sasl_password_file,
            sasl_password: std::env::var("COLLECTOR_KAFKA_SASL_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
        })?;
        Ok(Config {
            brokers: s.kafka_brokers,
            security,
            topic: s.topic,
            group: s.group,
            instance_id: s.instance_id,
            out: s.out,
            metrics_listen: s.metrics_listen,
            flush_interval: s.flush_interval,
            max_batch_rows: s.max_batch_rows,
            fault_commit_delay: cli.fault_commit_delay,
            compact_every: s.compact_every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;
    use std::io::Write;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let matches = command().try_get_matches_from(args)?;
        Config::from_matches(&matches, &Cli::from_arg_matches(&matches)?)
    }

    #[test]
    fn defaults_file_and_flags() {
        let config = parse(&["collector"]).unwrap();
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
        let config = parse(&[
            "collector",
            "--config",
            file.path().to_str().unwrap(),
            "--group",
            "flag",
        ])
        .unwrap();
        assert_eq!(
            (config.topic.as_str(), config.group.as_str()),
            ("from-file", "flag")
        );
        assert_eq!(config.flush_interval, Duration::from_millis(500));
        let bad = parse(&["collector", "--topic", "a b"]).unwrap_err();
        assert!(format!("{bad:#}").contains("not a valid Kafka topic"));
    }

    #[test]
    fn compaction_in_the_daemon_is_off_by_default_and_never_below_a_second() {
        assert_eq!(parse(&["collector"]).unwrap().compact_every, None);
        assert_eq!(
            parse(&["collector", "--compact-every", "10m"])
                .unwrap()
                .compact_every,
            Some(Duration::from_secs(600))
        );
        for every in ["0s", "500ms"] {
            let error = format!(
                "{:#}",
                parse(&["collector", "--compact-every", every]).unwrap_err()
            );
            assert!(
                error.contains("--compact-every must be at least 1s"),
                "{error}"
            );
        }
        let error = parse(&["collector", "--compact-every", "soon"]).unwrap_err();
        assert!(
            format!("{error:#}").contains("--compact-every"),
            "{error:#}"
        );
    }

    #[test]
    fn zero_or_absurd_sizes_are_refused() {
        for (rows, expected) in [
            (
                "0",
                "--max-batch-rows 0 is out of bounds: give a value from 1 to 10000000",
            ),
            ("20000000", "--max-batch-rows 20000000 is out of bounds"),
        ] {
            let error = format!(
                "{:#}",
                parse(&["collector", "--max-batch-rows", rows]).unwrap_err()
            );
            assert!(error.contains(expected), "{error}");
        }
        for size in ["0", "1000", "99999999999999"] {
            let error = Cli::try_parse_from(["collector", "compact", "--target-file-size", size])
                .unwrap_err()
                .to_string();
            assert!(error.contains("--target-file-size"), "{error}");
        }
    }
}
