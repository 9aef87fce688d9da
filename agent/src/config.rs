//! Configuration: every setting declared once in [`Settings`] (flag, `AGENT_*` variable, file
//! key, default, type), layered by `service::config` (defaults < the `--config` TOML file <
//! environment < flags), then validated into [`Config`].

use crate::http::connections::ConnectionLimits;
use crate::http::wait_for_change::WaitLimits;
use crate::logs::{KafkaConfig, RollerSettings, ShipperSettings, WriterSettings};
use crate::metadata::MetadataSource;
use anyhow::{Context, bail};
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};
use service::config::duration;
use service::config::within;
use service::secrets::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing::level_filters::LevelFilter;

/// Command line of the `agent` binary: the configuration file, then every setting.
#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "Instance metadata service with hot, warm and cold telemetry"
)]
pub struct Cli {
    /// TOML file with any of the settings below (keys spelled as the flags, without `--`).
    #[arg(long, env = "AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Every setting.
    #[command(flatten)]
    pub settings: Settings,
}

/// Every setting of the agent, each declared once: its doc is the help, `arg` gives the flag,
/// the variable and the default, the kebab-case name is the file key (an unknown key is an
/// error). Layered by `service::config::layered`, then validated into [`Config`].
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Address of the metadata API.
    #[arg(long, env = "AGENT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, env = "AGENT_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Instance document: a JSON file, or a directory of `default.json` and `<caller-ip>.json`.
    #[arg(long, env = "AGENT_METADATA", conflicts_with = "metadata_url")]
    pub metadata: Option<PathBuf>,
    /// Upstream HTTP URL serving the instance document, polled with ETag/If-None-Match.
    #[arg(long, env = "AGENT_METADATA_URL")]
    pub metadata_url: Option<String>,
    /// How often the upstream is polled when it is healthy, e.g. `5s`.
    #[arg(long, env = "AGENT_METADATA_POLL_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    #[serde(with = "duration")]
    pub metadata_poll_interval: Duration,
    /// Directory for logs, the upstream document's last good copy and later Parquet.
    #[arg(long, env = "AGENT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Cluster this host belongs to, on every metric and log event.
    #[arg(long, env = "AGENT_CLUSTER", default_value = "local")]
    pub cluster: String,
    /// Name of this host (default: the hostname).
    #[arg(long, env = "AGENT_MACHINE")]
    pub machine: Option<String>,
    /// Requests per second allowed per caller address; 0 turns the limit off.
    #[arg(long, env = "AGENT_RATE_LIMIT", default_value = "5")]
    pub rate_limit: u32,
    /// The local log writer's settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub writer: WriterSettings,
    /// The warm shipper's settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub shipper: ShipperSettings,
    /// Address of the admin API (log access from a dev box); off when not given. Needs a token.
    #[arg(long, env = "AGENT_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// File holding the admin API's logs token (mode 600; at least 16 characters): it lists and
    /// fetches this host's logs. Or the token in AGENT_ADMIN_TOKEN (never a flag: arguments are
    /// visible in `ps`).
    #[arg(long, env = "AGENT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the admin API's fault token (mode 600), the only one that may switch fault
    /// injection (`/fault`); or AGENT_ADMIN_FAULT_TOKEN. Without it `/fault` is refused.
    #[arg(long, env = "AGENT_ADMIN_FAULT_TOKEN_FILE")]
    pub admin_fault_token_file: Option<PathBuf>,
    /// PEM certificate chain of the admin API (HTTPS; reloaded when the file changes). Required
    /// when --admin-listen is not a loopback address.
    #[arg(long, env = "AGENT_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of --admin-tls-cert (mode 600; reloaded when the file changes).
    #[arg(long, env = "AGENT_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// The cold-path roller's settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub roller: RollerSettings,
    /// Turn the hot path off: no recorder, no `/metrics` listener. For measuring what metrics cost.
    #[arg(long, env = "AGENT_DISABLE_METRICS")]
    pub disable_metrics: bool,
    /// How long shutdown waits for in-flight requests, e.g. `10s`.
    #[arg(long, env = "AGENT_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Open connections to the metadata API at most; at the cap the longest-idle connection is
    /// closed for a new one. Never above the open-file limit less a reserve.
    #[arg(long, env = "AGENT_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..), default_value = "1024")]
    pub max_connections: u32,
    /// Time a caller has to send a whole request head once it sent its first byte.
    #[arg(long, env = "AGENT_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5s")]
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request before it is closed.
    #[arg(long, env = "AGENT_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// `wait-for-change` requests held at once at most; more are refused with 429.
    #[arg(long, env = "AGENT_MAX_HELD_REQUESTS", default_value = "256")]
    pub max_held_requests: u32,
    /// Longest a `wait-for-change` request is held (its `timeout-sec` is capped to this).
    #[arg(long, env = "AGENT_MAX_WAIT", value_parser = humantime::parse_duration, default_value = "5m")]
    #[serde(with = "duration")]
    pub max_wait: Duration,
}

/// The command line, `--help` showing every default and variable.
pub fn command() -> clap::Command {
    Cli::command()
}

/// `value`, refused at zero (it would close every connection or request at once).
fn positive(name: &str, value: Duration) -> anyhow::Result<Duration> {
    if value.is_zero() {
        bail!("{name} must be above zero");
    }
    Ok(value)
}

/// File descriptors kept out of the connection cap: log files, listeners, Kafka, metadata reads.
const RESERVED_FILES: u64 = 128;

/// The connection cap, lowered to what the process's open-file limit allows: past that limit
/// `accept` fails and no caller is served at all. The cap in force is in the "metadata API
/// listening" start-up line (configuration is read before logging is set up).
fn connection_cap(wanted: u32) -> usize {
    let wanted = u64::from(wanted);
    let cap = match open_file_limit() {
        Some(limit) if limit <= RESERVED_FILES + 16 => 16,
        Some(limit) => wanted.min(limit - RESERVED_FILES),
        None => wanted,
    };
    cap as usize
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (no unsafe FFI needed).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Where the admin API listens, the tokens it requires and its TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Its address (never the metadata API's).
    pub listen: SocketAddr,
    /// The logs token and the fault token (each at least 16 characters, never the same).
    pub(crate) tokens: crate::admin::AdminTokens,
    /// Certificate chain and key files (HTTPS); `None` only on loopback.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Secrets the agent takes from its environment only (never flags: arguments are visible in
/// `ps`), read once by [`Config::from_cli`].
#[derive(Debug, Default)]
struct EnvSecrets {
    kafka_password: Option<Secret>,
    admin_token: Option<Secret>,
    admin_fault_token: Option<Secret>,
}

impl EnvSecrets {
    fn read() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        EnvSecrets {
            kafka_password: var("AGENT_KAFKA_SASL_PASSWORD"),
            admin_token: var("AGENT_ADMIN_TOKEN"),
            admin_fault_token: var("AGENT_ADMIN_FAULT_TOKEN"),
        }
    }
}

/// A token from its file (private, checked) or the environment; `None` when neither is given.
fn token(
    file: Option<PathBuf>,
    env: Option<Secret>,
    flag: &str,
    variable: &str,
) -> anyhow::Result<Option<Secret>> {
    let token = match (file, env) {
        (Some(_), Some(_)) => bail!("{flag} and {variable} are both set: give one"),
        (Some(path), None) => service::secrets::read_secret(&path, flag)?,
        (None, Some(secret)) => secret,
        (None, None) => return Ok(None),
    };
    if token.expose().trim().len() < 16 {
        bail!("the token of {flag} / {variable} must be at least 16 characters");
    }
    Ok(Some(Secret::new(token.expose().trim().to_owned())))
}

/// Validated configuration of the agent.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the metadata API.
    pub listen: SocketAddr,
    /// Address of `/metrics`.
    pub metrics_listen: SocketAddr,
    /// Where the instance documents come from.
    pub source: MetadataSource,
    /// Directory of the local logs, Parquet, checkpoint and upstream copy.
    pub data_dir: PathBuf,
    /// Cluster label of every metric and log event.
    pub cluster: String,
    /// Machine label of every metric and log event.
    pub machine: String,
    /// Requests per second per caller; `None` when the limit is off.
    pub rate_limit: Option<u32>,
    /// Lowest level written to the local log files.
    pub log_level: LevelFilter,
    /// Lines that may wait for the log writer, all logging threads together.
    pub log_buffer_lines: usize,
    /// The warm path's Kafka, when configured.
    pub kafka: Option<KafkaConfig>,
    /// The admin API, when configured.
    pub admin: Option<AdminConfig>,
    /// How long the cold path keeps raw and Parquet files.
    pub retention: crate::logs::roller::Retention,
    /// Threads of the roller.
    pub roll_threads: usize,
    /// `false` turns the hot path off (benchmarks of its cost).
    pub metrics_enabled: bool,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Bounds on the metadata API's connections.
    pub connections: ConnectionLimits,
    /// Bounds on held `wait-for-change` requests.
    pub wait_for_change: WaitLimits,
}

impl Config {
    /// Layers the settings of the parsed command line (defaults < `--config` file < environment
    /// < flags) and validates them.
    pub fn from_matches(matches: &clap::ArgMatches) -> anyhow::Result<Self> {
        let cli = Cli::from_arg_matches(matches)?;
        let settings = service::config::layered(matches, cli.config.as_deref(), &cli.settings)?;
        Self::from_settings(settings, EnvSecrets::read())
    }

    fn from_settings(s: Settings, secrets: EnvSecrets) -> anyhow::Result<Self> {
        let source = match (s.metadata, s.metadata_url) {
            (Some(_), Some(_)) => {
                bail!("--metadata and --metadata-url are exclusive: give one source")
            }
            (Some(path), None) => MetadataSource::Path(path),
            (None, Some(url)) => {
                validate_url(&url)?;
                let poll_interval = positive("--metadata-poll-interval", s.metadata_poll_interval)?;
                MetadataSource::Url { url, poll_interval }
            }
            (None, None) => MetadataSource::Builtin,
        };
        let (listen, metrics_listen) = (s.listen, s.metrics_listen);
        if listen == metrics_listen && listen.port() != 0 {
            bail!(
                "--listen and --metrics-listen are both {listen}: the metrics port must be separate"
            );
        }
        let machine = match s.machine {
            Some(machine) => machine,
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        let cluster = s.cluster;
        for (name, value) in [("--cluster", &cluster), ("--machine", &machine)] {
            validate_label(name, value)?;
        }
        let admin = match s.admin_listen {
            None => None,
            Some(admin_listen) => {
                let logs = token(
                    s.admin_token_file,
                    secrets.admin_token,
                    "--admin-token-file",
                    "AGENT_ADMIN_TOKEN",
                )?
                .context(
                    "--admin-listen needs --admin-token-file (or AGENT_ADMIN_TOKEN): the admin API never runs unauthenticated",
                )?;
                let fault = token(
                    s.admin_fault_token_file,
                    secrets.admin_fault_token,
                    "--admin-fault-token-file",
                    "AGENT_ADMIN_FAULT_TOKEN",
                )?;
                if fault.as_ref() == Some(&logs) {
                    bail!(
                        "the admin fault token is the logs token: give fault injection a token of its own"
                    );
                }
                if admin_listen == listen && listen.port() != 0 {
                    bail!(
                        "--admin-listen and --listen are both {listen}: VMs must not reach the admin API"
                    );
                }
                let tls = match (s.admin_tls_cert, s.admin_tls_key) {
                    (Some(cert), Some(key)) => {
                        service::secrets::private_file(&key, "--admin-tls-key")?;
                        Some((cert, key))
                    }
                    (None, None) => None,
                    _ => bail!("--admin-tls-cert and --admin-tls-key go together"),
                };
                if tls.is_none() && !admin_listen.ip().is_loopback() {
                    bail!(
                        "--admin-listen {admin_listen} is not a loopback address and the admin API has no TLS: tokens and host logs would cross the network in clear; give --admin-tls-cert and --admin-tls-key (or listen on 127.0.0.1)"
                    );
                }
                Some(AdminConfig {
                    listen: admin_listen,
                    tokens: crate::admin::AdminTokens { logs, fault },
                    tls,
                })
            }
        };
        Ok(Config {
            listen,
            metrics_listen,
            source,
            data_dir: s.data_dir,
            cluster,
            machine,
            rate_limit: Some(s.rate_limit).filter(|&rps| rps > 0),
            log_level: s.writer.level()?,
            log_buffer_lines: s.writer.buffer_lines()?,
            kafka: s.shipper.validate(secrets.kafka_password)?,
            admin,
            retention: s.roller.retention(),
            roll_threads: s.roller.threads()?,
            metrics_enabled: !s.disable_metrics,
            shutdown_timeout: s.shutdown_timeout,
            connections: ConnectionLimits {
                max_connections: connection_cap(s.max_connections),
                header_read_timeout: positive("--header-read-timeout", s.header_read_timeout)?,
                idle_timeout: positive("--idle-timeout", s.idle_timeout)?,
            },
            wait_for_change: WaitLimits {
                max_held: within("--max-held-requests", s.max_held_requests, 1, 65_536)? as usize,
                max_wait: positive("--max-wait", s.max_wait)?,
            },
        })
    }

    /// Where the hourly local log files live.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// Where the hourly Parquet files of the cold path go.
    pub fn parquet_dir(&self) -> PathBuf {
        self.data_dir.join("parquet")
    }

    /// The warm shipper's checkpoint.
    pub fn shipper_checkpoint(&self) -> PathBuf {
        self.data_dir.join("shipper").join("checkpoint.json")
    }

    /// What the warm shipper needs: `None` without Kafka.
    pub(crate) fn shipper(&self) -> Option<crate::logs::shipper::ShipperConfig> {
        let kafka = self.kafka.as_ref()?;
        Some(crate::logs::shipper::ShipperConfig {
            brokers: kafka.brokers.clone(),
            topic: kafka.topic.clone(),
            security: kafka.security.clone(),
            machine: self.machine.clone(),
            log_dir: self.log_dir(),
            checkpoint: self.shipper_checkpoint(),
        })
    }

    /// What the cold-path roller needs.
    pub(crate) fn roller(&self) -> crate::logs::roller::RollerConfig {
        crate::logs::roller::RollerConfig {
            log_dir: self.log_dir(),
            parquet_dir: self.parquet_dir(),
            machine: self.machine.clone(),
            retention: self.retention.clone(),
            threads: self.roll_threads,
            shipper_checkpoint: self.kafka.is_some().then(|| self.shipper_checkpoint()),
        }
    }
}

fn validate_url(url: &str) -> anyhow::Result<()> {
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("--metadata-url {url:?} is not a URL"))?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" => bail!(
            "--metadata-url {url:?}: https upstreams are not supported yet (the agent is built without TLS); use http on the host network"
        ),
        other => bail!("--metadata-url {url:?}: scheme {other:?} is not supported; use http"),
    }
}

/// Cluster and machine become Prometheus label values and Parquet partition names: keep them
/// to characters that are safe in both.
fn validate_label(name: &str, value: &str) -> anyhow::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("{name} {value:?} must be 1-128 characters of letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["agent"];
        argv.extend_from_slice(args);
        Config::from_matches(&command().try_get_matches_from(argv)?)
    }

    #[test]
    fn zero_configuration_has_working_defaults() {
        let config = parse(&["--machine", "host-1"]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.metrics_listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(config.source, MetadataSource::Builtin);
        assert_eq!(config.rate_limit, Some(5));
        assert_eq!(config.log_level, LevelFilter::DEBUG);
        assert_eq!(config.cluster, "local");
        assert_eq!(config.log_dir(), PathBuf::from("data/logs"));
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "cluster = \"from-file\"\nmachine = \"m-file\"\nrate-limit = 9\nmetadata-url = \"http://127.0.0.1:1/doc\"\nmetadata-poll-interval = \"250ms\"\nlog-level = \"warn\"\nretain-raw = \"3h\"").unwrap();
        let path = file.path().to_str().unwrap();
        let config = parse(&["--config", path, "--cluster", "from-flag"]).unwrap();
        assert_eq!(config.cluster, "from-flag");
        assert_eq!(config.machine, "m-file");
        assert_eq!(config.rate_limit, Some(9));
        // Keys of a component's settings (flattened) are file keys like any other.
        assert_eq!(config.log_level, LevelFilter::WARN);
        assert_eq!(config.retention.raw, Duration::from_secs(3 * 3600));
        assert_eq!(
            config.source,
            MetadataSource::Url {
                url: "http://127.0.0.1:1/doc".into(),
                poll_interval: Duration::from_millis(250)
            }
        );
    }

    #[test]
    fn rate_limit_zero_turns_the_limit_off() {
        assert_eq!(
            parse(&["--machine", "m", "--rate-limit", "0"])
                .unwrap()
                .rate_limit,
            None
        );
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[
                    "--listen",
                    "127.0.0.1:7000",
                    "--metrics-listen",
                    "127.0.0.1:7000",
                ],
                "must be separate",
            ),
            (&["--cluster", "a b"], "--cluster"),
            (&["--log-level", "loud"], "--log-level"),
            (
                &["--metadata-url", "https://x/y"],
                "https upstreams are not supported",
            ),
            (&["--metadata-url", "not a url"], "is not a URL"),
        ];
        for (args, expected) in cases {
            let err = format!("{:#}", parse(args).unwrap_err());
            assert!(err.contains(expected), "{args:?}: {err}");
        }
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "listen-on = \"x\"").unwrap();
        let err = format!(
            "{:#}",
            parse(&["--config", file.path().to_str().unwrap()]).unwrap_err()
        );
        assert!(
            err.contains("listen-on") && err.contains("unknown field"),
            "{err}"
        );
    }
}
